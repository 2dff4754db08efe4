//! Deployments: the plan of a change, the runner that carries it out step by step (and can be
//! cancelled), `GET /v2/deployments` and `DELETE /v2/deployments/{id}` (rollback).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::http::{self, Query};
use super::State as MarathonState;
use super::{lifecycle, rollout};
use crate::sim::clock::timestamp;
use crate::sim::Sim;

/// What a deployment step does to one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Start,
    Scale,
    Restart,
    Stop,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Start => "StartApplication",
            ActionKind::Scale => "ScaleApplication",
            ActionKind::Restart => "RestartApplication",
            ActionKind::Stop => "StopApplication",
        }
    }
}

/// One action of a step.
#[derive(Debug, Clone)]
pub struct Action {
    pub kind: ActionKind,
    pub app: String,
}

/// A running deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: String,
    pub version: String,
    pub steps: Vec<Vec<Action>>,
    /// 1-based, as Marathon shows it.
    pub current_step: usize,
    /// The definitions of the affected apps before the change (`None`: the app did not exist),
    /// for a rollback.
    pub original: Vec<(String, Option<Map<String, Value>>)>,
}

fn actions_json(actions: &[Action], readiness: bool) -> Value {
    Value::Array(
        actions
            .iter()
            .map(|a| {
                if readiness {
                    json!({ "action": a.kind.name(), "app": a.app, "readinessCheckResults": [] })
                } else {
                    json!({ "action": a.kind.name(), "app": a.app })
                }
            })
            .collect(),
    )
}

impl Deployment {
    pub fn affects(&self, app_id: &str) -> bool {
        self.original.iter().any(|(id, _)| id == app_id)
    }

    pub fn affected_apps(&self) -> Vec<String> {
        self.original.iter().map(|(id, _)| id.clone()).collect()
    }

    fn steps_json(&self) -> Value {
        Value::Array(
            self.steps
                .iter()
                .map(|s| json!({ "actions": actions_json(s, false) }))
                .collect(),
        )
    }

    fn current_actions(&self) -> &[Action] {
        self.steps
            .get(self.current_step.saturating_sub(1))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The deployment as `GET /v2/deployments` lists it.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "version": self.version,
            "affectedApps": self.affected_apps(),
            "affectedPods": [],
            "steps": self.steps_json(),
            "currentActions": actions_json(self.current_actions(), true),
            "currentStep": self.current_step,
            "totalSteps": self.steps.len(),
        })
    }

    fn plan(&self) -> Value {
        json!({ "id": self.id, "steps": self.steps_json(), "version": self.version })
    }

    fn step_event(&self) -> Value {
        json!({
            "plan": self.plan(),
            "currentStep": { "actions": actions_json(self.current_actions(), false) },
        })
    }
}

/// Plan steps for a dry run (`{"steps":[…]}` without starting anything).
pub fn steps_value(steps: &[Vec<Action>]) -> Value {
    Value::Array(
        steps
            .iter()
            .map(|s| json!({ "actions": actions_json(s, false) }))
            .collect(),
    )
}

/// Ids of the running deployments that hold any of `apps`.
pub fn locking(state: &MarathonState, apps: &[String]) -> Vec<String> {
    state
        .deployments
        .iter()
        .filter(|d| apps.iter().any(|a| d.affects(a)))
        .map(|d| d.id.clone())
        .collect()
}

/// Cancels deployments (a forced change took over): each ends with `deployment_failed`.
pub fn cancel(sim: &Sim, state: &mut MarathonState, ids: &[String], reason: &str) {
    state.deployments.retain(|d| {
        if ids.contains(&d.id) {
            sim.bus.publish(
                "deployment_failed",
                json!({ "id": d.id, "plan": d.plan(), "reason": reason }),
            );
            false
        } else {
            true
        }
    });
    sim.marathon.notify();
}

/// Starts a deployment: `deployment_info` for its first step now, the rest in the background.
pub fn start(
    sim: &Arc<Sim>,
    state: &mut MarathonState,
    steps: Vec<Vec<Action>>,
    original: Vec<(String, Option<Map<String, Value>>)>,
    version: &str,
) -> String {
    let deployment = Deployment {
        id: uuid::Uuid::new_v4().to_string(),
        version: version.to_string(),
        steps,
        current_step: 1,
        original,
    };
    let id = deployment.id.clone();
    sim.bus.publish("deployment_info", deployment.step_event());
    state.deployments.push(deployment);
    let (sim2, id2) = (sim.clone(), id.clone());
    tokio::spawn(async move { run(sim2, id2).await });
    id
}

fn find<'a>(state: &'a mut MarathonState, id: &str) -> Option<&'a mut Deployment> {
    state.deployments.iter_mut().find(|d| d.id == id)
}

