/*
 * training.c — the optimizer ops of the ONNX training domain "ai.onnx.preview.training", opset
 * 1: Adagrad, Momentum (standard and Nesterov) and Adam. Each node is one update step of k
 * tensors. They are update rules, not functions to differentiate: forward only, no backward.
 * (onyx's own trainer updates parameters in runtime/optim.c; these ops serve models that carry
 * their optimizer step in the graph.)
 *
 * Inputs, in the spec's order: R (learning rate, a scalar float or double), T (update count, a
 * scalar int64), then X_1..X_k (the tensors to optimize), G_1..G_k (their gradients) and the
 * state: H_1..H_k (Adagrad: accumulated squared gradients), V_1..V_k (Momentum: momenta), or
 * V_1..V_k then H_1..H_k (Adam: averaged gradients, averaged squared gradients).
 * Outputs: X_1_new..X_k_new, then the new states in the inputs' order.
 *
 * The spec's pseudo code allows numpy broadcasting between X, G and the state, but gives every
 * output the shape of its input (ONNX's shape inference does too): onyx requires G and the
 * state to have X's shape, the only case where both agree. Outputs may be omitted; the values
 * they would hold go to scratch memory.
 *
 * float32 tensors run through raw loops (the scalar rates, such as Adam's bias correction, are
 * computed in double first); float64 tensors through one generic path in double.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

typedef enum opt_kind { OPT_ADAGRAD, OPT_MOMENTUM, OPT_ADAM, OPT_COUNT } opt_kind;

static const struct opt_def {
    const char *op_type;
    int n_state;                /* state tensors per optimized tensor */
    const char *state_names[2]; /* their names in the spec */
} opt_defs[OPT_COUNT] = {
    [OPT_ADAGRAD] = {"Adagrad", 1, {"H", NULL}},
    [OPT_MOMENTUM] = {"Momentum", 1, {"V", NULL}},
    [OPT_ADAM] = {"Adam", 2, {"V", "H"}},
};

/* The node's parsed attributes. */
typedef struct opt {
    opt_kind kind;
    int k; /* tensors optimized */
    float norm_coefficient;
    float epsilon;               /* Adagrad, Adam */
    float decay_factor;          /* Adagrad */
    float alpha;                 /* Momentum, Adam */
    float beta;                  /* Momentum, Adam */
    float norm_coefficient_post; /* Adam */
    bool nesterov;               /* Momentum: mode "nesterov" */
} opt;

/* Inputs and outputs per optimized tensor: X, G and the state in; X_new and the state out. */
static int n_in_per(const opt *p)
{
    return 2 + opt_defs[p->kind].n_state;
}

static int n_out_per(const opt *p)
{
    return 1 + opt_defs[p->kind].n_state;
}

/* A float attribute the spec marks required (Momentum's). */
static onyx_status required_float(const onyx_node *n, const char *name, float *out, onyx_error *err)
{
    if (onyx_node_attr(n, name) == NULL)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "attribute %s is missing; Momentum requires it", name);
    return onyx_attr_float(n, name, 0.0f, out, err);
}

