//! `GET /v2/info` and `GET /v2/leader`, following the leadership of [`crate::sim::faults::Leader`].
//!
//! Marathon's `LeaderProxyFilter` stands in front of every resource: the leader answers itself (with
//! `X-Marathon-Leader: <its URL>`), a standby proxies the request to the leader (so the answer is the
//! leader's: `{"leader": "<leader host:port>"}`, `elected: true`), and a node that knows no leader
//! answers 503 "Could not determine the current leader" (the event stream's 502 in
//! [`crate::sim::stream`] carries the same message).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::http;
use crate::sim::faults::Leader;
use crate::sim::Sim;

/// The simulated framework id.
pub const FRAMEWORK_ID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-0000";

/// Marathon's answer when no leader is known.
pub const NO_LEADER: &str = "Could not determine the current leader";

/// The leader as `(host:port, URL)`, or the 503 of a node that knows none.
fn leader_of(headers: &HeaderMap, sim: &Sim) -> Result<(String, String), Response> {
    match sim.faults.leader() {
        Leader::This => {
            let host_port = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(|| sim.config.listen.to_string());
            let url = format!("http://{host_port}");
            Ok((host_port, url))
        }
        Leader::Other(url) => {
            let authority = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
            let host_port = authority.split('/').next().unwrap_or(authority).to_string();
            Ok((host_port, url))
        }
        Leader::None => Err(http::message(StatusCode::SERVICE_UNAVAILABLE, NO_LEADER)),
    }
}

/// The leader's answer, with the `X-Marathon-Leader` header its proxy filter adds.
fn from_leader(mut response: Response, url: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(url) {
        response.headers_mut().insert("x-marathon-leader", value);
    }
    response
}

/// `GET /v2/leader`.
pub async fn leader(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let (leader, url) = match leader_of(&headers, &sim) {
        Ok(leader) => leader,
        Err(response) => return response,
    };
    from_leader(
        http::json(StatusCode::OK, &json!({ "leader": leader })),
        &url,
    )
}

/// `GET /v2/info`.
pub async fn info(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let (leader, url) = match leader_of(&headers, &sim) {
        Ok(leader) => leader,
        Err(response) => return response,
    };
    let port = leader
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(8080);
    let body = json!({
            "name": "marathon",
            "version": "1.10.17",
            "buildref": "d4ca6b1b3a0b8a6e9d1e0ac0d5e3e2f2f8f3c9a1",
            "elected": true,
            "leader": leader,
            "frameworkId": FRAMEWORK_ID,
            "marathon_config": {
                "master": "zk://zk-1.zk:2181,zk-2.zk:2181,zk-3.zk:2181/mesos",
                "failover_timeout": 604800,
                "framework_name": "marathon",
                "ha": true,
                "checkpoint": true,
                "local_port_min": 10000,
                "local_port_max": 20000,
                "executor": "//cmd",
                "hostname": leader.rsplit_once(':').map_or(leader.as_str(), |(h, _)| h),
                "webui_url": null,
                "mesos_role": "slave_public",
                "task_launch_timeout": 300000,
                "task_reservation_timeout": 20000,
                "reconciliation_initial_delay": 15000,
                "reconciliation_interval": 600000,
                "mesos_user": "root",
                "leader_proxy_connection_timeout_ms": 5000,
                "leader_proxy_read_timeout_ms": 10000,
                "features": [],
                "mesos_leader_ui_url": "http://leader.mesos:5050/"
            },
            "zookeeper_config": {
                "zk": "zk://zk-1.zk:2181,zk-2.zk:2181,zk-3.zk:2181/marathon",
                "zk_compression": true,
                "zk_compression_threshold": 65536,
                "zk_connection_timeout": 10000,
                "zk_max_node_size": 1024000,
                "zk_max_versions": 50,
                "zk_session_timeout": 10000,
                "zk_timeout": 10000
            },
            "http_config": {
                "http_port": port,
                "https_port": 8443
            },
            "event_subscriber": null
    });
    from_leader(http::json(StatusCode::OK, &body), &url)
}
