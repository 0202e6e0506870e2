//! MATLAB v5 MAT-files (also compressed), read by our own parser.
//!
//! A v5 file is a 128-byte header (text, subsystem offset, version, endian indicator `IM`
//! for little-endian or `MI` for big-endian) followed by data elements, each a tag (type,
//! byte count; "small" elements pack both into 4 bytes) and its payload padded to 8 bytes.
//! A variable is an `miMATRIX` element (possibly wrapped in a zlib-compressed
//! `miCOMPRESSED` one) made of sub-elements: array flags (class, complex), dimensions, name,
//! real part, imaginary part.
//!
//! Only real numeric arrays are read; cells, structs, chars, sparse and objects are listed but
//! skipped (asked for by key, they are an error naming them). MATLAB stores arrays
//! column-major, so with [`Layout::Hwc`] a MATLAB array `A` of size (rows, cols, bands) gives
//! cube pixel (row, col, band) = `A(row+1, col+1, band+1)`; with [`Layout::Chw`] `A` is read as
//! (bands, rows, cols).
//!
//! The variable to read is found by [`choose_key`], shared with the v7.3 (HDF5) reader.

use std::io::Read;
use std::path::Path;

use ndarray::{Array3, ArrayView3};

use super::Layout;
use crate::{Cube, Error, Result};

/// Names that hold the cube in the datasets people use (NTIRE `cube`, ICVL `rad`, Harvard
/// `ref`, CAVE-as-used-by-UAL `data`, ...), tried in this order.
pub const PREFERRED_KEYS: [&str; 7] = ["cube", "rad", "ref", "data", "img", "reflectance", "hsi"];
/// Names of a vector that gives the band centres, tried in this order.
pub const WAVELENGTH_KEYS: [&str; 4] = ["bands", "wavelengths", "wavelength", "wl"];

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;

/// What a variable holds, by MATLAB class code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatClass {
    Cell,
    Struct,
    Object,
    Char,
    Sparse,
    /// A numeric class: double, single, int8 … uint64.
    Numeric(&'static str),
    Unknown(u8),
}

impl MatClass {
    fn from_code(code: u8) -> Self {
        match code {
            1 => MatClass::Cell,
            2 => MatClass::Struct,
            3 => MatClass::Object,
            4 => MatClass::Char,
            5 => MatClass::Sparse,
            6 => MatClass::Numeric("double"),
            7 => MatClass::Numeric("single"),
            8 => MatClass::Numeric("int8"),
            9 => MatClass::Numeric("uint8"),
            10 => MatClass::Numeric("int16"),
            11 => MatClass::Numeric("uint16"),
            12 => MatClass::Numeric("int32"),
            13 => MatClass::Numeric("uint32"),
            14 => MatClass::Numeric("int64"),
            15 => MatClass::Numeric("uint64"),
            16 | 17 => MatClass::Object, // function handle, opaque
            c => MatClass::Unknown(c),
        }
    }
    pub fn name(self) -> String {
        match self {
            MatClass::Cell => "cell".into(),
            MatClass::Struct => "struct".into(),
            MatClass::Object => "object".into(),
            MatClass::Char => "char".into(),
            MatClass::Sparse => "sparse".into(),
            MatClass::Numeric(n) => n.into(),
            MatClass::Unknown(c) => format!("unknown class {c}"),
        }
    }
}

/// One top-level variable of a MAT-file.
#[derive(Clone, Debug)]
pub struct Variable {
    pub name: String,
    pub class: MatClass,
    /// MATLAB dimensions, e.g. `[rows, cols, bands]`.
    pub dims: Vec<usize>,
    pub complex: bool,
    /// The real part, decoded to f32 in MATLAB's column-major order (numeric classes only).
    real: Option<Vec<f32>>,
}

impl Variable {
    pub fn is_numeric(&self) -> bool {
        matches!(self.class, MatClass::Numeric(_))
    }
    /// `[rows, cols, bands]`-like description for messages, e.g. `single 3x4x5`.
    pub fn describe(&self) -> String {
        let dims = self.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        format!("{} {dims}{}", self.class.name(), if self.complex { " complex" } else { "" })
    }
}

/// Byte order of a file, with the readers that follow it.
#[derive(Clone, Copy)]
struct Endian {
    big: bool,
}

