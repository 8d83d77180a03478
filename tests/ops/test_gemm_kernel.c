/*
 * test_gemm_kernel.c — the fast GEMM (ops/gemm_kernel.c) and the thread pool (runtime/pool.c).
 *
 * Every instruction-set path this CPU can run (portable, AVX2+FMA, AVX-512, NEON) is forced in
 * turn and held against a plain triple loop in double precision written here, on awkward shapes:
 * 1, primes, sizes just past the micro-tile and the MC/KC/NC blocks, all four transpose forms,
 * leading dimensions wider than the matrices (the gap must stay untouched), alpha/beta
 * including beta = 0 over a NaN-filled C, and M = 1..9 for the small-M path. Results must be
 * bit-identical with no pool and with pools of 1, 2 and 3 threads.
 */
#include "check.h"
#include "gemm_kernel.h"
#include "pool.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

/* Uniform in [-1, 1). */
static float frand(void)
{
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (float)((double)(rng_state >> 40) / (double)(1u << 23) - 1.0);
}

static void fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = frand();
}

/* One GEMM problem with its buffers; leading dimensions are the widths plus `pad`. */
typedef struct problem {
    bool ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    int64_t lda, ldb, ldc;
    float *A, *B, *C0; /* C0: C before the call */
    double *ref;       /* alpha * op(A) op(B) + beta * C0, in double */
    double *mag;       /* |alpha| * sum_k |a||b| + |beta c|: the scale of rounding errors */
} problem;

static const float SENTINEL = 12345.0f;

static void problem_init(problem *p, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                         float alpha, float beta, int64_t pad)
{
    p->ta = ta;
    p->tb = tb;
    p->M = M;
    p->N = N;
    p->K = K;
    p->alpha = alpha;
    p->beta = beta;
    int64_t a_rows = ta ? K : M;
    int64_t b_rows = tb ? N : K;
    p->lda = (ta ? M : K) + pad;
    p->ldb = (tb ? K : N) + pad;
    p->ldc = N + pad;
    size_t na = (size_t)(a_rows * p->lda) + 1;
    size_t nb = (size_t)(b_rows * p->ldb) + 1;
    size_t nc = (size_t)(M * p->ldc) + 1;
    p->A = malloc(na * sizeof(float));
    p->B = malloc(nb * sizeof(float));
    p->C0 = malloc(nc * sizeof(float));
    p->ref = malloc((size_t)(M * N + 1) * sizeof(double));
    p->mag = malloc((size_t)(M * N + 1) * sizeof(double));
    fill(p->A, na);
    fill(p->B, nb);
    fill(p->C0, nc);
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = N; j < p->ldc; j++)
            p->C0[i * p->ldc + j] = SENTINEL; /* the gap between rows must stay untouched */
        if (beta == 0.0f)
            for (int64_t j = 0; j < N; j++)
                p->C0[i * p->ldc + j] = NAN; /* write-only: must never be read */
    }
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            double mag = 0.0;
            for (int64_t k = 0; k < K; k++) {
                double a = ta ? p->A[k * p->lda + i] : p->A[i * p->lda + k];
                double b = tb ? p->B[j * p->ldb + k] : p->B[k * p->ldb + j];
                acc += a * b;
                mag += fabs(a * b);
            }
            double c = beta == 0.0f ? 0.0 : (double)beta * p->C0[i * p->ldc + j];
            p->ref[i * N + j] = (double)alpha * acc + c;
            p->mag[i * N + j] = fabs((double)alpha) * mag + fabs(c);
        }
    }
}

static void problem_fini(problem *p)
{
    free(p->A);
    free(p->B);
    free(p->C0);
    free(p->ref);
    free(p->mag);
}

/* A copy of C0 to run the GEMM on. */
static float *problem_c(const problem *p)
{
    size_t nc = (size_t)(p->M * p->ldc) + 1;
    float *c = malloc(nc * sizeof(float));
    memcpy(c, p->C0, nc * sizeof(float));
    return c;
}

/* C against the reference: float32 rounding over K terms, relative to their magnitude; the gap
 * past N untouched. Prints the first mismatch. */
