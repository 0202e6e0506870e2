//! UAL fusion (issue 16): the degradation network's op against the simulator and finite
//! differences, the fusion and adaptation modules' gradients, and the test-time adaptation on a
//! small pair.

mod cli_util;
mod finite_diff;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use finite_diff::{gradient_error, random, variable_gradient_error, weighted_sum};
use ndarray::{Array2, Array3};
use spectral_studio::cube::Cube;
use spectral_studio::engine::JobContext;
use spectral_studio::models::ual::{self, Adaptation, Degradation, Fusion, UalConfig};
use spectral_studio::recon::fusion::{evaluate, fuse, kernel_similarity, FuseOptions, FusionEvalConfig, KernelMode, SceneSubspace, SubspaceChoice, Variant};
use spectral_studio::spectral::degrade::{blur_decimate, upsample_bicubic, BlurKernel};

fn tensor3(a: &Array3<f32>) -> Tensor {
    let (c, h, w) = a.dim();
    Tensor::from_iter(a.iter().copied(), &Device::Cpu).unwrap().reshape((1, c, h, w)).unwrap()
}

fn smooth_cube(bands: usize, rows: usize, cols: usize) -> Array3<f32> {
    Array3::from_shape_fn((bands, rows, cols), |(b, r, c)| {
        let (x, y, l) = (c as f32 / cols as f32, r as f32 / rows as f32, b as f32 / bands as f32);
        0.3 + 0.2 * (6.0 * x + 2.0 * l).sin() * (4.0 * y).cos() + 0.1 * l + if (r / 5 + c / 7) % 2 == 0 { 0.1 } else { 0.0 }
    })
}

#[test]
fn the_degradation_network_is_the_simulator_and_has_correct_gradients() {
    // Through a framed kernel, the strided convolution is blur_decimate, borders included.
    let cube = smooth_cube(3, 24, 32);
    // An asymmetric kernel of even sides too: the same orientation and centre on both paths.
    let lopsided = BlurKernel::new(Array2::from_shape_fn((4, 6), |(r, c)| (1 + r * 6 + c * c) as f32)).unwrap();
    for (scale, kernel) in [(8, BlurKernel::motion(9.0, 30.0).unwrap()), (4, BlurKernel::gaussian(5, 1.0).unwrap()), (3, BlurKernel::disk(2.0).unwrap()), (2, lopsided)] {
        let side = Degradation::kernel_side(scale);
        let framed = kernel.framed(side).unwrap();
        let k = Tensor::from_iter(framed.iter().copied(), &Device::Cpu).unwrap().reshape((1, 1, side, side)).unwrap();
        let net = ual::degrade(&tensor3(&cube), &k, scale).unwrap();
        let expected = blur_decimate(cube.view(), &kernel, scale).unwrap();
        let got: Vec<f32> = net.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(net.dims(), &[1, 3, 24 / scale, 32 / scale]);
        let worst = got.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "×{scale}: {worst}");
    }
    // Gradients through the replicated border and the stride, for the image and the kernel.
    let (z, k) = (random(&[2, 2, 8, 10], 1), random(&[1, 1, 6, 6], 2));
    let err_z = gradient_error(&z, |z| weighted_sum(&ual::degrade(z, &k, 2)?, 3));
    let err_k = gradient_error(&k, |k| weighted_sum(&ual::degrade(&z, k, 2)?, 3));
    assert!(err_z < 1e-8 && err_k < 1e-8, "{err_z:e} {err_k:e}");
    // The op (its own CPU kernels) against candle's generic convolution: outputs and both
    // gradients, at a size the stride does not divide.
    for (shape, side, scale) in [([2usize, 3, 11, 14], 5usize, 3usize), ([1, 2, 16, 16], 32, 8)] {
        let z = candle_core::Var::from_tensor(&random(&shape, 4).to_dtype(DType::F32).unwrap()).unwrap();
        let k = candle_core::Var::from_tensor(&random(&[1, 1, side, side], 5).to_dtype(DType::F32).unwrap()).unwrap();
        let ours = ual::degrade(z.as_tensor(), k.as_tensor(), scale).unwrap();
        let peer = ual::degrade_conv2d(z.as_tensor(), k.as_tensor(), scale).unwrap();
        assert_eq!(ours.dims(), peer.dims());
        let weights = random(ours.dims(), 6).to_dtype(DType::F32).unwrap();
        let (g_ours, g_peer) = ((&ours * &weights).unwrap().sum_all().unwrap().backward().unwrap(), (&peer * &weights).unwrap().sum_all().unwrap().backward().unwrap());
        // The largest difference relative to the largest value (sums of up to 1024 products).
        let worst = |a: &Tensor, b: &Tensor| {
            let max = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            max(&(a - b).unwrap()) / max(b).max(1e-30)
        };
        assert!(worst(&ours, &peer) < 1e-6, "forward {}", worst(&ours, &peer));
        for v in [&z, &k] {
            let (a, b) = (g_ours.get(v.as_tensor()).unwrap(), g_peer.get(v.as_tensor()).unwrap());
            assert!(worst(a, b) < 1e-6, "gradient {}", worst(a, b));
        }
    }
    // P·Z and its gradient.
    let p = random(&[3, 2], 4);
    let err_p = gradient_error(&z, |z| weighted_sum(&ual::project(z, &p)?, 5));
    assert!(err_p < 1e-8, "{err_p:e}");
    assert!(ual::degrade(&z, &random(&[1, 1, 5, 5], 6), 2).is_err(), "K − s odd");
}

