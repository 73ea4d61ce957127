/* Checks for the C tests: count failures and keep going, print the call,
 * the status names and the library's last error. */
#ifndef SHMQ_TEST_CHECK_H
#define SHMQ_TEST_CHECK_H

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* ---- targets, removed at exit (remove_targets) ---- */

#define MAX_TARGETS 64
static char made_targets[MAX_TARGETS][256];
static int n_made_targets = 0;

/* Remembers a target made elsewhere, so remove_targets() removes it too. */
static inline void remember_target(const char *target) {
    snprintf(made_targets[n_made_targets++ % MAX_TARGETS], 256, "%s", target);
}

static inline const char *new_target(const char *kind) {
    static int counter = 0;
    char *t = made_targets[n_made_targets++ % MAX_TARGETS];
    if (strcmp(kind, "sysv") == 0) {
        int32_t key = 0;
        CHECK_STATUS(shmq_find_free_key(&key), SHMQ_OK);
        snprintf(t, 256, "sysv:%d", key);
    } else if (strcmp(kind, "file") == 0) {
        snprintf(t, 256, "file:/tmp/shmq-ctest-%ld-%d", (long)getpid(), counter++);
    } else {
        snprintf(t, 256, "posix:shmq-ctest-%ld-%d", (long)getpid(), counter++);
    }
    return t;
}

static inline void remove_targets(void) {
    for (int i = 0; i < n_made_targets && i < MAX_TARGETS; i++) shmq_target_unlink_force(made_targets[i]);
}

#endif
