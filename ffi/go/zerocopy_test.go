package shmq_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"shmq.dev/shmq"
)

// Both queue modes, for tests that hold for each.
var modes = []struct {
	name string
	opts []shmq.Option
}{{"mpmc", nil}, {"spsc", []shmq.Option{shmq.WithSPSC()}}}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s did not panic", what)
		}
	}()
	f()
}

func TestReserveCommitConsume(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			q := mustCreate(t, target(t), append([]shmq.Option{shmq.WithSlotSize(32), shmq.WithCapacity(4)}, m.opts...)...)
			r, err := q.TryReserve(10)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Bytes()) != 10 || r.Len() != 10 {
				t.Fatalf("reserved %d bytes, want 10", len(r.Bytes()))
			}
			copy(r.Bytes(), "helloWORLD")
			if err := r.Commit(5); err != nil {
				t.Fatal(err)
			}
			mustPanic(t, "Reservation.Bytes after Commit", func() { r.Bytes() })
			if err := r.Commit(5); !errors.Is(err, shmq.ErrInvalidArgument) {
				t.Fatalf("second Commit: %v, want ErrInvalidArgument", err)
			}
			r.Cancel() // no-op after Commit

			msg, err := q.TryConsume()
			if err != nil {
				t.Fatal(err)
			}
			if string(msg.Bytes()) != "hello" || msg.Len() != 5 {
				t.Fatalf("consumed %q, want hello", msg.Bytes())
			}
			msg.Release()
			msg.Release() // idempotent
			mustPanic(t, "Message.Bytes after Release", func() { msg.Bytes() })
			if _, err := q.TryConsume(); !errors.Is(err, shmq.ErrEmpty) {
				t.Fatalf("TryConsume on empty: %v, want ErrEmpty", err)
			}
			if _, err := q.ConsumeTimeout(20 * time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
				t.Fatalf("ConsumeTimeout on empty: %v, want ErrTimeout", err)
			}

			// Cancel and an oversized Commit publish nothing.
			r, err = q.TryReserve(8)
			if err != nil {
				t.Fatal(err)
			}
			r.Cancel()
			r, err = q.TryReserve(8)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Commit(9); !errors.Is(err, shmq.ErrTooLarge) {
				t.Fatalf("Commit(9) of 8: %v, want ErrTooLarge", err)
			}
			if q.Len() != 0 {
				t.Fatalf("Len %d after Cancel and a failed Commit, want 0", q.Len())
			}
			if _, err := q.TryReserve(33); !errors.Is(err, shmq.ErrTooLarge) {
				t.Fatalf("TryReserve(33) in 32-byte slots: %v, want ErrTooLarge", err)
			}

			// Interplay with the copying calls, and a zero-length message.
			if err := q.TryEnqueue([]byte("copied")); err != nil {
				t.Fatal(err)
			}
			if r, err = q.TryReserve(0); err != nil {
				t.Fatal(err)
			}
			if err := r.Commit(0); err != nil {
				t.Fatal(err)
			}
			if msg, err = q.TryConsume(); err != nil || string(msg.Bytes()) != "copied" {
				t.Fatalf("TryConsume: %v %q, want copied", err, msg.Bytes())
			}
			msg.Release()
			buf := make([]byte, 32)
			if n, err := q.TryDequeue(buf); err != nil || n != 0 {
				t.Fatalf("TryDequeue of the empty message: %d %v", n, err)
			}

			// Full: the reservations themselves hold the slots.
			var rs []*shmq.Reservation
			for i := 0; i < q.Cap(); i++ {
				r, err := q.TryReserve(4)
				if err != nil {
					if m.name == "spsc" && errors.Is(err, shmq.ErrRoleTaken) {
						break // one reservation at a time holds the producer role
					}
					t.Fatalf("reservation %d: %v", i, err)
				}
				rs = append(rs, r)
				if m.name == "spsc" {
					break
				}
			}
			if m.name == "mpmc" {
				if _, err := q.TryReserve(4); !errors.Is(err, shmq.ErrFull) {
					t.Fatalf("TryReserve on full: %v, want ErrFull", err)
				}
				if _, err := q.ReserveTimeout(4, 20*time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
					t.Fatalf("ReserveTimeout on full: %v, want ErrTimeout", err)
				}
			}
			for i, r := range rs {
				r.Bytes()[0] = byte(i)
				if err := r.Commit(1); err != nil {
					t.Fatal(err)
				}
			}
			for i := range rs {
				msg, err := q.ConsumeTimeout(time.Second)
				if err != nil || msg.Bytes()[0] != byte(i) {
					t.Fatalf("message %d: %v", i, err)
				}
				msg.Release()
			}

			// Closed: reserve fails, consume drains then fails.
			if err := q.TryEnqueue([]byte("last")); err != nil {
				t.Fatal(err)
			}
			if err := q.CloseQueue(); err != nil {
				t.Fatal(err)
			}
			if _, err := q.TryReserve(4); !errors.Is(err, shmq.ErrClosed) {
				t.Fatalf("TryReserve on closed: %v, want ErrClosed", err)
			}
			if msg, err = q.TryConsume(); err != nil || string(msg.Bytes()) != "last" {
				t.Fatalf("draining a closed queue: %v", err)
			}
			msg.Release()
			if _, err := q.TryConsume(); !errors.Is(err, shmq.ErrClosed) {
				t.Fatalf("TryConsume on closed and drained: %v, want ErrClosed", err)
			}
		})
	}
}

