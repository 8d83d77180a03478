/*
 * ckpt.c — training checkpoints: one .zip per checkpoint holding model.onnx, training_state.pb
 * and manifest.txt, written crash-safely and verified when read. The only file of onyx that
 * includes <zip.h>; the trainer hands over and gets back plain byte blobs.
 *
 * Writing (never in place, CONVENTIONS rule 22):
 *   1. zip_open("<path>.tmp.<pid>.<seq>", ZIP_CREATE | ZIP_EXCL): nothing is created yet;
 *   2. the three blobs are added with zip_source_buffer (no copy; they outlive zip_close);
 *   3. zip_close writes libzip's own temporary file "<that name>.<random>" and renames it to
 *      "<path>.tmp.<pid>.<seq>" (on failure: zip_discard, and libzip removes its file);
 *   4. we open that file, fsync it, rename it over path and fsync the folder.
 * Until step 4's rename, path is untouched; rename(2) is atomic, so a kill -9 at any moment
 * leaves either the old complete checkpoint or the new complete one. The fsyncs make the same
 * hold across a power loss: the data is on disk before the name points at it, and the folder's
 * new entry is on disk before onyx_ckpt_write returns. At any moment one write has at most one
 * temporary file on disk (libzip's, then ours under its final temporary name); what a killed
 * process leaves behind is removed by the next write of the same path (remove_stale_temps).
 *
 * Entries are stored, not deflated: model.onnx and training_state.pb are almost all float32
 * weights and optimizer moments, which deflate shrinks by only ~5-10% at 20-50 MB/s, so a
 * large model would spend seconds per checkpoint for nothing; stored entries are also written
 * at disk speed and can be read straight out of the file by any zip tool. The CRC-32 of every
 * entry is still recorded and checked on reading. libzip switches to ZIP64 by itself when the
 * archive passes 4 GiB.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#define ENTRY_MODEL    "model.onnx"
#define ENTRY_STATE    "training_state.pb"
#define ENTRY_MANIFEST "manifest.txt"

/* A manifest is a few lines of text; anything bigger is not ours. */
#define MAX_MANIFEST_SIZE ((size_t)1 << 20)
#define FORMAT_PREFIX     "onyx checkpoint format "

/* Makes every temporary name of this process distinct, also across threads. */
static atomic_uint tmp_seq;

/* ---- paths -------------------------------------------------------------------------------- */

/* Splits path into new malloc'd copies of its folder ("." when it has none) and its last
 * component. */
static onyx_status split_path(const char *path, char **dir, char **base, onyx_error *err)
{
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash == NULL ? 1 : (slash == path ? 1 : (size_t)(slash - path));
    const char *b = slash == NULL ? path : slash + 1;
    *dir = malloc(dir_len + 1);
    *base = malloc(strlen(b) + 1);
    if (*dir == NULL || *base == NULL) {
        free(*dir);
        free(*base);
        *dir = *base = NULL;
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", path);
    }
    if (slash == NULL)
        memcpy(*dir, ".", 2);
    else if (slash == path)
        memcpy(*dir, "/", 2);
    else {
        memcpy(*dir, path, dir_len);
        (*dir)[dir_len] = '\0';
    }
    strcpy(*base, b);
    return ONYX_OK;
}

/* "dir/name" in a new malloc'd string, or NULL. */
static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Parses a run of decimal digits at *s (at least one, value at most max) and moves *s past it. */
static bool parse_digits(const char **s, unsigned long long max, unsigned long long *out)
{
    const char *p = *s;
    unsigned long long v = 0;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *s = p;
    *out = v;
    return true;
}

/* Removes the temporary files that writes of dir/base left behind when their process died:
 * "<base>.tmp.<pid>.<seq>" (ours, and onyx_write_file_atomic's) and libzip's
 * "<base>.tmp.<pid>.<seq>.<suffix>", for every pid other than ours that no longer runs. A live
 * writer's files are left alone. Best effort: a failure here never fails the write. */
