//! `spectral-studio check-device`: the test of a device. Every network of the architecture table
//! (in a small config) and every network a trainer adds (UAL's fusion and adaptation modules and
//! degradation kernel, USR's discriminator and semantic branch, INSS's two discriminators), plus
//! the ops whose CPU kernels have a portable twin, run once on the CPU kernels and once on the
//! device, from the same weights and inputs, in f32: inference and a training pass, whose
//! outputs, gradients (input and every variable) and moved running statistics must agree.
//!
//! On a GPU that is the test suite's question asked of the GPU: the same math as the CPU. On the
//! CPU the candidate runs the portable path ([`crate::nn::portable`], what a GPU runs), so the
//! command is itself tested without a GPU (`tests/portable.rs`, which also checks that path
//! against finite differences in f64).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;

use crate::models::camera::CameraBatch;
use crate::models::{Architecture, SpectralNet};
use crate::nn::portable::with_portable;
use crate::Result;

/// Largest relative gap accepted in f32 (outputs, and gradients on the scale of their largest).
pub const TOLERANCE: f64 = 2e-3;

/// What one case gave: in inference the output alone, in training the output, the gradients
/// and the variables after the step's forward pass (batch norm's running statistics).
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub name: String,
    /// "inference" or "training".
    pub pass: &'static str,
    /// max |reference − device| / max |reference| of the output.
    pub output_gap: f64,
    /// The same for every gradient (on the scale of the largest gradient) and moved variable;
    /// 0 in inference.
    pub gradient_gap: f64,
    /// Where the gradient gap is largest: a variable's name, "input" or "<name> after".
    pub worst: String,
    pub ok: bool,
    /// Set when the device failed to run the case at all.
    pub error: Option<String>,
}

/// A case's forward pass: input and whether in training mode → output.
type Forward = Box<dyn Fn(&Tensor, bool) -> candle_core::Result<Tensor>>;

/// One case: how to build its variables and forward pass on a device, and its input's shape.
struct Case {
    name: String,
    input: [usize; 4],
    build: Box<dyn Fn(&VarMap, &Device) -> candle_core::Result<Forward>>,
}

/// Deterministic values in (−1, 1) of `shape` from a small LCG (candle's RNG cannot be seeded),
/// so the reference and the device see the same numbers.
pub fn lcg(shape: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0) as f32
        })
        .collect()
}

fn lcg_tensor(shape: &[usize], seed: u64, device: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(lcg(shape, seed), shape, device)
}

/// A small config of every network in the architecture table; None for the closed forms
/// (ndarray algebra on the CPU, no candle ops on any device). The match names every
/// architecture, so a new one cannot be left out of the check.
pub fn tiny_config(a: Architecture) -> Option<serde_json::Value> {
    use crate::models::{basisnet::BasisNetConfig, inss::InssConfig, mscnn::MscnnConfig, mstpp::MstppConfig};
    let v = match a {
        // camera-aware, with the Wiener prior and intensity normalisation: what ships
        Architecture::Mscnn => serde_json::to_value(MscnnConfig { bands: 31, width: 4, depth: 2, dropout: 0.0, linear_prior: true, intensity_normalised: true, camera_aware: true, camera_coords: 4, illumination_cues: true }),
        Architecture::Basisnet => serde_json::to_value(BasisNetConfig { bands: 31, basis: 3, width: 4, depth: 2, dropout: 0.0, linear_prior: true, intensity_normalised: true, camera_aware: true, camera_coords: 4, illumination_cues: true, gamut_cues: true }),
        Architecture::Mstpp => serde_json::to_value(MstppConfig { in_channels: 3, out_channels: 4, n_feat: 4, stage: 2, levels: 2, num_blocks: vec![1, 1, 1] }),
        Architecture::Usr => serde_json::to_value(tiny_usr()),
        Architecture::Inss => serde_json::to_value(InssConfig { bands: 6, library: 5, width: 4, stages: 3, cell: 4, order: 3, hidden: 3, transform_width: 4 }),
        Architecture::Linear | Architecture::Pca => return None,
    };
    Some(v.expect("configs serialise"))
}

fn tiny_usr() -> crate::models::usr::UsrConfig {
    crate::models::usr::UsrConfig { bands: 6, dictionary: 4, stages: 3, growth: 4, blocks: 2, camera_width: 8, camera_view: 16, disc_width: 3, classes: 3, semantic_width: 3, slope: 0.001 }
}

