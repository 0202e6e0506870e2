//! UAL: unsupervised adaptation learning for hyperspectral super-resolution by fusion (Zhang,
//! Nie, Wei, Zhang, Liao, Shao, CVPR 2020).
//!
//! Three networks, as the paper describes them (section 3):
//! - [`Fusion`], the mutual-guiding fusion module, pretrained on synthetic degradations and
//!   then frozen: three branches take the high-resolution RGB/MSI X, the bicubic up-sampled
//!   low-resolution cube Y↑ and their concatenation; each is a mapping block (M convolutions
//!   with ReLU) then a mutual-guiding block F' = F ⊙ A + B, with A and B from two guidance
//!   blocks (M convolutions with ReLU each, shared by the branches) applied to the branch's
//!   feature concatenated with the other two (eq. 6–7); the three features, concatenated, are
//!   convolved into the rough estimate Z̃. With [`UalConfig::residual`] (not in the paper)
//!   Z̃ = Y↑ + that output.
//! - [`Adaptation`], the self-guiding adaptation module learned at test time: Ẑ = Z̃ + A(Z̃),
//!   A = mapping block → self-guiding block (A and B from the feature itself, eq. 9) → output
//!   convolution.
//! - [`Degradation`], the degradation network: one convolution with a 32×32 kernel and stride
//!   s, the same for every band (eq. 5), learned at test time beside the adaptation module.
//!
//! Where the paper is silent: convolutions have biases and PyTorch's default initialisation;
//! the adaptation module's output convolution starts at zero, so Ẑ = Z̃ before the first step
//! (the paper does not say how it starts; this way no step ever starts worse than the fusion);
//! the degradation kernel starts as a Gaussian of σ = 3s/8 (3 at ×8, as the authors' code),
//! its borders replicate, and it has no bias. The authors' public code differs from the paper
//! (128 channels, sigmoid gates, a 31-channel adaptor); this file follows the paper.

use crate::nn::act::leaky_relu;
use crate::nn::conv::{conv2d, Conv};
use crate::nn::strided_blur::strided_blur;
use candle_core::{bail, Device, Module, Result, Tensor, Var};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UalConfig {
    /// Bands of the hyperspectral cube (Y and Z).
    pub bands: usize,
    /// Bands of the high-resolution image X (3 for RGB).
    pub msi_bands: usize,
    /// Channels of every convolution (64 in the paper).
    pub width: usize,
    /// Convolution blocks per mapping and guidance block (M = 3 in the paper).
    pub depth: usize,
    /// Z̃ = Y↑ + fusion(X, Y↑): the fusion module learns the detail the bicubic cube lacks
    /// (false in the paper, whose module outputs Z̃ directly; an improvement, measured as one).
    #[serde(default)]
    pub residual: bool,
}

impl Default for UalConfig {
    /// The paper's: M = 3, 64 kernels of 3×3.
    fn default() -> Self {
        UalConfig { bands: 31, msi_bands: 3, width: 64, depth: 3, residual: false }
    }
}

impl UalConfig {
    const MAX_BANDS: usize = 1024;
    const MAX_WIDTH: usize = 512;
    const MAX_DEPTH: usize = 16;

    pub fn check(&self) -> Result<()> {
        if !(1..=Self::MAX_BANDS).contains(&self.bands) || !(1..=Self::MAX_BANDS).contains(&self.msi_bands) {
            bail!("ual: bands {} and msi_bands {} must be in 1..={}", self.bands, self.msi_bands, Self::MAX_BANDS)
        }
        if !(1..=Self::MAX_WIDTH).contains(&self.width) || !(1..=Self::MAX_DEPTH).contains(&self.depth) {
            bail!("ual: width {} must be in 1..={} and depth {} in 1..={}", self.width, Self::MAX_WIDTH, self.depth, Self::MAX_DEPTH)
        }
        Ok(())
    }
}

/// M convolution blocks (3×3 convolution, ReLU): the mapping and guidance blocks. Tensors
/// `N.weight`, `N.bias` for block N.
#[derive(Debug, Clone)]
struct ConvBlocks {
    convs: Vec<Conv>,
}

impl ConvBlocks {
    fn new(c_in: usize, width: usize, depth: usize, vb: VarBuilder) -> Result<Self> {
        let convs = (0..depth).map(|i| Conv::pytorch_default(if i == 0 { c_in } else { width }, width, 3, 1, true, vb.pp(i.to_string()))).collect::<Result<_>>()?;
        Ok(Self { convs })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for conv in &self.convs {
            h = leaky_relu(&conv.forward(&h)?, 0.0)?;
        }
        Ok(h)
    }
}

