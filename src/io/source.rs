//! Cubes read in pieces: a [`CubeSource`] answers "these bands, these rows, these cols, every
//! `step`-th" from wherever the samples live, so a cube larger than memory can be browsed,
//! measured and converted without ever being whole in memory.
//!
//! The design, in one place:
//! - [`RawSource`] reads any file that stores the cube as one uniform block of samples (ENVI in
//!   every interleave, C-order `.npy`) with positioned reads (`pread`) into small buffers. It
//!   does not memory-map: pages of a map that a scan touched count as the process's resident
//!   memory until unmapped, while `pread` leaves them in the kernel's page cache, which is
//!   shared, reclaimable and not ours. Every read converts straight into the
//!   `(bands, rows, cols)` layout of [`Cube`], so the one-layout rule holds for what comes back.
//! - [`MemorySource`] wraps a [`Cube`] already in memory (formats read whole: MATLAB, HDF5,
//!   CAVE), so every consumer below has one code path.
//! - The consumers are free functions over `&dyn CubeSource`: [`spectrum`] (one strided
//!   read), [`window`], [`overview`] (all bands, decimated to a pixel budget),
//!   [`band_stats`] (one pass, bounded memory, all cores), [`save_streamed`] (ENVI or `.npy`,
//!   written block by block). Each bounds its memory by [`BLOCK_BYTES`] per thread.
//! - The studio keeps a decimated overview of every band in memory (at most
//!   [`OVERVIEW_PIXELS`] pixels) and reads full-resolution tiles and spectra from the source on
//!   demand; whether a file opens whole or lazily is decided by a memory cap
//!   ([`DEFAULT_MEMORY_CAP`]).

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use ndarray::{s, Array3};

use super::envi::raster::{convert, Fixes};
use super::envi::{ByteOrder, DataType, Interleave};
use crate::cube::Stats;
use crate::engine::JobContext;
use crate::{Cube, Error, Metadata, Rect, Result};

/// Cubes whose f32 data exceed this open lazily in the studio (1 GiB).
pub const DEFAULT_MEMORY_CAP: u64 = 1 << 30;

/// Working memory per thread of a streamed pass (statistics, conversion): 8 MiB of f32.
pub const BLOCK_BYTES: usize = 8 << 20;

/// Pixels of the in-memory overview of a lazily opened cube (about 512 × 512).
pub const OVERVIEW_PIXELS: usize = 512 * 512;

/// Raw bytes read per system call when a run is long (a whole band of a BSQ file).
const READ_CHUNK_BYTES: usize = 4 << 20;

/// A cube that can be read in parts. Reads return `(bands, rows, cols)` f32, like [`Cube`].
pub trait CubeSource: Send + Sync {
    /// (bands, rows, cols)
    fn shape(&self) -> (usize, usize, usize);
    fn wavelengths(&self) -> &[f32];
    fn fwhm(&self) -> Option<&[f32]>;
    fn meta(&self) -> &Metadata;
    /// How the samples are stored, for people: "envi bil int16", "in memory".
    fn storage(&self) -> String;
    /// Whether reads go to the file (true) or to a cube already in memory.
    fn is_lazy(&self) -> bool;
    /// The files whose bytes this source reads (nothing may be written over them).
    fn files(&self) -> Vec<PathBuf>;
    /// `bands` (indices, any order), and of `rows` × `cols` every `step`-th row and col
    /// counted from their starts: an array of shape (bands.len(), ⌈rows/step⌉, ⌈cols/step⌉).
    fn read(&self, bands: &[usize], rows: Range<usize>, cols: Range<usize>, step: usize) -> Result<Array3<f32>>;
}

/// Bytes the whole cube takes as f32 in memory.
pub fn memory_bytes(source: &dyn CubeSource) -> u64 {
    let (b, r, c) = source.shape();
    (b as u64) * (r as u64) * (c as u64) * 4
}

fn all_bands(source: &dyn CubeSource) -> Vec<usize> {
    (0..source.shape().0).collect()
}

/// The spectrum of one pixel: one strided read.
pub fn spectrum(source: &dyn CubeSource, row: usize, col: usize) -> Result<Vec<f32>> {
    let data = source.read(&all_bands(source), row..row + 1, col..col + 1, 1)?;
    Ok(data.into_raw_vec_and_offset().0)
}

/// Every band of a rectangle, as a cube (for full-resolution tiles and crops).
pub fn window(source: &dyn CubeSource, rect: Rect) -> Result<Cube> {
    let data = source.read(&all_bands(source), rect.row..rect.row + rect.height, rect.col..rect.col + rect.width, 1)?;
    with_header(source, data)
}

