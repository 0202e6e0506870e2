//! The reconstruction commands: `reconstruct`, `methods`, `train`, `compare`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{print_json, refuse_writing_inputs};
use crate::engine::{CancelToken, JobContext};
use crate::models::Architecture;
use crate::recon::compare::{score, score_told, MethodScore};
use crate::recon::device::parse_device;
use crate::recon::registry::{list_methods, load_method};
use crate::recon::{self, ReconOptions};
use crate::spectral::camera::CameraResponse;
use crate::train::data::{readable_files, synthetic_cube, DataSource, RgbSimulation};
use crate::train::world::{self, Protocol};
use crate::train::optim::Schedule;
use crate::train::{Loss, TrainConfig, TrainEvent};
use crate::{bail_invalid, default_wavelengths, io, Error, Result};

pub struct ReconstructArgs<'a> {
    pub rgb: &'a Path,
    pub method: &'a str,
    pub model: Option<&'a Path>,
    pub camera: Option<&'a str>,
    pub options: ReconOptions,
    pub srgb: bool,
    pub device: &'a str,
    pub output: &'a Path,
    /// Where to write the camera a usr model estimated (`--camera-out`).
    pub camera_out: Option<&'a Path>,
    /// Where to write an inss model's abundances (`--abundances`).
    pub abundances: Option<&'a Path>,
    pub json: bool,
    /// Cubes larger than this many bytes are made tile by tile into the output file
    /// (default [`io::source::DEFAULT_MEMORY_CAP`]).
    pub memory_cap: Option<u64>,
}

/// The usr model `method` (or `model`) names, if it is one.
fn usr_model(method: &str, model: Option<&Path>) -> Option<crate::recon::card::ModelFiles> {
    let files = match model {
        Some(p) => crate::recon::card::ModelFiles::resolve(p).ok()?,
        None => crate::recon::registry::find_model(method)?,
    };
    let card = crate::recon::card::ModelCard::load(&files.card).ok()?;
    (card.architecture == crate::models::Architecture::Usr).then_some(files)
}

/// The camera a method assumes: the one given, else its model card's, else the Canon.
fn assumed_camera(given: Option<&str>, method: &str, model: Option<&Path>) -> Result<CameraResponse> {
    if let Some(name) = given {
        return CameraResponse::parse(name);
    }
    let card = match model {
        Some(p) => crate::recon::registry::card_of(p),
        None => crate::recon::registry::find_model(method).and_then(|f| crate::recon::card::ModelCard::load(&f.card).ok()),
    };
    // A camera-aware model ("any") is told the Canon unless the user names the camera.
    let own = card.map(|c| c.camera).filter(|c| c != crate::recon::card::ANY_CAMERA);
    CameraResponse::parse(own.as_deref().unwrap_or("canon-eos-5d-mark-ii"))
}

/// `reconstruct RGB --method NAME … -o OUT`: write the cube in `render`'s scale convention.
pub fn reconstruct(a: ReconstructArgs) -> Result<()> {
    let mut inputs = vec![a.rgb];
    inputs.extend(a.model);
    refuse_writing_inputs(&inputs, &[a.output])?;
    io::check_cube_output(a.output)?;
    let device = parse_device(a.device)?;
    let usr = usr_model(a.method, a.model);
    if a.camera_out.is_some() && (usr.is_none() || a.camera.is_some()) {
        bail_invalid!("--camera-out writes the camera a usr model estimates: it needs a usr method and no --camera");
    }
    if let Some(out) = a.camera_out {
        refuse_writing_inputs(&inputs, &[out])?;
    }
    if let Some(out) = a.abundances {
        return reconstruct_inss(&a, out, &inputs, &device);
    }
    let Some(files) = usr else {
        let camera = assumed_camera(a.camera, a.method, a.model)?;
        let method = load_method(a.method, a.model, &camera, &device)?;
        note_inferred_card(a.model);
        // A cube over the memory cap is made tile by tile, straight into the output file.
        let (rows, cols) = io::rgb_dims(a.rgb)?;
        let cube_bytes = (rows as u64) * (cols as u64) * (method.wavelengths().len() as u64) * 4;
        let cap = a.memory_cap.unwrap_or(io::source::DEFAULT_MEMORY_CAP);
        if cube_bytes > cap && io::extension(a.output) != "mat" {
            return reconstruct_in_tiles(&a, method.as_ref(), &camera, cube_bytes);
        }
        let rgb = io::open_rgb(a.rgb, a.srgb)?;
        return finish_reconstruction(&a, method.as_ref(), &camera, &rgb, None);
    };
    // usr without --camera: the camera estimated from the picture is the one assumed, and the
    // model runs blind (its generator with the estimate and its white-balance gains, as
    // `usr-blind` and training run it), estimating once.
    let rgb = io::open_rgb(a.rgb, a.srgb)?;
    let (estimated, method): (Option<crate::recon::usr::EstimatedCamera>, Box<dyn recon::Reconstructor>) = match a.camera {
        None => {
            let mut blind = crate::recon::usr::UsrReconstructor::load(&files, None, &device)?;
            let est = blind.estimate(&rgb)?;
            blind.assume_estimate(&est);
            (Some(est), Box::new(blind))
        }
        Some(_) => (None, load_method(a.method, a.model, &assumed_camera(a.camera, a.method, a.model)?, &device)?),
    };
    let camera = match &estimated {
        Some(est) => est.response(&format!("estimated by {} from {}", a.method, a.rgb.display())),
        None => assumed_camera(a.camera, a.method, a.model)?,
    };
    if let (Some(out), Some(_)) = (a.camera_out, &estimated) {
        crate::io::atomic::write_bytes_atomically(out, camera.to_csv().as_bytes())?;
    }
    note_inferred_card(a.model);
    finish_reconstruction(&a, method.as_ref(), &camera, &rgb, estimated.as_ref())
}

