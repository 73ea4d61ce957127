// Command ticker-consumer reads a ticker feed (for instance from the C
// ticker_producer in ffi/c/examples) until the producer closes the queue,
// then removes the queue. Ctrl-C stops it.
//
//	ticker-consumer posix:ticks
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"shmq.dev/shmq"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ticker-consumer TARGET")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	// The producer may not have created the queue yet: wait up to 10 s.
	q, err := shmq.OpenAt(shmq.Target(os.Args[1]))
	for start := time.Now(); errors.Is(err, shmq.ErrNotFound) && time.Since(start) < 10*time.Second; {
		time.Sleep(10 * time.Millisecond)
		q, err = shmq.OpenAt(shmq.Target(os.Args[1]))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer q.Close()

	buf := make([]byte, q.SlotSize())
	count := 0
	for {
		n, err := q.Dequeue(ctx, buf) // waits for the next tick, or Ctrl-C
		if errors.Is(err, shmq.ErrClosed) {
			break // the producer is done and the queue is drained
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("tick %s\n", buf[:n])
		count++
	}
	fmt.Printf("received %d ticks\n", count)
	if err := q.Delete(); err != nil { // the last one out removes the queue
		fmt.Fprintln(os.Stderr, err)
	}
}
