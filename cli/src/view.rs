//! `shmq ls` and `shmq stat`: looking inside segments without joining them.
//!
//! Both read through `shmq::inspect`, which validates the header like any
//! opener and never registers in the process table. For a fan-out log,
//! `stat` also opens the log to read its counters and cursor table
//! ([`Log::stats`]); that registers `stat` itself in the process table,
//! so it leaves its own pid out of the list it prints.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use shmq::inspect::{Counters, Inspector, Probe};
use shmq::layout::QueueKind;
use shmq::log::{LOG_FLAG_RELIABLE, LOG_FLAG_SINGLE_PUBLISHER};
use shmq::{Attached, Error, Log, LogStats, Target};

use crate::json::{self, Obj};
use crate::text::printable;
use crate::{exit, signal};

/// The short name of a kind, as `ls` and `stat` print it.
pub fn kind_name(kind: QueueKind) -> &'static str {
    match kind {
        QueueKind::WorkQueue => "queue",
        QueueKind::Log => "log",
    }
}

/// A log's mode from its header flags (without opening it).
fn log_mode_of(flags: u64) -> &'static str {
    if flags & LOG_FLAG_RELIABLE != 0 {
        "reliable"
    } else {
        "overwrite"
    }
}

/// Whether a log's header flags say it has a single publisher.
fn single_publisher_of(flags: u64) -> bool {
    flags & LOG_FLAG_SINGLE_PUBLISHER != 0
}

/// The processes to show: the segment's table, without this process when
/// it attached only to look (`stat` of a log).
fn others(view: &Inspector, log: Option<&Log>) -> Vec<Attached> {
    let me = std::process::id();
    view.attached()
        .into_iter()
        .filter(|a| log.is_none() || a.pid != me)
        .collect()
}

/// One SysV segment as the kernel lists it in /proc/sysvipc/shm.
#[derive(Clone, Debug)]
pub struct SysvEntry {
    /// The key (0: private, or removed and waiting for its last detach).
    pub key: i32,
    /// The segment id.
    pub shmid: i64,
    /// Size in bytes.
    pub size: u64,
    /// Processes attached, as the kernel counts them.
    pub nattch: u64,
    /// Permission bits.
    pub perms: u32,
    /// Owner uid.
    pub uid: u32,
}

/// Every SysV segment on the machine.
pub fn sysv_segments() -> anyhow::Result<Vec<SysvEntry>> {
    let text = std::fs::read_to_string("/proc/sysvipc/shm").context("read /proc/sysvipc/shm")?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(k), Some(id), Some(sz), Some(na), Some(pe), Some(uid)) = (
        col("key"),
        col("shmid"),
        col("size"),
        col("nattch"),
        col("perms"),
        col("uid"),
    ) else {
        anyhow::bail!("unexpected header in /proc/sysvipc/shm");
    };
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let (Ok(key), Ok(shmid), Ok(size)) =
            (get(k).parse::<i64>(), get(id).parse(), get(sz).parse())
        else {
            continue;
        };
        out.push(SysvEntry {
            key: key as i32,
            shmid,
            size,
            nattch: get(na).parse().unwrap_or(0),
            perms: u32::from_str_radix(get(pe), 8).unwrap_or(0),
            uid: get(uid).parse().unwrap_or(0),
        });
    }
    out.sort_by_key(|e| (e.key as u32, e.shmid));
    Ok(out)
}

/// What `ls` prints for one segment.
struct Row {
    target: String,
    kind: String,
    slot: String,
    capacity: String,
    fill: String,
    procs: String,
    creator: String,
    note: String,
    json: String,
}

impl Row {
    fn other(target: String, kind: &str, note: String) -> Row {
        let json = Obj::new()
            .str("target", &target)
            .str("kind", kind)
            .str("note", &note)
            .end();
        let dash = || "-".to_string();
        Row {
            target,
            kind: kind.into(),
            slot: dash(),
            capacity: dash(),
            fill: dash(),
            procs: dash(),
            creator: dash(),
            note,
            json,
        }
    }

