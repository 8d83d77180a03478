/*
 * norm.c — BatchNormalization and LayerNormalization.
 *
 * float32 runs through raw loops; the other floating dtypes go through one generic path that
 * converts each element to double. Means and variances are always accumulated in double.
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

static void bn_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                       onyx_tensor *out)
{
    const bn_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    bool training = ctx->mode == ONYX_MODE_TRAIN ||
                    (ctx->mode == ONYX_MODE_GRAPH && p->graph_training);
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

        /* running_mean, running_var, saved_mean, saved_var */
        double stat[5] = {0.0, in_mean, in_var, in_mean, in_var};
        if (training) {
            stat[1] = in_mean * mom + mean * (1.0 - mom);
            stat[2] = in_var * mom + var * (1.0 - mom);
            stat[3] = mean;
            stat[4] = var;
        }
        for (int i = 1; i < n->n_out && i < 5; i++)
            if (onyx_node_has_out(n, i))
                onyx_store_f64(out[i].dtype, out[i].data, c, stat[i]);
    }
}

const onyx_op_impl onyx_impl_batchnorm = {
    .init = bn_init,
    .infer = bn_infer,
    .forward = bn_forward,
    .flags = ONYX_OPF_MODE,
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
static void layernorm_f32(const float *restrict x, float *restrict y, int64_t rows, int64_t D,
                          const float *restrict w, const float *restrict b, float eps,
                          float *restrict mean_out, float *restrict rstd_out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * D;
        float *restrict yr = y + r * D;
        double s = 0.0;
        for (int64_t j = 0; j < D; j++)
            s += xr[j];
        double m = s / (double)D;
        double v = 0.0;
        for (int64_t j = 0; j < D; j++) {
            double d = xr[j] - m;
            v += d * d;
        }
        double rstd = 1.0 / sqrt(v / (double)D + (double)eps);
        float mf = (float)m;
        float rf = (float)rstd;
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

static void ln_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                       onyx_tensor *out)
{
    (void)ctx;
    const ln_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    const onyx_tensor *w = &in[1];
    const onyx_tensor *b = onyx_node_has_in(n, 2) ? &in[2] : NULL;
    int axis = (int)(p->axis < 0 ? p->axis + x->rank : p->axis);
    onyx_tensor norm = ln_norm_shape(x, axis);
    int64_t D = onyx_numel(&norm);
    int64_t rows = 1;
    for (int i = 0; i < axis; i++)
        rows *= x->dims[i];
    float *mean_out = onyx_node_has_out(n, 1) ? out[1].data : NULL;
    float *rstd_out = onyx_node_has_out(n, 2) ? out[2].data : NULL;
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

const onyx_op_impl onyx_impl_layernorm = {
    .init = ln_init,
    .infer = ln_infer,
    .forward = ln_forward,
};
