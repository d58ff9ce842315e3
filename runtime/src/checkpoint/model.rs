//! Fitted-model files: `GPMODEL2`, the payload's length and checksum (little-endian
//! u64 each), then the payload as rmp-serde: the model's provenance (what it was
//! fitted as: [`ModelProvenance`]) and the model through the `Estimator` trait
//! object. Files of format 1 (`GPMODEL1`) hold no provenance.

use super::hash::fnv1a64;
use super::lineage::ModelProvenance;
use super::store::write_atomic;
use super::{CheckpointError, OnChange};
use crate::estimator::Estimator;
use crate::step::Step;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"GPMODEL2";
const MAGIC_V1: &[u8; 8] = b"GPMODEL1";

/// Serialises a model the way it is stored and hashed.
pub fn model_bytes(model: &dyn Estimator) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(model).map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct PayloadRef<'a> {
    provenance: &'a ModelProvenance,
    model: &'a dyn Estimator,
}

#[derive(Deserialize)]
struct Payload {
    provenance: ModelProvenance,
    model: Box<dyn Estimator>,
}

/// A model read back from its file.
#[derive(Clone, Debug)]
pub struct SavedModel {
    /// What it was fitted as (`None` for a format 1 file, which did not record it).
    pub provenance: Option<ModelProvenance>,
    /// The fitted model.
    pub model: Arc<dyn Estimator>,
}

/// Saves a fitted model and its provenance atomically and durably.
pub fn save_model(
    path: &Path,
    model: &dyn Estimator,
    provenance: &ModelProvenance,
) -> Result<(), CheckpointError> {
    let payload = rmp_serde::to_vec_named(&PayloadRef { provenance, model }).map_err(|e| {
        CheckpointError::Invalid {
            path: path.display().to_string(),
            reason: format!("cannot serialise the model: {e}"),
        }
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
pub fn load_model(path: &Path) -> Result<Option<SavedModel>, CheckpointError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CheckpointError::io("reading", path, e)),
    };
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let v1 = bytes.get(..8) == Some(MAGIC_V1.as_slice());
    if bytes.len() < 24 || !(v1 || &bytes[..8] == MAGIC) {
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
    let decode_error =
        |e: rmp_serde::decode::Error| invalid(format!("cannot decode the model: {e}"));
    if v1 {
        let model: Box<dyn Estimator> = rmp_serde::from_slice(payload).map_err(decode_error)?;
        return Ok(Some(SavedModel {
            provenance: None,
            model: Arc::from(model),
        }));
    }
    let p: Payload = rmp_serde::from_slice(payload).map_err(decode_error)?;
    Ok(Some(SavedModel {
        provenance: Some(p.provenance),
        model: Arc::from(p.model),
    }))
}

/// The saved model of a fitted step, when its checkpoint has a model file whose
/// provenance matches the step now, fitted on an upstream of hash `upstream`.
/// `Ok(None)` means "fit it": no file, an unusable file (logged), `force`, or a
/// model of another configuration under `Recompute` (logged); under `Refuse` that
/// is an error naming what differs.
pub fn saved_model_for(
    step: &Step,
    upstream: &str,
) -> Result<Option<Arc<dyn Estimator>>, CheckpointError> {
    let Some(ck) = step.checkpoint.as_ref().filter(|c| !c.force) else {
        return Ok(None);
    };
    let Some(path) = &ck.model_path else {
        return Ok(None);
    };
    let saved = match load_model(path) {
        Ok(Some(saved)) => saved,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::warn!(step = %step.name, error = %e, "saved model unusable: fitting again");
            return Ok(None);
        }
    };
    let wanted = ModelProvenance::of(step, upstream);
    let differences = match &saved.provenance {
        Some(p) => p.differences(&wanted),
        None => vec!["the file records no provenance (model file format 1)".to_string()],
    };
    if differences.is_empty() {
        tracing::info!(step = %step.name, path = %path.display(), "fit replaced by the saved model");
        return Ok(Some(saved.model));
    }
    let differences = differences.join("; ");
    match ck.on_change {
        OnChange::Refuse => Err(CheckpointError::ModelChanged {
            step: step.name.clone(),
            path: path.display().to_string(),
            differences,
        }),
        OnChange::Recompute => {
            tracing::warn!(step = %step.name, %differences, "saved model was fitted as another configuration: fitting again");
            Ok(None)
        }
    }
}
