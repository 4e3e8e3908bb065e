//! Conversion of an interpreted pickle to a [`Value`], reading each tensor's
//! bytes from its storage.
//!
//! Conversion bounds depth (which also stops cycles through the arena), the
//! number of values and the bytes materialised, since sharing through the
//! memo lets a small pickle describe an enormous tree.

use std::collections::HashMap;

use super::TorchPickle;
use super::interpret::{Made, TensorSpec};
use crate::pickle::{MAX_DEPTH, Obj};
use crate::{TensorData, Value, WeightsError};

/// The raw bytes of the storages that tensors read, by key.
pub(crate) enum Storages<'a> {
    /// Slices of a file held whole in memory: every tensor copies its elements.
    Borrowed(HashMap<String, &'a [u8]>),
    /// Storages read one by one from an archive. The last tensor to read a
    /// storage takes its bytes without a copy when it spans all of them, and
    /// each storage is freed after its last tensor: loading peaks near one
    /// copy of the weights, not two.
    Owned(HashMap<String, Vec<u8>>),
}

/// Where conversion finds tensor bytes.
enum Source<'a, 'r> {
    /// A dry run that only counts the tensors reading each storage.
    Count(&'r mut HashMap<String, usize>),
    /// Borrowed storages.
    Borrowed(HashMap<String, &'a [u8]>),
    /// Owned storages and how many tensors are still to read each.
    Owned {
        /// The storages' bytes.
        bytes: HashMap<String, Vec<u8>>,
        /// Tensors still to read each storage.
        readers: HashMap<String, usize>,
    },
}

impl Source<'_, '_> {
    /// The bytes of storage `key`; none during the dry run.
    fn bytes(&self, key: &str) -> Option<&[u8]> {
        match self {
            Source::Count(_) => None,
            Source::Borrowed(map) => map.get(key).copied(),
            Source::Owned { bytes, .. } => bytes.get(key).map(Vec::as_slice),
        }
    }

    /// Whether the tensor being built is the last to read storage `key`.
    fn is_last_reader(&self, key: &str) -> bool {
        matches!(self, Source::Owned { readers, .. } if readers.get(key) == Some(&1))
    }

    /// Marks one read of storage `key` done; after the last one, hands the
    /// owned bytes back so they are reused or freed.
    fn release(&mut self, key: &str) -> Option<Vec<u8>> {
        let Source::Owned { bytes, readers } = self else { return None };
        let left = readers.get_mut(key)?;
        *left -= 1;
        if *left == 0 { bytes.remove(key) } else { None }
    }
}

/// What conversion to [`Value`] may still produce.
struct Budget {
    /// Values left.
    nodes: u64,
    /// Bytes of strings and tensor data left.
    bytes: u64,
    /// The limit on values, for the error.
    max_nodes: u64,
    /// The limit on bytes, for the error.
    max_bytes: u64,
}

impl TorchPickle {
    /// Converts the pickled object to a [`Value`], reading tensor data from
    /// `storages`. At most `max_bytes` of strings and tensor data are
    /// produced.
    pub(crate) fn to_value(&self, storages: Storages<'_>, max_bytes: u64) -> Result<Value, WeightsError> {
        // One value per byte of pickle: every opcode that makes one takes a
        // byte, so only memo references (GET) can multiply them past that.
        let max_nodes = self.pickle.end as u64 + 1024;
        let budget = || Budget { nodes: max_nodes, bytes: max_bytes, max_nodes, max_bytes };
        let mut source = match storages {
            Storages::Borrowed(map) => Source::Borrowed(map),
            Storages::Owned(bytes) => {
                let mut readers = HashMap::new();
                self.convert(&self.pickle.root, 0, &mut Source::Count(&mut readers), &mut budget())?;
                Source::Owned { bytes, readers }
            }
        };
        self.convert(&self.pickle.root, 0, &mut source, &mut budget())
    }

    /// A [`WeightsError::LimitExceeded`] for the pickle.
    fn limit(&self, what: &'static str, limit: u64) -> WeightsError {
        WeightsError::LimitExceeded { path: self.path.clone(), offset: self.base, what, limit }
    }

    /// Takes `n` bytes from the budget.
    fn spend_bytes(&self, budget: &mut Budget, n: usize) -> Result<(), WeightsError> {
        budget.bytes =
            budget.bytes.checked_sub(n as u64).ok_or_else(|| self.limit("materialised bytes", budget.max_bytes))?;
        Ok(())
    }

    /// Converts `obj`, found `depth` containers deep.
    fn convert(
        &self,
        obj: &Obj,
        depth: usize,
        source: &mut Source<'_, '_>,
        budget: &mut Budget,
    ) -> Result<Value, WeightsError> {
        if depth > MAX_DEPTH {
            return Err(self.limit("container nesting depth", MAX_DEPTH as u64));
        }
        budget.nodes = budget.nodes.checked_sub(1).ok_or_else(|| self.limit("number of values", budget.max_nodes))?;
        Ok(match obj {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::BigInt(_) => Value::Opaque("builtins.int".to_owned()),
            Obj::Float(f) => Value::Float(*f),
            Obj::Str(s) => {
                self.spend_bytes(budget, s.len())?;
                Value::Str(s.to_string())
            }
            Obj::Bytes(b) => {
                self.spend_bytes(budget, b.len())?;
                Value::Bytes(b.to_vec())
            }
            Obj::Tuple(t) => Value::Tuple(self.convert_all(&t.items, depth, source, budget)?),
            Obj::Ref(id) => self.convert_node(*id, depth, source, budget)?,
            Obj::Global(g) => Value::Opaque(g.qualname()),
            Obj::Persistent(id) => Value::Opaque(format!("storage {}", self.meaning.windows[*id].key)),
        })
    }

    /// Converts `items`, the contents of a container `depth` deep.
    fn convert_all<'o>(
        &self,
        items: impl IntoIterator<Item = &'o Obj>,
        depth: usize,
        source: &mut Source<'_, '_>,
        budget: &mut Budget,
    ) -> Result<Vec<Value>, WeightsError> {
        items.into_iter().map(|item| self.convert(item, depth + 1, source, budget)).collect()
    }

    /// Converts the mutable object `id` of the arena, `depth` deep, as what
    /// torch made of it.
    fn convert_node(
        &self,
        id: usize,
        depth: usize,
        source: &mut Source<'_, '_>,
        budget: &mut Budget,
    ) -> Result<Value, WeightsError> {
        let node = &self.pickle.arena[id];
        Ok(match &self.meaning.made[id] {
            Made::List(given) => {
                Value::List(self.convert_all(given.iter().chain(&node.items), depth, source, budget)?)
            }
            Made::Dict(given) => {
                let mut entries = Vec::with_capacity(given.len() + node.entries.len());
                for (key, value) in given.iter().chain(&node.entries) {
                    entries.push((
                        self.convert(key, depth + 1, source, budget)?,
                        self.convert(value, depth + 1, source, budget)?,
                    ));
                }
                Value::Dict(entries)
            }
            Made::Tensor(spec) => Value::Tensor(self.materialize(spec, source, budget)?),
            Made::Tuple(t) => self.convert(t, depth, source, budget)?,
            Made::Bytes(b) => {
                self.spend_bytes(budget, b.len())?;
                Value::Bytes(b.to_vec())
            }
            Made::Opaque(name) => Value::Opaque(name.to_string()),
        })
    }

    /// Reads the tensor `spec` from its storage. The last reader of an
    /// owned storage that spans all of it takes the bytes without a copy.
    fn materialize(
        &self,
        spec: &TensorSpec,
        source: &mut Source<'_, '_>,
        budget: &mut Budget,
    ) -> Result<TensorData, WeightsError> {
        let st = &spec.storage;
        if let Source::Count(readers) = source {
            *readers.entry(st.key.clone()).or_default() += 1;
            return Ok(TensorData { dtype: st.dtype, shape: spec.shape.clone(), bytes: Vec::new() });
        }
        let raw = source.bytes(&st.key).ok_or_else(|| self.storage_error(spec, "its data is missing from the file"))?;
        let window = self.window(spec, raw)?;
        let nbytes = spec.numel * st.dtype.size();
        self.spend_bytes(budget, nbytes)?;
        let contiguous = is_contiguous(spec);
        let spans_storage = contiguous && st.start == 0 && spec.offset == 0 && nbytes == raw.len();
        let take = spans_storage && source.is_last_reader(&st.key);
        let mut bytes = if take { Vec::new() } else { copy_out(window, spec, contiguous) };
        if let Some(storage) = source.release(&st.key)
            && take
        {
            bytes = storage;
        }
        Ok(TensorData { dtype: st.dtype, shape: spec.shape.clone(), bytes })
    }

    /// The bytes of the storage window `spec` views, out of the storage's
    /// `raw` bytes, which may be fewer than declared.
    fn window<'r>(&self, spec: &TensorSpec, raw: &'r [u8]) -> Result<&'r [u8], WeightsError> {
        let st = &spec.storage;
        let es = st.dtype.size();
        match st.start.checked_add(st.len).and_then(|end| end.checked_mul(es)) {
            Some(end) if end <= raw.len() => Ok(&raw[st.start * es..end]),
            _ => {
                let need = st.start.saturating_add(st.len);
                let reason = format!(
                    "holds {} bytes, fewer than the {need} elements of {} its tensors need",
                    raw.len(),
                    st.dtype
                );
                Err(self.storage_error(spec, &reason))
            }
        }
    }

    /// A [`WeightsError::Storage`] for the storage `spec` reads.
    fn storage_error(&self, spec: &TensorSpec, reason: &str) -> WeightsError {
        WeightsError::Storage { path: self.path.clone(), storage: spec.storage.key.clone(), reason: reason.to_owned() }
    }
}

