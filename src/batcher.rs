//! The batching consumer: drains a work queue, a log subscription or the
//! threads of this process into batches, and hands each batch to a flush
//! function (SPEC §6).
//!
//! A [`Batcher`] runs one loop ([`Batcher::run`]) that owns the batch. It
//! takes items one at a time from its source and, for each item, in this
//! order (the rules of CloudStuffTech go-utils' `buffer`, which Go's
//! `shmq.dev/shmq/buffer` reproduces):
//!
//! 1. *will overflow*: when adding the item would breach a hard limit
//!    ([`BatchConfig::max_bytes`], [`BatchConfig::will_overflow`]), the
//!    current batch is flushed first;
//! 2. *can add*: an item refused by [`BatchConfig::can_add`] (or larger than
//!    `max_bytes` on its own) goes to [`BatchConfig::on_reject`] instead;
//! 3. *should flush*: after the item joins the batch, a flush is due when
//!    [`BatchConfig::should_flush`] says so (default: `len >= capacity`).
//!
//! A flush is also due when [`BatchConfig::flush_interval`] passes without
//! one (default 5 s), and a last one when the source ends: the queue or
//! log is closed and drained, every [`Sender`] of an in-process batcher is
//! gone or closed, or a [`Stopper`] asked. A batch whose flush fails goes to
//! [`BatchConfig::on_flush_error`]; it is never retried.
//!
//! # Sources and delivery
//!
//! - [`Batcher::channel`]: items added by threads of this process through
//!   [`Sender`]s (bounded: `add` blocks while the channel is full).
//! - [`Batcher::from_queue`]: messages dequeued from a [`Queue`] and decoded.
//!   A dequeue is final: the messages of a batch whose flush fails are
//!   handed to `on_flush_error`, and those of a batcher that dies are lost.
//! - [`Batcher::from_log`]: messages received by a [`Subscriber`]. On a named
//!   cursor the cursor is committed only after a successful flush, once no
//!   item it has read is still unflushed: after a crash, or a batcher dropped
//!   without its final flush, the next batcher on that cursor reads the
//!   uncommitted messages again (at-least-once). A failed flush therefore
//!   ends [`Batcher::run`] with [`BatchError::FlushFailed`] (after
//!   `on_flush_error`), leaving the cursor where the last successful flush
//!   put it; going on would commit past the failed batch.
//!
//! Every source sits behind one internal trait (`Source`, in
//! `src/batcher/source.rs`): switching the queue and log sources to batch
//! receives is done there alone.
//!
//! # Examples
//! ```
//! use shmq::batcher::{BatchConfig, Batcher};
//! use std::sync::{Arc, Mutex};
//!
//! let flushed = Arc::new(Mutex::new(Vec::new()));
//! let sink = flushed.clone();
//! let config = BatchConfig::new(move |batch: &[u32]| {
//!     sink.lock().unwrap().push(batch.to_vec());
//!     Ok::<(), std::io::Error>(())
//! })
//! .capacity(3);
//! let (mut batcher, sender) = Batcher::channel(config);
//! let producer = std::thread::spawn(move || {
//!     for i in 0..7 {
//!         sender.add(i).unwrap();
//!     }
//!     // dropping the last sender ends the batcher's run
//! });
//! batcher.run().unwrap();
//! producer.join().unwrap();
//! assert_eq!(*flushed.lock().unwrap(), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
//! ```

mod channel;
mod source;

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{CursorError, Queue, RecvError, Subscriber};
use source::{ChannelSource, LogSource, Pulled, QueueSource, Source};

pub use channel::{AddError, Sender};

/// The error a flush, a decoder or a hook may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Hook<A> = Box<dyn FnMut(A) + Send>;
type FlushFn<T> = Box<dyn FnMut(&[T]) -> Result<(), BoxError> + Send>;
type SizeFn<T> = Box<dyn Fn(&T) -> usize + Send>;
type BatchTest<T> = Box<dyn FnMut(&[T]) -> bool + Send>;
type BatchPredicate<T> = Box<dyn FnMut(&[T], &T) -> bool + Send>;
type ErrorHook<S> = Box<dyn FnMut(BoxError, &S) + Send>;

