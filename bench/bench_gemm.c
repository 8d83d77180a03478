/*
 * bench_gemm.c — onyx's GEMM (ops/gemm_kernel.c) against OpenBLAS cblas_sgemm, same process,
 * same buffers, alternating. Built by bench/run.sh (not by the main CMake build), linked with
 * build/libonyx.a and -lopenblas.
 *
 * usage: bench_gemm [--sizes 1024,2048] [--threads 1,2] [--reps 5] [--portable]
 *
 * Each size is a square C = A * B (row-major, no transpose, alpha 1, beta 0). For each thread
 * count, the libraries take `reps` turns each, alternating; a turn is two untimed calls and the
 * best of three timed ones. The table gives the median over turns in GFLOP/s (2*N^3 / seconds)
 * and the ratio onyx / OpenBLAS. OpenBLAS keeps its worker threads spinning for a while after a
 * call, which would steal the second core from onyx on a 2-core machine: a short pause starts
 * every turn.
 * --portable also times onyx's plain-C kernel (1 thread), the baseline the SIMD paths replace.
 */
#include "gemm_kernel.h"
#include "pool.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Lets the other library's spinning threads go to sleep before the next timing. */
static void settle(void)
{
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof(*x), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Comma-separated positive integers into out[max]; returns the count (0 on a bad list). */
static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 100000)
            return 0;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            return 0;
    }
    return n;
}

typedef enum lib { LIB_ONYX, LIB_OPENBLAS, LIB_PORTABLE } lib;

static double time_one(lib which, onyx_pool *pool, int n, const float *A, const float *B,
                       float *C)
{
    double t0 = now();
    if (which == LIB_OPENBLAS)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B, n, 0.0f, C,
                    n);
    else
        onyx_gemm_f32_isa(which == LIB_ONYX ? ONYX_GEMM_ISA_AUTO : ONYX_GEMM_ISA_PORTABLE, pool,
                          false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
    return now() - t0;
}

static double turn(lib which, onyx_pool *pool, int n, const float *A, const float *B, float *C)
{
    settle();
    time_one(which, pool, n, A, B, C);
    time_one(which, pool, n, A, B, C);
    double best = time_one(which, pool, n, A, B, C);
    for (int i = 0; i < 2; i++) {
        double t = time_one(which, pool, n, A, B, C);
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    int sizes[8] = {1024, 2048};
    int n_sizes = 2;
    int threads[8] = {1, 2};
    int n_threads = 2;
    int reps = 5;
    int portable = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc) {
            n_sizes = parse_list(argv[++i], sizes, 8);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            n_threads = parse_list(argv[++i], threads, 8);
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--portable") == 0) {
            portable = 1;
        } else {
            fprintf(stderr, "usage: %s [--sizes 1024,2048] [--threads 1,2] [--reps 5] "
                            "[--portable]\n", argv[0]);
            return 2;
        }
    }
    if (n_sizes == 0 || n_threads == 0 || reps < 1 || reps > 100) {
        fprintf(stderr, "bench_gemm: bad arguments\n");
        return 2;
    }
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("onyx GEMM path: %s; %s, core %s (OPENBLAS_CORETYPE=%s)\n",
           onyx_gemm_isa_name(onyx_gemm_isa_best()), openblas_get_config(),
           openblas_get_corename(), coretype ? coretype : "unset");
    printf("%-6s %-7s %12s %12s %8s%s\n", "size", "threads", "onyx GF/s", "OpenBLAS GF/s",
           "ratio", portable ? "  portable GF/s" : "");

    for (int s = 0; s < n_sizes; s++) {
        int n = sizes[s];
        size_t count = (size_t)n * (size_t)n;
        float *A = aligned_alloc(64, count * sizeof(float));
        float *B = aligned_alloc(64, count * sizeof(float));
        float *C = aligned_alloc(64, count * sizeof(float));
        if (A == NULL || B == NULL || C == NULL) {
            fprintf(stderr, "bench_gemm: out of memory\n");
            return 1;
        }
        uint64_t x = 12345;
        for (size_t i = 0; i < count; i++) {
            x = x * 6364136223846793005u + 1442695040888963407u;
            A[i] = (float)((double)(x >> 40) / (double)(1u << 24)) - 0.5f;
            B[i] = (float)((double)((x >> 16) & 0xFFFFFF) / (double)(1u << 24)) - 0.5f;
        }
        double flops = 2.0 * (double)n * (double)n * (double)n;
        for (int t = 0; t < n_threads; t++) {
            onyx_pool *pool = NULL;
            if (onyx_pool_create(threads[t], &pool) != ONYX_OK) {
                fprintf(stderr, "bench_gemm: cannot create a pool of %d threads\n", threads[t]);
                return 1;
            }
            openblas_set_num_threads(threads[t]);
            double t_onyx[100];
            double t_blas[100];
            double t_port[100];
            /* Each turn: let the other library's threads go to sleep, wake this one's up with
             * two untimed calls (threads, caches, CPU clocks), then time three calls and keep
             * the best. The median of the turns goes in the table. */
            for (int r = 0; r < reps; r++) {
                t_onyx[r] = turn(LIB_ONYX, pool, n, A, B, C);
                t_blas[r] = turn(LIB_OPENBLAS, pool, n, A, B, C);
                if (portable && threads[t] == 1 && r < 3)
                    t_port[r] = turn(LIB_PORTABLE, NULL, n, A, B, C);
            }
            double g_onyx = flops / median(t_onyx, reps) * 1e-9;
            double g_blas = flops / median(t_blas, reps) * 1e-9;
            printf("%-6d %-7d %12.1f %12.1f %8.2f", n, threads[t], g_onyx, g_blas,
                   g_onyx / g_blas);
            if (portable && threads[t] == 1)
                printf("  %12.1f", flops / median(t_port, reps < 3 ? reps : 3) * 1e-9);
            printf("\n");
            fflush(stdout);
            onyx_pool_destroy(pool);
        }
        free(A);
        free(B);
        free(C);
    }
    return 0;
}
