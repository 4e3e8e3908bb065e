use pspnet_kernels::{
    Conv2d, ConvSpec, KernelError, adaptive_avg_pool2d_levels, adaptive_max_pool2d_levels, resize_bilinear_into,
};
use pspnet_nn::{Layer, ParamSource, conv_bn};
use pspnet_tensor::{Shape, Tensor};

use crate::PpmError;

/// How a bin summarises its pixels (the paper's ablation: average wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pooling {
    /// Adaptive average pooling.
    Average,
    /// Adaptive max pooling.
    Max,
}

/// The shape of the pyramid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PyramidPoolingConfig {
    /// Grid size of each level (`[1, 2, 3, 6]` in the paper).
    pub bins: Vec<usize>,
    /// Average or max pooling.
    pub pooling: Pooling,
    /// Bilinear upsampling convention (semseg: true; mmsegmentation: false).
    pub align_corners: bool,
    /// Each level reduced by a 1x1 conv + BN + ReLU (the paper's dimension
    /// reduction); false for its ablation, the pooled maps as they are.
    pub reduction: bool,
}

impl Default for PyramidPoolingConfig {
    /// The paper's module: bins 1, 2, 3, 6, average pooling, upsampling with
    /// aligned corners as in the official code.
    fn default() -> Self {
        PyramidPoolingConfig { bins: vec![1, 2, 3, 6], pooling: Pooling::Average, align_corners: true, reduction: true }
    }
}

/// A pyramid pooling module: `[x, up(reduce(pool_b(x))) for b in bins]`
/// concatenated along channels.
#[derive(Debug, Clone)]
pub struct PyramidPooling {
    config: PyramidPoolingConfig,
    /// One 1x1 conv (+ folded BN + ReLU) per bin, or none at all, in which
    /// case the pooled maps are upsampled as they are.
    reductions: Option<Vec<Conv2d>>,
}

impl PyramidPooling {
    /// Assembles a module from its reduction convolutions (one 1x1 per bin,
    /// with whatever epilogue they carry), or `None` for no reduction, as
    /// `config.reduction` says.
    pub fn new(config: PyramidPoolingConfig, reductions: Option<Vec<Conv2d>>) -> Result<Self, PpmError> {
        if config.bins.is_empty() || config.bins.contains(&0) {
            return Err(PpmError::Config(format!("bins must be positive, got {:?}", config.bins)));
        }
        if config.reduction != reductions.is_some() {
            return Err(PpmError::Config(format!(
                "reduction {} but {} reduction convolutions given",
                config.reduction,
                if reductions.is_some() { "some" } else { "no" }
            )));
        }
        if let Some(convs) = &reductions {
            if convs.len() != config.bins.len() {
                return Err(PpmError::Config(format!(
                    "{} bins but {} reduction convolutions",
                    config.bins.len(),
                    convs.len()
                )));
            }
            if let Some(c) = convs.iter().find(|c| c.weight_dims()[2..] != [1, 1]) {
                return Err(PpmError::Config(format!("reduction convolutions are 1x1, got {:?}", c.weight_dims())));
            }
        }
        Ok(PyramidPooling { config, reductions })
    }

    /// Reads one reduction per bin from `{i}.conv.weight` and `{i}.bn.*`
    /// under `source` (conv + batch-norm + ReLU, as both reference
    /// implementations build it), for `in_channels` channels in. The file's
    /// branch count must match the bins; a difference is noted in `source`.
    pub fn build(config: PyramidPoolingConfig, source: &mut ParamSource, in_channels: usize) -> Result<Self, PpmError> {
        if !config.reduction {
            return PyramidPooling::new(config, None);
        }
        let branches = (0..).take_while(|i| source.contains(&format!("{i}.conv.weight"))).count();
        if branches != config.bins.len() {
            let problem =
                format!("{}: {branches} pyramid branches in the file, bins {:?} given", source.prefix(), config.bins);
            source.note(problem);
        }
        let convs = (0..config.bins.len())
            .map(|i| {
                let conv = conv_bn(&mut source.at(i), "conv.weight", "bn", in_channels, None, 1, ConvSpec::default())?;
                Ok(conv.with_relu(true))
            })
            .collect::<Result<Vec<_>, PpmError>>()?;
        PyramidPooling::new(config, Some(convs))
    }

    /// The configuration.
    pub fn config(&self) -> &PyramidPoolingConfig {
        &self.config
    }

    /// Channels out for `in_channels` channels in.
    pub fn out_channels(&self, in_channels: usize) -> usize {
        in_channels + self.level_channels(in_channels).iter().sum::<usize>()
    }

    /// Channels of each level for `in_channels` channels in, in the order of
    /// the concatenation (after the input's own channels).
    pub fn level_channels(&self, in_channels: usize) -> Vec<usize> {
        match &self.reductions {
            Some(convs) => convs.iter().map(|c| c.weight_dims()[0]).collect(),
            None => vec![in_channels; self.config.bins.len()],
        }
    }

    /// The levels at their own resolution (`bin x bin`), pooled in one pass
    /// over the features and reduced: the context before it is upsampled,
    /// for a consumer that can use it at that size (see
    /// `pspnet_kernels::UpsampledConv`).
    pub fn levels(&self, x: &Tensor) -> Result<Vec<Tensor>, PpmError> {
        let sizes: Vec<[usize; 2]> = self.config.bins.iter().map(|&bin| [bin, bin]).collect();
        let pooled = match self.config.pooling {
            Pooling::Average => adaptive_avg_pool2d_levels(x, &sizes)?,
            Pooling::Max => adaptive_max_pool2d_levels(x, &sizes)?,
        };
        match &self.reductions {
            Some(convs) => Ok(pooled.iter().zip(convs).map(|(p, conv)| conv.forward(p)).collect::<Result<_, _>>()?),
            None => Ok(pooled),
        }
    }

    /// Widens a feature map with its pyramid of context: each level is
    /// upsampled straight into its slot of the output.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, PpmError> {
        let mut out = Tensor::zeros(x.shape().with_c(self.out_channels(x.shape().c()))?);
        out.write_channels(0, x)?;
        let mut channel0 = x.shape().c();
        for level in self.levels(x)? {
            resize_bilinear_into(&level, &mut out, channel0, self.config.align_corners)?;
            channel0 += level.shape().c();
        }
        Ok(out)
    }
}

/// The module as one layer: the feature map in, its concatenation with the
/// upsampled levels out.
impl Layer for PyramidPooling {
    fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        Ok(input.with_c(self.out_channels(input.c()))?)
    }

    /// The reduction convolutions' operations on the pooled bins (pooling
    /// and upsampling are not counted).
    fn flops(&self, input: Shape) -> Result<u64, KernelError> {
        let Some(convs) = &self.reductions else { return Ok(0) };
        let mut total = 0;
        for (conv, &bin) in convs.iter().zip(&self.config.bins) {
            total += Layer::flops(conv, input.with_hw(bin, bin)?)?;
        }
        Ok(total)
    }

    fn parameters(&self) -> usize {
        self.reductions.iter().flatten().map(Conv2d::parameters).sum()
    }

    fn visit_convs(&mut self, visit: &mut dyn FnMut(&mut Conv2d)) {
        self.reductions.iter_mut().flatten().for_each(visit)
    }
}
