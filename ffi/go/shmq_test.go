package shmq_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"shmq.dev/shmq"
	"shmq.dev/shmq/internal/testmsg"
)

// Child processes: the test binary re-executes itself into a role.
const roleEnv = "SHMQ_GO_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(child(role, os.Getenv("SHMQ_GO_TEST_ARGS")))
	}
	os.Exit(m.Run())
}

func child(role, args string) int {
	a := strings.Split(args, ",")
	switch role {
	case "echo": // ping-pong partner: a, b = ping target, pong target
		ping, err := shmq.OpenAt(shmq.Target(a[0]))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		pong, err := shmq.OpenAt(shmq.Target(a[1]))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		buf := make([]byte, ping.SlotSize())
		for {
			n, err := ping.DequeueTimeout(buf, 60*time.Second)
			if errors.Is(err, shmq.ErrClosed) {
				return 0
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "echo:", err)
				return 1
			}
			if err := pong.EnqueueTimeout(buf[:n], 60*time.Second); err != nil {
				fmt.Fprintln(os.Stderr, "echo:", err)
				return 1
			}
		}
	case "produce": // a = target, producer id, count
		q, err := shmq.OpenAt(shmq.Target(a[0]))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		var id, count uint64
		fmt.Sscan(a[1], &id)
		fmt.Sscan(a[2], &count)
		m := make([]byte, q.SlotSize())
		for seq := uint64(0); seq < count; seq++ {
			msg := m[:testmsg.Len(seq, q.SlotSize())]
			testmsg.Make(msg, uint32(id), seq)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := q.EnqueueBlock(ctx, msg)
			cancel()
			if err != nil {
				fmt.Fprintln(os.Stderr, "produce:", err)
				return 1
			}
		}
		return 0
	case "logsub":
		return logSubChild(a)
	case "logread":
		return logReadChild(a)
	}
	if f, ok := moreRoles[role]; ok {
		return f(a)
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

// moreRoles: child roles declared by other test files (in their init).
var moreRoles = map[string]func(args []string) int{}

func spawn(t testing.TB, role string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, "SHMQ_GO_TEST_ARGS="+strings.Join(args, ","))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd
}

// waitExit waits at most d for cmd; it fails the test if cmd fails or hangs.
func waitExit(t testing.TB, cmd *exec.Cmd, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("child %v: %v", cmd.Args, err)
		}
	case <-time.After(d):
		_ = cmd.Process.Kill()
		t.Fatalf("child %v did not exit within %v", cmd.Args, d)
	}
}

var counter atomic.Int64

// target is a fresh POSIX target, removed when the test ends.
func target(t testing.TB) shmq.Target {
	tg := shmq.Posix(fmt.Sprintf("shmq-gotest-%d-%d", os.Getpid(), counter.Add(1)))
	t.Cleanup(func() { _ = shmq.UnlinkForce(tg) })
	return tg
}

