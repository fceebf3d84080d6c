// Shared-memory rings of the same-host transport; see include/jindou_shm.h.
#define _GNU_SOURCE
#include "jindou_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

// Control block at offset 0.
#define OFFSET_MAGIC 0
#define OFFSET_VERSION 8
#define OFFSET_RING_BYTES 16
#define OFFSET_CLOSED 24 /* uint32 per side */
// Ring r's indices at RING_BASE + r * RING_STRIDE, each group on its own cache lines so
// the writer's and the reader's stores do not share a line.
#define RING_BASE 256
#define RING_STRIDE 1024
#define RING_HEAD 0            /* uint64: bytes ever written (writer stores) */
#define RING_DATA_SEQ 64       /* uint32 futex word: bumped after every write */
#define RING_DATA_SLEEPERS 68  /* uint32: readers asleep on DATA_SEQ */
#define RING_TAIL 128          /* uint64: bytes ever read (reader stores) */
#define RING_SPACE_SEQ 192     /* uint32 futex word: bumped after every read */
#define RING_SPACE_SLEEPERS 196

static inline uint64_t *u64_at(void *base, size_t offset) { return (uint64_t *)((char *)base + offset); }
static inline uint32_t *u32_at(void *base, size_t offset) { return (uint32_t *)((char *)base + offset); }
static inline size_t ring_field(int ring, size_t field) { return RING_BASE + (size_t)ring * RING_STRIDE + field; }
static inline char *ring_data(void *base, uint64_t ring_bytes, int ring) {
    return (char *)base + JINDOU_SHM_HEADER_BYTES + (size_t)ring * ring_bytes;
}

