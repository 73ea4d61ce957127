// Package testmsg builds and checks self-checking test messages,
// byte-compatible with make_msg/check_msg in tests/common/mod.rs and
// ffi/c/msg.h: producer id (u32 LE), sequence (u64 LE), FNV-1a checksum
// (u32 LE) of everything else, then len-16 filler bytes.
package testmsg

import (
	"encoding/binary"
	"fmt"
)

// Min is the smallest message.
const Min = 16

func fnv(m []byte) uint32 {
	h := uint32(0x811c9dc5)
	for i, b := range m {
		if i >= 12 && i < Min {
			continue // the checksum itself
		}
		h = (h ^ uint32(b)) * 0x01000193
	}
	return h
}

// Make fills m (len(m) >= Min) with message seq of producer.
func Make(m []byte, producer uint32, seq uint64) {
	binary.LittleEndian.PutUint32(m[0:4], producer)
	binary.LittleEndian.PutUint64(m[4:12], seq)
	for i := Min; i < len(m); i++ {
		m[i] = byte(seq*31 + uint64(i-Min) + uint64(producer))
	}
	binary.LittleEndian.PutUint32(m[12:16], fnv(m))
}

// Check verifies m and returns its producer and sequence.
func Check(m []byte) (producer uint32, seq uint64, err error) {
	if len(m) < Min {
		return 0, 0, fmt.Errorf("message of %d bytes is too short", len(m))
	}
	if binary.LittleEndian.Uint32(m[12:16]) != fnv(m) {
		return 0, 0, fmt.Errorf("checksum mismatch (torn or corrupted message of %d bytes)", len(m))
	}
	return binary.LittleEndian.Uint32(m[0:4]), binary.LittleEndian.Uint64(m[4:12]), nil
}

// Len is the length of message seq in a queue of slotSize bytes: it varies.
func Len(seq uint64, slotSize int) int {
	return Min + int(seq*7%uint64(slotSize-Min+1))
}
