//! The fan-out log from C: `shmq_log_*` and `shmq_subscriber_*`.
//!
//! A thin layer over [`Log`] and [`Subscriber`]: argument checks, status
//! mapping and handles, nothing else.

use std::ffi::{c_char, CStr};

use super::queue::{buf_arg, msg_arg, timeout, wait_strategy};
use super::shmq_status::{self, *};
use super::{
    boundary, cstr, fail, fail_static, non_null, parse_target, setup_error, try_status, Everyday,
};
use engine::{CursorError, Log, LogConfig, LogMode, RecvError, SendError, Start, Subscriber};

/// A handle to a fan-out log. Opaque: create it with shmq_log_create(),
/// shmq_log_open() or shmq_log_open_or_create(), release it with
/// shmq_log_free(). One handle may be used by many threads at once (every
/// function taking a `const shmq_log *` is thread-safe).
pub struct shmq_log {
    pub(crate) log: Log,
}

/// A subscriber of a fan-out log: a reader with its own position. Opaque:
/// made by shmq_log_subscribe() or shmq_log_subscribe_named(), released with
/// shmq_subscriber_free(). Not shared: one thread at a time may use it (it
/// may move between threads).
pub struct shmq_subscriber {
    sub: Subscriber,
}

/// Flag for shmq_log_create(): reliable mode. Publishers are gated by the
/// slowest registered cursor (shmq_log_publish() gets `SHMQ_FULL`,
/// shmq_log_publish_block() waits) and nothing is ever lost. With no cursor
/// registered at all a publish writes nothing and gets
/// `SHMQ_NOT_CONNECTED`: to make the log lossless from its first message,
/// declare its readers' durable cursors with shmq_log_create_with_cursors().
/// Without this flag the log is in overwrite mode: publishers never wait,
/// and a subscriber that falls a full ring behind gets `SHMQ_LAGGED`.
pub const SHMQ_LOG_RELIABLE: u32 = 1;

/// Flag for shmq_log_create(): a single-publisher log. One handle publishes
/// at a time: the first to publish takes the publisher role (until it is
/// freed, or its process dies), any other publish gets `SHMQ_ROLE_TAKEN`.
/// In exchange a publish executes no locked instruction, and one wake
/// reaches every sleeping subscriber. Read it back with
/// shmq_log_flags(). Combines with `SHMQ_LOG_RELIABLE`.
pub const SHMQ_LOG_SINGLE_PUBLISHER: u32 = 2;

/// Start for shmq_log_subscribe(): the oldest message still in the ring (in
/// reliable mode, the oldest still protected by a cursor).
pub const SHMQ_START_OLDEST: u32 = 0;

/// Start for shmq_log_subscribe(): the next message published (nothing
/// already in the ring).
pub const SHMQ_START_LATEST: u32 = 1;

/// Counters of a log (approximate while operations are in flight).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmq_log_counters {
    /// Messages published (sequence numbers claimed, minus tombstones).
    pub published: u64,
    /// The sequence number the next published message will get.
    pub next_seq: u64,
    /// The oldest sequence number a new subscriber can still read.
    pub oldest: u64,
    /// Sequence numbers that carry no message (claims abandoned by close,
    /// or skipped past a publisher stalled mid-write).
    pub tombstones: u64,
    /// Messages lost by subscribers, summed over every `SHMQ_LAGGED`.
    pub lagged: u64,
    /// Number of slots.
    pub capacity: u64,
    /// Cursors registered now (named ones, plus reliable-mode subscribers).
    pub cursors: u64,
    /// Entries in the cursor table.
    pub cursor_capacity: u64,
    /// Whether the log is in reliable mode (`SHMQ_LOG_RELIABLE`).
    pub reliable: bool,
}

/// A named cursor, as shmq_log_cursor() reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmq_cursor_info {
    /// The committed position: the next sequence number a subscriber on
    /// this cursor reads after a restart or a rollback.
    pub position: u64,
    /// The position its attached subscriber has read up to (equal to
    /// `position` when none is attached or all is committed).
    pub read: u64,
    /// Messages published after `position`.
    pub lag: u64,
    /// The process whose subscriber holds the cursor; 0 when none does.
    pub owner_pid: u32,
}

/// The log behind a handle, or a NULL_PARAMETER status.
macro_rules! log_ref {
    ($l:ident) => {{
        non_null!($l);
        // SAFETY: non-null (checked); the caller guarantees a live handle
        // from shmq_log_create/open/open_or_create, not yet freed.
        unsafe { &(*$l).log }
    }};
}

/// The subscriber behind a handle, or a NULL_PARAMETER status.
macro_rules! sub_mut {
    ($s:ident) => {{
        non_null!($s);
        // SAFETY: non-null (checked); the caller guarantees a live handle
        // from shmq_log_subscribe(_named), not yet freed, used by no other
        // thread meanwhile.
        unsafe { &mut (*$s).sub }
    }};
}

/// The subscriber behind a const handle, or a NULL_PARAMETER status.
macro_rules! sub_ref {
    ($s:ident) => {{
        non_null!($s);
        // SAFETY: as in sub_mut, shared access only.
        unsafe { &(*$s).sub }
    }};
}

/// Writes `value` to `out` unless `out` is NULL.
///
/// # Safety
/// `out` is NULL or valid for writing a `T`.
pub(crate) unsafe fn write_opt<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-null (checked), writable (caller).
        unsafe { out.write(value) };
    }
}

/// The status of a publish: `SHMQ_OK`, with the sequence number written
/// to `seq_out`, or the failure's status and message.
///
/// # Safety
/// `seq_out` is NULL or valid for writing a `u64`.
pub(crate) unsafe fn published(result: Result<u64, SendError>, seq_out: *mut u64) -> shmq_status {
    match result {
        Ok(seq) => {
            // SAFETY: NULL or writable (caller).
            unsafe { write_opt(seq_out, seq) };
            SHMQ_OK
        }
        Err(e) => publish_error(e),
    }
}

/// The status of a batch publish: `SHMQ_OK`, with how many were published
/// written to `published_out`, or the failure's status and message.
///
/// # Safety
/// `published_out` is valid for writing a `usize`.
pub(crate) unsafe fn published_batch(
    result: Result<usize, SendError>,
    published_out: *mut usize,
) -> shmq_status {
    match result {
        Ok(n) => {
            // SAFETY: writable (caller).
            unsafe { published_out.write(n) };
            SHMQ_OK
        }
        Err(e) => publish_error(e),
    }
}

