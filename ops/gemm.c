/*
 * gemm.c — Gemm and MatMul, and the one internal GEMM (onyx_gemm_f32) that they and their
 * backward passes share.
 *
 * float32 runs through onyx_gemm_f32; float64, float16 and bfloat16 go through one generic loop
 * that converts each element to double (gemm_generic), so no kernel is copied per dtype.
 * Backward (float32 only, as training is) is onyx_gemm_f32 calls too: one per gradient for
 * Gemm, one per gradient and batch item for MatMul.
 */
#include "activation.h"
#include "gemm.h"
#include "gemm_kernel.h"
#include "ops.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ---- the internal GEMM -------------------------------------------------------------------- */

void onyx_gemm_f32_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            if (alpha != 0.0f) {
                for (int64_t k = 0; k < K; k++) {
                    double a = trans_a ? A[k * lda + i] : A[i * lda + k];
                    double b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                    acc += a * b;
                }
            }
            double v = (double)alpha * acc;
            if (beta != 0.0f)
                v += (double)beta * C[i * ldc + j];
            C[i * ldc + j] = (float)v;
        }
    }
}

void onyx_gemm_f32(onyx_pool *pool, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                   float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                   float beta, float *C, int64_t ldc)
{
    onyx_gemm_f32_fast(pool, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/*
 * Any floating dtype other than float32, element by element in double:
 *   y[i,j] = alpha * sum_k op(A)[i,k] * op(B)[k,j] + beta * c[i*cs0 + j*cs1]
 * a/b/y are buffers of dtype dt with element offsets a_off/b_off/y_off; c may be NULL (then the
 * beta term is absent) and is indexed with broadcast strides cs0, cs1 (0 where broadcast).
 */
static void gemm_generic(onyx_dtype dt, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                         double alpha, const void *a, int64_t a_off, int64_t lda, const void *b,
                         int64_t b_off, int64_t ldb, double beta, const void *c, int64_t cs0,
                         int64_t cs1, void *y, int64_t y_off)
{
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++) {
                double av = onyx_load_f64(dt, a, a_off + (trans_a ? k * lda + i : i * lda + k));
                double bv = onyx_load_f64(dt, b, b_off + (trans_b ? j * ldb + k : k * ldb + j));
                acc += av * bv;
            }
            double v = alpha * acc;
            if (c != NULL)
                v += beta * onyx_load_f64(dt, c, i * cs0 + j * cs1);
            onyx_store_f64(dt, y, y_off + i * N + j, v);
        }
    }
}

/* Shared by Gemm and MatMul: A of a type onyx computes matrix products in, B of A's type. */
static onyx_status check_ab_dtypes(const onyx_node *n, const onyx_tensor *in, onyx_error *err)
{
    onyx_status st = onyx_node_check_float(n, "A", in[0].dtype, err);
    if (st == ONYX_OK)
        st = onyx_node_check_same_dtype(n, "B", in[1].dtype, "A", in[0].dtype, err);
    return st;
}

/* ---- Gemm --------------------------------------------------------------------------------- */

typedef struct gemm_priv {
    float alpha;
    float beta;
    bool trans_a;
    bool trans_b;
} gemm_priv;

