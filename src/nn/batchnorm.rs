//! Batch normalisation over (batch, rows, cols) per channel, as PyTorch's `BatchNorm2d`, with
//! a training-mode pass that is one CPU op each way.
//!
//! Why: candle-nn's `BatchNorm` builds training mode from a dozen tensor ops (transpose, mean,
//! subtract, square, mean, sqrt, divide, scale, shift, transpose back), and their backward
//! passes reduce over broadcast dimensions, which candle does slowly on the CPU. In the U-Net's
//! training step that backward cost more than all the convolutions together. Here the forward
//! computes each channel's mean and variance in one pass and normalises in a second; the
//! backward uses the closed form
//!   dβ = Σ dy,  dγ = Σ dy·x̂,  dx = γ/σ · (dy − dβ/N − x̂·dγ/N).
//! The U-Net's LeakyReLU that follows each batch norm can ride along ([`BatchNorm2d::forward_act_t`]):
//! applied as the output is stored, and its derivative taken inside the same backward passes,
//! which saves a pass over the activations each way and one more op in the graph.
//! Tensor names and running-statistics updates (momentum, unbiased variance) match PyTorch and
//! candle-nn, so weights move between the three unchanged. Other devices use candle-nn's op.

use super::threads::{parallel_items, threads, SharedMut};
use super::cpu_op::{lane_sum, run3, slice, FloatKernel3};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, Var, WithDType};
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
        self.forward_act_t(x, train, None)
    }

    /// Batch norm followed by LeakyReLU with `leaky_slope` (in [0, 1)) when given. In training
    /// on the CPU the two are one op each way: the activation is applied as the normalised
    /// value is stored, and its gradient is taken inside batch norm's backward (from the sign
    /// of the output, which is the sign of the normalised value for a slope ≥ 0).
    pub fn forward_act_t(&self, x: &Tensor, train: bool, leaky_slope: Option<f64>) -> Result<Tensor> {
        let fast = super::portable::cpu_kernel(x.device(), x.dtype()) && x.rank() == 4;
        if !fast || !train {
            check_slope(leaky_slope)?;
            let y = if fast {
                let scale = (&self.weight / (self.running_var.as_tensor() + self.eps)?.sqrt()?)?;
                let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
                x.broadcast_mul(&scale.reshape((1, (), 1, 1))?)?.broadcast_add(&shift.reshape((1, (), 1, 1))?)?
            } else {
                candle_core::ModuleT::forward_t(&self.fallback, x, train)?
            };
            return super::act::leaky_relu_if(y, leaky_slope);
        }
        let (op, stats, count) = self.train_op(x.dims4()?, leaky_slope)?;
        let y = x.contiguous()?.apply_op3(&self.weight.contiguous()?, &self.bias.contiguous()?, op)?;
        self.update_running_statistics(&stats.lock().unwrap_or_else(|e| e.into_inner()), count, x.device())?;
        Ok(y)
    }

    /// The training-mode op for an input of `dims` (LeakyReLU with `leaky_slope` when given),
    /// where it leaves the batch statistics once it has run, and the values per channel. Checks
    /// what the op needs: a slope in [0, 1) (its backward takes the derivative from the
    /// output's sign) and more than one value per channel.
    pub(super) fn train_op(&self, dims: (usize, usize, usize, usize), leaky_slope: Option<f64>) -> Result<(BatchNormTrain, Arc<Mutex<Stats>>, usize)> {
        check_slope(leaky_slope)?;
        let (n, _, h, w) = dims;
        let count = n * h * w;
        if count < 2 {
            candle_core::bail!("batch norm in training needs more than one value per channel, got {dims:?}")
        }
        let stats = Arc::new(Mutex::new(Stats::default()));
        Ok((BatchNormTrain { eps: self.eps, leaky_slope, stats: stats.clone() }, stats, count))
    }

    /// Move the running statistics toward one batch's, as PyTorch does: momentum, and the
    /// unbiased variance of `count` values per channel.
    pub(super) fn update_running_statistics(&self, stats: &Stats, count: usize, device: &Device) -> Result<()> {
        let m = self.momentum;
        let dtype = self.running_mean.dtype();
        let mean = Tensor::from_vec(stats.mean.clone(), stats.mean.len(), device)?.to_dtype(dtype)?;
        let unbiased = stats.var.iter().map(|v| v * count as f64 / (count as f64 - 1.0)).collect::<Vec<_>>();
        let var = Tensor::from_vec(unbiased, stats.var.len(), device)?.to_dtype(dtype)?;
        self.running_mean.set(&((self.running_mean.as_tensor().detach() * (1.0 - m))? + (mean * m)?)?)?;
        self.running_var.set(&((self.running_var.as_tensor().detach() * (1.0 - m))? + (var * m)?)?)
    }
}

