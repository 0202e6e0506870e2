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
//! [`write_cube`] writes the ARAD layout: a v7.3 MAT-file (user block, `MATLAB_class`
//! attributes) with `cube` as float32 of h5py shape (bands, cols, rows) and `bands` (nm) as a
//! MATLAB column vector, so scipy/h5py/MATLAB readers see the orientation of ARAD files.

use std::path::Path;

use hdf5_pure::{AttrValue, DType};

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

/// A root dataset as a key candidate; MATLAB dims are the HDF5 shape reversed.
fn candidate(name: &str, ds: &hdf5_pure::Dataset) -> Candidate {
    let shape = ds.shape().unwrap_or_default();
    let dims: Vec<usize> = shape.iter().rev().map(|&d| d as usize).collect();
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

/// Read a cube from a MATLAB v7.3 (or any HDF5) file; datasets at the root are the variables.
pub fn read_cube(path: &Path, key: Option<&str>) -> Result<Cube> {
    let file = hdf5_pure::File::open(path).map_err(|e| h5_err(path, "cannot open as HDF5", e))?;
    let root = file.root();
    let names = root.datasets().map_err(|e| h5_err(path, "cannot list datasets", e))?;
    let mut candidates = Vec::new();
    for name in &names {
        let ds = file.dataset(name).map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
        candidates.push(candidate(name, &ds));
    }
    let name = mat5::choose_key(&candidates, key).map_err(|m| Error::format(path, m))?;
    let ds = file.dataset(&name).map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
    let shape = ds.shape().map_err(|e| h5_err(path, &format!("dataset '{name}'"), e))?;
    let dims: Vec<usize> = shape.iter().rev().map(|&d| d as usize).collect();
    let data = ds.read_f32().map_err(|e| h5_err(path, &format!("reading '{name}'"), e))?;
    let n: usize = dims.iter().product();
    if data.len() != n {
        return Err(Error::format(
            path,
            format!("'{name}': shape {shape:?} needs {n} values, read {}", data.len()),
        ));
    }
    let array = mat5::matlab_to_cube_array(&dims, data, Layout::Hwc)
        .map_err(|m| Error::format(path, format!("'{name}': {m}")))?;
    let wavelengths = read_wavelengths(&file, &names, &name, path)?;
    mat5::assemble_cube(path, &name, array, wavelengths.as_ref().map(|(n, w)| (n.as_str(), w.clone())))
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
    mb.write_f64("bands", &[bands, 1], &wl).map_err(fail)?;
    let bytes = mb.finish().map_err(fail)?;
    super::atomic::write_bytes_atomically(path, &bytes)
}