static onyx_status gemm_init(onyx_node *n, onyx_error *err)
{
    /* C became optional in opset 11. */
    onyx_status st = onyx_node_check_arity(n, n->opset >= 11 ? 2 : 3, 3, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    float alpha;
    float beta;
    int64_t trans_a;
    int64_t trans_b;
    if ((st = onyx_attr_float(n, "alpha", 1.0f, &alpha, err)) != ONYX_OK ||
        (st = onyx_attr_float(n, "beta", 1.0f, &beta, err)) != ONYX_OK ||
        (st = onyx_attr_int(n, "transA", 0, &trans_a, err)) != ONYX_OK ||
        (st = onyx_attr_int(n, "transB", 0, &trans_b, err)) != ONYX_OK)
        return st;
    gemm_priv p = {alpha, beta, trans_a != 0, trans_b != 0};
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

/* A: (M, K) or (K, M) with transA; B: (K, N) or (N, K) with transB; C: broadcastable to (M, N);
 * Y: (M, N). */
static onyx_status gemm_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                              onyx_error *err)
{
    const gemm_priv *p = n->priv;
    const onyx_tensor *a = &in[0];
    const onyx_tensor *b = &in[1];
    char sa[96];
    char sb[96];
    onyx_status st = check_ab_dtypes(n, in, err);
    if (st != ONYX_OK)
        return st;
    if (a->rank >= 0 && a->rank != 2)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE, "input A has shape %s, expected rank 2",
                             onyx_shape_str(a, sa, sizeof sa));
    if (b->rank >= 0 && b->rank != 2)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE, "input B has shape %s, expected rank 2",
                             onyx_shape_str(b, sb, sizeof sb));
    int64_t M = a->rank == 2 ? a->dims[p->trans_a ? 1 : 0] : -1;
    int64_t K = a->rank == 2 ? a->dims[p->trans_a ? 0 : 1] : -1;
    int64_t Kb = b->rank == 2 ? b->dims[p->trans_b ? 1 : 0] : -1;
    int64_t N = b->rank == 2 ? b->dims[p->trans_b ? 0 : 1] : -1;
    if (K >= 0 && Kb >= 0 && K != Kb) {
        onyx_shape_str(a, sa, sizeof sa);
        onyx_shape_str(b, sb, sizeof sb);
        if (p->trans_b)
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input B has shape %s, expected [N,%lld] (transB=1) to match "
                                 "input A %s%s",
                                 sb, (long long)K, sa, p->trans_a ? " (transA=1)" : "");
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input B has shape %s, expected [%lld,N] to match input A %s%s", sb,
                             (long long)K, sa, p->trans_a ? " (transA=1)" : "");
    }
    if (onyx_node_has_in(n, 2)) {
        const onyx_tensor *c = &in[2];
        if ((st = onyx_node_check_same_dtype(n, "C", c->dtype, "A", a->dtype, err)) != ONYX_OK)
            return st;
        /* Unidirectional broadcasting: C's dims, aligned right, are 1 or equal to (M, N). */
        onyx_tensor y = {.rank = 2, .dims = {M, N}};
        if (!onyx_broadcast_fits(c, &y)) {
            char sy[96];
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input C has shape %s, expected a shape broadcastable to %s "
                                 "(scalar, [N], [1,N], [M,1] or [M,N])",
                                 onyx_shape_str(c, sa, sizeof sa),
                                 onyx_shape_str(&y, sy, sizeof sy));
        }
    }
    out[0].dtype = a->dtype;
    out[0].rank = 2;
    out[0].dims[0] = M;
    out[0].dims[1] = N;
    return ONYX_OK;
}

/*
 * dy: (M, N); dc: C's elements, element (i, j) of C broadcast to (M, N) at i * s0 + j * s1
 * (s0, s1 are 0 along broadcast dims). dc[i*s0 + j*s1] += beta * dy[i, j]: the sum over the
 * broadcast dims. The same-shape and row-vector ([N], [1,N]) forms get direct loops.
 */
static void gemm_reduce_c_f32(const float *restrict dy, int64_t M, int64_t N, float beta,
                              int64_t s0, int64_t s1, float *restrict dc)
{
    if (s0 == N && s1 == 1) { /* (M, N) */
        for (int64_t k = 0; k < M * N; k++)
            dc[k] += beta * dy[k];
        return;
    }
    if (s0 == 0 && s1 == 1) { /* (N): column sums */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                dc[j] += beta * dy[i * N + j];
        return;
    }
    if (s0 == 0 && s1 == 0) { /* scalar: the sum of everything */
        double s = 0.0;
        for (int64_t k = 0; k < M * N; k++)
            s += dy[k];
        dc[0] += beta * (float)s;
        return;
    }
    for (int64_t i = 0; i < M; i++) { /* (M, 1): row sums */
        double s = 0.0;
        for (int64_t j = 0; j < N; j++)
            s += dy[i * N + j];
        dc[i * s0] += beta * (float)s;
    }
}