/// How a [`Batcher`] forms and flushes batches. Only the flush function is
/// required ([`BatchConfig::new`]); every other setting has a default.
///
/// # Examples
/// ```
/// use shmq::batcher::BatchConfig;
/// use std::time::Duration;
/// let config = BatchConfig::new(|batch: &[Vec<u8>]| {
///     println!("sending {} records", batch.len());
///     Ok::<(), std::io::Error>(())
/// })
/// .capacity(500)
/// .max_bytes(1 << 20, |record: &Vec<u8>| record.len())
/// .flush_interval(Duration::from_secs(2))
/// .on_flush_error(|err, batch| eprintln!("lost {} records: {err}", batch.len()));
/// # drop(config);
/// ```
pub struct BatchConfig<T> {
    flush: FlushFn<T>,
    capacity: usize,
    channel_size: Option<usize>,
    flush_interval: Duration,
    /// The byte limit and the size of an item.
    max_bytes: Option<(usize, SizeFn<T>)>,
    will_overflow: Option<BatchPredicate<T>>,
    can_add: Option<BatchPredicate<T>>,
    on_reject: Option<Hook<T>>,
    should_flush: Option<BatchTest<T>>,
    on_flush_error: Option<ErrorHook<[T]>>,
    on_decode_error: Option<ErrorHook<[u8]>>,
}

impl<T> BatchConfig<T> {
    /// A configuration around `flush`, which receives each batch. The batch
    /// is borrowed: it cannot be kept after `flush` returns (its storage is
    /// reused; clone what you keep). An error sends the batch to
    /// [`Self::on_flush_error`].
    pub fn new<F, E>(mut flush: F) -> BatchConfig<T>
    where
        F: FnMut(&[T]) -> Result<(), E> + Send + 'static,
        E: Into<BoxError>,
    {
        BatchConfig {
            flush: Box::new(move |batch| flush(batch).map_err(Into::into)),
            capacity: 100,
            channel_size: None,
            flush_interval: Duration::from_secs(5),
            max_bytes: None,
            will_overflow: None,
            can_add: None,
            on_reject: None,
            should_flush: None,
            on_flush_error: None,
            on_decode_error: None,
        }
    }

    /// The target batch size: the default [`Self::should_flush`] flushes at
    /// `len >= capacity`. Default 100; at least 1.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// In-process batchers: how many items [`Sender::add`] may queue ahead
    /// of the batcher before it blocks. Default `2 * capacity`. (The
    /// batcher takes waiting items in bulk, so up to twice this many may be
    /// accepted and not yet in a batch.)
    pub fn channel_size(mut self, size: usize) -> Self {
        self.channel_size = Some(size.max(1));
        self
    }

    /// The longest time a non-empty batch waits for a flush. Default 5 s.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval.max(Duration::from_micros(1));
        self
    }

    /// A byte limit per batch, with `size` giving an item's size: the batch
    /// is flushed before an item would take it past `limit`, and an item
    /// larger than `limit` on its own is rejected ([`Self::on_reject`]).
    ///
    /// # Examples
    /// ```
    /// use shmq::batcher::{BatchConfig, Batcher};
    /// use std::sync::{Arc, Mutex};
    /// let sizes = Arc::new(Mutex::new(Vec::new()));
    /// let sink = sizes.clone();
    /// let config = BatchConfig::new(move |batch: &[String]| {
    ///     sink.lock().unwrap().push(batch.iter().map(String::len).sum::<usize>());
    ///     Ok::<(), std::io::Error>(())
    /// })
    /// .max_bytes(10, |s: &String| s.len());
    /// let (mut batcher, sender) = Batcher::channel(config);
    /// for s in ["abcd", "efgh", "ijk", "lmnopq"] {
    ///     sender.add(s.to_string()).unwrap();
    /// }
    /// drop(sender);
    /// batcher.run().unwrap();
    /// assert_eq!(*sizes.lock().unwrap(), vec![8, 9]); // never above 10
    /// ```
    pub fn max_bytes(mut self, limit: usize, size: impl Fn(&T) -> usize + Send + 'static) -> Self {
        self.max_bytes = Some((limit, Box::new(size)));
        self
    }

    /// Asked before an item joins a non-empty batch: `true` flushes the
    /// batch first (a hard limit the item would breach). It sees the batch
    /// and the item. Default: never (besides [`Self::max_bytes`]).
    pub fn will_overflow(mut self, f: impl FnMut(&[T], &T) -> bool + Send + 'static) -> Self {
        self.will_overflow = Some(Box::new(f));
        self
    }

    /// Asked before an item joins the batch: `false` rejects it (it goes to
    /// [`Self::on_reject`]). Default: always `true`.
    pub fn can_add(mut self, f: impl FnMut(&[T], &T) -> bool + Send + 'static) -> Self {
        self.can_add = Some(Box::new(f));
        self
    }

    /// Receives each rejected item. Default: drop it.
    pub fn on_reject(mut self, f: impl FnMut(T) + Send + 'static) -> Self {
        self.on_reject = Some(Box::new(f));
        self
    }

    /// Asked after an item joins the batch: `true` flushes now. Default:
    /// `len >= capacity`.
    pub fn should_flush(mut self, f: impl FnMut(&[T]) -> bool + Send + 'static) -> Self {
        self.should_flush = Some(Box::new(f));
        self
    }

    /// Receives the error and the batch of each failed flush (the batcher
    /// gives the batch up: it is never retried). Default: drop both.
    pub fn on_flush_error(mut self, f: impl FnMut(BoxError, &[T]) + Send + 'static) -> Self {
        self.on_flush_error = Some(Box::new(f));
        self
    }

    /// Queue and log sources: receives the error and the bytes of each
    /// message the decoder refused (the message is skipped and counted in
    /// [`BatchStats::undecodable`]). Default: drop both.
    pub fn on_decode_error(mut self, f: impl FnMut(BoxError, &[u8]) + Send + 'static) -> Self {
        self.on_decode_error = Some(Box::new(f));
        self
    }
}

