//! Linear unmixing: fully constrained least squares (FCLS) abundances over a set of endmember
//! spectra, per pixel, with the per-pixel residual.
//!
//! FCLS (Heinz & Chang, 2001) asks for abundances that are non-negative and sum to one. The
//! sum-to-one constraint is imposed the usual way, as an extra heavily weighted equation
//! `δ·Σa = δ`, and the non-negativity by NNLS on the augmented system.

use ndarray::{s, Array2, Array3, ArrayView2, Axis};

use super::library::SpectralLibrary;
use super::nnls::NnlsSolver;
use crate::{bail_invalid, Cube, Result};

/// Weight of the sum-to-one row relative to the larger of the pixel's and the endmembers'
/// mean squared norm. Large enough that abundances sum to one within ~1e-4 whatever the data's
/// scale (reflectance 0–1 or raw counts in the thousands), small enough to keep the Gram
/// matrix well conditioned in f64.
const SUM_TO_ONE_WEIGHT: f64 = 1e4;

/// The result of unmixing a cube.
#[derive(Clone, Debug)]
pub struct Unmixing {
    /// Endmember names, one per abundance map.
    pub names: Vec<String>,
    /// (endmembers, rows, cols), each pixel non-negative and summing to one.
    pub abundances: Array3<f32>,
    /// (rows, cols): RMSE over bands between the pixel and its reconstruction Σ aᵢ·eᵢ.
    pub residual: Array2<f32>,
}

impl Unmixing {
    /// Mean residual RMSE over the pixels that could be unmixed (NaN pixels left out).
    pub fn mean_residual(&self) -> f64 {
        let (sum, n) = self.residual.iter().filter(|v| v.is_finite()).fold((0f64, 0usize), |(s, n), &v| (s + v as f64, n + 1));
        if n == 0 {
            f64::NAN
        } else {
            sum / n as f64
        }
    }
}

/// The part of `cube` a library can explain, and the library's spectra on its grid.
///
/// Libraries cover less than many sensors (the shipped ones 400–700 nm; a field spectrometer
/// 350–2500 nm), so the cube is cut to the bands inside the library's range rather than
/// refused; extrapolating reflectances would invent data. Errors when nothing overlaps.
pub fn prepare(cube: &Cube, library: &SpectralLibrary) -> Result<(Cube, Array2<f32>)> {
    let (Some(&lo), Some(&hi)) = (library.wavelengths.first(), library.wavelengths.last()) else {
        bail_invalid!("library '{}' has no wavelengths", library.name);
    };
    let inside = cube.wavelengths.iter().all(|&w| w >= lo && w <= hi);
    let cube = if inside { cube.clone() } else { cube.band_range(lo, hi)? };
    let on_grid = library.resample(&cube.wavelengths)?.spectra;
    Ok((cube, on_grid))
}

/// Unmix `cube` over a library: the named `materials` when given, otherwise at most `max_k`
/// endmembers chosen by [`select_endmembers`]. Returns the result and the number of the cube's
/// bands the library covers (fewer than the cube's when the library is narrower).
pub fn unmix_with_library(cube: &Cube, library: &SpectralLibrary, materials: &[String], max_k: usize) -> Result<(Unmixing, usize)> {
    let (cube, spectra) = prepare(cube, library)?;
    let chosen = choose(&cube, &spectra, library, materials, max_k)?;
    let endmembers = spectra.select(Axis(0), &chosen);
    let names: Vec<String> = chosen.iter().map(|&i| library.names[i].clone()).collect();
    Ok((fcls(&cube, endmembers.view(), &names)?, cube.bands()))
}

