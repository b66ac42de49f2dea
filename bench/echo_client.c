/* Echo load generator for bench/net.py (Linux, epoll, one thread).
 *
 *   echo_client load HOST PORT CONNS SECONDS [WARMUP] [SIZE]
 *       CONNS connections; each sends SIZE (64) bytes, waits for all SIZE
 *       bytes to come back, and sends again, for WARMUP (1) + SECONDS
 *       seconds; only round trips that finish after the warm-up count.
 *       Prints one line:
 *       conns=N seconds=S requests=R rps=X p50_us=A p90_us=B p99_us=C max_us=D errors=E
 *   echo_client idle HOST PORT CONNS SECONDS
 *       opens CONNS connections, checks each with one 64-byte echo, prints
 *       "ready N" and keeps them open and idle for SECONDS, then exits.
 *
 * Connections are opened non-blocking, at most 128 in flight, so a small
 * accept backlog on the server does not stall us on SYN retransmits.
 * RLIMIT_NOFILE is raised to its hard limit.  Every loop is bounded in time.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXSIZE 4096
#define HIST_US 2000000          /* 1 µs buckets up to 2 s, then overflow */

typedef struct {
    int fd;
    int got;                     /* bytes of the current echo received */
    int connected;
    int64_t sent_ns;
} conn_t;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static char payload[MAXSIZE];
static int size = 64;

/* Open n connections, at most 128 pending at once; returns the count that
   connected before the deadline. */
static int connect_all(int ep, conn_t *cs, int n, struct sockaddr_in *sa, int64_t deadline) {
    struct epoll_event evs[256];
    int started = 0, done = 0, pending = 0, failed = 0;
    while (done + failed < n && now_ns() < deadline) {
        while (started < n && pending < 128) {
            conn_t *c = &cs[started];
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (c->fd < 0) die("socket");
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            int r = connect(c->fd, (struct sockaddr *)sa, sizeof *sa);
            if (r < 0 && errno != EINPROGRESS) die("connect");
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)started};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
            started++;
            pending++;
        }
        int k = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < k; i++) {
            conn_t *c = &cs[evs[i].data.u32];
            if (c->connected) continue;
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            pending--;
            if (err) {
                fprintf(stderr, "connect: %s\n", strerror(err));
                failed++;
                c->connected = -1;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->connected = 1;
            done++;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[i].data.u32};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    return done;
}

static int send_one(conn_t *c) {
    ssize_t w = write(c->fd, payload, size);
    if (w != size) return -1;    /* 64 bytes on an idle socket always fit */
    c->got = 0;
    c->sent_ns = now_ns();
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s load|idle HOST PORT CONNS SECONDS [WARMUP] [SIZE]\n", argv[0]);
        return 2;
    }
    int idle = strcmp(argv[1], "idle") == 0;
    const char *host = argv[2];
    int port = atoi(argv[3]);
    int n = atoi(argv[4]);
    double seconds = atof(argv[5]);
    double warmup = argc > 6 ? atof(argv[6]) : 1.0;
    if (argc > 7) size = atoi(argv[7]);
    if (size < 1 || size > MAXSIZE || n < 1) {
        fprintf(stderr, "bad size or conns\n");
        return 2;
    }
    memset(payload, 'x', size);
    raise_nofile();

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "bad host %s\n", host);
        return 2;
    }
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    conn_t *cs = calloc(n, sizeof *cs);
    uint32_t *hist = calloc(HIST_US + 1, sizeof *hist);
    if (!cs || !hist) die("calloc");

    int64_t t0 = now_ns();
    int ok = connect_all(ep, cs, n, &sa, t0 + 60LL * 1000000000LL);
    if (ok < n) {
        fprintf(stderr, "only %d of %d connections opened\n", ok, n);
        return 1;
    }
    struct epoll_event *evs = calloc(1024, sizeof *evs);
    char buf[MAXSIZE];
    long errors = 0;

    for (int i = 0; i < n; i++)
        if (send_one(&cs[i]) < 0) errors++;

    if (idle) {
        /* one echo per connection, then stay idle */
        int echoed = 0;
        int64_t deadline = now_ns() + 60LL * 1000000000LL;
        while (echoed < n && now_ns() < deadline) {
            int k = epoll_wait(ep, evs, 1024, 100);
            for (int i = 0; i < k; i++) {
                conn_t *c = &cs[evs[i].data.u32];
                ssize_t r = read(c->fd, buf, sizeof buf);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN) continue;
                    errors++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    echoed++;
                    continue;
                }
                c->got += (int)r;
                if (c->got >= size) echoed++;
            }
        }
        printf("ready %d errors=%ld\n", n, errors);
        fflush(stdout);
        int64_t end = now_ns() + (int64_t)(seconds * 1e9);
        while (now_ns() < end) {
            struct timespec ts = {0, 50 * 1000000};
            nanosleep(&ts, NULL);
        }
        return errors ? 1 : 0;
    }

    int64_t start = now_ns() + (int64_t)(warmup * 1e9);
    int64_t end = start + (int64_t)(seconds * 1e9);
    long requests = 0;
    int64_t maxlat = 0;
    int64_t t;
    while ((t = now_ns()) < end) {
        int k = epoll_wait(ep, evs, 1024, 10);
        for (int i = 0; i < k; i++) {
            conn_t *c = &cs[evs[i].data.u32];
            if (c->fd < 0) continue;
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                continue;
            }
            c->got += (int)r;
            if (c->got < size) continue;
            int64_t done = now_ns();
            if (done >= start && done < end) {
                int64_t us = (done - c->sent_ns) / 1000;
                hist[us < HIST_US ? us : HIST_US]++;
                if (us > maxlat) maxlat = us;
                requests++;
            }
            if (send_one(c) < 0) errors++;
        }
    }
    double p[3] = {0.50, 0.90, 0.99};
    long at[3] = {-1, -1, -1};
    long cum = 0;
    for (long us = 0; us <= HIST_US; us++) {
        cum += hist[us];
        for (int j = 0; j < 3; j++)
            if (at[j] < 0 && requests && cum >= (long)(p[j] * requests + 0.5)) at[j] = us;
    }
    printf("conns=%d seconds=%.2f requests=%ld rps=%.1f p50_us=%ld p90_us=%ld p99_us=%ld "
           "max_us=%ld errors=%ld\n",
           n, seconds, requests, requests / seconds, at[0], at[1], at[2], (long)maxlat, errors);
    return 0;
}
