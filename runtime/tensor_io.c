/*
 * tensor_io.c — tensors in files: reading .npy and TensorProto files, writing .npy, and the
 * atomic file writer that every writer of onyx uses (temporary file + rename).
 *
 * .npy format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 *   "\x93NUMPY" major minor, header length (u16 LE for v1, u32 LE for v2/v3), then an ASCII
 *   (v3: UTF-8) Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 *   padded with spaces and ended by '\n', then the raw elements in C order.
 * onyx assumes a little-endian host (as tensor.c and model.c do): '<' data is copied as is.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char NPY_MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* ---- reading whole files ------------------------------------------------------------------ */

/* Reads the regular file at path into a new malloc'd buffer (at least 1 byte allocated).
 * Refuses files above ONYX_MAX_FILE_SIZE before allocating anything. */
onyx_status onyx_read_file(const char *path, unsigned char **out, size_t *size, onyx_error *err)
{
    *out = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return onyx_err(err, ONYX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return onyx_err(err, ONYX_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return onyx_err(err, ONYX_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)ONYX_MAX_FILE_SIZE) {
        fclose(f);
        return onyx_err(err, ONYX_ERR_IO, "%s: file is %lld bytes, more than the limit of %zu",
                        path, (long long)st.st_size, ONYX_MAX_FILE_SIZE);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        fclose(f);
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: cannot allocate %zu bytes to read it", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    /* One more read must hit end of file: the file did not grow while we read it. */
    int extra = fgetc(f);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed || got != n || extra != EOF) {
        free(buf);
        return onyx_err(err, ONYX_ERR_IO, "%s: read %zu of %zu bytes%s", path, got, n,
                        extra != EOF ? " (the file changed while being read)" : "");
    }
    *out = buf;
    *size = n;
    return ONYX_OK;
}

/* ---- .npy header parsing ------------------------------------------------------------------ */

/* A cursor over the header text; every error names the file and the byte offset in it. */
typedef struct npy_parser {
    const char *path;
    const char *s; /* header text (not NUL-terminated) */
    size_t len;
    size_t pos;
    size_t base; /* offset of the header text in the file, for messages */
    onyx_error *err;
} npy_parser;

static onyx_status npy_fail(npy_parser *p, const char *what)
{
    return onyx_err(p->err, ONYX_ERR_INVALID_MODEL, "%s: bad .npy header at byte %zu: %s", p->path,
                    p->base + p->pos, what);
}

static void skip_space(npy_parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static bool peek(npy_parser *p, char c)
{
    skip_space(p);
    return p->pos < p->len && p->s[p->pos] == c;
}

static bool accept(npy_parser *p, char c)
{
    if (!peek(p, c))
        return false;
    p->pos++;
    return true;
}

/* A Python string literal in single or double quotes, without escapes (numpy never writes any
 * in the keys or descr it understands). Copies at most size-1 characters into buf. */
static onyx_status parse_string(npy_parser *p, char *buf, size_t size)
{
    skip_space(p);
    if (p->pos >= p->len || (p->s[p->pos] != '\'' && p->s[p->pos] != '"'))
        return npy_fail(p, "expected a quoted string");
    char q = p->s[p->pos++];
    size_t n = 0;
    while (p->pos < p->len && p->s[p->pos] != q) {
        char c = p->s[p->pos];
        if (c == '\\' || c == '\n')
            return npy_fail(p, "escape or newline inside a string");
        if (n + 1 >= size)
            return npy_fail(p, "string too long");
        buf[n++] = c;
        p->pos++;
    }
    if (p->pos >= p->len)
        return npy_fail(p, "unterminated string");
    p->pos++;
    buf[n] = '\0';
    return ONYX_OK;
}

static bool accept_word(npy_parser *p, const char *w)
{
    skip_space(p);
    size_t n = strlen(w);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n) != 0)
        return false;
    /* the word must end here: "Truex" is not True */
    if (p->pos + n < p->len) {
        char c = p->s[p->pos + n];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
            return false;
    }
    p->pos += n;
    return true;
}

