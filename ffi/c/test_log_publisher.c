/* The log's publisher role handle (shmq_log_publisher, shmq_publisher_*)
 * from C. On a single-publisher log: the role is taken by the handle,
 * refused to a second one (in this process, through the log handle, or in
 * another process) while it lives, and given back by free; every message
 * published through it reaches a subscriber in order; a blocking publish on
 * a full reliable log times out; NULL arguments are refused. On a
 * multi-publisher log publisher handles simply forward. Every wait is
 * bounded (and a watchdog ends the test); targets are removed at exit. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check.h"

#define SECOND 1000000000LL
#define MESSAGES 100000

static shmq_log *create(const char *target, uint64_t cap, uint32_t flags) {
    shmq_log *l = NULL;
    CHECK_STATUS(shmq_log_create(target, 32, cap, 0, flags, 0, &l), SHMQ_OK);
    if (l == NULL) {
        fprintf(stderr, "cannot continue without a log\n");
        exit(1);
    }
    return l;
}

/* Exit status of pid, or -1 if it did not exit within ms (it is then killed). */
static int wait_child(pid_t pid, int ms) {
    for (int waited = 0;; waited++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        if (waited >= ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(1);
    }
}

static void role_is_exclusive_until_freed(void) {
    const char *t = new_target("posix");
    shmq_log *l = create(t, 8, SHMQ_LOG_SINGLE_PUBLISHER);
    shmq_publisher *p = NULL, *p2 = NULL;
    CHECK_STATUS(shmq_log_publisher(l, &p), SHMQ_OK);
    CHECK_STATUS(shmq_log_publisher(l, &p2), SHMQ_ROLE_TAKEN);
    CHECK(p2 == NULL);
    CHECK(strlen(shmq_last_error()) > 0);
    /* The log handle cannot publish behind the publisher's back. */
    CHECK_STATUS(shmq_log_publish(l, (const uint8_t *)"x", 1, NULL), SHMQ_ROLE_TAKEN);

    /* Another process is refused too, while this one holds the role. */
    pid_t child = fork();
    if (child == 0) {
        shmq_log *cl = NULL;
        shmq_publisher *cp = NULL;
        if (shmq_log_open(t, &cl) != SHMQ_OK) _exit(2);
        shmq_status s = shmq_log_publisher(cl, &cp);
        _exit(s == SHMQ_ROLE_TAKEN && cp == NULL ? 0 : 3);
    }
    CHECK(wait_child(child, 10000) == 0);

    uint64_t seq = 99;
    CHECK_STATUS(shmq_publisher_publish(p, (const uint8_t *)"a", 1, &seq), SHMQ_OK);
    CHECK(seq == 0);
    CHECK_STATUS(shmq_publisher_next_seq(p, &seq), SHMQ_OK);
    CHECK(seq == 1);

    /* Freed, the role goes back: another handle takes it. */
    shmq_publisher_free(p);
    CHECK_STATUS(shmq_log_publisher(l, &p2), SHMQ_OK);
    CHECK_STATUS(shmq_publisher_publish(p2, (const uint8_t *)"b", 1, &seq), SHMQ_OK);
    CHECK(seq == 1);
    shmq_publisher_free(p2);

    /* A log handle that has published holds the role until it is freed. */
    CHECK_STATUS(shmq_log_publish(l, (const uint8_t *)"c", 1, &seq), SHMQ_OK);
    CHECK(seq == 2);
    p2 = NULL;
    CHECK_STATUS(shmq_log_publisher(l, &p2), SHMQ_ROLE_TAKEN);
    CHECK(p2 == NULL);
    shmq_log *again = NULL;
    CHECK_STATUS(shmq_log_open(t, &again), SHMQ_OK);
    shmq_log_free(l);
    CHECK_STATUS(shmq_log_publisher(again, &p2), SHMQ_OK);
    CHECK_STATUS(shmq_publisher_publish(p2, (const uint8_t *)"d", 1, &seq), SHMQ_OK);
    CHECK(seq == 3);
    shmq_publisher_free(p2);

    /* A role asked for after the log was unlinked. */
    CHECK_STATUS(shmq_log_unlink(again), SHMQ_OK);
    p2 = NULL;
    CHECK_STATUS(shmq_log_publisher(again, &p2), SHMQ_NOT_FOUND);
    CHECK(p2 == NULL);
    shmq_log_free(again);
}

struct reader {
    shmq_subscriber *sub;
    long received;
    long out_of_order;
    shmq_status last;
};

static void *read_all(void *arg) {
    struct reader *r = arg;
    uint8_t buf[32];
    size_t n = 0;
    for (uint64_t want = 0; want < MESSAGES; want++) {
        r->last = shmq_subscriber_recv_block(r->sub, buf, sizeof buf, 10 * SECOND, &n, NULL);
        if (r->last != SHMQ_OK) return NULL;
        uint64_t got = 0;
        if (n == sizeof got) memcpy(&got, buf, sizeof got);
        if (n != sizeof got || got != want) r->out_of_order++;
        r->received++;
    }
    return NULL;
}

/* Every message published through the handle (one at a time and in
 * batches, waiting for room in reliable mode) reaches a subscriber on
 * another thread, in order. */
static void messages_arrive_in_order(void) {
    const char *t = new_target("posix");
    shmq_log *l = create(t, 64, SHMQ_LOG_SINGLE_PUBLISHER | SHMQ_LOG_RELIABLE);
    struct reader r = {0};
    CHECK_STATUS(shmq_log_subscribe(l, SHMQ_START_OLDEST, &r.sub), SHMQ_OK);
    shmq_publisher *p = NULL;
    CHECK_STATUS(shmq_log_publisher(l, &p), SHMQ_OK);
    if (!r.sub || !p) return;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, read_all, &r) == 0);

    uint64_t i = 0, seq = 0;
    int publish_failed = 0;
    while (i < MESSAGES && !publish_failed) {
        if (i % 1000 < 900) {
            shmq_status s = shmq_publisher_publish_block(p, (const uint8_t *)&i, sizeof i, 10 * SECOND, &seq);
            if (s != SHMQ_OK || seq != i) publish_failed = 1;
            i++;
            continue;
        }
        /* Batches of up to 4, retried while the log is full. */
        uint64_t data[4];
        size_t lens[4], k = 0;
        for (; k < 4 && i + k < MESSAGES; k++) {
            data[k] = i + k;
            lens[k] = sizeof data[k];
        }
        size_t done = 0;
        double until = now_s() + 10;
        shmq_status s;
        while ((s = shmq_publisher_publish_batch(p, (const uint8_t *)data, lens, k, &done)) == SHMQ_FULL &&
               now_s() < until)
            sleep_ms(0);
        if (s != SHMQ_OK) publish_failed = 1;
        else i += done;
    }
    CHECK(!publish_failed);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_STATUS(r.last, SHMQ_OK);
    CHECK(r.received == MESSAGES);
    CHECK(r.out_of_order == 0);

    /* Closed through the handle: publishes fail, the subscriber is told. */
    CHECK_STATUS(shmq_publisher_close(p), SHMQ_OK);
    CHECK_STATUS(shmq_publisher_close(p), SHMQ_OK);
    CHECK_STATUS(shmq_publisher_publish(p, (const uint8_t *)"z", 1, NULL), SHMQ_CLOSED);
    uint8_t buf[32];
    size_t n = 0;
    CHECK_STATUS(shmq_subscriber_recv_block(r.sub, buf, sizeof buf, SECOND, &n, NULL), SHMQ_CLOSED);
    shmq_publisher_free(p);
    shmq_subscriber_free(r.sub);
    shmq_log_unlink(l);
    shmq_log_free(l);
}

