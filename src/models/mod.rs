//! The architectures, one per file, built from a `VarBuilder` with PyTorch tensor names, and
//! the one table that says what each architecture is ([`Architecture::info`]): its name, whether
//! it is learned, its description, its default config and how to build it. Everything else
//! (cards, the registry, training, the CLI and the studio) asks this table; adding an
//! architecture is adding a variant here, and the compiler lists every match that must learn it.
//!
//! Models know nothing of devices, files or the studio: a card and a `VarBuilder` in, a
//! [`SpectralNet`] out.

pub mod basisnet;
pub mod camera;
pub mod input;
pub mod inss;
pub mod mscnn;
pub mod mstpp;
pub mod ual;
pub mod unet;
pub mod usr;

use crate::{Error, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// A network that maps (batch, 3, rows, cols) linear RGB to (batch, bands, rows, cols).
pub trait SpectralNet: Send + Sync {
    /// `camera`: each image's camera matrices, which a camera-aware network needs (and any
    /// other ignores). `train` switches batch norm to batch statistics and turns dropout on.
    fn forward_t(&self, rgb: &Tensor, camera: Option<&camera::CameraBatch>, train: bool) -> candle_core::Result<Tensor>;
    /// The spectral prior a camera-aware network derives its camera matrices from; None for a
    /// network trained for one camera.
    fn camera_prior(&self) -> Option<&camera::CameraPrior>;
    /// Side length the input must be a multiple of; `forward_t` pads and crops to it.
    fn size_multiple(&self) -> usize;
    /// Pixels of context each side of an output pixel that matter (for tile overlap).
    fn receptive_margin(&self) -> usize;
    /// The tensors (by their names in the checkpoint) a new model starts from that depend on
    /// its training data rather than on random initialisation. The trainer writes them in
    /// before the first step.
    fn data_init(&self, data: &InitData) -> Result<Vec<(&'static str, ndarray::Array2<f32>)>>;
    /// Whether the tensor `name` is updated by training (false for priors fixed from the data).
    fn is_trainable(&self, name: &str) -> bool;
    /// Whether the network must see the whole image at once (its output depends on statistics
    /// of every pixel, as a spectral-wise attention's does): inference then runs untiled, and
    /// its memory grows with the image.
    fn whole_image(&self) -> bool {
        false
    }
}

/// What a model may derive its data-dependent initial values from.
pub struct InitData<'a> {
    /// The training cubes (bands, rows, cols) on the model's grid.
    pub cubes: &'a [ndarray::Array3<f32>],
    /// The run's camera (3 × bands): the camera of every picture for a one-camera model.
    pub camera: &'a ndarray::Array2<f32>,
}

/// Every architecture a model card can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Multi-scale U-Net ([`mscnn`]).
    Mscnn,
    /// Basis-weight U-Net ([`basisnet`]).
    Basisnet,
    /// MST++, the multi-stage spectral-wise transformer ([`mstpp`]).
    Mstpp,
    /// Ridge-regression map (tensor `map`, bands × 3, and `moment`, bands × bands).
    Linear,
    /// Wiener estimation with a PCA prior (tensors `components`, bands × k, and `variances`).
    Pca,
    /// USR, unsupervised reconstruction with a blind camera estimate ([`usr`]).
    Usr,
    /// INSS, abundances over a spectral library mixed by an implicit neural model ([`inss`]).
    Inss,
}

/// Whether an architecture is fitted by gradient descent or in closed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Learned,
    Classical,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Learned => "learned",
            Kind::Classical => "classical",
        }
    }
}

/// One row of the architecture table.
#[derive(Debug, Clone, Copy)]
pub struct ArchitectureInfo {
    /// The name cards, the CLI and the studio use.
    pub name: &'static str,
    pub kind: Kind,
    /// One line for `methods` and the studio.
    pub description: &'static str,
}

/// Number of PCA components kept by the `pca` prior.
pub const PCA_COMPONENTS: usize = 8;

impl Architecture {
    /// Every architecture, closed forms first, in the order `methods` and the studio list them.
    pub const ALL: [Architecture; 7] = [Architecture::Linear, Architecture::Pca, Architecture::Mscnn, Architecture::Basisnet, Architecture::Mstpp, Architecture::Usr, Architecture::Inss];

