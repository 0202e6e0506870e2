//! NumPy `.npy` arrays, read and written by our own code.
//!
//! A `.npy` file is a magic string, a version, a Python-dict header
//! (`{'descr': '<f4', 'fortran_order': False, 'shape': (482, 512, 31), }`) and the raw data.
//! Reading is staged: [`parse_header`] turns the header bytes into a checked [`Header`], then
//! the data are bulk-decoded to f32 (one pass, no per-element bounds checks) and, for cubes,
//! re-laid out as `(bands, rows, cols)`.
//!
//! Conventions:
//! - A 3-D array is `(rows, cols, bands)` ([`Layout::Hwc`], the default) or
//!   `(bands, rows, cols)` ([`Layout::Chw`]).
//! - A 2-D array `(rows, cols)` is read as a single-band cube (a grey band image); any other
//!   rank is an error.
//! - A `.npy` file carries no wavelengths: see [`crate::cube::assumed_wavelengths`].
//! - Cubes are written `(rows, cols, bands)` float32, C order, little-endian, version 1.0
//!   ([`write_chw_as_hwc`], also used for RGB images and abundance maps).
//! - A `(rows, cols, 3)` array can be read as an RGB image ([`read_rgb`]).

use std::path::Path;

use ndarray::{Array3, ArrayD, ArrayView3, IxDyn};

use std::mem::MaybeUninit;

use super::Layout;
use crate::{Cube, Error, Result, RgbImage};

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy aligns the start of the data to 64 bytes (since numpy 1.14 for reading speed).
const ALIGN: usize = 64;

/// Element kinds the reader understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Float,
    Int,
    Uint,
}

/// A checked array description: the element type, the axis order and the shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// Bytes per element: 1, 2, 4 or 8.
    pub size: usize,
    pub big_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Where the data start in the file.
    pub data_offset: usize,
}

impl Header {
    /// Number of elements (checked for overflow by [`parse_header`]).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes of data the header promises.
    pub fn data_bytes(&self) -> usize {
        self.len() * self.size
    }
    /// numpy's name for the type, e.g. `<f4`.
    pub fn descr(&self) -> String {
        let k = match self.kind {
            Kind::Float => 'f',
            Kind::Int => 'i',
            Kind::Uint => 'u',
        };
        format!("{}{k}{}", if self.big_endian { '>' } else { '<' }, self.size)
    }
}

/// Parse the start of a `.npy` file (at least the whole header). Never panics; the error
/// message says what is wrong with the header.
pub fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a NumPy .npy file (missing \\x93NUMPY magic)".into());
    }
    let major = bytes[6];
    let (len_bytes, utf8) = match major {
        1 => (2, false),
        2 => (4, false),
        3 => (4, true),
        v => return Err(format!("unsupported .npy format version {v}.{}", bytes[7])),
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        return Err("file ends inside the .npy header".into());
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let end = start.checked_add(header_len).ok_or("header length overflows")?;
    if bytes.len() < end {
        return Err(format!("file ends inside the .npy header ({header_len} bytes announced)"));
    }
    let raw = &bytes[start..end];
    // Versions 1 and 2 are latin-1; the dict itself is ASCII in practice, so decode byte-wise.
    let text: String = if utf8 {
        std::str::from_utf8(raw).map_err(|_| "header is not valid UTF-8")?.to_string()
    } else {
        raw.iter().map(|&b| b as char).collect()
    };
    let dict = parse_dict(&text)?;
    let descr = match dict.get("descr") {
        Some(Value::Str(s)) => s.clone(),
        Some(Value::Other) => {
            return Err("structured dtypes are not supported (descr is not a string)".into())
        }
        Some(_) => return Err("header field 'descr' is not a string".into()),
        None => return Err("header lacks the 'descr' field".into()),
    };
    let fortran_order = match dict.get("fortran_order") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("header field 'fortran_order' is not True/False".into()),
        None => return Err("header lacks the 'fortran_order' field".into()),
    };
    let shape = match dict.get("shape") {
        Some(Value::Tuple(t)) => t
            .iter()
            .map(|v| match v {
                Value::Word(w) => {
                    w.parse::<usize>().map_err(|_| format!("shape entry '{w}' is not a non-negative integer"))
                }
                _ => Err("header field 'shape' is not a tuple of integers".to_string()),
            })
            .collect::<std::result::Result<Vec<usize>, String>>()?,
        Some(_) => return Err("header field 'shape' is not a tuple of integers".into()),
        None => return Err("header lacks the 'shape' field".into()),
    };
    let (kind, size, big_endian) = parse_descr(&descr)?;
    let mut n: usize = 1;
    for &d in &shape {
        n = n.checked_mul(d).ok_or("shape has more elements than memory can address")?;
    }
    n.checked_mul(size).ok_or("shape has more bytes than memory can address")?;
    Ok(Header { kind, size, big_endian, fortran_order, shape, data_offset: end })
}

