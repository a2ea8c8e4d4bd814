#!/usr/bin/env bash
# Where deliver's time per W1 message goes, against safecat: the same corpus
# through variants that each leave out one part, alternating, in one run.
#
# usage: benches/breakdown.sh [--count N] [--rounds R] [--deliver BIN] [--extra NAME=BIN] [--work DIR] [--keep]
#
#   true          /bin/true: spawning a process and nothing else
#   safecat       write the message into tmp/, fsync it, link it into new/
#   deliver-test  deliver --test with W1's rules: start, load and compile the
#                 rules, read the message, decide; writes nothing
#   deliver-empty deliver with an empty rules file: start, read, write, the
#                 two fsyncs (the file, then new/), no rule
#   deliver       deliver with W1's rules: everything
#   --extra NAME=BIN adds BIN run as "deliver" with W1's rules (another build,
#                 for example a non-PIE one), named NAME
#
# Per variant: median wall per message (ms), median CPU per message (user +
# system time of spawnloop and the deliveries, ms); and for one message (the first
# that W1 files into the Inbox):
# instructions (callgrind Ir), minor page faults (/usr/bin/time %R), and the
# system calls made (strace -c -f), which are repeatable.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

count=300 rounds=5 deliver_bin="" work=/var/tmp/deliver-breakdown keep=0 extra=()
while [ $# -gt 0 ]; do
    case $1 in
    --count) count=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --deliver) deliver_bin=$2; shift ;;
    --extra) extra+=("$2"); shift ;;
    --work) work=$2; shift ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

bench_install valgrind strace
bench_user_setup
bench_deliver_bin "$deliver_bin"
bench_workdir "$work"
[ "$keep" -eq 1 ] || trap 'rm -rf "$work/home"' EXIT
corpus=$work/corpus
bench_corpus "$corpus" "$count" 1
w1=$BENCH_REPO/benches/w1.toml

names=(true safecat deliver-test deliver-empty deliver)
declare -A bin
for e in "${extra[@]}"; do
    n=${e%%=*}
    cp "${e#*=}" "$work/$n.bin"
    chmod 755 "$work/$n.bin"
    bin[$n]=$work/$n.bin
    names+=("$n")
done
for n in "${names[@]}"; do
    setup_home deliver "$work/home/$n" "$w1"
done
: >"$work/home/deliver-empty/rules.toml"

# cmd_of NAME: the command line (array CMD).
cmd_of() {
    local n=$1 home=$work/home/$1
    case $n in
    true) CMD=(/bin/true) ;;
    safecat) CMD=(safecat "$home/Maildir/tmp" "$home/Maildir/new") ;;
    deliver-test) CMD=("$DELIVER_BIN" --test --rules "$home/rules.toml" --user-rules "$NO_USER_RULES") ;;
    deliver | deliver-empty) CMD=("$DELIVER_BIN" --rules "$home/rules.toml" --user-rules "$NO_USER_RULES" --maildir "$home/Maildir") ;;
    *) CMD=("${bin[$n]}" --rules "$home/rules.toml" --user-rules "$NO_USER_RULES" --maildir "$home/Maildir") ;;
    esac
}

declare -A times cpus
for r in $(seq "$rounds"); do
    k=${#names[@]}
    for i in $(seq 0 $((k - 1))); do
        n=${names[$(((i + r - 1) % k))]}
        fresh_maildir "$work/home/$n/Maildir"
        sync
        cmd_of "$n"
        timed_spawnloop "$work/home/$n" "$corpus/list.txt" "${CMD[@]}"
        [ "$RUN_OUT" = "runs=$count failures=0" ] || die "$n: $RUN_OUT"
        times[$n]="${times[$n]:-} $RUN_MS"
        cpus[$n]="${cpus[$n]:-} $RUN_CPU"
        echo "round $r $n: $RUN_MS ms, $RUN_CPU ms CPU"
    done
done

msg=$(inbox_message "$corpus")
echo
echo "$count messages, $rounds rounds; Ir, faults and syscalls for one delivery of $(basename "$msg") (to the Inbox)"
echo
echo "| variant | per message (ms), median | minus /bin/true (ms) | CPU per message (ms), median | Ir (callgrind) | minor faults | syscalls | fsync |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
# shellcheck disable=SC2086
floor=$(median ${times[true]})
for n in "${names[@]}"; do
    home=$work/home/$n
    cmd_of "$n"
    fresh_maildir "$home/Maildir"
    as_user "$home" valgrind --tool=callgrind --callgrind-out-file="$home/callgrind.out" "${CMD[@]}" \
        <"$msg" >/dev/null 2>"$home/callgrind.log" || die "$n under callgrind: $(tail -3 "$home/callgrind.log")"
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$home/callgrind.out")
    fresh_maildir "$home/Maildir"
    as_user "$home" /usr/bin/time -o "$home/time.out" -f "%R" "${CMD[@]}" <"$msg" >/dev/null
    faults=$(cat "$home/time.out")
    fresh_maildir "$home/Maildir"
    as_user "$home" strace -c -f -o "$home/strace.out" "${CMD[@]}" <"$msg" >/dev/null
    calls=$(awk '$NF == "total" {print $4}' "$home/strace.out")
    fsyncs=$(awk '$NF == "fsync" || $NF == "fdatasync" {s += $4} END {print s + 0}' "$home/strace.out")
    # shellcheck disable=SC2086
    m=$(median ${times[$n]})
    # shellcheck disable=SC2086
    cm=$(median ${cpus[$n]})
    awk -v n="$n" -v m="$m" -v f="$floor" -v c="$count" -v cm="$cm" -v ir="$ir" -v pf="$faults" -v sc="$calls" -v fs="$fsyncs" 'BEGIN {
        printf "| %s | %.2f | %.2f | %.2f | %d | %s | %s | %s |\n", n, m / c, (m - f) / c, cm / c, ir, pf, sc, fs }'
done
