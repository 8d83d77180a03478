/*
 * softmax.c — Softmax and LogSoftmax (one impl; node->op_type tells them apart).
 *
 * Opsets 1 and 11 coerce the input to 2-D at `axis` (default 1) and normalise over the
 * flattened trailing dims [a_axis * ... * a_{r-1}]; opset 13 normalises along the one
 * dimension `axis` (default -1). Either way the input is viewed as (outer, n, inner) and the
 * reduction runs over n: inner == 1 is the contiguous-rows case.
 *
 * Numerically stable: softmax = exp(x - max) / sum(exp(x - max)) and
 * log_softmax = x - max - log(sum(exp(x - max))); sums are accumulated in double.
 * Backward works from the forward output y alone (float32).
 *
 * Large float32 tensors are split over the session's thread pool by whole rows (the outer
 * dim, onyx_parallel_for): each row is computed by the same code on one thread, so results do
 * not depend on the thread count.
 */
#include "activation.h"
#include "ops.h"

#include <math.h>
#include <string.h>

typedef struct softmax_priv {
    int64_t axis; /* as given; normalised per run against the input's rank */
    bool log;     /* LogSoftmax */
} softmax_priv;

static onyx_status softmax_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 1, 1, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    int64_t axis;
    if ((st = onyx_attr_int(n, "axis", n->opset >= 13 ? -1 : 1, &axis, err)) != ONYX_OK)
        return st;
    softmax_priv p = {axis, strcmp(n->op_type, "LogSoftmax") == 0};
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

/* x, y: same shape and dtype. */
static onyx_status softmax_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                 onyx_error *err)
{
    const softmax_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    char sx[96];
    onyx_status st = onyx_node_check_float(n, "input", x->dtype, err);
    if (st != ONYX_OK)
        return st;
    if (x->rank == 0)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE, "input is a scalar, expected rank >= 1");
    if (x->rank > 0 && (p->axis < -x->rank || p->axis >= x->rank))
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "axis %lld is out of range for input of shape %s (expected %d to %d)",
                             (long long)p->axis, onyx_shape_str(x, sx, sizeof sx), -x->rank,
                             x->rank - 1);
    out[0].dtype = x->dtype;
    out[0].rank = x->rank;
    for (int i = 0; i < x->rank; i++)
        out[0].dims[i] = x->dims[i];
    return ONYX_OK;
}

/* x, y: (rows, n); each row of y is softmax (or log-softmax) of the row of x. */
static void softmax_rows_f32(const float *restrict x, float *restrict y, int64_t rows, int64_t n,
                             bool log_out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * n;
        float *restrict yr = y + r * n;
        float m = -INFINITY;
        for (int64_t j = 0; j < n; j++)
            m = xr[j] > m ? xr[j] : m;
        double s = 0.0;
        if (log_out) {
            for (int64_t j = 0; j < n; j++)
                s += expf(xr[j] - m);
            float ls = (float)log(s);
            for (int64_t j = 0; j < n; j++)
                yr[j] = (xr[j] - m) - ls;
        } else {
            for (int64_t j = 0; j < n; j++) {
                float e = expf(xr[j] - m);
                yr[j] = e;
                s += e;
            }
            float inv = (float)(1.0 / s);
            for (int64_t j = 0; j < n; j++)
                yr[j] *= inv;
        }
    }
}

/* Columns of the strided case handled at once, with their max and sum on the stack. */
enum { SOFTMAX_CHUNK = 256 };

/* x, y: (outer, n, inner); reduce over n for every (outer, inner) position. Chunks of the
 * inner dim are walked row by row so the loops stay contiguous and vectorisable. */
