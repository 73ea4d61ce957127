/* Checks for the C tests: count failures and keep going, print the call,
 * the status names and the library's last error. */
#ifndef SHMQ_TEST_CHECK_H
#define SHMQ_TEST_CHECK_H

#include <stdio.h>
#include <time.h>

#include "shmq.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                                    \
    do {                                                                                               \
        checks++;                                                                                      \
        if (!(cond)) {                                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    shmq_last_error());                                                                \
            failures++;                                                                                \
        }                                                                                              \
    } while (0)

#define CHECK_STATUS(call, want)                                                                       \
    do {                                                                                               \
        checks++;                                                                                      \
        shmq_status got_ = (call);                                                                     \
        if (got_ != (want)) {                                                                          \
            fprintf(stderr, "%s:%d: %s\n  returned %s, wanted %s (last error: %s)\n", __FILE__,       \
                    __LINE__, #call, shmq_status_name((int32_t)got_), shmq_status_name((int32_t)(want)), \
                    shmq_last_error());                                                                \
            failures++;                                                                                \
        }                                                                                              \
    } while (0)

static inline void sleep_ms(int ms) {
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
