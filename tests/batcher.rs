//! The batching consumer: flush by count, by size, by interval, on close and
//! after a flush error, every item accounted for; a queue fed by another
//! process; at-least-once delivery on a log's named cursor across a failed
//! flush and across a batcher killed before its flush; the sidecar example.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{posix, report, wait_until, Proc};
use shmq::batcher::{AddError, BatchConfig, BatchError, BatchStats, Batcher};
use shmq::{Log, LogConfig, LogMode, Queue, QueueConfig, Start, Target};

common::child_roles! {
    "enqueue" => child_enqueue,
    "hold" => child_hold,
}

/// How long a test waits for anything before it fails.
const WAIT: Duration = Duration::from_secs(20);

/// What the flush function saw, shared with the test.
#[derive(Clone, Default)]
struct Sink {
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
    failed: Arc<Mutex<Vec<Vec<u64>>>>,
    rejected: Arc<Mutex<Vec<u64>>>,
}

impl Sink {
    fn batches(&self) -> Vec<Vec<u64>> {
        self.batches.lock().unwrap().clone()
    }
    fn failed(&self) -> Vec<Vec<u64>> {
        self.failed.lock().unwrap().clone()
    }
    fn rejected(&self) -> Vec<u64> {
        self.rejected.lock().unwrap().clone()
    }

    /// A config that records flushed batches (telling `tx` of each), failed
    /// batches and rejected items.
    fn config(&self, tx: Option<mpsc::Sender<usize>>) -> BatchConfig<u64> {
        let batches = self.batches.clone();
        let failed = self.failed.clone();
        let rejected = self.rejected.clone();
        BatchConfig::new(move |batch: &[u64]| {
            batches.lock().unwrap().push(batch.to_vec());
            if let Some(tx) = &tx {
                let _ = tx.send(batch.len());
            }
            Ok::<(), std::io::Error>(())
        })
        .on_flush_error(move |_, batch| failed.lock().unwrap().push(batch.to_vec()))
        .on_reject(move |item| rejected.lock().unwrap().push(item))
        .flush_interval(Duration::from_secs(3600))
    }
}

/// Runs `batcher` on a thread; the handle gives it back with its result.
fn spawn_run<T: Send + 'static>(
    mut batcher: Batcher<T>,
) -> std::thread::JoinHandle<(Batcher<T>, Result<(), BatchError>)> {
    std::thread::spawn(move || {
        let r = batcher.run();
        (batcher, r)
    })
}

/// Joins a batcher's thread, failing after [`WAIT`].
fn join<T>(
    h: std::thread::JoinHandle<(Batcher<T>, Result<(), BatchError>)>,
) -> (Batcher<T>, Result<(), BatchError>) {
    assert!(
        wait_until(WAIT, || h.is_finished()),
        "the batcher did not finish"
    );
    h.join().expect("batcher thread")
}

fn le(m: &[u8]) -> Result<u64, String> {
    m.try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| format!("{} bytes, not 8", m.len()))
}

