//! The spectra plot: the spectrum of every pinned pixel in every cube layer of the active
//! scene (one colour per pin, as its marker on the image; ground truth thick and solid, every
//! other layer its own dash pattern), a region's mean ± standard deviation, a legend grouped
//! by pin and by layer (a layer's lines hidden or shown together), and the series as CSV.

use super::document::{Document, LayerData, Role};
use super::probes::Probes;
use super::view::Pin;
use crate::Rect as CubeRect;
use egui::Color32;
use egui_plot::{Line, LineStyle, Plot, PlotPoints};

/// One line of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub wavelengths: Vec<f32>,
    pub values: Vec<f32>,
    pub colour: Color32,
    pub style: SeriesStyle,
    /// What the values measure (the cube's units), when known.
    pub unit: Option<String>,
    /// The layer's place among the scene's cubes: reconstructions and other layers are told
    /// apart by their dash pattern (the colour belongs to the pin).
    pub layer_index: usize,
    /// The layer it was read from (the legend hides a layer's lines together).
    pub layer: u64,
}

/// Dash patterns of the layers of a scene, in order (ground truth is drawn thick and solid).
const DASHES: [LineStyle; 6] = [
    LineStyle::Dashed { length: 5.0 },
    LineStyle::Dotted { spacing: 4.0 },
    LineStyle::Dashed { length: 12.0 },
    LineStyle::Dotted { spacing: 9.0 },
    LineStyle::Dashed { length: 2.5 },
    LineStyle::Solid,
];

/// The y axis a series is drawn on: reflectance apart from everything else (radiance, raw
/// counts, values of unknown unit), so the two never share one unlabelled axis.
pub fn axis_of(unit: Option<&str>) -> &'static str {
    match unit {
        Some(u) if u.to_ascii_lowercase().contains("reflectance") => "reflectance",
        _ => "radiance or values as stored",
    }
}

