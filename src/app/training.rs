//! Training: configure a run (method, synthetic scenes or a folder of cubes, camera, steps,
//! batch, learning rate), start, stop and resume it; live loss and validation curves, progress,
//! samples/s and ETA; checkpoints listed. A finished model is copied into the user model
//! folder, so it joins the Reconstruct panel at once.

use crate::engine::Job;
use crate::models::Architecture;
use crate::train::{self, data::DataSource, TrainConfig, TrainEvent, TrainSummary};
use crate::Result;
use egui_plot::{Legend, Line, Plot, PlotPoints};
use std::path::{Path, PathBuf};

/// What a run trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataChoice {
    /// The demo's scene generator, through the chosen camera.
    Synthetic,
    /// The world's training side: random spectra, lights and cameras (camera-aware networks).
    World,
    /// A folder of cubes or one cube file (INSS trains on a single scene, its bottom fifth
    /// held out).
    Folder,
    /// INSS's nadir aerial scenes over 400–2450 nm.
    Aerial,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    pub method: Architecture,
    pub name: String,
    pub data: DataChoice,
    pub scenes: usize,
    pub size: usize,
    pub folder: String,
    pub camera: String,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// "cpu", "cuda" or "metal": where the run trains.
    pub device: String,
}

impl Default for RunSettings {
    fn default() -> Self {
        // Small enough to finish in about a minute on two cores: a demonstration, not a model.
        RunSettings { method: Architecture::Basisnet, name: "my-basisnet".into(), data: DataChoice::World, scenes: 8, size: 64, folder: String::new(), camera: "canon-eos-5d-mark-ii".into(), steps: 100, batch: 4, lr: 2e-3, device: "cpu".into() }
    }
}

impl RunSettings {
    /// Switch to `method` with settings it trains with: inss's steps cost seconds each and
    /// diverge at the others' learning rate, and its batch must be 2 or more; aerial scenes are
    /// inss's alone.
    pub fn set_method(&mut self, method: Architecture) {
        if method == self.method {
            return;
        }
        let default = RunSettings::default();
        if method == Architecture::Inss {
            (self.steps, self.batch, self.lr, self.size) = (300, 2, 3e-4, 128);
        } else if self.method == Architecture::Inss {
            (self.steps, self.batch, self.lr, self.size) = (default.steps, default.batch, default.lr, default.size);
            if self.data == DataChoice::Aerial {
                self.data = DataChoice::World;
            }
        }
        if self.name == format!("my-{}", self.method.name()) {
            self.name = format!("my-{}", method.name());
        }
        self.method = method;
    }

    pub fn config(&self) -> Result<TrainConfig> {
        let data = match self.data {
            DataChoice::Synthetic => DataSource::Synthetic { count: self.scenes, size: self.size },
            DataChoice::World => DataSource::World { count: self.scenes, size: self.size },
            DataChoice::Folder => DataSource::Folder { path: PathBuf::from(self.folder.trim()) },
            DataChoice::Aerial => DataSource::Aerial { count: self.scenes, size: self.size },
        };
        let mut cfg = TrainConfig::new(self.method, data);
        cfg.name = self.name.trim().to_string();
        cfg.camera = self.camera.clone();
        cfg.steps = self.steps;
        cfg.batch = self.batch;
        cfg.patch = cfg.patch.min(self.size);
        cfg.lr = self.lr;
        cfg.validate_every = (self.steps / 4).max(1);
        cfg.checkpoint_every = (self.steps / 2).max(1);
        cfg.command = format!("studio training panel: {:?}", self);
        Ok(cfg)
    }
}

/// One run, live or finished.
pub struct Run {
    pub settings: RunSettings,
    /// What the validation curve is measured on, for its label.
    pub validation_on: String,
    pub out_dir: PathBuf,
    pub job: Option<Job<TrainSummary>>,
    pub events: crossbeam_channel::Receiver<TrainEvent>,
    pub losses: Vec<[f64; 2]>,
    pub validation: Vec<[f64; 2]>,
    /// Baselines' validation MRAE, drawn as flat lines under the validation curve.
    pub baselines: Vec<(String, f64)>,
    pub last_step: Option<(usize, usize, f64, f64)>,
    pub checkpoints: Vec<PathBuf>,
    /// The named loss terms of a run that reports several (a GAN's), per step.
    pub terms: std::collections::BTreeMap<String, Vec<[f64; 2]>>,
    pub status: String,
}

