//! The central views, one per tab: Explore (image + spectra), Compare (views side by side,
//! metrics, per-band errors), Abundances, Camera response and Training. Each reads the studio's
//! state and pushes commands; none does heavy work itself.

use super::document::LayerData;
use super::{compare, spectra, view, Command, Studio};
use super::view::DisplayMode;
use egui::{Color32, Vec2};

impl Studio {
    pub(super) fn explore_tab(&mut self, ui: &mut egui::Ui) {
        let Some(id) = self.active else {
            ui.label("Open an RGB image or a cube (Open…, a path, or drop files here).");
            return;
        };
        let plot_height = 230.0;
        let size = Vec2::new(ui.available_width(), (ui.available_height() - plot_height - 50.0).max(150.0));
        self.image_with_picking(ui, id, size);
        ui.horizontal(|ui| {
            ui.label(format!("{} pinned pixel(s); click picks, shift-click pins more, right-drag selects a region", self.pins.len()));
            if ui.button("Clear pins").clicked() {
                self.commands.push(Command::ClearPins);
            }
            if self.roi.is_some() && ui.button("Clear region").clicked() {
                self.commands.push(Command::SetRoi(None));
            }
            if ui.button("Export spectra CSV…").clicked() {
                self.commands.push(Command::ExportSpectra);
            }
            if ui.button("Fit").on_hover_text("fit the image to the view").clicked() {
                self.transform.fit_pending = true;
            }
        });
        let all = self.all_spectra_series();
        spectra::legend(ui, &self.doc, &self.pins, self.roi.is_some(), &all, &mut self.hidden_layers);
        let shown: Vec<spectra::Series> = all.into_iter().filter(|s| !self.hidden_layers.contains(&s.layer)).collect();
        spectra::plot(ui, &shown, ui.available_height().max(120.0));
    }

