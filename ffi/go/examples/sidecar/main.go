// Command sidecar batches records from a work queue to a backend that takes
// at most 4096 bytes per request: an application process (this program
// re-run with -app) writes JSON records to the queue; the sidecar flushes
// every 100 records, every 100 ms, before a request would pass the byte
// limit, and a last time when the application closes the queue.
//
//	go run ./examples/sidecar [-records N]
//
// The backend is a stand-in that checks the limit, prints each request and
// takes a millisecond per request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"shmq.dev/shmq"
	"shmq.dev/shmq/buffer"
)

// maxBytes is the backend's limit per request.
const maxBytes = 4096

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-app" {
		appMain()
		return
	}
	records := flag.Int("records", 2000, "records the application writes")
	flag.Parse()
	if err := run(os.Stdout, *records); err != nil {
		fmt.Fprintln(os.Stderr, "sidecar:", err)
		os.Exit(1)
	}
}

// backend is the stand-in: it refuses a request over the limit.
type backend struct {
	out      io.Writer
	requests int
	largest  int
}

func (b *backend) send(_ context.Context, batch []string) error {
	bytes := 0
	for _, r := range batch {
		bytes += len(r)
	}
	if bytes > maxBytes {
		return fmt.Errorf("request of %d bytes refused", bytes)
	}
	time.Sleep(time.Millisecond)
	b.requests++
	if bytes > b.largest {
		b.largest = bytes
	}
	fmt.Fprintf(b.out, "request %d: %d records, %d bytes\n", b.requests, len(batch), bytes)
	return nil
}

// run creates the queue, starts the application and batches its records.
func run(out io.Writer, records int) error {
	target := shmq.Posix(fmt.Sprintf("sidecar-go-%d", os.Getpid()))
	q, err := shmq.CreateAt(target, shmq.WithSlotSize(512), shmq.WithCapacity(1024))
	if err != nil {
		return err
	}
	defer q.Close()
	defer shmq.Unlink(target)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	app := exec.Command(self, "-app", string(target), fmt.Sprint(records))
	app.Stderr = os.Stderr
	if err := app.Start(); err != nil {
		return err
	}

	be := &backend{out: out}
	flushed := 0
	buf, err := buffer.FromQueue(q, func(m []byte) (string, error) { return string(m), nil }, buffer.Config[string]{
		Capacity:      100,
		FlushInterval: 100 * time.Millisecond,
		Flush: func(ctx context.Context, batch []string) error {
			if err := be.send(ctx, batch); err != nil {
				return err
			}
			flushed += len(batch)
			return nil
		},
		WillOverflow: func(batch []string, item string) bool { return size(batch)+len(item) > maxBytes },
		CanAdd:       func(_ []string, item string) bool { return len(item) <= maxBytes },
		OnReject:     func(item string) { fmt.Fprintf(out, "rejected a record of %d bytes\n", len(item)) },
		OnFlushError: func(err error, batch []string) { fmt.Fprintf(out, "dropped %d records: %v\n", len(batch), err) },
	})
	if err != nil {
		return err
	}
	runErr := buf.Run(context.Background()) // until the application closes the queue
	if err := app.Wait(); err != nil {
		return fmt.Errorf("application: %w", err)
	}
	if runErr != nil {
		return runErr
	}
	fmt.Fprintf(out, "sidecar: %d records in %d batches, the largest %d bytes (limit %d)\n",
		flushed, be.requests, be.largest, maxBytes)
	return nil
}

func size(batch []string) (n int) {
	for _, r := range batch {
		n += len(r)
	}
	return n
}

// appMain is the application: records of 40 to 500 bytes, then close.
func appMain() {
	var records int
	fmt.Sscan(os.Args[3], &records)
	if err := app(shmq.Target(os.Args[2]), records); err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}

func app(target shmq.Target, records int) error {
	q, err := shmq.OpenAt(target)
	if err != nil {
		return err
	}
	defer q.Close()
	start := time.Now()
	for i := 0; i < records; i++ {
		pad := strings.Repeat("x", (i*37)%460)
		rec := fmt.Sprintf(`{"id":%d,"at_us":%d,"pad":"%s"}`, i, time.Since(start).Microseconds(), pad)
		if err := q.EnqueueTimeout([]byte(rec), 10*time.Second); err != nil {
			return err
		}
	}
	if err := q.CloseQueue(); err != nil && !errors.Is(err, shmq.ErrClosed) {
		return err
	}
	return nil
}
