/* Tests of the fan-out log's C interface (shmq_log_*, shmq_subscriber_*):
 * every function, every status a caller can get from them, NULL and bad
 * arguments, outputs left alone on failure (and exactly which are written
 * on SHMQ_LAGGED), named cursors, a file-backed log reopened, and threads
 * in both modes. The multi-process cases are in test_log_procs.c.
 *
 * Not provoked here: SHMQ_CORRUPT from a receive (it needs a slot length
 * forged in shared memory; opening a damaged log is tested) and SHMQ_PANIC
 * (tested in Rust, capi/src/lib.rs).
 *
 * Every log is registered and removed at exit, also after a failed check. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "msg.h"
#include "shmq.h"


static shmq_log *create(const char *target, uint32_t slot, uint64_t cap, uint32_t flags, uint32_t cursors) {
    shmq_log *l = NULL;
    CHECK_STATUS(shmq_log_create(target, slot, cap, 0, flags, cursors, &l), SHMQ_OK);
    if (l == NULL) {
        fprintf(stderr, "cannot continue without a log\n");
        exit(1);
    }
    return l;
}

static shmq_subscriber *subscribe(shmq_log *l, uint32_t start) {
    shmq_subscriber *s = NULL;
    CHECK_STATUS(shmq_log_subscribe(l, start, &s), SHMQ_OK);
    if (s == NULL) {
        fprintf(stderr, "cannot continue without a subscriber\n");
        exit(1);
    }
    return s;
}

static void publish_byte(shmq_log *l, uint8_t b) {
    CHECK_STATUS(shmq_log_publish(l, &b, 1, NULL), SHMQ_OK);
}

/* Receives one message that must be the single byte `want`. */
static void expect_byte(shmq_subscriber *s, uint8_t want) {
    uint8_t buf[64] = {0};
    size_t n = 777;
    uint64_t missed = 777;
    CHECK_STATUS(shmq_subscriber_recv_try(s, buf, sizeof buf, &n, &missed), SHMQ_OK);
    CHECK(n == 1 && buf[0] == want);
    CHECK(missed == 777); /* not written on SHMQ_OK */
}

struct joinable {
    pthread_t thread;
    volatile int done;
};

static void join_within(struct joinable *j) {
    for (int i = 0; i < 10000 && !j->done; i++) sleep_ms(1);
    if (!j->done) {
        fprintf(stderr, "a thread did not finish within 10 s\n");
        remove_targets();
        exit(1);
    }
    pthread_join(j->thread, NULL);
}

/* ---- lifecycle on the three backings ---- */

static void test_backing(const char *kind) {
    const char *t = new_target(kind);
    shmq_log *sentinel = (shmq_log *)(uintptr_t)0x5a5a, *other = sentinel;

    CHECK_STATUS(shmq_log_open(t, &other), SHMQ_NOT_FOUND);
    CHECK(other == sentinel);

    shmq_log *a = create(t, 32, 8, 0, 4);
    publish_byte(a, 'k');
    /* create never touches an existing log */
    CHECK_STATUS(shmq_log_create(t, 32, 8, 0, 0, 4, &other), SHMQ_ALREADY_EXISTS);
    CHECK_STATUS(shmq_log_create(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, &other), SHMQ_ALREADY_EXISTS);
    CHECK(other == sentinel);

    /* open and open_or_create attach to the same log; parameters must match */
    shmq_log *b = NULL, *c = NULL;
    CHECK_STATUS(shmq_log_open(t, &b), SHMQ_OK);
    CHECK_STATUS(shmq_log_open_or_create(t, 32, 8, 0, 0, 4, &c), SHMQ_OK);
    CHECK_STATUS(shmq_log_open_or_create(t, 64, 8, 0, 0, 4, &other), SHMQ_INCOMPATIBLE);
    CHECK_STATUS(shmq_log_open_or_create(t, 32, 16, 0, 0, 4, &other), SHMQ_INCOMPATIBLE);
    CHECK_STATUS(shmq_log_open_or_create(t, 32, 8, 0, SHMQ_LOG_RELIABLE, 4, &other), SHMQ_INCOMPATIBLE);
    CHECK_STATUS(shmq_log_open_or_create(t, 32, 8, 0, 0, 5, &other), SHMQ_INCOMPATIBLE);
    CHECK(other == sentinel);
    /* a log is not a queue, nor a queue a log */
    shmq_queue *q = (shmq_queue *)(uintptr_t)0x5a5a;
    CHECK_STATUS(shmq_queue_open(t, &q), SHMQ_INCOMPATIBLE);
    CHECK(q == (shmq_queue *)(uintptr_t)0x5a5a);

    shmq_subscriber *sb = subscribe(b, SHMQ_START_OLDEST);
    expect_byte(sb, 'k');
    shmq_subscriber *sc = subscribe(c, SHMQ_START_OLDEST);
    expect_byte(sc, 'k');
    uint64_t seq = 777;
    CHECK_STATUS(shmq_log_publish(c, (const uint8_t *)"x", 1, &seq), SHMQ_OK);
    CHECK(seq == 1);
    expect_byte(sb, 'x');
    expect_byte(sc, 'x');

    uint32_t slot = 0;
    uint64_t cap = 0, next = 0;
    bool closed = true;
    CHECK_STATUS(shmq_log_slot_size(b, &slot), SHMQ_OK);
    CHECK_STATUS(shmq_log_capacity(b, &cap), SHMQ_OK);
    CHECK_STATUS(shmq_log_next_seq(a, &next), SHMQ_OK);
    CHECK_STATUS(shmq_log_is_closed(a, &closed), SHMQ_OK);
    CHECK(slot == 32 && cap == 8 && next == 2 && !closed);
    shmq_log_counters st;
    CHECK_STATUS(shmq_log_stats(c, &st), SHMQ_OK);
    CHECK(st.cursor_capacity == 4 && !st.reliable && st.capacity == 8 && st.published == 2);
    CHECK_STATUS(shmq_log_flush(a), SHMQ_OK);

    /* unlink removes the name; handles and subscribers keep working */
    CHECK_STATUS(shmq_log_unlink(a), SHMQ_OK);
    CHECK_STATUS(shmq_log_open(t, &other), SHMQ_NOT_FOUND);
    CHECK_STATUS(shmq_log_unlink(b), SHMQ_OK); /* removing twice is not an error */
    shmq_log_free(a);
    shmq_log_free(b); /* sb keeps the log mapped */
    publish_byte(c, 'y');
    expect_byte(sb, 'y');
    expect_byte(sc, 'y');
    shmq_subscriber_free(sb);
    shmq_subscriber_free(sc);
    shmq_log_free(c);

    /* open_or_create creates; shmq_target_unlink removes */
    const char *t2 = new_target(kind);
    CHECK_STATUS(shmq_log_open_or_create(t2, 8, 2, 0600, SHMQ_LOG_RELIABLE, 0, &a), SHMQ_OK);
    CHECK_STATUS(shmq_log_stats(a, &st), SHMQ_OK);
    CHECK(st.reliable && st.cursor_capacity == 16); /* 0 cursors means 16 */
    shmq_log_free(a);
    CHECK_STATUS(shmq_target_unlink(t2), SHMQ_OK);
    CHECK_STATUS(shmq_log_open(t2, &other), SHMQ_NOT_FOUND);
}