static void remove_stale_temps(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    size_t base_len = strlen(base);
    pid_t self = getpid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *s = e->d_name;
        if (strncmp(s, base, base_len) != 0 || strncmp(s + base_len, ".tmp.", 5) != 0)
            continue;
        s += base_len + 5;
        unsigned long long pid;
        unsigned long long seq;
        if (!parse_digits(&s, 0x7fffffff, &pid) || *s++ != '.' || !parse_digits(&s, ~0ull, &seq))
            continue;
        if (*s != '\0' && *s != '.')
            continue;
        if (pid == 0 || (pid_t)pid == self)
            continue;
        /* ESRCH: no such process (EPERM means it runs under another user) */
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char *p = join_path(dir, e->d_name);
        if (p != NULL)
            unlink(p);
        free(p);
    }
    closedir(d);
}


/* ---- manifest ----------------------------------------------------------------------------- */

/* Checks that the NUL-terminated manifest text starts with the line ONYX_CKPT_FORMAT_LINE
 * (a '\r' before its '\n' tolerated). `what` names the source in messages. */
static onyx_status check_manifest(const char *text, const char *what, onyx_error *err)
{
    size_t line = strcspn(text, "\n");
    if (line > 0 && text[line - 1] == '\r')
        line--;
    size_t want = strlen(ONYX_CKPT_FORMAT_LINE);
    if (line == want && memcmp(text, ONYX_CKPT_FORMAT_LINE, want) == 0)
        return ONYX_OK;
    /* The first line, cut to 60 characters, with anything unprintable shown as '?'. */
    char shown[64];
    size_t n = line < 60 ? line : 60;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        shown[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    shown[n] = '\0';
    size_t plen = strlen(FORMAT_PREFIX);
    if (line > plen && memcmp(text, FORMAT_PREFIX, plen) == 0)
        return onyx_err(err, ONYX_ERR_UNSUPPORTED,
                        "%s: checkpoint format %s is not supported: this onyx reads \"%s\" only",
                        what, shown + plen, ONYX_CKPT_FORMAT_LINE);
    return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                    "%s: not a checkpoint: manifest.txt starts with \"%s%s\", expected \"%s\"",
                    what, shown, line > n ? "..." : "", ONYX_CKPT_FORMAT_LINE);
}

/* ---- writing ------------------------------------------------------------------------------ */

/* Adds name = data[0..size) to za, stored (see the top of the file). data is borrowed until
 * zip_close. */
static onyx_status add_entry(zip_t *za, const char *path, const char *name, const void *data,
                             size_t size, onyx_error *err)
{
    zip_source_t *src = zip_source_buffer(za, data, size, 0);
    if (src == NULL)
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: cannot add %s: %s", path, name, zip_strerror(za));
    zip_int64_t idx = zip_file_add(za, name, src, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
        /* zip_file_add takes the source only when it succeeds */
        zip_source_free(src);
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: cannot add %s: %s", path, name, zip_strerror(za));
    }
    if (zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0) != 0)
        return onyx_err(err, ONYX_ERR_INTERNAL, "%s: cannot store %s uncompressed: %s", path, name,
                        zip_strerror(za));
    return ONYX_OK;
}

