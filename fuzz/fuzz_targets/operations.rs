//! Every operation on a mutated segment. A valid small queue or log is built
//! once per kind; each input picks one, rewrites words of its hot lines, slot
//! headers, cursor table and process table, and then runs a sequence of
//! operations on it (try variants, and blocking ones with a 1 ms timeout).
//! All must return without a panic (this crate builds with overflow checks)
//! and without a hang (libFuzzer's -timeout catches one).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmq::{Log, LogConfig, LogMode, Queue, QueueConfig, Start, Target};

const TINY: Option<Duration> = Some(Duration::from_millis(1));

/// The segment every input is written to: a file in /dev/shm (tmpfs).
fn target() -> &'static Target {
    static T: OnceLock<Target> = OnceLock::new();
    T.get_or_init(|| Target::File(format!("/dev/shm/shmq-fuzz-ops-{}", std::process::id()).into()))
}

/// Pristine images: queue, spsc queue, overwrite log, reliable log.
fn templates() -> &'static [Vec<u8>; 4] {
    static T: OnceLock<[Vec<u8>; 4]> = OnceLock::new();
    T.get_or_init(|| {
        let t = target();
        let read = |t: &Target| {
            let Target::File(p) = t else { unreachable!() };
            let bytes = std::fs::read(p).unwrap();
            let _ = t.unlink_force();
            bytes
        };
        let _ = t.unlink_force();
        let q = Queue::create(t, &QueueConfig::new(24, 4)).unwrap();
        q.enqueue_try(b"one").unwrap();
        drop(q);
        let a = read(t);
        let q = Queue::create(t, &QueueConfig::new(24, 4).spsc(true)).unwrap();
        q.enqueue_try(b"one").unwrap();
        drop(q);
        let b = read(t);
        let l = Log::create(t, &LogConfig::new(24, 4).cursors(3)).unwrap();
        l.create_cursor("c", Start::Oldest).unwrap();
        l.publish(b"one").unwrap();
        drop(l);
        let c = read(t);
        let l = Log::create(t, &LogConfig::new(24, 4).mode(LogMode::Reliable).cursors(3)).unwrap();
        l.create_cursor("c", Start::Oldest).unwrap();
        l.publish(b"one").unwrap();
        drop(l);
        let d = read(t);
        [a, b, c, d]
    })
}

/// A value to write: raw from the input, or one of the extremes.
fn value(kind: u8, raw: u64) -> u64 {
    match kind % 8 {
        0 => raw,
        1 => u64::MAX,
        2 => u64::MAX - 1,
        3 => 0,
        4 => raw % 16,
        5 => (std::process::id() as u64) << 32 | (raw & 0xffff_ffff),
        6 => 1 << 63 | raw % 64,
        _ => raw << 32,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let which = data[0] as usize % 4;
    let mut image = templates()[which].clone();
    let word = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let aux = word(&image, 80) as usize;
    let slots = word(&image, 88) as usize;
    let stride = u32::from_le_bytes(image[20..24].try_into().unwrap()) as usize;
    let nmut = (data[1] % 8) as usize;
    let mut rest = &data[2..];
    for _ in 0..nmut {
        if rest.len() < 11 {
            break;
        }
        let (sel, kind, raw) = (
            rest[0],
            rest[1],
            u64::from_le_bytes(rest[2..10].try_into().unwrap()),
        );
        let width4 = rest[10] & 1 == 1;
        rest = &rest[11..];
        let k = (sel >> 3) as usize;
        let off = match sel % 6 {
            // hot lines: tail, head, control, statistics
            0 => [128, 256, 384, 388, 392, 400, 408, 512, 520, 528][k % 10],
            // slot headers: stamp, len, flags
            1 => slots + (k % 4) * stride + [0, 8, 12][k % 3],
            // cursor table: lock, and the entries' words
            2 => aux + (k % 4) * 128 + (raw as usize % 16) * 8,
            // process table: pid, role, start time, intent
            3 => 1024 + (k % 64) * 128 + [0, 4, 8, 16][k % 4],
            // anywhere in the slot payloads
            4 => slots + (raw as usize % (4 * stride)),
            _ => 128 + raw as usize % (image.len() - 128),
        };
        let v = value(kind, raw);
        let n = if width4 { 4 } else { 8 };
        if off + n <= image.len() {
            image[off..off + n].copy_from_slice(&v.to_le_bytes()[..n]);
        }
    }
    let t = target();
    let Target::File(p) = t else { unreachable!() };
    std::fs::write(p, &image).unwrap();
    let mut buf = [0u8; 64];
    let ops = if rest.is_empty() {
        &[0u8, 1, 2, 3, 4, 5, 6, 7][..]
    } else {
        &rest[..rest.len().min(24)]
    };
    if which < 2 {
        let Ok(q) = Queue::open(t) else { return };
        for &op in ops {
            match op % 10 {
                0 => drop(q.enqueue_try(b"fuzz")),
                1 => drop(q.dequeue_try(&mut buf)),
                2 => drop(q.enqueue_shift(b"shift")),
                3 => drop(q.enqueue_block(b"b", TINY)),
                4 => drop(q.dequeue_block(&mut buf, TINY)),
                5 => drop((q.len(), q.is_empty())),
                6 => drop(q.stats()),
                7 => drop(q.dequeue_try(&mut buf[..1])),
                8 => drop(q.attached()),
                _ => q.close(),
            }
        }
    } else {
        let Ok(log) = Log::open(t) else { return };
        let mut sub = None;
        for &op in ops {
            match op % 12 {
                0 => drop(log.publish(b"fuzz")),
                1 => drop(log.publish_block(b"b", TINY)),
                2 => sub = log.subscribe(Start::Oldest).ok(),
                3 => sub = log.subscribe(Start::Latest).ok(),
                4 => sub = log.subscribe_named("c", Start::Oldest).ok(),
                5 => {
                    if let Some(s) = sub.as_mut() {
                        let _ = s.recv_try(&mut buf);
                    }
                }
                6 => {
                    if let Some(s) = sub.as_mut() {
                        let _ = s.recv_block(&mut buf, TINY);
                        let _ = (s.position(), s.lag());
                    }
                }
                7 => {
                    if let Some(s) = sub.as_mut() {
                        let _ = (s.commit(), s.rollback());
                    }
                }
                8 => drop((log.stats(), log.cursors())),
                9 => drop(log.create_cursor("d", Start::Latest)),
                10 => drop(log.cursor_from("e", "c")),
                _ => log.close(),
            }
        }
    }
});
