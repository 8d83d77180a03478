/*
 * shape.c — ops that move or describe data without arithmetic: Identity, Flatten, Reshape,
 * Transpose, Squeeze, Unsqueeze, Concat, Shape, Gather, Constant, ConstantOfShape, Expand.
 *
 * Most of the work is shape inference. Several ops take a shape or a list of axes as an int64
 * input (Reshape, Expand, ConstantOfShape, Squeeze/Unsqueeze from opset 13): its values are known
 * only when in[i].data != NULL (at run time, or at load time when it is an initializer or a
 * folded constant). Without them, infer sets what the input's length tells (the output rank)
 * and leaves the dims unknown (-1). An empty list is known even without data: a zero-element
 * initializer may come with data == NULL.
 *
 * Backward (float32 gradients only, accumulated with +=): the copying ops (Identity, Flatten,
 * Reshape, Squeeze, Unsqueeze) pass dy through unchanged; Transpose scatters dy back through the
 * permutation; Concat splits dy among its inputs; Gather scatter-adds dy into the data gradient
 * (repeated indices accumulate); Expand sums dy over the broadcast dims. Only the data inputs
 * are differentiable: shapes, axes and indices never get a gradient. Shape, Constant and
 * ConstantOfShape have none.
 */
#include "ops.h"

#include <string.h>

/* ---- helpers shared by the family --------------------------------------------------------- */

/*
 * Normalises axis for a tensor of the given rank into *out: the accepted range is [-rank,
 * rank-1] ([-rank, rank] when allow_end). Negative axes count from the back; ONNX allows them
 * from opset 11 on.
 */
static onyx_status norm_axis(const onyx_node *n, const char *what, int64_t axis, int rank,
                             bool allow_end, int *out, onyx_error *err)
{
    int64_t hi = allow_end ? rank : rank - 1;
    if (axis < 0 && n->opset < 11)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "%s %lld is negative; negative axes need opset 11 or later", what,
                             (long long)axis);
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a > hi) {
        if (hi < 0)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "%s %lld is out of range: a tensor of rank %d has no axes", what,
                                 (long long)axis, rank);
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "%s %lld is out of range [%lld, %lld] for rank %d", what,
                             (long long)axis, n->opset < 11 ? 0LL : -(long long)rank,
                             (long long)hi, rank);
    }
    *out = (int)a;
    return ONYX_OK;
}

/*
 * An int64 list given as an input (a shape or a list of axes). *len is its length, or -1 when
 * unknown; *vals its values when known (an empty list is always known), else NULL. The input
 * must be int64 and 1-D (a scalar counts as a one-element list when scalar_ok).
 */
static onyx_status list_input(const onyx_node *n, const onyx_tensor *t, int index,
                              const char *what, bool scalar_ok, int64_t *len,
                              const int64_t **vals, onyx_error *err)
{
    static const int64_t empty[1] = {0};
    char s[96];
    *len = -1;
    *vals = NULL;
    if (t->dtype != ONYX_DTYPE_I64)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input %d (%s) has dtype %s, expected int64", index, what,
                             onyx_dtype_name(t->dtype));
    if (t->rank < 0)
        return ONYX_OK;
    if (t->rank > 1 || (t->rank == 0 && !scalar_ok))
        return onyx_node_err(err, n, ONYX_ERR_SHAPE, "input %d (%s) has shape %s, expected 1-D",
                             index, what, onyx_shape_str(t, s, sizeof s));
    int64_t count = t->rank == 0 ? 1 : t->dims[0];
    if (count < 0)
        return ONYX_OK;
    *len = count;
    if (count == 0)
        *vals = empty;
    else if (t->data != NULL)
        *vals = t->data;
    return ONYX_OK;
}

/* Tensors of strings carry no bytes onyx could move: refused wherever data is copied. */
static onyx_status check_not_string(const onyx_node *n, const onyx_tensor *t, int index,
                                    const char *what, onyx_error *err)
{
    if (t->dtype == ONYX_DTYPE_STRING)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "input %d (%s) has dtype string, which onyx does not support",
                             index, what);
    return ONYX_OK;
}

/* Product of dims[from..to): 0 when any known dim is 0, else -1 when any dim is unknown. */
static int64_t dims_prod(const int64_t *dims, int from, int to)
{
    int64_t p = 1;
    bool unknown = false;
    for (int i = from; i < to; i++) {
        if (dims[i] == 0)
            return 0;
        if (dims[i] < 0)
            unknown = true;
        else
            p *= dims[i];
    }
    return unknown ? -1 : p;
}

/* out takes in's dtype, rank and dims. */
static void same_shape(const onyx_tensor *in, onyx_tensor *out)
{
    out->dtype = in->dtype;
    out->rank = in->rank;
    for (int i = 0; i < in->rank && i < ONYX_MAX_RANK; i++)
        out->dims[i] = in->dims[i];
}

/* Forward of every op whose output is its input's bytes under another shape. */
static void copy_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                         onyx_tensor *out)
{
    (void)n;
    (void)ctx;
    size_t nb = onyx_nbytes(&out[0]);
    if (nb > 0)
        memcpy(out[0].data, in[0].data, nb);
}

/* dx += dy over n elements. */
static void add_f32(const float *restrict dy, float *restrict dx, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] += dy[i];
}

/* Backward of every op whose output is its input's bytes under another shape: y = x, so
 * dx += dy element by element (the same row-major order on both sides). */
static void copy_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                          const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)n;
    (void)ctx;
    (void)in;
    (void)out;
    if (din[0].data == NULL || dout[0].data == NULL)
        return;
    add_f32(dout[0].data, din[0].data, onyx_numel(&din[0]));
}

/* The private struct of ops whose only attribute is an int `axis` (Flatten, Gather). */
typedef struct axis_priv {
    int64_t axis;
} axis_priv;

/* Init of such an op: n_in inputs, one output, attribute axis (default def_axis). */
static onyx_status axis_init(onyx_node *n, int n_in, int64_t def_axis, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, n_in, n_in, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    axis_priv p = {0};
    st = onyx_attr_int(n, "axis", def_axis, &p.axis, err);
    if (st != ONYX_OK)
        return st;
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

/* ---- Identity ----------------------------------------------------------------------------- */

static onyx_status identity_init(onyx_node *n, onyx_error *err)
{
    return onyx_node_check_arity(n, 1, 1, 1, 1, err);
}

/* x: any shape -> y: the same shape and dtype; y = x. */
static onyx_status identity_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                  onyx_error *err)
{
    onyx_status st = check_not_string(n, &in[0], 0, "input", err);
    if (st != ONYX_OK)
        return st;
    same_shape(&in[0], &out[0]);
    return ONYX_OK;
}

const onyx_op_impl onyx_impl_identity = {.init = identity_init,
                                         .infer = identity_infer,
                                         .forward = copy_forward,
                                         .backward = copy_backward,
                                         .grad_inputs = 1u << 0};