static onyx_status opt_init(onyx_node *n, onyx_error *err)
{
    opt p;
    memset(&p, 0, sizeof(p));
    p.kind = OPT_COUNT;
    for (int i = 0; i < OPT_COUNT; i++)
        if (strcmp(n->op_type, opt_defs[i].op_type) == 0)
            p.kind = (opt_kind)i;
    if (p.kind == OPT_COUNT)
        return onyx_node_err(err, n, ONYX_ERR_INTERNAL, "not a training-domain optimizer op");
    int per = n_in_per(&p);
    if (n->n_in < 2 + per || (n->n_in - 2) % per != 0)
        return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                             "has %d inputs, expected R, T and %d tensors per optimized tensor "
                             "(2 + %d k inputs)",
                             n->n_in, per, per);
    p.k = (n->n_in - 2) / per;
    for (int i = 0; i < n->n_in; i++)
        if (!onyx_node_has_in(n, i))
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "input %d is empty; every input is required", i);
    /* X_new and the new state of each tensor; any may be omitted */
    onyx_status st = onyx_node_check_arity(n, n->n_in, n->n_in, 1, p.k * n_out_per(&p), err);
    if (st != ONYX_OK)
        return st;
    switch (p.kind) {
    case OPT_ADAGRAD:
        st = onyx_attr_float(n, "norm_coefficient", 0.0f, &p.norm_coefficient, err);
        if (st == ONYX_OK)
            st = onyx_attr_float(n, "epsilon", 1e-6f, &p.epsilon, err);
        if (st == ONYX_OK)
            st = onyx_attr_float(n, "decay_factor", 0.0f, &p.decay_factor, err);
        break;
    case OPT_MOMENTUM: {
        st = required_float(n, "norm_coefficient", &p.norm_coefficient, err);
        if (st == ONYX_OK)
            st = required_float(n, "alpha", &p.alpha, err);
        if (st == ONYX_OK)
            st = required_float(n, "beta", &p.beta, err);
        if (st != ONYX_OK)
            return st;
        const char *mode = NULL;
        if (onyx_node_attr(n, "mode") == NULL)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "attribute mode is missing; Momentum requires it");
        st = onyx_attr_string(n, "mode", "", &mode, err);
        if (st != ONYX_OK)
            return st;
        if (strcmp(mode, "nesterov") == 0)
            p.nesterov = true;
        else if (strcmp(mode, "standard") != 0)
            return onyx_node_err(err, n, ONYX_ERR_INVALID_MODEL,
                                 "attribute mode is \"%s\", expected \"standard\" or \"nesterov\"",
                                 mode);
        break;
    }
    case OPT_ADAM:
        st = onyx_attr_float(n, "norm_coefficient", 0.0f, &p.norm_coefficient, err);
        if (st == ONYX_OK)
            st = onyx_attr_float(n, "norm_coefficient_post", 0.0f, &p.norm_coefficient_post, err);
        if (st == ONYX_OK)
            st = onyx_attr_float(n, "alpha", 0.9f, &p.alpha, err);
        if (st == ONYX_OK)
            st = onyx_attr_float(n, "beta", 0.999f, &p.beta, err);
        if (st == ONYX_OK)
            st = onyx_attr_float(n, "epsilon", 1e-6f, &p.epsilon, err);
        break;
    case OPT_COUNT: break;
    }
    if (st != ONYX_OK)
        return st;
    return onyx_node_set_priv(n, &p, sizeof(p), err);
}

/* The name of input i as the spec writes it ("X_2"), into buf. */
static const char *input_name(const opt *p, int i, char *buf, size_t size)
{
    if (i == 0)
        return "R";
    if (i == 1)
        return "T";
    int group = (i - 2) / p->k; /* 0: X, 1: G, 2...: the state */
    const char *what = group == 0   ? "X"
                       : group == 1 ? "G"
                                    : opt_defs[p->kind].state_names[group - 2];
    snprintf(buf, size, "%s_%d", what, (i - 2) % p->k + 1);
    return buf;
}

/* Input index of output j: X_i_new comes from X_i, a new state from the old one. */
static int output_source(const opt *p, int j)
{
    int group = j / p->k; /* 0: X, 1...: the state */
    int i = j % p->k;
    return 2 + (group == 0 ? 0 : group + 1) * p->k + i;
}

/* The input must hold one element (when its shape is known). */
static onyx_status check_scalar(const onyx_node *n, const char *what, const onyx_tensor *t,
                                onyx_error *err)
{
    if (!onyx_shape_known(t) || onyx_numel(t) == 1)
        return ONYX_OK;
    char s[96];
    return onyx_node_err(err, n, ONYX_ERR_SHAPE, "input %s has shape %s, expected a scalar", what,
                         onyx_shape_str(t, s, sizeof s));
}

