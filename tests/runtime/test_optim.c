/* test_optim.c — optimizer updates and schedules against values computed here by hand in double
 * precision from PyTorch's documented formulas (torch.optim.SGD/Adam/AdamW, StepLR,
 * CosineAnnealingLR), step by step. */
#include "check.h"
#include "internal.h"
#include "pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static onyx_optim_config config(onyx_optimizer kind)
{
    onyx_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.lr = 0.1f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.gamma = 0.1f;
    return c;
}

static const float grads[3][3] = {{0.5f, -1.0f, 2.0f}, {0.25f, 0.5f, -1.5f}, {-0.75f, 1.0f, 0.1f}};

static void test_sgd(bool nesterov, float momentum, float wd)
{
    onyx_optim_config c = config(ONYX_OPTIMIZER_SGD);
    c.momentum = momentum;
    c.nesterov = nesterov;
    c.weight_decay = wd;
    float p[3] = {1.0f, -2.0f, 0.5f};
    float m[3] = {0};
    float v[3] = {0};
    double rp[3] = {1.0, -2.0, 0.5};
    double rb[3] = {0};
    for (int t = 1; t <= 3; t++) {
        onyx_optim_update(NULL, &c, c.lr, t, p, grads[t - 1], m, v, 3);
        for (int i = 0; i < 3; i++) {
            double g = grads[t - 1][i] + (double)wd * rp[i];
            if (momentum != 0) {
                rb[i] = t == 1 ? g : momentum * rb[i] + g;
                g = nesterov ? g + momentum * rb[i] : rb[i];
            }
            rp[i] -= 0.1 * g;
            CHECK_NEAR_TOL(p[i], rp[i], 1e-6, 1e-5);
        }
    }
}

static void test_adam(onyx_optimizer kind, float wd)
{
    onyx_optim_config c = config(kind);
    c.weight_decay = wd;
    float p[3] = {1.0f, -2.0f, 0.5f};
    float m[3] = {0};
    float v[3] = {0};
    double rp[3] = {1.0, -2.0, 0.5};
    double rm[3] = {0};
    double rv[3] = {0};
    for (int t = 1; t <= 3; t++) {
        onyx_optim_update(NULL, &c, c.lr, t, p, grads[t - 1], m, v, 3);
        for (int i = 0; i < 3; i++) {
            double g = grads[t - 1][i];
            if (kind == ONYX_OPTIMIZER_ADAMW)
                rp[i] *= 1.0 - 0.1 * wd;
            else
                g += wd * rp[i];
            rm[i] = 0.9 * rm[i] + 0.1 * g;
            rv[i] = 0.999 * rv[i] + 0.001 * g * g;
            double mhat = rm[i] / (1 - pow(0.9, t));
            double vhat = rv[i] / (1 - pow(0.999, t));
            rp[i] -= 0.1 * mhat / (sqrt(vhat) + 1e-8);
            CHECK_NEAR_TOL(p[i], rp[i], 1e-5, 1e-4);
        }
    }
    /* First Adam step moves every parameter by lr * sign(g) (m/sqrt(v) = g/|g|). */
    float q[1] = {0.0f};
    float qm[1] = {0};
    float qv[1] = {0};
    float g1[1] = {-3.0f};
    onyx_optim_config plain = config(ONYX_OPTIMIZER_ADAM);
    onyx_optim_update(NULL, &plain, 0.1f, 1, q, g1, qm, qv, 1);
    CHECK_NEAR(q[0], 0.1);
}

static void test_schedules(void)
{
    onyx_optim_config c = config(ONYX_OPTIMIZER_SGD);
    c.lr = 1.0f;
    CHECK_NEAR(onyx_schedule_lr(&c, 0), 1.0);
    CHECK_NEAR(onyx_schedule_lr(&c, 1000), 1.0);
    c.schedule = ONYX_SCHEDULE_STEP;
    c.step_size = 10;
    c.gamma = 0.5f;
    CHECK_NEAR(onyx_schedule_lr(&c, 9), 1.0);
    CHECK_NEAR(onyx_schedule_lr(&c, 10), 0.5);
    CHECK_NEAR(onyx_schedule_lr(&c, 25), 0.25);
    c.schedule = ONYX_SCHEDULE_COSINE;
    c.total_steps = 100;
    CHECK_NEAR(onyx_schedule_lr(&c, 0), 1.0);
    CHECK_NEAR(onyx_schedule_lr(&c, 50), 0.5);
    CHECK_NEAR_TOL(onyx_schedule_lr(&c, 100), 0.0, 1e-7, 0);
    CHECK_NEAR_TOL(onyx_schedule_lr(&c, 200), 0.0, 1e-7, 0);
    CHECK_NEAR(onyx_schedule_lr(&c, 25), (1 + cos(3.14159265358979 / 4)) / 2);
    c.schedule = ONYX_SCHEDULE_CONSTANT;
    c.warmup = 4;
    CHECK_NEAR(onyx_schedule_lr(&c, 0), 0.25);
    CHECK_NEAR(onyx_schedule_lr(&c, 3), 1.0);
    CHECK_NEAR(onyx_schedule_lr(&c, 4), 1.0);
}

