package shmq_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"shmq.dev/shmq"
)

func init() {
	// roleproduce: a = target, count. Takes the producer role of the queue
	// and enqueues count numbered messages, then closes the queue.
	moreRoles["roleproduce"] = func(a []string) int {
		q, err := shmq.OpenAt(shmq.Target(a[0]))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer q.Close()
		p, err := q.Producer()
		if err != nil {
			fmt.Fprintln(os.Stderr, "roleproduce:", err)
			return 1
		}
		defer p.Close()
		var count uint32
		fmt.Sscan(a[1], &count)
		msg := make([]byte, 4)
		for i := uint32(0); i < count; i++ {
			binary.LittleEndian.PutUint32(msg, i)
			if err := p.EnqueueTimeout(msg, 30*time.Second); err != nil {
				fmt.Fprintln(os.Stderr, "roleproduce:", err)
				return 1
			}
		}
		if err := p.CloseQueue(); err != nil {
			fmt.Fprintln(os.Stderr, "roleproduce:", err)
			return 1
		}
		return 0
	}
	// roletaken: a = target. Exits 0 if the producer role is refused with
	// ErrRoleTaken (the parent holds it).
	moreRoles["roletaken"] = func(a []string) int {
		q, err := shmq.OpenAt(shmq.Target(a[0]))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer q.Close()
		p, err := q.Producer()
		if !errors.Is(err, shmq.ErrRoleTaken) {
			fmt.Fprintln(os.Stderr, "roletaken: got", p, err)
			return 1
		}
		return 0
	}
}

