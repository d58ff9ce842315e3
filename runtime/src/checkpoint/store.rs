//! Reading and writing feature files: probing, group commit, lazy verified loading.

use super::npy;
use super::CheckpointError;
use crate::error::LoadError;
use crate::sample::Loader;
use crate::value::Value;
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Files up to this size are read whole and verified when probed, and their data
/// kept for the task (so a small file is read once); larger ones are checked by
/// header and length, and verified when loaded.
pub const VERIFY_WHOLE_BELOW: u64 = 64 * 1024;

/// What probing a sample's file found.
#[derive(Debug)]
pub enum Probe {
    /// A complete, verified file (with its data when it was small enough to read).
    Valid(Option<Arc<ArrayD<f64>>>),
    /// No file.
    Missing,
    /// A file that must not be trusted (truncated, corrupted, foreign).
    Invalid(String),
}

/// Checks the file at `path`.
pub fn probe(path: &Path) -> Probe {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Probe::Missing,
        Err(e) => return Probe::Invalid(format!("cannot open: {e}")),
    };
    let len = match f.metadata() {
        Ok(m) => m.len(),
        Err(e) => return Probe::Invalid(format!("cannot stat: {e}")),
    };
    if len <= VERIFY_WHOLE_BELOW {
        let mut buf = Vec::with_capacity(len as usize);
        if let Err(e) = f.read_to_end(&mut buf) {
            return Probe::Invalid(format!("cannot read: {e}"));
        }
        return match npy::decode(&buf) {
            Ok(a) => Probe::Valid(Some(Arc::new(a))),
            Err(e) => Probe::Invalid(e),
        };
    }
    let mut head = vec![0u8; 4096];
    let n = match f.read(&mut head) {
        Ok(n) => n,
        Err(e) => return Probe::Invalid(format!("cannot read: {e}")),
    };
    match npy::parse_header(&head[..n]) {
        Ok(h) if h.file_len() as u64 == len => Probe::Valid(None),
        Ok(h) => Probe::Invalid(format!(
            "file is {len} bytes, its header says {} (truncated or extended)",
            h.file_len()
        )),
        Err(e) => Probe::Invalid(e),
    }
}

/// Loads one feature file lazily, verifying its checksum; a file that fails the
/// check is moved aside (`.corrupt`) so that the next run recomputes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NpyLoader {
    /// The file.
    pub path: PathBuf,
    /// Data already read and verified in this task (not serialised).
    #[serde(skip)]
    pub cached: Option<Arc<ArrayD<f64>>>,
}

#[typetag::serde]
impl Loader for NpyLoader {
    fn load(&self) -> Result<Value, LoadError> {
        if let Some(a) = &self.cached {
            return Ok(Value::Array((**a).clone()));
        }
        let bytes = fs::read(&self.path)
            .map_err(|e| LoadError::new(format!("checkpoint {}: {e}", self.path.display())))?;
        npy::decode(&bytes).map(Value::Array).map_err(|reason| {
            let aside = self.path.with_extension("npy.corrupt");
            let moved = fs::rename(&self.path, &aside).is_ok();
            LoadError::new(format!(
                "checkpoint {} is invalid: {reason}{}",
                self.path.display(),
                if moved {
                    "; moved aside, it will be recomputed on the next run"
                } else {
                    ""
                }
            ))
        })
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn tmp_path(path: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

#[cfg(target_os = "linux")]
fn sync_filesystem(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn syncfs(fd: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    // SAFETY: `syncfs` only reads the descriptor, which `f` keeps open.
    unsafe { syncfs(f.as_raw_fd()) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_f: &File) -> bool {
    false
}

/// Flushes the whole file system holding `path` to disk (what a group commit pays
/// once); returns whether it could.
pub fn sync_file_system_of(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| sync_filesystem(&f))
}

/// Writes many files durably with one group commit: every file goes to a temporary
/// name, the file system is synced once, the temporaries are renamed into place, and
/// each folder touched is synced. A crash leaves either the old state or a complete
/// file under each name, never a half-written one.
pub fn write_group(files: &[(PathBuf, Vec<u8>)]) -> Result<(), CheckpointError> {
    if files.is_empty() {
        return Ok(());
    }
    let mut dirs = BTreeSet::new();
    let mut temps = Vec::with_capacity(files.len());
    let mut last: Option<File> = None;
    for (path, bytes) in files {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if dirs.insert(dir.clone()) {
            fs::create_dir_all(&dir).map_err(|e| CheckpointError::io("creating", &dir, e))?;
        }
        let tmp = tmp_path(path);
        let mut f = File::create(&tmp).map_err(|e| CheckpointError::io("creating", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| CheckpointError::io("writing", &tmp, e))?;
        temps.push(tmp);
        last = Some(f);
    }
    let synced = last.as_ref().is_some_and(sync_filesystem);
    if !synced {
        for tmp in &temps {
            File::open(tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| CheckpointError::io("syncing", tmp, e))?;
        }
    }
    for (tmp, (path, _)) in temps.iter().zip(files) {
        fs::rename(tmp, path).map_err(|e| CheckpointError::io("renaming into", path, e))?;
    }
    for dir in dirs {
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CheckpointError::io("syncing folder", &dir, e))?;
    }
    Ok(())
}

/// Writes one file atomically and durably (temporary, sync, rename, sync folder).
pub fn write_atomic(path: &Path, bytes: Vec<u8>) -> Result<(), CheckpointError> {
    write_group(&[(path.to_path_buf(), bytes)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gridpipe-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn group_commit_writes_verifiable_files_and_no_temporaries() {
        let d = dir("group");
        let a = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
        let files: Vec<(PathBuf, Vec<u8>)> = (0..5)
            .map(|i| (d.join(format!("b/{i}.npy")), npy::encode(&a)))
            .collect();
        write_group(&files).unwrap();
        for (p, _) in &files {
            assert!(matches!(probe(p), Probe::Valid(Some(x)) if *x == a));
        }
        let names: Vec<_> = fs::read_dir(d.join("b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 5, "no temporary left: {names:?}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn probe_rejects_truncated_and_corrupted_files() {
        let d = dir("probe");
        fs::create_dir_all(&d).unwrap();
        let bytes = npy::encode(&array![1.0, 2.0, 3.0].into_dyn());
        let p = d.join("t.npy");
        fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(probe(&p), Probe::Invalid(r) if r.contains("truncated")));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        fs::write(&p, &bad).unwrap();
        assert!(matches!(probe(&p), Probe::Invalid(r) if r.contains("checksum")));
        assert!(matches!(probe(&d.join("none.npy")), Probe::Missing));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_corrupted_file_fails_to_load_and_is_moved_aside() {
        let d = dir("load");
        fs::create_dir_all(&d).unwrap();
        let mut bytes = npy::encode(&array![1.0, 2.0].into_dyn());
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let p = d.join("c.npy");
        fs::write(&p, &bytes).unwrap();
        let l = NpyLoader {
            path: p.clone(),
            cached: None,
        };
        let e = l.load().unwrap_err();
        assert!(e.0.contains("checksum") && e.0.contains("moved aside"));
        assert!(!p.exists() && d.join("c.npy.corrupt").exists());
        let _ = fs::remove_dir_all(&d);
    }
}
