#ifndef JINDOU_ALLOCATION_COUNTER_H
#define JINDOU_ALLOCATION_COUNTER_H

/// Heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) made
/// by the calling thread since it started. The test executable defines these functions
/// (passing every call to glibc's implementation), so the count covers Swift's runtime and
/// every library; per-thread, so tests running concurrently on other threads do not count.
long jindou_test_allocations_on_this_thread(void);

#endif
