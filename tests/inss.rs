//! INSS (issue 15): the resampling ops it trains through (finite differences), and the model:
//! abundances that are fractions, the linear part t ⊙ R·A, the nonlinear terms of eq. 3–5, and
//! gradients through F, T, the signature and the input.

mod cli_util;
mod finite_diff;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use finite_diff::{gradient_error, random, variable_gradient_error, weighted_sum};
use spectral_studio::models::inss::{position_features, Inss, InssConfig};
use spectral_studio::nn::resample::{reflect_pad1, upsample_bilinear2x, upsample_nearest};

fn tiny(order: usize) -> InssConfig {
    InssConfig { bands: 6, library: 5, width: 4, stages: 3, cell: 4, order, hidden: 3, transform_width: 4 }
}

/// A tiny model in f64 with every weight redrawn from a seeded generator at PyTorch's default
/// scale for its shape (candle's initialisers are unseeded); T's weights drawn larger than its
/// N(0, 0.002) start, so the nonlinear terms matter in the checks.
fn model(order: usize) -> (VarMap, Inss) {
    let cfg = tiny(order);
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
    let net = Inss::new(&cfg, vb).unwrap();
    {
        let data = map.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for (seed, name) in names.into_iter().enumerate() {
            let var = &data[name];
            if name.contains("running") || name.ends_with("bn.weight") || name.contains(".bn1.weight") || name.contains(".bn2.weight") {
                continue;
            }
            // the scale from the tensor's shape (PyTorch's ±1/√fan-in), not from its unseeded
            // first draw, so every run checks the same model
            let fan_in: usize = var.dims().iter().skip(1).product();
            let scale = match name.as_str() {
                n if n.starts_with("transform") => 0.3,
                "library" => 1.0,
                "signature" => 1.0,
                _ if var.dims().len() > 1 => 1.0 / (fan_in as f64).sqrt(),
                _ => 0.05,
            };
            let mut value = random(var.dims(), 500 + seed as u64).affine(scale, 0.0).unwrap();
            if name == "library" || name == "signature" {
                // reflectances and a light: positive
                value = value.abs().unwrap().affine(1.0, 0.05).unwrap();
            }
            var.set(&value).unwrap();
        }
    }
    (map, net)
}

fn picture() -> Tensor {
    random(&[2, 3, 16, 16], 3).affine(0.4, 0.5).unwrap()
}

#[test]
fn the_resampling_ops_have_correct_gradients() {
    let x = random(&[2, 3, 5, 4], 1);
    for (name, err) in [
        ("bilinear ×2", gradient_error(&x, |v| weighted_sum(&upsample_bilinear2x(v)?, 2))),
        ("nearest ×3", gradient_error(&x, |v| weighted_sum(&upsample_nearest(v, 3)?, 3))),
        ("reflection pad", gradient_error(&x, |v| weighted_sum(&reflect_pad1(v)?, 4))),
    ] {
        assert!(err < 1e-8, "{name}: gradient error {err}");
    }
}

