/* Tests of the C interface: every function, every status a caller can get,
 * NULL and bad arguments, outputs left alone on failure, one handle shared
 * by threads. (SHMQ_PANIC cannot be provoked through the API: the panic
 * boundary is tested in Rust, capi/src/lib.rs.)
 *
 * Every queue is registered and removed at exit, also after a failed check. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "msg.h"


static shmq_queue *create(const char *target, uint32_t slot, uint64_t cap) {
    shmq_queue *q = NULL;
    CHECK_STATUS(shmq_queue_create(target, slot, cap, 0, 0, &q), SHMQ_OK);
    CHECK(q != NULL);
    if (q == NULL) {
        fprintf(stderr, "cannot continue without a queue\n");
        exit(1);
    }
    return q;
}



/* Joins a thread that must finish within 10 s (else the test aborts). */
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

/* ---- version, names, messages ---- */

static void test_version_and_names(void) {
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", SHMQ_VERSION_MAJOR, SHMQ_VERSION_MINOR, SHMQ_VERSION_PATCH);
    CHECK(strcmp(shmq_version(), want) == 0);
    CHECK(strcmp(shmq_version(), SHMQ_VERSION) == 0);

    const char *names[] = {"SHMQ_OK", "SHMQ_FULL", "SHMQ_EMPTY", "SHMQ_TIMEOUT", "SHMQ_CLOSED",
                           "SHMQ_TOO_LARGE", "SHMQ_BUFFER_TOO_SMALL", "SHMQ_ALREADY_EXISTS",
                           "SHMQ_NOT_FOUND", "SHMQ_INCOMPATIBLE", "SHMQ_CORRUPT", "SHMQ_NULL_PARAMETER",
                           "SHMQ_PANIC", "SHMQ_INVALID_ARGUMENT", "SHMQ_PERMISSION_DENIED",
                           "SHMQ_VERSION_MISMATCH", "SHMQ_NOT_READY", "SHMQ_IO", "SHMQ_ROLE_TAKEN",
                           "SHMQ_LAGGED", "SHMQ_CURSOR_NOT_FOUND", "SHMQ_CURSOR_EXISTS",
                           "SHMQ_CURSOR_TABLE_FULL", "SHMQ_CURSOR_IN_USE", "SHMQ_NOT_NAMED", "SHMQ_BUSY",
                           "SHMQ_NOT_CONNECTED"};
    shmq_status values[] = {SHMQ_OK, SHMQ_FULL, SHMQ_EMPTY, SHMQ_TIMEOUT, SHMQ_CLOSED, SHMQ_TOO_LARGE,
                            SHMQ_BUFFER_TOO_SMALL, SHMQ_ALREADY_EXISTS, SHMQ_NOT_FOUND, SHMQ_INCOMPATIBLE,
                            SHMQ_CORRUPT, SHMQ_NULL_PARAMETER, SHMQ_PANIC, SHMQ_INVALID_ARGUMENT,
                            SHMQ_PERMISSION_DENIED, SHMQ_VERSION_MISMATCH, SHMQ_NOT_READY, SHMQ_IO,
                            SHMQ_ROLE_TAKEN, SHMQ_LAGGED, SHMQ_CURSOR_NOT_FOUND, SHMQ_CURSOR_EXISTS,
                            SHMQ_CURSOR_TABLE_FULL, SHMQ_CURSOR_IN_USE, SHMQ_NOT_NAMED, SHMQ_BUSY,
                            SHMQ_NOT_CONNECTED};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
        CHECK((int)values[i] == i); /* the values are fixed: 0, 1, 2, ... */
        CHECK(strcmp(shmq_status_name(i), names[i]) == 0);
    }
    CHECK((int)(sizeof values / sizeof values[0]) == (int)(sizeof names / sizeof names[0]));
    CHECK(strcmp(shmq_status_name(27), "SHMQ_UNKNOWN") == 0);
    CHECK(strcmp(shmq_status_name(-1), "SHMQ_UNKNOWN") == 0);
}

static void *fresh_thread_error(void *arg) {
    struct joinable *j = arg;
    const char *e = shmq_last_error();
    CHECK(e != NULL && e[0] == '\0');
    j->done = 1;
    return NULL;
}

static void test_last_error(void) {
    struct joinable j = {.done = 0};
    pthread_create(&j.thread, NULL, fresh_thread_error, &j);
    join_within(&j);

    const char *t = new_target("posix");
    shmq_queue *q = NULL;
    CHECK_STATUS(shmq_queue_open(t, &q), SHMQ_NOT_FOUND);
    char saved[512];
    snprintf(saved, sizeof saved, "%s", shmq_last_error());
    CHECK(strstr(saved, "does not exist") != NULL);
    CHECK(strstr(saved, t + strlen("posix:")) != NULL); /* names the target */
    int32_t key;
    CHECK_STATUS(shmq_find_free_key(&key), SHMQ_OK);
    CHECK(strcmp(shmq_last_error(), saved) == 0); /* success leaves it alone */
    CHECK_STATUS(shmq_find_free_key(NULL), SHMQ_NULL_PARAMETER);
    CHECK(strstr(shmq_last_error(), "key_out") != NULL);
}

