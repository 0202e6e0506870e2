//! Cubes read on demand (`io::source`): every interleave and sample type reads the same numbers
//! as a whole read, in any window, band order and step; streamed statistics and conversions
//! match the in-memory ones.

use std::path::{Path, PathBuf};

use ndarray::{s, Array3};
use spectral_studio::engine::JobContext;
use spectral_studio::io::{self, source, Layout, OpenOptions};
use spectral_studio::Rect;

/// value(b, r, c): distinct, with a fraction, and negative somewhere.
fn value(b: usize, r: usize, c: usize) -> f64 {
    (b * 97 + r * 13 + c * 7) as f64 % 251.0 - 20.0
}

/// Write an ENVI file of (bands, rows, cols) in `interleave`, with `code` the data type and
/// big-endian samples when asked; `extra` lines go into the header.
fn write_envi(dir: &Path, name: &str, shape: (usize, usize, usize), interleave: &str, code: u32, big: bool, extra: &str) -> PathBuf {
    let (nb, nr, nc) = shape;
    let mut order = Vec::new();
    match interleave {
        "bsq" => (0..nb).for_each(|b| (0..nr).for_each(|r| (0..nc).for_each(|c| order.push((b, r, c))))),
        "bil" => (0..nr).for_each(|r| (0..nb).for_each(|b| (0..nc).for_each(|c| order.push((b, r, c))))),
        _ => (0..nr).for_each(|r| (0..nc).for_each(|c| (0..nb).for_each(|b| order.push((b, r, c))))),
    }
    let mut bytes = vec![0u8; 16]; // a header offset of 16
    for (b, r, c) in order {
        let v = value(b, r, c);
        let mut push = |le: Vec<u8>| {
            let mut x = le;
            if big {
                x.reverse();
            }
            bytes.extend(x);
        };
        match code {
            2 => push((v as i16).to_le_bytes().to_vec()),
            12 => push(((v + 20.0) as u16).to_le_bytes().to_vec()),
            4 => push(((v / 8.0) as f32).to_le_bytes().to_vec()),
            5 => push((v / 8.0).to_le_bytes().to_vec()),
            _ => unreachable!(),
        }
    }
    let data = dir.join(format!("{name}.img"));
    std::fs::write(&data, bytes).unwrap();
    let wl: Vec<String> = (0..nb).map(|b| format!("{}", 0.4 + 0.01 * b as f64)).collect();
    let header = format!(
        "ENVI\nsamples = {nc}\nlines = {nr}\nbands = {nb}\nheader offset = 16\ndata type = {code}\ninterleave = {interleave}\n\
         byte order = {}\nwavelength units = Micrometers\nwavelength = {{{}}}\n{extra}",
        u8::from(big),
        wl.join(", ")
    );
    std::fs::write(dir.join(format!("{name}.hdr")), header).unwrap();
    data
}

/// NaN-aware equality of two arrays.
fn same(a: &Array3<f32>, b: &Array3<f32>, what: &str) {
    assert_eq!(a.dim(), b.dim(), "{what}: shape");
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        assert!(x == y || (x.is_nan() && y.is_nan()), "{what}: element {i}: {x} vs {y}");
    }
}

