/*
 * norm.c — BatchNormalization and LayerNormalization.
 *
 * float32 runs through raw loops; the other floating dtypes go through one generic path that
 * converts each element to double. Means and variances are always accumulated in double.
 * Backward (float32) follows each forward; what it needs from forward (BatchNorm's statistics,
 * LayerNorm's mean and rstd) is kept in ctx->saved during a training step.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

/* ---- BatchNormalization ------------------------------------------------------------------- */

/*
 * Which statistics normalise X depends on the session mode (see onyx.h): INFER uses the
 * running statistics (inputs mean/var), TRAIN the batch statistics, and GRAPH what the spec
 * says for the node's opset:
 *   opset 6:     training when is_test == 0 (its default);
 *   opsets 7, 9: training when more than Y is requested ("Output case #1: Y, mean, var,
 *                saved_mean, saved_var (training mode); Output case #2: Y (test mode)");
 *   opsets 14+:  training when training_mode == 1.
 * In training the outputs are, per channel c (spec BatchNormalization-15):
 *   running_mean = input_mean * momentum + current_mean * (1 - momentum)
 *   running_var  = input_var * momentum + current_var * (1 - momentum)
 * where current_var is the population variance (divided by N*D1*..*Dn, not N-1), which also
 * normalises Y. Opsets 6-9 also output saved_mean/saved_var: the batch mean and variance.
 * Outside training the extra outputs repeat the input statistics.
 */
typedef struct bn_priv {
    float epsilon;
    float momentum;
    bool graph_training; /* what GRAPH mode does */
} bn_priv;

static int present_outputs(const onyx_node *n)
{
    int count = 0;
    for (int i = 0; i < n->n_out; i++)
        count += onyx_node_has_out(n, i);
    return count;
}

static onyx_status bn_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 5, 5, 1, n->opset >= 14 ? 3 : 5, err);
    if (st != ONYX_OK)
        return st;
    bn_priv p;
    if ((st = onyx_attr_float(n, "epsilon", 1e-5f, &p.epsilon, err)) != ONYX_OK ||
        (st = onyx_attr_float(n, "momentum", 0.9f, &p.momentum, err)) != ONYX_OK)
        return st;
    if (n->opset < 9) {
        int64_t spatial;
        if ((st = onyx_attr_int(n, "spatial", 1, &spatial, err)) != ONYX_OK)
            return st;
        if (spatial != 1)
            return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                                 "attribute spatial is %lld, but only spatial=1 is supported "
                                 "(per-activation statistics: flatten X to [N, C*D1*...*Dn] and "
                                 "use spatial=1)",
                                 (long long)spatial);
    }
    if (n->opset >= 14) {
        int64_t training_mode;
        if ((st = onyx_attr_int(n, "training_mode", 0, &training_mode, err)) != ONYX_OK)
            return st;
        p.graph_training = training_mode != 0;
    } else if (n->opset < 7) {
        int64_t is_test;
        if ((st = onyx_attr_int(n, "is_test", 0, &is_test, err)) != ONYX_OK)
            return st;
        p.graph_training = is_test == 0;
    } else {
        p.graph_training = present_outputs(n) > 1;
    }
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

static const char *const bn_in_names[5] = {"X", "scale", "B", "input_mean", "input_var"};

/* X: (N, C, D1, ..., Dn) or (N) with C = 1; scale, B, input_mean, input_var: (C).
 * Y: like X; running_mean, running_var (and saved_mean, saved_var): (C). */
