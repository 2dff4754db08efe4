#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test against a real nats-server
# (each test starts its own on a free port) and the in-process DC/OS simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
cargo test --all-targets --locked "$@"
