/*
 * loss.c — loss functions, forward and backward.
 *
 * ONNX (opsets 12 and 13, which differ only in the types they allow):
 *  - SoftmaxCrossEntropyLoss(scores (N, C, d...), labels (N, d...), [weights (C)])
 *      -> output, [log_prob (N, C, d...)]
 *  - NegativeLogLikelihoodLoss(input (N, C, d...), target (N, d...), [weight (C)]) -> loss
 *    exactly as the spec and its reference (onnx/backend/test/case/node/softmaxcrossentropy.py,
 *    negativeloglikelihoodloss.py) define them. Per element (n, d) with class c = label[n, d]:
 *      l[n, d] = -w[c] * logp[n, c, d]   (logp = log_softmax(scores, axis 1), or input for NLL)
 *    where w = weights (1 when absent), and w[c] = 0, l = 0 where label == ignore_index (when that
 *    attribute is given). reduction "none" outputs l (shape of labels); "sum" sum(l); "mean"
 *    (the default) sum(l) / sum(w[label]) — the weighted mean, whose denominator leaves out
 *    ignored elements; without weights or ignore_index it is N * d1 * ... * dk.
 *    Labels outside [0, C) other than ignore_index are refused by infer at run time.
 *
 * onyx's own domain "ai.onyx", opset 1, for the trainer (onyx train --loss mse|l1|bce):
 *  - MeanSquaredError(prediction, target)  l = mean (p - t)^2        (torch.nn.MSELoss)
 *  - L1Loss(prediction, target)            l = mean |p - t|          (torch.nn.L1Loss)
 *  - BCEWithLogitsLoss(logits, target)     l = mean max(x, 0) - x t + log1p(exp(-|x|))
 *                                          (torch.nn.BCEWithLogitsLoss; targets in [0, 1])
 *    prediction and target have the same shape; the output is a float scalar (rank 0);
 *    attribute reduction "mean" (default, over all elements) or "sum".
 *
 * Everything computes in float32 (sums in double): other float types are refused as
 * unsupported. Backward accumulates into the gradient of the scores / input (SCE, NLL: input 0
 * only, labels and class weights get none) or of both prediction and target (ai.onyx losses).
 * SoftmaxCrossEntropyLoss's backward recomputes the log-softmax statistics (max and log-sum-exp
 * per column) from the scores, which are still intact, instead of keeping them from forward:
 * one more pass over the scores, and no saved memory.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

enum { RED_NONE, RED_SUM, RED_MEAN };

/* Attribute reduction (default "mean"): "none" only where allow_none. */
static onyx_status reduction_attr(const onyx_node *n, bool allow_none, int *out, onyx_error *err)
{
    const char *s;
    onyx_status st = onyx_attr_string(n, "reduction", "mean", &s, err);
    if (st != ONYX_OK)
        return st;
    if (strcmp(s, "mean") == 0)
        *out = RED_MEAN;
    else if (strcmp(s, "sum") == 0)
        *out = RED_SUM;
    else if (allow_none && strcmp(s, "none") == 0)
        *out = RED_NONE;
    else
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "attribute reduction is \"%s\", expected %s", s,
                             allow_none ? "\"none\", \"sum\" or \"mean\"" : "\"sum\" or \"mean\"");
    return ONYX_OK;
}

/* Input `what` (index i) has a dtype the spec allows (mask) and onyx computes: float32. */
static onyx_status check_f32(const onyx_node *n, int i, const char *what, onyx_dtype dt,
                             unsigned mask, onyx_error *err)
{
    char name[48];
    snprintf(name, sizeof name, "%d (%s)", i, what);
    onyx_status st = onyx_node_check_dtype(n, name, dt, mask, err);
    if (st != ONYX_OK)
        return st;
    if (dt != ONYX_DTYPE_UNDEFINED && dt != ONYX_DTYPE_F32)
        return onyx_node_err(err, n, ONYX_ERR_UNSUPPORTED,
                             "input %d (%s) has dtype %s; onyx computes losses in float32 only", i,
                             what, onyx_dtype_name(dt));
    return ONYX_OK;
}