/// The whole cube in memory (the caller has checked it fits).
pub fn to_cube(source: &dyn CubeSource) -> Result<Cube> {
    let (_, rows, cols) = source.shape();
    window(source, Rect { row: 0, col: 0, height: rows, width: cols })
}

fn with_header(source: &dyn CubeSource, data: Array3<f32>) -> Result<Cube> {
    let mut cube = Cube::new(data, source.wavelengths().to_vec())?;
    cube.fwhm = source.fwhm().map(|f| f.to_vec());
    cube.meta = source.meta().clone();
    Ok(cube)
}

/// Every band of the cube at a `step` that keeps the overview within `max_pixels`.
#[derive(Clone, Debug)]
pub struct Overview {
    /// (bands, ⌈rows/step⌉, ⌈cols/step⌉); its metadata are the source's.
    pub cube: Cube,
    /// Overview pixel (r, c) is source pixel (r·step, c·step).
    pub step: usize,
}

/// The smallest step at which a rows × cols image has at most `max_pixels` pixels.
pub fn overview_step(rows: usize, cols: usize, max_pixels: usize) -> usize {
    let mut step = ((rows as f64 * cols as f64 / max_pixels.max(1) as f64).sqrt().floor() as usize).max(1);
    while rows.div_ceil(step) * cols.div_ceil(step) > max_pixels.max(1) {
        step += 1;
    }
    step
}

/// Read the decimated overview of every band, in row blocks so progress is reported and the
/// job can be cancelled.
pub fn overview(source: &dyn CubeSource, max_pixels: usize, job: &JobContext) -> Result<Overview> {
    overview_of(source, &all_bands(source), max_pixels, job)
}

/// [`overview`] of some `bands` only (their wavelengths must increase, as the source's do).
pub fn overview_of(source: &dyn CubeSource, bands: &[usize], max_pixels: usize, job: &JobContext) -> Result<Overview> {
    let (_, rows, cols) = source.shape();
    let step = overview_step(rows, cols, max_pixels);
    let (orows, ocols) = (rows.div_ceil(step), cols.div_ceil(step));
    let mut data = Array3::<f32>::zeros((bands.len(), orows, ocols));
    // Overview rows per read: about BLOCK_BYTES of output.
    let per_block = (BLOCK_BYTES / (4 * bands.len() * ocols).max(1)).clamp(1, orows);
    for Range { start: r0, end: r1 } in row_blocks(orows, per_block) {
        job.check()?;
        let part = source.read(bands, r0 * step..((r1 - 1) * step + 1), 0..cols, step)?;
        data.slice_mut(s![.., r0..r1, ..]).assign(&part);
        job.report(r1 as f32 / orows as f32, "reading the overview");
    }
    let mut cube = Cube::new(data, bands.iter().map(|&b| source.wavelengths()[b]).collect())?;
    cube.fwhm = source.fwhm().map(|f| bands.iter().map(|&b| f[b]).collect());
    cube.meta = source.meta().clone();
    Ok(Overview { cube, step })
}

/// Per-band and whole-cube statistics of a streamed pass.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CubeStats {
    pub all: Stats,
    /// One per band, in band order.
    pub bands: Vec<Stats>,
}

/// Running sums of one band (or of everything).
#[derive(Clone, Copy, Debug)]
struct Acc {
    n: u64,
    bad: u64,
    sum: f64,
    sum2: f64,
    min: f32,
    max: f32,
}

impl Default for Acc {
    fn default() -> Self {
        Acc { n: 0, bad: 0, sum: 0.0, sum2: 0.0, min: f32::INFINITY, max: f32::NEG_INFINITY }
    }
}

