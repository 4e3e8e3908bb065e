use crate::ResNetError;

/// The residual block a ResNet is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// Two 3x3 convolutions (ResNet-18/34); expansion 1.
    Basic,
    /// 1x1 reduce, 3x3, 1x1 expand (ResNet-50/101/152); expansion 4. Which
    /// of the first two convolutions strides is [`StridePlacement`].
    Bottleneck,
}

impl BlockKind {
    /// Output channels per `planes`: 1 for basic blocks, 4 for bottlenecks.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// Which convolution of a strided bottleneck block carries the stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StridePlacement {
    /// The first 1x1 (reduce) convolution, as in the original ResNet and
    /// the authors' Caffe pspnet50_ADE20K.
    Reduce,
    /// The 3x3 convolution (ResNet v1.5), as in semseg and mmsegmentation.
    #[default]
    Middle,
}

/// The layers before the first stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StemKind {
    /// Three 3x3 convolutions, the first with stride 2 (PSPNet's and
    /// mmsegmentation's ResNetV1c), then a 3x3 stride-2 max pool.
    Deep,
    /// One 7x7 stride-2 convolution (the original ResNet), then the max pool.
    Classic,
}

/// Where the dilated stages put their dilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DilationRule {
    /// Every block of a dilated stage uses the stage's dilation (semseg).
    EveryBlock,
    /// The first block of a dilated stage uses half of it
    /// (mmsegmentation's `contract_dilation`).
    Contract,
}

/// Everything that determines a ResNet's structure; the channel widths
/// come from the weights.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResNetConfig {
    /// Block type.
    pub block: BlockKind,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Stem type.
    pub stem: StemKind,
    /// Input size over stage-4 size: 8, 16 or 32.
    pub output_stride: usize,
    /// How dilated stages distribute their dilation.
    pub dilation_rule: DilationRule,
    /// Strided shortcuts average-pool before their 1x1 convolution
    /// (mmsegmentation's ResNetV1d) instead of striding it.
    pub avg_down: bool,
    /// Which convolution of a strided bottleneck block strides.
    pub stride_placement: StridePlacement,
    /// The stem's max pool rounds its output size up, as Caffe's pooling
    /// does, instead of down as PyTorch's (they differ on even sizes).
    pub pool_ceil: bool,
}

impl ResNetConfig {
    /// The standard configuration of a depth (18, 34, 50, 101, 152): deep
    /// stem, output stride 8, semseg's dilation rule.
    pub fn for_depth(depth: usize) -> Result<Self, ResNetError> {
        let (block, layers) = match depth {
            18 => (BlockKind::Basic, [2, 2, 2, 2]),
            34 => (BlockKind::Basic, [3, 4, 6, 3]),
            50 => (BlockKind::Bottleneck, [3, 4, 6, 3]),
            101 => (BlockKind::Bottleneck, [3, 4, 23, 3]),
            152 => (BlockKind::Bottleneck, [3, 8, 36, 3]),
            _ => return Err(ResNetError::Config(format!("no ResNet of depth {depth} (18, 34, 50, 101, 152)"))),
        };
        Ok(ResNetConfig {
            block,
            layers,
            stem: StemKind::Deep,
            output_stride: 8,
            dilation_rule: DilationRule::EveryBlock,
            avg_down: false,
            stride_placement: StridePlacement::Middle,
            pool_ceil: false,
        })
    }

    /// `(stride, dilation)` of each stage for the output stride.
    pub fn stage_geometry(&self) -> Result<[(usize, usize); 4], ResNetError> {
        match self.output_stride {
            8 => Ok([(1, 1), (2, 1), (1, 2), (1, 4)]),
            16 => Ok([(1, 1), (2, 1), (2, 1), (1, 2)]),
            32 => Ok([(1, 1), (2, 1), (2, 1), (2, 1)]),
            os => Err(ResNetError::Config(format!("output stride {os} (expected 8, 16 or 32)"))),
        }
    }

    /// The dilation of block `index` in a stage of dilation `dilation`.
    pub fn block_dilation(&self, dilation: usize, index: usize) -> usize {
        match self.dilation_rule {
            DilationRule::Contract if index == 0 && dilation > 1 => dilation / 2,
            _ => dilation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_and_dilations_follow_the_references() {
        assert_eq!(ResNetConfig::for_depth(101).unwrap().layers, [3, 4, 23, 3]);
        assert!(ResNetConfig::for_depth(42).is_err());
        let mut c = ResNetConfig::for_depth(50).unwrap();
        assert_eq!(c.stage_geometry().unwrap()[3], (1, 4));
        assert_eq!((c.block_dilation(4, 0), c.block_dilation(4, 1)), (4, 4));
        c.dilation_rule = DilationRule::Contract;
        assert_eq!((c.block_dilation(4, 0), c.block_dilation(2, 0), c.block_dilation(1, 0)), (2, 1, 1));
        c.output_stride = 4;
        assert!(c.stage_geometry().is_err());
    }
}
