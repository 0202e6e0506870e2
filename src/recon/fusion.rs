//! Fusion: a low-resolution cube and a high-resolution RGB (or multispectral) image of the same
//! scene into a high-resolution cube, by UAL (Zhang et al., CVPR 2020; [`crate::models::ual`]).
//!
//! [`fuse`] runs the paper's test phase: the pretrained fusion module gives Z̃ from X and the
//! bicubic up-sampled Y; then, on this pair only and without ground truth, the adaptation
//! module and the degradation network learn from L1(X, P·Ẑ) + L1(Y, H(Ẑ)) (eq. 4). The
//! baselines it is measured against run through the same function: bicubic up-sampling, the
//! fusion module alone (zero steps), and adaptation through the paper's predefined kernel Ĥ
//! (an 8×8 Gaussian of σ √3, not learned).

use crate::cube::Cube;
use crate::engine::JobContext;
use crate::models::ual::{self, Adaptation, Degradation, Fusion, UalConfig};
use crate::recon::card::{ModelFiles, TrainingRecord};
use crate::spectral::degrade::{upsample_bicubic, BlurKernel};
use crate::train::loss::loss_fn;
use crate::train::optim::AdamW;
use crate::train::seeded::SeededInit;
use crate::train::world::Protocol;
use crate::train::Loss;
use crate::{bail_invalid, Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use crossbeam_channel::Sender;
use ndarray::{Array2, Array3};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The card beside a fusion module's weights (`models/ual-fusion.json`). A fusion model takes
/// two images, so it is not one of the RGB → cube architectures of `models::Architecture`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FusionCard {
    pub name: String,
    /// Always "ual".
    pub architecture: String,
    pub config: UalConfig,
    pub wavelengths: Vec<f32>,
    /// The down-sampling factor it was pretrained for.
    #[serde(default)]
    pub scale: Option<usize>,
    pub data: String,
    pub command: String,
    #[serde(default)]
    pub training: Option<TrainingRecord>,
    #[serde(default)]
    pub metrics: Option<serde_json::Value>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// A pretrained fusion module and its card.
pub struct FusionModel {
    pub card: FusionCard,
    pub fusion: Fusion,
}

impl FusionModel {
    /// `path`: NAME, NAME.json or NAME.safetensors.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let files = ModelFiles::resolve(path)?;
        let text = std::fs::read_to_string(&files.card).map_err(|e| Error::io(&files.card, e))?;
        let card: FusionCard = serde_json::from_str(&text).map_err(|e| Error::format(&files.card, format!("not a fusion model card: {e}")))?;
        if card.architecture != "ual" {
            return Err(Error::format(&files.card, format!("architecture '{}' is not a fusion model (expected 'ual')", card.architecture)));
        }
        if card.wavelengths.len() != card.config.bands {
            return Err(Error::format(&files.card, format!("{} wavelengths for {} bands", card.wavelengths.len(), card.config.bands)));
        }
        // SAFETY: mapped read-only; candle copies each tensor out as it is built.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&files.weights], DType::F32, device) }
            .map_err(|e| Error::format(&files.weights, format!("cannot read weights: {e}")))?;
        let fusion = Fusion::new(&card.config, vb.pp("fusion")).map_err(|e| Error::format(&files.weights, format!("weights do not fit the card's config: {e}")))?;
        Ok(Self { card, fusion })
    }
}

/// The shipped (or user-installed) pretrained fusion module: `ual-fusion` in the model folders.
pub fn shipped_model() -> Option<std::path::PathBuf> {
    crate::recon::registry::model_dirs().into_iter().map(|d| d.join("ual-fusion.json")).find(|p| p.is_file())
}

/// Adaptation steps `fuse` runs unless told otherwise: what a 256 × 256, ×8 pair gets in 5
/// minutes on 2 cores with the shipped module (`bench fusion`); the paper runs 1500, and the
/// loss has mostly settled by 400 (README, Fusion).
pub const DEFAULT_STEPS: usize = 400;

/// Whether and at which rank `fuse` uses the scene-subspace layer ([`SceneSubspace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubspaceChoice {
    /// The default: the image's channels + 1 where the camera sees every band of the cube
    /// (README, Fusion: there UAL with the layer beats its module's output and bicubic
    /// up-sampling on PSNR and SAM, and the paper's UAL does not on SAM); off where it is blind
    /// to some (a 400–2450 nm cube under an RGB camera), since the layer would then invent the
    /// bands the camera cannot see from the ones it can.
    #[default]
    Auto,
    /// The paper's UAL.
    Off,
    Rank(usize),
}

