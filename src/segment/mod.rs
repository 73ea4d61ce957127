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
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::str::FromStr;

use crate::layout::{HEADER_SIZE, PROC_ENTRY_SIZE, PROC_SLOTS};
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
/// **An all-digit name without a prefix is a SysV key, never a POSIX
/// name**: `"4242"` is `Target::SysV(4242)`. For a POSIX object whose name
/// is all digits, write `posix:4242` (or `Target::Posix("4242".into())`);
/// its [`Display`](fmt::Display) form keeps the prefix, so it parses back
/// to the same target.
///
/// A SysV key is an unsigned 32-bit number, decimal (`4242`) or hex
/// (`0x1092`), with no sign: `sysv:-5` and a bare `-5` are rejected. Keys
/// above `0x7fffffff` (as `ftok` makes and `ipcs` shows them) are held as
/// the negative `key_t` the kernel uses, and display in hex. Key 0
/// (`IPC_PRIVATE`) parses, but no segment can be created or opened by it.
/// `posix:` and `file:` with nothing after them are rejected.
///
/// # Examples
/// ```
/// use shmq::Target;
/// assert_eq!("0x2a".parse::<Target>().unwrap(), Target::SysV(42));
/// assert_eq!("ticks".parse::<Target>().unwrap(), Target::Posix("ticks".into()));
/// assert_eq!("/var/tmp/q".parse::<Target>().unwrap(), Target::File("/var/tmp/q".into()));
/// // All digits: a SysV key, unless the prefix says otherwise.
/// assert_eq!("4242".parse::<Target>().unwrap(), Target::SysV(4242));
/// assert_eq!("posix:4242".parse::<Target>().unwrap(), Target::Posix("4242".into()));
/// assert_eq!(Target::Posix("4242".into()).to_string(), "posix:4242");
/// // Keys have no sign.
/// assert!("sysv:-5".parse::<Target>().is_err());
/// assert_eq!("sysv:0xfffffffb".parse::<Target>().unwrap(), Target::SysV(-5));
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

/// What a piece of text is as a SysV key.
enum Key {
    /// A key: decimal or `0x` hex, at most `u32::MAX`, held as the
    /// kernel's `key_t` (bit for bit).
    Valid(i32),
    /// Shaped like a number, but not a valid key (why).
    Invalid(String),
    /// Not a number at all.
    NotANumber,
}

