//! The committed C header must be exactly what cbindgen generates from
//! capi/src now: header drift is a test failure.
//!
//! build.rs writes a fresh generation to `$OUT_DIR/shmq.h` on every build of
//! the crate; this test compares it with `include/shmq.h`.

use std::path::Path;

#[test]
fn committed_header_matches_a_fresh_generation() {
    let fresh_path = concat!(env!("OUT_DIR"), "/shmq.h");
    let fresh = std::fs::read_to_string(fresh_path).unwrap_or_else(|e| {
        panic!("build.rs did not generate {fresh_path} ({e}); see the cargo warnings of the build")
    });
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/shmq.h");
    let committed = std::fs::read_to_string(&committed_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", committed_path.display()));
    if fresh != committed {
        let line = fresh
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| fresh.lines().count().min(committed.lines().count()));
        panic!(
            "include/shmq.h differs from a fresh cbindgen generation (first difference at line {}):\n  \
             generated: {:?}\n  committed: {:?}\n\
             Regenerate it with `SHMQ_UPDATE_HEADER=1 cargo build` and commit it.",
            line + 1,
            fresh.lines().nth(line).unwrap_or("<end of file>"),
            committed.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn header_declares_every_exported_function() {
    // Every `#[no_mangle]` function of capi/src appears in the header.
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/shmq.h"))
            .unwrap();
    let capi = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut seen = 0;
    for entry in std::fs::read_dir(&capi).unwrap() {
        let src = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in src.lines() {
            let Some(rest) = line.split("extern \"C\" fn ").nth(1) else {
                continue;
            };
            let name = rest.split('(').next().unwrap();
            assert!(
                committed.contains(&format!("{name}(")),
                "{name} is missing from include/shmq.h"
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 20,
        "found only {seen} exported functions in capi/src"
    );
}
