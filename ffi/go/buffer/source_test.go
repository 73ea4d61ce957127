package buffer_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"shmq.dev/shmq"
	"shmq.dev/shmq/buffer"
)

var counter int64

// target is a fresh POSIX name, removed when the test ends (even failing).
func target(t *testing.T) shmq.Target {
	tg := shmq.Posix(fmt.Sprintf("shmq-gotest-buffer-%d-%d", os.Getpid(), atomic.AddInt64(&counter, 1)))
	t.Cleanup(func() { _ = shmq.UnlinkForce(tg) })
	return tg
}

func u64(b []byte) (int, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%d bytes, not 8", len(b))
	}
	return int(binary.LittleEndian.Uint64(b)), nil
}

func le(v int) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(v))
	return b
}

// runBuffer runs b.Run in a goroutine; the returned func waits for Run.
func runBuffer(t *testing.T, b *buffer.Buffer[int]) func() error {
	return start(t, b)
}

// Messages enqueued on a queue (here by another goroutine) are batched and
// flushed in order; Run ends when the queue is closed and drained.
func TestFromQueue(t *testing.T) {
	const count = 1000
	tg := target(t)
	q, err := shmq.CreateAt(tg, shmq.WithSlotSize(8), shmq.WithCapacity(64))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	r := newRecorder()
	b, err := buffer.FromQueue(q, u64, buffer.Config[int]{Capacity: 50, FlushInterval: 20 * time.Millisecond, Flush: r.flush})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(context.Background(), 1); !errors.Is(err, buffer.ErrHasSource) {
		t.Fatalf("Add on a queue-fed buffer: %v", err)
	}
	wait := runBuffer(t, b)
	producer, err := shmq.OpenAt(tg)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	for i := 0; i < count; i++ {
		if err := producer.EnqueueTimeout(le(i), waitTimeout); err != nil {
			t.Fatal(err)
		}
	}
	if err := producer.CloseQueue(); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	batches, _, _ := r.snapshot()
	next := 0
	for _, batch := range batches {
		if len(batch) > 50 {
			t.Fatalf("batch of %d", len(batch))
		}
		for _, v := range batch {
			if v != next {
				t.Fatalf("got %d, want %d", v, next)
			}
			next++
		}
	}
	if next != count {
		t.Fatalf("%d items flushed, want %d", next, count)
	}
}

// Close stops a queue-fed buffer: it flushes what it holds; what it did
// not dequeue stays in the queue. Undecodable messages go to OnDecodeError.
func TestFromQueueClose(t *testing.T) {
	tg := target(t)
	q, err := shmq.CreateAt(tg, shmq.WithSlotSize(16), shmq.WithCapacity(16))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, m := range [][]byte{le(7), []byte("bad"), le(8)} {
		if err := q.TryEnqueue(m); err != nil {
			t.Fatal(err)
		}
	}
	r := newRecorder()
	bad := make(chan string, 1)
	taken := make(chan int, 2)
	b, err := buffer.FromQueue(q, u64, buffer.Config[int]{
		FlushInterval: time.Hour,
		Flush:         r.flush,
		CanAdd:        func(_ []int, item int) bool { taken <- item; return true },
	}, buffer.OnDecodeError(func(_ error, msg []byte) { bad <- string(msg) }))
	if err != nil {
		t.Fatal(err)
	}
	wait := runBuffer(t, b)
	for i := 0; i < 2; i++ {
		select {
		case <-taken:
		case <-time.After(waitTimeout):
			t.Fatal("items not taken")
		}
	}
	select {
	case got := <-bad:
		if got != "bad" {
			t.Fatalf("OnDecodeError got %q", got)
		}
	case <-time.After(waitTimeout):
		t.Fatal("OnDecodeError not called")
	}
	b.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if batches, _, _ := r.snapshot(); fmt.Sprint(batches) != "[[7 8]]" {
		t.Fatalf("batches %v", batches)
	}
	if err := q.TryEnqueue(le(9)); err != nil {
		t.Fatal(err)
	}
	if n := q.Len(); n != 1 {
		t.Fatalf("queue holds %d after the stop, want 1", n)
	}
}

