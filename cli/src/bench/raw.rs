//! The machine's raw limits, hand-written and minimal, measured beside the
//! queue in the same run:
//!
//! - [`Lines`]: a bare cache-line ping-pong. One line per direction (two
//!   lines apart, against adjacent-line prefetch), each holding a sequence
//!   word and, for messages up to 120 bytes, the message itself; larger
//!   messages sit in their own lines after it. The sender copies the message
//!   in, then stores the sequence with Release; the receiver spins on an
//!   Acquire load of the sequence, then copies the message out.
//! - [`Ring`]: a minimal single-producer/single-consumer ring of fixed-size
//!   messages (Lamport's ring, as in rtrb): `tail` and `head` on lines of
//!   their own, each side caching the other's index and publishing its own
//!   with a Release store after every message. No batching, no slot headers.
//!
//! Both live in a POSIX segment created by the parent; every wait is a
//! bounded spin that also looks at the Ctrl-C flag.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use shmq::{Segment, Target};

use crate::signal;

/// Why a raw wait gave up.
#[derive(Debug)]
pub enum Stop {
    /// The other side sent the stop sequence.
    Done,
    /// The deadline passed.
    Timeout,
    /// Ctrl-C.
    Interrupted,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Done => "the other side stopped",
            Stop::Timeout => "timed out waiting for the other process",
            Stop::Interrupted => "interrupted",
        })
    }
}

impl std::error::Error for Stop {}

/// A spin wait that reads the clock and the Ctrl-C flag only every 4096 spins.
struct Spin {
    n: u32,
    deadline: Instant,
}

impl Spin {
    fn new(deadline: Instant) -> Spin {
        Spin { n: 0, deadline }
    }

    #[inline]
    fn spin(&mut self) -> Result<(), Stop> {
        self.n = self.n.wrapping_add(1);
        if self.n % 4096 == 0 {
            if signal::interrupted() {
                return Err(Stop::Interrupted);
            }
            if Instant::now() >= self.deadline {
                return Err(Stop::Timeout);
            }
        }
        std::hint::spin_loop();
        Ok(())
    }
}

/// The sequence that tells the other side of a ping-pong to stop.
pub const STOP: u64 = u64::MAX;

/// Bytes a line leaves for the message after its sequence word.
const INLINE: usize = 120;

/// Two one-way channels of one message each, for the raw ping-pong.
pub struct Lines {
    seg: Segment,
    size: usize,
    dir_bytes: usize,
}

impl Lines {
    fn bytes(size: usize) -> usize {
        let dir = if size <= INLINE {
            256
        } else {
            256 + size.div_ceil(128) * 128 + 128
        };
        2 * dir
    }

    /// Creates the segment for messages of `size` bytes.
    pub fn create(target: &Target, size: usize) -> anyhow::Result<Lines> {
        let seg = Segment::create(target, Self::bytes(size), 0o600)?;
        Ok(Lines {
            seg,
            size,
            dir_bytes: Self::bytes(size) / 2,
        })
    }

    /// Opens the segment created by the other side.
    pub fn open(target: &Target, size: usize) -> anyhow::Result<Lines> {
        let seg = Segment::open(target)?;
        anyhow::ensure!(
            seg.len() >= Self::bytes(size),
            "raw segment is smaller than expected"
        );
        Ok(Lines {
            seg,
            size,
            dir_bytes: Self::bytes(size) / 2,
        })
    }

    fn seq(&self, dir: usize) -> &AtomicU64 {
        // SAFETY: dir is 0 or 1, so the offset lies inside the mapping, which
        // is page aligned; dir_bytes is a multiple of 128, so it is aligned.
        unsafe { &*(self.seg.as_ptr().add(dir * self.dir_bytes) as *const AtomicU64) }
    }

    fn payload(&self, dir: usize) -> *mut u8 {
        let off = dir * self.dir_bytes + if self.size <= INLINE { 8 } else { 256 };
        // SAFETY: off + size <= (dir + 1) * dir_bytes <= the mapping's length.
        unsafe { self.seg.as_ptr().add(off) }
    }

    /// Sends message `seq` (not 0) with `msg` in direction `dir`.
    #[inline]
    pub fn send(&self, dir: usize, seq: u64, msg: &[u8]) {
        debug_assert_eq!(msg.len(), self.size);
        // SAFETY: the payload area holds `size` bytes; the receiver reads it
        // only after seeing `seq`, and replies before we write it again.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.payload(dir), self.size) };
        // SYNC(raw-line): Release, pairs with the Acquire load in `recv`.
        self.seq(dir).store(seq, Ordering::Release);
    }

    /// Sends the stop sequence in direction `dir`.
    pub fn stop(&self, dir: usize) {
        // SYNC(raw-line): Release, pairs with the Acquire load in `recv`.
        self.seq(dir).store(STOP, Ordering::Release);
    }

