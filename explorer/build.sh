#!/usr/bin/env bash
# Builds the explorer pages into explorer/dist (served by the indexer: --explorer-dir, or the
# default explorer/dist of the source tree). Installs Node and npm from Debian when missing;
# the npm packages come from the committed package-lock.json (npm ci), esbuild bundles them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../scripts/lib.sh"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
cd "$here"
# npm ci (exactly the lock file) unless node_modules was installed from this lock file already.
if [[ ! node_modules/.package-lock.json -nt package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs
