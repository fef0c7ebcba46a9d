#!/usr/bin/env bash
# scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]: runs each libFuzzer target of a sanitized tree
# (make test-asan's) for SECONDS, from its seed corpus (fuzz/corpus/<target>/) and the inputs of
# crashes fixed before (fuzz/regressions/<target>/), as many at once as there are cores. New inputs
# go to BUILD_DIR/fuzz-corpus/, crashes to BUILD_DIR/fuzz-crashes/. Exit status 1 when any target
# crashed, hung or leaked; one line a target says how far it got.
set -uo pipefail
build=${1:?usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
targets=("$@")
if ((${#targets[@]} == 0)); then
  for corpus in fuzz/corpus/*/; do targets+=("$(basename "$corpus")"); done
fi
jobs=${FUZZ_JOBS:-$(nproc)}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/fuzz-corpus" "$build/fuzz-crashes" "$build/fuzz-logs"

run_one() {
  local target=$1 binary="$build/fuzz/$1" work="$build/fuzz-corpus/$1" log="$build/fuzz-logs/$1.log"
  mkdir -p "$work"
  if [[ ! -x $binary ]]; then
    echo "fuzz: $target: not built ($binary)"
    return 1
  fi
  # The fixed crashes first, each once: a regression fails here before any fuzzing.
  if [[ -d fuzz/regressions/$target ]] && ! "$binary" fuzz/regressions/"$target"/* >"$log" 2>&1; then
    echo "fuzz: $target: a regression input crashes again (log: $log)"
    return 1
  fi
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: one taking 2 GiB is a memory blow-up.
  "$binary" "$work" "fuzz/corpus/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$build/fuzz-crashes/$target-" -print_final_stats=1 >>"$log" 2>&1
  local status=$?
  local runs cov
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if ((status == 0)); then
    echo "fuzz: $target: ${runs:-0} runs in ${seconds} s, ${cov:-cov: ?} edges, no crash"
  else
    echo "fuzz: $target: FAILED after ${runs:-?} runs (status $status; input in $build/fuzz-crashes/, log: $log)"
    grep -m1 -E 'ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error:' "$log" | sed 's/^/  /'
  fi
  return $status
}
export -f run_one
export build seconds

printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