func TestRoleHandles(t *testing.T) {
	tg := target(t)
	q := mustCreate(t, tg, shmq.WithSlotSize(16), shmq.WithCapacity(4), shmq.WithSPSC())
	p, err := q.Producer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// A second taker of either role is refused, with a *shmq.Error that
	// says which call and where.
	if _, err := q.Producer(); !errors.Is(err, shmq.ErrRoleTaken) {
		t.Fatalf("second producer: %v", err)
	} else {
		var e *shmq.Error
		if !errors.As(err, &e) || e.Op != "producer" || e.Target != tg || e.Msg == "" {
			t.Fatalf("second producer: %#v", err)
		}
	}
	if _, err := q.Consumer(); !errors.Is(err, shmq.ErrRoleTaken) {
		t.Fatalf("second consumer: %v", err)
	}
	// The queue handle cannot take a role behind their back.
	if err := q.TryEnqueue([]byte("x")); !errors.Is(err, shmq.ErrRoleTaken) {
		t.Fatalf("queue enqueue: %v", err)
	}
	// Nor can another process.
	waitExit(t, spawn(t, "roletaken", string(tg)), time.Minute)

	if p.Target() != tg || c.Target() != tg || p.SlotSize() != 16 || c.SlotSize() != 16 {
		t.Fatal("target or slot size")
	}
	if err := p.TryEnqueue([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := p.EnqueueTimeout([]byte("two"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Enqueue(context.Background(), []byte("three")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	for _, want := range []string{"one", "two", "three"} {
		n, err := c.DequeueTimeout(buf, time.Second)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
	if _, err := c.TryDequeue(buf); !errors.Is(err, shmq.ErrEmpty) {
		t.Fatalf("empty: %v", err)
	}
	if err := p.TryEnqueue(make([]byte, 17)); !errors.Is(err, shmq.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}

	// Close releases the role: it can be taken again.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.TryEnqueue([]byte("x")); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatalf("enqueue after Close: %v", err)
	}
	p2, err := q.Producer()
	if err != nil {
		t.Fatalf("producer after Close: %v", err)
	}
	defer p2.Close()
	if err := p2.CloseQueue(); err != nil {
		t.Fatal(err)
	}
	if err := p2.TryEnqueue([]byte("x")); !errors.Is(err, shmq.ErrClosed) {
		t.Fatalf("enqueue on a closed queue: %v", err)
	}
	if _, err := c.TryDequeue(buf); !errors.Is(err, shmq.ErrClosed) {
		t.Fatalf("dequeue on a closed queue: %v", err)
	}
}

// Role handles attach through the target: after Delete there is nothing to
// attach to.
func TestRoleHandleAfterDelete(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSPSC())
	if err := q.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Producer(); !errors.Is(err, shmq.ErrNotFound) {
		t.Fatalf("producer after Delete: %v", err)
	}
	q.Close()
	if _, err := q.Consumer(); !errors.Is(err, shmq.ErrHandleClosed) {
		t.Fatalf("consumer after Close: %v", err)
	}
}

// On a multi-producer queue role handles are not exclusive.
func TestRoleHandlesOnMPMC(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(64))
	var ps []*shmq.Producer
	for i := 0; i < 2; i++ {
		p, err := q.Producer()
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ps = append(ps, p)
	}
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Goroutines share one producer handle; they take turns.
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(p *shmq.Producer) {
			defer wg.Done()
			for i := 0; i < 8; i++ {
				if err := p.EnqueueTimeout([]byte{byte(i)}, 10*time.Second); err != nil {
					t.Error(err)
					return
				}
			}
		}(ps[g%2])
	}
	wg.Wait()
	buf := make([]byte, 8)
	for i := 0; i < 32; i++ {
		if _, err := c.DequeueTimeout(buf, 10*time.Second); err != nil {
			t.Fatal(i, err)
		}
	}
	if q.Len() != 0 {
		t.Fatalf("%d left", q.Len())
	}
}

// ErrBufferTooSmall comes with the length the message needs; the message
// stays queued.
func TestBufferTooSmallSaysHowMuch(t *testing.T) {
	for _, spsc := range []bool{false, true} {
		opts := []shmq.Option{shmq.WithSlotSize(32), shmq.WithCapacity(4)}
		if spsc {
			opts = append(opts, shmq.WithSPSC())
		}
		q := mustCreate(t, target(t), opts...)
		c, err := q.Consumer()
		if err != nil {
			t.Fatal(err)
		}
		p, err := q.Producer()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.TryEnqueue([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
		small := make([]byte, 3)
		if !spsc { // (on an SPSC queue c holds the consumer role)
			if n, err := q.TryDequeue(small); !errors.Is(err, shmq.ErrBufferTooSmall) || n != 10 {
				t.Fatalf("Queue.TryDequeue: %d, %v; want 10, ErrBufferTooSmall", n, err)
			}
		}
		if n, err := c.TryDequeue(small); !errors.Is(err, shmq.ErrBufferTooSmall) || n != 10 {
			t.Fatalf("TryDequeue: %d, %v; want 10, ErrBufferTooSmall", n, err)
		}
		if n, err := c.DequeueTimeout(small, time.Second); !errors.Is(err, shmq.ErrBufferTooSmall) || n != 10 {
			t.Fatalf("DequeueTimeout: %d, %v; want 10, ErrBufferTooSmall", n, err)
		}
		n, err := c.TryDequeue(make([]byte, 10))
		if err != nil || n != 10 {
			t.Fatal(n, err)
		}
		if n, err := c.TryDequeue(small); !errors.Is(err, shmq.ErrEmpty) || n != 0 {
			t.Fatalf("empty: %d, %v", n, err)
		}
		p.Close()
		c.Close()
	}
}

// A producer in another process feeds a consumer here, through role handles.
func TestRoleHandlesAcrossProcesses(t *testing.T) {
	tg := target(t)
	q := mustCreate(t, tg, shmq.WithSlotSize(8), shmq.WithCapacity(64), shmq.WithSPSC())
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const count = 5000
	child := spawn(t, "roleproduce", string(tg), fmt.Sprint(count))
	buf := make([]byte, 8)
	var want uint32
	for {
		n, err := c.DequeueTimeout(buf, 30*time.Second)
		if errors.Is(err, shmq.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := binary.LittleEndian.Uint32(buf[:n]); n != 4 || got != want {
			t.Fatalf("message %d: %d bytes, %d", want, n, got)
		}
		want++
	}
	if want != count {
		t.Fatalf("received %d of %d", want, count)
	}
	waitExit(t, child, time.Minute)
}

// Close interrupts a blocked call; a context cancels one.
func TestRoleHandlesBlockAndCancel(t *testing.T) {
	q := mustCreate(t, target(t), shmq.WithSlotSize(8), shmq.WithCapacity(2), shmq.WithSPSC())
	p, err := q.Producer()
	if err != nil {
		t.Fatal(err)
	}
	c, err := q.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Dequeue(ctx, make([]byte, 8)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled dequeue: %v", err)
	}
	if _, err := c.DequeueTimeout(make([]byte, 8), 10*time.Millisecond); !errors.Is(err, shmq.ErrTimeout) {
		t.Fatalf("dequeue timeout: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := p.TryEnqueue([]byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.TryEnqueue([]byte{1}); !errors.Is(err, shmq.ErrFull) {
		t.Fatalf("full: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Enqueue(context.Background(), []byte{2}) }()
	time.Sleep(20 * time.Millisecond) // let it block (the result is the same if it has not yet)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, shmq.ErrHandleClosed) {
			t.Fatalf("blocked enqueue after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not interrupt a blocked Enqueue")
	}
}

// The package's errors work with errors.Is and errors.As.
func TestErrorsIsAndAs(t *testing.T) {
	tg := target(t)
	_, err := shmq.OpenAt(tg)
	var e *shmq.Error
	if !errors.Is(err, shmq.ErrNotFound) || !errors.As(err, &e) {
		t.Fatalf("open: %#v", err)
	}
	if e.Op != "open" || e.Target != tg || e.Msg == "" || errors.Unwrap(e) != shmq.ErrNotFound {
		t.Fatalf("open: %#v", e)
	}
	if errors.Is(err, shmq.ErrAlreadyExists) {
		t.Fatal("ErrNotFound is ErrAlreadyExists")
	}
	// The names shqueue-go used are the same sentinels.
	if !errors.Is(err, shmq.ErrNotExist) {
		t.Fatal("ErrNotExist")
	}
	q := mustCreate(t, tg)
	if _, err := shmq.CreateAt(tg); !errors.Is(err, shmq.ErrAlreadyExists) || !errors.As(err, &e) || e.Op != "create" {
		t.Fatalf("create twice: %v", err)
	}
	// Operation errors are the sentinels themselves, also when wrapped.
	err = q.TryEnqueue(make([]byte, q.SlotSize()+1))
	if err != shmq.ErrTooLarge || !errors.Is(fmt.Errorf("send: %w", err), shmq.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	// A lagged receive is a *LaggedError that says how many were lost.
	lg, err := shmq.CreateLog(target(t), shmq.WithSlotSize(8), shmq.WithCapacity(2))
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	sub, err := lg.Subscribe(shmq.StartOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := 0; i < 5; i++ {
		if _, err := lg.Publish([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = sub.TryRecv(make([]byte, 8))
	var lagged *shmq.LaggedError
	if !errors.Is(err, shmq.ErrLagged) || !errors.As(err, &lagged) || lagged.Missed != 3 {
		t.Fatalf("lagged: %v", err)
	}
}

// Batches through role handles: one call for several messages.
func TestRoleHandleBatches(t *testing.T) {
	for _, spsc := range []bool{false, true} {
		opts := []shmq.Option{shmq.WithSlotSize(8), shmq.WithCapacity(4)}
		if spsc {
			opts = append(opts, shmq.WithSPSC())
		}
		q := mustCreate(t, target(t), opts...)
		p, err := q.Producer()
		if err != nil {
			t.Fatal(err)
		}
		c, err := q.Consumer()
		if err != nil {
			t.Fatal(err)
		}
		n, err := p.TryEnqueueBatch([][]byte{[]byte("a"), []byte("bb"), []byte("ccc"), []byte("dddd"), []byte("e")})
		if err != nil || n != 4 { // 4 slots
			t.Fatalf("enqueue batch: %d, %v", n, err)
		}
		if n, err := p.TryEnqueueBatch(nil); n != 0 || err != nil {
			t.Fatalf("empty batch: %d, %v", n, err)
		}
		if _, err := p.TryEnqueueBatch([][]byte{[]byte("x")}); !errors.Is(err, shmq.ErrFull) {
			t.Fatalf("full: %v", err)
		}
		lens := make([]int, 8)
		if _, err := c.TryDequeueBatch(make([]byte, 0), lens); !errors.Is(err, shmq.ErrBufferTooSmall) || lens[0] != 1 {
			t.Fatalf("too small: %v, lens[0] = %d", err, lens[0])
		}
		buf := make([]byte, 6)
		n, err = c.TryDequeueBatch(buf, lens)
		if err != nil || n != 3 || string(buf) != "abbccc" || lens[0] != 1 || lens[1] != 2 || lens[2] != 3 {
			t.Fatalf("dequeue batch: %d, %v, %q, %v", n, err, buf, lens[:n])
		}
		if _, err := c.TryDequeueBatch(buf, nil); !errors.Is(err, shmq.ErrInvalidArgument) {
			t.Fatalf("no lens: %v", err)
		}
		n, err = c.TryDequeueBatch(buf, lens)
		if err != nil || n != 1 || string(buf[:4]) != "dddd" {
			t.Fatalf("rest: %d, %v", n, err)
		}
		if _, err := c.TryDequeueBatch(buf, lens); !errors.Is(err, shmq.ErrEmpty) {
			t.Fatalf("empty: %v", err)
		}
		p.Close()
		c.Close()
		if _, err := p.TryEnqueueBatch([][]byte{[]byte("x")}); !errors.Is(err, shmq.ErrHandleClosed) {
			t.Fatalf("after Close: %v", err)
		}
	}
}

// TryEnqueue + TryDequeue of 64 bytes on a single-producer/single-consumer
// queue, one goroutine: through the Queue handle (a role lock per call in
// the library) and through Producer/Consumer handles (none). Rounds of 1024
// enqueues then 1024 dequeues, as BenchmarkTryPair.
func BenchmarkSPSCTryPair(b *testing.B) {
	for _, roles := range []bool{false, true} {
		name := "queue"
		if roles {
			name = "roles"
		}
		b.Run(name, func(b *testing.B) {
			q := mustCreate(b, target(b), shmq.WithSlotSize(64), shmq.WithCapacity(1024), shmq.WithSPSC())
			enqueue, dequeue := q.TryEnqueue, q.TryDequeue
			if roles {
				p, err := q.Producer()
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				c, err := q.Consumer()
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				enqueue, dequeue = p.TryEnqueue, c.TryDequeue
			}
			msg, buf := make([]byte, 64), make([]byte, 64)
			b.ResetTimer()
			for i := 0; i < b.N; i += 1024 {
				k := 1024
				if b.N-i < k {
					k = b.N - i
				}
				for j := 0; j < k; j++ {
					if err := enqueue(msg); err != nil {
						b.Fatal(err)
					}
				}
				for j := 0; j < k; j++ {
					if _, err := dequeue(buf); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
