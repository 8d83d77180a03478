/* test_plan.c — memory planning (runtime/plan.c, runtime/session.c): the placement never lets
 * two blocks of overlapping lifetimes share bytes and packs a chain into two blocks; a deep MLP
 * runs in a few layers' worth of memory, bit for bit as a session that keeps every value (a
 * training session, which neither pre-packs weights nor fuses Gemm + Relu); repeated runs, also
 * with alternating batch sizes, allocate nothing (malloc and friends are wrapped at link time); a
 * value asked for by name survives; graph outputs that are also inputs, initializers or read by
 * later nodes; shapes decided by data (planned ahead through a Shape chain, or learnt from a run
 * and re-planned when they change); zero-copy outputs written in place; an output fed back as an
 * input is refused. */
#include "alloc_count.h"
#include "check.h"
#include "pb_write.h"
#include "internal.h"
#include "onyx.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- placement ------------------------------------------------------------------------------ */

static uint64_t rng_state = 88172645463325252u;
static uint64_t next_rand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* No two blocks with overlapping lifetimes overlap in memory; all inside the arena; the arena is
 * at least the largest sum of blocks alive at one time and at most the sum of all. */
static void check_placement(onyx_plan_block *b, int n, size_t arena, const char *what)
{
    int bad = 0;
    size_t naive = 0;
    for (int i = 0; i < n; i++) {
        naive += b[i].size;
        bad += b[i].offset % 64 != 0 || b[i].offset + b[i].size > arena;
        for (int j = i + 1; j < n; j++) {
            bool live = !(b[i].last < b[j].first || b[j].last < b[i].first);
            bool mem =
                b[i].offset < b[j].offset + b[j].size && b[j].offset < b[i].offset + b[i].size;
            bad += live && mem;
        }
    }
    size_t peak = 0;
    for (int t = 0; t < 64; t++) {
        size_t at = 0;
        for (int i = 0; i < n; i++)
            at += (b[i].first <= t && t <= b[i].last) ? b[i].size : 0;
        peak = at > peak ? at : peak;
    }
    if (bad || arena < peak || arena > naive)
        fprintf(stderr, "%s: %d overlaps, arena %zu, peak live %zu, naive %zu\n", what, bad, arena,
                peak, naive);
    CHECK(bad == 0);
    CHECK(arena >= peak && arena <= naive);
}

static void test_place(void)
{
    onyx_plan_block b[200];
    int work[200];
    /* a chain: block i lives from node i to node i+1; two blocks suffice */
    for (int i = 0; i < 20; i++)
        b[i] = (onyx_plan_block){.size = 4096, .first = i, .last = i + 1, .id = i};
    size_t arena = onyx_plan_place(b, 20, work);
    check_placement(b, 20, arena, "chain");
    CHECK(arena == 2 * 4096);
    /* ids survive the reordering */
    bool seen[20] = {false};
    for (int i = 0; i < 20; i++)
        seen[b[i].id] = true;
    int n_seen = 0;
    for (int i = 0; i < 20; i++)
        n_seen += seen[i];
    CHECK(n_seen == 20);
    /* best fit: after node 1, gaps of 448 bytes (at 512) and 192 (at 1216) open up; the 128
     * bytes of block 6 go into the smaller one */
    b[0] = (onyx_plan_block){.size = 512, .first = 0, .last = 9, .id = 0};
    b[1] = (onyx_plan_block){.size = 448, .first = 0, .last = 1, .id = 1};
    b[2] = (onyx_plan_block){.size = 256, .first = 0, .last = 9, .id = 2};
    b[3] = (onyx_plan_block){.size = 192, .first = 0, .last = 1, .id = 3};
    b[4] = (onyx_plan_block){.size = 128, .first = 0, .last = 9, .id = 4};
    b[5] = (onyx_plan_block){.size = 128, .first = 2, .last = 9, .id = 6};
    arena = onyx_plan_place(b, 6, work);
    check_placement(b, 6, arena, "best fit");
    CHECK(arena == 1536);
    for (int i = 0; i < 6; i++)
        if (b[i].id == 6)
            CHECK(b[i].offset == 1216);
    /* random lifetimes and sizes */
    for (int round = 0; round < 200; round++) {
        int n = 1 + (int)(next_rand() % 200);
        for (int i = 0; i < n; i++) {
            int first = (int)(next_rand() % 60);
            int len = (int)(next_rand() % 8);
            b[i] = (onyx_plan_block){.size = 64 * (1 + next_rand() % 40),
                                     .first = first,
                                     .last = first + len > 63 ? 63 : first + len,
                                     .id = i};
        }
        arena = onyx_plan_place(b, n, work);
        check_placement(b, n, arena, "random");
    }
    CHECK(onyx_plan_place(b, 0, work) == 0);
}

