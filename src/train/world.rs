//! The world the data engine draws from: **spectra × light × camera × structure**, each axis
//! split into a side that trains and a side that is held out, so a learned method can be judged
//! on what it never saw (ARCHITECTURE rule 8).
//!
//! | axis | trains on | held out |
//! |---|---|---|
//! | spectra | earthlib (balanced over its categories), Munsell, a log-Gaussian prior fitted to them, smooth random spectra (bumps, edges, the tails a library lacks) | rawtoaces 190 patches, ColorChecker |
//! | light | CIE daylight 4000–25000 K, black body 2000–6500 K, D65, A, F2, ASTM G173, random lamps (emission lines or LED bands on a weak continuum), mixtures of two | F11 (tri-band fluorescent), LED-B3, either mixed with daylight |
//! | camera | random cameras from the Dyer 2017 basis, the Canon EOS 5D Mark II as measured and perturbed | the Nikon 5100 as measured and perturbed |
//! | structure | dead leaves: power-law sizes, occlusion, textures mixing two spectra, Lambertian shading, cast and soft shadows, specular highlights, anti-aliased edges | (the same generator, other seeds) |
//!
//! A [`Protocol`] names which side each axis takes for the test scenes: `in-distribution`
//! keeps every axis on its training side (other seeds), each `cross-*` protocol moves one axis
//! to its held-out side. Scenes are pure functions of (world, seed, size).

use crate::recon::linalg::symmetric_eigen;
use crate::spectral::camera::CameraResponse;
use crate::spectral::library::{dyer2017_basis, illuminant, library_ref, SpectralLibrary};
use crate::spectral::light::{cie_daylight, planckian};
use crate::spectral::rng::Rng;
use crate::spectral::scene::Noise;
use crate::{bail_invalid, default_wavelengths, Error, Result};
use ndarray::{Array1, Array2, Array3};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

const BANDS: usize = 31;

/// Which side of an axis's split a world draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Train,
    Held,
}

/// A world: the side of each axis scenes are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct World {
    pub spectra: Side,
    pub light: Side,
    pub camera: Side,
}

impl World {
    /// What models train on: the training side of every axis.
    pub const TRAINING: World = World { spectra: Side::Train, light: Side::Train, camera: Side::Train };
}

/// A generalisation protocol: the world its test scenes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    InDistribution,
    CrossLibrary,
    CrossCamera,
    CrossIlluminant,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [Protocol::InDistribution, Protocol::CrossLibrary, Protocol::CrossCamera, Protocol::CrossIlluminant];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::InDistribution => "in-distribution",
            Protocol::CrossLibrary => "cross-library",
            Protocol::CrossCamera => "cross-camera",
            Protocol::CrossIlluminant => "cross-illuminant",
        }
    }

    pub fn parse(s: &str) -> Result<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| Error::invalid(format!("unknown protocol '{s}': choose in-distribution, cross-library, cross-camera or cross-illuminant")))
    }

    pub fn test_world(self) -> World {
        let mut w = World::TRAINING;
        match self {
            Protocol::InDistribution => {}
            Protocol::CrossLibrary => w.spectra = Side::Held,
            Protocol::CrossCamera => w.camera = Side::Held,
            Protocol::CrossIlluminant => w.light = Side::Held,
        }
        w
    }

    /// What the held-out side is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Protocol::InDistribution => "training spectra, lights and cameras; scenes never trained on",
            Protocol::CrossLibrary => "reflectances from rawtoaces-190 and the ColorChecker, never trained on",
            Protocol::CrossCamera => "the Nikon 5100, as measured and perturbed, never trained on",
            Protocol::CrossIlluminant => "F11 and LED-B3, alone or mixed with daylight, never trained on (nor their families)",
        }
    }
}

/// Seeds: training scenes from [`TRAIN_SEED0`], validation from [`VALIDATION_SEED0`], test
/// scenes of a protocol from [`TEST_SEED0`]; the three ranges never meet.
pub const TRAIN_SEED0: u64 = 1_000_000;
pub const VALIDATION_SEED0: u64 = 2_000_000;
pub const TEST_SEED0: u64 = 3_000_000;

/// One scene of a world: a radiance cube and the camera that photographs it.
#[derive(Debug, Clone)]
pub struct WorldScene {
    /// (31, rows, cols) radiance on the default grid, maximum ≤ 1.
    pub cube: Array3<f32>,
    /// The scene's camera (drawn from the world's camera side).
    pub camera: CameraResponse,
    /// e.g. `daylight 6200 K + black body 3100 K`.
    pub light: String,
    /// (rows, cols): each pixel's [`Material`] class (as `u8`), the surface on top.
    pub labels: Array2<u8>,
}

