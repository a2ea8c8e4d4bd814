#!/usr/bin/env bash
# The long crash-injection run (not part of scripts/test): 1,000 deliveries
# into one Maildir, each killed with SIGKILL at a named step or after a
# random delay, then the Maildir is checked (see tests/crash.rs).
# Usage: tests/crash/crash.sh [RUNS] [SEED]
# Also checks that the release binary does not contain the test hook.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-1000}
export DELIVER_CRASH_RUNS=$runs
[ -n "${2:-}" ] && export DELIVER_CRASH_SEED=$2
cargo test --locked --test crash -- --nocapture --test-threads=1
cargo build --locked --release -q
if grep -q DELIVER_TEST_PAUSE_AT target/release/deliver; then
    echo "crash.sh: the release binary contains the test hook" >&2
    exit 1
fi
echo "crash.sh: release binary has no test hook"
