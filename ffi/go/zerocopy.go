package shmq

// Zero-copy and batch calls on the work queue, through a Queue or through
// its role handles (Producer, Consumer).
//
// Zero-copy: Reserve hands out a *Reservation whose Bytes() is the slot
// itself, written in place, then published by Commit; Consume hands out a
// *Message whose Bytes() is the slot itself, read in place until Release.
//
// Batches: EnqueueBatch and DequeueBatch move many messages in one call into
// the library (one cgo crossing and one index publication per batch).
//
// Each call is written once for the three handles: the C helpers take a
// go_handle and pick the handle's function; the Go side goes through the
// handle interface (locking against Close, the closing flag, the set of
// live reservations and messages that Close ends).

/*
#include <stdlib.h>
#include "cgo_helpers.h"

// The handle a zero-copy or batch call goes through: a Queue's (q), a
// Producer's (p) or a Consumer's (c); exactly one is set.
typedef struct {
	const shmq_queue *q;
	shmq_producer *p;
	shmq_consumer *c;
} go_handle;

// One attempt of each call through the handle, waiting up to t ns (0:
// never waits).
static enum shmq_status go_reserve(go_handle h, size_t len, int64_t t, shmq_reservation **res, uint8_t **buf) {
	return h.p ? shmq_producer_reserve(h.p, len, t, res, buf) : shmq_queue_reserve(h.q, len, t, res, buf);
}

static enum shmq_status go_consume(go_handle h, int64_t t, shmq_message **msg, const uint8_t **data, size_t *len) {
	return h.c ? shmq_consumer_consume(h.c, t, msg, data, len) : shmq_queue_consume(h.q, t, msg, data, len);
}

static enum shmq_status go_enqueue_batch_once(go_handle h, const shmq_iovec *v, size_t count, int64_t t,
                                              size_t *n) {
	return h.p ? shmq_producer_enqueue_batch(h.p, v, count, t, n) : shmq_queue_enqueue_batch(h.q, v, count, t, n);
}

static enum shmq_status go_dequeue_batch_once(go_handle h, uint8_t *buf, size_t buf_len, size_t *lens, size_t max,
                                              int64_t t, size_t *n) {
	return h.c ? shmq_consumer_dequeue_batch(h.c, buf, buf_len, lens, max, t, n)
	           : shmq_queue_dequeue_batch(h.q, buf, buf_len, lens, max, t, n);
}

// The attempts that never wait return their outputs by value: no Go
// pointer crosses into C on the fast path (cgo neither checks nor moves
// the outputs to the heap).
typedef struct {
	enum shmq_status st;
	shmq_reservation *res;
	uint8_t *buf;
} go_reserved;

typedef struct {
	enum shmq_status st;
	shmq_message *msg;
	const uint8_t *data;
	size_t len;
} go_consumed;

static go_reserved go_reserve_try(go_handle h, size_t len) {
	go_reserved r = {0};
	r.st = go_reserve(h, len, 0, &r.res, &r.buf);
	return r;
}

static go_consumed go_consume_try(go_handle h) {
	go_consumed c = {0};
	c.st = go_consume(h, 0, &c.msg, &c.data, &c.len);
	return c;
}

// The blocking phases of the calls (see GO_WAIT_RETURN): in slices,
// stopped by *stop or *closing (GO_STOPPED).
static enum shmq_status go_reserve_wait(go_handle h, size_t len, int64_t slice_ns, int64_t total_ns,
                                        const int32_t *stop, const int32_t *closing, shmq_reservation **res,
                                        uint8_t **buf) {
	GO_WAIT_RETURN(slice_ns, total_ns, stop, closing, go_reserve(h, len, t, res, buf));
}

static enum shmq_status go_consume_wait(go_handle h, int64_t slice_ns, int64_t total_ns, const int32_t *stop,
                                        const int32_t *closing, shmq_message **msg, const uint8_t **data,
                                        size_t *len) {
	GO_WAIT_RETURN(slice_ns, total_ns, stop, closing, go_consume(h, t, msg, data, len));
}

static enum shmq_status go_dequeue_batch_wait(go_handle h, uint8_t *buf, size_t buf_len, size_t *lens, size_t max,
                                              int64_t slice_ns, int64_t total_ns, const int32_t *stop,
                                              const int32_t *closing, size_t *n) {
	GO_WAIT_RETURN(slice_ns, total_ns, stop, closing, go_dequeue_batch_once(h, buf, buf_len, lens, max, t, n));
}

static enum shmq_status go_iovec_wait(go_handle h, const shmq_iovec *v, size_t count, int64_t slice_ns,
                                      int64_t total_ns, const int32_t *stop, const int32_t *closing, size_t *n) {
	GO_WAIT_RETURN(slice_ns, total_ns, stop, closing, go_enqueue_batch_once(h, v, count, t, n));
}

// EnqueueBatch's messages arrive packed in one buffer (Go memory may not
// hold pointers to Go memory when passed to C): this builds the iovecs, on
// the stack for up to 64 messages, and enqueues them in one call. With
// total_ns == 0 it never waits (stop and closing may then be NULL).
static enum shmq_status go_enqueue_batch(go_handle h, const uint8_t *data, const size_t *lens, size_t count,
                                         int64_t slice_ns, int64_t total_ns, const int32_t *stop,
                                         const int32_t *closing, size_t *n) {
	shmq_iovec local[64];
	shmq_iovec *v = count <= 64 ? local : malloc(count * sizeof(shmq_iovec));
	if (v == NULL) return SHMQ_INVALID_ARGUMENT; // no memory for the iovecs
	size_t off = 0;
	for (size_t i = 0; i < count; i++) {
		v[i].base = data + off;
		v[i].len = lens[i];
		off += lens[i];
	}
	enum shmq_status s = total_ns == 0 ? go_enqueue_batch_once(h, v, count, 0, n)
	                                   : go_iovec_wait(h, v, count, slice_ns, total_ns, stop, closing, n);
	if (v != local) free(v);
	return s;
}
*/
import "C"

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"
)

