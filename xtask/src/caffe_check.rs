//! `cargo xtask caffe-check`: the Caffe loader at the authors' deploy sizes.
//!
//! Runs `xtask/python/caffe_reference.py` for the three architectures with
//! their deploy sizes (473x473 for pspnet50_ade20k and pspnet101_voc2012,
//! 713x713 for pspnet101_cityscapes) plus one other size (505x377), then
//! loads each model three ways (deploy file; release file; release file
//! with the prototxt) and compares the whole-image logits with the float64
//! evaluation of the Caffe graph. Fails over 1e-5 relative L2.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use pspnet_model::{Comparison, Overrides, Protocol, Segmenter};

const CASES: [(&str, &str); 3] =
    [("pspnet50_ade20k", "473x473"), ("pspnet101_voc2012", "473x473"), ("pspnet101_cityscapes", "713x713")];
const OTHER_SIZE: &str = "505x377";
const TOLERANCE: f64 = 1e-5;

pub(crate) fn run(root: &Path, python: &str) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("pspnet-caffe-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = root.join("xtask/python/caffe_reference.py");
    let mut worst: f64 = 0.0;
    println!("| model | input | size | rel. L2 | max abs | argmax agreement |");
    println!("|---|---|---|---|---|---|");
    for (arch, deploy) in CASES {
        let status = Command::new(python)
            .arg(&script)
            .args(["--out", dir.to_str().context("temp dir path")?, "--arch", arch, "--deploy", deploy])
            .args(["--size", deploy, "--size", OTHER_SIZE])
            .status()
            .with_context(|| format!("running {} (set PYTHON; it needs numpy and pillow)", script.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
        let prototxt = dir.join(format!("{arch}.prototxt"));
        let inputs = [
            ("deploy", dir.join(format!("{arch}_deploy.caffemodel")), None),
            ("release", dir.join(format!("{arch}_release.caffemodel")), None),
            ("release + prototxt", dir.join(format!("{arch}_release.caffemodel")), Some(prototxt)),
        ];
        for (how, model, prototxt) in inputs {
            let overrides = Overrides { prototxt, ..Overrides::default() };
            let segmenter = Segmenter::load(&model, &overrides, crate::conv_options()?)
                .with_context(|| format!("{arch} ({how})"))?;
            for size in [deploy, OTHER_SIZE] {
                let image = image::open(dir.join(format!("input_{size}.png")))?.to_rgb8();
                let (w, h) = (image.width() as usize, image.height() as usize);
                let logits = segmenter.scores(image.as_raw(), h, w, &Protocol::whole())?;
                let npy = std::fs::File::open(dir.join(format!("{arch}_{size}.npy")))?;
                let want = ArrayD::<f32>::read_npy(npy)?.into_raw_vec_and_offset().0;
                let c = Comparison::of(&logits, &want).context("the logits and the reference differ in size")?;
                println!(
                    "| {arch} | {how} | {size} | {:.2e} | {:.2e} | {:.4} |",
                    c.rel_l2, c.max_abs, c.argmax_agreement
                );
                worst = worst.max(c.rel_l2);
            }
        }
    }
    std::fs::remove_dir_all(&dir)?;
    if worst > TOLERANCE {
        bail!("worst relative L2 {worst:.2e} is over {TOLERANCE:e}");
    }
    println!("worst relative L2 {worst:.2e} (tolerance {TOLERANCE:e})");
    Ok(())
}
