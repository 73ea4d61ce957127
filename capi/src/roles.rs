//! Role handles from C: `shmq_producer_*` and `shmq_consumer_*` for a
//! work queue, `shmq_publisher_*` for a fan-out log.
//!
//! A thin layer over the engine's [`Producer`], [`Consumer`] and
//! [`Publisher`]: a role handle attaches to the queue or log on its own (a
//! second mapping of the same segment) and, on a
//! single-producer/single-consumer queue or a single-publisher log, holds
//! its role from creation to its `_free`. Its calls take no lock of any
//! kind; in exchange one thread at a time uses it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::log::{packed_msgs, published, published_batch, shmq_log};
use super::queue::{
    buf_arg, dequeue_batch_out, dequeue_out, lens_out_arg, msg_arg, shmq_iovec, shmq_message,
    shmq_queue, shmq_reservation, timeout,
};
use super::shmq_status::{self, *};
use super::{
    boundary, cstr, dequeue_error, enqueue_error, fail, fail_static, non_null, setup_error,
    try_status,
};
use engine::{Consumer, Log, Producer, Publisher, Queue, Target};

/// The producing end of a work queue: made by shmq_queue_producer(), freed
/// by shmq_producer_free(). Opaque.
///
/// On a `SHMQ_QUEUE_SPSC` queue it holds the producer role for its whole
/// life, and its enqueues run without any lock (the fastest path shmq has);
/// on a multi-producer queue it forwards to the queue as a queue handle
/// does. One thread at a time may use it (it may move between threads).
/// It is independent of the queue handle it came from: either may be freed
/// first.
pub struct shmq_producer {
    producer: Producer,
    /// The queue's number of slots (a batch takes at most this many).
    capacity: usize,
    /// Whether a reservation borrows `producer` now (from
    /// shmq_producer_reserve() until it is committed or cancelled, perhaps
    /// on another thread): no other call may touch `producer` meanwhile.
    lent: AtomicBool,
}

/// The consuming end of a work queue: made by shmq_queue_consumer(), freed
/// by shmq_consumer_free(). Opaque. As shmq_producer, for the consumer role.
pub struct shmq_consumer {
    consumer: Consumer,
    /// Whether a message from shmq_consumer_consume() borrows `consumer`
    /// now (until released).
    lent: AtomicBool,
}

/// The publishing end of a fan-out log: made by shmq_log_publisher(),
/// freed by shmq_publisher_free(). Opaque.
///
/// On a `SHMQ_LOG_SINGLE_PUBLISHER` log it holds the publisher role for its
/// whole life, and a publish through it executes no locked instruction
/// (shmq_log_publish() on such a log takes a process-local lock around
/// every publish, as the log handle may be shared between threads); on a
/// multi-publisher log it publishes as a log handle does. One thread at a
/// time may use it (it may move between threads). It is independent of the
/// log handle it came from: either may be freed first.
pub struct shmq_publisher {
    publisher: Publisher,
}

/// The end of a zero-copy guard's borrow of a role handle: clears the
/// handle's `lent` flag when dropped (after the guard, which is declared
/// before it in shmq_reservation and shmq_message).
pub(crate) struct Loan(Option<&'static AtomicBool>);

impl Loan {
    /// No role handle is borrowed (a guard of a queue handle).
    pub(crate) const NONE: Loan = Loan(None);
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let Some(lent) = self.0 {
            // SYNC(role-lent): Release, pairs with the Acquire load in
            // `lent_check`: the guard's last use of the role handle happens
            // before the next call that uses it.
            lent.store(false, Ordering::Release);
        }
    }
}

/// The `lent` flag of a role handle, or a status (with its message) when a
/// zero-copy guard borrows the handle now.
///
/// # Safety
/// `lent` points to the `lent` field of a live role handle.
unsafe fn lent_check(lent: *const AtomicBool) -> Result<&'static AtomicBool, shmq_status> {
    // SAFETY: a live handle (caller). Only this field is referenced: a
    // guard may hold the handle's producer or consumer field meanwhile.
    let lent: &'static AtomicBool = unsafe { &*lent };
    // SYNC(role-lent): Acquire, pairs with the Release store in Loan::drop.
    if lent.load(Ordering::Acquire) {
        return Err(fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!(
                "a reservation or message made from this role handle is still open: \
                 commit, cancel or release it first"
            ),
        ));
    }
    Ok(lent)
}

/// The producer behind a handle, or a NULL_PARAMETER (or, while a
/// reservation borrows it, INVALID_ARGUMENT) status.
macro_rules! producer_mut {
    ($p:ident) => {{
        non_null!($p);
        // SAFETY: non-null (checked); the caller guarantees a live handle.
        try_status!(unsafe { lent_check(std::ptr::addr_of!((*$p).lent)) });
        // SAFETY: non-null (checked); the caller guarantees a live handle
        // from shmq_queue_producer, not yet freed, used by no other thread
        // meanwhile; no reservation borrows it (checked).
        unsafe { &mut (*$p).producer }
    }};
}

