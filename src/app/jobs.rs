//! The studio's background jobs: what each kind returns, and the small pieces of work that
//! run inside them (save dialogs, PNG and CSV export).

use super::compare::Row;
use super::document::{Layer, LoadedFile};
use super::reconstruct::ReconRequest;
use super::view::{self, DisplaySettings};
use crate::engine::Job;
use crate::metrics::{BandErrors, MetricSet};
use crate::recon::Reconstruction;
use crate::spectral::fit::CameraFit;
use crate::{Cube, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub enum JobKind {
    /// Files read, and the paths asked for (none for the demo).
    Load(Job<Vec<Result<LoadedFile>>>, Vec<PathBuf>),
    Dialog(Job<Vec<PathBuf>>),
    Recon(Job<Reconstruction>, ReconRequest),
    /// Scores of reconstruction layer `.1` against ground-truth layer `.2`.
    Score(Job<(MetricSet, BandErrors)>, u64, u64),
    /// Abundances of a layer: FCLS of a cube or INSS of an RGB picture.
    Unmix(Job<super::abundances::AbundanceResult>),
    Fit(Job<CameraFit>),
    /// The camera USR estimated from the input, and the input's name.
    Estimate(Job<crate::recon::usr::EstimatedCamera>, String),
    CameraDialog(Job<Option<PathBuf>>),
    Saved(Job<Option<PathBuf>>),
    /// A simulated fusion pair: RGB, low-resolution cube, kernel name, framed kernel.
    Simulate(Job<(crate::RgbImage, Cube, String, ndarray::Array2<f32>)>),
    /// A spectrum or region statistics read from a large cube's file.
    Probe(Job<super::probes::ProbeValue>, super::probes::ProbeKey),
    /// An RGB file read again with another decoding, for layer `.1`.
    Redecode(Job<(Arc<crate::RgbImage>, crate::io::image_file::RgbEncoding)>, u64),
    /// Layer `.1`'s data under new wavelengths, and how they were given.
    Relabel(Job<super::document::LayerData>, u64, String),
}

pub struct BackgroundJob {
    pub id: u64,
    pub kind: JobKind,
    outcome: Option<Outcome>,
}

/// A finished job's result, typed by its kind.
pub enum Outcome {
    Failed(crate::Error),
    Loaded(Vec<Result<LoadedFile>>, Vec<PathBuf>),
    Chosen(Vec<PathBuf>),
    Reconstructed(Reconstruction, ReconRequest),
    Scored(MetricSet, BandErrors, u64, u64),
    Unmixed(super::abundances::AbundanceResult),
    Fitted(CameraFit),
    Estimated(crate::recon::usr::EstimatedCamera, String),
    CameraChosen(Option<PathBuf>),
    Saved(Option<PathBuf>),
    Simulated(crate::RgbImage, Cube, String, ndarray::Array2<f32>),
    Probed(super::probes::ProbeKey, Result<super::probes::ProbeValue>),
    Redecoded((Arc<crate::RgbImage>, crate::io::image_file::RgbEncoding), u64),
    Relabelled(super::document::LayerData, u64, String),
}

macro_rules! each_job {
    ($kind:expr, $job:ident => $body:expr) => {
        match $kind {
            JobKind::Load($job, _) => $body,
            JobKind::Dialog($job) => $body,
            JobKind::Recon($job, _) => $body,
            JobKind::Score($job, _, _) => $body,
            JobKind::Unmix($job) => $body,
            JobKind::Fit($job) => $body,
            JobKind::Estimate($job, _) => $body,
            JobKind::CameraDialog($job) => $body,
            JobKind::Saved($job) => $body,
            JobKind::Simulate($job) => $body,
            JobKind::Probe($job, _) => $body,
            JobKind::Redecode($job, _) => $body,
            JobKind::Relabel($job, _, _) => $body,
        }
    };
}

impl BackgroundJob {
    pub fn new(id: u64, kind: JobKind) -> Self {
        BackgroundJob { id, kind, outcome: None }
    }

    pub fn name(&self) -> &str {
        each_job!(&self.kind, job => &job.name)
    }

    pub fn progress(&self) -> (f32, String) {
        each_job!(&self.kind, job => job.progress.clone())
    }

    pub fn elapsed(&self) -> std::time::Duration {
        each_job!(&self.kind, job => job.started.elapsed())
    }

    pub fn cancel(&self) {
        each_job!(&self.kind, job => job.cancel.cancel())
    }

    /// Poll the job; true once it has finished (its outcome is then kept for `into_outcome`).
    pub fn poll_into_outcome(&mut self) -> bool {
        fn wrap<T>(r: Result<T>, f: impl FnOnce(T) -> Outcome) -> Outcome {
            r.map(f).unwrap_or_else(Outcome::Failed)
        }
        let outcome = match &mut self.kind {
            JobKind::Load(j, asked) => {
                let asked = asked.clone();
                j.poll().map(|r| wrap(r, |files| Outcome::Loaded(files, asked)))
            }
            JobKind::Dialog(j) => j.poll().map(|r| wrap(r, Outcome::Chosen)),
            JobKind::Recon(j, req) => j.poll().map(|r| wrap(r, |x| Outcome::Reconstructed(x, req.clone()))),
            JobKind::Score(j, layer, gt) => {
                let (layer, gt) = (*layer, *gt);
                j.poll().map(|r| wrap(r, |(m, b)| Outcome::Scored(m, b, layer, gt)))
            }
            JobKind::Unmix(j) => j.poll().map(|r| wrap(r, Outcome::Unmixed)),
            JobKind::Fit(j) => j.poll().map(|r| wrap(r, Outcome::Fitted)),
            JobKind::Estimate(j, input) => {
                let input = input.clone();
                j.poll().map(|r| wrap(r, |e| Outcome::Estimated(e, input)))
            }
            JobKind::CameraDialog(j) => j.poll().map(|r| wrap(r, Outcome::CameraChosen)),
            JobKind::Saved(j) => j.poll().map(|r| wrap(r, Outcome::Saved)),
            JobKind::Simulate(j) => j.poll().map(|r| wrap(r, |(rgb, lr, name, k)| Outcome::Simulated(rgb, lr, name, k))),
            // A failed read is the probe's to record (it must not be read again), not an error outcome.
            JobKind::Probe(j, key) => j.poll().map(|r| Outcome::Probed(key.clone(), r)),
            JobKind::Redecode(j, id) => {
                let id = *id;
                j.poll().map(|r| wrap(r, |x| Outcome::Redecoded(x, id)))
            }
            JobKind::Relabel(j, id, how) => {
                let (id, how) = (*id, how.clone());
                j.poll().map(|r| wrap(r, |x| Outcome::Relabelled(x, id, how)))
            }
        };
        if outcome.is_some() {
            self.outcome = outcome;
            true
        } else {
            false
        }
    }

    pub fn into_outcome(self) -> Outcome {
        self.outcome.unwrap_or_else(|| Outcome::Failed(crate::Error::invalid("job polled before it finished")))
    }
}

/// Whether a native file dialog can work here. On Linux, rfd asks the XDG desktop portal over
/// the D-Bus session bus (through libdbus, loaded at run time); without the library, the bus
/// or a portal on it the dialog returns at once as if the user had cancelled, so the studio
/// asks for a typed path instead. All three are checked, the bus within a time limit.
#[cfg(target_os = "linux")]
pub fn file_dialogs_available() -> bool {
    let address = std::env::var("DBUS_SESSION_BUS_ADDRESS").ok().filter(|v| !v.is_empty()).or_else(|| {
        let bus = Path::new(&std::env::var_os("XDG_RUNTIME_DIR")?).join("bus");
        bus.exists().then(|| format!("unix:path={}", bus.display()))
    });
    libdbus_loads() && address.is_some_and(|a| portal_on_bus(&a, std::time::Duration::from_secs(2)))
}

#[cfg(not(target_os = "linux"))]
pub fn file_dialogs_available() -> bool {
    true
}

/// Whether rfd's portal backend can load libdbus (it opens `libdbus-1.so.3` at run time).
#[cfg(target_os = "linux")]
fn libdbus_loads() -> bool {
    let name = c"libdbus-1.so.3";
    // SAFETY: dlopen with a valid C string; the handle is closed at once.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if handle.is_null() {
            return false;
        }
        libc::dlclose(handle);
    }
    true
}

