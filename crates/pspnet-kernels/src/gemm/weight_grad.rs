//! A convolution's weight gradient as one GEMM on the micro-kernels:
//! `dW[o][j] = sum_p dY[o][p] * X[j][p]`, where `j` runs over the weight's
//! input channel and kernel position, `p` over every output pixel of every
//! image, and `X[j][p]` is the input pixel tap `j` reads for pixel `p` (the
//! im2col matrix, gathered as it is packed: zero in the padding).
//!
//! `A` is the output's gradient in `MR`-row panels, `B` the gathered taps in
//! `NR`-column panels, each for a slice of `KC` pixels. A task owns a block
//! of `NC` columns and a group of rows: it packs its `B` slice once for all
//! its row panels and sums every slice into its own `C`. Every value of the
//! gradient is summed over the pixels in one order, whatever the number of
//! threads.

use rayon::prelude::*;

use super::MicroKernel;

/// Pixels per `K` slice.
const KC: usize = 256;
/// Rows (output channels) per task.
const ROWS_PER_TASK: usize = 64;

/// The problem: the input and the output's gradient of a convolution over
/// `images` images.
#[derive(Clone, Copy)]
pub(crate) struct WeightGradJob<'a> {
    /// `images x cin x h x w`.
    pub(crate) input: &'a [f32],
    /// `images x cout x oh x ow`.
    pub(crate) grad_output: &'a [f32],
    pub(crate) images: usize,
    pub(crate) cin: usize,
    pub(crate) cout: usize,
    /// `[h, w]` of the input.
    pub(crate) input_hw: [usize; 2],
    /// `[oh, ow]` of the output.
    pub(crate) output_hw: [usize; 2],
    /// `[kh, kw]`.
    pub(crate) kernel: [usize; 2],
    /// The convolution's stride, zero padding and dilation per axis.
    pub(crate) stride: [usize; 2],
    pub(crate) padding: [usize; 2],
    pub(crate) dilation: [usize; 2],
}

impl WeightGradJob<'_> {
    fn columns(&self) -> usize {
        self.cin * self.kernel[0] * self.kernel[1]
    }

    fn pixels(&self) -> usize {
        self.images * self.output_hw[0] * self.output_hw[1]
    }

    /// Packs `dY[rows][ps]` into `MR`-row panels (zero past the last row).
    fn pack_a<K: MicroKernel>(&self, rows: std::ops::Range<usize>, ps: std::ops::Range<usize>, out: &mut [f32]) {
        let plane = self.output_hw[0] * self.output_hw[1];
        for (panel, chunk) in out.chunks_exact_mut(ps.len() * K::MR).enumerate() {
            for (k, p) in ps.clone().enumerate() {
                let (n, pixel) = (p / plane, p % plane);
                for r in 0..K::MR {
                    let o = rows.start + panel * K::MR + r;
                    chunk[k * K::MR + r] =
                        if o < rows.end { self.grad_output[(n * self.cout + o) * plane + pixel] } else { 0.0 };
                }
            }
        }
    }

    /// Gathers `X[cols][ps]` into `NR`-column panels (zero in the padding and
    /// past the last column).
    fn pack_b<K: MicroKernel>(&self, cols: std::ops::Range<usize>, ps: std::ops::Range<usize>, out: &mut [f32]) {
        let ([h, w], [_, ow], [kh, kw]) = (self.input_hw, self.output_hw, self.kernel);
        let (stride, padding, dilation) = (self.stride, self.padding, self.dilation);
        let plane = self.output_hw[0] * ow;
        // Per column: its input plane and the shift its kernel position adds.
        let taps: Vec<Option<(usize, isize, isize)>> = (cols.start..cols.start + out.len() / ps.len())
            .map(|j| {
                (j < cols.end).then(|| {
                    let (i, tap) = (j / (kh * kw), j % (kh * kw));
                    let dy = ((tap / kw) * dilation[0]) as isize - padding[0] as isize;
                    let dx = ((tap % kw) * dilation[1]) as isize - padding[1] as isize;
                    (i, dy, dx)
                })
            })
            .collect();
        for (panel, chunk) in out.chunks_exact_mut(ps.len() * K::NR).enumerate() {
            let panel_taps = &taps[panel * K::NR..(panel + 1) * K::NR];
            for (k, p) in ps.clone().enumerate() {
                let (n, pixel) = (p / plane, p % plane);
                let (y0, x0) = (((pixel / ow) * stride[0]) as isize, ((pixel % ow) * stride[1]) as isize);
                for (c, tap) in panel_taps.iter().enumerate() {
                    chunk[k * K::NR + c] = match *tap {
                        Some((i, dy, dx)) => {
                            let (y, x) = (y0 + dy, x0 + dx);
                            if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                                self.input[((n * self.cin + i) * h + y as usize) * w + x as usize]
                            } else {
                                0.0
                            }
                        }
                        None => 0.0,
                    };
                }
            }
        }
    }
}

