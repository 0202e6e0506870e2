//! What the studio has open: **scenes**, each a group of layers: an input (an RGB image or a
//! cube), its ground truth, and every result derived from them (reconstructions, fusions).
//! Each scene has at most one input and one ground truth; the views, the metrics and the
//! spectra plot work on the active scene, so results from different inputs never meet.

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
    /// The true-colour exposure the overview picked (None when no band is visible): every
    /// full-resolution tile uses it, so tiles join the overview without seams.
    pub exposure: Option<f32>,
}

impl LargeCube {
    /// Open `source` with an overview of at most [`source::OVERVIEW_PIXELS`] pixels.
    pub fn open(source: Arc<dyn CubeSource>, job: &crate::engine::JobContext) -> Result<LargeCube> {
        let overview = source::overview(&*source, source::OVERVIEW_PIXELS, job)?;
        let exposure = crate::spectral::render::true_colour_srgb_exposed(&overview.cube, None, None).ok().map(|(_, e)| e);
        Ok(LargeCube { source, overview, exposure })
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
    /// The scene the layer belongs to.
    pub scene: u64,
    /// How an RGB file's numbers were read (sRGB or linear, and why); None for anything else.
    pub decoding: Option<crate::io::image_file::RgbEncoding>,
    /// A warning about the layer's values shown under it (a result whose negative values
    /// were set to zero).
    pub warning: Option<String>,
}

impl Layer {
    pub fn is_reconstruction(&self) -> bool {
        matches!(self.role, Role::Reconstruction { .. })
    }
}

/// A reconstruction layer and its cube, with its scene's ground truth (layer and cube) if any.
pub type ScoredPair<'a> = (&'a Layer, &'a Arc<Cube>, Option<(&'a Layer, &'a Arc<Cube>)>);

/// A group of layers about one picture or cube: see the module doc.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub id: u64,
    pub name: String,
    /// The camera that took the scene's RGB, when it is known (the demo's, rendered by us).
    pub true_camera: Option<String>,
}

#[derive(Default)]
pub struct Document {
    pub layers: Vec<Layer>,
    pub scenes: Vec<Scene>,
    /// The scene the views show; the scene of the selected layer.
    pub active_scene: Option<u64>,
    next_id: u64,
}