/* ---- Flatten ------------------------------------------------------------------------------ */

static onyx_status flatten_init(onyx_node *n, onyx_error *err)
{
    return axis_init(n, 1, 1, err);
}

/*
 * x: (d_0, ..., d_{r-1}) -> y: (d_0 * ... * d_{axis-1}, d_axis * ... * d_{r-1}).
 * axis in [-r, r] (negative from opset 11); axis = 0 gives (1, numel), axis = r (numel, 1).
 */
static onyx_status flatten_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                 onyx_error *err)
{
    const axis_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    onyx_status st = check_not_string(n, x, 0, "input", err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = x->dtype;
    out[0].rank = 2;
    if (x->rank < 0) {
        out[0].dims[0] = p->axis == 0 ? 1 : -1;
        out[0].dims[1] = -1;
        return ONYX_OK;
    }
    int axis;
    st = norm_axis(n, "axis", p->axis, x->rank, true, &axis, err);
    if (st != ONYX_OK)
        return st;
    out[0].dims[0] = dims_prod(x->dims, 0, axis);
    out[0].dims[1] = dims_prod(x->dims, axis, x->rank);
    return ONYX_OK;
}

const onyx_op_impl onyx_impl_flatten = {.init = flatten_init,
                                        .infer = flatten_infer,
                                        .forward = copy_forward,
                                        .backward = copy_backward,
                                        .grad_inputs = 1u << 0};

/* ---- Reshape ------------------------------------------------------------------------------ */

typedef struct reshape_priv {
    bool allowzero;
} reshape_priv;

static onyx_status reshape_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 2, 2, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    reshape_priv parsed = {0};
    reshape_priv *p = &parsed;
    if (n->opset >= 14) {
        st = onyx_attr_flag(n, "allowzero", false, &p->allowzero, err);
        if (st != ONYX_OK)
            return st;
    }
    return onyx_node_set_priv(n, p, sizeof(*p), err);
}

/*
 * data: any shape, shape: (k) int64 -> reshaped: k dims, the same elements in the same order.
 * shape[i] == 0 copies data's dim i (unless allowzero = 1, opset 14, when it means 0); one
 * shape[i] == -1 is inferred from the element count. With allowzero = 1, 0 and -1 together are
 * invalid (the -1 could not be determined).
 */
static onyx_status reshape_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                 onyx_error *err)
{
    const reshape_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    int64_t len;
    const int64_t *v;
    onyx_status st = check_not_string(n, x, 0, "data", err);
    if (st != ONYX_OK)
        return st;
    st = list_input(n, &in[1], 1, "shape", false, &len, &v, err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = x->dtype;
    if (len < 0) {
        out[0].rank = -1;
        return ONYX_OK;
    }
    if (len > ONYX_MAX_RANK)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "input 1 (shape) asks for rank %lld; onyx supports at most %d",
                             (long long)len, ONYX_MAX_RANK);
    int rank = (int)len;
    out[0].rank = rank;
    if (v == NULL) {
        for (int i = 0; i < rank; i++)
            out[0].dims[i] = -1;
        return ONYX_OK;
    }

    char sx[96];
    char sv[160];
    int infer_at = -1;
    bool has_zero = false;
    for (int i = 0; i < rank; i++) {
        if (v[i] == -1) {
            if (infer_at >= 0)
                return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                     "requested shape %s has more than one -1",
                                     onyx_ints_str(v, len, sv, sizeof sv));
            infer_at = i;
            out[0].dims[i] = -1;
        } else if (v[i] < -1) {
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "requested shape %s has %lld at index %d; dims must be >= -1",
                                 onyx_ints_str(v, len, sv, sizeof sv), (long long)v[i], i);
        } else if (v[i] == 0 && !p->allowzero) {
            if (x->rank >= 0 && i >= x->rank)
                return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                     "requested shape %s has 0 at index %d, which copies a dim "
                                     "of data, but data has shape %s",
                                     onyx_ints_str(v, len, sv, sizeof sv), i,
                                     onyx_shape_str(x, sx, sizeof sx));
            out[0].dims[i] = x->rank >= 0 ? x->dims[i] : -1;
        } else {
            has_zero = has_zero || v[i] == 0;
            out[0].dims[i] = v[i];
        }
    }
    if (has_zero && infer_at >= 0)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "requested shape %s has both 0 and -1, which allowzero=1 forbids",
                             onyx_ints_str(v, len, sv, sizeof sv));

    /* Element counts, where known. The checked product keeps absurd requests from overflowing:
     * a product above the tensor limit cannot equal a real tensor's count. */
    int64_t n_in = -1;
    if (onyx_shape_known(x) && !onyx_shape_numel(x->dims, x->rank, 1, &n_in))
        n_in = -1;
    int64_t others[ONYX_MAX_RANK];
    int n_others = 0;
    bool others_known = true;
    for (int i = 0; i < rank; i++) {
        if (i == infer_at)
            continue;
        others[n_others++] = out[0].dims[i];
        others_known = others_known && out[0].dims[i] >= 0;
    }
    if (!others_known || n_in < 0)
        return ONYX_OK; /* unknown dims stay -1 until run time */
    int64_t prod;
    bool fits = onyx_shape_numel(others, n_others, 1, &prod);
    if (infer_at >= 0) {
        if (fits && prod == 0)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "cannot reshape data of shape %s to %s: the -1 is ambiguous "
                                 "because the other dims multiply to 0",
                                 onyx_shape_str(x, sx, sizeof sx),
                                 onyx_ints_str(v, len, sv, sizeof sv));
        if (!fits || n_in % prod != 0)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "cannot reshape data of shape %s (%lld elements) to %s",
                                 onyx_shape_str(x, sx, sizeof sx), (long long)n_in,
                                 onyx_ints_str(v, len, sv, sizeof sv));
        out[0].dims[infer_at] = n_in / prod;
    } else if (!fits || prod != n_in) {
        char so[96];
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "cannot reshape data of shape %s (%lld elements) to %s (requested "
                             "%s)",
                             onyx_shape_str(x, sx, sizeof sx), (long long)n_in,
                             onyx_shape_str(&out[0], so, sizeof so),
                             onyx_ints_str(v, len, sv, sizeof sv));
    }
    return ONYX_OK;
}

const onyx_op_impl onyx_impl_reshape = {.init = reshape_init,
                                        .infer = reshape_infer,
                                        .forward = copy_forward,
                                        .backward = copy_backward,
                                        .grad_inputs = 1u << 0};

/* ---- Transpose ---------------------------------------------------------------------------- */

typedef struct transpose_priv {
    bool has_perm;
    int n_perm;
    int perm[ONYX_MAX_RANK];
} transpose_priv;

