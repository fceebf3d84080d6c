// RDMA endpoints (see include/jindou_rdma.h). Every resource is created in open and freed
// in close; the data path (post, poll) allocates nothing and takes no locks: the Swift side
// serialises posting per queue and polls from one thread.
#define _GNU_SOURCE
#include "jindou_rdma.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct jindou_rdma_endpoint {
    struct ibv_context *context;
    struct ibv_pd *pd;
    struct ibv_comp_channel *channel;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    struct ibv_mr *mr;
    void *buffer;
    size_t buffer_bytes;
    uint8_t port;
    int gid_index;
    uint8_t mtu;
    int armed;
};

static int fail(char *error, size_t size, const char *format, ...) {
    if (error && size) {
        va_list args;
        va_start(args, format);
        vsnprintf(error, size, format, args);
        va_end(args);
    }
    return -1;
}

int jindou_rdma_list_devices(jindou_rdma_device *out, int capacity) {
    int count = 0;
    errno = 0;
    struct ibv_device **devices = ibv_get_device_list(&count);
    if (!devices) return errno == ENOSYS || errno == 0 ? 0 : -errno;
    for (int i = 0; i < count && i < capacity; i++) {
        jindou_rdma_device *d = &out[i];
        memset(d, 0, sizeof *d);
        snprintf(d->name, sizeof d->name, "%s", ibv_get_device_name(devices[i]));
        struct ibv_context *context = ibv_open_device(devices[i]);
        if (!context) continue;
        struct ibv_device_attr attributes;
        if (ibv_query_device(context, &attributes) == 0) {
            for (uint8_t port = 1; port <= attributes.phys_port_cnt; port++) {
                struct ibv_port_attr port_attributes;
                if (ibv_query_port(context, port, &port_attributes) != 0) continue;
                if (port_attributes.state == IBV_PORT_ACTIVE) {
                    d->port = port;
                    d->active_mtu = (uint8_t)port_attributes.active_mtu;
                    d->link_layer = port_attributes.link_layer;
                    d->gid_count = port_attributes.gid_tbl_len;
                    break;
                }
            }
        }
        ibv_close_device(context);
    }
    ibv_free_device_list(devices);
    return count;
}

int jindou_rdma_device_for_address(const char *ip, char *name, size_t name_size, uint8_t *port) {
    struct rdma_event_channel *events = rdma_create_event_channel();
    if (!events) return -errno;
    struct rdma_cm_id *id = NULL;
    int result = 0;
    if (rdma_create_id(events, &id, NULL, RDMA_PS_TCP) != 0) {
        result = -errno;
        rdma_destroy_event_channel(events);
        return result;
    }
    struct addrinfo hints = {0}, *address = NULL;
    hints.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(ip, NULL, &hints, &address) != 0 || !address) {
        result = -EINVAL;
    } else if (rdma_bind_addr(id, address->ai_addr) != 0) {
        result = -errno;
    } else if (!id->verbs) {
        result = -ENODEV;
    } else {
        snprintf(name, name_size, "%s", ibv_get_device_name(id->verbs->device));
        *port = id->port_num;
    }
    if (address) freeaddrinfo(address);
    rdma_destroy_id(id);
    rdma_destroy_event_channel(events);
    return result;
}

// The GID of `ip` as RoCE v2 stores it (an IPv4-mapped IPv6 address for IPv4), if the port has one.
static int gid_index_for(struct ibv_context *context, uint8_t port, int table_length, const char *ip) {
    uint8_t wanted[16] = {0};
    if (inet_pton(AF_INET, ip, wanted + 12) == 1) {
        wanted[10] = wanted[11] = 0xff;
    } else if (inet_pton(AF_INET6, ip, wanted) != 1) {
        return -1;
    }
    for (int index = 0; index < table_length; index++) {
        struct ibv_gid_entry entry;
        if (ibv_query_gid_ex(context, port, (uint32_t)index, &entry, 0) != 0) continue;
        if (entry.gid_type == IBV_GID_TYPE_ROCE_V2 && memcmp(entry.gid.raw, wanted, 16) == 0) return index;
    }
    return -1;
}

static uint32_t random_psn(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint32_t)(t.tv_nsec ^ (t.tv_sec << 10) ^ getpid()) & 0xFFFFFF;
}