impl<T> fmt::Debug for BatchConfig<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchConfig")
            .field("capacity", &self.capacity)
            .field("channel_size", &self.channel_size)
            .field("flush_interval", &self.flush_interval)
            .field("max_bytes", &self.max_bytes.as_ref().map(|m| m.0))
            .finish_non_exhaustive()
    }
}

/// What a [`Batcher`] did so far. Every item taken from the source ends in
/// exactly one of `flushed`, `failed`, `rejected` or the current batch
/// (`taken == flushed + failed + rejected + pending`).
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Items taken from the source (after decoding).
    pub taken: u64,
    /// Items in batches flushed successfully.
    pub flushed: u64,
    /// Successful flushes.
    pub flushes: u64,
    /// Items in batches whose flush failed (given to `on_flush_error`).
    pub failed: u64,
    /// Items refused by `can_add` or `max_bytes` (given to `on_reject`).
    pub rejected: u64,
    /// Items in the batch now, not yet flushed.
    pub pending: u64,
    /// Messages the decoder refused (given to `on_decode_error`).
    pub undecodable: u64,
    /// Log messages overwritten before the batcher read them (overwrite mode).
    pub lost: u64,
    /// Commits of a named cursor.
    pub commits: u64,
}

/// Why [`Batcher::run`] stopped before its source ended.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// A flush failed on a log's named cursor: the batch went to
    /// `on_flush_error` and the cursor was not committed past it, so the
    /// next batcher on the cursor reads it again. Run a new batcher (after
    /// a pause, if the backend is down) to go on.
    FlushFailed {
        /// The flush function's error, as text.
        detail: String,
        /// Items in the failed batch.
        items: usize,
    },
    /// Dequeuing from the queue or receiving from the log failed.
    Recv(RecvError),
    /// Committing the named cursor failed.
    Cursor(CursorError),
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::FlushFailed { detail, items } => write!(
                f,
                "flush of {items} items failed ({detail}); the cursor was not committed past them"
            ),
            BatchError::Recv(_) => f.write_str("the batcher's source failed"),
            BatchError::Cursor(_) => f.write_str("committing the batcher's cursor failed"),
        }
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BatchError::FlushFailed { .. } => None,
            BatchError::Recv(e) => Some(e),
            BatchError::Cursor(e) => Some(e),
        }
    }
}

/// Ends a running [`Batcher`] from another thread: the batcher stops taking
/// items (an in-process batcher first takes every item already added),
/// flushes what it holds, commits, and `run` returns `Ok`.
#[derive(Clone)]
pub struct Stopper(Arc<dyn Fn() + Send + Sync>);

impl Stopper {
    /// Asks the batcher to stop. Idempotent.
    pub fn stop(&self) {
        (self.0)()
    }
}

impl fmt::Debug for Stopper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stopper")
    }
}

/// Drains a source into batches and flushes them: see the [module
/// docs](self).
///
/// Dropping a batcher before [`Batcher::run`] returns discards the batch it
/// holds (and, in-process, the items still waiting in its channel: senders
/// then get [`AddError::Closed`]). Items read from a log's named cursor are
/// not lost that way: they were never committed, so the next batcher on
/// the cursor reads them again.
pub struct Batcher<T> {
    config: BatchConfig<T>,
    source: Box<dyn Source<T>>,
    stopper: Stopper,
    batch: Vec<T>,
    /// Sum of the sizes of the batch's items (with `max_bytes`).
    bytes: usize,
    /// A flush succeeded since the source was last settled (committed).
    owed: bool,
    stats: BatchStats,
}

