//! A regular file by path, mapped shared: persistent across restarts.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{cstring, map_existing, size_and_map, Fd, Segment};
use crate::{Error, Target};

fn what(path: &Path) -> String {
    Target::File(path.to_owned()).to_string()
}

fn open_fd(path: &Path, flags: libc::c_int, mode: u32) -> Result<Fd, Error> {
    let c = cstring(
        std::str::from_utf8(path.as_os_str().as_bytes())
            .map_err(|_| Error::invalid("path is not UTF-8"))?,
        "path",
    )?;
    // SAFETY: c is a valid NUL-terminated string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    if fd < 0 {
        return Err(Error::from_os(
            "open",
            &what(path),
            io::Error::last_os_error(),
        ));
    }
    Ok(Fd(fd))
}

pub(super) fn create(path: &Path, size: usize, mode: u32) -> Result<Segment, Error> {
    let fd = open_fd(path, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode)?;
    size_and_map(fd, size, mode, &what(path)).inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })
}

pub(super) fn open(path: &Path) -> Result<Segment, Error> {
    let fd = open_fd(path, libc::O_RDWR, 0)?;
    map_existing(fd, &what(path))
}

pub(super) fn unlink(path: &Path) -> Result<(), Error> {
    std::fs::remove_file(path).map_err(|e| Error::from_os("unlink", &what(path), e))
}
