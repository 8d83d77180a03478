/* alloc_count.h — counts the allocations of a test program linked with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc
 * (CMakeLists.txt does it for the tests that check "repeated runs allocate nothing"). */
#ifndef ONYX_ALLOC_COUNT_H
#define ONYX_ALLOC_COUNT_H

/* malloc, calloc, realloc and aligned_alloc calls so far, in this program and the library. */
long th_alloc_count(void);

#endif
