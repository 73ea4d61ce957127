//! `shmq create` and `shmq rm`.

use shmq::inspect::Probe;
use shmq::{Queue, QueueConfig, Target};

use crate::exit;

/// `shmq create`: a new work queue; fails (exit 6) if anything is there.
pub fn create(target: &Target, slot_size: usize, capacity: usize, mode: u32) -> anyhow::Result<()> {
    // EXTENSION(log): a `--kind log` option would call the log's create here.
    let q = Queue::create(target, &QueueConfig::new(slot_size, capacity).mode(mode))?;
    let p = q.params();
    println!(
        "created {target}: queue of {} slots of {} bytes, {} bytes, mode {:04o}",
        p.capacity, p.slot_size, p.total_size, p.mode
    );
    Ok(())
}

/// Why `rm` refuses to remove `target` without `--force`, if it does.
fn refusal(target: &Target) -> Result<Option<String>, shmq::Error> {
    Ok(match shmq::inspect::probe(target)? {
        Probe::Shmq(_) => None,
        Probe::Corrupt(e) => Some(format!("{target} is a damaged shmq segment ({e})")),
        Probe::Uninitialised => Some(format!("{target} was never initialised (or is not shmq's)")),
        Probe::Foreign { reason } => Some(format!("{target} is not a shmq segment ({reason})")),
    })
}

/// `shmq rm`: removes each target; reports every failure, and the first
/// one decides the exit code.
pub fn rm(targets: &[Target], force: bool) -> anyhow::Result<()> {
    let mut first_code = None;
    for target in targets {
        let result = match refusal(target) {
            Ok(Some(why)) if !force => Err(exit::fail(
                exit::CORRUPT,
                format!("{why}; left in place, use --force to remove it anyway"),
            )),
            Ok(_) => target.unlink().map_err(anyhow::Error::new),
            // --force removes whatever is there, even what cannot be looked at.
            Err(e) if force && !matches!(e, shmq::Error::NotFound { .. }) => {
                target.unlink().map_err(anyhow::Error::new)
            }
            Err(e) => Err(anyhow::Error::new(e)),
        };
        if let Err(e) = result {
            eprintln!("shmq: {}", exit::one_line(&e));
            first_code.get_or_insert(exit::code_of(&e));
        }
    }
    first_code.map_or(Ok(()), |code| Err(exit::fail(code, "")))
}