// debugViews is set by SHMQ_GO_DEBUG=1 in the environment at start: the
// views of reservations and messages are then Go buffers (see Reservation
// and Message), poisoned with poisonByte when they end, so that a use after
// Commit, Cancel or Release shows up in tests.
var debugViews = os.Getenv("SHMQ_GO_DEBUG") == "1"

// poisonByte fills a debug-mode view once its reservation or message ended.
const poisonByte = 0xdb

// handle is what the zero-copy and batch calls need of the handle they go
// through: *Queue, *Producer or *Consumer.
type handle interface {
	// lock keeps Close off the handle until unlock, and returns the C
	// handle; false (and nothing left locked) once the handle is closed.
	lock() (C.go_handle, bool)
	unlock()
	// closingFlag is set by Close (never reset): a wait in C stops.
	closingFlag() *int32
	// live are the reservations and messages made through the handle:
	// its Close ends those still live (a slot handle must not outlive the
	// handle it came from in the library).
	live() *zeroCopy
}

func (q *Queue) lock() (C.go_handle, bool) {
	q.mu.RLock() // shared: a Queue's calls run side by side
	if q.h == nil {
		q.mu.RUnlock()
		return C.go_handle{}, false
	}
	return C.go_handle{q: q.h}, true
}

func (q *Queue) unlock()             { q.mu.RUnlock() }
func (q *Queue) closingFlag() *int32 { return q.closing }
func (q *Queue) live() *zeroCopy     { return &q.zc }

func (p *Producer) lock() (C.go_handle, bool) {
	p.mu.Lock() // exclusive: the C producer is used by one thread at a time
	if p.h == nil {
		p.mu.Unlock()
		return C.go_handle{}, false
	}
	return C.go_handle{p: p.h}, true
}

