//! ENVI spectral libraries (`.sli`): a one-band float image whose lines are spectra and whose
//! samples are the spectral channels, with `spectra names` in the header.

use std::path::Path;

use ndarray::{Array2, Array3};

use super::header::Header;
use super::raster::{read_window, Window};
use crate::{Cube, Error, Metadata, Result};

/// A set of named spectra on one wavelength grid.
#[derive(Clone, Debug, PartialEq)]
pub struct SpectralLibrary {
    /// One name per spectrum (`spectra names`; "1", "2", ... when the header has none).
    pub names: Vec<String>,
    /// nm, one per channel (see [`super::WavelengthOrigin`] for headers without them).
    pub wavelengths: Vec<f32>,
    pub fwhm: Option<Vec<f32>>,
    /// (spectra, channels)
    pub spectra: Array2<f32>,
    pub meta: Metadata,
}

impl SpectralLibrary {
    pub fn len(&self) -> usize {
        self.spectra.nrows()
    }
    pub fn is_empty(&self) -> bool {
        self.spectra.nrows() == 0
    }

    /// The library as a cube of shape (channels, spectra, 1): each spectrum is one pixel of a
    /// one-column image, so every cube tool (plots, resampling, unmixing) applies unchanged.
    pub fn to_cube(&self) -> Result<Cube> {
        let (n, channels) = self.spectra.dim();
        let data = Array3::from_shape_fn((channels, n, 1), |(b, s, _)| self.spectra[[s, b]]);
        let mut cube = Cube::new(data, self.wavelengths.clone())?;
        cube.fwhm = self.fwhm.clone();
        cube.meta = self.meta.clone();
        Ok(cube)
    }
}

/// Read a library whose header has already been parsed.
pub(super) fn read_with(header_path: &Path, data_path: &Path, header: &Header) -> Result<SpectralLibrary> {
    if !header.is_library() {
        return Err(Error::format(
            header_path,
            format!(
                "not an ENVI spectral library (file type = {})",
                header.file_type.as_deref().unwrap_or("not given")
            ),
        ));
    }
    let values = read_window(data_path, header, &Window::whole(header))?;
    // bands = 1 (checked by the header), so the values are (lines = spectra, samples).
    let spectra = Array2::from_shape_vec((header.lines, header.samples), values)
        .map_err(|e| Error::format(data_path, format!("library data do not fit the header: {e}")))?;
    let names = header.spectra_names.clone().unwrap_or_else(|| (1..=header.lines).map(|i| i.to_string()).collect());
    Ok(SpectralLibrary {
        names,
        wavelengths: header.wavelengths.iter().map(|&w| w as f32).collect(),
        fwhm: header.fwhm.as_ref().map(|f| f.iter().map(|&w| w as f32).collect()),
        spectra,
        meta: Metadata {
            source: Some(data_path.to_path_buf()),
            format: Some("envi-sli".to_string()),
            scale: header.reflectance_scale_factor.map(|k| k as f32),
            description: header.description.clone(),
            ..Metadata::default()
        },
    })
}
