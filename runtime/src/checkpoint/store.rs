//! Reading and writing feature files: verified probing, group commit, and a lazy
//! verified loader.

use super::npy;
use super::CheckpointError;
use crate::data::error::LoadError;
use crate::sample::Loader;
use crate::value::Value;
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What probing a sample's file found.
#[derive(Debug)]
pub enum Probe {
    /// A complete file whose checksum verified, and its data.
    Valid(ArrayD<f64>),
    /// No file.
    Missing,
    /// A file that must not be trusted (truncated, corrupted, foreign, unreadable).
    Invalid(String),
}

/// Reads and verifies the file at `path` whole (length and checksum): a file is
/// only ever used as data after its checksum verified.
pub fn probe(path: &Path) -> Probe {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Probe::Missing,
        Err(e) => return Probe::Invalid(format!("cannot read: {e}")),
    };
    match npy::decode(&bytes) {
        Ok(a) => Probe::Valid(a),
        Err(e) => Probe::Invalid(e),
    }
}

/// Loads one feature file lazily (a [`Loader`] for delayed samples), verifying its
/// checksum; a file that fails the check is moved aside (`.corrupt`) so that the
/// next run recomputes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NpyLoader {
    /// The file.
    pub path: PathBuf,
}

#[typetag::serde]
impl Loader for NpyLoader {
    fn load(&self) -> Result<Value, LoadError> {
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

/// The prefix of every temporary file a group commit writes (what a later run
/// sweeps when the one that wrote it was killed).
pub const TMP_PREFIX: &str = ".gridpipe-tmp-";

/// A temporary beside `path`. Its name does not derive from the file's, so a
/// temporary is never longer than the name it is for.
fn tmp_path(path: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!("{TMP_PREFIX}{}-{n}", std::process::id()))
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
///
/// Returns one result per file, in order: a file that cannot be created, written or
/// renamed (a name the file system refuses, a folder in the way) fails alone and
/// leaves no temporary; only a failed sync fails every file.
pub fn write_group(files: &[(PathBuf, Vec<u8>)]) -> Vec<Result<(), CheckpointError>> {
    let mut results: Vec<Result<(), CheckpointError>> = Vec::with_capacity(files.len());
    let mut temps: Vec<Option<PathBuf>> = Vec::with_capacity(files.len());
    let mut dirs = BTreeSet::new();
    let mut made = BTreeSet::new();
    let mut last: Option<File> = None;
    for (path, bytes) in files {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if made.insert(dir.clone()) {
            if let Err(e) = fs::create_dir_all(&dir) {
                made.remove(&dir);
                results.push(Err(CheckpointError::io("creating", &dir, e)));
                temps.push(None);
                continue;
            }
        }
        let tmp = tmp_path(path);
        let written = File::create(&tmp)
            .map_err(|e| CheckpointError::io("creating", &tmp, e))
            .and_then(|mut f| {
                f.write_all(bytes)
                    .map_err(|e| CheckpointError::io("writing", &tmp, e))?;
                Ok(f)
            });
        match written {
            Ok(f) => {
                last = Some(f);
                dirs.insert(dir);
                temps.push(Some(tmp));
                results.push(Ok(()));
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                temps.push(None);
                results.push(Err(e));
            }
        }
    }
    let synced = last.as_ref().is_some_and(sync_filesystem);
    for (tmp, result) in temps.iter().zip(results.iter_mut()) {
        let Some(tmp) = tmp else { continue };
        if !synced {
            if let Err(e) = File::open(tmp).and_then(|f| f.sync_all()) {
                *result = Err(CheckpointError::io("syncing", tmp, e));
            }
        }
    }
    for ((tmp, result), (path, _)) in temps.iter().zip(results.iter_mut()).zip(files) {
        let Some(tmp) = tmp else { continue };
        if result.is_err() {
            let _ = fs::remove_file(tmp);
            continue;
        }
        if let Err(e) = fs::rename(tmp, path) {
            let _ = fs::remove_file(tmp);
            *result = Err(CheckpointError::io("renaming into", path, e));
        }
    }
    for dir in dirs {
        if let Err(e) = File::open(&dir).and_then(|d| d.sync_all()) {
            for ((path, _), result) in files.iter().zip(results.iter_mut()) {
                if result.is_ok() && path.parent() == Some(dir.as_path()) {
                    *result = Err(CheckpointError::io(
                        "syncing folder",
                        &dir,
                        std::io::Error::new(e.kind(), e.to_string()),
                    ));
                }
            }
        }
    }
    results
}

/// Writes one file atomically and durably (temporary, sync, rename, sync folder).
pub fn write_atomic(path: &Path, bytes: Vec<u8>) -> Result<(), CheckpointError> {
    write_group(&[(path.to_path_buf(), bytes)])
        .pop()
        .expect("one result per file")
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
        assert!(write_group(&files).iter().all(Result::is_ok));
        for (p, _) in &files {
            assert!(matches!(probe(p), Probe::Valid(x) if x == a));
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
        let l = NpyLoader { path: p.clone() };
        let e = l.load().unwrap_err();
        assert!(e.0.contains("checksum") && e.0.contains("moved aside"));
        assert!(!p.exists() && d.join("c.npy.corrupt").exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn one_file_that_cannot_be_written_fails_alone() {
        let d = dir("alone");
        let a = npy::encode(&array![1.0].into_dyn());
        fs::create_dir_all(&d).unwrap();
        // A file where a folder should be: "x/2.npy" cannot be created.
        fs::write(d.join("x"), b"in the way").unwrap();
        let files = vec![
            (d.join("1.npy"), a.clone()),
            (d.join("x/2.npy"), a.clone()),
            (d.join("3.npy"), a.clone()),
        ];
        let results = write_group(&files);
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("x"), "{err}");
        assert!(d.join("1.npy").exists() && d.join("3.npy").exists());
        let temps = fs::read_dir(&d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(TMP_PREFIX)
            })
            .count();
        assert_eq!(temps, 0, "no temporary left");
        let _ = fs::remove_dir_all(&d);
    }
}