/// The mutual-guiding fusion module (`fusion.*`).
#[derive(Debug, Clone)]
pub struct Fusion {
    /// Mapping blocks of the X, Y↑ and [X; Y↑] branches.
    branches: [ConvBlocks; 3],
    /// Guidance blocks P_a and P_b, shared by the three branches.
    guide_a: ConvBlocks,
    guide_b: ConvBlocks,
    out: Conv,
    residual: bool,
}

impl Fusion {
    pub fn new(cfg: &UalConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check()?;
        let (w, m) = (cfg.width, cfg.depth);
        Ok(Self {
            branches: [
                ConvBlocks::new(cfg.msi_bands, w, m, vb.pp("branch_x"))?,
                ConvBlocks::new(cfg.bands, w, m, vb.pp("branch_y"))?,
                ConvBlocks::new(cfg.msi_bands + cfg.bands, w, m, vb.pp("branch_xy"))?,
            ],
            guide_a: ConvBlocks::new(3 * w, w, m, vb.pp("guide_a"))?,
            guide_b: ConvBlocks::new(3 * w, w, m, vb.pp("guide_b"))?,
            out: Conv::pytorch_default(3 * w, cfg.bands, 3, 1, true, vb.pp("out"))?,
            residual: cfg.residual,
        })
    }

    /// `x` (n, msi_bands, H, W) and `y_up` (n, bands, H, W) → Z̃ (n, bands, H, W); with
    /// `residual`, Y↑ plus the module's output.
    pub fn forward(&self, x: &Tensor, y_up: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let inputs = [x.clone(), y_up.clone(), Tensor::cat(&[x, y_up], 1)?];
        let f: Vec<Tensor> = self.branches.iter().zip(&inputs).map(|(b, i)| b.forward(i)).collect::<Result<_>>()?;
        // Each branch's guidance sees its own feature first, then the other two:
        // [F_x; F_y; F_xy], [F_y; F_x; F_xy], [F_xy; F_x; F_y], stacked on the batch axis so the
        // shared guidance blocks run once: (3n, 3w, H, W).
        let guided_in = Tensor::cat(
            &[Tensor::cat(&[&f[0], &f[1], &f[2]], 1)?, Tensor::cat(&[&f[1], &f[0], &f[2]], 1)?, Tensor::cat(&[&f[2], &f[0], &f[1]], 1)?],
            0,
        )?;
        let (a, b) = (self.guide_a.forward(&guided_in)?, self.guide_b.forward(&guided_in)?);
        let stacked = Tensor::cat(&[&f[0], &f[1], &f[2]], 0)?;
        // F' = F ⊙ A + B, (3n, w, H, W), back to the channel axis: (n, 3w, H, W).
        let guided = ((stacked * a)? + b)?;
        let merged = Tensor::cat(&[guided.narrow(0, 0, n)?, guided.narrow(0, n, n)?, guided.narrow(0, 2 * n, n)?], 1)?;
        let z = self.out.forward(&merged)?;
        if self.residual {
            z + y_up
        } else {
            Ok(z)
        }
    }
}

/// The self-guiding adaptation module (`adapt.*`): Ẑ = Z̃ + A(Z̃).
#[derive(Debug, Clone)]
pub struct Adaptation {
    mapping: ConvBlocks,
    guide_a: ConvBlocks,
    guide_b: ConvBlocks,
    out: Conv,
}

impl Adaptation {
    pub fn new(cfg: &UalConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check()?;
        let (w, m) = (cfg.width, cfg.depth);
        Ok(Self {
            mapping: ConvBlocks::new(cfg.bands, w, m, vb.pp("mapping"))?,
            guide_a: ConvBlocks::new(w, w, m, vb.pp("guide_a"))?,
            guide_b: ConvBlocks::new(w, w, m, vb.pp("guide_b"))?,
            out: Conv::zeroed(w, cfg.bands, 3, 1, true, vb.pp("out"))?,
        })
    }

    /// Z̃ (n, bands, H, W) → Ẑ, same shape.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let f = self.mapping.forward(z)?;
        let guided = ((&f * self.guide_a.forward(&f)?)? + self.guide_b.forward(&f)?)?;
        z + self.out.forward(&guided)?
    }
}