fn parse_descr(descr: &str) -> std::result::Result<(Kind, usize, bool), String> {
    let unsupported = || {
        format!(
            "unsupported dtype '{descr}' (supported: float32/64, int8/16/32, uint8/16/32, either byte order)"
        )
    };
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(unsupported)?;
    let (big_endian, rest) = match order {
        '<' | '=' => (cfg!(target_endian = "big") && order == '=', chars.as_str()),
        '>' => (true, chars.as_str()),
        '|' => (false, chars.as_str()),
        _ => (false, descr),
    };
    let (kind, size) = match rest {
        "f4" => (Kind::Float, 4),
        "f8" => (Kind::Float, 8),
        "i1" => (Kind::Int, 1),
        "i2" => (Kind::Int, 2),
        "i4" => (Kind::Int, 4),
        "u1" => (Kind::Uint, 1),
        "u2" => (Kind::Uint, 2),
        "u4" => (Kind::Uint, 4),
        _ => return Err(unsupported()),
    };
    Ok((kind, size, big_endian))
}

/// The values a .npy header dict can hold that we care about.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    /// A bare word such as a number.
    Word(String),
    Tuple(Vec<Value>),
    /// Something else (a list, for structured dtypes): parsed past, then refused if used.
    Other,
}

/// A tiny parser for the Python dict literal in the header.
fn parse_dict(text: &str) -> std::result::Result<std::collections::HashMap<String, Value>, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let mut out = std::collections::HashMap::new();
    p.skip_ws();
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.skip_ws();
        p.expect(b':')?;
        p.skip_ws();
        let value = p.value(0)?;
        out.insert(key, value);
        p.skip_ws();
        if p.eat(b',') {
            continue;
        }
        p.skip_ws();
        p.expect(b'}')?;
        break;
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("malformed header dict: expected '{}' at byte {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("malformed header dict: expected a quoted string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == quote {
                let s = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(s);
            }
            self.i += 1;
        }
        Err("malformed header dict: unterminated string".into())
    }
    fn word(&mut self) -> &[u8] {
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
        {
            self.i += 1;
        }
        &self.s[start..self.i]
    }
    /// Comma-separated values up to `close` (the opening bracket already eaten).
    fn items(&mut self, close: u8, depth: usize) -> std::result::Result<Vec<Value>, String> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            if !self.eat(b',') {
                self.skip_ws();
                self.expect(close)?;
                return Ok(items);
            }
        }
    }

    fn value(&mut self, depth: usize) -> std::result::Result<Value, String> {
        if depth > 16 {
            return Err("malformed header dict: nested too deeply".into());
        }
        match self.peek() {
            Some(b'\'' | b'"') => Ok(Value::Str(self.string()?)),
            Some(b'(') => {
                self.i += 1;
                Ok(Value::Tuple(self.items(b')', depth)?))
            }
            Some(b'[') => {
                self.i += 1;
                self.items(b']', depth)?;
                Ok(Value::Other)
            }
            _ => match self.word() {
                b"True" => Ok(Value::Bool(true)),
                b"False" => Ok(Value::Bool(false)),
                b"" => Err(format!("malformed header dict: unexpected character at byte {}", self.i)),
                w => {
                    let text = String::from_utf8_lossy(w);
                    // numpy writes Python ints; old files written on Windows may say `3L`.
                    Ok(Value::Word(text.strip_suffix('L').unwrap_or(&text).to_string()))
                }
            },
        }
    }
}

