/*
 * dropout.c — Dropout, every opset.
 *
 * What the op does depends on the session mode (see the top of onyx.h):
 *  - INFER: Y = X and mask all true, whatever the model says.
 *  - TRAIN: drop with probability `ratio`, whatever the model says.
 *  - GRAPH: what the spec says for the node's opset:
 *      opsets 1, 6: drops when attribute is_test == 0 (its default);
 *      opsets 7, 10: never drops (inference-only op);
 *      opsets 12+: drops when the training_mode input is present and true.
 * The ratio is the `ratio` input in opsets 12+ (0.5 when omitted), else the `ratio` attribute
 * (default 0.5). A ratio of 0 never draws random numbers and gives Y = X.
 * When dropping: mask = (u >= ratio) with u uniform in [0, 1), and Y = X * mask * scale with
 * scale = 1 / (1 - ratio) in float32.
 *  - With a `seed` attribute (opsets 12+) u comes from MT19937 seeded with it on every run, the
 *    numbers numpy.random.seed(seed); numpy.random.uniform(0, 1, x.shape) gives — so the mask
 *    is the ONNX reference's, bit for bit.
 *  - Otherwise u comes from the session's generator, so runs are reproducible from its seed.
 * The mask output is bool in opsets 10+ and has the input's type (1 or 0) in opsets 1-7.
 *
 * Backward (w.r.t. data only): dx = dy * mask * scale, with the mask forward kept in ctx->saved
 * (one byte per element) so that no random number is drawn again.
 */
#include "ops.h"

#include <string.h>

typedef struct dropout_priv {
    float ratio;   /* the attribute (opsets < 12) */
    bool is_test;  /* opsets 1 and 6 */
    bool has_seed; /* opsets 12+ */
    int64_t seed;
} dropout_priv;

static bool ratio_ok(double r)
{
    return r >= 0.0 && r < 1.0; /* false for NaN */
}

static onyx_status dropout_init(onyx_node *n, onyx_error *err)
{
    onyx_status st;
    dropout_priv p = {.ratio = 0.5f};
    if (n->opset >= 12) {
        if ((st = onyx_node_check_arity(n, 1, 3, 1, 2, err)) != ONYX_OK)
            return st;
        p.has_seed = onyx_node_attr(n, "seed") != NULL;
        if ((st = onyx_attr_int(n, "seed", 0, &p.seed, err)) != ONYX_OK)
            return st;
    } else {
        if ((st = onyx_node_check_arity(n, 1, 1, 1, 2, err)) != ONYX_OK)
            return st;
        if ((st = onyx_attr_float(n, "ratio", 0.5f, &p.ratio, err)) != ONYX_OK)
            return st;
        if (!ratio_ok(p.ratio))
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "attribute ratio is %g, expected a value in [0, 1)",
                                 (double)p.ratio);
        if (n->opset < 7) {
            int64_t is_test;
            if ((st = onyx_attr_int(n, "is_test", 0, &is_test, err)) != ONYX_OK)
                return st;
            p.is_test = is_test != 0;
        }
    }
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

/* A scalar input: rank 0, or one element. */
static bool is_scalar_shape(const onyx_tensor *t)
{
    if (t->rank <= 0)
        return true; /* scalar, or unknown */
    for (int i = 0; i < t->rank; i++)
        if (t->dims[i] != 1 && t->dims[i] >= 0)
            return false;
    return true;
}

/* data: (any), ratio: scalar, training_mode: bool scalar -> output: like data, mask: like data. */
static onyx_status dropout_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                 onyx_error *err)
{
    const onyx_tensor *x = &in[0];
    char s[96];
    onyx_status st = onyx_node_check_float(n, "data", x->dtype, err);
    if (st != ONYX_OK)
        return st;
    if (onyx_node_has_in(n, 1)) {
        const onyx_tensor *r = &in[1];
        if (!onyx_dtype_is_float(r->dtype))
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input ratio has type %s, expected a floating-point scalar",
                                 onyx_dtype_name(r->dtype));
        if (!is_scalar_shape(r))
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input ratio has shape %s, expected a scalar",
                                 onyx_shape_str(r, s, sizeof s));
        if (r->data != NULL && onyx_shape_known(r)) {
            double v = onyx_load_f64(r->dtype, r->data, 0);
            if (!ratio_ok(v))
                return onyx_node_err(err, n, ONYX_ERR_INVALID_ARG,
                                     "input ratio is %g, expected a value in [0, 1)", v);
        }
    }
    if (onyx_node_has_in(n, 2)) {
        const onyx_tensor *t = &in[2];
        if (t->dtype != ONYX_DTYPE_BOOL)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input training_mode has type %s, expected bool",
                                 onyx_dtype_name(t->dtype));
        if (!is_scalar_shape(t))
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input training_mode has shape %s, expected a scalar",
                                 onyx_shape_str(t, s, sizeof s));
    }
    for (int i = 0; i < 2 && i < n->n_out; i++) {
        if (!onyx_node_has_out(n, i))
            continue;
        out[i].dtype = x->dtype;
        out[i].rank = x->rank;
        for (int d = 0; d < x->rank; d++)
            out[i].dims[d] = x->dims[d];
    }
    if (onyx_node_has_out(n, 1) && n->opset >= 10)
        out[1].dtype = ONYX_DTYPE_BOOL;
    return ONYX_OK;
}

