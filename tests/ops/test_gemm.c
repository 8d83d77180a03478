/* test_gemm.c — onyx_gemm_f32 against its naive reference, and the Gemm and MatMul ops, forward
 * and backward; pre-packed weights and the fused Relu epilogue against the plain path, bit for
 * bit. */
#include "check.h"
#include "gemm.h"
#include "gemm_kernel.h"
#include "grad_check.h"
#include "op_harness.h"
#include "ops.h"
#include "pool.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t lcg_state = 88172645463325252u; /* th_frand's: this file's data in [-1, 1) */

static void fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = th_frand(&lcg_state);
}

/* One fast-vs-reference comparison; returns false (after printing why) on mismatch. */
static bool compare_one(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                        float beta, int64_t pad)
{
    /* Leading dimensions wider than the matrices, by `pad` elements. */
    int64_t a_rows = ta ? K : M;
    int64_t a_cols = ta ? M : K;
    int64_t b_rows = tb ? N : K;
    int64_t b_cols = tb ? K : N;
    int64_t lda = a_cols + pad;
    int64_t ldb = b_cols + pad;
    int64_t ldc = N + pad;
    size_t na = (size_t)(a_rows * lda);
    size_t nb = (size_t)(b_rows * ldb);
    size_t nc = (size_t)(M * ldc);
    float *A = malloc(sizeof(float) * (na + 1));
    float *B = malloc(sizeof(float) * (nb + 1));
    float *C0 = malloc(sizeof(float) * (nc + 1));
    float *C1 = malloc(sizeof(float) * (nc + 1));
    fill(A, na);
    fill(B, nb);
    fill(C0, nc);
    const float sentinel = 12345.0f;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = N; j < ldc; j++)
            C0[i * ldc + j] = sentinel; /* the gap between rows must stay untouched */
    if (beta == 0.0f)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C0[i * ldc + j] = NAN; /* write-only: must never be read */
    memcpy(C1, C0, sizeof(float) * nc);
    onyx_gemm_f32_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc);
    onyx_gemm_f32(NULL, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc);
    bool ok = true;
    for (int64_t i = 0; i < M && ok; i++) {
        for (int64_t j = 0; j < ldc && ok; j++) {
            float want = C0[i * ldc + j];
            float got = C1[i * ldc + j];
            /* float32 accumulation over K terms of magnitude <= 1 */
            double tol = 1e-6 * (double)(K + 1) + 1e-5 * fabs(want);
            if (j >= N) {
                ok = got == sentinel;
            } else {
                ok = isfinite(got) && fabs((double)got - want) <= tol;
            }
            if (!ok)
                fprintf(stderr,
                        "gemm mismatch ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%lld "
                        "at [%lld,%lld]: got %.9g want %.9g\n",
                        ta, tb, (long long)M, (long long)N, (long long)K, alpha, beta,
                        (long long)pad, (long long)i, (long long)j, got, want);
        }
    }
    free(A);
    free(B);
    free(C0);
    free(C1);
    return ok;
}

static void test_gemm_fast_vs_ref(void)
{
    static const int64_t sizes[] = {1, 2, 3, 7, 17, 33, 64, 65, 129};
    static const float alphas[] = {1.0f, 0.5f, -2.0f, 1.0f};
    static const float betas[] = {0.0f, 1.0f, 0.25f, -1.5f};
    const int ns = (int)(sizeof(sizes) / sizeof(sizes[0]));
    int failures = 0;
    int count = 0;
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1;
        bool tb = (t >> 1) & 1;
        for (int im = 0; im < ns; im++)
            for (int in = 0; in < ns; in++)
                for (int ik = 0; ik < ns; ik++) {
                    /* Cycle through alpha/beta/padding so every shape sees several variants
                     * across the four transpose forms without a full cross product. */
                    int v = (im + 2 * in + 3 * ik + t) % 4;
                    int64_t pad = (im + in + ik) % 3 == 0 ? 0 : (im + ik) % 5 + 1;
                    if (!compare_one(ta, tb, sizes[im], sizes[in], sizes[ik], alphas[v], betas[v],
                                     pad))
                        failures++;
                    count++;
                }
    }
    printf("gemm fast vs ref: %d shapes, %d mismatched\n", count, failures);
    CHECK(failures == 0);

    /* Larger than every block size in every dimension, all transposes, beta 0 and 1. */
    for (int t = 0; t < 4; t++) {
        CHECK(compare_one(t & 1, (t >> 1) & 1, 200, 150, 300, 1.0f, 0.0f, 3));
        CHECK(compare_one(t & 1, (t >> 1) & 1, 131, 257, 260, 0.75f, 1.0f, 0));
    }
}

static void test_gemm_edges(void)
{
    /* K == 0: C = beta * C; beta == 0 writes zeros over NaN. */
    float C[6] = {NAN, NAN, NAN, 1, 2, 3};
    onyx_gemm_f32(NULL, false, false, 2, 3, 0, 1.0f, NULL, 1, NULL, 3, 0.0f, C, 3);
    for (int i = 0; i < 6; i++)
        CHECK(C[i] == 0.0f);
    float D[4] = {1, 2, 3, 4};
    onyx_gemm_f32(NULL, false, false, 2, 2, 0, 1.0f, NULL, 1, NULL, 2, 2.0f, D, 2);
    CHECK(D[0] == 2.0f && D[3] == 8.0f);
    /* M == 0 / N == 0 touch nothing. */
    float E[1] = {7};
    onyx_gemm_f32(NULL, false, false, 0, 1, 1, 1.0f, E, 1, E, 1, 0.0f, E, 1);
    onyx_gemm_f32(NULL, false, false, 1, 0, 1, 1.0f, E, 1, E, 1, 0.0f, E, 1);
    CHECK(E[0] == 7.0f);
    /* Hand-computed 2x2: [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50]. */
    float A[4] = {1, 2, 3, 4};
    float B[4] = {5, 6, 7, 8};
    float Y[4];
    onyx_gemm_f32(NULL, false, false, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, Y, 2);
    CHECK(Y[0] == 19 && Y[1] == 22 && Y[2] == 43 && Y[3] == 50);
    /* A^T * B^T = (B A)^T: B A = [23 34; 31 46] -> [23 31; 34 46]. */
    onyx_gemm_f32(NULL, true, true, 2, 2, 2, 1.0f, A, 2, B, 2, 0.0f, Y, 2);
    CHECK(Y[0] == 23 && Y[1] == 31 && Y[2] == 34 && Y[3] == 46);
}

/* ---- the Gemm op -------------------------------------------------------------------------- */

static const float GA[6] = {1, 2, 3, 4, 5, 6};          /* [2,3] */
static const float GB[6] = {1, 0, -1, 2, 0.5f, -0.5f};  /* [3,2] */
/* A*B = [1-2+1.5, 0+4-1.5; 4-5+3, 0+10-3] = [0.5 2.5; 2 7] */

