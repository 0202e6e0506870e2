//! 2-D convolution on the CPU as a candle custom op: im2col strips + a packed GEMM (the `gemm`
//! crate candle itself uses) for the forward pass and both gradients. Stock candle 0.11 runs
//! the input gradient as a naive transposed convolution (about 17× slower than PyTorch on
//! 8×32×64×64), which made training the U-Nets on a laptop CPU impractical.
//!
//! Layout is NCHW, groups = 1, dilation = 1, any padding and stride. The image is processed in
//! strips of output rows so the im2col buffer stays a few MB whatever the image size. f32 and
//! f64 on the CPU; other dtypes and devices use candle's own `conv2d`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use super::direct;
use super::threads::{parallel_items, sum_partials, threads, SharedMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether "same" stride-1 f32 convolutions take the direct kernel ([`direct`]) where the CPU
/// has it. On by default; `bench recon` and the tests turn it off to measure and check the
/// im2col path against it.
static DIRECT_ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_direct_enabled(on: bool) {
    DIRECT_ENABLED.store(on, Ordering::Relaxed);
}

pub fn direct_enabled() -> bool {
    DIRECT_ENABLED.load(Ordering::Relaxed) && direct::available()
}

/// Floats per im2col strip (4 MB of f32): big enough for efficient GEMMs, small enough to
/// stay in cache and keep memory flat.
const STRIP_ELEMENTS: usize = 1 << 20;

/// `conv2d(x, w)` with `padding` on every side and `stride`: (n, c, h, w) * (o, c, kh, kw).
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    let fast = super::portable::cpu_kernel(x.device(), x.dtype()) && x.dtype() == w.dtype();
    if !fast {
        return conv2d_portable(x, w, padding, stride);
    }
    let geometry = Geometry::new(x.dims(), w.dims(), padding, stride)?;
    x.contiguous()?.apply_op2(&w.contiguous()?, ConvForward { geometry })
}

/// [`conv2d`] from candle's ops, for every device. candle 0.11's conv2d backward computes one
/// output padding for both axes (from the rows), so with stride > 1 it fails, or pads wrongly,
/// when rows and columns leave different remainders. Here the input is padded explicitly and
/// cut to the rows and columns the convolution reads ((out − 1)·stride + k), which leaves no
/// remainder on either axis; the cut's backward gives the unread ones their zero gradient.
pub fn conv2d_portable(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return x.conv2d(w, padding, 1, 1, 1);
    }
    let geometry = Geometry::new(x.dims(), w.dims(), padding, stride)?;
    let (_, _, kh, kw) = w.dims4()?;
    let x = if padding > 0 { x.pad_with_zeros(2, padding, padding)?.pad_with_zeros(3, padding, padding)? } else { x.clone() };
    let read = |out: usize, k: usize| (out - 1) * stride + k;
    x.narrow(2, 0, read(geometry.oh, kh))?.narrow(3, 0, read(geometry.ow, kw))?.conv2d(w, 0, stride, 1, 1)
}

/// dL/dx of `conv2d(x, w, padding, stride)` for an x of shape `x_dims`, given dL/dy. What the
/// backward pass runs, exposed for benchmarks.
pub fn conv2d_input_grad(grad: &Tensor, w: &Tensor, x_dims: &[usize], padding: usize, stride: usize) -> Result<Tensor> {
    let geometry = Geometry::new(x_dims, w.dims(), padding, stride)?;
    grad.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &ConvGrad { geometry, wrt: Wrt::Input })
}

/// dL/dw of `conv2d(x, w, padding, stride)` for a w of shape `w_dims`, given dL/dy.
pub fn conv2d_weight_grad(x: &Tensor, grad: &Tensor, w_dims: &[usize], padding: usize, stride: usize) -> Result<Tensor> {
    let geometry = Geometry::new(x.dims(), w_dims, padding, stride)?;
    x.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &ConvGrad { geometry, wrt: Wrt::Weight })
}