/* ---- overwrite mode: SHMQ_LAGGED and what it writes ---- */

static void test_lagged(void) {
    shmq_log *l = create(new_target("posix"), 16, 4, 0, 0);
    shmq_subscriber *s = subscribe(l, SHMQ_START_LATEST);
    for (uint8_t i = 0; i < 10; i++) {
        uint64_t seq = 777;
        CHECK_STATUS(shmq_log_publish(l, &i, 1, &seq), SHMQ_OK);
        CHECK(seq == i);
    }
    uint8_t buf[16];
    memset(buf, 'z', sizeof buf);
    size_t n = 777;
    uint64_t missed = 777, pos = 777, lag = 777;
    CHECK_STATUS(shmq_subscriber_lag(s, &lag), SHMQ_OK);
    CHECK(lag == 10);
    /* SHMQ_LAGGED writes *missed_out only: not *len_out, not the buffer */
    CHECK_STATUS(shmq_subscriber_recv_try(s, buf, sizeof buf, &n, &missed), SHMQ_LAGGED);
    CHECK(missed == 6 && n == 777 && buf[0] == 'z');
    CHECK(strstr(shmq_last_error(), "missed_out") != NULL);
    CHECK_STATUS(shmq_subscriber_position(s, &pos), SHMQ_OK);
    CHECK(pos == 6); /* at the oldest message still present */
    for (uint8_t i = 6; i < 10; i++) expect_byte(s, i);
    CHECK_STATUS(shmq_subscriber_recv_try(s, buf, sizeof buf, &n, &missed), SHMQ_EMPTY);
    CHECK(strcmp(shmq_last_error(), "no new message") == 0);
    CHECK(n == 777);

    /* NULL missed_out is allowed: the status alone says it lagged; blocking too */
    for (uint8_t i = 10; i < 20; i++) publish_byte(l, i);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, 1000000, &n, NULL), SHMQ_LAGGED);
    CHECK(n == 777);
    expect_byte(s, 16);
    for (uint8_t i = 20; i < 30; i++) publish_byte(l, i);
    missed = 777;
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, SHMQ_WAIT_FOREVER, &n, &missed), SHMQ_LAGGED);
    CHECK(missed == 9);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, SHMQ_WAIT_FOREVER, &n, &missed), SHMQ_OK);
    CHECK(n == 1 && buf[0] == 26 && missed == 9);
    CHECK_STATUS(shmq_subscriber_lag(s, &lag), SHMQ_OK);
    CHECK(lag == 3);

    /* stats: published, lagged total (6 + 6 + 9), oldest */
    shmq_log_counters st;
    CHECK_STATUS(shmq_log_stats(l, &st), SHMQ_OK);
    CHECK(st.published == 30 && st.next_seq == 30 && st.lagged == 21 && st.oldest == 26);
    CHECK(st.tombstones == 0 && st.capacity == 4 && st.cursors == 0 && !st.reliable);

    /* a new subscriber: oldest still present, or the next one */
    shmq_subscriber *old = subscribe(l, SHMQ_START_OLDEST), *late = subscribe(l, SHMQ_START_LATEST);
    CHECK_STATUS(shmq_subscriber_position(old, &pos), SHMQ_OK);
    CHECK(pos == 26);
    expect_byte(old, 26);
    CHECK_STATUS(shmq_subscriber_recv_try(late, buf, sizeof buf, &n, &missed), SHMQ_EMPTY);
    publish_byte(l, 99);
    expect_byte(late, 99);
    shmq_subscriber_free(old);
    shmq_subscriber_free(late);
    shmq_subscriber_free(s);
    shmq_log_free(l);
}

/* ---- publishing and receiving ---- */

struct delayed {
    struct joinable j;
    shmq_log *l;
    shmq_subscriber *s;
    int what; /* 0: publish; 1: receive; 2: close the log */
    shmq_status status;
};

static void *delayed_op(void *arg) {
    struct delayed *d = arg;
    uint8_t buf[64];
    size_t n;
    sleep_ms(20);
    if (d->what == 0) {
        d->status = shmq_log_publish(d->l, (const uint8_t *)"late", 4, NULL);
    } else if (d->what == 1) {
        d->status = shmq_subscriber_recv_try(d->s, buf, sizeof buf, &n, NULL);
    } else {
        d->status = shmq_log_close(d->l);
    }
    d->j.done = 1;
    return NULL;
}

static void start(struct delayed *d, shmq_log *l, shmq_subscriber *s, int what) {
    d->j.done = 0;
    d->l = l;
    d->s = s;
    d->what = what;
    d->status = SHMQ_PANIC;
    pthread_create(&d->j.thread, NULL, delayed_op, d);
}

