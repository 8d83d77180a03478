/* cmd_info.c — `onyx info MODEL [--json] [--plan]`: what a model imports, takes, gives and
 * contains. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: onyx info MODEL|CKPT.zip [--json] [--plan]\n"
    "\n"
    "Loads MODEL (an .onnx file) and describes it: IR version, producer, opset imports, the\n"
    "inputs to feed and the outputs (dtype and shape, symbolic dimensions by name), the number\n"
    "of nodes and of each op type, the parameters (elements of floating-point initializers),\n"
    "and whether it contains Dropout or BatchNormalization (which behave differently in the\n"
    "infer, train and graph modes).\n"
    "A training checkpoint of `onyx train` (a zip file, told by its content) is verified and\n"
    "described instead: step, epoch and position in it, last loss, loss, optimizer, learning\n"
    "rate and the number of trained parameter tensors.\n"
    "\n"
    "With --plan, the model also runs once at batch 1 on random inputs (as `onyx bench`\n"
    "makes them) and the memory plan of that run is shown: the bytes of the activation arena\n"
    "(values whose lifetimes do not overlap share memory) against one buffer per value, and\n"
    "the floating-point operations of its Gemm and MatMul nodes (2*M*N*K each).\n"
    "\n"
    "options:\n"
    "  --json      print one JSON object instead of text\n"
    "  --plan      run once at batch 1 and show the memory plan\n"
    "  -h, --help  show this help\n";

/* The memory plan of a batch-1 run (--plan). */
typedef struct info_plan {
    size_t arena;
    size_t naive;
    double flops;
} info_plan;

/* One op type and how often it occurs. */
typedef struct op_count {
    const char *domain;
    const char *op_type;
    size_t count;
} op_count;

static int cmp_ops(const void *pa, const void *pb)
{
    const op_count *a = pa;
    const op_count *b = pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    int c = strcmp(a->domain, b->domain);
    return c != 0 ? c : strcmp(a->op_type, b->op_type);
}

/* Fills ops (capacity n_nodes) with the histogram; returns its length. */
static size_t op_histogram(const onyx_model *m, op_count *ops, bool *dropout, bool *batchnorm)
{
    size_t n_ops = 0;
    size_t n_nodes = onyx_model_node_count(m);
    *dropout = false;
    *batchnorm = false;
    for (size_t i = 0; i < n_nodes; i++) {
        onyx_node_info ni;
        if (onyx_model_node(m, i, &ni) != ONYX_OK)
            continue;
        const char *domain = ni.domain != NULL ? ni.domain : "";
        bool onnx_domain = domain[0] == '\0' || strcmp(domain, "ai.onnx") == 0;
        if (onnx_domain && strcmp(ni.op_type, "Dropout") == 0)
            *dropout = true;
        if (onnx_domain && strcmp(ni.op_type, "BatchNormalization") == 0)
            *batchnorm = true;
        size_t k;
        for (k = 0; k < n_ops; k++)
            if (strcmp(ops[k].op_type, ni.op_type) == 0 && strcmp(ops[k].domain, domain) == 0)
                break;
        if (k == n_ops)
            ops[n_ops++] = (op_count){domain, ni.op_type, 0};
        ops[k].count++;
    }
    qsort(ops, n_ops, sizeof(*ops), cmp_ops);
    return n_ops;
}

/* A JSON string literal. */
static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)(s != NULL ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p == '\n')
            printf("\\n");
        else if (*p == '\t')
            printf("\\t");
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void json_values(const onyx_model *m, bool inputs)
{
    size_t n = inputs ? onyx_model_input_count(m) : onyx_model_output_count(m);
    printf("[");
    for (size_t i = 0; i < n; i++) {
        onyx_value_info v;
        onyx_status st = inputs ? onyx_model_input(m, i, &v) : onyx_model_output(m, i, &v);
        if (st != ONYX_OK)
            continue;
        printf("%s{\"name\": ", i ? ", " : "");
        json_str(v.name);
        printf(", \"dtype\": ");
        json_str(onyx_dtype_name(v.dtype));
        printf(", \"shape\": ");
        if (v.rank < 0) {
            printf("null");
        } else {
            printf("[");
            for (int d = 0; d < v.rank; d++) {
                if (d)
                    printf(", ");
                if (v.dim_params[d] != NULL && v.dim_params[d][0] != '\0')
                    json_str(v.dim_params[d]);
                else if (v.dims[d] < 0)
                    printf("null");
                else
                    printf("%lld", (long long)v.dims[d]);
            }
            printf("]");
        }
        printf("}");
    }
    printf("]");
}

