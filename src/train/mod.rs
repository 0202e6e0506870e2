//! Training: the loop that fits a learned model (or the closed-form baselines) to (RGB, cube)
//! pairs, reporting [`TrainEvent`]s on a channel so the CLI's progress bar and the GUI's
//! training panel are two listeners of the same run. Cancellation is checked between steps.

pub mod checkpoint;
pub mod data;
pub mod fusion;
pub mod inss;
pub mod loss;
pub mod optim;
pub mod seeded;
pub mod usr;
pub mod world;

use crate::engine::JobContext;
use crate::recon::baselines::{fit_linear, fit_prior, PixelMoments};
use crate::models::{Architecture, InitData, PCA_COMPONENTS};
use crate::recon::card::{ModelCard, ModelFiles, TrainingRecord};
use crate::recon::classical::save_tensors;
use crate::recon::device::device_name;
use crate::recon::learned::{build_net, run_tiled};
use crate::models::SpectralNet;
use crate::spectral::camera::CameraResponse;
use crate::spectral::rng::Rng;
use crate::{bail_invalid, default_wavelengths, Error, Result, RgbImage};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use crossbeam_channel::Sender;
pub use loss::loss_fn;
use data::{DataSource, Dataset, PatchSampler, RgbSimulation};
use optim::{AdamW, Schedule, WeightAverage};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Denominator floor of the MRAE loss, as in the MRAE metric.
const MRAE_EPS: f64 = 1e-3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    L1,
    Mrae,
    /// MRAE + L1 ÷ (mean target): the relative error NTIRE ranks by, plus a term that keeps
    /// bright pixels from being traded away for dark ones (MRAE alone weighs a pixel at 1 %
    /// of full scale a hundred times more than one at full scale).
    #[serde(rename = "mrae+l1")]
    MraeL1,
    /// MRAE + RMSE ÷ (mean target): squared error weighs the large errors of bright pixels
    /// most, which is what RMSE and PSNR score and MRAE all but ignores.
    #[serde(rename = "mrae+rmse")]
    MraeRmse,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub method: Architecture,
    /// Name of the model written at the end (`NAME.safetensors` + `NAME.json`).
    pub name: String,
    /// Architecture config as JSON; the architecture's default when null.
    pub model: serde_json::Value,
    pub data: DataSource,
    pub camera: String,
    pub simulation: RgbSimulation,
    pub steps: usize,
    pub batch: usize,
    pub patch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub loss: Loss,
    pub brightness: (f32, f32),
    pub validate_every: usize,
    pub checkpoint_every: usize,
    pub seed: u64,
    /// Decay of an exponential moving average of the weights ([`optim::WeightAverage`]), which
    /// the run validates and writes instead of the last step's weights; None: off.
    #[serde(default)]
    pub ema: Option<f64>,
    /// Weight of the spectral-angle term added to `loss` ([`loss::angle_term`]); 0: none.
    #[serde(default)]
    pub angle: f64,
    /// The command line that started the run, recorded on the card.
    pub command: String,
}

impl TrainConfig {
    pub fn new(method: Architecture, data: DataSource) -> Self {
        TrainConfig {
            method,
            name: method.name().to_string(),
            model: serde_json::Value::Null,
            data,
            camera: "canon-eos-5d-mark-ii".into(),
            simulation: RgbSimulation::Clean,
            steps: 2000,
            batch: 8,
            patch: 64,
            lr: 2e-3,
            weight_decay: 1e-4,
            schedule: Schedule::Cosine { warmup: 50 },
            loss: Loss::MraeL1,
            brightness: (0.5, 2.0),
            validate_every: 250,
            checkpoint_every: 500,
            seed: 1,
            ema: None,
            angle: 0.0,
            command: String::new(),
        }
    }

    /// The architecture config, defaulted when not given.
    fn model_config(&self) -> Result<serde_json::Value> {
        if !self.model.is_null() {
            return Ok(self.model.clone());
        }
        Ok(self.method.default_config())
    }
}

