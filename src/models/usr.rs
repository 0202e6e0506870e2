//! USR: semantic-embedded unsupervised spectral reconstruction from single RGB images in the
//! wild (Zhu, Liu, Hou, Zeng, Zhang, ICCV 2021).
//!
//! Four networks, as the paper describes them (section 3):
//! - [`CameraNet`] M, the camera response estimator: features of the RGB X pooled to one vector
//!   per image, read as W ∈ R^{3×N}; each channel's curve is a convex combination of a fixed
//!   dictionary of N camera responses, ĉ_i = Σ_j softmax(W_i)_j · C_j(i) (eq. 5), rescaled by
//!   the white-balance gain mean_j σ(W_ij) / mean_kj σ(W_kj) (eq. 6).
//! - [`Generator`] G: a coarse cube Ỹ¹ = G⁰(X), refined in T − 1 stages that each see the
//!   re-projection error, Ỹ^{t+1} = Ỹ^t + G^t(C_o·Ỹ^t − X) (eq. 3), then LeakyReLU (eq. 4).
//! - [`Discriminator`] D: one logit per mean-normalised cube, real or generated.
//! - [`Semantic`], the semantic embedding: features of X (E1) and of Ỹ (E2), fused (SE) into a
//!   per-pixel class map; used only in training.
//!
//! Where the paper is silent, the authors' public code decides: every sub-CNN is built of
//! densely connected separable blocks (a 1×1 convolution, then a depthwise k×k one, each with
//! ReLU); M has four stages of two such blocks with a 2×2 max-pool after each, then three
//! more blocks, a block to 3N channels and a global average; each generator stage is a 3×3
//! convolution to `bands` channels then five dense blocks of width 2·bands (the last back to
//! `bands`, without its final ReLU); the LeakyReLU slope is 0.001. Departures, each for a
//! reason: G⁰ and the refinement stages share one architecture (the code's; the paper says
//! they differ only in what they see) and the refinement stages do not centre their inputs
//! (the code's per-pixel channel centring would hide the grey part of the error); D is a
//! plain strided CNN with LeakyReLU (the code's dense blocks with batch norm and Swish cost
//! several times more on a CPU); E1 is a small CNN trained with the rest, because no
//! pretrained scene parser can be had here, and the classes are the world's materials
//! ([`crate::train::world::Material`]); the code's dropouts are left out.

