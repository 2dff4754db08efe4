//! Route templates for the `endpoint` label of DC/OS request metrics: ids become `{id}`, so the label
//! has a bounded set of values whatever the cluster holds.

/// Path words that are part of a DC/OS route, never an id.
const ROUTE_WORDS: &[&str] = &[
    "acs",
    "actions",
    "api",
    "apps",
    "auth",
    "delay",
    "delete",
    "deployments",
    "events",
    "groups",
    "info",
    "jobs",
    "leader",
    "login",
    "metrics",
    "ping",
    "queue",
    "restart",
    "runs",
    "schedules",
    "stop",
    "tasks",
    "v0",
    "v1",
    "v2",
    "versions",
];

/// The route template of one DC/OS call, for the `endpoint` label: `("get", "/service/marathon/v2/apps/prod/web/api-v001?embed=apps.tasks")`
/// → `GET /v2/apps/{id}`.
///
/// App, group, task, job, run, deployment and version ids all become `{id}`, so the label has a
/// bounded set of values whatever the cluster holds. The admin-router prefixes
/// (`/service/marathon`, `/service/metronome`), a scheme and host, and the query string are dropped.
pub fn endpoint_template(method: &str, path: &str) -> String {
    let method = match method.to_ascii_uppercase().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "OTHER".to_string(),
    };
    let path = strip_origin(path);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.len() >= 2
        && segments[0] == "service"
        && matches!(segments[1], "marathon" | "metronome")
    {
        segments.drain(..2);
    }
    let route = match segments.as_slice() {
        // Marathon ids span several segments: the route is decided by the known suffix.
        ["v2", resource @ ("apps" | "groups" | "queue"), id @ ..] if !id.is_empty() => {
            format!("/v2/{resource}/{}", marathon_id_route(id))
        }
        other => collapse_ids(other),
    };
    format!("{method} {route}")
}

/// The part after `/v2/apps/`, `/v2/groups/` or `/v2/queue/`: `{id}` plus a known suffix.
fn marathon_id_route(rest: &[&str]) -> &'static str {
    match rest {
        [_, .., "restart"] => "{id}/restart",
        [_, .., "delay"] => "{id}/delay",
        [_, .., "tasks"] => "{id}/tasks",
        [_, .., "versions"] => "{id}/versions",
        [_, .., "tasks", _] => "{id}/tasks/{id}",
        [_, .., "versions", _] => "{id}/versions/{id}",
        _ => "{id}",
    }
}

/// Keeps route words and turns every run of other segments into one `{id}`.
fn collapse_ids(segments: &[&str]) -> String {
    let mut route = String::new();
    let mut in_id = false;
    for segment in segments {
        if ROUTE_WORDS.contains(segment) {
            route.push('/');
            route.push_str(segment);
            in_id = false;
        } else if !in_id {
            route.push_str("/{id}");
            in_id = true;
        }
    }
    if route.is_empty() {
        route.push('/');
    }
    route
}

fn strip_origin(path: &str) -> &str {
    match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[(&str, &str, &str)] = &[
        // Marathon apps: ids span several segments; the known suffix decides the route.
        ("GET", "/v2/apps", "GET /v2/apps"),
        ("GET", "/v2/apps?embed=apps.tasks&label=x", "GET /v2/apps"),
        ("get", "/v2/apps/prod/web/api-v001", "GET /v2/apps/{id}"),
        (
            "PUT",
            "/v2/apps/prod/web/api-v001?force=true",
            "PUT /v2/apps/{id}",
        ),
        (
            "POST",
            "/v2/apps/prod/api-v001/restart",
            "POST /v2/apps/{id}/restart",
        ),
        (
            "GET",
            "/v2/apps/prod/api-v001/tasks",
            "GET /v2/apps/{id}/tasks",
        ),
        (
            "DELETE",
            "/v2/apps/prod/api-v001/tasks/prod_api-v001.instance-6f1c._app.1",
            "DELETE /v2/apps/{id}/tasks/{id}",
        ),
        (
            "GET",
            "/v2/apps/prod/api-v001/versions/2026-11-26T14:00:00.000Z",
            "GET /v2/apps/{id}/versions/{id}",
        ),
        // Groups, queue, tasks, deployments, events.
        ("GET", "/v2/groups/prod", "GET /v2/groups/{id}"),
        (
            "PUT",
            "/v2/groups/prod/web?dryRun=true",
            "PUT /v2/groups/{id}",
        ),
        ("GET", "/v2/groups/", "GET /v2/groups"),
        (
            "DELETE",
            "/v2/queue/prod/api-v001/delay",
            "DELETE /v2/queue/{id}/delay",
        ),
        (
            "POST",
            "/v2/tasks/delete?scale=true",
            "POST /v2/tasks/delete",
        ),
        (
            "DELETE",
            "/v2/deployments/5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43",
            "DELETE /v2/deployments/{id}",
        ),
        ("GET", "/v2/events", "GET /v2/events"),
        ("GET", "/ping", "GET /ping"),
        // Metronome and the login, through the admin router or a full URL.
        (
            "GET",
            "/service/metronome/v1/jobs/prod.web.backup?embed=activeRuns",
            "GET /v1/jobs/{id}",
        ),
        (
            "POST",
            "/v1/jobs/prod.backup/runs",
            "POST /v1/jobs/{id}/runs",
        ),
        (
            "POST",
            "/v1/jobs/prod.backup/runs/20261126140000abcde/actions/stop",
            "POST /v1/jobs/{id}/runs/{id}/actions/stop",
        ),
        (
            "PUT",
            "/v1/jobs/prod.backup/schedules/nightly",
            "PUT /v1/jobs/{id}/schedules/{id}",
        ),
        (
            "POST",
            "https://dcos.example.com/acs/api/v1/auth/login",
            "POST /acs/api/v1/auth/login",
        ),
        (
            "GET",
            "http://m:8080/service/marathon/v2/apps/prod/a",
            "GET /v2/apps/{id}",
        ),
        // Routes the driver does not use still collapse, so the label stays bounded.
        ("GET", "/v2/pods/prod/a/b::status", "GET /v2/{id}"),
        ("GET", "/x/y/z/1/2/3", "GET /{id}"),
        ("BREW", "/", "OTHER /"),
    ];

    #[test]
    fn endpoint_templates_hide_ids() {
        for (method, path, expected) in ROUTES {
            assert_eq!(
                endpoint_template(method, path),
                *expected,
                "{method} {path}"
            );
        }
    }
}
