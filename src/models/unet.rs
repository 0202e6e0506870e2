//! The multi-scale encoder–decoder shared by both learned models (Yan et al., "Accurate
//! spectral super-resolution from single RGB image using multi-scale CNN", PRCV 2018):
//! Double Conv blocks, 2×2 max-pool down, pixel-shuffle up (channels ÷ 4, size × 2), skip
//! concatenation. Widths double at each level: w, 2w, 4w, … .

use crate::nn::layers::{max_pool2x2, DoubleConv};
use crate::nn::profile::timed;
use crate::nn::shuffle::shuffle_concat;
use candle_core::{ModuleT, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct UNet {
    inc: DoubleConv,
    downs: Vec<DoubleConv>,
    ups: Vec<DoubleConv>,
    width: usize,
}

impl UNet {
    /// `depth` max-pool steps; `width` (even, ≥ 2) channels at full resolution.
    /// Tensor names: `inc.*`, `down.{i}.*`, `up.{i}.*` (i = 0 nearest the input).
    pub fn new(c_in: usize, width: usize, depth: usize, dropout: f64, vb: VarBuilder) -> Result<Self> {
        if width < 2 || width % 2 != 0 {
            candle_core::bail!("U-Net width must be even and at least 2, got {width}")
        }
        if depth > 6 {
            candle_core::bail!("U-Net depth {depth} is more than 6 levels")
        }
        let inc = DoubleConv::new(c_in, width, dropout, vb.pp("inc"))?;
        let mut downs = Vec::with_capacity(depth);
        let mut ups = Vec::with_capacity(depth);
        for i in 0..depth {
            let c = width << i;
            downs.push(DoubleConv::new(c, 2 * c, dropout, vb.pp(format!("down.{i}")))?);
            // Up at level i: the deeper map (2c channels) pixel-shuffles to 2c/4 = c/2 channels,
            // concatenated with the skip (c) → 3c/2 in, c out.
            ups.push(DoubleConv::new(c + c / 2, c, dropout, vb.pp(format!("up.{i}")))?);
        }
        Ok(Self { inc, downs, ups, width })
    }

    pub fn depth(&self) -> usize {
        self.downs.len()
    }

    pub fn out_channels(&self) -> usize {
        self.width
    }
}

impl ModuleT for UNet {
    /// (b, c_in, h, w) with h, w multiples of 2^depth → (b, width, h, w).
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut skips = Vec::with_capacity(self.depth() + 1);
        let mut x = self.inc.forward_t(x, train)?;
        for down in &self.downs {
            skips.push(x.clone());
            let pooled = timed("max_pool", || max_pool2x2(&x))?;
            x = down.forward_t(&pooled, train)?;
        }
        for (up, skip) in self.ups.iter().zip(skips.iter()).rev() {
            // (b, 2c, h/2, w/2) → (b, c/2, h, w), then [skip, up] along channels.
            let joined = timed("pixel_shuffle+concat", || shuffle_concat(skip, &x))?;
            x = up.forward_t(&joined, train)?;
        }
        Ok(x)
    }
}
