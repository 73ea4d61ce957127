//! Errors of the fan-out log: one enum per operation, each variant saying
//! what happened and, in its `Display`, what to do.

use std::fmt;

/// Why a message was not published.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// Reliable mode only: the slowest registered cursor is a full ring
    /// behind; nothing was written (only from [`Log::publish`](crate::Log::publish)).
    Full,
    /// The log was closed; no more messages are accepted.
    Closed,
    /// The message is longer than the slot size; nothing was written.
    TooLarge {
        /// The message's length.
        len: usize,
        /// The log's slot size.
        max: usize,
    },
    /// Reliable mode only: the timeout or deadline passed while the log stayed full.
    Timeout,
    /// Reliable mode only: no cursor is registered (no named cursor, no
    /// live subscriber), so nobody would ever read the message; nothing was
    /// written (Aeron's NOT_CONNECTED). Subscribe first, or declare durable
    /// cursors when the log is created
    /// ([`LogConfig::durable_cursor`](crate::LogConfig::durable_cursor)),
    /// which gate it from the first publish. The blocking publishes wait
    /// for a cursor to appear and give this when their deadline passes
    /// with nobody registered.
    NotConnected,
    /// Reliable mode only: the timeout or deadline passed while the log
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
    /// The segment's process table is full of live entries (every one of
    /// its 256 entries is a live handle or a thread lane), so this thread
    /// cannot announce a claim; nothing was done. Drop idle handles, or use
    /// fewer threads per handle.
    Busy,
    /// Single-publisher log: another live publisher holds the role (its
    /// pid; this process's own pid when the role is lent to a
    /// [`Publisher`](crate::Publisher) of the same mapping, or 0 when this
    /// handle has no process-table entry). Nothing was written.
    RoleTaken {
        /// The holder's process id.
        pid: u32,
    },
    /// Shared memory holds an impossible value, or every slot is held by a
    /// publisher that stopped in the middle of a write.
    Corrupt {
        /// Which check failed.
        detail: String,
    },
}

/// Why a subscriber received no message.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    /// No new message yet (only from [`Subscriber::recv_try`](crate::Subscriber::recv_try)).
    Empty,
    /// The subscriber fell a full ring behind: this many messages were
    /// overwritten before it read them. It now continues from the oldest
    /// message still present; call receive again.
    Lagged(u64),
    /// The timeout or deadline passed with no new message.
    Timeout,
    /// The next message is longer than the buffer; the subscriber stays on it.
    BufferTooSmall {
        /// The length of the waiting message.
        needed: usize,
    },
    /// The log is closed and this subscriber has read everything published.
    Closed,
    /// Shared memory holds an impossible value (another process wrote
    /// garbage); the subscriber moved past the bad position.
    Corrupt {
        /// Which check failed.
        detail: String,
    },
}

/// Why an operation on the named-cursor table failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorError {
    /// No cursor has this name.
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// A cursor with this name exists already.
    AlreadyExists {
        /// The name asked for.
        name: String,
    },
    /// Every entry of the cursor table is taken; its size is fixed at creation.
    TableFull {
        /// Number of entries in the table.
        capacity: usize,
    },
    /// The cursor is attached to a live subscriber (in this or another process).
    InUse {
        /// The name of the cursor.
        name: String,
        /// The process holding it.
        pid: u32,
    },
    /// The name is empty, longer than [`MAX_CURSOR_NAME`](crate::log::MAX_CURSOR_NAME)
    /// bytes, or contains a NUL byte.
    InvalidName {
        /// Why.
        detail: String,
    },
    /// Commit and rollback need a named cursor; this subscriber has none.
    NotNamed,
    /// Another live process kept the cursor table locked for too long.
    Busy {
        /// The process holding the table's lock.
        pid: u32,
    },
    /// The cursor table holds an impossible value.
    Corrupt {
        /// Which check failed.
        detail: String,
    },
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Full => f.write_str(
                "log is full: the slowest cursor is a ring behind (reliable mode); retry, \
                 use publish_block, or have that subscriber commit",
            ),
            PublishError::Closed => f.write_str("log is closed"),
            PublishError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds the slot size of {max} bytes"
                )
            }
            PublishError::GatedBy {
                cursor,
                owner,
                dead_owner,
            } => {
                write!(f, "timed out: the log is full, gated by named cursor {cursor:?}")?;
                match (owner, dead_owner) {
                    (Some(pid), _) => write!(f, ", held by live process {pid}, which is not reading"),
                    (None, Some(pid)) => write!(
                        f,
                        ", whose subscriber (process {pid}) died; resume it or remove it (shmq cursor rm)"
                    ),
                    (None, None) => write!(
                        f,
                        " that no subscriber holds; resume it or remove it (shmq cursor rm)"
                    ),
                }
            }
            PublishError::Timeout => {
                f.write_str("timed out waiting for the slowest cursor to make room")
            }
            PublishError::NotConnected => f.write_str(
                "nobody is subscribed: a reliable log with no registered cursor accepts no \
                 message, as nobody would read it; subscribe first, or declare a durable \
                 cursor when creating the log",
            ),
            PublishError::RoleTaken { pid } => crate::error::role_taken(f, "publisher", *pid),
            PublishError::Busy => f.write_str("the segment's process table is full of live handles and thread lanes; drop idle handles or use fewer threads"),
            PublishError::Corrupt { detail } => write!(f, "corrupt log: {detail}"),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("no new message"),
            RecvError::Lagged(n) => write!(
                f,
                "subscriber fell behind and lost {n} messages; it continues from the oldest one left"
            ),
            RecvError::Timeout => f.write_str("timed out waiting for a message"),
            RecvError::BufferTooSmall { needed } => write!(
                f,
                "buffer too small: the next message needs {needed} bytes (the subscriber stays on it)"
            ),
            RecvError::Closed => f.write_str("log is closed and fully read"),
            RecvError::Corrupt { detail } => write!(f, "corrupt log: {detail}"),
        }
    }
}

impl fmt::Display for CursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CursorError::NotFound { name } => write!(f, "no cursor named {name:?}"),
            CursorError::AlreadyExists { name } => {
                write!(
                    f,
                    "a cursor named {name:?} exists already; subscribe to it or remove it"
                )
            }
            CursorError::TableFull { capacity } => write!(
                f,
                "cursor table full: all {capacity} entries are taken; remove an unused cursor, \
                 or create the log with room for more cursors (the cursor count given at \
                 creation: LogConfig::cursors in Rust, the cursors argument of \
                 shmq_log_create in C, WithCursors in Go, --cursors of shmq create)"
            ),
            CursorError::InUse { name, pid } => write!(
                f,
                "cursor {name:?} is attached to a live subscriber in process {pid}; \
                 drop that subscriber first"
            ),
            CursorError::InvalidName { detail } => write!(f, "invalid cursor name: {detail}"),
            CursorError::NotNamed => {
                f.write_str("commit and rollback need a subscriber on a named cursor")
            }
            CursorError::Busy { pid } => write!(
                f,
                "the cursor table stayed locked by live process {pid}; retry later"
            ),
            CursorError::Corrupt { detail } => write!(f, "corrupt cursor table: {detail}"),
        }
    }
}

impl std::error::Error for PublishError {}
impl std::error::Error for RecvError {}
impl std::error::Error for CursorError {}