impl Document {
    /// Start an empty scene; it becomes the active one when there is none.
    pub fn new_scene(&mut self, name: String) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.scenes.push(Scene { id, name, true_camera: None });
        self.active_scene.get_or_insert(id);
        id
    }

    /// Add a layer to `scene` (an input or ground truth replaces the scene's own, which
    /// becomes an ordinary layer).
    pub fn add_to(&mut self, scene: u64, name: String, data: LayerData, role: Role, path: Option<PathBuf>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        if matches!(role, Role::Input | Role::GroundTruth) {
            self.demote(scene, &role);
        }
        self.layers.push(Layer { id, name, data, role, path, scene, decoding: None, warning: None });
        id
    }

    /// Add a layer to the active scene (a new scene named after it when there is none).
    pub fn add(&mut self, name: String, data: LayerData, role: Role, path: Option<PathBuf>) -> u64 {
        let scene = match self.active_scene {
            Some(s) => s,
            None => self.new_scene(name.clone()),
        };
        self.add_to(scene, name, data, role, path)
    }

    pub fn get(&self, id: u64) -> Option<&Layer> {
        self.layers.iter().find(|l| l.id == id)
    }

    pub fn scene(&self, id: u64) -> Option<&Scene> {
        self.scenes.iter().find(|s| s.id == id)
    }

    /// The layers of scene `id`, in the order they were added.
    pub fn layers_of(&self, scene: u64) -> impl Iterator<Item = &Layer> {
        self.layers.iter().filter(move |l| l.scene == scene)
    }

    /// The layers of the active scene.
    pub fn active_layers(&self) -> impl Iterator<Item = &Layer> {
        let scene = self.active_scene;
        self.layers.iter().filter(move |l| Some(l.scene) == scene)
    }

    /// Remove a layer; a scene left empty goes with it.
    pub fn remove(&mut self, id: u64) {
        let scene = self.get(id).map(|l| l.scene);
        self.layers.retain(|l| l.id != id);
        if let Some(scene) = scene.filter(|&s| self.layers_of(s).next().is_none()) {
            self.scenes.retain(|s| s.id != scene);
            if self.active_scene == Some(scene) {
                self.active_scene = self.scenes.first().map(|s| s.id);
            }
        }
    }

    /// The active scene's input RGB.
    pub fn input(&self) -> Option<(&Layer, &Arc<RgbImage>)> {
        self.input_of(self.active_scene?)
    }

    pub fn input_of(&self, scene: u64) -> Option<(&Layer, &Arc<RgbImage>)> {
        self.layers_of(scene).find_map(|l| match (&l.role, &l.data) {
            (Role::Input, LayerData::Rgb(rgb)) => Some((l, rgb)),
            _ => None,
        })
    }

    /// The active scene's ground truth.
    pub fn ground_truth(&self) -> Option<(&Layer, &Arc<Cube>)> {
        self.ground_truth_of(self.active_scene?)
    }

    pub fn ground_truth_of(&self, scene: u64) -> Option<(&Layer, &Arc<Cube>)> {
        self.layers_of(scene).find_map(|l| match (&l.role, &l.data) {
            (Role::GroundTruth, LayerData::Cube(c)) => Some((l, c)),
            _ => None,
        })
    }

    /// The active scene's reconstructions.
    pub fn reconstructions(&self) -> impl Iterator<Item = (&Layer, &Arc<Cube>)> {
        self.active_layers().filter(|l| l.is_reconstruction()).filter_map(|l| l.data.cube().map(|c| (l, c)))
    }

    /// Every scene's reconstructions, with their scene's ground truth when it has one.
    pub fn all_reconstructions(&self) -> impl Iterator<Item = ScoredPair<'_>> {
        self.layers
            .iter()
            .filter(|l| l.is_reconstruction())
            .filter_map(|l| l.data.cube().map(|c| (l, c, self.ground_truth_of(l.scene))))
    }

    /// Record the camera that took scene `id`'s RGB.
    pub fn set_true_camera(&mut self, id: u64, camera: &str) {
        if let Some(s) = self.scenes.iter_mut().find(|s| s.id == id) {
            s.true_camera = Some(camera.to_string());
        }
    }

    /// Record how RGB layer `id` was decoded.
    pub fn set_decoding(&mut self, id: u64, decoding: Option<crate::io::image_file::RgbEncoding>) {
        if let Some(l) = self.layers.iter_mut().find(|l| l.id == id) {
            l.decoding = decoding;
        }
    }

    /// Replace RGB layer `id`'s pixels (decoded again), keeping its place and role.
    /// Put `data` in place of layer `id`'s (its wavelengths were set, see [`relabel`]).
    pub fn replace_data(&mut self, id: u64, data: LayerData) {
        if let Some(l) = self.layers.iter_mut().find(|l| l.id == id) {
            l.data = data;
        }
    }

    pub fn replace_rgb(&mut self, id: u64, rgb: Arc<RgbImage>, decoding: crate::io::image_file::RgbEncoding) {
        if let Some(l) = self.layers.iter_mut().find(|l| l.id == id) {
            l.data = LayerData::Rgb(rgb);
            l.decoding = Some(decoding);
        }
    }

    /// The pixel grid a scene's pins, regions and zoom are kept in: its input's (rows, cols),
    /// else its first layer's. Layers of other sizes (a low-resolution cube) map onto it
    /// proportionally ([`map_pixel`]).
    pub fn frame_of(&self, scene: u64) -> Option<(usize, usize)> {
        self.input_of(scene).map(|(l, _)| l.data.rows_cols()).or_else(|| self.layers_of(scene).next().map(|l| l.data.rows_cols()))
    }

    /// Pixel `px` of `layer`'s scene frame, in `layer`'s own pixels.
    pub fn to_layer(&self, layer: &Layer, px: (usize, usize)) -> (usize, usize) {
        match self.frame_of(layer.scene) {
            Some(frame) => map_pixel(px, frame, layer.data.rows_cols()),
            None => px,
        }
    }

    /// Pixel `px` of `layer`, in its scene's frame.
    pub fn to_frame(&self, layer: &Layer, px: (usize, usize)) -> (usize, usize) {
        match self.frame_of(layer.scene) {
            Some(frame) => map_pixel(px, layer.data.rows_cols(), frame),
            None => px,
        }
    }

    /// Make the scene of `layer` the active one.
    pub fn activate(&mut self, layer: u64) {
        if let Some(scene) = self.get(layer).map(|l| l.scene) {
            self.active_scene = Some(scene);
        }
    }

    /// Make cube layer `id` the ground truth of its scene (the "use as ground truth" action).
    pub fn set_ground_truth(&mut self, id: u64) {
        self.give_role(id, Role::GroundTruth, |d| matches!(d, LayerData::Cube(_)));
    }

    /// Make RGB layer `id` the input of its scene's reconstructions.
    pub fn set_input(&mut self, id: u64) {
        self.give_role(id, Role::Input, |d| matches!(d, LayerData::Rgb(_)));
    }

    /// Give layer `id` a one-of-a-kind role in its scene, if its data fits it.
    fn give_role(&mut self, id: u64, role: Role, fits: impl Fn(&LayerData) -> bool) {
        let Some(scene) = self.get(id).filter(|l| fits(&l.data)).map(|l| l.scene) else { return };
        self.demote(scene, &role);
        if let Some(l) = self.layers.iter_mut().find(|l| l.id == id) {
            l.role = role;
        }
    }

    /// One input and one ground truth per scene: whoever holds `role` there gives it up.
    fn demote(&mut self, scene: u64, role: &Role) {
        for l in self.layers.iter_mut().filter(|l| l.scene == scene && &l.role == role) {
            l.role = Role::Other;
        }
    }
}

