//! What the bridge tests share: a `nats-server` of their own on a free
//! loopback port, bridge processes, logs that are unlinked on drop, and
//! bounded waits.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmq::{Log, LogConfig, LogMode, RecvError, Start, Target};

/// The `nats-server` binary: `$NATS_SERVER`, then `PATH`, then
/// `$(go env GOPATH)/bin`. Missing: the test fails, naming the install line.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("nats-server");
            if p.is_file() {
                return p;
            }
        }
    }
    let gopath = Command::new("go")
        .args(["env", "GOPATH"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/go")));
    if let Some(g) = gopath {
        let p = Path::new(&g).join("bin/nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "nats-server not found (NATS_SERVER, PATH, $(go env GOPATH)/bin): run scripts/install-deps.sh, \
         or: go install github.com/nats-io/nats-server/v2@v2.15.2"
    );
}

/// A unique name for this test process.
pub fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    // Relaxed: a counter for unique names.
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("shmq-bridge-t-{}-{what}-{n}", std::process::id())
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(what));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound then released: the server takes it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `nats-server` on loopback, killed on drop.
pub struct Nats {
    pub port: u16,
    store: Option<PathBuf>,
    child: Option<Child>,
    log: PathBuf,
    /// A configuration file (`-c`), for settings without a flag.
    config: Option<PathBuf>,
}

impl Nats {
    /// Starts a server; with JetStream when `store` is given (its directory).
    pub fn start(store: Option<&Path>, log: PathBuf) -> Nats {
        let mut n = Nats {
            port: free_port(),
            store: store.map(Path::to_owned),
            child: None,
            log,
            config: None,
        };
        n.spawn();
        n
    }

    /// Starts a server (no JetStream) with `config` as its configuration
    /// file's text (written beside `log`); the port is still ours.
    pub fn start_with_config(config: &str, log: PathBuf) -> Nats {
        let file = log.with_extension("conf");
        std::fs::write(&file, config).unwrap();
        let mut n = Nats {
            port: free_port(),
            store: None,
            child: None,
            log,
            config: Some(file),
        };
        n.spawn();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(nats_server_bin());
        if let Some(c) = &self.config {
            cmd.arg("-c").arg(c);
        }
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(s) = &self.store {
            cmd.arg("-js").arg("-sd").arg(s);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().expect("starting nats-server"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGTERM, as a restart by an operator) and starts it
    /// again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops the server (SIGTERM); [`Nats::start_again`] brings it back.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix_kill(c.id(), libc::SIGTERM);
            wait_child(&mut c, Duration::from_secs(10));
        }
    }

    /// Starts the stopped server again on the same port with the same store.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn nix_kill(pid: u32, sig: i32) -> i32 {
    // SAFETY: kill(2) with a pid of our own child and a valid signal number.
    unsafe { libc::kill(pid as i32, sig) }
}

/// Waits for `c` up to `limit`, killing it (and failing) past that.
pub fn wait_child(c: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("process {} did not exit within {limit:?}", c.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `shmq-bridge` process, killed on drop; its standard error goes to a file.
pub struct Bridge {
    pub child: Option<Child>,
    pub stderr: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Bridge {
    pub fn start(args: &[&str], stderr: PathBuf) -> Bridge {
        Bridge::start_env(args, stderr, &[])
    }

    /// Starts with extra environment variables (this first run only).
    pub fn start_env(args: &[&str], stderr: PathBuf, env: &[(&str, &str)]) -> Bridge {
        let mut b = Bridge {
            child: None,
            stderr,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        b.spawn();
        b.env.clear();
        b
    }

    /// Waits (bounded) for the process to end by itself; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        wait_child(&mut c, limit)
    }

    /// Starts again with the same arguments (after it ended).
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    fn spawn(&mut self) {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .unwrap();
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_shmq-bridge"))
                .args(&self.args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .expect("starting shmq-bridge"),
        );
    }

    /// SIGKILL, then start again with the same arguments.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and the exit status (bounded).
    pub fn term(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        nix_kill(c.id(), libc::SIGTERM);
        wait_child(&mut c, Duration::from_secs(30))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the log holds `what` `times` times.
    pub fn wait_log(&self, what: &str, times: usize, limit: Duration) {
        wait_until(limit, &format!("{what:?} in the bridge's log"), || {
            self.log().matches(what).count() >= times
        });
        let _ = &self.stderr;
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- {} ---\n{}",
                self.stderr.display(),
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
        }
    }
}

/// Polls `cond` every 20 ms, failing with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A log unlinked on drop.
pub struct TestLog {
    pub target: Target,
    pub log: Log,
}

impl TestLog {
    pub fn create(what: &str, mode: LogMode, capacity: usize) -> TestLog {
        let target = Target::Posix(unique(what));
        let log = Log::create(&target, &LogConfig::new(64, capacity).mode(mode).cursors(8))
            .expect("creating a log");
        TestLog { target, log }
    }

    pub fn name(&self) -> String {
        self.target.to_string()
    }

    /// Every message from the oldest, as their 8-byte indices.
    pub fn indices(&self) -> Vec<u64> {
        let mut sub = self.log.subscribe(Start::Oldest).unwrap();
        let mut buf = [0u8; 64];
        let mut out = Vec::new();
        loop {
            match sub.recv_try(&mut buf) {
                Ok(n) => {
                    assert!(n >= 8, "a message of {n} bytes");
                    out.push(u64::from_le_bytes(buf[..8].try_into().unwrap()));
                }
                Err(RecvError::Empty) => return out,
                Err(e) => panic!("reading the log: {e}"),
            }
        }
    }
}

impl Drop for TestLog {
    fn drop(&mut self) {
        let _ = self.target.unlink();
    }
}

/// The 64-byte message number `i`: its index, then a pattern.
pub fn message(i: u64) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[..8].copy_from_slice(&i.to_le_bytes());
    for (k, b) in m[8..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(k as u8);
    }
    m
}

/// The value of `key=` in the line of route `route` of a status file.
pub fn status_value(file: &Path, route: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("route={route} ")))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

/// A page of the server's monitoring endpoint (`http` in its configuration:
/// `Nats::start_with_config("http: \"127.0.0.1:PORT\"")`), such as `/connz`
/// or `/varz`, as JSON.
pub fn monitor(http_port: u16, page: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {page} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let body = &reply[reply.find("\r\n\r\n").expect("an HTTP reply") + 4..];
    serde_json::from_str(body).unwrap()
}

/// Starts an in route `name` from `subject` into `local` through `server`,
/// its state and status files in `dir` (`<name>.state`, [`status_of`]), its
/// stderr in `<name>.log`, and waits until it has subscribed.
pub fn start_in(dir: &TempDir, local: &str, subject: &str, name: &str, server: &str) -> Bridge {
    let state = dir.path(&format!("{name}.state"));
    let status = status_of(dir, name);
    let b = Bridge::start(
        &[
            "in",
            "--local",
            local,
            "--subject",
            subject,
            "--name",
            name,
            "--server",
            server,
            "--state",
            state.to_str().unwrap(),
            "--status-file",
            status.to_str().unwrap(),
        ],
        dir.path(&format!("{name}.log")),
    );
    b.wait_log(
        &format!("subscribed to {subject}"),
        1,
        Duration::from_secs(20),
    );
    b
}

/// The status file of the in route `name` started by [`start_in`].
pub fn status_of(dir: &TempDir, name: &str) -> PathBuf {
    dir.path(&format!("{name}.status"))
}

/// Starts an out route `name` from `local` to `subject` through `server`
/// (core mode unless `extra` says otherwise), its stderr in `<name>.log`.
pub fn start_out(
    dir: &TempDir,
    local: &str,
    subject: &str,
    name: &str,
    server: &str,
    extra: &[&str],
) -> Bridge {
    let mut args = vec![
        "out",
        "--local",
        local,
        "--subject",
        subject,
        "--name",
        name,
        "--server",
        server,
    ];
    args.extend_from_slice(extra);
    Bridge::start(&args, dir.path(&format!("{name}.log")))
}

/// Enqueues messages `0..n` into `qa` from a thread while taking them from
/// `qb` (which may hold fewer than `n`: the in route waits while it is
/// full), checking that each comes once and in order.
pub fn queue_through(qa: shmq::Queue, qb: &shmq::Queue, n: u64) {
    let producer = std::thread::spawn(move || {
        for i in 0..n {
            qa.enqueue_block(&message(i), Some(Duration::from_secs(20)))
                .unwrap();
        }
    });
    let mut buf = [0u8; 64];
    for i in 0..n {
        let len = qb
            .dequeue_block(&mut buf, Some(Duration::from_secs(20)))
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert_eq!(len, 64);
        assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), i);
    }
    producer.join().unwrap();
}
