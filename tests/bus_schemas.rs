//! The committed `schemas/*.json` must be what the code generates.

use std::path::Path;

#[test]
fn committed_schemas_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        dcos_driver::schemas::write_all(&dir).expect("write schemas/");
    }
    for (name, schema) in dcos_driver::schemas::all() {
        let path = dir.join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == dcos_driver::schemas::render(&schema),
            "{} differs from the schema the code generates; regenerate it with \
             `UPDATE_SCHEMAS=1 cargo test --test bus_schemas` and commit the result",
            path.display()
        );
    }
}

#[test]
fn task_document_schema_names_every_status_and_field() {
    let (_, schema) = dcos_driver::schemas::all()
        .into_iter()
        .find(|(name, _)| *name == "task-document.schema.json")
        .expect("task document schema is registered");
    let text = dcos_driver::schemas::render(&schema);
    for word in [
        "taskId",
        "account",
        "operation",
        "status",
        "startedAt",
        "updatedAt",
        "endedAt",
        "progress",
        "result",
        "error",
        "history",
        "ACCEPTED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "REJECTED",
        "UNSUPPORTED",
        "INVALID_REQUEST",
        "FORBIDDEN",
    ] {
        assert!(text.contains(&format!("\"{word}\"")), "schema lacks {word}");
    }
}
