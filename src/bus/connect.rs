//! The NATS connection: every authentication the configuration offers, TLS, a client name, and
//! reconnects that never give up (the worker resumes on its own once the server is back).

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};

use super::BusError;
use crate::config::NatsConfig;

/// The client name the server shows in its connection list.
pub const CLIENT_NAME: &str = "dcos-driver";

/// Connects to NATS as `config` says.
///
/// Authentication: user/password, token, a `.creds` file or an nkey seed file (whichever are set;
/// the server picks what it expects). TLS is on when a CA file, a client certificate or
/// `tls_required` is given. Reconnects are unlimited with the client's capped exponential delay;
/// disconnects and reconnects are logged.
pub async fn connect(config: &NatsConfig) -> Result<Client, BusError> {
    let mut options = ConnectOptions::new()
        .name(CLIENT_NAME)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(20))
        .max_reconnects(None)
        .event_callback(|event| async move {
            match event {
                Event::Connected => tracing::info!("NATS connection (re)established"),
                Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
                Event::SlowConsumer(sid) => tracing::warn!(sid, "NATS slow consumer"),
                other => tracing::info!(event = %other, "NATS event"),
            }
        });

    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(path) = &config.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|source| BusError::ReadFile {
                what: "NATS credentials file",
                path: path.clone(),
                source,
            })?;
    }
    if let Some(path) = &config.nkey_seed_file {
        let seed = std::fs::read_to_string(path).map_err(|source| BusError::ReadFile {
            what: "NATS nkey seed file",
            path: path.clone(),
            source,
        })?;
        options = options.nkey(seed.trim().to_string());
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    if config.tls_required {
        options = options.require_tls(true);
    }

    let urls: Vec<&str> = config
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    options
        .connect(urls)
        .await
        .map_err(|source| BusError::Connect {
            url: config.url.clone(),
            source,
        })
}
