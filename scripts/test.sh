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
need pkg-config "the Go package finds libshmq with pkg-config"

sysv_count() { ipcs -m 2>/dev/null | awk '$1 ~ /^0x/ {n++} END {print n+0}'; }
posix_count() { ls -1 /dev/shm 2>/dev/null | grep -c '^shmq' || true; }
sysv_before=$(sysv_count)
posix_before=$(posix_count)

# Everything is built once, in the test-release profile (Cargo.toml):
# optimised, with overflow checks, so that arithmetic on counters read from
# shared memory that could overflow panics in the tests instead of wrapping
# unseen. The C and Go tests link the libshmq.so built here.
profile=test-release
libdir="$PWD/target/$profile"
phase_start=$SECONDS
phase() {
    echo "   ($(( SECONDS - phase_start )) s)"
    phase_start=$SECONDS
    echo "== $1"
}

echo "== cargo build --profile $profile (the workspace: engine, libshmq.so/.a, shmq, examples)"
cargo build --profile "$profile" --workspace --lib --bins --examples

phase "Rust: unit, doc, integration and multi-process tests (engine, C layer, CLI)"
cargo test --profile "$profile" --workspace -- --test-threads=2

phase "C tests (ffi/c)"
make -C ffi/c test LIBDIR="$libdir"

phase "Go tests (ffi/go)"
# The package finds libshmq with `#cgo pkg-config: shmq`: an uninstalled
# shmq.pc for this build's library (target/test-release) and include/ comes
# first in the search path, so this build wins over any installed copy. The
# same directory in CGO_LDFLAGS keys Go's build cache, which does not notice a
# change in pkg-config's output (golang/go#24544): no package built against
# target/release is reused. Some Go tests build the C programs with ffi/c's
# Makefile: LIBDIR too.
scripts/install.sh --pc-only --libdir "$libdir"
export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export CGO_LDFLAGS="-L$libdir -Wl,-rpath,$libdir"
export SHMQ_TARGET_DIR="$libdir" LIBDIR="$libdir"
(cd ffi/go && go vet ./... && go test -race -count=1 ./...)

phase "packaging: install into a temporary prefix; C, Go and a Rust dependent build from it"
scripts/test-install.sh "$profile"
phase "shared-memory leak check"

sysv_after=$(sysv_count)
posix_after=$(posix_count)
if [ "$sysv_after" -gt "$sysv_before" ] || [ "$posix_after" -gt "$posix_before" ]; then
    echo "error: tests left shared memory behind: SysV $sysv_before -> $sysv_after, /dev/shm shmq* $posix_before -> $posix_after" >&2
    ipcs -m >&2
    ls -l /dev/shm >&2
    exit 1
fi
echo "== all tests passed; no shared memory left behind ($SECONDS s in all)"