/// What a training run reports, in order: `started`, then `step`s with `validation`s and
/// `checkpoint`s among them, then `finished` (or the run returns `Error::Cancelled`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    Started { method: String, total_steps: usize, start_step: usize, parameters: usize, train_scenes: usize, validation_scenes: usize, device: String },
    Step { step: usize, total_steps: usize, loss: f64, lr: f64, samples_per_s: f64, eta_s: f64 },
    Validation { step: usize, mrae: f64, rmse: f64, psnr: f64, sam_deg: f64 },
    /// Baselines fitted on the run's training data and scored on its validation data, once
    /// before the first step, so the validation curve has something to beat.
    Baselines { scores: Vec<BaselineScore> },
    Checkpoint { step: usize, path: PathBuf },
    /// The terms of a loss with several (a GAN's generator and discriminator losses), by name.
    Terms { step: usize, terms: Vec<(String, f64)> },
    Finished { steps: usize, seconds: f64, model: PathBuf },
}

/// A baseline's validation figures (see [`TrainEvent::Baselines`]).
#[derive(Debug, Clone, Serialize)]
pub struct BaselineScore {
    pub name: String,
    pub mrae: f64,
    pub rmse: f64,
    pub psnr: f64,
    pub sam_deg: f64,
}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub model: ModelFiles,
    pub card: ModelCard,
}

impl TrainEvent {
    /// `started` for a run of `method` over `total_steps` from `start_step`, training
    /// `parameters` numbers on `scenes` (training, validation) images on `device`.
    pub fn started(method: &str, total_steps: usize, start_step: usize, parameters: usize, scenes: (usize, usize), device: &Device) -> TrainEvent {
        TrainEvent::Started { method: method.into(), total_steps, start_step, parameters, train_scenes: scenes.0, validation_scenes: scenes.1, device: device_name(device).into() }
    }

    /// Step `done` of `total` with its loss and rate; samples/s measured since `since`
    /// (a time and the step then), the ETA from that rate.
    pub fn step(done: usize, total: usize, batch: usize, since: (Instant, usize), loss: f64, lr: f64) -> TrainEvent {
        let elapsed = since.0.elapsed().as_secs_f64().max(1e-9);
        let samples_per_s = (done.saturating_sub(since.1) * batch) as f64 / elapsed;
        let eta_s = total.saturating_sub(done) as f64 * batch as f64 / samples_per_s.max(1e-9);
        TrainEvent::Step { step: done, total_steps: total, loss, lr, samples_per_s, eta_s }
    }
}

pub(crate) fn send(events: &Sender<TrainEvent>, e: TrainEvent) {
    // A listener that went away (closed window, finished CLI) must not stop the run.
    let _ = events.send(e);
}

