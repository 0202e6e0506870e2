//! The reconstruction engine through its library API: every method on a rendered scene, the
//! shared options (consistency, exposure invariance), tiling, the registry, cancellation, and a
//! tiny training run with checkpoint and resume.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use spectral_studio::engine::{CancelToken, JobContext};
use spectral_studio::models::Architecture;
use spectral_studio::recon::card::ModelCard;
use spectral_studio::recon::learned::NetReconstructor;
use spectral_studio::models::mscnn::{Mscnn, MscnnConfig};
use spectral_studio::recon::registry::{list_methods, load_method, builtin_methods};
use spectral_studio::recon::{reconstruct, ReconOptions, Reconstructor};
use spectral_studio::spectral::camera::CameraResponse;
use spectral_studio::spectral::scene::{generate, SceneConfig};
use spectral_studio::train::data::DataSource;
use spectral_studio::train::{train, TrainConfig, TrainEvent};
use spectral_studio::{default_wavelengths, metrics, Error, RgbImage};

fn canon() -> CameraResponse {
    CameraResponse::builtin("canon-eos-5d-mark-ii").unwrap()
}

fn scene(seed: u64, size: usize) -> spectral_studio::spectral::scene::Scene {
    let mut cfg = SceneConfig::new(seed, size, size).unwrap();
    cfg.camera = canon();
    generate(&cfg).unwrap()
}

fn random_mscnn(width: usize, depth: usize) -> NetReconstructor {
    let vm = VarMap::new();
    let cfg = MscnnConfig { bands: 31, width, depth, dropout: 0.0, linear_prior: false, intensity_normalised: false, camera_aware: false, camera_coords: 6, illumination_cues: false };
    let net = Mscnn::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let card = ModelCard {
        name: "random-mscnn".into(),
        architecture: Architecture::Mscnn,
        config: serde_json::to_value(&cfg).unwrap(),
        wavelengths: default_wavelengths(),
        camera: "canon-eos-5d-mark-ii".into(),
        input_mean: Some(0.2),
        data: "none (random weights)".into(),
        command: String::new(),
        training: None,
        metrics: None,
        notes: None,
    };
    NetReconstructor::from_parts(card, Box::new(net), &canon(), Device::Cpu).unwrap()
}

