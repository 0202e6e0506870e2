//! Setting a cube's wavelengths: a cube that came without them (a `.npy`, an ENVI header
//! without `wavelength`) is labelled in band numbers until the user gives them, evenly spaced
//! over a range, from a text file, or as a known sensor's band centres (the shipped earthlib
//! sensor table). The window only sends [`Command::SetWavelengths`]; the document changes when
//! the relabelled layer comes back from its job.

use super::Command;
use crate::spectral::library::{sensors, Sensor};

/// The open "Wavelengths" window: which layer, and what the user has typed so far.
#[derive(Debug, Clone)]
pub struct WavelengthEditor {
    pub layer: u64,
    pub layer_name: String,
    pub bands: usize,
    pub first: f32,
    pub last: f32,
    /// A text file with one wavelength per band.
    pub file: String,
    /// The last problem with what was typed (a file that cannot be used).
    pub problem: Option<String>,
}

impl WavelengthEditor {
    /// The editor for a layer of `bands` bands whose wavelengths are now `current`.
    pub fn new(layer: u64, layer_name: String, current: &[f32]) -> WavelengthEditor {
        let bands = current.len();
        // Band numbers are no range to start from: offer the visible range of the RGB datasets.
        let (first, last) = if crate::cube::are_band_numbers(current) || bands < 2 { (400.0, 700.0) } else { (current[0], current[bands - 1]) };
        WavelengthEditor { layer, layer_name, bands, first, last, file: String::new(), problem: None }
    }

    /// The shipped sensors with as many bands as this cube.
    pub fn matching_sensors(&self) -> Vec<&'static Sensor> {
        sensors().iter().filter(|s| s.centres.len() == self.bands).collect()
    }

    /// The window; returns false when it is closed.
    pub fn ui(&mut self, ctx: &egui::Context, commands: &mut Vec<Command>) -> bool {
        let mut open = true;
        let mut done = false;
        // Beside the side panel, not over the layer list it was opened from.
        egui::Window::new("Wavelengths").open(&mut open).collapsible(false).resizable(false).default_pos([440.0, 90.0]).show(ctx, |ui| {
            ui.label(format!("{}: {} bands", self.layer_name, self.bands));
            ui.separator();
            ui.strong("Evenly spaced");
            ui.horizontal(|ui| {
                ui.label("first");
                ui.add(egui::DragValue::new(&mut self.first).range(1.0..=100_000.0).suffix(" nm"));
                ui.label("last");
                ui.add(egui::DragValue::new(&mut self.last).range(1.0..=100_000.0).suffix(" nm"));
            });
            match crate::cube::evenly_spaced(self.first, self.last, self.bands) {
                Ok(w) => {
                    let step = if w.len() > 1 { w[1] - w[0] } else { 0.0 };
                    ui.weak(format!("{} bands, {step:.2} nm apart", w.len()));
                    if ui.button("Apply range").clicked() {
                        commands.push(Command::SetWavelengths(self.layer, w, format!("{:.1}-{:.1} nm evenly spaced", self.first, self.last)));
                        done = true;
                    }
                }
                Err(e) => {
                    ui.colored_label(egui::Color32::from_rgb(255, 150, 90), e.to_string());
                }
            }
            ui.separator();
            ui.strong("From a text file");
            ui.weak("one wavelength per band (nm, or µm), or a table whose first column is the wavelength");
            ui.horizontal(|ui| {
                ui.add(egui::TextEdit::singleline(&mut self.file).hint_text("path of the wavelength file").desired_width(260.0));
                if ui.button("Apply file").clicked() {
                    let path = std::path::PathBuf::from(self.file.trim());
                    match crate::cube::read_wavelength_list(&path, self.bands) {
                        Ok(w) => {
                            commands.push(Command::SetWavelengths(self.layer, w, format!("from {}", path.display())));
                            done = true;
                        }
                        Err(e) => self.problem = Some(e.to_string()),
                    }
                }
            });
            ui.separator();
            ui.strong("A sensor's band centres");
            let matching = self.matching_sensors();
            if matching.is_empty() {
                let counts: Vec<String> = sensors().iter().map(|s| format!("{} ({})", s.name, s.centres.len())).collect();
                ui.weak(format!("no shipped sensor has {} bands; shipped: {}", self.bands, counts.join(", ")));
            }
            for sensor in matching {
                let (a, b) = (sensor.centres[0], sensor.centres[sensor.centres.len() - 1]);
                if ui.button(format!("{} ({a:.0}-{b:.0} nm)", sensor.name)).on_hover_text("band centres from the earthlib package's sensor table").clicked() {
                    commands.push(Command::SetWavelengths(self.layer, sensor.centres.clone(), format!("{}'s band centres", sensor.name)));
                    done = true;
                }
            }
            if let Some(p) = &self.problem {
                ui.separator();
                ui.colored_label(egui::Color32::from_rgb(255, 150, 90), p);
            }
        });
        open && !done
    }
}
