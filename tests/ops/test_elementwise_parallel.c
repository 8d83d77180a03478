/* test_elementwise_parallel.c — large element-wise loops split over the thread pool
 * (onyx_parallel_for, ops/activation.h): the activations and Clip (ops/activation.c), the
 * binary and unary maths (ops/elementwise.c) and Softmax/LogSoftmax (ops/softmax.c), forward and
 * backward, on tensors big enough to be split (a few hundred thousand elements, sizes that are
 * no multiple of the chunk). Each op runs with no pool, and on pools of 1, 2 and 3 threads: the
 * results must be the same bits. Against scalar references: the fusable activations and Clip
 * element by element through the formulas of ops/activation.h, bit for bit; the binary ops
 * element by element with numpy's broadcasting computed the naive way (th_naive_index), bit for
 * bit; Softmax against the spec in double. onyx_parallel_for itself: every unit visited once, in
 * chunks of whole units, inline below the threshold. */
#include "activation.h"
#include "check.h"
#include "op_harness.h"
#include "pool.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BIG 300007 /* elements of the element-wise cases: above ONYX_PAR_MIN, odd */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static onyx_pool *pools[3]; /* 1, 2 and 3 threads */

/* n values in [lo, hi), with -0.0, NaN and infinities sprinkled in when special. */
static float *data(int64_t n, double lo, double hi, bool special)
{
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)th_urand(&rng_state, lo, hi);
    if (special)
        for (int64_t i = 0; i + 3 < n; i += 9973) {
            p[i] = -0.0f;
            p[i + 1] = NAN;
            p[i + 2] = INFINITY;
            p[i + 3] = -INFINITY;
        }
    return p;
}

static float *copy(const float *p, int64_t n)
{
    float *q = malloc(sizeof(float) * (size_t)n);
    memcpy(q, p, sizeof(float) * (size_t)n);
    return q;
}

/* Runs the node's forward again with pool, into a fresh buffer shaped like out[0] (which a
 * th_run filled), and checks the bits against out[0]. */
static void same_forward(th_node *t, const onyx_tensor *in, const onyx_tensor *out, onyx_pool *pool,
                         const char *what)
{
    onyx_node *n = th_onyx_node(t);
    size_t nb = onyx_nbytes(&out[0]);
    onyx_tensor o = out[0];
    o.data = malloc(nb);
    memset(o.data, 0xA5, nb);
    onyx_kctx ctx = {.mode = ONYX_MODE_INFER, .pool = pool};
    n->impl->forward(n, &ctx, in, &o);
    bool same = memcmp(o.data, out[0].data, nb) == 0;
    CHECK(same);
    if (!same)
        fprintf(stderr, "%s: forward on %d threads differs\n", what, onyx_pool_threads(pool));
    free(o.data);
}

/* Backward of input 0 (and 1 when two > 0) with pool, into copies of dx0 (dx1), which must be
 * the bits of want0 (want1); NULL pool: fills want0/want1 instead. */
static void backward_into(th_node *t, const onyx_tensor *in, const onyx_tensor *out,
                          const float *dy, const float *dx0, const float *dx1, int64_t n0,
                          int64_t n1, onyx_pool *pool, float *want0, float *want1, const char *what)
{
    onyx_node *nd = th_onyx_node(t);
    onyx_tensor dout = out[0];
    dout.data = (void *)dy;
    onyx_tensor din[3];
    memset(din, 0, sizeof din);
    din[0] = in[0];
    din[0].data = copy(dx0, n0);
    if (dx1 != NULL) {
        din[1] = in[1];
        din[1].data = copy(dx1, n1);
    }
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN, .pool = pool};
    nd->impl->backward(nd, &ctx, in, out, &dout, din);
    if (pool == NULL) {
        memcpy(want0, din[0].data, sizeof(float) * (size_t)n0);
        if (dx1 != NULL)
            memcpy(want1, din[1].data, sizeof(float) * (size_t)n1);
    } else {
        bool same = memcmp(want0, din[0].data, sizeof(float) * (size_t)n0) == 0;
        if (dx1 != NULL)
            same = same && memcmp(want1, din[1].data, sizeof(float) * (size_t)n1) == 0;
        CHECK(same);
        if (!same)
            fprintf(stderr, "%s: backward on %d threads differs\n", what, onyx_pool_threads(pool));
    }
    free(din[0].data);
    free(din[1].data);
}

