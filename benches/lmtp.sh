#!/usr/bin/env bash
# W1 over LMTP: `deliver lmtp` (release build, W1's rules) at 1 and 4
# sessions, driven by benches/lmtp_driver.py, against exec-mode deliver and
# safecat (one process per message, spawnloop), dovecot-lmtp (W1's Sieve
# script, folders autocreated) when it starts, and the durable floor
# ($SHARED_BENCH/durable_floor.py) at 1 and 4 writers, all in one run on
# one file system. Only ratios within one run mean anything.
#
# usage: benches/lmtp.sh [--count N] [--deliver BIN] [--work DIR]
#
# fsync policy of every program: deliver (both modes) fsyncs the file and
# new/ before its 250 / exit 0; safecat fsyncs the file (not the
# directory); dovecot-lmtp fsyncs the file and the directory
# (mail_fsync = always in the config below); the floor fsyncs both.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

count=1000 deliver_bin="" work=/var/tmp/deliver-lmtp-bench
while [ $# -gt 0 ]; do
    case $1 in
    --count) count=$2; shift ;;
    --deliver) deliver_bin=$2; shift ;;
    --work) work=$2; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) die "unknown option $1" ;;
    esac
    shift
done

bench_install
bench_deliver_bin "$deliver_bin"
bench_workdir "$work"
bench_user_setup
corpus=$work/corpus
bench_corpus "$corpus" "$count" 1
driver=$BENCH_REPO/benches/lmtp_driver.py
results=()

# deliver lmtp: W1's rules plus an [lmtp] template into one vmail tree.
svc_home=$work/home/lmtp
rm -rf "$svc_home"; mkdir -p "$svc_home/vmail"
{ cat "$BENCH_REPO/benches/w1.toml"; printf '\n[lmtp]\nmailbox = "%s/vmail/%%d/%%n/Maildir"\n' "$svc_home"; } >"$svc_home/rules.toml"
touch -d '-1 minute' "$svc_home/rules.toml"
[ "$(id -u)" -eq 0 ] && chown -R "$BENCH_USER:" "$svc_home"
sock=$svc_home/lmtp.sock
for k in 1 4; do
    rm -rf "$svc_home/vmail/example.test"
    as_user "$svc_home" "$DELIVER_BIN" lmtp --listen "unix:$sock" --rules "$svc_home/rules.toml" &
    pid=$!
    trap 'kill -TERM "$pid" 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    # as_user may be a wrapper: the service is its child.
    spid=$(pgrep -n -u "$BENCH_USER" -x deliver)
    # Every reply must be 2xx (the driver fails otherwise); W1's rules
    # discard some messages, so the files are fewer than the messages.
    python3 "$driver" "$sock" "$corpus/list.txt" --sessions 1 --rcpt warm@example.test >/dev/null
    sync
    results+=("deliver-lmtp $(python3 "$driver" "$sock" "$corpus/list.txt" --sessions "$k" --rcpt alice@example.test --pid "$spid")")
    kill -TERM "$spid"; wait "$pid" || true
    trap - EXIT
done

# Exec mode, one process per message (W1's peers set-up).
for p in deliver safecat; do
    setup_home "$p" "$work/home/$p" "$BENCH_REPO/benches/w1.toml"
    prog_cmd "$p" "$work/home/$p"
    sync
    timed_spawnloop "$work/home/$p" "$corpus/list.txt" "${PROG_CMD[@]}"
    results+=("$p-exec K=1 N=$count: $(awk -v ms="$RUN_MS" -v n="$count" 'BEGIN {printf "%.0f msgs/s", n / ms * 1000}'), CPU $(awk -v c="$RUN_CPU" -v n="$count" 'BEGIN {printf "%.3f", c / n}') ms/msg")
done

# dovecot-lmtp is not set up by this script yet (see BENCHMARKS.md).

for k in 1 4; do
    results+=("$(python3 "$SHARED_BENCH/durable_floor.py" "$work/floor" --sessions "$k" --count "$count")")
done
printf '%s\n' "${results[@]}"
