//! The typed Marathon `/v2` API: apps, tasks, deployments, groups, info, leader, ping, and raw reads for the
//! event reader's resync.

use bytes::Bytes;
use http::Method;
use serde::Deserialize;
use serde_json::Value;

use super::error::DcosError;
use super::transport::{Answer, CallSpec, Service};
use super::types::{App, Deployment, DeploymentRef, Task};
use super::DcosClient;

/// Header Marathon sets on deployment-creating answers.
pub const DEPLOYMENT_ID_HEADER: &str = "Marathon-Deployment-Id";

/// `GET /v2/apps` filters and embeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppsQuery {
    /// `embed=apps.tasks`.
    pub tasks: bool,
    /// `embed=apps.deployments`.
    pub deployments: bool,
    /// `embed=apps.counts`.
    pub counts: bool,
    /// `embed=apps.readiness`.
    pub readiness: bool,
    /// `embed=apps.lastTaskFailure`.
    pub last_task_failure: bool,
    /// `id=`: Marathon keeps apps whose id contains this string (use a group path like `/prod/`).
    pub id: Option<String>,
    /// `label=`: a label selector such as `HAPROXY_GROUP==prod_lb`.
    pub label: Option<String>,
}

impl AppsQuery {
    /// Apps with their tasks, deployments and counts (the resync and the server-group views).
    pub fn full() -> Self {
        AppsQuery {
            tasks: true,
            deployments: true,
            counts: true,
            ..AppsQuery::default()
        }
    }

    /// Only apps whose id contains `id` (Marathon's substring filter).
    pub fn under(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// Options of the task-killing calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KillOptions {
    /// Lower the app's instance count by the tasks killed (a deployment).
    pub scale: bool,
    /// Also forget the tasks' reservations (not with `scale`: Marathon answers 400).
    pub wipe: bool,
    /// Override a deployment lock.
    pub force: bool,
}

/// What a task kill answers: the killed tasks, or (with `scale`) the deployment it started.
#[derive(Debug, Clone, PartialEq)]
pub enum Killed {
    Tasks(Vec<Task>),
    Deployment(DeploymentRef),
}

/// A new app and the deployment that starts it.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedApp {
    pub app: App,
    pub deployment: DeploymentRef,
}

/// What `PUT /v2/groups` answers: a plan (`dryRun`) or a deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupChange {
    /// The dry-run plan (`{"steps": […]}`, as Marathon sent it).
    Plan(Value),
    Deployment(DeploymentRef),
}

/// The Marathon API of one account; from [`DcosClient::marathon`].
#[derive(Debug, Clone, Copy)]
pub struct Marathon<'a> {
    client: &'a DcosClient,
}

impl<'a> Marathon<'a> {
    pub(crate) fn new(client: &'a DcosClient) -> Self {
        Marathon { client }
    }

    /// `GET /v2/apps` with filters and embeds.
    pub async fn list_apps(&self, query: &AppsQuery) -> Result<Vec<App>, DcosError> {
        let mut spec = get("/v2/apps", "apps.list");
        for (on, embed) in [
            (query.tasks, "apps.tasks"),
            (query.deployments, "apps.deployments"),
            (query.counts, "apps.counts"),
            (query.readiness, "apps.readiness"),
            (query.last_task_failure, "apps.lastTaskFailure"),
        ] {
            spec = spec.query_if(on, "embed", embed);
        }
        if let Some(id) = &query.id {
            spec = spec.query("id", id);
        }
        if let Some(label) = &query.label {
            spec = spec.query("label", label);
        }
        #[derive(Deserialize)]
        struct Apps {
            apps: Vec<App>,
        }
        Ok(self.client.json::<Apps>(spec).await?.apps)
    }

    /// `GET /v2/apps/{id}`: the app with its tasks and deployments.
    pub async fn get_app(&self, id: &str) -> Result<App, DcosError> {
        #[derive(Deserialize)]
        struct One {
            app: App,
        }
        let spec = get(app_path(id, ""), "apps.get");
        Ok(self.client.json::<One>(spec).await?.app)
    }

    /// `POST /v2/apps`: creates the app (an existing id is `CONFLICT`).
    pub async fn create_app(&self, app: &App) -> Result<CreatedApp, DcosError> {
        let spec = call(Method::POST, "/v2/apps", "apps.create").json_body(app);
        let call = spec.call();
        let answer = self.client.execute(spec).await?;
        let app: App = serde_json::from_slice(&answer.body)
            .map_err(|source| DcosError::Decode { call, source })?;
        let deployment_id = header_deployment_id(&answer)
            .or_else(|| app.deployments().into_iter().next())
            .unwrap_or_default();
        let deployment = DeploymentRef {
            deployment_id,
            version: app.version().unwrap_or_default().to_string(),
        };
        Ok(CreatedApp { app, deployment })
    }

