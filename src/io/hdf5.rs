//! MATLAB v7.3 files, which are HDF5 files (read and written with the pure-Rust `hdf5-pure`).
//!
//! MATLAB writes a 512-byte user block (the MAT header) before the HDF5 superblock, so the
//! HDF5 signature is looked for at offsets 0, 512, 1024, 2048, … ([`is_hdf5`]).
//!
//! MATLAB stores arrays column-major, so h5py (and this crate) see a MATLAB array of size
//! (rows, cols, bands) as a dataset of shape (bands, cols, rows). ARAD/NTIRE 2022 files hold
//! `cube` and `bands`, ICVL files `rad` and `bands`. The variable is chosen like in the v5
//! reader ([`super::mat5::choose_key`]); the cube pixel (row, col, band) equals MATLAB's
//! `A(row+1, col+1, band+1)`.
//!
//! That orientation is used only for MATLAB's arrays: the file has MATLAB's 512-byte user
//! block (header text "MATLAB 7.3 MAT-file"), or the dataset has a `MATLAB_class`
//! attribute. Any other HDF5 dataset (h5py, PyTorch/numpy pipelines) is read in C order with
//! the caller's [`Layout`]: (rows, cols, bands) or (bands, rows, cols).
//!
//! The declared size of the chosen dataset is checked against the file's size before any
//! data are read, so a crafted header cannot make the reader allocate gigabytes.
//!
//! [`write_cube`] writes the ARAD layout: a v7.3 MAT-file (user block, `MATLAB_class`
//! attributes) with `cube` as float32 of h5py shape (bands, cols, rows) and `bands` (nm) as a
//! MATLAB column vector, so scipy/h5py/MATLAB readers see the orientation of ARAD files. A
//! cube whose wavelengths are the band-number placeholder is written without `bands`.

use std::path::Path;

use hdf5_pure::{AttrValue, DType};
use ndarray::Array3;

use super::mat5::{self, Candidate, WAVELENGTH_KEYS};
use super::Layout;
use crate::{Cube, Error, Result};

/// Whether `path` is an HDF5 file: the signature at offset 0 or at 512, 1024, 2048, ….
pub fn is_hdf5(path: &Path) -> Result<bool> {
    hdf5_pure::is_hdf5(path).map_err(|e| Error::io(path, e))
}

fn h5_err(path: &Path, what: &str, e: hdf5_pure::Error) -> Error {
    Error::format(path, format!("{what}: {e}"))
}

/// The `MATLAB_class` attribute of a dataset, if it has one.
fn matlab_class(ds: &hdf5_pure::Dataset) -> Option<String> {
    match ds.attrs().ok()?.remove("MATLAB_class")? {
        AttrValue::String(s) | AttrValue::AsciiString(s) => Some(s),
        AttrValue::StringSized { value, .. } | AttrValue::AsciiStringSized { value, .. } => Some(value),
        _ => None,
    }
}

fn is_numeric(t: &DType) -> bool {
    matches!(
        t,
        DType::F32
            | DType::F64
            | DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::U64
    )
}

/// Whether the file is MATLAB's: its 512-byte user block starts with MATLAB's header text
/// ("MATLAB 7.3 MAT-file, ..."). A file starting with the HDF5 signature has no user block.
fn has_matlab_userblock(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 6];
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = file.take(6).read(&mut head).map_err(|e| Error::io(path, e))?;
    Ok(n == 6 && &head == b"MATLAB")
}

/// Whether a dataset is to be read in MATLAB's column-major orientation: the file is a
/// MAT-file, or the dataset carries MATLAB's `MATLAB_class` attribute.
fn is_matlab_array(matlab_file: bool, ds: &hdf5_pure::Dataset) -> bool {
    matlab_file || matlab_class(ds).is_some()
}

/// The array's dimensions in the order the reader interprets them: MATLAB's dims (the HDF5
/// shape reversed) for MATLAB arrays, the HDF5 (C-order) shape otherwise.
fn logical_dims(shape: &[u64], matlab: bool) -> Vec<usize> {
    let dims = shape.iter().map(|&d| usize::try_from(d).unwrap_or(usize::MAX));
    if matlab {
        dims.rev().collect()
    } else {
        dims.collect()
    }
}

