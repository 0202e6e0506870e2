//! Learned reconstruction: a [`SpectralNet`] run in overlapping tiles so memory stays bounded
//! whatever the image size (or whole, for a network whose output depends on every pixel, see
//! [`SpectralNet::whole_image`]). Weights from a model file are memory-mapped read-only (a
//! PyTorch checkpoint is read into memory) and the forward pass runs in evaluation mode on plain
//! tensors, so no autograd graph is kept.

use super::card::{ModelCard, ModelFiles};
use crate::models::camera::{CameraBatch, Cues};
use crate::models::SpectralNet;
use super::Reconstructor;
use crate::engine::JobContext;
use crate::spectral::camera::CameraResponse;
use crate::{Error, Result, RgbImage};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ndarray::{s, Array3};

/// Default tile side: a 512×512 tile of the default mscnn needs a few hundred MB of activations.
pub const DEFAULT_TILE: usize = 512;

pub struct NetReconstructor {
    card: ModelCard,
    net: Box<dyn SpectralNet>,
    /// The camera matrices of the camera assumed, for a camera-aware network.
    camera: Option<CameraBatch>,
    device: Device,
    tile: usize,
}

impl NetReconstructor {
    /// Load `files` onto `device` for pictures taken by `camera`: card first (architecture,
    /// config), then the weights. A network trained for one camera refuses another one here,
    /// before anything runs.
    pub fn load(files: &ModelFiles, camera: &CameraResponse, device: &Device) -> Result<Self> {
        let card = ModelCard::load(&files.card)?;
        // SAFETY: the file is mapped read-only; candle copies each tensor out of the map as it is
        // built. Writing the file while it is being loaded is the only hazard, as for any reader.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&files.weights], DType::F32, device) }
            .map_err(|e| Error::format(&files.weights, format!("cannot read weights: {e}")))?;
        let net = build_net(&card, vb).map_err(|e| match e {
            Error::Tensor(msg) => Error::format(&files.weights, format!("weights do not fit the card's {}: {msg}", card.architecture.name())),
            other => other,
        })?;
        let camera = camera_batch(&card, net.as_ref(), camera, device).map_err(|e| match e {
            Error::Tensor(msg) => Error::format(&files.weights, msg),
            other => other,
        })?;
        Ok(Self { card, net, camera, device: device.clone(), tile: DEFAULT_TILE })
    }

    /// Load a PyTorch checkpoint (`.pth`/`.pt`, see [`super::pytorch`]) onto `device`: its card
    /// is `NAME.json` beside it or inferred from its tensors, and every tensor the architecture
    /// needs must be there by name and shape.
    pub fn load_pytorch(path: &std::path::Path, camera: &CameraResponse, device: &Device) -> Result<Self> {
        let (card, tensors) = super::pytorch::load_checked(path)?;
        let tensors = tensors.into_iter().map(|(k, t)| Ok((k, t.to_device(device)?))).collect::<Result<std::collections::HashMap<_, _>>>()?;
        let net = build_net(&card, VarBuilder::from_tensors(tensors, DType::F32, device))?;
        let camera = camera_batch(&card, net.as_ref(), camera, device).map_err(|e| match e {
            Error::Tensor(msg) => Error::format(path, msg),
            other => other,
        })?;
        Ok(Self { card, net, camera, device: device.clone(), tile: DEFAULT_TILE })
    }

    pub fn from_parts(card: ModelCard, net: Box<dyn SpectralNet>, camera: &CameraResponse, device: Device) -> Result<Self> {
        let camera = camera_batch(&card, net.as_ref(), camera, &device)?;
        Ok(Self { card, net, camera, device, tile: DEFAULT_TILE })
    }

    pub fn with_tile(mut self, tile: usize) -> Self {
        self.tile = tile;
        self
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }
}

