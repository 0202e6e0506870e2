//! Pretraining UAL's fusion module (Zhang et al. 2020, eq. 3 and section 4.1): pairs made from
//! the data engine's scenes by random Gaussian degradations, an L1 loss, Adam at 1e-4 decayed
//! ×0.7 every fifteenth of the run (the paper: every 10 of 150 epochs). The loss is the paper's
//! (`train`'s `--loss` does not apply); `--schedule cosine|constant` replaces the step decay,
//! which is far too fast when the paper's 150 epochs are compressed into a short CPU run.
//!
//! Each patch gets its own degradation: a Gaussian kernel of side 5–15 and σ 0.5–2 px (the
//! paper's ranges), white noise at 30–40 dB SNR (the paper's test levels; it adds noise to its
//! training pairs "as above" without giving the levels), and its own camera drawn from the
//! world's training side, so the module fuses whatever camera it is given. Evaluation kernels
//! ([`crate::spectral::degrade::BlurKernel::test_set`]) are never Gaussian.

use super::data::{load, DataSource, Dataset};
use super::loss::loss_fn;
use super::optim::{AdamW, Schedule};
use super::seeded::SeededInit;
use super::world::{draw_camera, Side};
use super::{checkpoint, tensor4, Loss, TrainEvent};
use crate::cube::{default_wavelengths, Cube};
use crate::engine::JobContext;
use crate::models::ual::{Fusion, UalConfig};
use crate::recon::card::ModelFiles;
use crate::recon::fusion::FusionCard;
use crate::spectral::camera::CameraResponse;
use crate::spectral::degrade::{upsample_bicubic, BlurKernel, Degradation};
use crate::spectral::render::project;
use crate::spectral::rng::Rng;
use crate::{bail_invalid, Error, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use crossbeam_channel::Sender;
use ndarray::{s, Array3, Array4, Axis};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct FusionTrainConfig {
    pub name: String,
    pub model: UalConfig,
    pub data: DataSource,
    pub scale: usize,
    pub steps: usize,
    pub batch: usize,
    /// High-resolution patch side; a multiple of `scale`.
    pub patch: usize,
    pub lr: f64,
    pub kernel_size: (usize, usize),
    pub kernel_sigma: (f64, f64),
    pub snr_db: (f64, f64),
    pub brightness: (f32, f32),
    pub schedule: FusionSchedule,
    pub validate_every: usize,
    pub checkpoint_every: usize,
    pub seed: u64,
    pub command: String,
}

impl FusionTrainConfig {
    /// The paper's settings (Adam 1e-4, batch 6, patches 128, ×8) on `data`.
    pub fn new(data: DataSource) -> Self {
        FusionTrainConfig {
            name: "ual-fusion".into(),
            model: UalConfig::default(),
            data,
            scale: 8,
            steps: 2000,
            batch: 6,
            patch: 128,
            lr: 1e-4,
            kernel_size: (5, 15),
            kernel_sigma: (0.5, 2.0),
            snr_db: (30.0, 40.0),
            brightness: (0.5, 2.0),
            schedule: FusionSchedule::Paper,
            validate_every: 250,
            checkpoint_every: 500,
            seed: 1,
            command: String::new(),
        }
    }

    fn schedule(&self) -> Schedule {
        match self.schedule {
            // ×0.7 every fifteenth of the run (the paper: every 10 of 150 epochs).
            FusionSchedule::Paper => Schedule::Step { every: (self.steps / 15).max(1), gamma: 0.7 },
            FusionSchedule::Cosine => Schedule::Cosine { warmup: (self.steps / 40).min(200) },
            FusionSchedule::Constant => Schedule::Constant,
        }
    }
}

/// The learning-rate schedule of the pretraining.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionSchedule {
    /// The paper's ×0.7 step decay, 15 steps over the run.
    Paper,
    Cosine,
    Constant,
}

/// One training pair per patch: X (b, 3, p, p), Y↑ (b, bands, p, p), Z (b, bands, p, p).
struct PairBatch {
    x: Array4<f32>,
    y_up: Array4<f32>,
    z: Array4<f32>,
}