#[test]
fn every_shipped_method_reconstructs_a_rendered_scene_and_beats_a_flat_guess() {
    let s = scene(3, 48);
    let flat = s.cube.data.mean().unwrap();
    let flat_mrae = metrics::mrae(&s.cube.data.mapv(|_| flat), &s.cube.data).unwrap();
    let shipped: Vec<String> = list_methods().into_iter().filter(|m| m.name == "spline" || m.model.is_some()).map(|m| m.name).collect();
    for name in ["spline", "linear", "pca", "mscnn", "basisnet"] {
        assert!(shipped.iter().any(|s| s == name), "{name} ships no model: {shipped:?}");
    }
    for name in shipped.iter().map(String::as_str).filter(|n| builtin_methods().contains(n)) {
        let method = load_method(name, None, &canon(), &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = reconstruct(method.as_ref(), &s.rgb, &canon(), ReconOptions::default(), &JobContext::silent()).unwrap();
        if method.wavelengths() != default_wavelengths().as_slice() {
            // inss synthesises its own wide grid (400-2450 nm): checked for that grid and its
            // visible part's shape against the scene (its scenes are aerial, this one is not)
            assert_eq!(name, "inss");
            assert_eq!(out.cube.data.dim(), (method.wavelengths().len(), 48, 48));
            assert!(out.cube.data.iter().all(|v| v.is_finite() && *v >= 0.0), "{name}");
            let visible = out.cube.resample(&default_wavelengths()).unwrap();
            let sam = metrics::sam_deg(&visible.data, &s.cube.data).unwrap();
            assert!(sam < 30.0, "{name}: SAM {sam}° on 400-700 nm");
            continue;
        }
        assert_eq!(out.cube.data.dim(), (31, 48, 48), "{name}");
        assert_eq!(out.cube.wavelengths, default_wavelengths());
        let mrae = metrics::mrae(&out.cube.data, &s.cube.data).unwrap();
        assert!(mrae < 0.5 * flat_mrae, "{name}: MRAE {mrae} vs flat guess {flat_mrae}");
    }
}

#[test]
fn consistency_option_makes_every_method_reproduce_its_input() {
    let s = scene(4, 32);
    let c = canon().on_grid(&default_wavelengths()).unwrap();
    for name in ["spline", "linear", "pca"] {
        let method = load_method(name, None, &canon(), &Device::Cpu).unwrap();
        let plain = reconstruct(method.as_ref(), &s.rgb, &canon(), ReconOptions::default(), &JobContext::silent()).unwrap();
        let options = ReconOptions { consistent: true, ..Default::default() };
        let fixed = reconstruct(method.as_ref(), &s.rgb, &canon(), options, &JobContext::silent()).unwrap();
        let before = metrics::consistency_mrae(&s.rgb.data, &c, &plain.cube.data).unwrap();
        let after = metrics::consistency_mrae(&s.rgb.data, &c, &fixed.cube.data).unwrap();
        let report = fixed.consistency.expect("a report");
        assert!((report.before_mrae - before).abs() < 1e-9 && (report.after_mrae - after).abs() < 1e-9);
        assert!(after < 1e-4, "{name}: consistency MRAE {before} → {after}");
        assert!(fixed.cube.data.iter().all(|&v| v >= 0.0), "{name}: negative radiance");
    }
}

#[test]
fn exposure_invariance_scales_the_output_with_the_input() {
    let net = random_mscnn(4, 2);
    let s = scene(5, 40);
    let options = ReconOptions { exposure_invariant: true, ..Default::default() };
    let base = reconstruct(&net, &s.rgb, &canon(), options, &JobContext::silent()).unwrap();
    let brighter = RgbImage::new(s.rgb.data.mapv(|v| v * 2.0)).unwrap();
    let twice = reconstruct(&net, &brighter, &canon(), options, &JobContext::silent()).unwrap();
    let scale = twice.exposure_scale.unwrap() / base.exposure_scale.unwrap();
    assert!((scale - 2.0).abs() < 1e-5);
    let worst = (&twice.cube.data - &base.cube.data.mapv(|v| v * 2.0)).iter().fold(0.0f32, |a, d| a.max(d.abs()));
    let peak = base.cube.data.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    assert!(worst <= 1e-4 * peak.max(1.0), "×2 input gives ×2 output up to {worst}");
    // Without the option a (random, nonlinear) network does not scale like that.
    let plain = reconstruct(&net, &brighter, &canon(), ReconOptions::default(), &JobContext::silent()).unwrap();
    let plain_base = reconstruct(&net, &s.rgb, &canon(), ReconOptions::default(), &JobContext::silent()).unwrap();
    let gap = (&plain.cube.data - &plain_base.cube.data.mapv(|v| v * 2.0)).iter().fold(0.0f32, |a, d| a.max(d.abs()));
    assert!(gap > 10.0 * worst.max(1e-6));
}

#[test]
fn tiled_inference_equals_whole_image_inference() {
    let rgb = scene(6, 150).rgb;
    let rgb = RgbImage::new(rgb.data.slice(ndarray::s![.., ..150, ..137]).to_owned()).unwrap();
    // One network, run whole (the default 512-px tile covers the image) and in 48-px tiles.
    let net = random_mscnn(4, 2);
    let big = net.reconstruct_raw(&rgb, &JobContext::silent()).unwrap();
    let net = net.with_tile(48);
    let tiled = net.reconstruct_raw(&rgb, &JobContext::silent()).unwrap();
    let worst = (&big - &tiled).iter().fold(0.0f32, |a, d| a.max(d.abs()));
    assert!(worst < 1e-4, "tiles differ from the whole image by {worst}");
    assert_eq!(tiled.dim(), (31, 150, 137));
}

#[test]
fn registry_lists_the_builtins_and_refuses_unknown_names_and_bad_models() {
    let names: Vec<String> = list_methods().into_iter().map(|m| m.name).collect();
    for b in builtin_methods() {
        assert!(names.iter().any(|n| n == b), "{b} missing from {names:?}");
    }
    let err = load_method("nosuch", None, &canon(), &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("nosuch") && err.contains("mscnn"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("broken.json");
    let weights = dir.path().join("broken.safetensors");
    std::fs::copy(spectral_studio::recon::registry::find_model("mscnn").unwrap().card, &card).unwrap();
    std::fs::write(&weights, b"not a safetensors file").unwrap();
    let err = load_method("broken", Some(&weights), &canon(), &Device::Cpu).err().unwrap();
    assert!(matches!(&err, Error::Format { path, .. } if path == &weights), "{err}");
    let err = load_method("spline", Some(&weights), &canon(), &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("no model"), "{err}");
    // The shipped linear map refits itself for another camera; one without the spectral moment
    // to refit from (as fitted before the moment was kept) refuses it.
    let nikon = CameraResponse::builtin("nikon-5100").unwrap();
    assert!(load_method("linear", None, &nikon, &Device::Cpu).is_ok());
    let shipped = spectral_studio::recon::registry::find_model("linear").unwrap();
    let mut tensors = candle_core::safetensors::load(&shipped.weights, &Device::Cpu).unwrap();
    assert!(tensors.remove("moment").is_some(), "the shipped linear model keeps its moment");
    let old = dir.path().join("old-linear.safetensors");
    candle_core::safetensors::save(&tensors, &old).unwrap();
    std::fs::copy(&shipped.card, old.with_extension("json")).unwrap();
    let err = load_method("linear", Some(&old), &nikon, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("fitted for camera") && err.contains("no spectral moment"), "{err}");
    assert!(load_method("linear", Some(&old), &canon(), &Device::Cpu).is_ok());
}

#[test]
fn a_cancelled_job_stops_with_cancelled() {
    let cancel = CancelToken::new();
    cancel.cancel();
    let job = JobContext::new(cancel, |_, _| {});
    let rgb = scene(7, 32).rgb;
    let err = reconstruct(&random_mscnn(4, 1), &rgb, &canon(), ReconOptions::default(), &job).err().unwrap();
    assert!(matches!(err, Error::Cancelled));
}

fn tiny_config(steps: usize) -> TrainConfig {
    let mut cfg = TrainConfig::new(Architecture::Mscnn, DataSource::Synthetic { count: 2, size: 32 });
    cfg.model = serde_json::json!({ "bands": 31, "width": 4, "depth": 1, "dropout": 0.0 });
    (cfg.steps, cfg.batch, cfg.patch, cfg.validate_every, cfg.checkpoint_every) = (steps, 2, 16, 2, 2);
    cfg
}

#[test]
fn training_reports_events_writes_checkpoints_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let summary = train(&tiny_config(4), &dir.path().join("full"), None, &Device::Cpu, &tx, &JobContext::silent()).unwrap();
    let events: Vec<TrainEvent> = rx.try_iter().collect();
    assert!(matches!(events.first(), Some(TrainEvent::Started { start_step: 0, total_steps: 4, .. })));
    assert_eq!(events.iter().filter(|e| matches!(e, TrainEvent::Step { .. })).count(), 4);
    assert_eq!(events.iter().filter(|e| matches!(e, TrainEvent::Validation { .. })).count(), 2);
    assert!(matches!(events.last(), Some(TrainEvent::Finished { steps: 4, .. })));
    assert!(summary.card.training.as_ref().unwrap().val_mrae.unwrap().is_finite());
    // The model loads like a shipped one and reconstructs.
    let method = load_method("mscnn", Some(&summary.model.weights), &canon(), &Device::Cpu).unwrap();
    let out = reconstruct(method.as_ref(), &scene(8, 24).rgb, &canon(), ReconOptions::default(), &JobContext::silent()).unwrap();
    assert_eq!(out.cube.bands(), 31);

    // Stop after 2 steps, resume to 4: the same weights as the uninterrupted run (batches
    // depend only on seed and step; summation order may differ slightly across threads).
    train(&tiny_config(2), &dir.path().join("half"), None, &Device::Cpu, &tx, &JobContext::silent()).unwrap();
    let _ = rx.try_iter().count();
    let ckpt = dir.path().join("half/checkpoints/ckpt-000002.safetensors");
    let resumed = train(&tiny_config(4), &dir.path().join("resumed"), Some(&ckpt), &Device::Cpu, &tx, &JobContext::silent()).unwrap();
    assert!(matches!(rx.try_iter().next(), Some(TrainEvent::Started { start_step: 2, .. })));
    let a = candle_core::safetensors::load(&summary.model.weights, &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(&resumed.model.weights, &Device::Cpu).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        let diff = ta.sub(&b[name]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-3, "{name} differs by {diff} after resuming");
    }
}

#[test]
fn a_weight_averaged_run_writes_the_average_and_a_resumed_run_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let averaged = |steps| TrainConfig { ema: Some(0.5), ..tiny_config(steps) };
    let full = train(&averaged(4), &dir.path().join("full"), None, &Device::Cpu, &tx, &JobContext::silent()).unwrap();
    let load = |p: &std::path::Path| candle_core::safetensors::load(p, &Device::Cpu).unwrap();
    let max_diff = |a: &candle_core::Tensor, b: &candle_core::Tensor| a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    // The model written is the average, not the last step's weights (which the checkpoint keeps
    // for resuming, with the average in its training state).
    let written = load(&full.model.weights);
    let last = load(&dir.path().join("full/checkpoints/ckpt-000004.safetensors"));
    let state = load(&dir.path().join("full/checkpoints/ckpt-000004.optim.safetensors"));
    let moved = written.iter().filter(|(name, w)| max_diff(w, &last[*name]) > 1e-6).count();
    assert!(moved > 0, "the written model equals the last step's weights");
    for (name, w) in &written {
        assert!(max_diff(w, &state[&format!("ema.{name}")]) == 0.0, "{name}: the written model is not the checkpoint's average");
    }
    // Stopped at 2 and resumed to 4, the average ends where the whole run's did.
    train(&averaged(2), &dir.path().join("half"), None, &Device::Cpu, &tx, &JobContext::silent()).unwrap();
    let ckpt = dir.path().join("half/checkpoints/ckpt-000002.safetensors");
    let resumed = train(&averaged(4), &dir.path().join("resumed"), Some(&ckpt), &Device::Cpu, &tx, &JobContext::silent()).unwrap();
    let again = load(&resumed.model.weights);
    for (name, w) in &written {
        assert!(max_diff(w, &again[name]) < 1e-3, "{name} differs after resuming");
    }
    // A checkpoint without an average cannot continue one.
    train(&tiny_config(2), &dir.path().join("plain"), None, &Device::Cpu, &tx, &JobContext::silent()).unwrap();
    let plain = dir.path().join("plain/checkpoints/ckpt-000002.safetensors");
    let err = train(&averaged(4), &dir.path().join("mixed"), Some(&plain), &Device::Cpu, &tx, &JobContext::silent()).err().unwrap().to_string();
    assert!(err.contains("no weight average") && err.contains("ckpt-000002"), "{err}");
    drop(rx);
}

#[test]
fn training_can_be_cancelled_between_steps() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancelToken::new();
    let (tx, rx) = crossbeam_channel::unbounded();
    let stopper = cancel.clone();
    let job = JobContext::new(cancel, move |fraction, what| {
        if what == "training" && fraction > 0.0 {
            stopper.cancel();
        }
    });
    let err = train(&tiny_config(50), dir.path(), None, &Device::Cpu, &tx, &job).err().unwrap();
    assert!(matches!(err, Error::Cancelled));
    let steps = rx.try_iter().filter(|e| matches!(e, TrainEvent::Step { .. })).count();
    assert_eq!(steps, 1, "cancellation takes effect before the next step");
}

