//! The `shmq` command line, run as a process against real segments: output,
//! exit codes, and one-line errors for missing, foreign, corrupt and
//! forbidden segments.

#[allow(unused_imports)] // the harness re-exports `child_roles!`, unused here
#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{file, posix, sysv, unique, Guard};
use shmq::{Log, Queue, QueueConfig, Segment, Target};

const BIN: &str = env!("CARGO_BIN_EXE_shmq");
const LIMIT: Duration = Duration::from_secs(60);
/// The wait for a whole default `shmq bench` run (the demo's cases).
const BENCH_LIMIT: Duration = Duration::from_secs(240);

/// What a finished `shmq` process left.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Asserts the exit code, and for failures a single-line, panic-free message.
    fn expect(self, code: i32) -> Out {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        if code != 0 {
            // Apart from bench's progress lines, exactly one line: the error.
            let errs: Vec<&str> = self
                .stderr
                .lines()
                .filter(|l| !l.starts_with("shmq bench: "))
                .collect();
            assert_eq!(
                errs.len(),
                1,
                "one-line error expected, got:\n{}",
                self.stderr
            );
            assert!(
                errs[0].starts_with("shmq: "),
                "error should start with 'shmq: ': {}",
                self.stderr
            );
        }
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "{}",
            self.stderr
        );
        self
    }
}

/// Waits for `child` at most `timeout` (killing it and failing after that).
fn finish(mut child: std::process::Child, stdin: Option<Vec<u8>>, timeout: Duration) -> Out {
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shmq did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Out {
        code: status.code().unwrap_or(-1),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(args: &[&str]) -> Out {
    finish(command(args).spawn().expect("spawn shmq"), None, LIMIT)
}

fn run_stdin(args: &[&str], input: &[u8]) -> Out {
    let child = command(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn shmq");
    finish(child, Some(input.to_vec()), LIMIT)
}

/// The target as the command line takes it.
fn arg(t: &Target) -> String {
    t.to_string()
}

// ---- a small JSON reader, to check that --json output is valid ----

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(key),
            _ => None,
        }
    }
    fn num(&self, key: &str) -> f64 {
        match self.get(key) {
            Some(Json::Num(n)) => *n,
            other => panic!("{key} is not a number: {other:?} in {self:?}"),
        }
    }
    fn str(&self, key: &str) -> &str {
        match self.get(key) {
            Some(Json::Str(s)) => s,
            other => panic!("{key} is not a string: {other:?}"),
        }
    }
}

fn parse_json(text: &str) -> Json {
    fn ws(s: &[u8], i: &mut usize) {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }
    fn value(s: &[u8], i: &mut usize) -> Result<Json, String> {
        ws(s, i);
        let c = *s.get(*i).ok_or("unexpected end")?;
        match c {
            b'{' => {
                *i += 1;
                let mut m = BTreeMap::new();
                ws(s, i);
                if s.get(*i) == Some(&b'}') {
                    *i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    ws(s, i);
                    let Json::Str(k) = value(s, i)? else {
                        return Err("key is not a string".into());
                    };
                    ws(s, i);
                    if s.get(*i) != Some(&b':') {
                        return Err(format!("expected ':' at {i}"));
                    }
                    *i += 1;
                    let v = value(s, i)?;
                    m.insert(k, v);
                    ws(s, i);
                    match s.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("expected ',' or '}}' at {i}")),
                    }
                }
            }
            b'[' => {
                *i += 1;
                let mut v = Vec::new();
                ws(s, i);
                if s.get(*i) == Some(&b']') {
                    *i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(value(s, i)?);
                    ws(s, i);
                    match s.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b']') => {
                            *i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return Err(format!("expected ',' or ']' at {i}")),
                    }
                }
            }
            b'"' => {
                *i += 1;
                let mut out = String::new();
                loop {
                    let c = *s.get(*i).ok_or("unterminated string")?;
                    *i += 1;
                    match c {
                        b'"' => return Ok(Json::Str(out)),
                        b'\\' => {
                            let e = *s.get(*i).ok_or("bad escape")?;
                            *i += 1;
                            match e {
                                b'n' => out.push('\n'),
                                b't' => out.push('\t'),
                                b'r' => out.push('\r'),
                                b'"' | b'\\' | b'/' => out.push(e as char),
                                b'u' => {
                                    let hex = std::str::from_utf8(&s[*i..*i + 4])
                                        .map_err(|e| e.to_string())?;
                                    out.push(
                                        char::from_u32(
                                            u32::from_str_radix(hex, 16)
                                                .map_err(|e| e.to_string())?,
                                        )
                                        .ok_or("bad \\u")?,
                                    );
                                    *i += 4;
                                }
                                _ => return Err("bad escape".into()),
                            }
                        }
                        c if c < 0x20 => return Err("control character in string".into()),
                        _ => {
                            // Copy one UTF-8 sequence.
                            let start = *i - 1;
                            while *i < s.len() && (s[*i] & 0xc0) == 0x80 {
                                *i += 1;
                            }
                            out.push_str(
                                std::str::from_utf8(&s[start..*i]).map_err(|e| e.to_string())?,
                            );
                        }
                    }
                }
            }
            b't' if s[*i..].starts_with(b"true") => {
                *i += 4;
                Ok(Json::Bool(true))
            }
            b'f' if s[*i..].starts_with(b"false") => {
                *i += 5;
                Ok(Json::Bool(false))
            }
            b'n' if s[*i..].starts_with(b"null") => {
                *i += 4;
                Ok(Json::Null)
            }
            _ => {
                let start = *i;
                while *i < s.len() && (s[*i].is_ascii_digit() || b"+-.eE".contains(&s[*i])) {
                    *i += 1;
                }
                std::str::from_utf8(&s[start..*i])
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad value at {start}"))
            }
        }
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let v = value(bytes, &mut i).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"));
    ws(bytes, &mut i);
    assert_eq!(i, bytes.len(), "trailing bytes after JSON: {text}");
    v
}

