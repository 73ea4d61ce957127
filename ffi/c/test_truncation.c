/* Truncation from a C host: child processes (forked) loop on a queue or a
 * log as writer and reader; the parent truncates the backing (to 0, or into
 * the middle of the slots) under them. The children must survive (shmq's
 * SIGBUS guard), drop their handles and exit 0. POSIX and file backings
 * (SysV segments cannot be truncated). Every wait has a timeout; every
 * segment is removed, also when a check fails.
 *
 * TRIES (environment SHMQ_TRUNC_TRIES, default 10) tries per backing and
 * kind. Prints a summary line with the deaths. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define OP_NS 10000000 /* every blocking call: 10 ms */

enum role { QUEUE_WRITER, QUEUE_READER, LOG_WRITER, LOG_READER };

/* The file behind a target: /dev/shm/NAME or PATH. */
static void path_of(const char *target, char *out, size_t cap) {
    if (strncmp(target, "posix:", 6) == 0)
        snprintf(out, cap, "/dev/shm/%s", target + 6);
    else
        snprintf(out, cap, "%s", target + 5);
}

/* A child: attach, say so on `ready`, loop until the parent says it
 * truncated (a byte on `done`) and then a few more operations (or an
 * operation returns SHMQ_CORRUPT), detach, exit 0. Exit 2 when the parent
 * never says; 3 when it cannot attach. */
static int child(enum role role, const char *target, int ready, int done) {
    shmq_queue *q = NULL;
    shmq_log *log = NULL;
    shmq_subscriber *sub = NULL;
    shmq_status s;
    if (role == QUEUE_WRITER || role == QUEUE_READER)
        s = shmq_queue_open(target, &q);
    else if ((s = shmq_log_open(target, &log)) == SHMQ_OK && role == LOG_READER)
        s = shmq_log_subscribe(log, SHMQ_START_OLDEST, &sub);
    if (s != SHMQ_OK) {
        fprintf(stderr, "child: open %s: %s: %s\n", target, shmq_status_name(s), shmq_last_error());
        return 3;
    }
    if (write(ready, "r", 1) != 1) return 3;
    fcntl(done, F_SETFL, O_NONBLOCK);
    uint8_t msg[48], buf[64];
    memset(msg, 7, sizeof msg);
    int after = -1, corrupt = 0;
    double give_up = now_s() + 10;
    while (after != 0 && !corrupt && now_s() < give_up) {
        size_t n;
        uint64_t x;
        switch (role) {
        case QUEUE_WRITER: s = shmq_queue_enqueue_block(q, msg, sizeof msg, OP_NS); break;
        case QUEUE_READER: s = shmq_queue_dequeue_block(q, buf, sizeof buf, OP_NS, &n); break;
        case LOG_WRITER: s = shmq_log_publish(log, msg, sizeof msg, &x); break;
        case LOG_READER: s = shmq_subscriber_recv_block(sub, buf, sizeof buf, OP_NS, &n, &x); break;
        }
        corrupt = s == SHMQ_CORRUPT;
        char c;
        if (after < 0 && read(done, &c, 1) == 1) after = 20;
        if (after > 0) after--;
    }
    if (sub) shmq_subscriber_free(sub);
    if (log) shmq_log_free(log);
    if (q) shmq_queue_free(q);
    return after == 0 || corrupt ? 0 : 2;
}

/* Exit status of pid (128 + signal if killed), or -1 after ms (then killed). */
static int wait_for(pid_t pid, int ms) {
    double end = now_s() + ms / 1e3;
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (now_s() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(1);
    }
}

static int tries_run = 0, deaths = 0, bad_exits = 0;

/* One try: a fresh segment, two children, one truncation to `size_kind`
 * (0: zero bytes, 1: half the file). */
static void one_try(const char *kind, int is_log, int size_kind) {
    const char *target = new_target(kind);
    shmq_queue *q = NULL;
    shmq_log *log = NULL;
    if (is_log)
        CHECK_STATUS(shmq_log_create(target, 64, 256, 0600, 0, 0, &log), SHMQ_OK);
    else
        CHECK_STATUS(shmq_queue_create(target, 64, 256, 0600, 0, &q), SHMQ_OK);
    if (!q && !log) return;
    pid_t pid[2];
    int ready[2], done[2][2];
    CHECK(pipe(ready) == 0);
    for (int i = 0; i < 2; i++) {
        CHECK(pipe(done[i]) == 0);
        enum role role = is_log ? (i ? LOG_READER : LOG_WRITER) : (i ? QUEUE_READER : QUEUE_WRITER);
        pid[i] = fork();
        if (pid[i] == 0) {
            close(ready[0]);
            close(done[i][1]);
            _exit(child(role, target, ready[1], done[i][0]));
        }
        close(done[i][0]);
    }
    close(ready[1]);
    /* Both attached (a byte each, or EOF if a child died first). */
    for (int got = 0; got < 2;) {
        char c;
        ssize_t r = read(ready[0], &c, 1);
        if (r == 1) got++;
        else if (r == 0 || errno != EINTR) break;
    }
    close(ready[0]);
    if (q) shmq_queue_free(q);
    if (log) shmq_log_free(log);
    sleep_ms(rand() % 4);
    char path[300];
    path_of(target, path, sizeof path);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK(truncate(path, size_kind ? st.st_size / 2 : 0) == 0);
    for (int i = 0; i < 2; i++) {
        /* A child may have met SHMQ_CORRUPT and exited already: then the
         * pipe has no reader (EPIPE; SIGPIPE is ignored in main). */
        ssize_t w = write(done[i][1], "d", 1);
        CHECK(w == 1 || (w < 0 && errno == EPIPE));
        close(done[i][1]);
    }
    for (int i = 0; i < 2; i++) {
        int rc = wait_for(pid[i], 20000);
        if (rc >= 128 || rc < 0) {
            deaths++;
            fprintf(stderr, "%s %s child %d: %s %d\n", kind, is_log ? "log" : "queue", i,
                    rc < 0 ? "hung" : "killed by signal", rc - 128);
        } else if (rc != 0) {
            bad_exits++;
            fprintf(stderr, "%s %s child %d exited %d\n", kind, is_log ? "log" : "queue", i, rc);
        }
    }
    shmq_target_unlink(target);
    tries_run++;
}

int main(void) {
    atexit(remove_targets);
    /* A write to the pipe of a child that has exited must fail, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    const char *env = getenv("SHMQ_TRUNC_TRIES");
    int tries = env ? atoi(env) : 10;
    srand((unsigned)getpid());
    const char *kinds[] = {"posix", "file"};
    for (int k = 0; k < 2; k++) {
        int before = deaths;
        for (int t = 0; t < tries; t++) {
            one_try(kinds[k], t % 2, (t / 2) % 2);
            n_made_targets = 0; /* removed already; keep the table small */
        }
        printf("C truncation %s: tries=%d deaths=%d\n", kinds[k], tries, deaths - before);
    }
    CHECK(deaths == 0);
    CHECK(bad_exits == 0);
    if (failures) {
        fprintf(stderr, "test_truncation: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_truncation: %d tries, %d checks passed\n", tries_run, checks);
    return 0;
}