/// `reconstruct --method inss … --abundances A.npy`: the cube, and beside it the abundances
/// (rows, cols, N_g) with a JSON of their names, the learned signature and each pixel's
/// nonlinearity statistics.
fn reconstruct_inss(a: &ReconstructArgs, out: &Path, inputs: &[&Path], device: &candle_core::Device) -> Result<()> {
    if io::extension(out) != "npy" {
        bail_invalid!("{}: --abundances writes a .npy file", out.display());
    }
    refuse_writing_inputs(inputs, &[out])?;
    if out == a.output {
        bail_invalid!("{}: the abundances and the cube need two files", out.display());
    }
    let files = match a.model {
        Some(p) => crate::recon::card::ModelFiles::resolve(p)?,
        None => crate::recon::registry::find_model(a.method).ok_or_else(|| Error::invalid(format!("no model for method '{}' (--abundances needs an inss model)", a.method)))?,
    };
    let card = crate::recon::card::ModelCard::load(&files.card)?;
    if card.architecture != crate::models::Architecture::Inss {
        bail_invalid!("--abundances needs an inss model; '{}' is a {} model", a.method, card.architecture.name());
    }
    let camera = assumed_camera(a.camera, a.method, a.model)?;
    if !card.fits_camera(&camera)? {
        bail_invalid!("model '{}' was trained for the camera '{}' only and cannot use '{}'", card.name, card.camera, camera.name);
    }
    let inss = crate::recon::inss::InssReconstructor::load(&files, device)?;
    let names = inss.library_names()?;
    let rgb = io::open_rgb(a.rgb, a.srgb)?;
    let start = std::time::Instant::now();
    let s = inss.synthesise(&rgb, &JobContext::silent())?;
    let seconds = start.elapsed().as_secs_f64();
    let mut cube = crate::Cube::new(s.cube.mapv(|v| v.max(0.0)), card.wavelengths.clone())?;
    cube.meta.description = Some(format!("synthesised by inss model '{}' from RGB", card.name));
    io::save(&cube, a.output)?;
    let (g, rows, cols) = s.abundances.dim();
    // (N_g, rows, cols) → (rows, cols, N_g), atomically
    io::npy::write_chw_as_hwc(out, s.abundances.view())?;
    let strongest: Vec<serde_json::Value> = s.strongest().into_iter().take(10).map(|(i, mean)| json!({ "name": names[i], "mean_abundance": mean })).collect();
    let nl = crate::cube::value_stats(s.nonlinearity.iter().copied());
    // the abundances summed by class (vegetation, bare, built, ...): their picture means
    let categories = inss.library_categories()?;
    let (classes, class_maps) = s.by_class(&categories)?;
    let classes: Vec<serde_json::Value> = classes.iter().zip(class_maps.outer_iter()).map(|((name, n), map)| json!({ "class": name, "spectra": n, "mean_abundance": map.mean().unwrap_or(0.0) })).collect();
    let side = json!({
        "model": card.name, "library": crate::train::inss::LIBRARY, "names": names,
        "categories": categories, "shape": [rows, cols, g],
        "wavelengths": card.wavelengths, "signature": inss.signature()?,
        "nonlinearity": { "mean": nl.mean, "max": nl.max, "what": "per pixel, the norm of the nonlinear terms over the norm of the spectrum" },
        "strongest": strongest, "classes": classes,
    });
    let side_path = out.with_extension("json");
    refuse_writing_inputs(inputs, &[&side_path])?;
    crate::io::atomic::write_bytes_atomically(&side_path, serde_json::to_string_pretty(&side).map_err(|e| Error::invalid(e.to_string()))?.as_bytes())?;
    let report = json!({
        "method": card.name, "input": a.rgb, "output": a.output, "abundances": out, "abundances_json": side_path,
        "rows": rows, "cols": cols, "bands": cube.bands(), "library_size": g, "camera": camera.name, "seconds": seconds,
        "strongest": strongest, "classes": classes, "decoding": decoding(a.srgb),
    });
    if a.json {
        print_json(&report);
    } else {
        println!("{}: {rows}x{cols} px → {} bands and {g} abundance maps in {seconds:.2} s with inss ({}), wrote {} and {}", a.rgb.display(), cube.bands(), card.name, a.output.display(), out.display());
    }
    Ok(())
}