static void print_json(const char *path, const onyx_model *m, const op_count *ops, size_t n_ops,
                       bool dropout, bool batchnorm, const info_plan *plan)
{
    printf("{\"model\": ");
    json_str(path);
    printf(", \"ir_version\": %lld, \"producer\": ", (long long)onyx_model_ir_version(m));
    json_str(onyx_model_producer(m));
    printf(", \"producer_version\": ");
    json_str(onyx_model_producer_version(m));
    printf(", \"opsets\": [");
    for (size_t i = 0; i < onyx_model_opset_count(m); i++) {
        const char *domain;
        int64_t version;
        onyx_model_opset(m, i, &domain, &version);
        printf("%s{\"domain\": ", i ? ", " : "");
        json_str(domain);
        printf(", \"version\": %lld}", (long long)version);
    }
    printf("], \"inputs\": ");
    json_values(m, true);
    printf(", \"outputs\": ");
    json_values(m, false);
    printf(", \"node_count\": %zu, \"ops\": {", onyx_model_node_count(m));
    for (size_t k = 0; k < n_ops; k++) {
        char name[256];
        snprintf(name, sizeof(name), "%s%s%s", ops[k].domain, ops[k].domain[0] ? "." : "",
                 ops[k].op_type);
        printf("%s", k ? ", " : "");
        json_str(name);
        printf(": %zu", ops[k].count);
    }
    printf("}, \"parameters\": %lld, \"initializers\": %zu", (long long)onyx_model_param_count(m),
           onyx_model_initializer_count(m));
    printf(", \"has_dropout\": %s, \"has_batchnorm\": %s", dropout ? "true" : "false",
           batchnorm ? "true" : "false");
    if (plan != NULL)
        printf(", \"plan\": {\"batch\": 1, \"arena_bytes\": %zu, \"naive_bytes\": %zu, "
               "\"flop_per_run\": %.0f}",
               plan->arena, plan->naive, plan->flops);
    printf("}\n");
}

static void text_values(const onyx_model *m, bool inputs)
{
    size_t n = inputs ? onyx_model_input_count(m) : onyx_model_output_count(m);
    printf("%s (%zu):\n", inputs ? "inputs" : "outputs", n);
    for (size_t i = 0; i < n; i++) {
        onyx_value_info v;
        onyx_status st = inputs ? onyx_model_input(m, i, &v) : onyx_model_output(m, i, &v);
        if (st != ONYX_OK)
            continue;
        char shape[256];
        cli_value_shape(&v, shape, sizeof(shape));
        printf("  %s: %s %s\n", v.name, onyx_dtype_name(v.dtype), shape);
    }
}

static void print_text(const char *path, const onyx_model *m, const op_count *ops, size_t n_ops,
                       bool dropout, bool batchnorm, const info_plan *plan)
{
    printf("model: %s\n", path);
    printf("ir_version: %lld\n", (long long)onyx_model_ir_version(m));
    const char *prod = onyx_model_producer(m);
    const char *prod_v = onyx_model_producer_version(m);
    printf("producer: %s%s%s\n", prod[0] ? prod : "(none)", prod_v[0] ? " " : "", prod_v);
    printf("opsets:");
    for (size_t i = 0; i < onyx_model_opset_count(m); i++) {
        const char *domain;
        int64_t version;
        onyx_model_opset(m, i, &domain, &version);
        printf("%s %s %lld", i ? "," : "", domain[0] ? domain : "ai.onnx", (long long)version);
    }
    printf("\n");
    text_values(m, true);
    text_values(m, false);
    printf("nodes: %zu\n", onyx_model_node_count(m));
    printf("ops:");
    for (size_t k = 0; k < n_ops; k++)
        printf("%s %s%s%s %zu", k ? "," : "", ops[k].domain, ops[k].domain[0] ? "." : "",
               ops[k].op_type, ops[k].count);
    printf("\n");
    printf("parameters: %lld (in %zu initializers)\n", (long long)onyx_model_param_count(m),
           onyx_model_initializer_count(m));
    printf("dropout: %s\n", dropout ? "yes" : "no");
    printf("batchnorm: %s\n", batchnorm ? "yes" : "no");
    if (plan != NULL)
        printf("memory plan (batch 1): arena %zu bytes, one buffer per value %zu bytes; "
               "%.0f FLOP in Gemm/MatMul\n",
               plan->arena, plan->naive, plan->flops);
}

