//! Rendering a cube to three channels: clean camera RGB (C·Y), a true-colour sRGB preview
//! through the CIE 1931 observer, and false-colour band composites.
//!
//! Every function returns an [`RgbImage`] holding *linear* values in [0, 1]; encode with
//! [`crate::rgb::linear_to_srgb`] (or [`RgbImage::to_rgb8`]) for display.

use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayView3, Axis};

use crate::spectral::camera::CameraResponse;
use crate::spectral::library::{cmf_cie1931, Spectrum};
use crate::{bail_invalid, Cube, Error, Result, RgbImage};

/// `weights · data`: a (k, bands) matrix times a (bands, rows, cols) cube → (k, rows, cols).
/// The one place spectra are integrated against response curves (camera C·Y, CIE XYZ, the
/// consistency metric's re-projection). No clamping.
pub fn project(weights: ArrayView2<f32>, data: ArrayView3<f32>) -> Result<Array3<f32>> {
    let (bands, rows, cols) = data.dim();
    if weights.ncols() != bands {
        bail_invalid!(
            "weights of shape {:?} cannot project a {bands}-band cube (expected [{}, {bands}])",
            weights.shape(),
            weights.nrows()
        );
    }
    // A view for the usual contiguous data; a copy only for other layouts.
    let data = data.as_standard_layout();
    let flat: ArrayView2<f32> =
        data.view().into_shape_with_order((bands, rows * cols)).map_err(|e| Error::invalid(format!("cube data: {e}")))?;
    let out = weights.dot(&flat);
    Ok(out.into_shape_with_order((weights.nrows(), rows, cols)).expect("sizes agree"))
}

/// Clean camera RGB = C·Y per pixel, with C from [`CameraResponse::on_grid`] on the cube's
/// wavelengths (rows sum to 1). The cube is taken as radiance: no illuminant is applied.
/// Values are not clamped, so a cube in [0, 1] gives RGB in [0, 1].
pub fn clean_rgb(cube: &Cube, camera: &CameraResponse) -> Result<RgbImage> {
    clean_rgb_lit(cube, camera, None)
}

/// Clean camera RGB of a cube that holds *reflectance* lit by `illuminant` (None: the cube
/// is radiance, as [`clean_rgb`]).
///
/// Normalisation: the illuminant E is scaled so that a perfect white reflector (reflectance 1
/// everywhere) gives 1 in its strongest camera channel, i.e. the weights are
/// C·diag(E) / max_c (C·E). A reflectance cube in [0, 1] so stays in [0, 1], and the colour
/// cast of the light is kept (no white balance), as a raw camera would record it.
pub fn clean_rgb_lit(cube: &Cube, camera: &CameraResponse, illuminant: Option<&Spectrum>) -> Result<RgbImage> {
    let c = camera.on_grid(&cube.wavelengths)?;
    let weights = match illuminant {
        None => c,
        Some(e) => lit_camera_matrix(&c, e, &cube.wavelengths)?,
    };
    RgbImage::new(project(weights.view(), cube.data.view())?)
}

/// C·diag(E) scaled so the white reflector's strongest channel is 1 (see [`clean_rgb_lit`]).
pub fn lit_camera_matrix(c: &Array2<f32>, illuminant: &Spectrum, wavelengths: &[f32]) -> Result<Array2<f32>> {
    let e = Array1::from(illuminant.resample_under_response(wavelengths)?.values);
    let mut w = c * &e.view().insert_axis(Axis(0));
    let white_max = w.sum_axis(Axis(1)).iter().cloned().fold(0.0f32, f32::max);
    if white_max.is_nan() || white_max <= 0.0 {
        bail_invalid!("illuminant '{}' has no power on the cube's wavelengths", illuminant.name);
    }
    w /= white_max;
    Ok(w)
}

// ---------------------------------------------------------------------------------------------
// True colour.

/// XYZ (D65 white) → linear sRGB, IEC 61966-2-1.
const XYZ_TO_SRGB: [[f32; 3]; 3] =
    [[3.2404542, -1.5371385, -0.4985314], [-0.969266, 1.8760108, 0.041556], [0.0556434, -0.2040259, 1.0572252]];

/// Bradford cone-response matrix (chromatic adaptation).
const BRADFORD: [[f32; 3]; 3] = [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]];

/// D65 white point, Y = 1.
const D65_WHITE: [f32; 3] = [0.95047, 1.0, 1.08883];

