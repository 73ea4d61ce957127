//! `shmq create` and `shmq rm`.

use shmq::inspect::Probe;
use shmq::{Log, LogConfig, LogMode, Queue, QueueConfig, Target};

use crate::{exit, CreateArgs, Kind, LogModeArg};

/// `shmq create`: a new work queue or fan-out log; fails (exit 6) if
/// anything is there.
pub fn create(a: &CreateArgs) -> anyhow::Result<()> {
    let target = &a.target;
    let shown = crate::text::printable(&target.to_string()).into_owned();
    match a.kind {
        Kind::Queue => {
            if a.log_mode.is_some()
                || a.cursors.is_some()
                || a.single_publisher
                || !a.durable.is_empty()
            {
                return Err(exit::fail(
                    exit::USAGE,
                    "--log-mode, --cursors, --cursor and --single-publisher apply to logs (--kind log)",
                ));
            }
            let config = QueueConfig::new(a.slot_size, a.capacity)
                .permissions(a.mode)
                .spsc(a.spsc);
            let q = Queue::create(target, &config)?;
            let p = q.params();
            println!(
                "created {shown}: {}queue of {} slots of {} bytes, {} bytes, mode {:04o}",
                if q.is_spsc() {
                    "single-producer/single-consumer "
                } else {
                    ""
                },
                p.capacity,
                p.slot_size,
                p.total_size,
                p.mode
            );
            println!("{}", slot_note(p.slot_stride));
        }
        Kind::Log => {
            if a.spsc {
                return Err(exit::fail(
                    exit::USAGE,
                    "--spsc applies to work queues (a log has any number of subscribers)",
                ));
            }
            let mode = match a.log_mode {
                Some(LogModeArg::Reliable) => LogMode::Reliable,
                Some(LogModeArg::Overwrite) | None => LogMode::Overwrite,
            };
            let mut config = LogConfig::new(a.slot_size, a.capacity)
                .mode(mode)
                .single_publisher(a.single_publisher)
                .permissions(a.mode);
            if let Some(n) = a.cursors {
                config = config.cursors(n);
            }
            let config = config.durable_cursors(&a.durable);
            let log = Log::create(target, &config)?;
            let p = log.params();
            println!(
                "created {shown}: {}{} log of {} slots of {} bytes, {} cursor entries, {} bytes, mode {:04o}",
                log_mode_name(log.mode()),
                if log.is_single_publisher() {
                    " single-publisher"
                } else {
                    ""
                },
                p.capacity,
                p.slot_size,
                log.cursor_capacity(),
                p.total_size,
                p.mode
            );
            println!("{}", slot_note(p.slot_stride));
            if !a.durable.is_empty() {
                let names: Vec<String> = a
                    .durable
                    .iter()
                    .map(|n| format!("\"{}\"", crate::text::printable(n)))
                    .collect();
                println!(
                    "durable cursors at message 0: {}{}",
                    names.join(", "),
                    if log.mode() == LogMode::Reliable {
                        " (they gate publishers from the first message)"
                    } else {
                        ""
                    }
                );
            } else if log.mode() == LogMode::Reliable {
                println!(
                    "note: nobody is registered yet; publishes are refused until a subscriber \
                     registers (declare durable cursors with --cursor NAME to keep every message \
                     for readers that start later)"
                );
            }
        }
    }
    Ok(())
}

/// A log mode as the command line spells it.
pub fn log_mode_name(mode: LogMode) -> &'static str {
    match mode {
        LogMode::Overwrite => "overwrite",
        LogMode::Reliable => "reliable",
    }
}

/// Removes `target` if it is shmq's: the library's check
/// ([`Target::unlink`]), and beyond it a damaged shmq segment is kept too
/// (`shmq stat` shows why it is damaged; `--force` removes it).
fn remove_checked(target: &Target) -> anyhow::Result<()> {
    let shown = crate::text::printable(&target.to_string()).into_owned();
    let refuse = |why: String| {
        Err(exit::fail(
            exit::CORRUPT,
            format!("{why}; left in place, use --force to remove it anyway"),
        ))
    };
    if let Probe::Corrupt(e) = shmq::inspect::probe(target)? {
        return refuse(format!("{shown} is a damaged shmq segment ({e})"));
    }
    match target.unlink() {
        // The library's refusal, with the command line's way to force it.
        Err(shmq::Error::Corrupt { detail }) => Err(exit::fail(
            exit::CORRUPT,
            detail.replace("a forced unlink removes", "use --force to remove"),
        )),
        other => Ok(other?),
    }
}

/// `shmq rm`: removes each target; reports every failure, and the first
/// one decides the exit code.
pub fn rm(targets: &[Target], force: bool) -> anyhow::Result<()> {
    let mut first_code = None;
    for target in targets {
        let result = if force {
            // --force removes whatever is there, even what cannot be looked
            // at. The library's removal is idempotent; the command still
            // says when nothing was there.
            let was_there = target.exists();
            target
                .unlink_force()
                .map_err(anyhow::Error::new)
                .and_then(|()| {
                    if was_there {
                        Ok(())
                    } else {
                        Err(anyhow::Error::new(shmq::Error::NotFound {
                            target: target.to_string(),
                        }))
                    }
                })
        } else {
            remove_checked(target)
        };
        if let Err(e) = result {
            eprintln!("shmq: {}", exit::one_line(&e));
            first_code.get_or_insert(exit::code_of(&e));
        }
    }
    first_code.map_or(Ok(()), |code| Err(exit::fail(code, "")))
}

/// How many cache lines a slot takes, and the payload that fits one line
/// (a 16-byte header precedes the payload in every slot).
fn slot_note(stride: u32) -> String {
    let lines = stride.div_ceil(64);
    format!(
        "  each slot takes {stride} bytes: {lines} cache line{} (16-byte header; payloads up to 48 bytes fit one line)",
        if lines == 1 { "" } else { "s" }
    )
}