impl SubspaceChoice {
    /// `auto`, `off` (or 0) or a rank.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(SubspaceChoice::Auto),
            "off" | "0" => Ok(SubspaceChoice::Off),
            rank => rank.parse().map(SubspaceChoice::Rank).map_err(|_| Error::invalid(format!("--subspace takes auto, off or a rank, got '{rank}'"))),
        }
    }

    /// The rank for a pair photographed through `camera` (channels × the cube's bands).
    pub fn rank(self, camera: &Array2<f32>) -> Option<usize> {
        match self {
            SubspaceChoice::Off => None,
            SubspaceChoice::Rank(r) => Some(r),
            SubspaceChoice::Auto => camera_sees_every_band(camera).then_some(camera.nrows() + 1),
        }
    }

    pub fn name(self) -> String {
        match self {
            SubspaceChoice::Auto => "auto".into(),
            SubspaceChoice::Off => "off".into(),
            SubspaceChoice::Rank(r) => format!("rank {r}"),
        }
    }
}

/// Whether every band gets at least 1e-3 of the camera's strongest band's total response.
pub fn camera_sees_every_band(camera: &Array2<f32>) -> bool {
    let totals = camera.sum_axis(ndarray::Axis(0));
    let max = totals.iter().fold(0f32, |m, v| m.max(*v));
    max > 0.0 && totals.iter().all(|v| *v >= 1e-3 * max)
}

/// How the blur between the latent cube and the low-resolution one is modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelMode {
    /// Learned by the degradation network (the paper's UAL).
    Learned,
    /// The paper's predefined Ĥ: an 8×8 Gaussian of σ √3, fixed.
    Predefined,
}

#[derive(Debug, Clone, Serialize)]
pub struct FuseOptions {
    pub scale: usize,
    /// Adaptation steps; 0: the pretrained fusion module alone.
    pub steps: usize,
    pub kernel: KernelMode,
    /// Learning rate and weight decay of the adaptation module (the paper: 9e-5, 1e-3; the
    /// decay is an L2 term in the gradient, as PyTorch's Adam applies it).
    pub lr_adapt: f64,
    pub wd_adapt: f64,
    /// Learning rate and weight decay of the degradation network (the paper: 1e-4, 1e-5).
    pub lr_kernel: f64,
    pub wd_kernel: f64,
    /// Channels and depth of the adaptation module (None: the fusion module's, or the paper's
    /// 64 and 3 without one).
    pub adaptation: Option<(usize, usize)>,
    /// Rank of the scene-subspace consistency layer ([`SceneSubspace`], not in the paper) the
    /// fusion module's output and every adapted cube pass through; None: the paper's UAL.
    pub subspace: Option<usize>,
    pub seed: u64,
}

impl FuseOptions {
    pub fn new(scale: usize, steps: usize) -> Self {
        FuseOptions { scale, steps, kernel: KernelMode::Learned, lr_adapt: 9e-5, wd_adapt: 1e-3, lr_kernel: 1e-4, wd_kernel: 1e-5, adaptation: None, subspace: None, seed: 1 }
    }

    /// These options with the learning rates given (None keeps the paper's).
    pub fn with_rates(mut self, lr_adapt: Option<f64>, lr_kernel: Option<f64>) -> Result<Self> {
        for (name, lr) in [("adaptation", lr_adapt), ("kernel", lr_kernel)] {
            if let Some(lr) = lr {
                if !(lr.is_finite() && lr > 0.0 && lr < 1.0) {
                    bail_invalid!("the {name} learning rate must be in (0, 1), got {lr}");
                }
            }
        }
        self.lr_adapt = lr_adapt.unwrap_or(self.lr_adapt);
        self.lr_kernel = lr_kernel.unwrap_or(self.lr_kernel);
        Ok(self)
    }
}

/// One adaptation step's loss terms.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FuseStep {
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
    /// L1(X, P·Ẑ).
    pub loss_msi: f64,
    /// L1(Y, H(Ẑ)).
    pub loss_lr: f64,
}

