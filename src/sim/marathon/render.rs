//! App JSON for reads: the cached definition plus counts, deployments and tasks, gathered under
//! the lock as shared pieces and joined into the body outside it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::http::Query;
use super::model::App;
use super::State as MarathonState;
use crate::sim::Sim;

/// Which optional parts of an app a read includes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Embed {
    pub tasks: bool,
    pub counts: bool,
    pub deployments: bool,
    pub readiness: bool,
    pub last_task_failure: bool,
}

impl Embed {
    /// Everything (`GET /v2/apps/{id}`).
    pub fn all() -> Embed {
        Embed {
            tasks: true,
            counts: true,
            deployments: true,
            readiness: true,
            last_task_failure: true,
        }
    }

    /// From `embed=` parameters; counts and deployments are always included in lists.
    pub fn from_query(query: &Query) -> Embed {
        let mut embed = Embed {
            counts: true,
            deployments: true,
            ..Embed::default()
        };
        for e in query.all("embed") {
            match e {
                "apps.tasks" | "tasks" => embed.tasks = true,
                "apps.readiness" => embed.readiness = true,
                "apps.lastTaskFailure" | "apps.failures" => embed.last_task_failure = true,
                _ => {}
            }
        }
        embed
    }
}

/// The pieces of one app's JSON, gathered under the lock and joined outside it.
pub struct Rendered {
    def: Arc<str>,
    extra: String,
    tasks: Option<Arc<str>>,
}

impl Rendered {
    fn len(&self) -> usize {
        self.def.len() + self.extra.len() + self.tasks.as_ref().map_or(0, |t| t.len() + 10)
    }

    pub fn write(&self, out: &mut String) {
        out.push_str(&self.def[..self.def.len() - 1]);
        out.push_str(&self.extra);
        if let Some(tasks) = &self.tasks {
            out.push_str(",\"tasks\":");
            out.push_str(tasks);
        }
        out.push('}');
    }
}

/// Deployment ids per app id.
pub fn deployments_by_app(state: &MarathonState) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for d in &state.deployments {
        for app in d.affected_apps() {
            map.entry(app).or_default().push(d.id.clone());
        }
    }
    map
}

/// Gathers an app's JSON pieces.
pub fn render(app: &mut App, deployments: &[String], embed: Embed) -> Rendered {
    use std::fmt::Write;
    let mut extra = String::new();
    if embed.counts {
        let (staged, running, healthy, unhealthy) = app.counts();
        let _ = write!(
            extra,
            ",\"tasksStaged\":{staged},\"tasksRunning\":{running},\"tasksHealthy\":{healthy},\"tasksUnhealthy\":{unhealthy}"
        );
    }
    if embed.deployments {
        let ids: Vec<Value> = deployments.iter().map(|id| json!({ "id": id })).collect();
        let _ = write!(extra, ",\"deployments\":{}", Value::Array(ids));
    }
    if embed.readiness {
        extra.push_str(",\"readinessCheckResults\":[]");
    }
    if embed.last_task_failure {
        if let Some(failure) = &app.last_task_failure {
            let _ = write!(extra, ",\"lastTaskFailure\":{failure}");
        }
    }
    Rendered {
        def: app.def_json.clone(),
        extra,
        tasks: embed.tasks.then(|| app.tasks_json()),
    }
}

/// Joins rendered apps into `{"<key>":[…]}`.
pub fn join(key: &str, apps: &[Rendered]) -> String {
    let mut out = String::with_capacity(apps.iter().map(Rendered::len).sum::<usize>() + 32);
    out.push_str("{\"");
    out.push_str(key);
    out.push_str("\":[");
    for (i, app) in apps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        app.write(&mut out);
    }
    out.push_str("]}");
    out
}

pub fn one(app: &Rendered, key: &str) -> String {
    let mut out = String::with_capacity(app.len() + 16);
    out.push_str("{\"");
    out.push_str(key);
    out.push_str("\":");
    app.write(&mut out);
    out.push('}');
    out
}

/// Renders the visible apps that `select` accepts.
pub fn render_where(
    sim: &Sim,
    embed: Embed,
    mut select: impl FnMut(&App) -> bool,
) -> Vec<Rendered> {
    let mut state = sim.marathon.state.lock();
    let deployments = deployments_by_app(&state);
    state
        .apps
        .values_mut()
        .filter(|a| !a.deleted && select(a))
        .map(|a| {
            let ids = deployments
                .get(&a.id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            render(a, ids, embed)
        })
        .collect()
}