impl Acc {
    /// Add `values` (non-finite ones only counted). Eight independent lanes let the compiler
    /// vectorise the loop.
    fn add(&mut self, values: &[f32]) {
        const L: usize = 8;
        let (mut lo, mut hi) = ([f32::INFINITY; L], [f32::NEG_INFINITY; L]);
        let (mut s1, mut s2, mut bad) = ([0f64; L], [0f64; L], [0u64; L]);
        let chunks = values.chunks_exact(L);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..L {
                let v = c[i];
                let ok = v.is_finite();
                let x = if ok { v } else { 0.0 };
                lo[i] = if ok && v < lo[i] { v } else { lo[i] };
                hi[i] = if ok && v > hi[i] { v } else { hi[i] };
                s1[i] += x as f64;
                s2[i] += (x as f64) * (x as f64);
                bad[i] += u64::from(!ok);
            }
        }
        for &v in rest {
            if v.is_finite() {
                lo[0] = lo[0].min(v);
                hi[0] = hi[0].max(v);
                s1[0] += v as f64;
                s2[0] += (v as f64) * (v as f64);
            } else {
                bad[0] += 1;
            }
        }
        let bad: u64 = bad.iter().sum();
        self.bad += bad;
        self.n += values.len() as u64 - bad;
        self.sum += s1.iter().sum::<f64>();
        self.sum2 += s2.iter().sum::<f64>();
        self.min = lo.iter().fold(self.min, |a, &b| a.min(b));
        self.max = hi.iter().fold(self.max, |a, &b| a.max(b));
    }

    fn merge(&mut self, o: &Acc) {
        self.n += o.n;
        self.bad += o.bad;
        self.sum += o.sum;
        self.sum2 += o.sum2;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    fn stats(&self) -> Stats {
        if self.n == 0 {
            return Stats { min: f32::NAN, max: f32::NAN, mean: f64::NAN, std: f64::NAN, non_finite: self.bad as usize };
        }
        let mean = self.sum / self.n as f64;
        let var = (self.sum2 / self.n as f64 - mean * mean).max(0.0);
        Stats { min: self.min, max: self.max, mean, std: var.sqrt(), non_finite: self.bad as usize }
    }
}

/// Each block's index and its per-band sums.
type BlockSums = Vec<(usize, Vec<Acc>)>;

/// `0..rows` cut into consecutive blocks of `per_block` rows (the last may be shorter): the
/// order every streamed pass reads a source in.
pub fn row_blocks(rows: usize, per_block: usize) -> impl Iterator<Item = Range<usize>> {
    let per_block = per_block.max(1);
    (0..rows).step_by(per_block).map(move |r0| r0..(r0 + per_block).min(rows))
}

/// Rows per block of a streamed pass over `rect` with `bands` bands.
pub fn block_rows(bands: usize, width: usize) -> usize {
    (BLOCK_BYTES / (4 * bands * width).max(1)).max(1)
}

/// Statistics of every band over `rect` (the whole cube when `None`) in one pass: row blocks
/// of at most [`BLOCK_BYTES`] are read and summed by every core, so memory stays bounded
/// whatever the file's size. Non-finite values (and ENVI's data-ignore value) are counted, not
/// summed.
pub fn band_stats(source: &dyn CubeSource, rect: Option<Rect>, job: &JobContext) -> Result<CubeStats> {
    let (bands, rows, cols) = source.shape();
    let rect = rect.unwrap_or(Rect { row: 0, col: 0, height: rows, width: cols });
    check_rect(source, rect)?;
    let per_block = block_rows(bands, rect.width);
    let blocks = rect.height.div_ceil(per_block);
    let all = all_bands(source);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).clamp(1, 4).min(blocks.max(1));
    // Each block's sums are kept apart and merged in block order, so the result does not depend
    // on which thread summed which block: the same file gives the same bits every time.
    let work = || -> Result<BlockSums> {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= blocks || failed.load(Ordering::Relaxed) {
                return Ok(mine);
            }
            let r0 = rect.row + i * per_block;
            let r1 = (r0 + per_block).min(rect.row + rect.height);
            let result = job.check().and_then(|_| source.read(&all, r0..r1, rect.col..rect.col + rect.width, 1));
            let data = match result {
                Ok(d) => d,
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            };
            let mut accs = vec![Acc::default(); bands];
            for (acc, plane) in accs.iter_mut().zip(data.outer_iter()) {
                acc.add(plane.as_slice().expect("reads are C-contiguous"));
            }
            mine.push((i, accs));
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            job.report(n as f32 / blocks as f32, "statistics");
        }
    };
    let results: Vec<Result<BlockSums>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut out = vec![work()];
        out.extend(handles.into_iter().map(|h| h.join().expect("statistics workers do not panic")));
        out
    });
    let mut per_block: Vec<(usize, Vec<Acc>)> = Vec::with_capacity(blocks);
    for r in results {
        per_block.extend(r?);
    }
    per_block.sort_by_key(|(i, _)| *i);
    let mut per_band = vec![Acc::default(); bands];
    for (_, accs) in &per_block {
        for (a, b) in per_band.iter_mut().zip(accs) {
            a.merge(b);
        }
    }
    let mut total = Acc::default();
    per_band.iter().for_each(|a| total.merge(a));
    Ok(CubeStats { all: total.stats(), bands: per_band.iter().map(Acc::stats).collect() })
}