/// The status and message for a failed publish.
pub(crate) fn publish_error(e: SendError) -> shmq_status {
    crate::send_error(
        e,
        &Everyday {
            idle: cstr!("log is full: the slowest cursor is a ring behind (reliable mode)"),
            closed: cstr!("log is closed"),
            timeout: cstr!("timed out waiting for the slowest cursor to make room"),
        },
    )
}

/// The status and message for a failed receive.
fn recv_error(e: RecvError) -> shmq_status {
    crate::recv_error(
        e,
        &Everyday {
            idle: cstr!("no new message"),
            closed: cstr!("log is closed and fully read"),
            timeout: cstr!("timed out waiting for a message"),
        },
    )
}

/// The status and message for a failed cursor operation.
fn cursor_error(e: CursorError) -> shmq_status {
    let status = match &e {
        CursorError::NotFound { .. } => SHMQ_CURSOR_NOT_FOUND,
        CursorError::AlreadyExists { .. } => SHMQ_CURSOR_EXISTS,
        CursorError::TableFull { .. } => SHMQ_CURSOR_TABLE_FULL,
        CursorError::InUse { .. } => SHMQ_CURSOR_IN_USE,
        CursorError::InvalidName { .. } => SHMQ_INVALID_ARGUMENT,
        CursorError::NotNamed => SHMQ_NOT_NAMED,
        CursorError::Busy { .. } => SHMQ_BUSY,
        CursorError::Corrupt { .. } => SHMQ_CORRUPT,
        _ => SHMQ_IO,
    };
    fail(status, e)
}

/// Reads a cursor name.
///
/// # Safety
/// `name` is non-null and points to a NUL-terminated string.
unsafe fn name_arg<'a>(name: *const c_char) -> Result<&'a str, shmq_status> {
    // SAFETY: non-null and NUL-terminated (caller).
    let text = unsafe { CStr::from_ptr(name) };
    text.to_str().map_err(|_| {
        fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!("cursor name is not valid UTF-8"),
        )
    })
}

fn start_arg(start: u32) -> Result<Start, shmq_status> {
    match start {
        SHMQ_START_OLDEST => Ok(Start::Oldest),
        SHMQ_START_LATEST => Ok(Start::Latest),
        _ => Err(fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!("`start` is neither SHMQ_START_OLDEST nor SHMQ_START_LATEST"),
        )),
    }
}

fn config(
    slot_size: u32,
    capacity: u64,
    mode: u32,
    flags: u32,
    cursors: u32,
) -> Result<LogConfig, shmq_status> {
    if flags & !(SHMQ_LOG_RELIABLE | SHMQ_LOG_SINGLE_PUBLISHER) != 0 {
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
    let log_mode = if flags & SHMQ_LOG_RELIABLE != 0 {
        LogMode::Reliable
    } else {
        LogMode::Overwrite
    };
    let mode = if mode == 0 { 0o600 } else { mode };
    let cursors = if cursors == 0 { 16 } else { cursors as usize };
    Ok(LogConfig::new(slot_size as usize, capacity)
        .mode(log_mode)
        .cursors(cursors)
        .single_publisher(flags & SHMQ_LOG_SINGLE_PUBLISHER != 0)
        .permissions(mode))
}

/// Writes the handle for a setup result.
///
/// # Safety
/// `out` is non-null and valid for writing a pointer.
unsafe fn write_log(result: Result<Log, engine::Error>, out: *mut *mut shmq_log) -> shmq_status {
    match result {
        Ok(log) => {
            let handle = Box::into_raw(Box::new(shmq_log { log }));
            // SAFETY: non-null and writable (caller).
            unsafe { out.write(handle) };
            SHMQ_OK
        }
        Err(e) => setup_error(e),
    }
}

/// Writes the subscriber handle for a subscribe result.
///
/// # Safety
/// `out` is non-null and valid for writing a pointer.
unsafe fn write_sub(
    result: Result<Subscriber, CursorError>,
    out: *mut *mut shmq_subscriber,
) -> shmq_status {
    match result {
        Ok(sub) => {
            let handle = Box::into_raw(Box::new(shmq_subscriber { sub }));
            // SAFETY: non-null and writable (caller).
            unsafe { out.write(handle) };
            SHMQ_OK
        }
        Err(e) => cursor_error(e),
    }
}

/// Creates a new fan-out log at `target` (syntax as in shmq_queue_create())
/// with `capacity` slots (at least 2) of up to `slot_size` bytes, permission
/// bits `mode` (0 means 0600), `flags` (0 for a multi-publisher log in
/// overwrite mode, or-ed with `SHMQ_LOG_RELIABLE` for reliable mode and
/// `SHMQ_LOG_SINGLE_PUBLISHER` for a single-publisher log) and a table of `cursors` entries for named cursors
/// and reliable-mode subscribers (0 means 16; at most 4096), and writes its
/// handle to `*log_out`.
///
/// Fails with `SHMQ_ALREADY_EXISTS` if anything is at the target (it is left
/// untouched), `SHMQ_INVALID_ARGUMENT` for a malformed target, unknown
/// `flags` bits or parameters out of range (`cursors` above 4096 included),
/// `SHMQ_PERMISSION_DENIED` or `SHMQ_IO` when the operating system refuses
/// or fails.
///
/// # Safety
/// `target` is NULL or a NUL-terminated string; `log_out` is NULL or valid
/// for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_create(
    target: *const c_char,
    slot_size: u32,
    capacity: u64,
    mode: u32,
    flags: u32,
    cursors: u32,
    log_out: *mut *mut shmq_log,
) -> shmq_status {
    // SAFETY: the caller's guarantees, passed on.
    unsafe {
        make_log(
            target,
            slot_size,
            capacity,
            mode,
            flags,
            cursors,
            std::ptr::null(),
            0,
            log_out,
            Log::create,
        )
    }
}

/// Opens the existing log at `target` and writes its handle to `*log_out`.
/// Never creates: `SHMQ_NOT_FOUND` if nothing is there; `SHMQ_INCOMPATIBLE`
/// (e.g. a work queue), `SHMQ_CORRUPT`, `SHMQ_VERSION_MISMATCH` or
/// `SHMQ_NOT_READY` if what is there is not a usable log;
/// `SHMQ_INVALID_ARGUMENT` for a malformed target;
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
/// `target` is NULL or a NUL-terminated string; `log_out` is NULL or valid
/// for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_open(
    target: *const c_char,
    log_out: *mut *mut shmq_log,
) -> shmq_status {
    boundary(|| {
        non_null!(target);
        non_null!(log_out);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let target = try_status!(unsafe { parse_target(target) });
        // SAFETY: log_out is non-null (checked) and writable (caller).
        unsafe { write_log(Log::open(&target), log_out) }
    })
}