/// Decode `N`-byte elements with `f` into f32s. `chunks_exact` lets the compiler drop bounds
/// checks and vectorise the plain cases.
fn decode_with<const N: usize>(src: &[u8], out: &mut Vec<f32>, f: impl Fn([u8; N]) -> f32) {
    out.extend(src.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        f(a)
    }));
}

/// Decode raw data bytes described by `h` to f32, in file order.
fn decode(h: &Header, src: &[u8]) -> Vec<f32> {
    let mut out = crate::io::buffer::with_capacity_f32(src.len() / h.size);
    decode_into(h, src, &mut out);
    out
}

/// Append the f32 values of `src` (raw data bytes described by `h`) to `out`.
fn decode_into(h: &Header, src: &[u8], out: &mut Vec<f32>) {
    let be = h.big_endian;
    match (h.kind, h.size) {
        (Kind::Float, 4) if be => decode_with(src, out, f32::from_be_bytes),
        (Kind::Float, 4) => decode_with(src, out, f32::from_le_bytes),
        (Kind::Float, 8) if be => decode_with(src, out, |b| f64::from_be_bytes(b) as f32),
        (Kind::Float, 8) => decode_with(src, out, |b| f64::from_le_bytes(b) as f32),
        (Kind::Int, 1) => decode_with(src, out, |b: [u8; 1]| b[0] as i8 as f32),
        (Kind::Uint, 1) => decode_with(src, out, |b: [u8; 1]| b[0] as f32),
        (Kind::Int, 2) if be => decode_with(src, out, |b| i16::from_be_bytes(b) as f32),
        (Kind::Int, 2) => decode_with(src, out, |b| i16::from_le_bytes(b) as f32),
        (Kind::Uint, 2) if be => decode_with(src, out, |b| u16::from_be_bytes(b) as f32),
        (Kind::Uint, 2) => decode_with(src, out, |b| u16::from_le_bytes(b) as f32),
        (Kind::Int, 4) if be => decode_with(src, out, |b| i32::from_be_bytes(b) as f32),
        (Kind::Int, 4) => decode_with(src, out, |b| i32::from_le_bytes(b) as f32),
        (Kind::Uint, 4) if be => decode_with(src, out, |b| u32::from_be_bytes(b) as f32),
        (Kind::Uint, 4) => decode_with(src, out, |b| u32::from_le_bytes(b) as f32),
        // parse_descr admits no other combination. Failing loudly matters: hwc_bytes_to_chw
        // trusts this function to produce one value per element before it calls set_len.
        (kind, size) => unreachable!("parse_descr admitted unsupported dtype {kind:?} of {size} bytes"),
    }
}

/// The bytes of a file: memory-mapped (no copy; the page cache is decoded straight into the
/// output) or, where mapping is not possible, read.
enum FileBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Read(v) => v,
        }
    }
}

fn file_bytes(path: &Path) -> Result<FileBytes> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len >= 1 << 20 {
        // SAFETY: the map is read-only and decoded into owned memory before the caller
        // returns. Another process truncating the file meanwhile could fault the read; every
        // mmap reader (numpy's mmap_mode included) accepts that risk.
        if let Ok(map) = unsafe { memmap2::MmapOptions::new().populate().map(&file) } {
            return Ok(FileBytes::Mapped(map));
        }
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(FileBytes::Read(bytes))
}

/// Open the file, parse and check the header, and return it with the file's bytes.
fn read_raw(path: &Path) -> Result<(Header, FileBytes)> {
    let bytes = file_bytes(path)?;
    let header = parse_header(&bytes).map_err(|m| Error::format(path, m))?;
    let need = header.data_bytes();
    let have = bytes.len().saturating_sub(header.data_offset);
    if have < need {
        return Err(Error::format(
            path,
            format!(
                "truncated data: shape {:?} of {} needs {need} bytes, the file holds {have}",
                header.shape,
                header.descr()
            ),
        ));
    }
    Ok((header, bytes))
}

