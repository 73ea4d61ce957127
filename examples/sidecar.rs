//! A sidecar: an application process writes records to a work queue; the
//! sidecar batches them to a backend that takes at most 4096 bytes per
//! request, flushing every 100 records, every 100 ms, and on close.
//!
//! ```sh
//! cargo run --release --example sidecar            # 2000 records
//! cargo run --release --example sidecar -- 10000   # 10000 records
//! ```
//!
//! The backend here is a stand-in that counts what it receives and takes
//! a millisecond per request.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmq::batcher::{BatchConfig, Batcher};
use shmq::{Queue, QueueConfig, Target};

/// The backend's limit per request.
const MAX_BYTES: usize = 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--app") {
        return app(&args[1].parse()?, args[2].parse()?);
    }
    let records: u64 = args.first().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let target: Target = format!("sidecar-{}", std::process::id()).parse()?;
    // Owned: the queue's name is removed when the sidecar ends.
    let queue = Queue::create_owned(&target, &QueueConfig::new(512, 1024))?;

    // The application: another process, writing records of 40 to 500 bytes.
    let mut app = Command::new(std::env::current_exe()?)
        .args(["--app", &target.to_string(), &records.to_string()])
        .stdin(Stdio::null())
        .spawn()?;

    let backend = Arc::new(Mutex::new(Backend::default()));
    let sink = backend.clone();
    let config = BatchConfig::new(move |batch: &[String]| sink.lock().unwrap().send(batch))
        .capacity(100)
        .max_bytes(MAX_BYTES, |record: &String| record.len())
        .flush_interval(Duration::from_millis(100))
        .on_flush_error(|err, batch| eprintln!("dropped {} records: {err}", batch.len()));
    let decode = |m: &[u8]| String::from_utf8(m.to_vec());
    let mut sidecar =
        queue.map(|q| Ok::<_, shmq::Error>(Batcher::from_queue(q, decode, config)))?;
    sidecar.run()?; // until the application closes the queue
    let status = app.wait()?;
    if !status.success() {
        return Err(format!("application failed: {status}").into());
    }
    let stats = sidecar.stats();
    let largest = backend.lock().unwrap().largest;
    println!(
        "sidecar: {} records in {} batches, the largest {largest} bytes (limit {MAX_BYTES})",
        stats.flushed, stats.flushes
    );
    Ok(())
}

/// The stand-in backend: checks the limit, prints what it got.
#[derive(Default)]
struct Backend {
    requests: u64,
    largest: usize,
}

impl Backend {
    fn send(&mut self, batch: &[String]) -> Result<(), String> {
        let bytes: usize = batch.iter().map(String::len).sum();
        if bytes > MAX_BYTES {
            return Err(format!("request of {bytes} bytes refused"));
        }
        std::thread::sleep(Duration::from_millis(1));
        self.requests += 1;
        self.largest = self.largest.max(bytes);
        println!(
            "request {}: {} records, {bytes} bytes",
            self.requests,
            batch.len()
        );
        Ok(())
    }
}

/// The application: `records` records on the queue at `target`, then close.
fn app(target: &Target, records: u64) -> Result<(), Box<dyn std::error::Error>> {
    let queue = Queue::open(target)?;
    let start = Instant::now();
    for i in 0..records {
        let pad = "x".repeat((i as usize * 37) % 460);
        let record = format!(
            "{{\"id\":{i},\"at_us\":{},\"pad\":\"{pad}\"}}",
            start.elapsed().as_micros()
        );
        queue.enqueue_block(record.as_bytes(), Some(Duration::from_secs(10)))?;
    }
    queue.close();
    Ok(())
}