/* ---- lifecycle on the three backings ---- */

static void test_backing(const char *kind) {
    const char *t = new_target(kind);
    shmq_queue *sentinel = (shmq_queue *)(uintptr_t)0x5a5a;
    shmq_queue *other = sentinel;

    /* open never creates */
    CHECK_STATUS(shmq_queue_open(t, &other), SHMQ_NOT_FOUND);
    CHECK(other == sentinel);
    CHECK_STATUS(shmq_target_unlink(t), SHMQ_OK); /* nothing there: removal is idempotent */

    shmq_queue *a = create(t, 48, 8);
    /* create never touches an existing queue */
    CHECK_STATUS(shmq_queue_enqueue_try(a, (const uint8_t *)"keep", 4), SHMQ_OK);
    CHECK_STATUS(shmq_queue_create(t, 48, 8, 0, 0, &other), SHMQ_ALREADY_EXISTS);
    CHECK(other == sentinel);
    CHECK_STATUS(shmq_queue_create(t, 16, 4, 0, 0, &other), SHMQ_ALREADY_EXISTS);
    uint64_t len = 0;
    CHECK_STATUS(shmq_queue_len(a, &len), SHMQ_OK);
    CHECK(len == 1);

    /* open and open_or_create attach to the same queue */
    shmq_queue *b = NULL, *c = NULL;
    CHECK_STATUS(shmq_queue_open(t, &b), SHMQ_OK);
    CHECK_STATUS(shmq_queue_open_or_create(t, 48, 8, 0, 0, &c), SHMQ_OK);
    CHECK_STATUS(shmq_queue_open_or_create(t, 64, 8, 0, 0, &other), SHMQ_INCOMPATIBLE);
    CHECK(strstr(shmq_last_error(), "slot size") != NULL);
    CHECK_STATUS(shmq_queue_open_or_create(t, 48, 16, 0, 0, &other), SHMQ_INCOMPATIBLE);
    CHECK(other == sentinel);
    uint8_t buf[48];
    size_t n = 0;
    CHECK_STATUS(shmq_queue_dequeue_try(b, buf, sizeof buf, &n), SHMQ_OK);
    CHECK(n == 4 && memcmp(buf, "keep", 4) == 0);
    CHECK_STATUS(shmq_queue_enqueue_try(c, (const uint8_t *)"xyz", 3), SHMQ_OK);
    CHECK_STATUS(shmq_queue_dequeue_try(a, buf, sizeof buf, &n), SHMQ_OK);
    CHECK(n == 3 && memcmp(buf, "xyz", 3) == 0);

    uint32_t slot = 0;
    uint64_t cap = 0;
    CHECK_STATUS(shmq_queue_slot_size(b, &slot), SHMQ_OK);
    CHECK_STATUS(shmq_queue_capacity(b, &cap), SHMQ_OK);
    CHECK(slot == 48 && cap == 8);
    CHECK_STATUS(shmq_queue_flush(a), SHMQ_OK);

    /* unlink removes the name; handles keep working */
    CHECK_STATUS(shmq_queue_unlink(a), SHMQ_OK);
    CHECK_STATUS(shmq_queue_open(t, &other), SHMQ_NOT_FOUND);
    CHECK_STATUS(shmq_queue_unlink(b), SHMQ_OK); /* removing twice is not an error */
    CHECK_STATUS(shmq_queue_enqueue_try(b, (const uint8_t *)"after", 5), SHMQ_OK);
    CHECK_STATUS(shmq_queue_dequeue_try(c, buf, sizeof buf, &n), SHMQ_OK);
    CHECK(n == 5);
    shmq_queue_free(a);
    shmq_queue_free(b);
    shmq_queue_free(c);

    /* open_or_create creates; shmq_target_unlink removes */
    const char *t2 = new_target(kind);
    CHECK_STATUS(shmq_queue_open_or_create(t2, 8, 2, 0600, 0, &a), SHMQ_OK);
    shmq_queue_free(a);
    CHECK_STATUS(shmq_target_unlink(t2), SHMQ_OK);
    CHECK_STATUS(shmq_queue_open(t2, &other), SHMQ_NOT_FOUND);
    CHECK(other == sentinel);
}

/* Targets without a prefix: a number is a SysV key, a path a file, else POSIX. */
static void test_bare_targets(void) {
    int32_t key;
    CHECK_STATUS(shmq_find_free_key(&key), SHMQ_OK);
    char bare[64], hex[64];
    snprintf(bare, sizeof bare, "%d", key);
    snprintf(hex, sizeof hex, "sysv:0x%x", (unsigned)key);
    remember_target(hex);
    shmq_queue *a = create(bare, 8, 2), *b = NULL;
    CHECK_STATUS(shmq_queue_open(hex, &b), SHMQ_OK);
    shmq_queue_free(b);
    shmq_queue_free(a);
    CHECK_STATUS(shmq_target_unlink(bare), SHMQ_OK);

    const char *p = new_target("posix");
    a = create(p + strlen("posix:"), 8, 2);
    CHECK_STATUS(shmq_queue_open(p, &b), SHMQ_OK);
    shmq_queue_free(b);
    shmq_queue_free(a);

    const char *f = new_target("file");
    a = create(f + strlen("file:"), 8, 2);
    CHECK_STATUS(shmq_queue_open(f, &b), SHMQ_OK);
    CHECK(access(f + strlen("file:"), F_OK) == 0);
    shmq_queue_free(b);
    shmq_queue_free(a);
}

