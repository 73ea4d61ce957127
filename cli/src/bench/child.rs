//! The other side of each benchmark: `shmq bench-child ROLE`, started by the
//! parent `shmq bench`. Results go to standard output as one line
//! `RESULT key=value ...`; errors to standard error with a non-zero exit.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::ValueEnum;
use shmq::{Consumer, Log, Producer, Queue, RecvError, Start, Target};

use super::raw::{self, Stop};
use super::{histogram, now_ns, ChildArgs, Ctl, Op, BATCH};

/// What a benchmark child does.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Echo every message back (latency).
    Pong,
    /// Send messages (throughput).
    Produce,
    /// Receive messages (throughput).
    Consume,
    /// Echo `size`-byte messages from fd 0 to fd 1 (pipe / socket latency).
    Echo,
    /// Write messages to fd 1 after a start byte on fd 0 (pipe / socket throughput).
    Write,
    /// Receive paced, timestamped messages, sleeping between them.
    Wakeup,
    /// Sit blocked on an empty queue and report the CPU time spent.
    Idle,
    /// Echo every message of one log to another (log latency).
    LogPong,
    /// Publish messages to a log (fan-out throughput).
    LogPublish,
    /// Receive every message of a log, checking none is missing (fan-out throughput).
    LogSubscribe,
    /// Publish messages at `--rate`, each carrying its scheduled send time.
    PacedPublish,
    /// Receive every paced message, recording now - scheduled send time.
    PacedSubscribe,
}

/// A deadline that never fires in a healthy run: the parent ends every
/// child explicitly (close, stop word, end of stream) or kills it.
const FAR: Duration = Duration::from_secs(600);

fn posix(name: &str) -> Target {
    Target::Posix(name.to_owned())
}

fn open_queue(a: &ChildArgs) -> anyhow::Result<Queue> {
    Ok(Queue::open(&posix(&a.a))?.with_wait_strategy(a.wait.strategy()))
}

// The queue's ends are taken as `Producer` / `Consumer` handles, as a user
// would: on a single-producer queue (created so by the parent) that is the
// lock-free path; on a multi-producer queue they forward to `Queue`.

fn producer(name: &str, a: &ChildArgs) -> anyhow::Result<Producer> {
    Ok(Queue::open(&posix(name))?
        .with_wait_strategy(a.wait.strategy())
        .into_producer()?)
}

fn consumer(name: &str, a: &ChildArgs) -> anyhow::Result<Consumer> {
    Ok(Queue::open(&posix(name))?
        .with_wait_strategy(a.wait.strategy())
        .into_consumer()?)
}

/// Dies with the parent, and gives up if the parent is already gone.
fn tie_to_parent(parent: u32) -> anyhow::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid have no memory preconditions.
    let ppid = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::getppid()
    };
    anyhow::ensure!(
        ppid as u32 == parent,
        "the benchmark parent {parent} is gone"
    );
    Ok(())
}

/// `shmq bench-child`.
pub fn child(a: &ChildArgs) -> anyhow::Result<()> {
    tie_to_parent(a.parent)?;
    match a.role {
        Role::Pong if a.raw => raw_pong(a),
        Role::Pong => queue_pong(a),
        Role::Produce => produce(a),
        Role::Consume => consume(a),
        Role::Echo => echo(a),
        Role::Write => write(a),
        Role::Wakeup => wakeup(a),
        Role::Idle => idle(a),
        Role::LogPong => log_pong(a),
        Role::LogPublish => log_publish(a),
        Role::LogSubscribe => log_subscribe(a),
        Role::PacedPublish => paced_publish(a),
        Role::PacedSubscribe => paced_subscribe(a),
    }
}