// A blocked Reserve is woken by a consumer; a blocked Consume by a producer.
func TestReserveConsumeWait(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(16), shmq.WithCapacity(2))
	done := make(chan error, 1)
	go func() {
		m, err := q.ConsumeTimeout(10 * time.Second)
		if err == nil {
			if string(m.Bytes()) != "wake" {
				err = fmt.Errorf("consumed %q", m.Bytes())
			}
			m.Release()
		}
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	r, err := q.ReserveTimeout(4, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	copy(r.Bytes(), "wake")
	if err := r.Commit(4); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("consumer not woken")
	}
}

// Close ends what is still live: the reservation is cancelled (nothing
// published), the message released (its slot free again).
func TestCloseEndsLiveReservationsAndMessages(t *testing.T) {
	tg := target(t)
	q := mustCreate(t, tg, shmq.WithSlotSize(16), shmq.WithCapacity(2))
	if err := q.TryEnqueue([]byte("a")); err != nil {
		t.Fatal(err)
	}
	m, err := q.TryConsume()
	if err != nil {
		t.Fatal(err)
	}
	r, err := q.TryReserve(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(1); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatalf("Commit after Close: %v, want ErrHandleClosed", err)
	}
	m.Release() // no-op: Close released it
	mustPanic(t, "Message.Bytes after Close", func() { m.Bytes() })

	q2, err := shmq.OpenAt(tg)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if _, err := q2.TryDequeue(make([]byte, 16)); !errors.Is(err, shmq.ErrEmpty) {
		t.Fatalf("after Close cancelled the reservation: %v, want ErrEmpty", err)
	}
	for i := 0; i < 2; i++ { // both slots are free again
		if err := q2.TryEnqueue([]byte("b")); err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
	}
}

