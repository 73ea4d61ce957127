/* The fan-out log across C processes: the log_pub and log_sub programs of
 * this directory, exec'd.
 *
 * 1. Overwrite mode: a publisher process, a deliberately slow subscriber
 *    process and a normal one. The slow one must see SHMQ_LAGGED, and for
 *    each subscriber received + lagged == published, with every message
 *    intact and exactly where the count says (log_sub checks that).
 * 2. Reliable mode: the same with both subscribers required to lose nothing.
 * 3. Named cursors: commit in one process, resume in the next; rollback;
 *    a copy (cursor_from) read by a third; SHMQ_CURSOR_IN_USE while a live
 *    process holds a cursor; a holder killed with SIGKILL releases it.
 *
 * Every wait has a timeout; children are killed and logs removed even when
 * the test fails. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "msg.h"
#include "shmq.h"

static char dir[512];
static char targets[3][128];
static pid_t children[16];
static int n_children = 0;

static void cleanup(void) {
    for (int i = 0; i < n_children; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
        }
    }
    for (int i = 0; i < 3; i++)
        if (targets[i][0]) shmq_target_unlink_force(targets[i]);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_log_procs: timed out after 120 s\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(2);
    cleanup();
    _exit(1);
}

struct child {
    pid_t pid;
    int in, out;      /* its stdin (write end), its stdout (read end) */
    char buf[8192];   /* output read but not yet returned as lines */
    size_t len;
};

/* Starts dir/PROGRAM with the arguments (NULL-terminated), its stdin and
 * stdout on pipes. */
static void spawn(struct child *c, char *const argv[]) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, argv[0]);
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) {
        perror("pipe");
        exit(1);
    }
    memset(c, 0, sizeof *c);
    c->pid = fork();
    if (c->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execv(path, argv);
        perror(path);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c->in = in[1];
    c->out = out[0];
    children[n_children++] = c->pid;
}

/* The next line of the child's output (without the newline) within ms, or
 * -1 on timeout or end of output. */
static int read_line(struct child *c, char *line, size_t cap, int ms) {
    double end = now_s() + ms / 1000.0;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            snprintf(line, cap, "%.*s", (int)n, c->buf);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return 0;
        }
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0 || c->len == sizeof c->buf) return -1;
        struct pollfd p = {.fd = c->out, .events = POLLIN};
        if (poll(&p, 1, left) <= 0) return -1;
        ssize_t got = read(c->out, c->buf + c->len, sizeof c->buf - c->len);
        if (got <= 0) return -1;
        c->len += (size_t)got;
    }
}

/* Reads lines until one starts with prefix; 0 if found within ms. */
static int expect_line(struct child *c, const char *prefix, char *line, size_t cap, int ms) {
    double end = now_s() + ms / 1000.0;
    while (now_s() < end) {
        if (read_line(c, line, cap, (int)((end - now_s()) * 1000) + 1) != 0) break;
        if (strncmp(line, prefix, strlen(prefix)) == 0) return 0;
    }
    fprintf(stderr, "child %ld: no \"%s\" line within %d ms\n", (long)c->pid, prefix, ms);
    return -1;
}

/* Exit status of the child, or -1 if it did not exit within ms (it is then killed). */
static int wait_exit(struct child *c, int ms) {
    int status = 0;
    for (int waited = 0;; waited++) {
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        if (r == c->pid) break;
        if (waited >= ms) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &status, 0);
            status = -1;
            break;
        }
        sleep_ms(1);
    }
    for (int i = 0; i < n_children; i++)
        if (children[i] == c->pid) children[i] = 0;
    close(c->in);
    close(c->out);
    if (status == -1) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct result {
    unsigned long long received, lagged;
    long long first, last;
};

/* Reads the child's RESULT line and waits for it to exit 0. */
static int finish(struct child *c, struct result *r) {
    char line[256];
    int ok = expect_line(c, "RESULT ", line, sizeof line, 60000) == 0 &&
             sscanf(line, "RESULT %llu %llu %lld %lld", &r->received, &r->lagged, &r->first, &r->last) == 4;
    int rc = wait_exit(c, 10000);
    if (rc != 0) fprintf(stderr, "child %ld exited with %d\n", (long)c->pid, rc);
    return ok && rc == 0 ? 0 : -1;
}