/* A tuple of non-negative integers: (), (3,), (2, 3), also Python 2's (2L, 3L). */
static onyx_status parse_shape(npy_parser *p, int *rank, int64_t *dims)
{
    if (!accept(p, '('))
        return npy_fail(p, "'shape' is not a tuple");
    *rank = 0;
    for (;;) {
        if (accept(p, ')'))
            return ONYX_OK;
        skip_space(p);
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return npy_fail(p, "'shape' holds something other than a non-negative integer");
        int64_t v = 0;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
            int d = p->s[p->pos] - '0';
            if (v > (INT64_MAX - d) / 10)
                return onyx_err(p->err, ONYX_ERR_SHAPE, "%s: .npy shape has a dimension above %lld",
                                p->path, (long long)INT64_MAX);
            v = v * 10 + d;
            p->pos++;
        }
        if (p->pos < p->len && p->s[p->pos] == 'L')
            p->pos++;
        if (*rank >= ONYX_MAX_RANK)
            return onyx_err(p->err, ONYX_ERR_UNSUPPORTED,
                            "%s: .npy shape has more than %d dimensions", p->path, ONYX_MAX_RANK);
        dims[(*rank)++] = v;
        if (accept(p, ','))
            continue;
        if (accept(p, ')')) {
            /* (3) is not a tuple in Python: a rank-1 shape needs its comma */
            if (*rank == 1)
                return npy_fail(p, "'shape' (N) lacks the comma of a 1-tuple");
            return ONYX_OK;
        }
        return npy_fail(p, "expected ',' or ')' in 'shape'");
    }
}

/* Maps a numpy type string ("<f4", "|b1", ...) to a dtype, or explains why not. */
static onyx_status parse_descr(const char *path, const char *descr, onyx_dtype *dt, onyx_error *err)
{
    static const struct {
        char kind;
        int size;
        onyx_dtype dtype;
    } types[] = {
        {'f', 2, ONYX_DTYPE_F16}, {'f', 4, ONYX_DTYPE_F32}, {'f', 8, ONYX_DTYPE_F64},
        {'i', 1, ONYX_DTYPE_I8},  {'i', 2, ONYX_DTYPE_I16}, {'i', 4, ONYX_DTYPE_I32},
        {'i', 8, ONYX_DTYPE_I64}, {'u', 1, ONYX_DTYPE_U8},  {'u', 2, ONYX_DTYPE_U16},
        {'u', 4, ONYX_DTYPE_U32}, {'u', 8, ONYX_DTYPE_U64}, {'b', 1, ONYX_DTYPE_BOOL},
    };
    char order = descr[0];
    if (order != '<' && order != '>' && order != '=' && order != '|')
        return onyx_err(err, ONYX_ERR_UNSUPPORTED,
                        "%s: .npy descr '%s' has no byte order ('<', '>', '=' or '|')", path,
                        descr);
    /* byte order, kind, size: every supported size is one digit */
    size_t len = strlen(descr);
    char kind = len >= 2 ? descr[1] : '\0';
    int size = len == 3 && descr[2] >= '1' && descr[2] <= '9' ? descr[2] - '0' : -1;
    if (kind == 'O')
        return onyx_err(err, ONYX_ERR_UNSUPPORTED, "%s: .npy holds Python objects ('%s')", path,
                        descr);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (types[i].kind != kind || types[i].size != size)
            continue;
        /* '>' is big-endian; '|' (not applicable) is only meaningful for one-byte types */
        if (size > 1 && order == '>')
            return onyx_err(err, ONYX_ERR_UNSUPPORTED,
                            "%s: .npy data is big-endian ('%s'); save it little-endian, e.g. "
                            "a.astype(a.dtype.newbyteorder('<'))",
                            path, descr);
        if (size > 1 && order == '|')
            return onyx_err(err, ONYX_ERR_UNSUPPORTED,
                            "%s: .npy descr '%s' gives no byte order for a %d-byte type", path,
                            descr, size);
        *dt = types[i].dtype;
        return ONYX_OK;
    }
    return onyx_err(err, ONYX_ERR_UNSUPPORTED,
                    "%s: .npy element type '%s' is not supported (expected a bool, integer or "
                    "float type such as '<f4')",
                    path, descr);
}

