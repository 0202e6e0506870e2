//! Reconstruction of a picture whose cube would not fit in memory: the picture is read from a
//! [`CubeSource`] tile by tile, each tile with the context its method needs
//! ([`Locality::margin`]) on every side, and each tile's result (less the context) is written
//! into the output file at its place (see [`CubeWriter`]). What the shared options read from
//! the whole picture (its range and mean) comes from one streamed pass first, so the tiles
//! agree with a whole-picture run: a pixel-wise method gives the same numbers, a network the
//! same up to summation order.

use std::path::Path;
use std::time::Instant;

use ndarray::s;

use super::consistency::ConsistencyReport;
use super::{reconstruct_part, PictureStats, ReconOptions, Reconstructor};
use crate::engine::JobContext;
use crate::io::source::{self, CubeHeader, CubeSource, CubeWriter};
use crate::spectral::camera::CameraResponse;
use crate::{bail_invalid, Error, Result, RgbImage};

/// What a streamed run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamedReconstruction {
    pub method: String,
    pub rows: usize,
    pub cols: usize,
    pub bands: usize,
    pub tiles: usize,
    pub seconds: f64,
    pub exposure_scale: Option<f32>,
    /// Over every tile: pixel-weighted MRAEs, summed unreachable pixels.
    pub consistency: Option<ConsistencyReport>,
    /// Values below zero set to zero, over every tile as computed (context margins included).
    pub clamped: super::Clamped,
}

/// Read a tile of `rgb` (a three-band source) as linear RGB.
fn read_rgb(rgb: &dyn CubeSource, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, srgb: bool) -> Result<RgbImage> {
    let mut data = rgb.read(&[0, 1, 2], rows, cols, 1)?;
    if srgb {
        data.mapv_inplace(crate::rgb::srgb_to_linear);
    }
    RgbImage::new(data)
}

/// The whole picture's statistics, in one pass of row blocks.
fn picture_stats(rgb: &dyn CubeSource, srgb: bool, job: &JobContext) -> Result<PictureStats> {
    let (_, rows, cols) = rgb.shape();
    let per_block = source::block_rows(3, cols);
    let (mut stats, mut sum, mut n) = (PictureStats::empty(), 0f64, 0usize);
    for block_rows in source::row_blocks(rows, per_block) {
        job.check()?;
        let block = read_rgb(rgb, block_rows, 0..cols, srgb)?;
        stats.add(block.data.iter().copied(), &mut sum, &mut n);
    }
    Ok(stats.finish(sum, n))
}

