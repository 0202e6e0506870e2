//! Reconstruction quality: scalar metrics, per-pixel error maps, per-band error curves and the
//! NTIRE 2020 auxiliary transforms, each defined exactly once here.
//!
//! Every function takes cubes laid out `(bands, rows, cols)` as anything that converts to an
//! `ArrayView3<f32>` (`&Array3<f32>`, `cube.data.view()`, a sliced view), so the CLI, the GUI
//! and the tests call the same code on whole cubes or crops. `pred` is the reconstruction and
//! `gt` the ground truth; their shapes must be equal. Sums are accumulated in f64.
//!
//! # Definitions
//!
//! * **MRAE** — mean of `|pred − gt| / gt` over the elements whose ground truth exceeds
//!   [`MRAE_MIN_GT`] (= 1e-3); the other elements are excluded because a relative error
//!   against a (near-)zero reference is meaningless. When no element qualifies the result is
//!   NaN (undefined, not an error, so a report can still show the other metrics).
//! * **RMSE** — square root of the mean squared error over all elements.
//! * **PSNR** — `10 · log10(1 / MSE)` in dB, with both cubes clamped to [0, 1] first (peak 1);
//!   identical cubes give +∞.
//! * **MPSNR** — the mean over bands of each band image's PSNR (same rule: clamped to [0, 1],
//!   peak 1), as hyperspectral papers report it (INSS's "mean of PSNR in each band"); a band
//!   reconstructed exactly counts as +∞, so a cube with one perfect band has MPSNR +∞.
//! * **SSIM** — mean over bands of the SSIM of each band image, computed exactly as
//!   scikit-image's `structural_similarity(gt_band, pred_band, data_range=1,
//!   gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`: Gaussian window
//!   σ = 1.5 truncated at 3.5σ (11 taps), K1 = 0.01, K2 = 0.03, population (co)variances, and
//!   the SSIM map averaged over the interior only (a border of 5 pixels is cropped). Because
//!   the cropped border equals the filter radius, every averaged value is a "valid"
//!   convolution and the filter's edge mode never matters. Bands must be at least 11 × 11.
//! * **SAM** — mean over pixels of the angle between the predicted and true spectra, in
//!   degrees. Pixels whose angle is undefined — either spectrum all zero, or holding a
//!   non-finite value (an ENVI data-ignore pixel reads as NaN) — are skipped; NaN when every
//!   pixel is skipped.
//! * **Consistency MRAE** — NTIRE's physical-consistency test: the MRAE (rule above) between
//!   the RGB image the reconstruction started from and `C · pred`, the reconstruction
//!   re-projected through the camera response C (3 × bands). The input RGB is the reference.
//!
//! Per-pixel maps (rows × cols): RMSE over bands, MRAE over the qualifying bands (NaN where
//! none qualify) and SAM in degrees (NaN where skipped). Per-band curves: RMSE and MRAE of
//! each band image. Non-finite input values are not filtered: they propagate into the
//! results (except a NaN ground truth, which fails the `gt > 1e-3` test of MRAE, and the SAM
//! rule above). In [`all_metrics`], SSIM of bands smaller than 11 × 11 is NaN rather than an
//! error; [`ssim`] itself refuses them.
//!
//! SSIM is already the mean of per-band SSIMs, which is what hyperspectral papers call MSSIM.
//!
//! A [`BandMask`] leaves wavelength ranges out of every metric but consistency (the
//! re-projection needs every band the camera sees): airborne cubes' water-vapour bands
//! ([`WATER_BANDS_NM`]) hold sensor noise, not the scene, and would dominate the errors.
//!
//! In JSON (`eval --json`), NaN and ±∞ become `null` (serde_json's rule).
//!
//! # NTIRE 2020 auxiliary tests
//!
//! * [`scale_brightness`] multiplies an image by a factor. The exposure test scales the input
//!   RGB and the ground-truth cube by the same factor (0.5 and 2 were used): a physically
//!   sound method returns the scaled spectra.
//! * [`SpatialShuffle`] cuts the image into 4 × 4 blocks and permutes the blocks (each block's
//!   content stays intact), destroying large-scale spatial context while keeping the local
//!   one. The same permutation is applied to the ground truth so the metrics compare like with
//!   like. Pixels in a right or bottom strip narrower than a block stay where they are.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, AsArray, Axis, Ix3};
use serde::Serialize;

use crate::spectral::rng::Rng;
use crate::{bail_invalid, Result};

/// Ground-truth values at or below this are excluded from MRAE.
pub const MRAE_MIN_GT: f32 = 1e-3;

