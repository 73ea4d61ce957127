//! Errors: one enum for setting a queue up, one per operation for using it.

use std::fmt;
use std::io;

/// Why a segment or queue could not be created, opened or removed.
///
/// Every variant says what went wrong and, in its `Display`, what to do.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// `create` found something already at the target; it was left untouched.
    AlreadyExists {
        /// The target, as text.
        target: String,
    },
    /// `open` found nothing at the target.
    NotFound {
        /// The target, as text.
        target: String,
    },
    /// The caller may not open or create the target (mode bits, ownership).
    PermissionDenied {
        /// The target, as text.
        target: String,
    },
    /// The segment is a valid shmq segment but not the one asked for
    /// (another queue kind, or other parameters in `open_or_create`).
    Incompatible {
        /// What differs.
        detail: String,
    },
    /// The segment was written by a newer or older layout of shmq.
    VersionMismatch {
        /// The layout version stored in the segment.
        found: u32,
        /// The layout version this library reads and writes.
        supported: u32,
    },
    /// The segment is not a shmq segment, or its header fails validation.
    Corrupt {
        /// Which check failed.
        detail: String,
    },
    /// The segment exists but its creator has not finished initialising it
    /// within the bounded wait (it may have died half-way).
    NotReady {
        /// The target, as text.
        target: String,
    },
    /// A parameter is out of range (slot size, capacity, name, key).
    InvalidArgument {
        /// Which parameter and why.
        detail: String,
    },
    /// A single-producer/single-consumer queue's role is held by a live process.
    RoleTaken {
        /// "producer" or "consumer".
        role: &'static str,
        /// The holder's process id.
        pid: u32,
    },
    /// Any other operating-system error.
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl Error {
    /// Maps an OS error from an operation on `target` to the matching variant.
    pub(crate) fn from_os(context: &str, target: &str, err: io::Error) -> Error {
        match err.raw_os_error() {
            Some(libc::EEXIST) => Error::AlreadyExists {
                target: target.to_owned(),
            },
            Some(libc::ENOENT) => Error::NotFound {
                target: target.to_owned(),
            },
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied {
                target: target.to_owned(),
            },
            _ => Error::Io {
                context: format!("{context} {target}"),
                source: err,
            },
        }
    }

    pub(crate) fn corrupt(detail: impl Into<String>) -> Error {
        Error::Corrupt {
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Error {
        Error::InvalidArgument {
            detail: detail.into(),
        }
    }
}

/// The text of every `RoleTaken`: who holds the `role` (pid 0: nobody this
/// handle could be told of, as it has no process-table entry), and when it
/// is this process, that it is another handle (or a zero-copy guard, or a
/// thread mid-call) of this process, not a stranger.
pub(crate) fn role_taken(f: &mut fmt::Formatter<'_>, role: &str, pid: u32) -> fmt::Result {
    if pid == 0 {
        write!(
            f,
            "cannot take the {role} role: this handle has no entry in the segment's \
             process table (all 256 are live); drop idle handles"
        )
    } else if pid == std::process::id() {
        write!(
            f,
            "another handle in this process (pid {pid}) holds the {role} role, or a \
             zero-copy guard or another thread's call of this handle does; drop that \
             handle or guard first, as there is one {role} at a time"
        )
    } else {
        write!(
            f,
            "process {pid} holds the {role} role (one {role} at a time); wait for it to \
             detach, or create the queue or log without the single-{role} flag"
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyExists { target } => write!(
                f,
                "{target} already exists and was left untouched; open it, or remove it first"
            ),
            Error::NotFound { target } => {
                write!(
                    f,
                    "{target} does not exist; create it first or check the key/name/path"
                )
            }
            Error::PermissionDenied { target } => write!(
                f,
                "permission denied for {target}; check its mode bits and owner"
            ),
            Error::Incompatible { detail } => write!(f, "incompatible segment: {detail}"),
            Error::VersionMismatch { found, supported } => write!(
                f,
                "segment has layout version {found}, this shmq reads version {supported}; \
                 use a matching shmq build"
            ),
            Error::Corrupt { detail } => write!(f, "corrupt segment: {detail}"),
            Error::NotReady { target } => write!(
                f,
                "{target} exists but its header was never published: its creator is still \
                 at work, or died before finishing; nothing was changed. Retry the open; if \
                 the creator died, a (checked) unlink removes it, then create it again"
            ),
            Error::InvalidArgument { detail } => write!(f, "invalid argument: {detail}"),
            Error::RoleTaken { role, pid } => role_taken(f, role, *pid),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a message was not enqueued. Nothing was written in any of these cases.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueError {
    /// Every slot holds a message (only from `enqueue_try`).
    Full,
    /// The queue was closed; no more messages are accepted.
    Closed,
    /// The message is longer than the slot size.
    TooLarge {
        /// The message's length.
        len: usize,
        /// The queue's slot size.
        max: usize,
    },
    /// The timeout or deadline passed while the queue stayed full.
    Timeout,
    /// Single-producer queue: another live handle (pid) is the producer.
    RoleTaken {
        /// The holder's process id.
        pid: u32,
    },
    /// The segment's process table is full of live entries (every one of
    /// its 256 entries is a live handle or a thread lane), so this thread
    /// cannot announce a claim; nothing was done. Drop idle handles, or use
    /// fewer threads per handle.
    Busy,
    /// Shared memory holds an impossible value (another process wrote garbage).
    Corrupt {
        /// Which check failed.
        detail: String,
    },
}

/// Why no message was dequeued.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DequeueError {
    /// No message is ready (only from `dequeue_try`).
    Empty,
    /// The queue is closed and drained.
    Closed,
    /// The timeout or deadline passed while the queue stayed empty.
    Timeout,
    /// The next message is longer than the buffer; it stays in the queue.
    BufferTooSmall {
        /// The length of the waiting message.
        needed: usize,
    },
    /// Single-consumer queue: another live handle (pid) is the consumer.
    RoleTaken {
        /// The holder's process id.
        pid: u32,
    },
    /// The segment's process table is full of live entries (every one of
    /// its 256 entries is a live handle or a thread lane), so this thread
    /// cannot announce a claim; nothing was done. Drop idle handles, or use
    /// fewer threads per handle.
    Busy,
    /// Shared memory holds an impossible value (another process wrote garbage).
    Corrupt {
        /// Which check failed.
        detail: String,
    },
}

impl fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnqueueError::Full => f.write_str("queue is full"),
            EnqueueError::Closed => f.write_str("queue is closed"),
            EnqueueError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds the slot size of {max} bytes"
                )
            }
            EnqueueError::Timeout => f.write_str("timed out waiting for a free slot"),
            EnqueueError::RoleTaken { pid } => role_taken(f, "producer", *pid),
            EnqueueError::Busy => f.write_str("the segment's process table is full of live handles and thread lanes; drop idle handles or use fewer threads"),
            EnqueueError::Corrupt { detail } => write!(f, "corrupt segment: {detail}"),
        }
    }
}

impl fmt::Display for DequeueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DequeueError::Empty => f.write_str("queue is empty"),
            DequeueError::Closed => f.write_str("queue is closed and drained"),
            DequeueError::Timeout => f.write_str("timed out waiting for a message"),
            DequeueError::BufferTooSmall { needed } => write!(
                f,
                "buffer too small: the next message needs {needed} bytes (it stays queued)"
            ),
            DequeueError::RoleTaken { pid } => role_taken(f, "consumer", *pid),
            DequeueError::Busy => f.write_str("the segment's process table is full of live handles and thread lanes; drop idle handles or use fewer threads"),
            DequeueError::Corrupt { detail } => write!(f, "corrupt segment: {detail}"),
        }
    }
}

impl std::error::Error for EnqueueError {}
impl std::error::Error for DequeueError {}
