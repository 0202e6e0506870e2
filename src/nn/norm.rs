//! Normalisations a transformer trains through: layer norm over channels (a CPU op of its own,
//! [`super::layer_norm`], and the same composed from candle ops elsewhere), L2 normalisation and
//! softmax composed from candle ops whose gradients candle has and `tests/transformer_ops.rs`
//! checks: candle 0.11's fused `layer_norm` and `softmax_last_dim` have no backward at all.

use candle_core::{Result, Tensor, D};

/// PyTorch's `nn.LayerNorm` default.
pub const LAYER_NORM_EPS: f64 = 1e-5;
/// PyTorch's `F.normalize` default.
pub const L2_NORM_EPS: f64 = 1e-12;

/// Layer norm over the channels of each pixel of `x` (n, c, h, w), with per-channel `weight` and
/// `bias` (c): PyTorch's `nn.LayerNorm(c)` on the same tensor laid out (n, h, w, c), which is
/// how MST++ applies it. The variance is the biased one, as PyTorch's.
pub fn layer_norm_channels(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    match super::layer_norm::layer_norm_channels_cpu(x, weight, bias, eps)? {
        Some(y) => Ok(y),
        None => layer_norm_channels_composed(x, weight, bias, eps),
    }
}

/// [`layer_norm_channels`] composed from candle ops (other devices, and the reference the CPU
/// op is tested against).
pub fn layer_norm_channels_composed(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let c = x.dim(1)?;
    let centred = x.broadcast_sub(&x.mean_keepdim(1)?)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    // (c) → (1, c, 1, 1)
    normed.broadcast_mul(&weight.reshape((1, c, 1, 1))?)?.broadcast_add(&bias.reshape((1, c, 1, 1))?)
}

/// `x` divided by the L2 norm of its last dimension, floored at `eps`: PyTorch's
/// `F.normalize(x, p=2, dim=-1, eps)`.
pub fn l2_normalize_last(x: &Tensor, eps: f64) -> Result<Tensor> {
    // max(√s, ε) as √max(s, ε²): the same value, and no 0/0 in the square root's gradient when
    // a row is all zeros (a black patch through bias-free layers); PyTorch's gradient is 0 there.
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.maximum(eps * eps)?.sqrt()?;
    x.broadcast_div(&norm)
}

/// Softmax over the last dimension with its gradient (candle's `softmax_last_dim` has none):
/// the maximum is subtracted first, as every numerically careful softmax does.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}
