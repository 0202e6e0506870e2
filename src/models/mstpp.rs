//! MST++ (Cai, Lin, Lin, Wang, Zhang, Pfister, Timofte, Van Gool, "MST++: Multi-stage
//! Spectral-wise Transformer for Efficient Spectral Reconstruction", CVPRW 2022; winner of
//! NTIRE 2022): a 3×3 convolution to the bands, three U-shaped spectral-wise transformers in
//! sequence, a 3×3 convolution and a global residual.
//!
//! One stage (`body.N`, the paper's single-stage spectral-wise transformer): `embedding` 3×3;
//! encoder of attention blocks with 4×4 stride-2 convolutions doubling the channels; a bottleneck
//! block; decoder of 2×2 stride-2 transposed convolutions, concatenation with the skip, 1×1
//! fusion and a block; `mapping` 3×3, plus the stage's input. An attention block is a
//! spectral-wise multi-head self-attention (S-MSA: attention between channels, a 31 × 31 matrix
//! per head, so its cost is linear in the pixels) and a pre-norm feed-forward, each residual.
//!
//! The model is laid out NCHW throughout; where the authors' code permutes to (n, h, w, c) for
//! a linear layer or a layer norm, this applies the same map as a 1×1 convolution or a norm
//! over the channel axis: the same numbers, without the permutes. Tensor names are those of the
//! authors' PyTorch `state_dict`, so their checkpoints load by name.

use super::{InitData, SpectralNet};
use crate::nn::conv::{conv2d, conv2d_bias, pytorch_default_init, Conv};
use crate::nn::layers::transposed_conv2x2;
use crate::nn::reflect_pad_to_multiple;
use crate::nn::depthwise::depthwise_conv2d;
use crate::nn::gelu::gelu_erf;
use crate::nn::norm::{l2_normalize_last, layer_norm_channels, softmax_last, L2_NORM_EPS, LAYER_NORM_EPS};
use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MstppConfig {
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Output bands; equal to `n_feat`, since the output adds `conv_in`'s.
    pub out_channels: usize,
    /// Channels of every stage's top level, and the dimension of one attention head (31 in
    /// the paper: heads = channels / 31).
    pub n_feat: usize,
    /// Stages in sequence (3 in the paper).
    pub stage: usize,
    /// Down-sampling levels in one stage (2 in the paper).
    pub levels: usize,
    /// Attention blocks per level, encoder levels first, then the bottleneck ([1, 1, 1]).
    pub num_blocks: Vec<usize>,
}

impl Default for MstppConfig {
    /// The published MST++: 1.62 M parameters.
    fn default() -> Self {
        MstppConfig { in_channels: 3, out_channels: 31, n_feat: 31, stage: 3, levels: 2, num_blocks: vec![1, 1, 1] }
    }
}

impl MstppConfig {
    /// Largest sizes accepted: far above the paper's (3 stages, 2 levels, 1 block, 31
    /// features), and low enough that a mistyped card is an error, not an allocation of
    /// terabytes.
    const MAX_LEVELS: usize = 6;
    const MAX_STAGES: usize = 16;
    const MAX_BLOCKS: usize = 16;
    const MAX_CHANNELS: usize = 1024;

    fn check(&self) -> Result<()> {
        if self.n_feat == 0 || self.in_channels == 0 || self.stage == 0 {
            candle_core::bail!("mstpp needs at least one input channel, feature and stage")
        }
        if self.levels > Self::MAX_LEVELS || self.stage > Self::MAX_STAGES || self.n_feat > Self::MAX_CHANNELS || self.in_channels > Self::MAX_CHANNELS {
            candle_core::bail!(
                "mstpp config out of range: levels {} (at most {}), stage {} (at most {}), n_feat {} and in_channels {} (at most {})",
                self.levels,
                Self::MAX_LEVELS,
                self.stage,
                Self::MAX_STAGES,
                self.n_feat,
                self.in_channels,
                Self::MAX_CHANNELS
            )
        }
        if self.num_blocks.iter().any(|&b| b > Self::MAX_BLOCKS) {
            candle_core::bail!("mstpp: at most {} blocks per level, got {:?}", Self::MAX_BLOCKS, self.num_blocks)
        }
        if self.out_channels != self.n_feat {
            candle_core::bail!("mstpp adds conv_in's output to its result: out_channels ({}) must equal n_feat ({})", self.out_channels, self.n_feat)
        }
        if self.num_blocks.len() != self.levels + 1 {
            candle_core::bail!("mstpp: num_blocks needs one count per level and one for the bottleneck ({} in all), got {:?}", self.levels + 1, self.num_blocks)
        }
        Ok(())
    }

