//! The in route's state file: which sequence number of each source was last
//! applied to the local target, so that a restarted bridge drops what it
//! already published (NATS redelivers what was not acknowledged; an out
//! bridge that restarts re-sends what it had not committed).
//!
//! # Protocol
//!
//! The file is one record of at most [`PAGE`] bytes, rewritten in place at
//! offset 0 by one `pwrite` (a single page: Linux copies it whole or not at
//! all when the writer is killed; a SIGKILL is acted on only between pages).
//! It holds:
//!
//! - `applied`: per source (`host/segment`), the last sequence number known
//!   to be in the local target;
//! - an *intent*: the batch about to be written, in order, and `base`, the
//!   target's [`Sink::next_seq`](crate::local::Sink::next_seq) before it.
//!
//! Before writing a batch the bridge folds the previous intent into
//! `applied` (it was written completely) and records the new one. After a
//! kill, at any instruction, the target's `next_seq() - base` says how many
//! messages of the intent made it into the target: those are folded in,
//! the rest were not written (they come again from NATS, since they were
//! not acknowledged). This holds while the bridge is the target's only
//! publisher; a count larger than the intent means someone else published,
//! and the bridge says so and assumes the whole intent was applied (it may
//! then drop messages it did not write: never duplicate them).
//!
//! A record that fails its checksum is an error, not a fresh start.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The record's largest size: one page.
pub const PAGE: usize = 4096;
/// Most messages one intent names (10 bytes each).
pub const MAX_INTENT: usize = 128;
const MAGIC: &[u8; 8] = b"SHMQBRS1";
/// The source index of a message without `Shmq-` headers.
pub const NO_SOURCE: u16 = u16::MAX;

/// The state of one in route.
#[derive(Debug)]
pub struct State {
    path: PathBuf,
    file: File,
    /// Source keys, in first-seen order (their index is stored in intents).
    keys: Vec<String>,
    index: HashMap<String, u16>,
    /// Per source, by index: one past the last applied sequence number (0:
    /// nothing applied yet).
    applied: Vec<u64>,
    /// The target's `next_seq` before the intent's batch.
    base: u64,
    /// The batch being written: (source index, sequence number).
    intent: Vec<(u16, u64)>,
}

/// What [`State::open`] found after the last run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Messages of the last intent found in the target (folded in).
    pub applied: u64,
    /// Messages of the last intent not in the target (they come again).
    pub not_applied: u64,
    /// Messages in the target beyond the intent: another publisher wrote.
    pub foreign: u64,
}