fn check_rect(source: &dyn CubeSource, r: Rect) -> Result<()> {
    let (_, rows, cols) = source.shape();
    if r.height == 0 || r.width == 0 || r.row + r.height > rows || r.col + r.width > cols {
        return Err(Error::invalid(format!(
            "region rows {}..{} cols {}..{} does not fit the {rows} × {cols} image",
            r.row,
            r.row + r.height,
            r.col,
            r.col + r.width
        )));
    }
    Ok(())
}

/// Check a read request against a source's shape (every reader calls this first).
pub fn check_read(shape: (usize, usize, usize), bands: &[usize], rows: &Range<usize>, cols: &Range<usize>, step: usize) -> Result<()> {
    let (nb, nr, nc) = shape;
    if step == 0 {
        return Err(Error::invalid("read step must be at least 1"));
    }
    if let Some(&b) = bands.iter().find(|&&b| b >= nb) {
        return Err(Error::invalid(format!("band {b} does not exist (the cube has {nb})")));
    }
    if rows.start >= rows.end || rows.end > nr || cols.start >= cols.end || cols.end > nc {
        return Err(Error::invalid(format!(
            "rows {}..{} cols {}..{} do not fit the {nr} × {nc} image",
            rows.start, rows.end, cols.start, cols.end
        )));
    }
    Ok(())
}

/// A cube already in memory, read through the same interface.
pub struct MemorySource {
    pub cube: Arc<Cube>,
}

impl CubeSource for MemorySource {
    fn shape(&self) -> (usize, usize, usize) {
        self.cube.data.dim()
    }
    fn wavelengths(&self) -> &[f32] {
        &self.cube.wavelengths
    }
    fn fwhm(&self) -> Option<&[f32]> {
        self.cube.fwhm.as_deref()
    }
    fn meta(&self) -> &Metadata {
        &self.cube.meta
    }
    fn storage(&self) -> String {
        "in memory".into()
    }
    fn is_lazy(&self) -> bool {
        false
    }
    fn files(&self) -> Vec<PathBuf> {
        self.cube.meta.source.iter().cloned().collect()
    }
    fn read(&self, bands: &[usize], rows: Range<usize>, cols: Range<usize>, step: usize) -> Result<Array3<f32>> {
        check_read(self.shape(), bands, &rows, &cols, step)?;
        let (nr, nc) = (rows.len().div_ceil(step), cols.len().div_ceil(step));
        let mut out = Array3::zeros((bands.len(), nr, nc));
        for (o, &b) in out.outer_iter_mut().zip(bands) {
            let mut o = o;
            o.assign(&self.cube.data.slice(s![b, rows.start..rows.end;step, cols.start..cols.end;step]));
        }
        Ok(out)
    }
}

/// Another source's samples under wavelengths the user gave (the file had none, or wrong
/// ones); the band widths, which belonged to the old wavelengths, are dropped.
pub struct Relabelled {
    pub inner: Arc<dyn CubeSource>,
    pub wavelengths: Vec<f32>,
}

impl Relabelled {
    /// `inner` under `wavelengths`: one per band, strictly increasing nm.
    pub fn new(inner: Arc<dyn CubeSource>, wavelengths: Vec<f32>) -> Result<Relabelled> {
        // the same rule as an in-memory cube's
        Cube::new(Array3::zeros((inner.shape().0, 0, 0)), wavelengths.clone())?;
        Ok(Relabelled { inner, wavelengths })
    }
}

impl CubeSource for Relabelled {
    fn shape(&self) -> (usize, usize, usize) {
        self.inner.shape()
    }
    fn wavelengths(&self) -> &[f32] {
        &self.wavelengths
    }
    fn fwhm(&self) -> Option<&[f32]> {
        None
    }
    fn meta(&self) -> &Metadata {
        self.inner.meta()
    }
    fn storage(&self) -> String {
        self.inner.storage()
    }
    fn is_lazy(&self) -> bool {
        self.inner.is_lazy()
    }
    fn files(&self) -> Vec<PathBuf> {
        self.inner.files()
    }
    fn read(&self, bands: &[usize], rows: Range<usize>, cols: Range<usize>, step: usize) -> Result<Array3<f32>> {
        self.inner.read(bands, rows, cols, step)
    }
}

/// Where and how a file stores its samples: one uniform block from `offset`.
#[derive(Clone, Debug)]
pub struct RawLayout {
    pub bands: usize,
    pub rows: usize,
    pub cols: usize,
    pub interleave: Interleave,
    pub data_type: DataType,
    pub byte_order: ByteOrder,
    /// Byte offset of the first sample.
    pub offset: u64,
}