onyx_status onyx_ckpt_write(const char *path, const onyx_ckpt_blobs *b, onyx_error *err)
{
    if (path == NULL || b == NULL || b->manifest == NULL ||
        (b->model == NULL && b->model_size > 0) || (b->state == NULL && b->state_size > 0))
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "onyx_ckpt_write: NULL path, blobs, manifest or blob data");
    /* Refuse now what onyx_ckpt_read would refuse later. */
    if (b->model_size > ONYX_MAX_FILE_SIZE || b->state_size > ONYX_MAX_FILE_SIZE)
        return onyx_err(
            err, ONYX_ERR_INVALID_ARG, "%s: %s is %zu bytes, more than the limit of %zu", path,
            b->model_size > ONYX_MAX_FILE_SIZE ? ENTRY_MODEL : ENTRY_STATE,
            b->model_size > ONYX_MAX_FILE_SIZE ? b->model_size : b->state_size, ONYX_MAX_FILE_SIZE);
    size_t manifest_size = strlen(b->manifest);
    if (manifest_size > MAX_MANIFEST_SIZE)
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "%s: manifest.txt is %zu bytes, more than the limit of %zu", path,
                        manifest_size, MAX_MANIFEST_SIZE);
    onyx_status st = check_manifest(b->manifest, path, err);
    if (st != ONYX_OK) {
        if (err != NULL)
            err->code = ONYX_ERR_INVALID_ARG;
        return ONYX_ERR_INVALID_ARG;
    }

    char *dir = NULL;
    char *base = NULL;
    st = split_path(path, &dir, &base, err);
    if (st != ONYX_OK)
        return st;
    remove_stale_temps(dir, base);

    size_t tmp_cap = strlen(path) + 48;
    char *tmp = malloc(tmp_cap);
    if (tmp == NULL) {
        st = onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory", path);
        goto fail_free_names;
    }
    /* A name can only exist already when a process with our pid (an earlier one, pids are
     * reused) was killed mid-write: take the next one. */
    zip_t *za = NULL;
    int zerr = ZIP_ER_OK;
    for (int attempt = 0; attempt < 100 && za == NULL; attempt++) {
        snprintf(tmp, tmp_cap, "%s.tmp.%ld.%u", path, (long)getpid(),
                 atomic_fetch_add(&tmp_seq, 1u));
        za = zip_open(tmp, ZIP_CREATE | ZIP_EXCL, &zerr);
        if (za == NULL && zerr != ZIP_ER_EXISTS)
            break;
    }
    if (za == NULL) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        st = onyx_err(err, ONYX_ERR_IO, "%s: cannot create the temporary file %s: %s", path, tmp,
                      zip_error_strerror(&ze));
        zip_error_fini(&ze);
        goto fail_free_tmp;
    }
    st = add_entry(za, path, ENTRY_MODEL, b->model, b->model_size, err);
    if (st == ONYX_OK)
        st = add_entry(za, path, ENTRY_STATE, b->state, b->state_size, err);
    if (st == ONYX_OK)
        st = add_entry(za, path, ENTRY_MANIFEST, b->manifest, manifest_size, err);
    if (st != ONYX_OK) {
        zip_discard(za);
        goto fail_free_tmp;
    }
    if (zip_close(za) != 0) {
        st = onyx_err(err, ONYX_ERR_IO, "%s: cannot write the checkpoint in %s: %s", path, dir,
                      zip_strerror(za));
        zip_discard(za);
        goto fail_free_tmp;
    }

    /* libzip neither fsyncs its file nor the folder: the data must be on disk before the
     * rename makes path point at it. */
    int fd = open(tmp, O_RDONLY);
    if (fd < 0) {
        st = onyx_err(err, ONYX_ERR_IO, "%s: cannot reopen the temporary file %s: %s", path, tmp,
                      strerror(errno));
        goto fail_unlink_tmp;
    }
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0) {
        st = onyx_err(err, ONYX_ERR_IO, "%s: cannot sync the temporary file %s: %s", path, tmp,
                      strerror(e));
        goto fail_unlink_tmp;
    }
    if (rename(tmp, path) != 0) {
        st = onyx_err(err, ONYX_ERR_IO, "%s: cannot rename %s to it: %s", path, tmp,
                      strerror(errno));
        goto fail_unlink_tmp;
    }
    st = onyx_fsync_dir(dir, path, err);
    free(tmp);
    free(dir);
    free(base);
    return st;

fail_unlink_tmp:
    unlink(tmp);
fail_free_tmp:
    free(tmp);
fail_free_names:
    free(dir);
    free(base);
    return st;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* Why zip_open refused path: its code, and the errno right after the call. */
