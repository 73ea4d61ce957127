/* A ticker feed in C: publishes price ticks to a shmq work queue, then
 * closes it so consumers know the feed is over.
 *
 *   ticker_producer TARGET [COUNT]        e.g.  ticker_producer posix:ticks 1000
 *
 * Build: cc -I include ticker_producer.c -L target/release -lshmq */
#include <stdio.h>
#include <stdlib.h>

#include "shmq.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s TARGET [COUNT]\n", argv[0]);
        return 2;
    }
    long count = argc > 2 ? atol(argv[2]) : 1000;
    static const char *symbols[] = {"AAPL", "MSFT", "NVDA", "TSLA"};

    shmq_queue *q = NULL; /* 64-byte ticks, 256 slots; opened if it already exists */
    shmq_status s = shmq_queue_open_or_create(argv[1], 64, 256, 0600, 0, &q);
    if (s != SHMQ_OK) {
        fprintf(stderr, "open %s: %s\n", argv[1], shmq_last_error());
        return 1;
    }
    for (long seq = 0; seq < count; seq++) {
        char tick[64];
        long price = 10000 + (seq * 7919) % 5000; /* cents */
        int len = snprintf(tick, sizeof tick, "%ld %s %ld.%02ld", seq, symbols[seq % 4], price / 100,
                           price % 100);
        /* wait up to 5 s while the queue is full (consumers are slow) */
        s = shmq_queue_enqueue_block(q, (const uint8_t *)tick, (size_t)len, 5000000000LL);
        if (s != SHMQ_OK) {
            fprintf(stderr, "tick %ld: %s\n", seq, shmq_last_error());
            break;
        }
    }
    shmq_queue_close(q); /* consumers drain what is left, then see SHMQ_CLOSED */
    shmq_queue_free(q);
    printf("published %ld ticks\n", count);
    return s == SHMQ_OK ? 0 : 1;
}
