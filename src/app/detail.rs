//! Full-resolution tiles of large cubes. A large cube is shown from its overview (every band,
//! decimated); when the view magnifies the overview (one overview pixel spans more than a
//! screen point), the visible part is read from the file at the finest step the screen can
//! show and painted over the overview, stretched with the overview's ranges so the two join
//! without seams. Tiles are read on a job; the last finished tile stays on screen meanwhile
//! (it is painted at its own place, so it is never wrong, only partial).

use std::collections::HashMap;
use std::ops::Range as Span;
use std::sync::Arc;

use egui::{ColorImage, Pos2, Rect, TextureHandle, Vec2};

use super::document::{LargeCube, Layer, LayerData};
use super::view::{DisplayMode, DisplaySettings, Paint};
use crate::display::{self, Stretch};
use crate::engine::{Job, JobContext};
use crate::io::source;
use crate::spectral::render;
use crate::{Cube, Result};

/// At most this many pixels per tile (a 16 MiB texture).
pub const MAX_TILE_PIXELS: usize = 2048 * 2048;

/// Why a tile cannot be in true colour.
const NO_VISIBLE_BAND: &str = "no band lies in 380–780 nm: true colour cannot be shown";

/// Tiles are snapped to cells of this many pixels at their step, so a small pan reuses one.
const CELL: usize = 256;

/// What decides a tile's look (the display settings that matter for a cube).
#[derive(Clone, Debug, PartialEq)]
struct Look {
    mode: DisplayMode,
    band: usize,
    colormap: crate::display::Colormap,
    stretch: Stretch,
    false_bands: [usize; 3],
}

impl Look {
    fn of(s: &DisplaySettings) -> Look {
        Look { mode: s.mode, band: s.band, colormap: s.colormap, stretch: s.stretch, false_bands: s.false_bands }
    }
}

/// A region of the image and the step it is read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileRegion {
    pub rows: Span<usize>,
    pub cols: Span<usize>,
    pub step: usize,
}

impl TileRegion {
    /// The image pixels the tile covers (x = column, y = row).
    fn extent(&self) -> Rect {
        let h = self.rows.len().div_ceil(self.step) * self.step;
        let w = self.cols.len().div_ceil(self.step) * self.step;
        Rect::from_min_size(Pos2::new(self.cols.start as f32, self.rows.start as f32), Vec2::new(w as f32, h as f32))
    }
}

/// The region to read for a view showing image pixels `visible` at `zoom` screen points per
/// pixel, for an image of `rows` × `cols` whose overview has step `overview_step`; `None`
/// when the overview is as fine as the screen.
pub fn wanted(rows: usize, cols: usize, overview_step: usize, visible: Rect, zoom: f32) -> Option<TileRegion> {
    if zoom.is_nan() || zoom <= 0.0 || zoom * overview_step as f32 <= 1.0 {
        return None;
    }
    let mut step = ((1.0 / zoom).floor() as usize).max(1);
    let cell = CELL * step;
    let snap = |lo: f32, hi: f32, len: usize| {
        let lo = (lo.max(0.0) as usize / cell) * cell;
        let hi = ((hi.max(0.0).ceil() as usize).div_ceil(cell) * cell).min(len);
        (lo < hi).then_some(lo..hi)
    };
    let rows = snap(visible.min.y, visible.max.y, rows)?;
    let cols = snap(visible.min.x, visible.max.x, cols)?;
    while rows.len().div_ceil(step) * cols.len().div_ceil(step) > MAX_TILE_PIXELS {
        step += 1;
    }
    (step < overview_step).then_some(TileRegion { rows, cols, step })
}

#[derive(Clone, Debug, PartialEq)]
struct TileKey {
    look: Look,
    region: TileRegion,
}

struct Tile {
    key: TileKey,
    texture: TextureHandle,
}

#[derive(Default)]
struct Entry {
    shown: Option<Tile>,
    building: Option<(TileKey, Job<ColorImage>)>,
    failed: Option<TileKey>,
    used: bool,
}