/// Pixel `(row, col)` of a `from` (rows, cols) grid mapped onto a `to` grid covering the same
/// scene: the `to` pixel whose area holds the `from` pixel's centre.
pub fn map_pixel((row, col): (usize, usize), from: (usize, usize), to: (usize, usize)) -> (usize, usize) {
    if from == to || from.0 == 0 || from.1 == 0 {
        return (row, col);
    }
    let along = |i: usize, f: usize, t: usize| ((((i as f64) + 0.5) * t as f64 / f as f64).floor() as usize).min(t.saturating_sub(1));
    (along(row, from.0, to.0), along(col, from.1, to.1))
}

/// A file read off the UI thread, with the role the studio gives it.
pub struct LoadedFile {
    pub name: String,
    pub data: LayerData,
    pub role: Role,
    pub path: Option<PathBuf>,
    /// Files loaded together that form one scene (the demo's RGB, cube and reflectance) name
    /// it here; `None`: the studio decides (a scene of its own, or a pairing).
    pub scene: Option<String>,
    /// How an RGB file was decoded.
    pub decoding: Option<crate::io::image_file::RgbEncoding>,
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
                return Ok(LoadedFile { name, data: LayerData::Large(Arc::new(large)), role: Role::Other, path: Some(path.to_path_buf()), scene: None, decoding: None });
            }
        }
    }
    // An RGB file is decoded as the file says it is encoded (see `guess_encoding`).
    let encoding = if format.is_rgb_image() || format == io::Format::Npy { Some(io::image_file::guess_encoding(path)?) } else { None };
    let srgb = encoding.as_ref().is_some_and(|e| e.srgb);
    let (data, role, decoding) = match io::open_any(path, &opts, srgb)? {
        Loaded::Rgb(rgb) => (LayerData::Rgb(Arc::new(rgb)), Role::Input, encoding),
        Loaded::Cube(cube) => (LayerData::Cube(Arc::new(cube)), Role::Other, None),
    };
    Ok(LoadedFile { name, data, role, path: Some(path.to_path_buf()), scene: None, decoding })
}

/// Read RGB file `path` again, as sRGB-encoded or linear as the user chose.
pub fn redecode(path: &Path, srgb: bool) -> Result<(Arc<RgbImage>, io::image_file::RgbEncoding)> {
    let rgb = io::open_rgb(path, srgb)?;
    let why = "chosen by you";
    Ok((Arc::new(rgb), io::image_file::RgbEncoding { srgb, why: why.to_string() }))
}

/// A cube layer's data under `wavelengths` (one per band, strictly increasing nm): the user
/// labelled a cube that came without wavelengths, or with wrong ones. An in-memory cube is
/// copied; a large cube keeps reading its file, relabelled, and its overview is relabelled
/// too (its true-colour exposure is found again: the visible bands may have changed).
pub fn relabel(data: &LayerData, wavelengths: Vec<f32>) -> Result<LayerData> {
    match data {
        LayerData::Cube(cube) => {
            let mut out = Cube::new(cube.data.clone(), wavelengths)?;
            out.meta = cube.meta.clone();
            Ok(LayerData::Cube(Arc::new(out)))
        }
        LayerData::Large(large) => {
            let source: Arc<dyn CubeSource> = Arc::new(source::Relabelled::new(large.source.clone(), wavelengths.clone())?);
            let mut cube = Cube::new(large.overview.cube.data.clone(), wavelengths)?;
            cube.meta = large.overview.cube.meta.clone();
            let exposure = crate::spectral::render::true_colour_srgb_exposed(&cube, None, None).ok().map(|(_, e)| e);
            Ok(LayerData::Large(Arc::new(LargeCube { source, overview: Overview { cube, step: large.overview.step }, exposure })))
        }
        LayerData::Rgb(_) => Err(crate::Error::invalid("an RGB image has no wavelengths to set")),
    }
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

/// The camera the demo's RGB is rendered with.
pub const DEMO_CAMERA: &str = "canon-eos-5d-mark-ii";

/// The bundled demo: the RGB a Canon EOS 5D Mark II records of synthetic scene 7, and the
/// scene's radiance cube as ground truth. Generated from the shipped spectra (about a second).
pub fn demo_scene() -> Result<Vec<LoadedFile>> {
    let mut cfg = SceneConfig::new(DEMO_SEED, DEMO_SIZE, DEMO_SIZE)?;
    cfg.camera = CameraResponse::builtin(DEMO_CAMERA)?;
    let scene = scene::generate(&cfg)?;
    let demo = format!("demo {DEMO_SEED} (synthetic)");
    Ok(vec![
        LoadedFile { name: format!("demo {DEMO_SEED}: RGB (Canon)"), data: LayerData::Rgb(Arc::new(scene.rgb)), role: Role::Input, path: None, scene: Some(demo.clone()), decoding: None },
        LoadedFile { name: format!("demo {DEMO_SEED}: ground truth"), data: LayerData::Cube(Arc::new(scene.cube)), role: Role::GroundTruth, path: None, scene: Some(demo.clone()), decoding: None },
        LoadedFile { name: format!("demo {DEMO_SEED}: reflectance"), data: LayerData::Cube(Arc::new(scene.reflectance)), role: Role::Other, path: None, scene: Some(demo), decoding: None },
    ])
}
