/*
 * cmd_test.c — `onyx test`: run ONNX backend test cases and compare with their expected outputs.
 *
 * A case is a folder with model.onnx and test_data_set_<n> folders holding input_<i>.pb and
 * output_<i>.pb (serialized TensorProtos). Inputs bind to the graph inputs that must be fed,
 * in order; outputs compare with the graph outputs in order (as onnx/backend/test/runner does).
 * Each case runs in a child process (unless --no-fork), so a crash or a hang is one FAIL line,
 * not the end of the run.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static const char HELP[] =
    "usage: onyx test [options] CASE_DIR...\n"
    "       onyx test [options] --list FILE\n"
    "\n"
    "Runs ONNX backend test cases: CASE_DIR/model.onnx with each CASE_DIR/test_data_set_*/\n"
    "(input_<i>.pb bound to the graph inputs in order, output_<i>.pb compared with the graph\n"
    "outputs in order). An output passes when dtype and shape are equal and every element has\n"
    "|actual - expected| <= atol + rtol * |expected| (floats; NaN matches NaN) or is equal\n"
    "(integers, bool). Prints 'PASS <case> (max abs diff X)' or 'FAIL <case>: <reason>' per case,\n"
    "then 'N passed, M failed'. Exit status 1 when any case failed.\n"
    "\n"
    "options:\n"
    "  --list FILE              read case folders from FILE, one per line ('#' starts a comment).\n"
    "                           A line 'root: DIR' sets the folder that later relative lines are\n"
    "                           relative to (itself relative to FILE's folder); without one they\n"
    "                           are relative to FILE's folder.\n"
    "  --root DIR               resolve relative case folders (from --list or the command line)\n"
    "                           against DIR; overrides 'root:' lines\n"
    "  --mode infer|train|graph session mode (default graph: what the ONNX spec says, as the\n"
    "                           reference outputs were made)\n"
    "  --seed N                 seed of the sessions' random numbers (default 0)\n"
    "  --rtol X, --atol X       tolerances (default 1e-3 and 1e-7)\n"
    "  --timeout SEC            a case running longer fails (default 300; 0 = no limit)\n"
    "  --no-fork                run cases in this process (for debuggers); a crash ends the run\n"
    "  --plugin FILE            load custom operators from the plugin library FILE (repeat for\n"
    "                           each)\n"
    "  -q, --quiet              print only failures and the summary\n"
    "  -h, --help               show this help\n";

typedef struct test_opts {
    onyx_session_options sess;
    const onyx_registry *registry; /* --plugin ops, or NULL */
    double rtol;
    double atol;
    int64_t timeout;
    bool fork;
    bool quiet;
} test_opts;

/* ---- strings and paths -------------------------------------------------------------------- */

static char *str_dup(const char *s)
{
    char *p = malloc(strlen(s) + 1);
    if (p != NULL)
        strcpy(p, s);
    return p;
}

/* dir + "/" + name, malloc'd. */
static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- one case ----------------------------------------------------------------------------- */

/* Result of a case: a reason when it failed, and the largest |actual - expected|. */
typedef struct case_result {
    bool pass;
    double max_diff;
    char reason[1024];
} case_result;

static void set_reason(case_result *r, const char *fmt, ...) CLI_PRINTF(2, 3);
static void set_reason(case_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    r->pass = false;
}

static bool is_float(onyx_dtype dt)
{
    return dt == ONYX_DTYPE_F32 || dt == ONYX_DTYPE_F64 || dt == ONYX_DTYPE_F16 ||
           dt == ONYX_DTYPE_BF16;
}

