# Shared by scripts/demo.sh and the transcript scripts: free ports, waiting, and starting nats-server, the
# DC/OS simulator and `dcos-driver serve` (account `demo`, root `/demo`), every process stopped on exit.
#
# Source it after `cd` to the repository; it sets `work` (a temp dir) and the EXIT trap. Then:
#   build_driver                         → $bin
#   start_nats                           → $NATS_URL (unless NATS_URL is already set: then that one is used)
#   start_sim <time scale> [sim flags…]  → $SIM
#   start_serve ["[driver] toml lines"]  → $HTTP (health/metrics base URL), waits for /readyz
#   track <pid>                          → stopped on exit too
# KEEP_LOGS=1 keeps $work (the processes' logs); DCOS_DRIVER_BIN skips the build.

work="$(mktemp -d -t dcos-driver-XXXXXX)"
pids=()
LOG_PREFIX="${LOG_PREFIX:-script}"

track() { pids+=("$1"); }

stop_all() {
  local code=$?
  trap - EXIT INT TERM
  local i pid alive=()
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done
  # A graceful stop gets 5 s (serve hands back what it runs, the simulator closes its streams); then SIGKILL.
  for _ in $(seq 1 50); do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  if [ -n "${KEEP_LOGS:-}" ]; then echo "$LOG_PREFIX: logs kept in $work"; else rm -rf "$work"; fi
  echo "$LOG_PREFIX: stopped everything it started"
  exit "$code"
}
trap stop_all EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 did not open" >&2
  return 1
}

build_driver() {
  if [ -n "${DCOS_DRIVER_BIN:-}" ]; then
    bin="$DCOS_DRIVER_BIN"
  else
    echo "$LOG_PREFIX: building dcos-driver (the first time takes a few minutes)" >&2
    cargo build --quiet --bin dcos-driver
    bin=target/debug/dcos-driver
  fi
}

start_nats() {
  if [ -z "${NATS_URL:-}" ]; then
    local port
    port=$(free_port)
    nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
    track $!
    wait_port "$port"
    NATS_URL="nats://127.0.0.1:$port"
    echo "$LOG_PREFIX: started nats-server at $NATS_URL"
  fi
  export DCOS_DRIVER_NATS_URL="$NATS_URL"
}

start_sim() {
  local scale="$1" port
  shift
  port=$(free_port)
  "$bin" sim --listen "127.0.0.1:$port" --time-scale "$scale" "$@" >"$work/sim.log" 2>&1 &
  track $!
  wait_port "$port"
  SIM="http://127.0.0.1:$port"
  echo "$LOG_PREFIX: started the DC/OS simulator at $SIM (time scale $scale)"
}

start_serve() {
  local extra="${1:-}" port
  port=$(free_port)
  HTTP="http://127.0.0.1:$port"
  cat >"$work/dcos-driver.toml" <<TOML
[nats]
url = "$NATS_URL"

[driver]
http_listen = "127.0.0.1:$port"
$extra

[[account]]
name = "demo"
marathon_urls = ["$SIM"]
metronome_url = "$SIM"
root_group = "/demo"
TOML
  "$bin" serve --config "$work/dcos-driver.toml" >"$work/driver.log" 2>&1 &
  track $!
  for _ in $(seq 1 150); do curl -sf "$HTTP/readyz" >/dev/null && break; sleep 0.2; done
  if ! curl -sf "$HTTP/readyz" >/dev/null; then
    echo "$LOG_PREFIX: serve did not become ready; its log:" >&2
    cat "$work/driver.log" >&2
    return 1
  fi
  echo "$LOG_PREFIX: started dcos-driver serve (health and metrics at $HTTP; log $work/driver.log)"
}
