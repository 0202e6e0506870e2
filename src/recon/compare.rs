//! NTIRE 2020-style comparison of methods on (cube, RGB) pairs: the accuracy metrics, physical
//! consistency, and the auxiliary tests — MRAE with the input brightness ×0.5 and ×2 (against
//! the equally scaled truth) and with the image shuffled in 4×4 blocks (a method that relies on
//! scene layout rather than local colour degrades) — plus seconds per image.

use super::{reconstruct, ReconOptions, Reconstructor};
use crate::engine::JobContext;
use crate::metrics::{self, SpatialShuffle};
use crate::spectral::camera::CameraResponse;
use crate::spectral::render::project;
use crate::{Result, RgbImage};
use ndarray::Array3;
use serde::Serialize;

/// Seed of the 4×4 shuffle plan (any fixed value: the same plan for every method).
const SHUFFLE_SEED: u64 = 2020;

#[derive(Debug, Clone, Default, Serialize)]
pub struct MethodScore {
    pub method: String,
    pub mrae: f64,
    pub rmse: f64,
    pub psnr: f64,
    pub mpsnr: f64,
    pub ssim: f64,
    pub sam_deg: f64,
    pub consistency_mrae: f64,
    #[serde(rename = "mrae_brightness_0.5")]
    pub mrae_half: f64,
    #[serde(rename = "mrae_brightness_2")]
    pub mrae_double: f64,
    pub mrae_shuffle: f64,
    pub seconds_per_image: f64,
    pub images: usize,
}

impl MethodScore {
    /// The mean of per-image scores of `method` (each over one image or more), weighted by
    /// their image counts.
    pub fn mean(method: &str, scores: &[MethodScore]) -> MethodScore {
        let n: usize = scores.iter().map(|s| s.images).sum();
        let mut out = MethodScore { method: method.to_string(), images: n, ..Default::default() };
        let w = |s: &MethodScore| s.images as f64 / n.max(1) as f64;
        for s in scores {
            out.mrae += w(s) * s.mrae;
            out.rmse += w(s) * s.rmse;
            out.psnr += w(s) * s.psnr;
            out.mpsnr += w(s) * s.mpsnr;
            out.ssim += w(s) * s.ssim;
            out.sam_deg += w(s) * s.sam_deg;
            out.consistency_mrae += w(s) * s.consistency_mrae;
            out.mrae_half += w(s) * s.mrae_half;
            out.mrae_double += w(s) * s.mrae_double;
            out.mrae_shuffle += w(s) * s.mrae_shuffle;
            out.seconds_per_image += w(s) * s.seconds_per_image;
        }
        out
    }
}

/// Score `method` on ground-truth cubes (31 bands on the method's grid), each rendered clean
/// through `camera`. Averages over images.
pub fn score(method: &dyn Reconstructor, cubes: &[Array3<f32>], camera: &CameraResponse, options: ReconOptions, job: &JobContext) -> Result<MethodScore> {
    score_told(method, cubes, camera, camera, options, job)
}

/// The same with the pictures taken by `camera` while the method assumes `told` (a user who
/// does not know their camera and picks another): the options' corrections use `told`, the
/// consistency metric the true camera.
pub fn score_told(method: &dyn Reconstructor, cubes: &[Array3<f32>], camera: &CameraResponse, told: &CameraResponse, options: ReconOptions, job: &JobContext) -> Result<MethodScore> {
    let c = camera.on_grid(method.wavelengths())?;
    let mut s = MethodScore { method: method.name().to_string(), ..Default::default() };
    let n = cubes.len().max(1) as f64;
    for (i, gt) in cubes.iter().enumerate() {
        job.check()?;
        job.report(i as f32 / cubes.len() as f32, &format!("{}: image {}/{}", method.name(), i + 1, cubes.len()));
        let rgb = RgbImage::new(project(c.view(), gt.view())?)?;
        let run = |input: &RgbImage| -> Result<super::Reconstruction> { reconstruct(method, input, told, options, &JobContext::silent()) };
        let main = run(&rgb)?;
        let truth = crate::Cube::new(gt.clone(), method.wavelengths().to_vec())?;
        let m = metrics::score(&main.cube, &truth, Some((&rgb, camera)))?.metrics;
        s.mrae += m.mrae / n;
        s.rmse += m.rmse / n;
        s.psnr += m.psnr / n;
        s.mpsnr += m.mpsnr / n;
        s.ssim += m.ssim / n;
        s.sam_deg += m.sam_deg / n;
        s.consistency_mrae += m.consistency_mrae.unwrap_or(f64::NAN) / n;
        s.seconds_per_image += main.seconds / n;
        for (factor, slot) in [(0.5f32, &mut s.mrae_half), (2.0, &mut s.mrae_double)] {
            let scaled = RgbImage::new(rgb.data.mapv(|v| v * factor))?;
            let pred = run(&scaled)?;
            *slot += metrics::mrae(&pred.cube.data, &gt.mapv(|v| v * factor))? / n;
        }
        let plan = SpatialShuffle::ntire(gt.dim().1, gt.dim().2, SHUFFLE_SEED)?;
        let shuffled = RgbImage::new(plan.apply(&rgb.data)?)?;
        let pred = run(&shuffled)?;
        s.mrae_shuffle += metrics::mrae(&pred.cube.data, &plan.apply(gt)?)? / n;
    }
    s.images = cubes.len();
    Ok(s)
}