/* ==== SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss ================================= */

typedef struct class_priv {
    bool softmax; /* SoftmaxCrossEntropyLoss (else NegativeLogLikelihoodLoss) */
    int reduction;
    bool has_ii; /* attribute ignore_index given */
    int64_t ii;
} class_priv;

/* The spec's names of inputs 0, 1, 2. */
static const char *const sce_names[3] = {"scores", "labels", "weights"};
static const char *const nll_names[3] = {"input", "target", "weight"};

static onyx_status class_init(onyx_node *n, onyx_error *err)
{
    class_priv p = {0};
    p.softmax = strcmp(n->op_type, "SoftmaxCrossEntropyLoss") == 0;
    if (!p.softmax && strcmp(n->op_type, "NegativeLogLikelihoodLoss") != 0)
        return onyx_node_err(err, n, ONYX_ERR_INTERNAL, "class loss impl given op %s", n->op_type);
    onyx_status st = onyx_node_check_arity(n, 2, 3, 1, p.softmax ? 2 : 1, err);
    if (st != ONYX_OK)
        return st;
    st = reduction_attr(n, true, &p.reduction, err);
    if (st != ONYX_OK)
        return st;
    p.has_ii = onyx_node_attr(n, "ignore_index") != NULL;
    st = onyx_attr_int(n, "ignore_index", 0, &p.ii, err);
    if (st != ONYX_OK)
        return st;
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

/* Label i of labels (int32 or int64). */
static int64_t label_at(const void *lab, bool lab64, int64_t i)
{
    return lab64 ? ((const int64_t *)lab)[i] : ((const int32_t *)lab)[i];
}

/*
 * scores: (N, C, d1..dk) float32, labels: (N, d1..dk) int32/int64, each in [0, C) or
 * ignore_index, weights: (C) float32 or omitted -> output: labels' shape (reduction "none") or
 * a scalar; log_prob (SCE only, optional): scores' shape.
 */
static onyx_status class_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                               onyx_error *err)
{
    const class_priv *p = n->priv;
    const char *const *names = p->softmax ? sce_names : nll_names;
    const onyx_tensor *x = &in[0];
    const onyx_tensor *lab = &in[1];
    const onyx_tensor *w = onyx_node_has_in(n, 2) ? &in[2] : NULL;
    char s0[96];
    char s1[96];
    char s2[96];
    unsigned floats = ONYX_DT_FLOAT | (p->softmax && n->opset >= 13 ? ONYX_DT_BF16 : 0u);
    char what[3][32];
    for (int i = 0; i < 3; i++)
        snprintf(what[i], sizeof what[i], "%d (%s)", i, names[i]);
    onyx_status st = check_f32(n, 0, names[0], x->dtype, floats, err);
    if (st == ONYX_OK)
        st = onyx_node_check_dtype(n, what[1], lab->dtype,
                                   ONYX_DT(ONYX_DTYPE_I32) | ONYX_DT(ONYX_DTYPE_I64), err);
    if (st == ONYX_OK && w != NULL)
        st = onyx_node_check_same_dtype(n, what[2], w->dtype, what[0], x->dtype, err);
    if (st != ONYX_OK)
        return st;

    /* Ranks: scores >= 2, labels = scores - 1, weights 1. */
    if (x->rank >= 0 && x->rank < 2)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input 0 (%s) has shape %s, expected (N, C) or (N, C, d1, ...)",
                             names[0], onyx_shape_str(x, s0, sizeof s0));
    if (x->rank >= 0 && lab->rank >= 0 && lab->rank != x->rank - 1)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input 1 (%s) has shape %s, expected rank %d for input 0 (%s) of "
                             "shape %s",
                             names[1], onyx_shape_str(lab, s1, sizeof s1), x->rank - 1, names[0],
                             onyx_shape_str(x, s0, sizeof s0));
    if (x->rank < 0 && lab->rank == 0)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input 1 (%s) is a scalar, expected (N) or (N, d1, ...)", names[1]);
    /* The loss shape (N, d1..dk): from labels, completed by scores where labels' dims are
     * unknown. */
    int lrank = lab->rank >= 0 ? lab->rank : x->rank >= 0 ? x->rank - 1 : -1;
    int64_t ldims[ONYX_MAX_RANK];
    for (int i = 0; i < lrank; i++) {
        int64_t a = lab->rank >= 0 ? lab->dims[i] : -1;
        int64_t b = x->rank >= 0 ? x->dims[i == 0 ? 0 : i + 1] : -1;
        if (a >= 0 && b >= 0 && a != b) {
            onyx_tensor want = {.rank = lrank};
            for (int j = 0; j < lrank; j++)
                want.dims[j] = x->dims[j == 0 ? 0 : j + 1];
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input 1 (%s) has shape %s, expected %s: input 0 (%s) has "
                                 "shape %s",
                                 names[1], onyx_shape_str(lab, s1, sizeof s1),
                                 onyx_shape_str(&want, s2, sizeof s2), names[0],
                                 onyx_shape_str(x, s0, sizeof s0));
        }
        ldims[i] = a >= 0 ? a : b;
    }
    int64_t C = x->rank >= 2 ? x->dims[1] : -1;
    if (w != NULL && w->rank >= 0) {
        if (w->rank != 1 || (C >= 0 && w->dims[0] >= 0 && w->dims[0] != C))
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input 2 (%s) has shape %s, expected [C] = [%lld] (input 0 "
                                 "(%s) has shape %s)",
                                 names[2], onyx_shape_str(w, s1, sizeof s1), (long long)C, names[0],
                                 onyx_shape_str(x, s0, sizeof s0));
    }

    out[0].dtype = x->dtype;
    if (p->reduction == RED_NONE) {
        out[0].rank = lrank;
        for (int i = 0; i < lrank; i++)
            out[0].dims[i] = ldims[i];
    } else {
        out[0].rank = 0;
    }
    if (n->n_out > 1 && onyx_node_has_out(n, 1)) {
        out[1].dtype = x->dtype;
        out[1].rank = x->rank;
        for (int i = 0; i < x->rank; i++)
            out[1].dims[i] = x->dims[i];
    }

    /* Label values, when known (always at run time). */
    if (lab->data == NULL || !onyx_shape_known(lab) || C < 0)
        return ONYX_OK;
    bool lab64 = lab->dtype == ONYX_DTYPE_I64;
    int64_t count = onyx_numel(lab);
    for (int64_t i = 0; i < count; i++) {
        int64_t c = label_at(lab->data, lab64, i);
        if (p->has_ii && c == p->ii)
            continue;
        if (c < 0 || c >= C) {
            char ii[64] = "";
            if (p->has_ii)
                snprintf(ii, sizeof ii, " or ignore_index %lld", (long long)p->ii);
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input 1 (%s) has label %lld at index %lld, expected a class in "
                                 "[0, C) = [0, %lld)%s",
                                 names[1], (long long)c, (long long)i, (long long)C, ii);
        }
    }
    return ONYX_OK;
}

