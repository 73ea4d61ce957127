package shmq

// Zero-copy and batch calls on the work queue.
//
// Zero-copy: Reserve hands out a *Reservation whose Bytes() is the slot
// itself, written in place, then published by Commit; Consume hands out a
// *Message whose Bytes() is the slot itself, read in place until Release.
//
// Batches: EnqueueBatch and DequeueBatch move many messages in one call into
// the library (one cgo crossing and one index publication per batch).

/*
#include <stdlib.h>
#include "cgo_helpers.h"

// The blocking phases of ReserveTimeout/ConsumeTimeout and of the batch
// calls: as go_enqueue_wait in shmq.go, in slices, stopped by *stop or
// *closing (GO_STOPPED).
static enum shmq_status go_reserve_wait(const shmq_queue *q, size_t len, int64_t slice_ns, int64_t total_ns,
                                        const int32_t *stop, const int32_t *closing, shmq_reservation **res,
                                        uint8_t **buf) {
	int64_t end = total_ns < 0 ? INT64_MAX : go_now_ns() + total_ns, t;
	while (go_slice(end, slice_ns, stop, closing, &t)) {
		if (t <= 0) return SHMQ_TIMEOUT;
		enum shmq_status s = shmq_queue_reserve(q, len, t, res, buf);
		if (s != SHMQ_TIMEOUT) return s;
	}
	return GO_STOPPED;
}

static enum shmq_status go_consume_wait(const shmq_queue *q, int64_t slice_ns, int64_t total_ns,
                                        const int32_t *stop, const int32_t *closing, shmq_message **msg,
                                        const uint8_t **data, size_t *len) {
	int64_t end = total_ns < 0 ? INT64_MAX : go_now_ns() + total_ns, t;
	while (go_slice(end, slice_ns, stop, closing, &t)) {
		if (t <= 0) return SHMQ_TIMEOUT;
		enum shmq_status s = shmq_queue_consume(q, t, msg, data, len);
		if (s != SHMQ_TIMEOUT) return s;
	}
	return GO_STOPPED;
}

// EnqueueBatch's messages arrive packed in one buffer (Go memory may not
// hold pointers to Go memory when passed to C): this builds the iovecs, on
// the stack for up to 64 messages, and enqueues them in one call. With
// total_ns == 0 it never waits (stop and closing may then be NULL).
static enum shmq_status go_enqueue_batch(const shmq_queue *q, const uint8_t *data, const size_t *lens,
                                         size_t count, int64_t slice_ns, int64_t total_ns, const int32_t *stop,
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
	enum shmq_status s;
	if (total_ns == 0) {
		s = shmq_queue_enqueue_batch(q, v, count, 0, n);
	} else {
		int64_t end = total_ns < 0 ? INT64_MAX : go_now_ns() + total_ns, t;
		s = GO_STOPPED;
		while (go_slice(end, slice_ns, stop, closing, &t)) {
			if (t <= 0) { s = SHMQ_TIMEOUT; break; }
			s = shmq_queue_enqueue_batch(q, v, count, t, n);
			if (s != SHMQ_TIMEOUT) break;
			s = GO_STOPPED;
		}
	}
	if (v != local) free(v);
	return s;
}

static enum shmq_status go_dequeue_batch_wait(const shmq_queue *q, uint8_t *buf, size_t buf_len, size_t *lens,
                                              size_t max, int64_t slice_ns, int64_t total_ns, const int32_t *stop,
                                              const int32_t *closing, size_t *n) {
	int64_t end = total_ns < 0 ? INT64_MAX : go_now_ns() + total_ns, t;
	while (go_slice(end, slice_ns, stop, closing, &t)) {
		if (t <= 0) return SHMQ_TIMEOUT;
		enum shmq_status s = shmq_queue_dequeue_batch(q, buf, buf_len, lens, max, t, n);
		if (s != SHMQ_TIMEOUT) return s;
	}
	return GO_STOPPED;
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

// zeroCopy is what a Queue knows of its live reservations and messages:
// Close ends those still live (a slot handle must not outlive its queue
// handle in the library).
type zeroCopy struct {
	mu   sync.Mutex
	live map[zcEnder]struct{}
}

type zcEnder interface{ endByClose() }

func (z *zeroCopy) add(e zcEnder) {
	z.mu.Lock()
	if z.live == nil {
		z.live = make(map[zcEnder]struct{})
	}
	z.live[e] = struct{}{}
	z.mu.Unlock()
}

func (z *zeroCopy) remove(e zcEnder) {
	z.mu.Lock()
	delete(z.live, e)
	z.mu.Unlock()
}

// endAll ends every live reservation (cancelled) and message (released);
// the caller holds q.mu exclusively.
func (z *zeroCopy) endAll() {
	z.mu.Lock()
	live := z.live
	z.live = nil
	z.mu.Unlock()
	for e := range live {
		e.endByClose()
	}
}

func poison(b []byte) {
	for i := range b {
		b[i] = poisonByte
	}
}

// Reservation is a slot of a Queue reserved by TryReserve, Reserve or
// ReserveTimeout, to be written in place and then published by Commit or
// given back by Cancel. End it with exactly one of them, soon: on a
// multi-producer queue later messages wait behind it, on an SPSC queue it
// holds the producer role. Commit and Cancel may be called from any
// goroutine, but one Reservation must not be used by two goroutines at once.
//
// Lifetime of Bytes(): the slice is the slot, in shared memory, and is valid
// only until Commit or Cancel (or Close of the Queue, which cancels the
// reservations still live). Do not keep it, or any slice of it, beyond: the
// slot then belongs to other processes, or is unmapped. Bytes() itself
// panics once the reservation ended. With SHMQ_GO_DEBUG=1 in the
// environment, Bytes() is instead a Go buffer that Commit copies into the
// slot and then fills with 0xdb bytes, as Cancel does: a view read after
// the end sees the poison, and a write after the end changes nothing shared.
type Reservation struct {
	q     *Queue
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
// reservation already ended, ErrHandleClosed when the Queue was closed
// (Close cancelled it).
func (r *Reservation) Commit(n int) error {
	q := r.q
	q.mu.RLock()
	defer q.mu.RUnlock()
	h := r.h
	if h == nil {
		if q.h == nil {
			return ErrHandleClosed
		}
		return fmt.Errorf("%w: reservation already committed or cancelled", ErrInvalidArgument)
	}
	r.h = nil
	q.zc.remove(r)
	if n < 0 || n > len(r.view) {
		C.shmq_reservation_cancel(h)
		r.poison()
		return fmt.Errorf("%w: commit of %d bytes in a reservation of %d", ErrTooLarge, n, len(r.view))
	}
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
	q := r.q
	q.mu.RLock()
	defer q.mu.RUnlock()
	if r.h == nil {
		return
	}
	C.shmq_reservation_cancel(r.h)
	r.h = nil
	q.zc.remove(r)
	r.poison()
}

func (r *Reservation) endByClose() {
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

// Message is a message of a Queue taken by TryConsume, Consume or
// ConsumeTimeout, to be read in place and then released by Release. Until
// Release its slot is not reused: release it promptly.
//
// Lifetime of Bytes(): the slice is the slot, in shared memory, read-only
// (do not write into it), valid only until Release (or Close of the Queue, which releases the messages still
// live). Copy what you keep beyond. Bytes() itself panics once released.
// The bytes are shared memory: a process that breaks the protocol could
// change them while you read (the length was checked against the slot
// size). With SHMQ_GO_DEBUG=1 in the environment, Bytes() is instead a Go
// copy of the slot, filled with 0xdb bytes by Release: a view read after
// Release sees the poison.
type Message struct {
	q     *Queue
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
	q := m.q
	q.mu.RLock()
	defer q.mu.RUnlock()
	if m.h == nil {
		return
	}
	C.shmq_message_release(m.h)
	m.h = nil
	q.zc.remove(m)
	if m.debug != nil {
		poison(m.debug)
	}
}

func (m *Message) endByClose() {
	if m.h != nil {
		C.shmq_message_release(m.h)
		m.h = nil
		if m.debug != nil {
			poison(m.debug)
		}
	}
}

func (q *Queue) newReservation(h *C.shmq_reservation, buf *C.uint8_t, n int) *Reservation {
	r := &Reservation{q: q, h: h}
	if n > 0 {
		r.view = unsafe.Slice((*byte)(unsafe.Pointer(buf)), n)
	} else {
		r.view = []byte{}
	}
	if debugViews {
		r.debug = make([]byte, n)
	}
	q.zc.add(r)
	return r
}

func (q *Queue) newMessage(h *C.shmq_message, data *C.uint8_t, n C.size_t) *Message {
	m := &Message{q: q, h: h}
	if n > 0 {
		m.view = unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n))
	} else {
		m.view = []byte{}
	}
	if debugViews {
		m.debug = append([]byte(nil), m.view...)
	}
	q.zc.add(m)
	return m
}

func (q *Queue) reserveTry(n int, out **Reservation) C.enum_shmq_status {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return statusHandleClosed
	}
	var res *C.shmq_reservation
	var buf *C.uint8_t
	st := C.shmq_queue_reserve(q.h, C.size_t(n), 0, &res, &buf)
	if st == C.SHMQ_OK {
		// Under the same read lock as the call: Close cannot free the
		// queue handle before the reservation is in q.zc.
		*out = q.newReservation(res, buf, n)
	}
	return st
}

func (q *Queue) reserveWait(n int, total, slice time.Duration, stop *int32, out **Reservation) C.enum_shmq_status {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return statusHandleClosed
	}
	if stop == nil {
		stop = q.closing
	}
	var res *C.shmq_reservation
	var buf *C.uint8_t
	st := C.go_reserve_wait(q.h, C.size_t(n), C.int64_t(slice), C.int64_t(total),
		(*C.int32_t)(unsafe.Pointer(stop)), (*C.int32_t)(unsafe.Pointer(q.closing)), &res, &buf)
	if st == C.SHMQ_OK {
		*out = q.newReservation(res, buf, n) // see reserveTry
	}
	return st
}

func (q *Queue) reserve(ctx context.Context, until time.Time, n int, wait bool) (*Reservation, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: reserve of %d bytes", ErrInvalidArgument, n)
	}
	var r *Reservation
	try := func() C.enum_shmq_status { return q.reserveTry(n, &r) }
	var err error
	if wait {
		err = q.wait(ctx, until, try, func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
			return q.reserveWait(n, total, slice, stop, &r)
		})
	} else {
		err = statusErr(try())
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// TryReserve reserves a slot for a message of up to n bytes (at most
// SlotSize), to be written in place through the returned Reservation's
// Bytes() and published by its Commit; it never waits. Errors: ErrFull,
// ErrClosed, ErrTooLarge, ErrRoleTaken (SPSC). See Reservation for the
// lifetime of the slot.
func (q *Queue) TryReserve(n int) (*Reservation, error) {
	return q.reserve(context.Background(), time.Time{}, n, false)
}

// Reserve is TryReserve that waits while the queue is full until ctx is
// done (then it returns ctx.Err() within about 2 ms).
func (q *Queue) Reserve(ctx context.Context, n int) (*Reservation, error) {
	return q.reserve(ctx, time.Time{}, n, true)
}

// ReserveTimeout is Reserve with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (q *Queue) ReserveTimeout(n int, timeout time.Duration) (*Reservation, error) {
	return q.reserve(context.Background(), deadline(timeout), n, true)
}

func (q *Queue) consumeTry(out **Message) C.enum_shmq_status {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return statusHandleClosed
	}
	var msg *C.shmq_message
	var data *C.uint8_t
	var n C.size_t
	st := C.shmq_queue_consume(q.h, 0, &msg, &data, &n)
	if st == C.SHMQ_OK {
		*out = q.newMessage(msg, data, n) // see reserveTry
	}
	return st
}

func (q *Queue) consumeWait(total, slice time.Duration, stop *int32, out **Message) C.enum_shmq_status {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return statusHandleClosed
	}
	if stop == nil {
		stop = q.closing
	}
	var msg *C.shmq_message
	var data *C.uint8_t
	var n C.size_t
	st := C.go_consume_wait(q.h, C.int64_t(slice), C.int64_t(total), (*C.int32_t)(unsafe.Pointer(stop)),
		(*C.int32_t)(unsafe.Pointer(q.closing)), &msg, &data, &n)
	if st == C.SHMQ_OK {
		*out = q.newMessage(msg, data, n) // see reserveTry
	}
	return st
}

func (q *Queue) consume(ctx context.Context, until time.Time, wait bool) (*Message, error) {
	var m *Message
	try := func() C.enum_shmq_status { return q.consumeTry(&m) }
	var err error
	if wait {
		err = q.wait(ctx, until, try, func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
			return q.consumeWait(total, slice, stop, &m)
		})
	} else {
		err = statusErr(try())
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// TryConsume takes the next message to read in place through the returned
// Message's Bytes(), until its Release; it never waits. Errors: ErrEmpty;
// ErrClosed once closed and drained; ErrRoleTaken (SPSC). See Message for
// the lifetime of the bytes.
func (q *Queue) TryConsume() (*Message, error) {
	return q.consume(context.Background(), time.Time{}, false)
}

// Consume is TryConsume that waits while the queue is empty until ctx is
// done (then it returns ctx.Err() within about 2 ms; a message taken
// before is returned, never lost).
func (q *Queue) Consume(ctx context.Context) (*Message, error) {
	return q.consume(ctx, time.Time{}, true)
}

// ConsumeTimeout is Consume with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (q *Queue) ConsumeTimeout(timeout time.Duration) (*Message, error) {
	return q.consume(context.Background(), deadline(timeout), true)
}

// ---- batches ----

func (q *Queue) enqueueBatch(msgs [][]byte, until time.Time, wait bool) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	data := make([]byte, 0, total)
	lens := make([]C.size_t, len(msgs))
	for i, m := range msgs {
		data = append(data, m...)
		lens[i] = C.size_t(len(m))
	}
	var n C.size_t
	call := func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
		q.mu.RLock()
		defer q.mu.RUnlock()
		if q.h == nil {
			return statusHandleClosed
		}
		if stop == nil {
			stop = q.closing
		}
		return C.go_enqueue_batch(q.h, bytesPtr(data), &lens[0], C.size_t(len(msgs)), C.int64_t(slice),
			C.int64_t(total), (*C.int32_t)(unsafe.Pointer(stop)), (*C.int32_t)(unsafe.Pointer(q.closing)), &n)
	}
	try := func() C.enum_shmq_status { return call(0, 0, nil) }
	var err error
	if wait {
		err = q.wait(context.Background(), until, try, call)
	} else {
		err = statusErr(try())
	}
	if err != nil {
		return 0, err
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
	return q.enqueueBatch(msgs, time.Time{}, false)
}

// EnqueueBatchTimeout is EnqueueBatch that waits up to timeout while not
// even the first message fits (ErrTimeout when it passes; a negative timeout
// waits forever), then enqueues what fits.
func (q *Queue) EnqueueBatchTimeout(msgs [][]byte, timeout time.Duration) (int, error) {
	return q.enqueueBatch(msgs, deadline(timeout), true)
}

func (q *Queue) dequeueBatch(buf []byte, lens []int, until time.Time, wait bool) (int, error) {
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
	call := func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
		q.mu.RLock()
		defer q.mu.RUnlock()
		if q.h == nil {
			return statusHandleClosed
		}
		if total == 0 {
			return C.shmq_queue_dequeue_batch(q.h, bytesPtr(buf), C.size_t(len(buf)), &clens[0],
				C.size_t(len(clens)), 0, &n)
		}
		if stop == nil {
			stop = q.closing
		}
		return C.go_dequeue_batch_wait(q.h, bytesPtr(buf), C.size_t(len(buf)), &clens[0], C.size_t(len(clens)),
			C.int64_t(slice), C.int64_t(total), (*C.int32_t)(unsafe.Pointer(stop)),
			(*C.int32_t)(unsafe.Pointer(q.closing)), &n)
	}
	try := func() C.enum_shmq_status { return call(0, 0, nil) }
	var err error
	if wait {
		err = q.wait(context.Background(), until, try, call)
	} else {
		err = statusErr(try())
	}
	if err != nil {
		return 0, err
	}
	for i := 0; i < int(n); i++ {
		lens[i] = int(clens[i])
	}
	return int(n), nil
}

// DequeueBatch dequeues up to len(lens) messages that are ready now into
// buf, packed one after the other, in one call into the library (one cgo
// crossing, one index publication); it writes their lengths to lens[:n]
// and returns n. Message i is buf[off_i : off_i+lens[i]] with off_i the sum
// of lens[:i]. Messages that do not fit in what is left of buf stay queued.
// It never waits. Errors, with nothing dequeued: ErrEmpty; ErrClosed once
// closed and drained; ErrBufferTooSmall (the first message alone does not
// fit); ErrInvalidArgument (lens is empty).
func (q *Queue) DequeueBatch(buf []byte, lens []int) (int, error) {
	return q.dequeueBatch(buf, lens, time.Time{}, false)
}

// DequeueBatchTimeout is DequeueBatch that waits up to timeout for the
// first message (ErrTimeout when it passes; a negative timeout waits
// forever), then takes what else is ready.
func (q *Queue) DequeueBatchTimeout(buf []byte, lens []int, timeout time.Duration) (int, error) {
	return q.dequeueBatch(buf, lens, deadline(timeout), true)
}