impl Run {
    /// Take the run's events; true when something changed.
    pub fn poll_events(&mut self) -> bool {
        let mut changed = false;
        while let Ok(e) = self.events.try_recv() {
            changed = true;
            match e {
                TrainEvent::Started { total_steps, parameters, train_scenes, validation_scenes, .. } => {
                    self.status = format!("training: {parameters} parameters, {train_scenes} scenes, {total_steps} steps");
                    self.validation_on = format!("{validation_scenes} held-out scenes of the training data's kind");
                }
                TrainEvent::Step { step, total_steps, loss, samples_per_s, eta_s, .. } => {
                    self.losses.push([step as f64, loss]);
                    self.last_step = Some((step, total_steps, samples_per_s, eta_s));
                }
                TrainEvent::Validation { step, mrae, .. } => self.validation.push([step as f64, mrae]),
                TrainEvent::Baselines { scores } => self.baselines = scores.into_iter().map(|b| (b.name, b.mrae)).collect(),
                TrainEvent::Checkpoint { path, .. } => self.checkpoints.push(path),
                TrainEvent::Terms { step, terms } => {
                    for (name, value) in terms {
                        self.terms.entry(name).or_default().push([step as f64, value]);
                    }
                }
                TrainEvent::Finished { steps, seconds, .. } => self.status = format!("finished {steps} steps in {seconds:.0} s"),
            }
        }
        changed
    }

    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// The latest checkpoint, to resume from.
    pub fn last_checkpoint(&self) -> Option<&PathBuf> {
        self.checkpoints.last()
    }

    /// Forget the curves' points after `step` (a resume starts again from there, so the curves
    /// continue instead of drawing back).
    pub fn rewind_to(&mut self, step: usize) {
        let keep = |p: &[f64; 2]| p[0] <= step as f64;
        self.losses.retain(keep);
        self.validation.retain(keep);
        for points in self.terms.values_mut() {
            points.retain(keep);
        }
    }
}

/// Copy the finished model's card and weights into `models_dir` (each written atomically) so
/// the registry lists it.
pub fn install_model(summary: &TrainSummary, models_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(models_dir).map_err(|e| crate::Error::io(models_dir, e))?;
    for src in [&summary.model.weights, &summary.model.card] {
        let name = src.file_name().ok_or_else(|| crate::Error::invalid(format!("{}: not a file", src.display())))?;
        let bytes = std::fs::read(src).map_err(|e| crate::Error::io(src, e))?;
        crate::io::atomic::write_bytes_atomically(&models_dir.join(name), &bytes)?;
    }
    Ok(models_dir.join(summary.model.card.file_name().unwrap_or_default()))
}

pub struct TrainingPanel {
    pub settings: RunSettings,
    pub runs: Vec<Run>,
    pub selected: usize,
}

impl Default for TrainingPanel {
    fn default() -> Self {
        TrainingPanel { settings: RunSettings::default(), runs: Vec::new(), selected: 0 }
    }
}

impl TrainingPanel {
    /// The run's settings; `open_cube` is the active scene's cube and its file, offered as the
    /// data to train on.
    pub fn settings_ui(&mut self, ui: &mut egui::Ui, open_cube: Option<(&str, &Path)>) {
        let s = &mut self.settings;
        egui::Grid::new("train-settings").num_columns(2).show(ui, |ui| {
            ui.label("method");
            let mut method = s.method;
            egui::ComboBox::from_id_salt("train-method").selected_text(s.method.name()).show_ui(ui, |ui| {
                for a in Architecture::ALL {
                    ui.selectable_value(&mut method, a, a.name());
                }
            });
            s.set_method(method);
            ui.end_row();
            ui.label("model name");
            ui.text_edit_singleline(&mut s.name);
            ui.end_row();
            ui.label("data");
            ui.horizontal(|ui| {
                ui.radio_value(&mut s.data, DataChoice::World, "world scenes").on_hover_text("random spectra, lights and cameras: the model learns to use the camera it is told");
                ui.radio_value(&mut s.data, DataChoice::Synthetic, "demo-style scenes");
                ui.radio_value(&mut s.data, DataChoice::Folder, "cubes (folder or file)");
                if s.method == Architecture::Inss {
                    ui.radio_value(&mut s.data, DataChoice::Aerial, "aerial scenes").on_hover_text("nadir fields, roads, roofs and trees over 400–2450 nm under one sun: a model on the wide library's 180 bands");
                }
            });
            ui.end_row();
            if s.data != DataChoice::Folder {
                ui.label("scenes");
                ui.add(egui::DragValue::new(&mut s.scenes).range(2..=2000));
                ui.end_row();
                ui.label("scene size (px)");
                ui.add(egui::DragValue::new(&mut s.size).range(32..=512));
                ui.end_row();
            } else {
                ui.label("folder or cube");
                ui.text_edit_singleline(&mut s.folder);
                ui.end_row();
                // one scene is enough for inss (the other methods need a folder of two or more)
                if let Some((name, path)) = open_cube.filter(|_| s.method == Architecture::Inss) {
                    ui.label("");
                    if ui.button(format!("Use the open cube ({name})")).on_hover_text("INSS trains on the cube's own bands; its bottom fifth is held out for validation").clicked() {
                        s.folder = path.display().to_string();
                    }
                    ui.end_row();
                }
            }
            ui.label("camera");
            super::reconstruct::camera_choice(ui, egui::ComboBox::from_id_salt("train-camera"), &mut s.camera);
            ui.end_row();
            ui.label("steps");
            ui.add(egui::DragValue::new(&mut s.steps).range(1..=1_000_000));
            ui.end_row();
            ui.label("batch");
            ui.add(egui::DragValue::new(&mut s.batch).range(1..=64));
            ui.end_row();
            ui.label("learning rate");
            ui.add(egui::DragValue::new(&mut s.lr).speed(1e-4).range(1e-6..=1.0));
            ui.end_row();
            ui.label("device");
            super::reconstruct::device_choice(ui, "train-device", None, &mut s.device);
            ui.end_row();
        });
    }

