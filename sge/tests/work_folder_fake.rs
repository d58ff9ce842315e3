//! The cluster's work folder on a `FakeBatchSystem`: per user by default,
//! private (0700 folders, a 0600 secret), and a root that others could write
//! to, or that another user owns, is refused with an error naming it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use gridpipe_sge::{
    ClusterError, ClusterOptions, FakeBatchSystem, QueueSpec, QueueSpecs, SgeCluster,
};

mod common;
use common::TempDir;

fn start(options: ClusterOptions) -> Result<SgeCluster, ClusterError> {
    let specs = QueueSpecs::new(QueueSpec::new("q_1day")).unwrap();
    SgeCluster::with_backend(
        specs,
        options.handle_signals(false),
        Arc::new(FakeBatchSystem::new()),
    )
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_default_work_folder_is_the_users_own_and_private() {
    let cluster = start(ClusterOptions::default()).unwrap();
    let dir = cluster.work_dir().to_path_buf();
    let root = match std::env::var_os("GRIDPIPE_SGE_DIR").filter(|v| !v.is_empty()) {
        Some(root) => root.into(),
        None => Path::new(&std::env::var_os("HOME").expect("HOME is set")).join(".gridpipe/sge"),
    };
    assert_eq!(dir.parent(), Some(root.as_path()), "{}", dir.display());
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(mode_of(&dir.join("logs")), 0o700);
    assert_eq!(mode_of(&dir.join("secret")), 0o600);
    cluster.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_work_root_others_can_write_to_is_refused_naming_it() {
    let root = TempDir::new("work-folder", "open");
    std::fs::set_permissions(&root.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = start(ClusterOptions::default().work_dir(&root.0))
        .err()
        .expect("a root of mode 777 is refused");
    let text = err.to_string();
    assert!(matches!(err, ClusterError::WorkDir { .. }), "{err:?}");
    assert!(text.contains(&root.0.display().to_string()), "{text}");
    assert!(text.contains("mode 777"), "{text}");
    assert_eq!(
        std::fs::read_dir(&root.0).unwrap().count(),
        0,
        "nothing written in it"
    );
}

#[test]
fn a_work_root_owned_by_another_user_is_refused_naming_it() {
    let root = TempDir::new("work-folder", "foreign");
    // Giving a folder away takes root, as the tests run.
    std::os::unix::fs::chown(&root.0, Some(65534), Some(65534)).expect("chown (run as root)");
    let err = start(ClusterOptions::default().work_dir(&root.0))
        .err()
        .expect("a root owned by nobody is refused");
    let text = err.to_string();
    assert!(text.contains(&root.0.display().to_string()), "{text}");
    assert!(text.contains("owned by user id 65534"), "{text}");
}
