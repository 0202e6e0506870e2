//! How a layer is shown: display settings, the texture cache that turns a layer into pixels
//! only when something changed, and the zoomable, pannable image widget with pixel picking.

use super::document::{Layer, LayerData};
use crate::display::{self, Colormap, Range, Stretch};
use crate::metrics;
use crate::spectral::render;
use crate::engine::Job;
use crate::Cube;
use egui::{Color32, ColorImage, Pos2, Rect, Sense, TextureHandle, TextureOptions, Vec2};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisplayMode {
    /// RGB layers as recorded; cubes in true colour (CIE 1931 → sRGB).
    Colour,
    /// One band through a colormap and stretch.
    Band,
    /// Any three bands as R, G, B (2–98 % stretch each).
    FalseColour,
    /// Per-pixel error against the ground truth.
    Error(ErrorMetric),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorMetric {
    Rmse,
    Mrae,
    Sam,
}

impl ErrorMetric {
    pub const ALL: [ErrorMetric; 3] = [ErrorMetric::Rmse, ErrorMetric::Mrae, ErrorMetric::Sam];

    pub fn name(self) -> &'static str {
        match self {
            ErrorMetric::Rmse => "RMSE",
            ErrorMetric::Mrae => "MRAE",
            ErrorMetric::Sam => "SAM (°)",
        }
    }

    /// A fixed colour-bar top so maps of different methods read the same.
    pub fn default_max(self) -> f32 {
        match self {
            ErrorMetric::Rmse => 0.1,
            ErrorMetric::Mrae => 1.0,
            ErrorMetric::Sam => 20.0,
        }
    }

    pub fn map(self, pred: &Cube, gt: &Cube) -> crate::Result<ndarray::Array2<f32>> {
        match self {
            ErrorMetric::Rmse => metrics::rmse_map(&pred.data, &gt.data),
            ErrorMetric::Mrae => metrics::mrae_map(&pred.data, &gt.data),
            ErrorMetric::Sam => metrics::sam_map(&pred.data, &gt.data),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DisplaySettings {
    pub mode: DisplayMode,
    pub band: usize,
    pub colormap: Colormap,
    pub stretch: Stretch,
    pub false_bands: [usize; 3],
    pub error_max: f32,
    pub playing: bool,
}

impl Default for DisplaySettings {
    fn default() -> Self {
        DisplaySettings {
            mode: DisplayMode::Colour,
            band: 15,
            colormap: Colormap::Grey,
            stretch: Stretch::Percentile,
            false_bands: [24, 15, 6],
            error_max: ErrorMetric::Rmse.default_max(),
            playing: false,
        }
    }
}

/// One button per error metric ("RMSE {suffix}", …); choosing a new metric resets the colour
/// bar to that metric's default top.
pub fn error_mode_buttons(ui: &mut egui::Ui, d: &mut DisplaySettings, suffix: &str) {
    for m in ErrorMetric::ALL {
        if ui.selectable_label(d.mode == DisplayMode::Error(m), format!("{} {suffix}", m.name())).clicked() && d.mode != DisplayMode::Error(m) {
            d.mode = DisplayMode::Error(m);
            d.error_max = m.default_max();
        }
    }
}

/// Everything that decides a layer's pixels; a texture is rebuilt only when this changes.
#[derive(Clone, PartialEq)]
struct TextureKey {
    mode: DisplayMode,
    band: usize,
    colormap: Colormap,
    stretch: Stretch,
    false_bands: [usize; 3],
    error_max_bits: u32,
    gt: Option<u64>,
}

pub struct LayerTexture {
    pub texture: TextureHandle,
    /// The data range the colour scale spans (band and error views), for the colour bar.
    pub range: Option<Range>,
    /// The image pixels the texture spans, (width, height): the layer's size, or for a large
    /// cube's overview its pixels times the overview's step (a little past the edge).
    pub extent: Vec2,
    key: TextureKey,
}

impl LayerTexture {
    /// The texture painted over its extent.
    pub fn paint(&self) -> Paint<'_> {
        Paint { texture: &self.texture, extent: Rect::from_min_size(Pos2::ZERO, self.extent) }
    }
}

/// A texture and the rectangle of image pixels it covers (x = column, y = row).
#[derive(Clone, Copy)]
pub struct Paint<'a> {
    pub texture: &'a TextureHandle,
    pub extent: Rect,
}

/// What a view can draw for a layer this frame.
pub enum Shown<'a> {
    /// A texture; `updating` when it shows older settings while the new pixels are built.
    Ready { texture: &'a LayerTexture, updating: bool },
    /// The first pixels of this layer are still being built.
    Building,
    Failed(String),
}

type Pixels = (ColorImage, Option<Range>);

/// One layer's texture, and the build of its next pixels when they are too slow for a frame.
#[derive(Default)]
struct CacheEntry {
    shown: Option<LayerTexture>,
    building: Option<(TextureKey, Job<Pixels>)>,
    failed: Option<(TextureKey, String)>,
    used: bool,
}

/// Textures of the layers on screen, one per layer, rebuilt when their settings change.
/// Pixels that take a whole cube pass (true colour, false colour, error maps) are built on a
/// job thread so the frame never waits for them; one band or an RGB image is built at once, so
/// moving the band slider updates within the frame.
#[derive(Default)]
pub struct TextureCache {
    entries: HashMap<u64, CacheEntry>,
}

impl TextureCache {
    /// The texture of `layer` under `settings`; `gt` is the ground truth for error maps.
    /// Errors (an error map without ground truth, say) come back as text for the view.
    pub fn get(&mut self, ctx: &egui::Context, layer: &Layer, settings: &DisplaySettings, gt: Option<(u64, &Arc<Cube>)>) -> Shown<'_> {
        let mode = effective_mode(settings.mode, &layer.data);
        let key = TextureKey {
            mode,
            band: settings.band,
            colormap: settings.colormap,
            stretch: settings.stretch,
            false_bands: settings.false_bands,
            error_max_bits: settings.error_max.to_bits(),
            gt: if matches!(mode, DisplayMode::Error(_)) { gt.map(|g| g.0) } else { None },
        };
        let entry = self.entries.entry(layer.id).or_default();
        entry.used = true;
        let fresh = entry.shown.as_ref().is_some_and(|t| t.key == key);
        let known_failure = entry.failed.as_ref().is_some_and(|(k, _)| *k == key);
        if fresh {
            // Back to the settings on screen: a build for others would overwrite them.
            entry.building = None;
        } else if !known_failure {
            if builds_in_frame(mode) {
                entry.building = None;
                let result = layer_pixels(&layer.data, mode, settings, gt.map(|g| g.1));
                entry.finish(ctx, layer, key.clone(), result);
            } else {
                entry.build_in_background(ctx, layer, mode, settings, key.clone(), gt.map(|g| g.1.clone()));
            }
        }
        if let Some((k, job)) = &mut entry.building {
            if let Some(result) = job.poll() {
                let k = k.clone();
                entry.building = None;
                entry.finish(ctx, layer, k, result.map_err(|e| e.to_string()));
            }
        }
        match (&entry.failed, &entry.shown) {
            (Some((k, e)), _) if *k == key => Shown::Failed(e.clone()),
            (_, Some(t)) => Shown::Ready { texture: t, updating: t.key != key },
            (_, None) => Shown::Building,
        }
    }

    /// Drop layer `id`'s texture: its pixels changed (an RGB decoded again).
    pub fn forget(&mut self, id: u64) {
        self.entries.remove(&id);
    }

    /// Whether any layer's pixels are being built (tests wait for them like for jobs).
    pub fn is_building(&self) -> bool {
        self.entries.values().any(|e| e.building.is_some())
    }

    /// Free the textures no view asked for since the last call (closed layers); a build
    /// nobody waits for any more is cancelled with its job.
    pub fn end_frame(&mut self) {
        self.entries.retain(|_, e| std::mem::take(&mut e.used));
    }
}