/* Whether this run drops, by session mode and (GRAPH) the spec of the node's opset. */
static bool dropout_training(const onyx_node *n, const onyx_kctx *ctx, const onyx_tensor *in)
{
    const dropout_priv *p = n->priv;
    switch (ctx->mode) {
    case ONYX_MODE_INFER: return false;
    case ONYX_MODE_TRAIN: return true;
    case ONYX_MODE_GRAPH: break;
    }
    if (n->opset >= 12)
        return onyx_node_has_in(n, 2) && onyx_load_f64(in[2].dtype, in[2].data, 0) != 0.0;
    if (n->opset >= 7)
        return false;
    return !p->is_test;
}

/*
 * x, y: (numel); keep: (numel) of 0/1, or NULL when the mask is not wanted; mt: seeded MT19937
 * or NULL to draw from rng. y[i] = x[i] * keep[i] * scale, keep[i] = (u_i >= ratio).
 * Random numbers are inherently sequential: from the session's generator the mask is drawn in
 * one tight loop (onyx_rng_keep, the same draws), then applied in a loop that vectorises.
 */
static void dropout_f32(const float *restrict x, float *restrict y, uint8_t *restrict keep,
                        int64_t numel, double ratio, float scale, onyx_mt19937 *mt, onyx_rng *rng)
{
    if (mt == NULL && keep != NULL) {
        onyx_rng_keep(rng, ratio, keep, numel);
        for (int64_t i = 0; i < numel; i++)
            y[i] = (x[i] * (keep[i] ? 1.0f : 0.0f)) * scale;
        return;
    }
    for (int64_t i = 0; i < numel; i++) {
        double u = mt != NULL ? onyx_mt_double(mt) : onyx_rng_double(rng);
        bool k = u >= ratio;
        /* x * mask * scale as the reference computes it: a dropped NaN stays NaN, -x gives -0 */
        y[i] = (x[i] * (k ? 1.0f : 0.0f)) * scale;
        if (keep != NULL)
            keep[i] = k;
    }
}

/* The same for any other floating dtype (and a typed mask in opsets < 10); keep (0/1 bytes,
 * the saved mask) may be NULL too. */
static void dropout_generic(onyx_dtype dt, const void *x, void *y, onyx_dtype mask_dt, void *mask,
                            uint8_t *keep, int64_t numel, double ratio, float scale,
                            onyx_mt19937 *mt, onyx_rng *rng)
{
    for (int64_t i = 0; i < numel; i++) {
        double u = mt != NULL ? onyx_mt_double(mt) : onyx_rng_double(rng);
        bool k = u >= ratio;
        onyx_store_f64(dt, y, i, onyx_load_f64(dt, x, i) * (k ? 1.0 : 0.0) * (double)scale);
        if (mask != NULL)
            onyx_store_f64(mask_dt, mask, i, k ? 1.0 : 0.0);
        if (keep != NULL)
            keep[i] = k;
    }
}

/* The ratio of this run: the input (opsets 12+, 0.5 when omitted) or the attribute. */
static double dropout_ratio(const onyx_node *n, const onyx_tensor *in)
{
    const dropout_priv *p = n->priv;
    if (n->opset >= 12)
        return onyx_node_has_in(n, 1) ? onyx_load_f64(in[1].dtype, in[1].data, 0) : 0.5;
    return p->ratio; /* float attribute, widened exactly */
}

