#!/usr/bin/env bash
# Validates docker-compose.yml, with and without the `real-dcos` profile, and the Dockerfile's basics.
# Needs no Docker engine: `docker-compose config` only parses, interpolates and checks the file.
# Installs Debian's docker-compose package when neither `docker-compose` nor `docker compose` is there
# (as root, with apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "docker-compose is missing: installing Debian's package" >&2
    log="$(mktemp)"
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
          apt-get install -y -qq --no-install-recommends docker-compose) >"$log" 2>&1; then
      cat "$log" >&2
    fi
    rm -f "$log"
  fi
  command -v docker-compose >/dev/null 2>&1 || { echo "docker-compose is missing and could not be installed" >&2; exit 1; }
  compose=(docker-compose)
fi

check() {
  local what="$1"; shift
  "${compose[@]}" -f docker-compose.yml "$@" config -q
  echo "docker-compose.yml ($what): OK"
}

check "default services"
check "profile real-dcos" --profile real-dcos
DCOS_DRIVER_EXAMPLE=dcos-driver.real.toml check "profile real-dcos, real config" --profile real-dcos

# Every configuration file the compose file can mount must exist.
for file in dcos-driver.compose.toml dcos-driver.real.toml; do
  [ -f "examples/$file" ] || { echo "examples/$file is missing" >&2; exit 1; }
done

# The Dockerfile's contract with the compose file and the README.
grep -q '^ENTRYPOINT \["dcos-driver"\]' Dockerfile || { echo "Dockerfile: ENTRYPOINT must be [\"dcos-driver\"]" >&2; exit 1; }
grep -q 'cargo build --release --locked' Dockerfile || { echo "Dockerfile: build with --release --locked" >&2; exit 1; }
grep -q '^USER ' Dockerfile || { echo "Dockerfile: the runtime image must not run as root" >&2; exit 1; }
echo "Dockerfile: OK"