static void softmax_strided_f32(const float *restrict x, float *restrict y, int64_t outer,
                                int64_t n, int64_t inner, bool log_out)
{
    float mx[SOFTMAX_CHUNK];
    double sum[SOFTMAX_CHUNK];
    float post[SOFTMAX_CHUNK]; /* 1/sum, or log(sum) for log-softmax */
    if (n == 0)
        return;
    for (int64_t o = 0; o < outer; o++) {
        const float *xo = x + o * n * inner;
        float *yo = y + o * n * inner;
        for (int64_t i0 = 0; i0 < inner; i0 += SOFTMAX_CHUNK) {
            int64_t w = inner - i0 < SOFTMAX_CHUNK ? inner - i0 : SOFTMAX_CHUNK;
            for (int64_t i = 0; i < w; i++) {
                mx[i] = xo[i0 + i];
                sum[i] = 0.0;
            }
            for (int64_t k = 1; k < n; k++) {
                const float *xr = xo + k * inner + i0;
                for (int64_t i = 0; i < w; i++)
                    mx[i] = xr[i] > mx[i] ? xr[i] : mx[i];
            }
            for (int64_t k = 0; k < n; k++) {
                const float *xr = xo + k * inner + i0;
                float *yr = yo + k * inner + i0;
                for (int64_t i = 0; i < w; i++) {
                    float e = expf(xr[i] - mx[i]);
                    if (!log_out)
                        yr[i] = e;
                    sum[i] += e;
                }
            }
            for (int64_t i = 0; i < w; i++)
                post[i] = log_out ? (float)log(sum[i]) : (float)(1.0 / sum[i]);
            for (int64_t k = 0; k < n; k++) {
                const float *xr = xo + k * inner + i0;
                float *yr = yo + k * inner + i0;
                if (log_out)
                    for (int64_t i = 0; i < w; i++)
                        yr[i] = (xr[i] - mx[i]) - post[i];
                else
                    for (int64_t i = 0; i < w; i++)
                        yr[i] *= post[i];
            }
        }
    }
}

/* The same for any other floating dtype, element by element in double. */
static void softmax_generic(onyx_dtype dt, const void *x, void *y, int64_t outer, int64_t n,
                            int64_t inner, bool log_out)
{
    if (n == 0)
        return;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * n * inner + i;
            double m = onyx_load_f64(dt, x, base);
            for (int64_t k = 1; k < n; k++) {
                double v = onyx_load_f64(dt, x, base + k * inner);
                m = v > m ? v : m;
            }
            double s = 0.0;
            for (int64_t k = 0; k < n; k++)
                s += exp(onyx_load_f64(dt, x, base + k * inner) - m);
            double ls = log(s);
            for (int64_t k = 0; k < n; k++) {
                double d = onyx_load_f64(dt, x, base + k * inner) - m;
                onyx_store_f64(dt, y, base + k * inner, log_out ? d - ls : exp(d) / s);
            }
        }
    }
}

/* x viewed as (outer, len, inner) with the reduction over len: opsets 1 and 11 flatten every
 * dim from axis into len (inner = 1), opset 13 reduces the one dim axis. */
static void softmax_view(const onyx_node *n, const onyx_tensor *x, int64_t *outer, int64_t *len,
                         int64_t *inner)
{
    const softmax_priv *p = n->priv;
    int rank = x->rank;
    int axis = (int)(p->axis < 0 ? p->axis + rank : p->axis);
    *outer = 1;
    *len = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= x->dims[i];
    if (n->opset < 13) {
        for (int i = axis; i < rank; i++)
            *len *= x->dims[i];
    } else {
        *len = x->dims[axis];
        for (int i = axis + 1; i < rank; i++)
            *inner *= x->dims[i];
    }
}

/* The float32 loops over the outer rows [lo, hi) of (outer, len, inner), for
 * onyx_parallel_for: forward y = softmax(x) (out = y; softmax_range_f32), or backward from the
 * forward's output y (out = dx; softmax_backward_range_f32). */
typedef struct softmax_job {
    const float *x;
    const float *y;
    const float *dy;
    float *out;
    int64_t len;
    int64_t inner;
    bool log;
} softmax_job;

static void softmax_range_f32(void *ctx, int64_t lo, int64_t hi)
{
    const softmax_job *j = ctx;
    int64_t o = lo * j->len * j->inner; /* element offset of row lo */
    if (j->inner == 1)
        softmax_rows_f32(j->x + o, j->out + o, hi - lo, j->len, j->log);
    else
        softmax_strided_f32(j->x + o, j->out + o, hi - lo, j->len, j->inner, j->log);
}

/* x, y: (a_0, ..., a_{r-1}). Spec: Softmax-13 / LogSoftmax-13, and the 2-D coercion of -1/-11. */
static void softmax_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                            onyx_tensor *out)
{
    const softmax_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    int64_t outer;
    int64_t len;
    int64_t inner;
    softmax_view(n, x, &outer, &len, &inner);
    if (x->dtype != ONYX_DTYPE_F32) {
        softmax_generic(x->dtype, x->data, out[0].data, outer, len, inner, p->log);
        return;
    }
    softmax_job j = {.x = x->data, .out = out[0].data, .len = len, .inner = inner, .log = p->log};
    onyx_parallel_for(ctx->pool, outer, len * inner, softmax_range_f32, &j);
}