static onyx_status bn_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                            onyx_error *err)
{
    const onyx_tensor *x = &in[0];
    char sx[96];
    char sp[96];
    onyx_status st;
    for (int i = 0; i < 5; i++)
        if ((st = onyx_node_check_float(n, bn_in_names[i], in[i].dtype, err)) != ONYX_OK)
            return st;
    /* Type constraints: one T before opset 14; T for X/scale/B and U for the statistics in
     * opset 14; T, T1 (scale, B) and T2 (statistics) from opset 15. */
    if (n->opset < 14) {
        for (int i = 1; i < 5; i++)
            if ((st = onyx_node_check_same_dtype(n, bn_in_names[i], in[i].dtype, "X", x->dtype,
                                                 err)) != ONYX_OK)
                return st;
    } else {
        st = ONYX_OK;
        if (n->opset == 14)
            st = onyx_node_check_same_dtype(n, "scale", in[1].dtype, "X", x->dtype, err);
        if (st == ONYX_OK)
            st = onyx_node_check_same_dtype(n, "B", in[2].dtype, "scale", in[1].dtype, err);
        if (st == ONYX_OK)
            st = onyx_node_check_same_dtype(n, "input_var", in[4].dtype, "input_mean", in[3].dtype,
                                            err);
        if (st != ONYX_OK)
            return st;
    }
    if (x->rank == 0)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input X is a scalar, expected (N, C, D1, ..., Dn) or (N)");
    int64_t C = x->rank < 0 ? -1 : x->rank >= 2 ? x->dims[1] : 1;
    for (int i = 1; i < 5; i++) {
        const onyx_tensor *t = &in[i];
        if (t->rank < 0)
            continue;
        if (t->rank != 1 || (C >= 0 && t->dims[0] >= 0 && t->dims[0] != C)) {
            if (C >= 0)
                return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                     "input %s has shape %s, expected [%lld] (C of X %s)",
                                     bn_in_names[i], onyx_shape_str(t, sp, sizeof sp),
                                     (long long)C, onyx_shape_str(x, sx, sizeof sx));
            return onyx_node_err(err, n, ONYX_ERR_SHAPE, "input %s has shape %s, expected [C]",
                                 bn_in_names[i], onyx_shape_str(t, sp, sizeof sp));
        }
        if (C < 0)
            C = t->dims[0];
    }
    out[0].dtype = x->dtype;
    out[0].rank = x->rank;
    for (int i = 0; i < x->rank; i++)
        out[0].dims[i] = x->dims[i];
    for (int i = 1; i < n->n_out && i < 5; i++) {
        if (!onyx_node_has_out(n, i))
            continue;
        out[i].dtype = in[3].dtype;
        out[i].rank = 1;
        out[i].dims[0] = C;
    }
    return ONYX_OK;
}

/* x: (N, C*S) viewed at channel offset: the channel's values are the N blocks
 * x[nn * cs .. nn * cs + S). Population mean and variance of those N*S values, in double. */
static void bn_stats_f32(const float *restrict x, int64_t N, int64_t cs, int64_t S, double *mean,
                         double *var)
{
    double s = 0.0;
    for (int64_t nn = 0; nn < N; nn++)
        for (int64_t j = 0; j < S; j++)
            s += x[nn * cs + j];
    double count = (double)N * (double)S;
    double m = s / count;
    double v = 0.0;
    for (int64_t nn = 0; nn < N; nn++)
        for (int64_t j = 0; j < S; j++) {
            double d = x[nn * cs + j] - m;
            v += d * d;
        }
    *mean = m;
    *var = v / count;
}

/* x, y: one channel as above; y = (x - mean) * a + b with a = scale / sqrt(var + eps). */
static void bn_apply_f32(const float *restrict x, float *restrict y, int64_t N, int64_t cs,
                         int64_t S, float mean, float a, float b)
{
    for (int64_t nn = 0; nn < N; nn++) {
        const float *restrict xr = x + nn * cs;
        float *restrict yr = y + nn * cs;
        for (int64_t j = 0; j < S; j++)
            yr[j] = (xr[j] - mean) * a + b;
    }
}

/* The same two steps for any floating dtype; `off` is the channel's first element. */
static void bn_stats_generic(onyx_dtype dt, const void *x, int64_t off, int64_t N, int64_t cs,
                             int64_t S, double *mean, double *var)
{
    double s = 0.0;
    for (int64_t nn = 0; nn < N; nn++)
        for (int64_t j = 0; j < S; j++)
            s += onyx_load_f64(dt, x, off + nn * cs + j);
    double count = (double)N * (double)S;
    double m = s / count;
    double v = 0.0;
    for (int64_t nn = 0; nn < N; nn++)
        for (int64_t j = 0; j < S; j++) {
            double d = onyx_load_f64(dt, x, off + nn * cs + j) - m;
            v += d * d;
        }
    *mean = m;
    *var = v / count;
}

static void bn_apply_generic(onyx_dtype dt, const void *x, void *y, int64_t off, int64_t N,
                             int64_t cs, int64_t S, double mean, double a, double b)
{
    for (int64_t nn = 0; nn < N; nn++)
        for (int64_t j = 0; j < S; j++) {
            int64_t i = off + nn * cs + j;
            onyx_store_f64(dt, y, i, (onyx_load_f64(dt, x, i) - mean) * a + b);
        }
}

/* Whether this run normalises with batch statistics, by session mode (see the top). */
static bool bn_training(const onyx_node *n, const onyx_kctx *ctx)
{
    const bn_priv *p = n->priv;
    return ctx->mode == ONYX_MODE_TRAIN || (ctx->mode == ONYX_MODE_GRAPH && p->graph_training);
}

