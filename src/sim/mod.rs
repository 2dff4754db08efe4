//! The DC/OS simulator: Marathon (under `/` and `/service/marathon`), Metronome (under `/v1` and
//! `/service/metronome`), the DC/OS login (`/acs`), an admin API for fault injection (`/sim`).
//!
//! Everything lives in memory. Every delay goes through [`clock::Clock`], so `--time-scale 0` makes the
//! lifecycle instant for tests and benchmarks.
//!
//! Layout:
//! - [`clock`]: scaled sleeps and Marathon-style timestamps.
//! - [`bus`]: the event bus every lifecycle step publishes to and every SSE connection reads from.
//! - [`marathon`]: apps, tasks, deployments, groups, queue, info, leader, ping and the timed lifecycle.
//! - [`stream`]: `GET /v2/events`, byte for byte as Marathon sends it, with stream faults.
//! - [`metronome`]: jobs, runs and schedules.
//! - [`auth`]: the DC/OS login and the token check in front of Marathon and Metronome.
//! - [`faults`]: latency, 5xx share, standby/leader switching, and the `/sim` admin API.

pub mod auth;
pub mod bus;
pub mod clock;
pub mod faults;
pub mod marathon;
pub mod metronome;
pub mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;

/// Command-line settings of `dcos-driver sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimConfig {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Multiplier for every simulated delay (0 = instant).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Period of the SSE keep-alive (a bare CRLF), in seconds; not scaled.
    #[arg(long, default_value_t = 10.0)]
    pub keepalive_seconds: f64,
    /// Events one SSE connection may have outstanding before it is closed as a slow consumer.
    #[arg(long, default_value_t = 1024)]
    pub event_buffer: usize,
    /// Preload this many running apps (for scale tests).
    #[arg(long, default_value_t = 0)]
    pub preload_apps: usize,
    /// Tasks per preloaded app.
    #[arg(long, default_value_t = 1)]
    pub preload_tasks: usize,
    /// Group the preloaded apps are created under.
    #[arg(long, default_value = "/preload")]
    pub preload_group: String,
    /// Turn DC/OS authentication on with a password user `uid:password` (repeatable).
    #[arg(long = "auth-user")]
    pub auth_users: Vec<String>,
    /// Turn DC/OS authentication on with a service account `uid=/path/to/public.pem` (repeatable).
    #[arg(long = "auth-service-account")]
    pub auth_service_accounts: Vec<String>,
    /// Lifetime of issued tokens, in seconds (DC/OS: about 5 days); not scaled.
    #[arg(long, default_value_t = 432_000)]
    pub token_ttl_seconds: u64,
    /// Added latency on every API answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share (0..1) of API requests answered with a 5xx.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Close every event stream after this many events.
    #[arg(long)]
    pub stream_close_after: Option<u64>,
    /// Behave as a standby master: `/v2/events` answers 302 to this leader URL.
    #[arg(long)]
    pub standby_of: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: SimConfig,
        }
        Wrapper::parse_from(["sim"]).config
    }
}

impl SimConfig {
    /// Defaults for tests and benchmarks: port 0, time scale 0.
    pub fn instant() -> Self {
        SimConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            time_scale: 0.0,
            ..SimConfig::default()
        }
    }
}

/// The whole simulated cluster.
pub struct Sim {
    pub config: SimConfig,
    pub clock: clock::Clock,
    pub bus: bus::EventBus,
    pub marathon: marathon::Marathon,
    pub metronome: metronome::Metronome,
    pub auth: auth::Auth,
    pub faults: faults::Faults,
}

impl Sim {
    /// Builds the cluster (with its preload) from the settings.
    pub fn new(config: SimConfig) -> Arc<Sim> {
        let clock = clock::Clock::new(config.time_scale);
        let bus = bus::EventBus::new(config.event_buffer);
        let marathon = marathon::Marathon::new(&config);
        let metronome = metronome::Metronome::new(&config);
        let auth = auth::Auth::new(&config);
        let faults = faults::Faults::new(&config);
        bus.set_gate(faults.drop_gate());
        let sim = Arc::new(Sim {
            config,
            clock,
            bus,
            marathon,
            metronome,
            auth,
            faults,
        });
        sim.marathon.attach(&sim);
        sim
    }
}

/// All routes of the simulator, with auth and fault layers.
pub fn router(sim: Arc<Sim>) -> Router {
    let marathon = marathon::routes().merge(stream::routes());
    let metronome = metronome::routes();
    let api = Router::new()
        .merge(marathon.clone())
        .nest("/service/marathon", marathon)
        .merge(metronome.clone())
        .nest("/service/metronome", metronome);
    let api = auth::layer(api, sim.clone());
    let api = faults::layer(api, sim.clone());
    Router::new()
        .merge(api)
        .merge(auth::routes())
        .merge(faults::admin_routes())
        .with_state(sim)
}

/// A simulator running in this process (tests, benchmarks, the demo).
pub struct SimHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state, for assertions and direct fault control.
    pub sim: Arc<Sim>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        // Event streams never end by themselves; graceful shutdown would wait for them forever.
        self.sim.faults.shut_down_streams();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.sim.faults.shut_down_streams();
    }
}

/// Starts the simulator on `config.listen` in a background task.
pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let sim = Sim::new(config);
    let shutdown = CancellationToken::new();
    let app = router(sim.clone());
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
    });
    Ok(SimHandle {
        addr,
        sim,
        shutdown,
        task: Some(task),
    })
}

/// Runs the simulator until `shutdown` is cancelled (`dcos-driver sim`).
pub async fn run(config: SimConfig, shutdown: CancellationToken) -> std::io::Result<()> {
    let handle = spawn(config).await?;
    tracing::info!(url = %handle.url(), "DC/OS simulator listening");
    shutdown.cancelled().await;
    handle.stop().await;
    Ok(())
}
