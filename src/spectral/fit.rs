//! Camera-response fitting: estimate C (3 × bands, non-negative, smooth) from a cube Y and the
//! RGB image X the camera made of it, so that X ≈ C·Y.
//!
//! Each channel is an independent regularised non-negative least-squares problem
//!     min_c ‖x − cᵀY‖² + λ‖Dc‖²,  c ≥ 0,
//! with D the second-difference operator (smooth curves). Natural spectra are highly correlated,
//! so without λ the problem is ill-conditioned and the fitted curves oscillate. When the caller
//! gives no λ, it is chosen from a log grid by hold-out validation: every fifth pixel is held out
//! and the λ with the smallest held-out error wins.

use ndarray::{Array1, Array2, Axis};
use serde::Serialize;

use super::nnls::NnlsSolver;
use crate::{bail_invalid, Cube, Result, RgbImage};

/// A fitted camera response and how well it explains the RGB image.
#[derive(Clone, Debug, Serialize)]
pub struct CameraFit {
    pub wavelengths: Vec<f32>,
    /// (3, bands) in the units that map the cube onto the RGB values (not row-normalised).
    #[serde(skip)]
    pub matrix: Array2<f32>,
    pub r: Vec<f32>,
    pub g: Vec<f32>,
    pub b: Vec<f32>,
    /// The smoothness weight used, relative to the mean diagonal of YYᵀ.
    pub lambda: f64,
    /// RMSE between the RGB image and C·Y over all pixels and channels.
    pub rmse: f64,
    /// ‖X − C·Y‖ / ‖X‖.
    pub relative_error: f64,
}

/// The relative λ values tried by hold-out validation.
const LAMBDA_GRID: [f64; 9] = [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0];

/// Fit C from a cube and its RGB image. `lambda` is relative to the mean diagonal of YYᵀ;
/// `None` chooses it by hold-out validation.
pub fn fit_camera(cube: &Cube, rgb: &RgbImage, lambda: Option<f64>) -> Result<CameraFit> {
    let (bands, rows, cols) = cube.data.dim();
    if rgb.rows() != rows || rgb.cols() != cols {
        bail_invalid!(
            "the RGB image is {}x{} but the cube is {}x{}: they must show the same scene",
            rgb.rows(),
            rgb.cols(),
            rows,
            cols
        );
    }
    if bands < 3 {
        bail_invalid!("a camera response needs a cube with at least 3 bands, got {bands}");
    }
    let y = cube.data.view().into_shape_with_order((bands, rows * cols)).map_err(|e| crate::Error::invalid(e.to_string()))?;
    let x = rgb.data.view().into_shape_with_order((3, rows * cols)).map_err(|e| crate::Error::invalid(e.to_string()))?;
    // Pixels with a missing value (an ENVI data-ignore value reads as NaN) say nothing about
    // the camera: fit on the others.
    let finite: Vec<usize> = (0..rows * cols)
        .filter(|&p| y.column(p).iter().chain(x.column(p).iter()).all(|v| v.is_finite()))
        .collect();
    if finite.len() < bands {
        bail_invalid!(
            "only {} of {} pixels have finite values in both the cube and the RGB image; a {bands}-band fit needs at least {bands}",
            finite.len(),
            rows * cols
        );
    }
    let y = y.select(Axis(1), &finite).mapv(|v| v as f64);
    let x = x.select(Axis(1), &finite).mapv(|v| v as f64);
    let d2 = second_difference_gram(bands);

    let lambda = match lambda {
        Some(l) if l >= 0.0 => l,
        Some(l) => bail_invalid!("smoothness weight must be ≥ 0, got {l}"),
        None => choose_lambda(&y, &x, &d2),
    };
    let matrix = solve(&y, &x, &d2, lambda);
    let fit = matrix.dot(&y);
    let err: f64 = (&fit - &x).iter().map(|v| v * v).sum();
    let norm: f64 = x.iter().map(|v| v * v).sum();
    let matrix = matrix.mapv(|v| v as f32);
    Ok(CameraFit {
        wavelengths: cube.wavelengths.clone(),
        r: matrix.row(0).to_vec(),
        g: matrix.row(1).to_vec(),
        b: matrix.row(2).to_vec(),
        matrix,
        lambda,
        rmse: (err / x.len() as f64).sqrt(),
        relative_error: (err / norm.max(1e-300)).sqrt(),
    })
}

/// DᵀD for the second-difference operator on `n` samples.
fn second_difference_gram(n: usize) -> Array2<f64> {
    let mut d = Array2::<f64>::zeros((n.saturating_sub(2), n));
    for i in 0..n.saturating_sub(2) {
        d[[i, i]] = 1.0;
        d[[i, i + 1]] = -2.0;
        d[[i, i + 2]] = 1.0;
    }
    d.t().dot(&d)
}

/// Solve the three channels for one λ (relative to the mean diagonal of YYᵀ).
fn solve(y: &Array2<f64>, x: &Array2<f64>, d2: &Array2<f64>, lambda: f64) -> Array2<f64> {
    let bands = y.nrows();
    let gram = y.dot(&y.t());
    let scale = gram.diag().sum() / bands as f64;
    let g = &gram + &(d2 * (lambda * scale));
    let rhs = x.dot(&y.t()); // (3, bands)
    let mut solver = NnlsSolver::new(bands);
    let mut c = Array2::<f64>::zeros((3, bands));
    let mut out = vec![0.0; bands];
    for ch in 0..3 {
        solver.solve(g.view(), rhs.row(ch), &mut out);
        c.row_mut(ch).assign(&Array1::from(out.clone()));
    }
    c
}