/// Creates the log as shmq_log_create() does, or opens it if it exists with
/// the same slot size, capacity, `flags` (`SHMQ_LOG_RELIABLE`,
/// `SHMQ_LOG_SINGLE_PUBLISHER`) and number of `cursors` (0 counts as 16)
/// (else `SHMQ_INCOMPATIBLE`, with shmq_last_error() naming what differs).
/// The permission bits `mode` are used only when it creates: they are not
/// compared with an existing log's (the operating system decides whether
/// this user may open it: `SHMQ_PERMISSION_DENIED`). Opening waits as in
/// shmq_log_open(); other statuses as those two functions.
///
/// # Safety
/// As for shmq_log_create().
#[no_mangle]
pub unsafe extern "C" fn shmq_log_open_or_create(
    target: *const c_char,
    slot_size: u32,
    capacity: u64,
    mode: u32,
    flags: u32,
    cursors: u32,
    log_out: *mut *mut shmq_log,
) -> shmq_status {
    // SAFETY: the caller's guarantees, passed on.
    unsafe {
        make_log(
            target,
            slot_size,
            capacity,
            mode,
            flags,
            cursors,
            std::ptr::null(),
            0,
            log_out,
            Log::open_or_create,
        )
    }
}

/// The body of the four log constructors: checks and parses the
/// arguments, reads the durable cursor names, and runs `how` (create or
/// open-or-create).
///
/// # Safety
/// `target` is NULL or NUL-terminated; `names` as for [`with_names`];
/// `log_out` is NULL or valid for writing a pointer.
#[allow(clippy::too_many_arguments)]
unsafe fn make_log(
    target: *const c_char,
    slot_size: u32,
    capacity: u64,
    mode: u32,
    flags: u32,
    cursors: u32,
    names: *const *const c_char,
    n_names: usize,
    log_out: *mut *mut shmq_log,
    how: fn(&engine::Target, &LogConfig) -> Result<Log, engine::Error>,
) -> shmq_status {
    boundary(|| {
        non_null!(target);
        non_null!(log_out);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let target = try_status!(unsafe { parse_target(target) });
        let config = try_status!(config(slot_size, capacity, mode, flags, cursors));
        // SAFETY: as the caller guarantees.
        let config = try_status!(unsafe { with_names(config, names, n_names) });
        // SAFETY: log_out is non-null (checked) and writable (caller).
        unsafe { write_log(how(&target, &config), log_out) }
    })
}

/// Reads the `n_names` durable cursor names at `names` into `config`.
///
/// # Safety
/// `names` is NULL or readable for `n_names` pointers, each NULL or a
/// NUL-terminated string.
unsafe fn with_names(
    mut config: LogConfig,
    names: *const *const c_char,
    n_names: usize,
) -> Result<LogConfig, shmq_status> {
    if n_names == 0 {
        return Ok(config);
    }
    if names.is_null() {
        return Err(fail_static(
            SHMQ_NULL_PARAMETER,
            cstr!("`names` is NULL but `n_names` is not 0"),
        ));
    }
    if n_names > engine::log::MAX_CURSORS {
        return Err(fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!("more durable cursors than a log may have (4096)"),
        ));
    }
    // SAFETY: non-null, readable for n_names pointers (caller).
    for &name in unsafe { std::slice::from_raw_parts(names, n_names) } {
        if name.is_null() {
            return Err(fail_static(
                SHMQ_NULL_PARAMETER,
                cstr!("a durable cursor name is NULL"),
            ));
        }
        // SAFETY: non-null (checked), NUL-terminated (caller).
        config = config.durable_cursor(unsafe { name_arg(name) }?);
    }
    Ok(config)
}

/// Creates a new log as shmq_log_create() does, with the `n_names` durable
/// named cursors `names` (each 1 to 64 bytes of UTF-8) created with it at
/// sequence number 0, the first message. They are written before any other
/// process can see the log, so no publish can precede them: in reliable
/// mode (`SHMQ_LOG_RELIABLE`) the log is gated by them from its first
/// message, and a subscriber that resumes one later
/// (shmq_log_subscribe_named()) reads everything from message 0 on.
///
/// `SHMQ_INVALID_ARGUMENT`, creating nothing, for an empty, too long or
/// non-UTF-8 name, a name given twice, or more names than `cursors` (0
/// counts as 16) holds; `SHMQ_NULL_PARAMETER` when `names` is NULL with
/// `n_names` above 0, or a name is NULL. Other statuses as
/// shmq_log_create(). `names` may be NULL when `n_names` is 0 (then it is
/// shmq_log_create()).
///
/// ```c
/// const char *readers[] = {"audit", "billing"};
/// shmq_log *log;
/// shmq_status st = shmq_log_create_with_cursors("audit-feed", 64, 1024, 0,
///     SHMQ_LOG_RELIABLE, 0, readers, 2, &log);
/// ```
///
/// # Safety
/// As for shmq_log_create(); `names` is NULL or readable for `n_names`
/// pointers, each NULL or a NUL-terminated string.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn shmq_log_create_with_cursors(
    target: *const c_char,
    slot_size: u32,
    capacity: u64,
    mode: u32,
    flags: u32,
    cursors: u32,
    names: *const *const c_char,
    n_names: usize,
    log_out: *mut *mut shmq_log,
) -> shmq_status {
    // SAFETY: the caller's guarantees, passed on.
    unsafe {
        make_log(
            target,
            slot_size,
            capacity,
            mode,
            flags,
            cursors,
            names,
            n_names,
            log_out,
            Log::create,
        )
    }
}

