//! `shmq-bridge`: shmq logs and queues to NATS subjects and back.
//!
//! NATS does the network fan-out, shmq the fan-out inside each host: run
//! one bridge per host per feed. An *out* route reads a local log (through
//! the named durable cursor `bridge.<route>`) or queue and publishes each
//! message to a subject with the header `Nats-Msg-Id: host/segment/seq`
//! (plus `Shmq-Kind: queue` from a queue, and `Nats-Expected-Last-Msg-Id`
//! in JetStream mode); an *in*
//! route takes a subject (core) or a JetStream durable consumer into a
//! local log or queue, dropping duplicates by sequence number. See the README's
//! "Bridge to NATS" and each module's doc.
//!
//! The shared-memory side runs on dedicated threads with bounded blocking
//! calls (`local`). A core-mode route speaks NATS from that same thread
//! through its own connection (`wire`, a blocking client of the core
//! protocol) when the server is one plain `nats://host:port`; JetStream
//! routes, and core routes to TLS or several servers, use async-nats on
//! tokio.

#![warn(clippy::undocumented_unsafe_blocks)]

mod backoff;
mod bench;
mod config;
mod exit;
mod inbound;
mod local;
mod out;
mod pack;
mod state;
mod status;
mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};

use backoff::Backoff;
use config::{Direction, Mode, Route};
use status::{Counters, RouteStatus};

const EXIT_CODES: &str = "\
Exit codes (the numbers of the shmq command):
  0  success, or stopped by SIGTERM/SIGINT after draining and committing
  1  other error
  2  usage error or invalid argument (flags, routes file)
  3  not found: nothing at the local target
  4  permission denied
  5  corrupt segment or state file
  6  already exists
  7  incompatible segment
  8  not ready: the segment's creator never finished initialising it
  9  timed out: outstanding acknowledgements did not arrive while draining";

/// Bridge shmq logs and queues to NATS subjects (core and JetStream) and back.
#[derive(Parser, Debug)]
#[command(name = "shmq-bridge", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the routes of a routes file (several per process)
    #[command(after_help = "Example:\n  shmq-bridge run --config /etc/shmq-bridge/routes.toml")]
    Run {
        /// The routes file (TOML; see the README)
        #[arg(long)]
        config: PathBuf,
    },
    /// One out route: a local log or queue to a NATS subject
    #[command(after_help = concat!(
        "Example:\n  shmq-bridge out --local quotes --subject feed.quotes --mode jetstream\n\n",
        "A log is read through the named durable cursor bridge.<name> (shown by `shmq stat`)."
    ))]
    Out(OneRoute),
    /// One in route: a NATS subject to a local log or queue
    #[command(
        after_help = "Example:\n  shmq-bridge in --local quotes-remote --subject feed.quotes --mode jetstream --state /var/lib/shmq-bridge/quotes.state"
    )]
    In(OneRoute),
    /// Print the status file of a running bridge
    #[command(after_help = "Example:\n  shmq-bridge status /run/shmq-bridge.status")]
    Status {
        /// The status file (--status-file of the running bridge)
        file: PathBuf,
    },
    /// Throughput and latency log -> NATS -> log, beside bare async-nats
    Bench(bench::BenchArgs),
}

