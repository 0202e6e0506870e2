//! Training USR (Zhu et al. 2021, section 3.6) without pairs: RGB pictures and hyperspectral
//! cubes come from disjoint scenes of the world (different seeds), each picture photographed by
//! a random camera of the dictionary ([`camera_dictionary`]) and, half of the time, grey-world
//! white-balanced as a camera's pipeline would; nothing pairs a picture with a cube.
//!
//! Each step updates the discriminator, then the generator and camera estimator together
//! (and the semantic branch with them):
//!
//!   L_D = BCE(D(Ỹ/ȳ), 0) + BCE(D(Y_r/ȳ_r), 1)                                       (eq. 13)
//!   L_G = BCE(D(Ỹ/ȳ), 1) + 100·S_bp + 10·S_1 + 0.01·S_pos + 1·S_sem                   (eq. 8)
//!
//! with S_bp = ‖C_o·Ỹ − X‖²_F/(3hw), S_1 the mean absolute difference of adjacent bands,
//! S_pos = ‖Ỹ − |Ỹ|‖²_F (per picture, averaged over the batch) taken on the generator's output
//! before its final LeakyReLU (a departure: after a LeakyReLU of slope 0.001 the penalty is
//! 10⁶ times weaker, and a band that goes negative, as half of them do at initialisation,
//! gets 0.001 of S_bp's gradient and stays dead — measured: the first run generated nothing
//! above 550 nm and let the camera estimator move the red curve into the blue to match X), S_sem the per-pixel
//! cross-entropy of the semantic branch against the world's material classes. ȳ is each
//! cube's mean absolute value, held constant (as the authors' code does). The gradient the
//! discriminator and the semantic branch send back into Ỹ passes the L1 gradient clipping op
//! ([`l1_gradient_clip`]). Adam with β = (0.9, 0.999) and the paper's TTUR rates: 1e-4 for the
//! generator and camera estimator, 5e-4 for the discriminator; the semantic branch (SGD at 1e-3
//! in the paper, beside a frozen pretrained parser we cannot have) uses Adam at 1e-4.
//!
//! Validation is paired, for measurement only: validation scenes photographed by their own
//! camera, reconstructed blind; MRAE, RMSE, PSNR, SAM and the estimated curves' error.

use super::checkpoint;
use super::optim::AdamW;
use super::seeded::SeededInit;
use super::world::{camera_dictionary, scene, Material, World, TRAIN_SEED0, VALIDATION_SEED0};
use super::{tensor4, TrainEvent};
use crate::cube::{default_wavelengths, Cube};
use crate::engine::JobContext;
use crate::models::usr::{dictionary_tensor, project, Discriminator, Semantic, Usr, UsrConfig};
use crate::models::Architecture;
use crate::nn::grad_clip::l1_gradient_clip;
use crate::recon::card::{ModelCard, ModelFiles, ANY_CAMERA};
use crate::recon::device::device_name;
use crate::recon::usr::curve_error;
use crate::spectral::render::project as render;
use crate::spectral::rng::Rng;
use crate::{bail_invalid, Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use crossbeam_channel::Sender;
use ndarray::{s, Array2, Array3, Array4, Axis};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// The weights of the generator's loss terms (eq. 8) and whether the L1 gradient clipping is
/// on: the paper's by default; a zero weight or `clip: false` is an ablation (table 3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UsrLoss {
    pub adversarial: f64,
    pub back_projection: f64,
    pub smoothness: f64,
    pub positivity: f64,
    pub semantic: f64,
    pub clip: bool,
    /// Hold each cube's mean ȳ constant in D's input Ỹ/ȳ (no gradient through it), as the
    /// authors' code does; false differentiates through it (for gradient checks).
    pub hold_mean: bool,
    /// Not in the paper (0 there): weight of S_cam, the mean absolute difference between the
    /// estimated curves (before the white-balance gains) and the dictionary camera that took
    /// each training picture. The world's pictures know their camera; the paper's do not.
    pub camera: f64,
    /// Clip the gradients from D and from the semantic branch each on its own (each to τ, as
    /// eq. 7 reads; the authors' code also clips them separately) rather than their sum once
    /// (how the shipped model was trained, which let D's gradient take the whole budget).
    pub separate_clips: bool,
}