/// What `net` needs to know of `camera`: its camera matrices when it is camera-aware; nothing
/// when it was trained for this very camera (the same curves, whatever the file is called);
/// otherwise an error that says so.
pub fn camera_batch(card: &ModelCard, net: &dyn SpectralNet, camera: &CameraResponse, device: &Device) -> Result<Option<CameraBatch>> {
    let grid = &card.wavelengths;
    match net.camera_prior() {
        Some(prior) => Ok(Some(prior.batch(&[camera.on_grid(grid)?], device)?)),
        None if card.fits_camera(camera)? => Ok(None),
        None => Err(Error::invalid(format!(
            "model '{}' was trained for the camera '{}' only and cannot use '{}' (its curves differ): choose a camera-aware model, or retrain it with `train --camera`",
            card.name, card.camera, camera.name
        ))),
    }
}

/// The camera batch a camera-aware `net` needs for one picture `rgb` taken by `camera` (3 × bands
/// on the net's grid): the camera's matrices, and the picture's illumination cues when the net
/// reads them. None for a net trained for one camera.
pub fn camera_batch_for(net: &dyn SpectralNet, camera: &ndarray::Array2<f32>, rgb: &RgbImage, device: &Device) -> Result<Option<CameraBatch>> {
    let Some(prior) = net.camera_prior() else { return Ok(None) };
    Ok(Some(with_picture_cues(net, prior.batch(std::slice::from_ref(camera), device)?, rgb)?))
}

/// `batch` (one picture's camera) with the cues of `rgb` when `net` reads them. They come from
/// the whole picture, once, so every tile agrees.
fn with_picture_cues(net: &dyn SpectralNet, batch: CameraBatch, rgb: &RgbImage) -> Result<CameraBatch> {
    match net.camera_prior() {
        Some(prior) if prior.wants_cues() => Ok(batch.with_cues(&[crate::models::camera::illumination_cues(rgb.data.view())], prior.cue_count())?),
        _ => Ok(batch),
    }
}

/// The network a card describes, built from `vb` (a VarMap for training, a file for inference).
pub fn build_net(card: &ModelCard, vb: VarBuilder) -> Result<Box<dyn SpectralNet>> {
    card.architecture.build(&card.config, vb).map_err(|e| match e {
        Error::Invalid(msg) => Error::invalid(format!("model '{}': {msg}", card.name)),
        other => other,
    })
}

impl Reconstructor for NetReconstructor {
    fn name(&self) -> &str {
        &self.card.name
    }

    fn wavelengths(&self) -> &[f32] {
        &self.card.wavelengths
    }

    fn reference_brightness(&self) -> Option<f32> {
        self.card.input_mean
    }

    fn reconstruct_raw(&self, rgb: &RgbImage, job: &JobContext) -> Result<Array3<f32>> {
        self.reconstruct_raw_with_cues(rgb, None, job)
    }

    fn reads_picture_cues(&self) -> bool {
        self.net.camera_prior().is_some_and(|p| p.wants_cues())
    }

    fn reconstruct_raw_with_cues(&self, rgb: &RgbImage, cues: Option<Cues>, job: &JobContext) -> Result<Array3<f32>> {
        let count = self.net.camera_prior().map_or(0, |p| p.cue_count());
        let camera = match (&self.camera, cues) {
            (Some(batch), Some(cues)) if self.reads_picture_cues() => Some(batch.clone().with_cues(&[cues], count)?),
            (Some(batch), _) => Some(with_picture_cues(self.net.as_ref(), batch.clone(), rgb)?),
            (None, _) => None,
        };
        // Raw network output: [`super::reconstruct`] clips negative radiance after combining
        // an ensemble, as the MST++ authors' pipeline clips after its mean.
        run_tiled(self.net.as_ref(), rgb, camera.as_ref(), self.wavelengths().len(), self.tile, &self.device, job)
    }

