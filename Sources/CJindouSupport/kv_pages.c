// Memory for KV-cache rows that other caches can map: prefix caching shares a finished
// sequence's pages with later sequences instead of copying them (KVCache, mapped mode).
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "jindou_support.h"

int jindou_kv_memfd(size_t bytes) {
    int fd = memfd_create("jindou-kv", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    if (ftruncate(fd, (off_t)bytes) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

void *jindou_kv_map(void *address, size_t bytes, int fd, size_t offset, int private_copy) {
    int flags = (private_copy ? MAP_PRIVATE : MAP_SHARED) | MAP_NORESERVE | (address ? MAP_FIXED : 0);
    void *p = mmap(address, bytes, PROT_READ | PROT_WRITE, flags, fd, (off_t)offset);
    return p == MAP_FAILED ? NULL : p;
}

int jindou_kv_unmap(void *address, size_t bytes) {
    return munmap(address, bytes) == 0 ? 0 : -errno;
}

size_t jindou_page_size(void) {
    return (size_t)sysconf(_SC_PAGESIZE);
}
