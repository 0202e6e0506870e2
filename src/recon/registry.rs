//! Which methods exist: the built-in names (`spline`, and every architecture of
//! [`crate::models::Architecture`] by its own name), every model card and every PyTorch
//! checkpoint (`.pth`, `.pt`) found in the model folders, and how to load one by name.
//!
//! Model folders, searched in order: `$SPECTRAL_STUDIO_MODELS` (`:`-separated), the user's
//! folder (`$XDG_DATA_HOME/spectral-studio/models`, default `~/.local/share/…`), and the shipped
//! `models/` (beside the executable's checkout, or next to the executable).

use super::card::{ModelCard, ModelFiles};
use crate::models::{Architecture, Kind};
use super::classical::LinearMapReconstructor;
use super::learned::NetReconstructor;
use super::Reconstructor;
use crate::spectral::camera::CameraResponse;
use crate::{Error, Result};
use candle_core::Device;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// usr estimating the camera from each picture, whatever camera it is told (for `compare`,
/// where every method is told each scene's camera).
pub const USR_BLIND: &str = "usr-blind";

/// The method built from the camera alone, with no model.
pub const SPLINE: &str = "spline";
const SPLINE_DESCRIPTION: &str = "cubic spline through the camera channels' centre wavelengths (closed form)";

/// The built-in method names: `spline`, then each architecture's (its shipped model).
pub fn builtin_methods() -> Vec<&'static str> {
    std::iter::once(SPLINE).chain(Architecture::ALL.iter().map(|a| a.name())).collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodEntry {
    pub name: String,
    /// "classical" or "learned".
    pub kind: &'static str,
    pub description: String,
    /// The model it loads by default (None for spline, or when the model is missing).
    pub model: Option<PathBuf>,
    pub camera: Option<String>,
    /// What its model is (read from its card when the list is made); None for spline, or a
    /// checkpoint without a card.
    pub architecture: Option<Architecture>,
}

/// The `models/` folder that ships with the program.
pub fn shipped_models_dir() -> PathBuf {
    let beside_exe = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("models")));
    if let Some(dir) = beside_exe.filter(|d| d.is_dir()) {
        return dir;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

pub fn user_models_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("spectral-studio/models"))
}

pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("SPECTRAL_STUDIO_MODELS").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
    dirs.extend(user_models_dir());
    dirs.push(shipped_models_dir());
    dirs
}

/// The first model called `name` (a `NAME.json` card with its weights) in the model folders.
pub fn find_model(name: &str) -> Option<ModelFiles> {
    model_dirs().iter().find_map(|d| ModelFiles::resolve(&d.join(name)).ok())
}

/// Every method: the built-ins first, then any other model card in the model folders.
pub fn list_methods() -> Vec<MethodEntry> {
    let mut out = Vec::new();
    out.push(MethodEntry { name: SPLINE.into(), kind: Kind::Classical.name(), description: SPLINE_DESCRIPTION.into(), model: None, camera: None, architecture: None });
    for arch in Architecture::ALL {
        let info = arch.info();
        // Its model: weights beside a card, else a PyTorch checkpoint of that name.
        let model = find_model(info.name).map(|f| f.weights).or_else(|| find_checkpoint(info.name));
        let camera = model.as_deref().and_then(card_of).map(|c| c.camera);
        out.push(MethodEntry { name: info.name.into(), kind: info.kind.name(), description: info.description.into(), model, camera, architecture: Some(arch) });
    }
    for dir in model_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut cards: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
        cards.sort();
        for card_path in cards {
            let Some(stem) = card_path.file_stem().and_then(|s| s.to_str()) else { continue };
            if out.iter().any(|m| m.name == stem) {
                continue;
            }
            let (Ok(files), Ok(card)) = (ModelFiles::resolve(&card_path), ModelCard::load(&card_path)) else { continue };
            let kind = card.architecture.info().kind.name();
            out.push(MethodEntry {
                name: stem.into(),
                kind,
                description: format!("{} model from {}", card.architecture.name(), dir.display()),
                model: Some(files.weights),
                camera: Some(card.camera),
                architecture: Some(card.architecture),
            });
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut checkpoints: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| super::pytorch::is_checkpoint(p)).collect();
        checkpoints.sort();
        for path in checkpoints {
            let entry = checkpoint_entry(&path);
            if !out.iter().any(|m| m.name == entry.name) {
                out.push(entry);
            }
        }
    }
    out
}

/// The first PyTorch checkpoint `NAME.pth` or `NAME.pt` in the model folders.
pub fn find_checkpoint(name: &str) -> Option<PathBuf> {
    model_dirs().iter().flat_map(|d| ["pth", "pt"].map(|ext| d.join(format!("{name}.{ext}")))).find(|p| p.is_file())
}

