//! Multi-process fan-out: one or many publisher processes, several
//! subscriber processes, overwrite and reliable modes.
//!
//! Run in release: `cargo test --release --test log_fanout`.

mod common;

use std::time::Duration;

use common::{check_msg, make_msg, report, Guard, Proc};
use shmq::{Log, LogConfig, LogMode, Queue, QueueConfig, RecvError, SendError, Start, Target};

common::child_roles! {
    "subscriber" => subscriber,
    "publisher" => publisher,
}

const WAIT: Duration = Duration::from_secs(120);
const RECV: Option<Duration> = Some(Duration::from_secs(30));

fn target(arg: &str) -> Target {
    arg.parse().expect("target")
}

/// Child: subscribes (by name if args[2] is not "-"), tells the parent it is
/// ready on the queue args[1], then reads until the log is closed.
///
/// Checks every message (checksum, per-publisher order, its sequence number
/// equal to its position) and reports
/// `received R lagged L start S count_per_publisher C0,C1.. digest D`.
/// args: log, ready-queue, cursor name or "-", slow-every (0: never), commit-every.
fn subscriber(args: &[String]) {
    let log = Log::open(&target(&args[0])).unwrap();
    let ready = Queue::open(&target(&args[1])).unwrap();
    let slow_every: u64 = args[3].parse().unwrap();
    let commit_every: u64 = args[4].parse().unwrap();
    let mut sub = if args[2] == "-" {
        log.subscribe(Start::Oldest).unwrap()
    } else {
        log.subscribe_named(&args[2], Start::Oldest).unwrap()
    };
    let start = sub.position();
    ready.enqueue_try(b"ready").unwrap();
    drop(ready);

    let mut buf = vec![0u8; log.slot_size()];
    let (mut received, mut lagged) = (0u64, 0u64);
    let mut next: Vec<u64> = Vec::new();
    let mut last_seq = None;
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    loop {
        match sub.recv_block(&mut buf, RECV) {
            Ok(n) => {
                let (producer, pseq) =
                    check_msg(&buf[..n]).unwrap_or_else(|e| panic!("message {received}: {e}"));
                let seq = sub.position() - 1;
                assert!(
                    last_seq.is_none_or(|l| seq > l),
                    "global order: {seq} after {last_seq:?}"
                );
                last_seq = Some(seq);
                let p = producer as usize;
                if next.len() <= p {
                    next.resize(p + 1, 0);
                }
                if lagged == 0 {
                    assert_eq!(pseq, next[p], "publisher {p}: each message once, in order");
                } else {
                    assert!(pseq >= next[p], "publisher {p}: order");
                }
                next[p] = pseq + 1;
                for b in [producer as u64, pseq] {
                    digest = (digest ^ b).wrapping_mul(0x0000_0100_0000_01b3);
                }
                received += 1;
                if slow_every > 0 && received % slow_every == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                if commit_every > 0 && received % commit_every == 0 {
                    sub.commit().unwrap();
                }
            }
            Err(RecvError::Lagged(n)) => lagged += n,
            Err(RecvError::Closed) => break,
            Err(e) => panic!("subscriber after {received} messages: {e}"),
        }
    }
    if commit_every > 0 {
        sub.commit().unwrap();
    }
    let counts: Vec<String> = next.iter().map(|c| c.to_string()).collect();
    report(format!(
        "received {received} lagged {lagged} start {start} count_per_publisher {} digest {digest:x}",
        counts.join(",")
    ));
}

/// Child: publishes args[2] messages of args[3] bytes as publisher args[1],
/// blocking (reliable mode) when full; reports `published N full F`, where F
/// counts the publishes that found the log full and had to wait.
fn publisher(args: &[String]) {
    let log = Log::open(&target(&args[0])).unwrap();
    let id: u32 = args[1].parse().unwrap();
    let count: u64 = args[2].parse().unwrap();
    let len: usize = args[3].parse().unwrap();
    let mut full = 0u64;
    for i in 0..count {
        let m = make_msg(id, i, len);
        match log.publish(&m) {
            Ok(_) => {}
            Err(SendError::Full) => {
                full += 1;
                log.publish_block(&m, Some(Duration::from_secs(30)))
                    .unwrap();
            }
            Err(e) => panic!("publish {i}: {e}"),
        }
    }
    report(format!("published {count} full {full}"));
}

/// Parses `key value` pairs from a result line.
fn field(line: &str, key: &str) -> String {
    let mut it = line.split_whitespace();
    while let Some(k) = it.next() {
        if k == key {
            return it.next().unwrap_or_default().to_owned();
        }
    }
    panic!("no {key} in {line:?}")
}

fn num(line: &str, key: &str) -> u64 {
    field(line, key).parse().unwrap()
}

struct Setup {
    log_target: Guard,
    ready: Guard,
    ready_q: Queue,
}

impl Setup {
    fn new(tag: &str, config: &LogConfig) -> (Setup, Log) {
        let log_target = common::posix(tag);
        let ready = common::posix(&format!("{tag}-ready"));
        let log = Log::create(&log_target, config).unwrap();
        let ready_q = Queue::create(&ready, &QueueConfig::new(8, 64)).unwrap();
        (
            Setup {
                log_target,
                ready,
                ready_q,
            },
            log,
        )
    }

