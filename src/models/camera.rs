//! What a camera-aware network is told about the camera that took its input.
//!
//! A network trained for one camera silently degrades on another. A camera-aware one carries a
//! spectral prior, the second moment M of its training spectra (`wiener.moment`, fixed, not
//! trained), and for the camera C of each image derives three matrices:
//!
//! - the Wiener map P(C) = M·Cᵀ(C·M·Cᵀ + σ²I)⁻¹ (bands × 3): the least-squares spectrum of an RGB
//!   for this camera, which the network refines;
//! - camera-normalised input coordinates A(C) = Uₖᵀ·P(C) (k × 3), Uₖ the k leading
//!   eigenvectors of M: the same spectrum gives the same coordinates whatever camera saw it;
//! - the metamer projector N(C) = I − Cᵀ(C·Cᵀ)⁻¹C (bands × bands): the network's correction is
//!   projected onto the spectra this camera cannot see, so the result re-projects through C to
//!   what the Wiener estimate does (≈ the input).
//!
//! So ŷ = P(C)·x + N(C)·f(A(C)·x), per pixel, with x the pixel's chromaticity.

use crate::recon::linalg::{solve_spd, symmetric_eigen};
use candle_core::{DType, Device, Result, Tensor};
use ndarray::{Array2, Axis};

/// Noise of the Wiener map, relative to the mean signal power per channel (as `pca`'s).
pub const WIENER_NOISE: f64 = 1e-3;

/// The per-image camera matrices of a batch, stacked: `wiener` (b, bands, 3), `coords`
/// (b, k, 3), `null` (b, bands, bands); and, for a network that reads the scene's light from
/// the whole picture, each image's [`illumination_cues`] as `cues` (b, 3, n, 1), the first n
/// it reads.
#[derive(Debug, Clone)]
pub struct CameraBatch {
    pub wiener: Tensor,
    pub coords: Tensor,
    pub null: Tensor,
    pub cues: Option<Tensor>,
}

impl CameraBatch {
    /// The same batch with the first `count` of each image's illumination cues (one set per
    /// camera, in order).
    pub fn with_cues(mut self, cues: &[Cues], count: usize) -> Result<Self> {
        let b = self.wiener.dim(0)?;
        if cues.len() != b {
            candle_core::bail!("{} illumination cues for {b} images", cues.len())
        }
        if count == 0 || count > CUES {
            candle_core::bail!("a network reads 1..={CUES} cues, not {count}")
        }
        // [cue 0 r, g, b, cue 1 r, g, b, …] per image → (b, 3, count, 1): channel-major, cue-minor.
        let values: Vec<f32> = cues.iter().flat_map(|c| (0..3).flat_map(move |ch| (0..count).map(move |k| c[3 * k + ch]))).collect();
        let t = Tensor::from_vec(values, (b, 3, count, 1), self.wiener.device())?.to_dtype(self.wiener.dtype())?;
        self.cues = Some(t);
        Ok(self)
    }
}

/// Share of the brightest pixels whose mean is the "bright" cue, and of the well-lit pixels
/// whose mean is each gamut cue.
const BRIGHT_SHARE: f64 = 0.02;

/// Below this share of the bright cue's R+G+B a pixel is too dark for the gamut cues (its
/// chromaticity is mostly noise in a real picture).
const GAMUT_FLOOR: f64 = 0.05;

/// Cues a picture gives ([`illumination_cues`]): the grey world, the brightest pixels, and the
/// three gamut cues. A network reads the first 2 or all of them.
pub const CUES: usize = 5;

/// [`CUES`] chromaticities (R, G, B summing to 1), one after the other.
pub type Cues = [f32; 3 * CUES];

