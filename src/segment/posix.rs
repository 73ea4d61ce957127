//! POSIX shared memory by name (`shm_open`, i.e. files in /dev/shm), through
//! nix.

use std::fs::File;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{cstring, map_existing, size_and_map, Segment};
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

fn shm_open(name: &str, flags: OFlag, mode: u32) -> Result<File, Error> {
    let c = cstring(&full_name(name)?, "POSIX name")?;
    // shm_open sets FD_CLOEXEC itself.
    nix::sys::mman::shm_open(
        c.as_c_str(),
        flags,
        Mode::from_bits_retain(mode as libc::mode_t),
    )
    .map(File::from)
    .map_err(|e| Error::from_os("shm_open", &what(name), e.into()))
}

pub(super) fn create(name: &str, size: usize, mode: u32) -> Result<Segment, Error> {
    let fd = shm_open(name, OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL, mode)?;
    size_and_map(fd, size, mode, &what(name)).inspect_err(|_| {
        let _ = unlink(name);
    })
}

pub(super) fn open(name: &str) -> Result<Segment, Error> {
    let fd = shm_open(name, OFlag::O_RDWR, 0)?;
    map_existing(fd, &what(name))
}

/// Removes the name; nothing there is not an error (removal is idempotent).
pub(super) fn unlink(name: &str) -> Result<(), Error> {
    let c = cstring(&full_name(name)?, "POSIX name")?;
    match nix::sys::mman::shm_unlink(c.as_c_str()) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::from_os("shm_unlink", &what(name), e.into())),
    }
}
