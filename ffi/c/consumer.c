/* consumer TARGET [--max N] [--expect PRODUCERS COUNT]
 *
 * Opens TARGET (waiting up to 10 s for it to appear), prints READY, then
 * dequeues until the queue is closed and drained (or N messages were taken),
 * printing "RESULT <producer> <seq>" for each message. Fails if a message is
 * torn (bad checksum), if a producer's messages arrive out of order, or if
 * nothing arrives for 10 s. With --expect, also fails unless it received
 * exactly messages 0..COUNT-1 of producers 1..PRODUCERS, each once. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "msg.h"
#include "shmq.h"

#define MAX_PRODUCERS 64
#define WAIT_NS (10 * 1000000000LL)

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s TARGET [--max N] [--expect PRODUCERS COUNT]\n", argv[0]);
        return 2;
    }
    uint64_t max = UINT64_MAX, expect_producers = 0, expect_count = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--max") == 0 && i + 1 < argc) {
            max = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--expect") == 0 && i + 2 < argc) {
            expect_producers = strtoull(argv[++i], NULL, 10);
            expect_count = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "consumer: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    shmq_queue *q = NULL;
    shmq_status s = SHMQ_NOT_FOUND;
    for (int tries = 0; tries < 10000 && s == SHMQ_NOT_FOUND; tries++) {
        s = shmq_queue_open(argv[1], &q);
        if (s == SHMQ_NOT_FOUND) nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    if (s != SHMQ_OK) {
        fprintf(stderr, "consumer: open %s: %s: %s\n", argv[1], shmq_status_name(s), shmq_last_error());
        return 1;
    }
    printf("READY\n");
    fflush(stdout);

    uint32_t slot = 0;
    shmq_queue_slot_size(q, &slot);
    uint8_t *buf = malloc(slot ? slot : 1);
    int64_t next[MAX_PRODUCERS + 1]; /* lowest sequence still acceptable, per producer */
    for (int p = 0; p <= MAX_PRODUCERS; p++) next[p] = 0;
    uint64_t got = 0;
    int rc = 0;
    while (got < max && buf) {
        size_t n = 0;
        s = shmq_queue_dequeue_block(q, buf, slot, WAIT_NS, &n);
        if (s == SHMQ_CLOSED) break;
        if (s != SHMQ_OK) {
            fprintf(stderr, "consumer: dequeue: %s: %s\n", shmq_status_name(s), shmq_last_error());
            rc = 1;
            break;
        }
        uint32_t p;
        uint64_t seq;
        if (msg_check(buf, n, &p, &seq) != 0 || p > MAX_PRODUCERS) {
            fprintf(stderr, "consumer: torn or foreign message of %zu bytes\n", n);
            rc = 1;
            break;
        }
        if ((int64_t)seq < next[p]) {
            fprintf(stderr, "consumer: producer %u: message %llu after %lld (FIFO broken or duplicate)\n", p,
                    (unsigned long long)seq, (long long)next[p] - 1);
            rc = 1;
            break;
        }
        if (expect_producers && (int64_t)seq != next[p]) {
            fprintf(stderr, "consumer: producer %u: got message %llu, expected %lld\n", p,
                    (unsigned long long)seq, (long long)next[p]);
            rc = 1;
            break;
        }
        next[p] = (int64_t)seq + 1;
        got++;
        printf("RESULT %u %llu\n", p, (unsigned long long)seq);
    }
    if (rc == 0 && expect_producers) {
        for (uint64_t p = 1; p <= expect_producers && p <= MAX_PRODUCERS; p++) {
            if ((uint64_t)next[p] != expect_count) {
                fprintf(stderr, "consumer: producer %llu: received %lld of %llu messages\n",
                        (unsigned long long)p, (long long)next[p], (unsigned long long)expect_count);
                rc = 1;
            }
        }
        if (got != expect_producers * expect_count) rc = 1;
    }
    fflush(stdout);
    free(buf);
    shmq_queue_free(q);
    return buf ? rc : 1;
}