#[test]
fn json_reader_rejects_invalid_json() {
    assert_eq!(
        parse_json(r#"{"a":[1,true,null,"x\n"]}"#).get("a"),
        Some(&Json::Arr(vec![
            Json::Num(1.0),
            Json::Bool(true),
            Json::Null,
            Json::Str("x\n".into())
        ]))
    );
    for bad in [r#"{"a":1"#, r#"{"a" 1}"#, r#"{"a":1}x"#, "[1,]"] {
        assert!(
            std::panic::catch_unwind(|| parse_json(bad)).is_err(),
            "{bad} accepted"
        );
    }
}

// ---- help and usage ----

#[test]
fn every_command_has_help_with_an_example() {
    let top = run(&["--help"]).expect(0);
    assert!(
        top.stdout.contains("Exit codes:") && top.stdout.contains("3  not found"),
        "{}",
        top.stdout
    );
    for cmd in ["ls", "stat", "create", "rm", "pub", "tail", "bench"] {
        let out = run(&[cmd, "--help"]).expect(0);
        assert!(
            out.stdout.contains("Example:"),
            "`shmq {cmd} --help` has no example:\n{}",
            out.stdout
        );
    }
    let bad = run(&["stat"]);
    assert_eq!(bad.code, 2, "a missing argument is a usage error");
    let bad = run(&["frobnicate"]);
    assert_eq!(bad.code, 2);
}

// ---- create, stat, rm ----

#[test]
fn create_stat_rm_round_trip_with_library_validation() {
    for g in [posix("cli-crt"), sysv(), file("cli-crt")] {
        let t = arg(&g);
        let out = run(&[
            "create",
            &t,
            "--slot-size",
            "32",
            "--capacity",
            "8",
            "--mode",
            "640",
        ])
        .expect(0);
        assert!(out.stdout.contains("created"), "{}", out.stdout);
        // Create never clobbers.
        let again = run(&["create", &t, "--slot-size", "64"]).expect(6);
        assert!(again.stderr.contains("already exists"), "{}", again.stderr);
        let stat = run(&["stat", &t]).expect(0);
        for want in [
            "kind        queue",
            "slot size   32 bytes",
            "capacity    8 slots",
            "mode 0640",
            "enqueued    0",
        ] {
            assert!(
                stat.stdout.contains(want),
                "stat lacks {want:?}:\n{}",
                stat.stdout
            );
        }
        let json = parse_json(run(&["stat", &t, "--json"]).expect(0).stdout.trim());
        assert_eq!(json.str("kind"), "queue");
        assert_eq!(json.num("capacity"), 8.0);
        assert_eq!(json.str("mode"), "0640");
        run(&["rm", &t]).expect(0);
        assert!(!g.exists());
        let gone = run(&["stat", &t]).expect(3);
        assert!(gone.stderr.contains("does not exist"), "{}", gone.stderr);
    }
    // The library's parameter checks reach the command line as usage errors.
    let g = posix("cli-crt-bad");
    let bad = run(&["create", &arg(&g), "--capacity", "1"]).expect(2);
    assert!(bad.stderr.contains("capacity"), "{}", bad.stderr);
    assert!(!g.exists());
}

#[test]
fn stat_shows_counters_waiters_and_processes() {
    let g = posix("cli-stat");
    let q = Queue::create(&g, &QueueConfig::new(64, 16)).unwrap();
    for i in 0..5u8 {
        q.enqueue_try(&[i]).unwrap();
    }
    let mut buf = [0u8; 64];
    q.dequeue_try(&mut buf).unwrap();
    q.enqueue_shift(b"x").unwrap();
    let out = run(&["stat", &arg(&g)]).expect(0);
    for want in [
        "enqueued    6",
        "dequeued    1",
        "in queue    5",
        &format!("by pid {} (alive)", std::process::id()),
        "processes (1 listed, 1 alive)",
        &format!("  {:<8} alive", std::process::id()),
        "0 slot(s) marked with a sleeper",
    ] {
        assert!(
            out.stdout.contains(want),
            "stat lacks {want:?}:\n{}",
            out.stdout
        );
    }
    // A consumer asleep on the empty queue shows up as a waiter.
    let empty = posix("cli-stat-wait");
    let qe = Queue::create(&empty, &QueueConfig::new(8, 4)).unwrap();
    let tail = command(&["tail", &arg(&empty), "--count", "1", "--timeout", "20"])
        .spawn()
        .unwrap();
    let asleep = common::wait_until(Duration::from_secs(10), || {
        let s = run(&["stat", &arg(&empty), "--json"]).expect(0);
        parse_json(s.stdout.trim()).num("sleeping_slots") == 1.0
    });
    qe.enqueue_try(b"wake").unwrap();
    let woke = finish(tail, None, LIMIT).expect(0);
    assert!(asleep, "the blocked tail never showed as a sleeping waiter");
    assert_eq!(woke.stdout, "wake\n");

    // --watch refreshes with rates; --json gives one object per refresh.
    let watch = run(&["stat", &arg(&g), "--watch", "--count", "2", "--json"]).expect(0);
    let lines: Vec<Json> = watch.stdout.lines().map(parse_json).collect();
    assert_eq!(lines.len(), 2, "{}", watch.stdout);
    assert!(lines[0].get("rates").is_none());
    let rates = lines[1].get("rates").expect("the second refresh has rates");
    assert_eq!(rates.num("in_per_s"), 0.0);
    assert_eq!(lines[1].get("counters").unwrap().num("enqueued"), 6.0);
    drop(q);
}

// ---- ls ----

#[test]
fn ls_lists_queues_of_every_backing_and_files_by_path() {
    let (gs, gp, gf) = (sysv(), posix("cli-ls"), file("cli-ls"));
    let qs = Queue::create(&gs, &QueueConfig::new(16, 4)).unwrap();
    let qp = Queue::create(&gp, &QueueConfig::new(128, 32)).unwrap();
    let _qf = Queue::create(&gf, &QueueConfig::new(8, 2)).unwrap();
    for _ in 0..3 {
        qp.enqueue_try(b"m").unwrap();
    }
    let Target::File(path) = &gf.0 else {
        unreachable!()
    };
    let out = run(&["ls", path.to_str().unwrap()]).expect(0);
    let line = |t: &Target| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&t.to_string()))
            .unwrap_or_else(|| panic!("{t} not listed:\n{}", out.stdout))
            .to_string()
    };
    let words = |l: String| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    let me = std::process::id().to_string();
    assert_eq!(words(line(&gs))[1..4], ["queue", "16", "4"]);
    let p = words(line(&gp));
    assert_eq!(p[1..7], ["queue", "128", "32", "3", "(9%)", "1/1"], "{p:?}");
    assert_eq!(p[7..9], [me.clone(), "alive".into()]);
    assert_eq!(words(line(&gf))[1..4], ["queue", "8", "2"]);
    // Without the path, the file is not discovered.
    let bare = run(&["ls"]).expect(0);
    assert!(!bare.stdout.contains(&gf.to_string()));

    let json = run(&["ls", "--json"]).expect(0);
    let rows: Vec<Json> = json.stdout.lines().map(parse_json).collect();
    let row = rows
        .iter()
        .find(|r| r.str("target") == gp.to_string())
        .expect("posix queue in --json");
    assert_eq!(
        (row.num("len"), row.num("capacity"), row.num("procs_alive")),
        (3.0, 32.0, 1.0)
    );
    assert!(rows.iter().any(|r| r.str("target") == gs.to_string()));
    drop(qs);

    // A file asked for by name that does not exist is an error.
    let missing = std::env::temp_dir().join(unique("cli-ls-missing"));
    let out = run(&["ls", missing.to_str().unwrap()]).expect(3);
    assert!(out.stderr.contains("does not exist"));
}

