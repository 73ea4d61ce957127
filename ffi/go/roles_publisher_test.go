package shmq_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"shmq.dev/shmq"
)

func init() {
	// logpubtaken: a = target. Exits 0 if the publisher role of the log is
	// refused with ErrRoleTaken (the parent holds it).
	moreRoles["logpubtaken"] = func(a []string) int {
		l, err := shmq.OpenLog(shmq.Target(a[0]))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer l.Close()
		p, err := l.Publisher()
		if !errors.Is(err, shmq.ErrRoleTaken) {
			fmt.Fprintln(os.Stderr, "logpubtaken: got", p, err)
			return 1
		}
		return 0
	}
}

func mustPublisher(t testing.TB, l *shmq.Log) *shmq.Publisher {
	t.Helper()
	p, err := l.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestLogPublisherRole(t *testing.T) {
	tg := target(t)
	l := mustCreateLog(t, tg, shmq.WithSlotSize(16), shmq.WithCapacity(8), shmq.WithSinglePublisher())
	p := mustPublisher(t, l)

	// A second taker is refused, with a *shmq.Error that says which call
	// and where; so are the log handle and another process.
	if _, err := l.Publisher(); !errors.Is(err, shmq.ErrRoleTaken) {
		t.Fatalf("second publisher: %v", err)
	} else {
		var e *shmq.Error
		if !errors.As(err, &e) || e.Op != "publisher" || e.Target != tg || e.Msg == "" {
			t.Fatalf("second publisher: %#v", err)
		}
	}
	if _, err := l.Publish([]byte("x")); !errors.Is(err, shmq.ErrRoleTaken) {
		t.Fatalf("log publish: %v", err)
	}
	waitExit(t, spawn(t, "logpubtaken", string(tg)), time.Minute)

	if p.Target() != tg || p.SlotSize() != 16 {
		t.Fatal("target or slot size")
	}
	if seq, err := p.Publish([]byte("a")); err != nil || seq != 0 {
		t.Fatalf("publish: %d, %v", seq, err)
	}
	if _, err := p.Publish(make([]byte, 17)); !errors.Is(err, shmq.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if p.NextSeq() != 1 {
		t.Fatalf("next seq %d", p.NextSeq())
	}

	// Close gives the role back: it can be taken again.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatalf("second close: %v", err)
	}
	if _, err := p.Publish([]byte("b")); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatalf("publish after close: %v", err)
	}
	if _, err := p.PublishTimeout([]byte("b"), time.Second); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatalf("publish after close: %v", err)
	}
	if _, err := p.PublishBatch([][]byte{[]byte("b")}); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatalf("batch after close: %v", err)
	}
	if err := p.CloseLog(); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatalf("close log after close: %v", err)
	}
	p2 := mustPublisher(t, l)
	if seq, err := p2.Publish([]byte("b")); err != nil || seq != 1 {
		t.Fatalf("publish: %d, %v", seq, err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}

	// A role asked for after the log was deleted, or of a closed Log.
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Publisher(); !errors.Is(err, shmq.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	_ = l.Close()
	if _, err := l.Publisher(); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatalf("of a closed log: %v", err)
	}
}

