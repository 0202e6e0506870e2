//! What the studio has open: layers of RGB images and cubes, which RGB is the input, which
//! cube is the ground truth, and the reconstructions made from them.

use crate::io::source::{self, CubeSource, Overview};
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
    /// A cube over the memory cap: read from its file on demand (see [`LargeCube`]).
    Large(Arc<LargeCube>),
}

/// A cube too large to hold in memory: shown from an overview of every band, with spectra,
/// full-resolution tiles and region statistics read from the file when asked for.
pub struct LargeCube {
    pub source: Arc<dyn CubeSource>,
    pub overview: Overview,
}

impl LargeCube {
    /// Open `source` with an overview of at most [`source::OVERVIEW_PIXELS`] pixels.
    pub fn open(source: Arc<dyn CubeSource>, job: &crate::engine::JobContext) -> Result<LargeCube> {
        let overview = source::overview(&*source, source::OVERVIEW_PIXELS, job)?;
        Ok(LargeCube { source, overview })
    }

    /// Bytes this layer holds in memory (the overview).
    pub fn resident_bytes(&self) -> usize {
        self.overview.cube.data.len() * std::mem::size_of::<f32>()
    }
}

impl LayerData {
    pub fn rows_cols(&self) -> (usize, usize) {
        match self {
            LayerData::Rgb(rgb) => (rgb.rows(), rgb.cols()),
            LayerData::Cube(cube) => (cube.rows(), cube.cols()),
            LayerData::Large(large) => {
                let (_, rows, cols) = large.source.shape();
                (rows, cols)
            }
        }
    }

    /// The cube, when it is in memory (methods that need a whole cube take only these).
    pub fn cube(&self) -> Option<&Arc<Cube>> {
        match self {
            LayerData::Cube(c) => Some(c),
            LayerData::Rgb(_) | LayerData::Large(_) => None,
        }
    }

    /// Wavelengths of a cube layer, in memory or not.
    pub fn wavelengths(&self) -> Option<&[f32]> {
        match self {
            LayerData::Cube(c) => Some(&c.wavelengths),
            LayerData::Large(l) => Some(l.source.wavelengths()),
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
/// A cube whose f32 data would exceed `memory_cap` bytes, in a format that can be read in
/// place (ENVI, C-order `.npy` and HDF5), opens as a [`LargeCube`] instead of being read whole.
pub fn load_file(path: &Path, memory_cap: u64, job: &crate::engine::JobContext) -> Result<LoadedFile> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
    let format = io::detect(path)?;
    let opts = OpenOptions::default();
    if matches!(format, io::Format::Envi | io::Format::Npy | io::Format::MatV73) {
        let is_rgb = format == io::Format::Npy && io::npy::is_rgb_shape(&io::npy::read_header(path)?.shape, opts.layout);
        if !is_rgb {
            let src = io::open_source(path, &opts)?;
            if src.is_lazy() && source::memory_bytes(&*src) > memory_cap {
                let large = LargeCube::open(src, job)?;
                return Ok(LoadedFile { name, data: LayerData::Large(Arc::new(large)), role: Role::Other, path: Some(path.to_path_buf()) });
            }
        }
    }
    let (data, role) = match io::open_any(path, &opts, false)? {
        Loaded::Rgb(rgb) => (LayerData::Rgb(Arc::new(rgb)), Role::Input),
        Loaded::Cube(cube) => (LayerData::Cube(Arc::new(cube)), Role::Other),
    };
    Ok(LoadedFile { name, data, role, path: Some(path.to_path_buf()) })
}

/// Read several files; RGB images come first so a cube of the same scene finds its input
/// already open and is paired with it. A file that fails does not stop the others.
pub fn load_files(paths: &[PathBuf], memory_cap: u64, job: &crate::engine::JobContext) -> Vec<Result<LoadedFile>> {
    let mut out: Vec<Result<LoadedFile>> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        if let Err(e) = job.check() {
            out.push(Err(e));
            break;
        }
        let (at, n) = (i as f32, paths.len() as f32);
        job.report(at / n, &format!("reading {}", p.display()));
        // A large cube's overview reports its own progress within this file's share.
        let inner = crate::engine::JobContext::new(job.cancel.clone(), |f, what| job.report((at + f) / n, &format!("{}: {what}", p.display())));
        out.push(load_file(p, memory_cap, &inner));
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
