//! The command-line face of the library: each subcommand reads its inputs, makes one or two
//! library calls and prints the answer (a table for people, `--json` for programs).

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Array2;
use serde_json::json;

use crate::io::{self, Layout, Loaded, OpenOptions};
use crate::spectral::camera::CameraResponse;
use crate::spectral::{fit, library, realworld, render, scene, unmix};
use crate::{bail_invalid, metrics, Error, Result, RgbImage};

/// Refuse, before any work, a command whose output path names one of its inputs: nothing is
/// ever written over an input file (ARCHITECTURE rule 5).
fn refuse_writing_inputs(inputs: &[&Path], outputs: &[&Path]) -> Result<()> {
    for input in inputs {
        for output in outputs {
            io::atomic::refuse_overwriting_source(Some(input), output)?;
        }
    }
    Ok(())
}

fn open_options(key: Option<String>, layout: Layout) -> OpenOptions {
    OpenOptions { key, layout, ..OpenOptions::default() }
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("JSON values always serialise"));
}

/// `info FILE`: size, wavelengths, value range (whole and per band) and format. A cube is read
/// in one streamed pass with bounded memory (see [`io::source::band_stats`]), whatever its size.
pub fn info(file: &Path, key: Option<String>, layout: Layout, as_json: bool, per_band: bool) -> Result<()> {
    let format = io::detect(file)?;
    let opts = open_options(key, layout);
    let is_rgb = format.is_rgb_image()
        || (format == io::Format::Npy && io::npy::is_rgb_shape(&io::npy::read_header(file)?.shape, layout));
    let report = if is_rgb {
        let Loaded::Rgb(rgb) = io::open_any(file, &opts, false)? else {
            return Err(Error::format(file, "expected an RGB image"));
        };
        let s = crate::cube::value_stats(rgb.data.iter().copied());
        let (min, max, mean) = (s.min, s.max, s.mean);
        json!({
            "file": file, "format": format.name(),
            "rows": rgb.rows(), "cols": rgb.cols(), "bands": 3,
            "wavelengths": [], "min": min, "max": max, "mean": mean,
            "units": "values as stored",
            "encoding_guess": io::image_file::guess_encoding(file)?,
        })
    } else {
        let source = io::open_source(file, &opts)?;
        let stats = io::source::band_stats(&*source, None, &crate::engine::JobContext::silent())?;
        let (bands, rows, cols) = source.shape();
        let meta = source.meta();
        let s = stats.all;
        let band_stats: Vec<serde_json::Value> = stats
            .bands
            .iter()
            .zip(source.wavelengths())
            .enumerate()
            .map(|(i, (b, w))| json!({"band": i, "wavelength": w, "min": b.min, "max": b.max, "mean": b.mean, "std": b.std, "non_finite": b.non_finite}))
            .collect();
        json!({
            "file": file, "format": format.name(), "storage": source.storage(),
            "rows": rows, "cols": cols, "bands": bands,
            "wavelengths": source.wavelengths(), "fwhm": source.fwhm(),
            "min": s.min, "max": s.max, "mean": s.mean, "std": s.std, "non_finite": s.non_finite,
            "band_stats": band_stats,
            "units": meta.units, "scale": meta.scale, "description": meta.description,
        })
    };
    if as_json {
        print_json(&report);
    } else {
        let wl = report["wavelengths"].as_array().map_or(0, |a| a.len());
        println!("{}: {} ({} rows × {} cols × {} bands)", file.display(), format.name(), report["rows"], report["cols"], report["bands"]);
        if wl > 0 {
            println!("wavelengths: {} … {} nm", report["wavelengths"][0], report["wavelengths"][wl - 1]);
        }
        println!("values: min {} max {} mean {}", report["min"], report["max"], report["mean"]);
        if per_band {
            println!("{:>5} {:>10} {:>12} {:>12} {:>12} {:>12} {:>10}", "band", "nm", "min", "max", "mean", "std", "non-finite");
            for b in report["band_stats"].as_array().into_iter().flatten() {
                println!(
                    "{:>5} {:>10} {:>12} {:>12} {:>12.6} {:>12.6} {:>10}",
                    b["band"], b["wavelength"], b["min"], b["max"], b["mean"].as_f64().unwrap_or(f64::NAN), b["std"].as_f64().unwrap_or(f64::NAN), b["non_finite"]
                );
            }
        }
    }
    Ok(())
}