impl RawLayout {
    pub fn data_bytes(&self) -> Option<u64> {
        (self.bands as u64)
            .checked_mul(self.rows as u64)?
            .checked_mul(self.cols as u64)?
            .checked_mul(self.data_type.size() as u64)
    }
}

/// What a file's header says of its cube: where and how the samples lie, how to fix them up,
/// and the facts a [`Cube`] carries beside its data.
pub struct RawCube {
    pub layout: RawLayout,
    /// Ignore value → NaN and scale factor, as whole reads apply them.
    pub(crate) fix: Fixes,
    /// The format's short name, for [`CubeSource::storage`].
    pub format: &'static str,
    pub wavelengths: Vec<f32>,
    pub fwhm: Option<Vec<f32>>,
    pub meta: Metadata,
}

/// A cube read from its file on demand with positioned reads (see the module doc).
pub struct RawSource {
    file: File,
    data_path: PathBuf,
    header: RawCube,
}

impl RawSource {
    /// Open `data_path` (its size checked against the layout) for the cube `cube` describes.
    pub(crate) fn new(data_path: &Path, cube: RawCube) -> Result<RawSource> {
        let file = File::open(data_path).map_err(|e| Error::io(data_path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(data_path, e))?.len();
        let need = cube
            .layout
            .data_bytes()
            .and_then(|n| n.checked_add(cube.layout.offset))
            .ok_or_else(|| Error::format(data_path, "header sizes overflow"))?;
        if file_len < need {
            return Err(Error::format(data_path, format!("truncated: expected {need} bytes, file has {file_len}")));
        }
        if cube.wavelengths.len() != cube.layout.bands {
            return Err(Error::format(
                data_path,
                format!("{} wavelengths for {} bands", cube.wavelengths.len(), cube.layout.bands),
            ));
        }
        Ok(RawSource { file, data_path: data_path.to_path_buf(), header: cube })
    }

    pub fn layout(&self) -> &RawLayout {
        &self.header.layout
    }

    /// Read `count` samples starting at sample index `first` and convert them into `dst`.
    fn read_run(&self, first: u64, dst: &mut [f32], raw: &mut Vec<u8>) -> Result<()> {
        let size = self.header.layout.data_type.size();
        let per_chunk = (READ_CHUNK_BYTES / size).max(1);
        let mut done = 0usize;
        while done < dst.len() {
            let m = per_chunk.min(dst.len() - done);
            raw.resize(m * size, 0);
            let at = self.header.layout.offset + (first + done as u64) * size as u64;
            read_exact_at(&self.file, raw, at).map_err(|e| Error::io(&self.data_path, e))?;
            convert(self.header.layout.data_type, self.header.layout.byte_order, raw, &mut dst[done..done + m], &self.header.fix);
            done += m;
        }
        Ok(())
    }
}

impl CubeSource for RawSource {
    fn shape(&self) -> (usize, usize, usize) {
        (self.header.layout.bands, self.header.layout.rows, self.header.layout.cols)
    }
    fn wavelengths(&self) -> &[f32] {
        &self.header.wavelengths
    }
    fn fwhm(&self) -> Option<&[f32]> {
        self.header.fwhm.as_deref()
    }
    fn meta(&self) -> &Metadata {
        &self.header.meta
    }
    fn storage(&self) -> String {
        let interleave = match self.header.layout.interleave {
            Interleave::Bsq => "bsq",
            Interleave::Bil => "bil",
            Interleave::Bip => "bip",
        };
        format!("{} {interleave} {:?}", self.header.format, self.header.layout.data_type).to_lowercase()
    }
    fn is_lazy(&self) -> bool {
        true
    }
    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.header.meta.source.iter().cloned().collect();
        files.push(self.data_path.clone());
        files
    }

