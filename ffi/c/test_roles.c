/* Role handles (shmq_producer, shmq_consumer) and the needed length of
 * SHMQ_BUFFER_TOO_SMALL, from C. Roles: taken by shmq_queue_producer/
 * consumer, refused to a second taker in this process or another, released
 * by free; messages flow from a producer in a child process to a consumer
 * in the parent. Every wait has a timeout; targets are removed at exit. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check.h"

#define SECOND 1000000000LL

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

static void roles_are_exclusive_and_free_releases(void) {
    const char *t = new_target("posix");
    shmq_queue *q = NULL;
    CHECK_STATUS(shmq_queue_create(t, 64, 8, 0, SHMQ_QUEUE_SPSC, &q), SHMQ_OK);
    if (!q) return;
    shmq_producer *p = NULL, *p2 = NULL;
    shmq_consumer *c = NULL, *c2 = NULL;
    CHECK_STATUS(shmq_queue_producer(q, &p), SHMQ_OK);
    CHECK_STATUS(shmq_queue_producer(q, &p2), SHMQ_ROLE_TAKEN);
    CHECK(p2 == NULL);
    CHECK(strlen(shmq_last_error()) > 0);
    CHECK_STATUS(shmq_queue_consumer(q, &c), SHMQ_OK);
    CHECK_STATUS(shmq_queue_consumer(q, &c2), SHMQ_ROLE_TAKEN);
    CHECK(c2 == NULL);
    /* The queue handle cannot take a role a role handle holds. */
    CHECK_STATUS(shmq_queue_enqueue_try(q, (const uint8_t *)"x", 1), SHMQ_ROLE_TAKEN);
    uint8_t buf[64];
    size_t n = 0;
    CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, &n), SHMQ_ROLE_TAKEN);

    /* Another process is refused too, while this one holds the role. */
    pid_t child = fork();
    if (child == 0) {
        shmq_queue *cq = NULL;
        shmq_producer *cp = NULL;
        if (shmq_queue_open(t, &cq) != SHMQ_OK) _exit(2);
        shmq_status s = shmq_queue_producer(cq, &cp);
        _exit(s == SHMQ_ROLE_TAKEN && cp == NULL ? 0 : 3);
    }
    CHECK(wait_child(child, 10000) == 0);

    CHECK_STATUS(shmq_producer_enqueue_try(p, (const uint8_t *)"one", 3), SHMQ_OK);
    CHECK_STATUS(shmq_producer_enqueue_block(p, (const uint8_t *)"two", 3, SECOND), SHMQ_OK);
    CHECK_STATUS(shmq_consumer_dequeue_try(c, buf, sizeof buf, &n), SHMQ_OK);
    CHECK(n == 3 && memcmp(buf, "one", 3) == 0);
    CHECK_STATUS(shmq_consumer_dequeue_block(c, buf, sizeof buf, SECOND, &n), SHMQ_OK);
    CHECK(n == 3 && memcmp(buf, "two", 3) == 0);
    CHECK_STATUS(shmq_consumer_dequeue_block(c, buf, sizeof buf, 1000000, &n), SHMQ_TIMEOUT);

    /* Freeing releases: the role can be taken again, by a role handle or
     * by the queue handle itself, which leases it for one call only and so
     * keeps none between calls. */
    shmq_producer_free(p);
    CHECK_STATUS(shmq_queue_producer(q, &p2), SHMQ_OK);
    CHECK_STATUS(shmq_queue_enqueue_try(q, (const uint8_t *)"x", 1), SHMQ_ROLE_TAKEN);
    shmq_producer_free(p2);
    CHECK_STATUS(shmq_queue_enqueue_try(q, (const uint8_t *)"q", 1), SHMQ_OK);
    CHECK_STATUS(shmq_queue_producer(q, &p2), SHMQ_OK);
    shmq_producer_free(p2);
    shmq_consumer_free(c);
    CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, &n), SHMQ_OK);
    CHECK(n == 1 && buf[0] == 'q');

    /* NULL arguments, and a role asked for after the queue was unlinked. */
    CHECK_STATUS(shmq_queue_producer(NULL, &p2), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_consumer(q, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_producer_enqueue_try(NULL, NULL, 0), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_consumer_dequeue_try(NULL, buf, sizeof buf, &n), SHMQ_NULL_PARAMETER);
    shmq_producer_free(NULL);
    shmq_consumer_free(NULL);
    CHECK_STATUS(shmq_queue_unlink(q), SHMQ_OK);
    c2 = NULL;
    CHECK_STATUS(shmq_queue_consumer(q, &c2), SHMQ_NOT_FOUND);
    CHECK(c2 == NULL);
    shmq_queue_free(q);
}