func mustCreate(t testing.TB, tg shmq.Target, opts ...shmq.Option) *shmq.Queue {
	t.Helper()
	q, err := shmq.CreateAt(tg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// A program written for shqueue-go, as its README shows it.
func TestSeedAPI(t *testing.T) {
	key, err := shmq.FindFreeKey()
	if err != nil {
		t.Fatal(err)
	}
	queue, err := shmq.Create(key, 8, 256) // 256 messages of 8 words (64 bytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shmq.UnlinkForce(shmq.SysV(key)) })
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = 0xAA
	}
	queue.EnqueueShift(msg)
	if err := queue.EnqueueBlock(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	if !queue.EnqueueTry(msg) {
		t.Fatal("queue is full")
	}

	other, err := shmq.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if err := other.DequeueBlock(context.Background(), buf); err != nil {
		t.Fatal(err)
	}
	if buf[0] != 0xAA || buf[63] != 0xAA {
		t.Fatalf("got %x", buf)
	}
	if !other.DequeueTry(buf) || !other.DequeueTry(buf) {
		t.Fatal("queue is empty")
	}
	if other.DequeueTry(buf) {
		t.Fatal("dequeued from an empty queue")
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if err := queue.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := queue.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := shmq.Open(key); !errors.Is(err, shmq.ErrNotFound) || !errors.Is(err, shmq.ErrNotExist) {
		t.Fatalf("open after delete: %v", err)
	}
	if _, err := shmq.Create(key, 8, 1); !errors.Is(err, shmq.ErrInvalidArgument) {
		t.Fatalf("capacity 1: %v", err)
	}
	if _, err := shmq.Create(1<<40, 8, 16); !errors.Is(err, shmq.ErrInvalidArgument) {
		t.Fatalf("key beyond 32 bits: %v", err)
	}
	if _, err := shmq.Create(key, 1<<30, 16); !errors.Is(err, shmq.ErrInvalidArgument) {
		t.Fatalf("message size overflowing: %v", err)
	}
}

// Unlike the seed, Create on a live queue leaves it alone.
func TestCreateNeverWipesALiveQueue(t *testing.T) {
	key, err := shmq.FindFreeKey()
	if err != nil {
		t.Fatal(err)
	}
	q, err := shmq.Create(key, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Delete(); _ = q.Close() })
	if !q.EnqueueTry([]byte("precious")) {
		t.Fatal("enqueue")
	}
	_, err = shmq.Create(key, 2, 8)
	if !errors.Is(err, shmq.ErrAlreadyExists) || !errors.Is(err, shmq.ErrAlreadyExist) {
		t.Fatalf("second Create: %v", err)
	}
	if !strings.Contains(err.Error(), "untouched") {
		t.Fatalf("error text: %v", err)
	}
	buf := make([]byte, 16)
	n, err := q.TryDequeue(buf)
	if err != nil || string(buf[:n]) != "precious" {
		t.Fatalf("after a second Create: %q %v", buf[:n], err)
	}
}

// Unlike the seed, wrong-sized buffers and messages never panic.
func TestWrongSizesNeverPanic(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(16), shmq.WithCapacity(4))
	if q.EnqueueTry(make([]byte, 17)) {
		t.Fatal("a message longer than the slot was accepted")
	}
	if err := q.TryEnqueue(make([]byte, 17)); !errors.Is(err, shmq.ErrTooLarge) {
		t.Fatal(err)
	}
	if err := q.EnqueueBlock(context.Background(), make([]byte, 17)); !errors.Is(err, shmq.ErrTooLarge) {
		t.Fatal(err)
	}
	q.EnqueueShift(make([]byte, 17)) // dropped, no panic
	if _, err := q.Shift(make([]byte, 17)); !errors.Is(err, shmq.ErrTooLarge) {
		t.Fatal(err)
	}
	if q.Len() != 0 {
		t.Fatalf("len %d", q.Len())
	}

	if !q.EnqueueTry([]byte("0123456789")) {
		t.Fatal("enqueue")
	}
	small := make([]byte, 4)
	if q.DequeueTry(small) {
		t.Fatal("a message longer than the buffer was dequeued")
	}
	if err := q.DequeueBlock(context.Background(), small); !errors.Is(err, shmq.ErrBufferTooSmall) {
		t.Fatal(err)
	}
	if _, err := q.TryDequeue(nil); !errors.Is(err, shmq.ErrBufferTooSmall) {
		t.Fatal(err)
	}
	big := make([]byte, 100) // longer than the message: fine, the length tells
	n, err := q.TryDequeue(big)
	if err != nil || string(big[:n]) != "0123456789" {
		t.Fatalf("%q %v", big[:n], err)
	}
}

func TestVariableLengthAndEmptyMessages(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(32), shmq.WithCapacity(8))
	for _, m := range []string{"", "a", strings.Repeat("z", 32)} {
		if err := q.TryEnqueue([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 32)
	for _, want := range []string{"", "a", strings.Repeat("z", 32)} {
		n, err := q.Dequeue(context.Background(), buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q %v, want %q", buf[:n], err, want)
		}
	}
	if _, err := q.TryDequeue(buf); !errors.Is(err, shmq.ErrEmpty) {
		t.Fatal(err)
	}
	if _, err := q.DequeueTimeout(buf, time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		if err := q.TryEnqueue(nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.TryEnqueue(nil); !errors.Is(err, shmq.ErrFull) {
		t.Fatal(err)
	}
	if err := q.EnqueueTimeout(nil, time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
		t.Fatal(err)
	}
}

func TestShiftAndStats(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(2))
	for i, want := range []uint64{0, 0, 1, 1, 1} {
		d, err := q.Shift([]byte{byte(i)})
		if err != nil || d != want {
			t.Fatalf("shift %d: discarded %d (want %d), %v", i, d, want, err)
		}
	}
	q.EnqueueShift([]byte{5})
	s, err := q.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := shmq.Stats{Enqueued: 6, Dequeued: 0, Discarded: 4, Len: 2, Capacity: 2}
	if s != want {
		t.Fatalf("stats %+v, want %+v", s, want)
	}
	buf := make([]byte, 8)
	for _, w := range []byte{4, 5} {
		if n, err := q.TryDequeue(buf); err != nil || n != 1 || buf[0] != w {
			t.Fatalf("got %v %v, want %d", buf[:n], err, w)
		}
	}
	if q.Cap() != 2 || q.SlotSize() != 8 || q.Len() != 0 {
		t.Fatalf("cap %d slot %d len %d", q.Cap(), q.SlotSize(), q.Len())
	}
}

func TestTargetsAndOptions(t *testing.T) {
	key, err := shmq.FindFreeKey()
	if err != nil {
		t.Fatal(err)
	}
	file := shmq.File(fmt.Sprintf("%s/shmq-gotest-%d-file", t.TempDir(), os.Getpid()))
	for _, tg := range []shmq.Target{shmq.SysV(key), target(t), file} {
		t.Run(string(tg), func(t *testing.T) {
			t.Cleanup(func() { _ = shmq.UnlinkForce(tg) })
			if _, err := shmq.OpenAt(tg); !errors.Is(err, shmq.ErrNotFound) {
				t.Fatalf("open before create: %v", err)
			}
			q := mustCreate(t, tg, shmq.WithSlotSize(100), shmq.WithCapacity(3), shmq.WithMode(0o640))
			if q.SlotSize() != 100 || q.Cap() != 3 || q.Target() != tg {
				t.Fatalf("slot %d cap %d target %s", q.SlotSize(), q.Cap(), q.Target())
			}
			same, err := shmq.OpenOrCreateAt(tg, shmq.WithSlotSize(100), shmq.WithCapacity(3))
			if err != nil {
				t.Fatal(err)
			}
			defer same.Close()
			_, err = shmq.OpenOrCreateAt(tg, shmq.WithSlotSize(64), shmq.WithCapacity(3))
			var e *shmq.Error
			if !errors.Is(err, shmq.ErrIncompatible) || !errors.As(err, &e) || e.Target != tg || e.Op != "open or create" {
				t.Fatalf("incompatible open_or_create: %v", err)
			}
			if err := q.TryEnqueue([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if n, err := same.TryDequeue(make([]byte, 100)); err != nil || n != 1 {
				t.Fatal(n, err)
			}
			if err := q.Flush(); err != nil {
				t.Fatal(err)
			}
			if path := strings.TrimPrefix(string(tg), "file:"); path != string(tg) {
				if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
					t.Fatalf("file mode: %v %v", fi.Mode(), err)
				}
			}
			if path := strings.TrimPrefix(string(tg), "posix:"); path != string(tg) {
				if fi, err := os.Stat("/dev/shm/" + path); err != nil || fi.Mode().Perm() != 0o640 {
					t.Fatalf("posix mode: %v %v", fi.Mode(), err)
				}
			}
			if err := q.Delete(); err != nil {
				t.Fatal(err)
			}
			// Removal is idempotent: a second unlink is not an error.
			if err := shmq.Unlink(tg); err != nil {
				t.Fatalf("second unlink: %v", err)
			}
		})
	}
	if _, err := shmq.CreateAt(target(t), shmq.WithCapacity(1)); !errors.Is(err, shmq.ErrInvalidArgument) {
		t.Fatalf("capacity 1: %v", err)
	}
	if _, err := shmq.CreateAt(target(t), shmq.WithMode(0o1777)); !errors.Is(err, shmq.ErrInvalidArgument) {
		t.Fatalf("mode: %v", err)
	}
	if _, err := shmq.CreateAt(target(t), shmq.WithSlotSize(-1)); !errors.Is(err, shmq.ErrInvalidArgument) {
		t.Fatalf("slot size: %v", err)
	}
	for _, bad := range []shmq.Target{"", "sysv:nope", "posix:a/b"} {
		if _, err := shmq.OpenAt(bad); !errors.Is(err, shmq.ErrInvalidArgument) {
			t.Fatalf("target %q: %v", bad, err)
		}
	}
	if _, err := shmq.OpenAt("file:/tmp"); !errors.Is(err, shmq.ErrIO) || !strings.Contains(err.Error(), "/tmp") {
		t.Fatalf("a directory: %v", err)
	}
	if v := shmq.Version(); !strings.HasPrefix(v, "0.") {
		t.Fatalf("version %q", v)
	}
}

func TestSPSC(t *testing.T) {
	tg := target(t)
	a := mustCreate(t, tg, shmq.WithSlotSize(16), shmq.WithCapacity(4), shmq.WithSPSC())
	b, err := shmq.OpenAt(tg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !a.IsSPSC() || !b.IsSPSC() {
		t.Fatal("not single-producer/single-consumer")
	}
	if _, err := shmq.OpenOrCreateAt(tg, shmq.WithSlotSize(16), shmq.WithCapacity(4)); !errors.Is(err, shmq.ErrIncompatible) {
		t.Fatalf("open_or_create without spsc: %v", err)
	}
	// Each call leases its role for that call only: no handle keeps one.
	if err := a.TryEnqueue([]byte("p")); err != nil {
		t.Fatal(err)
	}
	if err := b.TryEnqueue([]byte("q")); err != nil {
		t.Fatalf("a later producer call: %v", err)
	}
	buf := make([]byte, 16)
	if n, err := b.Dequeue(context.Background(), buf); err != nil || string(buf[:n]) != "p" {
		t.Fatal(n, err)
	}
	if n, err := a.Dequeue(context.Background(), buf); err != nil || string(buf[:n]) != "q" {
		t.Fatal(n, err)
	}
	b.Close()
	if err := a.TryEnqueue([]byte("r")); err != nil {
		t.Fatal(err)
	}
	if n, err := a.TryDequeue(buf); err != nil || string(buf[:n]) != "r" {
		t.Fatal(n, err)
	}
	if q := mustCreate(t, target(t)); q.IsSPSC() {
		t.Fatal("a default queue is single-producer/single-consumer")
	}
}

func TestCorruptSegment(t *testing.T) {
	path := fmt.Sprintf("%s/q", t.TempDir())
	q := mustCreate(t, shmq.File(path), shmq.WithSlotSize(8), shmq.WithCapacity(2))
	q.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("garbage!"), 0)
	f.Close()
	_, err = shmq.OpenAt(shmq.File(path))
	if !errors.Is(err, shmq.ErrCorrupt) || !errors.Is(err, shmq.ErrInvalidMagic) {
		t.Fatalf("open a damaged queue: %v", err)
	}
}

func TestCloseQueue(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(4))
	if err := q.TryEnqueue([]byte("last")); err != nil {
		t.Fatal(err)
	}
	if q.IsClosed() {
		t.Fatal("closed too early")
	}
	if err := q.CloseQueue(); err != nil {
		t.Fatal(err)
	}
	if !q.IsClosed() {
		t.Fatal("not closed")
	}
	if err := q.TryEnqueue([]byte("x")); !errors.Is(err, shmq.ErrClosed) {
		t.Fatal(err)
	}
	if err := q.EnqueueBlock(context.Background(), []byte("x")); !errors.Is(err, shmq.ErrClosed) {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := q.Dequeue(context.Background(), buf); err != nil || string(buf[:n]) != "last" {
		t.Fatal(n, err)
	}
	if err := q.DequeueBlock(context.Background(), buf); !errors.Is(err, shmq.ErrClosed) {
		t.Fatal(err)
	}

	// A consumer blocked in another goroutine wakes up.
	q2 := mustCreate(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(4))
	got := make(chan error, 1)
	go func() { got <- q2.DequeueBlock(context.Background(), buf) }()
	time.Sleep(20 * time.Millisecond)
	q2.CloseQueue()
	select {
	case err := <-got:
		if !errors.Is(err, shmq.ErrClosed) {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked consumer did not wake on CloseQueue")
	}
}

func TestHandleClose(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(4))
	blocked := make(chan error, 1)
	go func() { _, err := q.Dequeue(context.Background(), make([]byte, 8)); blocked <- err }()
	time.Sleep(20 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, shmq.ErrHandleClosed) {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked call did not return after Close")
	}
	if err := q.Close(); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatal(err)
	}
	if q.EnqueueTry([]byte("x")) || q.DequeueTry(make([]byte, 8)) {
		t.Fatal("a closed handle still works")
	}
	q.EnqueueShift([]byte("x"))
	if err := q.TryEnqueue(nil); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatal(err)
	}
	if _, err := q.Stats(); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatal(err)
	}
	if q.Len() != 0 || q.IsClosed() || !errors.Is(q.CloseQueue(), shmq.ErrHandleClosed) || !errors.Is(q.Flush(), shmq.ErrHandleClosed) {
		t.Fatal("a closed handle answered")
	}
	if err := q.Delete(); err != nil { // Delete needs no handle, as in the seed
		t.Fatal(err)
	}
}

// Cancelling returns ctx.Err() without waiting for a message. (How fast is
// measured by BenchmarkCancelLatency; here only that it does not hang.)
func TestCancellation(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(2))
	buf := make([]byte, 8)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	if err := q.DequeueBlock(ctx, buf); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("DequeueBlock returned %v after it was cancelled", d)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := q.Dequeue(ctx, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}

	q.EnqueueTry([]byte("a"))
	q.EnqueueTry([]byte("b"))
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if err := q.EnqueueBlock(ctx, []byte("c")); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if q.Len() != 2 {
		t.Fatalf("a cancelled enqueue wrote: len %d", q.Len())
	}
	// A cancelled context does not stop a call that can complete at once.
	if err := q.DequeueBlock(ctx, buf); err != nil || buf[0] != 'a' {
		t.Fatal(err)
	}
}