pub struct Fused {
    /// Ẑ on the low-resolution cube's wavelengths, clipped at zero.
    pub cube: Cube,
    /// The fusion module's Z̃ alone (through the scene-subspace layer when there is one).
    pub rough: Cube,
    /// The blur the degradation network ended with, normalised to sum one (K×K, centred at
    /// ⌊K/2⌋); the predefined Ĥ framed alike when it was not learned.
    pub kernel: Array2<f32>,
    pub steps: Vec<FuseStep>,
    /// The rank of the scene-subspace layer it went through (None: none).
    pub subspace: Option<usize>,
}

/// Bicubic up-sampling of `lr` by `scale` to `rows`×`cols`: the first baseline.
pub fn bicubic(lr: &Cube, scale: usize, rows: usize, cols: usize) -> Result<Cube> {
    let mut cube = Cube::new(upsample_bicubic(lr.data.view(), scale, rows, cols)?, lr.wavelengths.clone())?;
    cube.meta.description = Some(format!("bicubic up-sampling ×{scale}"));
    Ok(cube)
}

/// Checks that `hr` (msi_bands, rows, cols) and `lr` (bands, rows/s, cols/s) are one pair.
fn check_pair(hr: &Array3<f32>, lr: &Cube, camera: &Array2<f32>, scale: usize) -> Result<()> {
    let (msi, rows, cols) = hr.dim();
    if !(2..=Degradation::kernel_side(scale)).contains(&scale) {
        bail_invalid!("fusion scale must be in 2..=32 (the degradation network's kernel is 32×32), got {scale}");
    }
    if hr.iter().any(|v| !v.is_finite()) {
        bail_invalid!("the high-resolution image has non-finite values (NaN or infinity)");
    }
    if lr.data.iter().any(|v| !v.is_finite()) {
        bail_invalid!("the low-resolution cube has non-finite values (NaN or infinity)");
    }
    if rows / scale != lr.rows() || cols / scale != lr.cols() || rows < scale || cols < scale {
        bail_invalid!(
            "the high-resolution image is {rows}×{cols} px and the cube {}×{} px: at ×{scale} the cube should be {}×{}",
            lr.rows(),
            lr.cols(),
            rows / scale,
            cols / scale
        );
    }
    if camera.dim() != (msi, lr.bands()) {
        bail_invalid!("the camera is {}×{} but the pair has {msi} image channels and {} bands", camera.nrows(), camera.ncols(), lr.bands());
    }
    Ok(())
}

/// `a` (c, h, w) as a (1, c, h, w) tensor on `device`.
pub(crate) fn tensor3(a: &Array3<f32>, device: &Device) -> Result<Tensor> {
    let (c, h, w) = a.dim();
    Ok(Tensor::from_iter(a.iter().copied(), device)?.reshape((1, c, h, w))?)
}

/// The first image of a (n, c, h, w) tensor as (c, h, w).
pub(crate) fn array3(t: &Tensor) -> Result<Array3<f32>> {
    let (_, c, h, w) = t.dims4()?;
    Ok(Array3::from_shape_vec((c, h, w), t.flatten_all()?.to_vec1::<f32>()?).map_err(|e| Error::invalid(e.to_string()))?)
}

/// The kernel `k` (1, 1, K, K) normalised to sum one (as it is when its sum is not positive).
fn normalised_kernel(k: &Tensor) -> Result<Array2<f32>> {
    let (_, _, r, c) = k.dims4()?;
    let a = Array2::from_shape_vec((r, c), k.flatten_all()?.to_vec1::<f32>()?).map_err(|e| Error::invalid(e.to_string()))?;
    let sum: f32 = a.sum();
    Ok(if sum > 1e-12 { a.mapv(|v| v / sum) } else { a })
}

