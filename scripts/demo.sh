#!/usr/bin/env bash
# The demo: starts what is missing (NATS, the DC/OS simulator, the driver), then walks one app through
# create → resize → disable an instance in discovery → enable → destroy while the discovery feed prints
# beside it. Ctrl-C (or the end) stops everything it started.
#
#   bash scripts/demo.sh              # watchable pace (simulator time scale 0.3)
#   TIME_SCALE=0 bash scripts/demo.sh # as fast as it goes
#   NATS_URL=nats://127.0.0.1:4222 bash scripts/demo.sh   # use a running NATS instead of starting one
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh

TIME_SCALE="${TIME_SCALE:-0.3}"
work="$(mktemp -d -t dcos-driver-demo-XXXXXX)"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
  echo "demo: stopped everything it started"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; return 1; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

echo "demo: building dcos-driver (first time: a few minutes)"
cargo build --quiet --bin dcos-driver
bin=target/debug/dcos-driver

if [ -z "${NATS_URL:-}" ]; then
  nats_port=$(free_port)
  nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
  pids+=($!)
  wait_port "$nats_port"
  NATS_URL="nats://127.0.0.1:$nats_port"
  echo "demo: started nats-server at $NATS_URL"
fi
export DCOS_DRIVER_NATS_URL="$NATS_URL"

sim_port=$(free_port)
"$bin" sim --listen "127.0.0.1:$sim_port" --time-scale "$TIME_SCALE" --keepalive-seconds 5 >"$work/sim.log" 2>&1 &
pids+=($!)
wait_port "$sim_port"
echo "demo: started the DC/OS simulator at http://127.0.0.1:$sim_port (time scale $TIME_SCALE)"

http_port=$(free_port)
cat >"$work/dcos-driver.toml" <<TOML
[nats]
url = "$NATS_URL"

[driver]
http_listen = "127.0.0.1:$http_port"
resync_interval_seconds = 30

[[account]]
name = "demo"
marathon_urls = ["http://127.0.0.1:$sim_port"]
metronome_url = "http://127.0.0.1:$sim_port"
root_group = "/demo"
TOML
"$bin" serve --config "$work/dcos-driver.toml" >"$work/driver.log" 2>&1 &
pids+=($!)
wait_port "$http_port"
echo "demo: started dcos-driver serve (health and metrics at http://127.0.0.1:$http_port/metrics; log $work/driver.log)"

say "discovery feed (dcos.discovery.demo.>) prints below, prefixed with 'discovery |'"
"$bin" discovery --account demo 2>/dev/null | sed -u 's/^/    discovery | /' &
pids+=($!)
sleep 1

op() { "$bin" op --account demo --wait "$@"; }

say "1. create server group demo-web-v000 (2 instances, health-checked)"
op create_server_group -s application=demo -s stack=web -s region= -s desiredCapacity=2 \
  -s 'cmd=python3 -m http.server $PORT0' -s cpus=0.1 -s mem=64 \
  -s 'healthChecks=[{"protocol":"MESOS_HTTP","path":"/","portIndex":0,"gracePeriodSeconds":5,"intervalSeconds":5}]'

say "2. resize to 3"
op resize_server_group -s serverGroupName=demo-web-v000 -s region= -s capacity.desired=3

instance=$(curl -s "http://127.0.0.1:$sim_port/v2/apps/demo/demo-web-v000/tasks" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks"][0]["id"])')
say "3. disable instance $instance in discovery"
op disable_instances_in_discovery -s serverGroupName=demo-web-v000 -s region= -s "instanceIds=[\"$instance\"]"
sleep 1

say "4. enable it again"
op enable_instances_in_discovery -s serverGroupName=demo-web-v000 -s region= -s "instanceIds=[\"$instance\"]"
sleep 1

say "5. destroy the server group"
op destroy_server_group -s serverGroupName=demo-web-v000 -s region=
sleep 2

say "metrics (excerpt)"
curl -s "http://127.0.0.1:$http_port/metrics" | grep -E '^dcos_driver_(operations_total|instances|events_in_total)' | head -20 || true

say "done: Ctrl-C or wait; everything started here is stopped on exit"