/// Creates the log as shmq_log_create_with_cursors() does, or opens it as
/// shmq_log_open_or_create() does. Durable cursors are created only with
/// the log: an existing log is accepted only if each of `names` exists in
/// it as a named cursor (at whatever position), else `SHMQ_INCOMPATIBLE`
/// (shmq_last_error() names the missing one); nothing is created in a log
/// that exists.
///
/// # Safety
/// As for shmq_log_create_with_cursors().
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn shmq_log_open_or_create_with_cursors(
    target: *const c_char,
    slot_size: u32,
    capacity: u64,
    mode: u32,
    flags: u32,
    cursors: u32,
    names: *const *const c_char,
    n_names: usize,
    log_out: *mut *mut shmq_log,
) -> shmq_status {
    // SAFETY: the caller's guarantees, passed on.
    unsafe {
        make_log(
            target,
            slot_size,
            capacity,
            mode,
            flags,
            cursors,
            names,
            n_names,
            log_out,
            Log::open_or_create,
        )
    }
}

/// Frees the handle. Its subscribers stay valid (each keeps the log mapped
/// until it is freed); the log itself lives on until unlinked. NULL is
/// accepted and ignored. No other call may be using the handle, and it must
/// not be used afterwards.
///
/// # Safety
/// `log` is NULL or a live handle that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_free(log: *mut shmq_log) {
    let _ = boundary(|| {
        if !log.is_null() {
            // SAFETY: a live handle made by Box::into_raw in write_log, freed
            // once (caller).
            drop(unsafe { Box::from_raw(log) });
        }
        SHMQ_OK
    });
}

/// Sets how this handle's blocking publishes, and the subscribers it makes
/// from now on, wait: as shmq_queue_set_wait(). Call it before sharing the
/// handle: no other call may be using it.
///
/// # Safety
/// `log` is NULL or a live handle that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_set_wait(log: *mut shmq_log, spin_ns: i64) -> shmq_status {
    boundary(|| {
        non_null!(log);
        // SAFETY: non-null (checked); a live handle used by no one else (caller).
        let handle = unsafe { &mut *log };
        handle.log = handle
            .log
            .clone()
            .with_wait_strategy(wait_strategy(spin_ns));
        SHMQ_OK
    })
}

/// Removes the log's name (as shmq_target_unlink()); this and other handles
/// and subscribers keep working until freed. Idempotent: `SHMQ_OK` if the
/// name was removed already.
///
/// # Safety
/// `log` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_unlink(log: *const shmq_log) -> shmq_status {
    boundary(|| match log_ref!(log).unlink() {
        Ok(()) => SHMQ_OK,
        Err(e) => setup_error(e),
    })
}

/// Writes a file-backed log (messages and cursors) to disk (msync); does
/// nothing for SysV and POSIX logs.
///
/// # Safety
/// `log` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_flush(log: *const shmq_log) -> shmq_status {
    boundary(|| match log_ref!(log).flush() {
        Ok(()) => SHMQ_OK,
        Err(e) => setup_error(e),
    })
}

/// Closes the log for every process: publishes fail with `SHMQ_CLOSED`;
/// subscribers read what is left, then get `SHMQ_CLOSED`. Wakes every
/// blocked caller. Idempotent. (To release a handle, see shmq_log_free().)
///
/// # Safety
/// `log` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_close(log: *const shmq_log) -> shmq_status {
    boundary(|| {
        log_ref!(log).close();
        SHMQ_OK
    })
}

/// Writes whether the log was closed (by any process) to `*closed_out`.
///
/// # Safety
/// `log` is NULL or a live handle; `closed_out` is NULL or valid for
/// writing a `bool`.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_is_closed(
    log: *const shmq_log,
    closed_out: *mut bool,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(closed_out);
        // SAFETY: non-null (checked), writable (caller).
        unsafe { closed_out.write(l.is_closed()) };
        SHMQ_OK
    })
}

/// Writes the largest message the log takes, in bytes, to `*slot_size_out`:
/// a receive buffer of this size always suffices.
///
/// # Safety
/// `log` is NULL or a live handle; `slot_size_out` is NULL or valid for
/// writing a `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_slot_size(
    log: *const shmq_log,
    slot_size_out: *mut u32,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(slot_size_out);
        // SAFETY: non-null (checked), writable (caller); slot sizes are u32
        // in the segment header.
        unsafe { slot_size_out.write(l.slot_size() as u32) };
        SHMQ_OK
    })
}

/// Writes the number of slots to `*capacity_out`.
///
/// # Safety
/// `log` is NULL or a live handle; `capacity_out` is NULL or valid for
/// writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_capacity(
    log: *const shmq_log,
    capacity_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(capacity_out);
        // SAFETY: non-null (checked), writable (caller).
        unsafe { capacity_out.write(l.capacity() as u64) };
        SHMQ_OK
    })
}

/// Writes the sequence number the next published message will get to
/// `*seq_out`.
///
/// # Safety
/// `log` is NULL or a live handle; `seq_out` is NULL or valid for writing a
/// `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_next_seq(log: *const shmq_log, seq_out: *mut u64) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(seq_out);
        // SAFETY: non-null (checked), writable (caller).
        unsafe { seq_out.write(l.next_seq()) };
        SHMQ_OK
    })
}

/// Publishes the `len` bytes at `msg` and writes its sequence number to
/// `*seq_out` unless `seq_out` is NULL. In overwrite mode it never waits; in
/// reliable mode it fails with `SHMQ_FULL` when the slowest cursor is a full
/// ring behind, and with `SHMQ_NOT_CONNECTED` when no cursor is registered
/// at all (nothing written either). `SHMQ_TOO_LARGE` (nothing written),
/// `SHMQ_CLOSED`;
/// `SHMQ_ROLE_TAKEN` on a `SHMQ_LOG_SINGLE_PUBLISHER` log whose publisher
/// role another handle holds; `SHMQ_INVALID_ARGUMENT` when `len` exceeds
/// `PTRDIFF_MAX`; `SHMQ_BUSY`, `SHMQ_CORRUPT`. `msg` may be NULL when `len`
/// is 0.
///
/// # Safety
/// `log` is NULL or a live handle; `msg` is NULL or readable for `len`
/// bytes; `seq_out` is NULL or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_publish(
    log: *const shmq_log,
    msg: *const u8,
    len: usize,
    seq_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        // SAFETY: readable for len bytes (caller).
        let msg = try_status!(unsafe { msg_arg(msg, len) });
        // SAFETY: seq_out is NULL or writable (caller).
        unsafe { published(l.publish(msg), seq_out) }
    })
}

