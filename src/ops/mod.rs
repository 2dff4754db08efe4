//! The operations layer: the framework every atomic operation runs in, and the operations.
//!
//! [`Operations`] implements the bus [`Executor`]. For each request it:
//! 1. parses the description strictly ([`description::parse`]; a bad one ends REJECTED with
//!    `INVALID_REQUEST` and the field path) and runs its cross-field checks;
//! 2. resolves every path against the account's root ([`paths::Scope`]; outside it ends FAILED with
//!    `FORBIDDEN`) into the keys to lock;
//! 3. takes the per-key locks of [`AppLocks`] in sorted order (a second operation on the same app
//!    waits its turn; sorting rules out deadlocks), then one of the bounded operation slots;
//! 4. builds an [`OpContext`] and calls the operation: one `async fn` per operation,
//!    `async fn(ctx: &OpContext, d: &XDescription, progress: &Progress) -> Result<Value, OpError>`,
//!    one file per family ([`server_group`], [`instances`], [`load_balancer`], [`jobs`],
//!    [`snapshots`]);
//! 5. turns the result into an [`Outcome`]: `Ok(result)` SUCCEEDED; an [`OpError`] FAILED with its
//!    code (REJECTED only when the description itself is invalid), or a bounded Retry when DC/OS
//!    was unreachable ([`error`]).
//!
//! # Writing an operation
//! - Describe it in `description/<family>.rs` (strict serde struct, camelCase clouddriver names,
//!   `JsonSchema`, [`description::Description`] with its lock keys) and register its schema in
//!   [`description::all_schemas`].
//! - Resolve every id with `ctx.scope` (never format paths by hand); call DC/OS through
//!   `ctx.client` (`?` turns a [`crate::dcos::DcosError`] into the right task error).
//! - After a deployment-creating call, `ctx.follow(deployment_id, &Goal::…, progress)` waits for it
//!   (events first, polling as fallback), publishes progress and ends in `DEPLOYMENT_FAILED` or
//!   `TIMEOUT` as appropriate.
//!
//! # Idempotency: a redelivered request never acts twice
//! A request comes back when a driver died mid-operation, shut down, or asked to retry; then
//! `ctx.previous` holds the stored task document ([`OpContext::is_resumed`]). The rule:
//! - **Creating** operations (CREATE, CLONE, and any other that makes a new app) label what they
//!   create with [`TASK_ID_LABEL`]`=<task id>`. When resumed, they first look for an app carrying that
//!   label in the target group; if there is one they only wait for its deployment (or report it
//!   done) and never create another.
//! - **Setting** operations send absolute values (RESIZE sets `instances: n`, tags set labels,
//!   DISABLE keeps the suspended count it recorded first): doing them again is harmless.
//! - **Removing** operations treat "already gone" as success when resumed (DESTROY on a 404).
//! - The first progress of a wait carries `deploymentId` (`ctx.previous_progress("deploymentId")`).
//!
//! Layout:
//! - [`description`]: the descriptions and their schemas.
//! - [`paths`]: the account root and path safety. [`naming`]: `app-stack-detail-vNNN` and versions.
//! - [`context`]: [`OpContext`]. [`wait`]: following a deployment. [`error`]: [`OpError`] → outcome.
//! - [`server_group`], [`instances`], [`load_balancer`], [`jobs`], [`snapshots`]: the operations.

pub mod context;
pub mod description;
pub mod error;
pub mod instances;
pub mod jobs;
pub mod load_balancer;
pub mod naming;
pub mod paths;
pub mod server_group;
pub mod snapshots;
pub mod wait;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use context::OpContext;
pub use description::Description;
pub use error::OpError;
pub use paths::Scope;
pub use wait::{Goal, WaitSettings, Waited};

use crate::bus::{AppLockGuard, AppLocks, BoxFuture, Executor, Outcome, Progress, Request};
use crate::config::{AccountConfig, Config};
use crate::dcos::{ClientOptions, DcosClient, DcosError, RetryPolicy};
use crate::deployments::DeploymentHub;
use crate::names;
use crate::overlays::OverlayStore;
use crate::vocabulary::Operation;

/// The label every app the driver creates carries: the task id of the request that created it.
pub const TASK_ID_LABEL: &str = "DCOS_DRIVER_TASK_ID";