    /// The table.
    pub fn info(self) -> ArchitectureInfo {
        let (name, kind, description) = match self {
            Architecture::Mscnn => ("mscnn", Kind::Learned, "multi-scale U-Net (Double Conv, max-pool, pixel-shuffle up-sampling)"),
            Architecture::Basisnet => ("basisnet", Kind::Learned, "fast U-Net predicting per-pixel weights over a learned spectral basis"),
            Architecture::Mstpp => ("mstpp", Kind::Learned, "MST++ (Cai et al. 2022, NTIRE 2022 winner): three U-shaped spectral-wise transformers in sequence"),
            Architecture::Usr => ("usr", Kind::Learned, "USR (Zhu et al. 2021): camera response estimated from the photo alone, cube generated by re-projection refinement, trained without pairs"),
            Architecture::Inss => ("inss", Kind::Learned, "INSS (Liu et al. 2022): abundances over a spectral library from the RGB, mixed through a learned solar signature and an implicit neural mixing model"),
            Architecture::Linear => ("linear", Kind::Classical, "ridge regression RGB → spectrum fitted on training pairs (closed form)"),
            Architecture::Pca => ("pca", Kind::Classical, "Wiener estimation with a PCA spectral prior and the camera curves (closed form)"),
        };
        ArchitectureInfo { name, kind, description }
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|a| a.name()).collect();
            Error::invalid(format!("unknown architecture '{s}' (expected one of {})", names.join(", ")))
        })
    }

    /// Whether it is a network (trained, built by [`Self::build`]) rather than a closed form.
    pub fn is_network(self) -> bool {
        self.info().kind == Kind::Learned
    }

    /// The config a new model of this architecture gets when none is given.
    pub fn default_config(self) -> serde_json::Value {
        let value = match self {
            Architecture::Mscnn => serde_json::to_value(mscnn::MscnnConfig::default()),
            Architecture::Basisnet => serde_json::to_value(basisnet::BasisNetConfig::default()),
            Architecture::Mstpp => serde_json::to_value(mstpp::MstppConfig::default()),
            Architecture::Usr => serde_json::to_value(usr::UsrConfig::default()),
            Architecture::Inss => serde_json::to_value(inss::InssConfig::default()),
            Architecture::Linear => Ok(serde_json::json!({})),
            Architecture::Pca => Ok(serde_json::json!({ "components": PCA_COMPONENTS, "wiener_noise": crate::recon::classical::WIENER_NOISE })),
        };
        value.expect("configs serialise")
    }

    /// The network `config` describes, built from `vb` (a VarMap for training, a file for
    /// inference). Closed-form architectures are no networks and say so.
    pub fn build(self, config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn SpectralNet>> {
        let decode = |e: serde_json::Error| Error::invalid(format!("config does not fit {}: {e}", self.name()));
        Ok(match self {
            Architecture::Mscnn => Box::new(mscnn::Mscnn::new(&serde_json::from_value(config.clone()).map_err(decode)?, vb)?),
            Architecture::Basisnet => Box::new(basisnet::BasisNet::new(&serde_json::from_value(config.clone()).map_err(decode)?, vb)?),
            Architecture::Mstpp => Box::new(mstpp::Mstpp::new(&serde_json::from_value(config.clone()).map_err(decode)?, vb)?),
            Architecture::Usr => Box::new(usr::Usr::new(&serde_json::from_value(config.clone()).map_err(decode)?, vb)?),
            Architecture::Inss => Box::new(inss::Inss::new(&serde_json::from_value(config.clone()).map_err(decode)?, vb)?),
            Architecture::Linear | Architecture::Pca => return Err(Error::invalid(format!("'{}' is fitted in closed form, not a network", self.name()))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_parses_from_its_name_and_has_a_default_config() {
        for a in Architecture::ALL {
            assert_eq!(Architecture::parse(a.name()).unwrap(), a);
            assert!(a.default_config().is_object(), "{}", a.name());
            assert!(!a.info().description.is_empty());
        }
        assert!(Architecture::parse("mst").is_err());
    }

    #[test]
    fn networks_build_from_their_default_config_and_closed_forms_refuse() {
        for a in Architecture::ALL {
            let vb = VarBuilder::zeros(candle_core::DType::F32, &candle_core::Device::Cpu);
            assert_eq!(a.build(&a.default_config(), vb).is_ok(), a.is_network(), "{}", a.name());
        }
    }
}
