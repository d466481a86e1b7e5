/*
 * watchdriver: many WatchTasks streams held open by one compiled client, for `taskservice bench`.
 *
 * A Python gRPC client reading 1,000 watches on the bench's two cores measures itself, not the
 * server; this one costs a few microseconds per delivery. One thread, epoll over every connection,
 * libnghttp2's client session over plain TCP (h2c with prior knowledge, as gRPC does).
 *
 *   watchdriver HOST PORT CONNECTIONS STREAMS_PER_CONNECTION REQUEST_FILE [TOTAL_STREAMS]
 *
 * REQUEST_FILE holds the gRPC request body (5-byte prefix + WatchTasksRequest). TOTAL_STREAMS, when
 * given, spreads that many streams evenly over the connections (never more than
 * STREAMS_PER_CONNECTION on one). The token, if any, comes from WATCHDRIVER_TOKEN.
 *
 * Every stream parses each TaskEvent it receives: a task titled "marker" marks the stream
 * subscribed and is not counted; any other event counts as a delivery, its latency (now minus the
 * event's timestamp, CLOCK_REALTIME) is kept, and its sequence must be above the stream's last one.
 * A stream that ends while the driver runs (trailers, RST_STREAM, GOAWAY, a dropped connection) is a
 * failure, reported with its grpc-status and message: never taken for the driver's own doing.
 *
 * Commands on stdin, one per line; each answer is one JSON line on stdout:
 *   status        streams asked for, open, subscribed, failed, deliveries, the server's stream limit
 *                 per connection (-1: none), and the first failure
 *   reset         zero deliveries, latencies and reorder counts (each stream's last sequence stays)
 *   report [N]    counts, latency percentiles, per-stream spread; with N events expected per
 *                 stream also lost (sum of N minus delivered) and extra
 *   quit          cancel every stream, close, exit 0 (so does end of input)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#define WATCH_PATH "/taskservice.TaskService/WatchTasks"
#define READ_CHUNK 65536
#define WINDOW (1 << 20) /* per stream; the connection gets 16x: a watcher never stalls the sender */
#define MAX_FAILURE 300

/* ---- state -------------------------------------------------------------------------------- */

struct stream {
    struct conn *conn;
    int32_t id; /* 0 until nghttp2 has sent its HEADERS */
    int open, subscribed, failed;
    int64_t last_sequence; /* survives `reset`: order is checked across the whole run */
    int64_t deliveries, reordered;
    int grpc_status; /* -1 until trailers carry one */
    char grpc_message[160];
    unsigned char *buf; /* bytes of a gRPC message not complete yet */
    size_t len, cap;
};

struct conn {
    int fd, index;
    nghttp2_session *session;
    struct stream *streams;
    int nstreams, submitted, closed;
    char goaway[120]; /* set when the server sent GOAWAY */
};

static struct {
    const char *host, *port, *token;
    unsigned char *request;
    size_t request_len;
    struct conn *conns;
    int nconns, epfd, stopping;
    int64_t total_streams, open, subscribed, failed, deliveries, reordered, malformed;
    int64_t stream_limit; /* the lowest SETTINGS_MAX_CONCURRENT_STREAMS of the server's; -1: none */
    char first_failure[MAX_FAILURE];
    int64_t *latencies;
    size_t nlat, latcap;
    double first_delivery, last_delivery; /* CLOCK_MONOTONIC seconds: Python's time.monotonic() */
} g;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("watchdriver: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q == NULL) die("out of memory");
    return q;
}

static int64_t realtime_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *status_name(int code) {
    static const char *names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    return code >= 0 && code < (int)(sizeof names / sizeof names[0]) ? names[code] : "?";
}

/* ---- failures ----------------------------------------------------------------------------- */

