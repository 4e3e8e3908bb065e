//! `pspnet train` end to end on a small checkpoint and generated custom
//! data: the files it writes, that every command loads them, and bad
//! settings refused by name with nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pspnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pspnet")).args(args).output().expect("the pspnet binary runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn checkpoint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/pspnet-model/tests/fixtures/mmseg_r18/checkpoint.pth")
}

/// Four 40x48 images with 3-class labels and a class file in `dir`, and
/// the `train` arguments that read them from `--init` of the fixture
/// checkpoint into `dir/run`.
fn custom_data(dir: &Path) -> Vec<String> {
    let (images, labels, classes) = (dir.join("images"), dir.join("labels"), dir.join("classes.txt"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&labels).unwrap();
    for i in 0..4u32 {
        image::RgbImage::from_fn(48, 40, |x, y| image::Rgb([(x * 5 + i) as u8, (y * 6) as u8, (x ^ y) as u8]))
            .save(images.join(format!("street{i}.jpg")))
            .unwrap();
        image::GrayImage::from_fn(48, 40, |x, y| image::Luma([((x / 16 + y / 20 + i) % 3) as u8]))
            .save(labels.join(format!("street{i}.png")))
            .unwrap();
    }
    std::fs::write(&classes, "road\nsky\ncar\n").unwrap();
    let flags = [("--dataset", "custom".into()), ("--images", images), ("--labels", labels), ("--classes", classes)];
    let more = [("--init", checkpoint()), ("--out", dir.join("run"))];
    let pairs = flags.into_iter().chain(more);
    std::iter::once("train".to_string())
        .chain(pairs.flat_map(|(flag, path)| [flag.to_string(), path.to_str().unwrap().to_string()]))
        .collect()
}

fn run(base: &[String], extra: &[&str]) -> Output {
    let args: Vec<&str> = base.iter().map(String::as_str).chain(extra.iter().copied()).collect();
    pspnet(&args)
}

#[test]
fn trains_and_every_command_loads_what_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let base = custom_data(dir.path());
    let (out, s) = (dir.path().join("run"), |p: &Path| p.to_str().unwrap().to_string());
    let extra = [
        "--batch",
        "2",
        "--iters",
        "3",
        "--crop",
        "33x35",
        "--augment",
        "flip,crop",
        "--save-every",
        "2",
        "--keep",
        "1",
    ];
    let images = dir.path().join("images").to_str().unwrap().to_string();
    let labels = dir.path().join("labels").to_str().unwrap().to_string();
    let validation = ["--val-images", images.as_str(), "--val-labels", labels.as_str(), "--val-every", "2"];
    let done = run(&base, &[&extra[..], &validation].concat());
    assert!(done.status.success(), "{}", text(&done));
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 3);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["iter"], i as u64 + 1);
        let (loss, main, aux) = (r["loss"].as_f64().unwrap(), r["main"].as_f64().unwrap(), r["aux"].as_f64().unwrap());
        assert!((loss - (main + 0.4 * aux)).abs() < 1e-5 && r["seconds"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(records[0]["lr"], 0.01, "the first step uses the base rate");
    // --keep 1: iter-2 removed once iter-3 was written.
    assert!(!out.join("iter-2.safetensors").exists() && out.join("iter-3.safetensors").exists());
    assert!(std::fs::read_to_string(out.join("config.toml")).unwrap().contains("iters = 3"));
    // Validation at iterations 2 and 3 (the end), the best of them kept.
    let val: Vec<serde_json::Value> = std::fs::read_to_string(out.join("val.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(val.iter().map(|v| v["iter"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 3]);
    assert!(val.iter().all(|v| (0.0..=100.0).contains(&v["mIoU"].as_f64().unwrap())));
    assert!(out.join("best.safetensors").exists());
    let info = pspnet(&["info", &s(&out.join("last.safetensors"))]);
    assert!(info.status.success() && text(&info).contains("classes:      3 (road, sky, car)"), "{}", text(&info));
    let image = dir.path().join("images/street0.jpg");
    let segment = pspnet(&[
        "segment",
        &s(&image),
        "--model",
        &s(&out.join("iter-3.safetensors")),
        "--out",
        &s(&dir.path().join("seg")),
    ]);
    assert!(segment.status.success(), "{}", text(&segment));
}

#[test]
fn bad_settings_are_refused_by_name_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base = custom_data(dir.path());
    let out = dir.path().join("run");
    let cases: [(&[&str], &str); 5] = [
        (&["--val-every", "2", "--crop", "33x35"], "needs --val-split or --val-images"),
        (&["--precision", "bf16", "--crop", "33x35"], "f32 only"),
        (&["--augment", "flip,crop"], "--augment crop needs --crop"),
        (&["--batch", "1", "--crop", "33x35"], "at least 2 images per micro-batch"),
        (&["--augment", "flip,zoom", "--crop", "33x35"], "zoom"),
    ];
    for (extra, needle) in cases {
        let refused = run(&base, &[&["--iters", "2"], extra].concat());
        assert!(!refused.status.success() && text(&refused).contains(needle), "{extra:?}: {}", text(&refused));
        assert!(!out.join("last.safetensors").exists(), "{extra:?} wrote a checkpoint");
    }
}

/// From scratch: an mmsegmentation ResNet-18 with every parameter drawn
/// fresh, and the ablation knobs (a max-pool pyramid without dimension
/// reduction), trains; its checkpoint carries the data's classes and knobs.
#[test]
fn trains_from_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<String> =
        custom_data(dir.path()).into_iter().filter(|a| !a.ends_with("checkpoint.pth") && a != "--init").collect();
    let done = run(
        &base,
        &[
            "--layout",
            "mmseg",
            "--depth",
            "18",
            "--batch",
            "2",
            "--iters",
            "2",
            "--crop",
            "33x35",
            "--augment",
            "crop",
            "--pool",
            "max",
            "--no-reduction",
        ],
    );
    assert!(done.status.success(), "{}", text(&done));
    let out = dir.path().join("run");
    let info = pspnet(&["info", out.join("last.safetensors").to_str().unwrap()]);
    let report = text(&info);
    assert!(
        report.contains("ResNet-18")
            && report.contains("Max pooling")
            && report.contains("no dimension reduction")
            && report.contains("(road, sky, car)"),
        "{report}"
    );
    assert_eq!(std::fs::read_to_string(out.join("log.jsonl")).unwrap().lines().count(), 2);
    let image = dir.path().join("images/street0.jpg");
    let (model, seg) = (out.join("last.safetensors"), dir.path().join("seg"));
    let segment = pspnet(&[
        "segment",
        image.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        seg.to_str().unwrap(),
    ]);
    assert!(segment.status.success(), "{}", text(&segment));
}

/// `--config FILE` sets the flags (the command line overriding it), and the
/// OUT/config.toml a run writes reproduces the run.
#[test]
fn config_files_set_flags_and_the_written_one_reproduces_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let base = custom_data(dir.path());
    // custom_data's flags (after "train") as TOML keys.
    let mut toml: String = base[1..]
        .chunks(2)
        .map(|pair| format!("{} = {:?}\n", pair[0].trim_start_matches("--").replace('-', "_"), pair[1]))
        .collect();
    toml += "batch = 2\niters = 2\ncrop = \"33x35\"\naugment = \"flip,crop\"\nno_shuffle = true\n";
    let config = dir.path().join("settings.toml");
    std::fs::write(&config, toml).unwrap();
    let first = pspnet(&["train", "--config", config.to_str().unwrap(), "--iters", "3"]);
    assert!(first.status.success(), "{}", text(&first));
    let out = dir.path().join("run");
    let log = |dir: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].to_string()).collect()
    };
    assert_eq!(log(&out).len(), 3, "--iters 3 overrides the file's 2");
    let again = dir.path().join("again");
    let second =
        pspnet(&["train", "--config", out.join("config.toml").to_str().unwrap(), "--out", again.to_str().unwrap()]);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(log(&again), log(&out), "the written config.toml reproduces the run");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "iters = 2\nzoom = 3\n").unwrap();
    let refused = pspnet(&["train", "--config", bad.to_str().unwrap()]);
    assert!(!refused.status.success() && text(&refused).contains("--zoom"), "{}", text(&refused));
}

