/* test_files.h — a temporary folder per test program, and small file helpers.
 *
 *   if (th_tmpdir_make(ONYX_BINARY_DIR, "ckpt") == NULL) return 1;   // BINARY/tmp_ckpt_XXXXXX
 *   th_write_bytes(th_path("a.bin"), data, n);
 *   ...
 *   CHECK(th_tmpdir_remove() == 0);   // removes it all; counts leftover "*.tmp.*" files
 */
#ifndef ONYX_TEST_FILES_H
#define ONYX_TEST_FILES_H

#include <stdbool.h>
#include <stddef.h>

/* Creates base/tmp_<tag>_XXXXXX; returns its path (static) or NULL (and prints why). */
const char *th_tmpdir_make(const char *base, const char *tag);
/* The folder made by th_tmpdir_make. */
const char *th_tmpdir(void);
/* "<tmpdir>/<name>" in one of 4 rotating static buffers. */
const char *th_path(const char *name);
bool th_file_exists(const char *path);
/* The whole file in a new malloc'd buffer (NULL, *n = 0 when it cannot be read). */
unsigned char *th_slurp(const char *path, size_t *n);
/* Writes n bytes to path; false (and a printed reason) when that fails. */
bool th_write_bytes(const char *path, const void *data, size_t n);
/* Removes the folder and everything in it; returns how many entries were temporary files
 * ("*.tmp.*") that a writer left behind. */
int th_tmpdir_remove(void);

#endif