impl Endian {
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
}

/// A raw data element: its type and payload.
struct Element<'a> {
    ty: u32,
    data: &'a [u8],
}

/// Read the element at `*pos` in `buf`, advancing `*pos` past it (and its padding).
fn next_element<'a>(buf: &'a [u8], pos: &mut usize, e: Endian) -> std::result::Result<Element<'a>, String> {
    let at = *pos;
    let tag = buf.get(at..at + 8).ok_or_else(|| format!("truncated data element tag at byte {at}"))?;
    let first = e.u32(&tag[..4]);
    if first >> 16 != 0 {
        // Small data element: 2-byte count and 2-byte type share the first word.
        let n = (first >> 16) as usize;
        if n > 4 {
            return Err(format!("small data element at byte {at} claims {n} bytes (at most 4 fit)"));
        }
        *pos = at + 8;
        return Ok(Element { ty: first & 0xffff, data: &tag[4..4 + n] });
    }
    let n = e.u32(&tag[4..8]) as usize;
    let start = at + 8;
    let end = start.checked_add(n).filter(|&end| end <= buf.len()).ok_or_else(|| {
        format!("truncated: data element at byte {at} announces {n} bytes, {} remain", buf.len() - start)
    })?;
    // Compressed elements are not padded; everything else is padded to 8 bytes.
    *pos = if first == MI_COMPRESSED { end } else { (end + 7) & !7 };
    Ok(Element { ty: first, data: &buf[start..end] })
}

fn decode_numbers(ty: u32, data: &[u8], e: Endian) -> std::result::Result<Vec<f32>, String> {
    fn conv<const N: usize>(data: &[u8], big: bool, f: impl Fn([u8; N], bool) -> f32) -> Vec<f32> {
        data.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a, big)
            })
            .collect()
    }
    macro_rules! num {
        ($t:ty, $n:literal) => {
            conv::<$n>(data, e.big, |a, big| {
                if big {
                    <$t>::from_be_bytes(a) as f32
                } else {
                    <$t>::from_le_bytes(a) as f32
                }
            })
        };
    }
    Ok(match ty {
        MI_INT8 => num!(i8, 1),
        MI_UINT8 | MI_UTF8 => num!(u8, 1),
        MI_INT16 => num!(i16, 2),
        MI_UINT16 => num!(u16, 2),
        MI_INT32 => num!(i32, 4),
        MI_UINT32 => num!(u32, 4),
        MI_SINGLE => num!(f32, 4),
        MI_DOUBLE => num!(f64, 8),
        MI_INT64 => num!(i64, 8),
        MI_UINT64 => num!(u64, 8),
        other => return Err(format!("unknown numeric data type {other}")),
    })
}

fn decode_dims(el: &Element, e: Endian) -> std::result::Result<Vec<usize>, String> {
    if el.ty != MI_INT32 || el.data.len() % 4 != 0 {
        return Err("malformed dimensions sub-element".into());
    }
    el.data
        .chunks_exact(4)
        .map(|c| {
            let d = e.u32(c) as i32;
            usize::try_from(d).map_err(|_| format!("negative dimension {d}"))
        })
        .collect()
}

/// Parse an `miMATRIX` payload into a variable.
fn parse_matrix(data: &[u8], e: Endian) -> std::result::Result<Variable, String> {
    if data.is_empty() {
        return Ok(Variable {
            name: String::new(),
            class: MatClass::Unknown(0),
            dims: vec![],
            complex: false,
            real: None,
        });
    }
    let mut pos = 0;
    let flags = next_element(data, &mut pos, e)?;
    if flags.ty != MI_UINT32 || flags.data.len() < 8 {
        return Err("malformed array flags sub-element".into());
    }
    let word = e.u32(&flags.data[..4]);
    let class = MatClass::from_code((word & 0xff) as u8);
    let complex = word & 0x0800 != 0;
    let dims = decode_dims(&next_element(data, &mut pos, e)?, e)?;
    let name_el = next_element(data, &mut pos, e)?;
    let name = String::from_utf8_lossy(name_el.data).trim_end_matches('\0').to_string();
    let real = if matches!(class, MatClass::Numeric(_)) && !complex {
        let el = next_element(data, &mut pos, e).map_err(|m| format!("variable '{name}': {m}"))?;
        let values = decode_numbers(el.ty, el.data, e).map_err(|m| format!("variable '{name}': {m}"))?;
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("dimensions overflow")?;
        if values.len() != n {
            return Err(format!(
                "variable '{name}': dimensions {dims:?} need {n} values, the data hold {}",
                values.len()
            ));
        }
        Some(values)
    } else {
        None
    };
    Ok(Variable { name, class, dims, complex, real })
}

