//! INSS at inference: the cube on the model's bands, and what the method says beside it (the
//! abundances over its library, the learned signature, how nonlinear each pixel is). The whole
//! picture runs at once (its batch norm normalises by the picture's own statistics), padded by
//! repeating its edges to a multiple of 2^stages: the abundances alone
//! take N_g floats per pixel, so a picture of n pixels needs about 3·N_g·n·4 bytes.

use super::card::{ModelCard, ModelFiles};
use super::Reconstructor;
use crate::engine::JobContext;
use crate::models::inss::{Inss, InssConfig};
use crate::models::Architecture;
use crate::{Error, Result, RgbImage};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ndarray::{Array2, Array3};

pub struct InssReconstructor {
    card: ModelCard,
    net: Inss,
    device: Device,
}

/// Everything INSS makes of one picture.
pub struct InssSynthesis {
    /// S (bands, rows, cols).
    pub cube: Array3<f32>,
    /// A (N_g, rows, cols), summing to one at every pixel.
    pub abundances: Array3<f32>,
    /// ‖S − L‖ / ‖S‖ per pixel (rows, cols): how much of the spectrum the nonlinear terms make.
    pub nonlinearity: Array2<f32>,
}

impl InssReconstructor {
    pub fn load(files: &ModelFiles, device: &Device) -> Result<Self> {
        let card = ModelCard::load(&files.card)?;
        if card.architecture != Architecture::Inss {
            return Err(Error::format(&files.card, format!("an inss model was expected, this is a '{}' one", card.architecture.name())));
        }
        let cfg: InssConfig = serde_json::from_value(card.config.clone()).map_err(|e| Error::format(&files.card, format!("config does not fit inss: {e}")))?;
        // SAFETY: read-only map; candle copies each tensor out of it as it is built.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&files.weights], DType::F32, device) }.map_err(|e| Error::format(&files.weights, format!("cannot read weights: {e}")))?;
        let net = Inss::new(&cfg, vb).map_err(|e| Error::format(&files.weights, format!("weights do not fit the card's inss: {e}")))?;
        Ok(Self { card, net, device: device.clone() })
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The library spectra's names, in the abundances' order (from the card's notes), when the
    /// card lists them.
    pub fn library_names(&self) -> Result<Vec<String>> {
        let (r, names) = crate::train::inss::library_on(&self.card.wavelengths)?;
        if r.ncols() != self.net.config().library {
            return Err(Error::invalid(format!("model '{}' mixes {} spectra, the shipped library has {}", self.card.name, self.net.config().library, r.ncols())));
        }
        Ok(names)
    }

    /// ReLU(t), the learned solar-atmospheric signature, one value per band.
    pub fn signature(&self) -> Result<Vec<f32>> {
        Ok(self.net.signature()?.to_dtype(DType::F32)?.to_vec1()?)
    }

    pub fn synthesise(&self, rgb: &RgbImage, job: &JobContext) -> Result<InssSynthesis> {
        job.check()?;
        let (rows, cols) = (rgb.rows(), rgb.cols());
        let x = Tensor::from_vec(rgb.data.as_standard_layout().iter().copied().collect::<Vec<f32>>(), (1, 3, rows, cols), &self.device)?;
        let x = self.net.pad_input(&x)?;
        job.report(0.1, "synthesising (inss)");
        let out = self.net.forward_parts(&x, false)?;
        let crop = |t: &Tensor| -> Result<Array3<f32>> {
            let t = t.narrow(2, 0, rows)?.narrow(3, 0, cols)?.squeeze(0)?.contiguous()?;
            let (c, h, w) = t.dims3()?;
            Ok(Array3::from_shape_vec((c, h, w), t.flatten_all()?.to_vec1::<f32>()?).map_err(|e| Error::invalid(e.to_string()))?)
        };
        let cube = crop(&out.cube)?;
        let linear = crop(&out.linear)?;
        let abundances = crop(&out.abundances)?;
        let mut nonlinearity = Array2::<f32>::zeros((rows, cols));
        for r in 0..rows {
            for c in 0..cols {
                let (mut d2, mut s2) = (0f32, 0f32);
                for b in 0..cube.dim().0 {
                    let (s, l) = (cube[[b, r, c]], linear[[b, r, c]]);
                    d2 += (s - l) * (s - l);
                    s2 += s * s;
                }
                nonlinearity[[r, c]] = if s2 > 0.0 { (d2 / s2).sqrt() } else { 0.0 };
            }
        }
        job.report(1.0, "synthesised");
        Ok(InssSynthesis { cube, abundances, nonlinearity })
    }
}

impl Reconstructor for InssReconstructor {
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
        Ok(self.synthesise(rgb, job)?.cube)
    }
}