impl CacheEntry {
    fn build_in_background(&mut self, ctx: &egui::Context, layer: &Layer, mode: DisplayMode, settings: &DisplaySettings, key: TextureKey, gt: Option<Arc<Cube>>) {
        if self.building.as_ref().is_some_and(|(k, _)| *k == key) {
            return;
        }
        let (data, settings) = (layer.data.clone(), settings.clone());
        let ctx = ctx.clone();
        let waker: crate::engine::Waker = Arc::new(move || ctx.request_repaint());
        // Replacing an older build drops (cancels) it: only the latest settings matter.
        let job = Job::spawn(format!("pixels of {}", layer.name), waker, move |_| {
            layer_pixels(&data, mode, &settings, gt.as_ref()).map_err(crate::Error::invalid)
        });
        self.building = Some((key, job));
    }

    fn finish(&mut self, ctx: &egui::Context, layer: &Layer, key: TextureKey, result: Result<Pixels, String>) {
        let extent = texture_extent(&layer.data);
        match result {
            Err(e) => self.failed = Some((key, e)),
            Ok((image, range)) => {
                self.failed = None;
                match &mut self.shown {
                    Some(t) => {
                        t.texture.set(image, texture_options());
                        t.range = range;
                        t.extent = extent;
                        t.key = key;
                    }
                    None => {
                        let texture = ctx.load_texture(format!("layer-{}", layer.id), image, texture_options());
                        self.shown = Some(LayerTexture { texture, range, extent, key });
                    }
                }
            }
        }
    }
}