/// The consumer behind a handle: as producer_mut.
macro_rules! consumer_mut {
    ($c:ident) => {{
        non_null!($c);
        // SAFETY: non-null (checked); the caller guarantees a live handle.
        try_status!(unsafe { lent_check(std::ptr::addr_of!((*$c).lent)) });
        // SAFETY: as in producer_mut.
        unsafe { &mut (*$c).consumer }
    }};
}

/// The publisher behind a handle, or a NULL_PARAMETER status.
macro_rules! publisher_mut {
    ($p:ident) => {{
        non_null!($p);
        // SAFETY: non-null (checked); the caller guarantees a live handle
        // from shmq_log_publisher, not yet freed, used by no other thread
        // meanwhile.
        unsafe { &mut (*$p).publisher }
    }};
}

/// A second handle on the queue behind `queue`, for a role: the same
/// segment attached again through its target, and checked to be the same
/// queue (a queue removed and made again at the target is another one).
fn reattach(queue: &Queue) -> Result<Queue, shmq_status> {
    let again = reopen("queue", queue.target(), Queue::open, |q| {
        q.params() == queue.params()
    })?;
    Ok(again.with_wait_strategy(queue.wait_strategy()))
}

/// A second handle on the log behind `log`, for the publisher role: as
/// [`reattach`].
fn reattach_log(log: &Log) -> Result<Log, shmq_status> {
    let again = reopen("log", log.target(), Log::open, |l| {
        l.params() == log.params()
    })?;
    Ok(again.with_wait_strategy(log.wait_strategy()))
}

/// Opens the `kind` ("queue" or "log") at `target` again, and checks with
/// `same` that it is the one already open.
fn reopen<H>(
    kind: &str,
    target: Option<&Target>,
    open: fn(&Target) -> Result<H, engine::Error>,
    same: impl FnOnce(&H) -> bool,
) -> Result<H, shmq_status> {
    let Some(target) = target else {
        return Err(fail(
            SHMQ_INVALID_ARGUMENT,
            format_args!("this {kind} has no target to attach a role handle through"),
        ));
    };
    let again = open(target).map_err(|e| match e {
        engine::Error::NotFound { .. } => fail(
            SHMQ_NOT_FOUND,
            format_args!(
                "cannot attach a role handle to {target} ({e}): take roles before \
                 the {kind} is unlinked"
            ),
        ),
        e => setup_error(e),
    })?;
    if !same(&again) {
        return Err(fail(
            SHMQ_NOT_FOUND,
            format_args!(
                "the {kind} at {target} was unlinked and another one made there: \
                 take roles before the {kind} is unlinked"
            ),
        ));
    }
    Ok(again)
}

/// Makes the producing end of `queue` and writes it to `*producer_out`.
///
/// The producer attaches to the same queue through its target (so take it
/// before the queue is unlinked: `SHMQ_NOT_FOUND` after). On a
/// `SHMQ_QUEUE_SPSC` queue it takes the producer role, and keeps it until
/// shmq_producer_free(): `SHMQ_ROLE_TAKEN` while a live producer holds it,
/// in another process or in another handle of this one (a queue handle
/// that has enqueued holds the role too). On a multi-producer queue any
/// number of producers may exist. Blocking calls wait as `queue` was set to
/// (shmq_queue_set_wait()). `queue` stays usable, and either may be freed
/// first.
///
/// Other statuses: `SHMQ_NULL_PARAMETER`, and the open errors of
/// shmq_queue_open().
///
/// # Safety
/// `queue` is NULL or a live handle; `producer_out` is NULL or valid for
/// writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_producer(
    queue: *const shmq_queue,
    producer_out: *mut *mut shmq_producer,
) -> shmq_status {
    boundary(|| {
        non_null!(queue);
        non_null!(producer_out);
        // SAFETY: non-null (checked); a live handle (caller).
        let q = unsafe { &(*queue).queue };
        let again = try_status!(reattach(q));
        let capacity = again.capacity();
        match again.into_producer() {
            Ok(producer) => {
                let handle = Box::into_raw(Box::new(shmq_producer {
                    producer,
                    capacity,
                    lent: AtomicBool::new(false),
                }));
                // SAFETY: non-null (checked), writable (caller).
                unsafe { producer_out.write(handle) };
                SHMQ_OK
            }
            Err(e) => setup_error(e),
        }
    })
}

/// Makes the consuming end of `queue` and writes it to `*consumer_out`: as
/// shmq_queue_producer(), for the consumer role.
///
/// # Safety
/// `queue` is NULL or a live handle; `consumer_out` is NULL or valid for
/// writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_consumer(
    queue: *const shmq_queue,
    consumer_out: *mut *mut shmq_consumer,
) -> shmq_status {
    boundary(|| {
        non_null!(queue);
        non_null!(consumer_out);
        // SAFETY: non-null (checked); a live handle (caller).
        let q = unsafe { &(*queue).queue };
        let again = try_status!(reattach(q));
        match again.into_consumer() {
            Ok(consumer) => {
                let handle = Box::into_raw(Box::new(shmq_consumer {
                    consumer,
                    lent: AtomicBool::new(false),
                }));
                // SAFETY: non-null (checked), writable (caller).
                unsafe { consumer_out.write(handle) };
                SHMQ_OK
            }
            Err(e) => setup_error(e),
        }
    })
}

