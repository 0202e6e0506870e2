//! `Cube`: the one in-memory layout of a hyperspectral image.
//!
//! Data are f32 `(bands, rows, cols)` so that a band image is contiguous (display, NCHW
//! tensors) and a pixel spectrum is a strided read. Wavelengths are in nanometres.

use std::path::PathBuf;

use ndarray::{s, Array1, Array2, Array3, ArrayView2, Axis};
use serde::Serialize;

use crate::{bail_invalid, Result};

/// The default spectral grid of the studio: 400..=700 nm in 10 nm steps (31 bands).
pub fn default_wavelengths() -> Vec<f32> {
    (0..31).map(|i| 400.0 + 10.0 * i as f32).collect()
}

/// Band numbers `1..=bands`, the stand-in for wavelengths when a file names none (ENVI numbers
/// bands from 1, and so do people). Nothing physical is invented.
pub fn band_numbers(bands: usize) -> Vec<f32> {
    (1..=bands).map(|b| b as f32).collect()
}

/// Wavelengths for a file format that never stores them (.npy, MATLAB arrays without a
/// `bands` vector): 31 bands are taken to be the studio's default grid, 400..=700 nm, as in the
/// ARAD, CAVE and NTIRE data; any other count gets [`band_numbers`].
pub fn assumed_wavelengths(bands: usize) -> Vec<f32> {
    if bands == 31 {
        default_wavelengths()
    } else {
        band_numbers(bands)
    }
}

/// True when `wavelengths` are the [`band_numbers`] placeholder rather than nanometres.
pub fn are_band_numbers(wavelengths: &[f32]) -> bool {
    wavelengths.len() != 31 && wavelengths.iter().enumerate().all(|(i, &w)| w == (i + 1) as f32)
}

/// Whether a wavelength list looks like micrometres: not empty and every value in (0, 100).
/// No sensor of interest here has a band centre below 100 nm, and no µm value reaches 100, so
/// the rule is safe for real wavelengths. It cannot tell band numbers 1..n (n < 100) from µm:
/// callers that may hold band numbers must decide that first (see [`are_band_numbers`]).
pub fn are_micrometres<T: Copy + Into<f64>>(values: &[T]) -> bool {
    !values.is_empty()
        && values.iter().all(|&v| {
            let v: f64 = v.into();
            v > 0.0 && v < 100.0
        })
}

/// Wavelengths in nm from values given in nm or µm, by the [`are_micrometres`] rule: if every
/// value lies in (0, 100) they are µm and multiplied by 1000, otherwise they are returned
/// unchanged. Use it only where a file states no unit (ENVI without `wavelength units`, a
/// MATLAB `bands` vector).
pub fn wavelengths_to_nm(values: &[f32]) -> Vec<f32> {
    if are_micrometres(values) {
        values.iter().map(|v| v * 1000.0).collect()
    } else {
        values.to_vec()
    }
}

/// `bands` wavelengths evenly spaced from `first` to `last` nm (both included): what a user
/// gives for a cube that came without wavelengths.
pub fn evenly_spaced(first: f32, last: f32, bands: usize) -> Result<Vec<f32>> {
    if bands == 0 || !first.is_finite() || !last.is_finite() || first <= 0.0 {
        bail_invalid!("wavelengths need a positive first value and at least one band");
    }
    if bands == 1 {
        return Ok(vec![first]);
    }
    if last <= first {
        bail_invalid!("the last wavelength ({last} nm) must be above the first ({first} nm)");
    }
    let step = (last as f64 - first as f64) / (bands - 1) as f64;
    Ok((0..bands).map(|i| (first as f64 + step * i as f64) as f32).collect())
}

/// One wavelength per band from a text file: numbers separated by newlines, commas, semicolons
/// or spaces (a header line is skipped), or a table whose first column is the wavelength (an
/// ENVI-style `wavelength,fwhm` list); nm, or µm when every value is below 100. The count
/// must be `bands` and the values strictly increasing; errors name the file.
pub fn read_wavelength_list(path: &std::path::Path, bands: usize) -> Result<Vec<f32>> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
    parse_wavelength_list(&text, bands).map_err(|e| crate::Error::format(path, e))
}