/// Modes whose pixels come from one band or an RGB image: cheap enough to build in the frame.
fn builds_in_frame(mode: DisplayMode) -> bool {
    matches!(mode, DisplayMode::Band)
}

pub(crate) fn texture_options() -> TextureOptions {
    // Nearest-neighbour when zoomed in, so analysts see real pixels, smooth when zoomed out.
    TextureOptions { magnification: egui::TextureFilter::Nearest, minification: egui::TextureFilter::Linear, ..Default::default() }
}

/// RGB layers have no bands: every mode but colour falls back to it.
fn effective_mode(mode: DisplayMode, data: &LayerData) -> DisplayMode {
    match data {
        LayerData::Rgb(_) => DisplayMode::Colour,
        LayerData::Cube(_) | LayerData::Large(_) => mode,
    }
}

/// (rows, cols) of the pixels a layer's texture has: its own, or its overview's.
pub fn pixel_dims(data: &LayerData) -> (usize, usize) {
    match data {
        LayerData::Large(large) => (large.overview.cube.rows(), large.overview.cube.cols()),
        _ => data.rows_cols(),
    }
}

/// The image pixels a layer's texture spans, as (width, height).
fn texture_extent(data: &LayerData) -> Vec2 {
    let (rows, cols) = pixel_dims(data);
    let step = match data {
        LayerData::Large(large) => large.overview.step,
        _ => 1,
    };
    Vec2::new((cols * step) as f32, (rows * step) as f32)
}

fn layer_pixels(data: &LayerData, mode: DisplayMode, s: &DisplaySettings, gt: Option<&Arc<Cube>>) -> Result<(ColorImage, Option<Range>), String> {
    let (rows, cols) = pixel_dims(data);
    let (rgba, range) = layer_rgba(data, mode, s, gt)?;
    Ok((ColorImage::from_rgba_unmultiplied([cols, rows], &rgba), range))
}

/// The layer's pixels as RGBA8 (row-major, [`pixel_dims`]) under `mode`, and the range of its
/// colour scale. A large cube shows its overview.
pub fn layer_rgba(data: &LayerData, mode: DisplayMode, s: &DisplaySettings, gt: Option<&Arc<Cube>>) -> Result<(Vec<u8>, Option<Range>), String> {
    let mode = effective_mode(mode, data);
    match data {
        LayerData::Rgb(rgb) => Ok((display::rgb_rgba(rgb, display::auto_gain(rgb), true), None)),
        LayerData::Cube(cube) => cube_rgba(cube, mode, s, gt),
        LayerData::Large(_) if matches!(mode, DisplayMode::Error(_)) => {
            Err("error maps need both cubes in memory; this cube is read from its file on demand".into())
        }
        LayerData::Large(large) => cube_rgba(&large.overview.cube, mode, s, None),
    }
}