/* The running statistics after a training run, from the input ones and the batch's (spec
 * BatchNormalization-15); shared by forward's outputs and bn_update_state so both write the
 * same numbers. */
static double bn_momentum_update(double running, double batch, double momentum)
{
    return running * momentum + batch * (1.0 - momentum);
}

/* X: (N, C, D1, ..., Dn); Y like X; the statistics outputs (C). In a training step
 * (ctx->saved != NULL) the mean and variance that normalised X, per channel, also go to
 * ctx->saved as doubles [mean (C) | var (C)] (see bn_saved_size). */
static void bn_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                       onyx_tensor *out)
{
    const bn_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    bool training = bn_training(n, ctx);
    double *saved = ctx->saved;
    int64_t N = x->dims[0];
    int64_t C = x->rank >= 2 ? x->dims[1] : 1;
    int64_t S = 1;
    for (int i = 2; i < x->rank; i++)
        S *= x->dims[i];
    bool f32 = x->dtype == ONYX_DTYPE_F32;
    double eps = p->epsilon;
    double mom = p->momentum;

    for (int64_t c = 0; c < C; c++) {
        double in_mean = onyx_load_f64(in[3].dtype, in[3].data, c);
        double in_var = onyx_load_f64(in[4].dtype, in[4].data, c);
        double mean = in_mean;
        double var = in_var;
        if (training && N * S > 0) {
            if (f32)
                bn_stats_f32((const float *)x->data + c * S, N, C * S, S, &mean, &var);
            else
                bn_stats_generic(x->dtype, x->data, c * S, N, C * S, S, &mean, &var);
        }
        double a = onyx_load_f64(in[1].dtype, in[1].data, c) / sqrt(var + eps);
        double b = onyx_load_f64(in[2].dtype, in[2].data, c);
        if (f32)
            bn_apply_f32((const float *)x->data + c * S, (float *)out[0].data + c * S, N, C * S,
                         S, (float)mean, (float)a, (float)b);
        else
            bn_apply_generic(x->dtype, x->data, out[0].data, c * S, N, C * S, S, mean, a, b);

        if (saved != NULL) {
            saved[c] = mean;
            saved[C + c] = var;
        }

        /* running_mean, running_var, saved_mean, saved_var */
        double stat[5] = {0.0, in_mean, in_var, in_mean, in_var};
        if (training) {
            stat[1] = bn_momentum_update(in_mean, mean, mom);
            stat[2] = bn_momentum_update(in_var, var, mom);
            stat[3] = mean;
            stat[4] = var;
        }
        for (int i = 1; i < n->n_out && i < 5; i++)
            if (onyx_node_has_out(n, i))
                onyx_store_f64(out[i].dtype, out[i].data, c, stat[i]);
    }
}

/*
 * x, dy, dx: one channel as in bn_stats_f32 (N blocks of S values, cs apart), count = N*S.
 * Differentiates y = xhat * scale + b with xhat = (x - mean) * rstd, rstd = 1/sqrt(var + eps).
 * Batch statistics (training): mean and var are functions of the channel's x, so
 *   dx += scale * rstd / count * (count * dy - sum(dy) - xhat * sum(dy * xhat))
 * Running statistics (inference): mean and var are constants, so
 *   dx += dy * scale * rstd
 * Either way *sum_dy = sum(dy) (= dB) and *sum_dy_xhat = sum(dy * xhat) (= dscale), reduced
 * first, in double; dx may be NULL.
 */
