//! Turning data into pixels for a screen: colormaps, contrast stretches, and RGBA8 buffers of
//! bands, RGB images and error maps. No GUI types here, so the views and the tests share it.

use crate::RgbImage;
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Colormap {
    #[default]
    Grey,
    Viridis,
    Inferno,
}

impl Colormap {
    pub const ALL: [Colormap; 3] = [Colormap::Grey, Colormap::Viridis, Colormap::Inferno];

    pub fn name(self) -> &'static str {
        match self {
            Colormap::Grey => "grey",
            Colormap::Viridis => "viridis",
            Colormap::Inferno => "inferno",
        }
    }

    /// The colour at `t` in [0, 1] (clamped).
    pub fn colour(self, t: f32) -> [u8; 3] {
        let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
        let anchors: &[[u8; 3]] = match self {
            Colormap::Grey => return [(t * 255.0).round() as u8; 3],
            Colormap::Viridis => &VIRIDIS,
            Colormap::Inferno => &INFERNO,
        };
        let x = t * (anchors.len() - 1) as f32;
        let i = (x.floor() as usize).min(anchors.len() - 2);
        let f = x - i as f32;
        let mix = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * f).round() as u8;
        [mix(anchors[i][0], anchors[i + 1][0]), mix(anchors[i][1], anchors[i + 1][1]), mix(anchors[i][2], anchors[i + 1][2])]
    }
}

// Nine evenly spaced samples of matplotlib's perceptually uniform maps, linearly interpolated.
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 82, 139],
    [44, 113, 142],
    [33, 145, 140],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];
const INFERNO: [[u8; 3]; 9] = [
    [0, 0, 4],
    [31, 12, 72],
    [85, 15, 109],
    [136, 34, 106],
    [186, 54, 85],
    [227, 89, 51],
    [249, 140, 10],
    [249, 201, 50],
    [252, 255, 164],
];

/// How data values map onto the colormap's [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Stretch {
    /// Smallest value → 0, largest → 1.
    MinMax,
    /// 2nd percentile → 0, 98th → 1: a few hot or dead pixels do not flatten the image.
    #[default]
    Percentile,
    /// Histogram equalisation: each value maps to its rank, so every shade is equally used.
    Equalise,
}

impl Stretch {
    pub const ALL: [Stretch; 3] = [Stretch::MinMax, Stretch::Percentile, Stretch::Equalise];

    pub fn name(self) -> &'static str {
        match self {
            Stretch::MinMax => "min–max",
            Stretch::Percentile => "2–98 %",
            Stretch::Equalise => "equalise",
        }
    }
}

/// The data values that map to the ends of the colour scale (for a colour bar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub lo: f32,
    pub hi: f32,
}

/// Colour for values that are not numbers (pixels outside a library's coverage, say).
const NO_DATA: [u8; 4] = [255, 0, 255, 255];

/// At most this many values are sorted to find percentiles and ranks: enough for a stable
/// estimate, cheap enough to run in a frame.
const SAMPLE_LIMIT: usize = 65_536;

fn finite_sample(values: ArrayView2<f32>) -> Vec<f32> {
    let step = (values.len() / SAMPLE_LIMIT).max(1);
    let mut v: Vec<f32> = values.iter().step_by(step).copied().filter(|x| x.is_finite()).collect();
    v.sort_unstable_by(f32::total_cmp);
    v
}

fn quantile(sorted: &[f32], q: f32) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f32 * q).round() as usize]
}

/// A band (or any 2-D map) as RGBA8, row-major, with the range the stretch chose.
pub fn map_rgba(values: ArrayView2<f32>, stretch: Stretch, colormap: Colormap) -> (Vec<u8>, Range) {
    let sorted = finite_sample(values);
    let range = match stretch {
        Stretch::MinMax | Stretch::Equalise => Range { lo: quantile(&sorted, 0.0), hi: quantile(&sorted, 1.0) },
        Stretch::Percentile => Range { lo: quantile(&sorted, 0.02), hi: quantile(&sorted, 0.98) },
    };
    let pixels = match stretch {
        Stretch::Equalise => {
            let n = sorted.len().max(1) as f32;
            values_to_rgba(values, colormap, |v| sorted.partition_point(|&s| s < v) as f32 / n)
        }
        _ => return (fixed_range_rgba(values, range, colormap), range),
    };
    (pixels, range)
}

/// A map with a fixed scale (error maps: the colour bar must mean the same in every view).
pub fn fixed_range_rgba(values: ArrayView2<f32>, range: Range, colormap: Colormap) -> Vec<u8> {
    let span = range.hi - range.lo;
    let scale = if span > 0.0 { 1.0 / span } else { 0.0 };
    values_to_rgba(values, colormap, |v| (v - range.lo) * scale)
}

