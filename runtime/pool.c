/*
 * pool.c — the fork-join thread pool (see pool.h).
 *
 * One job at a time. Tasks are claimed from `ticket`, which holds the job's generation in its
 * high 32 bits and the next task index in its low 32 bits: a compare-and-swap claims a task of
 * exactly the job it saw, so a worker that wakes late can never run a task of a newer job with
 * an older job's function. Between jobs the ticket is closed (index 0xFFFFFFFF) while the caller
 * writes the new job. The caller works on its own job too and returns when `done` reaches
 * n_tasks; it never waits for a worker that is not running (on a busy machine, or a pool larger
 * than the CPU, it simply does more of the tasks itself).
 *
 * Waiting is spin-then-sleep on both sides. The sleeping side announces itself (`sleepers`,
 * `caller_sleeps`) before re-checking the condition under the mutex, and the waking side changes
 * the condition before reading the announcement: with sequentially consistent atomics one of the
 * two always sees the other, so no wake-up is lost and the mutex is only taken when somebody
 * actually sleeps.
 */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__) && defined(__GNUC__)
#define CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define CPU_RELAX() ((void)0)
#endif

/* Polls before sleeping: about 50-100 us with x86 `pause`, long enough to bridge the gap
 * between the GEMMs of consecutive layers, short enough not to hog a core when idle. */
enum { SPIN_POLLS = 1 << 11 };

#define TICKET_CLOSED 0xFFFFFFFFu
/* Tasks of one job: the ticket's index has 32 bits, and must never reach TICKET_CLOSED. */
#define MAX_TASKS ((int64_t)1 << 31)

struct onyx_pool {
    int threads;   /* workers + the caller */
    int n_workers; /* started worker threads */
    pthread_t *workers;

    pthread_mutex_t mu;
    pthread_cond_t wake; /* workers sleep here waiting for a new generation */
    pthread_cond_t done_cv; /* the caller sleeps here waiting for done == n_tasks */

    /* The current job: written by the caller while the ticket is closed. */
    _Atomic(onyx_pool_fn) fn;
    _Atomic(void *) ctx;
    atomic_int_fast64_t n_tasks;
    atomic_uint_fast64_t ticket; /* generation << 32 | next task index */
    atomic_int_fast64_t done;    /* tasks of the current job finished */
    atomic_uint generation;      /* bumped once per job, after the ticket opens */
    atomic_int sleepers;         /* workers in (or entering) pthread_cond_wait(wake) */
    atomic_bool caller_sleeps;
    atomic_bool stop;
    atomic_bool busy; /* a job is running: nested or concurrent calls run inline */

    void *scratch;
    size_t scratch_size;
};

/* Claims and runs tasks of job `gen` until none is left (or a newer job started). */
static void run_tasks(onyx_pool *pool, unsigned gen)
{
    for (;;) {
        uint_fast64_t t = atomic_load(&pool->ticket);
        if ((unsigned)(t >> 32) != gen)
            return;
        int64_t task = (int64_t)(t & 0xFFFFFFFFu);
        int64_t n = atomic_load(&pool->n_tasks);
        if (task >= n)
            return;
        /* Success means the ticket still was (gen, task): job gen is current, and stays so
         * until this task is done, because its caller waits for it. */
        if (!atomic_compare_exchange_weak(&pool->ticket, &t, t + 1))
            continue;
        onyx_pool_fn fn = atomic_load(&pool->fn);
        fn(atomic_load(&pool->ctx), task);
        if (atomic_fetch_add(&pool->done, 1) + 1 == n && atomic_load(&pool->caller_sleeps)) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done_cv);
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

static void *worker_main(void *arg)
{
    onyx_pool *pool = arg;
    unsigned seen = 0; /* workers start before the first job: generation 0 is "no job" */
    for (;;) {
        /* Wait for a new generation (or stop): spin first, then sleep. */
        unsigned gen = atomic_load(&pool->generation);
        for (int i = 0; gen == seen && i < SPIN_POLLS && !atomic_load(&pool->stop); i++) {
            CPU_RELAX();
            gen = atomic_load(&pool->generation);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1);
            while ((gen = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mu);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop))
            return NULL;
        seen = gen;
        run_tasks(pool, gen);
    }
}

/* Wakes every sleeping worker after generation or stop changed. */
static void wake_workers(onyx_pool *pool)
{
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mu);
    }
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > ONYX_POOL_MAX_THREADS ? ONYX_POOL_MAX_THREADS : (int)n;
}

onyx_status onyx_pool_create(int threads, onyx_pool **out)
{
    *out = NULL;
    if (threads <= 0)
        threads = online_cpus();
    if (threads > ONYX_POOL_MAX_THREADS)
        threads = ONYX_POOL_MAX_THREADS;
    onyx_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return ONYX_ERR_NOMEM;
    pool->threads = threads;
    atomic_init(&pool->fn, NULL);
    atomic_init(&pool->ctx, NULL);
    atomic_init(&pool->n_tasks, 0);
    atomic_init(&pool->ticket, TICKET_CLOSED);
    atomic_init(&pool->done, 0);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->caller_sleeps, false);
    atomic_init(&pool->stop, false);
    atomic_init(&pool->busy, false);
    if (pthread_mutex_init(&pool->mu, NULL) != 0)
        goto fail_free;
    if (pthread_cond_init(&pool->wake, NULL) != 0)
        goto fail_mutex;
    if (pthread_cond_init(&pool->done_cv, NULL) != 0)
        goto fail_wake;
    if (threads > 1) {
        pool->workers = calloc((size_t)threads - 1, sizeof(*pool->workers));
        if (pool->workers == NULL)
            goto fail_done;
        for (int i = 0; i < threads - 1; i++) {
            if (pthread_create(&pool->workers[i], NULL, worker_main, pool) != 0)
                goto fail_threads;
            pool->n_workers++;
        }
    }
    *out = pool;
    return ONYX_OK;

