package buffer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"shmq.dev/shmq"
)

// ErrHasSource is what Add returns on a Buffer fed by a queue or log.
var ErrHasSource = errors.New("buffer: fed by a shmq queue or log, not by Add")

// ErrFlushFailed is wrapped by the error Run returns when a flush fails on
// a log's named cursor (see FromLog).
var ErrFlushFailed = errors.New("buffer: flush failed; the cursor was not committed past the batch")

// stopPoll is the longest wait of a queue- or log-fed Run before it looks
// whether Close was called.
const stopPoll = 50 * time.Millisecond

// SourceOption tunes a Buffer fed by a queue or log.
type SourceOption func(*sourceOptions)

type sourceOptions struct {
	onDecodeError func(err error, msg []byte)
}

// OnDecodeError receives the error and a copy of each message the decode
// function refused; the message is skipped. Default: skip it silently.
func OnDecodeError(f func(err error, msg []byte)) SourceOption {
	return func(o *sourceOptions) { o.onDecodeError = f }
}

// source is where Run takes items from when it is not Add's channel: the
// one place that calls the queue and log. To move to batch receives, give
// it a local slice of decoded messages refilled per call; commit must then
// wait until that slice is empty.
type source[T any] struct {
	try     func(buf []byte) (int, error)                        // one message, no wait
	read    func(buf []byte, timeout time.Duration) (int, error) // one message, waiting up to timeout
	commit  func() error                                         // nil: nothing to commit
	waiting func() int
	decode  func([]byte) (T, error)
	bufSize int
	opts    sourceOptions
	lost    uint64 // log messages overwritten before they were read (atomic)
}

// FromQueue returns a Buffer fed by the work queue q: Run dequeues each
// message, turns it into an item with decode and batches it with cfg's
// rules. Run ends (after a final flush) when q is closed and drained, or
// when Close is called: what Run has not dequeued then stays in the queue.
// The caller keeps q, and closes it after Run returns. decode's argument
// is reused for the next message: copy the bytes an item keeps.
//
// A dequeue is final: the items of a failed flush go to OnFlushError, and
// those of a process that dies before its flush are lost (use FromLog for
// at-least-once delivery).
func FromQueue[T any](q *shmq.Queue, decode func([]byte) (T, error), cfg Config[T], opts ...SourceOption) (*Buffer[T], error) {
	if q == nil || decode == nil {
		return nil, errors.New("buffer: FromQueue needs a queue and a decode function")
	}
	src := &source[T]{
		try:     q.TryDequeue,
		read:    q.DequeueTimeout,
		waiting: q.Len,
		decode:  decode,
		bufSize: q.SlotSize(),
	}
	return newSourced(src, cfg, opts)
}

// FromLog returns a Buffer fed by the log subscriber sub: Run receives each
// message, turns it into an item with decode and batches it with cfg's
// rules. Run ends (after a final flush) when the log is closed and read to
// its end, or when Close is called. The caller keeps sub, and closes it
// after Run returns. decode's argument is reused for the next message:
// copy the bytes an item keeps.
//
// On a named cursor (Log.SubscribeNamed) the cursor is committed after a
// successful flush, once every message read is flushed or rejected: after
// a crash, the next subscriber on that cursor reads the uncommitted
// messages again (at-least-once). A failed flush therefore ends Run with
// an error wrapping ErrFlushFailed (after OnFlushError), the cursor left
// where the last successful flush put it; start a new Buffer to go on.
// In reliable mode publishers wait for the commit: keep batches smaller
// than the log's capacity, or they are flushed by the interval only.
func FromLog[T any](sub *shmq.Subscriber, decode func([]byte) (T, error), cfg Config[T], opts ...SourceOption) (*Buffer[T], error) {
	if sub == nil || decode == nil {
		return nil, errors.New("buffer: FromLog needs a subscriber and a decode function")
	}
	src := &source[T]{
		try:     sub.TryRecv,
		read:    sub.RecvTimeout,
		waiting: func() int { return int(sub.Lag()) },
		decode:  decode,
		bufSize: sub.SlotSize(),
	}
	if sub.Name() != "" {
		src.commit = sub.Commit
	}
	return newSourced(src, cfg, opts)
}

func newSourced[T any](src *source[T], cfg Config[T], opts []SourceOption) (*Buffer[T], error) {
	if cfg.Flush == nil {
		return nil, errors.New("buffer: Flush is required")
	}
	for _, o := range opts {
		o(&src.opts)
	}
	if src.opts.onDecodeError == nil {
		src.opts.onDecodeError = func(error, []byte) {}
	}
	stopCtx, stop := context.WithCancel(context.Background())
	return &Buffer[T]{cfg: cfg.withDefaults(), src: src, stopCtx: stopCtx, stop: stop}, nil
}

// Lost is the number of log messages that were overwritten before Run read
// them (overwrite mode only; they were never seen).
func (b *Buffer[T]) Lost() uint64 {
	if b.src == nil {
		return 0
	}
	return atomic.LoadUint64(&b.src.lost)
}

// runSource is Run for a buffer fed by a queue or log.
func (b *Buffer[T]) runSource(st *batch[T]) error {
	src := b.src
	st.settled = src.commit
	interval := b.cfg.FlushInterval
	buf := make([]byte, src.bufSize)
	due := time.Now().Add(interval)
	// failed is Run's error after a failed flush on a durable cursor.
	failed := func() error {
		if st.failed != nil && st.settled != nil {
			return fmt.Errorf("%w: %v", ErrFlushFailed, st.failed)
		}
		st.failed = nil
		return nil
	}
	finish := func() error {
		st.flush()
		if err := failed(); err != nil {
			return err
		}
		return st.settle()
	}
	for {
		if b.stopCtx.Err() != nil {
			return finish()
		}
		n, err := src.try(buf)
		if errors.Is(err, shmq.ErrEmpty) {
			if !time.Now().Before(due) {
				st.flush()
				if err := failed(); err != nil {
					return err
				}
				if err := st.settle(); err != nil {
					return err
				}
				due = time.Now().Add(interval)
				continue
			}
			// Wait in slices, so that Close is seen within stopPoll.
			wait := time.Until(due)
			if wait <= 0 {
				continue // (a negative timeout would wait forever)
			}
			if wait > stopPoll {
				wait = stopPoll
			}
			n, err = src.read(buf, wait)
		}
		var lagged *shmq.LaggedError
		switch {
		case err == nil:
			item, derr := src.decode(buf[:n])
			if derr != nil {
				src.opts.onDecodeError(derr, append([]byte(nil), buf[:n]...))
				break
			}
			if st.add(item) {
				due = time.Now().Add(interval)
			} else if !time.Now().Before(due) {
				st.flush()
				due = time.Now().Add(interval)
			}
			if err := failed(); err != nil {
				return err
			}
		case errors.Is(err, shmq.ErrTimeout):
			// the slice passed: the top of the loop looks at Close and the interval
		case errors.As(err, &lagged):
			atomic.AddUint64(&src.lost, lagged.Missed)
		case errors.Is(err, shmq.ErrClosed):
			return finish()
		default:
			return err
		}
		if err := st.settle(); err != nil {
			return err
		}
	}
}
