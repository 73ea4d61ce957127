//! In routes: a NATS subject (core) or a JetStream durable consumer to a
//! local log or queue.
//!
//! A tokio task receives from NATS and hands messages, in order, to the
//! *writer*, a dedicated thread that owns the local target
//! ([`crate::local::Sink`]) and the route's state file
//! ([`crate::state`]). For each batch the writer:
//!
//! 1. drops the messages whose sequence number is not above the last
//!    applied one of their source (`Nats-Msg-Id` is `host/segment/seq`):
//!    duplicates, from a redelivery or an out bridge that re-sent what it
//!    had not committed; and counts a jump in a log source's sequence as
//!    lost messages, with a log line (core NATS loses messages when a
//!    subscriber is slow or the connection drops; JetStream does not);
//! 2. records the batch in the state file (an intent), then publishes each
//!    message, waiting while the target is full (a reliable log's gating,
//!    a full queue) in bounded steps: it never drops one;
//! 3. acknowledges each message (JetStream) only once it is in the target.
//!
//! A core route to one plain server does all of it on one thread: it
//! reads frames from its own connection ([`crate::wire`]), copies a batch
//! of payloads into one buffer, and writes the batch as above; no header
//! map, no channel. When the connection drops it reconnects (backing off
//! 100 ms to 5 s) and subscribes again; what was published meanwhile is
//! lost to core NATS and shows as a gap.
//!
//! # JetStream delivery order
//!
//! Deduplication by "not above the last applied" needs every source's
//! messages in order. A durable consumer redelivers an unacknowledged
//! message only after its ack wait, after newer ones: so whenever the
//! delivery may have been cut (the bridge started, the connection came
//! back), the route re-creates its consumer at the first unacknowledged
//! stream sequence (the consumer's ack floor + 1). Messages above the floor
//! that were applied come again and are dropped as duplicates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::Acker;
use async_nats::HeaderMap;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::config::{Mode, Route};
use crate::local::{self, Opened, Sink};
use crate::state::{State, MAX_INTENT, NO_SOURCE};
use crate::status::Counters;
use crate::wire::{self, Frame};
use crate::{log_line, CoreLink, Ctx};

/// How long one local publish waits before the writer looks around.
const STEP: Duration = Duration::from_millis(100);
/// While gated, a JetStream message in hand is told "in progress" this often
/// (so its ack wait does not expire).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The consumer's ack wait.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Unacknowledged messages the consumer may have out.
const MAX_ACK_PENDING: i64 = 8192;

/// A message from NATS on its way to the writer.
struct InMsg {
    payload: Bytes,
    /// `host/segment`, the sequence number, and whether the source is a
    /// log, when the message has the headers.
    origin: Option<(Arc<str>, u64, bool)>,
    acker: Option<Acker>,
}

/// Reads a message's origin from its `Nats-Msg-Id` (`host/segment/seq`);
/// the `host/segment` key of the previous message is reused when it is the
/// same (a feed comes from one source), so a message costs one header
/// lookup, one comparison and a number parse.
#[derive(Default)]
struct Origins {
    last: Option<Arc<str>>,
}

impl Origins {
    fn of(&mut self, headers: Option<&HeaderMap>) -> Option<(Arc<str>, u64, bool)> {
        let h = headers?;
        let (source, seq) = crate::parse_msg_id(h.get(NATS_MESSAGE_ID)?.as_str())?;
        // A log's messages carry one header in core mode: look for
        // Shmq-Kind only when there are more.
        let log = h.len() == 1
            || h.get(crate::KIND_HEADER)
                .is_none_or(|k| k.as_str() == "log");
        Some((self.key(source), seq, log))
    }

    /// As [`Origins::of`], from a raw header block (`NATS/1.0\r\n...`).
    fn of_block(&mut self, block: Option<&[u8]>) -> Option<(Arc<str>, u64, bool)> {
        let block = block?;
        let (source, seq) = crate::parse_msg_id(wire::header(block, "Nats-Msg-Id")?)?;
        let log = wire::header(block, "Shmq-Kind").is_none_or(|k| k == "log");
        Some((self.key(source), seq, log))
    }

    fn key(&mut self, source: &str) -> Arc<str> {
        match &self.last {
            Some(key) if **key == *source => key.clone(),
            _ => {
                let key: Arc<str> = source.into();
                self.last = Some(key.clone());
                key
            }
        }
    }
}