/*
 * A fused activation (onyx_kctx.fuse and its parameters) goes where it costs least, with the
 * same bits either way (each element gets the activation's formula once, after the bias):
 *  - cheap ones (onyx_act_cheap) into the GEMM's epilogue, tile by tile (tile_epilogue): their
 *    cost hides in the pass over each tile while it is in L1;
 *  - the ones that call libm (Sigmoid, Tanh, Gelu) in one pass over the finished output
 *    (finish_act), split over the pool: between two micro-kernels they evict the kernel's panel
 *    of B from L1, measured 3-6% slower than this pass on an MLP 784-512-256 at batch 64-256.
 * The bias always goes into the GEMM's epilogue.
 */
static onyx_gemm_epilogue tile_epilogue(const onyx_kctx *ctx)
{
    onyx_gemm_epilogue e = {ctx->fuse, ctx->fuse_alpha, ctx->fuse_beta};
    if (!onyx_act_cheap(ctx->fuse))
        e.kind = ONYX_FUSE_NONE;
    return e;
}

/* The activation over rows [lo, hi) of an output of n columns, for onyx_parallel_for. */
typedef struct act_pass {
    onyx_act act;
    float *y;
    int64_t n;
} act_pass;

static void act_pass_range(void *ctx, int64_t lo, int64_t hi)
{
    const act_pass *j = ctx;
    onyx_epilogue_row_f32(&j->act, NULL, j->y + lo * j->n, (hi - lo) * j->n);
}

/* y (rows, n), the finished GEMM output: applies ctx's activation when tile_epilogue left it. */
static void finish_act(const onyx_kctx *ctx, float *y, int64_t rows, int64_t n)
{
    if (onyx_act_cheap(ctx->fuse))
        return;
    act_pass j = {{ctx->fuse, ctx->fuse_alpha, ctx->fuse_beta}, y, n};
    onyx_parallel_for(ctx->pool, rows, n, act_pass_range, &j);
}

/* Whether c has shape [N] or [1,N]: one value per column of Y. */
static bool is_row_vector(const onyx_tensor *c, int64_t N)
{
    return (c->rank == 1 && c->dims[0] == N) ||
           (c->rank == 2 && c->dims[0] == 1 && c->dims[1] == N);
}

/* Y = alpha * op(A) * op(B) + beta * C (spec: Gemm-13); with ctx->fuse, Y = act(that) (see
 * tile_epilogue). A C of shape [N] or [1,N] with beta 1 (a bias) is added in the GEMM's tile
 * pass, after the product (float32: (alpha * A B) + c[j]); any other C is copied into Y first
 * and scaled by beta inside the GEMM. With ctx->packed, op(B) comes pre-packed (gemm_pack). */
static void gemm_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                         onyx_tensor *out)
{
    const gemm_priv *p = n->priv;
    const onyx_tensor *a = &in[0];
    const onyx_tensor *b = &in[1];
    onyx_tensor *y = &out[0];
    int64_t M = y->dims[0];
    int64_t N = y->dims[1];
    int64_t K = a->dims[p->trans_a ? 0 : 1];
    /* With beta == 0 C contributes nothing, not even its NaNs (as BLAS and ORT treat it). */
    const onyx_tensor *c = onyx_node_has_in(n, 2) && p->beta != 0.0f ? &in[2] : NULL;
    if (a->dtype == ONYX_DTYPE_F32) {
        float beta = 0.0f;
        const float *bias = NULL;
        if (c != NULL && p->beta == 1.0f && is_row_vector(c, N)) {
            /* A bias row: the GEMM adds it to each finished tile with the epilogue, no copy. */
            bias = c->data;
        } else if (c != NULL) {
            /* Any other C goes into Y first and is added inside the GEMM (beta). */
            onyx_broadcast_copy(c, y);
            beta = p->beta;
        }
        onyx_gemm_f32_epi(ctx->pool, bias, tile_epilogue(ctx), p->trans_a, p->trans_b, M, N, K,
                          p->alpha, a->data, a->dims[1], b->data, b->dims[1], ctx->packed, beta,
                          y->data, N);
        finish_act(ctx, y->data, M, N);
        return;
    }
    int64_t cst[ONYX_MAX_RANK] = {0, 0};
    if (c != NULL)
        onyx_broadcast_strides(c, y, cst);
    gemm_generic(a->dtype, p->trans_a, p->trans_b, M, N, K, p->alpha, a->data, 0, a->dims[1],
                 b->data, 0, b->dims[1], p->beta, c != NULL ? c->data : NULL, cst[0], cst[1],
                 y->data, 0);
}

