#include "jindou_support.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

// A fixed pool of kernel threads for `jindou_parallel_apply`. Every hand-off is a few
// stores under one mutex and a condition-variable broadcast: no allocation per call
// (libdispatch's `dispatch_apply_f` calloc'ed continuations whenever the calling
// thread's continuation cache had drained, which happens under contention).
//
// One job runs at a time. A caller that finds the pool busy (another thread's job, or a
// nested call from inside a job) runs its iterations itself, so nesting never deadlocks.

typedef struct {
    pthread_mutex_t submit;  // held by the thread whose job is in flight
    pthread_mutex_t lock;    // guards the fields below
    pthread_cond_t wake;     // workers wait here for a new generation
    pthread_cond_t done;     // the submitter waits here for `active` to reach 0
    unsigned long generation;
    void *context;
    jindou_parallel_function function;
    size_t iterations;
    int workers;
    int active;
    atomic_size_t next;
} kernel_pool;

static kernel_pool pool = {
    .submit = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int requested_workers;

static void run_iterations(void *context, jindou_parallel_function function, size_t iterations) {
    for (size_t i = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed); i < iterations;
         i = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed)) {
        function(context, i);
    }
}

static void *worker_main(void *unused) {
    (void)unused;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        void *context = pool.context;
        jindou_parallel_function function = pool.function;
        size_t iterations = pool.iterations;
        pthread_mutex_unlock(&pool.lock);

        run_iterations(context, function, iterations);

        pthread_mutex_lock(&pool.lock);
        if (--pool.active == 0) pthread_cond_signal(&pool.done);
        pthread_mutex_unlock(&pool.lock);
    }
    return NULL;
}

static void start_workers(void) {
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < requested_workers; i++) {
        pthread_t thread;
        if (pthread_create(&thread, &attributes, worker_main, NULL) != 0) break;  // fewer workers still work
        pool.workers++;
    }
    pthread_attr_destroy(&attributes);
}

void jindou_parallel_apply(size_t iterations, void *context, jindou_parallel_function function, int threads) {
    if (iterations == 0) return;
    if (threads > 1 && iterations > 1) {
        requested_workers = threads - 1;  // read once, by the first call's pthread_once
        pthread_once(&pool_once, start_workers);
    }
    if (threads <= 1 || iterations == 1 || pool.workers == 0 || pthread_mutex_trylock(&pool.submit) != 0) {
        for (size_t i = 0; i < iterations; i++) function(context, i);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    pool.context = context;
    pool.function = function;
    pool.iterations = iterations;
    atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
    pool.active = pool.workers;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    run_iterations(context, function, iterations);

    pthread_mutex_lock(&pool.lock);
    while (pool.active > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.submit);
}
