//! The multi-scale U-Net in candle against its PyTorch twin (`bench/pytorch_parity.py`), from
//! fixtures written by `scripts/fixtures/mscnn.py`: the same weights give the same eval output,
//! train output (batch statistics), running-statistic update, padded-and-cropped output for an
//! odd image size, and the same gradients of L = Σ y_train · r with respect to the input and to
//! every parameter.
//!
//! Tolerances: both engines compute in f32 and differ only in summation order. Measured on the
//! committed fixtures (5 bands, width 4, depth 2, batch 2×16×16; torch 2.15, candle 0.11.1,
//! x86-64): eval output 6e-8 and train output 9e-7 absolute on values up to 0.4 and 1.6;
//! gradients at most 1.8e-6 of each tensor's largest |value|. The bounds below leave ~10× and
//! ~50× of room for other CPUs' SIMD paths; a real mistake (a swapped statistic, a wrong
//! shuffle order, a missing gradient path) is orders of magnitude above them. Run with
//! `-- --nocapture` to see the errors.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use spectral_studio::models::mscnn::{Mscnn, MscnnConfig};
use spectral_studio::models::SpectralNet;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// Largest |candle − PyTorch| allowed on a forward output.
const FORWARD_ABS_TOL: f32 = 1e-5;
/// Largest |candle − PyTorch| allowed on a gradient, as a fraction of its largest |value|.
const GRAD_REL_TOL: f32 = 1e-4;

fn config() -> MscnnConfig {
    MscnnConfig { bands: 5, width: 4, depth: 2, dropout: 0.0, linear_prior: false, intensity_normalised: false, camera_aware: false, camera_coords: 6, illumination_cues: false }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mscnn").join(name)
}

fn io() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("io.safetensors"), &Device::Cpu).expect("read io.safetensors")
}

/// A fresh model with the fixture weights. Fresh for every check, because a train-mode forward
/// moves the batch-norm running statistics held in the VarMap.
fn model() -> (VarMap, Mscnn) {
    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Mscnn::new(&config(), vb).expect("build mscnn");
    // Fails if the model asks for a tensor the file lacks or of another shape.
    varmap.load(fixture("weights.safetensors")).expect("load weights");
    (varmap, model)
}

fn vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let mut all: Vec<_> = varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn is_running_statistic(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// (largest |got − want|, largest |want|), after checking the shapes match.
fn errors(what: &str, got: &Tensor, want: &Tensor) -> (f32, f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (got, want) = (values(got), values(want));
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = want.iter().map(|b| b.abs()).fold(0f32, f32::max);
    assert!(diff.is_finite(), "{what}: non-finite values");
    (diff, scale)
}

fn assert_forward_close(what: &str, got: &Tensor, want: &Tensor) {
    let (diff, scale) = errors(what, got, want);
    println!("{what}: max abs diff {diff:.3e} (max |value| {scale:.3})");
    // A zero output would pass any closeness check against a zero reference.
    assert!(scale > 0.1, "{what}: reference output is degenerate");
    assert!(diff <= FORWARD_ABS_TOL, "{what}: max abs diff {diff:e} > {FORWARD_ABS_TOL:e}");
}

fn assert_grad_close(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    let (diff, scale) = errors(what, got, want);
    assert!(scale > 0.0, "{what}: reference gradient is all zero");
    let relative = diff / scale;
    assert!(relative <= GRAD_REL_TOL, "{what}: max diff {diff:e} is {relative:e} of max |grad| {scale:e}");
    relative
}

#[test]
fn weights_file_holds_exactly_the_model_tensors() {
    let (varmap, _model) = model();
    let file = candle_core::safetensors::load(fixture("weights.safetensors"), &Device::Cpu).unwrap();
    let in_file: BTreeSet<_> = file.keys().cloned().collect();
    let in_model: BTreeSet<_> = vars(&varmap).into_iter().map(|(k, _)| k).collect();
    assert_eq!(in_model, in_file);
    for name in ["unet.inc.conv1.weight", "unet.down.1.bn2.running_var", "unet.up.0.bn1.bias", "out.bias"] {
        assert!(in_model.contains(name), "{name} missing");
    }
}

#[test]
fn eval_forward_matches_pytorch() {
    let io = io();
    let (_, model) = model();
    let y = model.forward_t(&io["x"], None, false).unwrap();
    assert_forward_close("y_eval", &y, &io["y_eval"]);
}

#[test]
fn odd_size_eval_forward_pads_and_crops_like_pytorch() {
    let io = io();
    let (_, model) = model();
    let y = model.forward_t(&io["x_odd"], None, false).unwrap();
    assert_eq!(y.dims(), &[1, 5, 13, 10]);
    assert_forward_close("y_odd_eval", &y, &io["y_odd_eval"]);
}

#[test]
fn train_forward_matches_pytorch_and_moves_running_statistics_alike() {
    let io = io();
    let (varmap, model) = model();
    let y = model.forward_t(&io["x"], None, true).unwrap();
    assert_forward_close("y_train", &y, &io["y_train"]);
    // Batch statistics differ from the running ones, so the two modes must give different output.
    let (eval_gap, _) = errors("y_train vs y_eval", &io["y_train"], &io["y_eval"]);
    assert!(eval_gap > 1e-2, "fixture does not separate train and eval mode");

    let mut checked = 0;
    for (name, var) in vars(&varmap).into_iter().filter(|(k, _)| is_running_statistic(k)) {
        let want = &io[&format!("running.{name}")];
        let (diff, _) = errors(&name, var.as_tensor(), want);
        assert!(diff <= FORWARD_ABS_TOL, "{name} after one train step: max abs diff {diff:e}");
        checked += 1;
    }
    // Mean and variance of the two batch norms in each of the 1 + 2·depth Double Convs.
    assert_eq!(checked, 2 * 2 * (1 + 2 * 2));
}

#[test]
fn gradients_match_pytorch() {
    let io = io();
    let (varmap, model) = model();
    let x = Var::from_tensor(&io["x"]).unwrap();
    let y = model.forward_t(x.as_tensor(), None, true).unwrap();
    let loss = (y * &io["r"]).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();

    let grad_x = grads.get(x.as_tensor()).expect("no gradient for the input");
    let mut worst = ("grad.x".to_string(), assert_grad_close("grad.x", grad_x, &io["grad.x"]));
    let mut checked = 0;
    for (name, var) in vars(&varmap).into_iter().filter(|(k, _)| !is_running_statistic(k)) {
        let what = format!("grad.{name}");
        let want = io.get(&what).unwrap_or_else(|| panic!("fixture lacks {what}"));
        let got = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let relative = assert_grad_close(&what, got, want);
        if relative > worst.1 {
            worst = (what, relative);
        }
        checked += 1;
    }
    let in_fixture = io.keys().filter(|k| k.starts_with("grad.") && *k != "grad.x").count();
    assert_eq!(checked, in_fixture, "every PyTorch parameter gradient is compared");
    println!("gradients: {} tensors, worst {} at {:.3e} of its max |grad|", checked + 1, worst.0, worst.1);
}

// ---------------------------------------------------------------------------------------------
// The camera-aware model (src/models/camera.rs) against the same twin: the camera matrices
// numpy computes from the spectral prior and two cameras, then forward and gradients.

fn aware_config() -> MscnnConfig {
    MscnnConfig { bands: 5, width: 4, depth: 2, dropout: 0.0, linear_prior: false, intensity_normalised: true, camera_aware: true, camera_coords: 3, illumination_cues: true }
}

fn aware_io() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("aware_io.safetensors"), &Device::Cpu).expect("read aware_io.safetensors")
}