static onyx_status open_error(const char *path, int zerr, int sys_errno, onyx_error *err)
{
    switch (zerr) {
    case ZIP_ER_NOZIP: {
        /* No end of central directory. A file that starts like a zip ("PK\3\4", the first
         * local header) lost its end; anything else never was a zip. */
        unsigned char head[4] = {0};
        FILE *f = fopen(path, "rb");
        size_t got = f != NULL ? fread(head, 1, sizeof(head), f) : 0;
        if (f != NULL)
            fclose(f);
        if (got == 4 && memcmp(head, "PK\3\4", 4) == 0)
            return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                            "%s: truncated or damaged checkpoint: a zip archive without its end "
                            "(central directory not found)",
                            path);
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: not a checkpoint: not a zip archive",
                        path);
    }
    case ZIP_ER_INCONS:
    case ZIP_ER_EOF:
    case ZIP_ER_MULTIDISK: {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        onyx_status st =
            onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: truncated or damaged checkpoint: %s", path,
                     zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    case ZIP_ER_MEMORY:
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory opening the checkpoint", path);
    default: {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        onyx_status st = onyx_err(err, ONYX_ERR_IO, "%s: cannot open the checkpoint: %s%s%s", path,
                                  zip_error_strerror(&ze), sys_errno ? ": " : "",
                                  sys_errno ? strerror(sys_errno) : "");
        zip_error_fini(&ze);
        return st;
    }
    }
}

/* Maps a libzip error met while reading entry `name` to a status and message. */
static onyx_status entry_error(const char *path, const char *name, zip_error_t *ze, onyx_error *err)
{
    switch (zip_error_code_zip(ze)) {
    case ZIP_ER_CRC:
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: entry %s is corrupt: bad CRC (its bytes differ from those written)",
                        path, name);
    case ZIP_ER_EOF:
    case ZIP_ER_INCONS:
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: entry %s is truncated or damaged: %s",
                        path, name, zip_error_strerror(ze));
    case ZIP_ER_ZLIB:
    case ZIP_ER_COMPRESSED_DATA:
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: entry %s is corrupt: %s", path, name,
                        zip_error_strerror(ze));
    case ZIP_ER_COMPNOTSUPP:
    case ZIP_ER_ENCRNOTSUPP:
    case ZIP_ER_NOPASSWD:
        return onyx_err(err, ONYX_ERR_UNSUPPORTED, "%s: entry %s cannot be read: %s", path, name,
                        zip_error_strerror(ze));
    case ZIP_ER_MEMORY:
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory reading entry %s", path, name);
    default:
        return onyx_err(err, ONYX_ERR_IO, "%s: cannot read entry %s: %s", path, name,
                        zip_error_strerror(ze));
    }
}

/* Reads entry idx (called name) whole into a new malloc'd buffer with one extra byte set to
 * NUL, after checking its declared size against max before allocating; CRC checked. */
static onyx_status read_entry(zip_t *za, const char *path, const char *name, zip_uint64_t idx,
                              size_t max, void **out, size_t *out_size, onyx_error *err)
{
    *out = NULL;
    *out_size = 0;
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_stat_index(za, idx, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE))
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: entry %s has no readable size: %s", path,
                        name, zip_strerror(za));
    if (zs.size > max)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: entry %s is %llu bytes, more than the limit of %zu", path, name,
                        (unsigned long long)zs.size, max);
    size_t size = (size_t)zs.size;
    unsigned char *buf = malloc(size + 1);
    if (buf == NULL)
        return onyx_err(err, ONYX_ERR_NOMEM, "%s: cannot allocate %zu bytes for entry %s", path,
                        size, name);
    onyx_status st = ONYX_OK;
    zip_file_t *zf = zip_fopen_index(za, idx, 0);
    if (zf == NULL) {
        st = entry_error(path, name, zip_get_error(za), err);
        goto fail_free_buf;
    }
    size_t got = 0;
    while (got < size) {
        zip_int64_t n = zip_fread(zf, buf + got, size - got);
        if (n < 0) {
            st = entry_error(path, name, zip_file_get_error(zf), err);
            goto fail_close;
        }
        if (n == 0) {
            st = onyx_err(err, ONYX_ERR_INVALID_MODEL,
                          "%s: entry %s is truncated: %zu of its %zu bytes", path, name, got, size);
            goto fail_close;
        }
        got += (size_t)n;
    }
    /* libzip checks the CRC when a read reaches the end of the entry: make that read. */
    unsigned char extra;
    zip_int64_t n = zip_fread(zf, &extra, 1);
    if (n < 0) {
        st = entry_error(path, name, zip_file_get_error(zf), err);
        goto fail_close;
    }
    if (n > 0) {
        st = onyx_err(err, ONYX_ERR_INVALID_MODEL,
                      "%s: entry %s is damaged: longer than its declared %zu bytes", path, name,
                      size);
        goto fail_close;
    }
    int zc = zip_fclose(zf);
    if (zc != 0) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zc);
        st = entry_error(path, name, &ze, err);
        zip_error_fini(&ze);
        goto fail_free_buf;
    }
    buf[size] = '\0';
    *out = buf;
    *out_size = size;
    return ONYX_OK;

