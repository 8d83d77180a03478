/*
 * model.c — ModelProto (protobuf-c) -> onyx IR. The only file that reads protobuf types.
 *
 * Order of work in onyx_model_load_buffer (onyx_model_load maps the file and does the same):
 *  1. refuse what protobuf-c cannot parse safely: files over 2 GiB, messages nested deeper than
 *     ONYX_MAX_NESTING (protobuf-c 1.4 has no recursion limit), malformed wire format;
 *     find the initializers' raw_data and unpack a copy of the bytes without it (1b);
 *  2. translate opsets, graph inputs/outputs and initializers (raw, typed or external data) into
 *     values, raw_data going straight from the model's bytes into the weights' arena, and nodes
 *     into IR nodes, inlining model-local functions;
 *  3. free the protobuf message, then hand the IR to graph.c to validate, sort and infer shapes.
 */
#define _XOPEN_SOURCE 700 /* realpath, pread */
#include "internal.h"
#include "onnx.pb-c.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

onyx_status onyx_graph_prepare(onyx_model *m, const onyx_load_options *opt,
                               onyx_error *err); /* graph.c */
void onyx_graph_free(onyx_model *m);                             /* graph.c */

/* ---- 1. wire-format pre-scan: onyx_pb_wire_check (model_write.c, shared with the writer) ---- */

/* ---- 1b. initializers' raw_data, kept away from protobuf-c ------------------------------------
 *
 * protobuf-c copies every bytes field it unpacks, so the weights would be copied by unpack and
 * then again into the arena, each copy into fresh pages (issue #4: loading took 4x the time of
 * reading the file). Instead, before unpacking, the loader walks the wire bytes along
 * ModelProto.graph (field 7) -> GraphProto.initializer (5) -> TensorProto.raw_data (9), records
 * where each initializer's raw_data lies in the model's bytes, and unpacks a copy of the bytes
 * in which each of those raw_data fields is still there but empty. build_graph then copies each
 * initializer's bytes from the model's bytes (or reads them from the model file) straight into
 * the arena: the weights are copied once.
 *
 * protobuf-c must read the copy as the same message but for the emptied raw_data. Every other
 * field is copied as it is. The lengths of the graph and initializer fields, which shrink, are
 * written in as many bytes as in the original (a varint may be padded with 0x80 bytes), so the
 * copy is never longer than the original and nothing moves. Only fields that protobuf-c reads
 * (key and length in at most 5 bytes) are followed: the others stay as they are for protobuf-c
 * to refuse. Initializers are walked field by field, which the wire pre-scan does not do, so
 * malformed wire format inside one is refused here with the same message as the pre-scan's. */

/* Where one initializer's raw_data is in the model's bytes. Given twice, the last one counts:
 * protobuf keeps the last value of a non-repeated field, as protobuf-c does. */
typedef struct raw_slice {
    size_t off;
    size_t len;
    bool present; /* the initializer has a raw_data field */
} raw_slice;

typedef struct raw_scan {
    const uint8_t *base; /* the model's bytes: slices are offsets into them */
    raw_slice *slices;   /* one per initializer, in the order of GraphProto.initializer (a graph
                          * field given twice is merged: the second one's initializers follow) */
    size_t n_slices;
    size_t cap_slices;
    size_t saved;   /* raw_data bytes that the stripped copy leaves out */
    size_t fail_at; /* malformed wire format: where and why */
    const char *why;
    bool nomem;
} raw_scan;

enum { LEVEL_MODEL, LEVEL_GRAPH, LEVEL_TENSOR };
static const uint64_t follow_field[] = {7, 5, 9}; /* graph, initializer, raw_data */

/* protobuf-c reads keys and lengths of at most this many bytes. */
#define PBC_MAX_VARINT 5

/* Writes v as a varint of exactly `width` bytes (v < 2^(7 width)). */
static void put_varint_width(uint8_t *out, uint64_t v, size_t width)
{
    for (size_t i = 0; i + 1 < width; i++, v >>= 7)
        out[i] = (uint8_t)(0x80 | (v & 0x7f));
    out[width - 1] = (uint8_t)v;
}

static size_t walk_fail(raw_scan *s, const uint8_t *at, const char *why)
{
    s->fail_at = (size_t)(at - s->base);
    s->why = why;
    return SIZE_MAX;
}

/* Walks the message p[0, len) found at `level` of the path to raw_data. With out NULL, records
 * the slices; else writes the stripped message to out. Returns the size of the stripped message,
 * or SIZE_MAX (malformed wire format: s->why, s->fail_at; or s->nomem). */
static size_t strip_walk(raw_scan *s, int level, const uint8_t *p, size_t len, uint8_t *out)
{
    size_t pos = 0;
    size_t n = 0;
    while (pos < len) {
        size_t start = pos;
        uint64_t key;
        uint64_t v = 0;
        if (!onyx_pb_read_varint(p, len, &pos, &key) || (key >> 3) == 0)
            return walk_fail(s, p + start, "malformed field key");
        size_t key_len = pos - start;
        switch (key & 7) {
        case 0:
            if (!onyx_pb_read_varint(p, len, &pos, &v))
                return walk_fail(s, p + start, "truncated varint");
            break;
        case 1:
        case 5:
            v = (key & 7) == 1 ? 8 : 4;
            if (len - pos < v)
                return walk_fail(s, p + start, "truncated fixed-size field");
            pos += (size_t)v;
            break;
        case 2:
            if (!onyx_pb_read_varint(p, len, &pos, &v) || v > len - pos)
                return walk_fail(s, p + start, "length-delimited field runs past the end");
            break;
        default: return walk_fail(s, p + start, "unsupported wire type (groups or garbage)");
        }
        size_t prefix_len = pos - start - key_len; /* of a length-delimited field */
        bool follow = (key & 7) == 2 && (key >> 3) == follow_field[level] &&
                      key_len <= PBC_MAX_VARINT && prefix_len <= PBC_MAX_VARINT;
        if (!follow) {
            if ((key & 7) == 2)
                pos += (size_t)v;
            if (out)
                memcpy(out + n, p + start, pos - start);
            n += pos - start;
            continue;
        }
        if (out)
            memcpy(out + n, p + start, key_len);
        n += key_len;
        if (level == LEVEL_TENSOR) { /* raw_data: kept, but empty */
            if (out == NULL) {
                raw_slice *sl = &s->slices[s->n_slices - 1];
                sl->off = (size_t)(p + pos - s->base);
                sl->len = (size_t)v;
                sl->present = true;
                s->saved += (size_t)v;
            } else {
                out[n] = 0;
            }
            n += 1;
        } else {
            if (level == LEVEL_GRAPH && out == NULL) { /* a new initializer */
                if (s->n_slices == s->cap_slices) {
                    size_t cap = s->cap_slices ? 2 * s->cap_slices : 16;
                    raw_slice *ns = cap <= SIZE_MAX / sizeof(raw_slice)
                                        ? realloc(s->slices, cap * sizeof(raw_slice))
                                        : NULL;
                    if (ns == NULL) {
                        s->nomem = true;
                        return SIZE_MAX;
                    }
                    s->slices = ns;
                    s->cap_slices = cap;
                }
                memset(&s->slices[s->n_slices++], 0, sizeof(raw_slice));
            }
            size_t sub =
                strip_walk(s, level + 1, p + pos, (size_t)v, out ? out + n + prefix_len : NULL);
            if (sub == SIZE_MAX)
                return SIZE_MAX;
            if (out)
                put_varint_width(out + n, sub, prefix_len); /* sub <= v: fits */
            n += prefix_len + sub;
        }
        pos += (size_t)v;
    }
    return n;
}

/* ---- 2. tensors ----------------------------------------------------------------------------- */