static shmq_log *create(int i, const char *tag, uint32_t slot, uint64_t cap, uint32_t flags) {
    snprintf(targets[i], sizeof targets[i], "posix:shmq-ctest-logprocs-%s-%ld", tag, (long)getpid());
    shmq_log *l = NULL;
    CHECK_STATUS(shmq_log_create(targets[i], slot, cap, 0, flags, 0, &l), SHMQ_OK);
    if (!l) {
        cleanup();
        exit(1);
    }
    return l;
}

/* A publisher and a slow and a normal subscriber, each its own process. */
static void test_fanout(uint32_t flags, unsigned long long count) {
    int reliable = (flags & SHMQ_LOG_RELIABLE) != 0;
    shmq_log *l = create(reliable, reliable ? "reliable" : "overwrite", 64, 64, flags);
    const char *t = targets[reliable];
    struct child slow, fast, pub;
    char line[256], count_arg[32];
    snprintf(count_arg, sizeof count_arg, "%llu", count);
    if (reliable) {
        spawn(&slow, (char *[]){"log_sub", (char *)t, "--slow", "--no-loss", NULL});
        spawn(&fast, (char *[]){"log_sub", (char *)t, "--no-loss", NULL});
    } else {
        spawn(&slow, (char *[]){"log_sub", (char *)t, "--slow", NULL});
        spawn(&fast, (char *[]){"log_sub", (char *)t, NULL});
    }
    /* Both subscribed at position 0 before the first message. */
    CHECK(expect_line(&slow, "READY", line, sizeof line, 10000) == 0);
    CHECK(expect_line(&fast, "READY", line, sizeof line, 10000) == 0);
    double t0 = now_s();
    spawn(&pub, (char *[]){"log_pub", (char *)t, count_arg, "--close", NULL});
    CHECK(expect_line(&pub, "PUBLISHED", line, sizeof line, 60000) == 0);
    CHECK(strncmp(line, "PUBLISHED ", 10) == 0 && strtoull(line + 10, NULL, 10) == count);
    CHECK(wait_exit(&pub, 10000) == 0);
    struct result rs = {0}, rf = {0};
    CHECK(finish(&slow, &rs) == 0);
    CHECK(finish(&fast, &rf) == 0);
    double secs = now_s() - t0;

    CHECK(rs.received + rs.lagged == count);
    CHECK(rf.received + rf.lagged == count);
    CHECK(rs.last == (long long)count - 1 && rf.last == (long long)count - 1);
    if (reliable) {
        CHECK(rs.lagged == 0 && rf.lagged == 0 && rs.first == 0 && rf.first == 0);
    } else {
        CHECK(rs.lagged > 0); /* the slow one cannot keep up with a 64-slot ring */
    }
    shmq_log_counters st;
    CHECK_STATUS(shmq_log_stats(l, &st), SHMQ_OK);
    CHECK(st.published == count && st.lagged == rs.lagged + rf.lagged);
    printf("test_log_procs: %s: 1 publisher, 2 subscriber processes, %llu messages in %.2f s: slow received "
           "%llu + lagged %llu, normal received %llu + lagged %llu\n",
           reliable ? "reliable" : "overwrite", count, secs, rs.received, rs.lagged, rf.received, rf.lagged);
    CHECK_STATUS(shmq_log_unlink(l), SHMQ_OK);
    shmq_log_free(l);
}

static uint64_t cursor_position(shmq_log *l, const char *name, uint32_t *owner) {
    shmq_cursor_info info;
    memset(&info, 0xff, sizeof info);
    CHECK_STATUS(shmq_log_cursor(l, name, &info), SHMQ_OK);
    if (owner) *owner = info.owner_pid;
    return info.position;
}