/// Releases the producer role (another handle may take it from now on),
/// detaches and frees the handle. NULL is accepted and ignored. The queue
/// itself lives on. End its reservation first: a producer freed while a
/// reservation of it is open is not freed but leaked (with its role), as
/// the reservation still uses it.
///
/// # Safety
/// `producer` is NULL or a live handle that no other thread is using; it
/// must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn shmq_producer_free(producer: *mut shmq_producer) {
    let _ = boundary(|| {
        // SAFETY: non-null (checked first); a live handle (caller).
        if !producer.is_null()
            && unsafe { lent_check(std::ptr::addr_of!((*producer).lent)) }.is_ok()
        {
            // SAFETY: made by Box::into_raw in shmq_queue_producer, freed
            // once (caller).
            drop(unsafe { Box::from_raw(producer) });
        }
        SHMQ_OK
    });
}

/// Releases the consumer role, detaches and frees the handle: as
/// shmq_producer_free() (a consumer freed while a message of it is not
/// released is leaked).
///
/// # Safety
/// `consumer` is NULL or a live handle that no other thread is using; it
/// must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn shmq_consumer_free(consumer: *mut shmq_consumer) {
    let _ = boundary(|| {
        // SAFETY: non-null (checked first); a live handle (caller).
        if !consumer.is_null()
            && unsafe { lent_check(std::ptr::addr_of!((*consumer).lent)) }.is_ok()
        {
            // SAFETY: made by Box::into_raw in shmq_queue_consumer, freed
            // once (caller).
            drop(unsafe { Box::from_raw(consumer) });
        }
        SHMQ_OK
    });
}

/// Enqueues the `len` bytes at `msg` if a slot is free; never waits. As
/// shmq_queue_enqueue_try(): `SHMQ_FULL`, `SHMQ_CLOSED`, `SHMQ_TOO_LARGE`
/// (nothing written), `SHMQ_NULL_PARAMETER`, `SHMQ_INVALID_ARGUMENT` (`len`
/// exceeds `PTRDIFF_MAX`). `msg` may be NULL when `len` is 0.
///
/// # Safety
/// `producer` is NULL or a live handle that no other thread is using; `msg`
/// is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmq_producer_enqueue_try(
    producer: *mut shmq_producer,
    msg: *const u8,
    len: usize,
) -> shmq_status {
    boundary(|| {
        let p = producer_mut!(producer);
        // SAFETY: readable for len bytes (caller).
        let msg = try_status!(unsafe { msg_arg(msg, len) });
        match p.enqueue_try(msg) {
            Ok(()) => SHMQ_OK,
            Err(e) => enqueue_error(e),
        }
    })
}

/// Enqueues the `len` bytes at `msg`, waiting while the queue is full for up
/// to `timeout_ns` nanoseconds (`SHMQ_WAIT_FOREVER`, or any negative value:
/// no limit; 0 does not wait). `SHMQ_TIMEOUT` when it passes; otherwise as
/// shmq_producer_enqueue_try().
///
/// # Safety
/// As for shmq_producer_enqueue_try().
#[no_mangle]
pub unsafe extern "C" fn shmq_producer_enqueue_block(
    producer: *mut shmq_producer,
    msg: *const u8,
    len: usize,
    timeout_ns: i64,
) -> shmq_status {
    boundary(|| {
        let p = producer_mut!(producer);
        // SAFETY: readable for len bytes (caller).
        let msg = try_status!(unsafe { msg_arg(msg, len) });
        match p.enqueue_block(msg, timeout(timeout_ns)) {
            Ok(()) => SHMQ_OK,
            Err(e) => enqueue_error(e),
        }
    })
}