/// Appends one NATS message to `batch`: as it is, or, when it is a pack
/// (`pack`: its `Shmq-Pack` value; see [`crate::pack`]), as its parts,
/// with the sequence numbers from the origin's on and the acknowledgement
/// on the last part (sent once every part is in the target). A malformed
/// pack is not appended: the error says why, for the caller to log and
/// count (core: its messages are lost and the next one's sequence shows
/// the gap; JetStream: acknowledged, as it can never be written), and
/// gives the acknowledgement back.
fn push(
    batch: &mut Vec<InMsg>,
    origin: Option<(Arc<str>, u64, bool)>,
    pack: Option<&str>,
    payload: Bytes,
    mut acker: Option<Acker>,
) -> Result<(), Box<(String, Option<Acker>)>> {
    let Some(pack) = pack else {
        batch.push(InMsg {
            payload,
            origin,
            acker,
        });
        return Ok(());
    };
    let Some(n) = crate::pack::count(pack) else {
        return Err(Box::new((format!("bad pack count {pack:?}"), acker)));
    };
    let Some((source, first, true)) = origin else {
        return Err(Box::new((
            "a pack without a log's message id".into(),
            acker,
        )));
    };
    let parts = match crate::pack::split(&payload, n) {
        Ok(parts) => parts,
        Err(why) => return Err(Box::new((why, acker))),
    };
    let last = parts.len() - 1;
    for (i, r) in parts.into_iter().enumerate() {
        batch.push(InMsg {
            payload: payload.slice(r),
            origin: Some((source.clone(), first + i as u64, true)),
            acker: if i == last { acker.take() } else { None },
        });
    }
    Ok(())
}

/// Logs and counts a message [`push`] refused.
fn refused(route: &str, counters: &Counters, why: &str) {
    Counters::add(&counters.errors, 1);
    log_line!("route {route}: a malformed packed message was dropped: {why}");
}

/// Runs one in route until `ctx.stop` is set: then it stops receiving,
/// writes and acknowledges what it holds, and returns.
pub async fn run(ctx: Arc<Ctx>, route: Route, counters: Arc<Counters>) -> Result<()> {
    let target: shmq::Target = route.local.parse()?;
    let sink: Box<dyn Sink> = match local::open(&target)? {
        Opened::Log(log) => Box::new(local::LogSink(log)),
        Opened::Queue(q) => Box::new(local::QueueSink(*q)),
    };
    let (state, rec) = State::open(&route.state_path(), sink.next_seq())?;
    if rec.applied + rec.not_applied + rec.foreign > 0 {
        log_line!(
            "route {}: state {}: of the last batch, {} were written before the bridge stopped, {} were not (they come again){}",
            route.name,
            state.path().display(),
            rec.applied,
            rec.not_applied,
            if rec.foreign > 0 {
                format!("; {} more messages in the target came from another publisher: the bridge must be its only one", rec.foreign)
            } else {
                String::new()
            }
        );
    }
    log_line!(
        "route {}: {} ({:?}) -> {}, state {}",
        route.name,
        route.subject,
        route.mode,
        target,
        state.path().display()
    );
    let mut writer = Writer {
        sink,
        state,
        ack_tx: None,
        handle: None,
        counters: counters.clone(),
        name: route.name.clone(),
        stop: ctx.stop.clone(),
        cached: None,
    };
    let thread = std::thread::Builder::new().name(format!("in-{}", route.name));
    if route.mode == Mode::Core {
        match crate::core_link(&ctx, &route.name, &counters).await {
            CoreLink::Wire(url, conn) => {
                let w = WireIn {
                    url,
                    conn: Some(conn),
                    subject: route.subject.clone(),
                    connects: ctx.connects.clone(),
                };
                let t = thread.spawn(move || w.run(writer))?;
                return tokio::task::spawn_blocking(move || t.join())
                    .await?
                    .map_err(|_| anyhow!("route {}: the reader thread panicked", route.name))?;
            }
            CoreLink::AsyncNats => {}
            CoreLink::Stopped => return writer.finish(),
        }
    }
    let (tx, rx) = mpsc::channel::<Vec<InMsg>>(16);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<Acker>();
    let acks = tokio::spawn(ack_loop(ack_rx));
    writer.ack_tx = Some(ack_tx);
    writer.handle = Some(tokio::runtime::Handle::current());
    let writer = thread.spawn(move || writer.run(rx))?;
    let received = match route.mode {
        Mode::Core => receive_core(&ctx, &route, tx, &counters).await,
        Mode::Jetstream => receive_js(&ctx, &route, tx, &counters).await,
    };
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow!("route {}: the writer thread panicked", route.name))?;
    // The writer dropped its sender: the ack loop ends once all are sent.
    acks.await?;
    written.and(received)
}

