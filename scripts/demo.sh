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
LOG_PREFIX=demo
source scripts/lib.sh
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

build_driver
start_nats
start_sim "$TIME_SCALE" --keepalive-seconds 5
start_serve "resync_interval_seconds = 30"

say "discovery feed (dcos.discovery.demo.>) prints below, prefixed with 'discovery |'"
# The binary is the background job (not sed), so stopping the demo stops the follower too.
"$bin" discovery --account demo 2>/dev/null > >(sed -u 's/^/    discovery | /') &
track $!
sleep 1

op() { "$bin" op --account demo --wait "$@"; }

say "1. create server group demo-web-v000 (2 instances, health-checked)"
op create_server_group -s application=demo -s stack=web -s region= -s desiredCapacity=2 \
  -s 'cmd=python3 -m http.server $PORT0' -s cpus=0.1 -s mem=64 \
  -s 'healthChecks=[{"protocol":"MESOS_HTTP","path":"/","portIndex":0,"gracePeriodSeconds":5,"intervalSeconds":5}]'

say "2. resize to 3"
op resize_server_group -s serverGroupName=demo-web-v000 -s region= -s capacity.desired=3

instance=$(curl -s "$SIM/v2/apps/demo/demo-web-v000/tasks" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks"][0]["id"])')
say "3. disable instance $instance in discovery"
op disable_instances_in_discovery -s serverGroupName=demo-web-v000 -s region= -s "instanceIds=[\"$instance\"]"
sleep 1

say "4. enable it again"
op enable_instances_in_discovery -s serverGroupName=demo-web-v000 -s region= -s "instanceIds=[\"$instance\"]"
sleep 1

say "5. destroy the server group"
op destroy_server_group -s serverGroupName=demo-web-v000 -s region=
sleep 2

say "curl $HTTP/metrics (excerpt)"
curl -s "$HTTP/metrics" | grep -E '^dcos_driver_(operations_total|operation_duration_seconds_count|dcos_requests_total|marathon_events_published_total|discovery_changes_published_total|event_stream_(reconnects|resyncs)_total|instances)' \
  | sort | head -40 || true

say "done: stopping everything started here"