impl<T> fmt::Debug for Batcher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Batcher<T> {
    /// An in-process batcher and the first [`Sender`] that feeds it (clone
    /// it for more threads). The run ends once every sender is dropped or
    /// one calls [`Sender::close`]: the batcher takes every item added
    /// before, flushes and returns.
    pub fn channel(config: BatchConfig<T>) -> (Batcher<T>, Sender<T>) {
        let size = config.channel_size.unwrap_or(2 * config.capacity);
        let (source, sender) = ChannelSource::new(size);
        let stopper = Stopper(Arc::new(source.closer()));
        (
            Batcher::with_source(config, Box::new(source), stopper),
            sender,
        )
    }

    /// A batcher of the messages of `queue`, each turned into an item by
    /// `decode`. The run ends when the queue is closed and drained, or by
    /// a [`Stopper`] (messages not dequeued yet stay in the queue).
    ///
    /// # Examples
    /// ```
    /// use shmq::batcher::{BatchConfig, Batcher};
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(64, 16)).unwrap();
    /// for word in ["alpha", "beta", "gamma"] {
    ///     q.enqueue_try(word.as_bytes()).unwrap();
    /// }
    /// q.close(); // the batcher drains what is left, then ends
    /// let config = BatchConfig::new(|batch: &[String]| {
    ///     println!("{batch:?}");
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// let mut batcher = Batcher::from_queue(q, |m: &[u8]| String::from_utf8(m.to_vec()), config);
    /// batcher.run().unwrap();
    /// assert_eq!(batcher.stats().flushed, 3);
    /// ```
    pub fn from_queue<D, E>(queue: Queue, decode: D, config: BatchConfig<T>) -> Batcher<T>
    where
        D: FnMut(&[u8]) -> Result<T, E> + Send + 'static,
        E: Into<BoxError>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let source = QueueSource::new(queue, boxed(decode), stop.clone());
        Batcher::with_source(config, Box::new(source), flag_stopper(stop))
    }

    /// A batcher of the messages `subscriber` receives, each turned into an
    /// item by `decode`. On a named cursor ([`crate::Log::subscribe_named`])
    /// the cursor is committed after each successful flush (at-least-once;
    /// see the [module docs](self)). The run ends when the log is closed
    /// and read to its end, or by a [`Stopper`].
    ///
    /// In reliable mode, publishers wait for the commit: a batch larger
    /// than the log's capacity is flushed by the interval only.
    ///
    /// # Examples
    /// ```
    /// use shmq::batcher::{BatchConfig, Batcher};
    /// use shmq::{Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(64, 16)).unwrap();
    /// let sub = log.subscribe_named("archiver", Start::Oldest).unwrap();
    /// for word in ["alpha", "beta", "gamma"] {
    ///     log.publish(word.as_bytes()).unwrap();
    /// }
    /// log.close();
    /// let config = BatchConfig::new(|batch: &[Vec<u8>]| Ok::<(), std::io::Error>(()));
    /// let mut batcher = Batcher::from_log(sub, |m: &[u8]| Ok::<_, std::io::Error>(m.to_vec()), config);
    /// batcher.run().unwrap();
    /// drop(batcher);
    /// assert_eq!(log.cursor("archiver").unwrap().position, 3); // flushed, then committed
    /// ```
    pub fn from_log<D, E>(subscriber: Subscriber, decode: D, config: BatchConfig<T>) -> Batcher<T>
    where
        D: FnMut(&[u8]) -> Result<T, E> + Send + 'static,
        E: Into<BoxError>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let source = LogSource::new(subscriber, boxed(decode), stop.clone());
        Batcher::with_source(config, Box::new(source), flag_stopper(stop))
    }

    fn with_source(config: BatchConfig<T>, source: Box<dyn Source<T>>, stopper: Stopper) -> Self {
        Batcher {
            batch: Vec::with_capacity(config.capacity),
            config,
            source,
            stopper,
            bytes: 0,
            owed: false,
            stats: BatchStats::default(),
        }
    }
}

/// The decoder boxed, its error boxed.
fn boxed<T, D, E>(mut decode: D) -> source::Decode<T>
where
    D: FnMut(&[u8]) -> Result<T, E> + Send + 'static,
    E: Into<BoxError>,
{
    Box::new(move |m| decode(m).map_err(Into::into))
}

