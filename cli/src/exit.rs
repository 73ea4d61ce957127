//! Exit codes a script can rely on, and one-line error messages.
//!
//! Commands return `anyhow::Result`; the first error in the chain that says
//! what kind of failure it is (a `shmq::Error`, a per-operation error, or a
//! [`Failure`] raised by the command line itself) decides the code.

use std::fmt;

use shmq::{CursorError, Error, RecvError, SendError};

// 0 is success.
/// Any other failure.
pub const OTHER: i32 = 1;
/// Usage error or invalid argument (clap uses 2 as well).
pub const USAGE: i32 = 2;
/// Nothing at the target (or nobody there: a reliable log with no
/// registered cursor, which refuses to publish, `SendError::NotConnected`).
pub const NOT_FOUND: i32 = 3;
/// Permission denied.
pub const PERMISSION: i32 = 4;
/// Not a shmq segment, or its header fails validation.
pub const CORRUPT: i32 = 5;
/// Something already exists at the target.
pub const EXISTS: i32 = 6;
/// Another queue kind or layout version.
pub const INCOMPATIBLE: i32 = 7;
/// The creator never finished initialising the segment.
pub const NOT_READY: i32 = 8;
/// A `--timeout` passed.
pub const TIMEOUT: i32 = 9;
/// Interrupted by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
pub const INTERRUPTED: i32 = 130;

/// A failure raised by the command line itself, with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: i32,
    /// The one-line message.
    pub msg: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Failure {}

/// An error with an explicit exit code (an empty message prints nothing).
pub fn fail(code: i32, msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        msg: msg.into(),
    })
}

fn code_of_shmq(e: &Error) -> i32 {
    match e {
        Error::NotFound { .. } => NOT_FOUND,
        Error::PermissionDenied { .. } => PERMISSION,
        Error::Corrupt { .. } => CORRUPT,
        Error::AlreadyExists { .. } => EXISTS,
        Error::Incompatible { .. } | Error::VersionMismatch { .. } => INCOMPATIBLE,
        Error::NotReady { .. } => NOT_READY,
        Error::InvalidArgument { .. } => USAGE,
        Error::Send(e) => code_of_send(e),
        Error::Recv(e) => code_of_recv(e),
        Error::Cursor(e) => code_of_cursor(e),
        _ => OTHER,
    }
}

fn code_of_send(e: &SendError) -> i32 {
    match e {
        SendError::Timeout | SendError::GatedBy { .. } => TIMEOUT,
        SendError::NotConnected => NOT_FOUND,
        SendError::Corrupt { .. } => CORRUPT,
        _ => OTHER,
    }
}

fn code_of_recv(e: &RecvError) -> i32 {
    match e {
        RecvError::Timeout => TIMEOUT,
        RecvError::Corrupt { .. } => CORRUPT,
        _ => OTHER,
    }
}

fn code_of_cursor(e: &CursorError) -> i32 {
    match e {
        CursorError::NotFound { .. } => NOT_FOUND,
        CursorError::InvalidName { .. } => USAGE,
        CursorError::Corrupt { .. } => CORRUPT,
        _ => OTHER,
    }
}

/// The exit code for `err`.
pub fn code_of(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(e) = cause.downcast_ref::<Error>() {
            return code_of_shmq(e);
        }
        if let Some(e) = cause.downcast_ref::<SendError>() {
            return code_of_send(e);
        }
        if let Some(e) = cause.downcast_ref::<RecvError>() {
            return code_of_recv(e);
        }
        if let Some(e) = cause.downcast_ref::<CursorError>() {
            return code_of_cursor(e);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::NotFound => return NOT_FOUND,
                std::io::ErrorKind::PermissionDenied => return PERMISSION,
                _ => {}
            }
        }
    }
    OTHER
}

/// The error and its causes on one line (`context: cause: cause`), with any
/// line breaks inside a message flattened and every other control character
/// escaped (a message may quote names or bytes read from a segment).
pub fn one_line(err: &anyhow::Error) -> String {
    crate::text::printable(&format!("{err:#}").replace('\n', " ")).into_owned()
}
