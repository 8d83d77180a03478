/*
 * plan.c — where a run's activations live: one arena, values placed by lifetime.
 *
 * Every node output the session computes (an "activation") gets a block of the session's arena.
 * Two values may share bytes when their lifetimes do not overlap: a value lives from the node that
 * produces it to the last node that reads it, both included (so a node's outputs never share with
 * its inputs, which the ops' contract requires), or to the end of the run when the caller may
 * still read it: graph outputs, values asked for by name, and every value when the run keeps them
 * all (training, whose backward pass reads every activation; internal callers of
 * onyx_session_forward; models with a graph-level op such as Gradient). Inputs, initializers,
 * constants folded at load and outputs bound zero-copy live in the caller's or the model's memory
 * and never enter the arena.
 *
 * A plan is made for one set of shapes and reused while they repeat: its key is what each value
 * is in the run (fed, in the arena, bound, neither), which values live to the end, and the shapes
 * of the fed inputs; every arena value's byte size is checked again as the run infers it (shapes
 * may depend on data), and one that no longer fits gets a buffer of its own for that run and a new
 * plan at its end. A few plans are cached, so alternating shapes (batch 1, then 64, then 1...)
 * allocate nothing either once each was seen; the arena only grows.
 *
 * A plan is made before the run when a pre-pass of shape inference can size every value: small
 * integer results (the Shape -> Gather -> Concat -> Reshape chains of exported models) are
 * computed in the pre-pass so that the shapes they decide are known. When even that cannot size
 * everything, the run goes ahead with one buffer per value (the session's own, as before
 * planning) and its actual shapes make the plan for next time.
 *
 * A Gemm or MatMul fused with the nodes after it (onyx_plan_fused: a bias Add, an activation)
 * writes the last one's output directly: that output lives from the Gemm's node (not the last
 * one's), so it never shares bytes with the Gemm's inputs, and the outputs before it in the
 * chain, never written, get no block of their own (they are given the last one's), so a fused
 * MLP needs two layers' worth of memory, not three or four.
 *
 * Placement is greedy by size with best fit (TensorFlow Lite's GreedyBySize): blocks are taken
 * from largest to smallest, and each goes into the smallest gap, among the blocks already placed
 * whose lifetimes overlap its own, that holds it, or above them all.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Plans kept per session (least recently used replaced). */
#define PLAN_SLOTS 4
/* Arena blocks are multiples of this (and so start at multiples of it). */
#define PLAN_ALIGN 64
/* The pre-pass computes integer node outputs of at most this many elements. */
#define PREFOLD_MAX_ELEMS 1024

/* What a value is in a run (plan keys, one byte per value). */
enum {
    CLS_NONE = 0, /* not computed in the run: initializer, folded constant, omitted, unused input */
    CLS_FED = 1,  /* fed by the caller (graph input, or an initializer fed as one) */
    CLS_ARENA = 2, /* computed by a node into the arena */
    CLS_BOUND = 3, /* computed by a node into a caller buffer (onyx_session_bind_output) */
    CLS_KEEP = 4   /* flag: lives to the end of the run */
};

typedef struct plan_slot {
    bool valid;
    uint64_t used;    /* the planner's tick when last used */
    uint8_t *key;     /* per value: CLS_* | CLS_KEEP */
    onyx_tensor *fed; /* shapes of the CLS_FED values, in value order (data NULL) */
    size_t *size;     /* per value: bytes of its arena block (0: not in the arena) */
    size_t *offset;   /* per value: where the block starts */
    size_t arena;     /* bytes the plan needs */
    size_t naive;     /* sum of size[]: one buffer per value */
} plan_slot;

struct onyx_planner {
    int n_values;
    int n_feedable;      /* values that may be fed: graph inputs */
    bool keep_all_model; /* a graph-level op reads any value: all live to the end */
    uint64_t tick;
    plan_slot slot[PLAN_SLOTS];
    /* The current run. */
    plan_slot *cur; /* its plan, or NULL: one buffer per value, plan at the end */
    bool misfit;    /* a value did not fit its block: plan again at the end */
    uint8_t *key;   /* per value */
    bool *want;     /* per value: asked for by name */
    /* Work arrays for planning, allocated at the first plan. */
    onyx_plan_block *blocks;
    int *work;
    int *last;
    onyx_tensor *probe; /* pre-pass shapes */
    void **temp;        /* pre-pass results */
    /* The arena. */
    void *arena;
    size_t arena_cap;
    void *arena_old; /* replaced while the run's values still lived in it; freed at next begin */
    size_t arena_old_cap;
    /* What onyx_session_memory reports: the plan of the last run's shapes. */
    size_t report_arena;
    size_t report_naive;
};

