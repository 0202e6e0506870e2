//! `train --method usr` and `estimate-camera`: USR's unpaired training and its blind camera
//! estimate, from one picture or measured on a protocol's test scenes.

use std::path::Path;

use serde_json::json;

use super::print_json;
use super::recon::{run_training, TrainArgs};
use crate::engine::JobContext;
use crate::recon::device::parse_device;
use crate::recon::registry::{find_model, load_method};
use crate::recon::{reconstruct, ReconOptions};
use crate::spectral::camera::CameraResponse;
use crate::recon::card::ModelFiles;
use crate::recon::usr::{curve_error, UsrReconstructor};
use crate::train::usr::{train_usr as run, validation_scenes, UsrLoss, UsrTrainConfig};
use crate::train::world::{Protocol, TEST_SEED0};
use crate::{bail_invalid, default_wavelengths, io, Error, Result, RgbImage};

/// `train --method usr --world N`: N pictures and N cubes from disjoint scenes.
pub fn train_usr(a: &TrainArgs) -> Result<()> {
    let Some(scenes) = a.world else { bail_invalid!("usr trains on the world's scenes, unpaired: give --world N (N pictures and N cubes)") };
    for (flag, given) in [
        ("data", a.data.is_some()),
        ("synthetic", a.synthetic.is_some()),
        ("basis", a.basis.is_some()),
        ("depth", a.depth.is_some()),
        ("dropout", a.dropout.is_some()),
        ("real-world", a.real_world),
        ("scale", a.scale.is_some()),
        ("residual", a.residual),
        ("schedule", a.schedule.is_some()),
    ] {
        if given {
            bail_invalid!("--{flag} does not apply to usr");
        }
    }
    let mut cfg = UsrTrainConfig::new(scenes, a.size);
    cfg.name = a.name.clone().unwrap_or_else(|| "usr".into());
    (cfg.steps, cfg.seed) = (a.steps_or_default(), a.seed);
    cfg.batch = a.batch.unwrap_or(cfg.batch);
    cfg.patch = a.patch.unwrap_or(cfg.patch);
    cfg.lr = a.lr.unwrap_or(cfg.lr);
    (cfg.validate_every, cfg.checkpoint_every) = (a.validate_every, a.checkpoint_every);
    if let Some(w) = a.width {
        cfg.model.growth = w;
    }
    if let Some(t) = a.stages {
        cfg.model.stages = t;
    }
    cfg.loss = UsrLoss::ablated(a.ablate.as_deref().unwrap_or(""))?;
    if let Some(w) = a.camera_loss {
        if !(w >= 0.0 && w.is_finite()) {
            bail_invalid!("--camera-loss must be a finite weight ≥ 0 (got {w})");
        }
        cfg.loss.camera = w;
    }
    cfg.loss.separate_clips = a.separate_clips;
    cfg.command = a.command_line.clone();
    cfg.resume = a.resume.clone();
    let device = parse_device(&a.device)?;
    let out = a.out.clone();
    run_training(a.json, move |tx, job| Ok(run(&cfg, &out, &device, tx, job)?.0))
}

pub struct EstimateCameraArgs<'a> {
    /// A picture, or None to measure on `protocol`'s test scenes.
    pub rgb: Option<&'a Path>,
    pub protocol: Option<&'a str>,
    pub scenes: usize,
    pub size: usize,
    pub srgb: bool,
    pub model: Option<&'a Path>,
    pub output: Option<&'a Path>,
    pub device: &'a str,
    pub json: bool,
}

fn usr_files(model: Option<&Path>) -> Result<ModelFiles> {
    match model {
        Some(p) => ModelFiles::resolve(p),
        None => find_model("usr").ok_or_else(|| Error::invalid("no usr model found (train one with `train --method usr`, or give --model)")),
    }
}

/// The constant guess the estimate is judged against: the mean of the shipped cameras' curves.
pub fn mean_shipped_camera() -> Result<ndarray::Array2<f32>> {
    let wl = default_wavelengths();
    let names = crate::spectral::camera::CameraResponse::builtin_names();
    let mut sum = ndarray::Array2::<f32>::zeros((3, wl.len()));
    for name in &names {
        sum += &crate::spectral::camera::CameraResponse::builtin(name)?.on_grid(&wl)?;
    }
    Ok(sum / names.len() as f32)
}