#[test]
fn abundances_are_fractions_and_the_linear_part_is_the_signature_times_the_library_mix() {
    let (map, net) = model(3);
    let out = net.forward_parts(&picture(), false).unwrap();
    assert_eq!(out.cube.dims(), [2, 6, 16, 16]);
    assert_eq!(out.abundances.dims(), [2, 5, 16, 16]);
    let a = out.abundances.clone();
    assert!(a.min_all().unwrap().to_scalar::<f64>().unwrap() >= 0.0);
    let sums: Vec<f64> = a.sum(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-12), "abundances sum to one");
    // L at one pixel, by hand: ReLU(t) ⊙ R · A
    let vars = map.data().lock().unwrap();
    let r: Vec<Vec<f64>> = vars["library"].as_tensor().to_vec2().unwrap();
    let t: Vec<f64> = vars["signature"].as_tensor().to_vec1().unwrap();
    let (b, row, col) = (1, 9, 6);
    let ap: Vec<f64> = a.get(b).unwrap().narrow(1, row, 1).unwrap().narrow(2, col, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let lp: Vec<f64> = out.linear.get(b).unwrap().narrow(1, row, 1).unwrap().narrow(2, col, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    for (band, l) in lp.iter().enumerate() {
        let want = t[band].max(0.0) * r[band].iter().zip(&ap).map(|(r, a)| r * a).sum::<f64>();
        assert!((l - want).abs() < 1e-12, "band {band}: {l} vs {want}");
    }
    // the nonlinear terms change the cube, but not beyond what 0.1·tanh allows: |x| ≤ 0.1·Σ R
    let diff = (&out.cube - &out.linear).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    assert!(diff > 1e-6, "order 3 adds nonlinear terms");
    let bound: f64 = r.iter().map(|row| 0.1 * row.iter().sum::<f64>()).fold(0.0, f64::max);
    let lmax = out.linear.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    assert!(diff <= lmax * (bound + bound * bound) + 1e-12, "{diff} > {}", lmax * (bound + bound * bound));
}

#[test]
fn order_one_is_the_linear_mixing_model() {
    let (_, net) = model(1);
    let out = net.forward_parts(&picture(), false).unwrap();
    let diff = (&out.cube - &out.linear).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    assert_eq!(diff, 0.0);
}

#[test]
fn position_features_are_sines_and_cosines_of_the_offset_from_the_cells_centre() {
    let pe = position_features(4);
    // 16 pixels × (2 frequencies × (sin, cos) × (x, y))
    assert_eq!(pe.len(), 16 * 8);
    // pixel (row 0, col 3): x offset 1.5, y offset −1.5; k = 1: period 2
    let p = &pe[3 * 8..4 * 8];
    let a = |p: f64, period: f64| 2.0 * std::f64::consts::PI * p / period;
    let want = [a(1.5, 2.0).sin(), a(1.5, 2.0).cos(), a(-1.5, 2.0).sin(), a(-1.5, 2.0).cos(), a(1.5, 4.0).sin(), a(1.5, 4.0).cos(), a(-1.5, 4.0).sin(), a(-1.5, 4.0).cos()];
    for (got, want) in p.iter().zip(want) {
        assert!((*got as f64 - want).abs() < 1e-6, "{p:?}");
    }
}

#[test]
fn the_model_has_correct_gradients_through_the_picture_f_t_and_the_signature() {
    let (map, net) = model(3);
    let x = picture();
    let loss = |x: &Tensor| -> candle_core::Result<Tensor> {
        let out = net.forward_parts(x, true)?;
        weighted_sum(&out.cube, 7)? + weighted_sum(&out.abundances, 8)?
    };
    let input = Var::from_tensor(&x).unwrap();
    let err = variable_gradient_error(&input, 48, || loss(input.as_tensor()).unwrap());
    assert!(err < 1e-6, "input gradient error {err}");
    let vars = map.data().lock().unwrap().clone();
    for name in ["signature", "transform.out.weight", "transform.conv.weight", "abundance.head.weight", "abundance.up2.conv.weight", "abundance.layer2.0.conv1.weight", "abundance.stem.bias"] {
        let var = vars.get(name).unwrap_or_else(|| panic!("no tensor {name}: {:?}", vars.keys().collect::<Vec<_>>()));
        let err = variable_gradient_error(var, 12, || loss(&x).unwrap());
        assert!(err < 1e-6, "{name}: gradient error {err}");
    }
    // the library is fixed: no gradient is asked of it, and training leaves it out
    use spectral_studio::models::SpectralNet;
    assert!(!net.is_trainable("library") && net.is_trainable("signature"));
}

#[test]
fn hsv_is_kornias_and_has_correct_gradients_away_from_ties() {
    use spectral_studio::train::inss::hsv;
    let rgb = Tensor::new(&[[[[1.0f64]], [[0.5]], [[0.0]]], [[[0.2]], [[0.4]], [[0.8]]], [[[0.5]], [[0.5]], [[0.5]]]], &Device::Cpu).unwrap();
    let out: Vec<f64> = hsv(&rgb).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let tau = 2.0 * std::f64::consts::PI;
    let want = [30.0 / 360.0 * tau, 1.0, 1.0, 220.0 / 360.0 * tau, 0.75, 0.8, 0.0, 0.0, 0.5];
    for (got, want) in out.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{out:?}");
    }
    // random colours: no two channels equal, no hue at the 0/2π seam
    let x = random(&[2, 3, 4, 5], 11).affine(0.45, 0.5).unwrap();
    let err = gradient_error(&x, |v| weighted_sum(&hsv(v)?, 12));
    assert!(err < 1e-6, "hsv gradient error {err}");
}