static void stream_failed(struct stream *s, const char *fmt, ...) {
    if (s->failed) return;
    s->failed = 1;
    g.failed++;
    char why[MAX_FAILURE - 40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (g.first_failure[0]) return;
    snprintf(g.first_failure, sizeof g.first_failure, "connection %d stream %d: %s", s->conn->index, s->id, why);
    for (char *p = g.first_failure; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = '?'; /* it goes into JSON as is */
}

static void stream_closed(struct stream *s) {
    if (s->open) {
        s->open = 0;
        g.open--;
    }
    if (s->subscribed) {
        s->subscribed = 0;
        g.subscribed--;
    }
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}

/* ---- a minimal protobuf walker ------------------------------------------------------------ */

struct cursor {
    const unsigned char *p, *end;
};

static int read_varint(struct cursor *c, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (c->p >= c->end) return -1;
        unsigned char b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int skip_field(struct cursor *c, uint64_t key, int depth);

/* A group runs until the END_GROUP of the same field number; groups can nest. */
static int skip_group(struct cursor *c, uint64_t field, int depth) {
    if (depth > 32) return -1;
    for (;;) {
        uint64_t key;
        if (read_varint(c, &key) < 0) return -1;
        if ((key & 7) == 4) return (key >> 3) == field ? 0 : -1;
        if (skip_field(c, key, depth + 1) < 0) return -1;
    }
}

static int skip_field(struct cursor *c, uint64_t key, int depth) {
    uint64_t n;
    switch (key & 7) {
    case 0: return read_varint(c, &n);
    case 1: n = 8; break;
    case 5: n = 4; break;
    case 2:
        if (read_varint(c, &n) < 0) return -1;
        break;
    case 3: return skip_group(c, key >> 3, depth);
    default: return -1; /* a lone END_GROUP, or wire types 6 and 7 */
    }
    if (n > (uint64_t)(c->end - c->p)) return -1;
    c->p += n;
    return 0;
}

/* The length-delimited payload of the field whose key was just read. */
static int read_bytes(struct cursor *c, struct cursor *inner) {
    uint64_t n;
    if (read_varint(c, &n) < 0 || n > (uint64_t)(c->end - c->p)) return -1;
    inner->p = c->p;
    inner->end = c->p + n;
    c->p += n;
    return 0;
}

struct event {
    int is_marker;
    int64_t timestamp_us, sequence;
};

static int parse_task(struct cursor c, struct event *ev) {
    while (c.p < c.end) {
        uint64_t key;
        if (read_varint(&c, &key) < 0) return -1;
        if (key == ((2 << 3) | 2)) { /* title */
            struct cursor title;
            if (read_bytes(&c, &title) < 0) return -1;
            ev->is_marker = title.end - title.p == 6 && memcmp(title.p, "marker", 6) == 0;
        } else if (skip_field(&c, key, 0) < 0) {
            return -1;
        }
    }
    return 0;
}

static int parse_timestamp(struct cursor c, struct event *ev) {
    int64_t seconds = 0, nanos = 0;
    while (c.p < c.end) {
        uint64_t key, v;
        if (read_varint(&c, &key) < 0) return -1;
        if (key == ((1 << 3) | 0) || key == ((2 << 3) | 0)) {
            if (read_varint(&c, &v) < 0) return -1;
            if (key >> 3 == 1)
                seconds = (int64_t)v;
            else
                nanos = (int32_t)(uint32_t)v; /* int32 on the wire: negative ones are 10 bytes */
        } else if (skip_field(&c, key, 0) < 0) {
            return -1;
        }
    }
    ev->timestamp_us = seconds * 1000000 + nanos / 1000;
    return 0;
}

static int parse_event(const unsigned char *p, size_t n, struct event *ev) {
    struct cursor c = {p, p + n}, inner;
    memset(ev, 0, sizeof *ev);
    while (c.p < c.end) {
        uint64_t key, v;
        if (read_varint(&c, &key) < 0) return -1;
        if (key == ((2 << 3) | 2)) { /* task */
            if (read_bytes(&c, &inner) < 0 || parse_task(inner, ev) < 0) return -1;
        } else if (key == ((3 << 3) | 2)) { /* timestamp */
            if (read_bytes(&c, &inner) < 0 || parse_timestamp(inner, ev) < 0) return -1;
        } else if (key == ((5 << 3) | 0)) { /* sequence */
            if (read_varint(&c, &v) < 0) return -1;
            ev->sequence = (int64_t)v;
        } else if (skip_field(&c, key, 0) < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- deliveries --------------------------------------------------------------------------- */

static void on_event(struct stream *s, const unsigned char *p, size_t n) {
    struct event ev;
    if (parse_event(p, n, &ev) < 0) {
        g.malformed++;
        stream_failed(s, "a TaskEvent that does not parse (%zu bytes)", n);
        return;
    }
    if (ev.sequence <= s->last_sequence) {
        s->reordered++;
        g.reordered++;
    } else {
        s->last_sequence = ev.sequence;
    }
    if (ev.is_marker) {
        if (!s->subscribed) {
            s->subscribed = 1;
            g.subscribed++;
        }
        return;
    }
    if (g.nlat == g.latcap) {
        g.latcap = g.latcap ? g.latcap * 2 : 65536;
        g.latencies = xrealloc(g.latencies, g.latcap * sizeof *g.latencies);
    }
    g.latencies[g.nlat++] = realtime_us() - ev.timestamp_us;
    s->deliveries++;
    g.deliveries++;
    double now = monotonic_s();
    if (g.deliveries == 1) g.first_delivery = now;
    g.last_delivery = now;
}

/* Consume the complete length-prefixed messages at p; returns how many bytes they took. */
static size_t consume_messages(struct stream *s, const unsigned char *p, size_t n) {
    size_t used = 0;
    while (n - used >= 5 && !s->failed) {
        const unsigned char *m = p + used;
        uint32_t len = (uint32_t)m[1] << 24 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 8 | m[4];
        if (m[0] != 0) {
            stream_failed(s, "a compressed gRPC message (flag %d), which the driver never asked for", m[0]);
            return n;
        }
        if (n - used - 5 < len) break;
        on_event(s, m + 5, len);
        used += 5 + (size_t)len;
    }
    return s->failed ? n : used;
}

static void on_data(struct stream *s, const uint8_t *data, size_t n) {
    if (s->len == 0) { /* the usual case: whole messages straight from the frame, no copy */
        size_t used = consume_messages(s, data, n);
        data += used;
        n -= used;
        if (n == 0) return;
    }
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->buf = xrealloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    size_t used = consume_messages(s, s->buf, s->len);
    memmove(s->buf, s->buf + used, s->len - used);
    s->len -= used;
}

/* ---- nghttp2 callbacks -------------------------------------------------------------------- */

static ssize_t send_cb(nghttp2_session *session, const uint8_t *data, size_t length, int flags,
                       void *user_data) {
    (void)session, (void)flags;
    struct conn *c = user_data;
    ssize_t n = send(c->fd, data, length, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? NGHTTP2_ERR_WOULDBLOCK : NGHTTP2_ERR_CALLBACK_FAILURE;
    return n;
}

static int on_data_chunk_cb(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                            size_t len, void *user_data) {
    (void)flags, (void)user_data;
    struct stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s != NULL && !s->failed) on_data(s, data, len);
    return 0;
}

/* grpc-message is percent-encoded (gRPC over HTTP/2, "Responses"). */
static void percent_decode(char *out, size_t cap, const uint8_t *in, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned int byte;
        if (in[i] == '%' && i + 2 < n && sscanf((const char *)in + i + 1, "%2x", &byte) == 1) {
            out[o++] = (char)byte;
            i += 2;
        } else {
            out[o++] = (char)in[i];
        }
    }
    out[o] = 0;
}

static int on_header_cb(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user_data) {
    (void)flags, (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    struct stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL) return 0;
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        s->grpc_status = atoi((const char *)value);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        percent_decode(s->grpc_message, sizeof s->grpc_message, value, valuelen);
    } else if (namelen == 7 && memcmp(name, ":status", 7) == 0 && !(valuelen == 3 && memcmp(value, "200", 3) == 0)) {
        stream_failed(s, "HTTP status %.*s", (int)valuelen, value);
    }
    return 0;
}

static int on_frame_send_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    struct stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s != NULL && !s->open) {
        s->id = frame->hd.stream_id;
        s->open = 1;
        g.open++;
    }
    return 0;
}

static void submit_streams(struct conn *c);

static int on_frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    struct conn *c = user_data;
    if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        uint32_t limit = nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (limit != UINT32_MAX && (g.stream_limit < 0 || limit < g.stream_limit)) g.stream_limit = limit;
        submit_streams(c); /* after the server's SETTINGS: nghttp2 then knows its stream limit */
    } else if (frame->hd.type == NGHTTP2_GOAWAY) {
        const nghttp2_goaway *ga = &frame->goaway;
        snprintf(c->goaway, sizeof c->goaway, "GOAWAY %s (last stream %d)",
                 nghttp2_http2_strerror(ga->error_code), ga->last_stream_id);
    }
    return 0;
}

