//! The C interface: `extern "C"` functions over the Rust API, and nothing
//! else. `include/shmq.h` is generated from this module by cbindgen (see
//! `build.rs` and `cbindgen.toml`); the doc comments here are the header's.
//!
//! Conventions (after rustls-ffi):
//! - names are `shmq_<object>_<verb>`; handles are opaque pointers;
//! - every function that can fail returns a [`shmq_status`] whose values never
//!   change meaning; outputs come last and are written only on `SHMQ_OK`,
//!   with two documented exceptions: a log receive that returns
//!   `SHMQ_LAGGED` writes the number of messages missed to its
//!   `missed_out`, and a dequeue or receive that returns
//!   `SHMQ_BUFFER_TOO_SMALL` writes the length the message needs to its
//!   `len_out` (for the batch calls, to the first entry of its lengths
//!   array), so the caller can grow its buffer and call again;
//! - every body runs inside a panic boundary (a panic gives `SHMQ_PANIC`, it
//!   never unwinds into C) and checks every pointer (`SHMQ_NULL_PARAMETER`);
//! - every call that returns a status other than `SHMQ_OK` sets the calling
//!   thread's [`shmq_last_error`] message, the everyday `SHMQ_EMPTY`,
//!   `SHMQ_FULL` and `SHMQ_TIMEOUT` included; a successful call leaves the
//!   message as it was, so read it right after the failed call.

// C names on purpose: these items are the C API, spelled as C sees them.
#![allow(non_camel_case_types, clippy::upper_case_acronyms)]

mod log;
mod queue;
mod roles;

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use log::*;
pub use queue::*;
pub use roles::*;

use engine::{Error, RecvError, SendError, Target};

/// What a shmq call did. The values are fixed: a value never changes meaning
/// and new values are only ever added.
#[repr(C)]
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmq_status {
    /// Success; outputs were written.
    SHMQ_OK = 0,
    /// The queue is full (try-enqueue); nothing was written.
    SHMQ_FULL = 1,
    /// No message is ready (try-dequeue).
    SHMQ_EMPTY = 2,
    /// The timeout passed before the operation could complete.
    SHMQ_TIMEOUT = 3,
    /// The queue was closed: enqueues fail, dequeues fail once it is drained.
    SHMQ_CLOSED = 4,
    /// The message is longer than the queue's slot size; nothing was written.
    SHMQ_TOO_LARGE = 5,
    /// The next message is longer than the buffer; it stays in the queue.
    SHMQ_BUFFER_TOO_SMALL = 6,
    /// Create found something at the target and left it untouched.
    SHMQ_ALREADY_EXISTS = 7,
    /// Open found nothing at the target.
    SHMQ_NOT_FOUND = 8,
    /// The segment holds another kind of queue, or other parameters
    /// (open_or_create).
    SHMQ_INCOMPATIBLE = 9,
    /// The segment fails validation (not shmq's, or damaged).
    SHMQ_CORRUPT = 10,
    /// A required pointer argument was NULL.
    SHMQ_NULL_PARAMETER = 11,
    /// shmq panicked (a bug); the call had no effect on its outputs.
    SHMQ_PANIC = 12,
    /// An argument is out of range or malformed (target, size, capacity,
    /// flags, a length above `PTRDIFF_MAX`).
    SHMQ_INVALID_ARGUMENT = 13,
    /// The caller may not open or create the target (mode bits, owner).
    SHMQ_PERMISSION_DENIED = 14,
    /// The segment was written by an incompatible layout version of shmq.
    SHMQ_VERSION_MISMATCH = 15,
    /// The segment exists but its creator never finished initialising it.
    SHMQ_NOT_READY = 16,
    /// Another operating-system error; see shmq_last_error().
    SHMQ_IO = 17,
    /// A single-producer/single-consumer queue (`SHMQ_QUEUE_SPSC`) already
    /// has a live producer (or consumer) in another handle (a role handle
    /// or a queue handle that has enqueued or dequeued, in this process or
    /// another), or a single-publisher log a live publisher; nothing was
    /// done.
    SHMQ_ROLE_TAKEN = 18,
    /// A log subscriber fell a full ring behind (overwrite mode): messages
    /// were overwritten before it read them. The receive wrote how many to
    /// its `missed_out` (and nothing to its other outputs); the subscriber
    /// now stands at the oldest message still present: receive again.
    SHMQ_LAGGED = 19,
    /// No named cursor of the log has this name.
    SHMQ_CURSOR_NOT_FOUND = 20,
    /// A named cursor of this name exists already; nothing was changed.
    SHMQ_CURSOR_EXISTS = 21,
    /// Every entry of the log's cursor table is taken (its size is fixed at
    /// creation).
    SHMQ_CURSOR_TABLE_FULL = 22,
    /// The named cursor is held by a live subscriber (in this or another
    /// process).
    SHMQ_CURSOR_IN_USE = 23,
    /// Commit and rollback need a subscriber on a named cursor.
    SHMQ_NOT_NAMED = 24,
    /// Another live process kept the log's cursor table locked for too long,
    /// or every entry of the segment's process table is a live handle or
    /// thread (256 of them), so this thread cannot announce a claim; nothing
    /// was done. Retry later, or free idle handles.
    SHMQ_BUSY = 25,
    /// A reliable-mode log has no cursor registered at all (no named
    /// cursor, no live subscriber), so nobody would read the message;
    /// nothing was written (Aeron's NOT_CONNECTED). Subscribe first, or
    /// declare durable cursors when creating the log
    /// (shmq_log_create_with_cursors()). A blocking publish waits for a
    /// cursor to appear and gives this when its timeout passes first.
    SHMQ_NOT_CONNECTED = 26,
}