typedef struct loader {
    const char *name;     /* model name for messages */
    const char *base_dir; /* external data folder, or NULL */
    onyx_error *err;
} loader;

static bool is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Checks dtype and dims of a TensorProto and fills t's dtype/rank/dims; *nbytes is its size. */
static onyx_status tensor_header(const loader *ld, const Onnx__TensorProto *tp, onyx_tensor *t,
                                 size_t *nbytes)
{
    const char *tname = tp->name ? tp->name : "";
    memset(t, 0, sizeof(*t));
    if (!onyx_dtype_is_known(tp->data_type))
        return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                        "%s: tensor \"%s\" has unknown data_type %d", ld->name, tname,
                        (int)tp->data_type);
    if (tp->data_type == ONYX_DTYPE_STRING)
        return onyx_err(ld->err, ONYX_ERR_UNSUPPORTED,
                        "%s: tensor \"%s\" holds strings, which onyx does not support", ld->name,
                        tname);
    if (tp->n_dims > ONYX_MAX_RANK)
        return onyx_err(ld->err, ONYX_ERR_UNSUPPORTED,
                        "%s: tensor \"%s\" has rank %zu, onyx supports at most %d", ld->name, tname,
                        tp->n_dims, ONYX_MAX_RANK);
    t->dtype = (onyx_dtype)tp->data_type;
    t->rank = (int)tp->n_dims;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0)
            return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                            "%s: tensor \"%s\" has negative dimension %lld", ld->name, tname,
                            (long long)tp->dims[i]);
        t->dims[i] = tp->dims[i];
    }
    int64_t numel;
    size_t es = onyx_dtype_size(t->dtype);
    if (!onyx_shape_numel(t->dims, t->rank, es, &numel)) {
        char sh[128];
        return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                        "%s: tensor \"%s\" has shape %s, whose size overflows", ld->name, tname,
                        onyx_shape_str(t, sh, sizeof sh));
    }
    *nbytes = (size_t)numel * es;
    return ONYX_OK;
}

/* A tensor's raw_data: bytes in memory (mem), or bytes of the model file (fd) at offset off. */
typedef struct raw_ref {
    bool present; /* the tensor has a raw_data field */
    size_t len;
    const uint8_t *mem;
    int fd; /* -1: the bytes are at mem */
    size_t off;
} raw_ref;

/* The raw_data that protobuf-c unpacked into tp (tensors other than initializers). */
static raw_ref proto_raw(const Onnx__TensorProto *tp)
{
    raw_ref r = {tp->has_raw_data != 0, tp->raw_data.len, tp->raw_data.data, -1, 0};
    return r;
}

/* Copies r's bytes to dst; false (errno set, 0 when the file ended early) when a read fails. */
static bool copy_raw(const raw_ref *r, void *dst)
{
    if (r->fd < 0) {
        if (r->len)
            memcpy(dst, r->mem, r->len);
        return true;
    }
    size_t done = 0;
    while (done < r->len) {
        ssize_t k = pread(r->fd, (char *)dst + done, r->len - done, (off_t)(r->off + done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = 0;
            return false;
        }
        done += (size_t)k;
    }
    return true;
}

/* Copies the data of tp (header already checked, nbytes its size) into dst; its raw_data, if
 * any, is at raw. */
static onyx_status tensor_data(const loader *ld, const Onnx__TensorProto *tp, const onyx_tensor *t,
                               void *dst, size_t nbytes, const raw_ref *raw)
{
    const char *tname = tp->name ? tp->name : "";
    int64_t numel = onyx_numel(t);
    size_t count = 0;
    const char *field = NULL;

    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return onyx_tensor_proto_read_external(ld->name, ld->base_dir, tp, dst, nbytes, ld->err);
    if (raw->present) {
        if (raw->len != nbytes)
            return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                            "%s: tensor \"%s\" has %zu bytes of raw_data, expected %zu (%lld "
                            "elements of %s)",
                            ld->name, tname, raw->len, nbytes, (long long)numel,
                            onyx_dtype_name(t->dtype));
        if (!copy_raw(raw, dst))
            return onyx_err(ld->err, ONYX_ERR_IO,
                            "%s: tensor \"%s\": cannot read its %zu bytes of raw_data at byte "
                            "%zu: %s",
                            ld->name, tname, nbytes, raw->off,
                            errno ? strerror(errno) : "the file got shorter while loading");
        if (!is_little_endian())
            return onyx_err(ld->err, ONYX_ERR_UNSUPPORTED, "big-endian hosts are not supported");
        return ONYX_OK;
    }
    switch (t->dtype) {
    case ONYX_DTYPE_F32:
        count = tp->n_float_data, field = "float_data";
        if (count == (size_t)numel && count)
            memcpy(dst, tp->float_data, nbytes);
        break;
    case ONYX_DTYPE_F64:
        count = tp->n_double_data, field = "double_data";
        if (count == (size_t)numel && count)
            memcpy(dst, tp->double_data, nbytes);
        break;
    case ONYX_DTYPE_I64:
        count = tp->n_int64_data, field = "int64_data";
        if (count == (size_t)numel && count)
            memcpy(dst, tp->int64_data, nbytes);
        break;
    case ONYX_DTYPE_U32:
    case ONYX_DTYPE_U64:
        count = tp->n_uint64_data, field = "uint64_data";
        if (count == (size_t)numel)
            for (size_t i = 0; i < count; i++)
                onyx_store_i64(t->dtype, dst, (int64_t)i, (int64_t)tp->uint64_data[i]);
        break;
    case ONYX_DTYPE_F16:
    case ONYX_DTYPE_BF16:
        count = tp->n_int32_data, field = "int32_data";
        if (count == (size_t)numel)
            for (size_t i = 0; i < count; i++)
                ((uint16_t *)dst)[i] = (uint16_t)tp->int32_data[i];
        break;
    default: /* int32, int16, int8, uint16, uint8, bool live in int32_data */
        count = tp->n_int32_data, field = "int32_data";
        if (count == (size_t)numel)
            for (size_t i = 0; i < count; i++)
                onyx_store_i64(t->dtype, dst, (int64_t)i, tp->int32_data[i]);
        break;
    }
    if (count != (size_t)numel)
        return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                        "%s: tensor \"%s\" has %zu values in %s, expected %lld", ld->name, tname,
                        count, field, (long long)numel);
    return ONYX_OK;
}

static void *aligned_block(size_t nbytes)
{
    size_t n = (nbytes + 63) & ~(size_t)63;
    return aligned_alloc(64, n ? n : 64);
}

/* Decodes a tensor into a new 64-byte aligned buffer. */
static onyx_status tensor_alloc_decode(const loader *ld, const Onnx__TensorProto *tp,
                                       onyx_tensor *t)
{
    size_t nbytes = 0;
    onyx_status st = tensor_header(ld, tp, t, &nbytes);
    if (st != ONYX_OK)
        return st;
    void *data = aligned_block(nbytes);
    if (data == NULL)
        return onyx_err(ld->err, ONYX_ERR_NOMEM, "%s: out of memory for tensor \"%s\" (%zu bytes)",
                        ld->name, tp->name ? tp->name : "", nbytes);
    raw_ref raw = proto_raw(tp);
    st = tensor_data(ld, tp, t, data, nbytes, &raw);
    if (st != ONYX_OK) {
        free(data);
        return st;
    }
    t->data = data;
    return ONYX_OK;
}