/// `convert IN OUT`. ENVI and `.npy` outputs are written block by block from a source read on
/// demand, so a cube larger than memory converts; `.mat` needs the cube in memory.
pub fn convert(input: &Path, output: &Path, key: Option<String>, layout: Layout) -> Result<()> {
    io::check_cube_output(output)?;
    refuse_writing_inputs(&[input], &[output])?;
    let opts = open_options(key, layout);
    let source = io::open_source(input, &opts)?;
    let (bands, rows, cols) = source.shape();
    match io::extension(output).as_str() {
        "hdr" | "img" | "npy" => io::source::save_streamed(&*source, output, &crate::engine::JobContext::silent())?,
        _ => io::save(&io::source::to_cube(&*source)?, output)?,
    }
    eprintln!("wrote {} ({rows} × {cols} × {bands} bands)", output.display());
    Ok(())
}

/// Settings of the real-world simulation given on the command line.
pub struct RealWorld {
    pub seed: u64,
    pub jpeg_quality: Option<u8>,
}

/// `render CUBE --camera C`.
pub fn render(
    cube_path: &Path,
    camera: &str,
    illuminant: Option<&str>,
    real_world: Option<RealWorld>,
    bits16: bool,
    output: &Path,
) -> Result<()> {
    refuse_writing_inputs(&[cube_path, Path::new(camera)], &[output])?;
    let cube = io::open(cube_path, &OpenOptions::default())?;
    let camera = CameraResponse::parse(camera)?;
    let illuminant = illuminant.map(library::illuminant).transpose()?;
    let mut rgb = render::clean_rgb_lit(&cube, &camera, illuminant.as_ref())?;
    if let Some(rw) = real_world {
        let mut config = realworld::RealWorldConfig { seed: rw.seed, ..Default::default() };
        if rw.jpeg_quality.is_some() {
            config.jpeg_quality = rw.jpeg_quality;
        }
        rgb = realworld::simulate(&rgb, &config)?;
    }
    write_rgb(&rgb, output, bits16)?;
    eprintln!("wrote {} ({} × {}, camera {})", output.display(), rgb.rows(), rgb.cols(), camera.name);
    Ok(())
}

/// Write linear RGB as PNG or as a (rows, cols, 3) float32 .npy, by extension.
fn write_rgb(rgb: &RgbImage, output: &Path, bits16: bool) -> Result<()> {
    match io::extension(output).as_str() {
        "png" => io::image_file::write_png(rgb, output, bits16, false),
        "npy" => io::npy::write_chw_as_hwc(output, rgb.data.view()),
        other => bail_invalid!("{}: cannot write an RGB image as '.{other}' (use .png or .npy)", output.display()),
    }
}

/// `eval PRED GT [--rgb RGB --camera C] [--exclude-bands MASK]`.
pub fn eval(pred: &Path, gt: &Path, rgb: Option<&Path>, camera: Option<&str>, srgb: bool, exclude_bands: Option<&str>, as_json: bool) -> Result<()> {
    let pred_cube = io::open(pred, &OpenOptions::default())?;
    let gt_cube = io::open(gt, &OpenOptions::default())?;
    let mask = exclude_bands.map(|spec| band_mask(spec, gt, &gt_cube.wavelengths)).transpose()?;
    let input = match (rgb, camera) {
        (Some(rgb), Some(camera)) => Some((io::open_rgb(rgb, srgb)?, CameraResponse::parse(camera)?)),
        _ => None,
    };
    let scored = metrics::score_masked(&pred_cube, &gt_cube, input.as_ref().map(|(r, c)| (r, c)), mask.as_ref())
        .map_err(|e| Error::invalid(format!("{} against {}: {e}", pred.display(), gt.display())))?;
    let set = scored.metrics;
    if as_json {
        print_json(&serde_json::to_value(&scored).expect("metrics serialise"));
    } else {
        if scored.bands_scored < pred_cube.bands() {
            println!("bands       {} of {} scored (the mask leaves {} out)", scored.bands_scored, pred_cube.bands(), pred_cube.bands() - scored.bands_scored);
        }
        println!("MRAE        {:.6}", set.mrae);
        println!("RMSE        {:.6}", set.rmse);
        println!("PSNR        {:.3} dB", set.psnr);
        println!("MPSNR       {:.3} dB (mean of per-band PSNR)", set.mpsnr);
        println!("SSIM        {:.6} (mean of per-band SSIM: MSSIM)", set.ssim);
        println!("SAM         {:.4}°", set.sam_deg);
        match set.consistency_mrae {
            Some(c) => println!("consistency {c:.6} (MRAE of C·pred against the input RGB)"),
            None => println!("consistency —  (give --rgb and --camera)"),
        }
    }
    Ok(())
}

