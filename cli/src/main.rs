//! `shmq`: inspect, operate and benchmark shmq queues from the shell.
//!
//! This file holds the command-line definitions, the dispatch, and the
//! mapping of errors to exit codes; each command lives in its own module.

#![warn(clippy::undocumented_unsafe_blocks)]

mod bench;
mod crash;
mod cursor;
mod exit;
mod json;
mod ops;
mod pubtail;
mod signal;
mod text;
mod view;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shmq::Target;

/// The exit codes, as shown in every `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other error (I/O, queue closed, message too large, ...)
  2  usage error or invalid argument
  3  not found: nothing at the target
  4  permission denied
  5  corrupt: not a shmq segment, or its header fails validation
  6  already exists (create never replaces anything)
  7  incompatible: another queue kind or layout version
  8  not ready: the segment's creator never finished initialising it
  9  timed out (--timeout)
  130 interrupted (Ctrl-C)

Targets: a number (decimal or 0x hex, unsigned, no sign) is a SysV key, a name
is a POSIX name (/dev/shm/NAME), anything with a '/' is a file path; or say it
with a prefix: sysv:KEY, posix:NAME, file:PATH. An all-digit name is always a
SysV key: write posix:4242 for a POSIX name made of digits.";

/// Inspect, operate and benchmark shmq shared-memory queues.
#[derive(Parser, Debug)]
#[command(name = "shmq", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List the shmq segments on this machine (SysV and /dev/shm; files by path)
    #[command(after_help = concat!(
        "Example:\n  shmq ls\n  shmq ls --all /var/tmp/orders.q\n\n",
        "Columns: target, kind (queue or log), slot size, capacity, fill (messages \
         waiting in a queue), processes attached (alive/listed), creator pid and whether \
         it is alive."
    ))]
    Ls(LsArgs),
    /// Show a segment's header, counters, waiters (a log: its cursors and their lag) and attached processes
    #[command(
        after_help = "Example:\n  shmq stat orders\n  shmq stat 0x2a --watch\n  shmq stat /var/tmp/orders.q --json"
    )]
    Stat(StatArgs),
    /// Create a queue or a fan-out log (never replaces anything already at the target)
    #[command(after_help = concat!(
        "Example:\n  shmq create orders --slot-size 256 --capacity 4096 --mode 660\n  ",
        "shmq create quotes --kind log --capacity 65536\n  ",
        "shmq create audit --kind log --log-mode reliable --cursors 32\n  ",
        "shmq create trades --kind log --log-mode reliable --cursor billing --cursor audit\n\n",
        "A reliable log is lossless only while someone is registered: with no cursor at all, \
         a publish is refused (nobody would read it; `shmq pub` exits 3). Declare the durable \
         cursors of its readers with --cursor: they are created with the log, at its first \
         message, before any process can publish, so a reader that starts later \
         (subscribing to its cursor by name) still gets every message."
    ))]
    Create(CreateArgs),
    /// Remove segments (only shmq's, unless --force)
    #[command(after_help = "Example:\n  shmq rm orders 0x2a")]
    Rm(RmArgs),
    /// Publish messages to a queue or a log: each line of standard input is one message
    #[command(
        after_help = "Example:\n  printf 'a\\nb\\n' | shmq pub orders\n  shmq pub orders --count 1000 --size 64\n  shmq pub orders --file packet.bin\n  printf 'AAPL 189.91\\n' | shmq pub quotes"
    )]
    Pub(PubArgs),
    /// Print messages as they arrive (consumes them from a work queue; reads a log)
    #[command(after_help = concat!(
        "Example:\n  shmq tail orders\n  shmq tail orders --format hex --count 10 --timeout 5\n  ",
        "shmq tail quotes --from oldest\n  shmq tail audit --from cursor:billing\n\n",
        "On a fan-out log, tail reads without taking messages from anyone. --from says where \
         it starts: `latest` (default: only what is published from now on), `oldest` (the \
         oldest message still in the log), or `cursor:NAME`, a durable named cursor in the \
         log: created at the oldest message if it does not exist, committed after each \
         printed message, so the next `tail --from cursor:NAME` resumes after the last \
         message printed. Messages lost by falling a ring behind (overwrite mode) are \
         reported on standard error and tail goes on."
    ))]
    Tail(TailArgs),
    /// List or remove a log's named durable cursors
    #[command(
        subcommand,
        after_help = "Example:\n  shmq cursor ls audit\n  shmq cursor rm audit billing\n\nA named cursor is durable: in reliable mode it gates publishers until a subscriber resumes it, also after that subscriber died (`shmq stat` shows it held by a dead process). Removing it lets publishers go on."
    )]
    Cursor(CursorCmd),
    /// Measure cross-process latency and throughput beside the machine's raw limits
    #[command(after_help = concat!(
        "Example:\n  shmq bench\n  shmq bench --sizes 64 --producers 1,2 --consumers 1,2 --json\n  \
         shmq bench --sizes 64 --cases log,raw --subscribers 1,2,4,8\n\n",
        "Latency cases ping-pong one message between two processes and report one-way \
         latency (round trip / 2). Throughput cases stream messages from producer to \
         consumer processes. One producer and one consumer use a single-producer/single-\
         consumer queue (`queue-spsc-*`, through into_producer/into_consumer handles), as \
         a 1:1 user would; `queue-mpmc-*` is the multi-producer ring, measured beside it \
         and alone with several producers or consumers. Cases whose name starts with `raw` \
         are the machine's limits, measured in the same run: a bare cache-line ping-pong \
         and a minimal hand-written single-producer/single-consumer ring in shared memory. \
         `pipe` and `unix` are a pipe and a Unix socket. `log-pingpong-spin` is the same \
         ping-pong over two fan-out logs; `log-fanout-Nsub` streams from one publisher \
         process to N subscriber processes over a reliable log (each checks it got every \
         message, in order) and reports the slowest subscriber's rate. `spin` cases use \
         WaitStrategy::BusySpin, `sleep` cases (and the fan-out) the default SpinThenSleep. \
         The idle cases run in the background while the others run. The ratio column \
         divides by the raw case of the same size (latency: p50 and p99.9; throughput: \
         msgs/s), or for fan-out to N > 1 subscribers by the one-subscriber rate."
    ))]
    Bench(bench::BenchArgs),
    /// One side of a benchmark (started by `shmq bench`)
    #[command(hide = true)]
    BenchChild(bench::ChildArgs),
    /// Crash campaign: SIGKILL producers and consumers at random moments, then check every invariant
    #[command(after_help = concat!(
        "Example:\n  shmq crash\n  shmq crash --kinds spsc --kills 200 --json\n  ",
        "shmq crash --kills 10000 --backing sysv --seed 42\n  ",
        "shmq crash --kinds mpmc,spsc --batch 8\n\n",
        "Each kind runs in rounds of --round-kills SIGKILLs against real processes (MPMC: 2 \
         producers x 2 consumers; SPSC: 1 x 1, roles taken over; logs: 1 publisher x 2 \
         subscribers, durable named cursors in reliable mode), each killed process replaced at \
         once; then the queue or log is closed and drained and the ledgers every process wrote \
         are checked: no torn or wrong-length message, no duplicate, no loss (beyond one \
         message in hand per consumer kill with single calls; none with --batch), FIFO, no stall (--stall-ms), no crash of a \
         survivor, no leaked segment; recovery after each kill is timed (p99 bar: \
         --latency-bar-ms). Exit status 0 only if every invariant held."
    ))]
    Crash(crash::CrashArgs),
    /// One process of the crash campaign (started by `shmq crash`)
    #[command(hide = true)]
    CrashChild(crash::ChildArgs),
}

