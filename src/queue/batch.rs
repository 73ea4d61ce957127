//! Batch calls on the work queue: many messages per call, one index
//! publication per batch.
//!
//! - Multi-producer mode: `enqueue_batch` finds the run of free slots from
//!   `tail` and claims it with one CAS on `tail`, announced as a range in
//!   the thread's lane ([`crate::procs`], `claim_len`); it then writes and
//!   publishes each slot (each slot's stamp is still its own publication, as
//!   consumers poll stamps), the range's first slot last, so that consumers
//!   take the range whole rather than trailing the producer slot by slot.
//!   `dequeue_batch` claims the run of published slots from `head` with one
//!   CAS, hands each message to the caller in place and releases each slot
//!   right after. Crash recovery treats every
//!   position of a dead range on its own: unpublished ones become
//!   tombstones, unreleased ones are delivered again.
//! - Single-producer mode: the producer writes and stamps the slots, the
//!   first slot's stamp last, then stores `tail` once; the consumer reads
//!   the run of stamped slots, then stores `head` once. As the consumer
//!   cannot pass the first slot before its stamp, it takes the batch whole,
//!   from lines the producer has finished with. A producer that dies before
//!   that last stamp published nothing: the next producer clears the
//!   batch's other stamps (`repaired_tail`); one that dies after it leaves
//!   stamps past `tail`, which the next producer skips. A consumer that
//!   dies mid-batch never stored `head`, so the batch is delivered again.
//!
//! The shapes follow the log's batch calls: `enqueue_batch(&[&[u8]]) ->
//! Result<usize, _>` (how many went in, a prefix), and a closure-based
//! `dequeue_batch(max, f)`, plus `dequeue_batch_into(buf, lens)` that copies
//! into one flat buffer (for the C and Go bindings).

use std::time::{Duration, Instant};

use super::{stamp_pos, Consumer, Producer, Queue, Side};
use crate::layout::{
    prefetch_for_write, CLAIM_CONSUME, CLAIM_PRODUCE, MAX_POSITION, PREFETCH_AHEAD, SLOT_TOMBSTONE,
    STAMP_TOMB,
};
use crate::procs::Announce;
use crate::sync::Ordering;
use crate::{RecvError, SendError};

impl Queue {
    /// How many of `msgs` a batch may try: the prefix within the slot size
    /// (`TooLarge` if the first is not), at most a ring.
    fn batch_prefix(&self, msgs: &[&[u8]]) -> Result<usize, SendError> {
        if let Some(m) = msgs.first() {
            if m.len() > self.slot_size {
                return Err(SendError::TooLarge {
                    len: m.len(),
                    max: self.slot_size,
                });
            }
        }
        Ok(msgs
            .iter()
            .take(self.capacity as usize)
            .take_while(|m| m.len() <= self.slot_size)
            .count())
    }

    /// Claims the run of up to `want` (>= 1) free positions from `tail` with
    /// one CAS, announced as a range in `ann`: `(first, count)`.
    fn claim_tail_range(&self, want: u64, ann: &Announce<'_>) -> Result<(u64, u64), SendError> {
        let tail = &self.region.header().tail.value;
        // Relaxed: only a first guess; the stamps and the CAS decide.
        let mut t = tail.load(Ordering::Relaxed);
        loop {
            if t > MAX_POSITION - want {
                return Err(SendError::Corrupt {
                    detail: format!("tail {t} is beyond the largest position"),
                });
            }
            // SYNC(slot-free): Acquire, pairs with the Release swap in
            // `release`: the last consumer's copy-out is done before we write.
            let s = stamp_pos(self.slot(t).stamp.load(Ordering::Acquire));
            if s == t {
                let mut k = 1;
                // SYNC(slot-free): Acquire, as above, for each slot of the run.
                while k < want && stamp_pos(self.slot(t + k).stamp.load(Ordering::Acquire)) == t + k
                {
                    k += 1;
                }
                ann.set_range(CLAIM_PRODUCE, t, k);
                // SYNC(claim-close): SeqCst, as in `claim_tail`.
                // SYNC(claim-announce): its release half publishes the range
                // announced above to recoverers that Acquire tail.
                match tail.compare_exchange_weak(t, t + k, Ordering::SeqCst, Ordering::Relaxed) {
                    Ok(_) => return Ok((t, k)),
                    Err(cur) => t = cur,
                }
            } else {
                // Relaxed: coherence suffices, as in `claim_tail`.
                let cur = tail.load(Ordering::Relaxed);
                if cur != t {
                    t = cur;
                } else if (s.wrapping_sub(t) as i64) < 0 {
                    return Err(SendError::Full);
                } else {
                    return Err(SendError::Corrupt {
                        detail: self
                            .region
                            .segment()
                            .explain(format!("slot stamp {s} is ahead of tail {t}")),
                    });
                }
            }
        }
    }