/// The scene `seed` of `world`, `size`² px.
pub fn scene(world: World, seed: u64, size: usize) -> Result<WorldScene> {
    if !(8..=4096).contains(&size) {
        bail_invalid!("world scene size {size} is outside 8..4096");
    }
    let mut rng = Rng::new(seed ^ 0x5EED_0F_3A_u64.wrapping_mul(0x9E37_79B9));
    let spectra = spectra_prior(world.spectra)?;
    let (direct, direct_name) = draw_light(world.light, &mut rng)?;
    let (ambient, ambient_name) = if rng.uniform() < 0.5 { (direct.clone(), direct_name.clone()) } else { draw_light(world.light, &mut rng)? };
    let light = if ambient_name == direct_name { direct_name } else { format!("{direct_name}, ambient {ambient_name}") };
    let (cube, labels) = paint(size, spectra, &direct, &ambient, &mut rng)?;
    let camera = draw_camera(world.camera, &mut rng)?;
    Ok(WorldScene { cube, camera, light, labels })
}

// ---------------------------------------------------------------------------------------------
// Spectra.

/// Where reflectances come from: weighted sources, drawn source first.
pub struct SpectraPrior {
    sources: Vec<(f64, Source)>,
}

/// The class of material a reflectance was drawn as: the per-pixel semantic labels the world
/// knows (USR's semantic branch learns them where Zhu et al. use a scene parser's classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Material {
    /// earthlib's bare surfaces: soil, sand, gravel, dirt.
    Bare,
    Vegetation,
    /// earthlib's built surfaces: roofs, roads, paint, concrete, metal, glass.
    Built,
    /// earthlib's non-photosynthetic vegetation: litter, bark, wood.
    Litter,
    Burned,
    /// A Munsell chip.
    Chip,
    /// Drawn from the log-Gaussian prior.
    Generated,
    /// A smooth random curve.
    Smooth,
    /// A patch of a held-out library (rawtoaces-190, ColorChecker).
    Patch,
}

impl Material {
    pub const ALL: [Material; 9] =
        [Material::Bare, Material::Vegetation, Material::Built, Material::Litter, Material::Burned, Material::Chip, Material::Generated, Material::Smooth, Material::Patch];
    /// Number of classes.
    pub const COUNT: usize = Material::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            Material::Bare => "bare",
            Material::Vegetation => "vegetation",
            Material::Built => "built",
            Material::Litter => "litter",
            Material::Burned => "burned",
            Material::Chip => "munsell chip",
            Material::Generated => "generated",
            Material::Smooth => "smooth",
            Material::Patch => "held-out patch",
        }
    }

    /// The class of an earthlib category (`vegetation/canopy` → vegetation).
    fn of_earthlib(category: &str) -> Material {
        match category.split('/').next().unwrap_or("") {
            "bare" => Material::Bare,
            "vegetation" => Material::Vegetation,
            "npv" => Material::Litter,
            "burned" => Material::Burned,
            _ => Material::Built,
        }
    }
}

enum Source {
    /// A library's spectra in groups (categories); a group is drawn uniformly, then a member.
    /// `classes[g]` is group g's material.
    Library { spectra: Array2<f32>, groups: Vec<Vec<usize>>, classes: Vec<Material> },
    /// exp(mean + Σ zₖ·√varₖ·vₖ), z ~ N(0, spread²): a Gaussian in log reflectance.
    LogGaussian { mean: Array1<f32>, components: Array2<f32>, sd: Array1<f32>, spread: f32 },
    /// Smooth random curves: a base level, bumps and sigmoid edges.
    Smooth,
}

/// The prior of a side, built once per process.
pub fn spectra_prior(side: Side) -> Result<&'static SpectraPrior> {
    static TRAIN: OnceLock<std::result::Result<SpectraPrior, String>> = OnceLock::new();
    static HELD: OnceLock<std::result::Result<SpectraPrior, String>> = OnceLock::new();
    let cell = match side {
        Side::Train => &TRAIN,
        Side::Held => &HELD,
    };
    cell.get_or_init(|| build_prior(side).map_err(|e| e.to_string())).as_ref().map_err(|e| Error::invalid(e.clone()))
}

