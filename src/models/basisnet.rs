//! The fast model for interactive use, after the NTIRE 2020 StaffsCVL entry's idea: a small
//! U-Net predicts, per pixel, weights over a learned basis of k spectra, and the spectrum is
//! their weighted sum. The U-Net runs at half resolution (pixel-unshuffle in, pixel-shuffle
//! out) for speed; a per-pixel linear path from the RGB keeps full-resolution detail.

use super::unet::UNet;
use super::camera::{CameraBatch, CameraPrior};
use super::input::{scale_back, to_chromaticity, InputMap};
use super::{InitData, SpectralNet};
use crate::nn::pad_to_multiple;
use candle_core::{Module, Result, Tensor};
use crate::nn::conv::Conv;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BasisNetConfig {
    pub bands: usize,
    /// Spectra in the learned basis.
    pub basis: usize,
    /// U-Net channels at half resolution.
    pub width: usize,
    /// Max-pool steps of the half-resolution U-Net.
    pub depth: usize,
    pub dropout: f64,
    /// Residual over a linear prior, as [`super::mscnn::MscnnConfig::linear_prior`]: the head
    /// and direct path start at zero.
    #[serde(default)]
    pub linear_prior: bool,
    /// As [`super::mscnn::MscnnConfig::intensity_normalised`].
    #[serde(default)]
    pub intensity_normalised: bool,
    /// As [`super::mscnn::MscnnConfig::camera_aware`].
    #[serde(default)]
    pub camera_aware: bool,
    #[serde(default = "super::mscnn::default_coords")]
    pub camera_coords: usize,
    /// As [`super::mscnn::MscnnConfig::illumination_cues`].
    #[serde(default)]
    pub illumination_cues: bool,
    /// With the cues, also the picture's three gamut cues
    /// ([`super::camera::illumination_cues`]: its most saturated red, green and blue).
    #[serde(default)]
    pub gamut_cues: bool,
}

impl Default for BasisNetConfig {
    fn default() -> Self {
        BasisNetConfig {
            bands: 31,
            basis: 12,
            width: 16,
            depth: 2,
            dropout: 0.0,
            linear_prior: true,
            intensity_normalised: true,
            camera_aware: true,
            camera_coords: super::mscnn::default_coords(),
            illumination_cues: true,
            gamut_cues: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BasisNet {
    unet: UNet,
    /// U-Net features → 4·k channels, pixel-shuffled to k weights at full resolution.
    head: Conv,
    /// Per-pixel linear weights from the RGB itself (`direct.weight`, no bias).
    direct: Conv,
    /// (bands, k): column j is basis spectrum j (`basis`).
    basis: Tensor,
    k: usize,
    map: InputMap,
    intensity_normalised: bool,
}

impl BasisNet {
    pub fn new(cfg: &BasisNetConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.basis == 0 || cfg.bands == 0 {
            candle_core::bail!("basisnet needs at least one basis spectrum and one band")
        }
        let cues = match (cfg.illumination_cues, cfg.gamut_cues) {
            (false, _) => 0,
            (true, false) => 2,
            (true, true) => super::camera::CUES,
        };
        let map = InputMap::new(cfg.bands, cfg.linear_prior, cfg.camera_aware, cfg.camera_coords, cues, &vb)?;
        // The per-pixel input goes to half resolution as 4 channels each; the per-picture
        // context joins it there as constant channels.
        let c = map.pixel_channels();
        let unet = UNet::new(4 * c + map.context_channels(), cfg.width, cfg.depth, cfg.dropout, vb.pp("unet"))?;
        let (head, direct) = if map.residual() {
            (Conv::zeroed(cfg.width, 4 * cfg.basis, 1, 0, true, vb.pp("head"))?, Conv::zeroed(c, cfg.basis, 1, 0, false, vb.pp("direct"))?)
        } else {
            (Conv::new(cfg.width, 4 * cfg.basis, 1, 0, true, vb.pp("head"))?, Conv::new(c, cfg.basis, 1, 0, false, vb.pp("direct"))?)
        };
        let init = candle_nn::Init::Randn { mean: 0.0, stdev: (1.0 / cfg.basis as f64).sqrt() };
        let basis = vb.get_with_hints((cfg.bands, cfg.basis), "basis", init)?;
        Ok(Self { unet, head, direct, basis, k: cfg.basis, map, intensity_normalised: cfg.intensity_normalised })
    }
}

impl SpectralNet for BasisNet {
    fn forward_t(&self, rgb: &Tensor, camera: Option<&CameraBatch>, train: bool) -> Result<Tensor> {
        let (b, _, rows, cols) = rgb.dims4()?;
        let (rgb, intensity) = to_chromaticity(rgb, self.intensity_normalised)?;
        let x = pad_to_multiple(&self.map.pixel_input(&rgb, camera)?, self.size_multiple())?;
        let (_, _, h, w) = x.dims4()?;
        // (b, c, h, w) → (b, 4c, h/2, w/2) (+ the context's channels) → U-Net → (b, 4k, h/2, w/2) → (b, k, h, w).
        let half = candle_nn::ops::pixel_unshuffle(&x, 2)?;
        let features = self.unet.forward_with_context(&half, self.map.context(camera)?.as_ref(), train)?;
        let context = candle_nn::ops::pixel_shuffle(&self.head.forward(&features)?, 2)?;
        let weights = (context + self.direct.forward(&x)?)?;
        // (bands, k) · (b, k, h·w) → (b, bands, h·w) → (b, bands, h, w).
        if matches!(self.map, InputMap::CameraAware(_)) {
            // The basis folded with the metamer projector: N·(B·w) = (N·B)·w, on the cropped weights.
            let weights = weights.narrow(2, 0, rows)?.narrow(3, 0, cols)?.contiguous()?;
            return scale_back(self.map.camera_head(&self.basis, None, &weights, &rgb, camera)?, intensity);
        }
        let weights = weights.reshape((b, self.k, h * w))?;
        let spectra = self.basis.broadcast_left(b)?.matmul(&weights)?;
        let bands = self.basis.dim(0)?;
        let y = spectra.reshape((b, bands, h, w))?.narrow(2, 0, rows)?.narrow(3, 0, cols)?;
        scale_back(self.map.output(y, &rgb)?, intensity)
    }

    fn camera_prior(&self) -> Option<&CameraPrior> {
        self.map.camera_prior()
    }

    fn size_multiple(&self) -> usize {
        2 << self.unet.depth()
    }

    fn receptive_margin(&self) -> usize {
        8 * (1 << (self.unet.depth() + 1))
    }

    fn data_init(&self, data: &InitData) -> crate::Result<Vec<(&'static str, ndarray::Array2<f32>)>> {
        self.map.data_init(data)
    }

    fn is_trainable(&self, name: &str) -> bool {
        self.map.is_trainable(name)
    }
}