onyx_status onyx_tensor_decode_pb(const void *buf, size_t len, const char *what, onyx_tensor *t,
                                  char **name, onyx_error *err)
{
    loader ld = {what, NULL, err};
    if (name)
        *name = NULL;
    memset(t, 0, sizeof(*t));
    size_t offset;
    const char *why;
    if (len > ONYX_MAX_FILE_SIZE)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: larger than 2 GiB", what);
    if (!onyx_pb_wire_check(buf, len, false, &offset, &why))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: not a TensorProto: %s at byte %zu", what,
                        why, offset);
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, buf);
    if (tp == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: not a valid TensorProto", what);
    onyx_tensor tmp;
    onyx_status st = tensor_alloc_decode(&ld, tp, &tmp);
    if (st == ONYX_OK && name) {
        *name = onyx_strdup(tp->name);
        if (*name == NULL) {
            free(tmp.data);
            st = onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", what);
        }
    }
    onnx__tensor_proto__free_unpacked(tp, NULL);
    if (st == ONYX_OK)
        *t = tmp;
    return st;
}

/* ---- 2b. nodes, attributes and model-local functions ------------------------------------------ */

/* A node collected from the graph or from an inlined function body, before values exist. */
typedef struct pnode {
    char *name;
    char *op_type;
    char *domain;
    int64_t opset;
    int n_in;
    char **in;
    int n_out;
    char **out;
    int n_attr;
    onyx_attr *attr;
} pnode;

typedef struct opset_map {
    size_t n;
    Onnx__OperatorSetIdProto **ids;
} opset_map;

/* One level of function inlining: how names inside the body map to names outside. */
typedef struct scope {
    const struct scope *parent;
    const Onnx__FunctionProto *fn; /* NULL at the top level */
    const Onnx__NodeProto *call;
    char **actual_in;  /* resolved names of the call's inputs, fn->n_input of them ("" omitted) */
    char **actual_out; /* resolved names of the call's outputs */
    char *prefix;      /* unique prefix for names local to the body */
    opset_map opsets;
    int depth;
} scope;

typedef struct builder {
    loader ld;
    const Onnx__ModelProto *mp;
    const raw_scan *raw; /* where each initializer's raw_data is (1b) */
    int raw_fd;          /* the model file, to read it from; -1: it is in raw->base */
    opset_map model_opsets;
    pnode *nodes;
    int n_nodes;
    int cap_nodes;
    int n_calls; /* function calls inlined so far: makes prefixes unique */
} builder;

static bool default_domain(const char *d)
{
    return d == NULL || d[0] == '\0' || strcmp(d, "ai.onnx") == 0;
}

static bool domain_eq(const char *a, const char *b)
{
    if (default_domain(a) || default_domain(b))
        return default_domain(a) && default_domain(b);
    return strcmp(a, b) == 0;
}

static int64_t opset_of(const opset_map *o, const char *domain)
{
    for (size_t i = 0; i < o->n; i++)
        if (domain_eq(o->ids[i]->domain, domain))
            return o->ids[i]->version;
    return -1;
}

static void free_attr(onyx_attr *a)
{
    free(a->name);
    free(a->s);
    free(a->floats);
    free(a->ints);
    if (a->strings)
        for (size_t i = 0; i < a->n; i++)
            free(a->strings[i]);
    free(a->strings);
    free(a->t.data);
}

static void free_pnode(pnode *p)
{
    free(p->name);
    free(p->op_type);
    free(p->domain);
    for (int i = 0; i < p->n_in; i++)
        free(p->in[i]);
    free(p->in);
    for (int i = 0; i < p->n_out; i++)
        free(p->out[i]);
    free(p->out);
    for (int i = 0; i < p->n_attr; i++)
        free_attr(&p->attr[i]);
    free(p->attr);
}

static onyx_status nomem(const loader *ld)
{
    return onyx_err(ld->err, ONYX_ERR_NOMEM, "%s: out of memory", ld->name);
}

/* Converts one AttributeProto (named `name`) into a. */
static onyx_status convert_attr(const loader *ld, const char *node_name,
                                const Onnx__AttributeProto *ap, const char *name, onyx_attr *a)
{
    memset(a, 0, sizeof(*a));
    a->name = onyx_strdup(name);
    if (a->name == NULL)
        return nomem(ld);
    onyx_attr_type type = ap->has_type ? (onyx_attr_type)ap->type : ONYX_ATTR_UNDEFINED;
    if (type == ONYX_ATTR_UNDEFINED) { /* IR < 0.0.2 files did not always say: guess */
        if (ap->n_floats) type = ONYX_ATTR_FLOATS;
        else if (ap->n_ints) type = ONYX_ATTR_INTS;
        else if (ap->n_strings) type = ONYX_ATTR_STRINGS;
        else if (ap->t) type = ONYX_ATTR_TENSOR;
        else if (ap->g) type = ONYX_ATTR_GRAPH;
        else if (ap->has_s) type = ONYX_ATTR_STRING;
        else if (ap->has_f) type = ONYX_ATTR_FLOAT;
        else if (ap->has_i) type = ONYX_ATTR_INT;
    }
    a->type = type;
    switch (type) {
    case ONYX_ATTR_FLOAT: a->f = ap->f; break;
    case ONYX_ATTR_INT: a->i = ap->i; break;
    case ONYX_ATTR_STRING:
        a->s = malloc(ap->s.len + 1);
        if (a->s == NULL)
            return nomem(ld);
        if (ap->s.len)
            memcpy(a->s, ap->s.data, ap->s.len);
        a->s[ap->s.len] = '\0';
        a->s_len = ap->s.len;
        break;
    case ONYX_ATTR_FLOATS:
        a->floats = onyx_calloc(ap->n_floats + 1, sizeof(float));
        if (a->floats == NULL)
            return nomem(ld);
        if (ap->n_floats)
            memcpy(a->floats, ap->floats, ap->n_floats * sizeof(float));
        a->n = ap->n_floats;
        break;
    case ONYX_ATTR_INTS:
        a->ints = onyx_calloc(ap->n_ints + 1, sizeof(int64_t));
        if (a->ints == NULL)
            return nomem(ld);
        if (ap->n_ints)
            memcpy(a->ints, ap->ints, ap->n_ints * sizeof(int64_t));
        a->n = ap->n_ints;
        break;
    case ONYX_ATTR_STRINGS:
        a->strings = onyx_calloc(ap->n_strings + 1, sizeof(char *));
        if (a->strings == NULL)
            return nomem(ld);
        a->n = ap->n_strings;
        for (size_t i = 0; i < ap->n_strings; i++) {
            a->strings[i] = malloc(ap->strings[i].len + 1);
            if (a->strings[i] == NULL)
                return nomem(ld);
            if (ap->strings[i].len)
                memcpy(a->strings[i], ap->strings[i].data, ap->strings[i].len);
            a->strings[i][ap->strings[i].len] = '\0';
        }
        break;
    case ONYX_ATTR_TENSOR: {
        if (ap->t == NULL)
            return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                            "%s: node \"%s\": tensor attribute %s has no tensor", ld->name,
                            node_name, name);
        onyx_status st = tensor_alloc_decode(ld, ap->t, &a->t);
        if (st != ONYX_OK)
            return st;
        break;
    }
    case ONYX_ATTR_UNDEFINED:
        return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                        "%s: node \"%s\": attribute %s has no type and no value", ld->name,
                        node_name, name);
    default:
        /* graphs, sparse tensors, type protos: kept as typed placeholders; no op we implement
         * takes them, so a node that has one is refused by its op's init or as unsupported. */
        if (type > ONYX_ATTR_TYPE_PROTOS)
            return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                            "%s: node \"%s\": attribute %s has unknown type %d", ld->name,
                            node_name, name, (int)type);
        break;
    }
    return ONYX_OK;
}

static const Onnx__FunctionProto *find_function(const builder *b, const char *domain,
                                                const char *name)
{
    for (size_t i = 0; i < b->mp->n_functions; i++) {
        const Onnx__FunctionProto *f = b->mp->functions[i];
        if (f->name && strcmp(f->name, name) == 0 && domain_eq(f->domain, domain))
            return f;
    }
    return NULL;
}