/// A smooth, positive definite spectral second moment (31 × 31), written into every
/// `wiener.moment` variable of `map` (a random one would not be a covariance).
pub fn set_smooth_moments(map: &VarMap) -> candle_core::Result<()> {
    let moment: Vec<f32> = (0..31 * 31).map(|k| ((-(((k / 31) as f64 - (k % 31) as f64) / 6.0).powi(2)).exp() * 0.1 + 0.02) as f32).collect();
    for (name, var) in map.data().lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if name.ends_with("wiener.moment") {
            var.set(&Tensor::from_vec(moment.clone(), (31, 31), var.device())?.to_dtype(var.dtype())?)?;
        }
    }
    Ok(())
}

/// Camera matrices for a camera-aware network `net`: a Canon and a Nikon picture with their
/// illumination cues; None for a network that takes none.
pub fn two_cameras(net: &dyn SpectralNet, device: &Device) -> Result<Option<CameraBatch>> {
    let Some(prior) = net.camera_prior() else { return Ok(None) };
    let grid = crate::default_wavelengths();
    let cams = ["canon", "nikon"].iter().map(|n| crate::spectral::camera::CameraResponse::builtin(n)?.on_grid(&grid)).collect::<Result<Vec<_>>>()?;
    let batch = prior.batch(&cams, device)?;
    let cues = [
        [0.3, 0.35, 0.35, 0.4, 0.35, 0.25, 0.7, 0.2, 0.1, 0.2, 0.65, 0.15, 0.1, 0.25, 0.65],
        [0.25, 0.4, 0.35, 0.3, 0.3, 0.4, 0.6, 0.3, 0.1, 0.15, 0.7, 0.15, 0.05, 0.15, 0.8],
    ];
    Ok(Some(if prior.wants_cues() { batch.with_cues(&cues, prior.cue_count())? } else { batch }))
}

/// Every variable of `map` redrawn from [`lcg`] at ±1/√fan-in (vectors ±0.05 around their
/// initial value); running statistics and Wiener moments kept.
pub fn reseed(map: &VarMap, seed: u64) -> candle_core::Result<()> {
    let data = map.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (i, name) in names.into_iter().enumerate() {
        let var = &data[name];
        if name.contains("running") || name.ends_with("wiener.moment") {
            continue;
        }
        let noise = lcg_tensor(var.dims(), seed + i as u64, var.device())?.to_dtype(var.dtype())?;
        let fan_in: usize = var.dims().iter().skip(1).product();
        let value = if var.dims().len() > 1 { (noise / (fan_in.max(1) as f64).sqrt())? } else { (var.as_tensor() + (noise * 0.05)?)? };
        var.set(&value)?;
    }
    Ok(())
}

