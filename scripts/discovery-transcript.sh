#!/usr/bin/env bash
# A transcript of the discovery feed under faults: a subscriber on dcos.discovery.demo.> watches an app
# deploy, an instance disabled and enabled in discovery, the simulator's event stream cut while events are
# dropped (a task killed and the app scaled meanwhile, so their events never reach the driver), a stalled
# stream, and the state converging through the driver's resyncs. At the end it prints the truth side by
# side (the simulator's tasks and KV dcos_instances, via scripts/discovery-truth.py) and says whether they
# agree, with the simulator's stats and the driver's event-stream metrics.
#
# Starts nats-server, `dcos-driver sim` (time scale 0.2, keep-alive every second) and `dcos-driver serve`
# (resync every 5 s, idle deadline 3 s) as scripts/demo.sh does; stops everything it started on exit.
#
#   bash scripts/discovery-transcript.sh
#   TIME_SCALE=0.5 bash scripts/discovery-transcript.sh
#   DCOS_DRIVER_BIN=/path/to/dcos-driver bash scripts/discovery-transcript.sh   # skip the build
#   KEEP_LOGS=1 bash scripts/discovery-transcript.sh    # keep the work directory (driver, sim, NATS logs)
#
# Exit code: 0 when the simulator and the discovery KV agree at the end, else 1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh

if ! python3 -c 'import nats' 2>/dev/null; then
  echo "transcript: installing nats-py" >&2
  python3 -m pip install --quiet nats-py >&2
fi

TIME_SCALE="${TIME_SCALE:-0.2}"
RESYNC_SECONDS=5
IDLE_SECONDS=3
LOG_PREFIX=transcript
source scripts/lib.sh
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
note() { printf '   %s\n' "$*"; }

build_driver
unset NATS_URL
start_nats
start_sim "$TIME_SCALE" --keepalive-seconds 1
start_serve "resync_interval_seconds = $RESYNC_SECONDS
events_idle_timeout_seconds = $IDLE_SECONDS"
METRICS="$HTTP/metrics"

echo "transcript: nats-server $NATS_URL · simulator $SIM (time scale $TIME_SCALE, keep-alive 1 s)"
echo "transcript: dcos-driver serve (resync_interval_seconds = $RESYNC_SECONDS, events_idle_timeout_seconds = $IDLE_SECONDS, metrics $METRICS)"

# The driver's own account of the event stream, next to the feed: connects, losses and the resyncs that
# changed something (the periodic ones that find nothing to fix are left out).
# (tail is the background job, so stopping it ends the filters behind it.)
tail -n +1 -F "$work/driver.log" 2>/dev/null > >(
  sed -u 's/\x1b\[[0-9;]*m//g' \
    | grep --line-buffered -E 'attached to the event stream|event stream down|discovery resync done' \
    | grep --line-buffered -v 'changes=0 ' \
    | sed -u -E 's/^[0-9-]+T([0-9:]{8}\.[0-9]{3})[0-9]*Z +/\1 /; s/ events\{[^}]*\}:/ /; s/ dcos_driver::[a-z_:]+: / /; s/^/    driver    | /') &
track $!

say "a subscriber on dcos.discovery.demo.> (dcos-driver discovery --account demo) prints below as 'discovery |'"
note "columns: time, new state ← previous state, instance, host:ports (reason)"
note "beside it, the driver's log as 'driver |': stream connects and losses, and the resyncs that changed something"
"$bin" discovery --account demo > >(sed -u 's/^/    discovery | /') 2>/dev/null &
track $!
sleep 1

app=/demo/demo-web-v000
op() { "$bin" op --account demo --wait "$@"; }
tasks() { curl -s "$SIM/v2/apps$app/tasks"; }
# task_id first|last: a task of the app, in id order.
task_id() { tasks | python3 -c 'import json,sys; ids=sorted(t["id"] for t in json.load(sys.stdin)["tasks"]); print(ids[0 if sys.argv[1]=="first" else -1])' "$1"; }
show_tasks() {
  tasks | python3 -c '
import json, sys
for t in sorted(json.load(sys.stdin)["tasks"], key=lambda t: t["id"]):
    h = t.get("healthCheckResults") or []
    health = "pending" if not h else ("healthy" if all(r["alive"] for r in h) else "UNHEALTHY")
    print("   sim task", t["id"], t["state"], health)'
}
# The sum of a metric family's samples (every label set), as an integer.
metric() { curl -s "$METRICS" | awk -v f="$1" 'index($1, f) == 1 && (substr($1, length(f) + 1, 1) == "{" || $1 == f) {s += $NF} END {printf "%d\n", s}'; }
post() { curl -s -X "$1" "$SIM$2" -H 'Content-Type: application/json' ${3:+-d "$3"}; echo; }