/* ---- operations ---- */

struct delayed {
    struct joinable j;
    shmq_queue *q;
    int enqueue; /* 1: enqueue after a delay; 0: dequeue after a delay; 2: close */
    shmq_status status;
    size_t n;
};

static void *delayed_op(void *arg) {
    struct delayed *d = arg;
    uint8_t buf[64];
    sleep_ms(20);
    if (d->enqueue == 1) {
        d->status = shmq_queue_enqueue_try(d->q, (const uint8_t *)"late", 4);
    } else if (d->enqueue == 0) {
        d->status = shmq_queue_dequeue_try(d->q, buf, sizeof buf, &d->n);
    } else {
        d->status = shmq_queue_close(d->q);
    }
    d->j.done = 1;
    return NULL;
}

static void start(struct delayed *d, shmq_queue *q, int what) {
    d->j.done = 0;
    d->q = q;
    d->enqueue = what;
    d->status = SHMQ_PANIC;
    pthread_create(&d->j.thread, NULL, delayed_op, d);
}

static void test_operations(void) {
    shmq_queue *q = create(new_target("posix"), 32, 4);
    uint8_t buf[64];
    size_t n = 777;
    uint64_t u = 777;

    /* try: FIFO, FULL, TOO_LARGE, EMPTY */
    for (int i = 0; i < 4; i++) {
        uint8_t m[5] = {'m', 's', 'g', ' ', (uint8_t)('0' + i)};
        CHECK_STATUS(shmq_queue_enqueue_try(q, m, sizeof m), SHMQ_OK);
    }
    CHECK_STATUS(shmq_queue_enqueue_try(q, (const uint8_t *)"x", 1), SHMQ_FULL);
    CHECK(strcmp(shmq_last_error(), "queue is full") == 0);
    memset(buf, 'z', sizeof buf);
    CHECK_STATUS(shmq_queue_enqueue_try(q, buf, 33), SHMQ_TOO_LARGE);
    CHECK(strstr(shmq_last_error(), "33") != NULL);
    CHECK_STATUS(shmq_queue_len(q, &u), SHMQ_OK);
    CHECK(u == 4);

    /* block with a timeout on a full queue */
    double t0 = now_s();
    CHECK_STATUS(shmq_queue_enqueue_block(q, (const uint8_t *)"x", 1, 2000000), SHMQ_TIMEOUT);
    CHECK(now_s() - t0 < 5.0);
    CHECK_STATUS(shmq_queue_enqueue_block(q, buf, 40, 2000000), SHMQ_TOO_LARGE);

    /* a buffer too small leaves the message queued, and says how much it needs */
    CHECK_STATUS(shmq_queue_dequeue_try(q, buf, 2, &n), SHMQ_BUFFER_TOO_SMALL);
    CHECK(n == 5);
    CHECK(strstr(shmq_last_error(), "5 bytes") != NULL);
    n = 777;
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, 4, 1000000, &n), SHMQ_BUFFER_TOO_SMALL);
    CHECK(n == 5);
    n = 777;
    CHECK_STATUS(shmq_queue_dequeue_try(q, NULL, 0, &n), SHMQ_BUFFER_TOO_SMALL);
    CHECK(n == 5);
    for (int i = 0; i < 4; i++) {
        CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, &n), SHMQ_OK);
        CHECK(n == 5 && buf[4] == '0' + i);
    }
    n = 777;
    CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, &n), SHMQ_EMPTY);
    CHECK(strcmp(shmq_last_error(), "queue is empty") == 0);
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, 2000000, &n), SHMQ_TIMEOUT);
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, 0, &n), SHMQ_TIMEOUT);
    CHECK(n == 777);

    /* empty messages; NULL allowed exactly when the length is 0 */
    CHECK_STATUS(shmq_queue_enqueue_try(q, NULL, 0), SHMQ_OK);
    CHECK_STATUS(shmq_queue_enqueue_block(q, NULL, 0, SHMQ_WAIT_FOREVER), SHMQ_OK);
    CHECK_STATUS(shmq_queue_dequeue_try(q, NULL, 0, &n), SHMQ_OK);
    CHECK(n == 0);
    CHECK_STATUS(shmq_queue_dequeue_block(q, NULL, 0, SHMQ_WAIT_FOREVER, &n), SHMQ_OK);
    CHECK(n == 0);
    CHECK_STATUS(shmq_queue_enqueue_try(q, NULL, 3), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_enqueue_block(q, NULL, 3, 0), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_enqueue_shift(q, NULL, 3, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_dequeue_try(q, NULL, 8, &n), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_dequeue_block(q, NULL, 8, 0, &n), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_len(q, &u), SHMQ_OK);
    CHECK(u == 0);

    /* shift: discards the oldest when full */
    uint64_t discarded = 777;
    for (int i = 0; i < 4; i++) {
        uint8_t m = (uint8_t)i;
        CHECK_STATUS(shmq_queue_enqueue_shift(q, &m, 1, &discarded), SHMQ_OK);
        CHECK(discarded == 0);
    }
    uint8_t m4 = 4;
    CHECK_STATUS(shmq_queue_enqueue_shift(q, &m4, 1, &discarded), SHMQ_OK);
    CHECK(discarded == 1);
    uint8_t m5 = 5;
    CHECK_STATUS(shmq_queue_enqueue_shift(q, &m5, 1, NULL), SHMQ_OK);
    discarded = 777;
    CHECK_STATUS(shmq_queue_enqueue_shift(q, buf, 33, &discarded), SHMQ_TOO_LARGE);
    CHECK(discarded == 777);
    shmq_stats st;
    memset(&st, 0xff, sizeof st);
    CHECK_STATUS(shmq_queue_stats(q, &st), SHMQ_OK);
    CHECK(st.discarded == 2 && st.len == 4 && st.capacity == 4);
    CHECK(st.enqueued == 4 + 2 + 6 && st.dequeued == 4 + 2);
    CHECK(st.tombstones == 0);
    for (int i = 2; i < 6; i++) {
        CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, &n), SHMQ_OK);
        CHECK(n == 1 && buf[0] == i);
    }

    /* blocking calls without a limit return when another thread acts */
    struct delayed d;
    start(&d, q, 1);
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, SHMQ_WAIT_FOREVER, &n), SHMQ_OK);
    CHECK(n == 4 && memcmp(buf, "late", 4) == 0);
    join_within(&d.j);
    CHECK(d.status == SHMQ_OK);
    for (int i = 0; i < 4; i++) CHECK_STATUS(shmq_queue_enqueue_try(q, buf, 1), SHMQ_OK);
    start(&d, q, 0);
    CHECK_STATUS(shmq_queue_enqueue_block(q, (const uint8_t *)"room", 4, SHMQ_WAIT_FOREVER), SHMQ_OK);
    join_within(&d.j);
    CHECK(d.status == SHMQ_OK && d.n == 1);
    for (int i = 0; i < 4; i++) CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, &n), SHMQ_OK);

    /* close wakes a blocked consumer; producers get CLOSED; consumers drain */
    bool closed = true;
    CHECK_STATUS(shmq_queue_is_closed(q, &closed), SHMQ_OK);
    CHECK(!closed);
    start(&d, q, 2);
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, SHMQ_WAIT_FOREVER, &n), SHMQ_CLOSED);
    join_within(&d.j);
    CHECK(d.status == SHMQ_OK);
    CHECK_STATUS(shmq_queue_is_closed(q, &closed), SHMQ_OK);
    CHECK(closed);
    CHECK_STATUS(shmq_queue_enqueue_try(q, buf, 1), SHMQ_CLOSED);
    CHECK_STATUS(shmq_queue_enqueue_block(q, buf, 1, SHMQ_WAIT_FOREVER), SHMQ_CLOSED);
    CHECK_STATUS(shmq_queue_enqueue_shift(q, buf, 1, NULL), SHMQ_CLOSED);
    CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, &n), SHMQ_CLOSED);
    CHECK_STATUS(shmq_queue_close(q), SHMQ_OK); /* idempotent */
    shmq_queue_free(q);

    /* a closed queue still hands out what it holds */
    q = create(new_target("posix"), 8, 4);
    CHECK_STATUS(shmq_queue_enqueue_try(q, (const uint8_t *)"a", 1), SHMQ_OK);
    CHECK_STATUS(shmq_queue_close(q), SHMQ_OK);
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, SHMQ_WAIT_FOREVER, &n), SHMQ_OK);
    CHECK(n == 1 && buf[0] == 'a');
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, SHMQ_WAIT_FOREVER, &n), SHMQ_CLOSED);
    shmq_queue_free(q);

    /* wait strategies */
    q = create(new_target("posix"), 8, 4);
    CHECK_STATUS(shmq_queue_set_wait(q, -1), SHMQ_OK); /* busy-spin */
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, 1000000, &n), SHMQ_TIMEOUT);
    CHECK_STATUS(shmq_queue_set_wait(q, 0), SHMQ_OK); /* sleep at once */
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, 1000000, &n), SHMQ_TIMEOUT);
    start(&d, q, 1);
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, 5000000000LL, &n), SHMQ_OK);
    join_within(&d.j);
    CHECK_STATUS(shmq_queue_set_wait(q, 100000), SHMQ_OK);
    CHECK_STATUS(shmq_queue_enqueue_try(q, buf, 8), SHMQ_OK);
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, 1000000, &n), SHMQ_OK);
    shmq_queue_free(q);
}