static onyx_status opt_infer(const onyx_node *n, const onyx_tensor *in, onyx_tensor *out,
                             onyx_error *err)
{
    const opt *p = n->priv;
    unsigned real = ONYX_DT(ONYX_DTYPE_F32) | ONYX_DT(ONYX_DTYPE_F64);
    onyx_status st = onyx_node_check_dtype(n, "R", in[0].dtype, real, err);
    if (st == ONYX_OK)
        st = check_scalar(n, "R", &in[0], err);
    if (st == ONYX_OK)
        st = onyx_node_check_dtype(n, "T", in[1].dtype, ONYX_DT(ONYX_DTYPE_I64), err);
    if (st == ONYX_OK)
        st = check_scalar(n, "T", &in[1], err);
    if (st != ONYX_OK)
        return st;
    /* every tensor has X_1's dtype (one type variable, T3) and each group X_i's shape */
    char name[32];
    char xname[32];
    for (int i = 2; i < n->n_in; i++) {
        const onyx_tensor *t = &in[i];
        int xi = 2 + (i - 2) % p->k;
        input_name(p, i, name, sizeof name);
        input_name(p, xi, xname, sizeof xname);
        st = onyx_node_check_dtype(n, name, t->dtype, real, err);
        if (st == ONYX_OK)
            st = onyx_node_check_same_dtype(n, name, t->dtype, "X_1", in[2].dtype, err);
        if (st != ONYX_OK)
            return st;
        const onyx_tensor *x = &in[xi];
        if (t->rank < 0 || x->rank < 0)
            continue;
        bool same = t->rank == x->rank;
        for (int d = 0; same && d < t->rank; d++)
            if (t->dims[d] >= 0 && x->dims[d] >= 0 && t->dims[d] != x->dims[d])
                same = false;
        if (!same) {
            char sh[96];
            char sx[96];
            return onyx_node_err(err, n, ONYX_ERR_SHAPE, "input %s has shape %s, expected %s's %s",
                                 name, onyx_shape_str(t, sh, sizeof sh), xname,
                                 onyx_shape_str(x, sx, sizeof sx));
        }
    }
    for (int j = 0; j < n->n_out; j++) {
        if (!onyx_node_has_out(n, j))
            continue;
        int src = output_source(p, j);
        int xi = 2 + j % p->k;
        /* the group's shape: every known dim of X_i, G_i and the state */
        out[j].dtype = in[src].dtype;
        out[j].rank = -1;
        for (int i = xi; i < n->n_in; i += p->k) {
            const onyx_tensor *t = &in[i];
            if (t->rank < 0)
                continue;
            if (out[j].rank < 0) {
                out[j].rank = t->rank;
                memcpy(out[j].dims, t->dims, sizeof(t->dims));
            }
            for (int d = 0; d < t->rank; d++)
                if (out[j].dims[d] < 0)
                    out[j].dims[d] = t->dims[d];
        }
    }
    return ONYX_OK;
}

/* Output j is omitted (or beyond the node's outputs): its values go to scratch. */
static bool out_missing(const onyx_node *n, int j)
{
    return j >= n->n_out || !onyx_node_has_out(n, j);
}

/* Scratch: room for every omitted output (each its own slice), shaped like its source input. */
static size_t opt_scratch_size(const onyx_node *n, const onyx_tensor *in, const onyx_tensor *out)
{
    (void)out;
    const opt *p = n->priv;
    size_t total = 0;
    for (int j = 0; j < p->k * n_out_per(p); j++)
        if (out_missing(n, j) && onyx_shape_known(&in[output_source(p, j)]))
            total += onyx_nbytes(&in[output_source(p, j)]);
    return total;
}

/*
 * Raw loops, one optimized tensor of n elements each: x, g and the state in; x_new and the new
 * state out (n each, distinct buffers). The spec's pseudo code:
 *
 * Adagrad (r = R / (1 + T decay_factor)):
 *   G_reg = norm_coefficient X + G
 *   H_new = H + G_reg^2
 *   X_new = X - r G_reg / (sqrt(H_new) + epsilon)
 */