    /// `PUT /v2/apps/{id}?force=&partialUpdate=`: changes (or creates) the app; `partial` keeps the fields
    /// `patch` does not name.
    pub async fn update_app(
        &self,
        id: &str,
        patch: &App,
        force: bool,
        partial: bool,
    ) -> Result<DeploymentRef, DcosError> {
        let spec = call(Method::PUT, app_path(id, ""), "apps.update")
            .query("force", force)
            .query("partialUpdate", partial)
            .json_body(patch);
        self.deployment(spec).await
    }

    /// `DELETE /v2/apps/{id}?force=`.
    pub async fn delete_app(&self, id: &str, force: bool) -> Result<DeploymentRef, DcosError> {
        let spec = call(Method::DELETE, app_path(id, ""), "apps.delete").query("force", force);
        self.deployment(spec).await
    }

    /// `POST /v2/apps/{id}/restart?force=`: a rolling restart.
    pub async fn restart_app(&self, id: &str, force: bool) -> Result<DeploymentRef, DcosError> {
        let spec =
            call(Method::POST, app_path(id, "/restart"), "apps.restart").query("force", force);
        self.deployment(spec).await
    }

    /// `GET /v2/apps/{id}/tasks`.
    pub async fn app_tasks(&self, id: &str) -> Result<Vec<Task>, DcosError> {
        #[derive(Deserialize)]
        struct Tasks {
            tasks: Vec<Task>,
        }
        let spec = get(app_path(id, "/tasks"), "apps.tasks");
        Ok(self.client.json::<Tasks>(spec).await?.tasks)
    }

    /// `POST /v2/tasks/delete?scale=&wipe=&force=` with `{"ids": […]}`.
    pub async fn kill_tasks(
        &self,
        task_ids: &[String],
        options: KillOptions,
    ) -> Result<Killed, DcosError> {
        let spec = call(Method::POST, "/v2/tasks/delete", "tasks.kill")
            .query("scale", options.scale)
            .query_if(options.wipe, "wipe", true)
            .query_if(options.force, "force", true)
            .json_body(&serde_json::json!({ "ids": task_ids }));
        self.killed(spec).await
    }

    /// `DELETE /v2/apps/{id}/tasks/{taskId}?scale=&wipe=&force=`.
    pub async fn kill_app_task(
        &self,
        app_id: &str,
        task_id: &str,
        options: KillOptions,
    ) -> Result<Killed, DcosError> {
        let spec = call(
            Method::DELETE,
            app_path(app_id, &format!("/tasks/{task_id}")),
            "apps.tasks.kill",
        )
        .query("scale", options.scale)
        .query_if(options.wipe, "wipe", true)
        .query_if(options.force, "force", true);
        self.killed(spec).await
    }

    /// `GET /v2/deployments`.
    pub async fn deployments(&self) -> Result<Vec<Deployment>, DcosError> {
        self.client
            .json(get("/v2/deployments", "deployments.list"))
            .await
    }

    /// `DELETE /v2/deployments/{id}?force=`: without force Marathon rolls back (a new deployment); with force
    /// it just stops (202, no body → `None`).
    pub async fn cancel_deployment(
        &self,
        id: &str,
        force: bool,
    ) -> Result<Option<DeploymentRef>, DcosError> {
        let spec = call(
            Method::DELETE,
            format!("/v2/deployments/{}", id.trim_matches('/')),
            "deployments.cancel",
        )
        .query("force", force);
        let call = spec.call();
        let answer = self.client.execute(spec).await?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        deployment_ref(call, &answer).map(Some)
    }

    /// `GET /v2/groups/{id}`: the group tree with its apps (as Marathon sent it).
    pub async fn get_group(&self, id: &str) -> Result<Value, DcosError> {
        self.client.json(get(group_path(id), "groups.get")).await
    }

    /// `PUT /v2/groups/{id}?dryRun=&force=`.
    pub async fn put_group(
        &self,
        id: &str,
        body: &Value,
        dry_run: bool,
        force: bool,
    ) -> Result<GroupChange, DcosError> {
        let spec = call(Method::PUT, group_path(id), "groups.update")
            .query_if(dry_run, "dryRun", true)
            .query("force", force)
            .json_body(body);
        let call = spec.call();
        let answer = self.client.execute(spec).await?;
        if dry_run {
            let plan = serde_json::from_slice(&answer.body)
                .map_err(|source| DcosError::Decode { call, source })?;
            return Ok(GroupChange::Plan(plan));
        }
        deployment_ref(call, &answer).map(GroupChange::Deployment)
    }