/* Parses the header dict; sets dtype, rank and dims of t. */
static onyx_status parse_npy_header(npy_parser *p, onyx_tensor *t)
{
    char descr[64] = "";
    bool have_descr = false;
    bool have_order = false;
    bool have_shape = false;
    bool fortran = false;
    onyx_status st;

    if (!accept(p, '{'))
        return npy_fail(p, "the header is not a dict (expected '{')");
    for (;;) {
        if (accept(p, '}'))
            break;
        char key[32];
        if ((st = parse_string(p, key, sizeof(key))) != ONYX_OK)
            return st;
        if (!accept(p, ':'))
            return npy_fail(p, "expected ':' after a key");
        if (strcmp(key, "descr") == 0) {
            if (have_descr)
                return npy_fail(p, "'descr' appears twice");
            if (peek(p, '[') || peek(p, '('))
                return onyx_err(p->err, ONYX_ERR_UNSUPPORTED,
                                "%s: .npy holds a structured array; only plain arrays are "
                                "supported",
                                p->path);
            if ((st = parse_string(p, descr, sizeof(descr))) != ONYX_OK)
                return st;
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_order)
                return npy_fail(p, "'fortran_order' appears twice");
            if (accept_word(p, "True"))
                fortran = true;
            else if (accept_word(p, "False"))
                fortran = false;
            else
                return npy_fail(p, "'fortran_order' is neither True nor False");
            have_order = true;
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape)
                return npy_fail(p, "'shape' appears twice");
            if ((st = parse_shape(p, &t->rank, t->dims)) != ONYX_OK)
                return st;
            have_shape = true;
        } else {
            char msg[96];
            snprintf(msg, sizeof(msg), "unexpected key '%s'", key);
            return npy_fail(p, msg);
        }
        if (accept(p, ','))
            continue;
        if (accept(p, '}'))
            break;
        return npy_fail(p, "expected ',' or '}'");
    }
    skip_space(p);
    if (p->pos != p->len)
        return npy_fail(p, "text after the closing '}'");
    if (!have_descr || !have_order || !have_shape)
        return onyx_err(p->err, ONYX_ERR_INVALID_MODEL, "%s: .npy header lacks '%s'", p->path,
                        !have_descr   ? "descr"
                        : !have_order ? "fortran_order"
                                      : "shape");
    if ((st = parse_descr(p->path, descr, &t->dtype, p->err)) != ONYX_OK)
        return st;
    if (fortran)
        return onyx_err(p->err, ONYX_ERR_UNSUPPORTED,
                        "%s: .npy data is in Fortran order; save it in C order, e.g. "
                        "np.save(path, np.ascontiguousarray(a))",
                        p->path);
    return ONYX_OK;
}

/* Parses a whole .npy file held in buf[size] (starts with the magic). On success moves the data
 * to the front of buf, which becomes t->data (ownership of buf passes to t). */
static onyx_status read_npy(const char *path, unsigned char *buf, size_t size, onyx_tensor *t,
                            onyx_error *err)
{
    if (size < 10)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: .npy file is truncated (%zu bytes)", path,
                        size);
    int major = buf[6];
    int minor = buf[7];
    size_t hlen;
    size_t hstart;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12)
            return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: .npy file is truncated (%zu bytes)",
                            path, size);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        return onyx_err(err, ONYX_ERR_UNSUPPORTED,
                        "%s: .npy format version %d.%d is not supported (expected 1.0, 2.0 or 3.0)",
                        path, major, minor);
    }
    if (minor != 0)
        return onyx_err(err, ONYX_ERR_UNSUPPORTED,
                        "%s: .npy format version %d.%d is not supported (expected 1.0, 2.0 or 3.0)",
                        path, major, minor);
    if (hlen > size - hstart)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: .npy header length %zu runs past the end of the %zu-byte file", path,
                        hlen, size);
    for (size_t i = 0; i < hlen; i++) {
        /* v1/v2 headers are latin-1 and v3 UTF-8; numpy only writes ASCII, and so do we. */
        if (buf[hstart + i] >= 0x80 || buf[hstart + i] == 0)
            return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                            "%s: .npy header has a non-ASCII byte at offset %zu", path, hstart + i);
    }

    onyx_tensor tmp = {0};
    npy_parser p = {path, (const char *)buf + hstart, hlen, 0, hstart, err};
    onyx_status st = parse_npy_header(&p, &tmp);
    if (st != ONYX_OK)
        return st;

    size_t esize = onyx_dtype_size(tmp.dtype);
    int64_t numel;
    char shape[128];
    if (!onyx_shape_numel(tmp.dims, tmp.rank, esize, &numel))
        return onyx_err(err, ONYX_ERR_SHAPE, "%s: .npy shape %s has too many elements", path,
                        onyx_shape_str(&tmp, shape, sizeof(shape)));
    size_t need = (size_t)numel * esize;
    size_t have = size - hstart - hlen;
    if (have != need)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: .npy data is %zu bytes, but shape %s of %s needs %zu", path, have,
                        onyx_shape_str(&tmp, shape, sizeof(shape)), onyx_dtype_name(tmp.dtype),
                        need);
    const unsigned char *data = buf + hstart + hlen;
    if (tmp.dtype == ONYX_DTYPE_BOOL) {
        for (size_t i = 0; i < need; i++)
            if (data[i] > 1)
                return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                                "%s: .npy bool element %zu is %d, expected 0 or 1", path, i,
                                data[i]);
    }
    memmove(buf, data, need);
    *t = tmp;
    t->data = buf;
    return ONYX_OK;
}

