//! Mapping a region of shared memory: SysV by key, POSIX by name, a file by path.
//!
//! Backings know nothing of rings: they create (exclusively), open (never
//! creating), map and unlink regions of bytes. `create` on an existing target
//! fails with [`Error::AlreadyExists`] and leaves it untouched.

mod file;
mod posix;
mod sysv;

use std::fmt;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::str::FromStr;

use crate::Error;

pub use sysv::find_free_key;

/// Where a queue lives.
///
/// Parsed from text by [`Target::from_str`]: `sysv:KEY`, `posix:NAME`,
/// `file:PATH`, or without a prefix: a number (decimal or `0x` hex) is a SysV
/// key, anything with a `/` after its first character (or starting with `.`)
/// is a file path, anything else a POSIX name.
///
/// # Examples
/// ```
/// use shmq::Target;
/// assert_eq!("0x2a".parse::<Target>().unwrap(), Target::SysV(42));
/// assert_eq!("ticks".parse::<Target>().unwrap(), Target::Posix("ticks".into()));
/// assert_eq!("/var/tmp/q".parse::<Target>().unwrap(), Target::File("/var/tmp/q".into()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A SysV shared-memory segment by integer key (`shmget`). Key 0 is not allowed.
    SysV(i32),
    /// A POSIX shared-memory object by name (`shm_open`, i.e. `/dev/shm/NAME`);
    /// a leading `/` is optional.
    Posix(String),
    /// A regular file by path (`mmap`), persistent across restarts.
    File(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::SysV(key) => write!(f, "sysv:{key:#x}"),
            Target::Posix(name) => write!(f, "posix:{}", name.trim_start_matches('/')),
            Target::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

fn parse_key(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok().map(|k| k as i32)
    } else {
        s.parse::<i32>().ok()
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Target, Error> {
        let bad = |what: &str| Error::invalid(format!("{what} in target {s:?}"));
        if let Some(rest) = s.strip_prefix("sysv:") {
            return parse_key(rest)
                .map(Target::SysV)
                .ok_or_else(|| bad("bad SysV key"));
        }
        if let Some(rest) = s.strip_prefix("posix:") {
            return Ok(Target::Posix(rest.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("file:") {
            return Ok(Target::File(rest.into()));
        }
        if s.is_empty() {
            return Err(bad("empty name"));
        }
        if let Some(key) = parse_key(s) {
            return Ok(Target::SysV(key));
        }
        if s.starts_with('.') || s[1..].contains('/') {
            return Ok(Target::File(s.into()));
        }
        Ok(Target::Posix(s.to_owned()))
    }
}

impl Target {
    /// Removes the queue's name: later `open`s fail, mappings stay valid until
    /// every process has detached.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Error, Target};
    /// let t = Target::Posix(format!("shmq-doc-unlink-{}", std::process::id()));
    /// assert!(matches!(t.unlink(), Err(Error::NotFound { .. })));
    /// ```
    pub fn unlink(&self) -> Result<(), Error> {
        match self {
            Target::SysV(key) => sysv::unlink(*key),
            Target::Posix(name) => posix::unlink(name),
            Target::File(path) => file::unlink(path),
        }
    }

    /// Whether something exists at this target (shmq's or not).
    pub fn exists(&self) -> bool {
        match self {
            Target::SysV(key) => sysv::exists(*key),
            Target::Posix(name) => posix::path_of(name).map(|p| p.exists()).unwrap_or(false),
            Target::File(path) => path.exists(),
        }
    }
}

/// How the bytes of a [`Segment`] are held.
#[derive(Debug)]
enum Backing {
    /// Attached with `shmat`; detached with `shmdt`.
    SysV,
    /// Mapped with `mmap`; unmapped with `munmap`.
    Mmap,
    /// Allocated on the heap (tests and in-process queues); owns the memory.
    Heap(#[allow(dead_code)] Vec<HeapLine>),
}

/// One 128-byte-aligned line of a heap region (the header's alignment).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(128))]
struct HeapLine([u8; 128]);

/// A mapped region of bytes, shared or private. Unmapped on drop.
#[derive(Debug)]
pub struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
    target: Option<Target>,
}

// SAFETY: the segment is a plain region of bytes; all concurrent access to it
// goes through atomics or through slots owned by one thread at a time.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` only hands out the base pointer.
unsafe impl Sync for Segment {}

impl Segment {
    /// Creates a new segment of `size` bytes at `target`, exclusively, with
    /// the given mode bits. The bytes are zero.
    pub fn create(target: &Target, size: usize, mode: u32) -> Result<Segment, Error> {
        match target {
            Target::SysV(key) => sysv::create(*key, size, mode),
            Target::Posix(name) => posix::create(name, size, mode),
            Target::File(path) => file::create(path, size, mode),
        }
        .map(|mut seg| {
            seg.target = Some(target.clone());
            seg
        })
    }

    /// Opens and maps an existing segment, whatever its size.
    pub fn open(target: &Target) -> Result<Segment, Error> {
        match target {
            Target::SysV(key) => sysv::open(*key),
            Target::Posix(name) => posix::open(name),
            Target::File(path) => file::open(path),
        }
        .map(|mut seg| {
            seg.target = Some(target.clone());
            seg
        })
    }

    /// A zeroed region on the heap, 128-byte aligned: for queues used by the
    /// threads of one process, and for tests.
    pub fn heap(size: usize) -> Segment {
        let mut buf = vec![HeapLine([0; 128]); size.div_ceil(128).max(1)];
        let ptr = NonNull::new(buf.as_mut_ptr() as *mut u8).expect("Vec pointer is non-null");
        Segment {
            ptr,
            len: size,
            backing: Backing::Heap(buf),
            target: None,
        }
    }

    pub(crate) fn from_raw(ptr: NonNull<u8>, len: usize, sysv: bool) -> Segment {
        let backing = if sysv { Backing::SysV } else { Backing::Mmap };
        Segment {
            ptr,
            len,
            backing,
            target: None,
        }
    }

    /// The first byte of the region.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never, for a valid segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the segment lives; `None` for a heap region.
    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// Writes dirty pages of a file-backed segment to disk (`msync`); a no-op
    /// for the other backings.
    pub fn flush(&self) -> Result<(), Error> {
        if let (Backing::Mmap, Some(Target::File(path))) = (&self.backing, &self.target) {
            // SAFETY: ptr/len describe a live mapping owned by self.
            let rc = unsafe { libc::msync(self.ptr.as_ptr() as *mut _, self.len, libc::MS_SYNC) };
            if rc != 0 {
                return Err(Error::Io {
                    context: format!("msync {}", path.display()),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        Ok(())
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        match self.backing {
            // SAFETY: ptr was returned by shmat and is detached exactly once.
            Backing::SysV => unsafe {
                libc::shmdt(self.ptr.as_ptr() as *const _);
            },
            // SAFETY: ptr/len were returned by mmap and are unmapped exactly once.
            Backing::Mmap => unsafe {
                libc::munmap(self.ptr.as_ptr() as *mut _, self.len);
            },
            Backing::Heap(_) => {}
        }
    }
}

/// How long `open` waits for a segment whose creator has not yet published it.
pub const INIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Maps `len` bytes of `fd` shared and read-write.
pub(crate) fn map_fd(fd: libc::c_int, len: usize, what: &str) -> Result<Segment, Error> {
    // SAFETY: a fresh mapping chosen by the kernel; fd is open read-write.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(Error::from_os(
            "mmap",
            what,
            std::io::Error::last_os_error(),
        ));
    }
    let ptr = NonNull::new(ptr as *mut u8).expect("mmap never returns null on success");
    Ok(Segment::from_raw(ptr, len, false))
}

/// An owned file descriptor, closed on drop.
pub(crate) struct Fd(pub libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this value and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Sizes `fd` to `size` bytes and maps it (the create path of posix and file).
pub(crate) fn size_and_map(fd: &Fd, size: usize, mode: u32, what: &str) -> Result<Segment, Error> {
    // SAFETY: plain syscalls on an owned descriptor.
    unsafe {
        // Exact mode regardless of the umask.
        if libc::fchmod(fd.0, mode as libc::mode_t) != 0
            || libc::ftruncate(fd.0, size as libc::off_t) != 0
        {
            return Err(Error::from_os(
                "size",
                what,
                std::io::Error::last_os_error(),
            ));
        }
    }
    map_fd(fd.0, size, what)
}

/// Maps the whole of an existing `fd`, waiting a bounded time while it is
/// still empty (its creator has not sized it yet).
pub(crate) fn map_existing(fd: &Fd, what: &str) -> Result<Segment, Error> {
    let deadline = std::time::Instant::now() + INIT_WAIT;
    loop {
        // SAFETY: fstat into a zeroed struct on an owned descriptor.
        let size = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd.0, &mut st) != 0 {
                return Err(Error::from_os(
                    "stat",
                    what,
                    std::io::Error::last_os_error(),
                ));
            }
            st.st_size as usize
        };
        if size > 0 {
            return map_fd(fd.0, size, what);
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::NotReady {
                target: what.to_owned(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

pub(crate) fn cstring(s: &str, what: &str) -> Result<std::ffi::CString, Error> {
    std::ffi::CString::new(s).map_err(|_| Error::invalid(format!("{what} contains a NUL byte")))
}
