//! The work queue from C: `shmq_queue_*`.

use std::ffi::c_char;
use std::time::Duration;

use super::roles::Loan;
use super::shmq_status::{self, *};
use super::{
    boundary, cstr, dequeue_error, enqueue_error, fail_static, non_null, parse_target, setup_error,
    try_status,
};
use engine::{Queue, QueueConfig, RecvError, WaitStrategy};

/// A handle to a work queue. Opaque: create it with shmq_queue_create(),
/// shmq_queue_open() or shmq_queue_open_or_create(), release it with
/// shmq_queue_free(). One handle may be used by many threads at once (every
/// function taking a `const shmq_queue *` is thread-safe).
pub struct shmq_queue {
    pub(crate) queue: Queue,
}

/// Counters of a queue (approximate while operations are in flight).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmq_stats {
    /// Messages accepted by any enqueue.
    pub enqueued: u64,
    /// Messages handed to consumers.
    pub dequeued: u64,
    /// Messages discarded by shmq_queue_enqueue_shift() to make room.
    pub discarded: u64,
    /// Positions that carried no message (claims abandoned by close or a crash).
    pub tombstones: u64,
    /// Messages waiting now.
    pub len: u64,
    /// Number of slots.
    pub capacity: u64,
}

/// A C timeout in nanoseconds: negative means no limit.
pub(super) fn timeout(timeout_ns: i64) -> Option<Duration> {
    u64::try_from(timeout_ns).ok().map(Duration::from_nanos)
}

/// Borrows a message from C.
///
/// # Safety
/// `ptr` is NULL or valid for reading `len` bytes during the returned borrow.
pub(super) unsafe fn msg_arg<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], shmq_status> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(fail_static(
            SHMQ_NULL_PARAMETER,
            cstr!("argument `msg` is NULL but `len` is not 0"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!("`len` exceeds PTRDIFF_MAX"),
        ));
    }
    // SAFETY: non-null, len <= isize::MAX, readable for len bytes (caller).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows a receive buffer from C.
///
/// # Safety
/// `ptr` is NULL or valid for writing `len` bytes during the returned borrow,
/// and not accessed by anyone else meanwhile.
pub(super) unsafe fn buf_arg<'a>(ptr: *mut u8, len: usize) -> Result<&'a mut [u8], shmq_status> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(fail_static(
            SHMQ_NULL_PARAMETER,
            cstr!("argument `buf` is NULL but `buf_len` is not 0"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!("`buf_len` exceeds PTRDIFF_MAX"),
        ));
    }
    // SAFETY: non-null, len <= isize::MAX, writable and exclusive (caller).
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Handles a dequeue's result: on `SHMQ_OK` the message's length, on
/// `SHMQ_BUFFER_TOO_SMALL` the length the message needs, goes to `*len_out`.
///
/// # Safety
/// `len_out` is non-null and valid for writing a `size_t`.
pub(super) unsafe fn dequeue_out(
    result: Result<usize, RecvError>,
    len_out: *mut usize,
) -> shmq_status {
    match result {
        Ok(n) => {
            // SAFETY: non-null, writable (caller).
            unsafe { len_out.write(n) };
            SHMQ_OK
        }
        Err(RecvError::BufferTooSmall { needed }) => {
            // SAFETY: non-null, writable (caller).
            unsafe { len_out.write(needed) };
            dequeue_error(RecvError::BufferTooSmall { needed })
        }
        Err(e) => dequeue_error(e),
    }
}

/// Handles a batch dequeue's result: on `SHMQ_OK` the count goes to
/// `*count_out`; on `SHMQ_BUFFER_TOO_SMALL` the first message's length goes
/// to `lens[0]` (when `lens` has room for one).
///
/// # Safety
/// `count_out` is non-null and valid for writing a `size_t`.
pub(super) unsafe fn dequeue_batch_out(
    result: Result<usize, RecvError>,
    lens: &mut [usize],
    count_out: *mut usize,
) -> shmq_status {
    match result {
        Ok(n) => {
            // SAFETY: non-null, writable (caller).
            unsafe { count_out.write(n) };
            SHMQ_OK
        }
        Err(RecvError::BufferTooSmall { needed }) => {
            if let Some(first) = lens.first_mut() {
                *first = needed;
            }
            dequeue_error(RecvError::BufferTooSmall { needed })
        }
        Err(e) => dequeue_error(e),
    }
}

