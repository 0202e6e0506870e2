//! Building blocks shared by the U-Nets: the Double Conv block of the multi-scale CNN paper
//! (3×3 conv → batch norm → LeakyReLU → 2D dropout, twice), a max-pool with a correct
//! gradient, and channel dropout.

use super::profile::timed;
use candle_core::{ModuleT, Result, Tensor, D};
use super::conv::Conv;
use super::batchnorm::BatchNorm2d;
use candle_nn::{BatchNormConfig, VarBuilder};

/// LeakyReLU slope of the paper.
pub const LEAKY_SLOPE: f64 = 0.2;

pub fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    super::act::leaky_relu(x, LEAKY_SLOPE)
}

/// 2×2 max-pool, stride 2, on (batch, c, rows, cols) with even rows and cols. The backward
/// pass routes the whole gradient to the window's first maximum in row-major order, as
/// PyTorch does (candle 0.11's `max_pool2d` backward scales it by 1/4). On the CPU one op each
/// way ([`super::pool`]); on the portable path ([`super::portable`]) a gather at each window's
/// arg-max, whose backward scatters the gradient to that one element. (A reshape + max would
/// be right too, but on a tie its backward gives the whole gradient to every tied element.)
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if h % 2 != 0 || w % 2 != 0 {
        candle_core::bail!("max_pool2x2 needs even sides, got {h}x{w}")
    }
    if let Some(pooled) = super::pool::max_pool2x2_cpu(x)? {
        return Ok(pooled);
    }
    // (b, c, h/2, 2, w/2, 2) → (b, c, h/2, w/2, 2, 2) → (b, c, h/2, w/2, 4): a window's four
    // values in row-major order on the last axis.
    let windows = x.reshape((b, c, h / 2, 2, w / 2, 2))?.permute((0, 1, 2, 4, 3, 5))?.contiguous()?.reshape((b, c, h / 2, w / 2, 4))?;
    // candle's arg-max keeps the first of equal values.
    let first_max = windows.argmax_keepdim(D::Minus1)?;
    windows.gather(&first_max, D::Minus1)?.squeeze(D::Minus1)
}

/// Dropout of whole channels (PyTorch's `Dropout2d`): in training, each (sample, channel)
/// plane is zeroed with probability `p` and the rest scaled by 1/(1−p).
pub fn channel_dropout(x: &Tensor, p: f64, train: bool) -> Result<Tensor> {
    if !train || p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        candle_core::bail!("dropout probability must be below 1, got {p}")
    }
    let (b, c, _, _) = x.dims4()?;
    let keep = Tensor::rand(0f32, 1f32, (b, c, 1, 1), x.device())?.ge(p)?;
    let mask = (keep.to_dtype(x.dtype())? * (1.0 / (1.0 - p)))?;
    x.broadcast_mul(&mask)
}

fn bn_config() -> BatchNormConfig {
    // PyTorch's BatchNorm2d defaults, so weights and running statistics move between the two.
    BatchNormConfig { eps: 1e-5, remove_mean: true, affine: true, momentum: 0.1 }
}

/// One 3×3 conv (no bias: batch norm follows) → batch norm → LeakyReLU → channel dropout.
#[derive(Debug, Clone)]
pub struct ConvBnAct {
    conv: Conv,
    bn: BatchNorm2d,
    dropout: f64,
}

impl ConvBnAct {
    pub fn new(c_in: usize, c_out: usize, dropout: f64, vb_conv: VarBuilder, vb_bn: VarBuilder) -> Result<Self> {
        let conv = Conv::new(c_in, c_out, 3, 1, false, vb_conv)?;
        let bn = BatchNorm2d::new(c_out, bn_config(), vb_bn)?;
        Ok(Self { conv, bn, dropout })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            return timed("conv3x3+bn+act (folded)", || self.folded_forward(x));
        }
        let x = timed("conv3x3+bn+act", || super::conv_bn::conv_bn_act_train(x, &self.conv, &self.bn, Some(LEAKY_SLOPE)))?;
        timed("dropout", || channel_dropout(&x, self.dropout, train))
    }
}