/// `metric` at one pixel of `pred` against `gt` (the map's own rule, on a 1 × 1 crop); None off
/// either cube or when their shapes differ.
pub fn error_at(metric: ErrorMetric, pred: &Cube, gt: &Cube, row: usize, col: usize) -> Option<f32> {
    if pred.data.dim() != gt.data.dim() || row >= gt.rows() || col >= gt.cols() {
        return None;
    }
    let px = crate::Rect { row, col, height: 1, width: 1 };
    let map = metric.map(&pred.crop(px).ok()?, &gt.crop(px).ok()?).ok()?;
    map.get([0, 0]).copied().filter(|v| v.is_finite())
}

/// Whether a cube with these wavelengths has a band the CIE observer sees (380–780 nm); band
/// numbers see nothing.
pub fn sees_visible_light(wavelengths: &[f32]) -> bool {
    !crate::cube::are_band_numbers(wavelengths) && wavelengths.iter().any(|w| (380.0..=780.0).contains(w))
}

/// Three bands at three quarters, half and a quarter of the cube, as R, G, B.
pub fn spread_bands(bands: usize) -> [usize; 3] {
    [(3 * bands) / 4, bands / 2, bands / 4].map(|b| b.min(bands.saturating_sub(1)))
}

/// How a band is labelled: its wavelength, or its number when the cube has none.
pub fn band_label(wavelengths: &[f32], band: usize) -> String {
    if crate::cube::are_band_numbers(wavelengths) {
        format!("band {}", band + 1)
    } else {
        wavelengths.get(band).map(|w| format!("{w:.0} nm")).unwrap_or_default()
    }
}

fn cube_rgba(cube: &Cube, mode: DisplayMode, s: &DisplaySettings, gt: Option<&Arc<Cube>>) -> Result<(Vec<u8>, Option<Range>), String> {
    Ok(match mode {
        DisplayMode::Colour if !sees_visible_light(&cube.wavelengths) => {
            // Nothing the eye sees (a SWIR or thermal cube, or band numbers): false colour from
            // bands spread over the cube instead of an error.
            let bands = spread_bands(cube.bands());
            let rgb = render::false_colour(cube, bands, true).map_err(|e| e.to_string())?;
            (display::rgb_rgba(&rgb, 1.0, false), None)
        }
        DisplayMode::Colour => {
            let rgb = render::true_colour_srgb(cube, None).map_err(|e| e.to_string())?;
            (display::rgb_rgba(&rgb, 1.0, false), None)
        }
        DisplayMode::Band => {
            let (px, range) = display::map_rgba(cube.band(s.band.min(cube.bands() - 1)), s.stretch, s.colormap);
            (px, Some(range))
        }
        DisplayMode::FalseColour => {
            let bands = s.false_bands.map(|b| b.min(cube.bands() - 1));
            let rgb = render::false_colour(cube, bands, true).map_err(|e| e.to_string())?;
            (display::rgb_rgba(&rgb, 1.0, false), None)
        }
        DisplayMode::Error(metric) => {
            let gt = gt.ok_or("no ground truth: open the scene's cube and mark it 'ground truth'")?;
            let map = metric.map(cube, gt).map_err(|e| e.to_string())?;
            let range = Range { lo: 0.0, hi: s.error_max };
            (display::fixed_range_rgba(map.view(), range, Colormap::Inferno), Some(range))
        }
    })
}

/// Zoom and pan shared by every image view: linked views show the same part of the scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewTransform {
    /// Screen points per image pixel.
    pub zoom: f32,
    /// Image coordinates (x = column, y = row) at the centre of the view.
    pub centre: Pos2,
    /// Fit the image to the view on the next frame.
    pub fit_pending: bool,
}

impl Default for ViewTransform {
    fn default() -> Self {
        ViewTransform { zoom: 1.0, centre: Pos2::ZERO, fit_pending: true }
    }
}

