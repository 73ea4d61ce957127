//! Harness for multi-process tests: unique names, targets removed on drop
//! (also when a test panics), and child processes that are this very test
//! binary re-executing itself into a named role.
//!
//! A test file declares its roles once:
//! ```ignore
//! mod common;
//! common::child_roles! { "producer" => producer, "consumer" => consumer }
//! fn producer(args: &[String]) { ... }
//! ```
//! and spawns them with [`Proc::spawn`]. A child reports results to its
//! parent by printing lines that start with `RESULT ` (see [`Proc::results`]).
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmq::Target;

pub mod native;

/// Environment variable naming the role of a child process.
pub const ROLE_ENV: &str = "SHMQ_TEST_ROLE";
/// Environment variable carrying a child's arguments, separated by U+001F.
pub const ARGS_ENV: &str = "SHMQ_TEST_ARGS";
const SEP: char = '\u{1f}';

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (in this or another process) uses: `shmq-test-TAG-PID-N`.
pub fn unique(tag: &str) -> String {
    format!(
        "shmq-test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A target that is unlinked when dropped (ignoring "not found").
pub struct Guard(pub Target);

impl std::ops::Deref for Guard {
    type Target = Target;
    fn deref(&self) -> &Target {
        &self.0
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.unlink_force();
    }
}

/// A fresh POSIX name, removed on drop.
pub fn posix(tag: &str) -> Guard {
    Guard(Target::Posix(unique(tag)))
}

/// A fresh SysV key, removed on drop.
pub fn sysv() -> Guard {
    Guard(Target::SysV(
        shmq::find_free_key().expect("a free SysV key"),
    ))
}

/// A fresh file path in the temporary directory, removed on drop.
pub fn file(tag: &str) -> Guard {
    Guard(Target::File(std::env::temp_dir().join(unique(tag))))
}

/// All three backings, each fresh and removed on drop.
pub fn all_backings(tag: &str) -> Vec<Guard> {
    vec![sysv(), posix(tag), file(tag)]
}

/// Declares the roles child processes of this test file can take.
///
/// Expands to an ignored test `__child` that dispatches on [`ROLE_ENV`];
/// it runs only when a parent spawns it with `--include-ignored`.
#[macro_export]
macro_rules! child_roles {
    ($($name:literal => $f:path),* $(,)?) => {
        #[test]
        #[ignore = "entry point of the child processes this file's tests spawn"]
        fn __child() {
            let role = std::env::var($crate::common::ROLE_ENV).expect("spawned by a parent test");
            let args = $crate::common::child_args();
            match role.as_str() {
                $($name => $f(&args),)*
                other => panic!("unknown child role {other:?}"),
            }
        }
    };
}
pub use child_roles;

/// The arguments the parent passed to this child.
pub fn child_args() -> Vec<String> {
    std::env::var(ARGS_ENV)
        .unwrap_or_default()
        .split(SEP)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A child process running one role; killed (and reaped) on drop.
pub struct Proc {
    child: Option<Child>,
    role: String,
    output: Option<String>,
}

impl Proc {
    /// Spawns this test binary as a child in `role` with `args`.
    pub fn spawn(role: &str, args: &[String]) -> Proc {
        Proc::spawn_env(role, args, &[])
    }

    /// As [`Proc::spawn`], with extra environment variables.
    pub fn spawn_env(role: &str, args: &[String], env: &[(&str, &str)]) -> Proc {
        let exe = std::env::current_exe().expect("test binary path");
        let child = Command::new(exe)
            .envs(env.iter().copied())
            .args([
                "--exact",
                "__child",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(ROLE_ENV, role)
            .env(ARGS_ENV, args.join(&SEP.to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child test process");
        Proc {
            child: Some(child),
            role: role.to_owned(),
            output: None,
        }
    }

    /// The process id of the child.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Waits at most `timeout` for the child to exit; kills it and panics if
    /// it does not. Collects its standard output.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("not yet waited");
        let deadline = Instant::now() + timeout;
        // Drain stdout on a thread so a chatty child never blocks on a full pipe.
        let mut stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child {:?} did not exit within {timeout:?}", self.role);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.output = Some(reader.join().unwrap_or_default());
        self.child = None;
        status
    }

    /// Waits like [`Proc::wait`] and asserts the child succeeded.
    pub fn wait_ok(&mut self, timeout: Duration) {
        let status = self.wait(timeout);
        assert!(status.success(), "child {:?} failed: {status}", self.role);
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        if let Some(child) = &self.child {
            // SAFETY: signalling our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as i32, sig) };
        }
    }

    /// The child's state letter from /proc (R, S, T for stopped, Z, ...).
    pub fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        stat[stat.rfind(')')? + 1..]
            .split_whitespace()
            .next()?
            .chars()
            .next()
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The `RESULT ` lines the child printed (without the prefix), after a wait.
    pub fn results(&self) -> Vec<String> {
        self.output
            .as_deref()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("RESULT "))
            .map(String::from)
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Prints a result line for the parent (see [`Proc::results`]).
pub fn report(line: impl std::fmt::Display) {
    println!("RESULT {line}");
}

/// Polls `cond` every millisecond until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// Smallest message [`make_msg`] builds: producer id, sequence, checksum.
pub const MSG_MIN: usize = 16;

/// A self-checking message: producer id (4 bytes), sequence (8), FNV-1a
/// checksum (4) of everything else, then `len - 16` bytes derived from both.
pub fn make_msg(producer: u32, seq: u64, len: usize) -> Vec<u8> {
    assert!(len >= MSG_MIN);
    let mut m = vec![0u8; len];
    m[0..4].copy_from_slice(&producer.to_le_bytes());
    m[4..12].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in m[MSG_MIN..].iter_mut().enumerate() {
        *b = (seq as usize)
            .wrapping_mul(31)
            .wrapping_add(i)
            .wrapping_add(producer as usize) as u8;
    }
    let sum = fnv(&m[0..12], &m[MSG_MIN..]);
    m[12..16].copy_from_slice(&sum.to_le_bytes());
    m
}

/// Checks a message built by [`make_msg`]; returns (producer, sequence).
pub fn check_msg(m: &[u8]) -> Result<(u32, u64), String> {
    if m.len() < MSG_MIN {
        return Err(format!("message of {} bytes is too short", m.len()));
    }
    let sum = u32::from_le_bytes(m[12..16].try_into().unwrap());
    if fnv(&m[0..12], &m[MSG_MIN..]) != sum {
        return Err("checksum mismatch (torn or corrupted message)".into());
    }
    Ok((
        u32::from_le_bytes(m[0..4].try_into().unwrap()),
        u64::from_le_bytes(m[4..12].try_into().unwrap()),
    ))
}

fn fnv(a: &[u8], b: &[u8]) -> u32 {
    a.iter().chain(b).fold(0x811c_9dc5u32, |h, &x| {
        (h ^ x as u32).wrapping_mul(0x0100_0193)
    })
}