static onyx_status transpose_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 1, 1, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    transpose_priv parsed = {0};
    transpose_priv *p = &parsed;
    const int64_t *perm;
    size_t count;
    st = onyx_attr_ints(n, "perm", &perm, &count, &p->has_perm, err);
    if (st != ONYX_OK)
        return st;
    if (!p->has_perm)
        return onyx_node_set_priv(n, p, sizeof(*p), err);
    char s[160];
    if (count > ONYX_MAX_RANK)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "attribute perm %s has %zu entries; onyx supports rank %d at most",
                             onyx_ints_str(perm, (int64_t)count, s, sizeof s), count,
                             ONYX_MAX_RANK);
    bool seen[ONYX_MAX_RANK] = {false};
    for (size_t i = 0; i < count; i++) {
        if (perm[i] < 0 || perm[i] >= (int64_t)count || seen[perm[i]])
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "attribute perm %s is not a permutation of 0..%zu",
                                 onyx_ints_str(perm, (int64_t)count, s, sizeof s), count - 1);
        seen[perm[i]] = true;
        p->perm[i] = (int)perm[i];
    }
    p->n_perm = (int)count;
    return onyx_node_set_priv(n, p, sizeof(*p), err);
}

/* The permutation for a tensor of rank `rank`: the attribute, or the dims reversed. */
static void transpose_perm(const transpose_priv *p, int rank, int perm[ONYX_MAX_RANK])
{
    for (int i = 0; i < rank; i++)
        perm[i] = p->has_perm ? p->perm[i] : rank - 1 - i;
}

/* x: (d_0, ..., d_{r-1}) -> y: (d_perm[0], ..., d_perm[r-1]); y[i_0, ...] = x[j] with
 * j[perm[k]] = i_k. perm defaults to reversing the dims. */
static onyx_status transpose_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                   onyx_error *err)
{
    const transpose_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    onyx_status st = check_not_string(n, x, 0, "data", err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = x->dtype;
    if (x->rank < 0) {
        out[0].rank = p->has_perm ? p->n_perm : -1;
        for (int i = 0; i < out[0].rank; i++)
            out[0].dims[i] = -1;
        return ONYX_OK;
    }
    if (p->has_perm && p->n_perm != x->rank) {
        char s[96];
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "attribute perm has %d entries, but input 0 (data) has shape %s",
                             p->n_perm, onyx_shape_str(x, s, sizeof s));
    }
    int perm[ONYX_MAX_RANK];
    transpose_perm(p, x->rank, perm);
    out[0].rank = x->rank;
    for (int i = 0; i < x->rank; i++)
        out[0].dims[i] = x->dims[perm[i]];
    return ONYX_OK;
}

/*
 * Raw loop for 4-byte elements (float32, int32, ...): y is written in order; the innermost
 * output dim reads x with stride st[rank-1]; an odometer walks the outer dims.
 *   x, y: numel elements; dims: y's dims; st: x's stride for each y dim.
 */
static void transpose_forward_u32(const uint32_t *restrict x, uint32_t *restrict y, int rank,
                                  const int64_t *dims, const int64_t *st, int64_t numel)
{
    int64_t inner = dims[rank - 1];
    int64_t s_in = st[rank - 1];
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off = 0;
    for (int64_t done = 0; done < numel; done += inner) {
        for (int64_t j = 0; j < inner; j++)
            y[j] = x[off + j * s_in];
        y += inner;
        for (int k = rank - 2; k >= 0; k--) {
            idx[k]++;
            off += st[k];
            if (idx[k] < dims[k])
                break;
            off -= st[k] * idx[k];
            idx[k] = 0;
        }
    }
}

/* The same walk for any element size es (bytes), one memcpy per element. */
static void transpose_forward_bytes(const unsigned char *x, unsigned char *y, size_t es,
                                    int rank, const int64_t *dims, const int64_t *st,
                                    int64_t numel)
{
    int64_t inner = dims[rank - 1];
    int64_t s_in = st[rank - 1];
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off = 0;
    for (int64_t done = 0; done < numel; done += inner) {
        if (s_in == 1) {
            memcpy(y, x + (size_t)off * es, (size_t)inner * es);
        } else {
            for (int64_t j = 0; j < inner; j++)
                memcpy(y + (size_t)j * es, x + (size_t)(off + j * s_in) * es, es);
        }
        y += (size_t)inner * es;
        for (int k = rank - 2; k >= 0; k--) {
            idx[k]++;
            off += st[k];
            if (idx[k] < dims[k])
                break;
            off -= st[k] * idx[k];
            idx[k] = 0;
        }
    }
}

static void transpose_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                              onyx_tensor *out)
{
    (void)ctx;
    const onyx_tensor *x = &in[0];
    onyx_tensor *y = &out[0];
    int64_t numel = onyx_numel(y);
    size_t es = onyx_dtype_size(y->dtype);
    if (numel == 0)
        return;
    if (x->rank == 0) {
        memcpy(y->data, x->data, es);
        return;
    }
    int perm[ONYX_MAX_RANK];
    transpose_perm(n->priv, x->rank, perm);
    int64_t xst[ONYX_MAX_RANK];
    int64_t st[ONYX_MAX_RANK];
    int64_t s = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        xst[i] = s;
        s *= x->dims[i];
    }
    for (int i = 0; i < x->rank; i++)
        st[i] = xst[perm[i]];
    if (es == 4)
        transpose_forward_u32(x->data, y->data, x->rank, y->dims, st, numel);
    else
        transpose_forward_bytes(x->data, y->data, es, x->rank, y->dims, st, numel);
}

/*
 * Backward of y[i_0, ...] = x[j] (j[perm[k]] = i_k): each element of x went to exactly one
 * element of y, so dx[j] += dy[i], the inverse permutation. The raw loop walks dy in order with
 * the forward's odometer and scatters into dx.
 *   dy: numel elements with y's dims; dx: x's elements; st: x's stride for each y dim.
 */
static void transpose_backward_f32(const float *restrict dy, float *restrict dx, int rank,
                                   const int64_t *dims, const int64_t *st, int64_t numel)
{
    int64_t inner = dims[rank - 1];
    int64_t s_in = st[rank - 1];
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off = 0;
    for (int64_t done = 0; done < numel; done += inner) {
        for (int64_t j = 0; j < inner; j++)
            dx[off + j * s_in] += dy[j];
        dy += inner;
        for (int k = rank - 2; k >= 0; k--) {
            idx[k]++;
            off += st[k];
            if (idx[k] < dims[k])
                break;
            off -= st[k] * idx[k];
            idx[k] = 0;
        }
    }
}

