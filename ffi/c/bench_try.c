/* Per-call cost of try-enqueue and try-dequeue of 64-byte messages through
 * the C interface, one thread, one queue (slot 64, capacity 1024): rounds of
 * 1024 enqueues then 1024 dequeues; the best of 7 runs. Three cases: a
 * multi-producer queue through its queue handle, a single-producer queue
 * (SHMQ_QUEUE_SPSC) through its queue handle (a role lock per call), and
 * the same through role handles (shmq_producer/shmq_consumer: no lock).
 * The Rust and Go benchmarks (benches/ffi_overhead.rs, ffi/go
 * BenchmarkTryPair) do the first. */
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

/* One case: the queue handle q, or the role handles p and c when set. */
static int run(const char *label, shmq_queue *q, shmq_producer *p, shmq_consumer *c) {
    uint8_t msg[64] = {1}, buf[64];
    size_t n;
    double best_enq = 1e18, best_deq = 1e18;
    for (int run = 0; run < 7; run++) {
        double enq = 0, deq = 0;
        for (int r = 0; r < ROUNDS; r++) {
            double t0 = now_ns();
            if (p) {
                for (int i = 0; i < CAP; i++)
                    if (shmq_producer_enqueue_try(p, msg, sizeof msg) != SHMQ_OK) return 1;
            } else {
                for (int i = 0; i < CAP; i++)
                    if (shmq_queue_enqueue_try(q, msg, sizeof msg) != SHMQ_OK) return 1;
            }
            double t1 = now_ns();
            if (c) {
                for (int i = 0; i < CAP; i++)
                    if (shmq_consumer_dequeue_try(c, buf, sizeof buf, &n) != SHMQ_OK) return 1;
            } else {
                for (int i = 0; i < CAP; i++)
                    if (shmq_queue_dequeue_try(q, buf, sizeof buf, &n) != SHMQ_OK) return 1;
            }
            double t2 = now_ns();
            enq += t1 - t0;
            deq += t2 - t1;
        }
        enq /= (double)ROUNDS * CAP;
        deq /= (double)ROUNDS * CAP;
        if (enq + deq < best_enq + best_deq) best_enq = enq, best_deq = deq;
    }
    printf("C %-14s try_enqueue %6.1f ns  try_dequeue %6.1f ns  pair %6.1f ns  (64 B, best of 7)\n", label,
           best_enq, best_deq, best_enq + best_deq);
    return 0;
}

static shmq_queue *make(const char *tag, uint32_t flags) {
    char target[64];
    snprintf(target, sizeof target, "posix:shmq-cbench-%s-%ld", tag, (long)getpid());
    shmq_queue *q = NULL;
    if (shmq_queue_create(target, 64, CAP, 0, flags, &q) != SHMQ_OK) {
        fprintf(stderr, "create: %s\n", shmq_last_error());
        exit(1);
    }
    return q;
}

int main(void) {
    shmq_queue *q = make("mpmc", 0);
    shmq_queue_unlink(q); /* nothing left behind, whatever happens */
    int failed = run("queue", q, NULL, NULL);
    shmq_queue_free(q);

    q = make("spsc", SHMQ_QUEUE_SPSC);
    shmq_producer *p = NULL;
    shmq_consumer *c = NULL;
    /* Role handles attach through the target: take them before unlinking. */
    shmq_status sp = shmq_queue_producer(q, &p), sc = shmq_queue_consumer(q, &c);
    shmq_queue_unlink(q);
    if (sp != SHMQ_OK || sc != SHMQ_OK) {
        fprintf(stderr, "roles: %s\n", shmq_last_error());
        return 1;
    }
    failed |= run("spsc roles", q, p, c);
    shmq_producer_free(p);
    shmq_consumer_free(c);
    failed |= run("spsc queue", q, NULL, NULL); /* the roles are free again */
    shmq_queue_free(q);
    if (failed) fprintf(stderr, "bench failed: %s\n", shmq_last_error());
    return failed;
}
