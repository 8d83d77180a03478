/* plugins.c — what `onyx run`, `onyx test` and `onyx train` share for --plugin and --verbose. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_load_plugins(const char *cmd, const char *const *paths, size_t n, bool verbose,
                     onyx_registry **reg)
{
    *reg = NULL;
    if (n == 0)
        return CLI_OK;
    onyx_error err = {ONYX_OK, ""};
    if (onyx_registry_create(reg, &err) != ONYX_OK)
        return cli_fail(cmd, "%s", err.msg);
    if (verbose)
        onyx_registry_set_log(*reg, cli_log, (void *)cmd);
    for (size_t i = 0; i < n; i++) {
        /* dlopen searches the library path for a name without '/': a file of the current
         * folder is what a user typing `--plugin libswish.so` means. */
        const char *path = paths[i];
        char *local = NULL;
        struct stat st;
        if (strchr(path, '/') == NULL && stat(path, &st) == 0) {
            local = malloc(strlen(path) + 3);
            if (local == NULL) {
                onyx_registry_destroy(*reg);
                *reg = NULL;
                return cli_fail(cmd, "out of memory");
            }
            strcpy(local, "./");
            strcat(local, path);
            path = local;
        }
        onyx_status s = onyx_plugin_load(*reg, path, &err);
        free(local);
        if (s != ONYX_OK) {
            onyx_registry_destroy(*reg);
            *reg = NULL;
            return cli_fail(cmd, "%s", err.msg);
        }
    }
    return CLI_OK;
}

void cli_log(void *user, onyx_log_level level, const char *msg)
{
    if (level == ONYX_LOG_ERROR)
        return; /* the command reports its errors itself, once */
    fprintf(stderr, "onyx %s: %s: %s\n", (const char *)user, onyx_log_level_name(level), msg);
}
