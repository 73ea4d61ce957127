//! Mapping a region of shared memory: SysV by key, POSIX by name, a file by path.
//!
//! Backings know nothing of rings: they create (exclusively), open (never
//! creating), map and unlink regions of bytes. `create` on an existing target
//! fails with [`Error::AlreadyExists`] and leaves it untouched.
//!
//! POSIX and file mappings are registered with the SIGBUS guard ([`guard`]):
//! if someone truncates the backing, the process survives and the segment
//! reports [`Segment::truncated`]. SysV segments cannot be truncated.

mod file;
pub mod guard;
mod posix;
mod sysv;

use std::fmt;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::str::FromStr;

use crate::Error;

pub use guard::{guard_active, rescued_mappings, truncated_mappings, Protection, Truncation};
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

    /// How a segment at this target is protected against the truncation of
    /// its backing in this process: SysV segments cannot be truncated; POSIX
    /// objects and files are guarded unless the guard is disabled
    /// (`SHMQ_SIGBUS_GUARD=0`) or could not be installed. (A segment mapped
    /// beyond the guard's [`guard::SLOTS`] is unguarded too: see
    /// [`Segment::protection`].)
    ///
    /// # Examples
    /// ```
    /// use shmq::{segment::Protection, Target};
    /// assert_eq!(Target::SysV(42).protection(), Protection::NotTruncatable);
    /// ```
    pub fn protection(&self) -> Protection {
        match self {
            Target::SysV(_) => Protection::NotTruncatable,
            Target::Posix(_) | Target::File(_) => match guard::install() {
                Ok(()) => Protection::Guarded,
                Err(reason) => Protection::Unguarded { reason },
            },
        }
    }

    /// The file that holds a POSIX object (`/dev/shm/NAME`) or a file
    /// target; `None` for SysV.
    ///
    /// # Examples
    /// ```
    /// use shmq::Target;
    /// assert_eq!(Target::Posix("q".into()).path().unwrap().to_str(), Some("/dev/shm/q"));
    /// ```
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Target::SysV(_) => None,
            Target::Posix(name) => posix::path_of(name).ok(),
            Target::File(path) => Some(path.clone()),
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
    /// Mapped with `mmap`; unmapped with `munmap`. The descriptor stays open
    /// so that a truncation can be told (fstat) and measured.
    Mmap {
        /// The backing's descriptor.
        fd: Fd,
        /// Our place in the SIGBUS guard's registry, or why there is none.
        guard: Result<guard::Guard, &'static str>,
    },
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

    /// A segment attached with `shmat`.
    pub(crate) fn from_sysv(ptr: NonNull<u8>, len: usize) -> Segment {
        Segment {
            ptr,
            len,
            backing: Backing::SysV,
            target: None,
        }
    }

    /// A segment mapped from `fd` with `mmap`, registered with the SIGBUS guard.
    fn from_mmap(ptr: NonNull<u8>, len: usize, fd: Fd) -> Segment {
        let guard = guard::Guard::register(ptr.as_ptr(), len, fd.0);
        Segment {
            ptr,
            len,
            backing: Backing::Mmap { fd, guard },
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

    /// How this segment is protected against the truncation of its backing.
    ///
    /// # Examples
    /// ```
    /// use shmq::segment::{Protection, Segment};
    /// assert_eq!(Segment::heap(64).protection(), Protection::NotTruncatable);
    /// let t = shmq::Target::Posix(format!("shmq-doc-protection-{}", std::process::id()));
    /// let seg = Segment::create(&t, 4096, 0o600).unwrap();
    /// assert_eq!(seg.protection(), Protection::Guarded);
    /// t.unlink().unwrap();
    /// ```
    pub fn protection(&self) -> Protection {
        match &self.backing {
            Backing::Mmap { guard: Ok(_), .. } => Protection::Guarded,
            Backing::Mmap {
                guard: Err(reason), ..
            } => Protection::Unguarded { reason },
            Backing::SysV | Backing::Heap(_) => Protection::NotTruncatable,
        }
    }

    /// Whether the backing was truncated under this mapping: either an
    /// access already hit a missing page (the SIGBUS guard then replaced the
    /// whole mapping with zero pages: the segment's contents are gone for
    /// this process), or the backing is now shorter than the mapping (one
    /// `fstat`). `None` for SysV and heap segments, which cannot shrink.
    ///
    /// Costs a syscall unless the guard already fired; for a check on a
    /// hotter path, see `truncation_seen` (crate-internal).
    ///
    /// # Examples
    /// ```
    /// use shmq::segment::Segment;
    /// let t = shmq::Target::Posix(format!("shmq-doc-truncated-{}", std::process::id()));
    /// let seg = Segment::create(&t, 8192, 0o600).unwrap();
    /// assert_eq!(seg.truncated(), None);
    /// std::fs::File::options().write(true)
    ///     .open(format!("/dev/shm/shmq-doc-truncated-{}", std::process::id())).unwrap()
    ///     .set_len(4096).unwrap();
    /// let t2 = seg.truncated().unwrap();
    /// assert_eq!(t2.to_string(), "segment truncated to 4096 bytes (8192 mapped)");
    /// // SAFETY: in bounds of the mapping; the page is gone, the guard rescues the read.
    /// assert_eq!(unsafe { seg.as_ptr().add(4096).read_volatile() }, 0);
    /// t.unlink().unwrap();
    /// ```
    pub fn truncated(&self) -> Option<Truncation> {
        match &self.backing {
            Backing::Mmap { guard: Ok(g), .. } => g.truncated(),
            Backing::Mmap { fd, .. } => guard::fstat_size(fd.0)
                .filter(|&size| size < self.len as u64)
                .map(|size| Truncation::new(size, self.len as u64)),
            Backing::SysV | Backing::Heap(_) => None,
        }
    }

    /// Whether the SIGBUS guard has already replaced this mapping (one atomic
    /// load, no syscall): cheap enough for the paths that return `Empty`,
    /// `Full` or an impossible value. Misses a truncation nobody has touched
    /// yet; blocking loops use [`Segment::check_intact`].
    #[inline]
    #[allow(dead_code)] // for the engine's slow paths; see NOTES-trunc.md
    pub(crate) fn truncation_seen(&self) -> Option<Truncation> {
        match &self.backing {
            Backing::Mmap { guard: Ok(g), .. } => g.rescued(),
            _ => None,
        }
    }

    /// `Err` if the backing was truncated ([`Segment::truncated`]); the error
    /// converts with `?` into `Error`, `EnqueueError`, `DequeueError`,
    /// `PublishError`, `RecvError` and `CursorError`'s `Corrupt` variant,
    /// whose detail reads "segment truncated to N bytes (M mapped)".
    #[inline]
    #[allow(dead_code)] // for the engine's blocking loops; see NOTES-trunc.md
    pub(crate) fn check_intact(&self) -> Result<(), Truncation> {
        match self.truncated() {
            Some(t) => Err(t),
            None => Ok(()),
        }
    }

    /// The detail for a `Corrupt` error the engine found in this segment:
    /// the truncation, if the SIGBUS guard replaced the mapping (the
    /// impossible value was a zero page), else `detail` as it is.
    #[inline]
    #[allow(dead_code)] // for the engine's Corrupt paths; see NOTES-trunc.md
    pub(crate) fn explain(&self, detail: String) -> String {
        match self.truncation_seen() {
            Some(t) => t.to_string(),
            None => detail,
        }
    }

    /// Writes dirty pages of a file-backed segment to disk (`msync`); a no-op
    /// for the other backings.
    pub fn flush(&self) -> Result<(), Error> {
        if let (Backing::Mmap { .. }, Some(Target::File(path))) = (&self.backing, &self.target) {
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
        match &mut self.backing {
            // SAFETY: ptr was returned by shmat and is detached exactly once.
            Backing::SysV => unsafe {
                libc::shmdt(self.ptr.as_ptr() as *const _);
            },
            Backing::Mmap { guard, .. } => {
                // Unregister before unmapping: the guard must never remap an
                // address range that may already hold someone else's mapping.
                drop(std::mem::replace(guard, Err("detached")));
                // SAFETY: ptr/len were returned by mmap (possibly since
                // replaced by the guard's zero pages, which munmap removes
                // just as well) and are unmapped exactly once.
                unsafe { libc::munmap(self.ptr.as_ptr() as *mut _, self.len) };
                // The descriptor is closed when the field drops, after this.
            }
            Backing::Heap(_) => {}
        }
    }
}

/// How long `open` waits for a segment whose creator has not yet published it.
pub const INIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Maps `len` bytes of `fd` shared and read-write; the segment keeps `fd`.
pub(crate) fn map_fd(fd: Fd, len: usize, what: &str) -> Result<Segment, Error> {
    // SAFETY: a fresh mapping chosen by the kernel; fd is open read-write.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.0,
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
    Ok(Segment::from_mmap(ptr, len, fd))
}

/// An owned file descriptor, closed on drop.
#[derive(Debug)]
pub(crate) struct Fd(pub libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this value and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Sizes `fd` to `size` bytes and maps it (the create path of posix and file).
pub(crate) fn size_and_map(fd: Fd, size: usize, mode: u32, what: &str) -> Result<Segment, Error> {
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
    map_fd(fd, size, what)
}

/// Maps the whole of an existing `fd`, waiting a bounded time while it is
/// still empty (its creator has not sized it yet).
pub(crate) fn map_existing(fd: Fd, what: &str) -> Result<Segment, Error> {
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
            return map_fd(fd, size, what);
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