    /// Waits for message `seq` in direction `dir` and copies it into `buf`.
    #[inline]
    pub fn recv(
        &self,
        dir: usize,
        seq: u64,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<(), Stop> {
        let word = self.seq(dir);
        let mut spin = Spin::new(deadline);
        loop {
            // SYNC(raw-line): Acquire, pairs with the Release store in `send`.
            match word.load(Ordering::Acquire) {
                s if s == seq => break,
                STOP => return Err(Stop::Done),
                _ => spin.spin()?,
            }
        }
        // SAFETY: the sender wrote `size` bytes before its Release store,
        // and will not write again until we reply.
        unsafe { std::ptr::copy_nonoverlapping(self.payload(dir), buf.as_mut_ptr(), self.size) };
        Ok(())
    }
}

/// Offsets of the ring's control words, each on its own pair of lines.
const TAIL: usize = 0;
const HEAD: usize = 256;
const DONE: usize = 512;
const SLOTS: usize = 1024;

/// A single-producer/single-consumer ring of `size`-byte messages.
pub struct Ring {
    seg: Segment,
    size: usize,
    stride: usize,
    capacity: u64,
}

impl Ring {
    fn bytes(size: usize, capacity: u64) -> usize {
        SLOTS + size.div_ceil(8) * 8 * capacity as usize
    }

    /// Creates the ring's segment.
    pub fn create(target: &Target, size: usize, capacity: u64) -> anyhow::Result<Ring> {
        let seg = Segment::create(target, Self::bytes(size, capacity), 0o600)?;
        Ok(Ring {
            seg,
            size,
            stride: size.div_ceil(8) * 8,
            capacity,
        })
    }

    /// Opens a ring created by the parent.
    pub fn open(target: &Target, size: usize, capacity: u64) -> anyhow::Result<Ring> {
        let seg = Segment::open(target)?;
        anyhow::ensure!(
            seg.len() >= Self::bytes(size, capacity),
            "raw ring is smaller than expected"
        );
        Ok(Ring {
            seg,
            size,
            stride: size.div_ceil(8) * 8,
            capacity,
        })
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        // SAFETY: off is TAIL, HEAD or DONE, inside the mapping and 8-aligned.
        unsafe { &*(self.seg.as_ptr().add(off) as *const AtomicU64) }
    }

    fn slot(&self, pos: u64) -> *mut u8 {
        let i = (pos % self.capacity) as usize;
        // SAFETY: i < capacity, so the slot lies inside the mapping.
        unsafe { self.seg.as_ptr().add(SLOTS + i * self.stride) }
    }
}

/// The producing side of a [`Ring`].
pub struct Producer<'a> {
    ring: &'a Ring,
    tail: u64,
    cached_head: u64,
}

impl<'a> Producer<'a> {
    /// The producer; there must be only one.
    pub fn new(ring: &'a Ring) -> Producer<'a> {
        Producer {
            ring,
            tail: 0,
            cached_head: 0,
        }
    }

    /// Appends `msg`, spinning while the ring is full.
    #[inline]
    pub fn push(&mut self, msg: &[u8], deadline: Instant) -> Result<(), Stop> {
        if self.tail - self.cached_head >= self.ring.capacity {
            let mut spin = Spin::new(deadline);
            loop {
                // SYNC(raw-ring-free): Acquire, pairs with the consumer's
                // Release store of head: its copy-out is done.
                self.cached_head = self.ring.word(HEAD).load(Ordering::Acquire);
                if self.tail - self.cached_head < self.ring.capacity {
                    break;
                }
                spin.spin()?;
            }
        }
        // SAFETY: the slot of `tail` is free (tail - head < capacity) and
        // only this producer writes it; it holds `size` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), self.ring.slot(self.tail), self.ring.size)
        };
        self.tail += 1;
        // SYNC(raw-ring-publish): Release, pairs with the consumer's Acquire load of tail.
        self.ring.word(TAIL).store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Tells the consumer that nothing follows the messages pushed so far.
    pub fn finish(&self) {
        // SYNC(raw-ring-done): Release, pairs with the consumer's Acquire load of done.
        self.ring.word(DONE).store(self.tail + 1, Ordering::Release);
    }
}

/// The consuming side of a [`Ring`].
pub struct Consumer<'a> {
    ring: &'a Ring,
    head: u64,
    cached_tail: u64,
}

impl<'a> Consumer<'a> {
    /// The consumer; there must be only one.
    pub fn new(ring: &'a Ring) -> Consumer<'a> {
        Consumer {
            ring,
            head: 0,
            cached_tail: 0,
        }
    }

    /// Copies the next message into `buf`; `Ok(false)` once the producer
    /// has finished and everything was taken.
    #[inline]
    pub fn pop(&mut self, buf: &mut [u8], deadline: Instant) -> Result<bool, Stop> {
        if self.head == self.cached_tail {
            let mut spin = Spin::new(deadline);
            loop {
                // SYNC(raw-ring-publish): Acquire, pairs with the producer's Release store of tail.
                self.cached_tail = self.ring.word(TAIL).load(Ordering::Acquire);
                if self.head != self.cached_tail {
                    break;
                }
                // SYNC(raw-ring-done): Acquire, pairs with the Release in `finish`.
                let done = self.ring.word(DONE).load(Ordering::Acquire);
                if done != 0 && done - 1 == self.head {
                    return Ok(false);
                }
                spin.spin()?;
            }
        }
        // SAFETY: head < tail: the producer published this slot (Acquire
        // above) and will not reuse it until we store the new head.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ring.slot(self.head),
                buf.as_mut_ptr(),
                self.ring.size,
            )
        };
        self.head += 1;
        // SYNC(raw-ring-free): Release, pairs with the producer's Acquire load of head.
        self.ring.word(HEAD).store(self.head, Ordering::Release);
        Ok(true)
    }
}
