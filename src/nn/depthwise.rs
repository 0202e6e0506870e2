//! Depthwise convolution: one k×k filter per channel, stride 1, zero "same" padding (k / 2), no
//! bias: what MST++'s positional embedding and feed-forward use (PyTorch's
//! `Conv2d(c, c, k, 1, k // 2, groups=c, bias=False)`). A CPU op with both gradients: candle 0.11
//! runs a grouped convolution as one convolution per group, concatenated — c convolutions of a
//! single channel — and back-propagates through them the same way.
//!
//! Layout NCHW, weights (c, 1, k, k), k odd. f32 and f64 on the CPU; other devices use candle's
//! grouped `conv2d` (the same math, slower).

use super::cpu_op::{lane_dot, run2, FloatKernel2};
use super::threads::{fill_planes, parallel_items, threads, SharedMut};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};

/// Depthwise "same" convolution of `x` (n, c, h, w) with `w` (c, 1, k, k).
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (wc, one, k, k2) = w.dims4()?;
    if wc != c || one != 1 || k != k2 || k % 2 == 0 {
        candle_core::bail!("depthwise convolution: weights {:?} do not fit {c} channels (expected ({c}, 1, k, k), k odd)", w.dims())
    }
    if super::portable::cpu_kernel(x.device(), x.dtype()) {
        x.contiguous()?.apply_op2(&w.contiguous()?, Depthwise { k, adjoint: false })
    } else {
        depthwise_portable(x, w)
    }
}

/// [`depthwise_conv2d`] from candle's ops, for every device: the sum over the k×k taps of the
/// zero-padded input, shifted, times each channel's tap weight. (candle 0.11's grouped conv2d
/// has no correct backward: it runs the transposed convolution without the groups.)
pub fn depthwise_portable(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (_, c, h, width) = x.dims4()?;
    let k = w.dim(2)?;
    let p = k / 2;
    let padded = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
    let mut sum: Option<Tensor> = None;
    for ti in 0..k {
        for tj in 0..k {
            // (c, 1, k, k) → tap (ti, tj) as (1, c, 1, 1)
            let tap = w.narrow(2, ti, 1)?.narrow(3, tj, 1)?.reshape((1, c, 1, 1))?;
            let term = padded.narrow(2, ti, h)?.narrow(3, tj, width)?.broadcast_mul(&tap)?;
            sum = Some(match sum {
                Some(s) => (s + term)?,
                None => term,
            });
        }
    }
    sum.ok_or_else(|| candle_core::Error::Msg("depthwise convolution: empty kernel".into()))
}

/// For each of the k×k taps (ti, tj), `dst[y][x] += weight[ti][tj] · src[y + ti − p][x + tj − p]`
/// over every (y, x) whose source lies inside the h × w plane (p = k / 2). With `flip`, the
/// adjoint: `dst[y + ti − p][x + tj − p] += weight[ti][tj] · src[y][x]`, which is the input
/// gradient when `src` is the output gradient. Rows outermost, so a large plane is streamed
/// once rather than once per tap.
fn accumulate_taps<T: WithDType>(src: &[T], dst: &mut [T], weight: &[T], h: usize, w: usize, k: usize, flip: bool) {
    let p = k / 2;
    for y in 0..h {
        for ti in 0..k {
            let sy = y + ti;
            if sy < p || sy - p >= h {
                continue;
            }
            let sy = sy - p;
            for tj in 0..k {
                let wt = weight[ti * k + tj];
                // Output columns x whose source column x + tj − p is in 0..w.
                let (x0, x1) = (p.saturating_sub(tj), (w + p).saturating_sub(tj).min(w));
                if x0 >= x1 {
                    continue;
                }
                let (sx0, sx1) = (x0 + tj - p, x1 + tj - p);
                if flip {
                    let (s, d) = (&src[y * w + x0..y * w + x1], &mut dst[sy * w + sx0..sy * w + sx1]);
                    for (d, &s) in d.iter_mut().zip(s) {
                        *d += wt * s;
                    }
                } else {
                    let (s, d) = (&src[sy * w + sx0..sy * w + sx1], &mut dst[y * w + x0..y * w + x1]);
                    for (d, &s) in d.iter_mut().zip(s) {
                        *d += wt * s;
                    }
                }
            }
        }
    }
}

