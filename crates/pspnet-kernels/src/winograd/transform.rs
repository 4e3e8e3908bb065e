//! The three linear maps of Winograd's minimal filtering algorithm
//! F(m x m, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016), for output tiles of side m = 4 and 5:
//!
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`
//!
//! turns an (m + 2) x (m + 2) input patch `d` and a 3x3 filter `g` into an
//! m x m output tile `Y` with (m + 2)² multiplications instead of 9m². The
//! larger tile does less arithmetic per output pixel (F(4): 2.25
//! multiplications, F(5): 1.96, against 9) and rounds about 2.5 times as
//! much. Each map is applied to the columns, then to the rows, on `L`
//! independent lanes (tiles or output channels), which the compiler turns
//! into one vector each.
//!
//! The maps are the Toom-Cook construction on the interpolation points
//! 0, -1, 1, 1/2, then -2 (F(4)) or -1/2 and -2 (F(5)), plus infinity, with
//! `G` carrying the normalisation. Barabasz et al. ("Error Analysis and
//! Improving the Accuracy of Winograd Convolution", 2020) show the half
//! points shrink the rounding error against the usual 0, ±1, ±2: here by
//! about a third for F(4).
//!
//! The same maps, transposed, make the weight gradient's F(3x3, m x m): the
//! 3x3 correlation of a patch `d` with an m x m tile `δ` of the output's
//! gradient is `Gᵀ [(A δ Aᵀ) ⊙ (Bᵀ d B)] G`. (Both sides are the trilinear
//! form `Σ δ_ij d_(i+u)(j+v) g_uv` read off for `g`, the filter's gradient.)

/// `L` lanes of one value.
pub(crate) type Lanes<const L: usize> = [f32; L];

/// The largest number of transform-domain points of any tiling (F(5)'s 7x7).
pub(crate) const MAX_POINTS: usize = 49;

/// One Winograd tiling F(m x m, 3x3): its sides and its three 2-D maps, on
/// row-major blocks held in slices of exactly the lengths given here.
pub(crate) trait Tiling {
    /// Side of an output tile (m).
    const OUT: usize;
    /// Side of an input patch (`OUT + 3 - 1`).
    const IN: usize = Self::OUT + 2;
    /// Points of the transform domain (`IN x IN`): one GEMM each.
    const POINTS: usize = Self::IN * Self::IN;

    /// `Bᵀ d B` of one `IN x IN` patch per lane (`d`), into `v`.
    fn input<const L: usize>(d: &[Lanes<L>], v: &mut [Lanes<L>]);

    /// `G g Gᵀ` of one row-major 3x3 filter per lane, into `u` (`POINTS`).
    fn weight<const L: usize>(g: &[Lanes<L>; 9], u: &mut [Lanes<L>]);

    /// `Aᵀ m A` of the `POINTS` transform-domain products per lane, into
    /// `y`, a row-major `OUT x OUT` tile.
    fn output<const L: usize>(m: &[Lanes<L>], y: &mut [Lanes<L>]);

    /// `A δ Aᵀ` of one row-major `OUT x OUT` tile of the output's gradient
    /// per lane (`δ`), into `v` (`POINTS`): the weight gradient's transform
    /// of the output's gradient.
    fn output_grad<const L: usize>(delta: &[Lanes<L>], v: &mut [Lanes<L>]);

    /// `Gᵀ m G` of the `POINTS` summed products per lane, into `g`, a
    /// row-major 3x3 filter gradient.
    fn weight_grad<const L: usize>(m: &[Lanes<L>], g: &mut [Lanes<L>]);
}

/// Applies a 1-D map of `N` values to `R` values, on all lanes at once, to
/// the columns, then to the rows, of one row-major `N x N` block per lane;
/// `y` gets `R x R` values, row major. Each map loops over the lanes inside
/// each formula, which compiles to plain vector arithmetic: with one lane's
/// column at a time, the compiler assembled the columns of the output
/// transform with masked gathers (`vgatherqps`), which were slow on the
/// AVX-512 CPU we measured.
#[inline(always)]
fn separable<const L: usize, const N: usize, const R: usize>(
    x: &[Lanes<L>],
    map: impl Fn([&Lanes<L>; N]) -> [Lanes<L>; R],
    y: &mut [Lanes<L>],
) {
    let x = &x[..N * N];
    let mut columns = [[[0.0; L]; N]; R];
    for c in 0..N {
        for (r, t) in map(std::array::from_fn(|r| &x[r * N + c])).into_iter().enumerate() {
            columns[r][c] = t;
        }
    }
    for (r, row) in columns.iter().enumerate() {
        for (j, value) in map(std::array::from_fn(|c| &row[c])).into_iter().enumerate() {
            y[r * R + j] = value;
        }
    }
}

/// `G g Gᵀ` from a 1-D map of a filter's 3 values to `N` values. With only
/// 9 inputs per lane, the lane loop is outermost around straight-line code.
#[inline(always)]
fn weight_separable<const L: usize, const N: usize>(
    g: &[Lanes<L>; 9],
    map: impl Fn([f32; 3]) -> [f32; N],
    u: &mut [Lanes<L>],
) {
    for l in 0..L {
        let columns: [[f32; N]; 3] = std::array::from_fn(|c| map(std::array::from_fn(|r| g[r * 3 + c][l])));
        for r in 0..N {
            for (j, value) in map(std::array::from_fn(|c| columns[c][r])).into_iter().enumerate() {
                u[r * N + j][l] = value;
            }
        }
    }
}

/// Implements [`Tiling`] for a tile size from its five 1-D maps: `Bᵀ d`,
/// `Aᵀ m`, `A δ` and `Gᵀ m` on lanes, `G g` on one filter column.
macro_rules! tiling {
    ($name:ident, $out:literal, $input:ident, $weight:ident, $output:ident, $output_grad:ident, $weight_grad:ident) => {
        impl Tiling for $name {
            const OUT: usize = $out;

            #[inline(always)]
            fn input<const L: usize>(d: &[Lanes<L>], v: &mut [Lanes<L>]) {
                separable(d, $input, v);
            }

            #[inline(always)]
            fn weight<const L: usize>(g: &[Lanes<L>; 9], u: &mut [Lanes<L>]) {
                weight_separable(g, $weight, u);
            }

            #[inline(always)]
            fn output<const L: usize>(m: &[Lanes<L>], y: &mut [Lanes<L>]) {
                separable(m, $output, y);
            }

            #[inline(always)]
            fn output_grad<const L: usize>(delta: &[Lanes<L>], v: &mut [Lanes<L>]) {
                separable(delta, $output_grad, v);
            }

            #[inline(always)]
            fn weight_grad<const L: usize>(m: &[Lanes<L>], g: &mut [Lanes<L>]) {
                separable(m, $weight_grad, g);
            }
        }
    };
}

/// F(2x2, 3x3): points 0, 1, -1, infinity (Lavin & Gray's). Its maps hold
/// only 0, ±1 and ±1/2, so it rounds little more than the direct sum.
pub(crate) struct F2;

tiling!(F2, 2, input_f2, weight_f2, output_f2, output_grad_f2, weight_grad_f2);

/// F(2)'s `Bᵀ d` on one column of 4 values per lane.
#[inline(always)]
fn input_f2<const L: usize>([d0, d1, d2, d3]: [&Lanes<L>; 4]) -> [Lanes<L>; 4] {
    let mut out = [[0.0; L]; 4];
    for l in 0..L {
        out[0][l] = d0[l] - d2[l];
        out[1][l] = d1[l] + d2[l];
        out[2][l] = d2[l] - d1[l];
        out[3][l] = d1[l] - d3[l];
    }
    out
}

/// F(2)'s `G g` on one column of 3 values.
#[inline(always)]
fn weight_f2([g0, g1, g2]: [f32; 3]) -> [f32; 4] {
    let even = g0 + g2;
    [g0, 0.5 * (even + g1), 0.5 * (even - g1), g2]
}

/// F(2)'s `Aᵀ m` on one column of 4 values per lane.
#[inline(always)]
fn output_f2<const L: usize>([m0, m1, m2, m3]: [&Lanes<L>; 4]) -> [Lanes<L>; 2] {
    let mut out = [[0.0; L]; 2];
    for l in 0..L {
        out[0][l] = m0[l] + m1[l] + m2[l];
        out[1][l] = m1[l] - m2[l] - m3[l];
    }
    out
}

/// F(2)'s `A δ` (the transpose of `Aᵀ m`) on one column of 2 values per lane.
#[inline(always)]
fn output_grad_f2<const L: usize>([d0, d1]: [&Lanes<L>; 2]) -> [Lanes<L>; 4] {
    let mut out = [[0.0; L]; 4];
    for l in 0..L {
        out[0][l] = d0[l];
        out[1][l] = d0[l] + d1[l];
        out[2][l] = d0[l] - d1[l];
        out[3][l] = -d1[l];
    }
    out
}

/// F(2)'s `Gᵀ m` (the transpose of `G g`) on one column of 4 values per lane.
#[inline(always)]
fn weight_grad_f2<const L: usize>([m0, m1, m2, m3]: [&Lanes<L>; 4]) -> [Lanes<L>; 3] {
    let mut out = [[0.0; L]; 3];
    for l in 0..L {
        let (sum, diff) = (0.5 * (m1[l] + m2[l]), 0.5 * (m1[l] - m2[l]));
        out[0][l] = m0[l] + sum;
        out[1][l] = diff;
        out[2][l] = sum + m3[l];
    }
    out
}

/// F(4x4, 3x3): points 0, -1, 1, 1/2, -2, infinity.
pub(crate) struct F4;

tiling!(F4, 4, input_f4, weight_f4, output_f4, output_grad_f4, weight_grad_f4);

/// F(4)'s `Bᵀ d` on one column of 6 values per lane.
#[inline(always)]
fn input_f4<const L: usize>([d0, d1, d2, d3, d4, d5]: [&Lanes<L>; 6]) -> [Lanes<L>; 6] {
    let mut out = [[0.0; L]; 6];
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

/// F(4)'s `G g` on one column of 3 values.
#[inline(always)]
fn weight_f4([g0, g1, g2]: [f32; 3]) -> [f32; 6] {
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

/// F(4)'s `Aᵀ m` on one column of 6 values per lane.
#[inline(always)]
fn output_f4<const L: usize>([m0, m1, m2, m3, m4, m5]: [&Lanes<L>; 6]) -> [Lanes<L>; 4] {
    let mut out = [[0.0; L]; 4];
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

/// F(4)'s `A δ` (the transpose of `Aᵀ m`) on one column of 4 values per lane.
#[inline(always)]
fn output_grad_f4<const L: usize>([d0, d1, d2, d3]: [&Lanes<L>; 4]) -> [Lanes<L>; 6] {
    let mut out = [[0.0; L]; 6];
    for l in 0..L {
        let [d0, d1, d2, d3] = [d0[l], d1[l], d2[l], d3[l]];
        let (even, odd) = (d0 + d2, d1 + d3);
        out[0][l] = d0;
        out[1][l] = even - odd;
        out[2][l] = even + odd;
        out[3][l] = d0 + 0.5 * d1 + 0.25 * d2 + 0.125 * d3;
        out[4][l] = d0 - 2.0 * d1 + 4.0 * d2 - 8.0 * d3;
        out[5][l] = d3;
    }
    out
}

/// F(4)'s `Gᵀ m` (the transpose of `G g`) on one column of 6 values per lane.
#[inline(always)]
fn weight_grad_f4<const L: usize>([m0, m1, m2, m3, m4, m5]: [&Lanes<L>; 6]) -> [Lanes<L>; 3] {
    let mut out = [[0.0; L]; 3];
    for l in 0..L {
        let [m0, m1, m2, m3, m4, m5] = [m0[l], m1[l], m2[l], m3[l], m4[l], m5[l]];
        let (sum, diff) = (m1 + m2, m2 - m1);
        out[0][l] = m0 + diff * THIRD + (m4 - 16.0 * m3) * FIFTEENTH;
        out[1][l] = sum * THIRD - (8.0 * m3 + 2.0 * m4) * FIFTEENTH;
        out[2][l] = diff * THIRD + 4.0 * (m4 - m3) * FIFTEENTH + m5;
    }
    out
}

/// F(5x5, 3x3): points 0, -1, 1, 1/2, -1/2, -2, infinity.
pub(crate) struct F5;

tiling!(F5, 5, input_f5, weight_f5, output_f5, output_grad_f5, weight_grad_f5);

/// F(5)'s `Bᵀ d` on one column of 7 values per lane.
#[inline(always)]
fn input_f5<const L: usize>([d0, d1, d2, d3, d4, d5, d6]: [&Lanes<L>; 7]) -> [Lanes<L>; 7] {
    let mut out = [[0.0; L]; 7];
    for l in 0..L {
        let [d0, d1, d2, d3, d4, d5, d6] = [d0[l], d1[l], d2[l], d3[l], d4[l], d5[l], d6[l]];
        out[0][l] = d0 + 0.5 * d1 - 5.0 * d2 - 2.5 * d3 + 4.0 * d4 + 2.0 * d5;
        out[1][l] = 0.5 * d1 - 0.25 * d2 - 2.25 * d3 + d4 + d5;
        out[2][l] = -0.5 * d1 - 0.75 * d2 + 1.75 * d3 + 3.0 * d4 + d5;
        out[3][l] = 2.5 * (d4 - d2) - d1 + d5;
        out[4][l] = d1 - 1.5 * d2 - 2.0 * d3 + 1.5 * d4 + d5;
        out[5][l] = 0.25 * d1 - 1.25 * d3 + d5;
        out[6][l] = 0.5 * d1 + 0.25 * d2 - 2.5 * d3 - 1.25 * d4 + 2.0 * d5 + d6;
    }
    out
}

const NINTH: f32 = 1.0 / 9.0;
const FORTY_FIFTH: f32 = 1.0 / 45.0;

/// F(5)'s `G g` on one column of 3 values.
#[inline(always)]
fn weight_f5([g0, g1, g2]: [f32; 3]) -> [f32; 7] {
    let even = g0 + g2;
    [
        g0,
        (even - g1) * (2.0 * THIRD),
        (even + g1) * (2.0 * NINTH),
        (16.0 * g0 + 8.0 * g1 + 4.0 * g2) * -FIFTEENTH,
        (16.0 * g0 - 8.0 * g1 + 4.0 * g2) * -NINTH,
        (g0 - 2.0 * g1 + 4.0 * g2) * (-2.0 * FORTY_FIFTH),
        g2,
    ]
}

/// F(5)'s `Aᵀ m` on one column of 7 values per lane.
#[inline(always)]
fn output_f5<const L: usize>([m0, m1, m2, m3, m4, m5, m6]: [&Lanes<L>; 7]) -> [Lanes<L>; 5] {
    let mut out = [[0.0; L]; 5];
    for l in 0..L {
        let [m0, m1, m2, m3, m4, m5, m6] = [m0[l], m1[l], m2[l], m3[l], m4[l], m5[l], m6[l]];
        let (sum, diff) = (m1 + m2, m2 - m1);
        let (half_sum, half_diff) = (m3 + m4, m3 - m4);
        out[0][l] = m0 + sum + half_sum + m5;
        out[1][l] = diff + 0.5 * half_diff - 2.0 * m5;
        out[2][l] = sum + 0.25 * half_sum + 4.0 * m5;
        out[3][l] = diff + 0.125 * half_diff - 8.0 * m5;
        out[4][l] = sum + 0.0625 * half_sum + 16.0 * m5 + m6;
    }
    out
}

/// F(5)'s `A δ` (the transpose of `Aᵀ m`) on one column of 5 values per lane.
#[inline(always)]
fn output_grad_f5<const L: usize>([d0, d1, d2, d3, d4]: [&Lanes<L>; 5]) -> [Lanes<L>; 7] {
    let mut out = [[0.0; L]; 7];
    for l in 0..L {
        let [d0, d1, d2, d3, d4] = [d0[l], d1[l], d2[l], d3[l], d4[l]];
        let (even, odd) = (d0 + d2 + d4, d1 + d3);
        let (half_even, half_odd) = (d0 + 0.25 * d2 + 0.0625 * d4, 0.5 * d1 + 0.125 * d3);
        out[0][l] = d0;
        out[1][l] = even - odd;
        out[2][l] = even + odd;
        out[3][l] = half_even + half_odd;
        out[4][l] = half_even - half_odd;
        out[5][l] = d0 - 2.0 * d1 + 4.0 * d2 - 8.0 * d3 + 16.0 * d4;
        out[6][l] = d4;
    }
    out
}

/// F(5)'s `Gᵀ m` (the transpose of `G g`) on one column of 7 values per lane.
#[inline(always)]
fn weight_grad_f5<const L: usize>([m0, m1, m2, m3, m4, m5, m6]: [&Lanes<L>; 7]) -> [Lanes<L>; 3] {
    let mut out = [[0.0; L]; 3];
    for l in 0..L {
        let [m0, m1, m2, m3, m4, m5, m6] = [m0[l], m1[l], m2[l], m3[l], m4[l], m5[l], m6[l]];
        let (sum, diff) = (m1 + m2 * THIRD, m2 * THIRD - m1);
        out[0][l] = m0 + 2.0 * THIRD * sum - 16.0 * (m3 * FIFTEENTH + m4 * NINTH) - 2.0 * FORTY_FIFTH * m5;
        out[1][l] = 2.0 * THIRD * diff - 8.0 * (m3 * FIFTEENTH - m4 * NINTH) + 4.0 * FORTY_FIFTH * m5;
        out[2][l] = 2.0 * THIRD * sum - 4.0 * (m3 * FIFTEENTH + m4 * NINTH) - 8.0 * FORTY_FIFTH * m5 + m6;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three maps of `T` compose to a 3x3 cross-correlation: checked in
    /// f32 against the direct sum on small integers, where the direct sum is
    /// exact and the transforms err only by the rounding of their fractions.
    fn composes_to_a_correlation<T: Tiling>() {
        let (n, m) = (T::IN, T::OUT);
        let d: Vec<Lanes<1>> = (0..T::POINTS).map(|i| [((i * 7 + 3) % 11) as f32 - 5.0]).collect();
        let g: [Lanes<1>; 9] = std::array::from_fn(|i| [((i * 5 + 1) % 7) as f32 - 3.0]);
        let (mut u, mut v, mut y) = (vec![[0.0; 1]; T::POINTS], vec![[0.0; 1]; T::POINTS], vec![[0.0; 1]; m * m]);
        T::weight(&g, &mut u);
        T::input(&d, &mut v);
        let products: Vec<Lanes<1>> = u.iter().zip(&v).map(|(u, v)| [u[0] * v[0]]).collect();
        T::output(&products, &mut y);
        for oy in 0..m {
            for ox in 0..m {
                let direct: f32 = (0..9).map(|t| g[t][0] * d[(oy + t / 3) * n + ox + t % 3][0]).sum();
                assert!(
                    (y[oy * m + ox][0] - direct).abs() < 1e-3,
                    "F({m}) at ({oy},{ox}): {} vs {direct}",
                    y[oy * m + ox][0]
                );
            }
        }
    }

    #[test]
    fn every_tiling_composes_to_a_correlation() {
        composes_to_a_correlation::<F2>();
        composes_to_a_correlation::<F4>();
        composes_to_a_correlation::<F5>();
    }

    /// The transposed maps of `T` compose to the 3x3 correlation of a patch
    /// with a tile of the output's gradient (the filter's gradient): checked
    /// as above against the direct sum on small integers.
    fn composes_to_a_weight_gradient<T: Tiling>() {
        let (n, m) = (T::IN, T::OUT);
        let d: Vec<Lanes<1>> = (0..T::POINTS).map(|i| [((i * 7 + 3) % 11) as f32 - 5.0]).collect();
        let delta: Vec<Lanes<1>> = (0..m * m).map(|i| [((i * 5 + 1) % 7) as f32 - 3.0]).collect();
        let (mut u, mut v, mut g) = (vec![[0.0; 1]; T::POINTS], vec![[0.0; 1]; T::POINTS], [[0.0; 1]; 9]);
        T::output_grad(&delta, &mut u);
        T::input(&d, &mut v);
        let products: Vec<Lanes<1>> = u.iter().zip(&v).map(|(u, v)| [u[0] * v[0]]).collect();
        T::weight_grad(&products, &mut g);
        for (tap, got) in g.iter().enumerate() {
            let (ky, kx) = (tap / 3, tap % 3);
            let direct: f32 = (0..m * m).map(|p| delta[p][0] * d[(p / m + ky) * n + p % m + kx][0]).sum();
            assert!((got[0] - direct).abs() < 1e-3, "F({m}) tap ({ky},{kx}): {} vs {direct}", got[0]);
        }
    }

    #[test]
    fn every_tiling_composes_to_a_weight_gradient() {
        composes_to_a_weight_gradient::<F2>();
        composes_to_a_weight_gradient::<F4>();
        composes_to_a_weight_gradient::<F5>();
    }
}
