//! INSS: hyperspectral image synthesis with implicit neural spectral mixing (Liu, Zou, Shi,
//! "Hyperspectral Remote Sensing Image Synthesis based on Implicit Neural Spectral Mixing
//! Models", IEEE TGRS 2022).
//!
//! From an RGB picture, three parts make a cube on any band grid (section III):
//! - [`AbundanceNet`] F: a U-Net whose encoder is residual (six stages of two basic residual
//!   blocks, the first of each with stride 2), whose decoder up-samples bilinearly then
//!   convolves, with additive skips, ending in a softmax over the N_g library spectra: the
//!   abundances A (non-negative, summing to one at every pixel).
//! - The linear part L = t ⊙ R·A (eq. 2): R (bands × N_g) the library, fixed; t the learned
//!   solar-atmospheric signature, one value per band, used through a ReLU.
//! - The neural mixing model N of order K (eq. 3–5): e¹ = L, e^k = e^{k−1} ⊙ x^k, the cube
//!   S = Σ_k e^k. Each x^k = R·z^k comes from a per-pixel MLP of layers (N_g + 4·log₂D, hidden,
//!   N_g) with LeakyReLU hidden units and 0.1·tanh on its N_g outputs (the last layer, whose
//!   weights are R, maps them to bands), fed [A_p, E_p]: the pixel's abundances and the sin/cos
//!   encoding of its place in its D × D cell (eq. 7). Its weights and biases are not learned
//!   directly: the feature transform network T (reflection pad, 3×3 convolution to
//!   `transform_width` channels, ReLU, 1×1 convolution) turns the decoder feature at 1/D of the
//!   picture into every parameter of every MLP, one set per D × D cell (eq. 6).
//!
//! Where the paper is silent the authors' released code decides: widths d, 2d, 4d, 8d, 8d, 8d
//! by stage, batch norm in the residual blocks and after each decoder convolution, LeakyReLU
//! 0.2 in F, N(0, 0.02) initialisation of F's own convolutions and N(0, 0.002) of T's (so the
//! nonlinear terms start near zero), MLP parameters laid out per layer as bias then weight.
//! Departures, each for a reason: the MLP input is [A_p, E_p] as the paper says (the code feeds
//! E_p alone); the products of eq. 4–5 are element-wise as the paper writes them (the code's
//! `torch.matmul` of two (B, bands, H, W) tensors is a matrix product over space, which needs
//! square patches and mixes pixels); T has neither the code's spectral norm nor its final ReLU
//! (neither is in the paper; the ReLU would force every MLP weight to be non-negative); the
//! position is taken from the cell's centre (the paper's "relative position"; the code's from
//! its corner differs by a phase).
//!
//! Batch norm in F always normalises by the statistics of the batch it is given, at inference
//! too (the authors' code never switches F to evaluation mode, so their results are made this
//! way). Measured here why it matters: with the running statistics a model trained 300 steps on
//! 64-pixel patches (four values per channel at the deepest stage) synthesised a cube ten times
//! too bright (MRAE 13.5 against 0.60 with batch statistics), because T reads a decoder
//! feature whose running statistics are far from any one picture's. A picture is therefore
//! synthesised whole, never in tiles ([`crate::SpectralNet::whole_image`]).

use crate::nn::act::leaky_relu;
use crate::nn::batchnorm::BatchNorm2d;
use crate::nn::conv::Conv;
use crate::nn::resample::{reflect_pad1, upsample_bilinear2x};
use candle_core::{bail, Module, Result, Tensor, D};
use candle_nn::{BatchNormConfig, VarBuilder};
use serde::{Deserialize, Serialize};

/// LeakyReLU slope inside F (the authors' 0.2).
const F_SLOPE: f64 = 0.2;
/// LeakyReLU slope of the mixing MLPs' hidden layer (PyTorch's default, the authors' code).
const MLP_SLOPE: f64 = 0.01;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InssConfig {
    /// Bands of the synthesised cube (the library R is given on them).
    pub bands: usize,
    /// N_g, the library spectra the abundances are over (345 in the paper).
    pub library: usize,
    /// d, F's width at full resolution (128 in the authors' code).
    pub width: usize,
    /// Stride-2 stages of F's encoder (6 in the paper): inputs are multiples of 2^stages.
    pub stages: usize,
    /// D, the side of the cells that share one set of mixing parameters (16 in the paper): a
    /// power of two, at most 2^(stages − 1).
    pub cell: usize,
    /// K, the order of the mixing model (3 in the paper; 1 is the linear mixing model).
    pub order: usize,
    /// Hidden width of the mixing MLPs (32 in the paper).
    pub hidden: usize,
    /// Width of T's 3×3 convolution (64 in the paper).
    pub transform_width: usize,
}