/* The name, in the graph's namespace, of `name` used inside scope s. Returns a new string. */
static char *resolve_name(const scope *s, const char *name)
{
    if (name == NULL || name[0] == '\0')
        return onyx_strdup("");
    if (s->fn == NULL)
        return onyx_strdup(name);
    for (size_t i = 0; i < s->fn->n_input; i++)
        if (strcmp(s->fn->input[i], name) == 0)
            return onyx_strdup(s->actual_in[i]);
    for (size_t i = 0; i < s->fn->n_output; i++)
        if (strcmp(s->fn->output[i], name) == 0)
            return onyx_strdup(s->actual_out[i]);
    size_t n = strlen(s->prefix) + strlen(name) + 2;
    char *r = malloc(n);
    if (r)
        snprintf(r, n, "%s/%s", s->prefix, name);
    return r;
}

/* Finds the attribute a function body refers to with ref_attr_name: on the call node, else the
 * function's default. NULL when neither has it (the attribute is then left out). */
static const Onnx__AttributeProto *resolve_ref(const scope *s, const char *ref)
{
    for (const scope *sc = s; sc != NULL && sc->fn != NULL; sc = sc->parent) {
        const Onnx__AttributeProto *found = NULL;
        for (size_t i = 0; i < sc->call->n_attribute; i++)
            if (sc->call->attribute[i]->name && strcmp(sc->call->attribute[i]->name, ref) == 0)
                found = sc->call->attribute[i];
        if (found == NULL)
            for (size_t i = 0; i < sc->fn->n_attribute_proto; i++)
                if (sc->fn->attribute_proto[i]->name &&
                    strcmp(sc->fn->attribute_proto[i]->name, ref) == 0)
                    found = sc->fn->attribute_proto[i];
        if (found == NULL || found->ref_attr_name == NULL || found->ref_attr_name[0] == '\0')
            return found;
        ref = found->ref_attr_name; /* the call itself was inside a function: look further out */
    }
    return NULL;
}

static onyx_status add_nodes(builder *b, const scope *s, Onnx__NodeProto *const *nodes, size_t n);

static onyx_status push_pnode(builder *b, pnode *p)
{
    if (b->n_nodes == b->cap_nodes) {
        int cap = b->cap_nodes ? 2 * b->cap_nodes : 64;
        pnode *nn = realloc(b->nodes, sizeof(pnode) * (size_t)cap);
        if (nn == NULL)
            return nomem(&b->ld);
        b->nodes = nn;
        b->cap_nodes = cap;
    }
    b->nodes[b->n_nodes++] = *p;
    return ONYX_OK;
}

static onyx_status inline_call(builder *b, const scope *s, const Onnx__NodeProto *np,
                               const Onnx__FunctionProto *fn)
{
    const loader *ld = &b->ld;
    const char *nname = np->name ? np->name : "";
    if (s->depth >= ONYX_MAX_NESTING)
        return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                        "%s: node \"%s\": model-local functions call each other more than %d deep "
                        "(recursive?)",
                        ld->name, nname, ONYX_MAX_NESTING);
    if (np->n_input > fn->n_input || np->n_output > fn->n_output)
        return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                        "%s: node \"%s\" calls function %s with %zu inputs and %zu outputs, it has "
                        "%zu and %zu",
                        ld->name, nname, fn->name, np->n_input, np->n_output, fn->n_input,
                        fn->n_output);
    scope inner;
    memset(&inner, 0, sizeof inner);
    inner.parent = s;
    inner.fn = fn;
    inner.call = np;
    inner.depth = s->depth + 1;
    inner.opsets.n = fn->n_opset_import;
    inner.opsets.ids = fn->opset_import;
    onyx_status st = ONYX_OK;
    inner.actual_in = onyx_calloc(fn->n_input + 1, sizeof(char *));
    inner.actual_out = onyx_calloc(fn->n_output + 1, sizeof(char *));
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s#%d", fn->name, ++b->n_calls);
    const char *base = s->prefix ? s->prefix : "";
    size_t plen = strlen(base) + strlen(nname) + strlen(prefix) + 3;
    inner.prefix = malloc(plen);
    if (inner.actual_in == NULL || inner.actual_out == NULL || inner.prefix == NULL) {
        st = nomem(ld);
        goto done;
    }
    snprintf(inner.prefix, plen, "%s%s%s/%s", base, base[0] ? "/" : "", nname, prefix);
    for (size_t i = 0; i < fn->n_input; i++) {
        inner.actual_in[i] = resolve_name(s, i < np->n_input ? np->input[i] : "");
        if (inner.actual_in[i] == NULL) {
            st = nomem(ld);
            goto done;
        }
    }
    for (size_t i = 0; i < fn->n_output; i++) {
        inner.actual_out[i] = resolve_name(s, i < np->n_output ? np->output[i] : "");
        if (inner.actual_out[i] == NULL) {
            st = nomem(ld);
            goto done;
        }
    }
    st = add_nodes(b, &inner, fn->node, fn->n_node);
done:
    for (size_t i = 0; inner.actual_in && i < fn->n_input; i++)
        free(inner.actual_in[i]);
    for (size_t i = 0; inner.actual_out && i < fn->n_output; i++)
        free(inner.actual_out[i]);
    free(inner.actual_in);
    free(inner.actual_out);
    free(inner.prefix);
    return st;
}

static onyx_status add_node(builder *b, const scope *s, const Onnx__NodeProto *np)
{
    const loader *ld = &b->ld;
    const char *nname = np->name ? np->name : "";
    if (np->op_type == NULL || np->op_type[0] == '\0')
        return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL, "%s: node \"%s\" has no op_type",
                        ld->name, nname);
    const Onnx__FunctionProto *fn = find_function(b, np->domain, np->op_type);
    if (fn != NULL)
        return inline_call(b, s, np, fn);

    pnode p;
    memset(&p, 0, sizeof p);
    onyx_status st = ONYX_OK;
    if (s->fn == NULL) {
        p.name = onyx_strdup(nname);
    } else {
        size_t n = strlen(s->prefix) + strlen(nname) + 2;
        p.name = malloc(n);
        if (p.name)
            snprintf(p.name, n, "%s/%s", s->prefix, nname);
    }
    p.op_type = onyx_strdup(np->op_type);
    p.domain = onyx_strdup(default_domain(np->domain) ? "" : np->domain);
    p.opset = opset_of(s->fn ? &s->opsets : &b->model_opsets, np->domain);
    if (p.opset < 0 && s->fn) /* a function may rely on the model's imports */
        p.opset = opset_of(&b->model_opsets, np->domain);
    p.in = onyx_calloc(np->n_input + 1, sizeof(char *));
    p.out = onyx_calloc(np->n_output + 1, sizeof(char *));
    p.attr = onyx_calloc(np->n_attribute + 1, sizeof(onyx_attr));
    if (!p.name || !p.op_type || !p.domain || !p.in || !p.out || !p.attr) {
        st = nomem(ld);
        goto fail;
    }
    if (np->n_input > 4096 || np->n_output > 4096 || np->n_attribute > 4096) {
        st = onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                      "%s: node \"%s\" has more than 4096 inputs, outputs or attributes", ld->name,
                      nname);
        goto fail;
    }
    for (size_t i = 0; i < np->n_input; i++, p.n_in++)
        if ((p.in[i] = resolve_name(s, np->input[i])) == NULL) {
            st = nomem(ld);
            goto fail;
        }
    for (size_t i = 0; i < np->n_output; i++, p.n_out++)
        if ((p.out[i] = resolve_name(s, np->output[i])) == NULL) {
            st = nomem(ld);
            goto fail;
        }
    for (size_t i = 0; i < np->n_attribute; i++) {
        const Onnx__AttributeProto *ap = np->attribute[i];
        const char *aname = ap->name ? ap->name : "";
        if (aname[0] == '\0') {
            st = onyx_err(ld->err, ONYX_ERR_INVALID_MODEL, "%s: node \"%s\" has an unnamed attribute",
                          ld->name, nname);
            goto fail;
        }
        for (int j = 0; j < p.n_attr; j++)
            if (strcmp(p.attr[j].name, aname) == 0) {
                st = onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                              "%s: node \"%s\" has attribute %s twice", ld->name, nname, aname);
                goto fail;
            }
        if (ap->ref_attr_name && ap->ref_attr_name[0]) {
            if (s->fn == NULL) {
                st = onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                              "%s: node \"%s\": attribute %s refers to %s outside a function",
                              ld->name, nname, aname, ap->ref_attr_name);
                goto fail;
            }
            ap = resolve_ref(s, ap->ref_attr_name);
            if (ap == NULL)
                continue; /* not given by the caller and no default: attribute absent */
        }
        st = convert_attr(ld, p.name, ap, aname, &p.attr[p.n_attr]);
        p.n_attr++; /* count it even on failure so that free_pnode frees what was made */
        if (st != ONYX_OK)
            goto fail;
    }
    st = push_pnode(b, &p);
    if (st == ONYX_OK)
        return ONYX_OK;
