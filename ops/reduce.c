/*
 * reduce.c — ReduceSum and ReduceMean.
 *
 * The axes are an attribute up to ReduceSum-11 / ReduceMean-13 and an optional int64 input from
 * ReduceSum-13 / ReduceMean-18 on, when the noop_with_empty_axes attribute appears too: with
 * no (or empty) axes the op reduces everything, or is the identity when noop_with_empty_axes=1.
 * keepdims (default 1) keeps the reduced dims as 1s.
 *
 * Sums run in a fixed order whatever the threading, in double (float types) or wrapping int64
 * (integer types). Reducing an empty set gives 0 (sum) and NaN (mean of floats).
 * float32 has direct loops for the common layouts after merging adjacent dims: (K, R) reduce
 * the last dims, (R, K) and (K1, R, K2) reduce a leading or middle block. Everything else
 * (other dtypes, other layouts) goes through one generic odometer loop, the naive reference.
 *
 * Backward (float32): every element of x went into exactly one output element, with weight 1
 * (ReduceSum) or 1/count (ReduceMean), so dx += dy broadcast back over the reduced axes (times
 * 1/count for the mean); with noop_with_empty_axes and no axes, dx += dy.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

typedef struct reduce_priv {
    bool mean;
    bool axes_input;     /* axes come from input 1 */
    bool has_axes;       /* the attribute was given (attribute opsets) */
    const int64_t *axes; /* the attribute's values, owned by the model */
    int64_t n_axes;
    bool keepdims;
    bool noop; /* noop_with_empty_axes (input opsets) */
} reduce_priv;

static onyx_status reduce_init(onyx_node *n, onyx_error *err)
{
    bool mean = strcmp(n->op_type, "ReduceMean") == 0;
    if (!mean && strcmp(n->op_type, "ReduceSum") != 0)
        return onyx_node_err(err, n, ONYX_ERR_INTERNAL, "reduce impl given op %s", n->op_type);
    bool axes_input = n->opset >= (mean ? 18 : 13);
    onyx_status st = onyx_node_check_arity(n, 1, axes_input ? 2 : 1, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    reduce_priv parsed = {0};
    reduce_priv *p = &parsed;
    p->mean = mean;
    p->axes_input = axes_input;
    st = onyx_attr_flag(n, "keepdims", true, &p->keepdims, err);
    if (st != ONYX_OK)
        return st;
    if (axes_input) {
        if (onyx_node_attr(n, "axes") != NULL)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "has an axes attribute; from opset %d axes is input 1",
                                 mean ? 18 : 13);
        st = onyx_attr_flag(n, "noop_with_empty_axes", false, &p->noop, err);
        if (st != ONYX_OK)
            return st;
        return onyx_node_set_priv(n, p, sizeof(*p), err);
    }
    size_t count;
    st = onyx_attr_ints(n, "axes", &p->axes, &count, &p->has_axes, err);
    p->n_axes = (int64_t)count;
    if (st != ONYX_OK)
        return st;
    return onyx_node_set_priv(n, p, sizeof(*p), err);
}

enum { PLAN_NOOP, PLAN_UNKNOWN, PLAN_REDUCE };

/*
 * Decides what the node does to input x: PLAN_NOOP (the output is the input), PLAN_REDUCE with
 * the reduced axes marked in mark[], or PLAN_UNKNOWN when x's rank or the axes' values are not
 * known yet (*n_axes is then the axes' count, or -1 when that is unknown too). Checks the axes
 * input's dtype and shape, and the axes' range (negative from opset 11) and uniqueness.
 */
