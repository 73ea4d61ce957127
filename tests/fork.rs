//! A process forked without exec is a process of its own: its named cursors
//! are not mistaken for a dead parent's. Kept alone in this file so that no
//! other test thread exists when the test forks.

use shmq::{CursorError, Log, LogConfig, Start, Target};

#[test]
fn a_forked_child_holds_its_cursor_as_itself() {
    let target = Target::Posix(format!("shmq-test-fork-{}", std::process::id()));
    let _ = target.unlink();
    let log = Log::create(&target, &LogConfig::new(16, 8).cursors(2)).unwrap();
    // The parent has used shmq (and cached who it is) before forking.
    drop(log.subscribe_named("mine", Start::Oldest).unwrap());

    let mut ready = [0i32; 2];
    let mut done = [0i32; 2];
    // SAFETY: plain pipe creation into local arrays.
    assert_eq!(unsafe { libc::pipe(ready.as_mut_ptr()) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::pipe(done.as_mut_ptr()) }, 0);
    // SAFETY: this test binary runs one test, so the child is a copy of a
    // single-threaded process; it only uses shmq and pipes, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match Log::open(&target).map(|l| (l.subscribe_named("x", Start::Oldest), l)) {
            Ok((Ok(_sub), _log)) => {
                // SAFETY: writes one byte from a local to our pipe end.
                unsafe { libc::write(ready[1], [1u8].as_ptr().cast(), 1) };
                let mut b = [0u8; 1];
                // Wait (bounded by the parent's kill) until the parent has checked.
                // SAFETY: reads into a local buffer from our pipe end.
                unsafe { libc::read(done[0], b.as_mut_ptr().cast(), 1) };
                0
            }
            _ => 1,
        };
        // SAFETY: leave without running the parent's atexit handlers or test harness.
        unsafe { libc::_exit(code) };
    }
    let mut b = [0u8; 1];
    let mut fds = libc::pollfd {
        fd: ready[0],
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one local pollfd, bounded to 10 s.
    let n = unsafe { libc::poll(&mut fds, 1, 10_000) };
    let result = if n == 1 {
        // SAFETY: reads into a local buffer.
        unsafe { libc::read(ready[0], b.as_mut_ptr().cast(), 1) };
        Some(log.subscribe_named("x", Start::Oldest).map(|_| ()))
    } else {
        None
    };
    // SAFETY: wake the child, then reap it (or kill it if it never got ready).
    unsafe {
        libc::write(done[1], [1u8].as_ptr().cast(), 1);
        if n != 1 {
            libc::kill(pid, libc::SIGKILL);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
    target.unlink().unwrap();
    let result = result.expect("the child took its cursor within 10 s");
    assert!(
        matches!(result, Err(CursorError::InUse { .. })),
        "the cursor held by the live child must be in use, got {result:?}"
    );
}
