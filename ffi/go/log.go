package shmq

/*
#include <stdlib.h>
#include "cgo_helpers.h"

static enum shmq_status go_log_create(const char *t, uint32_t slot, uint64_t cap, uint32_t mode, uint32_t flags,
                                      uint32_t cursors, char **names, size_t n_names, int open_existing,
                                      shmq_log **out, char *msg, size_t msg_cap) {
	const char *const *ns = (const char *const *)names;
	enum shmq_status s =
	    open_existing ? shmq_log_open_or_create_with_cursors(t, slot, cap, mode, flags, cursors, ns, n_names, out)
	                  : shmq_log_create_with_cursors(t, slot, cap, mode, flags, cursors, ns, n_names, out);
	return go_capture(s, msg, msg_cap);
}

static enum shmq_status go_log_open(const char *t, shmq_log **out, char *msg, size_t msg_cap) {
	return go_capture(shmq_log_open(t, out), msg, msg_cap);
}

static enum shmq_status go_log_flush(const shmq_log *l, char *msg, size_t msg_cap) {
	return go_capture(shmq_log_flush(l), msg, msg_cap);
}

// name NULL: an unnamed subscriber.
static enum shmq_status go_log_subscribe(const shmq_log *l, const char *name, uint32_t start,
                                         shmq_subscriber **out, char *msg, size_t msg_cap) {
	enum shmq_status s = name ? shmq_log_subscribe_named(l, name, start, out) : shmq_log_subscribe(l, start, out);
	return go_capture(s, msg, msg_cap);
}

enum { GO_CURSOR_CREATE, GO_CURSOR_FROM, GO_CURSOR_REMOVE };

static enum shmq_status go_log_cursor_op(int op, const shmq_log *l, const char *a, const char *b, uint32_t start,
                                         char *msg, size_t msg_cap) {
	enum shmq_status s;
	switch (op) {
	case GO_CURSOR_CREATE: s = shmq_log_create_cursor(l, a, start); break;
	case GO_CURSOR_FROM: s = shmq_log_cursor_from(l, a, b); break;
	default: s = shmq_log_remove_cursor(l, a); break;
	}
	return go_capture(s, msg, msg_cap);
}

static enum shmq_status go_log_cursor(const shmq_log *l, const char *name, shmq_cursor_info *info, char *msg,
                                      size_t msg_cap) {
	return go_capture(shmq_log_cursor(l, name, info), msg, msg_cap);
}

// The blocking phases of PublishBlock and Recv (see go_slice).
static enum shmq_status go_publish_wait(const shmq_log *l, const uint8_t *msg, size_t len, int64_t slice_ns,
                                        int64_t total_ns, const int32_t *stop, const int32_t *closing,
                                        uint64_t *seq) {
	int64_t end = total_ns < 0 ? INT64_MAX : go_now_ns() + total_ns, t;
	// A slice that ends with nobody registered is waited out like a full
	// log; at the deadline the last slice's status is the answer.
	enum shmq_status last = SHMQ_TIMEOUT;
	while (go_slice(end, slice_ns, stop, closing, &t)) {
		if (t <= 0) return last;
		enum shmq_status s = shmq_log_publish_block(l, msg, len, t, seq);
		if (s != SHMQ_TIMEOUT && s != SHMQ_NOT_CONNECTED) return s;
		last = s;
	}
	return GO_STOPPED;
}

static enum shmq_status go_recv_wait(shmq_subscriber *sub, uint8_t *buf, size_t len, int64_t slice_ns,
                                     int64_t total_ns, const int32_t *stop, const int32_t *closing, size_t *n,
                                     uint64_t *missed) {
	int64_t end = total_ns < 0 ? INT64_MAX : go_now_ns() + total_ns, t;
	while (go_slice(end, slice_ns, stop, closing, &t)) {
		if (t <= 0) return SHMQ_TIMEOUT;
		enum shmq_status s = shmq_subscriber_recv_block(sub, buf, len, t, n, missed);
		if (s != SHMQ_TIMEOUT) return s;
	}
	return GO_STOPPED;
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Log is a handle to a fan-out log in shared memory: publishers append,
// and every subscriber (goroutine or process, Go, C or Rust) reads every
// message through its own cursor. Each message gets a sequence number.
//
// A log is in overwrite mode (the default: publishers never wait; a
// subscriber that falls a full ring behind gets a *LaggedError saying how
// many messages it lost, and goes on from the oldest one left) or reliable
// mode (WithReliable: publishers wait for the slowest registered cursor;
// nothing is lost).
//
// A Log is safe for concurrent use by many goroutines; each Subscriber is
// for one goroutine at a time.
type Log struct {
	mu       sync.RWMutex // guards h: calls hold it shared, Close exclusively
	h        *C.shmq_log
	closing  *int32 // set by Close (never reset): calls waiting in C return
	target   Target
	slotSize int
	capacity int
	reliable bool
	single   bool
}

// Start says where a new subscriber starts reading.
type Start int

const (
	// StartOldest is the oldest message still in the ring (in reliable mode,
	// the oldest still protected by a cursor).
	StartOldest Start = iota
	// StartLatest is the next message published: nothing already in the ring.
	StartLatest
)

// WithReliable makes a reliable log (CreateLog): publishers are gated by
// the slowest registered cursor (Publish fails with ErrFull, PublishBlock
// waits) and nothing is lost. With no cursor registered at all, Publish
// writes nothing and fails with ErrNotConnected (declare cursors with
// WithDurableCursors, or subscribe first). Without it a log is in
// overwrite mode.
func WithReliable() Option { return func(c *config) { c.reliable = true } }

// WithSinglePublisher makes a single-publisher log (CreateLog): one
// handle publishes at a time. The first handle to publish takes the
// publisher role until it is closed (or its process dies: the role is
// then taken over); Publish through any other handle fails with
// ErrRoleTaken meanwhile. In exchange a publish executes no locked
// instruction, and one wake reaches every sleeping subscriber. The common
// case for a feed; combines with WithReliable.
func WithSinglePublisher() Option { return func(c *config) { c.single = true } }

// WithDurableCursors declares durable named cursors, created with the log
// (CreateLog, OpenOrCreateLog) at sequence number 0, the first message. They
// exist before any other process can see the log, so no publish can
// precede them: a reliable log is gated by them from its first message, and
// a subscriber that resumes one later (SubscribeNamed) reads everything from
// message 0 on. Repeatable (the names add up). CreateLog fails with
// ErrInvalidArgument, creating nothing, for an empty or too long name (1 to
// 64 bytes), a name given twice, or more names than the cursor table holds
// (WithCursors). OpenOrCreateLog accepts an existing log only if each
// declared cursor exists in it (else ErrIncompatible); it never creates them
// in a log that exists.
//
// A reliable log with no cursor registered refuses to publish
// (ErrNotConnected): declaring its readers' cursors makes it lossless from
// message 0, however late they start.
func WithDurableCursors(names ...string) Option {
	return func(c *config) { c.durable = append(c.durable, names...) }
}

// WithCursors sets the number of entries of a log's cursor table (default
// 16, at most 4096): named cursors, plus unnamed subscribers of a reliable
// log.
func WithCursors(n int) Option { return func(c *config) { c.cursors = n } }

// LogStats are a log's counters, read from shared memory (approximate
// while operations are in flight).
type LogStats struct {
	Published      uint64 // messages published
	NextSeq        uint64 // the sequence number of the next message
	Oldest         uint64 // the oldest sequence number a new subscriber can still read
	Tombstones     uint64 // sequence numbers that carry no message (close, or a stalled publisher)
	Lagged         uint64 // messages lost by subscribers, summed over every LaggedError
	Capacity       uint64 // number of slots
	Cursors        int    // cursors registered now (named, and reliable-mode subscribers)
	CursorCapacity int    // entries in the cursor table
	Reliable       bool   // reliable mode
}

// CursorInfo describes a named cursor (Log.Cursor).
type CursorInfo struct {
	Position uint64 // committed position: where a subscriber on it resumes
	Read     uint64 // how far its attached subscriber has read
	Lag      uint64 // messages published after Position
	Owner    int    // pid of the process whose subscriber holds it; 0 if none
}

func startArg(s Start) (C.uint32_t, error) {
	switch s {
	case StartOldest:
		return C.SHMQ_START_OLDEST, nil
	case StartLatest:
		return C.SHMQ_START_LATEST, nil
	}
	return 0, fmt.Errorf("%w: start %d is neither StartOldest nor StartLatest", ErrInvalidArgument, int(s))
}

func newLog(t Target, h *C.shmq_log) *Log {
	// Blocking calls into C sleep at once (subscribers inherit it): this
	// package spins in Go first, then sleeps in C in cancellable slices.
	C.shmq_log_set_wait(h, 0)
	var slot C.uint32_t
	var capacity C.uint64_t
	var st C.shmq_log_counters
	C.shmq_log_slot_size(h, &slot)
	C.shmq_log_capacity(h, &capacity)
	C.shmq_log_stats(h, &st)
	var flags C.uint32_t
	C.shmq_log_flags(h, &flags)
	l := &Log{h: h, closing: new(int32), target: t, slotSize: int(slot), capacity: int(capacity),
		reliable: bool(st.reliable), single: flags&C.SHMQ_LOG_SINGLE_PUBLISHER != 0}
	runtime.SetFinalizer(l, (*Log).Close)
	return l
}

func createLog(t Target, openExisting bool, opts []Option) (*Log, error) {
	cfg := config{slotSize: DefaultSlotSize, capacity: DefaultCapacity, mode: 0o600}
	for _, o := range opts {
		o(&cfg)
	}
	op := "create log"
	if openExisting {
		op = "open or create log"
	}
	if cfg.flags != 0 {
		return nil, &Error{Op: op, Target: t, Msg: "WithSPSC is an option of a queue", err: ErrInvalidArgument}
	}
	if cfg.slotSize < 0 || cfg.slotSize > math.MaxUint32 || cfg.capacity < 0 || cfg.mode&^0o777 != 0 ||
		cfg.cursors < 0 || cfg.cursors > math.MaxUint32 {
		return nil, &Error{Op: op, Target: t, Msg: fmt.Sprintf(
			"slot size %d, capacity %d, mode %o or cursors %d out of range",
			cfg.slotSize, cfg.capacity, cfg.mode, cfg.cursors), err: ErrInvalidArgument}
	}
	flags := C.uint32_t(0)
	if cfg.reliable {
		flags = C.SHMQ_LOG_RELIABLE
	}
	if cfg.single {
		flags |= C.SHMQ_LOG_SINGLE_PUBLISHER
	}
	ct := C.CString(string(t))
	defer C.free(unsafe.Pointer(ct))
	// The durable cursors' names, as a C array of C strings.
	var names **C.char
	if n := len(cfg.durable); n > 0 {
		names = (**C.char)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))
		defer C.free(unsafe.Pointer(names))
		arr := unsafe.Slice(names, n)
		for i, name := range cfg.durable {
			arr[i] = C.CString(name)
			defer C.free(unsafe.Pointer(arr[i]))
		}
	}
	var h *C.shmq_log
	open := C.int(0)
	if openExisting {
		open = 1
	}
	err := setup(op, t, func(msg *C.char) C.enum_shmq_status {
		return C.go_log_create(ct, C.uint32_t(cfg.slotSize), C.uint64_t(cfg.capacity), C.uint32_t(cfg.mode),
			flags, C.uint32_t(cfg.cursors), names, C.size_t(len(cfg.durable)), open, &h, msg, errCap)
	})
	if err != nil {
		return nil, err
	}
	return newLog(t, h), nil
}

// CreateLog creates a new fan-out log at t; by default DefaultCapacity
// slots of DefaultSlotSize bytes, overwrite mode, 16 cursor entries, mode
// 0600 (options: WithSlotSize, WithCapacity, WithReliable, WithCursors,
// WithDurableCursors, WithSinglePublisher, WithMode). It fails with
// ErrAlreadyExists if anything is at t, and leaves it untouched.
func CreateLog(t Target, opts ...Option) (*Log, error) { return createLog(t, false, opts) }

// OpenOrCreateLog creates the log as CreateLog does, or opens it if it
// exists with the same parameters and holds every cursor declared with
// WithDurableCursors (else ErrIncompatible).
func OpenOrCreateLog(t Target, opts ...Option) (*Log, error) { return createLog(t, true, opts) }

// OpenLog opens the existing log at t; it never creates (ErrNotFound).
func OpenLog(t Target) (*Log, error) {
	ct := C.CString(string(t))
	defer C.free(unsafe.Pointer(ct))
	var h *C.shmq_log
	err := setup("open log", t, func(msg *C.char) C.enum_shmq_status { return C.go_log_open(ct, &h, msg, errCap) })
	if err != nil {
		return nil, err
	}
	return newLog(t, h), nil
}

// Close releases this handle; its subscribers keep working (close each).
// The log lives on until Delete (or Unlink). A PublishBlock in progress
// returns within about 10 ms with ErrHandleClosed; later calls fail with
// ErrHandleClosed. To close the log itself for every process, see CloseLog.
func (l *Log) Close() error {
	atomic.StoreInt32(l.closing, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		return ErrHandleClosed
	}
	C.shmq_log_free(l.h)
	l.h = nil
	runtime.SetFinalizer(l, nil)
	return nil
}

// Delete removes the log's name (see Unlink); handles and subscribers keep
// working until closed. It may be called before or after Close.
func (l *Log) Delete() error { return Unlink(l.target) }

// Target is where the log lives.
func (l *Log) Target() Target { return l.target }

// SlotSize is the largest message, in bytes: a buffer of this size always
// suffices.
func (l *Log) SlotSize() int { return l.slotSize }

// Cap is the number of slots.
func (l *Log) Cap() int { return l.capacity }

// Reliable reports whether the log is in reliable mode.
func (l *Log) Reliable() bool { return l.reliable }

// SinglePublisher reports whether the log is a single-publisher log
// (WithSinglePublisher), as its header says.
func (l *Log) SinglePublisher() bool { return l.single }

// PublishBatch publishes up to len(msgs) messages, in order, in one call
// into the library (one cgo crossing), and returns how many were
// published: all of them in overwrite mode (at most a ring's worth per
// call), as many as there is room for in reliable mode. It never waits.
// On a single-publisher log the batch costs one index store and at most
// one wake. Errors, with nothing published: ErrTooLarge (any message),
// ErrFull (reliable mode, no room), ErrNotConnected (reliable mode, nobody
// registered), ErrClosed, ErrRoleTaken.
func (l *Log) PublishBatch(msgs [][]byte) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	data, lens := packBatch(msgs)
	var n C.size_t
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return 0, ErrHandleClosed
	}
	st := C.shmq_log_publish_batch(l.h, bytesPtr(data), &lens[0], C.size_t(len(msgs)), &n)
	if st != C.SHMQ_OK {
		return 0, statusErr(st)
	}
	return int(n), nil
}

// packBatch packs msgs one after the other, as a batch publish takes them:
// the bytes and each message's length.
func packBatch(msgs [][]byte) ([]byte, []C.size_t) {
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
	return data, lens
}

// Publish publishes msg and returns its sequence number. In overwrite mode
// it never waits; in reliable mode it fails with ErrFull when the slowest
// cursor is a full ring behind, and with ErrNotConnected when no cursor is
// registered at all (nothing written: nobody would read it). Other errors:
// ErrTooLarge (nothing written), ErrClosed.
func (l *Log) Publish(msg []byte) (uint64, error) {
	var seq C.uint64_t
	st := l.publishTry(msg, &seq)
	return uint64(seq), statusErr(st)
}

func (l *Log) publishTry(msg []byte, seq *C.uint64_t) C.enum_shmq_status {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return statusHandleClosed
	}
	return C.shmq_log_publish(l.h, bytesPtr(msg), C.size_t(len(msg)), seq)
}

func (l *Log) publishWait(msg []byte, total, slice time.Duration, stop *int32, seq *C.uint64_t) C.enum_shmq_status {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return statusHandleClosed
	}
	if stop == nil {
		stop = l.closing
	}
	return C.go_publish_wait(l.h, bytesPtr(msg), C.size_t(len(msg)), C.int64_t(slice), C.int64_t(total),
		(*C.int32_t)(unsafe.Pointer(stop)), (*C.int32_t)(unsafe.Pointer(l.closing)), seq)
}

// PublishBlock publishes msg and returns its sequence number, waiting while
// a reliable log is full, or has nobody registered, until ctx is done (then
// it returns ctx.Err() within about 2 ms, and msg was not published). In
// overwrite mode it never waits. Other errors: ErrClosed, ErrTooLarge.
func (l *Log) PublishBlock(ctx context.Context, msg []byte) (uint64, error) {
	return l.publishBlock(ctx, forever, msg)
}

// PublishTimeout is PublishBlock with a timeout instead of a context: when
// it passes, ErrTimeout (the log stayed full) or ErrNotConnected (nobody
// registered); a negative timeout waits forever.
func (l *Log) PublishTimeout(msg []byte, timeout time.Duration) (uint64, error) {
	return l.publishBlock(context.Background(), timeout, msg)
}

func (l *Log) publishBlock(ctx context.Context, timeout time.Duration, msg []byte) (uint64, error) {
	return publishBlocking(ctx, timeout, func(seq *C.uint64_t) C.enum_shmq_status {
		return l.publishTry(msg, seq)
	}, func(total, slice time.Duration, stop *int32, seq *C.uint64_t) C.enum_shmq_status {
		return l.publishWait(msg, total, slice, stop, seq)
	})
}

// publishBlocking is a blocking publish (of a Log or a Publisher) from its
// try and its blocking phase: a log with nobody registered is waited out as
// a full one is, and gives ErrNotConnected when the time is up.
func publishBlocking(ctx context.Context, timeout time.Duration, try func(seq *C.uint64_t) C.enum_shmq_status,
	wait func(total, slice time.Duration, stop *int32, seq *C.uint64_t) C.enum_shmq_status) (uint64, error) {
	var seq C.uint64_t
	nobody := false
	err := blockingCall(ctx, timeout, func() C.enum_shmq_status {
		st := try(&seq)
		// Nobody registered is waited out as a full log is.
		if nobody = st == C.SHMQ_NOT_CONNECTED; nobody {
			return C.SHMQ_FULL
		}
		return st
	}, func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
		st := wait(total, slice, stop, &seq)
		nobody = st == C.SHMQ_NOT_CONNECTED
		return st
	}, statusErr)
	if nobody && errors.Is(err, ErrTimeout) {
		err = ErrNotConnected
	}
	return uint64(seq), err
}

// NextSeq is the sequence number the next published message will get.
func (l *Log) NextSeq() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return 0
	}
	var seq C.uint64_t
	C.shmq_log_next_seq(l.h, &seq)
	return uint64(seq)
}

func (l *Log) subscribe(op string, name *string, start Start) (*Subscriber, error) {
	cstart, err := startArg(start)
	if err != nil {
		return nil, &Error{Op: op, Target: l.target, Msg: err.Error(), err: ErrInvalidArgument}
	}
	var cname *C.char
	if name != nil {
		cname = C.CString(*name)
		defer C.free(unsafe.Pointer(cname))
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return nil, ErrHandleClosed
	}
	var h *C.shmq_subscriber
	err = setup(op, l.target, func(msg *C.char) C.enum_shmq_status {
		return C.go_log_subscribe(l.h, cname, cstart, &h, msg, errCap)
	})
	if err != nil {
		return nil, err
	}
	s := &Subscriber{h: h, closing: new(int32), slotSize: l.slotSize}
	if name != nil {
		s.name = *name
	}
	runtime.SetFinalizer(s, (*Subscriber).Close)
	return s, nil
}

// Subscribe makes a subscriber starting at start. In overwrite mode it is
// private to the caller; in reliable mode it takes an entry of the cursor
// table (ErrCursorTableFull when none is free) and gates publishers until
// it is closed.
func (l *Log) Subscribe(start Start) (*Subscriber, error) {
	return l.subscribe("subscribe", nil, start)
}

// SubscribeNamed makes a subscriber on the durable named cursor name (1 to
// 64 bytes): it resumes from the cursor's committed position (see
// Subscriber.Commit); a missing cursor is first created at start. One
// subscriber at a time may hold a named cursor: ErrCursorInUse while a live
// one does, in any process.
func (l *Log) SubscribeNamed(name string, start Start) (*Subscriber, error) {
	return l.subscribe("subscribe to cursor "+name, &name, start)
}

func (l *Log) cursorOp(op string, code C.int, a, b string, start Start) error {
	cstart, err := startArg(start)
	if err != nil {
		return &Error{Op: op, Target: l.target, Msg: err.Error(), err: ErrInvalidArgument}
	}
	ca := C.CString(a)
	defer C.free(unsafe.Pointer(ca))
	cb := C.CString(b)
	defer C.free(unsafe.Pointer(cb))
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return ErrHandleClosed
	}
	return setup(op, l.target, func(msg *C.char) C.enum_shmq_status {
		return C.go_log_cursor_op(code, l.h, ca, cb, cstart, msg, errCap)
	})
}

// CreateCursor creates the named cursor name at start without attaching to
// it (in reliable mode it gates publishers from now on). ErrCursorExists if
// the name is taken.
func (l *Log) CreateCursor(name string, start Start) error {
	return l.cursorOp("create cursor "+name, C.int(C.GO_CURSOR_CREATE), name, "", start)
}

// CursorFrom creates the named cursor newName at the committed position of
// the cursor existing (a copy, e.g. to replay from there).
func (l *Log) CursorFrom(newName, existing string) error {
	return l.cursorOp("copy cursor "+existing+" to "+newName, C.int(C.GO_CURSOR_FROM), newName, existing, StartOldest)
}

// RemoveCursor removes the named cursor name; ErrCursorInUse while a live
// subscriber holds it.
func (l *Log) RemoveCursor(name string) error {
	return l.cursorOp("remove cursor "+name, C.int(C.GO_CURSOR_REMOVE), name, "", StartOldest)
}

// Cursor describes the named cursor name (ErrCursorNotFound if none).
func (l *Log) Cursor(name string) (CursorInfo, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return CursorInfo{}, ErrHandleClosed
	}
	var info C.shmq_cursor_info
	err := setup("cursor "+name, l.target, func(msg *C.char) C.enum_shmq_status {
		return C.go_log_cursor(l.h, cname, &info, msg, errCap)
	})
	if err != nil {
		return CursorInfo{}, err
	}
	return CursorInfo{Position: uint64(info.position), Read: uint64(info.read), Lag: uint64(info.lag),
		Owner: int(info.owner_pid)}, nil
}

// Stats reads the log's counters.
func (l *Log) Stats() (LogStats, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return LogStats{}, ErrHandleClosed
	}
	var s C.shmq_log_counters
	if st := C.shmq_log_stats(l.h, &s); st != C.SHMQ_OK {
		return LogStats{}, statusErr(st)
	}
	return LogStats{
		Published:      uint64(s.published),
		NextSeq:        uint64(s.next_seq),
		Oldest:         uint64(s.oldest),
		Tombstones:     uint64(s.tombstones),
		Lagged:         uint64(s.lagged),
		Capacity:       uint64(s.capacity),
		Cursors:        int(s.cursors),
		CursorCapacity: int(s.cursor_capacity),
		Reliable:       bool(s.reliable),
	}, nil
}

// CloseLog closes the log for every process: publishes fail with
// ErrClosed; subscribers read what is left, then get ErrClosed. Blocked
// callers wake. Idempotent. (To release this handle, see Close.)
func (l *Log) CloseLog() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return ErrHandleClosed
	}
	return statusErr(C.shmq_log_close(l.h))
}

// IsClosed reports whether the log was closed (by any process).
func (l *Log) IsClosed() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return false
	}
	var closed C.bool
	C.shmq_log_is_closed(l.h, &closed)
	return bool(closed)
}

// Flush writes a file-backed log (messages and cursors) to disk; it does
// nothing for SysV and POSIX logs.
func (l *Log) Flush() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.h == nil {
		return ErrHandleClosed
	}
	return setup("flush", l.target, func(msg *C.char) C.enum_shmq_status { return C.go_log_flush(l.h, msg, errCap) })
}

// Subscriber reads a log through its own position. It is meant for one
// goroutine at a time; its methods are safe to call concurrently but run
// one after another (Position and Lag wait for a Recv in progress).
type Subscriber struct {
	mu       sync.Mutex // guards h and serialises calls: the C subscriber is not shared
	h        *C.shmq_subscriber
	closing  *int32 // set by Close (never reset): a Recv waiting in C returns
	slotSize int
	name     string
	lens     []C.size_t // scratch of TryRecvBatch
}

// Name is the name of the subscriber's cursor ("" for an unnamed subscriber).
func (s *Subscriber) Name() string { return s.name }

// SlotSize is the log's slot size: a buffer of this size always suffices.
func (s *Subscriber) SlotSize() int { return s.slotSize }

// Close releases the subscriber: a named cursor is released (keeping its
// committed position: Commit first to keep what was read), a reliable-mode
// subscriber stops gating publishers. A Recv in progress returns within
// about 10 ms with ErrHandleClosed.
func (s *Subscriber) Close() error {
	atomic.StoreInt32(s.closing, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return ErrHandleClosed
	}
	C.shmq_subscriber_free(s.h)
	s.h = nil
	runtime.SetFinalizer(s, nil)
	return nil
}

// recvErr is the error of a receive's status; missed is its count on SHMQ_LAGGED.
func recvErr(st C.enum_shmq_status, missed C.uint64_t) error {
	if st == C.SHMQ_LAGGED {
		return &LaggedError{Missed: uint64(missed)}
	}
	return statusErr(st)
}

func (s *Subscriber) recvTry(buf []byte, n *C.size_t, missed *C.uint64_t) C.enum_shmq_status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return statusHandleClosed
	}
	return C.shmq_subscriber_recv_try(s.h, bytesPtr(buf), C.size_t(len(buf)), n, missed)
}

func (s *Subscriber) recvWait(buf []byte, total, slice time.Duration, stop *int32, n *C.size_t,
	missed *C.uint64_t) C.enum_shmq_status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return statusHandleClosed
	}
	if stop == nil {
		stop = s.closing
	}
	return C.go_recv_wait(s.h, bytesPtr(buf), C.size_t(len(buf)), C.int64_t(slice), C.int64_t(total),
		(*C.int32_t)(unsafe.Pointer(stop)), (*C.int32_t)(unsafe.Pointer(s.closing)), n, missed)
}

// TryRecv receives the next message into buf and returns its length; it
// never waits. Errors: ErrEmpty; *LaggedError (errors.Is ErrLagged: the
// subscriber fell a ring behind and lost Missed messages; call again to
// read the oldest one left); ErrBufferTooSmall (the subscriber stays on the
// message, and the count returned is the length it needs: grow buf and call
// again); ErrClosed once the log is closed and everything was read.
func (s *Subscriber) TryRecv(buf []byte) (int, error) {
	var n C.size_t
	var missed C.uint64_t
	st := s.recvTry(buf, &n, &missed)
	if st != C.SHMQ_OK {
		return tooSmallLen(st, n), recvErr(st, missed)
	}
	return int(n), nil
}

// tooSmallLen is the count a receive returns with an error: the length the
// message needs for SHMQ_BUFFER_TOO_SMALL (the library wrote it to n), else 0.
func tooSmallLen(st C.enum_shmq_status, n C.size_t) int {
	if st == C.SHMQ_BUFFER_TOO_SMALL {
		return int(n)
	}
	return 0
}

// TryRecvBatch receives up to len(lens) messages that are ready now into
// buf, packed one after the other, in one call into the library (one cgo
// crossing); it writes their lengths to lens[:n] and returns n. Message i
// is buf[off_i : off_i+lens[i]] with off_i the sum of lens[:i]. Messages
// that do not fit in what is left of buf stay for the next call. Errors
// when no message was received: as TryRecv (ErrEmpty, *LaggedError, ...).
func (s *Subscriber) TryRecvBatch(buf []byte, lens []int) (int, error) {
	return s.recvBatch(buf, lens, 0)
}

// RecvBatchTimeout is TryRecvBatch that waits up to timeout for the first
// message (a negative timeout waits forever), then takes what else is
// ready. The wait happens inside the library: Close of this subscriber
// waits for it to end.
func (s *Subscriber) RecvBatchTimeout(buf []byte, lens []int, timeout time.Duration) (int, error) {
	t := int64(timeout)
	if t == 0 {
		t = 1 // 0 would mean "do not wait" to the library
	}
	return s.recvBatch(buf, lens, t)
}

func (s *Subscriber) recvBatch(buf []byte, lens []int, timeoutNs int64) (int, error) {
	if len(lens) == 0 {
		return 0, fmt.Errorf("%w: lens is empty", ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return 0, ErrHandleClosed
	}
	if cap(s.lens) < len(lens) {
		s.lens = make([]C.size_t, len(lens))
	}
	clens := s.lens[:len(lens)]
	var n C.size_t
	var missed C.uint64_t
	st := C.shmq_subscriber_recv_batch(s.h, bytesPtr(buf), C.size_t(len(buf)), C.size_t(len(lens)),
		C.int64_t(timeoutNs), &clens[0], &n, &missed)
	if st != C.SHMQ_OK {
		return 0, recvErr(st, missed)
	}
	for i := 0; i < int(n); i++ {
		lens[i] = int(clens[i])
	}
	return int(n), nil
}

// Recv receives the next message into buf and returns its length, waiting
// while there is none until ctx is done (then it returns ctx.Err() within
// about 2 ms; a message that arrived before is returned, never lost).
// Other errors as for TryRecv (ErrBufferTooSmall with the needed length).
func (s *Subscriber) Recv(ctx context.Context, buf []byte) (int, error) {
	return s.recv(ctx, forever, buf)
}

// RecvTimeout is Recv with a timeout instead of a context (ErrTimeout when
// it passes; a negative timeout waits forever).
func (s *Subscriber) RecvTimeout(buf []byte, timeout time.Duration) (int, error) {
	return s.recv(context.Background(), timeout, buf)
}

func (s *Subscriber) recv(ctx context.Context, timeout time.Duration, buf []byte) (int, error) {
	var n C.size_t
	var missed C.uint64_t
	err := blockingCall(ctx, timeout, func() C.enum_shmq_status { return s.recvTry(buf, &n, &missed) },
		func(total, slice time.Duration, stop *int32) C.enum_shmq_status {
			return s.recvWait(buf, total, slice, stop, &n, &missed)
		}, func(st C.enum_shmq_status) error { return recvErr(st, missed) })
	if err != nil {
		if errors.Is(err, ErrBufferTooSmall) {
			return int(n), err
		}
		return 0, err
	}
	return int(n), nil
}

// Commit stores the subscriber's position as its named cursor's committed
// position: a later subscriber on that name (in any process; after a
// restart for a file-backed log) resumes here, and Rollback returns here.
// In reliable mode publishers are gated by committed positions: commit at
// least every Cap() messages. ErrNotNamed for an unnamed subscriber.
func (s *Subscriber) Commit() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return ErrHandleClosed
	}
	return statusErr(C.shmq_subscriber_commit(s.h))
}

// Rollback moves the subscriber back to its named cursor's committed
// position and returns it: the messages read since are read again (in
// overwrite mode, those overwritten meanwhile come back as a
// *LaggedError). ErrNotNamed for an unnamed subscriber.
func (s *Subscriber) Rollback() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return 0, ErrHandleClosed
	}
	var pos C.uint64_t
	if st := C.shmq_subscriber_rollback(s.h, &pos); st != C.SHMQ_OK {
		return 0, statusErr(st)
	}
	return uint64(pos), nil
}

// Committed is the committed position of the subscriber's named cursor
// (ErrNotNamed for an unnamed subscriber).
func (s *Subscriber) Committed() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return 0, ErrHandleClosed
	}
	var pos C.uint64_t
	if st := C.shmq_subscriber_committed(s.h, &pos); st != C.SHMQ_OK {
		return 0, statusErr(st)
	}
	return uint64(pos), nil
}

// Position is the sequence number this subscriber reads next (right after
// a Recv, the message's sequence number is Position()-1); 0 after Close.
func (s *Subscriber) Position() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return 0
	}
	var pos C.uint64_t
	C.shmq_subscriber_position(s.h, &pos)
	return uint64(pos)
}

// Lag is the number of messages published that this subscriber has not
// read yet; 0 after Close.
func (s *Subscriber) Lag() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return 0
	}
	var lag C.uint64_t
	C.shmq_subscriber_lag(s.h, &lag)
	return uint64(lag)
}
