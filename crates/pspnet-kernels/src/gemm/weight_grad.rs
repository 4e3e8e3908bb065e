//! A convolution's weight gradient as one GEMM on the micro-kernels:
//! `dW[o][j] = sum_p dY[o][p] * X[j][p]`, where `j` runs over the weight's
//! input channel and kernel position, `p` over every output pixel of every
//! image, and `X[j][p]` is the input pixel tap `j` reads for pixel `p` (the
//! im2col matrix, gathered as it is packed: zero in the padding).
//!
//! `A` is the output's gradient in `MR`-row panels, packed once; `B` the
//! gathered taps in `NR`-column panels, a slice of `KC` pixels at a time. A
//! task owns a block of columns (and, when blocks are few, a group of rows):
//! it gathers its `B` slice once for all its row panels and sums every slice
//! into its own `C`. Every value of the
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

    /// The whole of `dY` in `MR`-row panels over every pixel (zero past the
    /// last row): panel `r`'s pixels `p0..p0+kc` are one contiguous run.
    fn pack_a<K: MicroKernel>(&self) -> Vec<f32> {
        let (plane, pixels) = (self.output_hw[0] * self.output_hw[1], self.pixels());
        let mut packed = vec![0.0f32; self.cout.div_ceil(K::MR) * K::MR * pixels];
        packed.par_chunks_mut(pixels * K::MR).enumerate().for_each(|(panel, chunk)| {
            for r in 0..K::MR {
                let o = panel * K::MR + r;
                if o >= self.cout {
                    break;
                }
                for n in 0..self.images {
                    let row = &self.grad_output[(n * self.cout + o) * plane..][..plane];
                    for (i, &v) in row.iter().enumerate() {
                        chunk[(n * plane + i) * K::MR + r] = v;
                    }
                }
            }
        });
        packed
    }

    /// Gathers `X[cols][ps]` into `NR`-column panels (zero in the padding and
    /// past the last column): column by column, output row by output row, so
    /// that each run of pixels reads one input row with its bounds worked out
    /// once.
    fn pack_b<K: MicroKernel>(&self, cols: std::ops::Range<usize>, ps: std::ops::Range<usize>, out: &mut [f32]) {
        let ([h, w], [_, ow], [kh, kw]) = (self.input_hw, self.output_hw, self.kernel);
        let (stride, padding, dilation) = (self.stride, self.padding, self.dilation);
        let plane = self.output_hw[0] * ow;
        out.fill(0.0);
        for (panel, chunk) in out.chunks_exact_mut(ps.len() * K::NR).enumerate() {
            for c in 0..K::NR {
                let j = cols.start + panel * K::NR + c;
                if j >= cols.end {
                    break;
                }
                let (i, tap) = (j / (kh * kw), j % (kh * kw));
                let dy = ((tap / kw) * dilation[0]) as i64 - padding[0] as i64;
                let dx = ((tap % kw) * dilation[1]) as i64 - padding[1] as i64;
                let mut p = ps.start;
                while p < ps.end {
                    let (n, pixel) = (p / plane, p % plane);
                    let (oy, ox0) = (pixel / ow, pixel % ow);
                    let run = (ow - ox0).min(ps.end - p);
                    let y = (oy * stride[0]) as i64 + dy;
                    if (0..h as i64).contains(&y) {
                        let row = &self.input[((n * self.cin + i) * h + y as usize) * w..][..w];
                        let s1 = stride[1] as i64;
                        // Pixels ox0 + t read column (ox0 + t) * s1 + dx, inside [0, w).
                        let first = ((-dx - ox0 as i64 * s1).max(0) + s1 - 1) / s1;
                        let end = ((w as i64 - dx - ox0 as i64 * s1 + s1 - 1) / s1).clamp(0, run as i64);
                        for t in first..end {
                            let x = ((ox0 as i64 + t) * s1 + dx) as usize;
                            chunk[(p - ps.start + t as usize) * K::NR + c] = row[x];
                        }
                    }
                    p += run;
                }
            }
        }
    }
}

/// `dW` (`cout x cin*kh*kw`, row-major) of `job`, on micro-kernel `K`.
pub(crate) fn weight_grad<K: MicroKernel>(job: &WeightGradJob<'_>) -> Vec<f32> {
    let (rows, cols, pixels) = (job.cout, job.columns(), job.pixels());
    let a = job.pack_a::<K>();
    // Blocks of columns wide enough to feed the kernel; the rows split into
    // groups only when there are too few blocks to share out (each group
    // gathers its block's taps again).
    let nc = K::NR * 4;
    let blocks = cols.div_ceil(nc);
    let group = if blocks >= 8 { rows } else { ROWS_PER_TASK };
    let tasks: Vec<(usize, usize)> = (0..blocks).flat_map(|b| (0..rows.div_ceil(group)).map(move |g| (b, g))).collect();
    let results: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(block, g)| {
            let (j0, o0) = (block * nc, g * group);
            let (j1, o1) = ((j0 + nc).min(cols), (o0 + group).min(rows));
            let (panels, col_panels) = ((o1 - o0).div_ceil(K::MR), (j1 - j0).div_ceil(K::NR));
            let width = col_panels * K::NR;
            let mut c = vec![0.0f32; panels * K::MR * width];
            let mut b = vec![0.0f32; col_panels * K::NR * KC];
            for p0 in (0..pixels).step_by(KC) {
                let ps = p0..(p0 + KC).min(pixels);
                let kc = ps.len();
                job.pack_b::<K>(j0..j1, ps, &mut b[..col_panels * K::NR * kc]);
                for rp in 0..panels {
                    let panel = o0 / K::MR + rp;
                    let a_slice = &a[(panel * pixels + p0) * K::MR..][..kc * K::MR];
                    for cp in 0..col_panels {
                        let cols_here = K::NR.min(j1 - j0 - cp * K::NR);
                        let at = rp * K::MR * width + cp * K::NR;
                        // SAFETY: `a_slice` holds `kc * MR` values and `b` `kc * NR`
                        // from panel cp's start; `c` holds MR rows of `width >= (cp +
                        // 1) * NR` values from `at`, owned by this task; the caller
                        // chose an ISA the CPU has.
                        unsafe {
                            K::tile(
                                kc,
                                a_slice.as_ptr(),
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
    for (&(block, g), c) in tasks.iter().zip(&results) {
        let (j0, o0) = (block * nc, g * group);
        let (j1, o1) = ((j0 + nc).min(cols), (o0 + group).min(rows));
        let width = (j1 - j0).div_ceil(K::NR) * K::NR;
        for o in o0..o1 {
            grad[o * cols + j0..o * cols + j1].copy_from_slice(&c[(o - o0) * width..][..j1 - j0]);
        }
    }
    grad
}
