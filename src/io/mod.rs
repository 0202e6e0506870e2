//! Reading and writing files. One file per format; [`open`] and [`save`] pick the format
//! from the path (and, for reading, from the file's first bytes).

pub mod atomic;
pub mod buffer;
pub mod cave;
pub mod envi;
pub mod hdf5;
pub mod image_file;
pub mod mat5;
pub mod npy;
pub mod source;

use std::ops::Range;
use std::path::Path;

use crate::{Cube, Error, Result, RgbImage};

/// How a 3-D array without named axes is laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// (rows, cols, bands): numpy's and OpenCV's habit, and the default.
    #[default]
    Hwc,
    /// (bands, rows, cols).
    Chw,
}

/// Part of a cube to read; `None` means all of that axis. Indices, not wavelengths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subset {
    pub rows: Option<Range<usize>>,
    pub cols: Option<Range<usize>>,
    pub bands: Option<Range<usize>>,
}

/// Options for opening a cube.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// MATLAB/HDF5 variable name; found automatically when `None`.
    pub key: Option<String>,
    /// Axis order of plain arrays: .npy, MATLAB arrays (v5 and v7.3, in MATLAB's dims), and
    /// non-MATLAB HDF5 datasets (in their C-order shape).
    pub layout: Layout,
    /// Read only this part (ENVI reads only the bytes it needs).
    pub subset: Subset,
}

/// The file formats the studio knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Envi,
    EnviLibrary,
    Npy,
    MatV5,
    MatV73,
    CaveFolder,
    Png,
    Jpeg,
    Tiff,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Envi => "envi",
            Format::EnviLibrary => "envi-sli",
            Format::Npy => "npy",
            Format::MatV5 => "mat-v5",
            Format::MatV73 => "mat-v7.3",
            Format::CaveFolder => "cave",
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Tiff => "tiff",
        }
    }
    pub fn is_rgb_image(self) -> bool {
        matches!(self, Format::Png | Format::Jpeg | Format::Tiff)
    }
}

/// What a file turned out to hold.
#[derive(Clone, Debug)]
pub enum Loaded {
    Cube(Cube),
    Rgb(RgbImage),
}

/// The extension of `path`, lower-cased, without the dot ("" when there is none).
pub fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

/// Decide the format of `path` from its extension and, where that is ambiguous, its content.
pub fn detect(path: &Path) -> Result<Format> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return if cave::is_cave_folder(path) {
            Ok(Format::CaveFolder)
        } else {
            Err(Error::format(path, "folder holds no CAVE band images (*_ms_01.png … *_ms_31.png)"))
        };
    }
    let ext = extension(path);
    Ok(match ext.as_str() {
        "hdr" | "img" | "dat" | "raw" | "bsq" | "bil" | "bip" => envi::detect_kind(path)?,
        "sli" => Format::EnviLibrary,
        "npy" => Format::Npy,
        "mat" | "h5" | "hdf5" => {
            if hdf5::is_hdf5(path)? {
                Format::MatV73
            } else {
                Format::MatV5
            }
        }
        "png" => Format::Png,
        "jpg" | "jpeg" => Format::Jpeg,
        "tif" | "tiff" => Format::Tiff,
        "" if envi::header_for(path).is_some() => envi::detect_kind(path)?,
        _ => return Err(Error::format(path, format!("unknown file type '.{ext}'"))),
    })
}

