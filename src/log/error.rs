//! The error of the log's named-cursor table. Publishing and receiving
//! share [`SendError`](crate::SendError) and [`RecvError`](crate::RecvError)
//! with the queue (`src/error.rs`).

use std::fmt;

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

impl std::error::Error for CursorError {}