// With SHMQ_GO_DEBUG=1 a view used after its end sees 0xdb poison. The
// variable is read at start, so the test runs itself in a child process.
func TestDebugViewsPoisonAfterEnd(t *testing.T) {
	if os.Getenv("SHMQ_GO_DEBUG") == "1" {
		debugPoisonChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDebugViewsPoisonAfterEnd$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "SHMQ_GO_DEBUG=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("debug views poisoned")) {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func debugPoisonChild(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(16), shmq.WithCapacity(4))
	r, err := q.TryReserve(8)
	if err != nil {
		t.Fatal(err)
	}
	view := r.Bytes()
	copy(view, "abcdefgh")
	if err := r.Commit(8); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(view, bytes.Repeat([]byte{0xdb}, 8)) {
		t.Fatalf("reservation view after Commit: %x, want 0xdb poison", view)
	}
	view[0] = 'X' // a write after Commit changes nothing shared
	m, err := q.TryConsume()
	if err != nil {
		t.Fatal(err)
	}
	mview := m.Bytes()
	if string(mview) != "abcdefgh" {
		t.Fatalf("consumed %q, want abcdefgh", mview)
	}
	m.Release()
	if !bytes.Equal(mview, bytes.Repeat([]byte{0xdb}, 8)) {
		t.Fatalf("message view after Release: %x, want 0xdb poison", mview)
	}
	mustPanic(t, "Message.Bytes after Release", func() { m.Bytes() })
	r, err = q.TryReserve(4)
	if err != nil {
		t.Fatal(err)
	}
	view = r.Bytes()
	copy(view, "zzzz")
	r.Cancel()
	if !bytes.Equal(view, bytes.Repeat([]byte{0xdb}, 4)) {
		t.Fatalf("reservation view after Cancel: %x, want 0xdb poison", view)
	}
	t.Log("debug views poisoned")
}

func TestEnqueueDequeueBatch(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			q := mustCreate(t, target(t), append([]shmq.Option{shmq.WithSlotSize(16), shmq.WithCapacity(8)}, m.opts...)...)
			buf, lens := make([]byte, 256), make([]int, 16)
			if _, err := q.DequeueBatch(buf, lens); !errors.Is(err, shmq.ErrEmpty) {
				t.Fatalf("DequeueBatch on empty: %v, want ErrEmpty", err)
			}
			if _, err := q.DequeueBatch(buf, nil); !errors.Is(err, shmq.ErrInvalidArgument) {
				t.Fatalf("DequeueBatch with no lens: %v, want ErrInvalidArgument", err)
			}
			if n, err := q.EnqueueBatch(nil); n != 0 || err != nil {
				t.Fatalf("EnqueueBatch(nil): %d %v", n, err)
			}
			msgs := make([][]byte, 11)
			for i := range msgs {
				msgs[i] = []byte(fmt.Sprintf("msg-%d", i))
			}
			n, err := q.EnqueueBatch(msgs)
			if err != nil || n != 8 {
				t.Fatalf("EnqueueBatch of 11 into 8 slots: %d %v, want 8", n, err)
			}
			if _, err := q.EnqueueBatch(msgs[8:]); !errors.Is(err, shmq.ErrFull) {
				t.Fatalf("EnqueueBatch on full: %v, want ErrFull", err)
			}
			if _, err := q.EnqueueBatchTimeout(msgs[8:], 20*time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
				t.Fatalf("EnqueueBatchTimeout on full: %v, want ErrTimeout", err)
			}
			if _, err := q.DequeueBatch(make([]byte, 4), lens); !errors.Is(err, shmq.ErrBufferTooSmall) {
				t.Fatalf("DequeueBatch into 4 bytes: %v, want ErrBufferTooSmall", err)
			}
			// 3 lens: 3 messages; then a buffer for 2 of 5 bytes: 2.
			got := [][]byte{}
			take := func(buf []byte, lens []int) int {
				t.Helper()
				n, err := q.DequeueBatch(buf, lens)
				if err != nil {
					t.Fatal(err)
				}
				off := 0
				for _, l := range lens[:n] {
					got = append(got, append([]byte(nil), buf[off:off+l]...))
					off += l
				}
				return n
			}
			if n := take(buf, lens[:3]); n != 3 {
				t.Fatalf("took %d, want 3", n)
			}
			if n := take(buf[:11], lens); n != 2 {
				t.Fatalf("took %d into 11 bytes, want 2", n)
			}
			if n := take(buf, lens); n != 3 {
				t.Fatalf("took %d, want the 3 left", n)
			}
			for i, g := range got {
				if !bytes.Equal(g, msgs[i]) {
					t.Fatalf("message %d is %q, want %q", i, g, msgs[i])
				}
			}

			// The batch stops before an oversized message; one first fails.
			big := make([]byte, 17)
			if n, err := q.EnqueueBatch([][]byte{msgs[0], big, msgs[1]}); err != nil || n != 1 {
				t.Fatalf("EnqueueBatch with an oversized second: %d %v, want 1", n, err)
			}
			if _, err := q.EnqueueBatch([][]byte{big}); !errors.Is(err, shmq.ErrTooLarge) {
				t.Fatalf("EnqueueBatch of an oversized first: %v, want ErrTooLarge", err)
			}
			if n := take(buf, lens); n != 1 {
				t.Fatalf("took %d, want 1", n)
			}

			if err := q.CloseQueue(); err != nil {
				t.Fatal(err)
			}
			if _, err := q.EnqueueBatch(msgs); !errors.Is(err, shmq.ErrClosed) {
				t.Fatalf("EnqueueBatch on closed: %v, want ErrClosed", err)
			}
			if _, err := q.DequeueBatch(buf, lens); !errors.Is(err, shmq.ErrClosed) {
				t.Fatalf("DequeueBatch on closed and drained: %v, want ErrClosed", err)
			}
		})
	}
}