/*
 * y, dy, dx: (rows, n), y the forward output. Differentiates, per row,
 *   softmax:     y_i = exp(x_i) / sum_j exp(x_j)   ->  dx_i += y_i * (dy_i - sum_j dy_j y_j)
 *   log-softmax: y_i = x_i - log sum_j exp(x_j)    ->  dx_i += dy_i - exp(y_i) * sum_j dy_j
 * (exp(y) of log-softmax is the softmax). The row sum is reduced first, in double.
 */
static void softmax_rows_backward_f32(const float *restrict y, const float *restrict dy,
                                      float *restrict dx, int64_t rows, int64_t n, bool log_out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict yr = y + r * n;
        const float *restrict dyr = dy + r * n;
        float *restrict dxr = dx + r * n;
        double s = 0.0;
        if (log_out) {
            for (int64_t j = 0; j < n; j++)
                s += dyr[j];
            float sf = (float)s;
            for (int64_t j = 0; j < n; j++)
                dxr[j] += dyr[j] - expf(yr[j]) * sf;
        } else {
            for (int64_t j = 0; j < n; j++)
                s += (double)dyr[j] * yr[j];
            float sf = (float)s;
            for (int64_t j = 0; j < n; j++)
                dxr[j] += yr[j] * (dyr[j] - sf);
        }
    }
}

/* The same over (outer, n, inner), reducing over n for every (outer, inner) position; chunks of
 * the inner dim are walked row by row with their sums on the stack, as in the forward. */
static void softmax_strided_backward_f32(const float *restrict y, const float *restrict dy,
                                         float *restrict dx, int64_t outer, int64_t n,
                                         int64_t inner, bool log_out)
{
    double sum[SOFTMAX_CHUNK];
    float sf[SOFTMAX_CHUNK];
    for (int64_t o = 0; o < outer; o++) {
        const float *yo = y + o * n * inner;
        const float *dyo = dy + o * n * inner;
        float *dxo = dx + o * n * inner;
        for (int64_t i0 = 0; i0 < inner; i0 += SOFTMAX_CHUNK) {
            int64_t w = inner - i0 < SOFTMAX_CHUNK ? inner - i0 : SOFTMAX_CHUNK;
            for (int64_t i = 0; i < w; i++)
                sum[i] = 0.0;
            for (int64_t k = 0; k < n; k++) {
                const float *yr = yo + k * inner + i0;
                const float *dyr = dyo + k * inner + i0;
                if (log_out)
                    for (int64_t i = 0; i < w; i++)
                        sum[i] += dyr[i];
                else
                    for (int64_t i = 0; i < w; i++)
                        sum[i] += (double)dyr[i] * yr[i];
            }
            for (int64_t i = 0; i < w; i++)
                sf[i] = (float)sum[i];
            for (int64_t k = 0; k < n; k++) {
                const float *yr = yo + k * inner + i0;
                const float *dyr = dyo + k * inner + i0;
                float *dxr = dxo + k * inner + i0;
                if (log_out)
                    for (int64_t i = 0; i < w; i++)
                        dxr[i] += dyr[i] - expf(yr[i]) * sf[i];
                else
                    for (int64_t i = 0; i < w; i++)
                        dxr[i] += yr[i] * (dyr[i] - sf[i]);
            }
        }
    }
}

static void softmax_backward_range_f32(void *ctx, int64_t lo, int64_t hi)
{
    const softmax_job *j = ctx;
    int64_t o = lo * j->len * j->inner; /* element offset of row lo */
    if (j->inner == 1)
        softmax_rows_backward_f32(j->y + o, j->dy + o, j->out + o, hi - lo, j->len, j->log);
    else
        softmax_strided_backward_f32(j->y + o, j->dy + o, j->out + o, hi - lo, j->len, j->inner,
                                     j->log);
}

/* Gradient w.r.t. the input from the forward output (no saved memory needed); same views as
 * softmax_forward, float32. */
static void softmax_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                             const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    const softmax_priv *p = n->priv;
    if (din[0].data == NULL || dout[0].data == NULL)
        return;
    int64_t outer;
    int64_t len;
    int64_t inner;
    softmax_view(n, &in[0], &outer, &len, &inner);
    softmax_job j = {.y = out[0].data,
                     .dy = dout[0].data,
                     .out = din[0].data,
                     .len = len,
                     .inner = inner,
                     .log = p->log};
    onyx_parallel_for(ctx->pool, outer, len * inner, softmax_backward_range_f32, &j);
}

const onyx_op_impl onyx_impl_softmax = {
    .init = softmax_init,
    .infer = softmax_infer,
    .forward = softmax_forward,
    .backward = softmax_backward,
    .grad_inputs = 0x1u,
};
