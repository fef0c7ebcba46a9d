#!/bin/bash
# Trains the models the per-block sparsity bench runs on (bench/models/README.md): the development
# set the search's settings were chosen on, and the held-out llama kept for the final check.
#   bench/models/train.sh BUILD_DIR OUT_DIR [NAME...]
# Each model takes 5-20 minutes on two cores (THREADS sets the LibTorch threads, default 2). The tokenizer is the fixtures' (tests/data/README.md
# says how tests/reference/bpe.py made it from the KJV train split).
set -euo pipefail
build=$1
out=$2
shift 2
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(llama-12 gpt2-6 opt-6 heldout-llama-10)
here=$(cd "$(dirname "$0")" && pwd)
kjv=$(mktemp -d)
trap 'rm -rf "$kjv"' EXIT
"$build/tools/shears-kjv-splits" "$kjv" > /dev/null
mkdir -p "$kjv/tok"
cp "$here/../../tests/data/tiny-llama/tokenizer.json" "$kjv/tok/"
common=(--tokenizer-dir "$kjv/tok" --train "$kjv/train.txt" --valid "$kjv/valid.txt" --steps 2000 --batch 16
        --seq-len 128 --lr 3e-3 --warmup 100 --threads "${THREADS:-2}")
for name in "${names[@]}"; do
  case $name in
    llama-12) args=(--arch llama --layers 12 --hidden 64 --ffn 176 --heads 4 --kv-heads 2 --seed 1) ;;
    gpt2-6) args=(--arch gpt2 --layers 6 --hidden 64 --heads 4 --positions 1024 --seed 2) ;;
    opt-6) args=(--config "$here/opt-6.config.json" --seed 3) ;;
    # Held out: another width, depth and seed, never run while the search's settings were chosen.
    heldout-llama-10) args=(--arch llama --layers 10 --hidden 96 --ffn 256 --heads 6 --kv-heads 2 --seed 7) ;;
    *) echo "unknown model $name" >&2; exit 2 ;;
  esac
  echo "== $name"
  "$build/tools/shears-train" "${args[@]}" "${common[@]}" --out "$out/$name" | tail -1
done