static void test_gemm_op_basic(void)
{
    onyx_error err = {0};
    onyx_tensor out[1];
    /* No C (opset 13), default attributes. */
    th_node *n = th_node_new("Gemm", 13, 2, 1);
    onyx_tensor in[3] = {th_f32(2, (int64_t[]){2, 3}, GA), th_f32(2, (int64_t[]){3, 2}, GB)};
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].rank == 2 && out[0].dims[0] == 2 && out[0].dims[1] == 2);
    const float *y = out[0].data;
    CHECK_NEAR(y[0], 0.5);
    CHECK_NEAR(y[1], 2.5);
    CHECK_NEAR(y[2], 2.0);
    CHECK_NEAR(y[3], 7.0);
    th_node_free(n);

    /* transA, transB, alpha, beta and every C broadcast form. */
    const float At[6] = {1, 4, 2, 5, 3, 6};          /* A^T: [3,2] */
    const float Bt[6] = {1, -1, 0.5f, 0, 2, -0.5f};  /* B^T: [2,3] */
    const float cs[1] = {10};
    const float cn[2] = {10, 20};
    const float cm[2] = {100, 200};
    const float cmn[4] = {1, 2, 3, 4};
    struct {
        int rank;
        int64_t dims[2];
        const float *data;
        float c[4]; /* C broadcast to [2,2] */
    } cases[] = {
        {0, {0, 0}, cs, {10, 10, 10, 10}},
        {1, {1, 0}, cs, {10, 10, 10, 10}},
        {1, {2, 0}, cn, {10, 20, 10, 20}},
        {2, {1, 2}, cn, {10, 20, 10, 20}},
        {2, {2, 1}, cm, {100, 100, 200, 200}},
        {2, {2, 2}, cmn, {1, 2, 3, 4}},
        {2, {1, 1}, cs, {10, 10, 10, 10}},
    };
    const float ab[4] = {0.5f, 2.5f, 2.0f, 7.0f};
    for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1;
            bool tb = t >> 1;
            n = th_node_new("Gemm", 11, 3, 1);
            th_attr_float(n, "alpha", 0.5f);
            th_attr_float(n, "beta", -2.0f);
            th_attr_int(n, "transA", ta);
            th_attr_int(n, "transB", tb);
            onyx_tensor gin[3] = {
                ta ? th_f32(2, (int64_t[]){3, 2}, At) : th_f32(2, (int64_t[]){2, 3}, GA),
                tb ? th_f32(2, (int64_t[]){2, 3}, Bt) : th_f32(2, (int64_t[]){3, 2}, GB),
                th_f32(cases[ci].rank, cases[ci].dims, cases[ci].data)};
            CHECK_OK(th_run(n, ONYX_MODE_INFER, gin, out, &err), err.msg);
            y = out[0].data;
            for (int i = 0; i < 4; i++)
                CHECK_NEAR(y[i], 0.5 * ab[i] - 2.0 * cases[ci].c[i]);
            th_node_free(n);
        }
    }

    /* beta == 0: C is ignored even when it holds NaN. */
    n = th_node_new("Gemm", 13, 3, 1);
    th_attr_float(n, "beta", 0.0f);
    const float cnan[4] = {NAN, NAN, NAN, NAN};
    onyx_tensor zin[3] = {th_f32(2, (int64_t[]){2, 3}, GA), th_f32(2, (int64_t[]){3, 2}, GB),
                          th_f32(2, (int64_t[]){2, 2}, cnan)};
    CHECK_OK(th_run(n, ONYX_MODE_INFER, zin, out, &err), err.msg);
    y = out[0].data;
    for (int i = 0; i < 4; i++)
        CHECK_NEAR(y[i], ab[i]);
    th_node_free(n);

    /* Omitted C given as an empty optional input. */
    n = th_node_new("Gemm", 13, 3, 1);
    onyx_tensor oin[3] = {th_f32(2, (int64_t[]){2, 3}, GA), th_f32(2, (int64_t[]){3, 2}, GB),
                          th_omitted()};
    CHECK_OK(th_run(n, ONYX_MODE_INFER, oin, out, &err), err.msg);
    y = out[0].data;
    CHECK_NEAR(y[3], 7.0);
    th_node_free(n);
}

static void test_gemm_op_f64(void)
{
    onyx_error err = {0};
    onyx_tensor out[1];
    const double a[6] = {1, 2, 3, 4, 5, 6};
    const double b[6] = {1, 0, -1, 2, 0.5, -0.5};
    const double c[2] = {1, 2};
    th_node *n = th_node_new("Gemm", 13, 3, 1);
    th_attr_float(n, "alpha", 2.0f);
    onyx_tensor in[3] = {th_tensor(ONYX_DTYPE_F64, 2, (int64_t[]){2, 3}, a),
                         th_tensor(ONYX_DTYPE_F64, 2, (int64_t[]){3, 2}, b),
                         th_tensor(ONYX_DTYPE_F64, 1, (int64_t[]){2}, c)};
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F64);
    const double *y = out[0].data;
    CHECK_NEAR(y[0], 2 * 0.5 + 1);
    CHECK_NEAR(y[1], 2 * 2.5 + 2);
    CHECK_NEAR(y[2], 2 * 2.0 + 1);
    CHECK_NEAR(y[3], 2 * 7.0 + 2);
    th_node_free(n);
}

static void test_gemm_op_errors(void)
{
    onyx_error err = {0};
    onyx_tensor out[1];
    float big[64 * 128] = {0};

    /* K mismatch names both shapes. */
    th_node *n = th_node_new("Gemm", 13, 2, 1);
    onyx_tensor in[3] = {th_f32(2, (int64_t[]){32, 128}, big), th_f32(2, (int64_t[]){64, 10}, big)};
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "node \"test_node\" (Gemm, opset 13)");
    CHECK_MSG(err.msg, "input B has shape [64,10], expected [128,N]");
    CHECK_MSG(err.msg, "[32,128]");
    th_node_free(n);

    n = th_node_new("Gemm", 13, 2, 1);
    th_attr_int(n, "transB", 1);
    in[1] = th_f32(2, (int64_t[]){10, 64}, big);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input B has shape [10,64], expected [N,128]");
    th_node_free(n);

    /* Rank. */
    n = th_node_new("Gemm", 13, 2, 1);
    in[0] = th_f32(3, (int64_t[]){2, 2, 2}, big);
    in[1] = th_f32(2, (int64_t[]){2, 2}, big);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input A has shape [2,2,2], expected rank 2");
    th_node_free(n);

    /* C not broadcastable. */
    n = th_node_new("Gemm", 13, 3, 1);
    in[0] = th_f32(2, (int64_t[]){2, 3}, big);
    in[1] = th_f32(2, (int64_t[]){3, 4}, big);
    in[2] = th_f32(1, (int64_t[]){3}, big);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input C has shape [3], expected a shape broadcastable to [2,4]");
    th_node_free(n);
    n = th_node_new("Gemm", 13, 3, 1);
    in[2] = th_f32(3, (int64_t[]){1, 2, 4}, big);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input C has shape [1,2,4]");
    th_node_free(n);

    /* dtypes. */
    const int32_t ints[6] = {0};
    n = th_node_new("Gemm", 13, 2, 1);
    in[0] = th_tensor(ONYX_DTYPE_I32, 2, (int64_t[]){2, 3}, ints);
    in[1] = th_tensor(ONYX_DTYPE_I32, 2, (int64_t[]){3, 2}, ints);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "input A has dtype int32, expected one of: float16, bfloat16, float32, "
                       "float64");
    th_node_free(n);
    n = th_node_new("Gemm", 13, 2, 1);
    in[0] = th_f32(2, (int64_t[]){2, 3}, big);
    in[1] = th_tensor(ONYX_DTYPE_F64, 2, (int64_t[]){3, 2}, big);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input B has dtype float64, expected float32 (the dtype of input A)");
    th_node_free(n);

    /* Attribute of the wrong type. */
    n = th_node_new("Gemm", 13, 2, 1);
    th_attr_raw(n, "alpha", ONYX_ATTR_INT);
    in[1] = th_f32(2, (int64_t[]){3, 2}, big);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "(Gemm, opset 13)");
    CHECK_MSG(err.msg, "attribute alpha has type int, expected float");
    th_node_free(n);
    n = th_node_new("Gemm", 13, 2, 1);
    th_attr_float(n, "transA", 1.0f);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "attribute transA has type float, expected int");
    th_node_free(n);

    /* Before opset 11, C is required. */
    n = th_node_new("Gemm", 9, 2, 1);
    CHECK(th_run(n, ONYX_MODE_INFER, in, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "(Gemm, opset 9): has 2 inputs, expected 3");
    th_node_free(n);
}

