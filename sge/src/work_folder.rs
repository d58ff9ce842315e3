//! The cluster's work folder: a private root per user (by default in the
//! user's home, which exec hosts share), and one private sub-folder per cluster
//! holding its secret file, its lease and its jobs' logs.
//!
//! Every folder the cluster creates is made mode 0700 and checked afterwards:
//! owned by this user, not a symbolic link, no group or other permission bits.
//! An existing root is accepted when it is this user's and nobody else can
//! write to it; otherwise starting the cluster is an error naming the folder
//! and the problem.

use crate::cluster_error::ClusterError;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable naming the work folder's root.
pub const WORK_DIR_ENV: &str = "GRIDPIPE_SGE_DIR";

/// The default root of the work folder, from the values of
/// `$GRIDPIPE_SGE_DIR` and `$HOME`: the first if set and not empty, else
/// `$HOME/.gridpipe/sge`; `None` when neither is set.
pub fn default_work_root(sge_dir: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    set(sge_dir).or_else(|| set(home).map(|h| h.join(".gridpipe").join("sge")))
}

/// The default root of the work folder for this process's environment (see
/// [`default_work_root`]); an error saying what to set when there is no `HOME`.
pub fn work_root_from_env() -> Result<PathBuf, ClusterError> {
    default_work_root(std::env::var_os(WORK_DIR_ENV), std::env::var_os("HOME"))
        .ok_or(ClusterError::NoWorkDir)
}

/// What a folder check looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolderFacts {
    /// Whether the path itself is a symbolic link.
    pub is_symlink: bool,
    /// Whether it is (or, for a link, points to) a folder.
    pub is_dir: bool,
    /// The owner's user id.
    pub owner: u32,
    /// The permission bits.
    pub mode: u32,
}

/// How strict a folder check is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FolderRole {
    /// The root, which may exist already: ours and writable by us alone.
    Root,
    /// A folder the cluster created: ours, not a link, mode 0700 or stricter.
    Private,
}

/// What is wrong with a folder of role `role` for user `uid`, if anything.
pub fn folder_problem(facts: &FolderFacts, uid: u32, role: FolderRole) -> Option<String> {
    let mode = facts.mode & 0o7777;
    if role == FolderRole::Private && facts.is_symlink {
        return Some("is a symbolic link, not a folder the cluster made".into());
    }
    if !facts.is_dir {
        return Some("is not a folder".into());
    }
    if facts.owner != uid {
        return Some(format!(
            "is owned by user id {}, not by you (user id {uid}); whoever owns it can read the cluster's secret",
            facts.owner
        ));
    }
    match role {
        FolderRole::Root if mode & 0o022 != 0 => Some(format!(
            "is writable by group or others (mode {mode:o}); make it private (chmod 700) or choose another folder"
        )),
        FolderRole::Private if mode & 0o077 != 0 => Some(format!(
            "has mode {mode:o}; the cluster's folders must be private (0700)"
        )),
        _ => None,
    }
}

/// This process's effective user id.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn facts(link: &Metadata, target: Option<&Metadata>) -> FolderFacts {
    let meta = target.unwrap_or(link);
    FolderFacts {
        is_symlink: link.file_type().is_symlink(),
        is_dir: meta.is_dir(),
        owner: meta.uid(),
        mode: meta.permissions().mode(),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn refuse(path: &Path, problem: String) -> ClusterError {
    ClusterError::WorkDir {
        path: path.to_path_buf(),
        problem,
    }
}

/// Makes sure the root `root` exists (created 0700, with any missing parents)
/// and is this user's alone; a link to such a folder is fine.
pub fn prepare_root(root: &Path) -> Result<(), ClusterError> {
    if std::fs::symlink_metadata(root).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_error(root))?;
    }
    let link = std::fs::symlink_metadata(root).map_err(io_error(root))?;
    let target = std::fs::metadata(root).map_err(io_error(root))?;
    match folder_problem(
        &facts(&link, Some(&target)),
        current_uid(),
        FolderRole::Root,
    ) {
        Some(problem) => Err(refuse(root, problem)),
        None => Ok(()),
    }
}

/// Creates the folder `dir` (its parent must exist), mode 0700, and checks
/// it. An existing path is an error ([`std::io::ErrorKind::AlreadyExists`]).
pub fn make_private_dir(dir: &Path) -> Result<(), ClusterError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))?;
    // The umask may only have taken bits away; set exactly 0700.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
    check_private_dir(dir)
}

/// Checks that `dir` is a folder of this user's, not a link, mode 0700 or stricter.
pub fn check_private_dir(dir: &Path) -> Result<(), ClusterError> {
    let link = std::fs::symlink_metadata(dir).map_err(io_error(dir))?;
    match folder_problem(&facts(&link, None), current_uid(), FolderRole::Private) {
        Some(problem) => Err(refuse(dir, problem)),
        None => Ok(()),
    }
}

