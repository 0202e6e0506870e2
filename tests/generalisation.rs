//! Cameras handled honestly and the data engine's world: a model knows a camera by its curves,
//! not its name; `linear` refits itself for any camera; a network trained for one camera
//! refuses another before it runs; a camera-aware network trains on world scenes with random
//! cameras and uses the camera it is told; `compare --protocol` scores on held-out worlds.

use candle_core::Device;
use spectral_studio::engine::JobContext;
use spectral_studio::models::Architecture;
use spectral_studio::recon::registry::load_method;
use spectral_studio::recon::{reconstruct, ReconOptions};
use spectral_studio::spectral::camera::CameraResponse;
use spectral_studio::spectral::render::project;
use spectral_studio::train::data::DataSource;
use spectral_studio::train::world::{scene, Protocol, World};
use spectral_studio::train::{train, TrainConfig};
use spectral_studio::{default_wavelengths, RgbImage};
use std::path::Path;
use std::process::Command;

fn write_camera_csv(camera: &CameraResponse, path: &Path) {
    let mut text = String::from("wavelength,r,g,b\n");
    for (i, w) in camera.wavelengths.iter().enumerate() {
        text += &format!("{w},{},{},{}\n", camera.matrix[[0, i]], camera.matrix[[1, i]], camera.matrix[[2, i]]);
    }
    std::fs::write(path, text).unwrap();
}

fn rendered(s: &spectral_studio::train::world::WorldScene, camera: &CameraResponse) -> RgbImage {
    let c = camera.on_grid(&default_wavelengths()).unwrap();
    RgbImage::new(project(c.view(), s.cube.view()).unwrap()).unwrap()
}

fn fit(method: Architecture, camera: &str, dir: &Path) -> std::path::PathBuf {
    let mut cfg = TrainConfig::new(method, DataSource::World { count: 3, size: 24 });
    cfg.camera = camera.into();
    let (tx, _rx) = crossbeam_channel::unbounded();
    train(&cfg, dir, None, &Device::Cpu, &tx, &JobContext::silent()).unwrap().model.weights
}

#[test]
fn a_camera_file_with_the_shipped_curves_is_that_camera_whatever_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let canon = CameraResponse::builtin("canon").unwrap();
    let renamed = dir.path().join("my-camera.csv");
    write_camera_csv(&canon, &renamed);
    let camera = CameraResponse::from_csv(&renamed).unwrap();
    assert_eq!(camera.name, "my-camera");
    let model = fit(Architecture::Linear, "canon", dir.path());
    let card = spectral_studio::recon::card::ModelCard::load(&model.with_extension("json")).unwrap();
    assert!(card.fits_camera(&camera).unwrap());
    assert!(!card.fits_camera(&CameraResponse::builtin("nikon").unwrap()).unwrap());
}

#[test]
fn linear_refits_itself_for_the_camera_given() {
    let dir = tempfile::tempdir().unwrap();
    let canon_model = fit(Architecture::Linear, "canon", &dir.path().join("canon"));
    let nikon_model = fit(Architecture::Linear, "nikon", &dir.path().join("nikon"));
    let nikon = CameraResponse::builtin("nikon").unwrap();
    // The Canon model told the Nikon refits from its spectral moment: the same map as fitting
    // on the same spectra rendered through the Nikon.
    let refitted = load_method("linear", Some(&canon_model), &nikon, &Device::Cpu).unwrap();
    let direct = load_method("linear", Some(&nikon_model), &nikon, &Device::Cpu).unwrap();
    let as_canon = load_method("linear", Some(&canon_model), &CameraResponse::builtin("canon").unwrap(), &Device::Cpu).unwrap();
    let s = scene(World::TRAINING, 42, 16).unwrap();
    let rgb = rendered(&s, &nikon);
    let job = JobContext::silent();
    let (a, b, c) = (refitted.reconstruct_raw(&rgb, &job).unwrap(), direct.reconstruct_raw(&rgb, &job).unwrap(), as_canon.reconstruct_raw(&rgb, &job).unwrap());
    let scale = b.iter().cloned().fold(0.0f32, f32::max);
    let gap = |x: &ndarray::Array3<f32>| (x - &b).iter().fold(0.0f32, |m, d| m.max(d.abs())) / scale;
    assert!(gap(&a) < 1e-3, "refit differs from a direct fit by {}", gap(&a));
    assert!(gap(&c) > 10.0 * gap(&a), "the Canon map is not the Nikon's: {} vs {}", gap(&c), gap(&a));
}

