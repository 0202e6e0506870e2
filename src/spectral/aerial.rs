//! Nadir aerial scenes over 400–2450 nm, the kind of scene INSS (Liu et al., TGRS 2022) was made
//! for: fields, roads, roofs and trees of earthlib materials seen from above under one sun
//! (ASTM G173 global tilt, whose atmospheric water, oxygen and CO₂ absorptions are in the
//! spectrum), on the wide library's band grid, which leaves out 1360–1450 and 1800–1950 nm as
//! airborne users drop those bands.
//!
//! A scene is drawn at twice its size and averaged 2 × 2, so boundaries give mixed pixels.
//! - **Fields**: a Voronoi partition warped by noise; each field has a land cover (vegetation,
//!   bare soil, non-photosynthetic vegetation, a paved lot, rarely burned ground) and mixes two
//!   materials, in crop rows or in patches.
//! - **Roads** (1–3 lines, 2–8 px wide) and **buildings** (rotated rectangles of roofing) and
//!   **trees** (discs of canopy), each casting a shadow away from the sun.
//! - **Terrain shading**: a low-frequency factor of 0.85–1.15.
//! - **Materials** are never a library spectrum as it is: each is a convex mix of one to three
//!   spectra of its class, scaled in brightness and bent by a smooth multiplicative curve, so a
//!   model whose library is the same earthlib subset still has to mix.
//!
//! Radiance = reflectance × G173 × shading, plus Gaussian sensor noise of 0.2 % of the scene's
//! mean; each pixel's dominant land cover is kept beside the cube.

use ndarray::{Array2, Array3};

use super::library::{self, SpectralLibrary};
use super::rng::Rng;
use super::scene::Noise;
use crate::{bail_invalid, Cube, Result};

/// The library the scenes are made of (its band grid is the scenes').
pub const LIBRARY: &str = "earthlib-wide";
/// The sun over every scene.
pub const SUN: &str = "astm-g173-wide";

/// Land covers, the values of [`AerialScene::cover`].
pub const COVERS: [&str; 5] = ["vegetation", "bare", "npv", "built", "burned"];
const VEGETATION: u8 = 0;
const BARE: u8 = 1;
const BUILT: u8 = 3;

/// How often each cover is a field's.
const FIELD_COVER_WEIGHTS: [f64; 5] = [0.40, 0.30, 0.12, 0.13, 0.05];
/// Shadowed ground keeps this share of the sun (diffuse sky light).
const SHADOW: f32 = 0.3;

/// One scene: radiance on the library's grid, and each pixel's dominant cover.
pub struct AerialScene {
    pub cube: Cube,
    /// (rows, cols) indices into [`COVERS`].
    pub cover: Array2<u8>,
}

impl AerialScene {
    /// The share of pixels whose dominant cover is each of [`COVERS`].
    pub fn cover_shares(&self) -> [f64; 5] {
        let mut counts = [0usize; 5];
        self.cover.iter().for_each(|&c| counts[c as usize] += 1);
        counts.map(|k| k as f64 / self.cover.len().max(1) as f64)
    }
}

/// A material of the scene: its reflectance and its cover.
struct Material {
    reflectance: Vec<f32>,
    cover: u8,
}

/// Library spectra by cover, from their categories (`vegetation/canopy`, `built/road`, ...).
struct Palette<'a> {
    lib: &'a SpectralLibrary,
    by_cover: [Vec<usize>; 5],
    roofs: Vec<usize>,
    roads: Vec<usize>,
}