func (p *Producer) unlock()             { p.mu.Unlock() }
func (p *Producer) closingFlag() *int32 { return p.closing }
func (p *Producer) live() *zeroCopy     { return &p.zc }

func (c *Consumer) lock() (C.go_handle, bool) {
	c.mu.Lock() // as Producer.lock
	if c.h == nil {
		c.mu.Unlock()
		return C.go_handle{}, false
	}
	return C.go_handle{c: c.h}, true
}

func (c *Consumer) unlock()             { c.mu.Unlock() }
func (c *Consumer) closingFlag() *int32 { return c.closing }
func (c *Consumer) live() *zeroCopy     { return &c.zc }

// callHandle runs one call through o: f gets the C handle, locked against
// Close for the call, and the flags a wait in C looks at (stop, or o's
// closing flag when stop is nil, and o's closing flag).
// statusHandleClosed once o is closed.
func callHandle(o handle, stop *int32,
	f func(h C.go_handle, stop, closing *C.int32_t) C.enum_shmq_status) C.enum_shmq_status {
	h, ok := o.lock()
	if !ok {
		return statusHandleClosed
	}
	defer o.unlock()
	closing := o.closingFlag()
	if stop == nil {
		stop = closing
	}
	return f(h, (*C.int32_t)(unsafe.Pointer(stop)), (*C.int32_t)(unsafe.Pointer(closing)))
}

// attemptOrWait runs attempt once, never waiting (total 0), or, when
// wait, as a blocking call until ctx is done or timeout passes (see
// blockingCall).
func attemptOrWait(ctx context.Context, timeout time.Duration, wait bool,
	attempt func(total, slice time.Duration, stop *int32) C.enum_shmq_status) error {
	try := func() C.enum_shmq_status { return attempt(0, 0, nil) }
	if !wait {
		return statusErr(try())
	}
	return blockingCall(ctx, timeout, try, attempt, statusErr)
}

// zeroCopy is what a handle knows of its live reservations and messages:
// an intrusive list (no allocation or hashing per reservation).
type zeroCopy struct {
	mu   sync.Mutex
	head *zcNode // the live ones, most recent first
}

// zcNode links a live Reservation or Message (e) into its handle's list.
type zcNode struct {
	prev, next *zcNode
	e          interface{ end() }
}

func (z *zeroCopy) add(n *zcNode) {
	z.mu.Lock()
	n.prev, n.next = nil, z.head
	if z.head != nil {
		z.head.prev = n
	}
	z.head = n
	z.mu.Unlock()
}

// remove unlinks n, which is in the list (the caller checked it is live
// under the handle's lock).
func (z *zeroCopy) remove(n *zcNode) {
	z.mu.Lock()
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		z.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	}
	n.prev, n.next = nil, nil
	z.mu.Unlock()
}

// endAll ends every live reservation (cancelled) and message (released);
// the caller's Close holds the handle's lock.
func (z *zeroCopy) endAll() {
	z.mu.Lock()
	n := z.head
	z.head = nil
	z.mu.Unlock()
	for n != nil {
		next := n.next
		n.prev, n.next = nil, nil
		n.e.end()
		n = next
	}
}

func poison(b []byte) {
	for i := range b {
		b[i] = poisonByte
	}
}

// Reservation is a slot reserved by TryReserve, Reserve or ReserveTimeout
// of a Queue or a Producer, to be written in place and then published by
// Commit or given back by Cancel. End it with exactly one of them, soon: on
// a multi-producer queue later messages wait behind it; on an SPSC queue it
// holds the producer role; a Producer's other calls fail with
// ErrInvalidArgument until it ends (one reservation at a time per
// Producer). Commit and Cancel may be called from any goroutine, but one
// Reservation must not be used by two goroutines at once.
//
// Lifetime of Bytes(): the slice is the slot, in shared memory, and is valid
// only until Commit or Cancel (or Close of the Queue or Producer it came
// from, which cancels the reservations still live). Do not keep it, or any
// slice of it, beyond: the slot then belongs to other processes, or is
// unmapped. Bytes() itself panics once the reservation ended. With
// SHMQ_GO_DEBUG=1 in the environment, Bytes() is instead a Go buffer that
// Commit copies into the slot and then fills with 0xdb bytes, as Cancel
// does: a view read after the end sees the poison, and a write after the
// end changes nothing shared.
type Reservation struct {
	node  zcNode // in the live list of o while h != nil
	o     handle
	h     *C.shmq_reservation // nil once ended
	view  []byte
	debug []byte // the Go buffer of debug mode, or nil
}

