//! Simulated Marathon: apps, tasks, deployments, groups, queue, info, leader, ping, and the timed lifecycle.
//!
//! Layout:
//! - `model`: apps, tasks and their JSON.
//! - `validate`: canonical ids, defaults, the 422 checks.
//! - `http`: answers, Marathon's error bodies, query parsing.
//! - `lifecycle`: tasks launching, running, turning healthy, being killed or failing; the events of each.
//! - `deployments`: deployment plans, the runner that goes through their steps, rollback.
//! - `rollout`: one deployment action: scaling, rolling replacement, stopping.
//! - `changes`: storing a new app version, the steps it needs, the deployment lock.
//! - `render`: app JSON for reads, built from cached pieces outside the lock.
//! - `apps`, `tasks`, `groups`, `info`: the REST endpoints.
//!
//! Simulator conventions (labels on an app):
//! - `SIM_HEALTH=fail`: health checks fail; Marathon kills and relaunches the tasks forever and the
//!   deployment never completes.
//! - `SIM_DEPLOYMENT=fail`: every deployment of the app fails (`deployment_step_failure`, `deployment_failed`).
//!
//! Timing at time scale 1 (every delay goes through the scaled clock): STAGING → STARTING → RUNNING
//! one second per step; a kill takes 0.5 s; health results come `min(gracePeriodSeconds, 3)` s after
//! RUNNING; a `SIM_DEPLOYMENT=fail` deployment fails after 1 s. Only the `SIM_HEALTH=fail` relaunch
//! loop has a real-time floor (20 ms per cycle) so that time scale 0 does not spin.
//!
//! Hooks for tests (methods on [`Marathon`]): [`Marathon::tasks`] / [`Marathon::app_tasks`] (the
//! truth of every task), [`Marathon::app_ids`], [`Marathon::deployment_ids`], [`Marathon::settled`],
//! and changes that are not API calls: [`Marathon::fail_task`], [`Marathon::lose_task`],
//! [`Marathon::set_task_health`] (or, without passing the `Arc<Sim>`, [`Marathon::fail`],
//! [`Marathon::lose`], [`Marathon::set_health`]).

// Handlers answer errors as ready `Response`s; they are rare, so their size does not matter.
#![allow(clippy::result_large_err)]

mod apps;
mod changes;
mod deployments;
mod groups;
mod http;
mod info;
mod lifecycle;
mod model;
mod render;
mod rollout;
mod tasks;
mod validate;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Sim, SimConfig};
pub use deployments::{Action, ActionKind, Deployment};
pub use model::{App, Task, TaskState};

/// Marathon's in-memory state. Reads take the lock briefly and serialize outside it.
pub struct Marathon {
    pub(crate) state: Mutex<State>,
    /// Woken on every task or deployment change; deployment runners wait on it.
    pub(crate) changed: Notify,
    /// The simulator this Marathon belongs to (set by [`Sim::new`]), for the hooks that need it.
    sim: OnceLock<Weak<Sim>>,
}

/// Everything behind the lock.
pub struct State {
    pub(crate) apps: BTreeMap<String, App>,
    /// Running deployments, oldest first.
    pub(crate) deployments: Vec<Deployment>,
    pub(crate) next_service_port: u32,
    pub(crate) next_host_port: u32,
    pub(crate) next_seq: u64,
    pub(crate) next_agent: usize,
}

/// What the simulator knows about one task (for assertions of other tests).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTruth {
    pub app_id: String,
    pub task_id: String,
    pub instance_id: String,
    /// Mesos state, e.g. `TASK_RUNNING`.
    pub state: &'static str,
    /// `None` without health checks or before the first result.
    pub healthy: Option<bool>,
    pub host: String,
    pub ports: Vec<u32>,
    pub version: String,
}

impl Marathon {
    /// An empty Marathon, or one preloaded with `config.preload_apps` running healthy apps.
    pub fn new(config: &SimConfig) -> Self {
        let mut state = State {
            apps: BTreeMap::new(),
            deployments: Vec::new(),
            next_service_port: 10000,
            next_host_port: 20000,
            next_seq: 0,
            next_agent: 0,
        };
        lifecycle::preload(
            &mut state,
            config.preload_apps,
            config.preload_tasks,
            &config.preload_group,
        );
        Marathon {
            state: Mutex::new(state),
            changed: Notify::new(),
            sim: OnceLock::new(),
        }
    }