int jindou_rdma_open(const char *device_name, int port, int gid_index, const char *ip, size_t buffer_bytes,
                     uint32_t send_depth, uint32_t receive_depth, jindou_rdma_endpoint **out,
                     jindou_rdma_address *local, char *error, size_t error_size) {
    *out = NULL;
    int count = 0;
    struct ibv_device **devices = ibv_get_device_list(&count);
    if (!devices || count == 0) {
        if (devices) ibv_free_device_list(devices);
        return fail(error, error_size, "no RDMA device (ibv_get_device_list found none)");
    }
    jindou_rdma_endpoint *e = calloc(1, sizeof *e);
    if (!e) {
        ibv_free_device_list(devices);
        return fail(error, error_size, "out of memory");
    }
    struct ibv_port_attr port_attributes;
    for (int i = 0; i < count && !e->context; i++) {
        if (device_name && strcmp(ibv_get_device_name(devices[i]), device_name) != 0) continue;
        struct ibv_context *context = ibv_open_device(devices[i]);
        if (!context) continue;
        struct ibv_device_attr attributes;
        int chosen = 0;
        if (ibv_query_device(context, &attributes) == 0) {
            for (int p = port > 0 ? port : 1; p <= (port > 0 ? port : attributes.phys_port_cnt); p++) {
                if (ibv_query_port(context, (uint8_t)p, &port_attributes) == 0 && port_attributes.state == IBV_PORT_ACTIVE) {
                    chosen = p;
                    break;
                }
            }
        }
        if (chosen) {
            e->context = context;
            e->port = (uint8_t)chosen;
        } else {
            ibv_close_device(context);
        }
    }
    ibv_free_device_list(devices);
    if (!e->context) {
        free(e);
        return device_name ? fail(error, error_size, "RDMA device %s not found or has no active port", device_name)
                           : fail(error, error_size, "no RDMA device has an active port");
    }
    e->mtu = (uint8_t)port_attributes.active_mtu;
    e->gid_index = gid_index >= 0 ? gid_index : (ip ? gid_index_for(e->context, e->port, port_attributes.gid_tbl_len, ip) : -1);
    if (e->gid_index < 0) e->gid_index = 0;

    const char *step = "ibv_alloc_pd";
    if (!(e->pd = ibv_alloc_pd(e->context))) goto failed;
    step = "ibv_create_comp_channel";
    if (!(e->channel = ibv_create_comp_channel(e->context))) goto failed;
    int flags = fcntl(e->channel->fd, F_GETFL);
    fcntl(e->channel->fd, F_SETFL, flags | O_NONBLOCK);
    step = "ibv_create_cq";
    if (!(e->cq = ibv_create_cq(e->context, (int)(send_depth + receive_depth), NULL, e->channel, 0))) goto failed;
    step = "mmap of the link's buffer";
    e->buffer_bytes = buffer_bytes;
    e->buffer = mmap(NULL, buffer_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (e->buffer == MAP_FAILED) {
        e->buffer = NULL;
        goto failed;
    }
    step = "ibv_reg_mr";
    if (!(e->mr = ibv_reg_mr(e->pd, e->buffer, buffer_bytes, IBV_ACCESS_LOCAL_WRITE))) goto failed;
    struct ibv_qp_init_attr init = {0};
    init.send_cq = e->cq;
    init.recv_cq = e->cq;
    init.qp_type = IBV_QPT_RC;
    init.cap.max_send_wr = send_depth;
    init.cap.max_recv_wr = receive_depth;
    init.cap.max_send_sge = 1;
    init.cap.max_recv_sge = 1;
    step = "ibv_create_qp";
    if (!(e->qp = ibv_create_qp(e->pd, &init))) goto failed;
    struct ibv_qp_attr attributes = {0};
    attributes.qp_state = IBV_QPS_INIT;
    attributes.pkey_index = 0;
    attributes.port_num = e->port;
    attributes.qp_access_flags = 0;
    step = "ibv_modify_qp to INIT";
    errno = ibv_modify_qp(e->qp, &attributes, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (errno) goto failed;
    union ibv_gid gid;
    step = "ibv_query_gid";
    if (ibv_query_gid(e->context, e->port, e->gid_index, &gid) != 0) goto failed;
    memcpy(local->gid, gid.raw, 16);
    local->qp_num = e->qp->qp_num;
    local->psn = random_psn();
    local->lid = port_attributes.lid;
    local->mtu = e->mtu;
    local->port = e->port;
    *out = e;
    return 0;

failed:;
    int code = errno;
    fail(error, error_size, "%s on %s failed: %s", step, ibv_get_device_name(e->context->device), strerror(code ? code : EIO));
    jindou_rdma_close(e);
    return -1;
}

int jindou_rdma_connect(jindou_rdma_endpoint *e, const jindou_rdma_address *remote, char *error, size_t error_size) {
    struct ibv_qp_attr attributes = {0};
    attributes.qp_state = IBV_QPS_RTR;
    attributes.path_mtu = (enum ibv_mtu)(remote->mtu < e->mtu ? remote->mtu : e->mtu);
    attributes.dest_qp_num = remote->qp_num;
    attributes.rq_psn = remote->psn;
    attributes.max_dest_rd_atomic = 1;
    attributes.min_rnr_timer = 12;  // 0.64 ms
    attributes.ah_attr.port_num = e->port;
    attributes.ah_attr.dlid = remote->lid;
    attributes.ah_attr.is_global = 1;
    memcpy(attributes.ah_attr.grh.dgid.raw, remote->gid, 16);
    attributes.ah_attr.grh.sgid_index = (uint8_t)e->gid_index;
    attributes.ah_attr.grh.hop_limit = 64;
    int code = ibv_modify_qp(e->qp, &attributes,
                             IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                 IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (code) return fail(error, error_size, "ibv_modify_qp to RTR failed: %s", strerror(code));
    memset(&attributes, 0, sizeof attributes);
    attributes.qp_state = IBV_QPS_RTS;
    attributes.timeout = 14;   // 4.096 µs × 2^14 ≈ 67 ms per retry
    attributes.retry_cnt = 7;
    attributes.rnr_retry = 7;  // a receiver without a posted buffer is waited for (credits make it rare)
    attributes.sq_psn = 0;
    attributes.max_rd_atomic = 1;
    code = ibv_modify_qp(e->qp, &attributes,
                         IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                             IBV_QP_MAX_QP_RD_ATOMIC);
    if (code) return fail(error, error_size, "ibv_modify_qp to RTS failed: %s", strerror(code));
    return 0;
}

void *jindou_rdma_buffer(jindou_rdma_endpoint *e) { return e->buffer; }

int jindou_rdma_post_receive(jindou_rdma_endpoint *e, uint64_t wr_id, size_t offset, uint32_t length) {
    struct ibv_sge sge = {(uintptr_t)e->buffer + offset, length, e->mr->lkey};
    struct ibv_recv_wr wr = {0}, *bad = NULL;
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    return ibv_post_recv(e->qp, &wr, &bad);
}

int jindou_rdma_post_send(jindou_rdma_endpoint *e, uint64_t wr_id, size_t offset, uint32_t length, uint32_t imm) {
    struct ibv_sge sge = {(uintptr_t)e->buffer + offset, length, e->mr->lkey};
    struct ibv_send_wr wr = {0}, *bad = NULL;
    wr.wr_id = wr_id;
    wr.sg_list = length ? &sge : NULL;
    wr.num_sge = length ? 1 : 0;
    wr.opcode = IBV_WR_SEND_WITH_IMM;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = htonl(imm);
    return ibv_post_send(e->qp, &wr, &bad);
}

static uint64_t monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int drain(jindou_rdma_endpoint *e, jindou_rdma_completion *out, int capacity) {
    struct ibv_wc wc[16];
    int total = 0;
    while (total < capacity) {
        int want = capacity - total < 16 ? capacity - total : 16;
        int n = ibv_poll_cq(e->cq, want, wc);
        if (n < 0) return total ? total : -EIO;
        for (int i = 0; i < n; i++) {
            jindou_rdma_completion *c = &out[total++];
            c->wr_id = wc[i].wr_id;
            c->status = wc[i].status;
            c->kind = (wc[i].opcode & IBV_WC_RECV) ? JINDOU_RDMA_COMPLETION_RECEIVE : JINDOU_RDMA_COMPLETION_SEND;
            c->byte_len = wc[i].byte_len;
            c->has_imm = (wc[i].wc_flags & IBV_WC_WITH_IMM) != 0;
            c->imm = c->has_imm ? ntohl(wc[i].imm_data) : 0;
        }
        if (n < want) break;
    }
    return total;
}

int jindou_rdma_poll(jindou_rdma_endpoint *e, jindou_rdma_completion *out, int capacity, uint64_t spin_ns, int timeout_ms) {
    uint64_t start = monotonic_ns();
    do {
        int n = drain(e, out, capacity);
        if (n != 0) return n;
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    } while (monotonic_ns() - start < spin_ns);
    // Arm, then look once more (a completion between the last poll and the arming would
    // raise no event), then sleep on the channel.
    if (ibv_req_notify_cq(e->cq, 0) != 0) return -EIO;
    int n = drain(e, out, capacity);
    if (n != 0) return n;
    struct pollfd descriptor = {e->channel->fd, POLLIN, 0};
    int ready = poll(&descriptor, 1, timeout_ms);
    if (ready < 0) return errno == EINTR ? 0 : -errno;
    if (ready == 0) return 0;
    struct ibv_cq *cq;
    void *context;
    if (ibv_get_cq_event(e->channel, &cq, &context) == 0) ibv_ack_cq_events(cq, 1);
    return drain(e, out, capacity);
}

void jindou_rdma_shutdown(jindou_rdma_endpoint *e) {
    if (!e || !e->qp) return;
    struct ibv_qp_attr attributes = {0};
    attributes.qp_state = IBV_QPS_ERR;
    ibv_modify_qp(e->qp, &attributes, IBV_QP_STATE);
}

void jindou_rdma_close(jindou_rdma_endpoint *e) {
    if (!e) return;
    if (e->qp) ibv_destroy_qp(e->qp);
    if (e->mr) ibv_dereg_mr(e->mr);
    if (e->buffer) munmap(e->buffer, e->buffer_bytes);
    if (e->cq) ibv_destroy_cq(e->cq);
    if (e->channel) ibv_destroy_comp_channel(e->channel);
    if (e->pd) ibv_dealloc_pd(e->pd);
    if (e->context) ibv_close_device(e->context);
    free(e);
}

const char *jindou_rdma_status_string(int status) { return ibv_wc_status_str((enum ibv_wc_status)status); }