static size_t round_block(size_t nbytes)
{
    /* At least one block, so that every value's data pointer is distinct and non-NULL. */
    if (nbytes == 0)
        return PLAN_ALIGN;
    if (nbytes > SIZE_MAX - (PLAN_ALIGN - 1))
        return 0;
    return (nbytes + PLAN_ALIGN - 1) & ~(size_t)(PLAN_ALIGN - 1);
}

/* ---- placement ------------------------------------------------------------------------------ */

static int cmp_blocks(const void *pa, const void *pb)
{
    const onyx_plan_block *a = pa;
    const onyx_plan_block *b = pb;
    if (a->size != b->size)
        return a->size > b->size ? -1 : 1;
    if (a->first != b->first)
        return a->first < b->first ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

size_t onyx_plan_place(onyx_plan_block *b, int n, int *work)
{
    qsort(b, (size_t)n, sizeof(*b), cmp_blocks);
    /* work[0..n_placed): indices of placed blocks in increasing offset order */
    int n_placed = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t best = SIZE_MAX;
        size_t best_gap = SIZE_MAX;
        size_t end = 0; /* top of the overlapping blocks seen so far */
        for (int k = 0; k < n_placed; k++) {
            const onyx_plan_block *o = &b[work[k]];
            if (o->last < b[i].first || o->first > b[i].last)
                continue; /* lifetimes apart: may share */
            if (o->offset >= end && o->offset - end >= b[i].size && o->offset - end < best_gap) {
                best = end;
                best_gap = o->offset - end;
            }
            if (o->offset + o->size > end)
                end = o->offset + o->size;
        }
        b[i].offset = best != SIZE_MAX ? best : end;
        if (b[i].offset + b[i].size > total)
            total = b[i].offset + b[i].size;
        int k = n_placed++;
        while (k > 0 && b[work[k - 1]].offset > b[i].offset) {
            work[k] = work[k - 1];
            k--;
        }
        work[k] = i;
    }
    return total;
}

/* ---- the planner ---------------------------------------------------------------------------- */

onyx_status onyx_planner_create(const onyx_model *m, onyx_planner **out)
{
    *out = NULL;
    onyx_planner *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return ONYX_ERR_NOMEM;
    p->n_values = m->n_values;
    for (int v = 0; v < m->n_values; v++)
        p->n_feedable += m->values[v].is_graph_input;
    for (int i = 0; i < m->n_nodes; i++)
        p->keep_all_model = p->keep_all_model || (m->nodes[i].impl->flags & ONYX_OPF_GRAPH);
    p->key = onyx_calloc((size_t)m->n_values + 1, 1);
    p->want = onyx_calloc((size_t)m->n_values + 1, sizeof(bool));
    if (p->key == NULL || p->want == NULL) {
        onyx_planner_destroy(p);
        return ONYX_ERR_NOMEM;
    }
    *out = p;
    return ONYX_OK;
}

static void slot_free(plan_slot *sl)
{
    free(sl->key);
    free(sl->fed);
    free(sl->size);
    free(sl->offset);
    memset(sl, 0, sizeof(*sl));
}

void onyx_planner_destroy(onyx_planner *p)
{
    if (p == NULL)
        return;
    for (int k = 0; k < PLAN_SLOTS; k++)
        slot_free(&p->slot[k]);
    free(p->key);
    free(p->want);
    free(p->blocks);
    free(p->work);
    free(p->last);
    free(p->probe);
    free(p->temp);
    free(p->arena);
    free(p->arena_old);
    free(p);
}

void onyx_plan_want(onyx_planner *p, int v, bool want)
{
    p->want[v] = want;
}

