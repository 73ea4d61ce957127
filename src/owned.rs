//! [`Owned`]: a handle that removes its segment's name when it drops, in
//! the process that created the segment and only there.
//!
//! A forked child inherits a copy of its parent's `Owned` handle; dropping
//! that copy (or the child exiting through Rust destructors) must not
//! remove a queue the parent still serves, so the handle remembers the fork
//! epoch of the process that made it (see `crate::procs::fork_epoch`) and
//! removes nothing in another.

use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::{procs, Error, Target};

/// A queue, log or role handle that owns its segment: when it drops, in the
/// process that created it, the segment's name is removed (as
/// [`Target::unlink`]) after which no new process can open it; handles
/// already open keep working until they drop.
///
/// Made by [`Queue::create_owned`](crate::Queue::create_owned) and
/// [`Log::create_owned`](crate::Log::create_owned). Dereferences to the
/// handle, so every call of the queue or log is available on it. Removal
/// is idempotent: a segment someone already removed is no error (there is
/// nothing to report from a drop anyway), and [`Owned::into_inner`] gives
/// up ownership and keeps the segment.
///
/// Only the creating process removes: a forked child's copy of the handle
/// removes nothing when it drops.
///
/// # Examples
/// ```
/// use shmq::{Queue, QueueConfig, Target, Error};
/// let target = Target::Posix(format!("shmq-doc-owned-{}", std::process::id()));
/// {
///     let q = Queue::create_owned(&target, &QueueConfig::new(64, 8))?;
///     q.enqueue_try(b"hello")?; // a Queue's calls, through Deref
///     let other = Queue::open(&target)?; // others open it meanwhile
///     assert_eq!(other.len(), 1);
/// } // both dropped: the name is gone
/// assert!(matches!(Queue::open(&target), Err(Error::NotFound { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Owned<T> {
    inner: Option<T>,
    target: Option<Target>,
    /// The fork epoch of the creating process.
    epoch: u32,
}

impl<T> Owned<T> {
    /// Takes ownership of the segment at `target`, which `inner` is a handle
    /// of (`None`: a heap queue, nothing to remove).
    pub(crate) fn new(inner: T, target: Option<Target>) -> Owned<T> {
        Owned {
            inner: Some(inner),
            target,
            epoch: procs::fork_epoch(),
        }
    }

    /// The target this handle removes when it drops (`None` for a heap
    /// queue or log, or after [`Owned::into_inner`]).
    pub fn owned_target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// Gives up ownership: returns the handle and keeps the segment.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig, Target};
    /// let target = Target::Posix(format!("shmq-doc-keep-{}", std::process::id()));
    /// let q = Queue::create_owned(&target, &QueueConfig::new(64, 8))?.into_inner();
    /// drop(q);
    /// assert!(Queue::open(&target).is_ok()); // kept
    /// target.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_inner(mut self) -> T {
        self.target = None;
        self.inner.take().expect("present until drop")
    }

    /// Turns the handle into another that owns the same segment, e.g. a
    /// queue into its [`Producer`](crate::Producer) with
    /// [`Queue::into_producer`](crate::Queue::into_producer). If `f` fails,
    /// the handle it consumed is gone, and so is the segment: it is removed
    /// here, as when an `Owned` drops.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig, Target};
    /// let target = Target::Posix(format!("shmq-doc-map-{}", std::process::id()));
    /// let config = QueueConfig::new(64, 8).spsc(true);
    /// let mut producer = Queue::create_owned(&target, &config)?.map(Queue::into_producer)?;
    /// producer.enqueue_try(b"tick")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map<U, E>(mut self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Owned<U>, E> {
        let inner = self.inner.take().expect("present until drop");
        let target = self.target.take();
        let epoch = self.epoch;
        let owned = |inner| Owned {
            inner: Some(inner),
            target: target.clone(),
            epoch,
        };
        match f(inner) {
            Ok(u) => Ok(owned(u)),
            Err(e) => {
                drop(Owned::<()> {
                    inner: None,
                    target: target.clone(),
                    epoch,
                });
                Err(e)
            }
        }
    }

    /// Removes the segment's name now, reporting what went wrong (a drop
    /// cannot); the handle keeps working, and its drop removes nothing more.
    /// Nothing at the target any more is no error.
    pub fn remove(&mut self) -> Result<(), Error> {
        match self.target.take() {
            Some(t) => unlink_quietly_missing(&t),
            None => Ok(()),
        }
    }
}

/// [`Target::unlink`], where a name already gone counts as removed.
fn unlink_quietly_missing(target: &Target) -> Result<(), Error> {
    match target.unlink() {
        Err(Error::NotFound { .. }) => Ok(()),
        other => other,
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            if self.epoch == procs::fork_epoch() {
                // Errors have nowhere to go from a drop; `remove` reports them.
                let _ = unlink_quietly_missing(&target);
            }
        }
        // Then `inner` drops and detaches.
    }
}

impl<T> Deref for Owned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.inner.as_ref().expect("present until drop")
    }
}

impl<T> DerefMut for Owned<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect("present until drop")
    }
}

impl<T: fmt::Debug> fmt::Debug for Owned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Owned")
            .field("inner", &self.inner)
            .field("target", &self.target)
            .finish()
    }
}
