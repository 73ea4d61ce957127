#!/usr/bin/env bash
# The language bindings' benchmarks in one run and one table: the Rust
# per-call bench (benches/ffi_overhead.rs), the C one (ffi/c/bench_try.c),
# and the Go benchmarks (`go test -bench` in ffi/go), beside the Rust
# cross-process SPSC queue of `shmq bench` for scale.
#
#   scripts/bench-ffi.sh            COUNT=3 BENCHTIME=1s by default
#   COUNT=5 BENCHTIME=2s scripts/bench-ffi.sh
#
# Every row: case, language, time per operation (the median of the Go
# runs), the operations per second that makes, and the benchmark's own
# extra figures. A Go benchmark whose name has Batch or ZeroCopy in it (the
# batch and zero-copy calls, when they exist) is reported like the others;
# without one, the row says it is not available in this build.
#
# ffi/bench.sh is the older, more detailed run of the same benchmarks with
# their raw output (cancel latency, idle CPU as well).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-3}
BENCHTIME=${BENCHTIME:-1s}
for tool in cargo cc go pkg-config; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "bench-ffi: '$tool' not found (scripts/install-deps.sh installs it)" >&2
        exit 1
    }
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "bench-ffi: building (cargo build --release, ffi/c bench_try)" >&2
cargo build --release --quiet
make -s -C ffi/c build/bench_try >&2
# The Go package finds libshmq with pkg-config: the library just built (the
# same directory in CGO_LDFLAGS keys Go's build cache, which does not notice
# a change in pkg-config's output: golang/go#24544).
scripts/install.sh --pc-only >&2
export PKG_CONFIG_PATH="$PWD/target/release/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export CGO_LDFLAGS="-L$PWD/target/release -Wl,-rpath,$PWD/target/release"

echo "bench-ffi: Rust per-call bench" >&2
cargo bench --quiet --bench ffi_overhead 2>/dev/null | grep '^Rust ' >"$out/rust.txt"
echo "bench-ffi: C per-call bench" >&2
ffi/c/build/bench_try | grep '^C ' >"$out/c.txt"
echo "bench-ffi: Rust cross-process SPSC queue (shmq bench)" >&2
target/release/shmq bench --sizes 64 --fanout-sizes 64 --cases queue-spsc-stream-spin,queue-spsc-pingpong-spin \
    --idle 0 --json 2>/dev/null >"$out/shmq.json"
echo "bench-ffi: Go benchmarks (go test -bench, count $COUNT, benchtime $BENCHTIME)" >&2
(cd ffi/go && go test -run '^$' \
    -bench 'TryPair|BlockPair|BlockHandoff|PingPongProcesses|CgoFloor|Batch|ZeroCopy' \
    -benchtime "$BENCHTIME" -count "$COUNT" .) >"$out/go.txt"

machine=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
echo "bench-ffi: $machine, $(nproc) CPUs, Linux $(uname -r)"
echo "other processes: load average $(cut -d' ' -f1-3 /proc/loadavg) (busy-spinning figures suffer when it is above ~0)"
echo

{
    printf 'case\tlang\tper op\tops/s\tdetail\n'
    # "Rust  try_enqueue   21.6 ns  try_dequeue   20.4 ns  pair   42.0 ns  (64 B, best of 7)";
    # C's lines name the handle between the language and the figures
    # ("C spsc roles  try_enqueue ..."), so fields are found by their labels.
    for lang in rust c; do
        awk -v lang="$lang" '{
            what = ""
            for (i = 2; i <= NF; i++) {
                if ($i == "try_enqueue") enq = $(i + 1)
                else if ($i == "try_dequeue") deq = $(i + 1)
                else if ($i == "pair") pair = $(i + 1)
                if (enq == "") what = what (what == "" ? "" : " ") $i
            }
            name = lang (what == "" ? "" : " (" what ")")
            printf "try-pair-64B\t%s\t%.1f ns\t%.2f M\ttry_enqueue %s ns, try_dequeue %s ns (one thread, best of 7)\n",
                name, pair, 1000 / pair, enq, deq
            enq = ""; deq = ""; pair = ""
        }' "$out/$lang.txt"
    done
    # shmq bench's JSON rows: one-way latency and cross-process throughput.
    awk '{
        case_ = $0; sub(/.*"case":"/, "", case_); sub(/".*/, "", case_)
        size = $0; sub(/.*"size":/, "", size); sub(/[,}].*/, "", size)
        if ($0 ~ /"msgs_per_s":/) {
            r = $0; sub(/.*"msgs_per_s":/, "", r); sub(/[,}].*/, "", r)
            printf "%s-%dB\trust\t%.1f ns\t%.2f M\tshmq bench, producer and consumer processes\n", case_, size, 1e9 / r, r / 1e6
        } else if ($0 ~ /"p50_ns":/) {
            p = $0; sub(/.*"p50_ns":/, "", p); sub(/[,}].*/, "", p)
            q = $0; sub(/.*"p99_ns":/, "", q); sub(/[,}].*/, "", q)
            printf "%s-%dB\trust\t%d ns\t-\tshmq bench, one-way p50 (p99 %d ns)\n", case_, size, p, q
        }
    }' "$out/shmq.json"
    # "BenchmarkTryPair-2  5000000  220 ns/op  110 enq-ns/op  110 deq-ns/op": the
    # median ns/op of the runs per benchmark, with its extra metrics.
    awk '
        /^Benchmark/ {
            name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
            extra = ""
            for (i = 5; i + 1 <= NF; i += 2) extra = extra (extra == "" ? "" : ", ") $i " " $(i + 1)
            n[name]++; ns[name, n[name]] = $3; ex[name, n[name]] = extra
            if (!(name in order)) { order[name] = ++names; byidx[names] = name }
        }
        END {
            for (k = 1; k <= names; k++) {
                name = byidx[k]; c = n[name]
                # sort the runs by ns/op (insertion sort: a handful of runs)
                for (i = 1; i <= c; i++) idx[i] = i
                for (i = 2; i <= c; i++)
                    for (j = i; j > 1 && ns[name, idx[j]] + 0 < ns[name, idx[j - 1]] + 0; j--) {
                        t = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = t
                    }
                m = idx[int((c + 1) / 2)]
                printf "%s\tgo\t%.1f ns\t%.2f M\tmedian of %d: %s\n", name, ns[name, m], 1000 / ns[name, m], c, ex[name, m]
            }
        }' "$out/go.txt"
    grep -q '^BenchmarkBatch\|^Benchmark.*Batch' "$out/go.txt" ||
        printf 'Batch\tgo\t-\t-\tnot available in this build (no Go batch benchmark yet)\n'
    grep -q '^Benchmark.*ZeroCopy' "$out/go.txt" ||
        printf 'ZeroCopy\tgo\t-\t-\tnot available in this build (no Go zero-copy benchmark yet)\n'
} | column -t -s "$(printf '\t')"
echo
echo "per op: one call pair (try-pair), one message (throughput), one round trip (PingPongProcesses: its one-way-ns is half); ops/s = 1e9 / per op"
