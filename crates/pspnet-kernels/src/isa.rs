use std::fmt;
use std::str::FromStr;

use crate::KernelError;

/// The instruction set a convolution's micro-kernel uses.
///
/// [`Isa::best`] is the fastest one the CPU has; a
/// [`Conv2d`](crate::Conv2d) can be pinned to another with
/// [`ConvOptions`](crate::ConvOptions) or
/// [`Conv2d::with_isa`](crate::Conv2d::with_isa) (the binary's
/// `PSPNET_ISA` does so for every layer). Every path computes the
/// same convolution; they differ in speed and in the last bits of rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust that every target compiles; the reference path.
    Portable,
    /// x86-64 AVX2 with fused multiply-add (8 lanes).
    Avx2,
    /// x86-64 AVX-512F (16 lanes).
    Avx512,
}

impl Isa {
    /// Every variant, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The fastest instruction set this CPU supports.
    pub fn best() -> Isa {
        *Isa::available().last().expect("portable is always available")
    }

    /// The instruction sets this CPU supports, slowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.is_available()).collect()
    }

    /// Whether this CPU can run this instruction set.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => false,
        }
    }

    /// `Ok(self)` if available, else [`KernelError::IsaUnavailable`].
    pub fn check_available(self) -> Result<Isa, KernelError> {
        if self.is_available() {
            return Ok(self);
        }
        let available = Isa::available().iter().map(|isa| isa.name()).collect::<Vec<_>>().join(", ");
        Err(KernelError::IsaUnavailable { isa: self.name(), available })
    }

    /// The set's name (`portable`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" => Ok(Isa::Portable),
            "avx2" => Ok(Isa::Avx2),
            "avx512" | "avx512f" => Ok(Isa::Avx512),
            _ => Err(KernelError::UnknownIsa(s.to_string())),
        }
    }
}

/// Defines `fn $name(isa: Isa, args..)` running `$body` compiled for `isa`:
/// plain Rust (no intrinsics) that LLVM vectorises to the instruction set's
/// full width, for the loops around the micro-kernels (transforms, gemv).
/// `isa` must be available on this CPU, as every [`Isa`] in use is.
macro_rules! multiversion {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        $vis fn $name(isa: $crate::Isa, $($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            /// # Safety
            /// The CPU must support AVX-512F.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($arg: $ty),*) {
                generic($($arg),*)
            }
            /// # Safety
            /// The CPU must support AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                generic($($arg),*)
            }
            match isa {
                // SAFETY: an `Isa` other than portable is only used once the
                // CPU has been checked to support it (`Isa::check_available`).
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => generic($($arg),*),
            }
        }
    };
}

pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_unknown_ones() {
        for isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
        }
        assert_eq!(" AVX512F ".parse::<Isa>().unwrap(), Isa::Avx512);
        let err = "sse9".parse::<Isa>().unwrap_err();
        assert!(err.to_string().contains("\"sse9\""));
    }

    #[test]
    fn portable_is_always_available_and_best_is_available() {
        assert_eq!(Isa::available()[0], Isa::Portable);
        assert!(Isa::best().is_available());
    }
}
