//! `GET /v2/info` and `GET /v2/leader`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::http;
use crate::sim::Sim;

/// The simulated framework id.
pub const FRAMEWORK_ID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-0000";

fn leader_of(headers: &HeaderMap, sim: &Sim) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| sim.config.listen.to_string())
}

/// `GET /v2/leader`.
pub async fn leader(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    http::json(
        StatusCode::OK,
        &json!({ "leader": leader_of(&headers, &sim) }),
    )
}

/// `GET /v2/info`.
pub async fn info(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let leader = leader_of(&headers, &sim);
    let port = leader
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(8080);
    http::json(
        StatusCode::OK,
        &json!({
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
        }),
    )
}
