//! The training objectives between a prediction and its target, and one CPU op that computes
//! each of them and its gradient in a pass apiece.
//!
//! Why an op of its own: composed from candle ops, L1 alone is a subtraction, an absolute value
//! and a mean, and candle's backward of those allocates and fills some ten full-size tensors
//! (the absolute value's derivative alone is ones, zeros, a comparison, a negation and a
//! select) and computes a gradient for the target that nothing uses. On a training batch's
//! output (8 × 31 × 64 × 64) that was several milliseconds a step. Here the forward pass is one
//! read of both tensors and the backward pass one read and one write.

use super::{Loss, MRAE_EPS};
use crate::nn::cpu_op::slice;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};
use std::sync::OnceLock;

const OP: &str = "pixel loss op";

/// Floor under the mean squared error before its square root, so the root stays differentiable
/// at a perfect fit.
const MSE_FLOOR: f64 = 1e-12;

/// The training objective between prediction and target (b, bands, p, p). One op on the CPU
/// for f32/f64 when the target needs no gradient (always, in training); otherwise candle's ops
/// ([`composed`]), which give the same value and gradient.
pub fn loss_fn(loss: Loss, pred: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    let cpu = crate::nn::portable::cpu_kernel(pred.device(), pred.dtype()) && pred.dtype() == target.dtype();
    if !cpu || target.track_op() {
        return composed(loss, pred, target);
    }
    if pred.shape() != target.shape() {
        candle_core::bail!("loss: prediction {:?} and target {:?} differ in shape", pred.dims(), target.dims())
    }
    pred.contiguous()?.apply_op2(&target.contiguous()?, PixelLoss { loss, sums: OnceLock::new() })
}

/// The same objectives written with candle's ops: the definition the fused op is tested
/// against, and the path off the CPU.
pub fn composed(loss: Loss, pred: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    let diff = (pred - target)?.abs()?;
    match loss {
        Loss::L1 => diff.mean_all(),
        Loss::Mrae => (diff / (target.abs()? + MRAE_EPS)?)?.mean_all(),
        Loss::MraeL1 => {
            let relative = (&diff / (target.abs()? + MRAE_EPS)?)?.mean_all()?;
            let scale = (target.abs()?.mean_all()? + MRAE_EPS)?;
            relative + diff.mean_all()?.div(&scale)?
        }
        Loss::MraeRmse => {
            let relative = (&diff / (target.abs()? + MRAE_EPS)?)?.mean_all()?;
            let scale = (target.abs()?.mean_all()? + MRAE_EPS)?;
            relative + (diff.sqr()?.mean_all()? + MSE_FLOOR)?.sqrt()?.div(&scale)?
        }
    }
}

/// Floor under ‖p‖²·‖t‖² in [`angle_term`], so a black pixel's cosine stays finite.
const ANGLE_FLOOR: f64 = 1e-12;

/// The spectral-angle term: the mean over pixels of 1 − cos(p, t), the cosine between the
/// predicted and the true spectrum (over dim 1, the bands) of each pixel of (b, bands, h, w).
/// What SAM scores, smooth where SAM's arccos is not (at a perfect fit). Candle's ops, so its
/// gradient is theirs (checked by finite differences in the tests).
pub fn angle_term(pred: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    let dot = (pred * target)?.sum_keepdim(1)?;
    let norms = (pred.sqr()?.sum_keepdim(1)? * target.sqr()?.sum_keepdim(1)?)?;
    let cos = (dot / (norms + ANGLE_FLOOR)?.sqrt()?)?;
    cos.affine(-1.0, 1.0)?.mean_all()
}

/// Means over all values, with d = prediction − target: |d|, |d| / (|target| + ε), d², |target|.
#[derive(Clone, Copy, Debug)]
struct Means {
    abs: f64,
    relative: f64,
    squared: f64,
    target: f64,
}

impl Means {
    fn of<T: WithDType>(pred: &[T], target: &[T]) -> Means {
        const LANES: usize = 16;
        let eps = T::from_f64(MRAE_EPS);
        // Sixteen independent partial sums per quantity, so the loop vectorises (a single running
        // sum is a dependency chain the compiler may not reorder); each chunk's partials are
        // added up in f64, so long tensors keep their precision.
        let mut total = [0.0f64; 4];
        for (p, t) in pred.chunks(4096).zip(target.chunks(4096)) {
            let mut acc = [[T::zero(); LANES]; 4];
            let (pc, tc) = (p.chunks_exact(LANES), t.chunks_exact(LANES));
            let tail = pc.remainder().iter().zip(tc.remainder());
            for (pv, tv) in pc.zip(tc) {
                for l in 0..LANES {
                    let (d, at) = (pv[l] - tv[l], abs(tv[l]));
                    acc[0][l] += abs(d);
                    acc[1][l] += abs(d) / (at + eps);
                    acc[2][l] += d * d;
                    acc[3][l] += at;
                }
            }
            for (sum, lanes) in total.iter_mut().zip(&acc) {
                *sum += lanes.iter().map(|v| v.to_f64()).sum::<f64>();
            }
            for (&p, &t) in tail {
                let (d, at) = ((p - t).to_f64(), t.to_f64().abs());
                total[0] += d.abs();
                total[1] += d.abs() / (at + MRAE_EPS);
                total[2] += d * d;
                total[3] += at;
            }
        }
        let n = pred.len().max(1) as f64;
        Means { abs: total[0] / n, relative: total[1] / n, squared: total[2] / n, target: total[3] / n }
    }