fn grouped(lib: &SpectralLibrary) -> Source {
    let mut names: Vec<&str> = lib.categories.iter().map(|c| c.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let groups = names.iter().map(|n| (0..lib.len()).filter(|&i| lib.categories[i] == *n).collect()).collect();
    let classes = names.iter().map(|n| Material::of_earthlib(n)).collect();
    Source::Library { spectra: lib.spectra.clone(), groups, classes }
}

fn flat(lib: &SpectralLibrary, class: Material) -> Source {
    Source::Library { spectra: lib.spectra.clone(), groups: vec![(0..lib.len()).collect()], classes: vec![class] }
}

fn build_prior(side: Side) -> Result<SpectraPrior> {
    Ok(match side {
        Side::Train => {
            let earth = library_ref("earthlib")?;
            let munsell = library_ref("munsell")?;
            let log_gaussian = fit_log_gaussian(&[earth, munsell], 8)?;
            SpectraPrior { sources: vec![(0.25, grouped(earth)), (0.25, flat(munsell, Material::Chip)), (0.3, log_gaussian), (0.2, Source::Smooth)] }
        }
        Side::Held => SpectraPrior {
            sources: vec![(0.8, flat(library_ref("rawtoaces-190")?, Material::Patch)), (0.2, flat(library_ref("colorchecker")?, Material::Patch))],
        },
    })
}

/// A Gaussian in log reflectance fitted to `libs`, each library weighted equally and earthlib's
/// categories equally within it (its soils would otherwise dominate), drawn 1.3× wider than
/// fitted so the tails the libraries lack are reached.
fn fit_log_gaussian(libs: &[&SpectralLibrary], k: usize) -> Result<Source> {
    let mut rows: Vec<(f64, Array1<f64>)> = Vec::new();
    for lib in libs {
        let Source::Library { groups, .. } = grouped(lib) else { unreachable!() };
        let per_group = 1.0 / groups.len() as f64;
        for g in &groups {
            for &i in g {
                rows.push((per_group / g.len() as f64, lib.spectrum(i).mapv(|v| f64::from(v.max(0.005)).ln())));
            }
        }
    }
    let total: f64 = rows.iter().map(|(w, _)| w).sum();
    let mut mean = Array1::<f64>::zeros(BANDS);
    for (w, r) in &rows {
        mean.scaled_add(*w / total, r);
    }
    let mut cov = Array2::<f64>::zeros((BANDS, BANDS));
    for (w, r) in &rows {
        let d = r - &mean;
        let d2 = d.view().insert_axis(ndarray::Axis(1));
        cov.scaled_add(*w / total, &d2.dot(&d2.t()));
    }
    let (values, vectors) = symmetric_eigen(&cov);
    Ok(Source::LogGaussian {
        mean: mean.mapv(|v| v as f32),
        components: vectors.slice(ndarray::s![.., ..k]).t().mapv(|v| v as f32),
        sd: values.slice(ndarray::s![..k]).mapv(|v| v.max(0.0).sqrt() as f32),
        spread: 1.3,
    })
}

impl SpectraPrior {
    /// One reflectance on the default grid, in [0, 1].
    pub fn draw(&self, rng: &mut Rng) -> [f32; BANDS] {
        self.draw_labelled(rng).0
    }

    /// One reflectance and the class of material it was drawn as (the same draw as [`Self::draw`]).
    pub fn draw_labelled(&self, rng: &mut Rng) -> ([f32; BANDS], Material) {
        let total: f64 = self.sources.iter().map(|(w, _)| w).sum();
        let mut u = rng.uniform() * total;
        let source = self.sources.iter().find(|(w, _)| {
            u -= w;
            u < 0.0
        });
        let source = &source.unwrap_or(&self.sources[self.sources.len() - 1]).1;
        let mut out = [0.0f32; BANDS];
        let class = match source {
            Source::Library { spectra, groups, classes } => {
                let gi = rng.below(groups.len());
                let g = &groups[gi];
                let row = spectra.row(g[rng.below(g.len())]);
                out.iter_mut().zip(row).for_each(|(o, &v)| *o = v);
                classes[gi]
            }
            Source::LogGaussian { mean, components, sd, spread } => {
                let mut log = mean.clone();
                for (k, comp) in components.outer_iter().enumerate() {
                    log.scaled_add(rng.normal() as f32 * sd[k] * spread, &comp);
                }
                out.iter_mut().zip(&log).for_each(|(o, &v)| *o = v.exp());
                Material::Generated
            }
            Source::Smooth => {
                let base = rng.range(0.02, 0.6) as f32;
                out.iter_mut().for_each(|o| *o = base);
                for _ in 0..rng.below(3) + 1 {
                    let centre = rng.range(380.0, 720.0) as f32;
                    let width = rng.range(15.0, 90.0) as f32;
                    let height = rng.range(-0.5, 0.8) as f32;
                    for (i, o) in out.iter_mut().enumerate() {
                        let d = (400.0 + 10.0 * i as f32 - centre) / width;
                        *o += height * (-0.5 * d * d).exp();
                    }
                }
                if rng.uniform() < 0.5 {
                    let edge = rng.range(420.0, 680.0) as f32;
                    let width = rng.range(5.0, 40.0) as f32;
                    let step = rng.range(-0.7, 0.7) as f32;
                    for (i, o) in out.iter_mut().enumerate() {
                        *o += step / (1.0 + (-(400.0 + 10.0 * i as f32 - edge) / width).exp());
                    }
                }
                Material::Smooth
            }
        };
        out.iter_mut().for_each(|v| *v = v.clamp(0.002, 1.0));
        (out, class)
    }
}

// ---------------------------------------------------------------------------------------------
// Light.

/// One light of a side, on the default grid with peak 1, and its name.
pub fn draw_light(side: Side, rng: &mut Rng) -> Result<(Vec<f32>, String)> {
    let wl = default_wavelengths();
    match side {
        Side::Train => {
            if rng.uniform() < 0.3 {
                let (a, na) = single_training_light(rng, &wl)?;
                let (b, nb) = single_training_light(rng, &wl)?;
                let w = rng.range(0.2, 0.8) as f32;
                Ok((mix(&a, &b, w), format!("{:.0} % {na} + {nb}", w * 100.0)))
            } else {
                single_training_light(rng, &wl)
            }
        }
        Side::Held => {
            let lamp = if rng.uniform() < 0.5 { "f11" } else { "led-b3" };
            let l = shipped_light(lamp, &wl)?;
            if rng.uniform() < 0.3 {
                let cct = rng.range(5000.0, 7500.0);
                let w = rng.range(0.6, 0.9) as f32;
                Ok((mix(&l, &cie_daylight(cct, &wl)?, w), format!("{:.0} % {lamp} + daylight {cct:.0} K", w * 100.0)))
            } else {
                Ok((l, lamp.to_string()))
            }
        }
    }
}

fn single_training_light(rng: &mut Rng, wl: &[f32]) -> Result<(Vec<f32>, String)> {
    let u = rng.uniform();
    if u < 0.2 {
        return random_lamp(rng, wl);
    }
    if u < 0.5 {
        // uniform in reciprocal temperature (mireds), as daylight varies
        let cct = 1.0 / rng.range(1.0 / 25000.0, 1.0 / 4000.0);
        Ok((cie_daylight(cct, wl)?, format!("daylight {cct:.0} K")))
    } else if u < 0.75 {
        let t = rng.range(2000.0, 6500.0);
        Ok((planckian(t, wl)?, format!("black body {t:.0} K")))
    } else {
        // Half of these a standard light, half a CIE lamp (fluorescent or LED; never one of
        // the held-out lamps' families: see `library::training_lamps`).
        let pick = rng.below(8);
        if pick < 4 {
            let name = ["d65", "a", "f2", "astm-g173"][pick];
            return Ok((shipped_light(name, wl)?, name.to_string()));
        }
        let lamps = crate::spectral::library::training_lamps();
        let lamp = &lamps[rng.below(lamps.len())];
        let s = lamp.resample(wl)?;
        let max = s.values.iter().cloned().fold(0.0f32, f32::max);
        Ok((s.values.iter().map(|v| v / max).collect(), lamp.name.clone()))
    }
}

/// A lamp no catalogue has: emission lines or bands on a weak continuum, the way fluorescent
/// tubes (mercury lines, rare-earth phosphors) and white LEDs (a blue die and a broad phosphor)
/// are built, with random positions, widths and strengths. Lines are at least 5 nm wide (σ), so
/// the 10 nm grid samples them without aliasing them away.
fn random_lamp(rng: &mut Rng, wl: &[f32]) -> Result<(Vec<f32>, String)> {
    let t = rng.range(2700.0, 6500.0);
    let floor = rng.range(0.02, 0.4) as f32;
    let mut e: Vec<f32> = planckian(t, wl)?.iter().map(|v| v * floor).collect();
    let led = rng.uniform() < 0.4;
    let mut bump = |centre: f64, sigma: f64, height: f64| {
        for (v, &l) in e.iter_mut().zip(wl) {
            let d = (f64::from(l) - centre) / sigma;
            *v += (height * (-0.5 * d * d).exp()) as f32;
        }
    };
    if led {
        bump(rng.range(435.0, 470.0), rng.range(8.0, 15.0), rng.range(0.3, 1.0));
        bump(rng.range(540.0, 610.0), rng.range(35.0, 70.0), 1.0);
    } else {
        for _ in 0..2 + rng.below(4) {
            bump(rng.range(400.0, 700.0), rng.range(5.0, 25.0), rng.range(0.2, 1.0));
        }
    }
    let max = e.iter().cloned().fold(0.0f32, f32::max);
    Ok((e.iter().map(|v| v / max).collect(), format!("random {} lamp", if led { "LED" } else { "line" })))
}

fn shipped_light(name: &str, wl: &[f32]) -> Result<Vec<f32>> {
    let s = illuminant(name)?.resample(wl)?;
    let max = s.values.iter().cloned().fold(0.0f32, f32::max);
    Ok(s.values.iter().map(|v| v / max).collect())
}

fn mix(a: &[f32], b: &[f32], w: f32) -> Vec<f32> {
    let m: Vec<f32> = a.iter().zip(b).map(|(x, y)| w * x + (1.0 - w) * y).collect();
    let max = m.iter().cloned().fold(0.0f32, f32::max);
    m.iter().map(|v| v / max).collect()
}

// ---------------------------------------------------------------------------------------------
// Cameras.

/// A camera of a side, as a [`CameraResponse`] on the default grid.
pub fn draw_camera(side: Side, rng: &mut Rng) -> Result<CameraResponse> {
    let wl = default_wavelengths();
    let (matrix, name) = match side {
        Side::Train => {
            let u = rng.uniform();
            if u < 0.5 {
                (dyer_random(rng)?, "random camera (Dyer 2017 basis)".to_string())
            } else {
                let canon = builtin_on_grid("canon-eos-5d-mark-ii")?;
                if u < 0.8 {
                    (perturb(&canon, rng), "canon-eos-5d-mark-ii, perturbed".to_string())
                } else {
                    (canon, "canon-eos-5d-mark-ii".to_string())
                }
            }
        }
        Side::Held => {
            let nikon = builtin_on_grid("nikon-5100")?;
            if rng.uniform() < 0.5 {
                (nikon, "nikon-5100".to_string())
            } else {
                (perturb(&nikon, rng), "nikon-5100, perturbed".to_string())
            }
        }
    };
    Ok(CameraResponse { name, wavelengths: wl, matrix })
}

/// Cameras in [`camera_dictionary`].
pub const DICTIONARY_SIZE: usize = 28;

/// The dictionary of camera responses USR's estimator mixes (Zhu et al. use the 28 measured
/// cameras of Jiang et al. 2013, which no registry package ships), 28 atoms on the default grid,
/// each channel summing to 1: the Canon EOS 5D Mark II as measured, 9 perturbations of it
/// ([`perturb`]: shifts of up to ±10 nm and smooth tilts) and 18 random cameras from the Dyer
/// 2017 basis, drawn once from a fixed seed. The Nikon 5100 is left out: it is the held-out
/// camera of `cross-camera`, so that protocol tests a camera the estimator never saw.
pub fn camera_dictionary() -> Result<Vec<Array2<f32>>> {
    let mut rng = Rng::new(0xD1C7_2013);
    let canon = builtin_on_grid("canon-eos-5d-mark-ii")?;
    let mut atoms = vec![canon.clone()];
    for _ in 0..9 {
        atoms.push(perturb(&canon, &mut rng));
    }
    while atoms.len() < DICTIONARY_SIZE {
        atoms.push(dyer_random(&mut rng)?);
    }
    Ok(atoms)
}

/// A shipped camera on the default grid, parsed once per process.
fn builtin_on_grid(name: &'static str) -> Result<Array2<f32>> {
    static CACHE: OnceLock<std::sync::Mutex<Vec<(&'static str, Array2<f32>)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some((_, c)) = cache.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(n, _)| *n == name) {
        return Ok(c.clone());
    }
    let c = CameraResponse::builtin(name)?.on_grid(&default_wavelengths())?;
    cache.lock().unwrap_or_else(|e| e.into_inner()).push((name, c.clone()));
    Ok(c)
}

/// Each channel Σₖ cₖ·bₖ over the Dyer basis with c₁ = 1 and the others normal with the spread
/// measured cameras show (the Canon's and Nikon's coefficients lie within one to two of these
/// standard deviations), clipped at zero and normalised.
fn dyer_random(rng: &mut Rng) -> Result<Array2<f32>> {
    const SD: [f64; 6] = [0.0, 0.15, 0.1, 0.06, 0.05, 0.04];
    static BASIS: OnceLock<std::result::Result<ndarray::Array3<f32>, String>> = OnceLock::new();
    let basis = BASIS
        .get_or_init(|| match dyer2017_basis() {
            Ok((wl, _)) if wl.len() != BANDS => Err(format!("the Dyer basis is on {} bands, expected {BANDS}", wl.len())),
            Ok((_, basis)) => Ok(basis),
            Err(e) => Err(e.to_string()),
        })
        .as_ref()
        .map_err(|e| Error::invalid(e.clone()))?;
    for _attempt in 0..16 {
        let mut c = Array2::<f32>::zeros((3, BANDS));
        for ch in 0..3 {
            for (k, sd) in SD.iter().enumerate() {
                let coef = if k == 0 { 1.0 } else { (rng.normal() * sd) as f32 };
                c.row_mut(ch).scaled_add(coef, &basis.slice(ndarray::s![k, ch, ..]));
            }
        }
        c.mapv_inplace(|v| v.max(0.0));
        if let Some(c) = normalise_rows(c) {
            return Ok(c);
        }
    }
    bail_invalid!("could not draw a valid random camera from the Dyer basis")
}

/// Shift each channel by up to ±10 nm and tilt it smoothly (×exp(a·(λ − 550)/150)).
fn perturb(c: &Array2<f32>, rng: &mut Rng) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(c.dim());
    for ch in 0..3 {
        let shift = rng.range(-10.0, 10.0) as f32 / 10.0; // in bands
        let tilt = (rng.normal() * 0.25) as f32;
        for i in 0..BANDS {
            let x = (i as f32 - shift).clamp(0.0, (BANDS - 1) as f32);
            let (i0, f) = (x.floor() as usize, x - x.floor());
            let i1 = (i0 + 1).min(BANDS - 1);
            let v = c[[ch, i0]] * (1.0 - f) + c[[ch, i1]] * f;
            out[[ch, i]] = v * (tilt * (10.0 * i as f32 - 150.0) / 150.0).exp();
        }
    }
    normalise_rows(out).unwrap_or_else(|| c.clone())
}