#[derive(Args, Debug)]
struct OneRoute {
    /// The local target: a SysV key, a POSIX name or a file path
    #[arg(long)]
    local: String,
    /// The NATS subject
    #[arg(long)]
    subject: String,
    /// core: at most once, loss reported; jetstream: exactly once
    #[arg(long, value_enum, default_value = "core")]
    mode: Mode,
    /// The route's name (cursor bridge.<name>); default: the subject
    #[arg(long)]
    name: Option<String>,
    /// JetStream: the stream (created if missing); default SHMQ_<subject>
    #[arg(long)]
    stream: Option<String>,
    /// In routes: the state file; default shmq-bridge-<name>.state
    #[arg(long)]
    state: Option<PathBuf>,
    /// Out routes of a log, core mode: a read batch per NATS message
    /// (readers must be shmq bridges; see the README)
    #[arg(long)]
    pack: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct Common {
    /// The NATS server URL(s), comma-separated
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    server: String,
    /// The host part of every message id; default the machine's host name
    #[arg(long)]
    host: Option<String>,
    /// Write the routes' counters here once a second
    #[arg(long)]
    status_file: Option<PathBuf>,
}

/// What every route shares.
pub struct Ctx {
    /// The async-nats connection of JetStream routes and of core routes
    /// that cannot use the wire client; made by the first route that
    /// needs it ([`Ctx::client`]), so a bridge of plain core routes keeps
    /// one connection per route and no idle one besides.
    client: tokio::sync::OnceCell<async_nats::Client>,
    /// The server URL(s) as given (core routes open their own connections).
    pub server: String,
    /// The host part of every message id (`host/segment/seq`).
    pub host: String,
    /// Set on SIGTERM/SIGINT (or a failed route): stop taking messages, drain.
    pub stop: Arc<AtomicBool>,
    /// Connections made so far (routes notice a reconnection by it).
    pub connects: Arc<AtomicU64>,
}

impl Ctx {
    /// The shared async-nats connection, connecting on first use (it then
    /// reconnects by itself, without end; see [`connect`]).
    pub async fn client(&self) -> Result<&async_nats::Client> {
        self.client
            .get_or_try_init(|| connect(&self.server, self.connects.clone()))
            .await
    }
}

/// The header that marks a queue's messages (`Shmq-Kind: queue`): their
/// sequence numbers are the route's counter, not contiguous, so a receiver
/// does not count gaps. Absent on a log's messages.
pub const KIND_HEADER: async_nats::HeaderName = async_nats::HeaderName::from_static("Shmq-Kind");

/// Splits a message id, `host/segment/seq`, into its source (`host/segment`,
/// which may itself hold slashes: a segment can be a path) and its sequence
/// number.
pub fn parse_msg_id(id: &str) -> Option<(&str, u64)> {
    let (source, seq) = id.rsplit_once('/')?;
    Some((source, seq.parse().ok()?))
}

/// Creates the route's JetStream stream if it is missing (file storage,
/// the default two-minute duplicate window for `Nats-Msg-Id`).
pub async fn ensure_stream(js: &async_nats::jetstream::Context, route: &Route) -> Result<()> {
    let name = route.stream();
    if js.get_stream(&name).await.is_ok() {
        return Ok(());
    }
    let config = async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![route.subject.clone()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    };
    match js.create_stream(config).await {
        Ok(_) => Ok(()),
        // Another route or bridge created it meanwhile.
        Err(_) if js.get_stream(&name).await.is_ok() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating stream {name}")),
    }
}

/// How a core-mode route talks to NATS.
pub enum CoreLink {
    /// Its own connection through [`wire`], confirmed.
    Wire(wire::Plain, wire::Conn),
    /// The shared async-nats client (TLS, several servers).
    AsyncNats,
    /// Stopped (SIGTERM) before a first connection.
    Stopped,
}

/// Chooses a core route's client and, for [`wire`], connects it: retrying
/// after each [`Backoff`] delay while the server is down, as async-nats
/// does for the others.
pub async fn core_link(ctx: &Ctx, route: &str, counters: &status::Counters) -> CoreLink {
    let Some(url) = wire::Plain::parse(&ctx.server) else {
        log_line!(
            "route {route}: the server URL is not one plain nats://host:port: core NATS through async-nats"
        );
        return CoreLink::AsyncNats;
    };
    let mut backoff = Backoff::new();
    loop {
        let u = url.clone();
        let r = tokio::task::spawn_blocking(move || wire::Conn::connect(&u))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        let e = match r {
            Ok(wire::Connected::Conn(c)) => {
                // Relaxed: a counter compared by routes, nothing published with it.
                ctx.connects.fetch_add(1, Ordering::Relaxed);
                log_line!("route {route}: connected to {} (wire client)", url.addr);
                return CoreLink::Wire(url, c);
            }
            Ok(wire::Connected::TlsRequired) => {
                log_line!("route {route}: the server requires TLS: core NATS through async-nats");
                return CoreLink::AsyncNats;
            }
            Err(e) => e,
        };
        status::Counters::add(&counters.errors, 1);
        let wait = backoff.next();
        log_line!("route {route}: {e:#}; retrying in {wait:?}");
        let until = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < until {
            // Relaxed: a flag.
            if ctx.stop.load(Ordering::Relaxed) {
                return CoreLink::Stopped;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Connects with unbounded reconnection: async-nats waits
/// [`Backoff::nth`] of its attempt count between attempts.
pub async fn connect(server: &str, connects: Arc<AtomicU64>) -> Result<async_nats::Client> {
    let opts = async_nats::ConnectOptions::new()
        .name("shmq-bridge")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(Backoff::nth)
        .event_callback(move |event| {
            let connects = connects.clone();
            async move {
                if event == async_nats::Event::Connected {
                    // Relaxed: a counter compared by routes, nothing published with it.
                    connects.fetch_add(1, Ordering::Relaxed);
                }
                log_line!("nats: {event}");
            }
        });
    // async-nats parses a `&str` as one URL: a list is split here.
    let servers: Vec<&str> = server
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let client = opts
        .connect(servers)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    Ok(client)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Runs `routes` until SIGTERM/SIGINT (exit 0 once drained) or a route fails.
fn run_routes(
    routes: Vec<Route>,
    server: String,
    host: Option<String>,
    status_file: Option<PathBuf>,
) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let connects = Arc::new(AtomicU64::new(0));
        let ctx = Arc::new(Ctx {
            client: tokio::sync::OnceCell::new(),
            server: server.clone(),
            host: host.unwrap_or_else(config::hostname),
            stop: stop.clone(),
            connects,
        });
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut statuses = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for route in routes {
            let counters = Arc::new(Counters::default());
            statuses.push(RouteStatus {
                describe: format!(
                    "route={} direction={:?} mode={:?} local={} subject={}{}",
                    route.name,
                    route.direction,
                    route.mode,
                    route.local,
                    route.subject,
                    if route.direction == Direction::Out {
                        format!(" cursor={}", route.cursor())
                    } else {
                        format!(" state={}", route.state_path().display())
                    }
                )
                .to_lowercase(),
                counters: counters.clone(),
            });
            let ctx = ctx.clone();
            let name = route.name.clone();
            tasks.spawn(async move {
                let r = match route.direction {
                    Direction::Out => out::run(ctx, route, counters).await,
                    Direction::In => inbound::run(ctx, route, counters).await,
                };
                r.with_context(|| format!("route {name}"))
            });
        }
        let mut first_err: Option<anyhow::Error> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = sigterm.recv() => {
                    log_line!("SIGTERM: draining");
                    // Relaxed: routes poll the flag.
                    stop.store(true, Ordering::Relaxed);
                }
                _ = sigint.recv() => {
                    log_line!("SIGINT: draining");
                    // Relaxed: as above.
                    stop.store(true, Ordering::Relaxed);
                }
                _ = tick.tick() => {
                    if let Some(p) = &status_file {
                        if let Err(e) = status::write(p, &statuses) {
                            log_line!("status file {}: {e}", p.display());
                        }
                    }
                }
                done = tasks.join_next() => match done {
                    None => break,
                    Some(r) => {
                        let r = r.map_err(anyhow::Error::from).and_then(|r| r);
                        if let Err(e) = r {
                            log_line!("{e:#}; stopping the other routes");
                            // Relaxed: as above.
                            stop.store(true, Ordering::Relaxed);
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        if let Some(p) = &status_file {
            let _ = status::write(p, &statuses);
        }
        // Flush whatever acks are buffered before the connection goes.
        if let Some(client) = ctx.client.get() {
            let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}

fn one_route(direction: Direction, a: OneRoute) -> Result<()> {
    let route = Route {
        name: a.name.unwrap_or_else(|| a.subject.replace(['*', '>'], "_")),
        direction,
        local: a.local,
        subject: a.subject,
        mode: a.mode,
        stream: a.stream,
        state: a.state,
        pack: a.pack,
    };
    route
        .check()
        .map_err(|e| exit::fail(exit::USAGE, format!("{e:#}")))?;
    run_routes(
        vec![route],
        a.common.server,
        a.common.host,
        a.common.status_file,
    )
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run { config } => match config::File::load(&config) {
            Err(e) => Err(exit::fail(exit::USAGE, format!("{e:#}"))),
            Ok(f) => run_routes(
                f.routes,
                f.server
                    .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
                f.host,
                f.status_file,
            ),
        },
        Cmd::Out(a) => one_route(Direction::Out, a),
        Cmd::In(a) => one_route(Direction::In, a),
        Cmd::Status { file } => std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))
            .map(|s| print!("{s}")),
        Cmd::Bench(a) => bench::run(&a),
    };
    if let Err(err) = result {
        eprintln!("shmq-bridge: {}", format!("{err:#}").replace('\n', " "));
        std::process::exit(exit::code_of(&err));
    }
}

#[cfg(test)]
mod tests {
    use super::parse_msg_id;

    #[test]
    fn msg_id_splits_at_the_last_slash() {
        assert_eq!(parse_msg_id("h/posix:q/7"), Some(("h/posix:q", 7)));
        // A segment that is a path keeps its slashes in the source.
        assert_eq!(
            parse_msg_id("h/file:/var/tmp/q.log/18446744073709551615"),
            Some(("h/file:/var/tmp/q.log", u64::MAX))
        );
        assert_eq!(parse_msg_id("h/posix:q/"), None);
        assert_eq!(parse_msg_id("h/posix:q/-1"), None);
        assert_eq!(parse_msg_id("no-slash"), None);
    }
}