/* Forward on every pool and backward on every pool, compared with the no-pool run. */
static void all_pools(th_node *t, const onyx_tensor *in, const onyx_tensor *out, int n_grad,
                      const char *what)
{
    for (int p = 0; p < 3; p++)
        same_forward(t, in, out, pools[p], what);
    if (n_grad == 0)
        return;
    int64_t ny = onyx_numel(&out[0]);
    int64_t n0 = onyx_numel(&in[0]);
    int64_t n1 = n_grad > 1 ? onyx_numel(&in[1]) : 0;
    float *dy = data(ny, -1, 1, false);
    float *dx0 = data(n0, -1, 1, false);
    float *dx1 = n_grad > 1 ? data(n1, -1, 1, false) : NULL;
    float *w0 = malloc(sizeof(float) * (size_t)n0);
    float *w1 = n_grad > 1 ? malloc(sizeof(float) * (size_t)n1) : NULL;
    backward_into(t, in, out, dy, dx0, dx1, n0, n1, NULL, w0, w1, what);
    for (int p = 0; p < 3; p++)
        backward_into(t, in, out, dy, dx0, dx1, n0, n1, pools[p], w0, w1, what);
    free(dy);
    free(dx0);
    free(dx1);
    free(w0);
    free(w1);
}

/* ---- onyx_parallel_for ----------------------------------------------------------------------- */

/* Ranges run on several threads at once: each writes only its own units' counters. */
typedef struct visit {
    int64_t n;
    unsigned char *seen; /* per unit: times visited */
} visit;

static void visit_range(void *ctx, int64_t lo, int64_t hi)
{
    visit *v = ctx;
    for (int64_t i = lo; i < hi; i++)
        v->seen[i]++;
}

static void count_call(void *ctx, int64_t lo, int64_t hi)
{
    (void)lo;
    (void)hi;
    (*(int *)ctx)++;
}

static void test_parallel_for(void)
{
    const int64_t sizes[][2] = {
        {1, 1},      {100, 1},   {ONYX_PAR_MIN - 1, 1},  {ONYX_PAR_MIN, 1}, {BIG, 1}, {1000, 300},
        {3, 100000}, {70000, 0}, {ONYX_PAR_CHUNK + 1, 4}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int p = -1; p < 3; p++) {
            visit v = {.n = sizes[k][0]};
            v.seen = calloc((size_t)v.n, 1);
            onyx_parallel_for(p < 0 ? NULL : pools[p], v.n, sizes[k][1], visit_range, &v);
            int64_t wrong = 0;
            for (int64_t i = 0; i < v.n; i++)
                wrong += v.seen[i] != 1;
            CHECK(wrong == 0);
            free(v.seen);
        }
    }
    /* n <= 0: nothing; below the threshold or on one thread: one call, inline */
    int calls = 0;
    onyx_parallel_for(pools[1], 0, 1, count_call, &calls);
    onyx_parallel_for(pools[1], -5, 1, count_call, &calls);
    CHECK(calls == 0);
    onyx_parallel_for(pools[1], ONYX_PAR_MIN - 1, 1, count_call, &calls);
    onyx_parallel_for(pools[0], BIG, 1, count_call, &calls);
    onyx_parallel_for(NULL, BIG, 1, count_call, &calls);
    CHECK(calls == 3);
}

/* ---- activations and Clip ------------------------------------------------------------------ */

typedef struct act_case {
    const char *op;
    int64_t opset;
    const char *attr; /* a float attribute, or "approximate" (Gelu tanh), or NULL */
    float value;
    int kind; /* fusable: ONYX_FUSE_*, compared with the header's formula */
} act_case;

/* The formula of activation.h for kind (alpha, beta). */
static float header_act(int kind, float alpha, float beta, float v)
{
    onyx_act a = {kind, alpha, beta};
    onyx_epilogue_row_f32(&a, NULL, &v, 1);
    return v;
}

