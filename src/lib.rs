//! dcos-driver: drive DC/OS (Marathon, Metronome, the DC/OS login) through NATS.
//!
//! # Layout
//! - [`bus`]: the NATS side of `serve`: JetStream setup, the operation worker, task documents, the DLQ, per-app locks, the NATS service API.
//! - [`cli`]: the command line (`serve`, `sim`, `config check`, …) and what each subcommand starts.
//! - [`client`]: the operator's client commands (`op`, `task`, `events`, `discovery`) over the public NATS contract.
//! - [`config`]: the typed TOML configuration (accounts, NATS, limits) with environment overrides for secrets.
//! - [`dcos`]: the typed DC/OS client (Marathon, Metronome, login): retries, tokens, URL rotation, error codes.
//! - [`deployments`]: the hub where deployment ends seen on the event stream meet the operations waiting for them.
//! - [`discovery`]: the live discovery feed: every instance's state (UP, STARTING, …) in KV and each change published.
//! - [`events`]: the Marathon event stream per cluster, republished onto NATS and handed to its consumers.
//! - [`health`]: the `/healthz`, `/readyz` and `/metrics` HTTP endpoint and the readiness checks behind it.
//! - [`metrics`]: the Prometheus registry, typed recording methods and DC/OS route templates for labels.
//! - [`names`]: every NATS subject, stream, consumer, KV bucket and header name, and the app-id ↔ subject-token mapping.
//! - [`ops`]: the operations: strict descriptions, path safety under the account root, naming and versions, the executor framework (locks, waiting, error mapping) and each operation.
//! - [`overlays`]: administrative overlays (disabled server groups and instances) in KV `dcos_overlays`.
//! - [`schemas`]: JSON Schema files of the public documents (`schemas/*.json`), generated and checked.
//! - [`serve`]: `dcos-driver serve`: every part wired together under one shutdown signal.
//! - [`sim`]: the DC/OS simulator (Marathon + Metronome + login, timed lifecycle, SSE, fault injection).
//! - [`telemetry`]: tracing setup (text or JSON logs).
//! - [`testkit`]: helpers for tests and benchmarks: a real `nats-server` on a free port, an in-process simulator.
//! - [`vocabulary`]: the 34 operations (names, which are unsupported and why) and the error codes.

pub mod bus;
pub mod cli;
pub mod client;
pub mod config;
pub mod dcos;
pub mod deployments;
pub mod discovery;
pub mod events;
pub mod health;
pub mod metrics;
pub mod names;
pub mod ops;
pub mod overlays;
pub mod schemas;
pub mod serve;
pub mod sim;
pub mod telemetry;
pub mod testkit;
pub mod vocabulary;
