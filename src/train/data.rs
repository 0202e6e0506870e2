//! Training data: cubes from a folder (any format `io::open` reads) or from the synthetic scene
//! generator, resampled to the 31-band grid; RGB rendered on the fly through the camera, clean
//! or through the NTIRE 2020 real-world pipeline; random patches with flips, rotations and a
//! brightness factor. The validation split is fixed: it never changes between runs or resumes.

use crate::engine::JobContext;
use crate::spectral::camera::CameraResponse;
use crate::spectral::realworld::{self, RealWorldConfig};
use crate::spectral::rng::Rng;
use crate::spectral::scene::{self, SceneConfig};
use crate::{bail_invalid, default_wavelengths, Error, Result, RgbImage};
use ndarray::{s, Array2, Array3, Array4, Axis};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Seeds of synthetic training scenes start here, validation scenes at [`VALIDATION_SEED0`];
/// held-out evaluation scenes (`compare --synthetic N`) use seeds 1..=N, never trained on.
pub const TRAIN_SEED0: u64 = 100_000;
pub const VALIDATION_SEED0: u64 = 200_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DataSource {
    /// Every readable cube in a folder; every 10th file (sorted by name) is validation.
    Folder { path: PathBuf },
    /// `count` training scenes of `size`², plus `max(2, count/8)` validation scenes.
    Synthetic { count: usize, size: usize },
    /// `count` scenes of `size`² from the training side of the world ([`super::world`]), plus
    /// `max(2, count/8)` validation scenes, each photographed by its own camera.
    World { count: usize, size: usize },
    /// `count` nadir aerial scenes of `size`² over 400–2450 nm ([`crate::spectral::aerial`]),
    /// plus `max(2, count/8)` validation scenes: for INSS, on the wide library's band grid.
    Aerial { count: usize, size: usize },
}

impl DataSource {
    pub fn describe(&self) -> String {
        match self {
            DataSource::Folder { path } => format!("cubes in {}", path.display()),
            DataSource::Synthetic { count, size } => format!(
                "{count} synthetic scenes of {size}x{size} px (seeds {TRAIN_SEED0}..), validation seeds {VALIDATION_SEED0}..; built from real spectra in assets/"
            ),
            DataSource::World { count, size } => format!(
                "{count} world scenes of {size}x{size} px (training side of every axis: earthlib, munsell and a fitted spectral prior; daylight, black body, d65, a, f2, astm-g173, 21 CIE lamps, random lamps and mixtures; random Dyer-basis and perturbed Canon cameras; seeds {}..), validation seeds {}..",
                super::world::TRAIN_SEED0,
                super::world::VALIDATION_SEED0
            ),
            DataSource::Aerial { count, size } => format!(
                "{count} aerial scenes of {size}x{size} px ({} materials under {}, {AERIAL_TRAIN_SEED0}..), validation seeds {AERIAL_VALIDATION_SEED0}..",
                crate::spectral::aerial::LIBRARY,
                crate::spectral::aerial::SUN
            ),
        }
    }
}

/// Cubes on the default grid, (31, rows, cols) each, radiance in the scale of `render`.
pub struct Dataset {
    pub train: Vec<Array3<f32>>,
    pub validation: Vec<Array3<f32>>,
    /// The camera of each validation cube (3 × 31, rows summing to 1); None: the run's camera.
    pub validation_cameras: Option<Vec<Array2<f32>>>,
}

pub fn load(source: &DataSource, camera: &CameraResponse, job: &JobContext) -> Result<Dataset> {
    match source {
        DataSource::Synthetic { count, size } => synthetic(*count, *size, camera, job),
        DataSource::Folder { path } => folder(path, job),
        DataSource::World { count, size } => world(*count, *size, job),
        DataSource::Aerial { .. } => bail_invalid!("aerial scenes (400-2450 nm) train inss only: the other methods work on 31 bands at 400-700 nm"),
    }
}

/// Seeds of the aerial scenes a run trains and validates on (disjoint).
pub const AERIAL_TRAIN_SEED0: u64 = 1;
pub const AERIAL_VALIDATION_SEED0: u64 = 900_000;