impl Default for InssConfig {
    /// The paper's structure at a width a CPU trains in minutes (the authors' d is 128).
    fn default() -> Self {
        InssConfig { bands: 31, library: 345, width: 16, stages: 6, cell: 16, order: 3, hidden: 32, transform_width: 64 }
    }
}

impl InssConfig {
    pub fn check(&self) -> Result<()> {
        let ok = (1..=1024).contains(&self.bands)
            && (1..=4096).contains(&self.library)
            && (1..=512).contains(&self.width)
            && (1..=8).contains(&self.stages)
            && self.cell.is_power_of_two()
            && self.cell >= 2
            && self.cell <= 1 << (self.stages - 1)
            && (1..=6).contains(&self.order)
            && (1..=1024).contains(&self.hidden)
            && (1..=1024).contains(&self.transform_width);
        if !ok {
            bail!("inss: config out of range ({self:?}): the cell must be a power of two ≥ 2 and at most 2^(stages − 1)")
        }
        Ok(())
    }

    /// log₂ D.
    fn cell_bits(&self) -> usize {
        self.cell.trailing_zeros() as usize
    }

    /// The MLP's input: N_g abundances and 4·log₂D position features.
    pub fn mlp_input(&self) -> usize {
        self.library + 4 * self.cell_bits()
    }

    /// Parameters of one mixing MLP: (bias, weight) of its two generated layers.
    pub fn mlp_parameters(&self) -> usize {
        let (i, h, g) = (self.mlp_input(), self.hidden, self.library);
        h + i * h + g + h * g
    }

    /// F's width at encoder stage s (1-based): d, 2d, 4d, 8d, 8d, …
    fn stage_width(&self, s: usize) -> usize {
        self.width << (s - 1).min(3)
    }
}

/// A basic residual block (torchvision's BasicBlock): 3×3 conv (stride), BN, ReLU, 3×3 conv,
/// BN, plus the input (through a strided 1×1 conv and BN when the shape changes), ReLU.
#[derive(Debug, Clone)]
struct BasicBlock {
    conv1: Conv,
    bn1: BatchNorm2d,
    conv2: Conv,
    bn2: BatchNorm2d,
    shortcut: Option<(Conv, BatchNorm2d)>,
}

impl BasicBlock {
    fn new(c_in: usize, c_out: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let bn = BatchNormConfig::default();
        let conv1 = Conv::pytorch_default(c_in, c_out, 3, 1, false, vb.pp("conv1"))?.with_stride(stride);
        let bn1 = BatchNorm2d::new(c_out, bn, vb.pp("bn1"))?;
        let conv2 = Conv::pytorch_default(c_out, c_out, 3, 1, false, vb.pp("conv2"))?;
        let bn2 = BatchNorm2d::new(c_out, bn, vb.pp("bn2"))?;
        let shortcut = if stride != 1 || c_in != c_out {
            Some((Conv::pytorch_default(c_in, c_out, 1, 0, false, vb.pp("downsample.0"))?.with_stride(stride), BatchNorm2d::new(c_out, bn, vb.pp("downsample.1"))?))
        } else {
            None
        };
        Ok(Self { conv1, bn1, conv2, bn2, shortcut })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.bn1.forward_act_t(&self.conv1.forward(x)?, train, Some(0.0))?;
        let h = self.bn2.forward_t(&self.conv2.forward(&h)?, train)?;
        let short = match &self.shortcut {
            Some((conv, bn)) => bn.forward_t(&conv.forward(x)?, train)?,
            None => x.clone(),
        };
        leaky_relu(&(h + short)?, 0.0)
    }
}

/// F, the abundance U-Net (`abundance.*`).
#[derive(Debug, Clone)]
pub struct AbundanceNet {
    stem: Conv,
    /// Per encoder stage: its two residual blocks and the batch norm after them (none after
    /// the deepest).
    encoder: Vec<(BasicBlock, BasicBlock, Option<BatchNorm2d>)>,
    /// Decoder stages, deepest first: up-sample, 3×3 conv, BN, LeakyReLU.
    decoder: Vec<(Conv, BatchNorm2d)>,
    head: Conv,
    /// Which decoder output (counted from the deepest) feeds T: the one at 1/D.
    transform_level: usize,
}