fail_threads:
    onyx_pool_destroy(pool); /* joins the workers already started and frees everything */
    return ONYX_ERR_NOMEM;
fail_done:
    pthread_cond_destroy(&pool->done_cv);
fail_wake:
    pthread_cond_destroy(&pool->wake);
fail_mutex:
    pthread_mutex_destroy(&pool->mu);
fail_free:
    free(pool);
    return ONYX_ERR_NOMEM;
}

void onyx_pool_destroy(onyx_pool *pool)
{
    if (pool == NULL)
        return;
    atomic_store(&pool->stop, true);
    pthread_mutex_lock(&pool->mu);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->n_workers; i++)
        pthread_join(pool->workers[i], NULL);
    free(pool->workers);
    pthread_cond_destroy(&pool->done_cv);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mu);
    free(pool->scratch);
    free(pool);
}

int onyx_pool_threads(const onyx_pool *pool)
{
    return pool == NULL ? 1 : pool->threads;
}

static void run_inline(int64_t n_tasks, onyx_pool_fn fn, void *ctx)
{
    for (int64_t t = 0; t < n_tasks; t++)
        fn(ctx, t);
}

void onyx_pool_run(onyx_pool *pool, int64_t n_tasks, onyx_pool_fn fn, void *ctx)
{
    if (pool == NULL || pool->n_workers == 0 || n_tasks <= 1 || n_tasks >= MAX_TASKS ||
        atomic_exchange(&pool->busy, true)) {
        run_inline(n_tasks, fn, ctx);
        return;
    }
    unsigned gen = atomic_load(&pool->generation) + 1;
    if (gen == 0)
        gen = 1; /* 0 is "no job" for a worker that has seen none */
    /* Close the ticket (no claims while the job changes), write the job, open it. */
    atomic_store(&pool->ticket, ((uint_fast64_t)gen << 32) | TICKET_CLOSED);
    atomic_store(&pool->fn, fn);
    atomic_store(&pool->ctx, ctx);
    atomic_store(&pool->n_tasks, n_tasks);
    atomic_store(&pool->done, 0);
    atomic_store(&pool->ticket, (uint_fast64_t)gen << 32);
    atomic_store(&pool->generation, gen);
    wake_workers(pool);

    run_tasks(pool, gen);

    /* Wait for the tasks other threads claimed: spin, then sleep. */
    for (int i = 0; atomic_load(&pool->done) < n_tasks && i < SPIN_POLLS; i++)
        CPU_RELAX();
    if (atomic_load(&pool->done) < n_tasks) {
        pthread_mutex_lock(&pool->mu);
        atomic_store(&pool->caller_sleeps, true);
        while (atomic_load(&pool->done) < n_tasks)
            pthread_cond_wait(&pool->done_cv, &pool->mu);
        atomic_store(&pool->caller_sleeps, false);
        pthread_mutex_unlock(&pool->mu);
    }
    atomic_store(&pool->busy, false);
}

void *onyx_pool_scratch(onyx_pool *pool, size_t bytes)
{
    if (pool == NULL)
        return NULL;
    if (bytes <= pool->scratch_size && pool->scratch != NULL)
        return pool->scratch;
    size_t size = (bytes + 63) & ~(size_t)63; /* aligned_alloc wants a multiple of 64 */
    if (size < bytes)
        return NULL;
    free(pool->scratch);
    pool->scratch = aligned_alloc(64, size == 0 ? 64 : size);
    pool->scratch_size = pool->scratch != NULL ? size : 0;
    return pool->scratch;
}

/* ---- large element-wise loops (pool.h) ---------------------------------------------------- */

typedef struct par_job {
    onyx_range_fn fn;
    void *ctx;
    int64_t n;
    int64_t chunk; /* units per task */
} par_job;

static void par_task(void *ctx, int64_t task)
{
    const par_job *j = ctx;
    int64_t lo = task * j->chunk;
    int64_t hi = j->n - lo < j->chunk ? j->n : lo + j->chunk;
    j->fn(j->ctx, lo, hi);
}

void onyx_parallel_for(onyx_pool *pool, int64_t n, int64_t unit_elems, onyx_range_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (unit_elems < 1)
        unit_elems = 1;
    int64_t chunk = ONYX_PAR_CHUNK / unit_elems;
    if (chunk < 1)
        chunk = 1;
    /* n * unit_elems is the element count of a tensor: far from overflowing */
    if (onyx_pool_threads(pool) <= 1 || n * unit_elems < ONYX_PAR_MIN || n <= chunk) {
        fn(ctx, 0, n);
        return;
    }
    par_job j = {fn, ctx, n, chunk};
    onyx_pool_run(pool, (n + chunk - 1) / chunk, par_task, &j);
}