/*
 * Differentiates Y = alpha * op(A) op(B) + beta * C (gemm_forward). A, B, C, Y as there; every
 * gradient has its input's shape. With dop(A) = alpha dY op(B)^T and dop(B) = alpha op(A)^T dY:
 *   dA = dop(A)          = alpha dY op(B)^T   (M, K)   when !transA
 *   dA = dop(A)^T        = alpha op(B) dY^T   (K, M)   when transA
 *   dB = dop(B)          = alpha op(A)^T dY   (K, N)   when !transB
 *   dB = dop(B)^T        = alpha dY^T op(A)   (N, K)   when transB
 * Each is one onyx_gemm_f32 call on the stored matrices (the transposes flip instead of copying)
 * with beta = 1, which accumulates into din. dC = beta * dY summed over the dims along which C
 * was broadcast to (M, N): scalar, [N], [1,N], [M,1] or [M,N]; nothing when beta == 0, since
 * forward then ignores C.
 */
/* db = alpha * (op(A)^T dY, laid out as B) + beta * db: the weight gradient of a Gemm node, or
 * with alpha = -lr and db = B a plain SGD step on B (onyx_gemm_sgd_step). */
static void gemm_grad_b(const gemm_priv *p, onyx_pool *pool, const onyx_tensor *in,
                        const onyx_tensor *out, const float *dy, float alpha, float beta, float *db)
{
    int64_t M = out[0].dims[0];
    int64_t N = out[0].dims[1];
    int64_t K = in[0].dims[p->trans_a ? 0 : 1];
    int64_t lda = in[0].dims[1];
    int64_t ldb = in[1].dims[1];
    const float *a = in[0].data;
    if (!p->trans_b) /* (K, N) = op(A)^T (K, M) . dY (M, N) */
        onyx_gemm_f32(pool, !p->trans_a, false, K, N, M, alpha, a, lda, dy, N, beta, db, ldb);
    else /* (N, K) = dY^T (N, M) . op(A) (M, K) */
        onyx_gemm_f32(pool, true, p->trans_a, N, K, M, alpha, dy, N, a, lda, beta, db, ldb);
}

bool onyx_gemm_sgd_fusable(const onyx_node *n)
{
    const gemm_priv *p = n->priv;
    return n->impl == &onyx_impl_gemm && p != NULL && p->alpha == 1.0f;
}

/* The sum of |x| over n floats, in 16 float lanes so that it vectorises; infinite or NaN when an
 * element is (or the sum overflows). Rounding can only shrink it by a relative n * 2^-24. */
static double sum_abs(const float *restrict x, int64_t n)
{
    float lane[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++)
            lane[k] += fabsf(x[i + k]);
    for (; i < n; i++)
        lane[0] += fabsf(x[i]);
    double s = 0.0;
    for (int k = 0; k < 16; k++)
        s += lane[k];
    return s;
}

bool onyx_gemm_sgd_ready(const onyx_node *n, const onyx_tensor *in, const onyx_tensor *out,
                         const float *dy)
{
    int64_t M = out[0].dims[0];
    if (!onyx_gemm_sgd_fusable(n) || in[0].dtype != ONYX_DTYPE_F32 || M > onyx_gemm_depth())
        return false;
    /* every |dB| element (and partial sum) <= sum |A| * sum |dY|: finite with room to spare
     * (the factor 4 also covers the rounding of the float sums) */
    double bound = sum_abs(in[0].data, onyx_numel(&in[0])) * sum_abs(dy, onyx_numel(&out[0]));
    return bound < (double)FLT_MAX / 4.0;
}

void onyx_gemm_sgd_step(const onyx_node *n, onyx_pool *pool, const onyx_tensor *in,
                        const onyx_tensor *out, const float *dy, float lr, float *b)
{
    gemm_grad_b(n->priv, pool, in, out, dy, -lr, 1.0f, b);
}