    fn mpmc_enqueue_batch(&self, msgs: &[&[u8]]) -> Result<usize, SendError> {
        let n = self.batch_prefix(msgs)?;
        if n == 0 {
            return Ok(0);
        }
        if self.closed() {
            return Err(SendError::Closed);
        }
        let ann = self.announce().ok_or(SendError::Busy)?;
        let (t, k) = self.claim_tail_range(n as u64, &ann)?;
        failpoint!("queue-batch-claimed");
        if self.closed() {
            // As in `mpmc_enqueue_try`, for every position of the range.
            for p in t..t + k {
                self.publish_len(p, self.slot(p), 0, SLOT_TOMBSTONE);
            }
            self.count(&self.region.header().stats.tombstones, k);
            return Err(SendError::Closed);
        }
        // The range's first position last: consumers, stopped at it, then
        // take the range whole from lines we have finished with, instead of
        // trailing us slot by slot (as in `spsc_enqueue_batch`).
        for (i, msg) in msgs[..k as usize].iter().enumerate().skip(1) {
            let p = t + i as u64;
            if (i as u64) + PREFETCH_AHEAD < k {
                prefetch_for_write(self.slot(p + PREFETCH_AHEAD), self.slot_size);
            }
            self.publish(p, self.slot(p), msg, 0);
            failpoint!("queue-batch-published-one");
        }
        self.publish(t, self.slot(t), msgs[0], 0);
        if let Some(t) = self.region.segment().truncation_seen() {
            return Err(t.into());
        }
        Ok(k as usize)
    }

    /// Claims the run of up to `max` (>= 1) published positions from `head`
    /// whose messages fit in `budget` bytes together, with one CAS,
    /// announced as a range in `ann`: `(first, count)`.
    fn claim_head_range(
        &self,
        max: u64,
        budget: usize,
        ann: &Announce<'_>,
    ) -> Result<(u64, u64), RecvError> {
        let head = &self.region.header().head.value;
        // Relaxed: only a first guess; the stamps and the CAS decide.
        let mut h = head.load(Ordering::Relaxed);
        loop {
            if h > MAX_POSITION - max {
                return Err(RecvError::Corrupt {
                    detail: format!("head {h} is beyond the largest position"),
                });
            }
            // SYNC(slot-publish): Acquire, pairs with the Release swap in `publish_len`.
            let s = stamp_pos(self.slot(h).stamp.load(Ordering::Acquire));
            if s == h + 1 {
                let (mut k, mut bytes) = (0u64, 0usize);
                while k < max {
                    let p = h + k;
                    let slot = self.slot(p);
                    // SYNC(slot-publish): Acquire, as above, for each slot of the run.
                    let raw = slot.stamp.load(Ordering::Acquire);
                    if stamp_pos(raw) != p + 1 {
                        break;
                    }
                    // Relaxed: ordered after the publish by the Acquire above;
                    // unchanged until the position is claimed and released.
                    let len = slot.len.load(Ordering::Relaxed) as usize;
                    let tomb = raw & STAMP_TOMB != 0
                        || slot.flags.load(Ordering::Relaxed) & SLOT_TOMBSTONE != 0;
                    if !tomb && len <= self.slot_size {
                        if bytes + len > budget {
                            if k == 0 {
                                return Err(RecvError::BufferTooSmall { needed: len });
                            }
                            break;
                        }
                        bytes += len;
                    }
                    k += 1;
                }
                ann.set_range(CLAIM_CONSUME, h, k);
                // SYNC(claim-announce): Release, publishes the range to
                // recoverers that Acquire head; the payloads were ordered by
                // the Acquire stamp loads above.
                match head.compare_exchange_weak(h, h + k, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return Ok((h, k)),
                    Err(cur) => h = cur,
                }
            } else {
                // Relaxed: coherence suffices, as in `claim_head`.
                let cur = head.load(Ordering::Relaxed);
                if cur != h {
                    h = cur;
                } else if (s.wrapping_sub(h + 1) as i64) < 0 {
                    return Err(if self.drained(h) {
                        RecvError::Closed
                    } else {
                        RecvError::Empty
                    });
                } else {
                    return Err(RecvError::Corrupt {
                        detail: self
                            .region
                            .segment()
                            .explain(format!("slot stamp {s} is ahead of head {h}")),
                    });
                }
            }
        }
    }

