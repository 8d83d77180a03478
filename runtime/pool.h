/*
 * pool.h — a fork-join thread pool (private to runtime/ and ops/; not installed).
 *
 * A pool owns threads-1 worker threads; the thread that calls onyx_pool_run is the last worker,
 * so a pool of 1 thread starts no thread at all and runs every task inline. There is no global
 * pool: a session creates its own (size from onyx_session_options.threads) and passes it to the
 * kernels that split their work (the GEMM, large element-wise loops).
 *
 * Workers that finish a job spin briefly (a few tens of microseconds) before sleeping on a
 * condition variable, so the many short jobs of one inference (one per layer) do not pay a
 * wake-up each; an idle pool costs no CPU.
 *
 * Results never depend on the number of threads as long as each task computes a fixed piece of
 * the output in a fixed order: which thread runs a task is not specified.
 */
#ifndef ONYX_POOL_H
#define ONYX_POOL_H

#include "onyx.h"

#include <stddef.h>
#include <stdint.h>

typedef struct onyx_pool onyx_pool;

/* One task of a job: fn(ctx, task) for task in [0, n_tasks). Must not fail. */
typedef void (*onyx_pool_fn)(void *ctx, int64_t task);

/* Largest pool; more threads are clamped to this. */
#define ONYX_POOL_MAX_THREADS 256

/*
 * Creates a pool of `threads` threads in all, counting the caller of onyx_pool_run
 * (threads <= 0: the number of online CPUs). On success *out is the new pool, freed with
 * onyx_pool_destroy(); on failure (ONYX_ERR_NOMEM: no memory or a thread could not be started)
 * *out is NULL.
 */
ONYX_NODISCARD onyx_status onyx_pool_create(int threads, onyx_pool **out);

/* Stops and joins the workers, frees the scratch memory and the pool. Accepts NULL. Must not be
 * called while a job runs. */
void onyx_pool_destroy(onyx_pool *pool);

/* Number of threads that run tasks (the caller included); 1 for a NULL pool. */
int onyx_pool_threads(const onyx_pool *pool);

/*
 * Runs fn(ctx, task) for every task in [0, n_tasks) on the pool's threads and the caller's, and
 * returns when all have finished (their writes are then visible to the caller). With pool ==
 * NULL, a pool of one thread, or n_tasks <= 1, the tasks run inline in order. Tasks of one job
 * run concurrently and must write disjoint memory.
 * A pool is used by one thread at a time (like the session that owns it). A task that calls
 * onyx_pool_run on the same pool, or a second thread calling it while a job runs, gets its
 * tasks run inline rather than a deadlock.
 */
void onyx_pool_run(onyx_pool *pool, int64_t n_tasks, onyx_pool_fn fn, void *ctx);

/*
 * Scratch memory owned by the pool, for kernels that need working space (the GEMM's packed
 * panels): returns a 64-byte-aligned block of at least `bytes` bytes, or NULL when pool is NULL
 * or the memory cannot be had. The block is reused: it only grows (one allocation the first
 * time a size is asked for, none after), and stays valid until the next onyx_pool_scratch call
 * or onyx_pool_destroy. Its contents are not kept across calls. Same one-user-at-a-time rule as
 * onyx_pool_run: call it outside tasks, then hand pieces of the block to the tasks.
 */
void *onyx_pool_scratch(onyx_pool *pool, size_t bytes);

/* ---- large element-wise loops on the thread pool ------------------------------------------- */

/* Elements per chunk of a parallel loop (64 KiB of float32: a slice stays in L2), and the
 * fewest elements worth waking the pool for. */
#define ONYX_PAR_CHUNK ((int64_t)1 << 14)
#define ONYX_PAR_MIN   ((int64_t)1 << 16)

/* One chunk of a parallel loop: the units [lo, hi). Must not fail. */
typedef void (*onyx_range_fn)(void *ctx, int64_t lo, int64_t hi);

/*
 * Runs fn(ctx, lo, hi) over the units [0, n) (elements, or rows of unit_elems elements each):
 * on pool (may be NULL) in chunks of about ONYX_PAR_CHUNK elements (whole units, at least one)
 * when there are at least ONYX_PAR_MIN elements in all and the pool has more than one thread;
 * else as one call fn(ctx, 0, n) on this thread. The chunks are fixed by n and unit_elems
 * alone, and the chunks of one call must write disjoint memory, so results never depend on the
 * thread count as long as each unit is computed the same way whatever range it falls in.
 * Returns when every chunk is done. Call it outside pool tasks (from a kernel's wrapper).
 */
void onyx_parallel_for(onyx_pool *pool, int64_t n, int64_t unit_elems, onyx_range_fn fn, void *ctx);

#endif
