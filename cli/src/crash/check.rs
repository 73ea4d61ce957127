//! The invariant checks of one round, from the ledgers of every child
//! incarnation and the parent's list of kills.
//!
//! What each count means:
//! - `torn`, `wrong_length`: receives whose bytes are not exactly the
//!   message their id names (see [`super::ledger`]).
//! - `phantom`: a well-formed message that no producer of the round sent:
//!   an unknown incarnation, a sequence number at or beyond the last
//!   acknowledged one plus the batch size `B` (a producer killed mid-send
//!   may or may not have sent the messages of its last call, at most `B`,
//!   or be killed while acknowledging them; nothing after them exists), or,
//!   in a log, a message at a sequence number that its publisher was told
//!   holds another message.
//! - `duplicates`: a queue message recorded by two receives, unless the
//!   rules below excuse the second; a log message read again by a named
//!   cursor below a commit recorded earlier.
//! - `redelivered_allowed`: re-reads that the rules allow: a reliable log's
//!   named cursor re-reading what was read but not committed before its
//!   subscriber was killed. For queues: messages that arrived after later
//!   messages of the same producer, which is how a message whose consumer
//!   was killed before its dequeue freed its slot is delivered again (it is
//!   republished at the end of the ring); at most `B` per MPMC consumer
//!   kill. With batch receives (`B > 1`) a consumer records each message
//!   inside the call and a `BatchEnd` after it returns, so a killed
//!   consumer may have recorded messages that are delivered again: on an
//!   SPSC queue the whole unfinished batch (its `head` store never
//!   happened), on an MPMC queue only the last one it recorded (each slot is
//!   freed right after the callback). A second copy of exactly those is
//!   allowed (counted here, once per message); any other copy is a duplicate.
//! - `losses`: acknowledged messages never received (queues: by anyone;
//!   reliable log: by each cursor; overwrite log: skipped without a
//!   `Lagged(n)` saying so), minus `in_hand`.
//! - `in_hand`: queue messages missing because the consumer holding them was
//!   killed after its dequeue returned and before it recorded them. Each
//!   consumer kill excuses at most one missing message that was sent before
//!   it (the sender's previous acknowledgement precedes the kill). A batch
//!   receive records inside the call, before the slot is freed, so with
//!   `B > 1` nothing is ever in hand and no missing message is excused.
//! - `order`: FIFO broken (per producer incarnation and consumer for queues,
//!   per subscriber incarnation for logs), or a producer ledger out of sequence.
//! - recovery: per kill, from the kill (or, when the killed process had a
//!   role no one else could take over, from its replacement's start) to the
//!   first acknowledged send and the first receive after it (the later of
//!   the two). `lap`: to a full ring of sends and receives after it, which
//!   proves the slot a dead process was touching has been passed.
//!
//! Loss checks need a finished drain: a round that stalled is checked for
//! everything else only.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::ledger::{self, Record, Tag};
use super::{KindArg, RoleArg};

/// The ledger of one child incarnation.
pub struct Inc {
    /// Producer (publisher) or consumer (subscriber).
    pub role: RoleArg,
    /// Which subscriber (cursor) it plays, for logs.
    pub slot: usize,
    /// Its incarnation number.
    pub inc: u32,
    /// What it recorded.
    pub records: Vec<Record>,
}

/// One SIGKILL sent by the campaign.
pub struct Kill {
    /// When (CLOCK_MONOTONIC ns, just before kill(2)).
    pub ts: u64,
    /// The victim's role.
    pub role: RoleArg,
    /// The victim's incarnation, if known.
    pub victim: Option<u32>,
    /// Whether no other process could take over the victim's work (so
    /// recovery is timed from its replacement's start).
    pub sole: bool,
    /// The replacement's incarnation.
    pub replacement: Option<u32>,
}

