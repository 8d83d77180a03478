/*
 * data.c — training data for `onyx train` (see data.h): CSV and .npy files into float features
 * and class-index or float targets, every problem reported with its file, line/row and column.
 *
 * CSV is parsed here rather than with onyx_tensor_read_csv because the trainer needs more than
 * a float matrix: the line of every sample (a label found out of range only once the model's
 * output width is known must still name its line), the column of a bad field, and class indices
 * checked as whole numbers before they become floats. .npy files go through
 * onyx_tensor_read_file.
 */
#include "data.h"

#include "cli.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest double that is still an exact integer: class indices above it cannot be trusted. */
#define EXACT_INT_MAX 9007199254740992.0 /* 2^53 */

/* ---- growable arrays ---------------------------------------------------------------------- */

/* Makes room for `need` elements of `elem` bytes in *p (capacity *cap, in elements). */
static bool reserve(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 1024;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return false;
        n *= 2;
    }
    void *q = realloc(*p, n * elem);
    if (q == NULL)
        return false;
    *p = q;
    *cap = n;
    return true;
}

/* Reads a whole file into a NUL-terminated buffer. */
static bool read_text(const char *path, char **out, size_t *len, char *msg, size_t size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(msg, size, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;
    bool ok = true;
    for (;;) {
        if (!reserve((void **)&buf, &cap, n + 65536 + 1, 1)) {
            snprintf(msg, size, "%s: out of memory", path);
            ok = false;
            break;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ok && ferror(f)) {
        snprintf(msg, size, "%s: read error: %s", path, strerror(errno));
        ok = false;
    }
    fclose(f);
    if (!ok) {
        free(buf);
        return false;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return true;
}

/* ---- CSV ---------------------------------------------------------------------------------- */

/* One field of a line: [p, e) with surrounding blanks (and a '\r') trimmed. */
static void trim(const char **p, const char **e)
{
    while (*p < *e && (**p == ' ' || **p == '\t'))
        (*p)++;
    while (*e > *p && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r'))
        (*e)--;
}

/* Parses [p, e) as a number (nan and inf included: finiteness is checked by the caller). */
static bool parse_number(const char *p, const char *e, double *v)
{
    char tmp[128];
    size_t n = (size_t)(e - p);
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    *v = strtod(tmp, &end);
    if (*end != '\0')
        return false;
    if (errno == ERANGE && fabs(*v) > 1.0) /* overflow: say so as a non-finite value */
        *v = *v > 0 ? INFINITY : -INFINITY;
    return true;
}

/* Number of fields of line [p, e). */
static int64_t count_fields(const char *p, const char *e)
{
    int64_t n = 1;
    for (; p < e; p++)
        n += *p == ',';
    return n;
}

/* True when some field of line [p, e) is not a number: the line is a header. */
static bool is_header(const char *p, const char *e)
{
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(e - p));
        const char *fe = comma ? comma : e;
        const char *fp = p;
        trim(&fp, &fe);
        double v;
        if (!parse_number(fp, fe, &v))
            return true;
        if (comma == NULL)
            return false;
        p = comma + 1;
    }
}

/* Where sample i came from: "train.csv:57" or "X.npy: row 12". */
static void where(const data_set *d, const char *path, int64_t i, char *buf, size_t size)
{
    if (d->line != NULL && path == d->path)
        snprintf(buf, size, "%s:%lld", path, (long long)d->line[i]);
    else
        snprintf(buf, size, "%s: row %lld", path, (long long)i);
}

/* What a CSV parse collects. */
typedef struct csv_sink {
    float *x;
    size_t x_cap;
    double *t; /* target column, kept as double so class indices are checked exactly */
    size_t t_cap;
    int64_t *line;
    size_t line_cap;
} csv_sink;

/*
 * Parses a CSV file: an optional header line (one with a field that is not a number), then rows
 * of numbers. The target column (when with_target) goes to t, the other fields to x.
 */
static bool load_csv(const data_spec *spec, data_set *d, bool with_target, char *msg, size_t size)
{
    char *text;
    size_t len;
    if (!read_text(spec->path, &text, &len, msg, size))
        return false;
    csv_sink s = {0};
    bool ok = false;
    int64_t ncols = -1;
    int64_t first_line = 0;
    int64_t tc = -1; /* 0-based target column */
    int64_t n = 0;
    int64_t nf = 0;
    int64_t line_no = 0;
    bool seen_line = false;
    const char *p = text;
    const char *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        line_no++;
        const char *lp = p;
        const char *le = eol;
        p = eol + 1;
        trim(&lp, &le);
        if (lp == le)
            continue; /* blank line */
        if (!seen_line) {
            seen_line = true;
            if (is_header(lp, le))
                continue;
        }
        int64_t nfields = count_fields(lp, le);
        if (ncols < 0) {
            ncols = nfields;
            first_line = line_no;
            if (with_target) {
                if (ncols < 2) {
                    snprintf(msg, size,
                             "%s:%lld: %lld field(s): expected the features and then "
                             "the target",
                             spec->path, (long long)line_no, (long long)ncols);
                    goto done;
                }
                tc = spec->target_column < 0 ? ncols + spec->target_column : spec->target_column;
                if (tc < 0 || tc >= ncols) {
                    snprintf(msg, size,
                             "%s:%lld: --target-column %lld is out of range for %lld "
                             "columns (0..%lld, or -1..-%lld from the end)",
                             spec->path, (long long)line_no, (long long)spec->target_column,
                             (long long)ncols, (long long)ncols - 1, (long long)ncols);
                    goto done;
                }
            }
            nf = ncols - (with_target ? 1 : 0);
            if (spec->n_features >= 0 && nf != spec->n_features) {
                if (with_target)
                    snprintf(msg, size,
                             "%s:%lld: %lld features (%lld fields, the target in "
                             "column %lld), but %s takes %lld",
                             spec->path, (long long)line_no, (long long)nf, (long long)ncols,
                             (long long)tc + 1, spec->input_desc, (long long)spec->n_features);
                else
                    snprintf(msg, size, "%s:%lld: %lld features, but %s takes %lld", spec->path,
                             (long long)line_no, (long long)nf, spec->input_desc,
                             (long long)spec->n_features);
                goto done;
            }
        } else if (nfields != ncols) {
            snprintf(msg, size, "%s:%lld: %lld fields, expected %lld as on line %lld", spec->path,
                     (long long)line_no, (long long)nfields, (long long)ncols,
                     (long long)first_line);
            goto done;
        }
        if (!reserve((void **)&s.x, &s.x_cap, (size_t)((n + 1) * nf), sizeof(float)) ||
            !reserve((void **)&s.t, &s.t_cap, (size_t)(n + 1), sizeof(double)) ||
            !reserve((void **)&s.line, &s.line_cap, (size_t)(n + 1), sizeof(int64_t))) {
            snprintf(msg, size, "%s: out of memory", spec->path);
            goto done;
        }
        float *xr = s.x + n * nf;
        const char *q = lp;
        for (int64_t c = 0; c < ncols; c++) {
            const char *comma = memchr(q, ',', (size_t)(le - q));
            const char *fe = comma ? comma : le;
            const char *fp = q;
            trim(&fp, &fe);
            double v;
            int flen = (int)(fe - fp) > 40 ? 40 : (int)(fe - fp);
            if (!parse_number(fp, fe, &v)) {
                snprintf(msg, size, "%s:%lld: column %lld: \"%.*s\" is not a number", spec->path,
                         (long long)line_no, (long long)c + 1, flen, fp);
                goto done;
            }
            if (!isfinite(v) || fabs(v) > FLT_MAX) {
                snprintf(msg, size, "%s:%lld: column %lld: %.*s is not a finite float32 number",
                         spec->path, (long long)line_no, (long long)c + 1, flen, fp);
                goto done;
            }
            if (c == tc)
                s.t[n] = v;
            else
                *xr++ = (float)v;
            q = comma ? comma + 1 : le;
        }
        s.line[n] = line_no;
        n++;
    }
    if (n == 0) {
        snprintf(msg, size, "%s: no rows of numbers", spec->path);
        goto done;
    }
    d->n = n;
    d->n_features = nf;
    d->x = s.x;
    d->line = s.line;
    s.x = NULL;
    s.line = NULL;
    if (with_target) {
        d->target_column = tc + 1;
        d->n_targets = 1;
        if (spec->classes) {
            d->labels = malloc((size_t)n * sizeof(int64_t));
            if (d->labels == NULL) {
                snprintf(msg, size, "%s: out of memory", spec->path);
                goto done;
            }
            for (int64_t i = 0; i < n; i++) {
                double v = s.t[i];
                if (v < 0 || v != floor(v) || v > EXACT_INT_MAX) {
                    snprintf(msg, size,
                             "%s:%lld: column %lld: label %.9g is not a class index "
                             "(a whole number >= 0)",
                             spec->path, (long long)d->line[i], (long long)d->target_column, v);
                    goto done;
                }
                d->labels[i] = (int64_t)v;
            }
        } else {
            d->y = malloc((size_t)n * sizeof(float));
            if (d->y == NULL) {
                snprintf(msg, size, "%s: out of memory", spec->path);
                goto done;
            }
            for (int64_t i = 0; i < n; i++)
                d->y[i] = (float)s.t[i];
        }
    }
    ok = true;
done:
    free(s.x);
    free(s.t);
    free(s.line);
    free(text);
    return ok;
}

/* ---- .npy --------------------------------------------------------------------------------- */

static bool is_npy(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    unsigned char magic[6];
    bool yes =
        fread(magic, 1, sizeof(magic), f) == sizeof(magic) && memcmp(magic, "\x93NUMPY", 6) == 0;
    fclose(f);
    return yes;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A tensor file (.npy or .pb) with at least one dimension: dims[0] samples. */
static bool read_tensor(const char *path, onyx_tensor *t, char *msg, size_t size)
{
    onyx_error err = {ONYX_OK, ""};
    if (onyx_tensor_read_file(path, t, NULL, &err) != ONYX_OK) {
        snprintf(msg, size, "%s", err.msg);
        return false;
    }
    bool numeric = t->dtype != ONYX_DTYPE_STRING && t->dtype != ONYX_DTYPE_UNDEFINED;
    if (t->rank < 1 || !numeric) {
        char shape[128];
        cli_tensor_shape(t, shape, sizeof(shape));
        snprintf(msg, size,
                 "%s: a %s tensor of shape %s: expected numbers with the samples "
                 "along the first dimension",
                 path, onyx_dtype_name(t->dtype), shape);
        onyx_tensor_free(t);
        return false;
    }
    return true;
}

/* "[12, 3]": the position of flat element k of sample i with per samples per row. */
static void elem_pos(int64_t i, int64_t k, int64_t per, int rank, char *buf, size_t size)
{
    if (rank <= 1 || per == 1)
        snprintf(buf, size, "[%lld]", (long long)i);
    else
        snprintf(buf, size, "[%lld, %lld]", (long long)i, (long long)k);
}

static bool load_npy_features(const data_spec *spec, data_set *d, char *msg, size_t size)
{
    onyx_tensor t;
    if (!read_tensor(spec->path, &t, msg, size))
        return false;
    int64_t n = t.dims[0];
    int64_t nf = n > 0 ? onyx_tensor_numel(&t) / n : 0;
    bool ok = false;
    if (n == 0) {
        snprintf(msg, size, "%s: no samples (the first dimension is 0)", spec->path);
        goto done;
    }
    if (spec->n_features >= 0 && nf != spec->n_features) {
        char shape[128];
        cli_tensor_shape(&t, shape, sizeof(shape));
        snprintf(msg, size, "%s: shape %s gives %lld features per sample, but %s takes %lld",
                 spec->path, shape, (long long)nf, spec->input_desc, (long long)spec->n_features);
        goto done;
    }
    d->x = malloc((size_t)(n * nf) * sizeof(float) + 1);
    if (d->x == NULL) {
        snprintf(msg, size, "%s: out of memory", spec->path);
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < nf; k++) {
            double v = cli_load_f64(t.dtype, t.data, i * nf + k);
            if (!isfinite(v) || fabs(v) > FLT_MAX) {
                char pos[64];
                elem_pos(i, k, nf, 2, pos, sizeof(pos));
                snprintf(msg, size,
                         "%s: element %s (row %lld, column %lld): %g is not a finite "
                         "float32 number",
                         spec->path, pos, (long long)i, (long long)k, v);
                goto done;
            }
            d->x[i * nf + k] = (float)v;
        }
    d->n = n;
    d->n_features = nf;
    ok = true;
done:
    onyx_tensor_free(&t);
    return ok;
}

/* Targets from a tensor file, for the d->n samples already read. */
static bool load_npy_targets(const data_spec *spec, data_set *d, char *msg, size_t size)
{
    const char *path = spec->targets_path;
    onyx_tensor t;
    if (!read_tensor(path, &t, msg, size))
        return false;
    bool ok = false;
    int64_t n = t.dims[0];
    int64_t per = n > 0 ? onyx_tensor_numel(&t) / n : 0;
    char shape[128];
    cli_tensor_shape(&t, shape, sizeof(shape));
    if (n != d->n) {
        snprintf(msg, size, "%s: %lld targets (shape %s), but %s has %lld samples", path,
                 (long long)n, shape, spec->path, (long long)d->n);
        goto done;
    }
    if (spec->classes) {
        if (per != 1) {
            snprintf(msg, size,
                     "%s: shape %s: class indices must be one per sample ([%lld] or "
                     "[%lld, 1])",
                     path, shape, (long long)n, (long long)n);
            goto done;
        }
        d->labels = malloc((size_t)n * sizeof(int64_t) + 1);
        if (d->labels == NULL) {
            snprintf(msg, size, "%s: out of memory", path);
            goto done;
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t label;
            bool valid;
            if (t.dtype == ONYX_DTYPE_I64) {
                label = ((const int64_t *)t.data)[i];
                valid = label >= 0;
            } else if (t.dtype == ONYX_DTYPE_U64) {
                uint64_t u = ((const uint64_t *)t.data)[i];
                label = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
                valid = true;
            } else { /* every other dtype holds its integers exactly in a double */
                double v = cli_load_f64(t.dtype, t.data, i);
                if (!(v >= 0 && v == floor(v) && v <= EXACT_INT_MAX)) {
                    snprintf(msg, size,
                             "%s: element [%lld]: label %.9g is not a class index (a "
                             "whole number >= 0)",
                             path, (long long)i, v);
                    goto done;
                }
                label = (int64_t)v;
                valid = true;
            }
            if (!valid) {
                snprintf(msg, size,
                         "%s: element [%lld]: label %lld is not a class index (a "
                         "whole number >= 0)",
                         path, (long long)i, (long long)label);
                goto done;
            }
            d->labels[i] = label;
        }
        d->n_targets = 1;
    } else {
        d->y = malloc((size_t)(n * per) * sizeof(float) + 1);
        if (d->y == NULL) {
            snprintf(msg, size, "%s: out of memory", path);
            goto done;
        }
        for (int64_t i = 0; i < n * per; i++) {
            double v = cli_load_f64(t.dtype, t.data, i);
            if (!isfinite(v) || fabs(v) > FLT_MAX) {
                char pos[64];
                elem_pos(i / per, i % per, per, t.rank, pos, sizeof(pos));
                snprintf(msg, size, "%s: element %s: target %g is not a finite float32 number",
                         path, pos, v);
                goto done;
            }
            d->y[i] = (float)v;
        }
        d->n_targets = per;
    }
    ok = true;
done:
    onyx_tensor_free(&t);
    return ok;
}

/* ---- the data set ------------------------------------------------------------------------- */

bool data_load(const data_spec *spec, data_set *d, char *msg, size_t size)
{
    memset(d, 0, sizeof(*d));
    d->path = spec->path;
    d->targets_path = spec->targets_path;
    bool tensor_file =
        is_npy(spec->path) || ends_with(spec->path, ".pb") || ends_with(spec->path, ".npy");
    bool ok;
    if (tensor_file) {
        if (spec->targets_path == NULL) {
            snprintf(msg, size,
                     "%s: features in a tensor file need their targets in a second "
                     "file (--targets y.npy; --val-targets for --val)",
                     spec->path);
            return false;
        }
        ok = load_npy_features(spec, d, msg, size);
    } else {
        ok = load_csv(spec, d, spec->targets_path == NULL, msg, size);
    }
    if (ok && spec->targets_path != NULL)
        ok = load_npy_targets(spec, d, msg, size);
    if (!ok) {
        data_free(d);
        d->path = spec->path;
        d->targets_path = spec->targets_path;
    }
    return ok;
}

bool data_check_classes(const data_set *d, int64_t n_classes, const char *what, char *msg,
                        size_t size)
{
    for (int64_t i = 0; i < d->n; i++) {
        if (d->labels[i] < n_classes)
            continue;
        char at[512];
        if (d->targets_path == NULL)
            snprintf(at, sizeof(at), "%s:%lld: column %lld", d->path, (long long)d->line[i],
                     (long long)d->target_column);
        else
            snprintf(at, sizeof(at), "%s: element [%lld]", d->targets_path, (long long)i);
        snprintf(msg, size, "%s: label %lld is out of range (%s has %lld classes: 0..%lld)", at,
                 (long long)d->labels[i], what, (long long)n_classes, (long long)n_classes - 1);
        return false;
    }
    return true;
}

bool data_check_targets(const data_set *d, int64_t n_targets, bool unit_interval, const char *what,
                        char *msg, size_t size)
{
    const char *path = d->targets_path != NULL ? d->targets_path : d->path;
    if (d->n_targets != n_targets) {
        snprintf(msg, size, "%s: %lld target value(s) per sample, but %s gives %lld%s", path,
                 (long long)d->n_targets, what, (long long)n_targets,
                 d->targets_path == NULL && n_targets > 1
                     ? " (several targets per sample: give them as --targets y.npy)"
                     : "");
        return false;
    }
    if (!unit_interval)
        return true;
    for (int64_t i = 0; i < d->n * d->n_targets; i++) {
        float v = d->y[i];
        if (v >= 0.0f && v <= 1.0f)
            continue;
        char at[512];
        int64_t row = i / d->n_targets;
        if (d->targets_path == NULL)
            where(d, d->path, row, at, sizeof(at));
        else
            snprintf(at, sizeof(at), "%s: row %lld", path, (long long)row);
        if (d->targets_path == NULL)
            snprintf(msg, size, "%s: column %lld: target %g is not in [0, 1] as bce needs", at,
                     (long long)d->target_column, (double)v);
        else
            snprintf(msg, size, "%s, column %lld: target %g is not in [0, 1] as bce needs", at,
                     (long long)(i % d->n_targets), (double)v);
        return false;
    }
    return true;
}

void data_free(data_set *d)
{
    if (d == NULL)
        return;
    free(d->x);
    free(d->labels);
    free(d->y);
    free(d->line);
    memset(d, 0, sizeof(*d));
}

/* ---- batches ------------------------------------------------------------------------------ */

/* splitmix64 (Steele, Lea, Flood 2014): a tiny generator whose whole state is one word. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A uniform integer in [0, n), n >= 1, without modulo bias (rejection of the short range). */
static uint64_t below(uint64_t *state, uint64_t n)
{
    uint64_t threshold = (0 - n) % n; /* 2^64 mod n */
    for (;;) {
        uint64_t r = splitmix64(state);
        if (r >= threshold)
            return r % n;
    }
}

void data_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch, int64_t *order)
{
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    if (!shuffle)
        return;
    /* the generator of epoch e: seed and e mixed through two splitmix rounds */
    uint64_t s = seed;
    uint64_t state = splitmix64(&s) ^ ((uint64_t)epoch * 0xd1342543de82ef95ULL);
    (void)splitmix64(&state);
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates (Durstenfeld) */
        int64_t j = (int64_t)below(&state, (uint64_t)i + 1);
        int64_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}

void data_gather(const data_set *d, const int64_t *idx, int64_t b, float *x, int64_t *labels,
                 float *y)
{
    size_t row = (size_t)d->n_features * sizeof(float);
    for (int64_t i = 0; i < b; i++) {
        int64_t k = idx[i];
        memcpy(x + i * d->n_features, d->x + k * d->n_features, row);
        if (labels != NULL && d->labels != NULL)
            labels[i] = d->labels[k];
        if (y != NULL && d->y != NULL)
            memcpy(y + i * d->n_targets, d->y + k * d->n_targets,
                   (size_t)d->n_targets * sizeof(float));
    }
}