static void adagrad_f32(int64_t n, float r, float norm, float eps, const float *restrict x,
                        const float *restrict g, const float *restrict h, float *restrict x_new,
                        float *restrict h_new)
{
    for (int64_t i = 0; i < n; i++) {
        float gr = norm * x[i] + g[i];
        float hn = h[i] + gr * gr;
        h_new[i] = hn;
        x_new[i] = x[i] - r * gr / (sqrtf(hn) + eps);
    }
}

/*
 * Momentum (beta_adj = T > 0 ? beta : 1):
 *   G_reg = norm_coefficient X + G
 *   V_new = alpha V + beta_adj G_reg
 *   X_new = X - R V_new                       (standard)
 *   X_new = X - R (G_reg + alpha V_new)       (nesterov)
 */
static void momentum_f32(int64_t n, float r, float norm, float alpha, float beta_adj,
                         const float *restrict x, const float *restrict g, const float *restrict v,
                         float *restrict x_new, float *restrict v_new)
{
    for (int64_t i = 0; i < n; i++) {
        float gr = norm * x[i] + g[i];
        float vn = alpha * v[i] + beta_adj * gr;
        v_new[i] = vn;
        x_new[i] = x[i] - r * vn;
    }
}

static void nesterov_f32(int64_t n, float r, float norm, float alpha, float beta_adj,
                         const float *restrict x, const float *restrict g, const float *restrict v,
                         float *restrict x_new, float *restrict v_new)
{
    for (int64_t i = 0; i < n; i++) {
        float gr = norm * x[i] + g[i];
        float vn = alpha * v[i] + beta_adj * gr;
        v_new[i] = vn;
        x_new[i] = x[i] - r * (gr + alpha * vn);
    }
}

/*
 * Adam (r_adj = T > 0 ? R sqrt(1 - beta^T) / (1 - alpha^T) : R):
 *   G_reg = norm_coefficient X + G
 *   V_new = alpha V + (1 - alpha) G_reg
 *   H_new = beta H + (1 - beta) G_reg^2
 *   X_new = (1 - norm_coefficient_post) (X - r_adj V_new / (sqrt(H_new) + epsilon))
 */
static void adam_f32(int64_t n, float r_adj, const opt *p, const float *restrict x,
                     const float *restrict g, const float *restrict v, const float *restrict h,
                     float *restrict x_new, float *restrict v_new, float *restrict h_new)
{
    const float norm = p->norm_coefficient;
    const float alpha = p->alpha;
    const float beta = p->beta;
    const float eps = p->epsilon;
    const float post = 1.0f - p->norm_coefficient_post;
    for (int64_t i = 0; i < n; i++) {
        float gr = norm * x[i] + g[i];
        float vn = alpha * v[i] + (1.0f - alpha) * gr;
        float hn = beta * h[i] + (1.0f - beta) * (gr * gr);
        v_new[i] = vn;
        h_new[i] = hn;
        x_new[i] = post * (x[i] - r_adj * (vn / (sqrtf(hn) + eps)));
    }
}

/* The same formulas in double for float64 tensors: src[0..] = X, G, state; dst[0..] = X_new,
 * new state (all of dtype dt). r is the adjusted rate (Adagrad's r, Adam's r_adj), c Momentum's
 * beta_adj. */
