//! `RgbImage`: a three-channel image as linear camera RGB in [0, 1], and the one place the
//! sRGB transfer function lives.

use ndarray::{Array3, ArrayView2, Axis};

/// (3, rows, cols), channels R, G, B, linear (not gamma-encoded).
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub data: Array3<f32>,
}

impl RgbImage {
    pub fn new(data: Array3<f32>) -> crate::Result<Self> {
        if data.shape()[0] != 3 {
            crate::bail_invalid!("an RGB image needs 3 channels, got {}", data.shape()[0]);
        }
        Ok(RgbImage { data })
    }
    pub fn rows(&self) -> usize {
        self.data.shape()[1]
    }
    pub fn cols(&self) -> usize {
        self.data.shape()[2]
    }
    pub fn channel(&self, c: usize) -> ArrayView2<'_, f32> {
        self.data.index_axis(Axis(0), c)
    }
}

/// A value in [0, 1] as an integer level out of `max` (255 for 8 bit, 65535 for 16 bit):
/// clamped, then rounded to the nearest level. The one quantiser of image outputs.
pub fn quantise(v: f32, max: f32) -> f32 {
    (v.clamp(0.0, 1.0) * max).round()
}

impl RgbImage {
    /// Interleaved 8-bit bytes (rows × cols × 3), for encoders; `srgb_encode` applies the
    /// sRGB transfer function first (for viewing), otherwise the linear values are stored.
    pub fn to_rgb8(&self, srgb_encode: bool) -> Vec<u8> {
        let (rows, cols) = (self.rows(), self.cols());
        let mut out = Vec::with_capacity(rows * cols * 3);
        for r in 0..rows {
            for c in 0..cols {
                for ch in 0..3 {
                    let v = self.data[[ch, r, c]];
                    out.push(quantise(if srgb_encode { linear_to_srgb(v) } else { v }, 255.0) as u8);
                }
            }
        }
        out
    }
}

/// sRGB-encoded value in [0, 1] → linear light (IEC 61966-2-1).
pub fn srgb_to_linear(v: f32) -> f32 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// Linear light → sRGB-encoded value; input clamped to [0, 1].
pub fn linear_to_srgb(v: f32) -> f32 {
    let v = v.clamp(0.0, 1.0);
    if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_round_trip_and_known_points() {
        for i in 0..=100 {
            let v = i as f32 / 100.0;
            assert!((linear_to_srgb(srgb_to_linear(v)) - v).abs() < 1e-5);
        }
        // mid grey 0.5 encoded is 0.214 linear
        assert!((srgb_to_linear(0.5) - 0.21404).abs() < 1e-4);
        assert!((linear_to_srgb(2.0) - 1.0).abs() < 1e-6, "values above 1 clamp to white");
    }
}
