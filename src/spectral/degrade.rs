//! The observation model of fusion (Zhang et al., CVPR 2020, eq. 5): a low-resolution cube is
//! the latent cube blurred by one kernel shared by every band, sampled every `scale` pixels,
//! plus white noise: Y = (Z ⊛ k)↓s + N.
//!
//! The geometry is written once, here, and the degradation network of `models::ual` follows it:
//! low-resolution pixel i lies over high-resolution pixel i·s + ⌊s/2⌋, a kernel of side n has
//! its centre at index ⌊n/2⌋, and the image's border is replicated. Bicubic up-sampling maps
//! back through the same positions, so the baselines and the network see one registration.
//! (For an even s that is half a pixel after the centre of the s×s block a sensor pixel
//! averages; a real pair registered to block centres is half a pixel off, which the learned
//! kernel absorbs.) The blur is a correlation, as a convolution layer's: the kernel is applied
//! as stored, not flipped, so an asymmetric kernel file and `--kernel-out` share one orientation.

use crate::spectral::rng::Rng;
use crate::{bail_invalid, Error, Result};
use ndarray::{Array2, Array3, ArrayView3, Axis};
use std::path::Path;

/// Largest kernel side accepted for simulation (the degradation network learns 32×32; a larger
/// simulated blur is allowed but cannot be compared with what it learns).
pub const MAX_KERNEL: usize = 64;

/// A 2-D blur kernel, its weights summing to one.
#[derive(Debug, Clone, PartialEq)]
pub struct BlurKernel {
    weights: Array2<f32>,
}

impl BlurKernel {
    /// Normalises `weights` to sum one. Refuses non-finite weights, an empty or oversized
    /// kernel, and weights whose sum is not positive (nothing to normalise).
    pub fn new(weights: Array2<f32>) -> Result<Self> {
        let (r, c) = weights.dim();
        if r == 0 || c == 0 || r > MAX_KERNEL || c > MAX_KERNEL {
            bail_invalid!("a blur kernel must be between 1×1 and {MAX_KERNEL}×{MAX_KERNEL}, got {r}×{c}");
        }
        if weights.iter().any(|v| !v.is_finite()) {
            bail_invalid!("blur kernel has non-finite weights");
        }
        let sum: f64 = weights.iter().map(|&v| f64::from(v)).sum();
        if sum <= 1e-12 {
            bail_invalid!("blur kernel weights sum to {sum}, not a positive number");
        }
        Ok(Self { weights: weights.mapv(|v| (f64::from(v) / sum) as f32) })
    }

    /// An isotropic Gaussian of side `size` and standard deviation `sigma` pixels.
    pub fn gaussian(size: usize, sigma: f64) -> Result<Self> {
        Self::anisotropic(size, sigma, sigma, 0.0)
    }

    /// A Gaussian with standard deviations `major` and `minor` along axes rotated by
    /// `angle_deg`.
    pub fn anisotropic(size: usize, major: f64, minor: f64, angle_deg: f64) -> Result<Self> {
        if !(major > 0.0 && minor > 0.0 && major.is_finite() && minor.is_finite()) {
            bail_invalid!("Gaussian kernel widths must be positive, got {major} and {minor}");
        }
        let (s, c) = angle_deg.to_radians().sin_cos();
        Self::from_fn(size, |y, x| {
            let (u, v) = (c * x + s * y, -s * x + c * y);
            (-0.5 * ((u / major).powi(2) + (v / minor).powi(2))).exp()
        })
    }

