//! Exit codes: the same numbers as the `shmq` command's (`cli/src/exit.rs`),
//! so that scripts treat both alike.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success; also a stop by SIGTERM or SIGINT that drained and committed |
//! | 1    | any other failure (NATS unreachable at a step that needs it, I/O, ...) |
//! | 2    | usage error or invalid argument (a bad flag, a bad routes file) |
//! | 3    | nothing at the local target |
//! | 4    | permission denied |
//! | 5    | corrupt segment, or a corrupt state file |
//! | 6    | already exists |
//! | 7    | incompatible segment |
//! | 8    | the segment's creator never finished initialising it |
//! | 9    | timed out: a drain after SIGTERM did not finish in time |

use std::fmt;

use shmq::{CursorError, Error};

/// Any other failure.
pub const OTHER: i32 = 1;
/// Usage error or invalid argument (clap uses 2 as well).
pub const USAGE: i32 = 2;
/// Nothing at the target.
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
/// A drain did not finish in time.
pub const TIMEOUT: i32 = 9;

/// A failure with an explicit exit code.
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

/// An error with an explicit exit code.
pub fn fail(code: i32, msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        msg: msg.into(),
    })
}

/// The exit code for `err`.
pub fn code_of(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::NotFound { .. } => NOT_FOUND,
                Error::PermissionDenied { .. } => PERMISSION,
                Error::Corrupt { .. } => CORRUPT,
                Error::AlreadyExists { .. } => EXISTS,
                Error::Incompatible { .. } | Error::VersionMismatch { .. } => INCOMPATIBLE,
                Error::NotReady { .. } => NOT_READY,
                Error::InvalidArgument { .. } => USAGE,
                _ => OTHER,
            };
        }
        match cause.downcast_ref::<CursorError>() {
            Some(CursorError::NotFound { .. }) => return NOT_FOUND,
            Some(CursorError::InvalidName { .. }) => return USAGE,
            Some(CursorError::Corrupt { .. }) => return CORRUPT,
            Some(_) => return OTHER,
            None => {}
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
