/* test_tensor_io.c — runtime/tensor_io.c: reading and writing .npy files (and .pb dispatch).
 *
 * The NPY_* byte arrays are exactly what numpy 1.24 writes (pasted from `np.save` into a
 * BytesIO); the malformed files are built by hand around one defect each. */
#include "check.h"
#include "test_files.h"
#include "onyx.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void write_bytes(const char *path, const void *data, size_t n)
{
    CHECK(th_write_bytes(path, data, n));
}

/* np.save(f, np.arange(6, dtype='<f4').reshape(2, 3)) */
static const char NPY_F32_2X3[] =
    "\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }   "
    "                                                       \x0a\x00\x00\x00\x00\x00\x00"
    "\x80\x3f\x00\x00\x00@\x00\x00@@\x00\x00\x80@\x00\x00\xa0@";

/* np.save(f, np.array(3.5)) */
static const char NPY_F64_SCALAR[] =
    "\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (), }       "
    "                                                       \x0a\x00\x00\x00\x00\x00\x00"
    "\x0c@";

/* np.save(f, np.array([True, False, True])) */
static const char NPY_BOOL_3[] =
    "\x93NUMPY\x01\x00v\x00{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }     "
    "                                                       \x0a\x01\x00\x01";

/* np.save(f, np.array([[[1, -2]], [[300, -32768]]], dtype='<i2')) */
static const char NPY_I16_2X1X2[] =
    "\x93NUMPY\x01\x00v\x00{'descr': '<i2', 'fortran_order': False, 'shape': (2, 1, 2), }"
    "                                                       \x0a\x01\x00\xfe\xff,\x01\x00"
    "\x80";

/* np.save(f, np.zeros((0, 3), dtype='u1')) */
static const char NPY_U8_EMPTY[] =
    "\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, 'shape': (0, 3), }   "
    "                                                       \x0a";

/* np.lib.format.write_array(f, np.array([1.5, -2], dtype='<f2'), version=(2, 0)) */
static const char NPY_F16_V2[] =
    "\x93NUMPY\x02\x00t\x00\x00\x00{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }"
    "                                                          \x0a\x00>\x00\xc0";

/* A .npy file with the given version and header text (padded by nothing), then data. */
static void write_npy_raw(const char *path, int major, const char *header, const void *data,
                          size_t n)
{
    unsigned char buf[4096];
    size_t hl = strlen(header);
    size_t pos = 0;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    if (major == 1) {
        buf[8] = (unsigned char)(hl & 0xff);
        buf[9] = (unsigned char)(hl >> 8);
        pos = 10;
    } else {
        buf[8] = (unsigned char)(hl & 0xff);
        buf[9] = (unsigned char)(hl >> 8);
        buf[10] = 0;
        buf[11] = 0;
        pos = 12;
    }
    memcpy(buf + pos, header, hl);
    pos += hl;
    if (n)
        memcpy(buf + pos, data, n);
    write_bytes(path, buf, pos + n);
}

/* Reading bytes fails with code and a message naming the file and containing sub. */
static void expect_fail_bytes(const void *bytes, size_t n, onyx_status code, const char *sub)
{
    const char *p = th_path("bad.npy");
    write_bytes(p, bytes, n);
    onyx_tensor t;
    char *name = (char *)"sentinel";
    onyx_error err = {ONYX_OK, ""};
    onyx_status st = onyx_tensor_read_file(p, &t, &name, &err);
    CHECK(st == code);
    if (st != code)
        fprintf(stderr, "  got %s: %s\n", onyx_status_str(st), err.msg);
    CHECK(err.code == code);
    CHECK_MSG(err.msg, p);
    CHECK_MSG(err.msg, sub);
    CHECK(t.data == NULL);
    CHECK(name == NULL);
    if (st == ONYX_OK)
        onyx_tensor_free(&t);
}

static void expect_fail_header(int major, const char *header, const void *data, size_t n,
                               onyx_status code, const char *sub)
{
    write_npy_raw(th_path("bad.npy"), major, header, data, n);
    size_t len;
    unsigned char *bytes = th_slurp(th_path("bad.npy"), &len);
    expect_fail_bytes(bytes, len, code, sub);
    free(bytes);
}