static void test_operations(void) {
    shmq_log *l = create(new_target("posix"), 16, 8, 0, 0);
    shmq_subscriber *s = subscribe(l, SHMQ_START_LATEST);
    uint8_t buf[64];
    size_t n = 777;
    uint64_t seq = 777, missed = 777;

    /* too large: nothing published */
    memset(buf, 'z', sizeof buf);
    CHECK_STATUS(shmq_log_publish(l, buf, 17, &seq), SHMQ_TOO_LARGE);
    CHECK(strstr(shmq_last_error(), "17") != NULL);
    CHECK_STATUS(shmq_log_publish_block(l, buf, 17, 1000000, &seq), SHMQ_TOO_LARGE);
    CHECK(seq == 777);
    CHECK_STATUS(shmq_log_next_seq(l, &seq), SHMQ_OK);
    CHECK(seq == 0);

    /* empty messages; NULL allowed exactly when the length is 0 */
    CHECK_STATUS(shmq_log_publish(l, NULL, 0, &seq), SHMQ_OK);
    CHECK(seq == 0);
    CHECK_STATUS(shmq_log_publish_block(l, NULL, 0, SHMQ_WAIT_FOREVER, &seq), SHMQ_OK);
    CHECK(seq == 1);
    CHECK_STATUS(shmq_subscriber_recv_try(s, NULL, 0, &n, &missed), SHMQ_OK);
    CHECK(n == 0);
    CHECK_STATUS(shmq_subscriber_recv_block(s, NULL, 0, 0, &n, &missed), SHMQ_OK);
    CHECK(n == 0 && missed == 777);
    CHECK_STATUS(shmq_log_publish(l, NULL, 3, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_publish_block(l, NULL, 3, 0, NULL), SHMQ_NULL_PARAMETER);

    /* a buffer too small: the subscriber stays on the message */
    CHECK_STATUS(shmq_log_publish(l, (const uint8_t *)"hello", 5, &seq), SHMQ_OK);
    CHECK(seq == 2);
    n = 777;
    CHECK_STATUS(shmq_subscriber_recv_try(s, buf, 2, &n, &missed), SHMQ_BUFFER_TOO_SMALL);
    CHECK(strstr(shmq_last_error(), "5 bytes") != NULL);
    CHECK(n == 5); /* the length it needs */
    n = 777;
    CHECK_STATUS(shmq_subscriber_recv_block(s, NULL, 0, 1000000, &n, &missed), SHMQ_BUFFER_TOO_SMALL);
    CHECK(n == 5);
    n = 777;
    CHECK_STATUS(shmq_subscriber_recv_try(s, NULL, 8, &n, &missed), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_recv_block(s, NULL, 8, 0, &n, &missed), SHMQ_NULL_PARAMETER);
    CHECK(n == 777 && missed == 777);
    uint64_t pos = 0;
    CHECK_STATUS(shmq_subscriber_position(s, &pos), SHMQ_OK);
    CHECK(pos == 2);
    CHECK_STATUS(shmq_subscriber_recv_try(s, buf, 5, &n, &missed), SHMQ_OK);
    CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);

    /* timeouts */
    double t0 = now_s();
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, 2000000, &n, &missed), SHMQ_TIMEOUT);
    CHECK(strcmp(shmq_last_error(), "timed out waiting for a message") == 0);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, 0, &n, &missed), SHMQ_TIMEOUT);
    CHECK(now_s() - t0 < 5.0);

    /* a blocked receive wakes when a message is published */
    struct delayed d;
    start(&d, l, NULL, 0);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, 5000000000LL, &n, &missed), SHMQ_OK);
    CHECK(n == 4 && memcmp(buf, "late", 4) == 0);
    join_within(&d.j);
    CHECK(d.status == SHMQ_OK);
    start(&d, l, NULL, 0);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, SHMQ_WAIT_FOREVER, &n, &missed), SHMQ_OK);
    join_within(&d.j);

    /* close: publishes fail; subscribers drain, then get SHMQ_CLOSED */
    shmq_subscriber *other = subscribe(l, SHMQ_START_OLDEST);
    publish_byte(l, 'L');
    CHECK_STATUS(shmq_log_close(l), SHMQ_OK);
    CHECK_STATUS(shmq_log_close(l), SHMQ_OK); /* idempotent */
    bool closed = false;
    CHECK_STATUS(shmq_log_is_closed(l, &closed), SHMQ_OK);
    CHECK(closed);
    CHECK_STATUS(shmq_log_publish(l, buf, 1, &seq), SHMQ_CLOSED);
    CHECK(strcmp(shmq_last_error(), "log is closed") == 0);
    CHECK_STATUS(shmq_log_publish_block(l, buf, 1, SHMQ_WAIT_FOREVER, &seq), SHMQ_CLOSED);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, SHMQ_WAIT_FOREVER, &n, &missed), SHMQ_OK);
    CHECK(n == 1 && buf[0] == 'L');
    n = 777;
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, SHMQ_WAIT_FOREVER, &n, &missed), SHMQ_CLOSED);
    CHECK_STATUS(shmq_subscriber_recv_try(s, buf, sizeof buf, &n, &missed), SHMQ_CLOSED);
    CHECK(n == 777);
    int got = 0;
    while (shmq_subscriber_recv_try(other, buf, sizeof buf, &n, &missed) == SHMQ_OK) got++;
    CHECK(got == 6); /* "", "", "hello", "late", "late", "L" */
    CHECK_STATUS(shmq_subscriber_recv_try(other, buf, sizeof buf, &n, &missed), SHMQ_CLOSED);
    shmq_subscriber_free(other);
    shmq_subscriber_free(s);
    shmq_log_free(l);

    /* a subscriber blocked without a limit wakes when the log is closed */
    l = create(new_target("posix"), 8, 4, 0, 0);
    s = subscribe(l, SHMQ_START_LATEST);
    start(&d, l, NULL, 2);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, SHMQ_WAIT_FOREVER, &n, &missed), SHMQ_CLOSED);
    join_within(&d.j);
    shmq_subscriber_free(s);
    shmq_log_free(l);
}

/* ---- wait strategies ---- */

static void test_wait_strategies(void) {
    shmq_log *l = create(new_target("posix"), 8, 4, 0, 0);
    uint8_t buf[8];
    size_t n;
    CHECK_STATUS(shmq_log_set_wait(l, -1), SHMQ_OK); /* busy-spin: inherited by new subscribers */
    shmq_subscriber *s = subscribe(l, SHMQ_START_LATEST);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, 1000000, &n, NULL), SHMQ_TIMEOUT);
    CHECK_STATUS(shmq_subscriber_set_wait(s, 0), SHMQ_OK); /* sleep at once */
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, 1000000, &n, NULL), SHMQ_TIMEOUT);
    struct delayed d;
    start(&d, l, NULL, 0);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, 5000000000LL, &n, NULL), SHMQ_OK);
    join_within(&d.j);
    CHECK_STATUS(shmq_subscriber_set_wait(s, 100000), SHMQ_OK);
    CHECK_STATUS(shmq_log_set_wait(l, 0), SHMQ_OK);
    publish_byte(l, 1);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, 1000000, &n, NULL), SHMQ_OK);
    shmq_subscriber_free(s);
    shmq_log_free(l);
}

