//! Decoding ENVI sample data from a memory map into `(bands, rows, cols)` f32.
//!
//! A subset is read through a memory map, so it touches only the pages that hold it. A whole
//! BSQ cube is streamed instead (see [`stream_whole_bsq`]): it is the file in output order.
//! Every layout reduces to converting contiguous runs of samples:
//! - BSQ and BIL: for each (band, row) of the subset, the cols are one run in the file and one
//!   run in the output, converted straight across.
//! - BIP: for each row, the pixels' spectra are one run; it is converted into a small scratch
//!   buffer and scattered band by band (writes stay contiguous per band row).
//!
//! Conversion is monomorphised per sample type and byte order, so the inner loop is a plain
//! `chunks_exact` map that the compiler vectorises; the data-ignore test and the reflectance
//! scale are chosen outside the loop.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use memmap2::{Advice, MmapOptions};

use super::header::{ByteOrder, DataType, Header, Interleave};
use crate::{Error, Result};

/// Index ranges to read, already checked against the header's sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub bands: Range<usize>,
    pub rows: Range<usize>,
    pub cols: Range<usize>,
}

impl Window {
    pub fn whole(header: &Header) -> Window {
        Window { bands: 0..header.bands, rows: 0..header.lines, cols: 0..header.samples }
    }
    fn is_whole(&self, header: &Header) -> bool {
        self == &Window::whole(header)
    }
    fn shape(&self) -> (usize, usize, usize) {
        (self.bands.len(), self.rows.len(), self.cols.len())
    }
}

/// Check the data file's size against the header, then decode `window` of it.
/// Returns the values in `(bands, rows, cols)` order, C-contiguous.
pub(super) fn read_window(data_path: &Path, header: &Header, window: &Window) -> Result<Vec<f32>> {
    let file = File::open(data_path).map_err(|e| Error::io(data_path, e))?;
    let data_len = check_data_size(data_path, header)?;
    let offset = header.header_offset;
    let len = usize::try_from(data_len).map_err(|_| Error::format(data_path, "file too large for this machine"))?;
    if window.is_whole(header) && header.interleave == Interleave::Bsq {
        return stream_whole_bsq(file, data_path, header);
    }
    let options = {
        let mut o = MmapOptions::new();
        o.offset(offset as u64).len(len);
        o
    };
    // SAFETY: the map is read-only and copied out before this function returns. Another
    // process truncating the file meanwhile could fault the read; every mmap reader (numpy's
    // included) accepts that risk.
    let map = unsafe { options.map(&file) }.map_err(|e| Error::io(data_path, e))?;
    if !window.is_whole(header) {
        let _ = map.advise(Advice::Random);
    }
    Ok(decode(&map, header, window))
}

/// Check the data file's size against the header: exactly the header offset plus the samples.
/// Returns the samples' byte count.
pub(crate) fn check_data_size(data_path: &Path, header: &Header) -> Result<u64> {
    let file_len = std::fs::metadata(data_path).map_err(|e| Error::io(data_path, e))?.len();
    let data_len = header.data_bytes().ok_or_else(|| Error::format(data_path, "header sizes overflow"))?;
    let expected = data_len
        .checked_add(header.header_offset as u64)
        .ok_or_else(|| Error::format(data_path, "header offset + data size overflow"))?;
    if file_len < expected {
        return Err(Error::format(data_path, format!("truncated: expected {expected} bytes, file has {file_len}")));
    }
    if file_len > expected {
        return Err(Error::format(
            data_path,
            format!(
                "size disagrees with the header: expected {expected} bytes (header offset {} + \
                 {} lines × {} samples × {} bands × {} bytes), file has {file_len}",
                header.header_offset,
                header.lines,
                header.samples,
                header.bands,
                header.data_type.size()
            ),
        ));
    }
    Ok(data_len)
}

/// Bytes converted per step of [`stream_whole_bsq`]: small enough to stay in L2 cache.
const STREAM_CHUNK: usize = 256 * 1024;