/// Every read the studio and the CLI make, checked against the whole cube read by `io::open`.
fn check_source(path: &Path, layout: Layout) {
    let opts = OpenOptions { layout, ..OpenOptions::default() };
    let whole = io::open(path, &opts).unwrap();
    let src = io::open_source(path, &opts).unwrap();
    assert!(src.is_lazy(), "{}: {}", path.display(), src.storage());
    assert_eq!(src.shape(), whole.data.dim());
    assert_eq!(src.wavelengths(), whole.wavelengths.as_slice());
    let (nb, nr, nc) = whole.data.dim();
    let name = path.display().to_string();
    same(&source::to_cube(&*src).unwrap().data, &whole.data, &name);
    // windows, steps and band orders
    let bands_sets: Vec<Vec<usize>> = vec![(0..nb).collect(), vec![nb - 1, 0], vec![1]];
    for bands in &bands_sets {
        for (rows, cols, step) in [(0..nr, 0..nc, 1), (1..nr, 2..nc - 1, 1), (0..nr, 0..nc, 2), (1..nr - 1, 1..nc, 3), (2..3, 4..5, 1)] {
            let got = src.read(bands, rows.clone(), cols.clone(), step).unwrap();
            let mut want = Array3::zeros(got.dim());
            for (i, &b) in bands.iter().enumerate() {
                want.slice_mut(s![i, .., ..]).assign(&whole.data.slice(s![b, rows.start..rows.end;step, cols.start..cols.end;step]));
            }
            same(&got, &want, &format!("{name} bands {bands:?} rows {rows:?} cols {cols:?} step {step}"));
        }
    }
    assert_eq!(source::spectrum(&*src, 3, 2).unwrap(), whole.spectrum(3, 2));
    // the overview, at a budget that forces a step of 2
    let ov = source::overview(&*src, nr.div_ceil(2) * nc.div_ceil(2), &JobContext::silent()).unwrap();
    assert_eq!(ov.step, 2);
    same(&ov.cube.data, &whole.data.slice(s![.., ..;2, ..;2]).to_owned(), &format!("{name} overview"));
    // statistics, per band and over a region
    let stats = source::band_stats(&*src, None, &JobContext::silent()).unwrap();
    for b in 0..nb {
        let want = spectral_studio::cube::value_stats(whole.data.slice(s![b, .., ..]).iter().copied());
        assert_eq!((stats.bands[b].min, stats.bands[b].max, stats.bands[b].non_finite), (want.min, want.max, want.non_finite), "{name} band {b}");
        assert!((stats.bands[b].mean - want.mean).abs() <= 1e-9 * want.mean.abs().max(1.0), "{name} band {b} mean");
        assert!((stats.bands[b].std - want.std).abs() <= 1e-6 * want.std.max(1.0), "{name} band {b} std");
    }
    let rect = Rect { row: 1, col: 2, height: 3, width: 4 };
    let (mean, _) = whole.roi_stats(rect).unwrap();
    let roi = source::band_stats(&*src, Some(rect), &JobContext::silent()).unwrap();
    for (m, s) in mean.iter().zip(&roi.bands) {
        assert!((*m as f64 - s.mean).abs() < 1e-4 * (m.abs() as f64).max(1.0), "{name} region mean {m} vs {}", s.mean);
    }
    // bad requests are errors, not panics
    assert!(src.read(&[nb], 0..1, 0..1, 1).is_err());
    assert!(src.read(&[0], 0..nr + 1, 0..1, 1).is_err());
    assert!(src.read(&[0], 0..1, 0..1, 0).is_err());
}

#[test]
fn every_interleave_and_sample_type_reads_like_a_whole_read() {
    let dir = tempfile::tempdir().unwrap();
    let shape = (5, 7, 9);
    for interleave in ["bsq", "bil", "bip"] {
        for (code, big) in [(2, false), (2, true), (12, false), (4, false), (4, true), (5, false)] {
            let name = format!("{interleave}-{code}-{big}");
            let path = write_envi(dir.path(), &name, shape, interleave, code, big, "");
            check_source(&path, Layout::Hwc);
        }
        // the ignore value becomes NaN and the scale divides, as in a whole read
        let path = write_envi(dir.path(), &format!("{interleave}-fix"), shape, interleave, 2, false, "data ignore value = 77\nreflectance scale factor = 4\n");
        let whole = io::open(&path, &OpenOptions::default()).unwrap();
        assert!(whole.data.iter().any(|v| v.is_nan()), "the fixture holds the ignore value");
        check_source(&path, Layout::Hwc);
        let stats = source::band_stats(&*io::open_source(&path, &OpenOptions::default()).unwrap(), None, &JobContext::silent()).unwrap();
        assert_eq!(stats.all.non_finite, whole.data.iter().filter(|v| v.is_nan()).count());
    }
}