/// What the whole picture says about its light, camera-specific, as chromaticities (R, G, B
/// summing to 1):
/// 1. the grey world (the mean RGB);
/// 2. the mean of the brightest 2 % of pixels (by R+G+B: highlights and white surfaces carry
///    the light's colour);
/// 3.–5. the gamut cues: the mean of the 2 % of well-lit pixels (R+G+B at least 5 % of the
///    bright cue's) with the largest red, green and blue share: where the picture's colours
///    reach, which depends on the light as well as the surfaces. (Under a lamp of a few narrow
///    lines every colour is a mix of the lines', but through the broad channels of real
///    cameras that saturates the extremes only a little: on a world scene, mean extreme share
///    0.458 under three 5 nm lines against 0.445 under white light.)
///
/// `rgb` is (3, rows, cols).
pub fn illumination_cues(rgb: ndarray::ArrayView3<f32>) -> Cues {
    let (_, rows, cols) = rgb.dim();
    let n = rows * cols;
    let rgb = rgb.as_standard_layout();
    let plane = |k: usize| &rgb.as_slice().expect("standard layout")[k * n..(k + 1) * n];
    let (r, g, b) = (plane(0), plane(1), plane(2));
    let pixel = |i: usize| [f64::from(r[i]), f64::from(g[i]), f64::from(b[i])];
    let add = |picked: &[usize]| picked.iter().fold([0.0f64; 3], |acc, &i| std::array::from_fn(|k| acc[k] + pixel(i)[k]));
    let grey = [r, g, b].map(|p| p.iter().map(|&v| f64::from(v)).sum::<f64>());
    let sums: Vec<f64> = (0..n).map(|i| f64::from(r[i] + g[i] + b[i])).collect();
    let bright_pixels = top_share(&sums, BRIGHT_SHARE);
    let bright = add(&bright_pixels);
    let floor = GAMUT_FLOOR * bright.iter().sum::<f64>() / bright_pixels.len().max(1) as f64;
    let lit: Vec<usize> = (0..n).filter(|&i| sums[i] >= floor && sums[i] > 0.0).collect();
    let extreme = |k: usize| {
        let shares: Vec<f64> = lit.iter().map(|&i| pixel(i)[k] / sums[i]).collect();
        add(&top_share(&shares, BRIGHT_SHARE).into_iter().map(|j| lit[j]).collect::<Vec<_>>())
    };
    chromaticities([grey, bright, extreme(0), extreme(1), extreme(2)])
}

/// The indices of the `share` of `keys` with the largest values (at least one; none of no keys).
fn top_share(keys: &[f64], share: f64) -> Vec<usize> {
    let m = keys.len();
    if m == 0 {
        return Vec::new();
    }
    let count = ((m as f64 * share).ceil() as usize).clamp(1, m);
    let mut keyed: Vec<(f64, usize)> = keys.iter().copied().zip(0..).collect();
    keyed.select_nth_unstable_by(m - count, |a, b| a.0.total_cmp(&b.0));
    keyed[m - count..].iter().map(|&(_, i)| i).collect()
}

/// [`illumination_cues`] of a radiance cube seen through `camera`, from its light spectra
/// ([`light_spectra`]), each projected through `camera`.
pub fn illumination_cues_of(spectra: &[ndarray::Array1<f32>; CUES], camera: &Array2<f32>) -> Cues {
    let rgb = |y: &ndarray::Array1<f32>| -> [f64; 3] { std::array::from_fn(|k| f64::from(camera.row(k).dot(y))) };
    chromaticities(std::array::from_fn(|i| rgb(&spectra[i])))
}

/// The spectra behind each cue of `cube` (bands, rows, cols), so a training patch seen through
/// any camera gets its scene's cues without rendering the scene again: the mean spectrum, the
/// mean of the brightest 2 % of pixels (by spectral sum, which ranks pixels nearly as R+G+B
/// does), and the means of the pixels each gamut cue picks when `reference` (3 × bands) sees
/// the cube (another camera's picks differ a little).
pub fn light_spectra(cube: &ndarray::Array3<f32>, reference: &Array2<f32>) -> [ndarray::Array1<f32>; CUES] {
    let (bands, rows, cols) = cube.dim();
    let n = rows * cols;
    let mean = cube.mean_axis(Axis(2)).and_then(|m| m.mean_axis(Axis(1))).unwrap_or_else(|| ndarray::Array1::zeros(bands));
    let spectrum = |i: usize| cube.slice(ndarray::s![.., i / cols, i % cols]);
    let sums: Vec<f64> = (0..n).map(|i| f64::from(spectrum(i).sum())).collect();
    let add_spectra = |picked: &[usize]| -> ndarray::Array1<f32> {
        let mut acc = ndarray::Array1::<f32>::zeros(bands);
        for &i in picked {
            acc += &spectrum(i);
        }
        acc / picked.len().max(1) as f32
    };
    let bright_pixels = top_share(&sums, BRIGHT_SHARE);
    let bright = add_spectra(&bright_pixels);
    // The gamut cues as the reference camera ranks the pixels.
    let rgb: Vec<[f64; 3]> = (0..n).map(|i| std::array::from_fn(|k| f64::from(reference.row(k).dot(&spectrum(i))))).collect();
    let bright_rgb: f64 = bright_pixels.iter().map(|&i| rgb[i].iter().sum::<f64>()).sum::<f64>() / bright_pixels.len().max(1) as f64;
    let lit: Vec<usize> = (0..n).filter(|&i| rgb[i].iter().sum::<f64>() >= GAMUT_FLOOR * bright_rgb && rgb[i].iter().sum::<f64>() > 0.0).collect();
    let extreme = |k: usize| {
        let keys: Vec<f64> = lit.iter().map(|&i| rgb[i][k] / rgb[i].iter().sum::<f64>()).collect();
        add_spectra(&top_share(&keys, BRIGHT_SHARE).into_iter().map(|j| lit[j]).collect::<Vec<_>>())
    };
    [mean, bright, extreme(0), extreme(1), extreme(2)]
}

