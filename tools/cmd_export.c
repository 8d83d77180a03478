/* cmd_export.c — `onyx export CKPT.zip -o MODEL`: the inference model of a checkpoint. */
#include "cli.h"

int cmd_export(int argc, char **argv);

static const char HELP[] =
    "usage: onyx export CKPT.zip -o MODEL.onnx\n"
    "\n"
    "Writes the model held in a checkpoint of `onyx train` (its model.onnx: the original graph\n"
    "with the trained weights, loadable by any ONNX runtime) to MODEL.onnx, replaced atomically.\n"
    "The checkpoint is verified first (CRCs, entries, format version); a corrupt one is refused.\n"
    "\n"
    "options:\n"
    "  -o, --output MODEL  the file to write\n"
    "  -h, --help          show this help\n";

int cmd_export(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv);
    const char *ckpt = NULL;
    const char *out_path = NULL;
    while (cli_more(&a)) {
        const char *v;
        if (cli_flag(&a, "--help", "-h")) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
        if (cli_option(&a, "--output", "-o", &v)) {
            out_path = v;
            continue;
        }
        const char *op = cli_operand(&a);
        if (op == NULL)
            break;
        if (ckpt != NULL)
            return cli_usage(a.cmd, "one checkpoint at a time (got '%s' and '%s')", ckpt, op);
        ckpt = op;
    }
    if (a.failed)
        return CLI_USAGE;
    if (ckpt == NULL)
        return cli_usage(a.cmd, "missing CKPT.zip");
    if (out_path == NULL)
        return cli_usage(a.cmd, "missing -o MODEL.onnx");
    onyx_error err = {ONYX_OK, ""};
    onyx_checkpoint_info info;
    if (onyx_checkpoint_info_read(ckpt, &info, &err) != ONYX_OK)
        return cli_fail(a.cmd, "%s", err.msg);
    if (onyx_checkpoint_export(ckpt, out_path, &err) != ONYX_OK)
        return cli_fail(a.cmd, "%s", err.msg);
    printf("wrote %s: the model of %s at step %lld\n", out_path, ckpt,
           (long long)info.progress.step);
    return CLI_OK;
}