/* Compares output k; false (and r->reason) on a mismatch. */
static bool compare(const test_opts *o, const char *set, size_t k, const char *name,
                    const onyx_tensor *act, const onyx_tensor *exp, case_result *r)
{
    char sa[256];
    char se[256];
    if (act->dtype != exp->dtype) {
        set_reason(r, "%s: output %zu \"%s\" has dtype %s, expected %s", set, k, name,
                   onyx_dtype_name(act->dtype), onyx_dtype_name(exp->dtype));
        return false;
    }
    bool same_shape = act->rank == exp->rank;
    for (int d = 0; same_shape && d < act->rank; d++)
        same_shape = act->dims[d] == exp->dims[d];
    if (!same_shape) {
        cli_tensor_shape(act, sa, sizeof(sa));
        cli_tensor_shape(exp, se, sizeof(se));
        set_reason(r, "%s: output %zu \"%s\" has shape %s, expected %s", set, k, name, sa, se);
        return false;
    }
    int64_t n = onyx_tensor_numel(exp);
    size_t esize = onyx_dtype_size(exp->dtype);
    bool flt = is_float(exp->dtype);
    int64_t bad = 0;
    int64_t first_bad = -1;
    for (int64_t i = 0; i < n; i++) {
        double a = cli_load_f64(act->dtype, act->data, i);
        double e = cli_load_f64(exp->dtype, exp->data, i);
        bool ok;
        double diff = 0.0;
        if (flt) {
            if (isnan(a) || isnan(e)) {
                ok = isnan(a) && isnan(e);
            } else if (a == e) { /* also equal infinities */
                ok = true;
            } else {
                diff = fabs(a - e);
                ok = diff <= o->atol + o->rtol * fabs(e);
            }
        } else {
            /* exact, on the bytes: no rounding through double for 64-bit integers */
            ok = memcmp((const char *)act->data + (size_t)i * esize,
                        (const char *)exp->data + (size_t)i * esize, esize) == 0;
            diff = fabs(a - e);
        }
        if (!isnan(diff) && diff > r->max_diff)
            r->max_diff = diff;
        if (!ok) {
            if (first_bad < 0)
                first_bad = i;
            bad++;
        }
    }
    if (bad > 0) {
        double a = cli_load_f64(act->dtype, act->data, first_bad);
        double e = cli_load_f64(exp->dtype, exp->data, first_bad);
        set_reason(r,
                   "%s: output %zu \"%s\": %lld of %lld elements differ; first at %lld: %.9g, "
                   "expected %.9g (max abs diff %.3g, rtol %g, atol %g)",
                   set, k, name, (long long)bad, (long long)n, (long long)first_bad, a, e,
                   r->max_diff, o->rtol, o->atol);
        return false;
    }
    return true;
}

/* Reads <dir>/<prefix><i>.pb for i = 0, 1, ... while they exist (at most max). */
static bool read_tensors(const char *dir, const char *prefix, onyx_tensor *ts, size_t max,
                         size_t *count, case_result *r)
{
    *count = 0;
    for (size_t i = 0;; i++) {
        char file[64];
        snprintf(file, sizeof(file), "%s%zu.pb", prefix, i);
        char *p = path_join(dir, file);
        if (p == NULL) {
            set_reason(r, "out of memory");
            return false;
        }
        if (!exists(p)) {
            free(p);
            return true;
        }
        if (i >= max) {
            set_reason(r, "%s: more %s*.pb files than the model has %ss (%zu)", dir, prefix,
                       prefix[0] == 'i' ? "input" : "output", max);
            free(p);
            return false;
        }
        onyx_error err = {ONYX_OK, ""};
        onyx_status st = onyx_tensor_read_file(p, &ts[i], NULL, &err);
        free(p);
        if (st != ONYX_OK) {
            set_reason(r, "%s", err.msg);
            return false;
        }
        (*count)++;
    }
}

static int cmp_str(const void *a, const void *b)
{
    const char *x = *(const char *const *)a;
    const char *y = *(const char *const *)b;
    /* test_data_set_<n>: by number, so _10 comes after _9 */
    size_t lx = strlen(x);
    size_t ly = strlen(y);
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x, y);
}

/* The test_data_set_* folders of dir, sorted (malloc'd array of malloc'd names). */
static char **list_sets(const char *dir, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return NULL;
    size_t cap = 8;
    char **names = malloc(cap * sizeof(*names));
    struct dirent *e;
    while (names != NULL && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "test_data_set_", 14) != 0)
            continue;
        if (*n == cap) {
            char **grown = realloc(names, 2 * cap * sizeof(*names));
            if (grown == NULL)
                break;
            names = grown;
            cap *= 2;
        }
        names[*n] = str_dup(e->d_name);
        if (names[*n] != NULL)
            (*n)++;
    }
    closedir(d);
    if (names != NULL)
        qsort(names, *n, sizeof(*names), cmp_str);
    return names;
}

