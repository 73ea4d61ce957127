//! Where a batcher's items come from: the one place that talks to queues,
//! logs and the in-process channel.
//!
//! The queue and log sources use today's single-message calls
//! (`dequeue_until`, `recv_until`, `commit`). To move them to batch
//! receives, change `QueueSource::next` and `LogSource::next` to refill a
//! local deque of decoded items per call and hand them out one by one; the
//! batcher above needs no change. One rule: `LogSource::settle` must not
//! commit while that deque holds items (the subscriber's position is then
//! past items the batcher has not taken yet).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::{Chan, Sender};
use super::{BatchError, BoxError};
use crate::{Queue, RecvError, Subscriber};

/// A decoder of messages into items.
pub(crate) type Decode<T> = Box<dyn FnMut(&[u8]) -> Result<T, BoxError> + Send>;

/// How long a queue or log source waits at a time before it looks at its
/// stop flag: bounds how long a [`super::Stopper`] takes to be obeyed.
const STOP_POLL: Duration = Duration::from_millis(20);

/// What a source gave.
pub(crate) enum Pulled<T> {
    /// The next item.
    Item(T),
    /// A message the decoder refused, with its bytes.
    Undecodable(BoxError, Vec<u8>),
    /// This many log messages were overwritten before they were read.
    Lost(u64),
    /// Nothing came before the deadline.
    Idle,
    /// The source ended (closed and drained, or stopped): nothing more comes.
    End,
}

/// A batcher's source of items.
pub(crate) trait Source<T>: Send {
    /// The next item, waiting until `deadline` at most.
    fn next(&mut self, deadline: Instant) -> Result<Pulled<T>, BatchError>;

    /// Every item taken so far was flushed (or rejected): make that
    /// durable. Returns whether anything was committed.
    fn settle(&mut self) -> Result<bool, BatchError> {
        Ok(false)
    }

    /// Whether a failed flush must stop the batcher, because settling
    /// later would mark the failed items as delivered (a named cursor).
    fn durable(&self) -> bool {
        false
    }

    /// Items waiting in the source, for monitoring.
    fn waiting(&self) -> usize;
}

/// Whether a stop was asked.
fn stopped(stop: &AtomicBool) -> bool {
    // SYNC(stop): Acquire, pairs with the Release store in `flag_stopper`
    // (a process-local flag, read only to end a wait early).
    stop.load(Ordering::Acquire)
}

/// The wait of one call: until `deadline`, cut into [`STOP_POLL`] slices.
fn slice_end(deadline: Instant) -> Instant {
    deadline.min(Instant::now() + STOP_POLL)
}

/// The in-process channel.
pub(crate) struct ChannelSource<T> {
    chan: Arc<Chan<T>>,
    /// Items taken from the channel in bulk, handed out one by one.
    taken: VecDeque<T>,
}

impl<T> ChannelSource<T> {
    /// A channel of `size` items, its source and its first sender.
    pub(crate) fn new(size: usize) -> (ChannelSource<T>, Sender<T>) {
        let chan = Chan::new(size);
        (
            ChannelSource {
                chan: chan.clone(),
                taken: VecDeque::new(),
            },
            Sender::new(chan.clone()),
        )
    }

    /// Closes the channel from the batcher's side (its stopper).
    pub(crate) fn closer(&self) -> impl Fn() + Send + Sync + 'static
    where
        T: Send + 'static,
    {
        let chan = self.chan.clone();
        move || chan.close()
    }
}

impl<T: Send> Source<T> for ChannelSource<T> {
    fn next(&mut self, deadline: Instant) -> Result<Pulled<T>, BatchError> {
        if self.taken.is_empty() {
            match self.chan.take_all(&mut self.taken, deadline) {
                Ok(true) => {}
                Ok(false) => return Ok(Pulled::Idle),
                Err(()) => return Ok(Pulled::End),
            }
        }
        Ok(self.taken.pop_front().map_or(Pulled::Idle, Pulled::Item))
    }