/* ---- a deep MLP ------------------------------------------------------------------------------ */

#define WIDTH 96
#define DEPTH 20

static const char *deep_path(void)
{
    return ONYX_BINARY_DIR "/test_plan_deep.onnx";
}

static void fill(float *x, int64_t n, int seed)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(((i * 37 + seed * 11) % 29) - 14) * 0.07f;
}

/* Runs s on a batch of the deep MLP and returns the logits (session memory). */
static onyx_status run_batch(onyx_session *s, const float *x, int64_t batch, onyx_tensor *out)
{
    onyx_tensor in = {ONYX_DTYPE_F32, 2, {batch, WIDTH}, (void *)x};
    const char *names[] = {"input"};
    memset(out, 0, sizeof(*out));
    return onyx_session_run(s, 1, names, &in, 1, NULL, out);
}

static bool same_bits(const onyx_tensor *a, const onyx_tensor *b)
{
    return a->dtype == b->dtype && a->rank == b->rank &&
           memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) == 0 &&
           memcmp(a->data, b->data, onyx_nbytes(a)) == 0;
}

static void test_deep_mlp(void)
{
    int64_t layers[DEPTH + 1];
    for (int i = 0; i <= DEPTH; i++)
        layers[i] = WIDTH;
    onyx_mlp_spec spec = {layers, DEPTH + 1, "relu", 0.0f, 7};
    onyx_error err;
    CHECK_OK(onyx_mlp_write(&spec, deep_path(), &err), err.msg);
    onyx_model *m = NULL;
    CHECK_OK(onyx_model_load(deep_path(), &m, &err), err.msg);
    if (m == NULL)
        return;
    onyx_session *s = NULL;
    onyx_session *keep = NULL; /* a training session: every value kept to the end */
    CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
    CHECK_OK(onyx_session_create(m, NULL, &keep, &err), err.msg);
    if (s == NULL || keep == NULL)
        return;
    keep->training = true;

    size_t arena = 1;
    size_t naive = 1;
    CHECK_OK(onyx_session_memory(s, &arena, &naive), "memory");
    CHECK(arena == 0 && naive == 0); /* nothing run yet */
    CHECK(onyx_session_memory(NULL, &arena, &naive) == ONYX_ERR_INVALID_ARG);
    CHECK(onyx_session_memory(s, NULL, &naive) == ONYX_ERR_INVALID_ARG);

    static float x[64 * WIDTH];
    fill(x, 64 * WIDTH, 1);
    onyx_tensor y;
    onyx_tensor yk;
    CHECK_OK(run_batch(s, x, 64, &y), onyx_session_errmsg(s));
    CHECK_OK(run_batch(keep, x, 64, &yk), onyx_session_errmsg(keep));
    CHECK(!s->spilled); /* planned before the first run */
    CHECK(y.rank == 2 && y.dims[0] == 64 && y.dims[1] == WIDTH);
    CHECK(same_bits(&y, &yk));
    /* the inference session packed its weights at the first run and fused each Gemm with its
     * Relu (the Gemm's output shares the Relu's block), so the allocation counts below cover
     * both; the training session did neither */
    CHECK(s->packed != NULL && s->packed[0] != NULL && keep->packed == NULL);
    int fc0 = onyx_model_find_value(m, "fc0.out");
    int act0 = onyx_model_find_value(m, "act0.out");
    CHECK(fc0 >= 0 && act0 >= 0);
    if (fc0 >= 0 && act0 >= 0) {
        CHECK(s->vals[fc0].data == s->vals[act0].data);
        CHECK(keep->vals[fc0].data != keep->vals[act0].data);
    }

    /* 20 Gemm and 19 Relu outputs of 64 x 96 floats: one buffer each would be 39 layers; the
     * arena holds what lives at once: a layer's input and output */
    size_t layer = 64 * WIDTH * sizeof(float);
    CHECK_OK(onyx_session_memory(s, &arena, &naive), "memory");
    printf("deep MLP %d x %d, batch 64: arena %zu bytes, one buffer per value %zu bytes\n", DEPTH,
           WIDTH, arena, naive);
    CHECK(naive == (2 * DEPTH - 1) * layer);
    CHECK(arena <= 2 * layer);
    CHECK(arena < 3 * layer);
    size_t karena = 0;
    size_t knaive = 0;
    CHECK_OK(onyx_session_memory(keep, &karena, &knaive), "memory");
    CHECK(karena == knaive && knaive == naive); /* training keeps everything */

    /* FLOPs of the run: 20 Gemms of 64 x 96 x 96 */
    double flops = 0;
    CHECK_OK(onyx_session_flops(s, &flops), "flops");
    CHECK(flops == 2.0 * DEPTH * 64 * WIDTH * WIDTH);
    CHECK(onyx_session_flops(NULL, &flops) == ONYX_ERR_INVALID_ARG);

    /* repeated runs allocate nothing */
    long before = th_alloc_count();
    for (int r = 0; r < 5; r++) {
        fill(x, 64 * WIDTH, r + 2);
        CHECK_OK(run_batch(s, x, 64, &y), onyx_session_errmsg(s));
    }
    CHECK(th_alloc_count() == before);
    printf("allocations in 5 repeated runs: %ld\n", th_alloc_count() - before);

    /* other batch sizes: planned again, right for each; then alternating, nothing allocated */
    int64_t batches[] = {3, 64, 1, 17, 3};
    for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
        fill(x, batches[k] * WIDTH, (int)k + 10);
        CHECK_OK(run_batch(s, x, batches[k], &y), onyx_session_errmsg(s));
        CHECK_OK(run_batch(keep, x, batches[k], &yk), onyx_session_errmsg(keep));
        CHECK(y.dims[0] == batches[k]);
        CHECK(same_bits(&y, &yk));
        CHECK_OK(onyx_session_memory(s, &arena, &naive), "memory");
        size_t l = (size_t)batches[k] * WIDTH * sizeof(float);
        l = (l + 63) / 64 * 64;
        CHECK(naive == (2 * DEPTH - 1) * l && arena <= 2 * l);
    }
    before = th_alloc_count();
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 4; k++) {
            CHECK_OK(run_batch(s, x, batches[k], &y), onyx_session_errmsg(s));
            CHECK(y.dims[0] == batches[k]);
        }
    CHECK(th_alloc_count() == before);
    printf("allocations in 12 runs alternating 4 batch sizes: %ld\n", th_alloc_count() - before);

    /* an intermediate value asked for by name survives the run; bit for bit as when kept */
    fill(x, 8 * WIDTH, 99);
    onyx_tensor in = {ONYX_DTYPE_F32, 2, {8, WIDTH}, x};
    const char *in_names[] = {"input"};
    const char *out_names[] = {"act2.out", "logits", "fc0.out"};
    onyx_tensor outs[3];
    onyx_tensor kouts[3];
    memset(outs, 0, sizeof outs);
    memset(kouts, 0, sizeof kouts);
    CHECK_OK(onyx_session_run(s, 1, in_names, &in, 3, out_names, outs), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_run(keep, 1, in_names, &in, 3, out_names, kouts),
             onyx_session_errmsg(keep));
    for (int k = 0; k < 3; k++)
        CHECK(same_bits(&outs[k], &kouts[k]));
    /* and relu(fc0.out) is what the next layer saw: act0.out of the kept session */
    const char *a0[] = {"act0.out", "fc0.out"};
    onyx_tensor ka0[2];
    memset(ka0, 0, sizeof ka0);
    CHECK_OK(onyx_session_run(keep, 1, in_names, &in, 2, a0, ka0), onyx_session_errmsg(keep));
    CHECK(same_bits(&ka0[1], &outs[2]));
    int wrong = 0;
    for (int64_t i = 0; i < 8 * WIDTH; i++) {
        float f = ((const float *)outs[2].data)[i];
        wrong += ((const float *)ka0[0].data)[i] != (f > 0 ? f : 0);
    }
    CHECK(wrong == 0);

    /* the trainer's path (onyx_session_forward) keeps every value too */
    CHECK_OK(onyx_session_forward(s, 1, in_names, &in), onyx_session_errmsg(s));
    int v0 = onyx_model_find_value(m, "fc0.out");
    int v1 = onyx_model_find_value(m, "act0.out");
    CHECK(v0 >= 0 && v1 >= 0);
    if (v0 >= 0 && v1 >= 0) {
        CHECK(same_bits(&s->vals[v1], &ka0[0]));
        CHECK(same_bits(&s->vals[v0], &ka0[1]));
    }

    /* an output fed back as the next run's input is refused, not silently overwritten */
    CHECK_OK(run_batch(s, x, 8, &y), onyx_session_errmsg(s));
    onyx_tensor back = y; /* [8, 96]: fits the input */
    CHECK(onyx_session_run(s, 1, in_names, &back, 1, NULL, &yk) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(onyx_session_errmsg(s), "input \"input\" is in this session's memory");
    CHECK_OK(run_batch(s, x, 8, &y), onyx_session_errmsg(s)); /* still usable */

    /* zero-copy: the logits and a hidden value bound; written in place, nothing allocated */
    static float logits[8 * WIDTH];
    static float hidden[8 * WIDTH];
    onyx_tensor lt = {ONYX_DTYPE_F32, 2, {8, WIDTH}, logits};
    onyx_tensor ht = {ONYX_DTYPE_F32, 2, {8, WIDTH}, hidden};
    CHECK_OK(onyx_session_bind_input(s, "input", &in), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_bind_output(s, "logits", &lt), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_bind_output(s, "act5.out", &ht), onyx_session_errmsg(s));
    CHECK_OK(onyx_session_run_bound(s), onyx_session_errmsg(s));
    const char *both[] = {"logits", "act5.out"};
    memset(kouts, 0, sizeof kouts);
    CHECK_OK(onyx_session_run(keep, 1, in_names, &in, 2, both, kouts), onyx_session_errmsg(keep));
    CHECK(memcmp(logits, kouts[0].data, sizeof logits) == 0);
    CHECK(memcmp(hidden, kouts[1].data, sizeof hidden) == 0);
    int vl = onyx_model_find_value(m, "logits");
    int vh = onyx_model_find_value(m, "act5.out");
    CHECK(vl >= 0 && vh >= 0);
    if (vl >= 0 && vh >= 0) {
        CHECK(s->vals[vl].data == logits && s->vals[vh].data == hidden);
        CHECK(s->buf[vl] == NULL && s->buf[vh] == NULL);
    }
    size_t barena = 0;
    size_t bnaive = 0;
    CHECK_OK(onyx_session_memory(s, &barena, &bnaive), "memory");
    CHECK(bnaive == (2 * DEPTH - 3) * 8 * WIDTH * sizeof(float)); /* bound ones not counted */
    before = th_alloc_count();
    for (int r = 0; r < 5; r++) {
        fill(x, 8 * WIDTH, 40 + r);
        CHECK_OK(onyx_session_run_bound(s), onyx_session_errmsg(s));
    }
    CHECK(th_alloc_count() == before);
    CHECK_OK(onyx_session_run(keep, 1, in_names, &in, 2, both, kouts), onyx_session_errmsg(keep));
    CHECK(memcmp(logits, kouts[0].data, sizeof logits) == 0);
    CHECK(memcmp(hidden, kouts[1].data, sizeof hidden) == 0);

    onyx_session_destroy(keep);
    onyx_session_destroy(s);
    onyx_model_destroy(m);
    remove(deep_path());
}

