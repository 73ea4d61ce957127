package buffer_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"shmq.dev/shmq"
	"shmq.dev/shmq/buffer"
)

// childEnv names the role of this test binary re-run as a child process.
const childEnv = "SHMQ_BUFFER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "hold" {
		if err := holdChild(shmq.Target(os.Args[len(os.Args)-1])); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holdChild runs a Buffer on the cursor "sink" of the log at tg that
// flushes its first batch of 2 and then holds every later item (no count
// flush, no interval) until it is killed.
func holdChild(tg shmq.Target) error {
	l, err := shmq.OpenLog(tg)
	if err != nil {
		return err
	}
	sub, err := l.SubscribeNamed("sink", shmq.StartOldest)
	if err != nil {
		return err
	}
	flushes := 0
	b, err := buffer.FromLog(sub, u64, buffer.Config[int]{
		FlushInterval: time.Hour,
		Flush:         func(context.Context, []int) error { flushes++; return nil },
		ShouldFlush:   func(batch []int) bool { return flushes == 0 && len(batch) == 2 },
	})
	if err != nil {
		return err
	}
	return b.Run(context.Background())
}

// A process killed while its Buffer holds read, unflushed items: the
// cursor stays at its last flush, and the next Buffer on it gets those
// items again.
func TestFromLogAtLeastOnceAfterKill(t *testing.T) {
	tg := target(t)
	l, err := shmq.CreateLog(tg, shmq.WithReliable(), shmq.WithCursors(4), shmq.WithSlotSize(8), shmq.WithCapacity(64))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.CreateCursor("sink", shmq.StartOldest); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		if _, err := l.Publish(le(i)); err != nil {
			t.Fatal(err)
		}
	}
	child := exec.Command(os.Args[0], "-test.run=^$", string(tg))
	child.Env = append(os.Environ(), childEnv+"=hold")
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()

	// Wait until the child has read all 6 and committed its flush of 2.
	var info shmq.CursorInfo
	for end := time.Now().Add(waitTimeout); ; time.Sleep(time.Millisecond) {
		if info, err = l.Cursor("sink"); err == nil && info.Read == 6 && info.Position == 2 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("child did not read: %+v, %v", info, err)
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(waitTimeout):
		t.Fatal("child not reaped")
	}
	if c := committed(t, l); c != 2 {
		t.Fatalf("committed %d after the kill, want 2", c)
	}

	if err := l.CloseLog(); err != nil {
		t.Fatal(err)
	}
	var sub *shmq.Subscriber
	for end := time.Now().Add(waitTimeout); ; time.Sleep(time.Millisecond) {
		// The dead child's hold on the cursor is released once it is
		// seen dead.
		if sub, err = l.SubscribeNamed("sink", shmq.StartOldest); err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("cursor not released: %v", err)
		}
	}
	defer sub.Close()
	r := newRecorder()
	b, err := buffer.FromLog(sub, u64, buffer.Config[int]{Flush: r.flush})
	if err != nil {
		t.Fatal(err)
	}
	if err := runBuffer(t, b)(); err != nil {
		t.Fatal(err)
	}
	if batches, _, _ := r.snapshot(); fmt.Sprint(batches) != "[[2 3 4 5]]" {
		t.Fatalf("batches %v", batches)
	}
	if c := committed(t, l); c != 6 {
		t.Fatalf("committed %d, want 6", c)
	}
}

// In overwrite mode, messages overwritten before Run read them are
// counted by Lost; the rest are flushed.
func TestFromLogLost(t *testing.T) {
	l, err := shmq.CreateLog(target(t), shmq.WithSlotSize(8), shmq.WithCapacity(4))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sub, err := l.Subscribe(shmq.StartOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := 0; i < 10; i++ {
		if _, err := l.Publish(le(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.CloseLog(); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	b, err := buffer.FromLog(sub, u64, buffer.Config[int]{Flush: r.flush})
	if err != nil {
		t.Fatal(err)
	}
	if err := runBuffer(t, b)(); err != nil {
		t.Fatal(err)
	}
	batches, _, _ := r.snapshot()
	got := 0
	for _, batch := range batches {
		got += len(batch)
	}
	if b.Lost() == 0 || uint64(got)+b.Lost() != 10 {
		t.Fatalf("flushed %d, lost %d, of 10", got, b.Lost())
	}
}