fn choose_lambda(y: &Array2<f64>, x: &Array2<f64>, d2: &Array2<f64>) -> f64 {
    let n = y.ncols();
    let (train, held): (Vec<usize>, Vec<usize>) = (0..n).partition(|p| p % 5 != 0);
    if held.is_empty() || train.is_empty() {
        return 1e-3;
    }
    let (yt, xt) = (y.select(Axis(1), &train), x.select(Axis(1), &train));
    let (yh, xh) = (y.select(Axis(1), &held), x.select(Axis(1), &held));
    LAMBDA_GRID
        .iter()
        .map(|&l| {
            let c = solve(&yt, &xt, d2, l);
            let e: f64 = (&c.dot(&yh) - &xh).iter().map(|v| v * v).sum();
            (l, e)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(1e-3, |(l, _)| l)
}

/// RMSE between two camera responses after normalising each channel to sum to one (the
/// project's convention), so curves fitted at any exposure compare with the true ones.
pub fn curve_rmse(a: &Array2<f32>, b: &Array2<f32>) -> Result<f64> {
    if a.dim() != b.dim() {
        bail_invalid!("camera responses of shapes {:?} and {:?} cannot be compared", a.dim(), b.dim());
    }
    let norm = |m: &Array2<f32>| {
        let mut m = m.mapv(|v| v as f64);
        for mut row in m.rows_mut() {
            let s = row.sum();
            if s > 0.0 {
                row /= s;
            }
        }
        m
    };
    let d = norm(a) - norm(b);
    Ok((d.iter().map(|v| v * v).sum::<f64>() / d.len() as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn gaussian_camera(bands: usize) -> Array2<f32> {
        Array2::from_shape_fn((3, bands), |(ch, b)| {
            let centre = [0.8, 0.5, 0.2][ch] * (bands - 1) as f32;
            (-((b as f32 - centre) / 3.0).powi(2)).exp()
        })
    }

    fn smooth_random_cube(bands: usize, rows: usize, cols: usize) -> Cube {
        let mut s = 7u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f32 / (1u64 << 53) as f32
        };
        // each pixel: a random mix of 6 smooth basis spectra
        let basis = Array2::from_shape_fn((6, bands), |(k, b)| 0.5 + 0.5 * ((b as f32) * (0.1 + 0.07 * k as f32) + k as f32).sin());
        let mut data = Array3::zeros((bands, rows, cols));
        for r in 0..rows {
            for c in 0..cols {
                let w: Vec<f32> = (0..6).map(|_| next()).collect();
                for b in 0..bands {
                    data[[b, r, c]] = (0..6).map(|k| w[k] * basis[[k, b]]).sum::<f32>() / 6.0;
                }
            }
        }
        Cube::new(data, (0..bands).map(|b| 400.0 + 10.0 * b as f32).collect()).unwrap()
    }

    #[test]
    fn recovers_a_smooth_camera_from_clean_rgb() {
        let cube = smooth_random_cube(31, 20, 20);
        let truth = gaussian_camera(31);
        let y = cube.data.view().into_shape_with_order((31, 400)).unwrap();
        let x = truth.dot(&y).into_shape_with_order((3, 20, 20)).unwrap();
        let rgb = RgbImage::new(x).unwrap();
        let fit = fit_camera(&cube, &rgb, None).unwrap();
        assert!(fit.relative_error < 0.01, "relative error {}", fit.relative_error);
        let err = curve_rmse(&fit.matrix, &truth).unwrap();
        let typical = 1.0 / 31.0;
        assert!(err < 0.25 * typical, "curve RMSE {err} vs typical value {typical}");
        assert!(fit.matrix.iter().all(|&v| v >= 0.0));
    }

    #[test]
    fn pixels_with_missing_values_are_left_out() {
        let mut cube = smooth_random_cube(31, 12, 12);
        let truth = gaussian_camera(31);
        let y = cube.data.view().into_shape_with_order((31, 144)).unwrap();
        let x = truth.dot(&y).into_shape_with_order((3, 12, 12)).unwrap();
        cube.data[[4, 2, 3]] = f32::NAN;
        let mut rgb = RgbImage::new(x).unwrap();
        rgb.data[[1, 5, 5]] = f32::NAN;
        let fit = fit_camera(&cube, &rgb, None).unwrap();
        assert!(fit.relative_error < 0.01 && fit.relative_error.is_finite());
        cube.data.fill(f32::NAN);
        assert!(fit_camera(&cube, &rgb, None).is_err());
    }

    #[test]
    fn mismatched_sizes_are_refused() {
        let cube = smooth_random_cube(31, 4, 4);
        let rgb = RgbImage::new(Array3::zeros((3, 4, 5))).unwrap();
        let err = fit_camera(&cube, &rgb, None).unwrap_err().to_string();
        assert!(err.contains("4x5") && err.contains("4x4"), "{err}");
    }
}