static void bn_backward_channel_f32(const float *restrict x, const float *restrict dy,
                                    float *restrict dx, int64_t N, int64_t cs, int64_t S,
                                    double mean, double rstd, double scale, bool batch_stats,
                                    double *sum_dy, double *sum_dy_xhat)
{
    double sdy = 0.0;
    double sdyx = 0.0;
    for (int64_t nn = 0; nn < N; nn++) {
        const float *restrict xr = x + nn * cs;
        const float *restrict dyr = dy + nn * cs;
        for (int64_t j = 0; j < S; j++) {
            sdy += dyr[j];
            sdyx += (double)dyr[j] * ((xr[j] - mean) * rstd);
        }
    }
    *sum_dy = sdy;
    *sum_dy_xhat = sdyx;
    if (dx == NULL || N * S == 0)
        return;
    if (batch_stats) {
        double count = (double)N * (double)S;
        float k = (float)(scale * rstd);    /* term 1: dy * scale * rstd */
        float mdy = (float)(sdy / count);   /* term 2: mean of dy */
        float mdyx = (float)(sdyx / count); /* term 3: xhat * mean(dy * xhat) */
        float m = (float)mean;
        float r = (float)rstd;
        for (int64_t nn = 0; nn < N; nn++) {
            const float *restrict xr = x + nn * cs;
            const float *restrict dyr = dy + nn * cs;
            float *restrict dxr = dx + nn * cs;
            for (int64_t j = 0; j < S; j++) {
                float xhat = (xr[j] - m) * r;
                dxr[j] += k * (dyr[j] - mdy - xhat * mdyx);
            }
        }
    } else {
        float k = (float)(scale * rstd);
        for (int64_t nn = 0; nn < N; nn++) {
            const float *restrict dyr = dy + nn * cs;
            float *restrict dxr = dx + nn * cs;
            for (int64_t j = 0; j < S; j++)
                dxr[j] += dyr[j] * k;
        }
    }
}

/*
 * X, dX: (N, C, D1, ..., Dn); scale, B, dscale, dB: (C). Gradients w.r.t. X, scale and B only
 * (grad_inputs): the statistics inputs are state, and no gradient flows back from the
 * statistics outputs (their dout is ignored, as PyTorch does). The batch statistics come from
 * ctx->saved (what forward used; computed again if nothing was kept), the running ones from
 * in[3] and in[4].
 */
static void bn_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                        const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)out;
    const bn_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    const float *dy = dout[0].data;
    if (dy == NULL)
        return;
    bool batch_stats = bn_training(n, ctx);
    const double *saved = ctx->saved;
    int64_t N = x->dims[0];
    int64_t C = x->rank >= 2 ? x->dims[1] : 1;
    int64_t S = 1;
    for (int i = 2; i < x->rank; i++)
        S *= x->dims[i];
    float *dx = din[0].data;
    float *dscale = din[1].data;
    float *db = din[2].data;
    const float *scale = in[1].data;
    for (int64_t c = 0; c < C; c++) {
        double mean;
        double var;
        if (batch_stats && saved != NULL) {
            mean = saved[c];
            var = saved[C + c];
        } else if (batch_stats && N * S > 0) { /* nothing kept: as forward computed them */
            bn_stats_f32((const float *)x->data + c * S, N, C * S, S, &mean, &var);
        } else {
            mean = onyx_load_f64(in[3].dtype, in[3].data, c);
            var = onyx_load_f64(in[4].dtype, in[4].data, c);
        }
        double rstd = 1.0 / sqrt(var + (double)p->epsilon);
        double sum_dy;
        double sum_dy_xhat;
        bn_backward_channel_f32((const float *)x->data + c * S, dy + c * S,
                                dx != NULL ? dx + c * S : NULL, N, C * S, S, mean, rstd, scale[c],
                                batch_stats, &sum_dy, &sum_dy_xhat);
        if (dscale != NULL)
            dscale[c] += (float)sum_dy_xhat;
        if (db != NULL)
            db[c] += (float)sum_dy;
    }
}

/* Kept for backward and update_state: the mean and variance that normalised X, as doubles,
 * [mean (C) | var (C)]: the batch statistics in training, the running ones otherwise. */
static size_t bn_saved_size(const onyx_node *n, const onyx_tensor *in, const onyx_tensor *out)
{
    (void)n;
    (void)out;
    int64_t C = in[0].rank >= 2 ? in[0].dims[1] : 1;
    return 2 * (size_t)C * sizeof(double);
}

/* After a training step: the new running_mean (state[3]) and running_var (state[4]) from the
 * input ones and the batch statistics forward saved, by the formula forward's outputs 1 and 2
 * use (the same numbers). Outside training the statistics stay as they are. */
static void bn_update_state(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                            onyx_tensor *state)
{
    const bn_priv *p = n->priv;
    const double *saved = ctx->saved;
    bool training = bn_training(n, ctx) && saved != NULL;
    int64_t C = in[0].rank >= 2 ? in[0].dims[1] : 1;
    for (int i = 3; i <= 4; i++) {
        if (state[i].data == NULL)
            continue;
        for (int64_t c = 0; c < C; c++) {
            double v = onyx_load_f64(in[i].dtype, in[i].data, c);
            if (training)
                v = bn_momentum_update(v, saved[(i - 3) * C + c], p->momentum);
            onyx_store_f64(state[i].dtype, state[i].data, c, v);
        }
    }
}