/* ---- reliable mode ---- */

static void test_reliable(void) {
    shmq_log *l = create(new_target("posix"), 8, 4, SHMQ_LOG_RELIABLE, 2);
    uint8_t buf[8];
    size_t n;
    uint64_t seq = 777;

    /* no cursor registered: nobody would read it, so nothing is written */
    for (uint8_t i = 0; i < 6; i++) {
        CHECK_STATUS(shmq_log_publish(l, &i, 1, &seq), SHMQ_NOT_CONNECTED);
        CHECK(seq == 777);
    }
    CHECK(strstr(shmq_last_error(), "nobody is subscribed") != NULL);
    CHECK_STATUS(shmq_log_publish_block(l, buf, 1, 2000000, &seq), SHMQ_NOT_CONNECTED);
    CHECK(seq == 777);
    CHECK_STATUS(shmq_log_next_seq(l, &seq), SHMQ_OK);
    CHECK(seq == 0);
    seq = 777;

    /* a subscriber registers and gates publishers */
    shmq_subscriber *s = subscribe(l, SHMQ_START_LATEST);
    shmq_log_counters st;
    CHECK_STATUS(shmq_log_stats(l, &st), SHMQ_OK);
    CHECK(st.reliable && st.cursors == 1 && st.cursor_capacity == 2);
    for (uint8_t i = 0; i < 4; i++) publish_byte(l, i);
    CHECK_STATUS(shmq_log_publish(l, buf, 1, &seq), SHMQ_FULL);
    CHECK(strstr(shmq_last_error(), "full") != NULL);
    CHECK(seq == 777);
    double t0 = now_s();
    CHECK_STATUS(shmq_log_publish_block(l, buf, 1, 2000000, &seq), SHMQ_TIMEOUT);
    CHECK(strstr(shmq_last_error(), "slowest cursor") != NULL);
    CHECK(now_s() - t0 < 5.0);
    CHECK(seq == 777);
    expect_byte(s, 0);
    CHECK_STATUS(shmq_log_publish(l, (const uint8_t *)"a", 1, &seq), SHMQ_OK);
    CHECK(seq == 4);

    /* a blocked publisher wakes when the subscriber reads */
    struct delayed d;
    start(&d, l, s, 1);
    CHECK_STATUS(shmq_log_publish_block(l, (const uint8_t *)"b", 1, 5000000000LL, &seq), SHMQ_OK);
    CHECK(seq == 5);
    join_within(&d.j);
    CHECK(d.status == SHMQ_OK);
    start(&d, l, s, 1);
    CHECK_STATUS(shmq_log_publish_block(l, (const uint8_t *)"c", 1, SHMQ_WAIT_FOREVER, &seq), SHMQ_OK);
    join_within(&d.j);

    /* the table has 2 entries: a third registration fails */
    shmq_subscriber *s2 = subscribe(l, SHMQ_START_OLDEST), *sentinel = (shmq_subscriber *)(uintptr_t)0x5a5a,
                    *s3 = sentinel;
    CHECK_STATUS(shmq_log_subscribe(l, SHMQ_START_LATEST, &s3), SHMQ_CURSOR_TABLE_FULL);
    CHECK(strstr(shmq_last_error(), "2 entries") != NULL);
    CHECK_STATUS(shmq_log_subscribe_named(l, "named", SHMQ_START_LATEST, &s3), SHMQ_CURSOR_TABLE_FULL);
    CHECK(s3 == sentinel);
    /* freeing a subscriber frees its entry and stops it gating */
    shmq_subscriber_free(s2);
    shmq_subscriber_free(s);
    CHECK_STATUS(shmq_log_stats(l, &st), SHMQ_OK);
    CHECK(st.cursors == 0);
    /* nobody registered again: refused */
    for (int i = 0; i < 8; i++) CHECK_STATUS(shmq_log_publish(l, buf, 1, NULL), SHMQ_NOT_CONNECTED);
    s = subscribe(l, SHMQ_START_OLDEST);
    uint64_t pos = 0;
    CHECK_STATUS(shmq_subscriber_position(s, &pos), SHMQ_OK);
    CHECK(pos == 3); /* where the last subscriber left (and tail 7 minus capacity 4) */
    int got = 0;
    while (shmq_subscriber_recv_try(s, buf, sizeof buf, &n, NULL) == SHMQ_OK) got++;
    CHECK(got == 4);
    CHECK_STATUS(shmq_log_publish(l, buf, 1, &seq), SHMQ_OK);
    CHECK(seq == 7);
    shmq_subscriber_free(s);
    shmq_log_free(l);
}

/* ---- named cursors ---- */

