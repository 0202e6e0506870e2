//! Seeded synthetic scenes: (cube, RGB) pairs built from the shipped reflectances and
//! illuminants, with spatial structure a reconstruction method has to cope with.
//!
//! Two kinds of scene, drawn from the seed unless the config fixes one:
//! - **aerial**: a landscape seen from above: fields of crops, grass, soil, sand and litter
//!   (earthlib) in a warped Voronoi layout with soft borders, crop rows, roads with gravel
//!   shoulders, buildings with gabled roofs, clustered trees; lit by the sun (ASTM G173 or D65)
//!   plus a bluer skylight in the shadows, with hill shading and cloud dimming;
//! - **tabletop**: coloured objects (Munsell chips, sometimes a ColorChecker chart) on a floor
//!   (wood, tile, concrete, sand) in front of a wall, lit by one lamp (D65, A, F2, F11, LED-B3 or
//!   sunlight) with a soft falloff, Lambertian shading of round objects and soft cast shadows.
//!
//! Physics: every pixel is a mixture of materials (`abundances`, summing to 1) times a
//! scalar shading, lit by direct light where not shadowed plus ambient light:
//!
//! `radiance(λ, p) = shade(p) · Σₘ aₘ(p) Rₘ(λ) · (sun(p) · E_dir(λ) + k_amb · E_amb(λ))`
//!
//! The illuminants are scaled to peak 1 and the cube is then divided by its maximum and
//! multiplied by an exposure drawn in [0.85, 1], so the radiance cube lies in [0, 1].
//! `Scene::rgb` is [`clean_rgb`] of that cube through the configured camera. The scene is a
//! pure function of the config: same seed, same bytes.

use ndarray::{Array2, Array3, Axis};

use crate::spectral::camera::CameraResponse;
use crate::spectral::library::{illuminant, library_ref, SpectralLibrary};
use crate::spectral::render::clean_rgb;
use crate::spectral::rng::Rng;
use crate::{bail_invalid, default_wavelengths, Cube, Result, RgbImage};

const BANDS: usize = 31;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum SceneKind {
    Aerial,
    Tabletop,
}

impl SceneKind {
    pub fn name(self) -> &'static str {
        match self {
            SceneKind::Aerial => "aerial",
            SceneKind::Tabletop => "tabletop",
        }
    }
    pub fn parse(s: &str) -> Result<SceneKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "aerial" => Ok(SceneKind::Aerial),
            "tabletop" => Ok(SceneKind::Tabletop),
            _ => bail_invalid!("unknown scene kind '{s}': choose aerial or tabletop"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SceneConfig {
    pub seed: u64,
    pub rows: usize,
    pub cols: usize,
    /// The camera that renders `Scene::rgb`.
    pub camera: CameraResponse,
    /// None: drawn from the seed (about 55 % aerial).
    pub kind: Option<SceneKind>,
    /// Name of the direct illuminant (see `library::illuminant_names`); None: drawn from the seed.
    pub illuminant: Option<String>,
}

impl SceneConfig {
    /// A config with the Canon EOS 5D Mark II camera and kind and light drawn from the seed.
    pub fn new(seed: u64, rows: usize, cols: usize) -> Result<SceneConfig> {
        Ok(SceneConfig {
            seed,
            rows,
            cols,
            camera: CameraResponse::builtin("canon-eos-5d-mark-ii")?,
            kind: None,
            illuminant: None,
        })
    }
}

/// One material of a scene: which shipped spectrum it is.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Material {
    pub library: String,
    pub name: String,
    pub category: String,
}

#[derive(Clone, Debug)]
pub struct Scene {
    /// Radiance on the default grid (400..=700 step 10), values in [0, 1].
    pub cube: Cube,
    /// The same scene's reflectance (mixture of the materials, no light, no shading).
    pub reflectance: Cube,
    /// Clean camera RGB of `cube` (C·Y).
    pub rgb: RgbImage,
    pub kind: SceneKind,
    /// e.g. `astm-g173 + skylight` or `f11`.
    pub illuminant: String,
    pub materials: Vec<Material>,
    /// (materials, rows, cols), each pixel sums to 1.
    pub abundances: Array3<f32>,
}

/// Generate the scene of `cfg`. 512×512 takes well under a second in a release build.
pub fn generate(cfg: &SceneConfig) -> Result<Scene> {
    if cfg.rows < 4 || cfg.cols < 4 || cfg.rows > 8192 || cfg.cols > 8192 {
        bail_invalid!("scene size {}x{} is outside 4x4..8192x8192", cfg.rows, cfg.cols);
    }
    let mut rng = Rng::new(cfg.seed);
    let kind = cfg.kind.unwrap_or(if rng.uniform() < 0.55 { SceneKind::Aerial } else { SceneKind::Tabletop });
    let mut canvas = Canvas::new(cfg.rows, cfg.cols);
    let mut palette = Palette::default();
    let light = match kind {
        SceneKind::Aerial => aerial::paint(&mut canvas, &mut palette, &mut rng, cfg.illuminant.as_deref())?,
        SceneKind::Tabletop => tabletop::paint(&mut canvas, &mut palette, &mut rng, cfg.illuminant.as_deref())?,
    };
    let exposure = rng.range(0.85, 1.0) as f32;
    assemble(cfg, kind, canvas, palette, light, exposure)
}

// ---------------------------------------------------------------------------------------------
// Light.

struct Light {
    name: String,
    direct: Vec<f32>,
    ambient: Vec<f32>,
    ambient_level: f32,
}

fn on_grid(name: &str) -> Result<Vec<f32>> {
    let s = illuminant(name)?.resample(&default_wavelengths())?;
    let max = s.values.iter().cloned().fold(0.0f32, f32::max);
    Ok(s.values.iter().map(|v| v / max).collect())
}