/// `estimate-camera RGB [-o CURVES.csv]`, or `estimate-camera --protocol P --scenes N`: the
/// estimated curves' error on test scenes beside the constant guess's.
pub fn estimate_camera(a: EstimateCameraArgs) -> Result<()> {
    let device = parse_device(a.device)?;
    let files = usr_files(a.model)?;
    let usr = UsrReconstructor::load(&files, None, &device)?;
    match (a.rgb, a.protocol) {
        (Some(path), None) => {
            if let Some(out) = a.output {
                let mut inputs = vec![path, files.card.as_path(), files.weights.as_path()];
                inputs.dedup();
                super::refuse_writing_inputs(&inputs, &[out])?;
            }
            let rgb = io::open_rgb(path, a.srgb)?;
            let est = usr.estimate(&rgb)?;
            let camera = est.response(&format!("estimated from {}", path.display()));
            if let Some(out) = a.output {
                crate::io::atomic::write_bytes_atomically(out, camera.to_csv().as_bytes())?;
            }
            if a.json {
                let row = |k: usize| est.curves.row(k).to_vec();
                let weights: Vec<Vec<f32>> = est.weights.rows().into_iter().map(|r| r.to_vec()).collect();
                print_json(&json!({
                    "input": path, "model": files.weights, "wavelengths": est.wavelengths,
                    "r": row(0), "g": row(1), "b": row(2), "gains": est.gains, "dictionary_weights": weights, "written": a.output,
                }));
            } else {
                let peak = |k: usize| {
                    let r = est.curves.row(k);
                    let i = r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
                    est.wavelengths[i]
                };
                println!(
                    "{}: estimated camera peaks R {:.0} nm, G {:.0} nm, B {:.0} nm; white-balance gains {:.3} {:.3} {:.3}{}",
                    path.display(),
                    peak(0),
                    peak(1),
                    peak(2),
                    est.gains[0],
                    est.gains[1],
                    est.gains[2],
                    a.output.map(|o| format!("; wrote {}", o.display())).unwrap_or_default()
                );
            }
            Ok(())
        }
        (None, Some(name)) => {
            let protocol = Protocol::parse(name)?;
            if a.output.is_some() {
                bail_invalid!("-o writes one picture's curves: give a picture, not --protocol");
            }
            let guess = mean_shipped_camera()?;
            let wl = default_wavelengths();
            let as_camera = |name: &str, m: &ndarray::Array2<f32>| CameraResponse { name: name.into(), wavelengths: wl.clone(), matrix: m.clone() };
            let scenes = validation_scenes(protocol.test_world(), TEST_SEED0, a.scenes, a.size)?;
            // What the estimate is for: pca (Wiener) told the estimated curves, beside pca told
            // the constant guess and the true camera.
            let pca_mrae = |camera: &CameraResponse, rgb: &RgbImage, cube: &ndarray::Array3<f32>| -> Result<f64> {
                let method = load_method("pca", None, camera, &device)?;
                let r = reconstruct(method.as_ref(), rgb, camera, ReconOptions::default(), &JobContext::silent())?;
                crate::metrics::mrae(&r.cube.data, cube)
            };
            let mut rows = Vec::new();
            for (i, s) in scenes.iter().enumerate() {
                let rgb = RgbImage::new(s.rgb.clone())?;
                let est = usr.estimate(&rgb)?;
                let pca = [
                    pca_mrae(&est.response("estimated"), &rgb, &s.cube)?,
                    pca_mrae(&as_camera("mean of the shipped cameras", &guess), &rgb, &s.cube)?,
                    pca_mrae(&as_camera("true camera", &s.camera), &rgb, &s.cube)?,
                ];
                rows.push((i, curve_error(&est.curves, &s.camera), curve_error(&guess, &s.camera), pca));
            }
            let n = rows.len().max(1) as f64;
            let (mean_est, mean_guess) = (rows.iter().map(|r| r.1).sum::<f64>() / n, rows.iter().map(|r| r.2).sum::<f64>() / n);
            let pca_mean = |k: usize| rows.iter().map(|r| r.3[k]).sum::<f64>() / n;
            if a.json {
                print_json(&json!({
                    "protocol": protocol.name(), "scenes": rows.len(), "size": a.size, "model": files.weights,
                    "estimate_error": mean_est, "mean_shipped_camera_error": mean_guess, "ratio": mean_est / mean_guess.max(1e-12),
                    "pca_mrae": { "estimated_camera": pca_mean(0), "mean_shipped_camera": pca_mean(1), "true_camera": pca_mean(2) },
                    "per_scene": rows.iter().map(|r| json!({ "scene": r.0, "estimate_error": r.1, "mean_shipped_camera_error": r.2, "pca_mrae": r.3 })).collect::<Vec<_>>(),
                }));
            } else {
                println!("{} ({}): relative RMS error of the curves, each channel summing to 1", protocol.name(), protocol.describe());
                println!("  estimated from the picture: {mean_est:.4}");
                println!("  mean of the shipped cameras: {mean_guess:.4}");
                println!("  ratio: {:.3}", mean_est / mean_guess.max(1e-12));
                println!("pca MRAE told the estimated curves {:.4}, the mean shipped camera {:.4}, the true camera {:.4}", pca_mean(0), pca_mean(1), pca_mean(2));
            }
            Ok(())
        }
        _ => bail_invalid!("give a picture, or --protocol NAME to measure on that protocol's test scenes"),
    }
}
