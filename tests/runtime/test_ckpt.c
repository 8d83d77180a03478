/* test_ckpt.c — runtime/ckpt.c: checkpoint zips written crash-safely, read back verified, pruned.
 *
 * Corrupt files are made from good ones by cutting or flipping bytes at offsets read from the
 * zip headers (APPNOTE.TXT 4.3.7: local file header, 30 bytes + name + extra); foreign and
 * incomplete archives are made here with libzip directly. The crash test forks a writer, kills
 * it with SIGKILL at random moments and checks that the checkpoint still verifies each time. */
#include "check.h"
#include "test_files.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zip.h>

/* Deterministic bytes: seed selects the sequence (xorshift64*). */
static void fill_pattern(unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = (unsigned char)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
}

static bool matches_pattern(const unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        if (p[i] != (unsigned char)((x * 0x2545F4914F6CDD1Dull) >> 56))
            return false;
    }
    return true;
}

/* Reads path expecting failure; checks the status and that the message names the file and
 * contains sub; the out-pointers must come back NULL. */
static void expect_refused(const char *path, onyx_status code, const char *sub)
{
    void *model = (void *)1;
    void *state = (void *)1;
    char *manifest = (char *)1;
    size_t ms = 7;
    size_t ss = 7;
    onyx_error err = {ONYX_OK, ""};
    onyx_status st = onyx_ckpt_read(path, &model, &ms, &state, &ss, &manifest, &err);
    CHECK(st == code);
    CHECK(err.code == code);
    if (st != code)
        fprintf(stderr, "  %s: status %s, message \"%s\"\n", path, onyx_status_str(st), err.msg);
    CHECK_MSG(err.msg, path);
    CHECK_MSG(err.msg, sub);
    CHECK(model == NULL && state == NULL && manifest == NULL && ms == 0 && ss == 0);
}

/* Builds a zip with libzip directly: n entries name[i] = data[i] (NUL-terminated text),
 * deflated when deflate is true. */
static void make_zip(const char *path, int n, const char *const *names, const char *const *data,
                     bool deflate)
{
    int zerr = 0;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    CHECK(za != NULL);
    if (za == NULL)
        return;
    for (int i = 0; i < n; i++) {
        zip_source_t *src = zip_source_buffer(za, data[i], strlen(data[i]), 0);
        zip_int64_t idx = src != NULL ? zip_file_add(za, names[i], src, 0) : -1;
        CHECK(idx >= 0);
        if (idx >= 0)
            CHECK(zip_set_file_compression(za, (zip_uint64_t)idx,
                                           deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0) == 0);
        else if (src != NULL)
            zip_source_free(src);
    }
    CHECK(zip_close(za) == 0);
}

/* Number of files in th_tmpdir() whose name starts with prefix; *n_dots (if not NULL) gets the
 * number of '.' in the last one's name after the prefix. */
static int count_prefixed_dots(const char *prefix, int *n_dots)
{
    DIR *d = opendir(th_tmpdir());
    int n = 0;
    if (d == NULL)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        n++;
        if (n_dots != NULL) {
            *n_dots = 0;
            for (const char *c = e->d_name + strlen(prefix); *c; c++)
                *n_dots += *c == '.';
        }
    }
    closedir(d);
    return n;
}

static int count_prefixed(const char *prefix)
{
    return count_prefixed_dots(prefix, NULL);
}

static const char MANIFEST[] = ONYX_CKPT_FORMAT_LINE "\nstep 120\nepoch 3\nloss 0.25\n";

/* ---- round trip --------------------------------------------------------------------------- */

static void round_trip(const char *name, const onyx_ckpt_blobs *b)
{
    onyx_error err = {ONYX_OK, ""};
    CHECK_OK(onyx_ckpt_write(th_path(name), b, &err), err.msg);
    void *model = NULL;
    void *state = NULL;
    char *manifest = NULL;
    size_t ms = 0;
    size_t ss = 0;
    CHECK_OK(onyx_ckpt_read(th_path(name), &model, &ms, &state, &ss, &manifest, &err), err.msg);
    CHECK(model != NULL && state != NULL && manifest != NULL);
    CHECK(ms == b->model_size);
    CHECK(ss == b->state_size);
    if (model != NULL && ms == b->model_size)
        CHECK(ms == 0 || memcmp(model, b->model, ms) == 0);
    if (state != NULL && ss == b->state_size)
        CHECK(ss == 0 || memcmp(state, b->state, ss) == 0);
    if (manifest != NULL)
        CHECK(strcmp(manifest, b->manifest) == 0);
    free(model);
    free(state);
    free(manifest);
}

