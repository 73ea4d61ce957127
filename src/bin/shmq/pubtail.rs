//! `shmq pub` and `shmq tail`: messages in from the shell, messages out to it.
//!
//! Both look at the segment's kind first; the work queue is handled here,
//! and the fan-out log hangs off the same `match` (see `EXTENSION(log)`).

use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use shmq::inspect::Inspector;
use shmq::layout::QueueKind;
use shmq::{DequeueError, EnqueueError, Queue, Target};

use crate::{exit, signal, Format, PubArgs, TailArgs};

/// How long one blocking call waits before looking at the Ctrl-C flag.
const SLICE: Duration = Duration::from_millis(100);

fn seconds(s: Option<f64>, what: &str) -> anyhow::Result<Option<Duration>> {
    match s {
        None => Ok(None),
        Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(Duration::from_secs_f64(v))),
        Some(v) => Err(exit::fail(
            exit::USAGE,
            format!("{what} {v} is not a number of seconds"),
        )),
    }
}

/// Opens the work queue at `target`, or says why `what` cannot use it.
fn open_queue(target: &Target, what: &str) -> anyhow::Result<Queue> {
    match Inspector::open(target)?.params().kind {
        QueueKind::WorkQueue => Ok(Queue::open(target)?),
        // EXTENSION(log): open the log and publish / subscribe here.
        QueueKind::Log => Err(exit::fail(
            exit::INCOMPATIBLE,
            format!(
                "{target} is a fan-out log; `shmq {what}` handles work queues only in this build"
            ),
        )),
    }
}

/// A generated message: `msg N` padded with dots to `size` bytes (or cut).
fn generated(seq: u64, size: usize) -> Vec<u8> {
    let mut m = format!("msg {seq} ").into_bytes();
    m.resize(size, b'.');
    m
}

/// Enqueues one message the way `pub` was asked to: shifting, or waiting
/// (in slices, so Ctrl-C is noticed) up to the timeout.
fn send(
    q: &Queue,
    msg: &[u8],
    shift: bool,
    timeout: Option<Duration>,
    discarded: &mut u64,
) -> anyhow::Result<()> {
    if shift {
        *discarded += q.enqueue_shift(msg)?;
        return Ok(());
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice_end = Instant::now() + SLICE;
        let until = deadline.map_or(slice_end, |d| d.min(slice_end));
        match q.enqueue_until(msg, Some(until)) {
            Ok(()) => return Ok(()),
            Err(EnqueueError::Timeout) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(exit::fail(
                        exit::TIMEOUT,
                        format!(
                            "the queue stayed full for {:.1} s; message not sent",
                            timeout.unwrap_or_default().as_secs_f64()
                        ),
                    ));
                }
                signal::check()?;
            }
            Err(EnqueueError::TooLarge { len, max }) => {
                return Err(exit::fail(
                    exit::OTHER,
                    format!("message of {len} bytes exceeds the slot size of {max} bytes"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `shmq pub`.
pub fn publish(a: &PubArgs) -> anyhow::Result<()> {
    let timeout = seconds(a.timeout, "--timeout")?;
    let q = open_queue(&a.target, "pub")?;
    signal::install();
    let mut sent = 0u64;
    let mut discarded = 0u64;
    if let Some(path) = &a.file {
        let mut data = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .with_context(|| format!("read {}", path.display()))?;
        send(&q, &data, a.shift, timeout, &mut discarded)?;
        sent = 1;
    } else if let Some(count) = a.count {
        let size = a.size.unwrap_or_else(|| q.slot_size().min(64));
        for seq in 0..count {
            send(&q, &generated(seq, size), a.shift, timeout, &mut discarded)?;
            sent += 1;
        }
    } else {
        let mut input = std::io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            if input
                .read_until(b'\n', &mut line)
                .context("read standard input")?
                == 0
            {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            send(&q, &line, a.shift, timeout, &mut discarded)
                .with_context(|| format!("line {}", sent + 1))?;
            sent += 1;
        }
    }
    if !a.quiet {
        let extra = if discarded > 0 {
            format!(" ({discarded} older ones discarded to make room)")
        } else {
            String::new()
        };
        eprintln!("shmq: published {sent} message(s) to {}{extra}", a.target);
    }
    Ok(())
}

fn print(out: &mut impl Write, msg: &[u8], format: Format) -> std::io::Result<()> {
    match format {
        Format::Text => out.write_all(msg)?,
        Format::Hex => {
            for b in msg {
                write!(out, "{b:02x}")?;
            }
        }
        Format::Len => write!(out, "{}", msg.len())?,
    }
    out.write_all(b"\n")
}

/// `shmq tail`.
pub fn tail(a: &TailArgs) -> anyhow::Result<()> {
    let idle = seconds(a.timeout, "--timeout")?;
    let kind = Inspector::open(&a.target)?.params().kind;
    match kind {
        QueueKind::WorkQueue => {
            if let Some(from) = &a.from {
                return Err(exit::fail(
                    exit::USAGE,
                    format!("--from {from} applies to fan-out logs; a work queue is always consumed from its head"),
                ));
            }
            let q = open_queue(&a.target, "tail")?;
            match tail_queue(&q, a.format, a.count, idle) {
                // A closed standard output (`shmq tail q | head`) ends the tail.
                Err(e)
                    if e.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
                {
                    Ok(())
                }
                other => other,
            }
        }
        // EXTENSION(log): subscribe from --from (oldest, latest or a named
        // cursor) and print like tail_queue, reporting Lagged(n) on stderr.
        QueueKind::Log => Err(exit::fail(
            exit::INCOMPATIBLE,
            format!(
                "{} is a fan-out log; `shmq tail` handles work queues only in this build",
                a.target
            ),
        )),
    }
}

/// Consumes and prints messages until `count`, an idle `timeout`, the
/// queue's close, or Ctrl-C.
fn tail_queue(
    q: &Queue,
    format: Format,
    count: Option<u64>,
    idle: Option<Duration>,
) -> anyhow::Result<()> {
    signal::install();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut buf = vec![0u8; q.slot_size()];
    let mut seen = 0u64;
    let mut last = Instant::now();
    while count.is_none_or(|c| seen < c) {
        let got = match q.dequeue_try(&mut buf) {
            Err(DequeueError::Empty) => {
                // Show what we have before waiting.
                out.flush()?;
                let slice_end = Instant::now() + SLICE;
                let until = idle.map_or(slice_end, |t| (last + t).min(slice_end));
                q.dequeue_until(&mut buf, Some(until))
            }
            other => other,
        };
        match got {
            Ok(len) => {
                print(&mut out, &buf[..len], format)?;
                seen += 1;
                last = Instant::now();
            }
            Err(DequeueError::Timeout) => {
                if signal::interrupted() {
                    break;
                }
                if let Some(t) = idle {
                    if last.elapsed() >= t {
                        out.flush()?;
                        return Err(exit::fail(
                            exit::TIMEOUT,
                            format!("no message for {:.1} s ({seen} received)", t.as_secs_f64()),
                        ));
                    }
                }
            }
            Err(DequeueError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    out.flush()?;
    Ok(())
}
