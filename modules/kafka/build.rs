//! Generates the request schemas the claims walk (`src/claims.rs`) interprets, from Apache
//! Kafka's own JSON message specs — the files Kafka's and kafka-protocol's codecs are generated
//! from. The specs ship inside the `kafka-clients` jar on Maven Central
//! (`common/message/*Request.json`); the jar is fetched once into a Maven-layout cache under
//! `target/m2` (or `GUISE_MAVEN_REPO`), checked against a pinned SHA-256, and read here. No spec
//! is copied into the repository.
//!
//! The jar's version is the Kafka release kafka-protocol was generated from (0.18 → Kafka 4.1.0),
//! so the walk describes exactly what the decoder reads; the `claims_match_the_decoder` property
//! test holds the two together. Bump both at once.
//!
//! Offline builds: point `GUISE_KAFKA_CLIENTS_JAR` at a copy of the jar.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

const KAFKA_VERSION: &str = "4.1.0";
const JAR_SHA256: &str = "eb74709dc3be35e06208827860c87a94872e8a4b00f466880670785c85a20627";
const CENTRAL: &str = "https://repo1.maven.org/maven2";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GUISE_KAFKA_CLIENTS_JAR");
    println!("cargo:rerun-if-env-changed=GUISE_MAVEN_REPO");
    let jar = fs::read(locate_jar()).unwrap_or_else(|e| panic!("reading the kafka-clients jar: {e}"));
    let specs = read_specs(&jar);
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("requests.rs");
    fs::write(&out, generate(&specs)).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// The verified jar: `GUISE_KAFKA_CLIENTS_JAR`, else the Maven-layout cache, downloading into it
