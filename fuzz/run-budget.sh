#!/usr/bin/env bash
# Runs fuzz targets one after another for a time budget each, and prints
# the executions libFuzzer reports. Usage (from fuzz/):
#   ./run-budget.sh SECONDS TARGET...
# The targets must be built first:
#   RUSTC_BOOTSTRAP=1 cargo fuzz build -s none
# (the same as: RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET corpus/TARGET seeds/TARGET -- -max_total_time=SECONDS)
set -u
cd "$(dirname "$0")"
secs=$1; shift
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs
for t in "$@"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    start=$(date +%s)
    "$bin/$t" "corpus/$t" "seeds/$t" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" > "logs/$t.log" 2>&1
    rc=$?
    end=$(date +%s)
    n=$(grep -o 'stat::number_of_executed_units: [0-9]*' "logs/$t.log" | awk '{print $2}')
    echo "$t rc=$rc executions=${n:-?} seconds=$((end - start))"
done