static void test_gemm_op_infer(void)
{
    onyx_error err = {0};
    onyx_tensor out[1];
    /* Unknown batch dim at load time. */
    th_node *n = th_node_new("Gemm", 13, 3, 1);
    th_attr_int(n, "transB", 1);
    onyx_tensor in[3] = {th_f32(2, (int64_t[]){-1, 128}, NULL),
                         th_f32(2, (int64_t[]){10, 128}, NULL), th_f32(1, (int64_t[]){10}, NULL)};
    CHECK_OK(th_infer(n, in, out, &err), err.msg);
    CHECK(out[0].dtype == ONYX_DTYPE_F32 && out[0].rank == 2);
    CHECK(out[0].dims[0] == -1 && out[0].dims[1] == 10);
    th_node_free(n);
    /* Unknown ranks: Y is still 2-D. */
    n = th_node_new("Gemm", 13, 2, 1);
    onyx_tensor u[2] = {th_f32(0, NULL, NULL), th_f32(2, (int64_t[]){-1, 7}, NULL)};
    u[0].rank = -1;
    CHECK_OK(th_infer(n, u, out, &err), err.msg);
    CHECK(out[0].rank == 2 && out[0].dims[0] == -1 && out[0].dims[1] == 7);
    th_node_free(n);
    /* ... but a certain mismatch is rejected even at load time. */
    n = th_node_new("Gemm", 13, 2, 1);
    onyx_tensor bad[2] = {th_f32(2, (int64_t[]){-1, 128}, NULL),
                          th_f32(2, (int64_t[]){64, -1}, NULL)};
    CHECK(th_infer(n, bad, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input B has shape [64,?], expected [128,N]");
    th_node_free(n);
}

/* ---- MatMul ------------------------------------------------------------------------------- */

/* Y = numpy.matmul(A, B) for A, B of the given shapes, each batch item in double. Both inputs
 * already padded to rank >= 2; batch broadcast done by explicit index arithmetic. */
static void matmul_naive(const int64_t *ad, int ar, const float *a, const int64_t *bd, int br,
                         const float *b, const int64_t *yd, int yr_batch, double *y)
{
    int64_t M = ad[ar - 2];
    int64_t K = ad[ar - 1];
    int64_t N = bd[br - 1];
    int64_t total = 1;
    for (int i = 0; i < yr_batch; i++)
        total *= yd[i];
    for (int64_t t = 0; t < total; t++) {
        /* unravel t over yd, map to a and b batch indices */
        int64_t rem = t;
        int64_t ia = 0;
        int64_t ib = 0;
        int64_t sa = 1;
        int64_t sb = 1;
        for (int i = yr_batch - 1; i >= 0; i--) {
            int64_t idx = rem % yd[i];
            rem /= yd[i];
            int ka = i - (yr_batch - (ar - 2));
            int kb = i - (yr_batch - (br - 2));
            if (ka >= 0) {
                ia += (ad[ka] == 1 ? 0 : idx) * sa;
                sa *= ad[ka];
            }
            if (kb >= 0) {
                ib += (bd[kb] == 1 ? 0 : idx) * sb;
                sb *= bd[kb];
            }
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += (double)a[ia * M * K + i * K + k] * b[ib * K * N + k * N + j];
                y[t * M * N + i * N + j] = s;
            }
    }
}

static void check_matmul(int ar, const int64_t *ad, int br, const int64_t *bd, int yr,
                         const int64_t *yd)
{
    onyx_error err = {0};
    onyx_tensor out[1];
    onyx_tensor ta = th_f32(ar, ad, NULL);
    onyx_tensor tb = th_f32(br, bd, NULL);
    size_t na = (size_t)onyx_numel(&ta);
    size_t nb = (size_t)onyx_numel(&tb);
    float *a = malloc(sizeof(float) * (na + 1));
    float *b = malloc(sizeof(float) * (nb + 1));
    fill(a, na);
    fill(b, nb);
    ta.data = a;
    tb.data = b;
    th_node *n = th_node_new("MatMul", 13, 2, 1);
    onyx_tensor in[2] = {ta, tb};
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    CHECK(out[0].rank == yr);
    bool same = out[0].rank == yr;
    for (int i = 0; same && i < yr; i++)
        same = out[0].dims[i] == yd[i];
    CHECK(same);
    if (same) {
        /* The reference works on 2-D-promoted shapes. */
        int64_t pad[ONYX_MAX_RANK];
        int64_t pbd[ONYX_MAX_RANK];
        int par = ar;
        int pbr = br;
        if (ar == 1) {
            pad[0] = 1;
            pad[1] = ad[0];
            par = 2;
        } else {
            memcpy(pad, ad, sizeof(int64_t) * (size_t)ar);
        }
        if (br == 1) {
            pbd[0] = bd[0];
            pbd[1] = 1;
            pbr = 2;
        } else {
            memcpy(pbd, bd, sizeof(int64_t) * (size_t)br);
        }
        int nbat = (par > pbr ? par : pbr) - 2;
        int64_t ybd[ONYX_MAX_RANK];
        memcpy(ybd, yd, sizeof(int64_t) * (size_t)nbat);
        size_t ny = (size_t)onyx_numel(&out[0]);
        double *want = malloc(sizeof(double) * (ny + 1));
        matmul_naive(pad, par, a, pbd, pbr, b, ybd, nbat, want);
        const float *y = out[0].data;
        int bad = 0;
        for (size_t i = 0; i < ny; i++)
            if (fabs(y[i] - want[i]) > 1e-4)
                bad++;
        CHECK(bad == 0);
        free(want);
    }
    th_node_free(n);
    free(a);
    free(b);
}

static void test_matmul(void)
{
    check_matmul(2, (int64_t[]){3, 4}, 2, (int64_t[]){4, 5}, 2, (int64_t[]){3, 5});
    check_matmul(1, (int64_t[]){4}, 2, (int64_t[]){4, 5}, 1, (int64_t[]){5});
    check_matmul(2, (int64_t[]){3, 4}, 1, (int64_t[]){4}, 1, (int64_t[]){3});
    check_matmul(1, (int64_t[]){4}, 1, (int64_t[]){4}, 0, (int64_t[]){0});
    check_matmul(3, (int64_t[]){2, 3, 4}, 3, (int64_t[]){2, 4, 3}, 3, (int64_t[]){2, 3, 3});
    check_matmul(4, (int64_t[]){1, 2, 3, 4}, 4, (int64_t[]){1, 2, 4, 3}, 4,
                 (int64_t[]){1, 2, 3, 3});
    /* B without batch: folded into one GEMM. */
    check_matmul(3, (int64_t[]){5, 7, 33}, 2, (int64_t[]){33, 17}, 3, (int64_t[]){5, 7, 17});
    /* A without batch, B batched. */
    check_matmul(2, (int64_t[]){7, 9}, 3, (int64_t[]){4, 9, 2}, 3, (int64_t[]){4, 7, 2});
    /* 1-D A against batched B; batched A against 1-D B. */
    check_matmul(1, (int64_t[]){9}, 3, (int64_t[]){4, 9, 2}, 2, (int64_t[]){4, 2});
    check_matmul(3, (int64_t[]){4, 7, 9}, 1, (int64_t[]){9}, 2, (int64_t[]){4, 7});
    /* Broadcast batch dims both ways. */
    check_matmul(4, (int64_t[]){2, 1, 3, 4}, 3, (int64_t[]){5, 4, 6}, 4,
                 (int64_t[]){2, 5, 3, 6});
    check_matmul(3, (int64_t[]){1, 3, 4}, 4, (int64_t[]){3, 2, 4, 2}, 4,
                 (int64_t[]){3, 2, 3, 2});
    /* Empty dims. */
    check_matmul(3, (int64_t[]){0, 3, 4}, 3, (int64_t[]){1, 4, 2}, 3, (int64_t[]){0, 3, 2});
    check_matmul(2, (int64_t[]){3, 0}, 2, (int64_t[]){0, 2}, 2, (int64_t[]){3, 2});
    /* Large enough for several GEMM blocks. */
    check_matmul(3, (int64_t[]){2, 70, 150}, 3, (int64_t[]){2, 150, 130}, 3,
                 (int64_t[]){2, 70, 130});

    /* K == 0 gives zeros. */
    {
        onyx_error err = {0};
        onyx_tensor out[1];
        th_node *n = th_node_new("MatMul", 13, 2, 1);
        onyx_tensor in[2] = {th_f32(2, (int64_t[]){2, 0}, NULL),
                             th_f32(2, (int64_t[]){0, 3}, NULL)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const float *y = out[0].data;
        for (int i = 0; i < 6; i++)
            CHECK(y[i] == 0.0f);
        th_node_free(n);
    }

    /* float64 through the generic path, with batch broadcasting. */
    {
        onyx_error err = {0};
        onyx_tensor out[1];
        const double a[4] = {1, 2, 3, 4};             /* [1,2,2]: [1 2; 3 4] */
        const double b[8] = {1, 0, 0, 1, 2, 0, 0, 2}; /* [2,2,2]: I, 2I */
        th_node *n = th_node_new("MatMul", 9, 2, 1);
        onyx_tensor in[2] = {th_tensor(ONYX_DTYPE_F64, 3, (int64_t[]){1, 2, 2}, a),
                             th_tensor(ONYX_DTYPE_F64, 3, (int64_t[]){2, 2, 2}, b)};
        CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
        const double *y = out[0].data;
        const double want[8] = {1, 2, 3, 4, 2, 4, 6, 8};
        CHECK(out[0].dtype == ONYX_DTYPE_F64 && out[0].rank == 3 && out[0].dims[0] == 2);
        for (int i = 0; i < 8; i++)
            CHECK_NEAR(y[i], want[i]);
        th_node_free(n);
    }
}

static void test_matmul_errors_infer(void)
{
    onyx_error err = {0};
    onyx_tensor out[1];
    th_node *n = th_node_new("MatMul", 13, 2, 1);
    onyx_tensor in[2] = {th_f32(3, (int64_t[]){2, 3, 4}, NULL), th_f32(2, (int64_t[]){5, 6}, NULL)};
    CHECK(th_infer(n, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "(MatMul, opset 13)");
    CHECK_MSG(err.msg, "inputs A [2,3,4] and B [5,6] do not match: A has 4 columns, B has 5 rows");
    th_node_free(n);

    n = th_node_new("MatMul", 13, 2, 1);
    in[0] = th_f32(3, (int64_t[]){2, 3, 4}, NULL);
    in[1] = th_f32(3, (int64_t[]){3, 4, 5}, NULL);
    CHECK(th_infer(n, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "batch dimensions of A [2,3,4] and B [3,4,5] cannot be broadcast");
    th_node_free(n);

    n = th_node_new("MatMul", 13, 2, 1);
    in[0] = th_f32(0, NULL, NULL);
    in[1] = th_f32(1, (int64_t[]){3}, NULL);
    CHECK(th_infer(n, in, out, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "input A is a scalar, expected rank >= 1");
    th_node_free(n);

    n = th_node_new("MatMul", 13, 2, 1);
    in[0] = th_tensor(ONYX_DTYPE_I64, 2, (int64_t[]){2, 3}, NULL);
    in[1] = th_tensor(ONYX_DTYPE_I64, 2, (int64_t[]){3, 2}, NULL);
    CHECK(th_infer(n, in, out, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "input A has dtype int64");
    th_node_free(n);

    n = th_node_new("MatMul", 13, 3, 1);
    onyx_tensor three[3] = {th_f32(2, (int64_t[]){2, 3}, NULL), th_f32(2, (int64_t[]){3, 2}, NULL),
                            th_f32(2, (int64_t[]){3, 2}, NULL)};
    CHECK(th_infer(n, three, out, &err) == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "has 3 inputs, expected 2");
    th_node_free(n);

    /* Load time: unknown batch and sequence dims. */
    n = th_node_new("MatMul", 13, 2, 1);
    in[0] = th_f32(3, (int64_t[]){-1, -1, 64}, NULL);
    in[1] = th_f32(2, (int64_t[]){64, 32}, NULL);
    CHECK_OK(th_infer(n, in, out, &err), err.msg);
    CHECK(out[0].rank == 3 && out[0].dims[0] == -1 && out[0].dims[1] == -1 &&
          out[0].dims[2] == 32);
    th_node_free(n);
    n = th_node_new("MatMul", 13, 2, 1);
    in[0] = th_f32(4, (int64_t[]){-1, 1, 3, 4}, NULL);
    in[1] = th_f32(4, (int64_t[]){1, 8, 4, 5}, NULL);
    CHECK_OK(th_infer(n, in, out, &err), err.msg);
    CHECK(out[0].rank == 4 && out[0].dims[0] == -1 && out[0].dims[1] == 8 &&
          out[0].dims[2] == 3 && out[0].dims[3] == 5);
    th_node_free(n);
    n = th_node_new("MatMul", 13, 2, 1);
    in[0] = th_f32(2, (int64_t[]){3, 4}, NULL);
    in[0].rank = -1;
    in[1] = th_f32(2, (int64_t[]){4, 5}, NULL);
    CHECK_OK(th_infer(n, in, out, &err), err.msg);
    CHECK(out[0].rank == -1 && out[0].dtype == ONYX_DTYPE_F32);
    th_node_free(n);
}

/* ---- backward ------------------------------------------------------------------------------ */

/* Runs t's forward (after th_run) and backward once, by hand: dout[0] = dy, gradients
 * accumulated into din[i].data (NULL: not wanted). Gemm and MatMul keep nothing for backward. */
static void run_backward(th_node *t, const onyx_tensor *in, const onyx_tensor *out, const float *dy,
                         onyx_tensor *din)
{
    onyx_node *n = th_onyx_node(t);
    onyx_tensor dout[1] = {out[0]};
    dout[0].data = (void *)(uintptr_t)dy;
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN};
    CHECK(n->impl->saved_size == NULL && n->impl->scratch_size == NULL);
    n->impl->backward(n, &ctx, in, out, dout, din);
}

/* Hand-computed: Y = A B with A [2,3], B [3,2] (GA, GB) and dY all ones:
 * dA[i][k] = sum_j B[k][j] = [1, 1, 0] for both rows, dB[k][j] = sum_i A[i][k] = [5, 7, 9].
 * With alpha 2 and beta -3, C [2] gets -3 * 2 rows = -6 per element. din starts at 1 to show
 * that gradients accumulate. */
static void test_gemm_backward_hand(void)
{
    onyx_error err = {0};
    onyx_tensor out[1];
    th_node *n = th_node_new("Gemm", 13, 3, 1);
    th_attr_float(n, "alpha", 2.0f);
    th_attr_float(n, "beta", -3.0f);
    const float c[2] = {0.5f, -0.5f};
    onyx_tensor in[3] = {th_f32(2, (int64_t[]){2, 3}, GA), th_f32(2, (int64_t[]){3, 2}, GB),
                         th_f32(1, (int64_t[]){2}, c)};
    CHECK_OK(th_run(n, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    const float dy[4] = {1, 1, 1, 1};
    float da[6];
    float db[6];
    float dc[2];
    for (int i = 0; i < 6; i++)
        da[i] = db[i] = 1.0f;
    dc[0] = dc[1] = 1.0f;
    onyx_tensor din[3] = {in[0], in[1], in[2]};
    din[0].data = da;
    din[1].data = db;
    din[2].data = dc;
    run_backward(n, in, out, dy, din);
    const float want_da[6] = {1 + 2, 1 + 2, 1 + 0, 1 + 2, 1 + 2, 1 + 0};
    const float want_db[6] = {1 + 10, 1 + 10, 1 + 14, 1 + 14, 1 + 18, 1 + 18};
    for (int i = 0; i < 6; i++) {
        CHECK_NEAR(da[i], want_da[i]);
        CHECK_NEAR(db[i], want_db[i]);
    }
    CHECK_NEAR(dc[0], 1 - 6);
    CHECK_NEAR(dc[1], 1 - 6);
    /* din NULL: that input is skipped (nothing else changes). */
    din[0].data = NULL;
    din[2].data = NULL;
    run_backward(n, in, out, dy, din);
    CHECK_NEAR(db[0], 1 + 10 + 10);
    CHECK_NEAR(dc[0], 1 - 6);
    th_node_free(n);
}

/* dC for every broadcast form of C, against a naive sum (th_naive_index), with dC starting at
 * 1 so that each form must accumulate. */
static void test_gemm_backward_c_forms(void)
{
    enum { M = 4, K = 2, N = 3 };
    float a[M * K];
    float b[K * N];
    float c[M * N];
    float dy[M * N];
    fill(a, M * K);
    fill(b, K * N);
    fill(c, M * N);
    fill(dy, M * N);
    struct {
        int rank;
        int64_t dims[2];
    } cs[] = {{0, {0, 0}}, {1, {1, 0}}, {1, {N, 0}}, {2, {1, N}},
              {2, {M, 1}}, {2, {M, N}}, {2, {1, 1}}};
    for (size_t ci = 0; ci < sizeof(cs) / sizeof(cs[0]); ci++) {
        onyx_error err = {0};
        onyx_tensor out[1];
        th_node *n = th_node_new("Gemm", 13, 3, 1);
        th_attr_float(n, "beta", -2.0f);
        onyx_tensor in[3] = {th_f32(2, (int64_t[]){M, K}, a), th_f32(2, (int64_t[]){K, N}, b),
                             th_f32(cs[ci].rank, cs[ci].dims, c)};
        CHECK_OK(th_run(n, ONYX_MODE_TRAIN, in, out, &err), err.msg);
        int64_t nc = onyx_numel(&in[2]);
        float dc[M * N];
        double want[M * N];
        for (int64_t i = 0; i < nc; i++) {
            dc[i] = 1.0f;
            want[i] = 1.0;
        }
        for (int64_t k = 0; k < M * N; k++)
            want[th_naive_index(&out[0], &in[2], k)] += -2.0 * dy[k];
        onyx_tensor din[3] = {in[0], in[1], in[2]};
        din[0].data = NULL;
        din[1].data = NULL;
        din[2].data = dc;
        run_backward(n, in, out, dy, din);
        CHECK(th_close_f32(dc, want, nc, 1e-6, 1e-5, "gemm dC"));
        th_node_free(n);
    }
}

/* Finite differences over every transpose form, alpha, beta and C broadcast form. */
static void test_gemm_grad_check(void)
{
    enum { M = 3, K = 4, N = 5 };
    float a[M * K];
    float b[K * N];
    float c[M * N];
    fill(a, M * K);
    fill(b, K * N);
    fill(c, M * N);
    struct {
        int rank; /* -1: no C */
        int64_t dims[2];
    } cs[] = {{-1, {0, 0}}, {0, {0, 0}}, {1, {1, 0}}, {1, {N, 0}},
              {2, {1, N}},  {2, {M, 1}}, {2, {M, N}}, {2, {1, 1}}};
    static const float alphas[] = {1.0f, 0.5f, -1.5f};
    static const float betas[] = {1.0f, 0.25f, 0.0f, -2.0f};
    int runs = 0;
    int bad = 0;
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1;
        bool tb = t >> 1;
        for (size_t ci = 0; ci < sizeof(cs) / sizeof(cs[0]); ci++) {
            for (int v = 0; v < 3; v++) {
                float alpha = alphas[(t + v) % 3];
                float beta = betas[(ci + (size_t)v) % 4];
                th_node *n = th_node_new("Gemm", 13, cs[ci].rank < 0 ? 2 : 3, 1);
                th_attr_float(n, "alpha", alpha);
                th_attr_float(n, "beta", beta);
                th_attr_int(n, "transA", ta);
                th_attr_int(n, "transB", tb);
                onyx_tensor in[3] = {
                    ta ? th_f32(2, (int64_t[]){K, M}, a) : th_f32(2, (int64_t[]){M, K}, a),
                    tb ? th_f32(2, (int64_t[]){N, K}, b) : th_f32(2, (int64_t[]){K, N}, b),
                    th_f32(cs[ci].rank, cs[ci].dims, c)};
                int r = th_grad_check_default(n, ONYX_MODE_TRAIN, in, 0x7u);
                if (r != 0)
                    fprintf(stderr, "gemm grad: ta=%d tb=%d C rank %d alpha %g beta %g: %d\n", ta,
                            tb, cs[ci].rank, alpha, beta, r);
                bad += r != 0;
                runs++;
                th_node_free(n);
            }
        }
    }
    printf("gemm grad checks: %d, failed %d\n", runs, bad);
    CHECK(bad == 0);
    /* Opset 6 (C required) and 11. */
    for (int64_t opset = 6; opset <= 11; opset += 5) {
        th_node *n = th_node_new("Gemm", opset, 3, 1);
        th_attr_int(n, "transB", 1);
        onyx_tensor in[3] = {th_f32(2, (int64_t[]){M, K}, a), th_f32(2, (int64_t[]){N, K}, b),
                             th_f32(2, (int64_t[]){M, N}, c)};
        CHECK(th_grad_check_default(n, ONYX_MODE_TRAIN, in, 0x7u) == 0);
        th_node_free(n);
    }
    /* Only some inputs wanted. */
    th_node *n = th_node_new("Gemm", 13, 3, 1);
    onyx_tensor in[3] = {th_f32(2, (int64_t[]){M, K}, a), th_f32(2, (int64_t[]){K, N}, b),
                         th_f32(1, (int64_t[]){N}, c)};
    CHECK(th_grad_check_default(n, ONYX_MODE_TRAIN, in, 0x2u) == 0);
    CHECK(th_grad_check_default(n, ONYX_MODE_TRAIN, in, 0x5u) == 0);
    th_node_free(n);
    CHECK(onyx_op_find("", "Gemm", 13)->impl->grad_inputs == 0x7u);
}

/*
 * The naive reference of MatMul's backward, in double with index arithmetic (shapes padded to
 * rank >= 2 as in matmul_naive): dA[ia] += dY_t B_t^T, dB[ib] += A_t^T dY_t for every batch
 * item t of Y, ia/ib the items of A and B that t reads.
 */
static void matmul_backward_naive(const int64_t *ad, int ar, const float *a, const int64_t *bd,
                                  int br, const float *b, const int64_t *yd, int yr_batch,
                                  const float *dy, double *da, double *db)
{
    int64_t M = ad[ar - 2];
    int64_t K = ad[ar - 1];
    int64_t N = bd[br - 1];
    int64_t total = 1;
    for (int i = 0; i < yr_batch; i++)
        total *= yd[i];
    for (int64_t t = 0; t < total; t++) {
        int64_t rem = t;
        int64_t ia = 0;
        int64_t ib = 0;
        int64_t sa = 1;
        int64_t sb = 1;
        for (int i = yr_batch - 1; i >= 0; i--) {
            int64_t idx = rem % yd[i];
            rem /= yd[i];
            int ka = i - (yr_batch - (ar - 2));
            int kb = i - (yr_batch - (br - 2));
            if (ka >= 0) {
                ia += (ad[ka] == 1 ? 0 : idx) * sa;
                sa *= ad[ka];
            }
            if (kb >= 0) {
                ib += (bd[kb] == 1 ? 0 : idx) * sb;
                sb *= bd[kb];
            }
        }
        const float *dyt = dy + t * M * N;
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++)
                for (int64_t j = 0; j < N; j++) {
                    da[ia * M * K + i * K + k] +=
                        (double)dyt[i * N + j] * b[ib * K * N + k * N + j];
                    db[ib * K * N + k * N + j] +=
                        (double)a[ia * M * K + i * K + k] * dyt[i * N + j];
                }
    }
}

/* MatMul backward of A (ar, ad) x B (br, bd): a finite-difference check when `fd`, and always a
 * comparison with matmul_backward_naive (din starting at 0.5 to include the accumulation). */
static void check_matmul_backward(int ar, const int64_t *ad, int br, const int64_t *bd, bool fd)
{
    onyx_tensor ta = th_f32(ar, ad, NULL);
    onyx_tensor tb = th_f32(br, bd, NULL);
    size_t na = (size_t)onyx_numel(&ta);
    size_t nb = (size_t)onyx_numel(&tb);
    float *a = malloc(sizeof(float) * (na + 1));
    float *b = malloc(sizeof(float) * (nb + 1));
    fill(a, na);
    fill(b, nb);
    ta.data = a;
    tb.data = b;
    onyx_tensor in[2] = {ta, tb};
    th_node *n = th_node_new("MatMul", 13, 2, 1);
    if (fd) {
        int r = th_grad_check_default(n, ONYX_MODE_TRAIN, in, 0x3u);
        if (r != 0)
            fprintf(stderr, "matmul grad check failed: A rank %d, B rank %d\n", ar, br);
        CHECK(r == 0);
    }
    onyx_error err = {0};
    onyx_tensor out[1];
    CHECK_OK(th_run(n, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    size_t ny = (size_t)onyx_numel(&out[0]);
    float *dy = malloc(sizeof(float) * (ny + 1));
    fill(dy, ny);
    float *da = malloc(sizeof(float) * (na + 1));
    float *db = malloc(sizeof(float) * (nb + 1));
    double *wa = malloc(sizeof(double) * (na + 1));
    double *wb = malloc(sizeof(double) * (nb + 1));
    for (size_t i = 0; i < na; i++) {
        da[i] = 0.5f;
        wa[i] = 0.5;
    }
    for (size_t i = 0; i < nb; i++) {
        db[i] = 0.5f;
        wb[i] = 0.5;
    }
    onyx_tensor din[2] = {ta, tb};
    din[0].data = da;
    din[1].data = db;
    run_backward(n, in, out, dy, din);

    /* The reference on 2-D-promoted shapes. */
    int64_t pad[ONYX_MAX_RANK];
    int64_t pbd[ONYX_MAX_RANK];
    int par = ar < 2 ? 2 : ar;
    int pbr = br < 2 ? 2 : br;
    if (ar == 1) {
        pad[0] = 1;
        pad[1] = ad[0];
    } else {
        memcpy(pad, ad, sizeof(int64_t) * (size_t)ar);
    }
    if (br == 1) {
        pbd[0] = bd[0];
        pbd[1] = 1;
    } else {
        memcpy(pbd, bd, sizeof(int64_t) * (size_t)br);
    }
    int nbat = (par > pbr ? par : pbr) - 2;
    int64_t ybd[ONYX_MAX_RANK];
    for (int i = 0; i < nbat; i++) {
        int ka = i - (nbat - (par - 2));
        int kb = i - (nbat - (pbr - 2));
        int64_t da_ = ka >= 0 ? pad[ka] : 1;
        int64_t db_ = kb >= 0 ? pbd[kb] : 1;
        ybd[i] = da_ == 1 ? db_ : da_;
    }
    matmul_backward_naive(pad, par, a, pbd, pbr, b, ybd, nbat, dy, wa, wb);
    /* float32 sums over up to K (or batch*M) terms of magnitude <= 1 */
    CHECK(th_close_f32(da, wa, (int64_t)na, 1e-4, 1e-4, "matmul dA"));
    CHECK(th_close_f32(db, wb, (int64_t)nb, 1e-4, 1e-4, "matmul dB"));
    th_node_free(n);
    free(a);
    free(b);
    free(dy);
    free(da);
    free(db);
    free(wa);
    free(wb);
}

static void test_matmul_backward(void)
{
    /* plain, 1-D on either side or both */
    check_matmul_backward(2, (int64_t[]){3, 4}, 2, (int64_t[]){4, 5}, true);
    check_matmul_backward(1, (int64_t[]){4}, 2, (int64_t[]){4, 5}, true);
    check_matmul_backward(2, (int64_t[]){3, 4}, 1, (int64_t[]){4}, true);
    check_matmul_backward(1, (int64_t[]){4}, 1, (int64_t[]){4}, true);
    /* B without batch dims (one folded GEMM per gradient), 1-D B under batched A */
    check_matmul_backward(3, (int64_t[]){2, 3, 4}, 2, (int64_t[]){4, 5}, true);
    check_matmul_backward(3, (int64_t[]){2, 3, 4}, 1, (int64_t[]){4}, true);
    /* A without batch dims against batched B: dA sums over B's batch */
    check_matmul_backward(2, (int64_t[]){3, 4}, 3, (int64_t[]){2, 4, 5}, true);
    check_matmul_backward(1, (int64_t[]){4}, 3, (int64_t[]){2, 4, 3}, true);
    /* same batch, and batch dims broadcast both ways */
    check_matmul_backward(3, (int64_t[]){2, 3, 4}, 3, (int64_t[]){2, 4, 3}, true);
    check_matmul_backward(4, (int64_t[]){2, 1, 3, 4}, 3, (int64_t[]){3, 4, 2}, true);
    check_matmul_backward(3, (int64_t[]){1, 3, 4}, 4, (int64_t[]){3, 2, 4, 2}, true);
    check_matmul_backward(4, (int64_t[]){2, 1, 2, 3}, 4, (int64_t[]){1, 3, 3, 2}, true);
    /* larger than the GEMM blocks, against the naive reference only */
    check_matmul_backward(3, (int64_t[]){2, 70, 150}, 3, (int64_t[]){2, 150, 130}, false);
    check_matmul_backward(4, (int64_t[]){3, 1, 33, 65}, 3, (int64_t[]){2, 65, 17}, false);
    check_matmul_backward(3, (int64_t[]){5, 7, 33}, 2, (int64_t[]){33, 17}, false);
    /* empty dims */
    check_matmul_backward(3, (int64_t[]){0, 3, 4}, 3, (int64_t[]){1, 4, 2}, false);
    check_matmul_backward(2, (int64_t[]){3, 0}, 2, (int64_t[]){0, 2}, false);
    CHECK(onyx_op_find("", "MatMul", 13)->impl->grad_inputs == 0x3u);
}

/* ---- pre-packed B and the fused Relu epilogue ------------------------------------------------ */

static void relu_rows(float *c, int64_t M, int64_t N, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            c[i * ldc + j] = c[i * ldc + j] < 0.0f ? 0.0f : c[i * ldc + j];
}

/* 1 when the M rows of stride ldc (gap columns included) differ in any bit, else 0. */
static int64_t bit_diffs(const float *x, const float *y, int64_t M, int64_t ldc)
{
    return memcmp(x, y, sizeof(float) * (size_t)(M * ldc)) != 0;
}

/*
 * For each shape, transpose form, beta and pool: the plain GEMM followed by a Relu pass is the
 * reference. onyx_gemm_f32_epi with the Relu epilogue (unpacked, and packed with B also given)
 * must equal it bit for bit; the packed call without epilogue must equal the plain GEMM bit for
 * bit. onyx_gemm_f32_packed (no B to fall back on) too for M > 8; for M <= 8 it takes the
 * packed direct path, which sums K in another order than the small-M path (gemm_kernel.h), so
 * there only a tolerance holds. With a bias row, the reference is the plain GEMM, then
 * c + bias[j] in float, then the Relu (or not): every path must match it bit for bit (M of 9..64
 * with B packed reads A in place in row panels of up to 14, 65 and more packs A).
 */
static void test_gemm_packed_epilogue(void)
{
    const int64_t Ms[] = {1, 3, 8, 9, 17, 23, 64, 65, 131};
    const int64_t Ns[] = {1, 5, 37, 129};
    const int64_t Ks[] = {1, 7, 300};
    onyx_pool *pool = NULL;
    CHECK(onyx_pool_create(2, &pool) == ONYX_OK);
    int64_t bad_epi = 0;
    int64_t bad_packed = 0;
    int64_t bad_small = 0;
    int64_t bad_bias = 0;
    int64_t small_differ = 0;
    int64_t relu_hits = 0;
    int64_t cases = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
                for (int form = 0; form < 4 * 2 * 2; form++) {
                    bool ta = form & 1;
                    bool tb = form & 2;
                    float beta = (form & 4) ? 1.0f : 0.0f;
                    onyx_pool *pl = (form & 8) ? pool : NULL;
                    int64_t M = Ms[mi];
                    int64_t N = Ns[ni];
                    int64_t K = Ks[ki];
                    int64_t lda = (ta ? M : K) + 2;
                    int64_t ldb = (tb ? K : N) + 1;
                    int64_t ldc = N + 3;
                    size_t na = (size_t)((ta ? K : M) * lda);
                    size_t nb = (size_t)((tb ? N : K) * ldb);
                    size_t nc = (size_t)(M * ldc);
                    float *a = malloc(sizeof(float) * na);
                    float *b = malloc(sizeof(float) * nb);
                    float *c0 = malloc(sizeof(float) * nc);
                    float *ref = malloc(sizeof(float) * nc);
                    float *c1 = malloc(sizeof(float) * nc);
                    float *bias = malloc(sizeof(float) * (size_t)N);
                    float *bref = malloc(sizeof(float) * nc);
                    size_t psize = onyx_gemm_packed_size(ONYX_GEMM_ISA_AUTO, N, K);
                    void *packed = aligned_alloc(64, (psize + 63) / 64 * 64);
                    if (!a || !b || !c0 || !ref || !c1 || !bias || !bref || !packed) {
                        CHECK(!"out of memory");
                        return;
                    }
                    fill(a, na);
                    fill(b, nb);
                    fill(c0, nc);
                    fill(bias, (size_t)N);
                    onyx_gemm_pack_b(ONYX_GEMM_ISA_AUTO, tb, N, K, b, ldb, packed);
                    float alpha = 0.7f;
                    /* plain, and plain + Relu (the reference) */
                    memcpy(ref, c0, sizeof(float) * nc);
                    onyx_gemm_f32(pl, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, ref, ldc);
                    float *plain = malloc(sizeof(float) * nc);
                    if (plain == NULL) {
                        CHECK(!"out of memory");
                        return;
                    }
                    memcpy(plain, ref, sizeof(float) * nc);
                    relu_rows(ref, M, N, ldc);
                    for (size_t k = 0; k < nc; k++)
                        relu_hits += plain[k] < 0.0f;
                    /* fused, unpacked */
                    memcpy(c1, c0, sizeof(float) * nc);
                    onyx_gemm_f32_epi(pl, NULL, ONYX_GEMM_EPI_RELU, ta, tb, M, N, K, alpha, a, lda,
                                      b, ldb, NULL, beta, c1, ldc);
                    bad_epi += bit_diffs(c1, ref, M, ldc);
                    /* fused, packed (B given too) */
                    memcpy(c1, c0, sizeof(float) * nc);
                    onyx_gemm_f32_epi(pl, NULL, ONYX_GEMM_EPI_RELU, ta, tb, M, N, K, alpha, a, lda,
                                      b, ldb, packed, beta, c1, ldc);
                    bad_epi += bit_diffs(c1, ref, M, ldc);
                    /* packed, no epilogue */
                    memcpy(c1, c0, sizeof(float) * nc);
                    onyx_gemm_f32_epi(pl, NULL, ONYX_GEMM_EPI_NONE, ta, tb, M, N, K, alpha, a, lda,
                                      b, ldb, packed, beta, c1, ldc);
                    bad_packed += bit_diffs(c1, plain, M, ldc);
                    /* packed only (no B): exact for M > 8, close for M <= 8 */
                    memcpy(c1, c0, sizeof(float) * nc);
                    onyx_gemm_f32_packed(pl, ta, M, N, K, alpha, a, lda, packed, beta, c1, ldc);
                    if (M > 8) {
                        bad_packed += bit_diffs(c1, plain, M, ldc);
                    } else {
                        for (size_t k = 0; k < nc; k++) {
                            bad_small += fabsf(c1[k] - plain[k]) > 1e-5f * (float)K;
                            small_differ += c1[k] != plain[k];
                        }
                    }
                    /* bias row, with and without the Relu, unpacked and packed */
                    for (int e = 0; e < 4; e++) {
                        bool relu = e & 1;
                        memcpy(bref, plain, sizeof(float) * nc); /* the columns past N too */
                        for (int64_t i = 0; i < M; i++)
                            for (int64_t j = 0; j < N; j++) {
                                float v = plain[i * ldc + j] + bias[j];
                                bref[i * ldc + j] = relu && v < 0.0f ? 0.0f : v;
                            }
                        memcpy(c1, c0, sizeof(float) * nc);
                        onyx_gemm_f32_epi(pl, bias, relu ? ONYX_GEMM_EPI_RELU : ONYX_GEMM_EPI_NONE,
                                          ta, tb, M, N, K, alpha, a, lda, b, ldb,
                                          (e & 2) ? packed : NULL, beta, c1, ldc);
                        bad_bias += bit_diffs(c1, bref, M, ldc);
                    }
                    cases++;
                    free(bias);
                    free(bref);
                    free(a);
                    free(b);
                    free(c0);
                    free(ref);
                    free(c1);
                    free(plain);
                    free(packed);
                }
    printf("packed/fused GEMM: %lld cases, %lld elements clipped by the Relu; packed-only M <= 8: "
           "%lld elements differ from the small-M path in the last bits\n",
           (long long)cases, (long long)relu_hits, (long long)small_differ);
    CHECK(relu_hits > 0);
    CHECK(bad_epi == 0);
    CHECK(bad_packed == 0);
    CHECK(bad_small == 0);
    CHECK(bad_bias == 0);

    /* K == 0 and alpha == 0: C = Relu(beta * C) */
    float c[4] = {-1.0f, 2.0f, -0.0f, 3.0f};
    onyx_gemm_f32_epi(pool, NULL, ONYX_GEMM_EPI_RELU, false, false, 2, 2, 0, 1.0f, NULL, 1, NULL, 2,
                      NULL, 2.0f, c, 2);
    CHECK(c[0] == 0.0f && c[1] == 4.0f && c[2] == 0.0f && signbit(c[2]) && c[3] == 6.0f);
    /* ... and with a bias row: C = Relu(beta * C + bias) */
    float cb[4] = {-1.0f, 2.0f, -0.0f, 3.0f};
    const float bias2[2] = {1.5f, -10.0f};
    onyx_gemm_f32_epi(pool, bias2, ONYX_GEMM_EPI_RELU, false, false, 2, 2, 0, 1.0f, NULL, 1, NULL,
                      2, NULL, 2.0f, cb, 2);
    CHECK(cb[0] == 0.0f && cb[1] == 0.0f && cb[2] == 1.5f && cb[3] == 0.0f);
    /* NaN passes through the Relu as it does through ops/activation.c's */
    float an[1] = {NAN};
    float bn[1] = {1.0f};
    float cn[1] = {0.0f};
    onyx_gemm_f32_epi(NULL, NULL, ONYX_GEMM_EPI_RELU, false, false, 1, 1, 1, 1.0f, an, 1, bn, 1,
                      NULL, 0.0f, cn, 1);
    CHECK(isnan(cn[0]));
    onyx_pool_destroy(pool);
}

/* Runs node t's forward again by hand with ctx.packed (the node's own pack of input 1) and
 * ctx.fuse = Relu, into a fresh buffer shaped like out[0]; returns it (caller frees). */
static float *forward_packed_fused(th_node *t, const onyx_tensor *in, const onyx_tensor *out,
                                   bool pack, bool fuse)
{
    onyx_node *n = th_onyx_node(t);
    void *packed = NULL;
    if (pack) {
        size_t size = n->impl->pack_size(n, 1, &in[1]);
        CHECK(size > 0);
        CHECK(n->impl->pack_size(n, 0, &in[0]) == 0); /* only B is packed */
        packed = aligned_alloc(64, (size + 63) / 64 * 64);
        n->impl->pack(n, 1, &in[1], packed);
    }
    onyx_tensor y = out[0];
    y.data = malloc(onyx_nbytes(&out[0]));
    onyx_kctx ctx = {
        .mode = ONYX_MODE_INFER, .packed = packed, .fuse = fuse ? ONYX_FUSE_RELU : ONYX_FUSE_NONE};
    n->impl->forward(n, &ctx, in, &y);
    free(packed);
    return y.data;
}

/* Gemm (transA/transB, alpha, a [N] bias) and MatMul (3-D A folded into rows) with a packed B
 * and the fused Relu: bit for bit Relu(the plain forward). */
static void test_gemm_op_packed_fused(void)
{
    onyx_error err = {0};
    for (int form = 0; form < 4; form++) {
        for (int64_t M = 1; M <= 40; M += 13) {
            int64_t K = 23;
            int64_t N = 19;
            bool ta = form & 1;
            bool tb = form & 2;
            float a[40 * 23];
            float b[23 * 19];
            float c[19];
            fill(a, sizeof a / sizeof a[0]);
            fill(b, sizeof b / sizeof b[0]);
            fill(c, 19);
            th_node *n = th_node_new("Gemm", 13, 3, 1);
            th_attr_int(n, "transA", ta);
            th_attr_int(n, "transB", tb);
            th_attr_float(n, "alpha", 0.6f);
            onyx_tensor in[3] = {th_f32(2, ta ? (int64_t[]){K, M} : (int64_t[]){M, K}, a),
                                 th_f32(2, tb ? (int64_t[]){N, K} : (int64_t[]){K, N}, b),
                                 th_f32(1, (int64_t[]){N}, c)};
            onyx_tensor out[1];
            CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
            float want[40 * 19];
            memcpy(want, out[0].data, onyx_nbytes(&out[0]));
            float *y = forward_packed_fused(n, in, out, true, false);
            CHECK(memcmp(y, want, onyx_nbytes(&out[0])) == 0);
            free(y);
            relu_rows(want, M, N, N);
            y = forward_packed_fused(n, in, out, true, true);
            CHECK(memcmp(y, want, onyx_nbytes(&out[0])) == 0);
            free(y);
            y = forward_packed_fused(n, in, out, false, true);
            CHECK(memcmp(y, want, onyx_nbytes(&out[0])) == 0);
            free(y);
            th_node_free(n);
        }
    }
    /* MatMul: A [2, 9, 23] x B [23, 19]: the 18 rows in one GEMM */
    float a[2 * 9 * 23];
    float b[23 * 19];
    fill(a, sizeof a / sizeof a[0]);
    fill(b, sizeof b / sizeof b[0]);
    th_node *n = th_node_new("MatMul", 13, 2, 1);
    onyx_tensor in[2] = {th_f32(3, (int64_t[]){2, 9, 23}, a), th_f32(2, (int64_t[]){23, 19}, b)};
    onyx_tensor out[1];
    CHECK_OK(th_run(n, ONYX_MODE_INFER, in, out, &err), err.msg);
    float want[2 * 9 * 19];
    memcpy(want, out[0].data, sizeof want);
    float *y = forward_packed_fused(n, in, out, true, false);
    CHECK(memcmp(y, want, sizeof want) == 0);
    free(y);
    relu_rows(want, 18, 19, 19);
    y = forward_packed_fused(n, in, out, true, true);
    CHECK(memcmp(y, want, sizeof want) == 0);
    free(y);
    /* only float32 B of rank 2 is packed */
    onyx_node *on = th_onyx_node(n);
    onyx_tensor b3 = th_f32(3, (int64_t[]){1, 23, 19}, b);
    CHECK(on->impl->pack_size(on, 1, &b3) == 0);
    onyx_tensor b64 = th_tensor(ONYX_DTYPE_F64, 2, (int64_t[]){23, 19}, NULL);
    CHECK(on->impl->pack_size(on, 1, &b64) == 0);
    th_node_free(n);
}

/* The fused SGD step of the trainer (ops.h): B += -lr * dB from the weight-gradient GEMM, the
 * same bits as dB then B - lr * dB, for each transposition; readiness refuses what could give a
 * non-finite dB (inf, NaN, huge values), a product deeper than one K slice, and alpha != 1. */
static void test_gemm_sgd_step(void)
{
    uint64_t rng = 77;
    enum { M = 9, K = 13, N = 6 };
    float a[M * K], b[K * N], dy[M * N], y[M * N];
    for (int i = 0; i < M * K; i++)
        a[i] = th_frand(&rng);
    for (int i = 0; i < M * N; i++)
        dy[i] = th_frand(&rng);
    int exact = 0;
    int total = 0;
    for (int form = 0; form < 4; form++) {
        bool ta = form & 1;
        bool tb = form & 2;
        th_node *n = th_node_new("Gemm", 13, 2, 1);
        th_attr_int(n, "transA", ta);
        th_attr_int(n, "transB", tb);
        for (int i = 0; i < K * N; i++)
            b[i] = th_frand(&rng);
        onyx_tensor in[2] = {th_f32(2, ta ? (int64_t[]){K, M} : (int64_t[]){M, K}, a),
                             th_f32(2, tb ? (int64_t[]){N, K} : (int64_t[]){K, N}, b)};
        onyx_tensor out[1];
        onyx_error err;
        CHECK_OK(th_run(n, ONYX_MODE_TRAIN, in, out, &err), err.msg);
        onyx_tensor yt = th_f32(2, (int64_t[]){M, N}, y);
        const onyx_node *node = th_onyx_node(n);
        CHECK(onyx_gemm_sgd_fusable(node));
        CHECK(onyx_gemm_sgd_ready(node, in, &yt, dy));
        float db[K * N];
        onyx_gemm_weight_grad(node, NULL, in, &yt, dy, db);
        float want[K * N];
        for (int i = 0; i < K * N; i++)
            want[i] = b[i] - 0.125f * db[i];
        onyx_gemm_sgd_step(node, NULL, in, &yt, dy, 0.125f, b);
        for (int i = 0; i < K * N; i++, total++)
            exact += memcmp(&b[i], &want[i], sizeof(float)) == 0;
        /* not ready: an infinite or NaN input, a huge one, a NaN gradient */
        float keep = a[5];
        a[5] = INFINITY;
        CHECK(!onyx_gemm_sgd_ready(node, in, &yt, dy));
        a[5] = NAN;
        CHECK(!onyx_gemm_sgd_ready(node, in, &yt, dy));
        a[5] = FLT_MAX / 2;
        CHECK(!onyx_gemm_sgd_ready(node, in, &yt, dy));
        a[5] = keep;
        keep = dy[3];
        dy[3] = NAN;
        CHECK(!onyx_gemm_sgd_ready(node, in, &yt, dy));
        dy[3] = keep;
        CHECK(onyx_gemm_sgd_ready(node, in, &yt, dy));
        th_node_free(n);
    }
    CHECK(exact == total);
    /* deeper than one K slice (M rows are dB's depth), and alpha != 1 */
    int64_t deep = onyx_gemm_depth() + 1;
    float *ad = calloc((size_t)deep * 2, sizeof(float));
    float *dyd = calloc((size_t)deep * 2, sizeof(float));
    float bd[4] = {0};
    th_node *n = th_node_new("Gemm", 13, 2, 1);
    onyx_tensor in[2] = {th_f32(2, (int64_t[]){deep, 2}, ad), th_f32(2, (int64_t[]){2, 2}, bd)};
    onyx_tensor out[1];
    onyx_error err;
    CHECK_OK(th_run(n, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    CHECK(!onyx_gemm_sgd_ready(th_onyx_node(n), in, out, dyd));
    th_node_free(n);
    n = th_node_new("Gemm", 13, 2, 1);
    th_attr_float(n, "alpha", 0.5f);
    in[0].dims[0] = 2;
    CHECK_OK(th_run(n, ONYX_MODE_TRAIN, in, out, &err), err.msg);
    CHECK(!onyx_gemm_sgd_fusable(th_onyx_node(n)));
    CHECK(!onyx_gemm_sgd_ready(th_onyx_node(n), in, out, dyd));
    th_node_free(n);
    free(ad);
    free(dyd);
}

int main(void)
{
    test_gemm_sgd_step();
    test_gemm_edges();
    test_gemm_fast_vs_ref();
    test_gemm_op_basic();
    test_gemm_op_f64();
    test_gemm_op_errors();
    test_gemm_op_infer();
    test_matmul();
    test_matmul_errors_infer();
    test_gemm_backward_hand();
    test_gemm_backward_c_forms();
    test_gemm_grad_check();
    test_matmul_backward();
    test_gemm_packed_epilogue();
    test_gemm_op_packed_fused();
    return check_report();
}
