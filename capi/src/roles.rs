//! Role handles from C: `shmq_producer_*` and `shmq_consumer_*`.
//!
//! A thin layer over the engine's [`Producer`] and [`Consumer`]: a role
//! handle attaches to the queue on its own (a second mapping of the same
//! segment) and, on a single-producer/single-consumer queue, holds its role
//! from creation to shmq_producer_free() / shmq_consumer_free(). Its calls
//! take no lock of any kind; in exchange one thread at a time uses it.

use std::time::Instant;

use super::queue::{
    buf_arg, dequeue_batch_out, dequeue_out, lens_out_arg, msg_arg, shmq_iovec, shmq_queue, timeout,
};
use super::shmq_status::{self, *};
use super::{boundary, cstr, enqueue_error, fail, fail_static, non_null, setup_error, try_status};
use engine::{Consumer, Producer, Queue};

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
}

/// The consuming end of a work queue: made by shmq_queue_consumer(), freed
/// by shmq_consumer_free(). Opaque. As shmq_producer, for the consumer role.
pub struct shmq_consumer {
    consumer: Consumer,
}

/// The producer behind a handle, or a NULL_PARAMETER status.
macro_rules! producer_mut {
    ($p:ident) => {{
        non_null!($p);
        // SAFETY: non-null (checked); the caller guarantees a live handle
        // from shmq_queue_producer, not yet freed, used by no other thread
        // meanwhile.
        unsafe { &mut (*$p).producer }
    }};
}

/// The consumer behind a handle, or a NULL_PARAMETER status.
macro_rules! consumer_mut {
    ($c:ident) => {{
        non_null!($c);
        // SAFETY: as in producer_mut.
        unsafe { &mut (*$c).consumer }
    }};
}

/// A second handle on the queue behind `queue`, for a role: the same
/// segment attached again through its target, and checked to be the same
/// queue (a queue removed and made again at the target is another one).
fn reattach(queue: &Queue) -> Result<Queue, shmq_status> {
    let Some(target) = queue.target() else {
        return Err(fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!("this queue has no target to attach a role handle through"),
        ));
    };
    let again = Queue::open(target).map_err(|e| {
        fail(
            SHMQ_NOT_FOUND,
            format_args!(
                "cannot attach a role handle to {target} ({e}): take roles before \
                 the queue is unlinked"
            ),
        )
    })?;
    if again.params() != queue.params() {
        return Err(fail(
            SHMQ_NOT_FOUND,
            format_args!(
                "the queue at {target} was unlinked and another one made there: \
                 take roles before the queue is unlinked"
            ),
        ));
    }
    Ok(again.with_wait_strategy(queue.wait_strategy()))
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
        match again.into_producer() {
            Ok(producer) => {
                let handle = Box::into_raw(Box::new(shmq_producer { producer }));
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
                let handle = Box::into_raw(Box::new(shmq_consumer { consumer }));
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
/// itself lives on.
///
/// # Safety
/// `producer` is NULL or a live handle that no other thread is using; it
/// must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn shmq_producer_free(producer: *mut shmq_producer) {
    let _ = boundary(|| {
        if !producer.is_null() {
            // SAFETY: made by Box::into_raw in shmq_queue_producer, freed
            // once (caller).
            drop(unsafe { Box::from_raw(producer) });
        }
        SHMQ_OK
    });
}

/// Releases the consumer role, detaches and frees the handle: as
/// shmq_producer_free().
///
/// # Safety
/// `consumer` is NULL or a live handle that no other thread is using; it
/// must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn shmq_consumer_free(consumer: *mut shmq_consumer) {
    let _ = boundary(|| {
        if !consumer.is_null() {
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
        let capacity = p.queue().capacity();
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
/// back, with one index publication; never waits. As
/// shmq_queue_dequeue_batch() with `timeout_ns` 0: message `i` is `lens[i]`
/// bytes long, after those before it; writes how many to `*count_out` (at
/// least 1 on `SHMQ_OK`); only messages that fit in `buf` together are
/// taken. `SHMQ_BUFFER_TOO_SMALL` if the first alone does not fit (it stays
/// queued; the length it needs is written to `lens[0]` when `max` is at
/// least 1). `SHMQ_EMPTY`, `SHMQ_CLOSED`, `SHMQ_CORRUPT`,
/// `SHMQ_NULL_PARAMETER`, `SHMQ_INVALID_ARGUMENT` (`buf_len`, or `max`
/// entries, exceed `PTRDIFF_MAX` bytes) write nothing.
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
        let r = c.dequeue_batch_into(buf, lens);
        // SAFETY: count_out is non-null (checked) and writable (caller).
        unsafe { dequeue_batch_out(r, lens, count_out) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{
        shmq_queue_create, shmq_queue_dequeue_try, shmq_queue_enqueue_try, shmq_queue_free,
        shmq_queue_unlink, SHMQ_QUEUE_SPSC,
    };
    use std::ptr;

    fn target(tag: &str) -> std::ffi::CString {
        std::ffi::CString::new(format!(
            "posix:shmq-capi-roles-{tag}-{}",
            std::process::id()
        ))
        .unwrap()
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
}