async fn ack_loop(mut rx: mpsc::UnboundedReceiver<Acker>) {
    while let Some(a) = rx.recv().await {
        // A lost ack means a redelivery, which the writer drops by sequence number.
        let _ = a.ack().await;
    }
}

/// Whether `stop` was set, checked every 100 ms.
async fn stopped(stop: &AtomicBool) {
    // Relaxed: a flag; nothing is published with it.
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn receive_core(
    ctx: &Ctx,
    route: &Route,
    tx: mpsc::Sender<Vec<InMsg>>,
    counters: &Counters,
) -> Result<()> {
    let mut origins = Origins::default();
    let client = ctx.client().await?;
    let mut sub = client
        .subscribe(route.subject.clone())
        .await
        .context("subscribe")?;
    // Make sure the server has the subscription before saying so.
    client.flush().await.context("flush")?;
    log_line!("route {}: subscribed to {}", route.name, route.subject);
    loop {
        tokio::select! {
            m = sub.next() => {
                let Some(m) = m else { return Err(anyhow!("route {}: subscription closed", route.name)) };
                // Hand over what has arrived in one batch.
                let mut batch = Vec::with_capacity(MAX_INTENT);
                let mut next = Some(m);
                while let Some(m) = next {
                    let pack = m.headers.as_ref().and_then(|h| h.get(crate::pack::PACK_HEADER)).map(|v| v.as_str());
                    if let Err(refusal) = push(&mut batch, origins.of(m.headers.as_ref()), pack, m.payload, None) {
                        refused(&route.name, counters, &refusal.0);
                    }
                    next = if batch.len() < MAX_INTENT { sub.next().now_or_never().flatten() } else { None };
                }
                Counters::add(&counters.received, batch.len() as u64);
                if tx.send(batch).await.is_err() {
                    return Err(anyhow!("route {}: the writer stopped", route.name));
                }
            }
            _ = stopped(&ctx.stop) => break,
        }
    }
    // Stop taking new messages; the writer drains what it holds.
    let _ = sub.unsubscribe().await;
    Ok(())
}

/// Makes sure the route's durable consumer exists and that its next
/// delivery is its first unacknowledged message, in order (module doc).
async fn resync(
    js: &async_nats::jetstream::Context,
    route: &Route,
) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>> {
    let stream = js
        .get_stream(route.stream())
        .await
        .with_context(|| format!("stream {}", route.stream()))?;
    let name = route.consumer();
    let config = |deliver_policy| pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: route.subject.clone(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        deliver_policy,
        ..Default::default()
    };
    match stream.get_consumer::<pull::Config>(&name).await {
        Ok(mut c) => {
            let info = c.info().await?.clone();
            if info.num_ack_pending == 0 && info.num_redelivered == 0 {
                return Ok(c);
            }
            let from = info.ack_floor.stream_sequence + 1;
            log_line!(
                "route {}: consumer {name} had {} unacknowledged; restarting it at stream sequence {from}",
                route.name,
                info.num_ack_pending
            );
            stream.delete_consumer(&name).await?;
            Ok(stream
                .create_consumer(config(DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                }))
                .await?)
        }
        Err(_) => Ok(stream.create_consumer(config(DeliverPolicy::All)).await?),
    }
}