fail:
    free_pnode(&p);
    return st;
}

static onyx_status add_nodes(builder *b, const scope *s, Onnx__NodeProto *const *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        onyx_status st = add_node(b, s, nodes[i]);
        if (st != ONYX_OK)
            return st;
    }
    return ONYX_OK;
}

/* ---- 2c. values ------------------------------------------------------------------------------ */

/* Name -> value index, open addressing (the graph is built once; lookups are at load time). */
typedef struct name_map {
    int *slots; /* value index + 1, 0 = empty */
    size_t mask;
} name_map;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211u;
    return h;
}

static int map_find(const name_map *nm, const onyx_model *m, const char *name)
{
    for (size_t i = hash_str(name) & nm->mask;; i = (i + 1) & nm->mask) {
        int v = nm->slots[i];
        if (v == 0)
            return -1;
        if (strcmp(m->values[v - 1].name, name) == 0)
            return v - 1;
    }
}

static void map_put(name_map *nm, const onyx_model *m, int idx)
{
    size_t i = hash_str(m->values[idx].name) & nm->mask;
    while (nm->slots[i] != 0)
        i = (i + 1) & nm->mask;
    nm->slots[i] = idx + 1;
}

typedef struct graph_builder {
    builder *b;
    onyx_model *m;
    name_map nm;
    int cap_values;
} graph_builder;

/* Adds a value named `name`; -1 (and err set) when the name is taken or empty. */
static int add_value(graph_builder *g, const char *name, onyx_value_kind kind, const char *what)
{
    const loader *ld = &g->b->ld;
    onyx_model *m = g->m;
    if (name == NULL || name[0] == '\0') {
        onyx_err(ld->err, ONYX_ERR_INVALID_MODEL, "%s: %s has an empty name", ld->name, what);
        return -1;
    }
    int prev = map_find(&g->nm, m, name);
    if (prev >= 0) {
        onyx_err(ld->err, ONYX_ERR_INVALID_MODEL, "%s: value name \"%s\" is defined twice (%s)",
                 ld->name, name, what);
        return -1;
    }
    if (m->n_values >= g->cap_values) {
        onyx_err(ld->err, ONYX_ERR_INTERNAL, "%s: value table full", ld->name);
        return -1;
    }
    int idx = m->n_values++;
    onyx_value *v = &m->values[idx];
    memset(v, 0, sizeof(*v));
    v->name = onyx_strdup(name);
    if (v->name == NULL) {
        m->n_values--;
        nomem(ld);
        return -1;
    }
    v->kind = kind;
    v->producer = -1;
    v->info.rank = -1;
    v->decl.rank = -1;
    map_put(&g->nm, m, idx);
    return idx;
}

/* Reads the declared type of a graph input/output into v. */
static onyx_status declared_type(const loader *ld, const Onnx__ValueInfoProto *vi, onyx_value *v,
                                 const char *what)
{
    const Onnx__TypeProto *tp = vi->type;
    if (tp == NULL)
        return ONYX_OK; /* untyped: inferred later */
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
        return onyx_err(ld->err, ONYX_ERR_UNSUPPORTED,
                        "%s: %s \"%s\" is a %s; onyx supports tensors only", ld->name, what,
                        v->name,
                        tp->value_case == ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE   ? "sequence"
                        : tp->value_case == ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE ? "optional"
                        : tp->value_case == ONNX__TYPE_PROTO__VALUE_MAP_TYPE      ? "map"
                        : tp->value_case == ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE
                            ? "sparse tensor"
                            : "value of no type");
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->has_elem_type && tt->elem_type != 0) {
        if (!onyx_dtype_is_known(tt->elem_type))
            return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                            "%s: %s \"%s\" has unknown element type %d", ld->name, what, v->name,
                            (int)tt->elem_type);
        if (tt->elem_type == ONYX_DTYPE_STRING)
            return onyx_err(ld->err, ONYX_ERR_UNSUPPORTED,
                            "%s: %s \"%s\" holds strings, which onyx does not support", ld->name,
                            what, v->name);
        v->info.dtype = (onyx_dtype)tt->elem_type;
    }
    if (tt->shape == NULL)
        return ONYX_OK;
    if (tt->shape->n_dim > ONYX_MAX_RANK)
        return onyx_err(ld->err, ONYX_ERR_UNSUPPORTED,
                        "%s: %s \"%s\" has rank %zu, onyx supports at most %d", ld->name, what,
                        v->name, tt->shape->n_dim, ONYX_MAX_RANK);
    v->info.rank = (int)tt->shape->n_dim;
    for (size_t i = 0; i < tt->shape->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        v->info.dims[i] = -1;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (d->dim_value < 0)
                return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                                "%s: %s \"%s\" has negative dimension %lld", ld->name, what,
                                v->name, (long long)d->dim_value);
            v->info.dims[i] = d->dim_value;
        } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                   d->dim_param && d->dim_param[0]) {
            v->dim_params[i] = onyx_strdup(d->dim_param);
            if (v->dim_params[i] == NULL)
                return nomem(ld);
        }
    }
    return ONYX_OK;
}