static bool problem_check(const problem *p, const float *c, const char *what)
{
    for (int64_t i = 0; i < p->M; i++) {
        for (int64_t j = 0; j < p->ldc; j++) {
            float got = c[i * p->ldc + j];
            if (j >= p->N) {
                if (got != SENTINEL) {
                    fprintf(stderr, "%s: C[%lld][%lld] past N was written\n", what, (long long)i,
                            (long long)j);
                    return false;
                }
                continue;
            }
            double want = p->ref[i * p->N + j];
            double tol = 4e-7 * (double)(p->K + 4) * p->mag[i * p->N + j] + 1e-30;
            if (!(fabs((double)got - want) <= tol)) {
                fprintf(stderr,
                        "%s: ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g: C[%lld][%lld] = "
                        "%.9g, expected %.9g\n",
                        what, p->ta, p->tb, (long long)p->M, (long long)p->N, (long long)p->K,
                        p->alpha, p->beta, (long long)i, (long long)j, got, want);
                return false;
            }
        }
    }
    return true;
}

/* The instruction sets this CPU runs, AUTO excluded. */
static int supported_isas(onyx_gemm_isa *out)
{
    int n = 0;
    for (int i = ONYX_GEMM_ISA_PORTABLE; i < ONYX_GEMM_ISA_COUNT; i++)
        if (onyx_gemm_isa_supported((onyx_gemm_isa)i))
            out[n++] = (onyx_gemm_isa)i;
    return n;
}

static onyx_gemm_isa isas[ONYX_GEMM_ISA_COUNT];
static int n_isas;
static onyx_pool *pools[4]; /* NULL, then pools of 1, 2 and 3 threads */

/* Runs p through every isa, with pool index `pi`; checks against the reference. */
static void check_problem(const problem *p, int pi)
{
    for (int s = 0; s < n_isas; s++) {
        float *c = problem_c(p);
        onyx_gemm_f32_isa(isas[s], pools[pi], p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A,
                          p->lda, p->B, p->ldb, p->beta, c, p->ldc);
        CHECK(problem_check(p, c, onyx_gemm_isa_name(isas[s])));
        free(c);
    }
}

/* Shapes for every transpose form: 1, primes, micro-tile edges (4x16, 6x16, 14x32, 8x12),
 * K just past a KC slice (256), the MLP's first layer. */
static const int64_t SHAPES[][3] = {
    {1, 1, 1},    {2, 3, 5},     {7, 13, 11},  {13, 17, 19}, {14, 32, 256}, {15, 33, 257},
    {6, 16, 1},   {29, 65, 300}, {31, 37, 41}, {64, 10, 97}, {1, 600, 3},   {3, 1, 600},
    {97, 1, 513}, {1, 97, 1},    {10, 50, 2},  {43, 71, 16}, {24, 36, 67},  {9, 200, 33},
};

static const float ALPHAS[] = {1.0f, 0.5f, -2.0f, 1.0f};
static const float BETAS[] = {0.0f, -1.25f, 1.0f, 0.0f};

static void test_shapes(void)
{
    int n = 0;
    for (size_t s = 0; s < sizeof(SHAPES) / sizeof(SHAPES[0]); s++) {
        for (int t = 0; t < 4; t++, n++) {
            problem p;
            problem_init(&p, t & 1, t & 2, SHAPES[s][0], SHAPES[s][1], SHAPES[s][2],
                         ALPHAS[n % 4], BETAS[n % 4], n % 3 == 0 ? 0 : n % 3 == 1 ? 1 : 7);
            check_problem(&p, n % 4);
            problem_fini(&p);
        }
    }
}

/* Past every block: M > MC (224 for AVX-512), N > NC (1024), K > KC (256) twice; one transpose
 * form each to keep the double reference affordable under the sanitizers. */
static void test_big(void)
{
    static const int64_t big[][3] = {{229, 1031, 263}, {131, 1100, 520}, {300, 45, 700},
                                     {2, 2100, 40}};
    for (int t = 0; t < 4; t++) {
        problem p;
        problem_init(&p, t & 1, t & 2, big[t][0], big[t][1], big[t][2], t == 2 ? 0.75f : 1.0f,
                     t == 1 ? 0.5f : 0.0f, 3);
        check_problem(&p, 2 + t % 2);
        problem_fini(&p);
    }
}

/* The small-M path: M = 1..9 (9 leaves it), N and K around the vector widths and its blocks
 * (16 rows of K, 512 columns). */
