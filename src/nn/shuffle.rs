//! The U-Net's up-step join, "pixel-shuffle the deeper map ×2 and append it to the skip along
//! channels", as one CPU op forward and one per input backward.
//!
//! Why: composed from candle ops it is a reshape, a permute, a contiguous copy and a
//! concatenation, and the backward pass narrows the gradient into strided views that the next
//! op copies element by element. In the U-Net's training step those copies cost more than the
//! max-pools and batch norms together. Here each direction is one pass of plane and row copies.
//!
//! Pixel shuffle as PyTorch defines it: (b, 4c, h, w) → (b, c, 2h, 2w) with
//! out[b][k][2y + i][2x + j] = in[b][4k + 2i + j][y][x].

use super::threads::{parallel_items, threads, SharedMut};
use super::cpu_op::slice;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};

const OP: &str = "shuffle-concat op";

/// `cat([skip, pixel_shuffle(deep, 2)], 1)` for skip (b, cs, h, w) and deep (b, 4·cd, h/2, w/2)
/// → (b, cs + cd, h, w). One op on the CPU for f32/f64; candle's ops elsewhere.
pub fn shuffle_concat(skip: &Tensor, deep: &Tensor) -> Result<Tensor> {
    let (b, _, h, w) = skip.dims4()?;
    let (bd, cd4, hd, wd) = deep.dims4()?;
    if bd != b || cd4 % 4 != 0 || 2 * hd != h || 2 * wd != w {
        candle_core::bail!("shuffle-concat: skip {:?} does not match deep map {:?} shuffled ×2", skip.dims(), deep.dims())
    }
    let cpu = super::portable::cpu_kernel(skip.device(), skip.dtype()) && skip.dtype() == deep.dtype();
    if !cpu {
        return Tensor::cat(&[skip, &candle_nn::ops::pixel_shuffle(deep, 2)?], 1);
    }
    skip.contiguous()?.apply_op2(&deep.contiguous()?, ShuffleConcat)
}

/// Shapes of one join: batch, skip channels, shuffled channels, full-size rows and columns.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    cs: usize,
    cd: usize,
    h: usize,
    w: usize,
}

impl Dims {
    fn out_channels(&self) -> usize {
        self.cs + self.cd
    }

    fn plane(&self) -> usize {
        self.h * self.w
    }
}

/// Move the shuffled part between its full-size planes and the deep map, one output channel
/// (4 deep planes) at a time. `to_full` writes the output from the deep map (forward);
/// otherwise it writes the deep map's gradient from the output's gradient (backward).
/// SAFETY: `full` points at (b, cs + cd, h, w) and `deep` at (b, 4cd, h/2, w/2) buffers; each
/// item touches only its own planes, so items may run in parallel.
unsafe fn move_shuffled<T: Copy>(d: Dims, full: SharedMut<T>, deep: SharedMut<T>, to_full: bool) {
    let (hd, wd) = (d.h / 2, d.w / 2);
    parallel_items(d.b * d.cd, vec![(); threads()], |item, _| {
        let (img, k) = (item / d.cd, item % d.cd);
        let full_plane = unsafe { full.get().add((img * d.out_channels() + d.cs + k) * d.plane()) };
        for i in 0..2 {
            for j in 0..2 {
                let deep_plane = unsafe { deep.get().add((img * 4 * d.cd + 4 * k + 2 * i + j) * hd * wd) };
                for y in 0..hd {
                    // SAFETY: row y of this deep plane and pixels 2x + j of full row 2y + i lie
                    // inside this item's planes.
                    unsafe {
                        let (src_row, full_row) = (deep_plane.add(y * wd), full_plane.add((2 * y + i) * d.w + j));
                        for x in 0..wd {
                            if to_full {
                                *full_row.add(2 * x) = *src_row.add(x);
                            } else {
                                *src_row.add(x) = *full_row.add(2 * x);
                            }
                        }
                    }
                }
            }
        }
    });
}