/// `--exclude-bands`: [`metrics::BandMask`]'s ranges, and `bbl` for the bands the ground
/// truth's ENVI header marks bad.
fn band_mask(spec: &str, gt: &Path, wavelengths: &[f32]) -> Result<metrics::BandMask> {
    let (bbl, ranges): (Vec<&str>, Vec<&str>) = spec.split(',').map(str::trim).filter(|t| !t.is_empty()).partition(|t| t.eq_ignore_ascii_case("bbl"));
    let mut mask = if ranges.is_empty() && !bbl.is_empty() { metrics::BandMask::default() } else { metrics::BandMask::parse(&ranges.join(","))? };
    if !bbl.is_empty() {
        if io::detect(gt)? != io::Format::Envi {
            return Err(Error::format(gt, "'bbl' is the bad-band list of an ENVI header, and this ground truth is not ENVI"));
        }
        let Some(good) = io::envi::read_header(gt)?.bbl else {
            return Err(Error::format(gt, "its header has no bad-band list (bbl)"));
        };
        // each bad band by its own wavelength (within the 0.01 nm two grids may differ by)
        mask.excluded_nm.extend(good.iter().zip(wavelengths).filter(|(ok, _)| !**ok).map(|(_, &w)| (w - 0.01, w + 0.01)));
    }
    Ok(mask)
}