// Bytes is the reserved slot, of the length asked for: write the message
// into it, then Commit its length. It panics if the reservation ended.
func (r *Reservation) Bytes() []byte {
	if r.h == nil {
		panic("shmq: Reservation.Bytes after Commit or Cancel")
	}
	if r.debug != nil {
		return r.debug
	}
	return r.view
}

// Len is the number of bytes reserved (len of Bytes()).
func (r *Reservation) Len() int { return len(r.view) }

// Commit publishes the first n bytes of the slot as a message and ends the
// reservation (also when it fails). Errors: ErrTooLarge when n is more than
// was reserved or negative (nothing published), ErrInvalidArgument when the
// reservation already ended, ErrHandleClosed when the Queue or Producer it
// came from was closed (Close cancelled it).
func (r *Reservation) Commit(n int) error {
	if _, ok := r.o.lock(); !ok {
		return ErrHandleClosed
	}
	defer r.o.unlock()
	h := r.h
	if h == nil {
		return fmt.Errorf("%w: reservation already committed or cancelled", ErrInvalidArgument)
	}
	r.o.live().remove(&r.node)
	if n < 0 || n > len(r.view) {
		r.end()
		return fmt.Errorf("%w: commit of %d bytes in a reservation of %d", ErrTooLarge, n, len(r.view))
	}
	r.h = nil
	if r.debug != nil {
		copy(r.view, r.debug[:n])
	}
	st := C.shmq_reservation_commit(h, C.size_t(n))
	r.poison()
	return statusErr(st)
}

// Cancel gives the slot back unpublished and ends the reservation. It does
// nothing if the reservation already ended, so `defer r.Cancel()` is a safe
// guard on paths that may not reach Commit.
func (r *Reservation) Cancel() {
	if _, ok := r.o.lock(); !ok {
		return // Close cancelled it
	}
	defer r.o.unlock()
	if r.h != nil {
		r.o.live().remove(&r.node)
		r.end()
	}
}

// end cancels the reservation if still live; the caller holds the lock of
// its handle (Cancel, a failed Commit, or Close through endAll).
func (r *Reservation) end() {
	if r.h != nil {
		C.shmq_reservation_cancel(r.h)
		r.h = nil
		r.poison()
	}
}

func (r *Reservation) poison() {
	if r.debug != nil {
		poison(r.debug)
	}
}

// Message is a message taken by TryConsume, Consume or ConsumeTimeout of a
// Queue or a Consumer, to be read in place and then released by Release.
// Until Release its slot is not reused: release it promptly (a Consumer's
// other calls fail with ErrInvalidArgument until then: one message at a
// time per Consumer).
//
// Lifetime of Bytes(): the slice is the slot, in shared memory, read-only
// (do not write into it), valid only until Release (or Close of the Queue
// or Consumer it came from, which releases the messages still live). Copy
// what you keep beyond. Bytes() itself panics once released. The bytes are
// shared memory: a process that breaks the protocol could change them
// while you read (the length was checked against the slot size). With
// SHMQ_GO_DEBUG=1 in the environment, Bytes() is instead a Go copy of the
// slot, filled with 0xdb bytes by Release: a view read after Release sees
// the poison.
type Message struct {
	node  zcNode // in the live list of o while h != nil
	o     handle
	h     *C.shmq_message // nil once released
	view  []byte
	debug []byte
}

