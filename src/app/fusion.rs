//! Fusion: pick a high-resolution RGB layer and a low-resolution cube layer of the same scene,
//! run UAL (the pretrained fusion module, then test-time adaptation) as a job with a live loss
//! curve and Cancel, see the blur kernel it learned (beside the true one when the pair was
//! simulated here), and get the result as a layer that Compare scores against ground truth.
//! "Simulate a pair" makes such a pair from the ground-truth cube with one of the test kernels.

use super::document::{Document, LayerData, Role};
use crate::engine::{Job, Waker};
use crate::models::ual::Degradation;
use crate::recon::fusion::{fuse, FuseOptions, FuseStep, Fused, FusionModel, SubspaceChoice};
use crate::spectral::camera::CameraResponse;
use crate::spectral::degrade::BlurKernel;
use crate::{Cube, Result, RgbImage};
use egui_plot::{Legend, Line, Plot, PlotPoints};
use ndarray::Array2;
use std::sync::Arc;

/// A pair made by "Simulate a pair": its layers and the kernel that made it.
#[derive(Clone)]
pub struct SimulatedPair {
    pub rgb: u64,
    pub cube: u64,
    pub kernel_name: String,
    /// The true kernel framed as the degradation network's.
    pub kernel: Array2<f32>,
}

/// A fusion run, live or finished.
pub struct FusionRun {
    pub job: Option<Job<Fused>>,
    pub events: crossbeam_channel::Receiver<FuseStep>,
    pub losses: Vec<[f64; 2]>,
    pub total_steps: usize,
    pub status: String,
    /// The kernel learned (or used), once finished.
    pub kernel: Option<Array2<f32>>,
    /// The pair's layers, so a simulated pair's true kernel is shown beside the learned one.
    pub pair: (u64, u64),
    /// What it was started with, for the result's name.
    pub scale: usize,
    pub camera: String,
}

impl FusionRun {
    pub fn poll_events(&mut self) -> bool {
        let mut changed = false;
        while let Ok(s) = self.events.try_recv() {
            self.losses.push([s.step as f64, s.loss]);
            changed = true;
        }
        changed
    }

    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }
}

pub struct FusionPanel {
    pub rgb: Option<u64>,
    pub cube: Option<u64>,
    pub camera: String,
    pub scale: usize,
    pub steps: usize,
    /// The scene-subspace layer: auto, off (the paper's UAL) or a rank.
    pub subspace: SubspaceChoice,
    /// Simulation: which test kernel and the noise.
    pub sim_kernel: usize,
    pub sim_snr: f64,
    /// "cpu", "cuda" or "metal": where the fusion module and the adaptation run.
    pub device: String,
    pub simulated: Option<SimulatedPair>,
    pub run: Option<FusionRun>,
    textures: Vec<(u64, egui::TextureHandle)>,
}

impl Default for FusionPanel {
    fn default() -> Self {
        FusionPanel { rgb: None, cube: None, camera: "canon-eos-5d-mark-ii".into(), scale: 8, steps: crate::recon::fusion::DEFAULT_STEPS, subspace: SubspaceChoice::Auto, sim_kernel: 0, sim_snr: 35.0, device: "cpu".into(), simulated: None, run: None, textures: Vec::new() }
    }
}

/// What the Fusion tab asks the studio to do.
pub enum FusionCommand {
    Simulate,
    Start,
    Stop,
}

