//! Per-route counters, the status file, and log lines.
//!
//! Every route has a [`Counters`]; the process writes them all to the
//! status file (if configured) once a second and at exit, one route per
//! line as `key=value` words, which `shmq-bridge status FILE` prints. Log
//! lines go to standard error, one event per line.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Writes one log line to standard error, with the time.
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {
        eprintln!("{} shmq-bridge: {}", $crate::status::now(), format_args!($($arg)*))
    };
}

/// Seconds since the epoch, with milliseconds, for log lines.
pub fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// The counters of one route. All Relaxed: statistics, read by the status
/// writer with no ordering against anything else.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages read from the local source (out) or NATS (in).
    pub received: AtomicU64,
    /// Out: messages acknowledged (JetStream) or flushed (core); in:
    /// messages written to the local target.
    pub forwarded: AtomicU64,
    /// Out: the sequence number of the last commit's position.
    pub committed: AtomicU64,
    /// Out: the local cursor's lag (messages not yet read).
    pub lag: AtomicU64,
    /// Out, overwrite-mode log: messages overwritten before the bridge read
    /// them. In: messages missing from a source's sequence (core NATS).
    pub lost: AtomicU64,
    /// In: duplicates dropped by sequence number.
    pub duplicates: AtomicU64,
    /// Out: re-sends after a failed publish or acknowledgement.
    pub resent: AtomicU64,
    /// Times the NATS side failed and was retried.
    pub errors: AtomicU64,
}

impl Counters {
    /// Adds `n` to `c`.
    pub fn add(c: &AtomicU64, n: u64) {
        // Relaxed: a statistic (see the struct).
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets `c` to `n`.
    pub fn set(c: &AtomicU64, n: u64) {
        // Relaxed: a statistic.
        c.store(n, Ordering::Relaxed);
    }

    fn line(&self, out: &mut String) {
        // Relaxed: statistics.
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "received={} forwarded={} committed={} lag={} lost={} duplicates={} resent={} errors={}",
            g(&self.received),
            g(&self.forwarded),
            g(&self.committed),
            g(&self.lag),
            g(&self.lost),
            g(&self.duplicates),
            g(&self.resent),
            g(&self.errors),
        );
    }
}

/// One route's description and counters, for the status file.
#[derive(Debug)]
pub struct RouteStatus {
    /// `name direction mode local subject`, fixed at start.
    pub describe: String,
    /// The counters.
    pub counters: Arc<Counters>,
}

/// The status text of every route.
pub fn render(routes: &[RouteStatus]) -> String {
    let mut out = format!("pid={} time={}\n", std::process::id(), now());
    for r in routes {
        out.push_str(&r.describe);
        out.push(' ');
        r.counters.line(&mut out);
        out.push('\n');
    }
    out
}

/// Writes the status file (to a temporary name, then renamed: a reader
/// never sees half of it).
pub fn write(path: &Path, routes: &[RouteStatus]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(routes))?;
    std::fs::rename(&tmp, path)
}