#[test]
fn fusion_and_adaptation_modules_have_correct_gradients_and_the_adaptation_starts_as_the_identity() {
    let cfg = UalConfig { bands: 4, msi_bands: 2, width: 3, depth: 2, residual: false };
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    let fusion = Fusion::new(&cfg, vb.pp("fusion")).unwrap();
    let adapt = Adaptation::new(&cfg, vb.pp("adapt")).unwrap();
    let (x, y) = (random(&[2, 2, 6, 5], 7).affine(0.5, 0.5).unwrap(), random(&[2, 4, 6, 5], 8).affine(0.5, 0.5).unwrap());
    let z = fusion.forward(&x, &y).unwrap();
    assert_eq!(z.dims(), &[2, 4, 6, 5]);
    // Before any step Ẑ = Z̃: the output convolution starts at zero.
    let same = (adapt.forward(&z).unwrap() - &z).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    assert_eq!(same, 0.0);
    let err_x = gradient_error(&x, |x| weighted_sum(&fusion.forward(x, &y)?, 9));
    let err_y = gradient_error(&y, |y| weighted_sum(&fusion.forward(&x, y)?, 9));
    assert!(err_x < 1e-7 && err_y < 1e-7, "{err_x:e} {err_y:e}");
    let vars = vm.data().lock().unwrap().clone();
    for name in ["fusion.branch_x.0.weight", "fusion.branch_xy.1.bias", "fusion.guide_a.0.weight", "fusion.guide_b.1.weight", "fusion.out.weight"] {
        let err = variable_gradient_error(&vars[name], 12, || weighted_sum(&fusion.forward(&x, &y).unwrap(), 10).unwrap());
        assert!(err < 1e-7, "{name}: {err:e}");
    }
    // Move the output convolution off zero so gradients reach the whole adaptation module.
    let out = &vars["adapt.out.weight"];
    out.set(&random(out.dims(), 11)).unwrap();
    for name in ["adapt.mapping.0.weight", "adapt.guide_a.1.weight", "adapt.guide_b.0.bias", "adapt.out.weight"] {
        let err = variable_gradient_error(&vars[name], 12, || weighted_sum(&adapt.forward(&z).unwrap(), 12).unwrap());
        assert!(err < 1e-7, "{name}: {err:e}");
    }
    // The residual variant (not in the paper) is the same module plus Y↑, on the same weights.
    let residual = Fusion::new(&UalConfig { residual: true, ..cfg.clone() }, vb.pp("fusion")).unwrap();
    let plus = (fusion.forward(&x, &y).unwrap() + &y).unwrap();
    let diff = (residual.forward(&x, &y).unwrap() - plus).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    assert!(diff < 1e-12, "{diff:e}");
    let err_y = gradient_error(&y, |y| weighted_sum(&residual.forward(&x, y)?, 9));
    assert!(err_y < 1e-7, "{err_y:e}");
    assert!(Fusion::new(&UalConfig { width: 0, ..cfg.clone() }, VarBuilder::zeros(DType::F32, &Device::Cpu)).is_err());
}