/* A single-producer/single-consumer queue: one producer call and one
 * consumer call at a time; each call leases its role and gives it back. */
static void test_spsc(void) {
    const char *t = new_target("posix");
    shmq_queue *a = NULL, *b = NULL, *other = NULL;
    bool spsc = false;
    CHECK_STATUS(shmq_queue_create(t, 16, 4, 0, SHMQ_QUEUE_SPSC, &a), SHMQ_OK);
    CHECK_STATUS(shmq_queue_is_spsc(a, &spsc), SHMQ_OK);
    CHECK(spsc);
    CHECK_STATUS(shmq_queue_open(t, &b), SHMQ_OK);
    CHECK_STATUS(shmq_queue_open_or_create(t, 16, 4, 0, 0, &other), SHMQ_INCOMPATIBLE);
    CHECK_STATUS(shmq_queue_open_or_create(t, 16, 4, 0, SHMQ_QUEUE_SPSC, &other), SHMQ_OK);
    shmq_queue_free(other);

    uint8_t buf[16];
    size_t n = 777;
    /* Each call leases its role for that call only: no handle keeps one. */
    CHECK_STATUS(shmq_queue_enqueue_try(a, (const uint8_t *)"p", 1), SHMQ_OK);
    CHECK_STATUS(shmq_queue_enqueue_try(b, (const uint8_t *)"q", 1), SHMQ_OK);
    CHECK_STATUS(shmq_queue_dequeue_try(b, buf, sizeof buf, &n), SHMQ_OK);
    CHECK(n == 1 && buf[0] == 'p');
    CHECK_STATUS(shmq_queue_dequeue_block(a, buf, sizeof buf, 1000000, &n), SHMQ_OK);
    CHECK(n == 1 && buf[0] == 'q');
    shmq_queue_free(b);
    CHECK_STATUS(shmq_queue_enqueue_try(a, (const uint8_t *)"r", 1), SHMQ_OK);
    CHECK_STATUS(shmq_queue_dequeue_try(a, buf, sizeof buf, &n), SHMQ_OK);
    CHECK(n == 1 && buf[0] == 'r');
    shmq_queue_free(a);

    /* a regular queue says so */
    a = create(new_target("posix"), 8, 2);
    CHECK_STATUS(shmq_queue_is_spsc(a, &spsc), SHMQ_OK);
    CHECK(!spsc);
    shmq_queue_free(a);
}