/// Inference only: `conv2d(x, w)` ("same" padding `padding`, stride 1) + `bias` per output
/// channel, then LeakyReLU with `leaky_slope` if given, in one pass where the direct kernel
/// applies. No gradient flows through it (a backward pass through it is an error).
pub fn conv2d_bias_act(x: &Tensor, w: &Tensor, bias: &Tensor, padding: usize, leaky_slope: Option<f64>) -> Result<Tensor> {
    let fused = super::portable::cpu_kernel(x.device(), x.dtype()) && x.dtype() == DType::F32 && w.dtype() == DType::F32 && bias.dtype() == DType::F32;
    if fused {
        let geometry = Geometry::new(x.dims(), w.dims(), padding, 1)?;
        if geometry.use_direct() {
            return x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &bias.contiguous()?, &ConvBias { geometry, leaky_slope });
        }
    }
    let y = conv2d(x, w, padding, 1)?.broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
    super::act::leaky_relu_if(y, leaky_slope)
}

/// `conv2d(x, w, padding, stride)` + `bias` (o) per output channel, with gradients for all
/// three. On the CPU one op: the bias is added as the output is stored, and its gradient is the
/// output gradient summed per channel. candle's `broadcast_add` backward sums over batch and
/// pixels with a strided reduction that took longer than the 1×1 convolution it followed.
pub fn conv2d_bias(x: &Tensor, w: &Tensor, bias: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    let cpu = super::portable::cpu_kernel(x.device(), x.dtype()) && x.dtype() == w.dtype() && x.dtype() == bias.dtype();
    if !cpu {
        return conv2d(x, w, padding, stride)?.broadcast_add(&bias.reshape((1, (), 1, 1))?);
    }
    let geometry = Geometry::new(x.dims(), w.dims(), padding, stride)?;
    x.contiguous()?.apply_op3(&w.contiguous()?, &bias.contiguous()?, ConvBias { geometry, leaky_slope: None })
}

/// A convolution with a bias per output channel and, at inference only, LeakyReLU.
struct ConvBias {
    geometry: Geometry,
    leaky_slope: Option<f64>,
}

impl candle_core::CustomOp3 for ConvBias {
    fn name(&self) -> &'static str {
        "conv2d-bias"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let out = conv_storage(g, (s1, l1), (s2, l2), Some((s3, l3)), self.leaky_slope)?;
        Ok((out, Shape::from((g.n, g.o, g.oh, g.ow))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _bias: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if self.leaky_slope.is_some() {
            candle_core::bail!("conv2d-bias: no gradient through the inference-only activation")
        }
        let grad = grad.contiguous()?;
        let (dx, dw) = conv_gradients(self.geometry, x, w, &grad)?;
        let g = &self.geometry;
        // Per channel: sum the contiguous planes first (a fast last-axis reduction), then the batch.
        let db = super::profile::timed("backward: conv bias grad", || grad.reshape((g.n, g.o, g.oh * g.ow))?.sum(2)?.sum(0))?;
        Ok((dx, Some(dw), Some(db)))
    }
}

/// dL/dx (None when x needs no gradient, e.g. the network's input) and dL/dw of a convolution.
pub(super) fn conv_gradients(geometry: Geometry, x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Tensor)> {
    let dx = if x.track_op() {
        Some(super::profile::timed("backward: conv input grad", || grad.apply_op2_no_bwd(w, &ConvGrad { geometry, wrt: Wrt::Input }))?)
    } else {
        None
    };
    let dw = super::profile::timed("backward: conv weight grad", || x.apply_op2_no_bwd(grad, &ConvGrad { geometry, wrt: Wrt::Weight }))?;
    Ok((dx, dw))
}

/// The forward pass of a convolution on CPU storages, with an optional bias per output channel
/// and LeakyReLU (the direct kernel applies both as it stores; the other paths afterwards).
pub(super) fn conv_storage(g: &Geometry, x: (&CpuStorage, &Layout), w: (&CpuStorage, &Layout), bias: Option<(&CpuStorage, &Layout)>, leaky_slope: Option<f64>) -> Result<CpuStorage> {
    if let Some((_, l)) = bias {
        if l.shape().elem_count() != g.o {
            candle_core::bail!("conv2d bias has {} values for {} output channels", l.shape().elem_count(), g.o)
        }
    }
    let direct = x.0.dtype() == DType::F32 && g.use_direct();
    if leaky_slope.is_some() && !direct {
        candle_core::bail!("conv2d op: LeakyReLU is fused only on the direct path")
    }
    macro_rules! other_paths {
        ($t:ty) => {{
            let mut out = forward(g, contiguous::<$t>(x.0, x.1)?, contiguous::<$t>(w.0, w.1)?);
            if let Some((s, l)) = bias {
                let bias = contiguous::<$t>(s, l)?;
                for (i, plane) in out.chunks_exact_mut(g.out_pixels()).enumerate() {
                    let b = bias[i % g.o];
                    plane.iter_mut().for_each(|v| *v += b);
                }
            }
            out
        }};
    }
    let out = match x.0.dtype() {
        DType::F32 if direct => {
            let weights = direct::PackedWeights::new(contiguous::<f32>(w.0, w.1)?, g.o, g.c, g.kh);
            let bias = bias.map(|(s, l)| contiguous::<f32>(s, l)).transpose()?;
            let epilogue = direct::Epilogue { bias, leaky_slope: leaky_slope.map(|s| s as f32) };
            CpuStorage::F32(direct::conv_same(contiguous::<f32>(x.0, x.1)?, g.n, g.h, g.w, &weights, epilogue))
        }
        DType::F32 => f32::storage(other_paths!(f32)),
        DType::F64 => f64::storage(other_paths!(f64)),
        other => candle_core::bail!("conv2d op: unsupported dtype {other:?}"),
    };
    Ok(out)
}

/// Shapes of one convolution.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    stride: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    pub(super) fn new(x: &[usize], w: &[usize], pad: usize, stride: usize) -> Result<Self> {
        let (&[n, c, h, wd], &[o, wc, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d needs 4-D input and weight, got {x:?} and {w:?}")
        };
        if wc != c {
            candle_core::bail!("conv2d: input has {c} channels, weight expects {wc}")
        }
        if stride == 0 || h + 2 * pad < kh || wd + 2 * pad < kw {
            candle_core::bail!("conv2d: kernel {kh}x{kw} does not fit input {h}x{wd} with padding {pad}, stride {stride}")
        }
        let (oh, ow) = ((h + 2 * pad - kh) / stride + 1, (wd + 2 * pad - kw) / stride + 1);
        Ok(Geometry { n, c, h, w: wd, o, kh, kw, pad, stride, oh, ow })
    }

