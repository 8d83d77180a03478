/* cmd_init.c — `onyx init`: write a fresh multi-layer perceptron (onyx_mlp_write). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: onyx init --layers W0,W1,...,Wn [options] -o MODEL\n"
    "\n"
    "Writes a fresh MLP as a standard ONNX model: input \"input\" [batch,W0], output \"logits\"\n"
    "[batch,Wn]; per layer a Gemm (\"fc<i>\", weights \"fc<i>.weight\" [out,in], bias\n"
    "\"fc<i>.bias\"), then on hidden layers the activation (\"act<i>\") and, with --dropout, a\n"
    "Dropout (\"drop<i>\"). Weights are drawn from --seed (He normal for relu/gelu, Xavier\n"
    "uniform for tanh/sigmoid); biases are zero. Opset 17 (20 for gelu).\n"
    "\n"
    "options:\n"
    "  --layers LIST       layer widths, input first, at least two (e.g. 784,128,10)\n"
    "  --activation NAME   relu (default), tanh, sigmoid or gelu\n"
    "  --dropout P         Dropout ratio after each hidden activation, in [0, 1) (default 0)\n"
    "  --seed N            seed of the weights, 0..2^64-1 (default 0)\n"
    "  -o, --output MODEL  the file to write (replaced atomically)\n"
    "  -h, --help          show this help\n";

/* Widths of the layers, at most this many: more would make a useless model. */
#define MAX_LAYERS 10000

/* Parses "64,128,10" into widths (malloc'd); false on anything else. */
static bool parse_layers(const char *s, int64_t **out, size_t *n)
{
    size_t count = 1;
    for (const char *p = s; *p; p++)
        count += *p == ',';
    if (count > MAX_LAYERS)
        return false;
    int64_t *w = calloc(count, sizeof(*w));
    char *copy = malloc(strlen(s) + 1);
    if (w == NULL || copy == NULL) {
        free(w);
        free(copy);
        return false;
    }
    strcpy(copy, s);
    char *item = copy;
    for (size_t i = 0; i < count; i++) {
        char *comma = strchr(item, ',');
        if (comma != NULL)
            *comma = '\0';
        if (!cli_parse_i64(item, 1, (int64_t)1 << 31, &w[i])) {
            free(w);
            free(copy);
            return false;
        }
        item = comma != NULL ? comma + 1 : item;
    }
    free(copy);
    *out = w;
    *n = count;
    return true;
}

int cmd_init(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv);
    const char *layers_arg = NULL;
    const char *activation = "relu";
    double dropout = 0.0;
    uint64_t seed = 0;
    const char *out_path = NULL;
    while (cli_more(&a)) {
        const char *v;
        if (cli_flag(&a, "--help", "-h")) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
        if (cli_option(&a, "--layers", NULL, &v)) {
            layers_arg = v;
        } else if (cli_option(&a, "--activation", NULL, &v)) {
            if (strcmp(v, "relu") != 0 && strcmp(v, "tanh") != 0 && strcmp(v, "sigmoid") != 0 &&
                strcmp(v, "gelu") != 0)
                return cli_usage(a.cmd,
                                 "--activation must be relu, tanh, sigmoid or gelu, not '%s'", v);
            activation = v;
        } else if (cli_option(&a, "--dropout", NULL, &v)) {
            if (!cli_parse_double(v, 0.0, 1.0, &dropout) || dropout >= 1.0)
                return cli_usage(a.cmd, "--dropout must be a number in [0, 1), not '%s'", v);
        } else if (cli_option(&a, "--seed", NULL, &v)) {
            if (!cli_parse_u64(v, &seed))
                return cli_usage(a.cmd, "--seed must be an integer in 0..2^64-1, not '%s'", v);
        } else if (cli_option(&a, "--output", "-o", &v)) {
            out_path = v;
        } else {
            const char *op = cli_operand(&a);
            if (op == NULL)
                break;
            return cli_usage(a.cmd, "unexpected argument '%s'", op);
        }
    }
    if (a.failed)
        return CLI_USAGE;
    if (layers_arg == NULL)
        return cli_usage(a.cmd, "missing --layers (e.g. --layers 784,128,10)");
    if (out_path == NULL)
        return cli_usage(a.cmd, "missing -o MODEL");
    int64_t *layers = NULL;
    size_t n_layers = 0;
    if (!parse_layers(layers_arg, &layers, &n_layers))
        return cli_usage(a.cmd, "--layers must be comma-separated widths in 1..2^31, not '%s'",
                         layers_arg);
    if (n_layers < 2) {
        free(layers);
        return cli_usage(a.cmd, "--layers needs at least two widths (input and output), got '%s'",
                         layers_arg);
    }

    onyx_mlp_spec spec = {layers, n_layers, activation, (float)dropout, seed};
    onyx_error err = {ONYX_OK, ""};
    if (onyx_mlp_write(&spec, out_path, &err) != ONYX_OK) {
        free(layers);
        return cli_fail(a.cmd, "%s", err.msg);
    }
    int64_t params = 0;
    for (size_t i = 1; i < n_layers; i++)
        params += (layers[i - 1] + 1) * layers[i];
    printf("wrote %s: MLP %s, %s", out_path, layers_arg, activation);
    if (dropout > 0)
        printf(", dropout %g", dropout);
    printf(", seed %llu, %lld parameters\n", (unsigned long long)seed, (long long)params);
    free(layers);
    return CLI_OK;
}