/* ---- small models written here -------------------------------------------------------------- */

/* A protobuf message being written. */
typedef th_pb pb;

/* A NodeProto: op(inputs) -> outputs ("a,b" lists; "" is an omitted input), one optional int
 * attribute. */
static void add_node(pb *g, const char *op, const char *ins, const char *outs, const char *attr,
                     int64_t value)
{
    pb n = {0};
    char buf[128];
    const char *lists[2] = {ins, outs};
    for (int k = 0; k < 2; k++) {
        snprintf(buf, sizeof buf, "%s", lists[k]);
        for (char *t = buf; t != NULL;) {
            char *c = strchr(t, ',');
            if (c)
                *c = '\0';
            th_pb_str(&n, k + 1, t);
            t = c ? c + 1 : NULL;
        }
    }
    th_pb_str(&n, 3, outs);
    th_pb_str(&n, 4, op);
    if (attr != NULL) {
        pb a = {0};
        th_pb_str(&a, 1, attr);
        th_pb_int(&a, 3, value);
        th_pb_int(&a, 20, 2); /* INT */
        th_pb_msg(&n, 5, &a);
    }
    th_pb_msg(g, 1, &n);
}




#define F32 1
#define I64 7

/* a = Relu(x); b = Add(a, w); c = Mul(b, b); d = Add(c, w); e = Relu(d). Outputs e, a (read by
 * later nodes: must survive them), x (an input) and w (an initializer). */
