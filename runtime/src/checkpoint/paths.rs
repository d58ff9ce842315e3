//! Sample keys to file paths.

use super::hash::fnv1a64;
use super::CheckpointError;
use std::path::{Component, Path, PathBuf};

/// The longest file or folder name most file systems allow, in bytes.
const MAX_NAME: usize = 255;

/// The file of sample `key` in `dir`: `dir/[bucket/]key.npy`. Keys may contain
/// sub-folders; absolute keys, keys with `..`, NUL bytes or names over 255 bytes
/// are refused (the error names the key and why).
pub fn sample_path(
    dir: &Path,
    key: &str,
    buckets: Option<u32>,
) -> Result<PathBuf, CheckpointError> {
    let bad = |reason| CheckpointError::BadKey {
        key: key.to_string(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("it is empty"));
    }
    if key.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    let rel = Path::new(key);
    let last = rel.components().count().saturating_sub(1);
    for (i, c) in rel.components().enumerate() {
        match c {
            // File systems allow 255 bytes per name; the last one gets `.npy`.
            Component::Normal(name) if name.len() > MAX_NAME - if i == last { 4 } else { 0 } => {
                return Err(bad(if i == last {
                    "its file name would be longer than 255 bytes"
                } else {
                    "a folder name in it is longer than 255 bytes"
                }))
            }
            Component::Normal(_) => {}
            Component::ParentDir => return Err(bad("it contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("it is an absolute path")),
            Component::CurDir => return Err(bad("it contains `.` components")),
        }
    }
    if key.ends_with('/') {
        return Err(bad("it ends with a folder separator"));
    }
    let mut p = dir.to_path_buf();
    if let Some(n) = buckets {
        p.push((fnv1a64(key.as_bytes()) % u64::from(n.max(1))).to_string());
    }
    p.push(format!("{key}.npy"));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_paths_and_bad_keys_are_refused() {
        let d = Path::new("/ck");
        assert_eq!(sample_path(d, "7", None).unwrap(), Path::new("/ck/7.npy"));
        assert_eq!(
            sample_path(d, "s01/img3", None).unwrap(),
            Path::new("/ck/s01/img3.npy")
        );
        let b = sample_path(d, "7", Some(10)).unwrap();
        let bucket: u32 = b
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(bucket < 10);
        let long = "k".repeat(252);
        assert!(sample_path(d, &"k".repeat(251), None).is_ok());
        let nul = "a\0b";
        let deep = format!("{long}{long}/x");
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "",
            "a/",
            nul,
            &long,
            &deep,
        ] {
            let e = sample_path(d, bad, None).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }
}
