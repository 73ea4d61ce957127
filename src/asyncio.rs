//! The async API (feature `async`): futures that wait for a log message, a
//! queue message, or room in a full queue or gated log, without blocking a
//! thread of the executor and without polling.
//!
//! ```
//! # // The doc test drives the future with a tiny executor of its own: the
//! # // crate has no runtime dependency; tokio works the same way.
//! use shmq::{Log, LogConfig, Start};
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     use std::task::{Context, Poll, Wake};
//! #     struct T(std::thread::Thread);
//! #     impl Wake for T { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
//! #     let waker = std::sync::Arc::new(T(std::thread::current())).into();
//! #     let mut cx = Context::from_waker(&waker);
//! #     let mut f = std::pin::pin!(f);
//! #     loop {
//! #         if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
//! #         std::thread::park();
//! #     }
//! # }
//! let log = Log::in_process(&LogConfig::new(64, 16))?;
//! let mut sub = log.subscribe(Start::Latest)?;
//! let publisher = std::thread::spawn({
//!     let log = log.clone();
//!     move || {
//!         std::thread::sleep(std::time::Duration::from_millis(20));
//!         log.publish(b"tick").unwrap();
//!     }
//! });
//! // Waits (the task is parked, no thread spins) until the publish.
//! let mut buf = [0u8; 64];
//! let n = block_on(sub.recv_async(&mut buf))?;
//! assert_eq!(&buf[..n], b"tick");
//! publisher.join().unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The futures
//!
//! [`Subscriber::recv_async`] (and [`Subscriber::recv_vec_async`]),
//! [`Queue::dequeue_async`] / [`Consumer::dequeue_async`],
//! [`Queue::enqueue_async`] / [`Producer::enqueue_async`] and
//! [`Log::publish_async`] / [`Publisher::publish_async`]. Each poll makes
//! the operation's `_try` call. When that reports `Empty` (or `Full`), the
//! future announces itself as a sleeper on the segment exactly as a thread
//! blocked in the `_block` call does (the waiter bit on a slot's stamp; the
//! sleepers count of a single-producer queue or a single-publisher log,
//! with its barrier and re-check), hands the futex words that a waker will
//! change, with the values it saw, to this process's waiter thread, and
//! returns `Pending`. The publisher that changes one of those words sees a
//! sleeper and makes its wake syscall, as it would for a thread.
//!
//! # Cancellation
//!
//! Dropping a future at any point loses nothing: a message is taken only
//! by the `_try` call of a poll, which returns it from that same poll
//! (`Ready`), and a `Pending` future holds no message, only its place among
//! the sleepers, which its drop gives back (the count is decremented, the
//! registration removed). A `Ready` error such as `BufferTooSmall` leaves
//! the message where it was. So `tokio::select!` with a timeout is safe:
//! the next receive gets the message the timed-out one did not.
//!
//! A future leaked with `mem::forget` while pending is never dropped: its
//! registration stays with the waiter thread (harmless: the thread only
//! hands the word's address to the kernel) and, on a single-producer queue,
//! its sleeper stays counted, so the other side makes a spare wake syscall
//! per message until this handle's process exits and is reaped. Nothing is
//! lost or unsafe; it only costs syscalls.
//!
//! # The waiter thread
//!
//! One thread per process (started by the first wait; more only when over
//! 127 distinct words are waited on at once, or for pinned threads, see
//! below) sleeps in
//! `futex_waitv(2)` (Linux 5.16 or later) on every registered word, plus a
//! private word of its own that a new registration bumps so that it
//! re-arms. Registrations of many tasks on the same word (subscribers of
//! one single-publisher log, consumers of one queue) share one entry of the
//! wait. When the kernel wakes it, it wakes the tasks registered on the
//! word that was woken; when a word had already changed before it slept
//! (the kernel refuses the wait), it finds which one with a zero-timeout
//! `FUTEX_WAIT` on each. It reads no shared memory itself: only the kernel
//! compares the words, so a registration whose segment is gone (a leaked
//! future) costs a spurious wake, never a fault.
//!
//! A wake of a task therefore takes two hand-offs where a blocked thread
//! takes one: the publisher wakes the waiter thread, which calls the
//! task's waker, which wakes the runtime thread. A hand-off between two
//! threads on one CPU costs a context switch; one to another CPU that is
//! idle costs far more on a virtual machine (the README has figures). So
//! a task polled on a thread pinned to one CPU (a runtime thread pinned
//! with `core_affinity` or `taskset`) is served by a waiter thread pinned
//! to that same CPU: the second hand-off never leaves the CPU. Waiter
//! threads are kept per pinned CPU, and one set for unpinned threads; a
//! thread's pinning is read at its first wait and again when it is found
//! running on another CPU than the one it was pinned to.
//!
//! Each registration also carries a safety re-check: the future is woken
//! anyway after [`IDLE_RECHECK`] (1 s) when it waits for something idle,
//! so that a publisher that claimed a sequence number and died, or a
//! segment truncated under us, is noticed by the next `_try` (a blocked
//! thread checks every 50 to 100 ms). When what it waits for is in flight
//! (a claim made and not completed), the re-check is the blocking path's
//! 2 ms, since the claim's owner may have died mid-write. An idle task
//! therefore costs one poll per second and nothing in between.
//!
//! Limits and fallbacks, documented here because they are behaviour:
//!
//! - A `futex_waitv` call takes at most 128 words. A waiter thread keeps
//!   127 distinct words besides its own; a registration that does not fit
//!   starts another waiter thread (each one sleeps; none polls).
//! - Without `futex_waitv` (kernels before 5.16: `ENOSYS`), the waiter
//!   thread falls back to a timed poll: it sleeps on its own word at most
//!   [`FALLBACK_POLL`] (1 ms) at a time and probes the registered words
//!   after each sleep. Waits then cost a little CPU and up to 1 ms of
//!   latency.
//! - Without membarrier (see `crate::wait`) a sleeper of a single-producer
//!   queue or single-publisher log cannot trust its announcement: the
//!   re-check is then 1 ms, as for a blocked thread.
//! - `close()` wakes async waiters through the segment's `closed` word
//!   (and, for single-producer queues and single-publisher logs, through
//!   the wake word as before). A close by an older build of the library,
//!   which does not wake that word, is noticed at the next re-check.
//! - After `fork`, the child starts waiter threads of its own (the
//!   parent's do not exist in it). As with any lock, a fork while another
//!   thread registers a wait may leave the registry's lock held in the
//!   child: fork from a thread that is alone, or before the first wait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::sync::AtomicU32;
use crate::{Consumer, Log, Producer, Publisher, Queue, RecvError, SendError, Subscriber};

