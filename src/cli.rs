//! The command line: one subcommand per job, each a thin call into the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::client;
use crate::config::Config;
use crate::sim;

/// Drive DC/OS (Marathon, Metronome) through NATS.
#[derive(Debug, Parser)]
#[command(name = "dcos-driver", version, about)]
pub struct Cli {
    /// Log one JSON object per line instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the driver: take operation requests from NATS, republish Marathon events, keep discovery.
    Serve {
        /// Configuration file.
        #[arg(
            long,
            short,
            env = "DCOS_DRIVER_CONFIG",
            default_value = "dcos-driver.toml"
        )]
        config: PathBuf,
    },
    /// Run the DC/OS simulator (Marathon + Metronome + login) with fault injection.
    Sim(sim::SimConfig),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Publish an operation request; with `--wait`, follow its task to the end (exit code: 0 succeeded,
    /// 1 failed, 2 rejected, 3 unsupported, 4 no terminal status in time).
    Op {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        args: client::OpArgs,
    },
    /// Show a task document (from KV `dcos_tasks`).
    Task {
        #[command(flatten)]
        nats: NatsArgs,
        /// The task id (the request's `Nats-Msg-Id`).
        id: String,
        /// Print JSON on one line.
        #[arg(long)]
        json: bool,
    },
    /// Follow the republished Marathon events of an account.
    Events {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        feed: FeedArgs,
        /// Only this event type (e.g. `status_update_event`).
        #[arg(long = "type")]
        event_type: Option<String>,
    },
    /// Follow the discovery feed of an account (instance UP / OUT_OF_SERVICE / DOWN …).
    Discovery {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        feed: FeedArgs,
        /// Only this app (server group) id, e.g. `/prod/web/api-v001`.
        #[arg(long)]
        app: Option<String>,
    },
}

impl Command {
    /// Services log their progress; client commands only warnings, so their output stays readable.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Serve { .. } | Command::Sim(_) => "info",
            _ => "warn",
        }
    }
}

/// Where the client commands find NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL (ignored when `--config` is given).
    #[arg(
        long,
        env = "DCOS_DRIVER_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Take the NATS connection (URL, credentials, TLS) from this driver configuration file.
    #[arg(long = "config", short = 'c')]
    pub config: Option<PathBuf>,
}

impl NatsArgs {
    async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        if let Some(path) = &self.config {
            let config = Config::load(path)?;
            return Ok(crate::bus::connect(&config.nats).await?);
        }
        async_nats::ConnectOptions::new()
            .name("dcos-driver-cli")
            .connect(self.nats_url.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {}: {e}", self.nats_url))
    }
}

/// Options shared by the feed followers.
#[derive(Debug, Clone, clap::Args)]
pub struct FeedArgs {
    /// The account.
    #[arg(long, short)]
    pub account: String,
    /// Print JSON lines instead of a readable display.
    #[arg(long)]
    pub json: bool,
    /// Replay what the stream still holds before following.
    #[arg(long)]
    pub all: bool,
    /// Stop after this many messages.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate a configuration file; report the file, the field and what is wrong.
    Check {
        /// Configuration file.
        #[arg(
            long,
            short,
            env = "DCOS_DRIVER_CONFIG",
            default_value = "dcos-driver.toml"
        )]
        config: PathBuf,
    },
}

/// Runs the chosen subcommand to its end; the result is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let shutdown = shutdown_on_signal();
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            crate::serve::run(config, shutdown).await?;
            Ok(0)
        }
        Command::Sim(config) => {
            sim::run(config, shutdown).await?;
            Ok(0)
        }
        Command::Op { nats, args } => {
            let client = nats.connect().await?;
            Ok(client::op(client, args).await? as i32)
        }
        Command::Task { nats, id, json } => {
            let client = nats.connect().await?;
            Ok(client::task(client, &id, json).await? as i32)
        }
        Command::Events {
            nats,
            feed,
            event_type,
        } => {
            let client = nats.connect().await?;
            client::follow(
                client,
                client::Feed::Events,
                &feed.account,
                event_type.as_deref(),
                feed.all,
                feed.json,
                feed.limit,
            )
            .await?;
            Ok(0)
        }
        Command::Discovery { nats, feed, app } => {
            let client = nats.connect().await?;
            client::follow(
                client,
                client::Feed::Discovery,
                &feed.account,
                app.as_deref(),
                feed.all,
                feed.json,
                feed.limit,
            )
            .await?;
            Ok(0)
        }
        Command::Config(ConfigCommand::Check { config: path }) => {
            let config = Config::load(&path)?;
            println!(
                "{}: OK ({} account(s): {})",
                path.display(),
                config.accounts.len(),
                config
                    .accounts
                    .iter()
                    .map(|a| format!("{} → {}", a.name, a.root()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(0)
        }
    }
}

/// One cancellation token for the whole process: the first SIGTERM or Ctrl-C cancels it (graceful
/// shutdown), a second one exits at once.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down (send the signal again to force)");
        trigger.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