/// SSIM constants (Wang et al. 2004, as scikit-image uses them).
const SSIM_K1: f64 = 0.01;
const SSIM_K2: f64 = 0.03;
const SSIM_SIGMA: f64 = 1.5;
/// scipy.ndimage truncates the Gaussian at `int(3.5 σ + 0.5)` = 5 pixels: an 11-tap window.
const SSIM_RADIUS: usize = 5;
const SSIM_WINDOW: usize = 2 * SSIM_RADIUS + 1;

/// The scalar metrics of one reconstruction, as `eval --json` prints them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MetricSet {
    pub mrae: f64,
    pub rmse: f64,
    pub psnr: f64,
    pub mpsnr: f64,
    pub ssim: f64,
    pub sam_deg: f64,
    /// `None` (JSON `null`) when no input RGB and camera were given.
    pub consistency_mrae: Option<f64>,
}

/// Error of each band image, one value per band.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BandErrors {
    pub rmse: Vec<f64>,
    /// NaN for a band with no ground-truth value above [`MRAE_MIN_GT`].
    pub mrae: Vec<f64>,
}

// ---------------------------------------------------------------------------------------------
// Scalars

/// Mean relative absolute error (see the module doc for the exclusion rule).
pub fn mrae<'a>(pred: impl AsArray<'a, f32, Ix3>, gt: impl AsArray<'a, f32, Ix3>) -> Result<f64> {
    let (pred, gt) = checked_pair(pred.into(), gt.into())?;
    let sums = band_sums(pred, gt);
    Ok(ratio(sums.iter().map(|s| s.rel_abs).sum(), sums.iter().map(|s| s.rel_count).sum()))
}

/// Root mean squared error over all elements.
pub fn rmse<'a>(pred: impl AsArray<'a, f32, Ix3>, gt: impl AsArray<'a, f32, Ix3>) -> Result<f64> {
    let (pred, gt) = checked_pair(pred.into(), gt.into())?;
    let sums = band_sums(pred, gt);
    Ok((sums.iter().map(|s| s.sq).sum::<f64>() / pred.len() as f64).sqrt())
}

/// Peak signal-to-noise ratio in dB, both cubes clamped to [0, 1]; +∞ when they agree.
pub fn psnr<'a>(pred: impl AsArray<'a, f32, Ix3>, gt: impl AsArray<'a, f32, Ix3>) -> Result<f64> {
    let (pred, gt) = checked_pair(pred.into(), gt.into())?;
    let sums = band_sums(pred, gt);
    Ok(psnr_from_mse(sums.iter().map(|s| s.sq_clamped).sum::<f64>() / pred.len() as f64))
}

/// Mean over bands of scikit-image's Gaussian-window SSIM (see the module doc).
pub fn ssim<'a>(pred: impl AsArray<'a, f32, Ix3>, gt: impl AsArray<'a, f32, Ix3>) -> Result<f64> {
    let per_band = ssim_per_band(pred, gt)?;
    Ok(per_band.iter().sum::<f64>() / per_band.len() as f64)
}

/// SSIM of each band image (the values [`ssim`] averages).
pub fn ssim_per_band<'a>(pred: impl AsArray<'a, f32, Ix3>, gt: impl AsArray<'a, f32, Ix3>) -> Result<Vec<f64>> {
    let (pred, gt) = checked_pair(pred.into(), gt.into())?;
    let (rows, cols) = (pred.shape()[1], pred.shape()[2]);
    if rows < SSIM_WINDOW || cols < SSIM_WINDOW {
        bail_invalid!("SSIM needs bands of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {rows}x{cols}");
    }
    let window = gaussian_window();
    Ok(per_band_parallel(pred.shape()[0], |b| {
        ssim_band(pred.index_axis(Axis(0), b), gt.index_axis(Axis(0), b), &window)
    }))
}

/// Mean spectral angle in degrees over pixels where neither spectrum is all zero.
pub fn sam_deg<'a>(pred: impl AsArray<'a, f32, Ix3>, gt: impl AsArray<'a, f32, Ix3>) -> Result<f64> {
    let map = sam_map(pred, gt)?;
    let (sum, n) = map.iter().filter(|v| !v.is_nan()).fold((0f64, 0usize), |(s, n), &v| (s + v as f64, n + 1));
    Ok(ratio(sum, n))
}

