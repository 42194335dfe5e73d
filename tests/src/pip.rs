//! PyPI packages for the tests, installed on first use into the target directory
//! (`pip install --target`), so a fresh clone needs nothing by hand.

use crate::target_dir;
use std::path::PathBuf;
use std::process::Command;

/// The directory (for PYTHONPATH) holding `requirement` (`name==version`) installed under
/// `target/<dir>/`, once `package` (the import name) is there. `no_deps`: install the package
/// alone. Installs beside it and renames, so test binaries running at once never see half an
/// install.
pub fn site(dir: &str, requirement: &str, package: &str, no_deps: bool) -> PathBuf {
    let site = target_dir().join(dir).join(requirement.replace("==", "-"));
    if site.join(package).join("__init__.py").exists() {
        return site;
    }
    let tmp = site.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-script-location"])
        .args(no_deps.then_some("--no-deps"))
        .arg("--target")
        .arg(&tmp)
        .arg(requirement)
        .status()
        .unwrap_or_else(|e| {
            panic!("running python3 -m pip for {requirement} (tests need CPython 3 with pip): {e}")
        });
    assert!(status.success(), "pip could not install {requirement}");
    std::fs::create_dir_all(site.parent().expect("has a parent")).expect("creating the target dir");
    if std::fs::rename(&tmp, &site).is_err() {
        // Another test binary installed it first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(site.join(package).join("__init__.py").exists(), "{requirement} is not in {}", site.display());
    site
}