fail_close:
    zip_fclose(zf);
fail_free_buf:
    free(buf);
    return st;
}

/* Finds the three entries; tells a foreign zip (none of them) from a damaged checkpoint (some
 * missing). */
static onyx_status locate_entries(zip_t *za, const char *path, zip_uint64_t idx[3], onyx_error *err)
{
    static const char *const names[3] = {ENTRY_MODEL, ENTRY_STATE, ENTRY_MANIFEST};
    char missing[64] = "";
    int n_missing = 0;
    for (int i = 0; i < 3; i++) {
        zip_int64_t k = zip_name_locate(za, names[i], 0);
        if (k < 0) {
            strcat(missing, n_missing ? ", " : "");
            strcat(missing, names[i]);
            n_missing++;
        } else {
            idx[i] = (zip_uint64_t)k;
        }
    }
    if (n_missing == 0)
        return ONYX_OK;
    zip_int64_t n_entries = zip_get_num_entries(za, 0);
    if (n_missing == 3) {
        const char *first = n_entries > 0 ? zip_get_name(za, 0, 0) : NULL;
        if (first == NULL)
            return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                            "%s: not a checkpoint: an empty zip archive", path);
        return onyx_err(err, ONYX_ERR_INVALID_MODEL,
                        "%s: not a checkpoint: a foreign zip archive (%lld entries, the first "
                        "\"%.80s\"; none of model.onnx, training_state.pb, manifest.txt)",
                        path, (long long)n_entries, first);
    }
    return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: checkpoint is missing entr%s %s", path,
                    n_missing > 1 ? "ies" : "y", missing);
}