static void test_small_m(void)
{
    static const int64_t ns[] = {1, 5, 16, 33, 64, 100, 130, 600};
    static const int64_t ks[] = {1, 7, 16, 17, 31, 300};
    int n = 0;
    for (int64_t M = 1; M <= 9; M++) {
        for (size_t a = 0; a < sizeof(ns) / sizeof(ns[0]); a++) {
            int t = n % 4;
            problem p;
            problem_init(&p, t & 1, t & 2, M, ns[a], ks[(size_t)n % 6], ALPHAS[n % 4],
                         BETAS[(n / 4) % 4], n % 2 ? 5 : 0);
            check_problem(&p, n % 4);
            problem_fini(&p);
            n++;
        }
    }
}

/* Same C, to the bit, with no pool and with 1, 2 and 3 threads, for every isa; shapes that
 * split both ways and the small-M path. */
static void test_thread_invariance(void)
{
    static const int64_t shapes[][3] = {
        {300, 257, 300}, {40, 700, 300}, {4, 1000, 200}, {8, 333, 100}, {130, 130, 1000}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1;
            bool tb = t & 2;
            problem p;
            problem_init(&p, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f,
                         t == 3 ? 0.5f : 0.0f, 1);
            for (int i = 0; i < n_isas; i++) {
                float *c[4];
                for (int pi = 0; pi < 4; pi++) {
                    c[pi] = problem_c(&p);
                    onyx_gemm_f32_isa(isas[i], pools[pi], ta, tb, p.M, p.N, p.K, p.alpha, p.A,
                                      p.lda, p.B, p.ldb, p.beta, c[pi], p.ldc);
                }
                size_t bytes = (size_t)(p.M * p.ldc) * sizeof(float);
                CHECK(problem_check(&p, c[0], onyx_gemm_isa_name(isas[i])));
                for (int pi = 1; pi < 4; pi++) {
                    bool same = memcmp(c[0], c[pi], bytes) == 0;
                    if (!same)
                        fprintf(stderr, "%s: M=%lld N=%lld K=%lld ta=%d tb=%d: pool %d differs\n",
                                onyx_gemm_isa_name(isas[i]), (long long)p.M, (long long)p.N,
                                (long long)p.K, ta, tb, pi);
                    CHECK(same);
                }
                for (int pi = 0; pi < 4; pi++)
                    free(c[pi]);
            }
            problem_fini(&p);
        }
    }
}

/* Pre-packed op(B): every isa and transpose form against the reference, and thread
 * invariance; up to 256 rows read A in place (the direct kernel; tasks split columns, or rows
 * from 4 * mr per thread), more rows pack it. */
static void test_packed(void)
{
    static const int64_t shapes[][3] = {{1, 1, 1},       {3, 100, 70},    {64, 97, 300},
                                        {9, 33, 513},    {230, 1030, 260}, {8, 200, 300},
                                        {5, 1100, 40},   {256, 10, 129},  {257, 70, 64},
                                        {113, 45, 31}};
    int n = 0;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (int t = 0; t < 4; t++, n++) {
            problem p;
            problem_init(&p, t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2],
                         ALPHAS[n % 4], BETAS[n % 4], t);
            for (int i = 0; i < n_isas; i++) {
                size_t size = onyx_gemm_packed_size(isas[i], p.N, p.K);
                CHECK(size > 0);
                void *packed = aligned_alloc(64, (size + 63) & ~(size_t)63);
                onyx_gemm_pack_b(isas[i], p.tb, p.N, p.K, p.B, p.ldb, packed);
                float *c[4];
                for (int pi = 0; pi < 4; pi++) {
                    c[pi] = problem_c(&p);
                    onyx_gemm_f32_packed(pools[pi], p.ta, p.M, p.N, p.K, p.alpha, p.A, p.lda,
                                         packed, p.beta, c[pi], p.ldc);
                }
                CHECK(problem_check(&p, c[0], onyx_gemm_isa_name(isas[i])));
                size_t bytes = (size_t)(p.M * p.ldc) * sizeof(float);
                for (int pi = 1; pi < 4; pi++)
                    CHECK(memcmp(c[0], c[pi], bytes) == 0);
                for (int pi = 0; pi < 4; pi++)
                    free(c[pi]);
                free(packed);
            }
            problem_fini(&p);
        }
    }
}

