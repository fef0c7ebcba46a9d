#!/usr/bin/env bash
# Installs what Shears needs to build, test and run its demo, from Debian 12's packages.
# Idempotent: packages already present are skipped, and apt is not touched when nothing is missing.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config git
  libtorch-dev libopenblas0-openmp libxgboost-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libsqlite3-dev libpq-dev libssl-dev libcurl4-openssl-dev nlohmann-json3-dev libpcre2-dev libicu-dev zlib1g-dev
  libgtest-dev libgmock-dev
  # The sanitized build and the fuzz targets (make test-asan, make fuzz): clang, libFuzzer, and
  # llvm-symbolizer for readable reports.
  clang llvm
  bible-kjv
  # The PostgreSQL job store's tests start a server of their own (scripts/test-postgres.sh).
  postgresql
  # The reference instruments (tests/reference) the tests cross-check the engine against, and
  # Debian's SentencePiece trainer and Python binding, which the tokenizer tests measure against
  # in processes of their own (the engine does not link libsentencepiece).
  python3-torch python3-regex sentencepiece python3-sentencepiece
  # The generated Python client (client/python) runs on these.
  python3-grpcio python3-protobuf
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
