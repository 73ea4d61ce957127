package buffer_test

import (
	"context"
	"fmt"
	"os"

	"shmq.dev/shmq"
	"shmq.dev/shmq/buffer"
)

// Batches of three, and a last, shorter one on Close.
func ExampleNewBuffer() {
	buf, err := buffer.NewBuffer(buffer.Config[string]{
		Capacity: 3,
		Flush: func(ctx context.Context, batch []string) error {
			fmt.Println(batch) // copy batch to keep it: its array is reused
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	done := make(chan error)
	go func() { done <- buf.Run(context.Background()) }()
	for _, s := range []string{"a", "b", "c", "d"} {
		if err := buf.Add(context.Background(), s); err != nil {
			panic(err)
		}
	}
	buf.Close()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// [a b c]
	// [d]
}

// A Buffer fed by a work queue: Run dequeues, decodes and batches until
// the queue is closed and drained.
func ExampleFromQueue() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-fromqueue-%d", os.Getpid()))
	q, err := shmq.CreateAt(target, shmq.WithSlotSize(64), shmq.WithCapacity(16))
	if err != nil {
		panic(err)
	}
	defer shmq.Unlink(target)
	defer q.Close()
	for _, word := range []string{"alpha", "beta", "gamma"} {
		if err := q.TryEnqueue([]byte(word)); err != nil {
			panic(err)
		}
	}
	q.CloseQueue() // in a real program, the producer closes it when done

	decode := func(m []byte) (string, error) { return string(m), nil }
	buf, err := buffer.FromQueue(q, decode, buffer.Config[string]{
		Capacity: 2,
		Flush: func(ctx context.Context, batch []string) error {
			fmt.Println(batch)
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	if err := buf.Run(context.Background()); err != nil {
		panic(err)
	}
	// Output:
	// [alpha beta]
	// [gamma]
}
