/*
 * elementwise.c — binary arithmetic with numpy broadcasting (Add, Sub, Mul, Div, Pow), the
 * variadic Sum, and the unary maths (Sqrt, Neg, Abs, Exp, Log, Erf).
 *
 * float32 runs through raw loops. Every other dtype the spec allows goes through one generic
 * path that computes in double (float types) or int64 (integer types) and converts at the edges
 * with onyx_load_* / onyx_store_*: slower, but one loop for all of them.
 *
 * Broadcasting goes through onyx_broadcast_walk (ops/broadcast.c), planned once per call: an
 * odometer over the outer dimensions and one contiguous inner row in which each source has
 * stride 1 or 0, so no element pays for index arithmetic.
 *
 * Large float32 tensors (binary ops forward and backward, unary maths) are split over the
 * session's thread pool in fixed chunks of elements (onyx_parallel_for): a chunk starts its walk
 * at its first element (one division per chunk) and every element is computed by the same
 * row loop, so results do not depend on the thread count.
 */
#include "activation.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- binary ops: Add, Sub, Mul, Div, Pow -------------------------------------------------- */

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_BINARY_COUNT };

static const char *const binary_names[OP_BINARY_COUNT] = {"Add", "Sub", "Mul", "Div", "Pow"};

typedef struct binary {
    int op;
    bool legacy;   /* opset < 7: broadcasting only with broadcast=1, B onto A */
    bool bcast;    /* opset < 7: attribute broadcast */
    bool has_axis; /* opset < 7: attribute axis given */
    int64_t axis;
} binary;

/*
 * Raw loops y = a (op) b over one row of n elements. Three variants per op:
 *   vv: a (n), b (n);  vs: a (n), b (1) held fixed;  sv: a (1) held fixed, b (n).
 * y (n) never aliases a or b.
 */
typedef void (*binary_f32_fn)(int64_t n, const float *restrict a, const float *restrict b,
                              float *restrict y);

#define BINARY_F32(name, expr)                                                                     \
    static void name##_f32_vv(int64_t n, const float *restrict a, const float *restrict b,         \
                              float *restrict y)                                                   \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++) {                                                          \
            float x0 = a[i];                                                                       \
            float x1 = b[i];                                                                       \
            y[i] = (expr);                                                                         \
        }                                                                                          \
    }                                                                                              \
    static void name##_f32_vs(int64_t n, const float *restrict a, const float *restrict b,         \
                              float *restrict y)                                                   \
    {                                                                                              \
        const float x1 = b[0];                                                                     \
        for (int64_t i = 0; i < n; i++) {                                                          \
            float x0 = a[i];                                                                       \
            y[i] = (expr);                                                                         \
        }                                                                                          \
    }                                                                                              \
    static void name##_f32_sv(int64_t n, const float *restrict a, const float *restrict b,         \
                              float *restrict y)                                                   \
    {                                                                                              \
        const float x0 = a[0];                                                                     \
        for (int64_t i = 0; i < n; i++) {                                                          \
            float x1 = b[i];                                                                       \
            y[i] = (expr);                                                                         \
        }                                                                                          \
    }

BINARY_F32(add, x0 + x1)
BINARY_F32(sub, x0 - x1)
BINARY_F32(mul, x0 *x1)
BINARY_F32(div, x0 / x1)
BINARY_F32(pow, powf(x0, x1)) /* numpy's float32 power is libm's powf too */

static const binary_f32_fn binary_f32[OP_BINARY_COUNT][3] = {
    {add_f32_vv, add_f32_vs, add_f32_sv}, {sub_f32_vv, sub_f32_vs, sub_f32_sv},
    {mul_f32_vv, mul_f32_vs, mul_f32_sv}, {div_f32_vv, div_f32_vs, div_f32_sv},
    {pow_f32_vv, pow_f32_vs, pow_f32_sv},
};

/* The row loop for a row in which a steps by sa and b by sb (each 0 or 1). */
static binary_f32_fn binary_f32_pick(int op, int64_t sa, int64_t sb)
{
    if (sa != 0 && sb != 0)
        return binary_f32[op][0];
    if (sb == 0)
        return binary_f32[op][1]; /* also a one-element row where both are fixed */
    return binary_f32[op][2];
}

/* Sets the walk's odometer idx and the sources' row offsets off to row `row` of the output,
 * as onyx_broadcast_walk_next would have after `row` steps from zero. */
static void walk_seek(const onyx_broadcast_walk *w, int64_t row, int64_t idx[ONYX_MAX_RANK],
                      int64_t off[2])
{
    off[0] = 0;
    off[1] = 0;
    for (int k = w->rank - 2; k >= 0; k--) {
        idx[k] = row % w->dims[k];
        row /= w->dims[k];
        off[0] += idx[k] * w->st[0][k];
        off[1] += idx[k] * w->st[1][k];
    }
}

/* A float32 binary op over the walk, elements [lo, hi) of y, for onyx_parallel_for. */
typedef struct binary_job {
    binary_f32_fn f; /* the row loop for the inner strides of a and b */
    const onyx_broadcast_walk *w;
    const float *a;
    const float *b;
    float *y;
} binary_job;