/// Each (image, channel) plane of `src` through its channel's filter, planes split between threads.
fn per_plane<T: WithDType>(src: &[T], weight: &[T], (n, c, h, w): (usize, usize, usize, usize), k: usize, flip: bool) -> Vec<T> {
    let plane = h * w;
    fill_planes(n * c, plane, T::from_f64(0.0), |item, out| {
        let ch = item % c;
        accumulate_taps(&src[item * plane..][..plane], out, &weight[ch * k * k..][..k * k], h, w, k, flip);
    })
}

/// dw[c][ti][tj] = Σ over images and pixels of dy[n, c][y][x] · x[n, c][y + ti − p][x + tj − p],
/// rows outermost (each row pair is read once for all k×k taps); each row's products are summed
/// in 8 lanes of `T`, the rows in f64.
fn weight_grad<T: WithDType>(x: &[T], dy: &[T], (n, c, h, w): (usize, usize, usize, usize), k: usize) -> Vec<T> {
    let (plane, p) = (h * w, k / 2);
    let mut out = vec![T::from_f64(0.0); c * k * k];
    let dst = SharedMut(out.as_mut_ptr());
    parallel_items(c, vec![(); threads()], |ch, _| {
        let mut acc = vec![0.0f64; k * k];
        for img in 0..n {
            let base = (img * c + ch) * plane;
            let (xs, gs) = (&x[base..][..plane], &dy[base..][..plane]);
            for y in 0..h {
                for ti in 0..k {
                    let sy = y + ti;
                    if sy < p || sy - p >= h {
                        continue;
                    }
                    let sy = sy - p;
                    for tj in 0..k {
                        let (x0, x1) = (p.saturating_sub(tj), (w + p).saturating_sub(tj).min(w));
                        if x0 >= x1 {
                            continue;
                        }
                        let (g, s) = (&gs[y * w + x0..y * w + x1], &xs[sy * w + x0 + tj - p..sy * w + x1 + tj - p]);
                        acc[ti * k + tj] += lane_dot(g, s);
                    }
                }
            }
        }
        // SAFETY: item ch alone writes channel ch's k × k taps.
        let taps = unsafe { std::slice::from_raw_parts_mut(dst.get().add(ch * k * k), k * k) };
        for (t, a) in taps.iter_mut().zip(&acc) {
            *t = T::from_f64(*a);
        }
    });
    out
}

/// (x, w) → y, or with `adjoint`, (dy, w) → dx: each plane through its channel's k × k filter.
struct Depthwise {
    k: usize,
    adjoint: bool,
}

impl FloatKernel2 for Depthwise {
    const NAME: &'static str = "depthwise op";

    fn run<T: WithDType>(&self, a: &[T], w: &[T], dims: (usize, usize, usize, usize)) -> Vec<T> {
        per_plane(a, w, dims, self.k, self.adjoint)
    }
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        if self.adjoint {
            "depthwise-conv2d-input-grad"
        } else {
            "depthwise-conv2d"
        }
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((run2(self, s1, l1, s2, l2)?, l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(w, &Depthwise { k: self.k, adjoint: true })?;
        let dw = x.apply_op2_no_bwd(&grad, &DepthwiseWeightGrad { k: self.k })?;
        Ok((Some(dx), Some(dw)))
    }
}

/// (x, dy) → dw (c, 1, k, k).
struct DepthwiseWeightGrad {
    k: usize,
}

impl FloatKernel2 for DepthwiseWeightGrad {
    const NAME: &'static str = "depthwise gradient";

    fn run<T: WithDType>(&self, x: &[T], dy: &[T], dims: (usize, usize, usize, usize)) -> Vec<T> {
        weight_grad(x, dy, dims, self.k)
    }
}

impl CustomOp2 for DepthwiseWeightGrad {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-weight-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let c = l1.shape().dims4()?.1;
        Ok((run2(self, s1, l1, s2, l2)?, Shape::from((c, 1, self.k, self.k))))
    }
}