/// Detail tiles of the large layers on screen, one per layer.
#[derive(Default)]
pub struct DetailCache {
    entries: HashMap<u64, Entry>,
}

impl DetailCache {
    /// The tile to paint over `layer`'s overview in a view showing image pixels `visible` at
    /// `zoom`; a read of the wanted tile starts in the background when it is not the one shown.
    pub fn get(&mut self, ctx: &egui::Context, layer: &Layer, settings: &DisplaySettings, visible: Rect, zoom: f32) -> Option<Paint<'_>> {
        let LayerData::Large(large) = &layer.data else { return None };
        let (_, rows, cols) = large.source.shape();
        let look = Look::of(settings);
        let entry = self.entries.entry(layer.id).or_default();
        entry.used = true;
        if let Some(region) = wanted(rows, cols, large.overview.step, visible, zoom) {
            let key = TileKey { look: look.clone(), region };
            let have = entry.shown.as_ref().is_some_and(|t| t.key == key);
            let asked = entry.building.as_ref().is_some_and(|(k, _)| *k == key);
            if !have && !asked && entry.failed.as_ref() != Some(&key) && !matches!(look.mode, DisplayMode::Error(_)) {
                let (large, settings, region) = (large.clone(), settings.clone(), key.region.clone());
                let ctx2 = ctx.clone();
                let waker: crate::engine::Waker = Arc::new(move || ctx2.request_repaint());
                // Replacing an older read drops (cancels) it: only the latest view matters.
                let job = Job::spawn(format!("tile of {}", layer.name), waker, move |job| tile_pixels(&large, &settings, &region, job));
                entry.building = Some((key, job));
            }
        }
        if let Some((key, job)) = &mut entry.building {
            if let Some(result) = job.poll() {
                let key = key.clone();
                entry.building = None;
                match result {
                    Ok(image) => match &mut entry.shown {
                        Some(t) => {
                            t.texture.set(image, super::view::texture_options());
                            t.key = key;
                        }
                        None => {
                            let texture = ctx.load_texture(format!("tile-{}", layer.id), image, super::view::texture_options());
                            entry.shown = Some(Tile { key, texture });
                        }
                    },
                    Err(_) => entry.failed = Some(key),
                }
            }
        }
        // A tile drawn under other settings would show the wrong band or colours.
        let tile = entry.shown.as_ref().filter(|t| t.key.look == look)?;
        Some(Paint { texture: &tile.texture, extent: tile.key.region.extent() })
    }

    /// Drop layer `id`'s tiles: its data changed (wavelengths set).
    pub fn forget(&mut self, id: u64) {
        self.entries.remove(&id);
    }

    pub fn is_building(&self) -> bool {
        self.entries.values().any(|e| e.building.is_some())
    }

    /// The region of the tile shown over layer `id`, if any (what a test checks).
    pub fn shown_region(&self, id: u64) -> Option<&TileRegion> {
        self.entries.get(&id)?.shown.as_ref().map(|t| &t.key.region)
    }

    /// Forget the tiles of layers no view asked for since the last call.
    pub fn end_frame(&mut self) {
        self.entries.retain(|_, e| std::mem::take(&mut e.used));
    }
}