const onyx_op_impl onyx_impl_batchnorm = {
    .init = bn_init,
    .infer = bn_infer,
    .forward = bn_forward,
    .backward = bn_backward,
    .flags = ONYX_OPF_MODE,
    .grad_inputs = 0x7u, /* X, scale, B */
    .saved_size = bn_saved_size,
    .update_state = bn_update_state,
};

/* ---- LayerNormalization ------------------------------------------------------------------- */

typedef struct ln_priv {
    int64_t axis; /* as given; normalised per run */
    float epsilon;
} ln_priv;

static onyx_status ln_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 2, 3, 1, 3, err);
    if (st != ONYX_OK)
        return st;
    ln_priv p;
    int64_t stash_type;
    if ((st = onyx_attr_int(n, "axis", -1, &p.axis, err)) != ONYX_OK ||
        (st = onyx_attr_float(n, "epsilon", 1e-5f, &p.epsilon, err)) != ONYX_OK ||
        (st = onyx_attr_int(n, "stash_type", 1, &stash_type, err)) != ONYX_OK)
        return st;
    if (stash_type != ONYX_DTYPE_F32)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "attribute stash_type is %lld, but only 1 (float32) is supported",
                             (long long)stash_type);
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

/* The normalised dims of X, X.shape[axis:], as a tensor shape. */
static onyx_tensor ln_norm_shape(const onyx_tensor *x, int axis)
{
    onyx_tensor t;
    memset(&t, 0, sizeof(t));
    t.rank = x->rank - axis;
    for (int i = axis; i < x->rank; i++)
        t.dims[i - axis] = x->dims[i];
    return t;
}

/* Scale or B: unidirectionally broadcastable to the normalised dims. */
static onyx_status ln_check_param(const onyx_node *n, const onyx_tensor *t, const char *name,
                                  const onyx_tensor *x, int axis, onyx_error *err)
{
    if (t->rank < 0 || x->rank < 0)
        return ONYX_OK;
    onyx_tensor norm = ln_norm_shape(x, axis);
    if (onyx_broadcast_fits(t, &norm))
        return ONYX_OK;
    char st_[96];
    char sn[96];
    char sx[96];
    return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                         "input %s has shape %s, expected %s (the dims of X %s from axis %d) or a "
                         "shape broadcastable to it",
                         name, onyx_shape_str(t, st_, sizeof st_),
                         onyx_shape_str(&norm, sn, sizeof sn),
                         onyx_shape_str(x, sx, sizeof sx), axis);
}

/* X: (d0, ..., d_{r-1}); Scale, B: broadcastable to (d_axis, ..., d_{r-1});
 * Y: like X; Mean, InvStdDev: (d0, ..., d_{axis-1}, 1, ..., 1), float32. */
static onyx_status ln_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                            onyx_error *err)
{
    const ln_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    char sx[96];
    onyx_status st;
    if ((st = onyx_node_check_float(n, "X", x->dtype, err)) != ONYX_OK ||
        (st = onyx_node_check_same_dtype(n, "Scale", in[1].dtype, "X", x->dtype, err)) != ONYX_OK)
        return st;
    bool has_b = onyx_node_has_in(n, 2);
    if (has_b &&
        (st = onyx_node_check_same_dtype(n, "B", in[2].dtype, "X", x->dtype, err)) != ONYX_OK)
        return st;
    int axis = 0;
    if (x->rank >= 0) {
        if (p->axis < -x->rank || p->axis >= x->rank)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "axis %lld is out of range for input X of shape %s (expected %d "
                                 "to %d)",
                                 (long long)p->axis, onyx_shape_str(x, sx, sizeof sx), -x->rank,
                                 x->rank - 1);
        axis = (int)(p->axis < 0 ? p->axis + x->rank : p->axis);
        if ((st = ln_check_param(n, &in[1], "Scale", x, axis, err)) != ONYX_OK)
            return st;
        if (has_b && (st = ln_check_param(n, &in[2], "B", x, axis, err)) != ONYX_OK)
            return st;
    }
    out[0].dtype = x->dtype;
    out[0].rank = x->rank;
    for (int i = 0; i < x->rank; i++)
        out[0].dims[i] = x->dims[i];
    for (int o = 1; o < n->n_out && o < 3; o++) {
        if (!onyx_node_has_out(n, o))
            continue;
        out[o].dtype = ONYX_DTYPE_F32;
        out[o].rank = x->rank;
        for (int i = 0; i < x->rank; i++)
            out[o].dims[i] = i < axis ? x->dims[i] : 1;
    }
    return ONYX_OK;
}

