//! PyTorch checkpoints (`.pth`, `.pt`): the zip + pickle files `torch.save` writes, read with
//! candle's pickle reader. A checkpoint is a bare `state_dict` or a dict holding one under
//! `state_dict` (as the MST++ authors' training code saves it, beside the epoch and the
//! optimiser); DataParallel's `module.` prefix is stripped. Its tensors are then checked by name
//! and shape against the architecture's own, and every mismatch is reported by name.
//!
//! A checkpoint with a model card beside it (`NAME.json`) is that architecture and config; one
//! without gets a card inferred from its tensor names and shapes ([`infer_card`]), which says so.

use super::card::{ModelCard, ANY_CAMERA};
use crate::models::{mstpp::MstppConfig, Architecture};
use crate::{default_wavelengths, Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// DataParallel's prefix on every name.
const PARALLEL_PREFIX: &str = "module.";

/// Whether `path` names a PyTorch checkpoint (by its extension).
pub fn is_checkpoint(path: &Path) -> bool {
    matches!(crate::io::extension(path).as_str(), "pth" | "pt")
}

/// `read()` with a panic inside candle's pickle reader (it indexes into tuples read from the
/// file, so a malformed file can panic it) turned into an error naming the file.
fn guarded<T>(path: &Path, read: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).map_err(|panic| {
        let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        Error::format(path, format!("malformed PyTorch checkpoint: the pickle reader failed ({why})"))
    })
}

/// Every tensor of the checkpoint's state_dict, in f32 on the CPU, DataParallel's prefix removed.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::format(path, "PyTorch checkpoint not found"));
    }
    let not_a_checkpoint = |e: String| Error::format(path, format!("not a PyTorch checkpoint (torch.save zip file): {e}"));
    // A dict with a `state_dict` entry, else the file's object is the state_dict itself.
    let pth = match guarded(path, || candle_core::pickle::PthTensors::new(path, Some("state_dict")))? {
        Ok(pth) if !pth.tensor_infos().is_empty() => pth,
        _ => guarded(path, || candle_core::pickle::PthTensors::new(path, None))?.map_err(|e| not_a_checkpoint(e.to_string()))?,
    };
    if pth.tensor_infos().is_empty() {
        return Err(Error::format(path, "no tensors found: expected a state_dict, or a dict holding one under 'state_dict'"));
    }
    let names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
    let strip = names.iter().all(|n| n.starts_with(PARALLEL_PREFIX));
    let mut out = HashMap::with_capacity(names.len());
    for name in names {
        let tensor = guarded(path, || pth.get(&name))?
            .map_err(|e| Error::format(path, format!("cannot read tensor '{name}': {e}")))?
            .ok_or_else(|| Error::format(path, format!("tensor '{name}' vanished while reading")))?;
        let tensor = tensor.to_dtype(DType::F32)?.contiguous()?;
        let key = if strip { name[PARALLEL_PREFIX.len()..].to_string() } else { name };
        out.insert(key, tensor);
    }
    Ok(out)
}