/// `unmix CUBE`.
pub fn unmix(cube_path: &Path, library_name: &str, materials: &[String], max_k: usize, output: &Path, as_json: bool) -> Result<()> {
    let started = Instant::now();
    let residual_path = sibling(output, "_residual");
    refuse_writing_inputs(&[cube_path, Path::new(library_name)], &[output, &residual_path])?;
    if !matches!(io::extension(output).as_str(), "npy" | "hdr" | "img") {
        bail_invalid!("{}: abundances are written as .npy or ENVI (.hdr)", output.display());
    }
    // Read on demand and written block by block: a cube larger than memory unmixes too.
    let source = io::open_source(cube_path, &OpenOptions::default())?;
    io::source::refuse_writing_over(&*source, output)?;
    io::source::refuse_writing_over(&*source, &residual_path)?;
    let lib = library::parse_library(library_name)?;
    let (all_bands, rows, cols) = source.shape();
    let mut writers: Option<(io::source::CubeWriter, io::source::CubeWriter)> = None;
    let (mut abundance_sums, mut abundance_counts) = (Vec::new(), Vec::new());
    let (mut residual_sum, mut residual_count) = (0f64, 0usize);
    let (names, bands_used) = unmix::unmix_source(&*source, &lib, materials, max_k, &crate::engine::JobContext::silent(), |r0, block| {
        let k = block.names.len();
        if writers.is_none() {
            let description = format!("abundances of {} from unmixing {} over '{}'", block.names.join(", "), cube_path.display(), lib.name);
            let numbers = crate::cube::band_numbers(k);
            let header = io::source::CubeHeader { wavelengths: &numbers, fwhm: None, description: Some(&description), squeeze: false };
            let abundances = io::source::CubeWriter::create(output, (k, rows, cols), &header)?;
            let one = crate::cube::band_numbers(1);
            let header = io::source::CubeHeader { wavelengths: &one, fwhm: None, description: Some("unmixing residual RMSE per pixel"), squeeze: true };
            writers = Some((abundances, io::source::CubeWriter::create(&residual_path, (1, rows, cols), &header)?));
            (abundance_sums, abundance_counts) = (vec![0f64; k], vec![0usize; k]);
        }
        let (abundances, residual) = writers.as_mut().expect("created above");
        abundances.write_rows(r0, &block.abundances)?;
        residual.write_rows(r0, &block.residual.view().insert_axis(ndarray::Axis(0)).to_owned())?;
        for (i, map) in block.abundances.outer_iter().enumerate() {
            for &v in map.iter().filter(|v| v.is_finite()) {
                abundance_sums[i] += v as f64;
                abundance_counts[i] += 1;
            }
        }
        for &v in block.residual.iter().filter(|v| v.is_finite()) {
            residual_sum += v as f64;
            residual_count += 1;
        }
        Ok(())
    })?;
    let (abundances, residual) = writers.ok_or_else(|| Error::invalid("the cube has no rows to unmix"))?;
    abundances.finish()?;
    residual.finish()?;
    if bands_used < all_bands {
        eprintln!(
            "note: library '{}' covers {}..{} nm; unmixing the {bands_used} of {all_bands} bands inside it",
            lib.name,
            lib.wavelengths[0],
            lib.wavelengths[lib.wavelengths.len() - 1],
        );
    }
    // over the pixels that could be unmixed (missing ones are NaN)
    let mean_abundance: Vec<f64> =
        abundance_sums.iter().zip(&abundance_counts).map(|(s, &n)| if n > 0 { s / n as f64 } else { f64::NAN }).collect();
    let mean_residual = if residual_count > 0 { residual_sum / residual_count as f64 } else { f64::NAN };
    let report = json!({
        "library": lib.name, "bands_used": bands_used, "endmembers": names, "mean_abundance": mean_abundance,
        "mean_residual_rmse": mean_residual, "abundances": output, "residual": residual_path,
        "seconds": started.elapsed().as_secs_f64(),
    });
    if as_json {
        print_json(&report);
    } else {
        println!("{} endmembers from '{}':", names.len(), lib.name);
        for (n, a) in names.iter().zip(&mean_abundance) {
            println!("  {a:6.3}  {n}");
        }
        println!("mean residual RMSE {mean_residual:.5}; wrote {} and {}", output.display(), residual_path.display());
    }
    Ok(())
}

/// `out.npy` → `out_residual.npy`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("npy");
    path.with_file_name(format!("{stem}{suffix}.{ext}"))
}

/// `fit-camera CUBE RGB`.
pub fn fit_camera(
    cube_path: &Path,
    rgb_path: &Path,
    srgb: bool,
    smoothness: Option<f64>,
    camera: Option<&str>,
    output: Option<&Path>,
    as_json: bool,
) -> Result<()> {
    if let Some(out) = output {
        refuse_writing_inputs(&[cube_path, rgb_path], &[out])?;
    }
    let cube = io::open(cube_path, &OpenOptions::default())?;
    let rgb = io::open_rgb(rgb_path, srgb)?;
    let fitted = fit::fit_camera(&cube, &rgb, smoothness)?;
    let curve_error = match camera {
        Some(name) => {
            let truth: Array2<f32> = CameraResponse::parse(name)?.on_grid(&cube.wavelengths)?;
            Some(fit::curve_rmse(&fitted.matrix, &truth)?)
        }
        None => None,
    };
    if let Some(out) = output {
        let mut csv = String::from("wavelength,r,g,b\n");
        for (i, wl) in fitted.wavelengths.iter().enumerate() {
            csv.push_str(&format!("{wl},{},{},{}\n", fitted.r[i], fitted.g[i], fitted.b[i]));
        }
        io::atomic::write_bytes_atomically(out, csv.as_bytes())?;
    }
    if as_json {
        let mut v = serde_json::to_value(&fitted).expect("fit serialises");
        v["curve_rmse_vs_camera"] = json!(curve_error);
        print_json(&v);
    } else {
        println!("fitted C (3 × {} bands), smoothness λ = {:e}", cube.bands(), fitted.lambda);
        println!("RGB reproduction: RMSE {:.6}, relative error {:.4}", fitted.rmse, fitted.relative_error);
        if let Some(e) = curve_error {
            println!("curve RMSE against {} (rows normalised to sum 1): {e:.6}", camera.unwrap_or(""));
        }
    }
    Ok(())
}