/// UAL's test phase on one pair: `hr` (msi_bands, rows, cols) linear, `lr` the low-resolution
/// cube, `camera` (msi_bands × bands) on `lr`'s wavelengths. `fusion` None: no fusion module
/// (the paper's "w/o fusion" ablation: the adaptation starts from Y↑).
pub fn fuse(
    fusion: Option<&FusionModel>,
    hr: &Array3<f32>,
    lr: &Cube,
    camera: &Array2<f32>,
    opts: &FuseOptions,
    device: &Device,
    events: Option<&Sender<FuseStep>>,
    job: &JobContext,
) -> Result<Fused> {
    check_pair(hr, lr, camera, opts.scale)?;
    // Every step maps H×W to ⌊H/s⌋×⌊W/s⌋, so the result keeps the RGB's size.
    let (_, rows, cols) = hr.dim();
    let mut config = match fusion {
        Some(m) => {
            if m.card.config.bands != lr.bands() || m.card.config.msi_bands != hr.dim().0 {
                bail_invalid!(
                    "the fusion model takes {} image channels and {} bands; this pair has {} and {}",
                    m.card.config.msi_bands,
                    m.card.config.bands,
                    hr.dim().0,
                    lr.bands()
                );
            }
            if m.card.wavelengths.iter().zip(&lr.wavelengths).any(|(a, b)| (a - b).abs() > 0.5) {
                bail_invalid!("the fusion model was trained at {:?} nm, the cube has other wavelengths", (m.card.wavelengths.first(), m.card.wavelengths.last()));
            }
            m.card.config.clone()
        }
        None => UalConfig { bands: lr.bands(), msi_bands: hr.dim().0, ..UalConfig::default() },
    };
    if let Some((width, depth)) = opts.adaptation {
        (config.width, config.depth) = (width, depth);
    }
    job.report(0.0, "fusing");
    let x = tensor3(hr, device)?;
    let y = tensor3(&lr.data, device)?;
    let y_up = tensor3(&upsample_bicubic(lr.data.view(), opts.scale, rows, cols)?, device)?;
    let rough = match fusion {
        Some(m) => m.fusion.forward(&x, &y_up)?.detach(),
        None => y_up.clone(),
    };
    let subspace = opts.subspace.map(|rank| SceneSubspace::new(&lr.data, camera, rank, device)).transpose()?;
    let consistent = |z: Tensor| -> Result<Tensor> {
        match &subspace {
            Some(s) => s.apply(&z, &x),
            None => Ok(z),
        }
    };
    let rough = consistent(rough)?;
    let p = Tensor::from_iter(camera.iter().copied(), device)?.reshape(camera.dim())?;
    let varmap = VarMap::new();
    let adapt = Adaptation::new(&config, VarBuilder::from_backend(Box::new(SeededInit { map: varmap.clone(), seed: opts.seed }), DType::F32, device.clone()).pp("adapt"))?;
    let degradation = Degradation::new(opts.scale, device)?;
    let predefined = match opts.kernel {
        KernelMode::Learned => None,
        KernelMode::Predefined => {
            let side = Degradation::kernel_side(opts.scale);
            let k = BlurKernel::gaussian(8, 3f64.sqrt())?.framed(side)?;
            Some(Tensor::from_iter(k.iter().copied(), device)?.reshape((1, 1, side, side))?)
        }
    };
    let adapt_vars: HashMap<String, Var> = varmap.data().lock().unwrap_or_else(|e| e.into_inner()).clone();
    // PyTorch's Adam with weight decay, as the paper: an L2 term in the gradient.
    let mut optim_adapt = AdamW::new(adapt_vars, opts.wd_adapt)?;
    optim_adapt.l2_coupled = true;
    let mut optim_kernel = AdamW::new(HashMap::from([("kernel".to_string(), degradation.var().clone())]), opts.wd_kernel)?;
    optim_kernel.l2_coupled = true;
    let mut steps = Vec::with_capacity(opts.steps);
    let mut z = rough.clone();
    for step in 0..opts.steps {
        job.check()?;
        z = consistent(adapt.forward(&rough)?)?;
        let down = match &predefined {
            Some(k) => ual::degrade(&z, k, opts.scale)?,
            None => degradation.forward(&z)?,
        };
        let loss_lr = loss_fn(Loss::L1, &down, &y)?;
        let loss_msi = loss_fn(Loss::L1, &ual::project(&z, &p)?, &x)?;
        let loss = (&loss_lr + &loss_msi)?;
        let grads = loss.backward()?;
        optim_adapt.step(&grads, opts.lr_adapt)?;
        if predefined.is_none() {
            optim_kernel.step(&grads, opts.lr_kernel)?;
        }
        let record = FuseStep {
            step: step + 1,
            total_steps: opts.steps,
            loss: f64::from(loss.to_scalar::<f32>()?),
            loss_msi: f64::from(loss_msi.to_scalar::<f32>()?),
            loss_lr: f64::from(loss_lr.to_scalar::<f32>()?),
        };
        if !record.loss.is_finite() {
            bail_invalid!("adaptation diverged at step {}: loss is {}", step + 1, record.loss);
        }
        if let Some(tx) = events {
            let _ = tx.send(record);
        }
        steps.push(record);
        job.report((step + 1) as f32 / opts.steps as f32, "adapting");
    }
    if opts.steps > 0 {
        // The output of the last step's updated weights, as the paper's last epoch.
        z = consistent(adapt.forward(&rough)?)?;
    }
    let kernel = normalised_kernel(&match &predefined {
        Some(k) => k.clone(),
        None => degradation.var().as_tensor().clone(),
    })?;
    let mut cube = Cube::new(array3(&z)?.mapv(|v| v.max(0.0)), lr.wavelengths.clone())?;
    let layer = opts.subspace.map(|rank| format!(", scene subspace of rank {rank}")).unwrap_or_default();
    cube.meta.description = Some(format!("UAL fusion ×{}, {} adaptation steps, {:?} kernel{layer}", opts.scale, opts.steps, opts.kernel).to_lowercase());
    let rough = Cube::new(array3(&rough)?.mapv(|v| v.max(0.0)), lr.wavelengths.clone())?;
    Ok(Fused { cube, rough, kernel, steps, subspace: opts.subspace })
}

