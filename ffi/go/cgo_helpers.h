/* C helpers shared by the cgo preambles of this package (each Go file's
 * preamble is its own translation unit, so these are static inline). */
#ifndef SHMQ_GO_CGO_HELPERS_H
#define SHMQ_GO_CGO_HELPERS_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "shmq.h"

/* A failed setup call copies the calling thread's last error inside the
 * same C call: between two cgo calls the goroutine may change threads. */
static inline enum shmq_status go_capture(enum shmq_status s, char *msg, size_t cap) {
	if (s != SHMQ_OK) snprintf(msg, cap, "%s", shmq_last_error());
	return s;
}

/* The blocking phase of the Go package's blocking calls runs in one cgo
 * call: it waits in the kernel in slices of slice_ns, and between slices
 * looks at two flags that Go sets from other goroutines: *stop (the context
 * is done) and *closing (Close was called). So a cancellation is seen
 * within one slice, and an idle wait costs Go's runtime nothing. A wait
 * stopped by a flag returns GO_STOPPED (not a libshmq status). */
#define GO_STOPPED ((enum shmq_status)(1 << 21))

static inline int64_t go_now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Whether to wait another slice (neither flag set), and how long: at most
 * slice_ns, at most until end (<= 0: the time is up). */
static inline int go_slice(int64_t end, int64_t slice_ns, const int32_t *stop, const int32_t *closing,
                           int64_t *out) {
	if (__atomic_load_n(stop, __ATOMIC_ACQUIRE) || __atomic_load_n(closing, __ATOMIC_ACQUIRE)) return 0;
	int64_t left = end - go_now_ns();
	*out = left < slice_ns ? left : slice_ns;
	return 1;
}

/* The body of a blocking phase: repeats ATTEMPT, an expression of t (the
 * nanoseconds it may wait, at most one slice), until it returns another
 * status than SHMQ_TIMEOUT (returned), the time is up (SHMQ_TIMEOUT) or a
 * flag is set (GO_STOPPED). It returns from the function it is used in. */
#define GO_WAIT_RETURN(slice_ns, total_ns, stop, closing, ATTEMPT)                                  \
	do {                                                                                          \
		int64_t go_end_ = (total_ns) < 0 ? INT64_MAX : go_now_ns() + (total_ns), t;               \
		while (go_slice(go_end_, (slice_ns), (stop), (closing), &t)) {                           \
			if (t <= 0) return SHMQ_TIMEOUT;                                                    \
			enum shmq_status go_s_ = (ATTEMPT);                                                  \
			if (go_s_ != SHMQ_TIMEOUT) return go_s_;                                            \
		}                                                                                         \
		return GO_STOPPED;                                                                        \
	} while (0)

#endif