/// Fills the first bytes of a fresh segment at `target` with non-shmq bytes.
fn foreign(target: Guard, size: usize) -> Guard {
    let seg = Segment::create(&target, size, 0o600).unwrap();
    // SAFETY: the segment is `size` >= 16 bytes long and ours alone.
    unsafe { std::ptr::copy_nonoverlapping(b"NOT A SHMQ QUEUE".as_ptr(), seg.as_ptr(), 16) };
    target
}

/// A valid queue whose header is then damaged (one byte of the slot size).
fn corrupt(target: Guard) -> Guard {
    drop(Queue::create(&target, &QueueConfig::new(64, 8)).unwrap());
    let seg = Segment::open(&target).unwrap();
    // SAFETY: byte 16 lies in the 1024-byte header of the mapping.
    unsafe { *seg.as_ptr().add(16) ^= 0x40 };
    target
}

#[test]
fn foreign_and_corrupt_segments_are_recognised_never_crash() {
    let fp = foreign(posix("cli-foreign"), 8192);
    let fs = foreign(sysv(), 4096);
    let tiny = posix("cli-tiny");
    drop(Segment::create(&tiny, 100, 0o600).unwrap());
    let cp = corrupt(posix("cli-corrupt"));
    let cs = corrupt(sysv());

    let ls = run(&["ls"]).expect(0);
    for f in [&fp, &fs, &tiny] {
        assert!(
            !ls.stdout.contains(&f.to_string()),
            "foreign {} listed without --all:\n{}",
            f.0,
            ls.stdout
        );
    }
    for c in [&cp, &cs] {
        let l = ls
            .stdout
            .lines()
            .find(|l| l.starts_with(&c.to_string()))
            .expect("corrupt segment listed");
        assert!(l.contains("corrupt") && l.contains("checksum"), "{l}");
    }
    let all = run(&["ls", "--all"]).expect(0);
    for f in [&fp, &fs, &tiny] {
        let l = all
            .stdout
            .lines()
            .find(|l| l.starts_with(&f.to_string()))
            .expect("foreign listed with --all");
        assert!(l.contains("foreign"), "{l}");
    }

    for f in [&fp, &fs, &tiny] {
        let t = arg(f);
        let out = run(&["stat", &t]).expect(5);
        assert!(
            out.stderr.contains("not a shmq segment")
                || out.stderr.contains("smaller than a shmq header"),
            "{}",
            out.stderr
        );
        run(&["tail", &t, "--timeout", "1"]).expect(5);
        run_stdin(&["pub", &t], b"x\n").expect(5);
        // rm leaves what is not shmq's, unless forced.
        let out = run(&["rm", &t]).expect(5);
        assert!(out.stderr.contains("--force"), "{}", out.stderr);
        assert!(f.exists());
    }
    for c in [&cp, &cs] {
        let t = arg(c);
        let out = run(&["stat", &t]).expect(5);
        assert!(
            out.stderr
                .contains("corrupt segment: header checksum mismatch"),
            "{}",
            out.stderr
        );
        run(&["tail", &t, "--count", "1"]).expect(5);
        run(&["rm", &t]).expect(5);
    }
    run(&[
        "rm",
        "--force",
        &arg(&fp),
        &arg(&fs),
        &arg(&tiny),
        &arg(&cp),
        &arg(&cs),
    ])
    .expect(0);
    for g in [&fp, &fs, &tiny, &cp, &cs] {
        assert!(!g.exists(), "{} still exists after rm --force", g.0);
    }
}

#[test]
fn missing_targets_exit_with_not_found() {
    let t_posix = format!("posix:{}", unique("cli-missing"));
    let t_file = std::env::temp_dir()
        .join(unique("cli-missing"))
        .display()
        .to_string();
    let t_sysv = format!("sysv:{}", shmq::find_free_key().unwrap());
    for t in [&t_posix, &t_file, &t_sysv] {
        for args in [
            vec!["stat", t],
            vec!["tail", t, "--count", "1"],
            vec!["rm", t],
            vec!["rm", "--force", t],
            vec!["pub", t, "--count", "1"],
        ] {
            let out = run(&args).expect(3);
            assert!(
                out.stderr.contains("does not exist"),
                "{args:?}: {}",
                out.stderr
            );
        }
    }
}

// ---- permissions ----

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// A copy of the binary that user `nobody` can run whatever the checkout's
/// permissions (a clone under a 0700 home would not be), removed on drop.
struct NobodysCopy {
    dir: std::path::PathBuf,
}

