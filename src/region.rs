//! A validated shmq segment: the mapping plus the parameters copied out of its
//! header. Both engines (queue, log) sit on a [`Region`].

use std::sync::Arc;
use std::time::Instant;

use crate::layout::{
    Header, Params, ProcEntry, QueueKind, SlotHeader, ENTRY_HANDLE, HEADER_SIZE, PROC_SLOTS,
};
use crate::procs::{self, LaneBook};
use crate::segment::{Segment, Uninitialised, INIT_WAIT};
use crate::sync::Ordering;
use crate::{Error, Target};

/// A mapped segment whose header was validated, with its parameters copied
/// into the process and this process registered in its process table.
#[derive(Debug)]
pub(crate) struct Region {
    seg: Segment,
    params: Params,
    /// Our entry in the process table, cleared on drop.
    proc_slot: Option<usize>,
    /// The lanes of the threads that claim through this handle.
    lanes: Arc<LaneBook>,
}

impl std::fmt::Debug for LaneBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LaneBook")
    }
}

impl Region {
    /// Creates and initialises a new segment at `target`.
    pub(crate) fn create(target: &Target, params: Params) -> Result<Region, Error> {
        Region::create_with(target, params, &|_| {})
    }

    /// As [`Region::create`], letting `prepare` write the kind-specific
    /// (aux) table, whose start it is given, before the header is
    /// published: no other process sees the segment before that.
    pub(crate) fn create_with(
        target: &Target,
        params: Params,
        prepare: &dyn Fn(*mut u8),
    ) -> Result<Region, Error> {
        let seg = Segment::create(target, params.total_size as usize, params.mode)?;
        // SAFETY: aux_offset < total_size, the fresh mapping's length.
        prepare(unsafe { seg.as_ptr().add(params.aux_offset as usize) });
        // SAFETY: the segment is fresh (created exclusively), zeroed but for
        // the aux table just prepared, and total_size bytes long.
        unsafe { params.initialise(seg.as_ptr()) };
        Ok(Region::attached(seg, params))
    }

    /// A region on the heap (threads of one process; unit tests).
    pub(crate) fn heap(params: Params) -> Region {
        Region::heap_with(params, &|_| {})
    }

    /// As [`Region::heap`], with `prepare` as in [`Region::create_with`].
    pub(crate) fn heap_with(params: Params, prepare: &dyn Fn(*mut u8)) -> Region {
        let seg = Segment::heap(params.total_size as usize);
        // SAFETY: aux_offset < total_size, the fresh region's length.
        prepare(unsafe { seg.as_ptr().add(params.aux_offset as usize) });
        // SAFETY: fresh zeroed heap region of total_size bytes (but for
        // the aux table just prepared).
        unsafe { params.initialise(seg.as_ptr()) };
        Region::attached(seg, params)
    }

    /// Opens the segment at `target` and validates it as a `kind`.
    pub(crate) fn open(target: &Target, kind: QueueKind) -> Result<Region, Error> {
        let seg = Segment::open(target)?;
        let params = Self::validate(&seg, &target.to_string())?;
        if params.kind != kind {
            return Err(Error::Incompatible {
                detail: format!("{target} holds a {:?}, not a {kind:?}", params.kind),
            });
        }
        Ok(Region::attached(seg, params))
    }

    /// Creates, or opens and checks that the stored parameters match `want`.
    pub(crate) fn open_or_create(target: &Target, want: Params) -> Result<Region, Error> {
        Region::open_or_create_with(target, want, &|_| {})
    }

    /// As [`Region::open_or_create`], with `prepare` as in
    /// [`Region::create_with`] when it creates.
    pub(crate) fn open_or_create_with(
        target: &Target,
        want: Params,
        prepare: &dyn Fn(*mut u8),
    ) -> Result<Region, Error> {
        for _ in 0..8 {
            match Region::create_with(target, want, prepare) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            match Region::open(target, want.kind) {
                Ok(region) => {
                    region.params.check_matches(&want)?;
                    return Ok(region);
                }
                // Removed between our create and open: try again.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::NotReady {
            target: target.to_string(),
        })
    }

