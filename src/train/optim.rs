//! AdamW (Loshchilov & Hutter) with decoupled weight decay, and learning-rate schedules.
//! Written here rather than taken from candle-nn so its moments can be checkpointed and a
//! resumed run continues exactly where it stopped.

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub struct AdamW {
    /// (name, variable, first moment, second moment), sorted by name.
    params: Vec<(String, Var, Tensor, Tensor)>,
    pub step: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Weight decay as PyTorch's `Adam(weight_decay=…)` applies it: wd·θ added to the gradient
    /// before the moments (an L2 term), instead of AdamW's decoupled shrinking by lr·wd.
    pub l2_coupled: bool,
}

impl AdamW {
    /// Optimise `vars` (name → variable). Batch-norm running statistics get no gradient and are
    /// skipped at each step, so they may be included.
    pub fn new(vars: HashMap<String, Var>, weight_decay: f64) -> Result<Self> {
        let mut params: Vec<(String, Var, Tensor, Tensor)> = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.zeros_like()?;
                Ok((name, var, zeros.clone(), zeros))
            })
            .collect::<Result<_>>()?;
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self { params, step: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, l2_coupled: false })
    }

    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        for (_, var, m, v) in self.params.iter_mut() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let coupled;
            let g = if self.l2_coupled && self.weight_decay != 0.0 {
                coupled = (g + (var.as_tensor() * self.weight_decay)?)?;
                &coupled
            } else {
                g
            };
            *m = ((&*m * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            *v = ((&*v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let update = ((&*m / c1)? / ((&*v / c2)?.sqrt()? + self.eps)?)?;
            let shrink = if self.l2_coupled { 1.0 } else { 1.0 - lr * self.weight_decay };
            let decayed = (var.as_tensor() * shrink)?;
            var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// Moments as `m.NAME` / `v.NAME` tensors plus `step`, for a checkpoint.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (name, _, m, v) in &self.params {
            out.insert(format!("m.{name}"), m.clone());
            out.insert(format!("v.{name}"), v.clone());
        }
        out.insert("step".into(), Tensor::new(&[self.step as f32], &candle_core::Device::Cpu)?);
        Ok(out)
    }

    /// [`Self::state`] with every name under `prefix`: several optimisers (a GAN's) in one
    /// checkpoint file.
    pub fn state_under(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        Ok(self.state()?.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect())
    }

    /// [`Self::load_state`] from the names under `prefix` in `state`.
    pub fn load_state_under(&mut self, state: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        let mine: HashMap<String, Tensor> = state.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone()))).collect();
        self.load_state(&mine)
    }

    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var, m, v) in self.params.iter_mut() {
            let (Some(sm), Some(sv)) = (state.get(&format!("m.{name}")), state.get(&format!("v.{name}"))) else {
                candle_core::bail!("optimiser state has no moments for '{name}'")
            };
            if sm.dims() != var.dims() || sv.dims() != var.dims() {
                candle_core::bail!("optimiser moments for '{name}' have shape {:?}, the weight {:?}", sm.dims(), var.dims())
            }
            *m = sm.to_device(var.device())?;
            *v = sv.to_device(var.device())?;
        }
        if let Some(step) = state.get("step") {
            self.step = step.flatten_all()?.to_vec1::<f32>()?.first().copied().unwrap_or(0.0) as usize;
        }
        Ok(())
    }
}

/// An exponential moving average of a model's weights (Polyak averaging): after each step,
/// ā ← d·ā + (1 − d)·θ, with d = min(decay, (1 + n)/(10 + n)) after n updates so the first
/// steps' weights do not linger. Batch-norm running statistics are averaged like the rest.
/// The average is what a run validates and writes when it ends; the trained weights keep
/// training, and a checkpoint keeps both (`ema.NAME`, `ema.updates` in its training state).
pub struct WeightAverage {
    decay: f64,
    updates: usize,
    /// (name, variable, its average), sorted by name.
    slots: Vec<(String, Var, Tensor)>,
}