void onyx_gemm_weight_grad(const onyx_node *n, onyx_pool *pool, const onyx_tensor *in,
                           const onyx_tensor *out, const float *dy, float *db)
{
    const gemm_priv *p = n->priv;
    gemm_grad_b(p, pool, in, out, dy, p->alpha, 0.0f, db);
}

static void gemm_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                          const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    const gemm_priv *p = n->priv;
    const float *b = in[1].data;
    const float *dy = dout[0].data;
    if (dy == NULL)
        return;
    int64_t M = out[0].dims[0];
    int64_t N = out[0].dims[1];
    int64_t K = in[0].dims[p->trans_a ? 0 : 1];
    int64_t lda = in[0].dims[1];
    int64_t ldb = in[1].dims[1];
    bool ta = p->trans_a;
    bool tb = p->trans_b;
    float alpha = p->alpha;
    /* ONYX_OPF_GRAD_FRESH: a fresh gradient is written (beta 0), else accumulated (beta 1) */
    float beta_a = ctx->grad_fresh & 1u ? 0.0f : 1.0f;
    float beta_b = ctx->grad_fresh & 2u ? 0.0f : 1.0f;

    float *da = din[0].data;
    if (da != NULL) {
        if (!ta) /* (M, K) = dY (M, N) . op(B)^T (N, K) */
            onyx_gemm_f32(ctx->pool, false, !tb, M, K, N, alpha, dy, N, b, ldb, beta_a, da, lda);
        else /* (K, M) = op(B) (K, N) . dY^T (N, M) */
            onyx_gemm_f32(ctx->pool, tb, true, K, M, N, alpha, b, ldb, dy, N, beta_a, da, lda);
    }
    if (din[1].data != NULL)
        gemm_grad_b(p, ctx->pool, in, out, dy, alpha, beta_b, din[1].data);
    float *dc = onyx_node_has_in(n, 2) ? din[2].data : NULL;
    if (dc != NULL && (ctx->grad_fresh & 4u))
        memset(dc, 0, onyx_nbytes(&din[2]));
    if (dc != NULL && p->beta != 0.0f) {
        int64_t cs[ONYX_MAX_RANK] = {0, 0};
        onyx_broadcast_strides(&in[2], &out[0], cs);
        gemm_reduce_c_f32(dy, M, N, p->beta, cs[0], cs[1], dc);
    }
}

/*
 * Pre-packing a constant B (onyx_op_impl.pack_size/pack): float32 B of rank 2, (K, N) or (N, K)
 * with transB, packed as op(B) for this CPU's kernel (onyx_gemm_pack_b). Results are
 * bit-identical to the unpacked run: onyx_gemm_f32_epi reads B itself for M <= 8 (its small-M
 * path, faster there) and sums in the same order for larger M. Costs one extra copy of B.
 */
static size_t gemm_pack_size(const onyx_node *n, int i, const onyx_tensor *w)
{
    const gemm_priv *p = n->priv;
    if (i != 1 || w->dtype != ONYX_DTYPE_F32 || w->rank != 2)
        return 0;
    int64_t N = w->dims[p->trans_b ? 0 : 1];
    int64_t K = w->dims[p->trans_b ? 1 : 0];
    return onyx_gemm_packed_size(ONYX_GEMM_ISA_AUTO, N, K);
}

static void gemm_pack(const onyx_node *n, int i, const onyx_tensor *w, void *dst)
{
    (void)i;
    const gemm_priv *p = n->priv;
    int64_t N = w->dims[p->trans_b ? 0 : 1];
    int64_t K = w->dims[p->trans_b ? 1 : 0];
    onyx_gemm_pack_b(ONYX_GEMM_ISA_AUTO, p->trans_b, N, K, w->data, w->dims[1], dst);
}

const onyx_op_impl onyx_impl_gemm = {
    .init = gemm_init,
    .infer = gemm_infer,
    .forward = gemm_forward,
    .backward = gemm_backward,
    .flags = ONYX_OPF_FUSE_ACT | ONYX_OPF_GRAD_FRESH,
    .grad_inputs = 0x7u, /* A, B, C */
    .pack_size = gemm_pack_size,
    .pack = gemm_pack,
};