fn flag_stopper(stop: Arc<AtomicBool>) -> Stopper {
    Stopper(Arc::new(move || {
        // SYNC(stop): Release, pairs with the Acquire load in the sources'
        // `stopped` (a process-local flag, not shared memory).
        stop.store(true, std::sync::atomic::Ordering::Release)
    }))
}

impl<T> Batcher<T> {
    /// A handle that ends [`Self::run`] from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// What the batcher did so far.
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            pending: self.batch.len() as u64,
            ..self.stats.clone()
        }
    }

    /// Items waiting in the source: added and not taken (in-process), the
    /// queue's length, or the subscriber's lag. A snapshot, for monitoring.
    pub fn waiting(&self) -> usize {
        self.source.waiting()
    }

    /// Runs the batcher until its source ends (see the [module docs](self)),
    /// then flushes a last time, commits and returns `Ok`.
    ///
    /// # Errors
    /// [`BatchError::FlushFailed`] when a flush fails on a log's named
    /// cursor; the source's errors (the batch held then is not flushed).
    pub fn run(&mut self) -> Result<(), BatchError> {
        let interval = self.config.flush_interval;
        let mut due = Instant::now() + interval;
        loop {
            match self.source.next(due)? {
                Pulled::Item(item) => {
                    self.stats.taken += 1;
                    if self.add(item)? {
                        due = Instant::now() + interval;
                    } else if Instant::now() >= due {
                        self.flush()?;
                        due = Instant::now() + interval;
                    }
                }
                Pulled::Undecodable(err, bytes) => {
                    self.stats.undecodable += 1;
                    if let Some(f) = &mut self.config.on_decode_error {
                        f(err, &bytes);
                    }
                }
                Pulled::Lost(n) => self.stats.lost += n,
                Pulled::Idle => {
                    if Instant::now() >= due {
                        self.flush()?;
                        due = Instant::now() + interval;
                    }
                }
                Pulled::End => {
                    self.flush()?;
                    return self.settle();
                }
            }
            self.settle()?;
        }
    }

    /// Runs `item` through will-overflow, can-add and should-flush; says
    /// whether it flushed.
    fn add(&mut self, item: T) -> Result<bool, BatchError> {
        let c = &mut self.config;
        let size = c.max_bytes.as_ref().map_or(0, |(_, size)| size(&item));
        let over_bytes = c
            .max_bytes
            .as_ref()
            .is_some_and(|(limit, _)| self.bytes.saturating_add(size) > *limit);
        let mut flushed = false;
        if !self.batch.is_empty()
            && (over_bytes
                || c.will_overflow
                    .as_mut()
                    .is_some_and(|f| f(&self.batch, &item)))
        {
            self.flush()?;
            flushed = true;
        }
        let c = &mut self.config;
        let fits = c.max_bytes.as_ref().is_none_or(|(limit, _)| size <= *limit);
        if !fits || c.can_add.as_mut().is_some_and(|f| !f(&self.batch, &item)) {
            self.stats.rejected += 1;
            if let Some(f) = &mut c.on_reject {
                f(item);
            }
            return Ok(flushed);
        }
        self.batch.push(item);
        self.bytes += size;
        let due = match &mut self.config.should_flush {
            Some(f) => f(&self.batch),
            None => self.batch.len() >= self.config.capacity,
        };
        if due {
            self.flush()?;
            flushed = true;
        }
        Ok(flushed)
    }

    /// Hands a non-empty batch to the flush function (a failure to
    /// `on_flush_error`) and empties it.
    fn flush(&mut self) -> Result<(), BatchError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let items = self.batch.len();
        let result = (self.config.flush)(&self.batch);
        let failure = match result {
            Ok(()) => {
                self.stats.flushes += 1;
                self.stats.flushed += items as u64;
                self.owed = true;
                None
            }
            Err(err) => {
                self.stats.failed += items as u64;
                let detail = err.to_string();
                if let Some(f) = &mut self.config.on_flush_error {
                    f(err, &self.batch);
                }
                Some(detail)
            }
        };
        self.batch.clear();
        self.bytes = 0;
        match failure {
            Some(detail) if self.source.durable() => Err(BatchError::FlushFailed { detail, items }),
            _ => Ok(()),
        }
    }

    /// Commits what the flushes delivered, once no item taken from the
    /// source is still unflushed (the batch is empty).
    fn settle(&mut self) -> Result<(), BatchError> {
        if self.owed && self.batch.is_empty() {
            self.owed = false;
            if self.source.settle()? {
                self.stats.commits += 1;
            }
        }
        Ok(())
    }
}
