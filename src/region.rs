//! A validated shmq segment: the mapping plus the parameters copied out of its
//! header. Both engines (queue, log) sit on a [`Region`].

use std::time::Instant;

use crate::layout::{Header, Params, ProcEntry, QueueKind, SlotHeader, HEADER_SIZE, PROC_SLOTS};
use crate::segment::{Segment, INIT_WAIT};
use crate::{liveness, Error, Target};

/// A mapped segment whose header was validated, with its parameters copied
/// into the process and this process registered in its process table.
#[derive(Debug)]
pub(crate) struct Region {
    seg: Segment,
    params: Params,
    /// Our entry in the process table, cleared on drop.
    proc_slot: Option<usize>,
}

impl Region {
    /// Creates and initialises a new segment at `target`.
    pub(crate) fn create(target: &Target, params: Params) -> Result<Region, Error> {
        let seg = Segment::create(target, params.total_size as usize, params.mode)?;
        // SAFETY: the segment is fresh (created exclusively), zeroed, and
        // total_size bytes long.
        unsafe { params.initialise(seg.as_ptr()) };
        Ok(Region::attached(seg, params))
    }

    /// A region on the heap (threads of one process; unit tests).
    pub(crate) fn heap(params: Params) -> Region {
        let seg = Segment::heap(params.total_size as usize);
        // SAFETY: fresh zeroed heap region of total_size bytes.
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

    /// Opens any shmq segment at `target`, whatever its kind (for inspection).
    #[allow(dead_code)] // used by the inspection API
    pub(crate) fn open_any(target: &Target) -> Result<Region, Error> {
        let seg = Segment::open(target)?;
        let params = Self::validate(&seg, &target.to_string())?;
        Ok(Region::attached(seg, params))
    }

    /// Creates, or opens and checks that the stored parameters match `want`.
    pub(crate) fn open_or_create(target: &Target, want: Params) -> Result<Region, Error> {
        for _ in 0..8 {
            match Region::create(target, want) {
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
        loop {
            // SAFETY: the mapping holds seg.len() >= HEADER_SIZE bytes.
            if let Some(params) = unsafe { Params::validate(seg.as_ptr(), seg.len()) }? {
                return Ok(params);
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    target: what.to_owned(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn attached(seg: Segment, params: Params) -> Region {
        crate::wait::register_process();
        let mut region = Region {
            seg,
            params,
            proc_slot: None,
        };
        region.proc_slot = liveness::register(region.procs());
        region
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
        // SAFETY: validated: the table lies at HEADER_SIZE, PROC_SLOTS entries,
        // inside total_size <= mapping length; entries are atomics.
        unsafe {
            std::slice::from_raw_parts(
                self.seg.as_ptr().add(HEADER_SIZE) as *const ProcEntry,
                PROC_SLOTS,
            )
        }
    }

    /// The start of the kind-specific table (`aux_count` entries of 128 bytes).
    #[allow(dead_code)] // used by the fan-out log's cursor table
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
        if let Some(i) = self.proc_slot {
            liveness::unregister(&self.procs()[i]);
        }
    }
}
