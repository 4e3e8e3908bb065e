//! PSPNet in training: the network of [`crate::PspNet`] with its
//! batch-norms unfolded, Dropout2d before both classifiers, and the loss of
//! the reference recipe (semseg's `tool/train.py`): the cross-entropy of
//! the main logits plus `aux_weight` times that of the auxiliary head on
//! stage 3 (deep supervision), each after resizing the logits bilinearly
//! to the labels' size.

use std::sync::Arc;

use pspnet_kernels::{
    ConvSpec, apply_channel_mask, dropout2d_mask, resize_bilinear, resize_bilinear_backward, softmax_cross_entropy,
};
use pspnet_nn::ParamSource;
use pspnet_nn::train::{BnMode, State, StateVisitor, TrainConv, TrainConvBn, Trainable};
use pspnet_ppm::TrainPyramidPooling;
use pspnet_resnet::TrainResNet;
use pspnet_tensor::{Params, Tensor};

use crate::{ModelError, PspNetConfig};

/// A PSPNet in training, under the canonical parameter names of
/// [`crate::PspNet`].
#[derive(Debug, Clone)]
pub struct TrainPspNet {
    backbone: TrainResNet,
    ppm: TrainPyramidPooling,
    bottleneck: TrainConvBn,
    classifier: TrainConv,
    aux: Option<(TrainConvBn, TrainConv)>,
}

/// How one training pass runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassOptions {
    /// How the batch-norms normalise.
    pub bn: BnMode,
    /// Dropout2d's probability before both classifiers (0: none).
    pub dropout: f32,
    /// Where the pass's dropout masks are drawn from.
    pub seed: u64,
    /// The auxiliary loss's weight (0: the head does not run).
    pub aux_weight: f32,
    /// The label that counts for nothing.
    pub ignore: u16,
    /// What the loss's gradient is multiplied by (`1 / micro-batches` when
    /// gradients accumulate over several).
    pub grad_scale: f32,
}

/// The losses of one pass: the unweighted mean cross-entropies and
/// `main + aux_weight * aux`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Losses {
    /// The main head's.
    pub main: f32,
    /// The auxiliary head's (0 when it did not run).
    pub aux: f32,
    /// What is minimised.
    pub total: f32,
}

/// A head's classifier output and what its backward pass needs.
struct HeadPass {
    mask: Option<Vec<f32>>,
    grad: Tensor,
    loss: f32,
}

impl TrainPspNet {
    /// Builds the network from canonical parameters under `source`, as
    /// [`crate::PspNet::build`] reads them.
    pub fn build(config: &PspNetConfig, source: &mut ParamSource) -> Result<Self, ModelError> {
        let backbone = TrainResNet::build(&config.backbone, &mut source.at("backbone"))?;
        let [_, _, stage3, features] = backbone.out_channels();
        let ppm = TrainPyramidPooling::build(config.ppm.clone(), &mut source.at("decode.ppm"), features)?;
        let spec = ConvSpec::default().padding(1);
        let bottleneck = TrainConvBn::build(
            &mut source.at("decode.bottleneck"),
            "conv.weight",
            "bn",
            ppm.out_channels(features),
            None,
            3,
            spec,
        )?
        .with_relu(true);
        let classes =
            source.dim("decode.classifier.weight", 0).or_else(|| source.dim("decode.classifier.bias", 0)).unwrap_or(0);
        let classifier = TrainConv::build(
            &mut source.at("decode.classifier"),
            "weight",
            Some("bias"),
            [classes, bottleneck.out_channels(), 1, 1],
            ConvSpec::default(),
        )?;
        let aux = if source.contains("aux.conv.weight") {
            let conv =
                TrainConvBn::build(&mut source.at("aux"), "conv.weight", "bn", stage3, None, 3, spec)?.with_relu(true);
            let dims = [classes, conv.out_channels(), 1, 1];
            let classifier =
                TrainConv::build(&mut source.at("aux.classifier"), "weight", Some("bias"), dims, ConvSpec::default())?;
            Some((conv, classifier))
        } else {
            None
        };
        Ok(TrainPspNet { backbone, ppm, bottleneck, classifier, aux })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classifier.out_channels()
    }

    /// Whether the auxiliary head exists.
    pub fn has_aux(&self) -> bool {
        self.aux.is_some()
    }