onyx_status onyx_ckpt_read(const char *path, void **model, size_t *model_size, void **state,
                           size_t *state_size, char **manifest, onyx_error *err)
{
    if (path == NULL || model == NULL || model_size == NULL || state == NULL ||
        state_size == NULL || manifest == NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG, "onyx_ckpt_read: NULL argument");
    *model = NULL;
    *state = NULL;
    *manifest = NULL;
    *model_size = 0;
    *state_size = 0;

    struct stat sb;
    if (stat(path, &sb) != 0)
        return onyx_err(err, ONYX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return onyx_err(err, ONYX_ERR_IO, "%s: not a regular file", path);
    /* libzip takes an empty file for an empty archive */
    if (sb.st_size == 0)
        return onyx_err(err, ONYX_ERR_INVALID_MODEL, "%s: not a checkpoint: the file is empty",
                        path);

    int zerr = ZIP_ER_OK;
    errno = 0;
    zip_t *za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
    if (za == NULL)
        return open_error(path, zerr, errno, err);

    zip_uint64_t idx[3];
    void *text = NULL;
    size_t text_size = 0;
    onyx_status st = locate_entries(za, path, idx, err);
    if (st != ONYX_OK)
        goto fail_discard;
    /* The manifest first: a newer format is refused before reading gigabytes of weights. */
    st = read_entry(za, path, ENTRY_MANIFEST, idx[2], MAX_MANIFEST_SIZE, &text, &text_size, err);
    if (st != ONYX_OK)
        goto fail_discard;
    if (strlen(text) != text_size) {
        st = onyx_err(err, ONYX_ERR_INVALID_MODEL,
                      "%s: not a checkpoint: manifest.txt holds a NUL byte (not text)", path);
        goto fail_free;
    }
    st = check_manifest(text, path, err);
    if (st != ONYX_OK)
        goto fail_free;
    st = read_entry(za, path, ENTRY_MODEL, idx[0], ONYX_MAX_FILE_SIZE, model, model_size, err);
    if (st != ONYX_OK)
        goto fail_free;
    st = read_entry(za, path, ENTRY_STATE, idx[1], ONYX_MAX_FILE_SIZE, state, state_size, err);
    if (st != ONYX_OK)
        goto fail_free;
    /* opened read-only: discarding is closing */
    zip_discard(za);
    *manifest = text;
    return ONYX_OK;

fail_free:
    free(*model);
    free(*state);
    free(text);
    *model = NULL;
    *state = NULL;
    *model_size = 0;
    *state_size = 0;
fail_discard:
    zip_discard(za);
    return st;
}

/* ---- keeping the last N ------------------------------------------------------------------- */

typedef struct ckpt_file {
    unsigned long long step;
    char *name;
} ckpt_file;

/* Newest first: higher step, then (same step written twice, "7" and "007") the greater name. */
static int cmp_newest_first(const void *pa, const void *pb)
{
    const ckpt_file *a = pa;
    const ckpt_file *b = pb;
    if (a->step != b->step)
        return a->step < b->step ? 1 : -1;
    return -strcmp(a->name, b->name);
}

onyx_status onyx_ckpt_prune(const char *dir, const char *prefix, int keep, onyx_error *err)
{
    if (dir == NULL || prefix == NULL || strchr(prefix, '/') != NULL)
        return onyx_err(err, ONYX_ERR_INVALID_ARG,
                        "onyx_ckpt_prune: NULL folder or prefix, or a prefix with a '/'");
    if (keep <= 0)
        return ONYX_OK;
    DIR *d = opendir(dir);
    if (d == NULL)
        return onyx_err(err, ONYX_ERR_IO, "%s: cannot list checkpoints: %s", dir, strerror(errno));
    size_t prefix_len = strlen(prefix);
    ckpt_file *files = NULL;
    size_t n = 0;
    size_t cap = 0;
    onyx_status st = ONYX_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        /* "<prefix><digits>.zip" and nothing else */
        const char *s = e->d_name;
        unsigned long long step;
        if (strncmp(s, prefix, prefix_len) != 0)
            continue;
        s += prefix_len;
        if (!parse_digits(&s, ~0ull, &step) || strcmp(s, ".zip") != 0)
            continue;
        if (n == cap) {
            size_t new_cap = cap ? 2 * cap : 16;
            ckpt_file *grown = realloc(files, new_cap * sizeof(*files));
            if (grown == NULL) {
                st = onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory listing checkpoints", dir);
                goto done;
            }
            files = grown;
            cap = new_cap;
        }
        files[n].step = step;
        files[n].name = join_path(dir, e->d_name);
        if (files[n].name == NULL) {
            st = onyx_err(err, ONYX_ERR_NOMEM, "%s: out of memory listing checkpoints", dir);
            goto done;
        }
        n++;
    }
    if (n > 0)
        qsort(files, n, sizeof(*files), cmp_newest_first);
    /* Delete every older one; report the first failure after trying them all. */
    for (size_t i = (size_t)keep; i < n; i++) {
        if (unlink(files[i].name) != 0 && errno != ENOENT && st == ONYX_OK)
            st = onyx_err(err, ONYX_ERR_IO, "%s: cannot delete old checkpoint: %s", files[i].name,
                          strerror(errno));
    }
done:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        free(files[i].name);
    free(files);
    return st;
}
