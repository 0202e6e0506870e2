//! LeakyReLU as one fused CPU op with a one-pass backward. candle-nn's version is
//! max(x, 0) + s·min(x, 0): five tensor ops forward and more backward, which cost as much as
//! a third of the U-Net's training step. Other devices use that composition.

use candle_core::backend::BackendStorage;
use super::cpu_op::slice;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};

const OP: &str = "leaky_relu op";

pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    if !super::portable::cpu_kernel(x.device(), x.dtype()) {
        return candle_nn::ops::leaky_relu(x, slope);
    }
    x.contiguous()?.apply_op1(LeakyRelu { slope })
}

/// LeakyReLU with `slope` when one is given, `x` unchanged otherwise: the unfused path of the
/// ops that can apply an activation as they store (batch norm, the fused convolution).
pub fn leaky_relu_if(x: Tensor, slope: Option<f64>) -> Result<Tensor> {
    match slope {
        Some(s) => leaky_relu(&x, s),
        None => Ok(x),
    }
}

struct LeakyRelu {
    slope: f64,
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "leaky-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s.dtype() {
            DType::F32 => {
                let k = self.slope as f32;
                CpuStorage::F32(slice::<f32>(s, l, OP)?.iter().map(|&v| if v > 0.0 { v } else { v * k }).collect())
            }
            DType::F64 => CpuStorage::F64(slice::<f64>(s, l, OP)?.iter().map(|&v| if v > 0.0 { v } else { v * self.slope }).collect()),
            other => candle_core::bail!("leaky_relu op: unsupported dtype {other:?}"),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        super::profile::timed("backward: leaky_relu", || Ok(Some(grad.contiguous()?.apply_op2_no_bwd(&x.contiguous()?, &LeakyReluGrad { slope: self.slope })?)))
    }
}

/// (grad, x) → grad where x > 0, slope · grad elsewhere.
struct LeakyReluGrad {
    slope: f64,
}

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "leaky-relu-grad"
    }

    fn cpu_fwd(&self, g: &CpuStorage, gl: &Layout, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match g.dtype() {
            DType::F32 => {
                let k = self.slope as f32;
                CpuStorage::F32(slice::<f32>(g, gl, OP)?.iter().zip(slice::<f32>(x, xl, OP)?).map(|(&g, &x)| if x > 0.0 { g } else { g * k }).collect())
            }
            DType::F64 => CpuStorage::F64(
                slice::<f64>(g, gl, OP)?.iter().zip(slice::<f64>(x, xl, OP)?).map(|(&g, &x)| if x > 0.0 { g } else { g * self.slope }).collect(),
            ),
            other => candle_core::bail!("leaky_relu gradient: unsupported dtype {other:?}"),
        };
        Ok((out, gl.shape().clone()))
    }
}