/* With B pre-packed, a row of C does not depend on how many rows come with it: M <= 8 reads A
 * in place, larger M packs it, and both sum in the same order. */
static void test_packed_rows_invariant(void)
{
    problem p;
    problem_init(&p, false, true, 20, 77, 300, 1.0f, 0.0f, 2);
    for (int i = 0; i < n_isas; i++) {
        size_t size = onyx_gemm_packed_size(isas[i], p.N, p.K);
        void *packed = aligned_alloc(64, (size + 63) & ~(size_t)63);
        onyx_gemm_pack_b(isas[i], p.tb, p.N, p.K, p.B, p.ldb, packed);
        float *all = problem_c(&p);
        onyx_gemm_f32_packed(pools[2], false, p.M, p.N, p.K, p.alpha, p.A, p.lda, packed, p.beta,
                             all, p.ldc);
        CHECK(problem_check(&p, all, onyx_gemm_isa_name(isas[i])));
        for (int64_t m = 1; m <= 9; m++) {
            for (int64_t r0 = 0; r0 + m <= p.M; r0 += 11) {
                float *part = problem_c(&p);
                onyx_gemm_f32_packed(NULL, false, m, p.N, p.K, p.alpha, p.A + r0 * p.lda, p.lda,
                                     packed, p.beta, part, p.ldc);
                CHECK(memcmp(part, all + r0 * p.ldc, (size_t)(m * p.ldc - 2) * sizeof(float)) ==
                      0);
                free(part);
            }
        }
        free(all);
        free(packed);
    }
    problem_fini(&p);
}

/* Empty shapes, alpha = 0 and K = 0: A and B not read (NaN there), C = beta * C. */
static void test_degenerate(void)
{
    float nan_ab[4] = {NAN, NAN, NAN, NAN};
    for (int i = 0; i < n_isas; i++) {
        float c[4] = {NAN, NAN, NAN, NAN};
        onyx_gemm_f32_isa(isas[i], pools[2], false, false, 2, 2, 0, 1.0f, NULL, 1, NULL, 2, 0.0f,
                          c, 2);
        CHECK(c[0] == 0.0f && c[1] == 0.0f && c[2] == 0.0f && c[3] == 0.0f);
        float d[4] = {1, 2, 3, 4};
        onyx_gemm_f32_isa(isas[i], NULL, true, true, 2, 2, 2, 0.0f, nan_ab, 2, nan_ab, 2, 2.0f, d,
                          2);
        CHECK(d[0] == 2.0f && d[1] == 4.0f && d[2] == 6.0f && d[3] == 8.0f);
        float e[1] = {7.0f};
        onyx_gemm_f32_isa(isas[i], NULL, false, false, 0, 1, 1, 1.0f, e, 1, e, 1, 0.0f, e, 1);
        onyx_gemm_f32_isa(isas[i], NULL, false, false, 1, 0, 1, 1.0f, e, 1, e, 1, 0.0f, e, 1);
        CHECK(e[0] == 7.0f);
        /* 2x2 by hand: [1 2; 3 4] [5 6; 7 8] = [19 22; 43 50]; transposed both: [23 31; 34 46] */
        float a[4] = {1, 2, 3, 4};
        float b[4] = {5, 6, 7, 8};
        float y[4];
        onyx_gemm_f32_isa(isas[i], NULL, false, false, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, y, 2);
        CHECK(y[0] == 19.0f && y[1] == 22.0f && y[2] == 43.0f && y[3] == 50.0f);
        onyx_gemm_f32_isa(isas[i], NULL, true, true, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, y, 2);
        CHECK(y[0] == 23.0f && y[1] == 31.0f && y[2] == 34.0f && y[3] == 46.0f);
    }
    float f[2] = {NAN, NAN};
    onyx_gemm_f32_fast(NULL, false, false, 1, 2, 0, 1.0f, NULL, 1, NULL, 2, 0.0f, f, 2);
    CHECK(f[0] == 0.0f && f[1] == 0.0f);
}