/// A fresh private folder `<root>/cluster-<id>` for one cluster, with its
/// private `logs/`; returns the folder and the cluster id (8 hex digits).
pub fn make_cluster_dir(root: &Path) -> Result<(PathBuf, String), ClusterError> {
    prepare_root(root)?;
    for _ in 0..16 {
        let id = cluster_id();
        let dir = root.join(format!("cluster-{id}"));
        match make_private_dir(&dir) {
            Ok(()) => {
                make_private_dir(&dir.join("logs"))?;
                return Ok((dir, id));
            }
            Err(ClusterError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(refuse(
        root,
        "16 fresh cluster folder names were all taken".into(),
    ))
}

/// A random cluster id: 8 lowercase hex digits.
pub fn cluster_id() -> String {
    let bytes = gridpipe_runtime::wire::auth::random_bytes();
    bytes[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_facts(owner: u32, mode: u32) -> FolderFacts {
        FolderFacts {
            is_symlink: false,
            is_dir: true,
            owner,
            mode,
        }
    }

    #[test]
    fn the_default_root_is_per_user() {
        assert_eq!(
            default_work_root(None, Some("/home/ana".into())),
            Some(PathBuf::from("/home/ana/.gridpipe/sge"))
        );
        assert_ne!(
            default_work_root(None, Some("/home/ana".into())),
            default_work_root(None, Some("/home/ben".into()))
        );
        assert_eq!(
            default_work_root(Some("/shared/ana/gp".into()), Some("/home/ana".into())),
            Some(PathBuf::from("/shared/ana/gp"))
        );
        assert_eq!(
            default_work_root(Some("".into()), Some("/home/ana".into())),
            Some(PathBuf::from("/home/ana/.gridpipe/sge"))
        );
        assert_eq!(default_work_root(None, None), None);
        assert_eq!(default_work_root(Some("".into()), Some("".into())), None);
    }

    #[test]
    fn the_default_root_of_this_process_is_under_its_home_or_the_variable() {
        let root = work_root_from_env().unwrap();
        match std::env::var_os(WORK_DIR_ENV).filter(|v| !v.is_empty()) {
            Some(v) => assert_eq!(root, PathBuf::from(v)),
            None => {
                let home = PathBuf::from(std::env::var_os("HOME").unwrap());
                assert_eq!(root, home.join(".gridpipe/sge"));
            }
        }
    }

    #[test]
    fn folder_policy() {
        let me = 1000;
        assert_eq!(
            folder_problem(&dir_facts(me, 0o700), me, FolderRole::Private),
            None
        );
        assert_eq!(
            folder_problem(&dir_facts(me, 0o755), me, FolderRole::Root),
            None
        );
        let p = folder_problem(&dir_facts(me, 0o755), me, FolderRole::Private).unwrap();
        assert!(p.contains("755") && p.contains("0700"), "{p}");
        for mode in [0o777, 0o1777, 0o775, 0o757] {
            let p = folder_problem(&dir_facts(me, mode), me, FolderRole::Root).unwrap();
            assert!(p.contains("writable by group or others"), "{p}");
        }
        let p = folder_problem(&dir_facts(65534, 0o700), me, FolderRole::Root).unwrap();
        assert!(p.contains("owned by user id 65534"), "{p}");
        let link = FolderFacts {
            is_symlink: true,
            ..dir_facts(me, 0o700)
        };
        assert!(folder_problem(&link, me, FolderRole::Private)
            .unwrap()
            .contains("symbolic link"));
        assert_eq!(folder_problem(&link, me, FolderRole::Root), None);
        let file = FolderFacts {
            is_dir: false,
            ..dir_facts(me, 0o600)
        };
        assert!(folder_problem(&file, me, FolderRole::Root)
            .unwrap()
            .contains("not a folder"));
    }

    /// A fresh, empty folder for one test (mode 0755, ours).
    fn test_dir(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gridpipe-workfolder-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn cluster_folders_are_created_private() {
        let base = test_dir("private");
        let root = base.join("a/b/root");
        let (dir, id) = make_cluster_dir(&root).unwrap();
        assert_eq!(dir, root.join(format!("cluster-{id}")));
        assert_eq!(id.len(), 8);
        for d in [&root, &base.join("a/b"), &dir, &dir.join("logs")] {
            assert_eq!(mode_of(d), 0o700, "{}", d.display());
        }
        let (other, other_id) = make_cluster_dir(&root).unwrap();
        assert_ne!((&other, &other_id), (&dir, &id));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_root_writable_by_others_is_refused_naming_it() {
        let root = test_dir("open-root");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = make_cluster_dir(&root).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ClusterError::WorkDir { .. }), "{err:?}");
        assert!(text.contains(&root.display().to_string()), "{text}");
        assert!(
            text.contains("writable by group or others (mode 777)"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_dir(&root).unwrap().count(),
            0,
            "nothing created in it"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_root_owned_by_someone_else_is_refused_naming_it() {
        // Giving the folder away takes root (as the grid tests run).
        let root = test_dir("foreign-root");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = 65534;
        std::os::unix::fs::chown(&root, Some(nobody), Some(nobody)).unwrap();
        let err = make_cluster_dir(&root).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&root.display().to_string()), "{text}");
        assert!(text.contains("owned by user id 65534"), "{text}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_link_planted_where_a_private_folder_goes_is_refused() {
        let base = test_dir("planted");
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let planned = base.join("cluster-x");
        std::os::unix::fs::symlink(&elsewhere, &planned).unwrap();
        let err = make_private_dir(&planned).unwrap_err();
        assert!(
            matches!(&err, ClusterError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{err:?}"
        );
        let err = check_private_dir(&planned).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
