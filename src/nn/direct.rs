//! Direct "same" convolution for f32 on x86-64 with AVX-512F, or AVX2 + FMA: odd square
//! kernels, stride 1, padding (k − 1)/2, NCHW. This is the shape of every convolution in the
//! U-Nets, and of the input gradient of each (a convolution of the output gradient with the
//! flipped, transposed kernel).
//!
//! Why not im2col + GEMM: with 16–128 output channels each im2col element is used only that
//! many times, so writing the im2col matrix and packing it for the GEMM cost more than the
//! multiply-adds. Here the input is padded once and read in place. A register tile of 8
//! output channels × 48 consecutive positions (AVX-512; 4 × 16 with AVX2) keeps 24 (8)
//! accumulators in registers; for each input channel and kernel tap it loads the shifted input
//! vectors once and multiply-adds each against one broadcast weight per output channel.
//! Weights are packed per block of output channels so the broadcasts read adjacent floats.
//!
//! Tiles run along the padded plane read as one long row: output position q = y·wp + x (wp
//! the padded width) reads input q + ky·wp + kx for every tap, so a tile may span the end of
//! one row and the start of the next, and the k − 1 positions per row that fall on the padding
//! are computed and dropped. Rows of 8–64 pixels (the deep levels of a U-Net on training
//! patches) fill whole tiles that way, where tiles confined to a row would leave lanes empty
//! or keep too few accumulators to hide the multiply-add latency.
//!
//! An optional epilogue adds a bias and applies LeakyReLU before the store, so inference takes
//! no further pass over the output for them.

use super::threads::{parallel_items, sum_partials, threads, SharedMut};
use std::cell::RefCell;
use std::thread::LocalKey;

/// Widest register tile (3 AVX-512 vectors): the padded copies keep this many spare zeros
/// where a tile or vector may read past the image.
const MAX_TILE: usize = 48;

/// The vector instructions the kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Isa {
    /// 16-float vectors, 32 registers: tiles of 8 output channels × 3 vectors.
    Avx512,
    /// 8-float vectors, 16 registers: tiles of 4 output channels × 2 vectors.
    Avx2,
}

impl Isa {
    fn detect() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Some(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Some(Isa::Avx2);
            }
        }
        None
    }

    /// Output channels per tile.
    fn channels(self) -> usize {
        match self {
            Isa::Avx512 => 8,
            Isa::Avx2 => 4,
        }
    }

    fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
        }
    }

    /// Output channels × taps per weight-gradient tile.
    fn weight_grad_tile(self) -> (usize, usize) {
        match self {
            Isa::Avx512 => (4, 6),
            Isa::Avx2 => (2, 4),
        }
    }

    /// Input channels per 3×3 weight-gradient tile (9 accumulators each, output channels in
    /// the lanes): 27 of 32 registers with AVX-512, 9 of 16 with AVX2.
    fn weight_grad_3x3_channels(self) -> usize {
        match self {
            Isa::Avx512 => 3,
            Isa::Avx2 => 1,
        }
    }

    /// Vectors per forward tile: as many as leave registers for the loads (3 × 8 = 24
    /// accumulators of 32 registers with AVX-512, 2 × 4 = 8 of 16 with AVX2).
    fn vectors(self) -> usize {
        match self {
            Isa::Avx512 => 3,
            Isa::Avx2 => 2,
        }
    }

    /// Positions per forward tile.
    fn tile(self) -> usize {
        self.vectors() * self.lanes()
    }
}

/// True where this CPU can run the kernel (AVX-512F, or AVX2 with FMA).
pub fn available() -> bool {
    Isa::detect().is_some()
}

/// Weights (o, c, k, k) reordered as [o / t][c][k][k][t] for tiles of t output channels,
/// zero-filled past the last output channel.
pub struct PackedWeights {
    o: usize,
    c: usize,
    k: usize,
    tile_channels: usize,
    data: Vec<f32>,
}

impl PackedWeights {
    /// From (o, c, k, k) row-major weights.
    pub fn new(w: &[f32], o: usize, c: usize, k: usize) -> Self {
        Self::for_tiles(w, o, c, k, Isa::detect().map_or(1, Isa::channels))
    }

    fn for_tiles(w: &[f32], o: usize, c: usize, k: usize, t: usize) -> Self {
        let blocks = o.div_ceil(t);
        let mut data = vec![0.0; blocks * c * k * k * t];
        for oi in 0..o {
            let (b, j) = (oi / t, oi % t);
            for ci in 0..c {
                for tap in 0..k * k {
                    data[((b * c + ci) * k * k + tap) * t + j] = w[(oi * c + ci) * k * k + tap];
                }
            }
        }
        PackedWeights { o, c, k, tile_channels: t, data }
    }