fn aware_model() -> (VarMap, Mscnn) {
    let mut varmap = VarMap::new();
    let model = Mscnn::new(&aware_config(), VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).expect("build mscnn");
    varmap.load(fixture("aware_weights.safetensors")).expect("load weights");
    (varmap, model)
}

/// The camera batch candle computes for the fixture's cameras and pictures.
fn aware_cameras(model: &Mscnn, io: &HashMap<String, Tensor>) -> spectral_studio::models::camera::CameraBatch {
    let cams = io["cameras"].to_dtype(DType::F32).unwrap();
    let cameras: Vec<ndarray::Array2<f32>> = (0..2)
        .map(|i| ndarray::Array2::from_shape_vec((3, 5), values(&cams.get(i).unwrap())).unwrap())
        .collect();
    let x = &io["x"];
    let cues: Vec<spectral_studio::models::camera::Cues> = (0..2)
        .map(|i| {
            let img = ndarray::Array3::from_shape_vec((3, 16, 16), values(&x.get(i).unwrap())).unwrap();
            spectral_studio::models::camera::illumination_cues(img.view())
        })
        .collect();
    model.camera_prior().expect("camera-aware").batch(&cameras, &Device::Cpu).unwrap().with_cues(&cues, 2).unwrap()
}

#[test]
fn camera_aware_matrices_forward_and_gradients_match_pytorch() {
    let io = aware_io();
    let (varmap, model) = aware_model();
    let cam = aware_cameras(&model, &io);
    // The matrices: Wiener map, camera-normalised coordinates (eigenvector signs fixed alike),
    // metamer projector and cues, as numpy computes them.
    for (what, got) in [("cam.wiener", &cam.wiener), ("cam.coords", &cam.coords), ("cam.null", &cam.null)] {
        let (diff, scale) = errors(what, got, &io[what]);
        println!("{what}: max abs diff {diff:.3e} (max |value| {scale:.3})");
        assert!(diff <= 1e-4 * scale.max(1.0), "{what}: {diff:e}");
    }
    let cues = cam.cues.as_ref().unwrap().reshape((2, 3, 2)).unwrap();
    let (diff, _) = errors("cam.cues", &cues, &io["cam.cues"]);
    assert!(diff <= 1e-6, "cues: {diff:e}");

    let y = model.forward_t(&io["x"], Some(&cam), false).unwrap();
    assert_forward_close("aware y_eval", &y, &io["y_eval"]);
    let x = Var::from_tensor(&io["x"]).unwrap();
    let y = model.forward_t(x.as_tensor(), Some(&cam), true).unwrap();
    assert_forward_close("aware y_train", &y, &io["y_train"]);
    let grads = (y * &io["r"]).unwrap().sum_all().unwrap().backward().unwrap();
    assert_grad_close("aware grad.x", grads.get(x.as_tensor()).expect("input gradient"), &io["grad.x"]);
    let mut checked = 0;
    for (name, var) in vars(&varmap).into_iter().filter(|(k, _)| !is_running_statistic(k) && !k.starts_with("wiener.")) {
        let what = format!("grad.{name}");
        let got = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_grad_close(&what, got, io.get(&what).unwrap_or_else(|| panic!("fixture lacks {what}")));
        checked += 1;
    }
    assert_eq!(checked, io.keys().filter(|k| k.starts_with("grad.") && *k != "grad.x").count());
}
