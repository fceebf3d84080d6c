// jindou-probe: a second implementation of Jindou's coordinator ↔ worker wire protocol,
// in C on libprotobuf-c (the header code is generated from proto/ by protoc-c), sharing
// no code with the Swift implementation. It connects to a live worker, performs the
// HMAC handshake, pings, sends the dispatches of a case file, checks each combine against
// the value the case file expects (written by `jindouctl wire-case`, computed by Jindou's
// expert code), checks one error rule and prints round-trip timings.
//
// Build: tools/probe/build.sh (cc with libprotobuf-c and libcrypto from pkg-config).
//
// Exit status: 0 all checks passed, 1 a check failed, 2 usage, connection or input error.
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "jindou/v1/wire.pb-c.h"

enum { PROTOCOL_VERSION = 1, MAX_HEADER_BYTES = 16 << 20 };
static const uint64_t MAX_PAYLOAD_BYTES = 1ull << 30;

typedef Jindou__V1__FrameHeader Header;

// ---- small utilities ---------------------------------------------------------------

static int json_output = 0;

static void fail_usage(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("jindou-probe: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(2);
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *checked_malloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) fail_usage("out of memory (%zu bytes)", bytes);
    return p;
}

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: deliberately not the
// Swift side's table/SSE4.2 code.
static uint32_t crc32c(const uint8_t *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

static void put_u32le(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double min, p50, p99, mean;
} Timings;

static Timings summarize(double *seconds, int n) {
    Timings t = {0, 0, 0, 0};
    if (n == 0) return t;
    qsort(seconds, (size_t)n, sizeof *seconds, compare_doubles);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += seconds[i];
    t.min = seconds[0];
    t.p50 = seconds[n / 2];
    t.p99 = seconds[(int)((n - 1) * 0.99)];
    t.mean = sum / n;
    return t;
}

// ---- HMAC handshake tags -----------------------------------------------------------

// HMAC-SHA256(secret, for each part: u32 LE length ‖ bytes), as docs/wire.md states.
static void tag(const char *secret, const uint8_t *const *parts, const size_t *lengths, int count, uint8_t out[32]) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += 4 + lengths[i];
    uint8_t *message = checked_malloc(total), *p = message;
    for (int i = 0; i < count; i++) {
        put_u32le(p, (uint32_t)lengths[i]);
        memcpy(p + 4, parts[i], lengths[i]);
        p += 4 + lengths[i];
    }
    unsigned int length = 32;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), message, total, out, &length) || length != 32)
        fail_usage("HMAC-SHA256 failed");
    free(message);
}

static void handshake_tag(const char *secret, const char *label, const uint8_t *nonce, size_t nonce_length,
                          const char *fingerprint, const char *name, uint8_t out[32]) {
    const uint8_t *parts[4] = {(const uint8_t *)label, nonce, (const uint8_t *)fingerprint, (const uint8_t *)name};
    size_t lengths[4] = {strlen(label), nonce_length, strlen(fingerprint), strlen(name)};
    tag(secret, parts, lengths, 4, out);
}

// Reads a token file: the secret is the file's text without surrounding whitespace.
static char *read_secret(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_usage("cannot read the cluster secret file %s: %s", path, strerror(errno));
    char buffer[4096];
    size_t n = fread(buffer, 1, sizeof buffer - 1, f);
    fclose(f);
    buffer[n] = 0;
    char *start = buffer, *end = buffer + n;
    while (start < end && (*start == ' ' || *start == '\n' || *start == '\r' || *start == '\t')) start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\r' || end[-1] == '\t')) end--;
    *end = 0;
    if (strlen(start) < 16) fail_usage("the cluster secret in %s is shorter than 16 characters", path);
    return strdup(start);
}

// ---- frames on a socket ------------------------------------------------------------

typedef struct {
    int fd;
    uint64_t next_request_id;
} Connection;

typedef struct {
    Header *header;    // unpacked; free with free_frame
    uint8_t *payload;  // header->payload_length bytes
} Frame;

static void free_frame(Frame *frame) {
    if (frame->header) jindou__v1__frame_header__free_unpacked(frame->header, NULL);
    free(frame->payload);
    frame->header = NULL;
    frame->payload = NULL;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t written = send(fd, p, n, MSG_NOSIGNAL);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) return -1;
        p += written;
        n -= (size_t)written;
    }
    return 0;
}