/// Enqueues as many of the `count` messages at `msgs` as fit, in order, with
/// one index publication, and writes how many to `*count_out`: as
/// shmq_queue_enqueue_batch() (a prefix, at least 1 on `SHMQ_OK`; 0 when
/// `count` is 0). `timeout_ns` 0 never waits (`SHMQ_FULL`); negative no
/// limit; else up to that many nanoseconds (`SHMQ_TIMEOUT`) for the first
/// message to fit. `SHMQ_CLOSED`, `SHMQ_TOO_LARGE` (the first message is
/// longer than the slot size), `SHMQ_NULL_PARAMETER`,
/// `SHMQ_INVALID_ARGUMENT` (a length, or `count` entries, exceed
/// `PTRDIFF_MAX` bytes).
///
/// # Safety
/// `producer` is NULL or a live handle that no other thread is using;
/// `msgs` is NULL or readable for `count` entries, each readable for its
/// `len` bytes; `count_out` is NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_producer_enqueue_batch(
    producer: *mut shmq_producer,
    msgs: *const shmq_iovec,
    count: usize,
    timeout_ns: i64,
    count_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let p = producer_mut!(producer);
        non_null!(count_out);
        if count == 0 {
            // SAFETY: non-null (checked), writable (caller).
            unsafe { count_out.write(0) };
            return SHMQ_OK;
        }
        non_null!(msgs);
        if count > isize::MAX as usize / std::mem::size_of::<shmq_iovec>() {
            return fail_static(
                SHMQ_INVALID_ARGUMENT,
                cstr!("`count` messages exceed PTRDIFF_MAX bytes"),
            );
        }
        // SAFETY: non-null (checked), in range (checked), readable for count
        // entries (caller).
        let iov = unsafe { std::slice::from_raw_parts(msgs, count) };
        // SAFETY: non-null (checked above); a live handle (caller).
        let capacity = unsafe { (*producer).capacity };
        let mut refs: Vec<&[u8]> = Vec::with_capacity(count.min(capacity));
        for m in iov.iter().take(capacity) {
            // SAFETY: each readable for its len bytes (caller).
            refs.push(try_status!(unsafe { msg_arg(m.base, m.len) }));
        }
        let r = if timeout_ns == 0 {
            p.enqueue_batch(&refs)
        } else {
            p.enqueue_batch_until(&refs, timeout(timeout_ns).map(|t| Instant::now() + t))
        };
        match r {
            Ok(n) => {
                // SAFETY: non-null (checked), writable (caller).
                unsafe { count_out.write(n) };
                SHMQ_OK
            }
            Err(e) => enqueue_error(e),
        }
    })
}

/// Closes the queue for every process, as shmq_queue_close() (enqueues fail
/// with `SHMQ_CLOSED`, consumers drain what is left); the producer keeps its
/// role until freed. Idempotent.
///
/// # Safety
/// `producer` is NULL or a live handle that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn shmq_producer_close(producer: *mut shmq_producer) -> shmq_status {
    boundary(|| {
        producer_mut!(producer).close();
        SHMQ_OK
    })
}

/// Dequeues the next message into the `buf_len` bytes at `buf` and writes
/// its length to `*len_out`; never waits. Outputs by status as
/// shmq_queue_dequeue_try(): on `SHMQ_BUFFER_TOO_SMALL` the message stays
/// queued and the length it needs is written to `*len_out`; `SHMQ_EMPTY`,
/// `SHMQ_CLOSED` (closed and drained), `SHMQ_CORRUPT`,
/// `SHMQ_NULL_PARAMETER`, `SHMQ_INVALID_ARGUMENT` (`buf_len` exceeds
/// `PTRDIFF_MAX`) write nothing. `buf` may be NULL when `buf_len` is 0.
///
/// # Safety
/// `consumer` is NULL or a live handle that no other thread is using; `buf`
/// is NULL or writable for `buf_len` bytes; `len_out` is NULL or valid for
/// writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_consumer_dequeue_try(
    consumer: *mut shmq_consumer,
    buf: *mut u8,
    buf_len: usize,
    len_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let c = consumer_mut!(consumer);
        non_null!(len_out);
        // SAFETY: writable for buf_len bytes (caller).
        let buf = try_status!(unsafe { buf_arg(buf, buf_len) });
        // SAFETY: len_out is non-null (checked) and writable (caller).
        unsafe { dequeue_out(c.dequeue_try(buf), len_out) }
    })
}

/// Dequeues the next message as shmq_consumer_dequeue_try() does (same
/// outputs by status), waiting while the queue is empty for up to
/// `timeout_ns` nanoseconds (`SHMQ_WAIT_FOREVER`, or any negative value: no
/// limit); `SHMQ_TIMEOUT` when it passes.
///
/// # Safety
/// As for shmq_consumer_dequeue_try().
#[no_mangle]
pub unsafe extern "C" fn shmq_consumer_dequeue_block(
    consumer: *mut shmq_consumer,
    buf: *mut u8,
    buf_len: usize,
    timeout_ns: i64,
    len_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let c = consumer_mut!(consumer);
        non_null!(len_out);
        // SAFETY: writable for buf_len bytes (caller).
        let buf = try_status!(unsafe { buf_arg(buf, buf_len) });
        let result = c.dequeue_block(buf, timeout(timeout_ns));
        // SAFETY: len_out is non-null (checked) and writable (caller).
        unsafe { dequeue_out(result, len_out) }
    })
}