    fn shmq(target: String, view: &Inspector) -> Row {
        let p = view.params();
        let procs = view.attached();
        let alive = procs.iter().filter(|a| a.alive).count();
        let creator_alive = view.creator_alive();
        let stats = view.queue_stats();
        let fill = match stats {
            Some(s) => format!(
                "{} ({:.0}%)",
                s.len,
                s.len as f64 * 100.0 / s.capacity as f64
            ),
            None => "-".into(),
        };
        let creator = format!(
            "{} {}",
            p.creator_pid,
            match creator_alive {
                Some(true) => "alive",
                Some(false) => "dead",
                None => "?",
            }
        );
        let mut notes = Vec::new();
        if p.kind == QueueKind::Log && single_publisher_of(p.flags) {
            notes.push("single publisher");
        }
        if view.counters().closed {
            notes.push("closed");
        }
        let note = notes.join(", ");
        let mut obj = Obj::new()
            .str("target", &target)
            .str("kind", kind_name(p.kind))
            .int("slot_size", p.slot_size)
            .int("capacity", p.capacity)
            .int("total_size", p.total_size)
            .int("procs_listed", procs.len() as u64)
            .int("procs_alive", alive as u64)
            .int("creator_pid", p.creator_pid);
        obj = match creator_alive {
            Some(a) => obj.bool("creator_alive", a),
            None => obj.raw("creator_alive", "null"),
        };
        if let Some(s) = stats {
            obj = obj.int("len", s.len);
        }
        if p.kind == QueueKind::Log {
            obj = obj
                .str("log_mode", log_mode_of(p.flags))
                .bool("single_publisher", single_publisher_of(p.flags));
        }
        obj = obj.bool("closed", view.counters().closed);
        Row {
            target,
            kind: kind_name(p.kind).into(),
            slot: p.slot_size.to_string(),
            capacity: p.capacity.to_string(),
            fill,
            procs: format!("{alive}/{}", procs.len()),
            creator,
            note,
            json: obj.end(),
        }
    }
}

/// Looks at one target for `ls`; `None` when it is not to be listed.
fn ls_row(target: &Target, all: bool) -> Result<Option<Row>, Error> {
    let name = target.to_string();
    match shmq::inspect::probe(target) {
        Ok(Probe::Shmq(view)) => Ok(Some(Row::shmq(name, &view))),
        Ok(Probe::Corrupt(e)) => Ok(Some(Row::other(name, "corrupt", e.to_string()))),
        Ok(Probe::Uninitialised) if all => Ok(Some(Row::other(
            name,
            "uninit",
            "first word is zero: being created, abandoned, or not shmq's".into(),
        ))),
        Ok(Probe::Foreign { reason }) if all => Ok(Some(Row::other(name, "foreign", reason))),
        Ok(_) => Ok(None),
        Err(Error::PermissionDenied { .. }) if all => {
            Ok(Some(Row::other(name, "denied", "permission denied".into())))
        }
        Err(e) => Err(e),
    }
}