/// Each row summing to 1, or None if a row sums to (almost) nothing.
fn normalise_rows(c: Array2<f32>) -> Option<Array2<f32>> {
    c.rows().into_iter().all(|row| row.sum() > 1e-6).then(|| crate::recon::usr::rows_summing_to_one(c))
}

// ---------------------------------------------------------------------------------------------
// Structure: a dead-leaves painting.

struct Layers {
    size: usize,
    /// (31, size, size) reflectance.
    refl: Array3<f32>,
    /// Fraction of the direct light reaching each pixel (shadows).
    direct: Vec<f32>,
    /// Geometric shading of the surface (Lambertian factor).
    shade: Vec<f32>,
    /// Specular (interface) reflection: the light's own spectrum.
    spec: Vec<f32>,
    /// The material class of the surface on top.
    label: Vec<u8>,
}

/// Paint a scene: dead leaves (occluding shapes whose sizes follow a power law, as in natural
/// images), some textured as a mixture of two spectra, shaded, casting soft shadows, with
/// specular highlights; then light it: radiance = shade·R·(direct·E_dir + k·E_amb) + spec·E_dir.
/// Also returns each pixel's material class: the top surface's, and of a texture mixing two
/// spectra the one with the larger share.
fn paint(size: usize, prior: &SpectraPrior, e_dir: &[f32], e_amb: &[f32], rng: &mut Rng) -> Result<(Array3<f32>, Array2<u8>)> {
    let n = size;
    let noise = Noise::new(rng);
    let mut l = Layers {
        size: n,
        refl: Array3::zeros((BANDS, n, n)),
        direct: vec![1.0; n * n],
        shade: vec![1.0; n * n],
        spec: vec![0.0; n * n],
        label: vec![0; n * n],
    };
    // Background: a textured surface.
    let ((a, class_a), (b, class_b)) = (prior.draw_labelled(rng), prior.draw_labelled(rng));
    let scale = rng.range(0.1, 0.5) as f32 * n as f32;
    for r in 0..n {
        for c in 0..n {
            let t = (noise.fbm(r as f32, c as f32, scale, 5) * 2.0 + 0.5).clamp(0.0, 1.0);
            for k in 0..BANDS {
                l.refl[[k, r, c]] = a[k] * (1.0 - t) + b[k] * t;
            }
            l.label[r * n + c] = if t > 0.5 { class_b } else { class_a } as u8;
        }
    }
    // Enough leaves to cover the scene about once or twice (scale-invariant sizes: many small,
    // a few large).
    let count = ((100 + rng.below(200)) * n * n) / (128 * 128) + 8;
    let (light_dx, light_dy) = {
        let angle = rng.range(0.0, std::f64::consts::TAU);
        (angle.cos() as f32, angle.sin() as f32)
    };
    for _ in 0..count {
        // Radius with density ∝ r⁻³ between 2 px and half the scene.
        let (rmin, rmax) = (3.0f32, n as f32 * 0.4);
        let u = rng.uniform_f32();
        let radius = (1.0 / (1.0 / (rmin * rmin) - u * (1.0 / (rmin * rmin) - 1.0 / (rmax * rmax)))).sqrt();
        let (cy, cx) = (rng.range(-0.1, 1.1) as f32 * n as f32, rng.range(-0.1, 1.1) as f32 * n as f32);
        let shape = Shape::draw(cy, cx, radius, rng);
        if rng.uniform() < 0.5 {
            let reach = radius * rng.range(0.2, 0.8) as f32;
            let soft = rng.range(1.0, 6.0) as f32;
            let shadow = Shape { cy: cy + light_dy * reach, cx: cx + light_dx * reach, ..shape };
            let strength = rng.range(0.5, 0.95) as f32;
            l.each(&shadow, soft, |l, i, _, _, cover| l.direct[i] *= 1.0 - strength * cover);
        }
        let (r1, class1) = prior.draw_labelled(rng);
        let textured = rng.uniform() < 0.4;
        let (r2, class2) = if textured { prior.draw_labelled(rng) } else { (r1, class1) };
        let tex_scale = rng.range(2.0, 20.0) as f32;
        let round = matches!(shape.kind, ShapeKind::Ellipse) && rng.uniform() < 0.6;
        let specular = if round && rng.uniform() < 0.4 { rng.range(0.1, 0.8) as f32 } else { 0.0 };
        let gloss = rng.range(0.05, 0.25) as f32;
        let gradient = (rng.range(-0.3, 0.3) as f32, rng.range(-0.3, 0.3) as f32);
        let edge = rng.range(0.7, 2.0) as f32;
        l.each(&shape, edge, |l, i, u, v, cover| {
            let (r, c) = (i / l.size, i % l.size);
            let t = if textured { (noise.fbm(r as f32 + 1000.0, c as f32, tex_scale, 3) * 2.5 + 0.5).clamp(0.0, 1.0) } else { 0.0 };
            // (u, v) in the shape's unit frame: a round shape is shaded as a sphere lit from
            // the light's side; others get a linear gradient.
            let (shade, spec) = if round {
                let z = (1.0 - u * u - v * v).max(0.0).sqrt();
                let lambert = (0.35 + 0.65 * (z * 0.7 - 0.5 * (u * light_dx + v * light_dy))).clamp(0.05, 1.0);
                let (hu, hv) = (u + 0.4 * light_dx, v + 0.4 * light_dy);
                (lambert, specular * (-(hu * hu + hv * hv) / gloss).exp())
            } else {
                ((1.0 + gradient.0 * u + gradient.1 * v).clamp(0.3, 1.5), 0.0)
            };
            for k in 0..BANDS {
                let value = r1[k] * (1.0 - t) + r2[k] * t;
                let old = l.refl[[k, r, c]];
                l.refl[[k, r, c]] = old + cover * (value - old);
            }
            l.shade[i] += cover * (shade - l.shade[i]);
            l.spec[i] += cover * (spec - l.spec[i]);
            if cover > 0.5 {
                l.label[i] = if t > 0.5 { class2 } else { class1 } as u8;
            }
        });
    }
    // Soft, cloud-like dimming of the direct light and slow shading across the scene.
    let (cloud_scale, cloud) = (rng.range(0.3, 1.0) as f32 * n as f32, rng.range(0.0, 0.6) as f32);
    let k_amb = rng.range(0.1, 0.5) as f32;
    let mut cube = Array3::<f32>::zeros((BANDS, n, n));
    for r in 0..n {
        for c in 0..n {
            let i = r * n + c;
            let dim = 1.0 - cloud * (noise.fbm(r as f32 + 500.0, c as f32 + 500.0, cloud_scale, 3) + 0.5).clamp(0.0, 1.0);
            let direct = l.direct[i] * dim;
            let shade = l.shade[i];
            for k in 0..BANDS {
                cube[[k, r, c]] = shade * l.refl[[k, r, c]] * (direct * e_dir[k] + k_amb * e_amb[k]) + l.spec[i] * direct * e_dir[k];
            }
        }
    }
    let max = cube.iter().cloned().fold(0.0f32, f32::max);
    if !(max > 0.0) {
        bail_invalid!("painted an empty scene");
    }
    let exposure = rng.range(0.5, 1.0) as f32;
    cube.mapv_inplace(|v| v / max * exposure);
    let labels = Array2::from_shape_vec((n, n), l.label).expect("n² labels");
    Ok((cube, labels))
}

