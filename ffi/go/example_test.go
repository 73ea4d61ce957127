package shmq_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"shmq.dev/shmq"
)

// Create a queue, enqueue and dequeue. Another process would OpenAt the
// same target.
func ExampleCreateAt() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-create-%d", os.Getpid()))
	q, err := shmq.CreateAt(target, shmq.WithSlotSize(64), shmq.WithCapacity(16))
	if err != nil {
		panic(err)
	}
	defer q.Delete() // remove the name...
	defer q.Close()  // ...after detaching (defers run last first)

	for _, m := range []string{"first", "second"} {
		if err := q.TryEnqueue([]byte(m)); err != nil {
			panic(err)
		}
	}
	buf := make([]byte, q.SlotSize()) // always large enough
	for {
		n, err := q.TryDequeue(buf)
		if errors.Is(err, shmq.ErrEmpty) {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Println(string(buf[:n]))
	}
	// Output:
	// first
	// second
}

// The producer and consumer ends of a single-producer/single-consumer
// queue: each holds its role until Close, and enqueues and dequeues take no
// lock in the library. A second producer is refused.
func ExampleQueue_Producer() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-roles-%d", os.Getpid()))
	q, err := shmq.CreateAt(target, shmq.WithSlotSize(64), shmq.WithCapacity(16), shmq.WithSPSC())
	if err != nil {
		panic(err)
	}
	defer q.Delete()
	defer q.Close()

	producer, err := q.Producer() // in a real program: in the producing process
	if err != nil {
		panic(err)
	}
	defer producer.Close() // releases the role
	consumer, err := q.Consumer()
	if err != nil {
		panic(err)
	}
	defer consumer.Close()

	_, err = q.Producer()
	fmt.Println("second producer:", errors.Is(err, shmq.ErrRoleTaken))

	go func() {
		for i := 1; i <= 3; i++ {
			if err := producer.EnqueueTimeout([]byte(fmt.Sprint("tick ", i)), time.Second); err != nil {
				panic(err)
			}
		}
		producer.CloseQueue() // no more messages: the consumer drains, then gets ErrClosed
	}()
	buf := make([]byte, consumer.SlotSize())
	for {
		n, err := consumer.Dequeue(context.Background(), buf)
		if errors.Is(err, shmq.ErrClosed) {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Println(string(buf[:n]))
	}
	// Output:
	// second producer: true
	// tick 1
	// tick 2
	// tick 3
}

// A buffer too small leaves the message queued and says how long it is.
func ExampleConsumer_TryDequeue() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-grow-%d", os.Getpid()))
	q, err := shmq.CreateAt(target, shmq.WithSlotSize(1024), shmq.WithCapacity(4))
	if err != nil {
		panic(err)
	}
	defer q.Delete()
	defer q.Close()
	consumer, err := q.Consumer()
	if err != nil {
		panic(err)
	}
	defer consumer.Close()

	q.TryEnqueue([]byte("a message of 27 bytes, here"))
	buf := make([]byte, 8)
	n, err := consumer.TryDequeue(buf)
	if errors.Is(err, shmq.ErrBufferTooSmall) {
		fmt.Println("needs", n, "bytes")
		buf = make([]byte, n)
		n, err = consumer.TryDequeue(buf)
	}
	fmt.Printf("%q %v\n", buf[:n], err)
	// Output:
	// needs 27 bytes
	// "a message of 27 bytes, here" <nil>
}

// A fan-out log: every subscriber reads every message. A named cursor
// remembers where its reader got to, across restarts.
func ExampleLog_SubscribeNamed() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-named-%d", os.Getpid()))
	log, err := shmq.CreateLog(target, shmq.WithSlotSize(64), shmq.WithCapacity(16), shmq.WithReliable())
	if err != nil {
		panic(err)
	}
	defer log.Delete()
	defer log.Close()

	if err := log.CreateCursor("audit", shmq.StartOldest); err != nil { // gates publishers from now on
		panic(err)
	}
	for _, m := range []string{"open", "write", "close"} {
		if _, err := log.Publish([]byte(m)); err != nil {
			panic(err)
		}
	}
	buf := make([]byte, log.SlotSize())

	sub, err := log.SubscribeNamed("audit", shmq.StartOldest)
	if err != nil {
		panic(err)
	}
	n, _ := sub.TryRecv(buf)
	fmt.Println("read", string(buf[:n]))
	sub.Commit() // "open" is done with
	sub.Close()

	sub, err = log.SubscribeNamed("audit", shmq.StartOldest) // e.g. after a restart
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	for {
		n, err := sub.TryRecv(buf)
		if errors.Is(err, shmq.ErrEmpty) {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Println("resumed", string(buf[:n]))
	}
	// Output:
	// read open
	// resumed write
	// resumed close
}