static void binary_range_f32(void *ctx, int64_t lo, int64_t hi)
{
    const binary_job *j = ctx;
    const onyx_broadcast_walk *w = j->w;
    int r = w->rank;
    int64_t n = w->dims[r - 1];
    int64_t sa = w->st[0][r - 1];
    int64_t sb = w->st[1][r - 1];
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off[2];
    int64_t col = lo % n; /* the range may start and end inside a row */
    walk_seek(w, lo / n, idx, off);
    while (lo < hi) {
        int64_t len = n - col < hi - lo ? n - col : hi - lo;
        j->f(len, j->a + off[0] + col * sa, j->b + off[1] + col * sb, j->y + lo);
        lo += len;
        col = 0;
        onyx_broadcast_walk_next(w, idx, off);
    }
}

/* y = a (op) b in float32 over the planned walk (y has numel elements, numel > 0), split over
 * pool when large. */
static void binary_forward_f32(onyx_pool *pool, int op, const onyx_broadcast_walk *w,
                               const float *a, const float *b, float *y, int64_t numel)
{
    int r = w->rank;
    binary_job j = {binary_f32_pick(op, w->st[0][r - 1], w->st[1][r - 1]), w, a, b, y};
    onyx_parallel_for(pool, numel, 1, binary_range_f32, &j);
}

/* base^e for integers, exact and wrapping modulo 2^64 like numpy. A negative exponent gives
 * what truncating the real result gives (1 for base 1, +-1 for base -1, else 0); numpy refuses
 * it and C's pow would go through double. */
static int64_t int_pow(int64_t base, int64_t e, bool e_unsigned)
{
    if (!e_unsigned && e < 0) {
        if (base == 1)
            return 1;
        if (base == -1)
            return (e & 1) ? -1 : 1;
        return 0;
    }
    uint64_t ue = (uint64_t)e;
    uint64_t b = (uint64_t)base;
    uint64_t r = 1;
    while (ue != 0) {
        if (ue & 1u)
            r *= b;
        b *= b;
        ue >>= 1;
    }
    return (int64_t)r;
}

/* a (op) b on integers held in int64, wrapping like the narrow type does once stored.
 * Division truncates toward zero (C, ONNX Runtime; numpy's // agrees for non-negative data);
 * division by zero gives 0 as numpy does, where C leaves it undefined. */
static int64_t int_binary(int op, int64_t a, int64_t b, bool is_unsigned, bool b_unsigned)
{
    uint64_t ua = (uint64_t)a;
    uint64_t ub = (uint64_t)b;
    switch (op) {
    case OP_ADD: return (int64_t)(ua + ub);
    case OP_SUB: return (int64_t)(ua - ub);
    case OP_MUL: return (int64_t)(ua * ub);
    case OP_DIV:
        if (b == 0)
            return 0;
        if (is_unsigned)
            return (int64_t)(ua / ub);
        if (a == INT64_MIN && b == -1)
            return INT64_MIN;
        return a / b;
    default: return int_pow(a, b, b_unsigned);
    }
}

static double f64_binary(int op, double a, double b)
{
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_DIV: return a / b;
    default: return pow(a, b);
    }
}

/* Every dtype but float32: computes in int64 when the output is an integer type (and, for Pow,
 * the exponent too), else in double. */
static void binary_forward_generic(int op, const onyx_broadcast_walk *w, const onyx_tensor *a,
                                   const onyx_tensor *b, onyx_tensor *y, int64_t numel)
{
    onyx_dtype ta = a->dtype;
    onyx_dtype tb = b->dtype;
    onyx_dtype ty = y->dtype;
    bool int_math = onyx_dtype_is_int(ty) && onyx_dtype_is_int(tb);
    bool y_unsigned = !onyx_dtype_is_signed(ty);
    bool b_unsigned = !onyx_dtype_is_signed(tb);
    int r = w->rank;
    int64_t n = w->dims[r - 1];
    int64_t sa = w->st[0][r - 1];
    int64_t sb = w->st[1][r - 1];
    int64_t rows = numel / n;
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off[2] = {0, 0};
    for (int64_t i = 0; i < rows; i++) {
        int64_t ia = off[0];
        int64_t ib = off[1];
        int64_t iy = i * n;
        for (int64_t j = 0; j < n; j++, ia += sa, ib += sb, iy++) {
            if (int_math) {
                int64_t v = int_binary(op, onyx_load_i64(ta, a->data, ia),
                                       onyx_load_i64(tb, b->data, ib), y_unsigned, b_unsigned);
                onyx_store_i64(ty, y->data, iy, v);
            } else {
                double v =
                    f64_binary(op, onyx_load_f64(ta, a->data, ia), onyx_load_f64(tb, b->data, ib));
                onyx_store_f64(ty, y->data, iy, v);
            }
        }
        onyx_broadcast_walk_next(w, idx, off);
    }
}

static onyx_status binary_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 2, 2, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    binary p = {.op = OP_BINARY_COUNT};
    for (int i = 0; i < OP_BINARY_COUNT; i++)
        if (strcmp(n->op_type, binary_names[i]) == 0)
            p.op = i;
    if (p.op == OP_BINARY_COUNT)
        return onyx_node_err(err, n, ONYX_ERR_INTERNAL, "not a binary op");
    if (n->opset < 7) {
        int64_t bcast = 0;
        p.legacy = true;
        st = onyx_attr_int(n, "broadcast", 0, &bcast, err);
        if (st == ONYX_OK)
            st = onyx_attr_int(n, "axis", 0, &p.axis, err);
        if (st != ONYX_OK)
            return st;
        p.bcast = bcast != 0;
        p.has_axis = onyx_node_attr(n, "axis") != NULL;
    }
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

