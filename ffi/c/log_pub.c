/* log_pub TARGET COUNT [--close]: publishes COUNT self-checking messages
 * (see msg.h; producer 1, sequence 0..COUNT-1) to the fan-out log at
 * TARGET, waiting at most 10 s per message while a reliable log is full,
 * and checks that they get consecutive sequence numbers. With --close,
 * closes the log afterwards (subscribers drain, then see SHMQ_CLOSED).
 * Prints "PUBLISHED <count> FIRST <sequence number of the first>". */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "shmq.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TARGET COUNT [--close]\n", argv[0]);
        return 2;
    }
    uint64_t count = strtoull(argv[2], NULL, 10);
    shmq_log *log = NULL;
    shmq_status s = shmq_log_open(argv[1], &log);
    if (s != SHMQ_OK) {
        fprintf(stderr, "log_pub: open %s: %s: %s\n", argv[1], shmq_status_name(s), shmq_last_error());
        return 1;
    }
    uint32_t slot = 0;
    shmq_log_slot_size(log, &slot);
    uint8_t *m = malloc(slot);
    int rc = m ? 0 : 1;
    uint64_t first = 0;
    for (uint64_t i = 0; i < count && m; i++) {
        size_t len = msg_len(i, slot);
        msg_make(m, len, 1, i);
        uint64_t seq = 0;
        s = shmq_log_publish_block(log, m, len, 10 * 1000000000LL, &seq);
        if (s != SHMQ_OK) {
            fprintf(stderr, "log_pub: message %llu: %s: %s\n", (unsigned long long)i, shmq_status_name(s),
                    shmq_last_error());
            rc = 1;
            break;
        }
        if (i == 0) first = seq;
        if (seq != first + i) {
            fprintf(stderr, "log_pub: message %llu got sequence number %llu\n", (unsigned long long)i,
                    (unsigned long long)seq);
            rc = 1;
            break;
        }
    }
    if (argc > 3 && strcmp(argv[3], "--close") == 0) shmq_log_close(log);
    if (rc == 0) printf("PUBLISHED %llu FIRST %llu\n", (unsigned long long)count, (unsigned long long)first);
    free(m);
    shmq_log_free(log);
    return rc;
}