static void futex_wake_all(uint32_t *word) {
#if defined(__linux__)
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

static void futex_wait(uint32_t *word, uint32_t expected, int timeout_ms) {
#if defined(__linux__)
    struct timespec timeout = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    // EAGAIN (the word moved on), EINTR and ETIMEDOUT all mean: look again.
    syscall(SYS_futex, word, FUTEX_WAIT, expected, &timeout, NULL, 0);
#else
    (void)word; (void)expected;
    usleep((useconds_t)timeout_ms * 1000);
#endif
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

int jindou_shm_create(const char *name, uint64_t ring_bytes, void **base, size_t *size) {
    if (ring_bytes == 0 || ring_bytes % 4096 != 0 || ring_bytes > ((uint64_t)1 << 40)) return EINVAL;
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return errno;
    size_t total = JINDOU_SHM_HEADER_BYTES + 2 * (size_t)ring_bytes;
    if (ftruncate(fd, (off_t)total) != 0) {
        int error = errno;
        close(fd);
        shm_unlink(name);
        return error;
    }
    void *mapping = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int error = errno;
    close(fd);
    if (mapping == MAP_FAILED) {
        shm_unlink(name);
        return error;
    }
    memset(mapping, 0, JINDOU_SHM_HEADER_BYTES);
    *u64_at(mapping, OFFSET_RING_BYTES) = ring_bytes;
    *u32_at(mapping, OFFSET_VERSION) = JINDOU_SHM_LAYOUT_VERSION;
    // The magic last: an opener that sees it sees an initialised block.
    __atomic_store_n(u64_at(mapping, OFFSET_MAGIC), JINDOU_SHM_MAGIC, __ATOMIC_RELEASE);
    *base = mapping;
    *size = total;
    return 0;
}

int jindou_shm_open(const char *name, void **base, size_t *size, uint64_t *ring_bytes) {
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) return errno;
    struct stat info;
    if (fstat(fd, &info) != 0) {
        int error = errno;
        close(fd);
        return error;
    }
    size_t total = (size_t)info.st_size;
    if (info.st_size < JINDOU_SHM_HEADER_BYTES + 2 * 4096) {
        close(fd);
        return EPROTO;
    }
    void *mapping = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int error = errno;
    close(fd);
    if (mapping == MAP_FAILED) return error;
    uint64_t bytes = *u64_at(mapping, OFFSET_RING_BYTES);
    if (__atomic_load_n(u64_at(mapping, OFFSET_MAGIC), __ATOMIC_ACQUIRE) != JINDOU_SHM_MAGIC
        || *u32_at(mapping, OFFSET_VERSION) != JINDOU_SHM_LAYOUT_VERSION
        || bytes == 0 || bytes % 4096 != 0 || bytes > ((uint64_t)1 << 40)
        || total != JINDOU_SHM_HEADER_BYTES + 2 * (size_t)bytes) {
        munmap(mapping, total);
        return EPROTO;
    }
    *base = mapping;
    *size = total;
    *ring_bytes = bytes;
    return 0;
}

int jindou_shm_unlink(const char *name) { return shm_unlink(name) == 0 ? 0 : errno; }

void jindou_shm_unmap(void *base, size_t size) { munmap(base, size); }

/// Readable bytes of `ring`, -1 if head and tail cannot both be true.
static int64_t readable(void *base, uint64_t ring_bytes, int ring) {
    uint64_t head = __atomic_load_n(u64_at(base, ring_field(ring, RING_HEAD)), __ATOMIC_SEQ_CST);
    uint64_t tail = __atomic_load_n(u64_at(base, ring_field(ring, RING_TAIL)), __ATOMIC_SEQ_CST);
    if (head < tail || head - tail > ring_bytes) return -1;
    return (int64_t)(head - tail);
}

int64_t jindou_shm_readable(void *base, uint64_t ring_bytes, int ring) { return readable(base, ring_bytes, ring); }

int64_t jindou_shm_read(void *base, uint64_t ring_bytes, int ring, void *out, size_t capacity) {
    int64_t available = readable(base, ring_bytes, ring);
    if (available < 0) return -1;
    size_t count = (size_t)available < capacity ? (size_t)available : capacity;
    if (count == 0) return 0;
    uint64_t tail = __atomic_load_n(u64_at(base, ring_field(ring, RING_TAIL)), __ATOMIC_SEQ_CST);
    size_t start = (size_t)(tail % ring_bytes);
    size_t first = ring_bytes - start < count ? ring_bytes - start : count;
    const char *data = ring_data(base, ring_bytes, ring);
    memcpy(out, data + start, first);
    memcpy((char *)out + first, data, count - first);
    __atomic_store_n(u64_at(base, ring_field(ring, RING_TAIL)), tail + count, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(u32_at(base, ring_field(ring, RING_SPACE_SEQ)), 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(u32_at(base, ring_field(ring, RING_SPACE_SLEEPERS)), __ATOMIC_SEQ_CST) != 0) {
        futex_wake_all(u32_at(base, ring_field(ring, RING_SPACE_SEQ)));
    }
    return (int64_t)count;
}

int64_t jindou_shm_write(void *base, uint64_t ring_bytes, int ring, const void *bytes, size_t length) {
    int64_t used = readable(base, ring_bytes, ring);
    if (used < 0) return -1;
    size_t space = (size_t)(ring_bytes - (uint64_t)used);
    size_t count = length < space ? length : space;
    if (count == 0) return 0;
    uint64_t head = __atomic_load_n(u64_at(base, ring_field(ring, RING_HEAD)), __ATOMIC_SEQ_CST);
    size_t start = (size_t)(head % ring_bytes);
    size_t first = ring_bytes - start < count ? ring_bytes - start : count;
    char *data = ring_data(base, ring_bytes, ring);
    memcpy(data + start, bytes, first);
    memcpy(data, (const char *)bytes + first, count - first);
    __atomic_store_n(u64_at(base, ring_field(ring, RING_HEAD)), head + count, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(u32_at(base, ring_field(ring, RING_DATA_SEQ)), 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(u32_at(base, ring_field(ring, RING_DATA_SLEEPERS)), __ATOMIC_SEQ_CST) != 0) {
        futex_wake_all(u32_at(base, ring_field(ring, RING_DATA_SEQ)));
    }
    return (int64_t)count;
}

int jindou_shm_is_closed(void *base) {
    return __atomic_load_n(u32_at(base, OFFSET_CLOSED), __ATOMIC_SEQ_CST) != 0
        || __atomic_load_n(u32_at(base, OFFSET_CLOSED + 4), __ATOMIC_SEQ_CST) != 0;
}

/// READY when the awaited condition holds, CORRUPT on impossible indices, else 0.
static int condition(void *base, uint64_t ring_bytes, int ring, int for_space) {
    int64_t used = readable(base, ring_bytes, ring);
    if (used < 0) return JINDOU_SHM_CORRUPT;
    if (for_space ? (uint64_t)used < ring_bytes : used > 0) return JINDOU_SHM_READY;
    return 0;
}

int jindou_shm_wait(void *base, uint64_t ring_bytes, int ring, int for_space, uint64_t spin_ns, int timeout_ms) {
    int state = condition(base, ring_bytes, ring, for_space);
    if (state != 0) return state;
    if (spin_ns > 0) {
        uint64_t deadline = now_ns() + spin_ns;
        for (unsigned i = 1;; i++) {
            cpu_relax();
            if ((state = condition(base, ring_bytes, ring, for_space)) != 0) return state;
            if ((i & 63) == 0) {
                if (jindou_shm_is_closed(base)) return JINDOU_SHM_CLOSED;
                if (now_ns() >= deadline) break;
            }
        }
    }
    uint32_t *seq = u32_at(base, ring_field(ring, for_space ? RING_SPACE_SEQ : RING_DATA_SEQ));
    uint32_t *sleepers = u32_at(base, ring_field(ring, for_space ? RING_SPACE_SLEEPERS : RING_DATA_SLEEPERS));
    // Say we sleep before the last look: a writer that stores after that look sees us and
    // wakes us, and one that stored before it has moved the futex word, so FUTEX_WAIT
    // returns at once.
    __atomic_fetch_add(sleepers, 1, __ATOMIC_SEQ_CST);
    uint32_t expected = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
    state = condition(base, ring_bytes, ring, for_space);
    if (state == 0 && !jindou_shm_is_closed(base)) {
        futex_wait(seq, expected, timeout_ms);
        state = condition(base, ring_bytes, ring, for_space);
    }
    __atomic_fetch_sub(sleepers, 1, __ATOMIC_SEQ_CST);
    if (state != 0) return state;
    return jindou_shm_is_closed(base) ? JINDOU_SHM_CLOSED : JINDOU_SHM_TIMEOUT;
}

void jindou_shm_close(void *base, int side) {
    __atomic_store_n(u32_at(base, OFFSET_CLOSED + 4 * (side ? 1 : 0)), 1, __ATOMIC_SEQ_CST);
    for (int ring = 0; ring < 2; ring++) {
        uint32_t *words[2] = {u32_at(base, ring_field(ring, RING_DATA_SEQ)), u32_at(base, ring_field(ring, RING_SPACE_SEQ))};
        for (int i = 0; i < 2; i++) {
            __atomic_fetch_add(words[i], 1, __ATOMIC_SEQ_CST);
            futex_wake_all(words[i]);
        }
    }
}

void jindou_shm_poke_indices(void *base, int ring, uint64_t head, uint64_t tail) {
    __atomic_store_n(u64_at(base, ring_field(ring, RING_HEAD)), head, __ATOMIC_SEQ_CST);
    __atomic_store_n(u64_at(base, ring_field(ring, RING_TAIL)), tail, __ATOMIC_SEQ_CST);
}
