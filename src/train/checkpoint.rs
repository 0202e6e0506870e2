//! Checkpoints: model weights (loadable as a model), the optimiser's moments, and a card, each
//! written to a temporary file and renamed so a crash never leaves a half-written checkpoint.

use crate::recon::card::{ModelCard, ModelFiles};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Save named tensors as safetensors at `path`, atomically.
pub fn save_safetensors_atomically(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    // Sorted names: the same weights always give the same bytes.
    let mut named: Vec<(&String, &Tensor)> = tensors.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    let bytes = safetensors::tensor::serialize(named, None).map_err(|e| Error::format(path, format!("cannot encode weights: {e}")))?;
    crate::io::atomic::write_bytes_atomically(path, &bytes)
}

/// `OUT/checkpoints`, created if missing: where a run's checkpoints go.
pub fn checkpoints_dir(out_dir: &Path) -> Result<PathBuf> {
    let dir = out_dir.join("checkpoints");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

/// Files of the checkpoint at `step` in `dir`: `ckpt-000500.safetensors` + `.json` (a model
/// card, so any checkpoint loads as a model) + `.optim.safetensors` (AdamW moments).
pub fn checkpoint_files(dir: &Path, step: usize) -> (ModelFiles, PathBuf) {
    let stem = dir.join(format!("ckpt-{step:06}"));
    (ModelFiles { card: stem.with_extension("json"), weights: stem.with_extension("safetensors") }, optimiser_file(&stem))
}

/// `…/ckpt-000500.optim.safetensors` beside `…/ckpt-000500.safetensors`.
pub fn optimiser_file(weights_or_stem: &Path) -> PathBuf {
    let stem = weights_or_stem.with_extension("");
    let name = format!("{}.optim.safetensors", stem.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    stem.with_file_name(name)
}

/// Checkpoints in `dir`, oldest first.
pub fn list_checkpoints(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with("ckpt-") && name.ends_with(".safetensors") && !name.ends_with(".optim.safetensors")
        })
        .collect();
    out.sort();
    out
}

/// Continue a run from the checkpoint at `path`: its card must pass `fits` (else the error is
/// `mismatch`, naming the card), its weights are loaded into `varmap`, and the training state
/// beside it (`.optim.safetensors`: optimiser moments, and whatever else a trainer keeps there)
/// is returned with that file's path, for errors naming it.
pub fn resume(path: &Path, fits: impl FnOnce(&ModelCard) -> bool, mismatch: &str, varmap: &VarMap, device: &Device) -> Result<(HashMap<String, Tensor>, PathBuf)> {
    let files = ModelFiles::resolve(path)?;
    if !fits(&ModelCard::load(&files.card)?) {
        return Err(Error::format(&files.card, mismatch));
    }
    varmap.clone().load(&files.weights).map_err(|e| Error::format(&files.weights, format!("cannot load checkpoint weights: {e}")))?;
    let state_path = optimiser_file(&files.weights);
    let state = candle_core::safetensors::load(&state_path, device).map_err(|e| Error::format(&state_path, format!("cannot load the training state: {e}")))?;
    Ok((state, state_path))
}

/// Write weights + card of a model.
pub fn save_model(weights: &HashMap<String, Tensor>, card: &ModelCard, files: &ModelFiles) -> Result<()> {
    save_safetensors_atomically(weights, &files.weights)?;
    card.save(&files.card)
}