#[test]
fn npy_cubes_read_in_place_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let (nb, nr, nc) = (4, 6, 8);
    let hwc: Vec<f32> = (0..nr).flat_map(|r| (0..nc).flat_map(move |c| (0..nb).map(move |b| value(b, r, c) as f32))).collect();
    let chw: Vec<f32> = (0..nb).flat_map(|b| (0..nr).flat_map(move |r| (0..nc).map(move |c| value(b, r, c) as f32))).collect();
    let p = dir.path().join("hwc.npy");
    io::npy::write_f32(&p, &[nr, nc, nb], &hwc).unwrap();
    check_source(&p, Layout::Hwc);
    let p = dir.path().join("chw.npy");
    io::npy::write_f32(&p, &[nb, nr, nc], &chw).unwrap();
    check_source(&p, Layout::Chw);
}

#[test]
fn hdf5_datasets_in_c_order_read_in_place_and_matlab_arrays_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (nb, nr, nc) = (4, 6, 8);
    let hwc: Vec<f32> = (0..nr).flat_map(|r| (0..nc).flat_map(move |c| (0..nb).map(move |b| value(b, r, c) as f32))).collect();
    let chw: Vec<f32> = (0..nb).flat_map(|b| (0..nr).flat_map(move |r| (0..nc).map(move |c| value(b, r, c) as f32))).collect();
    for (name, data, shape, layout) in [("hwc.h5", &hwc, [nr, nc, nb], Layout::Hwc), ("chw.h5", &chw, [nb, nr, nc], Layout::Chw)] {
        let mut builder = hdf5_pure::FileBuilder::new();
        builder.create_dataset("cube").with_f32_data(data).with_shape(&shape.map(|d| d as u64));
        builder.create_dataset("bands").with_f64_data(&[450.0, 500.0, 550.0, 600.0]).with_shape(&[4]);
        let path = dir.path().join(name);
        builder.write(&path).unwrap();
        check_source(&path, layout);
        assert_eq!(io::open_source(&path, &OpenOptions { layout, ..OpenOptions::default() }).unwrap().wavelengths(), &[450.0, 500.0, 550.0, 600.0]);
    }
    // a MATLAB v7.3 file (column-major) is read whole, and reads the same
    let cube = mixed_cube(7, 5);
    let path = dir.path().join("matlab.mat");
    io::save(&cube, &path).unwrap();
    let src = io::open_source(&path, &OpenOptions::default()).unwrap();
    assert!(!src.is_lazy());
    assert_eq!(source::to_cube(&*src).unwrap().data, cube.data);
}

#[test]
fn streamed_conversion_writes_what_a_whole_save_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_envi(dir.path(), "in", (6, 11, 5), "bip", 2, true, "reflectance scale factor = 10\n");
    let whole = io::open(&path, &OpenOptions::default()).unwrap();
    let src = io::open_source(&path, &OpenOptions::default()).unwrap();
    for out in ["out.hdr", "out.npy"] {
        let out = dir.path().join(out);
        source::save_streamed(&*src, &out, &JobContext::silent()).unwrap();
        let back = io::open(&out, &OpenOptions::default()).unwrap();
        same(&back.data, &whole.data, &out.display().to_string());
        if out.extension().unwrap() == "hdr" {
            assert_eq!(back.wavelengths, whole.wavelengths);
        }
    }
    // nothing is written over the input, under either of its names
    for target in [path.clone(), path.with_extension("hdr")] {
        let err = source::save_streamed(&*src, &target, &JobContext::silent()).unwrap_err().to_string();
        assert!(err.contains("refusing to write over the input"), "{err}");
    }
    assert_eq!(io::open(&path, &OpenOptions::default()).unwrap().data, whole.data);
    // a cancelled conversion leaves no file behind
    let job = JobContext::silent();
    job.cancel.cancel();
    assert!(source::save_streamed(&*src, &dir.path().join("cancelled.npy"), &job).is_err());
    assert!(!dir.path().join("cancelled.npy").exists());
}