/* On a multi-producer queue role handles are not exclusive. */
static void mpmc_role_handles_forward(void) {
    const char *t = new_target("posix");
    shmq_queue *q = NULL;
    CHECK_STATUS(shmq_queue_create(t, 16, 4, 0, 0, &q), SHMQ_OK);
    if (!q) return;
    shmq_producer *a = NULL, *b = NULL;
    shmq_consumer *c = NULL;
    CHECK_STATUS(shmq_queue_producer(q, &a), SHMQ_OK);
    CHECK_STATUS(shmq_queue_producer(q, &b), SHMQ_OK);
    CHECK_STATUS(shmq_queue_consumer(q, &c), SHMQ_OK);
    CHECK_STATUS(shmq_producer_enqueue_try(a, (const uint8_t *)"a", 1), SHMQ_OK);
    CHECK_STATUS(shmq_producer_enqueue_try(b, (const uint8_t *)"b", 1), SHMQ_OK);
    CHECK_STATUS(shmq_queue_enqueue_try(q, (const uint8_t *)"q", 1), SHMQ_OK);
    shmq_iovec iov[2] = {{(const uint8_t *)"c", 1}, {(const uint8_t *)"d", 1}};
    size_t k = 0;
    CHECK_STATUS(shmq_producer_enqueue_batch(a, iov, 2, 0, &k), SHMQ_OK);
    CHECK(k == 1); /* one slot was left */
    uint8_t buf[16];
    size_t lens[4] = {0}, n = 0;
    CHECK_STATUS(shmq_consumer_dequeue_batch(c, buf, sizeof buf, lens, 4, 0, &n), SHMQ_OK);
    CHECK(n == 4 && memcmp(buf, "abqc", 4) == 0);
    CHECK_STATUS(shmq_consumer_dequeue_batch(c, buf, sizeof buf, lens, 4, 0, &n), SHMQ_EMPTY);
    /* With a timeout it waits, and times out on an empty queue. */
    CHECK_STATUS(shmq_consumer_dequeue_batch(c, buf, sizeof buf, lens, 4, 1000000, &n), SHMQ_TIMEOUT);
    CHECK_STATUS(shmq_producer_close(a), SHMQ_OK);
    CHECK_STATUS(shmq_producer_enqueue_try(b, (const uint8_t *)"e", 1), SHMQ_CLOSED);
    CHECK_STATUS(shmq_consumer_dequeue_try(c, buf, sizeof buf, &n), SHMQ_CLOSED);
    shmq_producer_free(a);
    shmq_producer_free(b);
    shmq_consumer_free(c);
    shmq_queue_unlink(q);
    shmq_queue_free(q);
}

#define FLOW 20000

/* A producer in a child process, a consumer here: every message arrives,
 * intact and in order. */
