//! Layer norm over the channels of each pixel of an NCHW tensor, as a CPU op with a one-pass
//! backward: what MST++'s pre-norm feed-forward applies (PyTorch's `nn.LayerNorm(c)` on the
//! (n, h, w, c) layout). Composed from candle ops it is about eight passes forward and more
//! backward, with broadcasts over a strided channel axis; candle's own fused `layer_norm` has no
//! backward. Statistics are accumulated in f64; the variance is the biased one, as PyTorch's.
//!
//! With x̂ = (x − μ)/σ per pixel and g the output gradient: dL/dx = (ĝ − mean_c ĝ − x̂ ·
//! mean_c(ĝ·x̂))/σ with ĝ = g·w, dL/dw = Σ g·x̂ and dL/db = Σ g over images and pixels.

use super::cpu_op::slice;
use super::threads::{parallel_items, threads, SharedMut};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};

const OP: &str = "layer norm op";
/// Pixels per work item.
const PIXELS: usize = 1024;

/// The CPU op on f32/f64 `x` (n, c, h, w) with `weight` and `bias` (c); None elsewhere.
pub fn layer_norm_channels_cpu(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Option<Tensor>> {
    if !super::portable::cpu_kernel(x.device(), x.dtype()) {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, LayerNorm { eps })?))
}

/// Per-pixel mean and 1/σ of one image's planes `x` (c planes of `p` pixels), for pixels
/// `start..end`.
fn stats<T: WithDType>(x: &[T], c: usize, p: usize, start: usize, end: usize, eps: f64) -> (Vec<f64>, Vec<f64>) {
    let len = end - start;
    let mut mean = vec![0.0f64; len];
    for ch in 0..c {
        for (m, v) in mean.iter_mut().zip(&x[ch * p + start..ch * p + end]) {
            *m += v.to_f64();
        }
    }
    mean.iter_mut().for_each(|m| *m /= c as f64);
    let mut var = vec![0.0f64; len];
    for ch in 0..c {
        for ((s, v), m) in var.iter_mut().zip(&x[ch * p + start..ch * p + end]).zip(&mean) {
            let d = v.to_f64() - m;
            *s += d * d;
        }
    }
    let rstd = var.iter().map(|s| 1.0 / (s / c as f64 + eps).sqrt()).collect();
    (mean, rstd)
}

/// Work items: (image, first pixel, end pixel).
fn items(n: usize, p: usize) -> Vec<(usize, usize, usize)> {
    (0..n).flat_map(|img| (0..p).step_by(PIXELS).map(move |s| (img, s, (s + PIXELS).min(p)))).collect()
}

struct LayerNorm {
    eps: f64,
}

