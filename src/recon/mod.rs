//! Reconstruction: linear camera RGB → a 31-band cube, every method behind one trait.
//!
//! [`Reconstructor::reconstruct_raw`] is the method itself; [`reconstruct`] wraps it with the
//! options every method shares — exposure invariance and physical consistency — times it, and
//! returns a [`Cube`] in the scale convention of `render` (C·Ŷ ≈ the input RGB), so that
//! render → reconstruct → eval is a closed loop.

pub mod baselines;
pub mod card;
pub mod classical;
pub mod compare;
pub mod consistency;
pub mod device;
pub mod fusion;
pub mod inss;
pub mod learned;
pub mod linalg;
pub mod pytorch;
pub mod registry;
pub mod streamed;
pub mod usr;

use crate::engine::JobContext;
use crate::spectral::camera::CameraResponse;
use crate::{bail_invalid, Cube, Result, RgbImage};
use consistency::ConsistencyReport;
use ndarray::Array3;
use std::time::Instant;

pub trait Reconstructor: Send + Sync {
    fn name(&self) -> &str;
    /// Wavelengths (nm) of the bands it produces.
    fn wavelengths(&self) -> &[f32];
    /// Mean input brightness the method was trained at, if it is not scale-equivariant.
    fn reference_brightness(&self) -> Option<f32>;
    /// (3, rows, cols) linear RGB → (bands, rows, cols). Checks `job` for cancellation
    /// between units of work and reports progress.
    fn reconstruct_raw(&self, rgb: &RgbImage, job: &JobContext) -> Result<Array3<f32>>;
    /// How far a pixel's result depends on its neighbours, so a picture too large to hold can
    /// be reconstructed tile by tile ([`streamed::reconstruct_streamed`]); `None` (the default)
    /// when the method needs the whole picture at once.
    fn locality(&self) -> Option<Locality> {
        None
    }
    /// Whether the method reads cues of the whole picture (its light: see
    /// [`crate::models::camera::illumination_cues`]); a tiled run then gives every tile the
    /// whole picture's through [`Reconstructor::reconstruct_raw_with_cues`].
    fn reads_picture_cues(&self) -> bool {
        false
    }
    /// [`Reconstructor::reconstruct_raw`] with the picture's cues given (`None`: taken from
    /// `rgb`). Methods that read none ignore them.
    fn reconstruct_raw_with_cues(&self, rgb: &RgbImage, _cues: Option<crate::models::camera::Cues>, job: &JobContext) -> Result<Array3<f32>> {
        self.reconstruct_raw(rgb, job)
    }
}

/// What running a method tile by tile needs to know: output pixels of a tile computed from an
/// input tile `margin` pixels larger on every side equal those of the whole picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locality {
    /// Context pixels a result needs on each side.
    pub margin: usize,
    /// Tile starts must be multiples of this (pooling windows line up with the whole picture's).
    pub align: usize,
    /// The input tile side the method runs best at.
    pub tile: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReconOptions {
    /// Correct the result so the camera re-projects it to the input exactly (non-negative).
    pub consistent: bool,
    /// Scale the input to the brightness the method expects and the output back.
    pub exposure_invariant: bool,
    /// How the input's values reach the method.
    #[serde(default)]
    pub input_scale: InputScale,
    /// Run on the 8 flips and transposes of the input and combine the results.
    #[serde(default)]
    pub ensemble: Ensemble,
    /// Clip the result to [0, 1] (before `consistent`, whose correction may then exceed 1).
    #[serde(default)]
    pub clip: bool,
}

/// How the input's values reach the method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputScale {
    /// The values as stored (linear camera RGB): C·Ŷ ≈ the input.
    #[default]
    AsStored,
    /// Min–max normalised over the whole image, as the MST++ authors' predict code does; the
    /// result is in the scale the model saw, not the input's.
    MinMax,
}

