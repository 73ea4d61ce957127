//! POSIX shared memory by name (`shm_open`, i.e. files in /dev/shm).

use std::io;
use std::path::PathBuf;

use super::{cstring, map_existing, size_and_map, Fd, Segment};
use crate::{Error, Target};

fn full_name(name: &str) -> Result<String, Error> {
    let bare = name.trim_start_matches('/');
    if bare.is_empty() || bare.contains('/') || bare.len() > 250 {
        return Err(Error::invalid(format!(
            "POSIX name {name:?} must be 1..=250 characters without '/'"
        )));
    }
    Ok(format!("/{bare}"))
}

fn what(name: &str) -> String {
    Target::Posix(name.to_owned()).to_string()
}

/// The path of a POSIX shared-memory object on Linux.
pub(super) fn path_of(name: &str) -> Result<PathBuf, Error> {
    Ok(PathBuf::from(format!("/dev/shm{}", full_name(name)?)))
}

fn shm_open(name: &str, flags: libc::c_int, mode: u32) -> Result<Fd, Error> {
    let c = cstring(&full_name(name)?, "POSIX name")?;
    // SAFETY: c is a valid NUL-terminated string.
    let fd = unsafe { libc::shm_open(c.as_ptr(), flags, mode as libc::mode_t) };
    if fd < 0 {
        return Err(Error::from_os(
            "shm_open",
            &what(name),
            io::Error::last_os_error(),
        ));
    }
    Ok(Fd(fd))
}

pub(super) fn create(name: &str, size: usize, mode: u32) -> Result<Segment, Error> {
    let fd = shm_open(name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode)?;
    size_and_map(fd, size, mode, &what(name)).inspect_err(|_| {
        let _ = unlink(name);
    })
}

pub(super) fn open(name: &str) -> Result<Segment, Error> {
    let fd = shm_open(name, libc::O_RDWR, 0)?;
    map_existing(fd, &what(name))
}

pub(super) fn unlink(name: &str) -> Result<(), Error> {
    let c = cstring(&full_name(name)?, "POSIX name")?;
    // SAFETY: c is a valid NUL-terminated string.
    if unsafe { libc::shm_unlink(c.as_ptr()) } != 0 {
        return Err(Error::from_os(
            "shm_unlink",
            &what(name),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
