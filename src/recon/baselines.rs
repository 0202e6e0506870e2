//! The classical, closed-form baselines. Each is a per-pixel linear map W (bands × 3) from
//! linear camera RGB to a spectrum, followed by clipping at zero (a radiance is never negative):
//! - **spline**: a natural cubic spline through the three channel values placed at the
//!   channels' centre wavelengths, flat beyond the outer ones. Needs only the camera.
//! - **linear**: W fitted by ridge regression on (RGB, spectrum) training pixels.
//! - **pca** (Wiener estimation): W = R·Cᵀ(C·R·Cᵀ + σ²I)⁻¹ with R the spectral second-moment
//!   matrix rebuilt from its leading principal components. Needs the prior and the camera,
//!   so it adapts to any camera without refitting.
//! Linear maps scale with the input, so all three are exposure-invariant by construction.

use super::linalg::{solve_spd, symmetric_eigen};
use crate::{bail_invalid, Result, RgbImage};
use ndarray::{Array1, Array2, Array3};

/// Apply W (bands × 3) to every pixel of `rgb` and clip at zero → (bands, rows, cols).
pub fn apply_linear_map(w: &Array2<f32>, rgb: &RgbImage) -> Result<Array3<f32>> {
    if w.ncols() != 3 {
        bail_invalid!("a linear reconstruction map must be bands × 3, got {:?}", w.dim());
    }
    let mut cube = crate::spectral::render::project(w.view(), rgb.data.view())?;
    cube.mapv_inplace(|v| v.max(0.0));
    Ok(cube)
}

/// Centre wavelength of each camera channel: Σλ·c(λ) / Σc(λ).
pub fn channel_centres(camera: &Array2<f32>, wavelengths: &[f32]) -> [f64; 3] {
    std::array::from_fn(|k| {
        let row = camera.row(k);
        let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
        row.iter().zip(wavelengths).map(|(&v, &l)| f64::from(v) * f64::from(l)).sum::<f64>() / sum
    })
}

/// The spline baseline's W: column k holds the spline's response to a unit value in channel k.
pub fn spline_map(camera: &Array2<f32>, wavelengths: &[f32]) -> Result<Array2<f32>> {
    let centres = channel_centres(camera, wavelengths);
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| centres[a].total_cmp(&centres[b]));
    let knots: Vec<f64> = order.iter().map(|&k| centres[k]).collect();
    if knots.windows(2).any(|w| !(w[1] - w[0] > 1.0)) {
        bail_invalid!("camera channel centres {centres:?} nm are not distinct: no spline through them");
    }
    let mut w = Array2::<f32>::zeros((wavelengths.len(), 3));
    for (slot, &channel) in order.iter().enumerate() {
        let mut values = [0.0; 3];
        values[slot] = 1.0;
        for (i, &l) in wavelengths.iter().enumerate() {
            w[[i, channel]] = natural_spline_3(&knots, &values, f64::from(l)) as f32;
        }
    }
    Ok(w)
}

/// Natural cubic spline through three knots, held constant outside them.
fn natural_spline_3(x: &[f64], y: &[f64; 3], at: f64) -> f64 {
    if at <= x[0] {
        return y[0];
    }
    if at >= x[2] {
        return y[2];
    }
    let (h0, h1) = (x[1] - x[0], x[2] - x[1]);
    // Second derivatives: zero at both ends, m1 from the one interior equation.
    let m1 = 3.0 * ((y[2] - y[1]) / h1 - (y[1] - y[0]) / h0) / (h0 + h1);
    let (xa, xb, ya, yb, ma, mb, h) =
        if at <= x[1] { (x[0], x[1], y[0], y[1], 0.0, m1, h0) } else { (x[1], x[2], y[1], y[2], m1, 0.0, h1) };
    let (a, b) = ((xb - at) / h, (at - xa) / h);
    a * ya + b * yb + ((a * a * a - a) * ma + (b * b * b - b) * mb) * h * h / 6.0
}

/// Sufficient statistics of (RGB, spectrum) training pixels for the linear and PCA fits.
#[derive(Debug, Clone)]
pub struct PixelMoments {
    /// Σ y·xᵀ (bands × 3).
    pub yx: Array2<f64>,
    /// Σ x·xᵀ (3 × 3).
    pub xx: Array2<f64>,
    /// Σ y·yᵀ (bands × bands).
    pub yy: Array2<f64>,
    pub count: usize,
}