impl LayerNorm {
    fn run<T: WithDType>(&self, x: &[T], w: &[T], b: &[T], (n, c, h, wd): (usize, usize, usize, usize)) -> Vec<T> {
        let p = h * wd;
        let mut out = vec![T::from_f64(0.0); x.len()];
        let dst = SharedMut(out.as_mut_ptr());
        let work = items(n, p);
        parallel_items(work.len(), vec![(); threads()], |item, _| {
            let (img, start, end) = work[item];
            let x = &x[img * c * p..][..c * p];
            let (mean, rstd) = stats(x, c, p, start, end, self.eps);
            for ch in 0..c {
                let (wc, bc) = (w[ch].to_f64(), b[ch].to_f64());
                // SAFETY: item alone writes pixels start..end of image img.
                let out = unsafe { std::slice::from_raw_parts_mut(dst.get().add(img * c * p + ch * p + start), end - start) };
                for (((o, v), m), r) in out.iter_mut().zip(&x[ch * p + start..ch * p + end]).zip(&mean).zip(&rstd) {
                    *o = T::from_f64((v.to_f64() - m) * r * wc + bc);
                }
            }
        });
        out
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm-channels"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims4()?;
        if l2.shape().dims() != [dims.1] || l3.shape().dims() != [dims.1] {
            candle_core::bail!("layer norm: weight {:?} and bias {:?} do not fit {} channels", l2.shape(), l3.shape(), dims.1)
        }
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(self.run(slice::<f32>(s1, l1, OP)?, slice(s2, l2, OP)?, slice(s3, l3, OP)?, dims)),
            DType::F64 => CpuStorage::F64(self.run(slice::<f64>(s1, l1, OP)?, slice(s2, l2, OP)?, slice(s3, l3, OP)?, dims)),
            other => candle_core::bail!("layer norm op: unsupported dtype {other:?}"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op3_no_bwd(x, w, &LayerNormGrad { eps: self.eps, wrt_input: true })?;
        // (2, c): dL/dw, then dL/db.
        let dwb = grad.apply_op3_no_bwd(x, w, &LayerNormGrad { eps: self.eps, wrt_input: false })?;
        Ok((Some(dx), Some(dwb.get(0)?), Some(dwb.get(1)?)))
    }
}

/// (grad, x, w) → dL/dx (`wrt_input`), or (2, c) holding dL/dw and dL/db.
struct LayerNormGrad {
    eps: f64,
    wrt_input: bool,
}

impl LayerNormGrad {
    fn input<T: WithDType>(&self, g: &[T], x: &[T], w: &[T], (n, c, h, wd): (usize, usize, usize, usize)) -> Vec<T> {
        let p = h * wd;
        let mut out = vec![T::from_f64(0.0); x.len()];
        let dst = SharedMut(out.as_mut_ptr());
        let work = items(n, p);
        parallel_items(work.len(), vec![(); threads()], |item, _| {
            let (img, start, end) = work[item];
            let (x, g) = (&x[img * c * p..][..c * p], &g[img * c * p..][..c * p]);
            let (mean, rstd) = stats(x, c, p, start, end, self.eps);
            let len = end - start;
            // mean over channels of ĝ and of ĝ·x̂, per pixel.
            let (mut mg, mut mgx) = (vec![0.0f64; len], vec![0.0f64; len]);
            for ch in 0..c {
                let wc = w[ch].to_f64();
                let rows = g[ch * p + start..ch * p + end].iter().zip(&x[ch * p + start..ch * p + end]);
                for ((((a, bb), (gv, xv)), m), r) in mg.iter_mut().zip(mgx.iter_mut()).zip(rows).zip(&mean).zip(&rstd) {
                    let gh = gv.to_f64() * wc;
                    *a += gh;
                    *bb += gh * (xv.to_f64() - m) * r;
                }
            }
            for ch in 0..c {
                let wc = w[ch].to_f64();
                // SAFETY: item alone writes pixels start..end of image img.
                let out = unsafe { std::slice::from_raw_parts_mut(dst.get().add(img * c * p + ch * p + start), len) };
                let rows = g[ch * p + start..ch * p + end].iter().zip(&x[ch * p + start..ch * p + end]);
                for (k, (o, (gv, xv))) in out.iter_mut().zip(rows).enumerate() {
                    let xh = (xv.to_f64() - mean[k]) * rstd[k];
                    *o = T::from_f64((gv.to_f64() * wc - mg[k] / c as f64 - xh * mgx[k] / c as f64) * rstd[k]);
                }
            }
        });
        out
    }

    fn params<T: WithDType>(&self, g: &[T], x: &[T], (n, c, h, wd): (usize, usize, usize, usize)) -> Vec<T> {
        let p = h * wd;
        let work = items(n, p);
        // Per thread: Σ g·x̂ and Σ g per channel.
        let partials = parallel_items(work.len(), vec![vec![0.0f64; 2 * c]; threads()], |item, acc| {
            let (img, start, end) = work[item];
            let (x, g) = (&x[img * c * p..][..c * p], &g[img * c * p..][..c * p]);
            let (mean, rstd) = stats(x, c, p, start, end, self.eps);
            for ch in 0..c {
                let rows = g[ch * p + start..ch * p + end].iter().zip(&x[ch * p + start..ch * p + end]);
                let (mut sw, mut sb) = (0.0f64, 0.0f64);
                for (((gv, xv), m), r) in rows.zip(&mean).zip(&rstd) {
                    sw += gv.to_f64() * (xv.to_f64() - m) * r;
                    sb += gv.to_f64();
                }
                acc[ch] += sw;
                acc[c + ch] += sb;
            }
        });
        let mut total = vec![0.0f64; 2 * c];
        for part in partials {
            for (t, v) in total.iter_mut().zip(part) {
                *t += v;
            }
        }
        total.into_iter().map(T::from_f64).collect()
    }
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "layer-norm-channels-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims4()?;
        let shape = if self.wrt_input { l1.shape().clone() } else { Shape::from((2, dims.1)) };
        let out = match (s1.dtype(), self.wrt_input) {
            (DType::F32, true) => CpuStorage::F32(self.input(slice::<f32>(s1, l1, OP)?, slice(s2, l2, OP)?, slice(s3, l3, OP)?, dims)),
            (DType::F64, true) => CpuStorage::F64(self.input(slice::<f64>(s1, l1, OP)?, slice(s2, l2, OP)?, slice(s3, l3, OP)?, dims)),
            (DType::F32, false) => CpuStorage::F32(self.params(slice::<f32>(s1, l1, OP)?, slice(s2, l2, OP)?, dims)),
            (DType::F64, false) => CpuStorage::F64(self.params(slice::<f64>(s1, l1, OP)?, slice(s2, l2, OP)?, dims)),
            (other, _) => candle_core::bail!("layer norm gradient: unsupported dtype {other:?}"),
        };
        Ok((out, shape))
    }
}