use crate::nn::act::leaky_relu;
use crate::nn::conv::Conv;
use crate::nn::depthwise::depthwise_conv2d;
use crate::nn::layers::max_pool2x2;
use candle_core::{bail, DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsrConfig {
    /// Bands of the generated cube.
    pub bands: usize,
    /// Cameras in the response dictionary (N; 28 in the paper).
    pub dictionary: usize,
    /// Generation stages (T = 4 in the paper): one coarse, T − 1 refinements.
    pub stages: usize,
    /// Width of the generator's dense blocks (2·bands in the authors' code).
    pub growth: usize,
    /// Dense blocks per generator stage (5 in the authors' code).
    pub blocks: usize,
    /// Base width of the camera estimator (its stages are w/4, w/2, w, w, then 2w; 64 in the
    /// authors' code).
    pub camera_width: usize,
    /// Side the camera estimator sees: a picture is resized to it (nearest) before M.
    pub camera_view: usize,
    /// Width of the discriminator's first layer.
    pub disc_width: usize,
    /// Semantic classes.
    pub classes: usize,
    /// Width of the semantic branch.
    pub semantic_width: usize,
    /// Slope of the final LeakyReLU (0.001 in the authors' code).
    pub slope: f64,
}

impl Default for UsrConfig {
    fn default() -> Self {
        UsrConfig {
            bands: 31,
            dictionary: 28,
            stages: 4,
            growth: 62,
            blocks: 5,
            camera_width: 64,
            camera_view: 64,
            disc_width: 32,
            classes: crate::train::world::Material::COUNT,
            semantic_width: 32,
            slope: 0.001,
        }
    }
}

impl UsrConfig {
    pub fn check(&self) -> Result<()> {
        let ok = (1..=1024).contains(&self.bands)
            && (1..=1024).contains(&self.dictionary)
            && (1..=16).contains(&self.stages)
            && (1..=1024).contains(&self.growth)
            && (1..=16).contains(&self.blocks)
            && (4..=1024).contains(&self.camera_width)
            && (16..=4096).contains(&self.camera_view)
            && self.camera_view % 16 == 0
            && (1..=1024).contains(&self.disc_width)
            && (1..=256).contains(&self.classes)
            && (1..=1024).contains(&self.semantic_width)
            && (0.0..1.0).contains(&self.slope);
        if !ok {
            bail!("usr: config out of range ({self:?}): camera_view must be a multiple of 16, widths positive")
        }
        Ok(())
    }
}

/// A separable block: 1×1 convolution (`pw`), ReLU, depthwise k×k convolution (`dw.weight`,
/// `dw.bias`), ReLU unless it is a last block.
#[derive(Debug, Clone)]
struct SepBlock {
    pw: Conv,
    dw: Tensor,
    dw_bias: Option<Tensor>,
    relu_out: bool,
}

impl SepBlock {
    fn new(c_in: usize, c_out: usize, k: usize, bias: bool, relu_out: bool, vb: VarBuilder) -> Result<Self> {
        let pw = Conv::pytorch_default(c_in, c_out, 1, 0, bias, vb.pp("pw"))?;
        let bound = 1.0 / ((k * k) as f64).sqrt();
        let dw = vb.pp("dw").get_with_hints((c_out, 1, k, k), "weight", candle_nn::Init::Uniform { lo: -bound, up: bound })?;
        let dw_bias = if bias { Some(vb.pp("dw").get_with_hints(c_out, "bias", candle_nn::Init::Uniform { lo: -bound, up: bound })?) } else { None };
        Ok(Self { pw, dw, dw_bias, relu_out })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = leaky_relu(&self.pw.forward(x)?, 0.0)?;
        let mut h = depthwise_conv2d(&h, &self.dw)?;
        if let Some(b) = &self.dw_bias {
            h = h.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?;
        }
        if self.relu_out {
            leaky_relu(&h, 0.0)
        } else {
            Ok(h)
        }
    }
}

/// Densely connected blocks: block i sees the input and every earlier block's output,
/// concatenated; the last block's output is the result. Tensors `N.*` for block N.
#[derive(Debug, Clone)]
struct Dense {
    blocks: Vec<SepBlock>,
}

impl Dense {
    /// `widths[i]` is block i's output width; the last block has no final ReLU when `linear_out`.
    fn new(c_in: usize, widths: &[usize], k: usize, bias: bool, linear_out: bool, vb: VarBuilder) -> Result<Self> {
        let mut blocks = Vec::with_capacity(widths.len());
        let mut seen = c_in;
        for (i, &w) in widths.iter().enumerate() {
            let last = i + 1 == widths.len();
            blocks.push(SepBlock::new(seen, w, k, bias, !(last && linear_out), vb.pp(i.to_string()))?);
            seen += w;
        }
        Ok(Self { blocks })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut features = vec![x.clone()];
        let mut out = x.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            let input = if i == 0 { x.clone() } else { Tensor::cat(&features, 1)? };
            out = block.forward(&input)?;
            features.push(out.clone());
        }
        Ok(out)
    }
}

/// M: camera response estimation (`camera.*`), with the fixed dictionary `camera.dictionary`
/// (N, 3, bands), each channel summing to 1.
#[derive(Debug, Clone)]
pub struct CameraNet {
    stages: Vec<Dense>,
    head: Dense,
    dictionary: Tensor,
    n: usize,
}

/// What M says of a batch of pictures.
#[derive(Debug, Clone)]
pub struct CameraEstimate {
    /// C_o (b, 3, bands): the convex combinations rescaled by the white-balance gains.
    pub response: Tensor,
    /// softmax(W) (b, 3, N): each channel's dictionary weights, summing to 1.
    pub weights: Tensor,
    /// (b, 3): each channel's gain, averaging 1 over the channels.
    pub gains: Tensor,
}

