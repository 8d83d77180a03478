/* grad_check.c — see grad_check.h. */
#include "grad_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IO 16

typedef struct gc {
    onyx_node *n;
    onyx_mode mode;
    int n_in;
    int n_out;
    onyx_tensor in[MAX_IO];  /* working copies of the inputs (data owned here) */
    onyx_tensor out[MAX_IO]; /* outputs (data owned here) */
    float *w[MAX_IO];        /* loss weights per output */
    void *saved;
    void *scratch;
    uint32_t out_mask;
} gc;

static uint64_t next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void forward(gc *g)
{
    onyx_rng rng;
    onyx_rng_seed(&rng, 99);
    onyx_kctx ctx = {.mode = g->mode, .rng = &rng, .saved = g->saved, .scratch = g->scratch};
    g->n->impl->forward(g->n, &ctx, g->in, g->out);
}

static double loss(gc *g)
{
    forward(g);
    double l = 0;
    for (int j = 0; j < g->n_out; j++) {
        if (g->w[j] == NULL)
            continue;
        const float *o = g->out[j].data;
        int64_t m = onyx_numel(&g->out[j]);
        for (int64_t k = 0; k < m; k++)
            l += (double)o[k] * g->w[j][k];
    }
    return l;
}

int th_grad_check(th_node *t, onyx_mode mode, const onyx_tensor *in, uint32_t in_mask,
                  uint32_t out_mask, double eps, double atol, double rtol, th_skip_fn skip)
{
    gc g;
    memset(&g, 0, sizeof g);
    g.n = th_onyx_node(t);
    g.mode = mode;
    g.n_in = g.n->n_in;
    g.n_out = g.n->n_out;
    int bad = -1;
    onyx_tensor din[MAX_IO];
    onyx_tensor dout[MAX_IO];
    memset(din, 0, sizeof din);
    memset(dout, 0, sizeof dout);
    if (g.n_in > MAX_IO || g.n_out > MAX_IO)
        return -1;
    onyx_error err;
    if (th_infer(t, in, g.out, &err) != ONYX_OK) {
        fprintf(stderr, "grad_check: infer failed: %s\n", err.msg);
        return -1;
    }
    if (g.n->impl->backward == NULL) {
        fprintf(stderr, "grad_check: %s has no backward\n", g.n->op_type);
        return -1;
    }
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < g.n_in; i++) {
        g.in[i] = in[i];
        if (in[i].dtype == ONYX_DTYPE_UNDEFINED || in[i].data == NULL)
            continue;
        size_t nb = onyx_nbytes(&in[i]);
        g.in[i].data = malloc(nb + 1);
        memcpy(g.in[i].data, in[i].data, nb);
    }
    for (int j = 0; j < g.n_out; j++) {
        if (g.n->out[j] < 0)
            continue;
        size_t nb = onyx_nbytes(&g.out[j]);
        g.out[j].data = calloc(1, nb + 1);
        if ((out_mask >> j & 1u) && g.out[j].dtype == ONYX_DTYPE_F32) {
            int64_t m = onyx_numel(&g.out[j]);
            g.w[j] = malloc(sizeof(float) * (size_t)(m + 1));
            for (int64_t k = 0; k < m; k++)
                g.w[j][k] = (float)((double)(next(&seed) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        }
    }
    size_t ss = g.n->impl->saved_size ? g.n->impl->saved_size(g.n, g.in, g.out) : 0;
    size_t sc = g.n->impl->scratch_size ? g.n->impl->scratch_size(g.n, g.in, g.out) : 0;
    g.saved = ss ? calloc(1, ss) : NULL;
    g.scratch = sc ? calloc(1, sc) : NULL;

    /* analytic */
    forward(&g);
    for (int j = 0; j < g.n_out; j++) {
        dout[j] = g.out[j];
        dout[j].data = g.w[j];
    }
    for (int i = 0; i < g.n_in; i++) {
        din[i] = g.in[i];
        din[i].data = NULL;
        if ((in_mask >> i & 1u) && g.in[i].dtype == ONYX_DTYPE_F32 && g.in[i].data)
            din[i].data = calloc((size_t)onyx_numel(&g.in[i]) + 1, sizeof(float));
    }
    onyx_rng rng;
    onyx_rng_seed(&rng, 99);
    onyx_kctx ctx = {.mode = g.mode, .rng = &rng, .saved = g.saved, .scratch = g.scratch};
    g.n->impl->backward(g.n, &ctx, g.in, g.out, dout, din);

    /* numeric */
    bad = 0;
    int checked = 0;
    for (int i = 0; i < g.n_in; i++) {
        if (din[i].data == NULL)
            continue;
        float *x = g.in[i].data;
        const float *ga = din[i].data;
        int64_t m = onyx_numel(&g.in[i]);
        for (int64_t k = 0; k < m; k++) {
            float x0 = x[k];
            if (skip && skip(i, k, x0))
                continue;
            x[k] = (float)(x0 + eps);
            double lp = loss(&g);
            x[k] = (float)(x0 - eps);
            double lm = loss(&g);
            x[k] = x0;
            double h = ((double)(float)(x0 + eps) - (double)(float)(x0 - eps));
            double num = (lp - lm) / h;
            checked++;
            if (!(fabs(ga[k] - num) <= atol + rtol * fabs(num))) {
                if (bad < 5)
                    fprintf(stderr,
                            "grad_check %s: d input %d [%lld] analytic %.7g, numeric %.7g\n",
                            g.n->op_type, i, (long long)k, ga[k], num);
                bad++;
            }
        }
    }
    if (checked == 0) {
        fprintf(stderr, "grad_check %s: nothing was checked\n", g.n->op_type);
        bad = -1;
    }
    for (int i = 0; i < MAX_IO; i++) {
        if (i < g.n_in && g.in[i].data != in[i].data)
            free(g.in[i].data);
        free(g.out[i].data);
        free(g.w[i]);
        free(din[i].data);
    }
    free(g.saved);
    free(g.scratch);
    return bad;
}

int th_grad_check_default(th_node *t, onyx_mode mode, const onyx_tensor *in, uint32_t in_mask)
{
    return th_grad_check(t, mode, in, in_mask, 0xffffffffu, 1e-2, 1e-3, 1e-2, NULL);
}

onyx_status th_run_backward(th_node *t, const onyx_tensor *in, const float *dy, float **dx,
                            onyx_error *err)
{
    onyx_node *n = th_onyx_node(t);
    onyx_tensor out[1];
    onyx_status st = th_run(t, ONYX_MODE_TRAIN, in, out, err);
    if (st != ONYX_OK)
        return st;
    size_t sc = n->impl->scratch_size ? n->impl->scratch_size(n, in, out) : 0;
    void *scratch = sc ? malloc(sc) : NULL;
    onyx_tensor dout[1] = {out[0]};
    dout[0].data = (void *)(uintptr_t)dy;
    onyx_tensor din[MAX_IO];
    for (int i = 0; i < n->n_in && i < MAX_IO; i++) {
        din[i] = in[i];
        din[i].data = dx[i];
    }
    onyx_kctx ctx = {.mode = ONYX_MODE_TRAIN, .scratch = scratch};
    n->impl->backward(n, &ctx, in, out, dout, din);
    free(scratch);
    return ONYX_OK;
}
