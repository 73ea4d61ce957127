//! Errors: [`Error`] for setting a queue or log up, [`SendError`] for putting
//! a message in (a queue's enqueue, a log's publish), [`RecvError`] for taking
//! one out (a queue's dequeue, a log's receive) and
//! [`CursorError`](crate::CursorError) for the log's named-cursor table.
//!
//! The last three convert into [`Error`] with `?`, so a function that sets up
//! and uses a queue returns one type:
//!
//! ```
//! # use shmq::{Queue, QueueConfig, Target};
//! fn round_trip(target: &Target) -> Result<Vec<u8>, shmq::Error> {
//!     let queue = Queue::create_owned(target, &QueueConfig::new(64, 8))?;
//!     queue.enqueue_try(b"hello")?; // SendError -> Error
//!     let mut buf = [0u8; 64];
//!     let n = queue.dequeue_try(&mut buf)?; // RecvError -> Error
//!     Ok(buf[..n].to_vec())
//! }
//! # let target: Target = format!("posix:shmq-doc-errors-{}", std::process::id()).parse()?;
//! assert_eq!(round_trip(&target)?, b"hello");
//! # Ok::<(), shmq::Error>(())
//! ```

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
    /// A message could not be enqueued or published (converted by `?`).
    Send(SendError),
    /// A message could not be dequeued or received (converted by `?`).
    Recv(RecvError),
    /// A named-cursor operation failed (converted by `?`).
    Cursor(crate::CursorError),
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
            Error::Send(e) => e.fmt(f),
            Error::Recv(e) => e.fmt(f),
            Error::Cursor(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            // Transparent: the text is the wrapped error's, so its source
            // (not the wrapped error itself) is next in the chain.
            Error::Send(e) => e.source(),
            Error::Recv(e) => e.source(),
            Error::Cursor(e) => e.source(),
            _ => None,
        }
    }
}

/// Why a message was not enqueued on a queue or published on a log. Nothing
/// was written in any of these cases.
///
/// One type for both, so that code moving messages between queues and logs
/// needs no conversion; the docs of each variant say which side returns it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No free slot (only from the `_try` calls): every slot of a queue
    /// holds a message, or a reliable log's slowest cursor is a ring behind.
    Full,
    /// The queue or log was closed; no more messages are accepted.
    Closed,
    /// The message is longer than the slot size.
    TooLarge {
        /// The message's length.
        len: usize,
        /// The slot size.
        max: usize,
    },
    /// The timeout or deadline passed while there was no free slot.
    Timeout,
    /// Reliable log only: no cursor is registered (no named cursor, no
    /// live subscriber), so nobody would ever read the message; nothing was
    /// written (Aeron's NOT_CONNECTED). Subscribe first, or declare durable
    /// cursors when the log is created
    /// ([`LogConfig::durable_cursor`](crate::LogConfig::durable_cursor)),
    /// which gate it from the first publish. The blocking publishes wait
    /// for a cursor to appear and give this when their deadline passes
    /// with nobody registered.
    NotConnected,
    /// Reliable log only: the timeout or deadline passed while the log
    /// stayed full because the named cursor `cursor` did not move. A named
    /// cursor is durable: it gates publishers until a subscriber resumes it
    /// or it is removed ([`Log::remove_cursor`](crate::Log::remove_cursor),
    /// `shmq cursor rm`), also after its subscriber died.
    GatedBy {
        /// The cursor's name.
        cursor: String,
        /// The live process whose subscriber holds it, if any.
        owner: Option<u32>,
        /// The process whose subscriber died while holding it, if any.
        dead_owner: Option<u32>,
    },
    /// Single-producer queue or single-publisher log: another live handle
    /// holds the role. `pid` is the holder's process id: this process's own
    /// when another handle, guard or call of this process holds it, or 0 when
    /// this handle has no process-table entry.
    RoleTaken {
        /// `"producer"` (queue) or `"publisher"` (log).
        role: &'static str,
        /// The holder's process id.
        pid: u32,
    },
    /// The segment's process table is full of live entries (every one of
    /// its 256 entries is a live handle or a thread lane), so this thread
    /// cannot announce a claim; nothing was done. Drop idle handles, or use
    /// fewer threads per handle.
    Busy,
    /// Shared memory holds an impossible value (another process wrote
    /// garbage), or every slot of a log is held by a publisher that stopped
    /// in the middle of a write.
    Corrupt {
        /// Which check failed.
        detail: String,
    },
}

/// Why no message was dequeued from a queue or received from a log.
///
/// One type for both; the docs of each variant say which side returns it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    /// No message is ready (only from the `_try` calls).
    Empty,
    /// The queue is closed and drained, or the log is closed and this
    /// subscriber has read everything published.
    Closed,
    /// The timeout or deadline passed with no message.
    Timeout,
    /// The next message is longer than the buffer; it stays unread (a
    /// queue keeps it, a subscriber stays on it).
    BufferTooSmall {
        /// The length of the waiting message.
        needed: usize,
    },
    /// Log only: the subscriber fell a full ring behind, and this many
    /// messages were overwritten before it read them. It now continues from
    /// the oldest message still present; call receive again.
    Lagged(u64),
    /// Single-consumer queue: another live handle holds the consumer role
    /// (`pid` as in [`SendError::RoleTaken`]).
    RoleTaken {
        /// `"consumer"`.
        role: &'static str,
        /// The holder's process id.
        pid: u32,
    },
    /// Queue only: the segment's process table is full of live entries
    /// (every one of its 256 entries is a live handle or a thread lane), so
    /// this thread cannot announce a claim; nothing was done. Drop idle
    /// handles, or use fewer threads per handle.
    Busy,
    /// Shared memory holds an impossible value (another process wrote
    /// garbage); a log subscriber moved past the bad position.
    Corrupt {
        /// Which check failed.
        detail: String,
    },
}