#[test]
fn the_generator_terms_have_correct_gradients_and_the_band_weights_are_normalised_variances() {
    use spectral_studio::train::inss::{band_weights, GeneratorTerms, InssLoss};
    let cube = random(&[2, 6, 4, 4], 21).affine(0.4, 0.5).unwrap();
    let target = random(&[2, 6, 4, 4], 22).affine(0.4, 0.5).unwrap();
    let linear = random(&[2, 6, 4, 4], 23).affine(0.4, 0.5).unwrap();
    let camera = random(&[3, 6], 24).abs().unwrap();
    let weights = Tensor::new(&[0.1f64, 0.2, 0.3, 0.1, 0.2, 0.1], &Device::Cpu).unwrap();
    let w = InssLoss::default();
    let err = gradient_error(&cube, |c| GeneratorTerms::new(c, &linear, &target, &weights, &camera)?.total(&w));
    assert!(err < 1e-6, "generator terms gradient error {err}");
    // a perfect synthesis costs nothing but its nonlinear part
    let t = GeneratorTerms::new(&target, &target, &target, &weights, &camera).unwrap();
    for term in [&t.pixel, &t.cosine, &t.hsv, &t.nonlinear] {
        assert!(term.to_scalar::<f64>().unwrap().abs() < 1e-7, "the cosine term keeps its ε");
    }
    // weights: per-band variance, summing to one
    let cubes = [ndarray::Array3::from_shape_fn((3, 2, 2), |(b, r, c)| ((r * 2 + c) as f32) * (b as f32 + 1.0))];
    let w = band_weights(&cubes).unwrap();
    assert!((w.sum() - 1.0).abs() < 1e-6);
    // variances scale as (b + 1)²: 1, 4, 9
    assert!((w[1] / w[0] - 4.0).abs() < 1e-4 && (w[2] / w[0] - 9.0).abs() < 1e-4, "{w:?}");
}