    fn read(&self, bands: &[usize], rows: Range<usize>, cols: Range<usize>, step: usize) -> Result<Array3<f32>> {
        check_read(self.shape(), bands, &rows, &cols, step)?;
        let RawLayout { bands: nbands, rows: nrows, cols: ncols, interleave, .. } = self.header.layout;
        let (nb, nr, nc) = (bands.len(), rows.len().div_ceil(step), cols.len().div_ceil(step));
        let mut out = crate::io::buffer::zeroed_f32(nb * nr * nc);
        let mut raw = Vec::new();
        let mut run = vec![0f32; cols.len()];
        // Copy every `step`-th value of a converted run into an output row.
        let pick = |src: &[f32], dst: &mut [f32]| {
            for (d, s) in dst.iter_mut().zip(src.iter().step_by(step)) {
                *d = *s;
            }
        };
        let whole_rows = step == 1 && cols.len() == ncols;
        match interleave {
            Interleave::Bsq if whole_rows => {
                // A band's rows are one run in the file and one plane of the output.
                for (bi, &b) in bands.iter().enumerate() {
                    let first = ((b * nrows + rows.start) * ncols) as u64;
                    self.read_run(first, &mut out[bi * nr * nc..(bi + 1) * nr * nc], &mut raw)?;
                }
            }
            Interleave::Bsq => {
                for (bi, &b) in bands.iter().enumerate() {
                    for (ri, r) in rows.clone().step_by(step).enumerate() {
                        self.read_run(((b * nrows + r) * ncols + cols.start) as u64, &mut run, &mut raw)?;
                        pick(&run, &mut out[(bi * nr + ri) * nc..(bi * nr + ri + 1) * nc]);
                    }
                }
            }
            Interleave::Bil => {
                // Many bands over much of a row: read the row's lines of every band at once
                // (a single pixel's spectrum reads band by band instead).
                let dense = 2 * nb >= nbands && 4 * cols.len() >= ncols;
                let mut line = vec![0f32; if dense { nbands * ncols } else { 0 }];
                for (ri, r) in rows.clone().step_by(step).enumerate() {
                    if dense {
                        self.read_run((r * nbands * ncols) as u64, &mut line, &mut raw)?;
                    }
                    for (bi, &b) in bands.iter().enumerate() {
                        let dst = &mut out[(bi * nr + ri) * nc..(bi * nr + ri + 1) * nc];
                        if dense {
                            pick(&line[b * ncols + cols.start..b * ncols + cols.end], dst);
                        } else {
                            self.read_run(((r * nbands + b) * ncols + cols.start) as u64, &mut run, &mut raw)?;
                            pick(&run, dst);
                        }
                    }
                }
            }
            Interleave::Bip => {
                // A row's pixels are one run of whole spectra; scatter band by band.
                let mut pixels = vec![0f32; cols.len() * nbands];
                for (ri, r) in rows.clone().step_by(step).enumerate() {
                    self.read_run(((r * ncols + cols.start) * nbands) as u64, &mut pixels, &mut raw)?;
                    for (bi, &b) in bands.iter().enumerate() {
                        let dst = &mut out[(bi * nr + ri) * nc..(bi * nr + ri + 1) * nc];
                        for (d, px) in dst.iter_mut().zip(pixels.chunks_exact(nbands).step_by(step)) {
                            *d = px[b];
                        }
                    }
                }
            }
        }
        Array3::from_shape_vec((nb, nr, nc), out).map_err(|e| Error::format(&self.data_path, e.to_string()))
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file ended early")),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A cube written row block by row block, never whole in memory: ENVI (BSQ float32
/// little-endian, `.hdr`/`.img`) or `.npy` (float32, (rows, cols, bands), or (rows, cols) for a
/// single band when asked). The data go to a temporary file renamed on [`CubeWriter::finish`],
/// the ENVI header last; dropped unfinished, nothing is left behind.
pub struct CubeWriter {
    data: super::atomic::AtomicFile,
    /// ENVI: the header's path and text, written after the data.
    envi_header: Option<(PathBuf, String)>,
    /// Bytes before the samples (the .npy header).
    offset: u64,
    shape: (usize, usize, usize),
    bytes: Vec<u8>,
}

/// What a [`CubeWriter`] writes beside the samples.
pub struct CubeHeader<'a> {
    pub wavelengths: &'a [f32],
    pub fwhm: Option<&'a [f32]>,
    pub description: Option<&'a str>,
    /// `.npy` of one band: shape (rows, cols) rather than (rows, cols, 1).
    pub squeeze: bool,
}

impl CubeWriter {
    /// Start writing a `(bands, rows, cols)` cube at `path` (its extension picks the format).
    pub fn create(path: &Path, shape: (usize, usize, usize), header: &CubeHeader) -> Result<CubeWriter> {
        let (bands, rows, cols) = shape;
        let (envi_header, data_path, npy_header) = match super::extension(path).as_str() {
            "hdr" | "img" => {
                let (h, d) = super::envi::write::output_paths(path);
                let text = super::envi::write::header_text_for(shape, header.wavelengths, header.fwhm, header.description);
                (Some((h, text)), d, Vec::new())
            }
            "npy" => {
                let dims: Vec<usize> = if header.squeeze && bands == 1 { vec![rows, cols] } else { vec![rows, cols, bands] };
                (None, path.to_path_buf(), super::npy::header_bytes(&dims))
            }
            other => {
                return Err(Error::invalid(format!(
                    "{}: cannot stream a cube into '.{other}' (use .hdr or .npy; .mat needs the cube in memory)",
                    path.display()
                )))
            }
        };
        let samples = (bands as u64) * (rows as u64) * (cols as u64) * 4;
        let data = super::atomic::AtomicFile::create(&data_path, npy_header.len() as u64 + samples)?;
        write_all_at(data.file(), &npy_header, 0).map_err(|e| Error::io(&data_path, e))?;
        Ok(CubeWriter { data, envi_header, offset: npy_header.len() as u64, shape, bytes: Vec::new() })
    }