static void test_named_cursors(void) {
    shmq_log *l = create(new_target("posix"), 8, 16, 0, 3);
    shmq_subscriber *sentinel = (shmq_subscriber *)(uintptr_t)0x5a5a, *out = sentinel;
    uint64_t pos = 777;
    for (uint8_t i = 0; i < 5; i++) publish_byte(l, i);

    shmq_subscriber *s = NULL;
    CHECK_STATUS(shmq_log_subscribe_named(l, "billing", SHMQ_START_OLDEST, &s), SHMQ_OK);
    expect_byte(s, 0);
    expect_byte(s, 1);
    CHECK_STATUS(shmq_subscriber_commit(s), SHMQ_OK);
    CHECK_STATUS(shmq_subscriber_committed(s, &pos), SHMQ_OK);
    CHECK(pos == 2);
    expect_byte(s, 2);
    expect_byte(s, 3);
    shmq_cursor_info info;
    memset(&info, 0, sizeof info);
    CHECK_STATUS(shmq_log_cursor(l, "billing", &info), SHMQ_OK);
    CHECK(info.position == 2 && info.read == 4 && info.lag == 3 && info.owner_pid == (uint32_t)getpid());

    /* one subscriber at a time per cursor; a held cursor cannot be removed */
    CHECK_STATUS(shmq_log_subscribe_named(l, "billing", SHMQ_START_OLDEST, &out), SHMQ_CURSOR_IN_USE);
    CHECK(strstr(shmq_last_error(), "billing") != NULL);
    CHECK(out == sentinel);
    CHECK_STATUS(shmq_log_remove_cursor(l, "billing"), SHMQ_CURSOR_IN_USE);

    /* rollback: back to the committed position, re-read */
    pos = 777;
    CHECK_STATUS(shmq_subscriber_rollback(s, &pos), SHMQ_OK);
    CHECK(pos == 2);
    expect_byte(s, 2);
    CHECK_STATUS(shmq_subscriber_rollback(s, NULL), SHMQ_OK);
    expect_byte(s, 2);
    expect_byte(s, 3);
    CHECK_STATUS(shmq_subscriber_commit(s), SHMQ_OK);
    shmq_subscriber_free(s); /* releases the cursor, keeps its position */
    CHECK_STATUS(shmq_log_cursor(l, "billing", &info), SHMQ_OK);
    CHECK(info.position == 4 && info.owner_pid == 0);

    /* resume after the last commit (the start is only for a new cursor) */
    CHECK_STATUS(shmq_log_subscribe_named(l, "billing", SHMQ_START_LATEST, &s), SHMQ_OK);
    CHECK_STATUS(shmq_subscriber_position(s, &pos), SHMQ_OK);
    CHECK(pos == 4);
    expect_byte(s, 4);

    /* create, copy, remove */
    CHECK_STATUS(shmq_log_create_cursor(l, "replay", SHMQ_START_OLDEST), SHMQ_OK);
    CHECK_STATUS(shmq_log_create_cursor(l, "replay", SHMQ_START_LATEST), SHMQ_CURSOR_EXISTS);
    CHECK(strstr(shmq_last_error(), "replay") != NULL);
    CHECK_STATUS(shmq_log_cursor(l, "replay", &info), SHMQ_OK);
    CHECK(info.position == 0 && info.lag == 5 && info.owner_pid == 0);
    CHECK_STATUS(shmq_log_cursor_from(l, "copy", "missing"), SHMQ_CURSOR_NOT_FOUND);
    CHECK(strstr(shmq_last_error(), "missing") != NULL);
    CHECK_STATUS(shmq_log_create_cursor(l, "third", SHMQ_START_LATEST), SHMQ_OK);
    CHECK_STATUS(shmq_log_cursor_from(l, "copy", "billing"), SHMQ_CURSOR_TABLE_FULL); /* 3 entries */
    CHECK(strstr(shmq_last_error(), "3 entries") != NULL);
    CHECK_STATUS(shmq_log_create_cursor(l, "fourth", SHMQ_START_OLDEST), SHMQ_CURSOR_TABLE_FULL);
    CHECK_STATUS(shmq_log_remove_cursor(l, "third"), SHMQ_OK);
    CHECK_STATUS(shmq_log_remove_cursor(l, "replay"), SHMQ_OK);
    CHECK_STATUS(shmq_log_remove_cursor(l, "replay"), SHMQ_CURSOR_NOT_FOUND);
    CHECK_STATUS(shmq_log_cursor(l, "replay", &info), SHMQ_CURSOR_NOT_FOUND);
    CHECK_STATUS(shmq_log_cursor_from(l, "copy", "billing"), SHMQ_OK);
    CHECK_STATUS(shmq_log_cursor_from(l, "copy", "billing"), SHMQ_CURSOR_EXISTS);
    CHECK_STATUS(shmq_log_cursor(l, "copy", &info), SHMQ_OK);
    CHECK(info.position == 4); /* billing's committed position, not its read one */
    shmq_subscriber *c = NULL;
    CHECK_STATUS(shmq_log_subscribe_named(l, "copy", SHMQ_START_LATEST, &c), SHMQ_OK);
    expect_byte(c, 4);
    shmq_subscriber_free(c);
    CHECK_STATUS(shmq_log_remove_cursor(l, "copy"), SHMQ_OK);
    shmq_log_counters st;
    CHECK_STATUS(shmq_log_stats(l, &st), SHMQ_OK);
    CHECK(st.cursors == 1);

    /* unnamed subscribers have no cursor to commit */
    shmq_subscriber *u = subscribe(l, SHMQ_START_OLDEST);
    pos = 777;
    CHECK_STATUS(shmq_subscriber_commit(u), SHMQ_NOT_NAMED);
    CHECK(strstr(shmq_last_error(), "named cursor") != NULL);
    CHECK_STATUS(shmq_subscriber_rollback(u, &pos), SHMQ_NOT_NAMED);
    CHECK_STATUS(shmq_subscriber_committed(u, &pos), SHMQ_NOT_NAMED);
    CHECK(pos == 777);
    shmq_subscriber_free(u);

    /* bad names */
    char long_name[66];
    memset(long_name, 'n', 65);
    long_name[65] = '\0';
    const char *bad[] = {"", long_name, "\xff\xfe"};
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(shmq_log_subscribe_named(l, bad[i], SHMQ_START_OLDEST, &out), SHMQ_INVALID_ARGUMENT);
        CHECK_STATUS(shmq_log_create_cursor(l, bad[i], SHMQ_START_OLDEST), SHMQ_INVALID_ARGUMENT);
        CHECK_STATUS(shmq_log_cursor_from(l, bad[i], "billing"), SHMQ_INVALID_ARGUMENT);
    }
    CHECK(strstr(shmq_last_error(), "UTF-8") != NULL);
    long_name[64] = '\0'; /* 64 bytes: the longest name */
    CHECK_STATUS(shmq_log_create_cursor(l, long_name, SHMQ_START_OLDEST), SHMQ_OK);
    CHECK_STATUS(shmq_log_remove_cursor(l, long_name), SHMQ_OK);
    CHECK(out == sentinel);

    shmq_subscriber_free(s);
    shmq_log_free(l);
}

