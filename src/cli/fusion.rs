//! The fusion commands: `degrade` (the simulator that makes test pairs) and `fuse`.

use std::io::IsTerminal;
use std::path::Path;

use serde_json::json;

use super::{print_json, refuse_writing_inputs, write_rgb};
use crate::cube::Cube;
use crate::engine::{CancelToken, JobContext};
use crate::io::{self, OpenOptions};
use crate::recon::device::parse_device;
use crate::recon::fusion::{fuse as run_fuse, FuseOptions, FuseStep, FusionModel, KernelMode, SubspaceChoice};
use crate::rgb::RgbImage;
use crate::spectral::camera::CameraResponse;
use crate::spectral::degrade::{BlurKernel, Degradation};
use crate::spectral::render;
use crate::{bail_invalid, Error, Result};

pub struct DegradeArgs<'a> {
    pub cube: &'a Path,
    pub scale: usize,
    pub kernel: &'a str,
    pub snr_db: Option<f64>,
    pub seed: u64,
    pub camera: &'a str,
    pub output: &'a Path,
    pub rgb_out: Option<&'a Path>,
    pub kernel_out: Option<&'a Path>,
}

/// `degrade CUBE --scale S [--kernel SPEC] [--snr DB] -o LR [--rgb-out HR] [--kernel-out K]`.
pub fn degrade(a: DegradeArgs) -> Result<()> {
    let mut inputs = vec![a.cube];
    if a.kernel.to_ascii_lowercase().ends_with(".npy") {
        inputs.push(Path::new(a.kernel));
    }
    let outputs: Vec<&Path> = [Some(a.output), a.rgb_out, a.kernel_out].into_iter().flatten().collect();
    refuse_writing_inputs(&inputs, &outputs)?;
    io::check_cube_output(a.output)?;
    let cube = io::open(a.cube, &OpenOptions::default())?;
    let kernel = BlurKernel::parse(a.kernel)?;
    let degradation = Degradation { kernel: kernel.clone(), scale: a.scale, snr_db: a.snr_db, seed: a.seed };
    let lr = degradation.apply(cube.data.view()).map_err(|e| Error::invalid(format!("{}: {e}", a.cube.display())))?;
    let mut lr = Cube::new(lr, cube.wavelengths.clone())?;
    lr.meta.units = cube.meta.units.clone();
    lr.meta.description = Some(format!("degraded x{} by {}{}", a.scale, a.kernel, a.snr_db.map(|s| format!(", {s} dB SNR")).unwrap_or_default()));
    io::save(&lr, a.output)?;
    if let Some(path) = a.rgb_out {
        let camera = CameraResponse::parse(a.camera)?;
        write_rgb(&render::clean_rgb(&cube, &camera)?, path, true)?;
    }
    if let Some(path) = a.kernel_out {
        let w = kernel.weights();
        io::npy::write_f32(path, &[w.nrows(), w.ncols()], &w.iter().copied().collect::<Vec<_>>())?;
    }
    eprintln!(
        "wrote {} ({} × {} px, {} bands) from {} × {} px{}",
        a.output.display(),
        lr.rows(),
        lr.cols(),
        lr.bands(),
        cube.rows(),
        cube.cols(),
        a.rgb_out.map(|p| format!(", and the RGB {}", p.display())).unwrap_or_default()
    );
    Ok(())
}

pub struct FuseArgs<'a> {
    pub rgb: &'a Path,
    pub cube: &'a Path,
    pub camera: &'a str,
    pub scale: usize,
    pub steps: usize,
    pub model: Option<&'a Path>,
    pub predefined_kernel: bool,
    pub no_fusion: bool,
    /// "auto" (the image's channels + 1), "off" or a rank.
    pub subspace: &'a str,
    pub lr_adapt: Option<f64>,
    pub lr_kernel: Option<f64>,
    pub srgb: bool,
    pub seed: u64,
    pub device: &'a str,
    pub output: &'a Path,
    pub kernel_out: Option<&'a Path>,
    pub json: bool,
}