/// Borrows an output array of `max` lengths from C.
///
/// # Safety
/// `ptr` is non-null and valid for writing `max` `size_t` values during the
/// returned borrow, and not accessed by anyone else meanwhile.
pub(super) unsafe fn lens_out_arg<'a>(
    ptr: *mut usize,
    max: usize,
) -> Result<&'a mut [usize], shmq_status> {
    if max > isize::MAX as usize / std::mem::size_of::<usize>() {
        return Err(fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!("`max` lengths exceed PTRDIFF_MAX bytes"),
        ));
    }
    // SAFETY: non-null, in range, writable and exclusive (caller).
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, max) })
}

/// The queue behind a handle, or a NULL_PARAMETER status.
macro_rules! queue_ref {
    ($q:ident) => {{
        non_null!($q);
        // SAFETY: non-null (checked); the caller guarantees a live handle
        // from shmq_queue_create/open/open_or_create, not yet freed.
        unsafe { &(*$q).queue }
    }};
}

/// Writes the handle for a setup result.
///
/// # Safety
/// `out` is non-null and valid for writing a pointer.
unsafe fn handle_out(
    result: Result<Queue, engine::Error>,
    out: *mut *mut shmq_queue,
) -> shmq_status {
    match result {
        Ok(queue) => {
            let handle = Box::into_raw(Box::new(shmq_queue { queue }));
            // SAFETY: non-null and writable (caller).
            unsafe { out.write(handle) };
            SHMQ_OK
        }
        Err(e) => setup_error(e),
    }
}

/// Flag for shmq_queue_create(): a single-producer/single-consumer queue.
/// At most one handle produces and one consumes at a time, and in exchange
/// the role handles execute no locked instruction: the fastest mode. Take
/// the roles explicitly with shmq_queue_producer() and
/// shmq_queue_consumer(): their calls take no lock at all, and a second
/// taker gets `SHMQ_ROLE_TAKEN`. Through a queue handle each enqueue (or
/// dequeue) call leases the producer (or consumer) role for that call only
/// (two compare-and-swaps) and gives it back before returning, so no queue
/// handle keeps a role between calls; a call made while another handle
/// holds the role (mid-call, a zero-copy guard, or a role handle) gets
/// `SHMQ_ROLE_TAKEN`.
pub const SHMQ_QUEUE_SPSC: u32 = 1;

fn config(
    slot_size: u32,
    capacity: u64,
    mode: u32,
    flags: u32,
) -> Result<QueueConfig, shmq_status> {
    if flags & !SHMQ_QUEUE_SPSC != 0 {
        return Err(fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!("unknown bits in `flags`"),
        ));
    }
    let capacity = usize::try_from(capacity).map_err(|_| {
        fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!("capacity does not fit in size_t"),
        )
    })?;
    let mode = if mode == 0 { 0o600 } else { mode };
    Ok(QueueConfig::new(slot_size as usize, capacity)
        .permissions(mode)
        .spsc(flags & SHMQ_QUEUE_SPSC != 0))
}

/// Creates a new work queue at `target` with `capacity` slots (at least 2) of
/// up to `slot_size` bytes each, permission bits `mode` (0 means 0600) and
/// `flags` (0, or `SHMQ_QUEUE_SPSC`), and writes its handle to `*queue_out`.
///
/// `target` is `"sysv:KEY"` (decimal or 0x-hex), `"posix:NAME"` (/dev/shm)
/// or `"file:PATH"`; without a prefix a number is a SysV key, a string with a
/// `/` after its first character (or starting with `.`) a file path, and
/// anything else a POSIX name. So an all-digit name without a prefix is a
/// SysV key: write `"posix:4242"` for a POSIX object named by digits. A key
/// is unsigned (up to 0xffffffff) and has no sign: `"sysv:-5"` is
/// `SHMQ_INVALID_ARGUMENT`, as are an empty name or path (`"posix:"`,
/// `"file:"`); a file path whose directory is missing is `SHMQ_NOT_FOUND`,
/// with shmq_last_error() naming the directory.
///
/// Fails with `SHMQ_ALREADY_EXISTS` if anything is at the target (it is left
/// untouched), `SHMQ_INVALID_ARGUMENT` for a malformed target, unknown
/// `flags` bits or parameters out of range, `SHMQ_PERMISSION_DENIED` or
/// `SHMQ_IO` when the operating system refuses or fails.
///
/// # Safety
/// `target` is NULL or a NUL-terminated string; `queue_out` is NULL or valid
/// for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_create(
    target: *const c_char,
    slot_size: u32,
    capacity: u64,
    mode: u32,
    flags: u32,
    queue_out: *mut *mut shmq_queue,
) -> shmq_status {
    boundary(|| {
        non_null!(target);
        non_null!(queue_out);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let target = try_status!(unsafe { parse_target(target) });
        let config = try_status!(config(slot_size, capacity, mode, flags));
        // SAFETY: queue_out is non-null (checked) and writable (caller).
        unsafe { handle_out(Queue::create(&target, &config), queue_out) }
    })
}

