package shmq_test

// Zero-copy and waiting batches through the role handles (Producer,
// Consumer), on both queue modes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"shmq.dev/shmq"
)

// mustRoles takes both role handles of q, closed when the test ends.
func mustRoles(t testing.TB, q *shmq.Queue) (*shmq.Producer, *shmq.Consumer) {
	t.Helper()
	p, err := q.Producer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return p, c
}

// fill enqueues one-byte messages until the queue is full; it returns how
// many.
func fill(t testing.TB, p *shmq.Producer) int {
	t.Helper()
	for n := 0; ; n++ {
		if err := p.TryEnqueue([]byte{10}); errors.Is(err, shmq.ErrFull) {
			return n
		} else if err != nil {
			t.Fatal(err)
		}
	}
}

// recv waits at most 10 s for a result of a goroutine.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no result within 10 s", what)
		panic("unreachable")
	}
}

func TestRoleReserveCommitConsume(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			q := mustCreate(t, target(t), append([]shmq.Option{shmq.WithSlotSize(32), shmq.WithCapacity(4)}, m.opts...)...)
			p, c := mustRoles(t, q)

			r, err := p.TryReserve(10)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Bytes()) != 10 || r.Len() != 10 {
				t.Fatalf("reserved %d bytes, want 10", len(r.Bytes()))
			}
			copy(r.Bytes(), "helloWORLD")
			// One reservation at a time: the producer's calls wait for it.
			if err := p.TryEnqueue([]byte("x")); !errors.Is(err, shmq.ErrInvalidArgument) {
				t.Fatalf("TryEnqueue during a reservation: %v, want ErrInvalidArgument", err)
			}
			if _, err := p.TryReserve(1); !errors.Is(err, shmq.ErrInvalidArgument) {
				t.Fatalf("second TryReserve: %v, want ErrInvalidArgument", err)
			}
			if _, err := c.TryConsume(); !errors.Is(err, shmq.ErrEmpty) {
				t.Fatalf("TryConsume before Commit: %v, want ErrEmpty", err)
			}
			if err := r.Commit(5); err != nil {
				t.Fatal(err)
			}
			mustPanic(t, "Reservation.Bytes after Commit", func() { r.Bytes() })
			if err := r.Commit(5); !errors.Is(err, shmq.ErrInvalidArgument) {
				t.Fatalf("second Commit: %v, want ErrInvalidArgument", err)
			}
			r.Cancel() // no-op after Commit

			msg, err := c.TryConsume()
			if err != nil {
				t.Fatal(err)
			}
			if string(msg.Bytes()) != "hello" || msg.Len() != 5 {
				t.Fatalf("consumed %q, want hello", msg.Bytes())
			}
			if _, err := c.TryDequeue(make([]byte, 32)); !errors.Is(err, shmq.ErrInvalidArgument) {
				t.Fatalf("TryDequeue while a message is live: %v, want ErrInvalidArgument", err)
			}
			msg.Release()
			msg.Release() // idempotent
			mustPanic(t, "Message.Bytes after Release", func() { msg.Bytes() })
			if _, err := c.TryConsume(); !errors.Is(err, shmq.ErrEmpty) {
				t.Fatalf("TryConsume on empty: %v, want ErrEmpty", err)
			}
			if _, err := c.ConsumeTimeout(20 * time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
				t.Fatalf("ConsumeTimeout on empty: %v, want ErrTimeout", err)
			}

			// Cancel and an oversized Commit publish nothing; the producer
			// is usable again after each.
			if r, err = p.TryReserve(8); err != nil {
				t.Fatal(err)
			}
			r.Cancel()
			if r, err = p.TryReserve(8); err != nil {
				t.Fatal(err)
			}
			if err := r.Commit(9); !errors.Is(err, shmq.ErrTooLarge) {
				t.Fatalf("Commit(9) of 8: %v, want ErrTooLarge", err)
			}
			if q.Len() != 0 {
				t.Fatalf("Len %d after Cancel and a failed Commit, want 0", q.Len())
			}
			if _, err := p.TryReserve(33); !errors.Is(err, shmq.ErrTooLarge) {
				t.Fatalf("TryReserve(33) in 32-byte slots: %v, want ErrTooLarge", err)
			}
			if _, err := p.TryReserve(-1); !errors.Is(err, shmq.ErrInvalidArgument) {
				t.Fatalf("TryReserve(-1): %v, want ErrInvalidArgument", err)
			}

			// Interplay with the copying calls, and a zero-length message.
			if err := p.TryEnqueue([]byte("copied")); err != nil {
				t.Fatal(err)
			}
			if r, err = p.TryReserve(0); err != nil {
				t.Fatal(err)
			}
			if err := r.Commit(0); err != nil {
				t.Fatal(err)
			}
			// Full: a reservation waits, and times out.
			fillers := fill(t, p)
			if _, err := p.TryReserve(1); !errors.Is(err, shmq.ErrFull) {
				t.Fatalf("TryReserve on full: %v, want ErrFull", err)
			}
			if _, err := p.ReserveTimeout(1, 20*time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
				t.Fatalf("ReserveTimeout on full: %v, want ErrTimeout", err)
			}
			if msg, err = c.TryConsume(); err != nil || string(msg.Bytes()) != "copied" {
				t.Fatalf("TryConsume: %v, want copied", err)
			}
			msg.Release()
			buf := make([]byte, 32)
			if n, err := c.TryDequeue(buf); err != nil || n != 0 {
				t.Fatalf("TryDequeue of the empty message: %d %v", n, err)
			}
			for i := 0; i < fillers; i++ {
				if _, err := c.TryDequeue(buf); err != nil {
					t.Fatal(err)
				}
			}

			// Closed: no reservation; the consumer drains, then ErrClosed.
			if err := p.TryEnqueue([]byte("last")); err != nil {
				t.Fatal(err)
			}
			if err := p.CloseQueue(); err != nil {
				t.Fatal(err)
			}
			if _, err := p.TryReserve(1); !errors.Is(err, shmq.ErrClosed) {
				t.Fatalf("TryReserve on closed: %v, want ErrClosed", err)
			}
			if msg, err = c.ConsumeTimeout(time.Second); err != nil || string(msg.Bytes()) != "last" {
				t.Fatalf("ConsumeTimeout on closed: %v, want last", err)
			}
			msg.Release()
			if _, err := c.Consume(context.Background()); !errors.Is(err, shmq.ErrClosed) {
				t.Fatalf("Consume on closed and drained: %v, want ErrClosed", err)
			}
		})
	}
}

