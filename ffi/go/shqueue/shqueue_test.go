package shqueue_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"shmq.dev/shmq/shqueue"
)

// The signatures of shqueue-go, checked by the compiler.
var (
	_ func() (int, error)                                 = shqueue.FindFreeKey
	_ func(int, uint32, uint32) (*shqueue.Queue, error)   = shqueue.Create
	_ func(int) (*shqueue.Queue, error)                   = shqueue.Open
	_ func(*shqueue.Queue) error                          = (*shqueue.Queue).Close
	_ func(*shqueue.Queue) error                          = (*shqueue.Queue).Delete
	_ func(*shqueue.Queue, []byte)                        = (*shqueue.Queue).EnqueueShift
	_ func(*shqueue.Queue, context.Context, []byte) error = (*shqueue.Queue).EnqueueBlock
	_ func(*shqueue.Queue, []byte) bool                   = (*shqueue.Queue).EnqueueTry
	_ func(*shqueue.Queue, context.Context, []byte) error = (*shqueue.Queue).DequeueBlock
	_ func(*shqueue.Queue, []byte) bool                   = (*shqueue.Queue).DequeueTry
)

// The examples of shqueue-go's README, in order, with only the import
// path changed.
func TestSeedReadme(t *testing.T) {
	// Find a free key to be used as a unique identifier of the queue.
	key, err := shqueue.FindFreeKey()
	if err != nil {
		t.Fatal(err)
	}
	// Create a queue of size 256 with a message size of 512 bytes (64 64-bit words).
	queue, err := shqueue.Create(key, 64, 256)
	if err != nil {
		t.Fatal(err)
	}
	defer queue.Close()
	defer queue.Delete()

	// Open an existing queue with the specified key.
	other, err := shqueue.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shqueue.Create(key, 64, 256); !errors.Is(err, shqueue.ErrAlreadyExist) {
		t.Fatalf("create on a live queue: %v", err)
	}

	msg := bytes.Repeat([]byte{0xAA}, 512)
	queue.EnqueueShift(msg)
	if err := queue.EnqueueBlock(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	if ok := queue.EnqueueTry(msg); !ok {
		t.Fatal("queue is full")
	}

	buf := make([]byte, 512)
	if err := other.DequeueBlock(context.Background(), buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, msg) {
		t.Fatal("message changed on the way")
	}
	if ok := other.DequeueTry(buf); !ok {
		t.Fatal("queue is empty")
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenMissing(t *testing.T) {
	key, err := shqueue.FindFreeKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shqueue.Open(key); !errors.Is(err, shqueue.ErrNotExist) {
		t.Fatalf("open a missing key: %v", err)
	}
}
