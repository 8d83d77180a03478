/*
 * onyx.c — the `onyx` command: dispatches to tools/cmd_<name>.c, and holds the helpers the
 * subcommands share (cli.h). Uses the public API only: whatever the command line does, a C
 * program can do with runtime/onyx.h.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: onyx <command> [options]\n"
    "\n"
    "commands:\n"
    "  info MODEL [--json]            describe a model: opsets, inputs, outputs, ops, parameters\n"
    "  run MODEL [-i NAME=FILE]...    run a model on tensors from .npy or .pb files\n"
    "  test CASE_DIR...               run ONNX backend test cases (model.onnx + test_data_set_*)\n"
    "  init --layers 64,128,10 -o F   write a fresh MLP as an ONNX model\n"
    "  train MODEL --data F --loss L  train a model; checkpoints, resume, export\n"
    "  export CKPT.zip -o MODEL       write the model of a training checkpoint\n"
    "  bench MODEL [--batch N]        time a model: latency, throughput, GFLOP/s, memory\n"
    "\n"
    "Run 'onyx <command> --help' for a command's options. 'onyx --version' prints the version.\n";


static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} COMMANDS[] = {
    {"info", cmd_info},
    {"run", cmd_run},
    {"test", cmd_test},
    {"init", cmd_init},
    {"train", cmd_train},
    {"export", cmd_export},
    {"bench", cmd_bench},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(USAGE, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(USAGE, stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("onyx %s\n", onyx_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof(COMMANDS) / sizeof(COMMANDS[0]); i++)
        if (strcmp(cmd, COMMANDS[i].name) == 0)
            return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "onyx: unknown command '%s' (see 'onyx --help')\n", cmd);
    return CLI_USAGE;
}

/* ---- messages ----------------------------------------------------------------------------- */

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "onyx %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "onyx %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'onyx %s --help')\n", cmd);
    va_end(ap);
    return CLI_USAGE;
}

/* ---- arguments ---------------------------------------------------------------------------- */

void cli_args_init(cli_args *a, int argc, char **argv)
{
    a->cmd = argv[0];
    a->argc = argc;
    a->argv = argv;
    a->i = 1;
    a->only_operands = false;
    a->failed = false;
}

bool cli_more(const cli_args *a)
{
    return !a->failed && a->i < a->argc;
}

static bool is_option(const cli_args *a)
{
    const char *s = a->argv[a->i];
    return !a->only_operands && s[0] == '-' && s[1] != '\0';
}

bool cli_flag(cli_args *a, const char *name, const char *alt)
{
    if (!cli_more(a) || !is_option(a))
        return false;
    const char *s = a->argv[a->i];
    if (strcmp(s, name) == 0 || (alt != NULL && strcmp(s, alt) == 0)) {
        a->i++;
        return true;
    }
    return false;
}

bool cli_option(cli_args *a, const char *name, const char *alt, const char **value)
{
    if (!cli_more(a) || !is_option(a))
        return false;
    const char *s = a->argv[a->i];
    const char *names[2] = {name, alt};
    for (int k = 0; k < 2; k++) {
        if (names[k] == NULL)
            continue;
        size_t n = strlen(names[k]);
        if (strncmp(s, names[k], n) != 0)
            continue;
        if (s[n] == '=' && names[k][1] == '-') { /* --name=value (long options only) */
            *value = s + n + 1;
            a->i++;
            return true;
        }
        if (s[n] == '\0') {
            if (a->i + 1 >= a->argc) {
                cli_usage(a->cmd, "option %s needs a value", s);
                a->failed = true;
                return false;
            }
            *value = a->argv[a->i + 1];
            a->i += 2;
            return true;
        }
    }
    return false;
}

const char *cli_operand(cli_args *a)
{
    if (!cli_more(a))
        return NULL;
    const char *s = a->argv[a->i];
    if (!a->only_operands && strcmp(s, "--") == 0) {
        a->only_operands = true;
        a->i++;
        return cli_more(a) ? cli_operand(a) : NULL;
    }
    if (is_option(a)) {
        cli_usage(a->cmd, "unknown option %s", s);
        a->failed = true;
        return NULL;
    }
    a->i++;
    return s;
}

/* ---- numbers ------------------------------------------------------------------------------ */

bool cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (s == NULL || *s == '\0' || *s == ' ' || *s == '\t' || *s == '+')
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = (int64_t)v;
    return true;
}

bool cli_parse_u64(const char *s, uint64_t *out)
{
    /* strtoull accepts "-1" (as ULLONG_MAX): insist on digits only */
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = (uint64_t)v;
    return true;
}

bool cli_parse_double(const char *s, double min, double max, double *out)
{
    if (s == NULL || *s == '\0' || *s == ' ' || *s == '\t')
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(v >= min && v <= max)) /* also refuses NaN */
        return false;
    *out = v;
    return true;
}

