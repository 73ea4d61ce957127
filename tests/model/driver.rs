//! The loom driver every model file shares. Each `tests/model_*.rs` is a
//! test crate of its own and includes this file with `#[path]`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};

/// Runs `f` over every interleaving loom explores, with the preemption
/// bound `LOOM_MAX_PREEMPTIONS` or else `default_bound`, then prints how
/// many interleavings it explored and how long it took.
///
/// With `trace`, the model's event log: it is cleared before each
/// interleaving, and a failing one (an assertion, or loom's own report of
/// a data race, in any model thread) prints it before the panic message.
pub fn check(
    name: &str,
    default_bound: usize,
    trace: Option<&'static Mutex<Vec<String>>>,
    f: impl Fn() + Sync + Send + 'static,
) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(default_bound);
    }
    let bound = b.preemption_bound;
    let start = std::time::Instant::now();
    if let Some(trace) = trace {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if let Ok(t) = trace.try_lock() {
                    eprintln!("interleaving:\n{}", t.join("\n"));
                }
                default(info);
            }));
        });
    }
    // Relaxed: a count read after `check` returns, on this thread.
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    b.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        if let Some(trace) = trace {
            trace.lock().unwrap().clear();
        }
        f()
    });
    eprintln!(
        "model {name}: {} interleavings, preemption bound {bound:?}, {:.1?}",
        runs.load(Ordering::Relaxed),
        start.elapsed()
    );
}
