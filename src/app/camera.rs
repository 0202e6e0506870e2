//! Camera response: the shipped curves and any loaded from CSV, the curves fitted from the
//! input RGB and the ground-truth cube, the curves USR estimates from the input RGB alone
//! (no cube, no calibration), and a teaching view of how one pixel's spectrum
//! becomes R, G and B.

use crate::spectral::camera::CameraResponse;
use crate::spectral::fit::CameraFit;
use crate::{default_wavelengths, Cube, Result, RgbImage};
use egui::Color32;
use std::sync::Arc;
use egui_plot::{Bar, BarChart, Legend, Line, LineStyle, Plot, PlotPoints};

const CHANNEL_COLOURS: [Color32; 3] = [Color32::from_rgb(230, 60, 60), Color32::from_rgb(60, 190, 60), Color32::from_rgb(70, 110, 240)];
const CHANNELS: [&str; 3] = ["R", "G", "B"];

/// One set of three curves on the default grid, each channel summing to 1 (the project's
/// convention, so fitted and shipped curves compare on the same scale).
#[derive(Clone, Debug)]
pub struct CurveSet {
    pub name: String,
    pub wavelengths: Vec<f32>,
    pub curves: [Vec<f32>; 3],
    pub dashed: bool,
}

impl CurveSet {
    pub fn from_camera(camera: &CameraResponse) -> Result<CurveSet> {
        let grid = default_wavelengths();
        let m = camera.on_grid(&grid)?;
        Ok(CurveSet { name: camera.name.clone(), wavelengths: grid, curves: [0, 1, 2].map(|c| m.row(c).to_vec()), dashed: false })
    }

    pub fn from_fit(fit: &CameraFit) -> CurveSet {
        let normalise = |v: &Vec<f32>| {
            let s: f32 = v.iter().sum();
            v.iter().map(|x| if s > 0.0 { x / s } else { 0.0 }).collect::<Vec<f32>>()
        };
        CurveSet { name: format!("fitted (RGB re-projection RMSE {:.1e})", fit.rmse), wavelengths: fit.wavelengths.clone(), curves: [normalise(&fit.r), normalise(&fit.g), normalise(&fit.b)], dashed: true }
    }
}

pub struct CameraPanel {
    pub sets: Vec<CurveSet>,
    pub shown: Vec<bool>,
    pub fitted: Option<CurveSet>,
    pub teaching_camera: String,
    /// The cameras behind `sets` (built-in and loaded from CSV), for the Reconstruct panel.
    pub responses: Vec<Arc<CameraResponse>>,
    /// The fitted curves as a camera a reconstruction can assume.
    pub fitted_response: Option<Arc<CameraResponse>>,
    /// The curves USR estimated from the input picture alone, and that camera.
    pub estimated: Option<CurveSet>,
    pub estimated_response: Option<Arc<CameraResponse>>,
}

impl Default for CameraPanel {
    fn default() -> Self {
        let responses: Vec<Arc<CameraResponse>> = CameraResponse::builtin_names().iter().filter_map(|n| CameraResponse::builtin(n).ok()).map(Arc::new).collect();
        let sets: Vec<CurveSet> = responses.iter().filter_map(|c| CurveSet::from_camera(c).ok()).collect();
        let shown = vec![true; sets.len()];
        CameraPanel { sets, shown, fitted: None, teaching_camera: "canon-eos-5d-mark-ii".into(), responses, fitted_response: None, estimated: None, estimated_response: None }
    }
}

impl CameraPanel {
    pub fn add_loaded(&mut self, camera: CameraResponse) -> Result<()> {
        self.sets.push(CurveSet::from_camera(&camera)?);
        self.shown.push(true);
        self.responses.push(Arc::new(camera));
        Ok(())
    }

    /// Every camera a reconstruction may assume: built-in, loaded, the fitted one and the one
    /// estimated from the picture alone.
    pub fn assumable(&self) -> Vec<Arc<CameraResponse>> {
        self.responses.iter().chain(&self.fitted_response).chain(&self.estimated_response).cloned().collect()
    }

    /// Keep the camera USR estimated from the picture named `input`.
    pub fn set_estimated(&mut self, est: &crate::recon::usr::EstimatedCamera, input: &str) {
        let camera = est.response(&format!("estimated by usr from {input}"));
        self.estimated = Some(CurveSet {
            name: format!("estimated from {input} alone (usr)"),
            wavelengths: est.wavelengths.clone(),
            curves: [0, 1, 2].map(|c| est.curves.row(c).to_vec()),
            dashed: true,
        });
        self.estimated_response = Some(Arc::new(camera));
    }