/// `scene -o DIR`: cube.npy, rgb.png (linear 16-bit), preview.png (sRGB), scene.json.
pub fn scene(seed: u64, size: &str, camera: &str, output: &Path) -> Result<()> {
    let (rows, cols) = parse_size(size)?;
    if output.is_file() {
        bail_invalid!("{}: is a file; scene writes a folder", output.display());
    }
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let camera = CameraResponse::parse(camera)?;
    let config = scene::SceneConfig { camera: camera.clone(), ..scene::SceneConfig::new(seed, rows, cols)? };
    let started = Instant::now();
    let made = scene::generate(&config)?;
    let seconds = started.elapsed().as_secs_f64();
    io::save(&made.cube, output.join("cube.npy"))?;
    io::save(&made.reflectance, output.join("reflectance.npy"))?;
    io::npy::write_chw_as_hwc(&output.join("abundances.npy"), made.abundances.view())?;
    io::image_file::write_png(&made.rgb, &output.join("rgb.png"), true, false)?;
    let preview = render::true_colour_srgb(&made.cube, None)?;
    io::image_file::write_png(&preview, &output.join("preview.png"), false, true)?;
    let description = json!({
        "seed": seed, "rows": rows, "cols": cols, "camera": camera.name,
        "kind": made.kind.name(), "illuminant": made.illuminant, "materials": made.materials,
        "wavelengths": made.cube.wavelengths, "seconds": seconds,
        "files": {
            "cube": "cube.npy (radiance, rows × cols × bands)",
            "reflectance": "reflectance.npy (rows × cols × bands)",
            "abundances": "abundances.npy (rows × cols × materials, in the order of `materials`)",
            "rgb": "rgb.png (linear camera RGB, 16-bit)",
            "preview": "preview.png (sRGB true colour)"
        },
    });
    io::atomic::write_bytes_atomically(&output.join("scene.json"), serde_json::to_string_pretty(&description).expect("json").as_bytes())?;
    println!("scene {seed}: {rows}×{cols}×{} bands in {seconds:.2} s → {}", made.cube.bands(), output.display());
    println!("  {} scene, illuminant {}, {} materials", made.kind.name(), made.illuminant, made.materials.len());
    let s = made.cube.stats();
    println!("  cube values {:.4} … {:.4}; wrote cube.npy, reflectance.npy, abundances.npy, rgb.png, preview.png, scene.json", s.min, s.max);
    Ok(())
}