/// Whether the D-Bus bus at `address` has the desktop portal running or can start it, asked
/// on a thread of its own so that a bus that never answers costs `limit`, not a hang.
#[cfg(target_os = "linux")]
pub fn portal_on_bus(address: &str, limit: std::time::Duration) -> bool {
    const PORTAL: &str = "org.freedesktop.portal.Desktop";
    let (tx, rx) = std::sync::mpsc::channel();
    let address = address.to_string();
    std::thread::spawn(move || {
        let found = pollster::block_on(async {
            let connection = zbus::connection::Builder::address(address.as_str())?.build().await?;
            let bus = zbus::fdo::DBusProxy::new(&connection).await?;
            let name = zbus::names::BusName::try_from(PORTAL)?;
            if bus.name_has_owner(name).await? {
                return Ok::<bool, zbus::Error>(true);
            }
            Ok(bus.list_activatable_names().await?.iter().any(|n| n.as_str() == PORTAL))
        });
        let _ = tx.send(found.unwrap_or(false));
    });
    rx.recv_timeout(limit).unwrap_or(false)
}

type SaveFn = Box<dyn FnOnce(&Path, &crate::engine::JobContext) -> Result<()> + Send>;

/// A save waiting for the user to type its path.
pub struct PendingSave {
    pub title: String,
    /// The path being typed.
    pub path: String,
    pub extensions: &'static [&'static str],
    write: SaveFn,
}

