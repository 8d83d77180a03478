/* test_files.c — see test_files.h. */
#define _XOPEN_SOURCE 700 /* mkdtemp, lstat */
#include "test_files.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[512];

const char *th_tmpdir_make(const char *base, const char *tag)
{
    snprintf(g_dir, sizeof g_dir, "%s/tmp_%s_XXXXXX", base, tag);
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return NULL;
    }
    return g_dir;
}

const char *th_tmpdir(void)
{
    return g_dir;
}

const char *th_path(const char *name)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

bool th_file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

unsigned char *th_slurp(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(size > 0 ? (size_t)size : 1);
    if (buf != NULL && size > 0)
        *n = fread(buf, 1, (size_t)size, f);
    fclose(f);
    return buf;
}

bool th_write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        return false;
    }
    bool ok = n == 0 || fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static int remove_tree(const char *dir)
{
    int leftovers = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strstr(e->d_name, ".tmp.") != NULL)
            leftovers++;
        char p[1100];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            leftovers += remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
    return leftovers;
}

int th_tmpdir_remove(void)
{
    return remove_tree(g_dir);
}