/// LeakyReLU slopes batch norm can carry: in [0, 1).
fn check_slope(leaky_slope: Option<f64>) -> Result<()> {
    match leaky_slope {
        Some(s) if !(0.0..1.0).contains(&s) => candle_core::bail!("LeakyReLU slope must be in [0, 1), got {s}"),
        _ => Ok(()),
    }
}

/// One batch's per-channel mean and (biased) variance, in f64.
#[derive(Debug, Clone, Default)]
pub(super) struct Stats {
    mean: Vec<f64>,
    var: Vec<f64>,
}

/// The training op's name in errors.
const OP: &str = "batch norm op";

/// (x, γ, β) → γ·x̂ + β, then LeakyReLU if a slope is given, keeping the batch statistics for
/// the backward pass. Statistics are summed in f64 (per-lane partial sums in the tensor's
/// type); the per-value arithmetic runs in the tensor's type, so it vectorises.
pub(super) struct BatchNormTrain {
    eps: f64,
    leaky_slope: Option<f64>,
    stats: Arc<Mutex<Stats>>,
}

impl BatchNormTrain {
    pub(super) fn run<T: WithDType>(&self, x: &[T], gamma: &[T], beta: &[T], dims: (usize, usize, usize, usize)) -> Vec<T> {
        let (n, c, h, w) = dims;
        let plane = h * w;
        let count = (n * plane) as f64;
        let len = x.len();
        let mut out: Vec<T> = Vec::with_capacity(len);
        let dst = SharedMut(out.as_mut_ptr());
        let mut mean = vec![0.0f64; c];
        let mut var = vec![0.0f64; c];
        let (mean_at, var_at) = (SharedMut(mean.as_mut_ptr()), SharedMut(var.as_mut_ptr()));
        let zero = T::from_f64(0.0);
        parallel_items(c, vec![(); threads()], |ch, _| {
            let planes = || (0..n).map(|i| &x[(i * c + ch) * plane..][..plane]);
            let mu = planes().map(|p| lane_sum(p, p, p, |v, _, _| v)).sum::<f64>() / count;
            let mu_t = T::from_f64(mu);
            let variance = planes().map(|p| lane_sum(p, p, p, |v, _, _| (v - mu_t) * (v - mu_t))).sum::<f64>() / count;
            let inv_std = 1.0 / (variance + self.eps).sqrt();
            let scale = gamma[ch].to_f64() * inv_std;
            let (scale_t, shift_t) = (T::from_f64(scale), T::from_f64(beta[ch].to_f64() - mu * scale));
            for i in 0..n {
                let at = (i * c + ch) * plane;
                // SAFETY: channel `ch` alone writes its planes (within the capacity) and its
                // statistics.
                let out = unsafe { std::slice::from_raw_parts_mut(dst.get().add(at), plane) };
                let src = &x[at..at + plane];
                match self.leaky_slope {
                    Some(s) => {
                        let s = T::from_f64(s);
                        for (o, &v) in out.iter_mut().zip(src) {
                            let z = v * scale_t + shift_t;
                            *o = if z > zero { z } else { z * s };
                        }
                    }
                    None => out.iter_mut().zip(src).for_each(|(o, &v)| *o = v * scale_t + shift_t),
                }
            }
            unsafe {
                *mean_at.get().add(ch) = mu;
                *var_at.get().add(ch) = variance;
            }
        });
        // SAFETY: every channel's planes of every image were written above.
        unsafe { out.set_len(len) };
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
    pub(super) fn gradients(&self, x: &Tensor, gamma: &Tensor, _beta: &Tensor, y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let inv_std: Vec<f64> = stats.var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let gamma_f64: Vec<f64> = gamma.to_dtype(DType::F64)?.to_vec1()?;
        let op = Gradients { mean: stats.mean, inv_std, gamma: gamma_f64, leaky_slope: self.leaky_slope, parameter_grads: Mutex::new(Vec::new()) };
        let dx = x.contiguous()?.apply_op3_no_bwd(&grad.contiguous()?, &y.contiguous()?, &op)?;
        let (dgamma, dbeta): (Vec<f64>, Vec<f64>) = op.parameter_grads.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().unzip();
        let as_tensor = |v: Vec<f64>| Tensor::from_vec(v, gamma.dims(), gamma.device())?.to_dtype(gamma.dtype());
        Ok((Some(dx), Some(as_tensor(dgamma)?), Some(as_tensor(dbeta)?)))
    }
}

/// The gradient at batch norm's output: the incoming one through LeakyReLU's derivative (1
/// where the output is positive, the slope elsewhere). Without an activation the slope is 1,
/// which leaves dy exactly as it is: one branch-free select per value either way, which
/// vectorises where a match on an optional slope did not.
#[inline(always)]
fn through_activation<T: WithDType>(dy: T, y: T, slope: T) -> T {
    if y <= T::from_f64(0.0) {
        dy * slope
    } else {
        dy
    }
}

/// (x, dy, y) → dx = γ/σ · (dz − dβ/N − x̂·dγ/N), dz the gradient at batch norm's output,
/// with dγ = Σ dz·x̂ and dβ = Σ dz per channel left in `parameter_grads`.
///
/// One item per channel: its two sums over its planes, then dx while those planes are still in
/// cache (a channel of a training batch is a few hundred KB of x, dy and y). Sums and dx as two
/// ops over the whole tensors read everything from memory three times.
struct Gradients {
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    gamma: Vec<f64>,
    leaky_slope: Option<f64>,
    /// (dγ, dβ) per channel, written by `run`.
    parameter_grads: Mutex<Vec<(f64, f64)>>,
}

impl FloatKernel3 for Gradients {
    const NAME: &'static str = "batch norm gradient";

