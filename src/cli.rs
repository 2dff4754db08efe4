//! The command line: one subcommand per job, each a thin call into the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

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

/// Runs the chosen subcommand to its end.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signal();
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            tracing::info!(accounts = config.accounts.len(), "configuration loaded");
            anyhow::bail!("serve is not built yet")
        }
        Command::Sim(config) => Ok(sim::run(config, shutdown).await?),
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
            Ok(())
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