/// What F gives: the abundances and the feature T reads.
pub struct AbundanceOutput {
    /// (b, N_g, h, w), softmax over the library at every pixel.
    pub abundances: Tensor,
    /// (b, 8d or less, h/D, w/D).
    pub feature: Tensor,
}

impl AbundanceNet {
    fn new(cfg: &InssConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.width;
        let stem = Conv::normal(3, d, 3, 1, true, 0.02, vb.pp("stem"))?;
        let mut encoder = Vec::with_capacity(cfg.stages);
        let mut c_in = d;
        for s in 1..=cfg.stages {
            let c = cfg.stage_width(s);
            let vb = vb.pp(format!("layer{s}"));
            let first = BasicBlock::new(c_in, c, 2, vb.pp("0"))?;
            let second = BasicBlock::new(c, c, 1, vb.pp("1"))?;
            let bn = if s < cfg.stages { Some(BatchNorm2d::new(c, BatchNormConfig::default(), vb.pp("bn"))?) } else { None };
            encoder.push((first, second, bn));
            c_in = c;
        }
        // Decoder stage j (j = stages..1) brings the map to encoder feature e_j's size and width
        // (e_1 the stem's output, e_j for j ≥ 2 stage j−1's).
        let width_of_e = |j: usize| if j == 1 { d } else { cfg.stage_width(j - 1) };
        let mut decoder = Vec::with_capacity(cfg.stages);
        for j in (1..=cfg.stages).rev() {
            let c_in = if j == cfg.stages { cfg.stage_width(cfg.stages) } else { width_of_e(j + 1) };
            let vb = vb.pp(format!("up{j}"));
            decoder.push((Conv::normal(c_in, width_of_e(j), 3, 1, true, 0.02, vb.pp("conv"))?, BatchNorm2d::new(width_of_e(j), BatchNormConfig::default(), vb.pp("bn"))?));
        }
        let head = Conv::normal(d, cfg.library, 3, 1, true, 0.02, vb.pp("head"))?;
        // d_j is at 1/2^(j−1): D = 2^(j−1) → j = log₂D + 1, the (stages − j)-th from the deepest.
        let transform_level = cfg.stages - (cfg.cell_bits() + 1);
        Ok(Self { stem, encoder, decoder, head, transform_level })
    }

    /// Channels of the feature T reads.
    fn feature_width(cfg: &InssConfig) -> usize {
        let j = cfg.cell_bits() + 1;
        if j == 1 { cfg.width } else { cfg.stage_width(j - 1) }
    }

    /// (b, 3, h, w), h and w multiples of 2^stages. Batch norm uses the batch's statistics
    /// whatever `train` says (see the module doc): the running statistics it keeps (PyTorch's
    /// tensors, saved with the model) are never read.
    pub fn forward_t(&self, x: &Tensor, _train: bool) -> Result<AbundanceOutput> {
        let train = true;
        // encoder: e_1 = stem(x), e_{s+1} = BN(blocks(LReLU(e_s)))
        let mut e = vec![self.stem.forward(x)?];
        for (first, second, bn) in &self.encoder {
            let h = leaky_relu(e.last().expect("the stem's output"), F_SLOPE)?;
            let h = second.forward_t(&first.forward_t(&h, train)?, train)?;
            e.push(match bn {
                Some(bn) => bn.forward_t(&h, train)?,
                None => h,
            });
        }
        // decoder, deepest first: d = LReLU(BN(conv(up(input)))), the input LReLU(e_deepest)
        // and then e_j + d_j (additive skips)
        let stages = self.encoder.len();
        let mut input = leaky_relu(&e[stages], F_SLOPE)?;
        let mut feature = None;
        for (i, (conv, bn)) in self.decoder.iter().enumerate() {
            let j = stages - i;
            let d = bn.forward_act_t(&conv.forward(&upsample_bilinear2x(&input)?)?, train, Some(F_SLOPE))?;
            if i == self.transform_level {
                feature = Some(d.clone());
            }
            input = (&e[j - 1] + d)?;
        }
        let logits = self.head.forward(&leaky_relu(&input, F_SLOPE)?)?;
        let abundances = candle_nn::ops::softmax(&logits, 1)?;
        Ok(AbundanceOutput { abundances, feature: feature.expect("the transform level is a decoder stage") })
    }
}

/// T, the feature transform network (`transform.*`): every mixing MLP's parameters per cell.
#[derive(Debug, Clone)]
struct TransformNet {
    conv: Conv,
    out: Conv,
}