/// [`read_wavelength_list`] on text already read; the error is a sentence without the file.
pub fn parse_wavelength_list(text: &str, bands: usize) -> std::result::Result<Vec<f32>, String> {
    let split = |line: &str| -> Vec<String> { line.split(|c: char| c == ',' || c == ';' || c.is_whitespace()).filter(|t| !t.is_empty()).map(String::from).collect() };
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let tokens = split(line);
        if tokens.is_empty() {
            continue;
        }
        let numbers: std::result::Result<Vec<f32>, _> = tokens.iter().map(|t| t.parse::<f32>()).collect();
        match numbers {
            Ok(n) => rows.push(n),
            // a header before the first number
            Err(_) if rows.is_empty() => continue,
            Err(_) => return Err(format!("line {}: '{}' is not a list of numbers", i + 1, line.trim())),
        }
    }
    let all: Vec<f32> = rows.iter().flatten().copied().collect();
    let values = if all.len() == bands {
        all
    } else if rows.len() == bands && rows.iter().all(|r| r.len() > 1) {
        rows.iter().map(|r| r[0]).collect()
    } else {
        return Err(format!("{} value(s) in {} line(s), but the cube has {bands} bands: give one wavelength per band", all.len(), rows.len()));
    };
    if let Some(v) = values.iter().find(|v| !v.is_finite() || **v <= 0.0) {
        return Err(format!("wavelength {v} is not a positive number"));
    }
    let nm = wavelengths_to_nm(&values);
    if let Some(i) = nm.windows(2).position(|w| !(w[1] > w[0])) {
        return Err(format!("wavelengths must increase band by band: band {} is {} nm after {} nm", i + 2, nm[i + 1], nm[i]));
    }
    Ok(nm)
}

/// Where a cube came from and how its numbers are to be read.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metadata {
    /// The file (or folder) the cube was read from.
    pub source: Option<PathBuf>,
    /// Short name of the format it was read as (`envi`, `npy`, `mat-v5`, ...).
    pub format: Option<String>,
    /// What the values measure, e.g. "reflectance" or "radiance".
    pub units: Option<String>,
    /// The factor the stored values were divided by on reading (ENVI reflectance scale factor).
    pub scale: Option<f32>,
    /// Free text carried over from the file (ENVI description, MATLAB key).
    pub description: Option<String>,
    /// The file's suggested R, G, B bands (ENVI `default bands`, 0-based), when it names three.
    pub default_bands: Option<[usize; 3]>,
}

/// A rectangle of pixels: rows `row..row+height`, cols `col..col+width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub row: usize,
    pub col: usize,
    pub height: usize,
    pub width: usize,
}

/// Summary statistics over every value of a cube (non-finite values excluded).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub min: f32,
    pub max: f32,
    pub mean: f64,
    pub std: f64,
    /// Number of values that were NaN or infinite.
    pub non_finite: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cube {
    /// (bands, rows, cols)
    pub data: Array3<f32>,
    /// One centre wavelength per band, nm, strictly increasing.
    pub wavelengths: Vec<f32>,
    /// Optional full width at half maximum per band, nm.
    pub fwhm: Option<Vec<f32>>,
    pub meta: Metadata,
}

impl Cube {
    /// A cube from data and wavelengths; the wavelength count must match the band count.
    pub fn new(data: Array3<f32>, wavelengths: Vec<f32>) -> Result<Self> {
        let bands = data.shape()[0];
        if bands == 0 {
            bail_invalid!("a cube needs at least one band");
        }
        if wavelengths.len() != bands {
            bail_invalid!("{} wavelengths given for a cube of {} bands", wavelengths.len(), bands);
        }
        if wavelengths.windows(2).any(|w| !(w[1] > w[0])) {
            bail_invalid!("wavelengths must be strictly increasing");
        }
        Ok(Cube { data, wavelengths, fwhm: None, meta: Metadata::default() })
    }

    /// A cube on the default 31-band grid (panics are impossible: the caller gives 31 bands
    /// or gets an error).
    pub fn on_default_grid(data: Array3<f32>) -> Result<Self> {
        Cube::new(data, default_wavelengths())
    }

    pub fn bands(&self) -> usize {
        self.data.shape()[0]
    }
    pub fn rows(&self) -> usize {
        self.data.shape()[1]
    }
    pub fn cols(&self) -> usize {
        self.data.shape()[2]
    }