impl State {
    /// Opens (or creates, empty) the state file at `path`, and reconciles
    /// its last intent with the target's current `next_seq`.
    pub fn open(path: &Path, next_seq: u64) -> Result<(State, Recovered)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening state file {}", path.display()))?;
        let mut raw = vec![0u8; PAGE];
        let mut got = 0;
        while got < PAGE {
            let n = file.read_at(&mut raw[got..], got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let mut state = State {
            path: path.to_owned(),
            file,
            keys: Vec::new(),
            index: HashMap::new(),
            applied: Vec::new(),
            base: next_seq,
            intent: Vec::new(),
        };
        let mut rec = Recovered::default();
        if got > 0 {
            if let Err(e) = state.decode(&raw[..got]) {
                return Err(crate::exit::fail(
                    crate::exit::CORRUPT,
                    format!(
                        "state file {} is corrupt ({e:#}); it says which messages were applied, \
                         so the bridge does not start over on its own: restore it, or remove it \
                         to accept duplicates",
                        path.display()
                    ),
                ));
            }
            let written = next_seq.saturating_sub(state.base);
            let n = state.intent.len() as u64;
            rec.applied = written.min(n);
            rec.not_applied = n - rec.applied;
            rec.foreign = written.saturating_sub(n);
            state.intent.truncate(rec.applied as usize);
            state.fold();
        }
        state.base = next_seq;
        state.save()?;
        Ok((state, rec))
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last applied sequence number of `source`, if any.
    #[cfg(test)]
    pub fn last(&self, source: &str) -> Option<u64> {
        self.index
            .get(source)
            .and_then(|&i| self.applied[i as usize].checked_sub(1))
    }

    /// The last applied sequence number of the source of index `i`.
    pub fn last_of(&self, i: u16) -> Option<u64> {
        self.applied.get(i as usize).and_then(|a| a.checked_sub(1))
    }

    /// The index of `source`, adding it (the caller saves before relying
    /// on it across a crash: [`State::begin`] does).
    pub fn source(&mut self, source: &str) -> Result<u16> {
        if let Some(&i) = self.index.get(source) {
            return Ok(i);
        }
        if self.keys.len() >= NO_SOURCE as usize || source.len() > 512 {
            bail!("too many sources, or a source name of over 512 bytes: {source:?}");
        }
        let i = self.keys.len() as u16;
        self.keys.push(source.to_owned());
        self.index.insert(source.to_owned(), i);
        self.applied.push(0);
        Ok(i)
    }

    /// Folds the last batch into `applied` (it was written) and records
    /// `batch` as the next intent, with the target's `next_seq` now. An
    /// entry with source [`NO_SOURCE`] is a message without `Shmq-` headers:
    /// counted, never deduplicated.
    pub fn begin(&mut self, batch: &[(u16, u64)], next_seq: u64) -> Result<()> {
        debug_assert!(batch.len() <= MAX_INTENT);
        self.fold();
        self.intent.extend_from_slice(batch);
        self.base = next_seq;
        self.save()
    }

    /// Folds the last batch, of which the first `written` messages are in
    /// the target, and saves with no intent (a clean stop, or a batch cut
    /// short by shutdown).
    pub fn finish(&mut self, written: usize, next_seq: u64) -> Result<()> {
        self.intent.truncate(written);
        self.fold();
        self.base = next_seq;
        self.save()
    }

    /// Folds the last batch into `applied` in memory: the caller wrote all
    /// of it (the file is updated by the next [`State::begin`]).
    pub fn settle(&mut self) {
        self.fold();
    }

    fn fold(&mut self) {
        for (i, seq) in self.intent.drain(..) {
            if let Some(a) = self.applied.get_mut(i as usize) {
                *a = (*a).max(seq.saturating_add(1));
            }
        }
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(PAGE);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.intent.len() as u32).to_le_bytes());
        for (k, a) in self.keys.iter().zip(&self.applied) {
            out.extend_from_slice(&(k.len() as u16).to_le_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&a.to_le_bytes());
        }
        for (i, s) in &self.intent {
            out.extend_from_slice(&i.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
        }
        let sum = fnv(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        if out.len() > PAGE {
            bail!(
                "state of {} sources does not fit one page; use one route per few sources",
                self.keys.len()
            );
        }
        Ok(out)
    }

    fn decode(&mut self, raw: &[u8]) -> Result<()> {
        let mut r = Reader { raw, at: 0 };
        if r.take(8)? != MAGIC {
            bail!("bad magic");
        }
        self.base = r.u64()?;
        let nkeys = r.u32()? as usize;
        let nintent = r.u32()? as usize;
        if nkeys > PAGE || nintent > MAX_INTENT {
            bail!("impossible counts {nkeys}, {nintent}");
        }
        for _ in 0..nkeys {
            let len = r.u16()? as usize;
            let key = std::str::from_utf8(r.take(len)?)
                .context("source name")?
                .to_owned();
            let last = r.u64()?;
            let i = self.source(&key)?;
            self.applied[i as usize] = last;
        }
        for _ in 0..nintent {
            let i = r.u16()?;
            let s = r.u64()?;
            if i as usize >= nkeys && i != NO_SOURCE {
                bail!("intent names source {i} of {nkeys}");
            }
            self.intent.push((i, s));
        }
        let end = r.at;
        let sum = r.u64()?;
        if sum != fnv(&raw[..end]) {
            bail!("checksum mismatch");
        }
        Ok(())
    }

    fn save(&mut self) -> Result<()> {
        let rec = self.encode()?;
        self.file
            .write_all_at(&rec, 0)
            .with_context(|| format!("writing state file {}", self.path.display()))
    }
}

struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.raw.len());
        let Some(end) = end else {
            bail!("truncated at byte {}", self.at);
        };
        let s = &self.raw[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
}

/// FNV-1a, 64 bits: a torn or foreign file is caught, not trusted.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("shmq-bridge-state-{}-{name}", std::process::id()))
    }

    #[test]
    fn crash_between_write_and_save_counts_by_next_seq() {
        let p = tmp("crash");
        let _ = std::fs::remove_file(&p);
        let (mut s, rec) = State::open(&p, 10).unwrap();
        assert_eq!(rec, Recovered::default());
        let a = s.source("h/a").unwrap();
        s.begin(&[(a, 1), (a, 2), (a, 3)], 10).unwrap();
        // Killed after writing two of the three: next_seq is 12.
        drop(s);
        let (s, rec) = State::open(&p, 12).unwrap();
        assert_eq!(
            rec,
            Recovered {
                applied: 2,
                not_applied: 1,
                foreign: 0
            }
        );
        assert_eq!(s.last("h/a"), Some(2));
        // Reopened again with nothing written since: stays at 2.
        drop(s);
        let (s, rec) = State::open(&p, 12).unwrap();
        assert_eq!(rec, Recovered::default());
        assert_eq!(s.last("h/a"), Some(2));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let p = tmp("corrupt");
        let _ = std::fs::remove_file(&p);
        let (mut s, _) = State::open(&p, 0).unwrap();
        let a = s.source("h/a").unwrap();
        s.begin(&[(a, 7)], 0).unwrap();
        drop(s);
        let mut raw = std::fs::read(&p).unwrap();
        raw[20] ^= 1;
        std::fs::write(&p, &raw).unwrap();
        assert!(State::open(&p, 1).is_err());
        std::fs::remove_file(&p).unwrap();
    }
}
