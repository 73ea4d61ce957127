// Package shmq is a cross-process shared-memory message queue for Go: a
// cgo wrapper over libshmq (the Rust crate's C library). Processes written
// in Go, C and Rust attach to one queue by SysV key, POSIX name or file path.
//
// It is a drop-in replacement for shqueue-go: FindFreeKey, Create, Open,
// Close, Delete, EnqueueShift, EnqueueBlock, EnqueueTry, DequeueBlock and
// DequeueTry keep their names and signatures (the subpackage
// shmq.dev/shmq/shqueue even keeps the package name). Unlike the seed,
// Create never wipes a live queue, a wrong-sized buffer never panics,
// messages may have any length up to the slot size, no lock is ever held
// across a copy, and a process that dies never freezes the others.
//
// The idiomatic API adds targets and options (CreateAt, OpenAt,
// OpenOrCreateAt), variable-length receives that return the length
// (TryDequeue, Dequeue), errors usable with errors.Is (ErrFull, ErrClosed,
// ...), and statistics. Zero-copy calls (Reserve, Consume) and batches
// (EnqueueBatch, DequeueBatch) exist on the Queue and on its role handles
// (Queue.Producer, Queue.Consumer), whose calls take no lock in the
// library on a WithSPSC queue.
//
// A Queue is safe for concurrent use by many goroutines.
//
// Building needs libshmq, found with pkg-config (package shmq): install it
// with scripts/install.sh (no CGO_ variables are needed afterwards), or, to
// use the library built in a checkout, write an uninstalled shmq.pc with
// `scripts/install.sh --pc-only` and set
// PKG_CONFIG_PATH=<checkout>/target/release/pkgconfig. The .pc file adds an
// rpath, so programs run without LD_LIBRARY_PATH. The module path
// shmq.dev/shmq is not fetchable: require it with a replace directive (or a
// go.work) pointing at <checkout>/ffi/go.
package shmq