    /// Linear motion blur: a line of `length` pixels at `angle_deg`, anti-aliased (each weight
    /// falls off linearly within one pixel of the segment).
    pub fn motion(length: f64, angle_deg: f64) -> Result<Self> {
        if !(length >= 1.0 && length <= (MAX_KERNEL - 3) as f64) {
            bail_invalid!("motion blur length must be in [1, {}], got {length}", MAX_KERNEL - 3);
        }
        let size = (length.ceil() as usize + 2) | 1;
        let (s, c) = angle_deg.to_radians().sin_cos();
        Self::from_fn(size, |y, x| {
            let along = c * x + s * y;
            let across = (-s * x + c * y).abs();
            let beyond = (along.abs() - length / 2.0).max(0.0);
            (1.0 - (across * across + beyond * beyond).sqrt()).max(0.0)
        })
    }

    /// Defocus: a uniform disk of `radius` pixels, anti-aliased at its edge.
    pub fn disk(radius: f64) -> Result<Self> {
        if !(radius > 0.0 && radius <= ((MAX_KERNEL - 4) / 2) as f64) {
            bail_invalid!("disk radius must be in (0, {}], got {radius}", (MAX_KERNEL - 4) / 2);
        }
        let size = (2.0 * radius).ceil() as usize + 3 | 1;
        Self::from_fn(size, |y, x| (radius + 0.5 - (x * x + y * y).sqrt()).clamp(0.0, 1.0))
    }

    /// Weights `f(dy, dx)` at offsets from the geometric centre of a `size`×`size` kernel,
    /// (size − 1)/2: symmetric for an even size too (as MATLAB's `fspecial`), its centre then
    /// half a pixel before index ⌊size/2⌋.
    fn from_fn(size: usize, f: impl Fn(f64, f64) -> f64) -> Result<Self> {
        if size == 0 || size > MAX_KERNEL {
            bail_invalid!("kernel size must be in 1..={MAX_KERNEL}, got {size}");
        }
        let centre = (size as f64 - 1.0) / 2.0;
        Self::new(Array2::from_shape_fn((size, size), |(y, x)| f(y as f64 - centre, x as f64 - centre) as f32))
    }

    /// `gaussian:SIZE,SIGMA`, `anisotropic:SIZE,MAJOR,MINOR,ANGLE`, `motion:LENGTH,ANGLE`,
    /// `disk:RADIUS`, or the path of a 2-D `.npy` file.
    pub fn parse(spec: &str) -> Result<Self> {
        let (kind, args) = spec.split_once(':').unwrap_or((spec, ""));
        let numbers = || -> Result<Vec<f64>> {
            args.split(',').map(|a| a.trim().parse::<f64>().map_err(|_| Error::invalid(format!("kernel '{spec}': '{a}' is not a number")))).collect()
        };
        let want = |n: usize, v: Vec<f64>, form: &str| -> Result<Vec<f64>> {
            if v.len() != n {
                bail_invalid!("kernel '{spec}': expected {form}");
            }
            Ok(v)
        };
        let size = |v: f64| -> Result<usize> {
            if v.fract() != 0.0 || !(1.0..=MAX_KERNEL as f64).contains(&v) {
                bail_invalid!("kernel '{spec}': size must be a whole number in 1..={MAX_KERNEL}");
            }
            Ok(v as usize)
        };
        match kind {
            "gaussian" => {
                let v = want(2, numbers()?, "gaussian:SIZE,SIGMA")?;
                Self::gaussian(size(v[0])?, v[1])
            }
            "anisotropic" => {
                let v = want(4, numbers()?, "anisotropic:SIZE,MAJOR,MINOR,ANGLE")?;
                Self::anisotropic(size(v[0])?, v[1], v[2], v[3])
            }
            "motion" => {
                let v = want(2, numbers()?, "motion:LENGTH,ANGLE")?;
                Self::motion(v[0], v[1])
            }
            "disk" => {
                let v = want(1, numbers()?, "disk:RADIUS")?;
                Self::disk(v[0])
            }
            _ if spec.to_ascii_lowercase().ends_with(".npy") => Self::read_npy(Path::new(spec)),
            _ => bail_invalid!("unknown kernel '{spec}' (expected gaussian:SIZE,SIGMA, anisotropic:SIZE,MAJOR,MINOR,ANGLE, motion:LENGTH,ANGLE, disk:RADIUS or FILE.npy)"),
        }
    }