/* Named cursors of a file-backed log survive every handle and a reopen. */
static void test_file_cursors(void) {
    const char *t = new_target("file");
    shmq_log *l = create(t, 8, 16, SHMQ_LOG_RELIABLE, 0);
    shmq_subscriber *s = NULL;
    CHECK_STATUS(shmq_log_subscribe_named(l, "durable", SHMQ_START_LATEST, &s), SHMQ_OK);
    for (uint8_t i = 0; i < 6; i++) publish_byte(l, i);
    expect_byte(s, 0);
    expect_byte(s, 1);
    expect_byte(s, 2);
    CHECK_STATUS(shmq_subscriber_commit(s), SHMQ_OK);
    expect_byte(s, 3); /* read, not committed */
    CHECK_STATUS(shmq_log_flush(l), SHMQ_OK);
    shmq_subscriber_free(s);
    shmq_log_free(l);

    l = NULL;
    CHECK_STATUS(shmq_log_open(t, &l), SHMQ_OK);
    if (!l) return;
    CHECK_STATUS(shmq_log_subscribe_named(l, "durable", SHMQ_START_LATEST, &s), SHMQ_OK);
    expect_byte(s, 3);
    expect_byte(s, 4);
    expect_byte(s, 5);
    shmq_subscriber_free(s);
    shmq_log_free(l);
}

/* ---- SHMQ_BUSY: the cursor table's lock held by a live process ---- */

/* This process's start time, as /proc/self/stat field 22. */
static uint64_t own_start_time(void) {
    char text[1024] = {0};
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return 0;
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    char *p = strrchr(text, ')');
    if (!p) return 0;
    p++; /* at the space before field 3; move to the one before field 22 */
    for (int field = 3; field < 22 && p; field++) p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void put_u64(const char *path, long off, uint64_t v) {
    uint8_t b[8];
    msg_put(b, v, 8);
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, b, 8, off) == 8);
    if (fd >= 0) close(fd);
}

static void test_busy(void) {
    const char *t = new_target("file");
    const char *path = t + strlen("file:");
    shmq_log *l = create(t, 8, 4, 0, 2);
    /* The header stores the cursor table's offset at byte 80; the table's
     * first word is its lock: pid << 32 | start time, 0 when free. */
    uint8_t b[8] = {0};
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, b, 8, 80) == 8);
    if (fd >= 0) close(fd);
    uint64_t table = msg_get(b, 8);
    CHECK(table > 80 && table % 128 == 0);
    uint64_t start = own_start_time();
    CHECK(start != 0);
    put_u64(path, (long)table, (uint64_t)getpid() << 32 | (start & 0xffffffffu));
    double t0 = now_s();
    CHECK_STATUS(shmq_log_create_cursor(l, "c", SHMQ_START_OLDEST), SHMQ_BUSY); /* after ~5 s */
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    CHECK(strstr(shmq_last_error(), pid) != NULL);
    CHECK(now_s() - t0 < 30.0);
    put_u64(path, (long)table, 0);
    CHECK_STATUS(shmq_log_create_cursor(l, "c", SHMQ_START_OLDEST), SHMQ_OK);
    shmq_log_free(l);
}

/* ---- NULL and bad arguments ---- */