/* ---- MatMul ------------------------------------------------------------------------------- */

static onyx_status matmul_init(onyx_node *n, onyx_error *err)
{
    return onyx_node_check_arity(n, 2, 2, 1, 1, err);
}

/*
 * numpy.matmul: A (..., M, K) x B (..., K, N) -> Y (..., M, N), batch dims broadcast.
 * A 1-D A is [K] -> [1, K] and a 1-D B is [K] -> [K, 1]; the added dim is removed from Y.
 */
static onyx_status matmul_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                                onyx_error *err)
{
    const onyx_tensor *a = &in[0];
    const onyx_tensor *b = &in[1];
    char sa[96];
    char sb[96];
    onyx_status st = check_ab_dtypes(n, in, err);
    if (st != ONYX_OK)
        return st;
    out[0].dtype = a->dtype;
    if (a->rank == 0 || b->rank == 0)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input %s is a scalar, expected rank >= 1 (A %s, B %s)",
                             a->rank == 0 ? "A" : "B", onyx_shape_str(a, sa, sizeof sa),
                             onyx_shape_str(b, sb, sizeof sb));
    if (a->rank < 0 || b->rank < 0) {
        out[0].rank = -1;
        return ONYX_OK;
    }
    int ra = a->rank;
    int rb = b->rank;
    int64_t K = a->dims[ra - 1];
    int64_t Kb = rb == 1 ? b->dims[0] : b->dims[rb - 2];
    if (K >= 0 && Kb >= 0 && K != Kb)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "inputs A %s and B %s do not match: A has %lld columns, B has %lld "
                             "rows, expected equal",
                             onyx_shape_str(a, sa, sizeof sa), onyx_shape_str(b, sb, sizeof sb),
                             (long long)K, (long long)Kb);
    int ba = ra > 2 ? ra - 2 : 0; /* batch ranks */
    int bb = rb > 2 ? rb - 2 : 0;
    int nb = ba > bb ? ba : bb;
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - ba);
        int ib = i - (nb - bb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1;
        int64_t db = ib >= 0 ? b->dims[ib] : 1;
        int64_t d;
        if (da == db || db == 1)
            d = da;
        else if (da == 1)
            d = db;
        else if (da < 0 || db < 0)
            d = da < 0 ? db : da; /* unknown against a known dim > 1: must be that dim */
        else
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "batch dimensions of A %s and B %s cannot be broadcast (dimension "
                                 "%d: %lld vs %lld)",
                                 onyx_shape_str(a, sa, sizeof sa), onyx_shape_str(b, sb, sizeof sb),
                                 i, (long long)da, (long long)db);
        out[0].dims[i] = d;
    }
    int r = nb;
    if (ra >= 2)
        out[0].dims[r++] = a->dims[ra - 2];
    if (rb >= 2)
        out[0].dims[r++] = b->dims[rb - 1];
    out[0].rank = r;
    return ONYX_OK;
}

/*
 * How MatMul walks its batch: A (batch_a..., M, K), B (batch_b..., K, N), Y (batch..., M, N)
 * with 1-D operands promoted (A [K] -> [1, K], B [K] -> [K, 1]; Y's memory is the same with or
 * without the promoted dim). Y's batch items are visited in order by an odometer over dims[];
 * the matrices of A and B for item t start at element off_a/off_b, which step by sa/sb along
 * each batch dim (0 where that operand is broadcast).
 */
typedef struct matmul_plan {
    int64_t M;
    int64_t K;
    int64_t N;
    int nb;        /* batch rank of Y */
    bool b_batch;  /* B has batch dims; without them A's batch items are consecutive rows */
    int64_t rows;  /* !b_batch: M times A's batch items */
    int64_t total; /* b_batch: Y's batch items */
    int64_t dims[ONYX_MAX_RANK];
    int64_t sa[ONYX_MAX_RANK];
    int64_t sb[ONYX_MAX_RANK];
} matmul_plan;

