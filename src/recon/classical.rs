//! The baselines as [`Reconstructor`]s: each holds its per-pixel map W, built from the camera
//! (spline, pca) or loaded from its fitted model (linear, pca prior).

use super::baselines::{apply_linear_map, spline_map, wiener_map, SpectralPrior};
use super::card::{ModelCard, ModelFiles};
use crate::models::Architecture;
use super::Reconstructor;
use crate::engine::JobContext;
use crate::spectral::camera::CameraResponse;
use crate::{default_wavelengths, Error, Result, RgbImage};
use candle_core::{Device, Tensor};
use ndarray::{Array1, Array2, Array3};
use std::collections::HashMap;

/// Relative noise level of the Wiener estimate (σ² as a fraction of the mean channel power).
pub const WIENER_NOISE: f64 = 1e-3;

pub struct LinearMapReconstructor {
    name: String,
    wavelengths: Vec<f32>,
    map: Array2<f32>,
}

impl LinearMapReconstructor {
    pub fn new(name: impl Into<String>, wavelengths: Vec<f32>, map: Array2<f32>) -> Self {
        Self { name: name.into(), wavelengths, map }
    }

    pub fn spline(camera: &CameraResponse) -> Result<Self> {
        let wl = default_wavelengths();
        let c = camera.on_grid(&wl)?;
        Ok(Self::new("spline", wl.clone(), spline_map(&c, &wl)?))
    }

    /// The ridge map of a `linear` model for `camera`: as fitted when the camera has the
    /// curves it was fitted for (whatever it is called); otherwise refitted in closed form from
    /// the training spectra's second moment M the model keeps (`moment`):
    /// W = M·Cᵀ(C·M·Cᵀ + ridge·I)⁻¹, exactly what fitting on the training pixels rendered
    /// through C gives. A model without the moment (from before it was kept) refuses.
    pub fn linear(files: &ModelFiles, camera: &CameraResponse) -> Result<Self> {
        let (card, tensors) = load_tensors(files, Architecture::Linear)?;
        if card.fits_camera(camera)? {
            let map = matrix(&tensors, "map", files)?;
            check_rows(&map, &card, files)?;
            return Ok(Self::new(card.name.clone(), card.wavelengths.clone(), map));
        }
        if !tensors.contains_key("moment") {
            return Err(Error::invalid(format!(
                "model '{}' was fitted for camera '{}', not '{}', and keeps no spectral moment to refit from: fit one with `spectral-studio train --method linear --camera {} --world 64 --out DIR`",
                card.name, card.camera, camera.name, camera.name
            )));
        }
        let moment = matrix(&tensors, "moment", files)?;
        check_rows(&moment, &card, files)?;
        let c = camera.on_grid(&card.wavelengths)?;
        Ok(Self::new(card.name.clone(), card.wavelengths.clone(), super::baselines::ridge_map_from_moment(&moment.mapv(f64::from), &c)?))
    }

    /// Wiener estimation from a `pca` prior and whatever camera is assumed now.
    pub fn pca(files: &ModelFiles, camera: &CameraResponse) -> Result<Self> {
        let (card, tensors) = load_tensors(files, Architecture::Pca)?;
        let components = matrix(&tensors, "components", files)?;
        check_rows(&components, &card, files)?;
        let variances = matrix(&tensors, "variances", files)?;
        let variances = Array1::from_iter(variances.iter().cloned());
        if variances.len() != components.ncols() {
            return Err(Error::format(&files.weights, "variances and components disagree in count"));
        }
        let c = camera.on_grid(&card.wavelengths)?;
        let map = wiener_map(&SpectralPrior { components, variances }, &c, WIENER_NOISE)?;
        Ok(Self::new(card.name.clone(), card.wavelengths.clone(), map))
    }
}

fn load_tensors(files: &ModelFiles, expected: Architecture) -> Result<(ModelCard, HashMap<String, Tensor>)> {
    let card = ModelCard::load(&files.card)?;
    if card.architecture != expected {
        return Err(Error::format(&files.card, format!("card is for '{}', expected '{}'", card.architecture.name(), expected.name())));
    }
    let tensors = candle_core::safetensors::load(&files.weights, &Device::Cpu)
        .map_err(|e| Error::format(&files.weights, format!("cannot read weights: {e}")))?;
    Ok((card, tensors))
}

fn matrix(tensors: &HashMap<String, Tensor>, name: &str, files: &ModelFiles) -> Result<Array2<f32>> {
    let t = tensors.get(name).ok_or_else(|| Error::format(&files.weights, format!("tensor '{name}' is missing")))?;
    let t = if t.rank() == 1 { t.unsqueeze(1)? } else { t.clone() };
    let (r, c) = t.dims2().map_err(|_| Error::format(&files.weights, format!("tensor '{name}' is not a matrix")))?;
    let values = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Array2::from_shape_vec((r, c), values).map_err(|e| Error::format(&files.weights, e.to_string()))
}

fn check_rows(m: &Array2<f32>, card: &ModelCard, files: &ModelFiles) -> Result<()> {
    if m.nrows() != card.wavelengths.len() {
        return Err(Error::format(&files.weights, format!("{} rows but the card lists {} wavelengths", m.nrows(), card.wavelengths.len())));
    }
    Ok(())
}

impl Reconstructor for LinearMapReconstructor {
    fn name(&self) -> &str {
        &self.name
    }

    fn wavelengths(&self) -> &[f32] {
        &self.wavelengths
    }

    fn reference_brightness(&self) -> Option<f32> {
        None // linear: scaling the input scales the output
    }

    fn reconstruct_raw(&self, rgb: &RgbImage, job: &JobContext) -> Result<Array3<f32>> {
        job.check()?;
        let cube = apply_linear_map(&self.map, rgb)?;
        job.report(1.0, "reconstructed");
        Ok(cube)
    }

    fn locality(&self) -> Option<super::Locality> {
        // Pixel by pixel: no context, any tile.
        Some(super::Locality { margin: 0, align: 1, tile: 1024 })
    }
}

/// Save a linear map or a PCA prior as a model (weights + card).
pub fn save_tensors(tensors: &[(&str, Array2<f32>)], card: &ModelCard, files: &ModelFiles) -> Result<()> {
    let mut map = HashMap::new();
    for (name, m) in tensors {
        let t = Tensor::from_vec(m.iter().cloned().collect::<Vec<f32>>(), m.dim(), &Device::Cpu)?;
        map.insert(name.to_string(), t);
    }
    crate::train::checkpoint::save_model(&map, card, files)
}
