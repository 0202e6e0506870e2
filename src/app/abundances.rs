//! Abundances: unmix a cube over a spectral library (FCLS) as a job, then a grid of named
//! abundance maps, the residual map, and a pixel's abundances as bars.

use super::document::Document;
use crate::spectral::library;
use crate::spectral::unmix::{self, Unmixing};
use crate::{Cube, Result};
use egui_plot::{Bar, BarChart, Plot};

pub struct AbundancePanel {
    pub library: String,
    pub endmembers: usize,
    /// Every unmixing made, with the layer it unmixed, oldest first (one per layer: unmixing a
    /// layer again replaces its result). The tab shows the active scene's latest.
    pub results: Vec<(u64, std::sync::Arc<Unmixing>)>,
}

impl Default for AbundancePanel {
    fn default() -> Self {
        AbundancePanel { library: "munsell".into(), endmembers: 6, results: Vec::new() }
    }
}

/// The job: unmix `cube` over the named library with at most `k` endmembers.
pub fn run(cube: &Cube, library_name: &str, k: usize) -> Result<Unmixing> {
    let lib = library::parse_library(library_name)?;
    Ok(unmix::unmix_with_library(cube, &lib, &[], k)?.0)
}

impl AbundancePanel {
    /// Keep `result` as layer `layer`'s unmixing (in place of an earlier one of that layer).
    pub fn insert(&mut self, layer: u64, result: Unmixing) {
        self.results.retain(|(l, _)| *l != layer);
        self.results.push((layer, std::sync::Arc::new(result)));
    }

    /// The latest unmixing of a layer of the active scene (an unmixing belongs to the scene of
    /// the cube it unmixed).
    pub fn of_active_scene(&self, doc: &Document) -> Option<&(u64, std::sync::Arc<Unmixing>)> {
        self.results.iter().rev().find(|(layer, _)| doc.get(*layer).is_some_and(|l| doc.active_scene == Some(l.scene)))
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
    pub fn pixel_bars(ui: &mut egui::Ui, result: &Unmixing, pixel: Option<(usize, usize)>) {
        let Some((row, col)) = pixel else { return };
        if row >= result.abundances.shape()[1] || col >= result.abundances.shape()[2] {
            return;
        }
        ui.label(format!("abundances at ({col}, {row}), residual RMSE {:.4}", result.residual[[row, col]]));
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