/* A full reliable log: the blocking publish times out, the try fails with
 * FULL, and the sequence output is left alone. */
static void blocking_publish_times_out_when_full(void) {
    const char *t = new_target("posix");
    shmq_log *l = create(t, 4, SHMQ_LOG_SINGLE_PUBLISHER | SHMQ_LOG_RELIABLE);
    shmq_subscriber *sub = NULL;
    CHECK_STATUS(shmq_log_subscribe(l, SHMQ_START_LATEST, &sub), SHMQ_OK);
    shmq_publisher *p = NULL;
    CHECK_STATUS(shmq_log_publisher(l, &p), SHMQ_OK);
    if (!sub || !p) return;
    uint64_t seq = 0;
    for (int i = 0; i < 4; i++) CHECK_STATUS(shmq_publisher_publish(p, (const uint8_t *)"m", 1, &seq), SHMQ_OK);
    seq = 77;
    CHECK_STATUS(shmq_publisher_publish(p, (const uint8_t *)"m", 1, &seq), SHMQ_FULL);
    double t0 = now_s();
    CHECK_STATUS(shmq_publisher_publish_block(p, (const uint8_t *)"m", 1, 50000000, &seq), SHMQ_TIMEOUT);
    double took = now_s() - t0;
    CHECK(took >= 0.045 && took < 5);
    CHECK(seq == 77);
    /* One read makes room for one more. */
    uint8_t buf[32];
    size_t n = 0;
    CHECK_STATUS(shmq_subscriber_recv_try(sub, buf, sizeof buf, &n, NULL), SHMQ_OK);
    CHECK_STATUS(shmq_publisher_publish_block(p, (const uint8_t *)"m", 1, SECOND, &seq), SHMQ_OK);
    CHECK(seq == 4);
    shmq_publisher_free(p);
    shmq_subscriber_free(sub);
    shmq_log_unlink(l);
    shmq_log_free(l);
}

