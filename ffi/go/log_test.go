package shmq_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"shmq.dev/shmq"
	"shmq.dev/shmq/internal/testmsg"
)

func mustCreateLog(t testing.TB, tg shmq.Target, opts ...shmq.Option) *shmq.Log {
	t.Helper()
	l, err := shmq.CreateLog(tg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func mustSubscribe(t testing.TB, l *shmq.Log, start shmq.Start) *shmq.Subscriber {
	t.Helper()
	s, err := l.Subscribe(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// recvString receives one message within 10 s.
func recvString(t testing.TB, s *shmq.Subscriber) string {
	t.Helper()
	buf := make([]byte, s.SlotSize())
	n, err := s.RecvTimeout(buf, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestLogPubSub(t *testing.T) {
	tg := target(t)
	l := mustCreateLog(t, tg, shmq.WithSlotSize(16), shmq.WithCapacity(8), shmq.WithCursors(4))
	if l.SlotSize() != 16 || l.Cap() != 8 || l.Reliable() || l.Target() != tg {
		t.Fatal(l.SlotSize(), l.Cap(), l.Reliable(), l.Target())
	}
	a := mustSubscribe(t, l, shmq.StartLatest)
	for i, m := range []string{"one", "two", ""} {
		seq, err := l.Publish([]byte(m))
		if err != nil || seq != uint64(i) {
			t.Fatal(seq, err)
		}
	}
	// A second handle, opened by name, and a subscriber at the oldest message.
	other, err := shmq.OpenLog(tg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	b := mustSubscribe(t, other, shmq.StartOldest)
	for _, s := range []*shmq.Subscriber{a, b} {
		for _, want := range []string{"one", "two", ""} {
			if got := recvString(t, s); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
		if s.Position() != 3 || s.Lag() != 0 {
			t.Fatal(s.Position(), s.Lag())
		}
		if _, err := s.TryRecv(make([]byte, 16)); !errors.Is(err, shmq.ErrEmpty) {
			t.Fatal(err)
		}
	}
	if seq, err := other.PublishBlock(context.Background(), []byte("hello")); err != nil || seq != 3 {
		t.Fatal(seq, err)
	}
	if a.Lag() != 1 || l.NextSeq() != 4 {
		t.Fatal(a.Lag(), l.NextSeq())
	}
	// A buffer too small leaves the subscriber on the message, and says
	// how long the message is.
	if n, err := a.TryRecv(make([]byte, 2)); !errors.Is(err, shmq.ErrBufferTooSmall) || n != 5 {
		t.Fatal(n, err)
	}
	if n, err := a.RecvTimeout(make([]byte, 2), time.Second); !errors.Is(err, shmq.ErrBufferTooSmall) || n != 5 {
		t.Fatal(n, err)
	}
	if got := recvString(t, a); got != "hello" {
		t.Fatal(got)
	}
	if _, err := l.Publish(make([]byte, 17)); !errors.Is(err, shmq.ErrTooLarge) {
		t.Fatal(err)
	}
	st, err := l.Stats()
	if err != nil || st.Published != 4 || st.NextSeq != 4 || st.Capacity != 8 || st.CursorCapacity != 4 ||
		st.Reliable || st.Lagged != 0 || st.Cursors != 0 {
		t.Fatalf("%+v %v", st, err)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}

	// Setup errors.
	if _, err := shmq.CreateLog(tg); !errors.Is(err, shmq.ErrAlreadyExists) {
		t.Fatal(err)
	}
	if again, err := shmq.OpenOrCreateLog(tg, shmq.WithSlotSize(16), shmq.WithCapacity(8), shmq.WithCursors(4)); err != nil {
		t.Fatal(err)
	} else {
		again.Close()
	}
	if _, err := shmq.OpenOrCreateLog(tg, shmq.WithSlotSize(16), shmq.WithCapacity(8), shmq.WithReliable(),
		shmq.WithCursors(4)); !errors.Is(err, shmq.ErrIncompatible) {
		t.Fatal(err)
	}
	if _, err := shmq.OpenAt(tg); !errors.Is(err, shmq.ErrIncompatible) { // a log is not a queue
		t.Fatal(err)
	}
	qt := target(t)
	mustCreate(t, qt, shmq.WithSlotSize(8), shmq.WithCapacity(2))
	if _, err := shmq.OpenLog(qt); !errors.Is(err, shmq.ErrIncompatible) {
		t.Fatal(err)
	}
	if _, err := shmq.OpenLog(target(t)); !errors.Is(err, shmq.ErrNotFound) {
		t.Fatal(err)
	}
	for _, opts := range [][]shmq.Option{{shmq.WithSPSC()}, {shmq.WithCapacity(1)}, {shmq.WithCursors(5000)},
		{shmq.WithCursors(-1)}} {
		if _, err := shmq.CreateLog(target(t), opts...); !errors.Is(err, shmq.ErrInvalidArgument) {
			t.Fatal(err)
		}
	}
	if _, err := shmq.CreateAt(target(t), shmq.WithReliable()); !errors.Is(err, shmq.ErrInvalidArgument) {
		t.Fatal(err)
	}
	if _, err := l.Subscribe(shmq.Start(7)); !errors.Is(err, shmq.ErrInvalidArgument) {
		t.Fatal(err)
	}
}

// Overwrite mode: a subscriber a ring behind gets a *LaggedError with the
// exact count, and received + lagged accounts for every message.
func TestLogLagged(t *testing.T) {
	l := mustCreateLog(t, target(t), shmq.WithSlotSize(16), shmq.WithCapacity(4))
	s := mustSubscribe(t, l, shmq.StartLatest)
	for i := byte(0); i < 10; i++ {
		if _, err := l.Publish([]byte{i}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 16)
	n, err := s.TryRecv(buf)
	var lagged *shmq.LaggedError
	if !errors.As(err, &lagged) || lagged.Missed != 6 || !errors.Is(err, shmq.ErrLagged) || n != 0 {
		t.Fatalf("%d, %v", n, err)
	}
	if !strings.Contains(err.Error(), "6 messages") {
		t.Fatal(err)
	}
	for want := byte(6); want < 10; want++ {
		if n, err := s.Recv(context.Background(), buf); err != nil || n != 1 || buf[0] != want {
			t.Fatal(n, err, buf[0], want)
		}
	}
	if st, _ := l.Stats(); st.Lagged != 6 || st.Oldest != 6 {
		t.Fatalf("%+v", st)
	}

	// A publisher goroutine and a slow subscriber.
	const total = 20000
	l2 := mustCreateLog(t, target(t), shmq.WithSlotSize(64), shmq.WithCapacity(64))
	slow := mustSubscribe(t, l2, shmq.StartLatest)
	go func() {
		m := make([]byte, 64)
		for seq := uint64(0); seq < total; seq++ {
			msg := m[:testmsg.Len(seq, 64)]
			testmsg.Make(msg, 1, seq)
			if _, err := l2.Publish(msg); err != nil {
				t.Error(err)
				return
			}
		}
		l2.CloseLog()
	}()
	received, lost := readAll(t, slow, true, func(uint64) {
		time.Sleep(50 * time.Microsecond)
	})
	if received+lost != total || lost == 0 {
		t.Fatalf("received %d + lagged %d, published %d", received, lost, total)
	}
	t.Logf("slow subscriber: received %d, lost %d of %d", received, lost, total)
}

// readAll receives until ErrClosed, checking each message is intact and
// exactly the next one (after a LaggedError, the next one after the lost
// ones); pause runs after each message. It returns what it received and lost.
func readAll(t testing.TB, s *shmq.Subscriber, lossOK bool, pause func(seq uint64)) (received, lost uint64) {
	t.Helper()
	buf := make([]byte, s.SlotSize())
	next := s.Position()
	for {
		n, err := s.RecvTimeout(buf, 10*time.Second)
		var lagged *shmq.LaggedError
		switch {
		case errors.Is(err, shmq.ErrClosed):
			return received, lost
		case errors.As(err, &lagged) && lossOK:
			lost += lagged.Missed
			next += lagged.Missed
			continue
		case err != nil:
			t.Errorf("after %d messages: %v", received, err)
			return received, lost
		}
		_, seq, err := testmsg.Check(buf[:n])
		if err != nil || seq != next {
			t.Errorf("message %d, want %d (%v)", seq, next, err)
			return received, lost
		}
		next++
		received++
		if pause != nil {
			pause(seq)
		}
	}
}

// Reliable mode: goroutine publishers gated by goroutine subscribers; every
// subscriber sees every message, in order per publisher.
func TestLogReliableNoLoss(t *testing.T) {
	l := mustCreateLog(t, target(t), shmq.WithSlotSize(64), shmq.WithCapacity(16), shmq.WithReliable())
	if !l.Reliable() {
		t.Fatal("not reliable")
	}
	// Full and timeout with one registered subscriber that does not read.
	idle := mustSubscribe(t, l, shmq.StartLatest)
	for i := 0; i < 16; i++ {
		if _, err := l.Publish([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Publish([]byte("x")); !errors.Is(err, shmq.ErrFull) {
		t.Fatal(err)
	}
	if _, err := l.PublishTimeout([]byte("x"), time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
		t.Fatal(err)
	}
	idle.Close()
	if st, _ := l.Stats(); st.Cursors != 0 || !st.Reliable {
		t.Fatalf("%+v", st)
	}

	const publishers, subscribers, count = 2, 2, 5000
	base := l.NextSeq()
	subs := make([]*shmq.Subscriber, subscribers)
	for i := range subs {
		subs[i] = mustSubscribe(t, l, shmq.StartLatest)
	}
	var pwg sync.WaitGroup
	for p := 1; p <= publishers; p++ {
		pwg.Add(1)
		go func(p uint32) {
			defer pwg.Done()
			m := make([]byte, 64)
			for seq := uint64(0); seq < count; seq++ {
				msg := m[:testmsg.Len(seq, 64)]
				testmsg.Make(msg, p, seq)
				if _, err := l.PublishTimeout(msg, 10*time.Second); err != nil {
					t.Error(err)
					return
				}
			}
		}(uint32(p))
	}
	var swg sync.WaitGroup
	for i, s := range subs {
		swg.Add(1)
		go func(i int, s *shmq.Subscriber) {
			defer swg.Done()
			buf := make([]byte, 64)
			next := map[uint32]uint64{}
			for got := 0; got < publishers*count; got++ {
				n, err := s.RecvTimeout(buf, 10*time.Second)
				if err != nil {
					t.Errorf("subscriber %d after %d messages: %v", i, got, err)
					return
				}
				p, seq, err := testmsg.Check(buf[:n])
				if err != nil || seq != next[p] {
					t.Errorf("subscriber %d: publisher %d message %d, want %d (%v)", i, p, seq, next[p], err)
					return
				}
				next[p]++
			}
		}(i, s)
	}
	pwg.Wait()
	swg.Wait()
	st, err := l.Stats()
	if err != nil || st.Published != base+publishers*count || st.Lagged != 0 || st.Cursors != subscribers {
		t.Fatalf("%+v %v", st, err)
	}
}

func TestLogNamedCursors(t *testing.T) {
	l := mustCreateLog(t, target(t), shmq.WithSlotSize(16), shmq.WithCapacity(64), shmq.WithCursors(3))
	for i := 0; i < 10; i++ {
		l.Publish([]byte{byte(i)})
	}
	s, err := l.SubscribeNamed("billing", shmq.StartOldest)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "billing" {
		t.Fatal(s.Name())
	}
	recv := func(s *shmq.Subscriber) byte {
		t.Helper()
		return recvString(t, s)[0]
	}
	recv(s)
	recv(s)
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	recv(s)
	if c, err := s.Committed(); err != nil || c != 2 {
		t.Fatal(c, err)
	}
	info, err := l.Cursor("billing")
	// Read is shown in batches (every capacity/8 positions, and when the
	// subscriber finds nothing new): 2 or 3 here.
	if err != nil || info.Position != 2 || info.Read < 2 || info.Read > 3 || info.Lag != 8 ||
		info.Owner != os.Getpid() {
		t.Fatalf("%+v %v", info, err)
	}
	if _, err := l.SubscribeNamed("billing", shmq.StartOldest); !errors.Is(err, shmq.ErrCursorInUse) ||
		!strings.Contains(err.Error(), "billing") {
		t.Fatal(err)
	}
	if err := l.RemoveCursor("billing"); !errors.Is(err, shmq.ErrCursorInUse) {
		t.Fatal(err)
	}
	if pos, err := s.Rollback(); err != nil || pos != 2 || recv(s) != 2 {
		t.Fatal(pos, err)
	}
	recv(s) // 3, not committed
	s.Close()

	// Resume after the last commit.
	s, err = l.SubscribeNamed("billing", shmq.StartLatest)
	if err != nil || s.Position() != 2 || recv(s) != 2 {
		t.Fatal(err)
	}
	recv(s)
	recv(s)
	s.Commit() // at 5
	defer s.Close()

	if err := l.CursorFrom("copy", "billing"); err != nil {
		t.Fatal(err)
	}
	if err := l.CursorFrom("copy", "billing"); !errors.Is(err, shmq.ErrCursorExists) {
		t.Fatal(err)
	}
	if err := l.CursorFrom("x", "missing"); !errors.Is(err, shmq.ErrCursorNotFound) {
		t.Fatal(err)
	}
	if err := l.CreateCursor("third", shmq.StartLatest); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateCursor("fourth", shmq.StartLatest); !errors.Is(err, shmq.ErrCursorTableFull) {
		t.Fatal(err)
	}
	if info, err := l.Cursor("copy"); err != nil || info.Position != 5 || info.Owner != 0 {
		t.Fatalf("%+v %v", info, err)
	}
	if err := l.RemoveCursor("third"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Cursor("third"); !errors.Is(err, shmq.ErrCursorNotFound) {
		t.Fatal(err)
	}
	if err := l.CreateCursor("", shmq.StartLatest); !errors.Is(err, shmq.ErrInvalidArgument) {
		t.Fatal(err)
	}

	// Unnamed subscribers have nothing to commit.
	u := mustSubscribe(t, l, shmq.StartOldest)
	if err := u.Commit(); !errors.Is(err, shmq.ErrNotNamed) {
		t.Fatal(err)
	}
	if _, err := u.Rollback(); !errors.Is(err, shmq.ErrNotNamed) {
		t.Fatal(err)
	}

	// Another process resumes "copy" at 5, reads 3 and commits: at 8.
	child := spawn(t, "logsub", string(l.Target()), "copy", "3")
	waitExit(t, child, 30*time.Second)
	if info, err := l.Cursor("copy"); err != nil || info.Position != 8 || info.Owner != 0 {
		t.Fatalf("%+v %v", info, err)
	}
	c, err := l.SubscribeNamed("copy", shmq.StartOldest)
	if err != nil || recv(c) != 8 {
		t.Fatal(err)
	}
	c.Close()
}

// logSubChild is the "logsub" role: TARGET NAME COUNT: on the named cursor
// NAME, read COUNT one-byte messages that must continue from the committed
// position, then commit.
func logSubChild(a []string) int {
	l, err := shmq.OpenLog(shmq.Target(a[0]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.Close()
	s, err := l.SubscribeNamed(a[1], shmq.StartOldest)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	var count int
	fmt.Sscan(a[2], &count)
	buf := make([]byte, s.SlotSize())
	for i := 0; i < count; i++ {
		pos := s.Position()
		n, err := s.RecvTimeout(buf, 10*time.Second)
		if err != nil || n != 1 || uint64(buf[0]) != pos {
			fmt.Fprintln(os.Stderr, "logsub:", n, err, buf[0], pos)
			return 1
		}
	}
	if err := s.Commit(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// logReadChild is the "logread" role: TARGET: subscribe at the latest
// message, print READY, read self-checking messages until the log is
// closed, and print "RESULT <received> <lagged>" (see readAll).
func logReadChild(a []string) int {
	l, err := shmq.OpenLog(shmq.Target(a[0]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.Close()
	s, err := l.Subscribe(shmq.StartLatest)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	fmt.Println("READY")
	ft := &failT{}
	received, lost := readAll(ft, s, true, nil)
	if ft.failed {
		return 1
	}
	fmt.Printf("RESULT %d %d\n", received, lost)
	return 0
}

// failT is the little of testing.TB that readAll needs, in a child process.
type failT struct {
	testing.TB
	failed bool
}

func (f *failT) Helper() {}
func (f *failT) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	f.failed = true
}

// A Go subscriber process reading from the C publisher process
// (ffi/c/log_pub.c), in both modes.
func TestLogGoSubscriberOfCPublisher(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "make", "-s", "-C", "../c", "build/log_pub").CombinedOutput(); err != nil {
		t.Fatalf("make: %v\n%s", err, out)
	}
	for _, reliable := range []bool{false, true} {
		opts := []shmq.Option{shmq.WithSlotSize(64), shmq.WithCapacity(256)}
		if reliable {
			opts = append(opts, shmq.WithReliable())
		}
		tg := target(t)
		l := mustCreateLog(t, tg, opts...)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), roleEnv+"=logread", "SHMQ_GO_TEST_ARGS="+string(tg))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		if !lines.Scan() || lines.Text() != "READY" {
			t.Fatalf("child: %q", lines.Text())
		}
		const count = 20000
		if out, err := exec.CommandContext(ctx, "../c/build/log_pub", string(tg), fmt.Sprint(count),
			"--close").CombinedOutput(); err != nil {
			t.Fatalf("log_pub: %v\n%s", err, out)
		}
		var received, lost uint64
		if !lines.Scan() {
			t.Fatal("no result from the Go subscriber")
		}
		if _, err := fmt.Sscanf(lines.Text(), "RESULT %d %d", &received, &lost); err != nil {
			t.Fatal(lines.Text(), err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if received+lost != count || (reliable && lost != 0) {
			t.Fatalf("reliable %v: received %d + lagged %d, published %d", reliable, received, lost, count)
		}
		if st, _ := l.Stats(); st.Published != count || st.Lagged != lost {
			t.Fatalf("%+v", st)
		}
		t.Logf("reliable %v: Go subscriber process received %d, lost %d of %d from a C publisher process",
			reliable, received, lost, count)
	}
}

func TestLogCloseAndHandles(t *testing.T) {
	l := mustCreateLog(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(4))
	s := mustSubscribe(t, l, shmq.StartLatest)
	l.Publish([]byte("last"))
	if l.IsClosed() {
		t.Fatal("closed too early")
	}
	if err := l.CloseLog(); err != nil || !l.IsClosed() {
		t.Fatal(err)
	}
	if _, err := l.Publish([]byte("x")); !errors.Is(err, shmq.ErrClosed) {
		t.Fatal(err)
	}
	if _, err := l.PublishBlock(context.Background(), []byte("x")); !errors.Is(err, shmq.ErrClosed) {
		t.Fatal(err)
	}
	if got := recvString(t, s); got != "last" {
		t.Fatal(got)
	}
	if _, err := s.Recv(context.Background(), make([]byte, 8)); !errors.Is(err, shmq.ErrClosed) {
		t.Fatal(err)
	}

	// A blocked Recv wakes on CloseLog, and on the subscriber's Close.
	for _, closeLog := range []bool{true, false} {
		l2 := mustCreateLog(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(4))
		s2, _ := l2.Subscribe(shmq.StartLatest)
		got := make(chan error, 1)
		go func() { _, err := s2.Recv(context.Background(), make([]byte, 8)); got <- err }()
		time.Sleep(20 * time.Millisecond)
		want := shmq.ErrHandleClosed
		if closeLog {
			want = shmq.ErrClosed
			l2.CloseLog()
		} else {
			s2.Close()
		}
		select {
		case err := <-got:
			if !errors.Is(err, want) {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a blocked Recv did not return")
		}
		s2.Close()
	}

	// Closed handles: a subscriber outlives its log handle.
	l3 := mustCreateLog(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(4))
	s3 := mustSubscribe(t, l3, shmq.StartLatest)
	l3.Publish([]byte("a"))
	if err := l3.Close(); err != nil {
		t.Fatal(err)
	}
	if got := recvString(t, s3); got != "a" {
		t.Fatal(got)
	}
	if err := l3.Close(); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatal(err)
	}
	if _, err := l3.Publish(nil); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatal(err)
	}
	if _, err := l3.Subscribe(shmq.StartLatest); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatal(err)
	}
	if _, err := l3.Stats(); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatal(err)
	}
	if l3.NextSeq() != 0 || l3.IsClosed() || !errors.Is(l3.CloseLog(), shmq.ErrHandleClosed) ||
		!errors.Is(l3.Flush(), shmq.ErrHandleClosed) || !errors.Is(l3.CreateCursor("a", shmq.StartOldest), shmq.ErrHandleClosed) {
		t.Fatal("a closed handle answered")
	}
	s3.Close()
	if _, err := s3.TryRecv(nil); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatal(err)
	}
	if s3.Position() != 0 || s3.Lag() != 0 || !errors.Is(s3.Commit(), shmq.ErrHandleClosed) ||
		!errors.Is(s3.Close(), shmq.ErrHandleClosed) {
		t.Fatal("a closed subscriber answered")
	}
	if err := l3.Delete(); err != nil {
		t.Fatal(err)
	}
}

// A Recv whose context is cancelled returns ctx.Err() and does not hang.
// How fast is measured by BenchmarkLogCancelLatency (the wait is cut in 2 ms
// slices), not asserted here: this machine is shared.
func TestLogCancellation(t *testing.T) {
	l := mustCreateLog(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(4), shmq.WithReliable())
	s := mustSubscribe(t, l, shmq.StartLatest)
	buf := make([]byte, 8)
	var delays []time.Duration
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := make(chan time.Time, 1)
		go func(i int) {
			time.Sleep(5*time.Millisecond + time.Duration(i%10)*200*time.Microsecond)
			cancelled <- time.Now()
			cancel()
		}(i)
		_, err := s.Recv(ctx, buf)
		if !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		delays = append(delays, time.Since(<-cancelled))
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	t.Logf("Recv returned after a cancel: median %v, max %v", delays[len(delays)/2], delays[len(delays)-1])
	if max := delays[len(delays)-1]; max > 5*time.Second {
		t.Fatalf("Recv returned %v after it was cancelled", max)
	}

	// A publisher blocked on a full reliable log is cancelled too, and
	// publishes nothing.
	for i := 0; i < 4; i++ {
		l.Publish([]byte{byte(i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := l.PublishBlock(ctx, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	if l.NextSeq() != 4 {
		t.Fatalf("a cancelled publish wrote: next %d", l.NextSeq())
	}
	// A cancelled context does not stop a call that can complete at once.
	if n, err := s.Recv(ctx, buf); err != nil || n != 1 || buf[0] != 0 {
		t.Fatal(n, err)
	}
}

// Messages racing with cancellations are never lost: each is returned by
// exactly one Recv, in order.
func TestLogCancellationNeverLosesAMessage(t *testing.T) {
	l := mustCreateLog(t, target(t), shmq.WithSlotSize(16), shmq.WithCapacity(64), shmq.WithReliable())
	s := mustSubscribe(t, l, shmq.StartLatest)
	const total = 3000
	go func() {
		m := make([]byte, 16)
		for seq := uint64(0); seq < total; seq++ {
			testmsg.Make(m, 1, seq)
			if _, err := l.PublishTimeout(m, 10*time.Second); err != nil {
				t.Error(err)
				return
			}
			if seq%16 == 0 {
				time.Sleep(time.Duration(seq%7) * 100 * time.Microsecond)
			}
		}
	}()
	buf := make([]byte, 16)
	deadline := time.Now().Add(60 * time.Second)
	next, cancels := uint64(0), 0
	for next < total && time.Now().Before(deadline) {
		// Contexts that expire after 0 to 300 µs: many cancel mid-wait.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(next%4)*100*time.Microsecond)
		n, err := s.Recv(ctx, buf)
		cancel()
		switch {
		case err == nil:
			if _, seq, err := testmsg.Check(buf[:n]); err != nil || seq != next {
				t.Fatalf("message %d, want %d (%v)", seq, next, err)
			}
			next++
		case errors.Is(err, context.DeadlineExceeded):
			cancels++
		default:
			t.Fatal(err)
		}
	}
	if next != total {
		t.Fatalf("received %d of %d", next, total)
	}
	t.Logf("%d messages, %d cancelled waits", total, cancels)
}

// How long a blocked Recv takes to return after its context is cancelled
// (µs, mean and max over the iterations).
func BenchmarkLogCancelLatency(b *testing.B) {
	l := mustCreateLog(b, target(b), shmq.WithSlotSize(64), shmq.WithCapacity(2))
	s := mustSubscribe(b, l, shmq.StartLatest)
	buf := make([]byte, 64)
	var sum, worst time.Duration
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := make(chan time.Time, 1)
		go func(i int) {
			time.Sleep(2*time.Millisecond + time.Duration(i%10)*100*time.Microsecond)
			cancelled <- time.Now()
			cancel()
		}(i)
		_, err := s.Recv(ctx, buf)
		lat := time.Since(<-cancelled)
		if err != context.Canceled {
			b.Fatal(err)
		}
		sum += lat
		if lat > worst {
			worst = lat
		}
	}
	b.ReportMetric(float64(sum.Microseconds())/float64(b.N), "cancel-µs")
	b.ReportMetric(float64(worst.Microseconds()), "max-cancel-µs")
}

func ExampleLog() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-log-%d", os.Getpid()))
	log, err := shmq.CreateLog(target, shmq.WithSlotSize(64), shmq.WithCapacity(4))
	if err != nil {
		panic(err)
	}
	defer log.Delete()
	defer log.Close()

	sub, err := log.Subscribe(shmq.StartLatest)
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	for _, m := range []string{"a", "b", "c", "d", "e", "f"} {
		log.Publish([]byte(m)) // overwrite mode: never waits
	}
	buf := make([]byte, log.SlotSize())
	for {
		n, err := sub.TryRecv(buf)
		var lagged *shmq.LaggedError
		switch {
		case errors.As(err, &lagged):
			fmt.Println("lost", lagged.Missed)
			continue
		case errors.Is(err, shmq.ErrEmpty):
			return
		case err != nil:
			panic(err)
		}
		fmt.Println(string(buf[:n]))
	}
	// Output:
	// lost 2
	// c
	// d
	// e
	// f
}

func TestLogSinglePublisher(t *testing.T) {
	tg := target(t)
	l := mustCreateLog(t, tg, shmq.WithSlotSize(16), shmq.WithCapacity(8), shmq.WithSinglePublisher())
	if !l.SinglePublisher() || l.Reliable() {
		t.Fatal(l.SinglePublisher(), l.Reliable())
	}
	other, err := shmq.OpenLog(tg)
	if err != nil {
		t.Fatal(err)
	}
	if !other.SinglePublisher() {
		t.Fatal("the kind is read back from the header")
	}
	s := mustSubscribe(t, other, shmq.StartLatest)
	if _, err := l.Publish([]byte("first")); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Publish([]byte("second")); !errors.Is(err, shmq.ErrRoleTaken) {
		t.Fatalf("a second publisher: %v", err)
	}
	if got := recvString(t, s); got != "first" {
		t.Fatal(got)
	}
	// Closing the holder's handle gives the role back.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Publish([]byte("second")); err != nil {
		t.Fatal(err)
	}
	if got := recvString(t, s); got != "second" {
		t.Fatal(got)
	}
	other.Close()
}

func TestLogBatches(t *testing.T) {
	for _, single := range []bool{false, true} {
		tg := target(t)
		opts := []shmq.Option{shmq.WithSlotSize(8), shmq.WithCapacity(16), shmq.WithReliable()}
		if single {
			opts = append(opts, shmq.WithSinglePublisher())
		}
		l := mustCreateLog(t, tg, opts...)
		s := mustSubscribe(t, l, shmq.StartLatest)
		var msgs [][]byte
		for i := 0; i < 20; i++ {
			msgs = append(msgs, []byte(fmt.Sprintf("m%d", i)))
		}
		n, err := l.PublishBatch(msgs)
		if err != nil || n != 16 {
			t.Fatalf("single %v: published %d of 20 into a ring of 16: %v", single, n, err)
		}
		if _, err := l.PublishBatch([][]byte{[]byte("much too long")}); !errors.Is(err, shmq.ErrTooLarge) {
			t.Fatal(err)
		}
		buf := make([]byte, 8*16)
		lens := make([]int, 10)
		var got []string
		for len(got) < 16 {
			k, err := s.RecvBatchTimeout(buf, lens, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			off := 0
			for _, m := range lens[:k] {
				got = append(got, string(buf[off:off+m]))
				off += m
			}
		}
		for i, m := range got {
			if m != fmt.Sprintf("m%d", i) {
				t.Fatalf("single %v: message %d is %q", single, i, m)
			}
		}
		if _, err := s.TryRecvBatch(buf, lens); !errors.Is(err, shmq.ErrEmpty) {
			t.Fatal(err)
		}
		// The rest fits now that the subscriber has read the ring.
		if n, err := l.PublishBatch(msgs[16:]); err != nil || n != 4 {
			t.Fatal(n, err)
		}
	}
}