fn chromaticities(cues: [[f64; 3]; CUES]) -> Cues {
    let mut out = [0.0f32; 3 * CUES];
    for (slot, v) in out.chunks_exact_mut(3).zip(cues) {
        let s = v.iter().sum::<f64>();
        for (o, x) in slot.iter_mut().zip(v) {
            *o = if s > 1e-12 { (x / s) as f32 } else { 1.0 / 3.0 };
        }
    }
    out
}

/// The fixed spectral prior of a camera-aware network (tensor `wiener.moment`).
#[derive(Debug, Clone)]
pub struct CameraPrior {
    moment: Tensor,
    coords: usize,
    /// How many of the picture's [`illumination_cues`] the network reads (0: none).
    cues: usize,
}

/// The three matrices of one camera, in f64.
pub struct CameraMatrices {
    pub wiener: Array2<f64>,
    pub coords: Array2<f64>,
    pub null: Array2<f64>,
}

impl CameraPrior {
    pub fn new(bands: usize, coords: usize, cues: usize, vb: candle_nn::VarBuilder) -> Result<Self> {
        if coords == 0 || coords > bands {
            candle_core::bail!("camera coordinates must be 1..={bands}, got {coords}")
        }
        if cues > CUES {
            candle_core::bail!("a network reads at most {CUES} cues, not {cues}")
        }
        Ok(Self { moment: vb.get_with_hints((bands, bands), "moment", candle_nn::Init::Const(0.0))?, coords, cues })
    }

    /// Camera-normalised coordinates per pixel (and per cue).
    pub fn coords(&self) -> usize {
        self.coords
    }

    /// Whether the network reads [`illumination_cues`] (a [`CameraBatch`] must carry them).
    pub fn wants_cues(&self) -> bool {
        self.cues > 0
    }

    /// How many cues the network reads (the first of [`illumination_cues`]).
    pub fn cue_count(&self) -> usize {
        self.cues
    }