static void messages_flow_between_processes(void) {
    const char *t = new_target("posix");
    shmq_queue *q = NULL;
    CHECK_STATUS(shmq_queue_create(t, 64, 64, 0, SHMQ_QUEUE_SPSC, &q), SHMQ_OK);
    if (!q) return;
    shmq_consumer *c = NULL;
    CHECK_STATUS(shmq_queue_consumer(q, &c), SHMQ_OK);
    if (!c) return;
    pid_t child = fork();
    if (child == 0) {
        shmq_queue *cq = NULL;
        shmq_producer *p = NULL;
        if (shmq_queue_open(t, &cq) != SHMQ_OK || shmq_queue_producer(cq, &p) != SHMQ_OK) _exit(2);
        shmq_queue_free(cq); /* the producer does not need it */
        for (uint32_t i = 0; i < FLOW; i++) {
            uint8_t msg[12];
            memcpy(msg, &i, 4);
            memset(msg + 4, (int)(i & 0xff), 8);
            if (i % 2 == 0) {
                if (shmq_producer_enqueue_block(p, msg, sizeof msg, 10 * SECOND) != SHMQ_OK) _exit(3);
            } else {
                shmq_iovec iov = {msg, sizeof msg};
                size_t k = 0;
                if (shmq_producer_enqueue_batch(p, &iov, 1, 10 * SECOND, &k) != SHMQ_OK || k != 1) _exit(4);
            }
        }
        shmq_producer_close(p);
        shmq_producer_free(p);
        _exit(0);
    }
    uint32_t want = 0;
    int bad = 0;
    for (;;) {
        uint8_t buf[64];
        size_t n = 0;
        shmq_status s = shmq_consumer_dequeue_block(c, buf, sizeof buf, 20 * SECOND, &n);
        if (s == SHMQ_CLOSED) break;
        if (s != SHMQ_OK) {
            fprintf(stderr, "dequeue: %s: %s\n", shmq_status_name(s), shmq_last_error());
            bad = 1;
            break;
        }
        uint32_t got;
        memcpy(&got, buf, 4);
        if (n != 12 || got != want || buf[11] != (uint8_t)(want & 0xff)) bad = 1;
        want++;
    }
    CHECK(!bad);
    CHECK(want == FLOW);
    CHECK(wait_child(child, 30000) == 0);
    shmq_consumer_free(c);
    shmq_queue_unlink(q);
    shmq_queue_free(q);
}

/* SHMQ_BUFFER_TOO_SMALL writes the needed length to len_out (lens[0] for
 * the batch calls); the message stays and is read whole afterwards. */
static void buffer_too_small_says_how_much(void) {
    for (int spsc = 0; spsc <= 1; spsc++) {
        const char *t = new_target("posix");
        shmq_queue *q = NULL;
        CHECK_STATUS(shmq_queue_create(t, 32, 4, 0, spsc ? SHMQ_QUEUE_SPSC : 0, &q), SHMQ_OK);
        if (!q) return;
        uint8_t buf[32];
        size_t n = 0, lens[2] = {0, 0}, count = 77;
        CHECK_STATUS(shmq_queue_enqueue_try(q, (const uint8_t *)"0123456789", 10), SHMQ_OK);
        CHECK_STATUS(shmq_queue_dequeue_try(q, buf, 4, &n), SHMQ_BUFFER_TOO_SMALL);
        CHECK(n == 10);
        n = 0;
        CHECK_STATUS(shmq_queue_dequeue_block(q, buf, 4, SECOND, &n), SHMQ_BUFFER_TOO_SMALL);
        CHECK(n == 10);
        n = 0;
        CHECK_STATUS(shmq_queue_dequeue_try(q, NULL, 0, &n), SHMQ_BUFFER_TOO_SMALL);
        CHECK(n == 10);
        CHECK_STATUS(shmq_queue_dequeue_batch(q, buf, 4, lens, 2, 0, &count), SHMQ_BUFFER_TOO_SMALL);
        CHECK(lens[0] == 10 && lens[1] == 0 && count == 77);
        CHECK_STATUS(shmq_queue_dequeue_try(q, buf, n, &n), SHMQ_OK);
        CHECK(n == 10 && memcmp(buf, "0123456789", 10) == 0);
        /* Other failures still write nothing. */
        n = 55;
        CHECK_STATUS(shmq_queue_dequeue_try(q, buf, 4, &n), SHMQ_EMPTY);
        CHECK(n == 55);
        shmq_queue_free(q); /* frees the roles the queue handle took */
        CHECK_STATUS(shmq_queue_open(t, &q), SHMQ_OK);
        if (!q) return;
        shmq_consumer *c = NULL;
        CHECK_STATUS(shmq_queue_consumer(q, &c), SHMQ_OK);
        CHECK_STATUS(shmq_queue_enqueue_try(q, (const uint8_t *)"abcdef", 6), SHMQ_OK);
        n = 0;
        CHECK_STATUS(shmq_consumer_dequeue_try(c, buf, 2, &n), SHMQ_BUFFER_TOO_SMALL);
        CHECK(n == 6);
        n = 0;
        CHECK_STATUS(shmq_consumer_dequeue_block(c, buf, 2, SECOND, &n), SHMQ_BUFFER_TOO_SMALL);
        CHECK(n == 6);
        lens[0] = 0;
        CHECK_STATUS(shmq_consumer_dequeue_batch(c, buf, 2, lens, 2, 0, &count), SHMQ_BUFFER_TOO_SMALL);
        CHECK(lens[0] == 6);
        CHECK_STATUS(shmq_consumer_dequeue_batch(c, buf, sizeof buf, lens, 2, 0, &count), SHMQ_OK);
        CHECK(count == 1 && lens[0] == 6 && memcmp(buf, "abcdef", 6) == 0);
        shmq_consumer_free(c);
        shmq_queue_unlink(q);
        shmq_queue_free(q);
    }

    const char *t = new_target("posix");
    shmq_log *log = NULL;
    CHECK_STATUS(shmq_log_create(t, 32, 4, 0, 0, 0, &log), SHMQ_OK);
    if (!log) return;
    shmq_subscriber *sub = NULL;
    CHECK_STATUS(shmq_log_subscribe(log, SHMQ_START_OLDEST, &sub), SHMQ_OK);
    CHECK_STATUS(shmq_log_publish(log, (const uint8_t *)"0123456789abc", 13, NULL), SHMQ_OK);
    uint8_t buf[32];
    size_t n = 0, lens[2] = {0, 0}, count = 77;
    uint64_t missed = 99;
    CHECK_STATUS(shmq_subscriber_recv_try(sub, buf, 3, &n, &missed), SHMQ_BUFFER_TOO_SMALL);
    CHECK(n == 13 && missed == 99);
    n = 0;
    CHECK_STATUS(shmq_subscriber_recv_block(sub, buf, 3, SECOND, &n, &missed), SHMQ_BUFFER_TOO_SMALL);
    CHECK(n == 13);
    CHECK_STATUS(shmq_subscriber_recv_batch(sub, buf, 3, 2, 0, lens, &count, &missed), SHMQ_BUFFER_TOO_SMALL);
    CHECK(lens[0] == 13 && count == 77 && missed == 99);
    CHECK_STATUS(shmq_subscriber_recv_try(sub, buf, sizeof buf, &n, &missed), SHMQ_OK);
    CHECK(n == 13 && memcmp(buf, "0123456789abc", 13) == 0);
    shmq_subscriber_free(sub);
    shmq_log_unlink(log);
    shmq_log_free(log);
}