/// Read any array as f32 in C (row-major) order, whatever its dtype or order in the file.
pub fn read_array(path: &Path) -> Result<ArrayD<f32>> {
    let (h, bytes) = read_raw(path)?;
    let data = decode(&h, &bytes[h.data_offset..h.data_offset + h.data_bytes()]);
    if h.fortran_order {
        // Fortran order of shape S is C order of reversed S; reversing the axes back gives S.
        let rev: Vec<usize> = h.shape.iter().rev().copied().collect();
        let a = ArrayD::from_shape_vec(IxDyn(&rev), data).map_err(|e| Error::format(path, e.to_string()))?;
        Ok(a.reversed_axes().as_standard_layout().into_owned())
    } else {
        ArrayD::from_shape_vec(IxDyn(&h.shape), data).map_err(|e| Error::format(path, e.to_string()))
    }
}

/// Read a hyperspectral cube (see the module doc for the axis conventions).
pub fn read_cube(path: &Path, layout: Layout) -> Result<Cube> {
    let (h, bytes) = read_raw(path)?;
    let src = &bytes[h.data_offset..h.data_offset + h.data_bytes()];
    let (bands, rows, cols) = match (h.shape.as_slice(), layout) {
        (&[r, c], _) => (1, r, c),
        (&[r, c, b], Layout::Hwc) => (b, r, c),
        (&[b, r, c], Layout::Chw) => (b, r, c),
        (s, _) => {
            return Err(Error::format(
                path,
                format!("expected a 3-D (or 2-D) array, found shape {s:?} ({}-D)", s.len()),
            ))
        }
    };
    if h.is_empty() {
        return Err(Error::format(path, format!("array of shape {:?} holds no values", h.shape)));
    }
    let data = match (h.fortran_order, h.shape.len(), layout) {
        // The common case gets a fused decode-and-transpose; everything else goes through
        // ndarray's general axis permutation.
        (false, 3, Layout::Hwc) => {
            Array3::from_shape_vec((bands, rows, cols), hwc_bytes_to_chw(&h, src, rows * cols, bands))
        }
        (false, _, _) => Array3::from_shape_vec((bands, rows, cols), decode(&h, src)),
        (true, _, _) => {
            let a = read_fortran_as_c(&h, src, path)?;
            let a = match layout {
                _ if h.shape.len() == 2 => a.insert_axis(ndarray::Axis(0)),
                Layout::Hwc => a.permuted_axes(IxDyn(&[2, 0, 1])),
                Layout::Chw => a,
            };
            Array3::from_shape_vec((bands, rows, cols), a.as_standard_layout().iter().copied().collect())
        }
    }
    .map_err(|e| Error::format(path, e.to_string()))?;
    let mut cube =
        Cube::new(data, crate::cube::assumed_wavelengths(bands)).map_err(|e| Error::format(path, e.to_string()))?;
    if crate::cube::are_band_numbers(&cube.wavelengths) {
        cube.meta.description = Some(format!("{bands} bands without wavelengths: band numbers 1..={bands} used"));
    }
    Ok(cube)
}

fn read_fortran_as_c(h: &Header, src: &[u8], path: &Path) -> Result<ArrayD<f32>> {
    let rev: Vec<usize> = h.shape.iter().rev().copied().collect();
    let a = ArrayD::from_shape_vec(IxDyn(&rev), decode(h, src))
        .map_err(|e| Error::format(path, e.to_string()))?;
    Ok(a.reversed_axes())
}

