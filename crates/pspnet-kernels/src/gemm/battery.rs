//! The same tests for every micro-kernel, one macro line per kernel: each
//! runs where the CPU has the kernel's instruction set and says it skipped
//! where it does not.

use super::{ConvJob, Epilogue, MicroKernel, Operands, PackedPairs, PackedWeights, bf16, convolve};
use crate::geometry::ConvGeometry;

/// A pseudo-random value in [-1, 1) for element `i` of stream `seed`.
fn noise(seed: usize, i: usize) -> f32 {
    let x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (seed as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    ((x >> 40) % 2001) as f32 / 1000.0 - 1.0
}

/// Whether the CPU runs `K`; if not, says the test skipped.
fn runs<K: MicroKernel>(test: &str) -> bool {
    let available = K::ISA.is_available();
    if !available {
        eprintln!("{test}: skipped, this CPU lacks {}", K::ISA);
    }
    available
}

/// `C = (accumulate ? C : 0) + A·B` in f64 for packed panels of `kc` steps.
fn reference<K: MicroKernel>(kc: usize, a: &[f32], b: &[f32], c: &[f32], accumulate: bool) -> Vec<f64> {
    let mut want: Vec<f64> = c.iter().map(|&v| if accumulate { v as f64 } else { 0.0 }).collect();
    for p in 0..kc {
        for i in 0..K::MR {
            for j in 0..K::NR {
                want[i * K::NR + j] += a[p * K::MR + i] as f64 * b[p * K::NR + j] as f64;
            }
        }
    }
    want
}

/// An identity `A` panel passes `B`'s rows through exactly.
pub(super) fn identity<K: MicroKernel>() {
    if !runs::<K>("identity") {
        return;
    }
    let kc = K::MR;
    let a: Vec<f32> = (0..kc * K::MR).map(|i| if i / K::MR == i % K::MR { 1.0 } else { 0.0 }).collect();
    let b: Vec<f32> = (0..kc * K::NR).map(|i| noise(1, i)).collect();
    let mut c = vec![f32::NAN; K::MR * K::NR];
    // SAFETY: the panels hold kc steps, C is MR x NR, and the ISA was checked.
    unsafe { K::tile(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), K::NR, false, K::NR) };
    assert_eq!(c, b[..K::MR * K::NR], "{}", K::ISA);
}

/// Odd depths and partial panels, set and accumulated: the used columns
/// hold the f64 sum, and accumulating leaves the padding columns as they were.
pub(super) fn ragged<K: MicroKernel>() {
    if !runs::<K>("ragged") {
        return;
    }
    for (kc, cols) in [(1, K::NR), (7, 1), (13, K::NR / 2 + 1), (384, K::NR - 1)] {
        let a: Vec<f32> = (0..kc * K::MR).map(|i| noise(2, i)).collect();
        let b: Vec<f32> = (0..kc * K::NR).map(|i| if i % K::NR < cols { noise(3, i) } else { 0.0 }).collect();
        for accumulate in [false, true] {
            let mut c: Vec<f32> = (0..K::MR * K::NR).map(|i| noise(4, i)).collect();
            let before = c.clone();
            let want = reference::<K>(kc, &a, &b, &c, accumulate);
            // SAFETY: as in `identity`.
            unsafe { K::tile(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), K::NR, accumulate, cols) };
            for (i, (&got, &want)) in c.iter().zip(&want).enumerate() {
                let what = format!("{}: kc {kc}, cols {cols}, accumulate {accumulate}, C[{i}]", K::ISA);
                if i % K::NR < cols {
                    assert!(
                        (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()) * kc as f64,
                        "{what}: {got} vs {want}"
                    );
                } else if accumulate {
                    assert_eq!(got, before[i], "{what}: padding column changed");
                }
            }
        }
    }
}

