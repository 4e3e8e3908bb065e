//! `pspnet evaluate` and `pspnet merge` on small synthetic datasets built in
//! each official layout. The oracle: `pspnet segment`'s label maps (checked
//! against PyTorch elsewhere) scored by the formulas below, written
//! independently of the crate's metrics code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::RgbImage;
use serde_json::Value;

fn pspnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pspnet")).args(args).output().expect("the pspnet binary runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const W: u32 = 24;
const H: u32 = 20;

/// Writes a label PNG: grayscale, or indexed with a palette (VOC).
fn write_label(path: &Path, values: &[u8], indexed: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, W, H);
    if indexed {
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_palette((0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect::<Vec<u8>>());
    } else {
        encoder.set_color(png::ColorType::Grayscale);
    }
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header().unwrap().write_image_data(values).unwrap();
}

fn write_image(path: &Path, rng: &mut Rng) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = RgbImage::from_fn(W, H, |x, y| image::Rgb([(x * 10) as u8, (y * 12) as u8, rng.next(256) as u8]));
    img.save(path).unwrap();
}

/// A dataset fixture: its name, model, and for each image the file paths and
/// the expected class (or None for ignored) of every pixel.
struct Fixture {
    root: PathBuf,
    samples: Vec<(PathBuf, Vec<Option<usize>>)>,
    classes: usize,
}

