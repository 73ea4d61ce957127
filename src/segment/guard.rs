//! Surviving the truncation of a mapped segment (SIGBUS guard).
//!
//! A POSIX object or a file can be shrunk by anyone with write access
//! (`ftruncate`, `truncate -s`, `> file`) while processes have it mapped.
//! The kernel does not shrink their mappings: the pages past the new end of
//! the file stay in the address space, and the next access to one of them
//! raises SIGBUS, whose default action kills the process. A SysV segment
//! cannot be shrunk (`shmget` fixes its size; `IPC_RMID` only removes the
//! key), and a heap region is ours, so only mmap-backed segments need this.
//!
//! # Design
//!
//! - **Registry.** Every mmap-backed [`Segment`](super::Segment) registers
//!   its mapping (base, length, file descriptor) in a fixed process-wide
//!   array of [`SLOTS`] slots made of atomics, so a signal handler can read
//!   it without a lock or an allocation. A slot is published with a
//!   seqlock (`seq` is odd while a slot is being written); the mapping is
//!   registered after `mmap` and unregistered before `munmap`, so a
//!   consistent snapshot that contains a faulting address describes the
//!   mapping that faulted (live mappings never overlap).
//! - **Handler.** One SIGBUS handler, installed on the first registration
//!   (`SA_SIGINFO | SA_ONSTACK | SA_RESTART`, every signal blocked while it
//!   runs, like Go's own handlers). When `si_addr` lies in a registered
//!   mapping, it maps private anonymous zero pages (`MAP_FIXED`) over the
//!   **whole** mapping, records the size `fstat` finds, and returns: the
//!   faulting instruction runs again on zero memory. Any other SIGBUS is
//!   passed to the handler that was installed before ours (Rust's stack
//!   guard, Go's runtime, the host's own), or, if that was the default
//!   action, the default is restored and the signal delivered again.
//!   The handler makes only async-signal-safe calls (`fstat`, `mmap`,
//!   `sigaction`, `sched_yield`, `raise`; nix's thin wrappers, which
//!   allocate nothing), allocates nothing, takes no lock and saves `errno`.
//! - **Whole mapping, not from the faulting page on.** After a truncation the
//!   segment is lost for every process. Replacing all of it gives this
//!   process one coherent view (all zero: an empty-looking, closed-off
//!   region, in which every index is still in bounds) instead of a header
//!   from the shared file beside zero slots, and stops this process from
//!   writing into whatever the file becomes next (re-grown, re-initialised
//!   by someone else). The price: it no longer sees the prefix that was
//!   still valid, which it has no use for once the queue is broken.
//! - **Query.** The engine asks [`Guard::truncated`] on its slow paths: one
//!   atomic load tells whether the handler replaced this mapping; `fstat`
//!   on the kept descriptor tells whether the backing shrank before this
//!   process touched a missing page (a sleeping waiter, for instance). The
//!   engine turns the answer into its `Corrupt` error with the `From`
//!   impls below ("segment truncated to N bytes").
//!
//! Two threads faulting on the same mapping at once: the first to move the
//! slot's `remap` word from `LIVE` to `BUSY` maps the zero pages; the others
//! wait (yielding) until it reads `DONE`, then return.
//!
//! # Limits
//!
//! - At most [`SLOTS`] mmap-backed segments per process are protected; a
//!   segment mapped beyond that works but is not protected
//!   ([`Protection::Unguarded`]).
//! - A handler installed after ours for SIGBUS (a host's `sigaction`, Go's
//!   `signal.Notify(…, SIGBUS)`) replaces it; protection comes back only if
//!   that handler chains to the previous one. [`guard_active`] tells.
//! - `SHMQ_SIGBUS_GUARD=0` in the environment (read once, at the first
//!   mapping) disables the guard: a truncation kills, as before.
//! - A SIGBUS on a mapped tmpfs page that the kernel cannot allocate
//!   (/dev/shm full) or on a file page it cannot read (I/O error) is
//!   rescued in the same way; [`Truncation`] then says that the backing
//!   failed rather than shrank.
//! - Process-local bookkeeping, not shared memory: the atomics here are
//!   core's, not the `crate::sync` seam, because a model checker cannot run
//!   a signal handler anyway.

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::Once;

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use crate::{CursorError, Error, RecvError, SendError};

