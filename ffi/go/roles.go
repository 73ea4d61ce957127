package shmq

/*
#include <stdlib.h>
#include "cgo_helpers.h"

static enum shmq_status go_queue_producer(const shmq_queue *q, shmq_producer **out, char *msg, size_t msg_cap) {
	return go_capture(shmq_queue_producer(q, out), msg, msg_cap);
}

static enum shmq_status go_queue_consumer(const shmq_queue *q, shmq_consumer **out, char *msg, size_t msg_cap) {
	return go_capture(shmq_queue_consumer(q, out), msg, msg_cap);
}

// The blocking phases of Producer.Enqueue and Consumer.Dequeue (see
// GO_WAIT_RETURN in cgo_helpers.h).
static enum shmq_status go_producer_wait(shmq_producer *p, const uint8_t *msg, size_t len, int64_t slice_ns,
                                         int64_t total_ns, const int32_t *stop, const int32_t *closing) {
	GO_WAIT_RETURN(slice_ns, total_ns, stop, closing, shmq_producer_enqueue_block(p, msg, len, t));
}

static enum shmq_status go_consumer_wait(shmq_consumer *c, uint8_t *buf, size_t len, int64_t slice_ns,
                                         int64_t total_ns, const int32_t *stop, const int32_t *closing,
                                         size_t *n) {
	GO_WAIT_RETURN(slice_ns, total_ns, stop, closing, shmq_consumer_dequeue_block(c, buf, len, t, n));
}

static enum shmq_status go_log_publisher(const shmq_log *l, shmq_publisher **out, char *msg, size_t msg_cap) {
	return go_capture(shmq_log_publisher(l, out), msg, msg_cap);
}

// The blocking phase of Publisher.PublishBlock: as go_publish_wait in
// log.go, through the publisher.
static enum shmq_status go_publisher_wait(shmq_publisher *p, const uint8_t *msg, size_t len, int64_t slice_ns,
                                          int64_t total_ns, const int32_t *stop, const int32_t *closing,
                                          uint64_t *seq) {
	int64_t end = total_ns < 0 ? INT64_MAX : go_now_ns() + total_ns, t;
	enum shmq_status last = SHMQ_TIMEOUT;
	while (go_slice(end, slice_ns, stop, closing, &t)) {
		if (t <= 0) return last;
		enum shmq_status s = shmq_publisher_publish_block(p, msg, len, t, seq);
		if (s != SHMQ_TIMEOUT && s != SHMQ_NOT_CONNECTED) return s;
		last = s;
	}
	return GO_STOPPED;
}
*/
import "C"

import (
	"context"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Every handle of this package releases what it holds with Close.
var (
	_ io.Closer = (*Queue)(nil)
	_ io.Closer = (*Producer)(nil)
	_ io.Closer = (*Consumer)(nil)
	_ io.Closer = (*Log)(nil)
	_ io.Closer = (*Publisher)(nil)
	_ io.Closer = (*Subscriber)(nil)
)

// Producer is the producing end of a queue, from Queue.Producer. On a
// single-producer/single-consumer queue (WithSPSC) it holds the producer
// role from Producer until Close, and its enqueues take no lock in the
// library (the fastest path); on other queues it enqueues as the Queue
// does. Its methods may be called from many goroutines (they take turns).
type Producer struct {
	mu       sync.Mutex // guards h and serialises calls: the C producer is not shared
	h        *C.shmq_producer
	closing  *int32 // set by Close (never reset): an Enqueue waiting in C returns
	target   Target
	slotSize int
	zc       zeroCopy // its live reservation (zerocopy.go)
}

// Consumer is the consuming end of a queue, from Queue.Consumer: as
// Producer, for the consumer role.
type Consumer struct {
	mu       sync.Mutex // guards h and serialises calls: the C consumer is not shared
	h        *C.shmq_consumer
	closing  *int32 // set by Close (never reset): a Dequeue waiting in C returns
	target   Target
	slotSize int
	zc       zeroCopy // its live message (zerocopy.go)
}

// Producer makes the producing end of the queue. It attaches to the queue
// again through its target, so take it before the queue is deleted
// (ErrNotFound after). On a WithSPSC queue it takes the producer role:
// ErrRoleTaken while another producer (a Producer, or a Queue that has
// enqueued, in this process or another) holds it. The Queue stays usable;
// either may be closed first.
func (q *Queue) Producer() (*Producer, error) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return nil, ErrHandleClosed
	}
	var h *C.shmq_producer
	err := setup("producer", q.target, func(msg *C.char) C.enum_shmq_status {
		return C.go_queue_producer(q.h, &h, msg, errCap)
	})
	if err != nil {
		return nil, err
	}
	p := &Producer{h: h, closing: new(int32), target: q.target, slotSize: q.slotSize}
	runtime.SetFinalizer(p, (*Producer).Close)
	return p, nil
}

