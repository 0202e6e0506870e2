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
pub mod learned;
pub mod linalg;
pub mod pytorch;
pub mod registry;

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
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReconOptions {
    /// Correct the result so the camera re-projects it to the input exactly (non-negative).
    pub consistent: bool,
    /// Scale the input to the brightness the method expects and the output back.
    pub exposure_invariant: bool,
}

#[derive(Debug, Clone)]
pub struct Reconstruction {
    pub cube: Cube,
    pub method: String,
    pub seconds: f64,
    /// Input brightness ÷ the method's reference, when exposure invariance rescaled it.
    pub exposure_scale: Option<f32>,
    pub consistency: Option<ConsistencyReport>,
}

/// Run `method` on `rgb` with the shared options. `camera` is the camera assumed to have taken
/// the picture (used for the consistency correction).
pub fn reconstruct(method: &dyn Reconstructor, rgb: &RgbImage, camera: &CameraResponse, options: ReconOptions, job: &JobContext) -> Result<Reconstruction> {
    let start = Instant::now();
    let non_finite = rgb.data.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        bail_invalid!("input RGB has {non_finite} NaN or infinite values; reconstruction needs finite pixels");
    }
    if rgb.rows() == 0 || rgb.cols() == 0 {
        bail_invalid!("input RGB is empty ({}x{})", rgb.rows(), rgb.cols());
    }
    let exposure_scale = match (options.exposure_invariant, method.reference_brightness()) {
        (true, Some(reference)) if reference > 0.0 => {
            let mean = rgb.data.mean().unwrap_or(0.0);
            (mean > 0.0).then_some(mean / reference)
        }
        _ => None,
    };
    let mut data = match exposure_scale {
        Some(scale) => {
            let normalised = RgbImage::new(rgb.data.mapv(|v| v / scale))?;
            let mut y = method.reconstruct_raw(&normalised, job)?;
            y.mapv_inplace(|v| v * scale);
            y
        }
        None => method.reconstruct_raw(rgb, job)?,
    };
    let consistency = if options.consistent {
        job.check()?;
        job.report(1.0, "making the result consistent with the input");
        let c = camera.on_grid(method.wavelengths())?;
        Some(consistency::make_consistent(&mut data, rgb, &c)?)
    } else {
        None
    };
    let mut cube = Cube::new(data, method.wavelengths().to_vec())?;
    cube.meta.description = Some(format!("reconstructed by {} from RGB", method.name()));
    Ok(Reconstruction { cube, method: method.name().to_string(), seconds: start.elapsed().as_secs_f64(), exposure_scale, consistency })
}
