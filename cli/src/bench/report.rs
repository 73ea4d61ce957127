//! The report of `shmq bench`: what was measured, as a table (with the
//! ratio to the raw limit of the same size and the spec's bars) or as one
//! JSON object per line.

use std::time::Instant;

use crate::json::{array, Obj};

/// What was measured.
#[derive(Clone, Copy, Debug)]
pub enum Measure {
    /// One-way latency percentiles, ns.
    Latency {
        samples: u64,
        p50: u64,
        p99: u64,
        p999: u64,
        max: u64,
    },
    /// Messages moved in `secs`.
    Throughput { messages: u64, secs: f64 },
    /// CPU time of a blocked consumer over `secs` of wall time.
    Idle { secs: f64, cpu_secs: f64 },
}

impl Measure {
    /// What the median of repeated runs is taken over.
    pub fn rank(&self) -> f64 {
        match *self {
            Measure::Latency { p50, .. } => p50 as f64,
            Measure::Throughput { messages, secs } => messages as f64 / secs,
            Measure::Idle { cpu_secs, .. } => cpu_secs,
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Row {
    /// The case's name (`raw-...` for the raw limits).
    pub case: String,
    /// Message size, bytes (0 when it does not apply).
    pub size: usize,
    /// Producer processes.
    pub producers: u32,
    /// Consumer processes.
    pub consumers: u32,
    /// The figures (of a paced fan-out case: each percentile's maximum
    /// over the subscribers, i.e. the worst subscriber's).
    pub m: Measure,
    /// A paced fan-out case's latency per subscriber (else empty).
    pub subs: Vec<Measure>,
    /// A paced fan-out case's subscriber CPU time per delivered message, ns.
    pub cpu_per_msg_ns: Option<f64>,
    /// A paced fan-out case's publisher: how late each publish returned
    /// after its due time. Every subscriber's latency includes it, so it
    /// is the floor the machine gave that run (a sleep that overshot, a
    /// stall of the publisher's CPU).
    pub feed_late: Option<Measure>,
    /// Processes of the case that keep a CPU busy (spinning or working
    /// flat out): more than the machine's CPUs means it is oversubscribed.
    pub busy: u32,
}

/// The machine's CPUs.
pub fn cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Bytes of a cache line, as the slot layout counts them.
const LINE: usize = 64;

/// Cache lines of the slot holding a `size`-byte payload (header included).
pub fn slot_lines(size: usize) -> usize {
    shmq::layout::slot_stride(size as u32) as usize / LINE
}

/// One line per message size on how a payload fills the slot: the slot
/// stride (16-byte header + payload, rounded up to whole 64-byte lines) and
/// whether it fits one cache line or takes more.
pub fn slot_layout(sizes: &[usize]) -> String {
    let header = shmq::layout::SLOT_HEADER_SIZE;
    let parts: Vec<String> = sizes
        .iter()
        .map(|&s| {
            let lines = slot_lines(s);
            format!(
                "{s} B -> {} B slot ({})",
                shmq::layout::slot_stride(s as u32),
                match lines {
                    1 => "one line".to_string(),
                    2 => "two lines".to_string(),
                    n => format!("{n} lines"),
                }
            )
        })
        .collect();
    format!(
        "slot layout ({header}-byte slot header, {LINE}-byte lines; payloads up to {} B fit one line): {}",
        LINE - header,
        parts.join(", ")
    )
}

/// A line naming the cases that ran more busy processes than there are
/// CPUs (their figures include waiting for a CPU), or None.
pub fn oversubscribed(rows: &[Row]) -> Option<String> {
    let cpus = cpus();
    let over: Vec<String> = rows
        .iter()
        .filter(|r| r.busy > cpus)
        .map(|r| format!("{} ({} busy)", r.case, r.busy))
        .collect();
    (!over.is_empty()).then(|| {
        format!(
            "oversubscribed: these cases keep more processes busy (spinning or flat out) than \
             the {cpus} CPUs, so their figures include waiting for a CPU: {}",
            over.join(", ")
        )
    })
}

impl Row {
    pub fn json(&self) -> String {
        let mut o = Obj::new()
            .str("case", &self.case)
            .int("size", self.size as u64)
            .int("producers", self.producers)
            .int("consumers", self.consumers);
        if self.size > 0 {
            o = o
                .int("slot_stride", shmq::layout::slot_stride(self.size as u32))
                .int("slot_lines", slot_lines(self.size) as u64);
        }
        o = o
            .int("busy_processes", self.busy)
            .bool("oversubscribed", self.busy > cpus());
        if !self.subs.is_empty() {
            o = o.raw(
                "subscribers",
                &array(self.subs.iter().map(|m| measure_json(Obj::new(), *m, 0))),
            );
        }
        if let Some(c) = self.cpu_per_msg_ns {
            o = o.num("cpu_ns_per_msg", c);
        }
        if let Some(m) = self.feed_late {
            o = o.raw("feed_late", &measure_json(Obj::new(), m, 0));
        }
        measure_json(o, self.m, self.size)
    }
}

/// `m`'s fields added to `o`, which is then ended.
fn measure_json(o: Obj, m: Measure, size: usize) -> String {
    {
        match m {
            Measure::Latency {
                samples,
                p50,
                p99,
                p999,
                max,
            } => o
                .int("samples", samples)
                .int("p50_ns", p50)
                .int("p99_ns", p99)
                .int("p999_ns", p999)
                .int("max_ns", max),
            Measure::Throughput { messages, secs } => o
                .int("messages", messages)
                .num("secs", secs)
                .num("msgs_per_s", (messages as f64 / secs).round())
                .num("mb_per_s", messages as f64 * size as f64 / secs / 1e6),
            Measure::Idle { secs, cpu_secs } => o
                .num("secs", secs)
                .num("cpu_secs", cpu_secs)
                .num("cpu_percent", cpu_secs / secs * 100.0),
        }
        .end()
    }
}

fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=999_999 => format!("{:.1} us", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// Messages per second of a throughput measurement.
fn rate_of(m: Measure) -> Option<f64> {
    match m {
        Measure::Throughput { messages, secs } if secs > 0.0 => Some(messages as f64 / secs),
        _ => None,
    }
}

/// The copying case a zero-copy or batch case is measured against.
fn copying_case(case: &str) -> Option<&str> {
    if let Some(base) = case.strip_suffix("-zerocopy") {
        return Some(base);
    }
    let (base, n) = case.rsplit_once("-batch")?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(base)
}

/// A zero-copy or batch case's rate over its copying case's (same size),
/// if both ran.
fn vs_copying(r: &Row, rows: &[Row]) -> Option<f64> {
    let base = copying_case(&r.case)?;
    let copying = rows.iter().find(|c| c.case == base && c.size == r.size)?;
    Some(rate_of(r.m)? / rate_of(copying.m)?)
}

/// The ratio column: against the raw case of the same kind and size.
fn ratio(row: &Row, rows: &[Row]) -> String {
    if row.case.starts_with("raw") {
        return "(limit)".into();
    }
    let raw = |name: &str| rows.iter().find(|r| r.case == name && r.size == row.size);
    if let Some(c) = row.cpu_per_msg_ns {
        let cpu = format!("CPU {} per msg", fmt_ns(c.round() as u64));
        return match row.feed_late {
            Some(Measure::Latency { p99, .. }) => format!("{cpu}, feed late p99 {}", fmt_ns(p99)),
            _ => cpu,
        };
    }
    // Zero-copy and batch cases: against the same case copying one by one.
    if copying_case(&row.case).is_some() {
        return vs_copying(row, rows).map_or("-".into(), |x| format!("{x:.2}x copying"));
    }
    // The log 1:1 cases: against the single-producer queue of the same size.
    if row.case.starts_with("log-") && row.case.ends_with("-spin") {
        let spsc = if row.case.contains("pingpong") {
            "queue-spsc-pingpong-spin"
        } else {
            "queue-spsc-stream-spin"
        };
        return match (row.m, raw(spsc).map(|r| r.m)) {
            (
                Measure::Latency { p50, p999, .. },
                Some(Measure::Latency {
                    p50: q50,
                    p999: q999,
                    ..
                }),
            ) if q50 > 0 && q999 > 0 => format!(
                "p50 {:.2}x  p99.9 {:.2}x spsc",
                p50 as f64 / q50 as f64,
                p999 as f64 / q999 as f64
            ),
            (
                Measure::Throughput { messages, secs },
                Some(Measure::Throughput {
                    messages: qm,
                    secs: qs,
                }),
            ) if qm > 0 => format!("{:.2}x spsc", (messages as f64 / secs) / (qm as f64 / qs)),
            _ => "-".into(),
        };
    }
    match row.m {
        Measure::Latency { p50, p999, .. } if row.case.contains("pingpong") => {
            match raw("raw-pingpong").map(|r| r.m) {
                Some(Measure::Latency {
                    p50: r50,
                    p999: r999,
                    ..
                }) if r50 > 0 && r999 > 0 => {
                    format!(
                        "p50 {:.2}x  p99.9 {:.2}x",
                        p50 as f64 / r50 as f64,
                        p999 as f64 / r999 as f64
                    )
                }
                _ => "-".into(),
            }
        }
        // One subscriber, the default wait: beside the single-producer
        // queue with the default wait, when it ran.
        Measure::Throughput { messages, secs }
            if row.case == "log-fanout-1sub" && raw("queue-spsc-stream-sleep").is_some() =>
        {
            match raw("queue-spsc-stream-sleep").and_then(|r| rate_of(r.m)) {
                Some(q) => format!("{:.2}x spsc", messages as f64 / secs / q),
                None => "-".into(),
            }
        }
        Measure::Throughput { messages, secs }
            if row.case.starts_with("log-fanout-") && row.case != "log-fanout-1sub" =>
        {
            // Fan-out: each subscriber's rate against one subscriber alone.
            match raw("log-fanout-1sub").map(|r| r.m) {
                Some(Measure::Throughput {
                    messages: om,
                    secs: os,
                }) if om > 0 => {
                    format!(
                        "{:.2}x of 1sub",
                        (messages as f64 / secs) / (om as f64 / os)
                    )
                }
                _ => "-".into(),
            }
        }
        Measure::Throughput { messages, secs } => match raw("raw-ring").map(|r| r.m) {
            Some(Measure::Throughput {
                messages: rm,
                secs: rs,
            }) if rm > 0 => {
                format!("{:.2}x", (messages as f64 / secs) / (rm as f64 / rs))
            }
            _ => "-".into(),
        },
        _ => "-".into(),
    }
}

pub fn table(rows: &[Row]) -> String {
    let head = [
        "case", "size", "p50", "p99", "p99.9", "max", "msgs/s", "MB/s", "vs raw",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let mut c = vec![
            r.case.clone(),
            if r.size > 0 {
                r.size.to_string()
            } else {
                "-".into()
            },
        ];
        match r.m {
            Measure::Latency {
                p50,
                p99,
                p999,
                max,
                ..
            } => {
                c.extend([
                    fmt_ns(p50),
                    fmt_ns(p99),
                    fmt_ns(p999),
                    fmt_ns(max),
                    "-".into(),
                    "-".into(),
                ]);
            }
            Measure::Throughput { messages, secs } => {
                let rate = messages as f64 / secs;
                c.extend([
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    fmt_rate(rate),
                ]);
                c.push(format!("{:.0}", rate * r.size as f64 / 1e6));
            }
            Measure::Idle { secs, cpu_secs } => {
                c.extend(std::iter::repeat_n("-".to_string(), 6));
                c.push(format!(
                    "{:.3}% of a core over {secs:.1} s",
                    cpu_secs / secs * 100.0
                ));
                cells.push(c);
                continue;
            }
        }
        c.push(ratio(r, rows));
        cells.push(c);
        // A paced fan-out case: then each subscriber's own latency.
        for (i, m) in r.subs.iter().enumerate() {
            if let Measure::Latency {
                p50,
                p99,
                p999,
                max,
                ..
            } = *m
            {
                cells.push(vec![
                    format!("  subscriber {}", i + 1),
                    String::new(),
                    fmt_ns(p50),
                    fmt_ns(p99),
                    fmt_ns(p999),
                    fmt_ns(max),
                    "-".into(),
                    "-".into(),
                    String::new(),
                ]);
            }
        }
    }
    let mut w = vec![0; head.len()];
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let mut out = String::new();
    for c in &cells {
        let mut line = String::new();
        for (i, s) in c.iter().enumerate() {
            if i == 0 || i + 1 == c.len() {
                line.push_str(&format!("{s:<width$}  ", width = w[i]));
            } else {
                line.push_str(&format!("{s:>width$}  ", width = w[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The spec's bars, checked against this run's 64-byte figures: the 1:1
/// bars with the single-producer/single-consumer queue, busy-spinning (the
/// raw limits busy-spin too), the multi-producer ring's ratios shown beside
/// them without a verdict; and issue 4's fan-out bar.
/// What [`bar_lines`] finds in a set of rows.
struct BarLines {
    /// One judged line per bar.
    lines: Vec<String>,
    /// Each line's figure as a number (a ratio, a percentage, nanoseconds),
    /// by the line's name.
    values: Vec<(String, f64)>,
    /// The multi-producer queue's 1:1 figures (no bar of their own).
    mpmc: Vec<String>,
}

/// The bar lines of `rows` (64-byte cases).
fn bar_lines(rows: &[Row]) -> BarLines {
    let find = |case: &str| {
        rows.iter()
            .find(|r| r.case == case && r.size == 64)
            .map(|r| r.m)
    };
    let rate = |m: Option<Measure>| match m {
        Some(Measure::Throughput { messages, secs }) if secs > 0.0 => Some(messages as f64 / secs),
        _ => None,
    };
    // (p50, p99.9) of a latency case over the raw ping-pong's.
    let vs_raw = |case: &str| match (find(case), find("raw-pingpong")) {
        (
            Some(Measure::Latency { p50, p999, .. }),
            Some(Measure::Latency {
                p50: r50,
                p999: r999,
                ..
            }),
        ) => Some((
            p50 as f64 / r50.max(1) as f64,
            p999 as f64 / r999.max(1) as f64,
        )),
        _ => None,
    };
    let vs_ring = |case: &str| Some(rate(find(case))? / rate(find("raw-ring"))?);
    let mut lines = Vec::new();
    let mut values = Vec::new();
    let mut line = |what: &str, v: f64, value: String, bar: &str, met: bool| {
        values.push((what.to_owned(), v));
        lines.push(format!(
            "  {what:<26} {value:<26} bar: {bar:<16} {}",
            if met { "met" } else { "MISSED" }
        ));
    };
    if let Some((a, b)) = vs_raw("queue-spsc-pingpong-spin") {
        line(
            "one-way latency p50",
            a,
            format!("{a:.2}x raw-pingpong"),
            "within 1.3x",
            a <= 1.3,
        );
        line(
            "one-way latency p99.9",
            b,
            format!("{b:.2}x raw-pingpong"),
            "within 3x",
            b <= 3.0,
        );
    }
    if let Some(r) = vs_ring("queue-spsc-stream-spin") {
        line(
            "throughput 1p1c",
            r,
            format!("{r:.2}x raw-ring"),
            "at least 0.5x",
            r >= 0.5,
        );
    }
    for r in rows.iter().filter(|r| r.case.ends_with("-idle-sleep")) {
        if let Measure::Idle { secs, cpu_secs } = r.m {
            let pct = cpu_secs / secs * 100.0;
            let mode = r
                .case
                .trim_start_matches("queue-")
                .trim_end_matches("-idle-sleep");
            line(
                &format!("idle consumer ({mode}), {secs:.0} s"),
                pct,
                format!("{pct:.3}% of a core"),
                "under 1%",
                pct < 1.0,
            );
        }
    }
    let fan = |n: u32| rate(find(&format!("log-fanout-{n}sub")));
    if let (Some(one), Some(four)) = (fan(1), fan(4)) {
        let r = four / one;
        line(
            "fan-out 1->4, per sub",
            r,
            format!("{r:.2}x of 1->1"),
            "at least 0.25x",
            r >= 0.25,
        );
    }
    // Issue 10's fan-out bars: the log 1:1 beside the single-producer queue
    // (the bar is for a single-publisher log; a multi-publisher one is
    // judged too, until the single one is available).
    let spsc_p50 = match find("queue-spsc-pingpong-spin") {
        Some(Measure::Latency { p50, .. }) => Some(p50),
        _ => None,
    };
    let spsc_rate = rate(find("queue-spsc-stream-spin"));
    for publishers in ["spub", "mpub"] {
        if let (Some(Measure::Latency { p50, .. }), Some(q)) =
            (find(&format!("log-{publishers}-pingpong-spin")), spsc_p50)
        {
            let r = p50 as f64 / q.max(1) as f64;
            line(
                &format!("log 1->1 ({publishers}) p50"),
                r,
                format!("{r:.2}x spsc queue"),
                "within 1.2x",
                r <= 1.2,
            );
        }
        if let (Some(l), Some(q)) = (
            rate(find(&format!("log-{publishers}-stream-spin"))),
            spsc_rate,
        ) {
            let r = l / q;
            line(
                &format!("log 1->1 ({publishers}) msgs/s"),
                r,
                format!("{r:.2}x spsc queue"),
                "at least 0.8x",
                r >= 0.8,
            );
        }
    }
    let mut paced_note = None;
    let p99 = |case: &str| match find(case) {
        Some(Measure::Latency { p99, .. }) => Some(p99),
        _ => None,
    };
    if let (Some(one), Some(four)) = (p99("log-paced-1sub-sleep"), p99("log-paced-4sub-sleep")) {
        let r = four as f64 / one.max(1) as f64;
        line(
            "paced, default wait, p99",
            r,
            format!("4 subs {r:.1}x 1 sub"),
            "at most 5x",
            r <= 5.0,
        );
        // The publisher's own lateness in the same two cases: what of the
        // subscribers' p99 the machine imposed before any subscriber ran.
        let late = |case: &str| {
            rows.iter()
                .find(|r| r.case == case && r.size == 64)
                .and_then(|r| match r.feed_late {
                    Some(Measure::Latency { p99, .. }) => Some(p99),
                    _ => None,
                })
        };
        if let (Some(l1), Some(l4)) = (late("log-paced-1sub-sleep"), late("log-paced-4sub-sleep")) {
            paced_note = Some(format!(
                "  {:<26} the publisher itself was late by p99 {} (1 sub) and {} (4 subs): \
                 every subscriber's latency includes it",
                "",
                fmt_ns(l1),
                fmt_ns(l4)
            ));
        }
    }
    // Issue 11's: zero-copy at 4096 bytes, batches of 32 at 64 bytes, on
    // the queue (the log's batch case is reported below the bars).
    for r in rows
        .iter()
        .filter(|r| copying_case(&r.case).is_some() && !r.case.starts_with("log-"))
    {
        if let Some(x) = vs_copying(r, rows) {
            let need = if r.case.contains("-mpmc-") { 2.0 } else { 1.5 };
            line(
                &r.case.replace("-stream-spin", ""),
                x,
                format!("{x:.2}x copying ({} B)", r.size),
                &format!("at least {need}x"),
                x >= need,
            );
        }
    }
    // Below the paced bar's line.
    if let Some(note) = paced_note {
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with("paced, default wait"))
            .map_or(lines.len(), |i| i + 1);
        lines.insert(at, note);
    }
    if let Some(c) = rows
        .iter()
        .find(|r| r.case == "log-paced-4sub-nospin" && r.size == 64)
        .and_then(|r| r.cpu_per_msg_ns)
    {
        values.push(("CPU/msg, 4 sleeping subs".to_owned(), c));
        lines.push(format!(
            "  {:<26} {:<26} bar: {:<16} reported",
            "CPU/msg, 4 sleeping subs",
            format!("{} per delivered msg", fmt_ns(c.round() as u64)),
            "halve it"
        ));
    }
    // The log's batch case, told without a verdict: issue 11's batch bars
    // are the queue's. A queue's batch saves mostly the consumer's store
    // of its index per message, which the log's single receive already
    // makes only once per cursor batch, so the log gains less from it.
    for r in rows
        .iter()
        .filter(|r| r.case.starts_with("log-") && copying_case(&r.case).is_some())
    {
        if let Some(x) = vs_copying(r, rows) {
            let what = r.case.replace("-stream-spin", "");
            lines.push(format!(
                "  {what:<26} {:<26} bar: {:<16} reported",
                format!("{x:.2}x copying ({} B)", r.size),
                "none (log)"
            ));
            values.push((what, x));
        }
    }
    // The multi-producer queue's 1:1 figures, told beside the bars.
    let mut mpmc = Vec::new();
    if let Some((a, b)) = vs_raw("queue-mpmc-pingpong-spin") {
        mpmc.push(format!("latency p50 {a:.2}x, p99.9 {b:.2}x raw-pingpong"));
    }
    if let Some(r) = vs_ring("queue-mpmc-stream-spin") {
        mpmc.push(format!("throughput {r:.2}x raw-ring"));
    }
    BarLines {
        lines,
        values,
        mpmc,
    }
}

/// The bars of `rows` (64-byte cases), each judged: `None` when no case
/// of a bar ran.
pub fn bars(rows: &[Row]) -> Option<String> {
    let BarLines { lines, mpmc, .. } = bar_lines(rows);
    if lines.is_empty() {
        return None;
    }
    let mut out = format!(
        "bars (64-byte messages; 1:1 bars: single-producer queue, busy-spin):\n{}\n",
        lines.join("\n")
    );
    if !mpmc.is_empty() {
        out.push_str(&format!(
            "  (multi-producer queue, same 1:1 cases: {})\n",
            mpmc.join("; ")
        ));
    }
    Some(out)
}

/// With several rounds (`--repeat`): each bar's figure taken within each
/// round, as median [min-max] over the rounds. A ratio of two cases run
/// side by side in one round is steadier than the ratio of their medians
/// when the machine's speed changes during the run. `None` with fewer than
/// two rounds or no bar.
pub fn round_figures(rounds: &[Vec<Row>]) -> Option<String> {
    if rounds.len() < 2 {
        return None;
    }
    let mut by_bar: Vec<(String, Vec<f64>)> = Vec::new();
    for round in rounds {
        for (what, v) in bar_lines(round).values {
            match by_bar.iter_mut().find(|(w, _)| *w == what) {
                Some((_, vs)) => vs.push(v),
                None => by_bar.push((what, vec![v])),
            }
        }
    }
    if by_bar.is_empty() {
        return None;
    }
    let mut out = format!(
        "the same figures within each of the {} rounds, median [min-max]:\n",
        rounds.len()
    );
    for (what, mut vs) in by_bar {
        vs.sort_by(f64::total_cmp);
        out.push_str(&format!(
            "  {what:<26} {:.2} [{:.2}-{:.2}] ({} rounds)\n",
            vs[vs.len() / 2],
            vs[0],
            vs[vs.len() - 1],
            vs.len()
        ));
    }
    Some(out)
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cpu}, {cpus} CPUs, Linux {}", kernel.trim())
}

/// CPU time used by the whole machine and by this run (this process and
/// its reaped children), to tell how much other processes competed.
pub struct CpuUse {
    machine: f64,
    ours: f64,
    at: Instant,
}

impl CpuUse {
    pub fn now() -> Option<CpuUse> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal: all but idle and iowait.
        let busy: u64 = ticks
            .iter()
            .take(8)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, v)| v)
            .sum();
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let rusage = |who| {
            // SAFETY: getrusage writes into the zeroed struct we own.
            let ru = unsafe {
                let mut ru: libc::rusage = std::mem::zeroed();
                libc::getrusage(who, &mut ru);
                ru
            };
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            tv(ru.ru_utime) + tv(ru.ru_stime)
        };
        Some(CpuUse {
            machine: busy as f64 / hz,
            ours: rusage(libc::RUSAGE_SELF) + rusage(libc::RUSAGE_CHILDREN),
            at: Instant::now(),
        })
    }

    /// How many CPUs other processes kept busy, on average, since `self`.
    pub fn others_since(&self) -> Option<f64> {
        let now = CpuUse::now()?;
        let secs = now.at.duration_since(self.at).as_secs_f64();
        (secs > 0.0)
            .then(|| ((now.machine - self.machine) - (now.ours - self.ours)).max(0.0) / secs)
    }
}

/// A line on how much other processes competed during the run.
pub fn contention_note(others: f64) -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut note = format!("other processes kept {others:.2} of {cpus} CPUs busy during the run");
    if others > 0.2 {
        note.push_str(
            "; busy-spinning cases (spin, raw) suffer most from that: \
             rerun on a quiet machine, or with --repeat",
        );
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each round's ratio, not the ratio of the medians: the spsc queue
    /// and the log swap speeds between rounds, and only the per-round
    /// figures see the log at half the queue's rate every time.
    #[test]
    fn round_figures_take_each_ratio_within_its_round() {
        let tput = |messages| Measure::Throughput {
            messages,
            secs: 1.0,
        };
        let round = |q, l| {
            vec![
                row("queue-spsc-stream-spin", tput(q)),
                row("log-spub-stream-spin", tput(l)),
            ]
        };
        let rounds = vec![
            round(100_000, 50_000),
            round(20_000, 10_000),
            round(60_000, 36_000),
        ];
        let f = round_figures(&rounds).unwrap();
        assert!(
            f.contains("log 1->1 (spub) msgs/s     0.50 [0.50-0.60] (3 rounds)"),
            "{f}"
        );
        assert_eq!(round_figures(&rounds[..1]), None);
        assert_eq!(round_figures(&[Vec::new(), Vec::new()]), None);
    }

    fn row(case: &str, m: Measure) -> Row {
        Row {
            case: case.into(),
            size: 64,
            producers: 1,
            consumers: 1,
            m,
            subs: Vec::new(),
            cpu_per_msg_ns: None,
            feed_late: None,
            busy: 2,
        }
    }

    fn lat(p50: u64, p999: u64) -> Measure {
        Measure::Latency {
            samples: 1000,
            p50,
            p99: p999,
            p999,
            max: p999,
        }
    }

    #[test]
    fn ratios_and_bars_compare_with_the_raw_case_of_the_same_size() {
        let tput = |messages| Measure::Throughput {
            messages,
            secs: 1.0,
        };
        let rows = vec![
            row("raw-pingpong", lat(100, 200)),
            row("queue-spsc-pingpong-spin", lat(120, 700)),
            row("queue-mpmc-pingpong-spin", lat(150, 400)),
            row("raw-ring", tput(100_000)),
            row("queue-spsc-stream-spin", tput(40_000)),
            row("queue-mpmc-stream-spin", tput(30_000)),
            Row {
                case: "queue-spsc-idle-sleep".into(),
                size: 0,
                producers: 1,
                consumers: 1,
                m: Measure::Idle {
                    secs: 10.0,
                    cpu_secs: 0.01,
                },
                subs: Vec::new(),
                cpu_per_msg_ns: None,
                feed_late: None,
                busy: 0,
            },
            row("log-fanout-1sub", tput(80_000)),
            row("log-fanout-4sub", tput(16_000)),
        ];
        assert_eq!(ratio(&rows[0], &rows), "(limit)");
        assert_eq!(ratio(&rows[1], &rows), "p50 1.20x  p99.9 3.50x");
        assert_eq!(ratio(&rows[4], &rows), "0.40x");
        assert_eq!(ratio(&rows[7], &rows), "0.80x");
        assert_eq!(ratio(&rows[8], &rows), "0.20x of 1sub");
        let b = bars(&rows).unwrap();
        let verdicts: Vec<&str> = b
            .lines()
            .skip(1)
            .filter(|l| l.contains("bar:"))
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect();
        // The 1:1 bars judge the single-producer cases, not the multi-producer ones.
        assert_eq!(
            verdicts,
            ["met", "MISSED", "MISSED", "met", "MISSED"],
            "{b}"
        );
        assert!(b.contains("0.20x of 1->1"), "{b}");
        assert!(
            b.contains("multi-producer queue, same 1:1 cases: latency p50 1.50x, p99.9 2.00x raw-pingpong; throughput 0.30x raw-ring"),
            "{b}"
        );
        let t = table(&rows);
        assert!(t.lines().nth(5).unwrap().contains("40.0 k"), "{t}");
        assert!(t.contains("0.100% of a core over 10.0 s"), "{t}");
        assert!(rows[1].json().contains(r#""p50_ns":120,"#));
        assert!(rows[4].json().contains(r#""msgs_per_s":40000,"#));
    }

    #[test]
    fn fanout_rows_compare_with_the_spsc_queue_and_name_oversubscription() {
        let tput = |messages| Measure::Throughput {
            messages,
            secs: 1.0,
        };
        let mut paced = row("log-paced-4sub-nospin", lat(5_000, 40_000));
        paced.subs = vec![lat(4_000, 30_000), lat(5_000, 40_000)];
        paced.cpu_per_msg_ns = Some(1500.0);
        paced.feed_late = Some(lat(2_000, 9_000));
        paced.busy = 1;
        let mut fan4 = row("log-fanout-4sub", tput(10_000));
        fan4.busy = 5;
        let rows = vec![
            row("queue-spsc-pingpong-spin", lat(100, 300)),
            row("queue-spsc-stream-spin", tput(50_000)),
            row("log-mpub-pingpong-spin", lat(150, 600)),
            row("log-mpub-stream-spin", tput(40_000)),
            row("log-spub-stream-spin", tput(45_000)),
            row("queue-spsc-stream-spin-batch32", tput(100_000)),
            paced,
            fan4,
            row("log-spub-stream-spin-batch32", tput(54_000)),
        ];
        assert_eq!(ratio(&rows[2], &rows), "p50 1.50x  p99.9 2.00x spsc");
        assert_eq!(ratio(&rows[3], &rows), "0.80x spsc");
        assert_eq!(ratio(&rows[5], &rows), "2.00x copying");
        assert_eq!(
            ratio(&rows[6], &rows),
            "CPU 1500 ns per msg, feed late p99 9000 ns"
        );
        assert!(rows[6].json().contains(r#""feed_late":{"samples":"#));
        assert_eq!(ratio(&rows[4], &rows), "0.90x spsc");
        let t = table(&rows);
        // Each subscriber of the paced case on its own line.
        assert!(t.contains("  subscriber 2"), "{t}");
        assert!(rows[6].json().contains(r#""cpu_ns_per_msg":1500"#));
        assert!(rows[6].json().contains(r#""subscribers":[{"samples":1000"#));
        // 64-byte payloads take two lines.
        assert!(rows[0]
            .json()
            .contains(r#""slot_stride":128,"slot_lines":2"#));
        let b = bars(&rows).unwrap();
        assert!(
            b.contains("log 1->1 (mpub) p50        1.50x spsc queue"),
            "{b}"
        );
        assert!(b.contains("CPU/msg, 4 sleeping subs"), "{b}");
        assert!(b.contains("queue-spsc-batch32"), "{b}");
        // The log's batch case is told without a verdict (1.20x < 1.5x).
        assert!(
            b.contains("log-spub-batch32           1.20x copying (64 B)       bar: none (log)       reported"),
            "{b}"
        );
        let o = oversubscribed(&rows).unwrap_or_default();
        if cpus() < 5 {
            assert!(o.contains("log-fanout-4sub (5 busy)"), "{o}");
        }
        assert!(!o.contains("paced"), "{o}");
        assert_eq!(
            slot_layout(&[48, 64]),
            "slot layout (16-byte slot header, 64-byte lines; payloads up to 48 B fit one \
             line): 48 B -> 64 B slot (one line), 64 B -> 128 B slot (two lines)"
        );
    }

    #[test]
    fn the_paced_bar_tells_how_late_the_publisher_itself_was() {
        let paced = |case: &str, p99: u64, late99: u64| {
            let mut r = row(case, lat(10_000, p99));
            r.cpu_per_msg_ns = Some(2_000.0);
            r.feed_late = Some(lat(1_000, late99));
            r
        };
        let rows = vec![
            paced("log-paced-1sub-sleep", 40_000, 30_000),
            paced("log-paced-4sub-sleep", 400_000, 350_000),
        ];
        let b = bars(&rows).unwrap();
        assert!(b.contains("4 subs 10.0x 1 sub"), "{b}");
        assert!(
            b.contains(
                "the publisher itself was late by p99 30.0 us (1 sub) and 350.0 us (4 subs)"
            ),
            "{b}"
        );
        // Without the publisher's figures (an older child), no such line.
        let mut bare = rows.clone();
        bare.iter_mut().for_each(|r| r.feed_late = None);
        assert!(!bars(&bare).unwrap().contains("itself was late"));
    }

    #[test]
    fn formats_durations_and_rates() {
        assert_eq!(fmt_ns(999), "999 ns");
        assert_eq!(fmt_ns(12_345), "12.3 us");
        assert_eq!(fmt_ns(2_500_000), "2.5 ms");
        assert_eq!(fmt_rate(2_500_000.0), "2.50 M");
        assert_eq!(fmt_rate(950.0), "950");
    }
}