/* ---- NULL and bad arguments ---- */

static void test_null_parameters(void) {
    const char *t = new_target("posix");
    shmq_queue *q = create(t, 16, 4);
    shmq_queue *sentinel = (shmq_queue *)(uintptr_t)0x5a5a, *out = sentinel;
    uint8_t buf[16];
    size_t n = 777;
    uint64_t u = 777;
    uint32_t s32 = 777;
    bool b = true;
    shmq_stats st = {0};

    CHECK_STATUS(shmq_find_free_key(NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_target_unlink(NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_create(NULL, 16, 4, 0, 0, &out), SHMQ_NULL_PARAMETER);
    CHECK(strstr(shmq_last_error(), "target") != NULL);
    CHECK_STATUS(shmq_queue_create(new_target("posix"), 16, 4, 0, 0, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_open(NULL, &out), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_open(t, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_open_or_create(NULL, 16, 4, 0, 0, &out), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_open_or_create(t, 16, 4, 0, 0, NULL), SHMQ_NULL_PARAMETER);
    CHECK(out == sentinel);
    shmq_queue_free(NULL); /* accepted, does nothing */
    CHECK_STATUS(shmq_queue_set_wait(NULL, 0), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_unlink(NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_flush(NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_enqueue_try(NULL, buf, 1), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_enqueue_block(NULL, buf, 1, 0), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_enqueue_shift(NULL, buf, 1, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_dequeue_try(NULL, buf, sizeof buf, &n), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_dequeue_block(NULL, buf, sizeof buf, 0, &n), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_dequeue_block(q, buf, sizeof buf, 0, NULL), SHMQ_NULL_PARAMETER);
    CHECK(strstr(shmq_last_error(), "len_out") != NULL);
    CHECK_STATUS(shmq_queue_close(NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_is_closed(NULL, &b), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_is_closed(q, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_is_spsc(NULL, &b), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_is_spsc(q, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_len(NULL, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_len(q, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_capacity(NULL, &u), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_capacity(q, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_slot_size(NULL, &s32), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_slot_size(q, NULL), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_stats(NULL, &st), SHMQ_NULL_PARAMETER);
    CHECK_STATUS(shmq_queue_stats(q, NULL), SHMQ_NULL_PARAMETER);
    CHECK(n == 777 && u == 777 && s32 == 777 && b);
    /* the queue was not touched by any of this */
    CHECK_STATUS(shmq_queue_stats(q, &st), SHMQ_OK);
    CHECK(st.enqueued == 0 && st.dequeued == 0 && st.len == 0);
    shmq_queue_free(q);
}

static void test_bad_arguments(void) {
    shmq_queue *sentinel = (shmq_queue *)(uintptr_t)0x5a5a, *out = sentinel;
    const char *bad_targets[] = {"", "sysv:xyz", "sysv:0", "posix:", "posix:a/b", "\xff\xfe"};
    for (int i = 0; i < (int)(sizeof bad_targets / sizeof bad_targets[0]); i++) {
        CHECK_STATUS(shmq_queue_create(bad_targets[i], 16, 4, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
        CHECK_STATUS(shmq_queue_open_or_create(bad_targets[i], 16, 4, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
        CHECK_STATUS(shmq_queue_open(bad_targets[i], &out), SHMQ_INVALID_ARGUMENT);
        CHECK_STATUS(shmq_target_unlink(bad_targets[i]), SHMQ_INVALID_ARGUMENT);
    }
    CHECK(strstr(shmq_last_error(), "UTF-8") != NULL);
    const char *t = new_target("posix");
    CHECK_STATUS(shmq_queue_create(t, 16, 1, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK(strstr(shmq_last_error(), "capacity") != NULL);
    CHECK_STATUS(shmq_queue_create(t, 16, 0, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_queue_create(t, 16, UINT64_MAX, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_queue_create(t, UINT32_MAX, 4, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK(strstr(shmq_last_error(), "slot size") != NULL);
    CHECK_STATUS(shmq_queue_create(t, 16, 4, 01777, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_queue_create(t, 16, 4, 0, 2, &out), SHMQ_INVALID_ARGUMENT);
    CHECK(strstr(shmq_last_error(), "flags") != NULL);
    CHECK_STATUS(shmq_queue_open_or_create(t, 16, 1, 0, 0, &out), SHMQ_INVALID_ARGUMENT);
    CHECK(out == sentinel);
    CHECK_STATUS(shmq_queue_open(t, &out), SHMQ_NOT_FOUND); /* nothing was created */

    shmq_queue *q = create(t, 16, 4);
    uint8_t buf[16] = {0};
    size_t n = 777;
    CHECK_STATUS(shmq_queue_enqueue_try(q, buf, SIZE_MAX), SHMQ_INVALID_ARGUMENT);
    CHECK_STATUS(shmq_queue_enqueue_try(q, buf, 17), SHMQ_TOO_LARGE);
    CHECK_STATUS(shmq_queue_enqueue_try(q, buf, 16), SHMQ_OK);
    CHECK_STATUS(shmq_queue_dequeue_try(q, buf, SIZE_MAX, &n), SHMQ_INVALID_ARGUMENT);
    CHECK(n == 777);
    CHECK_STATUS(shmq_queue_dequeue_try(q, buf, sizeof buf, &n), SHMQ_OK);
    CHECK(n == 16);
    shmq_queue_free(q);
}

/* ---- segments that are not usable queues ---- */

static void write_at(const char *path, long off, const void *bytes, size_t len) {
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fseek(f, off, SEEK_SET) == 0);
    CHECK(fwrite(bytes, 1, len, f) == len);
    fclose(f);
}

static const char *damaged(void (*damage)(const char *path)) {
    const char *t = new_target("file");
    shmq_queue *q = create(t, 16, 4);
    shmq_queue_free(q);
    damage(t + strlen("file:"));
    return t;
}

static void bad_magic(const char *path) { write_at(path, 0, "garbage!", 8); }
static void bad_version(const char *path) { write_at(path, 8, "\x63\0\0\0", 4); }
static void bad_checksum(const char *path) { write_at(path, 16, "\x20\0\0\0", 4); }
static void truncated(const char *path) { CHECK(truncate(path, 100) == 0); }
static void unpublished(const char *path) {
    static const uint8_t zero[8] = {0};
    write_at(path, 0, zero, 8); /* magic still zero: creation never finished */
}

static void test_unusable_segments(void) {
    shmq_queue *sentinel = (shmq_queue *)(uintptr_t)0x5a5a, *out = sentinel;
    CHECK_STATUS(shmq_queue_open(damaged(bad_magic), &out), SHMQ_CORRUPT);
    CHECK(strstr(shmq_last_error(), "magic") != NULL);
    CHECK_STATUS(shmq_queue_open(damaged(bad_version), &out), SHMQ_VERSION_MISMATCH);
    CHECK(strstr(shmq_last_error(), "version 99") != NULL);
    CHECK_STATUS(shmq_queue_open(damaged(bad_checksum), &out), SHMQ_CORRUPT);
    CHECK(strstr(shmq_last_error(), "checksum") != NULL);
    CHECK_STATUS(shmq_queue_open(damaged(truncated), &out), SHMQ_CORRUPT);
    CHECK_STATUS(shmq_queue_open_or_create(damaged(bad_magic), 16, 4, 0, 0, &out), SHMQ_CORRUPT);
    double t0 = now_s();
    CHECK_STATUS(shmq_queue_open(damaged(unpublished), &out), SHMQ_NOT_READY); /* after a bounded wait */
    CHECK(now_s() - t0 < 30.0);
    CHECK(out == sentinel);

    /* an operating-system error that has no status of its own */
    CHECK_STATUS(shmq_queue_open("file:/tmp", &out), SHMQ_IO);
    CHECK(strstr(shmq_last_error(), "/tmp") != NULL);
    CHECK(out == sentinel);
}

/* shmq_target_unlink removes only shmq's segments; the forced variant anything.
 * Opening what is not a segment fails at once. */
static void test_unlink_checks(void) {
    const char *t = new_target("file");
    const char *path = t + strlen("file:");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("user data, not a queue", f);
    fclose(f);
    CHECK_STATUS(shmq_target_unlink(t), SHMQ_CORRUPT);
    CHECK(strstr(shmq_last_error(), "not a shmq segment") != NULL);
    CHECK(access(path, F_OK) == 0);
    CHECK_STATUS(shmq_target_unlink_force(t), SHMQ_OK);
    CHECK(access(path, F_OK) != 0);
    CHECK_STATUS(shmq_target_unlink_force(t), SHMQ_OK); /* idempotent too */
    CHECK_STATUS(shmq_target_unlink_force(NULL), SHMQ_NULL_PARAMETER);
    /* a damaged shmq segment (its magic intact) is still shmq's */
    CHECK_STATUS(shmq_target_unlink(damaged(bad_checksum)), SHMQ_OK);

    shmq_queue *sentinel = (shmq_queue *)(uintptr_t)0x5a5a, *out = sentinel;
    double t0 = now_s();
    CHECK_STATUS(shmq_queue_open("file:/dev/null", &out), SHMQ_CORRUPT);
    CHECK(strstr(shmq_last_error(), "not a regular file") != NULL);
    CHECK(now_s() - t0 < 1.0);
    CHECK(out == sentinel);
}

/* Opening a queue the caller may not write: as root, from a child that
 * drops to uid/gid 65534; otherwise a queue created read-only. */
static void test_permission_denied(void) {
    const char *t = new_target("posix");
    shmq_queue *q = NULL;
    int root = geteuid() == 0;
    CHECK_STATUS(shmq_queue_create(t, 16, 4, root ? 0600 : 0400, 0, &q), SHMQ_OK);
    pid_t pid = fork();
    if (pid == 0) {
        if (root && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
        shmq_queue *other = NULL;
        shmq_status s = shmq_queue_open(t, &other);
        _exit(s == SHMQ_PERMISSION_DENIED ? 0 : 1);
    }
    int status = 0, waited = 0;
    while (waitpid(pid, &status, WNOHANG) == 0 && waited++ < 10000) sleep_ms(1);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    shmq_queue_free(q);
}

/* ---- one handle, many threads ---- */

#define T_PRODUCERS 2
#define T_CONSUMERS 2
#define T_COUNT 20000

struct worker {
    struct joinable j;
    shmq_queue *q;
    uint32_t id;
    int ok;
    uint32_t *seen; /* [T_PRODUCERS + 1][T_COUNT], owned by a consumer */
};

static void *produce(void *arg) {
    struct worker *w = arg;
    uint8_t m[64];
    w->ok = 1;
    for (uint64_t seq = 0; seq < T_COUNT; seq++) {
        size_t len = msg_len(seq, sizeof m);
        msg_make(m, len, w->id, seq);
        if (shmq_queue_enqueue_block(w->q, m, len, 10000000000LL) != SHMQ_OK) {
            w->ok = 0;
            break;
        }
    }
    w->j.done = 1;
    return NULL;
}

static void *consume(void *arg) {
    struct worker *w = arg;
    uint8_t m[64];
    int64_t next[T_PRODUCERS + 1] = {0};
    w->ok = 1;
    for (;;) {
        size_t n;
        shmq_status s = shmq_queue_dequeue_block(w->q, m, sizeof m, 10000000000LL, &n);
        if (s == SHMQ_CLOSED) break;
        uint32_t p;
        uint64_t seq;
        if (s != SHMQ_OK || msg_check(m, n, &p, &seq) != 0 || p < 1 || p > T_PRODUCERS ||
            seq >= T_COUNT || (int64_t)seq < next[p]) {
            w->ok = 0;
            break;
        }
        next[p] = (int64_t)seq + 1;
        w->seen[p * T_COUNT + seq]++;
    }
    w->j.done = 1;
    return NULL;
}

static void test_threads(void) {
    shmq_queue *q = create(new_target("posix"), 64, 16);
    struct worker prod[T_PRODUCERS], cons[T_CONSUMERS];
    for (int i = 0; i < T_CONSUMERS; i++) {
        cons[i] = (struct worker){.q = q, .seen = calloc((T_PRODUCERS + 1) * T_COUNT, sizeof(uint32_t))};
        pthread_create(&cons[i].j.thread, NULL, consume, &cons[i]);
    }
    for (int i = 0; i < T_PRODUCERS; i++) {
        prod[i] = (struct worker){.q = q, .id = (uint32_t)i + 1};
        pthread_create(&prod[i].j.thread, NULL, produce, &prod[i]);
    }
    for (int i = 0; i < T_PRODUCERS; i++) {
        join_within(&prod[i].j);
        CHECK(prod[i].ok);
    }
    CHECK_STATUS(shmq_queue_close(q), SHMQ_OK);
    int exactly_once = 1;
    for (int i = 0; i < T_CONSUMERS; i++) {
        join_within(&cons[i].j);
        CHECK(cons[i].ok);
    }
    for (int p = 1; p <= T_PRODUCERS; p++) {
        for (int s = 0; s < T_COUNT; s++) {
            uint32_t total = 0;
            for (int i = 0; i < T_CONSUMERS; i++) total += cons[i].seen[p * T_COUNT + s];
            if (total != 1) exactly_once = 0;
        }
    }
    CHECK(exactly_once);
    for (int i = 0; i < T_CONSUMERS; i++) free(cons[i].seen);
    shmq_stats st;
    CHECK_STATUS(shmq_queue_stats(q, &st), SHMQ_OK);
    CHECK(st.enqueued == T_PRODUCERS * T_COUNT && st.dequeued == T_PRODUCERS * T_COUNT && st.len == 0);
    shmq_queue_free(q);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_shmq: timed out after 120 s\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(2);
    remove_targets();
    _exit(1);
}

/* Zero-copy and batch calls, in both modes: reserve/commit/cancel,
 * consume/release, a batch partial when full, a flat-buffer batch out. */
static void test_zero_copy_and_batches(void) {
    for (int mode = 0; mode < 2; mode++) {
        const char *t = new_target("posix");
        shmq_queue *q = NULL;
        CHECK_STATUS(shmq_queue_create(t, 16, 4, 0, mode ? SHMQ_QUEUE_SPSC : 0, &q), SHMQ_OK);
        shmq_reservation *r = NULL;
        uint8_t *w = NULL;
        CHECK_STATUS(shmq_queue_reserve(q, 17, 0, &r, &w), SHMQ_TOO_LARGE);
        CHECK(r == NULL && w == NULL);
        CHECK_STATUS(shmq_queue_reserve(q, 16, 0, &r, &w), SHMQ_OK);
        CHECK(r != NULL && w != NULL);
        memcpy(w, "hello", 5);
        CHECK_STATUS(shmq_reservation_commit(r, 5), SHMQ_OK);
        CHECK_STATUS(shmq_queue_reserve(q, 4, -1, &r, &w), SHMQ_OK);
        shmq_reservation_cancel(r);
        CHECK_STATUS(shmq_queue_reserve(q, 4, 1000000, &r, &w), SHMQ_OK);
        CHECK_STATUS(shmq_reservation_commit(r, 5), SHMQ_TOO_LARGE); /* beyond the reservation */
        shmq_reservation_cancel(NULL);

        shmq_message *m = NULL;
        const uint8_t *data = NULL;
        size_t len = 0;
        CHECK_STATUS(shmq_queue_consume(q, 0, &m, &data, &len), SHMQ_OK);
        CHECK(len == 5 && memcmp(data, "hello", 5) == 0);
        shmq_message_release(m);
        CHECK_STATUS(shmq_queue_consume(q, 0, &m, &data, &len), SHMQ_EMPTY);
        CHECK_STATUS(shmq_queue_consume(q, 1000000, &m, &data, &len), SHMQ_TIMEOUT);
        shmq_message_release(NULL);

        shmq_iovec iov[6] = {
            {(const uint8_t *)"a", 1}, {(const uint8_t *)"bb", 2}, {(const uint8_t *)"ccc", 3},
            {NULL, 0}, {(const uint8_t *)"e", 1}, {(const uint8_t *)"f", 1},
        };
        size_t count = 99;
        CHECK_STATUS(shmq_queue_enqueue_batch(q, iov, 6, 0, &count), SHMQ_OK);
        CHECK(count == 4); /* the ring holds 4 */
        CHECK_STATUS(shmq_queue_enqueue_batch(q, iov + 4, 2, 0, &count), SHMQ_FULL);
        uint8_t buf[5];
        size_t lens[8];
        CHECK_STATUS(shmq_queue_dequeue_batch(q, buf, 0, lens, 8, 0, &count), SHMQ_BUFFER_TOO_SMALL);
        CHECK_STATUS(shmq_queue_dequeue_batch(q, buf, sizeof buf, lens, 8, 0, &count), SHMQ_OK);
        CHECK(count == 2 && lens[0] == 1 && lens[1] == 2 && memcmp(buf, "abb", 3) == 0);
        CHECK_STATUS(shmq_queue_dequeue_batch(q, buf, sizeof buf, lens, 8, -1, &count), SHMQ_OK);
        CHECK(count == 2 && lens[0] == 3 && lens[1] == 0 && memcmp(buf, "ccc", 3) == 0);
        CHECK_STATUS(shmq_queue_dequeue_batch(q, buf, sizeof buf, lens, 8, 0, &count), SHMQ_EMPTY);
        CHECK_STATUS(shmq_queue_enqueue_batch(q, NULL, 0, 0, &count), SHMQ_OK);
        CHECK(count == 0);
        CHECK_STATUS(shmq_queue_enqueue_batch(q, NULL, 1, 0, &count), SHMQ_NULL_PARAMETER);
        CHECK_STATUS(shmq_queue_unlink(q), SHMQ_OK);
        shmq_queue_free(q);
    }
}

int main(void) {
    atexit(remove_targets);
    signal(SIGALRM, on_alarm); /* a watchdog: every wait in this test is bounded */
    alarm(120);
    test_version_and_names();
    test_last_error();
    test_backing("sysv");
    test_backing("posix");
    test_backing("file");
    test_bare_targets();
    test_operations();
    test_spsc();
    test_zero_copy_and_batches();
    test_null_parameters();
    test_bad_arguments();
    test_unusable_segments();
    test_unlink_checks();
    test_permission_denied();
    test_threads();
    if (failures) {
        fprintf(stderr, "test_shmq: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("test_shmq: %d checks passed\n", checks);
    return 0;
}