/// `scene --aerial`: one of inss's aerial scenes, its RGB through `camera` and a preview.
pub fn aerial_scene(seed: u64, size: &str, camera: &str, output: &Path) -> Result<()> {
    let (rows, cols) = parse_size(size)?;
    if rows != cols {
        bail_invalid!("aerial scenes are square: give --size {rows}x{rows}");
    }
    if output.is_file() {
        bail_invalid!("{}: is a file; scene writes a folder", output.display());
    }
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let camera = CameraResponse::parse(camera)?;
    let mut made = crate::spectral::aerial::scene(seed, rows)?;
    // in the units inss trains on: divided by the cube's 99.9th percentile
    crate::train::data::scale_to_peak(&mut made.cube.data);
    io::save(&made.cube, output.join("cube.hdr"))?;
    let rgb = crate::RgbImage::new(render::project(camera.on_grid(&made.cube.wavelengths)?.view(), made.cube.data.view())?)?;
    io::image_file::write_png(&rgb, &output.join("rgb.png"), true, false)?;
    io::image_file::write_png(&render::true_colour_srgb(&made.cube, None)?, &output.join("preview.png"), false, true)?;
    let cover: Vec<f32> = made.cover.iter().map(|&c| c as f32).collect();
    io::npy::write_f32(&output.join("cover.npy"), &[rows, cols], &cover)?;
    let covers: serde_json::Map<String, serde_json::Value> = crate::spectral::aerial::COVERS.iter().zip(made.cover_shares()).map(|(n, share)| (n.to_string(), json!(share))).collect();
    let description = json!({
        "seed": seed, "rows": rows, "cols": cols, "camera": camera.name, "kind": "aerial",
        "library": crate::spectral::aerial::LIBRARY, "sun": crate::spectral::aerial::SUN, "cover": covers, "cover_classes": crate::spectral::aerial::COVERS,
        "files": { "cube": "cube.hdr + cube.img (ENVI with its wavelengths; radiance divided by its 99.9th percentile, as inss trains)", "rgb": "rgb.png (linear camera RGB of that cube, 16-bit; the brightest 0.1 % may clip at 1)", "preview": "preview.png (sRGB true colour)", "cover": "cover.npy (rows × cols float32: each pixel's dominant land cover, an index into cover_classes)" },
    });
    io::atomic::write_bytes_atomically(&output.join("scene.json"), serde_json::to_string_pretty(&description).expect("json").as_bytes())?;
    println!("aerial scene {seed}: {rows}×{cols}×{} bands ({:.0}-{:.0} nm) → {}", made.cube.bands(), made.cube.wavelengths[0], made.cube.wavelengths[made.cube.bands() - 1], output.display());
    Ok(())
}

/// `world`: a grid of true-colour previews of `count` scenes of a protocol's test world
/// (`in-distribution` shows the training world's kind of scene), or of inss's aerial scenes
/// when `protocol` is None; one line per scene on stdout.
pub fn world_grid(protocol: Option<&str>, seed: u64, count: usize, size: usize, output: &Path) -> Result<()> {
    use crate::train::world::{scene, Protocol};
    let protocol = protocol.map(Protocol::parse).transpose()?;
    if !(1..=256).contains(&count) {
        bail_invalid!("--count must be 1..=256, got {count}");
    }
    let per_row = (count as f64).sqrt().ceil() as usize;
    let rows_of_tiles = count.div_ceil(per_row);
    let gap = 4;
    let (h, w) = (rows_of_tiles * (size + gap) - gap, per_row * (size + gap) - gap);
    let mut grid = ndarray::Array3::<f32>::ones((3, h, w));
    for i in 0..count {
        let seed = seed + i as u64;
        let (cube, line) = match protocol {
            Some(p) => {
                let s = scene(p.test_world(), seed, size)?;
                (crate::Cube::new(s.cube, crate::default_wavelengths())?, format!("light {}; camera {}", s.light, s.camera.name))
            }
            None => {
                let s = crate::spectral::aerial::scene(seed, size)?;
                let covers = crate::spectral::aerial::COVERS.iter().zip(s.cover_shares()).map(|(n, share)| format!("{n} {:.0} %", 100.0 * share)).collect::<Vec<_>>().join(", ");
                (s.cube, covers)
            }
        };
        let preview = render::true_colour_srgb(&cube, None)?;
        let (r0, c0) = ((i / per_row) * (size + gap), (i % per_row) * (size + gap));
        grid.slice_mut(ndarray::s![.., r0..r0 + size, c0..c0 + size]).assign(&preview.data);
        println!("scene {seed}: {line}");
    }
    io::image_file::write_png(&crate::RgbImage::new(grid)?, output, false, true)?;
    let what = protocol.map_or("aerial scenes".to_string(), |p| format!("protocol {}", p.name()));
    println!("wrote {} ({count} scenes of {size}x{size}, {what})", output.display());
    Ok(())
}

/// "512x482" → (512, 482).
pub fn parse_size(size: &str) -> Result<(usize, usize)> {
    let parts: Vec<&str> = size.split(['x', 'X', '×']).collect();
    match parts.as_slice() {
        [r, c] => match (r.trim().parse::<usize>(), c.trim().parse::<usize>()) {
            (Ok(r), Ok(c)) if r > 0 && c > 0 && r <= 16384 && c <= 16384 => Ok((r, c)),
            _ => bail_invalid!("size '{size}' must be ROWSxCOLS with each between 1 and 16384"),
        },
        _ => bail_invalid!("size '{size}' must be ROWSxCOLS, e.g. 256x256"),
    }
}

