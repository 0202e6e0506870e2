//! Batch normalisation over (batch, rows, cols) per channel, as PyTorch's `BatchNorm2d`, with
//! a training-mode pass that is one CPU op forward and two backward.
//!
//! Why: candle-nn's `BatchNorm` builds training mode from a dozen tensor ops (transpose, mean,
//! subtract, square, mean, sqrt, divide, scale, shift, transpose back), and their backward
//! passes reduce over broadcast dimensions, which candle does slowly on the CPU. In the U-Net's
//! training step that backward cost more than all the convolutions together. Here the forward
//! computes each channel's mean and variance in one pass and normalises in a second; the
//! backward uses the closed form
//!   dβ = Σ dy,  dγ = Σ dy·x̂,  dx = γ/σ · (dy − dβ/N − x̂·dγ/N).
//! Tensor names and running-statistics updates (momentum, unbiased variance) match PyTorch and
//! candle-nn, so weights move between the three unchanged. Other devices use candle-nn's op.

use super::conv::{parallel_items, threads, SharedMut};
use super::cpu_op::{run2, slice, FloatKernel2};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, Var, WithDType};
use candle_nn::{BatchNormConfig, Init, VarBuilder};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    running_mean: Var,
    running_var: Var,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    momentum: f64,
    /// candle-nn's version over the same tensors, for devices other than the CPU.
    fallback: candle_nn::BatchNorm,
}

impl BatchNorm2d {
    /// Tensors `running_mean`, `running_var`, `weight`, `bias` under `vb`.
    pub fn new(channels: usize, config: BatchNormConfig, vb: VarBuilder) -> Result<Self> {
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        // From a VarMap the tensors are variables already: these Vars share their storage, so
        // updating the running statistics updates what gets saved.
        let fallback = candle_nn::BatchNorm::new_with_momentum(channels, running_mean.clone(), running_var.clone(), weight.clone(), bias.clone(), config.eps, config.momentum)?;
        Ok(Self {
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            weight,
            bias,
            eps: config.eps,
            momentum: config.momentum,
            fallback,
        })
    }

    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// `train`: normalise by the batch's statistics and move the running ones; otherwise by
    /// the running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let fast = matches!(x.device(), Device::Cpu) && matches!(x.dtype(), DType::F32 | DType::F64) && x.rank() == 4;
        if !fast {
            return candle_core::ModuleT::forward_t(&self.fallback, x, train);
        }
        if !train {
            let scale = (&self.weight / (self.running_var.as_tensor() + self.eps)?.sqrt()?)?;
            let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
            return x.broadcast_mul(&scale.reshape((1, (), 1, 1))?)?.broadcast_add(&shift.reshape((1, (), 1, 1))?);
        }
        let (n, _, h, w) = x.dims4()?;
        let count = n * h * w;
        if count < 2 {
            candle_core::bail!("batch norm in training needs more than one value per channel, got {:?}", x.dims())
        }
        let stats = Arc::new(Mutex::new(Stats::default()));
        let y = x.contiguous()?.apply_op3(&self.weight.contiguous()?, &self.bias.contiguous()?, BatchNormTrain { eps: self.eps, stats: stats.clone() })?;
        let stats = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // PyTorch's update: the running variance takes the unbiased batch variance.
        let m = self.momentum;
        let dtype = self.running_mean.dtype();
        let device = x.device();
        let mean = Tensor::from_vec(stats.mean.clone(), stats.mean.len(), device)?.to_dtype(dtype)?;
        let unbiased = stats.var.iter().map(|v| v * count as f64 / (count as f64 - 1.0)).collect::<Vec<_>>();
        let var = Tensor::from_vec(unbiased, stats.var.len(), device)?.to_dtype(dtype)?;
        self.running_mean.set(&((self.running_mean.as_tensor().detach() * (1.0 - m))? + (mean * m)?)?)?;
        self.running_var.set(&((self.running_var.as_tensor().detach() * (1.0 - m))? + (var * m)?)?)?;
        Ok(y)
    }
}

/// One batch's per-channel mean and (biased) variance, in f64.
#[derive(Debug, Clone, Default)]
struct Stats {
    mean: Vec<f64>,
    var: Vec<f64>,
}

/// The training op's name in errors.
const OP: &str = "batch norm op";

/// (x, γ, β) → γ·x̂ + β, keeping the batch statistics for the backward pass.
struct BatchNormTrain {
    eps: f64,
    stats: Arc<Mutex<Stats>>,
}

