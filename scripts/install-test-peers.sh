#!/usr/bin/env bash
# Installs the protocol peers the integration tests start, from the npm registry, into DIR
# (default build/peers): s3rver, an S3-compatible server. Idempotent.
set -euo pipefail
dir=${1:-build/peers}
version=3.7.1
if [[ -x "$dir/node_modules/.bin/s3rver" ]] && grep -q "\"version\": \"$version\"" "$dir/node_modules/s3rver/package.json"; then
  exit 0
fi
if ! command -v npm > /dev/null; then
  SUDO=""
  if [[ $(id -u) != 0 ]]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
mkdir -p "$dir"
echo "install-test-peers: s3rver@$version into $dir"
npm install --silent --no-audit --no-fund --prefix "$dir" "s3rver@$version"