/* ---- CSV -------------------------------------------------------------------------------------- */

/* Splits off the next field of a line: [p, end) trimmed of blanks. */
static const char *trim_field(const char *p, const char *end, const char **fend)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    const char *e = end;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    *fend = e;
    return p;
}

/* Parses [p, e) as a number; *finite tells whether it is a finite float32. */
static bool csv_number(const char *p, const char *e, float *out, bool *finite)
{
    char tmp[64];
    size_t n = (size_t)(e - p);
    if (n == 0 || n >= sizeof tmp)
        return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *endp;
    errno = 0;
    double v = strtod(tmp, &endp);
    if (*endp != '\0')
        return false;
    *finite = errno != ERANGE && v == v && v <= 3.4028234663852886e38 &&
              v >= -3.4028234663852886e38;
    *out = (float)v;
    return true;
}

/* One pass over the text: counts (rows, cols) or, with data != NULL, fills data. The first line
 * is a header when none of its fields is a number. */
static onyx_status csv_pass(const char *path, const char *text, size_t size, int64_t *rows,
                            int64_t *cols, float *data, onyx_error *err)
{
    const char *p = text;
    const char *end = text + size;
    int64_t row = 0;
    int64_t ncols = -1;
    size_t line_no = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        line_no++;
        const char *fe;
        const char *first = trim_field(p, eol, &fe);
        if (first == fe) { /* blank line */
            p = eol + 1;
            continue;
        }
        int64_t nf = 0;
        int64_t n_numbers = 0;
        int64_t bad_col = -1;
        const char *bad = NULL;
        const char *bad_end = NULL;
        for (const char *q = p;;) {
            const char *comma = memchr(q, ',', (size_t)(eol - q));
            const char *fend_raw = comma ? comma : eol;
            const char *f_end;
            const char *f = trim_field(q, fend_raw, &f_end);
            float v = 0.0f;
            bool finite = false;
            bool number = csv_number(f, f_end, &v, &finite);
            n_numbers += number;
            if ((!number || !finite) && bad == NULL)
                bad = f, bad_end = f_end, bad_col = nf;
            else if (data != NULL && nf < *cols)
                data[row * *cols + nf] = v; /* the counting pass checked every row */
            nf++;
            if (comma == NULL)
                break;
            q = comma + 1;
        }
        if (bad != NULL) {
            if (line_no == 1 && n_numbers == 0) { /* a header line */
                p = eol + 1;
                continue;
            }
            int len = (int)(bad_end - bad);
            return onyx_err(err, ONYX_ERR_INVALID_ARG,
                            "%s:%zu: column %lld: field \"%.*s\" is not a finite number", path,
                            line_no, (long long)bad_col + 1, len > 40 ? 40 : len, bad);
        }
        if (ncols < 0)
            ncols = nf;
        else if (nf != ncols)
            return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s:%zu: %lld fields, expected %lld",
                            path, line_no, (long long)nf, (long long)ncols);
        row++;
        p = eol + 1;
    }
    if (row == 0)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: no rows of numbers", path);
    *rows = row;
    *cols = ncols;
    return ONYX_OK;
}

onyx_status onyx_tensor_read_csv(const char *path, onyx_tensor *t, onyx_error *err)
{
    if (t == NULL || path == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_tensor_read_csv: %s is NULL",
                        t == NULL ? "t" : "path");
    memset(t, 0, sizeof(*t));
    unsigned char *buf;
    size_t size;
    onyx_status st = onyx_read_file(path, &buf, &size, err);
    if (st != ONYX_OK)
        return st;
    int64_t rows = 0;
    int64_t cols = 0;
    st = csv_pass(path, (const char *)buf, size, &rows, &cols, NULL, err);
    float *data = NULL;
    if (st == ONYX_OK) {
        data = onyx_calloc((size_t)rows * (size_t)cols + 1, sizeof(float));
        if (data == NULL)
            st = onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", path);
    }
    if (st == ONYX_OK)
        st = csv_pass(path, (const char *)buf, size, &rows, &cols, data, err);
    free(buf);
    if (st != ONYX_OK) {
        free(data);
        return st;
    }
    t->dtype = ONYX_DTYPE_F32;
    t->rank = 2;
    t->dims[0] = rows;
    t->dims[1] = cols;
    t->data = data;
    return ONYX_OK;
}

