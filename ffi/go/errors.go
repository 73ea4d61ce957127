package shmq

// #include "shmq.h"
import "C"

import (
	"errors"
	"fmt"
)

// Errors, usable with errors.Is. Setup calls return an *Error wrapping one
// of them, with the library's message.
var (
	// ErrFull: every slot holds a message (TryEnqueue), or a reliable
	// log's slowest cursor is a full ring behind (Log.Publish).
	ErrFull = errors.New("shmq: queue is full")
	// ErrEmpty: no message is ready (TryDequeue, Subscriber.TryRecv).
	ErrEmpty = errors.New("shmq: queue is empty")
	// ErrTimeout: the timeout passed (EnqueueTimeout, DequeueTimeout).
	ErrTimeout = errors.New("shmq: timed out")
	// ErrClosed: the queue (or log) was closed: no more enqueues (or
	// publishes); dequeues (receives) fail once everything was read.
	ErrClosed = errors.New("shmq: queue is closed")
	// ErrTooLarge: the message is longer than the slot size; nothing was written.
	ErrTooLarge = errors.New("shmq: message larger than the slot size")
	// ErrBufferTooSmall: the next message is longer than the buffer; it
	// stays queued (a buffer of SlotSize bytes always suffices).
	ErrBufferTooSmall = errors.New("shmq: buffer too small for the next message")
	// ErrAlreadyExists: create found something at the target and left it untouched.
	ErrAlreadyExists = errors.New("shmq: already exists")
	// ErrNotFound: open found nothing at the target.
	ErrNotFound = errors.New("shmq: not found")
	// ErrIncompatible: the segment holds another kind of queue or other
	// parameters.
	ErrIncompatible = errors.New("shmq: incompatible segment")
	// ErrCorrupt: the segment fails validation (not shmq's, or damaged).
	ErrCorrupt = errors.New("shmq: corrupt segment")
	// ErrInvalidArgument: an argument is out of range or malformed.
	ErrInvalidArgument = errors.New("shmq: invalid argument")
	// ErrPermissionDenied: the caller may not open or create the target.
	ErrPermissionDenied = errors.New("shmq: permission denied")
	// ErrVersionMismatch: the segment was written by an incompatible shmq.
	ErrVersionMismatch = errors.New("shmq: layout version mismatch")
	// ErrNotReady: the segment's creator never finished initialising it.
	ErrNotReady = errors.New("shmq: segment not initialised")
	// ErrIO: another operating-system error.
	ErrIO = errors.New("shmq: system error")
	// ErrRoleTaken: a single-producer/single-consumer queue (WithSPSC)
	// already has a live producer (or consumer) in another handle.
	ErrRoleTaken = errors.New("shmq: producer or consumer role held by another handle")
	// ErrLagged: a log subscriber fell a full ring behind and lost
	// messages (overwrite mode). Receives return a *LaggedError, which
	// says how many: errors.Is(err, ErrLagged) or errors.As(err, &lagged).
	ErrLagged = errors.New("shmq: subscriber lagged: messages were lost")
	// ErrCursorNotFound: the log has no named cursor of this name.
	ErrCursorNotFound = errors.New("shmq: no such cursor")
	// ErrCursorExists: a named cursor of this name exists already.
	ErrCursorExists = errors.New("shmq: cursor exists")
	// ErrCursorTableFull: every entry of the log's cursor table is taken
	// (its size, WithCursors, is fixed at creation).
	ErrCursorTableFull = errors.New("shmq: cursor table full")
	// ErrCursorInUse: the named cursor is held by a live subscriber (in this
	// or another process).
	ErrCursorInUse = errors.New("shmq: cursor in use")
	// ErrNotNamed: Commit and Rollback need a subscriber on a named cursor.
	ErrNotNamed = errors.New("shmq: subscriber has no named cursor")
	// ErrBusy: another live process kept the log's cursor table locked for
	// too long; retry later.
	ErrBusy = errors.New("shmq: cursor table busy")
	// ErrNotConnected: a reliable log has no cursor registered at all (no
	// named cursor, no live subscriber), so nobody would read the message;
	// nothing was written (Aeron's NOT_CONNECTED). Subscribe first, or
	// declare durable cursors when creating the log (WithDurableCursors).
	// PublishBlock waits for a cursor to appear and returns it when its
	// deadline passes with nobody registered.
	ErrNotConnected = errors.New("shmq: nobody is subscribed to the reliable log")
	// ErrHandleClosed: this handle (queue, log or subscriber) was closed
	// with Close.
	ErrHandleClosed = errors.New("shmq: handle is closed")
	// ErrInternal: libshmq reported a bug (a caught panic or a NULL argument).
	ErrInternal = errors.New("shmq: internal error")
)