static void transpose_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                               const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)ctx;
    (void)out;
    const onyx_tensor *x = &in[0];
    const onyx_tensor *dy = &dout[0];
    float *dx = din[0].data;
    int64_t numel = onyx_numel(dy);
    if (dx == NULL || dy->data == NULL || numel == 0)
        return;
    if (x->rank == 0) {
        dx[0] += ((const float *)dy->data)[0];
        return;
    }
    int perm[ONYX_MAX_RANK];
    transpose_perm(n->priv, x->rank, perm);
    int64_t xst[ONYX_MAX_RANK];
    int64_t st[ONYX_MAX_RANK];
    int64_t s = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        xst[i] = s;
        s *= x->dims[i];
    }
    for (int i = 0; i < x->rank; i++)
        st[i] = xst[perm[i]];
    transpose_backward_f32(dy->data, dx, x->rank, dy->dims, st, numel);
}

const onyx_op_impl onyx_impl_transpose = {.init = transpose_init,
                                          .infer = transpose_infer,
                                          .forward = transpose_forward,
                                          .backward = transpose_backward,
                                          .grad_inputs = 1u << 0};

/* ---- Squeeze and Unsqueeze ---------------------------------------------------------------- */

/* Both take their axes from an attribute before opset 13 and from input 1 from opset 13 on. */
typedef struct axes_priv {
    bool from_input;
    bool has_axes; /* the attribute was given (before opset 13) */
    const int64_t *axes; /* the attribute's values, owned by the model */
    int64_t n_axes;
} axes_priv;

static onyx_status axes_init(onyx_node *n, bool input_required, onyx_error *err)
{
    bool from_input = n->opset >= 13;
    onyx_status st = from_input ? onyx_node_check_arity(n, input_required ? 2 : 1, 2, 1, 1, err)
                                : onyx_node_check_arity(n, 1, 1, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    axes_priv parsed = {0};
    axes_priv *p = &parsed;
    p->from_input = from_input;
    if (from_input) {
        if (onyx_node_attr(n, "axes") != NULL)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "has an axes attribute; from opset 13 axes is input 1");
        return onyx_node_set_priv(n, p, sizeof(*p), err);
    }
    size_t count;
    st = onyx_attr_ints(n, "axes", &p->axes, &count, &p->has_axes, err);
    p->n_axes = (int64_t)count;
    if (st == ONYX_OK && input_required && !p->has_axes)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL, "attribute axes is required");
    if (st != ONYX_OK)
        return st;
    return onyx_node_set_priv(n, p, sizeof(*p), err);
}

/* The node's axes: *len = -1 when unknown or absent (*given says which), *vals when known. */
static onyx_status axes_get(const onyx_node *n, const onyx_tensor *in, bool *given,
                            int64_t *len, const int64_t **vals, onyx_error *err)
{
    const axes_priv *p = n->priv;
    if (!p->from_input) {
        *given = p->has_axes;
        *len = p->has_axes ? p->n_axes : -1;
        *vals = p->has_axes ? p->axes : NULL;
        return ONYX_OK;
    }
    *given = onyx_node_has_in(n, 1) && in[1].dtype != ONYX_DTYPE_UNDEFINED;
    *len = -1;
    *vals = NULL;
    if (!*given)
        return ONYX_OK;
    return list_input(n, &in[1], 1, "axes", true, len, vals, err);
}

/* Normalises axes[len] against rank into mark[] (true = listed); duplicates are an error. */
static onyx_status axes_mark(const onyx_node *n, const int64_t *axes, int64_t len, int rank,
                             bool mark[ONYX_MAX_RANK], onyx_error *err)
{
    char s[160];
    for (int i = 0; i < ONYX_MAX_RANK; i++)
        mark[i] = false;
    for (int64_t i = 0; i < len; i++) {
        int a = 0;
        onyx_status st = norm_axis(n, "axes entry", axes[i], rank, false, &a, err);
        if (st != ONYX_OK)
            return st;
        if (mark[a])
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "axes %s names axis %d twice (rank %d)",
                                 onyx_ints_str(axes, len, s, sizeof s), a, rank);
        mark[a] = true;
    }
    return ONYX_OK;
}

static onyx_status squeeze_init(onyx_node *n, onyx_error *err)
{
    return axes_init(n, false, err);
}

/*
 * data: (d_0, ..., d_{r-1}) -> squeezed: data's dims without those listed in axes, each of
 * which must be 1. Without axes every dim of size 1 goes. A given but empty list removes
 * nothing (as ONNX's own shape inference reads it).
 */
static onyx_status squeeze_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                 onyx_error *err)
{
    const onyx_tensor *x = &in[0];
    bool given;
    int64_t len;
    const int64_t *axes;
    char s[96];
    onyx_status st = check_not_string(n, x, 0, "data", err);
    if (st != ONYX_OK)
        return st;
    st = axes_get(n, in, &given, &len, &axes, err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = x->dtype;
    out[0].rank = -1;
    if (x->rank < 0)
        return ONYX_OK;
    if (!given) {
        int r = 0;
        for (int i = 0; i < x->rank; i++) {
            if (x->dims[i] < 0)
                return ONYX_OK; /* might be 1: the rank is unknown until run time */
            if (x->dims[i] != 1)
                out[0].dims[r++] = x->dims[i];
        }
        out[0].rank = r;
        return ONYX_OK;
    }
    if (len < 0)
        return ONYX_OK;
    if (len > x->rank)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE, "axes has %lld entries, but data has "
                             "shape %s", (long long)len, onyx_shape_str(x, s, sizeof s));
    if (axes == NULL) {
        out[0].rank = x->rank - (int)len;
        for (int i = 0; i < out[0].rank; i++)
            out[0].dims[i] = -1;
        return ONYX_OK;
    }
    bool mark[ONYX_MAX_RANK];
    st = axes_mark(n, axes, len, x->rank, mark, err);
    if (st != ONYX_OK)
        return st;
    int r = 0;
    for (int i = 0; i < x->rank; i++) {
        if (!mark[i]) {
            out[0].dims[r++] = x->dims[i];
        } else if (x->dims[i] >= 0 && x->dims[i] != 1) {
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "cannot squeeze axis %d of data shape %s: its size is %lld, "
                                 "not 1",
                                 i, onyx_shape_str(x, s, sizeof s), (long long)x->dims[i]);
        }
    }
    out[0].rank = r;
    return ONYX_OK;
}

const onyx_op_impl onyx_impl_squeeze = {.init = squeeze_init,
                                        .infer = squeeze_infer,
                                        .forward = copy_forward,
                                        .backward = copy_backward,
                                        .grad_inputs = 1u << 0};

static onyx_status unsqueeze_init(onyx_node *n, onyx_error *err)
{
    return axes_init(n, true, err);
}

/*
 * data: (d_0, ..., d_{r-1}), axes: k entries in [-(r+k), r+k-1], any order -> expanded: rank
 * r + k with 1 at each listed axis (of the output) and data's dims, in order, elsewhere.
 */
