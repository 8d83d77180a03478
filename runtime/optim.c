/*
 * optim.c — the optimizer step, learning-rate schedules and gradient clipping.
 *
 * Parameters, gradients and optimizer state each live in one flat float buffer with the same
 * layout (runtime/train.c), so an update is one loop over n floats. The formulas are PyTorch's
 * (torch.optim.SGD, Adam, AdamW, lr_scheduler.StepLR/CosineAnnealingLR) so that results carry over.
 */
#include "internal.h"
#include "pool.h"

#include <math.h>

/* SGD (torch.optim.SGD, dampening 0):
 *   g = grad + wd * p
 *   buf = g (first step) or momentum * buf + g
 *   g = g + momentum * buf (Nesterov) or buf
 *   p -= lr * g
 * Without momentum (the common fine-tuning case) one plain loop the compiler vectorises. */
static void sgd(const onyx_optim_config *c, float lr, int64_t step, float *restrict p,
                const float *restrict grad, float *restrict buf, size_t n)
{
    const float wd = c->weight_decay;
    const float mu = c->momentum;
    if (mu == 0.0f) {
        for (size_t i = 0; i < n; i++)
            p[i] -= lr * (grad[i] + wd * p[i]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] + wd * p[i];
        buf[i] = step == 1 ? g : mu * buf[i] + g;
        g = c->nesterov ? g + mu * buf[i] : buf[i];
        p[i] -= lr * g;
    }
}

/* Adam / AdamW (torch.optim.Adam, AdamW; amsgrad off):
 *   AdamW: p *= 1 - lr * wd          Adam: g = grad + wd * p
 *   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)                    */