    /// Side the padded input must be a multiple of: 2^levels, and at least the 8 the authors pad to.
    fn multiple(&self) -> usize {
        (1usize << self.levels).max(8)
    }
}

/// A linear map over channels, (out, in) weights named as PyTorch's `nn.Linear`, applied to
/// every pixel as a 1×1 convolution.
#[derive(Debug, Clone)]
struct PixelLinear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl PixelLinear {
    /// PyTorch's MST++ initialises its linear layers from a normal of σ 0.02 (truncated at
    /// ±2, which at σ 0.02 never happens in practice) and their biases at zero.
    fn new(c_in: usize, c_out: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((c_out, c_in), "weight", Init::Randn { mean: 0.0, stdev: 0.02 })?;
        let bias = if bias { Some(vb.get_with_hints(c_out, "bias", Init::Const(0.0))?) } else { None };
        Ok(Self { weight, bias })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (o, i) = self.weight.dims2()?;
        let w = self.weight.reshape((o, i, 1, 1))?;
        match &self.bias {
            Some(b) => conv2d_bias(x, &w, b, 0, 1),
            None => conv2d(x, &w, 0, 1),
        }
    }
}

/// A depthwise 3×3 convolution's weights (c, 1, 3, 3), initialised as PyTorch's `Conv2d`
/// (fan-in 9), like every convolution of this model: trained from scratch, it starts where the
/// authors' code starts.
fn depthwise_weight(c: usize, vb: VarBuilder) -> Result<Tensor> {
    vb.get_with_hints((c, 1, 3, 3), "weight", pytorch_default_init(9))
}

/// Spectral-wise multi-head self-attention (`MS_MSA`).
#[derive(Debug, Clone)]
struct SpectralAttention {
    to_q: PixelLinear,
    to_k: PixelLinear,
    to_v: PixelLinear,
    /// (heads, 1, 1): a learned temperature per head.
    rescale: Tensor,
    proj: PixelLinear,
    pos_emb: [Tensor; 2],
    heads: usize,
}