static onyx_status unsqueeze_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                   onyx_error *err)
{
    const onyx_tensor *x = &in[0];
    bool given;
    int64_t len;
    const int64_t *axes;
    onyx_status st = check_not_string(n, x, 0, "data", err);
    if (st != ONYX_OK)
        return st;
    st = axes_get(n, in, &given, &len, &axes, err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = x->dtype;
    out[0].rank = -1;
    if (x->rank < 0 || len < 0)
        return ONYX_OK;
    if (x->rank + len > ONYX_MAX_RANK)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "output would have rank %lld; onyx supports at most %d",
                             (long long)(x->rank + len), ONYX_MAX_RANK);
    int rank = x->rank + (int)len;
    out[0].rank = rank;
    if (axes == NULL) {
        for (int i = 0; i < rank; i++)
            out[0].dims[i] = -1;
        return ONYX_OK;
    }
    bool mark[ONYX_MAX_RANK];
    st = axes_mark(n, axes, len, rank, mark, err);
    if (st != ONYX_OK)
        return st;
    for (int i = 0, j = 0; i < rank; i++)
        out[0].dims[i] = mark[i] ? 1 : x->dims[j++];
    return ONYX_OK;
}

const onyx_op_impl onyx_impl_unsqueeze = {.init = unsqueeze_init,
                                          .infer = unsqueeze_infer,
                                          .forward = copy_forward,
                                          .backward = copy_backward,
                                          .grad_inputs = 1u << 0};

/* ---- Concat ------------------------------------------------------------------------------- */

typedef struct concat_priv {
    int64_t axis;
} concat_priv;

static onyx_status concat_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 1, n->n_in > 0 ? n->n_in : 1, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    for (int i = 0; i < n->n_in; i++)
        if (!onyx_node_has_in(n, i))
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL, "input %d is empty", i);
    concat_priv parsed = {0};
    concat_priv *p = &parsed;
    if (onyx_node_attr(n, "axis") == NULL)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL, "attribute axis is required");
    st = onyx_attr_int(n, "axis", 0, &p->axis, err);
    if (st != ONYX_OK)
        return st;
    return onyx_node_set_priv(n, p, sizeof(*p), err);
}

/*
 * inputs[k]: (d_0, ..., a_k, ..., d_{r-1}), all the same dtype and rank, equal outside axis
 * -> concat_result: (d_0, ..., sum_k a_k, ..., d_{r-1}). axis in [-r, r-1] (negative from 11).
 */
static onyx_status concat_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                onyx_error *err)
{
    const concat_priv *p = n->priv;
    char s0[96];
    char s1[96];
    int ref = -1; /* the first input of known rank */
    for (int k = 0; k < n->n_in; k++) {
        onyx_status st = check_not_string(n, &in[k], k, "inputs", err);
        if (st != ONYX_OK)
            return st;
        if (in[k].dtype != in[0].dtype)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input %d has dtype %s, but input 0 has dtype %s", k,
                                 onyx_dtype_name(in[k].dtype), onyx_dtype_name(in[0].dtype));
        if (ref < 0 && in[k].rank >= 0)
            ref = k;
    }
    out[0].dtype = in[0].dtype;
    out[0].rank = -1;
    if (ref < 0)
        return ONYX_OK;
    int rank = in[ref].rank;
    int axis;
    onyx_status st = norm_axis(n, "axis", p->axis, rank, false, &axis, err);
    if (st != ONYX_OK)
        return st;
    out[0].rank = rank;
    for (int d = 0; d < rank; d++)
        out[0].dims[d] = d == axis ? 0 : -1;
    for (int k = 0; k < n->n_in; k++) {
        const onyx_tensor *t = &in[k];
        if (t->rank < 0) {
            out[0].dims[axis] = -1;
            continue;
        }
        if (t->rank != rank)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input %d has shape %s, but input %d has shape %s (ranks differ)",
                                 k, onyx_shape_str(t, s0, sizeof s0), ref,
                                 onyx_shape_str(&in[ref], s1, sizeof s1));
        for (int d = 0; d < rank; d++) {
            if (d == axis) {
                if (t->dims[d] < 0 || out[0].dims[d] < 0)
                    out[0].dims[d] = -1;
                else
                    out[0].dims[d] += t->dims[d];
            } else if (t->dims[d] >= 0) {
                if (out[0].dims[d] >= 0 && out[0].dims[d] != t->dims[d])
                    return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                         "input %d has shape %s, which differs from input %d's "
                                         "%s in dimension %d (concatenating on axis %d)",
                                         k, onyx_shape_str(t, s0, sizeof s0), ref,
                                         onyx_shape_str(&in[ref], s1, sizeof s1), d, axis);
                out[0].dims[d] = t->dims[d];
            }
        }
    }
    return ONYX_OK;
}

/* Each of the `outer` slices of the output is the inputs' slices one after the other. */
static void concat_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                           onyx_tensor *out)
{
    (void)ctx;
    const concat_priv *p = n->priv;
    onyx_tensor *y = &out[0];
    int axis = (int)(p->axis < 0 ? p->axis + y->rank : p->axis);
    size_t es = onyx_dtype_size(y->dtype);
    int64_t outer = dims_prod(y->dims, 0, axis);
    int64_t inner = dims_prod(y->dims, axis + 1, y->rank);
    unsigned char *dst = y->data;
    for (int64_t o = 0; o < outer; o++) {
        for (int k = 0; k < n->n_in; k++) {
            size_t chunk = (size_t)(in[k].dims[axis] * inner) * es;
            if (chunk == 0)
                continue;
            memcpy(dst, (const unsigned char *)in[k].data + (size_t)o * chunk, chunk);
            dst += chunk;
        }
    }
}

/* Backward of the concatenation: each input's slices of dy, taken in the forward's order, are
 * added into that input's gradient (skipped for inputs that need none). */
static void concat_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                            const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)ctx;
    const concat_priv *p = n->priv;
    const onyx_tensor *y = &out[0];
    const float *dy = dout[0].data;
    if (dy == NULL)
        return;
    int axis = (int)(p->axis < 0 ? p->axis + y->rank : p->axis);
    int64_t outer = dims_prod(y->dims, 0, axis);
    int64_t inner = dims_prod(y->dims, axis + 1, y->rank);
    for (int64_t o = 0; o < outer; o++) {
        for (int k = 0; k < n->n_in; k++) {
            int64_t chunk = in[k].dims[axis] * inner;
            if (din[k].data != NULL)
                add_f32(dy, (float *)din[k].data + o * chunk, chunk);
            dy += chunk;
        }
    }
}

const onyx_op_impl onyx_impl_concat = {.init = concat_init,
                                       .infer = concat_infer,
                                       .forward = concat_forward,
                                       .backward = concat_backward,
                                       .grad_inputs = ONYX_GRAD_ALL};

/* ---- Shape -------------------------------------------------------------------------------- */

typedef struct shape_priv {
    int64_t start;
    int64_t end;
    bool has_end;
} shape_priv;