static void test_numpy_files(void)
{
    onyx_tensor t;
    char *name = (char *)"sentinel";
    onyx_error err = {ONYX_OK, ""};

    write_bytes(th_path("a.npy"), NPY_F32_2X3, sizeof(NPY_F32_2X3) - 1);
    CHECK_OK(onyx_tensor_read_file(th_path("a.npy"), &t, &name, &err), err.msg);
    CHECK(t.dtype == ONYX_DTYPE_F32);
    CHECK(t.rank == 2 && t.dims[0] == 2 && t.dims[1] == 3);
    CHECK(name == NULL);
    for (int i = 0; i < 6; i++)
        CHECK(((float *)t.data)[i] == (float)i);
    onyx_tensor_free(&t);
    CHECK(t.data == NULL);

    write_bytes(th_path("b.npy"), NPY_F64_SCALAR, sizeof(NPY_F64_SCALAR) - 1);
    CHECK_OK(onyx_tensor_read_file(th_path("b.npy"), &t, NULL, &err), err.msg);
    CHECK(t.dtype == ONYX_DTYPE_F64 && t.rank == 0);
    CHECK(((double *)t.data)[0] == 3.5);
    onyx_tensor_free(&t);

    write_bytes(th_path("c.npy"), NPY_BOOL_3, sizeof(NPY_BOOL_3) - 1);
    CHECK_OK(onyx_tensor_read_file(th_path("c.npy"), &t, NULL, &err), err.msg);
    CHECK(t.dtype == ONYX_DTYPE_BOOL && t.rank == 1 && t.dims[0] == 3);
    CHECK(memcmp(t.data, "\x01\x00\x01", 3) == 0);
    onyx_tensor_free(&t);

    write_bytes(th_path("d.npy"), NPY_I16_2X1X2, sizeof(NPY_I16_2X1X2) - 1);
    CHECK_OK(onyx_tensor_read_file(th_path("d.npy"), &t, NULL, &err), err.msg);
    CHECK(t.dtype == ONYX_DTYPE_I16 && t.rank == 3);
    CHECK(t.dims[0] == 2 && t.dims[1] == 1 && t.dims[2] == 2);
    const int16_t want16[4] = {1, -2, 300, -32768};
    CHECK(memcmp(t.data, want16, sizeof(want16)) == 0);
    onyx_tensor_free(&t);

    write_bytes(th_path("e.npy"), NPY_U8_EMPTY, sizeof(NPY_U8_EMPTY) - 1);
    CHECK_OK(onyx_tensor_read_file(th_path("e.npy"), &t, NULL, &err), err.msg);
    CHECK(t.dtype == ONYX_DTYPE_U8 && t.rank == 2 && t.dims[0] == 0 && t.dims[1] == 3);
    CHECK(onyx_tensor_numel(&t) == 0);
    onyx_tensor_free(&t);

    write_bytes(th_path("f.npy"), NPY_F16_V2, sizeof(NPY_F16_V2) - 1);
    CHECK_OK(onyx_tensor_read_file(th_path("f.npy"), &t, NULL, &err), err.msg);
    CHECK(t.dtype == ONYX_DTYPE_F16 && t.rank == 1 && t.dims[0] == 2);
    CHECK(((uint16_t *)t.data)[0] == 0x3e00 && ((uint16_t *)t.data)[1] == 0xc000);
    onyx_tensor_free(&t);
}