    /// The kernel of the input gradient: W'[c][o][ky][kx] = W[o][c][k−1−ky][k−1−kx].
    pub fn flipped_transposed(w: &[f32], o: usize, c: usize, k: usize) -> Self {
        let mut t = vec![0.0; w.len()];
        for oi in 0..o {
            for ci in 0..c {
                for ky in 0..k {
                    for kx in 0..k {
                        t[((ci * o + oi) * k + (k - 1 - ky)) * k + (k - 1 - kx)] = w[((oi * c + ci) * k + ky) * k + kx];
                    }
                }
            }
        }
        Self::new(&t, c, o, k)
    }
}

/// What happens to each output value before it is stored.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// One per output channel.
    pub bias: Option<&'a [f32]>,
    /// LeakyReLU slope in [0, 1): v > 0 ? v : slope·v.
    pub leaky_slope: Option<f32>,
}

/// `x` (n, c, h, w) convolved with `weights` ("same" padding, stride 1) → (n, o, h, w).
/// Panics if the CPU has neither AVX-512F nor AVX2/FMA: call only when [`available`] said yes.
pub fn conv_same(x: &[f32], n: usize, h: usize, w: usize, weights: &PackedWeights, epilogue: Epilogue) -> Vec<f32> {
    let isa = Isa::detect().expect("direct convolution needs AVX-512F or AVX2 + FMA");
    conv_same_on(isa, x, n, h, w, weights, epilogue)
}

fn conv_same_on(isa: Isa, x: &[f32], n: usize, h: usize, w: usize, weights: &PackedWeights, epilogue: Epilogue) -> Vec<f32> {
    let (c, o, k, t) = (weights.c, weights.o, weights.k, weights.tile_channels);
    assert_eq!(t, isa.channels(), "weights packed for another CPU");
    assert_eq!(x.len(), n * c * h * w, "input size");
    assert!(k % 2 == 1, "direct convolution needs an odd kernel");
    if let Some(b) = epilogue.bias {
        assert_eq!(b.len(), o, "bias size");
    }
    let tile = isa.tile();
    let kernel = kernel::select(isa, k);
    with_padded(x, n * c, h, w, k / 2, Margin::Flat, |xp, hp, wp| {
        // Output positions per image, the padding columns included (see the module comment).
        let span = h * wp;
        let tiles = span.div_ceil(tile);
        // One item: a run of tiles (about two rows' worth) of one image, all output channels.
        // Within it, tiles outermost so a tile's input (c·k rows of tile + k − 1 floats) stays
        // in L1 while every block of output channels reads it.
        let per_item = (2 * wp).div_ceil(tile);
        let runs = tiles.div_ceil(per_item);
        // Every output value is written exactly once below (all images, rows, columns and output
        // channels), so the buffer is not zeroed first: that would be one more pass over it.
        let len = n * o * h * w;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let dst = SharedMut(out.as_mut_ptr());
        let scratch: Vec<Vec<f32>> = (0..threads()).map(|_| vec![0.0; t * tile]).collect();
        parallel_items(n * runs, scratch, |item, acc| {
            let (img, run) = (item / runs, item % runs);
            let input = &xp[img * c * hp * wp..];
            for q0 in (run * per_item * tile..((run + 1) * per_item).min(tiles) * tile).step_by(tile) {
                let end = (q0 + tile).min(span);
                for block in 0..o.div_ceil(t) {
                    let wblock = &weights.data[block * c * k * k * t..][..c * k * k * t];
                    // SAFETY: the ISA was detected; a tile reads at most tile + (k − 1)·(wp + 1)
                    // floats past position q0 < span of this image's last plane, which stays
                    // inside the buffer (the next image's planes, or the slack `Margin::Flat`
                    // keeps after the last plane); `acc` holds t · tile floats.
                    unsafe { kernel(input.as_ptr().add(q0), hp * wp, wp, c, k, wblock.as_ptr(), acc.as_mut_ptr()) };
                    for j in 0..t {
                        let oi = block * t + j;
                        if oi >= o {
                            break;
                        }
                        let values = &mut acc[j * tile..][..tile];
                        apply_epilogue(values, oi, epilogue);
                        // The tile's positions row by row; columns x < w are outputs.
                        let mut q = q0;
                        while q < end {
                            let (y, x) = (q / wp, q % wp);
                            let row_end = end.min(q - x + wp);
                            if x < w {
                                let count = (w - x).min(row_end - q);
                                // SAFETY: this item alone writes these positions of image img's
                                // output planes, inside the buffer's capacity.
                                unsafe {
                                    let at = dst.get().add(((img * o + oi) * h + y) * w + x);
                                    std::ptr::copy_nonoverlapping(values[q - q0..].as_ptr(), at, count);
                                }
                            }
                            q = row_end;
                        }
                    }
                }
            }
        });
        // SAFETY: the items above wrote all `len` values (see the comment at the allocation).
        unsafe { out.set_len(len) };
        out
    })
}