static int on_stream_close_cb(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                              void *user_data) {
    struct conn *c = user_data;
    struct stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s == NULL) return 0;
    if (!g.stopping) {
        if (s->grpc_status >= 0)
            stream_failed(s, "ended with grpc-status %d (%s): %s", s->grpc_status, status_name(s->grpc_status),
                          s->grpc_message);
        else if (c->goaway[0])
            stream_failed(s, "closed after %s, error %s", c->goaway, nghttp2_http2_strerror(error_code));
        else if (error_code != NGHTTP2_NO_ERROR)
            stream_failed(s, "RST_STREAM %s", nghttp2_http2_strerror(error_code));
        else
            stream_failed(s, "ended without grpc-status");
    }
    stream_closed(s);
    return 0;
}

/* ---- connections -------------------------------------------------------------------------- */

static ssize_t request_body_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                               uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
    (void)session, (void)stream_id, (void)user_data;
    size_t *sent = source->ptr;
    size_t n = g.request_len - *sent < length ? g.request_len - *sent : length;
    memcpy(buf, g.request + *sent, n);
    *sent += n;
    if (*sent == g.request_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        free(sent);
    }
    return (ssize_t)n;
}

#define HEADER(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

static void submit_streams(struct conn *c) {
    if (c->submitted) return;
    c->submitted = 1;
    char authority[300], bearer[4096];
    snprintf(authority, sizeof authority, "%s:%s", g.host, g.port);
    nghttp2_nv headers[] = {
        HEADER(":method", "POST"),
        HEADER(":scheme", "http"),
        HEADER(":authority", authority),
        HEADER(":path", WATCH_PATH),
        HEADER("content-type", "application/grpc"),
        HEADER("te", "trailers"),
        HEADER("user-agent", "taskservice-watchdriver"),
        HEADER("authorization", ""),
    };
    size_t nheaders = sizeof headers / sizeof headers[0] - 1;
    if (g.token) {
        snprintf(bearer, sizeof bearer, "Bearer %s", g.token);
        headers[nheaders].value = (uint8_t *)bearer;
        headers[nheaders].valuelen = strlen(bearer);
        nheaders++;
    }
    for (int i = 0; i < c->nstreams; i++) {
        struct stream *s = &c->streams[i];
        size_t *sent = xrealloc(NULL, sizeof *sent);
        *sent = 0;
        nghttp2_data_provider body = {.source.ptr = sent, .read_callback = request_body_cb};
        /* Beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS nghttp2 queues the request until a
           stream closes; such a stream is never `open` and so never subscribes, which the bench reports. */
        int32_t id = nghttp2_submit_request(c->session, NULL, headers, nheaders, &body, s);
        if (id < 0) {
            free(sent);
            stream_failed(s, "cannot submit: %s", nghttp2_strerror(id));
        }
    }
}