/// How long an async wait for something idle lasts at most before the
/// future re-checks (see the module doc).
pub const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// The waiter thread's sleep between probes when the kernel has no
/// `futex_waitv` (see the module doc).
pub const FALLBACK_POLL: Duration = Duration::from_millis(1);

/// One futex word to wait on, by address, and the value it held when the
/// wait was announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    addr: usize,
    expected: u32,
}

/// What an announced sleeper must undo when its wait ends (it was woken,
/// re-polled or dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Undo {
    /// Nothing: the waiter bit on a stamp is cleared by the next waker.
    Nothing,
    /// Take this handle out of a single-producer queue's sleepers count.
    Counted,
    /// Take one sleeper of `generation` out of a single-publisher log's
    /// count (if that generation is still current).
    Generation(u32),
}

/// An announced wait: the words a waker changes, how long until the future
/// re-checks anyway, and what to undo afterwards. Made by the engine's
/// `park` hooks (`Subscriber::park`, `Queue::park_consume`, ...).
#[derive(Debug)]
pub(crate) struct Park {
    words: [Word; 2],
    len: usize,
    recheck: Duration,
    pub(crate) undo: Undo,
}

impl Park {
    /// A wait on no word yet, re-checked after `recheck`.
    pub(crate) fn new(recheck: Duration) -> Park {
        Park {
            words: [Word {
                addr: 0,
                expected: 0,
            }; 2],
            len: 0,
            recheck,
            undo: Undo::Nothing,
        }
    }

    /// Also wakes when the futex word at `addr` no longer holds `expected`.
    pub(crate) fn on_addr(mut self, addr: usize, expected: u32) -> Park {
        if self.len < self.words.len() {
            self.words[self.len] = Word { addr, expected };
            self.len += 1;
        }
        self
    }

    /// Also wakes when `word` no longer holds `expected`.
    pub(crate) fn on(self, word: &AtomicU32, expected: u32) -> Park {
        self.on_addr(word.as_ptr() as usize, expected)
    }

    /// What to undo when the wait ends.
    pub(crate) fn undo(mut self, undo: Undo) -> Park {
        self.undo = undo;
        self
    }

    fn words(&self) -> &[Word] {
        &self.words[..self.len]
    }
}

/// One waiting operation, as the generic future [`Waiting`] drives it.
trait Op {
    type Out;
    /// The `_try` call: `Some` when it is done (message, room, or an error),
    /// `None` when it must wait (`Empty`, `Full`).
    fn attempt(&mut self) -> Option<Self::Out>;
    /// Announces the wait; `Ok(None)`: try again now.
    fn park(&mut self) -> Result<Option<Park>, Self::Out>;
    /// Ends an announced wait.
    fn unpark(&mut self, park: Park);
}

/// How many times one poll tries again when the state keeps moving under
/// it before it yields to the executor (woken at once).
const RETRIES: usize = 8;

/// The future of every async operation: try; on `Empty`/`Full` park and
/// register; on the next poll unregister and try again.
struct Waiting<O: Op> {
    op: O,
    parked: Option<(waiter::Registration, Park)>,
    done: bool,
}

impl<O: Op> Waiting<O> {
    fn new(op: O) -> Waiting<O> {
        Waiting {
            op,
            parked: None,
            done: false,
        }
    }

    fn unpark(&mut self) {
        if let Some((registration, park)) = self.parked.take() {
            registration.cancel();
            self.op.unpark(park);
        }
    }
}