impl ViewTransform {
    pub fn image_to_screen(&self, view: Rect, p: Pos2) -> Pos2 {
        view.center() + (p - self.centre) * self.zoom
    }

    pub fn screen_to_image(&self, view: Rect, p: Pos2) -> Pos2 {
        self.centre + (p - view.center()) / self.zoom
    }

    pub fn fit(&mut self, view: Rect, rows: usize, cols: usize) {
        let zoom = (view.width() / cols as f32).min(view.height() / rows as f32);
        self.zoom = if zoom.is_finite() && zoom > 0.0 { zoom } else { 1.0 };
        self.centre = Pos2::new(cols as f32 / 2.0, rows as f32 / 2.0);
        self.fit_pending = false;
    }

    /// Zoom by `factor` keeping the image point under `cursor` where it is.
    pub fn zoom_at(&mut self, view: Rect, cursor: Pos2, factor: f32) {
        let anchor = self.screen_to_image(view, cursor);
        self.zoom = (self.zoom * factor).clamp(0.05, 200.0);
        self.centre = anchor - (cursor - view.center()) / self.zoom;
    }
}

/// A marked pixel: its position and the colour of its marker and plot lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pin {
    pub row: usize,
    pub col: usize,
    pub colour: Color32,
}

#[derive(Default)]
pub struct PickResponse {
    /// The pixel under the pointer (row, col).
    pub hovered: Option<(usize, usize)>,
    /// A click on a pixel, and whether shift was held (pin another rather than replace).
    pub clicked: Option<((usize, usize), bool)>,
    /// A rectangle dragged with the secondary button: (row0, col0, row1, col1), inclusive.
    pub roi: Option<(usize, usize, usize, usize)>,
}

/// Draw `paints` (textures over parts of an image of `rows`×`cols`, in order) under `transform`: wheel zooms to the cursor,
/// dragging pans, a click picks a pixel, a right-drag selects a region.
pub fn image_widget(
    ui: &mut egui::Ui,
    label: &str,
    paints: &[Paint<'_>],
    dims: (usize, usize),
    transform: &mut ViewTransform,
    pins: &[Pin],
    roi: Option<(usize, usize, usize, usize)>,
    size: Vec2,
) -> PickResponse {
    let (response, painter) = allocate_view(ui, size, dims, transform);
    let view = response.rect;
    // Textures that span past the image (an overview's last pixels) are cut at its edge.
    let clipped = painter.with_clip_rect(image_rect(view, transform, dims).intersect(view));
    for p in paints {
        let rect = Rect::from_min_max(transform.image_to_screen(view, p.extent.min), transform.image_to_screen(view, p.extent.max));
        paint_image(&clipped, p.texture, rect);
    }
    let out = interact(ui, &response, &format!("Image: {label}"), dims, transform);
    paint_marks(&painter, view, transform, pins, roi);
    name_tag(&painter, view, label, false);
    out
}

/// Two images of the same scene in one view, `left` on the left of a vertical divider and
/// `right` on its right; dragging the divider's handle moves it (`split` is its place across
/// the view, 0–1), anything else zooms, pans and picks as in `image_widget`.
#[allow(clippy::too_many_arguments)]
pub fn swipe_widget(
    ui: &mut egui::Ui,
    (left_label, left): (&str, &TextureHandle),
    (right_label, right): (&str, &TextureHandle),
    dims: (usize, usize),
    transform: &mut ViewTransform,
    split: &mut f32,
    pins: &[Pin],
    roi: Option<(usize, usize, usize, usize)>,
    size: Vec2,
) -> PickResponse {
    let (response, painter) = allocate_view(ui, size, dims, transform);
    let view = response.rect;
    let split_x = view.left() + view.width() * split.clamp(0.0, 1.0);
    // The handle is registered after the view, so it wins the drag where they overlap.
    let handle_rect = Rect::from_x_y_ranges(split_x - 6.0..=split_x + 6.0, view.y_range());
    let handle = ui.interact(handle_rect, response.id.with("swipe-handle"), Sense::drag()).on_hover_cursor(egui::CursorIcon::ResizeHorizontal);
    handle.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Slider, true, "Swipe divider"));
    if handle.dragged() {
        *split = ((split_x + handle.drag_delta().x - view.left()) / view.width()).clamp(0.0, 1.0);
    }
    let rect = image_rect(view, transform, dims);
    paint_image(&painter.with_clip_rect(Rect::from_x_y_ranges(view.left()..=split_x, view.y_range())), left, rect);
    paint_image(&painter.with_clip_rect(Rect::from_x_y_ranges(split_x..=view.right(), view.y_range())), right, rect);
    let label = format!("Swipe: {left_label} | {right_label}");
    let out = interact(ui, &response, &label, dims, transform);
    paint_marks(&painter, view, transform, pins, roi);
    let line = if handle.hovered() || handle.dragged() { Color32::YELLOW } else { Color32::WHITE };
    painter.line_segment([egui::pos2(split_x, view.top()), egui::pos2(split_x, view.bottom())], egui::Stroke::new(2.0, line));
    painter.circle_filled(egui::pos2(split_x, view.center().y), 7.0, line);
    name_tag(&painter, view, left_label, false);
    name_tag(&painter, view, right_label, true);
    out
}

