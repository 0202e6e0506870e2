//! `bench fusion`: where a UAL fusion's time goes on the reference pair (256 × 256 RGB,
//! a 32 × 32 cube, ×8), and what `fuse` at its default step count costs. The degradation
//! network's strided blur is timed twice, through candle's generic convolution and through the
//! project's own op, on the same tensors, so their ratio is meaningful.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

use super::median_ms;
use crate::cube::Cube;
use crate::engine::JobContext;
use crate::models::ual::{self, Adaptation, Degradation, UalConfig};
use crate::recon::fusion::{fuse, FuseOptions, FusionModel, DEFAULT_STEPS};
use crate::spectral::degrade::{BlurKernel, Degradation as Simulator};
use crate::train::world::{scene, Side, World, TEST_SEED0};
use crate::Result;

const SIZE: usize = 256;
const SCALE: usize = 8;

/// The suite: fusion module forward, adaptation forward + backward, the degradation network
/// forward + backward (candle's convolution against ours), one whole adaptation step, and the
/// default `fuse` extrapolated from them and measured whole when `whole` is set; one step with
/// the scene-subspace layer against one without, and the classical subspace fusion whole.
pub fn fusion_suite(repeats: usize, model: Option<&Path>, whole: bool, device: &Device) -> Result<Value> {
    let device = device.clone();
    let model_path = match model {
        Some(p) => Some(p.to_path_buf()),
        None => crate::recon::fusion::shipped_model(),
    };
    let model = model_path.as_deref().map(|p| FusionModel::load(p, &device)).transpose()?;
    let held = World { spectra: Side::Held, light: Side::Held, camera: Side::Held };
    let s = scene(held, TEST_SEED0, SIZE)?;
    let degradation = Simulator { kernel: BlurKernel::parse("motion:13,-45")?, scale: SCALE, snr_db: Some(35.0), seed: TEST_SEED0 };
    let lr = Cube::on_default_grid(degradation.apply(s.cube.view())?)?;
    let camera = s.camera.on_grid(&lr.wavelengths)?;
    let hr = crate::spectral::render::project(camera.view(), s.cube.view())?;
    let config = match &model {
        Some(m) => m.card.config.clone(),
        None => UalConfig::default(),
    };

    let z = Tensor::rand(0f32, 1f32, (1, config.bands, SIZE, SIZE), &device)?;
    let fusion_forward_ms = match &model {
        Some(m) => {
            let x = Tensor::rand(0f32, 1f32, (1, config.msi_bands, SIZE, SIZE), &device)?;
            Some(median_ms(repeats, || Ok(m.fusion.forward(&x, &z)?))?)
        }
        None => None,
    };
    let varmap = VarMap::new();
    let adapt = Adaptation::new(&config, VarBuilder::from_varmap(&varmap, DType::F32, &device).pp("adapt"))?;
    let adaptation_ms = median_ms(repeats, || Ok(adapt.forward(&z)?.sum_all()?.backward()?))?;
    // The blur through a kernel (1, 1, 32, 32) with stride 8, and its gradients.
    let zv = Var::from_tensor(&z)?;
    let kernel = Degradation::new(SCALE, &device)?;
    let weights = Tensor::rand(0f32, 1f32, (1, config.bands, SIZE / SCALE, SIZE / SCALE), &device)?;
    let degrade_ms = median_ms(repeats, || Ok((ual::degrade(zv.as_tensor(), kernel.var().as_tensor(), SCALE)? * &weights)?.sum_all()?.backward()?))?;
    let degrade_conv2d_ms = median_ms(repeats, || Ok((ual::degrade_conv2d(zv.as_tensor(), kernel.var().as_tensor(), SCALE)? * &weights)?.sum_all()?.backward()?))?;

    // One adaptation step as `fuse` runs it: the difference of 6 steps and 1, over 5.
    let mut opts = FuseOptions::new(SCALE, 1);
    opts.adaptation = model.is_none().then_some((config.width, config.depth));
    let time_fuse = |steps: usize, subspace: Option<usize>| -> Result<f64> {
        let mut o = opts.clone();
        (o.steps, o.subspace) = (steps, subspace);
        let t = Instant::now();
        fuse(model.as_ref(), &hr, &lr, &camera, &o, &device, None, &JobContext::silent())?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    // The same step through the scene-subspace layer of rank channels + 1 (its peer: the step
    // without it, measured alternately in the same loop).
    let layered = Some(config.msi_bands + 1);
    let (mut steps_ms, mut layered_ms) = (Vec::new(), Vec::new());
    for _ in 0..repeats.clamp(1, 3) {
        steps_ms.push((time_fuse(6, None)? - time_fuse(1, None)?) / 5.0);
        layered_ms.push((time_fuse(6, layered)? - time_fuse(1, layered)?) / 5.0);
    }
    let step_ms = super::median(&steps_ms);
    let layered_step_ms = super::median(&layered_ms);
    // The classical subspace fusion (rank = channels, no module, no step) whole.
    let classical = FuseOptions { steps: 0, subspace: Some(config.msi_bands), ..opts.clone() };
    let subspace_ms = median_ms(repeats, || Ok(fuse(None, &hr, &lr, &camera, &classical, &device, None, &JobContext::silent())?))?;
    // The default `fuse` runs with the layer (SubspaceChoice::Auto: this camera sees every band).
    let estimate_s = (fusion_forward_ms.unwrap_or(0.0) + DEFAULT_STEPS as f64 * layered_step_ms) / 1e3;
    let whole_s = if whole { Some(time_fuse(DEFAULT_STEPS, layered)? / 1e3) } else { None };
    Ok(json!({
        "suite": "fusion",
        "pair": {"rgb": [SIZE, SIZE], "cube": [lr.bands(), lr.rows(), lr.cols()], "scale": SCALE},
        "model": model_path.map(|p| p.display().to_string()),
        "width": config.width,
        "depth": config.depth,
        "repeats": repeats,
        "fusion_forward_ms": fusion_forward_ms,
        "adaptation_forward_backward_ms": adaptation_ms,
        "degrade_forward_backward_ms": degrade_ms,
        "degrade_conv2d_forward_backward_ms": degrade_conv2d_ms,
        "degrade_speedup_over_conv2d": degrade_conv2d_ms / degrade_ms,
        "adaptation_step_ms": step_ms,
        "adaptation_step_subspace_ms": layered_step_ms,
        "subspace_step_over_plain_step": layered_step_ms / step_ms,
        "subspace_fuse_ms": subspace_ms,
        "default_steps": DEFAULT_STEPS,
        "default_fuse_estimate_s": estimate_s,
        "default_fuse_measured_s": whole_s,
        "goal_s": 300,
    }))
}