    /// A 2-D `.npy` of weights (any positive sum; normalised).
    pub fn read_npy(path: &Path) -> Result<Self> {
        let array = crate::io::npy::read_array(path)?;
        let weights = array.into_dimensionality::<ndarray::Ix2>().map_err(|_| Error::format(path, "a blur kernel must be a 2-D array"))?;
        Self::new(weights).map_err(|e| Error::format(path, e.to_string()))
    }

    /// The kernels evaluation uses and pre-training never sees: none is an isotropic Gaussian
    /// (the paper's K1–K4 are published only as pictures; these stand for the same kinds).
    pub fn test_set() -> Vec<(&'static str, BlurKernel)> {
        let k = |r: Result<BlurKernel>| r.expect("the test kernels are valid");
        vec![
            ("motion:9,30", k(Self::motion(9.0, 30.0))),
            ("anisotropic:15,3,1,60", k(Self::anisotropic(15, 3.0, 1.0, 60.0))),
            ("disk:3", k(Self::disk(3.0))),
            ("motion:13,-45", k(Self::motion(13.0, -45.0))),
        ]
    }

    pub fn weights(&self) -> &Array2<f32> {
        &self.weights
    }

    /// The kernel centred in a `side`×`side` frame the way the degradation network's kernel is
    /// (centre at index ⌊side/2⌋). A kernel larger than the frame is refused.
    pub fn framed(&self, side: usize) -> Result<Array2<f32>> {
        let (r, c) = self.weights.dim();
        if r > side || c > side {
            bail_invalid!("a {r}×{c} kernel does not fit a {side}×{side} frame");
        }
        let mut out = Array2::<f32>::zeros((side, side));
        for ((y, x), &w) in self.weights.indexed_iter() {
            let (fy, fx) = ((y + side / 2) as isize - (r / 2) as isize, (x + side / 2) as isize - (c / 2) as isize);
            if (0..side as isize).contains(&fy) && (0..side as isize).contains(&fx) {
                out[[fy as usize, fx as usize]] = w;
            }
        }
        Ok(Self::new(out)?.weights)
    }
}

/// Blur every band with `kernel` and keep pixel i·s + ⌊s/2⌋ of every s (rows and columns);
/// borders replicate. The output has ⌊rows/s⌋ × ⌊cols/s⌋ pixels.
pub fn blur_decimate(data: ArrayView3<f32>, kernel: &BlurKernel, scale: usize) -> Result<Array3<f32>> {
    let (bands, rows, cols) = data.dim();
    if scale == 0 || rows < scale || cols < scale {
        bail_invalid!("cannot down-sample {rows}×{cols} px by {scale}");
    }
    let (lr_rows, lr_cols) = (rows / scale, cols / scale);
    let w = kernel.weights();
    let (kr, kc) = w.dim();
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    // The source rows and columns each output pixel reads, border replicated.
    let row_at = |i: usize, u: usize| clamp((i * scale + scale / 2 + u) as isize - (kr / 2) as isize, rows);
    let col_at = |j: usize, v: usize| clamp((j * scale + scale / 2 + v) as isize - (kc / 2) as isize, cols);
    let mut out = Array3::<f32>::zeros((bands, lr_rows, lr_cols));
    for (b, mut plane) in out.axis_iter_mut(Axis(0)).enumerate() {
        let band = data.index_axis(Axis(0), b);
        for i in 0..lr_rows {
            for j in 0..lr_cols {
                let mut acc = 0.0f64;
                for u in 0..kr {
                    let r = row_at(i, u);
                    for v in 0..kc {
                        acc += f64::from(w[[u, v]]) * f64::from(band[[r, col_at(j, v)]]);
                    }
                }
                plane[[i, j]] = acc as f32;
            }
        }
    }
    Ok(out)
}

