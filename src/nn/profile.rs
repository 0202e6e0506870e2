//! An opt-in per-op timer for the networks' forward pass, so `bench recon` can say where the
//! time goes. Off by default: then `timed` is one relaxed atomic load around the op.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static TOTALS: RefCell<BTreeMap<&'static str, (f64, usize)>> = const { RefCell::new(BTreeMap::new()) };
}

/// Run `f`, adding its wall time to `op`'s total when profiling is on.
pub fn timed<T>(op: &'static str, f: impl FnOnce() -> T) -> T {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let out = f();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    TOTALS.with(|t| {
        let mut t = t.borrow_mut();
        let entry = t.entry(op).or_insert((0.0, 0));
        entry.0 += ms;
        entry.1 += 1;
    });
    out
}

/// Start collecting on this thread (clears earlier totals).
pub fn start() {
    TOTALS.with(|t| t.borrow_mut().clear());
    ENABLED.store(true, Ordering::Relaxed);
}

/// Stop and return op → (total milliseconds, calls).
pub fn stop() -> BTreeMap<&'static str, (f64, usize)> {
    ENABLED.store(false, Ordering::Relaxed);
    TOTALS.with(|t| std::mem::take(&mut *t.borrow_mut()))
}