/* The factor kept elements are multiplied by: 1 / (1 - ratio) in float32 when dropping. */
static float dropout_scale(double ratio)
{
    return 1.0f / (1.0f - (float)ratio);
}

/* x, y: (any shape); mask: like x. In a training step (ctx->saved != NULL) the keep mask also
 * goes to ctx->saved, one byte (0/1) per element, all ones when this run does not drop, for
 * dropout_backward. */
static void dropout_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                            onyx_tensor *out)
{
    const dropout_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    onyx_tensor *y = &out[0];
    onyx_tensor *mask = onyx_node_has_out(n, 1) ? &out[1] : NULL;
    uint8_t *saved = ctx->saved;
    int64_t numel = onyx_numel(x);

    double ratio = dropout_ratio(n, in);
    bool drop = dropout_training(n, ctx, in) && ratio != 0.0;

    if (!drop) {
        memcpy(y->data, x->data, onyx_nbytes(x));
        if (saved != NULL)
            memset(saved, 1, (size_t)numel);
        if (mask != NULL) {
            if (mask->dtype == ONYX_DTYPE_BOOL)
                memset(mask->data, 1, (size_t)numel);
            else
                for (int64_t i = 0; i < numel; i++)
                    onyx_store_f64(mask->dtype, mask->data, i, 1.0);
        }
        return;
    }

    float scale = dropout_scale(ratio);
    onyx_mt19937 mt;
    onyx_mt19937 *mtp = NULL;
    if (p->has_seed) {
        onyx_mt_seed(&mt, (uint32_t)p->seed);
        mtp = &mt;
    }
    if (x->dtype == ONYX_DTYPE_F32 && (mask == NULL || mask->dtype == ONYX_DTYPE_BOOL)) {
        /* bool is one byte of 0/1 too: draw into the saved mask when there is one, then copy */
        uint8_t *keep = saved != NULL ? saved : mask != NULL ? mask->data : NULL;
        dropout_f32(x->data, y->data, keep, numel, ratio, scale, mtp, ctx->rng);
        if (mask != NULL && keep != mask->data)
            memcpy(mask->data, keep, (size_t)numel);
    } else {
        dropout_generic(x->dtype, x->data, y->data, mask != NULL ? mask->dtype : ONYX_DTYPE_BOOL,
                        mask != NULL ? mask->data : NULL, saved, numel, ratio, scale, mtp,
                        ctx->rng);
    }
}

/*
 * dy, dx: (numel); keep: (numel) 0/1 bytes. Differentiates y = (x * keep) * scale:
 *   dx += (dy * keep) * scale.
 */
static void dropout_backward_f32(const float *restrict dy, const uint8_t *restrict keep,
                                 float *restrict dx, int64_t numel, float scale)
{
    for (int64_t i = 0; i < numel; i++)
        dx[i] += (dy[i] * (keep[i] ? 1.0f : 0.0f)) * scale;
}

/* Gradient w.r.t. data only, through the mask forward saved (never drawn again); the mask output
 * gets none. A run that does not drop (inference, ratio 0, the spec's test mode) passes dy
 * through. A dropping run needs the saved mask: every training step has it (saved_size is
 * never 0 for a non-empty input); without it the mask is unknown and dy passes through too. */
static void dropout_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                             const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)out;
    float *dx = din[0].data;
    const float *dy = dout[0].data;
    if (dx == NULL || dy == NULL)
        return;
    int64_t numel = onyx_numel(&in[0]);
    double ratio = dropout_ratio(n, in);
    bool drop = dropout_training(n, ctx, in) && ratio != 0.0;
    if (!drop || ctx->saved == NULL) {
        for (int64_t i = 0; i < numel; i++)
            dx[i] += dy[i];
        return;
    }
    dropout_backward_f32(dy, ctx->saved, dx, numel, dropout_scale(ratio));
}

/* One byte per element: the keep mask of a training step. */
static size_t dropout_saved_size(const onyx_node *n, const onyx_tensor *in, const onyx_tensor *out)
{
    (void)n;
    (void)out;
    return (size_t)onyx_numel(&in[0]);
}

const onyx_op_impl onyx_impl_dropout = {
    .init = dropout_init,
    .infer = dropout_infer,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .flags = ONYX_OPF_RANDOM | ONYX_OPF_MODE,
    .grad_inputs = 0x1u, /* data; not ratio or training_mode */
    .saved_size = dropout_saved_size,
};
