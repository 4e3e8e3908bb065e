//! The inference protocols against transcriptions of the reference
//! implementations (semseg `tool/test.py`, mmsegmentation `slide_inference`)
//! run in PyTorch float64 by `xtask/python/protocol_reference.py`.

use std::path::{Path, PathBuf};

use pspnet_kernels::softmax_channels;
use pspnet_model::{Average, Comparison, ConvOptions, Normalization, Overrides, Protocol, Segmenter, Window, predict};
use pspnet_tensor::Tensor;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The reference's image (interleaved RGB bytes, height, width), scores
/// `(classes, H, W)` and argmax labels.
struct Reference {
    rgb: Vec<u8>,
    height: usize,
    width: usize,
    scores: Vec<f32>,
    labels: Vec<f32>,
}

fn reference(name: &str) -> Reference {
    let (tensors, _) = pspnet_weights::load_safetensors(&fixture("protocol").join(name)).unwrap();
    let (dims, image) = tensors.f32("image").unwrap();
    let (_, scores) = tensors.f32("scores").unwrap();
    let (_, labels) = tensors.f32("labels").unwrap();
    Reference { rgb: image.iter().map(|&v| v as u8).collect(), height: dims[0], width: dims[1], scores, labels }
}

fn model(name: &str) -> Segmenter {
    Segmenter::load(&fixture(name).join("checkpoint.pth"), &Overrides::default(), ConvOptions::default()).unwrap()
}

fn norm(model: &Segmenter) -> Normalization {
    model.normalization()
}

/// Checks `got` (1 x C x H x W) against a reference: argmax agreement with
/// its labels >= 99.9 % and scores within `1e-4`.
fn check(got: &Tensor, want: &Reference, what: &str) {
    let c = Comparison::of(got, &want.scores).unwrap();
    let labels = pspnet_kernels::argmax_channels(got);
    let agree = labels.iter().zip(&want.labels).filter(|&(&a, &b)| a as f32 == b).count();
    let agreement = agree as f64 / want.labels.len() as f64;
    eprintln!("{what}: label agreement {agreement}, {c:?}");
    assert_eq!(got.shape().dims(), [1, got.shape().c(), want.height, want.width], "{what}");
    assert!(agreement >= 0.999, "{what}: label agreement {agreement}, {c:?}");
    assert!(c.max_abs < 1e-4, "{what}: {c:?}");
}

/// semseg `test.py` with base size 64, crop 33, scales 0.5 / 1.0 / 1.5 and
/// flip on a 37x53 image: scaled to 22x32 (padded to 33x33, one window),
/// 45x64 (2 x 3 windows) and 67x96 (3 x 4 windows). The largest difference
/// (about 6.6e-5) is cv2.resize's own float arithmetic: the same script with
/// `F.interpolate` in place of cv2.resize moves by that much.
#[test]
fn semseg_multi_scale_sliding_flip_matches_test_py() {
    let want = reference("semseg_r50_37x53.safetensors");
    let model = model("semseg_r50");
    let got = predict(&model.net, &want.rgb, want.height, want.width, &norm(&model), &semseg_protocol()).unwrap();
    check(&got, &want, "semseg");
    // Averaged probabilities still sum to one per pixel.
    let plane = want.height * want.width;
    for p in 0..plane {
        let sum: f32 = (0..got.shape().c()).map(|c| got.as_slice()[c * plane + p]).sum();
        assert!((sum - 1.0).abs() < 1e-5, "pixel {p}: {sum}");
    }
}

/// mmsegmentation `slide_inference`: crop 41, stride 17, no padding, logits
/// averaged; on a 37x53 image one row of two windows, each only 37 high.
#[test]
fn mmseg_slide_matches_slide_inference() {
    let want = reference("mmseg_r18_37x53.safetensors");
    let model = model("mmseg_r18");
    let protocol = Protocol { window: Window::Slide { crop: 41, stride: Some(17) }, ..Protocol::whole() };
    let got = predict(&model.net, &want.rgb, want.height, want.width, &norm(&model), &protocol).unwrap();
    check(&got, &want, "mmseg");
}

fn semseg_protocol() -> Protocol {
    Protocol {
        window: Window::Slide { crop: 33, stride: None },
        scales: vec![0.5, 1.0, 1.5],
        flip: true,
        base_size: Some(64),
        average: Average::Probs,
        pad_to_crop: true,
        matlab: false,
    }
}

/// The oracles are sharp: each protocol detail changed on its own moves the
/// scores well past the tolerance.
#[test]
fn protocol_details_change_the_result() {
    let mmseg = Protocol { window: Window::Slide { crop: 41, stride: Some(17) }, ..Protocol::whole() };
    let semseg = semseg_protocol();
    let cases = [
        ("mmseg_r18", Protocol { pad_to_crop: true, ..mmseg.clone() }),
        ("mmseg_r18", Protocol { window: Window::Slide { crop: 41, stride: Some(6) }, ..mmseg.clone() }),
        ("mmseg_r18", Protocol { flip: true, ..mmseg.clone() }),
        ("semseg_r50", Protocol { pad_to_crop: false, ..semseg.clone() }),
        ("semseg_r50", Protocol { flip: false, ..semseg.clone() }),
        ("semseg_r50", Protocol { window: Window::Slide { crop: 33, stride: Some(21) }, ..semseg.clone() }),
        ("semseg_r50", Protocol { scales: vec![0.5, 1.0], ..semseg.clone() }),
        ("semseg_r50", Protocol { base_size: Some(65), ..semseg.clone() }),
    ];
    for (name, p) in cases {
        let want = reference(&format!("{name}_37x53.safetensors"));
        let model = model(name);
        let got = predict(&model.net, &want.rgb, want.height, want.width, &norm(&model), &p).unwrap();
        let c = Comparison::of(&got, &want.scores).unwrap();
        assert!(c.max_abs > 1e-3, "{name} {p:?}: {c:?}");
    }
}

