//! Rust, C and Go on one queue: Rust producer threads in this process, a C
//! consumer process (ffi/c/consumer.c) and a Go consumer process
//! (ffi/go/internal/testconsumer). Every message must be delivered exactly
//! once over the union of both consumers, intact (checksums) and in order
//! per producer within each consumer.
//!
//! The consumers are built here against the libshmq.so that `cargo build`
//! made in target/<profile> (the test checks that it is not older than the
//! sources), so a C compiler and Go are required: a missing one fails the
//! test with a message saying so.

// The shared harness (its `child_roles!` is not needed here).
#[allow(unused_imports)]
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmq::{Queue, QueueConfig};

const PRODUCERS: u32 = 2;
const PER_PRODUCER: u64 = 10_000;
const SLOT: usize = 64;

fn build_consumers(lib: &Path) -> (PathBuf, PathBuf) {
    (
        common::native::build_c("consumer", "c_consumer", lib),
        common::native::build_go("internal/testconsumer", "go_consumer", lib),
    )
}

/// A consumer process whose output lines arrive on a channel.
struct Consumer {
    name: &'static str,
    child: Child,
    lines: mpsc::Receiver<String>,
    results: Vec<(u32, u64)>,
}

impl Consumer {
    fn spawn(name: &'static str, bin: &Path, args: &[String], lib: &Path) -> Consumer {
        let mut child = Command::new(bin)
            .args(args)
            .env("LD_LIBRARY_PATH", lib)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the {name} consumer: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Consumer {
            name,
            child,
            lines,
            results: Vec::new(),
        }
    }

    fn wait_ready(&self, timeout: Duration) {
        match self.lines.recv_timeout(timeout) {
            Ok(line) if line == "READY" => {}
            other => panic!("the {} consumer did not get ready: {other:?}", self.name),
        }
    }

    /// Waits for the process to exit (at most `timeout`) and collects its results.
    fn finish(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the {} consumer did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            if let Some(rest) = line.strip_prefix("RESULT ") {
                let mut it = rest.split(' ').map(|s| s.parse::<u64>().expect("a number"));
                let (p, seq) = (it.next().expect("producer"), it.next().expect("sequence"));
                self.results.push((p as u32, seq));
            }
        }
        assert!(
            status.success(),
            "the {} consumer failed: {status}",
            self.name
        );
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rust_producer_c_consumer_go_consumer_exactly_once() {
    let lib = common::native::lib_dir();
    let (c_bin, go_bin) = build_consumers(&lib);

    let target = common::posix("cross");
    let q = Queue::create(&target, &QueueConfig::new(SLOT, 32)).expect("create the queue");
    let total = PRODUCERS as u64 * PER_PRODUCER;
    // Each consumer takes at most 60% of the messages, so each must take at
    // least 40%: all three languages really take part.
    let max = (total * 6 / 10).to_string();
    let t = target.to_string();
    let mut c = Consumer::spawn("C", &c_bin, &[t.clone(), "--max".into(), max.clone()], &lib);
    let mut go = Consumer::spawn("Go", &go_bin, &["-max".into(), max, t], &lib);
    c.wait_ready(Duration::from_secs(30));
    go.wait_ready(Duration::from_secs(30));

    std::thread::scope(|s| {
        for p in 1..=PRODUCERS {
            let q = &q;
            s.spawn(move || {
                for seq in 0..PER_PRODUCER {
                    let len = common::MSG_MIN + (seq as usize * 7) % (SLOT - common::MSG_MIN + 1);
                    q.enqueue_block(
                        &common::make_msg(p, seq, len),
                        Some(Duration::from_secs(10)),
                    )
                    .unwrap_or_else(|e| panic!("producer {p}, message {seq}: {e}"));
                }
            });
        }
    });
    q.close();
    c.finish(Duration::from_secs(60));
    go.finish(Duration::from_secs(60));

    let mut seen: HashMap<(u32, u64), u32> = HashMap::new();
    for (name, results) in [("C", &c.results), ("Go", &go.results)] {
        assert!(
            results.len() as u64 >= total * 4 / 10,
            "the {name} consumer got only {} messages",
            results.len()
        );
        for &r in results.iter() {
            *seen.entry(r).or_default() += 1;
        }
    }
    for p in 1..=PRODUCERS {
        for seq in 0..PER_PRODUCER {
            match seen.get(&(p, seq)) {
                Some(1) => {}
                Some(n) => panic!("message {seq} of producer {p} was delivered {n} times"),
                None => panic!("message {seq} of producer {p} was never delivered"),
            }
        }
    }
    assert_eq!(
        seen.len() as u64,
        total,
        "messages nobody sent were delivered"
    );
    let stats = q.stats();
    assert_eq!(
        (stats.enqueued, stats.dequeued, stats.len),
        (total, total, 0)
    );
    eprintln!(
        "Rust producers -> C consumer {} + Go consumer {} = {total} messages, each exactly once",
        c.results.len(),
        go.results.len()
    );
}