/// `assets`.
pub fn assets(as_json: bool) -> Result<()> {
    let list = library::list_assets();
    if as_json {
        print_json(&serde_json::to_value(&list).expect("assets serialise"));
    } else {
        for a in &list {
            println!("{:<12} {:<28} {}  [{}]", a.kind, a.name, a.description, a.source);
        }
    }
    Ok(())
}

/// The benchmark suites.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BenchSuite {
    /// Opening cubes (ENVI, .npy) against numpy, all metrics, SSIM against scikit-image,
    /// unmixing.
    Io,
    /// Reconstruction: every method on a 482×512 image, the U-Net's forward and training step
    /// (for the PyTorch comparison), peak memory, and a per-op profile.
    Recon,
    /// Fusion (UAL) on a 256×256, ×8 pair: where an adaptation step's time goes, and the
    /// default `fuse` against the 5-minute goal (`--suite whole` also runs it whole).
    Fusion,
    /// A cube larger than memory (`--file`, made first with `--create GIB`): first image, band
    /// switch, spectrum pick, a full-resolution tile and `info`, with peak memory, against
    /// Spectral Python's memmap on the same file.
    Large,
}

/// Options of `bench large`.
pub struct LargeBench {
    pub file: Option<PathBuf>,
    /// Write a synthetic cube of this many GiB at `file` first.
    pub create_gib: Option<f64>,
    pub interleave: String,
}

/// `bench SUITE`: prints one JSON object.
pub fn bench(suite: BenchSuite, repeats: usize, part: &str, model: Option<&Path>, large: &LargeBench, device: &str) -> Result<()> {
    let device = crate::recon::device::parse_device(device)?;
    if !device.is_cpu() && matches!(suite, BenchSuite::Large | BenchSuite::Io) {
        return Err(Error::invalid("bench large and bench io read files and run no model: --device applies to recon and fusion"));
    }
    let report = match suite {
        BenchSuite::Large => {
            let file = large.file.as_deref().ok_or_else(|| Error::invalid("bench large needs --file CUBE.hdr (add --create GIB to write one)"))?;
            if let Some(gib) = large.create_gib {
                let interleave = match large.interleave.to_ascii_lowercase().as_str() {
                    "bsq" => crate::io::envi::Interleave::Bsq,
                    "bil" => crate::io::envi::Interleave::Bil,
                    "bip" => crate::io::envi::Interleave::Bip,
                    other => return Err(Error::invalid(format!("unknown interleave '{other}' (expected bsq, bil or bip)"))),
                };
                let t = Instant::now();
                crate::bench::large::create(file, gib, interleave)?;
                eprintln!("wrote {} ({gib} GiB, {}) in {:.1} s", file.display(), large.interleave, t.elapsed().as_secs_f64());
            }
            crate::bench::large::large_suite(file, repeats.max(1))?
        }
        BenchSuite::Io => crate::bench::io_suite(repeats.max(1))?,
        BenchSuite::Recon => crate::bench::recon::recon_suite(repeats.max(1), part, model, &device)?,
        BenchSuite::Fusion => match part {
            "all" | "whole" => crate::bench::fusion::fusion_suite(repeats.max(1), model, part == "whole", &device)?,
            other => return Err(Error::invalid(format!("unknown fusion bench part '{other}' (expected all or whole)"))),
        },
    };
    if part == "parity" {
        // The PyTorch script reads the last line: one compact JSON object.
        println!("{}", serde_json::to_string(&report).map_err(|e| Error::invalid(e.to_string()))?);
    } else {
        print_json(&report);
    }
    Ok(())
}

mod fusion;
mod recon;
mod usr;
pub use fusion::{compare_fusion, degrade, fuse, CompareFusionArgs, DegradeArgs, FuseArgs};
pub use usr::{estimate_camera, EstimateCameraArgs};
pub use recon::{check_device, compare, methods, reconstruct, train, CompareData, ReconstructArgs, TrainArgs};
