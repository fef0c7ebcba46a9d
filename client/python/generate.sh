#!/usr/bin/env bash
# Generates the Python client of shears.v1 from proto/ into OUT_DIR (importable as shears.v1.*),
# with Debian's protoc and gRPC Python plugin (protobuf-compiler, protobuf-compiler-grpc); the
# runtime is Debian's python3-grpcio.
set -euo pipefail
out=${1:?usage: generate.sh OUT_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
protoc -I "$root/proto" --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" "$root"/proto/shears/v1/*.proto
