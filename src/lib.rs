//! dcos-driver: drive DC/OS (Marathon, Metronome, the DC/OS login) through NATS.
//!
//! # Layout
//! - [`cli`]: the command line (`serve`, `sim`, `config check`, …) and what each subcommand starts.
//! - [`config`]: the typed TOML configuration (accounts, NATS, limits) with environment overrides for secrets.
//! - [`vocabulary`]: the 34 operations (names, which are unsupported and why) and the error codes.
//! - [`names`]: every NATS subject, stream, consumer and KV bucket name, and the app-id ↔ subject-token mapping.
//! - [`telemetry`]: tracing setup (text or JSON logs).
//! - [`metrics`]: the Prometheus registry, typed recording methods and DC/OS route templates for labels.
//! - [`health`]: the `/healthz`, `/readyz` and `/metrics` HTTP endpoint and the readiness checks behind it.
//! - [`sim`]: the DC/OS simulator (Marathon + Metronome + login, timed lifecycle, SSE, fault injection).
//! - [`testkit`]: helpers for tests and benchmarks: a real `nats-server` on a free port, an in-process simulator.

pub mod cli;
pub mod config;
pub mod health;
pub mod metrics;
pub mod names;
pub mod sim;
pub mod telemetry;
pub mod testkit;
pub mod vocabulary;
