#!/usr/bin/env bash
# The service doing its main job end to end: a server and a worker on this machine, a magnitude
# pruning job on the bundled model, watched to the end, and the pruned model on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
demo=$PWD/.demo
rm -rf "$demo"
mkdir -p "$demo"

cleanup() {
  [[ -n ${worker_pid:-} ]] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
  [[ -n ${server_pid:-} ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  return 0
}
trap cleanup EXIT

echo "== starting shears-server (SQLite job store in $demo/shears.db)"
"$build/server/shears-server" --listen 127.0.0.1:0 --db "$demo/shears.db" --port-file "$demo/port" \
  >"$demo/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do [[ -s $demo/port ]] && break; sleep 0.1; done
[[ -s $demo/port ]] || { cat "$demo/server.log"; exit 1; }
server=127.0.0.1:$(cat "$demo/port")
echo "   listening on $server"

echo "== starting shears-worker (CPU, $(nproc) threads)"
"$build/worker/shears-worker" --server "$server" --work-dir "$demo/work" --threads "$(nproc)" \
  >"$demo/worker.log" 2>&1 &
worker_pid=$!

ctl() { "$build/client/shearsctl" --server "$server" "$@"; }
echo "== evaluation text: the King James Bible from Debian's bible-kjv, split by chapter"
mkdir -p "$demo/kjv"
"$build/tools/shears-kjv-splits" "$demo/kjv"

model=$PWD/tests/data/tiny-llama
cat >"$demo/job.json" <<JSON
{
  "model_uri": "file://$model",
  "method": "METHOD_MAGNITUDE",
  "target_sparsity": 0.5,
  "evaluation": {"dataset_uri": "file://$demo/kjv/test.txt", "seq_len": 128, "max_tokens": 32768},
  "output": {"uri": "file://$demo/pruned"},
  "labels": {"demo": "true"}
}
JSON
echo "== shearsctl create --spec job.json --wait: magnitude pruning of $model to 50% sparsity,"
echo "   perplexity before and after on 32768 tokens of the KJV test split"
cat "$demo/job.json"
ctl create --spec "$demo/job.json" --request-id demo-1 --wait

echo
echo "== shearsctl create --wait: SparseGPT 2:4 on 64 calibration windows of the KJV train split,"
echo "   stored in the compressed-tensors sparse-24-bitmask layout that vLLM loads"
ctl create --model "file://$model" --method sparsegpt --nm 2:4 \
  --calibration "file://$demo/kjv/train.txt" --samples 64 --seq-len 128 \
  --format sparse-24-bitmask --output "file://$demo/pruned-2-4" --request-id demo-2 --wait

echo
echo "== shearsctl list"
ctl list
echo
echo "== the pruned model"
ls -l "$demo/pruned" "$demo/pruned-2-4"
echo
echo "== the report (first lines of $demo/pruned/shears_report.json)"
head -n 16 "$demo/pruned/shears_report.json"
echo "   ..."
echo
echo "Logs: $demo/server.log, $demo/worker.log"