/// `Protocol::whole()` is exactly the forward pass; flip on the whole image
/// is the mean of the image's and the mirrored mirror's scores.
#[test]
fn whole_image_and_flip() {
    let want = reference("mmseg_r18_37x53.safetensors");
    let (h, w) = (want.height, want.width);
    let model = model("mmseg_r18");
    let norm = norm(&model);
    let x = norm.image(&want.rgb, h, w).unwrap();
    let logits = model.net.forward(&x).unwrap();
    assert_eq!(predict(&model.net, &want.rgb, h, w, &norm, &Protocol::whole()).unwrap(), logits);

    let mirror = |t: &Tensor| {
        let s = t.shape();
        Tensor::from_fn(s, |n, c, y, i| t.view()[[n, c, y, s.w() - 1 - i]])
    };
    let flipped = softmax_channels(&mirror(&model.net.forward(&mirror(&x)).unwrap()));
    let probs = softmax_channels(&logits);
    let expected: Vec<f32> = probs.as_slice().iter().zip(flipped.as_slice()).map(|(a, b)| (a + b) / 2.0).collect();
    let protocol = Protocol { flip: true, average: Average::Probs, ..Protocol::whole() };
    let got = predict(&model.net, &want.rgb, h, w, &norm, &protocol).unwrap();
    assert!(Comparison::of(&got, &expected).unwrap().max_abs < 1e-6);
}

#[test]
fn presets_are_the_published_ones() {
    let slide = |base: usize, crop: usize| Protocol {
        window: Window::Slide { crop, stride: None },
        scales: vec![1.0],
        flip: true,
        base_size: Some(base),
        average: Average::Probs,
        pad_to_crop: true,
        matlab: false,
    };
    assert_eq!(Protocol::preset("ade20k").unwrap(), slide(512, 473));
    assert_eq!(Protocol::preset("voc2012").unwrap(), slide(512, 473));
    assert_eq!(Protocol::preset("cityscapes").unwrap(), slide(2048, 713));
    let matlab = |base, crop| Protocol { matlab: true, ..slide(base, crop) };
    assert_eq!(Protocol::preset("caffe-ade20k").unwrap(), matlab(512, 473));
    assert_eq!(Protocol::preset("caffe-voc2012").unwrap(), matlab(512, 473));
    assert_eq!(Protocol::preset("caffe-cityscapes").unwrap(), matlab(2048, 713));
    let camvid = Protocol::preset("camvid").unwrap();
    assert_eq!((camvid.window, camvid.scales, camvid.flip, camvid.base_size), (Window::Whole, vec![1.0], false, None));
    assert!(Protocol::preset("coco").is_err());
}

#[test]
fn bad_inputs_are_errors() {
    let model = model("mmseg_r18");
    let norm = norm(&model);
    assert!(predict(&model.net, &[0; 11], 2, 2, &norm, &Protocol::whole()).is_err());
    let empty = Protocol { scales: vec![], ..Protocol::whole() };
    assert!(predict(&model.net, &[0; 12], 2, 2, &norm, &empty).is_err());
}

/// The MATLAB evaluation's arithmetic (the long side `base * scale + 1`, the
/// short side rounded in single precision, the single-window and sliding
/// branches, bottom/right padding, the grid and the last window pulled back)
/// against what GNU Octave computed running the authors' `.m` files with
/// Caffe stubbed: three presets, eight image sizes, six scales each.
#[test]
fn matlab_windows_match_the_authors_code_run_in_octave() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protocol/matlab_windows.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pair = |v: &serde_json::Value| [0, 1].map(|i| v[i].as_u64().unwrap() as usize);
    let mut checked = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let [h, w] = pair(&case["image"]);
        let (crop, base) = (case["crop"].as_u64().unwrap() as usize, case["base_size"].as_u64().unwrap() as usize);
        let preset = Protocol::preset(case["preset"].as_str().unwrap()).unwrap();
        assert!(
            preset.matlab && preset.window == Window::Slide { crop, stride: None } && preset.base_size == Some(base)
        );
        for scale in case["scales"].as_array().unwrap() {
            let s = scale["scale"].as_f64().unwrap();
            let plan = pspnet_model::matlab_plan(h, w, s, base, crop, (crop * 2).div_ceil(3)).unwrap();
            let what = format!("{} {h}x{w} at {s}", case["preset"]);
            assert_eq!(plan.resized, pair(&scale["resized"]), "{what}: resized");
            assert_eq!(plan.padded, pair(&scale["padded"]), "{what}: padded");
            assert_eq!(plan.single, scale["branch"] == "single", "{what}: branch");
            let windows: Vec<[usize; 2]> = scale["windows"].as_array().unwrap().iter().map(&pair).collect();
            assert_eq!(plan.windows, windows, "{what}: windows");
            checked += 1;
        }
    }
    assert_eq!(checked, 24 * 6);
}