/// The self-ensemble of the NTIRE entries: the method runs on the 8 combinations of a
/// horizontal flip, a vertical flip and a transpose, each result is turned back, and they are
/// combined per value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ensemble {
    #[default]
    None,
    Mean,
    /// The lower of the two middle values, as PyTorch's `median` picks for an even count.
    Median,
}

impl InputScale {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "as-stored" => Ok(InputScale::AsStored),
            "min-max" => Ok(InputScale::MinMax),
            other => Err(crate::Error::invalid(format!("unknown input scale '{other}' (expected as-stored or min-max)"))),
        }
    }
}

impl Ensemble {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Ensemble::None),
            "mean" => Ok(Ensemble::Mean),
            "median" => Ok(Ensemble::Median),
            other => Err(crate::Error::invalid(format!("unknown ensemble '{other}' (expected none, mean or median)"))),
        }
    }
}

/// Transform `t` (0..8) of a (c, rows, cols) image: bit 0 flips the columns, bit 1 the rows,
/// bit 2 transposes; with `reverse`, its inverse (the same steps in the opposite order).
fn dihedral(a: &Array3<f32>, t: usize, reverse: bool) -> Array3<f32> {
    use ndarray::s;
    let flip_cols = |a: Array3<f32>| if t & 1 != 0 { a.slice(s![.., .., ..;-1]).to_owned() } else { a };
    let flip_rows = |a: Array3<f32>| if t & 2 != 0 { a.slice(s![.., ..;-1, ..]).to_owned() } else { a };
    let transpose = |a: Array3<f32>| if t & 4 != 0 { a.permuted_axes([0, 2, 1]).as_standard_layout().to_owned() } else { a };
    let out = if reverse { flip_cols(flip_rows(transpose(a.clone()))) } else { transpose(flip_rows(flip_cols(a.clone()))) };
    // A reversed view copies into an array with negative strides: lay it out in order.
    out.as_standard_layout().into_owned()
}