static onyx_status reduce_plan(const onyx_node *n, const onyx_tensor *in, int *plan,
                               bool mark[ONYX_MAX_RANK], int64_t *n_axes, onyx_error *err)
{
    const reduce_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    bool given = p->has_axes;
    int64_t len = p->n_axes;
    const int64_t *axes = p->axes;
    char s[160];
    if (p->axes_input) {
        given = onyx_node_has_in(n, 1) && in[1].dtype != ONYX_DTYPE_UNDEFINED;
        len = 0;
        axes = NULL;
        if (given) {
            const onyx_tensor *t = &in[1];
            if (t->dtype != ONYX_DTYPE_I64)
                return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                     "input 1 (axes) has dtype %s, expected int64",
                                     onyx_dtype_name(t->dtype));
            if (t->rank > 1)
                return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                     "input 1 (axes) has shape %s, expected 1-D",
                                     onyx_shape_str(t, s, sizeof s));
            len = t->rank < 0 ? -1 : t->rank == 0 ? 1 : t->dims[0];
            if (len < 0)
                len = -1;
            else if (len > 0)
                axes = t->data; /* NULL when not known yet */
        }
    }
    *n_axes = len;
    for (int i = 0; i < ONYX_MAX_RANK; i++)
        mark[i] = false;
    bool empty = !given || len == 0;
    if (empty && p->axes_input && p->noop) {
        *plan = PLAN_NOOP;
        return ONYX_OK;
    }
    *plan = PLAN_UNKNOWN;
    if (x->rank < 0 || (!empty && axes == NULL))
        return ONYX_OK;
    *plan = PLAN_REDUCE;
    if (empty) {
        for (int i = 0; i < x->rank; i++)
            mark[i] = true;
        return ONYX_OK;
    }
    for (int64_t i = 0; i < len; i++) {
        int64_t a = axes[i] < 0 ? axes[i] + x->rank : axes[i];
        if (axes[i] < 0 && n->opset < 11)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "axes %s has a negative entry; negative axes need opset 11 or "
                                 "later",
                                 onyx_ints_str(axes, len, s, sizeof s));
        if (a < 0 || a >= x->rank)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "axes %s: entry %lld is out of range [%d, %d] for input 0 "
                                 "(data) of rank %d",
                                 onyx_ints_str(axes, len, s, sizeof s), (long long)axes[i],
                                 -x->rank, x->rank - 1, x->rank);
        if (mark[a])
            return onyx_node_err(err, n, ONYX_ERR_SHAPE, "axes %s names axis %lld twice",
                                 onyx_ints_str(axes, len, s, sizeof s), (long long)a);
        mark[a] = true;
    }
    return ONYX_OK;
}

/*
 * data: (d_0, ..., d_{r-1}) -> reduced: d_i replaced by 1 (keepdims=1) or dropped (keepdims=0)
 * for each reduced axis i; reduced[j] = sum (or mean) of data over the reduced axes.
 */
static onyx_status reduce_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                onyx_error *err)
{
    const reduce_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    if (!onyx_dtype_is_float(x->dtype) && !onyx_dtype_is_int(x->dtype))
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input 0 (data) has dtype %s, expected a numeric type",
                             onyx_dtype_name(x->dtype));
    int plan;
    bool mark[ONYX_MAX_RANK];
    int64_t n_axes;
    onyx_status st = reduce_plan(n, in, &plan, mark, &n_axes, err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = x->dtype;
    out[0].rank = -1;
    if (plan == PLAN_NOOP) {
        out[0].rank = x->rank;
        for (int i = 0; i < x->rank; i++)
            out[0].dims[i] = x->dims[i];
        return ONYX_OK;
    }
    if (plan == PLAN_UNKNOWN) {
        /* Which axes go is unknown: the rank may still be known. */
        if (x->rank >= 0 && (p->keepdims || n_axes >= 0)) {
            out[0].rank = p->keepdims ? x->rank : x->rank - (int)n_axes;
            if (out[0].rank < 0)
                return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                     "input 1 (axes) has %lld entries, more than the rank "
                                     "%d of input 0 (data)",
                                     (long long)n_axes, x->rank);
            for (int i = 0; i < out[0].rank; i++)
                out[0].dims[i] = -1;
        }
        return ONYX_OK;
    }
    int r = 0;
    for (int i = 0; i < x->rank; i++) {
        if (!mark[i])
            out[0].dims[r++] = x->dims[i];
        else if (p->keepdims)
            out[0].dims[r++] = 1;
    }
    out[0].rank = r;
    return ONYX_OK;
}

/* ---- kernels ------------------------------------------------------------------------------ */

/* x: (rows, len) -> y: (rows); y[i] = (sum_j x[i, j]) / div, summed in double, four partial
 * sums in a fixed order. */
static void reduce_last_f32(const float *restrict x, float *restrict y, int64_t rows,
                            int64_t len, double div)
{
    for (int64_t i = 0; i < rows; i++) {
        const float *row = x + i * len;
        double s0 = 0.0;
        double s1 = 0.0;
        double s2 = 0.0;
        double s3 = 0.0;
        int64_t j = 0;
        for (; j + 4 <= len; j += 4) {
            s0 += row[j];
            s1 += row[j + 1];
            s2 += row[j + 2];
            s3 += row[j + 3];
        }
        for (; j < len; j++)
            s0 += row[j];
        y[i] = (float)(((s0 + s1) + (s2 + s3)) / div);
    }
}

/* x: (outer, rows, cols) -> y: (outer, cols); y[o, c] = (sum_r x[o, r, c]) / div. Columns go in
 * blocks with double accumulators on the stack: rows are read in order, nothing allocated. */