/// Dequeues up to `max` messages into the `buf_len` bytes at `buf`, back to
/// back, with one index publication, waiting up to `timeout_ns` for the
/// first: as shmq_queue_dequeue_batch() (same `timeout_ns`: 0 never waits,
/// negative waits forever), through the consumer. Message `i` is `lens[i]`
/// bytes long, after those before it; writes how many to `*count_out` (at
/// least 1 on `SHMQ_OK`); only messages that fit in `buf` together are
/// taken. `SHMQ_BUFFER_TOO_SMALL` if the first alone does not fit (it stays
/// queued; the length it needs is written to `lens[0]` when `max` is at
/// least 1). `SHMQ_EMPTY` (only with `timeout_ns` 0), `SHMQ_TIMEOUT`,
/// `SHMQ_CLOSED`, `SHMQ_CORRUPT`, `SHMQ_NULL_PARAMETER`,
/// `SHMQ_INVALID_ARGUMENT` (`buf_len`, or `max` entries, exceed
/// `PTRDIFF_MAX` bytes) write nothing.
///
/// # Safety
/// `consumer` is NULL or a live handle that no other thread is using; `buf`
/// is NULL or writable for `buf_len` bytes; `lens` is NULL or writable for
/// `max` `size_t` values; `count_out` is NULL or valid for writing a
/// `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_consumer_dequeue_batch(
    consumer: *mut shmq_consumer,
    buf: *mut u8,
    buf_len: usize,
    lens: *mut usize,
    max: usize,
    timeout_ns: i64,
    count_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let c = consumer_mut!(consumer);
        non_null!(count_out);
        non_null!(lens);
        // SAFETY: writable for buf_len bytes (caller).
        let buf = try_status!(unsafe { buf_arg(buf, buf_len) });
        // SAFETY: non-null (checked), writable for max entries (caller).
        let lens = try_status!(unsafe { lens_out_arg(lens, max) });
        let r = if timeout_ns == 0 {
            c.dequeue_batch_into(buf, lens)
        } else {
            c.dequeue_batch_into_until(buf, lens, timeout(timeout_ns).map(|t| Instant::now() + t))
        };
        // SAFETY: count_out is non-null (checked) and writable (caller).
        unsafe { dequeue_batch_out(r, lens, count_out) }
    })
}

/// Reserves a slot for a message of up to `len` bytes, to be written in
/// place: as shmq_queue_reserve() (same `timeout_ns`, outputs and
/// statuses), through the producer. On a `SHMQ_QUEUE_SPSC` queue no lock
/// is taken. End the reservation with shmq_reservation_commit() or
/// shmq_reservation_cancel() (from any thread) before using the producer
/// again: until then its other calls fail with `SHMQ_INVALID_ARGUMENT`,
/// and it must not be freed.
///
/// # Safety
/// `producer` is NULL or a live handle that no other thread is using, which
/// outlives the reservation; `res_out` and `buf_out` are NULL or valid for
/// writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_producer_reserve(
    producer: *mut shmq_producer,
    len: usize,
    timeout_ns: i64,
    res_out: *mut *mut shmq_reservation,
    buf_out: *mut *mut u8,
) -> shmq_status {
    boundary(|| {
        let p = producer_mut!(producer);
        non_null!(res_out);
        non_null!(buf_out);
        // SAFETY: non-null and live (checked above; caller).
        let lent: &'static AtomicBool = unsafe { &*std::ptr::addr_of!((*producer).lent) };
        // SAFETY: the reservation may borrow the producer until it ends:
        // the caller keeps the handle alive until then (documented above),
        // and `lent` keeps every other call on it (free included) off the
        // producer meanwhile.
        let p: &'static mut Producer = unsafe { &mut *(p as *mut Producer) };
        let r = if timeout_ns == 0 {
            p.reserve(len)
        } else {
            p.reserve_until(len, timeout(timeout_ns).map(|t| Instant::now() + t))
        };
        match r {
            Ok(mut guard) => {
                let buf = guard.as_mut_slice().as_mut_ptr();
                // Relaxed: read by later calls on this handle, which the
                // caller orders after this one (one thread at a time).
                lent.store(true, Ordering::Relaxed);
                let res = Box::new(shmq_reservation {
                    guard,
                    loan: Loan(Some(lent)),
                });
                // SAFETY: both non-null (checked), writable (caller).
                unsafe {
                    buf_out.write(buf);
                    res_out.write(Box::into_raw(res));
                }
                SHMQ_OK
            }
            Err(e) => enqueue_error(e),
        }
    })
}