/// Diffuse skylight: D65 tilted by (550/λ)² (Rayleigh-like), peak 1. A model, not a
/// measurement: the assets ship no skylight spectrum.
fn skylight() -> Result<Vec<f32>> {
    let d65 = on_grid("d65")?;
    let tilted: Vec<f32> = default_wavelengths().iter().zip(&d65).map(|(w, e)| e * (550.0 / w).powi(2)).collect();
    let max = tilted.iter().cloned().fold(0.0f32, f32::max);
    Ok(tilted.iter().map(|v| v / max).collect())
}

fn daylight_or_lamp(name: &str, ambient_level: f32) -> Result<Light> {
    let direct = on_grid(name)?;
    let outdoor = matches!(name, "d65" | "astm-g173");
    let (ambient, label) =
        if outdoor { (skylight()?, format!("{name} + skylight")) } else { (direct.clone(), name.to_string()) };
    Ok(Light { name: label, direct, ambient, ambient_level })
}

// ---------------------------------------------------------------------------------------------
// Materials and the canvas they are painted on.

#[derive(Default)]
struct Palette {
    materials: Vec<Material>,
    spectra: Vec<Vec<f32>>,
}

impl Palette {
    /// The id of spectrum `idx` of `lib`, added on first use.
    fn add(&mut self, lib: &SpectralLibrary, idx: usize) -> usize {
        let name = &lib.names[idx];
        if let Some(i) = self.materials.iter().position(|m| m.library == lib.name && &m.name == name) {
            return i;
        }
        self.materials.push(Material {
            library: lib.name.clone(),
            name: name.clone(),
            category: lib.categories[idx].clone(),
        });
        self.spectra.push(lib.spectrum(idx).iter().map(|v| v.clamp(0.0, 1.0)).collect());
        self.materials.len() - 1
    }
}

/// Random member of `pool` (which must not be empty: pools are built from shipped data).
fn pick(pool: &[usize], rng: &mut Rng) -> usize {
    pool[rng.below(pool.len())]
}

/// A spectrum of `pool` close to `idx` (nearest of a few random candidates): the second
/// material of a textured surface, e.g. two soils of one field.
fn related(lib: &SpectralLibrary, pool: &[usize], idx: usize, rng: &mut Rng) -> usize {
    let target = lib.spectrum(idx);
    let mut best = (f32::INFINITY, idx);
    for _ in 0..16 {
        let j = pick(pool, rng);
        if j == idx {
            continue;
        }
        let d: f32 = lib.spectrum(j).iter().zip(target.iter()).map(|(a, b)| (a - b).powi(2)).sum();
        if d < best.0 {
            best = (d, j);
        }
    }
    best.1
}

/// What one painted pixel receives: coverage `alpha` of a mixture `t`·p + (1−t)·q, and
/// optionally a shading value that replaces the one below (by `alpha`).
struct Paint {
    alpha: f32,
    p: usize,
    q: usize,
    t: f32,
    shade: Option<f32>,
}

const EMPTY: (usize, usize, usize, usize) = (usize::MAX, 0, usize::MAX, 0);

struct Canvas {
    rows: usize,
    cols: usize,
    /// Per material, one abundance per pixel (row-major).
    abund: Vec<Vec<f32>>,
    /// Per material, the rows r0..r1 and cols c0..c1 where it may be non-zero.
    extent: Vec<(usize, usize, usize, usize)>,
    shade: Vec<f32>,
    /// Direct-light fraction: 1 in the open, lower in cast shadows.
    sun: Vec<f32>,
}

impl Canvas {
    fn new(rows: usize, cols: usize) -> Canvas {
        let n = rows * cols;
        Canvas { rows, cols, abund: Vec::new(), extent: Vec::new(), shade: vec![1.0; n], sun: vec![1.0; n] }
    }

    /// Pixel rows/cols of a box around (cy, cx) with half-size `reach`, clipped to the image.
    fn clip(&self, cy: f32, cx: f32, reach: f32) -> (usize, usize, usize, usize) {
        let r0 = (cy - reach).floor().max(0.0) as usize;
        let c0 = (cx - reach).floor().max(0.0) as usize;
        let r1 = ((cy + reach).ceil().max(0.0) as usize + 1).min(self.rows);
        let c1 = ((cx + reach).ceil().max(0.0) as usize + 1).min(self.cols);
        (r0, r1.max(r0), c0, c1.max(c0))
    }

    /// Composite a layer over the pixels of `rect` (r0, r1, c0, c1); `f(y, x)` gets pixel
    /// centres.
    fn paint(&mut self, rect: (usize, usize, usize, usize), mut f: impl FnMut(f32, f32) -> Option<Paint>) {
        let (r0, r1, c0, c1) = rect;
        // Only materials already present somewhere in `rect` need scaling down: a pixel is
        // visited once per call, so materials first written in this call are not affected.
        let overlaps = |b: &(usize, usize, usize, usize)| b.0 < r1 && r0 < b.1 && b.2 < c1 && c0 < b.3;
        let active: Vec<usize> = (0..self.abund.len()).filter(|&m| overlaps(&self.extent[m])).collect();
        let mut grown: Vec<(usize, usize, usize, usize)> = self.extent.clone();
        for r in r0..r1 {
            for c in c0..c1 {
                let Some(pt) = f(r as f32 + 0.5, c as f32 + 0.5) else { continue };
                let a = pt.alpha.clamp(0.0, 1.0);
                if a <= 0.0 {
                    continue;
                }
                let need = pt.p.max(pt.q) + 1;
                while self.abund.len() < need {
                    self.abund.push(vec![0.0; self.rows * self.cols]);
                    self.extent.push(EMPTY);
                    grown.push(EMPTY);
                }
                let i = r * self.cols + c;
                for &m in &active {
                    self.abund[m][i] *= 1.0 - a;
                }
                let t = pt.t.clamp(0.0, 1.0);
                self.abund[pt.p][i] += a * t;
                self.abund[pt.q][i] += a * (1.0 - t);
                for m in [pt.p, pt.q] {
                    let g = &mut grown[m];
                    *g = (g.0.min(r), g.1.max(r + 1), g.2.min(c), g.3.max(c + 1));
                }
                if let Some(s) = pt.shade {
                    self.shade[i] = self.shade[i] * (1.0 - a) + s * a;
                }
            }
        }
        self.extent = grown;
    }

