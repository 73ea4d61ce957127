// Package shqueue is shqueue-go's API on top of shmq: a program written for
// github.com/rdjjke/shqueue-go/shqueue builds unchanged after switching its
// import path to shmq.dev/shmq/shqueue.
//
// Everything here is shmq's (see package shmq for the differences, all in
// the caller's favour: Create never wipes a live queue, wrong-sized buffers
// never panic, waits are futex-based and cancellable, a dead process never
// freezes the others).
package shqueue

import "shmq.dev/shmq"

// Queue is a shared-memory work queue; see shmq.Queue.
type Queue = shmq.Queue

// The errors shqueue-go defined that shmq can return.
var (
	ErrInvalidMagic = shmq.ErrInvalidMagic
	ErrNoFreeKeys   = shmq.ErrNoFreeKeys
	ErrNotExist     = shmq.ErrNotExist
	ErrNoAccess     = shmq.ErrNoAccess
	ErrAlreadyExist = shmq.ErrAlreadyExist
)

// FindFreeKey returns a SysV key that is free right now; see shmq.FindFreeKey.
func FindFreeKey() (int, error) { return shmq.FindFreeKey() }

// Create creates a queue of maxLen messages of up to msgSize 64-bit words
// under SysV key; see shmq.Create.
func Create(key int, msgSize, maxLen uint32) (*Queue, error) {
	return shmq.Create(key, msgSize, maxLen)
}

// Open opens the queue under SysV key; see shmq.Open.
func Open(key int) (*Queue, error) { return shmq.Open(key) }