    fn mpmc_dequeue_batch(
        &self,
        max: usize,
        budget: usize,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0);
        }
        let ann = self.announce().ok_or(RecvError::Busy)?;
        loop {
            match self.mpmc_dequeue_range(max, budget, &ann, f) {
                Ok(0) => continue, // only tombstones: the next run
                other => return other,
            }
        }
    }

    /// One claimed run of `mpmc_dequeue_batch`; `Ok(0)` if it held only tombstones.
    fn mpmc_dequeue_range(
        &self,
        max: usize,
        budget: usize,
        ann: &Announce<'_>,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        let max = (max as u64).min(self.capacity);
        let (h, k) = self.claim_head_range(max, budget, ann)?;
        failpoint!("queue-batch-consume-claimed");
        /// The positions of the range not handed out yet. If `f` panics, the
        /// one it was given counts as seen (released), and the rest go back
        /// to the queue by the crash-recovery path (delivered again).
        struct Rest<'q, 'a> {
            queue: &'q Queue,
            ann: &'q Announce<'a>,
            next: u64,
            end: u64,
        }
        impl Drop for Rest<'_, '_> {
            fn drop(&mut self) {
                if self.next >= self.end {
                    return;
                }
                let q = self.queue;
                q.release_at(self.next);
                self.ann.clear();
                for p in self.next + 1..self.end {
                    // Not named by any lane now: redelivered, or (if a slot
                    // before it is still held) left to a producer's recovery.
                    let _ = q.recover_orphan(p);
                }
            }
        }
        let mut rest = Rest {
            queue: self,
            ann,
            next: h,
            end: h + k,
        };
        let (mut delivered, mut corrupt) = (0usize, None);
        while rest.next < rest.end {
            let p = rest.next;
            let slot = self.slot(p);
            // Relaxed: ordered by the Acquire stamp loads of the claim; the
            // slot is ours until released.
            let raw = slot.stamp.load(Ordering::Relaxed);
            let len = slot.len.load(Ordering::Relaxed) as usize;
            let tomb =
                raw & STAMP_TOMB != 0 || slot.flags.load(Ordering::Relaxed) & SLOT_TOMBSTONE != 0;
            if tomb {
                self.count(&self.region.header().stats.skipped, 1);
            } else if len > self.slot_size {
                corrupt = Some(len);
            } else {
                // SAFETY: we own position p (claimed, not released); its
                // payload holds len <= slot_size bytes inside the validated
                // slot array, and stays until the release below.
                let msg = unsafe { std::slice::from_raw_parts(Self::payload(slot), len) };
                f(msg);
                delivered += 1;
            }
            self.release_at(p);
            rest.next += 1;
        }
        drop(rest);
        match corrupt {
            Some(len) if delivered == 0 => Err(RecvError::Corrupt {
                detail: format!("slot holds length {len} > slot size {}", self.slot_size),
            }),
            _ => Ok(delivered),
        }
    }

    /// Releases position `p`, which this thread claimed.
    fn release_at(&self, p: u64) {
        self.release(&super::Claim {
            pos: p,
            slot: self.slot(p),
            len: 0,
            tombstone: false,
        });
    }

    // ---- public ----

    /// Enqueues as many of `msgs` as fit now, in order, with one index
    /// publication (one CAS claiming the range on a multi-producer queue,
    /// one store of `tail` on a single-producer one); never waits. Returns
    /// how many went in: a prefix of `msgs`, at least one unless `msgs` is
    /// empty. The batch stops before a message longer than the slot size
    /// (call again with the rest to get its `TooLarge`).
    ///
    /// # Errors
    /// As [`Queue::enqueue_try`], when not even the first message went in.
    ///
    /// # Examples
    /// ```
    /// use shmq::{SendError, Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(8, 4)).unwrap();
    /// let msgs: [&[u8]; 6] = [b"a", b"b", b"c", b"d", b"e", b"f"];
    /// assert_eq!(q.enqueue_batch(&msgs), Ok(4)); // the ring holds 4
    /// assert_eq!(q.enqueue_batch(&msgs[4..]), Err(SendError::Full));
    /// ```
    pub fn enqueue_batch(&self, msgs: &[&[u8]]) -> Result<usize, SendError> {
        if self.roles.is_some() {
            return self
                .with_role(Side::Producer, |role| self.spsc_enqueue_batch(role, msgs))
                .unwrap_or_else(|pid| {
                    Err(SendError::RoleTaken {
                        role: "producer",
                        pid,
                    })
                });
        }
        self.produce_try(|| self.mpmc_enqueue_batch(msgs))
    }

    /// As [`Queue::enqueue_batch`], waiting while the queue is full (until
    /// at least one message goes in), up to `timeout` (`None`: no limit).
    pub fn enqueue_batch_block(
        &self,
        msgs: &[&[u8]],
        timeout: Option<Duration>,
    ) -> Result<usize, SendError> {
        self.enqueue_batch_until(msgs, timeout.map(|t| Instant::now() + t))
    }

    /// As [`Queue::enqueue_batch`], waiting while the queue is full, until
    /// `deadline` (`None`: no limit).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(8, 4).spsc(true)).unwrap();
    /// let msgs: [&[u8]; 2] = [b"one", b"two"];
    /// assert_eq!(q.enqueue_batch_until(&msgs, None), Ok(2));
    /// ```
    pub fn enqueue_batch_until(
        &self,
        msgs: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<usize, SendError> {
        if self.roles.is_some() {
            return self
                .with_role(Side::Producer, |role| {
                    spsc_enqueue_batch_until(self, role, msgs, deadline)
                })
                .unwrap_or_else(|pid| {
                    Err(SendError::RoleTaken {
                        role: "producer",
                        pid,
                    })
                });
        }
        self.wait_produce(deadline, || self.mpmc_enqueue_batch(msgs))
    }

    /// Hands up to `max` waiting messages to `f`, in order, each read in
    /// place (see [`crate::ConsumeGuard`] on untrusted bytes), with one index
    /// publication (one CAS claiming the range on a multi-consumer queue, one
    /// store of `head` on a single-consumer one); never waits. Returns how
    /// many `f` was given, at least one.
    ///
    /// On a multi-consumer queue each slot is freed right after `f` returns
    /// for it; on a single-consumer queue all are freed at the end. If `f`
    /// panics, the message it was given counts as delivered, and the rest of
    /// the batch is delivered again (counted as redelivered) or, on a
    /// single-consumer queue, stays queued.
    ///
    /// # Errors
    /// As [`Queue::dequeue_try`] (no `BufferTooSmall`).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(8, 8)).unwrap();
    /// q.enqueue_batch(&[b"a", b"bb", b"ccc"]).unwrap();
    /// let mut lens = Vec::new();
    /// assert_eq!(q.dequeue_batch(2, |m| lens.push(m.len())), Ok(2));
    /// assert_eq!(q.dequeue_batch(32, |m| lens.push(m.len())), Ok(1));
    /// assert_eq!(lens, [1, 2, 3]);
    /// ```
    pub fn dequeue_batch(&self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize, RecvError> {
        self.dequeue_batch_dyn(max, usize::MAX, &mut f)
    }

    fn dequeue_batch_dyn(
        &self,
        max: usize,
        budget: usize,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        if self.roles.is_some() {
            return self
                .with_role(Side::Consumer, |role| {
                    self.spsc_dequeue_batch(role, max, budget, f)
                })
                .unwrap_or_else(|pid| {
                    Err(RecvError::RoleTaken {
                        role: "consumer",
                        pid,
                    })
                });
        }
        self.consume_try(|| self.mpmc_dequeue_batch(max, budget, f))
    }

    /// As [`Queue::dequeue_batch`], waiting while the queue is empty, up to
    /// `timeout` (`None`: no limit).
    pub fn dequeue_batch_block(
        &self,
        max: usize,
        f: impl FnMut(&[u8]),
        timeout: Option<Duration>,
    ) -> Result<usize, RecvError> {
        self.dequeue_batch_until(max, f, timeout.map(|t| Instant::now() + t))
    }

    /// As [`Queue::dequeue_batch`], waiting while the queue is empty, until
    /// `deadline` (`None`: no limit).
    pub fn dequeue_batch_until(
        &self,
        max: usize,
        mut f: impl FnMut(&[u8]),
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        self.dequeue_batch_until_dyn(max, usize::MAX, &mut f, deadline)
    }

    fn dequeue_batch_until_dyn(
        &self,
        max: usize,
        budget: usize,
        f: &mut dyn FnMut(&[u8]),
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        if self.roles.is_some() {
            return self
                .with_role(Side::Consumer, |role| {
                    spsc_dequeue_batch_until(self, role, max, budget, f, deadline)
                })
                .unwrap_or_else(|pid| {
                    Err(RecvError::RoleTaken {
                        role: "consumer",
                        pid,
                    })
                });
        }
        self.wait_consume(deadline, || self.mpmc_dequeue_batch(max, budget, f))
    }

    /// Dequeues up to `lens.len()` messages into `buf`, back to back: message
    /// `i` is `lens[i]` bytes, after those before it. Takes only messages
    /// that fit in `buf` together (the rest stay queued); never waits.
    /// Returns how many.
    ///
    /// # Errors
    /// As [`Queue::dequeue_try`]: [`RecvError::BufferTooSmall`] if the
    /// first message alone does not fit (it stays queued).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(8, 8)).unwrap();
    /// q.enqueue_batch(&[b"ab", b"cde", b"fgh"]).unwrap();
    /// let (mut buf, mut lens) = ([0u8; 6], [0usize; 4]);
    /// assert_eq!(q.dequeue_batch_into(&mut buf, &mut lens), Ok(2)); // "fgh" does not fit
    /// assert_eq!((&buf[..5], &lens[..2]), (&b"abcde"[..], &[2, 3][..]));
    /// ```
    pub fn dequeue_batch_into(
        &self,
        buf: &mut [u8],
        lens: &mut [usize],
    ) -> Result<usize, RecvError> {
        let mut into = FlatSink::new(buf, lens);
        self.dequeue_batch_dyn(into.max(), into.budget(), &mut |m| into.push(m))
    }

    /// As [`Queue::dequeue_batch_into`], waiting while the queue is empty,
    /// until `deadline` (`None`: no limit).
    pub fn dequeue_batch_into_until(
        &self,
        buf: &mut [u8],
        lens: &mut [usize],
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        let mut into = FlatSink::new(buf, lens);
        let (max, budget) = (into.max(), into.budget());
        self.dequeue_batch_until_dyn(max, budget, &mut |m| into.push(m), deadline)
    }
}

/// The sink of `dequeue_batch_into`: a flat buffer and a lengths array.
struct FlatSink<'b> {
    buf: &'b mut [u8],
    lens: &'b mut [usize],
    at: usize,
    n: usize,
}

