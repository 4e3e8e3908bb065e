//! Every distinct convolution of PSPNet-50 (semseg layout) at 473x473, run
//! by our implicit-GEMM `Conv2d` and by the im2col + `matrixmultiply` sgemm
//! baseline, on 1 and 2 threads; plus the FMA peak of this core and the
//! streaming-read bandwidth, the two ceilings the table is judged against;
//! the stem's 3x3 stride-2 max pooling; and the final upsampling of
//! PSPNet-50's 150 class maps from 60x60 to 473x473, to logits and fused
//! with the argmax to labels.
//!
//! Run: `cargo bench --bench conv`, then `cargo xtask kernel-report` for the
//! markdown table. Throughput is in FLOP (2 per multiply-add) for
//! convolutions, printed by criterion as elem/s (1 Gelem/s = 1 GFLOP/s), and
//! in bytes of weights for the PPM's matrix-vector convolutions.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pspnet::kernels::{
    Conv2d, ConvAlgorithm, ConvOptions, ConvSpec, Isa, PoolSpec, conv2d_weight_grad, max_pool2d, resize_bilinear,
    resize_bilinear_argmax,
};
use pspnet::tensor::{Shape, Tensor};
use rayon::prelude::*;

/// One convolution layer of PSPNet-50 at 473x473.
struct Layer {
    name: &'static str,
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    size: usize,
}

const fn layer(
    name: &'static str,
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    size: usize,
) -> Layer {
    Layer { name, cin, cout, kernel, stride, dilation, size }
}

/// The distinct shapes, in network order (`size` = input height = width).
const LAYERS: &[Layer] = &[
    layer("stem1_3x3s2_3-64", 3, 64, 3, 2, 1, 473),
    layer("stem2_3x3_64-64", 64, 64, 3, 1, 1, 237),
    layer("stem3_3x3_64-128", 64, 128, 3, 1, 1, 237),
    layer("s1_1x1_128-64", 128, 64, 1, 1, 1, 119),
    layer("s1_1x1_256-64", 256, 64, 1, 1, 1, 119),
    layer("s1_3x3_64-64", 64, 64, 3, 1, 1, 119),
    layer("s1_1x1_64-256", 64, 256, 1, 1, 1, 119),
    layer("s1_down_1x1_128-256", 128, 256, 1, 1, 1, 119),
    layer("s2_1x1_256-128", 256, 128, 1, 1, 1, 119),
    layer("s2_3x3s2_128-128", 128, 128, 3, 2, 1, 119),
    layer("s2_down_1x1s2_256-512", 256, 512, 1, 2, 1, 119),
    layer("s2_1x1_512-128", 512, 128, 1, 1, 1, 60),
    layer("s2_3x3_128-128", 128, 128, 3, 1, 1, 60),
    layer("s2_1x1_128-512", 128, 512, 1, 1, 1, 60),
    layer("s3_1x1_512-256", 512, 256, 1, 1, 1, 60),
    layer("s3_1x1_1024-256", 1024, 256, 1, 1, 1, 60),
    layer("s3_3x3d2_256-256", 256, 256, 3, 1, 2, 60),
    layer("s3_1x1_256-1024", 256, 1024, 1, 1, 1, 60),
    layer("s3_down_1x1_512-1024", 512, 1024, 1, 1, 1, 60),
    layer("s4_1x1_1024-512", 1024, 512, 1, 1, 1, 60),
    layer("s4_1x1_2048-512", 2048, 512, 1, 1, 1, 60),
    layer("s4_3x3d4_512-512", 512, 512, 3, 1, 4, 60),
    layer("s4_1x1_512-2048", 512, 2048, 1, 1, 1, 60),
    layer("s4_down_1x1_1024-2048", 1024, 2048, 1, 1, 1, 60),
    layer("ppm_1x1_2048-512_bin1", 2048, 512, 1, 1, 1, 1),
    layer("ppm_1x1_2048-512_bin2", 2048, 512, 1, 1, 1, 2),
    layer("ppm_1x1_2048-512_bin3", 2048, 512, 1, 1, 1, 3),
    layer("ppm_1x1_2048-512_bin6", 2048, 512, 1, 1, 1, 6),
    layer("head_3x3_4096-512", 4096, 512, 3, 1, 1, 60),
    layer("cls_1x1_512-150", 512, 150, 1, 1, 1, 60),
];

impl Layer {
    fn spec(&self) -> ConvSpec {
        ConvSpec::default().stride(self.stride).dilation(self.dilation).padding(self.dilation * (self.kernel / 2))
    }

    fn out_size(&self) -> usize {
        (self.size + 2 * self.spec().padding[0] - self.dilation * (self.kernel - 1) - 1) / self.stride + 1
    }

    fn flops(&self) -> u64 {
        2 * (self.cout * self.cin * self.kernel * self.kernel * self.out_size() * self.out_size()) as u64
    }