#[derive(Clone, Copy)]
enum ShapeKind {
    Ellipse,
    Rectangle,
}

#[derive(Clone, Copy)]
struct Shape {
    kind: ShapeKind,
    cy: f32,
    cx: f32,
    /// Half axes (px) and rotation.
    a: f32,
    b: f32,
    cos: f32,
    sin: f32,
}

impl Shape {
    fn draw(cy: f32, cx: f32, radius: f32, rng: &mut Rng) -> Shape {
        let kind = if rng.uniform() < 0.6 { ShapeKind::Ellipse } else { ShapeKind::Rectangle };
        let aspect = rng.range(0.4, 1.0) as f32;
        let angle = rng.range(0.0, std::f64::consts::PI);
        Shape { kind, cy, cx, a: radius, b: radius * aspect, cos: angle.cos() as f32, sin: angle.sin() as f32 }
    }

    /// (u, v) in the unit frame and a signed distance in px (negative inside), approximate.
    fn frame(&self, y: f32, x: f32) -> (f32, f32, f32) {
        let (dy, dx) = (y - self.cy, x - self.cx);
        let (p, q) = (dx * self.cos + dy * self.sin, -dx * self.sin + dy * self.cos);
        let (u, v) = (p / self.a, q / self.b);
        let sd = match self.kind {
            ShapeKind::Ellipse => ((u * u + v * v).sqrt() - 1.0) * self.b,
            ShapeKind::Rectangle => (p.abs() - self.a).max(q.abs() - self.b),
        };
        (u, v, sd)
    }
}