/* Headers numpy could write (or accepts) in other spellings. */
static void test_header_variants(void)
{
    const float v[6] = {1, 2, 3, 4, 5, 6};
    onyx_tensor t;
    onyx_error err = {ONYX_OK, ""};
    static const char *const headers[] = {
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}\n",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,3)}",
        "{ 'descr' : '=f4' ,'fortran_order':False,'shape':( 2 , 3 , ) , }    \n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }\n",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        write_npy_raw(th_path("h.npy"), 1, headers[i], v, sizeof(v));
        CHECK_OK(onyx_tensor_read_file(th_path("h.npy"), &t, NULL, &err), err.msg);
        CHECK(t.dtype == ONYX_DTYPE_F32 && t.rank == 2 && t.dims[0] == 2 && t.dims[1] == 3);
        CHECK(t.data != NULL && memcmp(t.data, v, sizeof(v)) == 0);
        onyx_tensor_free(&t);
    }
    /* version 3.0 has a 4-byte header length, like 2.0 */
    write_npy_raw(th_path("v3.npy"), 3, "{'descr': '|i1', 'fortran_order': False, 'shape': (2,)}",
                  "\x05\xfb", 2);
    CHECK_OK(onyx_tensor_read_file(th_path("v3.npy"), &t, NULL, &err), err.msg);
    CHECK(t.dtype == ONYX_DTYPE_I8 && t.rank == 1 && t.dims[0] == 2);
    CHECK(((int8_t *)t.data)[0] == 5 && ((int8_t *)t.data)[1] == -5);
    onyx_tensor_free(&t);
    /* Fortran order is the same as C order for... nothing: still refused, even for rank 1 */
}

static void test_malformed(void)
{
    const float v[6] = {0};
    const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

    /* truncated data, extra data */
    expect_fail_bytes(NPY_F32_2X3, sizeof(NPY_F32_2X3) - 2, ONYX_ERR_INVALID_MODEL,
                      "data is 23 bytes, but shape [2,3] of float32 needs 24");
    expect_fail_header(1, good, v, sizeof(v) - 4, ONYX_ERR_INVALID_MODEL, "needs 24");
    expect_fail_header(1, good, "0123456789012345678901234567", 28, ONYX_ERR_INVALID_MODEL,
                       "data is 28 bytes");
    /* header length beyond the end of the file */
    expect_fail_bytes(NPY_F32_2X3, 60, ONYX_ERR_INVALID_MODEL, "runs past the end");
    expect_fail_bytes("\x93NUMPY\x01", 7, ONYX_ERR_INVALID_MODEL, "truncated");
    expect_fail_bytes("\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14, ONYX_ERR_INVALID_MODEL,
                      "runs past the end");
    /* unsupported versions */
    expect_fail_bytes("\x93NUMPY\x04\x00\x02\x00{}", 12, ONYX_ERR_UNSUPPORTED, "version 4.0");
    expect_fail_bytes("\x93NUMPY\x01\x01\x02\x00{}", 12, ONYX_ERR_UNSUPPORTED, "version 1.1");
    /* what numpy writes for big-endian and Fortran-ordered arrays */
    expect_fail_header(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", v, 12,
                       ONYX_ERR_UNSUPPORTED, "big-endian");
    expect_fail_header(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", v, 24,
                       ONYX_ERR_UNSUPPORTED, "Fortran order");
    /* shapes */
    expect_fail_header(1,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, "
                       "1099511627776), }",
                       v, 4, ONYX_ERR_SHAPE, "too many elements");
    expect_fail_header(1,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': "
                       "(99999999999999999999,), }",
                       v, 4, ONYX_ERR_SHAPE, "dimension above");
    expect_fail_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", v, 4,
                       ONYX_ERR_INVALID_MODEL, "non-negative integer");
    expect_fail_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", v, 12,
                       ONYX_ERR_INVALID_MODEL, "1-tuple");
    expect_fail_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': [3], }", v, 12,
                       ONYX_ERR_INVALID_MODEL, "not a tuple");
    expect_fail_header(1,
                       "{'descr': '<f4', 'fortran_order': False, "
                       "'shape': (1,1,1,1,1,1,1,1,1), }",
                       v, 4, ONYX_ERR_UNSUPPORTED, "more than 8 dimensions");
    /* element types */
    expect_fail_header(1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", v, 8,
                       ONYX_ERR_UNSUPPORTED, "Python objects");
    expect_fail_header(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", v,
                       4, ONYX_ERR_UNSUPPORTED, "structured");
    expect_fail_header(1, "{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", v, 12,
                       ONYX_ERR_UNSUPPORTED, "'<U3' is not supported");
    expect_fail_header(1, "{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }", v, 4,
                       ONYX_ERR_UNSUPPORTED, "no byte order");
    expect_fail_header(1, "{'descr': '<', 'fortran_order': False, 'shape': (1,), }", v, 4,
                       ONYX_ERR_UNSUPPORTED, "'<' is not supported");
    expect_fail_header(1, "{'descr': '<f44', 'fortran_order': False, 'shape': (1,), }", v, 4,
                       ONYX_ERR_UNSUPPORTED, "'<f44' is not supported");
    expect_fail_header(1, "{'descr': 'f4', 'fortran_order': False, 'shape': (1,), }", v, 4,
                       ONYX_ERR_UNSUPPORTED, "no byte order");
    expect_fail_header(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", "\x01\x02",
                       2, ONYX_ERR_INVALID_MODEL, "bool element 1 is 2");
    /* the dict itself */
    expect_fail_header(1, "[1, 2]", v, 4, ONYX_ERR_INVALID_MODEL, "not a dict");
    expect_fail_header(1, "{'descr': '<f4', 'shape': (1,)}", v, 4, ONYX_ERR_INVALID_MODEL,
                       "lacks 'fortran_order'");
    expect_fail_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", v, 4,
                       ONYX_ERR_INVALID_MODEL, "unexpected key 'x'");
    expect_fail_header(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False}", v, 4,
                       ONYX_ERR_INVALID_MODEL, "'descr' appears twice");
    expect_fail_header(1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}", v, 4,
                       ONYX_ERR_INVALID_MODEL, "neither True nor False");
    expect_fail_header(1, "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (1,)}", v, 4,
                       ONYX_ERR_INVALID_MODEL, "neither True nor False");
    expect_fail_header(1, "{'descr' '<f4', 'fortran_order': False, 'shape': (1,)}", v, 4,
                       ONYX_ERR_INVALID_MODEL, "expected ':'");
    expect_fail_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x", v, 4,
                       ONYX_ERR_INVALID_MODEL, "text after");
    expect_fail_header(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", v, 4,
                       ONYX_ERR_INVALID_MODEL, "expected ',' or '}'");
    expect_fail_header(1, "{'descr': '<f4' 'fortran_order': False}", v, 4, ONYX_ERR_INVALID_MODEL,
                       "expected ',' or '}'");
    expect_fail_header(1, "{'descr': '\xe9', 'fortran_order': False, 'shape': (1,)}", v, 4,
                       ONYX_ERR_INVALID_MODEL, "non-ASCII");
}

