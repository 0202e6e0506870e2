//! How a network turns its input RGB into what its body sees, and its body's output into
//! spectra: intensity normalisation (chromaticity in, brightness back out), and either a fixed
//! linear prior for one camera or the camera-aware map of [`super::camera`]. Shared by every
//! reconstruction network, and the one place that knows which tensors start from the training
//! data ([`InputMap::data_init`]).

use super::camera;
use crate::nn::{conv, pixel_scale, profile};
use candle_core::{Result, Tensor};

/// Below this R+G+B a pixel is treated as this dark: its chromaticity is not divided by ~0.
const INTENSITY_FLOOR: f64 = 1e-3;

/// Intensity normalisation (config `intensity_normalised`): the network sees each pixel's
/// chromaticity x / s, with s = max(R+G+B, floor), and its output is multiplied by s again.
/// A spectrum scales with its pixel's brightness, so the result does too, exactly, for every
/// pixel brighter than the floor: brightness ×0.5 or ×2 cannot confuse the model, and bright
/// pixels are never outside what it was trained on. Returns the network's input and s.
pub fn to_chromaticity(rgb: &Tensor, normalise: bool) -> Result<(Tensor, Option<Tensor>)> {
    if !normalise {
        return Ok((rgb.clone(), None));
    }
    let s = rgb.sum_keepdim(1)?.maximum(INTENSITY_FLOOR)?;
    Ok((rgb.broadcast_div(&s)?, Some(s)))
}

/// The inverse of [`to_chromaticity`] on the network's output (b, bands, h, w).
pub fn scale_back(y: Tensor, s: Option<Tensor>) -> Result<Tensor> {
    match s {
        Some(s) => pixel_scale::scale_pixels(&y, &s),
        None => Ok(y),
    }
}

/// How a network turns its input RGB into the body's input and its output into spectra: with
/// a fixed linear prior (one camera) or camera-aware ([`camera`]).
#[derive(Debug, Clone)]
pub enum InputMap {
    /// The body sees chromaticity; y = body (+ P·x when a linear prior is kept).
    Rgb(Option<LinearPrior>),
    /// The body sees A(C)·x; y = P(C)·x + N(C)·body.
    CameraAware(camera::CameraPrior),
}

impl InputMap {
    /// `cues`: how many of the picture's illumination cues a camera-aware network reads.
    pub fn new(bands: usize, linear_prior: bool, camera_aware: bool, coords: usize, cues: usize, vb: &candle_nn::VarBuilder) -> Result<Self> {
        Ok(if camera_aware {
            InputMap::CameraAware(camera::CameraPrior::new(bands, coords, cues, vb.pp("wiener"))?)
        } else {
            InputMap::Rgb(if linear_prior { Some(LinearPrior::new(bands, vb.pp("prior"))?) } else { None })
        })
    }

    /// Channels of the per-pixel input: RGB chromaticity, or the camera-normalised coordinates.
    pub fn pixel_channels(&self) -> usize {
        match self {
            InputMap::Rgb(_) => 3,
            InputMap::CameraAware(p) => p.coords(),
        }
    }

    /// Channels of the per-picture context (the illumination cues' coordinates), if any.
    pub fn context_channels(&self) -> usize {
        match self {
            InputMap::CameraAware(p) => p.cue_count() * p.coords(),
            _ => 0,
        }
    }

    /// Channels of the body's input: the per-pixel input and the context's constant channels.
    pub fn channels(&self) -> usize {
        self.pixel_channels() + self.context_channels()
    }

    /// Whether the output head starts at zero (the network starts from its prior).
    pub fn residual(&self) -> bool {
        !matches!(self, InputMap::Rgb(None))
    }

    pub fn camera_prior(&self) -> Option<&camera::CameraPrior> {
        match self {
            InputMap::CameraAware(p) => Some(p),
            InputMap::Rgb(_) => None,
        }
    }

    /// The per-pixel input from the chromaticity `x` (b, 3, h, w): x itself, or A(C)·x.
    pub fn pixel_input(&self, x: &Tensor, cam: Option<&camera::CameraBatch>) -> Result<Tensor> {
        match self {
            InputMap::Rgb(_) => Ok(x.clone()),
            InputMap::CameraAware(_) => profile::timed("camera input", || camera::per_pixel(&Self::need(cam)?.coords, x)),
        }
    }

    /// The per-picture context, (b, n·k, 1, 1): each of the n cues' coordinates A(C)·cue; None
    /// for a network that reads no cues.
    pub fn context(&self, cam: Option<&camera::CameraBatch>) -> Result<Option<Tensor>> {
        if self.context_channels() == 0 {
            return Ok(None);
        }
        let cam = Self::need(cam)?;
        let Some(cues) = &cam.cues else {
            candle_core::bail!("this network reads the picture's illumination cues, and none were given")
        };
        // (b, k, 3) · (b, 3, n, 1) → (b, k, n, 1) → (b, n·k, 1, 1)
        let b = cues.dim(0)?;
        Ok(Some(camera::per_pixel(&cam.coords, cues)?.reshape((b, self.context_channels(), 1, 1))?))
    }

