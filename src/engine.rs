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

/// What a background job sends back to whoever started it.
pub enum JobEvent<T> {
    Progress { fraction: f32, what: String },
    Done(crate::Result<T>),
}

/// Called after every event a job sends, so a GUI can wake up and poll (egui's
/// `request_repaint`); the engine itself knows nothing about screens.
pub type Waker = std::sync::Arc<dyn Fn() + Send + Sync>;

/// A named piece of work on its own thread. The owner polls it (once a frame in the studio);
/// it never blocks the owner. Dropping the handle cancels the work.
pub struct Job<T> {
    pub name: String,
    pub cancel: CancelToken,
    pub started: std::time::Instant,
    /// The latest progress report: fraction done and what the job is doing.
    pub progress: (f32, String),
    events: crossbeam_channel::Receiver<JobEvent<T>>,
    finished: bool,
}

impl<T: Send + 'static> Job<T> {
    /// Start `work` on a new thread. Its progress reports and its result come back as events.
    pub fn spawn(name: impl Into<String>, waker: Waker, work: impl FnOnce(&JobContext) -> crate::Result<T> + Send + 'static) -> Job<T> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let cancel = CancelToken::new();
        let token = cancel.clone();
        let name = name.into();
        let thread_name = format!("job: {name}");
        let wake = waker.clone();
        let progress_tx = tx.clone();
        let spawned = std::thread::Builder::new().name(thread_name).spawn(move || {
            let ctx = JobContext::new(token, move |fraction, what| {
                let _ = progress_tx.send(JobEvent::Progress { fraction, what: what.to_string() });
                wake();
            });
            // A panic inside the work must reach the owner as an error, not vanish with the thread.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&ctx)))
                .unwrap_or_else(|panic| Err(crate::Error::invalid(format!("internal error: {}", panic_message(&panic)))));
            let _ = tx.send(JobEvent::Done(result));
            waker();
        });
        if let Err(e) = spawned {
            // No thread: report the failure through the same channel the owner polls.
            let (tx, rx) = crossbeam_channel::unbounded();
            let _ = tx.send(JobEvent::Done(Err(crate::Error::invalid(format!("could not start a worker thread: {e}")))));
            return Job { name, cancel, started: std::time::Instant::now(), progress: (0.0, String::new()), events: rx, finished: false };
        }
        Job { name, cancel, started: std::time::Instant::now(), progress: (0.0, "starting".into()), events: rx, finished: false }
    }
}

impl<T> Job<T> {
    /// Take every pending event; `Some(result)` once, when the job has finished.
    pub fn poll(&mut self) -> Option<crate::Result<T>> {
        if self.finished {
            return None;
        }
        while let Ok(event) = self.events.try_recv() {
            match event {
                JobEvent::Progress { fraction, what } => self.progress = (fraction, what),
                JobEvent::Done(result) => {
                    self.finished = true;
                    return Some(result);
                }
            }
        }
        None
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Block until the job ends (tests and the CLI; the GUI polls instead).
    pub fn wait(mut self) -> crate::Result<T> {
        loop {
            match self.events.recv() {
                Ok(JobEvent::Done(result)) => {
                    self.finished = true;
                    return result;
                }
                Ok(JobEvent::Progress { fraction, what }) => self.progress = (fraction, what),
                Err(_) => return Err(crate::Error::invalid(format!("job '{}' ended without a result", self.name))),
            }
        }
    }
}

impl<T> Drop for Job<T> {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel.cancel();
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a worker panicked".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn no_wake() -> Waker {
        Arc::new(|| {})
    }

    #[test]
    fn a_job_reports_progress_and_its_result() {
        let job = Job::spawn("sum", no_wake(), |ctx| {
            ctx.report(0.5, "half way");
            Ok(2 + 2)
        });
        assert_eq!(job.wait().unwrap(), 4);
    }

    #[test]
    fn a_cancelled_job_ends_with_cancelled() {
        let job: Job<()> = Job::spawn("forever", no_wake(), |ctx| loop {
            ctx.check()?;
            std::thread::sleep(std::time::Duration::from_millis(1));
        });
        job.cancel.cancel();
        assert!(matches!(job.wait(), Err(crate::Error::Cancelled)));
    }

    #[test]
    fn a_panicking_job_becomes_an_error() {
        let job: Job<()> = Job::spawn("broken", no_wake(), |_| panic!("boom"));
        let err = job.wait().unwrap_err().to_string();
        assert!(err.contains("boom"), "{err}");
    }

    #[test]
    fn polling_never_blocks_and_yields_the_result_once() {
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
        let mut job = Job::spawn("gated", no_wake(), move |_| {
            go_rx.recv().ok();
            Ok(7)
        });
        assert!(job.poll().is_none());
        go_tx.send(()).unwrap();
        let start = std::time::Instant::now();
        let result = loop {
            if let Some(r) = job.poll() {
                break r;
            }
            assert!(start.elapsed().as_secs() < 10, "job never finished");
            std::thread::yield_now();
        };
        assert_eq!(result.unwrap(), 7);
        assert!(job.poll().is_none());
    }
}