bool onyx_plan_fused(const onyx_session *s, int i, onyx_dtype dt)
{
    if (s->fusion == NULL || s->fusion[i].n_fused == 0 || dt != ONYX_DTYPE_F32)
        return false;
    /* every output of the chain but the last lives only until the next node reads it */
    for (int j = 0; j < s->fusion[i].n_fused; j++)
        if (s->plan->key[s->m->nodes[i + j].out[0]] != CLS_ARENA)
            return false;
    return true;
}

void onyx_plan_memory_stats(const onyx_planner *p, size_t *arena, size_t *naive)
{
    *arena = p->report_arena;
    *naive = p->report_naive;
}

/* The work arrays, at the first plan. */
static bool work_arrays(onyx_planner *p)
{
    if (p->blocks != NULL)
        return true;
    size_t nv = (size_t)p->n_values + 1;
    p->blocks = onyx_calloc(nv, sizeof(onyx_plan_block));
    p->work = onyx_calloc(nv, sizeof(int));
    p->last = onyx_calloc(nv, sizeof(int));
    p->probe = onyx_calloc(nv, sizeof(onyx_tensor));
    p->temp = onyx_calloc(nv, sizeof(void *));
    if (p->blocks && p->work && p->last && p->probe && p->temp)
        return true;
    free(p->blocks);
    free(p->work);
    free(p->last);
    free(p->probe);
    free(p->temp);
    p->blocks = NULL;
    p->work = p->last = NULL;
    p->probe = NULL;
    p->temp = NULL;
    return false;
}

/* This run's key: what each value is and whether it lives to the end. */
static void make_key(onyx_planner *p, const onyx_session *s, bool keep_all)
{
    const onyx_model *m = s->m;
    keep_all = keep_all || s->training || p->keep_all_model;
    for (int v = 0; v < m->n_values; v++) {
        const onyx_value *val = &m->values[v];
        uint8_t k = CLS_NONE;
        if (s->fed[v]) {
            k = CLS_FED;
        } else if (val->kind == ONYX_VALUE_NODE && val->producer >= 0 &&
                   !s->run_const[val->producer]) {
            if (s->use_out_bind && s->out_bound[v]) {
                k = CLS_BOUND;
            } else {
                k = CLS_ARENA;
                if (keep_all || val->is_graph_output || p->want[v])
                    k |= CLS_KEEP;
            }
        }
        p->key[v] = k;
    }
}

static bool same_shape(const onyx_tensor *a, const onyx_tensor *b)
{
    return a->dtype == b->dtype && onyx_shape_equal(a, b);
}

/* The cached plan for this run's key and fed shapes, or NULL. */
static plan_slot *find_slot(onyx_planner *p, const onyx_session *s)
{
    for (int k = 0; k < PLAN_SLOTS; k++) {
        plan_slot *sl = &p->slot[k];
        if (!sl->valid || memcmp(sl->key, p->key, (size_t)p->n_values) != 0)
            continue;
        bool same = true;
        int j = 0;
        for (int v = 0; v < p->n_values && same; v++)
            if ((p->key[v] & 3) == CLS_FED)
                same = same_shape(&sl->fed[j++], &s->vals[v]);
        if (same)
            return sl;
    }
    return NULL;
}

/* The slot to plan into: an empty one, else the least recently used. */
static plan_slot *victim(onyx_planner *p)
{
    plan_slot *best = &p->slot[0];
    for (int k = 0; k < PLAN_SLOTS; k++) {
        if (!p->slot[k].valid)
            return &p->slot[k];
        if (p->slot[k].used < best->used)
            best = &p->slot[k];
    }
    return best;
}

/* Longest chain of nodes a node computes after itself (struct onyx_fusion: Add, activation). */
#define MAX_FUSED 2

/* The node that computes node pn in this run as the head of a fused chain (onyx_plan_fused):
 * pn itself when it is one (fused or not, it runs), or a node just before it; -1 for none. */
static int chain_head(const onyx_session *s, const onyx_tensor *shape, int pn)
{
    for (int h = pn; h >= 0 && h >= pn - MAX_FUSED; h--) {
        int k = s->fusion[h].n_fused;
        if (k > 0 && h + k >= pn && onyx_plan_fused(s, h, shape[s->m->nodes[h].out[0]].dtype))
            return h;
    }
    return -1;
}