static onyx_status shape_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 1, 1, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    shape_priv parsed = {0};
    shape_priv *p = &parsed;
    if (n->opset < 15)
        return onyx_node_set_priv(n, p, sizeof(*p), err);
    p->has_end = onyx_node_attr(n, "end") != NULL;
    st = onyx_attr_int(n, "start", 0, &p->start, err);
    if (st == ONYX_OK)
        st = onyx_attr_int(n, "end", 0, &p->end, err);
    if (st != ONYX_OK)
        return st;
    return onyx_node_set_priv(n, p, sizeof(*p), err);
}

/* The slice [*s, *e) of the dims of a rank-r tensor: Python slicing, so negative values count
 * from the back and everything is clamped to [0, r]; *e >= *s. */
static void shape_range(const shape_priv *p, int r, int64_t *s, int64_t *e)
{
    int64_t a = p->start < 0 ? p->start + r : p->start;
    int64_t b = p->has_end ? (p->end < 0 ? p->end + r : p->end) : r;
    a = a < 0 ? 0 : a > r ? r : a;
    b = b < 0 ? 0 : b > r ? r : b;
    *s = a;
    *e = b < a ? a : b;
}

/* data: any shape (only its dims are read) -> shape: (e - s) int64, data's dims[s:e]. */
static onyx_status shape_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                               onyx_error *err)
{
    (void)err;
    out[0].dtype = ONYX_DTYPE_I64;
    out[0].rank = 1;
    out[0].dims[0] = -1;
    if (in[0].rank >= 0) {
        int64_t s;
        int64_t e;
        shape_range(n->priv, in[0].rank, &s, &e);
        out[0].dims[0] = e - s;
    }
    return ONYX_OK;
}

/* Reads in[0]'s dims only: in[0].data may be NULL when the runtime folds this at load time. */
static void shape_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                          onyx_tensor *out)
{
    (void)ctx;
    int64_t s;
    int64_t e;
    shape_range(n->priv, in[0].rank, &s, &e);
    int64_t *y = out[0].data;
    for (int64_t i = s; i < e; i++)
        y[i - s] = in[0].dims[i];
}

const onyx_op_impl onyx_impl_shape = {.init = shape_init,
                                      .infer = shape_infer,
                                      .forward = shape_forward,
                                      .flags = ONYX_OPF_SHAPE_ONLY};

/* ---- Gather ------------------------------------------------------------------------------- */

static onyx_status gather_init(onyx_node *n, onyx_error *err)
{
    return axis_init(n, 2, 0, err);
}

/*
 * data: (d_0, ..., d_{r-1}) r >= 1, indices: (i_0, ..., i_{q-1}) int32/int64 in [-s, s-1] with
 * s = d_axis -> output: (d_0, ..., d_{axis-1}, i_0, ..., i_{q-1}, d_{axis+1}, ..., d_{r-1});
 * output[a..., j..., b...] = data[a..., indices[j...] (+ s if negative), b...].
 */
static onyx_status gather_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                onyx_error *err)
{
    const axis_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    const onyx_tensor *ind = &in[1];
    char s[96];
    onyx_status st = check_not_string(n, x, 0, "data", err);
    if (st != ONYX_OK)
        return st;
    if (ind->dtype != ONYX_DTYPE_I32 && ind->dtype != ONYX_DTYPE_I64)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input 1 (indices) has dtype %s, expected int32 or int64",
                             onyx_dtype_name(ind->dtype));
    out[0].dtype = x->dtype;
    out[0].rank = -1;
    if (x->rank == 0)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input 0 (data) is a scalar; expected rank >= 1");
    if (x->rank < 0 || ind->rank < 0)
        return ONYX_OK;
    int axis;
    st = norm_axis(n, "axis", p->axis, x->rank, false, &axis, err);
    if (st != ONYX_OK)
        return st;
    int rank = x->rank + ind->rank - 1;
    if (rank > ONYX_MAX_RANK)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "output would have rank %d; onyx supports at most %d", rank,
                             ONYX_MAX_RANK);
    out[0].rank = rank;
    int r = 0;
    for (int i = 0; i < axis; i++)
        out[0].dims[r++] = x->dims[i];
    for (int i = 0; i < ind->rank; i++)
        out[0].dims[r++] = ind->dims[i];
    for (int i = axis + 1; i < x->rank; i++)
        out[0].dims[r++] = x->dims[i];

    /* Index values, when known (always at run time). */
    int64_t size = x->dims[axis];
    if (ind->data == NULL || !onyx_shape_known(ind) || size < 0)
        return ONYX_OK;
    int64_t count = onyx_numel(ind);
    for (int64_t i = 0; i < count; i++) {
        int64_t k = onyx_load_i64(ind->dtype, ind->data, i);
        if (k < -size || k >= size)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "indices[%lld] = %lld is out of range [%lld, %lld] for axis %d "
                                 "of data shape %s",
                                 (long long)i, (long long)k, -(long long)size,
                                 (long long)size - 1, axis, onyx_shape_str(x, s, sizeof s));
    }
    return ONYX_OK;
}

/* Raw loops: for each of `outer` blocks of x (size rows of `row` bytes each), copy the rows
 * named by the indices in order. One loop per index type. */
static void gather_rows_i64(const unsigned char *x, unsigned char *y, int64_t outer,
                            int64_t size, size_t row, const int64_t *ind, int64_t count)
{
    for (int64_t o = 0; o < outer; o++) {
        const unsigned char *block = x + (size_t)(o * size) * row;
        for (int64_t i = 0; i < count; i++) {
            int64_t k = ind[i] < 0 ? ind[i] + size : ind[i];
            memcpy(y, block + (size_t)k * row, row);
            y += row;
        }
    }
}

static void gather_rows_i32(const unsigned char *x, unsigned char *y, int64_t outer,
                            int64_t size, size_t row, const int32_t *ind, int64_t count)
{
    for (int64_t o = 0; o < outer; o++) {
        const unsigned char *block = x + (size_t)(o * size) * row;
        for (int64_t i = 0; i < count; i++) {
            int64_t k = ind[i] < 0 ? (int64_t)ind[i] + size : ind[i];
            memcpy(y, block + (size_t)k * row, row);
            y += row;
        }
    }
}

static void gather_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                           onyx_tensor *out)
{
    (void)ctx;
    const axis_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    const onyx_tensor *ind = &in[1];
    if (onyx_numel(&out[0]) == 0)
        return;
    int axis = (int)(p->axis < 0 ? p->axis + x->rank : p->axis);
    int64_t outer = dims_prod(x->dims, 0, axis);
    size_t row = (size_t)dims_prod(x->dims, axis + 1, x->rank) * onyx_dtype_size(x->dtype);
    int64_t count = onyx_numel(ind);
    if (ind->dtype == ONYX_DTYPE_I64)
        gather_rows_i64(x->data, out[0].data, outer, x->dims[axis], row, ind->data, count);
    else
        gather_rows_i32(x->data, out[0].data, outer, x->dims[axis], row, ind->data, count);
}

