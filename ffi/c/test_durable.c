/* Durable cursors declared when a log is created
 * (shmq_log_create_with_cursors, shmq_log_open_or_create_with_cursors), and
 * SHMQ_NOT_CONNECTED: a reliable log with nobody registered refuses to
 * publish. Both kinds of log (many publishers, one publisher).
 *
 * Every log is registered and removed at exit, also after a failed check. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "shmq.h"

static shmq_log *create_with(const char *t, uint64_t cap, uint32_t flags, uint32_t cursors,
                             const char *const *names, size_t n) {
    shmq_log *l = NULL;
    CHECK_STATUS(shmq_log_create_with_cursors(t, 16, cap, 0, flags, cursors, names, n, &l), SHMQ_OK);
    if (l == NULL) {
        fprintf(stderr, "cannot continue without a log\n");
        exit(1);
    }
    return l;
}

/* The scenario: a 4-slot reliable log with a declared cursor, 10
 * publishes: 4 go, the rest are SHMQ_FULL; a subscriber that resumes the
 * cursor later reads messages 1 to 4, nothing lost. */
static void test_declared_cursor_is_lossless(uint32_t kind) {
    const char *t = new_target("posix");
    const char *names[] = {"audit"};
    shmq_log *l = create_with(t, 4, SHMQ_LOG_RELIABLE | kind, 0, names, 1);
    char msg[16];
    for (int i = 1; i <= 10; i++) {
        snprintf(msg, sizeof msg, "m%d", i);
        uint64_t seq = 777;
        shmq_status st = shmq_log_publish(l, (const uint8_t *)msg, strlen(msg), &seq);
        if (i <= 4) {
            CHECK(st == SHMQ_OK && seq == (uint64_t)(i - 1));
        } else {
            CHECK(st == SHMQ_FULL && seq == 777);
        }
    }
    shmq_cursor_info info;
    CHECK_STATUS(shmq_log_cursor(l, "audit", &info), SHMQ_OK);
    CHECK(info.position == 0 && info.lag == 4);

    shmq_log *reader = NULL;
    CHECK_STATUS(shmq_log_open(t, &reader), SHMQ_OK);
    shmq_subscriber *s = NULL;
    CHECK_STATUS(shmq_log_subscribe_named(reader, "audit", SHMQ_START_LATEST, &s), SHMQ_OK);
    uint8_t buf[16];
    size_t n = 0;
    for (int i = 1; i <= 4; i++) {
        snprintf(msg, sizeof msg, "m%d", i);
        CHECK_STATUS(shmq_subscriber_recv_try(s, buf, sizeof buf, &n, NULL), SHMQ_OK);
        CHECK(n == strlen(msg) && memcmp(buf, msg, n) == 0);
    }
    CHECK_STATUS(shmq_subscriber_recv_try(s, buf, sizeof buf, &n, NULL), SHMQ_EMPTY);
    shmq_log_counters c;
    CHECK_STATUS(shmq_log_stats(l, &c), SHMQ_OK);
    CHECK(c.lagged == 0 && c.cursors == 1);
    shmq_subscriber_free(s);
    shmq_log_free(reader);
    shmq_log_free(l);
}

struct late_subscriber {
    shmq_log *log;
    shmq_subscriber *sub;
    volatile int done;
};

static void *subscribe_later(void *arg) {
    struct late_subscriber *ls = arg;
    sleep_ms(20);
    shmq_log_subscribe(ls->log, SHMQ_START_OLDEST, &ls->sub);
    ls->done = 1;
    return NULL;
}

/* Nobody registered: SHMQ_NOT_CONNECTED, nothing written, also for a
 * batch and after a timed wait; a subscriber registers and the same
 * publish goes; a blocked publish goes when one registers. */
static void test_not_connected(uint32_t kind) {
    shmq_log *l = create_with(new_target("posix"), 4, SHMQ_LOG_RELIABLE | kind, 0, NULL, 0);
    uint64_t seq = 777;
    CHECK_STATUS(shmq_log_publish(l, (const uint8_t *)"hello", 5, &seq), SHMQ_NOT_CONNECTED);
    CHECK(seq == 777);
    CHECK(strstr(shmq_last_error(), "nobody is subscribed") != NULL);
    size_t lens[2] = {1, 1}, published = 777;
    CHECK_STATUS(shmq_log_publish_batch(l, (const uint8_t *)"ab", lens, 2, &published), SHMQ_NOT_CONNECTED);
    CHECK(published == 777);
    double t0 = now_s();
    CHECK_STATUS(shmq_log_publish_block(l, (const uint8_t *)"hello", 5, 20000000, &seq), SHMQ_NOT_CONNECTED);
    CHECK(now_s() - t0 >= 0.015); /* it waited for its deadline, not less */
    CHECK(seq == 777);
    CHECK_STATUS(shmq_log_next_seq(l, &seq), SHMQ_OK);
    CHECK(seq == 0);

    shmq_subscriber *s = NULL;
    CHECK_STATUS(shmq_log_subscribe(l, SHMQ_START_LATEST, &s), SHMQ_OK);
    CHECK_STATUS(shmq_log_publish(l, (const uint8_t *)"hello", 5, &seq), SHMQ_OK);
    CHECK(seq == 0);
    shmq_subscriber_free(s);
    CHECK_STATUS(shmq_log_publish(l, (const uint8_t *)"again", 5, NULL), SHMQ_NOT_CONNECTED);

    /* a blocked publish sleeps until someone registers */
    struct late_subscriber ls = {l, NULL, 0};
    pthread_t th;
    pthread_create(&th, NULL, subscribe_later, &ls);
    CHECK_STATUS(shmq_log_publish_block(l, (const uint8_t *)"late", 4, 10000000000LL, &seq), SHMQ_OK);
    CHECK(seq == 1);
    for (int i = 0; i < 10000 && !ls.done; i++) sleep_ms(1);
    pthread_join(th, NULL);
    CHECK(ls.sub != NULL);
    uint8_t buf[16];
    size_t n = 0;
    CHECK_STATUS(shmq_subscriber_recv_try(ls.sub, buf, sizeof buf, &n, NULL), SHMQ_OK);
    CHECK(n == 5 && memcmp(buf, "hello", 5) == 0); /* Oldest: where the last one left */
    CHECK_STATUS(shmq_subscriber_recv_try(ls.sub, buf, sizeof buf, &n, NULL), SHMQ_OK);
    CHECK(n == 4 && memcmp(buf, "late", 4) == 0);
    shmq_subscriber_free(ls.sub);
    shmq_log_free(l);

    /* overwrite mode is unchanged: publishing with nobody is fine */
    l = create_with(new_target("posix"), 4, kind, 0, NULL, 0);
    for (int i = 0; i < 10; i++) CHECK_STATUS(shmq_log_publish(l, (const uint8_t *)"x", 1, NULL), SHMQ_OK);
    shmq_log_free(l);
}