/// Takes the next message to read in place: as shmq_queue_consume() (same
/// `timeout_ns`, outputs and statuses), through the consumer. On a
/// `SHMQ_QUEUE_SPSC` queue no lock is taken. Release the message with
/// shmq_message_release() (from any thread) before using the consumer
/// again: until then its other calls fail with `SHMQ_INVALID_ARGUMENT`, and
/// it must not be freed.
///
/// # Safety
/// `consumer` is NULL or a live handle that no other thread is using, which
/// outlives the message; the outputs are NULL or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn shmq_consumer_consume(
    consumer: *mut shmq_consumer,
    timeout_ns: i64,
    msg_out: *mut *mut shmq_message,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let c = consumer_mut!(consumer);
        non_null!(msg_out);
        non_null!(data_out);
        non_null!(len_out);
        // SAFETY: non-null and live (checked above; caller).
        let lent: &'static AtomicBool = unsafe { &*std::ptr::addr_of!((*consumer).lent) };
        // SAFETY: as in shmq_producer_reserve().
        let c: &'static mut Consumer = unsafe { &mut *(c as *mut Consumer) };
        let r = if timeout_ns == 0 {
            c.consume()
        } else {
            c.consume_until(timeout(timeout_ns).map(|t| Instant::now() + t))
        };
        match r {
            Ok(guard) => {
                let (data, len) = (guard.as_ptr(), guard.len());
                // Relaxed: as in shmq_producer_reserve().
                lent.store(true, Ordering::Relaxed);
                let msg = Box::new(shmq_message {
                    _guard: guard,
                    _loan: Loan(Some(lent)),
                });
                // SAFETY: non-null (checked), writable (caller).
                unsafe {
                    data_out.write(data);
                    len_out.write(len);
                    msg_out.write(Box::into_raw(msg));
                }
                SHMQ_OK
            }
            Err(e) => dequeue_error(e),
        }
    })
}

/// Makes the publishing end of `log` and writes it to `*publisher_out`.
///
/// The publisher attaches to the same log through its target (so take it
/// before the log is unlinked: `SHMQ_NOT_FOUND` after). On a
/// `SHMQ_LOG_SINGLE_PUBLISHER` log it takes the publisher role, and keeps
/// it until shmq_publisher_free(): `SHMQ_ROLE_TAKEN` while a live
/// publisher holds it, in another process or in another handle of this one
/// (a log handle that has published holds the role too, until it is
/// freed). On a multi-publisher log any number of publishers may exist.
/// Blocking calls wait as `log` was set to (shmq_log_set_wait()). `log`
/// stays usable, and either may be freed first.
///
/// Other statuses: `SHMQ_NULL_PARAMETER`, `SHMQ_BUSY`, and the open errors
/// of shmq_log_open().
///
/// # Safety
/// `log` is NULL or a live handle; `publisher_out` is NULL or valid for
/// writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_publisher(
    log: *const shmq_log,
    publisher_out: *mut *mut shmq_publisher,
) -> shmq_status {
    boundary(|| {
        non_null!(log);
        non_null!(publisher_out);
        // SAFETY: non-null (checked); a live handle (caller).
        let l = unsafe { &(*log).log };
        let again = try_status!(reattach_log(l));
        match again.into_publisher() {
            Ok(publisher) => {
                let handle = Box::into_raw(Box::new(shmq_publisher { publisher }));
                // SAFETY: non-null (checked), writable (caller).
                unsafe { publisher_out.write(handle) };
                SHMQ_OK
            }
            Err(e) => setup_error(e),
        }
    })
}

/// Releases the publisher role (another handle may take it from now on),
/// detaches and frees the handle. NULL is accepted and ignored. The log
/// itself lives on.
///
/// # Safety
/// `publisher` is NULL or a live handle that no other thread is using; it
/// must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn shmq_publisher_free(publisher: *mut shmq_publisher) {
    let _ = boundary(|| {
        if !publisher.is_null() {
            // SAFETY: made by Box::into_raw in shmq_log_publisher, freed once
            // (caller).
            drop(unsafe { Box::from_raw(publisher) });
        }
        SHMQ_OK
    });
}

/// Publishes the `len` bytes at `msg` and writes its sequence number to
/// `*seq_out` unless `seq_out` is NULL; never waits. As shmq_log_publish():
/// `SHMQ_FULL` and `SHMQ_NOT_CONNECTED` in reliable mode, `SHMQ_TOO_LARGE`
/// (nothing written), `SHMQ_CLOSED`, `SHMQ_INVALID_ARGUMENT` (`len` exceeds
/// `PTRDIFF_MAX`), `SHMQ_BUSY`, `SHMQ_CORRUPT`. `msg` may be NULL when
/// `len` is 0.
///
/// # Safety
/// `publisher` is NULL or a live handle that no other thread is using;
/// `msg` is NULL or readable for `len` bytes; `seq_out` is NULL or valid
/// for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_publisher_publish(
    publisher: *mut shmq_publisher,
    msg: *const u8,
    len: usize,
    seq_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let p = publisher_mut!(publisher);
        // SAFETY: readable for len bytes (caller).
        let msg = try_status!(unsafe { msg_arg(msg, len) });
        // SAFETY: seq_out is NULL or writable (caller).
        unsafe { published(p.publish(msg), seq_out) }
    })
}

/// Publishes as shmq_publisher_publish() does, waiting while a
/// reliable-mode log is full, or has no cursor registered, for up to
/// `timeout_ns` nanoseconds (`SHMQ_WAIT_FOREVER`, or any negative value: no
/// limit; 0 does not wait); when it passes, `SHMQ_TIMEOUT` (full) or
/// `SHMQ_NOT_CONNECTED` (nobody registered). In overwrite mode it never
/// waits. Other statuses as shmq_publisher_publish().
///
/// # Safety
/// As for shmq_publisher_publish().
#[no_mangle]
pub unsafe extern "C" fn shmq_publisher_publish_block(
    publisher: *mut shmq_publisher,
    msg: *const u8,
    len: usize,
    timeout_ns: i64,
    seq_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let p = publisher_mut!(publisher);
        // SAFETY: readable for len bytes (caller).
        let msg = try_status!(unsafe { msg_arg(msg, len) });
        // SAFETY: seq_out is NULL or writable (caller).
        unsafe { published(p.publish_block(msg, timeout(timeout_ns)), seq_out) }
    })
}