    /// The image view of layer `id`, with its colour bar; clicks become picks.
    pub(super) fn image_with_picking(&mut self, ui: &mut egui::Ui, id: u64, size: Vec2) {
        let Some(layer) = self.doc.get(id).cloned() else { return };
        let gt = self.doc.ground_truth().map(|(l, c)| (l.id, c.clone()));
        let mut display = self.display.clone();
        // An error map that cannot be made for this layer (no ground truth, another size, a
        // large cube) falls back to colour, and says why.
        if matches!(display.mode, DisplayMode::Error(_)) {
            if let view::Shown::Failed(why) = self.textures.get(ui.ctx(), &layer, &display, gt.as_ref().map(|(i, c)| (*i, c))) {
                ui.colored_label(Color32::from_rgb(255, 190, 90), format!("{}: no error map ({why}); showing colour", layer.name));
                display.mode = DisplayMode::Colour;
            }
        }
        let texture = self.textures.get(ui.ctx(), &layer, &display, gt.as_ref().map(|(i, c)| (*i, c)));
        match texture {
            view::Shown::Failed(e) => {
                ui.colored_label(Color32::from_rgb(255, 150, 90), format!("{}: {e}", layer.name));
            }
            view::Shown::Building => {
                let (_, rect) = ui.allocate_space(size);
                ui.painter().rect_filled(rect, 0.0, Color32::from_gray(24));
                ui.put(rect, egui::Spinner::new());
                ui.label(format!("{}: building the view…", layer.name));
            }
            view::Shown::Ready { texture: t, updating } => {
                let range = t.range;
                let base = view::Paint { texture: &t.texture.clone(), extent: t.paint().extent };
                // The scene's zoom, pins and region, in this layer's pixels (it may be of
                // another size than the scene's frame: a low-resolution cube).
                let mut transform = self.transform_for(&layer);
                let pins: Vec<view::Pin> = self.pins.iter().map(|p| {
                    let (row, col) = self.doc.to_layer(&layer, (p.row, p.col));
                    view::Pin { row, col, colour: p.colour }
                }).collect();
                let roi = self.roi.map(|(r0, c0, r1, c1)| {
                    let ((a, b), (c, d)) = (self.doc.to_layer(&layer, (r0, c0)), self.doc.to_layer(&layer, (r1, c1)));
                    (a, b, c, d)
                });
                // A large cube under a magnifying view gets a full-resolution tile on top.
                let visible = egui::Rect::from_center_size(transform.centre, size / transform.zoom);
                let detail = if transform.fit_pending { None } else { self.details.get(ui.ctx(), &layer, &display, visible, transform.zoom) };
                let paints: Vec<view::Paint> = std::iter::once(base).chain(detail).collect();
                let pick = view::image_widget(ui, &layer.name, &paints, layer.data.rows_cols(), &mut transform, &pins, roi, size);
                self.set_transform_from(&layer, transform);
                self.take_pick_on(&layer, pick);
                if updating {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("updating the view…");
                    });
                } else if let (Some(range), LayerData::Cube(_) | LayerData::Large(_)) = (range, &layer.data) {
                    let (cmap, unit) = match display.mode {
                        DisplayMode::Error(m) => (crate::display::Colormap::Inferno, m.name()),
                        _ => (display.colormap, ""),
                    };
                    view::colour_bar(ui, cmap, range, unit, size.x);
                }
            }
        }
    }

    /// The scene's view transform in `layer`'s pixels (scaled when its size differs from the
    /// scene's frame, so every view of the scene shows the same place).
    pub(super) fn transform_for(&self, layer: &super::document::Layer) -> view::ViewTransform {
        let (sx, sy) = self.frame_scale(layer);
        let t = self.transform;
        view::ViewTransform { zoom: t.zoom / sx, centre: egui::pos2(t.centre.x * sx, t.centre.y * sy), fit_pending: t.fit_pending }
    }

    /// Store a view's transform (in `layer`'s pixels) as the scene's.
    pub(super) fn set_transform_from(&mut self, layer: &super::document::Layer, t: view::ViewTransform) {
        let (sx, sy) = self.frame_scale(layer);
        self.transform = view::ViewTransform { zoom: t.zoom * sx, centre: egui::pos2(t.centre.x / sx, t.centre.y / sy), fit_pending: t.fit_pending };
    }

    /// `layer`'s pixels per frame pixel, along columns and rows.
    fn frame_scale(&self, layer: &super::document::Layer) -> (f32, f32) {
        let (rows, cols) = layer.data.rows_cols();
        match self.doc.frame_of(layer.scene) {
            Some((fr, fc)) if fr > 0 && fc > 0 => (cols as f32 / fc as f32, rows as f32 / fr as f32),
            _ => (1.0, 1.0),
        }
    }

    /// [`Self::take_pick`] of a view of `layer`: its pixels mapped to the scene's frame.
    pub(super) fn take_pick_on(&mut self, layer: &super::document::Layer, mut pick: view::PickResponse) {
        let to_frame = |px: (usize, usize)| self.doc.to_frame(layer, px);
        pick.hovered = pick.hovered.map(to_frame);
        pick.clicked = pick.clicked.map(|(px, add)| (to_frame(px), add));
        pick.roi = pick.roi.map(|(r0, c0, r1, c1)| {
            let ((a, b), (c, d)) = (to_frame((r0, c0)), to_frame((r1, c1)));
            (a, b, c, d)
        });
        self.take_pick(pick);
    }

    pub(super) fn take_pick(&mut self, pick: view::PickResponse) {
        if pick.hovered.is_some() {
            self.hovered_this_frame = pick.hovered;
        }
        if let Some(((row, col), add)) = pick.clicked {
            self.commands.push(Command::Pick { row, col, add });
        }
        if let Some(roi) = pick.roi {
            self.commands.push(Command::SetRoi(Some(roi)));
        }
    }

    pub(super) fn compare_tab(&mut self, ui: &mut egui::Ui) {
        let ids = compare::grid_layers(&self.doc);
        if self.doc.ground_truth().is_none() {
            ui.label("No ground truth: open the scene's cube and press 'use as ground truth' to score reconstructions.");
        }
        if ids.is_empty() {
            ui.label("Nothing to compare yet: run a reconstruction.");
            return;
        }
        ui.horizontal(|ui| {
            ui.label("show:");
            let d = &mut self.display;
            ui.selectable_value(&mut d.mode, DisplayMode::Colour, "colour");
            ui.selectable_value(&mut d.mode, DisplayMode::Band, "band");
            view::error_mode_buttons(ui, d, "map");
            if ui.button("Fit").clicked() {
                self.transform.fit_pending = true;
            }
        });
        let layout_before = self.compare.layout;
        ui.horizontal(|ui| {
            ui.label("layout:");
            ui.selectable_value(&mut self.compare.layout, compare::Layout::Grid, "grid");
            ui.selectable_value(&mut self.compare.layout, compare::Layout::Swipe, "swipe");
        });
        if self.compare.layout != layout_before {
            // One big view or several small ones: start the new layout fitted.
            self.transform.fit_pending = true;
        }
        let table_height = 260.0;
        match self.compare.layout {
            compare::Layout::Grid => self.compare_grid(ui, &ids, table_height),
            compare::Layout::Swipe => self.compare_swipe(ui, &ids, table_height),
        }
        ui.separator();
        let rows = self.compare.rows(&self.doc, &self.scores);
        ui.horizontal(|ui| {
            ui.heading("Metrics against the ground truth");
            if ui.button("Export metrics CSV…").clicked() {
                self.commands.push(Command::ExportMetrics);
            }
        });
        // The table takes the width its columns need and the band plot the rest, so a wide
        // table never runs under the plot; in a narrow window the plot goes below the table.
        const PLOT_MIN_WIDTH: f32 = 420.0;
        let mut plot_beside = false;
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| self.compare.table(ui, &rows));
            ui.add_space(16.0);
            if ui.available_width() >= PLOT_MIN_WIDTH {
                plot_beside = true;
                compare::band_error_plot(ui, &self.doc, &self.scores, [ui.available_width(), 180.0]);
            }
        });
        if !plot_beside {
            compare::band_error_plot(ui, &self.doc, &self.scores, [ui.available_width(), 180.0]);
        }
    }

    fn compare_grid(&mut self, ui: &mut egui::Ui, ids: &[u64], table_height: f32) {
        // The ground truth's error map against itself is black: a grid of error maps shows the
        // reconstructions only.
        let ids = if matches!(self.display.mode, DisplayMode::Error(_)) && self.doc.ground_truth().is_some() && ids.len() >= 2 { &ids[1..] } else { ids };
        let columns = ids.len().clamp(1, 3);
        let rows = ids.len().div_ceil(columns);
        let cell_w = (ui.available_width() / columns as f32) - 8.0;
        let cell_h = ((ui.available_height() - table_height) / rows as f32 - 30.0).clamp(120.0, cell_w.max(120.0));
        egui::Grid::new("compare-grid").num_columns(columns).show(ui, |ui| {
            for (i, id) in ids.iter().enumerate() {
                ui.vertical(|ui| self.image_with_picking(ui, *id, Vec2::new(cell_w, cell_h)));
                if i % columns == columns - 1 {
                    ui.end_row();
                }
            }
        });
    }

    /// Two layers in one view with a divider: the user picks which, and drags the divider.
    fn compare_swipe(&mut self, ui: &mut egui::Ui, ids: &[u64], table_height: f32) {
        // The ground truth's error map against itself is black: error maps swipe between
        // reconstructions when there are two.
        let ids = if matches!(self.display.mode, DisplayMode::Error(_)) && ids.len() >= 3 { &ids[1..] } else { ids };
        // Any other cube of the scene can be swiped too (a fusion's low-resolution input).
        let others = self.doc.active_layers().filter(|l| matches!(l.data, LayerData::Cube(_) | LayerData::Large(_)) && !ids.contains(&l.id)).map(|l| l.id);
        let ids: Vec<u64> = ids.iter().copied().chain(others).collect();
        let ids = &ids[..];
        let Some((left, right)) = self.compare.swipe_pair(ids) else {
            ui.label("Swipe needs two cubes: run a reconstruction or open the ground truth.");
            return;
        };
        let names: Vec<(u64, String)> = ids.iter().map(|&i| (i, self.doc.get(i).map(|l| l.name.clone()).unwrap_or_default())).collect();
        let name = |id: u64| names.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone()).unwrap_or_default();
        ui.horizontal(|ui| {
            for (side, current, slot) in [("left", left, &mut self.compare.swipe.0), ("right", right, &mut self.compare.swipe.1)] {
                ui.label(format!("{side}:"));
                let shown = names.iter().find(|(i, _)| *i == current).map(|(_, n)| n.as_str()).unwrap_or("");
                egui::ComboBox::from_id_salt(format!("swipe-{side}")).selected_text(shown).show_ui(ui, |ui| {
                    for (id, n) in &names {
                        if ui.selectable_label(*id == current, n).clicked() {
                            *slot = Some(*id);
                        }
                    }
                });
            }
        });
        let size = Vec2::new(ui.available_width(), (ui.available_height() - table_height - 30.0).max(150.0));
        let (a, b) = (self.shown_texture(ui, left), self.shown_texture(ui, right));
        let (Some(a), Some(b)) = (a, b) else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("building the views…");
            });
            return;
        };
        // Both layers are drawn over the scene's frame, so two of different sizes (a
        // low-resolution cube beside the RGB's reconstructions) cover the same place; the zoom,
        // pins, region and picks are the scene's, in its frame.
        let Some(frame) = self.doc.get(left).and_then(|l| self.doc.frame_of(l.scene)) else { return };
        let sizes = [left, right].map(|id| self.doc.get(id).map(|l| l.data.rows_cols()).unwrap_or_default());
        if sizes[0] != sizes[1] {
            ui.weak(format!("{} is {}×{} px, {} is {}×{} px: both are drawn over the scene's {}×{} frame", name(left), sizes[0].1, sizes[0].0, name(right), sizes[1].1, sizes[1].0, frame.1, frame.0));
        }
        let pick = view::swipe_widget(ui, (&name(left), &a), (&name(right), &b), frame, &mut self.transform, &mut self.compare.split, &self.pins, self.roi, size);
        self.take_pick(pick);
        if let DisplayMode::Error(m) = self.display.mode {
            view::colour_bar(ui, crate::display::Colormap::Inferno, crate::display::Range { lo: 0.0, hi: self.display.error_max }, m.name(), size.x);
        }
    }

    /// The texture layer `id` shows now (perhaps older settings while new ones build), or None
    /// while its first pixels build or when they failed (the failure goes to the messages).
    fn shown_texture(&mut self, ui: &mut egui::Ui, id: u64) -> Option<egui::TextureHandle> {
        let layer = self.doc.get(id).cloned()?;
        let gt = self.doc.ground_truth().map(|(l, c)| (l.id, c.clone()));
        match self.textures.get(ui.ctx(), &layer, &self.display, gt.as_ref().map(|(i, c)| (*i, c))) {
            view::Shown::Ready { texture, .. } => Some(texture.texture.clone()),
            view::Shown::Building => None,
            view::Shown::Failed(e) => {
                ui.colored_label(Color32::from_rgb(255, 150, 90), format!("{}: {e}", layer.name));
                None
            }
        }
    }

    pub(super) fn abundances_tab(&mut self, ui: &mut egui::Ui) {
        // The active scene's cubes, and its unmixing: another scene's results are not shown here.
        let cubes: Vec<(u64, String)> = self.doc.active_layers().filter(|l| l.data.cube().is_some()).map(|l| (l.id, l.name.clone())).collect();
        ui.horizontal(|ui| {
            self.abundances.settings_ui(ui);
        });
        ui.horizontal_wrapped(|ui| {
            ui.label("unmix:");
            for (id, name) in &cubes {
                if ui.button(format!("Unmix {name}")).clicked() {
                    self.commands.push(Command::Unmix(*id));
                }
            }
        });
        ui.small("Libraries hold reflectances: unmix a reflectance cube (the demo has one) for abundances that mean fractions of materials.");
        // INSS reads abundances from the scene's RGB picture, with the inss model the user
        // opened last, else a listed one (the shipped model).
        let inss_model = self.recon.opened.iter().rev().chain(&self.recon.methods).filter(|m| m.architecture == Some(crate::models::Architecture::Inss)).find_map(|m| m.model.clone());
        ui.horizontal_wrapped(|ui| {
            ui.label("from the RGB:");
            match (self.doc.input(), &inss_model) {
                (Some((input, _)), Some(model)) => {
                    if ui.button("From the RGB (INSS)").on_hover_text(format!("abundances over INSS's library, synthesised from {} by {}", input.name, model.display())).clicked() {
                        self.commands.push(Command::InssAbundances(input.id, model.clone()));
                    }
                    ui.checkbox(&mut self.abundances.inss_by_class, "by class").on_hover_text("sum the library's spectra by class (vegetation, bare soil, built, ...): maps that read as land cover");
                }
                (None, _) => {
                    ui.weak("this scene has no RGB input");
                }
                (_, None) => {
                    ui.weak("no inss model yet (`spectral-studio train --method inss`, then it is listed here)");
                }
            }
        });
        let Some(found) = self.abundances.of_active_scene(&self.doc) else {
            ui.label("No unmixing in this scene yet.");
            return;
        };
        // An Arc clone of the maps (for the bars and the grid's sizes).
        let (layer, result, leftover, signature) = (found.layer, found.maps.clone(), found.leftover, found.signature.clone());
        // Coloured in the job: a frame only uploads them, once per map.
        let missing: Vec<(usize, egui::ColorImage)> = (0..found.pixels.len())
            .filter(|i| !self.abundance_textures.contains_key(&(layer, *i)))
            .map(|i| (i, egui::ColorImage::from_rgba_unmultiplied([result.residual.ncols(), result.residual.nrows()], &found.pixels[i])))
            .collect();
        let unmixed = self.doc.get(layer).map(|l| l.name.clone()).unwrap_or_default();
        ui.label(format!("{unmixed}, {}: {} maps, mean {leftover} {:.4}", found.method, result.names.len(), result.mean_residual()));
        let n = result.names.len() + 1;
        let columns = n.clamp(1, 4);
        let cell = ((ui.available_width() / columns as f32) - 10.0).min((ui.available_height() - 200.0) / n.div_ceil(columns) as f32 - 24.0).max(80.0);
        for (i, image) in missing {
            let texture = ui.ctx().load_texture(format!("abundance-{layer}-{i}"), image, egui::TextureOptions::NEAREST);
            self.abundance_textures.insert((layer, i), texture);
        }
        egui::Grid::new("abundance-grid").num_columns(columns).show(ui, |ui| {
            for i in 0..n {
                let is_abundance = i < result.names.len();
                let map = if is_abundance { result.abundances.index_axis(ndarray::Axis(0), i) } else { result.residual.view() };
                let name = if is_abundance { result.names[i].as_str() } else { leftover };
                let Some(texture) = self.abundance_textures.get(&(layer, i)).cloned() else { continue };
                ui.vertical(|ui| {
                    let paint = view::Paint { texture: &texture, extent: egui::Rect::from_min_size(egui::Pos2::ZERO, Vec2::new(map.ncols() as f32, map.nrows() as f32)) };
                let pick = view::image_widget(ui, name, &[paint], (map.nrows(), map.ncols()), &mut self.transform, &self.pins, None, Vec2::splat(cell));
                    self.take_pick(pick);
                });
                if i % columns == columns - 1 {
                    ui.end_row();
                }
            }
        });
        let pixel = self.pins.last().map(|p| (p.row, p.col));
        super::abundances::AbundancePanel::pixel_bars(ui, &result, leftover, pixel);
        if let Some(signature) = &signature {
            super::abundances::signature_plot(ui, signature);
        }
    }

    pub(super) fn camera_tab(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let can_fit = self.doc.input().is_some() && self.doc.ground_truth().is_some();
            if ui.add_enabled(can_fit, egui::Button::new("Fit from input + ground truth")).on_hover_text("Estimate the camera's curves from the RGB image and its cube (regularised least squares)").clicked() {
                self.commands.push(Command::FitCamera);
            }
            if ui.add_enabled(self.doc.input().is_some(), egui::Button::new("Estimate from input alone (usr)")).on_hover_text("USR's camera estimator: the curves from the RGB picture alone, no cube, no calibration").clicked() {
                self.commands.push(Command::EstimateCamera);
            }
            if ui.button("Load curves CSV…").on_hover_text("columns wavelength,r,g,b").clicked() {
                self.commands.push(Command::LoadCameraCsv);
            }
        });
        let height = (ui.available_height() - 40.0) / 2.0;
        self.camera.curves_plot(ui, height.max(150.0));
        let spectrum = self.pins.last().and_then(|p| {
            let (layer, cube) = self.doc.ground_truth().or_else(|| self.doc.reconstructions().next())?;
            (p.row < cube.rows() && p.col < cube.cols()).then(|| (format!("{} at ({}, {})", layer.name, p.col, p.row), cube.wavelengths.clone(), cube.spectrum(p.row, p.col)))
        });
        self.camera.teaching_view(ui, spectrum.as_ref().map(|(l, w, v)| (l.as_str(), w.as_slice(), v.as_slice())), (ui.available_height() - 50.0).max(120.0));
    }

    pub(super) fn fusion_tab(&mut self, ui: &mut egui::Ui) {
        ui.columns(2, |cols| {
            let ui = &mut cols[0];
            ui.heading("Fusion (UAL)");
            ui.label("A high-resolution RGB and a low-resolution cube of one scene into a sharp cube; the blur between them is learned on the pair itself.");
            let mut asked = Vec::new();
            self.fusion.settings_ui(ui, &self.doc, &mut asked);
            self.commands.extend(asked.into_iter().map(Command::Fusion));
            self.fusion.run_ui(&mut cols[1]);
        });
    }

    pub(super) fn training_tab(&mut self, ui: &mut egui::Ui) {
        ui.columns(2, |cols| {
            let ui = &mut cols[0];
            ui.heading("New training run");
            let open_cube = self.doc.active_layers().find_map(|l| match (&l.data, &l.path) {
                (LayerData::Cube(_), Some(path)) if !l.is_reconstruction() => Some((l.name.clone(), path.clone())),
                _ => None,
            });
            self.training.settings_ui(ui, open_cube.as_ref().map(|(n, p)| (n.as_str(), p.as_path())));
            let running = self.training.runs.iter().any(|r| r.is_running());
            ui.horizontal(|ui| {
                if ui.add_enabled(!running, egui::Button::new("Start training")).clicked() {
                    self.commands.push(Command::StartTraining { resume: false });
                }
                if ui.add_enabled(running, egui::Button::new("Stop training")).clicked() {
                    self.commands.push(Command::StopTraining);
                }
                let resumable = self.training.runs.get(self.training.selected).is_some_and(|r| !r.is_running() && r.last_checkpoint().is_some());
                if ui.add_enabled(!running && resumable, egui::Button::new("Resume")).on_hover_text("continue the selected run from its last checkpoint").clicked() {
                    self.commands.push(Command::StartTraining { resume: true });
                }
            });
            ui.separator();
            ui.label("Runs");
            for (i, run) in self.training.runs.iter().enumerate() {
                let state = match () {
                    _ if run.is_running() => "running",
                    _ if run.status.starts_with("finished") => "finished",
                    _ if run.status.starts_with("failed") => "failed",
                    _ => "stopped",
                };
                if ui.selectable_label(self.training.selected == i, format!("{} ({}, {state})", run.settings.name, run.settings.method.name())).clicked() {
                    self.training.selected = i;
                }
            }
            let ui = &mut cols[1];
            self.training.run_ui(ui);
        });
    }
}
