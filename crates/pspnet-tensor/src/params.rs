use std::collections::BTreeMap;

use crate::TensorError;

/// One named parameter: an `f32` array of any rank (a convolution weight is
/// `[out, in, kh, kw]`, a batch-norm statistic `[channels]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Param {
    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, C order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}

/// A model's parameters by name, in the project's canonical naming: the
/// neutral hand-over between checkpoint readers and model builders.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    map: BTreeMap<String, Param>,
}

impl Params {
    /// An empty set.
    pub fn new() -> Self {
        Params::default()
    }

    /// Adds (or replaces) a parameter; `data` must hold `shape`'s element count.
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Result<(), TensorError> {
        let name = name.into();
        let expected = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if expected != Some(data.len()) {
            return Err(TensorError::ParamShape { name, expected: format!("{} values", data.len()), got: shape });
        }
        self.map.insert(name, Param { shape, data });
        Ok(())
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Result<&Param, TensorError> {
        self.map.get(name).ok_or_else(|| TensorError::MissingParam { name: name.to_string() })
    }

    /// Whether a parameter called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Removes and returns a parameter's shape and values.
    pub fn remove(&mut self, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        self.map.remove(name).map(|p| (p.shape, p.data))
    }

    /// Every name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Every parameter with its name, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many parameters there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_lengths_and_names() {
        let mut p = Params::new();
        assert!(p.insert("w", vec![2, 3], vec![0.0; 5]).is_err());
        p.insert("conv.weight", vec![2, 1, 1, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        p.insert("bn.bias", vec![2], vec![1.0, 2.0]).unwrap();
        assert_eq!(p.get("conv.weight").unwrap().data()[5], 5.0);
        assert_eq!(p.get("nope").unwrap_err(), TensorError::MissingParam { name: "nope".into() });
        assert_eq!(p.names().collect::<Vec<_>>(), ["bn.bias", "conv.weight"]);
        assert_eq!(p.remove("bn.bias"), Some((vec![2], vec![1.0, 2.0])));
        assert!(p.remove("bn.bias").is_none() && p.contains("conv.weight"));
        assert_eq!(p.len(), 1);
    }
}