/*
 * Opset 1-6 broadcasting: without broadcast=1 the shapes must be equal; with it, B's dims sit
 * under A's from `axis` on (suffix matching when axis is not given), each equal to A's or 1, and
 * the output has A's shape. *view is B seen with A's rank, ready for numpy broadcasting.
 */
static onyx_status legacy_view(const onyx_node *n, const binary *p, const onyx_tensor *a,
                               const onyx_tensor *b, onyx_tensor *view, onyx_error *err)
{
    *view = *b;
    if (a->rank < 0 || b->rank < 0)
        return ONYX_OK;
    char sa[96];
    char sb[96];
    if (!p->bcast) {
        bool same = a->rank == b->rank;
        for (int i = 0; same && i < a->rank; i++)
            if (a->dims[i] >= 0 && b->dims[i] >= 0 && a->dims[i] != b->dims[i])
                same = false;
        if (!same)
            return onyx_node_err(
                err, n, ONYX_ERR_SHAPE, "shapes %s and %s differ and attribute broadcast is 0",
                onyx_shape_str(a, sa, sizeof sa), onyx_shape_str(b, sb, sizeof sb));
        return ONYX_OK;
    }
    int64_t axis = p->has_axis ? p->axis : a->rank - b->rank;
    if (b->rank > a->rank || axis < 0 || axis + b->rank > a->rank)
        return onyx_node_err(
            err, n, ONYX_ERR_SHAPE, "shape %s of B does not fit under shape %s of A at axis %lld",
            onyx_shape_str(b, sb, sizeof sb), onyx_shape_str(a, sa, sizeof sa), (long long)axis);
    view->rank = a->rank;
    for (int i = 0; i < a->rank; i++)
        view->dims[i] = 1;
    for (int i = 0; i < b->rank; i++) {
        int64_t db = b->dims[i];
        int64_t da = a->dims[axis + i];
        if (db >= 0 && da >= 0 && db != 1 && db != da)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "shape %s of B does not broadcast to shape %s of A at axis %lld "
                                 "(dimension %d: %lld vs %lld)",
                                 onyx_shape_str(b, sb, sizeof sb), onyx_shape_str(a, sa, sizeof sa),
                                 (long long)axis, i, (long long)db, (long long)da);
        view->dims[axis + i] = db;
    }
    return ONYX_OK;
}

/* The dtypes the spec allows, by op and opset: A/X (the output's too) and B/Y. */
static void binary_dtypes(int op, int64_t opset, unsigned *ta, unsigned *tb)
{
    if (op == OP_POW) {
        if (opset < 12) {
            *ta = ONYX_DT_FLOAT;
            *tb = ONYX_DT_FLOAT;
            return;
        }
        *ta = ONYX_DT_FLOAT | ONYX_DT(ONYX_DTYPE_I32) | ONYX_DT(ONYX_DTYPE_I64) |
              (opset >= 13 ? ONYX_DT_BF16 : 0);
        *tb = ONYX_DT_FLOAT | ONYX_DT_INT | (opset >= 15 ? ONYX_DT_BF16 : 0);
        return;
    }
    if (opset < 6)
        *ta = ONYX_DT_FLOAT;
    else if (opset < 14)
        *ta = ONYX_DT_FLOAT | ONYX_DT(ONYX_DTYPE_I32) | ONYX_DT(ONYX_DTYPE_I64) |
              ONYX_DT(ONYX_DTYPE_U32) | ONYX_DT(ONYX_DTYPE_U64) | (opset >= 13 ? ONYX_DT_BF16 : 0);
    else
        *ta = ONYX_DT_FLOAT | ONYX_DT_BF16 | ONYX_DT_INT;
    *tb = *ta;
}

static onyx_status binary_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                onyx_error *err)
{
    const binary *p = n->priv;
    bool pow_op = p->op == OP_POW;
    const char *name_a = pow_op ? "X" : "A";
    const char *name_b = pow_op ? "Y" : "B";
    unsigned ta;
    unsigned tb;
    binary_dtypes(p->op, n->opset, &ta, &tb);
    onyx_status st = onyx_node_check_dtype(n, name_a, in[0].dtype, ta, err);
    if (st == ONYX_OK)
        st = onyx_node_check_dtype(n, name_b, in[1].dtype, tb, err);
    if (st != ONYX_OK)
        return st;
    /* Pow takes a different exponent type from opset 12; all else needs both the same. */
    bool mixed_ok = pow_op && n->opset >= 12;
    if (!mixed_ok)
        st = onyx_node_check_same_dtype(n, name_b, in[1].dtype, name_a, in[0].dtype, err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = in[0].dtype;
    if (!p->legacy)
        return onyx_broadcast_shape(n, &in[0], &in[1], &out[0], err);
    onyx_tensor view;
    st = legacy_view(n, p, &in[0], &in[1], &view, err);
    if (st != ONYX_OK)
        return st;
    /* A's shape; where A's dim is unknown, B's may tell it */
    out[0].rank = in[0].rank;
    for (int i = 0; i < in[0].rank; i++) {
        out[0].dims[i] = in[0].dims[i];
        if (in[0].dims[i] < 0 && view.rank == in[0].rank && view.dims[i] > 1)
            out[0].dims[i] = view.dims[i];
    }
    return ONYX_OK;
}

/* A: any shape, B: broadcastable with A; Y = A (op) B, numpy broadcasting (ONNX Add-14 etc.;
 * Pow-15: Z = X^Y). Opset < 7: see legacy_view. */
static void binary_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                           onyx_tensor *out)
{
    const binary *p = n->priv;
    int64_t numel = onyx_numel(&out[0]);
    if (numel == 0)
        return;
    onyx_tensor b = in[1];
    if (p->legacy)
        (void)legacy_view(n, p, &in[0], &in[1], &b, NULL); /* checked by infer */
    onyx_broadcast_walk w;
    onyx_broadcast_walk_init(&w, &out[0], &in[0], &b);
    if (in[0].dtype == ONYX_DTYPE_F32 && b.dtype == ONYX_DTYPE_F32)
        binary_forward_f32(ctx->pool, p->op, &w, in[0].data, b.data, out[0].data, numel);
    else
        binary_forward_generic(p->op, &w, &in[0], &b, &out[0], numel);
}