/// The checkpoint's card: `NAME.json` beside it, else one inferred from its tensors (whose
/// notes say what is unknown).
pub fn card_for(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<ModelCard> {
    let beside = path.with_extension("json");
    if beside.is_file() {
        return ModelCard::load(&beside);
    }
    infer_card(path, tensors)
}

/// A checkpoint ready to build: its card ([`card_for`]) and its tensors (f32, on the CPU), every
/// tensor the card's network needs there by name and shape ([`check_against`]).
pub fn load_checked(path: &Path) -> Result<(ModelCard, HashMap<String, Tensor>)> {
    let tensors = read_state_dict(path)?;
    let card = card_for(path, &tensors)?;
    if !card.architecture.is_network() {
        return Err(Error::format(path, format!("a '{}' model is fitted in closed form; only networks load from PyTorch checkpoints", card.architecture.name())));
    }
    check_against(path, &card, &tensors)?;
    Ok((card, tensors))
}

/// The architecture and config of a checkpoint's tensors, from their names and shapes: MST++
/// is recognised by `conv_in.weight`, `body.N.…` stages and `conv_out.weight`.
pub fn infer_architecture(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<(Architecture, serde_json::Value)> {
    // Convolution weights are (out, in, kh, kw); anything else is not MST++.
    let dims = |key: &str| tensors.get(key).map(|t| t.dims().to_vec()).filter(|d| d.len() == 4);
    let has_stages = tensors.keys().any(|k| k.starts_with("body.0."));
    let (Some(conv_in), Some(conv_out), true) = (dims("conv_in.weight"), dims("conv_out.weight"), has_stages) else {
        return Err(Error::format(
            path,
            "no model card beside it, and its tensors are of no architecture this program recognises (MST++ has 4-D conv_in.weight and conv_out.weight, and body.N.… stages): put NAME.json beside it",
        ));
    };
    let indices = |prefix: &str| -> BTreeSet<usize> {
        tensors.keys().filter_map(|k| k.strip_prefix(prefix)).filter_map(|rest| rest.split('.').next()?.parse().ok()).collect()
    };
    let levels = indices("body.0.encoder_layers.").len();
    let mut num_blocks: Vec<usize> = (0..levels).map(|i| indices(&format!("body.0.encoder_layers.{i}.0.blocks.")).len()).collect();
    num_blocks.push(indices("body.0.bottleneck.blocks.").len());
    let config = MstppConfig { in_channels: conv_in[1], out_channels: conv_out[0], n_feat: conv_in[0], stage: indices("body.").len(), levels, num_blocks };
    Ok((Architecture::Mstpp, serde_json::to_value(&config).map_err(|e| Error::invalid(e.to_string()))?))
}

/// The card of a checkpoint without one: its architecture inferred ([`infer_architecture`]),
/// 31 bands taken to be 400–700 nm in 10 nm steps (another band count needs a card that says
/// which wavelengths), and the camera it was trained for unknown, so any camera is accepted and
/// the notes say so.
pub fn infer_card(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<ModelCard> {
    let (architecture, config) = infer_architecture(path, tensors)?;
    let bands = config.get("out_channels").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
    let wavelengths = default_wavelengths();
    if bands != wavelengths.len() {
        return Err(Error::format(
            path,
            format!("no model card beside it, and it makes {bands} bands, not the {} of 400-700 nm in 10 nm steps: put NAME.json beside it naming their wavelengths", wavelengths.len()),
        ));
    }
    Ok(ModelCard {
        name: path.file_stem().and_then(|s| s.to_str()).unwrap_or("checkpoint").to_string(),
        architecture,
        config,
        wavelengths,
        camera: ANY_CAMERA.into(),
        input_mean: None,
        data: "unknown (a PyTorch checkpoint without a model card)".into(),
        command: String::new(),
        training: None,
        metrics: None,
        notes: Some(format!(
            "card inferred from the tensor names and shapes of {}: the camera and the data it was trained on are unknown; its 31 bands are taken to be 400-700 nm in 10 nm steps",
            path.display()
        )),
    })
}

/// Check `tensors` against what `card`'s architecture asks for (names and shapes), and report
/// every missing, unexpected and wrongly shaped tensor by name.
pub fn check_against(path: &Path, card: &ModelCard, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    card.architecture.build(&card.config, vb)?;
    let expected: HashMap<String, Vec<usize>> = varmap.data().lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect();
    let mut missing: Vec<&String> = expected.keys().filter(|k| !tensors.contains_key(*k)).collect();
    // PyTorch keeps a batch-norm counter candle does not use.
    let mut unexpected: Vec<&String> = tensors.keys().filter(|k| !expected.contains_key(*k) && !k.ends_with("num_batches_tracked")).collect();
    let mut misshapen: Vec<String> = expected
        .iter()
        .filter_map(|(k, want)| tensors.get(k).filter(|t| t.dims() != want.as_slice()).map(|t| format!("{k} is {:?}, expected {want:?}", t.dims())))
        .collect();
    missing.sort();
    unexpected.sort();
    misshapen.sort();
    if missing.is_empty() && unexpected.is_empty() && misshapen.is_empty() {
        return Ok(());
    }
    let list = |v: Vec<String>| if v.len() > 8 { format!("{} … ({} in all)", v[..8].join(", "), v.len()) } else { v.join(", ") };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing {}", list(missing.into_iter().cloned().collect())));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected {}", list(unexpected.into_iter().cloned().collect())));
    }
    if !misshapen.is_empty() {
        parts.push(format!("wrong shape: {}", list(misshapen)));
    }
    Err(Error::format(path, format!("does not fit a {} of config {}: {}", card.architecture.name(), card.config, parts.join("; "))))
}
