// Package buffer batches items and hands each batch to a flush function:
// by count, by size, on an interval, and a final time on Close.
//
// It has the API of the buffer package of CloudStuffTech's go-utils: a
// program written for github.com/CloudStuffTech/go-utils/buffer builds
// unchanged after switching its import path to shmq.dev/shmq/buffer.
//
//	buf, err := buffer.NewBuffer(buffer.Config[Record]{
//	    Capacity: 500,
//	    Flush: func(ctx context.Context, batch []Record) error {
//	        return backend.Send(ctx, batch)
//	    },
//	})
//	go buf.Run(ctx)
//	buf.Add(ctx, rec) // from any number of goroutines
//	buf.Close()       // once every Add has returned: Run drains and flushes
//
// Beyond the seed, a Buffer can be fed by a shmq queue or fan-out log
// instead of Add (FromQueue, FromLog): Run reads the messages, decodes them
// and batches them with the same Config. On a log with a named cursor the
// cursor is committed only after a successful flush (at-least-once).
//
// Differences from the seed, all in the caller's favour: Close is
// idempotent, and Add after Close returns ErrClosed instead of panicking.
package buffer

import (
	"context"
	"errors"
	"sync"
	"time"
)

// FlushFunc processes a batch. It receives the context given to Run (which
// may be cancelled by the time the final flush on Close runs: shield the
// backend call, e.g. with context.WithoutCancel and a timeout).
//
// A non-nil error sends the batch to OnFlushError; the buffer never retries
// it. The batch slice must not be retained after FlushFunc returns: the
// buffer reuses its backing array for the next batch. Copy what you keep.
type FlushFunc[T any] func(ctx context.Context, batch []T) error

// Config holds the behaviour of a Buffer. Only Flush is required.
type Config[T any] struct {
	// Flush is called with the current batch each time a flush is due
	// (see FlushFunc). Required.
	Flush FlushFunc[T]

	// WillOverflow is asked before an item joins the batch whether adding
	// it would breach a hard limit (e.g. a byte limit per request). If it
	// says yes, the current batch is flushed first and the item is then
	// considered for the new, empty batch. It must not modify batch.
	// Default: never.
	WillOverflow func(batch []T, item T) bool

	// CanAdd is asked before each item joins the batch; false rejects the
	// item, which goes to OnReject instead. It must not modify batch.
	// Default: always true.
	CanAdd func(batch []T, item T) bool

	// OnReject receives each item CanAdd refused. It runs inside Run: it
	// must not block for long. Default: nothing.
	OnReject func(item T)

	// ShouldFlush is asked after each item joins the batch; true flushes
	// now. Time-based flushing is FlushInterval's job.
	// Default: len(batch) >= Capacity.
	ShouldFlush func(batch []T) bool

	// OnFlushError receives the error and the batch of a failed flush. The
	// buffer has given up on that batch (it is reset, never retried); the
	// slice must not be retained after OnFlushError returns.
	// Default: nothing.
	OnFlushError func(err error, batch []T)

	// Capacity is the target batch size (the default ShouldFlush) and the
	// batch's initial allocation. Default: 100.
	Capacity int

	// ChanSize is the number of items Add can queue ahead of Run before it
	// blocks. Default: 2 * Capacity.
	ChanSize int

	// FlushInterval is the longest time between flushes while items wait.
	// Default: 5 seconds.
	FlushInterval time.Duration
}

// ErrClosed is what Add returns after Close.
var ErrClosed = errors.New("buffer: closed")

// withDefaults fills in every field left zero.
func (c Config[T]) withDefaults() Config[T] {
	if c.Capacity <= 0 {
		c.Capacity = 100
	}
	if c.ChanSize <= 0 {
		c.ChanSize = 2 * c.Capacity
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 5 * time.Second
	}
	if c.WillOverflow == nil {
		c.WillOverflow = func([]T, T) bool { return false }
	}
	if c.CanAdd == nil {
		c.CanAdd = func([]T, T) bool { return true }
	}
	if c.OnReject == nil {
		c.OnReject = func(T) {}
	}
	if c.ShouldFlush == nil {
		capacity := c.Capacity
		c.ShouldFlush = func(batch []T) bool { return len(batch) >= capacity }
	}
	if c.OnFlushError == nil {
		c.OnFlushError = func(error, []T) {}
	}
	return c
}

// Buffer accumulates items into batches and flushes them (see Config).
// Add may be called from any number of goroutines; Run owns the batch.
type Buffer[T any] struct {
	cfg Config[T]

	// In-process mode: Add sends on items; Close closes it (under mu, so
	// no Add sends on a closed channel).
	items  chan T
	mu     sync.RWMutex
	closed bool

	// Source mode (FromQueue, FromLog): Run reads src instead of items,
	// until stopCtx is cancelled by Close (or the source ends).
	src     *source[T]
	stopCtx context.Context
	stop    context.CancelFunc
}