static void connection_lost(struct conn *c, const char *why) {
    if (c->closed) return;
    c->closed = 1;
    for (int i = 0; i < c->nstreams; i++) {
        struct stream *s = &c->streams[i];
        if (!g.stopping && !s->failed)
            stream_failed(s, "connection lost: %s%s%s", why, c->goaway[0] ? " after " : "", c->goaway);
        stream_closed(s);
    }
    epoll_ctl(g.epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    nghttp2_session_del(c->session);
    c->session = NULL;
}

/* Write what nghttp2 has queued; wait for EPOLLOUT only while the socket is full. */
static void flush(struct conn *c) {
    if (c->closed) return;
    int rv = nghttp2_session_send(c->session);
    if (rv != 0) {
        connection_lost(c, nghttp2_strerror(rv));
        return;
    }
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) {
        connection_lost(c, "the HTTP/2 session ended");
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | (nghttp2_session_want_write(c->session) ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(g.epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_readable(struct conn *c) {
    static uint8_t buf[READ_CHUNK];
    for (int rounds = 0; rounds < 16 && !c->closed; rounds++) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n == 0) {
            connection_lost(c, "the server closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            connection_lost(c, strerror(errno));
            return;
        }
        ssize_t used = nghttp2_session_mem_recv(c->session, buf, (size_t)n);
        if (used < 0) {
            connection_lost(c, nghttp2_strerror((int)used));
            return;
        }
    }
    flush(c);
}

static int connect_to(void) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    int rv = getaddrinfo(g.host, g.port, &hints, &res);
    if (rv != 0) die("cannot resolve %s: %s", g.host, gai_strerror(rv));
    int fd = -1;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) die("cannot connect to %s:%s: %s", g.host, g.port, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void open_connection(struct conn *c, nghttp2_session_callbacks *callbacks) {
    c->fd = connect_to();
    if (nghttp2_session_client_new(&c->session, callbacks, c) != 0) die("nghttp2_session_client_new failed");
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW},
    };
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 16 * WINDOW);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    flush(c);
}

