//! Camera spectral response, and the one place the studio's camera convention lives
//! (ARCHITECTURE.md rule 4): on a given wavelength grid a camera is a 3×bands matrix C whose
//! rows (R, G, B) each sum to 1, so clean RGB = C·Y stays in [0, 1] whenever the cube does.
//! [`CameraResponse::on_grid`] is that function.
//!
//! Two cameras ship (Canon EOS 5D Mark II, Nikon 5100); any other loads from a CSV with
//! columns `wavelength,r,g,b`.

use std::path::Path;

use ndarray::{Array1, Array2, Axis};

use crate::spectral::library::{camera_asset, parse_curves};
use crate::{bail_invalid, Error, Result};

/// A camera's measured sensitivities on their native grid.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraResponse {
    pub name: String,
    /// nm, strictly increasing.
    pub wavelengths: Vec<f32>,
    /// (3, bands): rows R, G, B, as measured (not normalised; use [`Self::on_grid`]).
    pub matrix: Array2<f32>,
}

/// Built-in cameras: (canonical name, aliases).
const BUILTIN: &[(&str, &[&str])] = &[
    ("canon-eos-5d-mark-ii", &["canon", "canon-5d-mark-ii", "canon-eos-5d"]),
    ("nikon-5100", &["nikon", "nikon-d5100"]),
];

impl CameraResponse {
    /// A shipped camera by name (case-insensitive; aliases `canon`, `nikon`).
    pub fn builtin(name: &str) -> Result<CameraResponse> {
        let key = name.trim().to_ascii_lowercase().replace([' ', '_'], "-");
        let Some((canonical, _)) = BUILTIN.iter().find(|(n, aliases)| *n == key || aliases.contains(&key.as_str()))
        else {
            bail_invalid!(
                "unknown camera '{name}': choose one of {} (or give a CSV file with columns wavelength,r,g,b)",
                Self::builtin_names().join(", ")
            );
        };
        let (path, text) = camera_asset(canonical).expect("every built-in camera has an asset");
        Self::from_text(canonical, text, &path)
    }

    /// Canonical names of the shipped cameras.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(n, _)| *n).collect()
    }

    /// Read `wavelength,r,g,b` (a header line first; `#` comments and blank lines skipped).
    /// Errors name the file and the line.
    pub fn from_csv(path: &Path) -> Result<CameraResponse> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("camera").to_string();
        Self::from_text(&name, &text, path)
    }

    /// `wavelength,r,g,b` text, as [`Self::from_csv`] reads it.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("wavelength,r,g,b\n");
        for (i, wl) in self.wavelengths.iter().enumerate() {
            out.push_str(&format!("{wl},{},{},{}\n", self.matrix[[0, i]], self.matrix[[1, i]], self.matrix[[2, i]]));
        }
        out
    }

    /// A built-in camera name, or else a CSV path: the CLI's `--camera NAME|FILE`.
    pub fn parse(name_or_path: &str) -> Result<CameraResponse> {
        let path = Path::new(name_or_path);
        match Self::builtin(name_or_path) {
            Ok(c) => Ok(c),
            Err(_) if path.is_file() => Self::from_csv(path),
            Err(e) => Err(e),
        }
    }

    fn from_text(name: &str, text: &str, path: &Path) -> Result<CameraResponse> {
        let curves = parse_curves(text, path)?;
        if curves.columns.len() != 3 {
            return Err(Error::format(
                path,
                format!(
                    "a camera file needs columns wavelength,r,g,b; the header names {} data column(s): {}",
                    curves.columns.len(),
                    curves.header.join(",")
                ),
            ));
        }
        let bands = curves.wavelengths.len();
        let mut matrix = Array2::zeros((3, bands));
        for (c, col) in curves.columns.iter().enumerate() {
            if let Some(i) = col.iter().position(|&v| v < 0.0) {
                // Line numbers are not kept per value; name the wavelength instead.
                return Err(Error::format(
                    path,
                    format!(
                        "channel {} is negative ({}) at {} nm: sensitivities must be >= 0",
                        ["r", "g", "b"][c],
                        col[i],
                        curves.wavelengths[i]
                    ),
                ));
            }
            matrix.row_mut(c).assign(&Array1::from(col.clone()));
        }
        for (c, row) in matrix.axis_iter(Axis(0)).enumerate() {
            if row.sum() <= 0.0 {
                return Err(Error::format(path, format!("channel {} is zero everywhere", ["r", "g", "b"][c])));
            }
        }
        Ok(CameraResponse { name: name.to_string(), wavelengths: curves.wavelengths, matrix })
    }

    /// The 3×bands matrix C on `wavelengths` (linear interpolation of the measured curves),
    /// each row scaled to sum to 1 — the studio's convention. Outside the measured range the
    /// response is zero (see [`crate::cube::response_matrix`]); every channel must respond
    /// somewhere on the grid.
    pub fn on_grid(&self, wavelengths: &[f32]) -> Result<Array2<f32>> {
        if wavelengths.is_empty() {
            bail_invalid!("camera '{}': empty wavelength grid", self.name);
        }
        // zero outside the table: a sensor does not respond where its curves were not measured
        let m = crate::cube::response_matrix(&self.wavelengths, wavelengths)
            .map_err(|e| Error::invalid(format!("camera '{}': {e}", self.name)))?;
        let mut c = self.matrix.dot(&m.t()); // (3, bands)
        for (k, mut row) in c.axis_iter_mut(Axis(0)).enumerate() {
            let sum = row.sum();
            if sum.is_nan() || sum <= 0.0 {
                bail_invalid!(
                    "camera '{}': channel {} has no sensitivity on {}..{} nm",
                    self.name,
                    ["r", "g", "b"][k],
                    wavelengths[0],
                    wavelengths[wavelengths.len() - 1]
                );
            }
            row /= sum;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_aliases_load() {
        for n in ["canon", "Canon-EOS-5D-Mark-II", "nikon", "nikon-5100"] {
            let c = CameraResponse::builtin(n).unwrap();
            assert_eq!(c.matrix.shape()[0], 3);
            assert_eq!(c.wavelengths[0], 380.0);
        }
        let e = CameraResponse::builtin("sony").unwrap_err().to_string();
        assert!(e.contains("canon-eos-5d-mark-ii") && e.contains("nikon-5100"), "{e}");
    }

    #[test]
    fn on_grid_rows_sum_to_one_and_peak_where_expected() {
        let c = CameraResponse::builtin("canon").unwrap().on_grid(&crate::default_wavelengths()).unwrap();
        for row in c.axis_iter(Axis(0)) {
            assert!((row.sum() - 1.0).abs() < 1e-5);
        }
        let argmax = |r: usize| (0..31).max_by(|&a, &b| c[[r, a]].total_cmp(&c[[r, b]])).unwrap();
        // red peaks in 580..640 nm, green in 500..560, blue in 430..480
        assert!((18..=24).contains(&argmax(0)), "{}", argmax(0));
        assert!((10..=16).contains(&argmax(1)), "{}", argmax(1));
        assert!((3..=8).contains(&argmax(2)), "{}", argmax(2));
        // a grid the camera does not respond on at all is refused ...
        assert!(CameraResponse::builtin("nikon").unwrap().on_grid(&[300.0, 350.0]).is_err());
        // ... but one that only extends past its table is fine: zero response out there
        let wide = CameraResponse::builtin("nikon").unwrap().on_grid(&[350.0, 550.0, 900.0]).unwrap();
        assert_eq!((wide[[1, 0]], wide[[1, 2]]), (0.0, 0.0));
        assert!((wide.row(1).sum() - 1.0).abs() < 1e-6);
    }
}