/*
 * Backward of Y = A (op) B (binary_forward). Per element, with g = dY:
 *   Add: dA = g               dB = g
 *   Sub: dA = g               dB = -g
 *   Mul: dA = g B             dB = g A
 *   Div: dA = g / B           dB = -g A / B^2 = -g Y / B
 *   Pow: dA = g B A^(B-1)     dB = g Y ln A
 *        (PyTorch's conventions: dA = 0 where B = 0, dB = 0 where A = 0 and B >= 0)
 * and each input's gradient is summed over the dims along which that input is broadcast.
 * Add and Sub need only that sum (onyx_broadcast_reduce_f32); Mul, Div and Pow walk the
 * forward's rows again with the raw loops below.
 *
 * Raw loops dx += expr over one row of n elements of Y: a, b the operands' rows, y and dy the
 * rows of Y and dY (n each), dx the row of the gradient of the input named in the function
 * (da_ or db_). Suffix vv: both operands step by 1; vs: b is held fixed; sv: a is held fixed.
 * Where the gradient's own input is held fixed, the row reduces into dx[0] (summed in double).
 */
typedef void (*grad_row_f32_fn)(int64_t n, const float *restrict a, const float *restrict b,
                                const float *restrict y, const float *restrict dy,
                                float *restrict dx);

/* dx[i] += expr, with x0 = A and x1 = B: the element's operands, yv = y[i], g = dy[i] */
#define GRAD_ROW_V(fn, expr, A, B)                                                                 \
    static void fn(int64_t n, const float *restrict a, const float *restrict b,                    \
                   const float *restrict y, const float *restrict dy, float *restrict dx)          \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++) {                                                          \
            const float x0 = (A);                                                                  \
            const float x1 = (B);                                                                  \
            const float yv = y[i];                                                                 \
            const float g = dy[i];                                                                 \
            (void)x0;                                                                              \
            (void)x1;                                                                              \
            (void)yv;                                                                              \
            dx[i] += (expr);                                                                       \
        }                                                                                          \
    }

/* dx[0] += sum over the row of expr */
#define GRAD_ROW_S(fn, expr, A, B)                                                                 \
    static void fn(int64_t n, const float *restrict a, const float *restrict b,                    \
                   const float *restrict y, const float *restrict dy, float *restrict dx)          \
    {                                                                                              \
        double s = 0.0;                                                                            \
        for (int64_t i = 0; i < n; i++) {                                                          \
            const float x0 = (A);                                                                  \
            const float x1 = (B);                                                                  \
            const float yv = y[i];                                                                 \
            const float g = dy[i];                                                                 \
            (void)x0;                                                                              \
            (void)x1;                                                                              \
            (void)yv;                                                                              \
            s += (expr);                                                                           \
        }                                                                                          \
        dx[0] += (float)s;                                                                         \
    }