/* The (N, C, D) view of input 0, D = d1 * ... * dk (1 for 2-D scores). */
static void class_dims(const onyx_tensor *x, int64_t *N, int64_t *C, int64_t *D)
{
    *N = x->dims[0];
    *C = x->dims[1];
    *D = 1;
    for (int i = 2; i < x->rank; i++)
        *D *= x->dims[i];
}

/* Columns (positions along D) handled at once, their statistics on the stack. */
enum { LOSS_CHUNK = 256 };

/*
 * Log-softmax statistics of w columns of one sample: xb (C, D) row-major, columns 0..w-1:
 * mx[i] = max_c xb[c, i], ls[i] = log sum_c exp(xb[c, i] - mx[i]) (sum in double), so that
 * logp[c, i] = (xb[c, i] - mx[i]) - ls[i], as ops/softmax.c computes LogSoftmax.
 */
static void column_stats(const float *restrict xb, int64_t C, int64_t D, int64_t w,
                         float *restrict mx, float *restrict ls)
{
    double se[LOSS_CHUNK];
    for (int64_t i = 0; i < w; i++) {
        mx[i] = -INFINITY;
        se[i] = 0.0;
    }
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < w; i++)
            mx[i] = xb[c * D + i] > mx[i] ? xb[c * D + i] : mx[i];
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < w; i++)
            se[i] += expf(xb[c * D + i] - mx[i]);
    for (int64_t i = 0; i < w; i++)
        ls[i] = (float)log(se[i]);
}