/// A whole BSQ cube is the file's data in output order, so it is read sequentially in
/// cache-sized chunks and converted straight into the output: one kernel copy per byte, as
/// `numpy.fromfile` does, instead of mapping and faulting in every page of the file first.
fn stream_whole_bsq(mut file: File, data_path: &Path, header: &Header) -> Result<Vec<f32>> {
    use std::io::{Read, Seek, SeekFrom};
    let size = header.data_type.size();
    let n = header.bands * header.lines * header.samples;
    let fix = Fixes::from_header(header);
    // Appended chunk by chunk, never zero-filled: a reused heap block would need a memset.
    let mut out = crate::io::buffer::with_capacity_f32(n);
    if header.data_type == DataType::F32 && header.byte_order == ByteOrder::native() && fix.is_identity() {
        // The file holds exactly the output's bytes: let the kernel copy them in place.
        crate::io::buffer::read_f32_into_spare(&file, header.header_offset as u64, &mut out, n)
            .map_err(|e| Error::io(data_path, e))?;
        return Ok(out);
    }
    file.seek(SeekFrom::Start(header.header_offset as u64)).map_err(|e| Error::io(data_path, e))?;
    let per_chunk = (STREAM_CHUNK / size).max(1);
    let mut raw = vec![0u8; per_chunk * size];
    let mut values = vec![0f32; per_chunk];
    while out.len() < n {
        let m = per_chunk.min(n - out.len());
        file.read_exact(&mut raw[..m * size]).map_err(|e| Error::io(data_path, e))?;
        convert(header.data_type, header.byte_order, &raw[..m * size], &mut values[..m], &fix);
        out.extend_from_slice(&values[..m]);
    }
    Ok(out)
}

/// Decode `window` out of `bytes`, which hold exactly the header's data (offset removed).
pub(super) fn decode(bytes: &[u8], header: &Header, window: &Window) -> Vec<f32> {
    let (nb, nr, nc) = window.shape();
    let mut out = crate::io::buffer::zeroed_f32(nb * nr * nc);
    let size = header.data_type.size();
    let fix = Fixes::from_header(header);
    let (lines, samples, bands) = (header.lines, header.samples, header.bands);
    let run = |first_sample: usize, count: usize| &bytes[first_sample * size..(first_sample + count) * size];
    match header.interleave {
        Interleave::Bsq | Interleave::Bil => {
            for (bi, b) in window.bands.clone().enumerate() {
                for (ri, r) in window.rows.clone().enumerate() {
                    let line_start = match header.interleave {
                        Interleave::Bsq => (b * lines + r) * samples,
                        _ => (r * bands + b) * samples,
                    };
                    let dst = &mut out[(bi * nr + ri) * nc..(bi * nr + ri + 1) * nc];
                    convert(header.data_type, header.byte_order, run(line_start + window.cols.start, nc), dst, &fix);
                }
            }
        }
        Interleave::Bip => {
            let mut pixels = vec![0f32; nc * bands];
            for (ri, r) in window.rows.clone().enumerate() {
                let first = (r * samples + window.cols.start) * bands;
                convert(header.data_type, header.byte_order, run(first, nc * bands), &mut pixels, &fix);
                for (bi, b) in window.bands.clone().enumerate() {
                    let dst = &mut out[(bi * nr + ri) * nc..(bi * nr + ri + 1) * nc];
                    for (d, spectrum) in dst.iter_mut().zip(pixels.chunks_exact(bands)) {
                        *d = spectrum[b];
                    }
                }
            }
        }
    }
    out
}

/// What happens to each value after decoding: the ignore value becomes NaN, the rest are
/// divided by the reflectance scale factor (in f32, as Spectral Python does).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fixes {
    ignore: Option<f64>,
    divisor: Option<f32>,
}

impl Fixes {
    fn is_identity(&self) -> bool {
        self.ignore.is_none() && self.divisor.is_none()
    }

    pub(crate) fn from_header(h: &Header) -> Fixes {
        Fixes {
            // A NaN ignore value needs no work: NaN samples are NaN already.
            ignore: h.data_ignore_value.filter(|v| !v.is_nan()),
            divisor: h.reflectance_scale_factor.map(|k| k as f32),
        }
    }
}

/// A stored sample type.
trait Sample: Copy + PartialEq {
    const SIZE: usize;
    fn from_le(bytes: &[u8]) -> Self;
    fn from_be(bytes: &[u8]) -> Self;
    fn to_f32(self) -> f32;
    /// The ignore value in this type, if it can be stored in it at all (an ignore value of
    /// -1 can never match u8 data).
    fn exact(value: f64) -> Option<Self>;
}

