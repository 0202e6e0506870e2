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
/// the whole picture, each image's [`illumination_cues`] as `cues` (b, 3, 2, 1).
#[derive(Debug, Clone)]
pub struct CameraBatch {
    pub wiener: Tensor,
    pub coords: Tensor,
    pub null: Tensor,
    pub cues: Option<Tensor>,
}

impl CameraBatch {
    /// The same batch with each image's illumination cues (one per camera, in order).
    pub fn with_cues(mut self, cues: &[[f32; 6]]) -> Result<Self> {
        let b = self.wiener.dim(0)?;
        if cues.len() != b {
            candle_core::bail!("{} illumination cues for {b} images", cues.len())
        }
        // [grey r, g, b, bright r, g, b] per image → (b, 3, 2, 1): channel-major, cue-minor.
        let values: Vec<f32> = cues.iter().flat_map(|c| [c[0], c[3], c[1], c[4], c[2], c[5]]).collect();
        let t = Tensor::from_vec(values, (b, 3, 2, 1), self.wiener.device())?.to_dtype(self.wiener.dtype())?;
        self.cues = Some(t);
        Ok(self)
    }
}

/// Share of the brightest pixels whose mean is the "bright" cue.
const BRIGHT_SHARE: f64 = 0.02;

/// What the whole picture says about its light, camera-specific: the chromaticity (R, G, B
/// summing to 1) of the grey world (the mean RGB) and of the mean of the brightest 2 % of
/// pixels (by R+G+B: highlights and white surfaces carry the light's colour). `rgb` is
/// (3, rows, cols).
pub fn illumination_cues(rgb: ndarray::ArrayView3<f32>) -> [f32; 6] {
    let (_, rows, cols) = rgb.dim();
    let n = rows * cols;
    let rgb = rgb.as_standard_layout();
    let plane = |k: usize| &rgb.as_slice().expect("standard layout")[k * n..(k + 1) * n];
    let (r, g, b) = (plane(0), plane(1), plane(2));
    let grey = [r, g, b].map(|p| p.iter().map(|&v| f64::from(v)).sum::<f64>());
    let mut sums: Vec<(f32, u32)> = (0..n).map(|i| (r[i] + g[i] + b[i], i as u32)).collect();
    let top = ((n as f64 * BRIGHT_SHARE).ceil() as usize).clamp(1, n.max(1));
    let mut bright = [0.0f64; 3];
    if n > 0 {
        sums.select_nth_unstable_by(n - top, |a, b| a.0.total_cmp(&b.0));
        for &(_, i) in &sums[n - top..] {
            let i = i as usize;
            bright[0] += f64::from(r[i]);
            bright[1] += f64::from(g[i]);
            bright[2] += f64::from(b[i]);
        }
    }
    chromaticities(grey, bright)
}

/// [`illumination_cues`] of a radiance cube seen through `camera`, from its two light
/// spectra ([`light_spectra`]): the mean spectrum and the mean of the brightest 2 % (by
/// spectral sum, which ranks pixels nearly as R+G+B does).
pub fn illumination_cues_of(spectra: &[ndarray::Array1<f32>; 2], camera: &Array2<f32>) -> [f32; 6] {
    let rgb = |y: &ndarray::Array1<f32>| -> [f64; 3] { std::array::from_fn(|k| f64::from(camera.row(k).dot(y))) };
    chromaticities(rgb(&spectra[0]), rgb(&spectra[1]))
}

/// The mean spectrum of `cube` (bands, rows, cols) and the mean of its brightest 2 % of pixels.
pub fn light_spectra(cube: &ndarray::Array3<f32>) -> [ndarray::Array1<f32>; 2] {
    let (bands, rows, cols) = cube.dim();
    let n = rows * cols;
    let mean = cube.mean_axis(Axis(2)).and_then(|m| m.mean_axis(Axis(1))).unwrap_or_else(|| ndarray::Array1::zeros(bands));
    let mut sums: Vec<(f32, usize)> = (0..n).map(|i| (cube.slice(ndarray::s![.., i / cols, i % cols]).sum(), i)).collect();
    let top = ((n as f64 * BRIGHT_SHARE).ceil() as usize).clamp(1, n.max(1));
    let mut bright = ndarray::Array1::<f32>::zeros(bands);
    if n > 0 {
        sums.select_nth_unstable_by(n - top, |a, b| a.0.total_cmp(&b.0));
        for &(_, i) in &sums[n - top..] {
            bright += &cube.slice(ndarray::s![.., i / cols, i % cols]);
        }
        bright /= top as f32;
    }
    [mean, bright]
}

fn chromaticities(a: [f64; 3], b: [f64; 3]) -> [f32; 6] {
    let norm = |v: [f64; 3]| -> [f32; 3] {
        let s = v.iter().sum::<f64>();
        if s > 1e-12 {
            v.map(|x| (x / s) as f32)
        } else {
            [1.0 / 3.0; 3]
        }
    };
    let (a, b) = (norm(a), norm(b));
    [a[0], a[1], a[2], b[0], b[1], b[2]]
}

/// The fixed spectral prior of a camera-aware network (tensor `wiener.moment`).
#[derive(Debug, Clone)]
pub struct CameraPrior {
    moment: Tensor,
    coords: usize,
    /// Whether the network also reads the picture's [`illumination_cues`].
    cues: bool,
}

/// The three matrices of one camera, in f64.
pub struct CameraMatrices {
    pub wiener: Array2<f64>,
    pub coords: Array2<f64>,
    pub null: Array2<f64>,
}

impl CameraPrior {
    pub fn new(bands: usize, coords: usize, cues: bool, vb: candle_nn::VarBuilder) -> Result<Self> {
        if coords == 0 || coords > bands {
            candle_core::bail!("camera coordinates must be 1..={bands}, got {coords}")
        }
        Ok(Self { moment: vb.get_with_hints((bands, bands), "moment", candle_nn::Init::Const(0.0))?, coords, cues })
    }

    /// Camera-normalised coordinates per pixel (and per cue).
    pub fn coords(&self) -> usize {
        self.coords
    }

    /// Whether the network reads [`illumination_cues`] (a [`CameraBatch`] must carry them).
    pub fn wants_cues(&self) -> bool {
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
        let (from_picture, from_cube) = (illumination_cues(rgb.view()), illumination_cues_of(&light_spectra(&s.cube), &c));
        for k in 0..3 {
            assert!((from_picture[k] - from_cube[k]).abs() < 1e-5, "grey world {from_picture:?} vs {from_cube:?}");
            // the brightest pixels by R+G+B and by spectral sum are nearly the same ones
            assert!((from_picture[3 + k] - from_cube[3 + k]).abs() < 0.02, "bright {from_picture:?} vs {from_cube:?}");
        }
        assert!((from_picture[..3].iter().sum::<f32>() - 1.0).abs() < 1e-5);
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
