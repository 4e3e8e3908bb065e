use crate::{NnError, ParamSource};

/// A learned tensor and the gradient accumulated for it since the last
/// optimiser step.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Its dimensions (`[out, in, kh, kw]` for a convolution weight).
    pub dims: Vec<usize>,
    /// Its values, C order.
    pub value: Vec<f32>,
    /// The gradient of the loss with respect to `value`; empty until a
    /// backward pass reaches the parameter (PyTorch's `set_to_none`), so
    /// that the gradients of layers the backward pass has not reached yet
    /// take no memory.
    pub grad: Vec<f32>,
}

impl Param {
    /// A parameter of `dims` holding `value`, with no gradient yet.
    pub fn new(dims: Vec<usize>, value: Vec<f32>) -> Self {
        Param { dims, value, grad: Vec::new() }
    }

    /// Reads the parameter `name` of shape `dims` from `source`.
    pub fn take(source: &mut ParamSource, name: &str, dims: &[usize]) -> Result<Self, NnError> {
        Ok(Param::new(dims.to_vec(), source.take(name, dims)?))
    }

    /// Adds `grad` to the accumulated gradient, taking it as the gradient
    /// when there is none yet.
    pub fn accumulate(&mut self, grad: Vec<f32>) {
        if self.grad.is_empty() {
            self.grad = grad;
        } else {
            self.grad.iter_mut().zip(&grad).for_each(|(g, d)| *g += d);
        }
    }

    /// Takes the accumulated gradient (zeros where no backward pass reached
    /// the parameter), leaving none.
    pub fn take_grad(&mut self) -> Vec<f32> {
        match std::mem::take(&mut self.grad) {
            grad if grad.is_empty() => vec![0.0; self.value.len()],
            grad => grad,
        }
    }
}

/// One piece of a training layer's state, as [`Trainable::visit_state`]
/// hands it out.
#[derive(Debug)]
pub enum State<'a> {
    /// A learned parameter with its gradient.
    Learned(&'a mut Param),
    /// A running statistic (a batch-norm's mean or variance): saved, not
    /// learned by gradient.
    Running(&'a mut Vec<f32>),
}

/// Receives each piece of state with its full path.
pub type StateVisitor<'a> = dyn FnMut(&str, State<'_>) + 'a;

/// A layer whose state can be visited by path: for the optimiser (the
/// learned parameters) and for saving (everything).
pub trait Trainable {
    /// Calls `visit` on every parameter and running statistic, each under
    /// `prefix` joined with its own path.
    fn visit_state(&mut self, prefix: &str, visit: &mut StateVisitor);
}

impl<T: Trainable> Trainable for [T] {
    fn visit_state(&mut self, prefix: &str, visit: &mut StateVisitor) {
        for (i, layer) in self.iter_mut().enumerate() {
            layer.visit_state(&join(prefix, &i.to_string()), visit);
        }
    }
}

/// `prefix.name`, or `name` at the root.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}
