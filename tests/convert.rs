//! `pspnet convert MODEL OUT.pth --layout mmseg|semseg`: the written file
//! loads back (through the restricted unpickler, which takes what
//! `torch.load(weights_only=True)` takes) as the same network, and an
//! architecture a layout cannot express is refused by name. PyTorch itself
//! loading these files strictly into reference.py's models is
//! xtask/python/check_pth.py's check (docs/training.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pspnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pspnet")).args(args).output().expect("the pspnet binary runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/pspnet-model/tests/fixtures").join(name)
}

fn logits(model: &Path, dir: &Path) -> Vec<u8> {
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/caffe/input_75x61.png");
    let npy = dir.join("logits.npy");
    let run = pspnet(&[
        "segment",
        image.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--mode",
        "whole",
        "--logits",
        npy.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    std::fs::read(npy).unwrap()
}

#[test]
fn pth_exports_load_back_as_the_same_network() {
    let dir = tempfile::tempdir().unwrap();
    for (name, layout) in [("mmseg_r18", "mmseg"), ("semseg_r50", "semseg")] {
        let native = dir.path().join(format!("{name}.safetensors"));
        let pth = dir.path().join(format!("{name}.pth"));
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let run = pspnet(&["convert", &s(&fixture(name).join("checkpoint.pth")), &s(&native)]);
        assert!(run.status.success(), "{}", text(&run));
        // The layout defaults to the one the model came from.
        let run = pspnet(&["convert", &s(&native), &s(&pth)]);
        assert!(run.status.success() && text(&run).contains(&format!("({layout} layout")), "{}", text(&run));
        assert_eq!(logits(&pth, dir.path()), logits(&native, dir.path()), "{name}");
        let info = pspnet(&["info", &s(&pth)]);
        assert!(text(&info).contains(&format!("({layout} layout)")), "{}", text(&info));
    }
    let native = dir.path().join("semseg_r50.safetensors");
    let refused =
        pspnet(&["convert", native.to_str().unwrap(), dir.path().join("x.pth").to_str().unwrap(), "--layout", "mmseg"]);
    assert!(
        !refused.status.success() && text(&refused).contains("cannot express align_corners true"),
        "{}",
        text(&refused)
    );
    let caffe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/caffe/pspnet50_ade20k_deploy.caffemodel");
    let refused =
        pspnet(&["convert", caffe.to_str().unwrap(), dir.path().join("c.pth").to_str().unwrap(), "--layout", "semseg"]);
    assert!(!refused.status.success() && text(&refused).contains("rounds up"), "{}", text(&refused));
    assert!(!dir.path().join("x.pth").exists() && !dir.path().join("c.pth").exists());
}
