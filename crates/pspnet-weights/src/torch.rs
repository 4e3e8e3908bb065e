//! PyTorch checkpoint containers: the zip archive of torch >= 1.6 and the
//! legacy sequence of pickles of older versions.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use zip::ZipArchive;
use zip::result::ZipError;

use crate::torch_pickle::{self, StorageDecl, Storages, TorchPickle};
use crate::{Checkpoint, Format, StateDict, Value, WeightsError};

/// First bytes of a zip archive (a local file header).
pub(crate) const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// The first opcode of every pickle of protocol 2 or later.
pub(crate) const PICKLE_PROTO: u8 = 0x80;

/// torch's legacy magic number 0x1950a86a20f9469cfc6c, little-endian.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The legacy format's protocol version.
const LEGACY_PROTOCOL: i64 = 1001;

/// Largest `data.pkl` read from an archive.
const MAX_PICKLE_BYTES: u64 = 1 << 31;

/// Strings and tensor data that one file may expand to: tensors may view a
/// storage several times or broadcast it, so allow some slack over the file
/// size.
fn max_materialised(file_len: usize) -> u64 {
    (file_len as u64).saturating_mul(4).saturating_add(256 << 10)
}

/// Reads a PyTorch checkpoint written by `torch.save`, in the zip container
/// (torch >= 1.6) or the legacy one, through the restricted unpickler.
///
/// The state dict is the top-level object if it is a dict holding tensors,
/// else the dict under `state_dict`, else under `model`; a leading `module.`
/// is stripped from its keys and its non-tensor entries are dropped.
/// [`Checkpoint::extra`] holds the rest of the top-level object (the
/// top-level dict without the state-dict entry, or the non-tensor entries of
/// a top-level state dict).
pub fn load_pth(path: &Path) -> Result<Checkpoint, WeightsError> {
    let io = |source| WeightsError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let len = file.metadata().map_err(io)?.len();
    if file.read_exact(&mut magic).is_ok() && magic == *ZIP_MAGIC {
        // Zip archives are read entry by entry from the file: the whole
        // file is never held in memory next to its storages.
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        return load_zip(path, BufReader::new(file), usize::try_from(len).unwrap_or(usize::MAX));
    }
    load_pth_bytes(path, std::fs::read(path).map_err(io)?)
}

/// [`load_pth`] on bytes already read from `path`.
pub(crate) fn load_pth_bytes(path: &Path, data: Vec<u8>) -> Result<Checkpoint, WeightsError> {
    if data.starts_with(ZIP_MAGIC) {
        let len = data.len();
        load_zip(path, Cursor::new(data), len)
    } else if data.first() == Some(&PICKLE_PROTO) {
        load_legacy(path, &data)
    } else {
        Err(WeightsError::UnknownFormat { path: path.to_path_buf() })
    }
}

fn zip_error(path: &Path, source: ZipError) -> WeightsError {
    WeightsError::Zip { path: path.to_path_buf(), source }
}

/// What a zip checkpoint's entries may inflate to, together: `torch.save`
/// stores them uncompressed, and float weights re-zipped shrink little, so
/// anything far beyond the file's own size is a decompression bomb.
fn max_inflated(file_len: usize) -> u64 {
    (file_len as u64).saturating_mul(2).saturating_add(256 << 10)
}

/// Reads at most `limit` bytes of the entry `name`; `None` if it is absent.
/// An entry that fits is read to its end, where the zip reader checks its
/// CRC-32: a damaged byte is an error, not a silently different weight.
/// What it inflates to is taken from `inflatable`; an entry that would
/// inflate past it is refused as soon as it does, whatever its header says.
fn read_entry<R: Read + Seek>(
    path: &Path,
    archive: &mut ZipArchive<R>,
    name: &str,
    limit: u64,
    inflatable: &mut u64,
) -> Result<Option<Vec<u8>>, WeightsError> {
    let entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(zip_error(path, e)),
    };
    let allowed = limit.min(*inflatable);
    let capacity = usize::try_from(entry.size().min(allowed)).unwrap_or(usize::MAX);
    let mut buf = Vec::with_capacity(capacity);
    entry.take(allowed.saturating_add(1)).read_to_end(&mut buf).map_err(|e| zip_error(path, ZipError::Io(e)))?;
    let read = buf.len() as u64;
    if read > allowed && allowed < limit {
        return Err(WeightsError::LimitExceeded {
            path: path.join(name),
            offset: 0,
            what: "the inflated size of the archive's entries (twice the file, plus 256 KiB)",
            limit: allowed,
        });
    }
    buf.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    *inflatable -= read.min(*inflatable);
    Ok(Some(buf))
}