static void test_round_trip(void)
{
    /* small blobs */
    const char model_small[] = "\x08\x08\x12\x04onyx";
    const char state_small[] = "\x08\x78\x10\x03";
    onyx_ckpt_blobs b = {model_small, sizeof(model_small) - 1, state_small, sizeof(state_small) - 1,
                         MANIFEST};
    round_trip("small.zip", &b);

    /* empty training state (NULL with size 0), and a 5 MB model */
    size_t big = 5u * 1000 * 1000;
    unsigned char *model = malloc(big);
    fill_pattern(model, big, 1);
    onyx_ckpt_blobs b2 = {model, big, NULL, 0, MANIFEST};
    round_trip("big.zip", &b2);

    /* empty model too, a manifest that is only the format line without '\n' */
    onyx_ckpt_blobs b3 = {NULL, 0, "", 0, ONYX_CKPT_FORMAT_LINE};
    round_trip("empty.zip", &b3);

    /* overwriting an existing checkpoint replaces it */
    onyx_ckpt_blobs b4 = {model_small, 3, model, 1000, MANIFEST};
    round_trip("big.zip", &b4);

    /* The archive itself: exactly the three entries, stored, with the right sizes, and no
     * temporary file left behind. */
    int zerr = 0;
    zip_t *za = zip_open(th_path("big.zip"), ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
    CHECK(za != NULL);
    if (za != NULL) {
        CHECK(zip_get_num_entries(za, 0) == 3);
        const char *names[3] = {"model.onnx", "training_state.pb", "manifest.txt"};
        zip_uint64_t sizes[3] = {3, 1000, sizeof(MANIFEST) - 1};
        for (int i = 0; i < 3; i++) {
            zip_stat_t zs;
            CHECK(zip_stat(za, names[i], 0, &zs) == 0);
            CHECK(zs.size == sizes[i]);
            CHECK(zs.comp_method == ZIP_CM_STORE);
        }
        zip_discard(za);
    }
    CHECK(count_prefixed("big.zip.tmp") == 0);
    CHECK(count_prefixed("small.zip.tmp") == 0);

    /* the file gets the usual permissions (umask applied), not mkstemp's 0600 */
    mode_t mask = umask(0);
    umask(mask);
    struct stat sb;
    CHECK(stat(th_path("big.zip"), &sb) == 0);
    CHECK((sb.st_mode & 0777) == (0666 & ~mask));

    /* a relative path (no folder part) works too */
    char cwd[1024];
    if (getcwd(cwd, sizeof(cwd)) != NULL && chdir(th_tmpdir()) == 0) {
        round_trip("relative.zip", &b);
        CHECK(th_file_exists(th_path("relative.zip")));
        CHECK(chdir(cwd) == 0);
    }
    free(model);
}

/* ---- refused writes ----------------------------------------------------------------------- */

static void test_write_errors(void)
{
    onyx_error err = {ONYX_OK, ""};
    onyx_ckpt_blobs b = {"m", 1, "s", 1, "onyx checkpoint format 2\n"};
    CHECK(onyx_ckpt_write(th_path("w.zip"), &b, &err) == ONYX_ERR_INVALID_ARG);
    CHECK(err.code == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, "format 2");
    b.manifest = "step 3\n";
    CHECK(onyx_ckpt_write(th_path("w.zip"), &b, &err) == ONYX_ERR_INVALID_ARG);
    CHECK_MSG(err.msg, ONYX_CKPT_FORMAT_LINE);
    b.manifest = MANIFEST;
    b.model = NULL;
    CHECK(onyx_ckpt_write(th_path("w.zip"), &b, &err) == ONYX_ERR_INVALID_ARG);
    CHECK(onyx_ckpt_write(th_path("w.zip"), NULL, &err) == ONYX_ERR_INVALID_ARG);
    CHECK(!th_file_exists(th_path("w.zip")));

    /* a folder that does not exist: IO, naming the path, nothing left behind */
    b.model = "m";
    const char *p = th_path("no/such/dir/w.zip");
    CHECK(onyx_ckpt_write(p, &b, &err) == ONYX_ERR_IO);
    CHECK_MSG(err.msg, p);
    CHECK(!th_file_exists(p));

    /* over an existing directory: the rename fails, the directory and no temp file remain */
    CHECK(mkdir(th_path("adir.zip"), 0777) == 0);
    CHECK(onyx_ckpt_write(th_path("adir.zip"), &b, &err) == ONYX_ERR_IO);
    CHECK_MSG(err.msg, th_path("adir.zip"));
    CHECK(count_prefixed("adir.zip.tmp") == 0);
    expect_refused(th_path("adir.zip"), ONYX_ERR_IO, "not a regular file");
    rmdir(th_path("adir.zip"));

    /* err may be NULL */
    CHECK(onyx_ckpt_write(NULL, &b, NULL) == ONYX_ERR_INVALID_ARG);
}

/* ---- refused reads ------------------------------------------------------------------------ */

/* Offset of the data of the first entry (model.onnx): local header 30 bytes, then the name
 * (length at 26) and the extra field (length at 28), little-endian. */
static size_t first_data_offset(const unsigned char *z)
{
    size_t name_len = (size_t)z[26] | (size_t)z[27] << 8;
    size_t extra_len = (size_t)z[28] | (size_t)z[29] << 8;
    return 30 + name_len + extra_len;
}

static void test_corrupt(void)
{
    onyx_error err = {ONYX_OK, ""};
    size_t msize = 100000;
    unsigned char *model = malloc(msize);
    fill_pattern(model, msize, 2);
    unsigned char state[300];
    fill_pattern(state, sizeof(state), 3);
    onyx_ckpt_blobs b = {model, msize, state, sizeof(state), MANIFEST};
    CHECK_OK(onyx_ckpt_write(th_path("good.zip"), &b, &err), err.msg);
    size_t n = 0;
    unsigned char *z = th_slurp(th_path("good.zip"), &n);
    CHECK(z != NULL && n > msize);
    if (z == NULL || n <= msize) {
        free(model);
        free(z);
        return;
    }
    CHECK(memcmp(z, "PK\3\4", 4) == 0);

    /* random bytes */
    unsigned char junk[4096];
    fill_pattern(junk, sizeof(junk), 4);
    th_write_bytes(th_path("random.zip"), junk, sizeof(junk));
    expect_refused(th_path("random.zip"), ONYX_ERR_INVALID_MODEL, "not a checkpoint");
    expect_refused(th_path("random.zip"), ONYX_ERR_INVALID_MODEL, "not a zip archive");

    /* a text file */
    th_write_bytes(th_path("text.zip"), "hello\n", 6);
    expect_refused(th_path("text.zip"), ONYX_ERR_INVALID_MODEL, "not a zip archive");

    /* truncated at several points: inside the first header, inside the model, inside the
     * state, inside the central directory, inside and just before the end record */
    const size_t cuts[] = {
        4,      20,   first_data_offset(z) + 10, msize / 2, msize + 200, n - 150, n - 60, n - 22,
        n - 10, n - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        th_write_bytes(th_path("cut.zip"), z, cuts[i]);
        expect_refused(th_path("cut.zip"), ONYX_ERR_INVALID_MODEL, "truncated");
    }

    /* 1000 bytes cut out of the model's data, the end record intact: the directory's offsets
     * no longer match the file */
    {
        size_t a = first_data_offset(z) + 5000;
        memmove(z + a, z + a + 1000, n - a - 1000);
        th_write_bytes(th_path("spliced.zip"), z, n - 1000);
        free(z);
        z = th_slurp(th_path("good.zip"), &n);
        expect_refused(th_path("spliced.zip"), ONYX_ERR_INVALID_MODEL, "truncated or damaged");
    }

    /* one flipped byte in the model's data: bad CRC, naming the entry */
    size_t at = first_data_offset(z) + msize / 3;
    z[at] ^= 0x40;
    th_write_bytes(th_path("flipped.zip"), z, n);
    z[at] ^= 0x40;
    expect_refused(th_path("flipped.zip"), ONYX_ERR_INVALID_MODEL, "bad CRC");
    expect_refused(th_path("flipped.zip"), ONYX_ERR_INVALID_MODEL, "model.onnx");

    /* ... and in the last byte of the state's data (the state follows the model's data, with
     * its own local header) */
    size_t state_hdr = first_data_offset(z) + msize;
    CHECK(memcmp(z + state_hdr, "PK\3\4", 4) == 0);
    size_t state_end = state_hdr + first_data_offset(z + state_hdr) + sizeof(state);
    z[state_end - 1] ^= 0x01;
    th_write_bytes(th_path("flipped2.zip"), z, n);
    z[state_end - 1] ^= 0x01;
    expect_refused(th_path("flipped2.zip"), ONYX_ERR_INVALID_MODEL, "bad CRC");
    expect_refused(th_path("flipped2.zip"), ONYX_ERR_INVALID_MODEL, "training_state.pb");

    /* a zip missing training_state.pb */
    const char *names2[2] = {"model.onnx", "manifest.txt"};
    const char *data2[2] = {"model", MANIFEST};
    make_zip(th_path("nostate.zip"), 2, names2, data2, false);
    expect_refused(th_path("nostate.zip"), ONYX_ERR_INVALID_MODEL,
                   "missing entry training_state.pb");

    /* only a manifest: both others named */
    make_zip(th_path("onlymanifest.zip"), 1, names2 + 1, data2 + 1, true);
    expect_refused(th_path("onlymanifest.zip"), ONYX_ERR_INVALID_MODEL,
                   "missing entries model.onnx, training_state.pb");

    /* a foreign zip */
    const char *names3[2] = {"hello.txt", "data/x.bin"};
    const char *data3[2] = {"hello\n", "0123456789"};
    make_zip(th_path("foreign.zip"), 2, names3, data3, true);
    expect_refused(th_path("foreign.zip"), ONYX_ERR_INVALID_MODEL, "not a checkpoint");
    expect_refused(th_path("foreign.zip"), ONYX_ERR_INVALID_MODEL, "foreign zip");
    expect_refused(th_path("foreign.zip"), ONYX_ERR_INVALID_MODEL, "hello.txt");

    /* an empty zip archive (22 bytes: only the end record) */
    static const unsigned char empty_zip[22] = {'P', 'K', 5, 6};
    th_write_bytes(th_path("emptyzip.zip"), empty_zip, sizeof(empty_zip));
    expect_refused(th_path("emptyzip.zip"), ONYX_ERR_INVALID_MODEL, "not a checkpoint");

    /* the manifest says format 2: refused naming the version; deflated entries read fine */
    const char *names4[3] = {"model.onnx", "training_state.pb", "manifest.txt"};
    const char *data4[3] = {"model", "state", "onyx checkpoint format 2\nstep 1\n"};
    make_zip(th_path("format2.zip"), 3, names4, data4, true);
    expect_refused(th_path("format2.zip"), ONYX_ERR_UNSUPPORTED, "format 2");
    expect_refused(th_path("format2.zip"), ONYX_ERR_UNSUPPORTED, "format 1");

    /* a manifest that is not ours, one with a NUL byte */
    data4[2] = "name: my model\n";
    make_zip(th_path("notmanifest.zip"), 3, names4, data4, false);
    expect_refused(th_path("notmanifest.zip"), ONYX_ERR_INVALID_MODEL, "name: my model");
    {
        int zerr = 0;
        zip_t *za = zip_open(th_path("nul.zip"), ZIP_CREATE | ZIP_TRUNCATE, &zerr);
        static const char nul_manifest[] = ONYX_CKPT_FORMAT_LINE "\n\0x";
        for (int i = 0; za != NULL && i < 3; i++) {
            const char *d = i == 2 ? nul_manifest : data4[i];
            size_t len = i == 2 ? sizeof(nul_manifest) - 1 : strlen(d);
            zip_source_t *src = zip_source_buffer(za, d, len, 0);
            CHECK(src != NULL && zip_file_add(za, names4[i], src, 0) >= 0);
        }
        CHECK(za != NULL && zip_close(za) == 0);
        expect_refused(th_path("nul.zip"), ONYX_ERR_INVALID_MODEL, "NUL");
    }

    /* a correct zip whose training_state.pb claims 3 GiB (uncompressed size patched in both
     * the local header and the central directory, so the archive stays consistent): refused
     * before anything is allocated */
    data4[2] = MANIFEST;
    make_zip(th_path("huge.zip"), 3, names4, data4, true);
    size_t hn = 0;
    unsigned char *h = th_slurp(th_path("huge.zip"), &hn);
    int patched = 0;
    for (size_t i = 0; h != NULL && i + 46 <= hn; i++) {
        /* local header: size at 22, name at 30; central header: size at 24, name at 46 */
        bool local = memcmp(h + i, "PK\3\4", 4) == 0;
        bool central = memcmp(h + i, "PK\1\2", 4) == 0;
        size_t size_at = local ? 22 : 24;
        size_t name_at = local ? 30 : 46;
        if ((local || central) && i + name_at + 17 <= hn &&
            memcmp(h + i + name_at, "training_state.pb", 17) == 0) {
            h[i + size_at] = 0;
            h[i + size_at + 1] = 0;
            h[i + size_at + 2] = 0;
            h[i + size_at + 3] = 0xC0;
            patched++;
        }
    }
    CHECK(patched == 2);
    th_write_bytes(th_path("huge.zip"), h, hn);
    free(h);
    expect_refused(th_path("huge.zip"), ONYX_ERR_INVALID_MODEL, "3221225472 bytes");

    /* an empty file, a missing file */
    th_write_bytes(th_path("empty_file.zip"), "", 0);
    expect_refused(th_path("empty_file.zip"), ONYX_ERR_INVALID_MODEL, "empty");
    expect_refused(th_path("missing.zip"), ONYX_ERR_IO, "No such file");

    /* the untouched original still reads */
    th_write_bytes(th_path("again.zip"), z, n);
    void *m = NULL;
    void *s = NULL;
    char *man = NULL;
    size_t ms = 0;
    size_t ss = 0;
    CHECK_OK(onyx_ckpt_read(th_path("again.zip"), &m, &ms, &s, &ss, &man, &err), err.msg);
    CHECK(ms == msize && ss == sizeof(state));
    free(m);
    free(s);
    free(man);

    /* NULL arguments */
    CHECK(onyx_ckpt_read(th_path("again.zip"), NULL, &ms, &s, &ss, &man, NULL) ==
          ONYX_ERR_INVALID_ARG);
    free(z);
    free(model);
}

/* ---- crash safety ------------------------------------------------------------------------- */

#define CRASH_MODEL_SIZE ((size_t)24 << 20)
#define CRASH_STATE_SIZE ((size_t)3 << 20)

/* Checkpoint `gen`: the model and state are patterns seeded by gen, the manifest names it. */
static onyx_status write_generation(const char *path, unsigned gen, unsigned char *model,
                                    unsigned char *state, onyx_error *err)
{
    char manifest[128];
    snprintf(manifest, sizeof(manifest), "%s\ngeneration %u\n", ONYX_CKPT_FORMAT_LINE, gen);
    fill_pattern(model, CRASH_MODEL_SIZE, 2 * (uint64_t)gen);
    fill_pattern(state, CRASH_STATE_SIZE, 2 * (uint64_t)gen + 1);
    onyx_ckpt_blobs b = {model, CRASH_MODEL_SIZE, state, CRASH_STATE_SIZE, manifest};
    return onyx_ckpt_write(path, &b, err);
}

/* Reads path and checks it is one complete generation; returns it, or -1. */
static long verify_generation(const char *path)
{
    onyx_error err = {ONYX_OK, ""};
    void *m = NULL;
    void *s = NULL;
    char *man = NULL;
    size_t ms = 0;
    size_t ss = 0;
    long gen = -1;
    unsigned g = 0;
    onyx_status st = onyx_ckpt_read(path, &m, &ms, &s, &ss, &man, &err);
    if (st != ONYX_OK)
        fprintf(stderr, "  after kill: %s\n", err.msg);
    if (st == ONYX_OK && ms == CRASH_MODEL_SIZE && ss == CRASH_STATE_SIZE &&
        sscanf(man + strlen(ONYX_CKPT_FORMAT_LINE), "\ngeneration %u", &g) == 1 &&
        matches_pattern(m, ms, 2 * (uint64_t)g) && matches_pattern(s, ss, 2 * (uint64_t)g + 1))
        gen = (long)g;
    free(m);
    free(s);
    free(man);
    return gen;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void test_crash_safety(void)
{
    const char *path = th_path("crash.zip");
    unsigned char *model = malloc(CRASH_MODEL_SIZE);
    unsigned char *state = malloc(CRASH_STATE_SIZE);
    onyx_error err = {ONYX_OK, ""};
    CHECK_OK(write_generation(path, 0, model, state, &err), err.msg);

    /* How long one write takes here, so that the kills land before, in and after writes. */
    double t0 = now_s();
    CHECK_OK(write_generation(path, 1, model, state, &err), err.msg);
    double write_s = now_s() - t0;
    long span_us = (long)(write_s * 3e6) + 2000;

    const int iterations = 40;
    const double budget_s = 60.0;
    double start = now_s();
    uint64_t rng = 12345;
    unsigned next_gen = 2;
    long last_gen = 1;
    int done = 0;
    int in_zip_close = 0;  /* killed while libzip wrote its own temporary file */
    int before_rename = 0; /* killed between libzip's rename and ours */
    int changed = 0;
    for (int it = 0; it < iterations && now_s() - start < budget_s; it++) {
        /* each child writes generations next_gen, next_gen + 1, ... until killed */
        unsigned first = next_gen;
        next_gen += 1000;
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid < 0)
            break;
        if (pid == 0) {
            onyx_error cerr;
            for (unsigned g = first;; g++)
                if (write_generation(path, g, model, state, &cerr) != ONYX_OK)
                    _exit(3);
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        sleep_us((long)(rng % (uint64_t)span_us));
        kill(pid, SIGKILL);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        long gen = verify_generation(path);
        /* the old content or one of the child's complete generations */
        CHECK(gen == last_gen || (gen >= (long)first && gen < (long)next_gen));
        if (gen != last_gen)
            changed++;
        last_gen = gen;
        /* "crash.zip.tmp.<pid>.<seq>" is ours, libzip's has one more ".<suffix>" */
        int dots = 0;
        int strays = count_prefixed_dots("crash.zip.tmp.", &dots);
        CHECK(strays <= 1);
        in_zip_close += strays == 1 && dots >= 2;
        before_rename += strays == 1 && dots == 1;
        done++;
    }
    printf("crash test: %d kills in %.1f s (one write %.0f ms): %d inside zip_close, %d between "
           "zip_close and the rename, %d found a new generation\n",
           done, now_s() - start, write_s * 1e3, in_zip_close, before_rename, changed);
    CHECK(done >= 10);

    /* The next write removes what the killed writers left. */
    CHECK_OK(write_generation(path, 7, model, state, &err), err.msg);
    CHECK(count_prefixed("crash.zip.tmp") == 0);
    CHECK(verify_generation(path) == 7);
    free(model);
    free(state);
}

/* Leftovers of dead writers are removed; those of live processes (ours, pid 1) are kept. */
static void test_stale_temps(void)
{
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    CHECK(dead > 0);
    waitpid(dead, NULL, 0);
    char name[256];
    snprintf(name, sizeof(name), "st.zip.tmp.%ld.0", (long)dead);
    th_write_bytes(th_path(name), "x", 1);
    snprintf(name, sizeof(name), "st.zip.tmp.%ld.3.a1b2c3", (long)dead);
    th_write_bytes(th_path(name), "x", 1);
    th_write_bytes(th_path("st.zip.tmp.1.0"), "x", 1);
    snprintf(name, sizeof(name), "st.zip.tmp.%ld.999", (long)getpid());
    th_write_bytes(th_path(name), "x", 1);
    th_write_bytes(th_path("st.zip.tmp.notapid"), "x", 1);
    th_write_bytes(th_path("other.zip.tmp.1.0"), "x", 1);

    onyx_error err = {ONYX_OK, ""};
    onyx_ckpt_blobs b = {"m", 1, "s", 1, MANIFEST};
    CHECK_OK(onyx_ckpt_write(th_path("st.zip"), &b, &err), err.msg);
    snprintf(name, sizeof(name), "st.zip.tmp.%ld.0", (long)dead);
    CHECK(!th_file_exists(th_path(name)));
    snprintf(name, sizeof(name), "st.zip.tmp.%ld.3.a1b2c3", (long)dead);
    CHECK(!th_file_exists(th_path(name)));
    CHECK(th_file_exists(th_path("st.zip.tmp.1.0")));
    snprintf(name, sizeof(name), "st.zip.tmp.%ld.999", (long)getpid());
    CHECK(th_file_exists(th_path(name)));
    CHECK(th_file_exists(th_path("st.zip.tmp.notapid")));
    CHECK(th_file_exists(th_path("other.zip.tmp.1.0")));
    CHECK(count_prefixed("st.zip.tmp") == 3);
}

/* ---- prune -------------------------------------------------------------------------------- */

static void test_prune(void)
{
    onyx_error err = {ONYX_OK, ""};
    char sub[1024];
    snprintf(sub, sizeof(sub), "%s/prune", th_tmpdir());
    CHECK(mkdir(sub, 0777) == 0);
    const char *ckpts[] = {"ckpt-000010.zip", "ckpt-000120.zip", "ckpt-000020.zip",
                           "ckpt-5.zip",      "ckpt-1000.zip",   "ckpt-000030.zip"};
    const char *others[] = {"ckpt-best.zip", "other-000001.zip", "ckpt-000030.zip.tmp.1.0",
                            "ckpt-.zip",     "ckpt-12.zip.bak",  "notes.txt"};
    char p[1100];
    for (size_t i = 0; i < 6; i++) {
        snprintf(p, sizeof(p), "%s/%s", sub, ckpts[i]);
        th_write_bytes(p, "x", 1);
        snprintf(p, sizeof(p), "%s/%s", sub, others[i]);
        th_write_bytes(p, "x", 1);
    }
    /* keep <= 0 and keep >= count delete nothing */
    CHECK_OK(onyx_ckpt_prune(sub, "ckpt-", 0, &err), err.msg);
    CHECK_OK(onyx_ckpt_prune(sub, "ckpt-", -1, &err), err.msg);
    CHECK_OK(onyx_ckpt_prune(sub, "ckpt-", 6, &err), err.msg);
    for (size_t i = 0; i < 6; i++) {
        snprintf(p, sizeof(p), "%s/%s", sub, ckpts[i]);
        CHECK(th_file_exists(p));
    }
    /* keep 3: steps 1000, 120, 30 stay */
    CHECK_OK(onyx_ckpt_prune(sub, "ckpt-", 3, &err), err.msg);
    const bool kept[6] = {false, true, false, false, true, true};
    for (size_t i = 0; i < 6; i++) {
        snprintf(p, sizeof(p), "%s/%s", sub, ckpts[i]);
        CHECK(th_file_exists(p) == kept[i]);
        snprintf(p, sizeof(p), "%s/%s", sub, others[i]);
        CHECK(th_file_exists(p));
    }
    /* keep 1 */
    CHECK_OK(onyx_ckpt_prune(sub, "ckpt-", 1, &err), err.msg);
    snprintf(p, sizeof(p), "%s/ckpt-1000.zip", sub);
    CHECK(th_file_exists(p));
    snprintf(p, sizeof(p), "%s/ckpt-000120.zip", sub);
    CHECK(!th_file_exists(p));
    snprintf(p, sizeof(p), "%s/ckpt-000030.zip", sub);
    CHECK(!th_file_exists(p));

    /* real checkpoints through the writer, then pruned to 2 */
    onyx_ckpt_blobs b = {"m", 1, "s", 1, MANIFEST};
    for (int step = 100; step <= 500; step += 100) {
        snprintf(p, sizeof(p), "%s/run-%06d.zip", sub, step);
        CHECK_OK(onyx_ckpt_write(p, &b, &err), err.msg);
    }
    CHECK_OK(onyx_ckpt_prune(sub, "run-", 2, &err), err.msg);
    for (int step = 100; step <= 500; step += 100) {
        snprintf(p, sizeof(p), "%s/run-%06d.zip", sub, step);
        CHECK(th_file_exists(p) == (step >= 400));
    }

    /* errors */
    snprintf(p, sizeof(p), "%s/nosuchdir", th_tmpdir());
    CHECK(onyx_ckpt_prune(p, "ckpt-", 2, &err) == ONYX_ERR_IO);
    CHECK_MSG(err.msg, p);
    CHECK(onyx_ckpt_prune(sub, "a/b", 2, &err) == ONYX_ERR_INVALID_ARG);
    CHECK(onyx_ckpt_prune(NULL, "ckpt-", 2, &err) == ONYX_ERR_INVALID_ARG);
}

/* ---- main --------------------------------------------------------------------------------- */

int main(void)
{
    if (th_tmpdir_make(ONYX_BINARY_DIR, "test_ckpt") == NULL)
        return 1;
    test_round_trip();
    test_write_errors();
    test_corrupt();
    test_stale_temps();
    test_prune();
    test_crash_safety();
    th_tmpdir_remove();
    return check_report();
}
