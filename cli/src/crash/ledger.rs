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
//! mapped shared (`MAP_SHARED`), right after the operation a record tells of
//! returned. A store to a shared file mapping is in the page cache at once,
//! so a SIGKILL loses nothing that was stored; and recording costs a few
//! stores, not a system call, so a random kill lands inside the engine
//! most of the time, not inside the bookkeeping. A record becomes visible
//! when its tag is stored (Release, last); a record whose tag was never
//! stored does not exist. The file is sparse: only what is written takes room.
//! A SIGKILL can still land between an operation and its record: the
//! "message in hand" (see `check`).

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bits of an id that hold the sequence number.
const SEQ_BITS: u32 = 40;
/// Size of one ledger record in bytes.
const RECORD: usize = std::mem::size_of::<Slot>();
/// Size of a ledger file (sparse): room for 128 Mi records.
const LEDGER_BYTES: usize = 1 << 32;

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
    /// A batch receive returned (`id`: how many messages it handed out, 0
    /// on an error). The `Recv` records since the previous one were written
    /// inside that call; after a consumer's last `BatchEnd`, they tell the
    /// batch it was killed in.
    BatchEnd = 10,
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
            10 => Tag::BatchEnd,
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

/// A record as it lies in the mapped file. Every field is atomic: the
/// campaign reads ledgers while their children write them.
#[repr(C)]
struct Slot {
    /// `Tag as u32`; 0 until the record is complete.
    tag: AtomicU32,
    len: AtomicU32,
    id: AtomicU64,
    pos: AtomicU64,
    ts: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

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

/// A ledger file mapped shared, as an array of record slots.
struct Map {
    ptr: *mut Slot,
    slots: usize,
}

impl Map {
    fn new(file: &File, writable: bool) -> std::io::Result<Map> {
        let len = (file.metadata()?.len() as usize).min(LEDGER_BYTES);
        if len < RECORD {
            return Ok(Map {
                ptr: std::ptr::null_mut(),
                slots: 0,
            });
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh shared mapping of an open file; the kernel picks
        // the address; nothing else is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Map {
            ptr: ptr.cast(),
            slots: len / RECORD,
        })
    }

    fn slot(&self, i: usize) -> Option<&Slot> {
        // SAFETY: i < slots, so the slot lies inside the mapping, which is
        // page-aligned (so 32-byte slots are aligned) and lives as long as
        // `self`. Slots hold only atomics: concurrent access is defined.
        (i < self.slots).then(|| unsafe { &*self.ptr.add(i) })
    }

    /// Record `i`, if its tag has been stored.
    fn get(&self, i: usize) -> Option<Record> {
        let s = self.slot(i)?;
        // SYNC(ledger): Acquire, pairs with the Release store of the tag in `put`.
        let tag = Tag::from_u32(s.tag.load(Ordering::Acquire))?;
        // Relaxed: ordered by the Acquire above.
        Some(Record {
            tag,
            len: s.len.load(Ordering::Relaxed),
            id: s.id.load(Ordering::Relaxed),
            pos: s.pos.load(Ordering::Relaxed),
            ts: s.ts.load(Ordering::Relaxed),
        })
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: unmaps exactly the mapping made in `new`; no reference
            // into it outlives `self`.
            unsafe { libc::munmap(self.ptr.cast(), self.slots * RECORD) };
        }
    }
}

/// The append-only ledger of one child incarnation (its writer).
pub struct Ledger {
    map: Map,
    next: usize,
}

impl Ledger {
    /// Creates the ledger file (it must not exist) and maps it.
    pub fn create(path: &Path) -> std::io::Result<Ledger> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len(LEDGER_BYTES as u64)?;
        Ok(Ledger {
            map: Map::new(&file, true)?,
            next: 0,
        })
    }

    /// Appends one record: its fields, then its tag.
    pub fn put(&mut self, tag: Tag, id: u64, len: usize, pos: u64) -> std::io::Result<()> {
        let Some(s) = self.map.slot(self.next) else {
            return Err(std::io::Error::other("the ledger is full"));
        };
        // Relaxed: published by the Release store of the tag below.
        s.len.store(len as u32, Ordering::Relaxed);
        s.id.store(id, Ordering::Relaxed);
        s.pos.store(pos, Ordering::Relaxed);
        s.ts.store(now_ns(), Ordering::Relaxed);
        // SYNC(ledger): Release, pairs with the Acquire load of the tag in `Map::get`.
        s.tag.store(tag as u32, Ordering::Release);
        self.next += 1;
        Ok(())
    }
}

/// Reads a ledger while (or after) its child writes it.
pub struct Reader {
    map: Map,
    next: usize,
}

impl Reader {
    /// Maps the ledger at `path`; `None` until the child has created and sized it.
    pub fn open(path: &Path) -> Option<Reader> {
        let file = File::open(path).ok()?;
        let map = Map::new(&file, false).ok()?;
        (map.slots > 0).then_some(Reader { map, next: 0 })
    }

    /// The next complete record, if there is one yet.
    pub fn next(&mut self) -> Option<Record> {
        let r = self.map.get(self.next)?;
        self.next += 1;
        Some(r)
    }
}

/// Every complete record of a ledger file (a missing file has none).
pub fn read_all(path: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    if let Some(mut r) = Reader::open(path) {
        while let Some(rec) = r.next() {
            out.push(rec);
        }
    }
    out
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

    #[test]
    fn ledgers_read_back_what_was_put() {
        let path =
            std::env::temp_dir().join(format!("shmq-crash-ledger-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut led = Ledger::create(&path).unwrap();
        let mut reader = Reader::open(&path).unwrap();
        assert_eq!(reader.next(), None);
        led.put(Tag::Begin, 0, 0, 0).unwrap();
        led.put(Tag::Recv, id(3, 9), 17, 5).unwrap();
        assert_eq!(reader.next().map(|r| r.tag), Some(Tag::Begin));
        let r = reader.next().unwrap();
        assert_eq!((r.tag, r.id, r.len, r.pos), (Tag::Recv, id(3, 9), 17, 5));
        assert_eq!(reader.next(), None);
        assert_eq!(read_all(&path).len(), 2);
        std::fs::remove_file(&path).unwrap();
    }
}