/// Opens the existing work queue at `target` (syntax as in
/// shmq_queue_create()) and writes its handle to `*queue_out`. Never creates:
/// `SHMQ_NOT_FOUND` if nothing is there; `SHMQ_INCOMPATIBLE`, `SHMQ_CORRUPT`,
/// `SHMQ_VERSION_MISMATCH` or `SHMQ_NOT_READY` if what is there is not a
/// usable work queue; `SHMQ_INVALID_ARGUMENT` for a malformed target;
/// `SHMQ_PERMISSION_DENIED` when its permission bits do not let this user
/// read and write it; `SHMQ_IO` for another operating-system error.
///
/// Waits only for a segment whose creator is still writing its header
/// (shaped like a shmq header, its creator alive, changed in the last 3 s):
/// up to 2 s, then `SHMQ_NOT_READY`. A segment abandoned by its creator gives
/// `SHMQ_NOT_READY` and something that is not a shmq segment (an empty or
/// zero-filled file of another size, `/dev/null`) `SHMQ_CORRUPT`, both at
/// once; neither is ever modified.
///
/// # Safety
/// `target` is NULL or a NUL-terminated string; `queue_out` is NULL or valid
/// for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_open(
    target: *const c_char,
    queue_out: *mut *mut shmq_queue,
) -> shmq_status {
    boundary(|| {
        non_null!(target);
        non_null!(queue_out);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let target = try_status!(unsafe { parse_target(target) });
        // SAFETY: queue_out is non-null (checked) and writable (caller).
        unsafe { handle_out(Queue::open(&target), queue_out) }
    })
}

/// Creates the queue as shmq_queue_create() does, or opens it if it exists
/// with the same slot size, capacity and `flags` (else `SHMQ_INCOMPATIBLE`).
/// The permission bits `mode` are used only when it creates: they are not
/// compared with an existing queue's (the operating system decides whether
/// this user may open it: `SHMQ_PERMISSION_DENIED`). Opening waits as in
/// shmq_queue_open(); other statuses as those two functions.
///
/// # Safety
/// As for shmq_queue_create().
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_open_or_create(
    target: *const c_char,
    slot_size: u32,
    capacity: u64,
    mode: u32,
    flags: u32,
    queue_out: *mut *mut shmq_queue,
) -> shmq_status {
    boundary(|| {
        non_null!(target);
        non_null!(queue_out);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let target = try_status!(unsafe { parse_target(target) });
        let config = try_status!(config(slot_size, capacity, mode, flags));
        // SAFETY: queue_out is non-null (checked) and writable (caller).
        unsafe { handle_out(Queue::open_or_create(&target, &config), queue_out) }
    })
}

/// Detaches from the queue and frees the handle. The queue itself lives on
/// until unlinked. NULL is accepted and ignored. No other call may be using
/// the handle, and it must not be used afterwards.
///
/// # Safety
/// `queue` is NULL or a live handle that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_free(queue: *mut shmq_queue) {
    let _ = boundary(|| {
        if !queue.is_null() {
            // SAFETY: a live handle made by Box::into_raw in handle_out, freed
            // once (caller).
            drop(unsafe { Box::from_raw(queue) });
        }
        SHMQ_OK
    });
}

/// Sets how this handle's blocking calls wait: spin for `spin_ns`
/// nanoseconds, then sleep on a futex until woken (the default spins 50000
/// ns); a negative `spin_ns` never sleeps (busy-spin: lowest latency, burns a
/// core). Call it before sharing the handle: no other call may be using it.
///
/// # Safety
/// `queue` is NULL or a live handle that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_set_wait(queue: *mut shmq_queue, spin_ns: i64) -> shmq_status {
    boundary(|| {
        non_null!(queue);
        let strategy = wait_strategy(spin_ns);
        // SAFETY: non-null (checked); a live handle used by no one else (caller).
        let handle = unsafe { &mut *queue };
        // SAFETY: the queue is moved out and a queue is written back before
        // anyone can look; if `with_wait_strategy` panicked the moved-out
        // queue would be dropped while the handle still holds its bytes, so a
        // panic there aborts instead of unwinding.
        unsafe {
            let old = std::ptr::read(&handle.queue);
            let abort_on_unwind = AbortOnUnwind;
            let new = old.with_wait_strategy(strategy);
            std::mem::forget(abort_on_unwind);
            std::ptr::write(&mut handle.queue, new);
        }
        SHMQ_OK
    })
}