// The publishing end of a single-publisher log: it holds the publisher
// role until Close, and a publish through it executes no locked
// instruction in the library. A second publisher is refused.
func ExampleLog_Publisher() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-publisher-%d", os.Getpid()))
	log, err := shmq.CreateLog(target, shmq.WithSlotSize(64), shmq.WithCapacity(16), shmq.WithSinglePublisher())
	if err != nil {
		panic(err)
	}
	defer log.Delete()
	defer log.Close()
	sub, err := log.Subscribe(shmq.StartLatest) // in a real program: in the subscribing process
	if err != nil {
		panic(err)
	}
	defer sub.Close()

	publisher, err := log.Publisher() // in a real program: in the publishing process
	if err != nil {
		panic(err)
	}
	defer publisher.Close() // gives the role back

	_, err = log.Publisher()
	fmt.Println("second publisher:", errors.Is(err, shmq.ErrRoleTaken))

	for i := 1; i <= 3; i++ {
		if _, err := publisher.Publish([]byte(fmt.Sprint("tick ", i))); err != nil {
			panic(err)
		}
	}
	buf := make([]byte, sub.SlotSize())
	for i := 0; i < 3; i++ {
		n, err := sub.RecvTimeout(buf, time.Second)
		if err != nil {
			panic(err)
		}
		fmt.Println(string(buf[:n]))
	}
	// Output:
	// second publisher: true
	// tick 1
	// tick 2
	// tick 3
}

// Zero-copy: write a message in the queue's memory, and read it there.
func ExampleQueue_Reserve() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-zc-%d", os.Getpid()))
	q, err := shmq.CreateAt(target, shmq.WithSlotSize(64), shmq.WithCapacity(4))
	if err != nil {
		panic(err)
	}
	defer q.Delete()
	defer q.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := q.Reserve(ctx, q.SlotSize()) // waits while the queue is full
	if err != nil {
		panic(err)
	}
	n := copy(r.Bytes(), "in place") // e.g. conn.Read(r.Bytes())
	if err := r.Commit(n); err != nil {
		panic(err)
	}

	m, err := q.Consume(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s (%d bytes)\n", m.Bytes(), m.Len()) // valid until Release
	m.Release()
	// Output: in place (8 bytes)
}

// Zero-copy through the role handles of a single-producer/single-consumer
// queue: no lock in the library, no copy of the message. A goroutine
// writes packets in place, another reads them in place; the batch dequeue
// waits for the first message, then takes what else is ready.
func ExampleProducer_Reserve() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-role-zc-%d", os.Getpid()))
	q, err := shmq.CreateAt(target, shmq.WithSlotSize(64), shmq.WithCapacity(16), shmq.WithSPSC())
	if err != nil {
		panic(err)
	}
	defer q.Delete()
	defer q.Close()
	producer, err := q.Producer() // in a real program: in the producing process
	if err != nil {
		panic(err)
	}
	defer producer.Close()
	consumer, err := q.Consumer()
	if err != nil {
		panic(err)
	}
	defer consumer.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		for i := 1; i <= 2; i++ {
			r, err := producer.Reserve(ctx, producer.SlotSize()) // waits while full
			if err != nil {
				panic(err)
			}
			n := copy(r.Bytes(), fmt.Sprint("packet ", i)) // e.g. conn.Read(r.Bytes())
			if err := r.Commit(n); err != nil {
				panic(err)
			}
		}
		producer.EnqueueBatch(ctx, [][]byte{[]byte("batch a"), []byte("batch b")})
	}()

	for i := 0; i < 2; i++ {
		m, err := consumer.Consume(ctx) // waits while empty
		if err != nil {
			panic(err)
		}
		fmt.Println(string(m.Bytes())) // valid until Release
		m.Release()
	}
	buf, lens := make([]byte, 256), make([]int, 8)
	for got := 0; got < 2; {
		n, err := consumer.DequeueBatch(ctx, buf, lens)
		if err != nil {
			panic(err)
		}
		for off, i := 0, 0; i < n; off, i = off+lens[i], i+1 {
			fmt.Println(string(buf[off : off+lens[i]]))
		}
		got += n
	}
	// Output:
	// packet 1
	// packet 2
	// batch a
	// batch b
}

// Errors are sentinels for errors.Is; setup errors are *Error values that
// say which call and where, for errors.As.
func Example_errors() {
	target := shmq.Posix(fmt.Sprintf("shmq-example-errors-%d", os.Getpid()))
	_, err := shmq.OpenAt(target)
	fmt.Println(errors.Is(err, shmq.ErrNotFound))
	var e *shmq.Error
	if errors.As(err, &e) {
		fmt.Println(e.Op, e.Target == target)
	}

	q, err := shmq.CreateAt(target, shmq.WithSlotSize(8), shmq.WithCapacity(2))
	if err != nil {
		panic(err)
	}
	defer q.Delete()
	defer q.Close()
	err = q.TryEnqueue([]byte("longer than 8 bytes"))
	fmt.Println(errors.Is(fmt.Errorf("sending: %w", err), shmq.ErrTooLarge))
	// Output:
	// true
	// open true
	// true
}
