//! The workspace's shape (docs/design/engine.md, "Crates"): no component
//! crate depends on another component crate, in any dependency section;
//! every component crate is a feature of the binary. Read from the
//! `Cargo.toml` files themselves.

use std::collections::BTreeSet;
use std::path::Path;

use toml_edit::{DocumentMut, Item};

/// The crates that hold no component: what component crates may depend on
/// (and the bench harness, which depends on components for its benchmarks).
const NOT_COMPONENTS: &[&str] = &[
    "sluice-pdata",
    "sluice-core",
    "sluice-shared",
    "sluice-bench",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn manifest(path: &Path) -> DocumentMut {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

/// The workspace's member crates: (package name, manifest).
fn members() -> Vec<(String, DocumentMut)> {
    let top = manifest(&root().join("Cargo.toml"));
    let members = top["workspace"]["members"]
        .as_array()
        .expect("workspace.members is an array");
    members
        .iter()
        .map(|m| {
            let dir = m.as_str().expect("member paths are strings");
            let doc = manifest(&root().join(dir).join("Cargo.toml"));
            let name = doc["package"]["name"]
                .as_str()
                .expect("package.name")
                .to_string();
            (name, doc)
        })
        .collect()
}

/// Every dependency name of a manifest, in every section (normal, dev,
/// build, and target-specific ones).
fn dependency_names(doc: &DocumentMut) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut add = |table: &Item| {
        if let Some(t) = table.as_table_like() {
            for (k, v) in t.iter() {
                // `alias = { package = "real-name" }` counts by its real name.
                let real = v
                    .as_table_like()
                    .and_then(|t| t.get("package"))
                    .and_then(|p| p.as_str())
                    .unwrap_or(k);
                names.insert(real.to_string());
            }
        }
    };
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(item) = doc.get(section) {
            add(item);
        }
    }
    if let Some(targets) = doc.get("target").and_then(|t| t.as_table_like()) {
        for (_, target) in targets.iter() {
            for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
                if let Some(item) = target.get(section) {
                    add(item);
                }
            }
        }
    }
    names
}

fn component_crates() -> BTreeSet<String> {
    members()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n != "sluice" && !NOT_COMPONENTS.contains(&n.as_str()))
        .collect()
}

#[test]
fn no_component_crate_depends_on_another_component_crate() {
    let components = component_crates();
    assert!(
        components.len() >= 7,
        "expected the component families, found {components:?}"
    );
    let mut offences = Vec::new();
    for (name, doc) in members() {
        if !components.contains(&name) {
            continue;
        }
        for dep in dependency_names(&doc) {
            if dep != name && components.contains(&dep) {
                offences.push(format!("{name} depends on {dep}"));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "component crates must depend only on core, pdata and shared crates: {offences:?}"
    );
}

#[test]
fn the_core_and_the_shared_crates_depend_on_no_component_crate() {
    let components = component_crates();
    for (name, doc) in members() {
        if !["sluice-pdata", "sluice-core", "sluice-shared"].contains(&name.as_str()) {
            continue;
        }
        let bad: Vec<String> = dependency_names(&doc)
            .intersection(&components)
            .cloned()
            .collect();
        assert!(bad.is_empty(), "{name} depends on {bad:?}");
    }
}

#[test]
fn every_component_crate_is_an_optional_feature_of_the_binary() {
    let top = manifest(&root().join("Cargo.toml"));
    let features = top["features"].as_table().expect("[features]");
    let default: BTreeSet<String> = features["default"]
        .as_array()
        .expect("default features")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for krate in component_crates() {
        let dep = &top["dependencies"][krate.as_str()];
        assert_eq!(
            dep.get("optional").and_then(|o| o.as_bool()),
            Some(true),
            "{krate} must be an optional dependency of the binary"
        );
        let enabling: Vec<&str> = features
            .iter()
            .filter(|(_, v)| {
                v.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x.as_str() == Some(&format!("dep:{krate}")))
                })
            })
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            enabling.len(),
            1,
            "{krate}: exactly one feature enables it, found {enabling:?}"
        );
        assert!(
            default.contains(enabling[0]),
            "feature `{}` ({krate}) is on by default",
            enabling[0]
        );
    }
}