/// The wait strategy for a C `spin_ns`: spin that long, then sleep; a
/// negative value never sleeps.
pub(super) fn wait_strategy(spin_ns: i64) -> WaitStrategy {
    match u64::try_from(spin_ns) {
        Ok(ns) => WaitStrategy::SpinThenSleep {
            spin: Duration::from_nanos(ns),
        },
        Err(_) => WaitStrategy::BusySpin,
    }
}

/// Aborts the process if dropped during unwinding (see shmq_queue_set_wait).
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        std::process::abort();
    }
}

/// Removes the queue's name (as shmq_target_unlink(), with its statuses);
/// this and other handles keep working until freed. Idempotent: `SHMQ_OK`
/// if the name was removed already.
///
/// # Safety
/// `queue` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_unlink(queue: *const shmq_queue) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        match q.unlink() {
            Ok(()) => SHMQ_OK,
            Err(e) => setup_error(e),
        }
    })
}

/// Writes a file-backed queue to disk (msync); does nothing for SysV and
/// POSIX queues. `SHMQ_IO` if the write fails.
///
/// # Safety
/// `queue` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_flush(queue: *const shmq_queue) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        match q.flush() {
            Ok(()) => SHMQ_OK,
            Err(e) => setup_error(e),
        }
    })
}

/// Enqueues the `len` bytes at `msg` if a slot is free; never waits.
/// `SHMQ_FULL`, `SHMQ_CLOSED` or `SHMQ_TOO_LARGE` otherwise (nothing
/// written); `SHMQ_ROLE_TAKEN` on a `SHMQ_QUEUE_SPSC` queue whose producer
/// role another handle holds (this handle takes the role at its first
/// enqueue, until freed: see shmq_queue_producer()); `SHMQ_INVALID_ARGUMENT`
/// when `len` exceeds `PTRDIFF_MAX`; `SHMQ_BUSY`, `SHMQ_CORRUPT`. `msg` may
/// be NULL when `len` is 0.
///
/// # Safety
/// `queue` is NULL or a live handle; `msg` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_enqueue_try(
    queue: *const shmq_queue,
    msg: *const u8,
    len: usize,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        // SAFETY: readable for len bytes (caller).
        let msg = try_status!(unsafe { msg_arg(msg, len) });
        match q.enqueue_try(msg) {
            Ok(()) => SHMQ_OK,
            Err(e) => enqueue_error(e),
        }
    })
}

/// Enqueues the `len` bytes at `msg`, waiting while the queue is full for up
/// to `timeout_ns` nanoseconds (`SHMQ_WAIT_FOREVER`, or any negative value:
/// no limit). `SHMQ_TIMEOUT` when it passes; other statuses as
/// shmq_queue_enqueue_try().
///
/// # Safety
/// `queue` is NULL or a live handle; `msg` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_enqueue_block(
    queue: *const shmq_queue,
    msg: *const u8,
    len: usize,
    timeout_ns: i64,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        // SAFETY: readable for len bytes (caller).
        let msg = try_status!(unsafe { msg_arg(msg, len) });
        match q.enqueue_block(msg, timeout(timeout_ns)) {
            Ok(()) => SHMQ_OK,
            Err(e) => enqueue_error(e),
        }
    })
}

/// Enqueues the `len` bytes at `msg`; when the queue is full, discards the
/// oldest messages to make room. Never waits. Writes how many messages were
/// discarded to `*discarded_out` unless it is NULL. Statuses as
/// shmq_queue_enqueue_try(), without `SHMQ_FULL`.
///
/// # Safety
/// `queue` is NULL or a live handle; `msg` is NULL or readable for `len`
/// bytes; `discarded_out` is NULL or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_enqueue_shift(
    queue: *const shmq_queue,
    msg: *const u8,
    len: usize,
    discarded_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        // SAFETY: readable for len bytes (caller).
        let msg = try_status!(unsafe { msg_arg(msg, len) });
        match q.enqueue_shift(msg) {
            Ok(discarded) => {
                if !discarded_out.is_null() {
                    // SAFETY: non-null (checked), writable (caller).
                    unsafe { discarded_out.write(discarded) };
                }
                SHMQ_OK
            }
            Err(e) => enqueue_error(e),
        }
    })
}