/// `Sample` for the primitive types. Only `exact` differs: an integer type can hold an ignore
/// value only if it converts back unchanged (-1 never matches u8 data); a float always can.
macro_rules! sample {
    (int $($t:ty),*) => {$(
        sample!(@impl $t, |value| {
            let v = value as $t;
            (v as f64 == value).then_some(v)
        });
    )*};
    (float $($t:ty),*) => {$(
        sample!(@impl $t, |value| Some(value as $t));
    )*};
    (@impl $t:ty, |$value:ident| $exact:expr) => {
        impl Sample for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn from_le(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
            #[inline(always)]
            fn from_be(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_be_bytes(a)
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            fn exact($value: f64) -> Option<Self> {
                $exact
            }
        }
    };
}
sample!(int u8, i16, u16, i32, u32, i64, u64);
sample!(float f32, f64);

/// Convert the samples in `src` (stored as `ty` in `order`) into `dst`, applying `fix`.
pub(crate) fn convert(ty: DataType, order: ByteOrder, src: &[u8], dst: &mut [f32], fix: &Fixes) {
    match ty {
        DataType::U8 => convert_as::<u8>(order, src, dst, fix),
        DataType::I16 => convert_as::<i16>(order, src, dst, fix),
        DataType::U16 => convert_as::<u16>(order, src, dst, fix),
        DataType::I32 => convert_as::<i32>(order, src, dst, fix),
        DataType::U32 => convert_as::<u32>(order, src, dst, fix),
        DataType::I64 => convert_as::<i64>(order, src, dst, fix),
        DataType::U64 => convert_as::<u64>(order, src, dst, fix),
        DataType::F32 => convert_as::<f32>(order, src, dst, fix),
        DataType::F64 => convert_as::<f64>(order, src, dst, fix),
    }
}

fn convert_as<T: Sample>(order: ByteOrder, src: &[u8], dst: &mut [f32], fix: &Fixes) {
    match order {
        ByteOrder::LittleEndian => convert_with(src, dst, T::from_le, fix),
        ByteOrder::BigEndian => convert_with(src, dst, T::from_be, fix),
    }
}

#[inline(always)]
fn convert_with<T: Sample>(src: &[u8], dst: &mut [f32], read: impl Fn(&[u8]) -> T, fix: &Fixes) {
    let samples = src.chunks_exact(T::SIZE);
    let ignore = fix.ignore.and_then(T::exact);
    match (ignore, fix.divisor) {
        (None, None) => {
            for (d, s) in dst.iter_mut().zip(samples) {
                *d = read(s).to_f32();
            }
        }
        (None, Some(k)) => {
            for (d, s) in dst.iter_mut().zip(samples) {
                *d = read(s).to_f32() / k;
            }
        }
        (Some(bad), k) => {
            let k = k.unwrap_or(1.0);
            for (d, s) in dst.iter_mut().zip(samples) {
                let v = read(s);
                *d = if v == bad { f32::NAN } else { v.to_f32() / k };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::header::parse;
    use super::*;

    fn header(interleave: &str, extra: &str) -> Header {
        parse(&format!(
            "ENVI\nsamples = 3\nlines = 2\nbands = 2\ndata type = 2\ninterleave = {interleave}\nbyte order = 1\n{extra}"
        ))
        .unwrap()
    }

    /// value(b, r, c) = 100b + 10r + c, stored big-endian i16 in the given order.
    fn bytes(order: &str) -> Vec<u8> {
        let mut idx = Vec::new();
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..3 {
                    idx.push((a, b, c));
                }
            }
        }
        let mut out = Vec::new();
        let v = |b: i16, r: i16, c: i16| 100 * b + 10 * r + c;
        match order {
            "bsq" => {
                (0..2).for_each(|b| (0..2).for_each(|r| (0..3).for_each(|c| out.extend(v(b, r, c).to_be_bytes()))))
            }
            "bil" => {
                (0..2).for_each(|r| (0..2).for_each(|b| (0..3).for_each(|c| out.extend(v(b, r, c).to_be_bytes()))))
            }
            _ => (0..2).for_each(|r| (0..3).for_each(|c| (0..2).for_each(|b| out.extend(v(b, r, c).to_be_bytes())))),
        }
        out
    }

    #[test]
    fn every_interleave_decodes_to_band_row_col() {
        for order in ["bsq", "bil", "bip"] {
            let h = header(order, "");
            let all = decode(&bytes(order), &h, &Window::whole(&h));
            let want: Vec<f32> = (0..2)
                .flat_map(|b| (0..2).flat_map(move |r| (0..3).map(move |c| (100 * b + 10 * r + c) as f32)))
                .collect();
            assert_eq!(all, want, "{order}");
            let sub = decode(&bytes(order), &h, &Window { bands: 1..2, rows: 1..2, cols: 1..3 });
            assert_eq!(sub, vec![111.0, 112.0], "{order}");
        }
    }

    #[test]
    fn ignore_value_and_scale() {
        let h = header("bsq", "data ignore value = 101\nreflectance scale factor = 2\n");
        let all = decode(&bytes("bsq"), &h, &Window::whole(&h));
        assert_eq!(all[0], 0.0);
        assert_eq!(all[1], 0.5);
        assert!(all[7].is_nan());
        assert_eq!(all[8], 51.0);
        // an ignore value the type cannot hold matches nothing
        assert_eq!(i16::exact(0.5), None);
        assert_eq!(u8::exact(-1.0), None);
        assert_eq!(u16::exact(65535.0), Some(65535));
    }
}
