//! The import rules of `docs/architecture.md`, checked: every module of `host/src` may name
//! (`crate::ROOM`) only the rooms its row of the "Rooms" table lists. The table is read from the
//! document itself, so the page and the code cannot drift apart silently: a new room needs a row,
//! and a new arrow needs the page to say so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// room → the rooms it may use, from the "Rooms" table (`| `room` | owns | may use |`).
fn rules(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let section = doc.split("\n## Rooms").nth(1).expect("docs/architecture.md has a \"## Rooms\" section");
    let section = section.split("\n## ").next().unwrap();
    let mut rules = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let room = cells[0].trim_matches('`').to_string();
        let may_use = cells.last().unwrap();
        let allowed = may_use
            .split(',')
            .map(|r| r.trim().trim_matches('`').to_string())
            .filter(|r| !r.is_empty() && r != "—")
            .collect();
        rules.insert(room, allowed);
    }
    assert!(rules.len() >= 5, "could not read the Rooms table of docs/architecture.md");
    rules
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Test-only code may use any room for its fixtures.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_stem().unwrap().to_string_lossy();
    name == "tests" || name.ends_with("_tests") || path.components().any(|c| c.as_os_str() == "tests")
}

/// The rooms a file's non-test code names, with the line of each first mention. The item after
/// a `#[cfg(test)]` (a `mod tests;` line, or a braced module, function or field) is skipped.
fn named_rooms(text: &str) -> BTreeMap<String, usize> {
    let mut found = BTreeMap::new();
    // Skipping a test item: None, or the brace depth reached so far (Some(0): not yet opened).
    let mut skipping: Option<i32> = None;
    let mut pending_test_attr = false;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            pending_test_attr = true;
            continue;
        }
        if pending_test_attr && !trimmed.starts_with("#[") && !trimmed.starts_with("//") {
            pending_test_attr = false;
            skipping = Some(0);
        }
        if let Some(depth) = skipping.as_mut() {
            let opened = *depth > 0 || line.contains('{');
            *depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            if (!opened && (trimmed.ends_with(';') || trimmed.ends_with(','))) || (opened && *depth <= 0) {
                skipping = None;
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c}`: the first segment of each top-level item.
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or("").to_string())
                    .collect()
            } else {
                vec![rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()]
            };
            for name in names.into_iter().filter(|n| !n.is_empty()) {
                found.entry(name).or_insert(n + 1);
            }
        }
    }
    found
}

#[test]
fn modules_import_only_what_docs_architecture_allows() {
    let root = workspace();
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let rules = rules(&doc);
    let src = root.join("host/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut broken = Vec::new();
    let mut rooms_seen = BTreeSet::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let room = first.trim_end_matches(".rs").to_string();
        if room == "lib" || room == "main" || is_test_file(rel) {
            continue;
        }
        rooms_seen.insert(room.clone());
        let Some(allowed) = rules.get(&room) else {
            broken.push(format!("{}: room `{room}` has no row in docs/architecture.md", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (used, line) in named_rooms(&text) {
            if used != room && !allowed.contains(&used) {
                broken.push(format!(
                    "{}:{line}: `{room}` uses `crate::{used}`, which docs/architecture.md does not allow",
                    rel.display()
                ));
            }
        }
    }
    for room in rules.keys() {
        if !rooms_seen.contains(room) {
            broken.push(format!("docs/architecture.md has a row for `{room}`, which host/src does not have"));
        }
    }
    assert!(broken.is_empty(), "import rules broken:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_qualified_uses() {
    let text = "use crate::{storage::Log, tenant};\nfn f() { crate::wasm::x(); } // crate::admin\n// crate::net\n#[cfg(test)]\nuse crate::server;";
    let found: Vec<String> = named_rooms(text).into_keys().collect();
    assert_eq!(found, ["storage", "tenant", "wasm"]);
    // Only the item after `#[cfg(test)]` is skipped: what follows it is checked again.
    let text = "#[cfg(test)]\nmod tests;\nuse crate::coord;\n#[cfg(test)]\nmod t {\n    use crate::admin;\n    fn x() {}\n}\nuse crate::net;\nstruct S {\n    #[cfg(test)]\n    f: crate::config::X,\n    g: crate::record::Y,\n}";
    let found: Vec<String> = named_rooms(text).into_keys().collect();
    assert_eq!(found, ["coord", "net", "record"]);
    let rules = rules(
        "x\n## Rooms\n\n| room | owns | may use |\n|---|---|---|\n| `a` | x | — |\n| `b` | y, z | `a`, `c` |\n| `c` | z | `a` |\n| `d` | z | `a` |\n| `e` | z | `a` |\n\n## Next\n| `f` | z | `a` |\n",
    );
    assert_eq!(rules.len(), 5);
    assert!(rules["a"].is_empty());
    assert_eq!(rules["b"].iter().cloned().collect::<Vec<_>>(), ["a", "c"]);
}
