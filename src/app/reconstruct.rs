//! The Reconstruct panel: which methods, which camera is assumed, the shared options; each
//! method runs as its own engine job and its result becomes a layer with its run time.

use super::Command;
use crate::engine::JobContext;
use crate::recon::{self, registry, ReconOptions};
use crate::spectral::camera::CameraResponse;
use crate::{Result, RgbImage};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub struct ReconPanel {
    pub methods: Vec<registry::MethodEntry>,
    /// PyTorch checkpoints opened (dropped or given) in this session, listed after the rest.
    pub opened: Vec<registry::MethodEntry>,
    pub chosen: BTreeSet<String>,
    /// The camera the input is assumed to come from: a built-in one, curves loaded from CSV,
    /// or the curves fitted in the Camera tab.
    pub camera: Arc<CameraResponse>,
    pub options: ReconOptions,
    /// The device the methods run on ("cpu", "cuda", "metal"; see [`device_choice`]).
    pub device: String,
    /// Methods that cannot use `camera` and why, worked out when the camera or the method
    /// list changes (`refused_for` names the camera it was worked out for).
    pub refused: BTreeMap<String, String>,
    refused_for: Option<Arc<CameraResponse>>,
}

impl Default for ReconPanel {
    fn default() -> Self {
        let mut panel = ReconPanel {
            methods: Vec::new(),
            opened: Vec::new(),
            chosen: BTreeSet::new(),
            camera: Arc::new(default_camera()),
            options: ReconOptions::default(),
            device: "cpu".into(),
            refused: BTreeMap::new(),
            refused_for: None,
        };
        panel.refresh();
        panel.chosen.extend(["pca".to_string(), "basisnet".to_string()].into_iter().filter(|m| panel.methods.iter().any(|e| &e.name == m)));
        panel
    }
}

/// One method to run on the input.
#[derive(Clone, Debug)]
pub struct ReconRequest {
    /// The scene whose input is reconstructed (set when the request is queued: the active one).
    pub scene: Option<u64>,
    pub method: String,
    /// The model file the method was listed with (None for `spline`).
    pub model: Option<std::path::PathBuf>,
    pub camera: Arc<CameraResponse>,
    pub options: ReconOptions,
    /// "cpu", "cuda" or "metal".
    pub device: String,
}

/// The camera the shipped models were trained with.
pub fn default_camera() -> CameraResponse {
    CameraResponse::builtin("canon-eos-5d-mark-ii").expect("the built-in Canon curves are compiled into the binary")
}

impl ReconPanel {
    /// Re-read the model folders (after a training run, or when the user asks).
    pub fn refresh(&mut self) {
        self.methods = registry::list_methods();
        // A checkpoint opened by the user replaces a method of the same name.
        for entry in &self.opened {
            match self.methods.iter_mut().find(|m| m.name == entry.name) {
                Some(m) => *m = entry.clone(),
                None => self.methods.push(entry.clone()),
            }
        }
        let known: BTreeSet<String> = self.methods.iter().map(|m| m.name.clone()).collect();
        self.chosen.retain(|m| known.contains(m));
        self.refused_for = None;
    }

    /// List a PyTorch checkpoint as a method, chosen. Nothing is read here: the reconstruction
    /// job loads it and reports what does not fit.
    pub fn add_checkpoint(&mut self, path: &std::path::Path) {
        let entry = registry::checkpoint_entry(path);
        self.opened.retain(|e| e.name != entry.name);
        self.chosen.insert(entry.name.clone());
        self.opened.push(entry);
        self.refresh();
    }

    /// Work out again which methods refuse the assumed camera, if it changed.
    fn check_camera(&mut self) {
        if self.refused_for.as_ref().is_some_and(|c| Arc::ptr_eq(c, &self.camera)) {
            return;
        }
        self.refused = self.methods.iter().filter_map(|m| registry::camera_refusal(m, &self.camera).map(|why| (m.name.clone(), why))).collect();
        let refused = &self.refused;
        self.chosen.retain(|m| !refused.contains_key(m));
        self.refused_for = Some(self.camera.clone());
    }

