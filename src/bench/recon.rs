//! `bench recon`: reconstruction speed. Every method on one 482×512 image (ARAD's size), the
//! multi-scale U-Net's eval forward and one training step on 8×3×64×64 (the two figures
//! `bench/pytorch_parity.py` compares against PyTorch in the same run), inference peak memory,
//! and a per-op profile of the forward pass.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use super::{median, runs_ms};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{json, Value};

use crate::engine::JobContext;
use crate::recon::card::{ModelCard, ModelFiles};
use crate::recon::learned::build_net;
use crate::nn::profile;
use crate::recon::registry::{find_model, load_method, builtin_methods};
use crate::recon::{reconstruct, ReconOptions};
use crate::spectral::camera::CameraResponse;
use crate::spectral::scene::{generate, SceneConfig};
use crate::train::loss_fn;
use crate::train::optim::AdamW;
use crate::{Error, Result, RgbImage};

const ROWS: usize = 482;
const COLS: usize = 512;

/// A `/proc/self/status` memory figure (`VmHWM`, `VmRSS`, …) in MiB, Linux only.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The model at `path` (a model's weights beside its card, or a PyTorch checkpoint) on `device`
/// with its weights in a VarMap, ready to train.
fn trainable(path: &Path, device: &Device) -> Result<(ModelCard, VarMap, Box<dyn crate::models::SpectralNet>)> {
    if crate::recon::pytorch::is_checkpoint(path) {
        let (card, tensors) = crate::recon::pytorch::load_checked(path)?;
        let varmap = VarMap::new();
        let net = build_net(&card, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        for (name, var) in varmap.data().lock().unwrap_or_else(|e| e.into_inner()).iter() {
            var.set(&tensors.get(name).ok_or_else(|| Error::format(path, format!("no tensor '{name}'")))?.to_device(device)?)?;
        }
        return Ok((card, varmap, net));
    }
    let files = ModelFiles::resolve(path)?;
    let card = ModelCard::load(&files.card)?;
    let mut varmap = VarMap::new();
    let net = build_net(&card, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    varmap.load(&files.weights).map_err(|e| Error::format(&files.weights, e.to_string()))?;
    Ok((card, varmap, net))
}

/// The camera matrices of `n` Canon images for a camera-aware `net` (None for another net).
fn canon_cameras(net: &dyn crate::models::SpectralNet, n: usize, device: &Device) -> Result<Option<crate::models::camera::CameraBatch>> {
    let Some(prior) = net.camera_prior() else { return Ok(None) };
    let c = crate::spectral::camera::CameraResponse::builtin("canon")?.on_grid(&crate::default_wavelengths())?;
    let batch = prior.batch(&vec![c; n], device)?;
    // A neutral picture's cues.
    Ok(Some(if prior.wants_cues() { batch.with_cues(&vec![[1.0 / 3.0; 3 * crate::models::camera::CUES]; n], prior.cue_count())? } else { batch }))
}

/// The network timings of the PyTorch comparison: eval forward on 1×3×482×512 and one training
/// step (forward, L1 loss, backward, AdamW lr 1e-3 wd 1e-4) on 8×3×64×64, `repeats` runs each,
/// on `device` (each run waits for the device to finish). The single-op timings compare the
/// CPU kernels with candle's ops, and are taken on the CPU only.
pub fn parity_timings(model: &Path, repeats: usize, device: &Device) -> Result<Value> {
    let device = device.clone();
    let (card, varmap, net) = trainable(model, &device)?;
    let image = Tensor::rand(0f32, 1f32, (1, 3, ROWS, COLS), &device)?;
    let (cam1, cam8) = (canon_cameras(net.as_ref(), 1, &device)?, canon_cameras(net.as_ref(), 8, &device)?);
    // The eval forward runs on plain tensors, as inference does (and as PyTorch's under
    // no_grad): on the VarMap's variables candle would record every op for a backward pass.
    let weights: HashMap<String, Tensor> = varmap.data().lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
    let eval_net = build_net(&card, VarBuilder::from_tensors(weights, DType::F32, &device))?;
    let forward_ms = runs_ms(repeats, || {
        let y = eval_net.forward_t(&image, cam1.as_ref(), false)?;
        device.synchronize()?;
        Ok(y)
    })?;
    let x = Tensor::rand(0f32, 1f32, (8, 3, 64, 64), &device)?;
    let bands = card.wavelengths.len();
    let y = Tensor::rand(0f32, 1f32, (8, bands, 64, 64), &device)?;
    let vars: HashMap<String, candle_core::Var> = varmap.data().lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut opt = AdamW::new(vars, 1e-4)?;
    let train_step_ms = runs_ms(repeats, || {
        let loss = loss_fn(crate::train::Loss::L1, &net.forward_t(&x, cam8.as_ref(), true)?, &y)?;
        opt.step(&loss.backward()?, 1e-3)?;
        device.synchronize()?;
        Ok(())
    })?;
    let cpu = device.is_cpu();
    Ok(json!({
        "model": model,
        "architecture": card.architecture.name(),
        "device": crate::recon::device::device_name(&device),
        "cpu_ops": crate::nn::portable::cpu_path_name(),
        "threads": candle_core::utils::get_num_threads(),
        "forward_ms": forward_ms,
        "train_step_ms": train_step_ms,
        "forward_median_ms": median(&forward_ms),
        "train_step_median_ms": median(&train_step_ms),
        "ops": if cpu { op_timings(repeats)? } else { Value::Null },
        "transformer_ops": if cpu { transformer_op_timings(repeats)? } else { Value::Null },
    }))
}

/// How far MST++'s own kernels run from this CPU's peak: a large f32 matrix product (candle's
/// GEMM, the fastest code this process runs) gives the measured peak in GFLOP/s, and the
/// depthwise 3×3 convolution and the spectral attention's two products (K·Qᵀ and A·V, 31 × 31
/// per head) are timed on MST++'s shapes, each with its GFLOP/s and its fraction of that peak.
pub fn transformer_op_timings(repeats: usize) -> Result<Value> {
    let device = Device::Cpu;
    let gflops = |flops: f64, ms: f64| flops / (ms * 1e6);
    let n = 1024;
    let (a, b) = (Tensor::rand(-1f32, 1f32, (n, n), &device)?, Tensor::rand(-1f32, 1f32, (n, n), &device)?);
    let peak_ms = median(&runs_ms(repeats, || Ok(a.matmul(&b)?))?);
    let peak = gflops(2.0 * (n * n * n) as f64, peak_ms);
    let entry = |flops: f64, ms: f64| json!({"median_ms": ms, "gflops": gflops(flops, ms), "fraction_of_peak": gflops(flops, ms) / peak});
    let mut out = serde_json::Map::new();
    out.insert("peak_gemm_1024".into(), json!({"median_ms": peak_ms, "gflops": peak}));
    // Depthwise 3×3: the feed-forward's at the top level of a 482 × 512 forward (124 channels),
    // and a training batch's (8 × 124 × 64 × 64).
    for (name, (bn, c, h, w)) in [("depthwise_1x124x482x512", (1, 124, ROWS, COLS)), ("depthwise_8x124x64x64", (8, 124, 64, 64))] {
        let x = Tensor::rand(-1f32, 1f32, (bn, c, h, w), &device)?;
        let k = (Tensor::rand(-1f32, 1f32, (c, 1, 3, 3), &device)? * 0.1)?;
        let ms = median(&runs_ms(repeats, || Ok(crate::nn::depthwise::depthwise_conv2d(&x, &k)?))?);
        out.insert(name.into(), entry(2.0 * 9.0 * (bn * c * h * w) as f64, ms));
    }
    // The attention's products for one head of 31 channels over a 482 × 512 image.
    let (d, hw) = (31, ROWS * COLS);
    let (q, k, v) = (Tensor::rand(-1f32, 1f32, (1, 1, d, hw), &device)?, Tensor::rand(-1f32, 1f32, (1, 1, d, hw), &device)?, Tensor::rand(-1f32, 1f32, (1, 1, d, hw), &device)?);
    let qt = q.transpose(2, 3)?.contiguous()?;
    let ms = median(&runs_ms(repeats, || {
        let attn = crate::nn::norm::softmax_last(&k.matmul(&qt)?)?;
        Ok(attn.matmul(&v)?)
    })?);
    out.insert("attention_1head_31x482x512".into(), entry(2.0 * 2.0 * (d * d * hw) as f64, ms));
    Ok(Value::Object(out))
}

/// The single ops of the speed issue on 8×32×64×64 with 32→32 3×3 kernels (padding 1): the
/// convolution's forward pass, its input gradient and its weight gradient, and LeakyReLU,
/// each by the path the models use now, by the im2col + GEMM path, and by stock candle
/// (`conv2d`, `conv_transpose2d`, candle-nn's `leaky_relu`). The PyTorch script times the same
/// ops on the same shapes. GFLOP/s counts 2·n·o·c·9·h·w per convolution.
pub fn op_timings(repeats: usize) -> Result<Value> {
    use crate::nn::conv::{conv2d, conv2d_input_grad, conv2d_weight_grad, direct_enabled, set_direct_enabled};
    let device = Device::Cpu;
    let (n, c, h, w) = (8, 32, 64, 64);
    let x = Tensor::rand(-1f32, 1f32, (n, c, h, w), &device)?;
    let weight = (Tensor::rand(-1f32, 1f32, (c, c, 3, 3), &device)? * 0.1)?;
    let grad = Tensor::rand(-1f32, 1f32, (n, c, h, w), &device)?;
    let flops = 2.0 * (n * c * c * 9 * h * w) as f64;
    let conv_entry = |runs: Vec<f64>| {
        let m = median(&runs);
        json!({"median_ms": m, "runs_ms": runs, "gflops": flops / (m * 1e6)})
    };
    let mut paths = serde_json::Map::new();
    let direct_available = direct_enabled();
    for (name, direct) in [("ours", true), ("im2col", false)] {
        if direct && !direct_available {
            continue;
        }
        set_direct_enabled(direct);
        let forward = runs_ms(repeats, || Ok(conv2d(&x, &weight, 1, 1)?));
        let input_grad = runs_ms(repeats, || Ok(conv2d_input_grad(&grad, &weight, x.dims(), 1, 1)?));
        let weight_grad = runs_ms(repeats, || Ok(conv2d_weight_grad(&x, &grad, weight.dims(), 1, 1)?));
        set_direct_enabled(direct_available);
        paths.insert(name.into(), json!({"conv2d_forward": conv_entry(forward?), "conv2d_input_grad": conv_entry(input_grad?), "conv2d_weight_grad": conv_entry(weight_grad?)}));
    }
    let stock_forward = runs_ms(repeats, || Ok(x.conv2d(&weight, 1, 1, 1, 1)?))?;
    let stock_input_grad = runs_ms(repeats, || Ok(grad.conv_transpose2d(&weight, 1, 0, 1, 1)?))?;
    paths.insert("candle_stock".into(), json!({"conv2d_forward": conv_entry(stock_forward), "conv2d_input_grad": conv_entry(stock_input_grad)}));
    let leaky_ours = runs_ms(repeats, || Ok(crate::nn::act::leaky_relu(&x, 0.2)?))?;
    let leaky_stock = runs_ms(repeats, || Ok(candle_nn::ops::leaky_relu(&x, 0.2)?))?;
    Ok(json!({
        "shape": [n, c, h, w],
        "kernel": [c, c, 3, 3],
        "direct_kernel": direct_available,
        "conv": paths,
        "leaky_relu": {"ours_median_ms": median(&leaky_ours), "candle_stock_median_ms": median(&leaky_stock)},
    }))
}

/// Where one forward pass and one training step spend their time.
fn profile_unet(files: &ModelFiles) -> Result<Value> {
    let device = Device::Cpu;
    let (card, varmap, net) = trainable(&files.weights, &device)?;
    let image = Tensor::rand(0f32, 1f32, (1, 3, ROWS, COLS), &device)?;
    let (cam1, cam8) = (canon_cameras(net.as_ref(), 1, &device)?, canon_cameras(net.as_ref(), 8, &device)?);
    net.forward_t(&image, cam1.as_ref(), false)?;
    profile::start();
    let t = Instant::now();
    net.forward_t(&image, cam1.as_ref(), false)?;
    let forward_total = t.elapsed().as_secs_f64() * 1e3;
    let ops = profile::stop();
    let forward_ops: serde_json::Map<String, Value> =
        ops.iter().map(|(op, (ms, calls))| (op.to_string(), json!({"ms": ms, "calls": calls, "share": ms / forward_total}))).collect();
    // Training step split into its phases.
    let x = Tensor::rand(0f32, 1f32, (8, 3, 64, 64), &device)?;
    let y = Tensor::rand(0f32, 1f32, (8, card.wavelengths.len(), 64, 64), &device)?;
    let mut opt = AdamW::new(varmap.data().lock().unwrap_or_else(|e| e.into_inner()).clone(), 1e-4)?;
    // The training-mode forward op by op (batch statistics, no folding).
    net.forward_t(&x, cam8.as_ref(), true)?;
    profile::start();
    let t = Instant::now();
    net.forward_t(&x, cam8.as_ref(), true)?;
    let train_forward_total = t.elapsed().as_secs_f64() * 1e3;
    let train_forward_ops: serde_json::Map<String, Value> =
        profile::stop().iter().map(|(op, (ms, calls))| (op.to_string(), json!({"ms": ms, "calls": calls, "share": ms / train_forward_total}))).collect();
    // The backward pass: the convolution gradients are timed inside the op; the rest is
    // candle's own backward of batch norm, pooling, shuffles and the loss.
    let loss = loss_fn(crate::train::Loss::L1, &net.forward_t(&x, cam8.as_ref(), true)?, &y)?;
    profile::start();
    let t = Instant::now();
    loss.backward()?;
    let backward_total = t.elapsed().as_secs_f64() * 1e3;
    let backward_ops: serde_json::Map<String, Value> =
        profile::stop().iter().map(|(op, (ms, calls))| (op.to_string(), json!({"ms": ms, "calls": calls, "share": ms / backward_total}))).collect();
    let mut phases = [0.0f64; 3];
    for _ in 0..3 {
        let t0 = Instant::now();
        let loss = loss_fn(crate::train::Loss::L1, &net.forward_t(&x, cam8.as_ref(), true)?, &y)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&grads, 1e-3)?;
        let t3 = Instant::now();
        for (p, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
            *p += d.as_secs_f64() * 1e3 / 3.0;
        }
    }
    Ok(json!({
        "forward_482x512": {"total_ms": forward_total, "ops": forward_ops},
        "train_step_8x3x64x64_ms": {"forward": phases[0], "backward": phases[1], "optimiser": phases[2]},
        "train_forward_8x3x64x64": {"total_ms": train_forward_total, "ops": train_forward_ops},
        "train_backward_8x3x64x64": {"total_ms": backward_total, "ops": backward_ops},
    }))
}

pub fn recon_suite(repeats: usize, part: &str, model: Option<&Path>, device: &Device) -> Result<Value> {
    if let (Some(path), "parity") = (model, part) {
        // Any network, a PyTorch checkpoint included.
        return parity_timings(path, repeats, device);
    }
    let mscnn = match model {
        Some(p) => ModelFiles::resolve(p)?,
        None => find_model("mscnn").ok_or_else(|| Error::invalid("no mscnn model found: give --model PATH"))?,
    };
    match part {
        "parity" => return parity_timings(&mscnn.weights, repeats, device),
        "profile" if !device.is_cpu() => return Err(Error::invalid("bench recon --suite profile times the CPU kernels: run it with --device cpu")),
        "profile" => return profile_unet(&mscnn),
        "all" => {}
        other => return Err(Error::invalid(format!("unknown recon bench part '{other}' (expected all, parity or profile)"))),
    }
    let camera = CameraResponse::builtin("canon-eos-5d-mark-ii")?;
    let mut cfg = SceneConfig::new(7, ROWS, COLS)?;
    cfg.camera = camera.clone();
    let rgb: RgbImage = generate(&cfg)?.rgb;
    let device = device.clone();
    let cpu = device.is_cpu();
    // Inference memory first, while the process is still small: peak RSS growth of one
    // mscnn reconstruction (tiled, 512-px tiles) over the RSS before it.
    let rss_before = status_mib("VmRSS");
    let method = load_method("mscnn", Some(&mscnn.weights), &camera, &device)?;
    reconstruct(method.as_ref(), &rgb, &camera, ReconOptions::default(), &JobContext::silent())?;
    let inference_peak = match (status_mib("VmHWM"), rss_before) {
        (Some(peak), Some(before)) => json!({"rss_before_mib": before, "peak_rss_mib": peak, "growth_mib": peak - before}),
        _ => Value::Null,
    };
    let mut methods = serde_json::Map::new();
    for name in builtin_methods() {
        let model = if name == "mscnn" { Some(mscnn.weights.as_path()) } else { None };
        let loaded = match load_method(name, model, &camera, &device) {
            Ok(m) => m,
            Err(e) => {
                methods.insert(name.into(), json!({"error": e.to_string()}));
                continue;
            }
        };
        let runs = runs_ms(repeats, || reconstruct(loaded.as_ref(), &rgb, &camera, ReconOptions::default(), &JobContext::silent()))?;
        let consistent = ReconOptions { consistent: true, ..Default::default() };
        let runs_consistent = runs_ms(repeats.min(3), || reconstruct(loaded.as_ref(), &rgb, &camera, consistent, &JobContext::silent()))?;
        methods.insert(name.into(), json!({"median_ms": median(&runs), "runs_ms": runs, "consistent_median_ms": median(&runs_consistent)}));
    }
    let camera_aware = camera_aware_overhead(&rgb, &camera, repeats, &device)?;
    Ok(json!({
        "image": format!("{ROWS}x{COLS} synthetic scene (seed 7), linear RGB through the Canon"),
        "device": crate::recon::device::device_name(&device),
        "cpu_ops": crate::nn::portable::cpu_path_name(),
        "camera_aware_vs_one_camera": camera_aware,
        "threads": candle_core::utils::get_num_threads(),
        "repeats": repeats,
        "reconstruct_482x512": methods,
        "mscnn_inference_memory": if cpu { inference_peak } else { json!("host RSS only: not the GPU's memory") },
        "mscnn_unet": parity_timings(&mscnn.weights, repeats, &device)?,
        "profile": if cpu { profile_unet(&mscnn)? } else { Value::Null },
        "pytorch": "run bench/pytorch_parity.py for the PyTorch peer and the ratios (same machine, same threads)",
    }))
}

/// What camera-awareness costs at inference: each shipped network against a one-camera network
/// of the same architecture and size (the shipped models before camera-awareness), timed
/// alternately on the same image in the same run. The one-camera twin has random weights: the
/// time does not depend on them.
fn camera_aware_overhead(rgb: &RgbImage, camera: &CameraResponse, repeats: usize, device: &Device) -> Result<Value> {
    let mut out = serde_json::Map::new();
    for name in ["mscnn", "basisnet"] {
        let Some(files) = find_model(name) else { continue };
        let card = ModelCard::load(&files.card)?;
        let aware = crate::recon::learned::NetReconstructor::load(&files, camera, device)?;
        let mut one_camera = card.clone();
        for (key, value) in [("camera_aware", false), ("illumination_cues", false), ("linear_prior", true)] {
            one_camera.config[key] = json!(value);
        }
        one_camera.camera = camera.name.clone();
        let varmap = VarMap::new();
        let net = build_net(&one_camera, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        let twin = crate::recon::learned::NetReconstructor::from_parts(one_camera, net, camera, device.clone())?;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..repeats.max(1) {
            a.extend(runs_ms(1, || reconstruct(&aware, rgb, camera, ReconOptions::default(), &JobContext::silent()))?);
            b.extend(runs_ms(1, || reconstruct(&twin, rgb, camera, ReconOptions::default(), &JobContext::silent()))?);
        }
        let (ma, mb) = (median(&a), median(&b));
        out.insert(name.into(), json!({"camera_aware_median_ms": ma, "one_camera_median_ms": mb, "ratio": ma / mb, "camera_aware_runs_ms": a, "one_camera_runs_ms": b}));
    }
    Ok(Value::Object(out))
}