fn world(count: usize, size: usize, job: &JobContext) -> Result<Dataset> {
    use super::world::{scene, World, TRAIN_SEED0, VALIDATION_SEED0};
    if count == 0 {
        bail_invalid!("--world needs at least one scene");
    }
    let val_count = (count / 8).max(2);
    let mut train = Vec::with_capacity(count);
    for i in 0..count {
        job.check()?;
        job.report(i as f32 / (count + val_count) as f32, "painting world scenes");
        train.push(scene(World::TRAINING, TRAIN_SEED0 + i as u64, size)?.cube);
    }
    let (mut validation, mut cameras) = (Vec::new(), Vec::new());
    for i in 0..val_count {
        let s = scene(World::TRAINING, VALIDATION_SEED0 + i as u64, size)?;
        cameras.push(s.camera.matrix);
        validation.push(s.cube);
    }
    Ok(Dataset { train, validation, validation_cameras: Some(cameras) })
}

fn synthetic(count: usize, size: usize, camera: &CameraResponse, job: &JobContext) -> Result<Dataset> {
    if count == 0 {
        bail_invalid!("--synthetic needs at least one scene");
    }
    let val_count = (count / 8).max(2);
    let scene_cube = |seed: u64| synthetic_cube(seed, size, camera);
    let mut train = Vec::with_capacity(count);
    for i in 0..count {
        job.check()?;
        job.report(i as f32 / (count + val_count) as f32, "generating synthetic scenes");
        train.push(scene_cube(TRAIN_SEED0 + i as u64)?);
    }
    let validation = (0..val_count).map(|i| scene_cube(VALIDATION_SEED0 + i as u64)).collect::<Result<_>>()?;
    Ok(Dataset { train, validation, validation_cameras: None })
}

/// The radiance cube of synthetic scene `seed`, `size`² px, built for `camera`.
pub fn synthetic_cube(seed: u64, size: usize, camera: &CameraResponse) -> Result<Array3<f32>> {
    let mut cfg = SceneConfig::new(seed, size, size)?;
    cfg.camera = camera.clone();
    Ok(scene::generate(&cfg)?.cube.data)
}

/// The files in `dir` whose format `io::detect` recognises, sorted by name.
pub fn readable_files(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && crate::io::detect(p).is_ok())
        .collect();
    files.sort();
    Ok(files)
}

fn folder(path: &std::path::Path, job: &JobContext) -> Result<Dataset> {
    let files = readable_files(path)?;
    if files.len() < 2 {
        return Err(Error::format(path, format!("found {} readable cube(s); training needs at least 2 (one for validation)", files.len())));
    }
    let grid = default_wavelengths();
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (i, file) in files.iter().enumerate() {
        job.check()?;
        job.report(i as f32 / files.len() as f32, "reading training cubes");
        let cube = crate::io::open(file, &crate::io::OpenOptions::default())?;
        if cube.wavelengths.first().is_some_and(|&w| w > 400.5) || cube.wavelengths.last().is_some_and(|&w| w < 699.5) {
            return Err(Error::format(file, format!("covers {}..{} nm; training needs 400..700 nm", cube.wavelengths[0], cube.wavelengths[cube.wavelengths.len() - 1])));
        }
        let mut data = cube.resample(&grid)?.data;
        scale_to_peak(&mut data);
        if i % 10 == 9 || (i == files.len() - 1 && validation.is_empty()) {
            validation.push(data);
        } else {
            train.push(data);
        }
    }
    Ok(Dataset { train, validation, validation_cameras: None })
}

/// Divide a cube by its 99.9th percentile, so that value is 1: datasets differ in units (ARAD
/// 0..1, CAVE 16-bit counts, radiance), and RGB inputs live in [0, 1]. How every training cube
/// a user gives is scaled.
pub(crate) fn scale_to_peak(data: &mut Array3<f32>) {
    let peak = percentile(data, 0.999);
    if peak > 0.0 {
        data.mapv_inplace(|v| v / peak);
    }
}

pub(crate) fn percentile(data: &Array3<f32>, q: f64) -> f32 {
    let mut v: Vec<f32> = data.iter().copied().filter(|x| x.is_finite()).step_by(7).collect();
    if v.is_empty() {
        return 0.0;
    }
    let k = ((v.len() - 1) as f64 * q) as usize;
    let (_, kth, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *kth
}

/// How input RGB is made from a cube patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RgbSimulation {
    /// C·Y, no noise.
    Clean,
    /// NTIRE 2020 real-world: mosaic, shot/read noise, demosaicing, JPEG.
    Realworld,
}

