/// Stochastic gradient descent as `torch.optim.SGD` computes it, in f32 and
/// in its order: per parameter value, `g += weight_decay * w`, then the
/// momentum buffer `b = momentum * b + g` (`b = g` at the first step), then
/// `w -= lr * b`. Each parameter is stepped with its group's rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Sgd {
    /// The momentum (0.9 in PSPNet's recipe).
    pub momentum: f32,
    /// The L2 weight decay (1e-4), on every parameter, batch-norm's included.
    pub weight_decay: f32,
    /// One momentum buffer per parameter, once it has been stepped.
    buffers: Vec<Option<Vec<f32>>>,
}

impl Sgd {
    /// An optimiser for `parameters` parameters, with no momentum yet.
    pub fn new(parameters: usize, momentum: f32, weight_decay: f32) -> Self {
        Sgd { momentum, weight_decay, buffers: vec![None; parameters] }
    }

    /// The momentum buffers (`None` before a parameter's first step), for
    /// saving a run to resume it.
    pub fn buffers(&self) -> &[Option<Vec<f32>>] {
        &self.buffers
    }

    /// Restores saved momentum buffers.
    pub fn set_buffers(&mut self, buffers: Vec<Option<Vec<f32>>>) {
        self.buffers = buffers;
    }

    /// One step of parameter `index` (`weights`, with `gradient` of the same
    /// length) at rate `lr`.
    pub fn step(&mut self, index: usize, weights: &mut [f32], gradient: &[f32], lr: f32) {
        assert_eq!(weights.len(), gradient.len(), "a gradient per weight");
        let (momentum, decay) = (self.momentum, self.weight_decay);
        let decayed = weights.iter().zip(gradient).map(|(&w, &g)| g + decay * w);
        let buffer = match &mut self.buffers[index] {
            Some(buffer) => {
                buffer.iter_mut().zip(decayed).for_each(|(b, g)| *b = momentum * *b + g);
                buffer
            }
            slot @ None => slot.insert(decayed.collect()),
        };
        weights.iter_mut().zip(buffer.iter()).for_each(|(w, &b)| *w -= lr * b);
    }
}