impl PixelMoments {
    pub fn new(bands: usize) -> Self {
        PixelMoments { yx: Array2::zeros((bands, 3)), xx: Array2::zeros((3, 3)), yy: Array2::zeros((bands, bands)), count: 0 }
    }

    /// Add every pixel of a cube (bands, rows, cols) and its RGB (3, rows, cols).
    pub fn add(&mut self, cube: &Array3<f32>, rgb: &RgbImage) -> Result<()> {
        let (bands, rows, cols) = cube.dim();
        if bands != self.yx.nrows() || rgb.data.dim() != (3, rows, cols) {
            bail_invalid!("training pair shapes disagree: cube {:?}, RGB {:?}", cube.dim(), rgb.data.dim());
        }
        let n = rows * cols;
        let y = cube.view().into_shape_with_order((bands, n)).map_err(|e| crate::Error::invalid(e.to_string()))?.mapv(f64::from);
        let x = rgb.data.view().into_shape_with_order((3, n)).map_err(|e| crate::Error::invalid(e.to_string()))?.mapv(f64::from);
        self.yx += &y.dot(&x.t());
        self.xx += &x.dot(&x.t());
        self.yy += &y.dot(&y.t());
        self.count += n;
        Ok(())
    }
}

/// Ridge regression W = Σyxᵀ (Σxxᵀ + λ·tr(Σxxᵀ)/3·I)⁻¹ with a small relative λ.
pub fn fit_linear(m: &PixelMoments) -> Result<Array2<f32>> {
    if m.count < 3 {
        bail_invalid!("linear fit needs training pixels, got {}", m.count);
    }
    let ridge = 1e-6 * m.xx.diag().sum() / 3.0;
    let a = &m.xx + &(Array2::<f64>::eye(3) * ridge);
    // W·A = YX  ⇔  A·Wᵀ = YXᵀ (A symmetric).
    let Some(wt) = solve_spd(&a, &m.yx.t().to_owned()) else {
        bail_invalid!("linear fit: the training RGB values do not span three channels");
    };
    Ok(wt.t().mapv(|v| v as f32))
}

/// Per-pixel polynomial regression from RGB to a spectrum, fitted by ridge on training pixels:
/// degree 1 uses (r, g, b), degree 2 adds their squares and products (nine features; no
/// constant, so a black pixel stays black). What an analyst with one scene fits first, and the
/// baseline INSS is measured against on the same pixels.
#[derive(Clone, Debug)]
pub struct PixelRegression {
    pub degree: usize,
    /// (bands, features)
    pub map: Array2<f32>,
}

impl PixelRegression {
    /// The features of one pixel.
    fn features(degree: usize, [r, g, b]: [f32; 3]) -> Vec<f64> {
        let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
        match degree {
            1 => vec![r, g, b],
            _ => vec![r, g, b, r * r, g * g, b * b, r * g, r * b, g * b],
        }
    }

    /// Fit on every `stride`-th row and column of each (cube, RGB) pair.
    pub fn fit(pairs: &[(&Array3<f32>, &Array3<f32>)], degree: usize, stride: usize) -> Result<PixelRegression> {
        if !(1..=2).contains(&degree) {
            bail_invalid!("pixel regression degree must be 1 or 2, got {degree}");
        }
        let Some((first, _)) = pairs.first() else { bail_invalid!("pixel regression needs training pixels") };
        let bands = first.dim().0;
        let k = Self::features(degree, [0.0; 3]).len();
        let (mut xx, mut yx) = (Array2::<f64>::zeros((k, k)), Array2::<f64>::zeros((bands, k)));
        let mut count = 0usize;
        for (cube, rgb) in pairs {
            let (b, rows, cols) = cube.dim();
            if b != bands || rgb.dim() != (3, rows, cols) {
                bail_invalid!("training pair shapes disagree: cube {:?}, RGB {:?}", cube.dim(), rgb.dim());
            }
            for r in (0..rows).step_by(stride.max(1)) {
                for c in (0..cols).step_by(stride.max(1)) {
                    let x = Self::features(degree, [rgb[[0, r, c]], rgb[[1, r, c]], rgb[[2, r, c]]]);
                    for i in 0..k {
                        for j in 0..k {
                            xx[[i, j]] += x[i] * x[j];
                        }
                    }
                    for band in 0..bands {
                        let y = f64::from(cube[[band, r, c]]);
                        for i in 0..k {
                            yx[[band, i]] += y * x[i];
                        }
                    }
                    count += 1;
                }
            }
        }
        if count < k {
            bail_invalid!("pixel regression of degree {degree} needs at least {k} training pixels, got {count}");
        }
        let ridge = 1e-6 * xx.diag().sum() / k as f64;
        let a = &xx + &(Array2::<f64>::eye(k) * ridge);
        let Some(wt) = solve_spd(&a, &yx.t().to_owned()) else {
            bail_invalid!("pixel regression: the training RGB values do not span the features");
        };
        Ok(PixelRegression { degree, map: wt.t().mapv(|v| v as f32) })
    }