// NewBuffer returns a Buffer fed by Add. Flush is required; every other
// field of cfg has a default.
func NewBuffer[T any](cfg Config[T]) (*Buffer[T], error) {
	if cfg.Flush == nil {
		return nil, errors.New("buffer: Flush is required")
	}
	c := cfg.withDefaults()
	return &Buffer[T]{cfg: c, items: make(chan T, c.ChanSize)}, nil
}

// Add hands item to the buffer. It blocks while ChanSize items wait for
// Run (backpressure) and returns ctx.Err() if ctx is done first; the item
// is then not added. After Close it returns ErrClosed (the seed panics).
// A buffer fed by a queue or log (FromQueue, FromLog) takes no items from
// Add: it returns ErrHasSource.
func (b *Buffer[T]) Add(ctx context.Context, item T) error {
	if b.src != nil {
		return ErrHasSource
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	select {
	case b.items <- item:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close tells Run that no more items come: Run takes every item Add
// accepted, flushes a last time and returns. Call it once the producers
// are done (an Add racing with Close either is accepted and flushed, or
// returns ErrClosed). Idempotent.
//
// For a buffer fed by a queue or log, Close makes Run stop reading (what
// it has not read stays in the queue or log), flush what it holds, commit,
// and return.
func (b *Buffer[T]) Close() {
	if b.src != nil {
		b.stop()
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.items)
	}
}

// ItemsInChannel is the number of items waiting for Run: added and not
// yet taken (for a queue, its length; for a log, the subscriber's lag). A
// snapshot, for monitoring.
func (b *Buffer[T]) ItemsInChannel() int {
	if b.src != nil {
		return b.src.waiting()
	}
	return len(b.items)
}

// Run is the buffer's loop: call it exactly once, in its own goroutine.
// It returns after Close, once it has drained what was added and flushed
// a last time.
//
// ctx is handed to every Flush; cancelling it does not stop Run (only
// Close does, so that nothing already added is dropped).
//
// A buffer fed by a queue or log also returns when the queue or log is
// closed and drained (after a final flush), and with an error when reading
// fails or, on a log's named cursor, when a flush fails (see FromLog).
func (b *Buffer[T]) Run(ctx context.Context) error {
	st := newBatch(ctx, b.cfg, nil)
	if b.src != nil {
		return b.runSource(st)
	}
	ticker := time.NewTicker(b.cfg.FlushInterval)
	defer ticker.Stop()
	for {
		select {
		case item, ok := <-b.items:
			if !ok {
				st.flush()
				return nil
			}
			if st.add(item) {
				ticker.Reset(b.cfg.FlushInterval)
			}
		case <-ticker.C:
			st.flush()
		}
	}
}

// batch is Run's state: the batch being filled and the rules that empty it.
type batch[T any] struct {
	ctx   context.Context
	cfg   Config[T]
	items []T
	// settled makes durable that every item taken so far was flushed or
	// rejected (a log cursor's commit); nil when there is nothing to make
	// durable.
	settled func() error
	// owed: a flush succeeded since the last settle.
	owed bool
	// failed: the last flush failed (with a durable source, Run stops).
	failed error
}

func newBatch[T any](ctx context.Context, cfg Config[T], settled func() error) *batch[T] {
	return &batch[T]{ctx: ctx, cfg: cfg, items: make([]T, 0, cfg.Capacity), settled: settled}
}

// add runs one item through WillOverflow, CanAdd and ShouldFlush, and says
// whether it flushed.
func (s *batch[T]) add(item T) (flushed bool) {
	if len(s.items) > 0 && s.cfg.WillOverflow(s.items, item) {
		s.flush()
		flushed = true
		if s.failed != nil && s.settled != nil {
			return flushed // Run stops; item was never handed over
		}
	}
	if !s.cfg.CanAdd(s.items, item) {
		s.cfg.OnReject(item)
		return flushed
	}
	s.items = append(s.items, item)
	if s.cfg.ShouldFlush(s.items) {
		s.flush()
		flushed = true
	}
	return flushed
}

// flush hands a non-empty batch to Flush (its failure to OnFlushError) and
// resets it, clearing the slots so the backing array keeps nothing alive.
func (s *batch[T]) flush() {
	if len(s.items) == 0 {
		return
	}
	err := s.cfg.Flush(s.ctx, s.items)
	if err != nil {
		s.cfg.OnFlushError(err, s.items)
		s.failed = err
	} else {
		s.owed = true
	}
	var zero T
	for i := range s.items {
		s.items[i] = zero
	}
	s.items = s.items[:0]
}

// settle makes durable what the flushes so far delivered, once the batch
// is empty (nothing taken is then unflushed).
func (s *batch[T]) settle() error {
	if s.settled == nil || !s.owed || len(s.items) > 0 {
		return nil
	}
	s.owed = false
	return s.settled()
}