/// `fuse HR_RGB LR_CUBE --camera C --scale S -o OUT [--steps N] [--kernel-out K.npy]`.
pub fn fuse(a: FuseArgs) -> Result<()> {
    let mut inputs = vec![a.rgb, a.cube];
    inputs.extend(a.model);
    let outputs: Vec<&Path> = [Some(a.output), a.kernel_out].into_iter().flatten().collect();
    refuse_writing_inputs(&inputs, &outputs)?;
    io::check_cube_output(a.output)?;
    if let Some(k) = a.kernel_out {
        if io::extension(k) != "npy" {
            bail_invalid!("{}: the kernel is written as .npy", k.display());
        }
    }
    let device = parse_device(a.device)?;
    let rgb: RgbImage = io::open_rgb(a.rgb, a.srgb)?;
    let lr = io::open(a.cube, &OpenOptions::default())?;
    let camera = CameraResponse::parse(a.camera)?.on_grid(&lr.wavelengths).map_err(|e| Error::invalid(format!("camera {} on {}'s wavelengths: {e}", a.camera, a.cube.display())))?;
    let model = if a.no_fusion {
        None
    } else {
        let path = match a.model {
            Some(p) => p.to_path_buf(),
            None => crate::recon::fusion::shipped_model().ok_or_else(|| Error::invalid("no pretrained fusion module found (models/ual-fusion.json); give --model or train one with `train --method ual`"))?,
        };
        let model = FusionModel::load(&path, &device)?;
        if model.card.scale.is_some_and(|s| s != a.scale) {
            eprintln!("note: the fusion module was pretrained at ×{}, this pair is ×{}", model.card.scale.unwrap_or_default(), a.scale);
        }
        Some(model)
    };
    let mut opts = FuseOptions::new(a.scale, a.steps).with_rates(a.lr_adapt, a.lr_kernel)?;
    opts.seed = a.seed;
    let choice = SubspaceChoice::parse(a.subspace)?;
    opts.subspace = choice.rank(&camera);
    if choice == SubspaceChoice::Auto && opts.subspace.is_none() {
        eprintln!("note: camera {} is blind to some of {}'s bands, so the scene-subspace layer is off (--subspace RANK forces it)", a.camera, a.cube.display());
    }
    if a.predefined_kernel {
        opts.kernel = KernelMode::Predefined;
    }
    let (tx, rx) = crossbeam_channel::unbounded::<FuseStep>();
    let json_lines = a.json;
    let bar = !a.json && std::io::stderr().is_terminal();
    let printer = std::thread::spawn(move || {
        for s in rx.iter() {
            if json_lines {
                println!("{}", json!({"event": "step", "step": s.step, "total_steps": s.total_steps, "loss": s.loss, "loss_msi": s.loss_msi, "loss_lr": s.loss_lr}));
            } else if bar {
                eprint!("\radapting {}/{} loss {:.5} (RGB {:.5}, cube {:.5})   ", s.step, s.total_steps, s.loss, s.loss_msi, s.loss_lr);
            } else if s.step % 50 == 0 || s.step == s.total_steps {
                eprintln!("step {}/{} loss {:.5}", s.step, s.total_steps, s.loss);
            }
        }
    });
    let start = std::time::Instant::now();
    let job = JobContext::new(CancelToken::new(), |_, _| {});
    let result = run_fuse(model.as_ref(), &rgb.data, &lr, &camera, &opts, &device, Some(&tx), &job)
        .map_err(|e| Error::invalid(format!("{} with {}: {e}", a.rgb.display(), a.cube.display())));
    drop(tx);
    let _ = printer.join();
    let fused = result?;
    if bar {
        eprintln!();
    }
    io::save(&fused.cube, a.output)?;
    if let Some(path) = a.kernel_out {
        let k = &fused.kernel;
        io::npy::write_f32(path, &[k.nrows(), k.ncols()], &k.iter().copied().collect::<Vec<_>>())?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let last = fused.steps.last().copied();
    if a.json {
        print_json(&json!({
            "event": "finished",
            "output": a.output,
            "rows": fused.cube.rows(),
            "cols": fused.cube.cols(),
            "bands": fused.cube.bands(),
            "steps": opts.steps,
            "kernel": opts.kernel,
            "fusion_module": !a.no_fusion,
            "subspace_rank": opts.subspace,
            "final_loss": last.map(|s| s.loss),
            "seconds": seconds,
            "kernel_out": a.kernel_out,
        }));
    } else {
        println!(
            "fused {} and {} into {} × {} px × {} bands in {:.1} s ({} adaptation steps{}{}), wrote {}",
            a.rgb.display(),
            a.cube.display(),
            fused.cube.rows(),
            fused.cube.cols(),
            fused.cube.bands(),
            seconds,
            opts.steps,
            last.map(|s| format!(", final loss {:.5}", s.loss)).unwrap_or_default(),
            opts.subspace.map(|r| format!(", scene subspace of rank {r}")).unwrap_or_default(),
            a.output.display()
        );
    }
    Ok(())
}

pub struct CompareFusionArgs<'a> {
    pub scenes: usize,
    pub size: usize,
    pub scale: usize,
    pub snr_db: f64,
    pub steps: usize,
    pub model: Option<&'a Path>,
    pub variants: Option<&'a str>,
    /// held-out, or a protocol's name.
    pub world: &'a str,
    pub lr_adapt: Option<f64>,
    pub lr_kernel: Option<f64>,
    pub device: &'a str,
    pub json: bool,
}

