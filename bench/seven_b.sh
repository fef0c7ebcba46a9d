#!/usr/bin/env bash
# A Llama-2-7B-shaped job end to end through shears-server and shears-worker: magnitude 50% of a
# BF16 checkpoint in three shards (hidden 4096, FFN 11008, 32 blocks, vocab 32000: 13.5 GB of
# random weights, written once into the cache by shears-synthetic-model), from file:// to file://
# and to s3:// (s3rver on loopback), next to a plain `cp -r` of the checkpoint timed in the same
# run. Targets: the file:// job within 2x the copy, the worker's peak RSS within 2.5 GB. Then
# SparseGPT 50% over all 32 blocks with 8 calibration windows of 256 tokens of the KJV train split,
# watched with `shearsctl watch` (its per-block pace and time left), its peak RSS printed.
#
# usage: bench/seven_b.sh BUILD_DIR WORK_DIR [CACHE_DIR]   (needs ~45 GB free under WORK_DIR)
# SPARSEGPT_ONLY=1 runs the SparseGPT job alone (no copy, no magnitude jobs, no targets);
# FILE_ONLY=1 the copy and the file:// magnitude job alone, with their targets.
set -euo pipefail
build=$(realpath "$1")
work=$2
cache=${3:-${XDG_CACHE_HOME:-$HOME/.cache}/shears-bench}
model=$cache/llama-2-7b-shape
gb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e9 }'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

if [[ ! -f $model/model.safetensors.index.json ]]; then
  echo "== writing the Llama-2-7B-shaped checkpoint into $model (once)"
  rm -rf "$model"
  "$build/tools/shears-synthetic-model" --blocks 32 --hidden 4096 --ffn 11008 --heads 32 --vocab 32000 \
    --dtype bf16 --shard-bytes 5000000000 "$model.partial"
  mv "$model.partial" "$model"
fi
# Ids of the KJV's own small tokenizer (every one below the vocabulary's 32000) for calibration.
[[ -f $model/tokenizer.json ]] || cp "$(dirname "$0")/../tests/data/tiny-llama/tokenizer.json" "$model/"
model_bytes=$(du -sb "$model" | cut -f1)
need=$((model_bytes * 3))
mkdir -p "$work"
free=$(df -B1 --output=avail "$work" | tail -1)
if ((free < need)); then
  echo "seven_b: $(gb "$free") GB free under $work, the runs need $(gb "$need") GB" >&2
  exit 1
fi

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
rm -rf "$work" && mkdir -p "$work"

everything=$([[ ${SPARSEGPT_ONLY:-0} == 1 ]] && echo 0 || echo 1)
cp_s=0
if ((everything)); then
echo "== baseline: cp -r of the checkpoint ($(gb "$model_bytes") GB, $(ls "$model" | wc -l) files)"
sync
start=$(now)
cp -r "$model" "$work/copy"
cp_s=$(since "$start")
sync
cp_sync_s=$(since "$start")
rm -rf "$work/copy"
echo "   cp -r: $cp_s s (with the sync after it: $cp_sync_s s)"
fi

"$build/server/shears-server" --listen 127.0.0.1:0 --db "$work/shears.db" --port-file "$work/port" \
  >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.1; done
server=127.0.0.1:$(cat "$work/port")

