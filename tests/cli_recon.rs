//! The reconstruction commands as a user meets them: render → reconstruct → eval as a closed
//! loop for every method, `methods`, `train`, `compare`, and how they refuse bad requests.

mod cli_util;

use cli_util::{fails_with, ok};
use std::path::Path;

fn json(args: &[&str], dir: &Path) -> serde_json::Value {
    let text = ok(args, dir);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
}

#[test]
fn render_reconstruct_eval_is_a_closed_loop_for_every_method() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&["scene", "--seed", "11", "--size", "40x36", "-o", "scene"], d);
    ok(&["render", "scene/cube.npy", "--camera", "canon", "-o", "rgb.npy"], d);
    for method in ["spline", "linear", "pca", "mscnn", "basisnet", "mstpp"] {
        let out = format!("{method}.npy");
        let report = json(&["reconstruct", "rgb.npy", "--method", method, "-o", &out, "--json"], d);
        assert_eq!((report["rows"].as_u64(), report["cols"].as_u64(), report["bands"].as_u64()), (Some(40), Some(36), Some(31)));
        let m = json(&["eval", &out, "scene/cube.npy", "--rgb", "rgb.npy", "--camera", "canon", "--json"], d);
        let mrae = m["mrae"].as_f64().unwrap();
        assert!(mrae > 0.0 && mrae < 1.0, "{method}: MRAE {mrae}");
        assert!(m["consistency_mrae"].as_f64().unwrap() < 0.5, "{method}: {m}");
    }
    // --consistent closes the loop exactly: the reconstruction re-renders to the input.
    json(&["reconstruct", "rgb.npy", "--method", "linear", "--consistent", "-o", "c.npy", "--json"], d);
    let m = json(&["eval", "c.npy", "scene/cube.npy", "--rgb", "rgb.npy", "--camera", "canon", "--json"], d);
    assert!(m["consistency_mrae"].as_f64().unwrap() < 1e-4, "{m}");
}

#[test]
fn reconstruct_refuses_bad_requests_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(&["scene", "--seed", "12", "--size", "16x16", "-o", "scene"], d);
    fails_with(&["reconstruct", "scene/rgb.png", "--method", "nosuch", "-o", "x.npy"], d, "no model for method 'nosuch'");
    fails_with(&["reconstruct", "scene/rgb.png", "--method", "spline", "-o", "x.png"], d, "cannot write a cube");
    fails_with(&["reconstruct", "scene/rgb.png", "--method", "spline", "-o", "scene/rgb.png"], d, "rgb.png");
    fails_with(&["reconstruct", "missing.png", "--method", "spline", "-o", "x.npy"], d, "missing.png");
    fails_with(&["reconstruct", "scene/rgb.png", "--method", "mscnn", "--device", "tpu", "-o", "x.npy"], d, "unknown device 'tpu'");
    if !cfg!(feature = "cuda") {
        fails_with(&["reconstruct", "scene/rgb.png", "--method", "mscnn", "--device", "cuda", "-o", "x.npy"], d, "built without CUDA");
    }
    assert!(!d.join("x.npy").exists(), "a failed command wrote output");
}

#[test]
fn every_model_command_takes_a_device_and_check_device_tests_the_portable_path() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // the portable path against the CPU kernels: every case passes, and says what it compared
    let report = json(&["check-device", "--json"], d);
    assert_eq!(report["failed"].as_u64(), Some(0), "{report}");
    assert_eq!(report["candidate"], "cpu, portable path");
    assert!(report["cases"].as_array().unwrap().len() >= 16, "{report}");
    for args in [
        &["check-device", "--device", "tpu"][..],
        &["bench", "recon", "--device", "tpu"],
        &["train", "--method", "basisnet", "--world", "2", "--device", "tpu", "--out", "m"],
        &["compare", "--methods", "pca", "--synthetic", "1", "--device", "tpu"],
        &["fuse", "hr.png", "lr.npy", "--camera", "canon", "--scale", "4", "--device", "tpu", "-o", "z.npy"],
        &["estimate-camera", "rgb.png", "--device", "tpu"],
    ] {
        fails_with(args, d, "unknown device 'tpu'");
    }
    if !cfg!(feature = "cuda") {
        fails_with(&["check-device", "--device", "cuda"], d, "built without CUDA");
        fails_with(&["bench", "recon", "--suite", "parity", "--device", "cuda"], d, "scripts/cuda-env.sh");
    }
    fails_with(&["bench", "large", "--device", "metal"], d, "metal");
    // a mistyped SPECTRAL_STUDIO_OPS is refused, not ignored
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spectral-studio")).args(["methods"]).env("SPECTRAL_STUDIO_OPS", "fast").current_dir(d).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SPECTRAL_STUDIO_OPS=fast"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn methods_lists_every_builtin_with_its_model() {
    let tmp = tempfile::tempdir().unwrap();
    let list = json(&["methods", "--json"], tmp.path());
    let list = list.as_array().unwrap();
    for name in ["spline", "linear", "pca", "mscnn", "basisnet"] {
        let m = list.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(m["model"].is_null(), name == "spline", "{name}: {m}");
    }
}

