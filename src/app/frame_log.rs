//! Frame-time records for measuring the studio under load (`SPECTRAL_STUDIO_FRAME_LOG=FILE`):
//! once a second, one JSON line with how long that second's frames spent in the studio's UI
//! code (median, 95th percentile, maximum) and which jobs were running meanwhile. Painting and
//! the GPU's work are not included: they happen in eframe after the UI code returns.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct FrameLog {
    file: std::fs::File,
    opened: Instant,
    since: Instant,
    frames: Vec<Duration>,
    /// Jobs seen running during the current second.
    jobs: std::collections::BTreeSet<String>,
}

impl FrameLog {
    pub fn create(path: &Path) -> crate::Result<FrameLog> {
        let file = std::fs::File::create(path).map_err(|e| crate::Error::io(path, e))?;
        let now = Instant::now();
        Ok(FrameLog { file, opened: now, since: now, frames: Vec::new(), jobs: Default::default() })
    }

    /// Record one frame's UI time and the jobs running at its end; writes a line a second.
    pub fn record(&mut self, ui_time: Duration, jobs: impl IntoIterator<Item = String>) {
        self.frames.push(ui_time);
        self.jobs.extend(jobs);
        if self.since.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.frames.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| ms(self.frames[((self.frames.len() - 1) as f64 * q).round() as usize]);
        let line = serde_json::json!({
            "t_s": self.opened.elapsed().as_secs_f64(),
            "frames": self.frames.len(),
            "ui_ms_p50": at(0.5),
            "ui_ms_p95": at(0.95),
            "ui_ms_max": at(1.0),
            "jobs": self.jobs.iter().collect::<Vec<_>>(),
        });
        // A measurement aid: a failed write must not disturb the studio.
        let _ = writeln!(self.file, "{line}");
        self.frames.clear();
        self.jobs.clear();
        self.since = Instant::now();
    }
}