static void matmul_plan_init(matmul_plan *p, const onyx_tensor *a, const onyx_tensor *b)
{
    int ra = a->rank;
    int rb = b->rank;
    p->M = ra >= 2 ? a->dims[ra - 2] : 1;
    p->K = a->dims[ra - 1];
    p->N = rb >= 2 ? b->dims[rb - 1] : 1;
    int ba = ra > 2 ? ra - 2 : 0;
    int bb = rb > 2 ? rb - 2 : 0;
    p->nb = ba > bb ? ba : bb;
    p->b_batch = bb > 0;
    p->rows = p->M;
    for (int i = 0; i < ba; i++)
        p->rows *= a->dims[i];
    int64_t s_a = p->M * p->K;
    int64_t s_b = p->K * p->N;
    p->total = 1;
    for (int i = p->nb - 1; i >= 0; i--) {
        int ia = i - (p->nb - ba);
        int ib = i - (p->nb - bb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1;
        int64_t db = ib >= 0 ? b->dims[ib] : 1;
        p->sa[i] = da == 1 ? 0 : s_a;
        p->sb[i] = db == 1 ? 0 : s_b;
        s_a *= da;
        s_b *= db;
        p->dims[i] = da == 1 ? db : da;
        p->total *= p->dims[i];
    }
}

/* Moves the odometer idx and the offsets to the next batch item. */
static void matmul_plan_next(const matmul_plan *p, int64_t idx[ONYX_MAX_RANK], int64_t *off_a,
                             int64_t *off_b)
{
    for (int i = p->nb - 1; i >= 0; i--) {
        idx[i]++;
        *off_a += p->sa[i];
        *off_b += p->sb[i];
        if (idx[i] < p->dims[i])
            return;
        *off_a -= p->sa[i] * idx[i];
        *off_b -= p->sb[i] * idx[i];
        idx[i] = 0;
    }
}

/* A: (batch_a..., M, K), B: (batch_b..., K, N), Y: (batch..., M, N); every batch item is one
 * GEMM, with A or B reused where its batch dim is broadcast. With ctx->packed, B is a constant
 * (K, N) pre-packed by matmul_pack. Fused (float32): Y = act(A B + bias), with ctx->fuse_bias
 * (N floats: a following Add's bias row, added to each row of every item as one float addition,
 * as the Add does, in the GEMM's epilogue) and ctx->fuse (a following activation, see
 * tile_epilogue). */
static void matmul_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                           onyx_tensor *out)
{
    (void)n;
    const onyx_tensor *a = &in[0];
    const onyx_tensor *b = &in[1];
    onyx_tensor *y = &out[0];
    matmul_plan p;
    matmul_plan_init(&p, a, b);
    int64_t M = p.M;
    int64_t K = p.K;
    int64_t N = p.N;
    bool f32 = a->dtype == ONYX_DTYPE_F32;
    onyx_gemm_epilogue epi = tile_epilogue(ctx);

    /* B without batch dims: A's batch items are consecutive rows, so one GEMM does them all. */
    if (!p.b_batch) {
        if (f32) {
            onyx_gemm_f32_epi(ctx->pool, ctx->fuse_bias, epi, false, false, p.rows, N, K, 1.0f,
                              a->data, K, b->data, N, ctx->packed, 0.0f, y->data, N);
            finish_act(ctx, y->data, p.rows, N);
        } else {
            gemm_generic(a->dtype, false, false, p.rows, N, K, 1.0, a->data, 0, K, b->data, 0, N,
                         0.0, NULL, 0, 0, y->data, 0);
        }
        return;
    }

    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off_a = 0;
    int64_t off_b = 0;
    for (int64_t t = 0; t < p.total; t++) {
        if (f32)
            onyx_gemm_f32_epi(ctx->pool, ctx->fuse_bias, epi, false, false, M, N, K, 1.0f,
                              (const float *)a->data + off_a, K, (const float *)b->data + off_b, N,
                              NULL, 0.0f, (float *)y->data + t * M * N, N);
        else
            gemm_generic(a->dtype, false, false, M, N, K, 1.0, a->data, off_a, K, b->data, off_b, N,
                         0.0, NULL, 0, 0, y->data, t * M * N);
        matmul_plan_next(&p, idx, &off_a, &off_b);
    }
    if (f32)
        finish_act(ctx, y->data, p.total * M, N);
}

