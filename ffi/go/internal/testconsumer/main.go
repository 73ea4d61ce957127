// Command testconsumer is the Go consumer of the cross-language test
// (tests/ffi_cross.rs): it opens TARGET, prints READY, then dequeues until
// the queue is closed and drained (or -max messages were taken), printing
// "RESULT <producer> <seq>" per message. It fails on a torn message, on
// messages of one producer out of order, or when nothing arrives for 10 s.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"shmq.dev/shmq"
	"shmq.dev/shmq/internal/testmsg"
)

func main() {
	max := flag.Int("max", -1, "stop after this many messages (-1: no limit)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: testconsumer [-max N] TARGET")
		os.Exit(2)
	}
	os.Exit(run(shmq.Target(flag.Arg(0)), *max))
}

func run(target shmq.Target, max int) int {
	var q *shmq.Queue
	var err error
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(time.Millisecond) {
		if q, err = shmq.OpenAt(target); !errors.Is(err, shmq.ErrNotFound) {
			break
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go consumer:", err)
		return 1
	}
	defer q.Close()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	fmt.Fprintln(out, "READY")
	out.Flush()

	next := map[uint32]uint64{} // lowest sequence still acceptable, per producer
	buf := make([]byte, q.SlotSize())
	for got := 0; max < 0 || got < max; got++ {
		n, err := q.DequeueTimeout(buf, 10*time.Second)
		if errors.Is(err, shmq.ErrClosed) {
			return 0
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "go consumer: dequeue:", err)
			return 1
		}
		p, seq, err := testmsg.Check(buf[:n])
		if err != nil {
			fmt.Fprintln(os.Stderr, "go consumer:", err)
			return 1
		}
		if seq < next[p] {
			fmt.Fprintf(os.Stderr, "go consumer: producer %d: message %d after %d\n", p, seq, next[p]-1)
			return 1
		}
		next[p] = seq + 1
		fmt.Fprintf(out, "RESULT %d %d\n", p, seq)
	}
	return 0
}