// The names shqueue-go gave its errors, for programs that test for them.
var (
	ErrAlreadyExist = ErrAlreadyExists    // shqueue-go's name
	ErrNotExist     = ErrNotFound         // shqueue-go's name
	ErrNoAccess     = ErrPermissionDenied // shqueue-go's name
	ErrInvalidMagic = ErrCorrupt          // shqueue-go's name
	ErrNoFreeKeys   = ErrIO               // shqueue-go's name (FindFreeKey failed)
)

// Error is a failed setup call: what was done, where, and the library's
// message. errors.Is(err, ErrNotFound) and the like see through it.
type Error struct {
	Op     string // "create", "open", "unlink", ...
	Target Target // where, if any
	Msg    string // the library's message
	err    error  // the sentinel
}

func (e *Error) Error() string {
	if e.Target == "" {
		return fmt.Sprintf("shmq: %s: %s", e.Op, e.Msg)
	}
	return fmt.Sprintf("shmq: %s %s: %s", e.Op, e.Target, e.Msg)
}

// Unwrap returns the sentinel (ErrNotFound, ErrAlreadyExists, ...).
func (e *Error) Unwrap() error { return e.err }

// Not a libshmq status: the Go handle was closed.
const statusHandleClosed C.enum_shmq_status = 1 << 20

func statusErr(st C.enum_shmq_status) error {
	switch st {
	case C.SHMQ_OK:
		return nil
	case C.SHMQ_FULL:
		return ErrFull
	case C.SHMQ_EMPTY:
		return ErrEmpty
	case C.SHMQ_TIMEOUT:
		return ErrTimeout
	case C.SHMQ_CLOSED:
		return ErrClosed
	case C.SHMQ_TOO_LARGE:
		return ErrTooLarge
	case C.SHMQ_BUFFER_TOO_SMALL:
		return ErrBufferTooSmall
	case C.SHMQ_ALREADY_EXISTS:
		return ErrAlreadyExists
	case C.SHMQ_NOT_FOUND:
		return ErrNotFound
	case C.SHMQ_INCOMPATIBLE:
		return ErrIncompatible
	case C.SHMQ_CORRUPT:
		return ErrCorrupt
	case C.SHMQ_INVALID_ARGUMENT:
		return ErrInvalidArgument
	case C.SHMQ_PERMISSION_DENIED:
		return ErrPermissionDenied
	case C.SHMQ_VERSION_MISMATCH:
		return ErrVersionMismatch
	case C.SHMQ_NOT_READY:
		return ErrNotReady
	case C.SHMQ_IO:
		return ErrIO
	case C.SHMQ_ROLE_TAKEN:
		return ErrRoleTaken
	case C.SHMQ_LAGGED: // receives return a *LaggedError with the count instead
		return ErrLagged
	case C.SHMQ_CURSOR_NOT_FOUND:
		return ErrCursorNotFound
	case C.SHMQ_CURSOR_EXISTS:
		return ErrCursorExists
	case C.SHMQ_CURSOR_TABLE_FULL:
		return ErrCursorTableFull
	case C.SHMQ_CURSOR_IN_USE:
		return ErrCursorInUse
	case C.SHMQ_NOT_NAMED:
		return ErrNotNamed
	case C.SHMQ_BUSY:
		return ErrBusy
	case C.SHMQ_NOT_CONNECTED:
		return ErrNotConnected
	case statusHandleClosed:
		return ErrHandleClosed
	default: // SHMQ_NULL_PARAMETER, SHMQ_PANIC, or a status newer than this package
		return fmt.Errorf("%w: status %s", ErrInternal, C.GoString(C.shmq_status_name(C.int32_t(st))))
	}
}

// LaggedError is what a log receive returns when the subscriber fell a full
// ring behind (overwrite mode): Missed messages were overwritten before it
// read them. The subscriber now stands at the oldest message still present;
// receive again to go on. errors.Is(err, ErrLagged) holds.
type LaggedError struct {
	Missed uint64 // messages lost
}

func (e *LaggedError) Error() string {
	return fmt.Sprintf("shmq: subscriber lagged: %d messages were lost", e.Missed)
}

// Unwrap returns ErrLagged.
func (e *LaggedError) Unwrap() error { return ErrLagged }