fn parse_key(s: &str) -> Key {
    let s = s.trim();
    let (digits, radix, shown_max) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16, "0xffffffff"),
        None => (s, 10, "4294967295"),
    };
    let is_digit = |c: char| c.is_digit(radix);
    if !digits.is_empty() && digits.chars().all(is_digit) {
        return match u32::from_str_radix(digits, radix) {
            Ok(k) => Key::Valid(k as i32),
            Err(_) => Key::Invalid(format!("SysV key {s} is larger than {shown_max}")),
        };
    }
    if let Some(unsigned) = s.strip_prefix(['-', '+']) {
        if matches!(parse_key(unsigned), Key::Valid(_) | Key::Invalid(_)) {
            return Key::Invalid(format!(
                "SysV key {s} has a sign (keys are unsigned: decimal or 0x hex)"
            ));
        }
    }
    Key::NotANumber
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Target, Error> {
        let bad = |what: &str| Error::invalid(format!("{what} in target {s:?}"));
        if let Some(rest) = s.strip_prefix("sysv:") {
            return match parse_key(rest) {
                Key::Valid(key) => Ok(Target::SysV(key)),
                Key::Invalid(why) => Err(bad(&why)),
                Key::NotANumber => Err(bad("bad SysV key (an unsigned number, decimal or 0x hex)")),
            };
        }
        if let Some(rest) = s.strip_prefix("posix:") {
            if rest.trim_start_matches('/').is_empty() {
                return Err(bad("empty POSIX name"));
            }
            return Ok(Target::Posix(rest.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("file:") {
            if rest.is_empty() {
                return Err(bad("empty file path"));
            }
            return Ok(Target::File(rest.into()));
        }
        if s.is_empty() {
            return Err(bad("empty name"));
        }
        match parse_key(s) {
            Key::Valid(key) => return Ok(Target::SysV(key)),
            Key::Invalid(why) => {
                return Err(bad(&format!(
                    "{why} (for a POSIX name, write posix:{s}; for a file, file:{s})"
                )))
            }
            Key::NotANumber => {}
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
    /// Removes only a shmq segment: one that carries shmq's magic (valid or
    /// damaged), or one whose creator never finished (its header still
    /// unpublished but shaped like a header being written; an empty file or
    /// POSIX object changed in the last few seconds). Anything else is left
    /// in place with [`Error::Corrupt`] saying what was found; see
    /// [`Target::unlink_force`] to remove it anyway. The check and the
    /// removal are two steps: something put at the target in between is
    /// removed unchecked.
    ///
    /// Removal is idempotent: when nothing is at the target (never was, or
    /// already removed, by this process or another), `unlink` succeeds, so
    /// removing twice is not an error. Ask [`Target::exists`] first to tell
    /// whether something was there.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if what is there is not shmq's (left untouched);
    /// [`Error::PermissionDenied`] if it cannot be looked at or removed;
    /// [`Error::InvalidArgument`] for a target that cannot name anything
    /// (SysV key 0, an empty path).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Error, Target};
    /// let t = Target::Posix(format!("shmq-doc-unlink-{}", std::process::id()));
    /// assert!(!t.exists());
    /// t.unlink()?; // nothing there: not an error
    /// // A file that is not shmq's is left alone.
    /// let path = std::env::temp_dir().join(format!("shmq-doc-notes-{}", std::process::id()));
    /// std::fs::write(&path, b"my notes")?;
    /// assert!(matches!(Target::File(path.clone()).unlink(), Err(Error::Corrupt { .. })));
    /// assert_eq!(std::fs::read(&path)?, b"my notes");
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unlink(&self) -> Result<(), Error> {
        match check_removable(self) {
            Ok(()) => self.unlink_force(),
            // Nothing there: removed already.
            Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes whatever is at the target, shmq's or not, without looking at
    /// it (`shmq rm --force`). Prefer [`Target::unlink`]. Idempotent like
    /// it: nothing at the target is not an error.
    ///
    /// # Examples
    /// ```
    /// use shmq::Target;
    /// let path = std::env::temp_dir().join(format!("shmq-doc-force-{}", std::process::id()));
    /// std::fs::write(&path, b"scratch")?;
    /// Target::File(path.clone()).unlink_force()?;
    /// assert!(!path.exists());
    /// Target::File(path).unlink_force()?; // twice: not an error
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unlink_force(&self) -> Result<(), Error> {
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
    /// Mapped shared and read-write by memmap2 (`mmap`), unmapped when
    /// `map` drops (`munmap`), after `Segment`'s drop has unregistered the
    /// guard. A raw map (pointers only, never a `&[u8]`): other processes
    /// write these bytes. The descriptor stays open so that a truncation can
    /// be told (fstat) and measured.
    Mmap {
        /// The mapping.
        map: memmap2::MmapRaw,
        /// The backing's descriptor.
        fd: File,
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

    /// A segment mapped from `fd`, registered with the SIGBUS guard.
    fn from_mmap(map: memmap2::MmapRaw, fd: File) -> Segment {
        let ptr = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null on success");
        let len = map.len();
        let guard = guard::Guard::register(ptr.as_ptr(), len, fd.as_raw_fd());
        Segment {
            ptr,
            len,
            backing: Backing::Mmap { map, fd, guard },
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
    /// t.unlink_force().unwrap(); // a bare segment, not a queue: unlink would refuse it
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
    /// t.unlink_force().unwrap(); // a bare segment, not a queue: unlink would refuse it
    /// ```
    pub fn truncated(&self) -> Option<Truncation> {
        match &self.backing {
            Backing::Mmap { guard: Ok(g), .. } => g.truncated(),
            Backing::Mmap { fd, .. } => guard::fstat_size_of(fd.as_fd())
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
    /// converts with `?` into `Error`, `SendError`, `RecvError`,
    /// `SendError`, `RecvError` and `CursorError`'s `Corrupt` variant,
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
        if let (Backing::Mmap { map, .. }, Some(Target::File(path))) = (&self.backing, &self.target)
        {
            // msync(MS_SYNC) over the whole mapping.
            map.flush().map_err(|source| Error::Io {
                context: format!("msync {}", path.display()),
                source,
            })?;
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
                // The mapping is unmapped when `map` drops, after this (the
                // guard's zero pages, if it replaced the file's, are
                // unmapped just as well); then the descriptor is closed.
            }
            Backing::Heap(_) => {}
        }
    }
}

/// How long `open` waits for a segment whose creator has not yet published it.
pub const INIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Maps `len` bytes of `fd` shared and read-write; the segment keeps `fd`.
pub(crate) fn map_fd(fd: File, len: usize, what: &str) -> Result<Segment, Error> {
    let map = memmap2::MmapOptions::new()
        .len(len)
        .map_raw(&fd)
        .map_err(|e| Error::from_os("mmap", what, e))?;
    Ok(Segment::from_mmap(map, fd))
}

/// Sizes `fd` to `size` bytes and maps it (the create path of posix and file).
pub(crate) fn size_and_map(fd: File, size: usize, mode: u32, what: &str) -> Result<Segment, Error> {
    use std::os::unix::fs::PermissionsExt;
    // fchmod: the exact mode regardless of the umask; then ftruncate.
    fd.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| fd.set_len(size as u64))
        .map_err(|e| Error::from_os("size", what, e))?;
    map_fd(fd, size, what)
}

/// Maps the whole of an existing `fd`, waiting a bounded time while it is
/// still empty (its creator has not sized it yet).
///
/// Does not wait for what cannot be a segment being created: something
/// other than a regular file (`/dev/null`, a directory), or an empty file
/// that has not changed for [`STALE_AFTER`]. Both give [`Error::Corrupt`].
pub(crate) fn map_existing(fd: File, what: &str) -> Result<Segment, Error> {
    use std::os::unix::fs::MetadataExt;
    let deadline = std::time::Instant::now() + INIT_WAIT;
    loop {
        // fstat on the owned descriptor.
        let st = fd.metadata().map_err(|e| Error::from_os("stat", what, e))?;
        if !st.file_type().is_file() {
            return Err(Error::corrupt(format!(
                "{what} is not a regular file: not a shmq segment"
            )));
        }
        let Ok(size) = usize::try_from(st.len()) else {
            return Err(Error::corrupt(format!(
                "{what} is {} bytes, more than this process can map",
                st.len()
            )));
        };
        if size > 0 {
            return map_fd(fd, size, what);
        }
        let changed = changed_at(st.mtime(), st.ctime());
        if age(changed) >= STALE_AFTER {
            return Err(Error::corrupt(format!(
                "{what} is empty and unchanged for {} s: not a shmq segment \
                 (or one whose creator died before sizing it)",
                age(changed).as_secs()
            )));
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::NotReady {
                target: what.to_owned(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// How long a segment may stay unpublished (empty, or its magic still zero)
/// while its creator is taken to be at work: the opener's bounded wait plus
/// two seconds of slack for coarse timestamps. A SysV segment's creation
/// time is in whole seconds, read from the kernel's tick-updated clock, so
/// it can be a second and a tick older than the creation; with one second
/// of slack an opener took a segment created 1.9994 s earlier for
/// abandoned. Older than that, the creator has died, or the thing was never
/// a segment being created.
pub const STALE_AFTER: std::time::Duration =
    INIT_WAIT.saturating_add(std::time::Duration::from_secs(2));

/// The smallest segment a shmq creator makes: header, process table and two
/// slots of the smallest stride (64 bytes). Every segment size is a multiple
/// of 64.
pub const MIN_SEGMENT_SIZE: usize = HEADER_SIZE + PROC_SLOTS * PROC_ENTRY_SIZE + 2 * 64;

/// The later of a file's modification and change times, from `stat` seconds.
fn changed_at(mtime: i64, ctime: i64) -> std::time::SystemTime {
    let secs = mtime.max(ctime).max(0) as u64;
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// Time since `t` (zero if `t` is in the future).
fn age(t: std::time::SystemTime) -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
}

/// What the kernel says about a segment besides its bytes: when it last
/// changed (files: modification or status change; SysV: creation or
/// `IPC_SET`), and for SysV the pid of its creator.
struct BackingFacts {
    changed: std::time::SystemTime,
    creator_pid: Option<u32>,
}

fn backing_facts(target: &Target) -> Option<BackingFacts> {
    use std::os::unix::fs::MetadataExt;
    let path = match target {
        Target::SysV(key) => {
            // SAFETY: plain syscalls; IPC_STAT fills a zeroed struct.
            return unsafe {
                let id = libc::shmget(*key, 0, 0);
                let mut ds: libc::shmid_ds = std::mem::zeroed();
                if id < 0 || libc::shmctl(id, libc::IPC_STAT, &mut ds) != 0 {
                    return None;
                }
                Some(BackingFacts {
                    changed: changed_at(ds.shm_ctime as i64, ds.shm_ctime as i64),
                    creator_pid: u32::try_from(ds.shm_cpid).ok(),
                })
            };
        }
        Target::Posix(name) => posix::path_of(name).ok()?,
        Target::File(path) => path.clone(),
    };
    let meta = std::fs::metadata(path).ok()?;
    Some(BackingFacts {
        changed: changed_at(meta.mtime(), meta.ctime()),
        creator_pid: None,
    })
}

/// What a mapped segment whose magic word is still zero is, decided at once
/// from its bytes and what the kernel says about it (see
/// [`classify_uninitialised`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uninitialised {
    /// Shaped like a shmq header being written, by a creator that may still
    /// be at work: worth waiting (a bounded time) for its magic.
    Initialising,
    /// Shaped like a shmq header being written, but its creator is gone (it
    /// exited, or nothing changed for [`STALE_AFTER`]): it will never be
    /// published. Shmq's, and safe to remove.
    Abandoned {
        /// Why the creator is taken to be gone.
        why: String,
    },
    /// Not a shmq segment at all: waiting would not help.
    Foreign {
        /// What does not fit a segment being created.
        reason: String,
    },
}

/// Classifies a mapped segment whose magic is zero, without waiting.
///
/// A creator sizes the segment to its final `total_size` (a multiple of 64,
/// at least [`MIN_SEGMENT_SIZE`]), writes the immutable header fields and the
/// slots' stamps, then publishes the magic. Until then the header's hot lines
/// and the process table stay zero, and each immutable field is either still
/// zero or holds a value a creator of this layout writes. Anything else is
/// [`Uninitialised::Foreign`]. A shmq-shaped segment is
/// [`Uninitialised::Abandoned`] when its creator has exited (SysV's creator
/// pid, or the pid in the header once written) or when it has not changed for
/// [`STALE_AFTER`]; else [`Uninitialised::Initialising`]. A segment whose
/// magic is not zero is `Foreign` here (validate it instead).
///
/// # Examples
/// ```
/// use shmq::segment::{classify_uninitialised, Segment, Uninitialised};
/// // Zeros of a size no shmq segment has.
/// let seg = Segment::heap(4096);
/// assert!(matches!(classify_uninitialised(&seg), Uninitialised::Foreign { .. }));
/// // Zeros of a size a creator makes, no creator known: may be at work.
/// let seg = Segment::heap(shmq::segment::MIN_SEGMENT_SIZE);
/// assert_eq!(classify_uninitialised(&seg), Uninitialised::Initialising);
/// ```
pub fn classify_uninitialised(seg: &Segment) -> Uninitialised {
    let header_pid = match uninitialised_shape(seg) {
        // Published since the caller found it unpublished: neither foreign
        // nor abandoned; the caller's next look validates it.
        Ok(Shape::Published) => return Uninitialised::Initialising,
        Ok(Shape::Unpublished { creator }) => creator,
        Err(reason) => return Uninitialised::Foreign { reason },
    };
    let facts = seg.target().and_then(backing_facts);
    let creator = facts
        .as_ref()
        .and_then(|f| f.creator_pid)
        .or(header_pid)
        .filter(|&pid| pid != 0);
    if let Some(pid) = creator {
        if crate::liveness::start_time(pid).is_none()
            && std::path::Path::new("/proc/self/stat").exists()
        {
            return Uninitialised::Abandoned {
                why: format!("its creator, pid {pid}, has exited"),
            };
        }
    }
    if let Some(f) = facts {
        let idle = age(f.changed);
        if idle >= STALE_AFTER {
            return Uninitialised::Abandoned {
                why: format!("unchanged for {} s", idle.as_secs()),
            };
        }
    }
    Uninitialised::Initialising
}

/// What [`uninitialised_shape`] found.
enum Shape {
    /// The magic is there now: published since the caller looked.
    Published,
    /// A header being written, with the creator pid it holds already, if any.
    Unpublished { creator: Option<u32> },
}

/// Checks that an unpublished segment is shaped like a shmq header being
/// written.
fn uninitialised_shape(seg: &Segment) -> Result<Shape, String> {
    use crate::layout::{slot_stride, AUX_ENTRY_SIZE, LAYOUT_VERSION, MAX_CAPACITY, MAX_SLOT_SIZE};
    let len = seg.len();
    if len < MIN_SEGMENT_SIZE {
        return Err(format!(
            "{len} bytes, smaller than the smallest shmq segment ({MIN_SEGMENT_SIZE})"
        ));
    }
    if len % 64 != 0 {
        return Err(format!(
            "{len} bytes, not a multiple of 64 as every shmq segment is"
        ));
    }
    let mut raw = vec![0u8; MIN_SEGMENT_SIZE - 128];
    // SAFETY: len >= MIN_SEGMENT_SIZE > raw.len(), so the copy is in bounds,
    // and a mapping is page-aligned. Other processes may be writing these
    // bytes: a volatile copy of plain bytes, which may be torn (every value
    // is checked below, nothing trusted).
    unsafe { crate::layout::read_volatile_words(seg.as_ptr(), &mut raw) };
    let w32 = |off: usize| u32::from_le_bytes(raw[off..off + 4].try_into().expect("4 bytes"));
    let w64 = |off: usize| u64::from_le_bytes(raw[off..off + 8].try_into().expect("8 bytes"));
    if w64(0) == crate::layout::MAGIC {
        return Ok(Shape::Published);
    }
    if w64(0) != 0 {
        return Err(format!("first word {:#018x} is not shmq's magic", w64(0)));
    }
    // A complete header of this layout but for its magic (its checksum
    // matches): shmq's, whatever the rest holds (a published segment whose
    // magic was wiped, or a creator stopped just before the last store).
    let mut sealed = [0u8; HEADER_SIZE];
    sealed.copy_from_slice(&raw[..HEADER_SIZE]);
    sealed[..8].copy_from_slice(&crate::layout::MAGIC.to_le_bytes());
    if w32(8) == LAYOUT_VERSION && crate::layout::checksum(&sealed) == w64(96) {
        return Ok(Shape::Unpublished {
            creator: Some(w32(40)).filter(|&pid| pid != 0),
        });
    }
    let zero_from = |start: usize, end: usize| raw[start..end].iter().position(|&b| b != 0);
    // Hot lines and the process table: written only after the magic.
    if let Some(i) = zero_from(104, raw.len()) {
        return Err(format!(
            "byte {} is {:#04x} where a header being created holds zero",
            104 + i,
            raw[104 + i]
        ));
    }
    let aux_offset = (HEADER_SIZE + PROC_SLOTS * PROC_ENTRY_SIZE) as u64;
    let slot_size = w32(16);
    let stride = w32(20);
    let slots_offset = w64(88);
    let bad = |what: &str, v: u64| Err(format!("{what} {v} is not what a shmq creator writes"));
    let version = w32(8);
    if version != 0 && version != LAYOUT_VERSION {
        return bad("layout version", version as u64);
    }
    if w32(12) > 2 {
        return bad("kind", w32(12) as u64);
    }
    if slot_size > MAX_SLOT_SIZE {
        return bad("slot size", slot_size as u64);
    }
    if stride != 0
        && (stride % 64 != 0
            || stride > slot_stride(MAX_SLOT_SIZE)
            || (slot_size != 0 && stride != slot_stride(slot_size)))
    {
        return bad("slot stride", stride as u64);
    }
    let capacity = w64(24);
    if capacity != 0 && !(2..=MAX_CAPACITY).contains(&capacity) {
        return bad("capacity", capacity);
    }
    if w32(44) & !0o777 != 0 {
        return bad("mode", w32(44) as u64);
    }
    let total = w64(56);
    if total != 0 && total != len as u64 {
        return Err(format!("header says {total} bytes, the segment has {len}"));
    }
    if ![0, HEADER_SIZE as u64].contains(&w64(64)) {
        return bad("process table offset", w64(64));
    }
    if ![0, PROC_SLOTS as u32].contains(&w32(72)) {
        return bad("process table size", w32(72) as u64);
    }
    if ![0, aux_offset].contains(&w64(80)) {
        return bad("table offset", w64(80));
    }
    if slots_offset != 0
        && (slots_offset < aux_offset
            || (slots_offset - aux_offset) % AUX_ENTRY_SIZE != 0
            || slots_offset >= len as u64)
    {
        return bad("slot array offset", slots_offset);
    }
    Ok(Shape::Unpublished {
        creator: Some(w32(40)).filter(|&pid| pid != 0),
    })
}

/// The most bytes the backing of `target` can ever hold, where that can be
/// told: the size of the file system holding a POSIX object (/dev/shm's
/// `size=` limit) or a file. A header claiming more than this describes a
/// segment that could never be filled (a sparse file blown up by a hostile
/// or corrupt writer): validation may reject it. `None` for SysV (the kernel
/// already bounds a segment by `shmmax`, and the mapping is its real size)
/// and when the file system does not say.
///
/// # Examples
/// ```
/// use shmq::segment::backing_capacity;
/// use shmq::Target;
/// assert_eq!(backing_capacity(&Target::SysV(42)), None);
/// let dir = Target::File(std::env::temp_dir().join("x"));
/// assert!(backing_capacity(&dir).map_or(true, |n| n > 0));
/// ```
pub fn backing_capacity(target: &Target) -> Option<u64> {
    let path = match target {
        Target::SysV(_) => return None,
        Target::Posix(_) => PathBuf::from("/dev/shm"),
        Target::File(path) => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        },
    };
    let st = nix::sys::statvfs::statvfs(path.as_path()).ok()?;
    #[allow(clippy::useless_conversion)] // u64 on 64-bit Linux, not everywhere
    let bytes = u64::from(st.blocks()).checked_mul(u64::from(st.fragment_size()))?;
    (bytes > 0).then_some(bytes)
}

/// Refuses (with [`Error::Corrupt`]) to remove what is not a shmq segment:
/// the check behind [`Target::unlink`].
fn check_removable(target: &Target) -> Result<(), Error> {
    let refuse = |what: String| {
        Err(Error::corrupt(format!(
            "{target} is not a shmq segment ({what}); it was left in place \
             (a forced unlink removes it anyway)"
        )))
    };
    let path = match target {
        Target::SysV(_) => None,
        Target::Posix(name) => Some(posix::path_of(name)?),
        Target::File(path) => {
            file::check_path(path)?;
            Some(path.clone())
        }
    };
    if let Some(path) = path {
        use std::os::unix::fs::MetadataExt;
        let meta =
            std::fs::metadata(&path).map_err(|e| Error::from_os("stat", &target.to_string(), e))?;
        if !meta.is_file() {
            return refuse("not a regular file".into());
        }
        if meta.len() == 0 {
            let idle = age(changed_at(meta.mtime(), meta.ctime()));
            if idle < STALE_AFTER {
                // Just created: a creator that has not sized it yet.
                return Ok(());
            }
            return refuse(format!("empty, unchanged for {} s", idle.as_secs()));
        }
        if meta.len() < HEADER_SIZE as u64 {
            return refuse(format!("{} bytes, smaller than a shmq header", meta.len()));
        }
    }
    let seg = Segment::open(target)?;
    if seg.len() < HEADER_SIZE {
        return refuse(format!("{} bytes, smaller than a shmq header", seg.len()));
    }
    // SAFETY: the mapping holds at least HEADER_SIZE bytes and is page
    // aligned, so the first word is in bounds and aligned.
    let magic = unsafe {
        (*(seg.as_ptr() as *const crate::layout::Header))
            .magic
            .load(crate::sync::Ordering::Relaxed)
    };
    // Relaxed: only the value matters (no other field is read after it).
    if magic == crate::layout::MAGIC {
        return Ok(());
    }
    match classify_uninitialised(&seg) {
        Uninitialised::Initialising | Uninitialised::Abandoned { .. } => Ok(()),
        Uninitialised::Foreign { reason } => refuse(reason),
    }
}

pub(crate) fn cstring(s: &str, what: &str) -> Result<std::ffi::CString, Error> {
    std::ffi::CString::new(s).map_err(|_| Error::invalid(format!("{what} contains a NUL byte")))
}