/// MRAE between the input RGB `(3, rows, cols)` and the reconstruction re-projected through
/// the camera response `camera` (3 × bands): NTIRE's physical-consistency test.
pub fn consistency_mrae<'a>(
    rgb_input: impl AsArray<'a, f32, Ix3>,
    camera: impl AsArray<'a, f32, ndarray::Ix2>,
    pred: impl AsArray<'a, f32, Ix3>,
) -> Result<f64> {
    let (rgb, pred) = (rgb_input.into(), pred.into());
    if rgb.shape() != [3, pred.shape()[1], pred.shape()[2]] {
        bail_invalid!(
            "input RGB has shape {:?} but the reconstruction needs [3, {}, {}]",
            rgb.shape(),
            pred.shape()[1],
            pred.shape()[2]
        );
    }
    let camera = camera.into();
    if camera.nrows() != 3 {
        bail_invalid!("camera response has shape {:?}, expected [3, bands]", camera.shape());
    }
    let projected = crate::spectral::render::project(camera, pred)?;
    mrae(projected.view(), rgb)
}

/// All scalar metrics in one call; `consistency` is the input RGB `(3, rows, cols)` and the
/// camera response (3 × bands) the reconstruction started from, if known.
pub fn all_metrics<'a>(
    pred: impl AsArray<'a, f32, Ix3>,
    gt: impl AsArray<'a, f32, Ix3>,
    consistency: Option<(ArrayView3<'_, f32>, ArrayView2<'_, f32>)>,
) -> Result<MetricSet> {
    let (pred, gt) = checked_pair(pred.into(), gt.into())?;
    let sums = band_sums(pred, gt);
    let n = pred.len() as f64;
    let consistency_mrae = match consistency {
        Some((rgb, camera)) => Some(consistency_mrae(rgb, camera, pred)?),
        None => None,
    };
    Ok(MetricSet {
        mrae: ratio(sums.iter().map(|s| s.rel_abs).sum(), sums.iter().map(|s| s.rel_count).sum()),
        rmse: (sums.iter().map(|s| s.sq).sum::<f64>() / n).sqrt(),
        psnr: psnr_from_mse(sums.iter().map(|s| s.sq_clamped).sum::<f64>() / n),
        mpsnr: sums.iter().map(|s| psnr_from_mse(s.sq_clamped * sums.len() as f64 / n)).sum::<f64>() / sums.len() as f64,
        // Undefined below the 11×11 window: NaN, like MRAE with nothing to average, so the
        // other metrics of a small crop are still reported.
        ssim: if pred.shape()[1] < SSIM_WINDOW || pred.shape()[2] < SSIM_WINDOW { f64::NAN } else { ssim(pred, gt)? },
        sam_deg: sam_deg(pred, gt)?,
        consistency_mrae,
    })
}

/// Everything measured of one reconstruction against its ground truth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    #[serde(flatten)]
    pub metrics: MetricSet,
    /// Every band's errors, the masked ones included.
    pub bands: BandErrors,
    /// How many bands the scalar metrics counted (all but those a [`BandMask`] left out).
    pub bands_scored: usize,
}

/// The water-vapour absorption windows airborne users drop, in nm: AVIRIS bands 104–114 and
/// 152–168, the ones INSS leaves out of training and evaluation.
pub const WATER_BANDS_NM: [(f32, f32); 2] = [(1340.0, 1460.0), (1790.0, 1970.0)];

/// Wavelength ranges left out of a score (inclusive, nm).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BandMask {
    pub excluded_nm: Vec<(f32, f32)>,
}

impl BandMask {
    /// `water` ([`WATER_BANDS_NM`]), `LO-HI` in nm, or a comma list of both:
    /// `water,2400-2500`. (The CLI adds `bbl`, an ENVI header's bad bands.)
    pub fn parse(spec: &str) -> Result<BandMask> {
        let mut excluded_nm = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("water") {
                excluded_nm.extend(WATER_BANDS_NM);
                continue;
            }
            let range = part.split_once('-').and_then(|(lo, hi)| Some((lo.trim().parse::<f32>().ok()?, hi.trim().parse::<f32>().ok()?)));
            match range {
                Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo <= hi => excluded_nm.push((lo, hi)),
                _ => bail_invalid!("band mask '{part}': give 'water', 'bbl' or a range in nm such as 1340-1460"),
            }
        }
        if excluded_nm.is_empty() {
            bail_invalid!("band mask '{spec}' names no range: give 'water' or ranges in nm such as 1340-1460");
        }
        Ok(BandMask { excluded_nm })
    }

    /// The indices of the bands kept.
    pub fn kept(&self, wavelengths: &[f32]) -> Vec<usize> {
        (0..wavelengths.len()).filter(|&b| !self.excluded_nm.iter().any(|&(lo, hi)| (lo..=hi).contains(&wavelengths[b]))).collect()
    }
}

/// The scoring function: the one the CLI's `eval` and `compare`, training's validation and the
/// studio all call. `pred` against `gt`, which must have the same shape and wavelength grid;
/// given the input RGB and the camera assumed (C on the cubes' grid), also the consistency
/// test, for which the RGB must be the cubes' size.
pub fn score(pred: &crate::Cube, gt: &crate::Cube, input: Option<(&crate::RgbImage, &crate::spectral::camera::CameraResponse)>) -> Result<Score> {
    score_masked(pred, gt, input, None)
}

