#!/usr/bin/env bash
# Model checking of the crash-recovery protocols with loom: the work queue's
# (tests/model_recovery.rs) and the log's (tests/model_log.rs), how a
# single-publisher log wakes its subscribers (tests/model_wake.rs), and a
# single-producer queue's batches and producer takeover (tests/model_spsc.rs). Each model
# prints its interleaving count, preemption bound and time on stderr.
#
#   scripts/model.sh                 every model
#   scripts/model.sh producer_crash  the models whose name contains a word
#   scripts/model.sh --ignored       the models kept failing: bugs found as is
#
# LOOM_MAX_PREEMPTIONS overrides each model's own bound (2 or 3); the
# defaults keep every model under a minute on one core. A separate target
# directory keeps the --cfg loom build from evicting the normal one.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
status=0
for t in model_recovery model_log model_wake model_spsc; do
    echo "== $t"
    cargo test --release --test "$t" -- --test-threads=1 --nocapture "$@" || status=1
done
exit $status