/// Everything one round left behind.
pub struct RoundInput {
    /// The kind of queue or log.
    pub kind: KindArg,
    /// Ring capacity.
    pub capacity: u64,
    /// Messages per send or receive call (1: single calls).
    pub batch: u64,
    /// Every incarnation, in spawn order.
    pub incs: Vec<Inc>,
    /// Every kill, in order.
    pub kills: Vec<Kill>,
    /// Whether close and drain completed (loss checks apply).
    pub complete: bool,
}

/// The counts of one kind, summed over rounds.
#[derive(Default, Debug)]
pub struct Tally {
    pub messages: u64,
    pub received: u64,
    pub torn: u64,
    pub wrong_length: u64,
    pub phantom: u64,
    pub duplicates: u64,
    pub redelivered_allowed: u64,
    pub losses: u64,
    pub in_hand: u64,
    pub order: u64,
    pub lagged: u64,
    pub unrecovered: u64,
    /// Recovery latencies in ns.
    pub recovery: Vec<u64>,
    /// Lap recovery latencies in ns.
    pub lap: Vec<u64>,
    /// The slowest recoveries: (ns, description), longest first.
    pub slowest: Vec<(u64, String)>,
    /// The first few problems, described.
    pub problems: Vec<String>,
}

impl Tally {
    fn problem(&mut self, round: u32, what: String) {
        if self.problems.len() < 20 {
            self.problems.push(format!("round {round}: {what}"));
        }
    }
}

/// What the producers say they sent.
struct Sent {
    /// Acknowledged messages per producer incarnation (seqs `0..n`).
    acked: HashMap<u32, u64>,
    /// How many messages one send call takes: a killed producer may have
    /// sent up to this many after its last acknowledgement.
    in_flight: u64,
    /// When each acknowledgement was recorded.
    ack_ts: HashMap<u64, u64>,
    /// When each producer incarnation began.
    begin: HashMap<u32, u64>,
    /// Logs: sequence number -> message id.
    at: BTreeMap<u64, u64>,
}

/// Whether a received id was sent.
#[derive(PartialEq, Eq)]
enum Known {
    Acked,
    /// One of the `in_flight` messages after the last acknowledged one: its
    /// sender may have been killed after sending it and before recording.
    Unacked,
    Phantom,
}

impl Sent {
    fn known(&self, id: u64) -> Known {
        match self.acked.get(&ledger::inc_of(id)) {
            Some(&n) if ledger::seq_of(id) < n => Known::Acked,
            Some(&n) if ledger::seq_of(id) - n < self.in_flight => Known::Unacked,
            _ => Known::Phantom,
        }
    }
}