static void opt_generic(const opt *p, onyx_dtype dt, int64_t n, double r, double c,
                        void *const *src, void *const *dst)
{
    double norm = p->norm_coefficient;
    double alpha = p->alpha;
    double beta = p->beta;
    double eps = p->epsilon;
    for (int64_t i = 0; i < n; i++) {
        double x = onyx_load_f64(dt, src[0], i);
        double gr = norm * x + onyx_load_f64(dt, src[1], i);
        double s0 = onyx_load_f64(dt, src[2], i);
        double xn;
        switch (p->kind) {
        case OPT_ADAGRAD: {
            double hn = s0 + gr * gr;
            onyx_store_f64(dt, dst[1], i, hn);
            xn = x - r * gr / (sqrt(hn) + eps);
            break;
        }
        case OPT_MOMENTUM: {
            double vn = alpha * s0 + c * gr;
            onyx_store_f64(dt, dst[1], i, vn);
            xn = p->nesterov ? x - r * (gr + alpha * vn) : x - r * vn;
            break;
        }
        default: { /* Adam */
            double vn = alpha * s0 + (1.0 - alpha) * gr;
            double hn = beta * onyx_load_f64(dt, src[3], i) + (1.0 - beta) * (gr * gr);
            onyx_store_f64(dt, dst[1], i, vn);
            onyx_store_f64(dt, dst[2], i, hn);
            xn = (1.0 - (double)p->norm_coefficient_post) * (x - r * (vn / (sqrt(hn) + eps)));
            break;
        }
        }
        onyx_store_f64(dt, dst[0], i, xn);
    }
}

/* R: scalar; T: scalar int64; X_i, G_i and the state: X_i's shape; outputs: X_i_new and the new
 * state, X_i's shape. One update step by the pseudo code above each raw loop (ONNX Adagrad-1,
 * Momentum-1, Adam-1 of ai.onnx.preview.training), applied to each X_i independently. */
static void opt_forward(const onyx_node *n, onyx_kctx *ctx, const onyx_tensor *in, onyx_tensor *out)
{
    const opt *p = n->priv;
    double r = onyx_load_f64(in[0].dtype, in[0].data, 0);
    int64_t t = onyx_load_i64(ONYX_DTYPE_I64, in[1].data, 0);
    int n_state = opt_defs[p->kind].n_state;
    double c = 0.0; /* Momentum's beta_adj */
    if (p->kind == OPT_ADAGRAD) {
        r = r / (1.0 + (double)t * p->decay_factor);
    } else if (p->kind == OPT_MOMENTUM) {
        c = t > 0 ? p->beta : 1.0;
    } else if (t > 0) { /* Adam's bias correction */
        r = r * sqrt(1.0 - pow(p->beta, (double)t)) / (1.0 - pow(p->alpha, (double)t));
    }
    unsigned char *spare = ctx->scratch; /* slices for omitted outputs */
    for (int i = 0; i < p->k; i++) {
        const onyx_tensor *x = &in[2 + i];
        int64_t numel = onyx_numel(x);
        size_t nbytes = onyx_nbytes(x);
        void *src[4];
        void *dst[3];
        for (int s = 0; s < 2 + n_state; s++)
            src[s] = in[2 + s * p->k + i].data;
        for (int s = 0; s < 1 + n_state; s++) {
            int j = s * p->k + i;
            if (out_missing(n, j)) {
                dst[s] = spare;
                if (nbytes > 0)
                    spare += nbytes;
            } else {
                dst[s] = out[j].data;
            }
        }
        if (numel == 0)
            continue;
        if (x->dtype != ONYX_DTYPE_F32) {
            opt_generic(p, x->dtype, numel, r, c, src, dst);
            continue;
        }
        switch (p->kind) {
        case OPT_ADAGRAD:
            adagrad_f32(numel, (float)r, p->norm_coefficient, p->epsilon, src[0], src[1], src[2],
                        dst[0], dst[1]);
            break;
        case OPT_MOMENTUM:
            (p->nesterov ? nesterov_f32 : momentum_f32)(numel, (float)r, p->norm_coefficient,
                                                        p->alpha, (float)c, src[0], src[1], src[2],
                                                        dst[0], dst[1]);
            break;
        default:
            adam_f32(numel, (float)r, p, src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2]);
            break;
        }
    }
}

/* Adagrad, Momentum, Adam: told apart by node->op_type in init. No backward: an update rule. */
const onyx_op_impl onyx_impl_optimizer = {
    .init = opt_init,
    .infer = opt_infer,
    .forward = opt_forward,
    .backward = NULL,
    .fini = NULL,
    .flags = 0,
    .grad_inputs = 0,
    .scratch_size = opt_scratch_size,
};