/// [`score`] with the bands `mask` leaves out not counted in the scalar metrics (consistency
/// still re-projects every band); an error when the mask leaves no band.
pub fn score_masked(
    pred: &crate::Cube,
    gt: &crate::Cube,
    input: Option<(&crate::RgbImage, &crate::spectral::camera::CameraResponse)>,
    mask: Option<&BandMask>,
) -> Result<Score> {
    let same_grid = pred.wavelengths.len() == gt.wavelengths.len() && pred.wavelengths.iter().zip(&gt.wavelengths).all(|(a, b)| (a - b).abs() < 0.01);
    if pred.data.dim() == gt.data.dim() && !same_grid {
        bail_invalid!("the prediction and the ground truth are on different wavelength grids");
    }
    let camera = match input {
        Some((rgb, camera)) => {
            if (rgb.rows(), rgb.cols()) != (pred.rows(), pred.cols()) {
                bail_invalid!("the input RGB is {}×{} but the prediction is {}×{}", rgb.rows(), rgb.cols(), pred.rows(), pred.cols());
            }
            Some((rgb, camera.on_grid(&pred.wavelengths)?))
        }
        None => None,
    };
    let consistency = camera.as_ref().map(|(rgb, c)| (rgb.data.view(), c.view()));
    let (metrics, bands_scored) = match mask {
        None => (all_metrics(&pred.data, &gt.data, consistency)?, pred.bands()),
        Some(mask) => {
            let kept = mask.kept(&pred.wavelengths);
            if kept.is_empty() {
                bail_invalid!("the band mask leaves none of the {} bands ({:.0}-{:.0} nm)", pred.bands(), pred.wavelengths[0], pred.wavelengths[pred.bands() - 1]);
            }
            let (p, g) = (pred.data.select(Axis(0), &kept), gt.data.select(Axis(0), &kept));
            let mut m = all_metrics(&p, &g, None)?;
            if let Some((rgb, c)) = consistency {
                m.consistency_mrae = Some(consistency_mrae(rgb, c, pred.data.view())?);
            }
            (m, kept.len())
        }
    };
    Ok(Score { metrics, bands: band_errors(&pred.data, &gt.data)?, bands_scored })
}

// ---------------------------------------------------------------------------------------------
// Maps and curves

/// Per-pixel RMSE over bands, (rows, cols).
pub fn rmse_map<'a>(pred: impl AsArray<'a, f32, Ix3>, gt: impl AsArray<'a, f32, Ix3>) -> Result<Array2<f32>> {
    let (pred, gt) = checked_pair(pred.into(), gt.into())?;
    let bands = pred.shape()[0] as f64;
    let mut sq = Array2::<f64>::zeros((pred.shape()[1], pred.shape()[2]));
    for (p, g) in pred.outer_iter().zip(gt.outer_iter()) {
        ndarray::Zip::from(&mut sq).and(&p).and(&g).for_each(|s, &p, &g| {
            let d = p as f64 - g as f64;
            *s += d * d;
        });
    }
    Ok(sq.mapv(|s| (s / bands).sqrt() as f32))
}

/// Per-pixel MRAE over the bands whose ground truth exceeds [`MRAE_MIN_GT`]; NaN where none.
pub fn mrae_map<'a>(pred: impl AsArray<'a, f32, Ix3>, gt: impl AsArray<'a, f32, Ix3>) -> Result<Array2<f32>> {
    let (pred, gt) = checked_pair(pred.into(), gt.into())?;
    let shape = (pred.shape()[1], pred.shape()[2]);
    let mut sum = Array2::<f64>::zeros(shape);
    let mut count = Array2::<u32>::zeros(shape);
    for (p, g) in pred.outer_iter().zip(gt.outer_iter()) {
        ndarray::Zip::from(&mut sum).and(&mut count).and(&p).and(&g).for_each(|s, c, &p, &g| {
            if g > MRAE_MIN_GT {
                *s += (p as f64 - g as f64).abs() / g as f64;
                *c += 1;
            }
        });
    }
    Ok(ndarray::Zip::from(&sum).and(&count).map_collect(|&s, &c| ratio(s, c as usize) as f32))
}