fn cityscapes_train_ids() -> HashMap<u8, Option<usize>> {
    let json: Value = serde_json::from_str(include_str!("../crates/pspnet-data/classes/cityscapes.json")).unwrap();
    json["label_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["id"].as_i64().unwrap() >= 0)
        .map(|l| {
            let t = l["trainId"].as_i64().unwrap();
            (l["id"].as_i64().unwrap() as u8, (0..19).contains(&t).then_some(t as usize))
        })
        .collect()
}

fn build(dataset: &str, dir: &Path) -> Fixture {
    let mut rng = Rng(0x5EED ^ dataset.len() as u64);
    let root = dir.join(dataset);
    let names = ["a_001", "b_002", "c_003"];
    let city_ids = cityscapes_train_ids();
    let mut samples = Vec::new();
    let classes = match dataset {
        "camvid" => 11,
        "ade20k" => 150,
        "voc2012" => 21,
        _ => 19,
    };
    for (i, name) in names.iter().enumerate() {
        let (image, label) = match dataset {
            "camvid" => (root.join(format!("test/images/{name}.png")), root.join(format!("test/labels/{name}.png"))),
            "ade20k" => (
                root.join(format!("images/validation/ADE_val_{name}.jpg")),
                root.join(format!("annotations/validation/ADE_val_{name}.png")),
            ),
            "voc2012" => {
                (root.join(format!("JPEGImages/{name}.jpg")), root.join(format!("SegmentationClass/{name}.png")))
            }
            _ => {
                let city = ["aachen", "bremen"][i % 2];
                (
                    root.join(format!("leftImg8bit/val/{city}/{city}_{name}_leftImg8bit.png")),
                    root.join(format!("gtFine/val/{city}/{city}_{name}_gtFine_labelIds.png")),
                )
            }
        };
        write_image(&image, &mut rng);
        let (raw, expected): (Vec<u8>, Vec<Option<usize>>) = (0..W * H)
            .map(|_| match dataset {
                "camvid" => {
                    let v = rng.next(12) as u8;
                    (v, (v < 11).then_some(v as usize))
                }
                "ade20k" => {
                    let v = rng.next(151) as u8;
                    (v, (v > 0).then(|| v as usize - 1))
                }
                "voc2012" => {
                    let v = if rng.next(5) == 0 { 255 } else { rng.next(21) as u8 };
                    (v, (v != 255).then_some(v as usize))
                }
                _ => {
                    let v = rng.next(34) as u8;
                    (v, city_ids[&v])
                }
            })
            .unzip();
        write_label(&label, &raw, dataset == "voc2012");
        samples.push((image, expected));
    }
    if dataset == "voc2012" {
        let list = root.join("ImageSets/Segmentation/val.txt");
        std::fs::create_dir_all(list.parent().unwrap()).unwrap();
        std::fs::write(list, names.join("\n")).unwrap();
    }
    samples.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    Fixture { root, samples, classes }
}

/// Per class: IoU and accuracy in percent, where defined.
type PerClass = Vec<(Option<f64>, Option<f64>)>;

/// mIoU, mAcc, aAcc from (label, prediction) pairs, straight from the definitions.
fn oracle(pairs: &[(usize, usize)], classes: usize) -> (f64, f64, f64, PerClass) {
    let mut per_class = Vec::new();
    for c in 0..classes {
        let inter = pairs.iter().filter(|(l, p)| *l == c && *p == c).count() as f64;
        let target = pairs.iter().filter(|(l, _)| *l == c).count() as f64;
        let predicted = pairs.iter().filter(|(_, p)| *p == c).count() as f64;
        let union = target + predicted - inter;
        per_class.push(((union > 0.0).then(|| 100.0 * inter / union), (target > 0.0).then(|| 100.0 * inter / target)));
    }
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let miou = mean(per_class.iter().filter_map(|c| c.0).collect());
    let macc = mean(per_class.iter().filter_map(|c| c.1).collect());
    let aacc = 100.0 * pairs.iter().filter(|(l, p)| l == p).count() as f64 / pairs.len() as f64;
    (miou, macc, aacc, per_class)
}

fn model(dataset: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/datasets/{dataset}.pth"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_layout_scores_as_the_definitions_say_sharded_or_not() {
    let dir = std::env::temp_dir().join(format!("pspnet-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (dataset, split) in [("camvid", "test"), ("ade20k", "validation"), ("voc2012", "val"), ("cityscapes", "val")] {
        let fx = build(dataset, &dir);
        let model = model(dataset);
        let model = model.to_str().unwrap();
        // The oracle's predictions: segment's label maps, whole image.
        let seg_out = dir.join(format!("{dataset}-seg"));
        let images: Vec<&str> = fx.samples.iter().map(|(p, _)| p.to_str().unwrap()).collect();
        let mut args = vec!["segment", "--model", model, "--out", seg_out.to_str().unwrap()];
        args.extend(&images);
        let run = pspnet(&args);
        assert!(run.status.success(), "{dataset}: {}", text(&run));
        let mut pairs = Vec::new();
        for (image, expected) in &fx.samples {
            let stem = image.file_stem().unwrap().to_str().unwrap();
            let pred = image::open(seg_out.join(format!("{stem}.labels.png"))).unwrap().to_luma8();
            pairs.extend(expected.iter().zip(pred.pixels()).filter_map(|(l, p)| l.map(|l| (l, p.0[0] as usize))));
        }
        let (miou, macc, aacc, per_class) = oracle(&pairs, fx.classes);

        let root = fx.root.to_str().unwrap();
        let json = dir.join(format!("{dataset}.json"));
        let common =
            ["--dataset", dataset, "--data-root", root, "--split", split, "--model", model, "--preset", "camvid"];
        let run = pspnet(&[&["evaluate"], &common[..], &["--json", json.to_str().unwrap()]].concat());
        assert!(run.status.success(), "{dataset}: {}", text(&run));
        let got = read_json(&json);
        assert_eq!(got["dataset"], dataset);
        assert_eq!(got["images"], 3);
        for (key, want) in [("mIoU", miou), ("mAcc", macc), ("aAcc", aacc)] {
            assert!((got[key].as_f64().unwrap() - want).abs() < 1e-9, "{dataset} {key}: {} vs {want}", got[key]);
        }
        let classes = got["per_class"].as_array().unwrap();
        assert_eq!(classes.len(), fx.classes);
        for (c, (iou, acc)) in classes.iter().zip(&per_class) {
            assert_eq!(c["IoU"].as_f64().map(|v| (v * 1e6).round()), iou.map(|v| (v * 1e6).round()), "{dataset} {c}");
            assert_eq!(c["Acc"].as_f64().map(|v| (v * 1e6).round()), acc.map(|v| (v * 1e6).round()), "{dataset} {c}");
        }

        // Sharded in two, merged: the same numbers.
        let partials: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("{dataset}-{i}.partial.json"))).collect();
        for (i, partial) in partials.iter().enumerate() {
            let shard = format!("{i}/2");
            let run = pspnet(
                &[&["evaluate"], &common[..], &["--shard", &shard, "--partial", partial.to_str().unwrap()]].concat(),
            );
            assert!(run.status.success(), "{dataset} shard {i}: {}", text(&run));
        }
        let merged = dir.join(format!("{dataset}-merged.json"));
        let run = pspnet(&[
            "merge",
            partials[0].to_str().unwrap(),
            partials[1].to_str().unwrap(),
            "--json",
            merged.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{dataset} merge: {}", text(&run));
        let merged = read_json(&merged);
        for key in ["mIoU", "mAcc", "aAcc", "images", "per_class"] {
            assert_eq!(merged[key], got[key], "{dataset} {key}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A label map of the wrong size and one with an undefined value: each is
/// named, the other images still run, no results are written, exit non-zero.
#[test]
fn bad_label_maps_are_named_and_nothing_is_written() {
    let dir = std::env::temp_dir().join(format!("pspnet-eval-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fx = build("camvid", &dir);
    let labels = fx.root.join("test/labels");
    // a_001: value 12 is not a CamVid label; b_002: 1 pixel narrower than its image.
    write_label(&labels.join("a_001.png"), &vec![12; (W * H) as usize], false);
    let narrow = labels.join("b_002.png");
    let file = std::io::BufWriter::new(std::fs::File::create(&narrow).unwrap());
    let mut enc = png::Encoder::new(file, W - 1, H);
    enc.set_color(png::ColorType::Grayscale);
    enc.write_header().unwrap().write_image_data(&vec![0; ((W - 1) * H) as usize]).unwrap();
    let json = dir.join("out.json");
    let model = model("camvid");
    let run = pspnet(&[
        "evaluate",
        "--dataset",
        "camvid",
        "--data-root",
        fx.root.to_str().unwrap(),
        "--split",
        "test",
        "--model",
        model.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let out = text(&run);
    assert!(!run.status.success(), "{out}");
    assert!(out.contains("a_001.png: label value 12 is not defined for camvid"), "{out}");
    assert!(out.contains("b_002.png: label map is 23x20"), "{out}");
    assert!(out.contains("2 of 3 images failed"), "{out}");
    assert!(!json.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Custom data: images and label PNGs paired by stem, 0 ignored and v
/// standing for class v-1 (`--reduce-zero-label`), and a chosen ignore
/// value; scored against segment's label maps by the definitions.
#[test]
fn custom_data_scores_as_the_definitions_say() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = (dir.path().join("images"), dir.path().join("labels"));
    let mut rng = Rng(0xC057);
    let mut samples = Vec::new();
    for name in ["x1", "x2"] {
        let image = images.join(format!("{name}.png"));
        write_image(&image, &mut rng);
        let (raw, expected): (Vec<u8>, Vec<Option<usize>>) = (0..W * H)
            .map(|_| match rng.next(13) {
                0 => (0, None),
                12 => (200, None),
                v => (v as u8, Some(v as usize - 1)),
            })
            .unzip();
        write_label(&labels.join(format!("{name}.png")), &raw, false);
        samples.push((image, expected));
    }
    let model = model("camvid");
    let model = model.to_str().unwrap();
    let seg_out = dir.path().join("seg");
    let mut args = vec!["segment", "--model", model, "--out", seg_out.to_str().unwrap()];
    args.extend(samples.iter().map(|(p, _)| p.to_str().unwrap()));
    let run = pspnet(&args);
    assert!(run.status.success(), "{}", text(&run));
    let mut pairs = Vec::new();
    for (image, expected) in &samples {
        let stem = image.file_stem().unwrap().to_str().unwrap();
        let pred = image::open(seg_out.join(format!("{stem}.labels.png"))).unwrap().to_luma8();
        pairs.extend(expected.iter().zip(pred.pixels()).filter_map(|(l, p)| l.map(|l| (l, p.0[0] as usize))));
    }
    let (miou, macc, aacc, _) = oracle(&pairs, 11);

    let json = dir.path().join("custom.json");
    let (images, labels) = (images.to_str().unwrap(), labels.to_str().unwrap());
    let custom = ["evaluate", "--dataset", "custom", "--images", images, "--labels", labels, "--model", model];
    let flags = ["--reduce-zero-label", "--ignore-index", "200", "--json", json.to_str().unwrap()];
    let run = pspnet(&[&custom[..], &flags[..]].concat());
    assert!(run.status.success(), "{}", text(&run));
    let got = read_json(&json);
    assert_eq!((got["dataset"].as_str(), got["images"].as_u64()), (Some("custom"), Some(2)));
    for (key, want) in [("mIoU", miou), ("mAcc", macc), ("aAcc", aacc)] {
        assert!((got[key].as_f64().unwrap() - want).abs() < 1e-9, "{key}: {} vs {want}", got[key]);
    }
    // Saved, then scored again as custom data: the same JSON.
    let saved = dir.path().join("saved");
    let run = pspnet(&[&custom[..], &flags[..], &["--out-dir", saved.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", text(&run));
    let scored = dir.path().join("scored.json");
    let data = ["score", "--dataset", "custom", "--images", images, "--labels", labels, "--classes", "11"];
    let again = ["--reduce-zero-label", "--ignore-index", "200", "--pred-dir", saved.to_str().unwrap()];
    let run = pspnet(&[&data[..], &again[..], &["--json", scored.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", text(&run));
    let mut scored = read_json(&scored);
    scored["per_class"].as_array_mut().unwrap().iter_mut().for_each(|c| c["name"] = Value::Null);
    let mut evaluated = read_json(&json);
    evaluated["per_class"].as_array_mut().unwrap().iter_mut().for_each(|c| c["name"] = Value::Null);
    assert_eq!(scored, evaluated, "score (classes numbered) and evaluate (the model's names)");
    // Without --reduce-zero-label, 11 is no class of this model.
    let run = pspnet(&[&custom[..], &["--ignore-index", "200"]].concat());
    assert!(!run.status.success());
    assert!(text(&run).contains("label value 11 is not a class (0..11)"), "{}", text(&run));
    let run = pspnet(&[&custom[..], &["--classes", "5"]].concat());
    assert!(text(&run).contains("the model has 11 classes, custom has 5"), "{}", text(&run));
}

/// `evaluate --out-dir` saves what `segment` would write for each image and
/// the confusion matrix the oracle counts; `score --pred-dir` reads the
/// predictions back and reports the very same JSON; a missing or damaged
/// prediction is named.
#[test]
fn saved_predictions_score_as_the_evaluation_that_wrote_them() {
    let dir = tempfile::tempdir().unwrap();
    for (dataset, split) in [("camvid", "test"), ("ade20k", "validation")] {
        let fx = build(dataset, dir.path());
        let model = model(dataset);
        let model = model.to_str().unwrap();
        let seg_out = dir.path().join(format!("{dataset}-seg"));
        let mut args = vec!["segment", "--model", model, "--out", seg_out.to_str().unwrap()];
        args.extend(fx.samples.iter().map(|(p, _)| p.to_str().unwrap()));
        assert!(pspnet(&args).status.success());

        let (saved, root) = (dir.path().join(format!("{dataset}-saved")), fx.root.to_str().unwrap());
        let data = ["--dataset", dataset, "--data-root", root, "--split", split];
        let (evaluated, scored) = (dir.path().join("evaluated.json"), dir.path().join("scored.json"));
        let flags = ["--model", model, "--preset", "camvid", "--out-dir", saved.to_str().unwrap()];
        let run = pspnet(&[&["evaluate"], &data[..], &flags[..], &["--json", evaluated.to_str().unwrap()]].concat());
        assert!(run.status.success(), "{dataset}: {}", text(&run));

        let mut counts = vec![0u64; fx.classes * fx.classes];
        for (image, expected) in &fx.samples {
            let stem = image.file_stem().unwrap().to_str().unwrap();
            for kind in ["labels", "color"] {
                let (ours, segments) =
                    (saved.join(format!("{stem}.{kind}.png")), seg_out.join(format!("{stem}.{kind}.png")));
                assert_eq!(image::open(&ours).unwrap(), image::open(&segments).unwrap(), "{}", ours.display());
            }
            let pred = image::open(saved.join(format!("{stem}.labels.png"))).unwrap().to_luma8();
            for (l, p) in expected.iter().zip(pred.pixels()) {
                if let Some(l) = l {
                    counts[l * fx.classes + p.0[0] as usize] += 1;
                }
            }
        }
        let csv = std::fs::read_to_string(saved.join("confusion.csv")).unwrap();
        let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), fx.classes + 1);
        assert_eq!(rows[0].len(), fx.classes + 1, "{dataset}: a header cell per class");
        let got: Vec<u64> = rows[1..].iter().flat_map(|r| r[1..].iter().map(|v| v.parse::<u64>().unwrap())).collect();
        assert_eq!(got, counts, "{dataset}: confusion counts");
        assert!(image::open(saved.join("confusion.png")).is_ok());

        let run = pspnet(
            &[&["score"], &data[..], &["--pred-dir", saved.to_str().unwrap(), "--json", scored.to_str().unwrap()]]
                .concat(),
        );
        assert!(run.status.success(), "{dataset}: {}", text(&run));
        assert_eq!(read_json(&scored), read_json(&evaluated), "{dataset}: score and evaluate");
        std::fs::remove_file(&scored).unwrap();

        // A prediction with a value that is no class, then a missing one.
        let first = fx.samples[0].0.file_stem().unwrap().to_str().unwrap().to_string();
        let damaged = saved.join(format!("{first}.labels.png"));
        write_label(&damaged, &vec![fx.classes as u8; (W * H) as usize], false);
        let score =
            [&["score"], &data[..], &["--pred-dir", saved.to_str().unwrap(), "--json", scored.to_str().unwrap()]]
                .concat();
        let run = pspnet(&score);
        assert!(!run.status.success() && !scored.exists());
        assert!(
            text(&run).contains(&format!("{first}.labels.png: prediction {} is not a class", fx.classes)),
            "{}",
            text(&run)
        );
        std::fs::remove_file(&damaged).unwrap();
        let run = pspnet(&score);
        assert!(!run.status.success() && !scored.exists());
        assert!(text(&run).contains(&format!("{first}.labels.png: cannot open")), "{}", text(&run));
    }
}

/// The 19 evaluated Cityscapes classes' label ids (cityscapesscripts'
/// `labels.py`: road 7, sidewalk 8, building 11, ..., bicycle 33).
const CITYSCAPES_LABEL_IDS: [u8; 19] = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33];

fn gray(path: &Path) -> Vec<u8> {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_luma8().into_raw()
}

/// Cityscapes: the label ids cityscapesscripts evaluates to our mIoU
/// (xtask/python/cityscapes_format.py scored these very predictions).
#[test]
fn cityscapes_format_scores_as_cityscapesscripts_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cityscapes_format");
    let dir = tempfile::tempdir().unwrap();
    let (out, json) = (dir.path().join("out"), dir.path().join("ours.json"));
    let run = pspnet(&[
        "evaluate",
        "--dataset",
        "cityscapes",
        "--data-root",
        root.to_str().unwrap(),
        "--split",
        "val",
        "--model",
        model("cityscapes").to_str().unwrap(),
        "--preset",
        "camvid",
        "--out-dir",
        out.to_str().unwrap(),
        "--format",
        "cityscapes",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let expected = read_json(&root.join("expected.json"));
    let ours = read_json(&json);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(ours["mIoU"].as_f64().unwrap() / 100.0, expected["mIoU"].as_f64().unwrap()), "{ours} {expected}");
    for class in ours["per_class"].as_array().unwrap() {
        let want = expected["per_class_IoU"][class["name"].as_str().unwrap()].as_f64();
        assert_eq!(
            class["IoU"].as_f64().map(|v| (v / 100.0 * 1e12).round()),
            want.map(|v| (v * 1e12).round()),
            "{class}"
        );
    }
    let committed = root.join("pred/cityscapes");
    for entry in std::fs::read_dir(&committed).unwrap() {
        let name = entry.unwrap().file_name();
        let stem = Path::new(&name).file_stem().unwrap().to_str().unwrap();
        assert!(stem.ends_with("_leftImg8bit"), "the scripts match predictions by CITY_SEQ_FRAME: {stem}");
        let ids = gray(&out.join("cityscapes").join(&name));
        assert_eq!(ids, gray(&committed.join(&name)), "the predictions cityscapesscripts scored");
        let train_ids = gray(&out.join(format!("{stem}.labels.png")));
        let mapped: Vec<u8> = train_ids.iter().map(|&t| CITYSCAPES_LABEL_IDS[t as usize]).collect();
        assert_eq!(ids, mapped, "{stem}: train ids to label ids");
    }
}

/// VOC: palette PNGs of the class indices, named by image id, with the
/// devkit's colours; ADE20K: ids 1..150; `--format-only` writes nothing
/// else; `segment --dataset` takes a split without labels.
#[test]
fn voc_and_ade20k_formats_follow_the_challenges() {
    let dir = tempfile::tempdir().unwrap();
    for (dataset, split, format) in [("voc2012", "val", "voc"), ("ade20k", "validation", "ade20k")] {
        let fx = build(dataset, dir.path());
        let out = dir.path().join(format!("{dataset}-out"));
        let (root, model) = (fx.root.to_str().unwrap(), model(dataset));
        let data = ["--dataset", dataset, "--data-root", root, "--split", split, "--mode", "whole"];
        let run = pspnet(
            &[
                &["segment"],
                &data[..],
                &["--model", model.to_str().unwrap(), "--out", out.to_str().unwrap(), "--format", format],
            ]
            .concat(),
        );
        assert!(run.status.success(), "{dataset}: {}", text(&run));
        for (image, _) in &fx.samples {
            let stem = image.file_stem().unwrap().to_str().unwrap();
            let (labels, submitted) =
                (out.join(format!("{stem}.labels.png")), out.join(format).join(format!("{stem}.png")));
            let classes = gray(&labels);
            let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&submitted).unwrap()));
            let mut reader = decoder.read_info().unwrap();
            let mut values = vec![0; reader.output_buffer_size().unwrap()];
            reader.next_frame(&mut values).unwrap();
            if format == "voc" {
                assert_eq!(reader.info().color_type, png::ColorType::Indexed);
                let palette = reader.info().palette.as_deref().unwrap().to_vec();
                // VOClabelcolormap.m: background black, aeroplane (128, 0, 0), person (192, 128, 128), 255 (224, 224, 192).
                assert_eq!(
                    [&palette[0..3], &palette[3..6], &palette[45..48], &palette[765..768]],
                    [[0, 0, 0], [128, 0, 0], [192, 128, 128], [224, 224, 192]]
                );
                assert_eq!(values, classes, "{stem}: VOC keeps the class indices");
            } else {
                assert_eq!(values, classes.iter().map(|c| c + 1).collect::<Vec<_>>(), "{stem}: ADE20K counts from 1");
            }
        }
        let only = dir.path().join(format!("{dataset}-only"));
        let flags = [
            "--model",
            model.to_str().unwrap(),
            "--out-dir",
            only.to_str().unwrap(),
            "--format",
            format,
            "--format-only",
        ];
        let run = pspnet(&[&["evaluate"], &data[..], &flags[..]].concat());
        assert!(run.status.success(), "{dataset}: {}", text(&run));
        let mut written: Vec<String> =
            std::fs::read_dir(&only).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        written.sort();
        let mut expected = ["confusion.csv", "confusion.png", format];
        expected.sort();
        assert_eq!(written, expected, "{dataset}: only the format (and the matrix)");
    }
    // A test split: images, no labels.
    let root = dir.path().join("cityscapes-test");
    let image = root.join("leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png");
    write_image(&image, &mut Rng(7));
    let out = dir.path().join("cityscapes-test-out");
    let cityscapes = model("cityscapes");
    let run = pspnet(&[
        "segment",
        "--dataset",
        "cityscapes",
        "--data-root",
        root.to_str().unwrap(),
        "--split",
        "test",
        "--mode",
        "whole",
        "--model",
        cityscapes.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "cityscapes",
        "--format-only",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(out.join("cityscapes/berlin_000000_000019_leftImg8bit.png").is_file());
    assert!(!out.join("berlin_000000_000019_leftImg8bit.labels.png").exists());
    let camvid = model("camvid");
    let run = pspnet(&[
        "segment",
        image.to_str().unwrap(),
        "--model",
        camvid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "voc",
    ]);
    assert!(
        !run.status.success() && text(&run).contains("--format voc: the format has 21 classes, the model 11"),
        "{}",
        text(&run)
    );
}
