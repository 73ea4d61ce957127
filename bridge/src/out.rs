//! Out routes: a local log or queue to a NATS subject.
//!
//! Two halves joined by channels:
//!
//! - the *reader*, a dedicated thread that owns the shared-memory source
//!   ([`crate::local::Source`]): it reads in batches of up to [`BATCH`],
//!   keeps every message it sent until NATS has taken it, and commits the
//!   log's named cursor (`bridge.<route>`) only when every message read so
//!   far has been acknowledged;
//! - the *publisher*, a tokio task: it publishes each batch, pipelined (up
//!   to [`WINDOW`] messages outstanding), and reports progress back as the
//!   highest sequence number below which everything was acknowledged
//!   (JetStream, awaited in order) or flushed to the server (core).
//!
//! The cursor has one position, the reader's, so committing means reading
//! nothing new until the outstanding acknowledgements arrive: the reader
//! does that every [`COMMIT_EVERY`] messages and whenever the source is
//! idle. The committed position is then exactly one past the highest
//! contiguous acknowledged sequence number. A pause of one round trip per
//! [`COMMIT_EVERY`] messages costs little throughput.
//!
//! A core route to one plain server has no publisher task: the reader
//! thread itself writes the messages to its own connection ([`WireOut`],
//! through [`crate::wire`]) and, every [`FLUSH_EVERY`] messages or when the
//! source runs dry, a `PING`; the server answers `PONG` only once it has
//! processed everything the connection sent before (a connection's input
//! is processed in order), which acknowledges those messages.
//!
//! A failed publish or acknowledgement (server down, timeout) starts a new
//! *epoch*: the reader re-sends everything not yet acknowledged, after a
//! backoff; the publisher ignores what is left of the old epoch. JetStream
//! drops the re-sent duplicates by `Nats-Msg-Id`; in routes drop them by
//! `Shmq-Seq` in any mode.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use bytes::{Bytes, BytesMut};
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::config::{Mode, Route};
use crate::local::{self, Opened, Read, Source};
use crate::status::Counters;
use crate::wire::{self, Frame};
use crate::{log_line, CoreLink, Ctx};

/// Messages per batch handed from the reader to the publisher.
pub const BATCH: usize = 256;
/// Most messages sent and not yet acknowledged.
pub const WINDOW: usize = 8192;
/// The reader commits (pausing for the acknowledgements) every this many messages.
pub const COMMIT_EVERY: u64 = 4096;
/// Core NATS: flush at least every this many messages.
const FLUSH_EVERY: u64 = 2048;
/// How long a read waits for a message before the reader looks around.
const POLL: Duration = Duration::from_millis(50);
/// Core, wire client: with no `PING` of its own out, the route still reads
/// its socket this often.
const IDLE_READ: Duration = Duration::from_secs(1);
/// Core, wire client: a `PING` unanswered this long fails the connection.
const PONG_WAIT: Duration = Duration::from_secs(5);
/// After SIGTERM, how long the reader waits for outstanding acknowledgements.
pub const DRAIN: Duration = Duration::from_secs(10);

/// One message on its way: its sequence number, the sequence number of
/// the message the route sent before it (JetStream's expected last message
/// id), and the payload.
#[derive(Clone)]
struct Msg {
    seq: u64,
    prev: Option<u64>,
    payload: Bytes,
}

/// A batch of messages.
struct Batch {
    epoch: u64,
    msgs: Vec<Msg>,
}

/// What the publisher tells the reader.
enum Event {
    /// Every message of this epoch up to this sequence number reached NATS.
    Acked(u64),
    /// A publish or acknowledgement of this epoch failed.
    Failed(u64),
}