/*
 * Backward of output[a, j, b] = data[a, k(j), b] with k(j) = indices[j] (+ s if negative): a
 * scatter-add, dx[a, k(j), b] += dy[a, j, b]; an index that appears several times gathers the
 * sum of its rows' gradients. Raw loop: for each of `outer` blocks of dx (size rows of `row`
 * elements), add dy's rows in order into the rows the indices name. ind64 says whether ind is
 * int64 (else int32); infer checked every index against [-size, size-1].
 */
static void gather_backward_f32(const float *restrict dy, float *restrict dx, int64_t outer,
                                int64_t size, int64_t row, const void *ind, bool ind64,
                                int64_t count)
{
    for (int64_t o = 0; o < outer; o++) {
        float *block = dx + o * size * row;
        for (int64_t i = 0; i < count; i++) {
            int64_t k = ind64 ? ((const int64_t *)ind)[i] : ((const int32_t *)ind)[i];
            k = k < 0 ? k + size : k;
            float *dst = block + k * row;
            for (int64_t j = 0; j < row; j++)
                dst[j] += dy[j];
            dy += row;
        }
    }
}

static void gather_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                            const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)ctx;
    const axis_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    const onyx_tensor *ind = &in[1];
    if (din[0].data == NULL || dout[0].data == NULL || onyx_numel(&out[0]) == 0)
        return;
    int axis = (int)(p->axis < 0 ? p->axis + x->rank : p->axis);
    int64_t outer = dims_prod(x->dims, 0, axis);
    int64_t row = dims_prod(x->dims, axis + 1, x->rank);
    gather_backward_f32(dout[0].data, din[0].data, outer, x->dims[axis], row, ind->data,
                        ind->dtype == ONYX_DTYPE_I64, onyx_numel(ind));
}

const onyx_op_impl onyx_impl_gather = {.init = gather_init,
                                       .infer = gather_infer,
                                       .forward = gather_forward,
                                       .backward = gather_backward,
                                       .grad_inputs = 1u << 0};

/* ---- Constant ----------------------------------------------------------------------------- */

typedef struct constant_priv {
    onyx_tensor value; /* data points into the model's attribute, or at f or i below */
    float f;
    int64_t i;
} constant_priv;

static onyx_status constant_init(onyx_node *n, onyx_error *err)
{
    static const char *const names[] = {"value",        "sparse_value", "value_float",
                                        "value_floats", "value_int",    "value_ints",
                                        "value_string", "value_strings"};
    onyx_status st = onyx_node_check_arity(n, 0, 0, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    constant_priv parsed = {0};
    constant_priv *p = &parsed;

    const char *which = NULL;
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        if (onyx_node_attr(n, names[k]) == NULL)
            continue;
        if (which != NULL)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "has attributes %s and %s; exactly one value attribute must "
                                 "be given",
                                 which, names[k]);
        which = names[k];
    }
    if (which == NULL)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "has no value attribute; exactly one of value, sparse_value, "
                             "value_float(s), value_int(s), value_string(s) must be given");
    if (strcmp(which, "sparse_value") == 0 || strncmp(which, "value_string", 12) == 0)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "attribute %s is not supported by onyx (only dense numeric "
                             "constants are)",
                             which);
    if (strcmp(which, "value") != 0 && n->opset < 12)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "attribute %s needs opset 12 or later", which);

    onyx_tensor *v = &p->value;
    if (strcmp(which, "value") == 0) {
        const onyx_tensor *t;
        st = onyx_attr_tensor(n, "value", &t, NULL, err);
        if (st != ONYX_OK)
            return st;
        if (t->dtype == ONYX_DTYPE_STRING)
            return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                                 "attribute value is a string tensor, which onyx does not "
                                 "support");
        if (!onyx_dtype_is_known(t->dtype) || !onyx_shape_known(t))
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "attribute value has dtype %d, which onyx does not know",
                                 (int)t->dtype);
        if (t->data == NULL && onyx_numel(t) > 0)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "attribute value has no data");
        *v = *t;
    } else if (strcmp(which, "value_float") == 0) {
        st = onyx_attr_float(n, which, 0.0f, &p->f, err);
        *v = (onyx_tensor){.dtype = ONYX_DTYPE_F32, .rank = 0}; /* data: set below */
    } else if (strcmp(which, "value_int") == 0) {
        st = onyx_attr_int(n, which, 0, &p->i, err);
        *v = (onyx_tensor){.dtype = ONYX_DTYPE_I64, .rank = 0}; /* data: set below */
    } else if (strcmp(which, "value_floats") == 0) {
        const float *f;
        size_t count;
        st = onyx_attr_floats(n, which, &f, &count, NULL, err);
        *v = (onyx_tensor){.dtype = ONYX_DTYPE_F32, .rank = 1, .dims = {(int64_t)count},
                           .data = (void *)(uintptr_t)f};
    } else { /* value_ints */
        const int64_t *i;
        size_t count;
        st = onyx_attr_ints(n, which, &i, &count, NULL, err);
        *v = (onyx_tensor){.dtype = ONYX_DTYPE_I64, .rank = 1, .dims = {(int64_t)count},
                           .data = (void *)(uintptr_t)i};
    }
    if (st != ONYX_OK)
        return st;
    st = onyx_node_set_priv(n, p, sizeof(*p), err);
    if (st != ONYX_OK)
        return st;
    /* The scalar forms hold their value in the node's own copy of the struct. */
    constant_priv *q = n->priv;
    if (strcmp(which, "value_float") == 0)
        q->value.data = &q->f;
    else if (strcmp(which, "value_int") == 0)
        q->value.data = &q->i;
    return ONYX_OK;
}

/* () -> output: the attribute's tensor (value), scalar (value_float/int) or 1-D (value_floats/
 * ints). */
static onyx_status constant_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                  onyx_error *err)
{
    (void)in;
    (void)err;
    const constant_priv *p = n->priv;
    same_shape(&p->value, &out[0]);
    return ONYX_OK;
}

static void constant_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                             onyx_tensor *out)
{
    (void)ctx;
    (void)in;
    const constant_priv *p = n->priv;
    size_t nb = onyx_nbytes(&out[0]);
    if (nb > 0)
        memcpy(out[0].data, p->value.data, nb);
}

const onyx_op_impl onyx_impl_constant = {
    .init = constant_init, .infer = constant_infer, .forward = constant_forward};

/* ---- ConstantOfShape ---------------------------------------------------------------------- */

typedef struct cos_priv {
    onyx_dtype dtype;
    unsigned char value[16]; /* one element of dtype */
} cos_priv;