impl NobodysCopy {
    fn new() -> NobodysCopy {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(unique("cli-bin"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(BIN, dir.join("shmq")).unwrap();
        std::fs::set_permissions(dir.join("shmq"), std::fs::Permissions::from_mode(0o755)).unwrap();
        NobodysCopy { dir }
    }

    /// Runs shmq as user `nobody` when we are root (the kernel lets root
    /// past every mode bit), else as ourselves.
    fn run(&self, args: &[&str]) -> Out {
        let mut c = Command::new(self.dir.join("shmq"));
        c.args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if is_root() {
            c.uid(65534).gid(65534);
        }
        finish(c.spawn().expect("spawn shmq as nobody"), None, LIMIT)
    }
}

impl Drop for NobodysCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn permission_denied_is_its_own_exit_code() {
    let nobody = NobodysCopy::new();
    let gp = posix("cli-perm");
    let gs = sysv();
    let gz = posix("cli-perm-zero");
    let _qp = Queue::create(&gp, &QueueConfig::new(8, 4)).unwrap();
    let _qs = Queue::create(&gs, &QueueConfig::new(8, 4)).unwrap();
    // Mode 0000 through the command line: the mode reaches the segment as given.
    run(&["create", &arg(&gz), "--mode", "000"]).expect(0);
    let Target::Posix(name) = &gz.0 else {
        unreachable!()
    };
    let meta = std::fs::metadata(format!("/dev/shm/{name}")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0
    );
    let Target::SysV(key) = gs.0 else {
        unreachable!()
    };
    let kernel = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    let perms = kernel
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&key.to_string()))
        .and_then(|l| l.split_whitespace().nth(2).map(String::from))
        .expect("the SysV queue in /proc/sysvipc/shm");
    assert_eq!(perms.trim(), "600");

    for t in [&gp, &gs, &gz] {
        let t = arg(t);
        let out = nobody.run(&["stat", &t]).expect(4);
        assert!(out.stderr.contains("permission denied"), "{}", out.stderr);
        nobody.run(&["tail", &t, "--count", "1"]).expect(4);
        nobody.run(&["pub", &t, "--count", "1"]).expect(4);
    }
    if is_root() {
        // Root reads the 0000 queue, and an unprivileged ls skips what it cannot read.
        let out = run(&["stat", &arg(&gz)]).expect(0);
        assert!(out.stdout.contains("mode 0000"), "{}", out.stdout);
        let ls = nobody.run(&["ls"]).expect(0);
        assert!(!ls.stdout.contains(&gp.to_string()), "{}", ls.stdout);
        let ls = nobody.run(&["ls", "--all"]).expect(0);
        let l = ls
            .stdout
            .lines()
            .find(|l| l.starts_with(&gp.to_string()))
            .expect("listed with --all");
        assert!(l.contains("denied"), "{l}");
    }
}

// ---- pub and tail ----