    /// The image of band `b`, contiguous.
    pub fn band(&self, b: usize) -> ArrayView2<'_, f32> {
        self.data.index_axis(Axis(0), b)
    }

    /// The band whose centre wavelength is nearest to `nm`.
    pub fn nearest_band(&self, nm: f32) -> usize {
        let mut best = 0;
        for (i, w) in self.wavelengths.iter().enumerate() {
            if (w - nm).abs() < (self.wavelengths[best] - nm).abs() {
                best = i;
            }
        }
        best
    }

    /// The spectrum of one pixel, one value per band.
    pub fn spectrum(&self, row: usize, col: usize) -> Vec<f32> {
        self.data.slice(s![.., row, col]).to_vec()
    }

    fn check_rect(&self, r: Rect) -> Result<()> {
        if r.height == 0 || r.width == 0 {
            bail_invalid!("empty region {}x{}", r.height, r.width);
        }
        if r.row + r.height > self.rows() || r.col + r.width > self.cols() {
            bail_invalid!(
                "region rows {}..{}, cols {}..{} is outside the {}x{} image",
                r.row,
                r.row + r.height,
                r.col,
                r.col + r.width,
                self.rows(),
                self.cols()
            );
        }
        Ok(())
    }

    /// Per-band mean and standard deviation (population) over a rectangle.
    pub fn roi_stats(&self, r: Rect) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check_rect(r)?;
        let region = self.data.slice(s![.., r.row..r.row + r.height, r.col..r.col + r.width]);
        let n = (r.height * r.width) as f64;
        let mut mean = Vec::with_capacity(self.bands());
        let mut std = Vec::with_capacity(self.bands());
        for band in region.outer_iter() {
            let m = band.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = band.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
            mean.push(m as f32);
            std.push(var.sqrt() as f32);
        }
        Ok((mean, std))
    }

    /// A spatial crop; wavelengths and metadata are kept.
    pub fn crop(&self, r: Rect) -> Result<Cube> {
        self.check_rect(r)?;
        let data = self.data.slice(s![.., r.row..r.row + r.height, r.col..r.col + r.width]).to_owned();
        Ok(Cube { data, ..self.clone_header() })
    }

    /// The bands whose centre lies in `[lo, hi]` nm.
    pub fn band_range(&self, lo: f32, hi: f32) -> Result<Cube> {
        let keep: Vec<usize> =
            (0..self.bands()).filter(|&b| self.wavelengths[b] >= lo && self.wavelengths[b] <= hi).collect();
        if keep.is_empty() {
            bail_invalid!(
                "no band lies in {lo}..{hi} nm (the cube covers {}..{} nm)",
                self.wavelengths[0],
                self.wavelengths[self.bands() - 1]
            );
        }
        let data = self.data.select(Axis(0), &keep);
        let mut out = Cube { data, ..self.clone_header() };
        out.wavelengths = keep.iter().map(|&b| self.wavelengths[b]).collect();
        out.fwhm = self.fwhm.as_ref().map(|f| keep.iter().map(|&b| f[b]).collect());
        out.meta.default_bands = None; // the bands are renumbered
        Ok(out)
    }

    /// Linear interpolation of every spectrum onto `target` wavelengths. Targets outside the
    /// cube's range are an error: extrapolating a spectrum invents data.
    pub fn resample(&self, target: &[f32]) -> Result<Cube> {
        let weights = interpolation_matrix(&self.wavelengths, target)?;
        let flat = self.data.view().into_shape_with_order((self.bands(), self.rows() * self.cols())).map_err(
            |e| crate::Error::invalid(format!("cube data is not contiguous: {e}")),
        )?;
        let out = weights.dot(&flat);
        let data = out.into_shape_with_order((target.len(), self.rows(), self.cols())).expect("sizes agree");
        let mut cube = Cube { data, ..self.clone_header() };
        cube.wavelengths = target.to_vec();
        cube.fwhm = None;
        cube.meta.default_bands = None; // other bands now
        Ok(cube)
    }

    /// min, max, mean and standard deviation over all finite values.
    pub fn stats(&self) -> Stats {
        value_stats(self.data.iter().copied())
    }

    /// Everything but the data, for building derived cubes.
    fn clone_header(&self) -> Cube {
        Cube {
            data: Array3::zeros((0, 0, 0)),
            wavelengths: self.wavelengths.clone(),
            fwhm: self.fwhm.clone(),
            meta: self.meta.clone(),
        }
    }
}