impl Default for UsrLoss {
    fn default() -> Self {
        UsrLoss { adversarial: 1.0, back_projection: 100.0, smoothness: 10.0, positivity: 0.01, semantic: 1.0, clip: true, hold_mean: true, camera: 0.0, separate_clips: false }
    }
}

impl UsrLoss {
    /// The paper's loss without the components named (comma-separated: bp, s1, pos, clip, sem).
    pub fn ablated(list: &str) -> Result<UsrLoss> {
        let mut l = UsrLoss::default();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "bp" => l.back_projection = 0.0,
                "s1" => l.smoothness = 0.0,
                "pos" => l.positivity = 0.0,
                "clip" => l.clip = false,
                "sem" => l.semantic = 0.0,
                other => bail_invalid!("unknown usr loss component '{other}' (expected bp, s1, pos, clip or sem)"),
            }
        }
        Ok(l)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UsrTrainConfig {
    pub name: String,
    pub model: UsrConfig,
    pub loss: UsrLoss,
    /// Scenes on each side (pictures; cubes), each `size`² px.
    pub scenes: usize,
    pub size: usize,
    pub validation_scenes: usize,
    pub steps: usize,
    pub batch: usize,
    /// Side of the square patches (a multiple of 16: the camera estimator sees whole patches).
    pub patch: usize,
    pub lr: f64,
    pub lr_discriminator: f64,
    pub lr_semantic: f64,
    /// Share of the pictures grey-world white-balanced.
    pub white_balance: f64,
    pub validate_every: usize,
    pub checkpoint_every: usize,
    pub seed: u64,
    pub command: String,
    /// A checkpoint to continue from (its `.optim.safetensors` beside it).
    #[serde(skip)]
    pub resume: Option<std::path::PathBuf>,
}

impl UsrTrainConfig {
    pub fn new(scenes: usize, size: usize) -> Self {
        UsrTrainConfig {
            name: "usr".into(),
            model: UsrConfig::default(),
            loss: UsrLoss::default(),
            scenes,
            size,
            validation_scenes: 8,
            steps: 2000,
            batch: 4,
            patch: 64,
            lr: 1e-4,
            lr_discriminator: 5e-4,
            lr_semantic: 1e-4,
            white_balance: 0.5,
            validate_every: 250,
            checkpoint_every: 500,
            seed: 1,
            command: String::new(),
            resume: None,
        }
    }
}

/// A training picture: linear RGB (3, rows, cols), its material classes (rows, cols) and the
/// dictionary camera that took it.
struct Picture {
    rgb: Array3<f32>,
    labels: Array2<u8>,
    camera: usize,
}

/// A validation scene: the cube, the picture its own camera took, and that camera.
pub struct ValidationScene {
    pub cube: Array3<f32>,
    pub rgb: Array3<f32>,
    pub camera: Array2<f32>,
}

/// Seeds of the picture side, apart from the cubes' (which start at [`TRAIN_SEED0`]).
const PICTURE_SEED0: u64 = TRAIN_SEED0 + 500_000;

/// `rgb` (3, rows, cols) grey-world balanced: each channel scaled so the three means agree,
/// the gains averaging 1.
fn grey_world(rgb: &mut Array3<f32>) {
    let means: Vec<f64> = rgb.outer_iter().map(|p| p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len().max(1) as f64).collect();
    if means.iter().any(|m| !(*m > 1e-9)) {
        return;
    }
    let target = means.iter().sum::<f64>() / 3.0;
    let gains: Vec<f64> = means.iter().map(|m| target / m).collect();
    let mean_gain = gains.iter().sum::<f64>() / 3.0;
    for (mut plane, g) in rgb.outer_iter_mut().zip(gains) {
        plane.mapv_inplace(|v| (f64::from(v) * g / mean_gain) as f32);
    }
}