static void run_set(const test_opts *o, onyx_session *s, const onyx_model *m, const char *dir,
                    const char *set, case_result *r)
{
    size_t n_in = onyx_model_input_count(m);
    size_t n_out = onyx_model_output_count(m);
    onyx_tensor *ins = calloc(n_in + 1, sizeof(*ins));
    onyx_tensor *exp = calloc(n_out + 1, sizeof(*exp));
    onyx_tensor *outs = calloc(n_out + 1, sizeof(*outs));
    const char **names = calloc(n_in + 1, sizeof(*names));
    char *set_dir = path_join(dir, set);
    size_t got_in = 0;
    size_t got_out = 0;
    if (ins == NULL || exp == NULL || outs == NULL || names == NULL || set_dir == NULL) {
        set_reason(r, "out of memory");
        goto done;
    }
    if (!read_tensors(set_dir, "input_", ins, n_in, &got_in, r) ||
        !read_tensors(set_dir, "output_", exp, n_out, &got_out, r))
        goto done;
    if (got_out != n_out) {
        set_reason(r, "%s: %zu output_*.pb files, but the model has %zu outputs", set, got_out,
                   n_out);
        goto done;
    }
    for (size_t i = 0; i < got_in; i++) {
        onyx_value_info v;
        names[i] = onyx_model_input(m, i, &v) == ONYX_OK ? v.name : "";
    }
    if (onyx_session_run(s, got_in, names, ins, n_out, NULL, outs) != ONYX_OK) {
        set_reason(r, "%s: %s", set, onyx_session_errmsg(s));
        goto done;
    }
    for (size_t k = 0; k < n_out; k++) {
        onyx_value_info v;
        const char *name = onyx_model_output(m, k, &v) == ONYX_OK ? v.name : "";
        if (!compare(o, set, k, name, &outs[k], &exp[k], r))
            break;
    }
done:
    for (size_t i = 0; i < got_in; i++)
        onyx_tensor_free(&ins[i]);
    for (size_t i = 0; i < got_out; i++)
        onyx_tensor_free(&exp[i]);
    free(ins);
    free(exp);
    free(outs);
    free(names);
    free(set_dir);
}

static void run_case(const test_opts *o, const char *dir, case_result *r)
{
    r->pass = true;
    r->max_diff = 0.0;
    r->reason[0] = '\0';
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        set_reason(r, "%s: no such folder", dir);
        return;
    }
    char *model_path = path_join(dir, "model.onnx");
    if (model_path == NULL) {
        set_reason(r, "out of memory");
        return;
    }
    onyx_model *m = NULL;
    onyx_session *s = NULL;
    onyx_error err = {ONYX_OK, ""};
    size_t n_sets = 0;
    char **sets = NULL;
    onyx_load_options lo;
    onyx_load_options_init(&lo);
    lo.registry = o->registry;
    if (onyx_model_load_ex(model_path, &lo, &m, &err) != ONYX_OK) {
        set_reason(r, "%s", err.msg);
        goto done;
    }
    if (onyx_session_create(m, &o->sess, &s, &err) != ONYX_OK) {
        set_reason(r, "%s", err.msg);
        goto done;
    }
    sets = list_sets(dir, &n_sets);
    if (n_sets == 0) {
        set_reason(r, "%s: no test_data_set_* folder", dir);
        goto done;
    }
    for (size_t i = 0; i < n_sets && r->pass; i++)
        run_set(o, s, m, dir, sets[i], r);
done:
    for (size_t i = 0; i < n_sets; i++)
        free(sets[i]);
    free(sets);
    onyx_session_destroy(s);
    onyx_model_destroy(m);
    free(model_path);
}