use shmq_status::*;

/// Wait without a time limit: pass as `timeout_ns` to a blocking call.
pub const SHMQ_WAIT_FOREVER: i64 = -1;

/// Builds a `&'static CStr` from a string literal at compile time.
macro_rules! cstr {
    ($s:expr) => {{
        const C: &::std::ffi::CStr =
            match ::std::ffi::CStr::from_bytes_with_nul(concat!($s, "\0").as_bytes()) {
                Ok(c) => c,
                Err(_) => panic!("string literal contains a NUL byte"),
            };
        C
    }};
}
pub(crate) use cstr;

/// Returns `SHMQ_NULL_PARAMETER` (with a message) from the enclosing
/// function if the pointer is NULL.
macro_rules! non_null {
    ($p:ident) => {
        if $p.is_null() {
            return $crate::fail_static(
                $crate::shmq_status::SHMQ_NULL_PARAMETER,
                $crate::cstr!(concat!("argument `", stringify!($p), "` is NULL")),
            );
        }
    };
}
pub(crate) use non_null;

/// Unwraps a `Result<T, shmq_status>`, or returns the status from the
/// enclosing closure (whose failure was already recorded for
/// `shmq_last_error`).
macro_rules! try_status {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(status) => return status,
        }
    };
}
pub(crate) use try_status;

thread_local! {
    /// The message of the calling thread's last failed call.
    static LAST_ERROR: RefCell<Cow<'static, CStr>> = const { RefCell::new(Cow::Borrowed(cstr!(""))) };
}

/// Records a fixed message for `status` and returns it (no allocation: the
/// hot statuses FULL, EMPTY, TIMEOUT and CLOSED come through here).
pub(crate) fn fail_static(status: shmq_status, msg: &'static CStr) -> shmq_status {
    set_last_error(Cow::Borrowed(msg));
    status
}

/// Stores the message, unless the thread is exiting (C may call us from
/// `atexit` handlers or thread-local destructors, after ours are gone).
fn set_last_error(msg: Cow<'static, CStr>) {
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut slot) = e.try_borrow_mut() {
            *slot = msg;
        }
    });
}

/// Records `msg` for `status` and returns it.
pub(crate) fn fail(status: shmq_status, msg: impl std::fmt::Display) -> shmq_status {
    let text = msg.to_string().replace('\0', "\\0");
    set_last_error(Cow::Owned(CString::new(text).unwrap_or_default()));
    status
}

/// Runs the body of an exported function: a panic becomes `SHMQ_PANIC`.
pub(crate) fn boundary(body: impl FnOnce() -> shmq_status) -> shmq_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(status) => status,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".into());
            fail(
                SHMQ_PANIC,
                format_args!("shmq panicked (a bug, please report it): {what}"),
            )
        }
    }
}

/// The status and message for a setup error.
pub(crate) fn setup_error(e: Error) -> shmq_status {
    let status = match &e {
        Error::AlreadyExists { .. } => SHMQ_ALREADY_EXISTS,
        Error::NotFound { .. } => SHMQ_NOT_FOUND,
        Error::PermissionDenied { .. } => SHMQ_PERMISSION_DENIED,
        Error::Incompatible { .. } => SHMQ_INCOMPATIBLE,
        Error::VersionMismatch { .. } => SHMQ_VERSION_MISMATCH,
        Error::Corrupt { .. } => SHMQ_CORRUPT,
        Error::NotReady { .. } => SHMQ_NOT_READY,
        Error::InvalidArgument { .. } => SHMQ_INVALID_ARGUMENT,
        Error::RoleTaken { .. } => SHMQ_ROLE_TAKEN,
        Error::Io { .. } => SHMQ_IO,
        // The engine's enums are non_exhaustive: a kind this layer does not
        // know yet is still an error, with its message.
        _ => SHMQ_IO,
    };
    fail(status, e)
}

