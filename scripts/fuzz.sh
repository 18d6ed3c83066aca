#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for SECONDS each, with the seed
# corpus of the repository (fuzz/corpus/TARGET, read-only) and a working
# corpus in BUILD_DIR/fuzz-corpus/TARGET (kept between runs, so runs add up).
# A crash, leak, sanitizer report or broken property leaves its input in
# BUILD_DIR/fuzz-artifacts/ and makes the script fail. Prints the executions
# of each target.
# Usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]
set -euo pipefail

build=${1:?usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(fuzz_event_decode fuzz_event_stored fuzz_ce_binary fuzz_schema fuzz_jsonl fuzz_store_url
             fuzz_transport_url)
fi
mkdir -p "$build/fuzz-artifacts"
failed=()
for t in "${targets[@]}"; do
    bin="$build/fuzz/$t"
    [ -x "$bin" ] || { echo "fuzz: $bin is not built (make fuzz builds it)" >&2; exit 2; }
    work="$build/fuzz-corpus/$t"
    mkdir -p "$work"
    log="$build/fuzz-artifacts/$t.log"
    status=0
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 \
        -dict="$root/fuzz/eddy.dict" -print_final_stats=1 \
        -artifact_prefix="$build/fuzz-artifacts/$t-" \
        "$work" "$root/fuzz/corpus/$t" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $t FAILED after ${execs:-?} executions (exit $status); see $log" >&2
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -5 >&2 || true
        failed+=("$t")
    else
        echo "fuzz: $t: ${execs:-?} executions in ${seconds}s, $cov, corpus $(ls "$work" | wc -l) inputs"
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: failed: ${failed[*]}" >&2
    exit 1
fi