/// Publishes as shmq_log_publish() does, waiting while a reliable-mode log
/// is full, or has no cursor registered, for up to `timeout_ns` nanoseconds
/// (`SHMQ_WAIT_FOREVER`, or any negative value: no limit); when it passes,
/// `SHMQ_TIMEOUT` (full) or `SHMQ_NOT_CONNECTED` (nobody registered). In
/// overwrite mode it never waits. Other statuses as shmq_log_publish().
///
/// # Safety
/// As for shmq_log_publish().
#[no_mangle]
pub unsafe extern "C" fn shmq_log_publish_block(
    log: *const shmq_log,
    msg: *const u8,
    len: usize,
    timeout_ns: i64,
    seq_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        // SAFETY: readable for len bytes (caller).
        let msg = try_status!(unsafe { msg_arg(msg, len) });
        // SAFETY: seq_out is NULL or writable (caller).
        unsafe { published(l.publish_block(msg, timeout(timeout_ns)), seq_out) }
    })
}

/// Makes a subscriber starting at `start` (`SHMQ_START_OLDEST` or
/// `SHMQ_START_LATEST`) and writes its handle to `*sub_out`. In overwrite
/// mode it is private to the caller; in reliable mode it takes an entry of
/// the cursor table and gates publishers until freed
/// (`SHMQ_CURSOR_TABLE_FULL` when no entry is free; `SHMQ_BUSY`).
/// `SHMQ_INVALID_ARGUMENT` for another `start`.
///
/// # Safety
/// `log` is NULL or a live handle; `sub_out` is NULL or valid for writing a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_subscribe(
    log: *const shmq_log,
    start: u32,
    sub_out: *mut *mut shmq_subscriber,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(sub_out);
        let start = try_status!(start_arg(start));
        // SAFETY: sub_out is non-null (checked) and writable (caller).
        unsafe { write_sub(l.subscribe(start), sub_out) }
    })
}

/// Makes a subscriber on the durable named cursor `name` (1 to 64 bytes of
/// UTF-8) and writes its handle to `*sub_out`: it resumes from the cursor's
/// committed position; a missing cursor is first created at `start`. One
/// subscriber at a time may hold a named cursor: `SHMQ_CURSOR_IN_USE` while
/// a live one does (in any process). `SHMQ_CURSOR_TABLE_FULL`,
/// `SHMQ_INVALID_ARGUMENT` for a bad name, `SHMQ_BUSY`.
///
/// # Safety
/// `log` is NULL or a live handle; `name` is NULL or a NUL-terminated
/// string; `sub_out` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_subscribe_named(
    log: *const shmq_log,
    name: *const c_char,
    start: u32,
    sub_out: *mut *mut shmq_subscriber,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(name);
        non_null!(sub_out);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let name = try_status!(unsafe { name_arg(name) });
        let start = try_status!(start_arg(start));
        // SAFETY: sub_out is non-null (checked) and writable (caller).
        unsafe { write_sub(l.subscribe_named(name, start), sub_out) }
    })
}

/// Creates the named cursor `name` at `start` without attaching to it (in
/// reliable mode it gates publishers from now on). `SHMQ_CURSOR_EXISTS` if
/// the name is taken, `SHMQ_CURSOR_TABLE_FULL`, `SHMQ_BUSY`,
/// `SHMQ_INVALID_ARGUMENT` for a bad name (1 to 64 bytes of UTF-8) or
/// `start`.
///
/// # Safety
/// `log` is NULL or a live handle; `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_create_cursor(
    log: *const shmq_log,
    name: *const c_char,
    start: u32,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(name);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let name = try_status!(unsafe { name_arg(name) });
        let start = try_status!(start_arg(start));
        match l.create_cursor(name, start) {
            Ok(()) => SHMQ_OK,
            Err(e) => cursor_error(e),
        }
    })
}

/// Creates the named cursor `new_name` at the committed position of the
/// existing cursor `existing_name` (a copy, e.g. to replay from there).
/// `SHMQ_CURSOR_NOT_FOUND` if `existing_name` does not exist,
/// `SHMQ_CURSOR_EXISTS` if `new_name` does; `SHMQ_CURSOR_TABLE_FULL`,
/// `SHMQ_BUSY`, `SHMQ_INVALID_ARGUMENT` for a bad name.
///
/// # Safety
/// `log` is NULL or a live handle; `new_name` and `existing_name` are NULL
/// or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_cursor_from(
    log: *const shmq_log,
    new_name: *const c_char,
    existing_name: *const c_char,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(new_name);
        non_null!(existing_name);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let names = unsafe { (name_arg(new_name), name_arg(existing_name)) };
        let (new_name, existing_name) = match names {
            (Ok(a), Ok(b)) => (a, b),
            (Err(status), _) | (_, Err(status)) => return status,
        };
        match l.cursor_from(new_name, existing_name) {
            Ok(()) => SHMQ_OK,
            Err(e) => cursor_error(e),
        }
    })
}

/// Removes the named cursor `name`. `SHMQ_CURSOR_NOT_FOUND`;
/// `SHMQ_CURSOR_IN_USE` while a live subscriber holds it; `SHMQ_BUSY`;
/// `SHMQ_INVALID_ARGUMENT` for a bad name.
///
/// # Safety
/// `log` is NULL or a live handle; `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_remove_cursor(
    log: *const shmq_log,
    name: *const c_char,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(name);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let name = try_status!(unsafe { name_arg(name) });
        match l.remove_cursor(name) {
            Ok(()) => SHMQ_OK,
            Err(e) => cursor_error(e),
        }
    })
}

/// Writes what the named cursor `name` looks like (committed position,
/// read position, lag, holder) to `*info_out`; `SHMQ_CURSOR_NOT_FOUND` if
/// there is no such cursor; `SHMQ_INVALID_ARGUMENT` for a name that is
/// not UTF-8.
///
/// # Safety
/// `log` is NULL or a live handle; `name` is NULL or a NUL-terminated
/// string; `info_out` is NULL or valid for writing a `shmq_cursor_info`.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_cursor(
    log: *const shmq_log,
    name: *const c_char,
    info_out: *mut shmq_cursor_info,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(name);
        non_null!(info_out);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let name = try_status!(unsafe { name_arg(name) });
        match l.cursor(name) {
            Some(c) => {
                let info = shmq_cursor_info {
                    position: c.position,
                    read: c.read,
                    lag: c.lag,
                    owner_pid: c.owner.unwrap_or(0),
                };
                // SAFETY: non-null (checked), writable (caller).
                unsafe { info_out.write(info) };
                SHMQ_OK
            }
            None => cursor_error(CursorError::NotFound {
                name: name.to_owned(),
            }),
        }
    })
}

