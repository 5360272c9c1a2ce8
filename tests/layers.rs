//! The layers point one way: no module of `src/` names a module of a higher layer (in a
//! `use` or anywhere else as `crate::...`). The order, lowest first, is ARCHITECTURE.md's
//! invariant; this test is its check. A module not in the table fails the test too, so a new
//! one must be given its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Lowest first. Modules of one layer may use each other; none may use a higher layer.
const LAYERS: &[&[&str]] = &[
    // Foundations: no broker state.
    &[
        "error",
        "args",
        "names",
        "offload",
        "alarms",
        "config",
        "metrics",
        "password",
        "failed_logins",
        "access",
        "tls",
        "policy",
    ],
    &["message"],
    &["store"],
    &["queue"],
    &["exchange"],
    &["vhost"],
    &["broker"],
    &["connection", "http"],
    &["server"],
    // Clients of a running broker, run by the binary instead of the server: nothing uses them.
    &["ctl"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file of `src/` belongs to (`src/queue/ready.rs` -> `queue`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::<module>` names in `text`: code and doc comments (intra-doc links), not
/// plain comments.
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // Doc comments count (an intra-doc link is a dependency too); plain ones do not.
        let t = line.trim_start();
        let code = if t.starts_with("///") || t.starts_with("//!") {
            line
        } else {
            line.split("//").next().unwrap_or("")
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
            rest = after;
        }
        // `use crate::{a, b}` groups.
        if let Some(at) = code.find("crate::{") {
            let group = &code[at + "crate::{".len()..];
            for part in group.split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push((n + 1, name));
                }
            }
        }
    }
    out
}

#[test]
fn no_module_uses_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let Some(module) = module_of(&src, f) else {
            continue;
        };
        if ["lib", "main", "bin"].contains(&module.as_str()) {
            continue;
        }
        let Some(mine) = layer_of(&module) else {
            wrong.push(format!("{}: module `{module}` has no layer", f.display()));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (line, used) in crate_refs(&text) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(theirs) if theirs <= mine => {}
                Some(_) => wrong.push(format!(
                    "{}:{line}: `{module}` uses `{used}`, a higher layer",
                    f.display()
                )),
                None => wrong.push(format!(
                    "{}:{line}: `{used}` is not a module of the layer table",
                    f.display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_what_it_must() {
    let refs =
        crate_refs("use crate::vhost::VHost;\nuse crate::{queue, store::X};\n// crate::server\n");
    let names: Vec<&str> = refs.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["vhost", "queue", "store"]);
}
