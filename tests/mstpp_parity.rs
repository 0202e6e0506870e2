//! MST++ in candle against its PyTorch twin (`bench/mstpp_torch.py`), from fixtures written by
//! `scripts/fixtures/mstpp.py`: a checkpoint saved the way the authors' training code saves one
//! (`{'epoch', 'iter', 'state_dict', 'optimizer'}`, DataParallel's `module.` names) loads by name
//! with its card inferred, and gives the same output, the same output for an image whose sides
//! are not multiples of 8 (reflect padding and crop), and the same gradients of L = Σ y · r with
//! respect to the input and every parameter.
//!
//! Tolerances: both engines compute in f32. Measured on the committed fixtures (4 features,
//! 2 stages, 2 levels; torch 2.15, candle 0.11.1, x86-64): outputs 1.1e-6 and 9.4e-7 of their
//! largest value (outputs reach ~1800 with these random weights), gradients at most 2.9e-5 of
//! each tensor's largest |value|. The bounds leave ~10× and ~3× of room for other CPUs'
//! summation orders, while a real mistake (a head split the other way, a missing rescale, a
//! wrong reflect) is orders of magnitude above them. `-- --nocapture` prints the errors.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use spectral_studio::engine::JobContext;
use spectral_studio::models::mstpp::{Mstpp, MstppConfig};
use spectral_studio::models::{Architecture, SpectralNet};
use spectral_studio::recon::card::{ModelCard, ANY_CAMERA};
use spectral_studio::recon::pytorch::{check_against, infer_architecture, read_state_dict};
use spectral_studio::recon::registry::load_method;
use spectral_studio::recon::{reconstruct, Ensemble, InputScale, ReconOptions};
use spectral_studio::spectral::camera::CameraResponse;
use std::collections::HashMap;
use std::path::PathBuf;

/// Largest |candle − PyTorch| allowed on a forward output, as a fraction of its largest |value|
/// (the random weights make outputs of a few hundred to two thousand).
const FORWARD_REL_TOL: f32 = 1e-5;
const GRAD_REL_TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mstpp").join(name)
}

fn io() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("io.safetensors"), &Device::Cpu).expect("read io.safetensors")
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    a.sub(b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

/// max |a − b| / max |b|.
fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(a, b) / b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6)
}

/// The checkpoint's card: its architecture inferred, and the 4 bands given wavelengths.
fn card() -> ModelCard {
    let tensors = read_state_dict(&fixture("tiny.pth")).expect("read the checkpoint");
    let (architecture, config) = infer_architecture(&fixture("tiny.pth"), &tensors).expect("infer its architecture");
    assert_eq!(architecture, Architecture::Mstpp);
    ModelCard {
        name: "tiny".into(),
        architecture,
        config,
        wavelengths: vec![400.0, 500.0, 600.0, 700.0],
        camera: ANY_CAMERA.into(),
        input_mean: None,
        data: "random weights".into(),
        command: "python scripts/fixtures/mstpp.py".into(),
        training: None,
        metrics: None,
        notes: None,
    }
}

/// A model built in a VarMap holding the checkpoint's weights.
fn model() -> (VarMap, Mstpp) {
    let tensors = read_state_dict(&fixture("tiny.pth")).unwrap();
    let card = card();
    let config: MstppConfig = card.config_as().unwrap();
    assert_eq!(config, MstppConfig { in_channels: 3, out_channels: 4, n_feat: 4, stage: 2, levels: 2, num_blocks: vec![1, 1, 1] });
    check_against(&fixture("tiny.pth"), &card, &tensors).expect("every tensor by name and shape");
    let varmap = VarMap::new();
    let net = Mstpp::new(&config, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        var.set(&tensors[name]).unwrap();
    }
    (varmap, net)
}

#[test]
fn an_authors_format_checkpoint_gives_pytorchs_outputs() {
    let io = io();
    let (_, net) = model();
    let y = net.forward_t(&io["x"], None, false).unwrap();
    let err = max_rel(&y, &io["y"]);
    let odd = net.forward_t(&io["x_odd"], None, false).unwrap();
    let err_odd = max_rel(&odd, &io["y_odd"]);
    println!("forward |candle - torch| / max |torch|: {err:e}, odd size {err_odd:e}");
    assert!(err < FORWARD_REL_TOL && err_odd < FORWARD_REL_TOL, "{err:e} {err_odd:e}");
}

#[test]
fn gradients_equal_pytorchs_for_the_input_and_every_parameter() {
    let io = io();
    let (varmap, net) = model();
    let x = Var::from_tensor(&io["x"]).unwrap();
    let loss = (net.forward_t(x.as_tensor(), None, true).unwrap() * &io["r"]).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let mut checked = 0;
    let mut worst = (0.0f32, String::new());
    let vars: Vec<(String, Var)> = varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (name, tensor) in std::iter::once(("x".to_string(), x.as_tensor().clone())).chain(vars.into_iter().map(|(k, v)| (k, v.as_tensor().clone()))) {
        let ours = grads.get(&tensor).unwrap_or_else(|| panic!("no gradient reaches {name}"));
        let theirs = &io[&format!("grad.{name}")];
        let scale = theirs.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        let rel = max_abs(ours, theirs) / scale;
        if rel > worst.0 {
            worst = (rel, name.clone());
        }
        assert!(rel < GRAD_REL_TOL, "{name}: gradient differs by {rel:e} of its largest value");
        checked += 1;
    }
    println!("{checked} gradients, worst relative difference {:e} ({})", worst.0, worst.1);
    assert_eq!(checked, io.keys().filter(|k| k.starts_with("grad.")).count(), "every PyTorch gradient has a candle twin");
}

