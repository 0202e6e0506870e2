//! The physics core: shipped assets, the camera convention, rendering and synthetic scenes.

use ndarray::{Array3, Axis};
use spectral_studio::spectral::camera::CameraResponse;
use spectral_studio::spectral::library::{self, cmf_cie1931, illuminant};
use spectral_studio::spectral::render::{clean_rgb, clean_rgb_lit, false_colour, true_colour_srgb};
use spectral_studio::spectral::scene::{generate, SceneConfig, SceneKind};
use spectral_studio::{default_wavelengths, Cube};

fn flat_cube(v: f32, rows: usize, cols: usize) -> Cube {
    Cube::on_default_grid(Array3::from_elem((31, rows, cols), v)).unwrap()
}

#[test]
fn camera_rows_sum_to_one_on_the_default_grid() {
    for name in CameraResponse::builtin_names() {
        let c = CameraResponse::builtin(name).unwrap().on_grid(&default_wavelengths()).unwrap();
        assert_eq!(c.shape(), &[3, 31]);
        for row in c.axis_iter(Axis(0)) {
            assert!((row.sum() - 1.0).abs() < 1e-5, "{name}: {}", row.sum());
            assert!(row.iter().all(|&v| v >= 0.0));
        }
    }
}

#[test]
fn clean_rgb_of_flat_reflectance_is_that_value() {
    let cube = flat_cube(0.5, 3, 4);
    for name in ["canon", "nikon"] {
        let rgb = clean_rgb(&cube, &CameraResponse::builtin(name).unwrap()).unwrap();
        assert_eq!(rgb.data.shape(), &[3, 3, 4]);
        for v in rgb.data.iter() {
            assert!((v - 0.5).abs() < 1e-5, "{name}: {v}");
        }
    }
    // Lit by D65, a white reflector's strongest channel is exactly 1.
    let lit = clean_rgb_lit(
        &flat_cube(1.0, 1, 1),
        &CameraResponse::builtin("canon").unwrap(),
        Some(&illuminant("D65").unwrap()),
    )
    .unwrap();
    let max = lit.data.iter().cloned().fold(0.0, f32::max);
    assert!((max - 1.0).abs() < 1e-5, "{max}");
}

#[test]
fn colorchecker_white_under_d65_has_sensible_luminance() {
    let cc = library::library("colorchecker").unwrap();
    let white = cc.names.iter().position(|n| n.starts_with("white")).expect("a white patch");
    let black = cc.names.iter().position(|n| n.starts_with("black")).expect("a black patch");
    let cmf = cmf_cie1931().on_grid(&cc.wavelengths).unwrap();
    let e = illuminant("d65").unwrap().resample(&cc.wavelengths).unwrap().values;
    let y = |i: usize| -> f32 {
        let num: f32 = (0..31).map(|b| cmf[[1, b]] * e[b] * cc.spectra[[i, b]]).sum();
        let den: f32 = (0..31).map(|b| cmf[[1, b]] * e[b]).sum();
        num / den
    };
    // BabelColor: white 9.5 has Y ≈ 0.90, black 2 has Y ≈ 0.03.
    assert!((0.85..0.95).contains(&y(white)), "white Y = {}", y(white));
    assert!((0.02..0.05).contains(&y(black)), "black Y = {}", y(black));
}

#[test]
fn true_colour_of_neutral_grey_is_neutral() {
    let cube = flat_cube(0.4, 2, 2);
    // Reflectance under each light: adapted white, so grey r renders as (r, r, r).
    for light in library::illuminant_names() {
        let rgb = true_colour_srgb(&cube, Some(&illuminant(light).unwrap())).unwrap();
        let px: Vec<f32> = (0..3).map(|c| rgb.data[[c, 0, 0]]).collect();
        for v in &px {
            assert!((v - 0.4).abs() < 0.01, "{light}: {px:?}");
        }
    }
    // Radiance of unknown scale: neutral, exposed so Y maps to 0.9.
    let rgb = true_colour_srgb(&flat_cube(3.0, 2, 2), None).unwrap();
    let px: Vec<f32> = (0..3).map(|c| rgb.data[[c, 1, 1]]).collect();
    assert!(px.iter().all(|v| (v - 0.9).abs() < 0.01), "{px:?}");
    // A red ColorChecker patch renders red.
    let cc = library::library("colorchecker").unwrap();
    let red = cc.names.iter().position(|n| n == "red").unwrap();
    let data = Array3::from_shape_fn((31, 1, 1), |(b, _, _)| cc.spectra[[red, b]]);
    let rgb = true_colour_srgb(&Cube::on_default_grid(data).unwrap(), Some(&illuminant("d65").unwrap())).unwrap();
    assert!(rgb.data[[0, 0, 0]] > 2.0 * rgb.data[[1, 0, 0]] && rgb.data[[0, 0, 0]] > 2.0 * rgb.data[[2, 0, 0]]);
}

