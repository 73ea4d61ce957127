/* producer TARGET ID COUNT [--close]: enqueues COUNT self-checking messages
 * (see msg.h) as producer ID, waiting while the queue is full (at most 10 s
 * per message); with --close, closes the queue afterwards. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "shmq.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s TARGET ID COUNT [--close]\n", argv[0]);
        return 2;
    }
    uint32_t id = (uint32_t)strtoul(argv[2], NULL, 10);
    uint64_t count = strtoull(argv[3], NULL, 10);
    shmq_queue *q = NULL;
    shmq_status s = shmq_queue_open(argv[1], &q);
    if (s != SHMQ_OK) {
        fprintf(stderr, "producer: open %s: %s: %s\n", argv[1], shmq_status_name(s), shmq_last_error());
        return 1;
    }
    uint32_t slot = 0;
    shmq_queue_slot_size(q, &slot);
    uint8_t *m = malloc(slot);
    int rc = 0;
    for (uint64_t seq = 0; seq < count && m; seq++) {
        size_t len = msg_len(seq, slot);
        msg_make(m, len, id, seq);
        s = shmq_queue_enqueue_block(q, m, len, 10 * 1000000000LL);
        if (s != SHMQ_OK) {
            fprintf(stderr, "producer %u: message %llu: %s: %s\n", id, (unsigned long long)seq,
                    shmq_status_name(s), shmq_last_error());
            rc = 1;
            break;
        }
    }
    if (argc > 4 && strcmp(argv[4], "--close") == 0) shmq_queue_close(q);
    free(m);
    shmq_queue_free(q);
    return m ? rc : 1;
}