/// How many mmap-backed segments one process can have protected at once.
pub const SLOTS: usize = 1024;

/// `remap`: the mapping is the file's.
const LIVE: u32 = 0;
/// `remap`: a handler is replacing the mapping with zero pages.
const BUSY: u32 = 1;
/// `remap`: the mapping is private zero pages; `size` holds what fstat saw.
const DONE: u32 = 2;

/// `size` when fstat failed in the handler.
const SIZE_UNKNOWN: u64 = u64::MAX;

/// One registered mapping.
struct Slot {
    /// Claimed by a registration (CAS false -> true), freed after unregistration.
    used: AtomicBool,
    /// Seqlock over `base`, `len` and `fd`: odd while they are being written.
    seq: AtomicU64,
    /// First byte of the mapping; 0 when the slot holds none.
    base: AtomicUsize,
    /// Length of the mapping in bytes; 0 when the slot holds none.
    len: AtomicUsize,
    /// The backing's descriptor, for fstat (kept open by the segment).
    fd: AtomicI32,
    /// `LIVE`, `BUSY` or `DONE` (see the constants).
    remap: AtomicU32,
    /// The backing's size when the handler replaced the mapping
    /// (`SIZE_UNKNOWN` if fstat failed); valid once `remap` reads `DONE`.
    size: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            used: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            base: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            fd: AtomicI32::new(-1),
            remap: AtomicU32::new(LIVE),
            size: AtomicU64::new(0),
        }
    }

    /// Writes base/len/fd under the seqlock. Only the slot's owner calls it.
    fn write(&self, base: usize, len: usize, fd: i32) {
        // Relaxed: only the owner writes seq.
        let s = self.seq.load(Ordering::Relaxed);
        // Relaxed, then the fence: the standard seqlock writer.
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // SYNC(guard-seqlock): Release fence, orders the odd seq before the
        // field stores, pairs with the Acquire fence in `find`.
        fence(Ordering::Release);
        // Relaxed: covered by the seqlock.
        self.base.store(base, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        self.fd.store(fd, Ordering::Relaxed);
        // SYNC(guard-seqlock): Release, pairs with the Acquire seq load in
        // `find`: a reader that sees the even value sees the fields.
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

static REGISTRY: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// How many mappings the handler has replaced since the process started.
static RESCUED: AtomicU64 = AtomicU64::new(0);

/// The SIGBUS disposition that was in place before ours.
struct Prev(UnsafeCell<MaybeUninit<SigAction>>);
// SAFETY: written once in `install` before PREV_READY is set (Release) and
// only read after PREV_READY is seen (Acquire).
unsafe impl Sync for Prev {}

static PREV: Prev = Prev(UnsafeCell::new(MaybeUninit::uninit()));
static PREV_READY: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// How a segment is protected against the truncation of its backing.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// A POSIX object or a file, registered with the SIGBUS guard: a
    /// truncation gives `Corrupt`, not a crash.
    Guarded,
    /// A SysV segment or a heap region: its size cannot change under a
    /// mapping, so there is nothing to guard.
    NotTruncatable,
    /// A POSIX object or a file that is not protected: a truncation kills
    /// the process with SIGBUS, as without shmq.
    Unguarded {
        /// Why: the guard is disabled, its handler could not be installed,
        /// or the process has more than [`SLOTS`] guarded segments.
        reason: &'static str,
    },
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protection::Guarded => f.write_str("guarded (a truncation gives Corrupt)"),
            Protection::NotTruncatable => {
                f.write_str("impossible (a SysV segment has a fixed size)")
            }
            Protection::Unguarded { reason } => {
                write!(f, "NOT guarded ({reason}): a truncation kills with SIGBUS")
            }
        }
    }
}

