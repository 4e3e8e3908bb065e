//! Packing: laying the GEMM operands out in the order the micro-kernel reads
//! them, so that its inner loop walks memory strictly forward.

use super::{MicroKernel, bf16};
use crate::geometry::ConvGeometry;

/// Weights (`M x K`, row-major OIHW) packed into `MR`-row panels: panel `i`
/// holds, for each `k`, the `MR` values `A[i*MR .. i*MR+MR][k]` (zero-padded
/// past `M`), so any `K` slice of a panel is one contiguous run. It is the
/// only copy of the weights: every convolution path reads the panels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PackedWeights {
    mr: usize,
    rows: usize,
    depth: usize,
    data: Vec<f32>,
}

impl PackedWeights {
    /// Packs `weights`, reusing their buffer when the panels need no
    /// padding rows, so a model being loaded never holds a layer twice.
    pub(crate) fn new(mut weights: Vec<f32>, rows: usize, depth: usize, mr: usize) -> Self {
        debug_assert_eq!(weights.len(), rows * depth);
        let panels = rows.div_ceil(mr);
        let mut data = vec![0.0; panels * depth * mr];
        for (row, w) in weights.chunks_exact(depth).enumerate() {
            let panel = &mut data[(row / mr) * depth * mr..];
            for (k, &v) in w.iter().enumerate() {
                panel[k * mr + row % mr] = v;
            }
        }
        if weights.len() == data.len() {
            weights.copy_from_slice(&data);
            data = weights;
        }
        PackedWeights { mr, rows, depth, data }
    }

    /// The weights as given, rebuilt from the panels.
    pub(crate) fn unpack(&self) -> Vec<f32> {
        let mut weights = vec![0.0; self.rows * self.depth];
        for (row, w) in weights.chunks_exact_mut(self.depth).enumerate() {
            let panel = &self.data[(row / self.mr) * self.depth * self.mr..];
            for (k, v) in w.iter_mut().enumerate() {
                *v = panel[k * self.mr + row % self.mr];
            }
        }
        weights
    }

    pub(crate) fn mr(&self) -> usize {
        self.mr
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// Steps `k0 .. k0 + kc` of panel `panel`.
    pub(crate) fn panel(&self, panel: usize, k0: usize, kc: usize) -> &[f32] {
        let start = (panel * self.depth + k0) * self.mr;
        &self.data[start..start + kc * self.mr]
    }
}

/// One kernel tap of the `K` axis: where its input channel starts and how
/// far its kernel position shifts the sampled pixel.
#[derive(Clone, Copy)]
struct Tap {
    channel_offset: usize,
    dy: isize,
    dx: isize,
}

/// A task's reusable packing buffers: the packed `B` block, 64-byte aligned,
/// and the taps of the current `K` slice.
pub(crate) struct Scratch {
    buffer: Vec<f32>,
    paired: Vec<u32>,
    taps: Vec<Tap>,
}

const ALIGN_FLOATS: usize = 16;

impl Scratch {
    pub(crate) fn new(kc: usize, nc: usize) -> Self {
        Scratch { buffer: vec![0.0; kc * nc + ALIGN_FLOATS], paired: Vec::new(), taps: Vec::with_capacity(kc) }
    }

