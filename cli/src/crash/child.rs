//! One child process of the crash campaign (`shmq crash-child`): a
//! producer, consumer, publisher or subscriber that runs until the queue or
//! log is closed, recording every acknowledged send and every receive in
//! its ledger (see [`super::ledger`]). It waits only in calls with a
//! timeout, dies with its parent, and gives up after `--max-secs`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use shmq::{CursorError, Error, Log, Queue, RecvError, SendError, Start, Target};

use super::ledger::{self, Ledger, Tag, Verdict};
use super::{ChildArgs, KindArg, RoleArg};

/// How long one blocking call may wait before the loop looks around.
const STEP: Duration = Duration::from_millis(100);
/// Pause between attempts to take an SPSC role or a named cursor.
const RETRY: Duration = Duration::from_millis(1);

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
    anyhow::ensure!(ppid as u32 == parent, "the crash parent {parent} is gone");
    Ok(())
}

/// What a child needs in its loops.
struct Ctx {
    led: Ledger,
    inc: u32,
    salt: u64,
    slot_size: usize,
    deadline: Instant,
    msg: Vec<u8>,
    scratch: Vec<u8>,
    pace: Pace,
}

/// Keeps a sender at `--rate` messages per second: it sends in bursts and
/// sleeps whenever it is a millisecond or more ahead of schedule.
struct Pace {
    rate: u64,
    start: Instant,
    sent: u64,
}

impl Pace {
    fn sent_one(&mut self) {
        self.sent += 1;
        if self.rate == 0 {
            return;
        }
        let due = self.start + Duration::from_nanos(self.sent * 1_000_000_000 / self.rate);
        let now = Instant::now();
        if due > now + Duration::from_millis(1) {
            std::thread::sleep(due - now);
        }
    }
}

impl Ctx {
    fn put(&mut self, tag: Tag, id: u64, len: usize, pos: u64) -> anyhow::Result<()> {
        self.led.put(tag, id, len, pos).context("write the ledger")
    }

    fn check_deadline(&self) -> anyhow::Result<()> {
        if Instant::now() > self.deadline {
            bail!("gave up: still running after --max-secs");
        }
        Ok(())
    }

    /// Builds message `seq` of this incarnation in `self.msg`; returns its id.
    fn build(&mut self, seq: u64) -> u64 {
        let id = ledger::id(self.inc, seq);
        ledger::message(id, self.salt, self.slot_size, &mut self.msg);
        id
    }

    /// Records a received message (good or not); `pos` is its log position.
    fn received(&mut self, n: usize, buf: &[u8], pos: u64) -> anyhow::Result<()> {
        match ledger::verify(&buf[..n], self.salt, self.slot_size, &mut self.scratch) {
            Verdict::Good(id) => self.put(Tag::Recv, id, n, pos),
            Verdict::WrongLength(id) => self.put(Tag::BadLength, id, n, pos),
            Verdict::Torn(id) => self.put(Tag::BadData, id, n, pos),
        }
    }
}

/// Runs one child to the end.
pub fn run(a: &ChildArgs) -> anyhow::Result<()> {
    tie_to_parent(a.parent)?;
    let led = Ledger::create(&a.ledger).context("create the ledger")?;
    let mut cx = Ctx {
        led,
        inc: a.inc,
        salt: a.salt,
        slot_size: a.slot_size,
        deadline: Instant::now() + Duration::from_secs(a.max_secs),
        msg: Vec::with_capacity(a.slot_size),
        scratch: Vec::with_capacity(a.slot_size),
        pace: Pace {
            // Unpaced, an overwrite publisher never waits: give it a rate
            // (about what a subscriber keeps up with).
            rate: match (a.rate, a.kind, a.role) {
                (0, KindArg::LogOverwrite, RoleArg::Producer) => 2_000_000,
                (r, _, _) => r,
            },
            start: Instant::now(),
            sent: 0,
        },
    };
    cx.put(Tag::Begin, 0, 0, 0)?;
    let target: Target = a.target.parse()?;
    match (a.kind, a.role) {
        (KindArg::Mpmc, RoleArg::Producer) => {
            let q = Queue::open(&target)?;
            cx.put(Tag::Start, 0, 0, 0)?;
            if a.batch > 1 {
                produce_batch(&mut cx, a.batch, |ms| {
                    q.enqueue_batch_until(ms, Some(Instant::now() + STEP))
                })
            } else {
                produce(&mut cx, |m| q.enqueue_block(m, Some(STEP)))
            }
        }
        (KindArg::Mpmc, RoleArg::Consumer) => {
            let q = Queue::open(&target)?;
            cx.put(Tag::Start, 0, 0, 0)?;
            if a.batch > 1 {
                consume_batch(&mut cx, a.batch, |max, f| {
                    q.dequeue_batch_until(max, f, Some(Instant::now() + STEP))
                })
            } else {
                consume(&mut cx, |b| q.dequeue_block(b, Some(STEP)))
            }
        }
        (KindArg::Spsc, RoleArg::Producer) => {
            // A producer that finds the queue closed before the role came free is done.
            let Some(mut p) = take_role(&mut cx, &target, true, |q| q.into_producer())? else {
                return Ok(());
            };
            cx.put(Tag::Start, 0, 0, 0)?;
            if a.batch > 1 {
                produce_batch(&mut cx, a.batch, |ms| {
                    p.enqueue_batch_until(ms, Some(Instant::now() + STEP))
                })
            } else {
                produce(&mut cx, |m| p.enqueue_block(m, Some(STEP)))
            }
        }
        (KindArg::Spsc, RoleArg::Consumer) => {
            // A consumer keeps trying after close: what is queued must be drained.
            let Some(mut c) = take_role(&mut cx, &target, false, |q| q.into_consumer())? else {
                return Ok(());
            };
            cx.put(Tag::Start, 0, 0, 0)?;
            if a.batch > 1 {
                consume_batch(&mut cx, a.batch, |max, f| {
                    c.dequeue_batch_until(max, f, Some(Instant::now() + STEP))
                })
            } else {
                consume(&mut cx, |b| c.dequeue_block(b, Some(STEP)))
            }
        }
        (KindArg::LogReliable | KindArg::LogOverwrite | KindArg::LogSingle, RoleArg::Producer) => {
            let log = Log::open(&target)?;
            cx.put(Tag::Start, 0, 0, 0)?;
            publish(&mut cx, &log)
        }
        (KindArg::LogReliable | KindArg::LogOverwrite | KindArg::LogSingle, RoleArg::Consumer) => {
            let log = Log::open(&target)?;
            subscribe(&mut cx, &log, a)
        }
    }
}