/// Reconstruct the picture `rgb` (three bands; sRGB-encoded when `srgb`) with `method` into
/// `output` (ENVI `.hdr` or `.npy`), tile by tile. `max_tile` caps the input tile side (tests
/// use it to make many tiles of a small picture); by default the method's own.
#[allow(clippy::too_many_arguments)]
pub fn reconstruct_streamed(
    method: &dyn Reconstructor,
    rgb: &dyn CubeSource,
    srgb: bool,
    camera: &CameraResponse,
    options: ReconOptions,
    output: &Path,
    max_tile: Option<usize>,
    job: &JobContext,
) -> Result<StreamedReconstruction> {
    let start = Instant::now();
    let Some(locality) = method.locality() else {
        bail_invalid!("{} needs the whole picture at once, so it cannot run tile by tile on a picture too large to hold", method.name());
    };
    let (channels, rows, cols) = rgb.shape();
    if channels != 3 {
        bail_invalid!("the input has {channels} channels; reconstruction needs an RGB picture");
    }
    source::refuse_writing_over(rgb, output)?;
    let mut stats = picture_stats(rgb, srgb, job)?;
    if stats.non_finite > 0 {
        bail_invalid!("input RGB has {} NaN or infinite values; reconstruction needs finite pixels", stats.non_finite);
    }
    if method.reads_picture_cues() {
        // The light's cues from the picture's overview (every pixel of a picture within the
        // overview's budget; a regular sample of a larger one), as the method would see it.
        let quiet = JobContext::new(job.cancel.clone(), |_, _| {});
        let mut overview = source::overview(rgb, source::OVERVIEW_PIXELS, &quiet)?.cube.data;
        if srgb {
            overview.mapv_inplace(crate::rgb::srgb_to_linear);
        }
        if options.input_scale == super::InputScale::MinMax && stats.hi > stats.lo {
            overview.mapv_inplace(|v| (v - stats.lo) / (stats.hi - stats.lo));
        }
        stats.cues = Some(crate::models::camera::illumination_cues(overview.view()));
    }
    let wavelengths = method.wavelengths().to_vec();
    let description = format!("reconstructed by {} from RGB", method.name());
    let header = CubeHeader { wavelengths: &wavelengths, fwhm: None, description: Some(&description), squeeze: false };
    let mut writer = CubeWriter::create(output, (wavelengths.len(), rows, cols), &header)?;
    let tile = max_tile.unwrap_or(locality.tile).max(2 * locality.margin + locality.align);
    let row_spans = super::learned::spans(rows, tile, locality.margin, locality.align);
    let col_spans = super::learned::spans(cols, tile, locality.margin, locality.align);
    let total = row_spans.len() * col_spans.len();
    let quiet = JobContext::new(job.cancel.clone(), |_, _| {});
    let (mut exposure_scale, mut consistency) = (None, None::<(f64, f64, usize, usize)>);
    let mut clamped = super::Clamped::default();
    for (i, &(r0, r1, o_r0, o_r1)) in row_spans.iter().enumerate() {
        for (j, &(c0, c1, o_c0, o_c1)) in col_spans.iter().enumerate() {
            job.check()?;
            job.report((i * col_spans.len() + j) as f32 / total as f32, "reconstructing tile by tile");
            let input = read_rgb(rgb, r0..r1, c0..c1, srgb)?;
            // Consistency is per pixel: applied to the tile's own pixels, not its context.
            let (data, scale, _, below) = reconstruct_part(method, &input, camera, ReconOptions { consistent: false, ..options }, &stats, &quiet)?;
            exposure_scale = scale;
            clamped = clamped.merge(below);
            let (ir, ic) = (o_r0 - r0..o_r1 - r0, o_c0 - c0..o_c1 - c0);
            let mut inner = data.slice(s![.., ir.clone(), ic.clone()]).to_owned();
            if options.consistent {
                // against what the method saw, as a whole-picture run does
                let mut own = input.data.slice(s![.., ir, ic]).to_owned();
                if options.input_scale == super::InputScale::MinMax {
                    own.mapv_inplace(|v| (v - stats.lo) / (stats.hi - stats.lo));
                }
                let own = RgbImage::new(own)?;
                let c = camera.on_grid(method.wavelengths())?;
                let r = super::consistency::make_consistent(&mut inner, &own, &c)?;
                let px = (o_r1 - o_r0) * (o_c1 - o_c0);
                let (b, a, u, n) = consistency.unwrap_or((0.0, 0.0, 0, 0));
                consistency = Some((b + r.before_mrae * px as f64, a + r.after_mrae * px as f64, u + r.unreachable_pixels, n + px));
            }
            writer.write_tile(o_r0, o_c0, &inner).map_err(|e| match e {
                Error::Io { .. } => e,
                other => Error::invalid(format!("{}: {other}", output.display())),
            })?;
        }
    }
    writer.finish()?;
    job.report(1.0, "reconstructed");
    Ok(StreamedReconstruction {
        method: method.name().to_string(),
        rows,
        cols,
        bands: wavelengths.len(),
        tiles: total,
        seconds: start.elapsed().as_secs_f64(),
        exposure_scale,
        clamped,
        consistency: consistency.map(|(b, a, u, n)| ConsistencyReport { before_mrae: b / n as f64, after_mrae: a / n as f64, unreachable_pixels: u }),
    })
}
