//! Which path the ops take: their own CPU kernels, or the portable path.
//!
//! Every op of [`crate::nn`] (and the training loss) has a CPU kernel of its own and, beside it,
//! the same math composed from candle's ops: the path CUDA and Metal run, since custom ops have
//! no kernels there. A tensor on the CPU takes the kernels unless the portable path is forced,
//! for the whole process by `SPECTRAL_STUDIO_OPS=portable` in the environment, or for the
//! calling thread by [`with_portable`] (candle runs a backward pass on the thread that asks for
//! it, so a test's forward and backward passes both stay on the path it chose). That is how the
//! path a GPU runs is tested on a machine without one: `tests/portable.rs` checks, on the CPU,
//! that both paths give the same outputs and gradients for every op and every architecture, and
//! that the portable path's gradients match finite differences.

use candle_core::{DType, Device};
use std::cell::Cell;
use std::sync::OnceLock;

/// The environment variable: `portable` forces the portable path, `kernels` (or unset) keeps
/// the CPU kernels.
pub const ENV_VAR: &str = "SPECTRAL_STUDIO_OPS";

thread_local! {
    static THREAD: Cell<Option<bool>> = const { Cell::new(None) };
}

static FROM_ENV: OnceLock<bool> = OnceLock::new();

/// What `SPECTRAL_STUDIO_OPS` asks for: Ok(true) for `portable`, Ok(false) for `kernels` or
/// nothing, an error naming the variable otherwise (the CLI and the studio check it at start).
pub fn env_choice() -> Result<bool, String> {
    match std::env::var(ENV_VAR) {
        Err(_) => Ok(false),
        Ok(v) => match v.trim() {
            "" | "kernels" => Ok(false),
            "portable" => Ok(true),
            other => Err(format!("{ENV_VAR}={other}: expected 'portable' (candle's ops, the path GPUs run) or 'kernels' (the CPU kernels, the default)")),
        },
    }
}

/// Whether the portable path is forced on this thread (by [`with_portable`], else by the
/// environment).
pub fn forced() -> bool {
    THREAD.with(|t| t.get()).unwrap_or_else(|| *FROM_ENV.get_or_init(|| env_choice().unwrap_or(false)))
}

/// Whether an op may run its CPU kernel on a tensor on `device` of `dtype`: on the CPU, in f32
/// or f64, with the portable path not forced.
pub fn cpu_kernel(device: &Device, dtype: DType) -> bool {
    device.is_cpu() && matches!(dtype, DType::F32 | DType::F64) && !forced()
}

/// `f()` with the portable path forced on (or off) on this thread; the previous choice is
/// restored afterwards, even if `f` panics.
pub fn with_portable<R>(on: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<bool>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(THREAD.with(|t| t.replace(Some(on))));
    f()
}

/// "kernels" or "portable": what the ops on the CPU run now (for benchmarks' JSON and cards).
pub fn cpu_path_name() -> &'static str {
    if forced() {
        "portable"
    } else {
        "kernels"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_choice_is_scoped_and_restored() {
        let before = forced();
        with_portable(true, || {
            assert!(forced());
            assert!(!cpu_kernel(&Device::Cpu, DType::F32));
            with_portable(false, || assert!(cpu_kernel(&Device::Cpu, DType::F32)));
            assert!(forced());
        });
        assert_eq!(forced(), before);
        assert!(!cpu_kernel(&Device::Cpu, DType::F16), "no kernels for half floats");
    }
}