static bool ends_with_csv(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && (strcmp(path + n - 4, ".csv") == 0 || strcmp(path + n - 4, ".CSV") == 0);
}

onyx_status onyx_tensor_read_file(const char *path, onyx_tensor *t, char **name, onyx_error *err)
{
    if (name != NULL)
        *name = NULL;
    if (t == NULL || path == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_tensor_read_file: %s is NULL",
                        t == NULL ? "t" : "path");
    memset(t, 0, sizeof(*t));
    if (ends_with_csv(path))
        return onyx_tensor_read_csv(path, t, err);

    unsigned char *buf;
    size_t size;
    onyx_status st = onyx_read_file(path, &buf, &size, err);
    if (st != ONYX_OK)
        return st;
    if (size >= sizeof(NPY_MAGIC) && memcmp(buf, NPY_MAGIC, sizeof(NPY_MAGIC)) == 0) {
        st = read_npy(path, buf, size, t, err);
        if (st != ONYX_OK) {
            free(buf);
            memset(t, 0, sizeof(*t));
        }
        return st;
    }
    if (size == 0) {
        free(buf);
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: empty file (expected a .npy file or an ONNX TensorProto)", path);
    }
    st = onyx_tensor_decode_pb(buf, size, path, t, name, err);
    free(buf);
    if (st != ONYX_OK) {
        memset(t, 0, sizeof(*t));
        if (name != NULL)
            *name = NULL;
    }
    return st;
}