// Bytes is the message, read in place. It panics after Release.
func (m *Message) Bytes() []byte {
	if m.h == nil {
		panic("shmq: Message.Bytes after Release")
	}
	if m.debug != nil {
		return m.debug
	}
	return m.view
}

// Len is the message's length.
func (m *Message) Len() int { return len(m.view) }

// Release frees the message's slot for producers. It does nothing if the
// message was already released (`defer m.Release()` is safe).
func (m *Message) Release() {
	if _, ok := m.o.lock(); !ok {
		return // Close released it
	}
	defer m.o.unlock()
	if m.h != nil {
		m.o.live().remove(&m.node)
		m.end()
	}
}

// end releases the message if still live; the caller holds the lock of
// its handle (Release, or Close through endAll).
func (m *Message) end() {
	if m.h != nil {
		C.shmq_message_release(m.h)
		m.h = nil
		if m.debug != nil {
			poison(m.debug)
		}
	}
}

// newReservation and newMessage run under the same lock as the call that
// made the slot handle: Close cannot free the handle before the new one
// is in its live set.
func newReservation(o handle, h *C.shmq_reservation, buf *C.uint8_t, n int) *Reservation {
	r := &Reservation{o: o, h: h}
	r.node.e = r
	if n > 0 {
		r.view = unsafe.Slice((*byte)(unsafe.Pointer(buf)), n)
	} else {
		r.view = []byte{}
	}
	if debugViews {
		r.debug = make([]byte, n)
	}
	o.live().add(&r.node)
	return r
}

func newMessage(o handle, h *C.shmq_message, data *C.uint8_t, n C.size_t) *Message {
	m := &Message{o: o, h: h}
	m.node.e = m
	if n > 0 {
		m.view = unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n))
	} else {
		m.view = []byte{}
	}
	if debugViews {
		m.debug = append([]byte(nil), m.view...)
	}
	o.live().add(&m.node)
	return m
}

// reserveTry is one attempt of reserve that never waits.
func reserveTry(o handle, n int) (*Reservation, C.enum_shmq_status) {
	h, ok := o.lock()
	if !ok {
		return nil, statusHandleClosed
	}
	defer o.unlock()
	out := C.go_reserve_try(h, C.size_t(n))
	if out.st != C.SHMQ_OK {
		return nil, out.st
	}
	return newReservation(o, out.res, out.buf, n), C.SHMQ_OK
}

// reserve is TryReserve (wait false), Reserve and ReserveTimeout of o.
func reserve(o handle, ctx context.Context, timeout time.Duration, n int, wait bool) (*Reservation, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: reserve of %d bytes", ErrInvalidArgument, n)
	}
	if !wait {
		r, st := reserveTry(o, n)
		return r, statusErr(st)
	}
	var r *Reservation
	err := blockingCall(ctx, timeout, func() (st C.enum_shmq_status) {
		r, st = reserveTry(o, n)
		return st
	}, func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
		return callHandle(o, stop, func(h C.go_handle, stop, closing *C.int32_t) C.enum_shmq_status {
			var res *C.shmq_reservation
			var buf *C.uint8_t
			st := C.go_reserve_wait(h, C.size_t(n), C.int64_t(slice), C.int64_t(total), stop, closing, &res, &buf)
			if st == C.SHMQ_OK {
				r = newReservation(o, res, buf, n)
			}
			return st
		})
	}, statusErr)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// consumeTry is one attempt of consume that never waits.
func consumeTry(o handle) (*Message, C.enum_shmq_status) {
	h, ok := o.lock()
	if !ok {
		return nil, statusHandleClosed
	}
	defer o.unlock()
	out := C.go_consume_try(h)
	if out.st != C.SHMQ_OK {
		return nil, out.st
	}
	return newMessage(o, out.msg, out.data, out.len), C.SHMQ_OK
}

