#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test against a real nats-server
# (each test starts its own on a free port) and the in-process DC/OS simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
# Contract documents: the AsyncAPI file (real parser) and the compose file (docker-compose config).
bash scripts/check-asyncapi.sh
bash scripts/check-compose.sh
# Benchmarks are measured with `cargo bench`, never run as tests; here they only have to build.
cargo test --locked --benches --no-run
cargo test --locked --lib --bins --tests "$@"