/// The variables of `map`, by name.
pub fn sorted_vars(map: &VarMap) -> Vec<(String, Var)> {
    let mut vars: Vec<(String, Var)> = map.data().lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// max |t|, as f64.
pub fn max_abs(t: &Tensor) -> candle_core::Result<f64> {
    t.abs()?.max_all()?.to_dtype(DType::F64)?.to_device(&Device::Cpu)?.to_scalar::<f64>()
}

/// max |a − b| / max(max |a|, floor), `b` brought to the CPU.
pub fn gap(a: &Tensor, b: &Tensor, floor: f64) -> candle_core::Result<f64> {
    let b = b.to_device(&Device::Cpu)?.to_dtype(a.dtype())?;
    Ok(max_abs(&(a - b)?)? / max_abs(a)?.max(floor).max(1e-30))
}

/// One pass: output, input gradient, every variable's gradient and its value afterwards.
struct Pass {
    output: Tensor,
    input_grad: Option<Tensor>,
    grads: Vec<Option<Tensor>>,
    after: Vec<Tensor>,
}

fn pass(forward: &Forward, map: &VarMap, x: &Tensor, train: bool) -> candle_core::Result<Pass> {
    let input = Var::from_tensor(x)?;
    let output = forward(input.as_tensor(), train)?;
    if !train {
        // Inference never differentiates (and the CPU kernels' folded convolutions record no
        // graph): the output is what is compared.
        return Ok(Pass { output, input_grad: None, grads: Vec::new(), after: Vec::new() });
    }
    // Σ output · r, r fixed: every output's gradient weighted differently
    let weights = lcg_tensor(output.dims(), 31, output.device())?.to_dtype(output.dtype())?;
    let grads = (&output * weights)?.sum_all()?.backward()?;
    let vars = sorted_vars(map);
    Ok(Pass {
        input_grad: grads.get(input.as_tensor()).cloned(),
        grads: vars.iter().map(|(_, v)| grads.get(v.as_tensor()).cloned()).collect(),
        after: vars.iter().map(|(_, v)| v.as_tensor().copy()).collect::<candle_core::Result<_>>()?,
        output,
    })
}

/// Runs `case` on the CPU kernels and on `device` and compares, for inference and training.
fn run_case(case: &Case, device: &Device) -> Vec<CaseReport> {
    let report = |pass: &'static str, result: candle_core::Result<(f64, f64, String)>| match result {
        Ok((output_gap, gradient_gap, worst)) => CaseReport { name: case.name.clone(), pass, output_gap, gradient_gap, worst, ok: output_gap < TOLERANCE && gradient_gap < TOLERANCE, error: None },
        Err(e) => CaseReport { name: case.name.clone(), pass, output_gap: f64::NAN, gradient_gap: f64::NAN, worst: String::new(), ok: false, error: Some(e.to_string()) },
    };
    let setup = || -> candle_core::Result<_> {
        let (ref_map, dev_map) = (VarMap::new(), VarMap::new());
        let reference = with_portable(false, || (case.build)(&ref_map, &Device::Cpu))?;
        reseed(&ref_map, 100)?;
        set_smooth_moments(&ref_map)?;
        let candidate = with_portable(device.is_cpu(), || (case.build)(&dev_map, device))?;
        for ((_, r), (_, d)) in sorted_vars(&ref_map).iter().zip(sorted_vars(&dev_map).iter()) {
            d.set(&r.as_tensor().to_device(device)?)?;
        }
        Ok((ref_map, reference, dev_map, candidate))
    };
    let (ref_map, reference, dev_map, candidate) = match setup() {
        Ok(s) => s,
        Err(e) => return vec![report("setup", Err(e))],
    };
    let x = match lcg_tensor(&case.input, 3, &Device::Cpu).and_then(|t| t.affine(0.4, 0.5)) {
        Ok(x) => x,
        Err(e) => return vec![report("setup", Err(e))],
    };
    ["inference", "training"]
        .into_iter()
        .map(|name| {
            let train = name == "training";
            let result = (|| {
                let r = with_portable(false, || pass(&reference, &ref_map, &x, train))?;
                let d = with_portable(device.is_cpu(), || pass(&candidate, &dev_map, &x.to_device(device)?, train))?;
                let output_gap = gap(&r.output, &d.output, 0.0)?;
                let largest = r.grads.iter().flatten().map(max_abs).collect::<candle_core::Result<Vec<f64>>>()?.into_iter().fold(0.0, f64::max);
                let names: Vec<String> = sorted_vars(&ref_map).into_iter().map(|(k, _)| k).collect();
                let (mut worst, mut at) = (0.0f64, String::new());
                let mut note = |g: f64, name: String| {
                    if g > worst {
                        (worst, at) = (g, name);
                    }
                };
                for ((a, b), name) in r.grads.iter().zip(&d.grads).chain(std::iter::once((&r.input_grad, &d.input_grad))).zip(names.iter().cloned().chain(std::iter::once("input".to_string()))) {
                    // gradients on the scale of 10⁻³ of the largest: a variable whose true gradient
                    // is zero (a convolution's bias before batch norm) has f32 rounding noise for
                    // one. A gradient on one path only can be a running statistic's (no parameter).
                    if let (Some(a), Some(b)) = (a, b) {
                        note(gap(a, b, 1e-3 * largest)?, name);
                    }
                }
                for ((a, b), name) in r.after.iter().zip(&d.after).zip(&names) {
                    note(gap(a, b, 0.0)?, format!("{name} after"));
                }
                Ok((output_gap, worst, at))
            })();
            report(name, result)
        })
        .collect()
}