    /// The files this writer will produce (to refuse writing over an input).
    pub fn paths(path: &Path) -> Vec<PathBuf> {
        match super::extension(path).as_str() {
            "hdr" | "img" => {
                let (h, d) = super::envi::write::output_paths(path);
                vec![h, d]
            }
            _ => vec![path.to_path_buf()],
        }
    }

    /// Write rows `r0..r0 + block rows` of every band from `block` `(bands, rows, cols)`.
    pub fn write_rows(&mut self, r0: usize, block: &Array3<f32>) -> Result<()> {
        self.write_tile(r0, 0, block)
    }

    /// Write `block` `(bands, rows, cols)` with its top-left corner at (`r0`, `c0`).
    pub fn write_tile(&mut self, r0: usize, c0: usize, block: &Array3<f32>) -> Result<()> {
        let (bands, rows, cols) = self.shape;
        let (nb, nr, nc) = block.dim();
        if nb != bands || r0 + nr > rows || c0 + nc > cols {
            return Err(Error::invalid(format!(
                "a block of {nb} × {nr} × {nc} at ({r0}, {c0}) does not fit a {bands} × {rows} × {cols} cube"
            )));
        }
        let path = self.data.path().to_path_buf();
        let io = |e| Error::io(&path, e);
        let flat = block.as_standard_layout();
        let flat = flat.as_slice().expect("standard layout is contiguous");
        let file = self.data.file();
        let bytes = &mut self.bytes;
        if self.envi_header.is_some() {
            // BSQ: a band's rows are one run when the block spans the width, else one run per row.
            for (b, plane) in flat.chunks_exact(nr * nc).enumerate() {
                if nc == cols {
                    bytes.clear();
                    plane.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
                    write_all_at(file, bytes, self.offset + (((b * rows + r0) * cols) * 4) as u64).map_err(io)?;
                    continue;
                }
                for (i, row) in plane.chunks_exact(nc).enumerate() {
                    bytes.clear();
                    row.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
                    write_all_at(file, bytes, self.offset + (((b * rows + r0 + i) * cols + c0) * 4) as u64).map_err(io)?;
                }
            }
        } else {
            // (rows, cols, bands): each row of the block is one run of whole spectra.
            let n = nr * nc;
            for i in 0..nr {
                bytes.clear();
                for p in i * nc..(i + 1) * nc {
                    for b in 0..bands {
                        bytes.extend_from_slice(&flat[b * n + p].to_le_bytes());
                    }
                }
                write_all_at(file, bytes, self.offset + (((r0 + i) * cols + c0) * bands * 4) as u64).map_err(io)?;
            }
        }
        Ok(())
    }

