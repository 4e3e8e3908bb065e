use std::collections::BTreeMap;

use crate::{Shape, Tensor, TensorError};

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

    /// A rank-4 parameter (a convolution weight, OIHW) as a [`Tensor`].
    pub fn tensor4(&self, name: &str) -> Result<Tensor, TensorError> {
        let p = self.get(name)?;
        let &[o, i, h, w] = p.shape.as_slice() else {
            return Err(TensorError::ParamShape {
                name: name.to_string(),
                expected: "4 dimensions".into(),
                got: p.shape.clone(),
            });
        };
        Tensor::from_vec(Shape::new(o, i, h, w)?, p.data.clone())
    }

    /// A rank-1 parameter of exactly `len` values.
    pub fn vector(&self, name: &str, len: usize) -> Result<&[f32], TensorError> {
        let p = self.get(name)?;
        if p.shape != [len] {
            return Err(TensorError::ParamShape {
                name: name.to_string(),
                expected: format!("[{len}]"),
                got: p.shape.clone(),
            });
        }
        Ok(&p.data)
    }

    /// Removes and returns a rank-4 parameter as a [`Tensor`] (no copy):
    /// model builders take their weights so that each is freed once packed.
    pub fn take_tensor4(&mut self, name: &str) -> Result<Tensor, TensorError> {
        self.tensor4_shape(name)?;
        let p = self.map.remove(name).expect("checked above");
        let &[o, i, h, w] = p.shape.as_slice() else { unreachable!("checked above") };
        Tensor::from_vec(Shape::new(o, i, h, w)?, p.data)
    }

    /// Removes and returns a rank-1 parameter of exactly `len` values.
    pub fn take_vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, TensorError> {
        self.vector(name, len)?;
        Ok(self.map.remove(name).expect("checked above").data)
    }

    fn tensor4_shape(&self, name: &str) -> Result<(), TensorError> {
        let p = self.get(name)?;
        if p.shape.len() != 4 {
            return Err(TensorError::ParamShape {
                name: name.to_string(),
                expected: "4 dimensions".into(),
                got: p.shape.clone(),
            });
        }
        Ok(())
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
    fn checks_lengths_ranks_and_names() {
        let mut p = Params::new();
        assert!(p.insert("w", vec![2, 3], vec![0.0; 5]).is_err());
        p.insert("conv.weight", vec![2, 1, 1, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        p.insert("bn.bias", vec![2], vec![1.0, 2.0]).unwrap();
        assert_eq!(p.tensor4("conv.weight").unwrap().as_slice()[5], 5.0);
        assert_eq!(p.vector("bn.bias", 2).unwrap(), &[1.0, 2.0]);
        let err = p.vector("bn.bias", 3).unwrap_err();
        assert!(err.to_string().contains("bn.bias"), "{err}");
        assert!(matches!(p.tensor4("bn.bias"), Err(TensorError::ParamShape { .. })));
        assert_eq!(p.get("nope").unwrap_err(), TensorError::MissingParam { name: "nope".into() });
        assert_eq!(p.names().collect::<Vec<_>>(), ["bn.bias", "conv.weight"]);
        assert!(p.take_vector("bn.bias", 3).is_err() && p.contains("bn.bias"));
        assert_eq!(p.take_vector("bn.bias", 2).unwrap(), vec![1.0, 2.0]);
        assert!(p.take_tensor4("bn.bias").is_err());
        assert_eq!(p.take_tensor4("conv.weight").unwrap().shape().dims(), [2, 1, 1, 3]);
        assert!(p.is_empty());
    }
}