/// The library entries to unmix over: the named `materials`, or up to `max_k` chosen from
/// `cube` (already cut to the library's range, `spectra` on its grid).
fn choose(cube: &Cube, spectra: &Array2<f32>, library: &SpectralLibrary, materials: &[String], max_k: usize) -> Result<Vec<usize>> {
    if materials.is_empty() {
        return select_endmembers(cube, spectra.view(), max_k);
    }
    materials
        .iter()
        .map(|m| {
            library.names.iter().position(|n| n.eq_ignore_ascii_case(m)).ok_or_else(|| {
                crate::Error::invalid(format!("library '{}' has no material named '{m}'", library.name))
            })
        })
        .collect()
}

/// [`unmix_with_library`] of a cube read on demand, row block by row block, so a cube larger
/// than memory unmixes in bounded memory: endmembers are chosen on the source's overview (the
/// choice samples about a thousand pixels on a grid anyway), then each block's FCLS result is
/// handed to `emit` with its first row. Returns the endmember names and the bands used.
pub fn unmix_source(
    source: &dyn crate::io::source::CubeSource,
    library: &SpectralLibrary,
    materials: &[String],
    max_k: usize,
    job: &crate::engine::JobContext,
    mut emit: impl FnMut(usize, &Unmixing) -> Result<()>,
) -> Result<(Vec<String>, usize)> {
    use crate::io::source;
    let (Some(&lo), Some(&hi)) = (library.wavelengths.first(), library.wavelengths.last()) else {
        bail_invalid!("library '{}' has no wavelengths", library.name);
    };
    // Only the bands the library covers are read, for the choice and for the unmixing.
    let bands: Vec<usize> = (0..source.shape().0).filter(|&b| (lo..=hi).contains(&source.wavelengths()[b])).collect();
    if bands.is_empty() {
        bail_invalid!("library '{}' covers {lo}..{hi} nm, none of the cube's bands", library.name);
    }
    let quiet = crate::engine::JobContext::new(job.cancel.clone(), |_, _| {});
    let overview = source::overview_of(source, &bands, source::OVERVIEW_PIXELS, &quiet)?;
    let (sample, spectra) = prepare(&overview.cube, library)?;
    let chosen = choose(&sample, &spectra, library, materials, max_k)?;
    let endmembers = spectra.select(Axis(0), &chosen);
    let names: Vec<String> = chosen.iter().map(|&i| library.names[i].clone()).collect();
    let wavelengths = sample.wavelengths.clone();
    let (_, rows, cols) = source.shape();
    let per_block = source::block_rows(bands.len(), cols);
    for block_rows in source::row_blocks(rows, per_block) {
        job.check()?;
        let (r0, r1) = (block_rows.start, block_rows.end);
        let block = Cube::new(source.read(&bands, block_rows, 0..cols, 1)?, wavelengths.clone())?;
        emit(r0, &fcls(&block, endmembers.view(), &names)?)?;
        job.report(r1 as f32 / rows as f32, "unmixing");
    }
    Ok((names, bands.len()))
}