#[test]
fn adaptation_fits_the_pair_without_ground_truth() {
    let (bands, scale) = (31, 4);
    let truth = smooth_cube(bands, 32, 32);
    let kernel = BlurKernel::anisotropic(9, 2.0, 0.7, 30.0).unwrap();
    let lr = Cube::on_default_grid(blur_decimate(truth.view(), &kernel, scale).unwrap()).unwrap();
    let camera = Array2::from_shape_fn((3, bands), |(c, b)| {
        let centre = [25.0, 15.0, 5.0][c];
        (-((b as f32 - centre) / 4.0).powi(2)).exp()
    });
    let camera = &camera / &camera.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
    let hr = spectral_studio::spectral::render::project(camera.view(), truth.view()).unwrap();
    let job = JobContext::silent();
    // Zero steps: the starting point (no fusion module here: the bicubic cube).
    let start = fuse(None, &hr, &lr, &camera, &FuseOptions::new(scale, 0), &Device::Cpu, None, &job).unwrap();
    let bicubic = upsample_bicubic(lr.data.view(), scale, 32, 32).unwrap();
    assert!(start.cube.data.iter().zip(bicubic.iter()).all(|(a, b)| (a - b.max(0.0)).abs() < 1e-6));
    // A small adaptation module, so enough steps run in a test.
    let mut opts = FuseOptions::new(scale, 400);
    opts.adaptation = Some((8, 1));
    let fused = fuse(None, &hr, &lr, &camera, &opts, &Device::Cpu, None, &job).unwrap();
    let (first, last) = (fused.steps[0], *fused.steps.last().unwrap());
    // At the paper's learning rates both terms fall. (Whether the kernel nears the true one
    // depends on how sharp the start is: from the bicubic cube, as here, a sharper kernel fits
    // best; the degradation network's own learning is the next test.)
    assert!(last.loss < 0.9 * first.loss, "loss {} → {}", first.loss, last.loss);
    assert!(last.loss_msi < first.loss_msi && last.loss_lr < first.loss_lr, "{first:?} → {last:?}");
    let side = Degradation::kernel_side(scale);
    assert_eq!(fused.kernel.dim(), (side, side));
    assert!((fused.kernel.sum() - 1.0).abs() < 1e-4);
    // The predefined kernel stays what it is.
    opts.kernel = KernelMode::Predefined;
    opts.steps = 3;
    let fixed = fuse(None, &hr, &lr, &camera, &opts, &Device::Cpu, None, &job).unwrap();
    let h = BlurKernel::gaussian(8, 3f64.sqrt()).unwrap().framed(side).unwrap();
    assert!(fixed.kernel.iter().zip(h.iter()).all(|(a, b)| (a - b).abs() < 1e-6));
    // Non-finite input is named, not fitted.
    let mut broken = hr.clone();
    broken[[1, 3, 3]] = f32::NAN;
    let err = fuse(None, &broken, &lr, &camera, &FuseOptions::new(scale, 1), &Device::Cpu, None, &job).err().unwrap().to_string();
    assert!(err.contains("non-finite"), "{err}");
    // A pair that is not one.
    let wrong = Cube::on_default_grid(Array3::zeros((bands, 5, 8))).unwrap();
    let err = fuse(None, &hr, &wrong, &camera, &FuseOptions::new(scale, 1), &Device::Cpu, None, &job).err().unwrap().to_string();
    assert!(err.contains("32×32") && err.contains("8×8"), "{err}");
}