/// Intensity normalisation makes a network's output scale exactly with the input's brightness
/// (the NTIRE 2020 brightness test), where the same network without it does not.
#[test]
fn an_intensity_normalised_network_scales_its_output_with_brightness() {
    use spectral_studio::models::SpectralNet;
    let s = scene(5, 32);
    let x = candle_core::Tensor::from_vec(s.rgb.data.iter().copied().collect::<Vec<f32>>(), (1, 3, 32, 32), &Device::Cpu).unwrap();
    let worst_ratio_error = |normalised: bool| {
        let vm = VarMap::new();
        let cfg = MscnnConfig { bands: 31, width: 4, depth: 2, dropout: 0.0, linear_prior: false, intensity_normalised: normalised, camera_aware: false, camera_coords: 6, illumination_cues: false };
        let net = Mscnn::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let y1 = net.forward_t(&x, None, false).unwrap();
        let y2 = net.forward_t(&(&x * 2.0).unwrap(), None, false).unwrap();
        let diff = (y2 - (y1.clone() * 2.0).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        diff / y1.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    };
    let with = worst_ratio_error(true);
    let without = worst_ratio_error(false);
    assert!(with < 1e-5, "normalised: 2x input gave output off 2x by {with}");
    assert!(without > 1e-3, "without normalisation the check should fail ({without}): the test would prove nothing");
}

#[test]
fn pixel_regressions_recover_a_polynomial_map_of_their_degree() {
    use ndarray::Array3;
    use spectral_studio::recon::baselines::PixelRegression;
    // spectra that are exactly a quadratic function of the RGB (no constant term)
    let rgb = Array3::from_shape_fn((3, 20, 24), |(k, r, c)| 0.1 + 0.8 * (((k * 7 + r * 3 + c * 5) % 17) as f32 / 17.0));
    let spectrum = |x: [f32; 3], b: usize| 0.3 * x[0] + 0.2 * x[1] * (b as f32 / 5.0) + 0.5 * x[2] * x[0] - 0.1 * x[1] * x[1] * (b % 3) as f32;
    let cube = Array3::from_shape_fn((6, 20, 24), |(b, r, c)| spectrum([rgb[[0, r, c]], rgb[[1, r, c]], rgb[[2, r, c]]], b));
    let quadratic = PixelRegression::fit(&[(&cube, &rgb)], 2, 1).unwrap();
    let error = |p: &PixelRegression| (&p.apply(&rgb) - &cube).mapv(f32::abs).fold(0f32, |a, &b| a.max(b));
    assert_eq!(quadratic.map.dim(), (6, 9));
    assert!(error(&quadratic) < 1e-4, "degree 2 recovers a quadratic map: {}", error(&quadratic));
    let linear = PixelRegression::fit(&[(&cube, &rgb)], 1, 1).unwrap();
    assert!(error(&linear) > 1e-2, "a linear map cannot: {}", error(&linear));
    // every other pixel is enough for the exact map; bad requests are refused
    assert!(error(&PixelRegression::fit(&[(&cube, &rgb)], 2, 2).unwrap()) < 1e-4);
    assert!(PixelRegression::fit(&[(&cube, &rgb)], 3, 1).unwrap_err().to_string().contains("degree must be 1 or 2"));
    assert!(PixelRegression::fit(&[], 1, 1).is_err());
}
