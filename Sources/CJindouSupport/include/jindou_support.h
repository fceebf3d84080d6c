#ifndef JINDOU_SUPPORT_H
#define JINDOU_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, as in iSCSI/ext4) of `length` bytes, continuing from `crc`
/// (pass 0 to start). Uses the SSE4.2 `crc32` instruction when the CPU has it
/// (checked once at run time), a slicing-by-8 table otherwise.
uint32_t jindou_crc32c(uint32_t crc, const void *data, size_t length);

/// Whether the hardware path is in use (for benchmarks and logs).
int jindou_crc32c_is_hardware(void);

/// Asks the CPU to bring the cache line holding `address` into L1 (`prefetcht0`); never
/// faults. For streaming kernels whose loop body is too long for the out-of-order window
/// to keep enough loads in flight. (Swift cannot call the `_mm_prefetch` macro.)
static inline __attribute__((always_inline)) void jindou_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

/// The kernel sets (`jindou_cpu_kernel_sets` bits): each is one kernel module, compiled for
/// a target whose every feature the bit's check verifies (cpu_features.c lists them).
#define JINDOU_KERNELS_AVX2 1        /* x86-64-v3: AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE */
#define JINDOU_KERNELS_AVXVNNI 2     /* x86-64-v3 + AVX-VNNI (256-bit vpdpbusd) */
#define JINDOU_KERNELS_AVX512 4      /* x86-64-v4: AVX-512 F/BW/CD/DQ/VL */
#define JINDOU_KERNELS_AVX512VNNI 8  /* x86-64-v4 + AVX512-VNNI, AVX512-VBMI, AVX512-BF16 */

/// The kernel sets the running CPU and operating system support (CPUID, and XGETBV for
/// the register state the OS saves), as JINDOU_KERNELS_* bits; 0 on other architectures.
/// Picks the kernel module at startup.
int jindou_cpu_kernel_sets(void);

/// 2 = the AVX-512 set runs, 1 = the AVX2 set, 0 = neither (`jindou_cpu_kernel_sets`, coarser).
int jindou_cpu_vector_level(void);

/// A function run for each index of a parallel loop, with the loop's context.
typedef void (*jindou_parallel_function)(void *context, size_t index);

/// Runs `function(context, i)` for every i in 0 ..< iterations on a fixed pool of
/// `threads - 1` kernel threads (started by the first call) and the calling thread,
/// returning when all have finished. Allocates nothing per call (Swift's
/// `concurrentPerform` boxes its closure and copies a block; libdispatch's
/// `dispatch_apply_f` allocates continuations whenever the caller's cache has drained).
/// One job at a time: a caller that finds the pool busy, or calls from inside a job, runs
/// its iterations itself.
void jindou_parallel_apply(size_t iterations, void *context, jindou_parallel_function function, int threads);

/// Number of scratch slots each thread has (see `jindou_thread_scratch`).
#define JINDOU_SCRATCH_SLOTS 11

/// A 64-byte-aligned buffer of at least `bytes` bytes owned by the calling thread, one per
/// `slot` (0 ..< JINDOU_SCRATCH_SLOTS). It grows (geometrically) when a call asks for more
/// and is otherwise reused, so steady-state kernels allocate nothing; its contents are
/// undefined on return. Valid until this thread asks for the same slot again; freed when
/// the thread exits. Aborts with a message if memory is exhausted.
void *jindou_thread_scratch(int slot, size_t bytes);

/// How many heap allocations `jindou_thread_scratch` has made on the calling thread (its
/// slot table and every growth): tests tell this amortised growth from per-call allocation.
long jindou_thread_scratch_allocations(void);

/// The same-host transport's rings.
#include "jindou_shm.h"

/// A memfd of `bytes` (sparse: pages cost nothing until written) for KV-cache rows; the file
/// descriptor, or −errno.
int jindou_kv_memfd(size_t bytes);

/// mmap of `bytes` of `fd` from `offset`, read-write, at `address` (MAP_FIXED, replacing
/// what was mapped there) or anywhere when NULL; MAP_PRIVATE (copy-on-write) when
/// `private_copy`, MAP_SHARED otherwise. NULL on failure.
void *jindou_kv_map(void *address, size_t bytes, int fd, size_t offset, int private_copy);

/// munmap; 0 or −errno.
int jindou_kv_unmap(void *address, size_t bytes);

/// The system page size.
size_t jindou_page_size(void);

#endif