static void test_bad_declarations(void) {
    char long_name[66];
    memset(long_name, 'n', 65);
    long_name[65] = '\0';
    const char *empty[] = {""}, *too_long[] = {long_name}, *not_utf8[] = {"\xff\xfe"},
               *twice[] = {"a", "b", "a"}, *three[] = {"a", "b", "c"}, *with_null[] = {"a", NULL};
    shmq_log *sentinel = (shmq_log *)(uintptr_t)0x5a5a, *out = sentinel;
    const char *t = new_target("posix");
    CHECK_STATUS(shmq_log_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, empty, 1, &out),
                 SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_log_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, too_long, 1, &out),
                 SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_log_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, not_utf8, 1, &out),
                 SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_log_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, twice, 3, &out),
                 SHMQ_INVALID_ARGUMENT);
    CHECK(strstr(shmq_last_error(), "twice") != NULL);
    CHECK_STATUS(shmq_log_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 2, three, 3, &out),
                 SHMQ_INVALID_ARGUMENT);
    CHECK(strstr(shmq_last_error(), "room for 2 cursors") != NULL);
    CHECK_STATUS(shmq_log_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, with_null, 2, &out),
                 SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, NULL, 1, &out),
                 SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_create_with_cursors(NULL, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, empty, 1, &out),
                 SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, three, 3, NULL),
                 SHMQ_NULL_PARAMETER);
    CHECK(out == sentinel);
    /* nothing was left behind */
    CHECK_STATUS(shmq_log_open(t, &out), SHMQ_NOT_FOUND);
    CHECK(out == sentinel);
}

static void test_open_or_create(void) {
    const char *t = new_target("posix");
    const char *ab[] = {"a", "b"}, *b[] = {"b"}, *c[] = {"c"};
    shmq_log *first = NULL, *again = NULL, *other = NULL;
    CHECK_STATUS(shmq_log_open_or_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, ab, 2, &first),
                 SHMQ_OK);
    CHECK_STATUS(shmq_log_publish(first, (const uint8_t *)"0", 1, NULL), SHMQ_OK);
    /* existing, holding the declared cursors: accepted */
    CHECK_STATUS(shmq_log_open_or_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, ab, 2, &again),
                 SHMQ_OK);
    shmq_log_free(again);
    again = NULL;
    CHECK_STATUS(shmq_log_open_or_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, b, 1, &again),
                 SHMQ_OK);
    /* one it lacks: incompatible, and not created */
    CHECK_STATUS(shmq_log_open_or_create_with_cursors(t, 16, 4, 0, SHMQ_LOG_RELIABLE, 0, c, 1, &other),
                 SHMQ_INCOMPATIBLE);
    CHECK(strstr(shmq_last_error(), "\"c\"") != NULL);
    CHECK(other == NULL);
    shmq_cursor_info info;
    CHECK_STATUS(shmq_log_cursor(first, "c", &info), SHMQ_CURSOR_NOT_FOUND);
    shmq_log_free(again);
    shmq_log_free(first);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_durable: watchdog expired\n";
    (void)!write(2, msg, sizeof msg - 1);
    remove_targets();
    _exit(1);
}

int main(void) {
    atexit(remove_targets);
    signal(SIGALRM, on_alarm); /* a watchdog: every wait in this test is bounded */
    alarm(60);
    test_declared_cursor_is_lossless(0);
    test_declared_cursor_is_lossless(SHMQ_LOG_SINGLE_PUBLISHER);
    test_not_connected(0);
    test_not_connected(SHMQ_LOG_SINGLE_PUBLISHER);
    test_bad_declarations();
    test_open_or_create();
    if (failures) {
        fprintf(stderr, "test_durable: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("test_durable: %d checks passed\n", checks);
    return 0;
}