/// The degradation network: one strided convolution with a kernel (1, 1, K, K) shared by every
/// band, borders replicated; the registration of [`crate::spectral::degrade::blur_decimate`].
/// It is learned for one image pair and never saved with a model, so it holds its own variable.
#[derive(Debug, Clone)]
pub struct Degradation {
    kernel: Var,
    scale: usize,
}

impl Degradation {
    /// The paper's kernel side, 32; 31 for an odd scale (the padding (K − s)/2 must be whole).
    pub fn kernel_side(scale: usize) -> usize {
        if scale % 2 == 0 { 32 } else { 31 }
    }

    /// A Gaussian start of σ = 3s/8, centred at index ⌊K/2⌋, summing to one.
    pub fn new(scale: usize, device: &Device) -> Result<Self> {
        if !(1..=Self::kernel_side(scale)).contains(&scale) {
            bail!("ual: scale must be in 1..=32, got {scale}")
        }
        let side = Self::kernel_side(scale);
        let sigma = 3.0 * scale as f64 / 8.0;
        let centre = (side / 2) as f64;
        let mut start: Vec<f32> = (0..side * side)
            .map(|i| {
                let (y, x) = ((i / side) as f64 - centre, (i % side) as f64 - centre);
                (-(x * x + y * y) / (2.0 * sigma * sigma)).exp() as f32
            })
            .collect();
        let sum: f32 = start.iter().sum();
        start.iter_mut().for_each(|v| *v /= sum);
        Ok(Self { kernel: Var::from_tensor(&Tensor::from_vec(start, (1, 1, side, side), device)?)?, scale })
    }

    /// `z` (n, bands, H, W) → (n, bands, ⌊H/s⌋, ⌊W/s⌋).
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        degrade(z, self.kernel.as_tensor(), self.scale)
    }

    /// The variable to optimise.
    pub fn var(&self) -> &Var {
        &self.kernel
    }

    pub fn scale(&self) -> usize {
        self.scale
    }
}

/// `z` (n, bands, H, W) through `kernel` (1, 1, K, K) with stride `scale`, borders replicated
/// by (K − s)/2: (n, bands, ⌊H/s⌋, ⌊W/s⌋). A correlation, as every convolution layer is (the
/// kernel is not flipped), like [`crate::spectral::degrade::blur_decimate`].
pub fn degrade(z: &Tensor, kernel: &Tensor, scale: usize) -> Result<Tensor> {
    degrade_with(z, kernel, scale, strided_blur)
}

/// [`degrade`] through candle's generic convolution (the same math, slower on the CPU): the
/// peer `bench fusion` times it against.
pub fn degrade_conv2d(z: &Tensor, kernel: &Tensor, scale: usize) -> Result<Tensor> {
    degrade_with(z, kernel, scale, |planes, kernel, stride| conv2d(planes, kernel, 0, stride))
}

fn degrade_with(z: &Tensor, kernel: &Tensor, scale: usize, blur: impl Fn(&Tensor, &Tensor, usize) -> Result<Tensor>) -> Result<Tensor> {
    let (n, bands, h, w) = z.dims4()?;
    let side = kernel.dim(3)?;
    if side < scale || (side - scale) % 2 != 0 {
        bail!("degradation kernel of side {side} does not fit scale {scale} (K − s must be even and ≥ 0)")
    }
    if h < scale || w < scale {
        bail!("cannot down-sample {h}×{w} px by {scale}")
    }
    let pad = (side - scale) / 2;
    // (n·bands, 1, H + 2p, W + 2p): every band is one single-channel image.
    let planes = z.reshape((n * bands, 1, h, w))?.pad_with_same(2, pad, pad)?.pad_with_same(3, pad, pad)?;
    let out = blur(&planes, kernel, scale)?;
    let (_, _, lh, lw) = out.dims4()?;
    out.reshape((n, bands, lh, lw))
}

/// X̂ = P·Z: `z` (n, bands, H, W) through the camera `p` (msi_bands, bands).
pub fn project(z: &Tensor, p: &Tensor) -> Result<Tensor> {
    let (n, bands, h, w) = z.dims4()?;
    let c = p.dim(0)?;
    // (n, msi, bands) × (n, bands, H·W) → (n, msi, H·W).
    let flat = z.reshape((n, bands, h * w))?;
    p.unsqueeze(0)?.broadcast_as((n, c, bands))?.contiguous()?.matmul(&flat)?.reshape((n, c, h, w))
}