/// How the input's numbers were read, as the JSON report says it.
fn decoding(srgb: bool) -> &'static str {
    if srgb {
        "srgb (--srgb: linearised)"
    } else {
        "linear (as stored; --srgb linearises an sRGB-encoded photo)"
    }
}

fn note_inferred_card(model: Option<&Path>) {
    if let Some(p) = model.filter(|p| crate::recon::pytorch::is_checkpoint(p) && !p.with_extension("json").is_file()) {
        eprintln!(
            "note: {}: no model card beside it, so its architecture and config were inferred from its tensors; the camera and data it was trained on are unknown",
            p.display()
        );
    }
}

/// Reconstruct a picture whose cube would exceed the memory cap, tile by tile into the output.
fn reconstruct_in_tiles(a: &ReconstructArgs, method: &dyn recon::Reconstructor, camera: &CameraResponse, cube_bytes: u64) -> Result<()> {
    let rgb = io::open_rgb_source(a.rgb)?;
    let r = recon::streamed::reconstruct_streamed(method, &*rgb, a.srgb, camera, a.options, a.output, None, &JobContext::silent())?;
    let report = json!({
        "method": r.method, "input": a.rgb, "output": a.output,
        "rows": r.rows, "cols": r.cols, "bands": r.bands,
        "camera": camera.name, "device": a.device, "seconds": r.seconds,
        "exposure_scale": r.exposure_scale, "consistency": r.consistency,
        "clamped": r.clamped,
        "tiles": r.tiles, "cube_gib": cube_bytes as f64 / (1u64 << 30) as f64,
        "decoding": decoding(a.srgb),
        "input_storage": rgb.storage(),
    });
    if a.json {
        print_json(&report);
    } else {
        println!(
            "{}: {}x{} px → {} bands in {:.2} s with {} (camera {}), {} tiles written straight to {} ({:.1} GiB)",
            a.rgb.display(), r.rows, r.cols, r.bands, r.seconds, r.method, camera.name, r.tiles, a.output.display(),
            cube_bytes as f64 / (1u64 << 30) as f64
        );
        if let Some(what) = r.clamped.describe() {
            println!("{what}");
        }
    }
    Ok(())
}

/// Reconstruct the whole picture in memory, save it and report.
fn finish_reconstruction(
    a: &ReconstructArgs,
    method: &dyn recon::Reconstructor,
    camera: &CameraResponse,
    rgb: &crate::RgbImage,
    estimated: Option<&crate::recon::usr::EstimatedCamera>,
) -> Result<()> {
    let result = recon::reconstruct(method, rgb, camera, a.options, &JobContext::silent())?;
    io::save(&result.cube, a.output)?;
    let report = json!({
        "method": result.method,
        "input": a.rgb,
        "output": a.output,
        "rows": result.cube.rows(),
        "cols": result.cube.cols(),
        "bands": result.cube.bands(),
        "camera": camera.name,
        "device": a.device,
        "seconds": result.seconds,
        "exposure_scale": result.exposure_scale,
        "consistency": result.consistency,
        "clamped": result.clamped,
        "estimated_camera": estimated.map(|e| json!({ "gains": e.gains, "written": a.camera_out })),
        "decoding": decoding(a.srgb),
    });
    if a.json {
        print_json(&report);
    } else {
        println!(
            "{}: {}x{} px → {} bands in {:.2} s with {} (camera {}), wrote {}",
            a.rgb.display(),
            result.cube.rows(),
            result.cube.cols(),
            result.cube.bands(),
            result.seconds,
            result.method,
            camera.name,
            a.output.display()
        );
        if let Some(what) = result.clamped.describe() {
            println!("{what}");
        }
        if let Some(c) = result.consistency {
            println!(
                "consistency MRAE {:.2e} → {:.2e}{}",
                c.before_mrae,
                c.after_mrae,
                if c.unreachable_pixels > 0 { format!(" ({} pixels have no non-negative consistent spectrum)", c.unreachable_pixels) } else { String::new() }
            );
        }
    }
    Ok(())
}

/// `methods`: every method and model the registry knows.
pub fn methods(as_json: bool) -> Result<()> {
    let all = list_methods();
    if as_json {
        print_json(&serde_json::to_value(&all).map_err(|e| Error::invalid(e.to_string()))?);
        return Ok(());
    }
    for m in &all {
        let model = match (&m.model, m.name.as_str()) {
            (Some(p), _) => p.display().to_string(),
            (None, "spline") => "(no model: built from the camera)".into(),
            (None, _) => "(model missing)".into(),
        };
        println!("{:<10} {:<9} {}\n{:<20} {}", m.name, m.kind, m.description, "", model);
    }
    Ok(())
}

