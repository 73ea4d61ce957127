//! The Rust side of the per-call cost comparison of the language bindings:
//! try-enqueue and try-dequeue of 64-byte messages, one thread, one queue
//! (slot 64, capacity 1024), in rounds of 1024 enqueues then 1024 dequeues;
//! the best of 7 runs. ffi/c/bench_try.c and the Go BenchmarkTryPair do the
//! same through the C interface; `ffi/bench.sh` runs all three in a row.
//!
//! Run: `cargo bench --bench ffi_overhead`

use std::time::Instant;

use shmq::{Queue, QueueConfig, Target};

const CAP: usize = 1024;
const ROUNDS: usize = 500;

fn main() {
    let target = Target::Posix(format!("shmq-rsbench-{}", std::process::id()));
    let q = Queue::create(&target, &QueueConfig::new(64, CAP)).expect("create the queue");
    target.unlink().expect("unlink"); // nothing left behind, whatever happens
    let msg = [1u8; 64];
    let mut buf = [0u8; 64];
    let (mut best_enq, mut best_deq) = (f64::MAX, f64::MAX);
    for _ in 0..7 {
        let (mut enq, mut deq) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            for _ in 0..CAP {
                q.enqueue_try(std::hint::black_box(&msg)).expect("room");
            }
            let t1 = Instant::now();
            for _ in 0..CAP {
                std::hint::black_box(q.dequeue_try(&mut buf).expect("a message"));
            }
            let t2 = Instant::now();
            enq += (t1 - t0).as_nanos() as f64;
            deq += (t2 - t1).as_nanos() as f64;
        }
        enq /= (ROUNDS * CAP) as f64;
        deq /= (ROUNDS * CAP) as f64;
        if enq + deq < best_enq + best_deq {
            (best_enq, best_deq) = (enq, deq);
        }
    }
    println!(
        "Rust  try_enqueue {best_enq:6.1} ns  try_dequeue {best_deq:6.1} ns  pair {:6.1} ns  (64 B, best of 7)",
        best_enq + best_deq
    );
}