static void print_result(const char *label, case_result *r, bool quiet)
{
    /* one line per case: a multi-line message (the loader lists every problem) is joined */
    for (char *p = r->reason; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (r->pass) {
        if (!quiet)
            printf("PASS %s (max abs diff %.3g)\n", label, r->max_diff);
    } else {
        printf("FAIL %s: %s\n", label, r->reason);
    }
    fflush(stdout);
}

/* Runs the case in a child process; the child sends its result through a pipe, so a crash,
 * a sanitizer abort or a timeout still gives a FAIL line. Returns whether it passed. */
static bool run_case_forked(const test_opts *o, const char *dir, const char *label)
{
    case_result r;
    int fds[2];
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds) != 0) {
        set_reason(&r, "cannot create a pipe: %s", strerror(errno));
        print_result(label, &r, o->quiet);
        return false;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        set_reason(&r, "cannot fork: %s", strerror(errno));
        print_result(label, &r, o->quiet);
        return false;
    }
    if (pid == 0) {
        close(fds[0]);
        if (o->timeout > 0)
            alarm((unsigned)o->timeout);
        run_case(o, dir, &r);
        const char *p = (const char *)&r;
        size_t left = sizeof(r);
        while (left > 0) {
            ssize_t w = write(fds[1], p, left);
            if (w <= 0)
                _exit(3);
            p += w;
            left -= (size_t)w;
        }
        close(fds[1]);
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    char *p = (char *)&r;
    while (got < sizeof(r)) {
        ssize_t n = read(fds[0], p + got, sizeof(r) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != sizeof(r)) {
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
            set_reason(&r, "timed out after %lld s", (long long)o->timeout);
        else if (WIFSIGNALED(status))
            set_reason(&r, "crashed with signal %d", WTERMSIG(status));
        else
            set_reason(&r, "the test process exited with status %d without a result",
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    r.reason[sizeof(r.reason) - 1] = '\0';
    print_result(label, &r, o->quiet);
    return r.pass;
}

static bool run_one(const test_opts *o, const char *dir, const char *label)
{
    if (o->fork)
        return run_case_forked(o, dir, label);
    case_result r;
    run_case(o, dir, &r);
    print_result(label, &r, o->quiet);
    return r.pass;
}

/* ---- case lists --------------------------------------------------------------------------- */

typedef struct case_list {
    char **dir;   /* resolved folder */
    char **label; /* as written */
    size_t n;
    size_t cap;
} case_list;

static bool list_add(case_list *l, const char *dir, const char *label)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **d = realloc(l->dir, cap * sizeof(*d));
        if (d == NULL)
            return false;
        l->dir = d;
        char **lb = realloc(l->label, cap * sizeof(*lb));
        if (lb == NULL)
            return false;
        l->label = lb;
        l->cap = cap;
    }
    l->dir[l->n] = str_dup(dir);
    l->label[l->n] = str_dup(label);
    if (l->dir[l->n] == NULL || l->label[l->n] == NULL) {
        free(l->dir[l->n]);
        free(l->label[l->n]);
        return false;
    }
    l->n++;
    return true;
}

static void list_free(case_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->dir[i]);
        free(l->label[i]);
    }
    free(l->dir);
    free(l->label);
}

/* Adds a case: absolute as is, relative against root (when not NULL). */
static bool add_case(case_list *l, const char *root, const char *entry)
{
    if (entry[0] == '/' || root == NULL)
        return list_add(l, entry, entry);
    char *p = path_join(root, entry);
    bool ok = p != NULL && list_add(l, p, entry);
    free(p);
    return ok;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Reads a list file; returns an exit code (CLI_OK when read). */
static int read_list(const char *cmd, const char *path, const char *root_opt, case_list *l)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return cli_fail(cmd, "%s: cannot open: %s", path, strerror(errno));
    /* the list file's folder */
    char *base = str_dup(path);
    if (base == NULL) {
        fclose(f);
        return cli_fail(cmd, "out of memory");
    }
    char *slash = strrchr(base, '/');
    if (slash != NULL)
        *(slash == base ? slash + 1 : slash) = '\0';
    else
        strcpy(base, ".");
    char *root = str_dup(root_opt != NULL ? root_opt : base);
    char line[4096];
    int rc = CLI_OK;
    int lineno = 0;
    while (rc == CLI_OK && root != NULL && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            rc = cli_fail(cmd, "%s:%d: line too long", path, lineno);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        if (strncmp(s, "root:", 5) == 0) {
            if (root_opt != NULL)
                continue; /* --root wins */
            char *r = trim(s + 5);
            free(root);
            root = r[0] == '/' ? str_dup(r) : path_join(base, r);
            continue;
        }
        if (!add_case(l, root, s))
            rc = cli_fail(cmd, "out of memory");
    }
    if (rc == CLI_OK && root == NULL)
        rc = cli_fail(cmd, "out of memory");
    if (rc == CLI_OK && ferror(f))
        rc = cli_fail(cmd, "%s: read error", path);
    free(root);
    free(base);
    fclose(f);
    return rc;
}