// reliableLog is a reliable log with a "sink" cursor and count messages.
func reliableLog(t *testing.T, count int) *shmq.Log {
	l, err := shmq.CreateLog(target(t), shmq.WithReliable(), shmq.WithCursors(4), shmq.WithSlotSize(8), shmq.WithCapacity(64))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	if err := l.CreateCursor("sink", shmq.StartOldest); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < count; i++ {
		if _, err := l.Publish(le(i)); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func committed(t *testing.T, l *shmq.Log) uint64 {
	c, err := l.Cursor("sink")
	if err != nil {
		t.Fatal(err)
	}
	return c.Position
}

// On a named cursor, a failed flush ends Run without a commit; the next
// buffer on the cursor gets the items again, flushes and commits them.
func TestFromLogAtLeastOnce(t *testing.T) {
	l := reliableLog(t, 10)
	sub, err := l.SubscribeNamed("sink", shmq.StartOldest)
	if err != nil {
		t.Fatal(err)
	}
	failed := newRecorder()
	b, err := buffer.FromLog(sub, u64, buffer.Config[int]{
		Capacity:     4,
		Flush:        func(context.Context, []int) error { return errors.New("backend down") },
		OnFlushError: failed.onFlushError,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := runBuffer(t, b)(); !errors.Is(err, buffer.ErrFlushFailed) {
		t.Fatalf("Run after a failed flush: %v", err)
	}
	if _, f, _ := failed.snapshot(); fmt.Sprint(f) != "[[0 1 2 3]]" {
		t.Fatalf("OnFlushError got %v", f)
	}
	sub.Close()
	if c := committed(t, l); c != 0 {
		t.Fatalf("committed %d after a failed flush", c)
	}

	if err := l.CloseLog(); err != nil {
		t.Fatal(err)
	}
	sub, err = l.SubscribeNamed("sink", shmq.StartOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	r := newRecorder()
	b, err = buffer.FromLog(sub, u64, buffer.Config[int]{Capacity: 4, Flush: r.flush})
	if err != nil {
		t.Fatal(err)
	}
	if err := runBuffer(t, b)(); err != nil {
		t.Fatal(err)
	}
	if batches, _, _ := r.snapshot(); fmt.Sprint(batches) != "[[0 1 2 3] [4 5 6 7] [8 9]]" {
		t.Fatalf("batches %v", batches)
	}
	if c := committed(t, l); c != 10 {
		t.Fatalf("committed %d, want 10", c)
	}
}

// The cursor moves only when a flush succeeds: items held in the batch are
// not committed; Close flushes and commits them.
func TestFromLogCommitsAfterFlush(t *testing.T) {
	l := reliableLog(t, 3)
	sub, err := l.SubscribeNamed("sink", shmq.StartOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	r := newRecorder()
	taken := make(chan int, 3)
	b, err := buffer.FromLog(sub, u64, buffer.Config[int]{
		FlushInterval: time.Hour,
		Flush:         r.flush,
		CanAdd:        func(_ []int, item int) bool { taken <- item; return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	wait := runBuffer(t, b)
	for i := 0; i < 3; i++ {
		select {
		case <-taken:
		case <-time.After(waitTimeout):
			t.Fatal("items not taken")
		}
	}
	if c := committed(t, l); c != 0 {
		t.Fatalf("committed %d before any flush", c)
	}
	b.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if batches, _, _ := r.snapshot(); fmt.Sprint(batches) != "[[0 1 2]]" {
		t.Fatalf("batches %v", batches)
	}
	if c := committed(t, l); c != 3 {
		t.Fatalf("committed %d after the final flush, want 3", c)
	}
}
