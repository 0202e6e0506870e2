//! USR at inference: the camera of a picture estimated from the picture alone, and the cube
//! generated for that camera (or for a camera the user names, skipping the estimate). The
//! camera is estimated once from the whole picture (resized to the estimator's view), then the
//! generator runs in tiles with it, so every tile agrees on the camera.

use super::card::{ModelCard, ModelFiles};
use super::learned::run_tiled;
use super::Reconstructor;
use crate::engine::JobContext;
use crate::models::usr::{Usr, UsrConfig};
use crate::models::{Architecture, InitData, SpectralNet};
use crate::spectral::camera::CameraResponse;
use crate::{Error, Result, RgbImage};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ndarray::{Array2, Array3};
use serde::Serialize;

/// A camera estimated from a picture.
#[derive(Debug, Clone, Serialize)]
pub struct EstimatedCamera {
    pub wavelengths: Vec<f32>,
    /// (3, bands): each channel summing to 1 (the project's convention; the white-balance gains
    /// are reported apart).
    #[serde(skip)]
    pub curves: Array2<f32>,
    /// The white-balance gains of eq. 6 (averaging 1).
    pub gains: [f32; 3],
    /// (3, N): each channel's weights over the dictionary, summing to 1.
    #[serde(skip)]
    pub weights: Array2<f32>,
}

impl EstimatedCamera {
    /// As a camera response the other methods can assume.
    pub fn response(&self, name: &str) -> CameraResponse {
        CameraResponse { name: name.to_string(), wavelengths: self.wavelengths.clone(), matrix: self.curves.clone() }
    }

    /// The curves scaled by their white-balance gains: C_o, the camera the generator runs with.
    pub fn with_gains(&self) -> Array2<f32> {
        let mut c = self.curves.clone();
        for (mut row, g) in c.rows_mut().into_iter().zip(self.gains) {
            row *= g;
        }
        c
    }
}

/// (b, 3, bands) tensor → the first image's (3, bands) array.
pub fn response_array(t: &Tensor) -> Result<Array2<f32>> {
    let t = t.get(0)?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let (r, c) = t.dims2()?;
    Array2::from_shape_vec((r, c), t.flatten_all()?.to_vec1::<f32>()?).map_err(|e| Error::invalid(e.to_string()))
}

/// Each row divided by its sum (rows that sum to nothing stay).
pub fn rows_summing_to_one(mut c: Array2<f32>) -> Array2<f32> {
    for mut row in c.rows_mut() {
        let s = row.sum();
        if s.abs() > 1e-12 {
            row /= s;
        }
    }
    c
}

/// The relative RMS error of estimated camera curves: each channel of both normalised to sum
/// 1, ‖ĉ − c‖₂ / ‖c‖₂, averaged over the three channels.
pub fn curve_error(estimate: &Array2<f32>, truth: &Array2<f32>) -> f64 {
    let (e, t) = (rows_summing_to_one(estimate.clone()), rows_summing_to_one(truth.clone()));
    let per_channel = e.rows().into_iter().zip(t.rows()).map(|(a, b)| {
        let diff: f64 = a.iter().zip(b.iter()).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
        (diff / norm.max(1e-24)).sqrt()
    });
    per_channel.sum::<f64>() / 3.0
}

/// A loaded USR model.
pub struct UsrReconstructor {
    card: ModelCard,
    usr: Usr,
    /// The camera assumed (3 × bands on the card's grid); None: estimated from each picture.
    camera: Option<Array2<f32>>,
    device: Device,
    tile: usize,
}

