//! Training INSS (Liu, Zou, Shi 2022, section III-C) on cubes and the RGB each cube gives
//! through the run's camera (self-supervised: the cube is its own target): world or synthetic
//! scenes on the 31-band grid, or the user's own cubes on their own wavelengths (a folder, or
//! one cube whose bottom fifth is held out for validation; [`load_data`]). The generator
//! (F, T and the signature t) minimises
//!
//!   L = L_pxl + 10·L_cos + 0.1·L_hsv + 1·L_reg + 0.01·L_adv                          (eq. 18)
//!
//! with L_pxl the band-weighted L1 (eq. 11: weights the training cubes' per-band variances,
//! summing to one), L_cos the mean 1 − cos between synthesised and true spectra (eq. 12–13),
//! L_hsv the L1 between the HSV colours of the two cubes' RGB renderings through the camera
//! (eq. 14; [`hsv`] as the authors' code computes it, hue in radians, no wrap-around), L_reg
//! the L1 of the nonlinear part S − L (eq. 15), and L_adv the non-saturating GAN loss of a
//! conditional spatial discriminator on [RGB, cube] and a spectral one on a 16-pixel grid of
//! spectra (eq. 16–17), both updated once every 3 generator steps. Adam at 1e-4 for the
//! generator and 1e-5 for the discriminators, the run's schedule (cosine by default; the
//! paper's is cosine after 20 epochs).
//!
//! The library R is `earthlib-wide` (345 spectra chosen to cover earthlib, see
//! assets/SOURCES.md) interpolated onto the model's bands, fixed. The signature starts as the
//! ASTM G173 solar spectrum on those bands, scaled so that the linear part of a uniform mix
//! matches the training cubes' mean (the authors start from a solar-like curve whose origin
//! they do not give).

use super::data::{self, DataSource, PatchSampler};
use super::optim::AdamW;
use super::seeded::SeededInit;
use super::{checkpoint, record, send, tensor4, var_tensors, TrainEvent, TrainSummary};
use crate::engine::JobContext;
use crate::models::inss::{grid_spectra, Inss, InssConfig, SpatialDiscriminator, SpectralDiscriminator};
use crate::models::Architecture;
use crate::recon::card::ModelCard;
use crate::recon::learned::run_tiled;
use crate::spectral::camera::CameraResponse;
use crate::spectral::library;
use crate::spectral::rng::Rng;
use crate::{bail_invalid, default_wavelengths, Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use crossbeam_channel::Sender;
use ndarray::{Array1, Array2, Array3};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// The library INSS mixes, by name.
pub const LIBRARY: &str = "earthlib-wide";

/// The weights of eq. 18 (the paper's by default); a zero weight is an ablation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InssLoss {
    pub pixel: f64,
    pub cosine: f64,
    pub hsv: f64,
    pub nonlinear: f64,
    pub adversarial: f64,
}

impl Default for InssLoss {
    fn default() -> Self {
        InssLoss { pixel: 1.0, cosine: 10.0, hsv: 0.1, nonlinear: 1.0, adversarial: 0.01 }
    }
}

/// Width of the discriminators' first layer (the paper's 64; this keeps them small beside a
/// CPU-sized generator).
pub const DISC_WIDTH: usize = 16;
/// Generator steps per discriminator step (the paper's 3).
pub const DISC_EVERY: usize = 3;
/// Learning rates of the paper: generator and discriminators.
pub const LR: f64 = 1e-4;
pub const DISC_LR: f64 = 1e-5;