impl TransformNet {
    fn new(cfg: &InssConfig, vb: VarBuilder) -> Result<Self> {
        let c_in = AbundanceNet::feature_width(cfg);
        let params = (cfg.order - 1) * cfg.mlp_parameters();
        let conv = Conv::normal(c_in, cfg.transform_width, 3, 0, true, 0.002, vb.pp("conv"))?;
        let out = Conv::normal(cfg.transform_width, params.max(1), 1, 0, true, 0.002, vb.pp("out"))?;
        Ok(Self { conv, out })
    }

    /// (b, c, h/D, w/D) → (b, P, h/D, w/D).
    fn forward(&self, feature: &Tensor) -> Result<Tensor> {
        let h = leaky_relu(&self.conv.forward(&reflect_pad1(feature)?)?, 0.0)?;
        self.out.forward(&h)
    }
}

/// Everything INSS makes of a batch.
pub struct InssOutput {
    /// S (b, bands, h, w): the synthesised cube.
    pub cube: Tensor,
    /// L = t ⊙ R·A (b, bands, h, w): its linear part.
    pub linear: Tensor,
    /// A (b, N_g, h, w).
    pub abundances: Tensor,
}

#[derive(Debug, Clone)]
pub struct Inss {
    cfg: InssConfig,
    abundance: AbundanceNet,
    transform: TransformNet,
    /// R (bands, N_g), fixed.
    library: Tensor,
    /// t (bands), used as ReLU(t).
    signature: Tensor,
    /// E (D², 4·log₂D): the position features of a cell's pixels, row-major.
    positions: Tensor,
}

/// The sin/cos features of every pixel of a D × D cell, row-major: for k = 1..log₂D, sin and
/// cos of 2π·p/2^k for the column offset, then for the row offset, p measured from the cell's
/// centre (eq. 7).
pub fn position_features(cell: usize) -> Vec<f32> {
    let bits = cell.trailing_zeros() as usize;
    let centre = (cell as f64 - 1.0) / 2.0;
    let mut out = Vec::with_capacity(cell * cell * 4 * bits);
    for r in 0..cell {
        for c in 0..cell {
            for k in 1..=bits {
                let period = (1usize << k) as f64;
                for p in [c as f64 - centre, r as f64 - centre] {
                    let a = 2.0 * std::f64::consts::PI * p / period;
                    out.push(a.sin() as f32);
                    out.push(a.cos() as f32);
                }
            }
        }
    }
    out
}

impl Inss {
    /// Tensors: `abundance.*` (F), `transform.*` (T), `library` (bands, N_g; fixed, written by
    /// the trainer from the shipped library on the model's grid) and `signature` (bands).
    pub fn new(cfg: &InssConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check()?;
        let abundance = AbundanceNet::new(cfg, vb.pp("abundance"))?;
        let transform = TransformNet::new(cfg, vb.pp("transform"))?;
        let library = vb.get_with_hints((cfg.bands, cfg.library), "library", candle_nn::Init::Const(1.0 / cfg.library as f64))?;
        let signature = vb.get_with_hints(cfg.bands, "signature", candle_nn::Init::Const(1.0))?;
        let pe = position_features(cfg.cell);
        let positions = Tensor::from_vec(pe, (cfg.cell * cfg.cell, 4 * cfg.cell_bits()), vb.device())?.to_dtype(vb.dtype())?;
        Ok(Self { cfg: cfg.clone(), abundance, transform, library, signature, positions })
    }

    pub fn config(&self) -> &InssConfig {
        &self.cfg
    }

    /// `x` (b, 3, h, w) padded at the bottom and right, repeating its edge pixels, to sides
    /// that are multiples of 2^stages and at least twice that, so batch norm at the deepest
    /// stage sees more than one value per channel even for a single small picture.
    pub fn pad_input(&self, x: &Tensor) -> Result<Tensor> {
        let m = 1usize << self.cfg.stages;
        let (_, _, h, w) = x.dims4()?;
        let side = |n: usize| n.max(2 * m).div_ceil(m) * m;
        x.pad_with_same(2, 0, side(h) - h)?.pad_with_same(3, 0, side(w) - w)
    }

    /// The signature as used, ReLU(t).
    pub fn signature(&self) -> Result<Tensor> {
        leaky_relu(&self.signature, 0.0)
    }