impl FusionPanel {
    /// Pick layers that fit: an RGB and a cube whose sizes are the RGB's divided by the scale.
    pub fn settings_ui(&mut self, ui: &mut egui::Ui, doc: &Document, commands: &mut Vec<FusionCommand>) {
        let Self { rgb, cube, camera, scale, steps, subspace, sim_kernel, sim_snr, device, run, .. } = self;
        let name = |id: Option<u64>| id.and_then(|i| doc.get(i)).map(|l| l.name.clone()).unwrap_or_else(|| "choose…".into());
        egui::Grid::new("fusion-settings").num_columns(2).show(ui, |ui| {
            ui.label("high-resolution RGB");
            egui::ComboBox::from_id_salt("fusion-rgb").selected_text(name(*rgb)).show_ui(ui, |ui| {
                for l in doc.layers.iter().filter(|l| matches!(l.data, LayerData::Rgb(_))) {
                    ui.selectable_value(rgb, Some(l.id), &l.name);
                }
            });
            ui.end_row();
            ui.label("low-resolution cube");
            egui::ComboBox::from_id_salt("fusion-cube").selected_text(name(*cube)).show_ui(ui, |ui| {
                for l in doc.layers.iter().filter(|l| matches!(l.data, LayerData::Cube(_))) {
                    let (r, c) = l.data.rows_cols();
                    ui.selectable_value(cube, Some(l.id), format!("{} ({r}×{c})", l.name));
                }
            });
            ui.end_row();
            ui.label("camera of the RGB");
            super::reconstruct::camera_choice(ui, egui::ComboBox::from_id_salt("fusion-camera"), camera);
            ui.end_row();
            ui.label("scale");
            ui.add(egui::DragValue::new(scale).range(2..=31));
            ui.end_row();
            ui.label("adaptation steps");
            ui.add(egui::DragValue::new(steps).range(0..=20_000)).on_hover_text("0: the pretrained fusion module alone");
            ui.end_row();
            ui.label("scene subspace");
            egui::ComboBox::from_id_salt("fusion-subspace")
                .selected_text(subspace.name())
                .show_ui(ui, |ui| {
                    for choice in [SubspaceChoice::Auto, SubspaceChoice::Off, SubspaceChoice::Rank(3), SubspaceChoice::Rank(4), SubspaceChoice::Rank(6), SubspaceChoice::Rank(8)] {
                        ui.selectable_value(subspace, choice, choice.name());
                    }
                })
                .response
                .on_hover_text(
                    "Every spectrum kept in the span of the low-resolution cube's first principal spectra and true to the RGB (README, Fusion). auto: rank 4 where the camera sees every band, off otherwise; off: the paper's UAL; rank 3 with 0 steps: the classical subspace fusion, which no longer uses the module",
                );
            ui.end_row();
            ui.label("device");
            super::reconstruct::device_choice(ui, "fusion-device", None, device);
            ui.end_row();
        });
        if crate::recon::fusion::shipped_model().is_none() {
            ui.colored_label(egui::Color32::from_rgb(230, 170, 60), "No pretrained fusion module is installed (models/ual-fusion): the adaptation starts from the bicubic cube (the paper's \"w/o fusion\").");
        }
        let running = run.as_ref().is_some_and(|r| r.is_running());
        ui.horizontal(|ui| {
            let ready = rgb.is_some() && cube.is_some() && !running;
            if ui.add_enabled(ready, egui::Button::new("Fuse")).clicked() {
                commands.push(FusionCommand::Start);
            }
            if ui.add_enabled(running, egui::Button::new("Cancel fusion")).clicked() {
                commands.push(FusionCommand::Stop);
            }
        });
        ui.separator();
        ui.label("Simulate a pair from the ground truth (blur, down-sample, noise; RGB through the camera above):");
        ui.horizontal(|ui| {
            let kernels = BlurKernel::test_set();
            egui::ComboBox::from_id_salt("fusion-sim-kernel").selected_text(kernels[*sim_kernel % kernels.len()].0).show_ui(ui, |ui| {
                for (i, (n, _)) in kernels.iter().enumerate() {
                    ui.selectable_value(sim_kernel, i, *n);
                }
            });
            ui.add(egui::DragValue::new(sim_snr).range(10.0..=80.0).suffix(" dB"));
            if ui.add_enabled(doc.ground_truth().is_some(), egui::Button::new("Simulate a pair")).clicked() {
                commands.push(FusionCommand::Simulate);
            }
        });
    }

