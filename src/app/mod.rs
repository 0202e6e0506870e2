//! The studio: an egui application over the library. State lives in [`Studio`]; views read it
//! and push [`Command`]s, which are applied at the end of the frame; heavy work (opening files,
//! reconstruction, scoring, unmixing, fitting, training, file dialogs) runs as engine jobs that
//! are polled once a frame, so the UI thread never waits.

pub mod abundances;
pub mod camera;
pub mod compare;
pub mod detail;
pub mod document;
mod frame_log;
pub mod fusion;
mod jobs;
pub use jobs::metrics_csv;
pub mod probes;
mod tabs;
pub mod reconstruct;
pub mod spectra;
pub mod training;
pub mod view;
pub mod wavelengths;

use crate::engine::{Job, Waker};
use document::{Document, LayerData, LoadedFile, Role};
use egui::Color32;
use jobs::{BackgroundJob, JobKind};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use view::{DisplayMode, DisplaySettings, Pin, TextureCache, ViewTransform};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Explore,
    Compare,
    Abundances,
    Camera,
    Fusion,
    Training,
}

impl Tab {
    const ALL: [Tab; 6] = [Tab::Explore, Tab::Compare, Tab::Abundances, Tab::Camera, Tab::Fusion, Tab::Training];

    fn title(self) -> &'static str {
        match self {
            Tab::Explore => "Explore",
            Tab::Compare => "Compare",
            Tab::Abundances => "Abundances",
            Tab::Camera => "Camera response",
            Tab::Fusion => "Fusion",
            Tab::Training => "Training",
        }
    }
}

/// Every change a view asks for; applied after the frame's UI code has run.
pub enum Command {
    OpenFiles(Vec<PathBuf>),
    OpenDemo,
    OpenDialog,
    Reconstruct(reconstruct::ReconRequest),
    CancelJob(u64),
    Select(u64),
    SetGroundTruth(u64),
    SetInput(u64),
    RemoveLayer(u64),
    Pick { row: usize, col: usize, add: bool },
    ClearPins,
    SetRoi(Option<(usize, usize, usize, usize)>),
    ExportCube(u64),
    ExportView(u64),
    ExportSpectra,
    ExportMetrics,
    Unmix(u64),
    /// Abundances of RGB layer `.0` from the INSS model `.1`.
    InssAbundances(u64, PathBuf),
    FitCamera,
    /// Estimate the input's camera from the picture alone (USR's estimator).
    EstimateCamera,
    /// Read RGB layer `.0`'s file again, as sRGB-encoded (`.1` true) or linear.
    Redecode(u64, bool),
    /// Open the Wavelengths window for cube layer `.0`.
    EditWavelengths(u64),
    /// Give cube layer `.0` these wavelengths (nm, one per band); `.2` says where they came from.
    SetWavelengths(u64, Vec<f32>, String),
    LoadCameraCsv,
    StartTraining { resume: bool },
    StopTraining,
    Fusion(fusion::FusionCommand),
}

/// How the studio starts.
#[derive(Debug, Clone, Default)]
pub struct StudioOptions {
    /// Files from the command line; the demo opens when there are none.
    pub files: Vec<PathBuf>,
    /// Where finished training runs install their model (the user model folder by default).
    pub models_dir: Option<PathBuf>,
    /// Where the recent-files list is kept; None keeps it in memory only (tests).
    pub recent_file: Option<PathBuf>,
    /// Cubes whose f32 data exceed this many bytes open read-on-demand; None is
    /// [`crate::io::source::DEFAULT_MEMORY_CAP`].
    pub memory_cap: Option<u64>,
    /// Whether native file dialogs work here; None asks the system ([`jobs::file_dialogs_available`]).
    pub file_dialogs: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub text: String,
    pub is_error: bool,
}

pub struct Studio {
    pub doc: Document,
    pub tab: Tab,
    pub active: Option<u64>,
    pub display: DisplaySettings,
    pub transform: ViewTransform,
    pub pins: Vec<Pin>,
    pub roi: Option<(usize, usize, usize, usize)>,
    /// The pixel under the pointer in the last frame, for the status bar's readout.
    pub hovered: Option<(usize, usize)>,
    /// Set by whichever view the pointer is over during this frame; becomes `hovered` at the
    /// frame's end, so the readout clears when the pointer leaves every view.
    hovered_this_frame: Option<(usize, usize)>,
    pub messages: Vec<Message>,
    pub recon: reconstruct::ReconPanel,
    pub compare: compare::ComparePanel,
    pub scores: HashMap<u64, compare::Scores>,
    pub camera: camera::CameraPanel,
    pub abundances: abundances::AbundancePanel,
    pub training: training::TrainingPanel,
    pub fusion: fusion::FusionPanel,
    pub recent: Vec<PathBuf>,
    pub open_path: String,
    /// UI time of recent frames, for the status bar and the frame-time report.
    pub frame_times: Vec<Duration>,
    jobs: Vec<BackgroundJob>,
    recon_queue: std::collections::VecDeque<reconstruct::ReconRequest>,
    commands: Vec<Command>,
    pub textures: TextureCache,
    /// Full-resolution tiles of large cubes under a magnifying view.
    pub details: detail::DetailCache,
    /// Spectra and region statistics read from large cubes' files.
    pub probes: probes::Probes,
    /// The abundance maps' textures, by unmixed layer and map.
    abundance_textures: HashMap<(u64, usize), egui::TextureHandle>,
    waker: Option<Waker>,
    options: StudioOptions,
    next_job_id: u64,
    last_band_step: Instant,
    /// A save waiting for a typed path (there is no file dialog on this system).
    pub pending_save: Option<jobs::PendingSave>,
    /// The pins, region and zoom of the scenes not shown now.
    scene_views: HashMap<u64, (Vec<Pin>, Option<(usize, usize, usize, usize)>, ViewTransform)>,
    file_dialogs: bool,
    /// The Wavelengths window, while open.
    pub wavelength_editor: Option<wavelengths::WavelengthEditor>,
    /// Layers whose lines the spectra legend hides.
    pub hidden_layers: std::collections::HashSet<u64>,
}

impl Studio {
    pub fn new(options: StudioOptions) -> Studio {
        let recent = options.recent_file.as_deref().map(load_recent).unwrap_or_default();
        let file_dialogs = options.file_dialogs.unwrap_or_else(jobs::file_dialogs_available);
        let first = if options.files.is_empty() { Command::OpenDemo } else { Command::OpenFiles(options.files.clone()) };
        Studio {
            doc: Document::default(),
            tab: Tab::Explore,
            active: None,
            display: DisplaySettings::default(),
            transform: ViewTransform::default(),
            pins: Vec::new(),
            roi: None,
            hovered: None,
            hovered_this_frame: None,
            messages: Vec::new(),
            recon: reconstruct::ReconPanel::default(),
            compare: compare::ComparePanel::default(),
            scores: HashMap::new(),
            camera: camera::CameraPanel::default(),
            abundances: abundances::AbundancePanel::default(),
            training: training::TrainingPanel::default(),
            fusion: fusion::FusionPanel::default(),
            recent,
            open_path: String::new(),
            frame_times: Vec::new(),
            jobs: Vec::new(),
            recon_queue: Default::default(),
            commands: vec![first],
            textures: TextureCache::default(),
            details: detail::DetailCache::default(),
            probes: probes::Probes::default(),
            abundance_textures: HashMap::new(),
            waker: None,
            options,
            next_job_id: 0,
            last_band_step: Instant::now(),
            pending_save: None,
            scene_views: HashMap::new(),
            file_dialogs,
            wavelength_editor: None,
            hidden_layers: Default::default(),
        }
    }

