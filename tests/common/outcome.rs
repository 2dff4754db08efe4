//! Judging task documents, and the document a driver that died mid-operation leaves behind.

use dcos_driver::bus::{TaskDocument, TaskStatus};
use dcos_driver::vocabulary::ErrorCode;
use serde_json::Value;

use super::Harness;

/// The result of a task that must have SUCCEEDED.
pub fn result(doc: &TaskDocument) -> &Value {
    assert_eq!(doc.status, TaskStatus::Succeeded, "{doc:#?}");
    doc.result.as_ref().unwrap()
}

/// The error code of a task that must have ended with an error.
pub fn error_code(doc: &TaskDocument) -> ErrorCode {
    doc.error
        .as_ref()
        .unwrap_or_else(|| panic!("no error: {doc:#?}"))
        .code
}

/// Stores the document a driver leaves when it dies mid-operation (RUNNING, no result, with
/// `progress`), so the next request with this task id is a redelivery that must resume.
pub async fn interrupted(h: &Harness, task_id: &str, operation: &str, progress: Option<Value>) {
    let mut doc = TaskDocument::new(task_id, "test", operation, TaskStatus::Running, "started");
    doc.progress = progress;
    h.tasks
        .put(task_id, serde_json::to_vec(&doc).unwrap().into())
        .await
        .unwrap();
}