/// on first use.
fn locate_jar() -> PathBuf {
    if let Some(path) = env::var_os("GUISE_KAFKA_CLIENTS_JAR") {
        let path = PathBuf::from(path);
        verify(&path).unwrap_or_else(|e| panic!("GUISE_KAFKA_CLIENTS_JAR={}: {e}", path.display()));
        return path;
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.parent().and_then(Path::parent).expect("modules/kafka sits two levels down");
    let repo =
        env::var_os("GUISE_MAVEN_REPO").map(PathBuf::from).unwrap_or_else(|| workspace.join("target/m2"));
    let relative =
        format!("org/apache/kafka/kafka-clients/{KAFKA_VERSION}/kafka-clients-{KAFKA_VERSION}.jar");
    let path = repo.join(&relative);
    if verify(&path).is_ok() {
        return path;
    }
    let url = format!("{CENTRAL}/{relative}");
    let dir = path.parent().unwrap();
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    // Download beside the final name and rename: builds running side by side never see half a jar.
    let partial = dir.join(format!(".kafka-clients-{}.part", std::process::id()));
    let status = Command::new("curl")
        .args(["-fsSL", "--retry", "3", "--connect-timeout", "20", "-o"])
        .arg(&partial)
        .arg(&url)
        .status();
    let fetched = matches!(status, Ok(s) if s.success());
    if !fetched {
        let _ = fs::remove_file(&partial);
        panic!(
            "the Kafka message specs come from {url} (the Kafka release kafka-protocol was generated \
             from) and it could not be downloaded with curl ({status:?}). Without network, set \
             GUISE_KAFKA_CLIENTS_JAR to a copy of kafka-clients-{KAFKA_VERSION}.jar."
        );
    }
    if let Err(e) = verify(&partial) {
        let _ = fs::remove_file(&partial);
        panic!("{url}: {e}");
    }
    fs::rename(&partial, &path).unwrap_or_else(|e| panic!("moving the jar into {}: {e}", path.display()));
    path
}

fn verify(path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    if digest == JAR_SHA256 {
        Ok(())
    } else {
        Err(format!("SHA-256 {digest}, expected {JAR_SHA256} (kafka-clients {KAFKA_VERSION})"))
    }
}

/// Every `common/message/*Request.json` in the jar, parsed (the specs carry `//` comments).
fn read_specs(jar: &[u8]) -> Vec<Value> {
    let mut specs = Vec::new();
    for (name, text) in zip_entries(jar, |name| {
        name.starts_with("common/message/") && name.ends_with("Request.json") && !name[15..].contains('/')
    }) {
        let text = String::from_utf8(text).unwrap_or_else(|_| panic!("{name} is not UTF-8"));
        let spec: Value =
            serde_json::from_str(&strip_comments(&text)).unwrap_or_else(|e| panic!("parsing {name}: {e}"));
        specs.push(spec);
    }
    assert!(specs.len() > 50, "only {} request specs in the jar", specs.len());
    specs
}

/// The entries of a zip archive whose names `want` accepts: (name, contents). Stored and deflated
/// entries, no zip64 (the jar needs neither).
fn zip_entries(zip: &[u8], want: impl Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
    let u16_at = |at: usize| u16::from_le_bytes([zip[at], zip[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes([zip[at], zip[at + 1], zip[at + 2], zip[at + 3]]) as usize;
    let end = (0..zip.len().saturating_sub(21))
        .rev()
        .find(|&at| zip[at..].starts_with(&[0x50, 0x4b, 0x05, 0x06]))
        .expect("the jar has no zip end-of-directory record");
    let entries = u16_at(end + 10);
    let mut at = u32_at(end + 16);
    let mut found = Vec::new();
    for _ in 0..entries {
        assert!(zip[at..].starts_with(&[0x50, 0x4b, 0x01, 0x02]), "a broken zip central directory");
        let method = u16_at(at + 10);
        let compressed = u32_at(at + 20);
        let (name_len, extra_len, comment_len) = (u16_at(at + 28), u16_at(at + 30), u16_at(at + 32));
        let local = u32_at(at + 42);
        let name = String::from_utf8_lossy(&zip[at + 46..at + 46 + name_len]).into_owned();
        at += 46 + name_len + extra_len + comment_len;
        if !want(&name) {
            continue;
        }
        let data = local + 30 + u16_at(local + 26) + u16_at(local + 28);
        let raw = &zip[data..data + compressed];
        let contents = match method {
            0 => raw.to_vec(),
            8 => {
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(raw)
                    .read_to_end(&mut out)
                    .unwrap_or_else(|e| panic!("inflating {name}: {e}"));
                out
            }
            other => panic!("{name}: zip method {other} is not supported"),
        };
        found.push((name, contents));
    }
    found
}

/// JSON with `//` line comments (outside strings) removed.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// `(first, last)` of a spec's version string: "3+", "0-7", "5", or "none" (empty).
fn versions(spec: Option<&Value>) -> (i16, i16) {
    let text = spec.and_then(Value::as_str).unwrap_or("none").trim();
    let number = |s: &str| s.trim().parse::<i16>().unwrap_or_else(|_| panic!("a version range {text:?}"));
    if text == "none" {
        (i16::MAX, i16::MIN)
    } else if let Some(first) = text.strip_suffix('+') {
        (number(first), i16::MAX)
    } else if let Some((first, last)) = text.split_once('-') {
        (number(first), number(last))
    } else {
        (number(text), number(text))
    }
}

fn range((first, last): (i16, i16)) -> String {
    let bound = |v: i16| match v {
        i16::MAX => "i16::MAX".to_string(),
        i16::MIN => "i16::MIN".to_string(),
        v => v.to_string(),
    };
    format!("Versions({}, {})", bound(first), bound(last))
}

/// Rust source of a static `&[Request]`, in api-key order, for `src/claims.rs`.
fn generate(specs: &[Value]) -> String {
    let mut requests = BTreeMap::new();
    for spec in specs {
        let key = spec["apiKey"].as_i64().expect("apiKey") as i16;
        let name = spec["name"].as_str().expect("name");
        let valid = versions(spec.get("validVersions"));
        if valid.0 > valid.1 {
            // An API Kafka removed ("validVersions": "none"): nothing to decode.
            continue;
        }
        let common: BTreeMap<&str, &Value> = spec["commonStructs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (s["name"].as_str().expect("a common struct's name"), &s["fields"]))
            .collect();
        let mut src = String::new();
        writeln!(
            src,
            "    // {name}\n    Request {{ key: {key}, valid: {}, flexible: {}, fields: {} }},",
            range(valid),
            range(versions(spec.get("flexibleVersions"))),
            fields(&spec["fields"], &common, name, 2),
        )
        .unwrap();
        assert!(requests.insert(key, src).is_none(), "two request specs for api key {key}");
    }
    let mut out = format!(
        "// Generated by modules/kafka/build.rs from kafka-clients {KAFKA_VERSION}'s \
         common/message/*Request.json. Do not edit.\n\npub(crate) static REQUESTS: &[Request] = &[\n"
    );
    for src in requests.values() {
        out.push_str(src);
    }
    out.push_str("];\n");
    out
}

/// `&[Field { .. }, ..]` for a spec's `fields` array.
fn fields(list: &Value, common: &BTreeMap<&str, &Value>, context: &str, depth: usize) -> String {
    let indent = "    ".repeat(depth);
    let mut out = String::from("&[\n");
    for field in list.as_array().unwrap_or_else(|| panic!("{context}: fields is not an array")) {
        let name = field["name"].as_str().expect("a field's name");
        let context = format!("{context}.{name}");
        let ty = field["type"].as_str().unwrap_or_else(|| panic!("{context}: no type"));
        assert!(field.get("flexibleVersions").is_none(), "{context}: a field-level flexibleVersions");
        let tag = match field.get("tag") {
            Some(tag) => format!(
                "Some(({}, {}))",
                tag.as_u64().unwrap_or_else(|| panic!("{context}: a tag")),
                range(versions(field.get("taggedVersions")))
            ),
            None => "None".to_string(),
        };
        writeln!(
            out,
            "{indent}    // {name}\n{indent}    Field {{ versions: {}, tag: {tag}, ty: {} }},",
            range(versions(field.get("versions"))),
            type_of(ty, field, common, &context, depth + 1),
        )
        .unwrap();
    }
    out.push_str(&indent);
    out.push(']');
    out
}

fn type_of(ty: &str, field: &Value, common: &BTreeMap<&str, &Value>, context: &str, depth: usize) -> String {
    element_type(ty, field, common, context, depth, false)
}

/// [`type_of`]; `element` for an array's elements, which are never null (an array field's
/// nullableVersions are the array's).
fn element_type(
    ty: &str,
    field: &Value,
    common: &BTreeMap<&str, &Value>,
    context: &str,
    depth: usize,
    element: bool,
) -> String {
    if let Some(inner) = ty.strip_prefix("[]") {
        return format!("Ty::Array(&{})", element_type(inner, field, common, context, depth, true));
    }
    match ty {
        "bool" | "int8" => "Ty::Fixed(1)".into(),
        "int16" | "uint16" => "Ty::Fixed(2)".into(),
        "int32" | "uint32" => "Ty::Fixed(4)".into(),
        "int64" | "float64" => "Ty::Fixed(8)".into(),
        "uuid" => "Ty::Fixed(16)".into(),
        "string" => "Ty::String".into(),
        "bytes" | "records" => "Ty::Bytes".into(),
        _ => {
            let inner = match field.get("fields") {
                Some(inner) => inner,
                None => common.get(ty).unwrap_or_else(|| panic!("{context}: unknown type {ty}")),
            };
            let inner = fields(inner, common, context, depth);
            match field.get("nullableVersions").filter(|_| !element) {
                // A nullable struct: an int8 presence marker first.
                Some(nullable) => format!("Ty::OptionStruct({inner}, {})", range(versions(Some(nullable)))),
                None => format!("Ty::Struct({inner})"),
            }
        }
    }
}