static void test_outputs_everywhere(void)
{
    pb g = {0};
    add_node(&g, "Relu", "x", "a", NULL, 0);
    add_node(&g, "Add", "a,w", "b", NULL, 0);
    add_node(&g, "Mul", "b,b", "c", NULL, 0);
    add_node(&g, "Add", "c,w", "d", NULL, 0);
    add_node(&g, "Relu", "d", "e", NULL, 0);
    float w[4] = {0.5f, -1.0f, 0.25f, -3.0f};
    int64_t wd[1] = {4};
    th_pb_initializer(&g, "w", F32, 1, wd, w, sizeof w);
    int64_t xd[2] = {-1, 4};
    th_pb_value_info(&g, 11, "x", F32, 2, xd);
    th_pb_value_info(&g, 12, "e", F32, 2, xd);
    th_pb_value_info(&g, 12, "a", F32, 2, xd);
    th_pb_value_info(&g, 12, "x", F32, 2, xd);
    th_pb_value_info(&g, 12, "w", F32, 1, wd);
    onyx_model *m = th_pb_load_model(&g, 17, "outputs_everywhere");
    if (m == NULL)
        return;
    onyx_session *s = NULL;
    onyx_error err;
    CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
    float x[12];
    for (int64_t batch = 3; batch >= 1; batch -= 2) {
        for (int i = 0; i < 12; i++)
            x[i] = (float)((i * 5 % 9) - 4) * 0.5f;
        onyx_tensor in = {ONYX_DTYPE_F32, 2, {batch, 4}, x};
        const char *in_names[] = {"x"};
        onyx_tensor out[4];
        memset(out, 0, sizeof out);
        long before = th_alloc_count();
        for (int r = 0; r < 3; r++) {
            if (r == 2)
                before = th_alloc_count();
            CHECK_OK(onyx_session_run(s, 1, in_names, &in, 4, NULL, out), onyx_session_errmsg(s));
        }
        CHECK(th_alloc_count() == before);
        int wrong = 0;
        for (int64_t i = 0; i < batch * 4; i++) {
            float a = x[i] > 0 ? x[i] : 0;
            float b = a + w[i % 4];
            float d = b * b + w[i % 4];
            wrong += ((float *)out[0].data)[i] != (d > 0 ? d : 0);
            wrong += ((float *)out[1].data)[i] != a;
            wrong += ((float *)out[2].data)[i] != x[i];
        }
        for (int i = 0; i < 4; i++)
            wrong += ((float *)out[3].data)[i] != w[i];
        CHECK(wrong == 0);
        CHECK(out[2].data == x); /* an input passed through is the caller's */
        size_t arena = 0;
        size_t naive = 0;
        CHECK_OK(onyx_session_memory(s, &arena, &naive), "memory");
        /* five values of one 64-byte block each; a and e live to the end, and b, c, d never all
         * at once */
        CHECK(naive == 5 * 64 && arena < naive);
    }
    onyx_session_destroy(s);
    onyx_model_destroy(m);
}

