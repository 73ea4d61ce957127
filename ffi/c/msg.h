/* Self-checking test messages, byte-compatible with make_msg/check_msg in
 * tests/common/mod.rs: producer id (u32 LE), sequence (u64 LE), FNV-1a
 * checksum (u32 LE) of everything else, then len - 16 filler bytes. */
#ifndef SHMQ_TEST_MSG_H
#define SHMQ_TEST_MSG_H

#include <stddef.h>
#include <stdint.h>

#define MSG_MIN 16

static inline uint32_t msg_fnv(const uint8_t *m, size_t len) {
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < len; i++) {
        if (i >= 12 && i < MSG_MIN) continue; /* the checksum itself */
        h = (h ^ m[i]) * 0x01000193u;
    }
    return h;
}

static inline void msg_put(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t msg_get(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Fills m[0..len) (len >= MSG_MIN) with message `seq` of `producer`. */
static inline void msg_make(uint8_t *m, size_t len, uint32_t producer, uint64_t seq) {
    msg_put(m, producer, 4);
    msg_put(m + 4, seq, 8);
    for (size_t i = MSG_MIN; i < len; i++) m[i] = (uint8_t)(seq * 31 + (i - MSG_MIN) + producer);
    msg_put(m + 12, msg_fnv(m, len), 4);
}

/* 0 if m[0..len) is intact, with its producer and sequence; -1 if not. */
static inline int msg_check(const uint8_t *m, size_t len, uint32_t *producer, uint64_t *seq) {
    if (len < MSG_MIN || msg_get(m + 12, 4) != msg_fnv(m, len)) return -1;
    *producer = (uint32_t)msg_get(m, 4);
    *seq = msg_get(m + 4, 8);
    return 0;
}

/* The length of message `seq` in a queue of `slot_size` bytes: varies. */
static inline size_t msg_len(uint64_t seq, size_t slot_size) {
    return MSG_MIN + (size_t)(seq * 7 % (slot_size - MSG_MIN + 1));
}

#endif