/* ---- commands ----------------------------------------------------------------------------- */

static int compare_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between closest ranks, as Python's statistics.quantiles(method="inclusive"). */
static double quantile(double q) {
    if (g.nlat == 0) return 0;
    double pos = q * (double)(g.nlat - 1);
    size_t lo = (size_t)pos;
    double frac = pos - (double)lo;
    if (lo + 1 >= g.nlat) return (double)g.latencies[g.nlat - 1];
    return (double)g.latencies[lo] + frac * (double)(g.latencies[lo + 1] - g.latencies[lo]);
}

static void print_status(void) {
    printf("{\"streams\": %lld, \"open\": %lld, \"subscribed\": %lld, \"failed\": %lld, \"deliveries\": %lld, "
           "\"stream_limit\": %lld, \"first_failure\": \"%s\"}\n",
           (long long)g.total_streams, (long long)g.open, (long long)g.subscribed, (long long)g.failed,
           (long long)g.deliveries, (long long)g.stream_limit, g.first_failure);
}

static void print_report(long long expected) {
    qsort(g.latencies, g.nlat, sizeof *g.latencies, compare_i64);
    long long least = -1, most = 0, lost = 0, extra = 0;
    for (int i = 0; i < g.nconns; i++) {
        for (int j = 0; j < g.conns[i].nstreams; j++) {
            long long d = g.conns[i].streams[j].deliveries;
            if (least < 0 || d < least) least = d;
            if (d > most) most = d;
            if (expected >= 0) {
                lost += d < expected ? expected - d : 0;
                extra += d > expected ? d - expected : 0;
            }
        }
    }
    printf("{\"streams\": %lld, \"open\": %lld, \"subscribed\": %lld, \"failed\": %lld, \"deliveries\": %lld, "
           "\"reordered\": %lld, \"malformed\": %lld, \"latencies\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f, "
           "\"min_us\": %lld, \"max_us\": %lld, \"min_per_stream\": %lld, \"max_per_stream\": %lld, "
           "\"first_delivery\": %.6f, \"last_delivery\": %.6f, \"stream_limit\": %lld, \"first_failure\": \"%s\"",
           (long long)g.total_streams, (long long)g.open, (long long)g.subscribed, (long long)g.failed,
           (long long)g.deliveries, (long long)g.reordered, (long long)g.malformed, g.nlat, quantile(0.50),
           quantile(0.99), g.nlat ? (long long)g.latencies[0] : 0LL,
           g.nlat ? (long long)g.latencies[g.nlat - 1] : 0LL, least < 0 ? 0 : least, most, g.first_delivery,
           g.last_delivery, (long long)g.stream_limit, g.first_failure);
    if (expected >= 0) printf(", \"expected_per_stream\": %lld, \"lost\": %lld, \"extra\": %lld", expected, lost, extra);
    printf("}\n");
}

static void reset(void) {
    g.deliveries = g.reordered = 0;
    g.nlat = 0;
    g.first_delivery = g.last_delivery = 0;
    for (int i = 0; i < g.nconns; i++)
        for (int j = 0; j < g.conns[i].nstreams; j++) g.conns[i].streams[j].deliveries = g.conns[i].streams[j].reordered = 0;
}