    fn waiting(&self) -> usize {
        self.taken.len() + self.chan.len()
    }
}

impl<T> Drop for ChannelSource<T> {
    fn drop(&mut self) {
        // Senders blocked on a full channel must not wait for a batcher
        // that is gone.
        self.chan.close();
    }
}

/// A work queue, one message per dequeue.
pub(crate) struct QueueSource<T> {
    queue: Queue,
    buf: Vec<u8>,
    decode: Decode<T>,
    stop: Arc<AtomicBool>,
}

impl<T> QueueSource<T> {
    pub(crate) fn new(queue: Queue, decode: Decode<T>, stop: Arc<AtomicBool>) -> QueueSource<T> {
        QueueSource {
            buf: vec![0; queue.slot_size()],
            queue,
            decode,
            stop,
        }
    }
}

/// A message decoded, or its bytes with the decoder's error.
fn decoded<T>(decode: &mut Decode<T>, msg: &[u8]) -> Pulled<T> {
    match decode(msg) {
        Ok(item) => Pulled::Item(item),
        Err(e) => Pulled::Undecodable(e, msg.to_vec()),
    }
}

impl<T> Source<T> for QueueSource<T> {
    fn next(&mut self, deadline: Instant) -> Result<Pulled<T>, BatchError> {
        loop {
            if stopped(&self.stop) {
                return Ok(Pulled::End);
            }
            match self
                .queue
                .dequeue_until(&mut self.buf, Some(slice_end(deadline)))
            {
                Ok(n) => return Ok(decoded(&mut self.decode, &self.buf[..n])),
                Err(RecvError::Timeout) => {
                    if Instant::now() >= deadline {
                        return Ok(Pulled::Idle);
                    }
                }
                Err(RecvError::Closed) => return Ok(Pulled::End),
                Err(e) => return Err(BatchError::Recv(e)),
            }
        }
    }

    fn waiting(&self) -> usize {
        self.queue.len()
    }
}

/// A log subscriber, one message per receive; a named cursor is committed
/// when the batcher settles.
pub(crate) struct LogSource<T> {
    sub: Subscriber,
    buf: Vec<u8>,
    decode: Decode<T>,
    stop: Arc<AtomicBool>,
    named: bool,
}

/// The first receive buffer of a log source; it grows to the longest
/// message seen (the subscriber tells how long a message is).
const FIRST_BUF: usize = 4096;

impl<T> LogSource<T> {
    pub(crate) fn new(sub: Subscriber, decode: Decode<T>, stop: Arc<AtomicBool>) -> LogSource<T> {
        LogSource {
            buf: vec![0; FIRST_BUF],
            named: sub.name().is_some(),
            sub,
            decode,
            stop,
        }
    }
}

impl<T: Send> Source<T> for LogSource<T> {
    fn next(&mut self, deadline: Instant) -> Result<Pulled<T>, BatchError> {
        loop {
            if stopped(&self.stop) {
                return Ok(Pulled::End);
            }
            match self
                .sub
                .recv_until(&mut self.buf, Some(slice_end(deadline)))
            {
                Ok(n) => return Ok(decoded(&mut self.decode, &self.buf[..n])),
                Err(RecvError::Timeout) => {
                    if Instant::now() >= deadline {
                        return Ok(Pulled::Idle);
                    }
                }
                Err(RecvError::BufferTooSmall { needed }) => self.buf.resize(needed, 0),
                Err(RecvError::Lagged(n)) => return Ok(Pulled::Lost(n)),
                Err(RecvError::Closed) => return Ok(Pulled::End),
                Err(e) => return Err(BatchError::Recv(e)),
            }
        }
    }

    fn settle(&mut self) -> Result<bool, BatchError> {
        if !self.named {
            return Ok(false);
        }
        self.sub.commit().map_err(BatchError::Cursor)?;
        Ok(true)
    }

    fn durable(&self) -> bool {
        self.named
    }

    fn waiting(&self) -> usize {
        usize::try_from(self.sub.lag()).unwrap_or(usize::MAX)
    }
}