fn values_to_rgba(values: ArrayView2<f32>, colormap: Colormap, to_unit: impl Fn(f32) -> f32) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for &v in values.iter() {
        if v.is_finite() {
            let [r, g, b] = colormap.colour(to_unit(v));
            out.extend_from_slice(&[r, g, b, 255]);
        } else {
            out.extend_from_slice(&NO_DATA);
        }
    }
    out
}

/// An RGB image as RGBA8. Linear data is multiplied by `gain` and sRGB-encoded when
/// `srgb_encode` (camera RGB is linear; a display expects sRGB).
pub fn rgb_rgba(rgb: &RgbImage, gain: f32, srgb_encode: bool) -> Vec<u8> {
    let (rows, cols) = (rgb.rows(), rgb.cols());
    let mut out = vec![255u8; rows * cols * 4];
    for c in 0..3 {
        for (i, &v) in rgb.channel(c).iter().enumerate() {
            let x = if v.is_finite() { (v * gain).clamp(0.0, 1.0) } else { 0.0 };
            let x = if srgb_encode { crate::rgb::linear_to_srgb(x) } else { x };
            out[i * 4 + c] = (x * 255.0).round() as u8;
        }
    }
    out
}

/// A display gain for linear RGB: the 99th percentile of all channels maps to 0.9, like
/// `render::true_colour_srgb` does for cubes, so dark camera images are visible.
pub fn auto_gain(rgb: &RgbImage) -> f32 {
    let p99 = crate::spectral::render::percentile(rgb.data.iter().copied(), 0.99);
    if p99 > 0.0 {
        0.9 / p99
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array3};

    #[test]
    fn colormaps_run_from_their_first_to_their_last_anchor() {
        assert_eq!(Colormap::Grey.colour(0.0), [0, 0, 0]);
        assert_eq!(Colormap::Grey.colour(1.0), [255, 255, 255]);
        assert_eq!(Colormap::Viridis.colour(0.0), VIRIDIS[0]);
        assert_eq!(Colormap::Viridis.colour(1.0), VIRIDIS[8]);
        assert_eq!(Colormap::Inferno.colour(2.0), INFERNO[8]);
        assert_eq!(Colormap::Inferno.colour(f32::NAN), INFERNO[0]);
    }

    #[test]
    fn min_max_stretch_spans_the_whole_map_and_reports_its_range() {
        let band = Array2::from_shape_fn((2, 2), |(r, c)| (r * 2 + c) as f32);
        let (px, range) = map_rgba(band.view(), Stretch::MinMax, Colormap::Grey);
        assert_eq!(range, Range { lo: 0.0, hi: 3.0 });
        assert_eq!(&px[0..4], &[0, 0, 0, 255]);
        assert_eq!(&px[12..16], &[255, 255, 255, 255]);
        assert_eq!(px[4], 85);
    }

    #[test]
    fn percentile_stretch_ignores_a_hot_pixel() {
        let mut band = Array2::from_shape_fn((10, 10), |(r, c)| (r * 10 + c) as f32 / 100.0);
        band[[0, 0]] = 1e6;
        let (_, minmax) = map_rgba(band.view(), Stretch::MinMax, Colormap::Grey);
        let (_, pct) = map_rgba(band.view(), Stretch::Percentile, Colormap::Grey);
        assert_eq!(minmax.hi, 1e6);
        assert!(pct.hi < 1.0, "{pct:?}");
    }

    #[test]
    fn equalisation_spreads_clustered_values_evenly() {
        // Three values clustered near 0 and one far away: equalised, they use evenly spaced greys.
        let band = Array2::from_shape_vec((1, 4), vec![0.0, 0.001, 0.002, 100.0]).unwrap();
        let (px, _) = map_rgba(band.view(), Stretch::Equalise, Colormap::Grey);
        let greys: Vec<u8> = px.chunks(4).map(|p| p[0]).collect();
        assert_eq!(greys, vec![0, 64, 128, 191]);
    }

    #[test]
    fn not_a_number_is_shown_as_no_data() {
        let band = Array2::from_shape_vec((1, 2), vec![f32::NAN, 1.0]).unwrap();
        let px = fixed_range_rgba(band.view(), Range { lo: 0.0, hi: 1.0 }, Colormap::Viridis);
        assert_eq!(&px[0..4], &NO_DATA);
        assert_eq!(&px[4..7], &VIRIDIS[8]);
    }

    #[test]
    fn rgb_is_gained_encoded_and_opaque() {
        let rgb = RgbImage::new(Array3::from_shape_vec((3, 1, 1), vec![0.5, 0.25, 0.0]).unwrap()).unwrap();
        assert_eq!(rgb_rgba(&rgb, 2.0, false), vec![255, 128, 0, 255]);
        let encoded = rgb_rgba(&rgb, 1.0, true);
        assert_eq!(encoded[0], (crate::rgb::linear_to_srgb(0.5) * 255.0).round() as u8);
        assert!((auto_gain(&rgb) - 0.9 / 0.5).abs() < 1e-6);
    }
}