async fn receive_js(
    ctx: &Ctx,
    route: &Route,
    tx: mpsc::Sender<Vec<InMsg>>,
    counters: &Counters,
) -> Result<()> {
    let mut origins = Origins::default();
    let js = async_nats::jetstream::new(ctx.client().await?.clone());
    let mut backoff = Backoff::new();
    'outer: loop {
        // Relaxed: a flag.
        if ctx.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Relaxed: compared only, to notice a reconnection.
        let gen = ctx.connects.load(Ordering::Relaxed);
        let attempt = async {
            crate::ensure_stream(&js, route).await?;
            let c = resync(&js, route).await?;
            anyhow::Ok(c.messages().await?)
        };
        let mut msgs = tokio::select! {
            r = attempt => match r {
                Ok(m) => m,
                Err(e) => {
                    Counters::add(&counters.errors, 1);
                    let wait = backoff.next();
                    log_line!("route {}: consumer: {e:#}; retrying in {wait:?}", route.name);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stopped(&ctx.stop) => return Ok(()),
                    }
                    continue;
                }
            },
            _ = stopped(&ctx.stop) => return Ok(()),
        };
        log_line!(
            "route {}: consuming {} from {}",
            route.name,
            route.subject,
            route.stream()
        );
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                m = msgs.next() => match m {
                    Some(Ok(m)) => {
                        backoff.reset();
                        Counters::add(&counters.received, 1);
                        let (m, acker) = m.split();
                        let pack = m.headers.as_ref().and_then(|h| h.get(crate::pack::PACK_HEADER)).map(|v| v.as_str());
                        let mut msgs = Vec::new();
                        if let Err(refusal) = push(&mut msgs, origins.of(m.headers.as_ref()), pack, m.payload, Some(acker)) {
                            let (why, acker) = *refusal;
                            refused(&route.name, counters, &why);
                            if let Some(a) = acker {
                                let _ = a.ack().await;
                            }
                            continue;
                        }
                        if tx.send(msgs).await.is_err() {
                            return Err(anyhow!("route {}: the writer stopped", route.name));
                        }
                    }
                    Some(Err(e)) => {
                        Counters::add(&counters.errors, 1);
                        log_line!("route {}: delivery: {e}; resyncing", route.name);
                        tokio::time::sleep(backoff.current()).await;
                        continue 'outer;
                    }
                    None => continue 'outer,
                },
                _ = tick.tick() => {
                    // Relaxed: a flag, and a counter compared only.
                    if ctx.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    if ctx.connects.load(Ordering::Relaxed) != gen {
                        log_line!("route {}: reconnected; resyncing the consumer", route.name);
                        continue 'outer;
                    }
                }
            }
        }
    }
}

/// Test hook: with `SHMQ_BRIDGE_CRASH_AFTER_WRITES=N` in the environment,
/// the process aborts (no destructor, no flush: as a kill -9) right after
/// its Nth local write, before that message is acknowledged or the state
/// file hears of the next batch: the window the state file must cover.
fn crash_point(counters: &Counters) {
    // Relaxed: a statistic, read by the thread that wrote it.
    if crash_after() == Some(counters.forwarded.load(Ordering::Relaxed)) {
        std::process::abort();
    }
}