/// `check-device`: [`crate::bench::device_check::check`] on `device`, a table or JSON; an error
/// (exit status 1) when a case fails.
pub fn check_device(device: &str, as_json: bool) -> Result<()> {
    let dev = parse_device(device)?;
    let started = std::time::Instant::now();
    let reports = crate::bench::device_check::check(&dev);
    let failed = reports.iter().filter(|r| !r.ok).count();
    if as_json {
        print_json(&serde_json::json!({
            "device": device,
            "reference": "cpu kernels",
            "candidate": if dev.is_cpu() { "cpu, portable path" } else { device },
            "tolerance": crate::bench::device_check::TOLERANCE,
            "seconds": started.elapsed().as_secs_f64(),
            "failed": failed,
            "cases": reports,
        }));
    } else {
        let candidate = if dev.is_cpu() { "the portable path on the cpu" } else { device };
        println!("{candidate} against the cpu kernels, f32, tolerance {:e}:", crate::bench::device_check::TOLERANCE);
        for r in &reports {
            let verdict = if r.ok { "ok" } else { "FAILED" };
            match &r.error {
                Some(e) => println!("{verdict:<7} {:<60} {:<9} {e}", r.name, r.pass),
                None => println!("{verdict:<7} {:<60} {:<9} output {:.1e}  gradients {:.1e} {}", r.name, r.pass, r.output_gap, r.gradient_gap, r.worst),
            }
        }
    }
    if failed > 0 {
        return Err(Error::invalid(format!("{failed} of {} cases differ on {device}", reports.len())));
    }
    Ok(())
}

pub struct TrainArgs {
    pub method: String,
    pub data: Option<PathBuf>,
    pub synthetic: Option<usize>,
    pub world: Option<usize>,
    /// Nadir aerial scenes over 400–2450 nm (inss only).
    pub aerial: Option<usize>,
    pub size: usize,
    pub camera: String,
    pub real_world: bool,
    /// Training steps; None: the method's default ([`TrainArgs::steps_or_default`]).
    pub steps: Option<usize>,
    pub batch: Option<usize>,
    pub patch: Option<usize>,
    pub lr: Option<f64>,
    pub schedule: Option<String>,
    pub loss: String,
    pub width: Option<usize>,
    pub depth: Option<usize>,
    pub basis: Option<usize>,
    pub stages: Option<usize>,
    /// inss: the mixing model's order.
    pub order: Option<usize>,
    pub scale: Option<usize>,
    pub residual: bool,
    /// usr: loss components left out (bp, s1, pos, clip, sem).
    pub ablate: Option<String>,
    /// usr: weight of the camera supervision S_cam (not in the paper).
    pub camera_loss: Option<f64>,
    /// usr: clip D's and the semantic branch's gradients separately.
    pub separate_clips: bool,
    pub dropout: Option<f64>,
    /// Decay of the weights' moving average (mscnn, basisnet, mstpp).
    pub ema: Option<f64>,
    /// Weight of the spectral-angle loss term (mscnn, basisnet, mstpp).
    pub angle: Option<f64>,
    pub seed: u64,
    pub validate_every: usize,
    pub checkpoint_every: usize,
    pub name: Option<String>,
    pub resume: Option<PathBuf>,
    pub device: String,
    pub out: PathBuf,
    pub json: bool,
    pub command_line: String,
}

impl TrainArgs {
    /// The steps asked for, else the method's default: 2000, or 300 for inss (whose steps
    /// cost 2–3 s on 2 cores: 300 fit a 150 × 150 × 200 cube in the 15 minutes its issue asks).
    pub fn steps_or_default(&self) -> usize {
        self.steps.unwrap_or(if self.method == "inss" { 300 } else { 2000 })
    }
}

fn train_config(a: &TrainArgs) -> Result<TrainConfig> {
    let method = Architecture::parse(&a.method)?;
    let data = match (&a.data, a.synthetic, a.world, a.aerial) {
        (Some(path), None, None, None) => DataSource::Folder { path: path.clone() },
        (None, Some(count), None, None) => DataSource::Synthetic { count, size: a.size },
        (None, None, Some(count), None) => DataSource::World { count, size: a.size },
        (None, None, None, Some(count)) => DataSource::Aerial { count, size: a.size },
        _ => bail_invalid!("give exactly one of --data DIR, --synthetic N, --world N or --aerial N"),
    };
    let mut cfg = TrainConfig::new(method, data);
    cfg.name = a.name.clone().unwrap_or_else(|| method.name().to_string());
    cfg.camera = a.camera.clone();
    cfg.simulation = if a.real_world { RgbSimulation::Realworld } else { RgbSimulation::Clean };
    (cfg.steps, cfg.seed) = (a.steps_or_default(), a.seed);
    cfg.batch = a.batch.unwrap_or(cfg.batch);
    cfg.patch = a.patch.unwrap_or(cfg.patch);
    cfg.lr = a.lr.unwrap_or(cfg.lr);
    (cfg.validate_every, cfg.checkpoint_every) = (a.validate_every, a.checkpoint_every);
    if let Some(decay) = a.ema {
        if !(0.0..1.0).contains(&decay) {
            bail_invalid!("--ema must be a decay in [0, 1), e.g. 0.999 (got {decay})");
        }
        cfg.ema = Some(decay);
    }
    if let Some(w) = a.angle {
        if !(w >= 0.0 && w.is_finite()) {
            bail_invalid!("--angle must be a weight ≥ 0 (got {w})");
        }
        cfg.angle = w;
    }
    cfg.schedule = match a.schedule.as_deref().unwrap_or("cosine") {
        "cosine" => Schedule::Cosine { warmup: (cfg.steps / 40).min(200) },
        "constant" => Schedule::Constant,
        // The paper: ×0.93 every 10 epochs; here an "epoch" is steps/100, so 10 epochs = steps/10.
        "step" => Schedule::Step { every: (cfg.steps / 10).max(1), gamma: 0.93 },
        other => bail_invalid!("unknown schedule '{other}' (expected cosine, step or constant)"),
    };
    cfg.loss = match a.loss.as_str() {
        "mrae" => Loss::Mrae,
        "l1" => Loss::L1,
        "mrae+l1" => Loss::MraeL1,
        "mrae+rmse" => Loss::MraeRmse,
        other => bail_invalid!("unknown loss '{other}' (expected mrae+l1, mrae+rmse, mrae or l1)"),
    };
    if method.is_network() {
        let mut model = method.default_config();
        if let Some(p) = a.dropout {
            if model.get("dropout").is_none() {
                bail_invalid!("--dropout does not apply to {}", method.name());
            }
            if !(0.0..1.0).contains(&p) {
                bail_invalid!("--dropout must be in [0, 1), got {p}");
            }
            model["dropout"] = json!(p);
        }
        for (flag, key, value) in [("width", "width", a.width), ("depth", "depth", a.depth), ("basis", "basis", a.basis), ("stages", "stage", a.stages), ("order", "order", a.order)] {
            if let Some(v) = value {
                if model.get(key).is_none() {
                    bail_invalid!("--{flag} does not apply to {}", method.name());
                }
                model[key] = json!(v);
            }
        }
        cfg.model = model;
    }
    cfg.command = a.command_line.clone();
    Ok(cfg)
}