/// The most an `miCOMPRESSED` element may expand to, as a multiple of its compressed size
/// (plus [`INFLATE_SLACK`]). Deflate itself cannot exceed about 1032:1, so a larger declared
/// size can only be a corrupt or lying tag; no genuine file, however many zeros it holds, is
/// refused. Memory stays bounded by what the file can really hold (and [`MAX_INFLATED_BYTES`]).
const MAX_INFLATE_RATIO: u64 = 1100;
const INFLATE_SLACK: u64 = 1 << 20;
/// No single variable larger than this is inflated, whatever the file's size.
const MAX_INFLATED_BYTES: u64 = 16 << 30;

/// Inflate an `miCOMPRESSED` payload holding an `miMATRIX` element; `None` for other
/// elements (they carry no variable). The inner tag is inflated first and the declared size
/// checked against the compressed size, then at most that many bytes are inflated, so a
/// small crafted file cannot make the reader allocate gigabytes.
fn inflate_matrix(data: &[u8], e: Endian) -> std::result::Result<Option<Vec<u8>>, String> {
    let inflate_err = |err: std::io::Error| format!("compressed variable cannot be inflated: {err}");
    let mut z = flate2::read::ZlibDecoder::new(data);
    let mut tag = [0u8; 8];
    z.read_exact(&mut tag).map_err(inflate_err)?;
    let first = e.u32(&tag[..4]);
    if first != MI_MATRIX {
        return Ok(None); // small elements and non-matrix types carry no variable
    }
    let declared = u64::from(e.u32(&tag[4..8]));
    let compressed = data.len() as u64;
    let limit = compressed.saturating_mul(MAX_INFLATE_RATIO).saturating_add(INFLATE_SLACK).min(MAX_INFLATED_BYTES);
    if declared > limit {
        return Err(format!(
            "compressed variable declares {declared} bytes, more than {MAX_INFLATE_RATIO}x its \
             {compressed} compressed bytes allow (at most {limit}); the file is corrupt or a \
             decompression bomb"
        ));
    }
    // declared ≤ 16 GiB, so it fits in usize on 64-bit targets; refuse it elsewhere.
    let size = usize::try_from(declared).map_err(|_| format!("compressed variable of {declared} bytes is too large"))?;
    let mut out = Vec::with_capacity(size + 8);
    out.extend_from_slice(&tag);
    (&mut z).take(declared).read_to_end(&mut out).map_err(inflate_err)?;
    if out.len() < size + 8 {
        return Err(format!(
            "compressed variable declares {declared} bytes but inflates to only {}",
            out.len() - 8
        ));
    }
    Ok(Some(out))
}

/// Parse a whole MAT v5 file held in memory. Errors are messages; the caller adds the path.
pub fn parse_variables(bytes: &[u8]) -> std::result::Result<Vec<Variable>, String> {
    if bytes.len() < 128 {
        return Err("not a MATLAB v5 MAT-file (shorter than the 128-byte header)".into());
    }
    let e = match &bytes[126..128] {
        b"IM" => Endian { big: false },
        b"MI" => Endian { big: true },
        _ => {
            return Err("not a MATLAB v5 MAT-file (no 'IM'/'MI' endian indicator at byte 126)".into());
        }
    };
    let mut vars = Vec::new();
    let mut pos = 128;
    while pos + 8 <= bytes.len() {
        let el = next_element(bytes, &mut pos, e)?;
        let var = match el.ty {
            MI_MATRIX => parse_matrix(el.data, e)?,
            MI_COMPRESSED => {
                let Some(inner) = inflate_matrix(el.data, e)? else {
                    continue; // compressed non-matrix elements carry no variable
                };
                let mut p = 0;
                let inner_el = next_element(&inner, &mut p, e)?;
                parse_matrix(inner_el.data, e)?
            }
            _ => continue, // other top-level elements (subsystem data) are skipped
        };
        vars.push(var);
    }
    Ok(vars)
}