    /// True while any job (loading, reconstruction, scoring, training, …) is running or queued.
    pub fn busy(&self) -> bool {
        !self.jobs.is_empty() || self.textures.is_building() || self.details.is_building() || self.probes.is_reading() || !self.recon_queue.is_empty() || !self.commands.is_empty() || self.training.runs.iter().any(|r| r.is_running()) || self.fusion_running()
    }

    fn fusion_running(&self) -> bool {
        self.fusion.run.as_ref().is_some_and(|r| r.is_running())
    }

    /// Names of the jobs running now.
    pub fn job_names(&self) -> Vec<String> {
        self.jobs.iter().map(|j| j.name().to_string()).collect()
    }

    /// The series the spectra plot shows now (what a test checks the plot against, and what
    /// the CSV export writes): the active scene's, less the layers hidden in the legend.
    pub fn spectra_series(&self) -> Vec<spectra::Series> {
        self.all_spectra_series().into_iter().filter(|s| !self.hidden_layers.contains(&s.layer)).collect()
    }

    /// Every series of the active scene's pins and region, hidden layers' too (the legend's).
    fn all_spectra_series(&self) -> Vec<spectra::Series> {
        spectra::series(&self.doc, &self.pins, self.roi, &self.probes)
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.messages.push(Message { text: text.into(), is_error: true });
    }

    fn info(&mut self, text: impl Into<String>) {
        self.messages.push(Message { text: text.into(), is_error: false });
    }

    /// One frame of the whole studio, drawn into `ui`.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let started = Instant::now();
        if self.waker.is_none() {
            let ctx = ui.ctx().clone();
            self.waker = Some(Arc::new(move || ctx.request_repaint()));
        }
        self.poll_jobs();
        self.take_dropped_files(ui.ctx());
        self.advance_band_player(ui.ctx());