// Messages racing with cancellations are delivered exactly once: each is
// either returned by a DequeueBlock or still queued at the end.
func TestCancellationNeverLosesAMessage(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(16), shmq.WithCapacity(64))
	const total = 3000
	go func() {
		m := make([]byte, 16)
		for seq := uint64(0); seq < total; seq++ {
			testmsg.Make(m, 1, seq)
			if err := q.EnqueueTimeout(m, 10*time.Second); err != nil {
				t.Error(err)
				return
			}
			if seq%16 == 0 {
				time.Sleep(time.Duration(seq%7) * 100 * time.Microsecond)
			}
		}
	}()
	seen := make([]int, total)
	buf := make([]byte, 16)
	record := func(n int) {
		_, seq, err := testmsg.Check(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		seen[seq]++
	}
	deadline := time.Now().Add(60 * time.Second)
	received, cancels := 0, 0
	for received < total && time.Now().Before(deadline) {
		// Contexts that expire after 0 to 300 µs: many cancel mid-wait.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(received%4)*100*time.Microsecond)
		n, err := q.Dequeue(ctx, buf)
		cancel()
		switch {
		case err == nil:
			record(n)
			received++
		case errors.Is(err, context.DeadlineExceeded):
			cancels++
		default:
			t.Fatal(err)
		}
	}
	for received < total {
		n, err := q.DequeueTimeout(buf, 10*time.Second)
		if err != nil {
			t.Fatalf("after %d messages: %v", received, err)
		}
		record(n)
		received++
	}
	for seq, c := range seen {
		if c != 1 {
			t.Fatalf("message %d seen %d times", seq, c)
		}
	}
	if cancels == 0 {
		t.Log("no call was cancelled (the producer never let the consumer wait)")
	}
	t.Logf("%d messages, %d cancelled waits", total, cancels)
}