    /// Validates the header of an untrusted mapping, waiting a bounded time
    /// for a creator that has not published it yet.
    fn validate(seg: &Segment, what: &str) -> Result<Params, Error> {
        if seg.len() < HEADER_SIZE {
            return Err(Error::corrupt(format!(
                "{what} is {} bytes, smaller than a shmq header ({HEADER_SIZE}); truncated or not shmq's",
                seg.len()
            )));
        }
        let deadline = Instant::now() + INIT_WAIT;
        let params = loop {
            // SAFETY: the mapping holds seg.len() >= HEADER_SIZE bytes.
            if let Some(params) = unsafe { Params::validate(seg.as_ptr(), seg.len()) }? {
                break params;
            }
            // Magic still zero: wait only for a creator that may be at work.
            match crate::segment::classify_uninitialised(seg) {
                Uninitialised::Initialising => {}
                Uninitialised::Abandoned { .. } => {
                    return Err(Error::NotReady {
                        target: what.to_owned(),
                    })
                }
                Uninitialised::Foreign { reason } => {
                    return Err(Error::corrupt(format!(
                        "{what}: {reason}; not a shmq segment"
                    )))
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    target: what.to_owned(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        if let Some(limit) = seg.target().and_then(crate::segment::backing_capacity) {
            if params.total_size > limit {
                return Err(Error::corrupt(format!(
                    "header claims {} bytes ({} slots), more than the {limit} bytes the file \
                     system holding {what} can ever store",
                    params.total_size, params.capacity
                )));
            }
        }
        Ok(params)
    }

    fn attached(seg: Segment, params: Params) -> Region {
        crate::wait::register_process();
        crate::failpoint::arm_from_env();
        // SAFETY: validated: the table lies at HEADER_SIZE, PROC_SLOTS
        // entries, inside total_size <= mapping length.
        let table = unsafe { Self::table_of(&seg) };
        let mut region = Region {
            lanes: LaneBook::new(table),
            seg,
            params,
            proc_slot: None,
        };
        let slot = procs::take(region.procs(), ENTRY_HANDLE, &|e| region.on_reap(e));
        region.proc_slot = slot;
        region
    }

    /// # Safety
    /// `seg` holds a validated segment.
    unsafe fn table_of(seg: &Segment) -> &[ProcEntry] {
        // SAFETY: the caller guarantees the table is inside the mapping;
        // entries are atomics, 128-byte aligned from a page-aligned base.
        unsafe {
            std::slice::from_raw_parts(
                seg.as_ptr().add(HEADER_SIZE) as *const ProcEntry,
                PROC_SLOTS,
            )
        }
    }

    /// Undoes what a dead entry counted elsewhere, before it is reaped:
    /// its single-producer sleepers.
    pub(crate) fn on_reap(&self, e: &ProcEntry) {
        // Relaxed: the reaper owns the entry now (PID_REAPING).
        let n = e.spsc_sleeping.swap(0, Ordering::Relaxed);
        if n != 0 {
            let sleepers = &self.header().control.sleepers;
            // Relaxed: a count that wakers read as a hint; saturating, as
            // the word is shared memory.
            let _ = sleepers.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        }
    }

    /// The calling thread's lane (taken on first use); `None` when the
    /// process table is full of live entries.
    #[inline]
    pub(crate) fn lane(&self) -> Option<&ProcEntry> {
        self.lanes.lane(&|e| self.on_reap(e))
    }

    /// This handle's entry and its token (for roles), if it has one.
    pub(crate) fn handle_token(&self) -> Option<u64> {
        self.proc_slot
            .map(|i| procs::token(i, procs::gen_of(self.procs(), i)))
    }

    /// This handle's entry, if it has one.
    pub(crate) fn handle_entry(&self) -> Option<&ProcEntry> {
        self.proc_slot.map(|i| &self.procs()[i])
    }

    /// Frees the entries of dead processes (undoing their counts); returns how many.
    pub(crate) fn reap_dead(&self) -> usize {
        procs::reap_dead(self.procs(), &|e| self.on_reap(e))
    }

    /// The validated, process-local copy of the immutable parameters.
    pub(crate) fn params(&self) -> &Params {
        &self.params
    }

    /// The underlying segment.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The header's hot words (atomics only; immutable fields come from `params`).
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: validated: the mapping holds at least HEADER_SIZE bytes and
        // is page (or 16-byte) aligned; Header's atomics tolerate sharing.
        unsafe { &*(self.seg.as_ptr() as *const Header) }
    }

    /// The process table.
    pub(crate) fn procs(&self) -> &[ProcEntry] {
        // SAFETY: validated when the region was made.
        unsafe { Self::table_of(&self.seg) }
    }

    /// The start of the kind-specific table (`aux_count` entries of 128 bytes).
    pub(crate) fn aux_ptr(&self) -> *mut u8 {
        // SAFETY: validated: aux_offset lies inside the mapping.
        unsafe { self.seg.as_ptr().add(self.params.aux_offset as usize) }
    }

    /// The start of the slot array.
    pub(crate) fn slots_ptr(&self) -> *mut u8 {
        // SAFETY: validated: slots_offset + capacity * stride <= mapping length.
        unsafe { self.seg.as_ptr().add(self.params.slots_offset as usize) }
    }

    /// The header of slot `index`.
    ///
    /// # Safety
    /// `index < capacity`.
    #[inline]
    pub(crate) unsafe fn slot(&self, index: u64) -> &SlotHeader {
        debug_assert!(index < self.params.capacity);
        // SAFETY: index < capacity (caller), so the slot lies inside the
        // validated slot array; stride is a multiple of 8, so it is aligned.
        unsafe {
            &*(self
                .slots_ptr()
                .add((index * self.params.slot_stride as u64) as usize)
                as *const SlotHeader)
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.lanes.close();
        if let Some(i) = self.proc_slot {
            procs::free(&self.procs()[i]);
        }
    }
}
