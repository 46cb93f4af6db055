//! Unpacked layers as the tests read them: their metadata, and the view a
//! container gets of a stack of them.

use std::path::{Path, PathBuf};

use crate::tree::{self, Tree};

/// A layer directory's `meta.json`.
pub fn layer_meta(layer: &Path) -> serde_json::Value {
    let path = layer.join("meta.json");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a container sees through the layers in `dirs` (bottom first):
/// merged with the whiteouts and opaque directories their metadata records.
pub fn merged_view(dirs: &[PathBuf]) -> Tree {
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().expect("path").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let layers: Vec<tree::Layer> = dirs
        .iter()
        .map(|dir| {
            let meta = layer_meta(dir);
            (
                dir.join("root"),
                strings(&meta["whiteouts"]),
                strings(&meta["opaque"]),
            )
        })
        .collect();
    tree::merge_layers(&layers)
}