/* Zero-copy through role handles: a reservation (or message) borrows its
 * handle until it ends; meanwhile the handle's other calls are refused. */
static void zero_copy_through_role_handles(void) {
    for (int spsc = 0; spsc <= 1; spsc++) {
        const char *t = new_target("posix");
        shmq_queue *q = NULL;
        CHECK_STATUS(shmq_queue_create(t, 32, 4, 0, spsc ? SHMQ_QUEUE_SPSC : 0, &q), SHMQ_OK);
        if (!q) return;
        shmq_producer *p = NULL;
        shmq_consumer *c = NULL;
        CHECK_STATUS(shmq_queue_producer(q, &p), SHMQ_OK);
        CHECK_STATUS(shmq_queue_consumer(q, &c), SHMQ_OK);
        if (!p || !c) return;
        shmq_reservation *res = NULL;
        uint8_t *buf = NULL;
        CHECK_STATUS(shmq_producer_reserve(p, 32, 0, &res, &buf), SHMQ_OK);
        CHECK_STATUS(shmq_producer_enqueue_try(p, (const uint8_t *)"x", 1), SHMQ_INVALID_ARGUMENT);
        CHECK(strstr(shmq_last_error(), "still open") != NULL);
        shmq_reservation *res2 = NULL;
        CHECK_STATUS(shmq_producer_reserve(p, 8, 0, &res2, &buf), SHMQ_INVALID_ARGUMENT);
        CHECK(res2 == NULL);
        memcpy(buf, "in place", 8);
        CHECK_STATUS(shmq_reservation_commit(res, 8), SHMQ_OK);
        /* The handle is usable again once the reservation ended. */
        CHECK_STATUS(shmq_producer_enqueue_try(p, (const uint8_t *)"copied", 6), SHMQ_OK);
        CHECK_STATUS(shmq_producer_reserve(p, 4, SECOND, &res, &buf), SHMQ_OK);
        shmq_reservation_cancel(res);
        CHECK_STATUS(shmq_producer_reserve(p, 33, 0, &res, &buf), SHMQ_TOO_LARGE);

        shmq_message *m = NULL;
        const uint8_t *data = NULL;
        size_t len = 0, n = 0;
        uint8_t copy[32];
        CHECK_STATUS(shmq_consumer_consume(c, 0, &m, &data, &len), SHMQ_OK);
        CHECK(len == 8 && data && memcmp(data, "in place", 8) == 0);
        CHECK_STATUS(shmq_consumer_dequeue_try(c, copy, sizeof copy, &n), SHMQ_INVALID_ARGUMENT);
        shmq_message_release(m);
        CHECK_STATUS(shmq_consumer_consume(c, SECOND, &m, &data, &len), SHMQ_OK);
        CHECK(len == 6 && memcmp(data, "copied", 6) == 0);
        shmq_message_release(m);
        CHECK_STATUS(shmq_consumer_consume(c, 0, &m, &data, &len), SHMQ_EMPTY);
        CHECK_STATUS(shmq_consumer_consume(c, 1000000, &m, &data, &len), SHMQ_TIMEOUT);
        CHECK_STATUS(shmq_consumer_dequeue_try(c, copy, sizeof copy, &n), SHMQ_EMPTY);
        shmq_producer_free(p);
        shmq_consumer_free(c);
        shmq_queue_unlink(q);
        shmq_queue_free(q);
    }
}