async fn run(sim: Arc<Sim>, id: String) {
    let total = match find(&mut sim.marathon.state.lock(), &id) {
        Some(d) => d.steps.len(),
        None => return,
    };
    for step in 0..total {
        let (actions, fail) = {
            let mut state = sim.marathon.state.lock();
            let Some(d) = find(&mut state, &id) else {
                return;
            };
            d.current_step = step + 1;
            if step > 0 {
                sim.bus.publish("deployment_info", d.step_event());
            }
            let actions = d.steps[step].clone();
            let fail = actions.iter().any(|a| {
                state
                    .apps
                    .get(&a.app)
                    .is_some_and(|app| app.label("SIM_DEPLOYMENT") == Some("fail"))
            });
            (actions, fail)
        };
        if fail {
            sim.clock.sleep(Duration::from_secs(1)).await;
            let mut state = sim.marathon.state.lock();
            let Some(pos) = state.deployments.iter().position(|d| d.id == id) else {
                return;
            };
            let d = state.deployments.remove(pos);
            sim.bus.publish("deployment_step_failure", d.step_event());
            sim.bus.publish(
                "deployment_failed",
                json!({
                    "id": d.id,
                    "plan": d.plan(),
                    "reason": "Simulated deployment failure (label SIM_DEPLOYMENT=fail)",
                }),
            );
            for app in d.affected_apps() {
                lifecycle::replace_missing(&sim, &mut state, &app);
            }
            drop(state);
            sim.marathon.notify();
            return;
        }
        let done =
            futures::future::join_all(actions.iter().map(|a| rollout::converge(&sim, &id, a)))
                .await;
        if done.iter().any(|ok| !ok) {
            return;
        }
        let mut state = sim.marathon.state.lock();
        let Some(d) = find(&mut state, &id) else {
            return;
        };
        sim.bus.publish("deployment_step_success", d.step_event());
    }
    let mut state = sim.marathon.state.lock();
    let Some(pos) = state.deployments.iter().position(|d| d.id == id) else {
        return;
    };
    let d = state.deployments.remove(pos);
    sim.bus.publish(
        "deployment_success",
        json!({ "id": d.id, "plan": d.plan() }),
    );
    for app in d.affected_apps() {
        lifecycle::replace_missing(&sim, &mut state, &app);
    }
    drop(state);
    sim.marathon.notify();
}

/// `GET /v2/deployments`.
pub async fn list(State(sim): State<Arc<Sim>>) -> Response {
    let body: Vec<Value> = {
        let state = sim.marathon.state.lock();
        state.deployments.iter().map(Deployment::json).collect()
    };
    http::json(StatusCode::OK, &Value::Array(body))
}

/// `DELETE /v2/deployments/{id}`: rollback (a new deployment restoring the apps), or with
/// `force=true` just stop it (202).
pub async fn delete(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = Query::parse(query.as_deref());
    let force = query.flag("force", false);
    let mut state = sim.marathon.state.lock();
    let Some(pos) = state.deployments.iter().position(|d| d.id == id) else {
        return http::message(
            StatusCode::NOT_FOUND,
            format!("DeploymentPlan {id} does not exist"),
        );
    };
    let deployment = state.deployments[pos].clone();
    cancel(&sim, &mut state, &[id], "The deployment has been cancelled");
    if force {
        for app in deployment.affected_apps() {
            lifecycle::reap_deleted(&sim, &mut state, &app);
        }
        return StatusCode::ACCEPTED.into_response();
    }
    let version = timestamp();
    let mut steps: Vec<Vec<Action>> = vec![Vec::new(), Vec::new()];
    let mut original = Vec::new();
    for (app_id, def) in deployment.original {
        let current = state
            .apps
            .get(&app_id)
            .filter(|a| !a.deleted)
            .map(|a| a.def.clone());
        original.push((app_id.clone(), current));
        match def {
            None => {
                if let Some(app) = state.apps.get_mut(&app_id) {
                    app.deleted = true;
                    steps[1].push(Action {
                        kind: ActionKind::Stop,
                        app: app_id,
                    });
                }
            }
            Some(def) => {
                let (kind, _) = super::changes::upsert(&mut state, def, &version);
                if kind == ActionKind::Start {
                    steps[0].push(Action {
                        kind,
                        app: app_id.clone(),
                    });
                    steps[1].push(Action {
                        kind: ActionKind::Scale,
                        app: app_id,
                    });
                } else {
                    steps[1].push(Action { kind, app: app_id });
                }
            }
        }
    }
    steps.retain(|s| !s.is_empty());
    let new_id = start(&sim, &mut state, steps, original, &version);
    drop(state);
    http::deployment_result(StatusCode::OK, &new_id, &version)
}
