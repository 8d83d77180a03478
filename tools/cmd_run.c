/* cmd_run.c — `onyx run`: run a model on tensors read from .npy/.pb files. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char HELP[] =
    "usage: onyx run MODEL [-i [NAME=]FILE]... [options]\n"
    "\n"
    "Runs MODEL once. Each -i gives an input as a .npy file (v1-v3, little-endian, C order) or\n"
    "a serialized ONNX TensorProto (.pb), told apart by content. NAME=FILE binds the input\n"
    "called NAME (an initializer's name overrides its value); a FILE without NAME= binds to the\n"
    "next graph input not given by name, in the model's order. Prints each output's name,\n"
    "dtype, shape and first values; with -o also writes each output to DIR/<name>.npy (or .pb),\n"
    "characters other than letters, digits, '.', '-' and '_' in the name replaced by '_'.\n"
    "\n"
    "options:\n"
    "  -i, --input [NAME=]FILE  an input (repeat for each)\n"
    "  -o, --output-dir DIR     write the outputs into DIR (created if missing)\n"
    "  --format npy|pb          file format of the outputs (default npy)\n"
    "  --mode infer|train|graph session mode (default infer): Dropout off and BatchNorm running\n"
    "                           statistics / Dropout on and batch statistics / as the graph says\n"
    "  --seed N                 seed of the session's random numbers (default 0)\n"
    "  --show N                 print up to N values of each output (default 8)\n"
    "  --plugin FILE            load custom operators from the plugin library FILE (repeat for\n"
    "                           each)\n"
    "  -v, --verbose            print what the library logs (warnings, info, debug) on stderr\n"
    "  -h, --help               show this help\n";

typedef struct run_input {
    const char *arg;  /* as given */
    const char *name; /* graph input name (may point into arg's copy), NULL = positional */
    const char *path;
    char *copy; /* malloc'd copy of arg when split at '=' */
    onyx_tensor t;
    bool loaded;
} run_input;

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static bool model_has_input(const onyx_model *m, const char *name)
{
    for (size_t i = 0; i < onyx_model_input_count(m); i++) {
        onyx_value_info v;
        if (onyx_model_input(m, i, &v) == ONYX_OK && strcmp(v.name, name) == 0)
            return true;
    }
    return false;
}

/* Splits "NAME=FILE" when NAME is a graph input, or when FILE is not itself an existing file
 * (then NAME may be an initializer to override); otherwise the whole argument is a file. */
static bool split_input(const onyx_model *m, run_input *in)
{
    const char *eq = strchr(in->arg, '=');
    in->name = NULL;
    in->path = in->arg;
    if (eq == NULL || eq == in->arg)
        return true;
    in->copy = malloc(strlen(in->arg) + 1);
    if (in->copy == NULL)
        return false;
    strcpy(in->copy, in->arg);
    in->copy[eq - in->arg] = '\0';
    if (model_has_input(m, in->copy) || !is_file(in->arg)) {
        in->name = in->copy;
        in->path = in->copy + (eq - in->arg) + 1;
    }
    return true;
}

/* A file name made from a tensor name: [A-Za-z0-9._-] kept, the rest '_'; never "", "." or
 * "..", never starting with '.'. */
static void sanitize(const char *name, size_t index, char *buf, size_t size)
{
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < size; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_';
        buf[n++] = ok ? c : '_';
    }
    buf[n] = '\0';
    if (n == 0)
        snprintf(buf, size, "output_%zu", index);
    else if (buf[0] == '.')
        buf[0] = '_';
}