// Consumer makes the consuming end of the queue: as Producer, for the
// consumer role.
func (q *Queue) Consumer() (*Consumer, error) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.h == nil {
		return nil, ErrHandleClosed
	}
	var h *C.shmq_consumer
	err := setup("consumer", q.target, func(msg *C.char) C.enum_shmq_status {
		return C.go_queue_consumer(q.h, &h, msg, errCap)
	})
	if err != nil {
		return nil, err
	}
	c := &Consumer{h: h, closing: new(int32), target: q.target, slotSize: q.slotSize}
	runtime.SetFinalizer(c, (*Consumer).Close)
	return c, nil
}

// Target is where the queue lives.
func (p *Producer) Target() Target { return p.target }

// SlotSize is the largest message, in bytes.
func (p *Producer) SlotSize() int { return p.slotSize }

// Close releases the producer role (another handle may take it from now
// on) and detaches; the queue lives on. An Enqueue in progress returns
// within about 10 ms with ErrHandleClosed; later calls fail with
// ErrHandleClosed. A live Reservation is cancelled: its Bytes() must not
// be used after Close.
func (p *Producer) Close() error {
	atomic.StoreInt32(p.closing, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return ErrHandleClosed
	}
	p.zc.endAll() // a reservation borrows the C producer: end it first
	C.shmq_producer_free(p.h)
	p.h = nil
	runtime.SetFinalizer(p, nil)
	return nil
}

func (p *Producer) enqueueTry(msg []byte) C.enum_shmq_status {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return statusHandleClosed
	}
	return C.shmq_producer_enqueue_try(p.h, bytesPtr(msg), C.size_t(len(msg)))
}

func (p *Producer) enqueueWait(msg []byte, total, slice time.Duration, stop *int32) C.enum_shmq_status {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return statusHandleClosed
	}
	if stop == nil {
		stop = p.closing
	}
	return C.go_producer_wait(p.h, bytesPtr(msg), C.size_t(len(msg)), C.int64_t(slice), C.int64_t(total),
		(*C.int32_t)(unsafe.Pointer(stop)), (*C.int32_t)(unsafe.Pointer(p.closing)))
}

// TryEnqueue enqueues msg if a slot is free; it never waits. Errors:
// ErrFull, ErrClosed, ErrTooLarge (nothing was written), ErrHandleClosed.
func (p *Producer) TryEnqueue(msg []byte) error { return statusErr(p.enqueueTry(msg)) }

// Enqueue enqueues msg, waiting while the queue is full until ctx is done
// (then it returns ctx.Err() within about 2 ms, and msg was not enqueued).
// Other errors as TryEnqueue.
func (p *Producer) Enqueue(ctx context.Context, msg []byte) error {
	return p.enqueue(ctx, forever, msg)
}

// EnqueueTimeout is Enqueue with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (p *Producer) EnqueueTimeout(msg []byte, timeout time.Duration) error {
	return p.enqueue(context.Background(), timeout, msg)
}

func (p *Producer) enqueue(ctx context.Context, timeout time.Duration, msg []byte) error {
	return blockingCall(ctx, timeout, func() C.enum_shmq_status { return p.enqueueTry(msg) },
		func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
			return p.enqueueWait(msg, total, slice, stop)
		}, statusErr)
}

// TryEnqueueBatch enqueues as many of msgs as fit now, in order, in one
// call into the library (one index publication), and returns how many: a
// prefix of msgs, at least 1 when err is nil. It never waits. Errors, with
// nothing enqueued: ErrFull, ErrClosed, ErrTooLarge (the first message).
// The messages are copied once into a packed buffer before the call.
func (p *Producer) TryEnqueueBatch(msgs [][]byte) (int, error) {
	return enqueueBatch(p, context.Background(), forever, msgs, false)
}

// EnqueueBatch is TryEnqueueBatch that waits while not even the first
// message fits, until ctx is done (then it returns ctx.Err() within about
// 2 ms, and nothing was enqueued); then it enqueues what fits. (Unlike
// Queue.EnqueueBatch, which never waits: a Producer's Try calls never wait,
// its others do.)
func (p *Producer) EnqueueBatch(ctx context.Context, msgs [][]byte) (int, error) {
	return enqueueBatch(p, ctx, forever, msgs, true)
}