    /// The loss value.
    fn loss(&self, loss: Loss) -> f64 {
        let scale = self.target + MRAE_EPS;
        match loss {
            Loss::L1 => self.abs,
            Loss::Mrae => self.relative,
            Loss::MraeL1 => self.relative + self.abs / scale,
            Loss::MraeRmse => self.relative + (self.squared + MSE_FLOOR).sqrt() / scale,
        }
    }

    /// dL/dpred = sign(d)·(relative / (|t| + ε) + plain) + d·squared, for n values, as
    /// these three coefficients. The target's mean is a constant: the target needs no gradient.
    fn gradient_coefficients(&self, loss: Loss, n: usize) -> Coefficients {
        let (n, scale) = (n.max(1) as f64, self.target + MRAE_EPS);
        let relative = if matches!(loss, Loss::L1) { 0.0 } else { 1.0 / n };
        let plain = match loss {
            Loss::L1 => 1.0 / n,
            Loss::MraeL1 => 1.0 / (n * scale),
            Loss::Mrae | Loss::MraeRmse => 0.0,
        };
        // d/dp √(Σd²/n + floor) = d / (n·√(…)).
        let squared = if matches!(loss, Loss::MraeRmse) { 1.0 / (n * (self.squared + MSE_FLOOR).sqrt() * scale) } else { 0.0 };
        Coefficients { relative, plain, squared }
    }
}

fn abs<T: WithDType>(v: T) -> T {
    if v < T::zero() {
        T::zero() - v
    } else {
        v
    }
}

#[derive(Clone, Copy)]
struct Coefficients {
    relative: f64,
    plain: f64,
    squared: f64,
}

struct PixelLoss {
    loss: Loss,
    /// The forward pass's means, which the backward pass needs (the RMSE term's root and the
    /// target's mean).
    sums: OnceLock<Means>,
}

impl CustomOp2 for PixelLoss {
    fn name(&self) -> &'static str {
        "pixel-loss"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let means = match s1.dtype() {
            DType::F32 => Means::of(slice::<f32>(s1, l1, OP)?, slice::<f32>(s2, l2, OP)?),
            DType::F64 => Means::of(slice::<f64>(s1, l1, OP)?, slice::<f64>(s2, l2, OP)?),
            other => candle_core::bail!("{OP}: unsupported dtype {other:?}"),
        };
        let _ = self.sums.set(means);
        let value = means.loss(self.loss);
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(vec![value as f32]),
            _ => CpuStorage::F64(vec![value]),
        };
        Ok((out, Shape::from(())))
    }

    fn bwd(&self, pred: &Tensor, target: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(means) = self.sums.get() else { candle_core::bail!("{OP}: backward before forward") };
        let upstream = grad.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let c = means.gradient_coefficients(self.loss, pred.elem_count());
        let scaled = Coefficients { relative: c.relative * upstream, plain: c.plain * upstream, squared: c.squared * upstream };
        let dpred = pred.apply_op2_no_bwd(target, &PixelLossGrad { c: scaled })?;
        // `loss_fn` takes this op only for a target that tracks no gradient.
        Ok((Some(dpred), None))
    }
}

/// (pred, target) → dL/dpred, with the upstream gradient folded into the coefficients.
struct PixelLossGrad {
    c: Coefficients,
}

impl PixelLossGrad {
    fn run<T: WithDType>(&self, pred: &[T], target: &[T]) -> Vec<T> {
        let (relative, plain, squared) = (T::from_f64(self.c.relative), T::from_f64(self.c.plain), T::from_f64(self.c.squared));
        let (eps, one) = (T::from_f64(MRAE_EPS), T::one());
        pred.iter()
            .zip(target)
            .map(|(&p, &t)| {
                let d = p - t;
                // The sign as candle's `abs` backward takes it: +1 at d = 0.
                let sign = if d >= T::zero() { one } else { T::zero() - one };
                sign * (relative / (abs(t) + eps) + plain) + d * squared
            })
            .collect()
    }
}