/// Runs one out route until `ctx.stop` is set (then drains and commits) or
/// the source is closed.
pub async fn run(ctx: Arc<Ctx>, route: Route, counters: Arc<Counters>) -> Result<()> {
    // A header value cannot hold a line break (async-nats panics on one).
    if ctx.host.contains(['\r', '\n']) {
        return Err(crate::exit::fail(
            crate::exit::USAGE,
            format!("the host name {:?} holds a line break", ctx.host),
        ));
    }
    let target: shmq::Target = route.local.parse()?;
    let source: Box<dyn Source> = match local::open(&target)? {
        Opened::Log(log) => Box::new(local::LogSource::new(log, &route.cursor())?),
        Opened::Queue(q) => Box::new(local::QueueSource::new(*q)),
    };
    if route.pack && source.kind() != "log" {
        return Err(crate::exit::fail(
            crate::exit::USAGE,
            format!(
                "route {}: pack needs a log (a queue's sequence numbers are not consecutive)",
                route.name
            ),
        ));
    }
    let segment = target.to_string();
    if segment.contains(['\r', '\n']) {
        return Err(crate::exit::fail(
            crate::exit::USAGE,
            format!("the segment name {segment:?} holds a line break"),
        ));
    }
    let wire = match route.mode {
        Mode::Jetstream => None,
        Mode::Core => match crate::core_link(&ctx, &route.name, &counters).await {
            CoreLink::Wire(url, conn) => Some((url, conn)),
            CoreLink::AsyncNats => None,
            CoreLink::Stopped => return Ok(()),
        },
    };
    let mut stored = None;
    let js = if route.mode == Mode::Jetstream {
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(WINDOW + BATCH)
            .build(ctx.client().await?.clone());
        // The server may be down or starting: retry with backoff until stopped.
        let mut backoff = Backoff::new();
        loop {
            let r = async {
                crate::ensure_stream(&js, &route).await?;
                last_stored(&js, &route, &ctx.host, &segment).await
            };
            match r.await {
                Ok(s) => {
                    stored = s;
                    break;
                }
                Err(e) => {
                    Counters::add(&counters.errors, 1);
                    let wait = backoff.next();
                    log_line!("route {}: stream: {e:#}; retrying in {wait:?}", route.name);
                    tokio::time::sleep(wait).await;
                    // Relaxed: a flag.
                    if ctx.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                }
            }
        }
        if let Some(s) = stored {
            log_line!(
                "route {}: the stream holds this source up to sequence {s}; resuming after it",
                route.name
            );
        }
        Some(js)
    } else {
        None
    };
    log_line!(
        "route {}: {} {} -> {} ({:?}), cursor {}",
        route.name,
        source.kind(),
        target,
        route.subject,
        route.mode,
        if source.durable() {
            route.cursor()
        } else {
            "none (a queue)".to_owned()
        }
    );
    let kind = source.kind();
    let stop = ctx.stop.clone();
    let c = counters.clone();
    let name = route.name.clone();
    let thread = std::thread::Builder::new().name(format!("out-{}", route.name));
    if let Some((url, conn)) = wire {
        let link = Link::Wire(Box::new(WireOut {
            url,
            conn: Some(conn),
            subject: route.subject.clone(),
            prefix: Headers::new(&ctx.host, &segment, kind).prefix,
            kind: (kind != "log").then_some(kind),
            pack: route.pack,
            pings: VecDeque::new(),
            written: None,
            pinged: None,
            unflushed: 0,
            last_read: Instant::now(),
            connects: ctx.connects.clone(),
        }));
        let reader = thread.spawn(move || Reader::new(source, link, stop, c, name, None).run())?;
        return tokio::task::spawn_blocking(move || reader.join())
            .await?
            .map_err(|_| anyhow!("route {}: the reader thread panicked", route.name))?;
    }
    let (btx, brx) = mpsc::channel::<Batch>(WINDOW / BATCH + 1);
    let (etx, erx) = std_mpsc::channel::<Event>();
    let link = Link::Tokio { btx, erx };
    let reader = thread.spawn(move || Reader::new(source, link, stop, c, name, stored).run())?;
    let headers = Headers::new(&ctx.host, &segment, kind);
    let published = publish(&ctx, &route, js, headers, brx, etx, &counters).await;
    let read = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow!("route {}: the reader thread panicked", route.name))?;
    // The publisher's own error first: the reader's is then only that
    // the publisher stopped.
    published.and(read)
}

/// What every message of the route carries: one header, `Nats-Msg-Id:
/// host/segment/seq` (the README's wire format), built from a prefix
/// formatted once per route; a queue's messages add `Shmq-Kind: queue`.
///
/// One header, and a standard name: async-nats builds a hash map of the
/// headers on both sides of every message, and each header costs the
/// publisher and the subscriber allocations (measured in the README).
pub(crate) struct Headers {
    /// `host/segment/`.
    prefix: String,
    kind: &'static str,
}