    /// Gathers `B[ks][cols]` into `NR`-column panels: panel `p` holds, for
    /// each `k` of the slice, output pixels `cols.start + p*NR ..` (+NR),
    /// zero where a tap falls in the padding or past the last pixel. Also
    /// returns a buffer for the block in bf16 pairs if `paired` (else
    /// empty), for the caller to fill from the f32 block; a pointwise
    /// convolution's pairs are instead read straight from the input, and its
    /// f32 block is left empty.
    pub(crate) fn pack<K: MicroKernel>(
        &mut self,
        g: &ConvGeometry,
        input: &[f32],
        ks: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        paired: bool,
    ) -> (&[f32], &mut [u32]) {
        let taps_per_channel = g.kh * g.kw;
        self.taps.clear();
        self.taps.extend(ks.clone().map(|k| {
            let (ci, tap) = (k / taps_per_channel, k % taps_per_channel);
            Tap {
                channel_offset: ci * g.h * g.w,
                dy: ((tap / g.kw) * g.dilation[0]) as isize,
                dx: ((tap % g.kw) * g.dilation[1]) as isize,
            }
        }));
        let kc = ks.len();
        let panels = cols.len().div_ceil(K::NR);
        let paired_len = if paired { panels * kc.div_ceil(2) * K::NR } else { 0 };
        if self.paired.len() < paired_len {
            self.paired.resize(paired_len, 0);
        }
        if paired && g.is_pointwise() {
            // B's rows are the input's rows: pair them straight from there.
            let paired = &mut self.paired[..paired_len];
            for (p, panel) in paired.chunks_exact_mut(kc.div_ceil(2) * K::NR).enumerate() {
                let pix0 = cols.start + p * K::NR;
                let count = K::NR.min(cols.end - pix0);
                let row = |tap: &Tap| &input[tap.channel_offset + pix0..][..count];
                for (dst, taps) in panel.chunks_exact_mut(K::NR).zip(self.taps.chunks(2)) {
                    bf16::pairs(K::ISA, row(&taps[0]), taps.get(1).map(row), &mut dst[..count]);
                    dst[count..].fill(0);
                }
            }
            return (&[], paired);
        }
        let offset = self.buffer.as_ptr().align_offset(64).min(ALIGN_FLOATS);
        let packed = &mut self.buffer[offset..offset + panels * kc * K::NR];
        for (p, panel) in packed.chunks_exact_mut(kc * K::NR).enumerate() {
            let pix0 = cols.start + p * K::NR;
            let count = K::NR.min(cols.end - pix0);
            if g.is_pointwise() {
                for (dst, tap) in panel.chunks_exact_mut(K::NR).zip(&self.taps) {
                    dst[..count].copy_from_slice(&input[tap.channel_offset + pix0..][..count]);
                }
            } else {
                pack_rows(g, input, &self.taps, pix0, count, K::NR, panel);
            }
            if count < K::NR {
                panel.chunks_exact_mut(K::NR).for_each(|dst| dst[count..].fill(0.0));
            }
        }
        (packed, &mut self.paired[..paired_len])
    }
}

/// Fills columns `0..count` of one panel (output pixels `pix0..pix0+count`),
/// one output-row segment at a time so each tap is a strided row gather.
fn pack_rows(g: &ConvGeometry, input: &[f32], taps: &[Tap], pix0: usize, count: usize, nr: usize, panel: &mut [f32]) {
    let mut j = 0;
    while j < count {
        let (oy, ox) = ((pix0 + j) / g.ow, (pix0 + j) % g.ow);
        let len = (g.ow - ox).min(count - j);
        let iy0 = (oy * g.stride[0]) as isize - g.padding[0] as isize;
        let ix0 = (ox * g.stride[1]) as isize - g.padding[1] as isize;
        for (dst, tap) in panel.chunks_exact_mut(nr).zip(taps) {
            let dst = &mut dst[j..j + len];
            let iy = iy0 + tap.dy;
            if iy < 0 || iy >= g.h as isize {
                dst.fill(0.0);
            } else {
                let row = &input[tap.channel_offset + iy as usize * g.w..][..g.w];
                gather_row(row, ix0 + tap.dx, g.stride[1], dst);
            }
        }
        j += len;
    }
}

/// `dst[t] = row[start + t * step]`, or 0 where that index is outside `row`.
fn gather_row(row: &[f32], start: isize, step: usize, dst: &mut [f32]) {
    let (w, stepi) = (row.len() as isize, step as isize);
    let inside = start >= 0 && start + (dst.len() as isize - 1) * stepi < w;
    // Interior segments (the common case) need no divisions to clip.
    let (first, end) = if inside {
        (0, dst.len())
    } else {
        let first = if start >= 0 { 0 } else { ((-start + stepi - 1) / stepi) as usize };
        let end = if start >= w { 0 } else { ((w - start + stepi - 1) / stepi) as usize };
        (first.min(dst.len()), end.min(dst.len()))
    };
    if first >= end {
        dst.fill(0.0);
        return;
    }
    dst[..first].fill(0.0);
    dst[end..].fill(0.0);
    let src0 = (start + first as isize * stepi) as usize;
    if step == 1 {
        dst[first..end].copy_from_slice(&row[src0..src0 + (end - first)]);
    } else {
        // Whole `step`-sized chunks vectorise (a shuffle per vector); the
        // last sample may sit in a partial chunk.
        let dst = &mut dst[first..end];
        let (last, body) = dst.split_last_mut().expect("first < end");
        for (d, s) in body.iter_mut().zip(row[src0..].chunks_exact(step)) {
            *d = s[0];
        }
        *last = row[src0 + body.len() * step];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_row_zero_fills_outside_the_row() {
        let row = [1.0, 2.0, 3.0, 4.0, 5.0];
        let mut dst = [9.0; 6];
        gather_row(&row, -2, 1, &mut dst);
        assert_eq!(dst, [0.0, 0.0, 1.0, 2.0, 3.0, 4.0]);
        gather_row(&row, -3, 2, &mut dst);
        assert_eq!(dst, [0.0, 0.0, 2.0, 4.0, 0.0, 0.0]);
        gather_row(&row, 7, 1, &mut dst);
        assert_eq!(dst, [0.0; 6]);
        gather_row(&row, -20, 3, &mut dst);
        assert_eq!(dst, [0.0; 6]);
    }

    #[test]
    fn weight_panels_interleave_rows_and_pad_with_zeros() {
        // 3 rows x 2 columns, MR = 2: panel 0 = rows 0,1; panel 1 = row 2 + padding.
        let given = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = PackedWeights::new(given.to_vec(), 3, 2, 2);
        assert_eq!(w.panel(0, 0, 2), &[1.0, 3.0, 2.0, 4.0]);
        assert_eq!(w.panel(1, 0, 2), &[5.0, 0.0, 6.0, 0.0]);
        assert_eq!(w.panel(1, 1, 1), &[6.0, 0.0]);
        assert_eq!(w.unpack(), given.to_vec());
    }
}