    fn is_ppm(&self) -> bool {
        self.name.starts_with("ppm")
    }
}

fn filled(dims: [usize; 4], seed: u32) -> Tensor {
    let shape = Shape::new(dims[0], dims[1], dims[2], dims[3]).expect("valid bench shape");
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    Tensor::from_fn(shape, |_, _, _, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    })
}

/// The baseline: a full im2col matrix, then one `matrixmultiply::sgemm` per
/// thread on its share of the output pixels.
struct Im2colGemm<'a> {
    layer: &'a Layer,
    weight: &'a Tensor,
    columns: Vec<f32>,
}

impl<'a> Im2colGemm<'a> {
    fn new(layer: &'a Layer, weight: &'a Tensor) -> Self {
        let (k, n) = (layer.cin * layer.kernel * layer.kernel, layer.out_size() * layer.out_size());
        Im2colGemm { layer, weight, columns: vec![0.0; k * n] }
    }

    fn run(&mut self, input: &Tensor, out: &mut [f32], threads: usize) {
        let l = self.layer;
        let (os, kk) = (l.out_size(), l.kernel);
        let (k, n) = (l.cin * kk * kk, os * os);
        let pad = l.spec().padding[0] as isize;
        let x = input.as_slice();
        self.columns.par_chunks_mut(n).enumerate().for_each(|(row, col)| {
            let (ci, ky, kx) = (row / (kk * kk), row / kk % kk, row % kk);
            for (p, v) in col.iter_mut().enumerate() {
                let iy = ((p / os) * l.stride + ky * l.dilation) as isize - pad;
                let ix = ((p % os) * l.stride + kx * l.dilation) as isize - pad;
                let inside = iy >= 0 && ix >= 0 && (iy as usize) < l.size && (ix as usize) < l.size;
                *v = if inside { x[(ci * l.size + iy as usize) * l.size + ix as usize] } else { 0.0 };
            }
        });
        let chunk = n.div_ceil(threads);
        let (a, b) = (self.weight.as_slice(), &self.columns);
        let out_ptr = OutPtr(out.as_mut_ptr());
        (0..threads).into_par_iter().for_each(|t| {
            let start = (t * chunk).min(n);
            let cols = chunk.min(n - start);
            if cols == 0 {
                return;
            }
            let out = &out_ptr;
            // SAFETY: each thread writes its own column range of the
            // cout x n output (row stride n); all pointers stay in bounds.
            unsafe {
                matrixmultiply::sgemm(
                    l.cout,
                    k,
                    cols,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr().add(start),
                    n as isize,
                    1,
                    0.0,
                    out.0.add(start),
                    n as isize,
                    1,
                );
            }
        });
    }
}

struct OutPtr(*mut f32);
// SAFETY: threads write disjoint column ranges (see `Im2colGemm::run`).
unsafe impl Sync for OutPtr {}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool")
}

fn convolutions(c: &mut Criterion) {
    // As the binary does, PSPNET_ISA and PSPNET_CONV choose the kernels.
    let (isa, algorithm) = (std::env::var("PSPNET_ISA").ok(), std::env::var("PSPNET_CONV").ok());
    let options = ConvOptions::from_names(isa.as_deref(), algorithm.as_deref()).expect("PSPNET_ISA / PSPNET_CONV");
    for l in LAYERS {
        let mut group = c.benchmark_group(format!("conv/{}", l.name));
        group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        let weight = filled([l.cout, l.cin, l.kernel, l.kernel], 1);
        let input = filled([1, l.cin, l.size, l.size], 2);
        group.throughput(if l.is_ppm() {
            Throughput::Bytes((weight.shape().len() * 4) as u64)
        } else {
            Throughput::Elements(l.flops())
        });
        let conv = Conv2d::with_options(weight.clone(), l.spec(), options).expect("valid layer");
        let mut out = Tensor::zeros(conv.output_shape(input.shape()).expect("valid input"));
        let mut baseline = Im2colGemm::new(l, &weight);
        for threads in [1, 2] {
            let pool = pool(threads);
            group.bench_function(BenchmarkId::new(format!("ours-{}", options.isa), format!("{threads}t")), |b| {
                b.iter(|| pool.install(|| conv.forward_into(black_box(&input), None, &mut out).expect("forward")))
            });
            let slice = out.as_mut_slice();
            group.bench_function(BenchmarkId::new("im2col-matrixmultiply", format!("{threads}t")), |b| {
                b.iter(|| pool.install(|| baseline.run(black_box(&input), slice, threads)))
            });
        }
        group.finish();
    }
}