impl<O: Op + Unpin> Future for Waiting<O> {
    type Output = O::Out;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O::Out> {
        let this = self.get_mut();
        assert!(!this.done, "shmq async operation polled after completion");
        this.unpark();
        for _ in 0..RETRIES {
            if let Some(out) = this.op.attempt() {
                this.done = true;
                return Poll::Ready(out);
            }
            match this.op.park() {
                Err(out) => {
                    this.done = true;
                    return Poll::Ready(out);
                }
                Ok(None) => continue,
                Ok(Some(park)) => {
                    let registration = waiter::register(park.words(), park.recheck, cx.waker());
                    this.parked = Some((registration, park));
                    return Poll::Pending;
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<O: Op> Drop for Waiting<O> {
    fn drop(&mut self) {
        self.unpark();
    }
}

// ---- the operations ----

struct RecvOp<'a> {
    sub: &'a mut Subscriber,
    buf: &'a mut [u8],
}

impl Op for RecvOp<'_> {
    type Out = Result<usize, RecvError>;
    fn attempt(&mut self) -> Option<Self::Out> {
        match self.sub.recv_try(self.buf) {
            Err(RecvError::Empty) => None,
            other => Some(other),
        }
    }
    fn park(&mut self) -> Result<Option<Park>, Self::Out> {
        self.sub.park().map_err(Err)
    }
    fn unpark(&mut self, park: Park) {
        self.sub.unpark(park);
    }
}

struct RecvVecOp<'a> {
    sub: &'a mut Subscriber,
}

impl Op for RecvVecOp<'_> {
    type Out = Result<Vec<u8>, RecvError>;
    fn attempt(&mut self) -> Option<Self::Out> {
        // The copy is kept only if the seqlock re-check passes.
        match self.sub.recv_in_place(|m| m.to_vec()) {
            Err(RecvError::Empty) => None,
            other => Some(other),
        }
    }
    fn park(&mut self) -> Result<Option<Park>, Self::Out> {
        self.sub.park().map_err(Err)
    }
    fn unpark(&mut self, park: Park) {
        self.sub.unpark(park);
    }
}

/// A dequeue through a shared [`Queue`] or a [`Consumer`].
enum Taker<'a> {
    Queue(&'a Queue),
    Consumer(&'a mut Consumer),
}

impl Taker<'_> {
    fn queue(&self) -> &Queue {
        match self {
            Taker::Queue(q) => q,
            Taker::Consumer(c) => c.parker(),
        }
    }
}

struct DequeueOp<'a> {
    from: Taker<'a>,
    buf: &'a mut [u8],
}

impl Op for DequeueOp<'_> {
    type Out = Result<usize, RecvError>;
    fn attempt(&mut self) -> Option<Self::Out> {
        let r = match &mut self.from {
            Taker::Queue(q) => q.dequeue_try(self.buf),
            Taker::Consumer(c) => c.dequeue_try(self.buf),
        };
        match r {
            Err(RecvError::Empty) => None,
            other => Some(other),
        }
    }
    fn park(&mut self) -> Result<Option<Park>, Self::Out> {
        self.from.queue().park_consume().map_err(Err)
    }
    fn unpark(&mut self, park: Park) {
        self.from.queue().unpark(park);
    }
}

/// An enqueue through a shared [`Queue`] or a [`Producer`].
enum Giver<'a> {
    Queue(&'a Queue),
    Producer(&'a mut Producer),
}

impl Giver<'_> {
    fn queue(&self) -> &Queue {
        match self {
            Giver::Queue(q) => q,
            Giver::Producer(p) => p.parker(),
        }
    }
}

struct EnqueueOp<'a> {
    to: Giver<'a>,
    msg: &'a [u8],
}

impl Op for EnqueueOp<'_> {
    type Out = Result<(), SendError>;
    fn attempt(&mut self) -> Option<Self::Out> {
        let r = match &mut self.to {
            Giver::Queue(q) => q.enqueue_try(self.msg),
            Giver::Producer(p) => p.enqueue_try(self.msg),
        };
        match r {
            Err(SendError::Full) => None,
            other => Some(other),
        }
    }
    fn park(&mut self) -> Result<Option<Park>, Self::Out> {
        self.to.queue().park_produce().map_err(Err)
    }
    fn unpark(&mut self, park: Park) {
        self.to.queue().unpark(park);
    }
}

/// A publish through a shared [`Log`] or a [`Publisher`].
enum Teller<'a> {
    Log(&'a Log),
    Publisher(&'a mut Publisher),
}

impl Teller<'_> {
    fn log(&self) -> &Log {
        match self {
            Teller::Log(l) => l,
            Teller::Publisher(p) => p.log(),
        }
    }
}

struct PublishOp<'a> {
    to: Teller<'a>,
    msg: &'a [u8],
}

impl Op for PublishOp<'_> {
    type Out = Result<u64, SendError>;
    fn attempt(&mut self) -> Option<Self::Out> {
        let r = match &mut self.to {
            Teller::Log(l) => l.publish(self.msg),
            Teller::Publisher(p) => p.publish(self.msg),
        };
        match r {
            Err(SendError::Full) => None,
            other => Some(other),
        }
    }
    fn park(&mut self) -> Result<Option<Park>, Self::Out> {
        self.to.log().park_publish().map_err(Err)
    }
    fn unpark(&mut self, _park: Park) {
        // Gated publishers set the waiter bit on a cursor: nothing to undo.
    }
}