/// Open a cube. RGB image files are refused here (see [`open_any`]).
pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Cube> {
    let path = path.as_ref();
    let format = detect(path)?;
    let mut cube = match format {
        Format::Envi | Format::EnviLibrary => envi::read(path, &opts.subset)?,
        Format::Npy => npy::read_cube(path, opts.layout)?,
        Format::MatV5 => mat5::read_cube(path, opts.key.as_deref(), opts.layout)?,
        Format::MatV73 => hdf5::read_cube(path, opts.key.as_deref(), opts.layout)?,
        Format::CaveFolder => cave::read(path)?,
        f if f.is_rgb_image() => {
            return Err(Error::format(path, "is an RGB image, not a hyperspectral cube"));
        }
        _ => unreachable!("all formats handled above"),
    };
    // ENVI applies the subset while reading; everything else is read whole and cut here.
    if !matches!(format, Format::Envi | Format::EnviLibrary) {
        cube = apply_subset(cube, &opts.subset).map_err(|e| Error::format(path, e.to_string()))?;
    }
    cube.meta.source = Some(path.to_path_buf());
    cube.meta.format = Some(format.name().to_string());
    Ok(cube)
}

/// Open a cube as a [`source::CubeSource`]: ENVI images, C-order `.npy` files and contiguous
/// C-order HDF5 datasets are read on demand from the file (see [`source`]); other formats
/// (MATLAB's column-major arrays included), and any subset, are read whole now.
pub fn open_source(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<std::sync::Arc<dyn source::CubeSource>> {
    let path = path.as_ref();
    let format = detect(path)?;
    if opts.subset == Subset::default() {
        match format {
            Format::Envi => return Ok(std::sync::Arc::new(envi::open_source(path)?)),
            Format::Npy => {
                if let Some(s) = npy::open_source(path, opts.layout)? {
                    return Ok(std::sync::Arc::new(s));
                }
            }
            Format::MatV73 => {
                if let Some(s) = hdf5::open_source(path, opts.key.as_deref(), opts.layout)? {
                    return Ok(std::sync::Arc::new(s));
                }
            }
            _ => {}
        }
    }
    Ok(std::sync::Arc::new(source::MemorySource { cube: std::sync::Arc::new(open(path, opts)?) }))
}

/// Open an RGB image (PNG, JPEG, TIFF, or a (rows, cols, 3) `.npy`) as a three-band
/// [`source::CubeSource`]: a `.npy` is read on demand, an image file is held decoded at its
/// stored depth. Values as stored (sRGB decoding is the caller's).
pub fn open_rgb_source(path: impl AsRef<Path>) -> Result<std::sync::Arc<dyn source::CubeSource>> {
    let path = path.as_ref();
    if extension(path) == "npy" {
        let header = npy::read_header(path)?;
        if !npy::is_rgb_shape(&header.shape, Layout::Hwc) {
            return Err(Error::format(path, format!("an RGB .npy has shape (rows, cols, 3); this one is {:?}", header.shape)));
        }
        if let Some(s) = npy::open_source(path, Layout::Hwc)? {
            return Ok(std::sync::Arc::new(s));
        }
        let rgb = npy::read_rgb(path, Layout::Hwc)?;
        let cube = Cube::new(rgb.data, crate::cube::band_numbers(3)).map_err(|e| Error::format(path, e.to_string()))?;
        return Ok(std::sync::Arc::new(source::MemorySource { cube: std::sync::Arc::new(cube) }));
    }
    Ok(std::sync::Arc::new(image_file::ImageSource::open(path)?))
}

/// (rows, cols) of an RGB image file or `.npy`, from its header alone.
pub fn rgb_dims(path: impl AsRef<Path>) -> Result<(usize, usize)> {
    let path = path.as_ref();
    if extension(path) == "npy" {
        let h = npy::read_header(path)?;
        return match h.shape.as_slice() {
            &[r, c, 3] => Ok((r, c)),
            s => Err(Error::format(path, format!("an RGB .npy has shape (rows, cols, 3); this one is {s:?}"))),
        };
    }
    let (w, h) = image::image_dimensions(path).map_err(|e| Error::format(path, format!("cannot read the image size: {e}")))?;
    Ok((h as usize, w as usize))
}

/// Open an RGB image or a cube, whichever the file holds. A `.npy` of shape (rows, cols, 3)
/// (or (3, rows, cols) with [`Layout::Chw`]) is taken as an RGB image, as `render` writes it.
pub fn open_any(path: impl AsRef<Path>, opts: &OpenOptions, srgb: bool) -> Result<Loaded> {
    let path = path.as_ref();
    let format = detect(path)?;
    if format.is_rgb_image() {
        Ok(Loaded::Rgb(image_file::read_rgb(path, srgb)?))
    } else if format == Format::Npy && npy::is_rgb_shape(&npy::read_header(path)?.shape, opts.layout) {
        Ok(Loaded::Rgb(read_npy_rgb(path, opts.layout, srgb)?))
    } else {
        Ok(Loaded::Cube(open(path, opts)?))
    }
}

/// Open an RGB image as linear RGB in [0, 1]; `srgb` says the file is sRGB-encoded. Image
/// files (PNG, JPEG, TIFF) and `.npy` arrays of shape (rows, cols, 3) are accepted.
pub fn open_rgb(path: impl AsRef<Path>, srgb: bool) -> Result<RgbImage> {
    let path = path.as_ref();
    if extension(path) == "npy" {
        read_npy_rgb(path, Layout::Hwc, srgb)
    } else {
        image_file::read_rgb(path, srgb)
    }
}

/// An RGB `.npy`, decoded from sRGB when asked (values as stored otherwise).
fn read_npy_rgb(path: &Path, layout: Layout, srgb: bool) -> Result<RgbImage> {
    let mut rgb = npy::read_rgb(path, layout)?;
    if srgb {
        rgb.data.mapv_inplace(crate::rgb::srgb_to_linear);
    }
    Ok(rgb)
}

/// Save a cube in the format the extension names (.hdr/.img → ENVI, .npy, .mat → v7.3 HDF5).
/// The write is atomic (temporary file, then rename) and never replaces the cube's own source.
pub fn save(cube: &Cube, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    atomic::refuse_overwriting_source(cube.meta.source.as_deref(), path)?;
    match extension(path).as_str() {
        "hdr" | "img" => envi::write(cube, path),
        "npy" => npy::write_cube(cube, path),
        "mat" | "h5" => hdf5::write_cube(cube, path),
        other => Err(Error::invalid(format!(
            "{}: cannot write a cube as '.{other}' (use .npy, .hdr or .mat)",
            path.display()
        ))),
    }
}

/// Refuse, before any work, an output path `save` could not write (unknown extension).
pub fn check_cube_output(path: &Path) -> Result<()> {
    match extension(path).as_str() {
        "hdr" | "img" | "npy" | "mat" | "h5" => Ok(()),
        other => Err(Error::invalid(format!(
            "{}: cannot write a cube as '.{other}' (use .npy, .hdr or .mat)",
            path.display()
        ))),
    }
}

/// Cut a cube read whole down to a subset.
pub fn apply_subset(cube: Cube, subset: &Subset) -> Result<Cube> {
    if subset == &Subset::default() {
        return Ok(cube);
    }
    let (b, r, c) = cube.data.dim();
    let rows = check_range(subset.rows.clone(), r, "rows")?;
    let cols = check_range(subset.cols.clone(), c, "cols")?;
    let bands = check_range(subset.bands.clone(), b, "bands")?;
    let data = cube.data.slice(ndarray::s![bands.clone(), rows, cols]).to_owned();
    let mut meta = cube.meta;
    if bands != (0..b) {
        meta.default_bands = None; // the bands are renumbered
    }
    Ok(Cube {
        data,
        wavelengths: cube.wavelengths[bands.clone()].to_vec(),
        fwhm: cube.fwhm.map(|f| f[bands].to_vec()),
        meta,
    })
}

/// Resolve an optional range against an axis length, refusing ranges that run past it.
pub fn check_range(range: Option<Range<usize>>, len: usize, axis: &str) -> Result<Range<usize>> {
    let range = range.unwrap_or(0..len);
    if range.start >= range.end || range.end > len {
        return Err(Error::invalid(format!(
            "{axis} subset {}..{} does not fit the {len} {axis} of the file",
            range.start, range.end
        )));
    }
    Ok(range)
}