#[test]
fn a_data_file_shorter_than_its_header_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_envi(dir.path(), "short", (3, 4, 5), "bil", 4, false, "");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 4).unwrap();
    let err = io::open_source(&path, &OpenOptions::default()).err().expect("a truncated file is an error").to_string();
    assert!(err.contains("short.img") && err.contains("truncated"), "{err}");
}

/// Reflectance-like cube of `rows` × `cols` on the default grid: three Munsell chips mixed with
/// abundances that vary smoothly across the image.
fn mixed_cube(rows: usize, cols: usize) -> spectral_studio::Cube {
    use spectral_studio::spectral::library;
    let lib = library::library("munsell").unwrap();
    let wl = spectral_studio::default_wavelengths();
    let spectra = lib.resample(&wl).unwrap().spectra;
    let picks = [10, 400, 900];
    let data = Array3::from_shape_fn((wl.len(), rows, cols), |(b, r, c)| {
        let a0 = 0.2 + 0.6 * r as f32 / rows as f32;
        let a1 = (1.0 - a0) * c as f32 / cols as f32;
        let a2 = 1.0 - a0 - a1;
        a0 * spectra[[picks[0], b]] + a1 * spectra[[picks[1], b]] + a2 * spectra[[picks[2], b]]
    });
    spectral_studio::Cube::new(data, wl).unwrap()
}

#[test]
fn unmixing_block_by_block_gives_the_whole_cube_answer() {
    use spectral_studio::spectral::{library, unmix};
    let dir = tempfile::tempdir().unwrap();
    // 31 bands × 300 × 300 float32 = 11 MB: two blocks of the streamed pass
    let cube = mixed_cube(300, 300);
    let path = dir.path().join("mix.hdr");
    io::save(&cube, &path).unwrap();
    let lib = library::library("munsell").unwrap();
    let (whole, _) = unmix::unmix_with_library(&cube, &lib, &[], 4).unwrap();
    let src = io::open_source(&path, &OpenOptions::default()).unwrap();
    let mut got = Array3::<f32>::from_elem(whole.abundances.dim(), f32::NAN);
    let mut blocks = 0;
    let (names, bands) = unmix::unmix_source(&*src, &lib, &[], 4, &JobContext::silent(), |r0, part| {
        let n = part.abundances.dim().1;
        got.slice_mut(s![.., r0..r0 + n, ..]).assign(&part.abundances);
        blocks += 1;
        Ok(())
    })
    .unwrap();
    assert!(blocks >= 2, "{blocks} block(s)");
    assert_eq!((names, bands), (whole.names.clone(), 31));
    same(&got, &whole.abundances, "abundances");
}