/// The scene-subspace consistency layer (not in the paper; README, Fusion): Z ↦ M·Z + N·X at
/// every pixel. It takes each spectrum into the span E of the low-resolution cube's first `rank`
/// principal directions (eigenvectors of its uncentred second moment Σ y·yᵀ: the low-rank
/// spectral prior of classical fusion methods, which a blurred, noisy cube still gives) and
/// moves it, inside that span, the least distance that makes its image through the camera P
/// equal the observed X: a = Eᵀz + Q·(x − P·E·Eᵀz), Q = (PE)ᵀ((PE)(PE)ᵀ + λI)⁻¹, λ 1e-6 of
/// PE's mean energy per channel (so a camera nearly blind to the span cannot blow noise up).
/// With `rank` equal to the image's channels the result no longer depends on Z at all: the
/// classical baseline [`Variant::Subspace`].
pub struct SceneSubspace {
    pub rank: usize,
    /// M = E(I − Q·PE)Eᵀ (bands × bands) and N = E·Q (bands × channels), as tensors.
    m: Tensor,
    n: Tensor,
}

impl SceneSubspace {
    /// `lr` (bands, rows, cols), `camera` (channels × bands) on its wavelengths.
    pub fn new(lr: &Array3<f32>, camera: &Array2<f32>, rank: usize, device: &Device) -> Result<Self> {
        use crate::recon::linalg::{solve_spd, symmetric_eigen};
        let (bands, rows, cols) = lr.dim();
        if !(1..=bands).contains(&rank) {
            bail_invalid!("the scene subspace's rank must be in 1..={bands} (the cube's bands), got {rank}");
        }
        if camera.ncols() != bands {
            bail_invalid!("the camera has {} bands, the cube {bands}", camera.ncols());
        }
        let y = Array2::from_shape_fn((bands, rows * cols), |(b, i)| f64::from(lr[[b, i / cols, i % cols]]));
        let (_, vectors) = symmetric_eigen(&y.dot(&y.t()));
        let e = vectors.slice(ndarray::s![.., ..rank]).to_owned();
        let pe = camera.mapv(f64::from).dot(&e);
        let channels = camera.nrows();
        let gram = pe.dot(&pe.t());
        let seen = gram.diag().sum();
        let blind = || Error::invalid("the camera sees nothing of the cube's spectral subspace (its response is zero there)");
        if !(seen > 1e-12 * camera.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>()) {
            return Err(blind());
        }
        let inverse = solve_spd(&(&gram + &(Array2::<f64>::eye(channels) * (1e-6 * seen / channels as f64))), &Array2::eye(channels)).ok_or_else(blind)?;
        let q = pe.t().dot(&inverse);
        let m = e.dot(&(Array2::<f64>::eye(rank) - q.dot(&pe))).dot(&e.t());
        let n = e.dot(&q);
        let tensor = |a: &Array2<f64>| -> Result<Tensor> { Ok(Tensor::from_iter(a.iter().map(|v| *v as f32), device)?.reshape(a.dim())?) };
        Ok(SceneSubspace { rank, m: tensor(&m)?, n: tensor(&n)? })
    }