    /// Rows of the im2col matrix: one per (channel, ky, kx).
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// (n, o, oh, ow) of the output.
    pub(super) fn output_dims(&self) -> (usize, usize, usize, usize) {
        (self.n, self.o, self.oh, self.ow)
    }

    fn out_pixels(&self) -> usize {
        self.oh * self.ow
    }

    /// Output rows per strip.
    fn strip_rows(&self) -> usize {
        (STRIP_ELEMENTS / (self.k() * self.ow).max(1)).clamp(1, self.oh)
    }

    fn strips(&self) -> usize {
        self.oh.div_ceil(self.strip_rows())
    }

    /// Square odd kernel, stride 1, padding (k − 1)/2: the output has the input's size, and
    /// the direct kernel applies (to the forward pass and the input gradient).
    fn is_same(&self) -> bool {
        self.kh == self.kw && self.kh % 2 == 1 && self.pad == self.kh / 2 && self.stride == 1
    }

    fn use_direct(&self) -> bool {
        self.is_same() && direct_enabled()
    }

    /// A 1×1, stride-1, unpadded convolution reads the input itself as its im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
}

/// The element types the op runs on.
trait Element: Copy + Default + Send + Sync + std::ops::AddAssign + 'static {
    const ONE: Self;
    fn slice(s: &CpuStorage) -> Result<&[Self]>;
    fn storage(v: Vec<Self>) -> CpuStorage;
}

impl Element for f32 {
    const ONE: Self = 1.0;
    fn slice(s: &CpuStorage) -> Result<&[Self]> {
        s.as_slice::<f32>()
    }
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
}

impl Element for f64 {
    const ONE: Self = 1.0;
    fn slice(s: &CpuStorage) -> Result<&[Self]> {
        s.as_slice::<f64>()
    }
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F64(v)
    }
}

fn contiguous<'a, T: Element>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let Some((start, end)) = l.contiguous_offsets() else { candle_core::bail!("conv2d op needs contiguous tensors") };
    Ok(&T::slice(s)?[start..end])
}

