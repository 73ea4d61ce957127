#!/usr/bin/env bash
# Coverage-guided fuzzing of untrusted segments with libFuzzer (cargo-fuzz),
# on stable Rust (RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's -Z flags).
#
#   scripts/fuzz.sh [TARGET] [RUNS] [JOBS]
#
# TARGET: header (Params::validate and the unpublished-segment classifier on
# arbitrary bytes) or operations (every operation on a mutated queue or log);
# default: both, one after the other. RUNS: executions per target (default
# 1000000). JOBS: parallel fuzzing processes (default 1). Targets build with
# overflow checks and debug assertions (fuzz/Cargo.toml). Crashes land in
# fuzz/artifacts/TARGET/; replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets=${1:-"header operations"}
runs=${2:-1000000}
jobs=${3:-1}
export RUSTC_BOOTSTRAP=1
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    echo "== fuzz $t: $runs executions, $jobs job(s)"
    # -timeout: an input running longer than 10 s is a hang (blocking calls
    # use 1 ms timeouts). No sanitizer: the code under test is safe Rust over
    # validated offsets; overflow checks and assertions catch the rest.
    cargo fuzz run --sanitizer none --release "$t" "fuzz/corpus/$t" -- \
        -runs="$runs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        $( [ "$jobs" -gt 1 ] && echo "-jobs=$jobs -workers=$jobs" )
done
rm -f /dev/shm/shmq-fuzz-ops-*
