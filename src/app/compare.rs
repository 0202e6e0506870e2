//! Compare: the reconstructions side by side (linked zoom, pan and picks), a sortable table of
//! their metrics against the ground truth, and per-band error curves.

use super::document::{Document, Role};
use crate::metrics::{self, BandErrors, MetricSet};
use crate::spectral::camera::CameraResponse;
use crate::{Cube, Result, RgbImage};
use egui_plot::{Legend, Line, Plot, PlotPoints};
use std::collections::HashMap;

/// The scores of one reconstruction against one ground truth.
#[derive(Clone, Debug)]
pub struct Scores {
    pub gt: u64,
    pub metrics: MetricSet,
    pub bands: BandErrors,
}

/// Score `pred` against `gt` ([`metrics::score`]); the consistency test uses the input RGB and
/// the assumed camera when the RGB is the prediction's size.
pub fn score(pred: &Cube, gt: &Cube, input: Option<(&RgbImage, &CameraResponse)>) -> Result<(MetricSet, BandErrors)> {
    let input = input.filter(|(rgb, _)| (rgb.rows(), rgb.cols()) == (pred.rows(), pred.cols()));
    let scored = metrics::score(pred, gt, input)?;
    Ok((scored.metrics, scored.bands))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Method,
    Mrae,
    Rmse,
    Psnr,
    Mpsnr,
    Ssim,
    Sam,
    Consistency,
    Seconds,
}

impl Column {
    const ALL: [Column; 9] = [Column::Method, Column::Mrae, Column::Rmse, Column::Psnr, Column::Mpsnr, Column::Ssim, Column::Sam, Column::Consistency, Column::Seconds];

    fn title(self) -> &'static str {
        match self {
            Column::Method => "method",
            Column::Mrae => "MRAE",
            Column::Rmse => "RMSE",
            Column::Psnr => "PSNR dB",
            Column::Mpsnr => "MPSNR dB",
            Column::Ssim => "SSIM",
            Column::Sam => "SAM °",
            Column::Consistency => "consist. MRAE",
            Column::Seconds => "time s",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub layer: u64,
    pub name: String,
    pub metrics: Option<MetricSet>,
    pub seconds: f64,
    /// Why the row has no scores and will get none (None: being scored, or scored).
    pub unscorable: Option<String>,
}

impl Row {
    fn value(&self, c: Column) -> f64 {
        let Some(m) = &self.metrics else { return f64::NAN };
        match c {
            Column::Method => 0.0,
            Column::Mrae => m.mrae,
            Column::Rmse => m.rmse,
            Column::Psnr => m.psnr,
            Column::Mpsnr => m.mpsnr,
            Column::Ssim => m.ssim,
            Column::Sam => m.sam_deg,
            Column::Consistency => m.consistency_mrae.unwrap_or(f64::NAN),
            Column::Seconds => self.seconds,
        }
    }
}

/// How the compare views are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every layer in its own view, side by side.
    Grid,
    /// Two layers in one view, split by a divider the user drags.
    Swipe,
}

pub struct ComparePanel {
    pub sort_by: Column,
    pub descending: bool,
    pub layout: Layout,
    /// The layers left and right of the swipe divider (None: the first two of the grid).
    pub swipe: (Option<u64>, Option<u64>),
    /// Where the divider is across the view, 0–1.
    pub split: f32,
}

impl Default for ComparePanel {
    fn default() -> Self {
        ComparePanel { sort_by: Column::Mrae, descending: false, layout: Layout::Grid, swipe: (None, None), split: 0.5 }
    }
}

impl ComparePanel {
    /// The two layers of the swipe view, among `ids` (the grid's layers): the user's choice
    /// where it is still open, else the first two, ground truth first.
    pub fn swipe_pair(&self, ids: &[u64]) -> Option<(u64, u64)> {
        let open = |id: Option<u64>| id.filter(|i| ids.contains(i));
        let left = open(self.swipe.0).or(ids.first().copied())?;
        let right = open(self.swipe.1).filter(|r| *r != left).or(ids.iter().copied().find(|i| *i != left))?;
        Some((left, right))
    }