    /// The live loss curve and the kernels.
    pub fn run_ui(&mut self, ui: &mut egui::Ui) {
        let Some(run) = &self.run else {
            ui.label("No fusion yet: choose an RGB and a low-resolution cube (or simulate a pair), then press Fuse.");
            return;
        };
        ui.label(&run.status);
        if let Some(&[step, _]) = run.losses.last() {
            ui.add(egui::ProgressBar::new(step as f32 / run.total_steps.max(1) as f32).text(format!("step {step:.0}/{}", run.total_steps)));
        }
        Plot::new("fusion-loss").height(220.0).legend(Legend::default()).x_axis_label("step").y_axis_label("loss (L1 on the RGB + L1 on the cube)").show(ui, |plot_ui| {
            plot_ui.line(Line::new("adaptation loss", PlotPoints::from(run.losses.clone())));
        });
        let Some(learned) = run.kernel.clone() else { return };
        let truth = self.simulated.as_ref().filter(|s| (s.rgb, s.cube) == run.pair).map(|s| (s.kernel_name.clone(), s.kernel.clone()));
        ui.horizontal(|ui| {
            let size = egui::vec2(160.0, 160.0);
            ui.vertical(|ui| {
                ui.label("kernel it ended with");
                let tex = kernel_texture(ui.ctx(), &mut self.textures, 1, &learned);
                ui.add(egui::Image::new(&tex).fit_to_exact_size(size));
            });
            if let Some((name, k)) = truth {
                ui.vertical(|ui| {
                    ui.label(format!("true kernel ({name})"));
                    let tex = kernel_texture(ui.ctx(), &mut self.textures, 2, &k);
                    ui.add(egui::Image::new(&tex).fit_to_exact_size(size));
                    if let Ok(sim) = crate::recon::fusion::kernel_similarity(&learned, &k) {
                        ui.label(format!("similarity {sim:.3}"));
                    }
                });
            }
        });
    }
}

/// A kernel as a grey image, brightest weight white, pixels kept square (nearest filtering).
fn kernel_texture(ctx: &egui::Context, cache: &mut Vec<(u64, egui::TextureHandle)>, slot: u64, k: &Array2<f32>) -> egui::TextureHandle {
    let max = k.iter().fold(1e-12f32, |m, v| m.max(*v));
    let (r, c) = k.dim();
    let pixels: Vec<egui::Color32> = k.iter().map(|v| egui::Color32::from_gray((v.max(0.0) / max * 255.0) as u8)).collect();
    let image = egui::ColorImage::new([c, r], pixels);
    let options = egui::TextureOptions::NEAREST;
    match cache.iter_mut().find(|(s, _)| *s == slot) {
        Some((_, tex)) => {
            tex.set(image, options);
            tex.clone()
        }
        None => {
            let tex = ctx.load_texture(format!("kernel-{slot}"), image, options);
            cache.push((slot, tex.clone()));
            tex
        }
    }
}

/// The pair "Simulate a pair" makes: the low-resolution cube and the RGB of `gt`.
pub fn simulate(gt: &Cube, camera: &str, kernel: usize, scale: usize, snr_db: f64) -> Result<(RgbImage, Cube, String, Array2<f32>)> {
    let kernels = BlurKernel::test_set();
    let (name, k) = kernels[kernel % kernels.len()].clone();
    let camera = CameraResponse::parse(camera)?;
    let rgb = crate::spectral::render::clean_rgb(gt, &camera)?;
    let degradation = crate::spectral::degrade::Degradation { kernel: k.clone(), scale, snr_db: Some(snr_db), seed: 1 };
    let lr = Cube::new(degradation.apply(gt.data.view())?, gt.wavelengths.clone())?;
    Ok((rgb, lr, name.to_string(), k.framed(Degradation::kernel_side(scale))?))
}

/// Start fusing `rgb` and `cube` on `device` as a job; steps come back on the receiver.
pub fn start(rgb: Arc<RgbImage>, cube: Arc<Cube>, camera: String, scale: usize, steps: usize, subspace: SubspaceChoice, device: String, waker: Waker) -> (Job<Fused>, crossbeam_channel::Receiver<FuseStep>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let job = Job::spawn(format!("fuse ×{scale} on {device}"), waker, move |ctx| {
        let device = crate::recon::device::parse_device(&device)?;
        let model = crate::recon::fusion::shipped_model().map(|p| FusionModel::load(&p, &device)).transpose()?;
        let c = CameraResponse::parse(&camera)?.on_grid(&cube.wavelengths)?;
        let opts = FuseOptions { subspace: subspace.rank(&c), ..FuseOptions::new(scale, steps) };
        fuse(model.as_ref(), &rgb.data, &cube, &c, &opts, &device, Some(&tx), ctx)
    });
    (job, rx)
}

/// The name and role of a fused result layer: its method, scale, steps, camera and the rank of
/// the subspace layer it went through.
pub fn result_layer(seconds: f64, scale: usize, steps: usize, camera: &str, subspace: Option<usize>) -> (String, Role) {
    let layer = subspace.map(|rank| format!(", subspace {rank}")).unwrap_or_default();
    let method = format!("ual fusion ×{scale} ({steps} steps, {camera}{layer})");
    (method.clone(), Role::Reconstruction { method, seconds, consistent: false, exposure_invariant: false })
}
