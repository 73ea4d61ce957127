//! A short run of the crash campaign (`shmq crash`, see
//! cli/src/crash.rs): real processes on each kind of segment are
//! SIGKILLed at random moments and replaced; every round then closes,
//! drains and checks every invariant (no torn message, no duplicate, no
//! loss beyond a message in hand, FIFO, no stall, no crash of a survivor,
//! no leaked segment). The queues also run with `--batch 8`, killed inside
//! their batch calls. The long run (10,000 kills per kind) is documented
//! in the README.
//!
//! Recovery latency is reported but not asserted here (`--latency-bar-ms 0`):
//! a debug build sharing a loaded machine with other tests says little
//! about it; `recovery_p99_within_10ms` asserts the bar, on demand.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The value of `"key":` in a flat JSON text (the first occurrence).
fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    &rest[..end]
}

fn count(json: &str, key: &str) -> u64 {
    field(json, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a count in {json}"))
}

/// Runs `shmq crash` with `args` (plus `--json`), at most `limit`; returns
/// whether it exited 0 and its JSON summary.
fn campaign(args: &[&str], limit: Duration) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmq"))
        .arg("crash")
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shmq crash");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait for shmq crash").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shmq crash {args:?} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("collect shmq crash output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "shmq crash {args:?}:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), stdout)
}

/// Runs a campaign of `kills` SIGKILLs on one kind and asserts that every
/// invariant held and the tool says so.
fn assert_survives(kind: &str, backing: &str, kills: u64) {
    assert_survives_with(kind, backing, kills, &[]);
}

/// As `assert_survives`, with more `shmq crash` arguments; returns the JSON.
fn assert_survives_with(kind: &str, backing: &str, kills: u64, more: &[&str]) -> String {
    let kills_s = kills.to_string();
    let mut args = vec![
        "--kinds",
        kind,
        "--backing",
        backing,
        "--kills",
        &kills_s,
        "--round-kills",
        "10",
        "--latency-bar-ms",
        "0",
    ];
    args.extend_from_slice(more);
    let (success, json) = campaign(&args, Duration::from_secs(120));
    assert_eq!(field(&json, "kind"), format!("\"{kind}\""));
    for key in [
        "stalls",
        "torn",
        "wrong_length",
        "phantom",
        "duplicates",
        "losses",
        "order",
        "crashes",
        "leaked_segments",
    ] {
        assert_eq!(count(&json, key), 0, "{key} on {kind}/{backing}: {json}");
    }
    // A stalled round ends early: count the kills once stalls are ruled out.
    assert_eq!(count(&json, "kills"), kills, "every kill was made");
    assert!(count(&json, "messages") > 0, "messages flowed");
    assert!(count(&json, "in_hand_losses") <= kills);
    assert_eq!(field(&json, "ok"), "true", "{json}");
    assert!(success, "shmq crash exits 0 when every invariant held");
    json
}

#[test]
fn spsc_survives_sigkill_on_every_backing() {
    assert_survives("spsc", "posix", 100);
    assert_survives("spsc", "sysv", 50);
    assert_survives("spsc", "file", 50);
}

#[test]
fn mpmc_survives_sigkill() {
    assert_survives("mpmc", "posix", 100);
    assert_survives("mpmc", "file", 30);
}

#[test]
fn queues_survive_sigkill_inside_batch_calls() {
    for kind in ["mpmc", "spsc"] {
        let json = assert_survives_with(kind, "posix", 20, &["--batch", "8"]);
        assert_eq!(count(&json, "batch"), 8, "{json}");
        // A batch receive records each message before it frees the slot.
        assert_eq!(count(&json, "in_hand_losses"), 0, "{json}");
    }
}

#[test]
fn reliable_log_survives_sigkill() {
    assert_survives("log-reliable", "posix", 100);
}

#[test]
fn overwrite_log_survives_sigkill() {
    assert_survives("log-overwrite", "posix", 100);
}

#[test]
fn single_publisher_log_survives_sigkill() {
    assert_survives("log-single", "posix", 100);
}

#[test]
#[ignore = "issue 8 bar (p99 recovery <= 10 ms on every kind): a timing, meaningful only on \
            a release build on a quiet machine: \
            cargo test --release --test crash_campaign -- --ignored recovery"]
fn recovery_p99_within_10ms() {
    let (success, json) = campaign(&["--kills", "200"], Duration::from_secs(300));
    assert!(success, "{json}");
}
