//! `shmq pub` and `shmq tail`: messages in from the shell, messages out to it.
//!
//! Both look at the segment's kind first: a work queue (`pub` enqueues,
//! `tail` consumes) or a fan-out log (`pub` publishes, `tail` subscribes
//! without taking anything from anyone).

use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use shmq::inspect::Inspector;
use shmq::layout::QueueKind;
use shmq::{Log, Queue, RecvError, SendError, Start, Subscriber, Target};

use crate::{exit, signal, Format, PubArgs, StartAt, TailArgs};

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

/// What `pub` and `tail` work on.
enum Endpoint {
    Queue(Box<Queue>),
    Log(Log),
}

impl Endpoint {
    /// Opens whatever kind is at `target`.
    fn open(target: &Target) -> anyhow::Result<Endpoint> {
        Ok(match Inspector::open(target)?.params().kind {
            QueueKind::WorkQueue => Endpoint::Queue(Box::new(Queue::open(target)?)),
            QueueKind::Log => Endpoint::Log(Log::open(target)?),
        })
    }

    fn slot_size(&self) -> usize {
        match self {
            Endpoint::Queue(q) => q.slot_size(),
            Endpoint::Log(l) => l.slot_size(),
        }
    }
}

/// A generated message: `msg N` padded with dots to `size` bytes (or cut).
fn generated(seq: u64, size: usize) -> Vec<u8> {
    let mut m = format!("msg {seq} ").into_bytes();
    m.resize(size, b'.');
    m
}

/// After a wait slice without room: fails with the timeout exit code once
/// `deadline` passed (`what` says what stayed full), or on Ctrl-C; else
/// the caller tries again.
fn waited(deadline: Option<Instant>, timeout: Option<Duration>, what: &str) -> anyhow::Result<()> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(exit::fail(
            exit::TIMEOUT,
            format!(
                "{what} for {:.1} s; message not sent",
                timeout.unwrap_or_default().as_secs_f64()
            ),
        ));
    }
    signal::check()
}

fn too_large(len: usize, max: usize) -> anyhow::Error {
    exit::fail(
        exit::OTHER,
        format!("message of {len} bytes exceeds the slot size of {max} bytes"),
    )
}

/// What `pub` has done so far.
#[derive(Default)]
struct Sent {
    count: u64,
    /// Messages `--shift` discarded to make room (work queue).
    discarded: u64,
    /// Sequence numbers of the first and last message published (log).
    seqs: Option<(u64, u64)>,
}

