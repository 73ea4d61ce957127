//! The one seam through which the engine reaches atomics.
//!
//! Everything that touches shared words imports from here, so a model checker
//! (loom) can be swapped in without touching the algorithms.

pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