static onyx_status build_graph(builder *b, onyx_model *m)
{
    const loader *ld = &b->ld;
    const Onnx__GraphProto *gp = b->mp->graph;
    graph_builder g = {b, m, {NULL, 0}, 0};
    onyx_status st = ONYX_OK;

    /* Upper bound of the number of values: inputs + initializers + node outputs. */
    size_t cap = gp->n_input + gp->n_initializer + 1;
    for (int i = 0; i < b->n_nodes; i++)
        cap += (size_t)b->nodes[i].n_out;
    if (cap > (size_t)INT_MAX / 4)
        return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL, "%s: too many values", ld->name);
    size_t slots = 16;
    while (slots < 2 * cap)
        slots *= 2;
    g.nm.slots = onyx_calloc(slots, sizeof(int));
    g.nm.mask = slots - 1;
    m->values = onyx_calloc(cap, sizeof(onyx_value));
    m->inputs = onyx_calloc(gp->n_input + 1, sizeof(int));
    m->outputs = onyx_calloc(gp->n_output + 1, sizeof(int));
    m->nodes = onyx_calloc((size_t)b->n_nodes + 1, sizeof(onyx_node));
    g.cap_values = (int)cap;
    if (!g.nm.slots || !m->values || !m->inputs || !m->outputs || !m->nodes) {
        st = nomem(ld);
        goto done;
    }

    /* Initializers: sizes first, then one arena for all of them. */
    size_t total = 0;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        onyx_tensor t;
        size_t nb;
        st = tensor_header(ld, gp->initializer[i], &t, &nb);
        if (st != ONYX_OK)
            goto done;
        size_t padded = (nb + 63) & ~(size_t)63;
        if (padded < nb || total + padded < total) {
            st = onyx_err(ld->err, ONYX_ERR_INVALID_MODEL, "%s: initializers too large", ld->name);
            goto done;
        }
        total += padded;
    }
    m->arena = aligned_alloc(64, total ? total : 64);
    m->arena_size = total;
    if (m->arena == NULL) {
        st = onyx_err(ld->err, ONYX_ERR_NOMEM, "%s: out of memory for %zu bytes of weights",
                      ld->name, total);
        goto done;
    }
    size_t off = 0;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        int v = add_value(&g, tp->name, ONYX_VALUE_INITIALIZER, "an initializer");
        if (v < 0) {
            st = ld->err ? ld->err->code : ONYX_ERR_INVALID_MODEL;
            goto done;
        }
        size_t nb;
        onyx_tensor *t = &m->values[v].info;
        st = tensor_header(ld, tp, t, &nb);
        if (st == ONYX_OK) {
            /* unpack saw this raw_data empty (1b): the bytes come from the model's bytes */
            const raw_slice *sl = &b->raw->slices[i];
            raw_ref raw = {sl->present, sl->len, NULL, b->raw_fd, sl->off};
            if (b->raw_fd < 0)
                raw.mem = b->raw->base + sl->off;
            t->data = (char *)m->arena + off;
            st = tensor_data(ld, tp, t, t->data, nb, &raw);
        }
        if (st != ONYX_OK)
            goto done;
        off += (nb + 63) & ~(size_t)63;
        m->n_initializers++;
    }
    if (gp->n_sparse_initializer) {
        st = onyx_err(ld->err, ONYX_ERR_UNSUPPORTED, "%s: sparse initializers are not supported",
                      ld->name);
        goto done;
    }

    /* Graph inputs; those with an initializer are optional overrides. */
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        int v = vi->name ? map_find(&g.nm, m, vi->name) : -1;
        if (v >= 0 && m->values[v].kind == ONYX_VALUE_INITIALIZER) {
            if (m->values[v].is_graph_input) {
                st = onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                              "%s: graph input \"%s\" is listed twice", ld->name, vi->name);
                goto done;
            }
            m->values[v].is_graph_input = true;
            continue;
        }
        v = add_value(&g, vi->name, ONYX_VALUE_INPUT, "a graph input");
        if (v < 0) {
            st = ld->err ? ld->err->code : ONYX_ERR_INVALID_MODEL;
            goto done;
        }
        m->values[v].is_graph_input = true;
        st = declared_type(ld, vi, &m->values[v], "graph input");
        if (st != ONYX_OK)
            goto done;
        if (m->values[v].info.dtype == ONYX_DTYPE_UNDEFINED) {
            st = onyx_err(ld->err, ONYX_ERR_INVALID_MODEL, "%s: graph input \"%s\" has no type",
                          ld->name, vi->name);
            goto done;
        }
        m->inputs[m->n_inputs++] = v;
    }

    /* Node outputs. */
    for (int i = 0; i < b->n_nodes; i++) {
        const pnode *p = &b->nodes[i];
        for (int j = 0; j < p->n_out; j++) {
            if (p->out[j][0] == '\0')
                continue;
            int prev = map_find(&g.nm, m, p->out[j]);
            if (prev >= 0) {
                const onyx_value *pv = &m->values[prev];
                st = onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                              "%s: node \"%s\" (%s) output \"%s\" is already %s", ld->name,
                              p->name, p->op_type, p->out[j],
                              pv->kind == ONYX_VALUE_INPUT         ? "a graph input"
                              : pv->kind == ONYX_VALUE_INITIALIZER ? "an initializer"
                                                                   : "produced by another node");
                goto done;
            }
            int v = add_value(&g, p->out[j], ONYX_VALUE_NODE, "a node output");
            if (v < 0) {
                st = ld->err ? ld->err->code : ONYX_ERR_INVALID_MODEL;
                goto done;
            }
            m->values[v].producer = i;
        }
    }

    /* Nodes: move names and attributes over; resolve inputs. */
    for (int i = 0; i < b->n_nodes; i++) {
        pnode *p = &b->nodes[i];
        onyx_node *n = &m->nodes[i];
        n->in = onyx_calloc((size_t)p->n_in + 1, sizeof(int));
        n->out = onyx_calloc((size_t)p->n_out + 1, sizeof(int));
        n->name = p->name, p->name = NULL;
        n->op_type = p->op_type, p->op_type = NULL;
        n->domain = p->domain, p->domain = NULL;
        n->opset = p->opset;
        n->attr = p->attr, p->attr = NULL;
        n->n_attr = p->n_attr, p->n_attr = 0;
        m->n_nodes = i + 1;
        if (n->in == NULL || n->out == NULL) {
            st = nomem(ld);
            goto done;
        }
        n->n_in = p->n_in;
        n->n_out = p->n_out;
        for (int j = 0; j < p->n_in; j++) {
            if (p->in[j][0] == '\0') {
                n->in[j] = -1;
                continue;
            }
            n->in[j] = map_find(&g.nm, m, p->in[j]);
            if (n->in[j] < 0) {
                st = onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                              "%s: node \"%s\" (%s) input \"%s\" is not a graph input, an "
                              "initializer or the output of any node",
                              ld->name, n->name, n->op_type, p->in[j]);
                goto done;
            }
        }
        for (int j = 0; j < p->n_out; j++)
            n->out[j] = p->out[j][0] ? map_find(&g.nm, m, p->out[j]) : -1;
    }

    /* Graph outputs. */
    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        int v = vi->name ? map_find(&g.nm, m, vi->name) : -1;
        if (v < 0) {
            st = onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                          "%s: graph output \"%s\" is not produced by any node, input or "
                          "initializer",
                          ld->name, vi->name ? vi->name : "");
            goto done;
        }
        onyx_value *val = &m->values[v];
        onyx_value decl;
        memset(&decl, 0, sizeof decl);
        decl.name = val->name;
        decl.info.rank = -1;
        st = declared_type(ld, vi, &decl, "graph output");
        for (int k = 0; k < ONYX_MAX_RANK; k++) {
            if (val->dim_params[k] == NULL)
                val->dim_params[k] = decl.dim_params[k];
            else
                free(decl.dim_params[k]);
        }
        if (st != ONYX_OK)
            goto done;
        /* What the model declares is checked against what the nodes produce (graph.c). */
        val->decl = decl.info;
        val->is_graph_output = true;
        m->outputs[m->n_outputs++] = v;
    }
done:
    free(g.nm.slots);
    return st;
}

/* ---- 3. the whole load ------------------------------------------------------------------------ */