/// Writes the log's counters to `*stats_out`.
///
/// # Safety
/// `log` is NULL or a live handle; `stats_out` is NULL or valid for writing
/// a `shmq_log_counters`.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_stats(
    log: *const shmq_log,
    stats_out: *mut shmq_log_counters,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(stats_out);
        let s = l.stats();
        let counters = shmq_log_counters {
            published: s.published,
            next_seq: s.next_seq,
            oldest: s.oldest,
            tombstones: s.tombstones,
            lagged: s.lagged,
            capacity: s.capacity,
            cursors: s.cursors.len() as u64,
            cursor_capacity: s.cursor_capacity as u64,
            reliable: s.mode == LogMode::Reliable,
        };
        // SAFETY: non-null (checked), writable (caller).
        unsafe { stats_out.write(counters) };
        SHMQ_OK
    })
}

/// Frees the subscriber: a named cursor is released (keeping its committed
/// position: call shmq_subscriber_commit() first to keep what was read), a
/// reliable-mode subscriber stops gating publishers. NULL is accepted and
/// ignored.
///
/// # Safety
/// `sub` is NULL or a live subscriber that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_free(sub: *mut shmq_subscriber) {
    let _ = boundary(|| {
        if !sub.is_null() {
            // SAFETY: a live handle made by Box::into_raw in write_sub, freed
            // once (caller).
            drop(unsafe { Box::from_raw(sub) });
        }
        SHMQ_OK
    });
}

/// Sets how this subscriber's blocking receives wait: as
/// shmq_queue_set_wait() (spin `spin_ns`, then sleep; negative: busy-spin).
///
/// # Safety
/// `sub` is NULL or a live subscriber that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_set_wait(
    sub: *mut shmq_subscriber,
    spin_ns: i64,
) -> shmq_status {
    boundary(|| {
        sub_mut!(sub).set_wait_strategy(wait_strategy(spin_ns));
        SHMQ_OK
    })
}

/// Handles a receive's result: writes the outputs its status calls for.
///
/// # Safety
/// `len_out` is non-null and valid for writing a `size_t`; `missed_out` is
/// NULL or valid for writing a `uint64_t`.
unsafe fn recv_out(
    result: Result<usize, RecvError>,
    len_out: *mut usize,
    missed_out: *mut u64,
) -> shmq_status {
    match result {
        Ok(n) => {
            // SAFETY: non-null, writable (caller).
            unsafe { len_out.write(n) };
            SHMQ_OK
        }
        Err(RecvError::Lagged(missed)) => {
            // SAFETY: NULL or writable (caller).
            unsafe { write_opt(missed_out, missed) };
            recv_error(RecvError::Lagged(missed))
        }
        Err(RecvError::BufferTooSmall { needed }) => {
            // SAFETY: non-null, writable (caller).
            unsafe { len_out.write(needed) };
            recv_error(RecvError::BufferTooSmall { needed })
        }
        Err(e) => recv_error(e),
    }
}

/// Receives the next message into the `buf_len` bytes at `buf`; never waits.
///
/// Outputs, by status:
/// - `SHMQ_OK`: the message's length is written to `*len_out` (and nothing
///   to `*missed_out`).
/// - `SHMQ_LAGGED` (overwrite mode): the subscriber fell a full ring behind;
///   the number of messages it lost is written to `*missed_out` (unless it
///   is NULL) and nothing to `*len_out` or `buf`. It now stands at the
///   oldest message still present: call again to read it. Over a run,
///   messages received plus the sum of `*missed_out` equals the messages
///   published (in the subscriber's range).
/// - `SHMQ_BUFFER_TOO_SMALL`: the message is longer than `buf_len`; the
///   subscriber stays on it, and the length it needs is written to
///   `*len_out` (a buffer of the log's slot size always suffices).
/// - anything else: no output is written. `SHMQ_EMPTY` (nothing new);
///   `SHMQ_CLOSED` once the log is closed and this subscriber has read
///   everything; `SHMQ_CORRUPT` for an impossible length in shared memory
///   (that message is skipped); `SHMQ_NULL_PARAMETER`;
///   `SHMQ_INVALID_ARGUMENT` (`buf_len` exceeds `PTRDIFF_MAX`).
///
/// `buf` may be NULL when `buf_len` is 0.
///
/// # Safety
/// `sub` is NULL or a live subscriber that no other thread is using; `buf`
/// is NULL or writable for `buf_len` bytes; `len_out` is NULL or valid for
/// writing a `size_t`; `missed_out` is NULL or valid for writing a
/// `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_recv_try(
    sub: *mut shmq_subscriber,
    buf: *mut u8,
    buf_len: usize,
    len_out: *mut usize,
    missed_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let s = sub_mut!(sub);
        non_null!(len_out);
        // SAFETY: writable for buf_len bytes (caller).
        let buf = try_status!(unsafe { buf_arg(buf, buf_len) });
        // SAFETY: len_out non-null (checked); both writable (caller).
        unsafe { recv_out(s.recv_try(buf), len_out, missed_out) }
    })
}

/// Receives the next message as shmq_subscriber_recv_try() does (same
/// outputs by status, `SHMQ_LAGGED` included), waiting while there is none
/// for up to `timeout_ns` nanoseconds (`SHMQ_WAIT_FOREVER`, or any negative
/// value: no limit); `SHMQ_TIMEOUT` when it passes.
///
/// # Safety
/// As for shmq_subscriber_recv_try().
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_recv_block(
    sub: *mut shmq_subscriber,
    buf: *mut u8,
    buf_len: usize,
    timeout_ns: i64,
    len_out: *mut usize,
    missed_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let s = sub_mut!(sub);
        non_null!(len_out);
        // SAFETY: writable for buf_len bytes (caller).
        let buf = try_status!(unsafe { buf_arg(buf, buf_len) });
        let result = s.recv_block(buf, timeout(timeout_ns));
        // SAFETY: len_out non-null (checked); both writable (caller).
        unsafe { recv_out(result, len_out, missed_out) }
    })
}