static onyx_status cos_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 1, 1, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    cos_priv parsed = {0};
    cos_priv *p = &parsed;
    p->dtype = ONYX_DTYPE_F32; /* default: float32 0 (value[] is zeroed) */
    const onyx_tensor *t;
    bool present;
    st = onyx_attr_tensor(n, "value", &t, &present, err);
    if (st != ONYX_OK)
        return st;
    if (!present)
        return onyx_node_set_priv(n, p, sizeof(*p), err);
    char s[96];
    if (t->dtype == ONYX_DTYPE_STRING)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "attribute value is a string tensor, which onyx does not support");
    if (!onyx_dtype_is_known(t->dtype) || !onyx_shape_known(t))
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "attribute value has dtype %d, which onyx does not know",
                             (int)t->dtype);
    if (onyx_numel(t) != 1 || t->data == NULL)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "attribute value has shape %s, expected one element",
                             onyx_shape_str(t, s, sizeof s));
    p->dtype = t->dtype;
    memcpy(p->value, t->data, onyx_dtype_size(t->dtype));
    return onyx_node_set_priv(n, p, sizeof(*p), err);
}

/* input: (k) int64, all >= 0 -> output: shape input[0..k), every element the value attribute
 * (dtype of the value; float32 0 by default). An empty input gives a scalar. */
static onyx_status cos_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                             onyx_error *err)
{
    const cos_priv *p = n->priv;
    int64_t len;
    const int64_t *v;
    char s[160];
    onyx_status st = list_input(n, &in[0], 0, "input", false, &len, &v, err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = p->dtype;
    out[0].rank = -1;
    if (len < 0)
        return ONYX_OK;
    if (len > ONYX_MAX_RANK)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "input 0 (input) asks for rank %lld; onyx supports at most %d",
                             (long long)len, ONYX_MAX_RANK);
    out[0].rank = (int)len;
    for (int i = 0; i < (int)len; i++) {
        out[0].dims[i] = v != NULL ? v[i] : -1;
        if (v != NULL && v[i] < 0)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input 0 (input) %s has a negative dimension at index %d",
                                 onyx_ints_str(v, len, s, sizeof s), i);
    }
    int64_t numel;
    if (v != NULL && !onyx_shape_numel(v, (int)len, onyx_dtype_size(p->dtype), &numel))
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input 0 (input) %s asks for a %s tensor larger than onyx's "
                             "limit of %lld bytes",
                             onyx_ints_str(v, len, s, sizeof s), onyx_dtype_name(p->dtype),
                             (long long)ONYX_MAX_TENSOR_BYTES);
    return ONYX_OK;
}

/* Fills y with the value: one element, then copies of what is already written, doubling. */
static void cos_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                        onyx_tensor *out)
{
    (void)ctx;
    (void)in;
    const cos_priv *p = n->priv;
    size_t total = onyx_nbytes(&out[0]);
    size_t es = onyx_dtype_size(p->dtype);
    unsigned char *y = out[0].data;
    if (total == 0)
        return;
    memcpy(y, p->value, es);
    for (size_t done = es; done < total;) {
        size_t chunk = done < total - done ? done : total - done;
        memcpy(y + done, y, chunk);
        done += chunk;
    }
}

const onyx_op_impl onyx_impl_constantofshape = {
    .init = cos_init, .infer = cos_infer, .forward = cos_forward};

/* ---- Expand ------------------------------------------------------------------------------- */

static onyx_status expand_init(onyx_node *n, onyx_error *err)
{
    return onyx_node_check_arity(n, 2, 2, 1, 1, err);
}

/*
 * input: any shape, shape: (k) int64 -> output: numpy broadcast of input's shape and `shape`
 * (bidirectional: a 1 in `shape` keeps input's dim, and k may be smaller than input's rank).
 */
static onyx_status expand_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                onyx_error *err)
{
    const onyx_tensor *x = &in[0];
    int64_t len;
    const int64_t *v;
    char s[160];
    onyx_status st = check_not_string(n, x, 0, "input", err);
    if (st != ONYX_OK)
        return st;
    st = list_input(n, &in[1], 1, "shape", false, &len, &v, err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = x->dtype;
    out[0].rank = -1;
    if (len < 0)
        return ONYX_OK;
    if (len > ONYX_MAX_RANK)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "input 1 (shape) asks for rank %lld; onyx supports at most %d",
                             (long long)len, ONYX_MAX_RANK);
    /* Unknown values act as unknown dims: broadcasting then keeps input's dims > 1. */
    onyx_tensor target = {.dtype = ONYX_DTYPE_I64, .rank = (int)len};
    for (int i = 0; i < (int)len; i++) {
        target.dims[i] = v != NULL ? v[i] : -1;
        if (v != NULL && v[i] < 0)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input 1 (shape) %s has a negative dimension at index %d",
                                 onyx_ints_str(v, len, s, sizeof s), i);
    }
    st = onyx_broadcast_shape(n, x, &target, &out[0], err);
    if (st != ONYX_OK)
        return st;
    int64_t numel;
    if (onyx_shape_known(&out[0]) &&
        !onyx_shape_numel(out[0].dims, out[0].rank, onyx_dtype_size(x->dtype), &numel))
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "output shape %s is larger than onyx's limit of %lld bytes",
                             onyx_shape_str(&out[0], s, sizeof s),
                             (long long)ONYX_MAX_TENSOR_BYTES);
    return ONYX_OK;
}

static void expand_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                           onyx_tensor *out)
{
    (void)n;
    (void)ctx;
    onyx_broadcast_copy(&in[0], &out[0]);
}

/*
 * Backward of output = input broadcast to the output's shape: every output element is a copy of
 * one input element, so dx[k] += the sum of dy over the elements that copied x[k]. The walk
 * visits dy row by row; along a row x steps by 1 (dx += the row) or by 0 (dx[k] += the row's
 * sum, accumulated in double).
 */
static void expand_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                            const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)n;
    (void)ctx;
    const float *dy = dout[0].data;
    float *dx = din[0].data;
    int64_t numel = onyx_numel(&out[0]);
    if (dx == NULL || dy == NULL || numel == 0)
        return;
    onyx_broadcast_walk w;
    onyx_broadcast_walk_init(&w, &out[0], &in[0], NULL);
    int64_t inner = w.dims[w.rank - 1];
    bool along = w.st[0][w.rank - 1] != 0;
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off[2] = {0, 0};
    for (int64_t done = 0; done < numel; done += inner) {
        if (along) {
            add_f32(dy, dx + off[0], inner);
        } else {
            double s = 0.0;
            for (int64_t j = 0; j < inner; j++)
                s += dy[j];
            dx[off[0]] += (float)s;
        }
        dy += inner;
        onyx_broadcast_walk_next(&w, idx, off);
    }
}

const onyx_op_impl onyx_impl_expand = {.init = expand_init,
                                       .infer = expand_infer,
                                       .forward = expand_forward,
                                       .backward = expand_backward,
                                       .grad_inputs = 1u << 0};