/// The driver with its epilogue (scale, shift, residual, ReLU) on a 1x1
/// convolution whose output is not a whole number of tiles.
pub(super) fn epilogue<K: MicroKernel>() {
    if !runs::<K>("epilogue") {
        return;
    }
    let (m, cin, h, w) = (K::MR + 3, 5, 3, K::NR / 2 + 5);
    let weights: Vec<f32> = (0..m * cin).map(|i| noise(5, i)).collect();
    let input: Vec<f32> = (0..cin * h * w).map(|i| noise(6, i)).collect();
    let residual: Vec<f32> = (0..m * h * w).map(|i| noise(7, i)).collect();
    let scale: Vec<f32> = (0..m).map(|i| 1.0 + noise(8, i)).collect();
    let shift: Vec<f32> = (0..m).map(|i| noise(9, i)).collect();
    let geometry =
        ConvGeometry { cin, h, w, kh: 1, kw: 1, stride: [1, 1], padding: [0, 0], dilation: [1, 1], oh: h, ow: w };
    let packed = PackedWeights::new(weights.clone(), m, cin, K::MR);
    let epilogue = Epilogue { scale: Some(&scale), shift: Some(&shift), residual: Some(&residual), relu: true };
    let job = ConvJob { weights: &packed, geometry: &geometry, input: &input, epilogue };
    let mut out = vec![f32::NAN; m * h * w];
    convolve::<K>(&job, Operands::F32, &mut out);
    for (i, &got) in out.iter().enumerate() {
        let (o, pixel) = (i / (h * w), i % (h * w));
        let sum: f64 = (0..cin).map(|c| weights[o * cin + c] as f64 * input[c * h * w + pixel] as f64).sum();
        let want = (sum * scale[o] as f64 + shift[o] as f64 + residual[i] as f64).max(0.0);
        assert!((got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{}: out[{i}] {got} vs {want}", K::ISA);
    }
}

/// bf16 operands in pairs against the f64 products of the same rounded
/// values, for an odd depth (the last pair half zero).
pub(super) fn bf16_pairs<K: MicroKernel>() {
    if !runs::<K>("bf16_pairs") {
        return;
    }
    let kc = 9;
    let a: Vec<f32> = (0..kc * K::MR).map(|i| noise(10, i)).collect();
    let b: Vec<f32> = (0..kc * K::NR).map(|i| noise(11, i)).collect();
    let rounded = |v: &[f32]| v.iter().map(|&x| bf16::widen(bf16::round(x))).collect::<Vec<f32>>();
    let want = reference::<K>(kc, &rounded(&a), &rounded(&b), &[0.0; 512][..K::MR * K::NR], false);
    // The weight matrix (MR rows of kc) whose packed panel is `a`.
    let rows: Vec<f32> = (0..K::MR * kc).map(|i| a[(i % kc) * K::MR + i / kc]).collect();
    let pairs = PackedPairs::new(K::ISA, &PackedWeights::new(rows, K::MR, kc, K::MR));
    let mut b_pairs = vec![0u32; kc.div_ceil(2) * K::NR];
    bf16::pair_rows(K::ISA, &b, K::NR, &mut b_pairs);
    let mut c = vec![f32::NAN; K::MR * K::NR];
    let a_pairs = pairs.panel(0, 0, kc.div_ceil(2));
    // SAFETY: the paired panels hold kc.div_ceil(2) steps; C is MR x NR.
    unsafe { K::tile_bf16(kc.div_ceil(2), a_pairs.as_ptr(), b_pairs.as_ptr(), c.as_mut_ptr(), K::NR, false, K::NR) };
    for (i, (&got, &want)) in c.iter().zip(&want).enumerate() {
        assert!((got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{}: C[{i}] {got} vs {want}", K::ISA);
    }
}

/// Expands the battery for one micro-kernel: a test per check.
macro_rules! battery {
    ($name:ident, $kernel:ty) => {
        battery!($name, $kernel: identity, ragged, epilogue, bf16_pairs);
    };
    ($name:ident, $kernel:ty: $($check:ident),*) => {
        mod $name {
            $(
                #[test]
                fn $check() {
                    super::$check::<$kernel>()
                }
            )*
        }
    };
}

battery!(portable, crate::gemm::portable::Portable);
#[cfg(target_arch = "x86_64")]
battery!(avx2, crate::gemm::x86::Avx2);
#[cfg(target_arch = "x86_64")]
battery!(avx512, crate::gemm::x86::Avx512);
