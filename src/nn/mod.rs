//! Ops for candle with their own CPU kernels and tested gradients: convolution (im2col and
//! direct), depthwise convolution, batch norm (and convolution fused with it), layer norm, L2
//! normalisation and softmax with gradients, pooling, pixel shuffle, activations, per-pixel
//! scaling, a strided blur with one kernel for every plane (UAL's degradation network), L1
//! gradient clipping (USR's), and the layers built from them. They know nothing of any model ([`crate::models`]
//! builds the architectures from them).
//!
//! Every op a model trains through has its gradient tested against finite differences in
//! `tests/gradients.rs` (the U-Nets' ops) and `tests/transformer_ops.rs` (MST++'s): candle 0.11's own `max_pool2d` backward is wrong (1/k² of the true
//! gradient), so [`layers::max_pool2x2`] is an op of its own ([`pool`]), as are the
//! convolution ([`conv`], [`direct`]) and training-mode batch norm ([`batchnorm`]).

pub mod act;
pub mod batchnorm;
pub mod conv;
pub mod conv_bn;
pub mod cpu_op;
pub mod depthwise;
pub mod direct;
pub mod gelu;
pub mod grad_clip;
pub mod layer_norm;
pub mod layers;
pub mod norm;
pub mod pixel_scale;
pub mod pool;
pub mod portable;
pub mod profile;
pub mod resample;
pub mod shuffle;
pub mod strided_blur;
pub mod threads;

use candle_core::{Result, Tensor};

/// Replicate-pad (batch, c, rows, cols) on the bottom and right to multiples of `m`.
/// Returns the padded tensor; crop the output back with `narrow`.
pub fn pad_to_multiple(x: &Tensor, m: usize) -> Result<Tensor> {
    let (_, _, rows, cols) = x.dims4()?;
    let pad_r = (m - rows % m) % m;
    let pad_c = (m - cols % m) % m;
    let x = if pad_r > 0 { x.pad_with_same(2, 0, pad_r)? } else { x.clone() };
    if pad_c > 0 {
        x.pad_with_same(3, 0, pad_c)
    } else {
        Ok(x)
    }
}

/// Reflect-pad (n, c, h, w) on the bottom and right to multiples of `m`, as PyTorch's
/// `F.pad(x, [0, pw, 0, ph], mode='reflect')`: padded row h + i is row h − 2 − i.
pub fn reflect_pad_to_multiple(x: &Tensor, m: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let mut x = x.clone();
    for (axis, len) in [(2, h), (3, w)] {
        let pad = (m - len % m) % m;
        if pad == 0 {
            continue;
        }
        if pad >= len {
            candle_core::bail!("reflect padding of {pad} needs a side longer than {pad}, got {len}")
        }
        let index: Vec<u32> = (0..len).chain((0..pad).map(|i| len - 2 - i)).map(|i| i as u32).collect();
        let index = Tensor::from_vec(index, len + pad, x.device())?;
        x = x.index_select(&index, axis)?;
    }
    Ok(x)
}