    /// (b, 3, h, w), h and w multiples of 2^stages.
    pub fn forward_parts(&self, x: &Tensor, train: bool) -> Result<InssOutput> {
        let cfg = &self.cfg;
        let (b, _, h, w) = x.dims4()?;
        let m = 1usize << cfg.stages;
        if h % m != 0 || w % m != 0 {
            bail!("inss: input {h}×{w} is not a multiple of {m}")
        }
        let f = self.abundance.forward_t(x, train)?;
        let (g, bands, dd) = (cfg.library, cfg.bands, cfg.cell);
        let (ch, cw) = (h / dd, w / dd);
        let cells = b * ch * cw;
        let pixels = dd * dd;
        // Cell layout: (b, c, h, w) → (b·cells, D², c), a cell's pixels row-major.
        let to_cells = |t: &Tensor, c: usize| -> Result<Tensor> {
            t.reshape((b, c, ch, dd, cw, dd))?.permute((0, 2, 4, 3, 5, 1))?.contiguous()?.reshape((cells, pixels, c))
        };
        let from_cells = |t: &Tensor, c: usize| -> Result<Tensor> {
            t.reshape((b, ch, cw, dd, dd, c))?.permute((0, 5, 1, 3, 2, 4))?.contiguous()?.reshape((b, c, h, w))
        };
        let a = to_cells(&f.abundances, g)?;
        // R·A per pixel: (cells, D², N_g) · Rᵀ (N_g, bands)
        let rt = self.library.t()?.contiguous()?;
        let mixed = a.broadcast_matmul(&rt)?;
        let linear = mixed.broadcast_mul(&self.signature()?.reshape((1, 1, bands))?)?;
        let mut cube = linear.clone();
        if cfg.order > 1 {
            let theta = self.transform.forward(&f.feature)?;
            // (b, P, ch, cw) → (b·cells, P)
            let theta = theta.permute((0, 2, 3, 1))?.contiguous()?.reshape((cells, (cfg.order - 1) * cfg.mlp_parameters()))?;
            let input = Tensor::cat(&[&a, &self.positions.unsqueeze(0)?.broadcast_as((cells, pixels, 4 * cfg.cell_bits()))?.contiguous()?], D::Minus1)?;
            let (i, hid) = (cfg.mlp_input(), cfg.hidden);
            let mut e = linear.clone();
            for k in 0..cfg.order - 1 {
                let p = theta.narrow(1, k * cfg.mlp_parameters(), cfg.mlp_parameters())?;
                // per layer: bias then weight (n_in × n_out, row-major), as the authors lay them out
                let mut at = 0;
                let mut take = |n: usize| -> Result<Tensor> {
                    let t = p.narrow(1, at, n)?;
                    at += n;
                    Ok(t)
                };
                let b1 = take(hid)?.reshape((cells, 1, hid))?;
                let w1 = take(i * hid)?.reshape((cells, i, hid))?;
                let b2 = take(g)?.reshape((cells, 1, g))?;
                let w2 = take(hid * g)?.reshape((cells, hid, g))?;
                let hidden = leaky_relu(&input.matmul(&w1)?.broadcast_add(&b1)?, MLP_SLOPE)?;
                let z = (hidden.matmul(&w2)?.broadcast_add(&b2)?.tanh()? * 0.1)?;
                let xk = z.broadcast_matmul(&rt)?;
                e = (e * xk)?;
                cube = (cube + &e)?;
            }
        }
        Ok(InssOutput { cube: from_cells(&cube, bands)?, linear: from_cells(&linear, bands)?, abundances: f.abundances })
    }
}

impl super::SpectralNet for Inss {
    fn forward_t(&self, rgb: &Tensor, _camera: Option<&super::camera::CameraBatch>, train: bool) -> Result<Tensor> {
        let (_, _, h, w) = rgb.dims4()?;
        let padded = self.pad_input(rgb)?;
        let out = self.forward_parts(&padded, train)?.cube;
        out.narrow(2, 0, h)?.narrow(3, 0, w)
    }

    fn camera_prior(&self) -> Option<&super::camera::CameraPrior> {
        None
    }

    fn size_multiple(&self) -> usize {
        1 << self.cfg.stages
    }

    fn whole_image(&self) -> bool {
        // batch statistics of the picture itself: tiles would each be normalised differently
        true
    }

    fn receptive_margin(&self) -> usize {
        // six stride-2 stages of 3×3 convolutions and a cell of mixing parameters: the whole
        // of a 2^stages tile and more; tiles overlap by a cell-aligned margin
        (1 << self.cfg.stages).max(self.cfg.cell)
    }

    fn data_init(&self, _data: &super::InitData) -> crate::Result<Vec<(&'static str, ndarray::Array2<f32>)>> {
        // The library and the signature are set by INSS's own trainer (train/inss.rs), which
        // knows the model's band grid.
        Ok(Vec::new())
    }