struct commit_job {
    shmq_reservation *res;
    shmq_status status;
};

static void *commit_elsewhere(void *arg) {
    struct commit_job *job = arg;
    job->status = shmq_reservation_commit(job->res, 0);
    return NULL;
}

/* A reservation of a producer may end on another thread; the producer is
 * usable again afterwards. */
static void reservation_ends_on_another_thread(void) {
    const char *t = new_target("posix");
    shmq_queue *q = NULL;
    CHECK_STATUS(shmq_queue_create(t, 16, 4, 0, SHMQ_QUEUE_SPSC, &q), SHMQ_OK);
    if (!q) return;
    shmq_producer *p = NULL;
    CHECK_STATUS(shmq_queue_producer(q, &p), SHMQ_OK);
    if (!p) return;
    shmq_reservation *res = NULL;
    uint8_t *buf = NULL;
    CHECK_STATUS(shmq_producer_reserve(p, 16, 0, &res, &buf), SHMQ_OK);
    struct commit_job job = {res, SHMQ_PANIC};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, commit_elsewhere, &job) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(job.status == SHMQ_OK);
    CHECK_STATUS(shmq_producer_enqueue_try(p, (const uint8_t *)"after", 5), SHMQ_OK);
    uint64_t len = 0;
    CHECK_STATUS(shmq_queue_len(q, &len), SHMQ_OK);
    CHECK(len == 2); /* the empty message committed there, and this one */
    shmq_producer_free(p);
    shmq_queue_unlink(q);
    shmq_queue_free(q);
}

/* shmq_last_error(): set by every failing status, EMPTY included; kept
 * across successful calls. */
static void last_error_is_kept_across_successes(void) {
    const char *t = new_target("posix");
    shmq_queue *q = NULL;
    CHECK_STATUS(shmq_queue_create(t, 16, 4, 0, 0, &q), SHMQ_OK);
    if (!q) return;
    uint8_t buf[16];
    size_t n;
    CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, &n), SHMQ_EMPTY);
    char after_empty[256];
    snprintf(after_empty, sizeof after_empty, "%s", shmq_last_error());
    CHECK(strlen(after_empty) > 0);
    CHECK_STATUS(shmq_queue_enqueue_try(q, (const uint8_t *)"ok", 2), SHMQ_OK);
    CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, &n), SHMQ_OK);
    CHECK(strcmp(shmq_last_error(), after_empty) == 0); /* successes leave it */
    CHECK_STATUS(shmq_queue_enqueue_try(q, buf, 17), SHMQ_TOO_LARGE);
    CHECK(strcmp(shmq_last_error(), after_empty) != 0); /* the next failure replaces it */
    shmq_queue_unlink(q);
    shmq_queue_free(q);
}

int main(void) {
    atexit(remove_targets);
    roles_are_exclusive_and_free_releases();
    mpmc_role_handles_forward();
    messages_flow_between_processes();
    buffer_too_small_says_how_much();
    last_error_is_kept_across_successes();
    zero_copy_through_role_handles();
    reservation_ends_on_another_thread();
    if (failures) {
        fprintf(stderr, "test_roles: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_roles: %d checks passed\n", checks);
    return 0;
}
