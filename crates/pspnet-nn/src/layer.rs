use pspnet_kernels::{Conv2d, KernelError};
use pspnet_tensor::{Shape, Tensor};

/// The protocol every part of a network follows, whatever its forward
/// pass takes and returns: what it produces from an input shape, what that
/// costs, what it holds, and its convolutions (to switch their precision).
/// A backward pass hangs on the same parts.
pub trait Layer {
    /// The output shape for an input shape, or why that input is refused.
    fn output_shape(&self, input: Shape) -> Result<Shape, KernelError>;

    /// Floating-point operations of its convolutions (2 per multiply-add)
    /// on an input of this shape.
    fn flops(&self, input: Shape) -> Result<u64, KernelError>;

    /// Parameters, counted as the checkpoint counts them (a folded
    /// batch-norm's four statistics included).
    fn parameters(&self) -> usize;

    /// Calls `visit` on every convolution, in the order the forward pass runs them.
    fn visit_convs(&mut self, visit: &mut dyn FnMut(&mut Conv2d));
}

impl Layer for Conv2d {
    fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        Conv2d::output_shape(self, input)
    }

    fn flops(&self, input: Shape) -> Result<u64, KernelError> {
        Ok(Conv2d::flops(self, input)?.0)
    }

    fn parameters(&self) -> usize {
        Conv2d::parameters(self)
    }

    fn visit_convs(&mut self, visit: &mut dyn FnMut(&mut Conv2d)) {
        visit(self)
    }
}

/// Layers applied one after another: each reads the previous one's output.
impl<L: Layer> Layer for [L] {
    fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        self.iter().try_fold(input, |shape, layer| layer.output_shape(shape))
    }

    fn flops(&self, input: Shape) -> Result<u64, KernelError> {
        let (total, _) = self.iter().try_fold((0, input), |(total, shape), layer| {
            Ok::<_, KernelError>((total + layer.flops(shape)?, layer.output_shape(shape)?))
        })?;
        Ok(total)
    }

    fn parameters(&self) -> usize {
        self.iter().map(Layer::parameters).sum()
    }

    fn visit_convs(&mut self, visit: &mut dyn FnMut(&mut Conv2d)) {
        self.iter_mut().for_each(|layer| layer.visit_convs(visit))
    }
}

/// Watches a forward pass: called with each stage's name as it finishes,
/// and its output where that is one tensor. It times a pass (profiling),
/// keeps its intermediate results (cross-checks), or does nothing.
pub type Observer<'a> = dyn FnMut(&'static str, Option<&Tensor>) + 'a;