/// The card of the model file `path`: `NAME.json` beside weights or beside a PyTorch checkpoint
/// (None when there is none or it does not read; a checkpoint without one gets an inferred card
/// when it loads).
pub fn card_of(path: &Path) -> Option<ModelCard> {
    let card = if super::pytorch::is_checkpoint(path) { path.with_extension("json") } else { ModelFiles::resolve(path).ok()?.card };
    ModelCard::load(&card).ok()
}

/// A model file as a method entry, named after its file; only its card is read (for the
/// camera and architecture), loading it checks the rest ([`load_method`]).
pub fn checkpoint_entry(path: &Path) -> MethodEntry {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("checkpoint").to_string();
    let card = card_of(path);
    let (camera, architecture) = (card.as_ref().map(|c| c.camera.clone()), card.map(|c| c.architecture));
    MethodEntry { name, kind: Kind::Learned.name(), description: format!("PyTorch checkpoint {}", path.display()), model: Some(path.to_path_buf()), camera, architecture }
}

/// Why method `entry` cannot reconstruct pictures from `camera`, or None when it can: a network
/// made for one camera cannot use another (a camera-aware one, `linear` with its spectral moment,
/// `pca` and `spline` can). Reads the model's card (and a `linear` model's small weights).
pub fn camera_refusal(entry: &MethodEntry, camera: &CameraResponse) -> Option<String> {
    let weights = entry.model.as_ref()?;
    let card = card_of(weights)?;
    if card.fits_camera(camera).unwrap_or(false) {
        return None;
    }
    match card.architecture {
        Architecture::Mscnn | Architecture::Basisnet | Architecture::Mstpp | Architecture::Inss => Some(format!("trained for the camera '{}' only: cannot use '{}'", card.camera, camera.name)),
        // `linear` refits itself from its spectral moment, which models from before it was
        // kept lack.
        Architecture::Linear => ModelFiles::resolve(weights).and_then(|files| LinearMapReconstructor::linear(&files, camera)).err().map(|_| format!("fitted for the camera '{}' and keeps no spectral moment to refit for '{}'", card.camera, camera.name)),
        // usr takes any camera, or estimates it.
        Architecture::Pca | Architecture::Usr => None,
    }
}

/// Load method `name`, with `model` overriding its default weights. `camera` is the assumed
/// camera (used by spline and pca, checked by linear).
pub fn load_method(name: &str, model: Option<&Path>, camera: &CameraResponse, device: &Device) -> Result<Box<dyn Reconstructor>> {
    if name == SPLINE {
        if model.is_some() {
            return Err(Error::invalid("method 'spline' has no model: it is built from the camera alone"));
        }
        return Ok(Box::new(LinearMapReconstructor::spline(camera)?));
    }
    if name == USR_BLIND {
        let files = match model {
            Some(path) => ModelFiles::resolve(path)?,
            None => find_model("usr").ok_or_else(|| Error::invalid(format!("no usr model in {}", model_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "))))?,
        };
        return Ok(Box::new(super::usr::UsrReconstructor::load(&files, None, device)?));
    }
    let checkpoint = match model {
        Some(path) => Some(path.to_path_buf()).filter(|p| super::pytorch::is_checkpoint(p)),
        None => find_model(name).is_none().then(|| find_checkpoint(name)).flatten(),
    };
    if let Some(path) = checkpoint.as_deref() {
        let net = NetReconstructor::load_pytorch(path, camera, device)?;
        if builtin_methods().contains(&name) && name != net.card().architecture.name() {
            return Err(Error::format(path, format!("method '{name}' given a '{}' checkpoint", net.card().architecture.name())));
        }
        return Ok(Box::new(net));
    }
    let files = match model {
        Some(path) => ModelFiles::resolve(path)?,
        None => find_model(name).ok_or_else(|| {
            Error::invalid(format!(
                "no model for method '{name}' in {} (known methods: {}; `spectral-studio methods` lists them)",
                model_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
                builtin_methods().join(", ")
            ))
        })?,
    };
    let card = ModelCard::load(&files.card)?;
    if builtin_methods().contains(&name) && name != card.architecture.name() {
        return Err(Error::format(&files.card, format!("method '{name}' given a '{}' model", card.architecture.name())));
    }
    Ok(match card.architecture {
        Architecture::Linear => Box::new(LinearMapReconstructor::linear(&files, camera)?),
        Architecture::Pca => Box::new(LinearMapReconstructor::pca(&files, camera)?),
        Architecture::Mscnn | Architecture::Basisnet | Architecture::Mstpp | Architecture::Inss => Box::new(NetReconstructor::load(&files, camera, device)?),
        // Told the camera, as every method is here; `reconstruct` without `--camera` and
        // `usr-blind` estimate it from the picture ([`load_blind`]).
        Architecture::Usr => Box::new(super::usr::UsrReconstructor::load(&files, Some(camera), device)?),
    })
}
