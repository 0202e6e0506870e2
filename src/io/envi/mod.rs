//! ENVI raster and spectral-library files.
//!
//! An ENVI image is a text header (`x.hdr`) beside a raw data file (`x`, `x.img`, `x.dat`,
//! ...). Either may be given: [`header_for`] finds the header of a data file (`x.img.hdr`,
//! then `x.hdr`) and [`data_file_for`] the data file of a header.
//!
//! Reading runs in stages (see [`header`]): header text → checked fields → typed [`Header`]
//! → the raster decoder (`raster.rs`), which memory-maps the data and converts only the
//! requested [`Subset`] straight into the cube's `(bands, rows, cols)` f32 array.
//!
//! What reading does with the optional keys:
//! - `wavelength`/`fwhm` are converted to nm ([`WavelengthOrigin`] says how); without them
//!   the cube's wavelengths are band numbers 1..=bands, and `meta.description` says so.
//! - `reflectance scale factor`: values are divided by it; recorded in `meta.scale`.
//! - `data ignore value`: samples equal to it become NaN.
//! - `bbl` and `default bands` are kept in the [`Header`] (see [`read_with_header`]); every
//!   band is read.
//! - `description` becomes `meta.description`.
//!
//! A spectral library (`file type = ENVI Spectral Library`) reads with [`read_library`]; [`read`]
//! returns it as a cube of shape (channels, spectra, 1) (see [`SpectralLibrary::to_cube`]).
//!
//! Writing ([`write()`]) produces BSQ float32 little-endian with wavelengths (and fwhm), data
//! first and header last, each saved atomically.

mod fields;
pub mod header;
mod library;
pub(crate) mod raster;
pub(crate) mod write;

use std::path::{Path, PathBuf};

use ndarray::Array3;

pub use header::{ByteOrder, DataType, Header, Interleave, WavelengthOrigin, DATA_TYPES};
pub use library::SpectralLibrary;
pub use write::write;

use super::{check_range, Format, Subset};
use crate::{Cube, Error, Metadata, Result};

/// Data-file extensions tried beside a header, after the bare stem.
const DATA_EXTENSIONS: [&str; 7] = ["img", "dat", "raw", "bsq", "bil", "bip", "sli"];

/// Headers larger than this are not headers (a data file given a `.hdr` name, say).
const MAX_HEADER_BYTES: u64 = 16 << 20;

fn is_header_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("hdr"))
}

