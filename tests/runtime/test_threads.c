/* test_threads.c — the thread-safety rules of onyx.h, checked: one loaded model shared by
 * several threads at once, each thread with its own sessions, gives results bit-identical to
 * the same runs made by one thread alone.
 *
 * The model is an MLP with Dropout (onyx_mlp_write). Every worker thread creates its sessions
 * while the others run, runs a fixed schedule of batches of varying sizes (so plans are rebuilt
 * while other threads run), in inference mode and in train mode (Dropout masks from the
 * session's own seeded generator), with outputs in session memory and in caller buffers, with
 * one and two threads per session, and reads the model's description meanwhile. Also run under
 * ThreadSanitizer by tools/test.sh (build-tsan), which reports any data race in the library. */
#include "check.h"
#include "onyx.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    N_WORKERS = 4,
    WIDTH_IN = 24,
    WIDTH_OUT = 10,
    MAX_BATCH = 33,
    N_BATCHES = 4, /* one schedule: these batch sizes in turn */
    N_ROUNDS = 6,  /* schedules per session configuration in each worker */
    N_CONFIGS = 4  /* {infer, train} x {1, 2 threads per session} */
};

static const int64_t batch_sizes[N_BATCHES] = {MAX_BATCH, 1, 7, MAX_BATCH};

/* Inputs: one [MAX_BATCH, WIDTH_IN] array; a batch of size b is its first b rows. */
static float input[MAX_BATCH * WIDTH_IN];

/* The output of one batch: [batch, WIDTH_OUT] in its first rows. */
typedef float batch_out[MAX_BATCH * WIDTH_OUT];

/* Reference outputs of one schedule, per configuration, computed by the main thread alone. */
static batch_out reference[N_CONFIGS][N_BATCHES];

static const onyx_model *shared_model;

static onyx_session_options config_options(int config)
{
    onyx_session_options opt;
    onyx_session_options_init(&opt);
    opt.mode = (config & 1) ? ONYX_MODE_TRAIN : ONYX_MODE_INFER;
    opt.threads = (config & 2) ? 2 : 1;
    opt.seed = 1234;
    return opt;
}

/*
 * Runs one schedule on s into out[N_BATCHES]. Batches alternate between outputs in session
 * memory (copied out) and the caller's buffer. Returns false (with the message in msg) when a
 * run fails.
 */
static bool run_schedule(onyx_session *s, batch_out *out, char *msg, size_t msg_size)
{
    const char *in_names[] = {"input"};
    onyx_session_set_seed(s, 1234); /* the same Dropout masks every schedule */
    for (int b = 0; b < N_BATCHES; b++) {
        int64_t n = batch_sizes[b];
        onyx_tensor x = {ONYX_DTYPE_F32, 2, {n, WIDTH_IN}, input};
        onyx_tensor y = {ONYX_DTYPE_UNDEFINED, 0, {0}, NULL};
        if (b % 2 == 1) {
            y.dtype = ONYX_DTYPE_F32;
            y.rank = 2;
            y.dims[0] = n;
            y.dims[1] = WIDTH_OUT;
            y.data = out[b];
        }
        if (onyx_session_run(s, 1, in_names, &x, 1, NULL, &y) != ONYX_OK) {
            snprintf(msg, msg_size, "batch %d: %s", b, onyx_session_errmsg(s));
            return false;
        }
        if (y.data != out[b])
            memcpy(out[b], y.data, sizeof(float) * (size_t)(n * WIDTH_OUT));
    }
    return true;
}

/* True when the outputs of one schedule are bit for bit those of the reference. */
static bool same_as_reference(batch_out *out, int config)
{
    for (int b = 0; b < N_BATCHES; b++) {
        size_t bytes = sizeof(float) * (size_t)(batch_sizes[b] * WIDTH_OUT);
        if (memcmp(out[b], reference[config][b], bytes) != 0)
            return false;
    }
    return true;
}

