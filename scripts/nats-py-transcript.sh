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
LOG_PREFIX=transcript
source scripts/lib.sh
build_driver
unset NATS_URL
start_nats
start_sim "$TIME_SCALE"
start_serve
echo

status=0
python3 scripts/nats-py-transcript.py --nats-url "$NATS_URL" --account demo \
  --sim-url "$SIM" || status=$?
echo
echo "transcript: the Python client exited $status"
exit "$status"