impl PendingSave {
    pub fn new(title: &str, path: String, extensions: &'static [&'static str], write: impl FnOnce(&Path, &crate::engine::JobContext) -> Result<()> + Send + 'static) -> Self {
        PendingSave { title: title.to_string(), path, extensions, write: Box::new(write) }
    }

    /// The job's name, the path typed and the writer.
    pub fn into_parts(self) -> (String, PathBuf, SaveFn) {
        (self.title, PathBuf::from(self.path.trim()), self.write)
    }
}

/// Ask for a file name to save to (on the job's thread), then write it with `write`.
/// None when the user cancels the dialog.
pub fn save_with_dialog(suggested: &str, extensions: &[&str], write: impl FnOnce(&Path) -> Result<()>) -> Result<Option<PathBuf>> {
    let Some(path) = rfd::FileDialog::new().set_file_name(suggested).add_filter(extensions.join(", "), extensions).save_file() else {
        return Ok(None);
    };
    write(&path)?;
    Ok(Some(path))
}

/// The layer as it is shown, as an 8-bit RGBA PNG, written atomically.
pub fn write_view_png(layer: &Layer, display: &DisplaySettings, gt: Option<&Arc<Cube>>, path: &Path) -> Result<()> {
    let (rgba, _) = view::layer_rgba(&layer.data, display.mode, display, gt).map_err(crate::Error::invalid)?;
    // A large cube exports its overview (the file is never rendered whole).
    let (rows, cols) = view::pixel_dims(&layer.data);
    let mut png = Vec::new();
    image::ImageEncoder::write_image(image::codecs::png::PngEncoder::new(&mut png), &rgba, cols as u32, rows as u32, image::ExtendedColorType::Rgba8)
        .map_err(|e| crate::Error::invalid(format!("{}: could not encode PNG: {e}", path.display())))?;
    crate::io::atomic::write_bytes_atomically(path, &png)
}

/// The metrics table as CSV.
pub fn metrics_csv(rows: &[Row]) -> String {
    let mut out = String::from("method,mrae,rmse,psnr_db,mpsnr_db,ssim,sam_deg,consistency_mrae,seconds\n");
    let f = |v: Option<f64>| v.filter(|x| x.is_finite()).map(|x| x.to_string()).unwrap_or_default();
    for r in rows {
        let m = r.metrics.as_ref();
        out.push_str(&format!(
            "\"{}\",{},{},{},{},{},{},{},{}\n",
            r.name.replace('"', "\"\""),
            f(m.map(|m| m.mrae)),
            f(m.map(|m| m.rmse)),
            f(m.map(|m| m.psnr)),
            f(m.map(|m| m.mpsnr)),
            f(m.map(|m| m.ssim)),
            f(m.map(|m| m.sam_deg)),
            f(m.and_then(|m| m.consistency_mrae)),
            f(Some(r.seconds)),
        ));
    }
    out
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::portal_on_bus;
    use std::io::BufRead;
    use std::time::{Duration, Instant};

    /// A private D-Bus daemon with no service files (so nothing on it is activatable).
    fn private_bus(dir: &std::path::Path) -> (std::process::Child, String) {
        let services = dir.join("services");
        std::fs::create_dir_all(&services).unwrap();
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>session</type><listen>unix:dir={}</listen><servicedir>{}</servicedir><auth>EXTERNAL</auth>\
                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
                dir.display(),
                services.display()
            ),
        )
        .unwrap();
        let mut daemon = std::process::Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--print-address", "--nofork", "--nopidfile"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("dbus-daemon runs this test's private bus (Debian package dbus-daemon)");
        let mut address = String::new();
        std::io::BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut address).unwrap();
        (daemon, address.trim().to_string())
    }

    #[test]
    fn the_portal_is_found_only_on_a_bus_that_has_it_and_a_dead_bus_costs_no_hang() {
        let dir = tempfile::tempdir().unwrap();
        let (mut daemon, address) = private_bus(dir.path());
        let limit = Duration::from_secs(10);
        assert!(!portal_on_bus(&address, limit), "a bus without the portal");
        // something owns the portal's name: now a dialog would be answered
        let owner = pollster::block_on(async { zbus::connection::Builder::address(address.as_str())?.name("org.freedesktop.portal.Desktop")?.build().await }).unwrap();
        assert!(portal_on_bus(&address, limit), "a bus with the portal");
        drop(owner);
        daemon.kill().unwrap();
        let _ = daemon.wait();
        let start = Instant::now();
        assert!(!portal_on_bus(&format!("unix:path={}", dir.path().join("none").display()), Duration::from_secs(2)));
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