impl Headers {
    pub(crate) fn new(host: &str, segment: &str, kind: &'static str) -> Headers {
        Headers {
            prefix: format!("{host}/{segment}/"),
            kind,
        }
    }

    pub(crate) fn for_seq(&self, seq: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(NATS_MESSAGE_ID, self.msg_id(seq));
        // Absent means a log (contiguous sequence numbers): no second
        // header on the common path.
        if self.kind != "log" {
            h.insert(crate::KIND_HEADER, self.kind);
        }
        h
    }

    /// `host/segment/seq`.
    fn msg_id(&self, seq: u64) -> String {
        use std::fmt::Write as _;
        let mut id = String::with_capacity(self.prefix.len() + 20);
        id.push_str(&self.prefix);
        let _ = write!(id, "{seq}");
        id
    }
}

/// The sequence number of this source's message that the stream holds
/// last on the route's subject, if the last one is this source's.
///
/// Every JetStream publish carries `Nats-Expected-Last-Msg-Id` naming the
/// message sent before it, so the stream holds a source's messages without
/// holes and in order (a message whose predecessor was lost in a
/// disconnection is refused, and the route re-sends from the predecessor).
/// On start, the route resumes after what the stream holds.
async fn last_stored(
    js: &async_nats::jetstream::Context,
    route: &Route,
    host: &str,
    segment: &str,
) -> Result<Option<u64>> {
    let stream = js.get_stream(route.stream()).await?;
    let last = match stream.get_last_raw_message_by_subject(&route.subject).await {
        Ok(m) => m,
        Err(e)
            if e.kind()
                == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).context("reading the stream's last message"),
    };
    let id = last.headers.get(NATS_MESSAGE_ID).map(|v| v.as_str());
    Ok(match id.and_then(crate::parse_msg_id) {
        Some((source, seq)) if source == format!("{host}/{segment}") => Some(seq),
        _ => None,
    })
}

type AckFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = (u64, u64, Result<()>)> + Send>>;

/// The publisher: publishes batches, reports acknowledged progress.
async fn publish(
    ctx: &Ctx,
    route: &Route,
    js: Option<async_nats::jetstream::Context>,
    headers: Headers,
    mut brx: mpsc::Receiver<Batch>,
    etx: std_mpsc::Sender<Event>,
    counters: &Counters,
) -> Result<()> {
    let mut pending: FuturesOrdered<AckFuture> = FuturesOrdered::new();
    // Epochs up to this one failed: their batches and acks are ignored.
    let mut failed = 0u64;
    let mut open = true;
    let mut unflushed = 0u64;
    let subject = async_nats::Subject::from(route.subject.as_str());
    while open || !pending.is_empty() {
        tokio::select! {
            batch = brx.recv(), if open => {
                let Some(batch) = batch else {
                    open = false;
                    continue;
                };
                if batch.epoch <= failed {
                    continue;
                }
                let epoch = batch.epoch;
                let r = match &js {
                    Some(js) => publish_js(js, route, &headers, batch, &mut pending).await,
                    None => {
                        // Flush (and so acknowledge) when nothing more is
                        // queued, or every FLUSH_EVERY messages.
                        unflushed += batch.msgs.len() as u64;
                        let flush = brx.is_empty() || unflushed >= FLUSH_EVERY;
                        if flush {
                            unflushed = 0;
                        }
                        publish_core(ctx, &subject, &headers, batch, &etx, flush, route.pack).await
                    }
                };
                if let Err(e) = r {
                    Counters::add(&counters.errors, 1);
                    if e.downcast_ref::<TooLarge>().is_some() {
                        return Err(e);
                    }
                    log_line!("route {}: publish failed: {e:#}; re-sending", route.name);
                    failed = epoch;
                    let _ = etx.send(Event::Failed(epoch));
                }
            }
            Some((epoch, seq, r)) = pending.next(), if !pending.is_empty() => {
                if epoch <= failed {
                    continue;
                }
                match r {
                    Ok(()) => {
                        let _ = etx.send(Event::Acked(seq));
                    }
                    Err(e) => {
                        Counters::add(&counters.errors, 1);
                        log_line!("route {}: no acknowledgement for seq {seq}: {e:#}; re-sending", route.name);
                        failed = epoch;
                        let _ = etx.send(Event::Failed(epoch));
                    }
                }
            }
        }
    }
    Ok(())
}