#[test]
fn flush_by_count() {
    let sink = Sink::default();
    let (tx, rx) = mpsc::channel();
    let (batcher, sender) = Batcher::channel(sink.config(Some(tx)).capacity(3));
    let run = spawn_run(batcher);
    for i in 0..7 {
        sender.add(i).unwrap();
    }
    // Two full batches flush while the sender is still open.
    assert_eq!(rx.recv_timeout(WAIT), Ok(3));
    assert_eq!(rx.recv_timeout(WAIT), Ok(3));
    assert_eq!(sink.batches(), vec![vec![0, 1, 2], vec![3, 4, 5]]);
    drop(sender);
    let (batcher, r) = join(run);
    r.unwrap();
    assert_eq!(sink.batches(), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    let s = batcher.stats();
    assert_eq!((s.taken, s.flushed, s.flushes, s.pending), (7, 7, 3, 0));
}

/// A byte limit per batch: a batch is flushed before an item would take it
/// past the limit; an item over the limit on its own is rejected.
#[test]
fn flush_by_size() {
    let sink = Sink::default();
    // Items weigh their value in bytes; the limit is 10.
    let config = sink.config(None).max_bytes(10, |v: &u64| *v as usize);
    let (batcher, sender) = Batcher::channel(config);
    let run = spawn_run(batcher);
    for v in [4, 5, 3, 7, 11, 2, 10] {
        sender.add(v).unwrap();
    }
    drop(sender);
    let (batcher, r) = join(run);
    r.unwrap();
    assert_eq!(
        sink.batches(),
        vec![vec![4, 5], vec![3, 7], vec![2], vec![10]]
    );
    assert_eq!(sink.rejected(), vec![11]);
    assert_eq!(batcher.stats().rejected, 1);
}

/// The same with a `will_overflow` hook instead of `max_bytes`.
#[test]
fn will_overflow_flushes_first() {
    let sink = Sink::default();
    let config = sink
        .config(None)
        .will_overflow(|batch, item| batch.iter().sum::<u64>() + item > 10);
    let (mut batcher, sender) = Batcher::channel(config);
    for v in [4, 5, 3] {
        sender.add(v).unwrap();
    }
    drop(sender);
    batcher.run().unwrap();
    assert_eq!(sink.batches(), vec![vec![4, 5], vec![3]]);
}

#[test]
fn flush_by_interval() {
    let sink = Sink::default();
    let (tx, rx) = mpsc::channel();
    let config = sink
        .config(Some(tx))
        .flush_interval(Duration::from_millis(20));
    let (batcher, sender) = Batcher::channel(config);
    let run = spawn_run(batcher);
    sender.add(42).unwrap();
    // Far below the capacity of 100, the sender still open: only the
    // interval can flush it.
    assert_eq!(rx.recv_timeout(WAIT), Ok(1));
    assert_eq!(sink.batches(), vec![vec![42]]);
    drop(sender);
    let (batcher, r) = join(run);
    r.unwrap();
    assert_eq!(batcher.stats().flushes, 1, "no empty batch is flushed");
}

/// Close drains: what was added before `close` is flushed, what comes
/// after is refused with the item handed back.
#[test]
fn flush_on_close() {
    let sink = Sink::default();
    let (mut batcher, sender) = Batcher::channel(sink.config(None).capacity(10));
    let other = sender.clone();
    sender.add(1).unwrap();
    other.add(2).unwrap();
    assert_eq!(sender.len(), 2);
    other.close(); // closes for every sender
    assert_eq!(sender.add(3), Err(AddError::Closed(3)));
    batcher.run().unwrap();
    assert_eq!(sink.batches(), vec![vec![1, 2]]);
}

/// A queue closed by its producer: the batcher drains it, flushes a last
/// time and ends.
#[test]
fn queue_flush_on_close() {
    let target = posix("batch-qclose");
    let q = Queue::create(&target, &QueueConfig::new(8, 64)).unwrap();
    let producer = Queue::open(&target).unwrap();
    for i in 0..5u64 {
        producer.enqueue_try(&i.to_le_bytes()).unwrap();
    }
    producer.close();
    let sink = Sink::default();
    let mut batcher = Batcher::from_queue(q, le, sink.config(None).capacity(2));
    batcher.run().unwrap();
    assert_eq!(sink.batches(), vec![vec![0, 1], vec![2, 3], vec![4]]);
}

/// A stopper ends a queue batcher that is waiting: it flushes what it
/// holds; what it did not dequeue stays in the queue.
#[test]
fn stopper_ends_a_queue_batcher() {
    let target = posix("batch-stop");
    let q2 = Queue::create(&target, &QueueConfig::new(8, 64)).unwrap();
    let producer = Queue::open(&target).unwrap();
    producer.enqueue_try(&7u64.to_le_bytes()).unwrap();
    let sink = Sink::default();
    let (tx, rx) = mpsc::channel();
    let config = sink.config(None).can_add(move |_, item| {
        let _ = tx.send(*item);
        true
    });
    let batcher = Batcher::from_queue(q2, le, config);
    let stopper = batcher.stopper();
    let run = spawn_run(batcher);
    assert_eq!(rx.recv_timeout(WAIT), Ok(7)); // taken, held in the batch
    stopper.stop();
    let (_, r) = join(run);
    r.unwrap();
    assert_eq!(sink.batches(), vec![vec![7]]);
    producer.enqueue_try(&8u64.to_le_bytes()).unwrap();
    assert_eq!(producer.len(), 1, "nothing is dequeued after the stop");
}

/// A failed batch goes to `on_flush_error` and is not retried; the
/// batcher goes on with the next items.
#[test]
fn flush_error_goes_on() {
    let sink = Sink::default();
    let batches = sink.batches.clone();
    let failed = sink.failed.clone();
    let mut calls = 0;
    let config = BatchConfig::new(move |batch: &[u64]| {
        calls += 1;
        if calls == 1 {
            return Err("backend down");
        }
        batches.lock().unwrap().push(batch.to_vec());
        Ok(())
    })
    .capacity(2)
    .channel_size(8) // room for all five before the run starts
    .on_flush_error(move |err, batch| {
        assert_eq!(err.to_string(), "backend down");
        failed.lock().unwrap().push(batch.to_vec());
    });
    let (mut batcher, sender) = Batcher::channel(config);
    for i in 1..=5 {
        sender.add(i).unwrap();
    }
    drop(sender);
    batcher.run().unwrap();
    assert_eq!(sink.failed(), vec![vec![1, 2]]);
    assert_eq!(sink.batches(), vec![vec![3, 4], vec![5]]);
    let s = batcher.stats();
    assert_eq!((s.taken, s.flushed, s.failed), (5, 3, 2));
}

/// Producers on several threads, every fifth flush failing, some items
/// rejected, a short interval: every item added ends exactly once in a
/// flushed batch, a failed batch or the rejects, across failures and close.
#[test]
fn nothing_lost_across_failures_and_close() {
    const THREADS: u64 = 2;
    const EACH: u64 = 5000;
    let sink = Sink::default();
    let batches = sink.batches.clone();
    let failed = sink.failed.clone();
    let rejected = sink.rejected.clone();
    let mut calls = 0;
    let config = BatchConfig::new(move |batch: &[u64]| {
        calls += 1;
        if calls % 5 == 0 {
            return Err("every fifth flush fails");
        }
        batches.lock().unwrap().push(batch.to_vec());
        Ok(())
    })
    .capacity(37)
    .channel_size(16)
    .flush_interval(Duration::from_millis(1))
    .can_add(|_, item| item % 101 != 0)
    .on_reject(move |item| rejected.lock().unwrap().push(item))
    .on_flush_error(move |_, batch| failed.lock().unwrap().push(batch.to_vec()));
    let (batcher, sender) = Batcher::channel(config);
    let run = spawn_run(batcher);
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    sender
                        .add_timeout(t * EACH + i, WAIT)
                        .expect("added in time");
                }
            })
        })
        .collect();
    drop(sender);
    for p in producers {
        p.join().unwrap();
    }
    let (batcher, r) = join(run);
    r.unwrap();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let all = sink
        .batches()
        .into_iter()
        .chain(sink.failed())
        .flatten()
        .chain(sink.rejected());
    for v in all {
        *seen.entry(v).or_default() += 1;
    }
    for v in 0..THREADS * EACH {
        assert_eq!(seen.get(&v), Some(&1), "item {v}");
    }
    assert_eq!(seen.len() as u64, THREADS * EACH);
    let s: BatchStats = batcher.stats();
    assert_eq!(s.taken, THREADS * EACH);
    assert_eq!(s.flushed + s.failed + s.rejected + s.pending, s.taken);
    assert!(s.failed > 0 && s.rejected > 0, "{s:?}");
}