/// Dequeues the next message into the `buf_len` bytes at `buf` and writes
/// its length to `*len_out`; never waits. `buf` may be NULL when `buf_len`
/// is 0.
///
/// Outputs, by status:
/// - `SHMQ_OK`: the message is in `buf`, its length in `*len_out`.
/// - `SHMQ_BUFFER_TOO_SMALL`: the message is longer than `buf_len`; it
///   stays queued, and the length it needs is written to `*len_out` (the
///   one exception to "outputs only on `SHMQ_OK`"; a buffer of the queue's
///   slot size always suffices).
/// - anything else writes nothing: `SHMQ_EMPTY`; `SHMQ_CLOSED` once the
///   queue is closed and drained; `SHMQ_ROLE_TAKEN` (a `SHMQ_QUEUE_SPSC`
///   queue whose consumer role another handle holds; this handle takes the
///   role at its first dequeue, until freed: see shmq_queue_consumer());
///   `SHMQ_CORRUPT` (an impossible length in shared memory); `SHMQ_BUSY`;
///   `SHMQ_NULL_PARAMETER`; `SHMQ_INVALID_ARGUMENT` (`buf_len` exceeds
///   `PTRDIFF_MAX`).
///
/// # Safety
/// `queue` is NULL or a live handle; `buf` is NULL or writable for `buf_len`
/// bytes; `len_out` is NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_dequeue_try(
    queue: *const shmq_queue,
    buf: *mut u8,
    buf_len: usize,
    len_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(len_out);
        // SAFETY: writable for buf_len bytes (caller).
        let buf = try_status!(unsafe { buf_arg(buf, buf_len) });
        // SAFETY: len_out is non-null (checked) and writable (caller).
        unsafe { dequeue_out(q.dequeue_try(buf), len_out) }
    })
}

/// Dequeues the next message as shmq_queue_dequeue_try() does (same outputs
/// by status, `SHMQ_BUFFER_TOO_SMALL`'s needed length included), waiting
/// while the queue is empty for up to `timeout_ns` nanoseconds
/// (`SHMQ_WAIT_FOREVER`, or any negative value: no limit); `SHMQ_TIMEOUT`
/// when it passes.
///
/// # Safety
/// As for shmq_queue_dequeue_try().
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_dequeue_block(
    queue: *const shmq_queue,
    buf: *mut u8,
    buf_len: usize,
    timeout_ns: i64,
    len_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(len_out);
        // SAFETY: writable for buf_len bytes (caller).
        let buf = try_status!(unsafe { buf_arg(buf, buf_len) });
        let result = q.dequeue_block(buf, timeout(timeout_ns));
        // SAFETY: len_out is non-null (checked) and writable (caller).
        unsafe { dequeue_out(result, len_out) }
    })
}

/// Closes the queue for every process: enqueues fail with `SHMQ_CLOSED`;
/// dequeues drain what is left, then fail with `SHMQ_CLOSED`. Wakes every
/// blocked caller. Idempotent. (To release a handle, see shmq_queue_free().)
///
/// # Safety
/// `queue` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_close(queue: *const shmq_queue) -> shmq_status {
    boundary(|| {
        queue_ref!(queue).close();
        SHMQ_OK
    })
}

/// Writes whether the queue was closed (by any process) to `*closed_out`.
///
/// # Safety
/// `queue` is NULL or a live handle; `closed_out` is NULL or valid for
/// writing a `bool`.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_is_closed(
    queue: *const shmq_queue,
    closed_out: *mut bool,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(closed_out);
        // SAFETY: non-null (checked), writable (caller).
        unsafe { closed_out.write(q.is_closed()) };
        SHMQ_OK
    })
}

/// Writes whether the queue is single-producer/single-consumer
/// (`SHMQ_QUEUE_SPSC`) to `*spsc_out`.
///
/// # Safety
/// `queue` is NULL or a live handle; `spsc_out` is NULL or valid for writing
/// a `bool`.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_is_spsc(
    queue: *const shmq_queue,
    spsc_out: *mut bool,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(spsc_out);
        // SAFETY: non-null (checked), writable (caller).
        unsafe { spsc_out.write(q.is_spsc()) };
        SHMQ_OK
    })
}

/// Writes the number of messages waiting to `*len_out` (approximate while
/// operations are in flight).
///
/// # Safety
/// `queue` is NULL or a live handle; `len_out` is NULL or valid for writing a
/// `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_len(
    queue: *const shmq_queue,
    len_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(len_out);
        // SAFETY: non-null (checked), writable (caller).
        unsafe { len_out.write(q.len() as u64) };
        SHMQ_OK
    })
}

/// Writes the number of slots to `*capacity_out`.
///
/// # Safety
/// `queue` is NULL or a live handle; `capacity_out` is NULL or valid for
/// writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_capacity(
    queue: *const shmq_queue,
    capacity_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(capacity_out);
        // SAFETY: non-null (checked), writable (caller).
        unsafe { capacity_out.write(q.capacity() as u64) };
        SHMQ_OK
    })
}

