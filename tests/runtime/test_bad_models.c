/* test_bad_models.c — every class of broken model gets a clear error, never a crash.
 *
 * tests/bad/expect.txt lists the committed broken models (made by tests/bad/make_bad.py) with the
 * status and a piece of the message each must give. Built here at run time: a model nested
 * thousands of levels deep, a file over 2 GiB (sparse), and sweeps that truncate a valid model at
 * every length and flip random bytes in it (run under ASan in CI). */
#include "check.h"
#include "onyx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *bad_dir(void)
{
    return ONYX_SOURCE_DIR "/tests/bad";
}

static void check_listed(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/expect.txt", bad_dir());
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL);
    if (fp == NULL)
        return;
    char line[1024];
    int count = 0;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        line[strcspn(line, "\n")] = '\0';
        char *file = strtok(line, "\t");
        char *status = strtok(NULL, "\t");
        char *text = strtok(NULL, "");
        CHECK(file && status && text);
        if (!file || !status || !text)
            continue;
        char model_path[1100];
        snprintf(model_path, sizeof model_path, "%s/%s", bad_dir(), file);
        onyx_model *m = (onyx_model *)1;
        onyx_error err;
        memset(&err, 0, sizeof err);
        onyx_status st = onyx_model_load(model_path, &m, &err);
        if (strcmp(onyx_status_str(st), status) != 0)
            fprintf(stderr, "%s: got %s (%s), expected %s\n", file, onyx_status_str(st), err.msg,
                    status);
        CHECK(strcmp(onyx_status_str(st), status) == 0);
        CHECK(m == NULL);
        CHECK(err.code == st);
        CHECK_MSG(err.msg, text);
        if (st != ONYX_ERR_IO && st != ONYX_ERR_UNSUPPORTED && strstr(err.msg, file) == NULL &&
            strstr(err.msg, "node \"") == NULL)
            fprintf(stderr, "%s: message names neither file nor node: %s\n", file, err.msg);
        onyx_model_destroy(m);
        count++;
    }
    fclose(fp);
    CHECK(count >= 20);
}

/* ---- bytes of a model built by hand --------------------------------------------------------- */

typedef struct bytes {
    uint8_t *p;
    size_t n;
} bytes;

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        out[n++] = b | (v ? 0x80 : 0);
    } while (v);
    return n;
}

/* Wraps inner as field `field` (length-delimited), preceded by `prefix`. */
static bytes wrap(const uint8_t *prefix, size_t np, uint32_t field, bytes inner)
{
    uint8_t hdr[16];
    size_t nh = put_varint(hdr, ((uint64_t)field << 3) | 2);
    nh += put_varint(hdr + nh, inner.n);
    bytes r;
    r.n = np + nh + inner.n;
    r.p = malloc(r.n);
    if (np)
        memcpy(r.p, prefix, np);
    memcpy(r.p + np, hdr, nh);
    memcpy(r.p + np + nh, inner.p, inner.n);
    free(inner.p);
    return r;
}

static bytes nested_model(int depth)
{
    bytes g = {malloc(1), 0};
    static const uint8_t attr_prefix[] = {0x0a, 0x01, 'g', 0xa0, 0x01, 0x05}; /* name, type=GRAPH */
    for (int i = 0; i < depth; i++) {
        bytes attr = wrap(attr_prefix, sizeof attr_prefix, 6, g); /* AttributeProto.g */
        static const uint8_t node_prefix[] = {0x22, 0x02, 'I', 'f'};    /* op_type "If" */
        bytes node = wrap(node_prefix, sizeof node_prefix, 5, attr);   /* NodeProto.attribute */
        g = wrap(NULL, 0, 1, node);                                    /* GraphProto.node */
    }
    static const uint8_t model_prefix[] = {0x08, 0x08, 0x42, 0x02, 0x10, 0x11}; /* ir 8, opset 17 */
    return wrap(model_prefix, sizeof model_prefix, 7, g);
}