/// Adds white Gaussian noise at a signal-to-noise ratio of `snr_db` (signal power: the mean
/// square of `data`).
pub fn add_noise(data: &mut Array3<f32>, snr_db: f64, rng: &mut Rng) -> Result<()> {
    if !snr_db.is_finite() {
        bail_invalid!("SNR must be a finite number of dB, got {snr_db}");
    }
    let power = data.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / data.len().max(1) as f64;
    let sigma = (power / 10f64.powf(snr_db / 10.0)).sqrt();
    data.mapv_inplace(|v| v + (sigma * rng.normal()) as f32);
    Ok(())
}

/// Keys' cubic convolution weight (a = −0.5, as MATLAB's and OpenCV's bicubic).
fn cubic(t: f64) -> f64 {
    let t = t.abs();
    if t <= 1.0 {
        (1.5 * t - 2.5) * t * t + 1.0
    } else if t < 2.0 {
        ((-0.5 * t + 2.5) * t - 4.0) * t + 2.0
    } else {
        0.0
    }
}

/// For each output position along one axis: four source indices and their cubic weights,
/// reading low-resolution pixel i at high-resolution position i·s + ⌊s/2⌋.
fn cubic_taps(out_len: usize, in_len: usize, scale: usize) -> Vec<([usize; 4], [f32; 4])> {
    (0..out_len)
        .map(|x| {
            let u = (x as f64 - (scale / 2) as f64) / scale as f64;
            let base = u.floor();
            let mut idx = [0usize; 4];
            let mut wts = [0f32; 4];
            for k in 0..4 {
                let src = base as isize - 1 + k as isize;
                idx[k] = src.clamp(0, in_len as isize - 1) as usize;
                wts[k] = cubic(u - src as f64) as f32;
            }
            (idx, wts)
        })
        .collect()
}

/// Bicubic up-sampling of every band to `rows`×`cols`, through the registration of
/// [`blur_decimate`]; borders replicate.
pub fn upsample_bicubic(data: ArrayView3<f32>, scale: usize, rows: usize, cols: usize) -> Result<Array3<f32>> {
    let (bands, lr_rows, lr_cols) = data.dim();
    if scale == 0 || lr_rows == 0 || lr_cols == 0 {
        bail_invalid!("cannot up-sample {lr_rows}×{lr_cols} px by {scale}");
    }
    let (tr, tc) = (cubic_taps(rows, lr_rows, scale), cubic_taps(cols, lr_cols, scale));
    let mut out = Array3::<f32>::zeros((bands, rows, cols));
    let mut horizontal = Array2::<f32>::zeros((lr_rows, cols));
    for (b, mut plane) in out.axis_iter_mut(Axis(0)).enumerate() {
        let band = data.index_axis(Axis(0), b);
        for i in 0..lr_rows {
            for (x, (idx, wts)) in tc.iter().enumerate() {
                horizontal[[i, x]] = (0..4).map(|k| wts[k] * band[[i, idx[k]]]).sum();
            }
        }
        for (y, (idx, wts)) in tr.iter().enumerate() {
            for x in 0..cols {
                plane[[y, x]] = (0..4).map(|k| wts[k] * horizontal[[idx[k], x]]).sum();
            }
        }
    }
    Ok(out)
}

/// One simulated degradation: blur, down-sampling, and noise drawn from `seed`.
#[derive(Debug, Clone)]
pub struct Degradation {
    pub kernel: BlurKernel,
    pub scale: usize,
    /// None: no noise.
    pub snr_db: Option<f64>,
    pub seed: u64,
}