static void test_activations(void)
{
    static const act_case cases[] = {
        {"Relu", 14, NULL, 0, ONYX_FUSE_RELU},
        {"LeakyRelu", 16, "alpha", 0.2f, ONYX_FUSE_LEAKYRELU},
        {"Sigmoid", 13, NULL, 0, ONYX_FUSE_SIGMOID},
        {"HardSigmoid", 6, "alpha", 0.3f, ONYX_FUSE_HARDSIGMOID},
        {"HardSwish", 14, NULL, 0, ONYX_FUSE_HARDSWISH},
        {"Tanh", 13, NULL, 0, ONYX_FUSE_TANH},
        {"Elu", 6, "alpha", 0.7f, ONYX_FUSE_NONE},
        {"Selu", 6, NULL, 0, ONYX_FUSE_NONE},
        {"Celu", 12, "alpha", 1.5f, ONYX_FUSE_NONE},
        {"Softplus", 1, NULL, 0, ONYX_FUSE_NONE},
        {"Softsign", 1, NULL, 0, ONYX_FUSE_NONE},
        {"Gelu", 20, NULL, 0, ONYX_FUSE_GELU},
        {"Gelu", 20, "approximate", 0, ONYX_FUSE_GELU_TANH},
    };
    int64_t dims[1] = {BIG};
    float *x = data(BIG, -8, 8, true);
    float *xf = data(BIG, -8, 8, false); /* finite, for backward */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const act_case *ac = &cases[c];
        th_node *t = th_node_new(ac->op, ac->opset, 1, 1);
        if (ac->attr != NULL && strcmp(ac->attr, "approximate") == 0)
            th_attr_string(t, "approximate", "tanh");
        else if (ac->attr != NULL)
            th_attr_float(t, ac->attr, ac->value);
        for (int pass = 0; pass < 2; pass++) {
            onyx_tensor in[1] = {th_f32(1, dims, pass == 0 ? x : xf)};
            onyx_tensor out[1];
            onyx_error err;
            CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
            if (out[0].data == NULL)
                continue;
            all_pools(t, in, out, pass == 1 ? 1 : 0, ac->op);
            if (ac->kind == ONYX_FUSE_NONE || pass == 1)
                continue;
            float alpha = 0;
            float beta = 0;
            CHECK(onyx_act_fusable(th_onyx_node(t), in, &alpha, &beta) == ac->kind);
            const float *y = out[0].data;
            int64_t wrong = 0;
            for (int64_t i = 0; i < BIG; i++) {
                float want = header_act(ac->kind, alpha, beta, x[i]);
                wrong += memcmp(&want, &y[i], sizeof want) != 0;
            }
            CHECK(wrong == 0);
        }
        th_node_free(t);
    }
    /* Clip: inputs min and max (opset 13), and attributes (opset 6) */
    for (int legacy = 0; legacy < 2; legacy++) {
        th_node *t = th_node_new("Clip", legacy ? 6 : 13, legacy ? 1 : 3, 1);
        float lo = -2.5f;
        float hi = 3.0f;
        if (legacy) {
            th_attr_float(t, "min", lo);
            th_attr_float(t, "max", hi);
        }
        for (int pass = 0; pass < 2; pass++) {
            onyx_tensor in[3] = {th_f32(1, dims, pass == 0 ? x : xf), th_f32(0, NULL, &lo),
                                 th_f32(0, NULL, &hi)};
            onyx_tensor out[1];
            onyx_error err;
            CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
            if (out[0].data == NULL)
                continue;
            all_pools(t, in, out, pass, "Clip");
            float a = 0;
            float b = 0;
            CHECK(onyx_act_fusable(th_onyx_node(t), in, &a, &b) == ONYX_FUSE_CLIP);
            CHECK(a == lo && b == hi);
            const float *y = out[0].data;
            const float *xs = pass == 0 ? x : xf;
            int64_t wrong = 0;
            for (int64_t i = 0; i < BIG; i++) {
                float want = onyx_clip_f32(xs[i], lo, hi);
                wrong += memcmp(&want, &y[i], sizeof want) != 0;
            }
            CHECK(wrong == 0);
        }
        th_node_free(t);
    }
    /* not an activation a GEMM applies */
    th_node *t = th_node_new("Exp", 13, 1, 1);
    onyx_tensor in[1] = {th_f32(1, dims, x)};
    onyx_tensor out[1];
    onyx_error err;
    CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
    float a = 0;
    float b = 0;
    CHECK(onyx_act_fusable(th_onyx_node(t), NULL, &a, &b) == ONYX_FUSE_NONE);
    all_pools(t, in, out, 0, "Exp");
    th_node_free(t);
    free(x);
    free(xf);
}

/* ---- binary and unary maths ---------------------------------------------------------------- */

static float ref_binary(const char *op, float a, float b)
{
    switch (op[0]) {
    case 'A': return a + b;
    case 'S': return a - b;
    case 'M': return a * b;
    case 'D': return a / b;
    default: return powf(a, b);
    }
}

typedef struct shapes {
    int ra;
    int64_t a[3];
    int rb;
    int64_t b[3];
} shapes;