/* The flatten of exported models: y = Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]));
 * z = Relu(y). The shape chain is computed ahead of the run, so even the first run with a new
 * batch size is planned. */
static void test_shape_chain(void)
{
    pb g = {0};
    add_node(&g, "Shape", "x", "sh", NULL, 0);
    add_node(&g, "Gather", "sh,zero", "n", "axis", 0);
    add_node(&g, "Unsqueeze", "n,axes", "nu", NULL, 0);
    add_node(&g, "Concat", "nu,minus1", "target", "axis", 0);
    add_node(&g, "Reshape", "x,target", "y", NULL, 0);
    add_node(&g, "Relu", "y", "z", NULL, 0);
    int64_t zero = 0;
    int64_t one_d[1] = {1};
    int64_t minus1[1] = {-1};
    th_pb_initializer(&g, "zero", I64, 0, NULL, &zero, sizeof zero);
    th_pb_initializer(&g, "axes", I64, 1, one_d, &zero, sizeof zero);
    th_pb_initializer(&g, "minus1", I64, 1, one_d, minus1, sizeof minus1);
    int64_t xd[3] = {-1, 2, 3};
    th_pb_value_info(&g, 11, "x", F32, 3, xd);
    int64_t zd[2] = {-1, 6};
    th_pb_value_info(&g, 12, "z", F32, 2, zd);
    onyx_model *m = th_pb_load_model(&g, 13, "shape_chain");
    if (m == NULL)
        return;
    onyx_session *s = NULL;
    onyx_error err;
    CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
    float x[5 * 6];
    for (int i = 0; i < 30; i++)
        x[i] = (float)(i % 7) - 3.0f;
    for (int64_t batch = 1; batch <= 5; batch += 2) {
        onyx_tensor in = {ONYX_DTYPE_F32, 3, {batch, 2, 3}, x};
        const char *in_names[] = {"x"};
        onyx_tensor z;
        memset(&z, 0, sizeof z);
        CHECK_OK(onyx_session_run(s, 1, in_names, &in, 1, NULL, &z), onyx_session_errmsg(s));
        CHECK(!s->spilled); /* planned ahead */
        CHECK(z.rank == 2 && z.dims[0] == batch && z.dims[1] == 6);
        int wrong = 0;
        for (int64_t i = 0; i < batch * 6; i++)
            wrong += ((float *)z.data)[i] != (x[i] > 0 ? x[i] : 0);
        CHECK(wrong == 0);
        size_t arena = 0;
        size_t naive = 0;
        CHECK_OK(onyx_session_memory(s, &arena, &naive), "memory");
        CHECK(arena > 0 && arena <= naive);
    }
    onyx_session_destroy(s);
    onyx_model_destroy(m);
}