    fn run<T: WithDType>(&self, x: &[T], dy: &[T], y: &[T], (n, c, h, w): (usize, usize, usize, usize)) -> Vec<T> {
        let plane = h * w;
        let count = (n * plane) as f64;
        let len = x.len();
        let mut out: Vec<T> = Vec::with_capacity(len);
        let dst = SharedMut(out.as_mut_ptr());
        let mut parameter_grads = vec![(0.0, 0.0); c];
        let sums_at = SharedMut(parameter_grads.as_mut_ptr());
        let slope = T::from_f64(self.leaky_slope.unwrap_or(1.0));
        parallel_items(c, vec![(); threads()], |ch, _| {
            let (mu, inv) = (self.mean[ch], self.inv_std[ch]);
            let mu_t = T::from_f64(mu);
            let planes = || (0..n).map(|i| (i * c + ch) * plane..(i * c + ch + 1) * plane);
            let (mut dot, mut sum) = (0.0f64, 0.0f64);
            for r in planes() {
                // Two passes over the plane, the second from cache: one pass summing both did
                // not vectorise and took longer.
                let (x, dy, y) = (&x[r.clone()], &dy[r.clone()], &y[r]);
                dot += lane_sum(x, dy, y, |x, g, y| through_activation(g, y, slope) * (x - mu_t));
                sum += lane_sum(x, dy, y, |_, g, y| through_activation(g, y, slope));
            }
            let (dgamma, dbeta) = (dot * inv, sum);
            let a = self.gamma[ch] * inv;
            let (a, b, e) = (T::from_f64(a), T::from_f64(a * dbeta / count), T::from_f64(a * inv * dgamma / count));
            for r in planes() {
                // SAFETY: this item alone writes channel ch's planes, inside the capacity.
                let out = unsafe { std::slice::from_raw_parts_mut(dst.get().add(r.start), plane) };
                for (((o, &xv), &g), &yv) in out.iter_mut().zip(&x[r.clone()]).zip(&dy[r.clone()]).zip(&y[r]) {
                    *o = a * through_activation(g, yv, slope) - b - e * (xv - mu_t);
                }
            }
            // SAFETY: entry ch is written by this item only.
            unsafe { *sums_at.get().add(ch) = (dgamma, dbeta) };
        });
        // SAFETY: every channel's planes were written above.
        unsafe { out.set_len(len) };
        *self.parameter_grads.lock().unwrap_or_else(|e| e.into_inner()) = parameter_grads;
        out
    }
}

impl CustomOp3 for Gradients {
    fn name(&self) -> &'static str {
        "batch-norm-gradients"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((run3(self, s1, l1, s2, l2, s3, l3)?, l1.shape().clone()))
    }
}
