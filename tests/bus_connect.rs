//! `bus::connect` honours the authentication and TLS the configuration gives, each against a
//! `nats-server` started with a small configuration file.
//!
//! The TLS tests make a throw-away CA, server and client certificate with `openssl`, and are
//! skipped (with a message) where it is not installed.

use std::path::PathBuf;
use std::process::Command;

use dcos_driver::bus::{self, BusError};
use dcos_driver::config::NatsConfig;
use dcos_driver::testkit::NatsServer;

fn config(server: &NatsServer) -> NatsConfig {
    NatsConfig {
        url: server.url(),
        ..Default::default()
    }
}

/// Connects and makes a round trip, so a refused login cannot pass unnoticed.
async fn connects(config: &NatsConfig) -> Result<(), BusError> {
    let client = bus::connect(config).await?;
    client.flush().await.expect("a round trip after connecting");
    Ok(())
}

/// The connection is refused, with `why` (case-insensitive) in the error.
async fn refused(config: &NatsConfig, why: &str) {
    match connects(config).await {
        Err(e @ BusError::Connect { .. }) => assert!(
            e.to_string().to_lowercase().contains(why),
            "expected {why:?} in: {e}"
        ),
        other => panic!("expected a refused connection ({why}), got {other:?}"),
    }
}

#[tokio::test]
async fn user_and_password() {
    let server =
        NatsServer::start_with_config("authorization { user: driver, password: s3cret }\n");
    let good = NatsConfig {
        user: Some("driver".into()),
        password: Some("s3cret".into()),
        ..config(&server)
    };
    connects(&good).await.unwrap();
    let bad = NatsConfig {
        password: Some("wrong".into()),
        ..good
    };
    refused(&bad, "authorization violation").await;
}

#[tokio::test]
async fn token() {
    let server = NatsServer::start_with_config("authorization { token: t0ken }\n");
    let good = NatsConfig {
        token: Some("t0ken".into()),
        ..config(&server)
    };
    connects(&good).await.unwrap();
    refused(&config(&server), "authorization violation").await;
}

#[tokio::test]
async fn nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let server = NatsServer::start_with_config(&format!(
        "authorization {{ users = [ {{ nkey: {} }} ] }}\n",
        user.public_key()
    ));
    let dir = tempfile::tempdir().unwrap();
    let seed_file = |name: &str, key: &nkeys::KeyPair| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{}\n", key.seed().unwrap())).unwrap();
        path
    };
    let good = NatsConfig {
        nkey_seed_file: Some(seed_file("driver.nk", &user)),
        ..config(&server)
    };
    connects(&good).await.unwrap();
    let stranger = NatsConfig {
        nkey_seed_file: Some(seed_file("stranger.nk", &nkeys::KeyPair::new_user())),
        ..config(&server)
    };
    refused(&stranger, "authorization violation").await;
}

#[tokio::test]
async fn unreadable_credential_files_name_the_file() {
    let server = NatsServer::start();
    for config in [
        NatsConfig {
            creds_file: Some("/nonexistent/driver.creds".into()),
            ..config(&server)
        },
        NatsConfig {
            nkey_seed_file: Some("/nonexistent/driver.nk".into()),
            ..config(&server)
        },
    ] {
        let err = bus::connect(&config).await.unwrap_err();
        assert!(matches!(err, BusError::ReadFile { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/"), "{err}");
    }
}

/// `openssl req` options for a new, unencrypted P-256 key.
const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// A throw-away CA with a server certificate for 127.0.0.1 and a client certificate.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// `None` (after saying so) when `openssl` cannot be run.
    fn generate() -> Option<Pki> {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("skipped: `openssl` is not installed, so no test certificates can be made");
            return None;
        }
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        pki.openssl(&format!(
            "req -x509 {NEW_KEY} -keyout ca.key -out ca.pem -days 1 -subj /CN=dcos-driver-test-CA \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ));
        pki.leaf(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        pki.leaf(
            "client",
            "subjectAltName=DNS:dcos-driver\nextendedKeyUsage=clientAuth\n",
        );
        Some(pki)
    }

    /// A key and a certificate signed by the CA, with `extensions`.
    fn leaf(&self, name: &str, extensions: &str) {
        std::fs::write(self.path(&format!("{name}.ext")), extensions).unwrap();
        self.openssl(&format!(
            "req {NEW_KEY} -keyout {name}.key -out {name}.csr -subj /CN={name}"
        ));
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem \
             -days 1 -extfile {name}.ext"
        ));
    }

    /// Runs `openssl` with the white-space separated `args` in the directory.
    fn openssl(&self, args: &str) {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The server's `tls {}` block; `verify` asks every client for a certificate.
    fn server_conf(&self, verify: bool) -> String {
        let quoted = |file: &str| format!("{:?}", self.path(file).display().to_string());
        format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {verify}\n  timeout: 2\n}}\n",
            quoted("server.pem"),
            quoted("server.key"),
            quoted("ca.pem"),
        )
    }

    fn ca(&self) -> Option<PathBuf> {
        Some(self.path("ca.pem"))
    }
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let Some(pki) = Pki::generate() else { return };
    let server = NatsServer::start_with_config(&pki.server_conf(false));
    let good = NatsConfig {
        tls_ca_file: pki.ca(),
        ..config(&server)
    };
    connects(&good).await.unwrap();
    // The system roots do not know the private CA.
    let untrusted = NatsConfig {
        tls_required: true,
        ..config(&server)
    };
    refused(&untrusted, "certificate").await;
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate() {
    let Some(pki) = Pki::generate() else { return };
    let server = NatsServer::start_with_config(&pki.server_conf(true));
    let with_cert = NatsConfig {
        tls_ca_file: pki.ca(),
        tls_cert_file: Some(pki.path("client.pem")),
        tls_key_file: Some(pki.path("client.key")),
        ..config(&server)
    };
    connects(&with_cert).await.unwrap();
    let without_cert = NatsConfig {
        tls_ca_file: pki.ca(),
        ..config(&server)
    };
    refused(&without_cert, "certificate").await;
}
