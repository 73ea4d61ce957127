package buffer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"shmq.dev/shmq/buffer"
)

// The seed's API, checked by the compiler: a program written for
// CloudStuffTech's go-utils buffer builds with only its import changed.
var (
	_ func(buffer.Config[int]) (*buffer.Buffer[int], error) = buffer.NewBuffer[int]
	_ func(*buffer.Buffer[int], context.Context, int) error = (*buffer.Buffer[int]).Add
	_ func(*buffer.Buffer[int], context.Context) error      = (*buffer.Buffer[int]).Run
	_ func(*buffer.Buffer[int])                             = (*buffer.Buffer[int]).Close
	_ func(*buffer.Buffer[int]) int                         = (*buffer.Buffer[int]).ItemsInChannel
	_ buffer.FlushFunc[int]                                 = func(context.Context, []int) error { return nil }
	_                                                       = buffer.Config[int]{
		Flush:         func(context.Context, []int) error { return nil },
		WillOverflow:  func([]int, int) bool { return false },
		CanAdd:        func([]int, int) bool { return true },
		OnReject:      func(int) {},
		ShouldFlush:   func([]int) bool { return false },
		OnFlushError:  func(error, []int) {},
		Capacity:      1,
		ChanSize:      1,
		FlushInterval: time.Second,
	}
)

// waitTimeout is how long a test waits for anything before it fails.
const waitTimeout = 10 * time.Second

// recorder keeps copies of the batches flushed and of what went elsewhere.
type recorder struct {
	mu       sync.Mutex
	batches  [][]int
	failed   [][]int
	rejected []int
	flushed  chan struct{} // one value per flush call (buffered)
}

func newRecorder() *recorder { return &recorder{flushed: make(chan struct{}, 1024)} }

func (r *recorder) flush(_ context.Context, batch []int) error {
	r.mu.Lock()
	r.batches = append(r.batches, append([]int(nil), batch...))
	r.mu.Unlock()
	r.flushed <- struct{}{}
	return nil
}

func (r *recorder) onFlushError(_ error, batch []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, append([]int(nil), batch...))
}

func (r *recorder) onReject(item int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected = append(r.rejected, item)
}

func (r *recorder) snapshot() (batches, failed [][]int, rejected []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]int(nil), r.batches...), append([][]int(nil), r.failed...), append([]int(nil), r.rejected...)
}

// waitFlush waits for the next flush call, failing after waitTimeout.
func (r *recorder) waitFlush(t *testing.T) {
	t.Helper()
	select {
	case <-r.flushed:
	case <-time.After(waitTimeout):
		t.Fatal("no flush within the timeout")
	}
}

// start runs b.Run in a goroutine; the returned func waits for Run's end.
func start[T any](t *testing.T, b *buffer.Buffer[T]) func() error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background()) }()
	return func() error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(waitTimeout):
			t.Fatal("Run did not return within the timeout")
			return nil
		}
	}
}

func add(t *testing.T, b *buffer.Buffer[int], items ...int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, it := range items {
		if err := b.Add(ctx, it); err != nil {
			t.Fatalf("Add(%d): %v", it, err)
		}
	}
}

func TestRequiresFlush(t *testing.T) {
	if _, err := buffer.NewBuffer(buffer.Config[int]{}); err == nil {
		t.Fatal("NewBuffer without Flush succeeded")
	}
}

func TestFlushByCount(t *testing.T) {
	r := newRecorder()
	b, err := buffer.NewBuffer(buffer.Config[int]{Capacity: 3, FlushInterval: time.Hour, Flush: r.flush})
	if err != nil {
		t.Fatal(err)
	}
	wait := start(t, b)
	add(t, b, 1, 2, 3, 4, 5, 6, 7)
	r.waitFlush(t)
	r.waitFlush(t)
	batches, _, _ := r.snapshot()
	if fmt.Sprint(batches) != "[[1 2 3] [4 5 6]]" {
		t.Fatalf("before Close: %v", batches)
	}
	b.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	batches, _, _ = r.snapshot()
	if fmt.Sprint(batches) != "[[1 2 3] [4 5 6] [7]]" {
		t.Fatalf("after Close: %v", batches)
	}
}

// A byte limit per batch: WillOverflow flushes before an item would breach
// it; CanAdd rejects an item that could never fit.
func TestFlushBySize(t *testing.T) {
	const limit = 10
	sum := func(batch []int) (n int) {
		for _, v := range batch {
			n += v
		}
		return n
	}
	r := newRecorder()
	b, err := buffer.NewBuffer(buffer.Config[int]{
		FlushInterval: time.Hour,
		Flush:         r.flush,
		WillOverflow:  func(batch []int, item int) bool { return sum(batch)+item > limit },
		CanAdd:        func(_ []int, item int) bool { return item <= limit },
		OnReject:      r.onReject,
	})
	if err != nil {
		t.Fatal(err)
	}
	wait := start(t, b)
	add(t, b, 4, 5, 3, 7, 11, 2, 10)
	b.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	batches, _, rejected := r.snapshot()
	if fmt.Sprint(batches) != "[[4 5] [3 7] [2] [10]]" || fmt.Sprint(rejected) != "[11]" {
		t.Fatalf("batches %v, rejected %v", batches, rejected)
	}
	for _, batch := range batches {
		if sum(batch) > limit {
			t.Fatalf("batch %v exceeds %d", batch, limit)
		}
	}
}

