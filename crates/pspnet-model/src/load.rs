//! From a checkpoint file to a network: the layout's key mapping, the
//! spec, and the builders' check of every key.

use std::path::Path;

use pspnet_kernels::{ConvOptions, Precision};
use pspnet_nn::ParamStore;
use pspnet_tensor::Params;
use pspnet_weights::caffe::{read_caffemodel, read_caffemodel_from, read_prototxt};
use pspnet_weights::{Checkpoint, Format, Value, WeightsError};

use crate::caffe;
use crate::layout::{detect, infer, layout_problems, rename, source_name};
use crate::native::native_spec;
use crate::{Layout, ModelError, ModelSpec, Overrides, PspNet, PspNetConfig};

/// A checkpoint's tensors under canonical names, with what its layout and
/// weights say about the network; not yet checked against it.
struct Imported {
    params: Params,
    spec: ModelSpec,
    /// The layout the keys are named in.
    layout: Layout,
    /// Keys no renaming rule matched.
    unmatched: Vec<String>,
}

/// Maps a checkpoint onto canonical parameters and infers its [`ModelSpec`]
/// (a native file's recorded one), then applies `overrides`.
fn import(checkpoint: Checkpoint, path: &Path, overrides: &Overrides) -> Result<Imported, ModelError> {
    let native = match (&checkpoint.format, &checkpoint.extra) {
        (Format::Safetensors, Value::Dict(entries)) => {
            let metadata =
                entries.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string()))).collect();
            native_spec(&metadata, path)?
        }
        _ => None,
    };
    let state = checkpoint.state_dict;
    let layout = detect(&state).ok_or_else(|| ModelError::UnknownLayout {
        path: path.to_path_buf(),
        sample: state.keys().take(5).map(str::to_string).collect(),
    })?;
    let (params, unmatched, avg_down) = rename(state, layout, path)?;
    let spec = match native {
        Some(spec) => spec,
        None => infer(&params, layout, avg_down, &checkpoint.extra, path)?,
    };
    Ok(Imported { params, spec: overridden(spec, overrides, path)?, layout, unmatched })
}

/// Whether `path` names a Caffe model (by its extension, as Caffe's own
/// files have no signature).
fn is_caffemodel(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("caffemodel"))
}

/// Reads a checkpoint file of any supported format, a `.caffemodel` with
/// `overrides.prototxt` when given.
fn import_file(path: &Path, data: Option<Vec<u8>>, overrides: &Overrides) -> Result<Imported, ModelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::from(WeightsError::Io { path, source })
    };
    if !is_caffemodel(path) {
        if let Some(prototxt) = &overrides.prototxt {
            return Err(ModelError::Input(format!(
                "--prototxt {} describes a .caffemodel; {} is not one",
                prototxt.display(),
                path.display()
            )));
        }
        let checkpoint = match data {
            Some(data) => pspnet_weights::load_bytes(path, data)?,
            None => pspnet_weights::load(path)?,
        };
        return import(checkpoint, path, overrides);
    }
    let net = match data {
        Some(data) => read_caffemodel(path, &data)?,
        None => {
            let file = std::fs::File::open(path).map_err(io(path))?;
            let len = file.metadata().map_err(io(path))?.len();
            read_caffemodel_from(path, std::io::BufReader::new(file), len)?
        }
    };
    let architecture = match &overrides.prototxt {
        Some(prototxt) => Some(read_prototxt(prototxt, &std::fs::read_to_string(prototxt).map_err(io(prototxt))?)?),
        None => None,
    };
    let (params, spec, unmatched) = caffe::import(net, architecture.as_ref(), path)?;
    Ok(Imported { params, spec: overridden(spec, overrides, path)?, layout: Layout::Caffe, unmatched })
}