# One worker per job, so that its peak RSS and bytes written are the job's own.
# `run_job NAME OUTPUT [shearsctl create flags]` (default: magnitude 50%).
run_job() {
  local name=$1 output=$2
  shift 2
  local flags=("$@")
  ((${#flags[@]})) || flags=(--method magnitude --sparsity 0.5)
  "$build/worker/shears-worker" --server "$server" --work-dir "$work/worker-$name" --threads "$(nproc)" \
    >"$work/worker-$name.log" 2>&1 &
  local worker=$!
  pids+=("$worker")
  local start
  start=$(now)
  "$build/client/shearsctl" --server "$server" create --model "file://$model" "${flags[@]}" \
    --output "$output" >"$work/$name.out"
  local job
  job=$(awk '/^job/ { print $2; exit }' "$work/$name.out")
  "$build/client/shearsctl" --server "$server" watch "$job" >"$work/$name.watch" || true
  "$build/client/shearsctl" --server "$server" get "$job" >>"$work/$name.out"
  local seconds
  seconds=$(since "$start")
  local hwm written
  hwm=$(awk '/VmHWM/ { print $2 * 1024 }' "/proc/$worker/status")
  written=$(awk '/^write_bytes/ { print $2 }' "/proc/$worker/io")
  kill "$worker" && wait "$worker" 2>/dev/null || true
  grep -q "SUCCEEDED" "$work/$name.out" || { cat "$work/$name.out" "$work/worker-$name.log"; exit 1; }
  local ratio
  ratio=$(awk -v a="$seconds" -v b="$cp_s" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  printf "   %-8s %7.1f s  = %5.2fx cp -r   peak RSS %5.2f GB   written to disk %6.2f GB\n" \
    "$name" "$seconds" "$ratio" "$(gb "$hwm")" "$(gb "$written")"
  grep "^seconds" "$work/$name.out" | sed 's/^/            /'
  eval "${name}_ratio=$ratio ${name}_hwm=$hwm"
}

if ((everything)); then
echo "== magnitude 50% through server and worker ($(nproc) threads)"
run_job file "file://$work/pruned"
du -sb "$work/pruned" | awk '{ printf "            output %.2f GB, ", $1 / 1e9 }'
/usr/bin/python3 - "$work/pruned" <<'PY'
import json, struct, sys, glob
dtypes = set()
for path in sorted(glob.glob(sys.argv[1] + "/*.safetensors")):
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    dtypes |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
print("dtypes", sorted(dtypes))
PY
rm -rf "$work/pruned" "$work/worker-file"

if [[ ${FILE_ONLY:-0} == 1 ]]; then
  echo "targets: file:// job <= 2x cp -r: $file_ratio; worker peak RSS <= 2.5 GB: $(gb "$file_hwm") GB"
  awk -v r="$file_ratio" -v h="$file_hwm" 'BEGIN { ok = r <= 2 && h <= 2.5e9; print ok ? "PASS" : "FAIL"; exit !ok }'
  exit
fi
s3_dir=$work/s3
mkdir -p "$s3_dir"
"$build/peers/node_modules/.bin/s3rver" -d "$s3_dir/data" -a 127.0.0.1 -p 0 --configure-bucket models \
  >"$s3_dir/log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do grep -q "listening on" "$s3_dir/log" && break; sleep 0.1; done
s3_port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$s3_dir/log" | head -1)
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER \
  AWS_REGION=us-east-1
run_job s3 "s3://models/llama-2-7b-shape-50"
fi

echo "== SparseGPT 50% over all 32 blocks, 8 calibration windows of 256 tokens of the KJV train split"
mkdir -p "$work/kjv" && "$build/tools/shears-kjv-splits" "$work/kjv" >/dev/null
run_job sparsegpt "file://$work/sparsegpt" --method sparsegpt --sparsity 0.5 \
  --calibration "file://$work/kjv/train.txt" --samples 8 --seq-len 256
echo "            shearsctl watch, first and last blocks:"
grep "pruning: block" "$work/sparsegpt.watch" | sed -n '1,2p;$p' | sed 's/^/            /'
rm -rf "$work/sparsegpt"

echo "SparseGPT over 32 blocks: peak RSS $(gb "$sparsegpt_hwm") GB"
((everything)) || exit 0
echo "targets: file:// job <= 2x cp -r: $file_ratio; worker peak RSS <= 2.5 GB: $(gb "$file_hwm"), $(gb "$s3_hwm") GB"
awk -v r="$file_ratio" -v h1="$file_hwm" -v h2="$s3_hwm" 'BEGIN { ok = r <= 2 && h1 <= 2.5e9 && h2 <= 2.5e9;
  print ok ? "PASS" : "FAIL"; exit !ok }'