impl CameraNet {
    pub fn new(cfg: &UsrConfig, vb: VarBuilder) -> Result<Self> {
        let w = cfg.camera_width;
        let (q, h) = (w / 4, w / 2);
        let stages = vec![
            Dense::new(3, &[q, h], 5, true, false, vb.pp("stage1"))?,
            Dense::new(h, &[w, w], 5, true, false, vb.pp("stage2"))?,
            Dense::new(w, &[w, w], 3, true, false, vb.pp("stage3"))?,
            Dense::new(w, &[w, w], 3, true, false, vb.pp("stage4"))?,
        ];
        let head = Dense::new(w, &[2 * w, 2 * w, 2 * w, 3 * cfg.dictionary], 3, true, true, vb.pp("head"))?;
        let dictionary = vb.get_with_hints((cfg.dictionary, 3, cfg.bands), "dictionary", candle_nn::Init::Const(1.0 / cfg.bands as f64))?;
        Ok(Self { stages, head, dictionary, n: cfg.dictionary })
    }

    /// The dictionary (N, 3, bands).
    pub fn dictionary(&self) -> &Tensor {
        &self.dictionary
    }

    /// `x` (b, 3, h, w), sides multiples of 16 → C_o and its parts.
    pub fn forward(&self, x: &Tensor) -> Result<CameraEstimate> {
        let b = x.dim(0)?;
        let mut h = x.clone();
        for stage in &self.stages {
            h = max_pool2x2(&stage.forward(&h)?)?;
        }
        // (b, 3N, h', w') → global mean → W (b, 3, N).
        let w = self.head.forward(&h)?.mean(D::Minus1)?.mean(D::Minus1)?.reshape((b, 3, self.n))?;
        let weights = crate::nn::norm::softmax_last(&w)?;
        // σ(W) = 1 / (1 + e^{−W}); gain_i = mean_j σ(W_ij) / mean_kj σ(W_kj)   (eq. 6)
        let sig = w.neg()?.exp()?.affine(1.0, 1.0)?.recip()?;
        let per_channel = sig.mean(D::Minus1)?; // (b, 3)
        let gains = per_channel.broadcast_div(&per_channel.mean_keepdim(D::Minus1)?)?;
        // ĉ_i = Σ_j w_ij · C_j(i): (3, b, N) · (3, N, bands) → (3, b, bands) → (b, 3, bands).
        let dict = self.dictionary.transpose(0, 1)?.contiguous()?;
        let mixed = weights.transpose(0, 1)?.contiguous()?.matmul(&dict)?.transpose(0, 1)?;
        let response = mixed.broadcast_mul(&gains.unsqueeze(D::Minus1)?)?;
        Ok(CameraEstimate { response, weights, gains })
    }
}

/// One generation stage: a 3×3 convolution from 3 channels to `bands`, then dense blocks.
#[derive(Debug, Clone)]
struct Stage {
    entry: Conv,
    dense: Dense,
}

impl Stage {
    fn new(cfg: &UsrConfig, vb: VarBuilder) -> Result<Self> {
        let mut widths = vec![cfg.growth; cfg.blocks.saturating_sub(1)];
        widths.push(cfg.bands);
        Ok(Self { entry: Conv::pytorch_default(3, cfg.bands, 3, 1, false, vb.pp("entry"))?, dense: Dense::new(cfg.bands, &widths, 3, false, true, vb.pp("dense"))? })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.dense.forward(&self.entry.forward(x)?)
    }
}

/// G: the degradation-aware generator (`generator.stageN.*`).
#[derive(Debug, Clone)]
pub struct Generator {
    stages: Vec<Stage>,
    slope: f64,
}

/// C·Y per pixel: (b, 3, bands) · (b, bands, h, w) → (b, 3, h, w).
pub fn project(response: &Tensor, y: &Tensor) -> Result<Tensor> {
    crate::models::camera::per_pixel(response, y)
}

impl Generator {
    pub fn new(cfg: &UsrConfig, vb: VarBuilder) -> Result<Self> {
        let stages = (0..cfg.stages).map(|t| Stage::new(cfg, vb.pp(format!("stage{t}")))).collect::<Result<_>>()?;
        Ok(Self { stages, slope: cfg.slope })
    }