/// `train`: runs the loop on a worker thread and prints its events (a progress bar on a
/// terminal, JSON lines with `--json`).
pub fn train(a: TrainArgs) -> Result<()> {
    if a.method == "ual" {
        return train_fusion(&a);
    }
    if a.method == "usr" {
        return super::usr::train_usr(&a);
    }
    if a.ablate.is_some() || a.camera_loss.is_some() || a.separate_clips {
        bail_invalid!("--ablate, --camera-loss and --separate-clips apply to usr only");
    }
    if a.scale.is_some() || a.residual {
        bail_invalid!("--scale and --residual apply to ual only");
    }
    if (a.ema.is_some() || a.angle.is_some()) && !matches!(a.method.as_str(), "mscnn" | "basisnet" | "mstpp") {
        bail_invalid!("--ema and --angle apply to mscnn, basisnet and mstpp only");
    }
    let cfg = train_config(&a)?;
    let device = parse_device(&a.device)?;
    let (out, resume) = (a.out.clone(), a.resume.clone());
    run_training(a.json, move |tx, job| Ok(crate::train::train(&cfg, &out, resume.as_deref(), &device, tx, job)?.model))
}

/// Run `train` on a worker thread, printing its events as they come (JSON lines with `json`),
/// then the written model's path.
pub(super) fn run_training(json: bool, train: impl FnOnce(&crossbeam_channel::Sender<TrainEvent>, &JobContext) -> Result<crate::recon::card::ModelFiles> + Send + 'static) -> Result<()> {
    let (tx, rx) = crossbeam_channel::unbounded::<TrainEvent>();
    let worker = std::thread::spawn(move || train(&tx, &JobContext::new(CancelToken::new(), |_, _| {})));
    print_train_events(&rx, json)?;
    let files = worker.join().map_err(|_| Error::invalid("the training thread panicked"))??;
    if !json {
        println!("{}", files.weights.display());
    }
    Ok(())
}

/// Prints a training run's events: a progress bar on a terminal, JSON lines with `json`.
pub(super) fn print_train_events(rx: &crossbeam_channel::Receiver<TrainEvent>, json_lines: bool) -> Result<()> {
    let bar = !json_lines && std::io::stderr().is_terminal();
    for event in rx.iter() {
        if json_lines {
            println!("{}", serde_json::to_string(&event).map_err(|e| Error::invalid(e.to_string()))?);
            continue;
        }
        match &event {
            TrainEvent::Step { step, total_steps, loss, lr, samples_per_s, eta_s } if bar => {
                let filled = step * 30 / total_steps.max(&1);
                eprint!(
                    "\r[{}{}] {step}/{total_steps} loss {loss:.4} lr {lr:.1e} {samples_per_s:.1} samples/s ETA {}   ",
                    "#".repeat(filled),
                    ".".repeat(30 - filled),
                    format_eta(*eta_s)
                );
            }
            TrainEvent::Step { step, total_steps, loss, .. } if step % 50 == 0 || step == total_steps => {
                eprintln!("step {step}/{total_steps} loss {loss:.4}");
            }
            TrainEvent::Step { .. } => {}
            TrainEvent::Started { method, total_steps, start_step, parameters, train_scenes, validation_scenes, device } => eprintln!(
                "training {method} on {device}: {parameters} parameters, {train_scenes} training / {validation_scenes} validation images, steps {start_step}..{total_steps}"
            ),
            TrainEvent::Validation { step, mrae, rmse, psnr, sam_deg } => {
                eprintln!("{}validation at step {step}: MRAE {mrae:.4} RMSE {rmse:.4} PSNR {psnr:.2} dB SAM {sam_deg:.2}°", if bar { "\n" } else { "" })
            }
            TrainEvent::Baselines { scores } => {
                for b in scores {
                    eprintln!("baseline {} on the validation data: MRAE {:.4} RMSE {:.4} PSNR {:.2} dB SAM {:.2}°", b.name, b.mrae, b.rmse, b.psnr, b.sam_deg);
                }
            }
            TrainEvent::Checkpoint { path, .. } => eprintln!("checkpoint {}", path.display()),
            TrainEvent::Terms { step, terms } if step % 50 == 0 || terms.len() == 1 => {
                let terms: Vec<String> = terms.iter().map(|(name, v)| format!("{name} {v:.4}")).collect();
                eprintln!("{}step {step}: {}", if bar { "\n" } else { "" }, terms.join(", "));
            }
            TrainEvent::Terms { .. } => {}
            TrainEvent::Finished { steps, seconds, model } => eprintln!("finished {steps} steps in {seconds:.1} s: {}", model.display()),
        }
    }
    Ok(())
}