/// The backing of a segment was found truncated (or failed) under this
/// process. Converts into every error type's `Corrupt` variant.
///
/// # Examples
/// ```
/// use shmq::segment::Truncation;
/// let t = Truncation::new(4096, 65536);
/// assert_eq!(t.to_string(), "segment truncated to 4096 bytes (65536 mapped)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    size: u64,
    mapped: u64,
}

impl Truncation {
    /// A backing found at `size` bytes under a mapping of `mapped` bytes.
    pub fn new(size: u64, mapped: u64) -> Truncation {
        Truncation { size, mapped }
    }

    /// The size the backing was found at; `None` if it could not be read.
    pub fn size(&self) -> Option<u64> {
        (self.size != SIZE_UNKNOWN).then_some(self.size)
    }

    /// The length of this process's mapping.
    pub fn mapped(&self) -> u64 {
        self.mapped
    }
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.size() {
            Some(size) if size < self.mapped => write!(
                f,
                "segment truncated to {size} bytes ({} mapped)",
                self.mapped
            ),
            Some(size) => write!(
                f,
                "segment lost: its backing ({size} bytes) could not supply a page \
                 (file system full or I/O error)"
            ),
            None => f.write_str("segment lost: its backing failed and cannot be read"),
        }
    }
}

impl std::error::Error for Truncation {}

macro_rules! corrupt_from_truncation {
    ($($t:ident),*) => {$(
        impl From<Truncation> for $t {
            fn from(t: Truncation) -> $t {
                $t::Corrupt { detail: t.to_string() }
            }
        }
    )*};
}
corrupt_from_truncation!(Error, SendError, RecvError, CursorError);

/// A mapping's place in the registry; unregisters on drop (before the
/// mapping is unmapped, see `Segment`'s drop).
pub(crate) struct Guard {
    /// Its registry slot (a reference, not an index: `rescued` runs after
    /// every publish, and an index costs a bounds check and an address
    /// computation there).
    slot: &'static Slot,
    len: usize,
    fd: libc::c_int,
}

impl Guard {
    /// Registers `len` bytes at `base`, backed by `fd` (kept open by the
    /// caller for as long as the guard lives), installing the handler on
    /// first use. `Err` says why the mapping stays unprotected.
    pub(crate) fn register(
        base: *mut u8,
        len: usize,
        fd: libc::c_int,
    ) -> Result<Guard, &'static str> {
        install()?;
        for slot in REGISTRY.iter() {
            // Relaxed first look; the CAS decides.
            if slot.used.load(Ordering::Relaxed) {
                continue;
            }
            // SYNC(guard-claim): Acquire, pairs with the Release store in
            // `drop`: the previous owner's writes are done.
            if slot
                .used
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // Relaxed: no handler reads remap/size of a slot with len 0;
                // the seqlock's Release publishes them with the fields.
                slot.remap.store(LIVE, Ordering::Relaxed);
                slot.size.store(0, Ordering::Relaxed);
                slot.write(base as usize, len, fd);
                return Ok(Guard { slot, len, fd });
            }
        }
        Err("more than 1024 guarded segments in this process")
    }

    /// Whether the handler replaced this mapping with zero pages: one atomic
    /// load, no syscall. The answer, once `Some`, never changes.
    #[inline]
    pub(crate) fn rescued(&self) -> Option<Truncation> {
        let slot = self.slot;
        // SYNC(guard-remap): Acquire, pairs with the Release store of DONE
        // in `rescue`: the size is written.
        if slot.remap.load(Ordering::Acquire) == DONE {
            // Relaxed: ordered by the Acquire above.
            let size = slot.size.load(Ordering::Relaxed);
            return Some(Truncation::new(size, self.len as u64));
        }
        None
    }

    /// Whether the backing is truncated: replaced by the handler already, or
    /// found shorter than the mapping by fstat (one syscall).
    pub(crate) fn truncated(&self) -> Option<Truncation> {
        if let Some(t) = self.rescued() {
            return Some(t);
        }
        let size = fstat_size(self.fd)?;
        (size < self.len as u64).then(|| Truncation::new(size, self.len as u64))
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let index = (self.slot as *const Slot as usize - REGISTRY.as_ptr() as usize)
            / std::mem::size_of::<Slot>();
        f.debug_struct("Guard")
            .field("index", &index)
            .field("len", &self.len)
            .field("fd", &self.fd)
            .finish()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let slot = self.slot;
        slot.write(0, 0, -1);
        // SYNC(guard-claim): Release, pairs with the Acquire CAS in `register`.
        slot.used.store(false, Ordering::Release);
    }
}

