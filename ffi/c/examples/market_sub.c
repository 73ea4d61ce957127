/* A market-data subscriber in C: reads the quotes that
 * examples/market_pub.rs publishes to a fan-out log and, when the log is
 * closed (or --secs pass), prints what it received and a latency
 * histogram: p50, p90, p99, p99.9 and max, the same figures in the same
 * lines as the Rust (examples/market_sub.rs) and Go
 * (ffi/go/examples/market-sub) subscribers.
 *
 *   market_sub TARGET [--name CURSOR] [--spin] [--secs N]
 *
 * Latency is the receive time minus the quote's ts_ns, the time it was
 * scheduled to be sent (CLOCK_MONOTONIC, the same clock in every process):
 * a stall of the publisher or of this subscriber counts against every
 * quote it delays. --name reads through a durable named cursor
 * (`market_pub --cursors` creates it at the start of a reliable log: every
 * quote arrives, in order), committed every 1000 quotes (a reliable log's
 * publisher waits for the committed position); without it, reading starts
 * at the latest quote. --spin busy-polls instead of sleeping when idle.
 *
 * The quote (48 bytes, little-endian): u64 ts_ns, u64 seq, char symbol[8],
 * f64 bid, f64 ask, u32 bid_size, u32 ask_size.
 *
 * Build: make -C ffi/c examples (cc -I include market_sub.c -L target/release -lshmq) */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmq.h"

#define QUOTE_SIZE 48

/* Latencies in ns: values below 128 have a bucket each; above, each power
 * of two is split into 64 buckets (at most 1.6% wide). A percentile is the
 * top of its bucket; the maximum is exact. */
#define BUCKETS (128 + 57 * 64)

typedef struct {
    uint64_t counts[BUCKETS];
    uint64_t n, max;
} hist;

static int bucket(uint64_t v) {
    if (v < 128) return (int)v;
    int e = 63 - __builtin_clzll(v); /* 7..63 */
    int m = (int)(v >> (e - 6));     /* 64..127 */
    return 128 + (e - 7) * 64 + (m - 64);
}

static uint64_t bucket_top(int i) {
    if (i < 128) return (uint64_t)i;
    int e = (i - 128) / 64 + 7;
    uint64_t m = (uint64_t)((i - 128) % 64 + 64);
    if (m + 1 == 128 && e == 63) return UINT64_MAX;
    return ((m + 1) << (e - 6)) - 1;
}

static void hist_record(hist *h, uint64_t v) {
    h->counts[bucket(v)]++;
    h->n++;
    if (v > h->max) h->max = v;
}

static uint64_t hist_quantile(const hist *h, double q) {
    if (h->n == 0) return 0;
    double r = q * (double)h->n;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r) rank++; /* ceil */
    if (rank < 1) rank = 1;
    if (rank > h->n) rank = h->n;
    uint64_t seen = 0;
    for (int i = 0; i < BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t top = bucket_top(i);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t u64_at(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

static int fail(const char *what, shmq_status s) {
    fprintf(stderr, "market_sub: %s: %s: %s\n", what, shmq_status_name(s), shmq_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s TARGET [--name CURSOR] [--spin] [--secs N]\n", argv[0]);
        return 2;
    }
    const char *name = NULL;
    int spin = 0;
    double secs = 3600;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) name = argv[++i];
        else if (strcmp(argv[i], "--spin") == 0) spin = 1;
        else if (strcmp(argv[i], "--secs") == 0 && i + 1 < argc) secs = atof(argv[++i]);
        else {
            fprintf(stderr, "market_sub: unknown argument %s\n", argv[i]);
            return 2;
        }
    }

    /* The publisher creates the log: wait for it, at most 10 s. */
    shmq_log *log = NULL;
    shmq_status s;
    uint64_t give_up = now_ns() + 10000000000u;
    while ((s = shmq_log_open(argv[1], &log)) == SHMQ_NOT_FOUND && now_ns() < give_up)
        nanosleep(&(struct timespec){0, 20000000}, NULL);
    if (s != SHMQ_OK) return fail("open", s);
    shmq_subscriber *sub = NULL;
    s = name ? shmq_log_subscribe_named(log, name, SHMQ_START_LATEST, &sub)
             : shmq_log_subscribe(log, SHMQ_START_LATEST, &sub);
    if (s != SHMQ_OK) return fail("subscribe", s);
    if (spin) shmq_subscriber_set_wait(sub, -1);
    uint64_t position = 0;
    shmq_subscriber_position(sub, &position);
    printf("subscribed to %s at position %llu%s%s\n", argv[1], (unsigned long long)position,
           name ? ", cursor " : "", name ? name : "");
    fflush(stdout);

    static hist h; /* 30 KB: not on the stack */
    uint8_t buf[QUOTE_SIZE];
    uint64_t total = 0, lost = 0, gaps = 0, next = 0, first = 0;
    int rc = 0;
    uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
    while (now_ns() < end) {
        size_t n = 0;
        uint64_t missed = 0;
        s = shmq_subscriber_recv_block(sub, buf, sizeof buf, 100000000, &n, &missed);
        if (s == SHMQ_TIMEOUT) continue;
        if (s == SHMQ_CLOSED) {
            printf("log closed\n");
            break;
        }
        if (s == SHMQ_LAGGED) {
            lost += missed;
            next += missed;
            continue;
        }
        if (s != SHMQ_OK) {
            rc = fail("receive", s);
            break;
        }
        if (n != QUOTE_SIZE) {
            fprintf(stderr, "market_sub: not a quote: %zu bytes\n", n);
            rc = 1;
            break;
        }
        uint64_t now = now_ns(), ts = u64_at(buf), seq = u64_at(buf + 8);
        hist_record(&h, now > ts ? now - ts : 0);
        if (total == 0) first = seq;
        else if (seq != next) gaps++; /* lost without SHMQ_LAGGED saying so: must never happen */
        next = seq + 1;
        total++;
        /* A named cursor gates a reliable log's publisher by its committed
         * position: commit as we go, not only at the end. */
        if (name && total % 1000 == 0 && (s = shmq_subscriber_commit(sub)) != SHMQ_OK) {
            rc = fail("commit", s);
            break;
        }
    }
    if (name && rc == 0) shmq_subscriber_commit(sub);
    char first_text[24] = "-";
    if (total > 0) snprintf(first_text, sizeof first_text, "%llu", (unsigned long long)first);
    printf("received %llu quotes, lost %llu to lag, %llu unexplained gaps, first %s\n",
           (unsigned long long)total, (unsigned long long)lost, (unsigned long long)gaps, first_text);
    printf("latency from scheduled send (%llu quotes): p50 %.2f us  p90 %.2f us  p99 %.2f us  p99.9 %.2f us  "
           "max %.2f us\n",
           (unsigned long long)h.n, hist_quantile(&h, 0.50) / 1e3, hist_quantile(&h, 0.90) / 1e3,
           hist_quantile(&h, 0.99) / 1e3, hist_quantile(&h, 0.999) / 1e3, h.max / 1e3);
    shmq_subscriber_free(sub);
    shmq_log_free(log);
    return rc;
}
