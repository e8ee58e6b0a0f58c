//! The host's modules depend downward only: each top-level module of `host/src` may name (as
//! `crate::MODULE`) only modules in layers below its own, so no circle of imports can form.
//!
//! The table is the architecture, in one place: a new module is placed in it deliberately, and a
//! change that makes a lower module reach up fails here with the file and the reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Lowest first. A module may use any module of a lower layer, none of its own or a higher one.
const LAYERS: &[&[&str]] = &[
    // Leaves: formatting errors, escaping guest text for the log; the Exotel query parser (pure);
    // tenants' key-value data in memory (its disk is a trait the store implements); sealing
    // flows' secrets; the global allocator.
    &["error", "logsafe", "call", "kv", "secrets", "allocator"],
    // What a hook answers besides a branch, and how Exotel reads it.
    &["answer"],
    // wasmtime: limits, calls, failures.
    &["sandbox"],
    // A flow's settings and names.
    &["flow"],
    // Persistence, the queue's tables included.
    &["store"],
    // What the request path writes to on the side: records, counters; and token hashing.
    &["records", "metrics", "auth"],
    // Plugins, versions and the live flow table.
    &["registry"],
    // Async flows; rehearsing versions on recorded calls (backtests, dry runs, replays).
    &["queue", "rollout"],
    // The config file; `passthru run`.
    &["config", "runner"],
    // HTTP.
    &["api"],
    // Start-up: wires everything together.
    &["server"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn host_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`store/queue.rs` -> `store`), or `None` for the
/// crate root and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Every top-level module a piece of code names through `crate::`, including inside grouped
/// imports (`use crate::{a::X, b};`).
fn crate_references(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `$crate::`, `my_crate::` are not this crate.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

/// The file without its unit tests (which may use anything) and without comments.
fn code_outside_tests(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line.starts_with("//") || line.starts_with("///") || line.starts_with("//!"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_module_depends_only_on_lower_layers() {
    let src = host_src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(own) = layer_of(&module) else {
            violations.push(format!(
                "{}: module `{module}` is not in the LAYERS table of tests/layers.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_references(&code_outside_tests(&text)) {
            if used == module {
                continue;
            }
            edges.entry(module.clone()).or_default().push(used.clone());
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(_) => violations.push(format!(
                    "{}: `{module}` uses `crate::{used}`, which is not below it",
                    file.display()
                )),
                None => violations.push(format!(
                    "{}: `crate::{used}` is not a module in the LAYERS table",
                    file.display()
                )),
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that go up or sideways:\n{}",
        violations.join("\n")
    );
    // The scan must have seen the modules it guards, or it proves nothing.
    for (module, uses) in [
        ("registry", "store"),
        ("queue", "registry"),
        ("api", "queue"),
    ] {
        assert!(
            edges
                .get(module)
                .is_some_and(|e| e.iter().any(|u| u == uses)),
            "the scan did not find `{module}` using `{uses}`: is it reading the sources?"
        );
    }
}

#[test]
fn the_scan_finds_references_in_every_form() {
    let code = "use crate::store::{A, B};\nuse crate::{flow::X, sandbox};\n\
                fn f() { crate::call::parse(\"\"); }\nmacro_rules! m { () => { $crate::x } }";
    assert_eq!(
        crate_references(code),
        ["store", "flow", "sandbox", "call"].map(String::from)
    );
    let code = "use crate::a;\n/// crate::b\n#[cfg(test)]\nmod tests {\n use crate::c;\n}";
    assert_eq!(crate_references(&code_outside_tests(code)), ["a"]);
}

#[test]
fn only_the_store_talks_to_sqlite() {
    let src = host_src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let store = src.join("store");
    let mut seen_in_store = false;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let uses = code_outside_tests(&text).contains("rusqlite");
        if file.starts_with(&store) {
            seen_in_store |= uses;
        } else {
            assert!(
                !uses,
                "{} uses rusqlite; only host/src/store/ may",
                file.display()
            );
        }
    }
    assert!(
        seen_in_store,
        "the scan found no rusqlite in the store at all"
    );
}