impl<'b> FlatSink<'b> {
    fn new(buf: &'b mut [u8], lens: &'b mut [usize]) -> FlatSink<'b> {
        FlatSink {
            buf,
            lens,
            at: 0,
            n: 0,
        }
    }
    fn max(&self) -> usize {
        self.lens.len()
    }
    fn budget(&self) -> usize {
        self.buf.len()
    }
    fn push(&mut self, m: &[u8]) {
        // The claim took only what fits (budget); checked all the same.
        if let (Some(dst), Some(len)) = (
            self.buf.get_mut(self.at..self.at + m.len()),
            self.lens.get_mut(self.n),
        ) {
            dst.copy_from_slice(m);
            *len = m.len();
            self.at += m.len();
            self.n += 1;
        }
    }
}

fn spsc_enqueue_batch_until(
    q: &Queue,
    role: &mut super::spsc::Role,
    msgs: &[&[u8]],
    deadline: Option<Instant>,
) -> Result<usize, SendError> {
    match q.spsc_enqueue_batch(role, msgs) {
        Err(SendError::Full) => {}
        other => return other,
    }
    q.spsc_produce_wait(role, deadline, |q, role| q.spsc_enqueue_batch(role, msgs))
}

fn spsc_dequeue_batch_until(
    q: &Queue,
    role: &mut super::spsc::Role,
    max: usize,
    budget: usize,
    f: &mut dyn FnMut(&[u8]),
    deadline: Option<Instant>,
) -> Result<usize, RecvError> {
    match q.spsc_dequeue_batch(role, max, budget, f) {
        Err(RecvError::Empty) => {}
        other => return other,
    }
    q.spsc_consume_wait(role, deadline, |q, role| {
        q.spsc_dequeue_batch(role, max, budget, f)
    })
}

