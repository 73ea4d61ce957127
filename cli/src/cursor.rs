//! `shmq cursor`: list and remove a log's named durable cursors.
//!
//! A named cursor outlives its subscriber: in reliable mode it gates
//! publishers until a subscriber resumes it, also after that subscriber's
//! process died. `shmq cursor rm` is how an operator lets publishers go on
//! without it.

use shmq::{CursorError, Log, Target};

use crate::exit;

/// `shmq cursor ls TARGET`: every cursor with its position, lag and holder.
pub fn ls(target: &Target) -> anyhow::Result<()> {
    let log = Log::open(target)?;
    let stats = log.stats();
    println!("{:<24} {:>12} {:>10}  holder", "cursor", "position", "lag");
    for c in &stats.cursors {
        let name = match &c.name {
            Some(n) => escape(n),
            None => "(unnamed subscriber)".to_owned(),
        };
        let holder = match (c.owner, c.owner_alive, c.dead_owner) {
            (Some(pid), true, _) => format!("pid {pid}"),
            (Some(pid), false, _) => format!("pid {pid} (dead)"),
            (None, _, Some(pid)) => format!("none (pid {pid} died holding it)"),
            (None, _, None) => "none".to_owned(),
        };
        println!("{name:<24} {:>12} {:>10}  {holder}", c.position, c.lag);
    }
    Ok(())
}

/// `shmq cursor rm TARGET NAME...`: removes named cursors. One held by a
/// live subscriber is refused (exit 1) unless `force`.
pub fn rm(target: &Target, names: &[String], force: bool) -> anyhow::Result<()> {
    let log = Log::open(target)?;
    for name in names {
        if let Some(info) = log.cursor(name) {
            if let (Some(pid), true, false) = (info.owner, info.owner_alive, force) {
                return Err(exit::fail(
                    exit::OTHER,
                    format!(
                        "cursor {:?} is held by live process {pid}; stop that subscriber \
                         first, or use --force",
                        escape(name)
                    ),
                ));
            }
        }
        match log.remove_cursor(name) {
            Ok(()) => println!("removed cursor {:?}", escape(name)),
            Err(e @ CursorError::NotFound { .. }) => {
                return Err(exit::fail(exit::NOT_FOUND, e.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `s` with control characters shown as escapes, so a name cannot drive the terminal.
fn escape(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}
