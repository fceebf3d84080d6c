// RDMA endpoints for Jindou's worker links (libibverbs + librdmacm): one reliable-connected
// queue pair, one completion queue with a completion channel, and one registered memory
// region holding the link's send and receive slots. Thin, allocation-free wrappers over
// the `static inline` data-path verbs (post send/receive, poll, arm). The buffer layout,
// credits and framing are decided in Swift (JindouTransport/RDMA*.swift).
#ifndef JINDOU_RDMA_H
#define JINDOU_RDMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What one side tells the other over the authenticated TCP connection to connect an RC pair.
typedef struct {
    uint8_t gid[16];
    uint32_t qp_num;   // 24 bits
    uint32_t psn;      // 24 bits
    uint16_t lid;      // 0 on RoCE
    uint8_t mtu;       // enum ibv_mtu: 1 (256 B) … 5 (4096 B)
    uint8_t port;
} jindou_rdma_address;

typedef struct {
    char name[64];
    uint8_t port;          // first active port, 0 if none
    uint8_t active_mtu;    // of that port (enum ibv_mtu)
    uint8_t link_layer;    // 1 InfiniBand, 2 Ethernet (RoCE)
    int gid_count;
} jindou_rdma_device;

typedef struct jindou_rdma_endpoint jindou_rdma_endpoint;

enum {
    JINDOU_RDMA_COMPLETION_SEND = 1,
    JINDOU_RDMA_COMPLETION_RECEIVE = 2,
};

typedef struct {
    uint64_t wr_id;
    int status;        // enum ibv_wc_status; 0 = success
    int kind;          // JINDOU_RDMA_COMPLETION_*
    uint32_t byte_len;
    uint32_t imm;      // immediate data (host order), valid when has_imm
    int has_imm;
} jindou_rdma_completion;

/// Lists RDMA devices (ibv_get_device_list); returns how many were found (may exceed
/// `capacity`), or -errno. Works, returning 0, on machines without any RDMA driver.
int jindou_rdma_list_devices(jindou_rdma_device *out, int capacity);

/// The device and port that own a local IP address (librdmacm's rdma_bind_addr), or -errno.
int jindou_rdma_device_for_address(const char *ip, char *name, size_t name_size, uint8_t *port);

/// Opens `device` (NULL: the first with an active port), allocates a protection domain, a
/// completion queue of `send_depth + receive_depth` entries with a completion channel, an
/// RC queue pair in INIT, and registers `buffer_bytes` of zeroed, page-aligned memory.
/// `gid_index` < 0 picks the RoCE v2 GID of `ip` when given, else index 0. Fills `local`.
/// Returns 0, or -1 with a message in `error`.
int jindou_rdma_open(const char *device, int port, int gid_index, const char *ip, size_t buffer_bytes,
                     uint32_t send_depth, uint32_t receive_depth, jindou_rdma_endpoint **out,
                     jindou_rdma_address *local, char *error, size_t error_size);

/// Moves the queue pair to RTR and RTS towards `remote`. 0, or -1 with `error`.
int jindou_rdma_connect(jindou_rdma_endpoint *endpoint, const jindou_rdma_address *remote, char *error,
                        size_t error_size);

void *jindou_rdma_buffer(jindou_rdma_endpoint *endpoint);

/// Posts a receive of `length` bytes at `offset` of the buffer. 0 or an errno.
int jindou_rdma_post_receive(jindou_rdma_endpoint *endpoint, uint64_t wr_id, size_t offset, uint32_t length);

/// Posts a signalled SEND with immediate `imm` of `length` bytes at `offset` (length 0:
/// immediate only). 0 or an errno.
int jindou_rdma_post_send(jindou_rdma_endpoint *endpoint, uint64_t wr_id, size_t offset, uint32_t length, uint32_t imm);

/// Up to `capacity` completions: polls for `spin_ns`, then arms the completion queue and
/// waits on its channel for up to `timeout_ms`. Returns how many (0 on timeout), or -errno.
int jindou_rdma_poll(jindou_rdma_endpoint *endpoint, jindou_rdma_completion *out, int capacity, uint64_t spin_ns,
                     int timeout_ms);

/// Moves the queue pair to ERROR: outstanding work completes with flush errors and a
/// waiting poll returns. Safe to call from any thread, more than once.
void jindou_rdma_shutdown(jindou_rdma_endpoint *endpoint);

/// Destroys the queue pair, deregisters and frees the memory, destroys the completion
/// queue, channel and protection domain, closes the device (in that order).
void jindou_rdma_close(jindou_rdma_endpoint *endpoint);

/// libibverbs' text for a work-completion status.
const char *jindou_rdma_status_string(int status);

#ifdef __cplusplus
}
#endif
#endif