impl Degradation {
    /// The low-resolution cube (bands, ⌊rows/s⌋, ⌊cols/s⌋) of `data`.
    pub fn apply(&self, data: ArrayView3<f32>) -> Result<Array3<f32>> {
        let mut lr = blur_decimate(data, &self.kernel, self.scale)?;
        if let Some(snr) = self.snr_db {
            add_noise(&mut lr, snr, &mut Rng::new(self.seed))?;
        }
        Ok(lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_sum_to_one_and_keep_their_shape() {
        for spec in ["gaussian:7,1.5", "anisotropic:15,3,1,60", "motion:9,30", "disk:3"] {
            let k = BlurKernel::parse(spec).unwrap();
            let sum: f32 = k.weights().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{spec}: {sum}");
            assert!(k.weights().iter().all(|&w| w >= 0.0), "{spec}");
        }
        // A horizontal motion blur spreads along the row through the centre only.
        let m = BlurKernel::motion(5.0, 0.0).unwrap();
        let c = m.weights().nrows() / 2;
        assert!(m.weights()[[c, c + 2]] > 0.1 && m.weights()[[c - 2, c]] == 0.0);
        for bad in ["gaussian:7", "gaussian:0,1", "gaussian:7,-1", "disk:x", "box:3", "motion:100,0", "gaussian:7.5,1"] {
            assert!(BlurKernel::parse(bad).is_err(), "{bad}");
        }
        assert!(BlurKernel::new(Array2::zeros((3, 3))).is_err());
    }

    #[test]
    fn a_delta_kernel_samples_the_stated_pixels_and_bicubic_restores_smooth_images() {
        let data = Array3::from_shape_fn((2, 16, 16), |(b, r, c)| (b * 1000 + r * 16 + c) as f32);
        let lr = blur_decimate(data.view(), &BlurKernel::new(Array2::ones((1, 1))).unwrap(), 4).unwrap();
        assert_eq!(lr.dim(), (2, 4, 4));
        // Pixel i lies over i·s + ⌊s/2⌋.
        assert_eq!(lr[[1, 2, 3]], data[[1, 10, 14]]);
        // An even kernel [0.5, 0.5] averages that pixel with the one before it (centre ⌊2/2⌋ = 1).
        let lr2 = blur_decimate(data.view(), &BlurKernel::new(Array2::ones((1, 2))).unwrap(), 4).unwrap();
        assert_eq!(lr2[[0, 1, 1]], 0.5 * (data[[0, 6, 5]] + data[[0, 6, 6]]));
        // A linear ramp is reproduced exactly by bicubic up-sampling where no tap reaches a border.
        let up = upsample_bicubic(lr.view(), 4, 16, 16).unwrap();
        for r in 6..11 {
            for c in 6..11 {
                assert!((up[[1, r, c]] - data[[1, r, c]]).abs() < 1e-2, "{r},{c}: {} vs {}", up[[1, r, c]], data[[1, r, c]]);
            }
        }
    }

    #[test]
    fn noise_has_the_asked_snr_and_is_seeded() {
        let data = Array3::from_elem((3, 64, 64), 0.5f32);
        let d = Degradation { kernel: BlurKernel::gaussian(5, 1.0).unwrap(), scale: 2, snr_db: Some(20.0), seed: 7 };
        let (a, b) = (d.apply(data.view()).unwrap(), d.apply(data.view()).unwrap());
        assert_eq!(a, b);
        let noise: f64 = a.iter().map(|&v| (f64::from(v) - 0.5).powi(2)).sum::<f64>() / a.len() as f64;
        let snr = 10.0 * (0.25 / noise).log10();
        assert!((snr - 20.0).abs() < 0.3, "{snr} dB");
    }

    #[test]
    fn framing_centres_the_kernel_where_the_degradation_network_does() {
        let k = BlurKernel::gaussian(5, 1.0).unwrap();
        let f = k.framed(32).unwrap();
        assert_eq!(f.dim(), (32, 32));
        assert!((f[[16, 16]] - k.weights()[[2, 2]]).abs() < 1e-7);
        assert!((f.sum() - 1.0).abs() < 1e-5);
    }
}