/* When node pn's output is never written in this run (a fused chain computes it and writes only
 * the chain's last output, which is in the arena): the node whose output's block it shares
 * (same shape); else -1. */
static int fused_into(const onyx_planner *p, const onyx_session *s, const onyx_tensor *shape,
                      int pn)
{
    int h = pn >= 0 ? chain_head(s, shape, pn) : -1;
    if (h < 0)
        return -1;
    int last = h + s->fusion[h].n_fused;
    if (pn == last || (p->key[s->m->nodes[last].out[0]] & 3) != CLS_ARENA)
        return -1;
    return last;
}

/* Plans the run of key p->key into sl, with shape[v] the shape of every arena value. */
static bool build(onyx_planner *p, const onyx_session *s, plan_slot *sl, const onyx_tensor *shape)
{
    const onyx_model *m = s->m;
    size_t nv = (size_t)p->n_values + 1;
    sl->valid = false;
    if (sl->key == NULL) {
        sl->key = onyx_calloc(nv, 1);
        sl->fed = onyx_calloc((size_t)p->n_feedable + 1, sizeof(onyx_tensor));
        sl->size = onyx_calloc(nv, sizeof(size_t));
        sl->offset = onyx_calloc(nv, sizeof(size_t));
        if (!sl->key || !sl->fed || !sl->size || !sl->offset) {
            slot_free(sl);
            return false;
        }
    }
    memcpy(sl->key, p->key, (size_t)p->n_values);
    memset(sl->size, 0, sizeof(size_t) * (size_t)p->n_values);
    memset(sl->offset, 0, sizeof(size_t) * (size_t)p->n_values);
    /* Lifetimes: from the producer to the last reader, or to the end (n_nodes). */
    for (int v = 0; v < m->n_values; v++)
        p->last[v] = (p->key[v] & 3) == CLS_ARENA ? m->values[v].producer : -1;
    for (int i = 0; i < m->n_nodes; i++) {
        const onyx_node *n = &m->nodes[i];
        if (s->run_const[i])
            continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && (p->key[n->in[j]] & 3) == CLS_ARENA && p->last[n->in[j]] < i)
                p->last[n->in[j]] = i;
    }
    int n_blocks = 0;
    int n_fed = 0;
    size_t naive = 0;
    for (int v = 0; v < m->n_values; v++) {
        if ((p->key[v] & 3) == CLS_FED) {
            if (n_fed >= p->n_feedable)
                return false;
            sl->fed[n_fed] = s->vals[v];
            sl->fed[n_fed++].data = NULL;
            continue;
        }
        if ((p->key[v] & 3) != CLS_ARENA)
            continue;
        size_t size = round_block(onyx_nbytes(&shape[v]));
        if (size == 0 || naive > SIZE_MAX - size)
            return false;
        naive += size;
        int pn = m->values[v].producer;
        if (fused_into(p, s, shape, pn) >= 0)
            continue; /* shares the chain's last block, below */
        onyx_plan_block *b = &p->blocks[n_blocks++];
        b->size = size;
        b->first = pn;
        /* An output computed by the head of a fused chain (onyx_plan_fused) is written by that
         * node: alive from there, so never sharing bytes with that node's inputs. */
        int h = pn >= 0 ? chain_head(s, shape, pn) : -1;
        if (h >= 0)
            b->first = h;
        b->last = (p->key[v] & CLS_KEEP) ? m->n_nodes : p->last[v];
        b->offset = 0;
        b->id = v;
    }
    sl->arena = onyx_plan_place(p->blocks, n_blocks, p->work);
    for (int k = 0; k < n_blocks; k++) {
        sl->size[p->blocks[k].id] = p->blocks[k].size;
        sl->offset[p->blocks[k].id] = p->blocks[k].offset;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        int last = fused_into(p, s, shape, i);
        if (last >= 0) { /* the same shape as the chain's last output */
            int y = m->nodes[i].out[0];
            int r = m->nodes[last].out[0];
            sl->size[y] = sl->size[r];
            sl->offset[y] = sl->offset[r];
        }
    }
    sl->naive = naive;
    sl->valid = true;
    sl->used = ++p->tick;
    return true;
}