/// Per-pixel spectral angle in degrees; NaN where either spectrum is all zero.
pub fn sam_map<'a>(pred: impl AsArray<'a, f32, Ix3>, gt: impl AsArray<'a, f32, Ix3>) -> Result<Array2<f32>> {
    let (pred, gt) = checked_pair(pred.into(), gt.into())?;
    let shape = (pred.shape()[1], pred.shape()[2]);
    // Band planes are contiguous, so accumulate the three dot products plane by plane rather
    // than reading each spectrum with a stride.
    let mut pg = Array2::<f64>::zeros(shape);
    let mut pp = Array2::<f64>::zeros(shape);
    let mut gg = Array2::<f64>::zeros(shape);
    for (p, g) in pred.outer_iter().zip(gt.outer_iter()) {
        ndarray::Zip::from(&mut pg).and(&mut pp).and(&mut gg).and(&p).and(&g).for_each(|pg, pp, gg, &p, &g| {
            let (p, g) = (p as f64, g as f64);
            *pg += p * g;
            *pp += p * p;
            *gg += g * g;
        });
    }
    Ok(ndarray::Zip::from(&pg).and(&pp).and(&gg).map_collect(|&pg, &pp, &gg| {
        if pp == 0.0 || gg == 0.0 {
            f32::NAN
        } else {
            // Rounding can push the cosine of parallel spectra just past 1.
            (pg / (pp * gg).sqrt()).clamp(-1.0, 1.0).acos().to_degrees() as f32
        }
    }))
}

/// RMSE and MRAE of each band image.
pub fn band_errors<'a>(pred: impl AsArray<'a, f32, Ix3>, gt: impl AsArray<'a, f32, Ix3>) -> Result<BandErrors> {
    let (pred, gt) = checked_pair(pred.into(), gt.into())?;
    let pixels = (pred.shape()[1] * pred.shape()[2]) as f64;
    let sums = band_sums(pred, gt);
    Ok(BandErrors {
        rmse: sums.iter().map(|s| (s.sq / pixels).sqrt()).collect(),
        mrae: sums.iter().map(|s| ratio(s.rel_abs, s.rel_count)).collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// NTIRE auxiliary transforms

/// `data · factor`, for the exposure test (apply it to the input RGB and the ground truth).
pub fn scale_brightness<'a>(data: impl AsArray<'a, f32, Ix3>, factor: f32) -> Result<Array3<f32>> {
    if !(factor.is_finite() && factor > 0.0) {
        bail_invalid!("brightness factor must be a positive number, got {factor}");
    }
    Ok(data.into().mapv(|v| v * factor))
}

/// A seeded permutation of the `block × block` tiles of a `rows × cols` image: NTIRE 2020's
/// spatial-shuffle test (block 4). Apply the same plan to the input RGB and the ground truth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpatialShuffle {
    rows: usize,
    cols: usize,
    block: usize,
    /// Destination tile `i` (row-major over the tile grid) takes source tile `source[i]`.
    source: Vec<usize>,
}

impl SpatialShuffle {
    /// The permutation for images of `rows × cols`; the same seed gives the same permutation.
    pub fn new(rows: usize, cols: usize, block: usize, seed: u64) -> Result<SpatialShuffle> {
        if block == 0 {
            bail_invalid!("shuffle block size must be at least 1");
        }
        let tiles = (rows / block) * (cols / block);
        if tiles == 0 {
            bail_invalid!("a {rows}x{cols} image holds no whole {block}x{block} block to shuffle");
        }
        let mut source: Vec<usize> = (0..tiles).collect();
        Rng::new(seed).shuffle(&mut source);
        Ok(SpatialShuffle { rows, cols, block, source })
    }

    /// The NTIRE 2020 test: 4 × 4 blocks.
    pub fn ntire(rows: usize, cols: usize, seed: u64) -> Result<SpatialShuffle> {
        SpatialShuffle::new(rows, cols, 4, seed)
    }

    /// The image `(channels, rows, cols)` with its tiles permuted.
    pub fn apply<'a>(&self, image: impl AsArray<'a, f32, Ix3>) -> Result<Array3<f32>> {
        self.permute(image.into(), false)
    }

    /// Undoes [`SpatialShuffle::apply`] (to view a reconstruction of a shuffled input in the
    /// original layout).
    pub fn invert<'a>(&self, image: impl AsArray<'a, f32, Ix3>) -> Result<Array3<f32>> {
        self.permute(image.into(), true)
    }

    fn permute(&self, image: ArrayView3<'_, f32>, inverse: bool) -> Result<Array3<f32>> {
        let (rows, cols) = (image.shape()[1], image.shape()[2]);
        if (rows, cols) != (self.rows, self.cols) {
            bail_invalid!("the shuffle was made for {}x{} images, this one is {rows}x{cols}", self.rows, self.cols);
        }
        let mut out = image.to_owned();
        let (b, tiles_per_row) = (self.block, self.cols / self.block);
        for (dst, &src) in self.source.iter().enumerate() {
            let (to, from) = if inverse { (src, dst) } else { (dst, src) };
            let (tr, tc) = ((to / tiles_per_row) * b, (to % tiles_per_row) * b);
            let (fr, fc) = ((from / tiles_per_row) * b, (from % tiles_per_row) * b);
            out.slice_mut(ndarray::s![.., tr..tr + b, tc..tc + b]).assign(&image.slice(ndarray::s![
                ..,
                fr..fr + b,
                fc..fc + b
            ]));
        }
        Ok(out)
    }
}