async fn publish_js(
    js: &async_nats::jetstream::Context,
    route: &Route,
    headers: &Headers,
    batch: Batch,
    pending: &mut FuturesOrdered<AckFuture>,
) -> Result<()> {
    for Msg { seq, prev, payload } in batch.msgs {
        let mut msg = PublishMessage::build()
            .payload(payload)
            // Nats-Msg-Id, the stream's deduplication key, is among them.
            .headers(headers.for_seq(seq));
        if let Some(p) = prev {
            msg = msg.expected_last_message_id(headers.msg_id(p));
        }
        let ack = js
            .send_publish(route.subject.clone(), msg)
            .await
            .context("JetStream publish")?;
        let epoch = batch.epoch;
        pending.push_back(Box::pin(async move {
            let r = ack.await.map(|_| ()).map_err(anyhow::Error::from);
            (epoch, seq, r)
        }));
    }
    Ok(())
}

/// A message the server can never take (with its header, over the
/// server's `max_payload`): it ends the route, as re-sending it would
/// fail the same way forever.
#[derive(Debug)]
struct TooLarge {
    len: usize,
    max: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a message of {} bytes with its header exceeds the server's max_payload ({})",
            self.len, self.max
        )
    }
}

impl std::error::Error for TooLarge {}

/// How many of `msgs` go in the next pack (at least one, which may alone
/// exceed `max`: the caller refuses it) and their frames' size, for a
/// header of `header` bytes and a server's `max_payload` of `max`.
fn pack_fit(msgs: &[Msg], header: usize, max: usize) -> (usize, usize) {
    let (mut n, mut body) = (0, 0);
    while n < msgs.len().min(crate::pack::MAX_PACK) {
        let more = crate::pack::body_len([&msgs[n].payload[..]]);
        if n > 0 && header + body + more > max {
            break;
        }
        n += 1;
        body += more;
    }
    (n, body)
}

async fn publish_core(
    ctx: &Ctx,
    subject: &async_nats::Subject,
    headers: &Headers,
    batch: Batch,
    etx: &std_mpsc::Sender<Event>,
    flush: bool,
    pack: bool,
) -> Result<()> {
    let Some(last) = batch.msgs.last().map(|m| m.seq) else {
        return Ok(());
    };
    let client = ctx.client().await?;
    // 0 until the server's INFO has come: a fresh connection made in the
    // background. A flush waits for it, so that a message the server would
    // refuse (and drop the connection for) is refused here first.
    if client.server_info().max_payload == 0 {
        let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
    }
    let known = client.server_info().max_payload;
    let refuse = |len: usize| -> Result<()> {
        if known > 0 && len > known {
            return Err(TooLarge { len, max: known }.into());
        }
        Ok(())
    };
    if pack {
        // Not known yet: a size every server takes (its default is 1 MiB).
        let max = if known > 0 { known } else { 64 * 1024 };
        let mut rest = &batch.msgs[..];
        while let Some(first) = rest.first() {
            let header = wire::hpack_header_len(&headers.prefix, first.seq, rest.len());
            let (n, body) = pack_fit(rest, header, max);
            refuse(header + body)?;
            let (packed, after) = rest.split_at(n);
            let mut payload = Vec::with_capacity(body);
            crate::pack::put_body(&mut payload, packed.iter().map(|m| &m.payload[..]));
            let mut h = headers.for_seq(first.seq);
            h.insert(crate::pack::PACK_HEADER, n.to_string().as_str());
            client
                .publish_with_headers(subject.clone(), h, payload.into())
                .await
                .context("publish")?;
            rest = after;
        }
    } else {
        let kind = (headers.kind != "log").then_some(headers.kind);
        for Msg { seq, payload, .. } in batch.msgs {
            refuse(wire::hpub_header_len(&headers.prefix, seq, kind) + payload.len())?;
            client
                .publish_with_headers(subject.clone(), headers.for_seq(seq), payload)
                .await
                .context("publish")?;
        }
    }
    if !flush {
        return Ok(());
    }
    // Core NATS has no acknowledgement: "reached NATS" means flushed to
    // the server's socket.
    tokio::time::timeout(Duration::from_secs(5), client.flush())
        .await
        .context("flush timed out")?
        .context("flush")?;
    let _ = etx.send(Event::Acked(last));
    Ok(())
}

