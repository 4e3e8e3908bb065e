//! The `pspnet` binary end to end: the logits it writes against PyTorch's,
//! the pictures it writes, and how it treats bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array3;
use ndarray_npy::ReadNpyExt;
use pspnet::model::Comparison;
use pspnet::tensor::{Shape, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/pspnet-model/tests/fixtures").join(name)
}

fn pspnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pspnet")).args(args).output().expect("the pspnet binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pspnet-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the reference's input image (RGB bytes stored as floats) as a PNG.
fn reference_png(reference: &Path, dir: &Path) -> (PathBuf, pspnet::weights::StateDict) {
    let (outputs, _) = pspnet::weights::load_safetensors(reference).unwrap();
    let (dims, image) = outputs.f32("image").unwrap();
    let (h, w) = (dims[2], dims[3]);
    let png = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb([0, 1, 2].map(|c| image[(c * h + y as usize) * w + x as usize] as u8))
    });
    let path = dir.join("photo.png");
    png.save(&path).unwrap();
    (path, outputs)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn segment_writes_pytorch_logits_and_three_pictures() {
    for (name, reference) in
        [("mmseg_r18", "reference_41x57.safetensors"), ("semseg_r50", "reference_50x71.safetensors")]
    {
        let dir = scratch(name);
        let (photo, outputs) = reference_png(&fixture(name).join(reference), &dir);
        let (model, npy, out) = (fixture(name).join("checkpoint.pth"), dir.join("logits.npy"), dir.join("out"));
        let run = pspnet(
            &["segment", photo.to_str().unwrap(), "--model", model.to_str().unwrap(), "--mode", "whole"]
                .into_iter()
                .chain(["--logits", npy.to_str().unwrap(), "--out", out.to_str().unwrap()])
                .collect::<Vec<_>>(),
        );
        assert!(run.status.success(), "{}", text(&run));
        let logits = Array3::<f32>::read_npy(std::fs::File::open(&npy).unwrap()).unwrap();
        let (dims, want) = outputs.f32("logits").unwrap();
        assert_eq!(logits.shape(), &dims[1..], "{name}: (classes, H, W)");
        let shape = Shape::new(1, dims[1], dims[2], dims[3]).unwrap();
        let got = Tensor::from_vec(shape, logits.into_raw_vec_and_offset().0).unwrap();
        let c = Comparison::of(&got, &want).unwrap();
        assert!(c.rel_l2 <= 1e-5 && c.argmax_agreement == 1.0, "{name}: {c:?}");
        for suffix in ["labels", "color", "overlay"] {
            let picture = image::open(out.join(format!("photo.{suffix}.png"))).unwrap();
            assert_eq!((picture.width() as usize, picture.height() as usize), (dims[3], dims[2]), "{name} {suffix}");
        }
        // The label map is the argmax of the logits, class by class.
        let labels = image::open(out.join("photo.labels.png")).unwrap().to_luma8();
        let plane = dims[2] * dims[3];
        for (p, label) in labels.pixels().enumerate() {
            let best = (0..dims[1]).fold(0, |b, c| if want[c * plane + p] > want[b * plane + p] { c } else { b });
            assert_eq!(label.0[0] as usize, best, "{name}: pixel {p}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn bad_inputs_fail_cleanly_and_write_nothing_for_them() {
    let dir = scratch("bad");
    let model = fixture("mmseg_r18/checkpoint.pth");
    let model = model.to_str().unwrap();
    let (photo, _) = reference_png(&fixture("mmseg_r18/reference_41x57.safetensors"), &dir);
    let corrupt = dir.join("corrupt.png");
    let bytes = std::fs::read(&photo).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.join("out");

    // One good and one truncated image: the good one finishes, the bad one is
    // named, leaves no output, and the exit code says so.
    let run = pspnet(&[
        "segment",
        photo.to_str().unwrap(),
        corrupt.to_str().unwrap(),
        "--model",
        model,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(text(&run).contains("corrupt.png") && text(&run).contains("1 of 2 images failed"), "{}", text(&run));
    assert!(out.join("photo.labels.png").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 3, "only the good image's three files: {leftovers:?}");

    // Every image failing: the output folders this run made are gone again.
    let nested = dir.join("fresh").join("out");
    let run = pspnet(&["segment", corrupt.to_str().unwrap(), "--model", model, "--out", nested.to_str().unwrap()]);
    assert!(!run.status.success() && text(&run).contains("1 of 1 images failed"), "{}", text(&run));
    assert!(!dir.join("fresh").exists(), "no empty output folder is left behind");

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let run = pspnet(&["segment", empty.to_str().unwrap(), "--model", model]);
    assert!(!run.status.success() && text(&run).contains("no image files"), "{}", text(&run));

    let twin = dir.join("twin");
    std::fs::create_dir_all(&twin).unwrap();
    std::fs::copy(&photo, twin.join("photo.png")).unwrap();
    let run = pspnet(&["segment", photo.to_str().unwrap(), twin.to_str().unwrap(), "--model", model]);
    assert!(!run.status.success() && text(&run).contains("share the name"), "{}", text(&run));

    let npy = dir.join("x.npy");
    let run = pspnet(&[
        "segment",
        photo.to_str().unwrap(),
        corrupt.to_str().unwrap(),
        "--model",
        model,
        "--logits",
        npy.to_str().unwrap(),
    ]);
    assert!(!run.status.success() && text(&run).contains("exactly one input"), "{}", text(&run));

    let run = pspnet(&["segment", photo.to_str().unwrap(), "--model", photo.to_str().unwrap()]);
    assert!(!run.status.success() && text(&run).contains("photo.png"), "{}", text(&run));

    let run = pspnet(&["segment", photo.to_str().unwrap(), "--model", model, "--max-pixels", "100"]);
    assert!(!run.status.success() && text(&run).contains("over the limit"), "{}", text(&run));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The real CamVid checkpoint of ../shared (absent on a user's clone: then
/// this test says so and passes) against PyTorch fp32 label maps committed
/// in tests/fixtures/camvid_torch (written by the model of
/// xtask/python/reference.py loaded with that checkpoint).
#[test]
fn real_camvid_checkpoint_agrees_with_pytorch() {
    camvid_labels_agree_with_pytorch("f32", 0.99999);
}

/// The same in bf16 arithmetic: the bar is 99.5% of pixels.
#[test]
fn real_camvid_checkpoint_in_bf16_agrees_with_pytorch_fp32() {
    camvid_labels_agree_with_pytorch("bf16", 0.995);
}

fn camvid_labels_agree_with_pytorch(precision: &str, fraction: f64) {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let model = shared.join("models/pspnet_r18-d8_camvid.pth");
    if !model.exists() {
        eprintln!("skipped: {} not found (it sits beside the development checkout only)", model.display());
        return;
    }
    let dir = scratch(&format!("camvid_{precision}"));
    let names = ["test_00001", "test_00100"];
    let images: Vec<String> = names
        .iter()
        .map(|n| shared.join(format!("datasets/camvid/test/images/{n}.png")).display().to_string())
        .collect();
    let mut args = vec!["segment", "--model", model.to_str().unwrap(), "--out", dir.to_str().unwrap()];
    args.extend(["--precision", precision]);
    args.extend(images.iter().map(String::as_str));
    let run = pspnet(&args);
    assert!(run.status.success(), "{}", text(&run));
    let (mut same, mut total) = (0usize, 0usize);
    for n in names {
        let ours = image::open(dir.join(format!("{n}.labels.png"))).unwrap().to_luma8();
        let torch = image::open(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/camvid_torch/{n}.labels.png")),
        )
        .unwrap()
        .to_luma8();
        same += ours.pixels().zip(torch.pixels()).filter(|(a, b)| a == b).count();
        total += ours.len();
    }
    eprintln!("{precision}: {same} of {total} pixels agree with PyTorch fp32");
    assert!(same as f64 >= fraction * total as f64, "{precision}: {same} of {total} pixels agree");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The README's main command: no `--model`, the embedded CamVid model, an
/// example street photo. Sky at the top, road at the bottom.
#[test]
fn embedded_model_segments_the_example_street_scene() {
    let dir = scratch("embedded");
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/camvid_0001TP_008550.png");
    let run = pspnet(&["segment", photo.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--legend"]);
    assert!(run.status.success(), "{}", text(&run));
    let labels = image::open(dir.join("camvid_0001TP_008550.labels.png")).unwrap().to_luma8();
    let present = {
        let mut seen: Vec<u8> = labels.pixels().map(|p| p.0[0]).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() as u32
    };
    let legend = image::open(dir.join("camvid_0001TP_008550.legend.png")).unwrap();
    assert_eq!(legend.height(), 16 + 24 * present, "one legend row per class present");
    let (w, h) = labels.dimensions();
    let (sky, road) = (0, 3);
    assert_eq!(labels.get_pixel(w / 2, h / 20).0[0], sky, "top centre");
    assert_eq!(labels.get_pixel(w / 2, h - h / 20).0[0], road, "bottom centre");
    let color = image::open(dir.join("camvid_0001TP_008550.color.png")).unwrap().to_rgb8();
    assert_eq!(color.get_pixel(w / 2, h - h / 20).0, [128, 64, 128], "CamVid's road colour");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--opacity a`: each overlay byte is floor((1 - a) * photo + a * colour
/// + 0.5), the formula evaluated in f64 here; 0.5 is the default.
#[test]
fn the_overlay_blends_by_its_opacity() {
    let photo_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/camvid_Seq05VD_f01110.png");
    let photo = image::open(&photo_path).unwrap().to_rgb8();
    for (opacity, flags) in [(0.5, vec![]), (0.3, vec!["--opacity", "0.3"]), (1.0, vec!["--opacity", "1"])] {
        let dir = scratch(&format!("opacity-{opacity}"));
        let mut args = vec!["segment", photo_path.to_str().unwrap(), "--out", dir.to_str().unwrap()];
        args.extend(flags);
        let run = pspnet(&args);
        assert!(run.status.success(), "{}", text(&run));
        let color = image::open(dir.join("camvid_Seq05VD_f01110.color.png")).unwrap().to_rgb8();
        let overlay = image::open(dir.join("camvid_Seq05VD_f01110.overlay.png")).unwrap().to_rgb8();
        for ((p, c), o) in photo.as_raw().iter().zip(color.as_raw()).zip(overlay.as_raw()) {
            let want = ((1.0 - opacity) * f64::from(*p) + opacity * f64::from(*c) + 0.5).floor();
            assert_eq!(f64::from(*o), want, "opacity {opacity}: photo {p}, colour {c}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let run = pspnet(&["segment", photo_path.to_str().unwrap(), "--opacity", "1.5"]);
    assert!(!run.status.success() && text(&run).contains("\"1.5\" is not a number from 0 to 1"), "{}", text(&run));
}

/// Grayscale is replicated to RGB, alpha dropped, 16-bit samples become
/// round(v / 257), palette images use their colours: each variant gives the
/// same logits as the plain 8-bit RGB image it stands for.
#[test]
fn input_images_are_read_as_the_rgb_they_stand_for() {
    let dir = scratch("formats");
    let model = fixture("mmseg_r18/checkpoint.pth");
    let (w, h) = (23u32, 17u32);
    let mut state = 12345u32;
    let mut next = move || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (state >> 16) as u8
    };
    let gray: Vec<u8> = (0..w * h).map(|_| next()).collect();
    let rgb: Vec<u8> = (0..w * h * 3).map(|_| next()).collect();
    let palette: Vec<[u8; 3]> = (0..16).map(|_| [next(), next(), next()]).collect();
    let indices: Vec<u8> = (0..w * h).map(|_| next() % 16).collect();
    let write_png = |name: &str, color: png::ColorType, depth: png::BitDepth, data: &[u8], pal: Option<&[u8]>| {
        let path = dir.join(name);
        let mut enc = png::Encoder::new(std::io::BufWriter::new(std::fs::File::create(&path).unwrap()), w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if let Some(p) = pal {
            enc.set_palette(p.to_vec());
        }
        enc.write_header().unwrap().write_image_data(data).unwrap();
        path
    };
    use png::{BitDepth::*, ColorType::*};
    let rgba: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], next()]).collect();
    // 16-bit samples v * 257 + d with |d| <= 128 round back to v.
    let rgb16: Vec<u8> = rgb
        .iter()
        .flat_map(|&v| {
            let d = i32::from(next()) - 128;
            ((i32::from(v) * 257 + d).clamp(0, 65535) as u16).to_be_bytes()
        })
        .collect();
    let flat_palette: Vec<u8> = palette.iter().flatten().copied().collect();
    let pairs = [
        (
            write_png("gray.png", Grayscale, Eight, &gray, None),
            gray.iter().flat_map(|&g| [g, g, g]).collect::<Vec<u8>>(),
        ),
        (write_png("rgba.png", Rgba, Eight, &rgba, None), rgb.clone()),
        (write_png("rgb16.png", Rgb, Sixteen, &rgb16, None), rgb.clone()),
        (
            write_png("indexed.png", Indexed, Eight, &indices, Some(&flat_palette)),
            indices.iter().flat_map(|&i| palette[i as usize]).collect(),
        ),
    ];
    let logits = |image: &Path, tag: &str| {
        let npy = dir.join(format!("{tag}.npy"));
        let out = dir.join(format!("out-{tag}"));
        let run = pspnet(
            &["segment", image.to_str().unwrap(), "--model", model.to_str().unwrap()]
                .into_iter()
                .chain(["--logits", npy.to_str().unwrap(), "--out", out.to_str().unwrap()])
                .collect::<Vec<_>>(),
        );
        assert!(run.status.success(), "{tag}: {}", text(&run));
        Array3::<f32>::read_npy(std::fs::File::open(&npy).unwrap()).unwrap()
    };
    for (i, (variant, equivalent)) in pairs.iter().enumerate() {
        let plain = write_png(&format!("plain{i}.png"), Rgb, Eight, equivalent, None);
        let name = variant.file_name().unwrap().to_str().unwrap();
        assert_eq!(logits(variant, &format!("v{i}")), logits(&plain, &format!("p{i}")), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