/// The size of the file behind `fd`, if fstat works. Async-signal-safe.
pub(super) fn fstat_size(fd: libc::c_int) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is the descriptor of a registered mapping, which its
    // segment keeps open until after the mapping is unregistered; the
    // borrow lasts for one fstat. (`truncated_mappings` may race with a
    // detach and pass a number just closed: fstat has no effect on a
    // descriptor, so that gives at worst a wrong size, which its seqlock
    // re-check then discards.)
    fstat_size_of(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// The same, for a descriptor the caller holds.
pub(super) fn fstat_size_of(fd: BorrowedFd<'_>) -> Option<u64> {
    nix::sys::stat::fstat(fd)
        .ok()
        .and_then(|st| u64::try_from(st.st_size).ok())
}

/// How many mappings the SIGBUS guard has rescued in this process since it
/// started (each truncated mapping counts once).
///
/// # Examples
/// ```
/// assert_eq!(shmq::segment::rescued_mappings(), 0);
/// ```
pub fn rescued_mappings() -> u64 {
    // Relaxed: a statistic.
    RESCUED.load(Ordering::Relaxed)
}

/// Every guarded mapping of this process whose backing is truncated: those
/// the guard already replaced with zero pages, and those whose backing
/// `fstat` finds shorter than the mapping (one syscall per mapping).
///
/// For a host that wants to know without holding the segment, e.g. when a
/// blocking call keeps timing out; a handle's own operations return
/// `Corrupt`. Racing with another thread's detach may miss or misjudge
/// that mapping, never another.
///
/// # Examples
/// ```
/// assert!(shmq::segment::truncated_mappings().is_empty());
/// ```
pub fn truncated_mappings() -> Vec<Truncation> {
    let mut found = Vec::new();
    for slot in REGISTRY.iter() {
        // SYNC(guard-seqlock): Acquire, as in `find`.
        let s1 = slot.seq.load(Ordering::Acquire);
        // Relaxed: validated by the seqlock below.
        let len = slot.len.load(Ordering::Relaxed);
        let fd = slot.fd.load(Ordering::Relaxed);
        // SYNC(guard-remap): Acquire, pairs with the Release store of DONE
        // in `rescue`: the size is written.
        let remap = slot.remap.load(Ordering::Acquire);
        // Relaxed: ordered by the Acquire above.
        let rescued_size = slot.size.load(Ordering::Relaxed);
        // SYNC(guard-seqlock): Acquire fence, as in `find`.
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        if s1 & 1 != 0 || len == 0 || slot.seq.load(Ordering::Relaxed) != s1 {
            continue;
        }
        let size = if remap == DONE {
            Some(rescued_size)
        } else {
            let size = fstat_size(fd);
            // Relaxed: a best-effort re-check (see the doc): detached
            // meanwhile, the descriptor may be closed and the size not
            // this mapping's.
            if slot.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            size.filter(|&size| size < len as u64)
        };
        if let Some(size) = size {
            found.push(Truncation::new(size, len as u64));
        }
    }
    found
}

/// Whether shmq's SIGBUS handler is installed and still in place (not
/// replaced by a handler the host installed later). `false` before the
/// first POSIX or file segment is mapped.
///
/// # Examples
/// ```
/// let t = shmq::Target::Posix(format!("shmq-doc-guard-{}", std::process::id()));
/// let _q = shmq::Queue::create(&t, &shmq::QueueConfig::new(64, 8)).unwrap();
/// assert!(shmq::segment::guard_active());
/// t.unlink().unwrap();
/// ```
pub fn guard_active() -> bool {
    if !INSTALLED.load(Ordering::Acquire) {
        return false;
    }
    // nix's sigaction always installs one; only libc can ask without
    // changing anything (a null new action).
    // SAFETY: a null new action only reads the disposition into a zeroed
    // plain struct.
    unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut cur) == 0
            && cur.sa_sigaction == on_sigbus as *const () as usize
    }
}

