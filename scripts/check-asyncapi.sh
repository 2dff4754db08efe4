#!/usr/bin/env bash
# Validates schemas/asyncapi.yaml with the official AsyncAPI parser (@asyncapi/parser, pinned below):
# any diagnostic of severity error fails, and the operation enum must match src/vocabulary.rs.
# Needs node >= 18 and npm; installs the parser once into target/asyncapi-tools (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

PARSER_VERSION="3.6.6"
TOOLS="${ASYNCAPI_TOOLS_DIR:-$PWD/target/asyncapi-tools}"

command -v node >/dev/null 2>&1 || { echo "node is missing: install Node.js 18 or later" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "npm is missing: install it with Node.js" >&2; exit 1; }

installed="$(node -p "require('$TOOLS/node_modules/@asyncapi/parser/package.json').version" 2>/dev/null || true)"
if [ "$installed" != "$PARSER_VERSION" ]; then
  echo "installing @asyncapi/parser@$PARSER_VERSION into $TOOLS" >&2
  mkdir -p "$TOOLS"
  [ -f "$TOOLS/package.json" ] || echo '{"private": true}' > "$TOOLS/package.json"
  npm install --prefix "$TOOLS" --no-audit --no-fund --silent "@asyncapi/parser@$PARSER_VERSION" >&2
fi

NODE_PATH="$TOOLS/node_modules" node scripts/asyncapi/check.js schemas/asyncapi.yaml src/vocabulary.rs