impl ConvBnAct {
    /// Inference on `x` (b, c, h, w) followed by `context` (b, m, 1, 1) as m channels constant
    /// over the picture, without making those channels: the same as [`Self::forward_t`] on
    /// the concatenation, at the cost of c input channels instead of c + m. Through a 3×3
    /// convolution with zero padding, a constant channel adds at each pixel its value times the
    /// kernel summed over the taps that fall inside the picture, so the m channels together
    /// add conv(1, Σₖ context_k·W_k), a one-channel convolution of a plane of ones per image.
    pub fn folded_forward_with_context(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let m = context.dim(1)?;
        let (weight, bias) = self.folded_weights()?;
        let (c_out, c_all, kh, kw) = weight.dims4()?;
        if c_all != c + m {
            candle_core::bail!("the convolution takes {c_all} channels, given {c} and {m} of context")
        }
        let y = super::conv::conv2d(x, &weight.narrow(1, 0, c)?.contiguous()?, self.conv.padding(), 1)?;
        // (c_out, m, kh, kw) → (c_out·kh·kw, m) · (m, b) → per image a (c_out, 1, kh, kw) kernel.
        let w_context = weight.narrow(1, c, m)?.permute((0, 2, 3, 1))?.contiguous()?.reshape((c_out * kh * kw, m))?;
        let kernels = w_context.matmul(&context.reshape((b, m))?.t()?.contiguous()?.to_dtype(weight.dtype())?)?;
        let ones = Tensor::ones((1, 1, h, w), x.dtype(), x.device())?;
        let maps = (0..b)
            .map(|i| super::conv::conv2d(&ones, &kernels.narrow(1, i, 1)?.contiguous()?.reshape((c_out, 1, kh, kw))?, self.conv.padding(), 1))
            .collect::<Result<Vec<_>>>()?;
        let y = (y + Tensor::cat(&maps, 0)?)?.broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
        super::act::leaky_relu(&y, LEAKY_SLOPE)
    }

    /// The convolution's weight and bias with batch norm's running statistics folded in.
    fn folded_weights(&self) -> Result<(Tensor, Tensor)> {
        let (gamma, beta) = (self.bn.weight(), self.bn.bias());
        let scale = (gamma / (self.bn.running_var() + self.bn.eps())?.sqrt()?)?;
        let weight = self.conv.weight().broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?;
        let bias = (beta - (self.bn.running_mean() * &scale)?)?;
        Ok((weight, bias))
    }

    /// Inference: batch norm's running statistics folded into the convolution
    /// (w' = w·γ/√(σ² + ε), b' = β − μ·γ/√(σ² + ε)), then bias and LeakyReLU applied as the
    /// convolution's output is stored. Dropout is the identity at inference.
    fn folded_forward(&self, x: &Tensor) -> Result<Tensor> {
        let (weight, bias) = self.folded_weights()?;
        super::conv::conv2d_bias_act(x, &weight, &bias, self.conv.padding(), Some(LEAKY_SLOPE))
    }
}

/// Double Conv: two [`ConvBnAct`]. Tensor names `conv1.weight`, `bn1.{weight,bias,
/// running_mean,running_var}`, `conv2.*`, `bn2.*` under the block's prefix.
#[derive(Debug, Clone)]
pub struct DoubleConv {
    first: ConvBnAct,
    second: ConvBnAct,
}

impl DoubleConv {
    pub fn new(c_in: usize, c_out: usize, dropout: f64, vb: VarBuilder) -> Result<Self> {
        let first = ConvBnAct::new(c_in, c_out, dropout, vb.pp("conv1"), vb.pp("bn1"))?;
        let second = ConvBnAct::new(c_out, c_out, dropout, vb.pp("conv2"), vb.pp("bn2"))?;
        Ok(Self { first, second })
    }
}

impl DoubleConv {
    /// Inference on `x` with `context` (b, m, 1, 1) as constant channels after it
    /// ([`ConvBnAct::folded_forward_with_context`]).
    pub fn forward_with_context(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let x = timed("conv3x3+bn+act (context folded)", || self.first.folded_forward_with_context(x, context))?;
        self.second.forward_t(&x, false)
    }
}

impl ModuleT for DoubleConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.first.forward_t(x, train)?;
        self.second.forward_t(&x, train)
    }
}

/// PyTorch's `ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2)` of `x` (n, c_in, h, w)
/// with `weight` (c_in, c_out, 2, 2) and `bias` (c_out) → (n, c_out, 2h, 2w).
pub fn transposed_conv2x2(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (c_in, c_out, _, _) = weight.dims4()?;
    // (c_in, c_out, 2, 2) → (c_out, 2, 2, c_in) → (4·c_out, c_in, 1, 1): output channel
    // o·4 + i·2 + j is what pixel_shuffle puts at offset (i, j) of channel o.
    let w = weight.permute((1, 2, 3, 0))?.contiguous()?.reshape((c_out * 4, c_in, 1, 1))?;
    let y = candle_nn::ops::pixel_shuffle(&super::conv::conv2d(x, &w, 0, 1)?, 2)?;
    y.broadcast_add(&bias.reshape((1, c_out, 1, 1))?)
}
