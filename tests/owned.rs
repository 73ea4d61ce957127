//! `Owned`: the handle that removes its segment when it drops, in the
//! creating process only. One test in this file, so that no other test
//! thread exists when it forks.

#[allow(unused_imports)] // the harness's child_roles! macro: no child processes here
mod common;

use std::time::{Duration, Instant};

use shmq::{Error, Log, LogConfig, Queue, QueueConfig};

#[test]
fn an_owned_handle_removes_its_segment_in_its_creator_only() {
    // Dropped: removed, and a handle opened meanwhile keeps working.
    let target = common::posix("owned-q");
    let q = Queue::create_owned(&target, &QueueConfig::new(16, 4)).unwrap();
    assert_eq!(q.owned_target(), Some(&*target));
    let other = Queue::open(&target).unwrap();
    q.enqueue_try(b"kept").unwrap();
    drop(q);
    assert!(matches!(Queue::open(&target), Err(Error::NotFound { .. })));
    assert_eq!(other.dequeue_try(&mut [0u8; 16]), Ok(4));

    // Removal is idempotent: someone else removed it first; remove() twice.
    let log_target = common::posix("owned-log");
    let mut log = Log::create_owned(&log_target, &LogConfig::new(16, 4)).unwrap();
    log_target.unlink().unwrap();
    assert!(log.remove().is_ok(), "already gone is no error");
    assert!(log.remove().is_ok());
    drop(log);

    // into_inner keeps the segment; map keeps ownership.
    let keep = common::posix("owned-keep");
    drop(
        Queue::create_owned(&keep, &QueueConfig::new(16, 4))
            .unwrap()
            .into_inner(),
    );
    assert!(Queue::open(&keep).is_ok(), "into_inner keeps the segment");
    let spsc = common::posix("owned-spsc");
    let mut p = Queue::create_owned(&spsc, &QueueConfig::new(16, 4).spsc(true))
        .unwrap()
        .map(Queue::into_producer)
        .unwrap();
    p.enqueue_try(b"x").unwrap();
    drop(p);
    assert!(matches!(Queue::open(&spsc), Err(Error::NotFound { .. })));

    // A forked child's copy removes nothing when it drops.
    let forked = common::posix("owned-fork");
    let q = Queue::create_owned(&forked, &QueueConfig::new(16, 4)).unwrap();
    // SAFETY: this file runs one test, so the child is a copy of a
    // single-threaded process; it drops its copy of the handle and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(q);
        // SAFETY: leave without running the test harness in the child.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: reaps our own child into a local status word.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert!(
        Queue::open(&forked).is_ok(),
        "the child's drop must not remove the parent's queue"
    );
    drop(q);
    assert!(matches!(Queue::open(&forked), Err(Error::NotFound { .. })));
}