/// Stores the subscriber's position as its named cursor's committed
/// position: a later subscriber on that name (in any process; after a
/// restart for a file-backed log) resumes here, and
/// shmq_subscriber_rollback() returns here. In reliable mode publishers are
/// gated by committed positions: commit at least every `capacity` messages.
/// `SHMQ_NOT_NAMED` for a subscriber without a named cursor.
///
/// # Safety
/// `sub` is NULL or a live subscriber that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_commit(sub: *mut shmq_subscriber) -> shmq_status {
    boundary(|| match sub_mut!(sub).commit() {
        Ok(()) => SHMQ_OK,
        Err(e) => cursor_error(e),
    })
}

/// Moves the subscriber back to its named cursor's committed position (the
/// messages read since are read again; in overwrite mode those already
/// overwritten come back as `SHMQ_LAGGED`) and writes that position to
/// `*position_out` unless it is NULL. `SHMQ_NOT_NAMED` for a subscriber
/// without a named cursor.
///
/// # Safety
/// `sub` is NULL or a live subscriber that no other thread is using;
/// `position_out` is NULL or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_rollback(
    sub: *mut shmq_subscriber,
    position_out: *mut u64,
) -> shmq_status {
    boundary(|| match sub_mut!(sub).rollback() {
        Ok(pos) => {
            // SAFETY: NULL or writable (caller).
            unsafe { write_opt(position_out, pos) };
            SHMQ_OK
        }
        Err(e) => cursor_error(e),
    })
}

/// Writes the next sequence number this subscriber will read to
/// `*position_out` (right after a successful receive, the message's
/// sequence number is that minus one).
///
/// # Safety
/// `sub` is NULL or a live subscriber that no other thread is using;
/// `position_out` is NULL or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_position(
    sub: *const shmq_subscriber,
    position_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let s = sub_ref!(sub);
        non_null!(position_out);
        // SAFETY: non-null (checked), writable (caller).
        unsafe { position_out.write(s.position()) };
        SHMQ_OK
    })
}

/// Writes the number of messages published that this subscriber has not
/// read yet to `*lag_out`.
///
/// # Safety
/// `sub` is NULL or a live subscriber that no other thread is using;
/// `lag_out` is NULL or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_lag(
    sub: *const shmq_subscriber,
    lag_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let s = sub_ref!(sub);
        non_null!(lag_out);
        // SAFETY: non-null (checked), writable (caller).
        unsafe { lag_out.write(s.lag()) };
        SHMQ_OK
    })
}

/// Writes the committed position of the subscriber's named cursor to
/// `*committed_out`; `SHMQ_NOT_NAMED` for a subscriber without one.
///
/// # Safety
/// `sub` is NULL or a live subscriber that no other thread is using;
/// `committed_out` is NULL or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_committed(
    sub: *const shmq_subscriber,
    committed_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let s = sub_ref!(sub);
        non_null!(committed_out);
        match s.committed() {
            Some(pos) => {
                // SAFETY: non-null (checked), writable (caller).
                unsafe { committed_out.write(pos) };
                SHMQ_OK
            }
            None => cursor_error(CursorError::NotNamed),
        }
    })
}

/// Writes the log's creation flags (`SHMQ_LOG_RELIABLE`,
/// `SHMQ_LOG_SINGLE_PUBLISHER`) to `*flags_out`: which kind of log this is.
///
/// # Safety
/// `log` is NULL or a live handle; `flags_out` is NULL or valid for writing
/// a `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_flags(log: *const shmq_log, flags_out: *mut u32) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(flags_out);
        let mut flags = 0;
        if l.mode() == LogMode::Reliable {
            flags |= SHMQ_LOG_RELIABLE;
        }
        if l.is_single_publisher() {
            flags |= SHMQ_LOG_SINGLE_PUBLISHER;
        }
        // SAFETY: non-null (checked), writable (caller).
        unsafe { flags_out.write(flags) };
        SHMQ_OK
    })
}

/// Borrows `count` lengths from C.
///
/// # Safety
/// `ptr` is NULL or readable (or writable, for `mutable` callers) for
/// `count` `size_t` values.
unsafe fn lens_arg<'a>(ptr: *const usize, count: usize) -> Result<&'a [usize], shmq_status> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(fail_static(
            SHMQ_NULL_PARAMETER,
            cstr!("argument `lens` is NULL but `count` is not 0"),
        ));
    }
    if count > isize::MAX as usize / std::mem::size_of::<usize>() {
        return Err(fail_static(
            SHMQ_INVALID_ARGUMENT,
            cstr!("`count` is too large"),
        ));
    }
    // SAFETY: non-null, in range, readable for count values (caller).
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// The `count` messages packed one after the other in `data`, message `i`
/// being `lens[i]` bytes long: the arguments of a batch publish.
///
/// # Safety
/// `lens` is NULL or readable for `count` values; `data` is NULL or
/// readable for the sum of `lens` bytes.
pub(crate) unsafe fn packed_msgs<'a>(
    data: *const u8,
    lens: *const usize,
    count: usize,
) -> Result<Vec<&'a [u8]>, shmq_status> {
    // SAFETY: readable for count values (caller).
    let lens = unsafe { lens_arg(lens, count) }?;
    let total = lens
        .iter()
        .try_fold(0usize, |a, &n| a.checked_add(n))
        .ok_or_else(|| fail_static(SHMQ_INVALID_ARGUMENT, cstr!("the lengths overflow size_t")))?;
    // SAFETY: readable for the sum of lens bytes (caller).
    let data = unsafe { msg_arg(data, total) }?;
    let mut msgs = Vec::with_capacity(lens.len());
    let mut at = 0;
    for &n in lens {
        msgs.push(&data[at..at + n]);
        at += n;
    }
    Ok(msgs)
}

/// Publishes up to `count` messages in one call, in order: message `i` is
/// the `lens[i]` bytes that follow message `i - 1` in `data` (the messages
/// are packed one after the other). Writes how many were published to
/// `*published_out`: all of them in overwrite mode (at most a ring's worth
/// per call), as many as there is room for in reliable mode. On a
/// single-publisher log the whole batch costs one index store and at most
/// one wake.
///
/// Fails, publishing nothing, with `SHMQ_TOO_LARGE` when any message is
/// longer than the slot size, `SHMQ_FULL` (reliable mode, no room for even
/// one), `SHMQ_NOT_CONNECTED` (reliable mode, no cursor registered),
/// `SHMQ_CLOSED`, `SHMQ_ROLE_TAKEN` (single-publisher log with
/// another live publisher), `SHMQ_INVALID_ARGUMENT` (the lengths overflow
/// `size_t`, or `count` values exceed `PTRDIFF_MAX` bytes), `SHMQ_BUSY`,
/// `SHMQ_CORRUPT`. `data` may be NULL when the lengths add up to 0.
///
/// # Safety
/// `log` is NULL or a live handle; `lens` is NULL or readable for `count`
/// values; `data` is NULL or readable for the sum of `lens` bytes;
/// `published_out` is NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_log_publish_batch(
    log: *const shmq_log,
    data: *const u8,
    lens: *const usize,
    count: usize,
    published_out: *mut usize,
) -> shmq_status {
    boundary(|| {
        let l = log_ref!(log);
        non_null!(published_out);
        // SAFETY: as the caller guarantees.
        let msgs = try_status!(unsafe { packed_msgs(data, lens, count) });
        // SAFETY: published_out is non-null (checked), writable (caller).
        unsafe { published_batch(l.publish_batch(&msgs), published_out) }
    })
}