    /// The curves plot: every shown set, fitted and estimated curves dashed.
    pub fn curves_plot(&mut self, ui: &mut egui::Ui, height: f32) {
        ui.horizontal_wrapped(|ui| {
            for (set, on) in self.sets.iter().zip(self.shown.iter_mut()) {
                ui.checkbox(on, &set.name);
            }
        });
        let sets: Vec<&CurveSet> = self.sets.iter().zip(&self.shown).filter(|(_, on)| **on).map(|(s, _)| s).chain(self.fitted.as_ref()).chain(self.estimated.as_ref()).collect();
        Plot::new("camera-curves").height(height).legend(Legend::default()).x_axis_label("wavelength (nm)").y_axis_label("relative response (each channel sums to 1)").show(ui, |plot_ui| {
            for (k, set) in sets.iter().enumerate() {
                for c in 0..3 {
                    let points: PlotPoints = set.wavelengths.iter().zip(&set.curves[c]).map(|(&w, &v)| [w as f64, v as f64]).collect();
                    let style = if set.dashed { LineStyle::dashed_dense() } else if k == 0 { LineStyle::Solid } else { LineStyle::dotted_dense() };
                    plot_ui.line(Line::new(format!("{} {}", set.name, CHANNELS[c]), points).color(CHANNEL_COLOURS[c]).style(style).width(if set.dashed { 2.5 } else { 1.5 }));
                }
            }
        });
    }

    /// The teaching view: `spectrum` × each channel's curve, and the three sums.
    pub fn teaching_view(&mut self, ui: &mut egui::Ui, spectrum: Option<(&str, &[f32], &[f32])>, height: f32) {
        egui::ComboBox::from_label("camera for the teaching view").selected_text(self.teaching_camera.as_str()).show_ui(ui, |ui| {
            for set in &self.sets {
                ui.selectable_value(&mut self.teaching_camera, set.name.clone(), &set.name);
            }
        });
        let Some((label, wavelengths, values)) = spectrum else {
            ui.label("Click a pixel of a cube to see how the camera turns its spectrum into R, G, B.");
            return;
        };
        let Some(set) = self.sets.iter().find(|s| s.name == self.teaching_camera) else { return };
        let Ok(on_grid) = crate::cube::interpolate(wavelengths, values, &set.wavelengths) else {
            ui.label("This spectrum does not cover the camera's wavelengths.");
            return;
        };
        let rgb = [0, 1, 2].map(|c| set.curves[c].iter().zip(&on_grid).map(|(a, b)| a * b).sum::<f32>());
        ui.label(format!("{label}: R = Σ c_R(λ)·y(λ) = {:.4}, G = {:.4}, B = {:.4}", rgb[0], rgb[1], rgb[2]));
        ui.columns(2, |cols| {
            Plot::new("teaching-products").height(height).legend(Legend::default()).x_axis_label("wavelength (nm)").show(&mut cols[0], |plot_ui| {
                let spectrum: PlotPoints = set.wavelengths.iter().zip(&on_grid).map(|(&w, &v)| [w as f64, v as f64]).collect();
                plot_ui.line(Line::new("spectrum y(λ)", spectrum).color(Color32::GRAY).width(2.0));
                for c in 0..3 {
                    let product: PlotPoints = set.wavelengths.iter().zip(set.curves[c].iter().zip(&on_grid)).map(|(&w, (a, b))| [w as f64, (a * b * 10.0) as f64]).collect();
                    plot_ui.line(Line::new(format!("c_{}(λ)·y(λ) ×10", CHANNELS[c]), product).color(CHANNEL_COLOURS[c]));
                }
            });
            let channels: Vec<String> = CHANNELS.iter().map(|c| c.to_string()).collect();
            Plot::new("teaching-rgb").height(height).x_axis_formatter(move |mark, _| super::abundances::bar_label(&channels, mark.value)).show(&mut cols[1], |plot_ui| {
                let bars = (0..3).map(|c| Bar::new(c as f64, rgb[c] as f64).name(CHANNELS[c]).fill(CHANNEL_COLOURS[c])).collect();
                plot_ui.bar_chart(BarChart::new("R, G, B", bars));
            });
        });
    }
}

/// The job behind "Fit from input + ground truth".
pub fn fit(cube: &Cube, rgb: &RgbImage) -> Result<CameraFit> {
    crate::spectral::fit::fit_camera(cube, rgb, None)
}
