//! Multi-process tests of the work queue: 4 producer processes and 4 consumer
//! processes on one queue, every message self-checking (producer id, sequence,
//! checksum). The parent checks exactly-once delivery, per-producer FIFO as
//! seen by each consumer, and that no message arrived torn.
//!
//! Consumers write what they received, in order, to a file in a temporary
//! directory (12 bytes a message: producer id, sequence); the parent reads
//! the files back and checks every (producer, sequence) was received exactly
//! once across all consumers.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{check_msg, make_msg, report, Guard, Proc, MSG_MIN};
use shmq::{Queue, QueueConfig, RecvError, SendError, Target};

common::child_roles! {
    "producer" => producer,
    "shifter" => shifter,
    "until_closed" => until_closed,
    "consumer" => consumer,
}

const PRODUCERS: u32 = 4;
const CONSUMERS: usize = 4;
const PER_PRODUCER: u64 = 100_000;
/// Upper bound for any one child; the test itself takes seconds.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// How long message `seq` of `producer` is: fixed, or between 16 and `slot` bytes.
fn msg_len(mode: &str, slot: usize, producer: u32, seq: u64) -> usize {
    match mode {
        "fixed" => slot,
        "var" => {
            let h = (seq ^ ((producer as u64) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33;
            MSG_MIN + (h as usize) % (slot - MSG_MIN + 1)
        }
        other => panic!("unknown length mode {other:?}"),
    }
}

/// A directory in the temporary directory, removed with its contents on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(common::unique(tag));
        std::fs::create_dir(&path).expect("create temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Child: args = target, producer id, count, length mode.
/// Enqueues `count` messages with `enqueue_try`, falling back to
/// `enqueue_block` when full; reports how often it found the queue full.
fn producer(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let id: u32 = args[1].parse().unwrap();
    let count: u64 = args[2].parse().unwrap();
    let mode = args[3].as_str();
    let q = Queue::open(&target).expect("producer opens the queue");
    let mut full = 0u64;
    for seq in 0..count {
        let m = make_msg(id, seq, msg_len(mode, q.slot_size(), id, seq));
        match q.enqueue_try(&m) {
            Ok(()) => {}
            Err(SendError::Full) => {
                full += 1;
                q.enqueue_block(&m, Some(Duration::from_secs(30)))
                    .unwrap_or_else(|e| panic!("producer {id} seq {seq}: {e}"));
            }
            Err(e) => panic!("producer {id} seq {seq}: {e}"),
        }
    }
    report(format!("producer {id} sent {count} full {full}"));
}

/// Child: args = target, producer id, count, length mode.
/// Enqueues `count` messages with `enqueue_shift`; reports how many it
/// discarded, and how many it refused with `Full` (a peer stalled mid-way on
/// the slot it needed for longer than the shift's patience; nothing is
/// discarded then, and the message is not enqueued).
fn shifter(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let id: u32 = args[1].parse().unwrap();
    let count: u64 = args[2].parse().unwrap();
    let mode = args[3].as_str();
    let q = Queue::open(&target).expect("shifter opens the queue");
    let (mut discarded, mut refused) = (0u64, 0u64);
    for seq in 0..count {
        let m = make_msg(id, seq, msg_len(mode, q.slot_size(), id, seq));
        match q.enqueue_shift(&m) {
            Ok(n) => discarded += n,
            Err(SendError::Full) => refused += 1,
            Err(e) => panic!("shifter {id} seq {seq}: {e}"),
        }
    }
    report(format!(
        "producer {id} sent {count} discarded {discarded} refused {refused}"
    ));
}

/// Child: args = target, producer id, length mode.
/// Enqueues with `enqueue_block` until the queue is closed; reports how many
/// messages were accepted (sequences 0..sent).
fn until_closed(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let id: u32 = args[1].parse().unwrap();
    let mode = args[2].as_str();
    let q = Queue::open(&target).expect("producer opens the queue");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seq = 0u64;
    loop {
        let m = make_msg(id, seq, msg_len(mode, q.slot_size(), id, seq));
        match q.enqueue_block(&m, Some(Duration::from_secs(10))) {
            Ok(()) => seq += 1,
            Err(SendError::Closed) => break,
            Err(e) => panic!("producer {id} seq {seq}: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "producer {id}: queue never closed"
        );
    }
    // Closed stays closed: nothing more is accepted.
    assert_eq!(
        q.enqueue_try(&make_msg(id, seq, MSG_MIN)),
        Err(SendError::Closed)
    );
    report(format!("producer {id} sent {seq}"));
}

/// Child: args = target, output file, length mode.
/// Dequeues with `dequeue_block` until the queue is closed and drained.
fn consumer(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let out = PathBuf::from(&args[1]);
    let mode = args[2].as_str();
    let q = Queue::open(&target).expect("consumer opens the queue");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut buf = vec![0u8; q.slot_size()];
    let mut ids = Vec::new();
    let (mut torn, mut bad_len) = (0u64, 0u64);
    loop {
        match q.dequeue_block(&mut buf, Some(Duration::from_millis(500))) {
            Ok(n) => match check_msg(&buf[..n]) {
                Ok((p, seq)) => {
                    if n != msg_len(mode, q.slot_size(), p, seq) {
                        bad_len += 1;
                    }
                    ids.extend_from_slice(&p.to_le_bytes());
                    ids.extend_from_slice(&seq.to_le_bytes());
                }
                Err(_) => torn += 1,
            },
            Err(RecvError::Closed) => break,
            Err(RecvError::Timeout) => {
                assert!(Instant::now() < deadline, "consumer: queue never closed");
            }
            Err(e) => panic!("consumer: {e}"),
        }
    }
    std::fs::write(&out, &ids).expect("write received ids");
    report(format!(
        "consumer received {} torn {torn} bad_len {bad_len}",
        ids.len() / 12
    ));
}

/// Parses `key value key value ...` after a leading word and returns `key`'s value.
fn field(line: &str, key: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == key)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"));
    words[i + 1].parse().unwrap()
}

/// What a run observed, for the caller's extra assertions.
struct Outcome {
    /// Times producers found the queue full, summed.
    full: u64,
    /// Messages the producers' `enqueue_shift` calls said they discarded.
    discarded: u64,
}

/// How the producers enqueue.
#[derive(Clone, Copy, PartialEq)]
enum Producing {
    /// `enqueue_try`, then `enqueue_block` when full: nothing is lost.
    Block,
    /// `enqueue_shift`: the oldest are discarded when full, and counted.
    Shift,
}

/// Runs 4 producer and 4 consumer processes on a queue of `capacity` slots
/// of `slot` bytes at `target` and checks exactly-once, per-producer FIFO
/// and no torn message. With `fill_first`, producers start alone and the
/// consumers only once the queue is full, so producers must block.
fn run(
    target: &Guard,
    slot: usize,
    capacity: usize,
    mode: &str,
    fill_first: bool,
    producing: Producing,
) -> Outcome {
    let role = if producing == Producing::Block {
        "producer"
    } else {
        "shifter"
    };
    let started = Instant::now();
    let q = Queue::create(target, &QueueConfig::new(slot, capacity)).expect("create queue");
    let dir = TempDir::new("mpmc");
    let t = target.to_string();
    let out = |c: usize| {
        dir.path()
            .join(format!("consumer-{c}"))
            .display()
            .to_string()
    };
    let spawn_consumers = || {
        (0..CONSUMERS)
            .map(|c| Proc::spawn("consumer", &[t.clone(), out(c), mode.into()]))
            .collect::<Vec<_>>()
    };
    let spawn_producers = || {
        (0..PRODUCERS)
            .map(|p| {
                Proc::spawn(
                    role,
                    &[
                        t.clone(),
                        p.to_string(),
                        PER_PRODUCER.to_string(),
                        mode.into(),
                    ],
                )
            })
            .collect::<Vec<_>>()
    };

    let (mut producers, mut consumers) = if fill_first {
        let producers = spawn_producers();
        assert!(
            common::wait_until(Duration::from_secs(30), || q.len() == capacity),
            "producers never filled the queue"
        );
        (producers, spawn_consumers())
    } else {
        let consumers = spawn_consumers();
        (spawn_producers(), consumers)
    };

    // The parent knows producing is over once every producer has exited;
    // only then does it close, so consumers drain everything, then stop.
    let (mut full, mut discarded, mut refused) = (0, 0, 0);
    for p in &mut producers {
        p.wait_ok(CHILD_LIMIT);
        let lines = p.results();
        assert_eq!(lines.len(), 1, "producer output: {lines:?}");
        assert_eq!(field(&lines[0], "sent"), PER_PRODUCER);
        match producing {
            Producing::Block => full += field(&lines[0], "full"),
            Producing::Shift => {
                discarded += field(&lines[0], "discarded");
                refused += field(&lines[0], "refused");
            }
        }
    }
    q.close();
    let mut total = 0;
    for c in &mut consumers {
        c.wait_ok(CHILD_LIMIT);
        let lines = c.results();
        assert_eq!(lines.len(), 1, "consumer output: {lines:?}");
        assert_eq!(field(&lines[0], "torn"), 0, "torn messages: {}", lines[0]);
        assert_eq!(
            field(&lines[0], "bad_len"),
            0,
            "wrong lengths: {}",
            lines[0]
        );
        total += field(&lines[0], "received");
    }

    // Exactly once across consumers (at most once with shift, the rest
    // counted as discarded); increasing per producer within each consumer.
    let mut seen = vec![vec![0u8; PER_PRODUCER as usize]; PRODUCERS as usize];
    for c in 0..CONSUMERS {
        let bytes = std::fs::read(out(c)).expect("read consumer ids");
        assert_eq!(bytes.len() % 12, 0);
        let mut last: Vec<Option<u64>> = vec![None; PRODUCERS as usize];
        for rec in bytes.chunks_exact(12) {
            let p = u32::from_le_bytes(rec[0..4].try_into().unwrap()) as usize;
            let seq = u64::from_le_bytes(rec[4..12].try_into().unwrap());
            assert!(
                p < PRODUCERS as usize && seq < PER_PRODUCER,
                "impossible id ({p}, {seq})"
            );
            assert!(
                last[p].is_none_or(|l| l < seq),
                "consumer {c}: producer {p} seq {seq} after {:?} (FIFO broken)",
                last[p]
            );
            last[p] = Some(seq);
            seen[p][seq as usize] += 1;
        }
    }
    let mut missing = 0;
    for (p, counts) in seen.iter().enumerate() {
        let dup = counts.iter().filter(|&&n| n > 1).count();
        assert_eq!(
            dup, 0,
            "producer {p}: {dup} messages received more than once"
        );
        missing += counts.iter().filter(|&&n| n == 0).count() as u64;
    }
    let sent = PRODUCERS as u64 * PER_PRODUCER;
    assert_eq!(total + missing, sent);
    // Every message not received was discarded by a shift, and counted by
    // exactly one call's return value, or was refused and never enqueued.
    assert_eq!(
        missing,
        discarded + refused,
        "{missing} messages never arrived; producers discarded {discarded}, refused {refused}"
    );

    let s = q.stats();
    assert_eq!(
        (s.enqueued, s.dequeued, s.discarded, s.len),
        (sent - refused, total, discarded, 0),
        "{s:?}"
    );
    assert!(q.is_closed());
    eprintln!(
        "{}: {} messages, capacity {capacity}, producers found it full {full} times, discarded {discarded}, refused {refused}, {:?}",
        target.0,
        total,
        started.elapsed()
    );
    Outcome { full, discarded }
}

#[test]
fn four_by_four_processes_exactly_once_fifo() {
    // Room for every message: producers never have to wait.
    let target = common::posix("mpmc-big");
    let outcome = run(&target, 32, 1 << 19, "fixed", false, Producing::Block);
    assert_eq!(outcome.discarded, 0);
}

#[test]
fn four_by_four_processes_small_queue_producers_block() {
    // Far fewer slots than messages in flight; producers fill it before any
    // consumer starts, so they block (and sleep) on a full queue.
    let target = common::sysv();
    let outcome = run(&target, 64, 16, "fixed", true, Producing::Block);
    assert!(outcome.full > 0, "producers never found the queue full");
}

#[test]
fn four_by_four_processes_variable_length_file() {
    // Lengths between 16 and the slot size, a capacity that is not a power
    // of two (the modulo path), on a file-backed queue.
    let target = common::file("mpmc-var");
    let outcome = run(&target, 200, 1000, "var", true, Producing::Block);
    assert!(outcome.full > 0, "producers never found the queue full");
}

#[test]
fn four_by_four_processes_enqueue_shift_counts_every_discard() {
    // Producers that never wait: when the queue is full, the oldest message
    // goes. Every message is received at most once, in per-producer order,
    // and each one that is not received was reported discarded by exactly
    // one enqueue_shift call (the stats agree with the return values).
    let target = common::posix("mpmc-shift");
    let outcome = run(&target, 48, 32, "var", true, Producing::Shift);
    assert!(
        outcome.discarded > 0,
        "the queue was filled first, so shifts must discard"
    );
}

/// Reads a consumer's file of received ids: (producer, sequence) in order.
fn read_ids(path: &str) -> Vec<(usize, u64)> {
    let bytes = std::fs::read(path).expect("read consumer ids");
    assert_eq!(bytes.len() % 12, 0);
    bytes
        .chunks_exact(12)
        .map(|r| {
            let p = u32::from_le_bytes(r[0..4].try_into().unwrap()) as usize;
            (p, u64::from_le_bytes(r[4..12].try_into().unwrap()))
        })
        .collect()
}

#[test]
fn close_while_producing_loses_and_invents_nothing() {
    // Producers run until close() refuses them; consumers drain, then stop.
    // Every message whose enqueue returned Ok arrives exactly once; none
    // whose enqueue returned Closed arrives (no message slips in after the
    // consumers were told the queue is drained). Several rounds, as the
    // close races with claims in flight differently each time.
    let mut tombstones = 0;
    for round in 0..5 {
        tombstones += close_round(round);
    }
    eprintln!(
        "close mid-stream: {tombstones} claims turned into tombstones by close in all rounds"
    );
}

/// One round of [`close_while_producing_loses_and_invents_nothing`]; returns
/// the number of tombstones the close caused.
fn close_round(round: usize) -> u64 {
    let target = if round % 2 == 0 {
        common::posix("mpmc-close")
    } else {
        common::sysv()
    };
    let q = Queue::create(&target, &QueueConfig::new(64, 64)).expect("create queue");
    let dir = TempDir::new("mpmc-close");
    let t = target.to_string();
    let out = |c: usize| {
        dir.path()
            .join(format!("consumer-{c}"))
            .display()
            .to_string()
    };
    let mut consumers: Vec<Proc> = (0..CONSUMERS)
        .map(|c| Proc::spawn("consumer", &[t.clone(), out(c), "var".into()]))
        .collect();
    let mut producers: Vec<Proc> = (0..PRODUCERS)
        .map(|p| Proc::spawn("until_closed", &[t.clone(), p.to_string(), "var".into()]))
        .collect();
    // Close in the thick of it: once plenty has gone through.
    assert!(
        common::wait_until(Duration::from_secs(30), || q.stats().dequeued
            >= 20_000 * (round as u64 + 1)),
        "traffic never got going"
    );
    q.close();
    let mut sent = vec![0u64; PRODUCERS as usize];
    for (p, proc) in producers.iter_mut().enumerate() {
        proc.wait_ok(CHILD_LIMIT);
        let lines = proc.results();
        assert_eq!(lines.len(), 1, "producer output: {lines:?}");
        sent[p] = field(&lines[0], "sent");
    }
    let mut received = vec![Vec::new(); PRODUCERS as usize];
    for (c, proc) in consumers.iter_mut().enumerate() {
        proc.wait_ok(CHILD_LIMIT);
        let lines = proc.results();
        assert_eq!(lines.len(), 1, "consumer output: {lines:?}");
        assert_eq!(
            (field(&lines[0], "torn"), field(&lines[0], "bad_len")),
            (0, 0),
            "{}",
            lines[0]
        );
        let mut last: Vec<Option<u64>> = vec![None; PRODUCERS as usize];
        for (p, seq) in read_ids(&out(c)) {
            assert!(p < PRODUCERS as usize, "impossible producer {p}");
            assert!(
                last[p].is_none_or(|l| l < seq),
                "consumer {c}: producer {p} FIFO broken"
            );
            last[p] = Some(seq);
            received[p].push(seq);
        }
    }
    for (p, seqs) in received.iter_mut().enumerate() {
        seqs.sort_unstable();
        let expected: Vec<u64> = (0..sent[p]).collect();
        assert!(
            *seqs == expected,
            "producer {p}: sent 0..{}, received {} (first differences: {:?})",
            sent[p],
            seqs.len(),
            seqs.iter().zip(&expected).find(|(a, b)| a != b)
        );
    }
    let total: u64 = sent.iter().sum();
    let s = q.stats();
    assert_eq!((s.enqueued, s.dequeued, s.len), (total, total, 0), "{s:?}");
    s.tombstones
}
