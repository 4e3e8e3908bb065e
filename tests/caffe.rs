//! The authors' Caffe release through the binary: synthetic caffemodels with
//! the real layer names and types (written by xtask/python/caffe_reference.py,
//! which also evaluates the Caffe graph in float64 with numpy), loaded three
//! ways (a Caffe-saved deploy file; a release-style file alone; a release
//! file with its deploy prototxt), against that evaluation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{Array3, ArrayD};
use ndarray_npy::ReadNpyExt;
use pspnet::model::Comparison;
use pspnet::tensor::{Shape, Tensor};

const ARCHITECTURES: [&str; 3] = ["pspnet50_ade20k", "pspnet101_voc2012", "pspnet101_cityscapes"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/caffe").join(name)
}

fn pspnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pspnet")).args(args).output().expect("the pspnet binary runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pspnet-caffe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The three ways of giving a model: the file and an optional prototxt.
fn inputs(arch: &str) -> [(&'static str, PathBuf, Option<PathBuf>); 3] {
    let prototxt = fixture(&format!("{arch}.prototxt"));
    [
        ("deploy", fixture(&format!("{arch}_deploy.caffemodel")), None),
        ("release", fixture(&format!("{arch}_release.caffemodel")), None),
        ("release + prototxt", fixture(&format!("{arch}_release.caffemodel")), Some(prototxt)),
    ]
}

/// `pspnet segment --mode whole --logits` on the fixture's image.
fn logits(model: &Path, prototxt: Option<&Path>, size: &str, dir: &Path) -> Result<Tensor, String> {
    let (image, npy) = (fixture(&format!("input_{size}.png")), dir.join("logits.npy"));
    let _ = std::fs::remove_file(&npy);
    let mut args = vec!["segment", image.to_str().unwrap(), "--model", model.to_str().unwrap()];
    if let Some(p) = prototxt {
        args.extend(["--prototxt", p.to_str().unwrap()]);
    }
    args.extend(["--mode", "whole", "--logits", npy.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let run = pspnet(&args);
    if !run.status.success() {
        return Err(text(&run));
    }
    let array = Array3::<f32>::read_npy(std::fs::File::open(&npy).unwrap()).unwrap();
    let &[c, h, w] = array.shape() else { unreachable!() };
    Ok(Tensor::from_vec(Shape::new(1, c, h, w).unwrap(), array.into_raw_vec_and_offset().0).unwrap())
}

fn expected(arch: &str, size: &str) -> Vec<f32> {
    let array = ArrayD::<f32>::read_npy(std::fs::File::open(fixture(&format!("{arch}_{size}.npy"))).unwrap()).unwrap();
    array.into_raw_vec_and_offset().0
}

/// Within 1e-5 relative L2 of the float64 Caffe graph at the fixtures'
/// deploy size (89x89: fixed-kernel pyramid pools, zoom-8 Interp), and of
/// the same graph with adaptive pools and bilinear resizes at 75x61 (where
/// the stem's max pool rounds up, as Caffe's does); the three inputs give
/// identical logits.
#[test]
fn three_architectures_three_inputs_match_the_caffe_graph() {
    let dir = scratch("logits");
    for arch in ARCHITECTURES {
        for size in ["89x89", "75x61"] {
            let want = expected(arch, size);
            let mut first: Option<Tensor> = None;
            for (how, model, prototxt) in inputs(arch) {
                let got =
                    logits(&model, prototxt.as_deref(), size, &dir).unwrap_or_else(|e| panic!("{arch} {how}: {e}"));
                let c = Comparison::of(&got, &want).unwrap();
                assert!(c.rel_l2 <= 1e-5 && c.argmax_agreement == 1.0, "{arch} {how} {size}: {c:?}");
                match &first {
                    Some(f) => assert_eq!(f.as_slice(), got.as_slice(), "{arch} {how} {size}: differs from deploy"),
                    None => first = Some(got),
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A caffemodel converted to safetensors runs identically, and `info`
/// reports what the file says: the stride placement, the Caffe pool.
#[test]
fn convert_keeps_the_logits_and_info_reads_the_architecture() {
    let dir = scratch("convert");
    for arch in ARCHITECTURES {
        let (model, prototxt) = (fixture(&format!("{arch}_release.caffemodel")), fixture(&format!("{arch}.prototxt")));
        let converted = dir.join(format!("{arch}.safetensors"));
        let run = pspnet(&[
            "convert",
            model.to_str().unwrap(),
            converted.to_str().unwrap(),
            "--prototxt",
            prototxt.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{}", text(&run));
        for size in ["89x89", "75x61"] {
            let caffe = logits(&model, Some(&prototxt), size, &dir).unwrap();
            let native = logits(&converted, None, size, &dir).unwrap();
            assert_eq!(caffe.as_slice(), native.as_slice(), "{arch} {size}");
        }
        let info = pspnet(&["info", model.to_str().unwrap()]);
        let report = text(&info);
        assert!(info.status.success(), "{report}");
        let stride = if arch.starts_with("pspnet50") { "striding on the 1x1 reduce" } else { "striding on the 3x3" };
        for needle in
            ["caffe layout", stride, "ceil-mode max pool", "mean [123.68, 116.779, 103.939], std [1.0, 1.0, 1.0]"]
        {
            assert!(report.contains(needle), "{arch}: no {needle:?} in\n{report}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bad input: a corrupt file, a prototxt of another network, a prototxt
/// with a .pth, a dilation the network does not compute; each named, no
/// output written.
#[test]
fn bad_caffe_input_is_refused_by_name_and_writes_nothing() {
    let dir = scratch("bad");
    let good = std::fs::read(fixture("pspnet101_voc2012_deploy.caffemodel")).unwrap();
    let truncated = dir.join("truncated.caffemodel");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let wrong_dilation = dir.join("dilated.prototxt");
    let prototxt = std::fs::read_to_string(fixture("pspnet101_voc2012.prototxt")).unwrap();
    std::fs::write(&wrong_dilation, prototxt.replacen("dilation: 2", "dilation: 3", 1)).unwrap();
    let release = fixture("pspnet101_voc2012_release.caffemodel");
    let other = fixture("pspnet50_ade20k.prototxt");
    let pth = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/pspnet-model/tests/fixtures/mmseg_r18/checkpoint.pth");
    let cases: [(&Path, Option<&Path>, &[&str]); 4] = [
        (&truncated, None, &["truncated.caffemodel", "byte", "runs past the end"]),
        (&release, Some(&other), &["conv4_7_1x1_reduce", "unexpected"]),
        (&release, Some(&wrong_dilation), &["conv4_1_3x3", "dilation 3"]),
        (&pth, Some(&other), &["--prototxt", "not one"]),
    ];
    for (model, prototxt, needles) in cases {
        let err = logits(model, prototxt, "75x61", &dir).expect_err("refused");
        for needle in needles {
            assert!(err.contains(needle), "{}: no {needle:?} in {err}", model.display());
        }
        assert!(!dir.join("logits.npy").exists(), "{}: wrote output", model.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The MATLAB protocol's single-window branch on an image the size of the
/// crop (`--base-size 88`: long side 88 + 1 = 89, nothing resized or
/// padded), without the flip: the softmax of the Caffe graph's logits.
#[test]
fn matlab_preset_single_window_is_the_softmax_of_the_caffe_logits() {
    let dir = scratch("matlab");
    let (image, npy) = (fixture("input_89x89.png"), dir.join("probs.npy"));
    let model = fixture("pspnet101_voc2012_deploy.caffemodel");
    let run = pspnet(&[
        "segment",
        image.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--preset",
        "caffe-voc2012",
        "--crop",
        "89",
        "--base-size",
        "88",
        "--flip",
        "false",
        "--logits",
        npy.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let got = Array3::<f32>::read_npy(std::fs::File::open(&npy).unwrap()).unwrap().into_raw_vec_and_offset().0;
    let logits = expected("pspnet101_voc2012", "89x89");
    let plane = 89 * 89;
    let want: Vec<f32> = (0..5 * plane)
        .map(|i| {
            let p = i % plane;
            let exp = |c: usize| f64::from(logits[c * plane + p]).exp();
            (exp(i / plane) / (0..5).map(exp).sum::<f64>()) as f32
        })
        .collect();
    let error = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(error < 1e-5, "max error {error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