/// `method` on `rgb`, or on its 8 flips and transposes combined as `ensemble` says.
fn run_ensemble(method: &dyn Reconstructor, rgb: &RgbImage, ensemble: Ensemble, cues: Option<crate::models::camera::Cues>, job: &JobContext) -> Result<Array3<f32>> {
    if ensemble == Ensemble::None {
        return method.reconstruct_raw_with_cues(rgb, cues, job);
    }
    let mut outputs = Vec::with_capacity(8);
    for t in 0..8 {
        job.check()?;
        let input = RgbImage::new(dihedral(&rgb.data, t, false))?;
        // flips and transposes leave the picture's cues as they are
        outputs.push(dihedral(&method.reconstruct_raw_with_cues(&input, cues, job)?, t, true));
    }
    let mut out = outputs[0].clone();
    match ensemble {
        Ensemble::Mean => {
            for o in &outputs[1..] {
                out += o;
            }
            out.mapv_inplace(|v| v / outputs.len() as f32);
        }
        Ensemble::Median => {
            // Every member is in standard layout (turned back with owned copies).
            let members = outputs.iter().map(|o| o.as_slice().ok_or_else(|| crate::Error::invalid("ensemble member not contiguous"))).collect::<Result<Vec<&[f32]>>>()?;
            let mut values = [0.0f32; 8];
            for (i, v) in out.iter_mut().enumerate() {
                for (slot, o) in values.iter_mut().zip(&members) {
                    *slot = o[i];
                }
                values.sort_by(|a, b| a.total_cmp(b));
                *v = values[3];
            }
        }
        Ensemble::None => unreachable!("handled above"),
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Reconstruction {
    pub cube: Cube,
    pub method: String,
    pub seconds: f64,
    /// Input brightness ÷ the method's reference, when exposure invariance rescaled it.
    pub exposure_scale: Option<f32>,
    pub consistency: Option<ConsistencyReport>,
    /// The values the method gave below zero, set to zero (radiance is not negative).
    pub clamped: Clamped,
}

/// Values a method gave below zero, which the shared pass set to zero: a network without the
/// consistency option can dip below zero, and the user is told how much rather than shown a
/// negative radiance or a silently changed one.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Clamped {
    /// How many values were below zero.
    pub below_zero: u64,
    /// Of how many.
    pub samples: u64,
    /// The most negative value (0 when none was).
    pub min: f32,
}

impl Clamped {
    pub fn of(data: &Array3<f32>) -> Clamped {
        let (below_zero, min) = data.iter().fold((0u64, 0f32), |(n, m), &v| if v < 0.0 { (n + 1, m.min(v)) } else { (n, m) });
        Clamped { below_zero, samples: data.len() as u64, min }
    }

    /// Two counts as one (tiles of one picture).
    pub fn merge(self, other: Clamped) -> Clamped {
        Clamped { below_zero: self.below_zero + other.below_zero, samples: self.samples + other.samples, min: self.min.min(other.min) }
    }

    pub fn fraction(&self) -> f64 {
        if self.samples == 0 { 0.0 } else { self.below_zero as f64 / self.samples as f64 }
    }

    /// "12 of 59520 values (0.02 %) were below zero (down to -0.017) and were set to 0", or None.
    pub fn describe(&self) -> Option<String> {
        (self.below_zero > 0).then(|| {
            let pct = 100.0 * self.fraction();
            let pct = if pct >= 0.01 { format!("{pct:.2} %") } else { format!("{pct:.1e} %") };
            format!("{} of {} values ({pct}) were below zero (down to {:.3}) and were set to 0", self.below_zero, self.samples, self.min)
        })
    }
}

/// Run `method` on `rgb` with the shared options. `camera` is the camera assumed to have taken
/// the picture (used for the consistency correction).
pub fn reconstruct(method: &dyn Reconstructor, rgb: &RgbImage, camera: &CameraResponse, options: ReconOptions, job: &JobContext) -> Result<Reconstruction> {
    let start = Instant::now();
    let stats = PictureStats::of(rgb.data.iter().copied());
    if stats.non_finite > 0 {
        bail_invalid!("input RGB has {} NaN or infinite values; reconstruction needs finite pixels", stats.non_finite);
    }
    if rgb.rows() == 0 || rgb.cols() == 0 {
        bail_invalid!("input RGB is empty ({}x{})", rgb.rows(), rgb.cols());
    }
    let (data, exposure_scale, consistency, clamped) = reconstruct_part(method, rgb, camera, options, &stats, job)?;
    let mut cube = Cube::new(data, method.wavelengths().to_vec())?;
    cube.meta.description = Some(format!("reconstructed by {} from RGB", method.name()));
    Ok(Reconstruction { cube, method: method.name().to_string(), seconds: start.elapsed().as_secs_f64(), exposure_scale, consistency, clamped })
}

/// What the shared options read from the whole picture: its range (min–max scaling) and mean
/// (exposure invariance), and the cues of its light for the methods that read them. A picture
/// reconstructed in tiles gives every tile the whole one's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PictureStats {
    pub lo: f32,
    pub hi: f32,
    pub mean: f32,
    pub non_finite: usize,
    /// `None`: the method takes them from the picture it is given.
    pub cues: Option<crate::models::camera::Cues>,
}

impl PictureStats {
    pub fn of(values: impl Iterator<Item = f32>) -> PictureStats {
        let mut acc = PictureStats::empty();
        let (mut sum, mut n) = (0f64, 0usize);
        acc.add(values, &mut sum, &mut n);
        acc.finish(sum, n)
    }

    /// Nothing seen yet; fold values in with [`PictureStats::add`], then [`PictureStats::finish`].
    pub fn empty() -> PictureStats {
        PictureStats { lo: f32::INFINITY, hi: f32::NEG_INFINITY, mean: 0.0, non_finite: 0, cues: None }
    }