/// HSV of RGB images (b, 3, h, w) → (b, 3, h, w) as kornia's `rgb_to_hsv` (what the authors'
/// code calls): v = max, s = (max − min)/(max + ε), the hue from the largest channel
/// ((g − b), (b − r) + 2Δ, (r − g) + 4Δ)/Δ (Δ = 1 where it is 0), taken as 2π·((h/6) mod 1).
pub fn hsv(rgb: &Tensor) -> candle_core::Result<Tensor> {
    let eps = 1e-8;
    let (r, g, b) = (rgb.narrow(1, 0, 1)?, rgb.narrow(1, 1, 1)?, rgb.narrow(1, 2, 1)?);
    let max = rgb.max_keepdim(1)?;
    let min = rgb.min_keepdim(1)?;
    let delta = (&max - &min)?;
    let s = (&delta / (&max + eps)?)?;
    let zero = delta.eq(0.0)?;
    let delta = zero.where_cond(&delta.ones_like()?, &delta)?;
    let hr = ((&g - &b)? / &delta)?;
    let hg = (((&b - &r)? / &delta)? + 2.0)?;
    let hb = (((&r - &g)? / &delta)? + 4.0)?;
    // the first channel holding the maximum decides (argmax)
    let is_r = r.eq(&max)?;
    let is_g = g.eq(&max)?;
    let h = is_r.where_cond(&hr, &is_g.where_cond(&hg, &hb)?)?;
    let h6 = (h / 6.0)?;
    // (h/6) mod 1, h/6 in [−1/6, 5/6]
    let h6 = h6.lt(0.0)?.where_cond(&(&h6 + 1.0)?, &h6)?;
    let h = (h6 * (2.0 * std::f64::consts::PI))?;
    Tensor::cat(&[&h, &s, &max], 1)
}

/// The generator's terms for one batch, each a scalar.
pub struct GeneratorTerms {
    pub pixel: Tensor,
    pub cosine: Tensor,
    pub hsv: Tensor,
    pub nonlinear: Tensor,
    pub adversarial: Option<Tensor>,
}

impl GeneratorTerms {
    /// `weights` (bands), summing to one; `camera` (3, bands).
    pub fn new(cube: &Tensor, linear: &Tensor, target: &Tensor, weights: &Tensor, camera: &Tensor) -> candle_core::Result<Self> {
        let bands = cube.dim(1)?;
        let diff = (cube - target)?;
        let pixel = diff.abs()?.broadcast_mul(&weights.reshape((1, bands, 1, 1))?)?.sum_keepdim(1)?.mean_all()?;
        let dot = (cube * target)?.sum_keepdim(1)?;
        let norms = (cube.sqr()?.sum_keepdim(1)?.sqrt()? * target.sqr()?.sum_keepdim(1)?.sqrt()?)?;
        let cosine = (dot / (norms + 1e-8)?)?.affine(-1.0, 1.0)?.mean_all()?;
        let render = |y: &Tensor| -> candle_core::Result<Tensor> {
            // (3, bands) · (b, bands, h·w) per picture
            let (b, _, h, w) = y.dims4()?;
            camera.unsqueeze(0)?.broadcast_as((b, 3, bands))?.contiguous()?.matmul(&y.reshape((b, bands, h * w))?)?.reshape((b, 3, h, w))
        };
        let hsv = (hsv(&render(cube)?)? - hsv(&render(target)?)?)?.abs()?.mean_all()?;
        let nonlinear = (cube - linear)?.abs()?.mean_all()?;
        Ok(GeneratorTerms { pixel, cosine, hsv, nonlinear, adversarial: None })
    }

    pub fn total(&self, w: &InssLoss) -> candle_core::Result<Tensor> {
        let mut total = ((((&self.pixel * w.pixel)? + (&self.cosine * w.cosine)?)? + (&self.hsv * w.hsv)?)? + (&self.nonlinear * w.nonlinear)?)?;
        if let Some(adv) = &self.adversarial {
            total = (total + (adv * w.adversarial)?)?;
        }
        Ok(total)
    }