#[test]
fn pub_piped_into_tail_delivers_lines_in_order() {
    for g in [posix("cli-pipe"), sysv()] {
        let t = arg(&g);
        // A small queue, so pub has to wait for tail.
        run(&["create", &t, "--slot-size", "32", "--capacity", "8"]).expect(0);
        let lines: Vec<String> = (0..2000)
            .map(|i| format!("line {i:05} {}", "x".repeat(i % 17)))
            .collect();
        let input = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let tail = command(&["tail", &t, "--count", "2000", "--timeout", "30"])
            .spawn()
            .unwrap();
        let publisher = command(&["pub", &t, "--timeout", "30"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let p = finish(publisher, Some(input.into_bytes()), LIMIT).expect(0);
        assert!(
            p.stderr.contains("published 2000 message(s)"),
            "{}",
            p.stderr
        );
        let out = finish(tail, None, LIMIT).expect(0);
        let got: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(got.len(), lines.len());
        assert!(
            got.iter().zip(&lines).all(|(a, b)| a == b),
            "lines out of order or changed"
        );
    }
}

#[test]
fn pub_and_tail_options() {
    let g = posix("cli-opts");
    let t = arg(&g);
    run(&["create", &t, "--slot-size", "16", "--capacity", "4"]).expect(0);
    // Generated payloads.
    run(&["pub", &t, "--count", "3", "--size", "10", "-q"]).expect(0);
    let out = run(&["tail", &t, "--count", "1"]).expect(0);
    assert_eq!(out.stdout, "msg 0 ....\n");
    let out = run(&["tail", &t, "--count", "2", "--format", "len"]).expect(0);
    assert_eq!(out.stdout, "10\n10\n");
    // A whole file as one binary message.
    let path = std::env::temp_dir().join(unique("cli-opts-file"));
    std::fs::write(&path, [0u8, 1, 0xfe, b'\n', 0xff]).unwrap();
    run(&["pub", &t, "--file", path.to_str().unwrap(), "-q"]).expect(0);
    let _ = std::fs::remove_file(&path);
    let out = run(&["tail", &t, "--count", "1", "--format", "hex"]).expect(0);
    assert_eq!(out.stdout, "0001fe0aff\n");
    // Empty queue: tail gives up after its timeout.
    let out = run(&["tail", &t, "--timeout", "0.2"]).expect(9);
    assert!(
        out.stderr.contains("no message for 0.2 s"),
        "{}",
        out.stderr
    );
    // Full queue: pub gives up after its timeout; --shift makes room instead.
    let out = run(&["pub", &t, "--count", "6", "--timeout", "0.2"]).expect(9);
    assert!(out.stderr.contains("stayed full"), "{}", out.stderr);
    run(&["pub", &t, "--count", "6", "--shift", "-q"]).expect(0);
    let stat = parse_json(run(&["stat", &t, "--json"]).expect(0).stdout.trim());
    let c = stat.get("counters").unwrap();
    assert_eq!((c.num("len"), c.num("discarded")), (4.0, 6.0));
    // Too large for the slot.
    let out = run_stdin(
        &["pub", &t, "--shift"],
        b"this line is longer than sixteen bytes\n",
    )
    .expect(1);
    assert!(
        out.stderr.contains("exceeds the slot size"),
        "{}",
        out.stderr
    );
    // A closed queue: tail drains what is left and ends normally; pub is refused.
    let gc = posix("cli-closed");
    let qc = Queue::create(&gc, &QueueConfig::new(8, 4)).unwrap();
    qc.enqueue_try(b"one").unwrap();
    qc.enqueue_try(b"two").unwrap();
    qc.close();
    let out = run(&["tail", &arg(&gc), "--timeout", "10"]).expect(0);
    assert_eq!(out.stdout, "one\ntwo\n");
    let out = run_stdin(&["pub", &arg(&gc)], b"three\n").expect(1);
    assert!(out.stderr.contains("closed"), "{}", out.stderr);
    // --from is for logs.
    run(&["tail", &t, "--from", "oldest", "--count", "1"]).expect(2);
}

// ---- the fan-out log ----

/// The lines `shmq tail` printed.
fn lines(out: &Out) -> Vec<&str> {
    out.stdout.lines().collect()
}

/// The cursor `name` in `stat --json` output, as (position, lag).
fn json_cursor(stat: &Json, name: &str) -> (f64, f64) {
    let Some(Json::Arr(cursors)) = stat.get("cursors") else {
        panic!("no cursors array in {stat:?}")
    };
    let c = cursors
        .iter()
        .find(|c| c.get("name") == Some(&Json::Str(name.into())))
        .unwrap_or_else(|| panic!("no cursor {name} in {stat:?}"));
    (c.num("position"), c.num("lag"))
}

#[test]
fn log_create_pub_tail_from_oldest_latest_and_a_named_cursor() {
    let g = posix("cli-log");
    let t = arg(&g);
    let out = run(&[
        "create",
        &t,
        "--kind",
        "log",
        "--slot-size",
        "32",
        "--capacity",
        "16",
        "--cursors",
        "4",
    ])
    .expect(0);
    assert!(
        out.stdout
            .contains("overwrite log of 16 slots of 32 bytes, 4 cursor entries"),
        "{}",
        out.stdout
    );
    run(&["create", &t, "--kind", "log"]).expect(6);
    // Options of the other kind are usage errors, and create nothing.
    let other = posix("cli-log-opts");
    run(&["create", &arg(&other), "--log-mode", "reliable"]).expect(2);
    run(&["create", &arg(&other), "--cursors", "4"]).expect(2);
    run(&["create", &arg(&other), "--kind", "log", "--spsc"]).expect(2);
    assert!(!other.exists());

    let input = "one\ntwo\nthree\nfour\nfive\n";
    let p = run_stdin(&["pub", &t], input.as_bytes()).expect(0);
    assert!(
        p.stderr.contains("published 5 message(s) to ")
            && p.stderr.contains("(sequence numbers 0 to 4)"),
        "{}",
        p.stderr
    );
    run_stdin(&["pub", &t, "--shift"], b"x\n").expect(2);
    // Reading a log takes nothing away: twice from the oldest, same lines.
    for _ in 0..2 {
        let out = run(&["tail", &t, "--from", "oldest", "--count", "5"]).expect(0);
        assert_eq!(lines(&out), ["one", "two", "three", "four", "five"]);
    }
    // From the latest (the default): only what comes next.
    let out = run(&["tail", &t, "--timeout", "0.2"]).expect(9);
    assert_eq!(out.stdout, "");
    let published = 5;
    // A process attached to the log, for stat to list.
    let log = Log::open(&g).unwrap();

    // A named cursor: created at the oldest message, committed after each
    // printed message, resumed by the next tail.
    let out = run(&["tail", &t, "--from", "cursor:billing", "--count", "2"]).expect(0);
    assert_eq!(lines(&out), ["one", "two"]);
    let stat = run(&["stat", &t]).expect(0);
    for want in [
        "kind        log (overwrite)",
        &format!("published   {published}"),
        "cursors (1 of 4 entries in use)",
    ] {
        assert!(
            stat.stdout.contains(want),
            "stat lacks {want:?}:\n{}",
            stat.stdout
        );
    }
    let row: Vec<&str> = stat
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("billing"))
        .expect("the cursor's line")
        .split_whitespace()
        .collect();
    let lag = (published - 2).to_string();
    assert_eq!(row, ["billing", "2", "2", &lag, "-"], "{}", stat.stdout);
    // stat opened the log to read it, and does not list itself; our own
    // handle is the one process attached.
    assert!(
        stat.stdout.contains(&format!(
            "processes (1 listed, 1 alive)\n  {:<8} alive",
            std::process::id()
        )),
        "{}",
        stat.stdout
    );
    let json = parse_json(run(&["stat", &t, "--json"]).expect(0).stdout.trim());
    assert_eq!(
        (json.str("kind"), json.str("log_mode")),
        ("log", "overwrite")
    );
    assert_eq!(json_cursor(&json, "billing"), (2.0, (published - 2) as f64));
    assert_eq!(
        json.get("counters").unwrap().num("published"),
        published as f64
    );
    let out = run(&["tail", &t, "--from", "cursor:billing", "--count", "3"]).expect(0);
    assert_eq!(lines(&out), ["three", "four", "five"]);
    let json = parse_json(run(&["stat", &t, "--json"]).expect(0).stdout.trim());
    assert_eq!(json_cursor(&json, "billing"), (5.0, (published - 5) as f64));

    // Overwrite mode: a cursor that falls a ring behind is told, and goes on
    // from the oldest message left.
    drop(log);
    run(&["pub", &t, "--count", "40", "--size", "8", "-q"]).expect(0);
    let end = published + 40;
    let out = run(&["tail", &t, "--from", "cursor:billing", "--count", "16"]).expect(0);
    let lost = end - 16 - 5;
    assert!(
        out.stderr
            .contains(&format!("lagged: {lost} message(s) overwritten")),
        "{}",
        out.stderr
    );
    assert_eq!(lines(&out).len(), 16);
    assert_eq!(lines(&out)[15], "msg 39 .", "the newest message comes last");
    let json = parse_json(run(&["stat", &t, "--json"]).expect(0).stdout.trim());
    assert_eq!(json.get("counters").unwrap().num("lagged"), lost as f64);
    assert_eq!(json_cursor(&json, "billing"), (end as f64, 0.0));

    // ls shows the log, with its kind.
    let ls = run(&["ls"]).expect(0);
    let l = ls
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&t))
        .unwrap_or_else(|| panic!("{t} not listed:\n{}", ls.stdout));
    let words: Vec<&str> = l.split_whitespace().collect();
    assert_eq!(words[1..4], ["log", "32", "16"], "{l}");
    let rows: Vec<Json> = run(&["ls", "--json"])
        .expect(0)
        .stdout
        .lines()
        .map(parse_json)
        .collect();
    let row = rows.iter().find(|r| r.str("target") == t).unwrap();
    assert_eq!((row.str("kind"), row.str("log_mode")), ("log", "overwrite"));

    // From the latest, on a log of its own (the many "six" could overwrite
    // this one's small ring).
    let g2 = posix("cli-log-latest");
    let t2 = arg(&g2);
    let log = Log::create(&g2, &shmq::LogConfig::new(8, 1024)).unwrap();
    log.publish(b"five").unwrap();
    let mut late = command(&[
        "tail",
        &t2,
        "--from",
        "latest",
        "--count",
        "1",
        "--timeout",
        "20",
    ])
    .spawn()
    .unwrap();
    // It subscribes at some point after starting: publish until it has
    // seen a message and exited.
    let ended = common::wait_until(Duration::from_secs(20), || {
        log.publish(b"six").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        late.try_wait().unwrap().is_some()
    });
    let out = finish(late, None, LIMIT).expect(0);
    assert!(ended, "tail --from latest never ended");
    assert_eq!(lines(&out), ["six"]);

    // A closed log: tail reads what is left and ends normally; pub is refused.
    Log::open(&g).unwrap().close();
    let out = run(&["tail", &t, "--from", "oldest", "--timeout", "10"]).expect(0);
    assert_eq!(lines(&out).len(), 16);
    let out = run_stdin(&["pub", &t], b"late\n").expect(1);
    assert!(out.stderr.contains("closed"), "{}", out.stderr);
    // Bad --from values are usage errors (clap's own, several lines).
    for bad in ["nowhere", "cursor:"] {
        let out = run(&["tail", &t, "--from", bad]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(out.stderr.contains("cursor:NAME"), "{}", out.stderr);
    }
    run(&["rm", &t]).expect(0);
    assert!(!g.exists());
}