#[test]
fn a_tiny_model_trains_and_writes_a_cube_and_named_abundances_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    cli_util::ok(&["train", "--method", "inss", "--world", "2", "--size", "64", "--patch", "64", "--width", "4", "--steps", "2", "--batch", "2", "--validate-every", "2", "--out", "m", "--name", "tiny"], d);
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("m/tiny.json")).unwrap()).unwrap();
    assert_eq!(card["architecture"], "inss");
    cli_util::ok(&["scene", "--seed", "5", "--size", "40x72", "-o", "s"], d);
    let out = cli_util::ok(&["reconstruct", "s/rgb.png", "--method", "inss", "--model", "m/tiny.safetensors", "-o", "cube.npy", "--abundances", "a.npy", "--json"], d);
    let report = cli_util::last_json(&out);
    assert_eq!((report["rows"].as_u64(), report["cols"].as_u64(), report["library_size"].as_u64()), (Some(40), Some(72), Some(345)));
    let a = spectral_studio::io::npy::read_array(&d.join("a.npy")).unwrap();
    assert_eq!(a.shape(), [40, 72, 345]);
    // every pixel's abundances sum to one
    let flat: Vec<f32> = a.iter().copied().collect();
    for px in flat.chunks(345).step_by(97) {
        assert!((px.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    let side: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("a.json")).unwrap()).unwrap();
    assert_eq!(side["names"].as_array().unwrap().len(), 345);
    assert_eq!(side["signature"].as_array().unwrap().len(), 31);
    // the abundances by class: earthlib-wide's five, their means summing to one
    let classes = side["classes"].as_array().unwrap();
    let names: Vec<&str> = classes.iter().map(|c| c["class"].as_str().unwrap()).collect();
    for class in ["vegetation", "bare", "npv", "built", "burned"] {
        assert!(names.contains(&class), "{names:?}");
    }
    assert_eq!(classes.iter().map(|c| c["spectra"].as_u64().unwrap()).sum::<u64>(), 345);
    let total: f64 = classes.iter().map(|c| c["mean_abundance"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
    let cube = spectral_studio::io::open(&d.join("cube.npy"), &Default::default()).unwrap();
    assert_eq!((cube.bands(), cube.rows(), cube.cols()), (31, 40, 72));
    // bad uses say what is wrong
    cli_util::fails_with(&["train", "--method", "inss", "--world", "2", "--size", "64", "--patch", "64", "--width", "4", "--steps", "1", "--batch", "1", "--out", "m2"], d, "use --batch 2 or more");
    cli_util::fails_with(&["reconstruct", "s/rgb.png", "--method", "pca", "-o", "c2.npy", "--abundances", "a2.npy"], d, "--abundances needs an inss model");
    cli_util::fails_with(&["reconstruct", "s/rgb.png", "--method", "inss", "--model", "m/tiny.safetensors", "-o", "c3.npy", "--abundances", "a3.csv"], d, "writes a .npy");
}

#[test]
fn a_users_single_wide_cube_trains_inss_on_its_own_wavelengths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 101 bands, 400–2400 nm: two smooth materials side by side, shaded down the rows
    let wavelengths: Vec<f32> = (0..101).map(|i| 400.0 + 20.0 * i as f32).collect();
    let data = ndarray::Array3::from_shape_fn((101, 96, 80), |(b, r, c)| {
        let w = wavelengths[b] / 1000.0;
        let spectrum = if c < 40 { 0.2 + 0.3 * (w * 3.0).sin().abs() } else { 0.5 - 0.15 * w };
        spectrum * (1.0 - r as f32 / 200.0)
    });
    let cube = spectral_studio::Cube::new(data, wavelengths.clone()).unwrap();
    spectral_studio::io::save(&cube, &d.join("wide.hdr")).unwrap();
    let out = cli_util::ok(&["train", "--method", "inss", "--data", "wide.hdr", "--patch", "64", "--width", "4", "--steps", "2", "--batch", "2", "--validate-every", "2", "--out", "m", "--name", "wide", "--json"], d);
    assert!(out.contains("\"validation\""), "{out}");
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("m/wide.json")).unwrap()).unwrap();
    assert_eq!(card["wavelengths"].as_array().unwrap().len(), 101, "the model keeps the cube's band grid");
    assert!(card["data"].as_str().unwrap().contains("bottom fifth held out"), "{}", card["data"]);
    // its cube comes out on those 101 bands, ENVI carrying the wavelengths
    cli_util::ok(&["render", "wide.hdr", "--camera", "canon", "-o", "rgb.npy"], d);
    cli_util::ok(&["reconstruct", "rgb.npy", "--method", "inss", "--model", "m/wide.safetensors", "-o", "syn.hdr"], d);
    let syn = spectral_studio::io::open(&d.join("syn.hdr"), &Default::default()).unwrap();
    assert_eq!(syn.wavelengths, wavelengths);
    // a cube the camera does not see is refused with the reason
    let swir = spectral_studio::Cube::new(ndarray::Array3::from_elem((20, 96, 80), 0.3), (0..20).map(|i| 1000.0 + 50.0 * i as f32).collect()).unwrap();
    spectral_studio::io::save(&swir, &d.join("swir.hdr")).unwrap();
    cli_util::fails_with(&["train", "--method", "inss", "--data", "swir.hdr", "--patch", "64", "--width", "4", "--steps", "1", "--batch", "2", "--out", "m2"], d, "has no sensitivity on 1000..1950 nm");
}