        let tab_before = self.tab;
        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui));
        if self.tab != tab_before {
            // Views differ in size between tabs: start each tab fitted.
            self.transform.fit_pending = true;
        }
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        egui::Panel::left("side").resizable(true).default_size(270.0).show(ui, |ui| {
            // Jobs (progress, Cancel) stay in sight however long the layer list grows.
            egui::Panel::bottom("jobs").show(ui, |ui| self.jobs_ui(ui));
            egui::ScrollArea::vertical().show(ui, |ui| self.side_panel(ui));
        });
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Explore => self.explore_tab(ui),
            Tab::Compare => self.compare_tab(ui),
            Tab::Abundances => self.abundances_tab(ui),
            Tab::Camera => self.camera_tab(ui),
            Tab::Fusion => self.fusion_tab(ui),
            Tab::Training => self.training_tab(ui),
        });

        self.pending_save_window(ui.ctx());
        if let Some(editor) = &mut self.wavelength_editor {
            if !editor.ui(ui.ctx(), &mut self.commands) {
                self.wavelength_editor = None;
            }
        }
        self.textures.end_frame();
        self.details.end_frame();
        self.hovered = self.hovered_this_frame.take();
        let commands = std::mem::take(&mut self.commands);
        for c in commands {
            self.apply(c);
        }
        self.start_queued_reconstruction();
        self.start_scoring();
        self.start_probes();
        if self.training.runs.iter().any(|r| r.is_running()) || self.fusion_running() {
            // Training and fusion steps arrive on their own channels: look a few times a second.
            ui.ctx().request_repaint_after(Duration::from_millis(200));
        }
        self.frame_times.push(started.elapsed());
        if self.frame_times.len() > 240 {
            self.frame_times.drain(..120);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Panels

    fn menu_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.strong("Spectral Studio");
            ui.separator();
            if ui.button("Open…").on_hover_text("RGB images (PNG, JPEG, TIFF, .npy) and cubes (.npy, ENVI .hdr, .mat, CAVE folders)").clicked() {
                self.commands.push(Command::OpenDialog);
            }
            let path_field = ui.add(egui::TextEdit::singleline(&mut self.open_path).hint_text("or type a path").desired_width(200.0));
            let enter = path_field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if (ui.button("Open path").clicked() || enter) && !self.open_path.trim().is_empty() {
                self.commands.push(Command::OpenFiles(vec![PathBuf::from(self.open_path.trim())]));
            }
            ui.menu_button("Recent", |ui| {
                if self.recent.is_empty() {
                    ui.label("nothing opened yet");
                }
                for p in self.recent.clone() {
                    if ui.button(p.display().to_string()).clicked() {
                        self.commands.push(Command::OpenFiles(vec![p]));
                        ui.close();
                    }
                }
            });
            if ui.button("Open demo").clicked() {
                self.commands.push(Command::OpenDemo);
            }
            ui.separator();
            for tab in Tab::ALL {
                ui.selectable_value(&mut self.tab, tab, tab.title());
            }
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if let Some(m) = self.messages.last().cloned() {
                let colour = if m.is_error { Color32::from_rgb(255, 110, 110) } else { ui.visuals().text_color() };
                ui.colored_label(colour, &m.text);
                if ui.small_button("dismiss").clicked() {
                    self.messages.pop();
                }
                ui.separator();
            }
            if let Some(text) = self.hover_readout() {
                ui.monospace(text);
                ui.separator();
            }
            if let Some((median, max)) = self.frame_time_summary() {
                ui.small(format!("frame {:.1} ms (max {:.1})", median.as_secs_f64() * 1e3, max.as_secs_f64() * 1e3));
            }
        });
    }

    /// Median and maximum UI time over the recent frames.
    pub fn frame_time_summary(&self) -> Option<(Duration, Duration)> {
        if self.frame_times.is_empty() {
            return None;
        }
        let mut t = self.frame_times.clone();
        t.sort();
        Some((t[t.len() / 2], t[t.len() - 1]))
    }

    /// What the status bar reads out for the pixel under the pointer.
    pub fn hover_readout(&self) -> Option<String> {
        let (row, col) = self.hovered?;
        // Abundance maps read out each material's abundance at the pixel, largest first.
        if self.tab == Tab::Abundances {
            if let Some(found) = self.abundances.of_active_scene(&self.doc) {
                let result = &found.maps;
                let (_, rows, cols) = result.abundances.dim();
                if row < rows && col < cols {
                    let mut parts: Vec<(f32, &str)> = result.names.iter().enumerate().map(|(i, n)| (result.abundances[[i, row, col]], n.as_str())).collect();
                    parts.sort_by(|a, b| b.0.total_cmp(&a.0));
                    let list: Vec<String> = parts.iter().map(|(a, n)| format!("{n} {a:.3}")).collect();
                    return Some(format!("x {col}  y {row}  abundances: {}; {} {:.4}", list.join(", "), found.leftover, result.residual[[row, col]]));
                }
            }
        }
        // Error maps read out the error at the pixel, for every reconstruction of the scene.
        if let (DisplayMode::Error(metric), Some((_, gt))) = (self.display.mode, self.doc.ground_truth()) {
            let errors: Vec<String> = self
                .doc
                .reconstructions()
                .filter_map(|(l, c)| {
                    let (r, c2) = self.doc.to_layer(l, (row, col));
                    view::error_at(metric, c, gt, r, c2).map(|e| format!("{} {e:.4}", l.name))
                })
                .collect();
            if !errors.is_empty() {
                return Some(format!("x {col}  y {row}  {}: {}", metric.name(), errors.join(", ")));
            }
        }
        let layer = self.doc.get(self.active?)?;
        // the pointer's pixel is in the scene's frame: read the layer at the same place
        let (row, col) = self.doc.to_layer(layer, (row, col));
        Some(match &layer.data {
            LayerData::Rgb(rgb) if row < rgb.rows() && col < rgb.cols() => {
                format!("x {col}  y {row}  R {:.4} G {:.4} B {:.4}", rgb.data[[0, row, col]], rgb.data[[1, row, col]], rgb.data[[2, row, col]])
            }
            LayerData::Cube(cube) if row < cube.rows() && col < cube.cols() => {
                let b = self.display.band.min(cube.bands() - 1);
                format!("x {col}  y {row}  {}  {:.5}", view::band_label(&cube.wavelengths, b), cube.data[[b, row, col]])
            }
            LayerData::Large(large) => {
                // The readout comes from the overview: the file is read only for picks.
                let ov = &large.overview;
                let b = self.display.band.min(ov.cube.bands() - 1);
                let (r, c) = ((row / ov.step).min(ov.cube.rows() - 1), (col / ov.step).min(ov.cube.cols() - 1));
                format!("x {col}  y {row}  {}  {:.5} (overview, 1:{})", view::band_label(&ov.cube.wavelengths, b), ov.cube.data[[b, r, c]], ov.step)
            }
            _ => return None,
        })
    }

    fn side_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Layers");
        if self.doc.layers.is_empty() {
            ui.label("Nothing open.");
        }
        // Scenes as groups: a header per scene (clicking its name shows the scene, its arrow
        // folds the group), its layers under it.
        for scene in &self.doc.scenes {
            let active = self.doc.active_scene == Some(scene.id);
            let first = self.doc.layers_of(scene.id).next().map(|l| l.id);
            let count = self.doc.layers_of(scene.id).count();
            let state = egui::collapsing_header::CollapsingState::load_with_default_open(ui.ctx(), ui.make_persistent_id(("scene", scene.id)), true);
            let folded = !state.is_open();
            let header = state.show_header(ui, |ui| {
                let name = if folded { format!("Scene: {} ({count} layer{})", scene.name, if count == 1 { "" } else { "s" }) } else { format!("Scene: {}", scene.name) };
                let response = ui.selectable_label(active, egui::RichText::new(name).strong()).on_hover_text("a scene: an input, its ground truth and what was made from them");
                if response.clicked() {
                    if let Some(first) = first {
                        self.commands.push(Command::Select(first));
                    }
                }
            });
            header.body(|ui| {
                for layer in self.doc.layers_of(scene.id) {
                    ui.horizontal(|ui| {
                        let role = match &layer.role {
                            Role::Input => " · input",
                            Role::GroundTruth => " · ground truth",
                            Role::Reconstruction { .. } => " · reconstruction",
                            Role::Other => "",
                        };
                        if ui.selectable_label(self.active == Some(layer.id), format!("{}{role}", layer.name)).clicked() {
                            self.commands.push(Command::Select(layer.id));
                        }
                    });
                    ui.horizontal(|ui| {
                        ui.add_space(12.0);
                        match &layer.data {
                            LayerData::Cube(_) if layer.role != Role::GroundTruth => {
                                if ui.small_button("use as ground truth").clicked() {
                                    self.commands.push(Command::SetGroundTruth(layer.id));
                                }
                            }
                            LayerData::Rgb(_) if layer.role != Role::Input => {
                                if ui.small_button("use as input").clicked() {
                                    self.commands.push(Command::SetInput(layer.id));
                                }
                            }
                            _ => {}
                        }
                        if let LayerData::Cube(_) | LayerData::Large(_) = layer.data {
                            if ui.small_button("save cube…").clicked() {
                                self.commands.push(Command::ExportCube(layer.id));
                            }
                        }
                        if ui.small_button("PNG…").on_hover_text("save this layer as it is shown").clicked() {
                            self.commands.push(Command::ExportView(layer.id));
                        }
                        if ui.small_button("close").clicked() {
                            self.commands.push(Command::RemoveLayer(layer.id));
                        }
                    });
                    if let (Some(decoding), Some(_)) = (&layer.decoding, &layer.path) {
                        ui.horizontal_wrapped(|ui| {
                            ui.add_space(12.0);
                            let how = if decoding.srgb { "decoded as sRGB" } else { "read as linear camera RGB" };
                            ui.weak(format!("{how} ({})", decoding.why));
                            let switch = if decoding.srgb { "read as linear" } else { "read as sRGB" };
                            if ui.small_button(switch).clicked() {
                                self.commands.push(Command::Redecode(layer.id, !decoding.srgb));
                            }
                        });
                        if decoding.srgb {
                            ui.horizontal_wrapped(|ui| {
                                ui.add_space(12.0);
                                ui.colored_label(egui::Color32::from_rgb(255, 190, 90), format!(
                                    "a photo from an unknown camera: reconstructions assume {}; the Camera response tab's Estimate from input alone (usr) guesses its curves",
                                    self.recon.camera.name
                                ));
                            });
                        }
                    }
                    if let Some(warning) = &layer.warning {
                        ui.horizontal_wrapped(|ui| {
                            ui.add_space(12.0);
                            ui.colored_label(egui::Color32::from_rgb(255, 190, 90), warning);
                        });
                    }
                    if let LayerData::Large(large) = &layer.data {
                        let file_mib = crate::io::source::memory_bytes(&*large.source) as f64 / (1u64 << 20) as f64;
                        ui.horizontal_wrapped(|ui| {
                            ui.add_space(12.0);
                            ui.weak(format!(
                                "read on demand ({}): {file_mib:.0} MiB as f32; overview 1:{} ({:.0} MiB) in memory",
                                large.source.storage(),
                                large.overview.step,
                                large.resident_bytes() as f64 / (1u64 << 20) as f64
                            ));
                        });
                    }
                }
            });
        }
        ui.separator();
        self.display_settings(ui);
        ui.separator();
        egui::CollapsingHeader::new("Reconstruction").default_open(true).show(ui, |ui| {
            self.recon.ui(ui, self.doc.input().is_some(), &self.camera.assumable(), &mut self.commands);
        });
    }

    fn display_settings(&mut self, ui: &mut egui::Ui) {
        ui.heading("Display");
        let bands = self.active_wavelengths().map(|w| (w.len(), w));
        let d = &mut self.display;
        ui.horizontal_wrapped(|ui| {
            ui.selectable_value(&mut d.mode, DisplayMode::Colour, "colour");
            ui.selectable_value(&mut d.mode, DisplayMode::Band, "band");
            ui.selectable_value(&mut d.mode, DisplayMode::FalseColour, "false colour");
            view::error_mode_buttons(ui, d, "error");
        });
        let Some((n, wavelengths)) = bands else {
            return;
        };
        let nm = |b: usize| view::band_label(&wavelengths, b);
        if d.mode == DisplayMode::Colour && !view::sees_visible_light(&wavelengths) {
            ui.weak("no band in 380–780 nm (or no wavelengths): colour shows three bands as false colour");
        }
        // The active layer's own wavelengths (not its scene's ground truth's) can be set.
        let own = self.active.and_then(|id| self.doc.get(id)).filter(|l| l.data.wavelengths().is_some()).map(|l| l.id);
        if let Some(id) = own {
            ui.horizontal_wrapped(|ui| {
                if crate::cube::are_band_numbers(&wavelengths) {
                    ui.colored_label(egui::Color32::from_rgb(255, 190, 90), format!("no wavelengths in the file: bands 1-{n}"));
                } else {
                    ui.weak(format!("{n} bands, {:.0}-{:.0} nm", wavelengths[0], wavelengths[n - 1]));
                }
                if ui.small_button("Set wavelengths…").on_hover_text("a range, a text file, or a sensor's band centres").clicked() {
                    self.commands.push(Command::EditWavelengths(id));
                }
            });
        }
        match d.mode {
            DisplayMode::Band => {
                d.band = d.band.min(n - 1);
                ui.horizontal(|ui| {
                    ui.add(egui::Slider::new(&mut d.band, 0..=n - 1).text("band").custom_formatter(|v, _| nm(v as usize)));
                    let label = if d.playing { "Pause" } else { "Play bands" };
                    if ui.button(label).clicked() {
                        d.playing = !d.playing;
                    }
                });
                egui::ComboBox::from_label("colormap").selected_text(d.colormap.name()).show_ui(ui, |ui| {
                    for c in crate::display::Colormap::ALL {
                        ui.selectable_value(&mut d.colormap, c, c.name());
                    }
                });
                egui::ComboBox::from_label("stretch").selected_text(d.stretch.name()).show_ui(ui, |ui| {
                    for s in crate::display::Stretch::ALL {
                        ui.selectable_value(&mut d.stretch, s, s.name());
                    }
                });
            }
            DisplayMode::FalseColour => {
                for (i, ch) in ["R", "G", "B"].iter().enumerate() {
                    d.false_bands[i] = d.false_bands[i].min(n - 1);
                    ui.add(egui::Slider::new(&mut d.false_bands[i], 0..=n - 1).text(*ch).custom_formatter(|v, _| nm(v as usize)));
                }
            }
            DisplayMode::Error(m) => {
                ui.add(egui::Slider::new(&mut d.error_max, 1e-3..=m.default_max() * 5.0).logarithmic(true).text("colour bar top"));
            }
            DisplayMode::Colour => {}
        }
    }

    fn jobs_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Jobs");
        // Fusion and training runs live in their tabs but are jobs all the same: listed here
        // with their progress and a Cancel that stops them as the tab's button does.
        let listed = |name: &str, started: std::time::Instant, progress: &(f32, String), stop| (name.to_string(), started.elapsed(), progress.clone(), stop);
        let fusion = self.fusion.run.as_ref().and_then(|r| r.job.as_ref()).map(|job| listed(&job.name, job.started, &job.progress, Command::Fusion(fusion::FusionCommand::Stop)));
        let training = self.training.runs.iter().filter_map(|r| r.job.as_ref()).map(|job| listed(&job.name, job.started, &job.progress, Command::StopTraining));
        let tab_jobs: Vec<_> = fusion.into_iter().chain(training).collect();
        if self.jobs.is_empty() && self.recon_queue.is_empty() && tab_jobs.is_empty() {
            ui.label("idle");
        }
        for (name, elapsed, (fraction, what), stop) in tab_jobs {
            ui.label(format!("{name} ({:.1} s)", elapsed.as_secs_f64()));
            ui.horizontal(|ui| {
                ui.add(egui::ProgressBar::new(fraction).desired_width(150.0).text(what));
                if ui.button("Cancel").clicked() {
                    self.commands.push(stop);
                }
            });
        }
        for job in &self.jobs {
            let (fraction, what) = job.progress();
            ui.label(format!("{} ({:.1} s)", job.name(), job.elapsed().as_secs_f64()));
            ui.horizontal(|ui| {
                ui.add(egui::ProgressBar::new(fraction).desired_width(150.0).text(what));
                if ui.button("Cancel").clicked() {
                    self.commands.push(Command::CancelJob(job.id));
                }
            });
        }
        for r in &self.recon_queue {
            ui.label(format!("queued: reconstruct with {}", r.method));
        }
    }

    // -----------------------------------------------------------------------------------------
    // State changes

    /// The wavelengths of the active cube layer (in memory or not), else of the ground truth.
    fn active_wavelengths(&self) -> Option<Vec<f32>> {
        let layer = self.doc.get(self.active?)?;
        layer.data.wavelengths().map(|w| w.to_vec()).or_else(|| self.doc.ground_truth().map(|(_, c)| c.wavelengths.clone()))
    }

    fn waker(&self) -> Waker {
        self.waker.clone().unwrap_or_else(|| Arc::new(|| {}))
    }

    fn spawn<T: Send + 'static>(&mut self, name: String, work: impl FnOnce(&crate::engine::JobContext) -> crate::Result<T> + Send + 'static, kind: impl FnOnce(Job<T>) -> JobKind) {
        self.next_job_id += 1;
        let job = Job::spawn(name, self.waker(), work);
        self.jobs.push(BackgroundJob::new(self.next_job_id, kind(job)));
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::OpenFiles(paths) => {
                // PyTorch checkpoints are methods, not images: they join the Reconstruct panel.
                // Camera curves (a .csv) join the Camera tab.
                let (curves, paths): (Vec<PathBuf>, Vec<PathBuf>) = paths.into_iter().partition(|p| crate::io::extension(p) == "csv");
                for path in curves {
                    match crate::spectral::camera::CameraResponse::from_csv(&path).and_then(|c| self.camera.add_loaded(c)) {
                        Ok(()) => self.info(format!("loaded camera curves from {} (Camera response tab)", path.display())),
                        Err(e) => self.error(e.to_string()),
                    }
                }
                let (checkpoints, paths): (Vec<PathBuf>, Vec<PathBuf>) = paths.into_iter().partition(|p| crate::recon::pytorch::is_checkpoint(p));
                for path in &checkpoints {
                    self.recon.add_checkpoint(path);
                    let name = crate::recon::registry::checkpoint_entry(path).name;
                    self.info(format!("{}: listed under Reconstruct as the method '{name}' (checked when it runs)", path.display()));
                }
                if paths.is_empty() {
                    return;
                }
                let name = match paths.as_slice() {
                    [one] => format!("open {}", one.display()),
                    many => format!("open {} files", many.len()),
                };
                let to_load = paths.clone();
                let cap = self.options.memory_cap.unwrap_or(crate::io::source::DEFAULT_MEMORY_CAP);
                // Recent files are remembered once they opened (and forgotten when they fail).
                self.spawn(name, move |ctx| Ok(document::load_files(&to_load, cap, ctx)), move |job| JobKind::Load(job, paths));
            }
            Command::OpenDemo => self.spawn("generate the demo scene".into(), |_| Ok(document::demo_scene()?.into_iter().map(Ok).collect()), |job| JobKind::Load(job, Vec::new())),
            Command::OpenDialog if !self.file_dialogs => self.error(NO_DIALOG_OPEN),
            Command::OpenDialog => self.spawn("choose files".into(), |_| Ok(rfd::FileDialog::new().set_title("Open images or cubes").pick_files().unwrap_or_default()), JobKind::Dialog),
            Command::Reconstruct(mut request) => {
                request.scene = request.scene.or(self.doc.active_scene);
                self.recon_queue.push_back(request)
            }
            Command::CancelJob(id) => {
                if let Some(j) = self.jobs.iter().find(|j| j.id == id) {
                    j.cancel();
                }
            }
            Command::Select(id) => self.select(id),
            Command::SetGroundTruth(id) => self.doc.set_ground_truth(id),
            Command::SetInput(id) => self.doc.set_input(id),
            Command::RemoveLayer(id) => {
                self.doc.remove(id);
                self.scene_views.retain(|scene, _| self.doc.scene(*scene).is_some());
                self.probes.forget(id);
                self.scores.remove(&id);
                self.abundances.results.retain(|r| r.layer != id);
                self.abundance_textures.retain(|(layer, _), _| *layer != id);
                if self.active == Some(id) {
                    // the next layer of the same scene, else of the scene now active
                    self.active = self.doc.active_layers().next().map(|l| l.id).or_else(|| self.doc.layers.first().map(|l| l.id));
                    if let Some(next) = self.active {
                        self.select(next);
                    }
                }
            }
            Command::Pick { row, col, add } => {
                if !add {
                    self.pins.clear();
                }
                let colour = spectra::PIN_COLOURS[self.pins.len() % spectra::PIN_COLOURS.len()];
                self.pins.push(Pin { row, col, colour });
            }
            Command::ClearPins => self.pins.clear(),
            Command::SetRoi(roi) => self.roi = roi,
            Command::ExportCube(id) => {
                let name = self.doc.get(id).map(|l| sanitise(&l.name)).unwrap_or_default();
                if let Some(LayerData::Large(large)) = self.doc.get(id).map(|l| &l.data) {
                    // Written block by block from the file: never whole in memory.
                    let source = large.source.clone();
                    self.save_as("save cube", format!("{name}.hdr"), &["hdr", "npy"], move |path, job| crate::io::source::save_streamed(&*source, path, job));
                    return;
                }
                let Some(cube) = self.doc.get(id).and_then(|l| l.data.cube().cloned()) else { return };
                self.save_as("save cube", format!("{name}.npy"), &["npy", "hdr", "mat"], move |path, _| crate::io::save(&cube, path));
            }
            Command::ExportView(id) => {
                let Some(layer) = self.doc.get(id).cloned() else { return };
                let gt = self.doc.ground_truth().map(|(_, c)| c.clone());
                let display = self.display.clone();
                let name = sanitise(&layer.name);
                self.save_as("save PNG", format!("{name}.png"), &["png"], move |path, _| jobs::write_view_png(&layer, &display, gt.as_ref(), path));
            }
            Command::ExportSpectra => {
                let csv = spectra::to_csv(&self.spectra_series());
                self.save_as("save spectra", "spectra.csv".into(), &["csv"], move |path, _| crate::io::atomic::write_bytes_atomically(path, csv.as_bytes()));
            }
            Command::ExportMetrics => {
                let csv = jobs::metrics_csv(&self.compare.rows(&self.doc, &self.scores));
                self.save_as("save metrics", "metrics.csv".into(), &["csv"], move |path, _| crate::io::atomic::write_bytes_atomically(path, csv.as_bytes()));
            }
            Command::Unmix(id) => {
                let Some(cube) = self.doc.get(id).and_then(|l| l.data.cube().cloned()) else { return };
                let (library, k) = (self.abundances.library.clone(), self.abundances.endmembers);
                self.spawn(format!("unmix over {library}"), move |_| abundances::run(id, &cube, &library, k), JobKind::Unmix);
            }
            Command::InssAbundances(id, model) => {
                let Some(LayerData::Rgb(rgb)) = self.doc.get(id).map(|l| l.data.clone()) else { return };
                let files = match crate::recon::card::ModelFiles::resolve(&model) {
                    Ok(f) => f,
                    Err(e) => return self.error(e.to_string()),
                };
                let by_class = self.abundances.inss_by_class;
                self.spawn("abundances from the RGB (inss)".into(), move |job| abundances::run_inss(id, &rgb, &files, by_class, job), JobKind::Unmix);
            }
            Command::FitCamera => {
                let (Some((_, rgb)), Some((_, cube))) = (self.doc.input(), self.doc.ground_truth()) else { return };
                let (rgb, cube) = (rgb.clone(), cube.clone());
                self.spawn("fit camera curves".into(), move |_| camera::fit(&cube, &rgb), JobKind::Fit);
            }
            Command::EstimateCamera => {
                let Some((layer, rgb)) = self.doc.input() else { return self.error("estimate the camera: no input RGB image is open") };
                let (name, rgb) = (layer.name.clone(), rgb.clone());
                let Some(files) = crate::recon::registry::find_model("usr") else {
                    return self.error("estimate the camera: no usr model found (train one with `spectral-studio train --method usr`)");
                };
                self.spawn(
                    "estimate camera (usr)".into(),
                    move |_| crate::recon::usr::UsrReconstructor::load(&files, None, &candle_core::Device::Cpu)?.estimate(&rgb),
                    move |job| JobKind::Estimate(job, name),
                );
            }
            Command::Redecode(id, srgb) => {
                let Some(path) = self.doc.get(id).and_then(|l| l.path.clone()) else { return };
                self.spawn(format!("read {} again", path.display()), move |_| document::redecode(&path, srgb), move |job| JobKind::Redecode(job, id));
            }
            Command::EditWavelengths(id) => {
                let Some(layer) = self.doc.get(id) else { return };
                let Some(current) = layer.data.wavelengths() else { return };
                self.wavelength_editor = Some(wavelengths::WavelengthEditor::new(id, layer.name.clone(), current));
            }
            Command::SetWavelengths(id, wavelengths, how) => {
                let Some(data) = self.doc.get(id).map(|l| l.data.clone()) else { return };
                self.spawn(format!("set wavelengths ({how})"), move |_| document::relabel(&data, wavelengths), move |job| JobKind::Relabel(job, id, how));
            }
            Command::LoadCameraCsv if !self.file_dialogs => self.error(NO_DIALOG_OPEN),
            Command::LoadCameraCsv => self.spawn("choose curves".into(), |_| Ok(rfd::FileDialog::new().add_filter("CSV", &["csv"]).pick_file()), JobKind::CameraDialog),
            Command::StartTraining { resume } => self.start_training(resume),
            Command::StopTraining => {
                for run in &self.training.runs {
                    if let Some(job) = &run.job {
                        job.cancel.cancel();
                    }
                }
            }
            Command::Fusion(fusion::FusionCommand::Simulate) => {
                let Some((_, gt)) = self.doc.ground_truth() else { return self.error("simulate a pair: no ground-truth cube is open") };
                let gt = gt.clone();
                let (camera, kernel, scale, snr) = (self.fusion.camera.clone(), self.fusion.sim_kernel, self.fusion.scale, self.fusion.sim_snr);
                self.spawn("simulate a fusion pair".into(), move |_| fusion::simulate(&gt, &camera, kernel, scale, snr), JobKind::Simulate);
            }
            Command::Fusion(fusion::FusionCommand::Start) => self.start_fusion(),
            Command::Fusion(fusion::FusionCommand::Stop) => {
                if let Some(job) = self.fusion.run.as_ref().and_then(|r| r.job.as_ref()) {
                    job.cancel.cancel();
                }
            }
        }
    }

    fn start_fusion(&mut self) {
        let p = &self.fusion;
        let rgb = p.rgb.and_then(|id| self.doc.get(id)).and_then(|l| if let LayerData::Rgb(r) = &l.data { Some(r.clone()) } else { None });
        let cube = p.cube.and_then(|id| self.doc.get(id)).and_then(|l| l.data.cube().cloned());
        let (Some(rgb), Some(cube)) = (rgb, cube) else { return self.error("fusion: choose an RGB layer and a cube layer") };
        let (camera, scale, steps, pair) = (p.camera.clone(), p.scale, p.steps, (p.rgb.unwrap_or_default(), p.cube.unwrap_or_default()));
        let (job, events) = fusion::start(rgb, cube, camera, scale, steps, p.subspace, p.device.clone(), self.waker());
        self.fusion.run = Some(fusion::FusionRun { job: Some(job), events, losses: Vec::new(), total_steps: steps, status: format!("fusing ×{scale}, {steps} adaptation steps"), kernel: None, pair, scale, camera: self.fusion.camera.clone() });
    }

    fn poll_fusion_run(&mut self) {
        let Some(run) = &mut self.fusion.run else { return };
        run.poll_events();
        let Some(job) = &mut run.job else { return };
        let Some(result) = job.poll() else { return };
        let seconds = job.started.elapsed().as_secs_f64();
        run.job = None;
        run.poll_events();
        match result {
            Ok(fused) => {
                run.kernel = Some(fused.kernel.clone());
                run.status = format!("finished in {seconds:.0} s{}", fused.steps.last().map(|s| format!(", final loss {:.5}", s.loss)).unwrap_or_default());
                let (name, role) = fusion::result_layer(seconds, run.scale, fused.steps.len(), &run.camera, fused.subspace);
                // The fusion belongs to the scene of its high-resolution RGB.
                let scene = self.doc.get(run.pair.0).map(|l| l.scene);
                let cube = LayerData::Cube(Arc::new(fused.cube));
                let id = match scene {
                    Some(scene) => self.doc.add_to(scene, name.clone(), cube, role, None),
                    None => self.doc.add(name.clone(), cube, role, None),
                };
                self.active.get_or_insert(id);
                self.info(format!("{name}: {seconds:.1} s"));
            }
            Err(crate::Error::Cancelled) => run.status = "cancelled".into(),
            Err(e) => {
                run.status = format!("failed: {e}");
                self.error(format!("fusion: {e}"));
            }
        }
    }

    fn start_training(&mut self, resume: bool) {
        let (settings, resume_from, out_dir) = if resume {
            let Some(run) = self.training.runs.get(self.training.selected) else { return };
            // A resume continues in the run's own folder from its last checkpoint.
            (run.settings.clone(), run.last_checkpoint().cloned(), run.out_dir.clone())
        } else {
            let runs = self.models_dir().join("runs");
            let dir = training::fresh_run_dir(&runs, &sanitise(&self.training.settings.name));
            if dir.file_name().map(|n| n.to_string_lossy().into_owned()) != Some(sanitise(&self.training.settings.name)) {
                self.info(format!("a run named '{}' exists: this one writes to {}", self.training.settings.name, dir.display()));
            }
            (self.training.settings.clone(), None, dir)
        };
        let cfg = match settings.config() {
            Ok(c) => c,
            Err(e) => return self.error(format!("training: {e}")),
        };
        let rewind = resume_from.as_deref().and_then(training::checkpoint_step);
        let (job, events) = training::start(cfg, settings.device.clone(), out_dir.clone(), resume_from, self.models_dir(), self.waker());
        let run = training::Run { settings, validation_on: String::new(), out_dir, job: Some(job), events, losses: Vec::new(), validation: Vec::new(), baselines: Vec::new(), last_step: None, checkpoints: Vec::new(), terms: Default::default(), status: "starting".into() };
        if resume {
            let old = &mut self.training.runs[self.training.selected];
            old.rewind_to(rewind.unwrap_or(0));
            let (losses, validation, checkpoints, terms, on) =
                (std::mem::take(&mut old.losses), std::mem::take(&mut old.validation), std::mem::take(&mut old.checkpoints), std::mem::take(&mut old.terms), std::mem::take(&mut old.validation_on));
            *old = run;
            old.losses = losses;
            old.validation = validation;
            old.checkpoints = checkpoints;
            old.terms = terms;
            old.validation_on = on;
        } else {
            self.training.runs.push(run);
            self.training.selected = self.training.runs.len() - 1;
        }
    }

    pub fn models_dir(&self) -> PathBuf {
        self.options.models_dir.clone().or_else(crate::recon::registry::user_models_dir).unwrap_or_else(|| PathBuf::from("models"))
    }

    fn start_queued_reconstruction(&mut self) {
        if self.jobs.iter().any(|j| matches!(j.kind, JobKind::Recon(..))) {
            return; // one at a time: two would only split the same two cores
        }
        let Some(request) = self.recon_queue.pop_front() else { return };
        let Some((_, rgb)) = request.scene.and_then(|s| self.doc.input_of(s)) else {
            return self.error(format!("reconstruct with {}: the scene has no input RGB image", request.method));
        };
        let rgb = rgb.clone();
        let r = request.clone();
        self.spawn(format!("reconstruct with {}", request.method), move |ctx| reconstruct::run(&r, &rgb, ctx), move |job| JobKind::Recon(job, request));
    }

    /// Score every reconstruction that has no scores against its scene's ground truth.
    fn start_scoring(&mut self) {
        let scoring: Vec<u64> = self.jobs.iter().filter_map(|j| if let JobKind::Score(_, id, _) = j.kind { Some(id) } else { None }).collect();
        // The consistency test assumes the camera the Reconstruct panel names.
        let camera = self.recon.camera.clone();
        let todo: Vec<_> = self
            .doc
            .all_reconstructions()
            .filter_map(|(l, c, gt)| gt.map(|(g, gc)| (l, c, g.id, gc)))
            .filter(|(l, _, gt_id, _)| !scoring.contains(&l.id) && self.scores.get(&l.id).is_none_or(|s| s.gt != *gt_id))
            .map(|(l, c, gt_id, gt)| (l.id, c.clone(), gt_id, gt.clone(), self.doc.input_of(l.scene).map(|(_, rgb)| rgb.clone())))
            .collect();
        for (id, cube, gt_id, gt, input) in todo {
            if (cube.rows(), cube.cols(), cube.bands()) != (gt.rows(), gt.cols(), gt.bands()) {
                continue; // a cube of another shape: nothing to score
            }
            let camera = camera.clone();
            self.spawn("score".into(), move |_| compare::score(&cube, &gt, input.as_deref().map(|rgb| (rgb, camera.as_ref()))), move |job| JobKind::Score(job, id, gt_id));
        }
    }

    /// Read, on jobs, the spectra and region statistics the pins and region ask of large cubes.
    fn start_probes(&mut self) {
        for (key, large) in self.probes.missing(&self.doc, &self.pins, self.roi) {
            let name = match key {
                probes::ProbeKey::Spectrum(_, r, c) => format!("read spectrum ({c}, {r})"),
                probes::ProbeKey::Region(..) => "region statistics".to_string(),
            };
            let k = key.clone();
            self.spawn(name, move |job| probes::read(&large, &k, job), move |job| JobKind::Probe(job, key));
        }
    }

    fn poll_jobs(&mut self) {
        let mut finished = Vec::new();
        for (i, job) in self.jobs.iter_mut().enumerate() {
            if job.poll_into_outcome() {
                finished.push(i);
            }
        }
        for run in &mut self.training.runs {
            run.poll_events();
        }
        for i in finished.into_iter().rev() {
            let job = self.jobs.remove(i);
            self.finish(job);
        }
        self.poll_training_runs();
        self.poll_fusion_run();
    }

    fn poll_training_runs(&mut self) {
        let models_dir = self.models_dir();
        let mut installed = Vec::new();
        let mut errors = Vec::new();
        for run in &mut self.training.runs {
            let Some(job) = &mut run.job else { continue };
            let Some(result) = job.poll() else { continue };
            run.job = None;
            run.poll_events();
            match result {
                // the job installed it (copying a model's weights is no work for the UI thread)
                Ok(summary) => installed.push(format!("model '{}' installed in {}", summary.card.name, models_dir.join(summary.model.card.file_name().unwrap_or_default()).display())),
                Err(crate::Error::Cancelled) => run.status = "stopped; Resume continues from the last checkpoint".into(),
                Err(e) => {
                    run.status = format!("failed: {e}");
                    errors.push(format!("training failed: {e}"));
                }
            }
        }
        if !installed.is_empty() {
            self.recon.refresh();
        }
        for m in installed {
            self.info(m);
        }
        for e in errors {
            self.error(e);
        }
    }

    fn finish(&mut self, job: BackgroundJob) {
        let name = job.name().to_string();
        match job.into_outcome() {
            jobs::Outcome::Failed(crate::Error::Cancelled) => self.info(format!("{name}: cancelled")),
            jobs::Outcome::Failed(e) => self.error(format!("{name}: {e}")),
            jobs::Outcome::Loaded(files, asked) => {
                let mut batch = HashMap::new();
                let mut opened = Vec::new();
                let demo = asked.is_empty();
                for f in files {
                    match f {
                        Ok(f) => {
                            opened.extend(f.path.clone());
                            self.apply_loaded(f, &mut batch);
                        }
                        Err(e) => self.error(e.to_string()),
                    }
                }
                for path in asked {
                    if opened.contains(&path) {
                        self.remember_recent(path);
                    } else {
                        self.forget_recent(&path);
                    }
                }
                if demo && self.doc.scenes.len() == 1 {
                    self.info(format!(
                        "the demo is a synthetic scene made from measured spectra (seed {}); try: click a pixel to plot its spectrum, tick methods and press Reconstruct, then Compare",
                        document::DEMO_SEED
                    ));
                }
            }
            jobs::Outcome::Chosen(paths) => {
                if !paths.is_empty() {
                    self.commands.push(Command::OpenFiles(paths));
                }
            }
            jobs::Outcome::Reconstructed(r, request) => {
                // Named by what made it: method, camera assumed, options. Only a re-run of the
                // same method, camera and options in the same scene replaces a layer.
                let mut name = format!("{} · {}", r.method, request.camera.name);
                if request.options.consistent {
                    name.push_str(" · consistent");
                }
                if request.options.exposure_invariant {
                    name.push_str(" · exposure-invariant");
                }
                let Some(scene) = request.scene.filter(|&s| self.doc.scene(s).is_some()) else {
                    return self.info(format!("{name}: its scene was closed; the result is dropped"));
                };
                let role = Role::Reconstruction { method: r.method.clone(), seconds: r.seconds, consistent: request.options.consistent, exposure_invariant: request.options.exposure_invariant };
                let old = self.doc.layers_of(scene).find(|l| l.name == name && l.is_reconstruction()).map(|l| l.id);
                if let Some(old) = old {
                    self.doc.remove(old);
                    self.scores.remove(&old);
                }
                // A reconstruction estimates what its scene's ground truth measures, in the input's
                // scale; without one, radiance as the camera saw it.
                let mut cube = r.cube;
                cube.meta.units = self.doc.ground_truth_of(scene).and_then(|(_, gt)| gt.meta.units.clone()).or_else(|| Some("radiance (in the input RGB's scale)".into()));
                let id = self.doc.add_to(scene, name.clone(), LayerData::Cube(Arc::new(cube)), role, None);
                if self.active.is_none() {
                    self.select(id);
                }
                // Values below zero were set to zero: say how many rather than hide it.
                let clamped = r.clamped.describe();
                if let Some(layer) = self.doc.layers.iter_mut().find(|l| l.id == id) {
                    layer.warning = clamped.clone();
                }
                match clamped {
                    Some(what) => self.info(format!("{name}: {:.2} s; {what}", r.seconds)),
                    None => self.info(format!("{name}: {:.2} s", r.seconds)),
                }
            }
            jobs::Outcome::Simulated(rgb, lr, kernel_name, kernel) => {
                let scale = self.fusion.scale;
                // The pair is simulated from the active scene's ground truth: it joins that scene.
                let rgb_id = self.doc.add(format!("pair: RGB ({})", self.fusion.camera), LayerData::Rgb(Arc::new(rgb)), Role::Other, None);
                let lr_id = self.doc.add(format!("pair: cube ×{scale} {kernel_name}"), LayerData::Cube(Arc::new(lr)), Role::Other, None);
                (self.fusion.rgb, self.fusion.cube) = (Some(rgb_id), Some(lr_id));
                self.fusion.simulated = Some(fusion::SimulatedPair { rgb: rgb_id, cube: lr_id, kernel_name: kernel_name.clone(), kernel });
                self.info(format!("simulated a pair: ×{scale}, {kernel_name}, {} dB", self.fusion.sim_snr));
            }
            jobs::Outcome::Scored(metrics, bands, layer, gt) => {
                self.scores.insert(layer, compare::Scores { gt, metrics, bands });
            }
            jobs::Outcome::Unmixed(result) => {
                self.abundance_textures.retain(|(l, _), _| *l != result.layer);
                self.abundances.insert(result);
            }
            jobs::Outcome::Fitted(fit) => {
                let set = camera::CurveSet::from_fit(&fit);
                // Against the camera that really took the picture, when the scene knows it.
                let truth = self.doc.active_scene.and_then(|s| self.doc.scene(s)).and_then(|s| s.true_camera.clone());
                let curve_error = truth.as_deref().and_then(|name| {
                    let camera = crate::spectral::camera::CameraResponse::parse(name).ok()?;
                    let truth = camera.on_grid(&fit.wavelengths).ok()?;
                    crate::spectral::fit::curve_rmse(&fit.matrix, &truth).ok().map(|e| format!("; curve RMSE against the true {name}: {e:.5}"))
                });
                self.info(format!("camera fitted: RMSE {:.5}, relative error {:.4}{}", fit.rmse, fit.relative_error, curve_error.unwrap_or_default()));
                self.camera.fitted = Some(set);
                let name = format!("fitted from {}", self.doc.input().map(|(l, _)| l.name.as_str()).unwrap_or("the input"));
                self.camera.fitted_response = Some(Arc::new(crate::spectral::camera::CameraResponse { name, wavelengths: fit.wavelengths.clone(), matrix: fit.matrix.clone() }));
            }
            jobs::Outcome::Estimated(est, input) => {
                let weights = |k: usize| est.weights.row(k).iter().filter(|w| **w > 0.05).count();
                self.info(format!("camera estimated from {input} alone: white-balance gains {:.3} {:.3} {:.3}; atoms above 5 %: R {}, G {}, B {}", est.gains[0], est.gains[1], est.gains[2], weights(0), weights(1), weights(2)));
                self.camera.set_estimated(&est, &input);
            }
            jobs::Outcome::CameraChosen(Some(path)) => match crate::spectral::camera::CameraResponse::from_csv(&path).and_then(|c| self.camera.add_loaded(c)) {
                Ok(()) => self.info(format!("loaded curves from {}", path.display())),
                Err(e) => self.error(e.to_string()),
            },
            jobs::Outcome::CameraChosen(None) => {}
            jobs::Outcome::Probed(key, Ok(value)) => self.probes.insert(key, value),
            jobs::Outcome::Probed(key, Err(e)) => {
                self.probes.fail(key);
                if !matches!(e, crate::Error::Cancelled) {
                    self.error(format!("{name}: {e}"));
                }
            }
            jobs::Outcome::Redecoded((rgb, decoding), id) => {
                let how = if decoding.srgb { "decoded as sRGB" } else { "read as linear camera RGB" };
                self.info(format!("{}: {how}", self.doc.get(id).map(|l| l.name.as_str()).unwrap_or("RGB")));
                self.doc.replace_rgb(id, rgb, decoding);
                self.textures.forget(id);
            }
            jobs::Outcome::Relabelled(data, id, how) => {
                self.info(format!("{}: wavelengths set, {how}", self.doc.get(id).map(|l| l.name.as_str()).unwrap_or("cube")));
                self.doc.replace_data(id, data);
                self.textures.forget(id);
                self.details.forget(id);
            }
            jobs::Outcome::Saved(Some(path)) => self.info(format!("saved {}", path.display())),
            jobs::Outcome::Saved(None) => {}
        }
    }

    /// Place a loaded file in a scene: the scene its batch names (`batch` maps the names to the
    /// scenes made for this batch); a cube opened beside an open scene's input RGB (same folder
    /// or same file stem, same size) joins that scene as its ground truth when it has none;
    /// anything else starts a scene of its own, which becomes the active one.
    fn apply_loaded(&mut self, f: LoadedFile, batch: &mut HashMap<String, u64>) {
        let LoadedFile { name, data, mut role, path, scene, decoding } = f;
        let paired = match (&scene, &path) {
            (None, Some(p)) if role == Role::Other && data.cube().is_some() => self.doc.scenes.iter().map(|s| s.id).find(|&s| {
                self.doc.ground_truth_of(s).is_none()
                    && self.doc.input_of(s).is_some_and(|(input, rgb)| {
                        data.rows_cols() == (rgb.rows(), rgb.cols()) && input.path.as_ref().is_some_and(|ip| same_scene(ip, p))
                    })
            }),
            _ => None,
        };
        let (scene, new) = match (paired, scene) {
            (Some(s), _) => {
                role = Role::GroundTruth;
                (s, false)
            }
            (None, Some(group)) => match batch.get(&group) {
                Some(&s) => (s, false),
                None => {
                    let s = self.doc.new_scene(group.clone());
                    if path.is_none() && group.starts_with("demo ") {
                        self.doc.set_true_camera(s, document::DEMO_CAMERA);
                    }
                    batch.insert(group, s);
                    (s, true)
                }
            },
            (None, None) => (self.doc.new_scene(self.scene_name(&name, path.as_deref())), true),
        };
        let id = self.doc.add_to(scene, name, data, role, path);
        self.doc.set_decoding(id, decoding);
        if self.active.is_none() || new {
            self.select(id);
        }
    }

    /// A scene's name: its first file's name, or "folder/name" when another scene has that name.
    fn scene_name(&self, name: &str, path: Option<&std::path::Path>) -> String {
        let taken = |n: &str| self.doc.scenes.iter().any(|s| s.name == n);
        if !taken(name) {
            return name.to_string();
        }
        let folder = path.and_then(|p| p.parent()).and_then(|d| d.file_name()).map(|d| d.to_string_lossy().into_owned());
        let mut candidate = folder.map(|f| format!("{f}/{name}")).unwrap_or_else(|| name.to_string());
        let base = candidate.clone();
        let mut k = 2;
        while taken(&candidate) {
            candidate = format!("{base} ({k})");
            k += 1;
        }
        candidate
    }

    /// Select layer `id`; when that changes the scene, the view refits and the pins and region
    /// (which belong to the scene left) are cleared.
    fn select(&mut self, id: u64) {
        let before = self.doc.active_scene;
        self.doc.activate(id);
        self.active = Some(id);
        if before != self.doc.active_scene {
            // Each scene keeps its own pins, region and zoom: park the old scene's, bring back
            // the new one's (a scene seen for the first time starts fitted, with no pins).
            if let Some(old) = before {
                self.scene_views.insert(old, (std::mem::take(&mut self.pins), self.roi.take(), self.transform));
            }
            let (pins, roi, transform) = self.doc.active_scene.and_then(|s| self.scene_views.remove(&s)).unwrap_or_default();
            (self.pins, self.roi, self.transform) = (pins, roi, transform);
        }
        // A file that suggests its R, G, B bands (ENVI `default bands`) gets them as false colour.
        let suggested = self.doc.get(id).and_then(|l| match &l.data {
            LayerData::Cube(c) => c.meta.default_bands,
            LayerData::Large(l) => l.source.meta().default_bands,
            LayerData::Rgb(_) => None,
        });
        if let Some(bands) = suggested {
            self.display.false_bands = bands;
        }
    }

    /// Save with `write`: through the native dialog where there is one, else through a small
    /// window where the path is typed (`pending_save`).
    fn save_as(&mut self, title: &str, suggested: String, extensions: &'static [&'static str], write: impl FnOnce(&std::path::Path, &crate::engine::JobContext) -> crate::Result<()> + Send + 'static) {
        if self.file_dialogs {
            self.spawn(title.into(), move |job| jobs::save_with_dialog(&suggested, extensions, |path| write(path, job)), JobKind::Saved);
        } else {
            let dir = std::env::current_dir().unwrap_or_default();
            self.pending_save = Some(jobs::PendingSave::new(title, dir.join(&suggested).display().to_string(), extensions, write));
        }
    }

    /// The typed-path save window, while a save waits for its path.
    fn pending_save_window(&mut self, ctx: &egui::Context) {
        let Some(pending) = &mut self.pending_save else { return };
        let (mut save, mut cancel) = (false, false);
        egui::Window::new(format!("{}: type a path", pending.title)).collapsible(false).show(ctx, |ui| {
            ui.label(format!("There is no file dialog here (no XDG desktop portal). Save as ({}):", pending.extensions.join(", ")));
            ui.add(egui::TextEdit::singleline(&mut pending.path).desired_width(420.0));
            ui.horizontal(|ui| {
                save = ui.button("Save").clicked();
                cancel = ui.button("Cancel").clicked();
            });
        });
        if cancel {
            self.pending_save = None;
        } else if save {
            let pending = self.pending_save.take().expect("shown above");
            let (title, path, write) = pending.into_parts();
            self.spawn(title, move |job| write(&path, job).map(|()| Some(path)), JobKind::Saved);
        }
    }

    /// Drop `path` from the recent files (it failed to open).
    fn forget_recent(&mut self, path: &std::path::Path) {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let before = self.recent.len();
        self.recent.retain(|p| p != &canonical && p != path);
        if self.recent.len() != before {
            if let Some(file) = &self.options.recent_file {
                if let Err(e) = save_recent(file, &self.recent) {
                    self.error(format!("could not remember recent files: {e}"));
                }
            }
        }
    }

    fn remember_recent(&mut self, path: PathBuf) {
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(10);
        if let Some(file) = &self.options.recent_file {
            if let Err(e) = save_recent(file, &self.recent) {
                self.error(format!("could not remember recent files: {e}"));
            }
        }
    }

    fn take_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).filter(|p| !p.as_os_str().is_empty()).collect());
        if !dropped.is_empty() {
            self.commands.push(Command::OpenFiles(dropped));
        }
    }

    fn advance_band_player(&mut self, ctx: &egui::Context) {
        if !self.display.playing || self.display.mode != DisplayMode::Band {
            return;
        }
        let bands = self.active_wavelengths().map_or(1, |w| w.len());
        if self.last_band_step.elapsed() >= Duration::from_millis(150) {
            self.display.band = (self.display.band + 1) % bands.max(1);
            self.last_band_step = Instant::now();
        }
        ctx.request_repaint_after(Duration::from_millis(150));
    }
}