#[test]
fn reliable_log_gates_pub_on_a_named_cursor_and_loses_nothing() {
    let g = posix("cli-rlog");
    let t = arg(&g);
    let out = run(&[
        "create",
        &t,
        "--kind",
        "log",
        "--log-mode",
        "reliable",
        "--slot-size",
        "32",
        "--capacity",
        "4",
        "--cursors",
        "2",
    ])
    .expect(0);
    assert!(
        out.stdout.contains("reliable log of 4 slots"),
        "{}",
        out.stdout
    );
    // The cursor exists before anything is published (a first tail creates it).
    run(&["tail", &t, "--from", "cursor:audit", "--timeout", "0.1"]).expect(9);
    // It gates publishers: 4 messages fit, the 5th waits and times out.
    let out = run(&["pub", &t, "--count", "6", "--timeout", "0.3"]).expect(9);
    assert!(out.stderr.contains("slowest subscriber"), "{}", out.stderr);
    let json = parse_json(run(&["stat", &t, "--json"]).expect(0).stdout.trim());
    assert_eq!(json.str("log_mode"), "reliable");
    assert_eq!(json_cursor(&json, "audit"), (0.0, 4.0));
    assert_eq!(json.get("counters").unwrap().num("published"), 4.0);
    let out = run(&["tail", &t, "--from", "cursor:audit", "--count", "4"]).expect(0);
    let want: Vec<String> = (0..4)
        .map(|i| format!("{:.<32}", format!("msg {i} ")))
        .collect();
    assert_eq!(lines(&out), want);

    // pub piped into tail through a 4-slot reliable log: pub waits for the
    // cursor, which tail commits after each printed line; nothing is lost.
    let lines_in: Vec<String> = (0..1000).map(|i| format!("line {i:04}")).collect();
    let input = lines_in
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    let tail = command(&[
        "tail",
        &t,
        "--from",
        "cursor:audit",
        "--count",
        "1000",
        "--timeout",
        "30",
    ])
    .spawn()
    .unwrap();
    let publisher = command(&["pub", &t, "--timeout", "30"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let p = finish(publisher, Some(input.into_bytes()), LIMIT).expect(0);
    assert!(
        p.stderr.contains("published 1000 message(s)"),
        "{}",
        p.stderr
    );
    let out = finish(tail, None, LIMIT).expect(0);
    assert_eq!(lines(&out), lines_in);
    let json = parse_json(run(&["stat", &t, "--json"]).expect(0).stdout.trim());
    assert_eq!(json_cursor(&json, "audit"), (1004.0, 0.0));
    assert_eq!(json.get("counters").unwrap().num("lagged"), 0.0);
}

#[test]
fn single_producer_queue_from_the_command_line() {
    let g = posix("cli-spsc");
    let t = arg(&g);
    let out = run(&[
        "create",
        &t,
        "--spsc",
        "--capacity",
        "4",
        "--slot-size",
        "16",
    ])
    .expect(0);
    assert!(
        out.stdout
            .contains("single-producer/single-consumer queue of 4 slots"),
        "{}",
        out.stdout
    );
    let stat = run(&["stat", &t]).expect(0);
    assert!(
        stat.stdout
            .contains("kind        queue (single producer, single consumer)"),
        "{}",
        stat.stdout
    );
    let tail = command(&["tail", &t, "--count", "20", "--timeout", "30"])
        .spawn()
        .unwrap();
    let input: String = (0..20).map(|i| format!("m{i}\n")).collect();
    run_stdin(&["pub", &t, "--timeout", "30", "-q"], input.as_bytes()).expect(0);
    let out = finish(tail, None, LIMIT).expect(0);
    let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(lines(&out), want);
}

// ---- bench ----

/// The /dev/shm names a bench process `pid` creates.
fn bench_leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("shmq-bench-{pid}-");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// The benchmark tests run one at a time: each keeps processes busy
/// (spinning cases), and two at once on two CPUs took 20-26 s where one
/// after the other take a few seconds (`--test-threads=2`).
fn one_bench_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static BENCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A failed bench test poisons the lock; the next one still runs.
    BENCH.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn bench_json_has_every_case_beside_the_raw_limits() {
    let _one_bench = one_bench_at_a_time();
    let child = command(&[
        "bench",
        "--sizes",
        "8,64",
        "--rounds",
        "2000",
        "--messages",
        "20000",
        "--case-secs",
        "0.2",
        "--idle",
        "0.3",
        "--json",
    ])
    .spawn()
    .unwrap();
    let pid = child.id();
    // Every default case, about 70 of them, each bounded by --case-secs or
    // its message count: seconds on a quiet machine, more on a loaded one.
    let out = finish(child, None, BENCH_LIMIT).expect(0);
    assert!(
        bench_leftovers(pid).is_empty(),
        "bench left segments behind"
    );
    let rows: Vec<Json> = out.stdout.lines().map(parse_json).collect();
    let find = |case: &str, size: f64| {
        rows.iter()
            .find(|r| r.str("case") == case && r.num("size") == size)
            .unwrap_or_else(|| panic!("no {case} {size} in:\n{}", out.stdout))
    };
    for size in [8.0, 64.0] {
        for case in [
            "raw-pingpong",
            "queue-spsc-pingpong-spin",
            "queue-spsc-pingpong-sleep",
            "queue-mpmc-pingpong-spin",
            "pipe-pingpong",
            "unix-pingpong",
        ] {
            let r = find(case, size);
            let (p50, p99, p999, max) = (
                r.num("p50_ns"),
                r.num("p99_ns"),
                r.num("p999_ns"),
                r.num("max_ns"),
            );
            assert!(
                0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
                "{r:?}"
            );
            assert!(r.num("samples") >= 100.0, "{r:?}");
        }
        for case in [
            "raw-ring",
            "queue-spsc-stream-spin",
            "queue-spsc-stream-sleep",
            "queue-mpmc-stream-spin",
            "pipe-stream",
            "unix-stream",
        ] {
            let r = find(case, size);
            assert!(
                r.num("msgs_per_s") > 0.0 && r.num("messages") > 0.0,
                "{r:?}"
            );
            assert!(r.num("messages") <= 20000.0);
        }
    }
    // Fan-out at 64 bytes: the log's one-way latency, and one publisher to
    // 1, 2 and 4 subscriber processes (each of which checked it got every
    // message in order, or the bench would have failed).
    let log = find("log-mpub-pingpong-spin", 64.0);
    assert!(
        0.0 < log.num("p50_ns") && log.num("p50_ns") <= log.num("p99_ns"),
        "{log:?}"
    );
    for n in [1.0, 2.0, 4.0] {
        let r = find(&format!("log-fanout-{n}sub"), 64.0);
        assert_eq!((r.num("producers"), r.num("consumers")), (1.0, n), "{r:?}");
        assert!(
            r.num("msgs_per_s") > 0.0 && r.num("messages") > 0.0 && r.num("messages") <= 20000.0,
            "{r:?}"
        );
    }
    assert!(!rows
        .iter()
        .any(|r| r.str("case").starts_with("log-") && r.num("size") == 8.0));
    // The log 1:1 beside the single-producer queue, at 48 bytes (one slot
    // line) and 64 (two), over both kinds of log.
    for size in [48.0, 64.0] {
        assert!(find("queue-spsc-stream-spin", size).num("msgs_per_s") > 0.0);
        for kind in ["mpub", "spub"] {
            assert!(find(&format!("log-{kind}-stream-spin"), size).num("msgs_per_s") > 0.0);
            assert!(find(&format!("log-{kind}-pingpong-spin"), size).num("p50_ns") > 0.0);
        }
    }
    assert_eq!(find("log-mpub-stream-spin", 48.0).num("slot_lines"), 1.0);
    assert_eq!(find("log-mpub-stream-spin", 64.0).num("slot_lines"), 2.0);
    // Paced fan-out: latency per subscriber from the scheduled send time,
    // and the subscribers' CPU time per delivered message.
    for wait in ["nospin", "sleep"] {
        for n in [1usize, 2, 4] {
            let r = find(&format!("log-paced-{n}sub-{wait}"), 64.0);
            assert!(
                r.num("p50_ns") > 0.0 && r.num("cpu_ns_per_msg") > 0.0,
                "{r:?}"
            );
            if n > 1 {
                let Some(Json::Arr(subs)) = r.get("subscribers") else {
                    panic!("no subscribers in {r:?}")
                };
                assert_eq!(subs.len(), n, "{r:?}");
            }
        }
    }
    let wake = find("queue-spsc-wakeup-sleep", 64.0);
    assert!(wake.num("p50_ns") > 0.0);
    for case in ["queue-spsc-idle-sleep", "queue-mpmc-idle-sleep"] {
        let idle = rows
            .iter()
            .find(|r| r.str("case") == case)
            .expect("idle case");
        assert!(
            idle.num("secs") >= 0.3 && idle.num("cpu_percent") >= 0.0,
            "{idle:?}"
        );
    }
    // The progress line went to stderr, not into the JSON.
    assert!(out.stderr.contains("[1/"), "{}", out.stderr);
}

#[test]
fn bench_table_and_several_producers_and_consumers() {
    let _one_bench = one_bench_at_a_time();
    let child = command(&[
        "bench",
        "--sizes",
        "64",
        "--producers",
        "2",
        "--consumers",
        "1,2",
        "--messages",
        "20000",
        "--case-secs",
        "0.2",
        "--cases",
        "raw-ring,stream-nospin",
        "--idle",
        "0",
        // Sleeping consumers: four spinning processes on two cores make
        // progress only as the scheduler allows (the run took over 60 s
        // while the machine was busy).
        "--wait",
        "nospin",
    ])
    .spawn()
    .unwrap();
    let pid = child.id();
    let out = finish(child, None, LIMIT).expect(0);
    assert!(bench_leftovers(pid).is_empty());
    for want in [
        "case",
        "vs raw",
        "raw-ring",
        "(limit)",
        "queue-mpmc-stream-nospin-2p1c",
        "queue-mpmc-stream-nospin-2p2c",
    ] {
        assert!(
            out.stdout.contains(want),
            "table lacks {want:?}:\n{}",
            out.stdout
        );
    }
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("queue-mpmc-stream-nospin-2p2c"))
        .unwrap();
    // Several producers: no single-producer case (it allows only one).
    assert!(!out.stdout.contains("queue-spsc"), "{}", out.stdout);
    assert!(
        row.trim_end().ends_with('x'),
        "no ratio to the raw ring: {row}"
    );
    // The spec's bars are checked against the 64-byte cases.
    let out = run(&[
        "bench",
        "--sizes",
        "64",
        "--cases",
        "pingpong",
        "--rounds",
        "1000",
        "--case-secs",
        "0.1",
        "--idle",
        "0",
    ])
    .expect(0);
    let bar = out
        .stdout
        .lines()
        .find(|l| l.contains("one-way latency p50"))
        .expect("bars printed");
    assert!(
        bar.contains("x raw-pingpong") && (bar.ends_with("met") || bar.ends_with("MISSED")),
        "{bar}"
    );
    assert!(
        out.stdout
            .contains("(multi-producer queue, same 1:1 cases: latency p50"),
        "{}",
        out.stdout
    );
    // Bad options are usage errors.
    run(&["bench", "--sizes", "0"]).expect(2);
    run(&["bench", "--subscribers", "0"]).expect(2);
    run(&["bench", "--cases", "no-such-case"]).expect(2);
}

#[test]
fn bench_interrupted_removes_its_segments_and_children() {
    let child = command(&["bench", "--sizes", "64", "--cases", "idle", "--idle", "30"])
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the idle case's queue exists, then Ctrl-C.
    let started = common::wait_until(Duration::from_secs(20), || !bench_leftovers(pid).is_empty());
    let had_child = common::wait_until(Duration::from_secs(20), || !bench_children(pid).is_empty());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let out = finish(child, None, Duration::from_secs(20)).expect(130);
    assert!(started, "the bench never created its segment");
    assert!(had_child, "the bench child was not found");
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert!(
        bench_leftovers(pid).is_empty(),
        "segments left after Ctrl-C: {:?}",
        bench_leftovers(pid)
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || bench_children(pid).is_empty()),
        "bench children outlived the interrupted bench: {:?}",
        bench_children(pid)
    );
}

