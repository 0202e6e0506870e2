//! What the studio has open: layers of RGB images and cubes, which RGB is the input, which
//! cube is the ground truth, and the reconstructions made from them.

use crate::io::{self, Loaded, OpenOptions};
use crate::spectral::camera::CameraResponse;
use crate::spectral::scene::{self, SceneConfig};
use crate::{Cube, Result, RgbImage};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone)]
pub enum LayerData {
    Rgb(Arc<RgbImage>),
    Cube(Arc<Cube>),
}

impl LayerData {
    pub fn rows_cols(&self) -> (usize, usize) {
        match self {
            LayerData::Rgb(rgb) => (rgb.rows(), rgb.cols()),
            LayerData::Cube(cube) => (cube.rows(), cube.cols()),
        }
    }

    pub fn cube(&self) -> Option<&Arc<Cube>> {
        match self {
            LayerData::Cube(c) => Some(c),
            LayerData::Rgb(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// An RGB image to reconstruct from.
    Input,
    /// The measured cube the reconstructions are scored against.
    GroundTruth,
    /// A cube made by a method from the input.
    Reconstruction { method: String, seconds: f64, consistent: bool, exposure_invariant: bool },
    /// Any other image or cube.
    Other,
}

#[derive(Clone)]
pub struct Layer {
    pub id: u64,
    pub name: String,
    pub data: LayerData,
    pub role: Role,
    pub path: Option<PathBuf>,
}

impl Layer {
    pub fn is_reconstruction(&self) -> bool {
        matches!(self.role, Role::Reconstruction { .. })
    }
}

#[derive(Default)]
pub struct Document {
    pub layers: Vec<Layer>,
    next_id: u64,
}

impl Document {
    pub fn add(&mut self, name: String, data: LayerData, role: Role, path: Option<PathBuf>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        if matches!(role, Role::Input | Role::GroundTruth) {
            self.demote(&role);
        }
        self.layers.push(Layer { id, name, data, role, path });
        id
    }

    pub fn get(&self, id: u64) -> Option<&Layer> {
        self.layers.iter().find(|l| l.id == id)
    }

    pub fn remove(&mut self, id: u64) {
        self.layers.retain(|l| l.id != id);
    }

    pub fn input(&self) -> Option<(&Layer, &Arc<RgbImage>)> {
        self.layers.iter().find_map(|l| match (&l.role, &l.data) {
            (Role::Input, LayerData::Rgb(rgb)) => Some((l, rgb)),
            _ => None,
        })
    }

    pub fn ground_truth(&self) -> Option<(&Layer, &Arc<Cube>)> {
        self.layers.iter().find_map(|l| match (&l.role, &l.data) {
            (Role::GroundTruth, LayerData::Cube(c)) => Some((l, c)),
            _ => None,
        })
    }

    pub fn reconstructions(&self) -> impl Iterator<Item = (&Layer, &Arc<Cube>)> {
        self.layers.iter().filter(|l| l.is_reconstruction()).filter_map(|l| l.data.cube().map(|c| (l, c)))
    }

    /// Make cube layer `id` the ground truth (the "use as ground truth" action).
    pub fn set_ground_truth(&mut self, id: u64) {
        self.give_role(id, Role::GroundTruth, |d| matches!(d, LayerData::Cube(_)));
    }

    /// Make RGB layer `id` the input of reconstructions.
    pub fn set_input(&mut self, id: u64) {
        self.give_role(id, Role::Input, |d| matches!(d, LayerData::Rgb(_)));
    }

    /// Give layer `id` a one-of-a-kind role, if its data fits it.
    fn give_role(&mut self, id: u64, role: Role, fits: impl Fn(&LayerData) -> bool) {
        if !self.get(id).is_some_and(|l| fits(&l.data)) {
            return;
        }
        self.demote(&role);
        if let Some(l) = self.layers.iter_mut().find(|l| l.id == id) {
            l.role = role;
        }
    }

    /// One input and one ground truth at a time: whoever holds `role` gives it up.
    fn demote(&mut self, role: &Role) {
        for l in self.layers.iter_mut().filter(|l| &l.role == role) {
            l.role = Role::Other;
        }
    }
}

/// A file read off the UI thread, with the role the studio gives it.
pub struct LoadedFile {
    pub name: String,
    pub data: LayerData,
    pub role: Role,
    pub path: Option<PathBuf>,
}

/// Read `path` as an RGB image (the input) or a cube (the ground truth when it is the first
/// cube of a scene whose RGB is open: pairing is by the studio, see `Studio::apply_loaded`).
pub fn load_file(path: &Path) -> Result<LoadedFile> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
    let (data, role) = match io::open_any(path, &OpenOptions::default(), false)? {
        Loaded::Rgb(rgb) => (LayerData::Rgb(Arc::new(rgb)), Role::Input),
        Loaded::Cube(cube) => (LayerData::Cube(Arc::new(cube)), Role::Other),
    };
    Ok(LoadedFile { name, data, role, path: Some(path.to_path_buf()) })
}

/// Read several files; RGB images come first so a cube of the same scene finds its input
/// already open and is paired with it. A file that fails does not stop the others.
pub fn load_files(paths: &[PathBuf], job: &crate::engine::JobContext) -> Vec<Result<LoadedFile>> {
    let mut out: Vec<Result<LoadedFile>> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        if let Err(e) = job.check() {
            out.push(Err(e));
            break;
        }
        job.report(i as f32 / paths.len() as f32, &format!("reading {}", p.display()));
        out.push(load_file(p));
    }
    out.sort_by_key(|r| !matches!(r, Ok(LoadedFile { data: LayerData::Rgb(_), .. })));
    out
}

/// The seed and size of the demo scene: a tabletop or aerial scene built from the shipped
/// measured spectra, the same one the README's `scene --seed 7` command writes.
pub const DEMO_SEED: u64 = 7;
pub const DEMO_SIZE: usize = 256;

/// The bundled demo: the RGB a Canon EOS 5D Mark II records of synthetic scene 7, and the
/// scene's radiance cube as ground truth. Generated from the shipped spectra (about a second).
pub fn demo_scene() -> Result<Vec<LoadedFile>> {
    let mut cfg = SceneConfig::new(DEMO_SEED, DEMO_SIZE, DEMO_SIZE)?;
    cfg.camera = CameraResponse::builtin("canon-eos-5d-mark-ii")?;
    let scene = scene::generate(&cfg)?;
    Ok(vec![
        LoadedFile { name: format!("demo {DEMO_SEED}: RGB (Canon)"), data: LayerData::Rgb(Arc::new(scene.rgb)), role: Role::Input, path: None },
        LoadedFile { name: format!("demo {DEMO_SEED}: ground truth"), data: LayerData::Cube(Arc::new(scene.cube)), role: Role::GroundTruth, path: None },
        LoadedFile { name: format!("demo {DEMO_SEED}: reflectance"), data: LayerData::Cube(Arc::new(scene.reflectance)), role: Role::Other, path: None },
    ])
}