/// Two files of the same scene: the same folder (a scene folder such as `scene` writes), or the
/// same file stem (`img1.png` beside `img1.mat`).
/// What the studio says when a file dialog is asked for and there is none.
const NO_DIALOG_OPEN: &str = "there is no file dialog here (no XDG desktop portal): type a path into the box beside Open… and press Open path (a .csv there loads camera curves)";

fn same_scene(a: &std::path::Path, b: &std::path::Path) -> bool {
    a.parent() == b.parent() || a.file_stem() == b.file_stem()
}

/// A layer name as a file name.
fn sanitise(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn load_recent(file: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read(file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn save_recent(file: &std::path::Path, recent: &[PathBuf]) -> crate::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    }
    let json = serde_json::to_vec_pretty(recent).map_err(|e| crate::Error::invalid(e.to_string()))?;
    crate::io::atomic::write_bytes_atomically(file, &json)
}

/// The default place of the recent-files list.
pub fn default_recent_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("spectral-studio/recent.json"))
}

struct StudioApp {
    studio: Studio,
    frame_log: Option<frame_log::FrameLog>,
}

impl eframe::App for StudioApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = Instant::now();
        self.studio.ui(ui);
        if let Some(log) = &mut self.frame_log {
            let training = self.studio.training.runs.iter().filter(|r| r.is_running()).map(|r| format!("training {}", r.settings.name));
            log.record(started.elapsed(), self.studio.job_names().into_iter().chain(training));
        }
    }
}

/// Open the studio window; returns when it is closed.
pub fn run(files: Vec<PathBuf>, memory_cap: Option<u64>) -> crate::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_title("Spectral Studio").with_inner_size([1400.0, 900.0]).with_drag_and_drop(true),
        ..Default::default()
    };
    let studio = Studio::new(StudioOptions { files, models_dir: None, recent_file: default_recent_file(), memory_cap, file_dialogs: None });
    let frame_log = match std::env::var_os("SPECTRAL_STUDIO_FRAME_LOG") {
        Some(path) => Some(frame_log::FrameLog::create(std::path::Path::new(&path))?),
        None => None,
    };
    eframe::run_native("Spectral Studio", options, Box::new(|_cc| Ok(Box::new(StudioApp { studio, frame_log }))))
        .map_err(|e| crate::Error::invalid(format!("could not open the studio window: {e}")))
}
