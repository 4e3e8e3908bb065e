//! Writing PyTorch's zip checkpoint format, as `torch.save` lays it out:
//! `archive/data.pkl` (a protocol-2 pickle of the object, each tensor a
//! `torch._utils._rebuild_tensor_v2` of a persistent storage), one
//! `archive/data/N` record per tensor (64-byte aligned), `archive/version`
//! and `archive/byteorder`. The pickle names only the globals
//! `torch.load(weights_only=True)` allows: `_rebuild_tensor_v2`,
//! `collections.OrderedDict` (a tensor's empty hook table) and the
//! `FloatStorage` / `LongStorage` types. Written to a temporary file and
//! renamed: never half a checkpoint.

use std::io::Write;
use std::path::Path;

use zip::write::SimpleFileOptions;

use crate::{DType, TensorData, Value, WeightsError};

/// Writes `root` (dicts, lists, tuples, strings, numbers, booleans, `None`
/// and f32 / i64 tensors) as a PyTorch zip checkpoint at `path`.
pub fn save_pth(path: &Path, root: &Value) -> Result<(), WeightsError> {
    let io = |source: std::io::Error| WeightsError::Io { path: path.to_path_buf(), source };
    let mut pickle = Pickler { out: vec![0x80, 2], storages: Vec::new(), path };
    pickle.value(root)?;
    pickle.out.push(b'.');
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new().prefix(".pspnet-pth-").suffix(".tmp").tempfile_in(dir).map_err(io)?;
    let mut zip = zip::ZipWriter::new(tmp);
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).with_alignment(64);
    let zip_error = |source: zip::result::ZipError| WeightsError::Zip { path: path.to_path_buf(), source };
    let record = |zip: &mut zip::ZipWriter<_>, name: String, bytes: &[u8]| -> Result<(), WeightsError> {
        zip.start_file(name, stored).map_err(zip_error)?;
        zip.write_all(bytes).map_err(io)
    };
    record(&mut zip, "archive/data.pkl".into(), &pickle.out)?;
    record(&mut zip, "archive/byteorder".into(), b"little")?;
    for (key, bytes) in pickle.storages.iter().enumerate() {
        record(&mut zip, format!("archive/data/{key}"), bytes)?;
    }
    record(&mut zip, "archive/version".into(), b"3\n")?;
    let tmp = zip.finish().map_err(zip_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// A protocol-2 pickler of [`Value`]s, collecting the tensors' storages.
struct Pickler<'a> {
    out: Vec<u8>,
    storages: Vec<Vec<u8>>,
    path: &'a Path,
}

impl Pickler<'_> {
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn string(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        match i32::try_from(v) {
            Ok(small) => {
                self.out.push(b'J');
                self.out.extend_from_slice(&small.to_le_bytes());
            }
            Err(_) => {
                // LONG1: 8 little-endian two's-complement bytes.
                self.out.extend_from_slice(&[0x8a, 8]);
                self.out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    fn tuple(&mut self, items: &[usize]) {
        self.out.push(b'(');
        items.iter().for_each(|&i| self.int(i as i64));
        self.out.push(b't');
    }

    fn value(&mut self, v: &Value) -> Result<(), WeightsError> {
        match v {
            Value::None => self.out.push(b'N'),
            Value::Bool(b) => self.out.push(if *b { 0x88 } else { 0x89 }),
            Value::Int(i) => self.int(*i),
            Value::Float(f) => {
                self.out.push(b'G');
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Str(s) => self.string(s),
            Value::List(items) => {
                self.out.extend_from_slice(b"](");
                items.iter().try_for_each(|item| self.value(item))?;
                self.out.push(b'e');
            }
            Value::Tuple(items) => {
                self.out.push(b'(');
                items.iter().try_for_each(|item| self.value(item))?;
                self.out.push(b't');
            }
            Value::Dict(entries) => {
                self.out.extend_from_slice(b"}(");
                for (key, value) in entries {
                    self.value(key)?;
                    self.value(value)?;
                }
                self.out.push(b'u');
            }
            Value::Tensor(t) => self.tensor(t)?,
            Value::Bytes(_) | Value::Opaque(_) => {
                let what = "bytes or an opaque object".into();
                return Err(WeightsError::Unwritable { path: self.path.to_path_buf(), what });
            }
        }
        Ok(())
    }

    /// `_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`.
    fn tensor(&mut self, t: &TensorData) -> Result<(), WeightsError> {
        let storage = match t.dtype {
            DType::F32 => "FloatStorage",
            DType::I64 => "LongStorage",
            other => {
                let what = format!("a {} tensor (f32 and i64 only)", other.name());
                return Err(WeightsError::Unwritable { path: self.path.to_path_buf(), what });
            }
        };
        let key = self.storages.len();
        self.storages.push(t.bytes.clone());
        let numel: usize = t.shape.iter().product();
        let strides: Vec<usize> = (0..t.shape.len()).map(|d| t.shape[d + 1..].iter().product()).collect();
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.push(b'(');
        self.out.push(b'(');
        self.string("storage");
        self.global("torch", storage);
        self.string(&key.to_string());
        self.string("cpu");
        self.int(numel as i64);
        self.out.extend_from_slice(b"tQ");
        self.int(0);
        self.tuple(&t.shape);
        self.tuple(&strides);
        self.out.push(0x89);
        self.global("collections", "OrderedDict");
        self.out.extend_from_slice(b")R");
        self.out.extend_from_slice(b"tR");
        Ok(())
    }
}