/// Reads a zip checkpoint of `file_len` bytes from `reader`.
fn load_zip<R: Read + Seek>(path: &Path, reader: R, file_len: usize) -> Result<Checkpoint, WeightsError> {
    let mut archive = ZipArchive::new(reader).map_err(|e| zip_error(path, e))?;
    let names = archive
        .file_names()
        .map(|n| n.map(Cow::into_owned))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| zip_error(path, e))?;
    let pkl_name =
        names.into_iter().filter(|n| n == "data.pkl" || n.ends_with("/data.pkl")).min_by_key(String::len).ok_or_else(
            || WeightsError::MissingEntry { path: path.to_path_buf(), entry: "<archive>/data.pkl".to_owned() },
        )?;
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    let mut inflatable = max_inflated(file_len);
    if let Some(order) = read_entry(path, &mut archive, &format!("{prefix}byteorder"), 64, &mut inflatable)? {
        let order = String::from_utf8_lossy(&order).trim().to_owned();
        if order != "little" {
            return Err(WeightsError::ByteOrder { path: path.to_path_buf(), found: order });
        }
    }
    let pkl = read_entry(path, &mut archive, &pkl_name, MAX_PICKLE_BYTES, &mut inflatable)?
        .ok_or_else(|| WeightsError::MissingEntry { path: path.to_path_buf(), entry: pkl_name.clone() })?;
    let pickle_path = path.join(&pkl_name);
    let unpickled = torch_pickle::read(&pickle_path, &pkl, 0)?;
    let mut owned = HashMap::new();
    for (key, decl) in unpickled.storages() {
        let entry = format!("{prefix}data/{key}");
        let need = decl.numel * decl.dtype.size();
        let bytes = read_entry(path, &mut archive, &entry, need as u64, &mut inflatable)?
            .ok_or_else(|| WeightsError::MissingEntry { path: path.to_path_buf(), entry: entry.clone() })?;
        if bytes.len() < need {
            return Err(storage_short(path, key, decl, bytes.len()));
        }
        owned.insert(key.clone(), bytes);
    }
    let budget = max_materialised(file_len);
    drop(archive);
    let top = unpickled.to_value(Storages::Owned(owned), budget)?;
    into_checkpoint(path, top, Format::TorchZip)
}

fn storage_short(path: &Path, key: &str, decl: &StorageDecl, got: usize) -> WeightsError {
    WeightsError::Storage {
        path: path.to_path_buf(),
        storage: key.to_owned(),
        reason: format!("holds {got} bytes, but is declared as {} elements of {}", decl.numel, decl.dtype),
    }
}

/// Reads the next pickle of a legacy file, which starts at `*pos`.
fn next_pickle(path: &Path, data: &[u8], pos: &mut usize) -> Result<TorchPickle, WeightsError> {
    let unpickled = torch_pickle::read(path, &data[*pos..], *pos as u64)?;
    *pos += unpickled.end();
    Ok(unpickled)
}

fn small_value(unpickled: &TorchPickle) -> Result<Value, WeightsError> {
    unpickled.to_value(Storages::Borrowed(HashMap::new()), 1 << 20)
}

/// Reads one standalone pickle (as `pickle.dump` writes it) through the
/// restricted unpickler of `.pth` files into an inert [`Value`]. Data only:
/// a pickle that rebuilds a tensor names a storage this call does not have
/// and is refused. `path` names the source in errors.
pub fn read_pickle(path: &Path, data: &[u8]) -> Result<Value, WeightsError> {
    torch_pickle::read(path, data, 0)?.to_value(Storages::Borrowed(HashMap::new()), max_materialised(data.len()))
}

