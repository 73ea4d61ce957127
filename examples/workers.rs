//! A dispatcher hands jobs to worker processes over one work queue: each job
//! goes to exactly one worker, and the workers' results come back on a
//! second queue.
//!
//! ```sh
//! cargo run --release --example workers            # 3 workers, 30000 jobs
//! cargo run --release --example workers -- 2 1000  # 2 workers, 1000 jobs
//! ```

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shmq::{Queue, QueueConfig, RecvError, Target};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        return worker(&args[1], &args[2]);
    }
    let workers: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let jobs: u64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(30_000);
    let job_target: Target = format!("jobs-{}", std::process::id()).parse()?;
    let done_target: Target = format!("done-{}", std::process::id()).parse()?;
    // Small queues: the dispatcher waits for the workers (back-pressure).
    let jobs_q = Queue::create_owned(&job_target, &QueueConfig::new(8, 256))?;
    let done_q = Queue::create_owned(&done_target, &QueueConfig::new(16, 256))?;

    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .args([
                    "--worker",
                    &job_target.to_string(),
                    &done_target.to_string(),
                ])
                .stdin(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()?;

    // Feed jobs and collect results at the same time, so neither queue fills up for good.
    let (mut sent, mut sum, mut received) = (0u64, 0u64, 0u64);
    let mut per_worker = std::collections::BTreeMap::new();
    let mut buf = [0u8; 16];
    while received < jobs {
        while sent < jobs && jobs_q.enqueue_try(&sent.to_le_bytes()).is_ok() {
            sent += 1;
        }
        if sent == jobs {
            jobs_q.close(); // workers drain what is left, then stop
        }
        if let Ok(16) = done_q.dequeue_block(&mut buf, Some(Duration::from_millis(1))) {
            let pid = u64::from_le_bytes(buf[..8].try_into()?);
            sum += u64::from_le_bytes(buf[8..].try_into()?);
            *per_worker.entry(pid).or_insert(0u64) += 1;
            received += 1;
        }
    }
    for child in &mut children {
        child.wait()?;
    }
    let expected: u64 = (0..jobs).map(|j| j * j).sum();
    println!(
        "{jobs} jobs done by {} workers {per_worker:?}; sum of squares {sum} (expected {expected})",
        per_worker.len()
    );
    if sum != expected {
        return Err("a job was lost or done twice".into());
    }
    Ok(())
}

/// A worker: squares each job until the job queue is closed and drained.
fn worker(jobs: &str, done: &str) -> Result<(), Box<dyn std::error::Error>> {
    let jobs = Queue::open(&jobs.parse()?)?;
    let done = Queue::open(&done.parse()?)?;
    let mut job = [0u8; 8];
    loop {
        match jobs.dequeue_block(&mut job, TIMEOUT) {
            Ok(_) => {
                let n = u64::from_le_bytes(job);
                let mut result = [0u8; 16];
                result[..8].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
                result[8..].copy_from_slice(&(n * n).to_le_bytes());
                done.enqueue_block(&result, TIMEOUT)?;
            }
            Err(RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