#[test]
fn reconstruction_tile_by_tile_gives_the_whole_picture_answer() {
    use spectral_studio::recon::{self, registry, streamed, ReconOptions};
    use spectral_studio::spectral::{camera::CameraResponse, render};
    let dir = tempfile::tempdir().unwrap();
    let camera = CameraResponse::builtin("canon-eos-5d-mark-ii").unwrap();
    let rgb = render::clean_rgb_lit(&mixed_cube(120, 260), &camera, None).unwrap();
    let rgb_path = dir.path().join("rgb.npy");
    io::npy::write_chw_as_hwc(&rgb_path, rgb.data.view()).unwrap();
    let src = io::open_rgb_source(&rgb_path).unwrap();
    let device = candle_core::Device::Cpu;
    // pca is pixel by pixel; mscnn (camera-aware, reading the picture's light) needs context
    for (method, tolerance, outputs) in [("pca", 0.0, &["out.hdr", "out.npy"][..]), ("mscnn", 2e-5, &["out.npy"][..])] {
        let m = registry::load_method(method, None, &camera, &device).unwrap();
        // tiles whose own part is 8 alignment steps (pca: 8 pixels; mscnn: 64) plus the context
        let locality = m.locality().expect("both run in tiles");
        let tile = 2 * locality.margin + 8 * locality.align;
        let options = ReconOptions { consistent: true, exposure_invariant: true, ..ReconOptions::default() };
        let whole = recon::reconstruct(m.as_ref(), &rgb, &camera, options, &JobContext::silent()).unwrap();
        for out in outputs {
            let out = dir.path().join(format!("{method}-{out}"));
            let r = streamed::reconstruct_streamed(m.as_ref(), &*src, false, &camera, options, &out, Some(tile), &JobContext::silent()).unwrap();
            assert!(r.tiles >= 4, "{method}: {} tiles", r.tiles);
            let back = io::open(&out, &OpenOptions::default()).unwrap();
            assert_eq!(back.data.dim(), whole.cube.data.dim());
            let worst = back.data.iter().zip(whole.cube.data.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= tolerance, "{method} {}: tiles differ from the whole picture by {worst}", out.display());
            let (a, b) = (r.consistency.unwrap(), whole.consistency.unwrap());
            assert_eq!(a.unreachable_pixels, b.unreachable_pixels, "{method}");
        }
    }
    // a method that needs the whole picture says so
    let err = streamed::reconstruct_streamed(&WholeOnly, &*src, false, &camera, ReconOptions::default(), &dir.path().join("x.npy"), None, &JobContext::silent()).unwrap_err();
    assert!(err.to_string().contains("needs the whole picture"), "{err}");
}

/// A method without a locality: tiles are refused.
struct WholeOnly;

impl spectral_studio::recon::Reconstructor for WholeOnly {
    fn name(&self) -> &str {
        "whole-only"
    }
    fn wavelengths(&self) -> &[f32] {
        &[400.0, 500.0]
    }
    fn reference_brightness(&self) -> Option<f32> {
        None
    }
    fn reconstruct_raw(&self, rgb: &spectral_studio::RgbImage, _: &JobContext) -> spectral_studio::Result<Array3<f32>> {
        Ok(Array3::zeros((2, rgb.rows(), rgb.cols())))
    }
}

#[test]
fn the_cli_reconstructs_over_the_memory_cap_in_tiles_and_unmixes_into_envi() {
    use spectral_studio::spectral::{camera::CameraResponse, render};
    let dir = tempfile::tempdir().unwrap();
    let camera = CameraResponse::builtin("canon-eos-5d-mark-ii").unwrap();
    let cube = mixed_cube(90, 70);
    io::save(&cube, dir.path().join("cube.hdr")).unwrap();
    let rgb = render::clean_rgb_lit(&cube, &camera, None).unwrap();
    io::image_file::write_png(&rgb, &dir.path().join("rgb.png"), true, false).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_spectral-studio")).args(args).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // a 0 MiB cap sends even this picture through the tiles; the result is the whole run's
    let tiled = run(&["reconstruct", "rgb.png", "--method", "pca", "-o", "tiled.hdr", "--memory-cap", "0", "--json"]);
    assert!(tiled["tiles"].as_u64().is_some(), "{tiled}");
    let whole = run(&["reconstruct", "rgb.png", "--method", "pca", "-o", "whole.hdr", "--json"]);
    assert!(whole.get("tiles").is_none());
    let (a, b) = (io::open(dir.path().join("tiled.hdr"), &OpenOptions::default()).unwrap(), io::open(dir.path().join("whole.hdr"), &OpenOptions::default()).unwrap());
    same(&a.data, &b.data, "tiled vs whole");
    // unmixing writes ENVI abundances and residual, block by block
    let report = run(&["unmix", "cube.hdr", "--endmembers", "3", "-o", "ab.hdr", "--json"]);
    let ab = io::open(dir.path().join("ab.hdr"), &OpenOptions::default()).unwrap();
    assert_eq!(ab.bands(), report["endmembers"].as_array().unwrap().len());
    let sums = ab.data.sum_axis(ndarray::Axis(0));
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-3), "abundances sum to one");
    assert!(dir.path().join("ab_residual.hdr").is_file());
}