/* Grows the arena to hold plan sl. live: the current run's values are in the arena, so the old
 * one is kept until the next run begins. */
static bool fit_arena(onyx_planner *p, const plan_slot *sl, bool live)
{
    if (sl->arena <= p->arena_cap && p->arena != NULL)
        return true;
    size_t want = sl->arena ? sl->arena : PLAN_ALIGN;
    void *a = aligned_alloc(PLAN_ALIGN, want);
    if (a == NULL)
        return false;
    if (live) {
        free(p->arena_old);
        p->arena_old = p->arena;
        p->arena_old_cap = p->arena_cap;
    } else {
        free(p->arena);
    }
    p->arena = a;
    p->arena_cap = want;
    return true;
}

/* Logs a new plan: a summary (INFO) and each value's block (DEBUG), in node order. */
static void log_plan(const onyx_planner *p, const onyx_session *s, const plan_slot *sl)
{
    const onyx_model *m = s->m;
    if (s->log == NULL)
        return;
    onyx_logf(s->log, s->log_user, ONYX_LOG_INFO,
              "session: new memory plan: %zu bytes of activations (one buffer per value: %zu), "
              "arena %zu bytes",
              sl->arena, sl->naive, p->arena_cap);
    for (int i = 0; i < m->n_nodes; i++) {
        const onyx_node *n = &m->nodes[i];
        for (int j = 0; j < n->n_out; j++) {
            int v = n->out[j];
            if (v >= 0 && sl->size[v] > 0)
                onyx_logf(s->log, s->log_user, ONYX_LOG_DEBUG,
                          "session: %zu bytes for \"%s\" (node \"%s\", %s) at offset %zu of the "
                          "activation arena",
                          sl->size[v], m->values[v].name, n->name, n->op_type, sl->offset[v]);
        }
    }
}

/* Shape inference of the whole run ahead of it, into p->probe: true when every arena value's
 * size is known. Small integer results are computed (into p->temp buffers, freed here) so that
 * shapes decided by data (a Reshape's target from a Shape chain) are known too. Failures of infer
 * are left to the run, which reports them. */
static bool prepass(onyx_planner *p, onyx_session *s)
{
    const onyx_model *m = s->m;
    unsigned no_fold = ONYX_OPF_RANDOM | ONYX_OPF_MODE | ONYX_OPF_GRAPH | ONYX_OPF_CUSTOM;
    int n_temp = 0;
    bool ok = true;
    for (int v = 0; v < m->n_values; v++) {
        p->probe[v] = s->vals[v];
        if ((p->key[v] & 3) == CLS_ARENA || (p->key[v] & 3) == CLS_BOUND)
            p->probe[v].data = NULL; /* not computed yet (vals[v] holds an earlier run's) */
    }
    for (int i = 0; i < m->n_nodes && ok; i++) {
        const onyx_node *n = &m->nodes[i];
        if (s->run_const[i])
            continue;
        bool all_data = !(n->impl->flags & no_fold) && (n->impl->scratch_size == NULL);
        for (int j = 0; j < n->n_in; j++) {
            if (n->in[j] < 0) {
                memset(&s->in[j], 0, sizeof s->in[j]);
                s->in[j].rank = -1;
                continue;
            }
            s->in[j] = p->probe[n->in[j]];
            all_data = all_data &&
                       (s->in[j].data != NULL ||
                        ((n->impl->flags & ONYX_OPF_SHAPE_ONLY) && onyx_shape_known(&s->in[j])));
        }
        for (int j = 0; j < n->n_out; j++) {
            memset(&s->out[j], 0, sizeof s->out[j]);
            s->out[j].rank = -1;
        }
        onyx_error err;
        if (n->impl->infer(n, s->in, s->out, &err) != ONYX_OK) {
            ok = false;
            break;
        }
        bool fold = all_data;
        for (int j = 0; j < n->n_out; j++) {
            int v = n->out[j];
            if (v < 0)
                continue;
            onyx_tensor *o = &s->out[j];
            int64_t numel;
            if (!onyx_shape_known(o) || o->dtype == ONYX_DTYPE_UNDEFINED ||
                !onyx_shape_numel(o->dims, o->rank, onyx_dtype_size(o->dtype), &numel)) {
                ok = false;
                break;
            }
            fold = fold && onyx_dtype_is_int(o->dtype) && numel <= PREFOLD_MAX_ELEMS;
            o->data = NULL;
        }
        if (!ok)
            break;
        for (int j = 0; j < n->n_out && fold; j++) {
            if (n->out[j] < 0)
                continue;
            s->out[j].data = aligned_alloc(PLAN_ALIGN, round_block(onyx_nbytes(&s->out[j])));
            if (s->out[j].data == NULL) {
                fold = false;
                break;
            }
            p->temp[n_temp++] = s->out[j].data;
        }
        if (fold) {
            onyx_kctx ctx = {.mode = s->mode, .rng = &s->rng, .pool = s->pool};
            n->impl->forward(n, &ctx, s->in, s->out);
        } else {
            for (int j = 0; j < n->n_out; j++)
                s->out[j].data = NULL;
        }
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0)
                p->probe[n->out[j]] = s->out[j];
    }
    for (int k = 0; k < n_temp; k++)
        free(p->temp[k]);
    return ok;
}

