//! Training mode's convolution → batch norm → LeakyReLU as one op each way on the CPU.
//!
//! Why: candle's backward adds every gradient that reaches a tensor of the graph into a fresh
//! zero tensor of that tensor's size, and each op's output is such a tensor. As two ops, the
//! convolution's output (batch norm's input) costs an allocation, a zero fill and an addition
//! over the whole activation every training step; in the U-Net's step those additions were
//! more time than the batch norms themselves. As one op the convolution's output stays inside
//! it (kept for the backward pass) and batch norm's input gradient goes straight into the
//! convolution's gradients. The arithmetic is the two ops' own ([`super::conv`],
//! [`super::batchnorm`]), so results are the same.

use super::batchnorm::{BatchNorm2d, BatchNormTrain};
use super::conv::{conv_gradients, conv_storage, Conv, Geometry};
use super::cpu_op::slice;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Device, Layout, Module, Result, Shape, Tensor};
use std::sync::Mutex;

/// `bn.forward_act_t(conv.forward(x), true, leaky_slope)`, moving `bn`'s running statistics.
/// One op on the CPU for f32/f64 and a convolution without bias; the two ops elsewhere.
pub fn conv_bn_act_train(x: &Tensor, conv: &Conv, bn: &BatchNorm2d, leaky_slope: Option<f64>) -> Result<Tensor> {
    let w = conv.weight();
    let cpu = super::portable::cpu_kernel(x.device(), x.dtype()) && x.dtype() == w.dtype() && x.rank() == 4;
    if !cpu || conv.has_bias() {
        return bn.forward_act_t(&conv.forward(x)?, true, leaky_slope);
    }
    let geometry = Geometry::new(x.dims(), w.dims(), conv.padding(), 1)?;
    let (bn_op, stats, count) = bn.train_op(geometry.output_dims(), leaky_slope)?;
    // γ and β travel as one tensor (candle's ops take at most three inputs); its gradient is
    // split back by the concatenation's own backward pass.
    let gamma_beta = Tensor::cat(&[bn.weight(), bn.bias()], 0)?;
    let op = ConvBnTrain { geometry, bn: bn_op, conv_output: Mutex::new(None) };
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &gamma_beta.contiguous()?, op)?;
    bn.update_running_statistics(&stats.lock().unwrap_or_else(|e| e.into_inner()), count, x.device())?;
    Ok(y)
}

struct ConvBnTrain {
    geometry: Geometry,
    bn: BatchNormTrain,
    /// The convolution's output, which batch norm's backward pass reads.
    conv_output: Mutex<Option<Tensor>>,
}

const OP: &str = "conv-bn op";

impl CustomOp3 for ConvBnTrain {
    fn name(&self) -> &'static str {
        "conv-bn-train"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let dims = g.output_dims();
        let c = dims.1;
        if l3.shape().elem_count() != 2 * c {
            candle_core::bail!("{OP}: γ and β need {c} values each")
        }
        let z = conv_storage(g, (s1, l1), (s2, l2), None, None)?;
        let shape = Shape::from(dims);
        let (y, z) = match z {
            CpuStorage::F32(z) => {
                let gb = slice::<f32>(s3, l3, OP)?;
                (CpuStorage::F32(self.bn.run(&z, &gb[..c], &gb[c..], dims)), Tensor::from_vec(z, shape.clone(), &Device::Cpu)?)
            }
            CpuStorage::F64(z) => {
                let gb = slice::<f64>(s3, l3, OP)?;
                (CpuStorage::F64(self.bn.run(&z, &gb[..c], &gb[c..], dims)), Tensor::from_vec(z, shape.clone(), &Device::Cpu)?)
            }
            other => candle_core::bail!("{OP}: unsupported dtype {:?}", other.dtype()),
        };
        *self.conv_output.lock().unwrap_or_else(|e| e.into_inner()) = Some(z);
        Ok((y, shape))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, gamma_beta: &Tensor, y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(z) = self.conv_output.lock().unwrap_or_else(|e| e.into_inner()).clone() else { candle_core::bail!("{OP}: backward before forward") };
        let c = self.geometry.output_dims().1;
        let (gamma, beta) = (gamma_beta.narrow(0, 0, c)?, gamma_beta.narrow(0, c, c)?);
        let (dz, dgamma, dbeta) = super::profile::timed("backward: batch norm", || self.bn.gradients(&z, &gamma, &beta, y, grad))?;
        let (Some(dz), Some(dgamma), Some(dbeta)) = (dz, dgamma, dbeta) else { candle_core::bail!("{OP}: batch norm gave no gradient") };
        let (dx, dw) = conv_gradients(self.geometry, x, w, &dz)?;
        Ok((dx, Some(dw), Some(Tensor::cat(&[dgamma, dbeta], 0)?)))
    }
}