/*
 * Forward raw loop.
 *   x: (N, C, D) scores (softmax) or log-probabilities; lab: (N, D) int32/int64 (lab64), each in
 *   [0, C) or ii (when has_ii); wt: (C) class weights or NULL (all 1).
 *   loss: (N, D) per-element losses, or NULL (reduced); logp: (N, C, D) log-probabilities or
 *   NULL (softmax only). *lsum = sum of the losses, *wsum = sum of the elements' weights (the
 *   weighted-mean denominator; ignored elements weigh 0), both accumulated in double.
 * l[n, d] = -wt[c] * logp[n, c, d], c = lab[n, d]; logp = log_softmax(x) or x.
 */
static void class_forward_f32(const float *restrict x, const void *lab, bool lab64,
                              const float *restrict wt, int64_t N, int64_t C, int64_t D,
                              bool softmax, bool has_ii, int64_t ii, float *restrict loss,
                              float *restrict logp, double *lsum, double *wsum)
{
    float mx[LOSS_CHUNK];
    float ls[LOSS_CHUNK];
    double sl = 0.0;
    double sw = 0.0;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t d0 = 0; d0 < D; d0 += LOSS_CHUNK) {
            int64_t w = D - d0 < LOSS_CHUNK ? D - d0 : LOSS_CHUNK;
            const float *xb = x + n * C * D + d0; /* element (c, i) at xb[c * D + i] */
            if (softmax) {
                column_stats(xb, C, D, w, mx, ls);
                if (logp != NULL) {
                    float *lb = logp + n * C * D + d0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t i = 0; i < w; i++)
                            lb[c * D + i] = (xb[c * D + i] - mx[i]) - ls[i];
                }
            }
            for (int64_t i = 0; i < w; i++) {
                int64_t c = label_at(lab, lab64, n * D + d0 + i);
                float l = 0.0f;
                float wc = 0.0f;
                if (!(has_ii && c == ii)) {
                    wc = wt != NULL ? wt[c] : 1.0f;
                    float lp = softmax ? (xb[c * D + i] - mx[i]) - ls[i] : xb[c * D + i];
                    l = -wc * lp;
                }
                if (loss != NULL)
                    loss[n * D + d0 + i] = l;
                sl += l;
                sw += wc;
            }
        }
    }
    *lsum = sl;
    *wsum = sw;
}

static void class_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                          onyx_tensor *out)
{
    (void)ctx;
    const class_priv *p = n->priv;
    int64_t N;
    int64_t C;
    int64_t D;
    class_dims(&in[0], &N, &C, &D);
    const float *wt = onyx_node_has_in(n, 2) && in[2].data != NULL ? in[2].data : NULL;
    float *logp = n->n_out > 1 && onyx_node_has_out(n, 1) ? out[1].data : NULL;
    float *y = out[0].data;
    double lsum;
    double wsum;
    class_forward_f32(in[0].data, in[1].data, in[1].dtype == ONYX_DTYPE_I64, wt, N, C, D,
                      p->softmax, p->has_ii, p->ii, p->reduction == RED_NONE ? y : NULL, logp,
                      &lsum, &wsum);
    if (p->reduction == RED_SUM)
        y[0] = (float)lsum;
    else if (p->reduction == RED_MEAN)
        y[0] = (float)(lsum / wsum); /* 0 / 0 = NaN when every element is ignored */
}

