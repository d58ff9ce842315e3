//! A run's hold on a features folder, so two runs never mix their files.
//!
//! Each features folder `<dir>` has a lock file beside it, `<dir>.gridpipe-lock`
//! (beside, not inside: a `Recompute` moves the folder aside). A run holds a
//! shared advisory lock (`flock`; NFS clients emulate it with byte-range locks) on
//! it for as long as it may write the folder, after checking the manifest under
//! that lock: runs of the same configuration share the folder; a run of another
//! configuration fails naming the holders (host, pid, since when) instead of
//! renaming the folder from under them. Changing the manifest (writing it, or
//! replacing the folder under `Recompute`) takes the lock exclusively, briefly.
//!
//! Each holder leaves a record in `<dir>/.gridpipe-holders/`, removed when it lets
//! go. A record found while holding the lock exclusively belongs to a run that was
//! killed: the temporaries it left are swept then.
//!
//! Runs of one process also check a registry of the folders the process holds,
//! since NFS's emulation of `flock` does not separate the runs of one process.

use super::manifest::{ensure, Manifest};
use super::store::TMP_PREFIX;
use super::{CheckpointError, OnChange};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The folder of holder records inside a features folder.
pub const HOLDERS_DIR: &str = ".gridpipe-holders";

/// How long a run waits for a brief exclusive holder (another run writing the
/// manifest) before it reports the folder as taken; a run of another
/// configuration holding the folder is reported at once.
const WAIT_FOR_CHANGE: Duration = Duration::from_secs(5);

/// A run's shared hold on a features folder; let go when dropped.
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    record: PathBuf,
    key: PathBuf,
    id: u64,
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.record);
        if let Ok(mut held) = registry().lock() {
            if let Some(v) = held.get_mut(&self.key) {
                v.retain(|(id, _)| *id != self.id);
                if v.is_empty() {
                    held.remove(&self.key);
                }
            }
        }
        let _ = self.file.unlock();
    }
}

/// Folders held by this process: lock file -> (holder id, configuration).
type Registry = HashMap<PathBuf, Vec<(u64, String)>>;

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The lock file of a features folder.
pub fn lock_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "features".into());
    dir.with_file_name(format!("{name}.gridpipe-lock"))
}

/// This machine's name.
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The configuration a manifest stands for, as one string.
fn configuration(m: &Manifest) -> String {
    format!(
        "{:016x}",
        super::hash::fnv1a64(&rmp_serde::to_vec(m).unwrap_or_default())
    )
}