/// `spec` with what `overrides` set, checked for plausibility.
fn overridden(mut spec: ModelSpec, overrides: &Overrides, path: &Path) -> Result<ModelSpec, ModelError> {
    if let Some(a) = overrides.align_corners {
        spec.ppm.align_corners = a;
    }
    if let Some(os) = overrides.output_stride {
        spec.backbone.output_stride = os;
    }
    if let Some(bins) = &overrides.bins {
        spec.ppm.bins = bins.clone();
    }
    check_plausible(&spec).map_err(|reason| ModelError::Spec { path: path.to_path_buf(), reason })?;
    Ok(spec)
}

/// The most blocks per stage (ResNet-152 has 36) and pyramid levels (the
/// paper's has 4), and the largest bin: beyond them a spec is taken for
/// corrupt rather than built.
const MAX_BLOCKS: usize = 256;
const MAX_LEVELS: usize = 16;
const MAX_BIN: usize = 256;

/// Refuses an architecture no checkpoint describes, before anything is built
/// for it (its counts may come from a stranger's file).
fn check_plausible(spec: &ModelSpec) -> Result<(), String> {
    let layers = spec.backbone.layers;
    if layers.iter().any(|&blocks| blocks == 0 || blocks > MAX_BLOCKS) {
        return Err(format!("blocks per stage {layers:?}: each must be 1 to {MAX_BLOCKS}"));
    }
    let bins = &spec.ppm.bins;
    if bins.is_empty() || bins.len() > MAX_LEVELS || bins.iter().any(|&bin| bin == 0 || bin > MAX_BIN) {
        return Err(format!("pyramid bins {bins:?}: 1 to {MAX_LEVELS} levels of 1 to {MAX_BIN} bins"));
    }
    Ok(())
}

impl Imported {
    /// Builds the network; every key that does not fit it (missing,
    /// misshaped, unexpected) is reported together, in the file's names.
    fn build(self, path: &Path, options: ConvOptions) -> Result<(PspNet, ModelSpec), ModelError> {
        let Imported { params, spec, layout, unmatched } = self;
        let config = PspNetConfig { backbone: spec.backbone.clone(), ppm: spec.ppm.clone() };
        // Built in f32 and switched after: bf16 copies of the weights made
        // while the checkpoint's copy is still held would raise the peak.
        let mut store = ParamStore::new(params, ConvOptions { precision: Precision::F32, ..options });
        // A build that failed left keys untaken: its own error says why.
        let mut net = PspNet::build(config, &mut store.root())?;
        let mut problems = layout_problems(layout, unmatched, store.finish());
        if net.classes() != spec.classes {
            let classifier = source_name(layout, "decode.classifier.weight");
            problems.misshaped.push(format!("{classifier}: {} classes, the spec says {}", net.classes(), spec.classes));
        }
        if !problems.is_empty() {
            return Err(ModelError::Layout { path: path.to_path_buf(), layout: layout.name(), problems });
        }
        net.set_precision(options.precision);
        Ok((net, spec))
    }
}

/// Loads a checkpoint (any format [`pspnet_weights::load`] reads, in a
/// known layout) as a network whose convolutions run as `options` say.
pub(crate) fn load(
    path: &Path,
    overrides: &Overrides,
    options: ConvOptions,
) -> Result<(PspNet, ModelSpec), ModelError> {
    import_file(path, None, overrides)?.build(path, options)
}

/// [`load`] for a checkpoint already in memory; `path` only names it in errors.
pub(crate) fn load_bytes(
    path: &Path,
    data: Vec<u8>,
    overrides: &Overrides,
    options: ConvOptions,
) -> Result<(PspNet, ModelSpec), ModelError> {
    import_file(path, Some(data), overrides)?.build(path, options)
}

/// A checkpoint's parameters under canonical names with its [`ModelSpec`],
/// checked by building the network they describe (for conversion: the
/// parameters are kept, the network dropped).
pub fn read_checkpoint(path: &Path, overrides: &Overrides) -> Result<(Params, ModelSpec), ModelError> {
    let imported = import_file(path, None, overrides)?;
    let params = imported.params.clone();
    let (_, spec) = imported.build(path, ConvOptions::default())?;
    Ok((params, spec))
}
