//! Physical consistency (NTIRE 2020's finding: no challenge entry reproduced its input RGB).
//! Given a reconstruction Ŷ and the camera C (3 × bands), find the cube closest to Ŷ that is
//! non-negative and re-projects exactly to the input: min ‖Y − Ŷ‖ s.t. C·Y = X, Y ≥ 0, per
//! pixel. Without the sign constraint the answer is the minimum-norm correction
//! Ŷ + Cᵀ(CCᵀ)⁻¹(X − CŶ); with it, Dykstra's alternating projections between the affine set
//! and the non-negative orthant converge to the same nearest point. When no non-negative
//! spectrum reproduces X (noise, clipping, another camera), the result stays non-negative and
//! the remaining re-projection error is reported instead of hidden.

use super::linalg::solve_spd;
use crate::{bail_invalid, Result, RgbImage};
use ndarray::{s, Array2, Array3, ArrayViewMut2, Axis};

/// Most Dykstra rounds per pixel; pixels whose minimum-norm correction is already
/// non-negative (most of them) finish after one.
const MAX_ROUNDS: usize = 200;
/// A round that moves no value by more than this (relative to the pixel's peak) ends the loop.
const TOLERANCE: f64 = 1e-7;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ConsistencyReport {
    /// Consistency MRAE (metrics' rule) before and after the correction.
    pub before_mrae: f64,
    pub after_mrae: f64,
    /// Pixels for which no non-negative spectrum reproduces the input exactly within tolerance.
    pub unreachable_pixels: usize,
}

/// Correct `cube` (bands, rows, cols) in place so that `camera`·cube reproduces `rgb`.
pub fn make_consistent(cube: &mut Array3<f32>, rgb: &RgbImage, camera: &Array2<f32>) -> Result<ConsistencyReport> {
    let (bands, rows, cols) = cube.dim();
    if camera.dim() != (3, bands) {
        bail_invalid!("camera matrix is {:?}, expected [3, {bands}]", camera.dim());
    }
    if rgb.data.dim() != (3, rows, cols) {
        bail_invalid!("input RGB is {:?}, the reconstruction {rows}x{cols}", rgb.data.dim());
    }
    let before_mrae = crate::metrics::consistency_mrae(rgb.data.view(), camera.view(), cube.view())?;
    let c = camera.mapv(f64::from);
    let gram = c.dot(&c.t());
    let Some(gram_inv) = solve_spd(&gram, &Array2::eye(3)) else {
        bail_invalid!("camera channels are linearly dependent: no consistent correction exists");
    };
    // P = Cᵀ(CCᵀ)⁻¹: the minimum-norm correction for a re-projection error e is P·e.
    let p = c.t().dot(&gram_inv);
    let n = rows * cols;
    let mut flat = cube.view_mut().into_shape_with_order((bands, n)).map_err(|e| crate::Error::invalid(e.to_string()))?;
    let x = rgb.data.view().into_shape_with_order((3, n)).map_err(|e| crate::Error::invalid(e.to_string()))?;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(n.max(1));
    let chunk = n.div_ceil(threads).max(1);
    let unreachable: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = flat
            .axis_chunks_iter_mut(Axis(1), chunk)
            .enumerate()
            .map(|(i, block)| {
                let x = x.slice(s![.., i * chunk..(i * chunk + block.ncols())]);
                let (c, p) = (&c, &p);
                scope.spawn(move || correct_block(block, x, c, p))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).sum()
    });
    let after_mrae = crate::metrics::consistency_mrae(rgb.data.view(), camera.view(), cube.view())?;
    Ok(ConsistencyReport { before_mrae, after_mrae, unreachable_pixels: unreachable })
}