thread_local! {
    /// The padded copy of a convolution's input, kept per thread between calls.
    static PADDED_INPUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The weight gradient's copy of the output gradient (rows padded, or transposed for 3×3
    /// kernels), likewise.
    static PADDED_GRAD: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `f` on the first `len` floats of this thread's buffer in `slot`, grown as needed. Values
/// left by an earlier call remain: `f` must write everything it reads.
///
/// Why: a fresh buffer of this size (tens of MB for a full-resolution layer) costs a page
/// fault per 4 KiB and a pass of zeroing on every call, about a tenth of a training step in a
/// profile. The price is that each thread that ran a convolution keeps its largest buffer.
fn with_scratch<R>(slot: &'static LocalKey<RefCell<Vec<f32>>>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    // Taken out for the call, so a nested use of the same slot gets a buffer of its own.
    let mut buf = slot.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    slot.with(|b| *b.borrow_mut() = buf);
    out
}

/// What a padded copy keeps beyond the `pad` zeros around each plane.
#[derive(Clone, Copy)]
enum Margin {
    /// MAX_TILE more zeros at the end of each row, so a vector may read past the last column
    /// and multiply zeros (the weight gradient).
    Rows,
    /// Nothing per row; MAX_TILE + 2·pad zeros after the last plane, so a forward tile may
    /// read past the last position (its results there are dropped).
    Flat,
}

/// Rows and columns of a plane padded for the kernels, and the floats after the last plane.
fn padded_size(h: usize, w: usize, pad: usize, margin: Margin) -> (usize, usize, usize) {
    match margin {
        Margin::Rows => (h + 2 * pad, w + 2 * pad + MAX_TILE, 0),
        Margin::Flat => (h + 2 * pad, w + 2 * pad, MAX_TILE + 2 * pad),
    }
}

/// `f(xp, hp, wp)` on `planes` planes of h × w padded as [`padded_size`] says, in this thread's
/// scratch buffer. Every value is written (the borders with zeros), so nothing is zeroed twice.
fn with_padded<R>(x: &[f32], planes: usize, h: usize, w: usize, pad: usize, margin: Margin, f: impl FnOnce(&[f32], usize, usize) -> R) -> R {
    let (hp, wp, tail) = padded_size(h, w, pad, margin);
    with_scratch(&PADDED_INPUT, planes * hp * wp + tail, |xp| {
        let (body, slack) = xp.split_at_mut(planes * hp * wp);
        slack.fill(0.0);
        // On all threads: a full-resolution layer's copy is tens of MB, as long as the
        // convolution's own first tiles.
        let dst = SharedMut(body.as_mut_ptr());
        parallel_items(planes, vec![(); threads()], |plane, _| {
            // SAFETY: item `plane` alone writes padded plane `plane`, inside `body`.
            let out = unsafe { std::slice::from_raw_parts_mut(dst.get().add(plane * hp * wp), hp * wp) };
            let (top, rest) = out.split_at_mut(pad * wp);
            top.fill(0.0);
            let (middle, bottom) = rest.split_at_mut(h * wp);
            bottom.fill(0.0);
            for (y, row) in middle.chunks_exact_mut(wp).enumerate() {
                row[..pad].fill(0.0);
                row[pad..pad + w].copy_from_slice(&x[(plane * h + y) * w..][..w]);
                row[pad + w..].fill(0.0);
            }
        });
        f(xp, hp, wp)
    })
}

/// dL/dW of a "same" convolution: dW[o][c][ky][kx] = Σ_{n,y,x} dy[n][o][y][x] ·
/// xpad[n][c][y + ky][x + kx], for `x` (n, c, h, w) and `dy` (n, o, h, w) → (o, c, k, k).
///
/// A register tile holds 4 output channels × 6 taps (channel, ky, kx) of vector partial sums
/// (2 × 4 with AVX2); each step loads one vector of 4 output-gradient rows and of 6 shifted
/// input rows for 24 multiply-adds. Work is split by chunks of about 4096 pixels so a
/// chunk's input and gradient rows stay in L2 while every tile reads them; each thread sums
/// into its own dW, added up at the end.
#[allow(clippy::too_many_arguments)]
pub fn weight_grad_same(x: &[f32], dy: &[f32], n: usize, c: usize, h: usize, w: usize, o: usize, k: usize) -> Vec<f32> {
    let isa = Isa::detect().expect("direct convolution needs AVX-512F or AVX2 + FMA");
    weight_grad_on(isa, x, dy, n, c, h, w, o, k)
}

#[allow(clippy::too_many_arguments)]
fn weight_grad_on(isa: Isa, x: &[f32], dy: &[f32], n: usize, c: usize, h: usize, w: usize, o: usize, k: usize) -> Vec<f32> {
    assert_eq!(x.len(), n * c * h * w, "input size");
    assert_eq!(dy.len(), n * o * h * w, "gradient size");
    assert!(k % 2 == 1, "direct convolution needs an odd kernel");
    if k == 3 {
        return weight_grad_3x3(isa, x, dy, n, c, h, w, o);
    }
    let (to, tq) = isa.weight_grad_tile();
    let lanes = isa.lanes();
    // The output gradient with rows padded to whole vectors (zeros past w, so the input read
    // beyond the image adds nothing) and output channels to whole tiles (zero rows).
    let (wv, op) = (w.div_ceil(lanes) * lanes, o.div_ceil(to) * to);
    with_padded(x, n * c, h, w, k / 2, Margin::Rows, |xp, hp, wp| {
        with_scratch(&PADDED_GRAD, n * op * h * wv, |dyp| {
            for (row, out) in dyp.chunks_exact_mut(wv).enumerate() {
                let (img, oi, y) = (row / (op * h), row / h % op, row % h);
                if oi < o {
                    out[..w].copy_from_slice(&dy[((img * o + oi) * h + y) * w..][..w]);
                    out[w..].fill(0.0);
                } else {
                    out.fill(0.0);
                }
            }
            let taps = c * k * k;
            let blocks = taps.div_ceil(tq);
            // Offset of each tap in a padded image; taps past the last repeat tap 0 (results dropped).
            let offsets: Vec<usize> = (0..blocks * tq).map(|q| if q < taps { (q / (k * k)) * hp * wp + (q % (k * k) / k) * wp + q % k } else { 0 }).collect();
            let rows = (4096 / w).clamp(1, h);
            let chunks = h.div_ceil(rows);
            let kernel = kernel::select_weight_grad(isa);
            let (dyp, offsets) = (&*dyp, &offsets);
            let scratch: Vec<Vec<f32>> = (0..threads()).map(|_| vec![0.0; o * taps]).collect();
            let partials = parallel_items(n * chunks, scratch, |item, dw| {
                let (img, chunk) = (item / chunks, item % chunks);
                let (y0, y1) = (chunk * rows, ((chunk + 1) * rows).min(h));
                let mut sums = [0.0f32; 32];
                for ob in 0..op / to {
                    let dy_at = ((img * op + ob * to) * h + y0) * wv;
                    for qb in 0..blocks {
                        // SAFETY: the ISA was detected; dy rows [y0, y1) of the tile's channels and the
                        // input rows they meet lie inside the padded copies; `sums` holds to·tq ≤ 32.
                        unsafe {
                            kernel(dyp.as_ptr().add(dy_at), h * wv, wv, xp.as_ptr().add(img * c * hp * wp + y0 * wp), wp, offsets.as_ptr().add(qb * tq), y1 - y0, wv / lanes, sums.as_mut_ptr())
                        };
                        for j in 0..to {
                            let oi = ob * to + j;
                            if oi >= o {
                                break;
                            }
                            for t in 0..tq {
                                let q = qb * tq + t;
                                if q < taps {
                                    dw[oi * taps + q] += sums[j * tq + t];
                                }
                            }
                        }
                    }
                }
            });
            sum_partials(partials, o * taps)
        })
    })
}

/// The 3×3 weight gradient with output channels in the vector lanes.
///
/// The output gradient is first transposed to pixel-major order, one vector of output
/// channels per pixel. A tile then holds, per output-channel vector, the 9 taps of 3 input
/// channels (1 with AVX2) as 27 vector accumulators; each pixel costs one vector load and 27
/// multiply-adds against broadcast input values, and no sum across lanes is ever needed (the
/// row-vector kernel of other kernel sides reduces its 24 vectors to scalars every tile). The
/// transposition is one pass over the gradient, which is read c·9/lanes times afterwards.
#[allow(clippy::too_many_arguments)]
fn weight_grad_3x3(isa: Isa, x: &[f32], dy: &[f32], n: usize, c: usize, h: usize, w: usize, o: usize) -> Vec<f32> {
    let (lanes, per_tile) = (isa.lanes(), isa.weight_grad_3x3_channels());
    let (blocks, pixels) = (o.div_ceil(lanes), h * w);
    let op = blocks * lanes;
    with_padded(x, n * c, h, w, 1, Margin::Flat, |xp, hp, wp| {
        with_scratch(&PADDED_GRAD, n * pixels * op, |dyt| {
            // dyt[img][p][oi] = dy[img][oi][p], zeros for the output channels past o; 16 pixels
            // at a time so the strided writes stay within a few cache lines.
            let dst = SharedMut(dyt.as_mut_ptr());
            parallel_items(n, vec![(); threads()], |img, _| {
                // SAFETY: item img alone writes image img's pixels·op floats.
                let out = unsafe { std::slice::from_raw_parts_mut(dst.get().add(img * pixels * op), pixels * op) };
                for p0 in (0..pixels).step_by(16) {
                    let p1 = (p0 + 16).min(pixels);
                    for oi in 0..op {
                        if oi < o {
                            let src = &dy[(img * o + oi) * pixels..][p0..p1];
                            for (p, &v) in (p0..p1).zip(src) {
                                out[p * op + oi] = v;
                            }
                        } else {
                            (p0..p1).for_each(|p| out[p * op + oi] = 0.0);
                        }
                    }
                }
            });
            let dyt = &*dyt;
            // Items: bands of about 512 pixels of one image, so a band's gradient (512 vectors)
            // and input rows stay in L1/L2 while every tile reads them.
            let rows = (512 / w).clamp(1, h);
            let bands = h.div_ceil(rows);
            let kernel = kernel::select_weight_grad_3x3(isa);
            let tile_floats = per_tile * 9 * lanes;
            let scratch: Vec<(Vec<f32>, Vec<f32>)> = (0..threads()).map(|_| (vec![0.0; blocks * c * 9 * lanes], vec![0.0; tile_floats])).collect();
            let partials = parallel_items(n * bands, scratch, |item, (part, sums)| {
                let (img, band) = (item / bands, item % bands);
                let (y0, y1) = (band * rows, ((band + 1) * rows).min(h));
                for b in 0..blocks {
                    let dy_at = (img * pixels + y0 * w) * op + b * lanes;
                    for c0 in (0..c).step_by(per_tile) {
                        let channels = per_tile.min(c - c0);
                        // SAFETY: the ISA was detected; the band's gradient vectors and the padded
                        // input rows y0..y1 + 2 of channels c0..c0 + channels lie inside the copies;
                        // `sums` holds per_tile·9 vectors.
                        unsafe { kernel(dyt.as_ptr().add(dy_at), op, xp.as_ptr().add(((img * c + c0) * hp + y0) * wp), hp * wp, wp, y1 - y0, w, channels, sums.as_mut_ptr()) };
                        // part is [block][channel][tap][lane].
                        let at = (b * c + c0) * 9 * lanes;
                        for (acc, v) in part[at..at + channels * 9 * lanes].iter_mut().zip(sums.iter()) {
                            *acc += v;
                        }
                    }
                }
            });
            let total = sum_partials(partials.into_iter().map(|(part, _)| part), blocks * c * 9 * lanes);
            let mut dw = vec![0.0f32; o * c * 9];
            for (oi, row) in dw.chunks_exact_mut(c * 9).enumerate() {
                for (q, v) in row.iter_mut().enumerate() {
                    *v = total[((oi / lanes) * c * 9 + q) * lanes + oi % lanes];
                }
            }
            dw
        })
    })
}

fn apply_epilogue(values: &mut [f32], channel: usize, e: Epilogue) {
    if let Some(bias) = e.bias {
        let b = bias[channel];
        values.iter_mut().for_each(|v| *v += b);
    }
    if let Some(s) = e.leaky_slope {
        values.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { *v * s });
    }
}

