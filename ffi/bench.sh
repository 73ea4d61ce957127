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
cargo bench --quiet --bench ffi_overhead
make -s -C ffi/c build/bench_try
ffi/c/build/bench_try
cd ffi/go
go test -run '^$' -bench 'TryPair|BlockPair|CgoFloor' -benchtime "${BENCHTIME:-1s}" -count "${COUNT:-3}" .
go test -run '^$' -bench 'PingPongProcesses|CancelLatency|BlockHandoff' -benchtime "${BENCHTIME:-1s}" -count "${COUNT:-3}" .
go test -run '^$' -bench 'IdleWait' -benchtime 6x .