// consume is TryConsume (wait false), Consume and ConsumeTimeout of o.
func consume(o handle, ctx context.Context, timeout time.Duration, wait bool) (*Message, error) {
	if !wait {
		m, st := consumeTry(o)
		return m, statusErr(st)
	}
	var m *Message
	err := blockingCall(ctx, timeout, func() (st C.enum_shmq_status) {
		m, st = consumeTry(o)
		return st
	}, func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
		return callHandle(o, stop, func(h C.go_handle, stop, closing *C.int32_t) C.enum_shmq_status {
			var msg *C.shmq_message
			var data *C.uint8_t
			var n C.size_t
			st := C.go_consume_wait(h, C.int64_t(slice), C.int64_t(total), stop, closing, &msg, &data, &n)
			if st == C.SHMQ_OK {
				m = newMessage(o, msg, data, n)
			}
			return st
		})
	}, statusErr)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// TryReserve reserves a slot for a message of up to n bytes (at most
// SlotSize), to be written in place through the returned Reservation's
// Bytes() and published by its Commit; it never waits. Errors: ErrFull,
// ErrClosed, ErrTooLarge, ErrRoleTaken (SPSC). See Reservation for the
// lifetime of the slot.
func (q *Queue) TryReserve(n int) (*Reservation, error) {
	return reserve(q, context.Background(), forever, n, false)
}

// Reserve is TryReserve that waits while the queue is full until ctx is
// done (then it returns ctx.Err() within about 2 ms).
func (q *Queue) Reserve(ctx context.Context, n int) (*Reservation, error) {
	return reserve(q, ctx, forever, n, true)
}

// ReserveTimeout is Reserve with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (q *Queue) ReserveTimeout(n int, timeout time.Duration) (*Reservation, error) {
	return reserve(q, context.Background(), timeout, n, true)
}

// TryConsume takes the next message to read in place through the returned
// Message's Bytes(), until its Release; it never waits. Errors: ErrEmpty;
// ErrClosed once closed and drained; ErrRoleTaken (SPSC). See Message for
// the lifetime of the bytes.
func (q *Queue) TryConsume() (*Message, error) {
	return consume(q, context.Background(), forever, false)
}

// Consume is TryConsume that waits while the queue is empty until ctx is
// done (then it returns ctx.Err() within about 2 ms; a message taken
// before is returned, never lost).
func (q *Queue) Consume(ctx context.Context) (*Message, error) {
	return consume(q, ctx, forever, true)
}

// ConsumeTimeout is Consume with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (q *Queue) ConsumeTimeout(timeout time.Duration) (*Message, error) {
	return consume(q, context.Background(), timeout, true)
}

// ---- batches ----