/// Sends one message the way `pub` was asked to: shifting, or waiting (in
/// slices, so Ctrl-C is noticed) up to the timeout.
fn send(
    to: &Endpoint,
    msg: &[u8],
    shift: bool,
    timeout: Option<Duration>,
    sent: &mut Sent,
) -> anyhow::Result<()> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let slice = || {
        let slice_end = Instant::now() + SLICE;
        Some(deadline.map_or(slice_end, |d| d.min(slice_end)))
    };
    match to {
        Endpoint::Queue(q) if shift => {
            sent.discarded += q.enqueue_shift(msg)?;
        }
        Endpoint::Queue(q) => loop {
            match q.enqueue_until(msg, slice()) {
                Ok(()) => break,
                Err(SendError::Timeout) => waited(deadline, timeout, "the queue stayed full")?,
                Err(SendError::TooLarge { len, max }) => return Err(too_large(len, max)),
                Err(e) => return Err(e.into()),
            }
        },
        Endpoint::Log(log) => {
            loop {
                // In overwrite mode this never waits.
                match log.publish_until(msg, slice()) {
                    Ok(seq) => {
                        sent.seqs = Some((sent.seqs.map_or(seq, |(first, _)| first), seq));
                        break;
                    }
                    Err(SendError::Timeout | SendError::GatedBy { .. }) => waited(
                        deadline,
                        timeout,
                        "the log's slowest subscriber stayed a full ring behind",
                    )?,
                    Err(SendError::NotConnected) if timeout.is_none() => return Err(exit::fail(
                        exit::NOT_FOUND,
                        "nobody is subscribed: a reliable log accepts no message while no cursor \
                         is registered (nobody would read it); start a subscriber first, pass \
                         --timeout to wait for one, or create the log with --cursor NAME",
                    )),
                    Err(SendError::NotConnected) => {
                        waited(deadline, timeout, "nobody subscribed to the reliable log")?
                    }
                    Err(SendError::TooLarge { len, max }) => return Err(too_large(len, max)),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    sent.count += 1;
    Ok(())
}

/// `shmq pub`.
pub fn publish(a: &PubArgs) -> anyhow::Result<()> {
    let timeout = seconds(a.timeout, "--timeout")?;
    let to = Endpoint::open(&a.target)?;
    if a.shift && matches!(to, Endpoint::Log(_)) {
        return Err(exit::fail(
            exit::USAGE,
            format!(
                "--shift applies to work queues; {} is a fan-out log (in overwrite mode publishing never waits)",
                a.target
            ),
        ));
    }
    signal::install();
    let mut sent = Sent::default();
    if let Some(path) = &a.file {
        let mut data = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .with_context(|| format!("read {}", path.display()))?;
        send(&to, &data, a.shift, timeout, &mut sent)?;
    } else if let Some(count) = a.count {
        let size = a.size.unwrap_or_else(|| to.slot_size().min(64));
        for seq in 0..count {
            send(&to, &generated(seq, size), a.shift, timeout, &mut sent)?;
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
            let n = sent.count + 1;
            send(&to, &line, a.shift, timeout, &mut sent).with_context(|| format!("line {n}"))?;
        }
    }
    if !a.quiet {
        let mut extra = String::new();
        if sent.discarded > 0 {
            extra = format!(" ({} older ones discarded to make room)", sent.discarded);
        }
        if let Some((first, last)) = sent.seqs {
            extra = format!(" (sequence numbers {first} to {last})");
        }
        eprintln!(
            "shmq: published {} message(s) to {}{extra}",
            sent.count,
            crate::text::printable(&a.target.to_string())
        );
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
    let result = match Endpoint::open(&a.target)? {
        Endpoint::Queue(q) => {
            if a.from.is_some() {
                return Err(exit::fail(
                    exit::USAGE,
                    "--from applies to fan-out logs; a work queue is always consumed from its head",
                ));
            }
            tail_queue(&q, a.format, a.count, idle)
        }
        Endpoint::Log(log) => tail_log(&log, a, idle),
    };
    match result {
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

/// Subscribes to `log` where `--from` says.
fn subscribe(log: &Log, from: &StartAt) -> anyhow::Result<Subscriber> {
    Ok(match from {
        StartAt::Oldest => log.subscribe(Start::Oldest)?,
        StartAt::Latest => log.subscribe(Start::Latest)?,
        // A new cursor starts at the oldest message: a durable reader
        // wants everything still there the first time.
        StartAt::Cursor(name) => log
            .subscribe_named(name, Start::Oldest)
            .with_context(|| format!("cursor {name:?}"))?,
    })
}

/// Prints a log's messages until `--count`, an idle `--timeout`, the
/// log's close, or Ctrl-C. On a named cursor, each message is committed
/// once printed (written out), so a later tail on it resumes after it.
fn tail_log(log: &Log, a: &TailArgs, idle: Option<Duration>) -> anyhow::Result<()> {
    signal::install();
    let mut sub = subscribe(log, a.from.as_ref().unwrap_or(&StartAt::Latest))?;
    let named = sub.name().is_some();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut buf = vec![0u8; log.slot_size()];
    let mut seen = 0u64;
    let mut lost = 0u64;
    let mut last = Instant::now();
    while a.count.is_none_or(|c| seen < c) {
        let got = match sub.recv_try(&mut buf) {
            Err(RecvError::Empty) => {
                out.flush()?;
                let slice_end = Instant::now() + SLICE;
                let until = idle.map_or(slice_end, |t| (last + t).min(slice_end));
                sub.recv_until(&mut buf, Some(until))
            }
            other => other,
        };
        match got {
            Ok(len) => {
                print(&mut out, &buf[..len], a.format)?;
                if named {
                    out.flush()?;
                    sub.commit()?;
                }
                seen += 1;
                last = Instant::now();
            }
            Err(RecvError::Lagged(n)) => {
                out.flush()?;
                lost += n;
                eprintln!(
                    "shmq: lagged: {n} message(s) overwritten before they could be read; \
                     going on from the oldest one left"
                );
            }
            Err(RecvError::Timeout) => {
                if signal::interrupted() {
                    break;
                }
                if let Some(t) = idle {
                    if last.elapsed() >= t {
                        out.flush()?;
                        return Err(exit::fail(
                            exit::TIMEOUT,
                            format!(
                                "no message for {:.1} s ({seen} received{})",
                                t.as_secs_f64(),
                                if lost > 0 {
                                    format!(", {lost} lost")
                                } else {
                                    String::new()
                                }
                            ),
                        ));
                    }
                }
            }
            Err(RecvError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    out.flush()?;
    Ok(())
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
            Err(RecvError::Empty) => {
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
            Err(RecvError::Timeout) => {
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
            Err(RecvError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    out.flush()?;
    Ok(())
}
