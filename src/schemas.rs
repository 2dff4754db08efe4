//! JSON Schema files of the public documents, generated from the Rust types.
//!
//! `schemas/*.json` are committed; `tests/bus_schemas.rs` fails when one differs from what the code
//! generates (`UPDATE_SCHEMAS=1 cargo test --test bus_schemas` rewrites them). The operations add
//! their description schemas to [`all`].

use std::path::Path;

use schemars::Schema;

use crate::bus::TaskDocument;

/// Every generated schema, with its file name under `schemas/`.
pub fn all() -> Vec<(&'static str, Schema)> {
    vec![(
        "task-document.schema.json",
        schemars::schema_for!(TaskDocument),
    )]
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
        std::fs::write(dir.join(name), render(&schema))?;
    }
    Ok(())
}
