/* cmd_bench.c — `onyx bench MODEL`: latency, throughput, GFLOP/s and memory of a model on random
 * inputs, for inference or (--train) training steps. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char HELP[] =
    "usage: onyx bench MODEL [options]\n"
    "\n"
    "Times MODEL on random inputs: --warmup untimed runs, then --iters runs, each timed on its\n"
    "own with the monotonic clock. Prints the latency (median and 90th percentile, in ms), the\n"
    "throughput (batch / median latency, in samples/s), the compute rate and the session's\n"
    "memory plan.\n"
    "\n"
    "Inputs: every graph input gets random values (floats uniform in [-1, 1), integers 0 or 1,\n"
    "booleans), with --batch for a symbolic or unknown first dimension; any other unknown\n"
    "dimension is an error. Inference runs in a session of the default mode (Dropout off).\n"
    "\n"
    "GFLOP/s counts only matrix products: 2*M*N*K for each Gemm and MatMul node, from the\n"
    "shapes of an actual run (onyx_session_flops), divided by the median latency. Bias\n"
    "additions, activations and every other op are not counted. With --train the count is 3\n"
    "times the forward one (the forward product and, in backward, one for the gradient of each\n"
    "of its two operands).\n"
    "\n"
    "Memory: the activation arena the run's shapes need (values whose lifetimes do not overlap\n"
    "share bytes) against one buffer per value (onyx_session_memory); weights and inputs are\n"
    "not counted. With --train, the numbers are those of an inference run: training keeps every\n"
    "activation for backward, so it needs the one-buffer-per-value figure.\n"
    "\n"
    "--train times onyx_trainer_step (forward, cross-entropy loss, backward, SGD with lr 0.01)\n"
    "on random class targets for the width of the first output, which must be [batch, classes];\n"
    "the model must have one input. The trainer uses the library's default thread count.\n"
    "\n"
    "options:\n"
    "  --batch N    value of the batch dimension (default 1)\n"
    "  --threads N  threads of the session (default 0: the library's default)\n"
    "  --iters N    timed runs (default 100)\n"
    "  --warmup N   untimed runs first (default 10)\n"
    "  --train      time training steps instead of inference\n"
    "  --seed N     seed of the random inputs (default 1)\n"
    "  --json       print one JSON object instead of text\n"
    "  -h, --help   show this help\n";

typedef struct bench_opts {
    const char *path;
    int64_t batch;
    int64_t threads;
    int64_t iters;
    int64_t warmup;
    uint64_t seed;
    bool train;
    bool json;
} bench_opts;

/* The random inputs of one run. */
typedef struct bench_inputs {
    size_t n;
    const char **names;
    onyx_tensor *t;
} bench_inputs;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t next_u64(uint64_t *state)
{
    /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static double next_unit(uint64_t *state)
{
    return (double)(next_u64(state) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static void fill_random(onyx_tensor *t, uint64_t *state)
{
    int64_t n = onyx_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double u = next_unit(state);
        uint64_t bit = next_u64(state) & 1;
        /* float16 / bfloat16: +-0.5 or +-1 */
        uint16_t h16 = (uint16_t)((u < 0 ? 0x8000 : 0) | (bit ? 0x3C00 : 0x3800));
        uint16_t b16 = (uint16_t)((u < 0 ? 0x8000 : 0) | (bit ? 0x3F80 : 0x3F00));
        switch (t->dtype) {
        case ONYX_DTYPE_F32: ((float *)t->data)[i] = (float)u; break;
        case ONYX_DTYPE_F64: ((double *)t->data)[i] = u; break;
        case ONYX_DTYPE_F16: ((uint16_t *)t->data)[i] = h16; break;
        case ONYX_DTYPE_BF16: ((uint16_t *)t->data)[i] = b16; break;
        case ONYX_DTYPE_BOOL:
        case ONYX_DTYPE_U8:
        case ONYX_DTYPE_I8: ((uint8_t *)t->data)[i] = (uint8_t)bit; break;
        case ONYX_DTYPE_U16:
        case ONYX_DTYPE_I16: ((uint16_t *)t->data)[i] = (uint16_t)bit; break;
        case ONYX_DTYPE_U32:
        case ONYX_DTYPE_I32: ((uint32_t *)t->data)[i] = (uint32_t)bit; break;
        case ONYX_DTYPE_U64:
        case ONYX_DTYPE_I64: ((uint64_t *)t->data)[i] = bit; break;
        case ONYX_DTYPE_STRING:
        case ONYX_DTYPE_UNDEFINED: break;
        }
    }
}

static void free_inputs(bench_inputs *in)
{
    for (size_t i = 0; in->t != NULL && i < in->n; i++)
        free(in->t[i].data);
    free(in->t);
    free(in->names);
    memset(in, 0, sizeof(*in));
}

/* Random tensors for every graph input of m, the first dimension batch where the model leaves
 * it open. */
static int make_inputs(const char *cmd, const onyx_model *m, int64_t batch, uint64_t seed,
                       bench_inputs *in)
{
    memset(in, 0, sizeof(*in));
    in->n = onyx_model_input_count(m);
    in->names = calloc(in->n + 1, sizeof(*in->names));
    in->t = calloc(in->n + 1, sizeof(*in->t));
    if (in->names == NULL || in->t == NULL) {
        free_inputs(in);
        return cli_fail(cmd, "out of memory");
    }
    uint64_t state = seed;
    for (size_t i = 0; i < in->n; i++) {
        onyx_value_info v;
        if (onyx_model_input(m, i, &v) != ONYX_OK) {
            free_inputs(in);
            return cli_fail(cmd, "cannot describe input %zu", i);
        }
        in->names[i] = v.name;
        onyx_tensor *t = &in->t[i];
        size_t elem = onyx_dtype_size(v.dtype);
        if (elem == 0 || v.rank < 0) {
            char shape[128];
            cli_value_shape(&v, shape, sizeof shape);
            free_inputs(in);
            return cli_fail(cmd,
                            "input \"%s\" is %s %s: bench needs a numeric tensor of known rank",
                            v.name, onyx_dtype_name(v.dtype), shape);
        }
        t->dtype = v.dtype;
        t->rank = v.rank;
        double bytes = (double)elem;
        for (int d = 0; d < v.rank; d++) {
            t->dims[d] = v.dims[d];
            if (t->dims[d] < 0 && d == 0)
                t->dims[d] = batch;
            if (t->dims[d] < 0) {
                char shape[128];
                cli_value_shape(&v, shape, sizeof shape);
                free_inputs(in);
                return cli_fail(cmd,
                                "input \"%s\" has shape %s: only the first dimension may be "
                                "left open (it takes --batch)",
                                v.name, shape);
            }
            bytes *= (double)t->dims[d];
        }
        if (bytes > 1e12) {
            free_inputs(in);
            return cli_fail(cmd, "input \"%s\" would take %.3g bytes", v.name, bytes);
        }
        t->data = malloc(bytes > 0 ? (size_t)bytes : 1);
        if (t->data == NULL) {
            free_inputs(in);
            return cli_fail(cmd, "out of memory for input \"%s\" (%.0f bytes)", v.name, bytes);
        }
        fill_random(t, &state);
    }
    return CLI_OK;
}

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa;
    double b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* What one benchmark measured. */
typedef struct bench_result {
    double median;   /* seconds */
    double p90;      /* seconds */
    double flops;    /* per run (or step) */
    size_t arena;    /* bytes */
    size_t naive;    /* bytes */
    int64_t classes; /* --train: width of the first output */
} bench_result;

/* Median and 90th percentile (nearest rank) of n times, sorted in place. */
static void summarize(double *t, int64_t n, bench_result *r)
{
    qsort(t, (size_t)n, sizeof(*t), cmp_double);
    r->median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    int64_t k = (int64_t)ceil(0.9 * (double)n) - 1;
    r->p90 = t[k < 0 ? 0 : k];
}

/* Inference: a session; with times == NULL a single run that only measures FLOPs, memory and
 * the first output's width. */
static int bench_infer(const char *cmd, const onyx_model *m, const bench_opts *o,
                       const bench_inputs *in, double *times, bench_result *r)
{
    onyx_session_options so;
    onyx_session_options_init(&so);
    so.threads = (int)o->threads;
    onyx_session *s = NULL;
    onyx_error err = {ONYX_OK, ""};
    if (onyx_session_create(m, &so, &s, &err) != ONYX_OK)
        return cli_fail(cmd, "%s", err.msg);
    size_t n_out = onyx_model_output_count(m);
    onyx_tensor *outs = calloc(n_out + 1, sizeof(*outs));
    if (outs == NULL) {
        onyx_session_destroy(s);
        return cli_fail(cmd, "out of memory");
    }
    int64_t runs = times != NULL ? o->warmup + o->iters : 1;
    int rc = CLI_OK;
    for (int64_t i = 0; i < runs; i++) {
        memset(outs, 0, sizeof(*outs) * n_out);
        double t0 = now();
        onyx_status st = onyx_session_run(s, in->n, in->names, in->t, n_out, NULL, outs);
        double t1 = now();
        if (st != ONYX_OK) {
            rc = cli_fail(cmd, "%s", onyx_session_errmsg(s));
            break;
        }
        if (times != NULL && i >= o->warmup)
            times[i - o->warmup] = t1 - t0;
    }
    if (rc == CLI_OK) {
        r->classes = n_out > 0 && outs[0].rank == 2 ? outs[0].dims[1] : -1;
        if (onyx_session_flops(s, &r->flops) != ONYX_OK ||
            onyx_session_memory(s, &r->arena, &r->naive) != ONYX_OK)
            rc = cli_fail(cmd, "cannot read the session's statistics");
    }
    if (rc == CLI_OK && times != NULL)
        summarize(times, o->iters, r);
    free(outs);
    onyx_session_destroy(s);
    return rc;
}

int bench_plan(const char *cmd, const onyx_model *m, int64_t batch, size_t *arena, size_t *naive,
               double *flops)
{
    bench_inputs in;
    bench_opts o;
    memset(&o, 0, sizeof o);
    o.batch = batch;
    o.seed = 1;
    int rc = make_inputs(cmd, m, batch, o.seed, &in);
    if (rc != CLI_OK)
        return rc;
    bench_result r;
    memset(&r, 0, sizeof r);
    rc = bench_infer(cmd, m, &o, &in, NULL, &r);
    free_inputs(&in);
    *arena = r.arena;
    *naive = r.naive;
    *flops = r.flops;
    return rc;
}

/* Training steps on random class targets. */
static int bench_train(const char *cmd, const onyx_model *m, const bench_opts *o,
                       const bench_inputs *in, double *times, bench_result *r)
{
    if (in->n != 1)
        return cli_fail(cmd, "--train needs a model with one input; %s has %zu", o->path, in->n);
    /* One inference run first: FLOPs, memory, and the number of classes. */
    int rc = bench_infer(cmd, m, o, in, NULL, r);
    if (rc != CLI_OK)
        return rc;
    if (r->classes <= 0) {
        onyx_value_info v;
        char shape[128] = "?";
        if (onyx_model_output(m, 0, &v) == ONYX_OK)
            cli_value_shape(&v, shape, sizeof shape);
        return cli_fail(cmd, "--train needs a first output [batch, classes]; it is %s", shape);
    }
    r->flops *= 3.0;
    int64_t *y = malloc(sizeof(int64_t) * (size_t)o->batch);
    if (y == NULL)
        return cli_fail(cmd, "out of memory");
    uint64_t state = o->seed ^ 0x5bd1e995u;
    for (int64_t i = 0; i < o->batch; i++)
        y[i] = (int64_t)(next_u64(&state) % (uint64_t)r->classes);
    onyx_tensor yt = {ONYX_DTYPE_I64, 1, {o->batch}, y};

    onyx_train_options opt;
    onyx_train_options_init(&opt);
    opt.threads = (int)o->threads;
    opt.loss = ONYX_LOSS_CE;
    opt.optimizer = ONYX_OPTIMIZER_SGD;
    opt.lr = 0.01f;
    opt.seed = o->seed;
    onyx_trainer *t = NULL;
    onyx_error err = {ONYX_OK, ""};
    if (onyx_trainer_create(o->path, &opt, &t, &err) != ONYX_OK) {
        free(y);
        return cli_fail(cmd, "%s", err.msg);
    }
    for (int64_t i = 0; i < o->warmup + o->iters; i++) {
        double t0 = now();
        onyx_status st = onyx_trainer_step(t, &in->t[0], &yt, NULL);
        double t1 = now();
        if (st != ONYX_OK) {
            rc = cli_fail(cmd, "%s", onyx_trainer_errmsg(t));
            break;
        }
        if (i >= o->warmup)
            times[i - o->warmup] = t1 - t0;
    }
    if (rc == CLI_OK)
        summarize(times, o->iters, r);
    onyx_trainer_destroy(t);
    free(y);
    return rc;
}

/* A JSON string literal (the model path). */
static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void print_result(const bench_opts *o, const bench_result *r)
{
    double gflops = r->median > 0 ? r->flops / r->median * 1e-9 : 0.0;
    double throughput = r->median > 0 ? (double)o->batch / r->median : 0.0;
    const char *mode = o->train ? "train" : "infer";
    int64_t threads = o->threads;
    if (o->json) {
        printf("{\"model\": ");
        json_str(o->path);
        printf(", \"mode\": \"%s\", \"batch\": %lld, \"threads\": %lld, \"iters\": %lld, "
               "\"warmup\": %lld",
               mode, (long long)o->batch, (long long)threads, (long long)o->iters,
               (long long)o->warmup);
        printf(", \"median_ms\": %.6f, \"p90_ms\": %.6f, \"samples_per_s\": %.3f", r->median * 1e3,
               r->p90 * 1e3, throughput);
        printf(", \"flop_per_run\": %.0f, \"gflops\": %.4f", r->flops, gflops);
        printf(", \"arena_bytes\": %zu, \"naive_bytes\": %zu}\n", r->arena, r->naive);
        return;
    }
    printf("model: %s\n", o->path);
    printf("mode: %s, batch %lld, threads %lld%s, %lld runs after %lld warm-up\n", mode,
           (long long)o->batch, (long long)threads, threads == 0 ? " (library default)" : "",
           (long long)o->iters, (long long)o->warmup);
    printf("latency: median %.4g ms, p90 %.4g ms\n", r->median * 1e3, r->p90 * 1e3);
    printf("throughput: %.1f samples/s\n", throughput);
    printf("compute: %.3f GFLOP/s (%.6g GFLOP per %s in Gemm/MatMul)\n", gflops, r->flops * 1e-9,
           o->train ? "step" : "run");
    double pct = r->naive ? 100.0 * (double)r->arena / (double)r->naive : 0.0;
    printf("memory: arena %zu bytes, one buffer per value %zu bytes (%.1f%%)%s\n", r->arena,
           r->naive, pct, o->train ? " [inference plan; training keeps every value]" : "");
}

static int parse_opts(int argc, char **argv, bench_opts *o, bool *help)
{
    cli_args a;
    cli_args_init(&a, argc, argv);
    *help = false;
    memset(o, 0, sizeof(*o));
    o->batch = 1;
    o->iters = 100;
    o->warmup = 10;
    o->seed = 1;
    while (cli_more(&a)) {
        const char *val;
        if (cli_flag(&a, "--help", "-h")) {
            *help = true;
            return CLI_OK;
        }
        if (cli_flag(&a, "--train", NULL)) {
            o->train = true;
        } else if (cli_flag(&a, "--json", NULL)) {
            o->json = true;
        } else if (cli_option(&a, "--batch", NULL, &val)) {
            if (!cli_parse_i64(val, 1, 1 << 24, &o->batch))
                return cli_usage(a.cmd, "--batch must be an integer from 1 to %d, not '%s'",
                                 1 << 24, val);
        } else if (cli_option(&a, "--threads", NULL, &val)) {
            if (!cli_parse_i64(val, 0, 1024, &o->threads))
                return cli_usage(a.cmd, "--threads must be an integer from 0 to 1024, not '%s'",
                                 val);
        } else if (cli_option(&a, "--iters", NULL, &val)) {
            if (!cli_parse_i64(val, 1, 100000000, &o->iters))
                return cli_usage(a.cmd, "--iters must be an integer from 1 to 100000000, not '%s'",
                                 val);
        } else if (cli_option(&a, "--warmup", NULL, &val)) {
            if (!cli_parse_i64(val, 0, 100000000, &o->warmup))
                return cli_usage(a.cmd, "--warmup must be an integer from 0 to 100000000, not '%s'",
                                 val);
        } else if (cli_option(&a, "--seed", NULL, &val)) {
            if (!cli_parse_u64(val, &o->seed))
                return cli_usage(a.cmd, "--seed must be a non-negative integer, not '%s'", val);
        } else {
            const char *op = cli_operand(&a);
            if (op == NULL)
                break;
            if (o->path != NULL)
                return cli_usage(a.cmd, "one model at a time (got '%s' and '%s')", o->path, op);
            o->path = op;
        }
    }
    if (a.failed)
        return CLI_USAGE;
    if (o->path == NULL)
        return cli_usage(a.cmd, "missing MODEL");
    return CLI_OK;
}

int cmd_bench(int argc, char **argv)
{
    const char *cmd = argv[0];
    bench_opts o;
    bool help;
    int rc = parse_opts(argc, argv, &o, &help);
    if (rc != CLI_OK)
        return rc;
    if (help) {
        fputs(HELP, stdout);
        return CLI_OK;
    }
    onyx_model *m = NULL;
    onyx_error err = {ONYX_OK, ""};
    if (onyx_model_load(o.path, &m, &err) != ONYX_OK)
        return cli_fail(cmd, "%s", err.msg);
    bench_inputs in;
    rc = make_inputs(cmd, m, o.batch, o.seed, &in);
    if (rc != CLI_OK) {
        onyx_model_destroy(m);
        return rc;
    }
    double *times = calloc((size_t)o.iters, sizeof(double));
    bench_result r;
    memset(&r, 0, sizeof r);
    if (times == NULL)
        rc = cli_fail(cmd, "out of memory");
    else if (o.train)
        rc = bench_train(cmd, m, &o, &in, times, &r);
    else
        rc = bench_infer(cmd, m, &o, &in, times, &r);
    if (rc == CLI_OK)
        print_result(&o, &r);
    free(times);
    free_inputs(&in);
    onyx_model_destroy(m);
    return rc;
}
