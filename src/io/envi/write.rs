//! Writing a cube as ENVI: BSQ, float32, little-endian, with wavelengths (nm) and fwhm.
//! A cube without wavelengths (band numbers 1..n) is written with `wavelength units = Index`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::is_header_name;
use crate::io::atomic::{refuse_overwriting_source, write_atomically};
use crate::{Cube, Result};

/// The (header, data) pair for an output path: `x.hdr` → (`x.hdr`, `x.img`); any other
/// `x.ext` → (`x.hdr`, `x.ext`); `x` → (`x.hdr`, `x`).
pub fn output_paths(path: &Path) -> (PathBuf, PathBuf) {
    if is_header_name(path) {
        (path.to_path_buf(), path.with_extension("img"))
    } else {
        (path.with_extension("hdr"), path.to_path_buf())
    }
}

/// Save `cube` as ENVI BSQ float32 little-endian. The data file is written first and the
/// header last, each atomically, so a header never describes data that are not there. Neither
/// file may be the cube's own source.
pub fn write(cube: &Cube, path: &Path) -> Result<()> {
    let (header_path, data_path) = output_paths(path);
    refuse_overwriting_source(cube.meta.source.as_deref(), &header_path)?;
    refuse_overwriting_source(cube.meta.source.as_deref(), &data_path)?;
    write_atomically(&data_path, |w| write_samples(cube, w))?;
    let text = header_text(cube);
    write_atomically(&header_path, |w| w.write_all(text.as_bytes()))
}

fn write_samples(cube: &Cube, w: &mut dyn Write) -> std::io::Result<()> {
    // Convert in blocks: one write call per 64 KiB rather than per value.
    let mut block = Vec::with_capacity(1 << 16);
    for &v in cube.data.iter() {
        block.extend_from_slice(&v.to_le_bytes());
        if block.len() >= 1 << 16 {
            w.write_all(&block)?;
            block.clear();
        }
    }
    w.write_all(&block)
}

fn list(values: &[f32]) -> String {
    let items: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    format!("{{{}}}", items.join(", "))
}

/// `Index` for a cube whose wavelengths are the band-number placeholder (so they read back as
/// band numbers, not as µm or nm), else `Nanometers`.
fn wavelength_units(wavelengths: &[f32]) -> &'static str {
    if crate::cube::are_band_numbers(wavelengths) {
        "Index"
    } else {
        "Nanometers"
    }
}

/// The header text; f32 `Display` is the shortest text that reads back to the same value.
pub fn header_text(cube: &Cube) -> String {
    header_text_for(cube.data.dim(), &cube.wavelengths, cube.fwhm.as_deref(), cube.meta.description.as_deref())
}

/// The header of a BSQ float32 little-endian file of `(bands, rows, cols)` samples.
pub fn header_text_for(
    (bands, rows, cols): (usize, usize, usize),
    wavelengths: &[f32],
    fwhm: Option<&[f32]>,
    description: Option<&str>,
) -> String {
    let mut h = String::from("ENVI\n");
    if let Some(d) = description {
        // Braces would end the value early; keep the text, not the braces.
        let d = d.replace('{', "(").replace('}', ")");
        h.push_str(&format!("description = {{{d}}}\n"));
    }
    h.push_str(&format!(
        "samples = {cols}\nlines = {rows}\nbands = {bands}\nheader offset = 0\nfile type = ENVI Standard\n\
         data type = 4\ninterleave = bsq\nbyte order = 0\nwavelength units = {}\n",
        wavelength_units(wavelengths)
    ));
    h.push_str(&format!("wavelength = {}\n", list(wavelengths)));
    if let Some(f) = fwhm.filter(|f| f.len() == bands) {
        h.push_str(&format!("fwhm = {}\n", list(f)));
    }
    h
}