/// Shorthand: `image` with its `block × block` tiles permuted by the plan for `seed`.
pub fn spatial_shuffle<'a>(image: impl AsArray<'a, f32, Ix3>, block: usize, seed: u64) -> Result<Array3<f32>> {
    let image = image.into();
    SpatialShuffle::new(image.shape()[1], image.shape()[2], block, seed)?.apply(image)
}

// ---------------------------------------------------------------------------------------------
// Internals

/// Both views, after checking they have the same shape and are not empty.
fn checked_pair<'a>(
    pred: ArrayView3<'a, f32>,
    gt: ArrayView3<'a, f32>,
) -> Result<(ArrayView3<'a, f32>, ArrayView3<'a, f32>)> {
    if pred.shape() != gt.shape() {
        bail_invalid!(
            "prediction has shape {:?} (bands, rows, cols) but ground truth has {:?}",
            pred.shape(),
            gt.shape()
        );
    }
    if pred.is_empty() {
        bail_invalid!("cannot compare empty cubes of shape {:?}", pred.shape());
    }
    Ok((pred, gt))
}

/// The sums one pass over a band yields.
#[derive(Clone, Copy, Default)]
struct BandSums {
    /// Σ |p − g| / g over g > MRAE_MIN_GT, and how many such elements.
    rel_abs: f64,
    rel_count: usize,
    /// Σ (p − g)².
    sq: f64,
    /// Σ (clamp(p) − clamp(g))², both clamped to [0, 1].
    sq_clamped: f64,
}

fn band_sums(pred: ArrayView3<'_, f32>, gt: ArrayView3<'_, f32>) -> Vec<BandSums> {
    per_band_parallel(pred.shape()[0], |b| {
        let mut s = BandSums::default();
        ndarray::Zip::from(pred.index_axis(Axis(0), b)).and(gt.index_axis(Axis(0), b)).for_each(|&p, &g| {
            let d = p as f64 - g as f64;
            s.sq += d * d;
            let dc = p.clamp(0.0, 1.0) as f64 - g.clamp(0.0, 1.0) as f64;
            s.sq_clamped += dc * dc;
            if g > MRAE_MIN_GT {
                s.rel_abs += d.abs() / g as f64;
                s.rel_count += 1;
            }
        });
        s
    })
}

fn ratio(sum: f64, count: usize) -> f64 {
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

fn psnr_from_mse(mse: f64) -> f64 {
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (1.0 / mse).log10()
    }
}

/// `f(0..n)` on up to `available_parallelism` scoped threads, results in order.
fn per_band_parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(n).max(1);
    if threads == 1 {
        return (0..n).map(f).collect();
    }
    // Interleaved assignment (thread t takes t, t + threads, ...) balances bands of equal cost.
    let f = &f;
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| scope.spawn(move || (t..n).step_by(threads).map(|b| (b, f(b))).collect::<Vec<_>>()))
            .collect();
        for handle in handles {
            // A panic in a worker is a bug in this module; re-raise it on the caller's thread.
            for (b, value) in handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e)) {
                slots[b] = Some(value);
            }
        }
    });
    slots.into_iter().map(|v| v.expect("every band computed")).collect()
}

/// scipy.ndimage's normalised Gaussian for σ = 1.5, radius 5.
fn gaussian_window() -> [f64; SSIM_WINDOW] {
    let mut w = [0f64; SSIM_WINDOW];
    for (i, v) in w.iter_mut().enumerate() {
        let x = i as f64 - SSIM_RADIUS as f64;
        *v = (-0.5 * x * x / (SSIM_SIGMA * SSIM_SIGMA)).exp();
    }
    let sum: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= sum);
    w
}

/// Mean SSIM of one band over the interior (valid-convolution) region.
///
/// The five images x, y, x², y², xy are formed once in f64; then, row by row, a vertical pass
/// gives their windowed sums for every column of one output row and a horizontal pass reduces
/// those to the interior columns. Both passes use the window's symmetry (6 multiplies for 11
/// taps) and run along contiguous slices, so the compiler vectorises them.
fn ssim_band(x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>, w: &[f64; SSIM_WINDOW]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just checked to support AVX2.
        return unsafe { ssim_band_avx2(x, y, w) };
    }
    ssim_band_portable(x, y, w)
}