/// Every case: the architecture table's networks, the trainers' extra networks, the ops.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for a in Architecture::ALL {
        let Some(config) = tiny_config(a) else { continue };
        cases.push(Case {
            name: a.name().to_string(),
            input: [2, 3, 16, 16],
            build: Box::new(move |map, device| {
                let net = a.build(&config, VarBuilder::from_varmap(map, DType::F32, device)).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                let device = device.clone();
                Ok(Box::new(move |x: &Tensor, train: bool| {
                    let cam = two_cameras(net.as_ref(), &device).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                    net.forward_t(x, cam.as_ref(), train)
                }) as Forward)
            }),
        });
    }
    cases.push(Case {
        name: "usr discriminator + semantic branch".into(),
        input: [2, 6, 16, 16],
        build: Box::new(|map, device| {
            use crate::models::usr::{Discriminator, Semantic};
            let vb = VarBuilder::from_varmap(map, DType::F32, device);
            let (disc, semantic) = (Discriminator::new(&tiny_usr(), vb.pp("discriminator"))?, Semantic::new(&tiny_usr(), vb.pp("semantic"))?);
            let rgb = lcg_tensor(&[2, 3, 16, 16], 5, device)?;
            Ok(Box::new(move |y: &Tensor, _| {
                let d = disc.forward(y)?.flatten_all()?;
                let s = semantic.forward(&rgb, y)?.flatten_all()?;
                Tensor::cat(&[d, s], 0)
            }) as Forward)
        }),
    });
    cases.push(Case {
        name: "inss discriminators".into(),
        input: [2, 6, 32, 32],
        build: Box::new(|map, device| {
            use crate::models::inss::{grid_spectra, SpatialDiscriminator, SpectralDiscriminator};
            let vb = VarBuilder::from_varmap(map, DType::F32, device);
            let (spatial, spectral) = (SpatialDiscriminator::new(6, 4, vb.pp("spatial"))?, SpectralDiscriminator::new(6, 4, vb.pp("spectral"))?);
            let rgb = lcg_tensor(&[2, 3, 32, 32], 6, device)?;
            Ok(Box::new(move |cube: &Tensor, train| Tensor::cat(&[spatial.forward_t(&rgb, cube, train)?.flatten_all()?, spectral.forward(&grid_spectra(cube, (1, 2))?)?.flatten_all()?], 0)) as Forward)
        }),
    });
    cases.push(Case {
        name: "ual fusion + adaptation + degradation".into(),
        input: [1, 3, 16, 16],
        build: Box::new(|map, device| {
            use crate::models::ual::{degrade, Adaptation, Fusion, UalConfig};
            let cfg = UalConfig { bands: 4, msi_bands: 3, width: 3, depth: 2, residual: true };
            let vb = VarBuilder::from_varmap(map, DType::F32, device);
            let (fusion, adapt) = (Fusion::new(&cfg, vb.pp("fusion"))?, Adaptation::new(&cfg, vb.pp("adapt"))?);
            let kernel = vb.get((1, 1, 8, 8), "kernel")?;
            let y_up = lcg_tensor(&[1, 4, 16, 16], 8, device)?.affine(0.4, 0.5)?;
            Ok(Box::new(move |x: &Tensor, _| {
                let z = adapt.forward(&fusion.forward(x, &y_up)?)?;
                Tensor::cat(&[z.flatten_all()?, degrade(&z, &kernel, 4)?.flatten_all()?], 0)
            }) as Forward)
        }),
    });
    // the ops on shapes the networks above do not reach: odd sides at stride 2, 5×5 taps
    cases.push(Case {
        name: "ops: conv stride 2 on 7×6, depthwise 5×5, max-pool, gelu, layer norm".into(),
        input: [2, 3, 8, 6],
        build: Box::new(|map, device| {
            use crate::nn::{conv, depthwise, gelu, layers, norm};
            let vb = VarBuilder::from_varmap(map, DType::F32, device);
            let (w, dw, g, b) = (vb.get((4, 3, 3, 3), "w")?, vb.get((3, 1, 5, 5), "dw")?, vb.get(3, "g")?, vb.get(3, "b")?);
            Ok(Box::new(move |x: &Tensor, _| {
                let odd = x.narrow(2, 0, 7)?;
                let parts = [
                    conv::conv2d(&odd, &w, 1, 2)?,
                    depthwise::depthwise_conv2d(x, &dw)?,
                    layers::max_pool2x2(x)?,
                    gelu::gelu_erf(x)?,
                    norm::layer_norm_channels(x, &g, &b, 1e-5)?,
                ];
                Tensor::cat(&parts.iter().map(|p| p.flatten_all()).collect::<candle_core::Result<Vec<_>>>()?, 0)
            }) as Forward)
        }),
    });
    cases
}

/// Runs every case on `device` against the CPU kernels.
pub fn check(device: &Device) -> Vec<CaseReport> {
    cases().iter().flat_map(|c| run_case(c, device)).collect()
}