static void adam(const onyx_optim_config *c, float lr, int64_t step, float *restrict p,
                 const float *restrict grad, float *restrict m, float *restrict v, size_t n)
{
    const float b1 = c->beta1;
    const float b2 = c->beta2;
    const double bc1 = 1.0 - pow((double)b1, (double)step);
    const double bc2 = 1.0 - pow((double)b2, (double)step);
    const float step_size = (float)(lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float wd = c->weight_decay;
    const float eps = c->eps;
    /* One loop per form, without a branch inside, so that both vectorise (with sqrtf, which
     * needs -fno-math-errno: CMakeLists.txt). */
    if (c->kind == ONYX_OPTIMIZER_ADAMW) {
        const float decay = 1.0f - lr * wd;
        for (size_t i = 0; i < n; i++) {
            float g = grad[i];
            p[i] *= decay;
            m[i] = b1 * m[i] + (1.0f - b1) * g;
            v[i] = b2 * v[i] + (1.0f - b2) * g * g;
            float denom = sqrtf(v[i]) / bc2_sqrt + eps;
            p[i] -= step_size * m[i] / denom;
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] + wd * p[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] -= step_size * m[i] / denom;
    }
}

/*
 * The passes over the flat buffers run on the trainer's pool (onyx_parallel_for) in units of
 * CHUNK floats (64-byte aligned, as the buffers). Each element's arithmetic does not depend on
 * the unit it is in, and the norm adds per-unit partial sums in unit order, so results are the
 * same for any thread count (exact resume on another machine).
 */
#define CHUNK ((size_t)1 << 15)

typedef struct pass_job {
    const onyx_optim_config *c;
    float lr;
    int64_t step;
    float *p;
    const float *grad;
    float *m, *v;
    size_t n;
    size_t chunk;    /* floats per unit */
    double *partial; /* the norm: one sum of squares per unit */
} pass_job;

/* Unit u's first float (*lo) and length. */
static size_t unit_len(const pass_job *j, int64_t u, size_t *lo)
{
    *lo = (size_t)u * j->chunk;
    return j->n - *lo < j->chunk ? j->n - *lo : j->chunk;
}

static void update_range(void *ctx, int64_t u0, int64_t u1)
{
    const pass_job *j = ctx;
    for (int64_t u = u0; u < u1; u++) {
        size_t lo;
        size_t len = unit_len(j, u, &lo);
        if (j->c->kind == ONYX_OPTIMIZER_SGD)
            sgd(j->c, j->lr, j->step, j->p + lo, j->grad + lo, j->m + lo, len);
        else
            adam(j->c, j->lr, j->step, j->p + lo, j->grad + lo, j->m + lo, j->v + lo, len);
    }
}

void onyx_optim_update(onyx_pool *pool, const onyx_optim_config *c, float lr, int64_t step,
                       float *p, const float *grad, float *m, float *v, size_t n)
{
    pass_job j = {.c = c, .lr = lr, .step = step, .p = p, .grad = grad, .m = m, .v = v, .n = n,
                  .chunk = CHUNK};
    onyx_parallel_for(pool, (int64_t)((n + CHUNK - 1) / CHUNK), (int64_t)CHUNK, update_range, &j);
}

/* Sum of squares in a fixed order: 16 float lanes over blocks of 256 floats (each lane adds 16
 * squares, rounding ~1e-6), each block's lanes added into 16 double sums, which are added up
 * at the end. Vectorises in float, where a double accumulation converts every element. */
static double sum_squares(const float *restrict g, size_t n)
{
    double acc[16] = {0};
    size_t i = 0;
    for (; i + 256 <= n; i += 256) {
        float lane[16] = {0};
        for (int b = 0; b < 256; b += 16)
            for (int k = 0; k < 16; k++)
                lane[k] += g[i + b + k] * g[i + b + k];
        for (int k = 0; k < 16; k++)
            acc[k] += lane[k];
    }
    for (int k = 0; i < n; i++, k = (k + 1) % 16)
        acc[k] += (double)g[i] * g[i];
    double s = 0.0;
    for (int k = 0; k < 16; k++)
        s += acc[k];
    return s;
}

static void norm_range(void *ctx, int64_t u0, int64_t u1)
{
    const pass_job *j = ctx;
    for (int64_t u = u0; u < u1; u++) {
        size_t lo;
        size_t len = unit_len(j, u, &lo);
        j->partial[u] = sum_squares(j->grad + lo, len);
    }
}

/* Units of the norm: at most this many (their partial sums live on the stack). */
enum { NORM_MAX_UNITS = 1024 };

double onyx_grad_norm(onyx_pool *pool, const float *g, size_t n)
{
    double partial[NORM_MAX_UNITS];
    /* CHUNK floats per unit, more for huge buffers: the units depend on n only */
    size_t chunk = CHUNK;
    while ((n + chunk - 1) / chunk > NORM_MAX_UNITS)
        chunk *= 2;
    pass_job j = {.grad = g, .n = n, .chunk = chunk, .partial = partial};
    int64_t units = (int64_t)((n + chunk - 1) / chunk);
    onyx_parallel_for(pool, units, (int64_t)chunk, norm_range, &j);
    double sum = 0.0;
    for (int64_t u = 0; u < units; u++)
        sum += partial[u];
    return sqrt(sum);
}

float onyx_schedule_lr(const onyx_optim_config *c, int64_t step)
{
    double lr = c->lr;
    switch (c->schedule) {
    case ONYX_SCHEDULE_STEP:
        if (c->step_size > 0)
            lr *= pow((double)c->gamma, (double)(step / c->step_size));
        break;
    case ONYX_SCHEDULE_COSINE:
        if (c->total_steps > 0) {
            int64_t t = step < c->total_steps ? step : c->total_steps;
            lr *= 0.5 * (1.0 + cos(3.14159265358979323846 * (double)t / (double)c->total_steps));
        }
        break;
    case ONYX_SCHEDULE_CONSTANT: break;
    }
    if (c->warmup > 0 && step < c->warmup)
        lr *= (double)(step + 1) / (double)c->warmup;
    return (float)lr;
}

