//! The in-process source: a bounded channel of items, a mutex-guarded
//! deque with two condition variables (items may be of any type, so the
//! byte-slot work queue cannot carry them). The batcher takes every waiting
//! item at once (a swap of deques under one lock), and each side signals
//! the other only when it is known to wait, so a busy channel makes no
//! syscall per item.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The channel shared by the batcher and its senders.
pub(crate) struct Chan<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item arrives or the channel closes.
    not_empty: Condvar,
    /// Signalled when an item leaves or the channel closes.
    not_full: Condvar,
    /// Most items waiting at once (at least 1).
    cap: usize,
}

struct State<T> {
    items: VecDeque<T>,
    /// No more items are accepted: every sender is gone, one called
    /// `close`, or the batcher is gone.
    closed: bool,
    /// Live [`Sender`]s; the channel closes when it drops to 0.
    senders: usize,
    /// Whether the batcher waits on `not_empty`.
    taker_waits: bool,
    /// Senders waiting on `not_full`.
    putters_wait: usize,
}

impl<T> Chan<T> {
    pub(crate) fn new(cap: usize) -> Arc<Chan<T>> {
        Arc::new(Chan {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(cap.min(4096)),
                closed: false,
                senders: 1,
                taker_waits: false,
                putters_wait: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            cap: cap.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic in a hook cannot leave the deque half-changed: recover.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the channel and wakes everyone waiting on it.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Moves every waiting item into `into` (which must be empty), waiting
    /// until `deadline` for one: `Ok(true)` when it moved some, `Ok(false)`
    /// when the deadline passed, `Err(())` when closed and empty.
    pub(crate) fn take_all(&self, into: &mut VecDeque<T>, deadline: Instant) -> Result<bool, ()> {
        debug_assert!(into.is_empty());
        let mut st = self.lock();
        loop {
            if !st.items.is_empty() {
                std::mem::swap(&mut st.items, into);
                let wake = st.putters_wait > 0;
                drop(st);
                if wake {
                    self.not_full.notify_all();
                }
                return Ok(true);
            }
            if st.closed {
                return Err(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            st.taker_waits = true;
            st = self
                .not_empty
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.taker_waits = false;
        }
    }

    /// Adds `item`, waiting while full until `deadline` (`None`: no limit;
    /// `Some(past)`: never waits).
    fn put(&self, item: T, deadline: Option<Instant>) -> Result<(), AddError<T>> {
        let mut st = self.lock();
        loop {
            if st.closed {
                return Err(AddError::Closed(item));
            }
            if st.items.len() < self.cap {
                st.items.push_back(item);
                let wake = st.taker_waits;
                drop(st);
                if wake {
                    self.not_empty.notify_one();
                }
                return Ok(());
            }
            st.putters_wait += 1;
            st = match deadline {
                None => self.not_full.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        st.putters_wait -= 1;
                        return Err(AddError::Timeout(item));
                    }
                    self.not_full
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            st.putters_wait -= 1;
        }
    }
}

/// Why [`Sender::add`] did not add an item; the item comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddError<T> {
    /// The channel is full (only from [`Sender::try_add`]).
    Full(T),
    /// The timeout passed while the channel stayed full.
    Timeout(T),
    /// The batcher takes no more items ([`Sender::close`] was called, or
    /// the batcher is gone).
    Closed(T),
}

impl<T> AddError<T> {
    /// The item that was not added.
    pub fn into_inner(self) -> T {
        match self {
            AddError::Full(t) | AddError::Timeout(t) | AddError::Closed(t) => t,
        }
    }
}

impl<T> fmt::Display for AddError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddError::Full(_) => "the batcher's channel is full",
            AddError::Timeout(_) => "timed out waiting for room in the batcher's channel",
            AddError::Closed(_) => "the batcher takes no more items",
        })
    }
}

impl<T: fmt::Debug> std::error::Error for AddError<T> {}

/// Adds items to an in-process [`Batcher`](super::Batcher) (see
/// [`Batcher::channel`](super::Batcher::channel)). Clone it for each
/// producing thread; the batcher's run ends when every sender is dropped
/// or one calls [`Sender::close`].
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    pub(crate) fn new(chan: Arc<Chan<T>>) -> Sender<T> {
        Sender { chan }
    }

    /// Adds `item`, waiting while the channel is full (backpressure).
    ///
    /// # Errors
    /// [`AddError::Closed`] once closed; the item comes back.
    pub fn add(&self, item: T) -> Result<(), AddError<T>> {
        self.chan.put(item, None)
    }

    /// Adds `item`, waiting at most `timeout` while the channel is full.
    ///
    /// # Examples
    /// ```
    /// use shmq::batcher::{AddError, BatchConfig, Batcher};
    /// use std::time::Duration;
    /// let config = BatchConfig::new(|_: &[u8]| Ok::<(), std::io::Error>(())).channel_size(1);
    /// let (batcher, sender) = Batcher::channel(config);
    /// sender.add(1).unwrap();
    /// let again = sender.add_timeout(2, Duration::from_millis(1));
    /// assert_eq!(again, Err(AddError::Timeout(2))); // nobody runs the batcher
    /// # drop(batcher);
    /// ```
    pub fn add_timeout(&self, item: T, timeout: Duration) -> Result<(), AddError<T>> {
        let deadline = Instant::now() + timeout;
        self.chan.put(item, Some(deadline))
    }

    /// Adds `item` if there is room now ([`AddError::Full`] otherwise).
    pub fn try_add(&self, item: T) -> Result<(), AddError<T>> {
        match self.chan.put(item, Some(Instant::now())) {
            Err(AddError::Timeout(t)) => Err(AddError::Full(t)),
            other => other,
        }
    }

    /// Closes the channel for every sender: later adds fail with
    /// [`AddError::Closed`]; the batcher takes what was added, flushes and
    /// ends its run. Idempotent.
    pub fn close(&self) {
        self.chan.close();
    }

    /// Items added and not yet taken by the batcher (the seed's
    /// `ItemsInChannel`). A snapshot, for monitoring.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether no item waits for the batcher.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.lock().senders += 1;
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.chan.lock();
        st.senders -= 1;
        if st.senders == 0 {
            st.closed = true;
            drop(st);
            self.chan.not_empty.notify_all();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("waiting", &self.len())
            .finish()
    }
}