/// The same code compiled for AVX2 (4 f64 lanes instead of SSE2's 2), chosen at run time so
/// the binary still runs on any x86-64. Same operations, same order: same result.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn ssim_band_avx2(x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>, w: &[f64; SSIM_WINDOW]) -> f64 {
    ssim_band_portable(x, y, w)
}

#[inline(always)]
fn ssim_band_portable(x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>, w: &[f64; SSIM_WINDOW]) -> f64 {
    let (rows, cols) = x.dim();
    let out_cols = cols - 2 * SSIM_RADIUS;
    let c1 = (SSIM_K1 * 1.0).powi(2);
    let c2 = (SSIM_K2 * 1.0).powi(2);

    // planes[p] is image p (x, y, xx, yy, xy), rows × cols, row-major.
    let n = rows * cols;
    let mut planes = vec![0f64; 5 * n];
    {
        let (px, rest) = planes.split_at_mut(n);
        let (py, rest) = rest.split_at_mut(n);
        let (pxx, rest) = rest.split_at_mut(n);
        let (pyy, pxy) = rest.split_at_mut(n);
        let values = x.iter().zip(y.iter());
        for (i, (&a, &b)) in values.enumerate() {
            let (a, b) = (a as f64, b as f64);
            px[i] = a;
            py[i] = b;
            pxx[i] = a * a;
            pyy[i] = b * b;
            pxy[i] = a * b;
        }
    }

    let centre = w[SSIM_RADIUS];
    let mut vertical = vec![0f64; cols];
    // Horizontal results: [x, y, xx, yy, xy] × out_cols.
    let mut h = vec![0f64; 5 * out_cols];
    let mut total = 0f64;
    for r in SSIM_RADIUS..rows - SSIM_RADIUS {
        for (plane, out) in planes.chunks_exact(n).zip(h.chunks_exact_mut(out_cols)) {
            let row = |i: usize| &plane[i * cols..(i + 1) * cols];
            for (v, &a) in vertical.iter_mut().zip(row(r)) {
                *v = centre * a;
            }
            for k in 1..=SSIM_RADIUS {
                let wk = w[SSIM_RADIUS + k];
                for (v, (&up, &down)) in vertical.iter_mut().zip(row(r - k).iter().zip(row(r + k))) {
                    *v += wk * (up + down);
                }
            }
            let mid = &vertical[SSIM_RADIUS..SSIM_RADIUS + out_cols];
            for (o, &a) in out.iter_mut().zip(mid) {
                *o = centre * a;
            }
            for k in 1..=SSIM_RADIUS {
                let wk = w[SSIM_RADIUS + k];
                let left = &vertical[SSIM_RADIUS - k..SSIM_RADIUS - k + out_cols];
                let right = &vertical[SSIM_RADIUS + k..SSIM_RADIUS + k + out_cols];
                for (o, (&l, &r)) in out.iter_mut().zip(left.iter().zip(right)) {
                    *o += wk * (l + r);
                }
            }
        }
        let (ux, rest) = h.split_at(out_cols);
        let (uy, rest) = rest.split_at(out_cols);
        let (uxx, rest) = rest.split_at(out_cols);
        let (uyy, uxy) = rest.split_at(out_cols);
        for c in 0..out_cols {
            let (mx, my) = (ux[c], uy[c]);
            let vx = uxx[c] - mx * mx;
            let vy = uyy[c] - my * my;
            let cov = uxy[c] - mx * my;
            total += ((2.0 * mx * my + c1) * (2.0 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
        }
    }
    total / ((rows - 2 * SSIM_RADIUS) * out_cols) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(bands: usize, rows: usize, cols: usize) -> Array3<f32> {
        Array3::from_shape_fn((bands, rows, cols), |(b, r, c)| 0.01 + 0.001 * (b * 7 + r * 3 + c) as f32)
    }

    #[test]
    fn score_checks_grid_and_input_size_and_scores_consistency() {
        let wl: Vec<f32> = crate::default_wavelengths();
        let gt = crate::Cube::new(ramp(wl.len(), 12, 13), wl.clone()).unwrap();
        let pred = crate::Cube::new(gt.data.mapv(|v| v * 1.1), wl.clone()).unwrap();
        let camera = crate::spectral::camera::CameraResponse::parse("canon").unwrap();
        let c = camera.on_grid(&wl).unwrap();
        let rgb = crate::RgbImage::new(crate::spectral::render::project(c.view(), gt.data.view()).unwrap()).unwrap();
        let s = score(&pred, &gt, Some((&rgb, &camera))).unwrap();
        assert_eq!(s.metrics, all_metrics(&pred.data, &gt.data, Some((rgb.data.view(), c.view()))).unwrap());
        assert!((s.metrics.consistency_mrae.unwrap() - 0.1).abs() < 1e-3, "{:?}", s.metrics);
        assert_eq!(s.bands, band_errors(&pred.data, &gt.data).unwrap());
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["mrae"].is_f64() && json["bands"]["rmse"].as_array().unwrap().len() == wl.len(), "{json}");
        assert_eq!(score(&pred, &gt, None).unwrap().metrics.consistency_mrae, None);
        let shifted = crate::Cube::new(gt.data.clone(), wl.iter().map(|w| w + 5.0).collect()).unwrap();
        assert!(score(&shifted, &gt, None).unwrap_err().to_string().contains("wavelength grids"));
        let small = crate::RgbImage::new(rgb.data.slice(ndarray::s![.., ..6, ..]).to_owned()).unwrap();
        assert!(score(&pred, &gt, Some((&small, &camera))).unwrap_err().to_string().contains("input RGB is 6×13"));
    }

    #[test]
    fn identical_cubes_are_perfect() {
        let a = ramp(4, 12, 13);
        let m = all_metrics(&a, &a, None).unwrap();
        assert_eq!(m.mrae, 0.0);
        assert_eq!(m.rmse, 0.0);
        assert_eq!(m.psnr, f64::INFINITY);
        assert!((m.ssim - 1.0).abs() < 1e-12);
        assert!(m.sam_deg.abs() < 1e-3);
        assert_eq!(m.consistency_mrae, None);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"psnr\":null") && json.contains("\"consistency_mrae\":null"), "{json}");
    }

    #[test]
    fn shape_mismatch_names_both_shapes() {
        let err = rmse(&ramp(3, 4, 5), &ramp(3, 4, 6)).unwrap_err().to_string();
        assert!(err.contains("[3, 4, 5]") && err.contains("[3, 4, 6]"), "{err}");
        assert!(ssim(&ramp(3, 10, 20), &ramp(3, 10, 20)).is_err());
    }

    #[test]
    fn mrae_excludes_small_ground_truth_and_is_nan_when_nothing_is_left() {
        let gt = Array3::from_shape_vec((1, 1, 3), vec![0.5, 0.0005, 1.0]).unwrap();
        let pred = Array3::from_shape_vec((1, 1, 3), vec![0.6, 9.0, 1.0]).unwrap();
        assert!((mrae(&pred, &gt).unwrap() - 0.1).abs() < 1e-7);
        let zeros = Array3::<f32>::zeros((1, 2, 2));
        assert!(mrae(&zeros, &zeros).unwrap().is_nan());
    }

    #[test]
    fn sam_of_scaled_spectrum_is_zero_and_orthogonal_is_ninety() {
        let gt = Array3::from_shape_vec((2, 1, 2), vec![1.0, 0.0, 0.0, 0.0]).unwrap();
        let pred = Array3::from_shape_vec((2, 1, 2), vec![0.0, 0.0, 2.0, 0.0]).unwrap();
        let map = sam_map(&pred, &gt).unwrap();
        assert!((map[[0, 0]] - 90.0).abs() < 1e-5);
        assert!(map[[0, 1]].is_nan());
        assert!((sam_deg(&pred, &gt).unwrap() - 90.0).abs() < 1e-5);
    }

    #[test]
    fn shuffle_round_trips_and_moves_whole_blocks() {
        let img = ramp(2, 9, 10);
        let plan = SpatialShuffle::ntire(9, 10, 3).unwrap();
        let shuffled = plan.apply(&img).unwrap();
        assert_ne!(shuffled, img);
        assert_eq!(plan.invert(&shuffled).unwrap(), img);
        // the strip beyond the last whole block stays in place
        assert_eq!(shuffled.slice(ndarray::s![.., 8, ..]), img.slice(ndarray::s![.., 8, ..]));
        assert_eq!(shuffled.slice(ndarray::s![.., .., 8..]), img.slice(ndarray::s![.., .., 8..]));
        // each 4x4 tile of the output is some whole 4x4 tile of the input
        for (tr, tc) in [(0, 0), (0, 4), (4, 0), (4, 4)] {
            let tile = shuffled.slice(ndarray::s![.., tr..tr + 4, tc..tc + 4]);
            let found = [(0, 0), (0, 4), (4, 0), (4, 4)]
                .iter()
                .any(|&(r, c)| img.slice(ndarray::s![.., r..r + 4, c..c + 4]) == tile);
            assert!(found);
        }
        assert!(SpatialShuffle::new(3, 3, 4, 0).is_err());
    }
}