func TestManyGoroutines(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(64), shmq.WithCapacity(16))
	const producers, consumers, count = 3, 3, 5000
	var wg sync.WaitGroup
	for p := 1; p <= producers; p++ {
		wg.Add(1)
		go func(p uint32) {
			defer wg.Done()
			m := make([]byte, 64)
			for seq := uint64(0); seq < count; seq++ {
				msg := m[:testmsg.Len(seq, 64)]
				testmsg.Make(msg, p, seq)
				if err := q.EnqueueTimeout(msg, 10*time.Second); err != nil {
					t.Error(err)
					return
				}
			}
		}(uint32(p))
	}
	var mu sync.Mutex
	seen := map[[2]uint64]int{}
	var cwg sync.WaitGroup
	for c := 0; c < consumers; c++ {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			buf := make([]byte, 64)
			next := map[uint32]uint64{}
			for {
				n, err := q.DequeueTimeout(buf, 10*time.Second)
				if errors.Is(err, shmq.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				p, seq, err := testmsg.Check(buf[:n])
				if err != nil || seq < next[p] {
					t.Errorf("message %d of %d: %v (FIFO: next %d)", seq, p, err, next[p])
					return
				}
				next[p] = seq + 1
				mu.Lock()
				seen[[2]uint64{uint64(p), seq}]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	q.CloseQueue()
	cwg.Wait()
	if len(seen) != producers*count {
		t.Fatalf("%d distinct messages, want %d", len(seen), producers*count)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("message %v seen %d times", k, c)
		}
	}
}

// Go processes: two producer processes, this process consumes.
func TestAcrossProcesses(t *testing.T) {
	tg := target(t)
	q := mustCreate(t, tg, shmq.WithSlotSize(64), shmq.WithCapacity(32))
	const count = 5000
	p1 := spawn(t, "produce", string(tg), "1", fmt.Sprint(count))
	p2 := spawn(t, "produce", string(tg), "2", fmt.Sprint(count))
	buf := make([]byte, 64)
	next := map[uint32]uint64{1: 0, 2: 0}
	for i := 0; i < 2*count; i++ {
		n, err := q.DequeueTimeout(buf, 30*time.Second)
		if err != nil {
			t.Fatalf("after %d messages: %v", i, err)
		}
		p, seq, err := testmsg.Check(buf[:n])
		if err != nil || seq != next[p] {
			t.Fatalf("producer %d: message %d, want %d (%v)", p, seq, next[p], err)
		}
		next[p]++
	}
	waitExit(t, p1, 30*time.Second)
	waitExit(t, p2, 30*time.Second)
	if q.Len() != 0 {
		t.Fatalf("%d messages left", q.Len())
	}
}

func Example() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-%d", os.Getpid()))
	q, err := shmq.CreateAt(target, shmq.WithSlotSize(64), shmq.WithCapacity(1024))
	if err != nil {
		panic(err)
	}
	defer q.Delete()
	defer q.Close()

	if err := q.EnqueueBlock(context.Background(), []byte("hello")); err != nil {
		panic(err)
	}
	buf := make([]byte, q.SlotSize())
	n, err := q.Dequeue(context.Background(), buf)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(buf[:n]))
	// Output: hello
}

// Unlink leaves a file that is not shmq's untouched; UnlinkForce removes it.
func TestUnlinkRefusesWhatIsNotShmqs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, []byte("user data, not a queue"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := shmq.Unlink(shmq.File(path))
	if !errors.Is(err, shmq.ErrCorrupt) {
		t.Fatalf("Unlink of a foreign file: %v, want ErrCorrupt", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "user data, not a queue" {
		t.Fatalf("foreign file changed: %q", got)
	}
	if err := shmq.UnlinkForce(shmq.File(path)); err != nil {
		t.Fatalf("UnlinkForce: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("file still there after UnlinkForce: %v", err)
	}
}