impl Producer {
    /// As [`Queue::enqueue_batch`].
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(8, 4).spsc(true)).unwrap();
    /// let mut p = q.into_producer().unwrap();
    /// assert_eq!(p.enqueue_batch(&[b"x", b"y"]), Ok(2));
    /// ```
    pub fn enqueue_batch(&mut self, msgs: &[&[u8]]) -> Result<usize, SendError> {
        match &mut self.role {
            Some(role) => self.queue.spsc_enqueue_batch(role, msgs),
            None => self
                .queue
                .produce_try(|| self.queue.mpmc_enqueue_batch(msgs)),
        }
    }

    /// As [`Queue::enqueue_batch_block`].
    pub fn enqueue_batch_block(
        &mut self,
        msgs: &[&[u8]],
        timeout: Option<Duration>,
    ) -> Result<usize, SendError> {
        self.enqueue_batch_until(msgs, timeout.map(|t| Instant::now() + t))
    }

    /// As [`Queue::enqueue_batch_until`].
    pub fn enqueue_batch_until(
        &mut self,
        msgs: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<usize, SendError> {
        match &mut self.role {
            Some(role) => spsc_enqueue_batch_until(&self.queue, role, msgs, deadline),
            None => self.queue.enqueue_batch_until(msgs, deadline),
        }
    }
}