    /// A one-camera network's spectra from the body's output `y` (b, bands, h, w) and the
    /// chromaticity `x`: y, plus P·x when it keeps a linear prior. (A camera-aware network ends
    /// in [`Self::camera_head`].)
    pub fn output(&self, y: Tensor, x: &Tensor) -> Result<Tensor> {
        match self {
            InputMap::Rgb(prior) => LinearPrior::add_to(y, prior.as_ref(), x),
            InputMap::CameraAware(_) => candle_core::bail!("a camera-aware network ends in its camera head"),
        }
    }

    /// A camera-aware network's last linear layer and output in one: with the layer
    /// y = W·f + b (W bands × c, per pixel), ŷ = P(C)·x + N(C)·(W·f + b), computed as
    /// (N·W)·f + N·b + P·x so the bands × bands projector never touches a pixel (per image, N·W
    /// is bands × c). `f` (b, c, h, w) and `x` (b, 3, h, w) are cropped to the output size.
    pub fn camera_head(&self, w: &Tensor, bias: Option<&Tensor>, f: &Tensor, x: &Tensor, cam: Option<&camera::CameraBatch>) -> Result<Tensor> {
        profile::timed("camera head", || {
            let cam = Self::need(cam)?;
            let (b, c, h, wd) = f.dims4()?;
            let bands = w.dim(0)?;
            // (b, bands, bands) · (bands, c) → (b, bands, c)
            let folded = cam.null.broadcast_matmul(&w.reshape((bands, c))?)?;
            let mut y = camera::per_pixel(&folded, f)?;
            if let Some(bias) = bias {
                // (b, bands, bands) · (bands, 1) → (b, bands, 1, 1)
                let nb = cam.null.broadcast_matmul(&bias.reshape((bands, 1))?)?.reshape((b, bands, 1, 1))?;
                y = y.broadcast_add(&nb)?;
            }
            debug_assert_eq!((h, wd), (x.dim(2)?, x.dim(3)?));
            y + camera::per_pixel(&cam.wiener, x)?
        })
    }

    /// The tensors that start from the training data (`data` seen through its camera): the
    /// camera-aware prior's spectral moment (`wiener.moment`, 31 × 31, every 7th pixel), or the
    /// linear prior's ridge fit (`prior.weight`, bands × 3, every pixel).
    pub fn data_init(&self, data: &super::InitData) -> crate::Result<Vec<(&'static str, ndarray::Array2<f32>)>> {
        Ok(match self {
            InputMap::CameraAware(_) => vec![("wiener.moment", camera::spectral_moment(data.cubes, 7).mapv(|v| v as f32))],
            InputMap::Rgb(Some(_)) => {
                let mut moments = crate::recon::baselines::PixelMoments::new(data.camera.ncols());
                for cube in data.cubes {
                    let rgb = crate::RgbImage::new(crate::spectral::render::project(data.camera.view(), cube.view())?)?;
                    moments.add(cube, &rgb)?;
                }
                vec![("prior.weight", crate::recon::baselines::fit_linear(&moments)?)]
            }
            InputMap::Rgb(None) => Vec::new(),
        })
    }

    /// Whether the tensor `name` trains: the camera-aware prior's moment stays as the data set it.
    pub fn is_trainable(&self, name: &str) -> bool {
        !(matches!(self, InputMap::CameraAware(_)) && name.starts_with("wiener."))
    }

    fn need(cam: Option<&camera::CameraBatch>) -> Result<&camera::CameraBatch> {
        cam.ok_or_else(|| candle_core::Error::Msg("a camera-aware network needs the camera of its input".into()))
    }
}

/// `z` (b, c, h, w) with the per-image `context` (b, m, 1, 1) appended as m constant channels.
pub fn with_context(z: &Tensor, context: &Tensor) -> Result<Tensor> {
    let (b, _, h, w) = z.dims4()?;
    let m = context.dim(1)?;
    Tensor::cat(&[z, &context.broadcast_as((b, m, h, w))?.contiguous()?], 1)
}

/// The per-pixel linear map P (bands × 3, tensor `weight`) a residual network adds its output
/// to. Initialised to zero here; the trainer sets it to the ridge fit of the training data.
#[derive(Debug, Clone)]
pub struct LinearPrior {
    weight: Tensor,
}

impl LinearPrior {
    pub fn new(bands: usize, vb: candle_nn::VarBuilder) -> Result<Self> {
        Ok(Self { weight: vb.get_with_hints((bands, 3), "weight", candle_nn::Init::Const(0.0))? })
    }

    /// `y` plus the prior's map of `rgb`, when the network has a prior.
    pub fn add_to(y: Tensor, prior: Option<&LinearPrior>, rgb: &Tensor) -> Result<Tensor> {
        match prior {
            Some(prior) => y + prior.forward(rgb)?,
            None => Ok(y),
        }
    }

    /// (b, 3, h, w) → (b, bands, h, w).
    pub fn forward(&self, rgb: &Tensor) -> Result<Tensor> {
        let (bands, _) = self.weight.dims2()?;
        conv::conv2d(rgb, &self.weight.reshape((bands, 3, 1, 1))?, 0, 1)
    }
}