/// Installs the handler once per process; says why not if it could not.
pub(super) fn install() -> Result<(), &'static str> {
    static ONCE: Once = Once::new();
    static WHY_NOT: AtomicU32 = AtomicU32::new(0);
    ONCE.call_once(|| {
        if std::env::var_os("SHMQ_SIGBUS_GUARD").is_some_and(|v| v == "0") {
            // Relaxed: published by the Once.
            WHY_NOT.store(1, Ordering::Relaxed);
            return;
        }
        // SA_ONSTACK: Go requires it of every handler in its threads.
        let ours = SigAction::new(
            SigHandler::SigAction(on_sigbus),
            SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK | SaFlags::SA_RESTART,
            SigSet::all(),
        );
        // SIGBUS blocked on this thread while ours is in place but PREV not
        // yet written: a SIGBUS sent to it then waits (none of this code
        // faults); one in another thread waits in `chain` for PREV_READY.
        let mut bus = SigSet::empty();
        bus.add(Signal::SIGBUS);
        let Ok(mask) = bus.thread_swap_mask(SigmaskHow::SIG_BLOCK) else {
            // Relaxed: published by the Once.
            WHY_NOT.store(2, Ordering::Relaxed);
            return;
        };
        // SAFETY: `on_sigbus` is async-signal-safe (see the module doc);
        // the swap returns the previous disposition atomically, so no other
        // thread's installation can slip in between a look and ours.
        let installed = unsafe { nix::sys::signal::sigaction(Signal::SIGBUS, &ours) };
        if let Ok(prev) = installed {
            // SAFETY: the only write, before PREV_READY is published; no
            // reader looks before that.
            unsafe { (*PREV.0.get()).write(prev) };
            // SYNC(guard-prev): Release, pairs with the Acquire load in `chain`.
            PREV_READY.store(true, Ordering::Release);
        }
        let _ = mask.thread_set_mask();
        if installed.is_err() {
            // Relaxed: published by the Once.
            WHY_NOT.store(2, Ordering::Relaxed);
            return;
        }
        // SYNC(guard-installed): Release, pairs with the Acquire in `guard_active`.
        INSTALLED.store(true, Ordering::Release);
    });
    // Relaxed: the Once orders it.
    match WHY_NOT.load(Ordering::Relaxed) {
        0 => Ok(()),
        1 => Err("disabled by SHMQ_SIGBUS_GUARD=0"),
        _ => Err("the SIGBUS handler could not be installed"),
    }
}

/// The registered mapping containing `addr`: (slot, base, len, fd).
fn find(addr: usize) -> Option<(&'static Slot, usize, usize, libc::c_int)> {
    for slot in REGISTRY.iter() {
        // SYNC(guard-seqlock): Acquire, pairs with the Release store that
        // ends `Slot::write`.
        let s1 = slot.seq.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            continue; // being written: not the faulting mapping, which is stable
        }
        // Relaxed: validated by the seqlock below.
        let base = slot.base.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        let fd = slot.fd.load(Ordering::Relaxed);
        // SYNC(guard-seqlock): Acquire fence, pairs with the Release fence in
        // `Slot::write`: if a writer started, the load below sees it.
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        if slot.seq.load(Ordering::Relaxed) != s1 {
            continue;
        }
        if len != 0 && addr >= base && addr - base < len {
            return Some((slot, base, len, fd));
        }
    }
    None
}

