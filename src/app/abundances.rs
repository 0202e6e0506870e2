//! Abundances: unmix a cube over a spectral library (FCLS), or synthesise them from the RGB
//! picture with an INSS model, as a job; then a grid of named abundance maps beside a map of
//! what the method could not explain (FCLS's residual, INSS's nonlinear share), a pixel's
//! abundances as bars, and for INSS its learned signature against the ASTM G173 sun.

use super::document::Document;
use crate::recon::card::ModelFiles;
use crate::spectral::library;
use crate::spectral::unmix::{self, Unmixing};
use crate::{Cube, Result, RgbImage};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints};
use std::sync::Arc;

/// INSS maps shown: the strongest by mean abundance, then one for all the others.
pub const INSS_MAPS: usize = 11;

/// One abundance result of a layer (a cube unmixed, or an RGB picture INSS read).
pub struct AbundanceResult {
    /// The layer the abundances are of.
    pub layer: u64,
    /// What made them, for the tab's header: "FCLS over munsell", "INSS (model NAME)".
    pub method: String,
    /// The maps (names, fractions summing to one per pixel) and the method's leftover map.
    pub maps: Arc<Unmixing>,
    /// What the leftover map is.
    pub leftover: &'static str,
    /// INSS's learned signature ReLU(t) and the ASTM G173 sun on the same bands, each divided
    /// by its maximum: (wavelengths, signature, sun).
    pub signature: Option<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    /// Each map's pixels as shown (RGBA), coloured in the job, not in a frame: the abundance
    /// maps through viridis on 0–1, then the leftover map through inferno on 0–its maximum.
    pub pixels: Vec<Vec<u8>>,
}

impl AbundanceResult {
    fn new(layer: u64, method: String, maps: Unmixing, leftover: &'static str, signature: Option<(Vec<f32>, Vec<f32>, Vec<f32>)>) -> Self {
        use crate::display::{fixed_range_rgba, Colormap, Range};
        let mut pixels: Vec<Vec<u8>> = maps.abundances.outer_iter().map(|m| fixed_range_rgba(m, Range { lo: 0.0, hi: 1.0 }, Colormap::Viridis)).collect();
        let max = crate::cube::value_stats(maps.residual.iter().copied()).max;
        pixels.push(fixed_range_rgba(maps.residual.view(), Range { lo: 0.0, hi: max }, Colormap::Inferno));
        AbundanceResult { layer, method, maps: Arc::new(maps), leftover, signature, pixels }
    }
}

pub struct AbundancePanel {
    pub library: String,
    pub endmembers: usize,
    /// Every result made, oldest first (one per layer: a layer's new result replaces its
    /// old one). The tab shows the active scene's latest.
    pub results: Vec<AbundanceResult>,
    /// INSS's maps summed by library class (vegetation, bare, ...) instead of the strongest
    /// spectra.
    pub inss_by_class: bool,
}

impl Default for AbundancePanel {
    fn default() -> Self {
        AbundancePanel { library: "munsell".into(), endmembers: 6, results: Vec::new(), inss_by_class: false }
    }
}

/// The job: unmix `cube` (layer `layer`) over the named library with at most `k` endmembers.
pub fn run(layer: u64, cube: &Cube, library_name: &str, k: usize) -> Result<AbundanceResult> {
    let lib = library::parse_library(library_name)?;
    let maps = unmix::unmix_with_library(cube, &lib, &[], k)?.0;
    Ok(AbundanceResult::new(layer, format!("FCLS over {library_name}"), maps, "residual RMSE", None))
}

/// The job: INSS model `files` reads the RGB picture `rgb` (layer `layer`): its
/// [`INSS_MAPS`] strongest abundance maps, one map of the rest, the nonlinear share
/// ‖S − L‖/‖S‖ as the leftover, and its signature against the sun.
pub fn run_inss(layer: u64, rgb: &RgbImage, files: &ModelFiles, by_class: bool, job: &crate::engine::JobContext) -> Result<AbundanceResult> {
    let inss = crate::recon::inss::InssReconstructor::load(files, &candle_core::Device::Cpu)?;
    let names = inss.library_names()?;
    let s = inss.synthesise(rgb, job)?;
    let (g, rows, cols) = s.abundances.dim();
    let signature = inss_signature(&inss)?;
    if by_class {
        // the spectra summed by their class: maps that read as land cover
        let (classes, maps) = s.by_class(&inss.library_categories()?)?;
        let names = classes.iter().map(|(name, n)| format!("{name} ({n} spectra)")).collect();
        let method = format!("INSS (model {}, its {g} spectra summed into {} classes)", inss.card().name, classes.len());
        return Ok(AbundanceResult::new(layer, method, Unmixing { names, abundances: maps, residual: s.nonlinearity }, "nonlinear share", signature));
    }
    let kept: Vec<usize> = s.strongest().into_iter().take(INSS_MAPS).map(|(i, _)| i).collect();
    let mut maps = ndarray::Array3::<f32>::zeros((kept.len() + 1, rows, cols));
    let mut map_names = Vec::with_capacity(kept.len() + 1);
    for (k, &i) in kept.iter().enumerate() {
        maps.index_axis_mut(ndarray::Axis(0), k).assign(&s.abundances.index_axis(ndarray::Axis(0), i));
        map_names.push(names[i].clone());
    }
    // the others together, so each pixel's maps still sum to one
    let shown = maps.slice(ndarray::s![..kept.len(), .., ..]).sum_axis(ndarray::Axis(0));
    maps.index_axis_mut(ndarray::Axis(0), kept.len()).assign(&shown.mapv(|v| (1.0 - v).max(0.0)));
    map_names.push(format!("the other {} spectra", g - kept.len()));
    let maps = Unmixing { names: map_names, abundances: maps, residual: s.nonlinearity };
    Ok(AbundanceResult::new(layer, format!("INSS (model {}, {} of its {g} spectra shown)", inss.card().name, INSS_MAPS.min(g)), maps, "nonlinear share", signature))
}