/// Takes a shared hold on `dir` for a run of configuration `wanted`, checking (or
/// writing) its manifest under the lock; returns the hold and whether every sample
/// must be recomputed (the folder was replaced under `Recompute`).
pub fn acquire(
    dir: &Path,
    wanted: &Manifest,
    on_change: OnChange,
) -> Result<(FolderLock, bool), CheckpointError> {
    let config = configuration(wanted);
    let path = lock_path(dir);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| CheckpointError::io("creating", parent, e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| CheckpointError::io("opening the lock", &path, e))?;
    let key = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    let id = register(&key, dir, &config, &wanted.step)?;
    let unregister = |e| {
        release_registration(&key, id);
        e
    };
    let deadline = Instant::now() + WAIT_FOR_CHANGE;
    let mut force = false;
    loop {
        let alone = match file.try_lock() {
            Ok(()) => {
                // Alone: sweep what killed runs left, then set the manifest.
                let changed = sweep_if_killed(dir)
                    .and_then(|()| ensure(dir, wanted, on_change))
                    .inspect_err(|_| {
                        let _ = file.unlock();
                    })
                    .map_err(unregister)?;
                force |= changed;
                let _ = file.unlock();
                true
            }
            Err(TryLockError::WouldBlock) => false,
            Err(TryLockError::Error(e)) => {
                return Err(unregister(CheckpointError::io("locking", &path, e)))
            }
        };
        match file.try_lock_shared() {
            Ok(()) => match read_manifest(dir) {
                Some(m) if m == *wanted => {
                    let record = write_record(dir, &config).inspect_err(|_| {
                        let _ = file.unlock();
                    });
                    let record = record.map_err(unregister)?;
                    let lock = FolderLock {
                        file,
                        record,
                        key,
                        id,
                    };
                    return Ok((lock, force));
                }
                found => {
                    let _ = file.unlock();
                    match (found, on_change) {
                        (Some(m), OnChange::Refuse) => {
                            return Err(unregister(CheckpointError::Changed {
                                step: wanted.step.clone(),
                                dir: dir.display().to_string(),
                                differences: m.differences(wanted).join("; "),
                            }))
                        }
                        // Live holders of another configuration (the lock could
                        // not be taken alone): never change the folder under them.
                        (Some(_), OnChange::Recompute) if !alone => {
                            return Err(unregister(CheckpointError::Locked {
                                step: wanted.step.clone(),
                                dir: dir.display().to_string(),
                                holders: holders(dir),
                            }))
                        }
                        // Changed between our exclusive and shared holds: again.
                        _ => {}
                    }
                }
            },
            // Another run holds it exclusively, briefly (writing the manifest).
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(unregister(CheckpointError::io("locking", &path, e)))
            }
        }
        if Instant::now() > deadline {
            return Err(unregister(CheckpointError::Locked {
                step: wanted.step.clone(),
                dir: dir.display().to_string(),
                holders: holders(dir),
            }));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Records this run in the process's registry; refuses a folder this process holds
/// for another configuration.
fn register(key: &Path, dir: &Path, config: &str, step: &str) -> Result<u64, CheckpointError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut held = registry().lock().unwrap_or_else(|p| p.into_inner());
    let entry = held.entry(key.to_path_buf()).or_default();
    if entry.iter().any(|(_, c)| c != config) {
        return Err(CheckpointError::Locked {
            step: step.to_string(),
            dir: dir.display().to_string(),
            holders: format!(
                "another run of this process (host {}, pid {})",
                host_name(),
                std::process::id()
            ),
        });
    }
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    entry.push((id, config.to_string()));
    Ok(id)
}

fn release_registration(key: &Path, id: u64) {
    let mut held = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = held.get_mut(key) {
        v.retain(|(i, _)| *i != id);
        if v.is_empty() {
            held.remove(key);
        }
    }
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    let bytes = fs::read(dir.join(super::manifest::MANIFEST_FILE)).ok()?;
    rmp_serde::from_slice(&bytes).ok()
}

/// Leaves this run's record in the folder: who holds it, since when.
fn write_record(dir: &Path, config: &str) -> Result<PathBuf, CheckpointError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let folder = dir.join(HOLDERS_DIR);
    fs::create_dir_all(&folder).map_err(|e| CheckpointError::io("creating", &folder, e))?;
    let host = host_name();
    let pid = std::process::id();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let record = folder.join(format!("{host}-{pid}-{n}"));
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let text = format!("host={host}\npid={pid}\nsince={since}\nconfiguration={config}\n");
    File::create(&record)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| CheckpointError::io("writing", &record, e))?;
    Ok(record)
}

/// The holders named by their records: `host h pid p (since s)`, joined.
fn holders(dir: &Path) -> String {
    let mut out = Vec::new();
    for e in fs::read_dir(dir.join(HOLDERS_DIR))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = fs::read_to_string(e.path()).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or("?")
                .to_string()
        };
        out.push(format!(
            "host {} pid {} (since {} s after the epoch)",
            field("host="),
            field("pid="),
            field("since=")
        ));
    }
    if out.is_empty() {
        "a run that left no record".to_string()
    } else {
        out.join(", ")
    }
}

/// Called holding the lock exclusively: records left in the folder belong to runs
/// that were killed; their temporaries are removed with them.
fn sweep_if_killed(dir: &Path) -> Result<(), CheckpointError> {
    let folder = dir.join(HOLDERS_DIR);
    let records: Vec<PathBuf> = match fs::read_dir(&folder) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => return Ok(()),
    };
    if records.is_empty() {
        return Ok(());
    }
    let removed = remove_temporaries(dir);
    for r in &records {
        let _ = fs::remove_file(r);
    }
    tracing::warn!(
        dir = %dir.display(),
        killed_runs = records.len(),
        temporaries = removed,
        "a run using this folder was killed: its temporaries were removed"
    );
    Ok(())
}

/// Removes every temporary of a group commit under `dir`; returns how many.
pub fn remove_temporaries(dir: &Path) -> usize {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                if name != HOLDERS_DIR {
                    stack.push(e.path());
                }
            } else if is_temporary(&name) && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// A group-commit temporary: `.gridpipe-tmp-<pid>-<n>`, or the older
/// `.<name>.tmp-<pid>-<n>`.
fn is_temporary(name: &str) -> bool {
    name.starts_with(TMP_PREFIX) || (name.starts_with('.') && name.contains(".tmp-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_recognised() {
        assert!(is_temporary(".gridpipe-tmp-12-3"));
        assert!(is_temporary(".7.npy.tmp-12-3"));
        assert!(!is_temporary("7.npy"));
        assert!(!is_temporary("gridpipe-manifest.msgpack"));
    }

    #[test]
    fn the_lock_file_sits_beside_the_folder() {
        assert_eq!(
            lock_path(Path::new("/ck/features/pca")),
            Path::new("/ck/features/pca.gridpipe-lock")
        );
    }
}
