//! The spectra plot: the spectrum of every pinned pixel in every cube layer (ground truth
//! solid, reconstructions dashed, one colour per pixel), a region's mean ± standard deviation,
//! and the same series as CSV.

use super::document::{Document, LayerData, Role};
use super::probes::Probes;
use super::view::Pin;
use crate::Rect as CubeRect;
use egui::Color32;
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints};

/// One line of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub wavelengths: Vec<f32>,
    pub values: Vec<f32>,
    pub colour: Color32,
    pub style: SeriesStyle,
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
        for layer in doc.active_layers() {
            let (rows, cols) = layer.data.rows_cols();
            if pin.row >= rows || pin.col >= cols {
                continue;
            }
            let (wavelengths, values) = match &layer.data {
                LayerData::Cube(cube) => (cube.wavelengths.clone(), cube.spectrum(pin.row, pin.col)),
                LayerData::Large(large) => match probes.spectrum(layer.id, pin.row, pin.col) {
                    Some(v) => (large.source.wavelengths().to_vec(), v.to_vec()),
                    None => continue,
                },
                LayerData::Rgb(_) => continue,
            };
            let style = match layer.role {
                Role::GroundTruth => SeriesStyle::GroundTruth,
                Role::Reconstruction { .. } => SeriesStyle::Reconstruction,
                _ => SeriesStyle::Other,
            };
            out.push(Series { name: format!("{} @ ({}, {})", layer.name, pin.col, pin.row), wavelengths, values, colour: pin.colour, style });
        }
    }
    if let Some((r0, c0, r1, c1)) = roi {
        for layer in doc.active_layers() {
            let rect = CubeRect { row: r0, col: c0, height: r1 + 1 - r0, width: c1 + 1 - c0 };
            let (w, (mean, std)) = match &layer.data {
                LayerData::Cube(cube) => match cube.roi_stats(rect) {
                    Ok(ms) => (cube.wavelengths.clone(), ms),
                    Err(_) => continue,
                },
                LayerData::Large(large) => match probes.region(layer.id, (r0, c0, r1, c1)) {
                    Some((m, s)) => (large.source.wavelengths().to_vec(), (m.to_vec(), s.to_vec())),
                    None => continue,
                },
                LayerData::Rgb(_) => continue,
            };
            let name = format!("{} ROI {}×{}", layer.name, rect.width, rect.height);
            let upper = mean.iter().zip(&std).map(|(m, s)| m + s).collect();
            let lower = mean.iter().zip(&std).map(|(m, s)| m - s).collect();
            out.push(Series { name: format!("{name} mean"), wavelengths: w.clone(), values: mean, colour: ROI_COLOUR, style: SeriesStyle::Other });
            out.push(Series { name: format!("{name} +1σ"), wavelengths: w.clone(), values: upper, colour: ROI_COLOUR, style: SeriesStyle::Spread });
            out.push(Series { name: format!("{name} −1σ"), wavelengths: w, values: lower, colour: ROI_COLOUR, style: SeriesStyle::Spread });
        }
    }
    out
}

pub fn plot(ui: &mut egui::Ui, series: &[Series], height: f32) {
    let mut plot = Plot::new("spectra").height(height);
    if series.is_empty() {
        // Before the first pick, frame the axes as a spectrum will be (400–700 nm, values from
        // 0) rather than egui_plot's default −0.5…0.5.
        plot = plot.include_x(400.0).include_x(700.0).include_y(1.0);
    }
    plot
        .legend(Legend::default())
        .x_axis_label("wavelength (nm)")
        .y_axis_label("value")
        .include_y(0.0)
        .show(ui, |plot_ui| {
            for s in series {
                let points: PlotPoints = s.wavelengths.iter().zip(&s.values).map(|(&w, &v)| [w as f64, v as f64]).collect();
                let (width, style) = match s.style {
                    SeriesStyle::GroundTruth => (2.5, LineStyle::Solid),
                    SeriesStyle::Reconstruction => (1.5, LineStyle::dashed_dense()),
                    SeriesStyle::Other => (1.5, LineStyle::Solid),
                    SeriesStyle::Spread => (1.0, LineStyle::dotted_dense()),
                };
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