/*
 * Backward raw loop: the gradient w.r.t. x of the forward above, accumulated into dx (N, C, D).
 *   dl: the gradient of each l[n, d]: dl[n * D + d] when dl_step is 1, or dl[0] for all (a
 *   reduced output, dl already divided by the mean's denominator); NULL when none flows.
 *   glogp: the gradient of the log_prob output (N, C, D), or NULL (softmax only).
 * For c = lab[n, d] not ignored:
 *   NLL:  l = -wt[c] x[n, c, d]                 -> dx[n, c, d] += -wt[c] dl
 *   SCE:  l = -wt[c] (x_c - logsumexp_j x_j)    -> dx[n, j, d] += wt[c] dl (p_j - [j == c])
 * (term 1), with p = softmax(x) over C; and for SCE, from logp_j = x_j - logsumexp x:
 *   dx[n, j, d] += glogp_j - p_j sum_k glogp_k   (term 2).
 */
static void class_backward_f32(const float *restrict x, const void *lab, bool lab64,
                               const float *restrict wt, int64_t N, int64_t C, int64_t D,
                               bool softmax, bool has_ii, int64_t ii, const float *dl,
                               int64_t dl_step, const float *restrict glogp, float *restrict dx)
{
    float mx[LOSS_CHUNK];
    float ls[LOSS_CHUNK];
    float coef[LOSS_CHUNK]; /* wt[c] * dl per column, 0 when ignored */
    int64_t cls[LOSS_CHUNK];
    double gs[LOSS_CHUNK]; /* sum_k glogp_k per column */
    for (int64_t n = 0; n < N; n++) {
        for (int64_t d0 = 0; d0 < D; d0 += LOSS_CHUNK) {
            int64_t w = D - d0 < LOSS_CHUNK ? D - d0 : LOSS_CHUNK;
            const float *xb = x + n * C * D + d0;
            float *db = dx + n * C * D + d0;
            for (int64_t i = 0; i < w; i++) {
                int64_t k = n * D + d0 + i;
                cls[i] = label_at(lab, lab64, k);
                bool ignored = has_ii && cls[i] == ii;
                float g = dl != NULL ? dl[k * dl_step] : 0.0f;
                coef[i] = ignored ? 0.0f : (wt != NULL ? wt[cls[i]] : 1.0f) * g;
                if (ignored)
                    cls[i] = -1; /* matches no class below */
            }
            if (!softmax) {
                for (int64_t i = 0; i < w; i++)
                    if (cls[i] >= 0)
                        db[cls[i] * D + i] -= coef[i];
                continue;
            }
            column_stats(xb, C, D, w, mx, ls);
            const float *gb = glogp != NULL ? glogp + n * C * D + d0 : NULL;
            if (gb != NULL) {
                for (int64_t i = 0; i < w; i++)
                    gs[i] = 0.0;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t i = 0; i < w; i++)
                        gs[i] += gb[c * D + i];
            }
            for (int64_t c = 0; c < C; c++) {
                for (int64_t i = 0; i < w; i++) {
                    float pj = expf((xb[c * D + i] - mx[i]) - ls[i]);
                    /* term 1 */
                    float g = coef[i] * (pj - (c == cls[i] ? 1.0f : 0.0f));
                    /* term 2 */
                    if (gb != NULL)
                        g += gb[c * D + i] - pj * (float)gs[i];
                    db[c * D + i] += g;
                }
            }
        }
    }
}

static void class_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                           const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)ctx;
    (void)out;
    const class_priv *p = n->priv;
    if (din[0].data == NULL)
        return;
    int64_t N;
    int64_t C;
    int64_t D;
    class_dims(&in[0], &N, &C, &D);
    const float *wt = onyx_node_has_in(n, 2) && in[2].data != NULL ? in[2].data : NULL;
    const float *glogp =
        n->n_out > 1 && onyx_node_has_out(n, 1) && dout[1].data != NULL ? dout[1].data : NULL;
    const void *lab = in[1].data;
    bool lab64 = in[1].dtype == ONYX_DTYPE_I64;
    const float *dl = dout[0].data;
    int64_t dl_step = 1;
    float scaled;
    if (dl != NULL && p->reduction != RED_NONE) {
        dl_step = 0;
        scaled = dl[0];
        if (p->reduction == RED_MEAN) {
            /* The denominator again: sum of the elements' weights (cheap: one pass of labels). */
            double wsum = 0.0;
            for (int64_t k = 0; k < N * D; k++) {
                int64_t c = label_at(lab, lab64, k);
                if (!(p->has_ii && c == p->ii))
                    wsum += wt != NULL ? wt[c] : 1.0f;
            }
            scaled = (float)(scaled / wsum);
        }
        dl = &scaled;
    }
    if (dl == NULL && glogp == NULL)
        return;
    class_backward_f32(in[0].data, lab, lab64, wt, N, C, D, p->softmax, p->has_ii, p->ii, dl,
                       dl_step, glogp, din[0].data);
}