static onyx_status load_proto(builder *b, onyx_model *m)
{
    const loader *ld = &b->ld;
    const Onnx__ModelProto *mp = b->mp;
    if (!mp->has_ir_version || mp->ir_version < 3 || mp->ir_version > 10)
        return onyx_err(ld->err, ONYX_ERR_UNSUPPORTED,
                        "%s: IR version %lld is not supported (onyx reads IR versions 3 to 10)",
                        ld->name, (long long)mp->ir_version);
    if (mp->graph == NULL)
        return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL, "%s: the model has no graph", ld->name);
    m->ir_version = mp->ir_version;
    m->producer = onyx_strdup(mp->producer_name);
    m->producer_version = onyx_strdup(mp->producer_version);
    m->opset_domain = onyx_calloc(mp->n_opset_import + 1, sizeof(char *));
    m->opset_version = onyx_calloc(mp->n_opset_import + 1, sizeof(int64_t));
    if (!m->producer || !m->producer_version || !m->opset_domain || !m->opset_version)
        return nomem(ld);
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        for (size_t j = 0; j < i; j++)
            if (domain_eq(mp->opset_import[j]->domain, o->domain))
                return onyx_err(ld->err, ONYX_ERR_INVALID_MODEL,
                                "%s: opset of domain \"%s\" imported twice", ld->name,
                                o->domain ? o->domain : "");
        if (default_domain(o->domain) && (o->version < 1 || o->version > 21))
            return onyx_err(ld->err, ONYX_ERR_UNSUPPORTED,
                            "%s: imports opset %lld of the default domain; onyx supports 1 to 21",
                            ld->name, (long long)o->version);
        m->opset_domain[i] = onyx_strdup(default_domain(o->domain) ? "" : o->domain);
        m->opset_version[i] = o->version;
        m->n_opsets = (int)i + 1;
        if (m->opset_domain[i] == NULL)
            return nomem(ld);
    }
    b->model_opsets.n = mp->n_opset_import;
    b->model_opsets.ids = mp->opset_import;
    scope top;
    memset(&top, 0, sizeof top);
    onyx_status st = add_nodes(b, &top, mp->graph->node, mp->graph->n_node);
    if (st != ONYX_OK)
        return st;
    return build_graph(b, m);
}

void onyx_load_options_init(onyx_load_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->size = sizeof(*opt);
}

/* The bytes of a model being loaded. */
typedef struct model_bytes {
    const uint8_t *data;
    size_t size;
    int fd;       /* the model file: initializers' raw_data is read from it into the arena, and
                   * data is released as soon as protobuf-c has unpacked it; -1: raw_data is
                   * copied from data (the caller's bytes) */
    void *mapped; /* data is this mapping of the file, or */
    void *owned;  /* this malloc'd copy of it, or neither */
} model_bytes;

static void release_bytes(model_bytes *mb)
{
    if (mb->mapped)
        munmap(mb->mapped, mb->size);
    free(mb->owned);
    mb->mapped = NULL;
    mb->owned = NULL;
    mb->data = NULL;
}

static onyx_status load_bytes(model_bytes *mb, const char *base_dir, const char *name,
                              const onyx_load_options *opt, onyx_model **out, onyx_error *err);
static onyx_status load_file(const char *path, const onyx_load_options *opt, onyx_model **out,
                             onyx_error *err);

onyx_status onyx_model_load_buffer(const void *data, size_t size, const char *base_dir,
                                   const char *name, onyx_model **out, onyx_error *err)
{
    return onyx_model_load_buffer_ex(data, size, base_dir, name, NULL, out, err);
}

/* A file (path) or bytes (data, size), with the caller's options checked and a failure logged. */
static onyx_status load_with_options(const char *path, const void *data, size_t size,
                                     const char *base_dir, const char *name,
                                     const onyx_load_options *opt, onyx_model **out,
                                     onyx_error *err)
{
    onyx_load_options o;
    onyx_load_options_init(&o);
    if (opt != NULL && !onyx_options_copy(&o, sizeof o, opt))
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "onyx_model_load: options.size is %zu: call onyx_load_options_init() "
                        "first (or the program was built against a newer onyx.h)",
                        opt->size);
    /* A failure is logged too, so a report is needed even when the caller passes none. */
    onyx_error local;
    onyx_error *e = err ? err : &local;
    model_bytes mb = {data, size, -1, NULL, NULL};
    onyx_status st =
        path ? load_file(path, &o, out, e) : load_bytes(&mb, base_dir, name, &o, out, e);
    if (st != ONYX_OK && o.log != NULL)
        o.log(o.log_user, ONYX_LOG_ERROR, e->msg);
    return st;
}

onyx_status onyx_model_load_buffer_ex(const void *data, size_t size, const char *base_dir,
                                      const char *name, const onyx_load_options *opt,
                                      onyx_model **out, onyx_error *err)
{
    return load_with_options(NULL, data, size, base_dir, name, opt, out, err);
}

/* Unpacks the model's bytes, with the initializers' raw_data left out when there is any (1b):
 * *scan says where it is. On failure *out is NULL. */
static onyx_status unpack_model(const model_bytes *mb, const char *name, raw_scan *scan,
                                Onnx__ModelProto **out, onyx_error *err)
{
    *out = NULL;
    scan->base = mb->data;
    size_t n = strip_walk(scan, LEVEL_MODEL, mb->data, mb->size, NULL);
    if (n == SIZE_MAX && scan->nomem)
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", name);
    if (n == SIZE_MAX)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: not a valid ONNX model (corrupt protobuf: %s at byte %zu)", name,
                        scan->why, scan->fail_at);
    uint8_t *stripped = NULL;
    if (scan->saved > 0) {
        stripped = malloc(n ? n : 1);
        if (stripped == NULL)
            return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory (%zu bytes)", name, n);
        size_t written = strip_walk(scan, LEVEL_MODEL, mb->data, mb->size, stripped);
        assert(written == n);
        (void)written;
    }
    Onnx__ModelProto *mp = stripped ? onnx__model_proto__unpack(NULL, n, stripped)
                                    : onnx__model_proto__unpack(NULL, mb->size, mb->data);
    free(stripped);
    if (mp == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: not a valid ONNX model (protobuf parsing failed)", name);
    /* The walk follows the fields protobuf-c reads, so both see the same initializers. */
    size_t n_init = mp->graph ? mp->graph->n_initializer : 0;
    bool agree = n_init == scan->n_slices;
    for (size_t i = 0; agree && i < n_init; i++)
        agree = (mp->graph->initializer[i]->has_raw_data != 0) == scan->slices[i].present;
    if (!agree) {
        onnx__model_proto__free_unpacked(mp, NULL);
        return onyx_err(err, ONYX_ERR_INTERNAL,
                        "%s: protobuf-c unpacked %zu initializers, the raw_data scan found %zu",
                        name, n_init, scan->n_slices);
    }
    *out = mp;
    return ONYX_OK;
}

/* Loads the model in *mb. A file's bytes are released here as soon as protobuf-c has unpacked
 * them, before the weights are read into the arena: with the raw_data never unpacked, the file's
 * bytes, the message and the arena together stay near one model's size. */
static onyx_status load_bytes(model_bytes *mb, const char *base_dir, const char *name,
                              const onyx_load_options *opt, onyx_model **out, onyx_error *err)
{
    if (out == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_model_load_buffer: out is NULL");
    *out = NULL;
    if (name == NULL)
        name = "<memory>";
    if (mb->data == NULL && mb->size != 0)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: data is NULL", name);
    if (mb->size > ONYX_MAX_FILE_SIZE)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: %zu bytes is over protobuf's 2 GiB limit (store large weights as "
                        "external data)",
                        name, mb->size);
    if (mb->size == 0)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: empty file, not an ONNX model", name);
    size_t offset;
    const char *why;
    if (!onyx_pb_wire_check(mb->data, mb->size, true, &offset, &why))
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: not a valid ONNX model (corrupt protobuf: %s at byte %zu)", name, why,
                        offset);
    raw_scan scan;
    memset(&scan, 0, sizeof scan);
    Onnx__ModelProto *mp = NULL;
    onyx_status st = unpack_model(mb, name, &scan, &mp, err);
    if (mb->fd >= 0)
        release_bytes(mb); /* everything else needed is in mp now */
    if (st != ONYX_OK) {
        free(scan.slices);
        return st;
    }

    onyx_model *m = calloc(1, sizeof(*m));
    builder b;
    memset(&b, 0, sizeof b);
    b.ld.name = name;
    b.ld.base_dir = base_dir;
    b.ld.err = err;
    b.mp = mp;
    b.raw = &scan;
    b.raw_fd = mb->fd;
    if (m == NULL || (m->name = onyx_strdup(name)) == NULL) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    st = load_proto(&b, m);
    for (int i = 0; i < b.n_nodes; i++)
        free_pnode(&b.nodes[i]);
    free(b.nodes);
    b.nodes = NULL;
    onnx__model_proto__free_unpacked(mp, NULL);
    mp = NULL;
    free(scan.slices);
    scan.slices = NULL;
    if (st != ONYX_OK)
        goto fail;
    st = onyx_graph_prepare(m, opt, err);
    if (st != ONYX_OK)
        goto fail;
    *out = m;
    return ONYX_OK;