/// The series grouped by axis, in order of first appearance, each with its axis label: the
/// series' common unit when they share one, else the axis name.
pub fn axes(series: &[Series]) -> Vec<(String, Vec<&Series>)> {
    let mut groups: Vec<(&'static str, Vec<&Series>)> = Vec::new();
    for s in series {
        let axis = axis_of(s.unit.as_deref());
        match groups.iter_mut().find(|(a, _)| *a == axis) {
            Some((_, members)) => members.push(s),
            None => groups.push((axis, vec![s])),
        }
    }
    groups
        .into_iter()
        .map(|(axis, members)| {
            let first = members[0].unit.clone();
            let label = match first {
                Some(u) if members.iter().all(|m| m.unit.as_ref() == Some(&u)) => u,
                _ => axis.to_string(),
            };
            (label, members)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesStyle {
    GroundTruth,
    Reconstruction,
    Other,
    /// ± one standard deviation around a region's mean.
    Spread,
}

/// Distinct colours for pins, in order; they cycle.
pub const PIN_COLOURS: [Color32; 6] = [
    Color32::from_rgb(255, 80, 80),
    Color32::from_rgb(80, 200, 255),
    Color32::from_rgb(120, 230, 90),
    Color32::from_rgb(255, 200, 40),
    Color32::from_rgb(220, 120, 255),
    Color32::from_rgb(255, 150, 60),
];

pub const ROI_COLOUR: Color32 = Color32::YELLOW;

/// Every series the plot shows for these pins and region, from the active scene's cubes only.
/// Large cubes contribute what `probes` has read from their files so far.
pub fn series(doc: &Document, pins: &[Pin], roi: Option<(usize, usize, usize, usize)>, probes: &Probes) -> Vec<Series> {
    let mut out = Vec::new();
    for pin in pins {
        for (layer_index, layer) in doc.active_layers().filter(|l| !matches!(l.data, LayerData::Rgb(_))).enumerate() {
            // Pins are kept in the scene's frame; a layer of another size is read at the pixel
            // covering the same place.
            let (row, col) = doc.to_layer(layer, (pin.row, pin.col));
            let pin = Pin { row, col, colour: pin.colour };
            let (rows, cols) = layer.data.rows_cols();
            if pin.row >= rows || pin.col >= cols {
                continue;
            }
            let (wavelengths, values, unit) = match &layer.data {
                LayerData::Cube(cube) => (cube.wavelengths.clone(), cube.spectrum(pin.row, pin.col), cube.meta.units.clone()),
                LayerData::Large(large) => match probes.spectrum(layer.id, pin.row, pin.col) {
                    Some(v) => (large.source.wavelengths().to_vec(), v.to_vec(), large.source.meta().units.clone()),
                    None => continue,
                },
                LayerData::Rgb(_) => continue,
            };
            let style = match layer.role {
                Role::GroundTruth => SeriesStyle::GroundTruth,
                Role::Reconstruction { .. } => SeriesStyle::Reconstruction,
                _ => SeriesStyle::Other,
            };
            out.push(Series { name: format!("{} @ ({}, {})", layer.name, pin.col, pin.row), wavelengths, values, colour: pin.colour, style, unit, layer_index, layer: layer.id });
        }
    }
    if let Some((r0, c0, r1, c1)) = roi {
        for (layer_index, layer) in doc.active_layers().filter(|l| !matches!(l.data, LayerData::Rgb(_))).enumerate() {
            let ((r0, c0), (r1, c1)) = (doc.to_layer(layer, (r0, c0)), doc.to_layer(layer, (r1, c1)));
            let rect = CubeRect { row: r0, col: c0, height: r1 + 1 - r0, width: c1 + 1 - c0 };
            let (w, (mean, std), unit) = match &layer.data {
                LayerData::Cube(cube) => match cube.roi_stats(rect) {
                    Ok(ms) => (cube.wavelengths.clone(), ms, cube.meta.units.clone()),
                    Err(_) => continue,
                },
                LayerData::Large(large) => match probes.region(layer.id, (r0, c0, r1, c1)) {
                    Some((m, s)) => (large.source.wavelengths().to_vec(), (m.to_vec(), s.to_vec()), large.source.meta().units.clone()),
                    None => continue,
                },
                LayerData::Rgb(_) => continue,
            };
            let name = format!("{} ROI {}×{}", layer.name, rect.width, rect.height);
            let upper = mean.iter().zip(&std).map(|(m, s)| m + s).collect();
            let lower = mean.iter().zip(&std).map(|(m, s)| m - s).collect();
            // The region's colour, each layer's own dash (ground truth solid) for the mean.
            let style = if layer.role == Role::GroundTruth { SeriesStyle::GroundTruth } else { SeriesStyle::Other };
            let id = layer.id;
            out.push(Series { name: format!("{name} mean"), wavelengths: w.clone(), values: mean, colour: ROI_COLOUR, style, unit: unit.clone(), layer_index, layer: id });
            out.push(Series { name: format!("{name} +1σ"), wavelengths: w.clone(), values: upper, colour: ROI_COLOUR, style: SeriesStyle::Spread, unit: unit.clone(), layer_index, layer: id });
            out.push(Series { name: format!("{name} −1σ"), wavelengths: w, values: lower, colour: ROI_COLOUR, style: SeriesStyle::Spread, unit, layer_index, layer: id });
        }
    }
    out
}

/// One entry of the legend's layer row: a layer, drawn as its lines are.
#[derive(Debug, Clone, PartialEq)]
pub struct LegendLayer {
    pub layer: u64,
    pub name: String,
    pub style: SeriesStyle,
    pub layer_index: usize,
}

/// The layers the series come from, once each, in order.
pub fn legend_layers(doc: &Document, series: &[Series]) -> Vec<LegendLayer> {
    let mut out: Vec<LegendLayer> = Vec::new();
    for s in series.iter().filter(|s| s.style != SeriesStyle::Spread) {
        if out.iter().all(|l| l.layer != s.layer) {
            let name = doc.get(s.layer).map(|l| l.name.clone()).unwrap_or_default();
            out.push(LegendLayer { layer: s.layer, name, style: s.style, layer_index: s.layer_index });
        }
    }
    out
}

/// The line style and width a series is drawn with.
fn line_look(style: SeriesStyle, layer_index: usize) -> (f32, LineStyle) {
    match style {
        SeriesStyle::GroundTruth => (2.5, LineStyle::Solid),
        SeriesStyle::Reconstruction | SeriesStyle::Other => (1.5, DASHES[layer_index % DASHES.len()]),
        SeriesStyle::Spread => (1.0, LineStyle::dotted_dense()),
    }
}

/// A short sample of a line as the plot draws it.
fn line_sample(ui: &mut egui::Ui, colour: Color32, style: SeriesStyle, layer_index: usize) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(30.0, 12.0), egui::Sense::hover());
    let (width, look) = line_look(style, layer_index);
    let stroke = egui::Stroke::new(width, colour);
    let ends = [rect.left_center(), rect.right_center()];
    let painter = ui.painter();
    match look {
        LineStyle::Solid => {
            painter.line_segment(ends, stroke);
        }
        LineStyle::Dashed { length } => {
            painter.extend(egui::Shape::dashed_line(&ends, stroke, length, length / 2.0));
        }
        LineStyle::Dotted { spacing } => {
            painter.extend(egui::Shape::dotted_line(&ends, colour, spacing, width / 2.0 + 0.5));
        }
    }
}

/// The legend, grouped so it stays short with many layers: one entry per pin (its colour and
/// place) and one per layer (its line pattern), each layer with a box that shows or hides all
/// its lines. `hidden` holds the hidden layers.
pub fn legend(ui: &mut egui::Ui, doc: &Document, pins: &[Pin], roi: bool, series: &[Series], hidden: &mut std::collections::HashSet<u64>) {
    let layers = legend_layers(doc, series);
    if layers.is_empty() {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.weak("pins:");
        for pin in pins {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
            ui.painter().rect_filled(rect, 2.0, pin.colour);
            ui.label(format!("({}, {})", pin.col, pin.row));
        }
        if roi {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
            ui.painter().rect_filled(rect, 2.0, ROI_COLOUR);
            ui.label("region mean ± σ");
        }
    });
    ui.horizontal_wrapped(|ui| {
        ui.weak("layers:");
        for l in &layers {
            let mut shown = !hidden.contains(&l.layer);
            line_sample(ui, ui.visuals().text_color(), l.style, l.layer_index);
            if ui.checkbox(&mut shown, &l.name).on_hover_text("show or hide this layer's lines").changed() {
                if shown {
                    hidden.remove(&l.layer);
                } else {
                    hidden.insert(l.layer);
                }
            }
        }
    });
}

/// The spectra plot: one plot per y axis (reflectance beside radiance, see [`axes`]), each
/// labelled with its unit; the legend is [`legend`], above it.
pub fn plot(ui: &mut egui::Ui, series: &[Series], height: f32) {
    let groups = axes(series);
    if groups.len() <= 1 {
        let (label, members) = groups.into_iter().next().unwrap_or_else(|| ("value".to_string(), Vec::new()));
        axis_plot(ui, "spectra", &label, &members, height);
        return;
    }
    ui.columns(groups.len(), |cols| {
        for (i, (col, (label, members))) in cols.iter_mut().zip(groups).enumerate() {
            axis_plot(col, &format!("spectra-{i}"), &label, &members, height);
        }
    });
}

fn axis_plot(ui: &mut egui::Ui, id: &str, label: &str, series: &[&Series], height: f32) {
    let mut plot = Plot::new(id).height(height);
    if series.is_empty() {
        // Before the first pick, frame the axes as a spectrum will be (400–700 nm, values from
        // 0) rather than egui_plot's default −0.5…0.5.
        plot = plot.include_x(400.0).include_x(700.0).include_y(1.0);
    }
    plot
        .x_axis_label("wavelength (nm)")
        .y_axis_label(label)
        .include_y(0.0)
        .show(ui, |plot_ui| {
            for s in series {
                let points: PlotPoints = s.wavelengths.iter().zip(&s.values).map(|(&w, &v)| [w as f64, v as f64]).collect();
                let (width, style) = line_look(s.style, s.layer_index);
                plot_ui.line(Line::new(s.name.clone(), points).color(s.colour).width(width).style(style));
            }
        });
}

/// The series as CSV: a `wavelength_nm` column, then one column per series. Series on other
/// wavelength grids get their own block of rows below, each with its own header.
pub fn to_csv(series: &[Series]) -> String {
    let mut blocks: Vec<(Vec<f32>, Vec<&Series>)> = Vec::new();
    for s in series {
        match blocks.iter_mut().find(|(w, _)| *w == s.wavelengths) {
            Some((_, members)) => members.push(s),
            None => blocks.push((s.wavelengths.clone(), vec![s])),
        }
    }
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let mut out = String::new();
    for (wavelengths, members) in blocks {
        out.push_str("wavelength_nm");
        for s in &members {
            out.push(',');
            out.push_str(&quote(&s.name));
        }
        out.push('\n');
        for (i, w) in wavelengths.iter().enumerate() {
            out.push_str(&format!("{w}"));
            for s in &members {
                out.push_str(&format!(",{}", s.values[i]));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cube;
    use ndarray::Array3;
    use std::sync::Arc;

    fn doc_with_cubes() -> Document {
        let mut doc = Document::default();
        let gt = Cube::on_default_grid(Array3::from_shape_fn((31, 4, 4), |(b, r, c)| (b + r * 10 + c * 100) as f32)).unwrap();
        let rec = Cube::on_default_grid(Array3::from_elem((31, 4, 4), 1.0)).unwrap();
        doc.add("gt".into(), LayerData::Cube(Arc::new(gt)), Role::GroundTruth, None);
        doc.add("rec".into(), LayerData::Cube(Arc::new(rec)), Role::Reconstruction { method: "x".into(), seconds: 0.0, consistent: false, exposure_invariant: false }, None);
        doc
    }

    #[test]
    fn each_pin_gets_a_series_per_cube_in_its_colour() {
        let doc = doc_with_cubes();
        let pins = [Pin { row: 1, col: 2, colour: PIN_COLOURS[0] }, Pin { row: 3, col: 0, colour: PIN_COLOURS[1] }];
        let s = series(&doc, &pins, None, &Probes::default());
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].style, SeriesStyle::GroundTruth);
        assert_eq!(s[0].values[5], 5.0 + 10.0 + 200.0);
        assert_eq!(s[1].style, SeriesStyle::Reconstruction);
        assert_eq!(s[2].colour, PIN_COLOURS[1]);
        assert_eq!(s[2].values[0], 30.0);
        // one colour per pin, one dash pattern per layer: the two layers of a pin differ
        assert_eq!(s[0].colour, s[1].colour);
        assert_ne!(s[0].layer_index, s[1].layer_index);
        assert_eq!((s[1].layer_index, s[3].layer_index), (1, 1), "a layer keeps its pattern at every pin");
    }

    #[test]
    fn a_region_gives_mean_and_spread() {
        let doc = doc_with_cubes();
        let s = series(&doc, &[], Some((0, 0, 1, 0)), &Probes::default());
        // two rows of column 0: band 0 values 0 and 10 → mean 5, σ 5
        let mean = &s[0];
        assert_eq!(mean.values[0], 5.0);
        assert!((s[1].values[0] - 10.0).abs() < 1e-4, "{}", s[1].values[0]);
        assert_eq!(s[1].style, SeriesStyle::Spread);
    }

    #[test]
    fn a_layer_of_another_size_is_read_where_the_pin_is_in_the_scene() {
        let mut doc = Document::default();
        let rgb = crate::RgbImage::new(Array3::from_elem((3, 8, 8), 0.5)).unwrap();
        doc.add("rgb".into(), LayerData::Rgb(Arc::new(rgb)), Role::Input, None);
        // a 2 × 2 cube of the same scene: each of its pixels covers 4 × 4 of the RGB's
        let low = Cube::on_default_grid(Array3::from_shape_fn((31, 2, 2), |(_, r, c)| (10 * r + c) as f32)).unwrap();
        doc.add("low".into(), LayerData::Cube(Arc::new(low)), Role::Other, None);
        let pin = Pin { row: 5, col: 2, colour: PIN_COLOURS[0] };
        let s = series(&doc, &[pin], None, &Probes::default());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].values[0], 10.0, "RGB pixel (5, 2) lies in the cube's pixel (1, 0)");
        assert_eq!(crate::app::document::map_pixel((5, 2), (8, 8), (2, 2)), (1, 0));
        assert_eq!(crate::app::document::map_pixel((1, 0), (2, 2), (8, 8)), (6, 2));
        assert_eq!(crate::app::document::map_pixel((7, 7), (8, 8), (8, 8)), (7, 7));
    }

    #[test]
    fn reflectance_and_radiance_get_axes_of_their_own_labelled_with_their_units() {
        let line = |unit: Option<&str>| Series { name: "x".into(), wavelengths: vec![400.0], values: vec![0.5], colour: Color32::RED, style: SeriesStyle::Other, unit: unit.map(String::from), layer_index: 0, layer: 0 };
        let series = [line(Some("radiance (relative)")), line(Some("reflectance")), line(Some("radiance (relative)"))];
        let groups = axes(&series);
        assert_eq!(groups.iter().map(|(l, m)| (l.as_str(), m.len())).collect::<Vec<_>>(), [("radiance (relative)", 2), ("reflectance", 1)]);
        // values of several or unknown units share the non-reflectance axis, named as such
        let mixed = [line(Some("DN")), line(None)];
        let groups = axes(&mixed);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].0, "radiance or values as stored");
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_wavelength() {
        let doc = doc_with_cubes();
        let s = series(&doc, &[Pin { row: 0, col: 0, colour: PIN_COLOURS[0] }], None, &Probes::default());
        let csv = to_csv(&s);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "wavelength_nm,\"gt @ (0, 0)\",\"rec @ (0, 0)\"");
        assert_eq!(lines.len(), 32);
        assert_eq!(lines[1], "400,0,1");
    }
}
