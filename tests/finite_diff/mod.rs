//! Central finite differences in f64, shared by the gradient tests (`tests/gradients.rs`,
//! `tests/transformer_ops.rs`): deterministic inputs, a scalar loss that weighs every output
//! differently, and the largest gap between autograd and the numeric gradient.

// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use candle_core::{Device, Tensor, Var};

/// Step of the central differences.
pub const EPS: f64 = 1e-6;

/// Deterministic values in (-1, 1) of `shape`, f64, from a small LCG (candle's RNG cannot be
/// seeded).
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let values: Vec<f64> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Σ y · r: a scalar whose gradient is every output's gradient weighted differently.
pub fn weighted_sum(y: &Tensor, seed: u64) -> candle_core::Result<Tensor> {
    (y * random(y.dims(), seed).to_dtype(y.dtype())?)?.sum_all()
}

/// Largest |autograd − finite difference| over the elements of `x`, relative to the largest
/// finite-difference gradient (floored at 1).
pub fn gradient_error(x: &Tensor, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> f64 {
    let var = Var::from_tensor(x).unwrap();
    let analytic: Vec<f64> = f(var.as_tensor()).unwrap().backward().unwrap().get(var.as_tensor()).expect("a gradient reaches the input").flatten_all().unwrap().to_vec1().unwrap();
    let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    relative_error(&base, &analytic, (0..base.len()).collect(), |v| f(&Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap()).unwrap().to_scalar::<f64>().unwrap())
}

/// [`gradient_error`] over `samples` elements spread over `x` (large inputs, whole networks).
pub fn sampled_gradient_error(x: &Tensor, samples: usize, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> f64 {
    let var = Var::from_tensor(x).unwrap();
    let analytic: Vec<f64> = f(var.as_tensor()).unwrap().backward().unwrap().get(var.as_tensor()).expect("a gradient reaches the input").flatten_all().unwrap().to_vec1().unwrap();
    let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    // a stride coprime to the usual sides, so the samples spread over channels, rows and columns
    let step = (base.len() / samples.max(1)).max(1) | 1;
    relative_error(&base, &analytic, (0..base.len()).step_by(step).collect(), |v| f(&Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap()).unwrap().to_scalar::<f64>().unwrap())
}

/// The same for a model's variable `var`, differentiated through by setting it to each
/// perturbed value: `samples` elements spread over it, `loss` the model's scalar loss. `var`
/// holds its original value again afterwards.
pub fn variable_gradient_error(var: &Var, samples: usize, loss: impl Fn() -> Tensor) -> f64 {
    let original = var.as_tensor().copy().unwrap();
    let analytic: Vec<f64> = loss().backward().unwrap().get(var.as_tensor()).expect("a gradient reaches the variable").flatten_all().unwrap().to_vec1().unwrap();
    let base: Vec<f64> = original.flatten_all().unwrap().to_vec1().unwrap();
    let picked = (0..base.len()).step_by((base.len() / samples).max(1)).collect();
    let err = relative_error(&base, &analytic, picked, |v| {
        var.set(&Tensor::from_vec(v, original.shape(), &Device::Cpu).unwrap()).unwrap();
        loss().to_scalar::<f64>().unwrap()
    });
    var.set(&original).unwrap();
    err
}

/// max |numeric − analytic| / max(1, max |numeric|) over the `picked` elements, the numeric
/// gradient from `eval` of the values with one element moved by ±EPS.
fn relative_error(base: &[f64], analytic: &[f64], picked: Vec<usize>, eval: impl Fn(Vec<f64>) -> f64) -> f64 {
    let (mut worst, mut scale) = (0.0f64, 1.0f64);
    for i in picked {
        let at = |delta: f64| {
            let mut v = base.to_vec();
            v[i] += delta;
            eval(v)
        };
        let numeric = (at(EPS) - at(-EPS)) / (2.0 * EPS);
        scale = scale.max(numeric.abs());
        worst = worst.max((numeric - analytic[i]).abs());
    }
    worst / scale
}