static void test_binary(void)
{
    static const char *const ops[] = {"Add", "Sub", "Mul", "Div", "Pow"};
    static const shapes sh[] = {
        {1, {BIG}, 1, {BIG}},              /* same shape: one row */
        {2, {1001, 301}, 1, {301}},        /* a row repeated down a */
        {1, {301}, 2, {1001, 301}},        /* a row repeated down b */
        {2, {1001, 301}, 2, {1001, 1}},    /* a column */
        {2, {1001, 301}, 0, {0}},          /* a scalar */
        {3, {41, 53, 37}, 3, {41, 1, 37}}, /* broadcast in the middle: three dims */
        {3, {1, 53, 1}, 3, {41, 1, 1301}}, /* both broadcast */
    };
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        for (size_t k = 0; k < sizeof sh / sizeof sh[0]; k++) {
            const shapes *s = &sh[k];
            int64_t na = th_numel(s->ra, s->a);
            int64_t nb = th_numel(s->rb, s->b);
            bool pow_op = ops[o][0] == 'P';
            float *a = data(na, pow_op ? 0.1 : -4, 4, !pow_op);
            float *b = data(nb, pow_op ? -2 : 0.5, 2, false);
            th_node *t = th_node_new(ops[o], 14, 2, 1);
            onyx_tensor in[2] = {th_f32(s->ra, s->a, a), th_f32(s->rb, s->b, b)};
            onyx_tensor out[1];
            onyx_error err;
            CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
            if (out[0].data != NULL) {
                /* the naive reference, element by element, in float */
                int64_t ny = onyx_numel(&out[0]);
                const float *y = out[0].data;
                int64_t wrong = 0;
                for (int64_t i = 0; i < ny; i++) {
                    float want = ref_binary(ops[o], a[th_naive_index(&out[0], &in[0], i)],
                                            b[th_naive_index(&out[0], &in[1], i)]);
                    wrong += memcmp(&want, &y[i], sizeof want) != 0;
                }
                CHECK(wrong == 0);
                char what[64];
                snprintf(what, sizeof what, "%s case %zu", ops[o], k);
                all_pools(t, in, out, 2, what);
            }
            th_node_free(t);
            free(a);
            free(b);
        }
    }
    /* unary maths */
    static const char *const un[] = {"Sqrt", "Neg", "Abs", "Exp", "Log", "Erf"};
    int64_t dims[2] = {3, BIG / 3};
    for (size_t u = 0; u < sizeof un / sizeof un[0]; u++) {
        float *x = data(dims[0] * dims[1], 0.1, 5, false);
        th_node *t = th_node_new(un[u], 13, 1, 1);
        onyx_tensor in[1] = {th_f32(2, dims, x)};
        onyx_tensor out[1];
        onyx_error err;
        CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
        if (out[0].data != NULL)
            all_pools(t, in, out, 1, un[u]);
        th_node_free(t);
        free(x);
    }
}

/* ---- Softmax ------------------------------------------------------------------------------- */

/* y against softmax (or log-softmax) over len for each (outer, inner), in double. */
static bool softmax_near(const float *x, const float *y, int64_t outer, int64_t len, int64_t inner,
                         bool log_out)
{
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *xr = x + o * len * inner + i;
            const float *yr = y + o * len * inner + i;
            double m = -INFINITY;
            for (int64_t k = 0; k < len; k++)
                m = fmax(m, xr[k * inner]);
            double s = 0;
            for (int64_t k = 0; k < len; k++)
                s += exp(xr[k * inner] - m);
            for (int64_t k = 0; k < len; k++) {
                double d = xr[k * inner] - m;
                double want = log_out ? d - log(s) : exp(d) / s;
                if (fabs(yr[k * inner] - want) > 1e-5 * (1 + fabs(want))) {
                    fprintf(stderr, "softmax (%lld, %lld, %lld): %.9g, expected %.9g\n",
                            (long long)o, (long long)k, (long long)i, yr[k * inner], want);
                    return false;
                }
            }
        }
    return true;
}

static void test_softmax(void)
{
    static const struct {
        int rank;
        int64_t dims[3];
        int64_t axis;
        int64_t outer, len, inner;
    } cases[] = {
        {2, {3001, 67}, -1, 3001, 67, 1}, /* rows */
        {3, {41, 67, 31}, 1, 41, 67, 31}, /* strided */
        {2, {3, 70001}, -1, 3, 70001, 1}, /* few long rows */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int lg = 0; lg < 2; lg++) {
            int64_t n = th_numel(cases[c].rank, cases[c].dims);
            float *x = data(n, -6, 6, false);
            th_node *t = th_node_new(lg ? "LogSoftmax" : "Softmax", 13, 1, 1);
            th_attr_int(t, "axis", cases[c].axis);
            onyx_tensor in[1] = {th_f32(cases[c].rank, cases[c].dims, x)};
            onyx_tensor out[1];
            onyx_error err;
            CHECK_OK(th_run(t, ONYX_MODE_INFER, in, out, &err), err.msg);
            if (out[0].data != NULL) {
                CHECK(
                    softmax_near(x, out[0].data, cases[c].outer, cases[c].len, cases[c].inner, lg));
                all_pools(t, in, out, 1, lg ? "LogSoftmax" : "Softmax");
            }
            th_node_free(t);
            free(x);
        }
    }
}

int main(void)
{
    for (int p = 0; p < 3; p++)
        if (onyx_pool_create(p + 1, &pools[p]) != ONYX_OK) {
            fprintf(stderr, "cannot create a pool of %d threads\n", p + 1);
            return 1;
        }
    test_parallel_for();
    test_activations();
    test_binary();
    test_softmax();
    for (int p = 0; p < 3; p++)
        onyx_pool_destroy(pools[p]);
    return check_report();
}