#define REDUCE_BLOCK 256
static void reduce_first_f32(const float *restrict x, float *restrict y, int64_t outer,
                             int64_t rows, int64_t cols, double div)
{
    double acc[REDUCE_BLOCK];
    for (int64_t o = 0; o < outer; o++) {
        const float *xo = x + o * rows * cols;
        float *yo = y + o * cols;
        for (int64_t c0 = 0; c0 < cols; c0 += REDUCE_BLOCK) {
            int64_t w = cols - c0 < REDUCE_BLOCK ? cols - c0 : REDUCE_BLOCK;
            for (int64_t c = 0; c < w; c++)
                acc[c] = 0.0;
            for (int64_t r = 0; r < rows; r++) {
                const float *row = xo + r * cols + c0;
                for (int64_t c = 0; c < w; c++)
                    acc[c] += row[c];
            }
            for (int64_t c = 0; c < w; c++)
                yo[c0 + c] = (float)(acc[c] / div);
        }
    }
}

/* The generic path. Dims are grouped: kept groups (ksz, kst: sizes and strides in x, in
 * output order) and reduced groups (rsz, rst). Each output element walks its reduced elements
 * with an odometer, in x's order. */
typedef struct reduce_walk {
    int nk;
    int nr;
    int64_t ksz[ONYX_MAX_RANK];
    int64_t kst[ONYX_MAX_RANK];
    int64_t rsz[ONYX_MAX_RANK];
    int64_t rst[ONYX_MAX_RANK];
    int64_t count; /* reduced elements per output */
} reduce_walk;

static double walk_sum_f64(onyx_dtype dt, const void *x, int64_t off, const reduce_walk *w)
{
    int64_t idx[ONYX_MAX_RANK] = {0};
    double s = 0.0;
    for (int64_t j = 0; j < w->count; j++) {
        s += onyx_load_f64(dt, x, off);
        for (int k = w->nr - 1; k >= 0; k--) {
            idx[k]++;
            off += w->rst[k];
            if (idx[k] < w->rsz[k])
                break;
            off -= w->rst[k] * idx[k];
            idx[k] = 0;
        }
    }
    return s;
}

/* Integer sums wrap modulo 2^64 (numpy's int64 sum), computed unsigned to stay defined. */
static int64_t walk_sum_i64(onyx_dtype dt, const void *x, int64_t off, const reduce_walk *w)
{
    int64_t idx[ONYX_MAX_RANK] = {0};
    uint64_t s = 0;
    for (int64_t j = 0; j < w->count; j++) {
        s += (uint64_t)onyx_load_i64(dt, x, off);
        for (int k = w->nr - 1; k >= 0; k--) {
            idx[k]++;
            off += w->rst[k];
            if (idx[k] < w->rsz[k])
                break;
            off -= w->rst[k] * idx[k];
            idx[k] = 0;
        }
    }
    return (int64_t)s;
}

static void reduce_generic(onyx_dtype dt, const void *x, void *y, int64_t n_out,
                           const reduce_walk *w, bool mean)
{
    bool is_int = onyx_dtype_is_int(dt);
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off = 0;
    for (int64_t o = 0; o < n_out; o++) {
        if (is_int) {
            int64_t s = walk_sum_i64(dt, x, off, w);
            onyx_store_i64(dt, y, o, mean ? s / w->count : s);
        } else {
            double s = walk_sum_f64(dt, x, off, w);
            onyx_store_f64(dt, y, o, mean ? s / (double)w->count : s);
        }
        for (int k = w->nk - 1; k >= 0; k--) {
            idx[k]++;
            off += w->kst[k];
            if (idx[k] < w->ksz[k])
                break;
            off -= w->kst[k] * idx[k];
            idx[k] = 0;
        }
    }
}

