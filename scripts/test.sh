#!/usr/bin/env bash
# The test command: builds everything and runs every test — Rust unit, doc and
# multi-process tests, the C tests and the Go tests — then checks that no
# shared-memory segment was left behind. A missing toolchain is an error.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "error: '$1' not found: $2 (scripts/install-deps.sh installs it)" >&2
        exit 1
    }
}
need cargo "the Rust toolchain is required"
need cc "a C compiler is required for the C tests"
need go "Go is required for the Go tests"

sysv_count() { ipcs -m 2>/dev/null | awk '$1 ~ /^0x/ {n++} END {print n+0}'; }
posix_count() { ls -1 /dev/shm 2>/dev/null | grep -c '^shmq' || true; }
sysv_before=$(sysv_count)
posix_before=$(posix_count)

echo "== cargo build --release (libshmq.so, libshmq.a, shmq, examples)"
cargo build --release
# The Go market-data example test runs the Rust publisher example.
cargo build --release --examples

echo "== Rust: unit, doc, integration and multi-process tests"
# The test-release profile is release with overflow checks on (Cargo.toml);
# tests/ffi_cross.rs needs its libshmq.so in target/test-release.
cargo build --profile test-release --lib && cargo test --profile test-release -- --test-threads=2

echo "== C tests (ffi/c)"
make -C ffi/c test

echo "== Go tests (ffi/go)"
(cd ffi/go && go vet ./... && go test -race -count=1 ./...)

sysv_after=$(sysv_count)
posix_after=$(posix_count)
if [ "$sysv_after" -gt "$sysv_before" ] || [ "$posix_after" -gt "$posix_before" ]; then
    echo "error: tests left shared memory behind: SysV $sysv_before -> $sysv_after, /dev/shm shmq* $posix_before -> $posix_after" >&2
    ipcs -m >&2
    ls -l /dev/shm >&2
    exit 1
fi
echo "== all tests passed; no shared memory left behind"