static void check_nesting(void)
{
    /* A modest depth loads up to the op check (If is not supported), a deep one is refused before
     * protobuf-c ever recurses into it. */
    bytes ok = nested_model(3);
    onyx_model *m = NULL;
    onyx_error err;
    onyx_status st = onyx_model_load_buffer(ok.p, ok.n, NULL, "nest3.onnx", &m, &err);
    CHECK(st == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "If");
    free(ok.p);

    bytes deep = nested_model(5000);
    st = onyx_model_load_buffer(deep.p, deep.n, NULL, "deep.onnx", &m, &err);
    CHECK(st == ONYX_ERR_INVALID_MODEL);
    CHECK(m == NULL);
    CHECK_MSG(err.msg, "deep.onnx");
    CHECK_MSG(err.msg, "nested too deeply");
    free(deep.p);
}

static void check_huge_file(void)
{
    char path[] = "/tmp/onyx_huge_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    /* sparse: costs no disk */
    CHECK(ftruncate(fd, (off_t)2200 * 1024 * 1024) == 0);
    close(fd);
    onyx_model *m = NULL;
    onyx_error err;
    onyx_status st = onyx_model_load(path, &m, &err);
    CHECK(st == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "over protobuf's 2 GiB limit");
    CHECK_MSG(err.msg, path);
    unlink(path);

    st = onyx_model_load("/nonexistent/model.onnx", &m, &err);
    CHECK(st == ONYX_ERR_IO);
    CHECK_MSG(err.msg, "/nonexistent/model.onnx: cannot open");
    st = onyx_model_load("/tmp", &m, &err);
    CHECK(st == ONYX_ERR_IO);
    CHECK_MSG(err.msg, "not a regular file");
}

static bytes read_all(const char *path)
{
    bytes b = {NULL, 0};
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return b;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    b.p = malloc((size_t)n + 1);
    b.n = fread(b.p, 1, (size_t)n, fp);
    fclose(fp);
    return b;
}

/* Every prefix of a valid model, and random corruptions of it: an error or a model, never a
 * crash (ASan/UBSan catch what a plain build would not). */
static void check_sweeps(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/valid_small.onnx", bad_dir());
    bytes good = read_all(path);
    CHECK(good.n > 100);
    onyx_model *m = NULL;
    onyx_error err;
    onyx_status st = onyx_model_load_buffer(good.p, good.n, NULL, "valid_small.onnx", &m, &err);
    CHECK_OK(st, err.msg);
    onyx_model_destroy(m);

    int failures = 0;
    for (size_t len = 0; len < good.n; len++) {
        m = NULL;
        st = onyx_model_load_buffer(good.p, len, NULL, "cut.onnx", &m, &err);
        if (st != ONYX_OK && (err.msg[0] == '\0' || err.code != st))
            failures++;
        onyx_model_destroy(m);
    }
    CHECK(failures == 0);

    uint8_t *copy = malloc(good.n);
    uint64_t x = 88172645463325252u;
    int loaded = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, good.p, good.n);
        for (int k = 0; k < 1 + iter % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            copy[x % good.n] = (uint8_t)(x >> 32);
        }
        m = NULL;
        st = onyx_model_load_buffer(copy, good.n, NULL, "flip.onnx", &m, &err);
        if (st == ONYX_OK)
            loaded++;
        else if (err.msg[0] == '\0')
            failures++;
        /* A corrupted model that still loads must also run or fail cleanly. */
        if (st == ONYX_OK) {
            onyx_session *s = NULL;
            if (onyx_session_create(m, NULL, &s, &err) == ONYX_OK) {
                float x_data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
                onyx_tensor in = {ONYX_DTYPE_F32, 2, {2, 4}, x_data};
                const char *names[] = {"x"};
                onyx_tensor out[1];
                memset(out, 0, sizeof out);
                if (onyx_session_run(s, 1, names, &in, 0, NULL, out) != ONYX_OK &&
                    onyx_session_errmsg(s)[0] == '\0')
                    failures++;
                onyx_session_destroy(s);
            }
        }
        onyx_model_destroy(m);
    }
    CHECK(failures == 0);
    printf("byte-flip sweep: %d of 3000 corrupted models still loaded\n", loaded);
    free(copy);
    free(good.p);
}

int main(void)
{
    check_listed();
    check_nesting();
    check_huge_file();
    check_sweeps();
    return check_report();
}