/// The texts of the everyday statuses (FULL or EMPTY, CLOSED, TIMEOUT):
/// static, so that a poll that finds nothing allocates nothing, and each
/// naming the queue or the log it came from.
pub(crate) struct Everyday {
    pub(crate) idle: &'static CStr,
    pub(crate) closed: &'static CStr,
    pub(crate) timeout: &'static CStr,
}

/// The status and message for a failed enqueue or publish.
pub(crate) fn send_error(e: SendError, words: &Everyday) -> shmq_status {
    match e {
        SendError::Full => fail_static(SHMQ_FULL, words.idle),
        SendError::Closed => fail_static(SHMQ_CLOSED, words.closed),
        SendError::Timeout => fail_static(SHMQ_TIMEOUT, words.timeout),
        SendError::NotConnected => fail_static(
            SHMQ_NOT_CONNECTED,
            cstr!(
                "nobody is subscribed: a reliable log with no registered cursor accepts no \
                 message; subscribe first, or declare durable cursors at creation \
                 (shmq_log_create_with_cursors)"
            ),
        ),
        e @ SendError::GatedBy { .. } => fail(SHMQ_TIMEOUT, e),
        e @ SendError::TooLarge { .. } => fail(SHMQ_TOO_LARGE, e),
        e @ SendError::RoleTaken { .. } => fail(SHMQ_ROLE_TAKEN, e),
        e @ SendError::Busy => fail(SHMQ_BUSY, e),
        e @ SendError::Corrupt { .. } => fail(SHMQ_CORRUPT, e),
        // The engine's enums are non_exhaustive: a kind this layer does not
        // know yet is still an error, with its message.
        e => fail(SHMQ_IO, e),
    }
}

/// The status and message for a failed dequeue or receive.
pub(crate) fn recv_error(e: RecvError, words: &Everyday) -> shmq_status {
    match e {
        RecvError::Empty => fail_static(SHMQ_EMPTY, words.idle),
        RecvError::Closed => fail_static(SHMQ_CLOSED, words.closed),
        RecvError::Timeout => fail_static(SHMQ_TIMEOUT, words.timeout),
        RecvError::Lagged(_) => fail_static(
            SHMQ_LAGGED,
            cstr!("subscriber fell a ring behind: messages were lost (count in missed_out)"),
        ),
        e @ RecvError::BufferTooSmall { .. } => fail(SHMQ_BUFFER_TOO_SMALL, e),
        e @ RecvError::RoleTaken { .. } => fail(SHMQ_ROLE_TAKEN, e),
        e @ RecvError::Busy => fail(SHMQ_BUSY, e),
        e @ RecvError::Corrupt { .. } => fail(SHMQ_CORRUPT, e),
        e => fail(SHMQ_IO, e),
    }
}

/// The status and message for a failed enqueue.
pub(crate) fn enqueue_error(e: SendError) -> shmq_status {
    send_error(
        e,
        &Everyday {
            idle: cstr!("queue is full"),
            closed: cstr!("queue is closed"),
            timeout: cstr!("timed out waiting for a free slot"),
        },
    )
}

/// The status and message for a failed dequeue.
pub(crate) fn dequeue_error(e: RecvError) -> shmq_status {
    recv_error(
        e,
        &Everyday {
            idle: cstr!("queue is empty"),
            closed: cstr!("queue is closed and drained"),
            timeout: cstr!("timed out waiting for a message"),
        },
    )
}

/// Parses a NUL-terminated target string.
///
/// # Safety
/// `target` is non-null and points to a NUL-terminated string.
pub(crate) unsafe fn parse_target(target: *const c_char) -> Result<Target, shmq_status> {
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    let text = unsafe { CStr::from_ptr(target) };
    let text = text
        .to_str()
        .map_err(|_| fail_static(SHMQ_INVALID_ARGUMENT, cstr!("target is not valid UTF-8")))?;
    text.parse::<Target>().map_err(setup_error)
}

/// The version of the library, e.g. `"0.1.0"`: compare with the
/// `SHMQ_VERSION_*` macros of the header you compiled against. The string is
/// static; never free it.
#[no_mangle]
pub extern "C" fn shmq_version() -> *const c_char {
    cstr!(env!("CARGO_PKG_VERSION")).as_ptr()
}

