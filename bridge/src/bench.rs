//! `shmq-bridge bench` (filled in below).

use anyhow::Result;

/// Options of `shmq-bridge bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

/// Runs the benchmark.
pub fn run(_a: &BenchArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