#[test]
fn train_fits_a_model_that_reconstruct_and_compare_then_use() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let text = ok(&["train", "--method", "basisnet", "--synthetic", "2", "--size", "32", "--steps", "3", "--batch", "2", "--patch", "16", "--width", "4", "--depth", "1", "--validate-every", "3", "--out", "run", "--json"], d);
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.first().unwrap()["event"], "started");
    assert_eq!(events.iter().filter(|e| e["event"] == "step").count(), 3);
    assert_eq!(events.last().unwrap()["event"], "finished");
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("run/basisnet.json")).unwrap()).unwrap();
    assert!(card["command"].as_str().unwrap().starts_with("spectral-studio train --method basisnet"));
    assert_eq!(card["config"]["width"], 4);
    ok(&["scene", "--seed", "13", "--size", "24x24", "-o", "scene"], d);
    ok(&["reconstruct", "scene/rgb.png", "--method", "basisnet", "--model", "run/basisnet.safetensors", "-o", "out.hdr"], d);
    let cmp = json(&["compare", "--methods", "spline,pca", "--model", "run/basisnet.safetensors", "--synthetic", "1", "--size", "32", "--json"], d);
    let methods = cmp["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 3);
    // A model given by its file is scored under its file's name, with its own weights.
    assert_eq!(methods[2]["method"], "basisnet", "{}", methods[2]);
    assert!(methods[2]["mrae"].as_f64().is_some_and(f64::is_finite), "{}", methods[2]);
    for key in ["mrae", "rmse", "psnr", "ssim", "sam_deg", "consistency_mrae", "mrae_brightness_0.5", "mrae_brightness_2", "mrae_shuffle", "seconds_per_image"] {
        assert!(methods[0][key].as_f64().is_some_and(f64::is_finite), "{key} missing or not finite: {}", methods[0]);
    }
    // Linear maps scale with the input: brightness ×0.5 and ×2 leave spline's MRAE unchanged.
    let s = &methods[0];
    assert!((s["mrae"].as_f64().unwrap() - s["mrae_brightness_2"].as_f64().unwrap()).abs() < 1e-4, "{s}");
    fails_with(&["train", "--method", "unet9", "--synthetic", "2", "--out", "x"], d, "unknown architecture");
    fails_with(&["train", "--method", "mstpp", "--dropout", "0.1", "--synthetic", "2", "--out", "x"], d, "--dropout does not apply to mstpp");
    fails_with(&["train", "--method", "linear", "--out", "x"], d, "give exactly one of --data DIR, --synthetic N, --world N or --aerial N");
}

#[test]
fn a_whole_training_run_on_the_portable_path_has_the_kernels_losses_step_by_step() {
    // What a GPU runs (candle's ops) against the CPU kernels, through everything a run does:
    // data, camera matrices, forward, loss, backward, AdamW. Dropout off (its mask is drawn from
    // candle's unseeded generator); everything else depends on the seed alone.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let losses = |ops: &str| -> Vec<f64> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_spectral-studio"))
            .args(["train", "--method", "basisnet", "--world", "3", "--size", "64", "--steps", "3", "--batch", "2", "--dropout", "0", "--width", "8", "--out", ops, "--json"])
            .env("SPECTRAL_STUDIO_OPS", ops)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|e| e["event"] == "step").map(|e| e["loss"].as_f64().unwrap()).collect()
    };
    let (kernels, portable) = (losses("kernels"), losses("portable"));
    assert_eq!(kernels.len(), 3);
    for (step, (a, b)) in kernels.iter().zip(&portable).enumerate() {
        assert!((a - b).abs() <= 1e-4 * a.abs(), "step {}: {a} on the kernels, {b} on the portable path", step + 1);
    }
    // the steps move the loss: the comparison is of training, not of a frozen model
    assert!(kernels[0] != kernels[2], "{kernels:?}");
}