impl BatchNormTrain {
    fn run<T: WithDType>(&self, x: &[T], gamma: &[T], beta: &[T], dims: (usize, usize, usize, usize)) -> Vec<T> {
        let (n, c, h, w) = dims;
        let plane = h * w;
        let count = (n * plane) as f64;
        let mut out = vec![T::from_f64(0.0); x.len()];
        let dst = SharedMut(out.as_mut_ptr());
        let mut mean = vec![0.0f64; c];
        let mut var = vec![0.0f64; c];
        let (mean_at, var_at) = (SharedMut(mean.as_mut_ptr()), SharedMut(var.as_mut_ptr()));
        parallel_items(c, vec![(); threads()], |ch, _| {
            let planes = || (0..n).map(|i| &x[(i * c + ch) * plane..][..plane]);
            let mu = planes().flat_map(|p| p.iter()).map(|v| v.to_f64()).sum::<f64>() / count;
            let variance = planes().flat_map(|p| p.iter()).map(|v| (v.to_f64() - mu).powi(2)).sum::<f64>() / count;
            let inv_std = 1.0 / (variance + self.eps).sqrt();
            let scale = gamma[ch].to_f64() * inv_std;
            let shift = beta[ch].to_f64() - mu * scale;
            for i in 0..n {
                let at = (i * c + ch) * plane;
                // SAFETY: channel `ch` alone writes its planes and its statistics.
                let out = unsafe { std::slice::from_raw_parts_mut(dst.get().add(at), plane) };
                for (o, v) in out.iter_mut().zip(&x[at..at + plane]) {
                    *o = T::from_f64(v.to_f64() * scale + shift);
                }
            }
            unsafe {
                *mean_at.get().add(ch) = mu;
                *var_at.get().add(ch) = variance;
            }
        });
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = Stats { mean, var };
        out
    }
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims4()?;
        if l2.shape().elem_count() != dims.1 || l3.shape().elem_count() != dims.1 {
            candle_core::bail!("batch norm: γ and β need {} values", dims.1)
        }
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(self.run(slice::<f32>(s1, l1, OP)?, slice(s2, l2, OP)?, slice(s3, l3, OP)?, dims)),
            DType::F64 => CpuStorage::F64(self.run(slice::<f64>(s1, l1, OP)?, slice(s2, l2, OP)?, slice(s3, l3, OP)?, dims)),
            other => candle_core::bail!("{OP}: unsupported dtype {other:?}"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        super::profile::timed("backward: batch norm", || self.gradients(x, gamma, beta, y, grad))
    }
}

impl BatchNormTrain {
    fn gradients(&self, x: &Tensor, gamma: &Tensor, _beta: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let inv_std: Vec<f64> = stats.var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let grad = grad.contiguous()?;
        let x = x.contiguous()?;
        // (2, c): Σ dy·x̂ (dγ) and Σ dy (dβ) per channel.
        let sums = x.apply_op2_no_bwd(&grad, &GradSums { mean: stats.mean.clone(), inv_std: inv_std.clone() })?;
        let sums_f64: Vec<Vec<f64>> = sums.to_dtype(DType::F64)?.to_vec2()?;
        let gamma_f64: Vec<f64> = gamma.to_dtype(DType::F64)?.to_vec1()?;
        let dx = x.apply_op2_no_bwd(&grad, &GradInput { mean: stats.mean, inv_std, gamma: gamma_f64, dgamma: sums_f64[0].clone(), dbeta: sums_f64[1].clone() })?;
        let dgamma = sums.get(0)?;
        let dbeta = sums.get(1)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// (x, dy) → (2, c): per channel Σ dy·(x − μ)/σ and Σ dy.
struct GradSums {
    mean: Vec<f64>,
    inv_std: Vec<f64>,
}

impl FloatKernel2 for GradSums {
    const NAME: &'static str = "batch norm gradient";

    fn run<T: WithDType>(&self, x: &[T], dy: &[T], (n, c, h, w): (usize, usize, usize, usize)) -> Vec<T> {
        let plane = h * w;
        let mut out = vec![T::from_f64(0.0); 2 * c];
        let dst = SharedMut(out.as_mut_ptr());
        parallel_items(c, vec![(); threads()], |ch, _| {
            let (mu, inv) = (self.mean[ch], self.inv_std[ch]);
            let (mut dot, mut sum) = (0.0f64, 0.0f64);
            for i in 0..n {
                let at = (i * c + ch) * plane;
                for (xv, g) in x[at..at + plane].iter().zip(&dy[at..at + plane]) {
                    let g = g.to_f64();
                    dot += g * (xv.to_f64() - mu) * inv;
                    sum += g;
                }
            }
            // SAFETY: channel `ch` alone writes its two sums.
            unsafe {
                *dst.get().add(ch) = T::from_f64(dot);
                *dst.get().add(c + ch) = T::from_f64(sum);
            }
        });
        out
    }
}

impl CustomOp2 for GradSums {
    fn name(&self) -> &'static str {
        "batch-norm-grad-sums"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((run2(self, s1, l1, s2, l2)?, Shape::from((2, l1.shape().dims4()?.1))))
    }
}

/// (x, dy) → dx = γ/σ · (dy − dβ/N − x̂·dγ/N).
struct GradInput {
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    gamma: Vec<f64>,
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
}

impl FloatKernel2 for GradInput {
    const NAME: &'static str = "batch norm gradient";

    fn run<T: WithDType>(&self, x: &[T], dy: &[T], (n, c, h, w): (usize, usize, usize, usize)) -> Vec<T> {
        let plane = h * w;
        let count = (n * plane) as f64;
        let mut out = vec![T::from_f64(0.0); x.len()];
        let dst = SharedMut(out.as_mut_ptr());
        parallel_items(c, vec![(); threads()], |ch, _| {
            let (mu, inv) = (self.mean[ch], self.inv_std[ch]);
            let k = self.gamma[ch] * inv;
            let (mean_dy, mean_dy_xhat) = (self.dbeta[ch] / count, self.dgamma[ch] / count);
            for i in 0..n {
                let at = (i * c + ch) * plane;
                // SAFETY: channel `ch` alone writes its planes.
                let out = unsafe { std::slice::from_raw_parts_mut(dst.get().add(at), plane) };
                for ((o, xv), g) in out.iter_mut().zip(&x[at..at + plane]).zip(&dy[at..at + plane]) {
                    let xhat = (xv.to_f64() - mu) * inv;
                    *o = T::from_f64(k * (g.to_f64() - mean_dy - xhat * mean_dy_xhat));
                }
            }
        });
        out
    }
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "batch-norm-grad-input"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((run2(self, s1, l1, s2, l2)?, l1.shape().clone()))
    }
}