/// Writes the largest message the queue takes, in bytes, to
/// `*slot_size_out`: a receive buffer of this size always suffices.
///
/// # Safety
/// `queue` is NULL or a live handle; `slot_size_out` is NULL or valid for
/// writing a `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_slot_size(
    queue: *const shmq_queue,
    slot_size_out: *mut u32,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(slot_size_out);
        // SAFETY: non-null (checked), writable (caller); slot sizes are u32
        // in the segment header.
        unsafe { slot_size_out.write(q.slot_size() as u32) };
        SHMQ_OK
    })
}

/// Writes the queue's counters to `*stats_out`.
///
/// # Safety
/// `queue` is NULL or a live handle; `stats_out` is NULL or valid for writing
/// a `shmq_stats`.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_stats(
    queue: *const shmq_queue,
    stats_out: *mut shmq_stats,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(stats_out);
        let s = q.stats();
        let stats = shmq_stats {
            enqueued: s.enqueued,
            dequeued: s.dequeued,
            discarded: s.discarded,
            tombstones: s.tombstones,
            len: s.len,
            capacity: s.capacity,
        };
        // SAFETY: non-null (checked), writable (caller).
        unsafe { stats_out.write(stats) };
        SHMQ_OK
    })
}

/// A slot reserved by shmq_queue_reserve() or shmq_producer_reserve(),
/// written in place through the pointer that call returned. Opaque. End it
/// with exactly one of shmq_reservation_commit() or
/// shmq_reservation_cancel(), which free it; before shmq_queue_free() of its
/// queue (or shmq_producer_free() of its producer).
pub struct shmq_reservation {
    // Field order matters: the guard drops before the loan ends.
    pub(crate) guard: engine::ReserveGuard<'static>,
    /// The role handle the guard borrows, if any.
    pub(crate) loan: Loan,
}

/// A message read in place, from shmq_queue_consume() or
/// shmq_consumer_consume(). Opaque. Free it with shmq_message_release(),
/// before shmq_queue_free() of its queue (or shmq_consumer_free() of its
/// consumer).
pub struct shmq_message {
    // Field order matters: the guard drops before the loan ends.
    /// Held only to be dropped (which releases the slot).
    pub(crate) _guard: engine::ConsumeGuard<'static>,
    /// The role handle the guard borrows, if any.
    pub(crate) _loan: Loan,
}

/// One message of a batch for shmq_queue_enqueue_batch().
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_iovec {
    /// The message's bytes (may be NULL when `len` is 0).
    pub base: *const u8,
    /// Its length.
    pub len: usize,
}

/// Reserves a slot for a message of up to `len` bytes, to be written in
/// place: writes the reservation to `*res_out` and the address of its `len`
/// writable bytes to `*buf_out`. `timeout_ns`: 0 never waits (`SHMQ_FULL`);
/// negative (`SHMQ_WAIT_FOREVER`) no limit; else up to that many
/// nanoseconds (`SHMQ_TIMEOUT`). `SHMQ_CLOSED`, `SHMQ_TOO_LARGE`,
/// `SHMQ_ROLE_TAKEN`, `SHMQ_BUSY`, `SHMQ_CORRUPT` otherwise, as
/// shmq_queue_enqueue_try().
///
/// Lifetime: the bytes at `*buf_out` are yours until the reservation is
/// committed or cancelled; do not touch them after. On a multi-producer
/// queue messages enqueued after the reservation wait behind it: keep it
/// short. On a single-producer queue the handle's producer role is held
/// until then (other producer calls on it get `SHMQ_ROLE_TAKEN`). A
/// reservation may be ended by another thread than the one that made it.
///
/// # Safety
/// `queue` is NULL or a live handle, which outlives the reservation;
/// `res_out` and `buf_out` are NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_reserve(
    queue: *const shmq_queue,
    len: usize,
    timeout_ns: i64,
    res_out: *mut *mut shmq_reservation,
    buf_out: *mut *mut u8,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(res_out);
        non_null!(buf_out);
        // SAFETY: the caller keeps the handle alive until the reservation
        // ends (documented above), so the borrow may be 'static here.
        let q: &'static Queue = unsafe { &*(q as *const Queue) };
        let r = if timeout_ns == 0 {
            q.reserve(len)
        } else {
            q.reserve_block(len, timeout(timeout_ns))
        };
        match r {
            Ok(mut guard) => {
                let buf = guard.as_mut_slice().as_mut_ptr();
                // SAFETY: both non-null (checked), writable (caller).
                unsafe {
                    buf_out.write(buf);
                    res_out.write(Box::into_raw(Box::new(shmq_reservation {
                        guard,
                        loan: Loan::NONE,
                    })));
                }
                SHMQ_OK
            }
            Err(e) => enqueue_error(e),
        }
    })
}