    pub fn moment(&self) -> Result<Array2<f64>> {
        let (n, m) = self.moment.dims2()?;
        let v = self.moment.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        Array2::from_shape_vec((n, m), v).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    /// The stacked matrices of a batch of cameras, on `device`.
    pub fn batch(&self, cameras: &[Array2<f32>], device: &Device) -> Result<CameraBatch> {
        let moment = self.moment()?;
        if cameras.is_empty() {
            candle_core::bail!("a camera batch needs at least one camera")
        }
        let basis = leading_eigenvectors(&moment, self.coords);
        let all = cameras.iter().map(|c| matrices_with_basis(&moment, &basis, c)).collect::<Result<Vec<_>>>()?;
        let dtype = self.moment.dtype();
        let stack = |mats: Vec<&Array2<f64>>| -> Result<Tensor> {
            let (r, c) = mats[0].dim();
            let values: Vec<f32> = mats.iter().flat_map(|m| m.iter().map(|&v| v as f32)).collect();
            Tensor::from_vec(values, (mats.len(), r, c), device)?.to_dtype(dtype)
        };
        let (wiener, coords, null) = (
            stack(all.iter().map(|m| &m.wiener).collect())?,
            stack(all.iter().map(|m| &m.coords).collect())?,
            stack(all.iter().map(|m| &m.null).collect())?,
        );
        Ok(CameraBatch { wiener, coords, null, cues: None })
    }
}

/// P(C), A(C) and N(C) for the second moment `moment` (bands × bands) and camera `c`.
pub fn camera_matrices(moment: &Array2<f64>, coords: usize, c: &Array2<f32>) -> Result<CameraMatrices> {
    matrices_with_basis(moment, &leading_eigenvectors(moment, coords), c)
}

/// The `k` leading eigenvectors of `moment` (bands × k). An eigenvector's sign is arbitrary;
/// each is fixed to a positive sum so the coordinates do not depend on how the decomposition
/// was computed (here, or in a PyTorch twin).
fn leading_eigenvectors(moment: &Array2<f64>, k: usize) -> Array2<f64> {
    let (_, vectors) = symmetric_eigen(moment);
    let mut basis = vectors.slice(ndarray::s![.., ..k.min(vectors.ncols())]).to_owned();
    for mut column in basis.columns_mut() {
        if column.sum() < 0.0 {
            column.mapv_inplace(|v| -v);
        }
    }
    basis
}

fn matrices_with_basis(moment: &Array2<f64>, basis: &Array2<f64>, c: &Array2<f32>) -> Result<CameraMatrices> {
    let bands = moment.nrows();
    if c.dim() != (3, bands) {
        candle_core::bail!("camera matrix is {:?}, the network's prior has {bands} bands", c.dim())
    }
    let trace: f64 = moment.diag().sum();
    if !(trace > 0.0 && trace.is_finite()) {
        candle_core::bail!("the network's spectral prior (wiener.moment) is empty: it was never set from training data")
    }
    let c = c.mapv(f64::from);
    let cm = c.dot(moment); // 3 × bands
    let a = cm.dot(&c.t());
    let sigma2 = (WIENER_NOISE * a.diag().sum() / 3.0).max(1e-12);
    let a = &a + &(Array2::<f64>::eye(3) * sigma2);
    let Some(solved) = solve_spd(&a, &cm) else {
        candle_core::bail!("the camera sees nothing of the network's spectral prior in some channel")
    };
    let wiener = solved.t().to_owned(); // bands × 3
    let coords = basis.t().dot(&wiener);
    let cct = c.dot(&c.t());
    let Some(x) = solve_spd(&cct, &c) else {
        candle_core::bail!("the camera's channels are linearly dependent")
    };
    let null = Array2::<f64>::eye(bands) - c.t().dot(&x);
    Ok(CameraMatrices { wiener, coords, null })
}

/// Per image, per pixel: (b, o, i) · (b, i, h, w) → (b, o, h, w).
pub fn per_pixel(m: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (b, i, h, w) = x.dims4()?;
    let (mb, o, mi) = m.dims3()?;
    if mb != b || mi != i {
        candle_core::bail!("per-pixel map {:?} does not fit input {:?}", m.dims(), x.dims())
    }
    // (b, o, i) · (b, i, h·w) → (b, o, h·w) → (b, o, h, w)
    m.matmul(&x.reshape((b, i, h * w))?)?.reshape((b, o, h, w))
}

/// The second moment Σ y·yᵀ / n of the spectra of `cubes` (every `step`-th pixel).
pub fn spectral_moment(cubes: &[ndarray::Array3<f32>], step: usize) -> Array2<f64> {
    let bands = cubes.first().map_or(0, |c| c.dim().0);
    let mut m = Array2::<f64>::zeros((bands, bands));
    let mut n = 0usize;
    for cube in cubes {
        let (_, rows, cols) = cube.dim();
        let cube = cube.as_standard_layout();
        let flat = cube.view().into_shape_with_order((bands, rows * cols)).expect("a standard-layout cube");
        let picked = flat.select(Axis(1), &(0..rows * cols).step_by(step.max(1)).collect::<Vec<_>>()).mapv(f64::from);
        m += &picked.dot(&picked.t());
        n += picked.ncols();
    }
    m / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectral::camera::CameraResponse;

    fn smooth_moment() -> Array2<f64> {
        Array2::from_shape_fn((31, 31), |(i, j)| (-((i as f64 - j as f64) / 6.0).powi(2)).exp() * 0.1 + 0.02)
    }

    #[test]
    fn the_metamer_projector_is_invisible_to_its_camera_and_idempotent() {
        let c = CameraResponse::builtin("nikon").unwrap().on_grid(&crate::default_wavelengths()).unwrap();
        let m = camera_matrices(&smooth_moment(), 6, &c).unwrap();
        let c64 = c.mapv(f64::from);
        assert!(c64.dot(&m.null).iter().all(|v| v.abs() < 1e-9));
        let nn = m.null.dot(&m.null);
        assert!((&nn - &m.null).iter().all(|v| v.abs() < 1e-9));
        // the Wiener map nearly inverts the camera on RGB it can produce
        let cp = c64.dot(&m.wiener);
        assert!((&cp - &Array2::<f64>::eye(3)).iter().all(|v| v.abs() < 0.01), "{cp}");
        assert_eq!(m.coords.dim(), (6, 3));
    }

    #[test]
    fn cues_from_a_cube_are_the_cues_of_its_picture() {
        let s = crate::train::world::scene(crate::train::world::World::TRAINING, 17, 48).unwrap();
        let c = s.camera.on_grid(&crate::default_wavelengths()).unwrap();
        let rgb = crate::spectral::render::project(c.view(), s.cube.view()).unwrap();
        let (from_picture, from_cube) = (illumination_cues(rgb.view()), illumination_cues_of(&light_spectra(&s.cube, &c), &c));
        for k in 0..3 {
            assert!((from_picture[k] - from_cube[k]).abs() < 1e-5, "grey world {from_picture:?} vs {from_cube:?}");
            // the brightest pixels by R+G+B and by spectral sum are nearly the same ones
            assert!((from_picture[3 + k] - from_cube[3 + k]).abs() < 0.02, "bright {from_picture:?} vs {from_cube:?}");
        }
        assert!((from_picture[..3].iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // The gamut cues: the same pixels when the reference camera is the picture's.
        for k in 6..3 * CUES {
            assert!((from_picture[k] - from_cube[k]).abs() < 1e-4, "gamut cue {k}: {from_picture:?} vs {from_cube:?}");
        }
        for cue in from_picture.chunks_exact(3) {
            assert!((cue.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{cue:?}");
        }
        // Each gamut cue has the largest share of its channel of all five cues, under a lamp of
        // three narrow lines and under white light alike, and the lamp moves them.
        let wl = crate::default_wavelengths();
        let lamp: Vec<f32> = wl.iter().map(|&l| [450.0f32, 545.0, 610.0].iter().map(|c| (-0.5 * ((l - c) / 5.0).powi(2)).exp()).sum::<f32>() + 0.01).collect();
        let lit = |light: &[f32]| {
            let mut cube = s.cube.clone();
            for (band, &e) in light.iter().enumerate() {
                cube.index_axis_mut(Axis(0), band).mapv_inplace(|v| v * e);
            }
            illumination_cues(crate::spectral::render::project(c.view(), cube.view()).unwrap().view())
        };
        let (under_lamp, under_white) = (lit(&lamp), lit(&vec![1.0; wl.len()]));
        for cues in [&under_lamp, &under_white] {
            for k in 0..3 {
                let own = cues[3 * (2 + k) + k];
                assert!((0..CUES).all(|cue| cues[3 * cue + k] <= own + 1e-6), "cue {} is not the most saturated in channel {k}: {cues:?}", 2 + k);
            }
        }
        assert!(under_lamp[6..].iter().zip(&under_white[6..]).any(|(a, b)| (a - b).abs() > 1e-3), "{under_lamp:?} {under_white:?}");
        // a picture lit by a warm lamp has redder cues than the same scene in blue daylight
        let warm = illumination_cues(ndarray::Array3::from_shape_fn((3, 4, 4), |(k, _, _)| [0.6f32, 0.3, 0.1][k]).view());
        assert!(warm[0] > 0.5 && warm[3] > 0.5);
    }

    #[test]
    fn an_unset_prior_is_an_error_not_a_nan() {
        let c = CameraResponse::builtin("canon").unwrap().on_grid(&crate::default_wavelengths()).unwrap();
        let e = camera_matrices(&Array2::zeros((31, 31)), 6, &c).err().unwrap().to_string();
        assert!(e.contains("never set"), "{e}");
    }
}
