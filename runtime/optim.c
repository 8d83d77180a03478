/*
 * optim.c — the optimizer step, learning-rate schedules and gradient clipping.
 *
 * Parameters, gradients and optimizer state each live in one flat float buffer with the same
 * layout (runtime/train.c), so an update is one loop over n floats. The formulas are PyTorch's
 * (torch.optim.SGD, Adam, AdamW, lr_scheduler.StepLR/CosineAnnealingLR) so that results carry over.
 */
#include "internal.h"

#include <math.h>

/* SGD (torch.optim.SGD, dampening 0):
 *   g = grad + wd * p
 *   buf = g (first step) or momentum * buf + g
 *   g = g + momentum * buf (Nesterov) or buf
 *   p -= lr * g                                                                  */
static void sgd(const onyx_optim_config *c, float lr, int64_t step, float *restrict p,
                const float *restrict grad, float *restrict buf, size_t n)
{
    const float wd = c->weight_decay;
    const float mu = c->momentum;
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] + wd * p[i];
        if (mu != 0.0f) {
            buf[i] = step == 1 ? g : mu * buf[i] + g;
            g = c->nesterov ? g + mu * buf[i] : buf[i];
        }
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
    const bool decoupled = c->kind == ONYX_OPTIMIZER_ADAMW;
    const float wd = c->weight_decay;
    const float decay = 1.0f - lr * wd;
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        if (decoupled)
            p[i] *= decay;
        else
            g += wd * p[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + c->eps;
        p[i] -= step_size * m[i] / denom;
    }
}

void onyx_optim_update(const onyx_optim_config *c, float lr, int64_t step, float *p,
                       const float *grad, float *m, float *v, size_t n)
{
    if (c->kind == ONYX_OPTIMIZER_SGD)
        sgd(c, lr, step, p, grad, m, n);
    else
        adam(c, lr, step, p, grad, m, v, n);
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

double onyx_grad_norm(const float *g, size_t n)
{
    /* double accumulation in a fixed order: the same value whatever the thread count */
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)g[i] * g[i];
    return sqrt(sum);
}