/// A root dataset as a key candidate, described with its [`logical_dims`].
fn candidate(name: &str, ds: &hdf5_pure::Dataset, matlab: bool) -> Candidate {
    let shape = ds.shape().unwrap_or_default();
    let dims = logical_dims(&shape, matlab);
    let dtype = ds.dtype().ok();
    let class = matlab_class(ds);
    let type_name =
        class.clone().unwrap_or_else(|| dtype.as_ref().map(|t| t.to_string()).unwrap_or("unknown".into()));
    let description =
        format!("{type_name} {}", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"));
    let refusal = match &dtype {
        Some(DType::Compound(fields)) if fields.iter().any(|(f, _)| f == "imag") => {
            Some("complex data are not supported (only real arrays)".to_string())
        }
        Some(t) if !is_numeric(t) => Some(format!("its type {t} is not numeric")),
        None => Some("its type cannot be read".to_string()),
        _ if matches!(class.as_deref(), Some("char" | "logical" | "cell" | "struct")) => {
            Some(format!("it is a MATLAB {} variable, not a numeric array", class.unwrap_or_default()))
        }
        _ if !(2..=3).contains(&dims.len()) => {
            Some(format!("it has {} dimensions; a cube needs 3 (or 2 for one band)", dims.len()))
        }
        _ if dims.contains(&0) => Some("it is empty".to_string()),
        _ => None,
    };
    Candidate {
        name: name.to_string(),
        description,
        usable: refusal.is_none(),
        three_d: dims.len() == 3,
        refusal,
    }
}

/// Deflate cannot shrink data by more than about 1032:1; a dataset whose declared size
/// exceeds the file by more than this factor cannot be stored in it.
const MAX_COMPRESSION_RATIO: u64 = 1100;

/// Check the declared size of dataset `name` before reading it: the element count and byte
/// size must not overflow, and the bytes must fit in the file (uncompressed) or within the
/// best ratio deflate achieves (filtered). Returns the element count.
fn checked_len(path: &Path, name: &str, ds: &hdf5_pure::Dataset, shape: &[u64], file_size: u64) -> Result<usize> {
    let too_big = || Error::format(path, format!("'{name}': shape {shape:?} is too large to address"));
    let n = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(too_big)?;
    let element = ds.element_size().map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
    let bytes = n.checked_mul(element).ok_or_else(too_big)?;
    let ratio = if ds.filters().is_empty() { 1 } else { MAX_COMPRESSION_RATIO };
    let limit = file_size.saturating_mul(ratio).saturating_add(1 << 20);
    if bytes > limit {
        return Err(Error::format(
            path,
            format!(
                "'{name}': shape {shape:?} declares {bytes} bytes of data, more than a \
                 {file_size}-byte file can hold (unwritten, fill-value datasets are not supported)"
            ),
        ));
    }
    let n = usize::try_from(n).map_err(|_| too_big())?;
    n.checked_mul(std::mem::size_of::<f32>()).ok_or_else(too_big)?;
    Ok(n)
}

/// Turn C-order data of HDF5 shape `dims` (2 or 3 of them) into a cube array (bands, rows,
/// cols): `Hwc` reads (rows, cols, bands), `Chw` (bands, rows, cols), 2-D is one band.
fn c_order_to_cube_array(dims: &[usize], data: Vec<f32>, layout: Layout) -> std::result::Result<Array3<f32>, String> {
    let fail = |e: ndarray::ShapeError| e.to_string();
    match (dims, layout) {
        (&[rows, cols], _) => Array3::from_shape_vec((1, rows, cols), data).map_err(fail),
        (&[bands, rows, cols], Layout::Chw) => Array3::from_shape_vec((bands, rows, cols), data).map_err(fail),
        (&[rows, cols, bands], Layout::Hwc) => {
            if data.len() != rows * cols * bands {
                return Err(format!("shape {dims:?} needs {} values, read {}", rows * cols * bands, data.len()));
            }
            // (pixels, bands) row-major is one plane; its transpose is (bands, pixels).
            let planes = mat5::transpose_planes(&data, rows * cols, bands);
            Array3::from_shape_vec((bands, rows, cols), planes).map_err(fail)
        }
        _ => Err(format!("expected a 2-D or 3-D array, found shape {dims:?}")),
    }
}

/// The open file, its root datasets, the one holding the cube, and whether it is a MATLAB array.
struct Chosen {
    file: hdf5_pure::File,
    names: Vec<String>,
    name: String,
    matlab: bool,
}

/// Open `path` and choose the cube's dataset: `key`, or as the v5 reader chooses.
fn choose_dataset(path: &Path, key: Option<&str>) -> Result<Chosen> {
    let matlab_file = has_matlab_userblock(path)?;
    let file = hdf5_pure::File::open(path).map_err(|e| h5_err(path, "cannot open as HDF5", e))?;
    let names = file.root().datasets().map_err(|e| h5_err(path, "cannot list datasets", e))?;
    let mut candidates = Vec::new();
    for name in &names {
        let ds = file.dataset(name).map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
        candidates.push(candidate(name, &ds, is_matlab_array(matlab_file, &ds)));
    }
    let name = mat5::choose_key(&candidates, key).map_err(|m| Error::format(path, m))?;
    let ds = file.dataset(&name).map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
    let matlab = is_matlab_array(matlab_file, &ds);
    drop(ds);
    Ok(Chosen { file, names, name, matlab })
}

/// Read a cube from a MATLAB v7.3 (or any HDF5) file; datasets at the root are the variables.
///
/// MATLAB arrays (a MAT-file's user block, or a `MATLAB_class` attribute) are read in
/// MATLAB's orientation and `layout` applies to MATLAB's dims, as in the v5 reader; other
/// datasets are read in C order and `layout` applies to the HDF5 shape.
pub fn read_cube(path: &Path, key: Option<&str>, layout: Layout) -> Result<Cube> {
    let Chosen { file, names, name, matlab } = choose_dataset(path, key)?;
    let ds = file.dataset(&name).map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
    let shape = ds.shape().map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
    let n = checked_len(path, &name, &ds, &shape, file.file_size())?;
    let dims = logical_dims(&shape, matlab);
    let data = ds.read_f32().map_err(|e| h5_err(path, &format!("reading '{name}'"), e))?;
    if data.len() != n {
        return Err(Error::format(
            path,
            format!("'{name}': shape {shape:?} needs {n} values, read {}", data.len()),
        ));
    }
    let array = if matlab {
        mat5::matlab_to_cube_array(&dims, data, layout)
    } else {
        c_order_to_cube_array(&dims, data, layout)
    }
    .map_err(|m| Error::format(path, format!("'{name}': {m}")))?;
    let wavelengths = read_wavelengths(&file, &names, &name, path)?;
    mat5::assemble_cube(path, &name, array, wavelengths.as_ref().map(|(n, w)| (n.as_str(), w.clone())))
}

/// Open a cube in an HDF5 file as a [`RawSource`](crate::io::source::RawSource) read on demand,
/// when its samples lie in the file as one run a [`RawSource`] can address: a contiguous,
/// unfiltered dataset in C order ((rows, cols, bands) with [`Layout::Hwc`], which reads
/// band-interleaved by pixel; (bands, rows, cols) with [`Layout::Chw`], band-sequential).
/// `Ok(None)` otherwise (chunked or compressed data; MATLAB's column-major arrays, whose rows
/// are strided in the file; int8): the caller reads it whole.
pub fn open_source(path: &Path, key: Option<&str>, layout: Layout) -> Result<Option<crate::io::source::RawSource>> {
    use crate::io::envi::{ByteOrder, DataType, Interleave};
    use hdf5_pure::{Datatype, DatatypeByteOrder};
    let Chosen { file, names, name, matlab } = choose_dataset(path, key)?;
    let ds = file.dataset(&name).map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
    if matlab || !ds.filters().is_empty() {
        return Ok(None);
    }
    let Ok(hdf5_pure::Layout::Contiguous { address: Some(offset), size }) = ds.layout() else { return Ok(None) };
    let data_type = match ds.dtype() {
        Ok(DType::F32) => DataType::F32,
        Ok(DType::F64) => DataType::F64,
        Ok(DType::I16) => DataType::I16,
        Ok(DType::I32) => DataType::I32,
        Ok(DType::I64) => DataType::I64,
        Ok(DType::U8) => DataType::U8,
        Ok(DType::U16) => DataType::U16,
        Ok(DType::U32) => DataType::U32,
        Ok(DType::U64) => DataType::U64,
        _ => return Ok(None),
    };
    let byte_order = match ds.datatype() {
        Ok(Datatype::FixedPoint { byte_order, .. } | Datatype::FloatingPoint { byte_order, .. }) => match byte_order {
            DatatypeByteOrder::LittleEndian => ByteOrder::LittleEndian,
            DatatypeByteOrder::BigEndian => ByteOrder::BigEndian,
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let shape = ds.shape().map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
    checked_len(path, &name, &ds, &shape, file.file_size())?;
    let dims = logical_dims(&shape, false);
    let (bands, rows, cols, interleave) = match (dims.as_slice(), layout) {
        (&[r, c], _) => (1, r, c, Interleave::Bsq),
        (&[r, c, b], Layout::Hwc) => (b, r, c, Interleave::Bip),
        (&[b, r, c], Layout::Chw) => (b, r, c, Interleave::Bsq),
        _ => return Ok(None),
    };
    let raw = crate::io::source::RawLayout { bands, rows, cols, interleave, data_type, byte_order, offset };
    if raw.data_bytes() != Some(size) {
        return Err(Error::format(path, format!("'{name}': {size} bytes stored for shape {shape:?} of {data_type:?}")));
    }
    let wavelengths = match read_wavelengths(&file, &names, &name, path)? {
        Some((_, w)) if w.len() == bands => mat5::wavelengths_from_vector(&w),
        Some((wname, w)) => {
            return Err(Error::format(path, format!("'{wname}' holds {} wavelengths but '{name}' has {bands} bands", w.len())));
        }
        None => crate::cube::assumed_wavelengths(bands),
    };
    let meta = crate::Metadata {
        source: Some(path.to_path_buf()),
        format: Some(super::Format::MatV73.name().to_string()),
        description: Some(format!("variable '{name}'")),
        ..Default::default()
    };
    let fix = crate::io::envi::raster::Fixes::default();
    crate::io::source::RawSource::new(path, crate::io::source::RawCube { layout: raw, fix, format: "hdf5", wavelengths, fwhm: None, meta }).map(Some)
}

/// The first wavelength vector among [`WAVELENGTH_KEYS`] (a dataset with at most one
/// dimension longer than 1), if any.
fn read_wavelengths(
    file: &hdf5_pure::File,
    names: &[String],
    cube_key: &str,
    path: &Path,
) -> Result<Option<(String, Vec<f32>)>> {
    for want in WAVELENGTH_KEYS {
        let Some(name) = names.iter().find(|n| n.eq_ignore_ascii_case(want) && n.as_str() != cube_key) else {
            continue;
        };
        let ds = file.dataset(name).map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
        let shape = ds.shape().map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
        if shape.iter().filter(|&&d| d > 1).count() > 1
            || !ds.dtype().map(|t| is_numeric(&t)).unwrap_or(false)
        {
            continue;
        }
        checked_len(path, name, &ds, &shape, file.file_size())?;
        let values = ds.read_f32().map_err(|e| h5_err(path, &format!("reading '{name}'"), e))?;
        return Ok(Some((name.clone(), values)));
    }
    Ok(None)
}

/// Write `cube` as a MATLAB v7.3 file in the ARAD layout (see the module doc), atomically.
pub fn write_cube(cube: &Cube, path: &Path) -> Result<()> {
    use hdf5_pure::mat::{MatBuilder, Options};
    let (bands, rows, cols) = cube.data.dim();
    // MATLAB column-major (rows, cols, bands) is C-order (bands, cols, rows).
    let standard = cube.data.as_standard_layout();
    let Some(flat) = standard.as_slice() else {
        return Err(Error::invalid("cube data could not be laid out contiguously"));
    };
    let column_major = mat5::transpose_planes(flat, rows, cols);
    let wl: Vec<f64> = cube.wavelengths.iter().map(|&w| w as f64).collect();
    let fail = |e: hdf5_pure::mat::MatError| {
        Error::invalid(format!("{}: cannot build the MAT-file: {e}", path.display()))
    };
    let mut mb = MatBuilder::new(Options::default());
    mb.write_f32("cube", &[rows, cols, bands], &column_major).map_err(fail)?;
    // Band numbers are a placeholder, not wavelengths: stored as `bands` they would read back
    // as µm (1, 2, … → 1000, 2000, … nm). Without `bands` they read back as band numbers.
    if !crate::cube::are_band_numbers(&cube.wavelengths) {
        mb.write_f64("bands", &[bands, 1], &wl).map_err(fail)?;
    }
    let bytes = mb.finish().map_err(fail)?;
    super::atomic::write_bytes_atomically(path, &bytes)
}
