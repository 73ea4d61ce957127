//! A regular file by path, mapped shared: persistent across restarts.
//! Opened with `std::fs` (close-on-exec), mapped with memmap2.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{map_existing, size_and_map, Segment};
use crate::{Error, Target};

fn what(path: &Path) -> String {
    Target::File(path.to_owned()).to_string()
}

/// Refuses what cannot name a file: an empty path, a path that is not
/// UTF-8 (targets travel as text through the C and Go APIs), a NUL byte.
pub(super) fn check_path(path: &Path) -> Result<(), Error> {
    let Some(text) = path.to_str() else {
        return Err(Error::invalid("path is not UTF-8"));
    };
    if text.is_empty() {
        return Err(Error::invalid(
            "empty file path in target \"file:\" (write file:PATH)",
        ));
    }
    if text.contains('\0') {
        return Err(Error::invalid("path contains a NUL byte"));
    }
    Ok(())
}

pub(super) fn create(path: &Path, size: usize, mode: u32) -> Result<Segment, Error> {
    check_path(path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match (e.kind(), missing_dir(path)) {
            // O_CREAT's ENOENT means a directory on the way is missing: say
            // which, not that the file to be created does not exist.
            (std::io::ErrorKind::NotFound, Some(dir)) => Error::NotFound {
                target: format!("directory {} (for {})", dir.display(), what(path)),
            },
            _ => Error::from_os("open", &what(path), e),
        })?;
    size_and_map(file, size, mode, &what(path)).inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })
}

/// The directory that should hold `path`, if it does not exist.
fn missing_dir(path: &Path) -> Option<&Path> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    (!dir.is_dir()).then_some(dir)
}

pub(super) fn open(path: &Path) -> Result<Segment, Error> {
    check_path(path)?;
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::from_os("open", &what(path), e))?;
    map_existing(file, &what(path))
}

/// Removes the file; nothing there is not an error (removal is idempotent).
pub(super) fn unlink(path: &Path) -> Result<(), Error> {
    check_path(path)?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::from_os("unlink", &what(path), e))
        }
        _ => Ok(()),
    }
}