/// The message of the calling thread's last failed shmq call, or `""` if no
/// call has failed on this thread. Never NULL. Never free it.
///
/// Every status other than `SHMQ_OK` sets it, the everyday `SHMQ_EMPTY`,
/// `SHMQ_FULL` and `SHMQ_TIMEOUT` included. Successful calls leave it as it
/// is: after a success it still holds the text of an older failure, so do
/// not use it to tell whether a call failed (the status says that); read it
/// right after the call that failed. The text stays valid until the next
/// shmq call on this thread; copy it to keep it.
#[no_mangle]
pub extern "C" fn shmq_last_error() -> *const c_char {
    // The pointer outlives the borrow: the string is only replaced by a later
    // failing call on this same thread.
    LAST_ERROR
        .try_with(|e| {
            e.try_borrow()
                .map(|m| m.as_ptr())
                .unwrap_or(cstr!("").as_ptr())
        })
        .unwrap_or(cstr!("").as_ptr())
}

/// The name of a status value, e.g. `"SHMQ_FULL"`; `"SHMQ_UNKNOWN"` for a
/// value this library does not know. The string is static; never free it.
#[no_mangle]
pub extern "C" fn shmq_status_name(status: i32) -> *const c_char {
    let name = match status {
        0 => cstr!("SHMQ_OK"),
        1 => cstr!("SHMQ_FULL"),
        2 => cstr!("SHMQ_EMPTY"),
        3 => cstr!("SHMQ_TIMEOUT"),
        4 => cstr!("SHMQ_CLOSED"),
        5 => cstr!("SHMQ_TOO_LARGE"),
        6 => cstr!("SHMQ_BUFFER_TOO_SMALL"),
        7 => cstr!("SHMQ_ALREADY_EXISTS"),
        8 => cstr!("SHMQ_NOT_FOUND"),
        9 => cstr!("SHMQ_INCOMPATIBLE"),
        10 => cstr!("SHMQ_CORRUPT"),
        11 => cstr!("SHMQ_NULL_PARAMETER"),
        12 => cstr!("SHMQ_PANIC"),
        13 => cstr!("SHMQ_INVALID_ARGUMENT"),
        14 => cstr!("SHMQ_PERMISSION_DENIED"),
        15 => cstr!("SHMQ_VERSION_MISMATCH"),
        16 => cstr!("SHMQ_NOT_READY"),
        17 => cstr!("SHMQ_IO"),
        18 => cstr!("SHMQ_ROLE_TAKEN"),
        19 => cstr!("SHMQ_LAGGED"),
        20 => cstr!("SHMQ_CURSOR_NOT_FOUND"),
        21 => cstr!("SHMQ_CURSOR_EXISTS"),
        22 => cstr!("SHMQ_CURSOR_TABLE_FULL"),
        23 => cstr!("SHMQ_CURSOR_IN_USE"),
        24 => cstr!("SHMQ_NOT_NAMED"),
        25 => cstr!("SHMQ_BUSY"),
        26 => cstr!("SHMQ_NOT_CONNECTED"),
        _ => cstr!("SHMQ_UNKNOWN"),
    };
    name.as_ptr()
}

/// Finds a SysV key with no segment behind it right now and writes it to
/// `*key_out` (another process may still take it first: then create fails
/// with `SHMQ_ALREADY_EXISTS` and you ask again). Use it as `"sysv:KEY"`.
/// `SHMQ_INVALID_ARGUMENT` if no free key turned up in 10000 tries.
///
/// # Safety
/// `key_out` is NULL or valid for writing an `int32_t`.
#[no_mangle]
pub unsafe extern "C" fn shmq_find_free_key(key_out: *mut i32) -> shmq_status {
    boundary(|| {
        non_null!(key_out);
        match engine::find_free_key() {
            Ok(key) => {
                // SAFETY: non-null (checked) and valid for writes (caller).
                unsafe { key_out.write(key) };
                SHMQ_OK
            }
            Err(e) => setup_error(e),
        }
    })
}