#[test]
fn the_scene_subspace_layer_keeps_the_rgb_and_recovers_a_low_rank_scene() {
    // Three materials mixed in proportions that change from pixel to pixel, faster than the
    // low-resolution cube can follow: every spectrum lies in a 3-dimensional span.
    let (bands, scale, size) = (31, 4, 32);
    let material = |k: usize, b: usize| {
        let l = b as f32 / (bands - 1) as f32;
        [0.2 + 0.6 * l, 0.7 - 0.5 * l, 0.3 + 0.3 * (-((l - 0.5) / 0.15).powi(2)).exp()][k]
    };
    let share = |k: usize, r: usize, c: usize| 1.0 + (((r * 7 + c * 13 + k * 5) * 2654435761usize) % 97) as f32 / 97.0;
    let truth = Array3::from_shape_fn((bands, size, size), |(b, r, c)| {
        let total: f32 = (0..3).map(|k| share(k, r, c)).sum();
        (0..3).map(|k| share(k, r, c) / total * material(k, b)).sum::<f32>()
    });
    let lr = Cube::on_default_grid(blur_decimate(truth.view(), &BlurKernel::motion(7.0, 30.0).unwrap(), scale).unwrap()).unwrap();
    let camera = Array2::from_shape_fn((3, bands), |(c, b)| {
        let centre = [25.0, 15.0, 5.0][c];
        (-((b as f32 - centre) / 4.0).powi(2)).exp()
    });
    let hr = spectral_studio::spectral::render::project(camera.view(), truth.view()).unwrap();
    let job = JobContext::silent();
    // Rank 3, no fusion module, no steps: the classical subspace fusion gives the truth, though
    // the cube it takes the span from is blurred; bicubic up-sampling does not.
    let mut opts = FuseOptions::new(scale, 0);
    opts.subspace = Some(3);
    let fused = fuse(None, &hr, &lr, &camera, &opts, &Device::Cpu, None, &job).unwrap();
    let worst = |a: &Array3<f32>| a.iter().zip(truth.iter()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let bicubic = upsample_bicubic(lr.data.view(), scale, size, size).unwrap();
    assert!(worst(&fused.cube.data) < 1e-3 && worst(&bicubic) > 0.02, "subspace {} bicubic {}", worst(&fused.cube.data), worst(&bicubic));
    assert!(fused.cube.meta.description.as_deref().unwrap_or("").contains("rank 3"));
    // Any cube through a layer of rank ≥ 3 images to X exactly, and a second pass changes nothing.
    let layer = SceneSubspace::new(&lr.data, &camera, 5, &Device::Cpu).unwrap();
    let (x, p) = (tensor3(&hr), Tensor::from_iter(camera.iter().copied(), &Device::Cpu).unwrap().reshape((3, bands)).unwrap());
    let z = random(&[1, bands, size, size], 9).to_dtype(DType::F32).unwrap();
    let once = layer.apply(&z, &x).unwrap();
    let twice = layer.apply(&once, &x).unwrap();
    let max = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(max(&(ual::project(&once, &p).unwrap() - &x).unwrap()) < 1e-4 * max(&x));
    assert!(max(&(&twice - &once).unwrap()) < 1e-4 * max(&once));
    // Its gradient (f64), for the cube it adapts.
    let (z64, x64) = (random(&[1, bands, 4, 5], 10), random(&[1, 3, 4, 5], 11));
    let err = gradient_error(&z64, |z| weighted_sum(&layer.apply(z, &x64).map_err(|e| candle_core::Error::Msg(e.to_string()))?, 12));
    assert!(err < 1e-8, "{err:e}");
    // Bad requests are named.
    for rank in [0, 32] {
        let err = SceneSubspace::new(&lr.data, &camera, rank, &Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("rank") && err.contains("1..=31"), "{err}");
    }
    let err = SceneSubspace::new(&lr.data, &Array2::zeros((3, bands)), 3, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("sees nothing"), "{err}");
    // auto: rank 4 where the camera sees every band (the Canon on 400–700 nm), off where it is
    // blind to some (the Canon on 400–2450 nm, where the layer would invent the infrared).
    let canon = spectral_studio::spectral::camera::CameraResponse::parse("canon").unwrap();
    let grid = |last: f32, n: usize| (0..n).map(|i| 400.0 + (last - 400.0) * i as f32 / (n - 1) as f32).collect::<Vec<f32>>();
    assert_eq!(SubspaceChoice::Auto.rank(&canon.on_grid(&grid(700.0, 31)).unwrap()), Some(4));
    assert_eq!(SubspaceChoice::Auto.rank(&canon.on_grid(&grid(2450.0, 180)).unwrap()), None);
    assert_eq!(SubspaceChoice::parse("off").unwrap().rank(&camera), None);
    assert_eq!(SubspaceChoice::parse("6").unwrap().rank(&camera), Some(6));
    assert!(SubspaceChoice::parse("six").err().unwrap().to_string().contains("auto, off or a rank"));
}

#[test]
fn the_degradation_network_learns_the_blur_from_a_sharp_cube() {
    use spectral_studio::train::optim::AdamW;
    let (scale, side) = (4, Degradation::kernel_side(4));
    // A textured cube (every pixel its own value): a smooth one would fit many kernels alike.
    let mut state = 12345u64;
    let truth_cube = Array3::from_shape_fn((4, 48, 48), |_| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        0.2 + 0.6 * ((state >> 40) as f32 / (1u64 << 24) as f32)
    });
    let kernel = BlurKernel::anisotropic(9, 2.5, 0.7, 30.0).unwrap();
    let y = tensor3(&blur_decimate(truth_cube.view(), &kernel, scale).unwrap());
    let z = tensor3(&truth_cube);
    let net = Degradation::new(scale, &Device::Cpu).unwrap();
    let truth = kernel.framed(side).unwrap();
    let as_array = |t: &Tensor| Array2::from_shape_vec((side, side), t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).unwrap();
    let before = kernel_similarity(&as_array(net.var().as_tensor()), &truth).unwrap();
    let mut optim = AdamW::new(std::collections::HashMap::from([("kernel".to_string(), net.var().clone())]), 1e-5).unwrap();
    optim.l2_coupled = true;
    for _ in 0..1000 {
        let loss = spectral_studio::train::loss::loss_fn(spectral_studio::train::Loss::L1, &net.forward(&z).unwrap(), &y).unwrap();
        optim.step(&loss.backward().unwrap(), 1e-4).unwrap();
    }
    let after = kernel_similarity(&as_array(net.var().as_tensor()), &truth).unwrap();
    assert!(after > before + 0.05, "similarity to the true kernel {before:.3} → {after:.3}");
}

