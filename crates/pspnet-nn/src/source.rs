use pspnet_kernels::ConvOptions;
use pspnet_tensor::{Params, Shape, Tensor};

use crate::NnError;

/// Values of stand-ins allowed beyond the parameters' own count, so that a
/// checkpoint missing most of its keys is still named whole.
const STAND_IN_SLACK: usize = 1 << 20;

/// A parameter whose shape contradicts the network being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misshaped {
    /// Its path.
    pub name: String,
    /// Its shape in the checkpoint.
    pub found: Vec<usize>,
    /// The shape the network needs.
    pub expected: Vec<usize>,
}

/// Everything a set of parameters gets wrong for a network, all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    /// Paths the network needs that the parameters lack, in build order.
    pub missing: Vec<String>,
    /// Parameters of the wrong shape, in build order.
    pub misshaped: Vec<Misshaped>,
    /// Paths no part of the network took, sorted.
    pub unexpected: Vec<String>,
    /// Contradictions that are not one parameter's (e.g. a branch count).
    pub notes: Vec<String>,
}

impl Problems {
    /// Whether the parameters fit the network exactly.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.misshaped.is_empty() && self.unexpected.is_empty() && self.notes.is_empty()
    }
}

/// Parameters handed out to a network's builders, who take each one by
/// path and shape; the store notes what is missing or misshaped, and
/// [`ParamStore::finish`] adds what nobody took.
#[derive(Debug)]
pub struct ParamStore {
    params: Params,
    options: ConvOptions,
    problems: Problems,
    /// Values the stand-ins may still take: the parameters' own count (so
    /// a hostile file cannot make building take more memory than it holds)
    /// plus [`STAND_IN_SLACK`].
    stand_in_budget: usize,
}

impl ParamStore {
    /// A store over `params`, whose convolutions will run with `options`.
    pub fn new(params: Params, options: ConvOptions) -> Self {
        let values: usize = params.iter().map(|(_, p)| p.data().len()).sum();
        ParamStore { params, options, problems: Problems::default(), stand_in_budget: values + STAND_IN_SLACK }
    }

    /// The source at the root of the parameter paths.
    pub fn root(&mut self) -> ParamSource<'_> {
        ParamSource { store: self, prefix: String::new() }
    }

    /// Everything that did not fit: the problems noted while building, and
    /// every parameter left untaken as unexpected.
    pub fn finish(self) -> Problems {
        let mut problems = self.problems;
        problems.unexpected.extend(self.params.names().map(str::to_string));
        problems
    }
}

/// A view of a [`ParamStore`] under a path prefix (`backbone.layer1.0`):
/// what one builder sees. Parameters are taken out as they are read, so the
/// checkpoint's copy is freed layer by layer while the network is packed.
#[derive(Debug)]
pub struct ParamSource<'a> {
    store: &'a mut ParamStore,
    prefix: String,
}

impl ParamSource<'_> {
    /// The source one level down: `at("layer1")` under `backbone` reads
    /// `backbone.layer1.*`.
    pub fn at(&mut self, name: impl std::fmt::Display) -> ParamSource<'_> {
        let prefix = self.path(&name.to_string());
        ParamSource { store: self.store, prefix }
    }

    /// The path this source reads under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full path of `name` under this source's prefix.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    /// How the convolutions being built will run.
    pub fn options(&self) -> ConvOptions {
        self.store.options
    }

    /// Whether the parameter `name` exists (for optional parts, such as a
    /// projection shortcut or an auxiliary head).
    pub fn contains(&self, name: &str) -> bool {
        self.store.params.contains(&self.path(name))
    }

    /// Dimension `axis` of the parameter `name`, if it exists and has it:
    /// widths the network does not fix are read off the weights.
    pub fn dim(&self, name: &str, axis: usize) -> Option<usize> {
        self.store.params.get(&self.path(name)).ok().and_then(|p| p.shape().get(axis).copied())
    }

    /// Takes the parameter `name`, which must have `shape`. A missing or
    /// misshaped one is noted, and zeros stand in for it so that building
    /// goes on and every problem of the checkpoint is found.
    ///
    /// A dimension the checkpoint left unknown (0: both the weight that
    /// gives a width and its batch-norm are missing) stands in as 1. Fails
    /// when the stand-ins together would hold more values than the
    /// parameters themselves (and some slack): a checkpoint whose shapes
    /// call for more is refused without allocating it.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, NnError> {
        let path = self.path(name);
        let problems = &mut self.store.problems;
        match self.store.params.get(&path).map(|p| p.shape().to_vec()) {
            Ok(found) if found == shape => return Ok(self.store.params.remove(&path).expect("just found").1),
            Ok(found) => {
                self.store.params.remove(&path);
                problems.misshaped.push(Misshaped { name: path.clone(), found, expected: shape.to_vec() });
            }
            Err(_) => problems.missing.push(path.clone()),
        }
        let len = shape.iter().try_fold(1usize, |len, &d| len.checked_mul(d.max(1)));
        match len {
            Some(len) if len <= self.store.stand_in_budget => {
                self.store.stand_in_budget -= len;
                Ok(vec![0.0; len])
            }
            _ => Err(NnError::StandIn { name: path, shape: shape.to_vec() }),
        }
    }

    /// [`ParamSource::take`] for a convolution weight `[out, in, kh, kw]`.
    pub fn take_tensor4(&mut self, name: &str, dims: [usize; 4]) -> Result<Tensor, NnError> {
        let values = self.take(name, &dims)?;
        let [o, i, h, w] = dims.map(|d| d.max(1));
        Ok(Tensor::from_vec(Shape::new(o, i, h, w)?, values)?)
    }

    /// Notes a contradiction that is not one parameter's.
    pub fn note(&mut self, problem: String) {
        self.store.problems.notes.push(problem)
    }
}
