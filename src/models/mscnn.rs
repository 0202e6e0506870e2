//! Multi-scale U-Net for spectral super-resolution (Yan, Zhang, Wei et al., "Accurate spectral
//! super-resolution from single RGB image using multi-scale CNN", PRCV 2018): the shared
//! [`UNet`] followed by a 1×1 convolution to the bands.

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
pub struct MscnnConfig {
    /// Output bands (31 for 400..=700 nm step 10).
    pub bands: usize,
    /// Channels at full resolution; doubles at each level.
    pub width: usize,
    /// Number of 2×2 max-pool steps.
    pub depth: usize,
    /// 2D dropout probability after each activation (the paper uses 0.2).
    pub dropout: f64,
    /// Residual over a linear prior: y = P·x + net(x), with P (`prior.weight`, bands × 3)
    /// set to the ridge-regression map of the training data and the output conv starting at
    /// zero, so training starts from the linear baseline and learns what it cannot do.
    #[serde(default)]
    pub linear_prior: bool,
    /// The network works on chromaticity and its output is scaled by each pixel's intensity
    /// ([`super::input::to_chromaticity`]). Cards from before this option read as false.
    #[serde(default)]
    pub intensity_normalised: bool,
    /// Camera-aware ([`super::camera`]): told the camera of every image, the network refines
    /// that camera's Wiener estimate within the spectra the camera cannot see; `linear_prior`
    /// is then unused. Cards from before this option read as false (one camera).
    #[serde(default)]
    pub camera_aware: bool,
    /// Camera-normalised input coordinates of a camera-aware network.
    #[serde(default = "default_coords")]
    pub camera_coords: usize,
    /// A camera-aware network also reads what the whole picture says about its light
    /// ([`super::camera::illumination_cues`]): the grey world and the brightest pixels, in
    /// camera-normalised coordinates, as constant input channels.
    #[serde(default)]
    pub illumination_cues: bool,
}

pub(crate) fn default_coords() -> usize {
    6
}

impl Default for MscnnConfig {
    fn default() -> Self {
        MscnnConfig { bands: 31, width: 16, depth: 3, dropout: 0.2, linear_prior: true, intensity_normalised: true, camera_aware: true, camera_coords: default_coords(), illumination_cues: true }
    }
}

#[derive(Debug, Clone)]
pub struct Mscnn {
    unet: UNet,
    /// Tensor names `out.weight`, `out.bias`.
    out: Conv,
    map: InputMap,
    intensity_normalised: bool,
}

impl Mscnn {
    pub fn new(cfg: &MscnnConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.bands == 0 {
            candle_core::bail!("mscnn needs at least one output band")
        }
        let map = InputMap::new(cfg.bands, cfg.linear_prior, cfg.camera_aware, cfg.camera_coords, if cfg.illumination_cues { 2 } else { 0 }, &vb)?;
        let unet = UNet::new(map.channels(), cfg.width, cfg.depth, cfg.dropout, vb.pp("unet"))?;
        let out = if map.residual() {
            Conv::zeroed(cfg.width, cfg.bands, 1, 0, true, vb.pp("out"))?
        } else {
            Conv::new(cfg.width, cfg.bands, 1, 0, true, vb.pp("out"))?
        };
        Ok(Self { unet, out, map, intensity_normalised: cfg.intensity_normalised })
    }
}

impl SpectralNet for Mscnn {
    fn forward_t(&self, rgb: &Tensor, camera: Option<&CameraBatch>, train: bool) -> Result<Tensor> {
        let (_, _, rows, cols) = rgb.dims4()?;
        let (rgb, intensity) = to_chromaticity(rgb, self.intensity_normalised)?;
        // The per-picture context joins after padding (replicated padding would repeat it).
        let input = self.map.pixel_input(&rgb, camera)?;
        let x = crate::nn::profile::timed("pad", || pad_to_multiple(&input, self.size_multiple()))?;
        let features = self.unet.forward_with_context(&x, self.map.context(camera)?.as_ref(), train)?;
        let y = if matches!(self.map, InputMap::CameraAware(_)) {
            // (b, width, h', w') → crop → the 1×1 conv folded with the metamer projector.
            let f = features.narrow(2, 0, rows)?.narrow(3, 0, cols)?.contiguous()?;
            self.map.camera_head(self.out.weight(), self.out.bias(), &f, &rgb, camera)?
        } else {
            // (b, width, h', w') → (b, bands, h', w') → crop the padding off.
            let y = crate::nn::profile::timed("conv1x1", || self.out.forward(&features))?;
            self.map.output(y.narrow(2, 0, rows)?.narrow(3, 0, cols)?, &rgb)?
        };
        scale_back(y, intensity)
    }

    fn camera_prior(&self) -> Option<&CameraPrior> {
        self.map.camera_prior()
    }

    fn size_multiple(&self) -> usize {
        1 << self.unet.depth()
    }

    fn receptive_margin(&self) -> usize {
        // Two 3×3 convs per level, each level doubling the step: 2·(2^(d+1) − 1) on the
        // way down and as much on the way up, rounded up.
        4 * (1 << (self.unet.depth() + 1))
    }

    fn data_init(&self, data: &InitData) -> crate::Result<Vec<(&'static str, ndarray::Array2<f32>)>> {
        self.map.data_init(data)
    }

    fn is_trainable(&self, name: &str) -> bool {
        self.map.is_trainable(name)
    }
}
