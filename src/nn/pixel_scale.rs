//! y (b, c, h, w) times s (b, 1, h, w), every channel of a pixel by that pixel's factor: how an
//! intensity-normalised network's output is scaled back by the input's brightness.
//!
//! One CPU op each way when s needs no gradient (it comes from the input image). candle's
//! `broadcast_mul` backward also computes the gradient of s, a full-size product and sum that
//! nothing reads, and multiplies through a strided broadcast.

use super::threads::{parallel_items, threads, SharedMut};
use super::cpu_op::{run2, FloatKernel2};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};

const OP: &str = "pixel-scale op";

/// `y.broadcast_mul(s)` for y (b, c, h, w) and s (b, 1, h, w).
pub fn scale_pixels(y: &Tensor, s: &Tensor) -> Result<Tensor> {
    let (b, _, h, w) = y.dims4()?;
    if s.dims4()? != (b, 1, h, w) {
        candle_core::bail!("{OP}: factors {:?} do not fit {:?}", s.dims(), y.dims())
    }
    let cpu = super::portable::cpu_kernel(y.device(), y.dtype()) && y.dtype() == s.dtype();
    if !cpu || s.track_op() {
        return y.broadcast_mul(s);
    }
    y.contiguous()?.apply_op2(&s.contiguous()?, ScalePixels)
}

/// (y, s) → y·s per pixel.
struct ScalePixels;

impl FloatKernel2 for ScalePixels {
    const NAME: &'static str = OP;

    fn run<T: WithDType>(&self, y: &[T], s: &[T], (b, c, h, w): (usize, usize, usize, usize)) -> Vec<T> {
        let plane = h * w;
        let mut out: Vec<T> = Vec::with_capacity(y.len());
        let dst = SharedMut(out.as_mut_ptr());
        parallel_items(b * c, vec![(); threads()], |item, _| {
            let factors = &s[item / c * plane..][..plane];
            let src = &y[item * plane..][..plane];
            // SAFETY: item writes plane `item` of the output alone, inside its capacity.
            let out = unsafe { std::slice::from_raw_parts_mut(dst.get().add(item * plane), plane) };
            for ((o, &v), &f) in out.iter_mut().zip(src).zip(factors) {
                *o = v * f;
            }
        });
        // SAFETY: the items above wrote all b·c planes.
        unsafe { out.set_len(y.len()) };
        out
    }
}

impl CustomOp2 for ScalePixels {
    fn name(&self) -> &'static str {
        "pixel-scale"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((run2(self, s1, l1, s2, l2)?, l1.shape().clone()))
    }

    fn bwd(&self, _y: &Tensor, s: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // d(y·s)/dy = s; `scale_pixels` takes this op only for an s that needs no gradient.
        Ok((Some(grad.contiguous()?.apply_op2_no_bwd(s, &ScalePixels)?), None))
    }
}