/// Processes started by bench `pid` (their command line names it as parent).
fn bench_children(pid: u32) -> Vec<u32> {
    let marker = "bench-child\0";
    let parent = format!("\0--parent\0{pid}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u32>().ok())
        .filter(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains(marker) && cmd.contains(parent.as_str())
        })
        .collect()
}

#[test]
fn cursor_ls_and_rm_release_a_gating_named_cursor() {
    let t = common::posix("cli-cursor");
    let log = shmq::Log::create(
        &t,
        &shmq::LogConfig::new(16, 4).mode(shmq::LogMode::Reliable),
    )
    .unwrap();
    log.create_cursor("billing\u{1b}[31m", shmq::Start::Latest)
        .unwrap();
    for _ in 0..4 {
        log.publish(b"x").unwrap();
    }
    assert_eq!(log.publish(b"y"), Err(shmq::SendError::Full));
    let out = run(&["cursor", "ls", &arg(&t)]).expect(0);
    assert!(out.stdout.contains("billing\\u{1b}[31m"), "{}", out.stdout);
    assert!(!out.stdout.contains('\u{1b}'), "escaped: {}", out.stdout);
    run(&["cursor", "rm", &arg(&t), "billing\u{1b}[31m"]).expect(0);
    // No longer gated, and no cursor left at all: nobody would read it.
    assert_eq!(log.publish(b"y"), Err(shmq::SendError::NotConnected));
    let _sub = log.subscribe(shmq::Start::Latest).unwrap();
    assert_eq!(log.publish(b"y"), Ok(4), "no longer gated");
    assert_eq!(run(&["cursor", "rm", &arg(&t), "billing"]).code, 3);
    run(&["cursor", "--help"]).expect(0);
}