/// How the reader's batches reach NATS.
enum Link {
    /// Through the publisher task (async-nats): batches out, events back.
    Tokio {
        btx: mpsc::Sender<Batch>,
        erx: std_mpsc::Receiver<Event>,
    },
    /// Written by the reader itself to its own connection (boxed: the
    /// buffers and counters make it the larger variant by far).
    Wire(Box<WireOut>),
}

/// A core route's own connection, written and read by the reader thread.
struct WireOut {
    url: wire::Plain,
    /// `None` after a failure, until the next reconnection.
    conn: Option<wire::Conn>,
    subject: String,
    /// `host/segment/` of every message id.
    prefix: String,
    /// `Shmq-Kind`'s value (a queue), absent for a log.
    kind: Option<&'static str>,
    /// Send each batch as packs ([`crate::pack`]).
    pack: bool,
    /// Per `PING` sent and not answered, in order: the last sequence
    /// number written before it, and when it was sent.
    pings: VecDeque<(u64, Instant)>,
    /// The last sequence number written on this connection.
    written: Option<u64>,
    /// The last sequence number a `PING` followed.
    pinged: Option<u64>,
    /// Messages written since the last `PING`.
    unflushed: u64,
    /// When the socket was last read.
    last_read: Instant,
    connects: Arc<std::sync::atomic::AtomicU64>,
}

impl WireOut {
    /// Writes `msgs` (one `write_all` per [`wire::WRITE_CHUNK`]), then a
    /// `PING` every [`FLUSH_EVERY`] messages or after a short batch (the
    /// source ran dry: acknowledge what there is). The outer error is the
    /// route's end (a message the server can never take); the inner one a
    /// connection failure (re-send).
    fn publish(&mut self, msgs: &[Msg]) -> Result<std::io::Result<()>> {
        let written = if self.pack {
            self.publish_packed(msgs)?
        } else {
            self.publish_each(msgs)?
        };
        if let Err(e) = written {
            return Ok(Err(e));
        }
        if let Some(last) = msgs.last() {
            self.written = Some(last.seq);
            self.unflushed += msgs.len() as u64;
            if self.unflushed >= FLUSH_EVERY || msgs.len() < BATCH {
                self.ping();
            }
        }
        Ok(self.conn.as_mut().map_or(Ok(()), wire::Conn::flush))
    }

