//! Carrying out one deployment action: scaling and rolling replacement within the app's
//! `upgradeStrategy` and `killSelection`, and stopping a deleted app.

use std::sync::Arc;

use super::deployments::{Action, ActionKind};
use super::lifecycle;
use super::model::{Task, TaskState};
use super::State as MarathonState;
use crate::sim::Sim;

/// Drives one action to its end; false when the deployment was cancelled.
pub async fn converge(sim: &Arc<Sim>, id: &str, action: &Action) -> bool {
    loop {
        let notified = sim.marathon.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut state = sim.marathon.state.lock();
            if !state.deployments.iter().any(|d| d.id == id) {
                return false;
            }
            let done = match action.kind {
                ActionKind::Start => true,
                ActionKind::Stop => lifecycle::stop_deleted(sim, &mut state, &action.app),
                ActionKind::Scale | ActionKind::Restart => {
                    replace_step(sim, &mut state, &action.app)
                }
            };
            if done {
                return true;
            }
        }
        notified.await;
    }
}

/// One round of scaling / rolling replacement, within the app's upgrade strategy. True when the
/// app runs `instances` ready tasks of its current configuration and nothing else.
fn replace_step(sim: &Arc<Sim>, state: &mut MarathonState, app_id: &str) -> bool {
    let Some(app) = state.apps.get(app_id) else {
        return true;
    };
    if app.deleted {
        return true;
    }
    let n = app.instances as usize;
    let checks = app.has_health_checks();
    let (min_capacity, over_capacity) = app.upgrade_strategy();
    let oldest_first = app.kill_oldest_first();
    let by_selection = |a: &&Task, b: &&Task| {
        if oldest_first {
            a.seq.cmp(&b.seq)
        } else {
            b.seq.cmp(&a.seq)
        }
    };
    let (mut old, mut new): (Vec<&Task>, Vec<&Task>) = app
        .tasks
        .iter()
        .filter(|t| t.alive())
        .partition(|t| t.config_version != app.config_version);
    let killing = app.tasks.iter().any(|t| t.state == TaskState::Killing);
    let new_ready = new.iter().filter(|t| t.ready(checks)).count();
    if old.is_empty() && new.len() == n && new_ready == n && !killing {
        return true;
    }
    let mut kills: Vec<String> = Vec::new();
    let mut launches = 0;
    if new.len() > n {
        new.sort_by(by_selection);
        kills.extend(new[..new.len() - n].iter().map(|t| t.id.clone()));
    }
    if !old.is_empty() {
        let min_healthy = (n as f64 * min_capacity).ceil() as usize;
        let mut max_capacity = (n as f64 * (1.0 + over_capacity)).floor() as usize;
        if max_capacity <= min_healthy {
            // As Marathon: with no room at all, allow one task over capacity to make progress.
            max_capacity = min_healthy + 1;
        }
        let mut ready_total = new_ready + old.iter().filter(|t| t.ready(checks)).count();
        old.sort_by(|a, b| {
            a.ready(checks)
                .cmp(&b.ready(checks))
                .then(by_selection(a, b))
        });
        let mut old_left = old.len();
        for t in &old {
            if !t.ready(checks) {
                kills.push(t.id.clone());
                old_left -= 1;
            } else if ready_total > min_healthy {
                kills.push(t.id.clone());
                ready_total -= 1;
                old_left -= 1;
            }
        }
        let mut alive = old_left + new.len().min(n);
        while new.len() + launches < n && alive < max_capacity {
            launches += 1;
            alive += 1;
        }
    } else if new.len() < n {
        launches = n - new.len();
    }
    for task in kills {
        lifecycle::kill(sim, state, app_id, &task);
    }
    for _ in 0..launches {
        lifecycle::launch(sim, state, app_id);
    }
    false
}