/// One register tile: acc[j][p] = Σ_ci Σ_ky Σ_kx w[ci][ky][kx][j] · input[ci][ky][p + kx] for
/// the tile's output channels j and pixels p, written row after row (j) to `acc`. `input`
/// points at the tile's top-left tap in channel 0; `plane` and `row` are its strides.
type TileFn = unsafe fn(input: *const f32, plane: usize, row: usize, c: usize, k: usize, w: *const f32, acc: *mut f32);

/// One weight-gradient tile: sums[j·TQ + t] = Σ over `rows` rows and `vectors` vectors of
/// dy[j][row][p] · x[offsets[t] + row·x_row + p].
type WeightGradFn = unsafe fn(dy: *const f32, dy_plane: usize, dy_row: usize, x: *const f32, x_row: usize, offsets: *const usize, rows: usize, vectors: usize, sums: *mut f32);

/// One 3×3 weight-gradient tile: sums[((ci·3 + ky)·3 + kx)·lanes + l] = Σ over `rows` rows
/// and `w` pixels p of dy[p·dy_pixel + l] · x[ci·plane + (row_of(p) + ky)·row + col_of(p) + kx],
/// for the tile's `channels` input channels (the rest of the tile is left as it was).
type WeightGrad3x3Fn = unsafe fn(dy: *const f32, dy_pixel: usize, x: *const f32, plane: usize, row: usize, rows: usize, w: usize, channels: usize, sums: *mut f32);

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{Isa, TileFn, WeightGrad3x3Fn, WeightGradFn};
    use std::arch::x86_64::*;

    pub fn select_weight_grad(isa: Isa) -> WeightGradFn {
        match isa {
            Isa::Avx512 => weight_grad_avx512::<4, 6>,
            Isa::Avx2 => weight_grad_avx2::<2, 4>,
        }
    }

    pub fn select_weight_grad_3x3(isa: Isa) -> WeightGrad3x3Fn {
        match isa {
            Isa::Avx512 => weight_grad_3x3_avx512::<3>,
            Isa::Avx2 => weight_grad_3x3_avx2::<1>,
        }
    }

    /// The tile kernel for kernel side `k`: 3×3 and 1×1 get their tap loops unrolled at compile
    /// time (K = k); other sides run with K = 0, the loops bounded at run time.
    pub fn select(isa: Isa, k: usize) -> TileFn {
        macro_rules! by_k {
            ($f:ident, $t:literal, $v:literal) => {
                match k {
                    3 => $f::<$t, $v, 3>,
                    1 => $f::<$t, $v, 1>,
                    _ => $f::<$t, $v, 0>,
                }
            };
        }
        match isa {
            Isa::Avx512 => by_k!(avx512, 8, 3),
            Isa::Avx2 => by_k!(avx2, 4, 2),
        }
    }

    /// The two kernels for one instruction set, from one body each: vectors of `$v` holding
    /// `$lanes` floats, with that set's zero, load, broadcast, multiply-add, store and
    /// horizontal sum.
    ///
    /// `$tile` (a [`TileFn`](super::TileFn)), safety: the features must be present; `input`
    /// readable for c planes of k rows of lanes·V + k − 1 floats, `w` for c·k·k·T floats,
    /// `acc` writable for T·lanes·V floats.
    ///
    /// `$weight_grad` (a [`WeightGradFn`](super::WeightGradFn)), safety: the features must be
    /// present; every read (TO gradient rows and TQ shifted input rows of lanes·vectors
    /// floats, for `rows` rows) in bounds; `sums` writable for TO·TQ floats.
    macro_rules! kernels {
        ($feature:literal, $v:ty, $lanes:literal, $tile:ident, $weight_grad:ident, $weight_grad_3x3:ident, $zero:ident, $load:ident, $splat:ident, $fmadd:ident, $store:ident, $sum:ident) => {
            #[target_feature(enable = $feature)]
            unsafe fn $tile<const T: usize, const V: usize, const K: usize>(input: *const f32, plane: usize, row: usize, c: usize, k: usize, w: *const f32, acc: *mut f32) {
                let k = if K == 0 { k } else { K };
                let mut a: [[$v; V]; T] = [[$zero(); V]; T];
                let mut wp = w;
                for ci in 0..c {
                    let channel = input.add(ci * plane);
                    for ky in 0..k {
                        let line = channel.add(ky * row);
                        // The next tile along the row reads the cache lines just past this one.
                        // With c·k rows read in turn, more streams than the hardware prefetcher
                        // follows, each line would otherwise miss to memory when its turn comes.
                        for l in 0..=V {
                            _mm_prefetch::<_MM_HINT_T0>(line.add($lanes * V + 16 * l) as *const i8);
                        }
                        for kx in 0..k {
                            let src = line.add(kx);
                            let xs: [$v; V] = std::array::from_fn(|v| $load(src.add($lanes * v)));
                            for (j, aj) in a.iter_mut().enumerate() {
                                // With AVX-512 this folds into the multiply-add as an embedded
                                // broadcast.
                                let wv = $splat(*wp.add(j));
                                for (av, x) in aj.iter_mut().zip(xs) {
                                    *av = $fmadd(wv, x, *av);
                                }
                            }
                            wp = wp.add(T);
                        }
                    }
                }
                for (j, aj) in a.iter().enumerate() {
                    for (v, av) in aj.iter().enumerate() {
                        $store(acc.add((j * V + v) * $lanes), *av);
                    }
                }
            }

            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feature)]
            unsafe fn $weight_grad<const TO: usize, const TQ: usize>(dy: *const f32, dy_plane: usize, dy_row: usize, x: *const f32, x_row: usize, offsets: *const usize, rows: usize, vectors: usize, sums: *mut f32) {
                let mut a: [[$v; TQ]; TO] = [[$zero(); TQ]; TO];
                let offs: [usize; TQ] = std::array::from_fn(|t| *offsets.add(t));
                for r in 0..rows {
                    let (dyr, xr) = (dy.add(r * dy_row), x.add(r * x_row));
                    for v in 0..vectors {
                        let xs: [$v; TQ] = std::array::from_fn(|t| $load(xr.add(offs[t] + $lanes * v)));
                        for (j, aj) in a.iter_mut().enumerate() {
                            let d = $load(dyr.add(j * dy_plane + $lanes * v));
                            for (at, xt) in aj.iter_mut().zip(xs) {
                                *at = $fmadd(d, xt, *at);
                            }
                        }
                    }
                }
                for (j, aj) in a.iter().enumerate() {
                    for (t, at) in aj.iter().enumerate() {
                        *sums.add(j * TQ + t) = $sum(*at);
                    }
                }
            }

            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feature)]
            unsafe fn $weight_grad_3x3<const CH: usize>(dy: *const f32, dy_pixel: usize, x: *const f32, plane: usize, row: usize, rows: usize, w: usize, channels: usize, sums: *mut f32) {
                let mut a: [[[$v; 3]; 3]; CH] = [[[$zero(); 3]; 3]; CH];
                for r in 0..rows {
                    // Channels past `channels` read channel 0 again; their sums are not stored.
                    let lines: [[*const f32; 3]; CH] = std::array::from_fn(|ci| std::array::from_fn(|ky| x.add(if ci < channels { ci } else { 0 } * plane + (r + ky) * row)));
                    let d_row = dy.add(r * w * dy_pixel);
                    for p in 0..w {
                        let d = $load(d_row.add(p * dy_pixel));
                        for (ac, lc) in a.iter_mut().zip(&lines) {
                            for (ar, &line) in ac.iter_mut().zip(lc) {
                                for (kx, at) in ar.iter_mut().enumerate() {
                                    *at = $fmadd(d, $splat(*line.add(p + kx)), *at);
                                }
                            }
                        }
                    }
                }
                for (ci, ac) in a.iter().enumerate().take(channels) {
                    for (tap, at) in ac.iter().flatten().enumerate() {
                        $store(sums.add((ci * 9 + tap) * $lanes), *at);
                    }
                }
            }
        };
    }

    kernels!("avx512f", __m512, 16, avx512, weight_grad_avx512, weight_grad_3x3_avx512, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps, _mm512_reduce_add_ps);
    kernels!("avx2,fma", __m256, 8, avx2, weight_grad_avx2, weight_grad_3x3_avx2, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps, sum_avx2);

    /// The sum of an AVX vector's 8 floats.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum_avx2(v: __m256) -> f32 {
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        lanes.iter().sum()
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    use super::{Isa, TileFn, WeightGrad3x3Fn, WeightGradFn};
    /// Never called: [`super::available`] is false off x86-64.
    pub fn select_weight_grad_3x3(_: Isa) -> WeightGrad3x3Fn {
        unreachable!("direct convolution is x86-64 only")
    }
    /// Never called: [`super::available`] is false off x86-64.
    pub fn select_weight_grad(_: Isa) -> WeightGradFn {
        unreachable!("direct convolution is x86-64 only")
    }
    /// Never called: [`super::available`] is false off x86-64.
    pub fn select(_: Isa, _: usize) -> TileFn {
        unreachable!("direct convolution is x86-64 only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, in f64: "same" zero padding, stride 1.
    fn reference(x: &[f32], n: usize, c: usize, h: usize, w: usize, wt: &[f32], o: usize, k: usize) -> Vec<f64> {
        let pad = (k / 2) as isize;
        let mut out = vec![0.0; n * o * h * w];
        for img in 0..n {
            for oi in 0..o {
                for y in 0..h {
                    for xx in 0..w {
                        let mut s = 0.0f64;
                        for ci in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (iy, ix) = (y as isize + ky as isize - pad, xx as isize + kx as isize - pad);
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                        s += wt[((oi * c + ci) * k + ky) * k + kx] as f64 * x[((img * c + ci) * h + iy as usize) * w + ix as usize] as f64;
                                    }
                                }
                            }
                        }
                        out[((img * o + oi) * h + y) * w + xx] = s;
                    }
                }
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        // A fixed pseudo-random sequence in [−1, 1).
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every kernel this CPU can run (an AVX-512 CPU also runs the AVX2 one).
    fn isas() -> Vec<Isa> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                out.push(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                out.push(Isa::Avx2);
            }
        }
        if out.is_empty() {
            eprintln!("skipped: no AVX-512F or AVX2/FMA on this CPU");
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(isa: Isa, x: &[f32], n: usize, h: usize, w: usize, wt: &[f32], o: usize, c: usize, k: usize, e: Epilogue) -> Vec<f32> {
        conv_same_on(isa, x, n, h, w, &PackedWeights::for_tiles(wt, o, c, k, isa.channels()), e)
    }

    #[test]
    fn matches_the_definition_on_odd_shapes_with_bias_and_leaky_relu() {
        // (n, c, o, h, w, k): channels not multiples of 4, rows shorter and longer than a
        // tile and not multiples of 8, 1×1, 3×3 and 5×5 kernels, batch > 1.
        for (isa, &(n, c, o, h, w, k)) in isas().into_iter().flat_map(|i| [(2, 3, 5, 7, 29, 3), (1, 16, 16, 9, 24, 3), (3, 6, 31, 4, 5, 1), (1, 2, 9, 11, 50, 5), (2, 1, 1, 1, 1, 3), (1, 4, 17, 3, 97, 3)].iter().map(move |s| (i, s))) {
            let x = values(n * c * h * w, 1 + k as u32);
            let wt = values(o * c * k * k, 7 + o as u32);
            let bias = values(o, 3);
            let expected = reference(&x, n, c, h, w, &wt, o, k);
            let plain = conv(isa, &x, n, h, w, &wt, o, c, k, Epilogue::default());
            let fused = conv(isa, &x, n, h, w, &wt, o, c, k, Epilogue { bias: Some(&bias), leaky_slope: Some(0.2) });
            for (i, &e) in expected.iter().enumerate() {
                let tol = 1e-5 * (c * k * k) as f64;
                assert!((plain[i] as f64 - e).abs() < tol, "{isa:?} {n}x{c}x{h}x{w} k{k} o{o} at {i}: {} vs {e}", plain[i]);
                let oi = (i / (h * w)) % o;
                let z = e + bias[oi] as f64;
                let act = if z > 0.0 { z } else { 0.2 * z };
                assert!((fused[i] as f64 - act).abs() < tol, "fused at {i}: {} vs {act}", fused[i]);
            }
        }
    }

    #[test]
    fn stale_values_in_the_kept_buffers_never_reach_a_result() {
        let (n, c, o, h, w, k) = (2, 3, 5, 7, 29, 3);
        let x = values(n * c * h * w, 61);
        let wt = values(o * c * k * k, 62);
        let dy = values(n * o * h * w, 63);
        let expected = reference(&x, n, c, h, w, &wt, o, k);
        for isa in isas() {
            for slot in [&PADDED_INPUT, &PADDED_GRAD] {
                slot.with(|b| *b.borrow_mut() = vec![f32::NAN; 1 << 16]);
            }
            let out = conv(isa, &x, n, h, w, &wt, o, c, k, Epilogue::default());
            assert!(out.iter().zip(&expected).all(|(&a, &e)| (a as f64 - e).abs() < 1e-4), "{isa:?}: forward after a poisoned buffer");
            assert!(weight_grad_on(isa, &x, &dy, n, c, h, w, o, k).iter().all(|v| v.is_finite()), "{isa:?}: weight gradient after a poisoned buffer");
        }
    }

    #[test]
    fn weight_gradient_matches_the_definition() {
        for (isa, &(n, c, o, h, w, k)) in isas().into_iter().flat_map(|i| [(2, 3, 5, 7, 29, 3), (1, 16, 16, 9, 24, 3), (3, 6, 31, 4, 5, 1), (1, 2, 9, 11, 70, 5), (2, 1, 1, 1, 1, 3), (1, 5, 7, 3, 97, 3)].iter().map(move |s| (i, s))) {
            let x = values(n * c * h * w, 41 + k as u32);
            let dy = values(n * o * h * w, 43 + o as u32);
            let pad = (k / 2) as isize;
            let got = weight_grad_on(isa, &x, &dy, n, c, h, w, o, k);
            for oi in 0..o {
                for ci in 0..c {
                    for ky in 0..k {
                        for kx in 0..k {
                            let mut e = 0.0f64;
                            for img in 0..n {
                                for y in 0..h {
                                    for xx in 0..w {
                                        let (iy, ix) = (y as isize + ky as isize - pad, xx as isize + kx as isize - pad);
                                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                            e += dy[((img * o + oi) * h + y) * w + xx] as f64 * x[((img * c + ci) * h + iy as usize) * w + ix as usize] as f64;
                                        }
                                    }
                                }
                            }
                            let g = got[((oi * c + ci) * k + ky) * k + kx] as f64;
                            assert!((g - e).abs() < 1e-5 * (n * h * w) as f64, "{isa:?} {n}x{c}x{h}x{w} k{k} o{o} dW[{oi}][{ci}][{ky}][{kx}]: {g} vs {e}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn flipped_transposed_weights_give_the_adjoint() {
        if !available() {
            return;
        }
        // ⟨conv(x, W), g⟩ = ⟨x, conv(g, flip(Wᵀ))⟩ for "same" convolutions.
        let (n, c, o, h, w, k) = (2, 5, 6, 8, 27, 3);
        let x = values(n * c * h * w, 11);
        let g = values(n * o * h * w, 12);
        let wt = values(o * c * k * k, 13);
        let y = conv_same(&x, n, h, w, &PackedWeights::new(&wt, o, c, k), Epilogue::default());
        let dx = conv_same(&g, n, h, w, &PackedWeights::flipped_transposed(&wt, o, c, k), Epilogue::default());
        assert_eq!(dx.len(), x.len());
        let lhs: f64 = y.iter().zip(&g).map(|(a, b)| *a as f64 * *b as f64).sum();
        let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
    }
}
