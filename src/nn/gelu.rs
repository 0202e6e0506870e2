//! GELU, the exact (erf) one, x·Φ(x), as a CPU op with a one-pass backward
//! dL/dx = dL/dy · (Φ(x) + x·φ(x)). candle 0.11 runs its `gelu_erf` on one thread and
//! differentiates it through a chain of about ten element-wise tensor ops; MST++ applies it
//! three times per block, on up to 4c channels. In f64 (the gradient checks) Φ is ½·erfc(−x/√2)
//! from libm, precise in the left tail; in f32 it is ½·(1 + erf(x/√2)) with a vectorisable erf
//! ([`erf_f32`]), as PyTorch computes it. Other devices use [`gelu_erf_portable`].

use super::cpu_op::slice;
use super::threads::{parallel_items, threads, SharedMut};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};

const OP: &str = "gelu op";
/// Elements per work item.
const CHUNK: usize = 1 << 14;

/// GELU (erf) of `x`.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !super::portable::cpu_kernel(x.device(), x.dtype()) {
        return gelu_erf_portable(x);
    }
    x.contiguous()?.apply_op1(Gelu)
}

/// x·Φ(x) = x·½(1 + erf(x/√2)) from candle's ops, for every device. Not candle's `gelu_erf`:
/// its backward takes 1/√(2π) as 0.398942, 7·10⁻⁷ off; erf's backward is exact.
pub fn gelu_erf_portable(x: &Tensor) -> Result<Tensor> {
    let cdf = ((x * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5;
    x * cdf?
}

/// The floating-point types the op runs on, with their Φ and φ.
trait Float: Copy + Send + Sync + Default + std::ops::Mul<Output = Self> + std::ops::Add<Output = Self> {
    /// Φ(x), the standard normal distribution function.
    fn cdf(self) -> Self;
    /// φ(x), the standard normal density.
    fn pdf(self) -> Self;
}

/// erf on f32 as a rational function of x on [−4, 4] (±1 beyond, where f32 rounds erf to ±1):
/// the odd numerator and even denominator Eigen and XLA use for single precision. Branch-free,
/// so the loop vectorises, where libm's `erff` branches per value and took a fifth of a
/// forward pass. Largest error 4.5e-7 (at |x| ≈ 3.6; PyTorch's is 6e-8), checked against the f64
/// erf in the tests.
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [-2.726_142_3e-10, 2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_6e-3, -1.609_603_3e-2];
    const BETA: [f32; 5] = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329_2e-3, -1.426_473_9e-2];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ALPHA[1..].iter().fold(ALPHA[0], |p, &a| p * x2 + a) * x;
    let q = BETA[1..].iter().fold(BETA[0], |q, &b| q * x2 + b);
    p / q
}

impl Float for f32 {
    fn cdf(self) -> f32 {
        (0.5 * (1.0 + erf_f32(self * std::f32::consts::FRAC_1_SQRT_2))).clamp(0.0, 1.0)
    }
    fn pdf(self) -> f32 {
        (-0.5 * self * self).exp() * (0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2)
    }
}

impl Float for f64 {
    fn cdf(self) -> f64 {
        0.5 * libm::erfc(-self * std::f64::consts::FRAC_1_SQRT_2)
    }
    fn pdf(self) -> f64 {
        (-0.5 * self * self).exp() * (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2)
    }
}

/// `out[i] = f(a[i], b[i])` over chunks split between the threads.
fn map2<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    let mut out = vec![T::default(); a.len()];
    let dst = SharedMut(out.as_mut_ptr());
    parallel_items(a.len().div_ceil(CHUNK), vec![(); threads()], |item, _| {
        let (start, end) = (item * CHUNK, ((item + 1) * CHUNK).min(a.len()));
        // SAFETY: item alone writes out[start..end].
        let out = unsafe { std::slice::from_raw_parts_mut(dst.get().add(start), end - start) };
        for ((o, &x), &y) in out.iter_mut().zip(&a[start..end]).zip(&b[start..end]) {
            *o = f(x, y);
        }
    });
    out
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s.dtype() {
            DType::F32 => {
                let x = slice::<f32>(s, l, OP)?;
                CpuStorage::F32(map2(x, x, |x, _| x * x.cdf()))
            }
            DType::F64 => {
                let x = slice::<f64>(s, l, OP)?;
                CpuStorage::F64(map2(x, x, |x, _| x * x.cdf()))
            }
            other => candle_core::bail!("gelu op: unsupported dtype {other:?}"),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2_no_bwd(&x.contiguous()?, &GeluGrad)?))
    }
}

/// (grad, x) → grad · (Φ(x) + x·φ(x)).
struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "gelu-erf-grad"
    }

    fn cpu_fwd(&self, g: &CpuStorage, gl: &Layout, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match g.dtype() {
            DType::F32 => CpuStorage::F32(map2(slice::<f32>(g, gl, OP)?, slice::<f32>(x, xl, OP)?, |g, x| g * (x.cdf() + x * x.pdf()))),
            DType::F64 => CpuStorage::F64(map2(slice::<f64>(g, gl, OP)?, slice::<f64>(x, xl, OP)?, |g, x| g * (x.cdf() + x * x.pdf()))),
            other => candle_core::bail!("gelu gradient: unsupported dtype {other:?}"),
        };
        Ok((out, gl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_f32_erf_is_within_5e_7_of_the_f64_one_everywhere() {
        let worst = (-80_000..=80_000).map(|i| i as f64 * 1e-4).map(|x| (erf_f32(x as f32) as f64 - libm::erf(x)).abs()).fold(0.0, f64::max);
        assert!(worst < 5e-7, "{worst:e}");
        assert_eq!(erf_f32(0.0), 0.0);
        assert!(erf_f32(9.0) <= 1.0 && erf_f32(-9.0) >= -1.0);
    }
}