impl Layers {
    /// Call `f(layers, index, u, v, coverage)` for every pixel the shape covers, with an
    /// anti-aliased coverage over an edge of `edge` px.
    fn each(&mut self, shape: &Shape, edge: f32, mut f: impl FnMut(&mut Layers, usize, f32, f32, f32)) {
        let reach = shape.a.max(shape.b) + edge + 1.0;
        let n = self.size as f32;
        let (r0, r1) = ((shape.cy - reach).max(0.0) as usize, (shape.cy + reach).min(n).max(0.0) as usize);
        let (c0, c1) = ((shape.cx - reach).max(0.0) as usize, (shape.cx + reach).min(n).max(0.0) as usize);
        for r in r0..r1 {
            for c in c0..c1 {
                let (u, v, sd) = shape.frame(r as f32 + 0.5, c as f32 + 0.5);
                let cover = (0.5 - sd / edge).clamp(0.0, 1.0);
                if cover > 0.0 {
                    f(self, r * self.size + c, u, v, cover);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_deterministic_physical_and_differ_by_seed() {
        let a = scene(World::TRAINING, 7, 32).unwrap();
        let b = scene(World::TRAINING, 7, 32).unwrap();
        let c = scene(World::TRAINING, 8, 32).unwrap();
        assert_eq!(a.cube, b.cube);
        assert_eq!(a.camera.matrix, b.camera.matrix);
        assert_ne!(a.cube, c.cube);
        let max = a.cube.iter().cloned().fold(0.0f32, f32::max);
        assert!(a.cube.iter().all(|v| v.is_finite() && *v >= 0.0) && max <= 1.0 && max >= 0.5, "max {max}");
        for row in a.camera.matrix.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-4 && row.iter().all(|v| *v >= 0.0));
        }
    }

    #[test]
    fn held_out_sides_draw_only_held_out_things() {
        let mut rng = Rng::new(3);
        for _ in 0..20 {
            let cam = draw_camera(Side::Held, &mut rng).unwrap();
            assert!(cam.name.starts_with("nikon-5100"), "{}", cam.name);
            let cam = draw_camera(Side::Train, &mut rng).unwrap();
            assert!(!cam.name.contains("nikon"), "{}", cam.name);
            let (_, light) = draw_light(Side::Held, &mut rng).unwrap();
            assert!(light.contains("f11") || light.contains("led-b3"), "{light}");
            let (_, light) = draw_light(Side::Train, &mut rng).unwrap();
            assert!(!light.contains("f11") && !light.contains("led-b3"), "{light}");
        }
        // The CIE lamps a training scene may be lit by: none of the held-out lamps' families
        // (cosine below 0.94 with F11 and LED-B3 on the default grid), and drawn.
        let wl = default_wavelengths();
        let unit = |v: Vec<f32>| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let held: Vec<Vec<f32>> = ["f11", "led-b3"].iter().map(|n| unit(shipped_light(n, &wl).unwrap())).collect();
        let lamps = crate::spectral::library::training_lamps();
        assert_eq!(lamps.len(), 21);
        for lamp in lamps {
            let v = unit(lamp.resample(&wl).unwrap().values);
            for h in &held {
                let cos: f32 = v.iter().zip(h).map(|(a, b)| a * b).sum();
                assert!(cos < 0.94, "{} is of a held-out lamp's family (cosine {cos})", lamp.name);
            }
        }
        let drawn = (0..400).filter(|_| draw_light(Side::Train, &mut rng).unwrap().1.split([' ', ',']).any(|w| lamps.iter().any(|l| l.name == w))).count();
        assert!(drawn > 10, "{drawn} of 400 training lights name a CIE lamp");
        // every held-out reflectance is a row of rawtoaces-190 or the ColorChecker
        let libs = [library_ref("rawtoaces-190").unwrap(), library_ref("colorchecker").unwrap()];
        let prior = spectra_prior(Side::Held).unwrap();
        for _ in 0..50 {
            let s = prior.draw(&mut rng);
            let found = libs.iter().any(|l| l.spectra.rows().into_iter().any(|r| r.iter().zip(&s).all(|(a, b)| (a.clamp(0.002, 1.0) - b).abs() < 1e-6)));
            assert!(found);
        }
    }

    #[test]
    fn the_training_prior_reaches_beyond_its_libraries() {
        let prior = spectra_prior(Side::Train).unwrap();
        let mut rng = Rng::new(11);
        let draws: Vec<[f32; BANDS]> = (0..400).map(|_| prior.draw(&mut rng)).collect();
        assert!(draws.iter().all(|s| s.iter().all(|v| (0.002..=1.0).contains(v))));
        // some spectra are saturated (a strong peak), some dark, some bright
        let peaky = draws.iter().filter(|s| s.iter().cloned().fold(0.0f32, f32::max) > 4.0 * s.iter().sum::<f32>() / BANDS as f32).count();
        let dark = draws.iter().filter(|s| s.iter().all(|v| *v < 0.08)).count();
        let bright = draws.iter().filter(|s| s.iter().sum::<f32>() / (BANDS as f32) > 0.5).count();
        assert!(peaky > 0 && dark > 10 && bright > 10, "peaky {peaky}, dark {dark}, bright {bright}");
    }

    #[test]
    fn protocols_move_one_axis_each() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::parse(p.name()).unwrap(), p);
            let w = p.test_world();
            let held = [w.spectra, w.light, w.camera].iter().filter(|s| **s == Side::Held).count();
            assert_eq!(held, usize::from(p != Protocol::InDistribution));
        }
        assert!(Protocol::parse("cross-everything").is_err());
    }
}