func TestFlushByInterval(t *testing.T) {
	r := newRecorder()
	b, err := buffer.NewBuffer(buffer.Config[int]{Capacity: 100, FlushInterval: 20 * time.Millisecond, Flush: r.flush})
	if err != nil {
		t.Fatal(err)
	}
	wait := start(t, b)
	add(t, b, 42)
	r.waitFlush(t) // far below Capacity, and Close not called: only the interval flushes
	batches, _, _ := r.snapshot()
	if fmt.Sprint(batches) != "[[42]]" {
		t.Fatalf("batches %v", batches)
	}
	b.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if batches, _, _ := r.snapshot(); len(batches) != 1 {
		t.Fatalf("an empty batch was flushed: %v", batches)
	}
}

func TestFlushOnClose(t *testing.T) {
	r := newRecorder()
	b, err := buffer.NewBuffer(buffer.Config[int]{Capacity: 10, FlushInterval: time.Hour, Flush: r.flush})
	if err != nil {
		t.Fatal(err)
	}
	// Items added before Run starts wait in the channel; Close drains them.
	add(t, b, 1, 2)
	if n := b.ItemsInChannel(); n != 2 {
		t.Fatalf("ItemsInChannel = %d, want 2", n)
	}
	b.Close()
	b.Close() // idempotent
	if err := b.Add(context.Background(), 3); !errors.Is(err, buffer.ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	if err := start(t, b)(); err != nil {
		t.Fatal(err)
	}
	if batches, _, _ := r.snapshot(); fmt.Sprint(batches) != "[[1 2]]" {
		t.Fatalf("batches %v", batches)
	}
}

// A failed batch goes to OnFlushError, is not retried, and the buffer goes
// on with the next items.
func TestFlushError(t *testing.T) {
	r := newRecorder()
	boom := errors.New("backend down")
	calls := 0
	b, err := buffer.NewBuffer(buffer.Config[int]{
		Capacity:      2,
		FlushInterval: time.Hour,
		Flush: func(ctx context.Context, batch []int) error {
			calls++ // only Run calls Flush
			if calls == 1 {
				return boom
			}
			return r.flush(ctx, batch)
		},
		OnFlushError: func(err error, batch []int) {
			if !errors.Is(err, boom) {
				t.Errorf("OnFlushError got %v", err)
			}
			r.onFlushError(err, batch)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wait := start(t, b)
	add(t, b, 1, 2, 3, 4, 5)
	b.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	batches, failed, _ := r.snapshot()
	if fmt.Sprint(failed) != "[[1 2]]" || fmt.Sprint(batches) != "[[3 4] [5]]" {
		t.Fatalf("failed %v, flushed %v", failed, batches)
	}
}

// Many producers, flushes failing now and then, items rejected now and
// then: every item added is accounted for exactly once (flushed, reported
// to OnFlushError or rejected), across the failures and across Close.
func TestNothingLost(t *testing.T) {
	const producers, each = 4, 2500
	r := newRecorder()
	calls := 0
	b, err := buffer.NewBuffer(buffer.Config[int]{
		Capacity:      37,
		ChanSize:      16,
		FlushInterval: time.Millisecond,
		Flush: func(ctx context.Context, batch []int) error {
			calls++
			if calls%5 == 0 {
				return errors.New("every fifth flush fails")
			}
			r.mu.Lock()
			r.batches = append(r.batches, append([]int(nil), batch...))
			r.mu.Unlock()
			return nil
		},
		OnFlushError: r.onFlushError,
		CanAdd:       func(_ []int, item int) bool { return item%101 != 0 },
		OnReject:     r.onReject,
	})
	if err != nil {
		t.Fatal(err)
	}
	wait := start(t, b)
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			for i := 0; i < each; i++ {
				if err := b.Add(ctx, p*each+i); err != nil {
					t.Errorf("Add: %v", err)
					return
				}
			}
		}(p)
	}
	wg.Wait()
	b.Close()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	batches, failed, rejected := r.snapshot()
	seen := make(map[int]int)
	for _, group := range [][][]int{batches, failed, {rejected}} {
		for _, batch := range group {
			for _, v := range batch {
				seen[v]++
			}
		}
	}
	for v := 0; v < producers*each; v++ {
		if seen[v] != 1 {
			t.Fatalf("item %d accounted for %d times", v, seen[v])
		}
	}
	if len(seen) != producers*each || len(failed) == 0 || len(rejected) == 0 {
		t.Fatalf("%d distinct items, %d failed batches, %d rejected", len(seen), len(failed), len(rejected))
	}
}

// Add blocks while the channel is full and gives up with ctx.Err(); the
// item it gave up on is not added.
func TestAddBackpressure(t *testing.T) {
	r := newRecorder()
	b, err := buffer.NewBuffer(buffer.Config[int]{Capacity: 1, ChanSize: 2, FlushInterval: time.Hour, Flush: r.flush})
	if err != nil {
		t.Fatal(err)
	}
	add(t, b, 1, 2) // Run not started: the channel is now full
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- b.Add(ctx, 3) }()
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Add on a full channel: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Add did not return after its context was cancelled")
	}
	b.Close()
	if err := start(t, b)(); err != nil {
		t.Fatal(err)
	}
	if batches, _, _ := r.snapshot(); fmt.Sprint(batches) != "[[1] [2]]" {
		t.Fatalf("batches %v", batches)
	}
}

// Flush receives Run's context.
func TestFlushGetsRunContext(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "run")
	got := make(chan interface{}, 1)
	b, err := buffer.NewBuffer(buffer.Config[int]{Capacity: 1, Flush: func(c context.Context, _ []int) error {
		got <- c.Value(key{})
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	add(t, b, 1)
	b.Close()
	select {
	case v := <-got:
		if v != "run" {
			t.Fatalf("Flush's context carries %v", v)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no flush")
	}
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
}