/*
 * x, y: (rows, D); w: (D); b: (D) or NULL; mean, rstd: (rows) or NULL.
 * Spec LayerNormalization-17, per row:
 *   mean = sum(x) / D, var = sum((x - mean)^2) / D, rstd = 1 / sqrt(var + epsilon),
 *   y = (x - mean) * rstd * w + b
 */
/* xr: (D), one row. Its mean and 1 / sqrt(var + eps), computed in double, rounded to float. */
static void layernorm_row_stats_f32(const float *restrict xr, int64_t D, float eps, float *mean,
                                    float *rstd)
{
    double s = 0.0;
    for (int64_t j = 0; j < D; j++)
        s += xr[j];
    double m = s / (double)D;
    double v = 0.0;
    for (int64_t j = 0; j < D; j++) {
        double d = xr[j] - m;
        v += d * d;
    }
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt(v / (double)D + (double)eps));
}

static void layernorm_f32(const float *restrict x, float *restrict y, int64_t rows, int64_t D,
                          const float *restrict w, const float *restrict b, float eps,
                          float *restrict mean_out, float *restrict rstd_out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * D;
        float *restrict yr = y + r * D;
        float mf;
        float rf;
        layernorm_row_stats_f32(xr, D, eps, &mf, &rf);
        if (b != NULL)
            for (int64_t j = 0; j < D; j++)
                yr[j] = (xr[j] - mf) * rf * w[j] + b[j];
        else
            for (int64_t j = 0; j < D; j++)
                yr[j] = (xr[j] - mf) * rf * w[j];
        if (mean_out != NULL)
            mean_out[r] = mf;
        if (rstd_out != NULL)
            rstd_out[r] = rf;
    }
}

/*
 * The same for any floating dtype, and for Scale/B that are broadcast within the normalised
 * dims: norm is the normalised shape, ws/bs the element strides of Scale/B along it (0 where
 * broadcast); b may be NULL.
 */
static void layernorm_generic(onyx_dtype dt, const void *x, void *y, int64_t rows, int64_t D,
                              const onyx_tensor *norm, const void *w, const int64_t *ws,
                              const void *b, const int64_t *bs, double eps, float *mean_out,
                              float *rstd_out)
{
    int nr = norm->rank;
    for (int64_t r = 0; r < rows; r++) {
        int64_t base = r * D;
        double s = 0.0;
        for (int64_t j = 0; j < D; j++)
            s += onyx_load_f64(dt, x, base + j);
        double m = s / (double)D;
        double v = 0.0;
        for (int64_t j = 0; j < D; j++) {
            double d = onyx_load_f64(dt, x, base + j) - m;
            v += d * d;
        }
        double rstd = 1.0 / sqrt(v / (double)D + eps);
        int64_t idx[ONYX_MAX_RANK] = {0};
        int64_t wo = 0;
        int64_t bo = 0;
        for (int64_t j = 0; j < D; j++) {
            double val = (onyx_load_f64(dt, x, base + j) - m) * rstd * onyx_load_f64(dt, w, wo);
            if (b != NULL)
                val += onyx_load_f64(dt, b, bo);
            onyx_store_f64(dt, y, base + j, val);
            for (int k = nr - 1; k >= 0; k--) { /* odometer over the normalised dims */
                idx[k]++;
                wo += ws[k];
                bo += bs[k];
                if (idx[k] < norm->dims[k])
                    break;
                wo -= ws[k] * idx[k];
                bo -= bs[k] * idx[k];
                idx[k] = 0;
            }
        }
        if (mean_out != NULL)
            mean_out[r] = (float)m;
        if (rstd_out != NULL)
            rstd_out[r] = (float)rstd;
    }
}

/* Where this run's per-row mean and rstd go (forward) or are read from (backward): the Mean and
 * InvStdDev outputs when present, else the halves [mean (rows) | rstd (rows)] of ctx->saved in a
 * training step, else nowhere (NULL). */
static void ln_stats_ptrs(const onyx_node *n, const onyx_kctx *ctx, const onyx_tensor *out,
                          int64_t rows, float **mean, float **rstd)
{
    float *saved = ctx->saved;
    *mean = onyx_node_has_out(n, 1) ? out[1].data : saved;
    *rstd = onyx_node_has_out(n, 2) ? out[2].data : saved != NULL ? saved + rows : NULL;
}