/// The pair of `cube` under a random Gaussian degradation and camera from `rng`.
fn pair(cube: &Array3<f32>, cfg: &FusionTrainConfig, rng: &mut Rng) -> Result<(Array3<f32>, Array3<f32>)> {
    let (lo, hi) = cfg.kernel_size;
    let size = lo + rng.below(hi - lo + 1);
    let sigma = rng.range(cfg.kernel_sigma.0, cfg.kernel_sigma.1);
    let snr = rng.range(cfg.snr_db.0, cfg.snr_db.1);
    let degradation = Degradation { kernel: BlurKernel::gaussian(size, sigma)?, scale: cfg.scale, snr_db: Some(snr), seed: rng.next_u64() };
    let lr = degradation.apply(cube.view())?;
    let (_, rows, cols) = cube.dim();
    let camera = draw_camera(Side::Train, rng)?.on_grid(&default_wavelengths())?;
    Ok((project(camera.view(), cube.view())?, upsample_bicubic(lr.view(), cfg.scale, rows, cols)?))
}

fn sample(cubes: &[Array3<f32>], cfg: &FusionTrainConfig, rng: &mut Rng) -> Result<PairBatch> {
    let (b, p, bands) = (cfg.batch, cfg.patch, cfg.model.bands);
    let mut out = PairBatch { x: Array4::zeros((b, cfg.model.msi_bands, p, p)), y_up: Array4::zeros((b, bands, p, p)), z: Array4::zeros((b, bands, p, p)) };
    for i in 0..b {
        let source = &cubes[rng.below(cubes.len())];
        let z = super::data::random_patch(source, p, rng)?;
        let (lo, hi) = cfg.brightness;
        let factor = if hi > lo { (lo.ln() + (hi.ln() - lo.ln()) * rng.uniform_f32()).exp() } else { lo };
        let z = z.mapv(|v| v * factor);
        let (x, y_up) = pair(&z, cfg, rng)?;
        out.x.slice_mut(s![i, .., .., ..]).assign(&x);
        out.y_up.slice_mut(s![i, .., .., ..]).assign(&y_up);
        out.z.slice_mut(s![i, .., .., ..]).assign(&z);
    }
    Ok(out)
}

/// Validation: the fusion module alone on each validation scene under a fixed (seeded)
/// Gaussian degradation: mean MRAE, RMSE, PSNR, SAM.
fn validate(fusion: &Fusion, dataset: &Dataset, cfg: &FusionTrainConfig, device: &Device) -> Result<[f64; 4]> {
    let mut sums = [0.0; 4];
    for (i, cube) in dataset.validation.iter().enumerate() {
        let mut rng = Rng::new(0xF05E ^ i as u64);
        let (x, y_up) = pair(cube, cfg, &mut rng)?;
        let pred = fusion.forward(&tensor4(&x.insert_axis(Axis(0)), device)?, &tensor4(&y_up.insert_axis(Axis(0)), device)?)?;
        let pred = crate::recon::fusion::array3(&pred)?;
        let score = crate::metrics::score(&Cube::on_default_grid(pred.mapv(|v| v.max(0.0)))?, &Cube::on_default_grid(cube.clone())?, None)?;
        let m = &score.metrics;
        for (s, v) in sums.iter_mut().zip([m.mrae, m.rmse, m.psnr, m.sam_deg]) {
            *s += v;
        }
    }
    let n = dataset.validation.len().max(1) as f64;
    Ok(sums.map(|s| s / n))
}

