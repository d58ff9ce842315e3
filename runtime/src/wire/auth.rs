//! The per-cluster secret and the challenge-response proofs made from it.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// The name of the environment variable that may carry the secret (hex).
pub const SECRET_ENV: &str = "GRIDPIPE_SECRET";
/// The name of the environment variable that may name the secret's file.
pub const SECRET_FILE_ENV: &str = "GRIDPIPE_SECRET_FILE";

/// A 32-byte per-cluster secret. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// 32 random bytes (from two version-4 UUIDs, 244 random bits).
pub fn random_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Secret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        Secret(random_bytes())
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.len() != 64 {
            return Err(format!(
                "a secret is 64 hex digits, got {} characters",
                t.len()
            ));
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16)
                .map_err(|_| "a secret is hex digits".to_string())?;
        }
        Ok(Secret(out))
    }

    /// The secret as 64 hex digits (for a file or an environment variable).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Reads a secret file, refusing one that others than its owner can read.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path)
                .map_err(|e| format!("secret file {}: {e}", path.display()))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "secret file {} has mode {mode:o}; it must be readable by its owner only (chmod 600)",
                    path.display()
                ));
            }
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("secret file {}: {e}", path.display()))?;
        Self::from_hex(&text).map_err(|e| format!("secret file {}: {e}", path.display()))
    }

    /// Writes the secret to a new file of mode 0600.
    ///
    /// The file is created with `O_CREAT | O_EXCL | O_NOFOLLOW`: an existing
    /// file is never overwritten and a symbolic link planted at `path` is
    /// refused (its target is not written), so whoever can write the folder
    /// cannot choose where the secret goes.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let mut f = opts.open(path)?;
        f.write_all(self.to_hex().as_bytes())
    }

    /// The secret from `GRIDPIPE_SECRET_FILE` or `GRIDPIPE_SECRET`, in that order.
    pub fn from_env() -> Result<Self, String> {
        if let Ok(path) = std::env::var(SECRET_FILE_ENV) {
            return Self::from_file(Path::new(&path));
        }
        match std::env::var(SECRET_ENV) {
            Ok(hex) => Self::from_hex(&hex).map_err(|e| format!("{SECRET_ENV}: {e}")),
            Err(_) => Err(format!(
                "no secret: set {SECRET_FILE_ENV} (a mode-0600 file) or {SECRET_ENV}"
            )),
        }
    }

    /// The proof that the party `role` knows the secret, bound to both nonces.
    pub fn proof(&self, role: &str, first: &[u8], second: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("any key length");
        mac.update(role.as_bytes());
        mac.update(&[0]);
        mac.update(first);
        mac.update(second);
        mac.finalize().into_bytes().to_vec()
    }

    /// Checks a proof in constant time.
    pub fn verify(&self, role: &str, first: &[u8], second: &[u8], proof: &[u8]) -> bool {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("any key length");
        mac.update(role.as_bytes());
        mac.update(&[0]);
        mac.update(first);
        mac.update(second);
        mac.verify_slice(proof).is_ok()
    }
}

/// The build identity of another executable (the worker program a scheduler starts).
pub fn build_identity_of(program: &Path) -> Result<String, String> {
    let bytes =
        std::fs::read(program).map_err(|e| format!("cannot read {}: {e}", program.display()))?;
    Ok(hex(&Sha256::digest(&bytes)[..16]))
}

/// The build identity of the running executable: a hash of its bytes, so that a
/// worker and its scheduler agree only when they are the very same binary.
pub fn build_identity() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let bytes = std::env::current_exe()
            .and_then(std::fs::read)
            .unwrap_or_default();
        hex(&Sha256::digest(&bytes)[..16])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_secret_role_and_nonces() {
        let s = Secret::generate();
        let (a, b) = (random_bytes(), random_bytes());
        let p = s.proof("worker", &a, &b);
        assert!(s.verify("worker", &a, &b, &p));
        assert!(
            !s.verify("scheduler", &a, &b, &p),
            "a proof of one role is not another's"
        );
        assert!(!s.verify("worker", &b, &a, &p));
        assert!(!Secret::generate().verify("worker", &a, &b, &p));
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }

    #[test]
    fn secret_files_must_be_private() {
        let dir = std::env::temp_dir().join(format!("gridpipe-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        let _ = std::fs::remove_file(&path);
        let s = Secret::generate();
        s.write_file(&path).unwrap();
        assert_eq!(Secret::from_file(&path).unwrap(), s);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = Secret::from_file(&path).unwrap_err();
            assert!(e.contains("644") && e.contains("chmod 600"), "{e}");
        }
        assert!(Secret::from_hex("abc").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh, empty folder for one test.
    fn test_dir(test: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("gridpipe-secret-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_planted_at_the_secret_path_is_refused_and_its_target_untouched() {
        let dir = test_dir("symlink");
        let target = dir.join("chosen-by-someone-else");
        std::fs::write(&target, "theirs").unwrap();
        let path = dir.join("secret");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = Secret::generate().write_file(&path).unwrap_err();
        assert!(
            matches!(err.kind(), std::io::ErrorKind::AlreadyExists)
                || err.raw_os_error() == Some(libc::ELOOP),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "theirs");
        // A dangling link (the target does not exist yet) is refused too.
        std::fs::remove_file(&target).unwrap();
        assert!(Secret::generate().write_file(&path).is_err());
        assert!(!target.exists(), "nothing was written through the link");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_existing_secret_file_is_not_overwritten() {
        let dir = test_dir("existing");
        let path = dir.join("secret");
        let first = Secret::generate();
        first.write_file(&path).unwrap();
        let err = Secret::generate().write_file(&path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(Secret::from_file(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn build_identity_is_stable() {
        assert_eq!(build_identity(), build_identity());
        assert_eq!(build_identity().len(), 32);
    }
}