// EnqueueBatchTimeout is EnqueueBatch with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (p *Producer) EnqueueBatchTimeout(msgs [][]byte, timeout time.Duration) (int, error) {
	return enqueueBatch(p, context.Background(), timeout, msgs, true)
}

// TryReserve reserves a slot for a message of up to n bytes (at most
// SlotSize), to be written in place through the returned Reservation's
// Bytes() and published by its Commit; it never waits. On a WithSPSC queue
// no lock is taken in the library. One reservation at a time: until it
// ends, the Producer's other calls fail with ErrInvalidArgument. Errors:
// ErrFull, ErrClosed, ErrTooLarge, ErrHandleClosed. See Reservation for
// the lifetime of the slot.
func (p *Producer) TryReserve(n int) (*Reservation, error) {
	return reserve(p, context.Background(), forever, n, false)
}

// Reserve is TryReserve that waits while the queue is full until ctx is
// done (then it returns ctx.Err() within about 2 ms).
func (p *Producer) Reserve(ctx context.Context, n int) (*Reservation, error) {
	return reserve(p, ctx, forever, n, true)
}

// ReserveTimeout is Reserve with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (p *Producer) ReserveTimeout(n int, timeout time.Duration) (*Reservation, error) {
	return reserve(p, context.Background(), timeout, n, true)
}

// CloseQueue closes the queue for every process (as Queue.CloseQueue):
// enqueues fail with ErrClosed, consumers drain what is left. The producer
// keeps its role until Close.
func (p *Producer) CloseQueue() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return ErrHandleClosed
	}
	return statusErr(C.shmq_producer_close(p.h))
}

// Target is where the queue lives.
func (c *Consumer) Target() Target { return c.target }

// SlotSize is the largest message, in bytes: a buffer of this size always
// suffices.
func (c *Consumer) SlotSize() int { return c.slotSize }

// Close releases the consumer role and detaches: as Producer.Close (a live
// Message is released: its Bytes() must not be used after Close).
func (c *Consumer) Close() error {
	atomic.StoreInt32(c.closing, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == nil {
		return ErrHandleClosed
	}
	c.zc.endAll() // a message borrows the C consumer: release it first
	C.shmq_consumer_free(c.h)
	c.h = nil
	runtime.SetFinalizer(c, nil)
	return nil
}

func (c *Consumer) dequeueTry(buf []byte, n *C.size_t) C.enum_shmq_status {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == nil {
		return statusHandleClosed
	}
	return C.shmq_consumer_dequeue_try(c.h, bytesPtr(buf), C.size_t(len(buf)), n)
}

func (c *Consumer) dequeueWait(buf []byte, total, slice time.Duration, stop *int32, n *C.size_t) C.enum_shmq_status {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == nil {
		return statusHandleClosed
	}
	if stop == nil {
		stop = c.closing
	}
	return C.go_consumer_wait(c.h, bytesPtr(buf), C.size_t(len(buf)), C.int64_t(slice), C.int64_t(total),
		(*C.int32_t)(unsafe.Pointer(stop)), (*C.int32_t)(unsafe.Pointer(c.closing)), n)
}

// TryDequeue dequeues the next message into buf and returns its length; it
// never waits. Errors: ErrEmpty; ErrClosed once closed and drained;
// ErrBufferTooSmall, with the length the message needs as the count (the
// message stays queued: grow buf and call again); ErrHandleClosed.
func (c *Consumer) TryDequeue(buf []byte) (int, error) {
	var n C.size_t
	st := c.dequeueTry(buf, &n)
	return dequeued(st, n)
}

// Dequeue dequeues the next message into buf and returns its length,
// waiting while the queue is empty until ctx is done (then it returns
// ctx.Err() within about 2 ms; a message that arrived before is returned,
// never lost). Other errors as TryDequeue.
func (c *Consumer) Dequeue(ctx context.Context, buf []byte) (int, error) {
	return c.dequeue(ctx, forever, buf)
}

// DequeueTimeout is Dequeue with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (c *Consumer) DequeueTimeout(buf []byte, timeout time.Duration) (int, error) {
	return c.dequeue(context.Background(), timeout, buf)
}

func (c *Consumer) dequeue(ctx context.Context, timeout time.Duration, buf []byte) (int, error) {
	var n C.size_t
	var last C.enum_shmq_status
	err := blockingCall(ctx, timeout, func() C.enum_shmq_status {
		last = c.dequeueTry(buf, &n)
		return last
	}, func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
		last = c.dequeueWait(buf, total, slice, stop, &n)
		return last
	}, statusErr)
	if err != nil && last != C.SHMQ_BUFFER_TOO_SMALL {
		return 0, err
	}
	return int(n), err
}

