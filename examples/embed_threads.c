/*
 * embed_threads.c — one model, many threads.
 *
 *   embed_threads MODEL.onnx [THREADS]
 *
 * The rules (onyx.h): a loaded model is immutable and may be shared by any number of threads;
 * each thread makes its own session from it (cheap: the weights are not copied) and a session
 * is used by one thread at a time. Here THREADS threads (default 4) share one model, each runs
 * the same batch many times on its own session, and the program checks that every thread got
 * exactly the same bits as a run made before the threads started.
 * The model takes one float32 input [batch, features].
 *
 * Build against an installed onyx:
 *   cc embed_threads.c -o embed_threads $(pkg-config --cflags --libs onyx) -pthread
 */
#define _POSIX_C_SOURCE 200809L /* pthreads under a strict -std=c11 */

#include <onyx.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_THREADS = 64, RUNS = 200, ROWS = 16 };

/* What every thread shares: read-only while the threads run. */
static const onyx_model *model;
static const char *input_name;
static onyx_tensor batch;
static const float *expected; /* the output of one run made before the threads started */
static size_t expected_bytes;

typedef struct job {
    pthread_t thread;
    int ok_runs; /* runs whose output matched `expected` bit for bit */
    char error[ONYX_ERRMSG_SIZE];
} job;

static void *worker(void *arg)
{
    job *j = arg;
    onyx_session *session = NULL;
    onyx_error err;
    if (onyx_session_create(model, NULL, &session, &err) != ONYX_OK) {
        snprintf(j->error, sizeof j->error, "%s", err.msg);
        return NULL;
    }
    for (int i = 0; i < RUNS; i++) {
        onyx_tensor out = {0};
        if (onyx_session_run(session, 1, &input_name, &batch, 1, NULL, &out) != ONYX_OK) {
            snprintf(j->error, sizeof j->error, "%s", onyx_session_errmsg(session));
            break;
        }
        if (memcmp(out.data, expected, expected_bytes) == 0)
            j->ok_runs++;
    }
    onyx_session_destroy(session);
    return NULL;
}

/* One run on a session of its own; the output is copied into a new malloc'd buffer. */
static float *run_once(size_t *bytes)
{
    onyx_session *session = NULL;
    onyx_error err;
    if (onyx_session_create(model, NULL, &session, &err) != ONYX_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    float *copy = NULL;
    onyx_tensor out = {0};
    if (onyx_session_run(session, 1, &input_name, &batch, 1, NULL, &out) != ONYX_OK) {
        fprintf(stderr, "%s\n", onyx_session_errmsg(session));
    } else if (out.dtype != ONYX_DTYPE_F32) {
        fprintf(stderr, "expected a float32 output\n");
    } else {
        *bytes = (size_t)onyx_tensor_numel(&out) * sizeof(float);
        copy = malloc(*bytes);
        if (copy != NULL)
            memcpy(copy, out.data, *bytes);
    }
    onyx_session_destroy(session);
    return copy;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MODEL.onnx [THREADS]\n", argv[0]);
        return 2;
    }
    int n_threads = argc == 3 ? atoi(argv[2]) : 4;
    if (n_threads < 1 || n_threads > MAX_THREADS) {
        fprintf(stderr, "THREADS must be 1 to %d\n", MAX_THREADS);
        return 2;
    }

    onyx_model *loaded = NULL;
    onyx_error err;
    if (onyx_model_load(argv[1], &loaded, &err) != ONYX_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    model = loaded;
    int status = 1;
    float *data = NULL;
    float *reference = NULL;
    onyx_value_info input;
    if (onyx_model_input(model, 0, &input) != ONYX_OK || input.dtype != ONYX_DTYPE_F32 ||
        input.rank != 2 || input.dims[1] <= 0) {
        fprintf(stderr, "%s: expected a float32 input [batch, features]\n", argv[1]);
        goto done;
    }
    input_name = input.name; /* owned by the model */

    int64_t features = input.dims[1];
    data = malloc(sizeof(float) * (size_t)(ROWS * features));
    if (data == NULL)
        goto done;
    for (int64_t i = 0; i < ROWS * features; i++)
        data[i] = (float)((i * 13 + 5) % 23) / 22.0f;
    batch = (onyx_tensor){ONYX_DTYPE_F32, 2, {ROWS, features}, data};

    reference = run_once(&expected_bytes);
    if (reference == NULL)
        goto done;
    expected = reference;

    job jobs[MAX_THREADS];
    memset(jobs, 0, sizeof jobs);
    int started = 0;
    while (started < n_threads &&
           pthread_create(&jobs[started].thread, NULL, worker, &jobs[started]) == 0)
        started++;
    int identical = 0;
    for (int t = 0; t < started; t++) {
        pthread_join(jobs[t].thread, NULL);
        if (jobs[t].error[0] != '\0')
            fprintf(stderr, "thread %d: %s\n", t, jobs[t].error);
        identical += jobs[t].ok_runs;
    }
    printf("%d threads x %d runs on one model: %d identical to the reference\n", started, RUNS,
           identical);
    if (started == n_threads && identical == n_threads * RUNS)
        status = 0;

done:
    free(reference);
    free(data);
    onyx_model_destroy(loaded);
    return status;
}
