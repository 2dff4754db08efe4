//! dcos-driver: drive DC/OS (Marathon, Metronome, the DC/OS login) through NATS.
//!
//! # Layout
//! - [`bus`]: the NATS side of `serve`: JetStream setup, the operation worker, task documents, the DLQ, per-app locks.
//! - [`cli`]: the command line (`serve`, `sim`, `config check`, …) and what each subcommand starts.
//! - [`config`]: the typed TOML configuration (accounts, NATS, limits) with environment overrides for secrets.
//! - [`vocabulary`]: the 34 operations (names, which are unsupported and why) and the error codes.
//! - [`names`]: every NATS subject, stream, consumer and KV bucket name, and the app-id ↔ subject-token mapping.
//! - [`telemetry`]: tracing setup (text or JSON logs).
//! - [`schemas`]: JSON Schema files of the public documents (`schemas/*.json`), generated and checked.
//! - [`sim`]: the DC/OS simulator (Marathon + Metronome + login, timed lifecycle, SSE, fault injection).
//! - [`testkit`]: helpers for tests and benchmarks: a real `nats-server` on a free port, an in-process simulator.

pub mod bus;
pub mod cli;
pub mod config;
pub mod names;
pub mod schemas;
pub mod sim;
pub mod telemetry;
pub mod testkit;
pub mod vocabulary;