static void test_isa_names(void)
{
    CHECK(strcmp(onyx_gemm_isa_name(ONYX_GEMM_ISA_PORTABLE), "portable") == 0);
    CHECK(strcmp(onyx_gemm_isa_name(ONYX_GEMM_ISA_AVX512), "avx512") == 0);
    CHECK(strcmp(onyx_gemm_isa_name(ONYX_GEMM_ISA_COUNT), "?") == 0);
    CHECK(onyx_gemm_isa_supported(ONYX_GEMM_ISA_PORTABLE));
    onyx_gemm_isa best = onyx_gemm_isa_best();
    CHECK(best != ONYX_GEMM_ISA_AUTO && onyx_gemm_isa_supported(best));
#if defined(__x86_64__)
    CHECK(!onyx_gemm_isa_supported(ONYX_GEMM_ISA_NEON));
#endif
    printf("gemm paths on this CPU:");
    for (int i = 0; i < n_isas; i++)
        printf(" %s", onyx_gemm_isa_name(isas[i]));
    printf(" (best: %s)\n", onyx_gemm_isa_name(best));
}

/* ---- the pool ----------------------------------------------------------------------------- */

typedef struct count_ctx {
    atomic_int *hits;
    onyx_pool *pool;
    atomic_int nested;
} count_ctx;

static void count_task(void *ctx, int64_t task)
{
    count_ctx *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
}

/* A task that runs a job on the same pool: it must run inline, not deadlock. */
static void nested_task(void *ctx, int64_t task)
{
    count_ctx *c = ctx;
    (void)task;
    count_ctx inner = {c->hits, NULL, 0};
    onyx_pool_run(c->pool, 8, count_task, &inner);
    atomic_fetch_add(&c->nested, 1);
}

static void test_pool(void)
{
    enum { N_TASKS = 1000 };
    static atomic_int hits[N_TASKS];
    for (int pi = 0; pi < 4; pi++) {
        CHECK(onyx_pool_threads(pools[pi]) == (pi == 0 ? 1 : pi));
        for (int rep = 0; rep < 50; rep++) {
            int64_t n = rep == 0 ? 0 : rep == 1 ? 1 : rep % 2 ? N_TASKS : 3;
            for (int i = 0; i < N_TASKS; i++)
                atomic_store(&hits[i], 0);
            count_ctx c = {hits, pools[pi], 0};
            onyx_pool_run(pools[pi], n, count_task, &c);
            bool once = true;
            for (int64_t i = 0; i < N_TASKS; i++)
                once = once && atomic_load(&hits[i]) == (i < n ? 1 : 0);
            CHECK(once);
        }
        for (int i = 0; i < N_TASKS; i++)
            atomic_store(&hits[i], 0);
        count_ctx c = {hits, pools[pi], 0};
        onyx_pool_run(pools[pi], 4, nested_task, &c);
        CHECK(atomic_load(&c.nested) == 4);
        bool all = true;
        for (int i = 0; i < 8; i++)
            all = all && atomic_load(&hits[i]) == 4;
        CHECK(all);
    }
    /* Scratch: NULL without a pool, aligned, grows, kept when big enough. */
    CHECK(onyx_pool_scratch(NULL, 10) == NULL);
    void *s1 = onyx_pool_scratch(pools[1], 100);
    CHECK(s1 != NULL && ((uintptr_t)s1 & 63) == 0);
    CHECK(onyx_pool_scratch(pools[1], 64) == s1);
    void *s2 = onyx_pool_scratch(pools[1], 1 << 20);
    CHECK(s2 != NULL && ((uintptr_t)s2 & 63) == 0);
    memset(s2, 0, 1 << 20);
    /* A pool of "0" threads is one per CPU; create and destroy many times. */
    for (int i = 0; i < 20; i++) {
        onyx_pool *p = NULL;
        CHECK(onyx_pool_create(i % 2 ? 0 : 2, &p) == ONYX_OK && p != NULL);
        CHECK(onyx_pool_threads(p) >= 1);
        onyx_pool_destroy(p);
    }
    onyx_pool_destroy(NULL);
}

int main(void)
{
    n_isas = supported_isas(isas);
    pools[0] = NULL;
    for (int i = 1; i < 4; i++)
        CHECK(onyx_pool_create(i, &pools[i]) == ONYX_OK);
    test_isa_names();
    test_pool();
    test_degenerate();
    test_shapes();
    test_small_m();
    test_big();
    test_thread_invariance();
    test_packed();
    test_packed_rows_invariant();
    for (int i = 1; i < 4; i++)
        onyx_pool_destroy(pools[i]);
    return check_report();
}