fn pictures(cfg: &UsrTrainConfig, job: &JobContext) -> Result<Vec<Picture>> {
    let dictionary = camera_dictionary()?;
    let mut rng = Rng::new(cfg.seed ^ 0x9C7);
    (0..cfg.scenes)
        .map(|i| {
            job.check()?;
            job.report(i as f32 / (2 * cfg.scenes) as f32, "painting pictures");
            let s = scene(World::TRAINING, PICTURE_SEED0 + i as u64, cfg.size)?;
            let atom = rng.below(dictionary.len());
            let mut rgb = render(dictionary[atom].view(), s.cube.view())?;
            if rng.uniform() < cfg.white_balance {
                grey_world(&mut rgb);
            }
            Ok(Picture { rgb, labels: s.labels, camera: atom })
        })
        .collect()
}

fn cubes(cfg: &UsrTrainConfig, job: &JobContext) -> Result<Vec<Array3<f32>>> {
    (0..cfg.scenes)
        .map(|i| {
            job.check()?;
            job.report(0.5 + i as f32 / (2 * cfg.scenes) as f32, "painting cubes");
            Ok(scene(World::TRAINING, TRAIN_SEED0 + i as u64, cfg.size)?.cube)
        })
        .collect()
}

/// The validation scenes of `world` (seeds from `seed0`), each through its own camera.
pub fn validation_scenes(world: World, seed0: u64, count: usize, size: usize) -> Result<Vec<ValidationScene>> {
    (0..count)
        .map(|i| {
            let s = scene(world, seed0 + i as u64, size)?;
            let camera = s.camera.on_grid(&default_wavelengths())?;
            Ok(ValidationScene { rgb: render(camera.view(), s.cube.view())?, cube: s.cube, camera })
        })
        .collect()
}

/// A random `p`² window of (c, rows, cols) arrays in one of four orientations (flips).
struct Window {
    r0: usize,
    c0: usize,
    flip_rows: bool,
    flip_cols: bool,
}

impl Window {
    fn draw(rows: usize, cols: usize, p: usize, rng: &mut Rng) -> Window {
        Window { r0: rng.below(rows - p + 1), c0: rng.below(cols - p + 1), flip_rows: rng.below(2) == 1, flip_cols: rng.below(2) == 1 }
    }

    fn cut<T: Clone>(&self, a: ndarray::ArrayView3<T>, p: usize) -> Array3<T> {
        let mut w = a.slice(s![.., self.r0..self.r0 + p, self.c0..self.c0 + p]).to_owned();
        if self.flip_rows {
            w.invert_axis(Axis(1));
        }
        if self.flip_cols {
            w.invert_axis(Axis(2));
        }
        w
    }
}

/// One step's data: pictures X (b, 3, p, p), their classes one-hot (b, classes, p, p), cubes
/// Y_r (b, bands, p, p) from other scenes, and each picture's dictionary camera.
fn sample(pictures: &[Picture], cubes: &[Array3<f32>], cfg: &UsrTrainConfig, rng: &mut Rng) -> (Array4<f32>, Array4<f32>, Array4<f32>, Vec<usize>) {
    let (b, p, k) = (cfg.batch, cfg.patch, cfg.model.classes);
    let mut x = Array4::zeros((b, 3, p, p));
    let mut onehot = Array4::zeros((b, k, p, p));
    let mut y = Array4::zeros((b, cfg.model.bands, p, p));
    let mut cameras = Vec::with_capacity(b);
    for i in 0..b {
        let pic = &pictures[rng.below(pictures.len())];
        cameras.push(pic.camera);
        let (_, rows, cols) = pic.rgb.dim();
        let w = Window::draw(rows, cols, p, rng);
        x.slice_mut(s![i, .., .., ..]).assign(&w.cut(pic.rgb.view(), p));
        let labels = w.cut(pic.labels.view().insert_axis(Axis(0)), p);
        for ((_, r, c), &l) in labels.indexed_iter() {
            if usize::from(l) < k {
                onehot[[i, usize::from(l), r, c]] = 1.0;
            }
        }
        let cube = &cubes[rng.below(cubes.len())];
        let (_, rows, cols) = cube.dim();
        y.slice_mut(s![i, .., .., ..]).assign(&Window::draw(rows, cols, p, rng).cut(cube.view(), p));
    }
    (x, onehot, y, cameras)
}