/// min, max, mean and standard deviation over the finite values of any image or cube.
pub fn value_stats(values: impl Iterator<Item = f32>) -> Stats {
    let (mut min, mut max, mut sum, mut sum2, mut n, mut bad) =
        (f32::INFINITY, f32::NEG_INFINITY, 0f64, 0f64, 0usize, 0usize);
    for v in values {
        if !v.is_finite() {
            bad += 1;
            continue;
        }
        min = min.min(v);
        max = max.max(v);
        sum += v as f64;
        sum2 += (v as f64) * (v as f64);
        n += 1;
    }
    let mean = if n > 0 { sum / n as f64 } else { f64::NAN };
    let var = if n > 0 { (sum2 / n as f64 - mean * mean).max(0.0) } else { f64::NAN };
    if n == 0 {
        min = f32::NAN;
        max = f32::NAN;
    }
    Stats { min, max, mean, std: var.sqrt(), non_finite: bad }
}

/// The (target × source) matrix that linearly interpolates a spectrum sampled at `source`
/// onto `target`. Both grids in nm; `source` strictly increasing.
pub fn interpolation_matrix(source: &[f32], target: &[f32]) -> Result<Array2<f32>> {
    resampling_matrix(source, target, false)
}

/// Like [`interpolation_matrix`], for *response curves* (camera channels, colour-matching
/// functions): outside the tabulated range the response is zero, because that is where the
/// sensor or the eye does not respond. A 400–2500 nm cube renders through a 380–780 nm camera.
pub fn response_matrix(source: &[f32], target: &[f32]) -> Result<Array2<f32>> {
    resampling_matrix(source, target, true)
}

fn resampling_matrix(source: &[f32], target: &[f32], zero_outside: bool) -> Result<Array2<f32>> {
    if source.is_empty() {
        bail_invalid!("cannot interpolate from an empty wavelength grid");
    }
    let (lo, hi) = (source[0], source[source.len() - 1]);
    let tol = 1e-3;
    let mut m = Array2::zeros((target.len(), source.len()));
    for (t, &w) in target.iter().enumerate() {
        if w < lo - tol || w > hi + tol {
            if zero_outside {
                continue;
            }
            bail_invalid!("wavelength {w} nm is outside the source range {lo}..{hi} nm");
        }
        let w = w.clamp(lo, hi);
        // index of the first source sample >= w
        let j = source.partition_point(|&x| x < w);
        if j == 0 || source[j.min(source.len() - 1)] == w {
            m[[t, j.min(source.len() - 1)]] = 1.0;
        } else {
            let (x0, x1) = (source[j - 1], source[j]);
            let f = (w - x0) / (x1 - x0);
            m[[t, j - 1]] = 1.0 - f;
            m[[t, j]] = f;
        }
    }
    Ok(m)
}