impl<'a> Palette<'a> {
    fn new(lib: &'a SpectralLibrary) -> Result<Palette<'a>> {
        let mut by_cover: [Vec<usize>; 5] = Default::default();
        let (mut roofs, mut roads) = (Vec::new(), Vec::new());
        for (i, category) in lib.categories.iter().enumerate() {
            let (top, sub) = category.split_once('/').unwrap_or((category.as_str(), ""));
            let Some(cover) = COVERS.iter().position(|c| *c == top) else { continue };
            by_cover[cover].push(i);
            if top == "built" {
                if matches!(sub, "comp_shingle" | "metal" | "tile" | "concrete_tile" | "wood_shingle" | "paint") {
                    roofs.push(i);
                } else if matches!(sub, "road" | "asphalt" | "parking_lot" | "sidewalk" | "gravel" | "bridge") {
                    roads.push(i);
                }
            }
        }
        if by_cover.iter().any(|v| v.is_empty()) || roofs.is_empty() || roads.is_empty() {
            bail_invalid!("the library '{}' lacks one of the covers {} (or roofs, roads) an aerial scene needs", lib.name, COVERS.join(", "));
        }
        Ok(Palette { lib, by_cover, roofs, roads })
    }

    /// A convex mix of one to three of `pool`'s spectra, scaled and bent smoothly.
    fn material(&self, rng: &mut Rng, pool: &[usize], cover: u8) -> Material {
        let n = 1 + rng.below(3);
        let picks: Vec<usize> = (0..n).map(|_| pool[rng.below(pool.len())]).collect();
        let weights: Vec<f32> = (0..n).map(|_| rng.range(0.2, 1.0) as f32).collect();
        let total: f32 = weights.iter().sum();
        let w = &self.lib.wavelengths;
        let (lo, hi) = (w[0], w[w.len() - 1]);
        let (amplitude, cycles, phase) = (rng.range(0.0, 0.12) as f32, rng.range(0.3, 1.5) as f32, rng.range(0.0, std::f64::consts::TAU) as f32);
        let brightness = rng.range(0.8, 1.2) as f32;
        let reflectance = (0..w.len())
            .map(|b| {
                let mixed: f32 = picks.iter().zip(&weights).map(|(&s, &k)| k * self.lib.spectra[[s, b]]).sum::<f32>() / total;
                let t = (w[b] - lo) / (hi - lo);
                let bend = 1.0 + amplitude * (std::f32::consts::TAU * cycles * t + phase).sin();
                (mixed * brightness * bend).clamp(0.0, 1.0)
            })
            .collect();
        Material { reflectance, cover }
    }
}

fn pick_weighted(rng: &mut Rng, weights: &[f64]) -> usize {
    let mut x = rng.uniform() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// What a full-resolution sample sees: up to two materials and their mix, a shade factor.
#[derive(Clone, Copy)]
struct Sample {
    a: u32,
    b: u32,
    /// Share of `b`.
    mix: f32,
    shade: f32,
}

/// Generate scene `seed` of `size` × `size` pixels.
pub fn scene(seed: u64, size: usize) -> Result<AerialScene> {
    if !(8..=2048).contains(&size) {
        bail_invalid!("an aerial scene's size must be 8..=2048 pixels, got {size}");
    }
    let lib = library::library_ref(LIBRARY)?;
    let palette = Palette::new(lib)?;
    let sun = library::illuminant(SUN)?.resample(&lib.wavelengths)?.values;
    let mut rng = Rng::new(seed ^ 0xAE41_A1A1_5CE4_E000);
    let noise = Noise::new(&mut rng);
    let hi = 2 * size;
    let px = 0.5f32; // one full-resolution sample in output pixels
    let mut materials: Vec<Material> = Vec::new();

    // Fields: warped Voronoi cells, each a cover with two materials mixed in rows or patches.
    let fields = (((size * size) as f64 / 1500.0).round() as usize).clamp(3, 400) + rng.below(4);
    struct Field {
        y: f32,
        x: f32,
        a: u32,
        b: u32,
        rows: Option<(f32, f32, f32)>, // (angle, period px, duty)
        patch_scale: f32,
        mean_mix: f32,
    }
    let mut field_list = Vec::with_capacity(fields);
    for _ in 0..fields {
        let cover = pick_weighted(&mut rng, &FIELD_COVER_WEIGHTS) as u8;
        let pool_a = if cover == BUILT { palette.roads.clone() } else { palette.by_cover[cover as usize].clone() };
        materials.push(palette.material(&mut rng, &pool_a, cover));
        let a = (materials.len() - 1) as u32;
        // crop rows: vegetation over soil; else a second material of the same cover
        let rows = (cover == VEGETATION && rng.uniform() < 0.4).then(|| (rng.range(0.0, std::f64::consts::PI) as f32, rng.range(3.0, 8.0) as f32, rng.range(0.4, 0.8) as f32));
        let b_cover = if rows.is_some() { BARE } else { cover };
        let pool_b = if b_cover == BUILT { palette.roads.clone() } else { palette.by_cover[b_cover as usize].clone() };
        materials.push(palette.material(&mut rng, &pool_b, b_cover));
        let b = (materials.len() - 1) as u32;
        field_list.push(Field {
            y: rng.range(0.0, size as f64) as f32,
            x: rng.range(0.0, size as f64) as f32,
            a,
            b,
            rows,
            patch_scale: rng.range(4.0, 24.0) as f32,
            mean_mix: rng.range(0.0, 0.5) as f32,
        });
    }
    let warp = rng.range(3.0, 10.0) as f32;
    let mut samples = vec![Sample { a: 0, b: 0, mix: 0.0, shade: 1.0 }; hi * hi];
    let mut field_of = vec![0u32; hi * hi];
    for i in 0..hi {
        for j in 0..hi {
            let (y, x) = ((i as f32 + 0.5) * px, (j as f32 + 0.5) * px);
            let (wy, wx) = (y + warp * noise.fbm(y, x, 24.0, 3), x + warp * noise.fbm(y + 97.0, x + 31.0, 24.0, 3));
            let (f, field) = field_list
                .iter()
                .enumerate()
                .min_by(|(_, p), (_, q)| ((p.y - wy).powi(2) + (p.x - wx).powi(2)).total_cmp(&((q.y - wy).powi(2) + (q.x - wx).powi(2))))
                .expect("at least three fields");
            let mix = match field.rows {
                Some((angle, period, duty)) => {
                    let t = (x * angle.cos() + y * angle.sin()) / period;
                    if t - t.floor() < duty { 0.0 } else { 1.0 }
                }
                None => (field.mean_mix + 0.5 * noise.fbm(y + 13.0 * f as f32, x, field.patch_scale, 3)).clamp(0.0, 1.0),
            };
            samples[i * hi + j] = Sample { a: field.a, b: field.b, mix, shade: 1.0 };
            field_of[i * hi + j] = f as u32;
        }
    }

    // Objects drawn over the fields, each casting a shadow away from the sun.
    let sun_angle = rng.range(0.0, std::f64::consts::TAU) as f32;
    let (sy, sx) = (sun_angle.sin(), sun_angle.cos());
    let mut height = vec![0f32; hi * hi]; // object height in output pixels of shadow length
    let paint = |samples: &mut [Sample], height: &mut [f32], inside: &dyn Fn(f32, f32) -> f32, material: u32, h: f32, bbox: (f32, f32, f32, f32)| {
        let (y0, y1, x0, x1) = bbox;
        let (i0, i1) = (((y0 / px).floor().max(0.0)) as usize, ((y1 / px).ceil().max(0.0) as usize).min(hi));
        let (j0, j1) = (((x0 / px).floor().max(0.0)) as usize, ((x1 / px).ceil().max(0.0) as usize).min(hi));
        for i in i0..i1 {
            for j in j0..j1 {
                let (y, x) = ((i as f32 + 0.5) * px, (j as f32 + 0.5) * px);
                let cover = inside(y, x);
                if cover > 0.01 {
                    // a soft edge: the object mixes with the ground under it
                    let s = &mut samples[i * hi + j];
                    *s = Sample { a: s.a, b: material, mix: cover.min(1.0), shade: s.shade };
                    height[i * hi + j] = height[i * hi + j].max(h * cover.min(1.0));
                }
            }
        }
    };
    let n = size as f32;
    // roads
    for _ in 0..1 + rng.below(3) {
        let material = palette.material(&mut rng, &palette.roads, BUILT);
        materials.push(material);
        let m = (materials.len() - 1) as u32;
        let (cy, cx, angle) = (rng.range(0.0, n as f64) as f32, rng.range(0.0, n as f64) as f32, rng.range(0.0, std::f64::consts::PI) as f32);
        let half = rng.range(1.0, 4.0) as f32;
        let (ny, nx) = (angle.cos(), -angle.sin());
        let inside = move |y: f32, x: f32| (half + 0.5 - ((y - cy) * ny + (x - cx) * nx).abs()).clamp(0.0, 1.0);
        paint(&mut samples, &mut height, &inside, m, 0.0, (0.0, n, 0.0, n));
    }
    // buildings, in a quarter of the fields
    for field in field_list.iter().filter(|_| rng.uniform() < 0.25).map(|f| (f.y, f.x)).collect::<Vec<_>>() {
        for _ in 0..2 + rng.below(6) {
            let material = palette.material(&mut rng, &palette.roofs, BUILT);
            materials.push(material);
            let m = (materials.len() - 1) as u32;
            let (cy, cx) = (field.0 + rng.range(-12.0, 12.0) as f32, field.1 + rng.range(-12.0, 12.0) as f32);
            let (h2, w2, angle) = (rng.range(1.5, 6.0) as f32, rng.range(1.5, 8.0) as f32, rng.range(0.0, std::f64::consts::PI) as f32);
            let (ca, sa) = (angle.cos(), angle.sin());
            let inside = move |y: f32, x: f32| {
                let (u, v) = ((y - cy) * ca + (x - cx) * sa, -(y - cy) * sa + (x - cx) * ca);
                (h2 + 0.5 - u.abs()).clamp(0.0, 1.0).min((w2 + 0.5 - v.abs()).clamp(0.0, 1.0))
            };
            let r = h2.max(w2) + 1.0;
            paint(&mut samples, &mut height, &inside, m, rng.range(1.0, 4.0) as f32, (cy - r, cy + r, cx - r, cx + r));
        }
    }
    // trees
    for _ in 0..rng.below(1 + size * size / 300) {
        let material = palette.material(&mut rng, &palette.by_cover[VEGETATION as usize], VEGETATION);
        materials.push(material);
        let m = (materials.len() - 1) as u32;
        let (cy, cx, r) = (rng.range(0.0, n as f64) as f32, rng.range(0.0, n as f64) as f32, rng.range(1.0, 4.0) as f32);
        let inside = move |y: f32, x: f32| (r + 0.5 - ((y - cy).powi(2) + (x - cx).powi(2)).sqrt()).clamp(0.0, 1.0);
        paint(&mut samples, &mut height, &inside, m, r * rng.range(0.8, 1.5) as f32, (cy - r - 1.0, cy + r + 1.0, cx - r - 1.0, cx + r + 1.0));
    }
    // shadows: a sample is shaded when an object taller than its distance stands sunward
    for i in 0..hi {
        for j in 0..hi {
            let own = height[i * hi + j];
            for step in 1..=16 {
                let d = step as f32 * px;
                let (y, x) = ((i as f32 + 0.5) * px + sy * d, (j as f32 + 0.5) * px + sx * d);
                if y < 0.0 || x < 0.0 || y >= n || x >= n {
                    break;
                }
                let (si, sj) = ((y / px) as usize, (x / px) as usize);
                if height[si * hi + sj] - own > d {
                    samples[i * hi + j].shade = SHADOW;
                    break;
                }
            }
        }
    }

    // Terrain shading, then 2 × 2 averaging into the output pixels.
    let bands = lib.wavelengths.len();
    let mut cube = Array3::<f32>::zeros((bands, size, size));
    let mut cover = Array2::<u8>::zeros((size, size));
    let mut weights: Vec<(u32, f32)> = Vec::with_capacity(8);
    for r in 0..size {
        for c in 0..size {
            weights.clear();
            let mut cover_weight = [0f32; 5];
            let terrain = 1.0 + 0.15 * noise.fbm(r as f32 + 500.0, c as f32, 64.0, 2).clamp(-1.0, 1.0);
            for (di, dj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let s = samples[(2 * r + di) * hi + 2 * c + dj];
                for (m, w) in [(s.a, 1.0 - s.mix), (s.b, s.mix)] {
                    if w <= 0.0 {
                        continue;
                    }
                    let w = 0.25 * w * s.shade * terrain;
                    cover_weight[materials[m as usize].cover as usize] += w;
                    match weights.iter_mut().find(|(k, _)| *k == m) {
                        Some(entry) => entry.1 += w,
                        None => weights.push((m, w)),
                    }
                }
            }
            for b in 0..bands {
                let reflected: f32 = weights.iter().map(|&(m, w)| w * materials[m as usize].reflectance[b]).sum();
                cube[[b, r, c]] = reflected * sun[b];
            }
            cover[[r, c]] = (0..5).max_by(|&p, &q| cover_weight[p].total_cmp(&cover_weight[q])).unwrap_or(0) as u8;
        }
    }
    let sigma = 0.002 * cube.mean().unwrap_or(0.0);
    cube.mapv_inplace(|v| (v + sigma * rng.normal() as f32).max(0.0));
    let mut cube = Cube::new(cube, lib.wavelengths.clone())?;
    cube.meta.description = Some(format!("aerial scene {seed} ({LIBRARY} materials under {SUN})"));
    cube.meta.units = Some("radiance (ASTM G173 units × reflectance)".into());
    Ok(AerialScene { cube, cover })
}