#define BINARY_BACKWARD_F32(name, ga, gb)                                                          \
    GRAD_ROW_V(name##_da_vv, ga, a[i], b[i])                                                       \
    GRAD_ROW_V(name##_da_vs, ga, a[i], b[0])                                                       \
    GRAD_ROW_S(name##_da_sv, ga, a[0], b[i])                                                       \
    GRAD_ROW_V(name##_db_vv, gb, a[i], b[i])                                                       \
    GRAD_ROW_V(name##_db_sv, gb, a[0], b[i])                                                       \
    GRAD_ROW_S(name##_db_vs, gb, a[i], b[0])

/* d/dA and d/dB of A B, A / B and A^B; see the table above */
BINARY_BACKWARD_F32(mul, (g * x1), (g * x0))
BINARY_BACKWARD_F32(div, (g / x1), (-g * yv / x1))
BINARY_BACKWARD_F32(pow, (x1 == 0.0f ? 0.0f : g * x1 * powf(x0, x1 - 1.0f)),
                    ((x0 == 0.0f && x1 >= 0.0f) ? 0.0f : g * yv * logf(x0)))

/* [op][0: dA, 1: dB][variant vv, vs, sv]; Add and Sub (rows 0 and 1) use no row loops */
static const grad_row_f32_fn binary_grad_f32[OP_BINARY_COUNT][2][3] = {
    [OP_MUL] = {{mul_da_vv, mul_da_vs, mul_da_sv}, {mul_db_vv, mul_db_vs, mul_db_sv}},
    [OP_DIV] = {{div_da_vv, div_da_vs, div_da_sv}, {div_db_vv, div_db_vs, div_db_sv}},
    [OP_POW] = {{pow_da_vv, pow_da_vs, pow_da_sv}, {pow_db_vv, pow_db_vs, pow_db_sv}},
};

/* The gradient of input s (0: A, 1: B) of Mul, Div or Pow over the forward's walk, elements
 * [lo, hi) of Y, for onyx_parallel_for. A range that splits rows is only given when input s is
 * not broadcast (each element of dx then belongs to one element of Y); otherwise the range is
 * all of Y, whose rows reduce in order. */
typedef struct grad_job {
    grad_row_f32_fn f;
    const onyx_broadcast_walk *w;
    const float *a;
    const float *b;
    const float *y;
    const float *dy;
    float *dx;
    int s;
} grad_job;

static void grad_range_f32(void *ctx, int64_t lo, int64_t hi)
{
    const grad_job *j = ctx;
    const onyx_broadcast_walk *w = j->w;
    int r = w->rank;
    int64_t n = w->dims[r - 1];
    int64_t sa = w->st[0][r - 1];
    int64_t sb = w->st[1][r - 1];
    int64_t sx = w->st[j->s][r - 1];
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off[2];
    int64_t col = lo % n;
    walk_seek(w, lo / n, idx, off);
    while (lo < hi) {
        int64_t len = n - col < hi - lo ? n - col : hi - lo;
        j->f(len, j->a + off[0] + col * sa, j->b + off[1] + col * sb, j->y + lo, j->dy + lo,
             j->dx + off[j->s] + col * sx);
        lo += len;
        col = 0;
        onyx_broadcast_walk_next(w, idx, off);
    }
}

/* dA and/or dB (each NULL when not wanted) of Mul, Div or Pow over the forward's walk; y and
 * dy have numel > 0 elements. One input's gradient at a time, so dA and dB may be the same
 * buffer (Mul(X, X)). whole[s]: input s is not broadcast (has numel elements), so its gradient
 * may be split over pool; a broadcast input's gradient sums rows, on this thread in order. */
static void binary_backward_f32(onyx_pool *pool, int op, const onyx_broadcast_walk *w,
                                const float *a, const float *b, const float *y, const float *dy,
                                float *da, float *db, const bool whole[2], int64_t numel)
{
    int r = w->rank;
    int64_t sa = w->st[0][r - 1];
    int64_t sb = w->st[1][r - 1];
    int v = sa != 0 && sb != 0 ? 0 : sb == 0 ? 1 : 2;
    for (int s = 0; s < 2; s++) {
        grad_job j = {binary_grad_f32[op][s][v], w, a, b, y, dy, s == 0 ? da : db, s};
        if (j.dx == NULL)
            continue;
        if (whole[s])
            onyx_parallel_for(pool, numel, 1, grad_range_f32, &j);
        else
            grad_range_f32(&j, 0, numel);
    }
}

/* Pow with an exponent that is not float32 (opset >= 12 allows integers) needs it converted
 * for the float32 loops: that many bytes of scratch. */
static size_t binary_scratch_size(const onyx_node *n, const onyx_tensor *in, const onyx_tensor *out)
{
    (void)out;
    const binary *p = n->priv;
    if (p->op != OP_POW || in[0].dtype != ONYX_DTYPE_F32 || in[1].dtype == ONYX_DTYPE_F32 ||
        !onyx_shape_known(&in[1]))
        return 0;
    return (size_t)onyx_numel(&in[1]) * sizeof(float);
}

/* A, B: the forward's operands (B: any dtype for Pow); Y: the forward's output; dY: Y's shape;
 * dA, dB: A's and B's shapes, accumulated into (see the table above binary_backward_f32). */
static void binary_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                            const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    const binary *p = n->priv;
    int64_t numel = onyx_numel(&out[0]);
    if (numel == 0 || dout[0].data == NULL || in[0].dtype != ONYX_DTYPE_F32)
        return;
    float *da = din[0].data;
    float *db = in[1].dtype == ONYX_DTYPE_F32 ? din[1].data : NULL;
    onyx_tensor b = in[1];
    if (p->legacy)
        (void)legacy_view(n, p, &in[0], &in[1], &b, NULL); /* checked by infer */
    if (p->op == OP_ADD || p->op == OP_SUB) {
        if (da != NULL)
            onyx_broadcast_reduce_f32(&out[0], dout[0].data, &in[0], da, 1.0f);
        if (db != NULL)
            onyx_broadcast_reduce_f32(&out[0], dout[0].data, &b, db,
                                      p->op == OP_ADD ? 1.0f : -1.0f);
        return;
    }
    if (b.dtype != ONYX_DTYPE_F32) { /* Pow's integer exponent: converted into scratch */
        if (p->op != OP_POW || da == NULL || ctx->scratch == NULL)
            return;
        float *bf = ctx->scratch;
        int64_t nb = onyx_numel(&b);
        for (int64_t i = 0; i < nb; i++)
            bf[i] = (float)onyx_load_f64(b.dtype, b.data, i);
        b.data = bf;
    }
    onyx_broadcast_walk w;
    onyx_broadcast_walk_init(&w, &out[0], &in[0], &b);
    bool whole[2] = {onyx_numel(&in[0]) == numel, onyx_numel(&b) == numel};
    binary_backward_f32(ctx->pool, p->op, &w, in[0].data, b.data, out[0].data, dout[0].data, da, db,
                        whole, numel);
}

const onyx_op_impl onyx_impl_binary = {
    .init = binary_init,
    .infer = binary_infer,
    .forward = binary_forward,
    .backward = binary_backward,
    .fini = NULL,
    .flags = 0,
    .grad_inputs = 0x3u, /* A and B (Pow: X and Y) */
    .scratch_size = binary_scratch_size,
};

/* ---- Sum ---------------------------------------------------------------------------------- */

static onyx_status sum_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 1, n->n_in, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    for (int i = 0; i < n->n_in; i++)
        if (!onyx_node_has_in(n, i))
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "input %d is empty; every input of Sum is required", i);
    return ONYX_OK;
}

/* Opset 6-7: all inputs have one shape; unknown dims are filled from the other inputs. */
static onyx_status sum_same_shape(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                  onyx_error *err)
{
    out->rank = -1;
    for (int i = 0; i < n->n_in; i++) {
        const onyx_tensor *t = &in[i];
        if (t->rank < 0)
            continue;
        if (out->rank < 0) {
            out->rank = t->rank;
            memcpy(out->dims, t->dims, sizeof(t->dims));
            continue;
        }
        bool same = t->rank == out->rank;
        for (int k = 0; same && k < t->rank; k++) {
            if (out->dims[k] < 0)
                out->dims[k] = t->dims[k];
            else if (t->dims[k] >= 0 && t->dims[k] != out->dims[k])
                same = false;
        }
        if (!same) {
            char s0[96];
            char si[96];
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input %d has shape %s, expected %s like the others (no "
                                 "broadcasting before opset 8)",
                                 i, onyx_shape_str(t, si, sizeof si),
                                 onyx_shape_str(out, s0, sizeof s0));
        }
    }
    return ONYX_OK;
}

static onyx_status sum_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                             onyx_error *err)
{
    unsigned mask = ONYX_DT_FLOAT | (n->opset >= 13 ? ONYX_DT_BF16 : 0);
    onyx_dtype dt = ONYX_DTYPE_UNDEFINED; /* of the first input whose dtype is known */
    char dt_what[32] = "";
    for (int i = 0; i < n->n_in; i++) {
        char what[32];
        snprintf(what, sizeof what, "%d", i);
        onyx_status st = onyx_node_check_dtype(n, what, in[i].dtype, mask, err);
        if (st == ONYX_OK)
            st = onyx_node_check_same_dtype(n, what, in[i].dtype, dt_what, dt, err);
        if (st != ONYX_OK)
            return st;
        if (dt == ONYX_DTYPE_UNDEFINED && in[i].dtype != ONYX_DTYPE_UNDEFINED) {
            dt = in[i].dtype;
            memcpy(dt_what, what, sizeof what);
        }
    }
    out[0].dtype = dt;
    if (n->opset < 8)
        return sum_same_shape(n, in, &out[0], err);
    onyx_tensor acc = in[0];
    for (int i = 1; i < n->n_in; i++) {
        onyx_tensor next = acc;
        onyx_status st = onyx_broadcast_shape(n, &acc, &in[i], &next, err);
        if (st != ONYX_OK)
            return st;
        acc = next;
    }
    out[0].rank = acc.rank;
    memcpy(out[0].dims, acc.dims, sizeof(acc.dims));
    return ONYX_OK;
}

/* Raw loops y += b over one row: b (n), or b (1) held fixed. */
static void sum_acc_f32_v(int64_t n, const float *restrict b, float *restrict y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += b[i];
}

static void sum_acc_f32_s(int64_t n, const float *restrict b, float *restrict y)
{
    const float s = b[0];
    for (int64_t i = 0; i < n; i++)
        y[i] += s;
}

/* y += b in float32 over the walk (source 0 is b). */
static void sum_acc_f32(const onyx_broadcast_walk *w, const float *b, float *y, int64_t numel)
{
    int r = w->rank;
    int64_t n = w->dims[r - 1];
    int64_t rows = numel / n;
    bool contiguous = w->st[0][r - 1] != 0;
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off[2] = {0, 0};
    for (int64_t i = 0; i < rows; i++) {
        if (contiguous)
            sum_acc_f32_v(n, b + off[0], y + i * n);
        else
            sum_acc_f32_s(n, b + off[0], y + i * n);
        onyx_broadcast_walk_next(w, idx, off);
    }
}

/* y += b for the other float types, through double. */
static void sum_acc_generic(const onyx_broadcast_walk *w, const onyx_tensor *b, onyx_tensor *y,
                            int64_t numel)
{
    int r = w->rank;
    int64_t n = w->dims[r - 1];
    int64_t sb = w->st[0][r - 1];
    int64_t rows = numel / n;
    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off[2] = {0, 0};
    for (int64_t i = 0; i < rows; i++) {
        int64_t ib = off[0];
        for (int64_t j = i * n; j < (i + 1) * n; j++, ib += sb) {
            double v = onyx_load_f64(y->dtype, y->data, j) + onyx_load_f64(b->dtype, b->data, ib);
            onyx_store_f64(y->dtype, y->data, j, v);
        }
        onyx_broadcast_walk_next(w, idx, off);
    }
}

/* data_0 ... data_k-1: shapes broadcastable together (opset >= 8; equal before);
 * sum = data_0 + data_1 + ... + data_k-1, added left to right (ONNX Sum-13). */
static void sum_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in, onyx_tensor *out)
{
    (void)ctx;
    onyx_tensor *y = &out[0];
    int64_t numel = onyx_numel(y);
    if (numel == 0)
        return;
    onyx_broadcast_copy(&in[0], y);
    for (int i = 1; i < n->n_in; i++) {
        onyx_broadcast_walk w;
        onyx_broadcast_walk_init(&w, y, &in[i], NULL);
        if (y->dtype == ONYX_DTYPE_F32)
            sum_acc_f32(&w, in[i].data, y->data, numel);
        else
            sum_acc_generic(&w, &in[i], y, numel);
    }
}

/* Backward of sum = data_0 + ... + data_k-1: d data_i = d sum, summed over the dims along
 * which data_i is broadcast. data_i: any shape broadcastable to sum's; d data_i: data_i's. */
static void sum_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                         const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)ctx;
    if (dout[0].data == NULL || out[0].dtype != ONYX_DTYPE_F32)
        return;
    for (int i = 0; i < n->n_in; i++)
        if (din[i].data != NULL)
            onyx_broadcast_reduce_f32(&out[0], dout[0].data, &in[i], din[i].data, 1.0f);
}