fn forward<T: WithDType>(skip: &[T], deep: &[T], d: Dims) -> Vec<T> {
    let len = d.b * d.out_channels() * d.plane();
    let mut out: Vec<T> = Vec::with_capacity(len);
    let skip_len = d.cs * d.plane();
    for img in 0..d.b {
        let at = img * d.out_channels() * d.plane();
        // SAFETY: inside the capacity; the skip planes of image img.
        unsafe { std::ptr::copy_nonoverlapping(skip[img * skip_len..].as_ptr(), out.as_mut_ptr().add(at), skip_len) };
    }
    // The deep map is only read: the pointer is cast for the shared helper.
    unsafe { move_shuffled(d, SharedMut(out.as_mut_ptr()), SharedMut(deep.as_ptr() as *mut T), true) };
    // SAFETY: every value was written: the skip planes above, the shuffled planes by
    // `move_shuffled` (all b · cd output channels, all four phases of every pixel).
    unsafe { out.set_len(len) };
    out
}

struct ShuffleConcat;

impl CustomOp2 for ShuffleConcat {
    fn name(&self) -> &'static str {
        "shuffle-concat"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, cs, h, w) = l1.shape().dims4()?;
        let d = Dims { b, cs, cd: l2.shape().dims4()?.1 / 4, h, w };
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(forward(slice::<f32>(s1, l1, OP)?, slice(s2, l2, OP)?, d)),
            DType::F64 => CpuStorage::F64(forward(slice::<f64>(s1, l1, OP)?, slice(s2, l2, OP)?, d)),
            other => candle_core::bail!("{OP}: unsupported dtype {other:?}"),
        };
        Ok((out, Shape::from((b, d.out_channels(), h, w))))
    }

    fn bwd(&self, skip: &Tensor, deep: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        super::profile::timed("backward: shuffle-concat", || {
            let (b, cs, h, w) = skip.dims4()?;
            let d = Dims { b, cs, cd: deep.dims4()?.1 / 4, h, w };
            let grad = grad.contiguous()?;
            let d_skip = grad.apply_op1_no_bwd(&SplitGrad { d, part: Part::Skip })?;
            let d_deep = grad.apply_op1_no_bwd(&SplitGrad { d, part: Part::Deep })?;
            Ok((Some(d_skip), Some(d_deep)))
        })
    }
}

#[derive(Clone, Copy)]
enum Part {
    Skip,
    Deep,
}

/// The joined map's gradient → the gradient of one of its two inputs.
struct SplitGrad {
    d: Dims,
    part: Part,
}

impl SplitGrad {
    fn run<T: WithDType>(&self, grad: &[T]) -> Vec<T> {
        let d = self.d;
        match self.part {
            Part::Skip => grad.chunks_exact(d.out_channels() * d.plane()).flat_map(|image| &image[..d.cs * d.plane()]).copied().collect(),
            Part::Deep => {
                // 4·cd planes of a quarter of the full size each.
                let len = d.b * d.cd * d.plane();
                let mut out: Vec<T> = Vec::with_capacity(len);
                // SAFETY: the gradient is only read (cast for the shared helper); every value of
                // `out` is written, as in the forward pass.
                unsafe {
                    move_shuffled(d, SharedMut(grad.as_ptr() as *mut T), SharedMut(out.as_mut_ptr()), false);
                    out.set_len(len);
                }
                out
            }
        }
    }
}

impl CustomOp1 for SplitGrad {
    fn name(&self) -> &'static str {
        "shuffle-concat-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = self.d;
        if l.shape().elem_count() != d.b * d.out_channels() * d.plane() {
            candle_core::bail!("{OP}: gradient of shape {:?} for a join of {} channels", l.shape(), d.out_channels())
        }
        let out = match s.dtype() {
            DType::F32 => CpuStorage::F32(self.run(slice::<f32>(s, l, OP)?)),
            DType::F64 => CpuStorage::F64(self.run(slice::<f64>(s, l, OP)?)),
            other => candle_core::bail!("{OP}: unsupported dtype {other:?}"),
        };
        let shape = match self.part {
            Part::Skip => Shape::from((d.b, d.cs, d.h, d.w)),
            Part::Deep => Shape::from((d.b, 4 * d.cd, d.h / 2, d.w / 2)),
        };
        Ok((out, shape))
    }
}