impl WeightAverage {
    /// Average `vars` (name → variable) from their present values; `decay` in [0, 1).
    pub fn new(vars: HashMap<String, Var>, decay: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            candle_core::bail!("weight-average decay must be in [0, 1), got {decay}")
        }
        let mut slots: Vec<(String, Var, Tensor)> = vars.into_iter().map(|(name, var)| Ok((name, var.clone(), var.as_tensor().copy()?.detach()))).collect::<Result<_>>()?;
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self { decay, updates: 0, slots })
    }

    /// The decay the next update uses.
    pub fn current_decay(&self) -> f64 {
        let n = self.updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    /// Fold the variables' present values into the average.
    pub fn update(&mut self) -> Result<()> {
        let d = self.current_decay();
        self.updates += 1;
        // Detached: an expression of a variable records its graph, and each step's average
        // would keep the previous one (and its graph) alive, growing memory without end.
        for (_, var, avg) in self.slots.iter_mut() {
            *avg = ((&*avg * d)? + (var.as_tensor().detach() * (1.0 - d))?)?.detach();
        }
        Ok(())
    }

    /// Run `f` with the averaged weights in the model, then put the trained ones back.
    pub fn with_average<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        // `copy`, not `clone`: setting a variable writes into its storage, which a clone shares.
        let trained: Vec<Tensor> = self.slots.iter().map(|(_, var, _)| var.as_tensor().copy()).collect::<Result<_>>()?;
        self.install()?;
        let out = f();
        for ((_, var, _), value) in self.slots.iter().zip(&trained) {
            var.set(value)?;
        }
        Ok(out)
    }

    /// Put the averaged weights in the model for good (at the end of a run).
    pub fn install(&self) -> Result<()> {
        for (_, var, avg) in &self.slots {
            var.set(avg)?;
        }
        Ok(())
    }

    /// The average as `ema.NAME` tensors plus `ema.updates`, for a checkpoint.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out: HashMap<String, Tensor> = self.slots.iter().map(|(name, _, avg)| (format!("ema.{name}"), avg.clone())).collect();
        out.insert("ema.updates".into(), Tensor::new(&[self.updates as f32], &candle_core::Device::Cpu)?);
        Ok(out)
    }

    /// Continue the average a checkpoint's [`Self::state`] holds.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var, avg) in self.slots.iter_mut() {
            let Some(saved) = state.get(&format!("ema.{name}")) else {
                candle_core::bail!("the training state has no weight average for '{name}' (was the run started without --ema?)")
            };
            if saved.dims() != var.dims() {
                candle_core::bail!("the weight average of '{name}' has shape {:?}, the weight {:?}", saved.dims(), var.dims())
            }
            *avg = saved.to_device(var.device())?;
        }
        if let Some(n) = state.get("ema.updates") {
            self.updates = n.flatten_all()?.to_vec1::<f32>()?.first().copied().unwrap_or(0.0) as usize;
        }
        Ok(())
    }
}

/// Learning-rate schedule over `total` steps from a base rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Cosine decay from the base rate to 1 % of it, after a linear warm-up.
    Cosine { warmup: usize },
    /// The multi-scale CNN paper's schedule: × `gamma` every `every` steps (×0.93 / 10 epochs).
    Step { every: usize, gamma: f64 },
}