// ---- the public methods ----

impl Subscriber {
    /// Receives the next message into `buf` and returns its length, waiting
    /// without blocking the thread while the log is empty.
    ///
    /// Cancellation-safe: a message is taken only by the poll that returns
    /// it, so dropping the future (a `select!` timeout) loses nothing. The
    /// results are those of [`Subscriber::recv_try`], without `Empty`:
    /// `Lagged`, `BufferTooSmall` (the message stays), `Closed`, `Corrupt`.
    /// The future is `Send`; it waits as described in the module doc of
    /// `shmq::asyncio` (no spinning, no polling; a safety re-check each
    /// [`IDLE_RECHECK`]).
    ///
    /// # Examples
    /// ```
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Wake};
    /// #     struct T(std::thread::Thread);
    /// #     impl Wake for T { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = std::sync::Arc::new(T(std::thread::current())).into();
    /// #     let mut cx = Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// use shmq::{Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(16, 4)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// log.publish(b"ready").unwrap();
    /// let mut buf = [0u8; 16];
    /// assert_eq!(block_on(sub.recv_async(&mut buf)), Ok(5));
    /// ```
    pub fn recv_async<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = Result<usize, RecvError>> + Send + 'a {
        Waiting::new(RecvOp { sub: self, buf })
    }

    /// As [`Subscriber::recv_async`], returning the message in a new `Vec`
    /// (its exact length; never `BufferTooSmall`). The message is copied
    /// out of the slot and kept only if the slot's seqlock says it was not
    /// overwritten meanwhile (else `Lagged`), as [`Subscriber::recv_in_place`].
    ///
    /// # Examples
    /// ```
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Wake};
    /// #     struct T(std::thread::Thread);
    /// #     impl Wake for T { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = std::sync::Arc::new(T(std::thread::current())).into();
    /// #     let mut cx = Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// use shmq::{Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(16, 4)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// log.publish(b"owned").unwrap();
    /// assert_eq!(block_on(sub.recv_vec_async()).unwrap(), b"owned");
    /// ```
    pub fn recv_vec_async(
        &mut self,
    ) -> impl Future<Output = Result<Vec<u8>, RecvError>> + Send + '_ {
        Waiting::new(RecvVecOp { sub: self })
    }
}

impl Queue {
    /// Dequeues the next message into `buf` and returns its length, waiting
    /// without blocking the thread while the queue is empty.
    ///
    /// Cancellation-safe: the message is claimed, copied and released by
    /// the poll that returns it, so dropping the future loses nothing.
    /// Results as [`Queue::dequeue_try`], without `Empty`.
    ///
    /// # Examples
    /// ```
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Wake};
    /// #     struct T(std::thread::Thread);
    /// #     impl Wake for T { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = std::sync::Arc::new(T(std::thread::current())).into();
    /// #     let mut cx = Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(16, 4)).unwrap();
    /// block_on(q.enqueue_async(b"job")).unwrap();
    /// let mut buf = [0u8; 16];
    /// assert_eq!(block_on(q.dequeue_async(&mut buf)), Ok(3));
    /// ```
    pub fn dequeue_async<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = Result<usize, RecvError>> + Send + 'a {
        Waiting::new(DequeueOp {
            from: Taker::Queue(self),
            buf,
        })
    }

    /// As [`Queue::dequeue_async`], returning the message in a new `Vec`.
    pub async fn dequeue_vec_async(&self) -> Result<Vec<u8>, RecvError> {
        let mut v = vec![0u8; self.slot_size()];
        let n = self.dequeue_async(&mut v).await?;
        v.truncate(n);
        Ok(v)
    }

    /// Enqueues `msg`, waiting without blocking the thread while the queue
    /// is full. Results as [`Queue::enqueue_try`], without `Full`. Dropping
    /// the future before it is ready enqueues nothing.
    pub fn enqueue_async<'a>(
        &'a self,
        msg: &'a [u8],
    ) -> impl Future<Output = Result<(), SendError>> + Send + 'a {
        Waiting::new(EnqueueOp {
            to: Giver::Queue(self),
            msg,
        })
    }
}

impl Consumer {
    /// As [`Queue::dequeue_async`], through the consumer role.
    pub fn dequeue_async<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = Result<usize, RecvError>> + Send + 'a {
        Waiting::new(DequeueOp {
            from: Taker::Consumer(self),
            buf,
        })
    }
}

impl Producer {
    /// As [`Queue::enqueue_async`], through the producer role.
    pub fn enqueue_async<'a>(
        &'a mut self,
        msg: &'a [u8],
    ) -> impl Future<Output = Result<(), SendError>> + Send + 'a {
        Waiting::new(EnqueueOp {
            to: Giver::Producer(self),
            msg,
        })
    }
}