/// Receives up to `max` messages in one call into the `buf_len` bytes at
/// `buf`, packed one after the other (message `i` starts where message
/// `i - 1` ends); writes their lengths to `lens_out[0..n]` and `n` to
/// `*count_out`. With `timeout_ns` 0 it never waits; otherwise it waits up
/// to `timeout_ns` nanoseconds (`SHMQ_WAIT_FOREVER`, or any negative value:
/// no limit) for the first message, then takes what else is ready.
/// Messages that do not fit in what is left of `buf` stay for the next
/// call.
///
/// Outputs, by status: `SHMQ_OK` with n >= 1; `SHMQ_LAGGED` when the very
/// first message was lost (the count is written to `*missed_out` unless it
/// is NULL; a loss met after some messages is reported by the next call);
/// `SHMQ_BUFFER_TOO_SMALL` when not even the first message fits (the
/// subscriber stays on it; the length it needs is written to
/// `lens_out[0]`); otherwise nothing is written: `SHMQ_EMPTY`,
/// `SHMQ_TIMEOUT`, `SHMQ_CLOSED`, `SHMQ_CORRUPT`, `SHMQ_NULL_PARAMETER`,
/// `SHMQ_INVALID_ARGUMENT` (`max` is 0, or `buf_len` exceeds
/// `PTRDIFF_MAX`).
///
/// # Safety
/// `sub` is NULL or a live subscriber that no other thread is using; `buf`
/// is NULL or writable for `buf_len` bytes; `lens_out` is NULL or writable
/// for `max` `size_t` values; `count_out` is NULL or valid for writing a
/// `size_t`; `missed_out` is NULL or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_subscriber_recv_batch(
    sub: *mut shmq_subscriber,
    buf: *mut u8,
    buf_len: usize,
    max: usize,
    timeout_ns: i64,
    lens_out: *mut usize,
    count_out: *mut usize,
    missed_out: *mut u64,
) -> shmq_status {
    boundary(|| {
        let s = sub_mut!(sub);
        non_null!(count_out);
        if max == 0 {
            return fail_static(SHMQ_INVALID_ARGUMENT, cstr!("`max` is 0"));
        }
        non_null!(lens_out);
        // SAFETY: writable for buf_len bytes (caller).
        let buf = try_status!(unsafe { buf_arg(buf, buf_len) });
        let mut lens = Vec::with_capacity(max.min(4096));
        let result = if timeout_ns == 0 {
            s.recv_batch(buf, max, &mut lens)
        } else {
            s.recv_batch_block(buf, max, &mut lens, timeout(timeout_ns))
        };
        match result {
            Ok(n) => {
                // SAFETY: lens_out is non-null (checked) and writable for
                // max >= n values (caller).
                unsafe { std::ptr::copy_nonoverlapping(lens.as_ptr(), lens_out, n) };
                // SAFETY: non-null (checked), writable (caller).
                unsafe { count_out.write(n) };
                SHMQ_OK
            }
            Err(RecvError::Lagged(missed)) => {
                // SAFETY: NULL or writable (caller).
                unsafe { write_opt(missed_out, missed) };
                recv_error(RecvError::Lagged(missed))
            }
            Err(RecvError::BufferTooSmall { needed }) => {
                // SAFETY: lens_out is non-null (checked) and writable for
                // max >= 1 values (caller).
                unsafe { lens_out.write(needed) };
                recv_error(RecvError::BufferTooSmall { needed })
            }
            Err(e) => recv_error(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::ptr;

    fn target(tag: &str) -> CString {
        CString::new(format!("posix:shmq-capi-log-{tag}-{}", std::process::id())).unwrap()
    }

    #[test]
    fn publish_lag_and_outputs_by_status() {
        let t = target("lag");
        let mut log: *mut shmq_log = ptr::null_mut();
        // SAFETY: valid arguments throughout; handles are freed at the end.
        unsafe {
            assert_eq!(
                shmq_log_create(t.as_ptr(), 8, 2, 0, 0, 0, &mut log),
                SHMQ_OK
            );
            let mut sub: *mut shmq_subscriber = ptr::null_mut();
            assert_eq!(
                shmq_log_subscribe(log, SHMQ_START_LATEST, &mut sub),
                SHMQ_OK
            );
            let mut seq = 99u64;
            for i in 0..5u8 {
                assert_eq!(shmq_log_publish(log, &i, 1, &mut seq), SHMQ_OK);
                assert_eq!(seq, i as u64);
            }
            let (mut buf, mut n, mut missed) = ([0u8; 8], 77usize, 0u64);
            assert_eq!(
                shmq_subscriber_recv_try(sub, buf.as_mut_ptr(), 8, &mut n, &mut missed),
                SHMQ_LAGGED
            );
            assert_eq!((n, missed), (77, 3));
            assert_eq!(
                shmq_subscriber_recv_block(sub, buf.as_mut_ptr(), 8, 0, &mut n, &mut missed),
                SHMQ_OK
            );
            assert_eq!((n, buf[0], missed), (1, 3, 3));
            assert_eq!(shmq_subscriber_commit(sub), SHMQ_NOT_NAMED);
            let mut stats = shmq_log_counters::default();
            assert_eq!(shmq_log_stats(log, &mut stats), SHMQ_OK);
            assert_eq!((stats.published, stats.lagged, stats.oldest), (5, 3, 3));
            shmq_subscriber_free(sub);
            assert_eq!(shmq_log_unlink(log), SHMQ_OK);
            shmq_log_free(log);
        }
    }
}
