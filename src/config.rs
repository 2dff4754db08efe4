//! The typed configuration: one TOML file, defaults in one place, secrets overridable from the environment.
//!
//! Unknown fields are an error that names the file and the field. See `examples/dcos-driver.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What went wrong while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How to reach NATS.
    #[serde(default)]
    pub nats: NatsConfig,
    /// Limits and behaviour of the driver itself.
    #[serde(default)]
    pub driver: DriverConfig,
    /// The DC/OS accounts the driver may act on.
    #[serde(default, rename = "account")]
    pub accounts: Vec<AccountConfig>,
}

/// NATS connection settings, including the security operators use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma separated: `nats://127.0.0.1:4222`.
    #[serde(default = "defaults::nats_url")]
    pub url: String,
    /// User name for user/password authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// Password (env `DCOS_DRIVER_NATS_PASSWORD` overrides).
    #[serde(default)]
    pub password: Option<String>,
    /// Token authentication (env `DCOS_DRIVER_NATS_TOKEN` overrides).
    #[serde(default)]
    pub token: Option<String>,
    /// A `.creds` file (JWT + nkey seed) as issued by `nsc`.
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU…`).
    #[serde(default)]
    pub nkey_seed_file: Option<PathBuf>,
    /// CA certificate used to verify the server (turns TLS on).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// Client key for mutual TLS.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Require TLS even without a CA file.
    #[serde(default)]
    pub tls_required: bool,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: defaults::nats_url(),
            user: None,
            password: None,
            token: None,
            creds_file: None,
            nkey_seed_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
        }
    }
}

/// Limits and behaviour of the driver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverConfig {
    /// Operations run at once by one `serve` process.
    #[serde(default = "defaults::max_concurrent_operations")]
    pub max_concurrent_operations: usize,
    /// Concurrent HTTP calls to one DC/OS cluster.
    #[serde(default = "defaults::max_concurrent_dcos_calls")]
    pub max_concurrent_dcos_calls: usize,
    /// Largest accepted request body in bytes; larger ones are REJECTED.
    #[serde(default = "defaults::max_request_bytes")]
    pub max_request_bytes: usize,
    /// Deployment wait when a request gives no `timeoutSeconds`.
    #[serde(default = "defaults::default_timeout_seconds")]
    pub default_timeout_seconds: u64,
    /// Longest pause between two polls of `/v2/deployments` while an operation waits (the fallback
    /// to the event stream), in milliseconds.
    #[serde(default = "defaults::deployment_poll_interval_ms")]
    pub deployment_poll_interval_ms: u64,
    /// How long `DCOS_EVENTS` keeps events, in seconds.
    #[serde(default = "defaults::events_max_age_seconds")]
    pub events_max_age_seconds: u64,
    /// Period of the anti-entropy resync of the event side, in seconds (0 = only after connects).
    #[serde(default = "defaults::resync_interval_seconds")]
    pub resync_interval_seconds: u64,
    /// Count `TASK_UNREACHABLE` / `TASK_UNKNOWN` as DOWN instead of UNKNOWN.
    #[serde(default)]
    pub unknown_is_down: bool,
    /// Address of the health and metrics endpoint (`/healthz`, `/readyz`, `/metrics`).
    #[serde(default = "defaults::http_listen")]
    pub http_listen: String,
    /// Run the Marathon event reader and the discovery feed.
    #[serde(default = "defaults::yes")]
    pub events_enabled: bool,
    /// At shutdown, how long in-flight operations may still run before they are handed back, in seconds.
    #[serde(default = "defaults::shutdown_grace_seconds")]
    pub shutdown_grace_seconds: u64,
    /// How often each account's Marathon is pinged for the `dcos:<account>` readiness check, in seconds.
    #[serde(default = "defaults::probe_interval_seconds")]
    pub probe_interval_seconds: u64,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            max_concurrent_operations: defaults::max_concurrent_operations(),
            max_concurrent_dcos_calls: defaults::max_concurrent_dcos_calls(),
            max_request_bytes: defaults::max_request_bytes(),
            default_timeout_seconds: defaults::default_timeout_seconds(),
            deployment_poll_interval_ms: defaults::deployment_poll_interval_ms(),
            events_max_age_seconds: defaults::events_max_age_seconds(),
            resync_interval_seconds: defaults::resync_interval_seconds(),
            unknown_is_down: false,
            http_listen: defaults::http_listen(),
            events_enabled: true,
            shutdown_grace_seconds: defaults::shutdown_grace_seconds(),
            probe_interval_seconds: defaults::probe_interval_seconds(),
        }
    }
}

/// One DC/OS account: credentials, cluster URLs and the root group it may touch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Account name, used in subjects (`dcos.op.<name>.…`): `[A-Za-z0-9_-]+`.
    pub name: String,
    /// DC/OS URL: Marathon is then at `/service/marathon`, Metronome at `/service/metronome`, login at `/acs`.
    #[serde(default)]
    pub dcos_url: Option<String>,
    /// Plain Marathon URL(s), rotated on connection failure (instead of or besides `dcos_url`).
    #[serde(default)]
    pub marathon_urls: Vec<String>,
    /// Plain Metronome URL (default: `<dcos_url>/service/metronome`).
    #[serde(default)]
    pub metronome_url: Option<String>,
    /// Root group every app, job and snapshot must lie under (default `/<name>`).
    #[serde(default)]
    pub root_group: Option<String>,
    /// DC/OS login; none means the cluster needs no authentication.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// CA certificate (PEM) that signs the cluster's TLS certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate (test clusters only).
    #[serde(default)]
    pub insecure_tls: bool,
    /// Timeout of one HTTP request to DC/OS, in seconds.
    #[serde(default = "defaults::request_timeout_seconds")]
    pub request_timeout_seconds: u64,
}

impl AccountConfig {
    /// The root group, absolute and without a trailing slash.
    pub fn root(&self) -> String {
        let raw = self
            .root_group
            .clone()
            .unwrap_or_else(|| format!("/{}", self.name));
        let trimmed = raw.trim_matches('/');
        format!("/{trimmed}")
    }

    /// The Marathon base URLs to try, in order.
    pub fn marathon_bases(&self) -> Vec<String> {
        let mut bases: Vec<String> = self
            .marathon_urls
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        if let Some(dcos) = &self.dcos_url {
            bases.push(format!("{}/service/marathon", dcos.trim_end_matches('/')));
        }
        bases
    }

    /// The Metronome base URL, if any.
    pub fn metronome_base(&self) -> Option<String> {
        self.metronome_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string())
            .or_else(|| {
                self.dcos_url
                    .as_ref()
                    .map(|d| format!("{}/service/metronome", d.trim_end_matches('/')))
            })
    }

    /// The DC/OS login URL base (`<dcos_url>`), or the first Marathon URL for a plain Marathon.
    pub fn login_base(&self) -> Option<String> {
        self.dcos_url
            .as_ref()
            .map(|d| d.trim_end_matches('/').to_string())
    }
}

/// DC/OS login credentials: a password or a service account's private key (RS256).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// User or service-account id.
    pub uid: String,
    /// Password (env `DCOS_DRIVER_<ACCOUNT>_PASSWORD` overrides).
    #[serde(default)]
    pub password: Option<String>,
    /// PEM file with the service account's RSA private key.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// The PEM private key itself (env `DCOS_DRIVER_<ACCOUNT>_PRIVATE_KEY` overrides).
    #[serde(default)]
    pub private_key: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs.
        f.debug_struct("Credentials")
            .field("uid", &self.uid)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("private_key_file", &self.private_key_file)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

mod defaults {
    pub fn nats_url() -> String {
        "nats://127.0.0.1:4222".into()
    }
    pub fn max_concurrent_operations() -> usize {
        64
    }
    pub fn max_concurrent_dcos_calls() -> usize {
        32
    }
    pub fn max_request_bytes() -> usize {
        1024 * 1024
    }
    pub fn default_timeout_seconds() -> u64 {
        300
    }
    pub fn deployment_poll_interval_ms() -> u64 {
        1000
    }
    pub fn events_max_age_seconds() -> u64 {
        24 * 3600
    }
    pub fn resync_interval_seconds() -> u64 {
        300
    }
    pub fn http_listen() -> String {
        "127.0.0.1:9090".into()
    }
    pub fn request_timeout_seconds() -> u64 {
        30
    }
    pub fn yes() -> bool {
        true
    }
    pub fn shutdown_grace_seconds() -> u64 {
        20
    }
    pub fn probe_interval_seconds() -> u64 {
        15
    }
}

impl Config {
    /// Reads, parses, applies environment overrides and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(path, &text, |key| std::env::var(key).ok())
    }

    /// Parses TOML text; `env` looks up environment overrides (injected for tests).
    pub fn from_toml(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.apply_env(env);
        config.validate(path)?;
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        if let Some(url) = env("DCOS_DRIVER_NATS_URL") {
            self.nats.url = url;
        }
        if let Some(p) = env("DCOS_DRIVER_NATS_PASSWORD") {
            self.nats.password = Some(p);
        }
        if let Some(t) = env("DCOS_DRIVER_NATS_TOKEN") {
            self.nats.token = Some(t);
        }
        for account in &mut self.accounts {
            let prefix = format!(
                "DCOS_DRIVER_{}_",
                account.name.to_ascii_uppercase().replace('-', "_")
            );
            if let Some(creds) = account.credentials.as_mut() {
                if let Some(p) = env(&format!("{prefix}PASSWORD")) {
                    creds.password = Some(p);
                }
                if let Some(k) = env(&format!("{prefix}PRIVATE_KEY")) {
                    creds.private_key = Some(k);
                }
            }
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: String, message: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message: message.to_string(),
        };
        let name_ok = regex::Regex::new(r"^[A-Za-z0-9_-]{1,64}$").expect("static regex");
        let mut seen = std::collections::HashSet::new();
        for (i, account) in self.accounts.iter().enumerate() {
            let at = |f: &str| format!("account[{i}].{f}");
            if !name_ok.is_match(&account.name) {
                return Err(invalid(at("name"), "must match [A-Za-z0-9_-]{1,64}"));
            }
            if !seen.insert(account.name.clone()) {
                return Err(invalid(at("name"), "is used by another account"));
            }
            if account.marathon_bases().is_empty() {
                return Err(invalid(
                    at("dcos_url"),
                    "set dcos_url or marathon_urls: the account has no Marathon to talk to",
                ));
            }
            for url in account.marathon_bases() {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(
                        at("marathon_urls"),
                        "URLs must start with http:// or https://",
                    ));
                }
            }
            if let Some(creds) = &account.credentials {
                let has_key = creds.private_key.is_some() || creds.private_key_file.is_some();
                if creds.password.is_some() == has_key {
                    return Err(invalid(
                        at("credentials"),
                        "give exactly one of password or private_key(_file)",
                    ));
                }
                if account.dcos_url.is_none() {
                    return Err(invalid(
                        at("credentials"),
                        "logging in needs dcos_url (the /acs login lives there)",
                    ));
                }
            }
            if account.root().len() < 2 {
                return Err(invalid(at("root_group"), "must name a group below /"));
            }
        }
        if self.driver.max_concurrent_operations == 0 {
            return Err(invalid(
                "driver.max_concurrent_operations".into(),
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The account with this name.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("test.toml"), text, |_| None)
    }

    #[test]
    fn minimal_account() {
        let c =
            parse("[[account]]\nname = \"prod\"\nmarathon_urls = [\"http://m:8080/\"]\n").unwrap();
        assert_eq!(c.accounts[0].root(), "/prod");
        assert_eq!(c.accounts[0].marathon_bases(), vec!["http://m:8080"]);
        assert_eq!(c.driver.max_request_bytes, 1024 * 1024);
    }

    #[test]
    fn unknown_field_names_file_and_field() {
        let err = parse("[nats]\nurl = \"nats://x\"\ncolour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn invalid_account_names_field() {
        let err = parse("[[account]]\nname = \"bad name\"\ndcos_url = \"http://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("account[0].name"), "{err}");
    }

    #[test]
    fn env_overrides_secrets_and_debug_redacts() {
        let text = "[[account]]\nname = \"prod-eu\"\ndcos_url = \"http://d\"\n[account.credentials]\nuid = \"svc\"\npassword = \"file\"\n";
        let c = Config::from_toml(Path::new("t.toml"), text, |k| {
            (k == "DCOS_DRIVER_PROD_EU_PASSWORD").then(|| "from-env".to_string())
        })
        .unwrap();
        let creds = c.accounts[0].credentials.as_ref().unwrap();
        assert_eq!(creds.password.as_deref(), Some("from-env"));
        assert!(!format!("{creds:?}").contains("from-env"));
        assert_eq!(
            c.accounts[0].metronome_base().as_deref(),
            Some("http://d/service/metronome")
        );
    }
}
