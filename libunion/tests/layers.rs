//! libunion's modules form layers: none imports a module that imports it
//! back, directly or through others. The one call upwards is deliberate:
//! the first use of the per-process state arms the trap's handler
//! (`state` -> `trap`), since that first use may come from another
//! library's constructor, before libunion's own runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The one edge allowed to point up a layer.
const UPWARD: (&str, &str) = ("state", "trap");

/// Module name -> the modules of this crate it names (`crate::x`, or
/// `x` in a `use crate::{...}` group). Comments are not code.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("read src/") {
        let path = entry.expect("src/ entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            let text = std::fs::read_to_string(&path).expect("read a module");
            let code: String = text
                .lines()
                .map(|line| line.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            sources.insert(name, code);
        }
    }
    let names: BTreeSet<String> = sources.keys().cloned().collect();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    sources
        .iter()
        .map(|(module, code)| {
            let mut named = BTreeSet::new();
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    named.extend(group.split(',').map(|s| s.trim().to_owned()));
                } else {
                    named.insert(rest.chars().take_while(|&c| word(c)).collect());
                }
            }
            let named = named
                .into_iter()
                .filter(|n| names.contains(n) && n != module)
                .collect();
            (module.clone(), named)
        })
        .collect()
}

/// A path of imports from `from` back to itself, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        target: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in &graph[at] {
            if (at, next.as_str()) == UPWARD {
                continue;
            }
            if next == target {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, target, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_owned()];
    walk(graph, from, from, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn modules_import_each_other_without_circles() {
    let graph = imports();
    assert!(graph.len() > 20, "found the modules: {:?}", graph.keys());
    assert!(
        graph["state"].contains(UPWARD.1),
        "the allowed upward call is gone: drop it from this test"
    );
    for module in graph.keys() {
        if let Some(path) = circle(&graph, module) {
            panic!("an import circle: {}", path.join(" -> "));
        }
    }
}

#[test]
fn the_check_finds_a_circle() {
    let mut graph = imports();
    graph.get_mut("sys").unwrap().insert("resolve".to_owned());
    assert!(circle(&graph, "sys").is_some());
}