#[test]
fn aerial_scenes_are_wide_seeded_and_their_vegetation_has_a_red_edge() {
    use spectral_studio::spectral::aerial::{scene, COVERS};
    let a = scene(7, 48).unwrap();
    let w = &a.cube.wavelengths;
    assert_eq!((a.cube.rows(), a.cube.cols()), (48, 48));
    assert!(w[0] <= 400.0 && w[w.len() - 1] >= 2400.0, "400-2450 nm");
    assert!(!w.iter().any(|&l| (1370.0..1440.0).contains(&l) || (1810.0..1940.0).contains(&l)), "the water bands are dropped");
    assert!(a.cube.data.iter().all(|v| v.is_finite() && *v >= 0.0));
    // the same seed paints the same scene; another seed another
    assert_eq!(scene(7, 48).unwrap().cube.data, a.cube.data);
    assert_ne!(scene(8, 48).unwrap().cube.data, a.cube.data);
    // over a few scenes, pixels whose dominant cover is vegetation reflect far more at 800 nm
    // than at 670 nm (the red edge, through the same sun); bare soil does not
    let band = |nm: f32| w.iter().position(|&l| (l - nm).abs() < 5.1).unwrap();
    let (red, nir) = (band(670.0), band(800.0));
    let (mut ratios, mut seen) = ([0f64; 5], [0usize; 5]);
    for seed in 1..=4 {
        let s = scene(seed, 64).unwrap();
        for ((r, c), &cover) in s.cover.indexed_iter() {
            let (x, y) = (s.cube.data[[nir, r, c]] as f64, s.cube.data[[red, r, c]] as f64);
            if y > 0.0 {
                ratios[cover as usize] += x / y;
                seen[cover as usize] += 1;
            }
        }
    }
    let mean = |i: usize| ratios[i] / seen[i].max(1) as f64;
    let (veg, bare) = (COVERS.iter().position(|c| *c == "vegetation").unwrap(), COVERS.iter().position(|c| *c == "bare").unwrap());
    assert!(seen[veg] > 500 && seen[bare] > 500, "{seen:?}");
    assert!(mean(veg) > 2.0 * mean(bare), "NIR/red: vegetation {:.2}, bare {:.2}", mean(veg), mean(bare));
}

#[test]
fn inss_trains_on_aerial_scenes_on_the_wide_librarys_bands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    cli_util::ok(&["train", "--method", "inss", "--aerial", "1", "--size", "64", "--patch", "64", "--width", "4", "--steps", "2", "--batch", "2", "--validate-every", "2", "--out", "m", "--name", "air"], d);
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("m/air.json")).unwrap()).unwrap();
    let library = spectral_studio::spectral::library::library("earthlib-wide").unwrap();
    assert_eq!(card["wavelengths"].as_array().unwrap().len(), library.wavelengths.len());
    assert!(card["data"].as_str().unwrap().contains("aerial scenes"), "{}", card["data"]);
    // the card holds the run's validation beside per-pixel regressions fitted on the same data
    let validation = card["metrics"]["validation"].as_array().unwrap();
    let names: Vec<&str> = validation.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["inss", "ridge-linear", "ridge-poly2"]);
    assert!(validation.iter().all(|v| v["sam_deg"].as_f64().is_some_and(|s| s > 0.0 && s < 90.0)), "{validation:?}");
    cli_util::fails_with(&["train", "--method", "mscnn", "--aerial", "1", "--size", "64", "--steps", "1", "--out", "m2"], d, "train inss only");
    // a user gets one as files: the cube in ENVI with its wavelengths, its RGB, and the model reads that RGB
    cli_util::ok(&["scene", "--aerial", "--seed", "3", "--size", "48x48", "-o", "air"], d);
    let cube = spectral_studio::io::open(&d.join("air/cube.hdr"), &Default::default()).unwrap();
    assert_eq!(cube.wavelengths, library.wavelengths);
    let cover = spectral_studio::io::npy::read_array(&d.join("air/cover.npy")).unwrap();
    assert_eq!(cover.shape(), [48, 48]);
    assert!(cover.iter().all(|&c| (0.0..5.0).contains(&c) && c.fract() == 0.0), "cover indices");
    cli_util::ok(&["reconstruct", "air/rgb.png", "--method", "inss", "--model", "m/air.safetensors", "-o", "syn.hdr"], d);
    let out = cli_util::ok(&["eval", "syn.hdr", "air/cube.hdr", "--exclude-bands", "water", "--json"], d);
    assert!(cli_util::last_json(&out)["mpsnr"].as_f64().is_some(), "{out}");
    cli_util::fails_with(&["scene", "--aerial", "--size", "48x64", "-o", "air2"], d, "aerial scenes are square");
}