static void test_named_cursors(void) {
    shmq_log *l = create(2, "cursors", 64, 1024, 0);
    const char *t = targets[2];
    uint8_t m[64];
    for (uint64_t i = 0; i < 300; i++) {
        size_t len = msg_len(i, sizeof m);
        msg_make(m, len, 1, i);
        CHECK_STATUS(shmq_log_publish(l, m, len, NULL), SHMQ_OK);
    }
    struct child c;
    struct result r;
    char line[256];
    uint32_t owner = 1;

    /* 1: reads 0..149, commits at 100 */
    spawn(&c, (char *[]){"log_sub", (char *)t, "--name", "audit", "--oldest", "--max", "150", "--commit-at",
                         "100", NULL});
    CHECK(finish(&c, &r) == 0);
    CHECK(r.received == 150 && r.first == 0 && r.last == 149);
    CHECK(cursor_position(l, "audit", &owner) == 100 && owner == 0);

    /* 2: resumes at 100, commits at 120, reads to 129, rolls back to 120 and re-reads */
    spawn(&c, (char *[]){"log_sub", (char *)t, "--name", "audit", "--max", "40", "--expect-first", "100",
                         "--commit-at", "20", "--rollback-at", "30", NULL});
    CHECK(expect_line(&c, "ROLLBACK", line, sizeof line, 10000) == 0);
    CHECK(strcmp(line, "ROLLBACK 120") == 0);
    CHECK(finish(&c, &r) == 0);
    CHECK(r.received == 40 && r.first == 100 && r.last == 129);
    CHECK(cursor_position(l, "audit", NULL) == 120);

    /* 3: a copy of "audit", held by a live process, then read to the end */
    CHECK_STATUS(shmq_log_cursor_from(l, "audit-copy", "audit"), SHMQ_OK);
    CHECK(cursor_position(l, "audit-copy", NULL) == 120);
    spawn(&c, (char *[]){"log_sub", (char *)t, "--name", "audit-copy", "--hold", "--max", "180",
                         "--expect-first", "120", "--commit-at-end", NULL});
    CHECK(expect_line(&c, "HELD", line, sizeof line, 10000) == 0);
    shmq_subscriber *sentinel = (shmq_subscriber *)(uintptr_t)0x5a5a, *s = sentinel;
    CHECK_STATUS(shmq_log_subscribe_named(l, "audit-copy", SHMQ_START_OLDEST, &s), SHMQ_CURSOR_IN_USE);
    CHECK(s == sentinel);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)c.pid);
    CHECK(strstr(shmq_last_error(), pid) != NULL);
    CHECK_STATUS(shmq_log_remove_cursor(l, "audit-copy"), SHMQ_CURSOR_IN_USE);
    cursor_position(l, "audit-copy", &owner);
    CHECK(owner == (uint32_t)c.pid);
    CHECK(write(c.in, "go\n", 3) == 3);
    CHECK(finish(&c, &r) == 0);
    CHECK(r.received == 180 && r.first == 120 && r.last == 299);
    CHECK(cursor_position(l, "audit-copy", &owner) == 300 && owner == 0);
    CHECK_STATUS(shmq_log_remove_cursor(l, "audit-copy"), SHMQ_OK);

    /* 4: a holder killed with SIGKILL does not keep the cursor */
    spawn(&c, (char *[]){"log_sub", (char *)t, "--name", "audit", "--hold", NULL});
    CHECK(expect_line(&c, "HELD", line, sizeof line, 10000) == 0);
    cursor_position(l, "audit", &owner);
    CHECK(owner == (uint32_t)c.pid);
    kill(c.pid, SIGKILL);
    CHECK(wait_exit(&c, 10000) == 128 + SIGKILL);
    s = NULL;
    CHECK_STATUS(shmq_log_subscribe_named(l, "audit", SHMQ_START_OLDEST, &s), SHMQ_OK);
    if (s) {
        uint64_t pos = 0;
        size_t n = 0;
        CHECK_STATUS(shmq_subscriber_position(s, &pos), SHMQ_OK);
        CHECK(pos == 120);
        CHECK_STATUS(shmq_subscriber_recv_try(s, m, sizeof m, &n, NULL), SHMQ_OK);
        uint32_t p;
        uint64_t seq = 0;
        CHECK(msg_check(m, n, &p, &seq) == 0 && seq == 120);
        shmq_subscriber_free(s);
    }
    printf("test_log_procs: named cursors: commit, resume, rollback, copy, in use and a killed holder across "
           "processes: ok\n");
    CHECK_STATUS(shmq_log_unlink(l), SHMQ_OK);
    shmq_log_free(l);
}

int main(int argc, char **argv) {
    (void)argc;
    snprintf(dir, sizeof dir, "%s", argv[0]);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm); /* a watchdog: every wait in this test is bounded */
    alarm(120);
    atexit(cleanup);
    test_fanout(0, 20000);
    test_fanout(SHMQ_LOG_RELIABLE, 10000);
    test_named_cursors();
    if (failures) {
        fprintf(stderr, "test_log_procs: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("test_log_procs: %d checks passed\n", checks);
    return 0;
}