/// FCLS abundances of every pixel over `endmembers` `(k, bands)`, already on the cube's grid.
pub fn fcls(cube: &Cube, endmembers: ArrayView2<f32>, names: &[String]) -> Result<Unmixing> {
    let (bands, rows, cols) = cube.data.dim();
    let k = endmembers.nrows();
    if k == 0 {
        bail_invalid!("unmixing needs at least one endmember");
    }
    if endmembers.ncols() != bands {
        bail_invalid!("endmembers have {} bands but the cube has {}", endmembers.ncols(), bands);
    }
    if names.len() != k {
        bail_invalid!("{} names for {} endmembers", names.len(), k);
    }
    let e = endmembers.mapv(|v| v as f64); // (k, bands)
    let gram_plain = e.dot(&e.t());
    let endmember_energy = (0..k).map(|i| gram_plain[[i, i]]).sum::<f64>() / k as f64;

    let mut abundances = Array3::<f32>::zeros((k, rows, cols));
    let mut residual = Array2::<f32>::zeros((rows, cols));
    let pixels = rows * cols;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(pixels.max(1));
    let chunk = pixels.div_ceil(threads.max(1)).max(1);

    // Each thread fills a disjoint range of pixels into its own buffers; merged afterwards.
    let data = &cube.data;
    let results: Vec<(usize, Vec<f32>, Vec<f32>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..pixels)
            .step_by(chunk)
            .map(|start| {
                let (e, gram_plain) = (&e, &gram_plain);
                scope.spawn(move || {
                    let end = (start + chunk).min(pixels);
                    let mut solver = NnlsSolver::new(k);
                    let mut a = vec![0.0f64; k];
                    let mut b = ndarray::Array1::<f64>::zeros(k);
                    let mut y = vec![0.0f64; bands];
                    let mut abund = vec![0.0f32; (end - start) * k];
                    let mut resid = vec![0.0f32; end - start];
                    let mut gram = gram_plain.clone();
                    for p in start..end {
                        let (r, c) = (p / cols, p % cols);
                        for (band, v) in y.iter_mut().enumerate() {
                            *v = data[[band, r, c]] as f64;
                        }
                        if y.iter().any(|v| !v.is_finite()) {
                            // a missing value (ENVI data-ignore → NaN): nothing to unmix
                            resid[p - start] = f32::NAN;
                            abund[(p - start) * k..(p - start + 1) * k].fill(f32::NAN);
                            continue;
                        }
                        let pixel_energy = y.iter().map(|v| v * v).sum::<f64>(); // ‖y‖², like ‖e‖²
                        let delta2 = SUM_TO_ONE_WEIGHT * endmember_energy.max(pixel_energy);
                        ndarray::Zip::from(&mut gram).and(gram_plain).for_each(|g, &p| *g = p + delta2);
                        for i in 0..k {
                            b[i] = e.row(i).iter().zip(&y).map(|(x, y)| x * y).sum::<f64>() + delta2;
                        }
                        solver.solve(gram.view(), b.view(), &mut a);
                        let mut sq = 0.0;
                        for (band, &yv) in y.iter().enumerate() {
                            let fit: f64 = (0..k).map(|i| a[i] * e[[i, band]]).sum();
                            sq += (yv - fit).powi(2);
                        }
                        resid[p - start] = (sq / bands as f64).sqrt() as f32;
                        for i in 0..k {
                            abund[(p - start) * k + i] = a[i] as f32;
                        }
                    }
                    (start, abund, resid)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("unmixing thread panicked")).collect()
    });
    for (start, abund, resid) in results {
        for (off, value) in resid.iter().enumerate() {
            let p = start + off;
            let (r, c) = (p / cols, p % cols);
            residual[[r, c]] = *value;
            for i in 0..k {
                abundances[[i, r, c]] = abund[off * k + i];
            }
        }
    }
    Ok(Unmixing { names: names.to_vec(), abundances, residual })
}

/// How many of the most correlated candidates each selection step refits.
const SHORTLIST: usize = 10;

/// Residual `y − E·a` of the NNLS fit of every column of `y` over the library rows `chosen`.
fn nnls_residual(lib: &Array2<f64>, chosen: &[usize], y: &Array2<f64>) -> Array2<f64> {
    let e = lib.select(Axis(0), chosen); // (k, bands)
    let gram = e.dot(&e.t());
    let rhs = e.dot(y); // (k, pixels)
    let mut solver = NnlsSolver::new(chosen.len());
    let mut a = vec![0.0; chosen.len()];
    let mut residual = y.clone();
    for p in 0..y.ncols() {
        solver.solve(gram.view(), rhs.slice(s![.., p]), &mut a);
        for b in 0..y.nrows() {
            let fit: f64 = (0..chosen.len()).map(|i| a[i] * e[[i, b]]).sum();
            residual[[b, p]] -= fit;
        }
    }
    residual
}

/// Backward step of forward-backward greedy selection: a spectrum picked early (often a flat
/// one that alone explains the most) can become redundant once the right ones are in. Drop,
/// one at a time, any spectrum whose removal leaves the fit within 0.1 % of what it was.
fn prune_redundant(lib: &Array2<f64>, chosen: &mut Vec<usize>, y: &Array2<f64>) {
    let energy: f64 = y.iter().map(|v| v * v).sum::<f64>().max(1e-300);
    let sq = |r: Array2<f64>| r.iter().map(|v| v * v).sum::<f64>();
    while chosen.len() > 1 {
        let with_all = sq(nnls_residual(lib, chosen, y));
        let (drop_at, without) = (0..chosen.len())
            .map(|i| {
                let mut trial = chosen.clone();
                trial.remove(i);
                (i, sq(nnls_residual(lib, &trial, y)))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least two spectra chosen");
        if without > with_all * 1.001 + 1e-12 * energy {
            break;
        }
        chosen.remove(drop_at);
    }
}

/// Choose up to `max_k` library spectra `(n, bands)` that together explain the cube, by a
/// simultaneous matching pursuit over a regular sample of pixels: at each step shortlist the
/// spectra most correlated with what is still unexplained and keep the one whose NNLS refit,
/// together with those already chosen, leaves the least. Stops early once the sample is explained
/// exactly (to 1e-9 of its energy), then drops spectra that the others have made redundant.
pub fn select_endmembers(cube: &Cube, library: ArrayView2<f32>, max_k: usize) -> Result<Vec<usize>> {
    let (bands, rows, cols) = cube.data.dim();
    if library.ncols() != bands {
        bail_invalid!("library has {} bands but the cube has {}", library.ncols(), bands);
    }
    let n = library.nrows();
    if n == 0 || max_k == 0 {
        bail_invalid!("no library spectra to choose from");
    }
    // A regular grid of up to ~1024 pixels, leaving out pixels with missing values.
    let step = ((rows * cols) as f64 / 1024.0).sqrt().ceil().max(1.0) as usize;
    let sample: Vec<(usize, usize)> = (0..rows)
        .step_by(step)
        .flat_map(|r| (0..cols).step_by(step).map(move |c| (r, c)))
        .filter(|&(r, c)| (0..bands).all(|b| cube.data[[b, r, c]].is_finite()))
        .collect();
    if sample.is_empty() {
        bail_invalid!("every sampled pixel holds a missing (non-finite) value; nothing to unmix");
    }
    let y = Array2::from_shape_fn((bands, sample.len()), |(b, p)| cube.data[[b, sample[p].0, sample[p].1]] as f64);
    let lib = library.mapv(|v| v as f64);
    let norms: Vec<f64> = lib.axis_iter(Axis(0)).map(|r| r.dot(&r).sqrt().max(1e-12)).collect();
    let energy: f64 = y.iter().map(|v| v * v).sum::<f64>().max(1e-300);

    let mut chosen: Vec<usize> = Vec::new();
    let mut residual = y.clone();
    while chosen.len() < max_k.min(n) {
        // Shortlist by correlation with what is unexplained, then keep the candidate whose
        // refit explains the most: plain matching pursuit is fooled by spectra that are merely
        // similar in shape to the residual.
        let corr = lib.dot(&residual); // (n, pixels)
        let mut scored: Vec<(usize, f64)> = (0..n)
            .filter(|j| !chosen.contains(j))
            .map(|j| (j, corr.row(j).iter().map(|v| v.abs()).sum::<f64>() / norms[j]))
            .collect();
        if scored.is_empty() {
            break;
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        let best = scored
            .iter()
            .take(SHORTLIST)
            .map(|&(j, _)| {
                let mut trial = chosen.clone();
                trial.push(j);
                let r = nnls_residual(&lib, &trial, &y);
                let left: f64 = r.iter().map(|v| v * v).sum();
                (j, left, r)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("shortlist is not empty");
        chosen.push(best.0);
        residual = best.2;
        if best.1 / energy < 1e-9 {
            break;
        }
    }
    prune_redundant(&lib, &mut chosen, &y);
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn toy() -> (Array2<f32>, Cube, Array3<f32>) {
        // three smooth endmembers on 8 bands
        let e = Array2::from_shape_fn((3, 8), |(i, b)| match i {
            0 => 0.1 + 0.1 * b as f32,
            1 => 0.9 - 0.1 * b as f32,
            _ => 0.5 + 0.3 * ((b as f32) * 0.8).sin(),
        });
        let truth = Array3::from_shape_fn((3, 4, 5), |(i, r, c)| {
            let w = [1.0 + r as f32, 1.0 + c as f32, 2.0][i];
            w / (4.0 + r as f32 + c as f32)
        });
        let data = Array3::from_shape_fn((8, 4, 5), |(b, r, c)| (0..3).map(|i| truth[[i, r, c]] * e[[i, b]]).sum());
        let cube = Cube::new(data, (0..8).map(|b| 400.0 + 40.0 * b as f32).collect()).unwrap();
        (e, cube, truth)
    }

    #[test]
    fn recovers_exact_mixtures() {
        let (e, cube, truth) = toy();
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let u = fcls(&cube, e.view(), &names).unwrap();
        for (got, want) in u.abundances.iter().zip(truth.iter()) {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
        assert!(u.mean_residual() < 1e-4);
    }

    #[test]
    fn abundances_are_non_negative_and_sum_to_one_on_noisy_pixels() {
        let (e, mut cube, _) = toy();
        cube.data.indexed_iter_mut().for_each(|((b, r, c), v)| *v *= 1.0 + 0.2 * (((b * 7 + r * 3 + c) % 5) as f32 - 2.0) / 2.0);
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let u = fcls(&cube, e.view(), &names).unwrap();
        for r in 0..4 {
            for c in 0..5 {
                let a = u.abundances.slice(s![.., r, c]);
                assert!(a.iter().all(|&v| v >= 0.0));
                assert!((a.sum() - 1.0).abs() < 1e-3, "sum {}", a.sum());
            }
        }
        assert!(u.mean_residual() > 1e-4, "noise must leave a residual");
    }

    #[test]
    fn selection_finds_the_true_endmembers_among_distractors() {
        let (e, cube, _) = toy();
        let mut lib = Array2::from_shape_fn((10, 8), |(i, b)| 0.3 + 0.05 * ((i * 3 + b) % 7) as f32);
        for i in 0..3 {
            lib.row_mut(2 * i + 3).assign(&e.row(i));
        }
        let mut chosen = select_endmembers(&cube, lib.view(), 5).unwrap();
        chosen.sort();
        assert_eq!(chosen, vec![3, 5, 7]);
    }

    #[test]
    fn abundances_sum_to_one_whatever_the_data_scale() {
        // raw counts in the thousands against reflectance-scale endmembers
        let (e, mut cube, _) = toy();
        cube.data.mapv_inplace(|v| v * 3000.0);
        cube.data[[2, 1, 1]] = f32::NAN;
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let u = fcls(&cube, e.view(), &names).unwrap();
        for r in 0..4 {
            for c in 0..5 {
                let a = u.abundances.slice(s![.., r, c]);
                if (r, c) == (1, 1) {
                    assert!(a.iter().all(|v| v.is_nan()) && u.residual[[1, 1]].is_nan());
                    continue;
                }
                assert!((a.sum() - 1.0).abs() < 1e-3, "pixel ({r}, {c}) sums to {}", a.sum());
            }
        }
        assert!(u.mean_residual().is_finite());
    }

    #[test]
    fn rejects_band_mismatch() {
        let (_, cube, _) = toy();
        let e = array![[1.0f32, 2.0]];
        assert!(fcls(&cube, e.view(), &["x".to_string()]).is_err());
    }
}
