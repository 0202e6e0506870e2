//! 2×2 max-pool (stride 2) as a CPU op with a one-pass backward. Written as reshape + max,
//! candle's backward compares every input with a broadcast of the maxima over a 6-D strided
//! layout, twice (once per window axis): slower than the pooling itself by far.
//!
//! The gradient goes to the first maximum of each window in row-major order, as PyTorch
//! routes it.

use candle_core::backend::BackendStorage;
use super::threads::fill_planes;
use super::cpu_op::{run2, slice, FloatKernel2};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};

/// `Some(pooled)` on the CPU for f32/f64 (even sides checked by the caller), `None` elsewhere.
pub fn max_pool2x2_cpu(x: &Tensor) -> Result<Option<Tensor>> {
    if !super::portable::cpu_kernel(x.device(), x.dtype()) {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op1(MaxPool)?))
}

/// Index (0..4: top-left, top-right, bottom-left, bottom-right) of the first maximum.
fn argmax4<T: WithDType>(v: [T; 4]) -> usize {
    let mut best = 0;
    for i in 1..4 {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

/// The four values of window (i, j) of a plane `w` wide.
fn window<T: WithDType>(plane: &[T], w: usize, i: usize, j: usize) -> [T; 4] {
    let (top, bottom) = (2 * i * w + 2 * j, (2 * i + 1) * w + 2 * j);
    [plane[top], plane[top + 1], plane[bottom], plane[bottom + 1]]
}

struct MaxPool;

impl MaxPool {
    /// Planes split between the threads; within a plane, two input rows make one output row.
    fn run<T: WithDType>(x: &[T], planes: usize, h: usize, w: usize) -> Vec<T> {
        let (oh, ow) = (h / 2, w / 2);
        fill_planes(planes, oh * ow, T::from_f64(0.0), |p, out| {
            let plane = &x[p * h * w..][..h * w];
            for (i, out_row) in out.chunks_exact_mut(ow).enumerate() {
                let (top, bottom) = (&plane[2 * i * w..][..w], &plane[(2 * i + 1) * w..][..w]);
                for (j, o) in out_row.iter_mut().enumerate() {
                    let (a, b) = (max(top[2 * j], top[2 * j + 1]), max(bottom[2 * j], bottom[2 * j + 1]));
                    *o = max(a, b);
                }
            }
        })
    }
}

/// The larger of two, the first on a tie (as [`argmax4`] picks).
fn max<T: WithDType>(a: T, b: T) -> T {
    if b > a {
        b
    } else {
        a
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool-2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let out = match s.dtype() {
            DType::F32 => CpuStorage::F32(Self::run(slice::<f32>(s, l, "max-pool op")?, n * c, h, w)),
            DType::F64 => CpuStorage::F64(Self::run(slice::<f64>(s, l, "max-pool op")?, n * c, h, w)),
            other => candle_core::bail!("max-pool op: unsupported dtype {other:?}"),
        };
        Ok((out, Shape::from((n, c, h / 2, w / 2))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &MaxPoolGrad)?))
    }
}

/// (x, dy) → dx: each window's gradient at its first maximum, zero elsewhere.
struct MaxPoolGrad;

impl FloatKernel2 for MaxPoolGrad {
    const NAME: &'static str = "max-pool gradient";

    fn run<T: WithDType>(&self, x: &[T], dy: &[T], (n, c, h, w): (usize, usize, usize, usize)) -> Vec<T> {
        let (planes, oh, ow) = (n * c, h / 2, w / 2);
        let mut dx = vec![T::from_f64(0.0); planes * h * w];
        for ((plane, grad), out) in x.chunks_exact(h * w).zip(dy.chunks_exact(oh * ow)).zip(dx.chunks_exact_mut(h * w)).take(planes) {
            for i in 0..oh {
                for j in 0..ow {
                    let k = argmax4(window(plane, w, i, j));
                    out[(2 * i + k / 2) * w + 2 * j + k % 2] = grad[i * ow + j];
                }
            }
        }
        dx
    }
}

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "max-pool-2x2-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((run2(self, s1, l1, s2, l2)?, l1.shape().clone()))
    }
}