#[test]
fn the_checkpoint_reconstructs_through_the_registry_like_any_model() {
    let io = io();
    let camera = CameraResponse::builtin("canon").unwrap();
    // Without a card, 4 bands cannot be placed on the 31-band grid: the error says so.
    let err = load_method("mstpp", Some(&fixture("tiny.pth")), &camera, &Device::Cpu).err().expect("4 bands need a card").to_string();
    assert!(err.contains("tiny.pth") && err.contains("makes 4 bands"), "{err}");
    // With its card beside it, it is a method like any other.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.pth");
    std::fs::copy(fixture("tiny.pth"), &path).unwrap();
    card().save(&path.with_extension("json")).unwrap();
    let method = load_method("mstpp", Some(&path), &camera, &Device::Cpu).expect("load the .pth as method mstpp");
    let first = io["x"].get(0).unwrap();
    let rgb = spectral_studio::RgbImage::new(ndarray::Array3::from_shape_vec((3, 16, 16), first.flatten_all().unwrap().to_vec1::<f32>().unwrap()).unwrap()).unwrap();
    let out = reconstruct(method.as_ref(), &rgb, &camera, ReconOptions::default(), &JobContext::silent()).unwrap();
    // The reconstruction clips negative radiance, as every method does.
    let expected = io["y"].get(0).unwrap().relu().unwrap();
    let got = Tensor::from_vec(out.cube.data.iter().copied().collect::<Vec<f32>>(), (4, 16, 16), &Device::Cpu).unwrap();
    assert_eq!(out.cube.wavelengths, [400.0, 500.0, 600.0, 700.0]);
    assert!(max_rel(&got, &expected) < FORWARD_REL_TOL, "{}", max_rel(&got, &expected));
    // Its attention uses every pixel's statistics, so it runs whole even when tiles are smaller.
    let tiled = spectral_studio::recon::learned::NetReconstructor::load_pytorch(&path, &camera, &Device::Cpu).unwrap().with_tile(8);
    let out = reconstruct(&tiled, &rgb, &camera, ReconOptions::default(), &JobContext::silent()).unwrap();
    let got = Tensor::from_vec(out.cube.data.iter().copied().collect::<Vec<f32>>(), (4, 16, 16), &Device::Cpu).unwrap();
    assert!(max_rel(&got, &expected) < FORWARD_REL_TOL, "tiled: {}", max_rel(&got, &expected));
}

#[test]
fn the_authors_predict_pipeline_min_max_and_self_ensemble_gives_pytorchs_results() {
    let io = io();
    let camera = CameraResponse::builtin("canon").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.pth");
    std::fs::copy(fixture("tiny.pth"), &path).unwrap();
    card().save(&path.with_extension("json")).unwrap();
    let method = load_method("mstpp", Some(&path), &camera, &Device::Cpu).unwrap();
    let raw = io["x_raw"].get(0).unwrap();
    let rgb = spectral_studio::RgbImage::new(ndarray::Array3::from_shape_vec((3, 16, 12), raw.flatten_all().unwrap().to_vec1::<f32>().unwrap()).unwrap()).unwrap();
    for (ensemble, key) in [(Ensemble::Mean, "y_pipe_mean"), (Ensemble::Median, "y_pipe_median")] {
        let options = ReconOptions { input_scale: InputScale::MinMax, ensemble, ..Default::default() };
        let out = reconstruct(method.as_ref(), &rgb, &camera, options, &JobContext::silent()).unwrap();
        let got = Tensor::from_vec(out.cube.data.iter().copied().collect::<Vec<f32>>(), (4, 16, 12), &Device::Cpu).unwrap();
        // Every reconstruction clips negative radiance, after combining the members.
        let err = max_rel(&got, &io[key].get(0).unwrap().relu().unwrap());
        println!("{key}: {err:e}");
        assert!(err < FORWARD_REL_TOL, "{key}: {err:e}");
    }
}

#[test]
fn bad_checkpoints_are_refused_with_the_file_and_the_tensors_named() {
    let dir = tempfile::tempdir().unwrap();
    let camera = CameraResponse::builtin("canon").unwrap();
    // Tensors of no known architecture, or of the right names and the wrong ranks: an error, no panic.
    for (name, dims) in [("conv_in.weight", vec![4usize]), ("unet.inc.weight", vec![4, 3, 3, 3])] {
        let mut odd = HashMap::new();
        odd.insert(name.to_string(), Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu).unwrap());
        odd.insert("conv_out.weight".to_string(), Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap());
        let err = infer_architecture(&fixture("odd.pth"), &odd).unwrap_err().to_string();
        assert!(err.contains("odd.pth") && err.contains("no architecture this program recognises"), "{err}");
    }
    // Not a zip at all.
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let err = load_method("mstpp", Some(&junk), &camera, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("junk.pth") && err.contains("not a PyTorch checkpoint"), "{err}");
    // A card beside it that asks for another config: every misfit named.
    let copy = dir.path().join("wide.pth");
    std::fs::copy(fixture("tiny.pth"), &copy).unwrap();
    card().save(&copy.with_extension("json")).unwrap();
    // Another architecture's method name.
    let err = load_method("mscnn", Some(&copy), &camera, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("method 'mscnn' given a 'mstpp' checkpoint"), "{err}");
    let mut card = card();
    card.config = serde_json::to_value(MstppConfig { in_channels: 3, out_channels: 8, n_feat: 8, stage: 3, levels: 2, num_blocks: vec![1, 1, 1] }).unwrap();
    card.save(&copy.with_extension("json")).unwrap();
    let err = load_method("mstpp", Some(&copy), &camera, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("wide.pth") && err.contains("missing body.2.") && err.contains("wrong shape: body.0.") && err.contains("proj.weight is [16, 16], expected [32, 32]"), "{err}");
}