impl UsrReconstructor {
    /// Load `files`; `camera` given skips the estimate.
    pub fn load(files: &ModelFiles, camera: Option<&CameraResponse>, device: &Device) -> Result<Self> {
        let card = ModelCard::load(&files.card)?;
        if card.architecture != Architecture::Usr {
            return Err(Error::format(&files.card, format!("a {} model, not usr", card.architecture.name())));
        }
        let config: UsrConfig = card.config_as()?;
        // SAFETY: mapped read-only, as every model file (see `NetReconstructor::load`).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&files.weights], DType::F32, device) }
            .map_err(|e| Error::format(&files.weights, format!("cannot read weights: {e}")))?;
        let usr = Usr::new(&config, vb).map_err(|e| Error::format(&files.weights, format!("weights do not fit the card's usr: {e}")))?;
        let camera = camera.map(|c| c.on_grid(&card.wavelengths)).transpose()?;
        Ok(Self { card, usr, camera, device: device.clone(), tile: super::learned::DEFAULT_TILE })
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The camera of `rgb` as the estimator sees it.
    pub fn estimate(&self, rgb: &RgbImage) -> Result<EstimatedCamera> {
        let (rows, cols) = (rgb.rows(), rgb.cols());
        let x = Tensor::from_vec(rgb.data.as_standard_layout().iter().copied().collect::<Vec<f32>>(), (1, 3, rows, cols), &self.device)?;
        let est = self.usr.camera.forward(&self.usr.camera_input(&x)?)?;
        let raw = response_array(&est.response)?;
        let weights = response_array(&est.weights)?;
        let g = est.gains.get(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        Ok(EstimatedCamera { wavelengths: self.card.wavelengths.clone(), curves: rows_summing_to_one(raw), gains: [g[0], g[1], g[2]], weights })
    }

    /// Run every picture with `est` (its curves and gains) instead of estimating each again.
    pub fn assume_estimate(&mut self, est: &EstimatedCamera) {
        self.camera = Some(est.with_gains());
    }

    /// The response the generator is run with for `rgb`: the camera given, or the estimate
    /// (with its white-balance gains, as in training).
    fn response(&self, rgb: &RgbImage) -> Result<Tensor> {
        let c = match &self.camera {
            Some(c) => c.clone(),
            None => self.estimate(rgb)?.with_gains(),
        };
        let (r, b) = c.dim();
        Ok(Tensor::from_vec(c.iter().copied().collect::<Vec<f32>>(), (1, r, b), &self.device)?)
    }
}

/// The generator with one picture's camera fixed, as a network [`run_tiled`] can run.
struct FixedCamera<'a> {
    usr: &'a Usr,
    response: Tensor,
}

impl SpectralNet for FixedCamera<'_> {
    fn forward_t(&self, rgb: &Tensor, _camera: Option<&crate::models::camera::CameraBatch>, _train: bool) -> candle_core::Result<Tensor> {
        let b = rgb.dim(0)?;
        let response = self.response.broadcast_as((b, self.response.dim(1)?, self.response.dim(2)?))?.contiguous()?;
        self.usr.generator.forward(rgb, &response)
    }
    fn camera_prior(&self) -> Option<&crate::models::camera::CameraPrior> {
        None
    }
    fn size_multiple(&self) -> usize {
        1
    }
    fn receptive_margin(&self) -> usize {
        self.usr.receptive_margin()
    }
    fn data_init(&self, _data: &InitData) -> Result<Vec<(&'static str, Array2<f32>)>> {
        Ok(Vec::new())
    }
    fn is_trainable(&self, _name: &str) -> bool {
        false
    }
}

impl Reconstructor for UsrReconstructor {
    fn name(&self) -> &str {
        &self.card.name
    }

    fn wavelengths(&self) -> &[f32] {
        &self.card.wavelengths
    }

    fn reference_brightness(&self) -> Option<f32> {
        None
    }

    fn reconstruct_raw(&self, rgb: &RgbImage, job: &JobContext) -> Result<Array3<f32>> {
        let net = FixedCamera { usr: &self.usr, response: self.response(rgb)? };
        run_tiled(&net, rgb, None, self.wavelengths().len(), self.tile, &self.device, job)
    }
}

/// `Usr` in the architecture table: a blind network over the whole picture (its camera
/// estimate depends on every pixel).
impl SpectralNet for Usr {
    fn forward_t(&self, rgb: &Tensor, _camera: Option<&crate::models::camera::CameraBatch>, _train: bool) -> candle_core::Result<Tensor> {
        Ok(self.forward(rgb, None)?.0)
    }
    fn camera_prior(&self) -> Option<&crate::models::camera::CameraPrior> {
        None
    }
    fn size_multiple(&self) -> usize {
        1
    }
    fn receptive_margin(&self) -> usize {
        // Each stage: a 3×3 entry and a depthwise 3×3 per dense block.
        self.config.stages * (1 + self.config.blocks)
    }
    fn data_init(&self, _data: &InitData) -> Result<Vec<(&'static str, Array2<f32>)>> {
        Ok(Vec::new())
    }
    fn is_trainable(&self, name: &str) -> bool {
        name != "camera.dictionary"
    }
    fn whole_image(&self) -> bool {
        true
    }
}