/* X: (d0, ..., d_{r-1}) viewed as (rows, D) with D the product of the dims from axis. */
static void ln_view(const onyx_node *n, const onyx_tensor *x, int *axis, int64_t *rows, int64_t *D)
{
    const ln_priv *p = n->priv;
    *axis = (int)(p->axis < 0 ? p->axis + x->rank : p->axis);
    *rows = 1;
    *D = 1;
    for (int i = 0; i < x->rank; i++) {
        if (i < *axis)
            *rows *= x->dims[i];
        else
            *D *= x->dims[i];
    }
}

static void ln_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                       onyx_tensor *out)
{
    const ln_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    const onyx_tensor *w = &in[1];
    const onyx_tensor *b = onyx_node_has_in(n, 2) ? &in[2] : NULL;
    int axis;
    int64_t rows;
    int64_t D;
    ln_view(n, x, &axis, &rows, &D);
    onyx_tensor norm = ln_norm_shape(x, axis);
    float *mean_out;
    float *rstd_out;
    ln_stats_ptrs(n, ctx, out, rows, &mean_out, &rstd_out);
    bool fast = x->dtype == ONYX_DTYPE_F32 && onyx_numel(w) == D &&
                (b == NULL || onyx_numel(b) == D);
    if (fast) {
        layernorm_f32(x->data, out[0].data, rows, D, w->data, b != NULL ? b->data : NULL,
                      p->epsilon, mean_out, rstd_out);
        return;
    }
    int64_t ws[ONYX_MAX_RANK];
    int64_t bs[ONYX_MAX_RANK] = {0};
    onyx_broadcast_strides(w, &norm, ws);
    if (b != NULL)
        onyx_broadcast_strides(b, &norm, bs);
    layernorm_generic(x->dtype, x->data, out[0].data, rows, D, &norm, w->data, ws,
                      b != NULL ? b->data : NULL, bs, p->epsilon, mean_out, rstd_out);
}

/*
 * x, dy, dx: (rows, D); w, dw, db: (D); mean, rstd: (rows), what forward used, or NULL when
 * nothing was kept: then each row's are computed again exactly as forward did (eps is only
 * for that). Differentiates
 * (llm.c's layernorm_backward) y = xhat * w + b, xhat = (x - mean) * rstd, per row:
 *   dxhat_i = dy_i * w_i
 *   dx_i   += rstd * (dxhat_i - mean(dxhat) - xhat_i * mean(dxhat * xhat))
 *   dw_i   += dy_i * xhat_i,   db_i += dy_i
 * The two row means are reduced first (in double), then every gradient accumulates. dx, dw and
 * db may each be NULL.
 */
static void layernorm_backward_f32(const float *restrict x, const float *restrict dy,
                                   const float *restrict w, const float *restrict mean,
                                   const float *restrict rstd, float eps, int64_t rows, int64_t D,
                                   float *restrict dx, float *restrict dw, float *restrict db)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * D;
        const float *restrict dyr = dy + r * D;
        float m;
        float rs;
        if (mean != NULL && rstd != NULL) {
            m = mean[r];
            rs = rstd[r];
        } else {
            layernorm_row_stats_f32(xr, D, eps, &m, &rs);
        }
        double s_dxhat = 0.0;
        double s_dxhat_xhat = 0.0;
        for (int64_t j = 0; j < D; j++) {
            float xhat = (xr[j] - m) * rs;
            float dxhat = dyr[j] * w[j];
            s_dxhat += dxhat;
            s_dxhat_xhat += (double)dxhat * xhat;
        }
        float mean_dxhat = (float)(s_dxhat / (double)D);
        float mean_dxhat_xhat = (float)(s_dxhat_xhat / (double)D);
        for (int64_t j = 0; j < D; j++) {
            float xhat = (xr[j] - m) * rs;
            if (db != NULL) /* gradient of the bias */
                db[j] += dyr[j];
            if (dw != NULL) /* gradient of the scale */
                dw[j] += dyr[j] * xhat;
            if (dx != NULL) { /* term 1: dxhat; term 2: its mean; term 3: xhat * mean(dxhat*xhat) */
                float dxhat = dyr[j] * w[j];
                dx[r * D + j] += rs * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
            }
        }
    }
}

/*
 * The same when Scale or B is broadcast within the normalised dims: norm is that shape, ws/bs
 * the element strides of Scale/B (and so of dw/db) along it, 0 where broadcast, so dw and db
 * also sum over the broadcast dims. An odometer over norm walks w's offset, as in
 * layernorm_generic. Also the naive reference the contiguous kernel is tested against.
 */