/// `train --method ual`: pretrains UAL's fusion module on the data engine's scenes.
fn train_fusion(a: &TrainArgs) -> Result<()> {
    use crate::train::fusion::{pretrain_fusion, FusionSchedule, FusionTrainConfig};
    let data = match (&a.data, a.synthetic, a.world) {
        (None, None, Some(count)) => DataSource::World { count, size: a.size },
        (None, Some(count), None) => DataSource::Synthetic { count, size: a.size },
        _ => bail_invalid!("ual pretrains on generated scenes: give --world N (or --synthetic N)"),
    };
    for (flag, given) in [("basis", a.basis.is_some()), ("stages", a.stages.is_some()), ("dropout", a.dropout.is_some()), ("real-world", a.real_world), ("resume", a.resume.is_some())] {
        if given {
            bail_invalid!("--{flag} does not apply to ual");
        }
    }
    let mut cfg = FusionTrainConfig::new(data);
    cfg.name = a.name.clone().unwrap_or_else(|| "ual-fusion".into());
    (cfg.steps, cfg.seed) = (a.steps_or_default(), a.seed);
    cfg.batch = a.batch.unwrap_or(cfg.batch);
    cfg.patch = a.patch.unwrap_or(cfg.patch);
    cfg.lr = a.lr.unwrap_or(cfg.lr);
    (cfg.validate_every, cfg.checkpoint_every) = (a.validate_every, a.checkpoint_every);
    if let Some(s) = a.scale {
        cfg.scale = s;
    }
    cfg.schedule = match a.schedule.as_deref().unwrap_or("step") {
        "step" => FusionSchedule::Paper,
        "cosine" => FusionSchedule::Cosine,
        "constant" => FusionSchedule::Constant,
        other => bail_invalid!("unknown schedule '{other}' (expected step, cosine or constant)"),
    };
    if let Some(w) = a.width {
        cfg.model.width = w;
    }
    if let Some(d) = a.depth {
        cfg.model.depth = d;
    }
    cfg.model.residual = a.residual;
    cfg.command = a.command_line.clone();
    let device = parse_device(&a.device)?;
    let out = a.out.clone();
    run_training(a.json, move |tx, job| Ok(pretrain_fusion(&cfg, &out, &device, tx, job)?.0))
}