#[test]
fn a_network_trained_for_one_camera_refuses_another_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = TrainConfig::new(Architecture::Basisnet, DataSource::World { count: 2, size: 32 });
    cfg.model = serde_json::json!({ "bands": 31, "basis": 4, "width": 4, "depth": 1, "dropout": 0.0, "camera_aware": false });
    (cfg.steps, cfg.batch, cfg.patch, cfg.validate_every, cfg.checkpoint_every) = (1, 2, 16, 1, 1);
    let (tx, _rx) = crossbeam_channel::unbounded();
    let model = train(&cfg, dir.path(), None, &Device::Cpu, &tx, &JobContext::silent()).unwrap().model.weights;
    let err = load_method("basisnet", Some(&model), &CameraResponse::builtin("nikon").unwrap(), &Device::Cpu).err().expect("refused").to_string();
    assert!(err.contains("trained for the camera 'canon-eos-5d-mark-ii' only") && err.contains("nikon-5100"), "{err}");
    assert!(load_method("basisnet", Some(&model), &CameraResponse::builtin("canon").unwrap(), &Device::Cpu).is_ok());
    // The studio's Reconstruct panel asks the same question before offering the method.
    let entry = spectral_studio::recon::registry::MethodEntry {
        name: "fixed".into(),
        kind: "learned",
        description: String::new(),
        model: Some(model.clone()),
        camera: Some("canon-eos-5d-mark-ii".into()),
        architecture: Some(spectral_studio::models::Architecture::Basisnet),
    };
    let why = spectral_studio::recon::registry::camera_refusal(&entry, &CameraResponse::builtin("nikon").unwrap()).expect("refused");
    assert!(why.contains("cannot use 'nikon-5100'"), "{why}");
    assert_eq!(spectral_studio::recon::registry::camera_refusal(&entry, &CameraResponse::builtin("canon").unwrap()), None);
}

#[test]
fn a_camera_aware_network_trains_on_world_scenes_and_uses_the_camera_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = TrainConfig::new(Architecture::Mscnn, DataSource::World { count: 3, size: 32 });
    cfg.model = serde_json::json!({ "bands": 31, "width": 4, "depth": 1, "dropout": 0.0, "linear_prior": true, "intensity_normalised": true, "camera_aware": true, "camera_coords": 4 });
    (cfg.steps, cfg.batch, cfg.patch, cfg.validate_every, cfg.checkpoint_every) = (3, 2, 16, 3, 3);
    let (tx, rx) = crossbeam_channel::unbounded();
    let summary = train(&cfg, dir.path(), None, &Device::Cpu, &tx, &JobContext::silent()).unwrap();
    assert_eq!(summary.card.camera, "any");
    assert!(rx.try_iter().any(|e| matches!(e, spectral_studio::train::TrainEvent::Validation { .. })));
    let weights = candle_core::safetensors::load(&summary.model.weights, &Device::Cpu).unwrap();
    let moment = weights["wiener.moment"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(moment.iter().all(|v| v.is_finite()) && moment[0] > 0.0, "the spectral prior was set from the data");
    // Told each camera, the output re-projects through that camera to (nearly) the input: the
    // network only adds what the camera cannot see to that camera's Wiener estimate.
    let s = scene(Protocol::CrossCamera.test_world(), 5, 24).unwrap();
    for camera in [CameraResponse::builtin("canon").unwrap(), CameraResponse::builtin("nikon").unwrap()] {
        let rgb = rendered(&s, &camera);
        let method = load_method("mscnn", Some(&summary.model.weights), &camera, &Device::Cpu).unwrap();
        let out = reconstruct(method.as_ref(), &rgb, &camera, ReconOptions::default(), &JobContext::silent()).unwrap();
        let c = camera.on_grid(&default_wavelengths()).unwrap();
        let back = project(c.view(), out.cube.data.view()).unwrap();
        let err = (&back - &rgb.data).iter().fold(0.0f32, |m, d| m.max(d.abs()));
        let peak = rgb.data.iter().cloned().fold(0.0f32, f32::max);
        assert!(err < 0.02 * peak, "{}: re-projection error {err} of {peak}", camera.name);
    }
}