/* A shape decided by float data, which no pre-pass can know: k = Cast<int64>(Relu(t));
 * y = Expand(x, k); z = Relu(y); o = Mul(z, z). The first run goes without a plan (one buffer
 * per value) and plans its shapes for the next; new data giving larger shapes with the same
 * input shapes does not fit the plan: planned again, right answers throughout. */
static void test_data_shapes(void)
{
    pb g = {0};
    add_node(&g, "Relu", "t", "tr", NULL, 0);
    add_node(&g, "Cast", "tr", "k", "to", 7);
    add_node(&g, "Expand", "x,k", "y", NULL, 0);
    add_node(&g, "Relu", "y", "z", NULL, 0);
    add_node(&g, "Mul", "z,z", "o", NULL, 0);
    int64_t xd[2] = {1, 4};
    int64_t td[1] = {2};
    th_pb_value_info(&g, 11, "x", F32, 2, xd);
    th_pb_value_info(&g, 11, "t", F32, 1, td);
    int64_t od[2] = {-1, 4};
    th_pb_value_info(&g, 12, "o", F32, 2, od);
    onyx_model *m = th_pb_load_model(&g, 13, "data_shapes");
    if (m == NULL)
        return;
    onyx_session *s = NULL;
    onyx_error err;
    CHECK_OK(onyx_session_create(m, NULL, &s, &err), err.msg);
    float x[4] = {-1.0f, 2.0f, 0.5f, 3.0f};
    float rows[] = {3, 3, 50, 50, 3, 50};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        float t[2] = {rows[r], 4};
        onyx_tensor ins[2] = {{ONYX_DTYPE_F32, 2, {1, 4}, x}, {ONYX_DTYPE_F32, 1, {2}, t}};
        const char *in_names[] = {"x", "t"};
        onyx_tensor o;
        memset(&o, 0, sizeof o);
        long before = th_alloc_count();
        CHECK_OK(onyx_session_run(s, 2, in_names, ins, 1, NULL, &o), onyx_session_errmsg(s));
        long allocs = th_alloc_count() - before;
        if (r == 0)
            CHECK(s->spilled); /* nothing could be planned ahead */
        if (r == 1 || r == 3 || r == 4 || r == 5)
            CHECK(allocs == 0); /* the plan of an earlier run fits */
        if (r == 2)
            CHECK(s->spilled); /* larger than the plan: buffers of their own, then a new plan */
        CHECK(o.rank == 2 && o.dims[0] == (int64_t)rows[r] && o.dims[1] == 4);
        int wrong = 0;
        for (int64_t i = 0; i < o.dims[0] * 4; i++) {
            float z = x[i % 4] > 0 ? x[i % 4] : 0;
            wrong += ((float *)o.data)[i] != z * z;
        }
        CHECK(wrong == 0);
    }
    onyx_session_destroy(s);
    onyx_model_destroy(m);
}

int main(void)
{
    test_place();
    test_deep_mlp();
    test_outputs_everywhere();
    test_shape_chain();
    test_data_shapes();
    return check_report();
}