// TryDequeueBatch dequeues up to len(lens) messages that are ready now
// into buf, packed one after the other, in one call into the library (one
// index publication); it writes their lengths to lens[:n] and returns n.
// Message i is buf[off_i : off_i+lens[i]] with off_i the sum of lens[:i];
// messages that do not fit in what is left of buf stay queued. It never
// waits. Errors, with nothing dequeued: ErrEmpty; ErrClosed once closed and
// drained; ErrBufferTooSmall when the first message alone does not fit
// (then lens[0] is the length it needs); ErrInvalidArgument (lens is empty).
func (c *Consumer) TryDequeueBatch(buf []byte, lens []int) (int, error) {
	return dequeueBatch(c, context.Background(), forever, buf, lens, false)
}

// DequeueBatch is TryDequeueBatch that waits for the first message until
// ctx is done (then it returns ctx.Err() within about 2 ms; messages taken
// before are returned, never lost), then takes what else is ready, in the
// same call into the library (one index publication).
func (c *Consumer) DequeueBatch(ctx context.Context, buf []byte, lens []int) (int, error) {
	return dequeueBatch(c, ctx, forever, buf, lens, true)
}

// DequeueBatchTimeout is DequeueBatch with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (c *Consumer) DequeueBatchTimeout(buf []byte, lens []int, timeout time.Duration) (int, error) {
	return dequeueBatch(c, context.Background(), timeout, buf, lens, true)
}

// TryConsume takes the next message to read in place through the returned
// Message's Bytes(), until its Release; it never waits. On a WithSPSC
// queue no lock is taken in the library. One message at a time: until its
// Release, the Consumer's other calls fail with ErrInvalidArgument.
// Errors: ErrEmpty; ErrClosed once closed and drained; ErrHandleClosed.
// See Message for the lifetime of the bytes.
func (c *Consumer) TryConsume() (*Message, error) {
	return consume(c, context.Background(), forever, false)
}

// Consume is TryConsume that waits while the queue is empty until ctx is
// done (then it returns ctx.Err() within about 2 ms; a message taken
// before is returned, never lost).
func (c *Consumer) Consume(ctx context.Context) (*Message, error) {
	return consume(c, ctx, forever, true)
}

// ConsumeTimeout is Consume with a timeout instead of a context
// (ErrTimeout when it passes; a negative timeout waits forever).
func (c *Consumer) ConsumeTimeout(timeout time.Duration) (*Message, error) {
	return consume(c, context.Background(), timeout, true)
}

// dequeued is a dequeue's result: the length on success, the needed length
// with ErrBufferTooSmall, 0 with any other error.
func dequeued(st C.enum_shmq_status, n C.size_t) (int, error) {
	switch st {
	case C.SHMQ_OK, C.SHMQ_BUFFER_TOO_SMALL:
		return int(n), statusErr(st)
	default:
		return 0, statusErr(st)
	}
}

// Publisher is the publishing end of a log, from Log.Publisher. On a
// single-publisher log (WithSinglePublisher) it holds the publisher role
// from Log.Publisher until Close, and a publish through it executes no
// locked instruction in the library: Log.Publish on such a log takes a
// lock in the library around every publish, as a Log may be shared by
// many goroutines. On a multi-publisher log it publishes as the Log does.
// Its methods may be called from many goroutines: they take turns on the
// Publisher's own mutex, the one lock left (never contended when one
// goroutine publishes).
type Publisher struct {
	mu       sync.Mutex // guards h and serialises calls: the C publisher is not shared
	h        *C.shmq_publisher
	closing  *int32 // set by Close (never reset): a PublishBlock waiting in C returns
	target   Target
	slotSize int
}

// Publisher makes the publishing end of the log. It attaches to the log
// again through its target, so take it before the log is deleted
// (ErrNotFound after). On a WithSinglePublisher log it takes the publisher
// role: ErrRoleTaken while another publisher (a Publisher, or a Log that
// has published, in this process or another) holds it. The Log stays
// usable; either may be closed first.
func (l *Log) Publisher() (*Publisher, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return nil, ErrHandleClosed
	}
	var h *C.shmq_publisher
	err := setup("publisher", l.target, func(msg *C.char) C.enum_shmq_status {
		return C.go_log_publisher(l.h, &h, msg, errCap)
	})
	if err != nil {
		return nil, err
	}
	p := &Publisher{h: h, closing: new(int32), target: l.target, slotSize: l.slotSize}
	runtime.SetFinalizer(p, (*Publisher).Close)
	return p, nil
}