/// The view's area and painter, on a dark background; a pending fit is applied to its size.
fn allocate_view(ui: &mut egui::Ui, size: Vec2, dims: (usize, usize), transform: &mut ViewTransform) -> (egui::Response, egui::Painter) {
    let (response, painter) = ui.allocate_painter(size, Sense::click_and_drag());
    if transform.fit_pending {
        transform.fit(response.rect, dims.0, dims.1);
    }
    painter.rect_filled(response.rect, 0.0, Color32::from_gray(24));
    (response, painter)
}

fn image_rect(view: Rect, transform: &ViewTransform, (rows, cols): (usize, usize)) -> Rect {
    Rect::from_min_max(transform.image_to_screen(view, Pos2::ZERO), transform.image_to_screen(view, Pos2::new(cols as f32, rows as f32)))
}

fn paint_image(painter: &egui::Painter, texture: &TextureHandle, rect: Rect) {
    painter.image(texture.id(), rect, Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)), Color32::WHITE);
}

/// Zoom, pan, pick and region selection on an image view; `label` is its accessible name.
fn interact(ui: &egui::Ui, response: &egui::Response, label: &str, (rows, cols): (usize, usize), transform: &mut ViewTransform) -> PickResponse {
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, label));
    let view = response.rect;
    // Picks use the transform the user saw when clicking, before this frame's zoom or pan.
    let seen = *transform;
    let pixel_at = |p: Pos2| {
        let q = seen.screen_to_image(view, p);
        (q.x >= 0.0 && q.y >= 0.0 && (q.x as usize) < cols && (q.y as usize) < rows).then(|| (q.y as usize, q.x as usize))
    };
    let mut out = PickResponse::default();
    if let Some(p) = response.hover_pos() {
        out.hovered = pixel_at(p);
        let scroll = ui.input(|i| i.smooth_scroll_delta.y);
        if scroll != 0.0 {
            transform.zoom_at(view, p, (scroll * 0.004).exp());
        }
    }
    if response.dragged_by(egui::PointerButton::Primary) {
        transform.centre -= response.drag_delta() / transform.zoom;
    }
    if response.clicked() {
        if let Some(p) = response.interact_pointer_pos() {
            // The release event carries the modifiers held at the click, even when the shift key
            // is let go in the same frame (fast clicks, synthetic input).
            let shift = ui.input(|i| {
                i.modifiers.shift
                    || i.events.iter().any(|e| matches!(e, egui::Event::PointerButton { pressed: false, modifiers, .. } if modifiers.shift))
            });
            out.clicked = pixel_at(p).map(|px| (px, shift));
        }
    }
    // egui forgets where a press began once the button is up, so the region's first corner
    // is kept from the frames of the drag.
    let origin_id = response.id.with("region-origin");
    if response.dragged_by(egui::PointerButton::Secondary) {
        if let Some(p) = ui.input(|i| i.pointer.press_origin()) {
            ui.data_mut(|d| d.insert_temp(origin_id, p));
        }
    }
    if response.drag_stopped_by(egui::PointerButton::Secondary) {
        let start = ui.data_mut(|d| d.remove_temp::<Pos2>(origin_id));
        if let (Some(a), Some(b)) = (start.and_then(pixel_at), response.interact_pointer_pos().and_then(pixel_at)) {
            out.roi = Some((a.0.min(b.0), a.1.min(b.1), a.0.max(b.0), a.1.max(b.1)));
        }
    }
    out
}

