//! Files that hold secrets (private keys, SCRAM credentials, admin tokens): read where the
//! configuration names them, never echoed. One readable by other users is warned about (not
//! refused: containers often run so).

use std::path::Path;

/// Warn when `path` (described as `what`) may be read by users other than its owner.
pub fn warn_if_readable_by_others(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", m.permissions().mode() & 0o777),
            "{what} is readable by other users; chmod 600 it"
        );
    }
}