    pub fn add(&mut self, values: impl Iterator<Item = f32>, sum: &mut f64, n: &mut usize) {
        for v in values {
            if !v.is_finite() {
                self.non_finite += 1;
                continue;
            }
            self.lo = self.lo.min(v);
            self.hi = self.hi.max(v);
            *sum += v as f64;
            *n += 1;
        }
    }

    pub fn finish(mut self, sum: f64, n: usize) -> PictureStats {
        self.mean = if n > 0 { (sum / n as f64) as f32 } else { 0.0 };
        self
    }
}

/// The method and the shared options on `rgb` (the whole picture or a tile of it), with the
/// whole picture's `stats`: the raw result, the exposure scale used and the consistency report.
pub fn reconstruct_part(
    method: &dyn Reconstructor,
    rgb: &RgbImage,
    camera: &CameraResponse,
    options: ReconOptions,
    stats: &PictureStats,
    job: &JobContext,
) -> Result<(Array3<f32>, Option<f32>, Option<ConsistencyReport>, Clamped)> {
    let scaled;
    let rgb = match options.input_scale {
        InputScale::AsStored => rgb,
        InputScale::MinMax => {
            let (lo, hi) = (stats.lo, stats.hi);
            if hi <= lo {
                bail_invalid!("the input RGB is constant ({lo}): min-max normalisation is undefined");
            }
            scaled = RgbImage::new(rgb.data.mapv(|v| (v - lo) / (hi - lo)))?;
            &scaled
        }
    };
    let exposure_scale = match (options.exposure_invariant, method.reference_brightness()) {
        (true, Some(reference)) if reference > 0.0 => {
            // the mean of what the method sees (after min-max scaling, when asked)
            let mean = match options.input_scale {
                InputScale::AsStored => stats.mean,
                InputScale::MinMax => (stats.mean - stats.lo) / (stats.hi - stats.lo),
            };
            (mean > 0.0).then_some(mean / reference)
        }
        _ => None,
    };
    let mut data = match exposure_scale {
        Some(scale) => {
            let normalised = RgbImage::new(rgb.data.mapv(|v| v / scale))?;
            let mut y = run_ensemble(method, &normalised, options.ensemble, stats.cues, job)?;
            y.mapv_inplace(|v| v * scale);
            y
        }
        None => run_ensemble(method, rgb, options.ensemble, stats.cues, job)?,
    };
    // Radiance is not negative; the closed-form methods clip the same way in their own pass.
    let clamped = Clamped::of(&data);
    let top = if options.clip { 1.0 } else { f32::INFINITY };
    data.mapv_inplace(|v| v.clamp(0.0, top));
    let consistency = if options.consistent {
        job.check()?;
        job.report(1.0, "making the result consistent with the input");
        let c = camera.on_grid(method.wavelengths())?;
        Some(consistency::make_consistent(&mut data, rgb, &c)?)
    } else {
        None
    };
    Ok((data, exposure_scale, consistency, clamped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(rows: usize, cols: usize) -> Array3<f32> {
        Array3::from_shape_fn((3, rows, cols), |(c, r, k)| 0.05 + 0.01 * (c * 31 + r * 7 + k * 3) as f32 + 0.002 * ((r * k) % 5) as f32)
    }

    #[test]
    fn every_dihedral_transform_is_undone_by_its_reverse_and_all_eight_differ() {
        let a = image(4, 6);
        let mut seen = Vec::new();
        for t in 0..8 {
            let forward = dihedral(&a, t, false);
            assert_eq!(dihedral(&forward, t, true), a, "transform {t}");
            assert_eq!(forward.dim(), if t & 4 != 0 { (3, 6, 4) } else { (3, 4, 6) });
            assert!(!seen.contains(&forward), "transform {t} repeats another");
            seen.push(forward);
        }
    }

    #[test]
    fn values_below_zero_are_set_to_zero_and_counted() {
        /// Band b of every pixel is its red value minus b/10: negative in the last bands.
        struct Dipping(Vec<f32>);
        impl Reconstructor for Dipping {
            fn name(&self) -> &str {
                "dipping"
            }
            fn wavelengths(&self) -> &[f32] {
                &self.0
            }
            fn reference_brightness(&self) -> Option<f32> {
                None
            }
            fn reconstruct_raw(&self, rgb: &RgbImage, _: &JobContext) -> Result<Array3<f32>> {
                Ok(Array3::from_shape_fn((self.0.len(), rgb.rows(), rgb.cols()), |(b, r, c)| rgb.data[[0, r, c]] - b as f32 / 10.0))
            }
        }
        let camera = CameraResponse::builtin("canon").unwrap();
        let method = Dipping(vec![400.0, 500.0, 600.0, 700.0]);
        let rgb = RgbImage::new(Array3::from_elem((3, 2, 5), 0.15)).unwrap();
        let r = reconstruct(&method, &rgb, &camera, ReconOptions::default(), &JobContext::silent()).unwrap();
        // bands 2 and 3 (0.15 - 0.2, 0.15 - 0.3) of 10 pixels dip below zero
        assert_eq!((r.clamped.below_zero, r.clamped.samples), (20, 40));
        assert!((r.clamped.min + 0.15).abs() < 1e-6, "{}", r.clamped.min);
        assert!(r.cube.data.iter().all(|&v| v >= 0.0));
        assert_eq!(r.clamped.describe().unwrap(), "20 of 40 values (50.00 %) were below zero (down to -0.150) and were set to 0");
        let bright = RgbImage::new(Array3::from_elem((3, 2, 5), 0.5)).unwrap();
        assert_eq!(reconstruct(&method, &bright, &camera, ReconOptions::default(), &JobContext::silent()).unwrap().clamped.describe(), None);
    }

    #[test]
    fn min_max_input_ignores_offset_and_scale_the_ensemble_keeps_a_per_pixel_method_and_clip_bounds_it() {
        let camera = CameraResponse::builtin("canon").unwrap();
        let method = classical::LinearMapReconstructor::spline(&camera).unwrap();
        let rgb = RgbImage::new(image(5, 7)).unwrap();
        let shifted = RgbImage::new(rgb.data.mapv(|v| 3.0 * v + 1.0)).unwrap();
        let job = JobContext::silent();
        let min_max = ReconOptions { input_scale: InputScale::MinMax, ..Default::default() };
        let a = reconstruct(&method, &rgb, &camera, min_max, &job).unwrap().cube.data;
        let b = reconstruct(&method, &shifted, &camera, min_max, &job).unwrap().cube.data;
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
        // A per-pixel method gives the same result on every flip and transpose.
        let plain = reconstruct(&method, &rgb, &camera, ReconOptions::default(), &job).unwrap().cube.data;
        for ensemble in [Ensemble::Mean, Ensemble::Median] {
            let e = reconstruct(&method, &rgb, &camera, ReconOptions { ensemble, ..Default::default() }, &job).unwrap().cube.data;
            assert!(e.iter().zip(&plain).all(|(x, y)| (x - y).abs() < 1e-6), "{ensemble:?}");
        }
        let bright = RgbImage::new(rgb.data.mapv(|v| 20.0 * v)).unwrap();
        let clipped = reconstruct(&method, &bright, &camera, ReconOptions { clip: true, ..Default::default() }, &job).unwrap().cube.data;
        assert!(clipped.iter().all(|&v| (0.0..=1.0).contains(&v)) && clipped.iter().any(|&v| v == 1.0));
        let constant = RgbImage::new(Array3::from_elem((3, 4, 4), 0.5)).unwrap();
        assert!(reconstruct(&method, &constant, &camera, min_max, &job).unwrap_err().to_string().contains("constant"));
    }
}
