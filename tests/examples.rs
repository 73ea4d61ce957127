//! The runnable examples run, finish and say what they should (each starts
//! its own second process). `cargo test` builds them beside this binary.
//!
//! The market-data feed runs across languages: the C and Go subscribers
//! are built here against the libshmq.so of `cargo build --release` (a C
//! compiler and Go are required: a missing one fails the test saying so).

// The shared harness (unique names, targets removed on drop).
#[allow(unused_imports)]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-HASH -> target/<profile>/examples/NAME
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built (cargo test builds examples)",
        path.display()
    );
    path
}

/// Runs an example to completion within `limit` and returns its standard output.
fn run(name: &str, args: &[&str], limit: Duration) -> String {
    let mut child = Command::new(example(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn example");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
            assert!(status.success(), "{name} failed: {status}\n{out}");
            return out;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ping_pong_round_trips_between_two_processes() {
    let out = run("ping_pong", &["2000"], Duration::from_secs(60));
    assert!(out.contains("2000 round trips of 64 bytes"), "{out}");
}

#[test]
fn workers_do_every_job_exactly_once() {
    let out = run("workers", &["2", "3000"], Duration::from_secs(60));
    assert!(out.contains("3000 jobs done by"), "{out}");
    assert!(
        out.contains("sum of squares 8995500500 (expected 8995500500)"),
        "{out}"
    );
}

#[test]
fn packet_pipeline_processes_every_committed_packet_once_in_place() {
    let out = run("packet_pipeline", &["2", "5000"], Duration::from_secs(60));
    // The example itself fails unless the workers processed exactly what
    // the reader committed, each once, every checksum right.
    let committed = out
        .split("the reader committed ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no committed count in: {out}"));
    assert!(committed > 0, "{out}");
    assert!(
        out.contains(&format!(
            "2 workers processed {committed} in place, 0 with a bad checksum"
        )),
        "{out}"
    );
}

// ---- market data: the paced feed, one subscriber per language ----

/// Waits for `child` to exit, at most `limit` (then kills it and panics).
fn wait_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process of the feed: killed if still running when dropped (a failed
/// test leaves none behind); its output collected by a thread.
struct Feed {
    name: &'static str,
    child: Child,
    out: Option<std::thread::JoinHandle<String>>,
}

impl Feed {
    fn spawn(name: &'static str, cmd: &mut Command) -> Feed {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
        Feed {
            name,
            child,
            out: Some(out),
        }
    }

    /// Waits for a successful exit within `limit`; returns the output.
    fn finish(&mut self, limit: Duration) -> String {
        let status = wait_within(&mut self.child, limit, self.name);
        let out = self.out.take().expect("once").join().unwrap_or_default();
        assert!(status.success(), "{} failed: {status}\n{out}", self.name);
        out
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The number after `prefix` in `line`.
fn number_after(line: &str, prefix: &str) -> Option<f64> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    rest.split_whitespace()
        .next()?
        .trim_end_matches(',')
        .parse()
        .ok()
}

#[test]
fn market_feed_reaches_rust_c_and_go_subscribers_in_order() {
    let lib = common::native::lib_dir();
    let c_sub = common::native::build_c("examples/market_sub", "market_sub_c", &lib);
    let go_sub = common::native::build_go("examples/market-sub", "market_sub_go", &lib);

    // One second at 100 k quotes/s into a reliable log with a durable
    // cursor per subscriber, created before the first quote.
    let target = common::posix("market");
    let shmq::Target::Posix(name) = &target.0 else {
        unreachable!()
    };
    let mut publisher = Feed::spawn(
        "market_pub",
        Command::new(example("market_pub")).args([
            "--target",
            name,
            "--secs",
            "1",
            "--rate",
            "100000",
            "--cursors",
            "rust,c,go",
        ]),
    );
    let mut subs = [
        Feed::spawn(
            "market_sub (Rust)",
            Command::new(example("market_sub")).args(["--target", name, "--name", "rust"]),
        ),
        Feed::spawn(
            "market_sub (C)",
            Command::new(&c_sub).args([name.as_str(), "--name", "c"]),
        ),
        Feed::spawn(
            "market-sub (Go)",
            Command::new(&go_sub).args(["-target", name, "-name", "go"]),
        ),
    ];
    let limit = Duration::from_secs(60);
    let out = publisher.finish(limit);
    let published = out
        .lines()
        .find_map(|l| number_after(l, "done: "))
        .unwrap_or_else(|| panic!("the publisher said {out}"));
    assert!(published >= 1000.0, "{out}");
    for sub in &mut subs {
        let out = sub.finish(limit);
        let name = sub.name;
        // Reliable from the first quote: every one, in order.
        let got = out
            .lines()
            .find(|l| l.starts_with("received "))
            .unwrap_or_else(|| panic!("{name} printed no summary:\n{out}"));
        assert_eq!(
            got,
            format!("received {published} quotes, lost 0 to lag, 0 unexplained gaps, first 0"),
            "{name}:\n{out}"
        );
        // And a histogram over all of them, percentiles in order.
        let hist = out
            .lines()
            .find(|l| l.starts_with("latency from scheduled send ("))
            .unwrap_or_else(|| panic!("{name} printed no histogram:\n{out}"));
        assert!(
            hist.starts_with(&format!("latency from scheduled send ({published} quotes)")),
            "{name}: {hist}"
        );
        let p: Vec<f64> = ["p50 ", "p90 ", "p99 ", "p99.9 ", "max "]
            .iter()
            .map(|k| number_after(hist, k).unwrap_or_else(|| panic!("{name}: no {k}in {hist}")))
            .collect();
        assert!(
            p[0] > 0.0 && p.windows(2).all(|w| w[0] <= w[1]),
            "{name}: {hist}"
        );
        println!("{name}: {hist}");
    }
    // The publisher removed the log once the subscribers were done.
    assert!(
        matches!(shmq::Log::open(&target), Err(shmq::Error::NotFound { .. })),
        "the log is still there"
    );
}
