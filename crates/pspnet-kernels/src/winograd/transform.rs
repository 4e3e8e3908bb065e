//! The three linear maps of Winograd's minimal filtering algorithm
//! F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016), on the interpolation points 0, -1, 1, 1/2, -2 and
//! infinity rather than the usual 0, ±1, ±2: Barabasz et al. ("Error
//! Analysis and Improving the Accuracy of Winograd Convolution", 2020) show
//! the half point shrinks the rounding error, here by about a third:
//!
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`
//!
//! turns a 6x6 input patch `d` and a 3x3 filter `g` into a 4x4 output tile
//! `Y` with 36 multiplications instead of 144. Each map is applied to the
//! columns, then to the rows, on `L` independent lanes (tiles or output
//! channels), which the compiler turns into one vector each.

/// Side of an output tile.
pub(crate) const OUT: usize = 4;
/// Side of an input patch (`OUT + 3 - 1`).
pub(crate) const IN: usize = 6;
/// Points of the transform domain (`IN x IN`): one GEMM each.
pub(crate) const POINTS: usize = IN * IN;

/// `L` lanes of one value.
pub(crate) type Lanes<const L: usize> = [f32; L];

/// `Bᵀ d` on one column of 6 values per lane.
#[inline(always)]
fn input_1d<const L: usize>([d0, d1, d2, d3, d4, d5]: [&Lanes<L>; IN]) -> [Lanes<L>; IN] {
    let mut out = [[0.0; L]; IN];
    for l in 0..L {
        let [d0, d1, d2, d3, d4, d5] = [d0[l], d1[l], d2[l], d3[l], d4[l], d5[l]];
        out[0][l] = d0 + 1.5 * (d3 - d1) - 2.0 * d2 + d4;
        out[1][l] = d1 - 2.5 * d2 + 0.5 * d3 + d4;
        out[2][l] = 0.5 * d2 - d1 + 2.5 * d3 + d4;
        out[3][l] = 2.0 * (d3 - d1) - d2 + d4;
        out[4][l] = 0.5 * (d1 - d3) - d2 + d4;
        out[5][l] = d1 + 1.5 * (d4 - d2) - 2.0 * d3 + d5;
    }
    out
}

const THIRD: f32 = 1.0 / 3.0;
const FIFTEENTH: f32 = 1.0 / 15.0;

/// `G g` on one column of 3 values.
#[inline(always)]
fn weight_1d([g0, g1, g2]: [f32; 3]) -> [f32; IN] {
    let even = g0 + g2;
    [
        g0,
        (g1 - even) * THIRD,
        (g1 + even) * THIRD,
        (16.0 * g0 + 8.0 * g1 + 4.0 * g2) * -FIFTEENTH,
        (g0 - 2.0 * g1 + 4.0 * g2) * FIFTEENTH,
        g2,
    ]
}

/// `Aᵀ m` on one column of 6 values per lane.
#[inline(always)]
fn output_1d<const L: usize>([m0, m1, m2, m3, m4, m5]: [&Lanes<L>; IN]) -> [Lanes<L>; OUT] {
    let mut out = [[0.0; L]; OUT];
    for l in 0..L {
        let [m0, m1, m2, m3, m4, m5] = [m0[l], m1[l], m2[l], m3[l], m4[l], m5[l]];
        let (sum, diff) = (m1 + m2, m2 - m1);
        out[0][l] = m0 + sum + m3 + m4;
        out[1][l] = diff + 0.5 * m3 - 2.0 * m4;
        out[2][l] = sum + 0.25 * m3 + 4.0 * m4;
        out[3][l] = diff + 0.125 * m3 - 8.0 * m4 + m5;
    }
    out
}

/// Applies a 1-D map of 6 values to `R` values, on all lanes at once, to
/// the columns, then to the rows, of one row-major 6x6 block per lane; `y`
/// gets `R x R` values, row major. Each map loops over the lanes inside each
/// formula, which compiles to plain vector arithmetic: with one lane's
/// column at a time, the compiler assembled the columns of the output
/// transform with masked gathers (80 `vgatherqps`), slow on this AVX-512
/// CPU, and the 3x3 layers ran 3-21% slower.
#[inline(always)]
fn separable<const L: usize, const R: usize>(
    x: &[Lanes<L>; POINTS],
    map: impl Fn([&Lanes<L>; IN]) -> [Lanes<L>; R],
    y: &mut [Lanes<L>],
) {
    let mut columns = [[[0.0; L]; IN]; R];
    for c in 0..IN {
        for (r, t) in map(std::array::from_fn(|r| &x[r * IN + c])).into_iter().enumerate() {
            columns[r][c] = t;
        }
    }
    for (r, row) in columns.iter().enumerate() {
        for (j, value) in map(std::array::from_fn(|c| &row[c])).into_iter().enumerate() {
            y[r * R + j] = value;
        }
    }
}

/// `Bᵀ d B` of one row-major 6x6 patch per lane, into `v`, row-major over
/// the 36 points.
#[inline(always)]
pub(crate) fn input<const L: usize>(d: &[Lanes<L>; POINTS], v: &mut [Lanes<L>; POINTS]) {
    separable(d, input_1d, v);
}

/// `G g Gᵀ` of one row-major 3x3 filter per lane, into `u`. With only 9
/// inputs per lane, the lane loop is outermost around straight-line code.
#[inline(always)]
pub(crate) fn weight<const L: usize>(g: &[Lanes<L>; 9], u: &mut [Lanes<L>; POINTS]) {
    for l in 0..L {
        let columns: [[f32; IN]; 3] = std::array::from_fn(|c| weight_1d(std::array::from_fn(|r| g[r * 3 + c][l])));
        for r in 0..IN {
            for (j, value) in weight_1d(std::array::from_fn(|c| columns[c][r])).into_iter().enumerate() {
                u[r * IN + j][l] = value;
            }
        }
    }
}

/// `Aᵀ m A` of the 36 transform-domain products per lane, into `y`, a
/// row-major 4x4 tile.
#[inline(always)]
pub(crate) fn output<const L: usize>(m: &[Lanes<L>; POINTS], y: &mut [Lanes<L>; OUT * OUT]) {
    separable(m, output_1d, y);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three maps compose to a 3x3 cross-correlation: checked in f32
    /// against the direct sum on small integers, where both are exact.
    #[test]
    fn transforms_compose_to_a_correlation() {
        let d: [Lanes<1>; POINTS] = std::array::from_fn(|i| [((i * 7 + 3) % 11) as f32 - 5.0]);
        let g: [Lanes<1>; 9] = std::array::from_fn(|i| [((i * 5 + 1) % 7) as f32 - 3.0]);
        let (mut u, mut v, mut y) = ([[0.0; 1]; POINTS], [[0.0; 1]; POINTS], [[0.0; 1]; OUT * OUT]);
        weight(&g, &mut u);
        input(&d, &mut v);
        let m: [Lanes<1>; POINTS] = std::array::from_fn(|i| [u[i][0] * v[i][0]]);
        output(&m, &mut y);
        for oy in 0..OUT {
            for ox in 0..OUT {
                let direct: f32 = (0..9).map(|t| g[t][0] * d[(oy + t / 3) * IN + ox + t % 3][0]).sum();
                assert!(
                    (y[oy * OUT + ox][0] - direct).abs() < 1e-3,
                    "({oy},{ox}): {} vs {direct}",
                    y[oy * OUT + ox][0]
                );
            }
        }
    }
}