    /// Remembers the simulator this Marathon belongs to ([`Sim::new`] calls it).
    pub(crate) fn attach(&self, sim: &Arc<Sim>) {
        let _ = self.sim.set(Arc::downgrade(sim));
    }

    /// The simulator, while it exists.
    fn sim(&self) -> Option<Arc<Sim>> {
        self.sim.get().and_then(Weak::upgrade)
    }

    /// Every task of every app, sorted by app id then launch order.
    pub fn tasks(&self) -> Vec<TaskTruth> {
        let state = self.state.lock();
        state
            .apps
            .values()
            .filter(|a| !a.deleted)
            .flat_map(|a| a.tasks.iter())
            .map(|t| TaskTruth {
                app_id: t.app_id.clone(),
                task_id: t.id.clone(),
                instance_id: t.instance_id.clone(),
                state: t.state.mesos(),
                healthy: t.healthy(),
                host: t.host().to_string(),
                ports: t.ports.clone(),
                version: t.version.clone(),
            })
            .collect()
    }

    /// The tasks of one app.
    pub fn app_tasks(&self, app_id: &str) -> Vec<TaskTruth> {
        self.tasks()
            .into_iter()
            .filter(|t| t.app_id == app_id)
            .collect()
    }

    /// Ids of the apps that exist.
    pub fn app_ids(&self) -> Vec<String> {
        let state = self.state.lock();
        state
            .apps
            .values()
            .filter(|a| !a.deleted)
            .map(|a| a.id.clone())
            .collect()
    }

    /// Ids of the running deployments.
    pub fn deployment_ids(&self) -> Vec<String> {
        let state = self.state.lock();
        state.deployments.iter().map(|d| d.id.clone()).collect()
    }

    /// Makes a task die on its own (`TASK_FAILED`): events follow and Marathon launches a
    /// replacement. False if there is no such live task.
    pub fn fail_task(&self, sim: &Arc<Sim>, task_id: &str) -> bool {
        lifecycle::terminate(sim, task_id, TaskState::Failed, "Simulated task failure")
    }

    /// Makes a task's agent disappear: `TASK_UNREACHABLE` (condition `Unreachable`), then
    /// `TASK_GONE` (`Gone`), then a replacement. False if there is no such live task.
    pub fn lose_task(&self, sim: &Arc<Sim>, task_id: &str) -> bool {
        lifecycle::lose(sim, task_id)
    }

    /// Sets a running task's health check result (with `instance_health_changed_event`,
    /// `health_status_changed_event`, and `failed_health_check_event` when failing) without
    /// killing it. False if there is no such running task.
    pub fn set_task_health(&self, sim: &Arc<Sim>, task_id: &str, alive: bool) -> bool {
        lifecycle::set_health(sim, task_id, alive)
    }

    /// [`Marathon::fail_task`] without passing the simulator.
    pub fn fail(&self, task_id: &str) -> bool {
        self.sim().is_some_and(|sim| self.fail_task(&sim, task_id))
    }

    /// [`Marathon::lose_task`] without passing the simulator.
    pub fn lose(&self, task_id: &str) -> bool {
        self.sim().is_some_and(|sim| self.lose_task(&sim, task_id))
    }

    /// [`Marathon::set_task_health`] without passing the simulator.
    pub fn set_health(&self, task_id: &str, alive: bool) -> bool {
        self.sim()
            .is_some_and(|sim| self.set_task_health(&sim, task_id, alive))
    }

    /// Waits until no deployment is running (tests).
    pub async fn settled(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state.lock().deployments.is_empty() {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn notify(&self) {
        self.changed.notify_waiters();
    }
}

/// Marathon's REST routes (mounted at `/` and `/service/marathon`).
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route("/v2/info", get(info::info))
        .route("/v2/leader", get(info::leader))
        .route("/v2/apps", get(apps::list).post(apps::create))
        .route(
            "/v2/apps/{*path}",
            get(apps::get_path)
                .put(apps::put)
                .patch(apps::patch)
                .delete(apps::delete_path)
                .post(apps::post_path),
        )
        .route("/v2/tasks", get(tasks::list))
        .route("/v2/tasks/delete", post(tasks::delete_many))
        .route("/v2/deployments", get(deployments::list))
        .route(
            "/v2/deployments/{id}",
            axum::routing::delete(deployments::delete),
        )
        .route("/v2/groups", get(groups::get_root).put(groups::put_root))
        .route(
            "/v2/groups/{*path}",
            get(groups::get).put(groups::put).delete(groups::delete),
        )
        .route("/v2/queue", get(tasks::queue))
}