/*
 * Differentiates Y_t = A_t B_t for every batch item t (shapes as in matmul_forward):
 *   dA_t += dY_t B_t^T   (M, K),      dB_t += A_t^T dY_t   (K, N).
 * Where A (or B) is broadcast along a batch dim, several items share one A_t (B_t): the GEMMs
 * accumulate into the same slice of dA (dB) with beta = 1, which is the sum over the broadcast
 * dims, in the fixed order of t. Without batch dims in B, the batch folds into the rows of a
 * single GEMM each. No scratch: every partial result goes straight into din.
 */
static void matmul_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                            const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)n;
    (void)ctx;
    (void)out;
    const float *a = in[0].data;
    const float *b = in[1].data;
    const float *dy = dout[0].data;
    float *da = din[0].data;
    float *db = din[1].data;
    if (dy == NULL)
        return;
    matmul_plan p;
    matmul_plan_init(&p, &in[0], &in[1]);
    int64_t M = p.M;
    int64_t K = p.K;
    int64_t N = p.N;

    if (!p.b_batch) {
        /* dA (rows, K) += dY (rows, N) B^T;  dB (K, N) += A^T (K, rows) dY (rows, N); a fresh
         * gradient (ONYX_OPF_GRAD_FRESH) is written instead: beta 0 */
        float beta_a = ctx->grad_fresh & 1u ? 0.0f : 1.0f;
        float beta_b = ctx->grad_fresh & 2u ? 0.0f : 1.0f;
        if (da != NULL)
            onyx_gemm_f32(ctx->pool, false, true, p.rows, K, N, 1.0f, dy, N, b, N, beta_a, da, K);
        if (db != NULL)
            onyx_gemm_f32(ctx->pool, true, false, K, N, p.rows, 1.0f, a, K, dy, N, beta_b, db, N);
        return;
    }
    /* Batched: B (or A) may be broadcast over the batch, so accumulate into zeros. */
    for (int j = 0; j < 2; j++)
        if (din[j].data != NULL && (ctx->grad_fresh >> j & 1u))
            memset(din[j].data, 0, onyx_nbytes(&din[j]));

    int64_t idx[ONYX_MAX_RANK] = {0};
    int64_t off_a = 0;
    int64_t off_b = 0;
    for (int64_t t = 0; t < p.total; t++) {
        const float *dyt = dy + t * M * N;
        if (da != NULL)
            onyx_gemm_f32(ctx->pool, false, true, M, K, N, 1.0f, dyt, N, b + off_b, N, 1.0f,
                          da + off_a, K);
        if (db != NULL)
            onyx_gemm_f32(ctx->pool, true, false, K, N, M, 1.0f, a + off_a, K, dyt, N, 1.0f,
                          db + off_b, N);
        matmul_plan_next(&p, idx, &off_a, &off_b);
    }
}

/* Pre-packing a constant float32 B of rank 2, (K, N): then B has no batch dims and forward
 * runs one GEMM over all of A's rows (bit-identical to unpacked, as for gemm_pack_size). */
static size_t matmul_pack_size(const onyx_node *n, int i, const onyx_tensor *w)
{
    (void)n;
    if (i != 1 || w->dtype != ONYX_DTYPE_F32 || w->rank != 2)
        return 0;
    return onyx_gemm_packed_size(ONYX_GEMM_ISA_AUTO, w->dims[1], w->dims[0]);
}

static void matmul_pack(const onyx_node *n, int i, const onyx_tensor *w, void *dst)
{
    (void)n;
    (void)i;
    onyx_gemm_pack_b(ONYX_GEMM_ISA_AUTO, false, w->dims[1], w->dims[0], w->data, w->dims[1], dst);
}

const onyx_op_impl onyx_impl_matmul = {
    .init = matmul_init,
    .infer = matmul_infer,
    .forward = matmul_forward,
    .backward = matmul_backward,
    .flags = ONYX_OPF_FUSE_ACT | ONYX_OPF_FUSE_BIAS | ONYX_OPF_GRAD_FRESH,
    .grad_inputs = 0x3u, /* A, B */
    .pack_size = matmul_pack_size,
    .pack = matmul_pack,
};
