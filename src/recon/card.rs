//! Model cards: the JSON beside each `NAME.safetensors` in `models/` (ARCHITECTURE rule 6).
//! A card says what the weights are (architecture + config), what they expect (wavelengths,
//! camera, input brightness), where they came from (data, the command that reproduces them,
//! training record) and how good they are (metrics on held-out scenes).

use crate::error::Error;
use crate::models::Architecture;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainingRecord {
    pub steps: usize,
    pub batch: usize,
    pub patch: usize,
    pub seconds: f64,
    pub device: String,
    /// Training loss at the last step (None for closed-form fits).
    pub final_loss: Option<f64>,
    /// Validation MRAE at the last validation.
    pub val_mrae: Option<f64>,
    /// The whole training configuration (data, loss, optimiser, schedule, augmentation, seed).
    #[serde(default)]
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub architecture: Architecture,
    /// The architecture's config struct as JSON (e.g. [`crate::models::mscnn::MscnnConfig`]).
    pub config: serde_json::Value,
    pub wavelengths: Vec<f32>,
    /// Camera the model was trained or fitted for (a built-in name or a CSV path).
    pub camera: String,
    /// Mean linear RGB of the training inputs; exposure invariance rescales inputs to it.
    #[serde(default)]
    pub input_mean: Option<f32>,
    /// What it was trained on.
    pub data: String,
    /// The exact command that reproduces the weights.
    pub command: String,
    #[serde(default)]
    pub training: Option<TrainingRecord>,
    /// Held-out evaluation (the `compare --json` record of this method), when measured.
    #[serde(default)]
    pub metrics: Option<serde_json::Value>,
    #[serde(default)]
    pub notes: Option<String>,
}

impl ModelCard {
    pub fn load(path: &Path) -> Result<ModelCard> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not a model card: {e}")))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        crate::io::atomic::write_bytes_atomically(path, (text + "\n").as_bytes())
    }

    /// Whether the model was made for `camera`: the card's camera has the same curves on the
    /// card's grid (to 1e-4), whatever either is called. A card naming a camera that no longer
    /// resolves (a CSV moved away) fits only a camera of that name.
    pub fn fits_camera(&self, camera: &crate::spectral::camera::CameraResponse) -> Result<bool> {
        if self.camera == ANY_CAMERA {
            return Ok(true);
        }
        let Ok(own) = crate::spectral::camera::CameraResponse::parse(&self.camera) else {
            return Ok(self.camera == camera.name);
        };
        let (a, b) = (own.on_grid(&self.wavelengths)?, camera.on_grid(&self.wavelengths)?);
        Ok(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() <= 1e-4))
    }

    /// The config decoded as the architecture's own struct.
    pub fn config_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.config.clone())
            .map_err(|e| Error::invalid(format!("model '{}': config does not fit {}: {e}", self.name, self.architecture.name())))
    }
}

/// The `camera` of a card whose model takes the camera as an input.
pub const ANY_CAMERA: &str = "any";

/// A model on disk: its card and weights, given either file (or the stem).
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub card: PathBuf,
    pub weights: PathBuf,
}

impl ModelFiles {
    pub fn resolve(path: &Path) -> Result<ModelFiles> {
        let card = path.with_extension("json");
        let weights = path.with_extension("safetensors");
        for p in [&card, &weights] {
            if !p.is_file() {
                return Err(Error::format(p, "model file not found (a model is NAME.safetensors + NAME.json)"));
            }
        }
        Ok(ModelFiles { card, weights })
    }
}
