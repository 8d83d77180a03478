/*
 * bench_onyx.c — onyx's side of bench/run.sh: inference latency of a model through the public C
 * API (runtime/onyx.h only), and with --train the time of one training step (forward,
 * cross-entropy loss, backward, SGD) through the trainer API.
 *
 * usage: bench_onyx MODEL --name NAME --batch 1,64,256 --threads 1,2 [--time SECONDS] [--train]
 *
 * For every (threads, batch) pair: a session (or trainer) is created, warmed up, then run until
 * `time` seconds have passed (at least 5 and at most 10000 iterations). One line per pair:
 *   RESULT onyx NAME infer|train BATCH THREADS MEDIAN_MS P90_MS ITERS
 * Inputs are random in [-1, 1); training targets are random classes.
 *
 * The trainer is built in only with -DBENCH_TRAIN (bench/run.sh tries that first and falls back
 * when the library does not provide it); it runs on onyx_train_options.threads threads.
 */
#include "onyx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 1000000)
            return 0;
        out[n++] = (int)v;
        if (*end != ',' && *end != '\0')
            return 0;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

enum { MAX_ITERS = 10000, MIN_ITERS = 5 };

/* Latencies in seconds -> the RESULT line. */
static void report(const char *name, const char *mode, int batch, int threads, double *t, int n)
{
    qsort(t, (size_t)n, sizeof(*t), cmp_double);
    double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    double p90 = t[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1];
    printf("RESULT onyx %s %s %d %d %.4f %.4f %d\n", name, mode, batch, threads, med * 1e3,
           p90 * 1e3, n);
    fflush(stdout);
}

static uint64_t rng = 0x853C49E6748FEA9Bu;

static float frand(void)
{
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    return (float)((double)(rng >> 40) / (double)(1u << 23) - 1.0);
}

static int bench_infer(const onyx_model *model, const char *name, int threads, int batch,
                       int64_t width, double budget, double *times)
{
    onyx_session_options opt;
    onyx_session_options_init(&opt);
    opt.threads = threads;
    onyx_session *s = NULL;
    onyx_error err;
    if (onyx_session_create(model, &opt, &s, &err) != ONYX_OK) {
        fprintf(stderr, "bench_onyx: %s\n", err.msg);
        return 1;
    }
    onyx_value_info in;
    if (onyx_model_input(model, 0, &in) != ONYX_OK) {
        onyx_session_destroy(s);
        return 1;
    }
    float *x = malloc(sizeof(float) * (size_t)batch * (size_t)width);
    if (x == NULL) {
        onyx_session_destroy(s);
        return 1;
    }
    for (int64_t i = 0; i < batch * width; i++)
        x[i] = frand();
    onyx_tensor xt = {ONYX_DTYPE_F32, 2, {batch, width}, x};
    const char *names[1] = {in.name};
    int n = 0;
    int rc = 0;
    double start = now();
    for (int it = -3; it < MAX_ITERS; it++) { /* 3 warm-up runs */
        onyx_tensor out = {0};
        double t0 = now();
        if (onyx_session_run(s, 1, names, &xt, 1, NULL, &out) != ONYX_OK) {
            fprintf(stderr, "bench_onyx: %s\n", onyx_session_errmsg(s));
            rc = 1;
            break;
        }
        double t1 = now();
        if (it < 0) {
            start = t1;
            continue;
        }
        times[n++] = t1 - t0;
        if (n >= MIN_ITERS && t1 - start >= budget)
            break;
    }
    if (rc == 0)
        report(name, "infer", batch, threads, times, n);
    free(x);
    onyx_session_destroy(s);
    return rc;
}