/// Pretrains the fusion module and writes `OUT/NAME.safetensors` + `NAME.json`.
pub fn pretrain_fusion(cfg: &FusionTrainConfig, out_dir: &Path, device: &Device, events: &Sender<TrainEvent>, job: &JobContext) -> Result<(ModelFiles, FusionCard)> {
    cfg.model.check()?;
    if cfg.steps == 0 || cfg.batch == 0 || cfg.scale < 2 || cfg.patch % cfg.scale != 0 || cfg.patch < 2 * cfg.scale {
        bail_invalid!("fusion pretraining needs steps ≥ 1, batch ≥ 1, scale ≥ 2 and a patch that is a multiple of the scale, at least twice it (got {}, {}, {}, {})", cfg.steps, cfg.batch, cfg.scale, cfg.patch);
    }
    if cfg.model.bands != 31 || cfg.model.msi_bands != 3 {
        bail_invalid!("fusion pretraining on the data engine makes 31-band cubes and RGB: bands 31, msi_bands 3");
    }
    if cfg.name.is_empty() || cfg.name.contains(['/', '\\']) {
        bail_invalid!("model name '{}' must be a plain file name", cfg.name);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let start = Instant::now();
    let dataset = load(&cfg.data, &CameraResponse::parse("canon-eos-5d-mark-ii")?, job)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_backend(Box::new(SeededInit { map: varmap.clone(), seed: cfg.seed }), DType::F32, device.clone());
    let fusion = Fusion::new(&cfg.model, vb.pp("fusion"))?;
    let vars = varmap.data().lock().unwrap_or_else(|e| e.into_inner()).clone();
    let parameters: usize = vars.values().map(|v| v.elem_count()).sum();
    // The paper's Adam has no weight decay.
    let mut optimiser = AdamW::new(vars, 0.0)?;
    super::send(events, TrainEvent::started("ual", cfg.steps, 0, parameters, (dataset.train.len(), dataset.validation.len()), device));
    let mut card = FusionCard {
        name: cfg.name.clone(),
        architecture: "ual".into(),
        config: cfg.model.clone(),
        wavelengths: default_wavelengths(),
        scale: Some(cfg.scale),
        data: format!(
            "{}; each patch degraded by a gaussian kernel of side {}-{} and sigma {}-{} px, x{}, noise {}-{} db snr, and photographed by its own random camera",
            cfg.data.describe(),
            cfg.kernel_size.0,
            cfg.kernel_size.1,
            cfg.kernel_sigma.0,
            cfg.kernel_sigma.1,
            cfg.scale,
            cfg.snr_db.0,
            cfg.snr_db.1
        )
        .to_lowercase(),
        command: cfg.command.clone(),
        training: None,
        metrics: None,
        notes: None,
    };
    let checkpoints_dir = checkpoint::checkpoints_dir(out_dir)?;
    let schedule = cfg.schedule();
    let (mut last_loss, mut last_val) = (f64::NAN, None);
    let timer = Instant::now();
    let record = |steps: usize, loss: f64, val: Option<f64>| super::record(cfg.batch, cfg.patch, serde_json::to_value(cfg).unwrap_or_default(), steps, start, device, loss, val);
    let save = |card: &FusionCard, files: &ModelFiles| -> Result<()> {
        let tensors = varmap.data().lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        checkpoint::save_safetensors_atomically(&tensors, &files.weights)?;
        let json = serde_json::to_string_pretty(card).map_err(|e| Error::invalid(e.to_string()))?;
        crate::io::atomic::write_bytes_atomically(&files.card, json.as_bytes())
    };
    for step in 0..cfg.steps {
        job.check()?;
        let mut rng = Rng::new(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step as u64);
        let batch = sample(&dataset.train, cfg, &mut rng)?;
        let pred = fusion.forward(&tensor4(&batch.x, device)?, &tensor4(&batch.y_up, device)?)?;
        let loss = loss_fn(Loss::L1, &pred, &tensor4(&batch.z, device)?)?;
        let lr = schedule.rate(cfg.lr, step, cfg.steps);
        optimiser.step(&loss.backward()?, lr)?;
        last_loss = f64::from(loss.to_scalar::<f32>()?);
        if !last_loss.is_finite() {
            bail_invalid!("fusion pretraining diverged at step {}: loss is {last_loss} (try a lower --lr)", step + 1);
        }
        let done = step + 1;
        super::send(events, TrainEvent::step(done, cfg.steps, cfg.batch, (timer, 0), last_loss, lr));
        job.report(done as f32 / cfg.steps as f32, "pretraining the fusion module");
        if done % cfg.validate_every.max(1) == 0 || done == cfg.steps {
            let m = validate(&fusion, &dataset, cfg, device)?;
            last_val = Some(m[0]);
            super::send(events, TrainEvent::Validation { step: done, mrae: m[0], rmse: m[1], psnr: m[2], sam_deg: m[3] });
        }
        if done % cfg.checkpoint_every.max(1) == 0 && done < cfg.steps {
            card.training = Some(record(done, last_loss, last_val));
            let files = ModelFiles { card: checkpoints_dir.join(format!("ckpt-{done:06}.json")), weights: checkpoints_dir.join(format!("ckpt-{done:06}.safetensors")) };
            save(&card, &files)?;
            super::send(events, TrainEvent::Checkpoint { step: done, path: files.weights });
        }
    }
    card.training = Some(record(cfg.steps, last_loss, last_val));
    let files = ModelFiles { card: out_dir.join(format!("{}.json", cfg.name)), weights: out_dir.join(format!("{}.safetensors", cfg.name)) };
    save(&card, &files)?;
    super::send(events, TrainEvent::Finished { steps: cfg.steps, seconds: start.elapsed().as_secs_f64(), model: files.weights.clone() });
    Ok((files, card))
}