/* What one worker found. */
typedef struct worker {
    pthread_t thread;
    int id;
    onyx_session *given; /* made by the main thread: a session may move between threads */
    int runs;            /* successful schedules */
    int mismatches;      /* schedules whose outputs differ from the reference in any bit */
    int errors;          /* failed calls */
    char msg[ONYX_ERRMSG_SIZE + 64];
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    batch_out *out = malloc(sizeof(batch_out) * N_BATCHES);
    if (out == NULL) {
        w->errors++;
        return NULL;
    }
    /* First the session the main thread made for this worker (infer mode, one thread). */
    if (!run_schedule(w->given, out, w->msg, sizeof w->msg))
        w->errors++;
    else if (!same_as_reference(out, 0))
        w->mismatches++;
    for (int round = 0; round < N_ROUNDS; round++) {
        /* Each worker walks the configurations in its own order, so different configurations
         * (and session creations) overlap in time. */
        for (int k = 0; k < N_CONFIGS; k++) {
            int config = (k + w->id) % N_CONFIGS;
            onyx_session_options opt = config_options(config);
            onyx_session *s = NULL;
            onyx_error err;
            if (onyx_session_create(shared_model, &opt, &s, &err) != ONYX_OK) {
                snprintf(w->msg, sizeof w->msg, "session_create: %s", err.msg);
                w->errors++;
                continue;
            }
            /* Reading the model's description is allowed while others run on it. */
            onyx_value_info info;
            if (onyx_model_input(shared_model, 0, &info) != ONYX_OK ||
                strcmp(info.name, "input") != 0)
                w->errors++;
            /* Twice on the same session: a reused plan must give the same bits. */
            for (int again = 0; again < 2; again++) {
                if (!run_schedule(s, out, w->msg, sizeof w->msg)) {
                    w->errors++;
                    break;
                }
                w->runs++;
                if (!same_as_reference(out, config))
                    w->mismatches++;
            }
            onyx_session_destroy(s);
        }
    }
    free(out);
    return NULL;
}

int main(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tmp_test_threads_mlp.onnx", ONYX_BINARY_DIR);
    int64_t layers[] = {WIDTH_IN, 48, 32, WIDTH_OUT};
    onyx_mlp_spec spec = {layers, 4, "relu", 0.25f, 11};
    onyx_error err;
    CHECK_OK(onyx_mlp_write(&spec, path, &err), err.msg);
    onyx_model *model = NULL;
    onyx_status st = onyx_model_load(path, &model, &err);
    CHECK_OK(st, err.msg);
    if (st != ONYX_OK)
        return check_report();
    shared_model = model;

    uint32_t r = 12345;
    for (int i = 0; i < MAX_BATCH * WIDTH_IN; i++) {
        r = r * 1664525u + 1013904223u;
        input[i] = (float)(r >> 8) / 16777216.0f * 2.0f - 1.0f;
    }

    /* The reference: every configuration run by this thread alone. */
    for (int config = 0; config < N_CONFIGS; config++) {
        onyx_session_options opt = config_options(config);
        onyx_session *s = NULL;
        CHECK_OK(onyx_session_create(model, &opt, &s, &err), err.msg);
        if (s == NULL)
            continue;
        char msg[ONYX_ERRMSG_SIZE + 64] = "";
        bool ok = run_schedule(s, reference[config], msg, sizeof msg);
        CHECK_OK(ok ? ONYX_OK : ONYX_ERR_INTERNAL, msg);
        onyx_session_destroy(s);
    }
    /* Sanity of the reference: train mode drops units, so its outputs differ from infer's;
     * one or two threads per session give the same bits. */
    size_t full = sizeof(float) * MAX_BATCH * WIDTH_OUT;
    CHECK(memcmp(reference[0][0], reference[1][0], full) != 0);
    CHECK(memcmp(reference[0][0], reference[2][0], full) == 0);
    CHECK(memcmp(reference[1][0], reference[3][0], full) == 0);
    /* The first and last batch of a schedule are the same input: the same output in infer
     * mode, a different Dropout mask in train mode. */
    CHECK(memcmp(reference[0][0], reference[0][N_BATCHES - 1], full) == 0);
    CHECK(memcmp(reference[1][0], reference[1][N_BATCHES - 1], full) != 0);

    worker workers[N_WORKERS];
    memset(workers, 0, sizeof workers);
    int started = 0;
    for (int i = 0; i < N_WORKERS; i++) {
        workers[i].id = i;
        onyx_session_options opt = config_options(0);
        CHECK_OK(onyx_session_create(model, &opt, &workers[i].given, &err), err.msg);
        if (workers[i].given == NULL)
            break;
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            break;
        started++;
    }
    CHECK(started == N_WORKERS);
    for (int i = 0; i < started; i++)
        pthread_join(workers[i].thread, NULL);
    for (int i = 0; i < N_WORKERS; i++)
        onyx_session_destroy(workers[i].given); /* made here, used there, destroyed here */

    int total_runs = 0;
    for (int i = 0; i < started; i++) {
        CHECK_OK(workers[i].errors, workers[i].msg);
        CHECK(workers[i].mismatches == 0);
        CHECK(workers[i].runs == N_ROUNDS * N_CONFIGS * 2);
        total_runs += workers[i].runs;
    }
    printf("%d threads, %d schedules of %d runs on one model: %s\n", started, total_runs, N_BATCHES,
           check_failed_ == 0 ? "bit-identical to one thread" : "MISMATCH");

    onyx_model_destroy(model);
    remove(path);
    return check_report();
}