/// A batch: input RGB (b, 3, p, p), target spectra (b, bands, p, p), row-major, and the
/// camera (3 × bands) each input was rendered through.
pub struct Batch {
    pub rgb: Array4<f32>,
    pub cube: Array4<f32>,
    pub cameras: Vec<Array2<f32>>,
    /// Each patch's illumination cues, from its whole scene seen through its camera
    /// ([`crate::models::camera::illumination_cues`]).
    pub cues: Vec<crate::models::camera::Cues>,
}

pub struct PatchSampler<'a> {
    pub cubes: &'a [Array3<f32>],
    /// The camera of every patch, unless `random_cameras`.
    pub camera: Array2<f32>,
    /// Draw each patch's camera from the training side of the world's cameras instead.
    pub random_cameras: bool,
    /// Each cube's light spectra ([`crate::models::camera::light_spectra`]), for cues
    /// from the whole scene as a network sees them at inference; None: no cues.
    pub light: Option<&'a [[ndarray::Array1<f32>; crate::models::camera::CUES]]>,
    pub patch: usize,
    pub simulation: RgbSimulation,
    /// Brightness factor range (log-uniform), e.g. (0.5, 2.0); (1, 1) for none.
    pub brightness: (f32, f32),
}

impl PatchSampler<'_> {
    pub fn sample(&self, batch: usize, rng: &mut Rng) -> Result<Batch> {
        let bands = self.camera.ncols();
        let p = self.patch;
        let mut rgb = Array4::<f32>::zeros((batch, 3, p, p));
        let mut cube = Array4::<f32>::zeros((batch, bands, p, p));
        let mut cameras = Vec::with_capacity(batch);
        let mut cues = Vec::with_capacity(batch);
        for b in 0..batch {
            let camera = if self.random_cameras {
                super::world::draw_camera(super::world::Side::Train, rng)?.on_grid(&default_wavelengths())?
            } else {
                self.camera.clone()
            };
            let which = rng.below(self.cubes.len());
            let source = &self.cubes[which];
            if let Some(light) = self.light {
                cues.push(crate::models::camera::illumination_cues_of(&light[which], &camera));
            }
            let mut y = random_patch(source, p, rng)?;
            let (lo, hi) = self.brightness;
            let factor = if hi > lo { (lo.ln() + (hi.ln() - lo.ln()) * rng.uniform_f32()).exp() } else { lo };
            y.mapv_inplace(|v| v * factor);
            let clean = RgbImage::new(crate::spectral::render::project(camera.view(), y.view())?)?;
            let x = match self.simulation {
                RgbSimulation::Clean => clean,
                RgbSimulation::Realworld => {
                    let cfg = RealWorldConfig { seed: rng.next_u64(), ..RealWorldConfig::default() };
                    realworld::simulate(&RgbImage::new(clean.data.mapv(|v| v.clamp(0.0, 1.0)))?, &cfg)?
                }
            };
            rgb.slice_mut(s![b, .., .., ..]).assign(&x.data);
            cube.slice_mut(s![b, .., .., ..]).assign(&y);
            cameras.push(camera);
        }
        Ok(Batch { rgb, cube, cameras, cues })
    }
}

/// A random `p`×`p` patch of `source` (bands, rows, cols) in one of its eight orientations
/// (an optional transpose, then optional flips), drawn from `rng` in that order.
pub fn random_patch(source: &Array3<f32>, p: usize, rng: &mut Rng) -> Result<Array3<f32>> {
    let (_, rows, cols) = source.dim();
    if rows < p || cols < p {
        bail_invalid!("training cube of {rows}x{cols} px is smaller than the {p}x{p} patch");
    }
    let (r0, c0) = (rng.below(rows - p + 1), rng.below(cols - p + 1));
    let mut y = source.slice(s![.., r0..r0 + p, c0..c0 + p]).to_owned();
    if rng.below(2) == 1 {
        y.swap_axes(1, 2);
    }
    if rng.below(2) == 1 {
        y.invert_axis(Axis(1));
    }
    if rng.below(2) == 1 {
        y.invert_axis(Axis(2));
    }
    Ok(y)
}

/// Mean linear RGB of the clean renders of `cubes` (the brightness a model is trained at).
pub fn mean_rgb(cubes: &[Array3<f32>], camera: &Array2<f32>) -> Result<f32> {
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for c in cubes {
        let rgb = crate::spectral::render::project(camera.view(), c.view())?;
        sum += rgb.iter().map(|&v| f64::from(v)).sum::<f64>();
        n += rgb.len();
    }
    Ok((sum / n.max(1) as f64) as f32)
}