static int read_all(int fd, uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t got = recv(fd, p, n, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

// Sends header (protocol version and checksum filled in here unless `corrupt_crc`) + payload.
static int send_frame(Connection *c, Header *header, const uint8_t *payload, size_t payload_length, int corrupt_crc) {
    header->protocol_version = PROTOCOL_VERSION;
    header->payload_length = payload_length;
    header->payload_crc32c = crc32c(payload, payload_length) ^ (corrupt_crc ? 0x5A5A5A5Au : 0);
    size_t header_length = jindou__v1__frame_header__get_packed_size(header);
    uint8_t *bytes = checked_malloc(4 + header_length + payload_length);
    put_u32le(bytes, (uint32_t)header_length);
    jindou__v1__frame_header__pack(header, bytes + 4);
    if (payload_length) memcpy(bytes + 4 + header_length, payload, payload_length);
    int result = write_all(c->fd, bytes, 4 + header_length + payload_length);
    free(bytes);
    return result;
}

// Receives one frame, validating what docs/wire.md says a receiver validates: header
// length, header decoding, protocol version, payload length limit and checksum.
// Returns 0, or -1 with `why` set.
static int receive_frame(Connection *c, Frame *frame, const char **why) {
    frame->header = NULL;
    frame->payload = NULL;
    uint8_t prefix[4];
    if (read_all(c->fd, prefix, 4) < 0) return *why = "connection closed or timed out", -1;
    uint32_t header_length = get_u32le(prefix);
    if (header_length == 0 || header_length > MAX_HEADER_BYTES) return *why = "header length out of range", -1;
    uint8_t *bytes = checked_malloc(header_length);
    if (read_all(c->fd, bytes, header_length) < 0) return free(bytes), *why = "connection closed inside a header", -1;
    frame->header = jindou__v1__frame_header__unpack(NULL, header_length, bytes);
    free(bytes);
    if (!frame->header) return *why = "header is not a jindou.v1.FrameHeader", -1;
    if (frame->header->protocol_version != PROTOCOL_VERSION) return *why = "protocol version is not 1", -1;
    if (frame->header->payload_length > MAX_PAYLOAD_BYTES) return *why = "payload too large", -1;
    size_t n = (size_t)frame->header->payload_length;
    frame->payload = checked_malloc(n);
    if (read_all(c->fd, frame->payload, n) < 0) return *why = "connection closed inside a payload", -1;
    if (crc32c(frame->payload, n) != frame->header->payload_crc32c) return *why = "payload checksum mismatch", -1;
    return 0;
}

static const char *kind_name(int kind) {
    const ProtobufCEnumValue *value = protobuf_c_enum_descriptor_get_value(&jindou__v1__message_kind__descriptor, kind);
    return value ? value->name : "?";
}

static const char *error_code_name(int code) {
    const ProtobufCEnumValue *value = protobuf_c_enum_descriptor_get_value(&jindou__v1__error_code__descriptor, code);
    return value ? value->name : "?";
}

static int connect_to(const char *endpoint, double timeout_seconds) {
    char host[256];
    const char *text = strncmp(endpoint, "tcp://", 6) == 0 ? endpoint + 6 : endpoint;
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= sizeof host) fail_usage("--connect wants HOST:PORT, got %s", endpoint);
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    struct addrinfo hints = {0}, *addresses;
    hints.ai_socktype = SOCK_STREAM;
    int status = getaddrinfo(host, colon + 1, &hints, &addresses);
    if (status != 0) fail_usage("cannot resolve %s: %s", endpoint, gai_strerror(status));
    int fd = -1;
    for (struct addrinfo *a = addresses; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(addresses);
    if (fd < 0) fail_usage("cannot connect to %s: %s", endpoint, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval timeout = {(time_t)timeout_seconds, (suseconds_t)((timeout_seconds - (time_t)timeout_seconds) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    return fd;
}

// ---- the case file -----------------------------------------------------------------
//
//   jindou-probe-case 1
//   fingerprint HEX
//   dispatch LAYER TOKENS HIDDEN           (then, per token:)
//   route N EXPERT WEIGHT … (N pairs)
//   hidden  TOKENS×HIDDEN floats
//   expected TOKENS×HIDDEN floats
//   … more dispatch blocks …

typedef struct {
    uint32_t layer, tokens, hidden;
    uint32_t *offsets;  // tokens + 1
    uint32_t *experts;
    float *weights;
    float *values;    // tokens × hidden
    float *expected;  // tokens × hidden
} Dispatch;

typedef struct {
    char fingerprint[256];
    Dispatch *dispatches;
    int count;
} Case;

static FILE *case_file;
static const char *case_path;

static void expect_word(const char *word) {
    char got[64];
    if (fscanf(case_file, "%63s", got) != 1 || strcmp(got, word) != 0)
        fail_usage("%s: expected \"%s\", found \"%s\"", case_path, word, feof(case_file) ? "end of file" : got);
}

static uint32_t read_u32(const char *what) {
    unsigned long value;
    if (fscanf(case_file, "%lu", &value) != 1 || value > UINT32_MAX) fail_usage("%s: bad %s", case_path, what);
    return (uint32_t)value;
}

static float read_float(const char *what) {
    char word[64];
    if (fscanf(case_file, "%63s", word) != 1) fail_usage("%s: missing %s value", case_path, what);
    char *end;
    float value = strtof(word, &end);
    if (*end != 0) fail_usage("%s: bad %s value \"%s\"", case_path, what, word);
    return value;
}

static Case read_case(const char *path) {
    Case c = {0};
    case_path = path;
    case_file = fopen(path, "r");
    if (!case_file) fail_usage("cannot open the case file %s: %s", path, strerror(errno));
    expect_word("jindou-probe-case");
    if (read_u32("format version") != 1) fail_usage("%s: unknown case format version", path);
    expect_word("fingerprint");
    if (fscanf(case_file, "%255s", c.fingerprint) != 1) fail_usage("%s: missing fingerprint", path);
    char word[64];
    while (fscanf(case_file, "%63s", word) == 1) {
        if (strcmp(word, "dispatch") != 0) fail_usage("%s: expected \"dispatch\", found \"%s\"", path, word);
        Dispatch d = {0};
        d.layer = read_u32("layer");
        d.tokens = read_u32("token count");
        d.hidden = read_u32("hidden size");
        if (d.tokens == 0 || d.hidden == 0 || (uint64_t)d.tokens * d.hidden > (1u << 26)) fail_usage("%s: bad dispatch shape", path);
        size_t capacity = 16, used = 0;
        d.offsets = checked_malloc((d.tokens + 1) * sizeof *d.offsets);
        d.experts = checked_malloc(capacity * sizeof *d.experts);
        d.weights = checked_malloc(capacity * sizeof *d.weights);
        d.offsets[0] = 0;
        for (uint32_t t = 0; t < d.tokens; t++) {
            expect_word("route");
            uint32_t n = read_u32("route length");
            for (uint32_t k = 0; k < n; k++) {
                if (used == capacity) {
                    capacity *= 2;
                    d.experts = realloc(d.experts, capacity * sizeof *d.experts);
                    d.weights = realloc(d.weights, capacity * sizeof *d.weights);
                    if (!d.experts || !d.weights) fail_usage("out of memory");
                }
                d.experts[used] = read_u32("expert");
                d.weights[used] = read_float("weight");
                used++;
            }
            d.offsets[t + 1] = (uint32_t)used;
        }
        size_t values = (size_t)d.tokens * d.hidden;
        d.values = checked_malloc(values * sizeof(float));
        d.expected = checked_malloc(values * sizeof(float));
        expect_word("hidden");
        for (size_t i = 0; i < values; i++) d.values[i] = read_float("hidden");
        expect_word("expected");
        for (size_t i = 0; i < values; i++) d.expected[i] = read_float("expected");
        c.dispatches = realloc(c.dispatches, (size_t)(c.count + 1) * sizeof *c.dispatches);
        if (!c.dispatches) fail_usage("out of memory");
        c.dispatches[c.count++] = d;
    }
    fclose(case_file);
    if (c.count == 0) fail_usage("%s: no dispatch blocks", path);
    return c;
}

// ---- protocol steps ----------------------------------------------------------------

static int checks_failed = 0;

static void check(int ok, const char *format, ...) {
    if (ok) return;
    checks_failed++;
    va_list args;
    va_start(args, format);
    fputs("FAIL: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
}

static void say(const char *format, ...) {
    if (json_output) return;
    va_list args;
    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    fflush(stdout);
}

// HELLO → WELCOME. Returns 0 when the worker welcomed us (and, with a secret, proved it
// holds the same secret).
static int handshake(Connection *c, const char *fingerprint, const char *name, const char *secret,
                     char *worker_name, size_t worker_name_size, size_t *expert_count) {
    uint8_t nonce[16], hello_tag[32];
    if (getrandom(nonce, sizeof nonce, 0) != sizeof nonce) fail_usage("getrandom failed");
    Jindou__V1__Hello hello = JINDOU__V1__HELLO__INIT;
    hello.protocol_version = PROTOCOL_VERSION;
    hello.model_fingerprint = (char *)fingerprint;
    hello.coordinator_name = (char *)name;
    hello.nonce.data = nonce;
    hello.nonce.len = sizeof nonce;
    if (secret) {
        handshake_tag(secret, "jindou-hello", nonce, sizeof nonce, fingerprint, name, hello_tag);
        hello.auth_tag.data = hello_tag;
        hello.auth_tag.len = sizeof hello_tag;
    }
    Header header = JINDOU__V1__FRAME_HEADER__INIT;
    header.kind = JINDOU__V1__MESSAGE_KIND__HELLO;
    header.request_id = c->next_request_id++;
    header.body_case = JINDOU__V1__FRAME_HEADER__BODY_HELLO;
    header.hello = &hello;
    if (send_frame(c, &header, NULL, 0, 0) < 0) fail_usage("sending HELLO failed: %s", strerror(errno));
    Frame reply;
    const char *why;
    if (receive_frame(c, &reply, &why) < 0) fail_usage("no WELCOME: %s", why);
    if (reply.header->kind == JINDOU__V1__MESSAGE_KIND__ERROR && reply.header->body_case == JINDOU__V1__FRAME_HEADER__BODY_ERROR) {
        fprintf(stderr, "jindou-probe: handshake refused: %s: %s\n", error_code_name(reply.header->error->code),
                reply.header->error->message);
        free_frame(&reply);
        return -1;
    }
    check(reply.header->kind == JINDOU__V1__MESSAGE_KIND__WELCOME && reply.header->body_case == JINDOU__V1__FRAME_HEADER__BODY_WELCOME,
          "answer to HELLO is %s, not WELCOME", kind_name(reply.header->kind));
    if (reply.header->body_case != JINDOU__V1__FRAME_HEADER__BODY_WELCOME) return free_frame(&reply), -1;
    Jindou__V1__Welcome *welcome = reply.header->welcome;
    check(welcome->protocol_version == PROTOCOL_VERSION, "WELCOME protocol version %u", welcome->protocol_version);
    check(strcmp(welcome->model_fingerprint, fingerprint) == 0, "WELCOME fingerprint %s differs from ours", welcome->model_fingerprint);
    if (secret) {
        uint8_t expected[32];
        handshake_tag(secret, "jindou-welcome", nonce, sizeof nonce, welcome->model_fingerprint, welcome->worker_name, expected);
        check(welcome->auth_tag.len == 32 && memcmp(welcome->auth_tag.data, expected, 32) == 0,
              "WELCOME is not signed with the cluster secret");
    }
    snprintf(worker_name, worker_name_size, "%s", welcome->worker_name);
    *expert_count = welcome->n_experts;
    free_frame(&reply);
    return 0;
}

// PING with a payload; the PONG must echo it. Returns the round trip in seconds, or -1.
static double ping(Connection *c, const uint8_t *payload, size_t length) {
    Header header = JINDOU__V1__FRAME_HEADER__INIT;
    header.kind = JINDOU__V1__MESSAGE_KIND__PING;
    header.request_id = c->next_request_id++;
    double start = now_seconds();
    if (send_frame(c, &header, payload, length, 0) < 0) return -1;
    Frame reply;
    const char *why;
    if (receive_frame(c, &reply, &why) < 0) {
        check(0, "no PONG: %s", why);
        return -1;
    }
    double elapsed = now_seconds() - start;
    int ok = reply.header->kind == JINDOU__V1__MESSAGE_KIND__PONG && reply.header->request_id == header.request_id &&
             reply.header->payload_length == length && memcmp(reply.payload, payload, length) == 0;
    check(ok, "PING %llu answered by %s %llu that does not echo its payload", (unsigned long long)header.request_id,
          kind_name(reply.header->kind), (unsigned long long)reply.header->request_id);
    free_frame(&reply);
    return ok ? elapsed : -1;
}

static void dispatch_header(Header *header, Jindou__V1__DispatchRouting *routing, const Dispatch *d, uint64_t id) {
    jindou__v1__dispatch_routing__init(routing);
    routing->n_offsets = d->tokens + 1;
    routing->offsets = d->offsets;
    routing->n_experts = d->offsets[d->tokens];
    routing->experts = d->experts;
    routing->n_weights = d->offsets[d->tokens];
    routing->weights = d->weights;
    jindou__v1__frame_header__init(header);
    header->kind = JINDOU__V1__MESSAGE_KIND__DISPATCH;
    header->request_id = id;
    header->layer = d->layer;
    header->placement_version = 1;
    header->token_count = d->tokens;
    header->hidden_size = d->hidden;
    header->dtype = JINDOU__V1__TENSOR_DTYPE__F32;
    header->body_case = JINDOU__V1__FRAME_HEADER__BODY_ROUTING;
    header->routing = routing;
}

// F32 little-endian payload (this probe runs on little-endian hosts; checked in main).
static const uint8_t *f32_payload(const float *values) { return (const uint8_t *)values; }

// One dispatch → combine, checked field by field and value by value. Returns the round
// trip in seconds, or -1; *max_difference gets max |combine − expected|.
static double exchange(Connection *c, const Dispatch *d, double tolerance, double *max_difference, int verbose) {
    Jindou__V1__DispatchRouting routing;
    Header header;
    dispatch_header(&header, &routing, d, c->next_request_id++);
    size_t values = (size_t)d->tokens * d->hidden;
    double start = now_seconds();
    if (send_frame(c, &header, f32_payload(d->values), values * sizeof(float), 0) < 0) return check(0, "sending DISPATCH failed"), -1;
    Frame reply;
    const char *why;
    if (receive_frame(c, &reply, &why) < 0) return check(0, "no COMBINE for layer %u: %s", d->layer, why), -1;
    double elapsed = now_seconds() - start;
    Header *h = reply.header;
    if (h->kind == JINDOU__V1__MESSAGE_KIND__ERROR && h->body_case == JINDOU__V1__FRAME_HEADER__BODY_ERROR) {
        check(0, "DISPATCH layer %u answered by ERROR %s: %s", d->layer, error_code_name(h->error->code), h->error->message);
        free_frame(&reply);
        return -1;
    }
    int shape = h->kind == JINDOU__V1__MESSAGE_KIND__COMBINE && h->request_id == header.request_id && h->layer == d->layer &&
                h->token_count == d->tokens && h->hidden_size == d->hidden && h->dtype == JINDOU__V1__TENSOR_DTYPE__F32 &&
                h->payload_length == values * sizeof(float);
    check(shape, "answer to DISPATCH %llu is %s %llu layer %u, %u × %u, dtype %d, %llu bytes",
          (unsigned long long)header.request_id, kind_name(h->kind), (unsigned long long)h->request_id, h->layer,
          h->token_count, h->hidden_size, h->dtype, (unsigned long long)h->payload_length);
    double worst = shape ? 0 : INFINITY;
    if (shape) {
        for (size_t i = 0; i < values; i++) {
            float got;
            memcpy(&got, reply.payload + 4 * i, 4);
            double difference = fabs((double)got - (double)d->expected[i]);
            if (!(difference <= worst)) worst = difference;  // NaN counts as worst
        }
        check(worst <= tolerance, "layer %u combine differs from the expected values by %g (tolerance %g)", d->layer, worst,
              tolerance);
    }
    if (verbose)
        say("dispatch layer %u: %u tokens, %zu routed pairs, combine max |diff| %.3g, worker compute %.3f ms\n", d->layer,
            d->tokens, (size_t)d->offsets[d->tokens], worst, (double)h->compute_nanoseconds * 1e-6);
    *max_difference = worst;
    free_frame(&reply);
    return shape && worst <= tolerance ? elapsed : -1;
}

// A dispatch whose checksum is wrong must be answered by ERROR CHECKSUM_MISMATCH, and the
// connection must stay usable (docs/wire.md, "Rules each side enforces").
static void check_checksum_rule(Connection *c, const Dispatch *d) {
    Jindou__V1__DispatchRouting routing;
    Header header;
    dispatch_header(&header, &routing, d, c->next_request_id++);
    if (send_frame(c, &header, f32_payload(d->values), (size_t)d->tokens * d->hidden * sizeof(float), 1) < 0) {
        check(0, "sending the corrupted DISPATCH failed");
        return;
    }
    Frame reply;
    const char *why;
    if (receive_frame(c, &reply, &why) < 0) {
        check(0, "no answer to a DISPATCH with a wrong checksum: %s", why);
        return;
    }
    int ok = reply.header->kind == JINDOU__V1__MESSAGE_KIND__ERROR &&
             reply.header->body_case == JINDOU__V1__FRAME_HEADER__BODY_ERROR &&
             reply.header->error->code == JINDOU__V1__ERROR_CODE__CHECKSUM_MISMATCH;
    check(ok, "a DISPATCH with a wrong checksum was answered by %s, not ERROR CHECKSUM_MISMATCH", kind_name(reply.header->kind));
    if (ok) say("checksum rule: ERROR %s (\"%s\")\n", error_code_name(reply.header->error->code), reply.header->error->message);
    free_frame(&reply);
}

static void usage(void) {
    puts("usage: jindou-probe --connect HOST:PORT --case FILE [--token-file FILE] [--pings N] [--repeat N]\n"
         "                    [--tolerance X] [--name NAME] [--timeout SECONDS] [--json]\n"
         "\n"
         "Talks to a Jindou worker with an independent C implementation of the wire protocol\n"
         "(proto/jindou/v1/wire.proto through libprotobuf-c): HELLO/WELCOME with the cluster\n"
         "secret's HMAC, PING/PONG, each DISPATCH of the case file with its COMBINE checked\n"
         "against the case's expected values, and the checksum rule. Prints round-trip times.\n"
         "Write a case with: jindouctl wire-case --model DIR --out FILE\n"
         "\n"
         "  --connect HOST:PORT   the worker (plain TCP; the probe does not speak TLS)\n"
         "  --case FILE           dispatches and expected combines\n"
         "  --token-file FILE     the cluster secret, when the worker has one\n"
         "  --pings N             timed PINGs of 64 bytes (default 200)\n"
         "  --repeat N            timed repetitions of each dispatch (default 50)\n"
         "  --tolerance X         max |combine - expected| (default 1e-5)\n"
         "  --name NAME           coordinator name in HELLO (default jindou-probe)\n"
         "  --timeout SECONDS     per receive (default 10)\n"
         "  --json                one JSON object on stdout instead of text\n"
         "\n"
         "Exit status: 0 all checks passed, 1 a check failed, 2 usage, connection or input error.");
}

int main(int argc, char **argv) {
    const char *endpoint = NULL, *case_name = NULL, *token_file = NULL, *name = "jindou-probe";
    int pings = 200, repeat = 50;
    double tolerance = 1e-5, timeout = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return usage(), 0;
        if (strcmp(a, "--json") == 0) { json_output = 1; continue; }
        if (!value) fail_usage("%s needs a value (see --help)", a);
        if (strcmp(a, "--connect") == 0) endpoint = value;
        else if (strcmp(a, "--case") == 0) case_name = value;
        else if (strcmp(a, "--token-file") == 0) token_file = value;
        else if (strcmp(a, "--name") == 0) name = value;
        else if (strcmp(a, "--pings") == 0) pings = atoi(value);
        else if (strcmp(a, "--repeat") == 0) repeat = atoi(value);
        else if (strcmp(a, "--tolerance") == 0) tolerance = atof(value);
        else if (strcmp(a, "--timeout") == 0) timeout = atof(value);
        else fail_usage("unknown option %s (see --help)", a);
        i++;
    }
    if (!endpoint || !case_name) fail_usage("--connect and --case are required (see --help)");
    if (pings < 0 || repeat < 0 || !(timeout > 0)) fail_usage("--pings and --repeat must be ≥ 0, --timeout > 0");
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1) fail_usage("this probe writes F32 payloads in host order and needs a little-endian host");

    Case probe_case = read_case(case_name);
    char *secret = token_file ? read_secret(token_file) : NULL;
    Connection c = {connect_to(endpoint, timeout), 1};

    char worker_name[256];
    size_t experts = 0;
    if (handshake(&c, probe_case.fingerprint, name, secret, worker_name, sizeof worker_name, &experts) < 0) return 1;
    say("handshake: worker \"%s\" holds %zu experts%s\n", worker_name, experts, secret ? "; WELCOME's HMAC verified" : "");

    uint8_t ping_payload[64];
    for (size_t i = 0; i < sizeof ping_payload; i++) ping_payload[i] = (uint8_t)(i * 7 + 3);
    double *ping_times = checked_malloc((size_t)(pings + 1) * sizeof(double));
    int ping_count = 0;
    for (int i = 0; i < pings; i++) {
        double t = ping(&c, ping_payload, sizeof ping_payload);
        if (t >= 0) ping_times[ping_count++] = t;
    }
    Timings ping_summary = summarize(ping_times, ping_count);
    say("ping: %d round trips of 64 B, min %.1f µs, p50 %.1f µs, p99 %.1f µs\n", ping_count, ping_summary.min * 1e6,
        ping_summary.p50 * 1e6, ping_summary.p99 * 1e6);

    double worst = 0;
    double *times = checked_malloc((size_t)(repeat + 1) * sizeof(double));
    Timings *dispatch_summaries = checked_malloc((size_t)probe_case.count * sizeof(Timings));
    for (int k = 0; k < probe_case.count; k++) {
        const Dispatch *d = &probe_case.dispatches[k];
        double difference = 0;
        exchange(&c, d, tolerance, &difference, 1);
        if (difference > worst || isnan(difference)) worst = difference;
        int n = 0;
        for (int r = 0; r < repeat; r++) {
            double ignored, t = exchange(&c, d, tolerance, &ignored, 0);
            if (t >= 0) times[n++] = t;
        }
        dispatch_summaries[k] = summarize(times, n);
        if (n) say("  %d repetitions: round trip min %.1f µs, p50 %.1f µs, p99 %.1f µs\n", n, dispatch_summaries[k].min * 1e6,
                   dispatch_summaries[k].p50 * 1e6, dispatch_summaries[k].p99 * 1e6);
    }
    check_checksum_rule(&c, &probe_case.dispatches[0]);
    double after = 0;
    exchange(&c, &probe_case.dispatches[0], tolerance, &after, 0);  // still usable after the error
    close(c.fd);

    if (json_output) {
        printf("{\"worker\":\"%s\",\"experts\":%zu,\"authenticated\":%s,\"checks_failed\":%d,\"max_difference\":%.9g,"
               "\"ping_us\":{\"count\":%d,\"min\":%.3f,\"p50\":%.3f,\"p99\":%.3f},\"dispatches\":[",
               worker_name, experts, secret ? "true" : "false", checks_failed, worst, ping_count, ping_summary.min * 1e6,
               ping_summary.p50 * 1e6, ping_summary.p99 * 1e6);
        for (int k = 0; k < probe_case.count; k++) {
            const Dispatch *d = &probe_case.dispatches[k];
            printf("%s{\"layer\":%u,\"tokens\":%u,\"pairs\":%u,\"round_trip_us\":{\"min\":%.3f,\"p50\":%.3f,\"p99\":%.3f}}",
                   k ? "," : "", d->layer, d->tokens, d->offsets[d->tokens], dispatch_summaries[k].min * 1e6,
                   dispatch_summaries[k].p50 * 1e6, dispatch_summaries[k].p99 * 1e6);
        }
        printf("]}\n");
    } else {
        say("%s: %d dispatches, max |combine - expected| %.3g, %d failed checks\n", checks_failed ? "FAILED" : "ok",
            probe_case.count, worst, checks_failed);
    }
    return checks_failed ? 1 : 0;
}
