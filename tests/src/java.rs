//! The Java peers: a classpath resolved by Maven from `tests/java/pom.xml` (Apache Kafka 4.4, its
//! tools, the Java client, Streams, Connect) and the test project's own Java sources compiled
//! with `javac`. Both are cached under the target directory — the Maven repository in
//! `target/m2`, the classpath and classes in `target/java/` — and rebuilt when the pom or a source
//! changes. Test binaries running at once take a file lock, so only one resolves or compiles.

use crate::target_dir;
use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `tests/java/`: the pom, the Java sources, the log4j2 config.
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("java")
}

/// The Maven local repository, shared with `modules/kafka/build.rs` (which caches
/// `kafka-clients` there for the schemas).
pub fn maven_repo() -> PathBuf {
    target_dir().join("m2")
}

/// An exclusive lock on `path` (created if missing) held until the returned file is dropped.
pub fn lock(path: &Path) -> File {
    std::fs::create_dir_all(path.parent().expect("a lock file has a parent"))
        .expect("creating the lock's directory");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    file.lock().unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    file
}

fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The resolved classpath of the Java peers (jars in `target/m2`), without our own classes.
pub fn dependencies() -> &'static str {
    static CP: OnceLock<String> = OnceLock::new();
    CP.get_or_init(|| resolve(&project_dir().join("pom.xml"), &target_dir().join("java"), "about 160 MB"))
}

/// The test project's own classes (`tests/java/src`), compiled once per change of the sources.
pub fn classes() -> &'static Path {
    static CLASSES: OnceLock<PathBuf> = OnceLock::new();
    CLASSES.get_or_init(|| compile(&project_dir().join("src"), dependencies(), &target_dir().join("java")))
}

/// The classpath Maven resolves for the `packaging=pom` project `pom`, cached in
/// `dir/classpath.txt` until the pom changes or a jar goes missing. `size` tells the user what
/// the first run downloads.
pub fn resolve(pom: &Path, dir: &Path, size: &str) -> String {
    let _lock = lock(&dir.join(".lock"));
    let out = dir.join("classpath.txt");
    let fresh = |cp: &str| !cp.is_empty() && cp.split(':').all(|jar| Path::new(jar).exists());
    if let (Some(built), Some(changed)) = (mtime(&out), mtime(pom))
        && built >= changed
        && let Ok(cp) = std::fs::read_to_string(&out)
        && fresh(cp.trim())
    {
        return cp.trim().to_string();
    }
    eprintln!(
        "resolving {} with Maven into {} (the first run downloads {size})",
        pom.display(),
        maven_repo().display()
    );
    let tmp = dir.join("classpath.txt.tmp");
    let status = Command::new("mvn")
        .args(["-q", "-B", "-f"])
        .arg(pom)
        .arg(format!("-Dmaven.repo.local={}", maven_repo().display()))
        .arg(format!("-Dmdep.outputFile={}", tmp.display()))
        .arg("dependency:build-classpath")
        // What Maven prints is for the user, on stderr: stdout may be a program's answer.
        .stdout(std::io::stderr())
        .status()
        .expect("running mvn (the Java peers need Maven and a JDK 17+)");
    assert!(status.success(), "mvn could not resolve {}", pom.display());
    std::fs::rename(&tmp, &out).expect("keeping the classpath");
    let cp = std::fs::read_to_string(&out).expect("reading the classpath");
    assert!(fresh(cp.trim()), "Maven wrote a classpath with missing jars: {}", out.display());
    cp.trim().to_string()
}

/// The Java sources under `src`, compiled against `cp` into `dir/classes-<hash of the sources>`
/// (kept until a source changes).
pub fn compile(src: &Path, cp: &str, dir: &Path) -> PathBuf {
    let mut sources = Vec::new();
    collect_sources(src, &mut sources);
    sources.sort();
    let mut hasher = DefaultHasher::new();
    for s in &sources {
        s.hash(&mut hasher);
        std::fs::read(s).expect("reading a Java source").hash(&mut hasher);
    }
    let out = dir.join(format!("classes-{:016x}", hasher.finish()));
    let _lock = lock(&dir.join(".lock"));
    if out.exists() {
        return out;
    }
    let tmp = out.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let status = Command::new("javac")
        .args(["-nowarn", "-encoding", "UTF-8", "--release", "17", "-cp", cp, "-d"])
        .arg(&tmp)
        .args(&sources)
        .status()
        .expect("running javac (the Java peers need a JDK 17+)");
    assert!(status.success(), "javac failed on {}", src.display());
    std::fs::rename(&tmp, &out).expect("keeping the compiled classes");
    out
}

fn collect_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "java") {
            out.push(path);
        }
    }
}

/// `java` with the peers' classpath, our classes, the log4j2 config, a heap of `xmx` and the JVM
/// options `opts`, about to run `main` (its arguments still to add).
pub fn command(xmx: &str, opts: &[&str], main: &str) -> Command {
    let mut cmd = Command::new("java");
    cmd.arg(format!("-Xmx{xmx}"))
        .args(opts)
        .arg("-Djava.net.preferIPv4Stack=true")
        .arg(format!("-Dlog4j2.configurationFile={}", project_dir().join("log4j2.properties").display()))
        .arg("-cp")
        .arg(format!("{}:{}", classes().display(), dependencies()))
        .arg(main);
    cmd
}

/// Run a `guise.Clients` scenario (see `tests/java/src/guise/Clients.java`) and return the JSON it
/// printed; panics with the output when the JVM fails.
pub fn clients(args: &[&str]) -> serde_json::Value {
    run_main("guise.Clients", args)
}

/// Run one of the test project's programs (`main`, which prints one JSON line last) in a JVM of
/// its own and return that JSON; panics with the output when the JVM fails.
pub fn run_main(main: &str, args: &[&str]) -> serde_json::Value {
    let out = command("256m", &["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"], main)
        .args(args)
        .output()
        .expect("running java");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{main} {args:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{main} {args:?} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// Run one of Kafka's command-line tools by its main class, as a user would run the script
/// (`kafka-topics.sh` is `org.apache.kafka.tools.TopicCommand`): whether it exited with 0, and
/// what it printed on stdout.
pub fn tool(main: &str, args: &[&str]) -> (bool, String) {
    let out = command("256m", &["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"], main)
        .args(args)
        .output()
        .expect("running java");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}