fn load_legacy(path: &Path, data: &[u8]) -> Result<Checkpoint, WeightsError> {
    let malformed = |offset: usize, reason: &str| WeightsError::Malformed {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.to_owned(),
    };
    let mut pos = 0;
    let magic = next_pickle(path, data, &mut pos)?;
    if !magic.is_long(&LEGACY_MAGIC) {
        return Err(WeightsError::UnknownFormat { path: path.to_path_buf() });
    }
    let at = pos;
    let protocol = small_value(&next_pickle(path, data, &mut pos)?)?;
    if protocol.as_i64() != Some(LEGACY_PROTOCOL) {
        return Err(malformed(at, "unsupported legacy protocol version"));
    }
    let sys_info = small_value(&next_pickle(path, data, &mut pos)?)?;
    if sys_info.get("little_endian") == Some(&Value::Bool(false)) {
        return Err(WeightsError::ByteOrder { path: path.to_path_buf(), found: "big-endian".to_owned() });
    }
    let object = next_pickle(path, data, &mut pos)?;
    let at = pos;
    let keys = small_value(&next_pickle(path, data, &mut pos)?)?;
    let keys = keys.as_list().ok_or_else(|| malformed(at, "the storage key list is not a list"))?;
    let mut storages = HashMap::new();
    for key in keys {
        let key = match key {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => return Err(malformed(at, "a storage key is not a string")),
        };
        let decl = object.storages().get(&key).ok_or_else(|| WeightsError::Storage {
            path: path.to_path_buf(),
            storage: key.clone(),
            reason: "listed in the file but never declared by the pickle".to_owned(),
        })?;
        let truncated =
            |what: String| WeightsError::Truncated { path: path.to_path_buf(), offset: data.len() as u64, what };
        let header = data.get(pos..pos + 8).ok_or_else(|| truncated(format!("the size of storage `{key}`")))?;
        let mut count = [0u8; 8];
        count.copy_from_slice(header);
        pos += 8;
        let count = u64::from_le_bytes(count);
        let n = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(decl.dtype.size()))
            .filter(|&n| n <= data.len() - pos)
            .ok_or_else(|| truncated(format!("storage `{key}` ({count} elements of {})", decl.dtype)))?;
        if n < decl.numel * decl.dtype.size() {
            return Err(storage_short(path, &key, decl, n));
        }
        storages.insert(key, &data[pos..pos + n]);
        pos += n;
    }
    let top = object.to_value(Storages::Borrowed(storages), max_materialised(data.len()))?;
    into_checkpoint(path, top, Format::TorchLegacy)
}

fn is_state_dict_entry(entry: &(Value, Value), name: &str) -> bool {
    entry.0.as_str() == Some(name) && matches!(entry.1, Value::Dict(_))
}

/// Finds the state dict in the top-level object and splits it off.
fn into_checkpoint(path: &Path, top: Value, format: Format) -> Result<Checkpoint, WeightsError> {
    let no_state_dict = || WeightsError::NoStateDict { path: path.to_path_buf() };
    let Value::Dict(mut entries) = top else {
        return Err(no_state_dict());
    };
    let state_entries;
    let extra;
    if entries.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
        let (tensors, rest): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(_, v)| matches!(v, Value::Tensor(_)));
        state_entries = tensors;
        extra = Value::Dict(rest);
    } else {
        let index = entries
            .iter()
            .position(|e| is_state_dict_entry(e, "state_dict"))
            .or_else(|| entries.iter().position(|e| is_state_dict_entry(e, "model")))
            .ok_or_else(no_state_dict)?;
        let Value::Dict(inner) = entries.remove(index).1 else {
            return Err(no_state_dict());
        };
        state_entries = inner;
        extra = Value::Dict(entries);
    }
    let mut state_dict = StateDict::default();
    for (key, value) in state_entries {
        let (Value::Str(key), Value::Tensor(tensor)) = (key, value) else {
            continue;
        };
        let key = key.strip_prefix("module.").map(str::to_owned).unwrap_or(key);
        if state_dict.tensors.contains_key(&key) {
            return Err(WeightsError::DuplicateKey { path: path.to_path_buf(), key });
        }
        state_dict.tensors.insert(key, tensor);
    }
    Ok(Checkpoint { state_dict, extra, format })
}