impl Consumer {
    /// As [`Queue::dequeue_batch`].
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(8, 4).spsc(true)).unwrap();
    /// q.enqueue_batch(&[b"x", b"y"]).unwrap();
    /// let mut c = q.into_consumer().unwrap();
    /// let mut got = Vec::new();
    /// assert_eq!(c.dequeue_batch(8, |m| got.extend_from_slice(m)), Ok(2));
    /// assert_eq!(got, b"xy");
    /// ```
    pub fn dequeue_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        self.dequeue_batch_dyn(max, usize::MAX, &mut f)
    }

    fn dequeue_batch_dyn(
        &mut self,
        max: usize,
        budget: usize,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        match &mut self.role {
            Some(role) => self.queue.spsc_dequeue_batch(role, max, budget, f),
            None => self
                .queue
                .consume_try(|| self.queue.mpmc_dequeue_batch(max, budget, f)),
        }
    }

    /// As [`Queue::dequeue_batch_block`].
    pub fn dequeue_batch_block(
        &mut self,
        max: usize,
        f: impl FnMut(&[u8]),
        timeout: Option<Duration>,
    ) -> Result<usize, RecvError> {
        self.dequeue_batch_until(max, f, timeout.map(|t| Instant::now() + t))
    }

    /// As [`Queue::dequeue_batch_until`].
    pub fn dequeue_batch_until(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        self.dequeue_batch_until_dyn(max, usize::MAX, &mut f, deadline)
    }

    fn dequeue_batch_until_dyn(
        &mut self,
        max: usize,
        budget: usize,
        f: &mut dyn FnMut(&[u8]),
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        match &mut self.role {
            Some(role) => spsc_dequeue_batch_until(&self.queue, role, max, budget, f, deadline),
            None => self.queue.dequeue_batch_until_dyn(max, budget, f, deadline),
        }
    }

    /// As [`Queue::dequeue_batch_into`].
    pub fn dequeue_batch_into(
        &mut self,
        buf: &mut [u8],
        lens: &mut [usize],
    ) -> Result<usize, RecvError> {
        let mut into = FlatSink::new(buf, lens);
        let (max, budget) = (into.max(), into.budget());
        self.dequeue_batch_dyn(max, budget, &mut |m| into.push(m))
    }

    /// As [`Queue::dequeue_batch_into_until`].
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// use std::time::{Duration, Instant};
    /// let q = Queue::in_process(&QueueConfig::new(8, 4).spsc(true)).unwrap();
    /// q.enqueue_batch(&[b"ab", b"c"]).unwrap();
    /// let mut c = q.into_consumer().unwrap();
    /// let (mut buf, mut lens) = ([0u8; 8], [0usize; 4]);
    /// let soon = Some(Instant::now() + Duration::from_millis(10));
    /// assert_eq!(c.dequeue_batch_into_until(&mut buf, &mut lens, soon), Ok(2));
    /// assert_eq!((&buf[..3], &lens[..2]), (&b"abc"[..], &[2, 1][..]));
    /// let soon = Some(Instant::now() + Duration::from_millis(10));
    /// assert_eq!(
    ///     c.dequeue_batch_into_until(&mut buf, &mut lens, soon),
    ///     Err(shmq::RecvError::Timeout)
    /// );
    /// ```
    pub fn dequeue_batch_into_until(
        &mut self,
        buf: &mut [u8],
        lens: &mut [usize],
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        let mut into = FlatSink::new(buf, lens);
        let (max, budget) = (into.max(), into.budget());
        self.dequeue_batch_until_dyn(max, budget, &mut |m| into.push(m), deadline)
    }
}