    /// M·z + N·x for `z` (n, bands, H, W) and the image `x` (n, channels, H, W), in `z`'s dtype.
    pub fn apply(&self, z: &Tensor, x: &Tensor) -> Result<Tensor> {
        let (m, n) = (self.m.to_dtype(z.dtype())?, self.n.to_dtype(z.dtype())?);
        Ok((ual::project(z, &m)? + ual::project(&x.to_dtype(z.dtype())?, &n)?)?)
    }
}

/// Cosine similarity of two kernels of the same frame: 1 for the same shape, whatever their
/// sums; how "the learned kernel resembles the true one" is measured.
pub fn kernel_similarity(a: &Array2<f32>, b: &Array2<f32>) -> Result<f64> {
    if a.dim() != b.dim() {
        bail_invalid!("kernels of {:?} and {:?} are not in one frame", a.dim(), b.dim());
    }
    let dot: f64 = a.iter().zip(b.iter()).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |k: &Array2<f32>| k.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
    Ok(dot / (norm(a) * norm(b)).max(1e-30))
}

/// What an evaluation runs on each pair: the baselines, UAL, and the paper's ablations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Bicubic up-sampling of the low-resolution cube.
    Bicubic,
    /// The pretrained fusion module alone ("UAL w/o adaptation").
    FusionOnly,
    /// Fusion module, adaptation and the learned kernel: UAL.
    Ual,
    /// Adaptation through the predefined Ĥ ("UAL (Ĥ)").
    UalPredefined,
    /// Adaptation from the bicubic cube, no fusion module ("UAL w/o fusion").
    UalNoFusion,
    /// Classical, not learned: every pixel's spectrum in the scene subspace of rank equal to
    /// the image's channels, solved from its RGB ([`SceneSubspace`]).
    Subspace,
    /// The fusion module's output through the scene-subspace layer of rank channels + 1.
    FusionOnlySubspace,
    /// UAL with the scene-subspace layer of rank channels + 1 on every adapted cube.
    UalSubspace,
}

impl Variant {
    pub const ALL: [Variant; 8] =
        [Variant::Bicubic, Variant::Subspace, Variant::FusionOnly, Variant::Ual, Variant::UalPredefined, Variant::UalNoFusion, Variant::FusionOnlySubspace, Variant::UalSubspace];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Bicubic => "bicubic",
            Variant::FusionOnly => "fusion-only",
            Variant::Ual => "ual",
            Variant::UalPredefined => "ual-predefined-kernel",
            Variant::UalNoFusion => "ual-no-fusion",
            Variant::Subspace => "subspace",
            Variant::FusionOnlySubspace => "fusion-only-subspace",
            Variant::UalSubspace => "ual-subspace",
        }
    }
}

/// An evaluation on test scenes of the world (by default with held-out spectra, lights and
/// cameras), each degraded by one of the test kernels in turn ([`BlurKernel::test_set`]), never
/// Gaussian.
#[derive(Debug, Clone, Serialize)]
pub struct FusionEvalConfig {
    pub scenes: usize,
    pub size: usize,
    pub scale: usize,
    pub snr_db: f64,
    pub steps: usize,
    /// Learning rates of the adaptation module and of the degradation network.
    pub rates: (f64, f64),
    pub variants: Vec<Variant>,
    /// The scenes' world: a protocol's test world, or None for every axis held out (spectra,
    /// lights and cameras the pretraining never saw).
    pub protocol: Option<Protocol>,
}

