//! Quick direction check of the work queue's zero-copy and batch calls
//! (one producer thread, one consumer thread, in-process queue): messages
//! per second, copying vs zero-copy (4096 bytes) and single vs batches of 32
//! (64 bytes), both modes. The lead's figures come from `shmq bench` across
//! processes; this is for development only.

use std::time::Instant;

use shmq::{Queue, QueueConfig};

const N: u64 = 2_000_000;

fn run(name: &str, size: usize, spsc: bool, batch: usize, zero_copy: bool) {
    let q = Queue::in_process(&QueueConfig::new(size, 1024).spsc(spsc)).unwrap();
    let n = if size > 1024 { N / 8 } else { N };
    let t0 = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let msg = vec![7u8; size];
            let msgs: Vec<&[u8]> = (0..batch).map(|_| &msg[..]).collect();
            let mut sent = 0;
            while sent < n {
                if zero_copy {
                    if let Ok(mut r) = q.reserve(size) {
                        r.fill(sent as u8);
                        r.commit(size).unwrap();
                        sent += 1;
                    }
                } else if batch > 1 {
                    let k = ((n - sent) as usize).min(batch);
                    if let Ok(c) = q.enqueue_batch(&msgs[..k]) {
                        sent += c as u64;
                    }
                } else {
                    let mut m = msg.clone();
                    m.fill(sent as u8);
                    if q.enqueue_try(&m).is_ok() {
                        sent += 1;
                    }
                }
            }
        });
        let mut got = 0u64;
        let mut buf = vec![0u8; size];
        let mut sum = 0u64;
        while got < n {
            if zero_copy {
                if let Ok(m) = q.consume() {
                    sum += m[..64].iter().map(|&b| b as u64).sum::<u64>();
                    got += 1;
                }
            } else if batch > 1 {
                if let Ok(c) = q.dequeue_batch(batch, |m| sum += m[0] as u64) {
                    got += c as u64;
                }
            } else if let Ok(len) = q.dequeue_try(&mut buf) {
                sum += buf[..64.min(len)].iter().map(|&b| b as u64).sum::<u64>();
                got += 1;
            }
        }
        std::hint::black_box(sum);
    });
    let secs = t0.elapsed().as_secs_f64();
    println!("{name:<40} {:>8.2} M msg/s", n as f64 / secs / 1e6);
}

fn main() {
    for spsc in [true, false] {
        let m = if spsc { "spsc" } else { "mpmc" };
        run(&format!("{m} 64 B single"), 64, spsc, 1, false);
        run(&format!("{m} 64 B batch 32"), 64, spsc, 32, false);
        run(&format!("{m} 4096 B copying"), 4096, spsc, 1, false);
        run(&format!("{m} 4096 B zero-copy"), 4096, spsc, 1, true);
    }
}
