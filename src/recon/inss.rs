//! INSS at inference: the cube on the model's bands, and what the method says beside it (the
//! abundances over its library, the learned signature, how nonlinear each pixel is). The whole
//! picture runs at once (its batch norm normalises by the picture's own statistics), padded by
//! repeating its edges to a multiple of 2^stages: the abundances alone
//! take N_g floats per pixel, so a picture of n pixels needs about 3·N_g·n·4 bytes.

use super::card::{ModelCard, ModelFiles};
use crate::engine::JobContext;
use crate::models::inss::{Inss, InssConfig};
use crate::models::Architecture;
use crate::{Error, Result, RgbImage};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ndarray::{Array2, Array3, Axis};

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

impl InssSynthesis {
    /// The library spectra by mean abundance over the picture, strongest first: (index, mean).
    pub fn strongest(&self) -> Vec<(usize, f32)> {
        let mut out: Vec<(usize, f32)> = self.abundances.outer_iter().map(|m| m.mean().unwrap_or(0.0)).enumerate().collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    /// The abundances summed by class, the part of each spectrum's category before its `/`
    /// (`vegetation/canopy` → `vegetation`), classes in order of first appearance: (class,
    /// how many spectra it sums) and the maps (classes, rows, cols), still summing to one.
    pub fn by_class(&self, categories: &[String]) -> Result<(Vec<(String, usize)>, Array3<f32>)> {
        let (g, rows, cols) = self.abundances.dim();
        if categories.len() != g {
            return Err(Error::invalid(format!("{} categories for {g} abundance maps", categories.len())));
        }
        let class_of = |c: &String| c.split('/').next().filter(|s| !s.is_empty()).unwrap_or("unclassified").to_string();
        let mut classes: Vec<(String, usize)> = Vec::new();
        let index: Vec<usize> = categories
            .iter()
            .map(|c| {
                let name = class_of(c);
                match classes.iter().position(|(n, _)| *n == name) {
                    Some(i) => {
                        classes[i].1 += 1;
                        i
                    }
                    None => {
                        classes.push((name, 1));
                        classes.len() - 1
                    }
                }
            })
            .collect();
        let mut maps = Array3::<f32>::zeros((classes.len(), rows, cols));
        for (i, map) in self.abundances.outer_iter().enumerate() {
            let mut into = maps.index_axis_mut(ndarray::Axis(0), index[i]);
            into += &map;
        }
        Ok((classes, maps))
    }
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

    /// The library spectra's categories (`vegetation/canopy`, `built/road`, ...), in the
    /// abundances' order.
    pub fn library_categories(&self) -> Result<Vec<String>> {
        let lib = crate::spectral::library::library_ref(crate::train::inss::LIBRARY)?;
        if lib.categories.len() != self.net.config().library {
            return Err(Error::invalid(format!("model '{}' mixes {} spectra, the shipped library has {}", self.card.name, self.net.config().library, lib.categories.len())));
        }
        Ok(lib.categories.clone())
    }

    /// ReLU(t), the learned solar-atmospheric signature, one value per band.
    pub fn signature(&self) -> Result<Vec<f32>> {
        Ok(self.net.signature()?.to_dtype(DType::F32)?.to_vec1()?)
    }

    pub fn synthesise(&self, rgb: &RgbImage, job: &JobContext) -> Result<InssSynthesis> {
        job.check()?;
        let (rows, cols) = (rgb.rows(), rgb.cols());
        let x = self.net.pad_input(&super::fusion::tensor3(&rgb.data, &self.device)?)?;
        job.report(0.1, "synthesising (inss)");
        let out = self.net.forward_parts(&x, false)?;
        let crop = |t: &Tensor| super::fusion::array3(&t.narrow(2, 0, rows)?.narrow(3, 0, cols)?);
        let cube = crop(&out.cube)?;
        let abundances = crop(&out.abundances)?;
        // ‖S − L‖ / ‖S‖ per pixel, over the bands
        let nonlinear = (&cube - &crop(&out.linear)?).mapv(|v| v * v).sum_axis(Axis(0));
        let total = cube.mapv(|v| v * v).sum_axis(Axis(0));
        let nonlinearity = ndarray::Zip::from(&nonlinear).and(&total).map_collect(|&d, &s| if s > 0.0 { (d / s).sqrt() } else { 0.0 });
        job.report(1.0, "synthesised");
        Ok(InssSynthesis { cube, abundances, nonlinearity })
    }
}