    /// `cameras`: every camera the input may be assumed to come from.
    pub fn ui(&mut self, ui: &mut egui::Ui, has_input: bool, cameras: &[Arc<CameraResponse>], commands: &mut Vec<Command>) {
        self.check_camera();
        let Self { methods, opened: _, chosen, camera, options, device, refused, refused_for: _ } = self;
        ui.label("Methods");
        for m in methods.iter() {
            let mut on = chosen.contains(&m.name);
            let missing = m.kind == "learned" && m.model.is_none();
            let text = format!("{} ({})", m.name, m.kind);
            let refusal = refused.get(&m.name);
            let response = ui.add_enabled(!missing && refusal.is_none(), egui::Checkbox::new(&mut on, text)).on_hover_text(&m.description);
            if let Some(why) = refusal {
                ui.small(format!("(unavailable: {why})"));
            } else if missing {
                ui.small(format!("(no model yet: `spectral-studio train --method {}`)", m.name));
            }
            if response.changed() {
                if on {
                    chosen.insert(m.name.clone());
                } else {
                    chosen.remove(&m.name);
                }
            }
        }
        egui::ComboBox::from_label("camera assumed").selected_text(camera.name.as_str()).show_ui(ui, |ui| {
            for c in cameras {
                if ui.selectable_label(c.name == camera.name, &c.name).clicked() {
                    *camera = c.clone();
                }
            }
        });
        ui.checkbox(&mut options.consistent, "physically consistent")
            .on_hover_text("Correct the result so the camera re-projects it to the input RGB exactly (non-negative).");
        ui.checkbox(&mut options.exposure_invariant, "exposure invariant")
            .on_hover_text("Scale the input to the brightness the model was trained at, and the result back.");
        device_choice(ui, "recon-device", Some("device"), device);
        let ready = has_input && !chosen.is_empty();
        let button = ui.add_enabled(ready, egui::Button::new("Reconstruct"));
        if !has_input {
            ui.small("Open an RGB image first.");
        }
        if button.clicked() {
            for method in chosen.iter() {
                let model = methods.iter().find(|m| &m.name == method).and_then(|m| m.model.clone());
                commands.push(Command::Reconstruct(ReconRequest { scene: None, method: method.clone(), model, camera: camera.clone(), options: *options, device: device.clone() }));
            }
        }
    }
}

/// A combo box over the built-in cameras, selecting into `camera` (training renders its data
/// through a named camera, so only built-in ones are offered there).
pub fn camera_choice(ui: &mut egui::Ui, combo: egui::ComboBox, camera: &mut String) {
    combo.selected_text(camera.as_str()).show_ui(ui, |ui| {
        for name in CameraResponse::builtin_names() {
            ui.selectable_value(camera, name.to_string(), name);
        }
    });
}

/// A combo box over the devices models run on ([`recon::device::offered`]), then `label` if
/// given: those this build or machine cannot use are listed greyed, with the reason on hover,
/// and named in a short note after it.
pub fn device_choice(ui: &mut egui::Ui, id_salt: &str, label: Option<&str>, device: &mut String) {
    let offered = recon::device::offered();
    ui.horizontal(|ui| {
        egui::ComboBox::from_id_salt(id_salt)
            .selected_text(device.as_str())
            .show_ui(ui, |ui| {
                for d in offered {
                    let response = ui.add_enabled(d.unavailable.is_none(), egui::Button::selectable(device == d.name, d.name));
                    if let Some(why) = &d.unavailable {
                        response.on_disabled_hover_text(why);
                    } else if response.clicked() {
                        *device = d.name.to_string();
                    }
                }
            })
            .response
            .on_hover_text("device: where the models run (cpu, or cuda/metal in a build with that feature)");
        if let Some(label) = label {
            ui.label(label);
        }
        let missing: Vec<&str> = offered.iter().filter(|d| d.unavailable.is_some()).map(|d| d.name).collect();
        if !missing.is_empty() {
            let why = offered.iter().filter_map(|d| d.unavailable.clone()).collect::<Vec<_>>().join("\n");
            ui.small(format!("({} unavailable)", missing.join(", "))).on_hover_text(why);
        }
    });
}

/// The job: load the method (its model for learned ones) and run it on `rgb`.
pub fn run(request: &ReconRequest, rgb: &Arc<RgbImage>, job: &JobContext) -> Result<recon::Reconstruction> {
    job.report(0.0, &format!("loading {} on {}", request.method, request.device));
    let device = recon::device::parse_device(&request.device)?;
    let method = registry::load_method(&request.method, request.model.as_deref(), &request.camera, &device)?;
    recon::reconstruct(method.as_ref(), rgb, &request.camera, request.options, job)
}