    fn is_trainable(&self, name: &str) -> bool {
        name != "library" && !name.ends_with("running_mean") && !name.ends_with("running_var")
    }
}

/// The conditional spatial discriminator (`spatial.*`, training only): pix2pix's 70 × 70
/// PatchGAN on [RGB, cube] (the paper takes its discriminators from R2HGAN): 4 × 4
/// convolutions, stride 2, 2, 2, 1, 1, widths n, 2n, 4n, 8n, 1, batch norm after all but the
/// first and last, LeakyReLU 0.2; one logit per patch of the picture.
#[derive(Debug, Clone)]
pub struct SpatialDiscriminator {
    convs: Vec<(Conv, Option<BatchNorm2d>)>,
}

impl SpatialDiscriminator {
    pub fn new(bands: usize, width: usize, vb: VarBuilder) -> Result<Self> {
        let widths = [width, 2 * width, 4 * width, 8 * width, 1];
        let strides = [2, 2, 2, 1, 1];
        let mut convs = Vec::with_capacity(5);
        let mut c_in = 3 + bands;
        for (i, (&c, &stride)) in widths.iter().zip(&strides).enumerate() {
            let conv = Conv::normal(c_in, c, 4, 1, true, 0.02, vb.pp(format!("conv{i}")))?.with_stride(stride);
            let bn = if i > 0 && i < 4 { Some(BatchNorm2d::new(c, BatchNormConfig::default(), vb.pp(format!("bn{i}")))?) } else { None };
            convs.push((conv, bn));
            c_in = c;
        }
        Ok(Self { convs })
    }

    /// (b, 3, h, w) and (b, bands, h, w) → logits (b, 1, h', w'); h, w ≥ 32.
    pub fn forward_t(&self, rgb: &Tensor, cube: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = Tensor::cat(&[rgb, cube], 1)?;
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            x = conv.forward(&x)?;
            if i < last {
                x = match bn {
                    Some(bn) => bn.forward_act_t(&x, train, Some(F_SLOPE))?,
                    None => leaky_relu(&x, F_SLOPE)?,
                };
            }
        }
        Ok(x)
    }
}

/// The spectral discriminator (`spectral.*`, training only): an MLP on single spectra, widths
/// 2n, 4n, 8n, 16n, 8n, 1 with LeakyReLU (0.01) after every layer, the last included (the
/// authors' code).
#[derive(Debug, Clone)]
pub struct SpectralDiscriminator {
    layers: Vec<candle_nn::Linear>,
}

impl SpectralDiscriminator {
    pub fn new(bands: usize, width: usize, vb: VarBuilder) -> Result<Self> {
        let widths = [2 * width, 4 * width, 8 * width, 16 * width, 8 * width, 1];
        let mut layers = Vec::with_capacity(widths.len());
        let mut c_in = bands;
        for (i, &c) in widths.iter().enumerate() {
            layers.push(candle_nn::linear(c_in, c, vb.pp(i.to_string()))?);
            c_in = c;
        }
        Ok(Self { layers })
    }

    /// Spectra (n, bands) → logits (n, 1).
    pub fn forward(&self, spectra: &Tensor) -> Result<Tensor> {
        let mut x = spectra.clone();
        for layer in &self.layers {
            x = leaky_relu(&layer.forward(&x)?, MLP_SLOPE)?;
        }
        Ok(x)
    }
}

/// The spectra a spectral discriminator judges: pixels (o_r + 16i, o_c + 16j) of every picture
/// of `cube` (b, bands, h, w), as (b·⌈(h − o_r)/16⌉·⌈(w − o_c)/16⌉, bands).
pub fn grid_spectra(cube: &Tensor, offset: (usize, usize)) -> Result<Tensor> {
    let (b, bands, h, w) = cube.dims4()?;
    let rows: Vec<u32> = (offset.0..h).step_by(16).map(|r| r as u32).collect();
    let cols: Vec<u32> = (offset.1..w).step_by(16).map(|c| c as u32).collect();
    let dev = cube.device();
    let picked = cube.index_select(&Tensor::new(rows.as_slice(), dev)?, 2)?.index_select(&Tensor::new(cols.as_slice(), dev)?, 3)?;
    // (b, bands, r, c) → (b·r·c, bands)
    picked.permute((0, 2, 3, 1))?.contiguous()?.reshape((b * rows.len() * cols.len(), bands))
}