/// S_cam (not in the paper): mean |estimated curves before the gains − the true camera|.
pub fn camera_supervision(est: &crate::models::usr::CameraEstimate, truth: &Tensor) -> candle_core::Result<Tensor> {
    let curves = est.response.broadcast_div(&est.gains.unsqueeze(2)?)?;
    (curves - truth)?.abs()?.mean_all()
}

/// log(1 + e^z), stable for any z: max(z, 0) + log(1 + e^{−|z|}).
fn softplus(z: &Tensor) -> candle_core::Result<Tensor> {
    z.relu()? + z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?
}

/// Binary cross-entropy of logits `z` (b) against the label 1 (`real`) or 0, averaged.
pub fn bce_logits(z: &Tensor, real: bool) -> candle_core::Result<Tensor> {
    if real { softplus(&z.neg()?)? } else { softplus(z)? }.mean_all()
}

/// Each cube of `y` (b, …) divided by its mean absolute value, held constant (no gradient)
/// when `hold` is set.
pub fn mean_normalised(y: &Tensor, hold: bool) -> candle_core::Result<Tensor> {
    let b = y.dim(0)?;
    let mut shape = vec![b];
    shape.extend(std::iter::repeat_n(1, y.rank() - 1));
    let mean = y.abs()?.flatten_from(1)?.mean_keepdim(1)?.affine(1.0, 1e-6)?.reshape(shape)?;
    y.broadcast_div(&if hold { mean.detach() } else { mean })
}

/// S_1: the mean absolute difference of adjacent bands of `y` (b, bands, h, w).
pub fn smoothness(y: &Tensor) -> candle_core::Result<Tensor> {
    let bands = y.dim(1)?;
    (y.narrow(1, 1, bands - 1)? - y.narrow(1, 0, bands - 1)?)?.abs()?.mean_all()
}

/// S_pos = ‖Y − |Y|‖²_F per cube, averaged over the batch: 4·Σ min(Y, 0)².
pub fn positivity(y: &Tensor) -> candle_core::Result<Tensor> {
    let b = y.dim(0)? as f64;
    y.neg()?.relu()?.sqr()?.sum_all()? * (4.0 / b)
}

/// S_bp = ‖C_o·Y − X‖²_F / (3hw), averaged over the batch.
pub fn back_projection(response: &Tensor, y: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    (project(response, y)? - x)?.sqr()?.mean_all()
}

/// S_sem: the per-pixel cross-entropy of `logits` (b, k, h, w) against one-hot `target`.
pub fn semantic_loss(logits: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_p = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(1)?.log()?)?;
    let (b, _, h, w) = logits.dims4()?;
    (target * log_p)?.sum_all()? * (-1.0 / (b * h * w) as f64)
}

/// The generator's loss terms for pictures `x`, cubes `y` generated from them by camera
/// `response`, the discriminator, the semantic branch and the one-hot classes.
pub struct GeneratorTerms {
    pub adversarial: Tensor,
    pub back_projection: Tensor,
    pub smoothness: Tensor,
    pub positivity: Tensor,
    pub semantic: Tensor,
}

impl GeneratorTerms {
    /// `y` is Ỹ, `raw` the generator's output before its final LeakyReLU.
    #[allow(clippy::too_many_arguments)]
    pub fn new(x: &Tensor, y: &Tensor, raw: &Tensor, response: &Tensor, disc: &Discriminator, semantic: &Semantic, onehot: &Tensor, loss: &UsrLoss) -> candle_core::Result<Self> {
        // What D and the semantic branch see of Ỹ: through the clipping op (eq. 7).
        let seen = if loss.clip { l1_gradient_clip(y)? } else { y.clone() };
        let seen_semantic = if loss.clip && loss.separate_clips { l1_gradient_clip(y)? } else { seen.clone() };
        Ok(Self {
            adversarial: bce_logits(&disc.forward(&mean_normalised(&seen, loss.hold_mean)?)?, true)?,
            back_projection: back_projection(response, y, x)?,
            smoothness: smoothness(y)?,
            positivity: positivity(raw)?,
            semantic: semantic_loss(&semantic.forward(x, &seen_semantic)?, onehot)?,
        })
    }