/// `SHMQ_BRIDGE_CRASH_AFTER_WRITES`, read once.
fn crash_after() -> Option<u64> {
    static AFTER: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *AFTER.get_or_init(|| {
        std::env::var("SHMQ_BRIDGE_CRASH_AFTER_WRITES")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// How many more local writes the crash point allows (the writer never
/// writes past it in one batch, so the abort comes right after the Nth).
fn crash_room(counters: &Counters) -> usize {
    match crash_after() {
        // Relaxed: a statistic, read by the thread that wrote it.
        Some(n) => n
            .saturating_sub(counters.forwarded.load(Ordering::Relaxed))
            .max(1) as usize,
        None => usize::MAX,
    }
}

/// A core route's own connection, read by the writer's thread.
struct WireIn {
    url: wire::Plain,
    /// `None` after a failure, until the next reconnection.
    conn: Option<wire::Conn>,
    subject: String,
    connects: Arc<std::sync::atomic::AtomicU64>,
}

/// Wire client: after this long without a frame, a `PING`; after as long
/// again without its `PONG`, the connection has failed.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The subscription id of a route's one subscription.
const SID: &[u8] = b"1";

impl WireIn {
    fn run(mut self, mut writer: Writer) -> Result<()> {
        let mut origins = Origins::default();
        let mut batch: Vec<InMsg> = Vec::with_capacity(MAX_INTENT);
        let mut arena = BytesMut::new();
        let mut backoff = Backoff::new();
        // The SUB was sent and its PING not answered yet.
        let mut confirming = false;
        let name = writer.name.clone();
        let counters = writer.counters.clone();
        let mut fresh = true;
        // Liveness of a quiet connection: the last frame heard, and the
        // keep-alive PING out, if any.
        let mut heard = Instant::now();
        let mut probe: Option<Instant> = None;
        loop {
            // Relaxed: a flag.
            if writer.stop.load(Ordering::Relaxed) {
                break;
            }
            let Some(c) = &mut self.conn else {
                let until = Instant::now() + backoff.current();
                // Relaxed: a flag.
                while Instant::now() < until && !writer.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                match wire::reconnect(&self.url) {
                    Ok(c) => {
                        // Relaxed: a counter compared by routes, nothing published with it.
                        self.connects.fetch_add(1, Ordering::Relaxed);
                        log_line!("route {name}: reconnected (wire client)");
                        self.conn = Some(c);
                        fresh = true;
                    }
                    Err(e) => {
                        Counters::add(&counters.errors, 1);
                        backoff.grow();
                        log_line!(
                            "route {name}: reconnecting: {e:#}; retrying in {:?}",
                            backoff.current()
                        );
                    }
                }
                continue;
            };
            let r = (|| {
                if fresh {
                    c.wbuf.extend_from_slice(b"SUB ");
                    c.wbuf.extend_from_slice(self.subject.as_bytes());
                    c.wbuf.push(b' ');
                    c.wbuf.extend_from_slice(SID);
                    c.wbuf.extend_from_slice(b"\r\nPING\r\n");
                    c.flush()?;
                    fresh = false;
                    confirming = true;
                }
                let (pong, any) = take(
                    c,
                    &mut origins,
                    &mut batch,
                    &mut arena,
                    STEP,
                    (&name, &counters),
                )?;
                if any {
                    heard = Instant::now();
                }
                if pong {
                    if confirming {
                        confirming = false;
                        log_line!("route {name}: subscribed to {}", self.subject);
                    }
                    probe = None;
                }
                // A server gone without a word (no FIN) must not leave the
                // route waiting forever.
                match probe {
                    None if heard.elapsed() > KEEPALIVE => {
                        c.wbuf.extend_from_slice(b"PING\r\n");
                        c.flush()?;
                        probe = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > KEEPALIVE => {
                        return Err(std::io::Error::other(format!(
                            "no PONG within {KEEPALIVE:?}"
                        )))
                    }
                    _ => {}
                }
                std::io::Result::Ok(())
            })();
            if let Err(e) = r {
                Counters::add(&counters.errors, 1);
                log_line!(
                    "route {name}: NATS connection: {e}; reconnecting (core NATS: what is published meanwhile is lost, and shows as a gap)"
                );
                self.conn = None;
                confirming = false;
                probe = None;
                heard = Instant::now();
            } else {
                backoff.reset();
            }
            if !batch.is_empty() {
                Counters::add(&counters.received, batch.len() as u64);
                writer.write_batch(&mut batch)?;
            }
        }
        // Stop taking new messages, and write what the server sent before
        // it heard so (answered by the PONG), for at most a moment.
        if let Some(c) = &mut self.conn {
            c.wbuf.extend_from_slice(b"UNSUB ");
            c.wbuf.extend_from_slice(SID);
            c.wbuf.extend_from_slice(b"\r\nPING\r\n");
            let until = Instant::now() + Duration::from_secs(2);
            if c.flush().is_ok() {
                while Instant::now() < until {
                    let pong = take(
                        c,
                        &mut origins,
                        &mut batch,
                        &mut arena,
                        STEP,
                        (&name, &counters),
                    )
                    .map(|r| r.0);
                    if !batch.is_empty() {
                        Counters::add(&counters.received, batch.len() as u64);
                        writer.write_batch(&mut batch)?;
                    }
                    // After the SUB's own PONG (if it was still due), the UNSUB's.
                    match pong {
                        Ok(true) if confirming => confirming = false,
                        Ok(true) | Err(_) => break,
                        Ok(false) => {}
                    }
                }
            }
        }
        writer.finish()
    }
}

/// Reads frames for up to `wait` (then what is already buffered) into
/// `batch`, at most [`MAX_INTENT`] messages; answers the server's `PING`s.
/// Whether a `PONG` came, and whether anything did.
fn take(
    c: &mut wire::Conn,
    origins: &mut Origins,
    batch: &mut Vec<InMsg>,
    arena: &mut BytesMut,
    wait: Duration,
    (name, counters): (&str, &Counters),
) -> std::io::Result<(bool, bool)> {
    let mut pong = false;
    let mut next = c.next(wait)?;
    let any = next.is_some();
    while let Some(f) = next {
        match f {
            Frame::Msg { headers, payload } => {
                let block = headers.map(|h| c.bytes(h));
                let origin = origins.of_block(block);
                let pack = block.and_then(|b| wire::header(b, crate::pack::PACK_HEADER));
                let p = c.bytes(payload);
                // The batch's payloads share one allocation (as the out
                // route's do).
                if arena.capacity() < p.len() {
                    *arena = BytesMut::with_capacity(MAX_INTENT * p.len().max(64));
                }
                arena.extend_from_slice(p);
                if let Err(refusal) = push(batch, origin, pack, arena.split().freeze(), None) {
                    refused(name, counters, &refusal.0);
                }
                if batch.len() >= MAX_INTENT {
                    break;
                }
            }
            Frame::Ping => {
                c.wbuf.extend_from_slice(b"PONG\r\n");
                c.flush()?;
            }
            Frame::Pong => pong = true,
            Frame::Err(r) => {
                return Err(std::io::Error::other(format!(
                    "the server said -ERR {}",
                    String::from_utf8_lossy(c.bytes(r))
                )))
            }
            Frame::Ok | Frame::Info(_) => {}
        }
        next = c.next_buffered()?;
    }
    Ok((pong, any))
}

/// The writer's state (its own thread).
struct Writer {
    sink: Box<dyn Sink>,
    state: State,
    /// JetStream: where acknowledgements go (the ack task).
    ack_tx: Option<mpsc::UnboundedSender<Acker>>,
    /// JetStream: the runtime, for "in progress" acknowledgements.
    handle: Option<tokio::runtime::Handle>,
    counters: Arc<Counters>,
    name: String,
    stop: Arc<AtomicBool>,
    /// The last source key seen and its index in the state.
    cached: Option<(Arc<str>, u16)>,
}

impl Writer {
    /// Takes batches from the async-nats receiver until it stops.
    fn run(mut self, mut rx: mpsc::Receiver<Vec<InMsg>>) -> Result<()> {
        let handle = self
            .handle
            .clone()
            .ok_or_else(|| anyhow!("route {}: no runtime for the receiver", self.name))?;
        let mut batch: Vec<InMsg> = Vec::with_capacity(MAX_INTENT);
        loop {
            // A batch, waiting a little; then more while they fit one intent.
            let first = handle.block_on(async {
                tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
            });
            match first {
                Ok(Some(b)) => batch.extend(b),
                Ok(None) => break, // the receiver stopped and everything was taken
                Err(_) => continue,
            }
            while batch.len() < MAX_INTENT {
                match rx.try_recv() {
                    Ok(b) => batch.extend(b),
                    Err(_) => break,
                }
            }
            self.write_batch(&mut batch)?;
        }
        self.finish()
    }

    /// Writes `batch` (emptied), at most one intent per state write.
    fn write_batch(&mut self, batch: &mut Vec<InMsg>) -> Result<()> {
        while batch.len() > MAX_INTENT {
            let mut rest = batch.split_off(MAX_INTENT);
            self.write(batch)?;
            std::mem::swap(batch, &mut rest);
        }
        self.write(batch)
    }

    /// Records that the last batch was written whole.
    fn finish(mut self) -> Result<()> {
        self.state.settle();
        self.state.finish(0, self.sink.next_seq())?;
        log_line!("route {}: drained", self.name);
        Ok(())
    }

    /// Publishes `m`, the `k`th message of the intent, waiting (in bounded
    /// steps) while the target is full.
    fn write_waiting(&mut self, m: &InMsg, k: usize) -> Result<()> {
        let started = Instant::now();
        let mut since_progress = started;
        let mut warned = false;
        while !self.sink.write(&m.payload, Instant::now() + STEP)? {
            if !warned {
                log_line!(
                    "route {}: the local target is full (gated by its slowest reader); waiting",
                    self.name
                );
                warned = true;
            }
            // Relaxed: a flag.
            if self.stop.load(Ordering::Relaxed) && started.elapsed() >= crate::out::DRAIN {
                // Stopping, and the target stays full: record what was
                // written and go. JetStream delivers the rest again.
                self.state.finish(k, self.sink.next_seq())?;
                return Err(crate::exit::fail(
                    crate::exit::TIMEOUT,
                    format!(
                        "route {}: stopped while the local target stayed full; {}",
                        self.name,
                        if m.acker.is_some() {
                            "the unwritten messages come again from JetStream"
                        } else {
                            "the unwritten core NATS messages are lost"
                        }
                    ),
                ));
            }
            if since_progress.elapsed() >= PROGRESS_EVERY {
                since_progress = Instant::now();
                if let (Some(a), Some(h)) = (&m.acker, &self.handle) {
                    let _ = h.block_on(a.ack_with(async_nats::jetstream::AckKind::Progress));
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, batch: &mut Vec<InMsg>) -> Result<()> {
        // 1. Drop duplicates; note gaps (against everything written so far).
        self.state.settle();
        let mut last: HashMap<u16, u64> = HashMap::new();
        let mut keep = Vec::with_capacity(batch.len());
        let mut intent = Vec::with_capacity(batch.len());
        for m in batch.drain(..) {
            let Some((src, seq, is_log)) = &m.origin else {
                intent.push((NO_SOURCE, 0));
                keep.push(m);
                continue;
            };
            let i = match &self.cached {
                Some((k, i)) if Arc::ptr_eq(k, src) => *i,
                _ => {
                    let i = self.state.source(src)?;
                    self.cached = Some((src.clone(), i));
                    i
                }
            };
            if let Some(prev) = last.get(&i).copied().or(self.state.last_of(i)) {
                if *seq <= prev {
                    Counters::add(&self.counters.duplicates, 1);
                    if let (Some(a), Some(tx)) = (m.acker, &self.ack_tx) {
                        let _ = tx.send(a);
                    }
                    continue;
                }
                if *is_log && *seq > prev + 1 {
                    let n = seq - prev - 1;
                    Counters::add(&self.counters.lost, n);
                    log_line!(
                        "route {}: gap from {src}: sequence {} to {} missing ({n} messages lost in transit)",
                        self.name,
                        prev + 1,
                        seq - 1
                    );
                }
            }
            last.insert(i, *seq);
            intent.push((i, *seq));
            keep.push(m);
        }
        // 2. Record the intent, then publish, in order: as many as the
        // target takes at once in one call, else one, waiting.
        self.state.begin(&intent, self.sink.next_seq())?;
        let mut k = 0;
        while k < keep.len() {
            let room = crash_room(&self.counters).min(keep.len() - k);
            let msgs: Vec<&[u8]> = keep[k..k + room].iter().map(|m| &m.payload[..]).collect();
            let mut n = self.sink.write_now(&msgs)?;
            if n == 0 {
                self.write_waiting(&keep[k], k)?;
                n = 1;
            }
            Counters::add(&self.counters.forwarded, n as u64);
            crash_point(&self.counters);
            // 3. Acknowledge once they are in the target.
            for m in &mut keep[k..k + n] {
                if let (Some(a), Some(tx)) = (m.acker.take(), &self.ack_tx) {
                    let _ = tx.send(a);
                }
            }
            k += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, *v);
        }
        h
    }

    #[test]
    fn origin_from_the_message_id() {
        let mut o = Origins::default();
        let log = headers(&[("Nats-Msg-Id", "h/file:/tmp/a.log/41")]);
        let (src, seq, is_log) = o.of(Some(&log)).unwrap();
        assert_eq!((&*src, seq, is_log), ("h/file:/tmp/a.log", 41, true));
        // The next message of the same source shares its key.
        let next = headers(&[("Nats-Msg-Id", "h/file:/tmp/a.log/42")]);
        assert!(Arc::ptr_eq(&o.of(Some(&next)).unwrap().0, &src));
        // A queue's messages say so (core mode: two headers; JetStream: three).
        let q = headers(&[("Nats-Msg-Id", "h/posix:q/7"), ("Shmq-Kind", "queue")]);
        assert_eq!(o.of(Some(&q)).map(|(_, s, l)| (s, l)), Some((7, false)));
        let js = headers(&[
            ("Nats-Msg-Id", "h/posix:a/8"),
            ("Nats-Expected-Last-Msg-Id", "h/posix:a/7"),
        ]);
        assert_eq!(o.of(Some(&js)).map(|(_, s, l)| (s, l)), Some((8, true)));
        // Not from a route: no origin (written, never deduplicated).
        assert!(o.of(None).is_none());
        assert!(o.of(Some(&headers(&[("Other", "x")]))).is_none());
        assert!(o
            .of(Some(&headers(&[("Nats-Msg-Id", "order-17")])))
            .is_none());
    }
}