const onyx_op_impl onyx_impl_sum = {
    .init = sum_init,
    .infer = sum_infer,
    .forward = sum_forward,
    .backward = sum_backward,
    .fini = NULL,
    .flags = 0,
    .grad_inputs = ONYX_GRAD_ALL,
};

/* ---- unary maths: Sqrt, Neg, Abs, Exp, Log, Erf ------------------------------------------- */

enum { UN_SQRT, UN_NEG, UN_ABS, UN_EXP, UN_LOG, UN_ERF, UN_COUNT };

/* Raw loops y = f(x): x (n), y (n). */
typedef void (*unary_f32_fn)(int64_t n, const float *restrict x, float *restrict y);

#define UNARY_F32(name, expr)                                                                      \
    static void name##_forward_f32(int64_t n, const float *restrict x, float *restrict y)          \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++) {                                                          \
            float v = x[i];                                                                        \
            y[i] = (expr);                                                                         \
        }                                                                                          \
    }

UNARY_F32(sqrt, sqrtf(v))
UNARY_F32(neg, -v)
UNARY_F32(abs, fabsf(v))
UNARY_F32(exp, expf(v))
UNARY_F32(log, logf(v))
UNARY_F32(erf, erff(v))

/*
 * Backward raw loops dx += dy f'(x): x, y = f(x), dy, dx (n each). The derivatives:
 *   Sqrt: 1 / (2 y)              (from the output: no second square root)
 *   Neg:  -1
 *   Abs:  sign(x), 0 at x = 0    (PyTorch's choice at the kink)
 *   Exp:  y                      (from the output)
 *   Log:  1 / x
 *   Erf:  2/sqrt(pi) exp(-x^2)
 */