static void test_null_parameters(void) {
    const char *t = new_target("posix");
    shmq_log *l = create(t, 16, 4, 0, 0);
    shmq_subscriber *s = subscribe(l, SHMQ_START_LATEST);
    shmq_log *lsent = (shmq_log *)(uintptr_t)0x5a5a, *lout = lsent;
    shmq_subscriber *ssent = (shmq_subscriber *)(uintptr_t)0x5a5a, *sout = ssent;
    uint8_t buf[16] = {0};
    size_t n = 777;
    uint64_t u = 777;
    uint32_t u32 = 777;
    bool b = true;
    shmq_log_counters st;
    shmq_cursor_info info;

    CHECK_STATUS(shmq_log_create(NULL, 16, 4, 0, 0, 0, &lout), SHMQ_NULL_PARAMETER);
    CHECK(strstr(shmq_last_error(), "target") != NULL);
    CHECK_STATUS(shmq_log_create(new_target("posix"), 16, 4, 0, 0, 0, NULL), SHMQ_NULL_PARAMETER);
    CHECK(strstr(shmq_last_error(), "log_out") != NULL);
    CHECK_STATUS(shmq_log_open(NULL, &lout), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_open(t, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_open_or_create(NULL, 16, 4, 0, 0, 0, &lout), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_open_or_create(t, 16, 4, 0, 0, 0, NULL), SHMQ_NULL_PARAMETER);
    CHECK(lout == lsent);
    shmq_log_free(NULL);        /* accepted, does nothing */
    shmq_subscriber_free(NULL); /* likewise */
    CHECK_STATUS(shmq_log_set_wait(NULL, 0), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_unlink(NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_flush(NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_close(NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_is_closed(NULL, &b), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_is_closed(l, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_slot_size(NULL, &u32), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_slot_size(l, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_capacity(NULL, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_capacity(l, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_next_seq(NULL, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_next_seq(l, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_publish(NULL, buf, 1, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_publish_block(NULL, buf, 1, 0, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_subscribe(NULL, SHMQ_START_LATEST, &sout), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_subscribe(l, SHMQ_START_LATEST, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_subscribe_named(NULL, "a", SHMQ_START_LATEST, &sout), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_subscribe_named(l, NULL, SHMQ_START_LATEST, &sout), SHMQ_NULL_PARAMETER);
    CHECK(strstr(shmq_last_error(), "name") != NULL);
    CHECK_STATUS(shmq_log_subscribe_named(l, "a", SHMQ_START_LATEST, NULL), SHMQ_NULL_PARAMETER);
    CHECK(sout == ssent);
    CHECK_STATUS(shmq_log_create_cursor(NULL, "a", SHMQ_START_LATEST), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_create_cursor(l, NULL, SHMQ_START_LATEST), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_cursor_from(NULL, "a", "b"), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_cursor_from(l, NULL, "b"), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_cursor_from(l, "a", NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_remove_cursor(NULL, "a"), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_remove_cursor(l, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_cursor(NULL, "a", &info), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_cursor(l, NULL, &info), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_cursor(l, "a", NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_stats(NULL, &st), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_stats(l, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_set_wait(NULL, 0), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_recv_try(NULL, buf, sizeof buf, &n, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_recv_try(s, buf, sizeof buf, NULL, &u), SHMQ_NULL_PARAMETER);
    CHECK(strstr(shmq_last_error(), "len_out") != NULL);
    CHECK_STATUS(shmq_subscriber_recv_block(NULL, buf, sizeof buf, 0, &n, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_recv_block(s, buf, sizeof buf, 0, NULL, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_commit(NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_rollback(NULL, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_position(NULL, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_position(s, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_lag(NULL, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_lag(s, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_committed(NULL, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_subscriber_committed(s, NULL), SHMQ_NULL_PARAMETER);
    CHECK(n == 777 && u == 777 && u32 == 777 && b);

    /* the log was not touched by any of this */
    CHECK_STATUS(shmq_log_stats(l, &st), SHMQ_OK);
    CHECK(st.published == 0 && st.cursors == 0);
    shmq_subscriber_free(s);
    shmq_log_free(l);
}

static void test_bad_arguments(void) {
    shmq_log *lsent = (shmq_log *)(uintptr_t)0x5a5a, *out = lsent;
    const char *bad_targets[] = {"", "sysv:xyz", "sysv:0", "posix:", "posix:a/b", "\xff\xfe"};
    for (int i = 0; i < (int)(sizeof bad_targets / sizeof bad_targets[0]); i++) {
        CHECK_STATUS(shmq_log_create(bad_targets[i], 16, 4, 0, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
        CHECK_STATUS(shmq_log_open_or_create(bad_targets[i], 16, 4, 0, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
        CHECK_STATUS(shmq_log_open(bad_targets[i], &out), SHMQ_INVALID_ARGUMENT);
    }
    const char *t = new_target("posix");
    CHECK_STATUS(shmq_log_create(t, 16, 1, 0, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK(strstr(shmq_last_error(), "capacity") != NULL);
    CHECK_STATUS(shmq_log_create(t, 16, UINT64_MAX, 0, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_log_create(t, UINT32_MAX, 4, 0, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_log_create(t, 16, 4, 01777, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_log_create(t, 16, 4, 0, 4, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK(strstr(shmq_last_error(), "flags") != NULL);
    CHECK_STATUS(shmq_log_create(t, 16, 4, 0, 0, 4097, &out), SHMQ_INVALID_ARGUMENT);
    CHECK(strstr(shmq_last_error(), "cursors") != NULL);
    CHECK_STATUS(shmq_log_open_or_create(t, 16, 4, 0, 0, 4097, &out), SHMQ_INVALID_ARGUMENT);
    CHECK(out == lsent);
    CHECK_STATUS(shmq_log_open(t, &out), SHMQ_NOT_FOUND); /* nothing was created */

    shmq_log *l = create(t, 16, 4, 0, 0);
    shmq_subscriber *ssent = (shmq_subscriber *)(uintptr_t)0x5a5a, *s = ssent;
    CHECK_STATUS(shmq_log_subscribe(l, 2, &s), SHMQ_INVALID_ARGUMENT);
    CHECK(strstr(shmq_last_error(), "SHMQ_START_OLDEST") != NULL);
    CHECK_STATUS(shmq_log_subscribe_named(l, "a", 7, &s), SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_log_create_cursor(l, "a", 7), SHMQ_INVALID_ARGUMENT);
    CHECK(s == ssent);
    uint8_t buf[16] = {0};
    size_t n = 777;
    CHECK_STATUS(shmq_log_publish(l, buf, SIZE_MAX, NULL), SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_log_publish(l, buf, 17, NULL), SHMQ_TOO_LARGE);
    s = subscribe(l, SHMQ_START_LATEST);
    CHECK_STATUS(shmq_log_publish(l, buf, 16, NULL), SHMQ_OK);
    CHECK_STATUS(shmq_subscriber_recv_try(s, buf, SIZE_MAX, &n, NULL), SHMQ_INVALID_ARGUMENT);
    CHECK(n == 777);
    CHECK_STATUS(shmq_subscriber_recv_try(s, buf, sizeof buf, &n, NULL), SHMQ_OK);
    CHECK(n == 16);
    shmq_subscriber_free(s);
    shmq_log_free(l);

    /* a damaged log file */
    const char *f = new_target("file");
    l = create(f, 16, 4, 0, 0);
    shmq_log_free(l);
    FILE *fp = fopen(f + strlen("file:"), "r+b");
    CHECK(fp != NULL);
    if (fp) {
        fwrite("garbage!", 1, 8, fp);
        fclose(fp);
    }
    CHECK_STATUS(shmq_log_open(f, &out), SHMQ_CORRUPT);
    CHECK(out == lsent);
}

/* ---- threads: one publisher, subscribers in both modes ---- */

#define T_COUNT 50000
#define T_SUBS 2

struct reader {
    struct joinable j;
    shmq_subscriber *s;
    uint64_t received, lagged;
    int ok;
};

/* Reads until SHMQ_CLOSED; every message must be intact and be exactly the
 * next one, counting those lost to SHMQ_LAGGED as read. */
static void *read_all(void *arg) {
    struct reader *r = arg;
    uint8_t m[64];
    uint64_t expect = 0;
    r->ok = 1;
    for (;;) {
        size_t n = 0;
        uint64_t missed = 0;
        shmq_status s = shmq_subscriber_recv_block(r->s, m, sizeof m, 10000000000LL, &n, &missed);
        if (s == SHMQ_CLOSED) break;
        if (s == SHMQ_LAGGED) {
            r->lagged += missed;
            expect += missed;
            continue;
        }
        uint32_t p = 0;
        uint64_t seq = UINT64_MAX;
        if (s != SHMQ_OK || msg_check(m, n, &p, &seq) != 0 || p != 1 || seq != expect) {
            fprintf(stderr, "reader: %s, message %llu, expected %llu\n", shmq_status_name((int32_t)s),
                    (unsigned long long)seq, (unsigned long long)expect);
            r->ok = 0;
            break;
        }
        expect++;
        r->received++;
    }
    r->j.done = 1;
    return NULL;
}

struct writer {
    struct joinable j;
    shmq_log *l;
    int ok;
};

static void *write_all(void *arg) {
    struct writer *w = arg;
    uint8_t m[64];
    w->ok = 1;
    for (uint64_t seq = 0; seq < T_COUNT; seq++) {
        size_t len = msg_len(seq, sizeof m);
        msg_make(m, len, 1, seq);
        uint64_t got = 0;
        if (shmq_log_publish_block(w->l, m, len, 10000000000LL, &got) != SHMQ_OK || got != seq) {
            w->ok = 0;
            break;
        }
    }
    shmq_log_close(w->l);
    w->j.done = 1;
    return NULL;
}

static void test_threads(uint32_t flags) {
    shmq_log *l = create(new_target("posix"), 64, 32, flags, 0);
    struct reader r[T_SUBS];
    for (int i = 0; i < T_SUBS; i++) {
        r[i] = (struct reader){.s = subscribe(l, SHMQ_START_LATEST)};
        pthread_create(&r[i].j.thread, NULL, read_all, &r[i]);
    }
    struct writer w = {.l = l};
    pthread_create(&w.j.thread, NULL, write_all, &w);
    join_within(&w.j);
    CHECK(w.ok);
    uint64_t lagged = 0;
    for (int i = 0; i < T_SUBS; i++) {
        join_within(&r[i].j);
        CHECK(r[i].ok);
        CHECK(r[i].received + r[i].lagged == T_COUNT);
        if (flags & SHMQ_LOG_RELIABLE) CHECK(r[i].lagged == 0);
        lagged += r[i].lagged;
        shmq_subscriber_free(r[i].s);
    }
    shmq_log_counters st;
    CHECK_STATUS(shmq_log_stats(l, &st), SHMQ_OK);
    CHECK(st.published == T_COUNT && st.lagged == lagged);
    printf("test_log: %s mode, 1 publisher and %d subscriber threads: %d messages each, %llu lost to lag\n",
           flags ? "reliable" : "overwrite", T_SUBS, T_COUNT, (unsigned long long)lagged);
    shmq_log_free(l);
}

/* A single-publisher log: the kind read back, a second publisher refused
 * while the first lives, the role given back on free; batch publish and
 * batch receive, in order, with the statuses of a batch. */
static void test_single_publisher_and_batches(void) {
    const char *t = new_target("posix");
    shmq_log *a = create(t, 8, 4, SHMQ_LOG_SINGLE_PUBLISHER | SHMQ_LOG_RELIABLE, 2);
    uint32_t flags = 777;
    CHECK_STATUS(shmq_log_flags(a, &flags), SHMQ_OK);
    CHECK(flags == (SHMQ_LOG_SINGLE_PUBLISHER | SHMQ_LOG_RELIABLE));
    CHECK_STATUS(shmq_log_flags(a, NULL), SHMQ_NULL_PARAMETER);
    shmq_log *b = NULL;
    CHECK_STATUS(shmq_log_open(t, &b), SHMQ_OK);
    flags = 0;
    CHECK_STATUS(shmq_log_flags(b, &flags), SHMQ_OK);
    CHECK(flags & SHMQ_LOG_SINGLE_PUBLISHER);
    shmq_subscriber *s = subscribe(b, SHMQ_START_LATEST);

    /* "ab", "c", "", "de", "f": five messages packed in one buffer */
    const uint8_t data[] = "abcdef";
    size_t lens[] = {2, 1, 0, 2, 1};
    size_t published = 777;
    CHECK_STATUS(shmq_log_publish_batch(a, data, lens, 5, &published), SHMQ_OK);
    CHECK(published == 4); /* reliable, a ring of 4 */
    CHECK_STATUS(shmq_log_publish_batch(b, data, lens, 1, &published), SHMQ_ROLE_TAKEN);
    CHECK_STATUS(shmq_log_publish(b, data, 1, NULL), SHMQ_ROLE_TAKEN);
    size_t too_long[] = {9};
    CHECK_STATUS(shmq_log_publish_batch(a, (const uint8_t *)"123456789", too_long, 1, &published),
                 SHMQ_TOO_LARGE);
    CHECK_STATUS(shmq_log_publish_batch(a, data, NULL, 1, &published), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_publish_batch(a, data, lens, 1, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_publish_batch(a, data, lens, 1, &published), SHMQ_FULL);

    uint8_t buf[16];
    size_t got[8], count = 777;
    uint64_t missed = 777;
    /* room for 3 bytes: "ab", "c" and "" fit, "de" stays */
    CHECK_STATUS(shmq_subscriber_recv_batch(s, buf, 3, 8, 0, got, &count, &missed), SHMQ_OK);
    CHECK(count == 3 && got[0] == 2 && got[1] == 1 && got[2] == 0 && memcmp(buf, "abc", 3) == 0);
    CHECK(missed == 777);
    CHECK_STATUS(shmq_subscriber_recv_batch(s, buf, sizeof buf, 8, 1000000000, got, &count, &missed),
                 SHMQ_OK);
    CHECK(count == 1 && got[0] == 2 && memcmp(buf, "de", 2) == 0);
    count = 777;
    CHECK_STATUS(shmq_subscriber_recv_batch(s, buf, sizeof buf, 8, 0, got, &count, &missed), SHMQ_EMPTY);
    CHECK_STATUS(shmq_subscriber_recv_batch(s, buf, sizeof buf, 8, 1000000, got, &count, &missed),
                 SHMQ_TIMEOUT);
    CHECK(count == 777);
    CHECK_STATUS(shmq_subscriber_recv_batch(s, buf, sizeof buf, 0, 0, got, &count, &missed),
                 SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_subscriber_recv_batch(s, buf, sizeof buf, 8, 0, NULL, &count, &missed),
                 SHMQ_NULL_PARAMETER);

    /* The holder's handle is freed: the role is free for b. */
    shmq_log_free(a);
    CHECK_STATUS(shmq_log_publish_batch(b, data + 5, lens + 4, 1, &published), SHMQ_OK);
    CHECK(published == 1);
    expect_byte(s, 'f');
    shmq_subscriber_free(s);
    shmq_log_free(b);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_log: timed out after 120 s\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(2);
    remove_targets();
    _exit(1);
}

int main(void) {
    atexit(remove_targets);
    signal(SIGALRM, on_alarm); /* a watchdog: every wait in this test is bounded */
    alarm(120);
    test_backing("sysv");
    test_backing("posix");
    test_backing("file");
    test_lagged();
    test_operations();
    test_wait_strategies();
    test_reliable();
    test_named_cursors();
    test_file_cursors();
    test_null_parameters();
    test_bad_arguments();
    test_threads(0);
    test_threads(SHMQ_LOG_RELIABLE);
    test_busy();
    test_single_publisher_and_batches();
    if (failures) {
        fprintf(stderr, "test_log: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("test_log: %d checks passed\n", checks);
    return 0;
}