    /// The spectrum of every pixel of `rgb` (3, rows, cols), clipped at zero.
    pub fn apply(&self, rgb: &Array3<f32>) -> Array3<f32> {
        let (_, rows, cols) = rgb.dim();
        let bands = self.map.nrows();
        let mut out = Array3::<f32>::zeros((bands, rows, cols));
        for r in 0..rows {
            for c in 0..cols {
                let x = Self::features(self.degree, [rgb[[0, r, c]], rgb[[1, r, c]], rgb[[2, r, c]]]);
                for band in 0..bands {
                    let v: f64 = self.map.row(band).iter().zip(&x).map(|(&w, &f)| f64::from(w) * f).sum();
                    out[[band, r, c]] = v.max(0.0) as f32;
                }
            }
        }
        out
    }
}

/// The ridge map RGB → spectrum for camera `c` from the spectra's second moment `m`
/// (bands × bands): with x = C·y, Σyxᵀ = M·Cᵀ and Σxxᵀ = C·M·Cᵀ, so this is [`fit_linear`] on
/// the same spectra rendered through C, with the same ridge.
pub fn ridge_map_from_moment(m: &Array2<f64>, c: &Array2<f32>) -> Result<Array2<f32>> {
    if m.nrows() != c.ncols() || m.ncols() != c.ncols() {
        bail_invalid!("spectral moment {:?} does not fit camera {:?}", m.dim(), c.dim());
    }
    let c = c.mapv(f64::from);
    let cm = c.dot(m); // 3 × bands = Σxyᵀ
    let xx = cm.dot(&c.t());
    let ridge = 1e-6 * xx.diag().sum() / 3.0;
    let a = &xx + &(Array2::<f64>::eye(3) * ridge);
    let Some(wt) = solve_spd(&a, &cm) else {
        bail_invalid!("linear refit: the camera sees nothing of the training spectra in some channel");
    };
    Ok(wt.t().mapv(|v| v as f32))
}

/// The PCA prior: leading eigenvectors (bands × k) and eigenvalues of the second-moment matrix.
#[derive(Debug, Clone)]
pub struct SpectralPrior {
    pub components: Array2<f32>,
    pub variances: Array1<f32>,
}

pub fn fit_prior(m: &PixelMoments, k: usize) -> Result<SpectralPrior> {
    let bands = m.yy.nrows();
    if m.count < 2 || k == 0 || k > bands {
        bail_invalid!("PCA prior needs training pixels and 1..={bands} components (got {} pixels, k = {k})", m.count);
    }
    let (values, vectors) = symmetric_eigen(&(&m.yy / m.count as f64));
    Ok(SpectralPrior {
        components: vectors.slice(ndarray::s![.., ..k]).mapv(|v| v as f32),
        variances: values.slice(ndarray::s![..k]).mapv(|v| v.max(0.0) as f32),
    })
}

