package shmq_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"syscall"
	"testing"
	"time"

	"shmq.dev/shmq"
)

// benchPairs times enqueue and dequeue separately, in rounds of up to 1024
// enqueues then as many dequeues (as ffi/c/bench_try.c and
// benches/ffi_overhead.rs do); ns/op is one enqueue plus one dequeue.
func benchPairs(b *testing.B, enqueue func(q *shmq.Queue, msg []byte) error,
	dequeue func(q *shmq.Queue, buf []byte) error) {
	q := mustCreate(b, target(b), shmq.WithSlotSize(64), shmq.WithCapacity(1024))
	benchPairsWith(b, 64, func(msg []byte) error { return enqueue(q, msg) },
		func(buf []byte) error { return dequeue(q, buf) })
}

// benchPairsWith is benchPairs with messages of size bytes, through calls
// on a queue of 1024 slots made by the caller.
func benchPairsWith(b *testing.B, size int, enqueue func(msg []byte) error, dequeue func(buf []byte) error) {
	msg, buf := make([]byte, size), make([]byte, size)
	var enq, deq time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i += 1024 {
		k := 1024
		if b.N-i < k {
			k = b.N - i
		}
		t0 := time.Now()
		for j := 0; j < k; j++ {
			if err := enqueue(msg); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for j := 0; j < k; j++ {
			if err := dequeue(buf); err != nil {
				b.Fatal(err)
			}
		}
		enq += t1.Sub(t0)
		deq += time.Since(t1)
	}
	b.ReportMetric(float64(enq.Nanoseconds())/float64(b.N), "enq-ns/op")
	b.ReportMetric(float64(deq.Nanoseconds())/float64(b.N), "deq-ns/op")
}

// TryEnqueue + TryDequeue of 64 bytes, one goroutine.
func BenchmarkTryPair(b *testing.B) {
	benchPairs(b, (*shmq.Queue).TryEnqueue, func(q *shmq.Queue, buf []byte) error {
		_, err := q.TryDequeue(buf)
		return err
	})
}

// The seed's EnqueueTry + DequeueTry (bool results).
func BenchmarkSeedTryPair(b *testing.B) {
	benchPairs(b, func(q *shmq.Queue, msg []byte) error {
		if !q.EnqueueTry(msg) {
			return shmq.ErrFull
		}
		return nil
	}, func(q *shmq.Queue, buf []byte) error {
		if !q.DequeueTry(buf) {
			return shmq.ErrEmpty
		}
		return nil
	})
}

// EnqueueBlock + DequeueBlock when they need not wait (their fast path).
func BenchmarkBlockPair(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchPairs(b, func(q *shmq.Queue, msg []byte) error { return q.EnqueueBlock(ctx, msg) },
		func(q *shmq.Queue, buf []byte) error { return q.DequeueBlock(ctx, buf) })
}

// EnqueueBlock in one goroutine, DequeueBlock in another: messages per op.
func BenchmarkBlockHandoff(b *testing.B) {
	q := mustCreate(b, target(b), shmq.WithSlotSize(64), shmq.WithCapacity(1024))
	ctx := context.Background()
	done := make(chan error, 1)
	b.ResetTimer()
	go func() {
		msg := make([]byte, 64)
		for i := 0; i < b.N; i++ {
			if err := q.EnqueueBlock(ctx, msg); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	buf := make([]byte, 64)
	for i := 0; i < b.N; i++ {
		if err := q.DequeueBlock(ctx, buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// One-way latency between two Go processes: this one sends a 64-byte
// message on a ping queue, a child process echoes it on a pong queue.
// ns/op is the round trip; one-way-ns is half of it (mean), p50/p99 of the
// one-way time too.
func BenchmarkPingPongProcesses(b *testing.B) {
	ping := mustCreate(b, target(b), shmq.WithSlotSize(64), shmq.WithCapacity(2))
	pong := mustCreate(b, target(b), shmq.WithSlotSize(64), shmq.WithCapacity(2))
	child := spawn(b, "echo", string(ping.Target()), string(pong.Target()))
	msg, buf := make([]byte, 64), make([]byte, 64)
	ctx := context.Background()
	for i := 0; i < 1000; i++ { // warm up (and wait for the child)
		if err := ping.EnqueueBlock(ctx, msg); err != nil {
			b.Fatal(err)
		}
		if _, err := pong.DequeueTimeout(buf, 30*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	rtt := make([]time.Duration, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := ping.EnqueueBlock(ctx, msg); err != nil {
			b.Fatal(err)
		}
		if _, err := pong.Dequeue(ctx, buf); err != nil {
			b.Fatal(err)
		}
		rtt[i] = time.Since(t0)
	}
	total := time.Since(start)
	b.StopTimer()
	sort.Slice(rtt, func(i, j int) bool { return rtt[i] < rtt[j] })
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/2, "one-way-ns")
	b.ReportMetric(float64(rtt[b.N/2].Nanoseconds())/2, "p50-one-way-ns")
	b.ReportMetric(float64(rtt[b.N*99/100].Nanoseconds())/2, "p99-one-way-ns")
	ping.CloseQueue()
	waitExit(b, child, 30*time.Second)
}

// How long a blocked DequeueBlock takes to return after its context is
// cancelled (µs, mean and max over the iterations).
func BenchmarkCancelLatency(b *testing.B) {
	q := mustCreate(b, target(b), shmq.WithSlotSize(64), shmq.WithCapacity(2))
	buf := make([]byte, 64)
	var sum, worst time.Duration
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := make(chan time.Time, 1)
		go func(i int) {
			// Well into the kernel wait, at varying points of a sleep slice.
			time.Sleep(2*time.Millisecond + time.Duration(i%10)*100*time.Microsecond)
			cancelled <- time.Now()
			cancel()
		}(i)
		err := q.DequeueBlock(ctx, buf)
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

func ExampleQueue_TryDequeue() {
	q, err := shmq.CreateAt(shmq.Posix(fmt.Sprintf("shmq-example-try-%d", os.Getpid())),
		shmq.WithSlotSize(16), shmq.WithCapacity(4))
	if err != nil {
		panic(err)
	}
	defer q.Delete()
	defer q.Close()
	q.TryEnqueue([]byte("tick"))
	buf := make([]byte, q.SlotSize())
	n, err := q.TryDequeue(buf)
	fmt.Println(string(buf[:n]), err)
	_, err = q.TryDequeue(buf)
	fmt.Println(err)
	// Output:
	// tick <nil>
	// shmq: queue is empty
}

// CPU spent by a goroutine blocked on an empty queue, in % of one core
// (process-wide rusage over each 500 ms wait: run it alone). "ctx" waits
// with a cancellable context (2 ms sleep slices), "timeout" without one.
func BenchmarkIdleWait(b *testing.B) {
	for _, cancellable := range []bool{true, false} {
		name := "timeout"
		if cancellable {
			name = "ctx"
		}
		b.Run(name, func(b *testing.B) {
			q := mustCreate(b, target(b), shmq.WithSlotSize(64), shmq.WithCapacity(2))
			buf := make([]byte, 64)
			var cpu, wall time.Duration
			for i := 0; i < b.N; i++ {
				var before, after syscall.Rusage
				syscall.Getrusage(syscall.RUSAGE_SELF, &before)
				start := time.Now()
				var err error
				if cancellable {
					ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
					_, err = q.Dequeue(ctx, buf)
					cancel()
				} else {
					_, err = q.DequeueTimeout(buf, 500*time.Millisecond)
				}
				if err != context.DeadlineExceeded && err != shmq.ErrTimeout {
					b.Fatal(err)
				}
				wall += time.Since(start)
				syscall.Getrusage(syscall.RUSAGE_SELF, &after)
				cpu += time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
			}
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
		})
	}
}

// The floor under every call: one cgo round trip to a C function that does
// nothing but return a static string's address.
func BenchmarkCgoFloor(b *testing.B) {
	for i := 0; i < b.N; i++ {
		shmq.VersionPtr()
	}
}

// spscHandoff moves b.N 64-byte messages from a producer goroutine to this
// one through an SPSC queue, with send and recv each moving up to 32
// messages per call; it reports msgs/s.
func spscHandoff(b *testing.B, send func(q *shmq.Queue, msgs [][]byte) (int, error),
	recv func(q *shmq.Queue, buf []byte, lens []int) (int, error)) {
	spscHandoffSize(b, 64, send, recv)
}

// spscHandoffSize is spscHandoff with messages of size bytes.
func spscHandoffSize(b *testing.B, size int, send func(q *shmq.Queue, msgs [][]byte) (int, error),
	recv func(q *shmq.Queue, buf []byte, lens []int) (int, error)) {
	q := mustCreate(b, target(b), shmq.WithSlotSize(size), shmq.WithCapacity(1024), shmq.WithSPSC())
	batch := make([][]byte, 32)
	for i := range batch {
		batch[i] = make([]byte, size)
	}
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() {
		for sent := 0; sent < b.N; {
			k := b.N - sent
			if k > len(batch) {
				k = len(batch)
			}
			n, err := send(q, batch[:k])
			if err != nil {
				done <- err
				return
			}
			sent += n
		}
		done <- nil
	}()
	buf, lens := make([]byte, size*32), make([]int, 32)
	for got := 0; got < b.N; {
		n, err := recv(q, buf, lens)
		if err != nil {
			b.Fatal(err)
		}
		got += n
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// 64-byte SPSC, one message per call (EnqueueTimeout/DequeueTimeout): the
// baseline of BenchmarkBatch64.
func BenchmarkSingle64(b *testing.B) {
	spscHandoff(b, func(q *shmq.Queue, msgs [][]byte) (int, error) {
		return 1, q.EnqueueTimeout(msgs[0], 30*time.Second)
	}, func(q *shmq.Queue, buf []byte, lens []int) (int, error) {
		_, err := q.DequeueTimeout(buf[:64], 30*time.Second)
		return 1, err
	})
}

// 64-byte SPSC, batches of 32 (EnqueueBatchTimeout/DequeueBatchTimeout: one
// cgo crossing per batch on each side).
func BenchmarkBatch64(b *testing.B) {
	spscHandoff(b, func(q *shmq.Queue, msgs [][]byte) (int, error) {
		return q.EnqueueBatchTimeout(msgs, 30*time.Second)
	}, func(q *shmq.Queue, buf []byte, lens []int) (int, error) {
		return q.DequeueBatchTimeout(buf, lens, 30*time.Second)
	})
}

// 64-byte SPSC, batches of 32 through the role handles
// (Producer.EnqueueBatchTimeout / Consumer.DequeueBatchTimeout): the
// lock-free path, with no role lease per call as a Queue handle takes.
func BenchmarkRoleBatch64(b *testing.B) {
	var p *shmq.Producer
	var c *shmq.Consumer
	defer func() {
		if p != nil {
			p.Close()
		}
		if c != nil {
			c.Close()
		}
	}()
	spscHandoff(b, func(q *shmq.Queue, msgs [][]byte) (int, error) {
		if p == nil {
			var err error
			if p, err = q.Producer(); err != nil {
				return 0, err
			}
		}
		return p.EnqueueBatchTimeout(msgs, 30*time.Second)
	}, func(q *shmq.Queue, buf []byte, lens []int) (int, error) {
		if c == nil {
			var err error
			if c, err = q.Consumer(); err != nil {
				return 0, err
			}
		}
		return c.DequeueBatchTimeout(buf, lens, 30*time.Second)
	})
}

// 64-byte SPSC, zero-copy: Reserve+Commit and Consume+Release per message.
func BenchmarkZeroCopy64(b *testing.B) {
	spscHandoff(b, func(q *shmq.Queue, msgs [][]byte) (int, error) {
		r, err := q.ReserveTimeout(64, 30*time.Second)
		if err != nil {
			return 0, err
		}
		copy(r.Bytes(), msgs[0])
		return 1, r.Commit(64)
	}, func(q *shmq.Queue, buf []byte, lens []int) (int, error) {
		m, err := q.ConsumeTimeout(30 * time.Second)
		if err != nil {
			return 0, err
		}
		m.Release()
		return 1, nil
	})
}

// 4096-byte SPSC, one copying call per message on each side: the baseline
// of BenchmarkZeroCopy4K.
func BenchmarkSingle4K(b *testing.B) {
	spscHandoffSize(b, 4096, func(q *shmq.Queue, msgs [][]byte) (int, error) {
		return 1, q.EnqueueTimeout(msgs[0], 30*time.Second)
	}, func(q *shmq.Queue, buf []byte, lens []int) (int, error) {
		_, err := q.DequeueTimeout(buf[:4096], 30*time.Second)
		return 1, err
	})
}

// 4096-byte SPSC, zero-copy: the producer writes the slot in place, the
// consumer reads it in place (sums one byte per 64 to touch every line).
func BenchmarkZeroCopy4K(b *testing.B) {
	spscHandoffSize(b, 4096, func(q *shmq.Queue, msgs [][]byte) (int, error) {
		r, err := q.ReserveTimeout(4096, 30*time.Second)
		if err != nil {
			return 0, err
		}
		copy(r.Bytes(), msgs[0])
		return 1, r.Commit(4096)
	}, func(q *shmq.Queue, buf []byte, lens []int) (int, error) {
		m, err := q.ConsumeTimeout(30 * time.Second)
		if err != nil {
			return 0, err
		}
		var sum byte
		p := m.Bytes()
		for i := 0; i < len(p); i += 64 {
			sum += p[i]
		}
		buf[0] = sum
		m.Release()
		return 1, nil
	})
}

// TryReserve+Commit and TryConsume+Release of 64 bytes, one goroutine (as
// BenchmarkTryPair): the per-call cost of the zero-copy calls.
func BenchmarkZeroCopyPair(b *testing.B) {
	benchPairs(b, func(q *shmq.Queue, msg []byte) error {
		r, err := q.TryReserve(len(msg))
		if err != nil {
			return err
		}
		copy(r.Bytes(), msg)
		return r.Commit(len(msg))
	}, func(q *shmq.Queue, buf []byte) error {
		m, err := q.TryConsume()
		if err != nil {
			return err
		}
		copy(buf, m.Bytes())
		m.Release()
		return nil
	})
}

// The role handles of an SPSC queue (no lock in the library), one
// goroutine, 64 and 4096 bytes, as BenchmarkTryPair: "copy" is TryEnqueue
// + TryDequeue, "zerocopy" TryReserve + Commit and TryConsume + Release,
// the producer writing its message into the slot and the consumer reading
// it out, as the copying calls do.
func BenchmarkRoleReserveCommit(b *testing.B) {
	for _, c := range []struct {
		size int
		zc   bool
	}{{64, false}, {64, true}, {4096, false}, {4096, true}} {
		name := fmt.Sprintf("copy-%d", c.size)
		if c.zc {
			name = fmt.Sprintf("zerocopy-%d", c.size)
		}
		size, zc := c.size, c.zc
		b.Run(name, func(b *testing.B) {
			q := mustCreate(b, target(b), shmq.WithSlotSize(size), shmq.WithCapacity(1024), shmq.WithSPSC())
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
			if !zc {
				benchPairsWith(b, size, p.TryEnqueue, func(buf []byte) error {
					_, err := c.TryDequeue(buf)
					return err
				})
				return
			}
			benchPairsWith(b, size, func(msg []byte) error {
				r, err := p.TryReserve(len(msg))
				if err != nil {
					return err
				}
				copy(r.Bytes(), msg)
				return r.Commit(len(msg))
			}, func(buf []byte) error {
				m, err := c.TryConsume()
				if err != nil {
					return err
				}
				copy(buf, m.Bytes())
				m.Release()
				return nil
			})
		})
	}
}