const onyx_op_impl onyx_impl_class_loss = {.init = class_init,
                                           .infer = class_infer,
                                           .forward = class_forward,
                                           .backward = class_backward,
                                           .grad_inputs = 1u << 0};

/* ==== MeanSquaredError, L1Loss, BCEWithLogitsLoss (domain ai.onyx) ========================= */

enum { PW_MSE, PW_L1, PW_BCE };

typedef struct pw_priv {
    int kind;
    bool mean; /* reduction "mean" (else "sum") */
} pw_priv;

static onyx_status pw_init(onyx_node *n, onyx_error *err)
{
    pw_priv p = {0};
    if (strcmp(n->op_type, "MeanSquaredError") == 0)
        p.kind = PW_MSE;
    else if (strcmp(n->op_type, "L1Loss") == 0)
        p.kind = PW_L1;
    else if (strcmp(n->op_type, "BCEWithLogitsLoss") == 0)
        p.kind = PW_BCE;
    else
        return onyx_node_err(err, n, ONYX_ERR_INTERNAL, "pointwise loss impl given op %s",
                             n->op_type);
    onyx_status st = onyx_node_check_arity(n, 2, 2, 1, 1, err);
    if (st != ONYX_OK)
        return st;
    int red;
    st = reduction_attr(n, false, &red, err);
    if (st != ONYX_OK)
        return st;
    p.mean = red == RED_MEAN;
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

/* prediction: any shape, float32; target: the same shape and dtype (BCE: every value in
 * [0, 1]) -> loss: a scalar. */
static onyx_status pw_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                            onyx_error *err)
{
    const pw_priv *p = n->priv;
    const onyx_tensor *x = &in[0];
    const onyx_tensor *t = &in[1];
    char s0[96];
    char s1[96];
    onyx_status st = check_f32(n, 0, "prediction", x->dtype, ONYX_DT_FLOAT | ONYX_DT_BF16, err);
    if (st == ONYX_OK)
        st = onyx_node_check_same_dtype(n, "1 (target)", t->dtype, "0 (prediction)", x->dtype, err);
    if (st != ONYX_OK)
        return st;
    bool fits = x->rank < 0 || t->rank < 0 || x->rank == t->rank;
    for (int i = 0; fits && x->rank >= 0 && i < x->rank && i < t->rank; i++)
        fits = x->dims[i] < 0 || t->dims[i] < 0 || x->dims[i] == t->dims[i];
    if (!fits)
        return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                             "input 1 (target) has shape %s, expected the shape of input 0 "
                             "(prediction), %s",
                             onyx_shape_str(t, s1, sizeof s1), onyx_shape_str(x, s0, sizeof s0));
    out[0].dtype = x->dtype;
    out[0].rank = 0;
    if (p->kind != PW_BCE || t->data == NULL || t->dtype != ONYX_DTYPE_F32 || !onyx_shape_known(t))
        return ONYX_OK;
    const float *tv = t->data;
    int64_t count = onyx_numel(t);
    for (int64_t i = 0; i < count; i++)
        if (!(tv[i] >= 0.0f && tv[i] <= 1.0f))
            return onyx_node_err(err, n, ONYX_ERR_SHAPE,
                                 "input 1 (target) has %g at index %lld, expected a value in "
                                 "[0, 1]",
                                 (double)tv[i], (long long)i);
    return ONYX_OK;
}

/* Raw loops: the sum over count elements of the per-element loss, in double.
 *   MSE: (x - t)^2;  L1: |x - t|;  BCE: max(x, 0) - x t + log1p(exp(-|x|)). */