/// `--backbone` with an ImageNet ResNet in mmcv's ResNetV1c form (written
/// here from the fixture's backbone, with a classifier `fc` it must
/// ignore): its weights become the backbone, the layout's heads start
/// fresh.
#[test]
fn imagenet_backbones_start_the_layouts_heads() {
    use pspnet::weights::{DType, TensorData, Value, save_pth};
    let dir = tempfile::tempdir().unwrap();
    let (params, _) = pspnet::model::read_checkpoint(&checkpoint(), &pspnet::model::Overrides::default()).unwrap();
    let mmcv = |name: &str| -> Option<String> {
        let rest = name.strip_prefix("backbone.")?;
        if let Some(stem) = rest.strip_prefix("stem.") {
            let (i, tail) = stem.split_once('.')?;
            let (part, leaf) = tail.split_once('.')?;
            let index = 3 * i.parse::<usize>().ok()? + usize::from(part == "bn");
            return Some(format!("stem.{index}.{leaf}"));
        }
        Some(rest.replace("downsample.conv", "downsample.0").replace("downsample.bn", "downsample.1"))
    };
    let f32s = |shape: Vec<usize>, values: &[f32]| {
        Value::Tensor(TensorData {
            dtype: DType::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
    };
    let mut state: Vec<(Value, Value)> = params
        .iter()
        .filter_map(|(name, p)| Some((Value::Str(mmcv(name)?), f32s(p.shape().to_vec(), p.data()))))
        .collect();
    state.push((Value::Str("fc.weight".into()), f32s(vec![10, 64], &[0.5; 640])));
    let resnet = dir.path().join("resnet18_v1c.pth");
    save_pth(&resnet, &Value::Dict(vec![(Value::Str("state_dict".into()), Value::Dict(state))])).unwrap();

    let base: Vec<String> = custom_data(dir.path()).into_iter().collect();
    let init = base.iter().position(|a| a == "--init").unwrap();
    let mut args: Vec<String> = base[..init].iter().chain(&base[init + 2..]).cloned().collect();
    args.extend(["--backbone", resnet.to_str().unwrap(), "--layout", "mmseg"].map(String::from));
    let extra =
        ["--batch", "2", "--iters", "1", "--crop", "33x35", "--augment", "crop", "--lr", "1e-12", "--dropout", "0"];
    let done = run(&args, &extra);
    assert!(done.status.success(), "{}", text(&done));
    let (trained, _) = pspnet::weights::load_safetensors(&dir.path().join("run/last.safetensors")).unwrap();
    for name in
        ["backbone.stem.0.conv.weight", "backbone.layer2.0.downsample.conv.weight", "backbone.layer4.1.conv2.weight"]
    {
        let (_, got) = trained.f32(name).unwrap();
        let want = params.get(name).unwrap().data();
        let close = got.iter().zip(want).all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1e-3));
        assert!(close, "{name}: the ImageNet backbone's weights");
    }
    let info = pspnet(&["info", dir.path().join("run/last.safetensors").to_str().unwrap()]);
    assert!(text(&info).contains("ResNet-18") && text(&info).contains("deep (3x3 x3) stem"), "{}", text(&info));
}

/// On one thread the binary's main thread is the pool's only worker, and
/// the loader decodes on that pool: the run must still finish (it once
/// waited forever for a batch nobody decoded), with the losses of two.
#[test]
fn trains_on_one_thread_as_on_two() {
    let dir = tempfile::tempdir().unwrap();
    let base = custom_data(dir.path());
    let extra = ["--batch", "2", "--iters", "2", "--crop", "33x35", "--augment", "flip,crop"];
    let losses = |threads: &str, out: &Path| -> Vec<String> {
        let args: Vec<&str> =
            base.iter().map(String::as_str).chain(extra).chain(["--out", out.to_str().unwrap()]).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pspnet"))
            .args(&args)
            .env("RAYON_NUM_THREADS", threads)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("RAYON_NUM_THREADS={threads}: pspnet train did not finish in 300 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(status.success(), "RAYON_NUM_THREADS={threads}: {status}");
        let text = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].to_string()).collect()
    };
    let one = losses("1", &dir.path().join("one"));
    assert_eq!(one.len(), 2);
    assert_eq!(one, losses("2", &dir.path().join("two")));
}
