//! Builders of the layers every part of PSPNet is made of, reading their
//! parameters by PyTorch's names from a [`ParamSource`].

use pspnet_kernels::{BN_EPS, BatchNorm, Conv2d, ConvSpec};

use crate::{NnError, ParamSource};

/// The four statistics of a `BatchNorm2d` of `channels` channels:
/// `weight`, `bias`, `running_mean`, `running_var` under `source`.
pub fn batch_norm(source: &mut ParamSource, channels: usize) -> Result<BatchNorm, NnError> {
    let mut stat = |name: &str| source.take(name, &[channels]);
    Ok(BatchNorm {
        gamma: stat("weight")?,
        beta: stat("bias")?,
        mean: stat("running_mean")?,
        var: stat("running_var")?,
        eps: BN_EPS,
    })
}

/// A bias-free `kernel x kernel` convolution from `in_channels` to
/// `out_channels` channels followed by a batch-norm, folded into one layer:
/// the weight `weight` and the statistics under `bn`. A width the network
/// leaves free (`None`) is read off the weight, or off the batch-norm when
/// the weight is the missing key.
pub fn conv_bn(
    source: &mut ParamSource,
    weight: &str,
    bn: &str,
    in_channels: usize,
    out_channels: Option<usize>,
    kernel: usize,
    spec: ConvSpec,
) -> Result<Conv2d, NnError> {
    let out = conv_bn_width(source, out_channels, weight, bn);
    let weight = source.take_tensor4(weight, [out, in_channels, kernel, kernel])?;
    let bn = batch_norm(&mut source.at(bn), out)?;
    Ok(Conv2d::with_options(weight, spec, source.options())?.with_batch_norm(&bn)?)
}

/// The output width of a convolution `weight` followed by a batch-norm
/// `bn`: `out_channels` when the network fixes it, else read off the
/// weight, or off the batch-norm when the weight is the missing key (0
/// when both are).
pub fn conv_bn_width(source: &ParamSource, out_channels: Option<usize>, weight: &str, bn: &str) -> usize {
    out_channels.or_else(|| source.dim(weight, 0)).or_else(|| source.dim(&format!("{bn}.weight"), 0)).unwrap_or(0)
}

/// A 1x1 convolution with bias from `in_channels` channels to `classes`:
/// `weight` and `bias` under `source`.
pub fn classifier(source: &mut ParamSource, in_channels: usize, classes: usize) -> Result<Conv2d, NnError> {
    let weight = source.take_tensor4("weight", [classes, in_channels, 1, 1])?;
    let bias = source.take("bias", &[classes])?;
    Ok(Conv2d::with_options(weight, ConvSpec::default(), source.options())?.with_bias(&bias)?)
}

#[cfg(test)]
mod tests {
    use pspnet_kernels::ConvOptions;
    use pspnet_tensor::Params;

    use super::*;
    use crate::{Misshaped, ParamStore};

    #[test]
    fn reads_pytorch_names_and_reports_every_bad_key() {
        let mut params = Params::new();
        params.insert("block.conv.weight", vec![2, 3, 3, 3], vec![0.5; 54]).unwrap();
        for s in ["weight", "bias", "running_mean"] {
            params.insert(format!("block.bn.{s}"), vec![2], vec![1.0, 2.0]).unwrap();
        }
        params.insert("cls.weight", vec![4, 2, 1, 1], vec![0.0; 8]).unwrap();
        params.insert("cls.bias", vec![5], vec![0.0; 5]).unwrap();
        params.insert("stray", vec![1], vec![0.0]).unwrap();
        let mut store = ParamStore::new(params, ConvOptions::default());
        let mut root = store.root();
        let conv =
            conv_bn(&mut root.at("block"), "conv.weight", "bn", 3, None, 3, ConvSpec::default().padding(1)).unwrap();
        assert_eq!(conv.weight_dims(), [2, 3, 3, 3]);
        classifier(&mut root.at("cls"), 2, 4).unwrap();
        let problems = store.finish();
        assert_eq!(problems.missing, ["block.bn.running_var"]);
        assert_eq!(problems.misshaped, [Misshaped { name: "cls.bias".into(), found: vec![5], expected: vec![4] }]);
        assert_eq!(problems.unexpected, ["stray"]);
    }

    /// A small misshaped weight whose width would make the next layer's
    /// stand-in far larger than the file is refused, not allocated.
    #[test]
    fn stand_ins_never_outgrow_the_checkpoint() {
        let mut params = Params::new();
        params.insert("a.weight", vec![100_000, 1, 1, 1], vec![0.0; 100_000]).unwrap();
        let mut store = ParamStore::new(params, ConvOptions::default());
        let mut root = store.root();
        let width = root.dim("a.weight", 0).unwrap();
        let err = root.take("b.weight", &[width, width, 3, 3]).unwrap_err();
        assert!(matches!(err, NnError::StandIn { ref name, .. } if name == "b.weight"), "{err}");
        assert!(err.to_string().contains("more than the checkpoint holds"), "{err}");
    }

    /// With both the weight and its batch-norm gone, the width is unknown:
    /// every key is still named, and building goes on.
    #[test]
    fn a_layer_with_no_parameters_is_named_whole() {
        let mut store = ParamStore::new(Params::new(), ConvOptions::default());
        conv_bn(&mut store.root(), "conv.weight", "bn", 8, None, 1, ConvSpec::default()).unwrap();
        let problems = store.finish();
        assert_eq!(problems.missing.len(), 5);
        assert!(problems.missing.contains(&"conv.weight".to_string()), "{problems:?}");
    }
}