/// The weight gradients of the 3x3 stride-1 layers of a PSPNet-R18 training
/// step (the CamVid recipe: batch 8, 360x360 crops), as a direct GEMM and
/// in the Winograd domain, on 2 threads. Throughput counts the direct sum's
/// FLOP for both, so the ratio is the speed-up.
fn weight_grads(c: &mut Criterion) {
    // (name, in, out, dilation, input side)
    let layers = [
        ("stem2_32-32", 32, 32, 1, 180),
        ("stem3_32-64", 32, 64, 1, 180),
        ("layer1_64-64", 64, 64, 1, 90),
        ("layer2_128-128", 128, 128, 1, 45),
        ("layer3_256-256_d2", 256, 256, 2, 45),
        ("layer4_512-512_d4", 512, 512, 4, 45),
        ("head_1024-128", 1024, 128, 1, 45),
    ];
    let pool = pool(2);
    for (name, cin, cout, dilation, size) in layers {
        let mut group = c.benchmark_group(format!("weight_grad/{name}"));
        group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
        group.throughput(Throughput::Elements((2 * 8 * cout * cin * 9 * size * size) as u64));
        let input = filled([8, cin, size, size], 1);
        let grad_output = filled([8, cout, size, size], 2);
        let spec = ConvSpec::default().padding(dilation).dilation(dilation);
        for algorithm in [ConvAlgorithm::Direct, ConvAlgorithm::Auto] {
            let options = ConvOptions { algorithm, ..ConvOptions::default() };
            group.bench_function(format!("{algorithm:?}"), |b| {
                b.iter(|| {
                    pool.install(|| conv2d_weight_grad(black_box(&input), &grad_output, spec, [3, 3], options))
                        .expect("weight gradient")
                })
            });
        }
        group.finish();
    }
}

/// Arithmetic-only loops in assembly (so no compiler spill can hide the
/// peak): 16 independent register accumulators, no memory traffic. Their
/// throughput is this core's FMA peak (each FMA counts 2 FLOP per lane) and
/// bf16 dot-product peak (`vdpbf16ps`: 4 FLOP per lane).
#[cfg(target_arch = "x86_64")]
mod peak {
    use std::arch::asm;

    pub(crate) const ITERS: u64 = 1 << 20;
    pub(crate) const FLOPS_AVX512: u64 = ITERS * 16 * 16 * 2;
    pub(crate) const FLOPS_AVX2: u64 = ITERS * 12 * 8 * 2;