impl Schedule {
    pub fn rate(&self, base: f64, step: usize, total: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Cosine { warmup } => {
                if step < warmup {
                    return base * (step + 1) as f64 / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((step - warmup) as f64 / span).min(1.0);
                let floor = 0.01 * base;
                floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Schedule::Step { every, gamma } => base * gamma.powi((step / every.max(1)) as i32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adamw_minimises_a_quadratic_and_its_state_round_trips() {
        let x = Var::new(&[3.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(HashMap::from([("x".to_string(), x.clone())]), 0.0).unwrap();
        for _ in 0..300 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap(), 0.05).unwrap();
        }
        let v = x.as_tensor().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|a| a.abs() < 0.05), "{v:?}");
        let state = opt.state().unwrap();
        let mut again = AdamW::new(HashMap::from([("x".to_string(), x.clone())]), 0.0).unwrap();
        again.load_state(&state).unwrap();
        assert_eq!(again.step, 300);
    }

    #[test]
    fn coupled_weight_decay_is_adam_on_the_loss_plus_an_l2_term() {
        let (a, b) = (Var::new(&[1.5f32, -0.5], &Device::Cpu).unwrap(), Var::new(&[1.5f32, -0.5], &Device::Cpu).unwrap());
        let mut coupled = AdamW::new(HashMap::from([("x".to_string(), a.clone())]), 0.3).unwrap();
        coupled.l2_coupled = true;
        let mut plain = AdamW::new(HashMap::from([("x".to_string(), b.clone())]), 0.0).unwrap();
        for _ in 0..20 {
            let loss = |x: &Var| (x.as_tensor() - 2.0).unwrap().sqr().unwrap().sum_all().unwrap();
            coupled.step(&loss(&a).backward().unwrap(), 0.05).unwrap();
            let with_l2 = (loss(&b) + (b.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.15).unwrap()).unwrap();
            plain.step(&with_l2.backward().unwrap(), 0.05).unwrap();
        }
        let (va, vb) = (a.as_tensor().to_vec1::<f32>().unwrap(), b.as_tensor().to_vec1::<f32>().unwrap());
        assert!(va.iter().zip(&vb).all(|(x, y)| (x - y).abs() < 1e-5), "{va:?} {vb:?}");
    }

    #[test]
    fn the_weight_average_follows_its_recurrence_and_swaps_cleanly() {
        let x = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut ema = WeightAverage::new(HashMap::from([("x".to_string(), x.clone())]), 0.5).unwrap();
        // d = min(0.5, 1/10) = 0.1, then min(0.5, 2/11).
        x.set(&Tensor::new(&[3.0f32, 2.0], &Device::Cpu).unwrap()).unwrap();
        ema.update().unwrap();
        let first = [0.1 * 1.0 + 0.9 * 3.0, 2.0];
        x.set(&Tensor::new(&[5.0f32, 0.0], &Device::Cpu).unwrap()).unwrap();
        ema.update().unwrap();
        let d = 2.0 / 11.0;
        let want = [d * first[0] + (1.0 - d) * 5.0, d * first[1]];
        let seen = ema.with_average(|| x.as_tensor().to_vec1::<f32>().unwrap()).unwrap();
        assert!(seen.iter().zip(want).all(|(a, b)| (f64::from(*a) - b).abs() < 1e-5), "{seen:?} against {want:?}");
        // The average keeps no graph (each step's would hold the last one alive).
        assert!(ema.state().unwrap().values().all(|t| !t.track_op()));
        // The trained weights are back, and the state restores the average.
        assert_eq!(x.as_tensor().to_vec1::<f32>().unwrap(), vec![5.0, 0.0]);
        let mut again = WeightAverage::new(HashMap::from([("x".to_string(), x.clone())]), 0.5).unwrap();
        again.load_state(&ema.state().unwrap()).unwrap();
        assert_eq!(again.updates, 2);
        again.install().unwrap();
        assert_eq!(x.as_tensor().to_vec1::<f32>().unwrap(), seen);
        assert!(WeightAverage::new(HashMap::new(), 1.0).is_err());
    }

    #[test]
    fn schedules_follow_their_definitions() {
        let step = Schedule::Step { every: 10, gamma: 0.93 };
        assert_eq!(step.rate(1.0, 9, 100), 1.0);
        assert!((step.rate(1.0, 25, 100) - 0.93f64.powi(2)).abs() < 1e-12);
        let cos = Schedule::Cosine { warmup: 10 };
        assert!((cos.rate(1.0, 4, 110) - 0.5).abs() < 1e-12);
        assert!((cos.rate(1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((cos.rate(1.0, 110, 110) - 0.01).abs() < 1e-12);
    }
}
