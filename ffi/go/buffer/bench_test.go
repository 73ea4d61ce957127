package buffer_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"shmq.dev/shmq"
	"shmq.dev/shmq/buffer"
)

// Add from parallel goroutines into batches of 500 (the seed's benchmark).
func BenchmarkAddParallel(b *testing.B) {
	var flushed int64
	buf, err := buffer.NewBuffer(buffer.Config[int]{
		Capacity:      500,
		FlushInterval: time.Second,
		Flush: func(_ context.Context, batch []int) error {
			atomic.AddInt64(&flushed, int64(len(batch)))
			return nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- buf.Run(context.Background()) }()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := buf.Add(context.Background(), 42); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	buf.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if atomic.LoadInt64(&flushed) != int64(b.N) {
		b.Fatalf("flushed %d of %d", flushed, b.N)
	}
}

// 64-byte messages from a work queue into batches of 500: one goroutine
// enqueues, Run dequeues, decodes and batches.
func BenchmarkFromQueue(b *testing.B) {
	target := shmq.Posix(fmt.Sprintf("shmq-gobench-buffer-%d", os.Getpid()))
	q, err := shmq.CreateAt(target, shmq.WithSlotSize(64), shmq.WithCapacity(4096))
	if err != nil {
		b.Fatal(err)
	}
	defer shmq.UnlinkForce(target)
	defer q.Close()
	var flushed int64
	buf, err := buffer.FromQueue(q, func(m []byte) ([]byte, error) { return append([]byte(nil), m...), nil }, buffer.Config[[]byte]{
		Capacity:      500,
		FlushInterval: time.Second,
		Flush: func(_ context.Context, batch [][]byte) error {
			atomic.AddInt64(&flushed, int64(len(batch)))
			return nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 64)
	done := make(chan error, 1)
	b.ResetTimer()
	go func() { done <- buf.Run(context.Background()) }()
	for i := 0; i < b.N; i++ {
		if err := q.EnqueueTimeout(msg, 10*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	if err := q.CloseQueue(); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if atomic.LoadInt64(&flushed) != int64(b.N) {
		b.Fatalf("flushed %d of %d", flushed, b.N)
	}
}
