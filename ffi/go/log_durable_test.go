package shmq_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"shmq.dev/shmq"
)

// Both kinds of log: many publishers, and a single publisher.
var logKinds = map[string][]shmq.Option{
	"multi":  nil,
	"single": {shmq.WithSinglePublisher()},
}

func reliableOpts(kind []shmq.Option, more ...shmq.Option) []shmq.Option {
	opts := []shmq.Option{shmq.WithSlotSize(16), shmq.WithCapacity(4), shmq.WithReliable(), shmq.WithCursors(4)}
	return append(append(opts, kind...), more...)
}

// The issue's scenario: a 4-slot reliable log with a declared cursor and
// 10 publishes; 4 go, the rest are ErrFull, and a subscriber that resumes
// the cursor later reads messages 1 to 4 with nothing lost.
func TestDeclaredCursorMakesReliableLogLossless(t *testing.T) {
	for name, kind := range logKinds {
		t.Run(name, func(t *testing.T) {
			tg := target(t)
			l := mustCreateLog(t, tg, reliableOpts(kind, shmq.WithDurableCursors("audit"))...)
			for i := 1; i <= 10; i++ {
				seq, err := l.Publish([]byte(fmt.Sprintf("m%d", i)))
				switch {
				case i <= 4 && (err != nil || seq != uint64(i-1)):
					t.Fatalf("publish %d: %d, %v", i, seq, err)
				case i > 4 && !errors.Is(err, shmq.ErrFull):
					t.Fatalf("publish %d: %v, want ErrFull", i, err)
				}
			}
			reader, err := shmq.OpenLog(tg)
			if err != nil {
				t.Fatal(err)
			}
			defer reader.Close()
			sub, err := reader.SubscribeNamed("audit", shmq.StartLatest)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			for i := 1; i <= 4; i++ {
				if got := recvString(t, sub); got != fmt.Sprintf("m%d", i) {
					t.Fatalf("got %q, want m%d", got, i)
				}
			}
			st, err := l.Stats()
			if err != nil || st.Lagged != 0 {
				t.Fatalf("stats %+v, %v", st, err)
			}
		})
	}
}

func TestNotConnectedUntilSomeoneSubscribes(t *testing.T) {
	for name, kind := range logKinds {
		t.Run(name, func(t *testing.T) {
			l := mustCreateLog(t, target(t), reliableOpts(kind)...)
			if _, err := l.Publish([]byte("hello")); !errors.Is(err, shmq.ErrNotConnected) {
				t.Fatalf("publish with nobody: %v, want ErrNotConnected", err)
			}
			if _, err := l.PublishBatch([][]byte{[]byte("a")}); !errors.Is(err, shmq.ErrNotConnected) {
				t.Fatalf("batch with nobody: %v", err)
			}
			start := time.Now()
			if _, err := l.PublishTimeout([]byte("hello"), 30*time.Millisecond); !errors.Is(err, shmq.ErrNotConnected) {
				t.Fatalf("timed publish with nobody: %v", err)
			}
			if time.Since(start) < 30*time.Millisecond {
				t.Fatal("returned before its deadline")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, err := l.PublishBlock(ctx, []byte("hello")); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("cancelled publish with nobody: %v", err)
			}
			if l.NextSeq() != 0 {
				t.Fatalf("next seq %d: something was written", l.NextSeq())
			}
			sub := mustSubscribe(t, l, shmq.StartLatest)
			if seq, err := l.Publish([]byte("hello")); err != nil || seq != 0 {
				t.Fatalf("publish after subscribe: %d, %v", seq, err)
			}
			if got := recvString(t, sub); got != "hello" {
				t.Fatalf("got %q", got)
			}
			sub.Close()
			if _, err := l.Publish([]byte("again")); !errors.Is(err, shmq.ErrNotConnected) {
				t.Fatalf("publish after the subscriber left: %v", err)
			}
		})
	}
}

