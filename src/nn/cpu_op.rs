//! Plumbing shared by the CPU custom ops (batch norm, max-pool, LeakyReLU, depthwise
//! convolution, GELU, layer norm): the contiguous slice behind a storage, and running a kernel
//! written once for any float type on f32 or f64 storages.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, WithDType};

/// The values of a contiguous tensor; `op` names the op in the error.
pub fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [T]> {
    let Some((start, end)) = l.contiguous_offsets() else { candle_core::bail!("{op} needs contiguous tensors") };
    Ok(&s.as_slice::<T>()?[start..end])
}

/// A kernel over two same-shaped tensors of one float type, written once for f32 and f64.
pub trait FloatKernel2 {
    /// The op's name in errors.
    const NAME: &'static str;
    /// `a` and `b` are contiguous; `dims` is `a`'s (n, c, h, w).
    fn run<T: WithDType>(&self, a: &[T], b: &[T], dims: (usize, usize, usize, usize)) -> Vec<T>;
}

/// `kernel` on the storages of a 4-D `a` and a `b` of the same dtype.
pub fn run2<K: FloatKernel2>(kernel: &K, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<CpuStorage> {
    let dims = l1.shape().dims4()?;
    Ok(match s1.dtype() {
        DType::F32 => CpuStorage::F32(kernel.run(slice::<f32>(s1, l1, K::NAME)?, slice(s2, l2, K::NAME)?, dims)),
        DType::F64 => CpuStorage::F64(kernel.run(slice::<f64>(s1, l1, K::NAME)?, slice(s2, l2, K::NAME)?, dims)),
        other => candle_core::bail!("{}: unsupported dtype {other:?}", K::NAME),
    })
}

/// A kernel over three same-shaped tensors of one float type, written once for f32 and f64.
pub trait FloatKernel3 {
    /// The op's name in errors.
    const NAME: &'static str;
    /// `a`, `b` and `c` are contiguous; `dims` is `a`'s (n, c, h, w).
    fn run<T: WithDType>(&self, a: &[T], b: &[T], c: &[T], dims: (usize, usize, usize, usize)) -> Vec<T>;
}

/// `kernel` on the storages of a 4-D `a` and a `b` and `c` of the same dtype.
pub fn run3<K: FloatKernel3>(kernel: &K, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<CpuStorage> {
    let dims = l1.shape().dims4()?;
    if l2.shape() != l1.shape() || l3.shape() != l1.shape() {
        candle_core::bail!("{}: shapes {:?}, {:?} and {:?} differ", K::NAME, l1.shape(), l2.shape(), l3.shape())
    }
    Ok(match s1.dtype() {
        DType::F32 => CpuStorage::F32(kernel.run(slice::<f32>(s1, l1, K::NAME)?, slice(s2, l2, K::NAME)?, slice(s3, l3, K::NAME)?, dims)),
        DType::F64 => CpuStorage::F64(kernel.run(slice::<f64>(s1, l1, K::NAME)?, slice(s2, l2, K::NAME)?, slice(s3, l3, K::NAME)?, dims)),
        other => candle_core::bail!("{}: unsupported dtype {other:?}", K::NAME),
    })
}

/// Σ f(a[i], b[i], c[i]) over three equally long slices, accumulated in `T` over 16 independent
/// lanes and returned in f64. A single running sum is one long dependency chain that the
/// compiler may not reorder (float addition is not associative); sixteen lanes vectorise.
#[inline(always)]
pub fn lane_sum<T: WithDType>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T) -> f64 {
    const LANES: usize = 16;
    let mut acc = [T::from_f64(0.0); LANES];
    let (ca, cb, cc) = (a.chunks_exact(LANES), b.chunks_exact(LANES), c.chunks_exact(LANES));
    let tail = ca.remainder().iter().zip(cb.remainder()).zip(cc.remainder()).map(|((&x, &y), &z)| f(x, y, z).to_f64()).sum::<f64>();
    for ((xa, xb), xc) in ca.zip(cb).zip(cc) {
        for l in 0..LANES {
            acc[l] += f(xa[l], xb[l], xc[l]);
        }
    }
    acc.iter().map(|v| v.to_f64()).sum::<f64>() + tail
}

/// Σ a[i]·b[i] over 8 independent lanes (one running sum would be a dependency chain the
/// compiler may not reorder), returned in f64.
#[inline(always)]
pub fn lane_dot<T: WithDType>(a: &[T], b: &[T]) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [T::from_f64(0.0); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| (x * y).to_f64()).sum();
    for (xa, xb) in ca.zip(cb) {
        for l in 0..LANES {
            lanes[l] += xa[l] * xb[l];
        }
    }
    lanes.iter().map(|v| v.to_f64()).sum::<f64>() + tail
}