    fn spawn_subscriber(&self, name: &str, slow_every: u64, commit_every: u64) -> Proc {
        Proc::spawn(
            "subscriber",
            &[
                self.log_target.to_string(),
                self.ready.to_string(),
                name.to_owned(),
                slow_every.to_string(),
                commit_every.to_string(),
            ],
        )
    }

    fn wait_ready(&self, n: usize) {
        let mut buf = [0u8; 8];
        for _ in 0..n {
            self.ready_q
                .dequeue_block(&mut buf, Some(Duration::from_secs(30)))
                .expect("subscriber ready");
        }
    }

    fn spawn_publisher(&self, id: u32, count: u64, len: usize) -> Proc {
        Proc::spawn(
            "publisher",
            &[
                self.log_target.to_string(),
                id.to_string(),
                count.to_string(),
                len.to_string(),
            ],
        )
    }
}

fn finish(procs: &mut [Proc]) -> Vec<String> {
    procs
        .iter_mut()
        .map(|p| {
            p.wait_ok(WAIT);
            p.results().pop().expect("a result line")
        })
        .collect()
}

#[test]
fn overwrite_one_publisher_four_subscribers_one_slow() {
    // At least 1M in the release build that the test command runs.
    let n: u64 = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let (setup, log) = Setup::new("fanout-ow", &LogConfig::new(32, 4096));
    let mut subs: Vec<Proc> = (0..4)
        .map(|i| setup.spawn_subscriber("-", if i == 3 { 256 } else { 0 }, 0))
        .collect();
    setup.wait_ready(4);
    let mut publisher = setup.spawn_publisher(0, n, 32);
    publisher.wait_ok(WAIT);
    log.close();
    let results = finish(&mut subs);
    let mut total_lagged = 0;
    for (i, r) in results.iter().enumerate() {
        let (received, lagged) = (num(r, "received"), num(r, "lagged"));
        assert_eq!(
            num(r, "start"),
            0,
            "subscriber {i} started at the beginning"
        );
        assert_eq!(
            received + lagged,
            n,
            "subscriber {i}: received + lagged == published ({r})"
        );
        total_lagged += lagged;
        println!("subscriber {i}: {r}");
    }
    assert!(
        num(&results[3], "lagged") > 0,
        "the slow subscriber lagged: {}",
        results[3]
    );
    let stats = log.stats();
    assert_eq!(stats.published, n);
    assert_eq!(
        stats.lagged, total_lagged,
        "the segment's lag counter agrees"
    );
}

#[test]
fn reliable_slow_subscriber_loses_nothing_and_the_publisher_waits() {
    let n: u64 = 20_000;
    let config = LogConfig::new(32, 64).mode(LogMode::Reliable).cursors(4);
    let (setup, log) = Setup::new("fanout-rel", &config);
    log.create_cursor("fast", Start::Oldest).unwrap();
    log.create_cursor("slow", Start::Oldest).unwrap();
    let mut subs = vec![
        setup.spawn_subscriber("fast", 0, 1),
        setup.spawn_subscriber("slow", 100, 16),
    ];
    setup.wait_ready(2);
    let mut publisher = setup.spawn_publisher(0, n, 32);
    publisher.wait_ok(WAIT);
    let pub_result = publisher.results().pop().unwrap();
    log.close();
    let results = finish(&mut subs);
    for r in &results {
        assert_eq!(
            (num(r, "received"), num(r, "lagged")),
            (n, 0),
            "no loss: {r}"
        );
    }
    assert_eq!(num(&pub_result, "published"), n);
    assert!(
        num(&pub_result, "full") > 0,
        "the publisher was gated and resumed: {pub_result}"
    );
    let stats = log.stats();
    assert_eq!((stats.published, stats.lagged), (n, 0));
    for c in &stats.cursors {
        assert_eq!((c.position, c.lag, c.owner), (n, 0, None), "{c:?}");
    }
}

#[test]
fn many_publishers_one_global_order_for_every_subscriber() {
    let per: u64 = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    let publishers = 2u32;
    let config = LogConfig::new(24, 256).mode(LogMode::Reliable).cursors(4);
    let (setup, log) = Setup::new("fanout-mp", &config);
    let names = ["s0", "s1", "s2"];
    for name in names {
        log.create_cursor(name, Start::Oldest).unwrap();
    }
    let mut subs: Vec<Proc> = names
        .iter()
        .map(|name| setup.spawn_subscriber(name, 0, 32))
        .collect();
    setup.wait_ready(names.len());
    let mut pubs: Vec<Proc> = (0..publishers)
        .map(|id| setup.spawn_publisher(id, per, 24))
        .collect();
    for p in &mut pubs {
        p.wait_ok(WAIT);
    }
    log.close();
    let results = finish(&mut subs);
    let expected_counts = vec![per.to_string(); publishers as usize].join(",");
    for r in &results {
        assert_eq!(num(r, "received"), per * publishers as u64, "{r}");
        assert_eq!(num(r, "lagged"), 0, "{r}");
        assert_eq!(
            field(r, "count_per_publisher"),
            expected_counts,
            "each message exactly once: {r}"
        );
        assert_eq!(
            field(r, "digest"),
            field(&results[0], "digest"),
            "the same order for all: {results:?}"
        );
    }
    assert_eq!(log.stats().published, per * publishers as u64);
}