    /// `DELETE /v2/groups/{id}?force=`.
    pub async fn delete_group(&self, id: &str, force: bool) -> Result<DeploymentRef, DcosError> {
        let spec = call(Method::DELETE, group_path(id), "groups.delete").query("force", force);
        self.deployment(spec).await
    }

    /// `GET /v2/info`.
    pub async fn info(&self) -> Result<Value, DcosError> {
        self.client.json(get("/v2/info", "info")).await
    }

    /// `GET /v2/leader`: the leader's `host:port`.
    pub async fn leader(&self) -> Result<String, DcosError> {
        #[derive(Deserialize)]
        struct Leader {
            leader: String,
        }
        Ok(self
            .client
            .json::<Leader>(get("/v2/leader", "leader"))
            .await?
            .leader)
    }

    /// `GET /ping`: succeeds when Marathon answers 2xx.
    pub async fn ping(&self) -> Result<(), DcosError> {
        self.client.execute(get("/ping", "ping")).await.map(|_| ())
    }

    /// A raw GET (`/v2/apps?embed=apps.tasks`, with the query in `path`) for callers that parse big answers
    /// themselves; the query is sent as given (already encoded). Bounded by `max_response_bytes`.
    pub async fn get_bytes(&self, path_and_query: &str) -> Result<Bytes, DcosError> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut spec = get(path.to_string(), "raw");
        spec.raw_query = (!query.is_empty()).then(|| query.to_string());
        Ok(self.client.execute(spec).await?.body)
    }

    async fn deployment(&self, spec: CallSpec) -> Result<DeploymentRef, DcosError> {
        let call = spec.call();
        let answer = self.client.execute(spec).await?;
        deployment_ref(call, &answer)
    }

    async fn killed(&self, spec: CallSpec) -> Result<Killed, DcosError> {
        let call = spec.call();
        let answer = self.client.execute(spec).await?;
        let body: Value =
            serde_json::from_slice(&answer.body).map_err(|source| DcosError::Decode {
                call: call.clone(),
                source,
            })?;
        let decode = |source| DcosError::Decode {
            call: call.clone(),
            source,
        };
        if body.get("deploymentId").is_some() {
            return Ok(Killed::Deployment(
                serde_json::from_value(body).map_err(decode)?,
            ));
        }
        let tasks = match (body.get("tasks"), body.get("task")) {
            (Some(list), _) => serde_json::from_value(list.clone()).map_err(decode)?,
            (None, Some(one)) => vec![serde_json::from_value(one.clone()).map_err(decode)?],
            (None, None) => Vec::new(),
        };
        Ok(Killed::Tasks(tasks))
    }
}

fn call(method: Method, path: impl Into<String>, endpoint: &'static str) -> CallSpec {
    CallSpec::new(Service::Marathon, method, path, endpoint)
}

fn get(path: impl Into<String>, endpoint: &'static str) -> CallSpec {
    call(Method::GET, path, endpoint)
}

/// `/v2/apps/<id><suffix>` with the id made absolute and without a trailing slash.
fn app_path(id: &str, suffix: &str) -> String {
    format!("/v2/apps/{}{suffix}", id.trim_matches('/'))
}

fn group_path(id: &str) -> String {
    let id = id.trim_matches('/');
    if id.is_empty() {
        "/v2/groups".into()
    } else {
        format!("/v2/groups/{id}")
    }
}

fn header_deployment_id(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get(DEPLOYMENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `{"deploymentId","version"}`, the id falling back to the `Marathon-Deployment-Id` header.
fn deployment_ref(call: super::Call, answer: &Answer) -> Result<DeploymentRef, DcosError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        #[serde(default)]
        deployment_id: Option<String>,
        #[serde(default)]
        version: Option<String>,
    }
    let body: Body = serde_json::from_slice(&answer.body)
        .map_err(|source| DcosError::Decode { call, source })?;
    Ok(DeploymentRef {
        deployment_id: body
            .deployment_id
            .or_else(|| header_deployment_id(answer))
            .unwrap_or_default(),
        version: body.version.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_absolute_without_trailing_slash() {
        assert_eq!(app_path("/prod/api/", ""), "/v2/apps/prod/api");
        assert_eq!(
            app_path("prod/api", "/restart"),
            "/v2/apps/prod/api/restart"
        );
        assert_eq!(group_path("/"), "/v2/groups");
        assert_eq!(group_path("/prod"), "/v2/groups/prod");
    }
}