/// Decode pixel-major `(pixels, bands)` bytes straight into band-major `(bands, pixels)`
/// f32s. Pixels are taken in blocks so the input block stays in cache while each band's
/// output run is written sequentially; large arrays are split over threads by pixel range.
fn hwc_bytes_to_chw(h: &Header, src: &[u8], pixels: usize, bands: usize) -> Vec<f32> {
    const MIN_PIXELS_PER_THREAD: usize = 1 << 16;
    let n = pixels * bands;
    // Soundness: every output value comes from exactly one input element, so the input must
    // hold exactly n of them (read_raw checked the file; this guards any other caller).
    assert_eq!(src.len(), n * h.size, "hwc_bytes_to_chw needs exactly pixels*bands elements");
    // Filled through its spare capacity, never zero-filled first (a reused heap block would
    // cost a 30 MB memset on a typical cube).
    let mut out = crate::io::buffer::with_capacity_f32(n);
    if n == 0 {
        return out;
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(pixels / MIN_PIXELS_PER_THREAD)
        .clamp(1, 16);
    let per_thread = pixels.div_ceil(threads);
    // parts[t][b] is band b's output for thread t's pixel range
    let mut parts: Vec<Vec<&mut [MaybeUninit<f32>]>> = (0..threads).map(|_| Vec::with_capacity(bands)).collect();
    for plane in out.spare_capacity_mut()[..n].chunks_exact_mut(pixels) {
        for (t, piece) in plane.chunks_mut(per_thread).enumerate() {
            parts[t].push(piece);
        }
    }
    let pixel_bytes = bands * h.size;
    std::thread::scope(|scope| {
        for (t, planes) in parts.into_iter().enumerate() {
            let first = t * per_thread;
            let count = planes.first().map_or(0, |p| p.len());
            if count == 0 {
                continue;
            }
            let bytes = &src[first * pixel_bytes..(first + count) * pixel_bytes];
            scope.spawn(move || transpose_range(h, bytes, bands, planes));
        }
    });
    // SAFETY: the planes partition out[..n] (every band, every thread's pixel range), and
    // transpose_range writes every element of the planes it is given; a panicking thread
    // would have propagated out of the scope above before this line.
    unsafe { out.set_len(n) };
    out
}

/// One thread's share of [`hwc_bytes_to_chw`]: `src` holds the pixels whose band values go
/// to `planes[b]`.
fn transpose_range(h: &Header, src: &[u8], bands: usize, mut planes: Vec<&mut [MaybeUninit<f32>]>) {
    const BLOCK: usize = 2048;
    let mut decoded = Vec::with_capacity(BLOCK * bands);
    for (block_index, block) in src.chunks(BLOCK * bands * h.size).enumerate() {
        decoded.clear();
        decode_into(h, block, &mut decoded);
        let first = block_index * BLOCK;
        for (b, plane) in planes.iter_mut().enumerate() {
            for (d, px) in plane[first..].iter_mut().zip(decoded.chunks_exact(bands)) {
                d.write(px[b]);
            }
        }
    }
}

/// Header text for a C-order little-endian float32 array, padded so the data start on a
/// 64-byte boundary and the header ends in a newline (as numpy writes it).
pub(crate) fn header_bytes(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Version 1.0 has a 2-byte length; fall back to 2.0 for (absurdly) long shapes.
    let (version, prefix) = if dict.len() + 12 < u16::MAX as usize { (1u8, 10) } else { (2u8, 12) };
    let total = (prefix + dict.len() + 1).div_ceil(ALIGN) * ALIGN;
    let header_len = total - prefix;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Write a plain float32 array (C order, little-endian) of `shape`, atomically. Use it for
/// abundance maps, spectra and other arrays that are not cubes.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        crate::bail_invalid!(
            "{}: shape {shape:?} holds {n} values but {} were given",
            path.display(),
            data.len()
        );
    }
    let mut bytes = header_bytes(shape);
    bytes.reserve(data.len() * 4);
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    super::atomic::write_bytes_atomically(path, &bytes)
}

/// Write any f32 array (any memory order) as a C-order float32 `.npy`, atomically.
pub fn write_array(path: &Path, array: &ndarray::ArrayViewD<f32>) -> Result<()> {
    let c = array.as_standard_layout();
    match c.as_slice() {
        Some(s) => write_f32(path, array.shape(), s),
        None => write_f32(path, array.shape(), &c.iter().copied().collect::<Vec<_>>()),
    }
}