/// The pixels of `region` under `s`, read from the file and stretched as the overview is.
pub fn tile_pixels(large: &LargeCube, s: &DisplaySettings, region: &TileRegion, job: &JobContext) -> Result<ColorImage> {
    let overview = &large.overview.cube;
    let src = &*large.source;
    let TileRegion { rows, cols, step } = region.clone();
    let (nr, nc) = (rows.len().div_ceil(step), cols.len().div_ceil(step));
    // Colour of a cube the eye cannot see is false colour, as the overview shows it.
    let mut s = s.clone();
    if s.mode == DisplayMode::Colour && !super::view::sees_visible_light(&overview.wavelengths) {
        s.mode = DisplayMode::FalseColour;
        s.false_bands = super::view::spread_bands(overview.bands());
    }
    let rgba = match s.mode {
        DisplayMode::Band => {
            let b = s.band.min(overview.bands() - 1);
            let (_, range) = display::map_rgba(overview.band(b), s.stretch, s.colormap);
            let tile = src.read(&[b], rows, cols, step)?;
            display::fixed_range_rgba(tile.index_axis(ndarray::Axis(0), 0), range, s.colormap)
        }
        DisplayMode::FalseColour => {
            let bands = s.false_bands.map(|b| b.min(overview.bands() - 1));
            let ranges = render::false_colour_ranges(overview, bands)?;
            let data = src.read(&bands, rows, cols, step)?;
            let tile = Cube::new(data, bands.iter().map(|&b| overview.wavelengths[b]).collect())?;
            display::rgb_rgba(&render::false_colour_in(&tile, [0, 1, 2], ranges)?, 1.0, false)
        }
        DisplayMode::Colour => {
            let exposure = large.exposure.ok_or_else(|| crate::Error::invalid(NO_VISIBLE_BAND))?;
            // Only the bands the eye sees, in row blocks: memory stays bounded at any tile size.
            let visible: Vec<usize> = (0..overview.bands()).filter(|&b| (380.0..=780.0).contains(&overview.wavelengths[b])).collect();
            if visible.is_empty() {
                return Err(crate::Error::invalid(NO_VISIBLE_BAND));
            }
            let wavelengths: Vec<f32> = visible.iter().map(|&b| overview.wavelengths[b]).collect();
            let per_block = (source::BLOCK_BYTES / (4 * visible.len() * nc).max(1)).max(1);
            let mut out = Vec::with_capacity(nr * nc * 4);
            for block in source::row_blocks(nr, per_block) {
                job.check()?;
                let from = rows.start + block.start * step;
                let to = (rows.start + (block.end - 1) * step + 1).min(rows.end);
                let block_cube = Cube::new(src.read(&visible, from..to, cols.clone(), step)?, wavelengths.clone())?;
                let (rgb, _) = render::true_colour_srgb_exposed(&block_cube, None, Some(exposure))?;
                out.extend(display::rgb_rgba(&rgb, 1.0, false));
                job.report(block.end as f32 / nr as f32, "reading the tile");
            }
            out
        }
        DisplayMode::Error(_) => return Err(crate::Error::invalid("error maps need both cubes in memory")),
    };
    Ok(ColorImage::from_rgba_unmultiplied([nc, nr], &rgba))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_asked_for_only_when_the_overview_is_magnified() {
        let whole = Rect::from_min_size(Pos2::ZERO, Vec2::new(4000.0, 3000.0));
        // fitted: 0.3 points per pixel, overview step 8 → an overview pixel is 2.4 points
        let r = wanted(3000, 4000, 8, whole, 0.3).expect("magnified");
        assert_eq!((r.rows.clone(), r.cols.clone(), r.step), (0..3000, 0..4000, 3));
        // zoomed out past the overview: nothing to read
        assert_eq!(wanted(3000, 4000, 8, whole, 0.1), None);
        // zoomed in: full resolution, snapped to cells around the visible part
        let part = Rect::from_min_max(Pos2::new(1000.0, 700.0), Pos2::new(1600.0, 1100.0));
        let r = wanted(3000, 4000, 8, part, 2.0).unwrap();
        assert_eq!((r.rows, r.cols, r.step), (512..1280, 768..1792, 1));
        // a huge visible area is read coarser so the tile stays within its pixel budget
        let r = wanted(30000, 40000, 80, Rect::from_min_size(Pos2::ZERO, Vec2::new(40000.0, 30000.0)), 0.05).unwrap();
        assert!(r.rows.len().div_ceil(r.step) * r.cols.len().div_ceil(r.step) <= MAX_TILE_PIXELS);
        // off the image: nothing
        assert_eq!(wanted(3000, 4000, 8, Rect::from_min_size(Pos2::new(-500.0, -500.0), Vec2::splat(100.0)), 2.0), None);
    }
}
