/*
 * embed_finetune.c — fine-tune a classifier from C with the trainer API.
 *
 *   embed_finetune MODEL.onnx OUT_DIR
 *
 * Trains MODEL (one float32 input [batch, features], one output of logits [batch, classes])
 * for a few Adam steps on a small made-up problem held in memory, writes a checkpoint
 * (OUT_DIR/checkpoint.zip, which onyx_trainer_load or `onyx train --resume` continue from) and
 * the trained inference model (OUT_DIR/finetuned.onnx), then loads that model like any other
 * and checks that it predicts what the trainer predicts.
 *
 * Build against an installed onyx:
 *   cc embed_finetune.c -o embed_finetune $(pkg-config --cflags --libs onyx)
 */
#include <onyx.h>

#include <stdio.h>
#include <stdlib.h>

enum { ROWS = 64, STEPS = 30 };

/* The model's input width and number of classes, from its description. */
static int describe(const char *path, int64_t *features, int64_t *classes)
{
    onyx_model *model = NULL;
    onyx_error err;
    if (onyx_model_load(path, &model, &err) != ONYX_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    onyx_value_info in;
    onyx_value_info out;
    int ok = onyx_model_input(model, 0, &in) == ONYX_OK &&
             onyx_model_output(model, 0, &out) == ONYX_OK && in.rank == 2 && in.dims[1] > 0 &&
             out.rank == 2 && out.dims[1] > 1;
    if (ok) {
        *features = in.dims[1];
        *classes = out.dims[1];
    } else {
        fprintf(stderr, "%s: expected an input [batch, features] and logits [batch, classes]\n",
                path);
    }
    onyx_model_destroy(model);
    return ok ? 0 : -1;
}

/* Runs the exported model in a plain inference session and returns the largest difference
 * from the trainer's predictions (-1 when the run fails). */
static double compare_export(const char *path, const onyx_tensor *x, const onyx_tensor *expected)
{
    onyx_model *model = NULL;
    onyx_session *session = NULL;
    onyx_error err;
    double max_diff = -1;
    if (onyx_model_load(path, &model, &err) != ONYX_OK ||
        onyx_session_create(model, NULL, &session, &err) != ONYX_OK) {
        fprintf(stderr, "%s\n", err.msg);
        goto done;
    }
    onyx_value_info in;
    if (onyx_model_input(model, 0, &in) != ONYX_OK)
        goto done;
    const char *in_names[] = {in.name};
    onyx_tensor y = {0};
    if (onyx_session_run(session, 1, in_names, x, 1, NULL, &y) != ONYX_OK) {
        fprintf(stderr, "%s\n", onyx_session_errmsg(session));
        goto done;
    }
    if (onyx_tensor_numel(&y) != onyx_tensor_numel(expected))
        goto done;
    max_diff = 0;
    for (int64_t i = 0; i < onyx_tensor_numel(&y); i++) {
        double d = (double)((const float *)y.data)[i] - ((const float *)expected->data)[i];
        if (d < 0)
            d = -d;
        if (d > max_diff)
            max_diff = d;
    }
done:
    onyx_session_destroy(session);
    onyx_model_destroy(model);
    return max_diff;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.onnx OUT_DIR\n", argv[0]);
        return 2;
    }
    int64_t features;
    int64_t classes;
    if (describe(argv[1], &features, &classes) != 0)
        return 1;

    /* Made-up data: row i belongs to class i % classes, which lifts feature (i % classes). */
    float *x = malloc(sizeof(float) * (size_t)(ROWS * features));
    int64_t y[ROWS];
    if (x == NULL)
        return 1;
    unsigned noise = 1;
    for (int64_t i = 0; i < ROWS; i++) {
        y[i] = i % classes;
        for (int64_t j = 0; j < features; j++) {
            noise = noise * 1103515245u + 12345u;
            x[i * features + j] = (j == y[i] ? 1.0f : 0.0f) + (float)(noise >> 16 & 0xff) / 1024.0f;
        }
    }
    onyx_tensor xt = {ONYX_DTYPE_F32, 2, {ROWS, features}, x};
    onyx_tensor yt = {ONYX_DTYPE_I64, 1, {ROWS}, y}; /* class indices for the ce loss */

    /* PyTorch's defaults, then what we change: Adam with a larger step than its 1e-3. */
    onyx_train_options opt;
    onyx_train_options_init(&opt);
    opt.loss = ONYX_LOSS_CE;
    opt.optimizer = ONYX_OPTIMIZER_ADAM;
    opt.lr = 0.01f;
    opt.seed = 1; /* Dropout masks: the same run gives the same weights */

    int status = 1;
    onyx_error err;
    onyx_trainer *trainer = NULL;
    if (onyx_trainer_create(argv[1], &opt, &trainer, &err) != ONYX_OK) {
        fprintf(stderr, "%s\n", err.msg);
        goto done;
    }
    float first_loss = 0;
    float loss = 0;
    for (int step = 0; step < STEPS; step++) {
        if (onyx_trainer_step(trainer, &xt, &yt, &loss) != ONYX_OK) {
            fprintf(stderr, "%s\n", onyx_trainer_errmsg(trainer));
            goto done;
        }
        if (step == 0)
            first_loss = loss;
    }
    int64_t correct = 0;
    if (onyx_trainer_eval(trainer, &xt, &yt, NULL, &correct) != ONYX_OK) {
        fprintf(stderr, "%s\n", onyx_trainer_errmsg(trainer));
        goto done;
    }
    printf("%d steps: loss %.4f -> %.4f, %lld of %d rows right\n", STEPS, (double)first_loss,
           (double)loss, (long long)correct, ROWS);

    char checkpoint[4096];
    char exported[4096];
    snprintf(checkpoint, sizeof checkpoint, "%s/checkpoint.zip", argv[2]);
    snprintf(exported, sizeof exported, "%s/finetuned.onnx", argv[2]);
    if (onyx_trainer_save(trainer, checkpoint) != ONYX_OK ||
        onyx_trainer_export(trainer, exported) != ONYX_OK) {
        fprintf(stderr, "%s\n", onyx_trainer_errmsg(trainer));
        goto done;
    }
    printf("wrote %s and %s\n", checkpoint, exported);

    /* The trainer's own predictions (inference mode), in trainer memory until its next call. */
    onyx_tensor predicted = {0};
    if (onyx_trainer_predict(trainer, &xt, &predicted) != ONYX_OK) {
        fprintf(stderr, "%s\n", onyx_trainer_errmsg(trainer));
        goto done;
    }
    double diff = compare_export(exported, &xt, &predicted);
    printf("exported model vs trainer: largest difference %g\n", diff);
    if (diff >= 0 && diff <= 1e-6 && loss < first_loss)
        status = 0;

done:
    onyx_trainer_destroy(trainer);
    free(x);
    return status;
}