/// Whether `spec`'s elements lie in C order with no gaps, so that one copy
/// of a slice reads them all.
fn is_contiguous(spec: &TensorSpec) -> bool {
    let mut expect = 1usize;
    for (&d, &s) in spec.shape.iter().zip(&spec.stride).rev() {
        if d != 1 && s != expect {
            return false;
        }
        // Saturates only past a dimension of size 0, where nothing is read.
        expect = expect.saturating_mul(d);
    }
    true
}

/// Copies the elements of `spec` out of its storage `window`, in C order:
/// one slice when they are `contiguous`, else element by element.
fn copy_out(window: &[u8], spec: &TensorSpec, contiguous: bool) -> Vec<u8> {
    // An empty tensor reads nothing, so its offset was never checked.
    if spec.numel == 0 {
        return Vec::new();
    }
    let es = spec.storage.dtype.size();
    let mut out = Vec::with_capacity(spec.numel * es);
    if contiguous {
        out.extend_from_slice(&window[spec.offset * es..(spec.offset + spec.numel) * es]);
    } else {
        gather(window, es, spec, &mut out);
    }
    out
}

/// Copies a strided view element by element, C order. The spec was checked
/// to stay inside `window`.
fn gather(window: &[u8], es: usize, spec: &TensorSpec, out: &mut Vec<u8>) {
    let rank = spec.shape.len();
    let mut index = vec![0usize; rank];
    let mut pos = spec.offset;
    for _ in 0..spec.numel {
        out.extend_from_slice(&window[pos * es..(pos + 1) * es]);
        for d in (0..rank).rev() {
            index[d] += 1;
            if index[d] < spec.shape[d] {
                pos += spec.stride[d];
                break;
            }
            pos -= spec.stride[d] * (spec.shape[d] - 1);
            index[d] = 0;
        }
    }
}
