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

impl UNet {
    /// [`ModuleT::forward_t`] of `x` (b, c, h, w) with the per-picture `context` (b, m, 1, 1)
    /// appended as m constant channels. At inference the constant channels are never made:
    /// the first convolution takes them as a one-channel convolution per image
    /// ([`DoubleConv::forward_with_context`]); in training they are concatenated (the
    /// gradient-checked path).
    pub fn forward_with_context(&self, x: &Tensor, context: Option<&Tensor>, train: bool) -> Result<Tensor> {
        match context {
            None => self.forward_t(x, train),
            Some(context) if train => self.forward_t(&super::input::with_context(x, context)?, train),
            Some(context) => self.levels(self.inc.forward_with_context(x, context)?, false),
        }
    }

    /// The levels below the first block, from its output.
    fn levels(&self, mut x: Tensor, train: bool) -> Result<Tensor> {
        let mut skips = Vec::with_capacity(self.depth() + 1);
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

impl ModuleT for UNet {
    /// (b, c_in, h, w) with h, w multiples of 2^depth → (b, width, h, w).
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.levels(self.inc.forward_t(x, train)?, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn context_taken_as_a_one_channel_convolution_equals_the_concatenated_channels() {
        let varmap = VarMap::new();
        let unet = UNet::new(5 + 3, 4, 2, 0.0, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
        // Batch-norm statistics away from (0, 1), so the folding is exercised.
        let mut rng = crate::spectral::rng::Rng::new(11);
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let n = var.elem_count();
            let v: Vec<f32> = (0..n).map(|_| rng.uniform_f32()).collect();
            let v: Vec<f32> = if name.ends_with("running_var") { v.iter().map(|x| 0.5 + x).collect() } else { v.iter().map(|x| x - 0.5).collect() };
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
        }
        let x = Tensor::from_vec((0..2 * 5 * 8 * 12).map(|_| rng.uniform_f32()).collect::<Vec<f32>>(), (2, 5, 8, 12), &Device::Cpu).unwrap();
        let context = Tensor::from_vec(vec![0.3f32, -0.7, 1.2, 0.9, 0.1, -0.4], (2, 3, 1, 1), &Device::Cpu).unwrap();
        let whole = unet.forward_t(&crate::models::input::with_context(&x, &context).unwrap(), false).unwrap();
        let folded = unet.forward_with_context(&x, Some(&context), false).unwrap();
        let scale = whole.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let gap = (whole - folded).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(scale > 0.1 && gap <= 1e-5 * scale, "gap {gap} of {scale}");
        // In training the channels are concatenated, as before.
        let trained = unet.forward_with_context(&x, Some(&context), true).unwrap();
        assert_eq!(trained.dims(), [2, 4, 8, 12]);
    }
}
