#include "jindou_support.h"

// libdispatch's C entry point (linked into every Swift program on Linux through
// Foundation/Dispatch; part of libSystem on Darwin). A null queue is DISPATCH_APPLY_AUTO:
// the root queue of the calling thread's quality of service.
extern void dispatch_apply_f(size_t iterations, void *queue, void *context, void (*work)(void *context, size_t index));

void jindou_parallel_apply(size_t iterations, void *context, jindou_parallel_function function) {
    dispatch_apply_f(iterations, (void *)0, context, function);
}