/// Checks one round and adds its counts to `t`.
pub fn analyse(round: u32, r: &RoundInput, t: &mut Tally) {
    let is_log = matches!(
        r.kind,
        KindArg::LogReliable | KindArg::LogOverwrite | KindArg::LogSingle
    );
    let mut sent = Sent {
        acked: HashMap::new(),
        in_flight: r.batch.max(1),
        ack_ts: HashMap::new(),
        begin: HashMap::new(),
        at: BTreeMap::new(),
    };
    for p in r.incs.iter().filter(|i| i.role == RoleArg::Producer) {
        let mut next = 0;
        for rec in &p.records {
            match rec.tag {
                Tag::Begin => {
                    sent.begin.insert(p.inc, rec.ts);
                }
                Tag::Ack => {
                    if rec.id != ledger::id(p.inc, next) {
                        t.order += 1;
                        t.problem(
                            round,
                            format!("producer {} acked {:#x} out of sequence", p.inc, rec.id),
                        );
                    }
                    next += 1;
                    sent.ack_ts.insert(rec.id, rec.ts);
                    if is_log {
                        if let Some(other) = sent.at.insert(rec.pos, rec.id) {
                            t.duplicates += 1;
                            t.problem(
                                round,
                                format!(
                                    "sequence number {} given to {other:#x} and {:#x}",
                                    rec.pos, rec.id
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        sent.acked.insert(p.inc, next);
        t.messages += next;
    }
    for c in r.incs.iter().filter(|i| i.role == RoleArg::Consumer) {
        for rec in &c.records {
            match rec.tag {
                Tag::Recv => t.received += 1,
                Tag::BadLength => {
                    t.wrong_length += 1;
                    t.problem(
                        round,
                        format!(
                            "consumer {} got {:#x} with wrong length {}",
                            c.inc, rec.id, rec.len
                        ),
                    );
                }
                Tag::BadData => {
                    t.torn += 1;
                    t.problem(
                        round,
                        format!(
                            "consumer {} got {:#x} torn ({} bytes)",
                            c.inc, rec.id, rec.len
                        ),
                    );
                }
                Tag::Lag => t.lagged += rec.id,
                _ => {}
            }
        }
    }
    match r.kind {
        KindArg::Mpmc | KindArg::Spsc => check_queue(round, r, &sent, t),
        KindArg::LogReliable | KindArg::LogSingle => check_reliable(round, r, &sent, t),
        KindArg::LogOverwrite => check_overwrite(round, r, &sent, t),
    }
    recovery(round, r, &sent, t);
}

/// Batch receives: the messages that killed consumer incarnations recorded
/// and that may be delivered again, with how many extra copies each may
/// have: on SPSC every `Recv` after the incarnation's last `BatchEnd` (its
/// unfinished call never stored `head`), on MPMC only the last of them (the
/// ones before were freed after their callback returned).
fn may_repeat(r: &RoundInput) -> HashMap<u64, u32> {
    let mut out = HashMap::new();
    if r.batch <= 1 {
        return out;
    }
    let killed: HashSet<u32> = r
        .kills
        .iter()
        .filter(|k| k.role == RoleArg::Consumer)
        .filter_map(|k| k.victim)
        .collect();
    for c in r
        .incs
        .iter()
        .filter(|i| i.role == RoleArg::Consumer && killed.contains(&i.inc))
    {
        let open = c
            .records
            .iter()
            .rposition(|rec| rec.tag == Tag::BatchEnd)
            .map_or(0, |i| i + 1);
        let tail = &c.records[open..];
        let tail = match r.kind {
            KindArg::Mpmc => &tail[tail.len().saturating_sub(1)..],
            _ => tail,
        };
        for rec in tail.iter().filter(|rec| rec.tag == Tag::Recv) {
            *out.entry(rec.id).or_default() += 1;
        }
    }
    out
}

fn check_queue(round: u32, r: &RoundInput, sent: &Sent, t: &mut Tally) {
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let consumer_kills = r
        .kills
        .iter()
        .filter(|k| k.role == RoleArg::Consumer)
        .count() as u64;
    // A redelivered message arrives late; each consumer kill orphans at most
    // one call's messages (a batch of up to `r.batch`).
    let mut late_allowed = if r.kind == KindArg::Mpmc {
        consumer_kills * r.batch.max(1)
    } else {
        0
    };
    let repeat = may_repeat(r);
    for c in r.incs.iter().filter(|i| i.role == RoleArg::Consumer) {
        let mut last: HashMap<u32, u64> = HashMap::new();
        for rec in c.records.iter().filter(|r| r.tag == Tag::Recv) {
            let (inc, seq) = (ledger::inc_of(rec.id), ledger::seq_of(rec.id));
            if sent.known(rec.id) == Known::Phantom {
                t.phantom += 1;
                t.problem(
                    round,
                    format!("consumer {} got {inc}/{seq}, never sent", c.inc),
                );
                continue;
            }
            match last.get(&inc) {
                Some(&l) if seq <= l && late_allowed > 0 => {
                    late_allowed -= 1;
                    // A copy of one the killed consumer recorded is counted below.
                    if !repeat.contains_key(&rec.id) {
                        t.redelivered_allowed += 1;
                    }
                }
                Some(&l) if seq <= l => {
                    t.order += 1;
                    t.problem(
                        round,
                        format!("consumer {} got {inc}/{seq} after {inc}/{l}", c.inc),
                    );
                }
                _ => {
                    last.insert(inc, seq);
                }
            }
            *seen.entry(rec.id).or_default() += 1;
        }
    }
    for (&id, &n) in &seen {
        if n > 1 {
            let excused = (n - 1).min(repeat.get(&id).copied().unwrap_or(0));
            t.redelivered_allowed += u64::from(excused);
            let extra = n - 1 - excused;
            if extra > 0 {
                t.duplicates += u64::from(extra);
                let (inc, seq) = (ledger::inc_of(id), ledger::seq_of(id));
                let why = if excused > 0 {
                    format!(" ({excused} more allowed: recorded mid-batch by a killed consumer)")
                } else {
                    String::new()
                };
                t.problem(round, format!("{inc}/{seq} received {n} times{why}"));
            }
        }
    }
    if !r.complete {
        return;
    }
    // Missing messages, each with the earliest time it can have been dequeued.
    let mut missing: Vec<(u64, u64)> = Vec::new();
    for (&inc, &n) in &sent.acked {
        for seq in 0..n {
            let id = ledger::id(inc, seq);
            if !seen.contains_key(&id) {
                let earliest = if seq == 0 {
                    sent.begin.get(&inc).copied().unwrap_or(0)
                } else {
                    sent.ack_ts
                        .get(&ledger::id(inc, seq - 1))
                        .copied()
                        .unwrap_or(0)
                };
                missing.push((earliest, id));
            }
        }
    }
    // Each consumer kill excuses one message in hand sent before it. The
    // kills that can excuse a message form an upward-closed set, so taking
    // the most constrained message first and any kill after it is optimal.
    // Batch receives record inside the call: nothing is ever in hand.
    let mut kills: Vec<u64> = r
        .kills
        .iter()
        .filter(|k| k.role == RoleArg::Consumer && r.batch <= 1)
        .map(|k| k.ts)
        .collect();
    kills.sort_unstable();
    missing.sort_unstable_by(|a, b| b.cmp(a));
    for (earliest, id) in missing {
        if kills.last().is_some_and(|&k| k > earliest) {
            kills.pop();
            t.in_hand += 1;
        } else {
            t.losses += 1;
            let (inc, seq) = (ledger::inc_of(id), ledger::seq_of(id));
            t.problem(round, format!("{inc}/{seq} acknowledged, never received"));
        }
    }
}

/// Checks that log position `pos` holds message `id`; learns the unacked
/// last messages of killed publishers. False for a phantom.
fn check_at(sent: &Sent, unacked: &mut HashMap<u64, u64>, pos: u64, id: u64) -> bool {
    match sent.at.get(&pos) {
        Some(&want) => want == id,
        None => sent.known(id) == Known::Unacked && *unacked.entry(pos).or_insert(id) == id,
    }
}

fn check_reliable(round: u32, r: &RoundInput, sent: &Sent, t: &mut Tally) {
    let mut unacked = HashMap::new();
    let slots: HashSet<usize> = r
        .incs
        .iter()
        .filter(|i| i.role == RoleArg::Consumer)
        .map(|i| i.slot)
        .collect();
    for slot in slots {
        let mut received: HashSet<u64> = HashSet::new();
        // The highest commit recorded so far on this cursor.
        let mut committed = 0;
        for c in r
            .incs
            .iter()
            .filter(|i| i.role == RoleArg::Consumer && i.slot == slot)
        {
            let mut last: Option<u64> = None;
            for rec in &c.records {
                match rec.tag {
                    Tag::Recv => {
                        if !check_at(sent, &mut unacked, rec.pos, rec.id) {
                            t.phantom += 1;
                            t.problem(
                                round,
                                format!(
                                    "cursor c{slot} read {:#x} at {}: not what was published there",
                                    rec.id, rec.pos
                                ),
                            );
                        }
                        if last.is_some_and(|l| rec.pos <= l) {
                            t.order += 1;
                            t.problem(
                                round,
                                format!(
                                    "cursor c{slot} (incarnation {}) read {} after {}",
                                    c.inc,
                                    rec.pos,
                                    last.unwrap_or(0)
                                ),
                            );
                        }
                        last = Some(rec.pos);
                        if !received.insert(rec.pos) {
                            if rec.pos < committed {
                                t.duplicates += 1;
                                t.problem(
                                    round,
                                    format!(
                                        "cursor c{slot} re-read {} below its commit {committed}",
                                        rec.pos
                                    ),
                                );
                            } else {
                                t.redelivered_allowed += 1;
                            }
                        }
                    }
                    Tag::Commit => {
                        if rec.pos < committed {
                            t.order += 1;
                            t.problem(
                                round,
                                format!(
                                    "cursor c{slot} commit went back from {committed} to {}",
                                    rec.pos
                                ),
                            );
                        }
                        committed = committed.max(rec.pos);
                    }
                    Tag::Lag => {
                        t.losses += rec.id;
                        t.problem(round, format!("reliable cursor c{slot} lagged {}", rec.id));
                    }
                    _ => {}
                }
            }
        }
        if r.complete {
            let lost: Vec<u64> = sent
                .at
                .keys()
                .filter(|p| !received.contains(p))
                .copied()
                .collect();
            if let Some(first) = lost.first() {
                t.losses += lost.len() as u64;
                t.problem(
                    round,
                    format!(
                        "cursor c{slot} never read {} published messages (first: {first})",
                        lost.len()
                    ),
                );
            }
        }
    }
}

fn check_overwrite(round: u32, r: &RoundInput, sent: &Sent, t: &mut Tally) {
    let mut unacked = HashMap::new();
    for c in r.incs.iter().filter(|i| i.role == RoleArg::Consumer) {
        // The next position this subscriber owes an account of, and the
        // losses it was told of since its last message.
        let mut from: Option<u64> = None;
        let mut told = 0u64;
        let gap = |from: u64, to: u64, told: u64, t: &mut Tally| {
            let skipped = sent.at.range(from..to.max(from)).count() as u64;
            if skipped > told {
                t.losses += skipped - told;
                t.problem(
                    round,
                    format!(
                        "subscriber {} skipped {} messages in {from}..{to}, told of {told}",
                        c.inc,
                        skipped - told
                    ),
                );
            }
        };
        for rec in &c.records {
            match rec.tag {
                Tag::Start => from = Some(rec.pos),
                Tag::Lag => told += rec.id,
                Tag::Recv => {
                    if !check_at(sent, &mut unacked, rec.pos, rec.id) {
                        t.phantom += 1;
                        t.problem(
                            round,
                            format!(
                                "subscriber {} read {:#x} at {}: not what was published there",
                                c.inc, rec.id, rec.pos
                            ),
                        );
                    }
                    let f = from.unwrap_or(rec.pos);
                    if rec.pos < f {
                        t.order += 1;
                        t.problem(
                            round,
                            format!("subscriber {} read {} after {}", c.inc, rec.pos, f),
                        );
                    } else {
                        gap(f, rec.pos, told, t);
                    }
                    from = Some(rec.pos + 1);
                    told = 0;
                }
                Tag::Closed if r.complete => {
                    if let Some(f) = from {
                        gap(f, rec.pos, told, t);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The `nth` (1-based) timestamp after `t0` in sorted `v`.
fn nth_after(v: &[u64], t0: u64, nth: usize) -> Option<u64> {
    v.get(v.partition_point(|&x| x <= t0) + nth - 1).copied()
}

fn recovery(round: u32, r: &RoundInput, sent: &Sent, t: &mut Tally) {
    let mut sends: Vec<u64> = sent.ack_ts.values().copied().collect();
    sends.sort_unstable();
    let mut recvs: Vec<u64> = r
        .incs
        .iter()
        .filter(|i| i.role == RoleArg::Consumer)
        .flat_map(|i| i.records.iter())
        .filter(|rec| rec.tag.is_progress())
        .map(|rec| rec.ts)
        .collect();
    recvs.sort_unstable();
    let began: HashMap<u32, u64> = r
        .incs
        .iter()
        .filter_map(|i| i.records.first().map(|rec| (i.inc, rec.ts)))
        .collect();
    let lap = r.capacity as usize;
    for k in &r.kills {
        let t0 = if k.sole {
            k.replacement.and_then(|inc| began.get(&inc).copied())
        } else {
            Some(k.ts)
        };
        let Some(t0) = t0 else {
            t.unrecovered += 1;
            continue;
        };
        match (nth_after(&sends, t0, 1), nth_after(&recvs, t0, 1)) {
            (Some(a), Some(b)) => {
                let d = a.max(b) - t0;
                t.recovery.push(d);
                t.slowest.push((
                    d,
                    format!(
                        "round {round}: {} killed{}: first send after {:.2} ms, first receive after {:.2} ms",
                        if k.role == RoleArg::Producer { "producer" } else { "consumer" },
                        if k.sole { " (timed from its replacement's start)" } else { "" },
                        (a - t0) as f64 / 1e6,
                        (b - t0) as f64 / 1e6
                    ),
                ));
                t.slowest.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
                t.slowest.truncate(5);
            }
            _ => {
                t.unrecovered += 1;
                continue;
            }
        }
        if let (Some(a), Some(b)) = (nth_after(&sends, t0, lap), nth_after(&recvs, t0, lap)) {
            t.lap.push(a.max(b) - t0);
        }
    }
}

/// The `q` quantile of `v` (sorted in place), in milliseconds.
pub fn quantile_ms(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tag: Tag, id: u64, pos: u64, ts: u64) -> Record {
        Record {
            tag,
            len: 0,
            id,
            pos,
            ts,
        }
    }

    fn inc(role: RoleArg, slot: usize, inc: u32, records: Vec<Record>) -> Inc {
        Inc {
            role,
            slot,
            inc,
            records,
        }
    }

    /// Producer 1 acknowledges seqs 0..n (at ts 10, 20, ...; log positions = seq).
    fn producer(n: u64) -> Inc {
        let mut r = vec![rec(Tag::Begin, 0, 0, 1)];
        r.extend((0..n).map(|s| rec(Tag::Ack, ledger::id(1, s), s, 10 * (s + 1))));
        inc(RoleArg::Producer, 0, 1, r)
    }

    fn queue_round(consumers: Vec<Vec<u64>>, kills: &[u64]) -> Tally {
        let mut incs = vec![producer(4)];
        for (i, seqs) in consumers.into_iter().enumerate() {
            let r = seqs
                .into_iter()
                .map(|s| rec(Tag::Recv, ledger::id(1, s), 0, 100 + s))
                .collect();
            incs.push(inc(RoleArg::Consumer, i, 2 + i as u32, r));
        }
        let kills = kills.iter().map(|&ts| consumer_kill(ts, None)).collect();
        check_round(KindArg::Mpmc, 4, 1, incs, kills)
    }

    /// A kill of a consumer (of incarnation `victim`, if known) at `ts`.
    fn consumer_kill(ts: u64, victim: Option<u32>) -> Kill {
        Kill {
            ts,
            role: RoleArg::Consumer,
            victim,
            sole: false,
            replacement: None,
        }
    }

    /// The tally of one complete round.
    fn check_round(
        kind: KindArg,
        capacity: u64,
        batch: u64,
        incs: Vec<Inc>,
        kills: Vec<Kill>,
    ) -> Tally {
        let input = RoundInput {
            kind,
            capacity,
            batch,
            incs,
            kills,
            complete: true,
        };
        let mut t = Tally::default();
        analyse(0, &input, &mut t);
        t
    }

    #[test]
    fn a_clean_queue_round_passes() {
        let t = queue_round(vec![vec![0, 2], vec![1, 3]], &[]);
        assert_eq!((t.messages, t.received), (4, 4));
        assert_eq!((t.losses, t.duplicates, t.order, t.phantom), (0, 0, 0, 0));
    }

    #[test]
    fn queue_violations_are_counted() {
        let t = queue_round(vec![vec![0, 2, 1], vec![2, 5]], &[]);
        assert_eq!(t.duplicates, 1, "2 twice");
        assert_eq!(t.order, 1, "1 after 2 on one consumer");
        assert_eq!(t.phantom, 1, "5 was never sent (4 might have been)");
        assert_eq!(t.losses, 1, "3 is missing and no consumer was killed");
    }

    #[test]
    fn a_consumer_kill_excuses_one_message_sent_before_it() {
        // 3 (sent after the ack of 2 at ts 30) is missing; a kill at 35 excuses it.
        let t = queue_round(vec![vec![0, 1, 2]], &[35]);
        assert_eq!((t.in_hand, t.losses), (1, 0));
        // A kill before the message could exist does not.
        let t = queue_round(vec![vec![0, 1, 2]], &[25]);
        assert_eq!((t.in_hand, t.losses), (0, 1));
        // One kill excuses one message only.
        let t = queue_round(vec![vec![0, 1]], &[35]);
        assert_eq!((t.in_hand, t.losses), (1, 1));
    }

    /// A consumer incarnation's batch receives: each inner list is one call
    /// (its `Recv`s, then a `BatchEnd`); `open` is a last call cut short by
    /// a kill (its `Recv`s, no `BatchEnd`).
    fn batch_consumer(inc_no: u32, calls: &[&[u64]], open: &[u64]) -> Inc {
        let mut r = vec![rec(Tag::Begin, 0, 0, 1)];
        for call in calls {
            r.extend(
                call.iter()
                    .map(|&s| rec(Tag::Recv, ledger::id(1, s), 0, 100 + s)),
            );
            r.push(rec(Tag::BatchEnd, call.len() as u64, 0, 200));
        }
        r.extend(
            open.iter()
                .map(|&s| rec(Tag::Recv, ledger::id(1, s), 0, 300 + s)),
        );
        inc(RoleArg::Consumer, 0, inc_no, r)
    }

    /// A queue round with batch calls of `batch`: producer 1 acknowledged
    /// seqs 0..`acked`; the consumers in `victims` were killed (at ts 1000).
    fn batch_round(
        kind: KindArg,
        batch: u64,
        acked: u64,
        consumers: Vec<Inc>,
        victims: &[u32],
    ) -> Tally {
        let mut incs = vec![producer(acked)];
        incs.extend(consumers);
        let kills = victims
            .iter()
            .map(|&v| consumer_kill(1000, Some(v)))
            .collect();
        check_round(kind, 16, batch, incs, kills)
    }

    #[test]
    fn an_in_flight_batch_tail_is_unacked_not_phantom() {
        // 0..4 acknowledged; the producer was killed in a batch of 4 (4..8)
        // that went in: 4..8 may arrive, 8 never went in.
        let got = |batch: u64, seqs: &[u64]| {
            batch_round(
                KindArg::Mpmc,
                batch,
                4,
                vec![batch_consumer(2, &[seqs], &[])],
                &[],
            )
        };
        let t = got(4, &[0, 1, 2, 3, 4, 5, 7]);
        assert_eq!((t.phantom, t.losses, t.duplicates, t.order), (0, 0, 0, 0));
        let t = got(4, &[0, 1, 2, 3, 4, 8]);
        assert_eq!(t.phantom, 1, "8 is beyond the batch in flight");
        // Single calls: only the one message after the last acknowledgement.
        let t = got(1, &[0, 1, 2, 3, 4, 5]);
        assert_eq!(t.phantom, 1, "5 was never sent with single calls");
    }

    #[test]
    fn a_copy_of_what_a_killed_consumer_recorded_mid_batch_is_allowed() {
        // SPSC: consumer 2 was killed in the call that handed it 2 and 3;
        // the batch (2, 3) goes to consumer 3 again.
        let t = batch_round(
            KindArg::Spsc,
            4,
            4,
            vec![
                batch_consumer(2, &[&[0, 1]], &[2, 3]),
                batch_consumer(3, &[&[2, 3]], &[]),
            ],
            &[2],
        );
        assert_eq!((t.duplicates, t.redelivered_allowed), (0, 2));
        assert_eq!((t.losses, t.order, t.phantom), (0, 0, 0));
        // MPMC: only the last message the killed consumer recorded was
        // still held (the ones before were freed after their callback).
        let mpmc = |again: &[u64]| {
            batch_round(
                KindArg::Mpmc,
                4,
                4,
                vec![
                    batch_consumer(2, &[&[0]], &[1, 2]),
                    batch_consumer(3, &[again], &[]),
                ],
                &[2],
            )
        };
        let t = mpmc(&[2, 3]);
        assert_eq!((t.duplicates, t.redelivered_allowed), (0, 1));
        let t = mpmc(&[1, 2, 3]);
        assert_eq!(t.duplicates, 1, "1 was freed before the kill");
    }

    #[test]
    fn a_copy_of_what_a_killed_consumer_recorded_before_its_last_batch_end_is_a_duplicate() {
        let t = batch_round(
            KindArg::Spsc,
            4,
            4,
            vec![
                batch_consumer(2, &[&[0, 1]], &[2]),
                batch_consumer(3, &[&[1, 2, 3]], &[]),
            ],
            &[2],
        );
        assert_eq!(t.duplicates, 1, "1 was in a call that returned");
        assert_eq!(t.redelivered_allowed, 1, "2 was in the unfinished call");
        // A consumer that was not killed excuses nothing.
        let t = batch_round(
            KindArg::Spsc,
            4,
            4,
            vec![
                batch_consumer(2, &[&[0, 1]], &[2]),
                batch_consumer(3, &[&[2, 3]], &[]),
            ],
            &[],
        );
        assert_eq!(t.duplicates, 1);
    }

    #[test]
    fn batch_receives_leave_nothing_in_hand() {
        // 3 is missing after a consumer kill: with single calls it may have
        // been in hand; a batch receive records before freeing the slot.
        let cons = || vec![batch_consumer(2, &[&[0, 1, 2]], &[])];
        let t = batch_round(KindArg::Mpmc, 1, 4, cons(), &[2]);
        assert_eq!((t.in_hand, t.losses), (1, 0));
        let t = batch_round(KindArg::Mpmc, 4, 4, cons(), &[2]);
        assert_eq!((t.in_hand, t.losses), (0, 1));
    }

    #[test]
    fn reliable_cursor_rereads_are_allowed_only_above_the_commit() {
        let sub = |i: u32, start: u64, reads: &[u64], commit: Option<u64>| {
            let mut r = vec![rec(Tag::Begin, 0, 0, 0), rec(Tag::Start, 0, start, 0)];
            r.extend(
                reads
                    .iter()
                    .map(|&p| rec(Tag::Recv, ledger::id(1, p), p, 0)),
            );
            r.extend(commit.map(|c| rec(Tag::Commit, 0, c, 0)));
            inc(RoleArg::Consumer, 0, i, r)
        };
        let run = |second_start: u64| {
            let incs = vec![
                producer(4),
                sub(2, 0, &[0, 1, 2], Some(2)),
                sub(3, second_start, &[second_start, 3], None),
            ];
            check_round(KindArg::LogReliable, 4, 1, incs, Vec::new())
        };
        let t = run(2);
        assert_eq!((t.redelivered_allowed, t.duplicates, t.losses), (1, 0, 0));
        let t = run(1);
        assert_eq!((t.duplicates, t.order), (1, 0), "1 was committed");
    }

    #[test]
    fn overwrite_gaps_must_be_told() {
        let run = |lag: u64| {
            let r = vec![
                rec(Tag::Start, 0, 0, 0),
                rec(Tag::Recv, ledger::id(1, 0), 0, 0),
                rec(Tag::Lag, lag, 3, 0),
                rec(Tag::Recv, ledger::id(1, 3), 3, 0),
                rec(Tag::Closed, 0, 4, 0),
            ];
            let incs = vec![producer(4), inc(RoleArg::Consumer, 0, 2, r)];
            check_round(KindArg::LogOverwrite, 4, 1, incs, Vec::new())
        };
        assert_eq!(run(2).losses, 0);
        assert_eq!(run(1).losses, 1);
    }
}