    /// Writes `msgs` one `HPUB` each.
    fn publish_each(&mut self, msgs: &[Msg]) -> Result<std::io::Result<()>> {
        let Some(c) = &mut self.conn else {
            return Ok(Err(std::io::Error::other("not connected")));
        };
        for m in msgs {
            let len = wire::hpub_header_len(&self.prefix, m.seq, self.kind) + m.payload.len();
            if len > c.max_payload {
                return Err(TooLarge {
                    len,
                    max: c.max_payload,
                }
                .into());
            }
            wire::put_hpub(
                &mut c.wbuf,
                &self.subject,
                &self.prefix,
                m.seq,
                self.kind,
                &m.payload,
            );
            if c.wbuf.len() >= wire::WRITE_CHUNK {
                if let Err(e) = c.flush() {
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(()))
    }

    /// Writes `msgs` (consecutive messages of a log) as packs, each as
    /// large as the server's `max_payload` allows.
    fn publish_packed(&mut self, msgs: &[Msg]) -> Result<std::io::Result<()>> {
        let Some(c) = &mut self.conn else {
            return Ok(Err(std::io::Error::other("not connected")));
        };
        let mut rest = msgs;
        while let Some(first) = rest.first() {
            let header = wire::hpack_header_len(&self.prefix, first.seq, rest.len());
            let (n, body) = pack_fit(rest, header, c.max_payload);
            if header + body > c.max_payload {
                return Err(TooLarge {
                    len: header + body,
                    max: c.max_payload,
                }
                .into());
            }
            let (pack, after) = rest.split_at(n);
            wire::put_hpack(
                &mut c.wbuf,
                &self.subject,
                &self.prefix,
                first.seq,
                pack.iter().map(|m| &m.payload[..]),
            );
            if c.wbuf.len() >= wire::WRITE_CHUNK {
                if let Err(e) = c.flush() {
                    return Ok(Err(e));
                }
            }
            rest = after;
        }
        Ok(Ok(()))
    }

    /// Puts a `PING` after what was written (not flushed).
    fn ping(&mut self) {
        if let (Some(c), Some(w)) = (&mut self.conn, self.written) {
            c.wbuf.extend_from_slice(b"PING\r\n");
            self.pings.push_back((w, Instant::now()));
            self.pinged = Some(w);
            self.unflushed = 0;
        }
    }

    /// Takes what the server sent, waiting up to `wait` for the first
    /// frame: the highest sequence number a `PONG` acknowledged. Before a
    /// wait, whatever was written and not yet followed by a `PING` gets one.
    fn poll(&mut self, wait: Duration) -> std::io::Result<Option<u64>> {
        if self.conn.is_none() {
            std::thread::sleep(wait);
            return Ok(None);
        }
        if !wait.is_zero() && self.written != self.pinged {
            self.ping();
        }
        let Some(c) = &mut self.conn else {
            return Ok(None);
        };
        c.flush()?;
        // Without a PING out, a zero wait reads nothing (no syscall per
        // batch), but once a second it does: the server's own PINGs must be
        // answered, or it drops an idle route's connection as stale.
        if wait.is_zero() && self.pings.is_empty() && self.last_read.elapsed() < IDLE_READ {
            return Ok(None);
        }
        self.last_read = Instant::now();
        let mut acked = None;
        let mut next = c.next(wait)?;
        while let Some(f) = next {
            match f {
                Frame::Pong => {
                    if let Some((seq, _)) = self.pings.pop_front() {
                        acked = Some(seq);
                    }
                }
                Frame::Ping => {
                    c.wbuf.extend_from_slice(b"PONG\r\n");
                    c.flush()?;
                }
                Frame::Err(r) => {
                    return Err(std::io::Error::other(format!(
                        "the server said -ERR {}",
                        String::from_utf8_lossy(c.bytes(r))
                    )))
                }
                // INFO updates, +OK, and messages (none subscribed).
                _ => {}
            }
            next = c.next_buffered()?;
        }
        // A connection that stays silent (a server gone without a word)
        // fails as async-nats's flush did: after PONG_WAIT.
        if let Some((_, sent)) = self.pings.front() {
            if acked.is_none() && sent.elapsed() > PONG_WAIT {
                return Err(std::io::Error::other(format!(
                    "no PONG within {PONG_WAIT:?}"
                )));
            }
        }
        Ok(acked)
    }

    /// A new connection; what the old one had in flight is forgotten.
    fn reconnect(&mut self) -> Result<()> {
        self.conn = None;
        self.pings.clear();
        self.written = None;
        self.pinged = None;
        self.unflushed = 0;
        self.conn = Some(wire::reconnect(&self.url)?);
        // Relaxed: a counter compared by routes, nothing published with it.
        self.connects.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The reader thread's state.
struct Reader {
    source: Box<dyn Source>,
    link: Link,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    name: String,
    /// Sent and not yet acknowledged, in order.
    unacked: VecDeque<Msg>,
    /// The last message sent (the next one's `prev`).
    last_sent: Option<u64>,
    /// JetStream: the stream holds this source up to here; reads up to it
    /// are acknowledged without sending.
    stored: Option<u64>,
    epoch: u64,
    /// A failure of the current epoch was reported.
    failed: bool,
    /// Messages read since the last commit.
    since_commit: u64,
    /// One past the last message read.
    read_to: Option<u64>,
    /// The wait before the next re-send; reset by an acknowledgement.
    backoff: Backoff,
}

impl Reader {
    fn new(
        source: Box<dyn Source>,
        link: Link,
        stop: Arc<AtomicBool>,
        counters: Arc<Counters>,
        name: String,
        stored: Option<u64>,
    ) -> Reader {
        Reader {
            source,
            link,
            stop,
            counters,
            name,
            unacked: VecDeque::new(),
            last_sent: stored,
            stored,
            epoch: 1,
            failed: false,
            since_commit: 0,
            read_to: None,
            backoff: Backoff::new(),
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Acked(seq) => {
                let mut n = 0;
                while self.unacked.front().is_some_and(|m| m.seq <= seq) {
                    self.unacked.pop_front();
                    n += 1;
                }
                if n > 0 {
                    Counters::add(&self.counters.forwarded, n);
                    self.backoff.reset();
                }
            }
            Event::Failed(epoch) => {
                if epoch == self.epoch {
                    self.failed = true;
                }
            }
        }
    }

    /// The wire connection failed: drop it, re-send after the backoff.
    fn wire_failed(&mut self, e: &dyn std::fmt::Display) {
        Counters::add(&self.counters.errors, 1);
        log_line!(
            "route {}: NATS connection: {e}; reconnecting and re-sending",
            self.name
        );
        if let Link::Wire(w) = &mut self.link {
            w.conn = None;
        }
        self.failed = true;
    }

    /// Takes the events that arrived, waiting up to `wait` for the first.
    fn events(&mut self, wait: Duration) -> Result<()> {
        let erx = match &mut self.link {
            Link::Tokio { erx, .. } => erx,
            Link::Wire(w) => {
                match w.poll(wait) {
                    Ok(Some(seq)) => self.on_event(Event::Acked(seq)),
                    Ok(None) => {}
                    Err(e) => self.wire_failed(&e),
                }
                return Ok(());
            }
        };
        let first = if wait.is_zero() {
            match erx.try_recv() {
                Ok(e) => Some(e),
                Err(std_mpsc::TryRecvError::Empty) => None,
                // The publisher ended (its error is the route's): an idle
                // reader, which sends nothing, would not notice otherwise.
                Err(std_mpsc::TryRecvError::Disconnected) => {
                    return Err(anyhow!("route {}: the publisher stopped", self.name))
                }
            }
        } else {
            match erx.recv_timeout(wait) {
                Ok(e) => Some(e),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(anyhow!("route {}: the publisher stopped", self.name))
                }
            }
        };
        let mut got = Vec::new();
        if let Some(e) = first {
            got.push(e);
            while let Ok(e) = erx.try_recv() {
                got.push(e);
            }
        }
        for e in got {
            self.on_event(e);
        }
        Ok(())
    }

    fn send(&mut self, msgs: Vec<Msg>) -> Result<()> {
        match &mut self.link {
            Link::Tokio { btx, .. } => btx
                .blocking_send(Batch {
                    epoch: self.epoch,
                    msgs,
                })
                .map_err(|_| anyhow!("route {}: the publisher stopped", self.name)),
            Link::Wire(w) => {
                if self.failed {
                    // Re-sent after the reconnection.
                    return Ok(());
                }
                if let Err(e) = w.publish(&msgs)? {
                    self.wire_failed(&e);
                }
                Ok(())
            }
        }
    }

    /// After a failure: waits the backoff, then re-sends everything
    /// unacknowledged in a new epoch.
    fn resend(&mut self) -> Result<()> {
        let until = Instant::now() + self.backoff.current();
        while Instant::now() < until {
            std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
            // Late acks of the failed epoch still count.
            self.events(Duration::ZERO)?;
        }
        // Grown after the wait: a late ack during it resets the delay first.
        self.backoff.grow();
        if let Link::Wire(w) = &mut self.link {
            if let Err(e) = w.reconnect() {
                // Still failed: the next turn waits the (doubled) backoff.
                Counters::add(&self.counters.errors, 1);
                log_line!(
                    "route {}: reconnecting: {e:#}; retrying in {:?}",
                    self.name,
                    self.backoff.current()
                );
                return Ok(());
            }
            log_line!("route {}: reconnected (wire client)", self.name);
        }
        self.epoch += 1;
        self.failed = false;
        let all: Vec<_> = self.unacked.iter().cloned().collect();
        Counters::add(&self.counters.resent, all.len() as u64);
        for chunk in all.chunks(BATCH) {
            self.send(chunk.to_vec())?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.source.commit()?;
        self.since_commit = 0;
        if let Some(pos) = self.read_to {
            Counters::set(&self.counters.committed, pos);
        }
        Ok(())
    }

    fn run(mut self) -> Result<()> {
        let mut buf = Vec::new();
        // Payloads are copied into this buffer and split off it: the
        // messages of a batch share one allocation (freed when the last of
        // them is acknowledged), instead of two allocations each (the copy,
        // and the shared count its first clone would add).
        let mut arena = BytesMut::new();
        let mut idle = false;
        let mut drain_until: Option<Instant> = None;
        let mut closed = false;
        loop {
            self.events(Duration::ZERO)?;
            // Relaxed: a flag polled every POLL; nothing is published with it.
            // (Before the failure check: a route that cannot reconnect still
            // gives up DRAIN after SIGTERM.)
            if drain_until.is_none() && (closed || self.stop.load(Ordering::Relaxed)) {
                drain_until = Some(Instant::now() + DRAIN);
            }
            if self.failed {
                if drain_until.is_some_and(|d| Instant::now() >= d) {
                    return self.give_up();
                }
                self.resend()?;
                continue;
            }
            if self.unacked.is_empty() && self.since_commit > 0 {
                let due = self.since_commit >= COMMIT_EVERY || idle || drain_until.is_some();
                if due {
                    self.commit()?;
                }
            }
            if let Some(d) = drain_until {
                if self.unacked.is_empty() {
                    log_line!("route {}: drained and committed", self.name);
                    return Ok(());
                }
                if Instant::now() >= d {
                    return self.give_up();
                }
                self.events(POLL)?;
                continue;
            }
            if self.since_commit >= COMMIT_EVERY || self.unacked.len() >= WINDOW {
                self.events(POLL)?;
                continue;
            }
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                let deadline = if batch.is_empty() {
                    Instant::now() + POLL
                } else {
                    Instant::now()
                };
                match self.source.read(&mut buf, deadline)? {
                    Read::Msg { seq, len } => {
                        self.read_to = Some(seq + 1);
                        if self.stored.is_some_and(|s| seq <= s) {
                            // In the stream already (a restart after a crash).
                            self.since_commit += 1;
                            continue;
                        }
                        batch.push(Msg {
                            seq,
                            prev: self.last_sent,
                            payload: {
                                if arena.capacity() < len {
                                    arena = BytesMut::with_capacity(BATCH * len.max(64));
                                }
                                arena.extend_from_slice(&buf[..len]);
                                arena.split().freeze()
                            },
                        });
                        self.last_sent = Some(seq);
                    }
                    Read::Idle => break,
                    Read::Lost(n) => {
                        Counters::add(&self.counters.lost, n);
                        log_line!(
                            "route {}: the log overwrote {n} messages before the bridge read them (overwrite mode; {} lost in all)",
                            self.name,
                            // Relaxed: a statistic.
                            self.counters.lost.load(Ordering::Relaxed)
                        );
                    }
                    Read::Closed => {
                        log_line!("route {}: the local source is closed; draining", self.name);
                        closed = true;
                        break;
                    }
                }
            }
            Counters::set(&self.counters.lag, self.source.lag());
            idle = batch.is_empty();
            if idle {
                // The source ran dry after a full batch: acknowledge it.
                if let Link::Wire(w) = &mut self.link {
                    if w.written != w.pinged {
                        w.ping();
                    }
                }
            }
            if !batch.is_empty() {
                Counters::add(&self.counters.received, batch.len() as u64);
                self.since_commit += batch.len() as u64;
                self.unacked.extend(batch.iter().cloned());
                self.send(batch)?;
            }
        }
    }

    /// The drain time passed with messages unacknowledged: exit without
    /// committing them (a log re-sends them on the next start).
    fn give_up(self) -> Result<()> {
        log_line!(
            "route {}: {} messages still unacknowledged after {:?}; {}",
            self.name,
            self.unacked.len(),
            DRAIN,
            if self.source.durable() {
                "not committed: the next start sends them again"
            } else {
                "they were taken from the queue and are lost"
            }
        );
        Err(crate::exit::fail(
            crate::exit::TIMEOUT,
            format!(
                "route {}: outstanding acknowledgements did not arrive",
                self.name
            ),
        ))
    }
}