static void test_file_errors(void)
{
    onyx_tensor t;
    onyx_error err = {ONYX_OK, ""};
    onyx_status st = onyx_tensor_read_file(th_path("missing.npy"), &t, NULL, &err);
    CHECK(st == ONYX_ERR_IO);
    CHECK_MSG(err.msg, "missing.npy: cannot open");
    CHECK(t.data == NULL);

    st = onyx_tensor_read_file(th_tmpdir(), &t, NULL, &err);
    CHECK(st == ONYX_ERR_IO);
    CHECK_MSG(err.msg, "not a regular file");

    write_bytes(th_path("empty.pb"), "", 0);
    st = onyx_tensor_read_file(th_path("empty.pb"), &t, NULL, &err);
    CHECK(st == ONYX_ERR_INVALID_MODEL);
    CHECK_MSG(err.msg, "empty.pb: empty file");

    st = onyx_tensor_read_file(NULL, &t, NULL, &err);
    CHECK(st == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "path is NULL");
    /* err may be NULL */
    CHECK(onyx_tensor_read_file(th_path("missing.npy"), &t, NULL, NULL) == ONYX_ERR_IO);
    onyx_tensor_free(NULL);

    /* above the 2 GiB limit: refused from its size before anything is read (a sparse file) */
    FILE *f = fopen(th_path("huge.npy"), "wb");
    CHECK(f != NULL);
    if (f != NULL) {
        fwrite("\x93NUMPY\x01\x00", 1, 8, f);
        CHECK(ftruncate(fileno(f), (off_t)1 << 31) == 0);
        fclose(f);
        st = onyx_tensor_read_file(th_path("huge.npy"), &t, NULL, &err);
        CHECK(st == ONYX_ERR_IO);
        CHECK_MSG(err.msg, "huge.npy: file is 2147483648 bytes, more than the limit of 2147483647");
        remove(th_path("huge.npy"));
    }

    /* not .npy (the magic is off by one letter): parsed as a TensorProto, which this is not */
    write_bytes(th_path("junk.pb"), "\x93NUMPX\x01\x00\xff\xff", 10);
    char *name = NULL;
    st = onyx_tensor_read_file(th_path("junk.pb"), &t, &name, &err);
    CHECK(st != ONYX_OK);
    CHECK_MSG(err.msg, "junk.pb");
    CHECK(t.data == NULL && name == NULL);
}

