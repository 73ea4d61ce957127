/* corpus_replay TARGET: every C API call on one (possibly hostile) segment.
 *
 * Run by the engine's regression corpus of untrusted segments
 * (tests/corpus.rs), once per case: the Rust test replays the case through
 * the Rust API in its own process, then through this program, and compares
 * what opening gave. Prints `open STATUS` (the numeric shmq_status of opening
 * the target as its own kind) and exits 0; whatever the image, every call
 * must return: a crash or a hang here fails the case. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmq.h"

#define TINY_NS 5000000 /* 5 ms: the timeout of every blocking call */

static uint8_t buf[1 << 16];

static void replay_queue(shmq_queue *q) {
    uint64_t len, discarded;
    size_t n;
    shmq_stats stats;
    (void)shmq_queue_len(q, &len);
    (void)shmq_queue_stats(q, &stats);
    (void)shmq_queue_enqueue_try(q, (const uint8_t *)"c", 1);
    (void)shmq_queue_dequeue_try(q, buf, sizeof buf, &n);
    (void)shmq_queue_enqueue_shift(q, (const uint8_t *)"s", 1, &discarded);
    (void)shmq_queue_enqueue_block(q, (const uint8_t *)"b", 1, TINY_NS);
    (void)shmq_queue_dequeue_block(q, buf, sizeof buf, TINY_NS, &n);
    (void)shmq_queue_close(q);
    shmq_queue_free(q);
}

static void replay_log(shmq_log *log) {
    shmq_log_counters counters;
    uint64_t seq, missed;
    size_t n;
    const uint32_t starts[] = {SHMQ_START_OLDEST, SHMQ_START_LATEST};
    (void)shmq_log_stats(log, &counters);
    (void)shmq_log_publish(log, (const uint8_t *)"c", 1, &seq);
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        shmq_subscriber *sub = NULL;
        if (shmq_log_subscribe(log, starts[i], &sub) == SHMQ_OK) {
            (void)shmq_subscriber_recv_try(sub, buf, sizeof buf, &n, &missed);
            (void)shmq_subscriber_recv_block(sub, buf, sizeof buf, TINY_NS, &n, &missed);
            shmq_subscriber_free(sub);
        }
    }
    (void)shmq_log_create_cursor(log, "c-corpus", SHMQ_START_OLDEST);
    (void)shmq_log_close(log);
    shmq_log_free(log);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: corpus_replay TARGET\n");
        return 2;
    }
    shmq_queue *q = NULL;
    shmq_status opened = shmq_queue_open(argv[1], &q);
    if (opened == SHMQ_OK) {
        replay_queue(q);
    } else {
        shmq_log *log = NULL;
        shmq_status opened_log = shmq_log_open(argv[1], &log);
        /* A log, or not a queue: opening it as a log is its own kind's answer. */
        if (opened_log == SHMQ_OK || opened == SHMQ_INCOMPATIBLE)
            opened = opened_log;
        if (opened_log == SHMQ_OK)
            replay_log(log);
    }
    printf("open %d\n", (int)opened);
    return 0;
}