/// Takes an SPSC role, retrying while a live process holds it. `None` if
/// `stop_when_closed` and the queue is closed first.
fn take_role<T>(
    cx: &mut Ctx,
    target: &Target,
    stop_when_closed: bool,
    into: impl Fn(Queue) -> Result<T, Error>,
) -> anyhow::Result<Option<T>> {
    loop {
        let q = Queue::open(target)?;
        let closed = q.is_closed();
        match into(q) {
            Ok(end) => return Ok(Some(end)),
            Err(Error::RoleTaken { .. }) if stop_when_closed && closed => return Ok(None),
            Err(Error::RoleTaken { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        cx.check_deadline()?;
        std::thread::sleep(RETRY);
    }
}

/// Sends messages 0, 1, 2, ... until closed; records each acknowledged one.
fn produce(
    cx: &mut Ctx,
    mut send: impl FnMut(&[u8]) -> Result<(), SendError>,
) -> anyhow::Result<()> {
    let mut seq = 0;
    loop {
        let id = cx.build(seq);
        match send(&cx.msg) {
            Ok(()) => {
                let len = cx.msg.len();
                cx.put(Tag::Ack, id, len, 0)?;
                cx.pace.sent_one();
                seq += 1;
            }
            Err(SendError::Timeout | SendError::Full) => cx.check_deadline()?,
            Err(SendError::Closed) => return Ok(()),
            Err(e) => bail!("enqueue: {e}"),
        }
    }
}

/// Sends messages 0, 1, 2, ... in batches of `n` until closed; records an
/// acknowledgement for each message of the prefix a call says went in, in
/// order, after the call returned (so a producer killed mid-batch leaves up
/// to `n` messages sent but not acknowledged).
fn produce_batch(
    cx: &mut Ctx,
    n: usize,
    mut send: impl FnMut(&[&[u8]]) -> Result<usize, SendError>,
) -> anyhow::Result<()> {
    let id = |cx: &Ctx, seq: u64| ledger::id(cx.inc, seq);
    // Message `seq + i` in `msgs[i]`.
    let mut msgs: Vec<Vec<u8>> = (0..n as u64)
        .map(|i| {
            let mut m = Vec::with_capacity(cx.slot_size);
            ledger::message(id(cx, i), cx.salt, cx.slot_size, &mut m);
            m
        })
        .collect();
    let mut seq = 0;
    loop {
        let result = {
            let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            send(&refs)
        };
        match result {
            Ok(k) => {
                let k = k.min(n);
                for (i, m) in msgs[..k].iter().enumerate() {
                    let len = m.len();
                    cx.put(Tag::Ack, id(cx, seq + i as u64), len, 0)?;
                }
                for _ in 0..k {
                    cx.pace.sent_one();
                }
                seq += k as u64;
                // The unsent rest moves to the front; the freed tail gets the next ones.
                msgs.rotate_left(k);
                for (i, m) in msgs.iter_mut().enumerate().skip(n - k) {
                    ledger::message(id(cx, seq + i as u64), cx.salt, cx.slot_size, m);
                }
                if k == 0 {
                    cx.check_deadline()?;
                }
            }
            Err(SendError::Timeout | SendError::Full) => cx.check_deadline()?,
            Err(SendError::Closed) => return Ok(()),
            Err(e) => bail!("enqueue batch: {e}"),
        }
    }
}

/// Receives until closed and drained; records each message.
fn consume(
    cx: &mut Ctx,
    mut recv: impl FnMut(&mut [u8]) -> Result<usize, RecvError>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; cx.slot_size];
    loop {
        match recv(&mut buf) {
            Ok(n) => cx.received(n, &buf, 0)?,
            Err(RecvError::Timeout | RecvError::Empty) => cx.check_deadline()?,
            Err(RecvError::Closed) => {
                cx.put(Tag::Closed, 0, 0, 0)?;
                return Ok(());
            }
            Err(e) => bail!("dequeue: {e}"),
        }
    }
}

/// Receives in batches of up to `n` until closed and drained: records each
/// message inside the call (before it frees the slot), and a `BatchEnd`
/// after the call returned, so the ledger tells which messages a consumer
/// killed mid-batch had been handed by its unfinished call.
fn consume_batch(
    cx: &mut Ctx,
    n: usize,
    mut recv: impl FnMut(usize, &mut dyn FnMut(&[u8])) -> Result<usize, RecvError>,
) -> anyhow::Result<()> {
    loop {
        let mut failed = None;
        let result = recv(n, &mut |m| {
            if failed.is_none() {
                failed = cx.received(m.len(), m, 0).err();
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let got = *result.as_ref().unwrap_or(&0) as u64;
        cx.put(Tag::BatchEnd, got, 0, 0)?;
        match result {
            Ok(_) => {}
            Err(RecvError::Timeout | RecvError::Empty) => cx.check_deadline()?,
            Err(RecvError::Closed) => {
                cx.put(Tag::Closed, 0, 0, 0)?;
                return Ok(());
            }
            Err(e) => bail!("dequeue batch: {e}"),
        }
    }
}

/// Publishes until closed; records each acknowledged message with its
/// sequence number.
fn publish(cx: &mut Ctx, log: &Log) -> anyhow::Result<()> {
    let mut seq = 0;
    loop {
        let id = cx.build(seq);
        match log.publish_block(&cx.msg, Some(STEP)) {
            Ok(pos) => {
                let len = cx.msg.len();
                cx.put(Tag::Ack, id, len, pos)?;
                cx.pace.sent_one();
                seq += 1;
            }
            // Gated by a cursor whose subscriber was killed: its
            // replacement resumes the cursor, however long it takes to
            // start on a loaded machine.
            Err(SendError::Timeout | SendError::Full | SendError::GatedBy { .. }) => {
                cx.check_deadline()?
            }
            // Single publisher: the killed holder is not judged dead yet.
            Err(SendError::RoleTaken { .. }) => {
                cx.check_deadline()?;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(SendError::Closed) => return Ok(()),
            Err(e) => bail!("publish: {e}"),
        }
    }
}

/// Reads a log until closed. Reliable mode: through the durable cursor
/// `--cursor`, committing every `--commit-every` messages (and when idle or
/// closed), always after recording. Overwrite mode: an unnamed subscriber
/// from the oldest message, recording what `Lagged(n)` says was lost.
fn subscribe(cx: &mut Ctx, log: &Log, a: &ChildArgs) -> anyhow::Result<()> {
    let mut sub = match &a.cursor {
        Some(name) => loop {
            match log.subscribe_named(name, Start::Oldest) {
                Ok(s) => break s,
                Err(CursorError::InUse { .. } | CursorError::Busy { .. }) => {
                    cx.check_deadline()?;
                    std::thread::sleep(RETRY);
                }
                Err(e) => bail!("subscribe to cursor {name:?}: {e}"),
            }
        },
        None => log.subscribe(Start::Oldest)?,
    };
    let named = a.cursor.is_some();
    cx.put(Tag::Start, 0, 0, sub.position())?;
    let mut buf = vec![0u8; cx.slot_size];
    let mut uncommitted = 0u64;
    let commit = |sub: &mut shmq::Subscriber, cx: &mut Ctx| -> anyhow::Result<()> {
        sub.commit().context("commit")?;
        cx.put(Tag::Commit, 0, 0, sub.position())
    };
    loop {
        match sub.recv_block(&mut buf, Some(STEP)) {
            Ok(n) => {
                cx.received(n, &buf, sub.position() - 1)?;
                uncommitted += 1;
                if named && uncommitted >= a.commit_every {
                    commit(&mut sub, cx)?;
                    uncommitted = 0;
                }
            }
            Err(RecvError::Lagged(n)) => cx.put(Tag::Lag, n, 0, sub.position())?,
            Err(RecvError::Timeout | RecvError::Empty) => {
                if named && uncommitted > 0 {
                    commit(&mut sub, cx)?;
                    uncommitted = 0;
                }
                cx.check_deadline()?;
            }
            Err(RecvError::Closed) => {
                if named {
                    commit(&mut sub, cx)?;
                }
                cx.put(Tag::Closed, 0, 0, sub.position())?;
                return Ok(());
            }
            Err(e) => bail!("receive: {e}"),
        }
    }
}