/* Every writable dtype at ranks 0, 1 and 3 round-trips bit-exactly. */
static void test_round_trips(void)
{
    static const onyx_dtype dts[] = {ONYX_DTYPE_F32, ONYX_DTYPE_F64, ONYX_DTYPE_F16,
                                     ONYX_DTYPE_I8,  ONYX_DTYPE_I16, ONYX_DTYPE_I32,
                                     ONYX_DTYPE_I64, ONYX_DTYPE_U8,  ONYX_DTYPE_U16,
                                     ONYX_DTYPE_U32, ONYX_DTYPE_U64, ONYX_DTYPE_BOOL};
    static const int64_t shapes[3][3] = {{0, 0, 0}, {5, 0, 0}, {2, 3, 4}};
    static const int ranks[3] = {0, 1, 3};
    unsigned char data[24 * 8];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 37 + 11);
    for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++) {
        for (int s = 0; s < 3; s++) {
            onyx_tensor t = {dts[d], ranks[s], {0}, data};
            memcpy(t.dims, shapes[s], sizeof(shapes[s]));
            unsigned char bools[24];
            if (dts[d] == ONYX_DTYPE_BOOL) {
                for (int i = 0; i < 24; i++)
                    bools[i] = (unsigned char)(i % 3 == 0);
                t.data = bools;
            }
            onyx_error err = {ONYX_OK, ""};
            CHECK_OK(onyx_tensor_write_npy(th_path("rt.npy"), &t, &err), err.msg);
            onyx_tensor r;
            CHECK_OK(onyx_tensor_read_file(th_path("rt.npy"), &r, NULL, &err), err.msg);
            CHECK(r.dtype == t.dtype && r.rank == t.rank);
            for (int k = 0; k < t.rank; k++)
                CHECK(r.dims[k] == t.dims[k]);
            size_t nb = (size_t)onyx_tensor_numel(&t) * onyx_dtype_size(t.dtype);
            CHECK(r.data != NULL && memcmp(r.data, t.data, nb) == 0);
            onyx_tensor_free(&r);
        }
    }
}

/* Our writer produces numpy's bytes exactly, header padding included. */
static void test_write_matches_numpy(void)
{
    static const struct {
        const char *bytes;
        size_t n;
    } files[] = {
        {NPY_F32_2X3, sizeof(NPY_F32_2X3) - 1},   {NPY_F64_SCALAR, sizeof(NPY_F64_SCALAR) - 1},
        {NPY_BOOL_3, sizeof(NPY_BOOL_3) - 1},     {NPY_I16_2X1X2, sizeof(NPY_I16_2X1X2) - 1},
        {NPY_U8_EMPTY, sizeof(NPY_U8_EMPTY) - 1},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        onyx_error err = {ONYX_OK, ""};
        onyx_tensor t;
        write_bytes(th_path("np.npy"), files[i].bytes, files[i].n);
        CHECK_OK(onyx_tensor_read_file(th_path("np.npy"), &t, NULL, &err), err.msg);
        CHECK_OK(onyx_tensor_write_npy(th_path("ours.npy"), &t, &err), err.msg);
        onyx_tensor_free(&t);
        size_t n;
        unsigned char *ours = th_slurp(th_path("ours.npy"), &n);
        CHECK(ours != NULL && n == files[i].n && memcmp(ours, files[i].bytes, n) == 0);
        free(ours);
    }
}