/// Replaces the registered mapping holding `addr` with zero pages; `false`
/// if `addr` is not in a registered mapping or the replacement failed.
fn rescue(addr: usize) -> bool {
    let Some((slot, base, len, fd)) = find(addr) else {
        return false;
    };
    // SYNC(guard-remap): Acquire on failure, pairs with the Release store of
    // DONE below (another thread's rescue of the same mapping).
    match slot
        .remap
        .compare_exchange(LIVE, BUSY, Ordering::Acquire, Ordering::Acquire)
    {
        Ok(_) => {
            let size = fstat_size(fd).unwrap_or(SIZE_UNKNOWN);
            let (Some(at), Some(length)) = (NonZeroUsize::new(base), NonZeroUsize::new(len)) else {
                // SYNC(guard-remap): Release, as below.
                slot.remap.store(LIVE, Ordering::Release);
                return false;
            };
            // SAFETY: [base, base+len) is our own registered mapping, alive
            // (a thread is faulting in it); MAP_FIXED replaces it atomically
            // with private zero pages, which every index the engine computes
            // stays inside.
            let mapped = unsafe {
                nix::sys::mman::mmap_anonymous(
                    Some(at),
                    length,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED,
                )
            };
            if mapped.is_err() {
                // SYNC(guard-remap): Release, so another faulting thread may try.
                slot.remap.store(LIVE, Ordering::Release);
                return false;
            }
            // Relaxed: published by the Release store of DONE.
            slot.size.store(size, Ordering::Relaxed);
            // SYNC(guard-remap): Release, pairs with the Acquire loads in
            // `Guard::rescued` and in this function.
            slot.remap.store(DONE, Ordering::Release);
            // Relaxed: a statistic.
            RESCUED.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(_) => loop {
            // SYNC(guard-remap): Acquire, pairs with the Release stores above.
            match slot.remap.load(Ordering::Acquire) {
                DONE => return true,
                LIVE => return false, // the other thread's mmap failed
                _ => {
                    let _ = nix::sched::sched_yield();
                }
            }
        },
    }
}

/// The SIGBUS handler (see the module doc).
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // errno is this thread's: saved and restored around what may set it.
    let saved = Errno::last_raw();
    let addr = if info.is_null() {
        0
    } else {
        // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
        unsafe { (*info).si_addr() as usize }
    };
    if addr == 0 || !rescue(addr) {
        // SAFETY: the kernel's arguments, forwarded unchanged.
        unsafe { chain(sig, info, ctx) };
    }
    Errno::set_raw(saved);
}

/// Passes a SIGBUS that is not ours to the disposition in place before ours.
///
/// # Safety
/// Called from the handler with the kernel's arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // Ours is installed just before PREV is written (see `install`); a
    // SIGBUS of another thread in between waits for it.
    // SYNC(guard-prev): Acquire, pairs with the Release store in `install`.
    while !PREV_READY.load(Ordering::Acquire) {
        let _ = nix::sched::sched_yield();
    }
    // SAFETY: written before PREV_READY was published, never again.
    let prev = unsafe { (*PREV.0.get()).assume_init_ref() };
    // Whether the signal was sent (kill, raise) rather than raised by a fault.
    // SAFETY: the kernel passes a valid siginfo (or null).
    let sent = info.is_null() || unsafe { (*info).si_code } <= 0;
    match prev.handler() {
        SigHandler::SigDfl => default_action(sig, sent),
        // An ignored SIGBUS from kill() stays ignored; a fault cannot be
        // ignored (the kernel would kill): take the default.
        SigHandler::SigIgn => {
            if !sent {
                default_action(sig, sent)
            }
        }
        // The kernel's arguments unchanged, so it may edit the context (Go
        // injects its panic this way).
        SigHandler::SigAction(f) => f(sig, info, ctx),
        SigHandler::Handler(f) => f(sig),
    }
}

/// Restores the default action and lets it happen: a fault kills when the
/// faulting instruction runs again; a signal that was `sent` is sent again
/// and delivered (blocked until this handler returns).
fn default_action(sig: libc::c_int, sent: bool) {
    let Ok(signal) = Signal::try_from(sig) else {
        return;
    };
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing the default action runs no code of ours.
    let _ = unsafe { nix::sys::signal::sigaction(signal, &dfl) };
    if sent {
        // raise: tgkill to this thread, async-signal-safe.
        let _ = nix::sys::signal::raise(signal);
    }
}