fn mat3_mul(a: &[[f32; 3]; 3], b: &[[f32; 3]; 3]) -> [[f32; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

fn mat3_vec(a: &[[f32; 3]; 3], v: [f32; 3]) -> [f32; 3] {
    [0, 1, 2].map(|i| a[i][0] * v[0] + a[i][1] * v[1] + a[i][2] * v[2])
}

fn mat3_inv(m: &[[f32; 3]; 3]) -> [[f32; 3]; 3] {
    let [a, b, c] = m[0];
    let [d, e, f] = m[1];
    let [g, h, i] = m[2];
    let det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
    let inv = [
        [e * i - f * h, c * h - b * i, b * f - c * e],
        [f * g - d * i, a * i - c * g, c * d - a * f],
        [d * h - e * g, b * g - a * h, a * e - b * d],
    ];
    inv.map(|row| row.map(|v| v / det))
}

/// Bradford adaptation from `white` (XYZ) to D65.
fn bradford_to_d65(white: [f32; 3]) -> [[f32; 3]; 3] {
    let src = mat3_vec(&BRADFORD, white);
    let dst = mat3_vec(&BRADFORD, D65_WHITE);
    let diag = [[dst[0] / src[0], 0.0, 0.0], [0.0, dst[1] / src[1], 0.0], [0.0, 0.0, dst[2] / src[2]]];
    mat3_mul(&mat3_inv(&BRADFORD), &mat3_mul(&diag, &BRADFORD))
}

/// A true-colour preview: linear sRGB in [0, 1] (clamped), computed as
/// spectrum → CIE 1931 XYZ → Bradford adaptation to D65 → linear sRGB.
///
/// - `Some(E)`: the cube holds reflectance under E. XYZ is normalised so a perfect white
///   reflector has Y = 1, and adapted from E's white point, so that reflector renders as
///   (1, 1, 1) and a reflectance-r grey as (r, r, r). No exposure change.
/// - `None`: the cube holds radiance of unknown scale. The CMFs are normalised so a flat
///   spectrum of value v has Y = v, XYZ is adapted from the equal-energy white (a flat
///   spectrum is neutral; a coloured light keeps its cast), and the exposure is set so the
///   99th percentile of Y maps to 0.9 (bright outliers clip rather than darken the image).
///
/// Bands outside the CIE table (380–780 nm) contribute nothing: the observer does not see them.
pub fn true_colour_srgb(cube: &Cube, illuminant: Option<&Spectrum>) -> Result<RgbImage> {
    true_colour_srgb_exposed(cube, illuminant, None).map(|(rgb, _)| rgb)
}

/// [`true_colour_srgb`] of radiance (`illuminant` `None`) at a given `exposure` (the factor on
/// linear RGB), or at the one it picks when `None`; returns the exposure used. Tiles of one
/// large cube share the exposure its overview picked, so they join without seams.
pub fn true_colour_srgb_exposed(cube: &Cube, illuminant: Option<&Spectrum>, exposure: Option<f32>) -> Result<(RgbImage, f32)> {
    let cmf = cmf_cie1931().on_grid(&cube.wavelengths)?; // (3, bands)
    let (weights, white) = match illuminant {
        Some(light) => {
            let e = Array1::from(light.resample_under_response(&cube.wavelengths)?.values);
            let w = &cmf * &e.view().insert_axis(Axis(0));
            let white = w.sum_axis(Axis(1));
            if white[1].is_nan() || white[1] <= 0.0 {
                bail_invalid!("illuminant '{}' has no luminance on the cube's wavelengths", light.name);
            }
            (w / white[1], [white[0] / white[1], 1.0, white[2] / white[1]])
        }
        None => {
            let white = cmf.sum_axis(Axis(1));
            if white[1].is_nan() || white[1] <= 0.0 {
                bail_invalid!("the cube's wavelengths see no luminance (CIE ȳ is zero there)");
            }
            (&cmf / white[1], [white[0] / white[1], 1.0, white[2] / white[1]])
        }
    };
    let to_rgb = mat3_mul(&XYZ_TO_SRGB, &bradford_to_d65(white));
    let m = Array2::from_shape_fn((3, 3), |(i, j)| to_rgb[i][j]);
    // Fold XYZ→RGB into the spectral weights: one pass over the cube.
    let full = m.dot(&weights);
    let mut rgb = project(full.view(), cube.data.view())?;
    let mut used = 1.0;
    if illuminant.is_none() {
        used = match exposure {
            Some(e) => e,
            None => {
                let y = project(weights.slice(ndarray::s![1..2, ..]), cube.data.view())?;
                let p99 = percentile(y.iter().copied(), 0.99);
                if p99 > 0.0 { 0.9 / p99 } else { 1.0 }
            }
        };
        rgb *= used;
    }
    rgb.mapv_inplace(|v| if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 });
    Ok((RgbImage::new(rgb)?, used))
}

// ---------------------------------------------------------------------------------------------
// False colour.

/// The `q` quantile (0..1) of the finite values, from at most ~200k evenly strided samples.
pub(crate) fn percentile(values: impl ExactSizeIterator<Item = f32>, q: f64) -> f32 {
    let n = values.len();
    let step = (n / 200_000).max(1);
    let mut v: Vec<f32> = values.step_by(step).filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    let k = ((v.len() - 1) as f64 * q).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *x
}

/// Three bands as R, G, B. With `stretch`, each channel is mapped linearly so its 2nd
/// percentile goes to 0 and its 98th to 1 (then clamped); without, values are clamped to
/// [0, 1] as they are. Non-finite values become 0.
pub fn false_colour(cube: &Cube, bands: [usize; 3], stretch: bool) -> Result<RgbImage> {
    let ranges = if stretch { false_colour_ranges(cube, bands)? } else { [(0.0, 1.0); 3] };
    false_colour_in(cube, bands, ranges)
}

/// The 2–98 % range of each of the three bands: what [`false_colour`] stretches to.
pub fn false_colour_ranges(cube: &Cube, bands: [usize; 3]) -> Result<[(f32, f32); 3]> {
    check_false_colour_bands(cube, bands)?;
    Ok(bands.map(|b| {
        let band = cube.band(b);
        (percentile(band.iter().copied(), 0.02), percentile(band.iter().copied(), 0.98))
    }))
}

fn check_false_colour_bands(cube: &Cube, bands: [usize; 3]) -> Result<()> {
    if let Some(&b) = bands.iter().find(|&&b| b >= cube.bands()) {
        bail_invalid!("band {b} asked for, the cube has {} bands (0..{})", cube.bands(), cube.bands());
    }
    Ok(())
}

/// Three bands as R, G, B, each mapped linearly from its `(lo, hi)` range to 0–1.
pub fn false_colour_in(cube: &Cube, bands: [usize; 3], ranges: [(f32, f32); 3]) -> Result<RgbImage> {
    check_false_colour_bands(cube, bands)?;
    let mut out = Array3::zeros((3, cube.rows(), cube.cols()));
    for (c, (&b, (lo, hi))) in bands.iter().zip(ranges).enumerate() {
        let band = cube.band(b);
        let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
        out.index_axis_mut(Axis(0), c).zip_mut_with(&band, |o, &v| {
            *o = if v.is_finite() { ((v - lo) * scale).clamp(0.0, 1.0) } else { 0.0 };
        });
    }
    RgbImage::new(out)
}

/// The bands nearest to 640, 550 and 460 nm: a natural-looking default for [`false_colour`].
pub fn default_false_colour_bands(cube: &Cube) -> [usize; 3] {
    [cube.nearest_band(640.0), cube.nearest_band(550.0), cube.nearest_band(460.0)]
}


#[cfg(test)]
mod tests {
    use super::*;

    fn flat_cube(v: f32) -> Cube {
        Cube::on_default_grid(Array3::from_elem((31, 2, 3), v)).unwrap()
    }

    #[test]
    fn clean_rgb_of_flat_cube_is_flat() {
        let cam = CameraResponse::builtin("nikon").unwrap();
        let rgb = clean_rgb(&flat_cube(0.5), &cam).unwrap();
        assert!(rgb.data.iter().all(|v| (v - 0.5).abs() < 1e-5));
        let lit =
            clean_rgb_lit(&flat_cube(1.0), &cam, Some(&crate::spectral::library::illuminant("a").unwrap())).unwrap();
        let max = lit.data.iter().cloned().fold(0.0, f32::max);
        assert!((max - 1.0).abs() < 1e-5);
        // incandescent light: red above blue
        assert!(lit.data[[0, 0, 0]] > lit.data[[2, 0, 0]]);
    }

    #[test]
    fn false_colour_stretches_and_checks_bands() {
        let data = Array3::from_shape_fn((3, 10, 10), |(b, r, c)| (b + r * 10 + c) as f32);
        let cube = Cube::new(data, vec![450.0, 550.0, 650.0]).unwrap();
        let fc = false_colour(&cube, [2, 1, 0], true).unwrap();
        assert_eq!(fc.data[[0, 0, 0]], 0.0);
        assert_eq!(fc.data[[0, 9, 9]], 1.0);
        assert!(false_colour(&cube, [3, 1, 0], true).is_err());
    }
}