/*
#cgo pkg-config: shmq
#include <stdlib.h>
#include "cgo_helpers.h"

static enum shmq_status go_create(const char *t, uint32_t slot, uint64_t cap, uint32_t mode, uint32_t flags,
                                  int open_existing, shmq_queue **out, char *msg, size_t msg_cap) {
	enum shmq_status s = open_existing ? shmq_queue_open_or_create(t, slot, cap, mode, flags, out)
	                                   : shmq_queue_create(t, slot, cap, mode, flags, out);
	return go_capture(s, msg, msg_cap);
}

static enum shmq_status go_open(const char *t, shmq_queue **out, char *msg, size_t msg_cap) {
	return go_capture(shmq_queue_open(t, out), msg, msg_cap);
}

static enum shmq_status go_unlink(const char *t, char *msg, size_t msg_cap) {
	return go_capture(shmq_target_unlink(t), msg, msg_cap);
}

static enum shmq_status go_unlink_force(const char *t, char *msg, size_t msg_cap) {
	return go_capture(shmq_target_unlink_force(t), msg, msg_cap);
}

static enum shmq_status go_flush(const shmq_queue *q, char *msg, size_t msg_cap) {
	return go_capture(shmq_queue_flush(q), msg, msg_cap);
}

static enum shmq_status go_find_free_key(int32_t *key, char *msg, size_t msg_cap) {
	return go_capture(shmq_find_free_key(key), msg, msg_cap);
}

// The blocking phases of EnqueueBlock/DequeueBlock and friends (see
// go_slice in cgo_helpers.h). total_ns < 0 waits without limit (else
// SHMQ_TIMEOUT when it passes).
static enum shmq_status go_enqueue_wait(const shmq_queue *q, const uint8_t *msg, size_t len, int64_t slice_ns,
                                        int64_t total_ns, const int32_t *stop, const int32_t *closing) {
	int64_t end = total_ns < 0 ? INT64_MAX : go_now_ns() + total_ns, t;
	while (go_slice(end, slice_ns, stop, closing, &t)) {
		if (t <= 0) return SHMQ_TIMEOUT;
		enum shmq_status s = shmq_queue_enqueue_block(q, msg, len, t);
		if (s != SHMQ_TIMEOUT) return s;
	}
	return GO_STOPPED;
}

static enum shmq_status go_dequeue_wait(const shmq_queue *q, uint8_t *buf, size_t len, int64_t slice_ns,
                                        int64_t total_ns, const int32_t *stop, const int32_t *closing, size_t *n) {
	int64_t end = total_ns < 0 ? INT64_MAX : go_now_ns() + total_ns, t;
	while (go_slice(end, slice_ns, stop, closing, &t)) {
		if (t <= 0) return SHMQ_TIMEOUT;
		enum shmq_status s = shmq_queue_dequeue_block(q, buf, len, t, n);
		if (s != SHMQ_TIMEOUT) return s;
	}
	return GO_STOPPED;
}
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Version is the version of the libshmq this package runs against.
func Version() string { return C.GoString(C.shmq_version()) }

// Queue is a handle to a work queue in shared memory: many producers, many
// consumers (goroutines or processes), each message delivered to exactly
// one consumer, FIFO per producer.
type Queue struct {
	mu       sync.RWMutex // guards h: calls hold it shared, Close exclusively
	h        *C.shmq_queue
	closing  *int32 // set by Close (never reset): calls waiting in C return
	target   Target
	slotSize int
	capacity int
	zc       zeroCopy // live reservations and messages (zerocopy.go)
}

// Stats are a queue's counters, read from shared memory (approximate while
// operations are in flight).
type Stats struct {
	Enqueued   uint64 // messages accepted by any enqueue
	Dequeued   uint64 // messages handed to consumers
	Discarded  uint64 // messages discarded by EnqueueShift/Shift to make room
	Tombstones uint64 // positions that carried no message (abandoned by close or a crash)
	Len        uint64 // messages waiting now
	Capacity   uint64 // number of slots
}

const errCap = 512

func setup(op string, t Target, call func(msg *C.char) C.enum_shmq_status) error {
	var msg [errCap]C.char
	st := call(&msg[0])
	if st == C.SHMQ_OK {
		return nil
	}
	return &Error{Op: op, Target: t, Msg: C.GoString(&msg[0]), err: statusErr(st)}
}

func newQueue(t Target, h *C.shmq_queue) *Queue {
	// Blocking calls into C sleep at once: this package spins in Go first,
	// then sleeps in C in short slices so that a context can interrupt it.
	C.shmq_queue_set_wait(h, 0)
	var slot C.uint32_t
	var capacity C.uint64_t
	C.shmq_queue_slot_size(h, &slot)
	C.shmq_queue_capacity(h, &capacity)
	q := &Queue{h: h, closing: new(int32), target: t, slotSize: int(slot), capacity: int(capacity)}
	runtime.SetFinalizer(q, (*Queue).Close)
	return q
}

func create(t Target, openExisting bool, opts []Option) (*Queue, error) {
	cfg := config{slotSize: DefaultSlotSize, capacity: DefaultCapacity, mode: 0o600}
	for _, o := range opts {
		o(&cfg)
	}
	op := "create"
	if openExisting {
		op = "open or create"
	}
	if cfg.reliable || cfg.cursors != 0 {
		return nil, &Error{Op: op, Target: t, Msg: "WithReliable and WithCursors are options of a log (CreateLog)",
			err: ErrInvalidArgument}
	}
	if cfg.slotSize < 0 || cfg.slotSize > math.MaxUint32 || cfg.capacity < 0 || cfg.mode&^0o777 != 0 {
		return nil, &Error{Op: op, Target: t, Msg: fmt.Sprintf("slot size %d, capacity %d or mode %o out of range",
			cfg.slotSize, cfg.capacity, cfg.mode), err: ErrInvalidArgument}
	}
	ct := C.CString(string(t))
	defer C.free(unsafe.Pointer(ct))
	var h *C.shmq_queue
	flag := C.int(0)
	if openExisting {
		flag = 1
	}
	err := setup(op, t, func(msg *C.char) C.enum_shmq_status {
		return C.go_create(ct, C.uint32_t(cfg.slotSize), C.uint64_t(cfg.capacity), C.uint32_t(cfg.mode),
			C.uint32_t(cfg.flags), flag, &h, msg, errCap)
	})
	if err != nil {
		return nil, err
	}
	return newQueue(t, h), nil
}

// CreateAt creates a new queue at t (see Target); by default slots of
// DefaultSlotSize bytes, DefaultCapacity slots, mode 0600. It fails with
// ErrAlreadyExists if anything is at t, and leaves it untouched.
func CreateAt(t Target, opts ...Option) (*Queue, error) { return create(t, false, opts) }

// OpenOrCreateAt creates the queue as CreateAt does, or opens it if it
// exists with the same slot size and capacity (else ErrIncompatible).
func OpenOrCreateAt(t Target, opts ...Option) (*Queue, error) { return create(t, true, opts) }

// OpenAt opens the existing queue at t; it never creates (ErrNotFound).
func OpenAt(t Target) (*Queue, error) {
	ct := C.CString(string(t))
	defer C.free(unsafe.Pointer(ct))
	var h *C.shmq_queue
	err := setup("open", t, func(msg *C.char) C.enum_shmq_status { return C.go_open(ct, &h, msg, errCap) })
	if err != nil {
		return nil, err
	}
	return newQueue(t, h), nil
}

// Unlink removes the queue or log at t: later opens fail with ErrNotFound;
// processes attached keep working until they close their handles. Removal
// is idempotent: when nothing is at t, Unlink returns nil (removing twice is
// not an error).
//
// It removes only a shmq segment (shmq's magic, or a segment whose creator
// never finished); anything else is left untouched and Unlink returns an
// error matching ErrCorrupt that says what was found. UnlinkForce removes it
// anyway.
func Unlink(t Target) error {
	ct := C.CString(string(t))
	defer C.free(unsafe.Pointer(ct))
	return setup("unlink", t, func(msg *C.char) C.enum_shmq_status { return C.go_unlink(ct, msg, errCap) })
}

// UnlinkForce removes whatever is at t, shmq's or not, without looking at
// it. Prefer Unlink. Idempotent like Unlink: nothing at t is not an error.
func UnlinkForce(t Target) error {
	ct := C.CString(string(t))
	defer C.free(unsafe.Pointer(ct))
	return setup("unlink", t, func(msg *C.char) C.enum_shmq_status { return C.go_unlink_force(ct, msg, errCap) })
}

// ---- the seed API (shqueue-go) ----

// FindFreeKey returns a SysV key with no segment behind it right now, for
// Create. Another process may still take it first: Create then fails with
// ErrAlreadyExists and you ask again.
func FindFreeKey() (int, error) {
	var key C.int32_t
	err := setup("find free key", "", func(msg *C.char) C.enum_shmq_status {
		return C.go_find_free_key(&key, msg, errCap)
	})
	if err != nil {
		return 0, err
	}
	return int(key), nil
}

func sysvTarget(op string, key int) (Target, error) {
	if key < math.MinInt32 || key > math.MaxInt32 {
		return "", &Error{Op: op, Msg: fmt.Sprintf("SysV key %d does not fit in 32 bits", key), err: ErrInvalidArgument}
	}
	return SysV(key), nil
}

// Create creates a new queue under SysV key with maxLen slots (at least 2)
// of msgSize 64-bit words (msgSize*8 bytes) each. Messages may be shorter.
//
// Unlike shqueue-go, Create never touches a queue that already exists: it
// fails with ErrAlreadyExists (use Open, or OpenOrCreateAt).
func Create(key int, msgSize, maxLen uint32) (*Queue, error) {
	t, err := sysvTarget("create", key)
	if err != nil {
		return nil, err
	}
	if msgSize > math.MaxUint32/8 {
		return nil, &Error{Op: "create", Target: t, Msg: fmt.Sprintf("message size of %d words is too large", msgSize),
			err: ErrInvalidArgument}
	}
	return CreateAt(t, WithSlotSize(int(msgSize)*8), WithCapacity(int(maxLen)))
}

// Open opens the existing queue under SysV key.
func Open(key int) (*Queue, error) {
	t, err := sysvTarget("open", key)
	if err != nil {
		return nil, err
	}
	return OpenAt(t)
}

// Close detaches this handle from the queue; the queue lives on until
// Delete (or Unlink). Calls already in progress finish first (a blocked call
// returns within about 10 ms with ErrHandleClosed); later calls fail with
// ErrHandleClosed. Reservations still live are cancelled and Messages still
// live released: their Bytes() must not be used after Close. To close the
// queue itself for every process, see CloseQueue.
func (q *Queue) Close() error {
	// Calls waiting in C see this within a slice and return; no new call
	// starts once the Lock below is pending.
	atomic.StoreInt32(q.closing, 1)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.h == nil {
		return ErrHandleClosed
	}
	q.zc.endAll() // a reservation or message must not outlive the handle
	C.shmq_queue_free(q.h)
	q.h = nil
	runtime.SetFinalizer(q, nil)
	return nil
}

// Delete removes the queue's name (see Unlink); this and other handles keep
// working until closed. It may be called before or after Close.
func (q *Queue) Delete() error { return Unlink(q.target) }

// EnqueueShift enqueues msg; when the queue is full, the oldest message is
// discarded to make room. It never blocks. Errors (closed queue, msg longer
// than the slot size) drop msg silently: use Shift to see them.
func (q *Queue) EnqueueShift(msg []byte) { _, _ = q.Shift(msg) }

// EnqueueTry enqueues msg if a slot is free and reports whether it did
// (false also for a closed queue or a msg longer than the slot size: use
// TryEnqueue to tell these apart).
func (q *Queue) EnqueueTry(msg []byte) bool { return q.TryEnqueue(msg) == nil }

// EnqueueBlock enqueues msg, waiting while the queue is full until ctx is
// done (then it returns ctx.Err() within about 2 ms, and msg was
// not enqueued). Other errors: ErrClosed, ErrTooLarge.
func (q *Queue) EnqueueBlock(ctx context.Context, msg []byte) error {
	return q.wait(ctx, forever, func() C.enum_shmq_status { return q.enqueueTry(msg) },
		func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
			return q.enqueueWait(msg, total, slice, stop)
		})
}

// DequeueTry dequeues the next message into toMsg and reports whether it
// did (false when the queue is empty or closed, or when the message is
// longer than toMsg: it then stays queued). Use TryDequeue to learn the
// message's length and why it failed.
func (q *Queue) DequeueTry(toMsg []byte) bool {
	_, err := q.TryDequeue(toMsg)
	return err == nil
}

// DequeueBlock dequeues the next message into toMsg, waiting while the
// queue is empty until ctx is done (then it returns ctx.Err() within about
// 2 ms; a message that arrived before is returned, never lost).
// Other errors: ErrClosed (closed and drained), ErrBufferTooSmall (the
// message stays queued). Use Dequeue to learn the message's length.
func (q *Queue) DequeueBlock(ctx context.Context, toMsg []byte) error {
	_, err := q.Dequeue(ctx, toMsg)
	return err
}

// ---- the idiomatic API ----

// Target is where the queue lives.
func (q *Queue) Target() Target { return q.target }

// SlotSize is the largest message, in bytes: a buffer of this size always
// suffices.
func (q *Queue) SlotSize() int { return q.slotSize }

// Cap is the number of slots.
func (q *Queue) Cap() int { return q.capacity }

func bytesPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

func (q *Queue) enqueueTry(msg []byte) C.enum_shmq_status {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return statusHandleClosed
	}
	return C.shmq_queue_enqueue_try(q.h, bytesPtr(msg), C.size_t(len(msg)))
}

func (q *Queue) enqueueWait(msg []byte, total, slice time.Duration, stop *int32) C.enum_shmq_status {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return statusHandleClosed
	}
	if stop == nil {
		stop = q.closing
	}
	return C.go_enqueue_wait(q.h, bytesPtr(msg), C.size_t(len(msg)), C.int64_t(slice), C.int64_t(total),
		(*C.int32_t)(unsafe.Pointer(stop)), (*C.int32_t)(unsafe.Pointer(q.closing)))
}

func (q *Queue) dequeueTry(buf []byte, n *C.size_t) C.enum_shmq_status {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return statusHandleClosed
	}
	return C.shmq_queue_dequeue_try(q.h, bytesPtr(buf), C.size_t(len(buf)), n)
}

func (q *Queue) dequeueWait(buf []byte, total, slice time.Duration, stop *int32, n *C.size_t) C.enum_shmq_status {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return statusHandleClosed
	}
	if stop == nil {
		stop = q.closing
	}
	return C.go_dequeue_wait(q.h, bytesPtr(buf), C.size_t(len(buf)), C.int64_t(slice), C.int64_t(total),
		(*C.int32_t)(unsafe.Pointer(stop)), (*C.int32_t)(unsafe.Pointer(q.closing)), n)
}

// TryEnqueue enqueues msg if a slot is free; it never waits. Errors:
// ErrFull, ErrClosed, ErrTooLarge (nothing was written).
func (q *Queue) TryEnqueue(msg []byte) error { return statusErr(q.enqueueTry(msg)) }

// Shift enqueues msg; when the queue is full it discards the oldest
// messages to make room, and returns how many. It never waits.
func (q *Queue) Shift(msg []byte) (discarded uint64, err error) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return 0, ErrHandleClosed
	}
	var d C.uint64_t
	st := C.shmq_queue_enqueue_shift(q.h, bytesPtr(msg), C.size_t(len(msg)), &d)
	return uint64(d), statusErr(st)
}

// TryDequeue dequeues the next message into buf and returns its length; it
// never waits. Errors: ErrEmpty; ErrClosed once closed and drained;
// ErrBufferTooSmall (the message stays queued; the count returned is the
// length it needs).
func (q *Queue) TryDequeue(buf []byte) (int, error) {
	var n C.size_t
	st := q.dequeueTry(buf, &n)
	return int(n), statusErr(st)
}

// Dequeue dequeues the next message into buf and returns its length,
// waiting while the queue is empty until ctx is done (then it returns
// ctx.Err() within about 2 ms; a message that arrived before is
// returned, never lost). Errors: ErrClosed, ErrBufferTooSmall.
func (q *Queue) Dequeue(ctx context.Context, buf []byte) (int, error) {
	var n C.size_t
	err := q.wait(ctx, forever, func() C.enum_shmq_status { return q.dequeueTry(buf, &n) },
		func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
			return q.dequeueWait(buf, total, slice, stop, &n)
		})
	return int(n), err
}

// DequeueTimeout is Dequeue with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (q *Queue) DequeueTimeout(buf []byte, timeout time.Duration) (int, error) {
	var n C.size_t
	err := q.wait(context.Background(), timeout, func() C.enum_shmq_status { return q.dequeueTry(buf, &n) },
		func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
			return q.dequeueWait(buf, total, slice, stop, &n)
		})
	return int(n), err
}

// EnqueueTimeout is EnqueueBlock with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (q *Queue) EnqueueTimeout(msg []byte, timeout time.Duration) error {
	return q.wait(context.Background(), timeout, func() C.enum_shmq_status { return q.enqueueTry(msg) },
		func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
			return q.enqueueWait(msg, total, slice, stop)
		})
}

// forever is the timeout of the calls that wait without a limit of their
// own (the context ones): any negative timeout waits forever.
const forever time.Duration = -1

const (
	// How long a blocking call retries in Go before it sleeps in the kernel.
	spinFor = 50 * time.Microsecond
	// The longest single sleep in the kernel when a context can cancel the
	// call: bounds how long a cancellation takes to be noticed.
	sliceCancellable = 2 * time.Millisecond
	// ... and when nothing but Close can interrupt it (each slice costs a
	// few microseconds of CPU: longer slices make idle waiting cheaper).
	sliceIdle = 10 * time.Millisecond
)

const statusStopped C.enum_shmq_status = C.GO_STOPPED

// wait runs a blocking queue operation (see blockingCall).
func (q *Queue) wait(ctx context.Context, timeout time.Duration, try func() C.enum_shmq_status,
	block func(total, slice time.Duration, stop *int32) C.enum_shmq_status) error {
	return blockingCall(ctx, timeout, try, block, statusErr)
}

// blockingCall runs a blocking operation: try; spin on try for spinFor;
// then wait in C (see go_slice) until done, with ctx's cancellation and
// Close delivered through flags, for up to timeout (negative: no limit;
// then ErrTimeout). SHMQ_EMPTY and SHMQ_FULL mean "not yet"; any other
// status ends the call, turned into an error by errOf. It returns as soon
// as an attempt succeeds, even if ctx is done by then: a message taken is
// always handed over.
//
// The timeout runs from the end of the first attempt, which never waits:
// a call that succeeds at once reads no clock.
func blockingCall(ctx context.Context, timeout time.Duration, try func() C.enum_shmq_status,
	block func(total, slice time.Duration, stop *int32) C.enum_shmq_status,
	errOf func(C.enum_shmq_status) error) error {
	st := try()
	if st != C.SHMQ_EMPTY && st != C.SHMQ_FULL {
		return errOf(st)
	}
	done := ctx.Done()
	cancelled := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	start := time.Now()
	for i := 1; ; i++ {
		st = try()
		if st != C.SHMQ_EMPTY && st != C.SHMQ_FULL {
			return errOf(st)
		}
		if i%32 == 0 {
			if done != nil && cancelled() {
				return ctx.Err()
			}
			if time.Since(start) > spinFor {
				break
			}
		}
	}

	var stop *int32 // nil: only Close stops the wait
	slice := sliceIdle
	if done != nil {
		slice = sliceCancellable
		stop = new(int32) // read by C during the call; a late store is harmless
		over := make(chan struct{})
		defer close(over)
		go func() {
			select {
			case <-done:
				atomic.StoreInt32(stop, 1)
			case <-over:
			}
		}()
	}
	total := forever
	if timeout >= 0 {
		if total = timeout - time.Since(start); total <= 0 {
			return ErrTimeout
		}
	}
	st = block(total, slice, stop)
	if st == statusStopped {
		if done != nil && cancelled() {
			return ctx.Err()
		}
		return ErrHandleClosed // Close was called
	}
	return errOf(st)
}

// CloseQueue closes the queue for every process: enqueues fail with
// ErrClosed; dequeues drain what is left, then fail with ErrClosed. Blocked
// callers wake. Idempotent. (To release this handle, see Close.)
func (q *Queue) CloseQueue() error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return ErrHandleClosed
	}
	return statusErr(C.shmq_queue_close(q.h))
}

// IsSPSC reports whether the queue is single-producer/single-consumer
// (see WithSPSC).
func (q *Queue) IsSPSC() bool {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return false
	}
	var spsc C.bool
	C.shmq_queue_is_spsc(q.h, &spsc)
	return bool(spsc)
}

// IsClosed reports whether the queue was closed (by any process).
func (q *Queue) IsClosed() bool {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return false
	}
	var closed C.bool
	C.shmq_queue_is_closed(q.h, &closed)
	return bool(closed)
}

// Len is the number of messages waiting (approximate while operations are
// in flight); 0 after Close.
func (q *Queue) Len() int {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return 0
	}
	var n C.uint64_t
	C.shmq_queue_len(q.h, &n)
	return int(n)
}

// Stats reads the queue's counters.
func (q *Queue) Stats() (Stats, error) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return Stats{}, ErrHandleClosed
	}
	var s C.shmq_stats
	if st := C.shmq_queue_stats(q.h, &s); st != C.SHMQ_OK {
		return Stats{}, statusErr(st)
	}
	return Stats{
		Enqueued:   uint64(s.enqueued),
		Dequeued:   uint64(s.dequeued),
		Discarded:  uint64(s.discarded),
		Tombstones: uint64(s.tombstones),
		Len:        uint64(s.len),
		Capacity:   uint64(s.capacity),
	}, nil
}

// Flush writes a file-backed queue to disk; it does nothing for SysV and
// POSIX queues.
func (q *Queue) Flush() error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return ErrHandleClosed
	}
	return setup("flush", q.target, func(msg *C.char) C.enum_shmq_status { return C.go_flush(q.h, msg, errCap) })
}

// ---- targets and options ----

// Target names where a queue lives: "sysv:KEY", "posix:NAME" (/dev/shm) or
// "file:PATH". Build one with SysV, Posix or File; a plain string works too
// (a number is a SysV key, a path with a '/' after its first character a
// file, anything else a POSIX name).
type Target string

// SysV is the target of a SysV shared-memory segment by key.
func SysV(key int) Target { return Target(fmt.Sprintf("sysv:%d", key)) }

// Posix is the target of a POSIX shared-memory object (/dev/shm/NAME).
func Posix(name string) Target { return Target("posix:" + name) }

// File is the target of a regular file, mapped shared: the queue persists
// across restarts.
func File(path string) Target { return Target("file:" + path) }

// Defaults of CreateAt, OpenOrCreateAt, CreateLog and OpenOrCreateLog.
const (
	DefaultSlotSize = 256
	DefaultCapacity = 1024
)

type config struct {
	slotSize int
	capacity int
	mode     os.FileMode
	flags    uint32   // queues only
	reliable bool     // logs only
	single   bool     // logs only: WithSinglePublisher
	cursors  int      // logs only; 0: the default
	durable  []string // logs only: WithDurableCursors
}

// Option sets a parameter of a new queue or log.
type Option func(*config)

// WithSlotSize sets the largest message, in bytes.
func WithSlotSize(bytes int) Option { return func(c *config) { c.slotSize = bytes } }

// WithCapacity sets the number of slots (at least 2).
func WithCapacity(slots int) Option { return func(c *config) { c.capacity = slots } }

// WithMode sets the permission bits of the segment (default 0600).
func WithMode(mode os.FileMode) Option { return func(c *config) { c.mode = mode } }

// WithSPSC makes a single-producer/single-consumer queue: at most one
// call produces and one consumes at a time (each enqueue or dequeue leases
// its role for that call only, so no handle keeps a role between calls; a
// call made while another handle holds the role gets ErrRoleTaken), and in
// exchange no operation executes a locked instruction.
func WithSPSC() Option { return func(c *config) { c.flags |= C.SHMQ_QUEUE_SPSC } }

func versionPtr() uintptr { return uintptr(unsafe.Pointer(C.shmq_version())) }