#[derive(Subcommand, Debug)]
enum CursorCmd {
    /// List every cursor of a log with its position, lag and holder
    Ls {
        /// The log
        #[arg(value_parser = target)]
        target: Target,
    },
    /// Remove named cursors (refused for one a live subscriber holds, unless --force)
    Rm {
        /// The log
        #[arg(value_parser = target)]
        target: Target,
        /// Cursor names
        #[arg(required = true)]
        names: Vec<String>,
        /// Remove it even if a live subscriber holds it
        #[arg(long)]
        force: bool,
    },
}

/// Parses a target for clap (usage errors exit with 2).
fn target(s: &str) -> Result<Target, String> {
    s.parse::<Target>().map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
struct LsArgs {
    /// File-backed queues to include (files are not discovered on their own)
    paths: Vec<PathBuf>,
    /// Also list segments that are not shmq's (as `foreign`) and ones that cannot be read
    #[arg(long)]
    all: bool,
    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct StatArgs {
    /// The segment: SysV key, POSIX name or file path
    #[arg(value_parser = target)]
    target: Target,
    /// Refresh once a second, with rates
    #[arg(long)]
    watch: bool,
    /// With --watch: stop after this many refreshes
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
    /// One JSON object (per refresh, with --watch)
    #[arg(long)]
    json: bool,
}

/// What `create` makes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A work queue: each message goes to one consumer
    Queue,
    /// A fan-out log: every subscriber sees every message
    Log,
}

/// What a log's publishers do when its slowest subscriber is a ring behind.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogModeArg {
    /// Publishers never wait; a subscriber that falls a ring behind loses messages (and is told)
    Overwrite,
    /// Publishers wait for the slowest registered subscriber; nothing is lost
    Reliable,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Where: SysV key, POSIX name or file path
    #[arg(value_parser = target)]
    target: Target,
    /// A work queue or a fan-out log
    #[arg(long, value_enum, default_value_t = Kind::Queue)]
    kind: Kind,
    /// Largest message, in bytes
    #[arg(long, default_value_t = 64)]
    slot_size: usize,
    /// Number of slots (at least 2)
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
    /// Permission bits of the segment, in octal
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    mode: u32,
    /// Queue: single producer and single consumer at a time (the fastest mode)
    #[arg(long)]
    spsc: bool,
    /// Log: overwrite (default) or reliable
    #[arg(long, value_enum, value_name = "MODE")]
    log_mode: Option<LogModeArg>,
    /// Log: one publisher at a time (a role taken over when its holder
    /// dies); publishing then executes no locked instruction
    #[arg(long)]
    single_publisher: bool,
    /// Log: entries in the cursor table (named cursors, plus unnamed
    /// subscribers in reliable mode; default 16)
    #[arg(long, value_name = "N")]
    cursors: Option<usize>,
    /// Log: a durable named cursor created with the log at its first
    /// message (repeatable); in reliable mode it gates publishers from the
    /// first publish, so its reader loses nothing however late it starts
    #[arg(long = "cursor", value_name = "NAME")]
    durable: Vec<String>,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim_start_matches("0o");
    u32::from_str_radix(digits, 8).map_err(|_| format!("{s:?} is not an octal mode such as 600"))
}