/// Publishes the first `n` bytes of the reservation as a message and frees
/// the reservation (whatever the status). `SHMQ_TOO_LARGE` if `n` is more
/// than was reserved (then nothing is published).
///
/// # Safety
/// `res` is NULL or a reservation from shmq_queue_reserve() or
/// shmq_producer_reserve() not yet ended.
#[no_mangle]
pub unsafe extern "C" fn shmq_reservation_commit(
    res: *mut shmq_reservation,
    n: usize,
) -> shmq_status {
    boundary(|| {
        non_null!(res);
        // SAFETY: a live reservation (caller), ended here exactly once.
        let res = unsafe { Box::from_raw(res) };
        // The loan ends when `_loan` drops, after the commit.
        let shmq_reservation { guard, loan: _loan } = *res;
        match guard.commit(n) {
            Ok(()) => SHMQ_OK,
            Err(e) => enqueue_error(e),
        }
    })
}

/// Gives the reservation back unpublished and frees it. NULL is ignored.
///
/// # Safety
/// `res` is NULL or a reservation from shmq_queue_reserve() or
/// shmq_producer_reserve() not yet ended.
#[no_mangle]
pub unsafe extern "C" fn shmq_reservation_cancel(res: *mut shmq_reservation) {
    boundary(|| {
        if !res.is_null() {
            // SAFETY: a live reservation (caller), ended here exactly once.
            drop(unsafe { Box::from_raw(res) });
        }
        SHMQ_OK
    });
}

/// Takes the next message to read in place: writes a handle to `*msg_out`,
/// the address of its bytes to `*data_out` and its length to `*len_out`.
/// `timeout_ns` as for shmq_queue_reserve(); `SHMQ_EMPTY`, `SHMQ_TIMEOUT`,
/// `SHMQ_CLOSED` (closed and drained); `SHMQ_ROLE_TAKEN`, `SHMQ_BUSY`,
/// `SHMQ_CORRUPT` as shmq_queue_dequeue_try(). Nothing is written unless
/// `SHMQ_OK`.
///
/// Lifetime: the bytes are readable until shmq_message_release(); the slot
/// stays yours (no producer reuses it) until then, so release promptly. The
/// bytes are shared memory: a process that breaks the protocol could change
/// them while you read; the length was checked against the slot size.
///
/// # Safety
/// `queue` is NULL or a live handle, which outlives the message; the
/// outputs are NULL or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_consume(
    queue: *const shmq_queue,
    timeout_ns: i64,
    msg_out: *mut *mut shmq_message,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(msg_out);
        non_null!(data_out);
        non_null!(len_out);
        // SAFETY: as in shmq_queue_reserve().
        let q: &'static Queue = unsafe { &*(q as *const Queue) };
        let r = if timeout_ns == 0 {
            q.consume()
        } else {
            q.consume_block(timeout(timeout_ns))
        };
        match r {
            Ok(guard) => {
                // SAFETY: non-null (checked), writable (caller).
                unsafe {
                    data_out.write(guard.as_ptr());
                    len_out.write(guard.len());
                    msg_out.write(Box::into_raw(Box::new(shmq_message {
                        _guard: guard,
                        _loan: Loan::NONE,
                    })));
                }
                SHMQ_OK
            }
            Err(e) => dequeue_error(e),
        }
    })
}

/// Frees the message's slot and the handle. NULL is ignored.
///
/// # Safety
/// `msg` is NULL or a message from shmq_queue_consume() or
/// shmq_consumer_consume() not yet released.
#[no_mangle]
pub unsafe extern "C" fn shmq_message_release(msg: *mut shmq_message) {
    boundary(|| {
        if !msg.is_null() {
            // SAFETY: a live message (caller), released here exactly once.
            drop(unsafe { Box::from_raw(msg) });
        }
        SHMQ_OK
    });
}

