//! Where a reader gets what each connection attempt needs (base URL in rotation, token, HTTP client):
//! the DC/OS client of an account of the cluster, or, for a plain Marathon without login (tests,
//! benchmarks), a [`PlainEndpoint`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::dcos::{DcosClient, DcosError, EventsRequest};

/// Where a reader gets what each connection attempt needs: the DC/OS client of one account of the
/// cluster ([`DcosClient`]), or a [`PlainEndpoint`].
pub trait EventsEndpoint: Send + Sync + 'static {
    /// The next attempt's base URL (in rotation), a valid token (logging in if needed) and HTTP client.
    fn target(&self) -> BoxFuture<'_, Result<EventsRequest, DcosError>>;
    /// `base` failed (unreachable, 5xx, silent): move on to the next Marathon URL.
    fn unreachable(&self, base: &str);
    /// DC/OS refused the token of login `generation`: the next target logs in again.
    fn token_rejected(&self, generation: u64);
}

/// A cluster without login, given by its Marathon base URLs (tests, benchmarks, plain Marathon).
pub struct PlainEndpoint {
    bases: Vec<String>,
    current: AtomicUsize,
    http: reqwest::Client,
}

impl PlainEndpoint {
    /// `bases`: at least one Marathon base URL, tried in order and rotated on failure.
    pub fn new(bases: Vec<String>) -> Self {
        assert!(!bases.is_empty(), "a PlainEndpoint needs a Marathon URL");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client builds");
        PlainEndpoint {
            bases: bases
                .into_iter()
                .map(|b| b.trim_end_matches('/').to_string())
                .collect(),
            current: Default::default(),
            http,
        }
    }
}

impl EventsEndpoint for DcosClient {
    fn target(&self) -> BoxFuture<'_, Result<EventsRequest, DcosError>> {
        Box::pin(self.events_request())
    }

    fn unreachable(&self, base: &str) {
        self.marathon_unreachable(base);
    }

    fn token_rejected(&self, generation: u64) {
        DcosClient::token_rejected(self, generation);
    }
}

impl EventsEndpoint for PlainEndpoint {
    fn target(&self) -> BoxFuture<'_, Result<EventsRequest, DcosError>> {
        let base = self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()].clone();
        Box::pin(async move {
            Ok(EventsRequest {
                url: format!("{base}/v2/events"),
                base,
                authorization: None,
                token_generation: None,
                http: self.http.clone(),
            })
        })
    }

    fn unreachable(&self, base: &str) {
        if let Some(i) = self.bases.iter().position(|b| b == base) {
            let _ = self.current.compare_exchange(
                i,
                (i + 1) % self.bases.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn token_rejected(&self, _generation: u64) {}
}