impl Log {
    /// Publishes `msg`, waiting without blocking the thread while a
    /// reliable log is full (gated by its slowest cursor); returns its
    /// sequence number. In overwrite mode it is [`Log::publish`]. Dropping
    /// the future before it is ready publishes nothing.
    pub fn publish_async<'a>(
        &'a self,
        msg: &'a [u8],
    ) -> impl Future<Output = Result<u64, SendError>> + Send + 'a {
        Waiting::new(PublishOp {
            to: Teller::Log(self),
            msg,
        })
    }
}

impl Publisher {
    /// As [`Log::publish_async`], through the publisher.
    pub fn publish_async<'a>(
        &'a mut self,
        msg: &'a [u8],
    ) -> impl Future<Output = Result<u64, SendError>> + Send + 'a {
        Waiting::new(PublishOp {
            to: Teller::Publisher(self),
            msg,
        })
    }
}

/// The waiter threads and their registrations.
mod waiter {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::task::Waker;
    use std::time::{Duration, Instant};

    use super::{Word, FALLBACK_POLL};
    // Process-private words (the thread's own futex, ids): plain std
    // atomics, outside the seam that a model checker may replace.
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    /// Most words of one `futex_waitv` call (the kernel's FUTEX_WAITV_MAX).
    const MAX_WAITV: usize = 128;
    /// Registered words per waiter thread: all but its own.
    const SHARD_WORDS: usize = MAX_WAITV - 1;

    const FUTEX2_SIZE_U32: u32 = 0x02;
    const FUTEX2_PRIVATE: u32 = 128;

    /// `struct futex_waitv` of the kernel ABI.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }

    /// One task's wait.
    struct Entry {
        id: u64,
        words: [Word; 2],
        len: usize,
        deadline: Instant,
        waker: Waker,
    }

    impl Entry {
        fn words(&self) -> &[Word] {
            &self.words[..self.len]
        }
    }

    #[derive(Default)]
    struct State {
        entries: Vec<Entry>,
        /// Registrations per distinct address.
        words: HashMap<usize, usize>,
        /// The words the thread waits on now (besides its own).
        armed: Vec<Word>,
        /// The kernel has no futex_waitv: timed polls.
        fallback: bool,
        /// Words of the entries the last round woke for their re-check:
        /// armed one more round, so that their tasks, which re-register on
        /// the same words with the same values, need not wake the thread.
        recent: Vec<Word>,
    }

    impl State {
        fn remove(&mut self, at: usize) -> Entry {
            let e = self.entries.swap_remove(at);
            for w in e.words() {
                if let Some(n) = self.words.get_mut(&w.addr) {
                    *n -= 1;
                    if *n == 0 {
                        self.words.remove(&w.addr);
                    }
                }
            }
            e
        }

        /// Removes the entries that wait on `addr` (all of them with
        /// `None`) and collects their wakers.
        fn fire(&mut self, mut hit: impl FnMut(&Entry) -> bool, out: &mut Vec<Waker>) {
            let mut i = 0;
            while i < self.entries.len() {
                if hit(&self.entries[i]) {
                    out.push(self.remove(i).waker);
                } else {
                    i += 1;
                }
            }
        }
    }

    /// One waiter thread and what it waits for.
    pub(super) struct Shard {
        /// The one CPU that the threads registering here are pinned to
        /// (and this thread too: it inherited the mask of the thread that
        /// started it), or `None` for threads that may run on several.
        home: Option<u32>,
        state: Mutex<State>,
        /// Bumped (and woken) when the thread must re-arm.
        ctl: AtomicU32,
    }

    impl Shard {
        fn lock(&self) -> MutexGuard<'_, State> {
            // A panic under the lock leaves consistent data (no invariant
            // spans an unwind point): keep going.
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn kick(&self) {
            // SYNC(async-rearm): Release, pairs with the thread's Acquire
            // load of `ctl` before it builds its wait: the registration made
            // before this bump is seen by the next build, or the wait fails
            // at once (the word no longer holds the value it loaded).
            self.ctl.fetch_add(1, Ordering::Release);
            let _ = futex(
                &self.ctl as *const AtomicU32 as usize,
                true,
                FUTEX_WAKE,
                1,
                None,
            );
        }
    }

    struct Registry {
        pid: u32,
        shards: Vec<Arc<Shard>>,
    }