impl SpectralAttention {
    fn new(dim: usize, dim_head: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let inner = dim_head * heads;
        Ok(Self {
            to_q: PixelLinear::new(dim, inner, false, vb.pp("to_q"))?,
            to_k: PixelLinear::new(dim, inner, false, vb.pp("to_k"))?,
            to_v: PixelLinear::new(dim, inner, false, vb.pp("to_v"))?,
            rescale: vb.get_with_hints((heads, 1, 1), "rescale", Init::Const(1.0))?,
            proj: PixelLinear::new(inner, dim, true, vb.pp("proj"))?,
            // `pos_emb` is Sequential(conv, GELU, conv): tensors `pos_emb.0` and `pos_emb.2`.
            pos_emb: [depthwise_weight(dim, vb.pp("pos_emb.0"))?, depthwise_weight(dim, vb.pp("pos_emb.2"))?],
            heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let v_inp = self.to_v.forward(x)?;
        let inner = v_inp.dim(1)?;
        let d = inner / self.heads;
        // (b, heads·d, h, w) → (b, heads, d, h·w): channel head·d + j is head `head`'s j-th.
        let split = |t: &Tensor| t.reshape((b, self.heads, d, h * w));
        let q = l2_normalize_last(&split(&self.to_q.forward(x)?)?, L2_NORM_EPS)?;
        let k = l2_normalize_last(&split(&self.to_k.forward(x)?)?, L2_NORM_EPS)?;
        let v = split(&v_inp)?;
        // A = softmax(rescale · K·Qᵀ): (b, heads, d, h·w) · (b, heads, h·w, d) → (b, heads, d, d)
        let attn = k.matmul(&q.transpose(2, 3)?.contiguous()?)?.broadcast_mul(&self.rescale)?;
        let attn = softmax_last(&attn)?;
        // (b, heads, d, d) · (b, heads, d, h·w) → (b, heads, d, h·w) → (b, heads·d, h, w)
        let mixed = attn.matmul(&v)?.reshape((b, inner, h, w))?;
        let out_c = self.proj.forward(&mixed)?;
        let out_p = depthwise_conv2d(&gelu_erf(&depthwise_conv2d(&v_inp, &self.pos_emb[0])?)?, &self.pos_emb[1])?;
        out_c + out_p
    }
}

/// Pre-norm feed-forward (`PreNorm(dim, FeedForward(dim))`): layer norm over channels, 1×1 to
/// 4c, GELU, depthwise 3×3, GELU, 1×1 back to c; no biases.
#[derive(Debug, Clone)]
struct FeedForward {
    norm: (Tensor, Tensor),
    expand: Tensor,
    depthwise: Tensor,
    reduce: Tensor,
}

impl FeedForward {
    const MULT: usize = 4;

    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let norm = (vb.get_with_hints(dim, "norm.weight", Init::Const(1.0))?, vb.get_with_hints(dim, "norm.bias", Init::Const(0.0))?);
        let net = vb.pp("fn.net");
        let hidden = dim * Self::MULT;
        Ok(Self {
            norm,
            expand: net.get_with_hints((hidden, dim, 1, 1), "0.weight", pytorch_default_init(dim))?,
            depthwise: depthwise_weight(hidden, net.pp("2"))?,
            reduce: net.get_with_hints((dim, hidden, 1, 1), "4.weight", pytorch_default_init(hidden))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = layer_norm_channels(x, &self.norm.0, &self.norm.1, LAYER_NORM_EPS)?;
        let y = gelu_erf(&conv2d(&y, &self.expand, 0, 1)?)?;
        let y = gelu_erf(&depthwise_conv2d(&y, &self.depthwise)?)?;
        conv2d(&y, &self.reduce, 0, 1)
    }
}

/// A sequence of attention blocks (`MSAB`), each `x = attn(x) + x; x = ff(x) + x`.
#[derive(Debug, Clone)]
struct AttentionBlocks {
    blocks: Vec<(SpectralAttention, FeedForward)>,
}

impl AttentionBlocks {
    fn new(dim: usize, dim_head: usize, count: usize, vb: VarBuilder) -> Result<Self> {
        let heads = dim / dim_head;
        let blocks = (0..count)
            .map(|j| {
                let block = vb.pp(format!("blocks.{j}"));
                Ok((SpectralAttention::new(dim, dim_head, heads, block.pp("0"))?, FeedForward::new(dim, block.pp("1"))?))
            })
            .collect::<Result<_>>()?;
        Ok(Self { blocks })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (attn, ff) in &self.blocks {
            x = (attn.forward(&x)? + &x)?;
            x = (ff.forward(&x)? + &x)?;
        }
        Ok(x)
    }
}

/// A 2×2 stride-2 transposed convolution with bias, weights (c_in, c_out, 2, 2) as PyTorch's
/// `ConvTranspose2d`. With kernel = stride the outputs' windows do not overlap, so it is a 1×1
/// convolution to 4·c_out channels followed by a pixel shuffle.
#[derive(Debug, Clone)]
struct UpSample {
    weight: Tensor,
    bias: Tensor,
}

impl UpSample {
    fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / ((c_out * 4) as f64).sqrt();
        Ok(Self {
            weight: vb.get_with_hints((c_in, c_out, 2, 2), "weight", Init::Uniform { lo: -bound, up: bound })?,
            bias: vb.get_with_hints(c_out, "bias", Init::Uniform { lo: -bound, up: bound })?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        transposed_conv2x2(x, &self.weight, &self.bias)
    }
}

/// One single-stage spectral-wise transformer (`MST`).
#[derive(Debug, Clone)]
struct Stage {
    embedding: Conv,
    encoder: Vec<(AttentionBlocks, Conv)>,
    bottleneck: AttentionBlocks,
    decoder: Vec<(UpSample, Conv, AttentionBlocks)>,
    mapping: Conv,
}

impl Stage {
    fn new(cfg: &MstppConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.n_feat;
        let mut encoder = Vec::new();
        let mut c = dim;
        for i in 0..cfg.levels {
            let layer = vb.pp(format!("encoder_layers.{i}"));
            let blocks = AttentionBlocks::new(c, dim, cfg.num_blocks[i], layer.pp("0"))?;
            encoder.push((blocks, Conv::pytorch_default(c, 2 * c, 4, 1, false, layer.pp("1"))?.with_stride(2)));
            c *= 2;
        }
        let bottleneck = AttentionBlocks::new(c, dim, cfg.num_blocks[cfg.levels], vb.pp("bottleneck"))?;
        let mut decoder = Vec::new();
        for i in 0..cfg.levels {
            let layer = vb.pp(format!("decoder_layers.{i}"));
            decoder.push((
                UpSample::new(c, c / 2, layer.pp("0"))?,
                Conv::pytorch_default(c, c / 2, 1, 0, false, layer.pp("1"))?,
                AttentionBlocks::new(c / 2, dim, cfg.num_blocks[cfg.levels - 1 - i], layer.pp("2"))?,
            ));
            c /= 2;
        }
        Ok(Self {
            embedding: Conv::pytorch_default(dim, dim, 3, 1, false, vb.pp("embedding"))?,
            encoder,
            bottleneck,
            decoder,
            mapping: Conv::pytorch_default(dim, dim, 3, 1, false, vb.pp("mapping"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut fea = self.embedding.forward(x)?;
        let mut skips = Vec::with_capacity(self.encoder.len());
        for (blocks, down) in &self.encoder {
            fea = blocks.forward(&fea)?;
            skips.push(fea.clone());
            fea = down.forward(&fea)?;
        }
        fea = self.bottleneck.forward(&fea)?;
        for (up, fusion, blocks) in &self.decoder {
            let skip = skips.pop().expect("one skip per level");
            fea = fusion.forward(&Tensor::cat(&[&up.forward(&fea)?, &skip], 1)?)?;
            fea = blocks.forward(&fea)?;
        }
        self.mapping.forward(&fea)? + x
    }
}

#[derive(Debug, Clone)]
pub struct Mstpp {
    conv_in: Conv,
    body: Vec<Stage>,
    conv_out: Conv,
    multiple: usize,
}

impl Mstpp {
    pub fn new(cfg: &MstppConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check()?;
        Ok(Self {
            conv_in: Conv::pytorch_default(cfg.in_channels, cfg.n_feat, 3, 1, false, vb.pp("conv_in"))?,
            body: (0..cfg.stage).map(|s| Stage::new(cfg, vb.pp(format!("body.{s}")))).collect::<Result<_>>()?,
            conv_out: Conv::pytorch_default(cfg.n_feat, cfg.out_channels, 3, 1, false, vb.pp("conv_out"))?,
            multiple: cfg.multiple(),
        })
    }
}

impl SpectralNet for Mstpp {
    fn forward_t(&self, rgb: &Tensor, _camera: Option<&super::camera::CameraBatch>, _train: bool) -> Result<Tensor> {
        let (_, _, rows, cols) = rgb.dims4()?;
        let x = self.conv_in.forward(&reflect_pad_to_multiple(rgb, self.multiple)?)?;
        let mut h = x.clone();
        for stage in &self.body {
            h = stage.forward(&h)?;
        }
        let y = (self.conv_out.forward(&h)? + x)?;
        y.narrow(2, 0, rows)?.narrow(3, 0, cols)
    }

    fn camera_prior(&self) -> Option<&super::camera::CameraPrior> {
        None
    }

    fn size_multiple(&self) -> usize {
        self.multiple
    }

    fn receptive_margin(&self) -> usize {
        // Unused while it runs whole-image; the convolutions' reach if it were tiled.
        64
    }

    fn whole_image(&self) -> bool {
        // The attention mixes channels with statistics of every pixel: tiles would each get
        // their own and show seams, and would not match the authors' whole-image prediction.
        true
    }

    fn data_init(&self, _data: &InitData) -> crate::Result<Vec<(&'static str, ndarray::Array2<f32>)>> {
        Ok(Vec::new())
    }

    fn is_trainable(&self, _name: &str) -> bool {
        true
    }
}