#[test]
fn compare_scores_a_protocol_through_its_held_out_cameras() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spectral-studio"))
        .args(["compare", "--methods", "spline,pca", "--protocol", "cross-camera", "--synthetic", "2", "--size", "32", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["protocol"], "cross-camera");
    assert!(v["camera"].as_str().unwrap().contains("nikon-5100"), "{}", v["camera"]);
    let methods = v["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 2);
    let (spline, pca) = (methods[0]["mrae"].as_f64().unwrap(), methods[1]["mrae"].as_f64().unwrap());
    assert!(pca.is_finite() && spline.is_finite() && pca < spline, "pca {pca} vs spline {spline}");
    assert_eq!(methods[1]["images"], 2);
    assert!(v.get("scenes").is_none(), "scenes are listed only when asked for");
    // --per-scene: each scene's light and camera, and each method's scores on it, whose mean is
    // the table's figure.
    let listed = Command::new(env!("CARGO_BIN_EXE_spectral-studio"))
        .args(["compare", "--methods", "spline,pca", "--protocol", "cross-camera", "--synthetic", "2", "--size", "32", "--per-scene", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let l: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let scenes = l["scenes"].as_array().unwrap();
    assert_eq!(scenes.len(), 2);
    assert!(scenes.iter().all(|s| s["camera"].as_str().unwrap().contains("nikon-5100") && !s["light"].as_str().unwrap().is_empty()), "{l}");
    assert_eq!(scenes[1]["seed"].as_u64().unwrap(), scenes[0]["seed"].as_u64().unwrap() + 1);
    let mean: f64 = scenes.iter().map(|s| s["methods"]["pca"]["mrae"].as_f64().unwrap()).sum::<f64>() / 2.0;
    assert!((mean - pca).abs() < 1e-9, "per-scene mean {mean} against the table's {pca}");
    let text = Command::new(env!("CARGO_BIN_EXE_spectral-studio"))
        .args(["compare", "--methods", "pca", "--protocol", "cross-camera", "--synthetic", "2", "--size", "32", "--per-scene"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("per scene") && text.contains(scenes[0]["light"].as_str().unwrap()), "{text}");
    let bad = Command::new(env!("CARGO_BIN_EXE_spectral-studio"))
        .args(["compare", "--methods", "pca", "--protocol", "cross-everything"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown protocol"));
    // With --fixed-camera every scene is seen through --camera, and cross-camera is skipped.
    let fixed = Command::new(env!("CARGO_BIN_EXE_spectral-studio"))
        .args(["compare", "--methods", "pca", "--protocol", "cross-camera,cross-library", "--synthetic", "1", "--size", "32", "--camera", "nikon-5100", "--fixed-camera", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(fixed.status.success(), "{}", String::from_utf8_lossy(&fixed.stderr));
    let v: serde_json::Value = serde_json::from_slice(&fixed.stdout).unwrap();
    assert_eq!((v["protocol"].as_str(), v["camera"].as_str()), (Some("cross-library"), Some("nikon-5100")), "{v}");
    assert!(String::from_utf8_lossy(&fixed.stderr).contains("cross-camera is skipped"));
}