    /// Rename the data into place, then write the ENVI header.
    pub fn finish(self) -> Result<()> {
        self.data.commit()?;
        if let Some((path, text)) = self.envi_header {
            super::atomic::write_bytes_atomically(&path, text.as_bytes())?;
        }
        Ok(())
    }
}

/// Nothing is written over a file `source` reads.
pub fn refuse_writing_over(source: &dyn CubeSource, output: &Path) -> Result<()> {
    for file in source.files() {
        for out in CubeWriter::paths(output) {
            super::atomic::refuse_overwriting_source(Some(&file), &out)?;
        }
    }
    Ok(())
}

/// Write a source as ENVI or `.npy` (see [`CubeWriter`]), block by block: memory stays within
/// a few [`BLOCK_BYTES`] whatever the size.
pub fn save_streamed(source: &dyn CubeSource, path: &Path, job: &JobContext) -> Result<()> {
    refuse_writing_over(source, path)?;
    let (bands, rows, cols) = source.shape();
    let header = CubeHeader { wavelengths: source.wavelengths(), fwhm: source.fwhm(), description: source.meta().description.as_deref(), squeeze: false };
    let mut writer = CubeWriter::create(path, source.shape(), &header)?;
    let per_block = block_rows(bands, cols);
    let all = all_bands(source);
    for Range { start: r0, end: r1 } in row_blocks(rows, per_block) {
        job.check()?;
        writer.write_rows(r0, &source.read(&all, r0..r1, 0..cols, 1)?)?;
        job.report(r1 as f32 / rows as f32, "writing");
    }
    writer.finish()
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_write(buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(bands: usize, rows: usize, cols: usize) -> Cube {
        let data = Array3::from_shape_fn((bands, rows, cols), |(b, r, c)| (b * 10000 + r * 100 + c) as f32);
        Cube::new(data, crate::cube::band_numbers(bands)).unwrap()
    }

    #[test]
    fn memory_source_reads_strided_windows() {
        let src = MemorySource { cube: Arc::new(ramp(3, 5, 7)) };
        let a = src.read(&[2, 0], 1..5, 2..7, 2).unwrap();
        assert_eq!(a.dim(), (2, 2, 3));
        assert_eq!(a[[0, 1, 2]], 20306.0);
        assert_eq!(a[[1, 0, 0]], 102.0);
        assert!(src.read(&[3], 0..1, 0..1, 1).is_err());
        assert!(src.read(&[0], 0..6, 0..1, 1).is_err());
        assert!(src.read(&[0], 0..1, 0..1, 0).is_err());
    }

    #[test]
    fn a_relabelled_source_reads_the_same_samples_under_the_new_wavelengths() {
        let inner: Arc<dyn CubeSource> = Arc::new(MemorySource { cube: Arc::new(ramp(3, 4, 4)) });
        let src = Relabelled::new(inner.clone(), vec![500.0, 600.0, 700.0]).unwrap();
        assert_eq!(src.wavelengths(), [500.0, 600.0, 700.0]);
        assert_eq!(src.read(&[1], 0..4, 0..4, 1).unwrap(), inner.read(&[1], 0..4, 0..4, 1).unwrap());
        assert!(Relabelled::new(inner.clone(), vec![500.0, 600.0]).is_err(), "one per band");
        assert!(Relabelled::new(inner, vec![500.0, 500.0, 700.0]).is_err(), "increasing");
    }

    #[test]
    fn row_blocks_cover_the_rows_once_in_order() {
        assert_eq!(row_blocks(10, 4).collect::<Vec<_>>(), [0..4, 4..8, 8..10]);
        assert_eq!(row_blocks(3, 8).collect::<Vec<_>>(), vec![0..3]);
        assert_eq!(row_blocks(0, 8).count(), 0);
        assert_eq!(row_blocks(2, 0).collect::<Vec<_>>(), [0..1, 1..2]);
    }

    #[test]
    fn overview_step_keeps_the_budget() {
        for (r, c, m) in [(2000, 2000, 512 * 512), (1000, 22000, 262_144), (10, 10, 1000), (7, 3, 1)] {
            let s = overview_step(r, c, m);
            assert!(r.div_ceil(s) * c.div_ceil(s) <= m.max(1), "{r}×{c} step {s}");
            assert!(s == 1 || r.div_ceil(s - 1) * c.div_ceil(s - 1) > m, "{r}×{c} step {s} is not the smallest");
        }
    }

    #[test]
    fn streamed_statistics_match_the_whole_cube() {
        let mut cube = ramp(4, 9, 6);
        cube.data[[1, 2, 3]] = f32::NAN;
        cube.data[[3, 8, 5]] = f32::INFINITY;
        let src = MemorySource { cube: Arc::new(cube.clone()) };
        let s = band_stats(&src, None, &JobContext::silent()).unwrap();
        let whole = cube.stats();
        assert_eq!(s.all.non_finite, 2);
        assert_eq!((s.all.min, s.all.max), (whole.min, whole.max));
        assert!((s.all.mean - whole.mean).abs() < 1e-9 * whole.mean.abs());
        assert!((s.all.std - whole.std).abs() < 1e-6 * whole.std);
        for b in 0..4 {
            let want = crate::cube::value_stats(cube.data.slice(s![b, .., ..]).iter().copied());
            assert_eq!(s.bands[b].min, want.min);
            assert_eq!(s.bands[b].max, want.max);
            assert!((s.bands[b].mean - want.mean).abs() < 1e-9 * want.mean.abs().max(1.0), "band {b}");
        }
        let roi = band_stats(&src, Some(Rect { row: 1, col: 2, height: 2, width: 1 }), &JobContext::silent()).unwrap();
        assert_eq!(roi.bands[0].min, 102.0);
        assert_eq!(roi.bands[0].max, 202.0);
        assert!(band_stats(&src, Some(Rect { row: 8, col: 0, height: 2, width: 1 }), &JobContext::silent()).is_err());
    }
}
