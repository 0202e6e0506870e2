//! One K×K kernel shared by every plane, applied with stride s and no padding: UAL's degradation
//! network (a blur then down-sampling, the same for every band). A CPU op with both gradients.
//! candle's generic convolution runs it as an im2col of every plane — K² values per output pixel
//! copied out before one matrix product — and back-propagates through the same copies; here each
//! output pixel is K dot products of K contiguous values, and each gradient K axpys.
//!
//! Layout: planes (n, 1, H, W), kernel (1, 1, K, K), output (n, 1, ⌊(H − K)/s⌋ + 1, …), a
//! correlation (the kernel is not flipped), as `conv2d(planes, kernel, 0, s)`. f32 and f64 on
//! the CPU; other devices use candle's `conv2d` (the same math).

use super::cpu_op::{lane_dot, run2, FloatKernel2};
use super::threads::{fill_planes, parallel_items, threads, SharedMut};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};

/// `planes` (n, 1, H, W) through `kernel` (1, 1, K, K) with stride `stride`, no padding.
pub fn strided_blur(planes: &Tensor, kernel: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, one, h, w) = planes.dims4()?;
    let (k1, k2, k, kw) = kernel.dims4()?;
    if one != 1 || k1 != 1 || k2 != 1 || k != kw || k == 0 || stride == 0 || h < k || w < k {
        candle_core::bail!("strided blur: planes {:?} and kernel {:?} do not fit (expected (n, 1, H, W) and (1, 1, K, K) with K ≤ H, W)", planes.dims(), kernel.dims())
    }
    if super::portable::cpu_kernel(planes.device(), planes.dtype()) {
        planes.contiguous()?.apply_op2(&kernel.contiguous()?, StridedBlur { k, stride })
    } else {
        super::conv::conv2d_portable(planes, kernel, 0, stride)
    }
}

/// The output side of a side `len` input.
fn out_side(len: usize, k: usize, stride: usize) -> usize {
    (len - k) / stride + 1
}

/// (planes, kernel) → output.
struct StridedBlur {
    k: usize,
    stride: usize,
}

impl FloatKernel2 for StridedBlur {
    const NAME: &'static str = "strided blur";

    fn run<T: WithDType>(&self, x: &[T], kernel: &[T], (n, _, h, w): (usize, usize, usize, usize)) -> Vec<T> {
        let (k, s) = (self.k, self.stride);
        let (oh, ow) = (out_side(h, k, s), out_side(w, k, s));
        fill_planes(n, oh * ow, T::from_f64(0.0), |p, out| {
            let plane = &x[p * h * w..][..h * w];
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.0f64;
                    for u in 0..k {
                        acc += lane_dot(&kernel[u * k..][..k], &plane[(i * s + u) * w + j * s..][..k]);
                    }
                    out[i * ow + j] = T::from_f64(acc);
                }
            }
        })
    }
}

impl CustomOp2 for StridedBlur {
    fn name(&self) -> &'static str {
        "strided-blur"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, _, h, w) = l1.shape().dims4()?;
        let shape = Shape::from((n, 1, out_side(h, self.k, self.stride), out_side(w, self.k, self.stride)));
        Ok((run2(self, s1, l1, s2, l2)?, shape))
    }

    fn bwd(&self, x: &Tensor, kernel: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (n, _, h, w) = x.dims4()?;
        let dx = grad.apply_op2_no_bwd(kernel, &InputGrad { k: self.k, stride: self.stride, h, w })?;
        let dk = x.apply_op2_no_bwd(&grad, &KernelGrad { k: self.k, stride: self.stride })?;
        debug_assert_eq!(dx.dims(), &[n, 1, h, w]);
        Ok((Some(dx), Some(dk)))
    }
}

/// (dy, kernel) → dx: dx[i·s + u][j·s + v] += k[u][v] · dy[i][j].
struct InputGrad {
    k: usize,
    stride: usize,
    h: usize,
    w: usize,
}

impl FloatKernel2 for InputGrad {
    const NAME: &'static str = "strided blur input gradient";

    fn run<T: WithDType>(&self, dy: &[T], kernel: &[T], (n, _, oh, ow): (usize, usize, usize, usize)) -> Vec<T> {
        let (k, s, h, w) = (self.k, self.stride, self.h, self.w);
        fill_planes(n, h * w, T::from_f64(0.0), |p, dx| {
            let g = &dy[p * oh * ow..][..oh * ow];
            for i in 0..oh {
                for j in 0..ow {
                    let gij = g[i * ow + j];
                    for u in 0..k {
                        let row = &mut dx[(i * s + u) * w + j * s..][..k];
                        for (d, &kv) in row.iter_mut().zip(&kernel[u * k..][..k]) {
                            *d += kv * gij;
                        }
                    }
                }
            }
        })
    }
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "strided-blur-input-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = l1.shape().dims4()?.0;
        Ok((run2(self, s1, l1, s2, l2)?, Shape::from((n, 1, self.h, self.w))))
    }
}

/// (x, dy) → dk: dk[u][v] = Σ over planes and output pixels of dy[i][j] · x[i·s + u][j·s + v],
/// one kernel row per work item, summed in f64.
struct KernelGrad {
    k: usize,
    stride: usize,
}

impl FloatKernel2 for KernelGrad {
    const NAME: &'static str = "strided blur kernel gradient";

    fn run<T: WithDType>(&self, x: &[T], dy: &[T], (n, _, h, w): (usize, usize, usize, usize)) -> Vec<T> {
        let (k, s) = (self.k, self.stride);
        let (oh, ow) = (out_side(h, k, s), out_side(w, k, s));
        let mut out = vec![T::from_f64(0.0); k * k];
        let dst = SharedMut(out.as_mut_ptr());
        parallel_items(k, vec![(); threads()], |u, _| {
            let mut acc = vec![0.0f64; k];
            for p in 0..n {
                let (plane, g) = (&x[p * h * w..][..h * w], &dy[p * oh * ow..][..oh * ow]);
                for i in 0..oh {
                    for j in 0..ow {
                        let gij = g[i * ow + j].to_f64();
                        for (a, &v) in acc.iter_mut().zip(&plane[(i * s + u) * w + j * s..][..k]) {
                            *a += gij * v.to_f64();
                        }
                    }
                }
            }
            // SAFETY: item u alone writes kernel row u.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add(u * k), k) };
            for (r, a) in row.iter_mut().zip(&acc) {
                *r = T::from_f64(*a);
            }
        });
        out
    }
}

impl CustomOp2 for KernelGrad {
    fn name(&self) -> &'static str {
        "strided-blur-kernel-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((run2(self, s1, l1, s2, l2)?, Shape::from((1, 1, self.k, self.k))))
    }
}