/// Linear interpolation of one sampled curve onto `target` (same rules as [`Cube::resample`]).
pub fn interpolate(source_nm: &[f32], values: &[f32], target: &[f32]) -> Result<Vec<f32>> {
    if source_nm.len() != values.len() {
        bail_invalid!("{} wavelengths but {} values", source_nm.len(), values.len());
    }
    let m = interpolation_matrix(source_nm, target)?;
    Ok(m.dot(&Array1::from(values.to_vec())).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wavelength_lists_read_nm_micrometres_tables_and_say_what_is_wrong() {
        assert_eq!(parse_wavelength_list("400\n450\n500\n", 3).unwrap(), [400.0, 450.0, 500.0]);
        assert_eq!(parse_wavelength_list("400, 450; 500", 3).unwrap(), [400.0, 450.0, 500.0]);
        // a header, then µm in a wavelength,fwhm table
        let w = parse_wavelength_list("wavelength,fwhm\n0.4,0.01\n0.45,0.01\n0.5,0.01\n", 3).unwrap();
        assert!(w.iter().zip([400.0, 450.0, 500.0]).all(|(a, b)| (a - b).abs() < 1e-3), "{w:?}");
        assert!(parse_wavelength_list("400\n450\n", 3).unwrap_err().contains("the cube has 3 bands"));
        assert!(parse_wavelength_list("400\n390\n500\n", 3).unwrap_err().contains("band 2 is 390 nm after 400 nm"));
        assert!(parse_wavelength_list("400\nx\n500\n", 3).unwrap_err().contains("line 2"));
        assert!(parse_wavelength_list("400\n-1\n500\n", 3).unwrap_err().contains("not a positive"));
        let dir = tempfile::tempdir().unwrap();
        let err = read_wavelength_list(&dir.path().join("none.txt"), 3).unwrap_err().to_string();
        assert!(err.contains("none.txt"), "{err}");
    }

    #[test]
    fn evenly_spaced_wavelengths_include_both_ends() {
        assert_eq!(evenly_spaced(400.0, 700.0, 4).unwrap(), [400.0, 500.0, 600.0, 700.0]);
        assert_eq!(evenly_spaced(550.0, 0.0, 1).unwrap(), [550.0]);
        assert!(evenly_spaced(700.0, 400.0, 4).is_err());
        assert!(evenly_spaced(0.0, 400.0, 4).is_err());
    }

    fn ramp() -> Cube {
        // value = band*100 + row*10 + col
        let data = Array3::from_shape_fn((4, 3, 5), |(b, r, c)| (b * 100 + r * 10 + c) as f32);
        Cube::new(data, vec![400.0, 500.0, 600.0, 700.0]).unwrap()
    }

    #[test]
    fn wavelength_count_must_match() {
        let err = Cube::new(Array3::zeros((3, 2, 2)), vec![400.0, 500.0]).unwrap_err();
        assert!(err.to_string().contains("2 wavelengths given for a cube of 3 bands"));
    }

    #[test]
    fn zero_bands_are_refused() {
        let err = Cube::new(Array3::zeros((0, 2, 2)), vec![]).unwrap_err();
        assert!(err.to_string().contains("at least one band"), "{err}");
    }

    #[test]
    fn micrometres_become_nanometres_by_one_rule() {
        assert_eq!(wavelengths_to_nm(&[0.4, 0.55, 2.5]), vec![400.0, 550.0, 2500.0]);
        assert_eq!(wavelengths_to_nm(&[400.0, 550.0]), vec![400.0, 550.0]);
        // one value outside (0, 100) means the list is not µm
        assert_eq!(wavelengths_to_nm(&[0.0, 0.5]), vec![0.0, 0.5]);
        assert_eq!(wavelengths_to_nm(&[50.0, 100.0]), vec![50.0, 100.0]);
        assert!(wavelengths_to_nm(&[]).is_empty());
        assert!(are_micrometres(&[0.4f64, 99.9]));
        assert!(!are_micrometres::<f64>(&[]));
    }

    #[test]
    fn spectrum_and_band_read_the_right_elements() {
        let c = ramp();
        assert_eq!(c.spectrum(2, 4), vec![24.0, 124.0, 224.0, 324.0]);
        assert_eq!(c.band(1)[[1, 3]], 113.0);
        assert_eq!(c.nearest_band(560.0), 2);
    }

    #[test]
    fn roi_stats_and_crop() {
        let c = ramp();
        let r = Rect { row: 1, col: 1, height: 2, width: 2 };
        let (mean, std) = c.roi_stats(r).unwrap();
        // band 0 values 11,12,21,22
        assert!((mean[0] - 16.5).abs() < 1e-6);
        assert!((std[0] - 5.024938).abs() < 1e-5);
        let crop = c.crop(r).unwrap();
        assert_eq!(crop.data.shape(), &[4, 2, 2]);
        assert_eq!(crop.data[[3, 1, 1]], 322.0);
        assert!(c.crop(Rect { row: 2, col: 0, height: 2, width: 1 }).is_err());
    }

    #[test]
    fn resample_is_linear_and_refuses_extrapolation() {
        let c = ramp();
        let r = c.resample(&[450.0, 700.0]).unwrap();
        assert_eq!(r.data[[0, 0, 0]], 50.0);
        assert_eq!(r.data[[1, 2, 4]], 324.0);
        assert!(c.resample(&[390.0]).is_err());
    }

    #[test]
    fn response_curves_are_zero_outside_their_table() {
        let m = response_matrix(&[400.0, 500.0], &[390.0, 450.0, 510.0]).unwrap();
        assert_eq!(m.row(0).to_vec(), vec![0.0, 0.0]);
        assert_eq!(m.row(1).to_vec(), vec![0.5, 0.5]);
        assert_eq!(m.row(2).to_vec(), vec![0.0, 0.0]);
        assert!(interpolation_matrix(&[400.0, 500.0], &[390.0]).is_err());
    }

    #[test]
    fn band_range_keeps_matching_wavelengths() {
        let c = ramp();
        let sub = c.band_range(450.0, 650.0).unwrap();
        assert_eq!(sub.wavelengths, vec![500.0, 600.0]);
        assert_eq!(sub.data[[0, 0, 1]], 101.0);
        assert!(c.band_range(710.0, 800.0).is_err());
    }

    #[test]
    fn stats_skip_non_finite() {
        let mut c = ramp();
        c.data[[0, 0, 0]] = f32::NAN;
        let s = c.stats();
        assert_eq!(s.non_finite, 1);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 324.0);
    }
}