#[test]
fn false_colour_picks_bands() {
    let data = Array3::from_shape_fn((31, 4, 4), |(b, r, c)| (b as f32) * 0.01 + (r * 4 + c) as f32 * 0.001);
    let cube = Cube::on_default_grid(data).unwrap();
    let fc = false_colour(&cube, [30, 15, 0], false).unwrap();
    assert!((fc.data[[0, 0, 0]] - 0.30).abs() < 1e-6);
    assert!((fc.data[[2, 3, 3]] - 0.015).abs() < 1e-6);
    let stretched = false_colour(&cube, [30, 15, 0], true).unwrap();
    assert_eq!(stretched.data[[1, 0, 0]], 0.0);
    assert_eq!(stretched.data[[1, 3, 3]], 1.0);
    let e = false_colour(&cube, [31, 0, 0], true).unwrap_err().to_string();
    assert!(e.contains("31"), "{e}");
}

#[test]
fn scenes_are_deterministic_distinct_and_in_range() {
    let cfg = SceneConfig::new(42, 40, 48).unwrap();
    let a = generate(&cfg).unwrap();
    let b = generate(&cfg).unwrap();
    assert_eq!(a.cube.data, b.cube.data);
    assert_eq!(a.rgb.data, b.rgb.data);
    assert_eq!(a.materials, b.materials);
    assert_eq!(a.cube.wavelengths, default_wavelengths());
    let c = generate(&SceneConfig::new(43, 40, 48).unwrap()).unwrap();
    assert_ne!(a.cube.data, c.cube.data);
    for s in [&a, &c] {
        assert!(s.cube.data.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(s.rgb.data.iter().all(|v| (0.0..=1.0 + 1e-6).contains(v)));
        // The RGB is the camera applied to the cube.
        let again = clean_rgb(&s.cube, &CameraResponse::builtin("canon").unwrap()).unwrap();
        assert_eq!(again.data, s.rgb.data);
        // Not a flat image: spatial structure is there.
        let band = s.cube.band(15);
        let mean = band.mean().unwrap();
        let var = band.mapv(|v| (v - mean).powi(2)).mean().unwrap();
        assert!(var.sqrt() > 0.02 * mean, "scene {} too flat", s.cube.meta.description.as_deref().unwrap_or(""));
    }
    // Fixing the kind and light is honoured.
    let mut cfg = SceneConfig::new(5, 32, 32).unwrap();
    cfg.kind = Some(SceneKind::Tabletop);
    cfg.illuminant = Some("F11".into());
    let s = generate(&cfg).unwrap();
    assert_eq!((s.kind, s.illuminant.as_str()), (SceneKind::Tabletop, "f11"));
    cfg.illuminant = Some("sodium".into());
    assert!(generate(&cfg).unwrap_err().to_string().contains("d65"));
}

#[test]
fn loaders_reject_unknown_names_helpfully() {
    let e = illuminant("sodium").unwrap_err().to_string();
    for n in ["d65", "a", "f2", "f11", "led-b3", "astm-g173"] {
        assert!(e.contains(n), "{e}");
    }
    let e = library::library("usgs").unwrap_err().to_string();
    assert!(e.contains("earthlib") && e.contains("munsell") && e.contains("colorchecker"), "{e}");
    let e = CameraResponse::parse("no-such-camera").unwrap_err().to_string();
    assert!(e.contains("canon-eos-5d-mark-ii") && e.contains("nikon-5100"), "{e}");
    let e = library::parse_library("no-such-library").unwrap_err().to_string();
    assert!(e.contains("earthlib"), "{e}");
    assert!(!library::list_assets().is_empty());
}

#[test]
fn camera_csv_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mycam.csv");
    std::fs::write(&path, "wavelength,r,g,b\n400,0.1,0.2,0.3\n410,0.1,x,0.3\n").unwrap();
    let e = CameraResponse::from_csv(&path).unwrap_err().to_string();
    assert!(e.contains("mycam.csv") && e.contains("line 3") && e.contains("'x'"), "{e}");
    std::fs::write(&path, "wavelength,r,g,b\n400,0.1,0.2,0.3\n410,0.1,0.2\n").unwrap();
    let e = CameraResponse::parse(path.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("mycam.csv") && e.contains("line 3"), "{e}");
    std::fs::write(&path, "wavelength,r,g\n400,0.1,0.2\n410,0.1,0.2\n").unwrap();
    let e = CameraResponse::from_csv(&path).unwrap_err().to_string();
    assert!(e.contains("wavelength,r,g,b"), "{e}");
    // A good file works through `parse` and follows the convention.
    std::fs::write(&path, "# my camera\nwavelength,r,g,b\n390,0,0,1\n550,0,1,0\n710,1,0,0\n").unwrap();
    let cam = CameraResponse::parse(path.to_str().unwrap()).unwrap();
    let c = cam.on_grid(&default_wavelengths()).unwrap();
    assert!(c.axis_iter(Axis(0)).all(|r| (r.sum() - 1.0).abs() < 1e-5));
    let e = CameraResponse::from_csv(&dir.path().join("missing.csv")).unwrap_err().to_string();
    assert!(e.contains("missing.csv"), "{e}");
}

