/* Per-call cost of try-enqueue and try-dequeue of 64-byte messages through
 * the C interface, one thread, one queue (slot 64, capacity 1024): rounds of
 * 1024 enqueues then 1024 dequeues; the best of 7 runs. The Rust and Go
 * benchmarks (benches/ffi_overhead.rs, ffi/go BenchmarkTryPair) do the same. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "shmq.h"

#define CAP 1024
#define ROUNDS 500

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(void) {
    char target[64];
    snprintf(target, sizeof target, "posix:shmq-cbench-%ld", (long)getpid());
    shmq_queue *q = NULL;
    if (shmq_queue_create(target, 64, CAP, 0, 0, &q) != SHMQ_OK) {
        fprintf(stderr, "create: %s\n", shmq_last_error());
        return 1;
    }
    shmq_queue_unlink(q); /* nothing left behind, whatever happens */
    uint8_t msg[64] = {1}, buf[64];
    size_t n;
    double best_enq = 1e18, best_deq = 1e18;
    for (int run = 0; run < 7; run++) {
        double enq = 0, deq = 0;
        for (int r = 0; r < ROUNDS; r++) {
            double t0 = now_ns();
            for (int i = 0; i < CAP; i++)
                if (shmq_queue_enqueue_try(q, msg, sizeof msg) != SHMQ_OK) return 1;
            double t1 = now_ns();
            for (int i = 0; i < CAP; i++)
                if (shmq_queue_dequeue_try(q, buf, sizeof buf, &n) != SHMQ_OK) return 1;
            double t2 = now_ns();
            enq += t1 - t0;
            deq += t2 - t1;
        }
        enq /= (double)ROUNDS * CAP;
        deq /= (double)ROUNDS * CAP;
        if (enq + deq < best_enq + best_deq) best_enq = enq, best_deq = deq;
    }
    printf("C     try_enqueue %6.1f ns  try_dequeue %6.1f ns  pair %6.1f ns  (64 B, best of 7)\n", best_enq,
           best_deq, best_enq + best_deq);
    shmq_queue_free(q);
    return 0;
}
