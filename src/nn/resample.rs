//! Resampling and padding of NCHW maps built from candle's own ops (narrow, cat, stack,
//! broadcast), so they run on any device and their gradients are candle's (checked by finite
//! differences in tests/inss.rs): bilinear ×2 up-sampling as PyTorch's
//! `interpolate(scale_factor=2, mode="bilinear", align_corners=False)`, nearest up-sampling by
//! an integer factor, and reflection padding by one pixel.

use candle_core::{Result, Tensor};

/// ×2 along `dim` with PyTorch's half-pixel convention: output 2i is ¾·x[i] + ¼·x[i−1] and
/// output 2i+1 is ¾·x[i] + ¼·x[i+1], the neighbours clamped at the edges.
fn linear2x(x: &Tensor, dim: usize) -> Result<Tensor> {
    let n = x.dim(dim)?;
    if n == 1 {
        return Tensor::cat(&[x, x], dim);
    }
    let prev = Tensor::cat(&[&x.narrow(dim, 0, 1)?, &x.narrow(dim, 0, n - 1)?], dim)?;
    let next = Tensor::cat(&[&x.narrow(dim, 1, n - 1)?, &x.narrow(dim, n - 1, 1)?], dim)?;
    let even = ((x * 0.75)? + (prev * 0.25)?)?;
    let odd = ((x * 0.75)? + (next * 0.25)?)?;
    // (…, n, 2, …) → (…, 2n, …): even and odd outputs interleaved
    let mut dims = x.dims().to_vec();
    dims[dim] *= 2;
    Tensor::stack(&[&even, &odd], dim + 1)?.reshape(dims)
}

/// (b, c, h, w) → (b, c, 2h, 2w), bilinear (PyTorch, align_corners = false).
pub fn upsample_bilinear2x(x: &Tensor) -> Result<Tensor> {
    linear2x(&linear2x(x, 2)?, 3)
}

/// (b, c, h, w) → (b, c, f·h, f·w): each value repeated over an f × f block.
pub fn upsample_nearest(x: &Tensor, f: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    // (b, c, h, 1, w, 1) → (b, c, h, f, w, f) → (b, c, hf, wf)
    x.reshape((b, c, h, 1, w, 1))?.broadcast_as((b, c, h, f, w, f))?.reshape((b, c, h * f, w * f))
}

/// (b, c, h, w) → (b, c, h + 2, w + 2), each border the mirror of the row or column inside it
/// (PyTorch's `ReflectionPad2d(1)`); needs h, w ≥ 2.
pub fn reflect_pad1(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h < 2 || w < 2 {
        candle_core::bail!("reflection padding needs at least 2 × 2 pixels, got {h} × {w}")
    }
    let x = Tensor::cat(&[&x.narrow(2, 1, 1)?, x, &x.narrow(2, h - 2, 1)?], 2)?;
    Tensor::cat(&[&x.narrow(3, 1, 1)?, &x, &x.narrow(3, w - 2, 1)?], 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn bilinear_matches_pytorch_on_a_small_map() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.], [2., 4.]]]]), scale_factor=2,
        // mode="bilinear", align_corners=False)
        let x = Tensor::new(&[[[[0f32, 1.], [2., 4.]]]], &Device::Cpu).unwrap();
        let y: Vec<Vec<f32>> = upsample_bilinear2x(&x).unwrap().squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        let want = [[0.0, 0.25, 0.75, 1.0], [0.5, 0.8125, 1.4375, 1.75], [1.5, 1.9375, 2.8125, 3.25], [2.0, 2.5, 3.5, 4.0]];
        for (row, want) in y.iter().zip(want) {
            for (a, b) in row.iter().zip(want) {
                assert!((a - b).abs() < 1e-6, "{y:?}");
            }
        }
    }

    #[test]
    fn nearest_and_reflection_place_values_where_pytorch_does() {
        let x = Tensor::new(&[[[[1f32, 2., 3.], [4., 5., 6.]]]], &Device::Cpu).unwrap();
        let up: Vec<Vec<f32>> = upsample_nearest(&x, 2).unwrap().squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(up[0], [1., 1., 2., 2., 3., 3.]);
        assert_eq!(up[3], [4., 4., 5., 5., 6., 6.]);
        let pad: Vec<Vec<f32>> = reflect_pad1(&x).unwrap().squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        // ReflectionPad2d(1) of [[1,2,3],[4,5,6]]
        assert_eq!(pad, [[5., 4., 5., 6., 5.], [2., 1., 2., 3., 2.], [5., 4., 5., 6., 5.], [2., 1., 2., 3., 2.]]);
    }
}