    /// `x` (b, 3, h, w) and the camera C_o (b, 3, bands) → Ỹ (b, bands, h, w).
    pub fn forward(&self, x: &Tensor, response: &Tensor) -> Result<Tensor> {
        leaky_relu(&self.forward_raw(x, response)?, self.slope)
    }

    /// Ỹ before the final LeakyReLU (training's positivity term S_pos acts on it).
    pub fn forward_raw(&self, x: &Tensor, response: &Tensor) -> Result<Tensor> {
        let mut y = self.stages[0].forward(x)?;
        for stage in &self.stages[1..] {
            let error = (project(response, &y)? - x)?;
            y = (y + stage.forward(&error)?)?;
        }
        Ok(y)
    }
}

/// D: strided 3×3 convolutions (widths w, 2w, 2w, 2w, each halving the side) with LeakyReLU
/// 0.2, a global mean and a 1×1 convolution to one logit per image (`discriminator.*`).
#[derive(Debug, Clone)]
pub struct Discriminator {
    convs: Vec<Conv>,
    out: Conv,
}

impl Discriminator {
    pub fn new(cfg: &UsrConfig, vb: VarBuilder) -> Result<Self> {
        let w = cfg.disc_width;
        let widths = [cfg.bands, w, 2 * w, 2 * w, 2 * w];
        let convs = (0..4).map(|i| Ok(Conv::pytorch_default(widths[i], widths[i + 1], 3, 1, true, vb.pp(format!("conv{i}")))?.with_stride(2))).collect::<Result<_>>()?;
        Ok(Self { convs, out: Conv::pytorch_default(2 * w, 1, 1, 0, true, vb.pp("out"))? })
    }

    /// (b, bands, h, w), already mean-normalised → logits (b).
    pub fn forward(&self, y: &Tensor) -> Result<Tensor> {
        let mut h = y.clone();
        for conv in &self.convs {
            h = leaky_relu(&conv.forward(&h)?, 0.2)?;
        }
        let pooled = h.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
        self.out.forward(&pooled)?.flatten_all()
    }
}

/// The semantic embedding (`semantic.*`): E1 on X, E2 on Ỹ (two 3×3 convolutions with ReLU
/// each), SE fusing them (a 3×3 convolution with ReLU, a 1×1 to the class logits).
#[derive(Debug, Clone)]
pub struct Semantic {
    e1: [Conv; 2],
    e2: [Conv; 2],
    fuse: Conv,
    out: Conv,
}

impl Semantic {
    pub fn new(cfg: &UsrConfig, vb: VarBuilder) -> Result<Self> {
        let s = cfg.semantic_width;
        Ok(Self {
            e1: [Conv::pytorch_default(3, s, 3, 1, true, vb.pp("e1.0"))?, Conv::pytorch_default(s, s, 3, 1, true, vb.pp("e1.1"))?],
            e2: [Conv::pytorch_default(cfg.bands, s, 3, 1, true, vb.pp("e2.0"))?, Conv::pytorch_default(s, s, 3, 1, true, vb.pp("e2.1"))?],
            fuse: Conv::pytorch_default(2 * s, s, 3, 1, true, vb.pp("se.0"))?,
            out: Conv::pytorch_default(s, cfg.classes, 1, 0, true, vb.pp("se.1"))?,
        })
    }

    /// X (b, 3, h, w) and Ỹ (b, bands, h, w) → class logits (b, classes, h, w).
    pub fn forward(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let two = |convs: &[Conv; 2], t: &Tensor| -> Result<Tensor> { leaky_relu(&convs[1].forward(&leaky_relu(&convs[0].forward(t)?, 0.0)?)?, 0.0) };
        let joined = Tensor::cat(&[two(&self.e1, x)?, two(&self.e2, y)?], 1)?;
        self.out.forward(&leaky_relu(&self.fuse.forward(&joined)?, 0.0)?)
    }
}

/// What inference needs: M and G (`camera.*`, `generator.*`).
#[derive(Debug, Clone)]
pub struct Usr {
    pub camera: CameraNet,
    pub generator: Generator,
    pub config: UsrConfig,
}