    /// The table rows in the chosen order (unscored rows last).
    pub fn rows(&self, doc: &Document, scores: &HashMap<u64, Scores>) -> Vec<Row> {
        let gt_cube = doc.ground_truth();
        let gt = gt_cube.map(|(l, _)| l.id);
        let mut rows: Vec<Row> = doc
            .reconstructions()
            .map(|(layer, cube)| {
                let seconds = match &layer.role {
                    Role::Reconstruction { seconds, .. } => *seconds,
                    _ => f64::NAN,
                };
                let metrics = scores.get(&layer.id).filter(|s| Some(s.gt) == gt).map(|s| s.metrics);
                let unscorable = match gt_cube {
                    None => Some("no ground truth in this scene".to_string()),
                    Some((_, g)) if g.data.dim() != cube.data.dim() => {
                        let (b, r, c) = cube.data.dim();
                        let (gb, gr, gc) = g.data.dim();
                        Some(format!("not scored: {r}×{c}×{b} against a {gr}×{gc}×{gb} ground truth"))
                    }
                    _ => None,
                };
                Row { layer: layer.id, name: layer.name.clone(), metrics, seconds, unscorable }
            })
            .collect();
        let key = self.sort_by;
        rows.sort_by(|a, b| {
            let order = if key == Column::Method {
                a.name.cmp(&b.name)
            } else {
                let (x, y) = (a.value(key), b.value(key));
                // NaN (not scored yet) always sorts last, whatever the direction.
                match (x.is_nan(), y.is_nan()) {
                    (true, false) => return std::cmp::Ordering::Greater,
                    (false, true) => return std::cmp::Ordering::Less,
                    _ => x.total_cmp(&y),
                }
            };
            if self.descending {
                order.reverse()
            } else {
                order
            }
        });
        rows
    }

    pub fn table(&mut self, ui: &mut egui::Ui, rows: &[Row]) {
        egui::Grid::new("metrics-table").striped(true).num_columns(Column::ALL.len()).show(ui, |ui| {
            for c in Column::ALL {
                let arrow = if c == self.sort_by { if self.descending { " (desc)" } else { " (asc)" } } else { "" };
                if ui.button(format!("{}{arrow}", c.title())).on_hover_text("sort by this column").clicked() {
                    if self.sort_by == c {
                        self.descending = !self.descending;
                    } else {
                        self.sort_by = c;
                        // Higher is better for PSNR, MPSNR and SSIM: show the best first.
                        self.descending = matches!(c, Column::Psnr | Column::Mpsnr | Column::Ssim);
                    }
                }
            }
            ui.end_row();
            for row in rows {
                ui.label(&row.name);
                for (i, c) in Column::ALL[1..].iter().enumerate() {
                    let v = row.value(*c);
                    let text = if row.metrics.is_none() && *c != Column::Seconds {
                        // the reason once, in the first column; "…" while scores are on their way
                        match (&row.unscorable, i) {
                            (Some(why), 0) => why.clone(),
                            (Some(_), _) => String::new(),
                            (None, _) => "…".to_string(),
                        }
                    } else if v.is_nan() {
                        "–".to_string()
                    } else {
                        match c {
                            Column::Psnr | Column::Mpsnr => format!("{v:.2}"),
                            Column::Sam | Column::Seconds => format!("{v:.3}"),
                            Column::Consistency => format!("{v:.2e}"),
                            _ => format!("{v:.4}"),
                        }
                    };
                    ui.label(text);
                }
                ui.end_row();
            }
        });
    }
}

/// RMSE of each band image, one line per reconstruction.
pub fn band_error_plot(ui: &mut egui::Ui, doc: &Document, scores: &HashMap<u64, Scores>, [width, height]: [f32; 2]) {
    Plot::new("band-errors").width(width).height(height).legend(Legend::default()).x_axis_label("wavelength (nm)").y_axis_label("RMSE").include_y(0.0).show(ui, |plot_ui| {
        for (layer, cube) in doc.reconstructions() {
            let Some(s) = scores.get(&layer.id) else { continue };
            let points: PlotPoints = cube.wavelengths.iter().zip(&s.bands.rmse).map(|(&w, &e)| [w as f64, e]).collect();
            plot_ui.line(Line::new(layer.name.clone(), points));
        }
    });
}

/// The cubes a compare grid shows: ground truth first, then the reconstructions.
pub fn grid_layers(doc: &Document) -> Vec<u64> {
    doc.ground_truth().map(|(l, _)| l.id).into_iter().chain(doc.reconstructions().map(|(l, _)| l.id)).collect()
}