#[test]
fn abundances_sum_by_class_into_maps_that_still_sum_to_one() {
    use spectral_studio::recon::inss::InssSynthesis;
    let abundances = ndarray::Array3::from_shape_fn((4, 2, 3), |(g, r, c)| [0.1, 0.2, 0.3, 0.4][g] + 0.01 * (r + c) as f32 * if g % 2 == 0 { 1.0 } else { -1.0 });
    let s = InssSynthesis { cube: ndarray::Array3::zeros((2, 2, 3)), abundances: abundances.clone(), nonlinearity: ndarray::Array2::zeros((2, 3)) };
    let categories: Vec<String> = ["bare/soil", "vegetation/canopy", "bare/sand", "vegetation"].iter().map(|c| c.to_string()).collect();
    let (classes, maps) = s.by_class(&categories).unwrap();
    assert_eq!(classes, [("bare".to_string(), 2), ("vegetation".to_string(), 2)]);
    for (r, c) in [(0, 0), (1, 2)] {
        assert!((maps[[0, r, c]] - abundances[[0, r, c]] - abundances[[2, r, c]]).abs() < 1e-6);
        assert!((maps[[0, r, c]] + maps[[1, r, c]] - 1.0).abs() < 1e-5);
    }
    assert!(s.by_class(&categories[..3]).unwrap_err().to_string().contains("3 categories for 4"));
}

#[test]
fn an_inss_run_resumes_from_a_checkpoint_with_its_discriminators_and_ends_where_the_whole_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |steps: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["train", "--method", "inss", "--world", "2", "--size", "64", "--patch", "64", "--width", "4", "--steps", steps, "--batch", "2", "--validate-every", "4", "--checkpoint-every", "2", "--out", out, "--name", "t", "--json"];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    // the loss of each step, from the JSON events
    let losses = |out: &str| -> Vec<(u64, f64)> {
        out.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|e| e["event"] == "step").map(|e| (e["step"].as_u64().unwrap(), e["loss"].as_f64().unwrap())).collect()
    };
    let full = run("4", "full", &[]);
    let full_losses = losses(&cli_util::ok(&full.iter().map(String::as_str).collect::<Vec<_>>(), d));
    assert_eq!(full_losses.len(), 4);
    // the checkpoint at step 2 holds the generator's moments, the discriminators and theirs
    let state = candle_core::safetensors::load(d.join("full/checkpoints/ckpt-000002.optim.safetensors"), &Device::Cpu).unwrap();
    assert!(state.keys().any(|k| k.starts_with("disc.weights.spatial.")) && state.keys().any(|k| k.starts_with("disc.m.")) && state.contains_key("m.signature"), "{:?}", state.keys().take(5).collect::<Vec<_>>());
    let resumed = run("4", "resumed", &["--resume", "full/checkpoints/ckpt-000002.safetensors"]);
    let out = cli_util::ok(&resumed.iter().map(String::as_str).collect::<Vec<_>>(), d);
    assert!(out.contains("\"start_step\":2"), "{out}");
    // steps 3 and 4 as in the whole run: step 4's loss depends on step 3's update, which needs
    // the generator's moments and the discriminators (weights and moments) as they were
    let resumed_losses = losses(&out);
    assert_eq!(resumed_losses.iter().map(|l| l.0).collect::<Vec<_>>(), [3, 4]);
    for ((step, a), (_, b)) in full_losses[2..].iter().zip(&resumed_losses) {
        assert!((a - b).abs() <= 1e-4 * a.abs(), "step {step}: loss {a} in the whole run, {b} resumed");
    }
    // batches, discriminator turns and offsets depend on (seed, step) alone: the same model, to
    // the summation order of threads (Adam turns the rounding noise in the gradient of a
    // convolution bias before batch norm, whose true gradient is zero, into steps of ~lr: so
    // each tensor is compared on the scale of its values or 10⁻², whichever is larger)
    let a = candle_core::safetensors::load(d.join("full/t.safetensors"), &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(d.join("resumed/t.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        let scale = ta.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1e-2);
        let diff = ta.sub(&b[name]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 1e-4 * scale, "{name} differs by {diff} (of {scale}) after resuming");
    }
    // another config, or a checkpoint already past the steps asked for, is refused
    let wider: Vec<String> = resumed.iter().map(|s| if s == "4" { "8".to_string() } else { s.clone() }).collect();
    cli_util::fails_with(&wider.iter().map(String::as_str).collect::<Vec<_>>(), d, "another architecture, config or band set");
    let short: Vec<String> = run("2", "short", &["--resume", "full/checkpoints/ckpt-000002.safetensors"]);
    cli_util::fails_with(&short.iter().map(String::as_str).collect::<Vec<_>>(), d, "ask for more --steps");
}