// enqueueBatch is the batch enqueue of o, never waiting or (wait) waiting
// for the first message to fit. The messages are packed once, before any
// attempt.
func enqueueBatch(o handle, ctx context.Context, timeout time.Duration, msgs [][]byte, wait bool) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	pk := batchPacks.Get().(*batchPack)
	defer batchPacks.Put(pk)
	if cap(pk.data) < total {
		pk.data = make([]byte, total)
	}
	if cap(pk.lens) < len(msgs) {
		pk.lens = make([]C.size_t, len(msgs))
	}
	data, lens := pk.data[:total], pk.lens[:len(msgs)]
	off := 0
	for i, m := range msgs {
		off += copy(data[off:], m)
		lens[i] = C.size_t(len(m))
	}
	var n C.size_t
	err := attemptOrWait(ctx, timeout, wait, func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
		return callHandle(o, stop, func(h C.go_handle, stop, closing *C.int32_t) C.enum_shmq_status {
			return C.go_enqueue_batch(h, bytesPtr(data), &lens[0], C.size_t(len(msgs)), C.int64_t(slice),
				C.int64_t(total), stop, closing, &n)
		})
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// batchPack is the packed copy of a batch that enqueueBatch hands to C
// (cgo may not be handed Go pointers to Go pointers), kept for the next
// batch instead of allocated per call.
type batchPack struct {
	data []byte
	lens []C.size_t
}

var batchPacks = sync.Pool{New: func() any { return new(batchPack) }}

// dequeueBatch is the batch dequeue of o, never waiting or (wait) waiting
// for the first message. On ErrBufferTooSmall lens[0] is the length the
// first message needs.
func dequeueBatch(o handle, ctx context.Context, timeout time.Duration, buf []byte, lens []int, wait bool) (int, error) {
	if len(lens) == 0 {
		return 0, fmt.Errorf("%w: lens is empty", ErrInvalidArgument)
	}
	var small [64]C.size_t
	var clens []C.size_t
	if len(lens) <= len(small) {
		clens = small[:len(lens)]
	} else {
		clens = make([]C.size_t, len(lens))
	}
	var n C.size_t
	var last C.enum_shmq_status
	err := attemptOrWait(ctx, timeout, wait, func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
		last = callHandle(o, stop, func(h C.go_handle, stop, closing *C.int32_t) C.enum_shmq_status {
			if total == 0 {
				return C.go_dequeue_batch_once(h, bytesPtr(buf), C.size_t(len(buf)), &clens[0],
					C.size_t(len(clens)), 0, &n)
			}
			return C.go_dequeue_batch_wait(h, bytesPtr(buf), C.size_t(len(buf)), &clens[0], C.size_t(len(clens)),
				C.int64_t(slice), C.int64_t(total), stop, closing, &n)
		})
		return last
	})
	if err != nil {
		if last == C.SHMQ_BUFFER_TOO_SMALL {
			lens[0] = int(clens[0])
		}
		return 0, err
	}
	for i := 0; i < int(n); i++ {
		lens[i] = int(clens[i])
	}
	return int(n), nil
}

// EnqueueBatch enqueues as many of msgs as fit now, in order, in one call
// into the library (one cgo crossing, one index publication), and returns
// how many: a prefix of msgs, at least 1 when err is nil. It never waits.
// The batch also stops before a message longer than SlotSize. Errors, with
// nothing enqueued: ErrFull, ErrClosed, ErrTooLarge (the first message),
// ErrRoleTaken (SPSC). The messages are copied once into a packed buffer
// before the call (cgo may not be handed Go pointers to Go pointers).
func (q *Queue) EnqueueBatch(msgs [][]byte) (int, error) {
	return enqueueBatch(q, context.Background(), forever, msgs, false)
}

// EnqueueBatchTimeout is EnqueueBatch that waits up to timeout while not
// even the first message fits (ErrTimeout when it passes; a negative timeout
// waits forever), then enqueues what fits.
func (q *Queue) EnqueueBatchTimeout(msgs [][]byte, timeout time.Duration) (int, error) {
	return enqueueBatch(q, context.Background(), timeout, msgs, true)
}

// DequeueBatch dequeues up to len(lens) messages that are ready now into
// buf, packed one after the other, in one call into the library (one cgo
// crossing, one index publication); it writes their lengths to lens[:n]
// and returns n. Message i is buf[off_i : off_i+lens[i]] with off_i the sum
// of lens[:i]. Messages that do not fit in what is left of buf stay queued.
// It never waits. Errors, with nothing dequeued: ErrEmpty; ErrClosed once
// closed and drained; ErrBufferTooSmall when the first message alone does
// not fit (then lens[0] is the length it needs); ErrInvalidArgument (lens
// is empty).
func (q *Queue) DequeueBatch(buf []byte, lens []int) (int, error) {
	return dequeueBatch(q, context.Background(), forever, buf, lens, false)
}

// DequeueBatchTimeout is DequeueBatch that waits up to timeout for the
// first message (ErrTimeout when it passes; a negative timeout waits
// forever), then takes what else is ready.
func (q *Queue) DequeueBatchTimeout(buf []byte, lens []int, timeout time.Duration) (int, error) {
	return dequeueBatch(q, context.Background(), timeout, buf, lens, true)
}
