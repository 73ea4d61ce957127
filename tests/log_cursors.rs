//! Named durable cursors across processes, and a file-backed log that
//! outlives every process.
//!
//! Run in release: `cargo test --release --test log_cursors`.

mod common;

use std::time::Duration;

use common::{check_msg, make_msg, report, Proc};
use shmq::{CursorError, Log, LogConfig, LogMode, RecvError, SendError, Start, Target};

common::child_roles! {
    "read" => read,
    "publish" => publish,
    "commit_then_hang" => commit_then_hang,
    "cursor_from" => cursor_from,
    "create_cursor" => create_cursor,
    "create_file_log" => create_file_log,
    "hang_unnamed" => hang_unnamed,
}

const WAIT: Duration = Duration::from_secs(30);

fn target(arg: &str) -> Target {
    arg.parse().expect("target")
}

/// Reads until the log is empty and returns the sequence numbers carried by
/// the messages (checked).
fn drain(sub: &mut shmq::Subscriber, limit: u64) -> Vec<u64> {
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while (got.len() as u64) < limit {
        match sub.recv_try(&mut buf) {
            Ok(n) => {
                let (_, seq) = check_msg(&buf[..n]).unwrap();
                assert_eq!(
                    seq,
                    sub.position() - 1,
                    "message carries its own sequence number"
                );
                got.push(seq);
            }
            Err(RecvError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    got
}

fn span(v: &[u64]) -> String {
    match (v.first(), v.last()) {
        (Some(a), Some(b)) => format!("{a}..={b}"),
        _ => "none".into(),
    }
}

/// Child: args log, cursor ("-": unnamed from oldest), then a program of
/// steps: `rN` read up to N, `c` commit, `b` rollback, `e` read to the end.
/// Reports, per step, `step S got A..=B n N`.
fn read(args: &[String]) {
    let log = Log::open(&target(&args[0])).unwrap();
    let mut sub = if args[1] == "-" {
        log.subscribe(Start::Oldest).unwrap()
    } else {
        log.subscribe_named(&args[1], Start::Oldest).unwrap()
    };
    report(format!("start {}", sub.position()));
    for step in &args[2..] {
        let got = match step.as_str() {
            "c" => {
                sub.commit().unwrap();
                Vec::new()
            }
            "b" => {
                sub.rollback().unwrap();
                Vec::new()
            }
            "e" => drain(&mut sub, u64::MAX),
            s => drain(&mut sub, s[1..].parse().unwrap()),
        };
        report(format!("step {step} got {} n {}", span(&got), got.len()));
    }
}

/// Child: opens the log args[0] and publishes messages args[1]..args[2].
fn publish(args: &[String]) {
    let log = Log::open(&target(&args[0])).unwrap();
    let (from, to): (u64, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    for i in from..to {
        assert_eq!(log.publish(&make_msg(0, i, 32)).unwrap(), i);
    }
    log.flush().unwrap();
}

/// Child: reads 5 messages on cursor args[1], commits, then waits to be killed.
fn commit_then_hang(args: &[String]) {
    let log = Log::open(&target(&args[0])).unwrap();
    let mut sub = log.subscribe_named(&args[1], Start::Oldest).unwrap();
    assert_eq!(drain(&mut sub, 5).len(), 5);
    sub.commit().unwrap();
    drain(&mut sub, 2); // read, uncommitted
    std::thread::sleep(Duration::from_secs(60));
}

/// Child: subscribes without a name (reliable mode: it registers and
/// gates), then waits to be killed.
fn hang_unnamed(args: &[String]) {
    let log = Log::open(&target(&args[0])).unwrap();
    let _sub = log.subscribe(Start::Latest).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// Child: creates cursor args[1] from cursor args[2].
fn cursor_from(args: &[String]) {
    Log::open(&target(&args[0]))
        .unwrap()
        .cursor_from(&args[1], &args[2])
        .unwrap();
}

/// Child: tries to create the named cursor args[1]; reports the outcome.
fn create_cursor(args: &[String]) {
    let log = Log::open(&target(&args[0])).unwrap();
    match log.create_cursor(&args[1], Start::Latest) {
        Ok(()) => report("created"),
        Err(e) => report(format!("error {e:?} / {e}")),
    }
}

/// Child: creates a file-backed log with cursor "durable" at the start,
/// publishes 0..100, flushes, exits.
fn create_file_log(args: &[String]) {
    let log = Log::create(&target(&args[0]), &LogConfig::new(32, 256).cursors(4)).unwrap();
    log.create_cursor("durable", Start::Oldest).unwrap();
    for i in 0..100 {
        log.publish(&make_msg(0, i, 32)).unwrap();
    }
    log.flush().unwrap();
}

fn run(role: &str, args: &[String]) -> Vec<String> {
    let mut p = Proc::spawn(role, args);
    p.wait_ok(WAIT);
    p.results()
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_late_subscriber_from_oldest_reads_earlier_messages() {
    let t = common::posix("cur-late");
    let log = Log::create(&t, &LogConfig::new(32, 64)).unwrap();
    for i in 0..10 {
        log.publish(&make_msg(0, i, 32)).unwrap();
    }
    let out = run("read", &args(&[&t.to_string(), "-", "e"]));
    assert_eq!(out, ["start 0", "step e got 0..=9 n 10"]);
}

#[test]
fn commit_rollback_and_resume_across_processes() {
    let t = common::posix("cur-commit");
    let log = Log::create(&t, &LogConfig::new(32, 256)).unwrap();
    for i in 0..100 {
        log.publish(&make_msg(0, i, 32)).unwrap();
    }
    let ts = t.to_string();
    // Read 30, commit; read 20 more; roll back: exactly those 20 again;
    // read 10 more without committing, exit.
    let out = run(
        "read",
        &args(&[&ts, "c", "r30", "c", "r20", "b", "r20", "r10"]),
    );
    assert_eq!(
        out,
        [
            "start 0",
            "step r30 got 0..=29 n 30",
            "step c got none n 0",
            "step r20 got 30..=49 n 20",
            "step b got none n 0",
            "step r20 got 30..=49 n 20",
            "step r10 got 50..=59 n 10",
        ]
    );
    let c = log.cursor("c").unwrap();
    assert_eq!((c.position, c.lag, c.owner), (30, 70, None), "{c:?}");
    // A new process on the same name resumes at the commit.
    let out = run("read", &args(&[&ts, "c", "e"]));
    assert_eq!(out, ["start 30", "step e got 30..=99 n 70"]);
    // from_cursor in one process, read from the copy in another.
    run("cursor_from", &args(&[&ts, "copy", "c"]));
    assert_eq!(log.cursor("copy").unwrap().position, 30);
    let out = run("read", &args(&[&ts, "copy", "r5"]));
    assert_eq!(out, ["start 30", "step r5 got 30..=34 n 5"]);
}

#[test]
fn a_killed_subscriber_keeps_its_commit_and_frees_its_cursor() {
    let t = common::posix("cur-kill");
    let log = Log::create(&t, &LogConfig::new(32, 64)).unwrap();
    for i in 0..20 {
        log.publish(&make_msg(0, i, 32)).unwrap();
    }
    let mut hang = Proc::spawn("commit_then_hang", &args(&[&t.to_string(), "k"]));
    let attached = common::wait_until(WAIT, || {
        log.cursor("k")
            // `read` is shown in batches (Subscriber::cursor_batch): 5 to 7.
            .is_some_and(|c| {
                c.position == 5 && (5..=7).contains(&c.read) && c.owner == Some(hang.pid())
            })
    });
    assert!(attached, "child committed: {:?}", log.cursor("k"));
    assert!(matches!(
        log.remove_cursor("k"),
        Err(CursorError::InUse { .. })
    ));
    hang.kill();
    // The dead process's attachment does not block a new subscriber.
    let out = run("read", &args(&[&t.to_string(), "k", "e"]));
    assert_eq!(out, ["start 5", "step e got 5..=19 n 15"]);
    log.remove_cursor("k").unwrap();
}

#[test]
fn a_full_cursor_table_is_a_clear_error_in_another_process() {
    let t = common::posix("cur-full");
    let log = Log::create(&t, &LogConfig::new(32, 64).cursors(3)).unwrap();
    for name in ["a", "b"] {
        log.create_cursor(name, Start::Latest).unwrap();
    }
    assert_eq!(
        run("create_cursor", &args(&[&t.to_string(), "c"])),
        ["created"]
    );
    let out = run("create_cursor", &args(&[&t.to_string(), "d"]));
    assert_eq!(out.len(), 1);
    assert!(
        out[0].starts_with("error TableFull { capacity: 3 }"),
        "{out:?}"
    );
    assert!(
        out[0].contains("cursor table full: all 3 entries are taken"),
        "{out:?}"
    );
    let out = run("create_cursor", &args(&[&t.to_string(), "a"]));
    assert!(out[0].starts_with("error AlreadyExists"), "{out:?}");
}

#[test]
fn a_file_backed_log_keeps_messages_and_cursors_after_every_process_exits() {
    // This process never maps the log: each step is a process that exits.
    let t = common::file("cur-file");
    let ts = t.to_string();
    run("create_file_log", &args(&[&ts]));
    let out = run("read", &args(&[&ts, "durable", "r40", "c", "r10"]));
    assert_eq!(
        out[1..],
        [
            "step r40 got 0..=39 n 40",
            "step c got none n 0",
            "step r10 got 40..=49 n 10"
        ]
    );
    run("publish", &args(&[&ts, "100", "150"]));
    // Reopened: continues from the committed position, through old and new messages.
    let out = run("read", &args(&[&ts, "durable", "e"]));
    assert_eq!(out, ["start 40", "step e got 40..=149 n 110"]);
    let log = Log::open(&t).unwrap();
    assert_eq!(log.stats().published, 150);
    assert_eq!(
        log.cursor("durable").unwrap().position,
        40,
        "reading did not commit"
    );
}

#[test]
fn the_cursor_of_a_killed_reliable_subscriber_is_reaped() {
    let t = common::posix("cur-reap");
    let log = Log::create(&t, &LogConfig::new(32, 8).mode(LogMode::Reliable)).unwrap();
    let mut hang = Proc::spawn("hang_unnamed", &args(&[&t.to_string()]));
    let registered = common::wait_until(WAIT, || {
        log.cursors().iter().any(|c| c.owner == Some(hang.pid()))
    });
    assert!(registered, "child registered: {:?}", log.cursors());
    // A live subscriber of ours that keeps up: only the child gates.
    let mut own = log.subscribe(Start::Latest).unwrap();
    let mut buf = [0u8; 32];
    for i in 0..8 {
        log.publish(&make_msg(0, i, 32)).unwrap();
        own.recv_try(&mut buf).unwrap();
    }
    assert_eq!(own.recv_try(&mut buf), Err(RecvError::Empty)); // shows its position
    assert_eq!(log.publish(&make_msg(0, 8, 32)), Err(SendError::Full));
    hang.kill();
    // The blocked publisher notices the dead process and goes on.
    let seq = log.publish_block(&make_msg(0, 8, 32), Some(WAIT)).unwrap();
    assert_eq!(seq, 8);
    let left = log.cursors();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].owner, Some(std::process::id()), "{left:?}");
    // Ours gone too: nobody is registered, and the log says so.
    drop(own);
    assert_eq!(
        log.publish(&make_msg(0, 9, 32)),
        Err(SendError::NotConnected)
    );
}

#[test]
fn a_cursor_table_mismatch_names_the_cursor_counts_the_callers_passed() {
    let target = common::posix("cursor-mismatch");
    let _log = Log::create(&target, &LogConfig::new(16, 4).cursors(3)).unwrap();
    let err = Log::open_or_create(&target, &LogConfig::new(16, 4).cursors(2)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, shmq::Error::Incompatible { .. }), "{err:?}");
    assert!(text.contains("room for 3 cursors (wanted 2)"), "{text}");
}

#[test]
fn a_full_cursor_table_says_what_to_do_in_every_language() {
    let text = CursorError::TableFull { capacity: 2 }.to_string();
    for words in [
        "LogConfig::cursors",
        "shmq_log_create",
        "WithCursors",
        "--cursors",
    ] {
        assert!(text.contains(words), "{text}");
    }
}