fn format_eta(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

pub enum CompareData {
    Folder(PathBuf),
    /// Held-out synthetic scenes: seeds 1..=count at size².
    Synthetic { count: usize, size: usize },
    /// The test scenes of generalisation protocols (each with its own camera).
    /// `fixed_camera`: every scene through the run's camera rather than its own; `assumed`:
    /// every method told this camera whatever camera took the picture.
    /// `per_scene`: also list every scene's light, camera and each method's MRAE, RMSE and SAM.
    Protocols { protocols: Vec<Protocol>, count: usize, size: usize, fixed_camera: bool, assumed: Option<String>, per_scene: bool },
}

/// One table of a comparison: what was scored and each method's result (or why it could not run).
struct CompareTable {
    description: String,
    camera: String,
    protocol: Option<Protocol>,
    scores: Vec<(String, std::result::Result<MethodScore, String>)>,
    /// With `--per-scene`: each scene's seed, light and camera, and each method's (MRAE, RMSE,
    /// SAM °) on it, in the order of `scores` (None where the method could not run).
    scenes: Vec<SceneRow>,
}

struct SceneRow {
    seed: u64,
    light: String,
    camera: String,
    scores: Vec<Option<[f64; 3]>>,
}

/// `compare`: score `methods` on ground truth, the NTIRE 2020 way; with protocols, one table per
/// protocol, every scene rendered through (and every method told) that scene's own camera.
/// With `record`, each method's score is written into its model card's `metrics` (the shipped
/// cards' figures come from exactly this command).
#[allow(clippy::too_many_arguments)]
/// `methods`: each method's name and, for a model given by its file (`--model`), that file.
pub fn compare(methods: &[(String, Option<PathBuf>)], data: CompareData, camera_name: &str, options: ReconOptions, device: &str, record: bool, as_json: bool) -> Result<()> {
    if methods.is_empty() {
        bail_invalid!("give at least one method (--methods A,B) or model (--model FILE)");
    }
    let device = parse_device(device)?;
    let grid = default_wavelengths();
    let silent = JobContext::silent();
    let mut tables = Vec::new();
    match &data {
        CompareData::Folder(_) | CompareData::Synthetic { .. } => {
            let camera = CameraResponse::parse(camera_name)?;
            let (cubes, description) = match &data {
                CompareData::Folder(dir) => {
                    let files: Vec<PathBuf> = readable_files(dir)?.into_iter().filter(|p| !is_rgb_file(p)).collect();
                    if files.is_empty() {
                        return Err(Error::format(dir, "no readable cube in this folder"));
                    }
                    let cubes = files.iter().map(|f| io::open(f, &io::OpenOptions::default()).and_then(|c| c.resample(&grid)).map(|c| c.data)).collect::<Result<Vec<_>>>()?;
                    (cubes, format!("{} cubes in {}", files.len(), dir.display()))
                }
                CompareData::Synthetic { count, size } => {
                    let cubes = (1..=*count as u64).map(|seed| synthetic_cube(seed, *size, &camera)).collect::<Result<Vec<_>>>()?;
                    (cubes, format!("{count} held-out synthetic scenes (seeds 1..={count}, {size}x{size})"))
                }
                CompareData::Protocols { .. } => unreachable!(),
            };
            let mut scores = Vec::new();
            for (name, model) in methods {
                let method = load_method(name, model.as_deref(), &camera, &device)?;
                scores.push((name.clone(), Ok(score(method.as_ref(), &cubes, &camera, options, &silent)?)));
            }
            tables.push(CompareTable { description, camera: camera.name.clone(), protocol: None, scores, scenes: Vec::new() });
        }
        CompareData::Protocols { protocols, count, size, fixed_camera, assumed, per_scene: list_scenes } => {
            let fixed = fixed_camera.then(|| CameraResponse::parse(camera_name)).transpose()?;
            let assumed = assumed.as_deref().map(CameraResponse::parse).transpose()?;
            for &protocol in protocols {
                if fixed.is_some() && protocol == Protocol::CrossCamera {
                    eprintln!("note: cross-camera is skipped with --fixed-camera (its held-out camera is the point)");
                    continue;
                }
                let world = protocol.test_world();
                let mut scenes = (0..*count as u64).map(|i| world::scene(world, world::TEST_SEED0 + i, *size)).collect::<Result<Vec<_>>>()?;
                if let Some(camera) = &fixed {
                    // The radiance does not depend on the camera: only the picture changes.
                    scenes.iter_mut().for_each(|s| s.camera = camera.clone());
                }
                let mut scores = Vec::new();
                let mut rows: Vec<SceneRow> = scenes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| SceneRow { seed: world::TEST_SEED0 + i as u64, light: s.light.clone(), camera: s.camera.name.clone(), scores: Vec::new() })
                    .collect();
                for (name, model) in methods {
                    let mut per_scene = Vec::new();
                    let mut refused = None;
                    for s in &scenes {
                        let told = assumed.as_ref().unwrap_or(&s.camera);
                        match load_method(name, model.as_deref(), told, &device) {
                            Ok(method) => per_scene.push(score_told(method.as_ref(), std::slice::from_ref(&s.cube), &s.camera, told, options, &silent)?),
                            Err(e) => {
                                refused = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    for (i, row) in rows.iter_mut().enumerate() {
                        row.scores.push(if refused.is_some() { None } else { per_scene.get(i).map(|m: &MethodScore| [m.mrae, m.rmse, m.sam_deg]) });
                    }
                    scores.push((name.clone(), refused.map_or_else(|| Ok(MethodScore::mean(name, &per_scene)), Err)));
                }
                let cameras: std::collections::BTreeSet<&str> = scenes.iter().map(|s| s.camera.name.as_str()).collect();
                tables.push(CompareTable {
                    description: format!(
                        "protocol {}: {count} test scenes of {size}x{size} (seeds {}..), {}{}{}",
                        protocol.name(),
                        world::TEST_SEED0,
                        protocol.describe(),
                        if fixed.is_some() { ", every scene through one camera" } else { "" },
                        assumed.as_ref().map(|c| format!(", every method told {} whatever camera took the picture", c.name)).unwrap_or_default()
                    ),
                    camera: cameras.into_iter().collect::<Vec<_>>().join(" / "),
                    protocol: Some(protocol),
                    scores,
                    scenes: if *list_scenes { rows } else { Vec::new() },
                });
            }
        }
    }
    if record {
        for table in &tables {
            for (name, s) in &table.scores {
                // Models given by file are scored, not recorded: their card is not the named one.
                if methods.iter().any(|(n, model)| n == name && model.is_some()) {
                    continue;
                }
                // usr-blind's figures go on usr's card (under `protocols_blind`); a method told
                // the wrong camera (`--assume`) records nothing: that is a user's mistake
                // measured, not the model's figure.
                let blind = name == crate::recon::registry::USR_BLIND;
                let assumed = matches!(&data, CompareData::Protocols { assumed: Some(_), .. });
                if assumed && !blind {
                    continue;
                }
                let (Ok(s), Some(files)) = (s, crate::recon::registry::find_model(if blind { "usr" } else { name })) else { continue };
                let mut card = crate::recon::card::ModelCard::load(&files.card)?;
                let entry = json!({ "data": table.description, "camera": table.camera, "options": options, "score": s, "command": std::env::args().skip(1).collect::<Vec<_>>().join(" ") });
                // One score per data set: the plain comparison at the top level, each protocol's
                // under `protocols`; recording one keeps the others.
                let mut metrics = card.metrics.take().filter(|m| m.is_object()).unwrap_or_else(|| json!({}));
                match table.protocol {
                    None => {
                        let kept: Vec<(&str, serde_json::Value)> = ["protocols", "protocols_fixed_camera", "protocols_blind"].into_iter().filter_map(|k| metrics.get(k).cloned().map(|v| (k, v))).collect();
                        metrics = entry;
                        for (k, v) in kept {
                            metrics[k] = v;
                        }
                    }
                    Some(p) => {
                        // A one-camera run is its own data set: it keeps the own-camera figures.
                        let key = match () {
                            _ if blind => "protocols_blind",
                            _ if matches!(data, CompareData::Protocols { fixed_camera: true, .. }) => "protocols_fixed_camera",
                            _ => "protocols",
                        };
                        if !metrics.get(key).is_some_and(|v| v.is_object()) {
                            metrics[key] = json!({});
                        }
                        metrics[key][p.name()] = entry;
                    }
                }
                card.metrics = Some(metrics);
                card.save(&files.card)?;
            }
        }
    }
    if as_json {
        let json_tables: Vec<_> = tables
            .iter()
            .map(|t| {
                let methods: Vec<_> = t.scores.iter().map(|(n, s)| match s {
                    Ok(s) => json!(s),
                    Err(e) => json!({ "method": n, "refused": e }),
                }).collect();
                let mut table = json!({ "data": t.description, "protocol": t.protocol.map(|p| p.name()), "camera": t.camera, "options": options, "methods": methods });
                if !t.scenes.is_empty() {
                    table["scenes"] = t
                        .scenes
                        .iter()
                        .map(|r| {
                            let by_method: serde_json::Map<String, serde_json::Value> = t.scores.iter().zip(&r.scores).map(|((n, _), s)| (n.clone(), s.map_or(serde_json::Value::Null, |[mrae, rmse, sam]| json!({ "mrae": mrae, "rmse": rmse, "sam_deg": sam })))).collect();
                            json!({ "seed": r.seed, "light": r.light, "camera": r.camera, "methods": by_method })
                        })
                        .collect();
                }
                table
            })
            .collect();
        match json_tables.len() {
            1 => print_json(&json_tables[0]),
            _ => print_json(&json!({ "tables": json_tables })),
        }
        return Ok(());
    }
    for (i, t) in tables.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}, camera {}", t.description, t.camera);
        println!("{:<10} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8}", "method", "MRAE", "RMSE", "PSNR", "MPSNR", "SSIM", "SAM°", "consist.", "MRAE×0.5", "MRAE×2", "shuffle", "s/image");
        for (name, s) in &t.scores {
            match s {
                Ok(s) => println!(
                    "{:<10} {:>7.4} {:>7.4} {:>6.2} {:>6.2} {:>6.4} {:>6.2} {:>9.2e} {:>8.4} {:>8.4} {:>8.4} {:>8.3}",
                    s.method, s.mrae, s.rmse, s.psnr, s.mpsnr, s.ssim, s.sam_deg, s.consistency_mrae, s.mrae_half, s.mrae_double, s.mrae_shuffle, s.seconds_per_image
                ),
                Err(e) => println!("{name:<10} cannot run: {e}"),
            }
        }
        if !t.scenes.is_empty() {
            println!("per scene, MRAE of each method (RMSE and SAM in --json):");
            let names: Vec<&str> = t.scores.iter().map(|(n, _)| n.as_str()).collect();
            println!("{:<8} {} {:>width$}  light", "seed", names.iter().map(|n| format!("{n:>10}")).collect::<String>(), "camera", width = 28);
            for r in &t.scenes {
                let cells: String = r.scores.iter().map(|s| s.map_or(format!("{:>10}", "–"), |v| format!("{:>10.4}", v[0]))).collect();
                println!("{:<8} {cells} {:>28}  {}", r.seed, r.camera, r.light);
            }
        }
    }
    Ok(())
}

fn is_rgb_file(p: &Path) -> bool {
    matches!(io::extension(p).as_str(), "png" | "jpg" | "jpeg" | "tif" | "tiff")
}