bool cli_parse_mode(const char *s, onyx_mode *mode)
{
    if (strcmp(s, "infer") == 0)
        *mode = ONYX_MODE_INFER;
    else if (strcmp(s, "train") == 0)
        *mode = ONYX_MODE_TRAIN;
    else if (strcmp(s, "graph") == 0)
        *mode = ONYX_MODE_GRAPH;
    else
        return false;
    return true;
}

const char *cli_mode_name(onyx_mode mode)
{
    switch (mode) {
    case ONYX_MODE_INFER: return "infer";
    case ONYX_MODE_TRAIN: return "train";
    case ONYX_MODE_GRAPH: return "graph";
    }
    return "?";
}

/* ---- tensors ------------------------------------------------------------------------------ */

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 0x1f;
    int m = h & 0x3ff;
    double v;
    if (e == 0)
        v = ldexp((double)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp((double)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

double cli_load_f64(onyx_dtype dt, const void *data, int64_t i)
{
    switch (dt) {
    case ONYX_DTYPE_F32: return ((const float *)data)[i];
    case ONYX_DTYPE_F64: return ((const double *)data)[i];
    case ONYX_DTYPE_F16: return half_to_double(((const uint16_t *)data)[i]);
    case ONYX_DTYPE_BF16: {
        uint32_t bits = (uint32_t)((const uint16_t *)data)[i] << 16;
        float f;
        memcpy(&f, &bits, sizeof(f));
        return f;
    }
    case ONYX_DTYPE_U8: return ((const uint8_t *)data)[i];
    case ONYX_DTYPE_I8: return ((const int8_t *)data)[i];
    case ONYX_DTYPE_U16: return ((const uint16_t *)data)[i];
    case ONYX_DTYPE_I16: return ((const int16_t *)data)[i];
    case ONYX_DTYPE_I32: return ((const int32_t *)data)[i];
    case ONYX_DTYPE_I64: return (double)((const int64_t *)data)[i];
    case ONYX_DTYPE_U32: return ((const uint32_t *)data)[i];
    case ONYX_DTYPE_U64: return (double)((const uint64_t *)data)[i];
    case ONYX_DTYPE_BOOL: return ((const uint8_t *)data)[i] != 0;
    case ONYX_DTYPE_STRING:
    case ONYX_DTYPE_UNDEFINED: break;
    }
    return NAN;
}

/* Appends to buf (always NUL-terminated, truncated when full). */
static void append(char *buf, size_t size, size_t *used, const char *s)
{
    size_t n = strlen(s);
    if (*used + 1 >= size)
        return;
    if (n > size - 1 - *used)
        n = size - 1 - *used;
    memcpy(buf + *used, s, n);
    *used += n;
    buf[*used] = '\0';
}

void cli_value_shape(const onyx_value_info *v, char *buf, size_t size)
{
    size_t used = 0;
    char num[32];
    if (size == 0)
        return;
    buf[0] = '\0';
    if (v->rank < 0) {
        append(buf, size, &used, "?");
        return;
    }
    append(buf, size, &used, "[");
    for (int i = 0; i < v->rank; i++) {
        if (i)
            append(buf, size, &used, ",");
        if (v->dim_params[i] != NULL && v->dim_params[i][0] != '\0') {
            append(buf, size, &used, v->dim_params[i]);
        } else if (v->dims[i] < 0) {
            append(buf, size, &used, "?");
        } else {
            snprintf(num, sizeof(num), "%lld", (long long)v->dims[i]);
            append(buf, size, &used, num);
        }
    }
    append(buf, size, &used, "]");
}

void cli_tensor_shape(const onyx_tensor *t, char *buf, size_t size)
{
    size_t used = 0;
    char num[32];
    if (size == 0)
        return;
    buf[0] = '\0';
    append(buf, size, &used, "[");
    for (int i = 0; i < t->rank; i++) {
        snprintf(num, sizeof(num), "%s%lld", i ? "," : "", (long long)t->dims[i]);
        append(buf, size, &used, num);
    }
    append(buf, size, &used, "]");
}

void cli_print_values(FILE *f, const onyx_tensor *t, int64_t max_values)
{
    int64_t n = onyx_tensor_numel(t);
    for (int64_t i = 0; i < n && i < max_values; i++) {
        double v = cli_load_f64(t->dtype, t->data, i);
        if (t->dtype == ONYX_DTYPE_I64)
            fprintf(f, "%s%lld", i ? " " : "", (long long)((const int64_t *)t->data)[i]);
        else if (t->dtype == ONYX_DTYPE_U64)
            fprintf(f, "%s%llu", i ? " " : "", (unsigned long long)((const uint64_t *)t->data)[i]);
        else if (t->dtype == ONYX_DTYPE_BOOL)
            fprintf(f, "%s%s", i ? " " : "", v != 0 ? "true" : "false");
        else
            fprintf(f, "%s%.6g", i ? " " : "", v);
    }
    if (n > max_values)
        fprintf(f, " ...");
}