    fn named(&self) -> Result<Vec<(String, f64)>> {
        let mut out = vec![
            ("L_pxl".to_string(), scalar(&self.pixel)?),
            ("L_cos".to_string(), scalar(&self.cosine)?),
            ("L_hsv".to_string(), scalar(&self.hsv)?),
            ("L_reg".to_string(), scalar(&self.nonlinear)?),
        ];
        if let Some(a) = &self.adversarial {
            out.push(("L_adv".to_string(), scalar(a)?));
        }
        Ok(out)
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// BCE of logits against all-real or all-fake labels.
fn bce(logits: &Tensor, real: bool) -> candle_core::Result<Tensor> {
    crate::train::usr::bce_logits(logits, real)
}

/// Per-band variances of the training cubes over all their pixels, normalised to sum to one
/// (the weights of eq. 11).
pub fn band_weights(cubes: &[Array3<f32>]) -> Result<Array1<f32>> {
    let bands = cubes.first().map(|c| c.dim().0).ok_or_else(|| Error::invalid("inss: no training cubes"))?;
    let mut sum = vec![0f64; bands];
    let mut sq = vec![0f64; bands];
    let mut n = 0f64;
    for cube in cubes {
        for (b, band) in cube.outer_iter().enumerate() {
            for &v in band.iter() {
                sum[b] += v as f64;
                sq[b] += (v as f64) * (v as f64);
            }
        }
        n += (cube.dim().1 * cube.dim().2) as f64;
    }
    let var: Vec<f64> = sum.iter().zip(&sq).map(|(s, q)| (q / n - (s / n).powi(2)).max(1e-12)).collect();
    let total: f64 = var.iter().sum();
    Ok(var.iter().map(|v| (v / total) as f32).collect())
}

/// R (bands, N_g): the library on `wavelengths`, and its spectra's names. Bands beyond the
/// library's 400–2450 nm take its first or last value (a sensor reaching 2500 nm, or 380 nm).
pub fn library_on(wavelengths: &[f32]) -> Result<(Array2<f32>, Vec<String>)> {
    let lib = library::library(LIBRARY)?;
    let (lo, hi) = (lib.wavelengths[0], lib.wavelengths[lib.wavelengths.len() - 1]);
    let clamped: Vec<f32> = wavelengths.iter().map(|w| w.clamp(lo, hi)).collect();
    let lib = lib.resample(&clamped)?;
    Ok((lib.spectra.t().to_owned(), lib.names.clone()))
}

/// What INSS trains on: cubes on one band grid, each divided by its 99.9th percentile when
/// they are the user's (data sets differ in units), with what they are.
pub struct InssData {
    pub wavelengths: Vec<f32>,
    pub train: Vec<Array3<f32>>,
    pub validation: Vec<Array3<f32>>,
    pub describe: String,
}

/// Rows of a single cube kept for validation: its last fifth (at least one row).
fn split_rows(rows: usize) -> usize {
    (rows / 5).max(1)
}

/// The run's data: world or synthetic scenes on the 31-band grid, or the user's cubes on their
/// own wavelengths (`--data` a folder, or one cube file, whose bottom fifth is then held out
/// for validation).
pub fn load_data(source: &DataSource, camera: &CameraResponse, job: &JobContext) -> Result<InssData> {
    if let DataSource::Aerial { count, size } = *source {
        return aerial_data(count, size, source.describe(), job);
    }
    let DataSource::Folder { path } = source else {
        let d = data::load(source, camera, job)?;
        return Ok(InssData { wavelengths: default_wavelengths(), train: d.train, validation: d.validation, describe: source.describe() });
    };
    let files = if path.is_file() { vec![path.clone()] } else { data::readable_files(path)? };
    if files.is_empty() {
        return Err(Error::format(path, "no readable cube: give a cube file or a folder of cubes"));
    }
    let mut cubes = Vec::with_capacity(files.len());
    let mut wavelengths: Option<Vec<f32>> = None;
    for (i, file) in files.iter().enumerate() {
        job.check()?;
        job.report(i as f32 / files.len() as f32, "reading training cubes");
        let cube = crate::io::open(file, &crate::io::OpenOptions::default())?;
        match &wavelengths {
            None => wavelengths = Some(cube.wavelengths.clone()),
            Some(w) if *w != cube.wavelengths => return Err(Error::format(file, format!("has {} bands on other wavelengths than {} ({} bands): INSS trains on one band grid", cube.bands(), files[0].display(), w.len()))),
            Some(_) => {}
        }
        let mut data = cube.data;
        data::scale_to_peak(&mut data);
        cubes.push(data);
    }
    let wavelengths = wavelengths.expect("one cube at least");
    let (train, validation) = if cubes.len() == 1 {
        let cube = cubes.pop().expect("one cube");
        let rows = cube.dim().1;
        let held = split_rows(rows);
        (vec![cube.slice(ndarray::s![.., ..rows - held, ..]).to_owned()], vec![cube.slice(ndarray::s![.., rows - held.., ..]).to_owned()])
    } else {
        let mut train = Vec::new();
        let mut validation = Vec::new();
        let n = cubes.len();
        for (i, c) in cubes.into_iter().enumerate() {
            if i % 10 == 9 || (i == n - 1 && validation.is_empty()) { validation.push(c) } else { train.push(c) }
        }
        (train, validation)
    };
    let describe = if files.len() == 1 {
        format!("{} ({} bands, {:.0}-{:.0} nm; its bottom fifth held out for validation), divided by its 99.9th percentile", files[0].display(), wavelengths.len(), wavelengths[0], wavelengths[wavelengths.len() - 1])
    } else {
        format!("{} cubes in {} ({} bands, {:.0}-{:.0} nm; every 10th for validation), each divided by its 99.9th percentile", files.len(), path.display(), wavelengths.len(), wavelengths[0], wavelengths[wavelengths.len() - 1])
    };
    Ok(InssData { wavelengths, train, validation, describe })
}

/// Aerial scenes on the wide library's grid, each divided by its 99.9th percentile as a user's
/// cubes are.
fn aerial_data(count: usize, size: usize, describe: String, job: &JobContext) -> Result<InssData> {
    if count == 0 {
        crate::bail_invalid!("--aerial needs at least one scene");
    }
    let val_count = (count / 8).max(2);
    let seeds = (0..count).map(|i| data::AERIAL_TRAIN_SEED0 + i as u64).chain((0..val_count).map(|i| data::AERIAL_VALIDATION_SEED0 + i as u64));
    let mut cubes = Vec::with_capacity(count + val_count);
    let mut wavelengths = Vec::new();
    for (i, seed) in seeds.enumerate() {
        job.check()?;
        job.report(i as f32 / (count + val_count) as f32, "painting aerial scenes");
        let scene = crate::spectral::aerial::scene(seed, size)?;
        wavelengths = scene.cube.wavelengths;
        let mut cube = scene.cube.data;
        data::scale_to_peak(&mut cube);
        cubes.push(cube);
    }
    let validation = cubes.split_off(count);
    Ok(InssData { wavelengths, train: cubes, validation, describe })
}

/// MRAE, RMSE, PSNR, SAM (degrees) of `net` over `cubes` on `wavelengths`, each rendered
/// through `camera`.
fn validate(net: &Inss, cubes: &[Array3<f32>], wavelengths: &[f32], camera: &Array2<f32>, device: &Device, job: &JobContext) -> Result<[f64; 4]> {
    mean_scores(cubes, wavelengths, camera, |rgb| run_tiled(net, rgb, None, wavelengths.len(), 512, device, job))
}

/// MRAE, RMSE, PSNR, SAM (degrees) of `predict` averaged over `cubes` on `wavelengths`, each
/// cube's picture rendered through `camera`.
fn mean_scores(cubes: &[Array3<f32>], wavelengths: &[f32], camera: &Array2<f32>, mut predict: impl FnMut(&crate::RgbImage) -> Result<Array3<f32>>) -> Result<[f64; 4]> {
    let mut sums = [0.0f64; 4];
    for cube in cubes {
        let rgb = crate::RgbImage::new(crate::spectral::render::project(camera.view(), cube.view())?)?;
        let pred = crate::Cube::new(predict(&rgb)?, wavelengths.to_vec())?;
        let m = crate::metrics::score(&pred, &crate::Cube::new(cube.clone(), wavelengths.to_vec())?, None)?.metrics;
        for (sum, value) in sums.iter_mut().zip([m.mrae, m.rmse, m.psnr, m.sam_deg]) {
            *sum += value;
        }
    }
    Ok(sums.map(|s| s / cubes.len().max(1) as f64))
}

/// The signature's starting value on `wavelengths`: ASTM G173 scaled so that t ⊙ mean(R) has
/// the training cubes' mean.
pub fn initial_signature(wavelengths: &[f32], r: &Array2<f32>, cubes: &[Array3<f32>]) -> Result<Array1<f32>> {
    let sun = library::illuminant("astm-g173-wide")?.resample(wavelengths)?;
    let mean_r = r.mean_axis(ndarray::Axis(1)).expect("a library has spectra");
    let mut cube_mean = vec![0f64; wavelengths.len()];
    let mut n = 0f64;
    for cube in cubes {
        for (b, band) in cube.outer_iter().enumerate() {
            cube_mean[b] += band.sum() as f64;
        }
        n += (cube.dim().1 * cube.dim().2) as f64;
    }
    let target: f64 = cube_mean.iter().sum::<f64>() / n;
    let made: f64 = sun.values.iter().zip(mean_r.iter()).map(|(s, r)| (*s as f64) * (*r as f64)).sum();
    let scale = if made > 0.0 { target / made } else { 1.0 };
    Ok(sun.values.iter().map(|s| (*s as f64 * scale) as f32).collect())
}

/// Train INSS as [`super::train`] asks: on the run's data, each cube's RGB through its camera.
pub fn train_from(cfg: &super::TrainConfig, out_dir: &Path, resume: Option<&Path>, device: &Device, events: &Sender<TrainEvent>, job: &JobContext) -> Result<TrainSummary> {
    if cfg.steps == 0 || cfg.batch == 0 {
        bail_invalid!("training needs steps ≥ 1 and batch ≥ 1 (got {}, {})", cfg.steps, cfg.batch);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let start = Instant::now();
    let camera = CameraResponse::parse(&cfg.camera)?;
    let dataset = load_data(&cfg.data, &camera, job)?;
    let wavelengths = dataset.wavelengths.clone();
    let c = camera.on_grid(&wavelengths)?;
    if let Some(small) = dataset.train.iter().find(|c| c.dim().1 < cfg.patch || c.dim().2 < cfg.patch) {
        bail_invalid!("a training cube of {}x{} px is smaller than the {} px patch: use a smaller --patch (a multiple of 64)", small.dim().2, small.dim().1, cfg.patch);
    }
    let mut model_cfg: InssConfig = match &cfg.model {
        serde_json::Value::Null => InssConfig::default(),
        v => serde_json::from_value(v.clone()).map_err(|e| Error::invalid(format!("config does not fit inss: {e}")))?,
    };
    model_cfg.bands = wavelengths.len();
    let (r, names) = library_on(&wavelengths)?;
    model_cfg.library = r.ncols();
    let multiple = 1usize << model_cfg.stages;
    if cfg.patch % multiple != 0 || cfg.patch < 32 {
        bail_invalid!("patch {} must be a multiple of {multiple} (INSS has {} stride-2 stages) and at least 32", cfg.patch, model_cfg.stages);
    }
    // Batch norm in training needs two values per channel at the deepest stage (as PyTorch's).
    if cfg.batch * (cfg.patch / multiple).pow(2) < 2 {
        bail_invalid!("inss: a batch of {} patch(es) of {} px leaves one value per channel at its deepest stage (1/{multiple}): use --batch 2 or more, or --patch {}", cfg.batch, cfg.patch, 2 * multiple);
    }
    let mut card = ModelCard {
        name: cfg.name.clone(),
        architecture: Architecture::Inss,
        config: serde_json::to_value(&model_cfg).map_err(|e| Error::invalid(e.to_string()))?,
        wavelengths: wavelengths.clone(),
        camera: camera.name.clone(),
        input_mean: Some(data::mean_rgb(&dataset.train, &c)?),
        data: format!("{} rendered through {} ({:?} RGB)", dataset.describe, camera.name, cfg.simulation).to_lowercase(),
        command: cfg.command.clone(),
        training: None,
        metrics: None,
        notes: Some(format!("library: {LIBRARY} ({} spectra: {} …)", names.len(), names.iter().take(3).cloned().collect::<Vec<_>>().join(", "))),
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_backend(Box::new(SeededInit { map: varmap.clone(), seed: cfg.seed }), DType::F32, device.clone());
    let net = Inss::new(&model_cfg, vb.clone())?;
    let disc_map = VarMap::new();
    let dvb = VarBuilder::from_backend(Box::new(SeededInit { map: disc_map.clone(), seed: cfg.seed ^ 0xD15C }), DType::F32, device.clone());
    let spatial = SpatialDiscriminator::new(model_cfg.bands, DISC_WIDTH, dvb.pp("spatial"))?;
    let spectral = SpectralDiscriminator::new(model_cfg.bands, DISC_WIDTH, dvb.pp("spectral"))?;
    {
        let vars = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        let to_tensor = |a: &[f32], shape: &[usize]| Tensor::from_vec(a.to_vec(), shape, device);
        vars["library"].set(&to_tensor(r.as_standard_layout().as_slice().expect("standard layout"), &[r.nrows(), r.ncols()])?)?;
        let t = initial_signature(&wavelengths, &r, &dataset.train)?;
        vars["signature"].set(&to_tensor(t.as_slice().expect("contiguous"), &[t.len()])?)?;
    }
    use crate::models::SpectralNet;
    let trainable: HashMap<String, candle_core::Var> = varmap.data().lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|(k, _)| net.is_trainable(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let parameters: usize = trainable.values().map(|v| v.elem_count()).sum();
    let mut optimiser = AdamW::new(trainable, 0.0)?;
    let disc_vars: HashMap<String, candle_core::Var> = disc_map.data().lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|(k, _)| !k.contains("running")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut disc_optimiser = AdamW::new(disc_vars, 0.0)?;
    let mut start_step = 0;
    if let Some(path) = resume {
        // the library and the signature come back with the weights
        let fits = |c: &ModelCard| c.architecture == Architecture::Inss && c.config == card.config && c.wavelengths == card.wavelengths;
        let (state, state_path) = checkpoint::resume(path, fits, "checkpoint is of another architecture, config or band set than this run", &varmap, device)?;
        load_training_state(&state, &mut optimiser, &mut disc_optimiser, &disc_map).map_err(|e| Error::format(&state_path, e.to_string()))?;
        start_step = optimiser.step;
        if start_step >= cfg.steps {
            bail_invalid!("the checkpoint is at step {start_step}: ask for more --steps than that to resume");
        }
    }
    let lr = if cfg.lr != super::TrainConfig::new(Architecture::Inss, cfg.data.clone()).lr { cfg.lr } else { LR };
    let weights_t = Tensor::from_vec(band_weights(&dataset.train)?.to_vec(), wavelengths.len(), device)?;
    let camera_t = Tensor::from_vec(c.as_standard_layout().iter().copied().collect::<Vec<f32>>(), (3, wavelengths.len()), device)?;
    let loss_weights = InssLoss::default();
    send(events, TrainEvent::started("inss", cfg.steps, start_step, parameters, (dataset.train.len(), dataset.validation.len()), device));
    let baselines = regression_baselines(&dataset, &c)?;
    send(events, TrainEvent::Baselines { scores: baselines.clone() });
    // No brightness augmentation (the paper has none): the linear part's brightness is t times
    // a convex mix of reflectances, which a random exposure would ask t to undo patch by patch.
    let sampler = PatchSampler { cubes: &dataset.train, camera: c.clone(), random_cameras: false, light: None, patch: cfg.patch, simulation: cfg.simulation, brightness: (1.0, 1.0) };
    let checkpoints_dir = checkpoint::checkpoints_dir(out_dir)?;
    let save_checkpoint = |step: usize, card: &ModelCard, optimiser: &AdamW, disc_optimiser: &AdamW| -> Result<std::path::PathBuf> {
        let (files, state_path) = checkpoint::checkpoint_files(&checkpoints_dir, step);
        checkpoint::save_model(&var_tensors(&varmap), card, &files)?;
        checkpoint::save_safetensors_atomically(&training_state(optimiser, disc_optimiser, &disc_map)?, &state_path)?;
        Ok(files.weights)
    };
    let (mut last_loss, mut last_val, mut last_metrics) = (f64::NAN, None, None);
    let mut timer = (Instant::now(), start_step);
    for step in start_step..cfg.steps {
        if let Err(stopped) = job.check() {
            if step > start_step {
                card.training = Some(record(cfg.batch, cfg.patch, serde_json::to_value(cfg).unwrap_or_default(), step, start, device, last_loss, last_val));
                let path = save_checkpoint(step, &card, &optimiser, &disc_optimiser)?;
                send(events, TrainEvent::Checkpoint { step, path });
            }
            return Err(stopped);
        }
        let mut rng = Rng::new(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step as u64);
        let batch = sampler.sample(cfg.batch, &mut rng)?;
        let (x, y) = (tensor4(&batch.rgb, device)?, tensor4(&batch.cube, device)?);
        let out = net.forward_parts(&x, true)?;
        let offset = (rng.below(16.min(cfg.patch)), rng.below(16.min(cfg.patch)));
        let rate = cfg.schedule.rate(lr, step, cfg.steps);
        // The discriminators, once every DISC_EVERY generator steps, on the generated cube held
        // fixed (the authors' code lets this loss reach the generator: a bug).
        if step % DISC_EVERY == 0 {
            let fake = out.cube.detach();
            let d_loss = ((bce(&spatial.forward_t(&x, &y, true)?, true)? + bce(&spatial.forward_t(&x, &fake, true)?, false)?)? * 0.5)?
                .add(&((bce(&spectral.forward(&grid_spectra(&y, offset)?)?, true)? + bce(&spectral.forward(&grid_spectra(&fake, offset)?)?, false)?)? * 0.5)?)?;
            let grads = d_loss.backward()?;
            disc_optimiser.step(&grads, cfg.schedule.rate(DISC_LR, step, cfg.steps))?;
        }
        let mut terms = GeneratorTerms::new(&out.cube, &out.linear, &y, &weights_t, &camera_t)?;
        let adv = (bce(&spatial.forward_t(&x, &out.cube, true)?, true)? + bce(&spectral.forward(&grid_spectra(&out.cube, offset)?)?, true)?)?;
        terms.adversarial = Some(adv);
        let loss = terms.total(&loss_weights)?;
        let grads = loss.backward()?;
        optimiser.step(&grads, rate)?;
        last_loss = scalar(&loss)?;
        if !last_loss.is_finite() {
            bail_invalid!("inss training diverged at step {}: loss is {last_loss} (try a lower --lr)", step + 1);
        }
        let done = step + 1;
        send(events, TrainEvent::step(done, cfg.steps, cfg.batch, timer, last_loss, rate));
        if done % 10 == 0 || done == cfg.steps {
            send(events, TrainEvent::Terms { step: done, terms: terms.named()? });
        }
        job.report(done as f32 / cfg.steps as f32, "training");
        if done % 50 == 0 {
            timer = (Instant::now(), done);
        }
        if done % cfg.validate_every.max(1) == 0 || done == cfg.steps {
            let m = validate(&net, &dataset.validation, &wavelengths, &c, device, job)?;
            (last_val, last_metrics) = (Some(m[0]), Some(m));
            send(events, TrainEvent::Validation { step: done, mrae: m[0], rmse: m[1], psnr: m[2], sam_deg: m[3] });
        }
        if done % cfg.checkpoint_every.max(1) == 0 && done < cfg.steps {
            card.training = Some(record(cfg.batch, cfg.patch, serde_json::to_value(cfg).unwrap_or_default(), done, start, device, last_loss, last_val));
            let path = save_checkpoint(done, &card, &optimiser, &disc_optimiser)?;
            send(events, TrainEvent::Checkpoint { step: done, path });
        }
    }
    // the run's last validation beside the baselines', on the same held-out data
    let inss = last_metrics.map(|m| super::BaselineScore { name: "inss".into(), mrae: m[0], rmse: m[1], psnr: m[2], sam_deg: m[3] });
    card.metrics = Some(serde_json::json!({ "validation": inss.iter().chain(&baselines).collect::<Vec<_>>() }));
    super::finish_run(cfg, card, &varmap, out_dir, start, device, (last_loss, last_val), events)
}

/// What a resumed run needs beyond the model's weights, for a checkpoint's `.optim.safetensors`:
/// the generator's AdamW moments and step as they are, and under `disc.` the discriminators'
/// moments and step, and under `disc.weights.` their weights (running statistics included).
fn training_state(optimiser: &AdamW, disc_optimiser: &AdamW, disc_map: &VarMap) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut state = optimiser.state()?;
    state.extend(disc_optimiser.state_under("disc.")?);
    for (name, var) in disc_map.data().lock().unwrap_or_else(|e| e.into_inner()).iter() {
        state.insert(format!("disc.weights.{name}"), var.as_tensor().clone());
    }
    Ok(state)
}

/// [`training_state`] read back into the optimisers and the discriminators.
fn load_training_state(state: &HashMap<String, Tensor>, optimiser: &mut AdamW, disc_optimiser: &mut AdamW, disc_map: &VarMap) -> candle_core::Result<()> {
    optimiser.load_state(state)?;
    disc_optimiser.load_state_under(state, "disc.")?;
    for (name, var) in disc_map.data().lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let value = state.get(&format!("disc.weights.{name}")).ok_or_else(|| candle_core::Error::Msg(format!("no discriminator weight '{name}'")))?;
        if value.dims() != var.dims() {
            candle_core::bail!("discriminator weight '{name}' has shape {:?}, the network {:?}", value.dims(), var.dims())
        }
        var.set(&value.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Per-pixel ridge regressions from the RGB (degree 1 and 2), fitted on every other pixel of
/// the training cubes and scored on the validation cubes as INSS's validation is: the bar a
/// learned synthesis has to clear.
pub fn regression_baselines(dataset: &InssData, camera: &Array2<f32>) -> Result<Vec<super::BaselineScore>> {
    use crate::recon::baselines::PixelRegression;
    let render = |cube: &Array3<f32>| crate::spectral::render::project(camera.view(), cube.view());
    let train_rgb = dataset.train.iter().map(render).collect::<Result<Vec<_>>>()?;
    let pairs: Vec<(&Array3<f32>, &Array3<f32>)> = dataset.train.iter().zip(&train_rgb).collect();
    let mut scores = Vec::new();
    for (degree, name) in [(1, "ridge-linear"), (2, "ridge-poly2")] {
        let fitted = PixelRegression::fit(&pairs, degree, 2)?;
        let [mrae, rmse, psnr, sam_deg] = mean_scores(&dataset.validation, &dataset.wavelengths, camera, |rgb| Ok(fitted.apply(&rgb.data)))?;
        scores.push(super::BaselineScore { name: name.into(), mrae, rmse, psnr, sam_deg });
    }
    Ok(scores)
}