/// Dykstra's projections for each pixel (column) of `block`; returns the count of pixels whose
/// final re-projection still misses the input.
fn correct_block(mut block: ArrayViewMut2<f32>, x: ndarray::ArrayView2<f32>, c: &Array2<f64>, p: &Array2<f64>) -> usize {
    let bands = block.nrows();
    let mut y = vec![0.0f64; bands];
    let mut z = vec![0.0f64; bands];
    let mut inc_affine = vec![0.0f64; bands];
    let mut inc_sign = vec![0.0f64; bands];
    let mut unreachable = 0;
    for (mut column, target) in block.axis_iter_mut(Axis(1)).zip(x.axis_iter(Axis(1))) {
        if target.iter().any(|v| !v.is_finite()) {
            continue;
        }
        for (yi, v) in y.iter_mut().zip(column.iter()) {
            *yi = if v.is_finite() { f64::from(*v) } else { 0.0 };
        }
        inc_affine.fill(0.0);
        inc_sign.fill(0.0);
        for _round in 0..MAX_ROUNDS {
            // z = projection of (y + p) onto {C·z = x}.
            for i in 0..bands {
                z[i] = y[i] + inc_affine[i];
            }
            let err: [f64; 3] = std::array::from_fn(|k| f64::from(target[k]) - (0..bands).map(|i| c[[k, i]] * z[i]).sum::<f64>());
            for i in 0..bands {
                let shift = p[[i, 0]] * err[0] + p[[i, 1]] * err[1] + p[[i, 2]] * err[2];
                inc_affine[i] += y[i] - (z[i] + shift);
                z[i] += shift;
            }
            // y = projection of (z + q) onto {y ≥ 0}.
            let mut moved = 0.0f64;
            let mut peak = 0.0f64;
            for i in 0..bands {
                let next = (z[i] + inc_sign[i]).max(0.0);
                inc_sign[i] += z[i] - next;
                moved = moved.max((next - y[i]).abs());
                peak = peak.max(next.abs());
                y[i] = next;
            }
            if moved <= TOLERANCE * peak.max(1e-6) && z.iter().all(|&v| v >= -TOLERANCE * peak.max(1e-6)) {
                break;
            }
        }
        let miss = (0..3).map(|k| (f64::from(target[k]) - (0..bands).map(|i| c[[k, i]] * y[i]).sum::<f64>()).abs()).fold(0.0, f64::max);
        if miss > 1e-4 * (f64::from(target.iter().cloned().fold(0.0f32, f32::max))).max(1e-6) {
            unreachable += 1;
        }
        for (v, yi) in column.iter_mut().zip(y.iter()) {
            *v = *yi as f32;
        }
    }
    unreachable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectral::camera::CameraResponse;

    fn camera() -> Array2<f32> {
        CameraResponse::builtin("canon-eos-5d-mark-ii").unwrap().on_grid(&crate::default_wavelengths()).unwrap()
    }

    #[test]
    fn corrected_cube_reproduces_the_input_and_stays_non_negative() {
        let c = camera();
        // A flat grey guess for a colourful pixel grid: far from consistent.
        let mut cube = Array3::<f32>::from_elem((31, 2, 3), 0.3);
        let rgb = RgbImage::new(Array3::from_shape_fn((3, 2, 3), |(k, r, col)| 0.05 + 0.1 * (k + r + 2 * col) as f32)).unwrap();
        let report = make_consistent(&mut cube, &rgb, &c).unwrap();
        assert!(report.before_mrae > 0.1, "{report:?}");
        assert!(report.after_mrae < 1e-4, "{report:?}");
        assert_eq!(report.unreachable_pixels, 0);
        assert!(cube.iter().all(|&v| v >= 0.0));
    }

    #[test]
    fn an_already_consistent_cube_is_left_alone() {
        let c = camera();
        let cube0 = Array3::from_shape_fn((31, 2, 2), |(b, r, col)| 0.1 + 0.01 * b as f32 + 0.05 * (r + col) as f32);
        let rgb = RgbImage::new(crate::spectral::render::project(c.view(), cube0.view()).unwrap()).unwrap();
        let mut cube = cube0.clone();
        make_consistent(&mut cube, &rgb, &c).unwrap();
        assert!(cube.iter().zip(cube0.iter()).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn impossible_input_is_reported_not_hidden() {
        let c = camera();
        let mut cube = Array3::<f32>::from_elem((31, 1, 1), 0.2);
        // Negative green cannot come from a non-negative spectrum.
        let rgb = RgbImage::new(Array3::from_shape_vec((3, 1, 1), vec![0.4, -0.2, 0.4]).unwrap()).unwrap();
        let report = make_consistent(&mut cube, &rgb, &c).unwrap();
        assert_eq!(report.unreachable_pixels, 1);
        assert!(cube.iter().all(|&v| v >= 0.0));
    }
}