typedef void (*unary_grad_f32_fn)(int64_t n, const float *restrict x, const float *restrict y,
                                  const float *restrict dy, float *restrict dx);

#define UNARY_BACKWARD_F32(name, expr)                                                             \
    static void name##_backward_f32(int64_t n, const float *restrict x, const float *restrict y,   \
                                    const float *restrict dy, float *restrict dx)                  \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++) {                                                          \
            const float v = x[i];                                                                  \
            const float yv = y[i];                                                                 \
            const float g = dy[i];                                                                 \
            (void)v;                                                                               \
            (void)yv;                                                                              \
            dx[i] += (expr);                                                                       \
        }                                                                                          \
    }

#define TWO_OVER_SQRT_PI 1.12837916709551257390 /* 2/sqrt(pi) */

UNARY_BACKWARD_F32(sqrt, g * 0.5f / yv)
UNARY_BACKWARD_F32(neg, -g)
UNARY_BACKWARD_F32(abs, (g * (float)((v > 0.0f) - (v < 0.0f))))
UNARY_BACKWARD_F32(exp, (g * yv))
UNARY_BACKWARD_F32(log, g / v)
UNARY_BACKWARD_F32(erf, (g * (float)TWO_OVER_SQRT_PI * expf(-v * v)))

static double neg_f64(double v)
{
    return -v;
}