say "1. create server group demo-web-v000: 3 instances, an HTTP health check"
op create_server_group -s application=demo -s stack=web -s region= -s desiredCapacity=3 \
  -s 'cmd=python3 -m http.server $PORT0' -s cpus=0.1 -s mem=64 \
  -s 'healthChecks=[{"protocol":"MESOS_HTTP","path":"/","portIndex":0,"gracePeriodSeconds":5,"intervalSeconds":5}]'
sleep 2
show_tasks

instance=$(task_id first)
say "2. disable instance ${instance%%._app.*} in discovery, then enable it again"
op disable_instances_in_discovery -s serverGroupName=demo-web-v000 -s region= -s "instanceIds=[\"$instance\"]"
sleep 1.5
op enable_instances_in_discovery -s serverGroupName=demo-web-v000 -s region= -s "instanceIds=[\"$instance\"]"
sleep 1.5

reconnects_before=$(metric dcos_driver_event_stream_reconnects_total)
resyncs_before=$(metric dcos_driver_event_stream_resyncs_total)
victim=$(task_id last)
say "3. cut the event stream; while the driver reconnects, drop the next 50 events, kill a task, scale to 4"
note "POST /sim/stream/close"
post POST /sim/stream/close '{}' | sed 's/^/   → /'
note "POST /sim/stream/drop {\"next\": 50}"
post POST /sim/stream/drop '{"next": 50}' | sed 's/^/   → /'
note "DELETE /v2/apps$app/tasks/$victim   (Marathon replaces it; the events of both are lost)"
curl -s -X DELETE "$SIM/v2/apps$app/tasks/$victim" | python3 -c 'import json,sys; t=json.load(sys.stdin)["task"]; print("   → killed", t["id"], t["state"])'
note "PUT /v2/apps$app {\"instances\": 4}   (plain Marathon API, not through the driver)"
curl -s -X PUT "$SIM/v2/apps$app" -H 'Content-Type: application/json' -d '{"instances": 4}' | sed 's/^/   → /'; echo
sleep 2
note "the simulator now ($(curl -s "$SIM/sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["droppedEvents"])') events dropped since the cut, never seen by the driver):"
show_tasks
note "the feed still shows what the resync after the reconnect saw; waiting for a periodic resync (every ${RESYNC_SECONDS} s) …"
python3 scripts/discovery-truth.py --nats-url "$NATS_URL" --sim-url "$SIM" --account demo --wait 30 --quiet || true
sleep 1
note "stream reconnects during the step: $(( $(metric dcos_driver_event_stream_reconnects_total) - reconnects_before )), resyncs: $(( $(metric dcos_driver_event_stream_resyncs_total) - resyncs_before ))"
note "DELETE /sim/stream/drop (the rest of the 50 would eat later events)"
post DELETE /sim/stream/drop | sed 's/^/   → /'

reconnects_before=$(metric dcos_driver_event_stream_reconnects_total)
say "4. stall the event stream for 8 s: no events, no keep-alives, the socket stays open"
note "POST /sim/stream/stall {\"seconds\": 8}   (the driver's idle deadline is ${IDLE_SECONDS} s)"
post POST /sim/stream/stall '{"seconds": 8}' | sed 's/^/   → /'
sleep 11
note "stream reconnects during the stall: $(( $(metric dcos_driver_event_stream_reconnects_total) - reconnects_before ))"

say "5. the truth side by side: the simulator's tasks and KV dcos_instances"
set +e
python3 scripts/discovery-truth.py --nats-url "$NATS_URL" --sim-url "$SIM" --account demo --wait 15
agree=$?
set -e
note "GET /sim/stats"
curl -s "$SIM/sim/stats" | sed 's/^/   → /'; echo
note "GET $METRICS (event stream and discovery)"
curl -s "$METRICS" | grep -E '^dcos_driver_(event_stream_reconnects_total|event_stream_resyncs_total|instances)[{ ]' | sed 's/^/   /'
sleep 0.5
exit "$agree"