/// Fill `cols` (k × rows·ow, row-major) with the im2col strip of output rows [oy0, oy1).
fn im2col<T: Element>(g: &Geometry, image: &[T], oy0: usize, oy1: usize, cols: &mut [T]) {
    let p = (oy1 - oy0) * g.ow;
    for c in 0..g.c {
        let plane = &image[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &mut cols[((c * g.kh + ky) * g.kw + kx) * p..][..p];
                for (i, oy) in (oy0..oy1).enumerate() {
                    let out = &mut row[i * g.ow..(i + 1) * g.ow];
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        out.fill(T::default());
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (ox, v) in out.iter_mut().enumerate() {
                        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                        *v = if ix >= 0 && (ix as usize) < g.w { src[ix as usize] } else { T::default() };
                    }
                }
            }
        }
    }
}

/// Add the im2col strip `cols` back into `image` (the adjoint of [`im2col`]).
fn col2im<T: Element>(g: &Geometry, cols: &[T], oy0: usize, oy1: usize, image: &mut [T]) {
    let p = (oy1 - oy0) * g.ow;
    for c in 0..g.c {
        let plane = &mut image[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &cols[((c * g.kh + ky) * g.kw + kx) * p..][..p];
                for (i, oy) in (oy0..oy1).enumerate() {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (ox, &v) in row[i * g.ow..(i + 1) * g.ow].iter().enumerate() {
                        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                        if ix >= 0 && (ix as usize) < g.w {
                            dst[ix as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

/// C (m×n, row stride `ldc`) (+)= A (m×k) · B (k×n), with A and B given by their strides.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into<T: Element>(m: usize, n: usize, k: usize, c: *mut T, ldc: usize, accumulate: bool, a: *const T, a_rs: usize, a_cs: usize, b: *const T, b_rs: usize, b_cs: usize) {
    gemm::gemm(
        m, n, k, c, 1, ldc as isize, accumulate, a, a_cs as isize, a_rs as isize, b, b_cs as isize, b_rs as isize, T::ONE, T::ONE, false, false, false,
        gemm::Parallelism::None,
    )
}

fn forward<T: Element>(g: &Geometry, x: &[T], w: &[T]) -> Vec<T> {
    let (k, p, strip) = (g.k(), g.out_pixels(), g.strip_rows());
    let mut out = vec![T::default(); g.n * g.o * p];
    let dst = SharedMut(out.as_mut_ptr());
    let strips = g.strips();
    let scratch: Vec<Vec<T>> = (0..threads()).map(|_| if g.is_pointwise() { Vec::new() } else { vec![T::default(); k * strip * g.ow] }).collect();
    parallel_items(g.n * strips, scratch, |item, cols| {
        let (img, s) = (item / strips, item % strips);
        let (oy0, oy1) = (s * strip, ((s + 1) * strip).min(g.oh));
        let len = (oy1 - oy0) * g.ow;
        let image = &x[img * g.c * g.h * g.w..(img + 1) * g.c * g.h * g.w];
        // B: the strip's im2col matrix (k × len); for 1×1 convs the input rows themselves.
        let (b, b_rs) = if g.is_pointwise() {
            (image[oy0 * g.ow..].as_ptr(), p)
        } else {
            im2col(g, image, oy0, oy1, cols);
            (cols.as_ptr(), len)
        };
        // SAFETY: item (img, s) writes output columns [oy0·ow, oy1·ow) of image img only.
        unsafe {
            let c = dst.get().add(img * g.o * p + oy0 * g.ow);
            gemm_into(g.o, len, k, c, p, false, w.as_ptr(), k, 1, b, b_rs, 1);
        }
    });
    out
}

fn grad_input<T: Element>(g: &Geometry, grad: &[T], w: &[T]) -> Vec<T> {
    let (k, p, strip) = (g.k(), g.out_pixels(), g.strip_rows());
    let mut dx = vec![T::default(); g.n * g.c * g.h * g.w];
    let dst = SharedMut(dx.as_mut_ptr());
    let scratch: Vec<Vec<T>> = (0..threads()).map(|_| vec![T::default(); k * strip * g.ow]).collect();
    // Strips of one image overlap in the input (the kernel's reach), so images are the unit.
    parallel_items(g.n, scratch, |img, cols| {
        // SAFETY: image `img`'s gradient plane is written by this item only.
        let image = unsafe { std::slice::from_raw_parts_mut(dst.get().add(img * g.c * g.h * g.w), g.c * g.h * g.w) };
        for s in 0..g.strips() {
            let (oy0, oy1) = (s * strip, ((s + 1) * strip).min(g.oh));
            let len = (oy1 - oy0) * g.ow;
            let gy = grad[img * g.o * p + oy0 * g.ow..].as_ptr();
            // cols (k × len) = Wᵀ (k × o) · grad strip (o × len).
            unsafe { gemm_into(k, len, g.o, cols.as_mut_ptr(), len, false, w.as_ptr(), 1, k, gy, p, 1) };
            col2im(g, &cols[..k * len], oy0, oy1, image);
        }
    });
    dx
}

fn grad_weight<T: Element>(g: &Geometry, x: &[T], grad: &[T]) -> Vec<T> {
    let (k, p, strip) = (g.k(), g.out_pixels(), g.strip_rows());
    let strips = g.strips();
    // Each thread accumulates its own dW (o × k), summed at the end.
    let scratch: Vec<(Vec<T>, Vec<T>)> = (0..threads()).map(|_| (vec![T::default(); k * strip * g.ow], vec![T::default(); g.o * k])).collect();
    let partials = parallel_items(g.n * strips, scratch, |item, (cols, dw)| {
        let (img, s) = (item / strips, item % strips);
        let (oy0, oy1) = (s * strip, ((s + 1) * strip).min(g.oh));
        let len = (oy1 - oy0) * g.ow;
        im2col(g, &x[img * g.c * g.h * g.w..(img + 1) * g.c * g.h * g.w], oy0, oy1, cols);
        let gy = grad[img * g.o * p + oy0 * g.ow..].as_ptr();
        // dW (o × k) += grad strip (o × len) · colsᵀ (len × k).
        unsafe { gemm_into(g.o, k, len, dw.as_mut_ptr(), k, true, gy, p, 1, cols.as_ptr(), 1, len) };
    });
    sum_partials(partials.into_iter().map(|(_, dw)| dw), g.o * k)
}

struct ConvForward {
    geometry: Geometry,
}

impl CustomOp2 for ConvForward {
    fn name(&self) -> &'static str {
        "conv2d-im2col-gemm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        Ok((conv_storage(g, (s1, l1), (s2, l2), None, None)?, Shape::from((g.n, g.o, g.oh, g.ow))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = conv_gradients(self.geometry, x, w, &grad.contiguous()?)?;
        Ok((dx, Some(dw)))
    }
}

#[derive(Clone, Copy)]
enum Wrt {
    /// (grad, weight) → dL/dx.
    Input,
    /// (x, grad) → dL/dw.
    Weight,
}

struct ConvGrad {
    geometry: Geometry,
    wrt: Wrt,
}

impl CustomOp2 for ConvGrad {
    fn name(&self) -> &'static str {
        match self.wrt {
            Wrt::Input => "conv2d-grad-input",
            Wrt::Weight => "conv2d-grad-weight",
        }
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        macro_rules! run {
            ($t:ty) => {{
                let (a, b) = (contiguous::<$t>(s1, l1)?, contiguous::<$t>(s2, l2)?);
                match self.wrt {
                    Wrt::Input => <$t>::storage(grad_input(g, a, b)),
                    Wrt::Weight => <$t>::storage(grad_weight(g, a, b)),
                }
            }};
        }
        let out = match s1.dtype() {
            DType::F32 if matches!(self.wrt, Wrt::Input) && g.use_direct() => {
                // dL/dx of a "same" convolution: the output gradient convolved with the
                // flipped, transposed kernel.
                let weights = direct::PackedWeights::flipped_transposed(contiguous::<f32>(s2, l2)?, g.o, g.c, g.kh);
                CpuStorage::F32(direct::conv_same(contiguous::<f32>(s1, l1)?, g.n, g.h, g.w, &weights, direct::Epilogue::default()))
            }
            DType::F32 if matches!(self.wrt, Wrt::Weight) && g.use_direct() => {
                let (x, grad) = (contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?);
                CpuStorage::F32(direct::weight_grad_same(x, grad, g.n, g.c, g.h, g.w, g.o, g.kh))
            }
            DType::F32 => run!(f32),
            DType::F64 => run!(f64),
            other => candle_core::bail!("conv2d gradient: unsupported dtype {other:?}"),
        };
        let shape = match self.wrt {
            Wrt::Input => Shape::from((g.n, g.c, g.h, g.w)),
            Wrt::Weight => Shape::from((g.o, g.c, g.kh, g.kw)),
        };
        Ok((out, shape))
    }
}


/// PyTorch's default initialisation of a convolution's (or linear layer's) weights with
/// `fan_in` inputs per output: uniform in ±1/√fan-in.
pub fn pytorch_default_init(fan_in: usize) -> candle_nn::Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    candle_nn::Init::Uniform { lo: -bound, up: bound }
}

/// A convolution layer over [`conv2d`]: tensors `weight` (o, c, k, k) and optional `bias` (o),
/// initialised like PyTorch's `Conv2d` (Kaiming for the weight, ±1/√fan-in for the bias).
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: usize,
    stride: usize,
}

impl Conv {
    pub fn new(c_in: usize, c_out: usize, kernel: usize, padding: usize, bias: bool, vb: candle_nn::VarBuilder) -> Result<Self> {
        Self::with_init(c_in, c_out, kernel, padding, bias, candle_nn::init::DEFAULT_KAIMING_NORMAL, vb)
    }

    /// Initialised exactly as PyTorch's `Conv2d` default (`kaiming_uniform_` with a = √5:
    /// weights and bias uniform in ±1/√fan-in), for models trained as their authors did.
    pub fn pytorch_default(c_in: usize, c_out: usize, kernel: usize, padding: usize, bias: bool, vb: candle_nn::VarBuilder) -> Result<Self> {
        Self::with_init(c_in, c_out, kernel, padding, bias, pytorch_default_init(c_in * kernel * kernel), vb)
    }

    /// All weights zero at the start: the layer adds nothing until training moves it (the
    /// last layer of a residual branch).
    pub fn zeroed(c_in: usize, c_out: usize, kernel: usize, padding: usize, bias: bool, vb: candle_nn::VarBuilder) -> Result<Self> {
        let mut conv = Self::with_init(c_in, c_out, kernel, padding, false, candle_nn::Init::Const(0.0), vb.clone())?;
        if bias {
            conv.bias = Some(vb.get_with_hints(c_out, "bias", candle_nn::Init::Const(0.0))?);
        }
        Ok(conv)
    }

    /// Weights drawn from N(0, std²) and a zero bias (pix2pix-style initialisation, as the INSS
    /// and PatchGAN authors' code does).
    pub fn normal(c_in: usize, c_out: usize, kernel: usize, padding: usize, bias: bool, std: f64, vb: candle_nn::VarBuilder) -> Result<Self> {
        let mut conv = Self::with_init(c_in, c_out, kernel, padding, false, candle_nn::Init::Randn { mean: 0.0, stdev: std }, vb.clone())?;
        if bias {
            conv.bias = Some(vb.get_with_hints(c_out, "bias", candle_nn::Init::Const(0.0))?);
        }
        Ok(conv)
    }

    fn with_init(c_in: usize, c_out: usize, kernel: usize, padding: usize, bias: bool, init: candle_nn::Init, vb: candle_nn::VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((c_out, c_in, kernel, kernel), "weight", init)?;
        let bias = if bias {
            let bound = 1.0 / ((c_in * kernel * kernel) as f64).sqrt();
            Some(vb.get_with_hints(c_out, "bias", candle_nn::Init::Uniform { lo: -bound, up: bound })?)
        } else {
            None
        };
        Ok(Self { weight, bias, padding, stride: 1 })
    }

    /// The same layer applied with `stride` (1 unless set).
    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = stride.max(1);
        self
    }
}

impl Conv {
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn padding(&self) -> usize {
        self.padding
    }

    pub fn has_bias(&self) -> bool {
        self.bias.is_some()
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl candle_core::Module for Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => conv2d_bias(x, &self.weight, b, self.padding, self.stride),
            None => conv2d(x, &self.weight, self.padding, self.stride),
        }
    }
}