// A blocked publish waits for the first subscriber, then goes.
func TestBlockedPublishGoesWhenASubscriberRegisters(t *testing.T) {
	for name, kind := range logKinds {
		t.Run(name, func(t *testing.T) {
			l := mustCreateLog(t, target(t), reliableOpts(kind)...)
			done := make(chan error, 1)
			go func() {
				_, err := l.PublishTimeout([]byte("first"), 10*time.Second)
				done <- err
			}()
			time.Sleep(20 * time.Millisecond) // not asserted on: it waits whenever it starts
			sub := mustSubscribe(t, l, shmq.StartOldest)
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the blocked publish did not go")
			}
			if got := recvString(t, sub); got != "first" {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func TestOverwriteLogPublishesWithNobody(t *testing.T) {
	l := mustCreateLog(t, target(t), shmq.WithSlotSize(16), shmq.WithCapacity(4))
	for i := 0; i < 10; i++ {
		if _, err := l.Publish([]byte("tick")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBadDurableCursorsCreateNothing(t *testing.T) {
	for _, opts := range [][]shmq.Option{
		{shmq.WithDurableCursors("")},
		{shmq.WithDurableCursors(strings.Repeat("x", 65))},
		{shmq.WithDurableCursors("a", "b"), shmq.WithDurableCursors("a")},
		{shmq.WithCursors(2), shmq.WithDurableCursors("a", "b", "c")},
	} {
		tg := target(t)
		if l, err := shmq.CreateLog(tg, append([]shmq.Option{shmq.WithReliable()}, opts...)...); !errors.Is(err, shmq.ErrInvalidArgument) {
			if l != nil {
				l.Close()
			}
			t.Fatalf("%v, want ErrInvalidArgument", err)
		}
		if _, err := shmq.OpenLog(tg); !errors.Is(err, shmq.ErrNotFound) {
			t.Fatalf("something was left behind: %v", err)
		}
	}
}

func TestOpenOrCreateLogChecksDeclaredCursors(t *testing.T) {
	tg := target(t)
	opts := []shmq.Option{shmq.WithSlotSize(16), shmq.WithCapacity(4), shmq.WithReliable()}
	first, err := shmq.OpenOrCreateLog(tg, append(opts, shmq.WithDurableCursors("a", "b"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := first.Publish([]byte("0")); err != nil {
		t.Fatal(err)
	}
	again, err := shmq.OpenOrCreateLog(tg, append(opts, shmq.WithDurableCursors("b"))...)
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
	_, err = shmq.OpenOrCreateLog(tg, append(opts, shmq.WithDurableCursors("c"))...)
	if !errors.Is(err, shmq.ErrIncompatible) || !strings.Contains(err.Error(), `"c"`) {
		t.Fatalf("%v, want ErrIncompatible naming \"c\"", err)
	}
	if _, err := first.Cursor("c"); !errors.Is(err, shmq.ErrCursorNotFound) {
		t.Fatalf("cursor c: %v", err)
	}
}

// A reliable log whose reader's cursor is declared when it is created:
// published before the reader starts, nothing is lost.
func ExampleWithDurableCursors() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-durable-%d", os.Getpid()))
	log, err := shmq.CreateLog(target, shmq.WithSlotSize(64), shmq.WithCapacity(16), shmq.WithReliable(),
		shmq.WithDurableCursors("audit"))
	if err != nil {
		panic(err)
	}
	defer log.Delete()
	defer log.Close()
	for _, m := range []string{"open", "write", "close"} {
		if _, err := log.Publish([]byte(m)); err != nil {
			panic(err)
		}
	}
	// The reader starts later and still gets everything from message 0.
	sub, err := log.SubscribeNamed("audit", shmq.StartLatest)
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	buf := make([]byte, log.SlotSize())
	for {
		n, err := sub.TryRecv(buf)
		if err != nil {
			break
		}
		fmt.Println(string(buf[:n]))
	}
	// Output:
	// open
	// write
	// close
}

// A reliable log with nobody registered refuses to publish.
func ExampleErrNotConnected() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-nc-%d", os.Getpid()))
	log, err := shmq.CreateLog(target, shmq.WithReliable())
	if err != nil {
		panic(err)
	}
	defer log.Delete()
	defer log.Close()
	_, err = log.Publish([]byte("into the void"))
	fmt.Println(errors.Is(err, shmq.ErrNotConnected))
	sub, err := log.Subscribe(shmq.StartLatest)
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	_, err = log.Publish([]byte("read by sub"))
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}