/// Train (or fit) `cfg.method`, writing checkpoints and the final model into `out_dir`.
pub fn train(cfg: &TrainConfig, out_dir: &Path, resume: Option<&Path>, device: &Device, events: &Sender<TrainEvent>, job: &JobContext) -> Result<TrainSummary> {
    if cfg.name.is_empty() || cfg.name.contains(['/', '\\']) {
        bail_invalid!("model name '{}' must be a plain file name", cfg.name);
    }
    if cfg.method == Architecture::Usr {
        // Unpaired adversarial training: a loop of its own (train/usr.rs).
        return usr::train_from(cfg, out_dir, resume, device, events, job);
    }
    if cfg.method == Architecture::Inss {
        // Several outputs, five loss terms and two discriminators: a loop of its own.
        return inss::train_from(cfg, out_dir, resume, device, events, job);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let camera = CameraResponse::parse(&cfg.camera)?;
    let dataset = data::load(&cfg.data, &camera, job)?;
    if cfg.method.is_network() {
        train_network(cfg, &camera, &dataset, out_dir, resume, device, events, job)
    } else {
        if resume.is_some() {
            bail_invalid!("'{}' is fitted in closed form: there is nothing to resume", cfg.method.name());
        }
        fit_closed_form(cfg, &camera, &dataset, out_dir, events, job)
    }
}

/// Whether the run's model takes the camera as an input (its config says `camera_aware`).
fn camera_aware(config: &serde_json::Value) -> bool {
    config.get("camera_aware").and_then(|v| v.as_bool()) == Some(true)
}

fn base_card(cfg: &TrainConfig, camera: &CameraResponse, dataset: &Dataset) -> Result<ModelCard> {
    let c = camera.on_grid(&default_wavelengths())?;
    let config = cfg.model_config()?;
    let aware = cfg.method.is_network() && camera_aware(&config);
    let random_cameras = aware && matches!(cfg.data, DataSource::World { .. });
    let data = if random_cameras {
        format!("{} rendered through each patch's own camera ({:?} RGB)", cfg.data.describe(), cfg.simulation)
    } else {
        format!("{} rendered through {} ({:?} RGB)", cfg.data.describe(), camera.name, cfg.simulation)
    };
    Ok(ModelCard {
        name: cfg.name.clone(),
        architecture: cfg.method,
        config,
        wavelengths: default_wavelengths(),
        camera: if aware { crate::recon::card::ANY_CAMERA.to_string() } else { camera.name.clone() },
        input_mean: Some(data::mean_rgb(&dataset.train, &c)?),
        data: data.to_lowercase(),
        command: cfg.command.clone(),
        training: None,
        metrics: None,
        notes: None,
    })
}

fn fit_closed_form(cfg: &TrainConfig, camera: &CameraResponse, dataset: &Dataset, out_dir: &Path, events: &Sender<TrainEvent>, job: &JobContext) -> Result<TrainSummary> {
    let start = Instant::now();
    let c = camera.on_grid(&default_wavelengths())?;
    send(events, TrainEvent::Started {
        method: cfg.method.name().into(),
        total_steps: dataset.train.len(),
        start_step: 0,
        parameters: 0,
        train_scenes: dataset.train.len(),
        validation_scenes: dataset.validation.len(),
        device: "cpu".into(),
    });
    let moments = pixel_moments(&dataset.train, &c, job)?;
    let mut card = base_card(cfg, camera, dataset)?;
    let tensors = match cfg.method {
        // The spectral moment lets the map be refitted for any other camera in closed form.
        Architecture::Linear => vec![("map", fit_linear(&moments)?), ("moment", (&moments.yy / moments.count.max(1) as f64).mapv(|v| v as f32))],
        Architecture::Pca => {
            let prior = fit_prior(&moments, PCA_COMPONENTS)?;
            vec![("components", prior.components), ("variances", prior.variances.insert_axis(ndarray::Axis(1)))]
        }
        Architecture::Mscnn | Architecture::Basisnet | Architecture::Mstpp | Architecture::Usr | Architecture::Inss => bail_invalid!("'{}' is a network: it is trained, not fitted", cfg.method.name()),
    };
    card.input_mean = None; // linear maps are scale-equivariant
    card.training = Some(TrainingRecord { steps: 0, batch: 0, patch: 0, seconds: start.elapsed().as_secs_f64(), device: "cpu".into(), final_loss: None, val_mrae: None, config: serde_json::to_value(cfg).unwrap_or_default() });
    let files = ModelFiles { card: out_dir.join(format!("{}.json", cfg.name)), weights: out_dir.join(format!("{}.safetensors", cfg.name)) };
    save_tensors(&tensors, &card, &files)?;
    // Validation of the fitted map, reported like a network's.
    let method = crate::recon::registry::load_method(cfg.method.name(), Some(&files.weights), camera, &Device::Cpu)?;
    let cameras = vec![c.clone(); dataset.validation.len()];
    let metrics = validate(&dataset.validation, &cameras, |rgb, _| method.reconstruct_raw(rgb, job))?;
    send(events, TrainEvent::Validation { step: 0, mrae: metrics[0], rmse: metrics[1], psnr: metrics[2], sam_deg: metrics[3] });
    if let Some(t) = card.training.as_mut() {
        t.val_mrae = Some(metrics[0]);
    }
    card.save(&files.card)?;
    send(events, TrainEvent::Finished { steps: 0, seconds: start.elapsed().as_secs_f64(), model: files.weights.clone() });
    Ok(TrainSummary { model: files, card })
}

/// Σyxᵀ, Σxxᵀ, Σyyᵀ over every training pixel and its clean RGB.
fn pixel_moments(cubes: &[ndarray::Array3<f32>], c: &ndarray::Array2<f32>, job: &JobContext) -> Result<PixelMoments> {
    let mut moments = PixelMoments::new(c.ncols());
    for (i, cube) in cubes.iter().enumerate() {
        job.check()?;
        let rgb = RgbImage::new(crate::spectral::render::project(c.view(), cube.view())?)?;
        moments.add(cube, &rgb)?;
        job.report((i + 1) as f32 / cubes.len() as f32, "accumulating training pixels");
    }
    Ok(moments)
}

/// MRAE, RMSE, PSNR, SAM (degrees) averaged over validation cubes, each rendered through its
/// camera and reconstructed with `f(rgb, camera)`.
fn validate(
    cubes: &[ndarray::Array3<f32>],
    cameras: &[ndarray::Array2<f32>],
    mut f: impl FnMut(&RgbImage, &ndarray::Array2<f32>) -> Result<ndarray::Array3<f32>>,
) -> Result<[f64; 4]> {
    let mut sums = [0.0f64; 4];
    for (cube, camera) in cubes.iter().zip(cameras) {
        let rgb = RgbImage::new(crate::spectral::render::project(camera.view(), cube.view())?)?;
        let wavelengths = default_wavelengths();
        let pred = crate::Cube::new(f(&rgb, camera)?, wavelengths.clone())?;
        let m = crate::metrics::score(&pred, &crate::Cube::new(cube.clone(), wavelengths)?, None)?.metrics;
        for (sum, value) in sums.iter_mut().zip([m.mrae, m.rmse, m.psnr, m.sam_deg]) {
            *sum += value;
        }
    }
    Ok(sums.map(|s| s / cubes.len().max(1) as f64))
}

pub(crate) fn tensor4(a: &ndarray::Array4<f32>, device: &Device) -> Result<Tensor> {
    let shape = a.dim();
    Ok(Tensor::from_vec(a.as_standard_layout().iter().copied().collect::<Vec<f32>>(), shape, device)?)
}

pub(crate) fn var_tensors(varmap: &VarMap) -> HashMap<String, Tensor> {
    let vars = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
}

#[allow(clippy::too_many_arguments)]
fn train_network(cfg: &TrainConfig, camera: &CameraResponse, dataset: &Dataset, out_dir: &Path, resume: Option<&Path>, device: &Device, events: &Sender<TrainEvent>, job: &JobContext) -> Result<TrainSummary> {
    if cfg.steps == 0 || cfg.batch == 0 || cfg.patch < 8 {
        bail_invalid!("training needs steps ≥ 1, batch ≥ 1 and patch ≥ 8 (got {}, {}, {})", cfg.steps, cfg.batch, cfg.patch);
    }
    if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        bail_invalid!("learning rate must be positive, got {}", cfg.lr);
    }
    let start = Instant::now();
    let c = camera.on_grid(&default_wavelengths())?;
    let mut card = base_card(cfg, camera, dataset)?;
    let varmap = VarMap::new();
    let init = seeded::SeededInit { map: varmap.clone(), seed: cfg.seed };
    let net: Box<dyn SpectralNet> = build_net(&card, VarBuilder::from_backend(Box::new(init), DType::F32, device.clone()))?;
    if cfg.patch % net.size_multiple() != 0 {
        bail_invalid!("patch {} must be a multiple of {} for this architecture", cfg.patch, net.size_multiple());
    }
    // The tensors the model starts from the data (a camera-aware network's spectral moment, a
    // residual network's ridge fit): the model says which and computes them.
    let aware = net.camera_prior().is_some();
    if resume.is_none() {
        let vars = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        for (name, value) in net.data_init(&InitData { cubes: &dataset.train, camera: &c })? {
            let var = vars.get(name).ok_or_else(|| Error::invalid(format!("{} has no tensor '{name}' to initialise", cfg.method.name())))?;
            var.set(&Tensor::from_vec(value.iter().copied().collect::<Vec<f32>>(), value.dim(), device)?)?;
        }
    }
    // Everything the model does not keep fixed trains.
    let trainable: HashMap<String, candle_core::Var> =
        varmap.data().lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|(k, _)| net.is_trainable(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let parameters: usize = trainable.values().map(|v| v.elem_count()).sum();
    let mut optimiser = AdamW::new(trainable, cfg.weight_decay)?;
    // The weight average covers every tensor, batch-norm statistics included.
    let mut average = match cfg.ema {
        Some(decay) => Some(WeightAverage::new(varmap.data().lock().unwrap_or_else(|e| e.into_inner()).clone(), decay)?),
        None => None,
    };
    let checkpoints_dir = checkpoint::checkpoints_dir(out_dir)?;
    let mut start_step = 0;
    if let Some(path) = resume {
        let fits = |c: &ModelCard| c.architecture == cfg.method && c.config == card.config;
        let (state, state_path) = checkpoint::resume(path, fits, "checkpoint is of another architecture or config than this run", &varmap, device)?;
        optimiser.load_state(&state).map_err(|e| Error::format(&state_path, e.to_string()))?;
        if let Some(average) = &mut average {
            average.load_state(&state).map_err(|e| Error::format(&state_path, e.to_string()))?;
        }
        start_step = optimiser.step;
    }
    send(events, TrainEvent::started(cfg.method.name(), cfg.steps, start_step, parameters, (dataset.train.len(), dataset.validation.len()), device));
    let random_cameras = aware && matches!(cfg.data, DataSource::World { .. });
    let wants_cues = net.camera_prior().is_some_and(|p| p.wants_cues());
    let light: Vec<[ndarray::Array1<f32>; crate::models::camera::CUES]> =
        if wants_cues { dataset.train.iter().map(|cube| crate::models::camera::light_spectra(cube, &c)).collect() } else { Vec::new() };
    let sampler = PatchSampler {
        cubes: &dataset.train,
        camera: c.clone(),
        random_cameras,
        light: wants_cues.then_some(light.as_slice()),
        patch: cfg.patch,
        simulation: cfg.simulation,
        brightness: cfg.brightness,
    };
    let validation_cameras = match (&dataset.validation_cameras, aware) {
        (Some(cameras), true) => cameras.clone(),
        _ => vec![c.clone(); dataset.validation.len()],
    };
    let mut last_loss = f64::NAN;
    let mut last_val = None;
    let mut timer = (Instant::now(), start_step);
    let bands = c.ncols();
    // A checkpoint holds the trained weights (what a resumed run continues from) and, in its
    // training state, the optimiser's moments and the weight average.
    let save_checkpoint = |step: usize, card: &ModelCard, optimiser: &AdamW, average: Option<&WeightAverage>| -> Result<PathBuf> {
        let (files, optim_path) = checkpoint::checkpoint_files(&checkpoints_dir, step);
        checkpoint::save_model(&var_tensors(&varmap), card, &files)?;
        let mut state = optimiser.state()?;
        if let Some(average) = average {
            state.extend(average.state()?);
        }
        checkpoint::save_safetensors_atomically(&state, &optim_path)?;
        Ok(files.weights)
    };
    for step in start_step..cfg.steps {
        if let Err(stopped) = job.check() {
            // Stopping keeps what was learned: a checkpoint at the last step done, so Resume
            // always has one to continue from.
            if step > start_step {
                card.training = Some(record(cfg.batch, cfg.patch, serde_json::to_value(cfg).unwrap_or_default(), step, start, device, last_loss, last_val));
                let path = save_checkpoint(step, &card, &optimiser, average.as_ref())?;
                send(events, TrainEvent::Checkpoint { step, path });
            }
            return Err(stopped);
        }
        // Each step's batch depends only on (seed, step): a resumed run sees the same data.
        let mut rng = Rng::new(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step as u64);
        let batch = sampler.sample(cfg.batch, &mut rng)?;
        let (x, y) = (tensor4(&batch.rgb, device)?, tensor4(&batch.cube, device)?);
        let cameras = match net.camera_prior() {
            Some(prior) if prior.wants_cues() => Some(prior.batch(&batch.cameras, device)?.with_cues(&batch.cues, prior.cue_count())?),
            Some(prior) => Some(prior.batch(&batch.cameras, device)?),
            None => None,
        };
        let pred = net.forward_t(&x, cameras.as_ref(), true)?;
        let mut loss = loss_fn(cfg.loss, &pred, &y)?;
        if cfg.angle > 0.0 {
            loss = (loss + (loss::angle_term(&pred, &y)? * cfg.angle)?)?;
        }
        let grads = loss.backward()?;
        let lr = cfg.schedule.rate(cfg.lr, step, cfg.steps);
        optimiser.step(&grads, lr)?;
        if let Some(average) = &mut average {
            average.update()?;
        }
        last_loss = f64::from(loss.to_scalar::<f32>()?);
        if !last_loss.is_finite() {
            bail_invalid!("training diverged at step {}: loss is {last_loss} (try a lower --lr)", step + 1);
        }
        let done = step + 1;
        send(events, TrainEvent::step(done, cfg.steps, cfg.batch, timer, last_loss, lr));
        job.report(done as f32 / cfg.steps as f32, "training");
        if done % 50 == 0 {
            timer = (Instant::now(), done);
        }
        if done % cfg.validate_every.max(1) == 0 || done == cfg.steps {
            let score = || {
                validate(&dataset.validation, &validation_cameras, |rgb, camera| {
                    let cameras = crate::recon::learned::camera_batch_for(net.as_ref(), camera, rgb, device)?;
                    run_tiled(net.as_ref(), rgb, cameras.as_ref(), bands, 512, device, job)
                })
            };
            // With a weight average, the average is what is validated (and what the run writes).
            let m = match &average {
                Some(average) => average.with_average(score)??,
                None => score()?,
            };
            last_val = Some(m[0]);
            send(events, TrainEvent::Validation { step: done, mrae: m[0], rmse: m[1], psnr: m[2], sam_deg: m[3] });
        }
        if done % cfg.checkpoint_every.max(1) == 0 || done == cfg.steps {
            card.training = Some(record(cfg.batch, cfg.patch, serde_json::to_value(cfg).unwrap_or_default(), done, start, device, last_loss, last_val));
            let path = save_checkpoint(done, &card, &optimiser, average.as_ref())?;
            send(events, TrainEvent::Checkpoint { step: done, path });
        }
    }
    if let Some(average) = &average {
        average.install()?;
    }
    finish_run(cfg, card, &varmap, out_dir, start, device, (last_loss, last_val), events)
}

/// The end of a network's run: its record on the card, the model written as `NAME.*` into
/// `out_dir`, and the `finished` event.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_run(cfg: &TrainConfig, mut card: ModelCard, varmap: &VarMap, out_dir: &Path, start: Instant, device: &Device, (loss, val): (f64, Option<f64>), events: &Sender<TrainEvent>) -> Result<TrainSummary> {
    card.training = Some(record(cfg.batch, cfg.patch, serde_json::to_value(cfg).unwrap_or_default(), cfg.steps, start, device, loss, val));
    let files = ModelFiles { card: out_dir.join(format!("{}.json", cfg.name)), weights: out_dir.join(format!("{}.safetensors", cfg.name)) };
    checkpoint::save_model(&var_tensors(varmap), &card, &files)?;
    send(events, TrainEvent::Finished { steps: cfg.steps, seconds: start.elapsed().as_secs_f64(), model: files.weights.clone() });
    Ok(TrainSummary { model: files, card })
}

/// What a card says of a run: its size, time, device, last loss and validation, and its
/// whole configuration (`config`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(batch: usize, patch: usize, config: serde_json::Value, steps: usize, start: Instant, device: &Device, loss: f64, val: Option<f64>) -> TrainingRecord {
    TrainingRecord { steps, batch, patch, seconds: start.elapsed().as_secs_f64(), device: device_name(device).into(), final_loss: Some(loss), val_mrae: val, config }
}