/// Publishes up to `count` messages in one call, in order, packed in `data`
/// as for shmq_log_publish_batch() (message `i` is the `lens[i]` bytes
/// after message `i - 1`), and writes how many were published to
/// `*published_out`; never waits. Same statuses as shmq_log_publish_batch()
/// (nothing published on any but `SHMQ_OK`). On a single-publisher log the
/// batch costs one index store and at most one wake.
///
/// # Safety
/// `publisher` is NULL or a live handle that no other thread is using;
/// `lens` is NULL or readable for `count` values; `data` is NULL or
/// readable for the sum of `lens` bytes; `published_out` is NULL or valid
/// for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_publisher_publish_batch(
    publisher: *mut shmq_publisher,
    data: *const u8,
    lens: *const usize,
    count: usize,
    published_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let p = publisher_mut!(publisher);
        non_null!(published_out);
        // SAFETY: as the caller guarantees.
        let msgs = try_status!(unsafe { packed_msgs(data, lens, count) });
        // SAFETY: published_out is non-null (checked), writable (caller).
        unsafe { published_batch(p.publish_batch(&msgs), published_out) }
    })
}

/// Writes the sequence number the next published message will get to
/// `*seq_out`.
///
/// # Safety
/// `publisher` is NULL or a live handle that no other thread is using;
/// `seq_out` is NULL or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_publisher_next_seq(
    publisher: *const shmq_publisher,
    seq_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        non_null!(publisher);
        non_null!(seq_out);
        // SAFETY: non-null (checked); a live handle (caller).
        let p = unsafe { &(*publisher).publisher };
        // SAFETY: non-null (checked), writable (caller).
        unsafe { seq_out.write(p.next_seq()) };
        SHMQ_OK
    })
}