/// Removes the queue or log at `target` (see shmq_queue_create() for the
/// syntax): later opens fail with `SHMQ_NOT_FOUND`; processes attached keep
/// working until they detach. Removal is idempotent: `SHMQ_OK` if nothing is
/// there (removing twice is not an error).
///
/// Removes only a shmq segment: one with shmq's magic (valid or damaged), or
/// one whose creator never finished (header still unpublished but shaped like
/// a shmq header; an empty file created in the last few seconds). Anything
/// else is left untouched and gives `SHMQ_CORRUPT`, with shmq_last_error()
/// saying what was found; shmq_target_unlink_force() removes it anyway.
/// `SHMQ_INVALID_ARGUMENT` for a malformed target, `SHMQ_PERMISSION_DENIED`
/// or `SHMQ_IO` when the operating system refuses or fails. Never waits.
///
/// # Safety
/// `target` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmq_target_unlink(target: *const c_char) -> shmq_status {
    boundary(|| {
        non_null!(target);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let target = try_status!(unsafe { parse_target(target) });
        match target.unlink() {
            Ok(()) => SHMQ_OK,
            Err(e) => setup_error(e),
        }
    })
}

/// Removes whatever is at `target`, shmq's or not, without looking at it
/// (for cleaning up after tests, or a segment shmq_target_unlink() refused
/// that you know is to go). Idempotent: `SHMQ_OK` if nothing is there;
/// other statuses as shmq_target_unlink().
///
/// # Safety
/// `target` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmq_target_unlink_force(target: *const c_char) -> shmq_status {
    boundary(|| {
        non_null!(target);
        // SAFETY: non-null (checked), NUL-terminated (caller).
        let target = try_status!(unsafe { parse_target(target) });
        match target.unlink_force() {
            Ok(()) => SHMQ_OK,
            Err(e) => setup_error(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: shmq_last_error never returns NULL and the text is NUL-terminated.
        unsafe { CStr::from_ptr(shmq_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = boundary(|| panic!("boom {}", 42));
        assert_eq!(status, SHMQ_PANIC);
        let msg = last_error();
        assert!(msg.contains("boom 42"), "{msg}");
        let status = boundary(|| std::panic::panic_any(7u8));
        assert_eq!(status, SHMQ_PANIC);
        assert!(last_error().contains("unknown panic payload"));
    }

    #[test]
    fn status_names_match_values() {
        for (status, name) in [
            (SHMQ_OK, "SHMQ_OK"),
            (SHMQ_FULL, "SHMQ_FULL"),
            (SHMQ_IO, "SHMQ_IO"),
            (SHMQ_ROLE_TAKEN, "SHMQ_ROLE_TAKEN"),
            (SHMQ_LAGGED, "SHMQ_LAGGED"),
            (SHMQ_BUSY, "SHMQ_BUSY"),
            (SHMQ_NOT_CONNECTED, "SHMQ_NOT_CONNECTED"),
        ] {
            // SAFETY: static NUL-terminated strings.
            let got = unsafe { CStr::from_ptr(shmq_status_name(status as i32)) };
            assert_eq!(got.to_str().unwrap(), name);
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(shmq_status_name(-3)) };
        assert_eq!(unknown.to_str().unwrap(), "SHMQ_UNKNOWN");
    }

    #[test]
    fn target_unlink_leaves_what_is_not_shmqs_and_force_removes_it() {
        let path =
            std::env::temp_dir().join(format!("shmq-unit-capi-unlink-{}", std::process::id()));
        std::fs::write(&path, b"user data, not a queue").unwrap();
        let c = CString::new(format!("file:{}", path.display())).unwrap();
        // SAFETY: c is NUL-terminated.
        let status = unsafe { shmq_target_unlink(c.as_ptr()) };
        let kept = std::fs::read(&path);
        // SAFETY: as above.
        let forced = unsafe { shmq_target_unlink_force(c.as_ptr()) };
        let _ = std::fs::remove_file(&path);
        assert_eq!(status, SHMQ_CORRUPT);
        assert!(
            last_error().contains("not a shmq segment"),
            "{}",
            last_error()
        );
        assert_eq!(kept.unwrap(), b"user data, not a queue");
        assert_eq!(forced, SHMQ_OK);
        assert!(!path.exists());
        // SAFETY: as above.
        let again = unsafe { shmq_target_unlink_force(c.as_ptr()) };
        assert_eq!(again, SHMQ_OK, "removing twice is not an error");
        // SAFETY: NULL is allowed and refused.
        let null = unsafe { shmq_target_unlink_force(std::ptr::null()) };
        assert_eq!(null, SHMQ_NULL_PARAMETER);
    }

    #[test]
    fn messages_are_per_thread_and_nul_safe() {
        fail(SHMQ_IO, "a\0b");
        assert_eq!(last_error(), "a\\0b");
        std::thread::spawn(|| assert_eq!(last_error(), ""))
            .join()
            .unwrap();
    }
}