    /// Defines `$name`, a loop of 16 independent `$op zmmI, zmm30, zmm31`
    /// per iteration.
    macro_rules! zmm_peak_loop {
        ($(#[$doc:meta])* $name:ident, $op:literal) => {
            $(#[$doc])*
            pub(crate) unsafe fn $name() {
                // SAFETY: register-only arithmetic on clobbered zmm registers
                // (caller: the CPU has the instruction).
                unsafe {
                    asm!(
                        "vxorps xmm30, xmm30, xmm30",
                        "vxorps xmm31, xmm31, xmm31",
                        "2:",
                        concat!($op, " zmm0, zmm30, zmm31"), concat!($op, " zmm1, zmm30, zmm31"),
                        concat!($op, " zmm2, zmm30, zmm31"), concat!($op, " zmm3, zmm30, zmm31"),
                        concat!($op, " zmm4, zmm30, zmm31"), concat!($op, " zmm5, zmm30, zmm31"),
                        concat!($op, " zmm6, zmm30, zmm31"), concat!($op, " zmm7, zmm30, zmm31"),
                        concat!($op, " zmm8, zmm30, zmm31"), concat!($op, " zmm9, zmm30, zmm31"),
                        concat!($op, " zmm10, zmm30, zmm31"), concat!($op, " zmm11, zmm30, zmm31"),
                        concat!($op, " zmm12, zmm30, zmm31"), concat!($op, " zmm13, zmm30, zmm31"),
                        concat!($op, " zmm14, zmm30, zmm31"), concat!($op, " zmm15, zmm30, zmm31"),
                        "dec {n}",
                        "jnz 2b",
                        n = inout(reg) ITERS => _,
                        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
                        out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                        out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm30") _, out("zmm31") _,
                        options(nomem, nostack),
                    );
                }
            }
        };
    }

    zmm_peak_loop!(
        /// # Safety
        /// The CPU must support AVX-512F.
        avx512, "vfmadd231ps"
    );

    /// The bf16 dot-product peak: `vdpbf16ps` does two multiply-adds per f32
    /// lane (4 FLOP).
    pub(crate) const FLOPS_BF16: u64 = ITERS * 16 * 16 * 4;

    zmm_peak_loop!(
        /// # Safety
        /// The CPU must support AVX512-BF16.
        avx512_bf16, "vdpbf16ps"
    );

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    pub(crate) unsafe fn avx2() {
        // SAFETY: register-only FMAs on clobbered ymm registers (caller: AVX2+FMA).
        unsafe {
            asm!(
                "vxorps xmm14, xmm14, xmm14",
                "vxorps xmm15, xmm15, xmm15",
                "2:",
                "vfmadd231ps ymm0, ymm14, ymm15", "vfmadd231ps ymm1, ymm14, ymm15",
                "vfmadd231ps ymm2, ymm14, ymm15", "vfmadd231ps ymm3, ymm14, ymm15",
                "vfmadd231ps ymm4, ymm14, ymm15", "vfmadd231ps ymm5, ymm14, ymm15",
                "vfmadd231ps ymm6, ymm14, ymm15", "vfmadd231ps ymm7, ymm14, ymm15",
                "vfmadd231ps ymm8, ymm14, ymm15", "vfmadd231ps ymm9, ymm14, ymm15",
                "vfmadd231ps ymm10, ymm14, ymm15", "vfmadd231ps ymm11, ymm14, ymm15",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) ITERS => _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _,
                out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                out("ymm14") _, out("ymm15") _,
                options(nomem, nostack),
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn fma_peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("peak");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    for threads in [1, 2] {
        let pool = pool(threads);
        let run = |f: unsafe fn()| {
            // SAFETY: only called for instruction sets the CPU has (checked below).
            pool.install(|| (0..threads).into_par_iter().for_each(|_| unsafe { f() }))
        };
        if Isa::Avx512.is_available() {
            group.throughput(Throughput::Elements(peak::FLOPS_AVX512 * threads as u64));
            group.bench_function(BenchmarkId::new("fma-avx512", format!("{threads}t")), |b| {
                b.iter(|| run(peak::avx512))
            });
        }
        if is_x86_feature_detected!("avx512bf16") {
            group.throughput(Throughput::Elements(peak::FLOPS_BF16 * threads as u64));
            group.bench_function(BenchmarkId::new("dpbf16-avx512", format!("{threads}t")), |b| {
                b.iter(|| run(peak::avx512_bf16))
            });
        }
        if Isa::Avx2.is_available() {
            group.throughput(Throughput::Elements(peak::FLOPS_AVX2 * threads as u64));
            group.bench_function(BenchmarkId::new("fma-avx2", format!("{threads}t")), |b| b.iter(|| run(peak::avx2)));
        }
    }
    group.finish();
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_peak(_: &mut Criterion) {}

/// Streaming read bandwidth: summing a 256 MiB buffer (far beyond any cache).
fn read_bandwidth(c: &mut Criterion) {
    let data = vec![1.0f32; 64 << 20];
    let mut group = c.benchmark_group("peak");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes((data.len() * 4) as u64));
    for threads in [1, 2] {
        let pool = pool(threads);
        group.bench_function(BenchmarkId::new("stream-read", format!("{threads}t")), |b| {
            b.iter(|| {
                pool.install(|| {
                    data.par_chunks(data.len() / threads)
                        .map(|chunk| {
                            chunk
                                .chunks_exact(64)
                                .fold([0.0f32; 64], |mut acc, c| {
                                    acc.iter_mut().zip(c).for_each(|(a, v)| *a += v);
                                    acc
                                })
                                .iter()
                                .sum::<f32>()
                        })
                        .sum::<f32>()
                })
            })
        });
    }
    group.finish();
}

/// The stem's max pooling: 128 maps of 237x237, 3x3 windows, stride 2.
fn stem_pool(c: &mut Criterion) {
    let stem = filled([1, 128, 237, 237], 5);
    let spec = PoolSpec::square(3, 2, 1);
    let mut group = c.benchmark_group("pool");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    for threads in [1, 2] {
        let pool = pool(threads);
        group.bench_function(BenchmarkId::new("stem-max-3x3s2", format!("{threads}t")), |b| {
            b.iter(|| pool.install(|| black_box(max_pool2d(&stem, &spec).expect("valid pooling"))))
        });
    }
    group.finish();
}

/// The head's last step: 150 class maps at 60x60 to 473x473, as logits
/// (`forward`) and straight to labels (`labels`).
fn upsample(c: &mut Criterion) {
    let low = filled([1, 150, 60, 60], 7);
    let mut group = c.benchmark_group("upsample");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    for threads in [1, 2] {
        let pool = pool(threads);
        group.bench_function(BenchmarkId::new("logits", format!("{threads}t")), |b| {
            b.iter(|| pool.install(|| black_box(resize_bilinear(&low, [473, 473], false).expect("valid size"))))
        });
        group.bench_function(BenchmarkId::new("labels", format!("{threads}t")), |b| {
            b.iter(|| pool.install(|| black_box(resize_bilinear_argmax(&low, [473, 473], false).expect("valid size"))))
        });
    }
    group.finish();
}

criterion_group!(benches, fma_peak, read_bandwidth, convolutions, weight_grads, stem_pool, upsample);
criterion_main!(benches);
