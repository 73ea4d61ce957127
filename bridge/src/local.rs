//! The shared-memory side of a route, behind two small traits so that the
//! driving code does not care whether it is a log or a queue, nor (later)
//! whether it is driven by blocking calls or by the engine's async API.
//!
//! Today every call here blocks for at most the deadline it is given, and
//! the routes call them from dedicated threads (`std::thread`), never from a
//! tokio worker. Switching to the async API means giving these traits async
//! twins and dropping the threads; nothing outside this file touches the
//! engine's queue or log types.

use std::time::Instant;

use anyhow::{Context, Result};
use shmq::{Error, Log, Queue, RecvError, SendError, Start, Subscriber, Target};

/// What a source read gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A message of this many bytes, with its sequence number (a log's own;
    /// for a queue, the route's counter).
    Msg { seq: u64, len: usize },
    /// Nothing before the deadline.
    Idle,
    /// Overwrite mode: this many messages were overwritten before they were read.
    Lost(u64),
    /// The source was closed and is drained.
    Closed,
}

/// Where an out route reads: a log through a named durable cursor, or a queue.
pub trait Source: Send {
    /// The next message into `buf`, waiting until `deadline`.
    fn read(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Result<Read>;
    /// Everything read so far reached NATS: make it durable (a log's cursor
    /// commit; nothing for a queue, whose dequeue already removed it).
    fn commit(&mut self) -> Result<()>;
    /// Whether a read message stays in the source until committed (a log):
    /// then a crash before the commit re-reads it; a queue's does not.
    fn durable(&self) -> bool;
    /// Messages published and not yet read (the cursor's lag), for status.
    fn lag(&self) -> u64;
    /// The kind of source (the `Shmq-Kind` header, sent for a queue only): `log` (sequence numbers are
    /// contiguous, so a receiver can count gaps) or `queue`.
    fn kind(&self) -> &'static str;
}

/// Where an in route writes: a log or a queue of which the bridge is the
/// only publisher (see [`Sink::next_seq`]).
pub trait Sink: Send {
    /// Publishes `msg`, waiting until `deadline` while the target is full
    /// (a reliable log's slowest cursor, a full queue). `Ok(false)`: still
    /// full at the deadline, nothing written; the caller retries.
    fn write(&mut self, msg: &[u8], deadline: Instant) -> Result<bool>;
    /// Publishes as many of `msgs` as the target takes now, in order,
    /// without waiting: how many. 0 when it is full, or on an error, which
    /// the caller then meets (and reports) in [`Sink::write`].
    fn write_now(&mut self, msgs: &[&[u8]]) -> Result<usize>;
    /// How many messages the target has taken in all (a log's next sequence
    /// number, a queue's enqueue count). The bridge compares it with the
    /// value in its state file after a crash: valid while the bridge is the
    /// target's only publisher.
    fn next_seq(&self) -> u64;
}

/// Opens `target` as a log, or as a queue when it is one.
pub enum Opened {
    /// A fan-out log.
    Log(Log),
    /// A work queue.
    Queue(Box<Queue>),
}

/// Opens the segment at `target`, whichever kind it is.
pub fn open(target: &Target) -> Result<Opened> {
    match Log::open(target) {
        Ok(log) => Ok(Opened::Log(log)),
        Err(Error::Incompatible { .. }) => Queue::open(target)
            .map(|q| Opened::Queue(Box::new(q)))
            .with_context(|| format!("opening {target}")),
        Err(e) => Err(e).with_context(|| format!("opening {target}")),
    }
}

/// A log read through a named durable cursor.
pub struct LogSource {
    sub: Subscriber,
    // Kept so the mapping outlives the subscriber's use of it.
    _log: Log,
}

impl LogSource {
    /// Attaches to the named cursor `cursor` of `log` (created at the
    /// oldest message still present when missing).
    pub fn new(log: Log, cursor: &str) -> Result<LogSource> {
        let sub = log
            .subscribe_named(cursor, Start::Oldest)
            .with_context(|| format!("attaching to cursor {cursor:?}"))?;
        Ok(LogSource { sub, _log: log })
    }
}

impl Source for LogSource {
    fn read(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Result<Read> {
        loop {
            if buf.len() < self.sub_capacity() {
                buf.resize(self.sub_capacity(), 0);
            }
            match self.sub.recv_until(buf, Some(deadline)) {
                Ok(len) => {
                    return Ok(Read::Msg {
                        seq: self.sub.position() - 1,
                        len,
                    })
                }
                Err(RecvError::Timeout | RecvError::Empty) => return Ok(Read::Idle),
                Err(RecvError::Lagged(n)) => return Ok(Read::Lost(n)),
                Err(RecvError::Closed) => return Ok(Read::Closed),
                Err(RecvError::BufferTooSmall { needed }) => buf.resize(needed, 0),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn commit(&mut self) -> Result<()> {
        self.sub.commit().context("committing the route's cursor")
    }

    fn durable(&self) -> bool {
        true
    }

    fn lag(&self) -> u64 {
        self.sub.lag()
    }

    fn kind(&self) -> &'static str {
        "log"
    }
}

impl LogSource {
    fn sub_capacity(&self) -> usize {
        self._log.slot_size()
    }
}

/// A queue read by dequeues; sequence numbers are the route's own counter,
/// started from the clock so that they keep growing across restarts.
pub struct QueueSource {
    queue: Queue,
    next: u64,
}

impl QueueSource {
    /// Reads `queue`.
    pub fn new(queue: Queue) -> QueueSource {
        let next = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        QueueSource { queue, next }
    }
}

impl Source for QueueSource {
    fn read(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Result<Read> {
        loop {
            if buf.len() < self.queue.slot_size() {
                buf.resize(self.queue.slot_size(), 0);
            }
            match self.queue.dequeue_until(buf, Some(deadline)) {
                Ok(len) => {
                    let seq = self.next;
                    self.next += 1;
                    return Ok(Read::Msg { seq, len });
                }
                Err(RecvError::Timeout | RecvError::Empty) => return Ok(Read::Idle),
                Err(RecvError::Closed) => return Ok(Read::Closed),
                Err(RecvError::BufferTooSmall { needed }) => buf.resize(needed, 0),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    fn durable(&self) -> bool {
        false
    }

    fn lag(&self) -> u64 {
        self.queue.stats().len
    }

    fn kind(&self) -> &'static str {
        "queue"
    }
}

/// A log written by this bridge.
pub struct LogSink(pub Log);

impl Sink for LogSink {
    fn write(&mut self, msg: &[u8], deadline: Instant) -> Result<bool> {
        match self.0.publish_until(msg, Some(deadline)) {
            Ok(_) => Ok(true),
            Err(SendError::Timeout | SendError::GatedBy { .. } | SendError::Full) => Ok(false),
            Err(e) => Err(e).context("publishing to the local log"),
        }
    }

    fn write_now(&mut self, msgs: &[&[u8]]) -> Result<usize> {
        // One publish for the whole batch (one reservation of slots).
        Ok(self.0.publish_batch(msgs).unwrap_or(0))
    }

    fn next_seq(&self) -> u64 {
        self.0.next_seq()
    }
}

/// A queue written by this bridge.
pub struct QueueSink(pub Queue);

impl Sink for QueueSink {
    fn write(&mut self, msg: &[u8], deadline: Instant) -> Result<bool> {
        match self.0.enqueue_until(msg, Some(deadline)) {
            Ok(()) => Ok(true),
            Err(SendError::Timeout | SendError::Full) => Ok(false),
            Err(e) => Err(e).context("enqueueing to the local queue"),
        }
    }

    fn write_now(&mut self, msgs: &[&[u8]]) -> Result<usize> {
        // One enqueue for the whole batch (one claim of the range).
        Ok(self.0.enqueue_batch(msgs).unwrap_or(0))
    }

    fn next_seq(&self) -> u64 {
        self.0.stats().enqueued
    }
}
