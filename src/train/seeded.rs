//! Seeded weight initialisation. candle's CPU random generator cannot be seeded, so a model
//! built from a plain `VarMap` starts from different weights every run; this backend fills a
//! `VarMap` with the same distributions (PyTorch's defaults, as candle-nn asks for them) drawn
//! from a generator seeded by (run seed, tensor name). Same command, same starting weights.

use crate::spectral::rng::Rng;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarMap;

pub struct SeededInit {
    pub map: VarMap,
    pub seed: u64,
}

/// FNV-1a of the tensor name: each tensor gets its own stream, independent of build order.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn draw(init: &Init, shape: &Shape, rng: &mut Rng) -> Vec<f64> {
    let n = shape.elem_count();
    let uniform = |rng: &mut Rng, lo: f64, up: f64| (0..n).map(|_| rng.range(lo, up)).collect::<Vec<_>>();
    match *init {
        Init::Const(v) => vec![v; n],
        Init::Uniform { lo, up } => uniform(rng, lo, up),
        Init::Randn { mean, stdev } => (0..n).map(|_| mean + stdev * rng.normal()).collect(),
        Init::Kaiming { ref dist, ref fan, ref non_linearity } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => uniform(rng, -(3f64.sqrt()) * std, 3f64.sqrt() * std),
                NormalOrUniform::Normal => (0..n).map(|_| std * rng.normal()).collect(),
            }
        }
    }
}

impl SimpleBackend for SeededInit {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut vars = self.map.data().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = vars.get(name) {
            if existing.shape() != &shape {
                candle_core::bail!("tensor '{name}' exists with shape {:?}, asked for {shape:?}", existing.shape())
            }
            return Ok(existing.as_tensor().clone());
        }
        let mut rng = Rng::new(self.seed ^ name_hash(name));
        let values = draw(&init, &shape, &mut rng);
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)?)?;
        let tensor = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("seeded initialisation needs a shape for '{name}'")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map.data().lock().unwrap_or_else(|e| e.into_inner()).contains_key(name)
    }
}