static int write_outputs(const char *cmd, const char *dir, bool pb, const char *const *names,
                         const onyx_tensor *outs, size_t n_out)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0777) != 0)
            return cli_fail(cmd, "%s: cannot create the output folder: %s", dir, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        return cli_fail(cmd, "%s: not a folder", dir);
    }
    char(*files)[200] = calloc(n_out ? n_out : 1, sizeof(*files));
    if (files == NULL)
        return cli_fail(cmd, "out of memory");
    int rc = CLI_OK;
    for (size_t i = 0; i < n_out && rc == CLI_OK; i++) {
        sanitize(names[i], i, files[i], 180);
        /* two names that sanitise alike ("a/b", "a_b") get the output index appended */
        for (size_t j = 0; j < i; j++) {
            if (strcmp(files[j], files[i]) == 0) {
                size_t len = strlen(files[i]);
                snprintf(files[i] + len, sizeof(files[i]) - len, "_%zu", i);
                break;
            }
        }
        size_t plen = strlen(dir) + strlen(files[i]) + 8;
        char *path = malloc(plen);
        if (path == NULL) {
            rc = cli_fail(cmd, "out of memory");
            break;
        }
        snprintf(path, plen, "%s/%s.%s", dir, files[i], pb ? "pb" : "npy");
        onyx_error err = {ONYX_OK, ""};
        onyx_status st2 = pb ? onyx_tensor_write_pb(path, names[i], &outs[i], &err)
                             : onyx_tensor_write_npy(path, &outs[i], &err);
        if (st2 != ONYX_OK)
            rc = cli_fail(cmd, "output \"%s\": %s%s", names[i], err.msg,
                          st2 == ONYX_ERR_UNSUPPORTED && !pb ? " (try --format pb)" : "");
        else
            printf("wrote %s\n", path);
        free(path);
    }
    free(files);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv);
    const char *model_path = NULL;
    const char *out_dir = NULL;
    bool pb = false;
    onyx_session_options opt;
    onyx_session_options_init(&opt);
    int64_t show = 8;
    run_input *ins = calloc((size_t)argc, sizeof(*ins)); /* at most one per argument */
    size_t n_ins = 0;
    const char **plugins = calloc((size_t)argc, sizeof(*plugins));
    size_t n_plugins = 0;
    bool verbose = false;
    if (ins == NULL || plugins == NULL) {
        free(ins);
        free(plugins);
        return cli_fail(a.cmd, "out of memory");
    }

    int rc = CLI_OK;
    while (cli_more(&a) && rc == CLI_OK) {
        const char *v;
        if (cli_flag(&a, "--help", "-h")) {
            fputs(HELP, stdout);
            free(ins);
            free(plugins);
            return CLI_OK;
        }
        if (cli_option(&a, "--input", "-i", &v)) {
            ins[n_ins++].arg = v;
        } else if (cli_option(&a, "--plugin", NULL, &v)) {
            plugins[n_plugins++] = v;
        } else if (cli_flag(&a, "--verbose", "-v")) {
            verbose = true;
        } else if (cli_option(&a, "--output-dir", "-o", &v)) {
            out_dir = v;
        } else if (cli_option(&a, "--format", NULL, &v)) {
            if (strcmp(v, "npy") == 0)
                pb = false;
            else if (strcmp(v, "pb") == 0)
                pb = true;
            else
                rc = cli_usage(a.cmd, "--format must be npy or pb, not '%s'", v);
        } else if (cli_option(&a, "--mode", NULL, &v)) {
            if (!cli_parse_mode(v, &opt.mode))
                rc = cli_usage(a.cmd, "--mode must be infer, train or graph, not '%s'", v);
        } else if (cli_option(&a, "--seed", NULL, &v)) {
            if (!cli_parse_u64(v, &opt.seed))
                rc = cli_usage(a.cmd, "--seed must be an integer in 0..2^64-1, not '%s'", v);
        } else if (cli_option(&a, "--show", NULL, &v)) {
            if (!cli_parse_i64(v, 0, INT64_MAX, &show))
                rc = cli_usage(a.cmd, "--show must be a non-negative integer, not '%s'", v);
        } else {
            const char *op = cli_operand(&a);
            if (op == NULL)
                break;
            if (model_path != NULL)
                rc = cli_usage(a.cmd,
                               "one model at a time (got '%s' and '%s'); give inputs "
                               "with -i",
                               model_path, op);
            model_path = op;
        }
    }
    if (rc == CLI_OK && a.failed)
        rc = CLI_USAGE;
    if (rc == CLI_OK && model_path == NULL)
        rc = cli_usage(a.cmd, "missing MODEL");
    if (rc != CLI_OK) {
        free(ins);
        free(plugins);
        return rc;
    }

    onyx_registry *reg = NULL;
    onyx_model *m = NULL;
    onyx_session *s = NULL;
    const char **in_names = NULL;
    onyx_tensor *in_tensors = NULL;
    const char **out_names = NULL;
    onyx_tensor *outs = NULL;
    onyx_error err = {ONYX_OK, ""};
    size_t n_graph_in = 0;
    size_t n_out = 0;
    onyx_load_options lo;
    onyx_load_options_init(&lo);
    if (verbose) {
        lo.log = opt.log = cli_log;
        lo.log_user = opt.log_user = (void *)a.cmd;
    }
    rc = cli_load_plugins(a.cmd, plugins, n_plugins, verbose, &reg);
    if (rc != CLI_OK)
        goto done;
    lo.registry = reg;
    if (onyx_model_load_ex(model_path, &lo, &m, &err) != ONYX_OK) {
        rc = cli_fail(a.cmd, "%s", err.msg);
        goto done;
    }
    n_graph_in = onyx_model_input_count(m);
    n_out = onyx_model_output_count(m);

    /* Bind: named inputs first, then positional ones to the remaining graph inputs in order. */
    in_names = calloc(n_ins + 1, sizeof(*in_names));
    in_tensors = calloc(n_ins + 1, sizeof(*in_tensors));
    bool *bound = calloc(n_graph_in + 1, sizeof(*bound));
    if (in_names == NULL || in_tensors == NULL || bound == NULL) {
        free(bound);
        rc = cli_fail(a.cmd, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_ins && rc == CLI_OK; i++) {
        if (!split_input(m, &ins[i]))
            rc = cli_fail(a.cmd, "out of memory");
        else if (ins[i].name != NULL)
            for (size_t g = 0; g < n_graph_in; g++) {
                onyx_value_info v;
                if (onyx_model_input(m, g, &v) == ONYX_OK && strcmp(v.name, ins[i].name) == 0) {
                    if (bound[g])
                        rc = cli_fail(a.cmd, "input \"%s\" is given twice", v.name);
                    bound[g] = true;
                }
            }
    }
    size_t next = 0;
    for (size_t i = 0; i < n_ins && rc == CLI_OK; i++) {
        if (ins[i].name != NULL)
            continue;
        while (next < n_graph_in && bound[next])
            next++;
        if (next == n_graph_in) {
            rc = cli_fail(a.cmd, "%s: the model has only %zu input(s) and all are given",
                          ins[i].arg, n_graph_in);
            break;
        }
        onyx_value_info v;
        if (onyx_model_input(m, next, &v) == ONYX_OK)
            ins[i].name = v.name;
        bound[next] = true;
    }
    for (size_t g = 0; g < n_graph_in && rc == CLI_OK; g++) {
        onyx_value_info v;
        if (!bound[g] && onyx_model_input(m, g, &v) == ONYX_OK) {
            char shape[256];
            cli_value_shape(&v, shape, sizeof(shape));
            rc = cli_fail(a.cmd, "missing input \"%s\" (%s %s): give it with -i %s=FILE", v.name,
                          onyx_dtype_name(v.dtype), shape, v.name);
        }
    }
    free(bound);
    if (rc != CLI_OK)
        goto done;

    for (size_t i = 0; i < n_ins; i++) {
        if (onyx_tensor_read_file(ins[i].path, &ins[i].t, NULL, &err) != ONYX_OK) {
            rc = cli_fail(a.cmd, "input \"%s\": %s", ins[i].name, err.msg);
            goto done;
        }
        ins[i].loaded = true;
        in_names[i] = ins[i].name;
        in_tensors[i] = ins[i].t;
    }

    if (onyx_session_create(m, &opt, &s, &err) != ONYX_OK) {
        rc = cli_fail(a.cmd, "%s", err.msg);
        goto done;
    }
    outs = calloc(n_out + 1, sizeof(*outs));
    out_names = calloc(n_out + 1, sizeof(*out_names));
    if (outs == NULL || out_names == NULL) {
        rc = cli_fail(a.cmd, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_out; i++) {
        onyx_value_info v;
        out_names[i] = onyx_model_output(m, i, &v) == ONYX_OK ? v.name : "";
    }
    if (onyx_session_run(s, n_ins, in_names, in_tensors, n_out, NULL, outs) != ONYX_OK) {
        rc = cli_fail(a.cmd, "%s", onyx_session_errmsg(s));
        goto done;
    }
    for (size_t i = 0; i < n_out; i++) {
        char shape[256];
        cli_tensor_shape(&outs[i], shape, sizeof(shape));
        printf("%s: %s %s", out_names[i], onyx_dtype_name(outs[i].dtype), shape);
        if (show > 0 && onyx_tensor_numel(&outs[i]) > 0) {
            printf(" = ");
            cli_print_values(stdout, &outs[i], show);
        }
        printf("\n");
    }
    if (out_dir != NULL)
        rc = write_outputs(a.cmd, out_dir, pb, out_names, outs, n_out);

done:
    free(outs);
    free(out_names);
    onyx_session_destroy(s);
    for (size_t i = 0; i < n_ins; i++) {
        if (ins[i].loaded)
            onyx_tensor_free(&ins[i].t);
        free(ins[i].copy);
    }
    free(ins);
    free(in_names);
    free(in_tensors);
    onyx_model_destroy(m);
    onyx_registry_destroy(reg); /* after the model, which runs its code */
    free(plugins);
    return rc;
}