/// Child: enqueues `count` 8-byte sequence numbers on `target`, then closes it.
fn child_enqueue(args: &[String]) {
    let target = Target::Posix(args[0].clone());
    let count: u64 = args[1].parse().unwrap();
    let q = Queue::open(&target).unwrap();
    for i in 0..count {
        q.enqueue_block(&i.to_le_bytes(), Some(WAIT)).unwrap();
    }
    q.close();
    report(format!("enqueued {count}"));
}

/// Items enqueued by another process are batched and flushed here, all of
/// them, in order, and the batcher ends when the producer closes the queue.
#[test]
fn batches_a_queue_fed_by_another_process() {
    const COUNT: u64 = 5000;
    let target = posix("batch-xproc");
    let q = Queue::create(&target, &QueueConfig::new(8, 128)).unwrap();
    let sink = Sink::default();
    let config = sink
        .config(None)
        .capacity(64)
        .flush_interval(Duration::from_millis(50));
    let run = spawn_run(Batcher::from_queue(q, le, config));
    let name = match &*target {
        Target::Posix(n) => n.clone(),
        _ => unreachable!(),
    };
    let mut child = Proc::spawn("enqueue", &[name, COUNT.to_string()]);
    child.wait_ok(WAIT);
    assert_eq!(child.results(), vec![format!("enqueued {COUNT}")]);
    let (batcher, r) = join(run);
    r.unwrap();
    let got: Vec<u64> = sink.batches().into_iter().flatten().collect();
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
    assert!(sink.batches().iter().all(|b| b.len() <= 64));
    assert_eq!(batcher.stats().flushed, COUNT);
}

