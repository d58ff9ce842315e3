//! Fitted-model files: `GPMODEL1`, the payload's length and checksum (little-endian
//! u64 each), then the model as rmp-serde through the `Estimator` trait object.

use super::hash::fnv1a64;
use super::store::write_atomic;
use super::CheckpointError;
use crate::estimator::Estimator;
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"GPMODEL1";

/// Serialises a model the way it is stored and hashed.
pub fn model_bytes(model: &dyn Estimator) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(model).map_err(|e| e.to_string())
}

/// Saves a fitted model atomically and durably.
pub fn save_model(path: &Path, model: &dyn Estimator) -> Result<(), CheckpointError> {
    let payload = model_bytes(model).map_err(|reason| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason: format!("cannot serialise the model: {reason}"),
    })?;
    let mut bytes = Vec::with_capacity(24 + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&fnv1a64(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    write_atomic(path, bytes)
}

/// Loads a saved model: `Ok(None)` when there is no file, an error naming the file
/// when it is truncated, corrupted or not a model.
pub fn load_model(path: &Path) -> Result<Option<Arc<dyn Estimator>>, CheckpointError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CheckpointError::io("reading", path, e)),
    };
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return Err(invalid("not a gridpipe model file".into()));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let sum = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let payload = &bytes[24..];
    if payload.len() != len {
        return Err(invalid(format!(
            "{} bytes of model, header says {len} (truncated)",
            payload.len()
        )));
    }
    if fnv1a64(payload) != sum {
        return Err(invalid("checksum mismatch (corrupted)".into()));
    }
    let model: Box<dyn Estimator> = rmp_serde::from_slice(payload)
        .map_err(|e| invalid(format!("cannot decode the model: {e}")))?;
    Ok(Some(Arc::from(model)))
}