static void test_norm(void)
{
    float g[4] = {3, 4, 0, 0};
    CHECK_NEAR(onyx_grad_norm(NULL, g, 4), 5.0);
    CHECK_NEAR(onyx_grad_norm(NULL, g, 0), 0.0);
}

/* Buffers of several chunks (runtime/optim.c runs them on the pool in chunks of 32768 floats):
 * the norm and every optimizer give the same bits on 1 and 3 threads, the norm matches a long
 * double reference (to 1e-6: squares are summed 16 at a time in float), and plain SGD matches
 * p - lr * g element by element. */
static void test_pooled(void)
{
    enum { N = 3 * 32768 + 1237 };
    float *g = malloc(sizeof(float) * N);
    float *p[2], *m[2], *v[2];
    for (int k = 0; k < 2; k++) {
        p[k] = malloc(sizeof(float) * N);
        m[k] = calloc(N, sizeof(float));
        v[k] = calloc(N, sizeof(float));
    }
    long double ref = 0.0L;
    unsigned s = 12345u;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        g[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * (i % 7 == 0 ? 100.0f : 1.0f);
        p[0][i] = p[1][i] = (float)i * 1e-4f;
        ref += (long double)g[i] * g[i];
    }
    onyx_pool *pool = NULL;
    CHECK(onyx_pool_create(3, &pool) == ONYX_OK);
    double n1 = onyx_grad_norm(NULL, g, N);
    double n3 = onyx_grad_norm(pool, g, N);
    CHECK(memcmp(&n1, &n3, sizeof n1) == 0);
    CHECK_NEAR_TOL(n1, (double)sqrtl(ref), 0, 1e-6); /* float lanes of 16 squares */
    onyx_optim_config c = config(ONYX_OPTIMIZER_SGD);
    onyx_optim_update(pool, &c, 0.1f, 1, p[1], g, m[1], v[1], N);
    int exact = 0;
    for (int i = 0; i < N; i++)
        exact += p[1][i] == p[0][i] - 0.1f * (g[i] + 0.0f * p[0][i]);
    CHECK(exact == N);
    memcpy(p[1], p[0], sizeof(float) * N);
    const onyx_optimizer kinds[] = {ONYX_OPTIMIZER_SGD, ONYX_OPTIMIZER_ADAM, ONYX_OPTIMIZER_ADAMW};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        c = config(kinds[k]);
        c.momentum = 0.9f;
        c.weight_decay = 0.01f;
        for (int step = 1; step <= 3; step++) {
            onyx_optim_update(NULL, &c, 0.1f, step, p[0], g, m[0], v[0], N);
            onyx_optim_update(pool, &c, 0.1f, step, p[1], g, m[1], v[1], N);
        }
        CHECK(memcmp(p[0], p[1], sizeof(float) * N) == 0);
        CHECK(memcmp(m[0], m[1], sizeof(float) * N) == 0);
        CHECK(memcmp(v[0], v[1], sizeof(float) * N) == 0);
    }
    onyx_pool_destroy(pool);
    for (int k = 0; k < 2; k++) {
        free(p[k]);
        free(m[k]);
        free(v[k]);
    }
    free(g);
}

int main(void)
{
    test_sgd(false, 0.0f, 0.0f);
    test_sgd(false, 0.9f, 0.0f);
    test_sgd(true, 0.9f, 0.0f);
    test_sgd(false, 0.5f, 0.01f);
    test_adam(ONYX_OPTIMIZER_ADAM, 0.0f);
    test_adam(ONYX_OPTIMIZER_ADAM, 0.1f);
    test_adam(ONYX_OPTIMIZER_ADAMW, 0.1f);
    test_schedules();
    test_norm();
    test_pooled();
    return check_report();
}