const BUSY: &str = "the segment's process table is full of live handles and thread lanes; \
                    drop idle handles or use fewer threads";

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full => f.write_str(
                "full: every slot holds a message a reader still needs (a queue's consumers, \
                 or a reliable log's slowest cursor); retry, block, or let the reader catch up",
            ),
            SendError::Closed => f.write_str("closed: no more messages are accepted"),
            SendError::TooLarge { len, max } => write!(
                f,
                "message of {len} bytes exceeds the slot size of {max} bytes"
            ),
            SendError::Timeout => f.write_str("timed out waiting for a free slot"),
            SendError::GatedBy {
                cursor,
                owner,
                dead_owner,
            } => {
                write!(
                    f,
                    "timed out: the log is full, gated by named cursor {cursor:?}"
                )?;
                match (owner, dead_owner) {
                    (Some(pid), _) => {
                        write!(f, ", held by live process {pid}, which is not reading")
                    }
                    (None, Some(pid)) => write!(
                        f,
                        ", whose subscriber (process {pid}) died; resume it or remove it \
                         (shmq cursor rm)"
                    ),
                    (None, None) => write!(
                        f,
                        " that no subscriber holds; resume it or remove it (shmq cursor rm)"
                    ),
                }
            }
            SendError::NotConnected => f.write_str(
                "nobody is subscribed: a reliable log with no registered cursor accepts no \
                 message, as nobody would read it; subscribe first, or declare a durable \
                 cursor when creating the log",
            ),
            SendError::RoleTaken { role, pid } => role_taken(f, role, *pid),
            SendError::Busy => f.write_str(BUSY),
            SendError::Corrupt { detail } => write!(f, "corrupt segment: {detail}"),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("no message ready"),
            RecvError::Closed => f.write_str("closed, and every message was read"),
            RecvError::Timeout => f.write_str("timed out waiting for a message"),
            RecvError::BufferTooSmall { needed } => write!(
                f,
                "buffer too small: the next message needs {needed} bytes (it stays unread)"
            ),
            RecvError::Lagged(n) => write!(
                f,
                "subscriber fell behind and lost {n} messages; it continues from the oldest \
                 one left"
            ),
            RecvError::RoleTaken { role, pid } => role_taken(f, role, *pid),
            RecvError::Busy => f.write_str(BUSY),
            RecvError::Corrupt { detail } => write!(f, "corrupt segment: {detail}"),
        }
    }
}

impl std::error::Error for SendError {}
impl std::error::Error for RecvError {}

impl From<SendError> for Error {
    fn from(e: SendError) -> Error {
        Error::Send(e)
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Error {
        Error::Recv(e)
    }
}

impl From<crate::CursorError> for Error {
    fn from(e: crate::CursorError) -> Error {
        Error::Cursor(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn send_recv_and_cursor_errors_convert_into_error_transparently() {
        let send = Error::from(SendError::Full);
        assert!(matches!(send, Error::Send(SendError::Full)));
        assert_eq!(send.to_string(), SendError::Full.to_string());
        let recv = Error::from(RecvError::Lagged(3));
        assert!(matches!(recv, Error::Recv(RecvError::Lagged(3))));
        assert!(recv.to_string().contains("lost 3 messages"));
        let cursor = Error::from(crate::CursorError::NotNamed);
        assert!(matches!(
            cursor,
            Error::Cursor(crate::CursorError::NotNamed)
        ));
        // Transparent: the wrapped error is not repeated as the source.
        assert!(send.source().is_none());
    }

    #[test]
    fn an_os_error_is_the_source_of_io() {
        let e = Error::from_os(
            "mapping",
            "posix:x",
            io::Error::from_raw_os_error(libc::ENOMEM),
        );
        let source = e.source().expect("Io carries its OS error");
        assert_eq!(
            source
                .downcast_ref::<io::Error>()
                .and_then(|e| e.raw_os_error()),
            Some(libc::ENOMEM)
        );
        assert!(e.to_string().starts_with("mapping posix:x: "));
    }

    #[test]
    fn every_role_taken_names_its_role() {
        let pid = 1;
        let texts = [
            SendError::RoleTaken {
                role: "producer",
                pid,
            }
            .to_string(),
            SendError::RoleTaken {
                role: "publisher",
                pid,
            }
            .to_string(),
            RecvError::RoleTaken {
                role: "consumer",
                pid,
            }
            .to_string(),
            Error::RoleTaken {
                role: "consumer",
                pid,
            }
            .to_string(),
        ];
        for (text, role) in texts
            .iter()
            .zip(["producer", "publisher", "consumer", "consumer"])
        {
            assert!(text.contains(&format!("holds the {role} role")), "{text}");
        }
    }
}