/// Wiener estimator W = R·Cᵀ(C·R·Cᵀ + σ²I)⁻¹ with R = V·diag(λ)·Vᵀ, σ² = `noise` · tr(C·R·Cᵀ)/3.
pub fn wiener_map(prior: &SpectralPrior, camera: &Array2<f32>, noise: f64) -> Result<Array2<f32>> {
    let v = prior.components.mapv(f64::from);
    if v.nrows() != camera.ncols() {
        bail_invalid!("PCA prior has {} bands but the camera matrix {}", v.nrows(), camera.ncols());
    }
    let r = v.dot(&Array2::from_diag(&prior.variances.mapv(f64::from))).dot(&v.t());
    let c = camera.mapv(f64::from);
    let rct = r.dot(&c.t()); // bands × 3
    let crc = c.dot(&rct);
    let sigma2 = noise * crc.diag().sum() / 3.0;
    let a = &crc + &(Array2::<f64>::eye(3) * sigma2.max(1e-12));
    let Some(solved) = solve_spd(&a, &rct.t().to_owned()) else {
        bail_invalid!("Wiener estimate: the prior gives the camera no signal in some channel");
    };
    Ok(solved.t().mapv(|x| x as f32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectral::camera::CameraResponse;

    #[test]
    fn spline_passes_through_the_channel_values_at_their_centres() {
        let wl: Vec<f32> = (0..301).map(|i| 400.0 + i as f32).collect();
        let c = CameraResponse::builtin("canon").unwrap().on_grid(&wl).unwrap();
        let w = spline_map(&c, &wl).unwrap();
        let centres = channel_centres(&c, &wl);
        let rgb = [0.7f32, 0.4, 0.2];
        for (k, &centre) in centres.iter().enumerate() {
            let i = (centre.round() as usize) - 400;
            let v: f32 = (0..3).map(|j| w[[i, j]] * rgb[j]).sum();
            assert!((v - rgb[k]).abs() < 0.02, "channel {k} at {centre} nm: {v} vs {}", rgb[k]);
        }
        // Flat beyond the outer knots: 400 nm equals blue, 700 nm equals red.
        assert!((w.row(0).dot(&ndarray::arr1(&rgb)) - rgb[2]).abs() < 1e-6);
        assert!((w.row(300).dot(&ndarray::arr1(&rgb)) - rgb[0]).abs() < 1e-6);
    }

    #[test]
    fn linear_fit_recovers_a_map_that_generated_the_data() {
        let w_true = Array2::from_shape_fn((5, 3), |(i, j)| 0.1 * (i as f32 + 1.0) - 0.2 * j as f32 + 0.3);
        let rgb = RgbImage::new(Array3::from_shape_fn((3, 4, 5), |(k, r, c)| ((k * 7 + r * 3 + c * 5) % 11) as f32 / 11.0 + 0.05)).unwrap();
        let cube = crate::spectral::render::project(w_true.view(), rgb.data.view()).unwrap();
        let mut m = PixelMoments::new(5);
        m.add(&cube, &rgb).unwrap();
        let w = fit_linear(&m).unwrap();
        assert!((w - &w_true).iter().all(|d| d.abs() < 1e-3));
    }

    #[test]
    fn wiener_with_a_prior_of_the_true_spectra_is_exact_on_them() {
        // Spectra that lie in a 3-D subspace are recovered exactly from 3 channels.
        let c = CameraResponse::builtin("canon").unwrap().on_grid(&crate::default_wavelengths()).unwrap();
        let basis = Array2::from_shape_fn((31, 3), |(b, j)| match j {
            0 => 1.0,
            1 => b as f32 / 30.0,
            _ => ((b as f32 - 15.0) / 15.0).powi(2),
        });
        let coeffs = Array3::from_shape_fn((3, 3, 4), |(j, r, col)| 0.2 + 0.1 * ((j + r * col) % 4) as f32);
        let cube = crate::spectral::render::project(basis.view(), coeffs.view()).unwrap();
        let rgb = RgbImage::new(crate::spectral::render::project(c.view(), cube.view()).unwrap()).unwrap();
        let mut m = PixelMoments::new(31);
        m.add(&cube, &rgb).unwrap();
        let prior = fit_prior(&m, 3).unwrap();
        let w = wiener_map(&prior, &c, 1e-9).unwrap();
        let rebuilt = apply_linear_map(&w, &rgb).unwrap();
        let err = (&rebuilt - &cube).iter().fold(0.0f32, |a, d| a.max(d.abs()));
        assert!(err < 1e-3, "max error {err}");
    }
}