/// The model's signature ReLU(t) and the ASTM G173 sun on its bands, each divided by its
/// maximum: (wavelengths, signature, sun).
fn inss_signature(inss: &crate::recon::inss::InssReconstructor) -> Result<Option<(Vec<f32>, Vec<f32>, Vec<f32>)>> {
    let wavelengths = inss.card().wavelengths.clone();
    let scaled = |v: Vec<f32>| {
        let max = v.iter().cloned().fold(0.0, f32::max);
        v.into_iter().map(|x| if max > 0.0 { x / max } else { x }).collect::<Vec<f32>>()
    };
    let sun = library::illuminant("astm-g173-wide")?.resample(&wavelengths)?.values;
    Ok(Some((wavelengths, scaled(inss.signature()?), scaled(sun))))
}

impl AbundancePanel {
    /// Keep `result` as its layer's (in place of an earlier one of that layer).
    pub fn insert(&mut self, result: AbundanceResult) {
        self.results.retain(|r| r.layer != result.layer);
        self.results.push(result);
    }

    /// The latest result of a layer of the active scene (abundances belong to the scene of the
    /// layer they are of).
    pub fn of_active_scene(&self, doc: &Document) -> Option<&AbundanceResult> {
        self.results.iter().rev().find(|r| doc.get(r.layer).is_some_and(|l| doc.active_scene == Some(l.scene)))
    }

    pub fn settings_ui(&mut self, ui: &mut egui::Ui) {
        egui::ComboBox::from_label("library").selected_text(self.library.as_str()).show_ui(ui, |ui| {
            for name in library::library_names() {
                ui.selectable_value(&mut self.library, name.to_string(), name);
            }
        });
        ui.add(egui::Slider::new(&mut self.endmembers, 1..=12).text("endmembers at most"));
    }

    /// Bars of the abundances at `pixel`, each under its material's name.
    pub fn pixel_bars(ui: &mut egui::Ui, result: &Unmixing, leftover: &str, pixel: Option<(usize, usize)>) {
        let Some((row, col)) = pixel else { return };
        if row >= result.abundances.shape()[1] || col >= result.abundances.shape()[2] {
            return;
        }
        ui.label(format!("abundances at ({col}, {row}), {leftover} {:.4}", result.residual[[row, col]]));
        let bars = result.names.iter().enumerate().map(|(i, n)| Bar::new(i as f64, result.abundances[[i, row, col]] as f64).name(n)).collect();
        let names = result.names.clone();
        Plot::new("abundance-bars")
            .height(140.0)
            .include_y(0.0)
            .include_y(1.0)
            .x_axis_formatter(move |mark, _| bar_label(&names, mark.value))
            .show(ui, |plot_ui| plot_ui.bar_chart(BarChart::new("abundance", bars)));
    }
}

/// INSS's learned signature against the sun, both scaled to peak 1 (their shapes compare).
pub fn signature_plot(ui: &mut egui::Ui, (wavelengths, signature, sun): &(Vec<f32>, Vec<f32>, Vec<f32>)) {
    let line = |v: &[f32]| -> PlotPoints { wavelengths.iter().zip(v).map(|(&w, &y)| [w as f64, y as f64]).collect() };
    Plot::new("inss-signature")
        .height(140.0)
        .legend(Legend::default())
        .x_axis_label("wavelength (nm)")
        .y_axis_label("relative (peak 1)")
        .include_y(0.0)
        .show(ui, |plot_ui| {
            plot_ui.line(Line::new("learned signature ReLU(t)", line(signature)).width(2.0));
            plot_ui.line(Line::new("ASTM G173 sun", line(sun)).style(egui_plot::LineStyle::dashed_loose()));
        });
}

/// The label under bar `value` of a bar chart whose bars are `names` at 0, 1, 2, …: the name at
/// a whole number, nothing between bars.
pub fn bar_label(names: &[String], value: f64) -> String {
    let i = value.round();
    if (value - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    names.get(i as usize).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bars_are_labelled_by_name_at_whole_numbers_only() {
        let names = vec!["grass".to_string(), "soil".to_string()];
        assert_eq!(super::bar_label(&names, 1.0), "soil");
        assert_eq!(super::bar_label(&names, 0.5), "");
        assert_eq!(super::bar_label(&names, 2.0), "");
        assert_eq!(super::bar_label(&names, -1.0), "");
    }
}