void onyx_tensor_free(onyx_tensor *t)
{
    if (t == NULL)
        return;
    free(t->data);
    t->data = NULL;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* fsyncs the folder so that a rename into it survives a power loss. */
onyx_status onyx_fsync_dir(const char *dir, const char *path, onyx_error *err)
{
    int fd = open(dir, O_RDONLY);
    if (fd < 0)
        return onyx_err(err, ONYX_ERR_IO, "%s: cannot open its folder %s to sync it: %s", path, dir,
                        strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* EINVAL: this file system cannot sync folders (it persists renames by itself or never) */
    if (rc != 0 && e != EINVAL)
        return onyx_err(err, ONYX_ERR_IO, "%s: cannot sync its folder %s: %s", path, dir,
                        strerror(e));
    return ONYX_OK;
}

onyx_status onyx_write_file_atomic(const char *path, bool (*write)(FILE *f, void *ctx), void *ctx,
                                   onyx_error *err)
{
    /* The temporary file sits next to the target (same file system, so rename is atomic) and is
     * created with O_EXCL under a name no one else uses; the umask applies as for fopen. */
    size_t n = strlen(path);
    char *tmp = malloc(n + 40);
    if (tmp == NULL)
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", path);
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, n + 40, "%s.tmp.%ld.%d", path, (long)getpid(), attempt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        onyx_status st = onyx_err(err, ONYX_ERR_IO, "%s: cannot create a temporary file %s: %s",
                                  path, tmp, strerror(errno));
        free(tmp);
        return st;
    }
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return onyx_err(err, ONYX_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    /* e is the errno of the first step that failed (0 if that step set none) */
    errno = 0;
    int e = 0;
    bool ok = write(f, ctx) && fflush(f) == 0 && !ferror(f) && fsync(fd) == 0;
    if (!ok)
        e = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        unlink(tmp);
        free(tmp);
        return onyx_err(err, ONYX_ERR_IO, "%s: cannot write: %s", path,
                        e ? strerror(e) : "write error");
    }
    free(tmp);
    char dir[PATH_MAX];
    onyx_path_dir(path, dir, sizeof dir);
    return onyx_fsync_dir(dir, path, err);
}

/* The numpy type string of a dtype, or NULL when numpy has none (bfloat16, string). */
static const char *npy_descr(onyx_dtype dt)
{
    switch (dt) {
    case ONYX_DTYPE_F16: return "<f2";
    case ONYX_DTYPE_F32: return "<f4";
    case ONYX_DTYPE_F64: return "<f8";
    case ONYX_DTYPE_I8: return "|i1";
    case ONYX_DTYPE_I16: return "<i2";
    case ONYX_DTYPE_I32: return "<i4";
    case ONYX_DTYPE_I64: return "<i8";
    case ONYX_DTYPE_U8: return "|u1";
    case ONYX_DTYPE_U16: return "<u2";
    case ONYX_DTYPE_U32: return "<u4";
    case ONYX_DTYPE_U64: return "<u8";
    case ONYX_DTYPE_BOOL: return "|b1";
    default: return NULL;
    }
}

typedef struct npy_write_ctx {
    const char *header;
    size_t header_len;
    const void *data;
    size_t nbytes;
} npy_write_ctx;

static bool write_npy_body(FILE *f, void *ctx)
{
    const npy_write_ctx *c = ctx;
    unsigned char pre[10];
    memcpy(pre, NPY_MAGIC, 6);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (unsigned char)(c->header_len & 0xff);
    pre[9] = (unsigned char)(c->header_len >> 8);
    if (fwrite(pre, 1, sizeof(pre), f) != sizeof(pre))
        return false;
    if (fwrite(c->header, 1, c->header_len, f) != c->header_len)
        return false;
    return c->nbytes == 0 || fwrite(c->data, 1, c->nbytes, f) == c->nbytes;
}

/* Checks that t is a tensor that can be written: known dtype, rank, dims and data. */
static onyx_status check_tensor(const char *path, const onyx_tensor *t, int64_t *numel,
                                onyx_error *err)
{
    if (t->dtype == ONYX_DTYPE_UNDEFINED || t->dtype == ONYX_DTYPE_STRING ||
        !onyx_dtype_is_known((int32_t)t->dtype))
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: cannot write a tensor of dtype %s", path,
                        onyx_dtype_name(t->dtype));
    if (t->rank < 0 || t->rank > ONYX_MAX_RANK)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: tensor rank %d is outside 0..%d", path,
                        t->rank, ONYX_MAX_RANK);
    char shape[128];
    if (!onyx_shape_numel(t->dims, t->rank, onyx_dtype_size(t->dtype), numel))
        return onyx_err(err, ONYX_ERR_SHAPE, "%s: tensor shape %s is negative or too large", path,
                        onyx_shape_str(t, shape, sizeof(shape)));
    if (*numel > 0 && t->data == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "%s: tensor data is NULL", path);
    return ONYX_OK;
}

onyx_status onyx_tensor_write_npy(const char *path, const onyx_tensor *t, onyx_error *err)
{
    if (path == NULL || t == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_tensor_write_npy: %s is NULL",
                        path == NULL ? "path" : "t");
    int64_t numel;
    onyx_status st = check_tensor(path, t, &numel, err);
    if (st != ONYX_OK)
        return st;
    const char *descr = npy_descr(t->dtype);
    if (descr == NULL)
        return onyx_err(err, ONYX_ERR_UNSUPPORTED,
                        "%s: numpy has no type for %s; write it as .pb instead", path,
                        onyx_dtype_name(t->dtype));

    /* Exactly what numpy 1.24+ writes: the dict, spare room for the first dim to grow to
     * 21 digits, then spaces and '\n' so that the data starts at a multiple of 64. */
    char header[512];
    int len = snprintf(header, sizeof(header), "{'descr': '%s', 'fortran_order': False, 'shape': (",
                       descr);
    for (int i = 0; i < t->rank; i++)
        len += snprintf(header + len, sizeof(header) - (size_t)len, "%s%lld", i ? ", " : "",
                        (long long)t->dims[i]);
    len += snprintf(header + len, sizeof(header) - (size_t)len, "%s), }", t->rank == 1 ? "," : "");
    if (t->rank > 0) {
        char first[32];
        int digits = snprintf(first, sizeof(first), "%lld", (long long)t->dims[0]);
        for (int i = digits; i < 21; i++)
            header[len++] = ' ';
    }
    int pad = 64 - (len + 1 + 10) % 64;
    for (int i = 0; i < pad; i++)
        header[len++] = ' ';
    header[len++] = '\n';
    header[len] = '\0';

    npy_write_ctx ctx = {header, (size_t)len, t->data, (size_t)numel * onyx_dtype_size(t->dtype)};
    return onyx_write_file_atomic(path, write_npy_body, &ctx, err);
}
