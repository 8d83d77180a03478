/*
 * cli.h — what the onyx subcommands share: their entry points, argument parsing, messages and
 * printing helpers (defined in tools/onyx.c). The tools use only the public onyx.h.
 *
 * Exit codes: 0 success, 1 failure (a file, model or run went wrong, a test failed),
 * 2 usage error (the command line itself is wrong). Errors are one line on stderr:
 *   onyx <cmd>: <message>
 */
#ifndef ONYX_CLI_H
#define ONYX_CLI_H

#include "onyx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define CLI_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CLI_PRINTF(fmt, args)
#endif

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Subcommands: argv[0] is the subcommand's name; each returns an exit code. */
int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_test(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* Runs m once on random inputs (batch for an open first dimension) in an inference session and
 * gives its memory plan (onyx_session_memory) and the FLOPs of its matrix products
 * (onyx_session_flops); prints the problem and returns CLI_FAIL when it cannot (cmd_bench.c). */
int bench_plan(const char *cmd, const onyx_model *m, int64_t batch, size_t *arena, size_t *naive,
               double *flops);

/* Prints "onyx <cmd>: <message>\n" to stderr and returns CLI_FAIL. */
int cli_fail(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);
/* Same, ending with " (see 'onyx <cmd> --help')", and returns CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/*
 * A cursor over a subcommand's arguments. Options may come before or after operands;
 * "--name value" and "--name=value" are the same; "--" ends the options.
 */
typedef struct cli_args {
    const char *cmd;
    int argc;
    char **argv;
    int i;              /* next argument */
    bool only_operands; /* after "--" */
    bool failed;        /* a usage error was printed */
} cli_args;

void cli_args_init(cli_args *a, int argc, char **argv);
/* True while arguments remain and no usage error happened. */
bool cli_more(const cli_args *a);
/* If the next argument is the flag `name` (or `alt`, may be NULL), consumes it. */
bool cli_flag(cli_args *a, const char *name, const char *alt);
/* If the next argument is option `name` (or `alt`), consumes it and its value into *value and
 * returns true; a missing value prints a usage error and sets a->failed. */
bool cli_option(cli_args *a, const char *name, const char *alt, const char **value);
/* Consumes the next argument as an operand; an unknown option ("-x") is a usage error and
 * returns NULL. */
const char *cli_operand(cli_args *a);

/* Strict number parsing: the whole string, in [min, max]; false otherwise. */
bool cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
bool cli_parse_u64(const char *s, uint64_t *out);
bool cli_parse_double(const char *s, double min, double max, double *out);
/* "infer", "train" or "graph". */
bool cli_parse_mode(const char *s, onyx_mode *mode);
const char *cli_mode_name(onyx_mode mode);

/* Creates *reg holding the custom ops of the plugin libraries paths[n] (--plugin FILE; a name
 * without '/' that is a file of the current folder is loaded from there), logging with cli_log
 * when verbose. n == 0 leaves *reg NULL: no registry needed. Prints the problem and returns
 * CLI_FAIL when a plugin cannot be loaded. The caller destroys *reg after every model loaded
 * with it (defined in plugins.c). */
int cli_load_plugins(const char *cmd, const char *const *paths, size_t n, bool verbose,
                     onyx_registry **reg);
/* A log callback (--verbose): "onyx <cmd>: <level>: <message>" on stderr for warnings, info
 * and debug messages (errors are reported by the command); user is the command's name. */
void cli_log(void *user, onyx_log_level level, const char *msg);

/* Element i of data (of dtype dt) as a double; exact for every integer up to 2^53. */
double cli_load_f64(onyx_dtype dt, const void *data, int64_t i);
/* "[batch,64]" for a value info (symbolic dims by name, unknown as '?', unknown rank "?"). */
void cli_value_shape(const onyx_value_info *v, char *buf, size_t size);
/* "[2,64]" for a tensor. */
void cli_tensor_shape(const onyx_tensor *t, char *buf, size_t size);
/* Prints up to max_values elements of t, separated by spaces ("..." when there are more). */
void cli_print_values(FILE *f, const onyx_tensor *t, int64_t max_values);

#endif /* ONYX_CLI_H */
