//! How heavy work runs off the caller's thread: a cancellation flag that jobs poll between
//! steps, and progress reports. The GUI's worker and the CLI use the same two types.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared "please stop" flag. Cloning shares the flag; jobs check it between units of work
/// (tiles, training steps) so a cancel takes effect within one unit.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Error::Cancelled)` once cancelled: lets a job bail out with `?`.
    pub fn check(&self) -> crate::Result<()> {
        if self.is_cancelled() {
            Err(crate::Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// What a running job tells its caller: a fraction done and what it is doing.
pub type ProgressFn<'a> = dyn Fn(f32, &str) + Send + Sync + 'a;

/// Cancellation and progress for one job, passed by reference into long computations.
pub struct JobContext<'a> {
    pub cancel: CancelToken,
    progress: Box<ProgressFn<'a>>,
}

impl<'a> JobContext<'a> {
    pub fn new(cancel: CancelToken, progress: impl Fn(f32, &str) + Send + Sync + 'a) -> Self {
        JobContext { cancel, progress: Box::new(progress) }
    }

    /// A context nobody watches and nobody cancels (tests, simple library calls).
    pub fn silent() -> JobContext<'static> {
        JobContext { cancel: CancelToken::new(), progress: Box::new(|_, _| {}) }
    }

    pub fn report(&self, fraction: f32, what: &str) {
        (self.progress)(fraction.clamp(0.0, 1.0), what)
    }

    pub fn check(&self) -> crate::Result<()> {
        self.cancel.check()
    }
}