/// A reliable log with `count` messages 0..count published.
fn log_with(target: &Target, count: u64) -> Log {
    let log = Log::create(
        target,
        &LogConfig::new(8, 64).mode(LogMode::Reliable).cursors(4),
    )
    .unwrap();
    log.create_cursor("sink", Start::Oldest).unwrap();
    for i in 0..count {
        log.publish(&i.to_le_bytes()).unwrap();
    }
    log
}

/// A flush that fails on a named cursor stops the batcher without a
/// commit; the next batcher on the cursor gets the items again and commits.
#[test]
fn at_least_once_after_a_failed_flush() {
    let target = posix("batch-alo-fail");
    let log = log_with(&target, 10);

    let failed = Arc::new(Mutex::new(Vec::new()));
    let f = failed.clone();
    let config = BatchConfig::new(|_: &[u64]| Err("backend down"))
        .capacity(4)
        .on_flush_error(move |_, batch| f.lock().unwrap().push(batch.to_vec()));
    let sub = log.subscribe_named("sink", Start::Oldest).unwrap();
    let mut first = Batcher::from_log(sub, le, config);
    let r = first.run();
    assert!(
        matches!(r, Err(BatchError::FlushFailed { items: 4, .. })),
        "{r:?}"
    );
    assert_eq!(*failed.lock().unwrap(), vec![vec![0, 1, 2, 3]]);
    drop(first);
    assert_eq!(log.cursor("sink").unwrap().position, 0, "not committed");

    log.close();
    let sink = Sink::default();
    let sub = log.subscribe_named("sink", Start::Oldest).unwrap();
    let mut second = Batcher::from_log(sub, le, sink.config(None).capacity(4));
    second.run().unwrap();
    assert_eq!(
        sink.batches(),
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
    );
    assert_eq!(second.stats().commits, 3);
    drop(second);
    assert_eq!(log.cursor("sink").unwrap().position, 10);
}

/// Child: runs a batcher on the named cursor "sink" of the log at `target`
/// that flushes the first batch of 2, then holds every later item without
/// flushing (huge capacity, no interval) until it is killed.
fn child_hold(args: &[String]) {
    let log = Log::open(&Target::Posix(args[0].clone())).unwrap();
    let sub = log.subscribe_named("sink", Start::Oldest).unwrap();
    let mut flushes = 0;
    let config = BatchConfig::new(|_: &[u64]| Ok::<(), std::io::Error>(()))
        .should_flush(move |batch| {
            let first = flushes == 0 && batch.len() == 2;
            flushes += first as u32;
            first
        })
        .flush_interval(Duration::from_secs(3600));
    let mut batcher = Batcher::from_log(sub, le, config);
    batcher.run().unwrap();
    unreachable!("killed before the log is closed");
}