    /// The weighted sum (eq. 8).
    pub fn total(&self, loss: &UsrLoss) -> candle_core::Result<Tensor> {
        let mut t = (&self.adversarial * loss.adversarial)?;
        for (term, w) in [(&self.back_projection, loss.back_projection), (&self.smoothness, loss.smoothness), (&self.positivity, loss.positivity), (&self.semantic, loss.semantic)] {
            if w != 0.0 {
                t = (t + (term * w)?)?;
            }
        }
        Ok(t)
    }
}

/// Blind reconstruction of each validation scene: mean MRAE, RMSE, PSNR, SAM and the mean
/// relative error of the estimated curves.
pub fn validate(usr: &Usr, scenes: &[ValidationScene], device: &Device) -> Result<[f64; 5]> {
    let mut sums = [0.0; 5];
    for v in scenes {
        let x = tensor4(&v.rgb.clone().insert_axis(Axis(0)), device)?;
        let (y, est) = usr.forward(&x, None)?;
        let pred = crate::recon::fusion::array3(&y)?;
        let score = crate::metrics::score(&Cube::on_default_grid(pred.mapv(|v| v.max(0.0)))?, &Cube::on_default_grid(v.cube.clone())?, None)?;
        let m = &score.metrics;
        let est = est.expect("a blind forward estimates the camera");
        let curves = crate::recon::usr::response_array(&est.response)?;
        for (s, val) in sums.iter_mut().zip([m.mrae, m.rmse, m.psnr, m.sam_deg, curve_error(&curves, &v.camera)]) {
            *s += val;
        }
    }
    let n = scenes.len().max(1) as f64;
    Ok(sums.map(|s| s / n))
}