// A Consume waiting on an empty queue is woken by a Commit; a Reserve
// waiting on a full queue by a Release. Also across the handle kinds: a
// Queue's zero-copy calls and a role handle's meet in the same slots.
func TestRoleReserveConsumeWait(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			q := mustCreate(t, target(t), append([]shmq.Option{shmq.WithSlotSize(16), shmq.WithCapacity(2)}, m.opts...)...)
			p, c := mustRoles(t, q)
			got := make(chan error, 1)
			go func() {
				m, err := c.ConsumeTimeout(10 * time.Second)
				if err == nil {
					if string(m.Bytes()) != "wake" {
						err = fmt.Errorf("consumed %q, want wake", m.Bytes())
					}
					m.Release()
				}
				got <- err
			}()
			time.Sleep(10 * time.Millisecond) // let it wait (the result is the same if it has not yet)
			r, err := p.ReserveTimeout(4, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			copy(r.Bytes(), "wake")
			if err := r.Commit(4); err != nil {
				t.Fatal(err)
			}
			if err := recv(t, got, "Consume woken by Commit"); err != nil {
				t.Fatal(err)
			}

			for i := 0; i < 2; i++ {
				if err := p.TryEnqueue([]byte("full")); err != nil {
					t.Fatal(err)
				}
			}
			reserved := make(chan error, 1)
			go func() {
				r, err := p.Reserve(context.Background(), 5)
				if err == nil {
					copy(r.Bytes(), "after")
					err = r.Commit(5)
				}
				reserved <- err
			}()
			time.Sleep(10 * time.Millisecond)
			m, err := c.ConsumeTimeout(10 * time.Second)
			if err != nil || string(m.Bytes()) != "full" {
				t.Fatalf("ConsumeTimeout: %v, want full", err)
			}
			m.Release()
			if err := recv(t, reserved, "Reserve woken by Release"); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 16)
			if n, err := c.TryDequeue(buf); err != nil || string(buf[:n]) != "full" {
				t.Fatalf("TryDequeue: %q %v, want full", buf[:n], err)
			}
			if n, err := c.DequeueTimeout(buf, 10*time.Second); err != nil || string(buf[:n]) != "after" {
				t.Fatalf("DequeueTimeout: %q %v, want after", buf[:n], err)
			}
		})
	}
}

