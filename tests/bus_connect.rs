//! `bus::connect` honours the authentication the configuration gives. Auth needs server flags the
//! shared `NatsServer` helper does not take, so these tests start their own `nats-server`.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dcos_driver::bus::{self, BusError};
use dcos_driver::config::NatsConfig;
use dcos_driver::testkit::free_port;

struct AuthServer {
    child: Child,
    port: u16,
}

impl AuthServer {
    fn start(auth: &[&str]) -> AuthServer {
        let port = free_port();
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(auth)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        AuthServer { child, port }
    }

    fn config(&self) -> NatsConfig {
        NatsConfig {
            url: format!("nats://127.0.0.1:{}", self.port),
            ..Default::default()
        }
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn user_and_password() {
    let server = AuthServer::start(&["--user", "driver", "--pass", "s3cret"]);
    let good = NatsConfig {
        user: Some("driver".into()),
        password: Some("s3cret".into()),
        ..server.config()
    };
    let client = bus::connect(&good).await.unwrap();
    client.flush().await.unwrap();
    let bad = NatsConfig {
        password: Some("wrong".into()),
        ..good
    };
    assert!(matches!(
        bus::connect(&bad).await,
        Err(BusError::Connect { .. })
    ));
}

#[tokio::test]
async fn token() {
    let server = AuthServer::start(&["--auth", "t0ken"]);
    let good = NatsConfig {
        token: Some("t0ken".into()),
        ..server.config()
    };
    bus::connect(&good).await.unwrap().flush().await.unwrap();
    assert!(bus::connect(&server.config()).await.is_err());
}

#[tokio::test]
async fn unreadable_credential_files_name_the_file() {
    let server = AuthServer::start(&[]);
    for config in [
        NatsConfig {
            creds_file: Some("/nonexistent/driver.creds".into()),
            ..server.config()
        },
        NatsConfig {
            nkey_seed_file: Some("/nonexistent/driver.nk".into()),
            ..server.config()
        },
    ] {
        let err = bus::connect(&config).await.unwrap_err();
        assert!(matches!(err, BusError::ReadFile { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/"), "{err}");
    }
}