/// Write a `(channels, rows, cols)` array (a cube's data, an RGB image, abundance maps) as a
/// `(rows, cols, channels)` float32 `.npy` (C order, little-endian), atomically.
pub fn write_chw_as_hwc(path: &Path, data: ArrayView3<f32>) -> Result<()> {
    let (channels, rows, cols) = data.dim();
    let pixels = rows * cols;
    let mut bytes = header_bytes(&[rows, cols, channels]);
    bytes.reserve(pixels * channels * 4);
    let standard = data.as_standard_layout();
    let Some(flat) = standard.as_slice() else {
        return Err(Error::invalid("array data could not be laid out contiguously"));
    };
    // Pixel-major output gathered from the channel planes: each plane is read sequentially.
    let planes: Vec<&[f32]> = flat.chunks_exact(pixels.max(1)).collect();
    for p in 0..pixels {
        for plane in &planes {
            bytes.extend_from_slice(&plane[p].to_le_bytes());
        }
    }
    super::atomic::write_bytes_atomically(path, &bytes)
}

/// Write a cube as `(rows, cols, bands)` float32, C order, little-endian, atomically.
/// Wavelengths are not stored (the format has no place for them).
pub fn write_cube(cube: &Cube, path: &Path) -> Result<()> {
    write_chw_as_hwc(path, cube.data.view())
}

/// Parse the header of a `.npy` file, reading only its first bytes.
pub fn read_header(path: &Path) -> Result<Header> {
    use std::io::Read;
    // A header longer than this is absurd (numpy writes < 1 KiB); parse_header then says so.
    const MAX_HEADER: u64 = 1 << 20;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::new();
    file.take(MAX_HEADER).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
    parse_header(&head).map_err(|m| Error::format(path, m))
}

/// Open a C-order cube `.npy` as a [`RawSource`](crate::io::source::RawSource) read on demand:
/// (rows, cols, bands) is band-interleaved by pixel, (bands, rows, cols) band-sequential.
/// `Ok(None)` when the file cannot be read in place (Fortran order, int8, not 2-D or 3-D):
/// the caller reads it whole instead.
pub fn open_source(path: &Path, layout: Layout) -> Result<Option<crate::io::source::RawSource>> {
    use crate::io::envi::{ByteOrder, DataType, Interleave};
    let h = read_header(path)?;
    let data_type = match (h.kind, h.size) {
        (Kind::Float, 4) => DataType::F32,
        (Kind::Float, 8) => DataType::F64,
        (Kind::Int, 2) => DataType::I16,
        (Kind::Int, 4) => DataType::I32,
        (Kind::Uint, 1) => DataType::U8,
        (Kind::Uint, 2) => DataType::U16,
        (Kind::Uint, 4) => DataType::U32,
        _ => return Ok(None),
    };
    let (bands, rows, cols, interleave) = match (h.shape.as_slice(), layout) {
        _ if h.fortran_order || h.is_empty() => return Ok(None),
        (&[r, c], _) => (1, r, c, Interleave::Bsq),
        (&[r, c, b], Layout::Hwc) => (b, r, c, Interleave::Bip),
        (&[b, r, c], Layout::Chw) => (b, r, c, Interleave::Bsq),
        _ => return Ok(None),
    };
    let layout = crate::io::source::RawLayout {
        bands,
        rows,
        cols,
        interleave,
        data_type,
        byte_order: if h.big_endian { ByteOrder::BigEndian } else { ByteOrder::LittleEndian },
        offset: h.data_offset as u64,
    };
    let wavelengths = crate::cube::assumed_wavelengths(bands);
    let mut meta = crate::Metadata { source: Some(path.to_path_buf()), format: Some("npy".into()), ..Default::default() };
    if crate::cube::are_band_numbers(&wavelengths) {
        meta.description = Some(format!("{bands} bands without wavelengths: band numbers 1..={bands} used"));
    }
    let fix = crate::io::envi::raster::Fixes::default();
    crate::io::source::RawSource::new(path, crate::io::source::RawCube { layout, fix, format: "npy", wavelengths, fwhm: None, meta }).map(Some)
}

/// Whether an array of `shape` is an RGB image: `(rows, cols, 3)` for [`Layout::Hwc`],
/// `(3, rows, cols)` for [`Layout::Chw`].
pub fn is_rgb_shape(shape: &[usize], layout: Layout) -> bool {
    match layout {
        Layout::Hwc => matches!(shape, &[_, _, 3]),
        Layout::Chw => matches!(shape, &[3, _, _]),
    }
}

/// Read an RGB image saved as `.npy` (e.g. by `render -o x.npy`): `(rows, cols, 3)`, or
/// `(3, rows, cols)` with [`Layout::Chw`]. Values are returned as stored.
pub fn read_rgb(path: &Path, layout: Layout) -> Result<RgbImage> {
    let header = read_header(path)?;
    if !is_rgb_shape(&header.shape, layout) {
        let want = match layout {
            Layout::Hwc => "(rows, cols, 3)",
            Layout::Chw => "(3, rows, cols)",
        };
        return Err(Error::format(
            path,
            format!("shape {:?} is not an RGB image; expected {want}", header.shape),
        ));
    }
    let cube = read_cube(path, layout)?;
    RgbImage::new(cube.data).map_err(|e| Error::format(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[1, 0]);
        v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        v.extend_from_slice(header.as_bytes());
        v
    }

    #[test]
    fn parses_numpy_headers() {
        let h =
            parse_header(&file("{'descr': '<f4', 'fortran_order': False, 'shape': (482, 512, 31), }  \n"))
                .unwrap();
        assert_eq!(h.shape, vec![482, 512, 31]);
        assert_eq!((h.kind, h.size, h.big_endian, h.fortran_order), (Kind::Float, 4, false, false));
        let h = parse_header(&file("{'descr': '>u2', 'fortran_order': True, 'shape': (7,), }")).unwrap();
        assert_eq!((h.shape.clone(), h.big_endian, h.fortran_order), (vec![7], true, true));
        let h = parse_header(&file("{'descr': '|u1', 'fortran_order': False, 'shape': (), }")).unwrap();
        assert!(h.shape.is_empty());
    }

    #[test]
    fn refuses_bad_headers_with_reasons() {
        let e = parse_header(&file("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }")).unwrap_err();
        assert!(e.contains("unsupported dtype '<c8'"), "{e}");
        let e = parse_header(&file("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }"))
            .unwrap_err();
        assert!(e.contains("structured"), "{e}");
        let e = parse_header(&file("{'descr': '<f4', 'shape': (2,), }")).unwrap_err();
        assert!(e.contains("fortran_order"), "{e}");
        let e =
            parse_header(&file("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }")).unwrap_err();
        assert!(e.contains("-2"), "{e}");
        let huge = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}", u64::MAX, 3);
        assert!(parse_header(&file(&huge)).is_err());
        assert!(parse_header(b"\x93NUMPY\x01\x00\xff\x00{").unwrap_err().contains("ends inside"));
        assert!(parse_header(b"PK\x03\x04").is_err());
    }

    #[test]
    fn written_header_is_aligned_and_parses_back() {
        for shape in [vec![3usize], vec![482, 512, 31], vec![]] {
            let h = header_bytes(&shape);
            assert_eq!(h.len() % ALIGN, 0);
            assert_eq!(*h.last().unwrap(), b'\n');
            let parsed = parse_header(&h).unwrap();
            assert_eq!(parsed.shape, shape);
            assert_eq!(parsed.data_offset, h.len());
        }
    }

    #[test]
    fn large_hwc_file_is_mapped_and_split_over_threads_correctly() {
        // 160 000 pixels: above the per-thread minimum and the 1 MiB mapping threshold.
        let (rows, cols, bands) = (400, 400, 3);
        let data: Vec<f32> = (0..rows * cols * bands).map(|i| i as f32).collect();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.npy");
        write_f32(&p, &[rows, cols, bands], &data).unwrap();
        let cube = read_cube(&p, Layout::Hwc).unwrap();
        for ((b, r, c), &v) in cube.data.indexed_iter() {
            assert_eq!(v, ((r * cols + c) * bands + b) as f32);
        }
    }

    #[test]
    fn guessed_wavelengths() {
        use crate::cube::{are_band_numbers, assumed_wavelengths};
        assert_eq!(assumed_wavelengths(31)[30], 700.0);
        assert_eq!(assumed_wavelengths(3), vec![1.0, 2.0, 3.0]);
        assert!(are_band_numbers(&assumed_wavelengths(5)));
        assert!(!are_band_numbers(&assumed_wavelengths(31)));
    }
}