// A context ends a waiting Reserve or Consume; Close ends one too.
func TestRoleReserveConsumeCancel(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			q := mustCreate(t, target(t), append([]shmq.Option{shmq.WithSlotSize(8), shmq.WithCapacity(2)}, m.opts...)...)
			p, c := mustRoles(t, q)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, err := c.Consume(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Consume past its deadline: %v, want DeadlineExceeded", err)
			}
			full := fill(t, p)
			if _, err := p.Reserve(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Reserve past its deadline: %v, want DeadlineExceeded", err)
			}

			// Cancelled from another goroutine while waiting.
			ctx2, cancel2 := context.WithCancel(context.Background())
			res := make(chan error, 1)
			go func() {
				_, err := p.Reserve(ctx2, 1)
				res <- err
			}()
			time.Sleep(10 * time.Millisecond)
			cancel2()
			if err := recv(t, res, "cancelled Reserve"); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled Reserve: %v, want Canceled", err)
			}

			// Close interrupts a waiting Reserve.
			go func() {
				_, err := p.Reserve(context.Background(), 1)
				res <- err
			}()
			time.Sleep(10 * time.Millisecond)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := recv(t, res, "Reserve after Close"); !errors.Is(err, shmq.ErrHandleClosed) {
				t.Fatalf("Reserve interrupted by Close: %v, want ErrHandleClosed", err)
			}
			if _, err := p.TryReserve(1); !errors.Is(err, shmq.ErrHandleClosed) {
				t.Fatalf("TryReserve after Close: %v, want ErrHandleClosed", err)
			}

			// ... and a waiting Consume (the queue drained first).
			for i := 0; i < full; i++ {
				if m, err := c.TryConsume(); err != nil {
					t.Fatal(err)
				} else {
					m.Release()
				}
			}
			got := make(chan error, 1)
			go func() {
				_, err := c.Consume(context.Background())
				got <- err
			}()
			time.Sleep(10 * time.Millisecond)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := recv(t, got, "Consume after Close"); !errors.Is(err, shmq.ErrHandleClosed) {
				t.Fatalf("Consume interrupted by Close: %v, want ErrHandleClosed", err)
			}
		})
	}
}

// Close of a role handle ends what is still live: the reservation is
// cancelled (nothing published) and the message released (its slot free
// again), and the role handles are freed, not leaked: the roles can be
// taken again.
func TestRoleCloseEndsLive(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			q := mustCreate(t, target(t), append([]shmq.Option{shmq.WithSlotSize(16), shmq.WithCapacity(2)}, m.opts...)...)
			p, c := mustRoles(t, q)
			if err := p.TryEnqueue([]byte("a")); err != nil {
				t.Fatal(err)
			}
			msg, err := c.TryConsume()
			if err != nil {
				t.Fatal(err)
			}
			r, err := p.TryReserve(4)
			if err != nil {
				t.Fatal(err)
			}
			copy(r.Bytes(), "lost")
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := r.Commit(4); !errors.Is(err, shmq.ErrHandleClosed) {
				t.Fatalf("Commit after Close: %v, want ErrHandleClosed", err)
			}
			r.Cancel()    // no-op: Close cancelled it
			msg.Release() // no-op: Close released it
			mustPanic(t, "Reservation.Bytes after Close", func() { r.Bytes() })
			mustPanic(t, "Message.Bytes after Close", func() { msg.Bytes() })

			p2, c2 := mustRoles(t, q) // ErrRoleTaken (SPSC) had Close leaked them
			if _, err := c2.TryDequeue(make([]byte, 16)); !errors.Is(err, shmq.ErrEmpty) {
				t.Fatalf("after Close cancelled the reservation: %v, want ErrEmpty", err)
			}
			for i := 0; i < 2; i++ { // both slots are free again
				if err := p2.TryEnqueue([]byte("b")); err != nil {
					t.Fatalf("enqueue %d: %v", i, err)
				}
			}
		})
	}
}

