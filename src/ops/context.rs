//! [`OpContext`]: everything one running operation may use, built by the framework per request.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use serde_json::Value;
use tokio::time::Instant;

use super::error::OpError;
use super::paths::Scope;
use super::wait::{self, Goal, WaitSettings, Waited};
use super::Accounts;
use crate::bus::{AppLocks, Progress, TaskDocument};
use crate::config::AccountConfig;
use crate::dcos::DcosClient;
use crate::deployments::DeploymentHub;
use crate::overlays::OverlayStore;

/// The context of one operation request.
pub struct OpContext {
    /// The task id (the request's `Nats-Msg-Id`): label value of [`super::TASK_ID_LABEL`].
    pub task_id: String,
    /// The account's configuration.
    pub account: Arc<AccountConfig>,
    /// The account's root group and the path rules under it.
    pub scope: Scope,
    /// The account's DC/OS client, with a locked-retry budget that fits this request's timeout.
    pub client: DcosClient,
    /// Administrative overlays (disabled server groups and instances).
    pub overlays: OverlayStore,
    /// Where deployment ends seen on the event stream arrive.
    pub hub: Arc<DeploymentHub>,
    /// KV `dcos_snapshots`.
    pub snapshots: kv::Store,
    /// The per-key locks (already held for this request's keys; for extra keys an operation needs).
    pub locks: AppLocks,
    /// How long this request may wait for deployments in all (`timeoutSeconds` or the default).
    pub timeout: Duration,
    /// When that time is up.
    pub deadline: Instant,
    /// How waiting polls.
    pub wait_settings: WaitSettings,
    /// The stored document of an earlier delivery of this request (it was started before).
    pub previous: Option<TaskDocument>,
    /// Which delivery this is (1 = first).
    pub delivery: u64,
    pub(crate) accounts: Arc<Accounts>,
}

impl OpContext {
    /// The account name.
    pub fn account_name(&self) -> &str {
        &self.account.name
    }

    /// Whether an earlier delivery of this request already started it: the operation must resume
    /// rather than act again.
    pub fn is_resumed(&self) -> bool {
        self.previous.is_some()
    }

    /// A field of the progress an earlier delivery recorded (e.g. `deploymentId`).
    pub fn previous_progress(&self, key: &str) -> Option<&Value> {
        self.previous.as_ref()?.progress.as_ref()?.get(key)
    }

    /// Time left before `timeoutSeconds` runs out.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Another configured account's scope and client (a clone from there). An account this
    /// driver does not know is `FORBIDDEN`.
    pub fn other_account(&self, name: &str) -> Result<(Scope, DcosClient), OpError> {
        let runtime = self.accounts.get(name).ok_or_else(|| {
            OpError::forbidden(format!("account `{name}` is not configured in this driver"))
        })?;
        Ok((runtime.scope.clone(), runtime.client.clone()))
    }

    /// Follows deployment `deployment_id` to its end (see [`wait::follow`]).
    pub async fn follow(
        &self,
        deployment_id: &str,
        goal: &Goal,
        progress: &Progress,
    ) -> Result<Waited, OpError> {
        wait::follow(self, deployment_id, goal, progress).await
    }
}