// Batches of more than 64 (the C helper's stack array) and the waits.
func TestBatchLargeAndWait(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(128))
	msgs := make([][]byte, 100)
	for i := range msgs {
		msgs[i] = []byte{byte(i), byte(i >> 8)}
	}
	if n, err := q.EnqueueBatch(msgs); err != nil || n != 100 {
		t.Fatalf("EnqueueBatch of 100: %d %v", n, err)
	}
	buf, lens := make([]byte, 1024), make([]int, 100)
	n, err := q.DequeueBatchTimeout(buf, lens, time.Second)
	if err != nil || n != 100 {
		t.Fatalf("DequeueBatchTimeout: %d %v, want 100", n, err)
	}
	for i := 0; i < n; i++ {
		if lens[i] != 2 || buf[2*i] != byte(i) {
			t.Fatalf("message %d: len %d first byte %d", i, lens[i], buf[2*i])
		}
	}
	if _, err := q.DequeueBatchTimeout(buf, lens, 20*time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
		t.Fatalf("DequeueBatchTimeout on empty: %v, want ErrTimeout", err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		_, _ = q.EnqueueBatchTimeout(msgs[:3], 10*time.Second)
	}()
	if n, err := q.DequeueBatchTimeout(buf, lens, 10*time.Second); err != nil || n < 1 {
		t.Fatalf("DequeueBatchTimeout woken: %d %v", n, err)
	}
}

// Write a message in place, then read it in place.
func ExampleQueue_TryReserve() {
	q, err := shmq.CreateAt(shmq.Posix(fmt.Sprintf("shmq-example-reserve-%d", os.Getpid())),
		shmq.WithSlotSize(64), shmq.WithCapacity(4))
	if err != nil {
		panic(err)
	}
	defer q.Delete()
	defer q.Close()

	r, err := q.TryReserve(q.SlotSize())
	if err != nil {
		panic(err)
	}
	n := copy(r.Bytes(), "packet 1") // or conn.Read(r.Bytes())
	if err := r.Commit(n); err != nil {
		panic(err)
	}

	m, err := q.TryConsume()
	if err != nil {
		panic(err)
	}
	fmt.Println(string(m.Bytes())) // valid until Release
	m.Release()
	// Output: packet 1
}

// Move several messages per call.
func ExampleQueue_EnqueueBatch() {
	q, err := shmq.CreateAt(shmq.Posix(fmt.Sprintf("shmq-example-batch-%d", os.Getpid())),
		shmq.WithSlotSize(16), shmq.WithCapacity(2))
	if err != nil {
		panic(err)
	}
	defer q.Delete()
	defer q.Close()

	n, err := q.EnqueueBatch([][]byte{[]byte("a"), []byte("bb"), []byte("ccc")})
	fmt.Println(n, err) // 2 slots: the third stays with the caller

	buf, lens := make([]byte, 64), make([]int, 8)
	n, err = q.DequeueBatch(buf, lens)
	off := 0
	for _, l := range lens[:n] {
		fmt.Printf("%q ", buf[off:off+l])
		off += l
	}
	fmt.Println(err)
	// Output:
	// 2 <nil>
	// "a" "bb" <nil>
}
