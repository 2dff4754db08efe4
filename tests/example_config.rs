//! The shipped example configurations load, validate and mean what their comments say.

use std::path::{Path, PathBuf};

use dcos_driver::config::{Config, ConfigError};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n";

/// The full example, with the `prod` service-account key supplied the way the comments say.
fn full_example() -> Config {
    let path = example("dcos-driver.toml");
    Config::from_toml(&path, &read(&path), |key| {
        (key == "DCOS_DRIVER_PROD_PRIVATE_KEY").then(|| KEY.to_string())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn full_example_is_valid_with_the_key_from_the_environment() {
    let config = full_example();
    assert_eq!(config.nats.url, "nats://127.0.0.1:4222");
    assert!(config.nats.user.is_none() && config.nats.creds_file.is_none());
    assert_eq!(config.driver.max_concurrent_operations, 64);
    assert_eq!(config.driver.max_request_bytes, 1024 * 1024);
    assert_eq!(config.driver.http_listen, "127.0.0.1:9090");
    assert!(config.driver.events_enabled);
    assert!(config
        .driver
        .http_listen
        .parse::<std::net::SocketAddr>()
        .is_ok());

    let prod = config.account("prod").expect("account prod");
    assert_eq!(prod.root(), "/prod");
    assert_eq!(
        prod.marathon_bases(),
        vec!["https://dcos.example.com/service/marathon"]
    );
    assert_eq!(
        prod.metronome_base().as_deref(),
        Some("https://dcos.example.com/service/metronome")
    );
    assert_eq!(
        prod.login_base().as_deref(),
        Some("https://dcos.example.com")
    );
    let creds = prod.credentials.as_ref().expect("prod logs in");
    assert_eq!(creds.uid, "dcos-driver");
    assert_eq!(creds.private_key.as_deref(), Some(KEY));
    assert!(creds.password.is_none() && creds.private_key_file.is_none());

    let sim = config.account("sim").expect("account sim");
    assert_eq!(sim.marathon_bases(), vec!["http://127.0.0.1:8080"]);
    assert_eq!(
        sim.metronome_base().as_deref(),
        Some("http://127.0.0.1:8080")
    );
    assert!(sim.credentials.is_none());
    assert_eq!(sim.root(), "/sim");
    assert_eq!(sim.request_timeout_seconds, 10);
}

#[test]
fn full_example_without_the_key_says_which_field() {
    let path = example("dcos-driver.toml");
    let err = Config::from_toml(&path, &read(&path), |_| None).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("dcos-driver.toml"), "{message}");
    assert!(message.contains("account[0].credentials"), "{message}");
}

/// Every field of the configuration appears in the full example, set or commented out.
#[test]
fn full_example_documents_every_field() {
    let text = read(&example("dcos-driver.toml"));
    let fields = [
        // [nats]
        "url",
        "user",
        "password",
        "token",
        "creds_file",
        "nkey_seed_file",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_required",
        // [driver]
        "max_concurrent_operations",
        "max_concurrent_dcos_calls",
        "max_request_bytes",
        "default_timeout_seconds",
        "events_max_age_seconds",
        "resync_interval_seconds",
        "unknown_is_down",
        "http_listen",
        "events_enabled",
        // [[account]]
        "name",
        "dcos_url",
        "marathon_urls",
        "metronome_url",
        "root_group",
        "ca_file",
        "insecure_tls",
        "request_timeout_seconds",
        // [account.credentials]
        "uid",
        "private_key_file",
        "private_key",
    ];
    for field in fields {
        let shown = text.lines().any(|line| {
            let line = line.trim_start().trim_start_matches('#').trim_start();
            line.starts_with(&format!("{field} ="))
        }) || text.contains(&format!("_{}=", field.to_ascii_uppercase()));
        assert!(shown, "the example does not show `{field}`");
    }
    // Fields set in the file all parse: a typo would fail `full_example_is_valid…` via deny_unknown_fields.
}

#[test]
fn compose_examples_load_as_files() {
    for name in ["dcos-driver.compose.toml", "dcos-driver.real.toml"] {
        let config = Config::load(&example(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.driver.http_listen, "0.0.0.0:9090", "{name}");
        let sim = config
            .account("sim")
            .expect("both keep the simulator account");
        assert_eq!(sim.marathon_bases(), vec!["http://dcos-sim:8080"], "{name}");
        assert!(config.accounts.iter().all(|a| a.credentials.is_none()));
    }
    let real = Config::load(&example("dcos-driver.real.toml")).unwrap();
    let mesos = real.account("mesos").expect("account mesos");
    assert_eq!(mesos.marathon_bases(), vec!["http://marathon:8080"]);
    assert_eq!(
        mesos.metronome_base().as_deref(),
        Some("http://metronome:9000")
    );
}