#[derive(Args, Debug)]
struct RmArgs {
    /// The segments to remove
    #[arg(value_parser = target, required = true)]
    targets: Vec<Target>,
    /// Remove even what is not a valid shmq segment (corrupt or foreign)
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct PubArgs {
    /// The queue or log
    #[arg(value_parser = target)]
    target: Target,
    /// Send the whole file as one message instead of reading lines
    #[arg(long, value_name = "PATH", conflicts_with = "count")]
    file: Option<PathBuf>,
    /// Send this many generated messages instead of reading lines
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Size of generated messages (default: 64, or the slot size if smaller)
    #[arg(long, value_name = "BYTES", requires = "count")]
    size: Option<usize>,
    /// Give up (exit 9) when a message waits this long for a free slot
    /// (a full queue, or a reliable log's slowest subscriber), or for a
    /// reliable log with nobody subscribed to get a subscriber (without
    /// it, such a log is refused at once: exit 3)
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Queue: when full, discard the oldest message instead of waiting
    #[arg(long)]
    shift: bool,
    /// Do not print the summary line
    #[arg(long, short)]
    quiet: bool,
}

/// How `tail` prints a message.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// The bytes as they are, then a newline
    Text,
    /// Lowercase hexadecimal, then a newline
    Hex,
    /// Only the length in bytes
    Len,
}

#[derive(Args, Debug)]
struct TailArgs {
    /// The queue or log
    #[arg(value_parser = target)]
    target: Target,
    /// How to print each message
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Stop after this many messages
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Give up (exit 9) after this long without a message
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Log: start at `latest` (default), `oldest` or `cursor:NAME` (see below)
    #[arg(long, value_name = "WHERE", value_parser = parse_from)]
    from: Option<StartAt>,
}

/// Where `tail` starts reading a log.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StartAt {
    /// The oldest message still in the log.
    Oldest,
    /// The next message published.
    Latest,
    /// A durable named cursor.
    Cursor(String),
}

fn parse_from(s: &str) -> Result<StartAt, String> {
    match s {
        "oldest" => Ok(StartAt::Oldest),
        "latest" => Ok(StartAt::Latest),
        _ => match s.strip_prefix("cursor:") {
            Some(name) if !name.is_empty() => Ok(StartAt::Cursor(name.to_owned())),
            _ => Err(format!("{s:?} is not `oldest`, `latest` or `cursor:NAME`")),
        },
    }
}

/// `shmq bridge ARGS...` runs `shmq-bridge ARGS...` found beside this
/// binary (the bridge is its own crate, so that the engine and this command
/// never link a network client).
fn exec_bridge() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new("bridge")) {
        return;
    }
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("shmq-bridge")))
        .filter(|p| p.is_file());
    let Some(exe) = exe else {
        eprintln!("shmq: shmq-bridge not found beside the shmq binary (cargo build --release builds both)");
        std::process::exit(exit::NOT_FOUND);
    };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&exe).args(args).exec();
    eprintln!("shmq: running {}: {err}", exe.display());
    std::process::exit(exit::OTHER);
}

fn main() {
    signal::quiet_panics();
    exec_bridge();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Ls(a) => view::ls(&a.paths, a.all, a.json),
        Cmd::Stat(a) => view::stat(&a.target, a.watch, a.count, a.json),
        Cmd::Create(a) => ops::create(&a),
        Cmd::Rm(a) => ops::rm(&a.targets, a.force),
        Cmd::Pub(a) => pubtail::publish(&a),
        Cmd::Tail(a) => pubtail::tail(&a),
        Cmd::Cursor(CursorCmd::Ls { target }) => cursor::ls(&target),
        Cmd::Cursor(CursorCmd::Rm {
            target,
            names,
            force,
        }) => cursor::rm(&target, &names, force),
        Cmd::Bench(a) => bench::run(&a),
        Cmd::BenchChild(a) => bench::child(&a),
        Cmd::Crash(a) => crash::run(&a),
        Cmd::CrashChild(a) => crash::child(&a),
    };
    if let Err(err) = result {
        let msg = exit::one_line(&err);
        if !msg.is_empty() {
            eprintln!("shmq: {msg}");
        }
        let code = exit::code_of(&err);
        std::process::exit(code);
    }
}
