//! The runnable examples run, finish and say what they should (each starts
//! its own second process). `cargo test` builds them beside this binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};
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
