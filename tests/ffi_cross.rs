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
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmq::{Queue, QueueConfig};

const PRODUCERS: u32 = 2;
const PER_PRODUCER: u64 = 10_000;
const SLOT: usize = 64;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile>: where `cargo build` put libshmq.so. (`cargo test` does
/// not build the cdylib, so it must exist, and be newer than the sources.)
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf();
    let profile = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    let so = dir.join("libshmq.so");
    let built = std::fs::metadata(&so)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build{profile}` first",
                so.display()
            )
        });
    let newest = newest_source(&repo().join("src"));
    assert!(
        built >= newest,
        "{} is older than the sources: run `cargo build{profile}` first",
        so.display()
    );
    dir
}

fn newest_source(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir)
        .expect("read src/")
        .map_while(Result::ok)
    {
        let path = entry.path();
        // src/bin is the command line: changing it does not relink the library.
        if path.ends_with("src/bin") {
            continue;
        }
        let t = if path.is_dir() {
            newest_source(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// Runs a build command, killing it after `timeout`; panics with its output on failure.
fn build(cmd: &mut Command, what: &str, timeout: Duration) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| {
        panic!("cannot run the {what} ({e}): a C compiler (cc) and Go (go) are required for this test")
    });
    let stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let errors = reader.join().unwrap_or_default();
    assert!(status.success(), "the {what} failed ({status}):\n{errors}");
}

fn build_consumers(lib: &Path) -> (PathBuf, PathBuf) {
    let out = lib.join("ffi-test-bin");
    std::fs::create_dir_all(&out).expect("create the binary directory");
    let rpath = format!("-Wl,-rpath,{}", lib.display());
    let c_bin = out.join("c_consumer");
    build(
        Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-I"])
            .arg(repo().join("include"))
            .arg(repo().join("ffi/c/consumer.c"))
            .arg("-o")
            .arg(&c_bin)
            .arg(format!("-L{}", lib.display()))
            .arg(&rpath)
            .arg("-lshmq"),
        "C compiler",
        Duration::from_secs(120),
    );
    let go_bin = out.join("go_consumer");
    build(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&go_bin)
            .arg("./internal/testconsumer")
            .current_dir(repo().join("ffi/go"))
            // Link this build's libshmq, ahead of the package's default directory.
            .env("CGO_LDFLAGS", format!("-L{} {rpath}", lib.display())),
        "Go build",
        Duration::from_secs(600),
    );
    (c_bin, go_bin)
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
    let lib = lib_dir();
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