fail:
    if (mp)
        onnx__model_proto__free_unpacked(mp, NULL);
    free(scan.slices);
    onyx_model_destroy(m);
    return st;
}

void onyx_path_dir(const char *path, char *dir, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, size, ".");
    else if (slash == path)
        snprintf(dir, size, "/");
    else
        snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

onyx_status onyx_model_load(const char *path, onyx_model **out, onyx_error *err)
{
    return onyx_model_load_ex(path, NULL, out, err);
}


onyx_status onyx_model_load_ex(const char *path, const onyx_load_options *opt, onyx_model **out,
                               onyx_error *err)
{
    if (path == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_model_load: path is NULL");
    return load_with_options(path, NULL, 0, NULL, NULL, opt, out, err);
}

/* The file is mapped rather than read: unpack touches only the pages that are not weights, and
 * the weights are read from the file straight into the arena (pread, as fast as reading the
 * file once; nothing holds a second copy of them). As with any mapped file, another process
 * truncating the file while it loads can end this one with SIGBUS; onyx itself never rewrites
 * a model in place (checkpoints and exports go through a temporary file and a rename). */
static onyx_status load_file(const char *path, const onyx_load_options *opt, onyx_model **out,
                             onyx_error *err)
{
    if (out == NULL || path == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_model_load: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return onyx_err(err, ONYX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return onyx_err(err, ONYX_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > ONYX_MAX_FILE_SIZE) {
        close(fd);
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: %lld bytes is over protobuf's 2 GiB limit (store large weights as "
                        "external data)",
                        path, (long long)sb.st_size);
    }
    model_bytes mb = {NULL, (size_t)sb.st_size, fd, NULL, NULL};
    if (mb.size > 0) {
        void *map = mmap(NULL, mb.size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map != MAP_FAILED) {
            mb.mapped = map;
        } else { /* a file system that cannot map files: read it */
            raw_ref whole = {true, mb.size, NULL, fd, 0};
            mb.owned = malloc(mb.size);
            if (mb.owned == NULL) {
                close(fd);
                return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory reading %zu bytes", path,
                                mb.size);
            }
            if (!copy_raw(&whole, mb.owned)) {
                free(mb.owned);
                close(fd);
                return onyx_err(err, ONYX_ERR_IO, "%s: read error", path);
            }
        }
        mb.data = mb.mapped ? mb.mapped : mb.owned;
    }
    /* External data is relative to the model's folder. */
    char dir[PATH_MAX];
    onyx_path_dir(path, dir, sizeof dir);
    onyx_status st = load_bytes(&mb, dir, path, opt, out, err);
    release_bytes(&mb);
    close(fd);
    return st;
}

void onyx_model_destroy(onyx_model *m)
{
    if (m == NULL)
        return;
    onyx_graph_free(m);
    for (int i = 0; i < m->n_nodes; i++) {
        onyx_node *n = &m->nodes[i];
        free(n->name);
        free(n->op_type);
        free(n->domain);
        free(n->in);
        free(n->out);
        for (int j = 0; j < n->n_attr; j++)
            free_attr(&n->attr[j]);
        free(n->attr);
    }
    free(m->nodes);
    for (int i = 0; i < m->n_values; i++) {
        free(m->values[i].name);
        for (int k = 0; k < ONYX_MAX_RANK; k++)
            free(m->values[i].dim_params[k]);
    }
    free(m->values);
    free(m->inputs);
    free(m->outputs);
    for (int i = 0; i < m->n_opsets; i++)
        free(m->opset_domain[i]);
    free(m->opset_domain);
    free(m->opset_version);
    free(m->producer);
    free(m->producer_version);
    free(m->arena);
    free(m->name);
    free(m);
}

/* ---- accessors ------------------------------------------------------------------------------- */

int64_t onyx_model_ir_version(const onyx_model *m)
{
    return m->ir_version;
}

const char *onyx_model_producer(const onyx_model *m)
{
    return m->producer;
}

const char *onyx_model_producer_version(const onyx_model *m)
{
    return m->producer_version;
}

size_t onyx_model_opset_count(const onyx_model *m)
{
    return (size_t)m->n_opsets;
}

void onyx_model_opset(const onyx_model *m, size_t i, const char **domain, int64_t *version)
{
    if (i >= (size_t)m->n_opsets) {
        *domain = "";
        *version = -1;
        return;
    }
    *domain = m->opset_domain[i];
    *version = m->opset_version[i];
}

size_t onyx_model_input_count(const onyx_model *m)
{
    return (size_t)m->n_inputs;
}

size_t onyx_model_output_count(const onyx_model *m)
{
    return (size_t)m->n_outputs;
}

static void value_info(const onyx_value *v, onyx_value_info *info)
{
    memset(info, 0, sizeof(*info));
    info->name = v->name;
    info->dtype = v->info.dtype;
    info->rank = v->info.rank;
    for (int i = 0; i < ONYX_MAX_RANK; i++) {
        info->dims[i] = i < v->info.rank ? v->info.dims[i] : 0;
        info->dim_params[i] = v->dim_params[i];
    }
}

onyx_status onyx_model_input(const onyx_model *m, size_t i, onyx_value_info *info)
{
    if (i >= (size_t)m->n_inputs)
        return ONYX_ERR_INVALID_ARG;
    value_info(&m->values[m->inputs[i]], info);
    return ONYX_OK;
}

onyx_status onyx_model_output(const onyx_model *m, size_t i, onyx_value_info *info)
{
    if (i >= (size_t)m->n_outputs)
        return ONYX_ERR_INVALID_ARG;
    value_info(&m->values[m->outputs[i]], info);
    return ONYX_OK;
}

size_t onyx_model_node_count(const onyx_model *m)
{
    return (size_t)m->n_nodes;
}

onyx_status onyx_model_node(const onyx_model *m, size_t i, onyx_node_info *info)
{
    if (i >= (size_t)m->n_nodes)
        return ONYX_ERR_INVALID_ARG;
    const onyx_node *n = &m->nodes[i];
    info->name = n->name;
    info->op_type = n->op_type;
    info->domain = n->domain;
    info->opset = n->opset;
    return ONYX_OK;
}

size_t onyx_model_initializer_count(const onyx_model *m)
{
    return (size_t)m->n_initializers;
}

int64_t onyx_model_param_count(const onyx_model *m)
{
    int64_t total = 0;
    for (int i = 0; i < m->n_values; i++) {
        const onyx_value *v = &m->values[i];
        /* rank-0 initializers are hyper-parameters (Dropout's ratio, Clip's bounds) */
        if (v->kind == ONYX_VALUE_INITIALIZER && onyx_dtype_is_float(v->info.dtype) &&
            v->info.rank > 0)
            total += onyx_numel(&v->info);
    }
    return total;
}
