/* log_sub TARGET [options]: a subscriber process of the fan-out log at
 * TARGET, for test_log_procs.c. It subscribes, prints READY, then receives
 * until the log is closed (or --max messages were received) and prints
 *   RESULT <received> <lagged> <first> <last>
 * It checks every message: intact (msg.h checksum) and exactly the next
 * one, where SHMQ_LAGGED's count of missed messages moves "next" on (so it
 * fails unless received + lagged accounts for every position it passed).
 * Nothing arriving for 10 s is a failure.
 *
 * Options:
 *   --name NAME        read through the named cursor NAME (created at the
 *                      start position if missing)
 *   --oldest           start at the oldest message (default: the latest)
 *   --slow             pause 1 ms every 20 messages
 *   --no-loss          SHMQ_LAGGED is a failure
 *   --max N            stop after N messages
 *   --expect-first S   the first message must be number S
 *   --commit-at K      commit after the K-th message (named cursor)
 *   --rollback-at K    after the K-th message, roll back to the committed
 *                      position (printing "ROLLBACK <position>") and go on
 *   --commit-at-end    commit before exiting
 *   --hold             after subscribing print "HELD <pid>" and wait for a
 *                      line on stdin before reading */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "msg.h"
#include "shmq.h"

#define WAIT_NS (10 * 1000000000LL)

static int fail(const char *what, shmq_status s) {
    fprintf(stderr, "log_sub %ld: %s: %s: %s\n", (long)getpid(), what, shmq_status_name(s), shmq_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s TARGET [options]\n", argv[0]);
        return 2;
    }
    const char *name = NULL;
    uint32_t start = SHMQ_START_LATEST;
    int slow = 0, no_loss = 0, hold = 0, commit_at_end = 0;
    uint64_t max = UINT64_MAX, expect_first = UINT64_MAX, commit_at = 0, rollback_at = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--name") == 0 && more) name = argv[++i];
        else if (strcmp(a, "--oldest") == 0) start = SHMQ_START_OLDEST;
        else if (strcmp(a, "--slow") == 0) slow = 1;
        else if (strcmp(a, "--no-loss") == 0) no_loss = 1;
        else if (strcmp(a, "--hold") == 0) hold = 1;
        else if (strcmp(a, "--commit-at-end") == 0) commit_at_end = 1;
        else if (strcmp(a, "--max") == 0 && more) max = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--expect-first") == 0 && more) expect_first = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--commit-at") == 0 && more) commit_at = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--rollback-at") == 0 && more) rollback_at = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "log_sub: unknown argument %s\n", a);
            return 2;
        }
    }
    shmq_log *log = NULL;
    shmq_status s = shmq_log_open(argv[1], &log);
    if (s != SHMQ_OK) return fail("open", s);
    shmq_subscriber *sub = NULL;
    s = name ? shmq_log_subscribe_named(log, name, start, &sub) : shmq_log_subscribe(log, start, &sub);
    if (s != SHMQ_OK) return fail("subscribe", s);
    if (hold) {
        printf("HELD %ld\n", (long)getpid());
        fflush(stdout);
        char line[64];
        if (!fgets(line, sizeof line, stdin)) return 1;
    }
    printf("READY\n");
    fflush(stdout);

    uint32_t slot = 0;
    shmq_log_slot_size(log, &slot);
    uint8_t *buf = malloc(slot ? slot : 1);
    uint64_t expect = 0, received = 0, lagged = 0, first = UINT64_MAX, last = UINT64_MAX, committed = 0;
    int rc = buf ? 0 : 1;
    shmq_subscriber_position(sub, &expect);
    if (name) shmq_subscriber_committed(sub, &committed);
    while (rc == 0 && received < max) {
        size_t n = 0;
        uint64_t missed = 0;
        s = shmq_subscriber_recv_block(sub, buf, slot, WAIT_NS, &n, &missed);
        if (s == SHMQ_CLOSED) break;
        if (s == SHMQ_LAGGED) {
            if (no_loss || missed == 0) {
                rc = fail("receive", s);
                break;
            }
            lagged += missed;
            expect += missed;
            continue;
        }
        if (s != SHMQ_OK) {
            rc = fail("receive", s);
            break;
        }
        uint32_t producer = 0;
        uint64_t seq = UINT64_MAX;
        if (msg_check(buf, n, &producer, &seq) != 0 || producer != 1) {
            fprintf(stderr, "log_sub: torn or foreign message of %zu bytes\n", n);
            rc = 1;
            break;
        }
        if (seq != expect || (first == UINT64_MAX && expect_first != UINT64_MAX && seq != expect_first)) {
            fprintf(stderr, "log_sub: message %llu, expected %llu (first wanted: %llu)\n",
                    (unsigned long long)seq, (unsigned long long)expect, (unsigned long long)expect_first);
            rc = 1;
            break;
        }
        if (first == UINT64_MAX) first = seq;
        last = seq;
        expect++;
        received++;
        if (slow && received % 20 == 0) nanosleep(&(struct timespec){0, 1000000}, NULL);
        if (commit_at && received == commit_at) {
            s = shmq_subscriber_commit(sub);
            if (s != SHMQ_OK) rc = fail("commit", s);
            committed = expect;
        }
        if (rollback_at && received == rollback_at) {
            uint64_t pos = UINT64_MAX;
            s = shmq_subscriber_rollback(sub, &pos);
            if (s != SHMQ_OK) rc = fail("rollback", s);
            if (pos != committed) {
                fprintf(stderr, "log_sub: rolled back to %llu, committed %llu\n", (unsigned long long)pos,
                        (unsigned long long)committed);
                rc = 1;
            }
            printf("ROLLBACK %llu\n", (unsigned long long)pos);
            expect = pos;
        }
    }
    if (rc == 0 && commit_at_end) {
        s = shmq_subscriber_commit(sub);
        if (s != SHMQ_OK) rc = fail("commit", s);
    }
    if (rc == 0)
        printf("RESULT %llu %llu %lld %lld\n", (unsigned long long)received, (unsigned long long)lagged,
               first == UINT64_MAX ? -1LL : (long long)first, last == UINT64_MAX ? -1LL : (long long)last);
    fflush(stdout);
    free(buf);
    shmq_subscriber_free(sub);
    shmq_log_free(log);
    return rc;
}