/// Pin markers and the region rectangle over an image view.
fn paint_marks(painter: &egui::Painter, view: Rect, transform: &ViewTransform, pins: &[Pin], roi: Option<(usize, usize, usize, usize)>) {
    let marker_radius = (transform.zoom * 0.5).max(4.0);
    for pin in pins {
        let centre = transform.image_to_screen(view, Pos2::new(pin.col as f32 + 0.5, pin.row as f32 + 0.5));
        painter.circle_stroke(centre, marker_radius, egui::Stroke::new(2.0, pin.colour));
        painter.circle_stroke(centre, marker_radius + 2.0, egui::Stroke::new(1.0, Color32::BLACK));
    }
    if let Some((r0, c0, r1, c1)) = roi {
        let rect = Rect::from_min_max(
            transform.image_to_screen(view, Pos2::new(c0 as f32, r0 as f32)),
            transform.image_to_screen(view, Pos2::new(c1 as f32 + 1.0, r1 as f32 + 1.0)),
        );
        painter.rect_stroke(rect, 0.0, egui::Stroke::new(1.5, Color32::YELLOW), egui::StrokeKind::Middle);
    }
}

/// A layer's name on a dark backing in the view's top-left (or top-right) corner, readable over
/// bright pixels and hot error maps.
fn name_tag(painter: &egui::Painter, view: Rect, text: &str, right: bool) {
    let galley = painter.layout_no_wrap(text.to_string(), egui::FontId::proportional(13.0), Color32::WHITE);
    let size = galley.size() + Vec2::new(6.0, 2.0);
    let x = if right { view.right() - size.x - 4.0 } else { view.left() + 4.0 };
    let text_rect = Rect::from_min_size(egui::pos2(x, view.top() + 3.0), size);
    painter.rect_filled(text_rect, 3.0, Color32::from_black_alpha(170));
    painter.galley(text_rect.min + Vec2::new(3.0, 1.0), galley, Color32::WHITE);
}

/// A horizontal colour bar with its end values, for band and error views, at most `width`
/// wide: the bar shrinks (to 40 px) so a small view's bar never widens its column.
pub fn colour_bar(ui: &mut egui::Ui, colormap: Colormap, range: Range, unit: &str, width: f32) {
    ui.horizontal(|ui| {
        let (lo, hi) = (format!("{:.3}", range.lo), format!("{:.3} {unit}", range.hi));
        let font = egui::TextStyle::Body.resolve(ui.style());
        let text_width: f32 = [&lo, &hi].iter().map(|t| ui.painter().layout_no_wrap(t.to_string(), font.clone(), Color32::WHITE).size().x).sum();
        let bar_width = (width - text_width - 2.0 * ui.spacing().item_spacing.x).clamp(40.0, 160.0);
        ui.label(lo);
        let (rect, _) = ui.allocate_exact_size(Vec2::new(bar_width, 12.0), Sense::hover());
        let steps = 32;
        for i in 0..steps {
            let t = i as f32 / (steps - 1) as f32;
            let [r, g, b] = colormap.colour(t);
            let x0 = rect.left() + rect.width() * i as f32 / steps as f32;
            let x1 = rect.left() + rect.width() * (i + 1) as f32 / steps as f32;
            ui.painter().rect_filled(Rect::from_min_max(Pos2::new(x0, rect.top()), Pos2::new(x1, rect.bottom())), 0.0, Color32::from_rgb(r, g, b));
        }
        ui.label(hi);
    });
}