/* On a multi-publisher log publisher handles are not exclusive. */
static void multi_publisher_handles_forward(void) {
    const char *t = new_target("posix");
    shmq_log *l = create(t, 8, 0);
    shmq_subscriber *sub = NULL;
    CHECK_STATUS(shmq_log_subscribe(l, SHMQ_START_LATEST, &sub), SHMQ_OK);
    shmq_publisher *a = NULL, *b = NULL;
    CHECK_STATUS(shmq_log_publisher(l, &a), SHMQ_OK);
    CHECK_STATUS(shmq_log_publisher(l, &b), SHMQ_OK);
    if (!sub || !a || !b) return;
    uint64_t seq = 0;
    CHECK_STATUS(shmq_publisher_publish(a, (const uint8_t *)"a", 1, &seq), SHMQ_OK);
    CHECK_STATUS(shmq_publisher_publish(b, (const uint8_t *)"b", 1, &seq), SHMQ_OK);
    CHECK_STATUS(shmq_log_publish(l, (const uint8_t *)"c", 1, &seq), SHMQ_OK);
    CHECK(seq == 2);
    const char *want[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        uint8_t buf[32];
        size_t n = 0;
        CHECK_STATUS(shmq_subscriber_recv_block(sub, buf, sizeof buf, SECOND, &n, NULL), SHMQ_OK);
        CHECK(n == 1 && buf[0] == want[i][0]);
    }
    shmq_publisher_free(a);
    shmq_publisher_free(b);
    shmq_subscriber_free(sub);
    shmq_log_unlink(l);
    shmq_log_free(l);
}

static void null_arguments_are_refused(void) {
    const char *t = new_target("posix");
    shmq_log *l = create(t, 4, SHMQ_LOG_SINGLE_PUBLISHER);
    shmq_publisher *p = NULL;
    uint64_t seq = 0;
    size_t n = 0, lens[1] = {1};
    CHECK_STATUS(shmq_log_publisher(NULL, &p), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_log_publisher(l, NULL), SHMQ_NULL_PARAMETER);
    CHECK(p == NULL);
    CHECK_STATUS(shmq_publisher_publish(NULL, (const uint8_t *)"x", 1, &seq), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_publisher_publish_block(NULL, (const uint8_t *)"x", 1, 0, &seq), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_publisher_publish_batch(NULL, (const uint8_t *)"x", lens, 1, &n), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_publisher_next_seq(NULL, &seq), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_publisher_close(NULL), SHMQ_NULL_PARAMETER);
    shmq_publisher_free(NULL);

    CHECK_STATUS(shmq_log_publisher(l, &p), SHMQ_OK);
    if (!p) return;
    CHECK_STATUS(shmq_publisher_publish(p, NULL, 1, &seq), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_publisher_publish_block(p, NULL, 1, 0, &seq), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_publisher_publish_batch(p, (const uint8_t *)"x", lens, 1, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_publisher_publish_batch(p, (const uint8_t *)"x", NULL, 1, &n), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_publisher_publish_batch(p, NULL, lens, 1, &n), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_publisher_next_seq(p, NULL), SHMQ_NULL_PARAMETER);
    /* None of those published; an empty message with a NULL pointer and a
     * NULL seq_out are fine. */
    CHECK_STATUS(shmq_publisher_next_seq(p, &seq), SHMQ_OK);
    CHECK(seq == 0);
    CHECK_STATUS(shmq_publisher_publish(p, NULL, 0, NULL), SHMQ_OK);
    CHECK_STATUS(shmq_publisher_publish(p, (const uint8_t *)"toolongtoolongtoolongtoolongtoolong", 35, NULL),
                 SHMQ_TOO_LARGE);
    shmq_publisher_free(p);
    shmq_log_unlink(l);
    shmq_log_free(l);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_log_publisher: timed out after 120 s\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(2);
    remove_targets();
    _exit(1);
}

int main(void) {
    atexit(remove_targets);
    signal(SIGALRM, on_alarm); /* a watchdog: every wait in this test is bounded */
    alarm(120);
    role_is_exclusive_until_freed();
    messages_arrive_in_order();
    blocking_publish_times_out_when_full();
    multi_publisher_handles_forward();
    null_arguments_are_refused();
    if (failures) {
        fprintf(stderr, "test_log_publisher: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("test_log_publisher: %d checks passed\n", checks);
    return 0;
}
