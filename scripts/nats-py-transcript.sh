#!/usr/bin/env bash
# A transcript of a plain NATS client (nats-py) driving dcos-driver: starts nats-server, the DC/OS
# simulator (time scale 0.2) and `dcos-driver serve` (as scripts/demo.sh does), runs
# scripts/nats-py-transcript.py (create → resize → disable an instance in discovery → destroy, each with
# its JetStream publish ack and every task document pushed to its Dcos-Reply-To inbox), then stops
# everything it started.
#
#   bash scripts/nats-py-transcript.sh
#   TIME_SCALE=0 bash scripts/nats-py-transcript.sh   # as fast as it goes
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh

if ! python3 -c 'import nats' 2>/dev/null; then
  echo "transcript: installing nats-py" >&2
  python3 -m pip install --quiet nats-py >&2
fi

TIME_SCALE="${TIME_SCALE:-0.2}"
work="$(mktemp -d -t dcos-driver-nats-py-XXXXXX)"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
  echo "transcript: stopped everything it started"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; return 1; }
wait_ready() { for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.2; done; echo "serve did not become ready; its log:" >&2; cat "$work/driver.log" >&2; return 1; }

echo "transcript: building dcos-driver" >&2
cargo build --quiet --bin dcos-driver
bin=target/debug/dcos-driver

nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
wait_port "$nats_port"
NATS_URL="nats://127.0.0.1:$nats_port"
echo "transcript: nats-server at $NATS_URL"

sim_port=$(free_port)
"$bin" sim --listen "127.0.0.1:$sim_port" --time-scale "$TIME_SCALE" >"$work/sim.log" 2>&1 &
pids+=($!)
wait_port "$sim_port"
echo "transcript: DC/OS simulator at http://127.0.0.1:$sim_port (time scale $TIME_SCALE)"

http_port=$(free_port)
cat >"$work/dcos-driver.toml" <<TOML
[nats]
url = "$NATS_URL"

[driver]
http_listen = "127.0.0.1:$http_port"

[[account]]
name = "demo"
marathon_urls = ["http://127.0.0.1:$sim_port"]
metronome_url = "http://127.0.0.1:$sim_port"
root_group = "/demo"
TOML
env -u DCOS_DRIVER_NATS_URL "$bin" serve --config "$work/dcos-driver.toml" >"$work/driver.log" 2>&1 &
pids+=($!)
wait_ready "$http_port"
echo "transcript: dcos-driver serve ready (http://127.0.0.1:$http_port/readyz)"
echo

status=0
python3 scripts/nats-py-transcript.py --nats-url "$NATS_URL" --account demo \
  --sim-url "http://127.0.0.1:$sim_port" || status=$?
echo
echo "transcript: the Python client exited $status"
exit "$status"