static void reduce_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                           onyx_tensor *out)
{
    (void)ctx;
    const reduce_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    onyx_tensor *y = &out[0];
    onyx_dtype dt = x->dtype;
    int plan;
    bool mark[ONYX_MAX_RANK];
    int64_t n_axes;
    if (reduce_plan(n, in, &plan, mark, &n_axes, NULL) != ONYX_OK)
        return; /* infer accepted these inputs: cannot happen */
    int64_t n_out = onyx_numel(y);
    if (n_out == 0)
        return;
    if (plan == PLAN_NOOP) {
        memcpy(y->data, x->data, onyx_nbytes(y));
        return;
    }

    /* Group x's dims: drop 1s, merge neighbours that are both kept or both reduced. Strides are
     * in elements of x. */
    int64_t count = 1;
    for (int i = 0; i < x->rank; i++)
        if (mark[i])
            count *= x->dims[i];
    if (count == 0) { /* an empty reduction */
        for (int64_t o = 0; o < n_out; o++)
            onyx_store_f64(dt, y->data, o, p->mean && !onyx_dtype_is_int(dt) ? NAN : 0.0);
        return;
    }
    int ng = 0;
    int64_t gsz[ONYX_MAX_RANK];
    bool gred[ONYX_MAX_RANK];
    for (int i = 0; i < x->rank; i++) {
        if (x->dims[i] == 1)
            continue;
        if (ng > 0 && gred[ng - 1] == mark[i]) {
            gsz[ng - 1] *= x->dims[i];
        } else {
            gsz[ng] = x->dims[i];
            gred[ng] = mark[i];
            ng++;
        }
    }
    double div = p->mean ? (double)count : 1.0;

    if (dt == ONYX_DTYPE_F32) {
        const float *xf = x->data;
        float *yf = y->data;
        if (ng == 0 || (ng == 1 && !gred[0])) { /* nothing of size > 1 is reduced */
            reduce_last_f32(xf, yf, n_out, 1, div);
            return;
        }
        if (gred[ng - 1] && ng <= 2) { /* (R) or (K, R) */
            reduce_last_f32(xf, yf, n_out, gsz[ng - 1], div);
            return;
        }
        if (gred[0] && ng == 2) { /* (R, K) */
            reduce_first_f32(xf, yf, 1, gsz[0], gsz[1], div);
            return;
        }
        if (!gred[0] && ng == 3) { /* (K1, R, K2) */
            reduce_first_f32(xf, yf, gsz[0], gsz[1], gsz[2], div);
            return;
        }
    }

    /* The groups' element strides; then the kept and the reduced groups, outermost first as
     * the odometers want them. */
    int64_t gst[ONYX_MAX_RANK];
    int64_t st = 1;
    for (int g = ng - 1; g >= 0; g--) {
        gst[g] = st;
        st *= gsz[g];
    }
    reduce_walk w = {.count = count};
    for (int g = 0; g < ng; g++) {
        if (gred[g]) {
            w.rsz[w.nr] = gsz[g];
            w.rst[w.nr++] = gst[g];
        } else {
            w.ksz[w.nk] = gsz[g];
            w.kst[w.nk++] = gst[g];
        }
    }
    reduce_generic(dt, x->data, y->data, n_out, &w, p->mean);
}

/*
 * Backward of reduced[j] = scale * sum_{i -> j} data[i] (scale 1, or 1/count for the mean):
 * d data[i] += scale * d reduced[j(i)]. dy is viewed with data's rank (1 at each reduced axis,
 * as keepdims=1 gives it: same element order either way) and broadcast back to data's shape by
 * the broadcast walk: along each row of dx, dy steps by 1 (a kept inner dim) or 0 (reduced).
 */
static void reduce_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                            const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)ctx;
    (void)out;
    const reduce_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    const float *dy = dout[0].data;
    float *dx = din[0].data;
    int64_t numel = onyx_numel(x);
    if (dx == NULL || dy == NULL || numel == 0)
        return;
    int plan;
    bool mark[ONYX_MAX_RANK];
    int64_t n_axes;
    if (reduce_plan(n, in, &plan, mark, &n_axes, NULL) != ONYX_OK)
        return; /* infer accepted these inputs: cannot happen */
    if (plan == PLAN_NOOP) {
        for (int64_t i = 0; i < numel; i++)
            dx[i] += dy[i];
        return;
    }
    onyx_tensor yk = {.dtype = ONYX_DTYPE_F32, .rank = x->rank};
    int64_t count = 1;
    for (int i = 0; i < x->rank; i++) {
        yk.dims[i] = mark[i] ? 1 : x->dims[i];
        if (mark[i])
            count *= x->dims[i];
    }
    float scale = p->mean ? (float)(1.0 / (double)count) : 1.0f;
    onyx_broadcast_walk w;
    onyx_broadcast_walk_init(&w, x, &yk, NULL);
    int64_t inner = w.dims[w.rank - 1];
    bool along = w.st[0][w.rank - 1] != 0;
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off[2] = {0, 0};
    for (int64_t done = 0; done < numel; done += inner) {
        const float *dyr = dy + off[0];
        if (along) {
            for (int64_t j = 0; j < inner; j++)
                dx[j] += scale * dyr[j];
        } else {
            float g = scale * dyr[0];
            for (int64_t j = 0; j < inner; j++)
                dx[j] += g;
        }
        dx += inner;
        onyx_broadcast_walk_next(&w, idx, off);
    }
}

const onyx_op_impl onyx_impl_reduce = {.init = reduce_init,
                                       .infer = reduce_infer,
                                       .forward = reduce_forward,
                                       .backward = reduce_backward,
                                       .grad_inputs = 1u << 0};