/// `compare-fusion`: bicubic, the fusion module alone, UAL and its ablations on the same
/// held-out pairs.
pub fn compare_fusion(a: CompareFusionArgs) -> Result<()> {
    use crate::recon::fusion::{evaluate, FusionEvalConfig, Variant};
    let variants: Vec<Variant> = match a.variants {
        None => Variant::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|name| {
                Variant::ALL.into_iter().find(|v| v.name() == name.trim()).ok_or_else(|| {
                    let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
                    Error::invalid(format!("unknown variant '{name}' (expected {})", names.join(", ")))
                })
            })
            .collect::<Result<_>>()?,
    };
    let device = parse_device(a.device)?;
    let needs_model = variants.iter().any(|v| !matches!(v, Variant::Bicubic | Variant::UalNoFusion | Variant::Subspace));
    let model = match (a.model, needs_model) {
        (Some(p), _) => Some(FusionModel::load(p, &device)?),
        (None, true) => Some(FusionModel::load(&crate::recon::fusion::shipped_model().ok_or_else(|| Error::invalid("no pretrained fusion module found (models/ual-fusion.json); give --model"))?, &device)?),
        (None, false) => None,
    };
    let rates = FuseOptions::new(a.scale, a.steps).with_rates(a.lr_adapt, a.lr_kernel)?;
    let protocol = match a.world {
        "held-out" => None,
        name => Some(crate::train::world::Protocol::parse(name).map_err(|_| Error::invalid(format!("unknown world '{name}' (expected held-out, in-distribution, cross-library, cross-camera or cross-illuminant)")))?),
    };
    let cfg = FusionEvalConfig { scenes: a.scenes, size: a.size, scale: a.scale, snr_db: a.snr_db, steps: a.steps, rates: (rates.lr_adapt, rates.lr_kernel), variants, protocol };
    let job = JobContext::new(CancelToken::new(), |_, what: &str| {
        if std::io::stderr().is_terminal() {
            eprint!("\r{what}                    ");
        }
    });
    let scores = evaluate(model.as_ref(), &cfg, &device, &job)?;
    if a.json {
        print_json(&json!({ "config": cfg, "model": model.as_ref().map(|m| &m.card.name), "scores": scores }));
        return Ok(());
    }
    eprintln!();
    println!(
        "{} test scenes of {}, {}² px, ×{}, test kernels {}, {} dB SNR, {} adaptation steps",
        cfg.scenes,
        cfg.world_name(),
        cfg.size,
        cfg.scale,
        crate::spectral::degrade::BlurKernel::test_set().iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" / "),
        cfg.snr_db,
        cfg.steps
    );
    println!("{:<24} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>9}", "variant", "MRAE", "RMSE", "PSNR", "SSIM", "SAM°", "kernel", "s/image");
    for s in &scores {
        println!(
            "{:<24} {:>8.4} {:>8.4} {:>8.2} {:>7.4} {:>7.2} {:>8} {:>9.1}",
            s.variant,
            s.mrae,
            s.rmse,
            s.psnr,
            s.ssim,
            s.sam_deg,
            s.kernel_similarity.map(|k| format!("{k:.3}")).unwrap_or_else(|| "-".into()),
            s.seconds_per_image
        );
    }
    Ok(())
}