/// `dW` (`cout x cin*kh*kw`, row-major) of `job`, on micro-kernel `K`.
pub(crate) fn weight_grad<K: MicroKernel>(job: &WeightGradJob<'_>) -> Vec<f32> {
    let (rows, cols, pixels) = (job.cout, job.columns(), job.pixels());
    // Blocks of columns wide enough to feed the kernel, few enough to keep
    // both threads busy on the narrow layers.
    let nc = K::NR * 4;
    let row_groups = rows.div_ceil(ROWS_PER_TASK);
    let tasks: Vec<(usize, usize)> =
        (0..cols.div_ceil(nc)).flat_map(|b| (0..row_groups).map(move |g| (b, g))).collect();
    let blocks: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(block, group)| {
            let (j0, o0) = (block * nc, group * ROWS_PER_TASK);
            let (j1, o1) = ((j0 + nc).min(cols), (o0 + ROWS_PER_TASK).min(rows));
            let (row_panels, col_panels) = ((o1 - o0).div_ceil(K::MR), (j1 - j0).div_ceil(K::NR));
            let width = col_panels * K::NR;
            let mut c = vec![0.0f32; row_panels * K::MR * width];
            let mut a = vec![0.0f32; row_panels * K::MR * KC];
            let mut b = vec![0.0f32; col_panels * K::NR * KC];
            for p0 in (0..pixels).step_by(KC) {
                let ps = p0..(p0 + KC).min(pixels);
                let kc = ps.len();
                job.pack_a::<K>(o0..o1, ps.clone(), &mut a[..row_panels * K::MR * kc]);
                job.pack_b::<K>(j0..j1, ps, &mut b[..col_panels * K::NR * kc]);
                for rp in 0..row_panels {
                    for cp in 0..col_panels {
                        let cols_here = K::NR.min(j1 - j0 - cp * K::NR);
                        let at = rp * K::MR * width + cp * K::NR;
                        // SAFETY: `a` holds `kc * MR` values from panel rp's
                        // start and `b` `kc * NR` from panel cp's; `c` holds MR
                        // rows of `width >= (cp + 1) * NR` values from `at`,
                        // owned by this task; the caller chose an ISA the CPU has.
                        unsafe {
                            K::tile(
                                kc,
                                a[rp * K::MR * kc..].as_ptr(),
                                b[cp * K::NR * kc..].as_ptr(),
                                c[at..].as_mut_ptr(),
                                width,
                                true,
                                cols_here,
                            );
                        }
                    }
                }
            }
            c
        })
        .collect();
    let mut grad = vec![0.0f32; rows * cols];
    for (&(block, group), c) in tasks.iter().zip(&blocks) {
        let (j0, o0) = (block * nc, group * ROWS_PER_TASK);
        let (j1, o1) = ((j0 + nc).min(cols), (o0 + ROWS_PER_TASK).min(rows));
        let width = (j1 - j0).div_ceil(K::NR) * K::NR;
        for o in o0..o1 {
            grad[o * cols + j0..o * cols + j1].copy_from_slice(&c[(o - o0) * width..][..j1 - j0]);
        }
    }
    grad
}