/* True when the file starts with a zip local header ("PK\3\4"): a training checkpoint. */
static bool is_zip(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    unsigned char magic[4];
    bool yes =
        fread(magic, 1, sizeof(magic), f) == sizeof(magic) && memcmp(magic, "PK\x03\x04", 4) == 0;
    fclose(f);
    return yes;
}

static int info_checkpoint(const char *cmd, const char *path, bool json)
{
    onyx_checkpoint_info ck;
    onyx_error err = {ONYX_OK, ""};
    if (onyx_checkpoint_info_read(path, &ck, &err) != ONYX_OK)
        return cli_fail(cmd, "%s", err.msg);
    const onyx_train_progress *p = &ck.progress;
    if (json) {
        printf("{\"checkpoint\": ");
        json_str(path);
        printf(", \"step\": %lld, \"epoch\": %lld, \"position\": %lld, \"data_seed\": %llu",
               (long long)p->step, (long long)p->epoch, (long long)p->position,
               (unsigned long long)p->data_seed);
        printf(", \"last_loss\": ");
        if (isfinite(p->last_loss))
            printf("%.9g", (double)p->last_loss);
        else
            printf("null");
        printf(", \"loss\": ");
        json_str(ck.loss);
        printf(", \"optimizer\": ");
        json_str(ck.optimizer);
        printf(", \"lr\": %.6g, \"parameter_tensors\": %lld}\n", (double)ck.lr,
               (long long)ck.n_params);
        return CLI_OK;
    }
    printf("checkpoint: %s\n", path);
    printf("step: %lld\n", (long long)p->step);
    /* progress.epoch counts finished epochs; position is the samples done of the next one */
    printf("epoch: %lld", (long long)p->epoch);
    if (p->position > 0)
        printf(" finished, %lld samples into epoch %lld", (long long)p->position,
               (long long)p->epoch + 1);
    else
        printf(" finished");
    printf("\n");
    printf("last loss: %.6g\n", (double)p->last_loss);
    printf("loss: %s\n", ck.loss);
    printf("optimizer: %s, lr %g\n", ck.optimizer, (double)ck.lr);
    printf("trained parameters: %lld tensors\n", (long long)ck.n_params);
    printf("data seed: %llu\n", (unsigned long long)p->data_seed);
    return CLI_OK;
}

int cmd_info(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv);
    bool json = false;
    bool want_plan = false;
    const char *path = NULL;
    while (cli_more(&a)) {
        if (cli_flag(&a, "--help", "-h")) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
        if (cli_flag(&a, "--json", NULL)) {
            json = true;
            continue;
        }
        if (cli_flag(&a, "--plan", NULL)) {
            want_plan = true;
            continue;
        }
        const char *op = cli_operand(&a);
        if (op == NULL)
            break;
        if (path != NULL)
            return cli_usage(a.cmd, "one model at a time (got '%s' and '%s')", path, op);
        path = op;
    }
    if (a.failed)
        return CLI_USAGE;
    if (path == NULL)
        return cli_usage(a.cmd, "missing MODEL");

    if (is_zip(path) && want_plan)
        return cli_fail(a.cmd,
                        "%s: --plan runs models, and this is a training checkpoint "
                        "(write its model with 'onyx export')",
                        path);
    if (is_zip(path))
        return info_checkpoint(a.cmd, path, json);

    onyx_model *m = NULL;
    onyx_error err = {ONYX_OK, ""};
    if (onyx_model_load(path, &m, &err) != ONYX_OK)
        return cli_fail(a.cmd, "%s", err.msg);
    size_t n_nodes = onyx_model_node_count(m);
    op_count *ops = calloc(n_nodes ? n_nodes : 1, sizeof(*ops));
    if (ops == NULL) {
        onyx_model_destroy(m);
        return cli_fail(a.cmd, "out of memory");
    }
    info_plan plan;
    if (want_plan && bench_plan(a.cmd, m, 1, &plan.arena, &plan.naive, &plan.flops) != CLI_OK) {
        free(ops);
        onyx_model_destroy(m);
        return CLI_FAIL;
    }
    bool dropout;
    bool batchnorm;
    size_t n_ops = op_histogram(m, ops, &dropout, &batchnorm);
    if (json)
        print_json(path, m, ops, n_ops, dropout, batchnorm, want_plan ? &plan : NULL);
    else
        print_text(path, m, ops, n_ops, dropout, batchnorm, want_plan ? &plan : NULL);
    free(ops);
    onyx_model_destroy(m);
    return CLI_OK;
}
