#!/usr/bin/env bash
# The market-data feed with four subscribers in three languages: the Rust
# publisher (examples/market_pub.rs) paces quotes at RATE per second for
# SECS seconds into a reliable log with a durable cursor per subscriber;
# two Rust subscribers (examples/market_sub.rs), a C one
# (ffi/c/examples/market_sub.c) and a Go one (ffi/go/examples/market-sub)
# each read every quote and print a latency histogram measured from the
# quote's scheduled send time.
#
#   examples/market/feed.sh                 RATE=100000 SECS=5 by default
#   RATE=50000 SECS=10 examples/market/feed.sh
#
# Needs cargo, cc and go. On a machine with fewer free cores than the five
# processes, the figures show the scheduler as much as shmq.
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${RATE:-100000}
SECS=${SECS:-5}
TARGET=shmq-market-feed-$$

cargo build --release --quiet --example market_pub --example market_sub
cargo build --release --quiet # libshmq.so for C and Go
make -s -C ffi/c build/market_sub
out=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$out"
    rm -f "/dev/shm/$TARGET"
}
trap cleanup EXIT
(cd ffi/go && go build -o "$out/market-sub-go" ./examples/market-sub)

target/release/examples/market_pub --target "$TARGET" --rate "$RATE" --secs "$SECS" \
    --cursors rust,rust2,c,go >"$out/pub.txt" &
pids+=($!)
target/release/examples/market_sub --target "$TARGET" --name rust >"$out/rust.txt" &
pids+=($!)
target/release/examples/market_sub --target "$TARGET" --name rust2 >"$out/rust2.txt" &
pids+=($!)
ffi/c/build/market_sub "$TARGET" --name c >"$out/c.txt" &
pids+=($!)
"$out/market-sub-go" -target "$TARGET" -name go >"$out/go.txt" &
pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
pids=()

grep '^done:' "$out/pub.txt" | sed 's/, cursors .*//'
for s in rust rust2 c go; do
    echo "== $s"
    tail -n 2 "$out/$s.txt"
done
exit $status