#[test]
fn the_pretraining_loop_runs_reports_and_writes_a_loadable_model() {
    use spectral_studio::recon::fusion::FusionModel;
    use spectral_studio::train::data::DataSource;
    use spectral_studio::train::fusion::{pretrain_fusion, FusionTrainConfig};
    let dir = std::env::temp_dir().join(format!("ss-ual-pretrain-{}", std::process::id()));
    let mut cfg = FusionTrainConfig::new(DataSource::World { count: 2, size: 32 });
    cfg.model.width = 4;
    cfg.model.depth = 1;
    (cfg.steps, cfg.batch, cfg.patch, cfg.scale, cfg.validate_every, cfg.checkpoint_every) = (3, 2, 16, 4, 3, 2);
    let (tx, rx) = crossbeam_channel::unbounded();
    let (files, card) = pretrain_fusion(&cfg, &dir, &Device::Cpu, &tx, &JobContext::silent()).unwrap();
    drop(tx);
    let events: Vec<String> = rx.iter().map(|e| serde_json::to_value(e).unwrap()["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(events.iter().filter(|e| *e == "step").count(), 3);
    assert!(events.contains(&"validation".to_string()) && events.contains(&"checkpoint".to_string()) && events.last().unwrap() == "finished", "{events:?}");
    assert_eq!(card.config.width, 4);
    let model = FusionModel::load(&files.weights, &Device::Cpu).unwrap();
    assert_eq!(model.card.wavelengths.len(), 31);
    assert_eq!(model.card.scale, Some(4));
    // It refuses a cube of another band count.
    let hr = Array3::from_elem((3, 16, 16), 0.3f32);
    let lr = Cube::new(Array3::from_elem((16, 4, 4), 0.3f32), (0..16).map(|i| 400.0 + 20.0 * i as f32).collect()).unwrap();
    let err = fuse(Some(&model), &hr, &lr, &Array2::from_elem((3, 16), 1.0 / 16.0), &FuseOptions::new(4, 0), &Device::Cpu, None, &JobContext::silent()).err().unwrap().to_string();
    assert!(err.contains("31 bands"), "{err}");
    // The evaluation runs every variant on the same held-out pair.
    let cfg = FusionEvalConfig { scenes: 1, size: 32, scale: 4, snr_db: 35.0, steps: 1, rates: (9e-5, 1e-4), variants: Variant::ALL.to_vec(), protocol: None };
    let scores = evaluate(Some(&model), &cfg, &Device::Cpu, &JobContext::silent()).unwrap();
    assert_eq!(scores.len(), Variant::ALL.len());
    for s in &scores {
        assert!(s.psnr.is_finite() && s.sam_deg.is_finite() && s.images == 1, "{s:?}");
        assert_eq!(s.kernel_similarity.is_some(), matches!(s.variant.as_str(), "ual" | "ual-no-fusion" | "ual-subspace"), "{s:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

mod cli {
    use super::cli_util::{fails_with, ok};

    #[test]
    fn degrade_fuse_eval_round_trips_and_bad_requests_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        // 42×34 is no multiple of 4: the result keeps the RGB's size and scores against the cube.
        ok(&["scene", "--seed", "5", "--size", "42x34", "-o", "scene"], d);
        ok(&["degrade", "scene/cube.npy", "--scale", "4", "--kernel", "motion:5,45", "--snr", "35", "--seed", "3", "-o", "lr.npy", "--rgb-out", "hr.npy", "--kernel-out", "k.npy"], d);
        let lr = spectral_studio::io::open(d.join("lr.npy"), &Default::default()).unwrap();
        assert_eq!((lr.bands(), lr.rows(), lr.cols()), (31, 10, 8));
        let out = ok(&["fuse", "hr.npy", "lr.npy", "--camera", "canon", "--scale", "4", "--no-fusion", "--steps", "4", "-o", "fused.npy", "--kernel-out", "learned.npy", "--json"], d);
        let lines: Vec<serde_json::Value> = out.lines().filter(|l| l.starts_with("{\"")).map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.iter().filter(|v| v["event"] == "step").count(), 4, "{out}");
        let summary: serde_json::Value = serde_json::from_str(&out[out.find("{\n").expect("a summary")..]).unwrap();
        assert_eq!((summary["rows"].as_u64(), summary["cols"].as_u64(), summary["bands"].as_u64()), (Some(42), Some(34), Some(31)));
        let k = spectral_studio::io::npy::read_array(&d.join("learned.npy")).unwrap();
        assert_eq!(k.shape(), &[32, 32]);
        assert!((k.sum() - 1.0).abs() < 1e-4);
        ok(&["eval", "fused.npy", "scene/cube.npy", "--json"], d);
        // ×8 through the shipped fusion module (the default model): sharper than bicubic
        // up-sampling (no module, no step) on a scene of the demo generator, which it never saw.
        ok(&["scene", "--seed", "11", "--size", "64x64", "-o", "scene8"], d);
        ok(&["degrade", "scene8/cube.npy", "--scale", "8", "--kernel", "disk:3", "--snr", "35", "--seed", "3", "-o", "lr8.npy", "--rgb-out", "hr8.npy"], d);
        let psnr = |args: &[&str], out: &str| {
            ok(&[&["fuse", "hr8.npy", "lr8.npy", "--camera", "canon", "--scale", "8", "-o", out], args].concat(), d);
            let eval: serde_json::Value = serde_json::from_str(&ok(&["eval", out, "scene8/cube.npy", "--json"], d)).unwrap();
            eval["psnr"].as_f64().unwrap_or_else(|| panic!("no psnr in {eval}"))
        };
        let (bicubic, fused) = (psnr(&["--no-fusion", "--steps", "0", "--subspace", "off"], "bicubic8.npy"), psnr(&["--steps", "2", "--subspace", "off"], "fused8.npy"));
        assert!(fused > bicubic + 1.0, "shipped fusion {fused:.2} dB against bicubic {bicubic:.2} dB");
        // The scene-subspace layer: alone (rank 3, the classical subspace fusion) and on the
        // fusion module's output (rank 4, the default); both sharper than bicubic up-sampling.
        let classical = psnr(&["--no-fusion", "--steps", "0", "--subspace", "3"], "subspace8.npy");
        let layered = psnr(&["--steps", "0"], "layered8.npy");
        assert!(classical > bicubic + 1.0 && layered > bicubic + 1.0, "subspace {classical:.2}, module + subspace {layered:.2}, bicubic {bicubic:.2} dB");
        fails_with(&["fuse", "hr8.npy", "lr8.npy", "--camera", "canon", "--scale", "8", "--subspace", "40", "-o", "x.npy"], d, "rank must be in 1..=31");
        fails_with(&["fuse", "hr8.npy", "lr8.npy", "--camera", "canon", "--scale", "8", "--subspace", "some", "-o", "x.npy"], d, "--subspace takes auto, off or a rank, got 'some'");
        // Refusals: a pair that is not one, a bad kernel, writing over the input, no model.
        fails_with(&["fuse", "hr.npy", "lr.npy", "--camera", "canon", "--scale", "8", "--no-fusion", "-o", "x.npy"], d, "at ×8 the cube should be 5×4");
        fails_with(&["fuse", "hr.npy", "lr.npy", "--camera", "canon", "--scale", "40", "--no-fusion", "-o", "x.npy"], d, "scale must be in 2..=32");
        fails_with(&["degrade", "scene/cube.npy", "--scale", "4", "--kernel", "box:3", "-o", "y.npy"], d, "unknown kernel 'box:3'");
        fails_with(&["degrade", "scene/cube.npy", "--scale", "4", "-o", "scene/cube.npy"], d, "cube.npy");
        fails_with(&["fuse", "hr.npy", "lr.npy", "--camera", "canon", "--scale", "4", "--model", "nowhere/ual", "-o", "x.npy"], d, "nowhere/ual");
        assert!(!d.join("x.npy").exists() && !d.join("y.npy").exists());
    }
}