int cmd_test(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv);
    test_opts o;
    onyx_session_options_init(&o.sess);
    o.sess.mode = ONYX_MODE_GRAPH;
    o.rtol = 1e-3;
    o.atol = 1e-7;
    o.timeout = 300;
    o.fork = true;
    o.quiet = false;
    o.registry = NULL;
    const char **plugins = NULL;
    size_t n_plugins = 0;
    const char *list_path = NULL;
    const char *root = NULL;
    case_list cases = {NULL, NULL, 0, 0};
    int rc = CLI_OK;

    /* Operands are collected first: --root may come after them. */
    char **operands = calloc((size_t)argc + 1, sizeof(*operands));
    size_t n_operands = 0;
    plugins = calloc((size_t)argc + 1, sizeof(*plugins));
    if (operands == NULL || plugins == NULL) {
        free(operands);
        free(plugins);
        return cli_fail(a.cmd, "out of memory");
    }
    while (cli_more(&a) && rc == CLI_OK) {
        const char *v;
        if (cli_flag(&a, "--help", "-h")) {
            fputs(HELP, stdout);
            free(operands);
            free(plugins);
            return CLI_OK;
        }
        if (cli_option(&a, "--plugin", NULL, &v)) {
            plugins[n_plugins++] = v;
        } else if (cli_flag(&a, "--no-fork", NULL)) {
            o.fork = false;
        } else if (cli_flag(&a, "--quiet", "-q")) {
            o.quiet = true;
        } else if (cli_option(&a, "--list", NULL, &v)) {
            if (list_path != NULL)
                rc = cli_usage(a.cmd, "one --list at a time");
            list_path = v;
        } else if (cli_option(&a, "--root", NULL, &v)) {
            root = v;
        } else if (cli_option(&a, "--mode", NULL, &v)) {
            if (!cli_parse_mode(v, &o.sess.mode))
                rc = cli_usage(a.cmd, "--mode must be infer, train or graph, not '%s'", v);
        } else if (cli_option(&a, "--seed", NULL, &v)) {
            if (!cli_parse_u64(v, &o.sess.seed))
                rc = cli_usage(a.cmd, "--seed must be an integer in 0..2^64-1, not '%s'", v);
        } else if (cli_option(&a, "--rtol", NULL, &v)) {
            if (!cli_parse_double(v, 0.0, 1e300, &o.rtol))
                rc = cli_usage(a.cmd, "--rtol must be a non-negative number, not '%s'", v);
        } else if (cli_option(&a, "--atol", NULL, &v)) {
            if (!cli_parse_double(v, 0.0, 1e300, &o.atol))
                rc = cli_usage(a.cmd, "--atol must be a non-negative number, not '%s'", v);
        } else if (cli_option(&a, "--timeout", NULL, &v)) {
            if (!cli_parse_i64(v, 0, 86400, &o.timeout))
                rc = cli_usage(a.cmd, "--timeout must be 0..86400 seconds, not '%s'", v);
        } else {
            const char *op = cli_operand(&a);
            if (op == NULL)
                break;
            operands[n_operands++] = (char *)op;
        }
    }
    if (rc == CLI_OK && a.failed)
        rc = CLI_USAGE;
    if (rc == CLI_OK && list_path == NULL && n_operands == 0)
        rc = cli_usage(a.cmd, "no test cases: give CASE_DIR... or --list FILE");
    if (rc == CLI_OK && list_path != NULL)
        rc = read_list(a.cmd, list_path, root, &cases);
    for (size_t i = 0; i < n_operands && rc == CLI_OK; i++)
        if (!add_case(&cases, root, operands[i]))
            rc = cli_fail(a.cmd, "out of memory");
    free(operands);
    /* Loaded once, before the cases fork: every child inherits the registry. */
    onyx_registry *reg = NULL;
    if (rc == CLI_OK)
        rc = cli_load_plugins(a.cmd, plugins, n_plugins, false, &reg);
    free(plugins);
    o.registry = reg;
    if (rc != CLI_OK) {
        list_free(&cases);
        return rc;
    }

    size_t passed = 0;
    size_t failed = 0;
    for (size_t i = 0; i < cases.n; i++) {
        if (run_one(&o, cases.dir[i], cases.label[i]))
            passed++;
        else
            failed++;
    }
    printf("%zu passed, %zu failed\n", passed, failed);
    list_free(&cases);
    onyx_registry_destroy(reg);
    return failed > 0 ? CLI_FAIL : CLI_OK;
}