/// Limits and timings of the operations layer.
#[derive(Debug, Clone)]
pub struct OpsSettings {
    /// Operations acting on DC/OS at once (after their locks are taken).
    pub max_concurrent_operations: usize,
    /// Wait bound when a request gives no `timeoutSeconds`.
    pub default_timeout: Duration,
    /// How deployments are followed.
    pub wait: WaitSettings,
    /// The DC/OS clients' limits and base retry policy.
    pub client: ClientOptions,
}

impl OpsSettings {
    /// Production settings from the `[driver]` section.
    pub fn from_config(config: &Config) -> OpsSettings {
        OpsSettings {
            max_concurrent_operations: config.driver.max_concurrent_operations.max(1),
            default_timeout: Duration::from_secs(config.driver.default_timeout_seconds.max(1)),
            wait: WaitSettings {
                poll_interval: Duration::from_millis(
                    config.driver.deployment_poll_interval_ms.max(10),
                ),
                ..WaitSettings::default()
            },
            client: ClientOptions::from_driver(&config.driver),
        }
    }
}

/// Why the operations layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsSetupError {
    #[error("account {account}: {source}")]
    Client {
        account: String,
        #[source]
        source: DcosError,
    },
    #[error("KV bucket {bucket}: {message}")]
    Bucket {
        bucket: &'static str,
        message: String,
    },
}

/// One account as the operations see it.
pub(crate) struct AccountRuntime {
    pub(crate) config: Arc<AccountConfig>,
    pub(crate) scope: Scope,
    pub(crate) client: DcosClient,
}

/// Every configured account by name.
pub(crate) type Accounts = HashMap<String, AccountRuntime>;

/// The executor of every supported operation.
pub struct Operations {
    accounts: Arc<Accounts>,
    overlays: OverlayStore,
    snapshots: kv::Store,
    hub: Arc<DeploymentHub>,
    locks: AppLocks,
    slots: Arc<Semaphore>,
    settings: OpsSettings,
}

