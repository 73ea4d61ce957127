//! Exit codes as the shmq command's: a bad routes file is a usage error
//! (2), a missing local target is "not found" (3), a corrupt state file is
//! "corrupt" (5). None of these needs a NATS server (the bridge connects
//! in the background, so the local checks fail first).

mod common;

use std::process::Command;

use common::*;
use shmq::LogMode;

fn bridge(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shmq-bridge"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// A port nobody listens on: bound, then released.
fn dead_server() -> String {
    format!("nats://127.0.0.1:{}", free_port())
}

#[test]
fn bad_routes_file_is_a_usage_error() {
    let dir = TempDir::new("exit-usage");
    let cfg = dir.path("routes.toml");
    std::fs::write(&cfg, "[[route]]\nname = \"x\"\ndirection = \"sideways\"\n").unwrap();
    let (code, err) = bridge(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("routes.toml"), "{err}");
}

#[test]
fn missing_local_target_is_not_found() {
    let name = format!("posix:{}", unique("missing"));
    let server = dead_server();
    let (code, err) = bridge(&[
        "out",
        "--local",
        &name,
        "--subject",
        "x.y",
        "--server",
        &server,
    ]);
    assert_eq!(code, Some(3), "{err}");
}

#[test]
fn corrupt_state_file_is_corrupt() {
    let dir = TempDir::new("exit-corrupt");
    let b = TestLog::create("b", LogMode::Overwrite, 64);
    let state = dir.path("in.state");
    std::fs::write(&state, b"SHMQBRS1 this is not a state record").unwrap();
    let server = dead_server();
    let (code, err) = bridge(&[
        "in",
        "--local",
        &b.name(),
        "--subject",
        "x.y",
        "--server",
        &server,
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("corrupt"), "{err}");
}
