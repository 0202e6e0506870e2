//! The command line as a user meets it: real subcommands on real files, checking what they
//! print, what they write and how they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn studio(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spectral-studio"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn ok_json(args: &[&str], dir: &Path) -> serde_json::Value {
    let out = studio(args, dir);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn scene_dir(dir: &Path, seed: u64) -> PathBuf {
    let out = studio(&["scene", "--seed", &seed.to_string(), "--size", "48x40", "-o", "scene"], dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("scene")
}

#[test]
fn scene_writes_its_files_and_info_describes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let scene = scene_dir(tmp.path(), 2);
    for f in ["cube.npy", "reflectance.npy", "abundances.npy", "rgb.png", "preview.png", "scene.json"] {
        assert!(scene.join(f).is_file(), "{f} missing");
    }
    let info = ok_json(&["info", "scene/cube.npy", "--json"], tmp.path());
    assert_eq!(info["rows"], 48);
    assert_eq!(info["cols"], 40);
    assert_eq!(info["bands"], 31);
    assert_eq!(info["format"], "npy");
    assert_eq!(info["wavelengths"][0], 400.0);
    assert_eq!(info["wavelengths"][30], 700.0);
    let (min, max, mean) = (info["min"].as_f64().unwrap(), info["max"].as_f64().unwrap(), info["mean"].as_f64().unwrap());
    assert!(0.0 <= min && min < mean && mean < max && max <= 1.0, "{min} {mean} {max}");

    let rgb = ok_json(&["info", "scene/rgb.png", "--json"], tmp.path());
    assert_eq!((rgb["rows"].as_u64(), rgb["cols"].as_u64(), rgb["bands"].as_u64()), (Some(48), Some(40), Some(3)));
}

