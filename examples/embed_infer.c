/*
 * embed_infer.c — classify a batch with onyx from C.
 *
 *   embed_infer MODEL.onnx [BATCH.csv|BATCH.npy]
 *
 * Loads the model, creates an inference session, runs one batch and prints the top class of
 * each row. The batch is read from a file (CSV: one row per line; .npy or ONNX .pb: a
 * [rows, features] float32 tensor) or, without a file, made up: four rows of numbers.
 * The model takes one float32 input [batch, features] and gives one output [batch, classes].
 *
 * Dropout is off here without asking: a session runs in ONYX_MODE_INFER unless told otherwise,
 * even when the model was exported in training mode.
 *
 * Build against an installed onyx:
 *   cc embed_infer.c -o embed_infer $(pkg-config --cflags --libs onyx)
 */
#include <onyx.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MODEL.onnx [BATCH.csv|BATCH.npy]\n", argv[0]);
        return 2;
    }
    int status = 1;
    onyx_error err;
    onyx_model *model = NULL;
    onyx_session *session = NULL;
    onyx_tensor batch = {0};
    float *made_up = NULL;

    if (onyx_model_load(argv[1], &model, &err) != ONYX_OK) {
        fprintf(stderr, "%s\n", err.msg);
        goto done;
    }

    /* The model says what it takes: name, element type, shape (-1 for the batch dimension). */
    onyx_value_info input;
    if (onyx_model_input_count(model) != 1 || onyx_model_input(model, 0, &input) != ONYX_OK ||
        input.dtype != ONYX_DTYPE_F32 || input.rank != 2 || input.dims[1] <= 0) {
        fprintf(stderr, "%s: expected one float32 input [batch, features]\n", argv[1]);
        goto done;
    }
    int64_t features = input.dims[1];

    if (argc == 3) {
        /* The data is malloc'd by onyx; onyx_tensor_free() releases it. */
        if (onyx_tensor_read_file(argv[2], &batch, NULL, &err) != ONYX_OK) {
            fprintf(stderr, "%s\n", err.msg);
            goto done;
        }
    } else {
        int64_t rows = 4;
        made_up = malloc(sizeof(float) * (size_t)(rows * features));
        if (made_up == NULL) {
            fprintf(stderr, "out of memory\n");
            goto done;
        }
        for (int64_t i = 0; i < rows * features; i++)
            made_up[i] = (float)((i * 7 + 3) % 17) / 16.0f;
        batch = (onyx_tensor){ONYX_DTYPE_F32, 2, {rows, features}, made_up};
    }

    /* NULL options: inference mode, the library's default number of threads. */
    if (onyx_session_create(model, NULL, &session, &err) != ONYX_OK) {
        fprintf(stderr, "%s\n", err.msg);
        goto done;
    }

    /* The input is borrowed for the call; the output (data NULL) lands in session memory,
     * valid until the next run or the session's destruction. */
    const char *in_names[] = {input.name};
    onyx_tensor scores = {0};
    if (onyx_session_run(session, 1, in_names, &batch, 1, NULL, &scores) != ONYX_OK) {
        fprintf(stderr, "%s\n", onyx_session_errmsg(session));
        goto done;
    }
    if (scores.dtype != ONYX_DTYPE_F32 || scores.rank != 2) {
        fprintf(stderr, "%s: expected a float32 output [batch, classes]\n", argv[1]);
        goto done;
    }

    const float *y = scores.data;
    int64_t classes = scores.dims[1];
    for (int64_t r = 0; r < scores.dims[0]; r++) {
        const float *row = y + r * classes;
        int64_t best = 0;
        for (int64_t c = 1; c < classes; c++)
            if (row[c] > row[best])
                best = c;
        printf("row %lld: class %lld (score %.4f)\n", (long long)r, (long long)best,
               (double)row[best]);
    }
    status = 0;

done:
    onyx_session_destroy(session); /* every destroy accepts NULL */
    if (made_up == NULL)
        onyx_tensor_free(&batch);
    free(made_up);
    onyx_model_destroy(model);
    return status;
}