impl CustomOp2 for PixelLossGrad {
    fn name(&self) -> &'static str {
        "pixel-loss-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(self.run(slice::<f32>(s1, l1, OP)?, slice::<f32>(s2, l2, OP)?)),
            DType::F64 => CpuStorage::F64(self.run(slice::<f64>(s1, l1, OP)?, slice::<f64>(s2, l2, OP)?)),
            other => candle_core::bail!("{OP}: unsupported dtype {other:?}"),
        };
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(dims: &[usize], seed: u64, dtype: DType) -> Tensor {
        let mut rng = crate::spectral::rng::Rng::new(seed);
        let n: usize = dims.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
    }

    fn value_and_gradient(loss: Loss, pred: &Tensor, target: &Tensor, fused: bool) -> (f64, Vec<f64>) {
        let var = Var::from_tensor(pred).unwrap();
        let l = if fused { loss_fn(loss, var.as_tensor(), target) } else { composed(loss, var.as_tensor(), target) }.unwrap();
        let g = l.backward().unwrap().get(var.as_tensor()).unwrap().flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
        (l.to_dtype(DType::F64).unwrap().to_scalar().unwrap(), g)
    }

    #[test]
    fn the_fused_op_equals_candles_composition_in_value_and_gradient() {
        // An odd length (not a multiple of the 16 lanes), values of both signs, a prediction
        // equal to the target at one value (the sign's tie), in f64 and f32.
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let target = random(&[2, 5, 3, 7], 1, dtype);
            let pred = random(&[2, 5, 3, 7], 2, dtype);
            let pred = Tensor::cat(&[&target.narrow(3, 0, 1).unwrap(), &pred.narrow(3, 1, 6).unwrap()], 3).unwrap();
            for loss in [Loss::L1, Loss::Mrae, Loss::MraeL1, Loss::MraeRmse] {
                let (fv, fg) = value_and_gradient(loss, &pred, &target, true);
                let (cv, cg) = value_and_gradient(loss, &pred, &target, false);
                assert!((fv - cv).abs() <= tol * cv.abs().max(1.0), "{loss:?} {dtype:?}: value {fv} vs {cv}");
                let scale = cg.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                for (i, (a, b)) in fg.iter().zip(&cg).enumerate() {
                    assert!((a - b).abs() <= tol * scale, "{loss:?} {dtype:?}: gradient {i}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn the_angle_term_is_one_minus_the_cosine_and_its_gradient_matches_finite_differences() {
        let target = random(&[2, 5, 3, 2], 7, DType::F64).abs().unwrap();
        let pred = random(&[2, 5, 3, 2], 8, DType::F64);
        // Value: by hand, pixel by pixel.
        let (pv, tv): (Vec<f64>, Vec<f64>) = (pred.flatten_all().unwrap().to_vec1().unwrap(), target.flatten_all().unwrap().to_vec1().unwrap());
        let idx = |b: usize, c: usize, y: usize, x: usize| ((b * 5 + c) * 3 + y) * 2 + x;
        let mut want = 0.0;
        for b in 0..2 {
            for y in 0..3 {
                for x in 0..2 {
                    let (mut dot, mut np, mut nt) = (0.0, 0.0, 0.0);
                    for c in 0..5 {
                        let (p, t) = (pv[idx(b, c, y, x)], tv[idx(b, c, y, x)]);
                        (dot, np, nt) = (dot + p * t, np + p * p, nt + t * t);
                    }
                    want += 1.0 - dot / (np * nt).sqrt();
                }
            }
        }
        want /= 12.0;
        let got = angle_term(&pred, &target).unwrap().to_scalar::<f64>().unwrap();
        assert!((got - want).abs() < 1e-12, "{got} against {want}");
        // A prediction that is a brighter copy of the target has no angle.
        let brighter = angle_term(&(&target * 3.0).unwrap(), &target).unwrap().to_scalar::<f64>().unwrap();
        assert!(brighter.abs() < 1e-12, "{brighter}");
        // Gradient against central differences.
        let var = Var::from_tensor(&pred).unwrap();
        let grad = angle_term(var.as_tensor(), &target).unwrap().backward().unwrap().get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let h = 1e-6;
        for i in 0..pv.len() {
            let at = |delta: f64| {
                let mut v = pv.clone();
                v[i] += delta;
                angle_term(&Tensor::from_vec(v, pred.dims(), &Device::Cpu).unwrap(), &target).unwrap().to_scalar::<f64>().unwrap()
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            assert!((numeric - grad[i]).abs() < 1e-7, "value {i}: analytic {} numeric {numeric}", grad[i]);
        }
    }

    #[test]
    fn a_target_that_needs_a_gradient_gets_one() {
        let (pred, target) = (random(&[1, 2, 3, 4], 3, DType::F64), Var::from_tensor(&random(&[1, 2, 3, 4], 4, DType::F64)).unwrap());
        let l = loss_fn(Loss::L1, &pred, target.as_tensor()).unwrap();
        let g = l.backward().unwrap();
        assert!(g.get(target.as_tensor()).is_some(), "the composed path differentiates the target too");
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let err = loss_fn(Loss::L1, &random(&[1, 2, 3, 4], 5, DType::F32), &random(&[1, 2, 4, 3], 6, DType::F32)).unwrap_err();
        assert!(err.to_string().contains("differ in shape"), "{err}");
    }
}
