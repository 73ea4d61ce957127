//! # shmq
//!
//! A cross-process shared-memory message queue. Processes in Rust, C and Go
//! attach to one queue by SysV key, POSIX name or file path and pass messages
//! through shared memory, without a broker and without a syscall on the fast
//! path.
//!
//! - [`Queue`]: the work queue. Many producers, many consumers, each message
//!   delivered to exactly one consumer, lock-free, messages of 0 to
//!   `slot_size` bytes.
//! - [`Target`]: where a queue lives: [`Target::SysV`], [`Target::Posix`] or
//!   [`Target::File`].
//!
//! ```
//! use shmq::{Queue, QueueConfig, Target};
//! let target = Target::Posix(format!("shmq-doc-lib-{}", std::process::id()));
//! let q = Queue::create(&target, &QueueConfig::new(128, 1024))?;
//! q.enqueue_try(b"tick")?;
//! let mut buf = [0u8; 128];
//! let n = q.dequeue_try(&mut buf)?;
//! assert_eq!(&buf[..n], b"tick");
//! target.unlink()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[macro_use]
pub mod failpoint;
#[cfg(feature = "async")]
pub mod asyncio;
pub mod batcher;
mod error;
pub mod inspect;
pub mod layout;
pub mod liveness;
pub mod log;
mod owned;
mod procs;
mod queue;
mod region;
pub mod segment;
mod sync;
mod wait;

pub use error::{Error, RecvError, SendError};
pub use liveness::Attached;
pub use log::{
    CursorError, CursorInfo, Log, LogConfig, LogMode, LogStats, Publisher, Start, Subscriber,
};
pub use owned::Owned;
pub use queue::{
    ConsumeGuard, Consumer, Producer, Queue, QueueConfig, QueueStats, ReserveGuard, StuckClaim,
};
pub use segment::{find_free_key, Segment, Target};
pub use wait::WaitStrategy;