fn raw_pong(a: &ChildArgs) -> anyhow::Result<()> {
    let lines = raw::Lines::open(&posix(&a.a), a.size)?;
    let mut buf = vec![0u8; a.size];
    let deadline = Instant::now() + FAR;
    for seq in 1.. {
        match lines.recv(0, seq, &mut buf, deadline) {
            Ok(()) => lines.send(1, seq, &buf),
            Err(Stop::Done) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn queue_pong(a: &ChildArgs) -> anyhow::Result<()> {
    let mut rx = consumer(&a.a, a)?;
    let mut tx = producer(&a.b, a)?;
    let mut buf = vec![0u8; a.size];
    loop {
        match rx.dequeue_until(&mut buf, None) {
            Ok(n) => tx.enqueue_until(&buf[..n], None)?,
            Err(RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes message `seq` as a producer does: the whole payload (a byte
/// taken from `seq`, so no iteration's writes can be skipped), then `seq`
/// in the first 8 bytes when there are 8. Every case's producer writes its
/// whole message per message, as a real one fills it (from a socket, a
/// parser): the zero-copy case in the slot itself, the copying cases in a
/// buffer that the send then copies. A copying producer that sent the same
/// prefilled buffer again and again would skip that work.
#[inline]
fn stamp(msg: &mut [u8], seq: u64) {
    msg.fill(seq as u8);
    if msg.len() >= 8 {
        msg[..8].copy_from_slice(&seq.to_le_bytes());
    }
}

/// Checks per-producer order on the consumer side (one producer only:
/// with several, sequences interleave).
struct Order {
    check: bool,
    last: Option<u64>,
    ok: bool,
}

impl Order {
    #[inline]
    fn see(&mut self, msg: &[u8]) {
        if self.check {
            let seq = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
            if self.last.is_some_and(|l| seq <= l) {
                self.ok = false;
            }
            self.last = Some(seq);
        }
    }
}

fn produce(a: &ChildArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !a.raw || a.op == Op::Copy,
        "the raw ring has no zero-copy or batch calls"
    );
    let ctl = Ctl::open(&a.ctl)?;
    let mut msg = vec![0xa5u8; a.size];
    let far = Instant::now() + FAR;
    if a.raw {
        let ring = raw::Ring::open(&posix(&a.a), a.size, a.capacity)?;
        let mut p = raw::Producer::new(&ring);
        ctl.ready();
        ctl.wait_go()?;
        let start = now_ns();
        let stop_at = Instant::now() + Duration::from_secs_f64(a.secs);
        let mut sent = 0;
        while sent < a.count {
            if sent % 1024 == 0 && Instant::now() >= stop_at {
                break;
            }
            stamp(&mut msg, sent);
            p.push(&msg, far)?;
            sent += 1;
        }
        p.finish();
        println!("RESULT sent={sent} start_ns={start}");
        return Ok(());
    }
    let mut q = producer(&a.a, a)?;
    let mut batch = vec![vec![0xa5u8; a.size]; BATCH as usize];
    ctl.ready();
    ctl.wait_go()?;
    let start = now_ns();
    let stop_at = Instant::now() + Duration::from_secs_f64(a.secs);
    let mut sent = 0;
    let result = (|| -> anyhow::Result<()> {
        while sent < a.count {
            if sent % 1024 < BATCH as u64 && Instant::now() >= stop_at {
                break;
            }
            match a.op {
                Op::Copy => {
                    stamp(&mut msg, sent);
                    q.enqueue_until(&msg, Some(far))?;
                    sent += 1;
                }
                Op::ZeroCopy => {
                    // Written in place: the payload and the sequence.
                    let mut slot = q.reserve_until(a.size, Some(far))?;
                    stamp(&mut slot[..a.size], sent);
                    slot.commit(a.size)?;
                    sent += 1;
                }
                Op::Batch => {
                    let n = (a.count - sent).min(BATCH as u64) as usize;
                    for (i, m) in batch[..n].iter_mut().enumerate() {
                        stamp(m, sent + i as u64);
                    }
                    let refs: Vec<&[u8]> = batch[..n].iter().map(Vec::as_slice).collect();
                    let mut done = 0;
                    while done < n {
                        done += q.enqueue_batch_until(&refs[done..], Some(far))?;
                    }
                    sent += n as u64;
                }
            }
        }
        Ok(())
    })();
    // Even after a failure: the last producer out closes, so consumers end.
    if ctl.producer_done(a.producers) {
        q.close();
    }
    result?;
    println!("RESULT sent={sent} start_ns={start}");
    Ok(())
}

fn consume(a: &ChildArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !a.raw || a.op == Op::Copy,
        "the raw ring has no zero-copy or batch calls"
    );
    let ctl = Ctl::open(&a.ctl)?;
    let mut buf = vec![0u8; a.size];
    let mut order = Order {
        check: a.producers == 1 && a.size >= 8,
        last: None,
        ok: true,
    };
    let far = Instant::now() + FAR;
    let mut received = 0u64;
    if a.raw {
        let ring = raw::Ring::open(&posix(&a.a), a.size, a.capacity)?;
        let mut c = raw::Consumer::new(&ring);
        ctl.ready();
        ctl.wait_go()?;
        while c.pop(&mut buf, far)? {
            order.see(&buf);
            received += 1;
        }
    } else {
        let mut q = consumer(&a.a, a)?;
        ctl.ready();
        ctl.wait_go()?;
        loop {
            let got = match a.op {
                Op::Copy => q.dequeue_until(&mut buf, Some(far)).map(|_| {
                    order.see(&buf);
                    1
                }),
                // Read in place: the sequence (and, as a reader would, the
                // whole payload's first and last bytes), then release.
                Op::ZeroCopy => q.consume_until(Some(far)).map(|msg| {
                    order.see(&msg);
                    std::hint::black_box((msg.first(), msg.last()));
                    1
                }),
                Op::Batch => q.dequeue_batch_until(BATCH as usize, |m| order.see(m), Some(far)),
            };
            match got {
                Ok(n) => received += n as u64,
                Err(RecvError::Closed) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    let end = now_ns();
    println!(
        "RESULT received={received} end_ns={end} ordered={}",
        u8::from(order.ok)
    );
    Ok(())
}

/// Standard input and output as unbuffered files (one syscall per message).
fn raw_stdio() -> anyhow::Result<(File, File)> {
    let input = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("fd 0")?;
    let output = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("fd 1")?;
    Ok((File::from(input), File::from(output)))
}

fn echo(a: &ChildArgs) -> anyhow::Result<()> {
    let (mut input, mut output) = raw_stdio()?;
    let mut buf = vec![0u8; a.size];
    loop {
        match input.read_exact(&mut buf) {
            Ok(()) => output.write_all(&buf)?,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn write(a: &ChildArgs) -> anyhow::Result<()> {
    let (mut input, mut output) = raw_stdio()?;
    let mut go = [0u8; 1];
    input
        .read_exact(&mut go)
        .context("wait for the start byte")?;
    let mut msg = vec![0xa5u8; a.size];
    let stop_at = Instant::now() + Duration::from_secs_f64(a.secs);
    let mut sent = 0;
    while sent < a.count {
        if sent % 1024 == 0 && Instant::now() >= stop_at {
            break;
        }
        stamp(&mut msg, sent);
        output.write_all(&msg)?;
        sent += 1;
    }
    Ok(())
}

fn wakeup(a: &ChildArgs) -> anyhow::Result<()> {
    let ctl = Ctl::open(&a.ctl)?;
    let mut q = consumer(&a.a, a)?;
    let mut buf = vec![0u8; a.size];
    let mut h = histogram();
    let mut n = 0u64;
    ctl.ready();
    loop {
        match q.dequeue_until(&mut buf, None) {
            Ok(len) => {
                anyhow::ensure!(len >= 8, "wake-up message without a timestamp");
                let sent = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                // The first few include page faults and cold caches.
                if n >= 10 {
                    h.saturating_record(now_ns().saturating_sub(sent));
                }
                n += 1;
            }
            Err(RecvError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "RESULT n={} p50={} p99={} p999={} max={}",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
    Ok(())
}

/// User plus system CPU time of this process, in nanoseconds.
fn cpu_ns() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn idle(a: &ChildArgs) -> anyhow::Result<()> {
    let mut q = open_queue(a)?.into_consumer()?;
    let mut buf = vec![0u8; q.slot_size()];
    let wait = Duration::from_secs_f64(a.secs);
    let (cpu0, t0) = (cpu_ns(), Instant::now());
    let r = q.dequeue_block(&mut buf, Some(wait));
    let (cpu1, wall) = (cpu_ns(), t0.elapsed());
    anyhow::ensure!(
        r == Err(RecvError::Timeout),
        "the idle queue delivered {r:?}"
    );
    println!("RESULT cpu_ns={} wall_ns={}", cpu1 - cpu0, wall.as_nanos());
    Ok(())
}

fn open_log(name: &str, a: &ChildArgs) -> anyhow::Result<Log> {
    Ok(Log::open(&posix(name))?.with_wait_strategy(a.wait.strategy()))
}

fn log_pong(a: &ChildArgs) -> anyhow::Result<()> {
    let ctl = Ctl::open(&a.ctl)?;
    let ping = open_log(&a.a, a)?;
    let mut pong = open_log(&a.b, a)?.into_publisher()?;
    // Registered before saying ready (the logs are reliable: the parent's
    // first ping waits for a subscriber).
    let mut sub = ping.subscribe(Start::Oldest)?;
    ctl.ready();
    let mut buf = vec![0u8; a.size];
    loop {
        match sub.recv_until(&mut buf, None) {
            Ok(n) => {
                pong.publish(&buf[..n])?;
            }
            Err(RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn log_publish(a: &ChildArgs) -> anyhow::Result<()> {
    let ctl = Ctl::open(&a.ctl)?;
    // A `Publisher` handle: on a single-publisher log it holds the role.
    let mut log = open_log(&a.a, a)?.into_publisher()?;
    let mut msg = vec![0xa5u8; a.size];
    let mut batch = vec![vec![0xa5u8; a.size]; BATCH as usize];
    let far = Instant::now() + FAR;
    ctl.ready();
    ctl.wait_go()?;
    let start = now_ns();
    let stop_at = Instant::now() + Duration::from_secs_f64(a.secs);
    let mut sent = 0;
    let result = (|| -> anyhow::Result<()> {
        while sent < a.count {
            if sent % 1024 < BATCH as u64 && Instant::now() >= stop_at {
                break;
            }
            match a.op {
                // Receiving in place changes nothing on the publishing side.
                Op::Copy | Op::ZeroCopy => {
                    stamp(&mut msg, sent);
                    log.publish_until(&msg, Some(far))?;
                    sent += 1;
                }
                Op::Batch => {
                    let n = (a.count - sent).min(BATCH as u64) as usize;
                    for (i, m) in batch[..n].iter_mut().enumerate() {
                        stamp(m, sent + i as u64);
                    }
                    let refs: Vec<&[u8]> = batch[..n].iter().map(Vec::as_slice).collect();
                    let mut done = 0;
                    while done < n {
                        done += log.publish_batch_block(&refs[done..], Some(FAR))?;
                    }
                    sent += n as u64;
                }
            }
        }
        Ok(())
    })();
    // Even after a failure, so that the subscribers end.
    log.close();
    result?;
    println!("RESULT sent={sent} start_ns={start}");
    Ok(())
}

fn log_subscribe(a: &ChildArgs) -> anyhow::Result<()> {
    let ctl = Ctl::open(&a.ctl)?;
    let log = open_log(&a.a, a)?;
    // Registered (reliable mode) before saying ready: the publisher, which
    // starts only after every subscriber is ready, is gated by this one.
    let mut sub = log.subscribe(Start::Oldest)?;
    let mut buf = vec![0u8; a.size];
    let far = Instant::now() + FAR;
    let mut received = 0u64;
    let mut ordered = true;
    // Every message, in order: its sequence is the count so far.
    let mut check = |msg: &[u8], received: &mut u64| {
        let seq = msg
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        ordered &= msg.len() == a.size && seq == Some(*received);
        *received += 1;
    };
    ctl.ready();
    ctl.wait_go()?;
    loop {
        let got = match a.op {
            Op::Copy => sub
                .recv_until(&mut buf, Some(far))
                .map(|n| check(&buf[..n], &mut received)),
            // Read in place; a slot overwritten under the reader would be
            // `Lagged`, which a reliable log never gives. These calls do not
            // wait: the zero-copy and batch cases busy-spin (`api_cases`).
            Op::ZeroCopy => match sub.recv_in_place(|m| check(m, &mut received)) {
                Err(RecvError::Empty) => {
                    std::hint::spin_loop();
                    Ok(())
                }
                other => other,
            },
            Op::Batch => match sub.recv_batch_with(BATCH as usize, |m| check(m, &mut received)) {
                Err(RecvError::Empty) => {
                    std::hint::spin_loop();
                    Ok(())
                }
                other => other.map(drop),
            },
        };
        match got {
            Ok(()) => {}
            Err(RecvError::Closed) => break,
            Err(RecvError::Lagged(n)) => {
                anyhow::bail!("lost {n} messages of a reliable log")
            }
            Err(e) => return Err(e.into()),
        }
    }
    let end = now_ns();
    println!(
        "RESULT received={received} end_ns={end} ordered={}",
        u8::from(ordered)
    );
    Ok(())
}

/// Nanoseconds from `t0` to message `i` of a schedule of `rate` per second.
fn scheduled(t0: u64, i: u64, rate: u64) -> u64 {
    t0 + (i as u128 * 1_000_000_000 / rate.max(1) as u128) as u64
}

/// Waits until CLOCK_MONOTONIC reaches `due`: sleeps while it is far,
/// spins the last 200 µs (a sleep overshoots by tens of µs).
fn wait_until_ns(due: u64) {
    loop {
        let now = now_ns();
        if now >= due {
            return;
        }
        if due - now > SPIN_BEFORE_DUE_NS {
            std::thread::sleep(Duration::from_nanos(due - now - SPIN_BEFORE_DUE_NS));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The paced publisher sleeps until this close to a message's due time,
/// then spins: a feed handler waits for its input asleep, and on two CPUs
/// a publisher spinning between messages would take a whole CPU from the
/// subscribers. Its sleeps are precise to a few microseconds because the
/// publisher sets its timer slack to 1 ns (`paced_publish`); a late wake-up
/// counts against the latency, which is taken from the due time.
const SPIN_BEFORE_DUE_NS: u64 = 3_000;

/// The paced publisher: message `i` (its sequence number in bytes 0..8) is
/// due at t0 + i / rate (in bytes 8..16) and published as soon as that time
/// comes; a late one (after a stall) goes at once, keeping its due time.
fn paced_publish(a: &ChildArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.size >= 16, "paced messages need 16 bytes");
    // SAFETY: prctl(PR_SET_TIMERSLACK) has no memory preconditions; it
    // only makes this process's timed sleeps end closer to their time.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let ctl = Ctl::open(&a.ctl)?;
    // A `Publisher` handle, as in `log_publish`.
    let mut log = open_log(&a.a, a)?.into_publisher()?;
    let mut msg = vec![0xa5u8; a.size];
    let far = Instant::now() + FAR;
    ctl.ready();
    ctl.wait_go()?;
    // A little after the start, so that every subscriber is waiting.
    let t0 = now_ns() + 1_000_000;
    let mut sent = 0;
    // How late each publish returned after its due time: the feed's own
    // delay, which every subscriber's latency includes (a stall of this
    // process, or a sleep that overshot, delays every message after it).
    let mut late = histogram();
    let result = (|| -> anyhow::Result<()> {
        while sent < a.count {
            let due = scheduled(t0, sent, a.rate);
            wait_until_ns(due);
            msg[..8].copy_from_slice(&sent.to_le_bytes());
            msg[8..16].copy_from_slice(&due.to_le_bytes());
            log.publish_until(&msg, Some(far))?;
            // As the subscribers do: the first few include page faults.
            if sent >= 10 {
                late.saturating_record(now_ns().saturating_sub(due));
            }
            sent += 1;
        }
        Ok(())
    })();
    // Even after a failure, so that the subscribers end.
    log.close();
    result?;
    println!(
        "RESULT sent={sent} start_ns={t0} late_n={} late_p50={} late_p99={} late_p999={} late_max={}",
        late.len(),
        late.value_at_quantile(0.5),
        late.value_at_quantile(0.99),
        late.value_at_quantile(0.999),
        late.max()
    );
    Ok(())
}

/// A paced subscriber: checks every message arrives in order and records
/// its publish-to-receive latency from the scheduled send time; reports
/// its CPU time from subscribing to the close.
fn paced_subscribe(a: &ChildArgs) -> anyhow::Result<()> {
    let ctl = Ctl::open(&a.ctl)?;
    let log = open_log(&a.a, a)?;
    let mut sub = log.subscribe(Start::Oldest)?;
    let mut buf = vec![0u8; a.size];
    let mut h = histogram();
    let far = Instant::now() + FAR;
    let (mut received, mut ordered) = (0u64, true);
    let cpu0 = cpu_ns();
    ctl.ready();
    loop {
        match sub.recv_until(&mut buf, Some(far)) {
            Ok(n) => {
                let now = now_ns();
                anyhow::ensure!(n >= 16, "a paced message of {n} bytes");
                let seq = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                let due = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
                ordered &= seq == received;
                // The first few include page faults and cold caches.
                if received >= 10 {
                    h.saturating_record(now.saturating_sub(due));
                }
                received += 1;
            }
            Err(RecvError::Closed) => break,
            Err(RecvError::Lagged(n)) => {
                anyhow::bail!("lost {n} messages of a reliable log")
            }
            Err(e) => return Err(e.into()),
        }
    }
    let cpu = cpu_ns() - cpu0;
    println!(
        "RESULT received={received} ordered={} n={} p50={} p99={} p999={} max={} cpu_ns={cpu}",
        u8::from(ordered),
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
    Ok(())
}
