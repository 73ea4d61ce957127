#!/usr/bin/env bash
# Per-call cost of the language bindings, measured in one run on this
# machine: try-enqueue + try-dequeue of 64 bytes from Rust (direct), C (the C
# interface) and Go (cgo over the C interface), same method in each; then the
# one-way latency between two Go processes (ping-pong), how fast a Go
# blocking call returns after its context is cancelled, and what an idle
# blocked Go call costs in CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
# The Go package finds libshmq with pkg-config: the library just built (the
# same directory in CGO_LDFLAGS keys Go's build cache, which does not notice
# a change in pkg-config's output: golang/go#24544).
scripts/install.sh --pc-only >/dev/null
export PKG_CONFIG_PATH="$PWD/target/release/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export CGO_LDFLAGS="-L$PWD/target/release -Wl,-rpath,$PWD/target/release"
cargo bench --quiet --bench ffi_overhead
make -s -C ffi/c build/bench_try
ffi/c/build/bench_try
cd ffi/go
go test -run '^$' -bench 'TryPair|BlockPair|CgoFloor' -benchtime "${BENCHTIME:-1s}" -count "${COUNT:-3}" .
go test -run '^$' -bench 'PingPongProcesses|CancelLatency|BlockHandoff' -benchtime "${BENCHTIME:-1s}" -count "${COUNT:-3}" .
go test -run '^$' -bench 'IdleWait' -benchtime 6x .