impl FusionEvalConfig {
    /// What the scenes are made of, in words.
    pub fn world_name(&self) -> String {
        match self.protocol {
            None => "held-out spectra, lights and cameras".into(),
            Some(p) => format!("the {} world", p.name()),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VariantScore {
    pub variant: String,
    pub mrae: f64,
    pub rmse: f64,
    pub psnr: f64,
    pub ssim: f64,
    pub sam_deg: f64,
    /// Mean cosine similarity of the kernel it ended with and the true one (None: no kernel).
    pub kernel_similarity: Option<f64>,
    pub seconds_per_image: f64,
    pub images: usize,
}

/// Scores every variant of `cfg` on the same pairs (means over scenes).
pub fn evaluate(model: Option<&FusionModel>, cfg: &FusionEvalConfig, device: &Device, job: &JobContext) -> Result<Vec<VariantScore>> {
    use crate::train::world::{scene, Side, World, TEST_SEED0};
    if cfg.scenes == 0 {
        bail_invalid!("fusion evaluation needs at least one scene");
    }
    let world = cfg.protocol.map_or(World { spectra: Side::Held, light: Side::Held, camera: Side::Held }, Protocol::test_world);
    let kernels = BlurKernel::test_set();
    let mut out: Vec<VariantScore> = cfg.variants.iter().map(|v| VariantScore { variant: v.name().into(), ..Default::default() }).collect();
    let n = cfg.scenes as f64;
    for i in 0..cfg.scenes {
        let s = scene(world, TEST_SEED0 + i as u64, cfg.size)?;
        let (kernel_name, kernel) = &kernels[i % kernels.len()];
        let degradation = crate::spectral::degrade::Degradation { kernel: kernel.clone(), scale: cfg.scale, snr_db: Some(cfg.snr_db), seed: TEST_SEED0 + i as u64 };
        let lr = Cube::on_default_grid(degradation.apply(s.cube.view())?)?;
        let camera = s.camera.on_grid(&lr.wavelengths)?;
        let hr = crate::spectral::render::project(camera.view(), s.cube.view())?;
        let (rows, cols) = (cfg.size / cfg.scale * cfg.scale, cfg.size / cfg.scale * cfg.scale);
        let truth = Cube::on_default_grid(s.cube.slice(ndarray::s![.., ..rows, ..cols]).to_owned())?;
        let framed_truth = kernel.framed(Degradation::kernel_side(cfg.scale))?;
        for (variant, score) in cfg.variants.iter().zip(out.iter_mut()) {
            job.check()?;
            job.report(i as f32 / cfg.scenes as f32, &format!("scene {}/{} ({kernel_name}): {}", i + 1, cfg.scenes, variant.name()));
            let start = std::time::Instant::now();
            let mut opts = FuseOptions::new(cfg.scale, cfg.steps);
            (opts.lr_adapt, opts.lr_kernel) = cfg.rates;
            // Without a fusion module the adaptation module is still the model's size.
            opts.adaptation = model.map(|m| (m.card.config.width, m.card.config.depth));
            let channels = hr.dim().0;
            let (cube, kernel) = match variant {
                Variant::Bicubic => (bicubic(&lr, cfg.scale, rows, cols)?, None),
                _ => {
                    let fusion = if matches!(variant, Variant::UalNoFusion | Variant::Subspace) {
                        None
                    } else {
                        Some(model.ok_or_else(|| Error::invalid("this variant needs a pretrained fusion module"))?)
                    };
                    if matches!(variant, Variant::FusionOnly | Variant::FusionOnlySubspace | Variant::Subspace) {
                        opts.steps = 0;
                    }
                    if *variant == Variant::UalPredefined {
                        opts.kernel = KernelMode::Predefined;
                    }
                    opts.subspace = match variant {
                        Variant::Subspace => Some(channels),
                        Variant::FusionOnlySubspace | Variant::UalSubspace => Some(channels + 1),
                        _ => None,
                    };
                    let fused = fuse(fusion, &hr, &lr, &camera, &opts, device, None, &JobContext::silent())?;
                    let learned = matches!(variant, Variant::Ual | Variant::UalNoFusion | Variant::UalSubspace).then_some(fused.kernel);
                    (fused.cube, learned)
                }
            };
            let m = crate::metrics::score(&cube, &truth, None)?.metrics;
            score.mrae += m.mrae / n;
            score.rmse += m.rmse / n;
            score.psnr += m.psnr / n;
            score.ssim += m.ssim / n;
            score.sam_deg += m.sam_deg / n;
            score.seconds_per_image += start.elapsed().as_secs_f64() / n;
            if let Some(k) = kernel {
                *score.kernel_similarity.get_or_insert(0.0) += kernel_similarity(&k, &framed_truth)? / n;
            }
            score.images += 1;
        }
    }
    Ok(out)
}