/// Enqueues as many of the `count` messages at `msgs` as fit, in order, with
/// one index publication, and writes how many to `*count_out` (a prefix,
/// at least 1 on `SHMQ_OK`). The batch stops before a message longer than
/// the slot size. `timeout_ns` as for shmq_queue_reserve() (a wait lasts
/// until at least one message fits; `SHMQ_TIMEOUT`). Errors as
/// shmq_queue_enqueue_try(), and `SHMQ_INVALID_ARGUMENT` when `count`
/// entries exceed `PTRDIFF_MAX` bytes.
///
/// # Safety
/// `queue` is NULL or a live handle; `msgs` is NULL or readable for `count`
/// entries, each readable for its `len` bytes; `count_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_enqueue_batch(
    queue: *const shmq_queue,
    msgs: *const shmq_iovec,
    count: usize,
    timeout_ns: i64,
    count_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
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
        let mut refs: Vec<&[u8]> = Vec::with_capacity(count.min(q.capacity()));
        for m in iov.iter().take(q.capacity()) {
            // SAFETY: each readable for its len bytes (caller).
            refs.push(try_status!(unsafe { msg_arg(m.base, m.len) }));
        }
        let r = if timeout_ns == 0 {
            q.enqueue_batch(&refs)
        } else {
            q.enqueue_batch_block(&refs, timeout(timeout_ns))
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

/// Dequeues up to `max` messages into the `buf_len` bytes at `buf`, back to
/// back, with one index publication: message `i` is `lens[i]` bytes long,
/// after those before it; writes how many to `*count_out` (at least 1 on
/// `SHMQ_OK`). Takes only messages that fit in `buf` together (the rest
/// stay queued); `SHMQ_BUFFER_TOO_SMALL` if the first alone does not fit:
/// then it stays queued and the length it needs is written to `lens[0]`
/// (when `max` is at least 1; nothing else is written). `timeout_ns` as for
/// shmq_queue_reserve(). Other errors as shmq_queue_dequeue_try(), plus
/// `SHMQ_TIMEOUT`, and `SHMQ_INVALID_ARGUMENT` when `max` entries would
/// exceed `PTRDIFF_MAX` bytes.
///
/// # Safety
/// `queue` is NULL or a live handle; `buf` NULL or writable for `buf_len`
/// bytes; `lens` NULL or writable for `max` entries; `count_out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmq_queue_dequeue_batch(
    queue: *const shmq_queue,
    buf: *mut u8,
    buf_len: usize,
    lens: *mut usize,
    max: usize,
    timeout_ns: i64,
    count_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let q = queue_ref!(queue);
        non_null!(count_out);
        non_null!(lens);
        // SAFETY: writable for buf_len bytes (caller).
        let buf = try_status!(unsafe { buf_arg(buf, buf_len) });
        // SAFETY: non-null (checked), writable for max entries (caller).
        let lens = try_status!(unsafe { lens_out_arg(lens, max) });
        let r = if timeout_ns == 0 {
            q.dequeue_batch_into(buf, lens)
        } else {
            let deadline = timeout(timeout_ns).map(|t| std::time::Instant::now() + t);
            q.dequeue_batch_into_until(buf, lens, deadline)
        };
        // SAFETY: count_out is non-null (checked) and writable (caller).
        unsafe { dequeue_batch_out(r, lens, count_out) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    fn target(tag: &str) -> std::ffi::CString {
        std::ffi::CString::new(format!("posix:shmq-capi-{tag}-{}", std::process::id())).unwrap()
    }

    #[test]
    fn round_trip_and_outputs_only_on_success() {
        let t = target("rt");
        let mut q: *mut shmq_queue = ptr::null_mut();
        // SAFETY: valid arguments throughout; the handle is freed at the end.
        unsafe {
            assert_eq!(shmq_queue_create(t.as_ptr(), 16, 4, 0, 0, &mut q), SHMQ_OK);
            assert_eq!(shmq_queue_set_wait(q, 0), SHMQ_OK);
            let mut buf = [0u8; 16];
            let mut n = 99usize;
            assert_eq!(
                shmq_queue_dequeue_try(q, buf.as_mut_ptr(), buf.len(), &mut n),
                SHMQ_EMPTY
            );
            assert_eq!(n, 99);
            assert_eq!(shmq_queue_enqueue_try(q, b"abc".as_ptr(), 3), SHMQ_OK);
            assert_eq!(
                shmq_queue_dequeue_block(q, buf.as_mut_ptr(), buf.len(), 1_000_000, &mut n),
                SHMQ_OK
            );
            assert_eq!(&buf[..n], b"abc");
            assert_eq!(
                shmq_queue_dequeue_block(q, buf.as_mut_ptr(), buf.len(), 1_000, &mut n),
                SHMQ_TIMEOUT
            );
            let mut other: *mut shmq_queue = ptr::null_mut();
            assert_eq!(
                shmq_queue_create(t.as_ptr(), 16, 4, 0, 0, &mut other),
                SHMQ_ALREADY_EXISTS
            );
            assert!(other.is_null());
            assert_eq!(shmq_queue_unlink(q), SHMQ_OK);
            shmq_queue_free(q);
        }
    }
}
