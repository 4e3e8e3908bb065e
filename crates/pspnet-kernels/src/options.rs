//! What a caller chooses about a convolution, as values: its algorithm,
//! its arithmetic and its instruction set.

use crate::{Isa, KernelError};

/// How a [`Conv2d`](crate::Conv2d) computes its sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConvAlgorithm {
    /// Winograd for 3x3 stride-1 layers (dilated or not), the direct
    /// implicit GEMM for every other shape. In bf16, whose GEMMs cost
    /// half as much while the transforms do not get cheaper, Winograd is
    /// taken from [`BF16_WINOGRAD_MIN_CHANNELS`](crate::BF16_WINOGRAD_MIN_CHANNELS) input channels on: narrower
    /// 3x3 layers run direct there (5x more exact).
    #[default]
    Auto,
    /// The direct implicit GEMM: each output is a plain sum of
    /// `in x kh x kw` products, the most exact order.
    Direct,
    /// Winograd F(4x4, 3x3) or F(5x5, 3x3), whichever does less work on the
    /// input ([`Conv2d::winograd_tile`](crate::Conv2d::winograd_tile)): a quarter or a fifth of the
    /// multiplications, at a rounding error still far below the 1e-5
    /// relative budget of the model tests. Only 3x3 kernels with stride 1.
    Winograd,
    /// As `Auto`, but the Winograd layers in F(2x2, 3x3): 2.25x fewer
    /// multiplications than the direct sum, whose maps (0, ±1, ±1/2) round
    /// about as little. Training's forward pass runs it: F(4)'s and F(5)'s
    /// extra rounding flips enough ReLU and max-pool decisions to leave the
    /// gradients outside the tolerance of the gradient test.
    SmallWinograd,
}

/// The arithmetic of a convolution's multiply-adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 operands and sums.
    #[default]
    F32,
    /// Operands rounded to bfloat16 (8-bit mantissa), products summed in
    /// f32: twice the multiply-adds per instruction where the CPU has
    /// AVX512-BF16 (a portable kernel elsewhere), at about 3 significant
    /// digits per operand. The pyramid bins' tiny 1x1 convolutions stay f32.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = KernelError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(KernelError::UnknownPrecision(name.to_string())),
        }
    }
}

impl std::str::FromStr for ConvAlgorithm {
    type Err = KernelError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(ConvAlgorithm::Auto),
            "direct" => Ok(ConvAlgorithm::Direct),
            _ => Err(KernelError::UnknownConvAlgorithm(name.to_string())),
        }
    }
}

/// How new convolutions run, chosen by the caller as a value (the binary
/// reads it from its environment; libraries never do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvOptions {
    /// The micro-kernels' instruction set; this CPU must support it.
    pub isa: Isa,
    /// How the sums are computed.
    pub algorithm: ConvAlgorithm,
    /// The arithmetic of the multiply-adds.
    pub precision: Precision,
}

impl ConvOptions {
    /// The options an instruction set's and an algorithm's names choose
    /// (as `PSPNET_ISA` and `PSPNET_CONV` spell them; absent or blank: the
    /// defaults), in f32. The set must be available on this CPU.
    pub fn from_names(isa: Option<&str>, algorithm: Option<&str>) -> Result<ConvOptions, KernelError> {
        let mut options = ConvOptions::default();
        if let Some(isa) = isa.filter(|n| !n.trim().is_empty()) {
            options.isa = isa.parse::<Isa>()?.check_available()?;
        }
        if let Some(algorithm) = algorithm.filter(|n| !n.trim().is_empty()) {
            options.algorithm = algorithm.parse()?;
        }
        Ok(options)
    }
}

impl Default for ConvOptions {
    /// The fastest instruction set this CPU has, [`ConvAlgorithm::Auto`], f32.
    fn default() -> Self {
        ConvOptions { isa: Isa::best(), algorithm: ConvAlgorithm::Auto, precision: Precision::F32 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_choose_the_options() {
        assert_eq!(ConvOptions::from_names(None, Some(" ")).unwrap(), ConvOptions::default());
        let chosen = ConvOptions::from_names(Some("portable"), Some("direct")).unwrap();
        assert_eq!((chosen.isa, chosen.algorithm), (Isa::Portable, ConvAlgorithm::Direct));
        assert!(ConvOptions::from_names(Some("sse9"), None).unwrap_err().to_string().contains("\"sse9\""));
        assert!(ConvOptions::from_names(None, Some("fast")).unwrap_err().to_string().contains("\"fast\""));
    }
}