    /// Darken the direct light by `strength`·coverage over `rect`.
    fn shadow(&mut self, rect: (usize, usize, usize, usize), strength: f32, mut cover: impl FnMut(f32, f32) -> f32) {
        let (r0, r1, c0, c1) = rect;
        for r in r0..r1 {
            for c in c0..c1 {
                let a = cover(r as f32 + 0.5, c as f32 + 0.5).clamp(0.0, 1.0);
                let i = r * self.cols + c;
                self.sun[i] *= 1.0 - strength * a;
            }
        }
    }

    fn full(&self) -> (usize, usize, usize, usize) {
        (0, self.rows, 0, self.cols)
    }
}

/// Anti-aliased coverage of a shape from its signed distance (negative inside), edge `w` px.
fn coverage(sd: f32, w: f32) -> f32 {
    (0.5 - sd / w.max(1e-3)).clamp(0.0, 1.0)
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

// ---------------------------------------------------------------------------------------------
// Value noise (smooth, seeded) and its fractal sum.

pub(crate) struct Noise {
    table: Vec<f32>,
    offsets: [(f32, f32); 8],
}

impl Noise {
    pub(crate) fn new(rng: &mut Rng) -> Noise {
        let table = (0..256 * 256).map(|_| rng.uniform_f32()).collect();
        let offsets = [(); 8].map(|_| (rng.range(0.0, 256.0) as f32, rng.range(0.0, 256.0) as f32));
        Noise { table, offsets }
    }

    /// Smoothly interpolated lattice noise in [0, 1], period 256.
    fn at(&self, x: f32, y: f32) -> f32 {
        let (xf, yf) = (x.floor(), y.floor());
        let (fx, fy) = (x - xf, y - yf);
        let (ux, uy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let xi = (xf as i64).rem_euclid(256) as usize;
        let yi = (yf as i64).rem_euclid(256) as usize;
        let (x1, y1) = ((xi + 1) & 255, (yi + 1) & 255);
        let v = |x: usize, y: usize| self.table[y * 256 + x];
        let top = v(xi, yi) + (v(x1, yi) - v(xi, yi)) * ux;
        let bottom = v(xi, y1) + (v(x1, y1) - v(xi, y1)) * ux;
        top + (bottom - top) * uy
    }

    /// Fractal sum of `octaves` (≤ 8) octaves at feature size `scale` px, centred on 0,
    /// roughly in [-0.5, 0.5].
    pub(crate) fn fbm(&self, y: f32, x: f32, scale: f32, octaves: usize) -> f32 {
        let (mut sum, mut amp, mut norm, mut freq) = (0.0, 1.0, 0.0, 1.0 / scale);
        for &(ox, oy) in self.offsets.iter().take(octaves.clamp(1, 8)) {
            sum += amp * (self.at(x * freq + ox, y * freq + oy) - 0.5);
            norm += amp;
            amp *= 0.5;
            freq *= 2.0;
        }
        sum / norm * 1.6
    }
}

// ---------------------------------------------------------------------------------------------
// Putting the spectra together.

fn assemble(
    cfg: &SceneConfig,
    kind: SceneKind,
    canvas: Canvas,
    palette: Palette,
    light: Light,
    exposure: f32,
) -> Result<Scene> {
    let (rows, cols) = (cfg.rows, cfg.cols);
    let n = rows * cols;
    // Keep only materials that appear; renormalise so each pixel sums exactly to 1.
    let used: Vec<usize> = (0..canvas.abund.len()).filter(|&m| canvas.abund[m].iter().any(|&a| a > 1e-4)).collect();
    if used.is_empty() {
        bail_invalid!("scene {} painted no material (internal error)", cfg.seed);
    }
    let mut abund = Array2::<f32>::zeros((used.len(), n));
    for (k, &m) in used.iter().enumerate() {
        abund.row_mut(k).assign(&ndarray::ArrayView1::from(&canvas.abund[m][..]));
    }
    for mut col in abund.axis_iter_mut(Axis(1)) {
        let s = col.sum();
        if s > 0.0 {
            col /= s;
        }
    }
    let spectra = Array2::from_shape_fn((BANDS, used.len()), |(b, k)| palette.spectra[used[k]][b]);
    let reflectance = spectra.dot(&abund); // (bands, pixels)
    let mut radiance = reflectance.clone();
    for (b, mut band) in radiance.axis_iter_mut(Axis(0)).enumerate() {
        let (ed, ea) = (light.direct[b], light.ambient[b] * light.ambient_level);
        for (i, v) in band.iter_mut().enumerate() {
            *v *= canvas.shade[i] * (canvas.sun[i] * ed + ea);
        }
    }
    let max = radiance.iter().cloned().fold(0.0f32, f32::max);
    if max > 0.0 {
        radiance *= exposure / max;
    }
    let to_cube = |a: Array2<f32>| -> Result<Cube> {
        let data = a.into_shape_with_order((BANDS, rows, cols)).expect("sizes agree");
        let mut cube = Cube::on_default_grid(data)?;
        cube.meta.description = Some(format!("synthetic {} scene, seed {}", kind.name(), cfg.seed));
        Ok(cube)
    };
    let mut cube = to_cube(radiance)?;
    cube.meta.units = Some("radiance (relative, max <= 1)".into());
    let mut reflectance = to_cube(reflectance)?;
    reflectance.meta.units = Some("reflectance".into());
    let rgb = clean_rgb(&cube, &cfg.camera)?;
    let materials = used.iter().map(|&m| palette.materials[m].clone()).collect();
    let abundances = abund.into_shape_with_order((used.len(), rows, cols)).expect("sizes agree");
    Ok(Scene { cube, reflectance, rgb, kind, illuminant: light.name, materials, abundances })
}

// ---------------------------------------------------------------------------------------------
// Aerial landscapes.

mod aerial {
    use super::*;

    struct Pools {
        canopy: Vec<usize>,
        soil: Vec<usize>,
        sand: Vec<usize>,
        litter: Vec<usize>,
        roofs: Vec<usize>,
        road: Vec<usize>,
        gravel: Vec<usize>,
    }

    fn pools(lib: &SpectralLibrary) -> Result<Pools> {
        let of = |prefixes: &[&str]| -> Result<Vec<usize>> {
            let v: Vec<usize> = prefixes.iter().flat_map(|p| lib.indices_in(p)).collect();
            if v.is_empty() {
                bail_invalid!("the earthlib library has no spectra in {prefixes:?}");
            }
            Ok(v)
        };
        Ok(Pools {
            canopy: of(&["vegetation/canopy"])?,
            soil: of(&["bare/soil", "bare/dirt"])?,
            sand: of(&["bare/sand"])?,
            litter: of(&["npv/litter", "npv/npv"])?,
            roofs: of(&[
                "built/comp_shingle",
                "built/tile",
                "built/metal",
                "built/concrete_tile",
                "built/wood_shingle",
            ])?,
            road: of(&["built/road", "built/asphalt", "built/parking_lot"])?,
            gravel: of(&["bare/gravel", "built/gravel", "bare/dirt"])?,
        })
    }

    pub(super) fn paint(canvas: &mut Canvas, pal: &mut Palette, rng: &mut Rng, light: Option<&str>) -> Result<Light> {
        let lib = library_ref("earthlib")?;
        let pools = pools(lib)?;
        let (rows, cols) = (canvas.rows as f32, canvas.cols as f32);
        let s = rows.max(cols) / 512.0; // feature sizes scale with the image
        let noise = Noise::new(rng);
        let direct = light.map(str::to_ascii_lowercase).unwrap_or_else(|| {
            if rng.uniform() < 0.7 {
                "astm-g173".into()
            } else {
                "d65".into()
            }
        });
        let light = daylight_or_lamp(&direct, rng.range(0.15, 0.3) as f32)?;
        // Sun azimuth (shadows fall along `shadow_dir`) and elevation (shadow length factor).
        let az = rng.range(0.0, std::f64::consts::TAU) as f32;
        let shadow_dir = (az.sin(), az.cos()); // (dy, dx)
        let shadow_len = rng.range(0.35, 1.1) as f32;

        // 1. Fields: a warped Voronoi partition with soft borders.
        let k = 5 + rng.below(9);
        let seeds: Vec<(f32, f32)> =
            (0..k).map(|_| (rng.range(-0.1, 1.1) as f32 * rows, rng.range(-0.1, 1.1) as f32 * cols)).collect();
        let mut fields = Vec::new();
        let mut sparse_grass = Vec::new();
        for _ in 0..k {
            let u = rng.uniform();
            let (pool, kind) = if u < 0.45 {
                (&pools.canopy, 0)
            } else if u < 0.8 {
                (&pools.soil, 1)
            } else if u < 0.92 {
                (&pools.litter, 2)
            } else {
                (&pools.sand, 3)
            };
            let a = pick(pool, rng);
            let b = related(lib, pool, a, rng);
            // Crop rows: canopy over soil in stripes.
            let rows_soil = if kind == 0 && rng.uniform() < 0.45 { Some(pick(&pools.soil, rng)) } else { None };
            let angle = rng.range(0.0, std::f64::consts::PI) as f32;
            let period = rng.range(5.0, 11.0) as f32 * s.max(0.5);
            // Bare fields often carry sparse grass: a true sub-pixel mixture with canopy.
            let sparse = if kind != 0 && rng.uniform() < 0.5 {
                Some((pal.add(lib, pick(&pools.canopy, rng)), rng.range(0.3, 0.8) as f32))
            } else {
                None
            };
            fields.push((pal.add(lib, a), pal.add(lib, b), rows_soil.map(|i| pal.add(lib, i)), angle, period, kind));
            sparse_grass.push(sparse);
        }
        let warp = 40.0 * s;
        let tex_scale = 6.0 * s.max(0.4);
        let full = canvas.full();
        // Per pixel: nearest field, second nearest, distance to their border (px).
        let mut nearest = vec![(0u8, 0u8, 0f32); canvas.rows * canvas.cols];
        let width = canvas.cols;
        canvas.paint(full, |y, x| {
            let wy = y + warp * noise.fbm(y, x, 120.0 * s, 3);
            let wx = x + warp * noise.fbm(y + 97.0, x - 53.0, 120.0 * s, 3);
            let (mut d1, mut d2, mut i1, mut i2) = (f32::INFINITY, f32::INFINITY, 0, 0);
            for (i, &(sy, sx)) in seeds.iter().enumerate() {
                let d = ((wy - sy).powi(2) + (wx - sx).powi(2)).sqrt();
                if d < d1 {
                    (d2, i2) = (d1, i1);
                    (d1, i1) = (d, i);
                } else if d < d2 {
                    (d2, i2) = (d, i);
                }
            }
            nearest[y as usize * width + x as usize] = (i1 as u8, i2 as u8, (d2 - d1) * 0.5);
            let (p, q, soil, angle, period, kind) = fields[i1];
            let grain = noise.fbm(y * 1.3, x * 1.3, tex_scale, 4);
            let patch = noise.fbm(y + 311.0, x + 173.0, 40.0 * s, 4);
            let mut t = smoothstep(-0.35, 0.35, patch + 0.5 * grain);
            let shade = 1.0 + 0.18 * grain + if kind == 0 { 0.1 * patch } else { 0.0 };
            // Border: a soft half-pixel-wide mixture plus a darker hedge/furrow line.
            let edge = (d2 - d1) * 0.5;
            let border_dark = 1.0 - 0.25 * (1.0 - smoothstep(0.0, 2.0 * s.max(0.5), edge));
            if let Some(soil) = soil {
                let phase = (x * angle.cos() + y * angle.sin()) / period * std::f32::consts::TAU;
                // Rows never fully cover the soil nor fully expose it.
                let stripe = 0.25 + 0.7 * smoothstep(-0.3, 0.5, phase.sin() + 0.3 * grain);
                return Some(Paint { alpha: 1.0, p, q: soil, t: stripe, shade: Some(shade * border_dark) });
            }
            t = t.clamp(0.0, 1.0);
            Some(Paint { alpha: 1.0, p, q, t, shade: Some(shade * border_dark) })
        });
        // Anti-aliased field borders: the neighbouring field's share of an edge pixel (the
        // warp stretches distances a little, so this is approximate, and that is fine).
        canvas.paint(full, |y, x| {
            let (_, i2, edge) = nearest[y as usize * width + x as usize];
            if edge >= 1.0 {
                return None;
            }
            let (p, q, ..) = fields[i2 as usize];
            Some(Paint { alpha: 0.5 * (1.0 - edge).max(0.0), p, q, t: 0.5, shade: None })
        });
        // Sparse grass on bare fields.
        canvas.paint(full, |y, x| {
            let (i1, ..) = nearest[y as usize * width + x as usize];
            let (grass, density) = sparse_grass[i1 as usize]?;
            let tufts = smoothstep(0.0, 0.35, noise.fbm(y - 41.0, x + 77.0, 3.0 * s.max(0.4), 3) + 0.15 * density);
            let clumps = smoothstep(-0.2, 0.3, noise.fbm(y + 5.0, x - 9.0, 50.0 * s, 3));
            Some(Paint { alpha: density * tufts * clumps, p: grass, q: grass, t: 1.0, shade: None })
        });

        // 2. Roads with gravel shoulders.
        for _ in 0..rng.below(3) {
            let road = pal.add(lib, pick(&pools.road, rng));
            let road2 = pal.add(lib, pick(&pools.road, rng));
            let shoulder = pal.add(lib, pick(&pools.gravel, rng));
            let (py, px) = (rng.range(0.2, 0.8) as f32 * rows, rng.range(0.2, 0.8) as f32 * cols);
            let ang = rng.range(0.0, std::f64::consts::PI) as f32;
            let (ty, tx) = (ang.sin(), ang.cos());
            let width = rng.range(4.0, 9.0) as f32 * s.max(0.5);
            let wobble = rng.range(0.0, 30.0) as f32 * s;
            let wob_freq = rng.range(0.004, 0.012) as f32 / s.max(0.25);
            let dist = move |y: f32, x: f32| {
                let along = (y - py) * ty + (x - px) * tx;
                let across = -(y - py) * tx + (x - px) * ty;
                (across - wobble * (along * wob_freq).sin()).abs()
            };
            let full = canvas.full();
            canvas.paint(full, |y, x| {
                let d = dist(y, x);
                if d > width * 1.8 + 2.0 {
                    return None;
                }
                let g = noise.fbm(y * 2.0, x * 2.0, 4.0, 3);
                Some(Paint {
                    alpha: coverage(d - width * 1.5, 1.5),
                    p: shoulder,
                    q: shoulder,
                    t: 1.0,
                    shade: Some(1.0 + 0.15 * g),
                })
            });
            canvas.paint(full, |y, x| {
                let d = dist(y, x);
                if d > width + 2.0 {
                    return None;
                }
                let g = noise.fbm(y * 3.0, x * 3.0, 8.0, 3);
                Some(Paint {
                    alpha: coverage(d - width, 1.2),
                    p: road,
                    q: road2,
                    t: 0.5 + g,
                    shade: Some(1.0 + 0.1 * g),
                })
            });
        }

        // 3. Buildings: rotated boxes with gabled roofs and cast shadows.
        let n_buildings = if rng.uniform() < 0.5 { rng.below(12) } else { 0 };
        let (cy0, cx0) = (rng.range(0.2, 0.8) as f32 * rows, rng.range(0.2, 0.8) as f32 * cols);
        let street_angle = rng.range(0.0, std::f64::consts::PI) as f32;
        for _ in 0..n_buildings {
            let roof = pick(&pools.roofs, rng);
            let (m1, m2) = (pal.add(lib, roof), pal.add(lib, related(lib, &pools.roofs, roof, rng)));
            let cy = cy0 + rng.normal() as f32 * 70.0 * s;
            let cx = cx0 + rng.normal() as f32 * 70.0 * s;
            let (hl, hw) = (rng.range(8.0, 22.0) as f32 * s.max(0.3), rng.range(6.0, 12.0) as f32 * s.max(0.3));
            let ang = street_angle
                + if rng.uniform() < 0.5 { 0.0 } else { std::f32::consts::FRAC_PI_2 }
                + rng.normal() as f32 * 0.05;
            let (ca, sa) = (ang.cos(), ang.sin());
            let box_sd = move |y: f32, x: f32| {
                let (dy, dx) = (y - cy, x - cx);
                let u = dx * ca + dy * sa;
                let v = -dx * sa + dy * ca;
                let (qx, qy) = (u.abs() - hl, v.abs() - hw);
                let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
                (outside + qx.max(qy).min(0.0), v)
            };
            let reach = hl.max(hw) * 1.5 + 4.0;
            let sl = shadow_len * hw * 1.4;
            let (sy, sx) = (cy + shadow_dir.0 * sl, cx + shadow_dir.1 * sl);
            let rect = canvas.clip(sy, sx, reach + sl);
            canvas.shadow(rect, 0.85, |y, x| {
                // The shadow is the roof swept along the shadow direction.
                (0..4)
                    .map(|k| {
                        coverage(
                            box_sd(y - shadow_dir.0 * sl * k as f32 / 3.0, x - shadow_dir.1 * sl * k as f32 / 3.0).0,
                            2.0,
                        )
                    })
                    .fold(0.0, f32::max)
            });
            // The roof half facing the sun is brighter.
            let facing = (-shadow_dir.1 * -sa + -shadow_dir.0 * ca).signum();
            let rect = canvas.clip(cy, cx, reach);
            canvas.paint(rect, |y, x| {
                let (sd, v) = box_sd(y, x);
                if sd > 2.0 {
                    return None;
                }
                let lit = if v * facing > 0.0 { 1.05 } else { 0.7 };
                let g = noise.fbm(y * 2.0, x * 2.0, 3.0, 2);
                Some(Paint { alpha: coverage(sd, 1.0), p: m1, q: m2, t: 0.7 + g, shade: Some(lit * (1.0 + 0.08 * g)) })
            });
        }

        // 4. Trees, in clusters (woods, hedgerows) with a few loners.
        let canopy_ids: Vec<(usize, usize)> = (0..3)
            .map(|_| {
                let a = pick(&pools.canopy, rng);
                (pal.add(lib, a), pal.add(lib, related(lib, &pools.canopy, a, rng)))
            })
            .collect();
        let clusters: Vec<(f32, f32, f32)> = (0..1 + rng.below(4))
            .map(|_| (rng.uniform() as f32 * rows, rng.uniform() as f32 * cols, rng.range(20.0, 90.0) as f32 * s))
            .collect();
        let n_trees = (rng.range(30.0, 260.0) * (s * s).max(0.02) as f64) as usize;
        let sun3 = {
            let el = (1.0 / shadow_len).atan();
            (-shadow_dir.0 * el.cos(), -shadow_dir.1 * el.cos(), el.sin())
        };
        for _ in 0..n_trees {
            let (cy, cx) = if rng.uniform() < 0.85 {
                let c = clusters[rng.below(clusters.len())];
                (c.0 + rng.normal() as f32 * c.2, c.1 + rng.normal() as f32 * c.2)
            } else {
                (rng.uniform() as f32 * rows, rng.uniform() as f32 * cols)
            };
            let r = rng.range(5.0, 14.0) as f32 * s.max(0.4);
            let (p, q) = canopy_ids[rng.below(canopy_ids.len())];
            let sl = shadow_len * r * 1.3;
            let (sy, sx) = (cy + shadow_dir.0 * sl, cx + shadow_dir.1 * sl);
            let rect = canvas.clip(sy, sx, r * 1.4 + 3.0);
            canvas.shadow(rect, 0.8, |y, x| {
                let d = ((y - sy).powi(2) + (x - sx).powi(2)).sqrt();
                coverage(d - r * (1.0 + 0.4 * noise.fbm(y, x, r * 0.6, 2)), r * 0.3 + 1.0)
            });
            let rect = canvas.clip(cy, cx, r * 1.4 + 3.0);
            canvas.paint(rect, |y, x| {
                let (dy, dx) = (y - cy, x - cx);
                let d = (dy * dy + dx * dx).sqrt();
                let wobble = noise.fbm(y, x, r * 0.5, 3);
                let sd = d - r * (1.0 + 0.45 * wobble);
                if sd > 2.0 {
                    return None;
                }
                // Hemisphere normal; clumps of leaves add fine shading.
                let (ny, nx) = (dy / r, dx / r);
                let nz = (1.0 - (ny * ny + nx * nx).min(1.0)).sqrt();
                let lambert = (ny * sun3.0 + nx * sun3.1 + nz * sun3.2).max(0.0);
                let clumps = noise.fbm(y + 51.0, x + 17.0, 2.5 * s.max(0.4), 3);
                let shade = (0.35 + 0.75 * lambert) * (1.0 + 0.5 * clumps);
                Some(Paint { alpha: coverage(sd, 1.2), p, q, t: 0.5 + 1.5 * clumps, shade: Some(shade) })
            });
        }

        // 5. Terrain hill shading and thin-cloud dimming (multiplies everything).
        for r in 0..canvas.rows {
            for c in 0..canvas.cols {
                let (y, x) = (r as f32 + 0.5, c as f32 + 0.5);
                let h = |y: f32, x: f32| noise.fbm(y + 700.0, x + 700.0, 160.0 * s, 3);
                let (gy, gx) = (h(y + 2.0, x) - h(y - 2.0, x), h(y, x + 2.0) - h(y, x - 2.0));
                let hill = 1.0 - 40.0 * s * (gy * shadow_dir.0 + gx * shadow_dir.1);
                let cloud = 1.0 - 0.2 * smoothstep(0.1, 0.5, noise.fbm(y - 900.0, x + 400.0, 220.0 * s, 4));
                canvas.shade[r * canvas.cols + c] *= hill.clamp(0.75, 1.25) * cloud;
            }
        }
        Ok(light)
    }
}

// ---------------------------------------------------------------------------------------------
// Tabletop still lifes.

mod tabletop {
    use super::*;

    /// Munsell chips whose chroma (after the '/') is at least `min_chroma`.
    fn saturated(lib: &SpectralLibrary, min_chroma: f32) -> Vec<usize> {
        (0..lib.len())
            .filter(|&i| {
                lib.names[i].rsplit('/').next().and_then(|c| c.parse::<f32>().ok()).is_some_and(|c| c >= min_chroma)
            })
            .collect()
    }

    pub(super) fn paint(canvas: &mut Canvas, pal: &mut Palette, rng: &mut Rng, light: Option<&str>) -> Result<Light> {
        let earth = library_ref("earthlib")?;
        let munsell = library_ref("munsell")?;
        let checker = library_ref("colorchecker")?;
        let (rows, cols) = (canvas.rows as f32, canvas.cols as f32);
        let s = rows.max(cols) / 512.0;
        let noise = Noise::new(rng);
        const LAMPS: [&str; 6] = ["d65", "a", "f2", "f11", "led-b3", "astm-g173"];
        let direct = light.map(str::to_ascii_lowercase).unwrap_or_else(|| LAMPS[rng.below(LAMPS.len())].to_string());
        let light = daylight_or_lamp(&direct, rng.range(0.25, 0.45) as f32)?;

        // Wall (pale Munsell or paint) above a floor (wood, tile, concrete, sand, soil).
        let pale: Vec<usize> = (0..munsell.len())
            .filter(|&i| {
                let n = &munsell.names[i];
                let v = n.split(['R', 'Y', 'G', 'B', 'P']).next_back().unwrap_or("");
                v.starts_with('8') || v.starts_with('9')
            })
            .collect();
        let wall = if pale.is_empty() { 0 } else { pick(&pale, rng) };
        let wall = pal.add(munsell, wall);
        let floor_kinds: &[&str] =
            &["npv/wood", "built/concrete_tile", "built/tile", "bare/sand", "bare/soil", "built/sidewalk"];
        let floor_pool = earth.indices_in(floor_kinds[rng.below(floor_kinds.len())]);
        if floor_pool.is_empty() {
            bail_invalid!("the earthlib library lacks floor materials");
        }
        let f1 = pick(&floor_pool, rng);
        let (fa, fb) = (pal.add(earth, f1), pal.add(earth, related(earth, &floor_pool, f1, rng)));
        let horizon = rng.range(0.15, 0.45) as f32 * rows;
        let tilt = rng.normal() as f32 * 0.05;
        let grain_dir = rng.normal() as f32 * 0.15; // boards run roughly left to right
        let (lamp_y, lamp_x) = (rng.range(-0.3, 0.6) as f32 * rows, rng.range(0.0, 1.0) as f32 * cols);
        let falloff = rng.range(0.6, 1.2) as f32 * rows.max(cols);
        let full = canvas.full();
        canvas.paint(full, |y, x| {
            let h = horizon + tilt * (x - cols * 0.5);
            let on_floor = coverage(h - y, 1.5);
            let spot = (-((y - lamp_y).powi(2) + (x - lamp_x).powi(2)) / (2.0 * falloff * falloff)).exp();
            let (u, v) = (x * grain_dir.cos() + y * grain_dir.sin(), -x * grain_dir.sin() + y * grain_dir.cos());
            // Wood-like grain: noise stretched along one direction.
            let grain = noise.fbm(v * 6.0, u * 0.25, 24.0 * s.max(0.3), 4);
            let wall_tex = noise.fbm(y, x, 3.0, 2) * 0.05;
            let shade_floor = (0.45 + 0.6 * spot) * (1.0 + 0.25 * grain);
            let shade_wall = (0.35 + 0.5 * spot) * (1.0 + wall_tex) * (0.8 + 0.2 * (y / h.max(1.0)));
            // The wall/floor join is a soft mixture: wall share 1 − on_floor.
            let shade = shade_wall * (1.0 - on_floor) + shade_floor * on_floor;
            if on_floor >= 1.0 {
                Some(Paint { alpha: 1.0, p: fa, q: fb, t: 0.5 + 2.0 * grain, shade: Some(shade) })
            } else {
                Some(Paint { alpha: 1.0, p: wall, q: fa, t: 1.0 - on_floor, shade: Some(shade) })
            }
        });

        // Shadow direction: away from the lamp, roughly.
        let chips = saturated(munsell, 6.0);
        let n_objects = 4 + rng.below(9);
        let with_chart = rng.uniform() < 0.35;
        let total = n_objects + usize::from(with_chart);
        // Objects stand on the floor; painted back to front so nearer ones (lower) overlap.
        let mut centres: Vec<(f32, f32)> = (0..total)
            .map(|_| {
                let cy = rng.range(horizon as f64 + 0.05 * rows as f64, rows as f64 * 0.95) as f32;
                (cy, rng.range(0.05, 0.95) as f32 * cols)
            })
            .collect();
        centres.sort_by(|a, b| a.0.total_cmp(&b.0));
        let chart_slot = if with_chart { rng.below(total) } else { usize::MAX };
        for (o, &(cy, cx)) in centres.iter().enumerate() {
            // Nearer the bottom, bigger.
            let depth = ((cy - horizon) / (rows - horizon).max(1.0)).clamp(0.2, 1.0);
            let size = rng.range(35.0, 95.0) as f32 * s * (0.5 + depth);
            let (ly, lx) = (cy - lamp_y, cx - lamp_x);
            let ln = (ly * ly + lx * lx).sqrt().max(1.0);
            let (sdy, sdx) = (ly / ln, lx / ln);
            let sl = size * 0.35;
            if o == chart_slot {
                chart(canvas, pal, checker, (cy, cx), size * 1.6, rng.normal() as f32 * 0.15, (sdy, sdx));
                continue;
            }
            let chip = pick(&chips, rng);
            let same_hue = munsell.indices_in(&munsell.categories[chip]);
            let (p, q) = (pal.add(munsell, chip), pal.add(munsell, related(munsell, &same_hue, chip, rng)));
            let round = rng.uniform() < 0.6;
            let (a, b) = if round {
                let r = size * 0.5;
                (r * rng.range(0.9, 1.2) as f32, r)
            } else {
                (size * rng.range(0.4, 0.8) as f32, size * rng.range(0.3, 0.6) as f32)
            };
            let ang = if round { 0.0 } else { rng.normal() as f32 * 0.4 };
            let (ca, sa) = (ang.cos(), ang.sin());
            let striped = !round && rng.uniform() < 0.4;
            let sdf = move |y: f32, x: f32| -> (f32, f32, f32) {
                let (dy, dx) = (y - cy, x - cx);
                let u = dx * ca + dy * sa;
                let v = -dx * sa + dy * ca;
                if round {
                    let k = ((u / a).powi(2) + (v / b).powi(2)).sqrt();
                    ((k - 1.0) * a.min(b), u / a, v / b)
                } else {
                    let rr = 0.15 * a.min(b);
                    let (qx, qy) = (u.abs() - a + rr, v.abs() - b + rr);
                    let sd = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt() + qx.max(qy).min(0.0) - rr;
                    (sd, u / a, v / b)
                }
            };
            let rect = canvas.clip(cy + sdy * sl, cx + sdx * sl, a.max(b) * 1.3 + sl + 4.0);
            canvas.shadow(rect, 0.75, |y, x| coverage(sdf(y - sdy * sl, x - sdx * sl).0, 0.35 * a.min(b) + 1.0));
            let rect = canvas.clip(cy, cx, a.max(b) * 1.1 + 3.0);
            let (lny, lnx) = (-sdy, -sdx); // towards the lamp
            canvas.paint(rect, |y, x| {
                let (sd, nu, nv) = sdf(y, x);
                if sd > 2.0 {
                    return None;
                }
                let (shade, t) = if round {
                    // Sphere: normal from the ellipse coordinates, lamp above and in front.
                    let nz = (1.0 - (nu * nu + nv * nv).min(1.0)).sqrt();
                    let (ny, nx) = (nv, nu);
                    let l = (lny * 0.6, lnx * 0.6, 0.8);
                    let lambert = (ny * l.0 + nx * l.1 + nz * l.2).max(0.0);
                    (0.25 + 0.85 * lambert, 0.6 + 1.2 * noise.fbm(y, x, 6.0 * s.max(0.3), 3))
                } else {
                    let t = if striped { smoothstep(-0.2, 0.2, (nu * 8.0).sin()) } else { 1.0 };
                    (0.85 + 0.15 * (nu * lnx + nv * lny), t)
                };
                let mut shade = shade * (1.0 + 0.05 * noise.fbm(y * 3.0, x * 3.0, 4.0, 2));
                shade *= 0.7 + 0.4 * (-((y - lamp_y).powi(2) + (x - lamp_x).powi(2)) / (2.0 * falloff * falloff)).exp();
                Some(Paint { alpha: coverage(sd, 1.2), p, q, t, shade: Some(shade) })
            });
        }
        Ok(light)
    }

    /// A ColorChecker chart (4 × 6 patches on a black frame) lying flat.
    fn chart(
        canvas: &mut Canvas,
        pal: &mut Palette,
        checker: &SpectralLibrary,
        centre: (f32, f32),
        width: f32,
        angle: f32,
        shadow_dir: (f32, f32),
    ) {
        let ids: Vec<usize> = (0..checker.len().min(24)).map(|i| pal.add(checker, i)).collect();
        if ids.len() < 24 {
            return;
        }
        let black = ids[23];
        let (hw, hh) = (width * 0.5, width * 0.5 * 4.2 / 6.2);
        let (ca, sa) = (angle.cos(), angle.sin());
        let (cy, cx) = centre;
        let local = move |y: f32, x: f32| {
            let (dy, dx) = (y - cy, x - cx);
            (dx * ca + dy * sa, -dx * sa + dy * ca)
        };
        let frame_sd = move |u: f32, v: f32| {
            let (qx, qy) = (u.abs() - hw, v.abs() - hh);
            (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt() + qx.max(qy).min(0.0)
        };
        let sl = width * 0.04;
        let rect = canvas.clip(cy, cx, hw * 1.2 + sl + 3.0);
        canvas.shadow(rect, 0.6, |y, x| {
            let (u, v) = local(y - shadow_dir.0 * sl, x - shadow_dir.1 * sl);
            coverage(frame_sd(u, v), 3.0)
        });
        let cell = 2.0 * hw / 6.2;
        canvas.paint(rect, |y, x| {
            let (u, v) = local(y, x);
            let sd = frame_sd(u, v);
            if sd > 2.0 {
                return None;
            }
            // Patch grid: 6 columns × 4 rows with 0.2-cell gaps of frame.
            let gu = (u + hw) / cell - 0.1;
            let gv = (v + hh) / cell - 0.1;
            let (col, row) = (gu.floor(), gv.floor());
            let inside = (0.0..6.0).contains(&col) && (0.0..4.0).contains(&row);
            let (fu, fv) = (gu - col, gv - row);
            let patch_sd = (0.1 - fu).max(fu - 0.9).max(0.1 - fv).max(fv - 0.9) * cell;
            let p = if inside { ids[(row as usize) * 6 + col as usize] } else { black };
            let t = if inside { coverage(patch_sd, 1.0) } else { 0.0 };
            Some(Paint { alpha: coverage(sd, 1.0), p, q: black, t, shade: Some(0.95) })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_generate_physical_scenes() {
        for (seed, kind) in [(1, SceneKind::Aerial), (2, SceneKind::Tabletop)] {
            let mut cfg = SceneConfig::new(seed, 48, 40).unwrap();
            cfg.kind = Some(kind);
            let s = generate(&cfg).unwrap();
            assert_eq!(s.cube.data.shape(), &[31, 48, 40]);
            let max = s.cube.data.iter().cloned().fold(0.0f32, f32::max);
            assert!((0.85 - 1e-6..=1.0 + 1e-6).contains(&max), "{max}");
            assert!(s.cube.data.iter().all(|v| *v >= 0.0));
            assert!(s.reflectance.data.iter().all(|v| (0.0..=1.0 + 1e-5).contains(v)));
            let sums = s.abundances.sum_axis(Axis(0));
            assert!(sums.iter().all(|v| (v - 1.0).abs() < 1e-4));
            assert_eq!(s.abundances.shape()[0], s.materials.len());
            assert!(s.rgb.data.iter().all(|v| (0.0..=1.0 + 1e-5).contains(v)));
        }
    }

    #[test]
    fn odd_sizes_work_and_bad_sizes_are_refused() {
        for (seed, (rows, cols)) in [(3, (4, 4)), (4, (7, 90)), (5, (90, 7))] {
            for kind in [SceneKind::Aerial, SceneKind::Tabletop] {
                let mut cfg = SceneConfig::new(seed, rows, cols).unwrap();
                cfg.kind = Some(kind);
                let s = generate(&cfg).unwrap();
                assert_eq!(s.rgb.data.shape(), &[3, rows, cols]);
                assert!(s.cube.data.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
            }
        }
        let e = generate(&SceneConfig::new(1, 2, 100).unwrap()).unwrap_err().to_string();
        assert!(e.contains("2x100"), "{e}");
    }
}