// Target is where the log lives.
func (p *Publisher) Target() Target { return p.target }

// SlotSize is the largest message, in bytes.
func (p *Publisher) SlotSize() int { return p.slotSize }

// Close releases the publisher role (another handle may take it from now
// on) and detaches; the log lives on. A PublishBlock in progress returns
// within about 10 ms with ErrHandleClosed; later calls fail with
// ErrHandleClosed. To close the log itself for every process, see
// CloseLog.
func (p *Publisher) Close() error {
	atomic.StoreInt32(p.closing, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return ErrHandleClosed
	}
	C.shmq_publisher_free(p.h)
	p.h = nil
	runtime.SetFinalizer(p, nil)
	return nil
}

func (p *Publisher) publishTry(msg []byte, seq *C.uint64_t) C.enum_shmq_status {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return statusHandleClosed
	}
	return C.shmq_publisher_publish(p.h, bytesPtr(msg), C.size_t(len(msg)), seq)
}

func (p *Publisher) publishWait(msg []byte, total, slice time.Duration, stop *int32, seq *C.uint64_t) C.enum_shmq_status {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return statusHandleClosed
	}
	if stop == nil {
		stop = p.closing
	}
	return C.go_publisher_wait(p.h, bytesPtr(msg), C.size_t(len(msg)), C.int64_t(slice), C.int64_t(total),
		(*C.int32_t)(unsafe.Pointer(stop)), (*C.int32_t)(unsafe.Pointer(p.closing)), seq)
}

// Publish publishes msg and returns its sequence number, as Log.Publish:
// it never waits; ErrFull and ErrNotConnected in reliable mode,
// ErrTooLarge (nothing written), ErrClosed, ErrHandleClosed.
func (p *Publisher) Publish(msg []byte) (uint64, error) {
	var seq C.uint64_t
	st := p.publishTry(msg, &seq)
	return uint64(seq), statusErr(st)
}

// PublishBlock publishes msg and returns its sequence number, waiting
// while a reliable log is full, or has nobody registered, until ctx is
// done (then it returns ctx.Err() within about 2 ms, and msg was not
// published), as Log.PublishBlock. Other errors as Publish.
func (p *Publisher) PublishBlock(ctx context.Context, msg []byte) (uint64, error) {
	return p.publishBlock(ctx, forever, msg)
}

// PublishTimeout is PublishBlock with a timeout instead of a context: when
// it passes, ErrTimeout (the log stayed full) or ErrNotConnected (nobody
// registered); a negative timeout waits forever.
func (p *Publisher) PublishTimeout(msg []byte, timeout time.Duration) (uint64, error) {
	return p.publishBlock(context.Background(), timeout, msg)
}

func (p *Publisher) publishBlock(ctx context.Context, timeout time.Duration, msg []byte) (uint64, error) {
	return publishBlocking(ctx, timeout, func(seq *C.uint64_t) C.enum_shmq_status {
		return p.publishTry(msg, seq)
	}, func(total, slice time.Duration, stop *int32, seq *C.uint64_t) C.enum_shmq_status {
		return p.publishWait(msg, total, slice, stop, seq)
	})
}

// PublishBatch publishes up to len(msgs) messages, in order, in one call
// into the library, and returns how many were published, as
// Log.PublishBatch: it never waits; on a single-publisher log the batch
// costs one index store and at most one wake. Errors, with nothing
// published: ErrTooLarge (any message), ErrFull, ErrNotConnected,
// ErrClosed, ErrHandleClosed.
func (p *Publisher) PublishBatch(msgs [][]byte) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	data, lens := packBatch(msgs)
	var n C.size_t
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return 0, ErrHandleClosed
	}
	st := C.shmq_publisher_publish_batch(p.h, bytesPtr(data), &lens[0], C.size_t(len(msgs)), &n)
	if st != C.SHMQ_OK {
		return 0, statusErr(st)
	}
	return int(n), nil
}

// NextSeq is the sequence number the next published message will get (0
// after Close).
func (p *Publisher) NextSeq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return 0
	}
	var seq C.uint64_t
	C.shmq_publisher_next_seq(p.h, &seq)
	return uint64(seq)
}

// CloseLog closes the log for every process (as Log.CloseLog): publishes
// fail with ErrClosed, subscribers read what is left, then get ErrClosed.
// The publisher keeps its role until Close.
func (p *Publisher) CloseLog() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h == nil {
		return ErrHandleClosed
	}
	return statusErr(C.shmq_publisher_close(p.h))
}
