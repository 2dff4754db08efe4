#!/usr/bin/env bash
# A curl transcript of the DC/OS simulator used as one uses Marathon: starts `dcos-driver sim` on a
# free port at a watchable time scale, creates an app with 2 instances and a health check while the
# event stream is captured, shows a 409 (change while it deploys) and a 422 (bad id), then the final
# app; every answer with its headers. Stops the simulator at the end (or on Ctrl-C).
#
#   bash scripts/sim-transcript.sh                 # time scale 0.5
#   TIME_SCALE=1 bash scripts/sim-transcript.sh    # Marathon's own pace
#   EVENT_SECONDS=8 bash scripts/sim-transcript.sh # capture the event stream longer
#
# Output: SSE lines end in CRLF on the wire; they are printed without the CR.
set -euo pipefail
cd "$(dirname "$0")/.."

TIME_SCALE="${TIME_SCALE:-0.5}"
EVENT_SECONDS="${EVENT_SECONDS:-6}"
LOG_PREFIX="# sim-transcript"
source scripts/lib.sh
say() { printf '\n### %s\n' "$*"; }
# Prints the command as one would type it (arguments quoted where the shell needs it), then runs it;
# a newline follows, as bodies have none.
run() {
  local shown="" arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then shown+="$arg "; else shown+="'${arg//\'/\'\\\'\'}' "; fi
  done
  printf '$ %s\n' "${shown% }"
  "$@"
  echo
}

cargo build --quiet --bin dcos-driver
bin=target/debug/dcos-driver
port=$(free_port)
base="http://127.0.0.1:$port"
"$bin" sim --listen "127.0.0.1:$port" --time-scale "$TIME_SCALE" >"$work/sim.log" 2>&1 &
track $!
wait_port "$port"
echo "# dcos-driver sim --listen 127.0.0.1:$port --time-scale $TIME_SCALE (pid ${pids[0]})"

say "Who leads?"
run curl -i -s "$base/v2/leader"

say "Watch the event stream for ${EVENT_SECONDS} s (in the background)"
printf '$ %s\n' "curl -N -s -i -H 'Accept: text/event-stream' --max-time $EVENT_SECONDS $base/v2/events &"
curl -N -s -i -H 'Accept: text/event-stream' --max-time "$EVENT_SECONDS" "$base/v2/events" >"$work/events" &
events_pid=$!
pids+=("$events_pid")
sleep 0.3

say "Create an app: 2 instances, an HTTP health check"
app='{"id":"/demo/web","cmd":"python3 -m http.server $PORT0","instances":2,"cpus":0.1,"mem":64,"portDefinitions":[{"port":0,"name":"http"}],"healthChecks":[{"protocol":"MESOS_HTTP","path":"/","portIndex":0,"gracePeriodSeconds":3,"intervalSeconds":10,"maxConsecutiveFailures":3}]}'
run curl -i -s -X POST -H 'Content-Type: application/json' -d "$app" "$base/v2/apps"

say "Scale it while it deploys: 409, the app is locked"
run curl -i -s -X PUT -H 'Content-Type: application/json' -d '{"instances":3}' "$base/v2/apps/demo/web"

say "An id Marathon does not accept: 422"
run curl -i -s -X POST -H 'Content-Type: application/json' -d '{"id":"/Bad_ID","cmd":"sleep 1000"}' "$base/v2/apps"

say "The deployment under way"
run curl -i -s "$base/v2/deployments"

wait "$events_pid" 2>/dev/null || true
say "What the event stream carried (curl stopped after ${EVENT_SECONDS} s)"
tr -d '\r' <"$work/events"

say "The app once deployed"
run curl -i -s "$base/v2/apps/demo/web"

say "Deployments left"
run curl -i -s "$base/v2/deployments"

echo "# stopping the simulator"
