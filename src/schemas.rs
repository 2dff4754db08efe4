//! JSON Schema files of the public documents, generated from the Rust types.
//!
//! `schemas/*.json` are committed; `tests/bus_schemas.rs` fails when one differs from what the code
//! generates (`UPDATE_SCHEMAS=1 cargo test --test bus_schemas` rewrites them). Besides the task
//! document, every supported operation's description has one under `schemas/descriptions/`
//! (`<operation_lower>.schema.json`, from [`crate::ops::description::all_schemas`]).

use std::path::Path;

use schemars::Schema;

use crate::bus::TaskDocument;

/// Every generated schema, with its file name under `schemas/`.
pub fn all() -> Vec<(String, Schema)> {
    let mut schemas = vec![(
        "task-document.schema.json".to_string(),
        schemars::schema_for!(TaskDocument),
    )];
    schemas.extend(crate::ops::description::all_schemas());
    schemas
}

/// The file text of a schema: pretty JSON with a final newline.
pub fn render(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema always serialises");
    text.push('\n');
    text
}

/// Writes every schema into `dir`.
pub fn write_all(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, schema) in all() {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, render(&schema))?;
    }
    Ok(())
}
