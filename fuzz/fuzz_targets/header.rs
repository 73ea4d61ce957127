//! `Params::validate` on arbitrary header bytes, over a mapping of any
//! claimed length, and the unpublished-segment classifier on the same bytes.
//! Either must return (accept or reject) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmq::layout::{Params, HEADER_SIZE};
use shmq::segment::{classify_uninitialised, Segment, MIN_SEGMENT_SIZE};

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the mapping's length; the rest is the header
    // (a quarter of the inputs get a valid magic, version and checksum so
    // the later checks are reached).
    if data.len() < 2 {
        return;
    }
    let len = HEADER_SIZE.max(MIN_SEGMENT_SIZE - 128 + 128 * data[0] as usize + data[1] as usize);
    let seg = Segment::heap(len);
    let body = &data[2..];
    let n = body.len().min(len);
    // SAFETY: n <= len bytes of a fresh heap region we own.
    unsafe { std::ptr::copy_nonoverlapping(body.as_ptr(), seg.as_ptr(), n) };
    if data[0] & 3 == 0 {
        // SAFETY: HEADER_SIZE <= len bytes of the region.
        let hdr = unsafe { std::slice::from_raw_parts_mut(seg.as_ptr(), HEADER_SIZE) };
        hdr[..8].copy_from_slice(&shmq::layout::MAGIC.to_le_bytes());
        hdr[8..12].copy_from_slice(&shmq::layout::LAYOUT_VERSION.to_le_bytes());
        let sum = shmq::layout::checksum(hdr);
        hdr[96..104].copy_from_slice(&sum.to_le_bytes());
    }
    // SAFETY: the region holds len >= HEADER_SIZE bytes.
    if let Ok(Some(p)) = unsafe { Params::validate(seg.as_ptr(), len) } {
        assert!(
            p.total_size <= len as u64,
            "accepted a header larger than its mapping"
        );
        assert!(p.slots_offset + p.capacity * p.slot_stride as u64 <= len as u64);
    }
    let _ = classify_uninitialised(&seg);
});