    static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
        pid: 0,
        shards: Vec::new(),
    });
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);

    /// A task's registration; [`Registration::cancel`] removes it.
    pub(super) struct Registration {
        shard: Arc<Shard>,
        id: u64,
    }

    impl std::fmt::Debug for Registration {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Registration({})", self.id)
        }
    }

    impl Registration {
        /// Removes the registration if it has not fired.
        pub(super) fn cancel(self) {
            let mut st = self.shard.lock();
            if let Some(at) = st.entries.iter().position(|e| e.id == self.id) {
                st.remove(at);
            }
        }
    }

    /// Registers `waker` to be woken when one of `words` no longer holds
    /// its expected value (or is woken), or after `recheck`.
    pub(super) fn register(words: &[Word], recheck: Duration, waker: &Waker) -> Registration {
        // Relaxed: a unique number, nothing else.
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut entry = Entry {
            id,
            words: [Word {
                addr: 0,
                expected: 0,
            }; 2],
            len: words.len().min(2),
            deadline: on_grid(Instant::now() + recheck, recheck),
            waker: waker.clone(),
        };
        entry.words[..entry.len].copy_from_slice(&words[..entry.len]);
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        if reg.pid != pid {
            // A forked child: the parent's threads do not exist here.
            reg.shards.clear();
            reg.pid = pid;
        }
        let home = home_cpu();
        let new_words = |st: &State| {
            entry
                .words()
                .iter()
                .filter(|w| !st.words.contains_key(&w.addr))
                .count()
        };
        // Of the shards of our home CPU: one that has all of our words,
        // else one with room, else a new one.
        let mut chosen = None;
        for pass in 0..2 {
            for shard in reg.shards.iter().filter(|s| s.home == home) {
                let st = shard.lock();
                let n = new_words(&st);
                if (pass == 0 && n == 0) || (pass == 1 && st.words.len() + n <= SHARD_WORDS) {
                    chosen = Some(Arc::clone(shard));
                    break;
                }
            }
            if chosen.is_some() {
                break;
            }
        }
        let shard = match chosen {
            Some(s) => s,
            None => {
                let shard = Arc::new(Shard {
                    home,
                    state: Mutex::new(State::default()),
                    ctl: AtomicU32::new(0),
                });
                let run = Arc::clone(&shard);
                // Started from this thread, it inherits our CPU mask: for
                // a home CPU, that one CPU.
                std::thread::Builder::new()
                    .name("shmq-async-waiter".into())
                    .stack_size(64 * 1024)
                    .spawn(move || run_shard(&run))
                    .expect("shmq: cannot start the async waiter thread");
                reg.shards.push(Arc::clone(&shard));
                shard
            }
        };
        drop(reg);
        let mut st = shard.lock();
        // Already armed with these values (another task waits on the same
        // word): the thread's current wait covers us; no need to wake it.
        let armed = entry.words().iter().all(|w| st.armed.contains(w));
        for w in entry.words() {
            *st.words.entry(w.addr).or_insert(0) += 1;
        }
        st.entries.push(entry);
        drop(st);
        if !armed {
            shard.kick();
        }
        Registration { shard, id }
    }

    /// The one CPU the calling thread is pinned to, if its affinity mask
    /// holds exactly one. Read at the thread's first wait and again when
    /// it is found running elsewhere (re-pinned); a thread pinned after
    /// its first wait while it ran unpinned keeps `None`.
    fn home_cpu() -> Option<u32> {
        thread_local! {
            static HOME: std::cell::Cell<Option<Option<u32>>> =
                const { std::cell::Cell::new(None) };
        }
        // SAFETY: sched_getcpu has no preconditions.
        let now = unsafe { libc::sched_getcpu() };
        HOME.with(|home| {
            let known = home.get().filter(|k| k.is_none_or(|c| c as i32 == now));
            known.unwrap_or_else(|| {
                let fresh = pinned_cpu();
                home.set(Some(fresh));
                fresh
            })
        })
    }

    /// The calling thread's CPU mask, if it holds exactly one CPU.
    fn pinned_cpu() -> Option<u32> {
        // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid 0 is the calling thread; the kernel writes at most
        // size_of::<cpu_set_t>() bytes into `set`, which we own.
        let r =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        // SAFETY: CPU_COUNT reads the set we own.
        if r != 0 || unsafe { libc::CPU_COUNT(&set) } != 1 {
            return None;
        }
        // SAFETY: CPU_ISSET reads the set we own; the index is in range.
        (0..libc::CPU_SETSIZE as usize)
            .find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .map(|c| c as u32)
    }

    /// `deadline` rounded up to a grid of a quarter of `recheck`, counted
    /// from a process-wide origin: the re-checks of tasks registered at
    /// about the same time fall due together, so a waiter thread wakes once
    /// for all of them (1000 idle tasks on distinct words: 4 wakes a second
    /// per thread instead of one per task).
    fn on_grid(deadline: Instant, recheck: Duration) -> Instant {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        let tick = (recheck.as_nanos() / 4).max(1);
        let since = deadline.saturating_duration_since(origin).as_nanos();
        let rounded = since.div_ceil(tick).saturating_mul(tick);
        origin + Duration::from_nanos(rounded.min(u64::MAX as u128) as u64)
    }

    const FUTEX_WAIT: i32 = libc::FUTEX_WAIT;
    const FUTEX_WAKE: i32 = libc::FUTEX_WAKE;

    /// A FUTEX_WAIT or FUTEX_WAKE on the word at `addr`; returns the
    /// syscall's result or the errno.
    fn futex(
        addr: usize,
        private: bool,
        op: i32,
        val: u32,
        timeout: Option<Duration>,
    ) -> Result<i64, i32> {
        let op = if private {
            op | libc::FUTEX_PRIVATE_FLAG
        } else {
            op
        };
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: the kernel validates `addr` (EFAULT if it is not mapped);
        // FUTEX_WAIT only reads the word, FUTEX_WAKE touches no memory. We
        // never dereference it ourselves.
        let r = unsafe { libc::syscall(libc::SYS_futex, addr, op, val, ts_ptr, 0usize, 0u32) };
        if r < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(r as i64)
        }
    }

    /// Whether the word no longer holds `w.expected` (or cannot be read),
    /// asked of the kernel with a zero-timeout wait.
    fn changed(w: &FutexWaitv) -> bool {
        let private = w.flags & FUTEX2_PRIVATE != 0;
        !matches!(
            futex(
                w.uaddr as usize,
                private,
                FUTEX_WAIT,
                w.val as u32,
                Some(Duration::ZERO)
            ),
            Err(libc::ETIMEDOUT)
        )
    }

    /// futex_waitv(2) until `deadline`: the index of a woken word, or the errno.
    fn futex_waitv(v: &[FutexWaitv], deadline: Option<Instant>) -> Result<usize, i32> {
        let ts = deadline.map(|d| {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes the timespec we own.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
            let left = d.saturating_duration_since(Instant::now());
            // time_t and c_long are 32 bits on some targets.
            #[allow(clippy::unnecessary_cast)]
            let mut sec = now.tv_sec as i64 + left.as_secs().min(1 << 40) as i64;
            #[allow(clippy::unnecessary_cast)]
            let mut nsec = now.tv_nsec as i64 + left.subsec_nanos() as i64;
            if nsec >= 1_000_000_000 {
                sec += 1;
                nsec -= 1_000_000_000;
            }
            libc::timespec {
                tv_sec: sec as libc::time_t,
                tv_nsec: nsec as libc::c_long,
            }
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `v` is a valid array of `v.len()` (<= 128) futex_waitv
        // records; the kernel validates each address (EFAULT) and only
        // reads the words. The timeout is absolute on CLOCK_MONOTONIC.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex_waitv,
                v.as_ptr(),
                v.len() as libc::c_uint,
                0u32,
                ts_ptr,
                libc::CLOCK_MONOTONIC,
            )
        };
        if r < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(r as usize)
        }
    }

    /// The waiter thread: arm, sleep, wake the tasks whose words moved.
    fn run_shard(shard: &Shard) {
        let mut waitv: Vec<FutexWaitv> = Vec::with_capacity(MAX_WAITV);
        let mut wakers: Vec<Waker> = Vec::new();
        let ctl_addr = &shard.ctl as *const AtomicU32 as usize;
        loop {
            let (deadline, fallback) = {
                let mut st = shard.lock();
                // SYNC(async-rearm): Acquire, pairs with the Release bump in `kick`.
                let ctl = shard.ctl.load(Ordering::Acquire);
                waitv.clear();
                waitv.push(FutexWaitv {
                    val: ctl as u64,
                    uaddr: ctl_addr as u64,
                    flags: FUTEX2_SIZE_U32 | FUTEX2_PRIVATE,
                    reserved: 0,
                });
                // One entry per address; tasks that saw different values of
                // one word are all woken now (one of them is stale; they
                // re-register with what the word holds now).
                let mut stale: Vec<usize> = Vec::new();
                let mut armed: Vec<Word> = Vec::new();
                let recent = std::mem::take(&mut st.recent);
                for e in &st.entries {
                    for w in e.words() {
                        match armed.iter().find(|a| a.addr == w.addr) {
                            Some(a) if a.expected != w.expected => stale.push(w.addr),
                            Some(_) => {}
                            None => armed.push(*w),
                        }
                    }
                }
                if !stale.is_empty() {
                    st.fire(
                        |e| e.words().iter().any(|w| stale.contains(&w.addr)),
                        &mut wakers,
                    );
                    armed.retain(|a| !stale.contains(&a.addr));
                }
                for w in recent {
                    if armed.len() < SHARD_WORDS && !armed.iter().any(|a| a.addr == w.addr) {
                        armed.push(w);
                    }
                }
                armed.truncate(SHARD_WORDS);
                for a in &armed {
                    waitv.push(FutexWaitv {
                        val: a.expected as u64,
                        uaddr: a.addr as u64,
                        flags: FUTEX2_SIZE_U32,
                        reserved: 0,
                    });
                }
                st.armed = armed;
                let deadline = st.entries.iter().map(|e| e.deadline).min();
                (deadline, st.fallback)
            };
            for w in wakers.drain(..) {
                w.wake();
            }
            let result = if fallback {
                fallback_wait(&waitv, deadline)
            } else {
                futex_waitv(&waitv, deadline)
            };
            let mut st = shard.lock();
            match result {
                Ok(0) => {} // our own word: re-arm
                Ok(i) => {
                    let addr = waitv.get(i).map_or(0, |w| w.uaddr as usize);
                    st.fire(|e| e.words().iter().any(|w| w.addr == addr), &mut wakers);
                }
                Err(libc::ENOSYS) => st.fallback = true,
                Err(libc::ETIMEDOUT) | Err(libc::EINTR) => {}
                // Relaxed: our own word, only compared; a new registration
                // bumped it (the usual EAGAIN): re-arm, probing nothing. A
                // registered word that moved too fails the next wait.
                Err(libc::EAGAIN) if shard.ctl.load(Ordering::Relaxed) as u64 != waitv[0].val => {}
                Err(_) => {
                    // EAGAIN: a word had moved before we slept. EFAULT: a
                    // word is no longer mapped (its task is gone or will
                    // see why). Ask the kernel which, one by one.
                    let moved: Vec<usize> = waitv[1..]
                        .iter()
                        .filter(|w| changed(w))
                        .map(|w| w.uaddr as usize)
                        .collect();
                    st.fire(
                        |e| e.words().iter().any(|w| moved.contains(&w.addr)),
                        &mut wakers,
                    );
                }
            }
            // The tasks whose word moved are woken before the pass over
            // the deadlines, which walks every entry (1000 idle tasks on
            // one shard): a wake waits for nothing else.
            if !wakers.is_empty() {
                drop(st);
                for w in wakers.drain(..) {
                    w.wake();
                }
                st = shard.lock();
            }
            let now = Instant::now();
            let mut recent = std::mem::take(&mut st.recent);
            st.fire(
                |e| {
                    let due = e.deadline <= now;
                    if due {
                        recent.extend_from_slice(e.words());
                    }
                    due
                },
                &mut wakers,
            );
            st.recent = recent;
            drop(st);
            for w in wakers.drain(..) {
                w.wake();
            }
        }
    }

    /// Without futex_waitv: sleep on our own word at most FALLBACK_POLL,
    /// then report a moved word as futex_waitv would (EAGAIN: probe them).
    fn fallback_wait(v: &[FutexWaitv], deadline: Option<Instant>) -> Result<usize, i32> {
        let ctl = &v[0];
        let nap = if v.len() == 1 {
            deadline.map(|d| d.saturating_duration_since(Instant::now()))
        } else {
            Some(
                deadline
                    .map_or(FALLBACK_POLL, |d| {
                        d.saturating_duration_since(Instant::now())
                    })
                    .min(FALLBACK_POLL),
            )
        };
        match futex(ctl.uaddr as usize, true, FUTEX_WAIT, ctl.val as u32, nap) {
            Ok(_) => Ok(0),
            Err(libc::EAGAIN) => Ok(0),
            Err(_) if v.len() > 1 => Err(libc::EAGAIN),
            Err(e) => Err(e),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::sync::atomic::AtomicBool;
        use std::task::Wake;

        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }

        fn wait_for(flag: &Flag) -> bool {
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if flag.0.load(std::sync::atomic::Ordering::SeqCst) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            false
        }

        #[test]
        fn a_changed_word_wakes_its_task_and_only_it() {
            let a = Box::new(AtomicU32::new(5));
            let b = Box::new(AtomicU32::new(7));
            let fa = Arc::new(Flag(AtomicBool::new(false)));
            let fb = Arc::new(Flag(AtomicBool::new(false)));
            let wa: Waker = Arc::clone(&fa).into();
            let wb: Waker = Arc::clone(&fb).into();
            let word = |x: &AtomicU32, v| Word {
                addr: x as *const AtomicU32 as usize,
                expected: v,
            };
            let ra = register(&[word(&a, 5)], Duration::from_secs(60), &wa);
            let rb = register(&[word(&b, 7)], Duration::from_secs(60), &wb);
            a.store(6, Ordering::SeqCst);
            futex(
                &*a as *const AtomicU32 as usize,
                false,
                FUTEX_WAKE,
                i32::MAX as u32,
                None,
            )
            .unwrap();
            assert!(wait_for(&fa));
            std::thread::sleep(Duration::from_millis(20));
            assert!(!fb.0.load(std::sync::atomic::Ordering::SeqCst));
            // A word that moved before the thread armed is found too.
            let fc = Arc::new(Flag(AtomicBool::new(false)));
            let wc: Waker = Arc::clone(&fc).into();
            let rc = register(&[word(&b, 6)], Duration::from_secs(60), &wc);
            assert!(wait_for(&fc));
            ra.cancel();
            rb.cancel();
            rc.cancel();
        }

        #[test]
        fn the_recheck_wakes_an_idle_task() {
            let a = Box::new(AtomicU32::new(1));
            let f = Arc::new(Flag(AtomicBool::new(false)));
            let w: Waker = Arc::clone(&f).into();
            let word = Word {
                addr: &*a as *const AtomicU32 as usize,
                expected: 1,
            };
            let r = register(&[word], Duration::from_millis(30), &w);
            assert!(wait_for(&f));
            r.cancel();
        }

        #[test]
        fn the_fallback_probes_after_its_nap() {
            let a = AtomicU32::new(3);
            let ctl = AtomicU32::new(0);
            let v = [
                FutexWaitv {
                    val: 0,
                    uaddr: &ctl as *const AtomicU32 as u64,
                    flags: FUTEX2_SIZE_U32 | FUTEX2_PRIVATE,
                    reserved: 0,
                },
                FutexWaitv {
                    val: 3,
                    uaddr: &a as *const AtomicU32 as u64,
                    flags: FUTEX2_SIZE_U32,
                    reserved: 0,
                },
            ];
            assert_eq!(fallback_wait(&v, None), Err(libc::EAGAIN));
            assert!(!changed(&v[1]));
            a.store(4, Ordering::SeqCst);
            assert!(changed(&v[1]));
        }
    }
}