onyx_status onyx_plan_begin(onyx_session *s, bool keep_all, bool *planned)
{
    onyx_planner *p = s->plan;
    free(p->arena_old);
    p->arena_old = NULL;
    p->arena_old_cap = 0;
    p->cur = NULL;
    p->misfit = false;
    *planned = false;
    make_key(p, s, keep_all);
    plan_slot *sl = find_slot(p, s);
    bool fresh = sl == NULL;
    if (fresh) {
        /* New shapes: plan ahead when the pre-pass can size everything, else run without a
         * plan (onyx_plan_end makes one from the run). */
        if (!work_arrays(p) || !prepass(p, s))
            return ONYX_OK;
        sl = victim(p);
        if (!build(p, s, sl, p->probe))
            return ONYX_OK;
    }
    /* Nothing of this run is in the arena yet: growing it may drop the old one. */
    if (!fit_arena(p, sl, false)) {
        sl->valid = false;
        return onyx_session_fail(s, ONYX_ERR_NOMEM, "out of memory for %zu bytes of activations",
                                 sl->arena);
    }
    if (fresh)
        log_plan(p, s, sl);
    sl->used = ++p->tick;
    p->cur = sl;
    *planned = true;
    return ONYX_OK;
}

void *onyx_plan_memory(onyx_session *s, int v, size_t nbytes)
{
    onyx_planner *p = s->plan;
    plan_slot *sl = p->cur;
    if (sl == NULL)
        return NULL;
    size_t size = round_block(nbytes);
    if (size == 0 || size > sl->size[v]) {
        p->misfit = true;
        return NULL;
    }
    return (char *)p->arena + sl->offset[v];
}

void onyx_plan_end(onyx_session *s)
{
    onyx_planner *p = s->plan;
    plan_slot *sl = p->cur;
    if (sl == NULL || p->misfit) {
        /* The run's actual shapes (in s->vals) make the plan for the next run like it. */
        bool live = sl != NULL;
        if (sl == NULL)
            sl = victim(p);
        if (!work_arrays(p) || !build(p, s, sl, s->vals) || !fit_arena(p, sl, live)) {
            sl->valid = false; /* planned again next time */
            p->cur = NULL;
            return;
        }
        log_plan(p, s, sl);
    }
    p->report_arena = sl->arena;
    p->report_naive = sl->naive;
    p->cur = NULL;
}

/* [a, a + na) and [b, b + nb) overlap (compared as addresses: they may be different objects). */
static bool overlap(const void *a, size_t na, const void *b, size_t nb)
{
    uintptr_t x = (uintptr_t)a;
    uintptr_t y = (uintptr_t)b;
    return a != NULL && b != NULL && x < y + nb && y < x + na;
}

bool onyx_plan_owns(const onyx_planner *p, const void *ptr, size_t size)
{
    size_t n = size ? size : 1;
    return overlap(ptr, n, p->arena, p->arena_cap) ||
           (p->arena_old != NULL && overlap(ptr, n, p->arena_old, p->arena_old_cap));
}