static double mse_sum_f32(const float *restrict x, const float *restrict t, int64_t count)
{
    double s = 0.0;
    for (int64_t i = 0; i < count; i++) {
        double d = (double)x[i] - t[i];
        s += d * d;
    }
    return s;
}

static double l1_sum_f32(const float *restrict x, const float *restrict t, int64_t count)
{
    double s = 0.0;
    for (int64_t i = 0; i < count; i++)
        s += fabs((double)x[i] - t[i]);
    return s;
}

static double bce_sum_f32(const float *restrict x, const float *restrict t, int64_t count)
{
    double s = 0.0;
    for (int64_t i = 0; i < count; i++) {
        double v = x[i];
        s += (v > 0.0 ? v : 0.0) - v * t[i] + log1p(exp(-fabs(v)));
    }
    return s;
}

static void pw_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in, onyx_tensor *out)
{
    (void)ctx;
    const pw_priv *p = n->priv;
    int64_t count = onyx_numel(&in[0]);
    const float *x = in[0].data;
    const float *t = in[1].data;
    double s = p->kind == PW_MSE  ? mse_sum_f32(x, t, count)
               : p->kind == PW_L1 ? l1_sum_f32(x, t, count)
                                  : bce_sum_f32(x, t, count);
    /* the mean of no elements is 0 / 0 = NaN, as torch gives */
    ((float *)out[0].data)[0] = (float)(p->mean ? s / (double)count : s);
}

/*
 * Backward raw loops: g is dL/dloss times 1/count for the mean. dx (NULL: not wanted) and dt
 * (likewise) accumulate the derivatives of the per-element losses:
 *   MSE: d/dx = 2 (x - t),          d/dt = -2 (x - t)
 *   L1:  d/dx = sign(x - t) (0 at 0), d/dt = -sign(x - t)
 *   BCE: d/dx = sigmoid(x) - t,      d/dt = -x
 */
static void mse_backward_f32(const float *restrict x, const float *restrict t, float g,
                             float *restrict dx, float *restrict dt, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        float d = 2.0f * g * (x[i] - t[i]);
        if (dx != NULL)
            dx[i] += d;
        if (dt != NULL)
            dt[i] -= d;
    }
}

static void l1_backward_f32(const float *restrict x, const float *restrict t, float g,
                            float *restrict dx, float *restrict dt, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        float d = x[i] > t[i] ? g : x[i] < t[i] ? -g : 0.0f;
        if (dx != NULL)
            dx[i] += d;
        if (dt != NULL)
            dt[i] -= d;
    }
}

static void bce_backward_f32(const float *restrict x, const float *restrict t, float g,
                             float *restrict dx, float *restrict dt, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        float v = x[i];
        /* sigmoid without overflow: exp of a non-positive number only */
        float e = expf(-fabsf(v));
        float sig = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        if (dx != NULL)
            dx[i] += g * (sig - t[i]);
        if (dt != NULL)
            dt[i] -= g * v;
    }
}

static void pw_backward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in,
                        const onyx_tensor *out, const onyx_tensor *dout, onyx_tensor *din)
{
    (void)ctx;
    (void)out;
    const pw_priv *p = n->priv;
    float *dx = din[0].data;
    float *dt = din[1].data;
    int64_t count = onyx_numel(&in[0]);
    if (dout[0].data == NULL || (dx == NULL && dt == NULL) || count == 0)
        return;
    float g = ((const float *)dout[0].data)[0];
    if (p->mean)
        g = (float)(g / (double)count);
    if (p->kind == PW_MSE)
        mse_backward_f32(in[0].data, in[1].data, g, dx, dt, count);
    else if (p->kind == PW_L1)
        l1_backward_f32(in[0].data, in[1].data, g, dx, dt, count);
    else
        bce_backward_f32(in[0].data, in[1].data, g, dx, dt, count);
}

const onyx_op_impl onyx_impl_pointwise_loss = {.init = pw_init,
                                               .infer = pw_infer,
                                               .forward = pw_forward,
                                               .backward = pw_backward,
                                               .grad_inputs = (1u << 0) | (1u << 1)};