/// `create --cursor` declares durable cursors at creation: a reliable log
/// keeps every message for a reader that starts later; with nobody
/// registered, `pub` is refused (exit 3), or waits up to --timeout (exit 9).
#[test]
fn create_cursor_declares_durable_cursors_and_pub_says_when_nobody_is_subscribed() {
    let t = common::posix("cli-durable");
    let out = run(&[
        "create",
        &arg(&t),
        "--kind",
        "log",
        "--log-mode",
        "reliable",
        "--capacity",
        "4",
        "--slot-size",
        "16",
        "--cursor",
        "audit",
        "--cursor",
        "billing",
    ])
    .expect(0);
    assert!(
        out.stdout
            .contains("durable cursors at message 0: \"audit\", \"billing\""),
        "{}",
        out.stdout
    );
    // 4 fit (gated by the declared cursors from the first message); the
    // fifth waits for its timeout.
    let out = run_stdin(
        &["pub", &arg(&t), "--timeout", "0.2"],
        b"m1\nm2\nm3\nm4\nm5\n",
    )
    .expect(9);
    assert!(out.stderr.contains("slowest subscriber"), "{}", out.stderr);
    // A reader that starts now still gets everything from message 1.
    let out = run(&[
        "tail",
        &arg(&t),
        "--from",
        "cursor:audit",
        "--count",
        "4",
        "--timeout",
        "5",
    ])
    .expect(0);
    assert_eq!(out.stdout, "m1\nm2\nm3\nm4\n");
    let log = shmq::Log::open(&t).unwrap();
    assert_eq!(log.stats().lagged, 0);
    drop(log);

    // A reliable log with nobody registered.
    let empty = common::posix("cli-nobody");
    let out = run(&[
        "create",
        &arg(&empty),
        "--kind",
        "log",
        "--log-mode",
        "reliable",
    ])
    .expect(0);
    assert!(
        out.stdout.contains("nobody is registered"),
        "{}",
        out.stdout
    );
    let out = run_stdin(&["pub", &arg(&empty)], b"lost?\n").expect(3);
    assert!(
        out.stderr.contains("nobody is subscribed"),
        "{}",
        out.stderr
    );
    let out = run_stdin(&["pub", &arg(&empty), "--timeout", "0.1"], b"lost?\n").expect(9);
    assert!(out.stderr.contains("nobody subscribed"), "{}", out.stderr);
    assert_eq!(
        shmq::Log::open(&empty).unwrap().next_seq(),
        0,
        "nothing written"
    );
    // Overwrite mode: publishing with nobody is fine.
    let over = common::posix("cli-over");
    run(&["create", &arg(&over), "--kind", "log"]).expect(0);
    run_stdin(&["pub", &arg(&over)], b"fine\n").expect(0);

    // Bad declarations: usage errors, nothing created.
    let bad = common::posix("cli-bad-cursor");
    for args in [
        vec![
            "create", "X", "--kind", "log", "--cursor", "a", "--cursor", "a",
        ],
        vec![
            "create",
            "X",
            "--kind",
            "log",
            "--cursors",
            "1",
            "--cursor",
            "a",
            "--cursor",
            "b",
        ],
        vec!["create", "X", "--kind", "log", "--cursor", ""],
        vec!["create", "X", "--cursor", "a"],
    ] {
        let name = arg(&bad);
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "X" { name.as_str() } else { a })
            .collect();
        run(&args).expect(2);
        assert!(shmq::Log::open(&bad).is_err(), "nothing left by {args:?}");
    }
    run(&["create", "--help"]).expect(0);
}
