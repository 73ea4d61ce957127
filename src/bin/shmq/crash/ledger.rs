//! Self-checking messages, the append-only ledgers every child writes, and
//! a small deterministic random generator.
//!
//! # Messages
//! A message is fully determined by its id (`incarnation << 40 | seq`) and
//! the round's salt: its length (8 to `slot_size` bytes), its first 8 bytes
//! (the id, little-endian), its payload (a keystream of the id) and, when it
//! is 16 bytes or longer, its last 8 bytes (an FNV-1a checksum of the rest).
//! A receiver regenerates the expected message from the id it read and
//! compares every byte: a message with the wrong length or a single wrong
//! byte is reported, never taken for another one.
//!
//! # Ledgers
//! Each child incarnation appends fixed-size [`Record`]s to its own file,
//! one `write(2)` per record, right after the operation it records returned.
//! A SIGKILL can land between the operation and the record (the "message in
//! hand"), never inside a record that is counted: a trailing partial record
//! is ignored.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

/// Bits of an id that hold the sequence number.
const SEQ_BITS: u32 = 40;
/// Size of one ledger record in bytes.
pub const RECORD: usize = 32;

/// The id of message `seq` of producer incarnation `inc`.
pub fn id(inc: u32, seq: u64) -> u64 {
    (inc as u64) << SEQ_BITS | (seq & ((1 << SEQ_BITS) - 1))
}

/// The producer incarnation of an id.
pub fn inc_of(id: u64) -> u32 {
    (id >> SEQ_BITS) as u32
}

/// The sequence number of an id.
pub fn seq_of(id: u64) -> u64 {
    id & ((1 << SEQ_BITS) - 1)
}

/// SplitMix64: one step of a good 64-bit mixer.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small deterministic random generator (SplitMix64 stream).
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Writes message `id` into `out` (cleared first), for slots of `slot_size`
/// bytes (at least 8).
pub fn message(id: u64, salt: u64, slot_size: usize, out: &mut Vec<u8>) {
    out.clear();
    let len = 8 + (mix(id ^ salt ^ 0x4c45_4e47_5448) % (slot_size as u64 - 7)) as usize;
    out.extend_from_slice(&id.to_le_bytes());
    let mut k = id ^ salt;
    while out.len() < len {
        k = mix(k);
        let n = (len - out.len()).min(8);
        out.extend_from_slice(&k.to_le_bytes()[..n]);
    }
    if len >= 16 {
        let sum = fnv1a(&out[..len - 8]);
        out[len - 8..].copy_from_slice(&sum.to_le_bytes());
    }
}

/// What a receiver found in a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The message is exactly the one its id names.
    Good(u64),
    /// Its length is not the one its id names (or it is shorter than an id).
    WrongLength(u64),
    /// Right length, but some byte differs: torn or corrupted.
    Torn(u64),
}

/// Checks a received message against the one its id names. `scratch` is a
/// reusable buffer.
pub fn verify(msg: &[u8], salt: u64, slot_size: usize, scratch: &mut Vec<u8>) -> Verdict {
    if msg.len() < 8 {
        return Verdict::WrongLength(0);
    }
    let id = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
    message(id, salt, slot_size, scratch);
    if scratch.len() != msg.len() {
        Verdict::WrongLength(id)
    } else if scratch[..] != msg[..] {
        Verdict::Torn(id)
    } else {
        Verdict::Good(id)
    }
}

/// What a ledger record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Tag {
    /// The process started (`ts` only).
    Begin = 1,
    /// It is ready: opened, took its role or cursor (`pos`: a subscriber's
    /// start position).
    Start = 2,
    /// A send returned Ok (`id`, `len`; `pos`: a log's sequence number).
    Ack = 3,
    /// A receive returned a good message (`id`, `len`; `pos` for logs).
    Recv = 4,
    /// A receive returned a message of the wrong length (`id` as read).
    BadLength = 5,
    /// A receive returned a message with a wrong byte (`id` as read).
    BadData = 6,
    /// A receive returned `Lagged(n)` (`id`: n; `pos`: the new position).
    Lag = 7,
    /// A commit returned Ok (`pos`: the committed position).
    Commit = 8,
    /// The queue or log reported Closed: this process is done.
    Closed = 9,
}

impl Tag {
    fn from_u32(v: u32) -> Option<Tag> {
        Some(match v {
            1 => Tag::Begin,
            2 => Tag::Start,
            3 => Tag::Ack,
            4 => Tag::Recv,
            5 => Tag::BadLength,
            6 => Tag::BadData,
            7 => Tag::Lag,
            8 => Tag::Commit,
            9 => Tag::Closed,
            _ => return None,
        })
    }

    /// Whether the record shows the process made progress (sent, received,
    /// or was told what it lost).
    pub fn is_progress(self) -> bool {
        matches!(
            self,
            Tag::Ack | Tag::Recv | Tag::BadLength | Tag::BadData | Tag::Lag
        )
    }
}

/// One ledger record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// What happened.
    pub tag: Tag,
    /// Message length.
    pub len: u32,
    /// Message id (or the lag count).
    pub id: u64,
    /// Log position (see [`Tag`]).
    pub pos: u64,
    /// CLOCK_MONOTONIC nanoseconds when it was written.
    pub ts: u64,
}

impl Record {
    fn encode(&self) -> [u8; RECORD] {
        let mut b = [0u8; RECORD];
        b[0..4].copy_from_slice(&(self.tag as u32).to_le_bytes());
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.pos.to_le_bytes());
        b[24..32].copy_from_slice(&self.ts.to_le_bytes());
        b
    }

    /// Decodes one record; `None` for an unknown tag.
    pub fn decode(b: &[u8]) -> Option<Record> {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(Record {
            tag: Tag::from_u32(u32_at(0))?,
            len: u32_at(4),
            id: u64_at(8),
            pos: u64_at(16),
            ts: u64_at(24),
        })
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The append-only ledger of one child incarnation.
pub struct Ledger(File);

impl Ledger {
    /// Creates the ledger file (it must not exist).
    pub fn create(path: &Path) -> std::io::Result<Ledger> {
        OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map(Ledger)
    }

    /// Appends one record with one `write(2)`.
    pub fn put(&mut self, tag: Tag, id: u64, len: usize, pos: u64) -> std::io::Result<()> {
        let r = Record {
            tag,
            len: len as u32,
            id,
            pos,
            ts: now_ns(),
        };
        // A regular file: one write(2) of 32 bytes, not split.
        self.0.write_all(&r.encode())
    }
}

/// Every whole record of a ledger file (a missing file has none).
pub fn read_all(path: &Path) -> Vec<Record> {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    bytes
        .chunks_exact(RECORD)
        .filter_map(Record::decode)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_check_themselves() {
        let (mut m, mut s) = (Vec::new(), Vec::new());
        for seq in 0..2000 {
            let id = id(7, seq);
            message(id, 42, 64, &mut m);
            assert!((8..=64).contains(&m.len()));
            assert_eq!(verify(&m, 42, 64, &mut s), Verdict::Good(id));
            let mut torn = m.clone();
            let i = (seq as usize) % torn.len();
            torn[i] ^= 1;
            assert_ne!(verify(&torn, 42, 64, &mut s), Verdict::Good(id));
        }
    }
}