impl Usr {
    pub fn new(cfg: &UsrConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check()?;
        Ok(Self { camera: CameraNet::new(cfg, vb.pp("camera"))?, generator: Generator::new(cfg, vb.pp("generator"))?, config: cfg.clone() })
    }

    /// The picture `x` (b, 3, h, w) as M sees it: resized (nearest) to `camera_view`².
    pub fn camera_input(&self, x: &Tensor) -> Result<Tensor> {
        let v = self.config.camera_view;
        let (_, _, h, w) = x.dims4()?;
        if (h, w) == (v, v) {
            return Ok(x.clone());
        }
        let rows: Vec<u32> = (0..v).map(|i| ((i * h) / v) as u32).collect();
        let cols: Vec<u32> = (0..v).map(|i| ((i * w) / v) as u32).collect();
        let x = x.index_select(&Tensor::new(rows, x.device())?, 2)?;
        x.index_select(&Tensor::new(cols, x.device())?, 3)
    }

    /// Training's forward: the camera estimated from `x` and Ỹ before and after the final
    /// LeakyReLU.
    pub fn forward_train(&self, x: &Tensor) -> Result<(Tensor, Tensor, CameraEstimate)> {
        let est = self.camera.forward(&self.camera_input(x)?)?;
        let raw = self.generator.forward_raw(x, &est.response)?;
        Ok((leaky_relu(&raw, self.config.slope)?, raw, est))
    }

    /// Estimate the camera of `x`, then generate; `response` (b, 3, bands) skips estimation.
    pub fn forward(&self, x: &Tensor, response: Option<&Tensor>) -> Result<(Tensor, Option<CameraEstimate>)> {
        match response {
            Some(r) => Ok((self.generator.forward(x, &r.to_dtype(x.dtype())?)?, None)),
            None => {
                let est = self.camera.forward(&self.camera_input(x)?)?;
                Ok((self.generator.forward(x, &est.response)?, Some(est)))
            }
        }
    }
}

/// A dictionary as a tensor: `atoms` (N × 3 × bands, each channel summing to 1).
pub fn dictionary_tensor(atoms: &[ndarray::Array2<f32>], device: &candle_core::Device) -> Result<Tensor> {
    let (n, bands) = (atoms.len(), atoms.first().map_or(0, |a| a.ncols()));
    let values: Vec<f32> = atoms.iter().flat_map(|a| a.iter().copied()).collect();
    Tensor::from_vec(values, (n, 3, bands), device)?.to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn tiny() -> UsrConfig {
        UsrConfig { bands: 6, dictionary: 4, stages: 2, growth: 4, blocks: 2, camera_width: 8, camera_view: 16, disc_width: 4, classes: 3, semantic_width: 4, slope: 0.001 }
    }

    #[test]
    fn estimated_curves_are_convex_combinations_with_unit_mean_gains() {
        let cfg = tiny();
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let usr = Usr::new(&cfg, vb).unwrap();
        let x = Tensor::rand(0f32, 1.0, (2, 3, 32, 48), &Device::Cpu).unwrap();
        let (y, est) = usr.forward(&x, None).unwrap();
        assert_eq!(y.dims(), &[2, 6, 32, 48]);
        let est = est.unwrap();
        let w = est.weights.to_vec3::<f32>().unwrap();
        for per_image in &w {
            for channel in per_image {
                assert!((channel.iter().sum::<f32>() - 1.0).abs() < 1e-5 && channel.iter().all(|v| *v >= 0.0));
            }
        }
        let g = est.gains.to_vec2::<f32>().unwrap();
        for gains in &g {
            assert!((gains.iter().sum::<f32>() / 3.0 - 1.0).abs() < 1e-5 && gains.iter().all(|v| *v > 0.0));
        }
        // With a uniform dictionary (every atom 1/bands), each curve is gain/bands everywhere.
        let r = est.response.to_vec3::<f32>().unwrap();
        for (b, image) in r.iter().enumerate() {
            for (c, curve) in image.iter().enumerate() {
                assert!(curve.iter().all(|v| (v - g[b][c] / 6.0).abs() < 1e-5));
            }
        }
    }
}