static const struct unary_def {
    const char *op_type;
    unary_f32_fn f32;
    unary_grad_f32_fn grad_f32;
    double (*f64)(double);
    unsigned dtypes; /* of the latest opset; bfloat16 comes in at 13 for all of them */
} unary_defs[UN_COUNT] = {
    [UN_SQRT] = {"Sqrt", sqrt_forward_f32, sqrt_backward_f32, sqrt, ONYX_DT_FLOAT | ONYX_DT_BF16},
    [UN_NEG] = {"Neg", neg_forward_f32, neg_backward_f32, neg_f64,
                ONYX_DT_FLOAT | ONYX_DT_BF16 | ONYX_DT_SINT},
    [UN_ABS] = {"Abs", abs_forward_f32, abs_backward_f32, fabs,
                ONYX_DT_FLOAT | ONYX_DT_BF16 | ONYX_DT_INT},
    [UN_EXP] = {"Exp", exp_forward_f32, exp_backward_f32, exp, ONYX_DT_FLOAT | ONYX_DT_BF16},
    [UN_LOG] = {"Log", log_forward_f32, log_backward_f32, log, ONYX_DT_FLOAT | ONYX_DT_BF16},
    [UN_ERF] = {"Erf", erf_forward_f32, erf_backward_f32, erf,
                ONYX_DT_FLOAT | ONYX_DT_BF16 | ONYX_DT_INT},
};

typedef struct unary {
    int op;
} unary;

static onyx_status unary_init(onyx_node *n, onyx_error *err)
{
    onyx_status st = onyx_node_check_arity(n, 1, 1, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    int op = UN_COUNT;
    for (int i = 0; i < UN_COUNT; i++)
        if (strcmp(n->op_type, unary_defs[i].op_type) == 0)
            op = i;
    if (op == UN_COUNT)
        return onyx_node_err(err, n, ONYX_ERR_INTERNAL, "not a unary op");
    unary p = {op};
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

static onyx_status unary_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                               onyx_error *err)
{
    const unary *p = n->priv;
    unsigned mask = unary_defs[p->op].dtypes;
    if (n->opset < 13)
        mask &= ~ONYX_DT_BF16;
    onyx_status st = onyx_node_check_dtype(n, "X", in[0].dtype, mask, err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = in[0].dtype;
    out[0].rank = in[0].rank;
    memcpy(out[0].dims, in[0].dims, sizeof(in[0].dims));
    return ONYX_OK;
}

/* A float32 unary loop over elements [lo, hi), for onyx_parallel_for: forward y = f(x) (f set,
 * out = y) or backward dx += dy f'(x) (grad set, out = dx). */
typedef struct unary_job {
    unary_f32_fn f;
    unary_grad_f32_fn grad;
    const float *x;
    const float *y;
    const float *dy;
    float *out;
} unary_job;

static void unary_range_f32(void *ctx, int64_t lo, int64_t hi)
{
    const unary_job *j = ctx;
    if (j->f != NULL)
        j->f(hi - lo, j->x + lo, j->out + lo);
    else
        j->grad(hi - lo, j->x + lo, j->y + lo, j->dy + lo, j->out + lo);
}

/* y = f(x) for every dtype but float32: integers through int64 (Neg and Abs exact, wrapping
 * like numpy; Erf through double), floats through double. */
static void unary_forward_generic(int op, const onyx_tensor *x, onyx_tensor *y, int64_t numel)
{
    onyx_dtype dt = x->dtype;
    bool int_exact = onyx_dtype_is_int(dt) && (op == UN_NEG || op == UN_ABS);
    bool is_unsigned = !onyx_dtype_is_signed(dt);
    if (!int_exact) {
        double (*f)(double) = unary_defs[op].f64;
        for (int64_t i = 0; i < numel; i++)
            onyx_store_f64(dt, y->data, i, f(onyx_load_f64(dt, x->data, i)));
        return;
    }
    for (int64_t i = 0; i < numel; i++) {
        int64_t v = onyx_load_i64(dt, x->data, i);
        int64_t neg = (int64_t)(0u - (uint64_t)v); /* wraps at INT64_MIN like numpy */
        if (op == UN_NEG)
            v = neg;
        else if (!is_unsigned && v < 0)
            v = neg;
        onyx_store_i64(dt, y->data, i, v);
    }
}

/* X: any shape; Y: X's shape, Y = f(X) elementwise (ONNX Sqrt-13, Neg-13, Abs-13, Exp-13,
 * Log-13, Erf-13). */
static void unary_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                          onyx_tensor *out)
{
    const unary *p = n->priv;
    int64_t numel = onyx_numel(&out[0]);
    if (numel == 0)
        return;
    if (in[0].dtype == ONYX_DTYPE_F32) {
        unary_job j = {.f = unary_defs[p->op].f32, .x = in[0].data, .out = out[0].data};
        onyx_parallel_for(ctx->pool, numel, 1, unary_range_f32, &j);
    } else
        unary_forward_generic(p->op, &in[0], &out[0], numel);
}

/* X, Y: the forward's input and output; dY: Y's shape; dX += dY f'(X) (table above
 * sqrt_backward_f32). */
static void unary_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                           const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    const unary *p = n->priv;
    int64_t numel = onyx_numel(&out[0]);
    if (numel == 0 || dout[0].data == NULL || din[0].data == NULL || in[0].dtype != ONYX_DTYPE_F32)
        return;
    unary_job j = {.grad = unary_defs[p->op].grad_f32,
                   .x = in[0].data,
                   .y = out[0].data,
                   .dy = dout[0].data,
                   .out = din[0].data};
    onyx_parallel_for(ctx->pool, numel, 1, unary_range_f32, &j);
}

const onyx_op_impl onyx_impl_unary = {
    .init = unary_init,
    .infer = unary_infer,
    .forward = unary_forward,
    .backward = unary_backward,
    .fini = NULL,
    .flags = 0,
    .grad_inputs = 0x1u,
};