/// A batcher killed while it holds read, unflushed items: the cursor stays
/// at its last flush, so a new batcher on it gets those items again.
#[test]
fn at_least_once_after_a_crash() {
    let target = posix("batch-alo-kill");
    let log = log_with(&target, 6);
    let name = match &*target {
        Target::Posix(n) => n.clone(),
        _ => unreachable!(),
    };
    let mut child = Proc::spawn("hold", &[name]);
    // The child has read all 6 (its cursor's read position) and committed
    // the first flush of 2.
    let read_all = wait_until(WAIT, || {
        log.cursor("sink")
            .is_some_and(|c| c.read == 6 && c.position == 2)
    });
    assert!(read_all, "child did not read: {:?}", log.cursor("sink"));
    child.kill();
    assert!(
        wait_until(WAIT, || log.cursor("sink").is_some_and(|c| !c.owner_alive)),
        "{:?}",
        log.cursor("sink")
    );
    assert_eq!(log.cursor("sink").unwrap().position, 2);

    log.close();
    let sink = Sink::default();
    let sub = log.subscribe_named("sink", Start::Oldest).unwrap();
    let mut again = Batcher::from_log(sub, le, sink.config(None));
    again.run().unwrap();
    assert_eq!(sink.batches(), vec![vec![2, 3, 4, 5]]);
    drop(again);
    assert_eq!(log.cursor("sink").unwrap().position, 6);
}

/// A batcher dropped with read, unflushed items (here: its flush panics)
/// commits nothing: the next batcher on the cursor reads them again.
#[test]
fn at_least_once_after_a_drop_without_flush() {
    let target = posix("batch-alo-drop");
    let log = log_with(&target, 3);
    let sub = log.subscribe_named("sink", Start::Oldest).unwrap();
    let config = BatchConfig::new(|_: &[u64]| -> Result<(), std::io::Error> {
        panic!("the process dies in the middle of a flush")
    });
    log.close();
    let mut batcher = Batcher::from_log(sub, le, config);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batcher.run()));
    assert!(unwound.is_err());
    drop(batcher);
    assert_eq!(log.cursor("sink").unwrap().position, 0);

    let sink = Sink::default();
    let sub = log.subscribe_named("sink", Start::Oldest).unwrap();
    let mut again = Batcher::from_log(sub, le, sink.config(None));
    again.run().unwrap();
    assert_eq!(sink.batches(), vec![vec![0, 1, 2]]);
}

/// Undecodable messages go to `on_decode_error`, counted, and skipped.
#[test]
fn undecodable_messages_are_reported() {
    let q = Queue::in_process(&QueueConfig::new(16, 16)).unwrap();
    q.enqueue_try(&1u64.to_le_bytes()).unwrap();
    q.enqueue_try(b"bad").unwrap();
    q.enqueue_try(&2u64.to_le_bytes()).unwrap();
    q.close();
    let bad = Arc::new(Mutex::new(Vec::new()));
    let b = bad.clone();
    let sink = Sink::default();
    let config = sink
        .config(None)
        .on_decode_error(move |_, bytes| b.lock().unwrap().push(bytes.to_vec()));
    let mut batcher = Batcher::from_queue(q, le, config);
    batcher.run().unwrap();
    assert_eq!(sink.batches(), vec![vec![1, 2]]);
    assert_eq!(*bad.lock().unwrap(), vec![b"bad".to_vec()]);
    assert_eq!(batcher.stats().undecodable, 1);
}

/// The path of a built example: `cargo test` builds them beside this
/// binary; with `--test batcher` alone, build it first (`cargo build
/// --release --example sidecar`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// The sidecar example runs to completion on its own and flushes every
/// record within its byte limit.
#[test]
fn sidecar_example_runs() {
    let mut child = Command::new(example("sidecar"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sidecar");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sidecar did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
    assert!(status.success(), "{status}\n{out}");
    assert!(out.contains("sidecar: 2000 records in"), "{out}");
    let largest: usize = out
        .split("the largest ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {out}"));
    assert!(largest <= 4096, "{out}");
}