// With SHMQ_GO_DEBUG=1 a role handle's view used after its end sees 0xdb
// poison. The variable is read at start, so the test runs itself in a
// child process.
func TestRoleDebugViewsPoison(t *testing.T) {
	if os.Getenv("SHMQ_GO_DEBUG") == "1" {
		roleDebugPoisonChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRoleDebugViewsPoison$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "SHMQ_GO_DEBUG=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("role debug views poisoned")) {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func roleDebugPoisonChild(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(16), shmq.WithCapacity(4), shmq.WithSPSC())
	p, c := mustRoles(t, q)
	poisoned := func(b []byte) bool { return bytes.Equal(b, bytes.Repeat([]byte{0xdb}, len(b))) }
	r, err := p.TryReserve(8)
	if err != nil {
		t.Fatal(err)
	}
	view := r.Bytes()
	copy(view, "abcdefgh")
	if err := r.Commit(8); err != nil {
		t.Fatal(err)
	}
	if !poisoned(view) {
		t.Fatalf("reservation view after Commit: %x, want 0xdb poison", view)
	}
	view[0] = 'X' // a write after Commit changes nothing shared
	msg, err := c.TryConsume()
	if err != nil {
		t.Fatal(err)
	}
	mview := msg.Bytes()
	if string(mview) != "abcdefgh" {
		t.Fatalf("consumed %q, want abcdefgh", mview)
	}
	msg.Release()
	if !poisoned(mview) {
		t.Fatalf("message view after Release: %x, want 0xdb poison", mview)
	}
	if r, err = p.TryReserve(4); err != nil {
		t.Fatal(err)
	}
	view = r.Bytes()
	copy(view, "zzzz")
	r.Cancel()
	if !poisoned(view) {
		t.Fatalf("reservation view after Cancel: %x, want 0xdb poison", view)
	}
	// Close poisons what it ends.
	if r, err = p.TryReserve(4); err != nil {
		t.Fatal(err)
	}
	view = r.Bytes()
	copy(view, "yyyy")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !poisoned(view) {
		t.Fatalf("reservation view after Producer.Close: %x, want 0xdb poison", view)
	}
	t.Log("role debug views poisoned")
}

// The role handles' batches wait: for room (EnqueueBatch), for a first
// message (DequeueBatch), until woken by the other side, a timeout, a
// context or Close.
func TestRoleBatchWait(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			q := mustCreate(t, target(t), append([]shmq.Option{shmq.WithSlotSize(8), shmq.WithCapacity(4)}, m.opts...)...)
			p, c := mustRoles(t, q)
			buf, lens := make([]byte, 64), make([]int, 8)

			// Empty: timeout, context.
			if _, err := c.DequeueBatchTimeout(buf, lens, 20*time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
				t.Fatalf("DequeueBatchTimeout on empty: %v, want ErrTimeout", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, err := c.DequeueBatch(ctx, buf, lens); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("DequeueBatch past its deadline: %v, want DeadlineExceeded", err)
			}
			if _, err := c.DequeueBatch(context.Background(), buf, nil); !errors.Is(err, shmq.ErrInvalidArgument) {
				t.Fatalf("DequeueBatch with no lens: %v, want ErrInvalidArgument", err)
			}

			// A waiting batch dequeue is woken by a batch enqueue.
			msgs := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
			sent := make(chan error, 1)
			go func() {
				time.Sleep(10 * time.Millisecond)
				n, err := p.EnqueueBatchTimeout(msgs, 10*time.Second)
				if err == nil && n != 3 {
					err = fmt.Errorf("enqueued %d of 3", n)
				}
				sent <- err
			}()
			var got []string
			for len(got) < 3 {
				n, err := c.DequeueBatchTimeout(buf, lens, 10*time.Second)
				if err != nil || n < 1 {
					t.Fatalf("DequeueBatchTimeout woken: %d %v", n, err)
				}
				off := 0
				for _, l := range lens[:n] {
					got = append(got, string(buf[off:off+l]))
					off += l
				}
			}
			if err := recv(t, sent, "EnqueueBatchTimeout"); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != "[one two three]" {
				t.Fatalf("dequeued %v, want [one two three]", got)
			}

			// A waiting batch dequeue with a buffer too small for the
			// message that wakes it: the message stays, lens[0] says its length.
			go func() {
				time.Sleep(10 * time.Millisecond)
				sent <- p.TryEnqueue([]byte("eight..."))
			}()
			if _, err := c.DequeueBatch(context.Background(), buf[:3], lens); !errors.Is(err, shmq.ErrBufferTooSmall) || lens[0] != 8 {
				t.Fatalf("DequeueBatch into 3 bytes: %v, lens[0] = %d, want ErrBufferTooSmall and 8", err, lens[0])
			}
			if err := recv(t, sent, "TryEnqueue"); err != nil {
				t.Fatal(err)
			}
			if n, err := c.DequeueBatch(context.Background(), buf, lens); err != nil || n != 1 || string(buf[:lens[0]]) != "eight..." {
				t.Fatalf("DequeueBatch after growing: %d %v", n, err)
			}

			// Full: timeout, context; then woken by a batch dequeue.
			if n, err := p.EnqueueBatch(context.Background(), [][]byte{{1}, {2}, {3}, {4}}); err != nil || n != 4 {
				t.Fatalf("EnqueueBatch into 4 free slots: %d %v", n, err)
			}
			if _, err := p.TryEnqueueBatch([][]byte{{5}}); !errors.Is(err, shmq.ErrFull) {
				t.Fatalf("TryEnqueueBatch on full: %v, want ErrFull", err)
			}
			if _, err := p.EnqueueBatchTimeout([][]byte{{5}}, 20*time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
				t.Fatalf("EnqueueBatchTimeout on full: %v, want ErrTimeout", err)
			}
			ctx3, cancel3 := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel3()
			if _, err := p.EnqueueBatch(ctx3, [][]byte{{5}}); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("EnqueueBatch past its deadline: %v, want DeadlineExceeded", err)
			}
			go func() {
				n, err := p.EnqueueBatch(context.Background(), [][]byte{{5}, {6}, {7}, {8}, {9}})
				if err == nil && n < 1 {
					err = fmt.Errorf("enqueued %d", n)
				}
				sent <- err
			}()
			time.Sleep(10 * time.Millisecond)
			if n, err := c.TryDequeueBatch(buf, lens[:2]); err != nil || n != 2 || buf[0] != 1 || buf[1] != 2 {
				t.Fatalf("TryDequeueBatch of 2: %d %v", n, err)
			}
			if err := recv(t, sent, "EnqueueBatch woken"); err != nil {
				t.Fatal(err)
			}

			// Close interrupts a waiting batch (on a full queue).
			fill(t, p)
			go func() {
				_, err := p.EnqueueBatch(context.Background(), [][]byte{{10}})
				sent <- err
			}()
			time.Sleep(10 * time.Millisecond)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := recv(t, sent, "EnqueueBatch after Close"); !errors.Is(err, shmq.ErrHandleClosed) {
				t.Fatalf("EnqueueBatch interrupted by Close: %v, want ErrHandleClosed", err)
			}
		})
	}
}