impl Operations {
    /// Builds the executor: one DC/OS client per account, the overlay and snapshot buckets, the
    /// shared hub and locks. The buckets must exist: run [`crate::bus::setup::setup`] first (it is
    /// idempotent; `serve` runs it again harmlessly).
    pub async fn open(
        js: &jetstream::Context,
        config: &Config,
        hub: Arc<DeploymentHub>,
        locks: AppLocks,
        settings: OpsSettings,
    ) -> Result<Operations, OpsSetupError> {
        let bucket = |bucket: &'static str| async move {
            js.get_key_value(bucket)
                .await
                .map_err(|e| OpsSetupError::Bucket {
                    bucket,
                    message: format!("{e} (run the bus setup first: `bus::setup::setup`)"),
                })
        };
        let overlays = OverlayStore::new(bucket(names::OVERLAYS_BUCKET).await?);
        let snapshots = bucket(names::SNAPSHOTS_BUCKET).await?;
        let mut accounts = Accounts::new();
        for account in &config.accounts {
            let client = DcosClient::new(account, settings.client.clone()).map_err(|source| {
                OpsSetupError::Client {
                    account: account.name.clone(),
                    source,
                }
            })?;
            accounts.insert(
                account.name.clone(),
                AccountRuntime {
                    config: Arc::new(account.clone()),
                    scope: Scope::of(account),
                    client,
                },
            );
        }
        Ok(Operations {
            accounts: Arc::new(accounts),
            overlays,
            snapshots,
            hub,
            locks,
            slots: Arc::new(Semaphore::new(settings.max_concurrent_operations.max(1))),
            settings,
        })
    }

    /// The per-key locks (shared with anything else that must not act on an app at the same time).
    pub fn locks(&self) -> &AppLocks {
        &self.locks
    }

    /// Runs one request to its outcome.
    pub async fn run(&self, request: &Request, progress: &Progress) -> Outcome {
        match self.dispatch(request, progress).await {
            Ok(result) => Outcome::Succeeded(result),
            Err(error) => {
                tracing::info!(
                    task_id = %request.task_id,
                    operation = %request.operation,
                    code = %error.code(),
                    %error,
                    "operation did not succeed"
                );
                error.into_outcome(request.delivery)
            }
        }
    }

    async fn dispatch(&self, req: &Request, progress: &Progress) -> Result<Value, OpError> {
        /// Parses, locks, builds the context and calls the operation's function.
        macro_rules! call {
            ($handler:path) => {{
                let (description, prepared) = self.prepare(req).await?;
                $handler(&prepared.ctx, &description, progress).await
            }};
        }
        use Operation::*;
        match req.operation {
            CreateServerGroup => call!(server_group::create),
            CloneServerGroup => call!(server_group::clone),
            DisableServerGroup => call!(server_group::disable),
            EnableServerGroup => call!(server_group::enable),
            DestroyServerGroup => call!(server_group::destroy),
            ResizeServerGroup => call!(server_group::resize),
            UpsertServerGroupTags => call!(server_group::upsert_tags),
            UpdateLaunchConfig => call!(server_group::update_launch_config),
            RebootInstances => call!(instances::reboot),
            TerminateInstances => call!(instances::terminate),
            TerminateInstanceAndDecrement => call!(instances::terminate_and_decrement),
            EnableInstancesInDiscovery => call!(instances::enable_in_discovery),
            DisableInstancesInDiscovery => call!(instances::disable_in_discovery),
            UpdateInstances => call!(instances::update),
            UpsertLoadBalancer => call!(load_balancer::upsert),
            DeleteLoadBalancer => call!(load_balancer::delete),
            RunJob => call!(jobs::run),
            DestroyJob => call!(jobs::destroy),
            CloneJob => call!(jobs::clone),
            SaveSnapshot => call!(snapshots::save),
            RestoreSnapshot => call!(snapshots::restore),
            other => Err(OpError::failed(
                crate::vocabulary::ErrorCode::UnsupportedOperation,
                other
                    .unsupported_reason()
                    .unwrap_or("this operation is not supported"),
            )),
        }
    }

    /// Steps 1–4 of the module documentation for description type `D`.
    async fn prepare<D: Description>(&self, req: &Request) -> Result<(D, Prepared), OpError> {
        let runtime = self.accounts.get(&req.account).ok_or_else(|| {
            OpError::forbidden(format!("account `{}` is not configured", req.account))
        })?;
        let description: D = description::parse(&req.account, &req.body)?;
        description.validate()?;
        let mut keys = description.lock_keys(&runtime.scope)?;
        keys.sort();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for key in &keys {
            guards.push(self.locks.lock(key).await);
        }
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slots semaphore is never closed");
        let timeout = description
            .timeout_seconds()
            .map(|s| Duration::from_secs(s.max(1)))
            .unwrap_or(self.settings.default_timeout);
        let ctx = OpContext {
            task_id: req.task_id.clone(),
            account: runtime.config.clone(),
            scope: runtime.scope.clone(),
            client: runtime
                .client
                .with_retry(patient(&self.settings.client.retry, timeout)),
            overlays: self.overlays.clone(),
            hub: self.hub.clone(),
            snapshots: self.snapshots.clone(),
            locks: self.locks.clone(),
            timeout,
            deadline: Instant::now() + timeout,
            wait_settings: self.settings.wait.clone(),
            previous: req.previous.clone(),
            delivery: req.delivery,
            accounts: self.accounts.clone(),
        };
        Ok((
            description,
            Prepared {
                ctx,
                _guards: guards,
                _slot: slot,
            },
        ))
    }
}

/// The context with the locks and the slot it holds; dropped when the operation ends.
struct Prepared {
    ctx: OpContext,
    _guards: Vec<AppLockGuard>,
    _slot: OwnedSemaphorePermit,
}

/// The base policy with a locked budget that lasts as long as the request may wait: a change to an
/// app locked by another deployment is retried until that deployment ends or the time is up.
fn patient(base: &RetryPolicy, timeout: Duration) -> RetryPolicy {
    let delay = base.locked_delay.max(Duration::from_millis(1));
    let attempts =
        (timeout.as_millis() / delay.as_millis().max(1)).clamp(1, u32::MAX as u128) as u32;
    RetryPolicy {
        max_elapsed: base.max_elapsed.max(timeout),
        ..base
            .clone()
            .on_locked(attempts.max(base.locked_attempts), delay)
    }
}

impl Executor for Operations {
    fn execute<'a>(
        &'a self,
        request: &'a Request,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(self.run(request, progress))
    }
}