#ifdef BENCH_TRAIN
static int bench_train(const char *path, const char *name, int threads, int batch, int64_t width,
                       int64_t classes, double budget, double *times)
{
    onyx_train_options opt;
    onyx_train_options_init(&opt);
    opt.threads = threads;
    opt.loss = ONYX_LOSS_CE;
    opt.optimizer = ONYX_OPTIMIZER_SGD;
    opt.lr = 0.01f;
    onyx_trainer *t = NULL;
    onyx_error err;
    if (onyx_trainer_create(path, &opt, &t, &err) != ONYX_OK) {
        fprintf(stderr, "bench_onyx: %s\n", err.msg);
        return 1;
    }
    float *x = malloc(sizeof(float) * (size_t)batch * (size_t)width);
    int64_t *y = malloc(sizeof(int64_t) * (size_t)batch);
    if (x == NULL || y == NULL) {
        free(x);
        free(y);
        onyx_trainer_destroy(t);
        return 1;
    }
    for (int64_t i = 0; i < batch * width; i++)
        x[i] = frand();
    for (int i = 0; i < batch; i++) {
        frand();
        y[i] = (int64_t)((rng >> 33) % (uint64_t)classes);
    }
    onyx_tensor xt = {ONYX_DTYPE_F32, 2, {batch, width}, x};
    onyx_tensor yt = {ONYX_DTYPE_I64, 1, {batch}, y};
    int n = 0;
    int rc = 0;
    double start = now();
    for (int it = -3; it < MAX_ITERS; it++) {
        float loss;
        double t0 = now();
        if (onyx_trainer_step(t, &xt, &yt, &loss) != ONYX_OK) {
            fprintf(stderr, "bench_onyx: %s\n", onyx_trainer_errmsg(t));
            rc = 1;
            break;
        }
        double t1 = now();
        if (it < 0) {
            start = t1;
            continue;
        }
        times[n++] = t1 - t0;
        if (n >= MIN_ITERS && t1 - start >= budget)
            break;
    }
    if (rc == 0)
        report(name, "train", batch, threads, times, n);
    free(x);
    free(y);
    onyx_trainer_destroy(t);
    return rc;
}
#endif

int main(int argc, char **argv)
{
    const char *path = NULL;
    const char *name = "model";
    int batches[16] = {1, 64, 256};
    int n_batches = 3;
    int threads[16] = {1};
    int n_threads = 1;
    double budget = 1.0;
    int train = 0;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            n_batches = parse_list(argv[++i], batches, 16);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            n_threads = parse_list(argv[++i], threads, 16);
        else if (strcmp(argv[i], "--time") == 0 && i + 1 < argc)
            budget = atof(argv[++i]);
        else if (strcmp(argv[i], "--train") == 0)
            train = 1;
        else if (argv[i][0] != '-' && path == NULL)
            path = argv[i];
        else
            bad = 1;
    }
    if (bad || path == NULL || n_batches == 0 || n_threads == 0 || !(budget > 0.0)) {
        fprintf(stderr, "usage: bench_onyx MODEL --name NAME --batch 1,64,256 --threads 1,2 "
                        "[--time SECONDS] [--train]\n");
        return 2;
    }
    onyx_model *model = NULL;
    onyx_error err;
    if (onyx_model_load(path, &model, &err) != ONYX_OK) {
        fprintf(stderr, "bench_onyx: %s\n", err.msg);
        return 1;
    }
    onyx_value_info in;
    onyx_value_info out;
    if (onyx_model_input(model, 0, &in) != ONYX_OK || onyx_model_output(model, 0, &out) != ONYX_OK ||
        in.rank != 2 || in.dims[1] <= 0 || out.rank != 2 || out.dims[1] <= 0) {
        fprintf(stderr, "bench_onyx: %s: expected one input [batch, W] and output [batch, C]\n",
                path);
        onyx_model_destroy(model);
        return 1;
    }
    double *times = malloc(sizeof(double) * MAX_ITERS);
    int rc = times == NULL;
    for (int b = 0; b < n_batches && rc == 0; b++) {
        if (!train) {
            for (int t = 0; t < n_threads && rc == 0; t++)
                rc = bench_infer(model, name, threads[t], batches[b], in.dims[1], budget, times);
        } else {
#ifdef BENCH_TRAIN
            for (int t = 0; t < n_threads && rc == 0; t++)
                rc = bench_train(path, name, threads[t], batches[b], in.dims[1], out.dims[1],
                                 budget, times);
#else
            fprintf(stderr, "bench_onyx: built without the trainer (BENCH_TRAIN)\n");
            rc = 1;
#endif
        }
    }
    free(times);
    onyx_model_destroy(model);
    return rc;
}