fn subset(varmap: &VarMap, prefix: &str, exclude: &str) -> HashMap<String, candle_core::Var> {
    let vars = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    vars.iter().filter(|(k, _)| k.starts_with(prefix) && k.as_str() != exclude).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Trains USR and writes `OUT/NAME.safetensors` + `NAME.json` (every network's weights; the
/// studio and `reconstruct` read only the camera estimator and the generator).
pub fn train_usr(cfg: &UsrTrainConfig, out_dir: &Path, device: &Device, events: &Sender<TrainEvent>, job: &JobContext) -> Result<(ModelFiles, ModelCard)> {
    cfg.model.check()?;
    if cfg.steps == 0 || cfg.batch == 0 || cfg.patch < 16 || cfg.patch % 16 != 0 || cfg.patch > cfg.size || cfg.scenes == 0 {
        bail_invalid!(
            "usr training needs steps ≥ 1, batch ≥ 1, scenes ≥ 1 and a patch that is a multiple of 16 no larger than the scenes (got steps {}, batch {}, scenes {}, patch {}, size {})",
            cfg.steps, cfg.batch, cfg.scenes, cfg.patch, cfg.size
        );
    }
    if cfg.model.bands != 31 || cfg.model.classes != Material::COUNT || cfg.model.dictionary != super::world::DICTIONARY_SIZE {
        bail_invalid!("usr trains on the world's 31-band scenes, {} material classes and {}-camera dictionary", Material::COUNT, super::world::DICTIONARY_SIZE);
    }
    if cfg.name.is_empty() || cfg.name.contains(['/', '\\']) {
        bail_invalid!("model name '{}' must be a plain file name", cfg.name);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let start = Instant::now();
    let (pictures, cubes) = (pictures(cfg, job)?, cubes(cfg, job)?);
    let validation = validation_scenes(World::TRAINING, VALIDATION_SEED0, cfg.validation_scenes, cfg.size.min(128) / 16 * 16)?;
    let mut model = cfg.model.clone();
    model.camera_view = cfg.patch;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_backend(Box::new(SeededInit { map: varmap.clone(), seed: cfg.seed }), DType::F32, device.clone());
    let usr = Usr::new(&model, vb.clone())?;
    let disc = Discriminator::new(&model, vb.pp("discriminator"))?;
    let semantic = Semantic::new(&model, vb.pp("semantic"))?;
    // The dictionary is data, fixed: written in before the first step, never trained.
    let dictionary = dictionary_tensor(&camera_dictionary()?, device)?;
    subset(&varmap, "camera.dictionary", "")["camera.dictionary"].set(&dictionary)?;
    let generator_vars = {
        let mut v = subset(&varmap, "camera.", "camera.dictionary");
        v.extend(subset(&varmap, "generator.", ""));
        v
    };
    let parameters: usize = generator_vars.values().map(|v| v.elem_count()).sum();
    let mut opt_g = AdamW::new(generator_vars, 0.0)?;
    let mut opt_d = AdamW::new(subset(&varmap, "discriminator.", ""), 0.0)?;
    let mut opt_s = AdamW::new(subset(&varmap, "semantic.", ""), 0.0)?;
    let config = serde_json::to_value(&model).map_err(|e| Error::invalid(e.to_string()))?;
    let mut start_step = 0;
    if let Some(path) = &cfg.resume {
        // every network comes back with the weights: generator, camera estimator, discriminator,
        // semantic branch (and the dictionary, unchanged)
        let fits = |c: &ModelCard| c.architecture == Architecture::Usr && c.config == config;
        let (state, state_path) = checkpoint::resume(path, fits, "checkpoint is of another architecture or config than this run", &varmap, device)?;
        for (prefix, opt) in [("g.", &mut opt_g), ("d.", &mut opt_d), ("s.", &mut opt_s)] {
            opt.load_state_under(&state, prefix).map_err(|e| Error::format(&state_path, e.to_string()))?;
        }
        start_step = opt_g.step;
        if start_step >= cfg.steps {
            bail_invalid!("the checkpoint is at step {start_step}: ask for more --steps than that to resume");
        }
    }
    super::send(events, TrainEvent::Started {
        method: "usr".into(),
        total_steps: cfg.steps,
        start_step,
        parameters,
        train_scenes: 2 * cfg.scenes,
        validation_scenes: validation.len(),
        device: device_name(device).into(),
    });
    let mut card = ModelCard {
        name: cfg.name.clone(),
        architecture: Architecture::Usr,
        config,
        wavelengths: default_wavelengths(),
        camera: ANY_CAMERA.into(),
        input_mean: None,
        data: format!(
            "unpaired: {} pictures and {} cubes of {}² px from disjoint scenes of the world's training side; pictures through random cameras of the {}-camera dictionary, {:.0} % grey-world balanced; semantic labels: the world's {} material classes",
            cfg.scenes, cfg.scenes, cfg.size, super::world::DICTIONARY_SIZE, cfg.white_balance * 100.0, Material::COUNT
        ),
        command: cfg.command.clone(),
        training: None,
        metrics: None,
        notes: None,
    };
    let checkpoints_dir = checkpoint::checkpoints_dir(out_dir)?;
    let weights = || -> HashMap<String, Tensor> { varmap.data().lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect() };
    // weights + card, and the three optimisers' moments under g., d. and s.
    let save_checkpoint = |step: usize, card: &ModelCard, optimisers: [&AdamW; 3]| -> Result<std::path::PathBuf> {
        let (files, state_path) = checkpoint::checkpoint_files(&checkpoints_dir, step);
        checkpoint::save_model(&weights(), card, &files)?;
        let mut state = HashMap::new();
        for (prefix, opt) in ["g.", "d.", "s."].into_iter().zip(optimisers) {
            state.extend(opt.state_under(prefix)?);
        }
        checkpoint::save_safetensors_atomically(&state, &state_path)?;
        Ok(files.weights)
    };
    let (mut last_loss, mut last_val) = (f64::NAN, None);
    let mut timer = (Instant::now(), start_step);
    for step in start_step..cfg.steps {
        if let Err(stopped) = job.check() {
            // Stopping keeps what was learned: a checkpoint at the last step done.
            if step > start_step {
                card.training = Some(super::record(cfg.batch, cfg.patch, serde_json::to_value(cfg).unwrap_or_default(), step, start, device, last_loss, last_val));
                let path = save_checkpoint(step, &card, [&opt_g, &opt_d, &opt_s])?;
                super::send(events, TrainEvent::Checkpoint { step, path });
            }
            return Err(stopped);
        }
        let mut rng = Rng::new(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step as u64);
        let (x, onehot, y_real, atoms) = sample(&pictures, &cubes, cfg, &mut rng);
        let (x, onehot, y_real) = (tensor4(&x, device)?, tensor4(&onehot, device)?, tensor4(&y_real, device)?);
        let (y, raw, est) = usr.forward_train(&x)?;
        // The discriminator's step, on Ỹ held constant.
        let d_loss = (bce_logits(&disc.forward(&mean_normalised(&y.detach(), true)?)?, false)? + bce_logits(&disc.forward(&mean_normalised(&y_real, true)?)?, true)?)?;
        opt_d.step(&d_loss.backward()?, cfg.lr_discriminator)?;
        // The generator's (and camera estimator's, and semantic branch's) step.
        let terms = GeneratorTerms::new(&x, &y, &raw, &est.response, &disc, &semantic, &onehot, &cfg.loss)?;
        let mut g_loss = terms.total(&cfg.loss)?;
        if cfg.loss.camera != 0.0 {
            let truth = Tensor::stack(&atoms.iter().map(|&a| dictionary.get(a)).collect::<candle_core::Result<Vec<_>>>()?, 0)?;
            g_loss = (g_loss + (camera_supervision(&est, &truth)? * cfg.loss.camera)?)?;
        }
        let grads = g_loss.backward()?;
        opt_g.step(&grads, cfg.lr)?;
        opt_s.step(&grads, cfg.lr_semantic)?;
        last_loss = f64::from(g_loss.to_scalar::<f32>()?);
        if !last_loss.is_finite() {
            bail_invalid!("usr training diverged at step {}: generator loss {last_loss}", step + 1);
        }
        let done = step + 1;
        super::send(events, TrainEvent::step(done, cfg.steps, cfg.batch, timer, last_loss, cfg.lr));
        let scalar = |t: &Tensor| t.to_scalar::<f32>().map(f64::from);
        super::send(events, TrainEvent::Terms {
            step: done,
            terms: vec![
                ("discriminator".into(), scalar(&d_loss)?),
                ("adversarial".into(), scalar(&terms.adversarial)?),
                ("S_bp".into(), scalar(&terms.back_projection)?),
                ("S_1".into(), scalar(&terms.smoothness)?),
                ("S_pos".into(), scalar(&terms.positivity)?),
                ("S_sem".into(), scalar(&terms.semantic)?),
            ],
        });
        job.report(done as f32 / cfg.steps as f32, "training");
        if done % 50 == 0 {
            timer = (Instant::now(), done);
        }
        if done % cfg.validate_every.max(1) == 0 || done == cfg.steps {
            let m = validate(&usr, &validation, device)?;
            last_val = Some(m[0]);
            super::send(events, TrainEvent::Validation { step: done, mrae: m[0], rmse: m[1], psnr: m[2], sam_deg: m[3] });
            super::send(events, TrainEvent::Terms { step: done, terms: vec![("validation camera error".into(), m[4])] });
        }
        if done % cfg.checkpoint_every.max(1) == 0 && done < cfg.steps {
            card.training = Some(super::record(cfg.batch, cfg.patch, serde_json::to_value(cfg).unwrap_or_default(), done, start, device, last_loss, last_val));
            let path = save_checkpoint(done, &card, [&opt_g, &opt_d, &opt_s])?;
            super::send(events, TrainEvent::Checkpoint { step: done, path });
        }
    }
    card.training = Some(super::record(cfg.batch, cfg.patch, serde_json::to_value(cfg).unwrap_or_default(), cfg.steps, start, device, last_loss, last_val));
    let files = ModelFiles { card: out_dir.join(format!("{}.json", cfg.name)), weights: out_dir.join(format!("{}.safetensors", cfg.name)) };
    checkpoint::save_model(&weights(), &card, &files)?;
    super::send(events, TrainEvent::Finished { steps: cfg.steps, seconds: start.elapsed().as_secs_f64(), model: files.weights.clone() });
    Ok((files, card))
}

/// The generic training request (the studio's Training panel) as a usr run: the world's
/// scenes on both sides, the patch the largest multiple of 16 that fits them. The camera is
/// not asked for (pictures come through the dictionary's cameras) and the paper's rates hold
/// unless a rate other than the networks' default is given.
pub fn train_from(cfg: &super::TrainConfig, out_dir: &Path, resume: Option<&Path>, device: &Device, events: &Sender<TrainEvent>, job: &JobContext) -> Result<super::TrainSummary> {
    let super::data::DataSource::World { count, size } = cfg.data else {
        bail_invalid!("usr trains on the world's scenes, unpaired (pictures and cubes from disjoint scenes): choose world scenes as its data");
    };
    let mut u = UsrTrainConfig::new(count, size);
    u.resume = resume.map(Path::to_path_buf);
    u.name = cfg.name.clone();
    (u.steps, u.batch, u.seed) = (cfg.steps, cfg.batch, cfg.seed);
    u.patch = cfg.patch.min(size) / 16 * 16;
    if cfg.lr != super::TrainConfig::new(Architecture::Usr, cfg.data.clone()).lr {
        u.lr = cfg.lr;
    }
    (u.validate_every, u.checkpoint_every) = (cfg.validate_every, cfg.checkpoint_every);
    u.command = cfg.command.clone();
    let (model, card) = train_usr(&u, out_dir, device, events, job)?;
    Ok(super::TrainSummary { model, card })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_world_equalises_channel_means_with_unit_mean_gain() {
        let mut rgb = Array3::from_shape_fn((3, 4, 4), |(k, r, c)| [0.6f32, 0.3, 0.1][k] * (1.0 + 0.1 * (r + c) as f32));
        let before: f32 = rgb.sum();
        grey_world(&mut rgb);
        let means: Vec<f32> = rgb.outer_iter().map(|p| p.mean().unwrap()).collect();
        assert!((means[0] - means[1]).abs() < 1e-5 && (means[1] - means[2]).abs() < 1e-5, "{means:?}");
        assert!(rgb.sum() > 0.0 && before > 0.0);
    }

    #[test]
    fn camera_supervision_compares_the_curves_before_their_gains() {
        let dev = Device::Cpu;
        let truth = Tensor::new(&[[[0.2f32, 0.8], [0.5, 0.5], [0.9, 0.1]]], &dev).unwrap();
        let gains = Tensor::new(&[[1.2f32, 1.0, 0.8]], &dev).unwrap();
        let est = |curves: &Tensor| crate::models::usr::CameraEstimate { response: curves.broadcast_mul(&gains.unsqueeze(2).unwrap()).unwrap(), weights: Tensor::zeros((1, 3, 2), DType::F32, &dev).unwrap(), gains: gains.clone() };
        let exact = camera_supervision(&est(&truth), &truth).unwrap().to_scalar::<f32>().unwrap();
        assert!(exact.abs() < 1e-6, "{exact}");
        let off = (&truth + 0.06).unwrap();
        let l = camera_supervision(&est(&off), &truth).unwrap().to_scalar::<f32>().unwrap();
        assert!((l - 0.06).abs() < 1e-5, "{l}");
    }

    #[test]
    fn ablations_zero_their_terms_and_refuse_unknown_names() {
        let l = UsrLoss::ablated("bp, clip").unwrap();
        assert_eq!((l.back_projection, l.clip, l.smoothness), (0.0, false, 10.0));
        assert!(UsrLoss::ablated("gp").is_err());
    }
}