static void layernorm_backward_strided_f32(const float *x, const float *dy, const float *w,
                                           const int64_t *ws, const int64_t *bs,
                                           const onyx_tensor *norm, const float *mean,
                                           const float *rstd, float eps, int64_t rows, int64_t D,
                                           float *dx, float *dw, float *db)
{
    int nr = norm->rank;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * D;
        const float *dyr = dy + r * D;
        float m;
        float rs;
        if (mean != NULL && rstd != NULL) {
            m = mean[r];
            rs = rstd[r];
        } else {
            layernorm_row_stats_f32(xr, D, eps, &m, &rs);
        }
        double s_dxhat = 0.0;
        double s_dxhat_xhat = 0.0;
        for (int pass = 0; pass < 2; pass++) {
            float mean_dxhat = (float)(s_dxhat / (double)D);
            float mean_dxhat_xhat = (float)(s_dxhat_xhat / (double)D);
            int64_t idx[ONYX_MAX_RANK] = {0};
            int64_t wo = 0;
            int64_t bo = 0;
            for (int64_t j = 0; j < D; j++) {
                float xhat = (xr[j] - m) * rs;
                float dxhat = dyr[j] * w[wo];
                if (pass == 0) { /* the row reductions */
                    s_dxhat += dxhat;
                    s_dxhat_xhat += (double)dxhat * xhat;
                } else {
                    if (db != NULL)
                        db[bo] += dyr[j];
                    if (dw != NULL)
                        dw[wo] += dyr[j] * xhat;
                    if (dx != NULL)
                        dx[r * D + j] += rs * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
                }
                for (int k = nr - 1; k >= 0; k--) { /* odometer over the normalised dims */
                    idx[k]++;
                    wo += ws[k];
                    bo += bs[k];
                    if (idx[k] < norm->dims[k])
                        break;
                    wo -= ws[k] * idx[k];
                    bo -= bs[k] * idx[k];
                    idx[k] = 0;
                }
            }
        }
    }
}

/*
 * X, dX: (d0, ..., d_{r-1}); Scale, dScale and B, dB: broadcastable to the normalised dims.
 * Gradients w.r.t. X, Scale and B, from the mean and rstd forward used (its Mean/InvStdDev
 * outputs, or ctx->saved when they are omitted; computed again if neither is there). No
 * gradient flows back from the Mean and InvStdDev outputs (their dout is ignored).
 */
static void ln_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                        const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    const ln_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    const onyx_tensor *w = &in[1];
    const float *dy = dout[0].data;
    float *dx = din[0].data;
    float *dw = din[1].data;
    float *db = onyx_node_has_in(n, 2) ? din[2].data : NULL;
    if (dy == NULL)
        return;
    int axis;
    int64_t rows;
    int64_t D;
    ln_view(n, x, &axis, &rows, &D);
    float *mean;
    float *rstd;
    ln_stats_ptrs(n, ctx, out, rows, &mean, &rstd);
    if (D == 0)
        return;
    bool fast = onyx_numel(w) == D && (db == NULL || onyx_numel(&in[2]) == D);
    if (fast) {
        layernorm_backward_f32(x->data, dy, w->data, mean, rstd, p->epsilon, rows, D, dx, dw, db);
        return;
    }
    onyx_tensor norm = ln_norm_shape(x, axis);
    int64_t ws[ONYX_MAX_RANK];
    int64_t bs[ONYX_MAX_RANK] = {0};
    onyx_broadcast_strides(w, &norm, ws);
    if (db != NULL)
        onyx_broadcast_strides(&in[2], &norm, bs);
    layernorm_backward_strided_f32(x->data, dy, w->data, ws, bs, &norm, mean, rstd, p->epsilon,
                                   rows, D, dx, dw, db);
}

/* Kept for backward when the Mean or InvStdDev output is omitted: [mean (rows) | rstd (rows)]
 * floats, rows = d0 * ... * d_{axis-1}. */
static size_t ln_saved_size(const onyx_node *n, const onyx_tensor *in, const onyx_tensor *out)
{
    (void)out;
    if (onyx_node_has_out(n, 1) && onyx_node_has_out(n, 2))
        return 0;
    int axis;
    int64_t rows;
    int64_t D;
    ln_view(n, &in[0], &axis, &rows, &D);
    return 2 * (size_t)rows * sizeof(float);
}

const onyx_op_impl onyx_impl_layernorm = {
    .init = ln_init,
    .infer = ln_infer,
    .forward = ln_forward,
    .backward = ln_backward,
    .grad_inputs = 0x7u, /* X, Scale, B */
    .saved_size = ln_saved_size,
};
