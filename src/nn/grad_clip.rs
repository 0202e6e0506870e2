//! L1 gradient clipping (Zhu et al., ICCV 2021, section 3.4): an op whose forward is the
//! identity and whose backward rescales the incoming gradient G of each sample to Frobenius
//! norm at most τ = 1/√(c·h·w), the norm an L1 loss's gradient has on a c×h×w sample
//! (every entry ±1/(c·h·w)):
//!
//!   C(G, τ) = min(1, τ/‖G‖_F) · G        (eq. 7)
//!
//! The USR generator's output passes through it before the discriminator and the semantic
//! branch, so whatever those two send back is never louder than an L1 loss would be. The
//! norm is taken per sample (the first axis): one sample's loud gradient does not quiet the
//! others. The backward is plain tensor ops, so it runs on any device.

use super::cpu_op::slice;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

const OP: &str = "l1 gradient clipping op";

/// `x` (n, …) unchanged; in the backward, each sample's gradient clipped to norm
/// 1/√(elements per sample).
pub fn l1_gradient_clip(x: &Tensor) -> Result<Tensor> {
    if x.rank() < 2 {
        candle_core::bail!("{OP}: needs (samples, ...), got shape {:?}", x.dims())
    }
    // A fresh contiguous buffer (offset 0), so every device's forward may copy it whole.
    let x = if x.device().is_cpu() { x.contiguous()? } else { x.affine(1.0, 0.0)? };
    x.apply_op1(L1GradientClip)
}

/// τ for a sample of `elements` values: the Frobenius norm of an L1 loss's gradient on it.
pub fn l1_threshold(elements: usize) -> f64 {
    1.0 / (elements.max(1) as f64).sqrt()
}

/// C(G, τ) per sample of `grad` (n, …), τ = [`l1_threshold`] of one sample's size.
pub fn clip_per_sample(grad: &Tensor) -> Result<Tensor> {
    let n = grad.dim(0)?;
    let per = grad.elem_count() / n.max(1);
    let tau = l1_threshold(per);
    // ‖G_i‖_F per sample, (n, 1, …, 1) to broadcast back.
    let flat = grad.reshape((n, per))?;
    let norm = flat.to_dtype(DType::F64)?.sqr()?.sum_keepdim(1)?.sqrt()?;
    // min(1, τ/‖G‖); a zero gradient stays zero (factor 1).
    let factor = norm.affine(1.0 / tau, 0.0)?.maximum(1.0)?.recip()?.to_dtype(grad.dtype())?;
    flat.broadcast_mul(&factor)?.reshape(grad.shape())
}

struct L1GradientClip;

impl CustomOp1 for L1GradientClip {
    fn name(&self) -> &'static str {
        "l1-gradient-clip"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s.dtype() {
            DType::F32 => CpuStorage::F32(slice::<f32>(s, l, OP)?.to_vec()),
            DType::F64 => CpuStorage::F64(slice::<f64>(s, l, OP)?.to_vec()),
            other => candle_core::bail!("{OP}: unsupported dtype {other:?}"),
        };
        Ok((out, l.shape().clone()))
    }

    /// Untested: no GPU was at hand (the input is a fresh buffer, so a whole copy is exact).
    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((s.try_clone(l)?, l.shape().clone()))
    }

    /// Untested: Metal cannot be built here.
    #[cfg(feature = "metal")]
    fn metal_fwd(&self, s: &candle_core::MetalStorage, l: &Layout) -> Result<(candle_core::MetalStorage, Shape)> {
        Ok((s.try_clone(l)?, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(clip_per_sample(grad)?))
    }
}