/// Closes the log for every process, as shmq_log_close() (publishes fail
/// with `SHMQ_CLOSED`, subscribers read what is left); the publisher keeps
/// its role until freed. Idempotent.
///
/// # Safety
/// `publisher` is NULL or a live handle that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn shmq_publisher_close(publisher: *mut shmq_publisher) -> shmq_status {
    boundary(|| {
        publisher_mut!(publisher).close();
        SHMQ_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{
        shmq_log_create, shmq_log_free, shmq_log_publish, shmq_log_subscribe, shmq_log_unlink,
        shmq_subscriber_free, shmq_subscriber_recv_try, SHMQ_LOG_RELIABLE,
        SHMQ_LOG_SINGLE_PUBLISHER, SHMQ_START_LATEST,
    };
    use crate::queue::{
        shmq_queue_create, shmq_queue_dequeue_try, shmq_queue_enqueue_try, shmq_queue_free,
        shmq_queue_unlink, SHMQ_QUEUE_SPSC,
    };
    use std::ptr;

    /// A POSIX target unique to this test, and its segment removed when
    /// the test ends, also by a failed assertion (unwinding drops it).
    struct Posix {
        name: String,
        c: std::ffi::CString,
    }

    impl Posix {
        fn as_ptr(&self) -> *const std::ffi::c_char {
            self.c.as_ptr()
        }
    }

    impl Drop for Posix {
        fn drop(&mut self) {
            let _ = engine::Target::Posix(self.name.clone()).unlink();
        }
    }

    fn target(tag: &str) -> Posix {
        let name = format!("shmq-capi-roles-{tag}-{}", std::process::id());
        let c = std::ffi::CString::new(format!("posix:{name}")).unwrap();
        Posix { name, c }
    }

    #[test]
    fn roles_are_exclusive_until_freed_and_messages_flow() {
        let t = target("excl");
        let mut q: *mut shmq_queue = ptr::null_mut();
        // SAFETY: valid arguments throughout; every handle is freed.
        unsafe {
            assert_eq!(
                shmq_queue_create(t.as_ptr(), 16, 4, 0, SHMQ_QUEUE_SPSC, &mut q),
                SHMQ_OK
            );
            let (mut p, mut p2) = (ptr::null_mut(), ptr::null_mut());
            let mut c = ptr::null_mut();
            assert_eq!(shmq_queue_producer(q, &mut p), SHMQ_OK);
            assert_eq!(shmq_queue_producer(q, &mut p2), SHMQ_ROLE_TAKEN);
            assert!(p2.is_null());
            // The queue handle cannot produce behind the producer's back.
            assert_eq!(shmq_queue_enqueue_try(q, b"x".as_ptr(), 1), SHMQ_ROLE_TAKEN);
            assert_eq!(shmq_queue_consumer(q, &mut c), SHMQ_OK);
            assert_eq!(shmq_producer_enqueue_try(p, b"hello".as_ptr(), 5), SHMQ_OK);
            let (mut buf, mut n) = ([0u8; 16], 0usize);
            assert_eq!(
                shmq_consumer_dequeue_try(c, buf.as_mut_ptr(), 2, &mut n),
                SHMQ_BUFFER_TOO_SMALL
            );
            assert_eq!(n, 5);
            assert_eq!(
                shmq_consumer_dequeue_block(c, buf.as_mut_ptr(), 16, 1_000_000_000, &mut n),
                SHMQ_OK
            );
            assert_eq!(&buf[..n], b"hello");
            shmq_producer_free(p);
            assert_eq!(shmq_queue_producer(q, &mut p2), SHMQ_OK);
            assert_eq!(
                shmq_queue_dequeue_try(q, buf.as_mut_ptr(), 16, &mut n),
                SHMQ_ROLE_TAKEN
            );
            shmq_producer_free(p2);
            shmq_consumer_free(c);
            assert_eq!(shmq_queue_unlink(q), SHMQ_OK);
            let mut late = ptr::null_mut();
            assert_eq!(shmq_queue_producer(q, &mut late), SHMQ_NOT_FOUND);
            shmq_queue_free(q);
        }
    }

    #[test]
    fn publisher_role_is_exclusive_until_freed_and_messages_flow() {
        let t = target("pub");
        let mut log: *mut shmq_log = ptr::null_mut();
        // SAFETY: valid arguments throughout; every handle is freed.
        unsafe {
            let flags = SHMQ_LOG_RELIABLE | SHMQ_LOG_SINGLE_PUBLISHER;
            assert_eq!(
                shmq_log_create(t.as_ptr(), 8, 4, 0, flags, 0, &mut log),
                SHMQ_OK
            );
            let mut sub = ptr::null_mut();
            assert_eq!(
                shmq_log_subscribe(log, SHMQ_START_LATEST, &mut sub),
                SHMQ_OK
            );
            let (mut p, mut p2) = (ptr::null_mut(), ptr::null_mut());
            assert_eq!(shmq_log_publisher(log, &mut p), SHMQ_OK);
            assert_eq!(shmq_log_publisher(log, &mut p2), SHMQ_ROLE_TAKEN);
            assert!(p2.is_null());
            // The log handle cannot publish behind the publisher's back.
            assert_eq!(
                shmq_log_publish(log, b"x".as_ptr(), 1, ptr::null_mut()),
                SHMQ_ROLE_TAKEN
            );
            let mut seq = 99;
            assert_eq!(
                shmq_publisher_publish(p, b"a".as_ptr(), 1, &mut seq),
                SHMQ_OK
            );
            assert_eq!(seq, 0);
            let (data, lens) = (b"bcc", [1usize, 2]);
            let mut n = 0;
            assert_eq!(
                shmq_publisher_publish_batch(p, data.as_ptr(), lens.as_ptr(), 2, &mut n),
                SHMQ_OK
            );
            assert_eq!(n, 2);
            assert_eq!(shmq_publisher_next_seq(p, &mut seq), SHMQ_OK);
            assert_eq!(seq, 3);
            assert_eq!(
                shmq_publisher_publish_block(p, b"d".as_ptr(), 1, 0, &mut seq),
                SHMQ_OK
            );
            // Four slots, none read: full.
            assert_eq!(
                shmq_publisher_publish_block(p, b"e".as_ptr(), 1, 1_000_000, &mut seq),
                SHMQ_TIMEOUT
            );
            assert_eq!(seq, 3);
            let (mut buf, mut len, mut missed) = ([0u8; 8], 0usize, 0u64);
            for want in [&b"a"[..], b"b", b"cc", b"d"] {
                assert_eq!(
                    shmq_subscriber_recv_try(sub, buf.as_mut_ptr(), 8, &mut len, &mut missed),
                    SHMQ_OK
                );
                assert_eq!(&buf[..len], want);
            }
            shmq_publisher_free(p);
            assert_eq!(shmq_log_publisher(log, &mut p2), SHMQ_OK);
            assert_eq!(
                shmq_publisher_publish(p2, b"e".as_ptr(), 1, &mut seq),
                SHMQ_OK
            );
            assert_eq!(seq, 4);
            assert_eq!(shmq_publisher_close(p2), SHMQ_OK);
            assert_eq!(
                shmq_publisher_publish(p2, b"f".as_ptr(), 1, &mut seq),
                SHMQ_CLOSED
            );
            shmq_publisher_free(p2);
            shmq_subscriber_free(sub);
            assert_eq!(shmq_log_unlink(log), SHMQ_OK);
            let mut late = ptr::null_mut();
            assert_eq!(shmq_log_publisher(log, &mut late), SHMQ_NOT_FOUND);
            shmq_log_free(log);
        }
    }
}