static void quit(void) {
    g.stopping = 1;
    for (int i = 0; i < g.nconns; i++) {
        struct conn *c = &g.conns[i];
        if (c->closed) continue;
        for (int j = 0; j < c->nstreams; j++)
            if (c->streams[j].open) nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, c->streams[j].id, NGHTTP2_CANCEL);
        nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK); /* the last frames go out whole */
        nghttp2_session_send(c->session);
        close(c->fd);
    }
    printf("{\"quit\": true}\n");
    fflush(stdout);
    exit(0);
}

static void command(char *line) {
    line[strcspn(line, "\r\n")] = 0;
    if (strcmp(line, "status") == 0)
        print_status();
    else if (strcmp(line, "reset") == 0) {
        reset();
        printf("{\"reset\": true}\n");
    } else if (strncmp(line, "report", 6) == 0)
        print_report(line[6] == ' ' ? atoll(line + 7) : -1);
    else if (strcmp(line, "quit") == 0)
        quit();
    else
        printf("{\"error\": \"unknown command\"}\n");
    fflush(stdout);
}

static void on_stdin(void) {
    static char line[4096];
    static size_t have;
    ssize_t n = read(STDIN_FILENO, line + have, sizeof line - 1 - have);
    if (n == 0) quit(); /* whoever started us is gone */
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        quit();
    }
    have += (size_t)n;
    char *start = line, *nl;
    while ((nl = memchr(start, '\n', have - (size_t)(start - line))) != NULL) {
        *nl = 0;
        command(start);
        start = nl + 1;
    }
    have -= (size_t)(start - line);
    memmove(line, start, have);
    if (have == sizeof line - 1) have = 0; /* a line that long is no command */
}

/* ---- main --------------------------------------------------------------------------------- */

static void read_request(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) die("cannot open %s: %s", path, strerror(errno));
    size_t cap = 0;
    for (;;) {
        g.request = xrealloc(g.request, cap + 4096);
        size_t n = fread(g.request + g.request_len, 1, cap + 4096 - g.request_len, f);
        cap += 4096;
        g.request_len += n;
        if (n == 0) break;
    }
    fclose(f);
    if (g.request_len < 5) die("%s is not a gRPC message (under 5 bytes)", path);
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7)
        die("usage: watchdriver HOST PORT CONNECTIONS STREAMS_PER_CONNECTION REQUEST_FILE [TOTAL_STREAMS]");
    g.host = argv[1];
    g.port = argv[2];
    g.nconns = atoi(argv[3]);
    int per_conn = atoi(argv[4]);
    read_request(argv[5]);
    long long total = argc == 7 ? atoll(argv[6]) : (long long)g.nconns * per_conn;
    if (g.nconns < 1 || per_conn < 1 || total < 1 || total > (long long)g.nconns * per_conn)
        die("need 1 <= TOTAL_STREAMS <= CONNECTIONS x STREAMS_PER_CONNECTION");
    g.total_streams = total;
    g.stream_limit = -1;
    const char *token = getenv("WATCHDRIVER_TOKEN");
    g.token = token && *token ? token : NULL;

    g.epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event in = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, STDIN_FILENO, &in) < 0) die("cannot watch stdin: %s", strerror(errno));

    nghttp2_session_callbacks *callbacks;
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_send_callback(callbacks, send_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close_cb);

    g.conns = calloc((size_t)g.nconns, sizeof *g.conns);
    if (g.conns == NULL) die("out of memory");
    for (int i = 0; i < g.nconns; i++) {
        struct conn *c = &g.conns[i];
        c->index = i;
        c->nstreams = (int)(total / g.nconns + (i < total % g.nconns));
        c->streams = calloc((size_t)c->nstreams ? (size_t)c->nstreams : 1, sizeof *c->streams);
        if (c->streams == NULL) die("out of memory");
        for (int j = 0; j < c->nstreams; j++) {
            c->streams[j].conn = c;
            c->streams[j].grpc_status = -1;
        }
        open_connection(c, callbacks);
    }
    nghttp2_session_callbacks_del(callbacks);

    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(g.epfd, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                on_stdin();
                continue;
            }
            if (c->closed) continue;
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
            else
                flush(c);
        }
    }
}
