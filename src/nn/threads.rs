//! The CPU kernels' thread helpers: a leaf module every kernel file imports, so no kernel
//! imports another for its threads (this ended the `conv` ↔ `direct` import circle).

use std::sync::atomic::{AtomicUsize, Ordering};

/// A raw pointer that may cross threads: each work item writes a disjoint region.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// A method, not field access, so closures capture the whole (Send + Sync) wrapper.
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Run `work(item, thread_scratch)` for items 0..count on up to `threads` scoped threads, each
/// taking the next item from a shared counter.
pub(crate) fn parallel_items<S: Send>(count: usize, mut scratch: Vec<S>, work: impl Fn(usize, &mut S) + Sync) -> Vec<S> {
    let next = AtomicUsize::new(0);
    let threads = scratch.len().min(count).max(1);
    std::thread::scope(|scope| {
        for s in scratch.iter_mut().take(threads) {
            let (next, work) = (&next, &work);
            scope.spawn(move || loop {
                let item = next.fetch_add(1, Ordering::Relaxed);
                if item >= count {
                    break;
                }
                work(item, s);
            });
        }
    });
    scratch
}

/// The element-wise sum of per-thread partial results, each `len` long.
pub(crate) fn sum_partials<T: Copy + Default + std::ops::AddAssign>(parts: impl IntoIterator<Item = Vec<T>>, len: usize) -> Vec<T> {
    let mut total = vec![T::default(); len];
    for part in parts {
        for (a, b) in total.iter_mut().zip(part) {
            *a += b;
        }
    }
    total
}

/// `count` planes of `len` values each, all `zero` at first, plane `item` written by
/// `work(item, plane)` on the threads (one item per plane, so no two threads write one value).
pub(crate) fn fill_planes<T: Copy + Send + Sync>(count: usize, len: usize, zero: T, work: impl Fn(usize, &mut [T]) + Sync) -> Vec<T> {
    let mut out = vec![zero; count * len];
    let dst = SharedMut(out.as_mut_ptr());
    parallel_items(count, vec![(); threads()], |item, _| {
        // SAFETY: item alone writes plane `item`, inside the buffer.
        work(item, unsafe { std::slice::from_raw_parts_mut(dst.get().add(item * len), len) });
    });
    out
}

pub(crate) fn threads() -> usize {
    candle_core::utils::get_num_threads().max(1)
}
