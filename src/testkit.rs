//! Helpers for tests and benchmarks: a real `nats-server` on a free port with its own store directory,
//! and the simulator in-process on port 0.
//!
//! The server binary is `$NATS_SERVER_BIN`, else `nats-server` on `PATH` (works with 2.9.10 and newer).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server` child process with JetStream on; killed and its store removed on drop.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    binary: PathBuf,
    /// A configuration file (`-c`) for what the flags cannot say: TLS, nkey users, ….
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    pub fn start() -> NatsServer {
        NatsServer::launch(None)
    }

    /// [`NatsServer::start`] with `extra_conf` as its configuration file (for TLS, nkey users, …).
    /// Address, port and JetStream still come from the flags, which take precedence.
    pub fn start_with_config(extra_conf: &str) -> NatsServer {
        NatsServer::launch(Some(extra_conf))
    }

    fn launch(extra_conf: Option<&str>) -> NatsServer {
        let binary = std::env::var_os("NATS_SERVER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("nats-server"));
        let store = tempfile::Builder::new()
            .prefix("dcos-driver-nats-")
            .tempdir()
            .expect("create a store directory for nats-server");
        let config = extra_conf.map(|conf| {
            let path = store.path().join("nats-server.conf");
            std::fs::write(&path, conf).expect("write the nats-server configuration");
            path
        });
        // Port 0 until the first start: nats-server then picks a free port itself (`-p -1`) and reports
        // it in a ports file, so two tests starting servers at once can never race for the same port.
        let mut server = NatsServer {
            port: 0,
            store,
            child: None,
            binary,
            config,
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept across restarts).
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Stops the server (SIGKILL) and waits for it to exit. The store is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        let ports_dir = self.store.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).expect("create the ports-file directory");
        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let port_arg = if self.port == 0 {
            "-1".to_string()
        } else {
            self.port.to_string()
        };
        let child = command
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(self.store.path())
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (install nats-server or set NATS_SERVER_BIN): {e}",
                    self.binary.display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("nats-server exited at start (port {port_arg}): {status}");
                }
            }
            // The ports file is written once the client listener is bound.
            if let Some(port) = reported_port(&ports_dir) {
                let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    self.port = port;
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nats-server (port {port_arg}) did not accept connections within 20 s");
    }
}

/// The client port nats-server wrote to its ports file (`{"nats":["nats://127.0.0.1:4222"], …}`).
fn reported_port(dir: &Path) -> Option<u16> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let text = std::fs::read_to_string(entry.path()).ok()?;
        let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
        let url = ports.get("nats")?.get(0)?.as_str()?;
        return url.rsplit(':').next()?.parse().ok();
    }
    None
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nats_server_starts_stops_and_keeps_its_store() {
        let mut server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client.clone());
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "KEEP".into(),
            subjects: vec!["keep.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("keep.a", "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
        drop(client);

        server.restart();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream("KEEP").await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 1);
        let store = server.store_dir().to_path_buf();
        drop(server);
        assert!(!store.exists(), "store directory is removed on drop");
    }
}