    /// Loss and validation curves, progress and checkpoints of the selected run.
    pub fn run_ui(&mut self, ui: &mut egui::Ui) {
        let Some(run) = self.runs.get(self.selected) else {
            ui.label("No training run yet: configure one on the left and press Start training.");
            return;
        };
        ui.label(&run.status);
        if let Some((step, total, sps, eta)) = run.last_step {
            ui.add(egui::ProgressBar::new(step as f32 / total.max(1) as f32).text(format!("step {step}/{total} · {sps:.1} samples/s · ETA {eta:.0} s")));
        }
        let plots = if run.terms.is_empty() { 2.0 } else { 3.0 };
        let height = (ui.available_height() - 80.0).max(120.0) / plots;
        Plot::new("train-loss").height(height).legend(Legend::default()).x_axis_label("step").y_axis_label("loss").show(ui, |plot_ui| {
            plot_ui.line(Line::new("training loss", PlotPoints::from(run.losses.clone())));
        });
        if !run.terms.is_empty() {
            // A GAN's terms span decades (the discriminator's loss near 0, the adversarial
            // term near 10, S_bp near 1e-3): log scale, one line each.
            Plot::new("train-terms").height(height).legend(Legend::default()).x_axis_label("step").y_axis_label("log10 of each loss term").show(ui, |plot_ui| {
                for (name, points) in &run.terms {
                    let logged: PlotPoints = points.iter().map(|[s, v]| [*s, v.max(1e-12).log10()]).collect();
                    plot_ui.line(Line::new(name.as_str(), logged));
                }
            });
        }
        Plot::new("train-validation").height(height).legend(Legend::default()).x_axis_label("step").y_axis_label("validation MRAE").show(ui, |plot_ui| {
            let label = if run.validation_on.is_empty() { "validation MRAE".to_string() } else { format!("validation MRAE on {}", run.validation_on) };
            plot_ui.line(Line::new(label, PlotPoints::from(run.validation.clone())));
            // what a per-pixel regression fitted on the same data reaches: the bar to clear
            let last = run.last_step.map_or(1.0, |(_, total, _, _)| total as f64);
            for (name, mrae) in &run.baselines {
                plot_ui.line(Line::new(format!("{name} (fitted on the same data)"), PlotPoints::from(vec![[0.0, *mrae], [last, *mrae]])).style(egui_plot::LineStyle::dashed_loose()));
            }
        });
        if !run.checkpoints.is_empty() {
            ui.label("checkpoints:");
            for c in &run.checkpoints {
                ui.monospace(c.display().to_string());
            }
        }
    }
}

/// Start `cfg` training on `device` ("cpu", "cuda", "metal") into `out_dir`, optionally resuming, and install the finished model
/// into `models_dir`; events come back on the receiver.
pub fn start(cfg: TrainConfig, device: String, out_dir: PathBuf, resume: Option<PathBuf>, models_dir: PathBuf, waker: crate::engine::Waker) -> (Job<TrainSummary>, crossbeam_channel::Receiver<TrainEvent>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let name = format!("train {} on {device}", cfg.name);
    let job = Job::spawn(name, waker, move |ctx| {
        let device = crate::recon::device::parse_device(&device)?;
        let summary = train::train(&cfg, &out_dir, resume.as_deref(), &device, &tx, ctx)?;
        install_model(&summary, &models_dir).map_err(|e| crate::Error::invalid(format!("training finished, but installing the model failed: {e}")))?;
        Ok(summary)
    });
    (job, rx)
}

/// The step of checkpoint `path` (`…/ckpt-000500.safetensors` → 500).
pub fn checkpoint_step(path: &Path) -> Option<usize> {
    path.file_stem()?.to_str()?.strip_prefix("ckpt-")?.parse().ok()
}

/// `base`, or `base-2`, `base-3`, … : the first folder under `runs` that does not exist yet, so a
/// new run never writes into an old run's folder.
pub fn fresh_run_dir(runs: &Path, base: &str) -> PathBuf {
    let mut dir = runs.join(base);
    let mut k = 2;
    while dir.exists() {
        dir = runs.join(format!("{base}-{k}"));
        k += 1;
    }
    dir
}
