#ifndef JINDOU_SHM_H
#define JINDOU_SHM_H

#include <stddef.h>
#include <stdint.h>

/// Shared-memory rings for the same-host transport (docs/transports.md).
///
/// One POSIX shared-memory object holds a control page and two single-producer,
/// single-consumer byte rings: ring 0 carries coordinator → worker frames, ring 1 the
/// replies. Each ring has a head (bytes ever written, stored by the writer) and a tail
/// (bytes ever read, stored by the reader) on their own cache lines, and a futex word per
/// direction of waiting. A waiter spins for a bounded time, then sleeps on the futex; the
/// other side wakes it only when it says it sleeps, so a busy link makes no system calls.
///
/// Everything read from the mapping is untrusted (the peer is another process): indices
/// that do not describe a valid ring report corruption (-1 / JINDOU_SHM_CORRUPT) instead of
/// being followed, and every copy stays inside the ring. The bytes themselves are frames in
/// the TCP encoding, validated by the same decoder.

#define JINDOU_SHM_MAGIC 0x48534f55444e494aULL /* "JINDOUSH", little-endian */
#define JINDOU_SHM_LAYOUT_VERSION 1
/// Bytes before the first ring's data: the control block and both rings' indices.
#define JINDOU_SHM_HEADER_BYTES 4096
/// Waits report: data (or space) is there, the wait timed out, a side closed, or the
/// indices are impossible.
#define JINDOU_SHM_READY 1
#define JINDOU_SHM_TIMEOUT 0
#define JINDOU_SHM_CLOSED (-1)
#define JINDOU_SHM_CORRUPT (-2)

/// Creates the object `name` (O_EXCL, mode 0600) with two rings of `ring_bytes` each (a
/// multiple of 4096), maps it and initialises the control block. 0 or an errno.
int jindou_shm_create(const char *name, uint64_t ring_bytes, void **base, size_t *size);

/// Opens and maps an existing object, checking its magic, layout version and size.
/// 0, an errno, or EPROTO when the object does not hold Jindou rings.
int jindou_shm_open(const char *name, void **base, size_t *size, uint64_t *ring_bytes);

/// shm_unlink; 0 or an errno.
int jindou_shm_unlink(const char *name);
void jindou_shm_unmap(void *base, size_t size);

/// Bytes ready to read in `ring` (0 or 1), or -1 if its indices are corrupt.
int64_t jindou_shm_readable(void *base, uint64_t ring_bytes, int ring);

/// Copies up to `capacity` readable bytes out of `ring`, frees their space and wakes a
/// sleeping writer. The count copied, or -1 if the indices are corrupt.
int64_t jindou_shm_read(void *base, uint64_t ring_bytes, int ring, void *out, size_t capacity);

/// Copies as much of `bytes` as fits into `ring` without waiting, publishes it and wakes a
/// sleeping reader. The count copied (possibly 0), or -1 if the indices are corrupt.
int64_t jindou_shm_write(void *base, uint64_t ring_bytes, int ring, const void *bytes, size_t length);

/// Waits until `ring` has bytes to read (`for_space` 0) or free space (`for_space` 1):
/// spins for `spin_ns`, then sleeps on the futex for at most `timeout_ms`.
/// JINDOU_SHM_READY, _TIMEOUT, _CLOSED (either side closed the object) or _CORRUPT.
int jindou_shm_wait(void *base, uint64_t ring_bytes, int ring, int for_space, uint64_t spin_ns, int timeout_ms);

/// Marks `side` (0 coordinator, 1 worker) closed and wakes every waiter on both sides.
void jindou_shm_close(void *base, int side);

/// Whether either side has closed.
int jindou_shm_is_closed(void *base);

/// Test hook: stores raw index values into `ring` (fault injection only).
void jindou_shm_poke_indices(void *base, int ring, uint64_t head, uint64_t tail);

#endif