/// A candidate variable as seen by [`choose_key`]: its name, a short description and whether
/// it could be the cube (a real numeric array of 2 or 3 dimensions).
pub struct Candidate {
    pub name: String,
    pub description: String,
    /// Numeric, real, 3-D (or 2-D for a single-band cube).
    pub usable: bool,
    /// Exactly three dimensions.
    pub three_d: bool,
    /// Why the variable cannot be used, when it cannot.
    pub refusal: Option<String>,
}

/// Pick the variable holding the cube: the key given, else the first of [`PREFERRED_KEYS`]
/// that is a usable 3-D array, else the single usable 3-D array. Errors list what the file has.
pub fn choose_key(candidates: &[Candidate], key: Option<&str>) -> std::result::Result<String, String> {
    let listing = || {
        if candidates.is_empty() {
            "the file holds no variables".to_string()
        } else {
            let names: Vec<String> =
                candidates.iter().map(|c| format!("{} ({})", c.name, c.description)).collect();
            format!("variables: {}", names.join(", "))
        }
    };
    if let Some(key) = key {
        return match candidates.iter().find(|c| c.name == key) {
            None => Err(format!("no variable named '{key}'; {}", listing())),
            Some(c) if !c.usable => Err(format!(
                "variable '{key}' ({}) cannot be read as a cube: {}",
                c.description,
                c.refusal.clone().unwrap_or_else(|| "not a real numeric 2-D or 3-D array".into())
            )),
            Some(c) => Ok(c.name.clone()),
        };
    }
    for want in PREFERRED_KEYS {
        if let Some(c) =
            candidates.iter().find(|c| c.name.eq_ignore_ascii_case(want) && c.usable && c.three_d)
        {
            return Ok(c.name.clone());
        }
    }
    let three_d: Vec<&Candidate> = candidates.iter().filter(|c| c.usable && c.three_d).collect();
    match three_d.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => Err(format!("no 3-D numeric array found; {}", listing())),
        many => Err(format!(
            "several 3-D arrays ({}); choose one with --key",
            many.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

fn candidate(v: &Variable) -> Candidate {
    let refusal = if v.complex {
        Some("complex data are not supported (only real arrays)".to_string())
    } else if !v.is_numeric() {
        Some(format!("it is a {} variable, not a numeric array", v.class.name()))
    } else if !(2..=3).contains(&v.dims.len()) {
        Some(format!("it has {} dimensions; a cube needs 3 (or 2 for one band)", v.dims.len()))
    } else if v.dims.contains(&0) {
        Some("it is empty".to_string())
    } else {
        None
    };
    Candidate {
        name: v.name.clone(),
        description: v.describe(),
        usable: refusal.is_none(),
        three_d: v.dims.len() == 3,
        refusal,
    }
}

/// Turn MATLAB column-major data of MATLAB size `dims` (2 or 3 of them) into a cube array
/// (bands, rows, cols). `Hwc`: `A` is (rows, cols, bands); `Chw`: `A` is (bands, rows, cols).
/// A 2-D `A` is one band of (rows, cols). HDF5 v7.3 data, which h5py sees as the reversed
/// shape in C order, is the same memory and comes through here too.
pub fn matlab_to_cube_array(
    dims: &[usize],
    data: Vec<f32>,
    layout: Layout,
) -> std::result::Result<Array3<f32>, String> {
    let d3 = match *dims {
        [r, c] => [r, c, 1],
        [a, b, c] => [a, b, c],
        _ => return Err(format!("expected a 2-D or 3-D array, found dimensions {dims:?}")),
    };
    // Column-major (d0, d1, d2) is C-order (d2, d1, d0); reversing the axes gives A[i, j, k].
    let a = ArrayView3::from_shape((d3[2], d3[1], d3[0]), &data).map_err(|e| e.to_string())?.reversed_axes();
    let cube = match layout {
        Layout::Hwc => a.permuted_axes([2, 0, 1]),
        Layout::Chw if dims.len() == 2 => a.permuted_axes([2, 0, 1]),
        Layout::Chw => a,
    };
    Ok(transposed_copy(cube))
}

/// Copy a permuted view into a standard-layout array. The Hwc case (memory (bands, cols,
/// rows), wanted (bands, rows, cols)) is a per-band 2-D transpose, done in tiles so both the
/// reads and the writes stay in cache.
fn transposed_copy(view: ArrayView3<f32>) -> Array3<f32> {
    let (bands, rows, cols) = view.dim();
    let s = view.strides();
    let tiled = s[0] == (rows * cols) as isize && s[1] == 1 && s[2] == rows as isize && rows > 0 && cols > 0;
    let Some(src) = view.to_slice_memory_order().filter(|_| tiled) else {
        return view.as_standard_layout().into_owned();
    };
    let out = transpose_planes(src, cols, rows);
    // The length is bands*rows*cols by construction.
    Array3::from_shape_vec((bands, rows, cols), out)
        .unwrap_or_else(|_| view.as_standard_layout().into_owned())
}

/// Transpose each `(rows, cols)` row-major plane of `src` (planes one after another) into a
/// `(cols, rows)` plane, in tiles so both the reads and the writes stay in cache.
pub(crate) fn transpose_planes(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const T: usize = 32;
    let mut out = vec![0f32; src.len()];
    if rows == 0 || cols == 0 {
        return out;
    }
    for (src_plane, dst_plane) in src.chunks_exact(rows * cols).zip(out.chunks_exact_mut(rows * cols)) {
        for c0 in (0..cols).step_by(T) {
            for r0 in (0..rows).step_by(T) {
                for c in c0..(c0 + T).min(cols) {
                    let dst_row = &mut dst_plane[c * rows + r0..c * rows + (r0 + T).min(rows)];
                    for (k, d) in dst_row.iter_mut().enumerate() {
                        *d = src_plane[(r0 + k) * cols + c];
                    }
                }
            }
        }
    }
    out
}

/// Wavelengths in nm from a MATLAB `bands`-like vector given in nm or µm, by the crate's one
/// rule ([`crate::cube::wavelengths_to_nm`]: every value in (0, 100) means µm).
///
/// A vector 1, 2, …, n is ambiguous (band numbers, or µm?); MATLAB files in the wild that
/// name a vector `bands`/`wavelengths` hold centres, so the µm rule is kept and such a vector
/// reads as 1000, 2000, … nm. The studio itself never writes band numbers as `bands` (see
/// [`super::hdf5::write_cube`]), so its own files round-trip.
pub fn wavelengths_from_vector(values: &[f32]) -> Vec<f32> {
    crate::cube::wavelengths_to_nm(values)
}

/// Build the cube from the chosen array and an optional wavelength vector, checking that
/// their sizes agree.
pub(crate) fn assemble_cube(
    path: &Path,
    key: &str,
    data: Array3<f32>,
    wavelengths: Option<(&str, Vec<f32>)>,
) -> Result<Cube> {
    let bands = data.shape()[0];
    let wl = match wavelengths {
        Some((_, wl)) if wl.len() == bands => wavelengths_from_vector(&wl),
        Some((name, wl)) => {
            return Err(Error::format(
                path,
                format!("'{name}' holds {} wavelengths but '{key}' has {bands} bands", wl.len()),
            ));
        }
        None => crate::cube::assumed_wavelengths(bands),
    };
    let mut cube = Cube::new(data, wl).map_err(|e| Error::format(path, format!("'{key}': {e}")))?;
    cube.meta.description = Some(format!("variable '{key}'"));
    Ok(cube)
}

/// List the variables of a MAT v5 file (name, class, dims) without keeping their data.
pub fn list_variables(path: &Path) -> Result<Vec<Variable>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut vars = parse_variables(&bytes).map_err(|m| Error::format(path, m))?;
    for v in &mut vars {
        v.real = None;
    }
    Ok(vars)
}

/// Read a cube from a MAT v5 file (see the module doc).
pub fn read_cube(path: &Path, key: Option<&str>, layout: Layout) -> Result<Cube> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut vars = parse_variables(&bytes).map_err(|m| Error::format(path, m))?;
    let candidates: Vec<Candidate> = vars.iter().map(candidate).collect();
    let name = choose_key(&candidates, key).map_err(|m| Error::format(path, m))?;
    let wavelengths = WAVELENGTH_KEYS.iter().find_map(|k| {
        vars.iter()
            .find(|v| {
                v.name.eq_ignore_ascii_case(k)
                    && v.name != name
                    && v.dims.iter().filter(|&&d| d > 1).count() <= 1
            })
            .and_then(|v| v.real.clone().map(|r| (v.name.clone(), r)))
    });
    let Some(var) = vars.iter_mut().find(|v| v.name == name) else {
        return Err(Error::format(path, format!("variable '{name}' vanished")));
    };
    let data =
        var.real.take().ok_or_else(|| Error::format(path, format!("variable '{name}' holds no data")))?;
    let array = matlab_to_cube_array(&var.dims, data, layout)
        .map_err(|m| Error::format(path, format!("'{name}': {m}")))?;
    assemble_cube(path, &name, array, wavelengths.as_ref().map(|(n, w)| (n.as_str(), w.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matlab_order_maps_to_cube_order() {
        // A of size (2 rows, 3 cols, 4 bands), column-major, value = b*100 + r*10 + c
        let (r, c, b) = (2, 3, 4);
        let mut data = vec![0f32; r * c * b];
        for k in 0..b {
            for j in 0..c {
                for i in 0..r {
                    data[i + j * r + k * r * c] = (k * 100 + i * 10 + j) as f32;
                }
            }
        }
        let cube = matlab_to_cube_array(&[r, c, b], data.clone(), Layout::Hwc).unwrap();
        assert_eq!(cube.dim(), (4, 2, 3));
        for ((bb, rr, cc), v) in cube.indexed_iter() {
            assert_eq!(*v, (bb * 100 + rr * 10 + cc) as f32);
        }
        // Chw: A is (bands=2, rows=3, cols=4)
        let cube = matlab_to_cube_array(&[r, c, b], data, Layout::Chw).unwrap();
        assert_eq!(cube.dim(), (2, 3, 4));
        assert_eq!(cube[[1, 2, 3]], 3.0 * 100.0 + 10.0 + 2.0);
    }

    #[test]
    fn tiled_transpose_matches_on_odd_sizes() {
        let (r, c, b) = (70, 33, 3);
        let data: Vec<f32> = (0..r * c * b).map(|i| i as f32).collect();
        let fast = matlab_to_cube_array(&[r, c, b], data.clone(), Layout::Hwc).unwrap();
        let view = ArrayView3::from_shape((b, c, r), &data).unwrap().reversed_axes().permuted_axes([2, 0, 1]);
        assert_eq!(fast, view.as_standard_layout().into_owned());
    }

    fn cand(name: &str, usable: bool, three_d: bool) -> Candidate {
        Candidate { name: name.into(), description: "x".into(), usable, three_d, refusal: None }
    }

    #[test]
    fn key_choice() {
        let c = [cand("a", true, true), cand("rad", true, true), cand("bands", true, false)];
        assert_eq!(choose_key(&c, None).unwrap(), "rad");
        assert_eq!(choose_key(&c, Some("a")).unwrap(), "a");
        let e = choose_key(&c, Some("zz")).unwrap_err();
        assert!(e.contains("'zz'") && e.contains("rad") && e.contains("bands"), "{e}");
        let c = [cand("a", true, true), cand("b", true, true)];
        assert!(choose_key(&c, None).unwrap_err().contains("--key"));
        let c = [cand("a", true, false)];
        assert!(choose_key(&c, None).unwrap_err().contains("no 3-D"));
    }

    #[test]
    fn garbage_never_panics() {
        let mut bytes = vec![b' '; 128];
        bytes[126..128].copy_from_slice(b"IM");
        assert!(parse_variables(&bytes).unwrap().is_empty());
        for tail in [
            &[14u8, 0, 0, 0, 255, 255, 0, 0][..],
            &[15, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4],
            &[14, 0, 0, 0, 8, 0, 0, 0, 6, 0, 9, 0, 1, 1, 1, 1],
        ] {
            let mut b = bytes.clone();
            b.extend_from_slice(tail);
            assert!(parse_variables(&b).is_err());
        }
    }
}