static void test_write_errors(void)
{
    onyx_error err = {ONYX_OK, ""};
    uint16_t h[2] = {0, 0};
    onyx_tensor bf = {ONYX_DTYPE_BF16, 1, {2}, h};
    CHECK(onyx_tensor_write_npy(th_path("bf.npy"), &bf, &err) == ONYX_ERR_UNSUPPORTED);
    CHECK_MSG(err.msg, "numpy has no type for bfloat16");

    onyx_tensor neg = {ONYX_DTYPE_F32, 1, {-2}, h};
    CHECK(onyx_tensor_write_npy(th_path("neg.npy"), &neg, &err) == ONYX_ERR_SHAPE);
    CHECK_MSG(err.msg, "neg.npy: tensor shape [?]");

    onyx_tensor nodata = {ONYX_DTYPE_F32, 1, {2}, NULL};
    CHECK(onyx_tensor_write_npy(th_path("nodata.npy"), &nodata, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "data is NULL");

    onyx_tensor str = {ONYX_DTYPE_STRING, 1, {2}, h};
    CHECK(onyx_tensor_write_npy(th_path("str.npy"), &str, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "dtype string");

    onyx_tensor ok = {ONYX_DTYPE_F32, 0, {0}, h};
    CHECK(onyx_tensor_write_npy(th_path("no/such/dir/x.npy"), &ok, &err) == ONYX_ERR_IO);
    CHECK_MSG(err.msg, "no/such/dir/x.npy: cannot create a temporary file");

    /* no temporary files are left behind by the writes above */
    DIR *d = opendir(th_tmpdir());
    CHECK(d != NULL);
    struct dirent *e;
    int leftovers = 0;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.") != NULL)
            leftovers++;
    if (d != NULL)
        closedir(d);
    CHECK(leftovers == 0);
}

static void test_csv(void)
{
    const char *p = th_path("a.csv");
    const char *good = "x1, x2,x3\n1,2.5,-3\n\n4 , 5e-1,6\r\n7,8,9";
    write_bytes(p, good, strlen(good));
    onyx_tensor t;
    onyx_error err;
    CHECK_OK(onyx_tensor_read_file(p, &t, NULL, &err), err.msg);
    CHECK(t.dtype == ONYX_DTYPE_F32 && t.rank == 2 && t.dims[0] == 3 && t.dims[1] == 3);
    if (t.data) {
        const float *v = t.data;
        const float want[9] = {1, 2.5f, -3, 4, 0.5f, 6, 7, 8, 9};
        for (int i = 0; i < 9; i++)
            CHECK_NEAR(v[i], want[i]);
    }
    onyx_tensor_free(&t);

    struct {
        const char *text;
        const char *msg;
    } bad[] = {
        {"1,2\n3,x\n", "a.csv:2: column 2: field \"x\" is not a finite number"},
        {"1,2\n3\n", "a.csv:2: 1 fields, expected 2"},
        {"1,2\n3,nan\n", "a.csv:2: column 2: field \"nan\" is not a finite number"},
        {"1,2\n3,1e99\n", "a.csv:2: column 2: field \"1e99\" is not a finite number"},
        {"1,2\n3,,4\n", "a.csv:2: column 2: field \"\" is not a finite number"},
        {"nan,1\n2,3\n", "a.csv:1: column 1: field \"nan\" is not a finite number"},
        {"x,y\n2,inf\n", "a.csv:2: column 2: field \"inf\" is not a finite number"},
        {"a,b\n", "a.csv: no rows of numbers"},
        {"", "a.csv: no rows of numbers"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_bytes(p, bad[i].text, strlen(bad[i].text));
        CHECK(onyx_tensor_read_csv(p, &t, &err) == ONYX_ERR_INVALID_ARG);
        CHECK(t.data == NULL);
        CHECK_MSG(err.msg, bad[i].msg);
    }
}

int main(void)
{
    if (th_tmpdir_make(ONYX_BINARY_DIR, "test_tensor_io") == NULL)
        return 1;
    test_numpy_files();
    test_header_variants();
    test_malformed();
    test_file_errors();
    test_round_trips();
    test_write_matches_numpy();
    test_write_errors();
    test_csv();
    th_tmpdir_remove();
    return check_report();
}