    fn locality(&self) -> Option<super::Locality> {
        // A net that sees the whole picture has no tiles (one that reads the picture's cues is
        // given the whole picture's: see `reads_picture_cues`).
        if self.net.whole_image() {
            return None;
        }
        let align = self.net.size_multiple();
        let margin = self.net.receptive_margin().div_ceil(align) * align;
        Some(super::Locality { margin, align, tile: self.tile.max(2 * margin + align) })
    }
}

/// Tile layout along one axis: (input start, input end, output start, output end) per tile.
/// Output spans of `step` pixels are each computed from an input span with `margin` extra
/// pixels either side (clipped at the image), so every output pixel sees its full context.
/// Starts are multiples of `align` so pooling windows line up with the whole-image ones.
pub(crate) fn spans(len: usize, tile: usize, margin: usize, align: usize) -> Vec<(usize, usize, usize, usize)> {
    if len <= tile {
        return vec![(0, len, 0, len)];
    }
    let step = ((tile - 2 * margin) / align * align).max(align);
    let mut out = Vec::new();
    let mut start = 0;
    while start < len {
        let end = (start + step).min(len);
        out.push((start.saturating_sub(margin), (end + margin).min(len), start, end));
        start = end;
    }
    out
}

/// Run `net` over `rgb` in tiles of at most `tile` pixels a side, on `device`.
pub fn run_tiled(net: &dyn SpectralNet, rgb: &RgbImage, camera: Option<&CameraBatch>, bands: usize, tile: usize, device: &Device, job: &JobContext) -> Result<Array3<f32>> {
    let (rows, cols) = (rgb.rows(), rgb.cols());
    let align = net.size_multiple();
    let margin = net.receptive_margin().div_ceil(align) * align;
    let tile = if net.whole_image() { rows.max(cols) } else { tile.max(2 * margin + align) };
    let (row_spans, col_spans) = (spans(rows, tile, margin, align), spans(cols, tile, margin, align));
    let total = row_spans.len() * col_spans.len();
    let mut out = Array3::<f32>::zeros((bands, rows, cols));
    for (i, &(r0, r1, o_r0, o_r1)) in row_spans.iter().enumerate() {
        for (j, &(c0, c1, o_c0, o_c1)) in col_spans.iter().enumerate() {
            job.check()?;
            job.report((i * col_spans.len() + j) as f32 / total as f32, "reconstructing");
            let input = rgb.data.slice(s![.., r0..r1, c0..c1]).as_standard_layout().to_owned();
            let (h, w) = (r1 - r0, c1 - c0);
            let x = Tensor::from_vec(input.into_raw_vec_and_offset().0, (1, 3, h, w), device)?;
            let y = net.forward_t(&x, camera, false)?;
            let (_, yb, _, _) = y.dims4()?;
            if yb != bands {
                return Err(Error::invalid(format!("network produced {yb} bands, its card promises {bands}")));
            }
            let y = y.squeeze(0)?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            let values = y.flatten_all()?.to_vec1::<f32>()?;
            let y = Array3::from_shape_vec((bands, h, w), values).map_err(|e| Error::invalid(e.to_string()))?;
            out.slice_mut(s![.., o_r0..o_r1, o_c0..o_c1]).assign(&y.slice(s![.., o_r0 - r0..o_r1 - r0, o_c0 - c0..o_c1 - c0]));
        }
    }
    job.report(1.0, "reconstructed");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_axis_once_with_aligned_starts() {
        for (len, tile, margin, align) in [(1000, 256, 32, 8), (257, 256, 32, 8), (100, 512, 64, 8), (999, 200, 16, 4)] {
            let spans = spans(len, tile, margin, align);
            let mut covered = vec![0; len];
            for &(i0, i1, o0, o1) in &spans {
                assert!(i0 <= o0 && o1 <= i1 && i1 - i0 <= tile.max(len.min(tile)) + 2 * margin);
                assert_eq!(i0 % align, 0, "{spans:?}");
                covered[o0..o1].iter_mut().for_each(|c| *c += 1);
            }
            assert!(covered.iter().all(|&c| c == 1), "len {len}: {spans:?}");
        }
    }
}