/// `shmq ls`.
pub fn ls(paths: &[PathBuf], all: bool, as_json: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for seg in sysv_segments()? {
        if seg.key == 0 {
            if all {
                rows.push(Row::other(
                    format!("sysv-id:{}", seg.shmid),
                    "private",
                    format!(
                        "{} bytes, no key (private or removed), {} attached",
                        seg.size, seg.nattch
                    ),
                ));
            }
            continue;
        }
        match ls_row(&Target::SysV(seg.key), all) {
            Ok(Some(r)) => rows.push(r),
            Ok(None) | Err(Error::NotFound { .. }) | Err(Error::PermissionDenied { .. }) => {}
            Err(e) if all => rows.push(Row::other(
                Target::SysV(seg.key).to_string(),
                "error",
                e.to_string(),
            )),
            Err(_) => {}
        }
    }
    let mut names: Vec<String> = match std::fs::read_dir("/dev/shm") {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    for name in names {
        let target = Target::Posix(name);
        match ls_row(&target, all) {
            Ok(Some(r)) => rows.push(r),
            Ok(None) | Err(Error::NotFound { .. }) | Err(Error::PermissionDenied { .. }) => {}
            Err(e) if all => rows.push(Row::other(target.to_string(), "error", e.to_string())),
            Err(_) => {}
        }
    }
    // Files were asked for by name: always shown, and a missing one is an error.
    let mut first_err = None;
    for path in paths {
        let target = Target::File(path.clone());
        match ls_row(&target, true) {
            Ok(Some(r)) => rows.push(r),
            Ok(None) => {}
            Err(e) => {
                eprintln!("shmq: {}", printable(&e.to_string()));
                first_err.get_or_insert(e);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let res = if as_json {
        rows.iter().try_for_each(|r| writeln!(out, "{}", r.json))
    } else {
        print_table(&mut out, &rows)
    };
    ignore_broken_pipe(res)?;
    match first_err {
        // Already printed above: exit with its code, silently.
        Some(e) => Err(exit::fail(exit::code_of(&anyhow::Error::new(e)), "")),
        None => Ok(()),
    }
}

fn print_table(out: &mut impl std::io::Write, rows: &[Row]) -> std::io::Result<()> {
    let head = [
        "TARGET", "KIND", "SLOT", "CAPACITY", "FILL", "PROCS", "CREATOR", "",
    ];
    // Names and notes may quote what another process wrote: escaped.
    let shown: Vec<[String; 2]> = rows
        .iter()
        .map(|r| {
            [
                printable(&r.target).into_owned(),
                printable(&r.note).into_owned(),
            ]
        })
        .collect();
    let cells: Vec<[&str; 8]> = rows
        .iter()
        .zip(&shown)
        .map(|(r, [target, note])| {
            [
                &**target,
                &*r.kind,
                &*r.slot,
                &*r.capacity,
                &*r.fill,
                &*r.procs,
                &*r.creator,
                &**note,
            ]
        })
        .collect();
    let mut w = [0usize; 8];
    for c in std::iter::once(&head).chain(cells.iter()) {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let right = [false, false, true, true, true, true, false, false];
    for c in std::iter::once(&head).chain(cells.iter()) {
        let mut line = String::new();
        for (i, s) in c.iter().enumerate() {
            if right[i] {
                let _ = write!(line, "{s:>width$}  ", width = w[i]);
            } else {
                let _ = write!(line, "{s:<width$}  ", width = w[i]);
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    if rows.is_empty() {
        writeln!(out, "(no shmq segments)")?;
    }
    Ok(())
}

/// Treats a closed standard output (`shmq ls | head`) as success.
pub fn ignore_broken_pipe(res: std::io::Result<()>) -> anyhow::Result<()> {
    match res {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A date as `YYYY-MM-DD HH:MM:SS UTC` from nanoseconds since the epoch.
fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// Per-second rates between two counter snapshots.
#[derive(Clone, Copy, Default)]
struct Rates {
    /// Messages enqueued (work queue) or published (log) per second.
    in_per_s: f64,
    /// Messages dequeued per second (work queue).
    out_per_s: f64,
}

/// Messages in and out so far, with the work queue's accounting
/// (positions that carried no message or were discarded do not count).
fn in_out(c: &Counters) -> (u64, u64) {
    (
        c.tail.saturating_sub(c.tombstones),
        c.head.saturating_sub(c.discarded + c.tombstones),
    )
}

fn rates(before: &Counters, after: &Counters, secs: f64) -> Rates {
    if secs <= 0.0 {
        return Rates::default();
    }
    let ((in0, out0), (in1, out1)) = (in_out(before), in_out(after));
    Rates {
        in_per_s: in1.saturating_sub(in0) as f64 / secs,
        out_per_s: out1.saturating_sub(out0) as f64 / secs,
    }
}

fn sysv_entry(target: &Target) -> Option<SysvEntry> {
    let Target::SysV(key) = target else {
        return None;
    };
    sysv_segments().ok()?.into_iter().find(|e| e.key == *key)
}

/// The backing's size now, if it is a file (POSIX or file target).
fn backing_size(target: &Target) -> Option<u64> {
    std::fs::metadata(target.path()?).ok().map(|m| m.len())
}

/// How the segment is protected against truncation, and whether it is
/// truncated now (attached processes then get `Corrupt`).
fn truncation_text(target: &Target, total_size: u64) -> String {
    let protection = target.protection().to_string();
    match backing_size(target) {
        Some(size) if size < total_size => {
            format!("TRUNCATED: the backing is {size} bytes, not {total_size}; {protection}")
        }
        _ => protection,
    }
}

fn stat_text(target: &Target, view: &Inspector, log: Option<&Log>, rates: Option<Rates>) -> String {
    let p = view.params();
    let c = view.counters();
    let mut s = String::new();
    let _ = writeln!(s, "{}", printable(&target.to_string()));
    let _ = writeln!(s, "  kind        {}", kind_detail(view));
    let _ = writeln!(
        s,
        "  slot size   {} bytes (stride {})",
        p.slot_size, p.slot_stride
    );
    let _ = writeln!(s, "  capacity    {} slots", p.capacity);
    let _ = writeln!(
        s,
        "  segment     {} bytes used of {} mapped, mode {:04o}, flags {:#x}",
        p.total_size,
        view.mapped_len(),
        p.mode,
        p.flags
    );
    let alive = match view.creator_alive() {
        Some(true) => "alive",
        Some(false) => "dead",
        None => "unknown",
    };
    let _ = writeln!(
        s,
        "  created     {} ({} ago) by pid {} ({alive})",
        utc(p.created_unix_ns),
        human_age(view.age()),
        p.creator_pid
    );
    let _ = writeln!(s, "  closed      {}", if c.closed { "yes" } else { "no" });
    let _ = writeln!(s, "  truncation  {}", truncation_text(target, p.total_size));
    if let Some(e) = sysv_entry(target) {
        let _ = writeln!(
            s,
            "  sysv        shmid {}, {} attached (kernel count), owner uid {}, perms {:04o}",
            e.shmid, e.nattch, e.uid, e.perms
        );
    }
    let rate = |v: f64| rates.map(|_| format!("  ({v:.0}/s)")).unwrap_or_default();
    match p.kind {
        QueueKind::WorkQueue => {
            let q = view.queue_stats().expect("a work queue has queue stats");
            let _ = writeln!(s, "counters");
            let _ = writeln!(
                s,
                "  enqueued    {}{}",
                q.enqueued,
                rate(rates.unwrap_or_default().in_per_s)
            );
            let _ = writeln!(
                s,
                "  dequeued    {}{}",
                q.dequeued,
                rate(rates.unwrap_or_default().out_per_s)
            );
            let _ = writeln!(
                s,
                "  in queue    {} ({:.1}%)",
                q.len,
                q.len as f64 * 100.0 / q.capacity as f64
            );
            let _ = writeln!(s, "  discarded   {}", q.discarded);
            let _ = writeln!(s, "  tombstones  {}", q.tombstones);
            let _ = writeln!(
                s,
                "  dead claims {} (claims of producers that died before publishing, skipped)",
                q.dead_claims
            );
            let _ = writeln!(
                s,
                "  redelivered {} (messages whose consumer died before its dequeue returned)",
                q.redelivered
            );
            let _ = writeln!(s, "waiters");
            let scan = view.sleeping_slots().expect("a work queue has slots");
            let _ = writeln!(
                s,
                "  {} slot(s) marked with a sleeper (a stale mark clears on the next message)",
                scan.marked
            );
            if scan.bounded() {
                let _ = writeln!(
                    s,
                    "  (bounded scan: {} of {} slots looked at, around the head and the tail)",
                    scan.scanned, scan.capacity
                );
            }
        }
        QueueKind::Log => {
            let st = log.expect("a log is opened for stat").stats();
            let _ = writeln!(s, "counters");
            let _ = writeln!(
                s,
                "  published   {}{}",
                st.published,
                rate(rates.unwrap_or_default().in_per_s)
            );
            let _ = writeln!(s, "  next seq    {}", st.next_seq);
            let _ = writeln!(
                s,
                "  oldest      {} (the oldest sequence number a new subscriber can read)",
                st.oldest
            );
            let _ = writeln!(
                s,
                "  lagged      {} (messages subscribers lost by falling a ring behind)",
                st.lagged
            );
            let _ = writeln!(s, "  tombstones  {}", st.tombstones);
            let _ = writeln!(
                s,
                "  dead writes {} (writes of publishers that died mid-write, skipped)",
                st.dead_writes
            );
            s.push_str(&cursors_text(&st));
        }
    }
    let claims = view.claims();
    let _ = writeln!(s, "claims in flight ({})", claims.len());
    for cl in &claims {
        let _ = writeln!(
            s,
            "  position {} (slot {}): {}, by pid {} {}",
            cl.position,
            cl.slot,
            cl.state,
            cl.pid,
            if cl.alive {
                "(alive: at work)"
            } else {
                "(dead: the next process to run into it recovers it)"
            }
        );
    }
    let procs = others(view, log);
    let alive = procs.iter().filter(|a| a.alive).count();
    let _ = writeln!(s, "processes ({} listed, {alive} alive)", procs.len());
    for a in &procs {
        let _ = writeln!(
            s,
            "  {:<8} {}",
            a.pid,
            if a.alive { "alive" } else { "dead" }
        );
    }
    s
}

fn stat_json(target: &Target, view: &Inspector, log: Option<&Log>, rates: Option<Rates>) -> String {
    let p = view.params();
    let c = view.counters();
    let procs = others(view, log);
    let mut o = Obj::new()
        .str("target", &target.to_string())
        .str("kind", kind_name(p.kind))
        .int("slot_size", p.slot_size)
        .int("slot_stride", p.slot_stride)
        .int("capacity", p.capacity)
        .int("flags", p.flags)
        .str("mode", &format!("{:04o}", p.mode))
        .int("total_size", p.total_size)
        .int("mapped_size", view.mapped_len() as u64)
        .int("creator_pid", p.creator_pid)
        .raw(
            "creator_alive",
            &view
                .creator_alive()
                .map_or("null".into(), |a| a.to_string()),
        )
        .int("created_unix_ns", p.created_unix_ns)
        .bool("closed", c.closed)
        .str("truncation", &target.protection().to_string())
        .raw(
            "backing_size",
            &backing_size(target).map_or("null".into(), |s| s.to_string()),
        );
    if let Some(e) = sysv_entry(target) {
        o = o.int("shmid", e.shmid).int("nattch", e.nattch);
    }
    let mut counters = Obj::new()
        .int("tail", c.tail)
        .int("head", c.head)
        .int("discarded", c.discarded)
        .int("tombstones", c.tombstones)
        .int("lagged", c.lagged)
        .int("dead_claims", c.dead_claims)
        .int("redelivered", c.redelivered);
    match p.kind {
        QueueKind::WorkQueue => {
            let q = view.queue_stats().expect("a work queue has queue stats");
            counters = counters
                .int("enqueued", q.enqueued)
                .int("dequeued", q.dequeued)
                .int("len", q.len);
            let scan = view.sleeping_slots().expect("a work queue has slots");
            o = o
                .int("sleeping_slots", scan.marked)
                .int("sleeping_slots_scanned", scan.scanned);
        }
        QueueKind::Log => {
            let st = log.expect("a log is opened for stat").stats();
            counters = counters
                .int("published", st.published)
                .int("next_seq", st.next_seq)
                .int("oldest", st.oldest);
            o = o
                .str("log_mode", log_mode_of(p.flags))
                .bool("single_publisher", single_publisher_of(p.flags))
                .int("cursor_capacity", st.cursor_capacity as u64)
                .raw("cursors", &cursors_json(&st));
        }
    }
    o = o.raw("counters", &counters.end());
    o = o.raw(
        "claims",
        &json::array(view.claims().iter().map(|cl| {
            Obj::new()
                .int("position", cl.position)
                .int("slot", cl.slot)
                .str("state", cl.state)
                .int("pid", cl.pid)
                .bool("alive", cl.alive)
                .end()
        })),
    );
    if let Some(r) = rates {
        o = o.raw(
            "rates",
            &Obj::new()
                .num("in_per_s", r.in_per_s)
                .num("out_per_s", r.out_per_s)
                .end(),
        );
    }
    let list = json::array(
        procs
            .iter()
            .map(|a| Obj::new().int("pid", a.pid).bool("alive", a.alive).end()),
    );
    o.raw("processes", &list).end()
}

/// The kind, with its mode.
fn kind_detail(view: &Inspector) -> String {
    let p = view.params();
    match p.kind {
        QueueKind::WorkQueue if p.flags & shmq::layout::QUEUE_FLAG_SPSC != 0 => {
            "queue (single producer, single consumer)".into()
        }
        QueueKind::WorkQueue => "queue".into(),
        QueueKind::Log if single_publisher_of(p.flags) => {
            format!("log ({}, single publisher)", log_mode_of(p.flags))
        }
        QueueKind::Log => format!("log ({})", log_mode_of(p.flags)),
    }
}

/// A cursor's owner: the pid and whether it is alive, or the subscriber
/// that died holding it (a named cursor keeps its position and gates).
fn owner_text(c: &shmq::CursorInfo) -> String {
    match (c.owner, c.dead_owner) {
        (Some(pid), _) => format!("{pid} {}", if c.owner_alive { "alive" } else { "dead" }),
        (None, Some(pid)) => format!("none: {pid} died holding it"),
        (None, None) => "-".into(),
    }
}

/// The cursor table as `stat` prints it.
fn cursors_text(st: &LogStats) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cursors ({} of {} entries in use)",
        st.cursors.len(),
        st.cursor_capacity
    );
    if st.cursors.is_empty() {
        return s;
    }
    let rows: Vec<[String; 5]> = st
        .cursors
        .iter()
        .map(|c| {
            [
                c.name
                    .as_deref()
                    .map_or_else(|| "(unnamed)".into(), |n| printable(n).into_owned()),
                c.position.to_string(),
                c.read.to_string(),
                c.lag.to_string(),
                owner_text(c),
            ]
        })
        .collect();
    let gating = (st.mode == shmq::LogMode::Reliable)
        .then(|| st.cursors.iter().min_by_key(|c| c.position))
        .flatten()
        .filter(|c| c.lag >= st.capacity);
    let head = ["NAME", "POSITION", "READ", "LAG", "OWNER"].map(String::from);
    let mut w = [0usize; 5];
    for r in std::iter::once(&head).chain(&rows) {
        for (i, v) in r.iter().enumerate() {
            w[i] = w[i].max(v.chars().count());
        }
    }
    for r in std::iter::once(&head).chain(&rows) {
        let _ = writeln!(
            s,
            "  {:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
    }
    if let Some(c) = gating {
        let _ = writeln!(
            s,
            "  publishers wait on {} (a full ring behind){}",
            c.name.as_deref().map_or_else(
                || "an unnamed subscriber".into(),
                |n| format!("cursor {:?}", printable(n))
            ),
            if c.name.is_some() && !c.owner_alive {
                ": resume it, or remove it with `shmq cursor rm`"
            } else {
                ""
            }
        );
    }
    s
}

fn cursors_json(st: &LogStats) -> String {
    json::array(st.cursors.iter().map(|c| {
        let o = match &c.name {
            Some(n) => Obj::new().str("name", n),
            None => Obj::new().raw("name", "null"),
        }
        .int("position", c.position)
        .int("read", c.read)
        .int("lag", c.lag);
        let o = match c.owner {
            Some(pid) => o.int("owner", pid).bool("owner_alive", c.owner_alive),
            None => o.raw("owner", "null"),
        };
        match c.dead_owner {
            Some(pid) => o.int("dead_owner", pid),
            None => o.raw("dead_owner", "null"),
        }
        .end()
    }))
}

/// `shmq stat`.
pub fn stat(target: &Target, watch: bool, count: Option<u64>, as_json: bool) -> anyhow::Result<()> {
    let view = Inspector::open(target)?;
    // A log's counters and cursors come from the log itself.
    let log = match view.params().kind {
        QueueKind::Log => Some(Log::open(target)?),
        QueueKind::WorkQueue => None,
    };
    let render = |rates: Option<Rates>| {
        if as_json {
            format!("{}\n", stat_json(target, &view, log.as_ref(), rates))
        } else {
            stat_text(target, &view, log.as_ref(), rates)
        }
    };
    let mut out = std::io::stdout();
    if !watch {
        return ignore_broken_pipe(out.write_all(render(None).as_bytes()));
    }
    signal::install();
    let clear = !as_json && std::io::IsTerminal::is_terminal(&out);
    let mut before = view.counters();
    let mut at = Instant::now();
    let mut shown = 0u64;
    let mut rates_now = None;
    loop {
        let mut text = render(rates_now);
        if clear {
            text.insert_str(0, "\x1b[H\x1b[2J");
        } else if !as_json && shown > 0 {
            text.insert(0, '\n');
        }
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            return ignore_broken_pipe(Err(e));
        }
        shown += 1;
        if count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        let next = at + Duration::from_secs(1);
        while Instant::now() < next {
            if signal::interrupted() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let after = view.counters();
        let now = Instant::now();
        rates_now = Some(rates(&before, &after, now.duration_since(at).as_secs_f64()));
        before = after;
        at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400 * 1_000_000_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            utc(1_700_000_000 * 1_000_000_000 + 5),
            "2023-11-14 22:13:20 UTC"
        );
    }
}