/// Writes true-colour previews of a few scenes to $SCENE_PREVIEW_DIR (default /tmp/scenes).
/// Run by hand: `cargo test --release --test spectral_physics -- --ignored --nocapture`.
#[test]
#[ignore]
fn write_scene_previews() {
    let dir = std::env::var("SCENE_PREVIEW_DIR").unwrap_or_else(|_| "/tmp/scenes".into());
    std::fs::create_dir_all(&dir).unwrap();
    let size: usize = std::env::var("SCENE_PREVIEW_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(256);
    let count: u64 = std::env::var("SCENE_PREVIEW_COUNT").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    for seed in 0..count {
        let t = std::time::Instant::now();
        let s = generate(&SceneConfig::new(seed, size, size).unwrap()).unwrap();
        let elapsed = t.elapsed();
        let rgb = true_colour_srgb(&s.cube, None).unwrap();
        let path = format!("{dir}/scene_{seed}.png");
        image::save_buffer(&path, &rgb.to_rgb8(true), size as u32, size as u32, image::ExtendedColorType::Rgb8)
            .unwrap();
        let cam = clean_rgb(&s.cube, &CameraResponse::builtin("canon").unwrap()).unwrap();
        let path2 = format!("{dir}/scene_{seed}_camera.png");
        image::save_buffer(&path2, &cam.to_rgb8(true), size as u32, size as u32, image::ExtendedColorType::Rgb8)
            .unwrap();
        println!("{path}: {} {} ({} materials) in {elapsed:?}", s.kind.name(), s.illuminant, s.materials.len());
    }
}

#[test]
fn library_files_load_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.csv");
    std::fs::write(&path, "wavelength,grass,soil\n400,0.05,0.1\n550,0.12,0.2\n700,0.4,0.3\n").unwrap();
    let lib = library::parse_library(path.to_str().unwrap()).unwrap();
    assert_eq!(lib.names, vec!["grass", "soil"]);
    assert_eq!(lib.wavelengths, vec![400.0, 550.0, 700.0]);
    let on_grid = lib.resample(&default_wavelengths()).unwrap();
    assert!((on_grid.spectra[[0, 15]] - 0.12).abs() < 1e-6);
    std::fs::write(&path, "wavelength,grass\n400,0.05\n550,nan\n").unwrap();
    let e = library::load_library_file(&path).unwrap_err().to_string();
    assert!(e.contains("mine.csv") && e.contains("line 3"), "{e}");
    // ENVI .sli through the io::envi reader (fixture written by Spectral Python).
    let sli = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/envi/library.sli");
    let lib = library::load_library_file(&sli).unwrap();
    assert_eq!(lib.names, vec!["grass", "dry soil", "water body"]);
    assert_eq!(lib.spectra.shape(), &[3, 5]);
    assert!((lib.wavelengths[0] - 450.0).abs() < 1e-3);
}