#[test]
fn render_then_eval_is_a_closed_loop_across_formats() {
    let tmp = tempfile::tempdir().unwrap();
    scene_dir(tmp.path(), 5);
    // the scene's own RGB is C·Y for the Canon camera: rendering it again must agree
    let out = studio(&["render", "scene/cube.npy", "--camera", "canon", "-o", "again.npy"], tmp.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for target in ["copy.hdr", "copy.mat"] {
        let out = studio(&["convert", "scene/cube.npy", target], tmp.path());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let m = ok_json(&["eval", target, "scene/cube.npy", "--rgb", "scene/rgb.png", "--camera", "canon", "--json"], tmp.path());
        assert_eq!(m["mrae"], 0.0, "{target} did not round-trip: {m}");
        assert_eq!(m["rmse"], 0.0);
        assert_eq!(m["ssim"], 1.0);
        // rgb.png is 16-bit, so C·Y reproduces it to quantisation error only
        let c = m["consistency_mrae"].as_f64().unwrap();
        assert!(c < 1e-3, "consistency {c}");
    }
    // a wrong camera is visibly inconsistent
    let m = ok_json(&["eval", "copy.mat", "scene/cube.npy", "--rgb", "scene/rgb.png", "--camera", "nikon", "--json"], tmp.path());
    assert!(m["consistency_mrae"].as_f64().unwrap() > 0.01, "{m}");
    for key in ["mrae", "rmse", "psnr", "mpsnr", "ssim", "sam_deg", "consistency_mrae", "bands_scored"] {
        assert!(m.get(key).is_some(), "eval --json lacks {key}");
    }
    // a band mask leaves 400-450 nm (6 of the 31 bands) out of the metrics
    let masked = ok_json(&["eval", "copy.mat", "scene/cube.npy", "--exclude-bands", "400-450", "--json"], tmp.path());
    assert_eq!(masked["bands_scored"], 25, "{masked}");
    // `bbl`: the bands the ground truth's ENVI header marks bad (here the first two)
    let bbl: Vec<&str> = (0..31).map(|b| if b < 2 { "0" } else { "1" }).collect();
    let header = tmp.path().join("copy.hdr");
    let text = std::fs::read_to_string(&header).unwrap();
    std::fs::write(&header, format!("{text}bbl = {{{}}}\n", bbl.join(", "))).unwrap();
    let masked = ok_json(&["eval", "copy.mat", "copy.hdr", "--exclude-bands", "bbl", "--json"], tmp.path());
    assert_eq!(masked["bands_scored"], 29, "{masked}");
    let masked = ok_json(&["eval", "copy.mat", "copy.hdr", "--exclude-bands", "bbl,400-450", "--json"], tmp.path());
    assert_eq!(masked["bands_scored"], 25, "{masked}");
    let out = studio(&["eval", "copy.hdr", "scene/cube.npy", "--exclude-bands", "bbl"], tmp.path());
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cube.npy"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = studio(&["eval", "copy.mat", "scene/cube.npy", "--exclude-bands", "blue"], tmp.path());
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("band mask 'blue'"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn real_world_render_is_seeded() {
    let tmp = tempfile::tempdir().unwrap();
    scene_dir(tmp.path(), 1);
    let run = |seed: &str, out: &str| {
        let o = studio(&["render", "scene/cube.npy", "--camera", "canon", "--real-world", "--seed", seed, "-o", out], tmp.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(tmp.path().join(out)).unwrap()
    };
    assert_eq!(run("4", "a.npy"), run("4", "b.npy"));
    assert_ne!(run("4", "a.npy"), run("5", "c.npy"));
}

#[test]
fn fit_camera_prefers_the_camera_that_made_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    scene_dir(tmp.path(), 2);
    let canon = ok_json(&["fit-camera", "scene/cube.npy", "scene/rgb.png", "--camera", "canon", "--json"], tmp.path());
    let nikon = ok_json(&["fit-camera", "scene/cube.npy", "scene/rgb.png", "--camera", "nikon", "--json"], tmp.path());
    let (ec, en) = (canon["curve_rmse_vs_camera"].as_f64().unwrap(), nikon["curve_rmse_vs_camera"].as_f64().unwrap());
    assert!(ec < en / 2.0, "fitted curves should match Canon ({ec}) far better than Nikon ({en})");
    assert!(canon["relative_error"].as_f64().unwrap() < 0.01);
    assert_eq!(canon["r"].as_array().unwrap().len(), 31);
}

#[test]
fn unmix_writes_abundances_that_sum_to_one() {
    let tmp = tempfile::tempdir().unwrap();
    scene_dir(tmp.path(), 2);
    let report = ok_json(&["unmix", "scene/reflectance.npy", "--endmembers", "5", "-o", "ab.npy", "--json"], tmp.path());
    let names = report["endmembers"].as_array().unwrap();
    assert!(!names.is_empty() && names.len() <= 5);
    let info = ok_json(&["info", "ab.npy", "--json", "--layout", "hwc"], tmp.path());
    assert_eq!(info["bands"].as_u64().unwrap() as usize, names.len());
    assert!(info["min"].as_f64().unwrap() >= 0.0);
    // mean over pixels of the per-pixel sums = bands × mean value
    let per_pixel_sum = info["mean"].as_f64().unwrap() * names.len() as f64;
    assert!((per_pixel_sum - 1.0).abs() < 1e-3, "{per_pixel_sum}");
    assert!(tmp.path().join("ab_residual.npy").is_file());
}

#[test]
fn errors_name_the_file_and_exit_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let out = studio(&["info", "missing.hdr"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.hdr"));

    std::fs::write(tmp.path().join("bad.npy"), b"not an array").unwrap();
    let out = studio(&["info", "bad.npy"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.npy") && err.contains("NumPy"), "{err}");

    let out = studio(&["info"], tmp.path());
    assert_eq!(out.status.code(), Some(2), "a missing argument is a usage error");

    let out = studio(&["render", "bad.npy", "--camera", "no-such-camera", "-o", "x.png"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn convert_never_writes_over_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    scene_dir(tmp.path(), 3);
    let before = std::fs::read(tmp.path().join("scene/cube.npy")).unwrap();
    let out = studio(&["convert", "scene/cube.npy", "scene/cube.npy"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to write over the input"));
    assert_eq!(std::fs::read(tmp.path().join("scene/cube.npy")).unwrap(), before);
}

#[test]
fn no_command_writes_over_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    scene_dir(tmp.path(), 3);
    let cube = std::fs::read(tmp.path().join("scene/cube.npy")).unwrap();
    let rgb = std::fs::read(tmp.path().join("scene/rgb.png")).unwrap();
    // the residual map goes beside the abundances as NAME_residual.npy: that may not be the
    // input either
    std::fs::copy(tmp.path().join("scene/cube.npy"), tmp.path().join("r_residual.npy")).unwrap();
    let attempts: [&[&str]; 4] = [
        &["render", "scene/cube.npy", "--camera", "canon", "-o", "scene/cube.npy"],
        &["unmix", "scene/cube.npy", "--endmembers", "2", "-o", "scene/cube.npy"],
        &["unmix", "r_residual.npy", "--endmembers", "2", "-o", "r.npy"],
        &["fit-camera", "scene/cube.npy", "scene/rgb.png", "-o", "scene/rgb.png"],
    ];
    for args in attempts {
        let out = studio(args, tmp.path());
        assert_eq!(out.status.code(), Some(1), "{args:?} should refuse");
        assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to write over the input"), "{args:?}");
    }
    assert_eq!(std::fs::read(tmp.path().join("scene/cube.npy")).unwrap(), cube);
    assert_eq!(std::fs::read(tmp.path().join("scene/rgb.png")).unwrap(), rgb);
}

#[test]
fn assets_lists_the_two_shipped_cameras() {
    let tmp = tempfile::tempdir().unwrap();
    let list = ok_json(&["assets", "--json"], tmp.path());
    let names: Vec<String> = list.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect();
    assert!(names.iter().any(|n| n.contains("canon")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("nikon")), "{names:?}");
}

#[test]
fn a_real_450_band_sensor_cube_works_in_every_command() {
    // Fenix: 378–2504 nm, wider than the cameras (380–780) and the libraries (400–700).
    let tmp = tempfile::tempdir().unwrap();
    let fenix = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/envi/fenix.hdr");
    let fenix = fenix.to_str().unwrap();
    let info = ok_json(&["info", fenix, "--json"], tmp.path());
    assert_eq!(info["bands"], 450);
    let out = studio(&["render", fenix, "--camera", "canon", "-o", "fenix.png"], tmp.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fit = ok_json(&["fit-camera", fenix, "fenix.png", "--camera", "canon", "--json"], tmp.path());
    assert_eq!(fit["r"].as_array().unwrap().len(), 450);
    assert!(fit["curve_rmse_vs_camera"].as_f64().unwrap() < 1e-3, "{}", fit["curve_rmse_vs_camera"]);
    let unmix = ok_json(&["unmix", fenix, "--endmembers", "3", "-o", "ab.npy", "--json"], tmp.path());
    let inside = info["wavelengths"].as_array().unwrap().iter().filter(|w| (400.0..=700.0).contains(&w.as_f64().unwrap())).count();
    assert!(inside > 0 && inside < 450);
    assert_eq!(unmix["bands_used"], inside, "only the bands inside the library's 400–700 nm");
    // the cube has ignored (NaN) pixels: they are left out of the summary, not spread into it
    let means: Vec<f64> = unmix["mean_abundance"].as_array().unwrap().iter().map(|v| v.as_f64().expect("a number, not null")).collect();
    assert!((means.iter().sum::<f64>() - 1.0).abs() < 1e-3, "{means:?}");
    let out = studio(&["convert", fenix, "fenix.mat"], tmp.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let back = ok_json(&["info", "fenix.mat", "--json"], tmp.path());
    assert_eq!((back["rows"].clone(), back["cols"].clone(), back["bands"].clone()), (info["rows"].clone(), info["cols"].clone(), info["bands"].clone()));
}
