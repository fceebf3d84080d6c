#include "jindou_support.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    void *pointer;
    size_t bytes;
} scratch_slot;

static pthread_key_t scratch_key;
static __thread long scratch_allocations;

long jindou_thread_scratch_allocations(void) { return scratch_allocations; }
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void release_slots(void *value) {
    scratch_slot *slots = value;
    for (int i = 0; i < JINDOU_SCRATCH_SLOTS; i++) free(slots[i].pointer);
    free(slots);
}

static void make_key(void) {
    if (pthread_key_create(&scratch_key, release_slots) != 0) {
        fputs("jindou: cannot create the thread scratch key\n", stderr);
        abort();
    }
}

// The slot array hangs off a pthread key (not _Thread_local) so the key's destructor frees
// the buffers of every thread that used them, including Dispatch and Swift concurrency
// workers when their pools shrink.
void *jindou_thread_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= JINDOU_SCRATCH_SLOTS) {
        fprintf(stderr, "jindou: thread scratch slot %d out of range\n", slot);
        abort();
    }
    pthread_once(&scratch_once, make_key);
    scratch_slot *slots = pthread_getspecific(scratch_key);
    if (slots == NULL) {
        slots = calloc(JINDOU_SCRATCH_SLOTS, sizeof(scratch_slot));
        scratch_allocations++;
        if (slots == NULL || pthread_setspecific(scratch_key, slots) != 0) {
            fputs("jindou: out of memory for thread scratch\n", stderr);
            abort();
        }
    }
    scratch_slot *s = &slots[slot];
    if (s->bytes < bytes) {
        size_t size = s->bytes * 2;
        if (size < bytes) size = bytes;
        if (size < 4096) size = 4096;
        size = (size + 63) & ~(size_t)63;
        free(s->pointer);
        s->pointer = NULL;
        s->bytes = 0;
        scratch_allocations++;
        if (posix_memalign(&s->pointer, 64, size) != 0) {
            fprintf(stderr, "jindou: out of memory: %zu bytes of thread scratch\n", size);
            abort();
        }
        s->bytes = size;
    }
    return s->pointer;
}
