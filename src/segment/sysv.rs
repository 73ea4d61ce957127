//! SysV shared memory by integer key (`shmget`, `shmat`).

use std::io;
use std::ptr::NonNull;

use super::Segment;
use crate::{Error, Target};

fn name(key: i32) -> String {
    Target::SysV(key).to_string()
}

fn check_key(key: i32) -> Result<(), Error> {
    if key == libc::IPC_PRIVATE {
        return Err(Error::invalid(
            "SysV key 0 (IPC_PRIVATE) cannot be shared by key",
        ));
    }
    Ok(())
}

fn attach(id: libc::c_int, len: usize, key: i32) -> Result<Segment, Error> {
    // SAFETY: attaching a segment id we just looked up; the kernel picks the address.
    let ptr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if ptr as isize == -1 {
        return Err(Error::from_os(
            "shmat",
            &name(key),
            io::Error::last_os_error(),
        ));
    }
    let ptr = NonNull::new(ptr as *mut u8).expect("shmat never returns null on success");
    Ok(Segment::from_sysv(ptr, len))
}

pub(super) fn create(key: i32, size: usize, mode: u32) -> Result<Segment, Error> {
    check_key(key)?;
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int;
    // SAFETY: plain syscall.
    let id = unsafe { libc::shmget(key, size, flags) };
    if id < 0 {
        return Err(Error::from_os(
            "shmget",
            &name(key),
            io::Error::last_os_error(),
        ));
    }
    attach(id, size, key).inspect_err(|_| {
        // SAFETY: removing the segment we just created and failed to attach.
        unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    })
}

fn lookup(key: i32) -> Result<(libc::c_int, usize), Error> {
    check_key(key)?;
    // SAFETY: plain syscall; size 0 and no flags only look the key up.
    let id = unsafe { libc::shmget(key, 0, 0) };
    if id < 0 {
        return Err(Error::from_os(
            "shmget",
            &name(key),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: IPC_STAT into a zeroed struct.
    let size = unsafe {
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        if libc::shmctl(id, libc::IPC_STAT, &mut ds) != 0 {
            return Err(Error::from_os(
                "shmctl",
                &name(key),
                io::Error::last_os_error(),
            ));
        }
        ds.shm_segsz
    };
    Ok((id, size))
}

pub(super) fn open(key: i32) -> Result<Segment, Error> {
    let (id, size) = lookup(key)?;
    attach(id, size, key)
}

pub(super) fn exists(key: i32) -> bool {
    key != libc::IPC_PRIVATE
        // SAFETY: plain syscall.
        && unsafe { libc::shmget(key, 0, 0) } >= 0
}

/// Removes the key; nothing there is not an error (removal is idempotent).
pub(super) fn unlink(key: i32) -> Result<(), Error> {
    let id = match lookup(key) {
        Ok((id, _)) => id,
        Err(Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    // SAFETY: plain syscall on an id we looked up; no pointer is read.
    if unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } != 0 {
        let err = io::Error::last_os_error();
        // Removed by someone else since the lookup: the id is gone.
        if matches!(err.raw_os_error(), Some(libc::EINVAL | libc::EIDRM)) {
            return Ok(());
        }
        return Err(Error::from_os("shmctl", &name(key), err));
    }
    Ok(())
}

/// A SysV key with no segment behind it right now (random, never 0).
///
/// Another process may take it before you create: `create` then fails with
/// [`Error::AlreadyExists`], and you ask again.
///
/// # Examples
/// ```
/// let key = shmq::find_free_key().unwrap();
/// assert!(!shmq::Target::SysV(key).exists());
/// ```
pub fn find_free_key() -> Result<i32, Error> {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ ((std::process::id() as u64) << 32);
    for _ in 0..10_000 {
        // xorshift64
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let key = (seed & 0x7fff_ffff) as i32;
        if key != 0 && !exists(key) {
            return Ok(key);
        }
    }
    Err(Error::invalid("no free SysV key found in 10000 tries"))
}
