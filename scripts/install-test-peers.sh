#!/usr/bin/env bash
# Installs from the npm registry, into DIR (default build/peers), what the integration tests run
# besides the project: s3rver (an S3-compatible server) and the Node client's dependencies
# (client/node/package.json: @grpc/grpc-js, @grpc/proto-loader). Idempotent.
set -euo pipefail
dir=${1:-build/peers}
version=3.7.1
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -x "$dir/node_modules/.bin/s3rver" ]] && grep -q "\"version\": \"$version\"" "$dir/node_modules/s3rver/package.json" &&
   [[ -f "$dir/node_modules/@grpc/grpc-js/package.json" && -f "$dir/node_modules/@grpc/proto-loader/package.json" ]]; then
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
client_deps=$(node -e 'const d = require(process.argv[1]).dependencies;
  console.log(Object.entries(d).map(([k, v]) => k + "@" + v).join(" "))' "$root/client/node/package.json")
echo "install-test-peers: s3rver@$version $client_deps into $dir"
# shellcheck disable=SC2086
npm install --silent --no-audit --no-fund --prefix "$dir" "s3rver@$version" $client_deps