/// The header of `path`: `path` itself when it is a `.hdr` file; otherwise `x.img.hdr` (the
/// data name plus `.hdr`) or `x.hdr` (the extension replaced), whichever exists first.
pub fn header_for(path: &Path) -> Option<PathBuf> {
    if is_header_name(path) {
        return path.is_file().then(|| path.to_path_buf());
    }
    let mut candidates = Vec::new();
    for ext in ["hdr", "HDR"] {
        let mut appended = path.as_os_str().to_owned();
        appended.push(".");
        appended.push(ext);
        candidates.push(PathBuf::from(appended));
    }
    if path.extension().is_some() {
        candidates.push(path.with_extension("hdr"));
        candidates.push(path.with_extension("HDR"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// The data file of a header `x.hdr`: `x` itself, else `x.img`, `x.dat`, `x.raw`, `x.bsq`,
/// `x.bil`, `x.bip`, `x.sli` (also upper-case), whichever exists first.
pub fn data_file_for(header_path: &Path) -> Result<PathBuf> {
    let stem = header_path.with_extension("");
    let mut tried = vec![stem.clone()];
    for ext in DATA_EXTENSIONS {
        tried.push(stem.with_extension(ext));
        tried.push(stem.with_extension(ext.to_ascii_uppercase()));
    }
    // `x.img.hdr` → `x.img` is the bare stem, found first.
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let names: Vec<String> =
        tried.iter().step_by(2).filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    Err(Error::format(header_path, format!("no data file found beside the header (looked for {})", names.join(", "))))
}

/// The header and data paths for a path naming either.
fn locate(path: &Path) -> Result<(PathBuf, PathBuf)> {
    if is_header_name(path) {
        if !path.is_file() {
            return Err(Error::format(path, "header file not found"));
        }
        let data = data_file_for(path)?;
        return Ok((path.to_path_buf(), data));
    }
    if !path.is_file() {
        return Err(Error::format(path, "file not found"));
    }
    let header = header_for(path).ok_or_else(|| {
        Error::format(
            path,
            "no ENVI header found (looked for this name plus .hdr, and with the extension replaced by .hdr)",
        )
    })?;
    Ok((header, path.to_path_buf()))
}

/// Parse header text. `header_path` only names the file in errors. Never panics.
pub fn parse_header(text: &str, header_path: &Path) -> Result<Header> {
    header::parse(text).map_err(|e| Error::format(header_path, e.to_string()))
}

/// Read and parse the header of `path` (a header or a data file).
pub fn read_header(path: &Path) -> Result<Header> {
    // A header can be read without its data file (to inspect it, or to say what is missing).
    let header_path = if is_header_name(path) { path.to_path_buf() } else { locate(path)?.0 };
    load_header(&header_path)
}

fn load_header(header_path: &Path) -> Result<Header> {
    let file_len = std::fs::metadata(header_path).map_err(|e| Error::io(header_path, e))?.len();
    if file_len > MAX_HEADER_BYTES {
        return Err(Error::format(header_path, format!("{file_len} bytes is too large for an ENVI header")));
    }
    let bytes = std::fs::read(header_path).map_err(|e| Error::io(header_path, e))?;
    if bytes.contains(&0) {
        return Err(Error::format(header_path, "not an ENVI header: it holds binary data"));
    }
    // Old headers are Latin-1 (a bare 0xB5 for µ); read them byte for char when not UTF-8.
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => e.into_bytes().iter().map(|&b| b as char).collect(),
    };
    parse_header(&text, header_path)
}

/// Whether `path` (header or data file) is an ENVI image or an ENVI spectral library.
pub fn detect_kind(path: &Path) -> Result<Format> {
    let header = read_header(path)?;
    Ok(if header.is_library() { Format::EnviLibrary } else { Format::Envi })
}

/// Read an ENVI image (or a spectral library, as a (channels, spectra, 1) cube), only the
/// part `subset` names.
pub fn read(path: &Path, subset: &Subset) -> Result<Cube> {
    read_with_header(path, subset).map(|(cube, _)| cube)
}

/// [`read`], also returning the parsed header (`bbl`, `default bands`, band names, the
/// wavelength origin: what a cube's metadata has no place for).
pub fn read_with_header(path: &Path, subset: &Subset) -> Result<(Cube, Header)> {
    let (header_path, data_path) = locate(path)?;
    let header = load_header(&header_path)?;
    let subset_error = |e: Error| Error::format(path, e.to_string());
    if header.is_library() {
        let library = library::read_with(&header_path, &data_path, &header)?;
        let cube = library.to_cube().map_err(|e| Error::format(&header_path, e.to_string()))?;
        let cube = super::apply_subset(cube, subset).map_err(subset_error)?;
        return Ok((cube, header));
    }
    let window = raster::Window {
        bands: check_range(subset.bands.clone(), header.bands, "bands").map_err(subset_error)?,
        rows: check_range(subset.rows.clone(), header.lines, "rows").map_err(subset_error)?,
        cols: check_range(subset.cols.clone(), header.samples, "cols").map_err(subset_error)?,
    };
    let values = raster::read_window(&data_path, &header, &window)?;
    let shape = (window.bands.len(), window.rows.len(), window.cols.len());
    let data = Array3::from_shape_vec(shape, values)
        .map_err(|e| Error::format(&data_path, format!("decoded data do not fit the window: {e}")))?;
    let wavelengths: Vec<f32> = header.wavelengths[window.bands.clone()].iter().map(|&w| w as f32).collect();
    let mut cube = Cube::new(data, wavelengths).map_err(|e| Error::format(&header_path, e.to_string()))?;
    cube.fwhm = header.fwhm.as_ref().map(|f| f[window.bands.clone()].iter().map(|&w| w as f32).collect());
    cube.meta = Metadata {
        source: Some(path.to_path_buf()),
        format: Some(Format::Envi.name().to_string()),
        scale: header.reflectance_scale_factor.map(|k| k as f32),
        description: describe(&header),
        // only when every band is read: a band subset renumbers them
        default_bands: if window.bands.start == 0 && window.bands.len() == header.bands { default_rgb(&header) } else { None },
        ..Metadata::default()
    };
    Ok((cube, header))
}

/// Open an ENVI image as a [`RawSource`](crate::io::source::RawSource): the header is parsed
/// and the data file's size checked now; samples are read when asked for.
pub fn open_source(path: &Path) -> Result<crate::io::source::RawSource> {
    let (header_path, data_path) = locate(path)?;
    let header = load_header(&header_path)?;
    if header.is_library() {
        return Err(Error::format(&header_path, "is a spectral library, not an image"));
    }
    let layout = crate::io::source::RawLayout {
        bands: header.bands,
        rows: header.lines,
        cols: header.samples,
        interleave: header.interleave,
        data_type: header.data_type,
        byte_order: header.byte_order,
        offset: header.header_offset as u64,
    };
    let meta = Metadata {
        source: Some(path.to_path_buf()),
        format: Some(Format::Envi.name().to_string()),
        scale: header.reflectance_scale_factor.map(|k| k as f32),
        description: describe(&header),
        default_bands: default_rgb(&header),
        ..Metadata::default()
    };
    let wavelengths = header.wavelengths.iter().map(|&w| w as f32).collect();
    let fwhm = header.fwhm.as_ref().map(|f| f.iter().map(|&w| w as f32).collect());
    raster::check_data_size(&data_path, &header)?;
    let fix = raster::Fixes::from_header(&header);
    crate::io::source::RawSource::new(&data_path, crate::io::source::RawCube { layout, fix, format: "envi", wavelengths, fwhm, meta })
}

/// The header's `default bands` when they name three bands (R, G, B) that exist.
fn default_rgb(header: &Header) -> Option<[usize; 3]> {
    match header.default_bands.as_deref() {
        Some(&[r, g, b]) if [r, g, b].iter().all(|&x| x < header.bands) => Some([r, g, b]),
        _ => None,
    }
}

/// The header's description, plus a note when the wavelengths are placeholders or guesses.
fn describe(header: &Header) -> Option<String> {
    let note = match header.wavelength_origin {
        WavelengthOrigin::BandNumbers => Some("no wavelengths in the header: band numbers 1..=bands stand in"),
        WavelengthOrigin::Index => Some("wavelength units = Index: the wavelengths are band numbers"),
        WavelengthOrigin::AssumedMicrometers => Some("wavelength units not given; values < 100 read as µm"),
        _ => None,
    };
    match (header.description.clone(), note) {
        (Some(d), Some(n)) => Some(format!("{d}\n({n})")),
        (None, Some(n)) => Some(format!("({n})")),
        (d, None) => d,
    }
}

/// Read an ENVI spectral library (`.sli` or its `.hdr`).
pub fn read_library(path: &Path) -> Result<SpectralLibrary> {
    let (header_path, data_path) = locate(path)?;
    let header = load_header(&header_path)?;
    library::read_with(&header_path, &data_path, &header)
}