// Every message published through a Publisher, one at a time and in
// batches, waiting for room, reaches a subscriber goroutine in order; then
// CloseLog ends the subscriber.
func TestLogPublisherInOrder(t *testing.T) {
	const count = 20000
	tg := target(t)
	l := mustCreateLog(t, tg, shmq.WithSlotSize(16), shmq.WithCapacity(64), shmq.WithReliable(),
		shmq.WithSinglePublisher())
	s := mustSubscribe(t, l, shmq.StartOldest)
	p := mustPublisher(t, l)

	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		buf := make([]byte, 16)
		for want := uint64(0); ; want++ {
			n, err := s.RecvTimeout(buf, 10*time.Second)
			if errors.Is(err, shmq.ErrClosed) {
				done <- result{int(want), nil}
				return
			}
			if err != nil || n != 8 || binary.LittleEndian.Uint64(buf) != want {
				done <- result{int(want), fmt.Errorf("message %d: %d bytes %x, %v", want, n, buf[:n], err)}
				return
			}
		}
	}()

	msg := func(i uint64) []byte { return binary.LittleEndian.AppendUint64(nil, i) }
	for i := uint64(0); i < count; {
		if i%100 < 90 {
			seq, err := p.PublishTimeout(msg(i), 10*time.Second)
			if err != nil || seq != i {
				t.Fatalf("publish %d: seq %d, %v", i, seq, err)
			}
			i++
			continue
		}
		var batch [][]byte
		for k := i; k < i+3 && k < count; k++ {
			batch = append(batch, msg(k))
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, err := p.PublishBatch(batch)
			if err == nil {
				i += uint64(n)
				break
			}
			if !errors.Is(err, shmq.ErrFull) || time.Now().After(deadline) {
				t.Fatalf("batch at %d: %v", i, err)
			}
			time.Sleep(10 * time.Microsecond)
		}
	}
	if err := p.CloseLog(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(msg(0)); !errors.Is(err, shmq.ErrClosed) {
		t.Fatalf("publish after CloseLog: %v", err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.n != count {
			t.Fatalf("received %d of %d", r.n, count)
		}
	case <-time.After(time.Minute):
		t.Fatal("the subscriber did not finish within a minute")
	}
}

// A blocking publish on a full reliable log times out (ErrTimeout), stops
// with its context, or on Close; with nobody registered it gives
// ErrNotConnected.
func TestLogPublisherTimeout(t *testing.T) {
	tg := target(t)
	l := mustCreateLog(t, tg, shmq.WithSlotSize(16), shmq.WithCapacity(4), shmq.WithReliable(),
		shmq.WithSinglePublisher())
	p := mustPublisher(t, l)
	if _, err := p.PublishTimeout([]byte("m"), 20*time.Millisecond); !errors.Is(err, shmq.ErrNotConnected) {
		t.Fatalf("nobody registered: %v", err)
	}
	s := mustSubscribe(t, l, shmq.StartLatest)
	for i := 0; i < 4; i++ {
		if _, err := p.Publish([]byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Publish([]byte("m")); !errors.Is(err, shmq.ErrFull) {
		t.Fatalf("full: %v", err)
	}
	start := time.Now()
	if _, err := p.PublishTimeout([]byte("m"), 50*time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
		t.Fatalf("timeout: %v", err)
	}
	if took := time.Since(start); took < 45*time.Millisecond || took > 5*time.Second {
		t.Fatalf("timed out after %v", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := p.PublishBlock(ctx, []byte("m")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("context: %v", err)
	}

	// A read makes room: a waiting publish goes through.
	waited := make(chan error, 1)
	go func() {
		seq, err := p.PublishTimeout([]byte("m"), 10*time.Second)
		if err == nil && seq != 4 {
			err = fmt.Errorf("seq %d", seq)
		}
		waited <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := s.RecvTimeout(make([]byte, 16), time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting publish did not return")
	}

	// Close ends a waiting publish.
	go func() {
		_, err := p.PublishTimeout([]byte("m"), 20*time.Second)
		waited <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if !errors.Is(err, shmq.ErrHandleClosed) {
			t.Fatalf("after close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting publish did not return after Close")
	}
}

// On a multi-publisher log publishers are not exclusive.
func TestLogPublisherMultiPublisherForwards(t *testing.T) {
	tg := target(t)
	l := mustCreateLog(t, tg, shmq.WithSlotSize(16), shmq.WithCapacity(8))
	s := mustSubscribe(t, l, shmq.StartLatest)
	a, b := mustPublisher(t, l), mustPublisher(t, l)
	for i, publish := range []func([]byte) (uint64, error){a.Publish, b.Publish, l.Publish} {
		if _, err := publish([]byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 16)
	for _, want := range []string{"a", "b", "c"} {
		n, err := s.RecvTimeout(buf, time.Second)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
}