    /// One forward and backward pass over a normalised batch `images` with
    /// `labels` (`N x H x W` class ids, at the size `label_hw` the logits
    /// are resized to): adds every parameter's gradient and returns the
    /// losses.
    pub fn pass(
        &mut self,
        images: Tensor,
        labels: &[u16],
        label_hw: [usize; 2],
        options: &PassOptions,
    ) -> Result<Losses, ModelError> {
        let align_corners = self.ppm.config().align_corners;
        let mode = options.bn;
        let stages = self.backbone.forward(Arc::new(images), mode)?;
        let context = self.ppm.forward(Arc::clone(&stages[3]), mode)?;
        let head = self.bottleneck.forward(Arc::new(context), mode)?;
        let main = classify(&mut self.classifier, head, label_hw, labels, options, 0, align_corners)?;
        let aux = match (&mut self.aux, options.aux_weight > 0.0) {
            (Some((conv, classifier)), true) => {
                let features = conv.forward(Arc::clone(&stages[2]), mode)?;
                Some(classify(classifier, features, label_hw, labels, options, 1, align_corners)?)
            }
            _ => None,
        };
        drop(stages);
        let losses = Losses {
            main: main.loss,
            aux: aux.as_ref().map_or(0.0, |a| a.loss),
            total: main.loss + options.aux_weight * aux.as_ref().map_or(0.0, |a| a.loss),
        };

        let grad = unclassify(&mut self.classifier, main, options.grad_scale)?;
        let grad = self.bottleneck.backward(grad, true)?.expect("asked for the input's gradient");
        let stage4 = self.ppm.backward(&grad)?;
        let stage3 = match (aux, &mut self.aux) {
            (Some(pass), Some((conv, classifier))) => {
                let grad = unclassify(classifier, pass, options.grad_scale * options.aux_weight)?;
                conv.backward(grad, true)?
            }
            _ => None,
        };
        self.backbone.backward(vec![None, None, stage3, Some(stage4)])?;
        Ok(losses)
    }

    /// The current parameters and running statistics under their canonical
    /// names: what [`crate::PspNet::build`] and the checkpoint writers take.
    pub fn params(&mut self) -> Result<Params, ModelError> {
        let mut params = Params::new();
        let mut failed = None;
        self.visit_state("", &mut |name, state| {
            let (dims, values) = match state {
                State::Learned(p) => (p.dims.clone(), p.value.clone()),
                State::Running(v) => (vec![v.len()], v.clone()),
            };
            if let Err(e) = params.insert(name, dims, values) {
                failed.get_or_insert(e);
            }
        });
        match failed {
            Some(e) => Err(ModelError::Tensor(e)),
            None => Ok(params),
        }
    }
}

/// Dropout, the classifier, the resize to the labels and the loss of one
/// head (`head` 0: main, 1: auxiliary, for its dropout draws).
fn classify(
    classifier: &mut TrainConv,
    features: Arc<Tensor>,
    label_hw: [usize; 2],
    labels: &[u16],
    options: &PassOptions,
    head: u64,
    align_corners: bool,
) -> Result<HeadPass, ModelError> {
    let shape = features.shape();
    let (input, mask) = if options.dropout > 0.0 {
        let seed = options.seed.wrapping_mul(2).wrapping_add(head);
        let mask = dropout2d_mask(shape.n(), shape.c(), options.dropout, seed)?;
        (Arc::new(apply_channel_mask(&features, &mask)?), Some(mask))
    } else {
        (features, None)
    };
    let low = classifier.forward(input)?;
    let logits = resize_bilinear(&low, label_hw, align_corners)?;
    let (loss, grad) = softmax_cross_entropy(logits, labels, options.ignore)?;
    // Back to the classifier's resolution at once: only the small gradient waits for the backward pass.
    let grad = resize_bilinear_backward(&grad, low.shape(), align_corners)?;
    Ok(HeadPass { mask, grad, loss })
}

/// The backward pass of [`classify`], the loss's gradient scaled by
/// `scale`: the gradient of the head's features.
fn unclassify(classifier: &mut TrainConv, pass: HeadPass, scale: f32) -> Result<Tensor, ModelError> {
    let mut grad = pass.grad;
    grad.as_mut_slice().iter_mut().for_each(|g| *g *= scale);
    let grad = classifier.backward(&grad, true)?.expect("asked for the input's gradient");
    Ok(match pass.mask {
        Some(mask) => apply_channel_mask(&grad, &mask)?,
        None => grad,
    })
}

impl Trainable for TrainPspNet {
    fn visit_state(&mut self, prefix: &str, visit: &mut StateVisitor) {
        use pspnet_nn::train::join;
        self.backbone.visit_state(&join(prefix, "backbone"), visit);
        self.ppm.visit_state(&join(prefix, "decode.ppm"), visit);
        self.bottleneck.visit_state(&join(prefix, "decode.bottleneck"), visit);
        self.classifier.visit_state(&join(prefix, "decode.classifier"), visit);
        if let Some((conv, classifier)) = &mut self.aux {
            conv.visit_state(&join(prefix, "aux"), visit);
            classifier.visit_state(&join(prefix, "aux.classifier"), visit);
        }
    }
}
