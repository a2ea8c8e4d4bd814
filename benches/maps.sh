#!/usr/bin/env bash
# The cost of a 1,000,000-entry texthash: sender map per delivery, against an
# empty map, in one run: W1's rules plus [access] sender = ["texthash:senders"].
#
# usage: benches/maps.sh [--entries E] [--count N] [--rounds R] [--cold C] [--deliver BIN] [--work DIR] [--keep]
#
#   --entries E   entries in the big map (default 1000000)
#   --count N     messages per run, from gen_corpus.py (default 300)
#   --rounds R    timed runs of each map, alternating (default 5)
#   --cold C      cold deliveries: the index cache removed before each (default 5)
#
# Warm case: deliver keeps an index of a large text map in ~/.cache/deliver
# (the home of the benchmark user); it is built before the timed runs, and
# every timed delivery reads it. Cold case, reported separately: one delivery
# with the cache removed, which parses the source and writes the index.
# Also: Ir (instructions, valgrind --tool=callgrind) of one warm delivery of
# each map, which is repeatable where wall times are not.
# No corpus sender is in the map (every lookup misses and tries every key);
# a --test with the one entry that matches proves the map is consulted.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

entries=1000000 count=300 rounds=5 cold=5 deliver_bin="" work=/var/tmp/deliver-maps keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --entries) entries=$2; shift ;;
    --count) count=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --cold) cold=$2; shift ;;
    --deliver) deliver_bin=$2; shift ;;
    --work) work=$2; shift ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

bench_install valgrind
bench_user_setup
bench_deliver_bin "$deliver_bin"
bench_workdir "$work"
[ "$keep" -eq 1 ] || trap 'rm -rf "$work/home"' EXIT
corpus=$work/corpus
bench_corpus "$corpus" "$count" 1
# deliver takes its home from HOME (as_user sets it to the program's home).
cache=$work/home/map-big/.cache/deliver

for name in map-empty map-big; do
    home=$work/home/$name
    setup_home deliver "$home" "$BENCH_REPO/benches/w1.toml"
    printf '\n[access]\nsender = ["texthash:senders"]\n' >>"$home/rules.toml"
done
: >"$work/home/map-empty/senders"
python3 - "$work/home/map-big/senders" "$entries" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("hit@bench.example REJECT listed\n")
    for i in range(n - 1):
        f.write(f"sender{i}@domain{i % 5000}.example OK\n")
PY
# An index is only written for a source older than two seconds.
touch -d '-1 minute' "$work"/home/map-*/senders
[ "$(id -u)" -eq 0 ] && chown -R "$BENCH_USER:" "$work/home"
for name in map-empty map-big; do
    deliver_warm "$work/home/$name"
done
src_size=$(stat -c %s "$work/home/map-big/senders")

# The map is consulted: its one matching entry rejects.
t=$(as_user "$work/home/map-big" "$DELIVER_BIN" --test --format json -f hit@bench.example \
    --rules "$work/home/map-big/rules.toml" --user-rules "$NO_USER_RULES" <"$corpus/msg-00000.eml")
echo "$t" | grep -q '"action": *"reject"' || die "the big map was not consulted: $t"

first=$(inbox_message "$corpus")
# Cold: no index; the delivery parses the source and writes the index.
cold_ms=()
for i in $(seq "$cold"); do
    rm -rf "$cache"
    fresh_maildir "$work/home/map-big/Maildir"
    sync
    t0=$(now_ns)
    as_user "$work/home/map-big" "$DELIVER_BIN" --rules "$work/home/map-big/rules.toml" --user-rules "$NO_USER_RULES" \
        --maildir "$work/home/map-big/Maildir" <"$first" || die "cold delivery failed"
    t1=$(now_ns)
    cold_ms+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e6}')")
done
echo "cold deliveries (ms): ${cold_ms[*]}"
index_size=$(du -cb "$cache" | awk 'END {print $1}')

declare -A TIMES CPU
deliver_ab "$corpus/list.txt" "$rounds" map-empty map-big
python3 "$BENCH_REPO/benches/peers_check.py" "$corpus" \
    empty="$work/home/map-empty/Maildir" big="$work/home/map-big/Maildir" >"$work/check.txt" ||
    { cat "$work/check.txt"; die "the two maps routed differently"; }

ir_empty=$(callgrind_ir "$work/home/map-empty" "$first")
ir_big=$(callgrind_ir "$work/home/map-big" "$first")

# shellcheck disable=SC2086
m_empty=$(median ${TIMES[map-empty]})
# shellcheck disable=SC2086
m_big=$(median ${TIMES[map-big]})
echo
echo "texthash: sender map, $entries entries (source $src_size bytes, index $index_size bytes), $count messages, $rounds rounds"
echo
echo "| map | wall median (s) | per delivery, wall (ms) | per delivery, CPU (ms) | wall runs (s) | Ir per delivery (callgrind) |"
echo "|---|---:|---:|---:|---|---:|"
for name in map-empty map-big; do
    # shellcheck disable=SC2086
    m=$(median ${TIMES[$name]})
    ir=$ir_empty
    [ "$name" = map-big ] && ir=$ir_big
    # shellcheck disable=SC2086
    runs=$(printf '%s\n' ${TIMES[$name]} | awk '{printf "%s%.2f", (NR > 1 ? " " : ""), $1 / 1000}')
    # shellcheck disable=SC2086
    cpu=$(median ${CPU[$name]})
    awk -v p="$name" -v m="$m" -v c="$cpu" -v n="$count" -v runs="$runs" -v ir="$ir" 'BEGIN {
        printf "| %s | %.2f | %.3f | %.3f | %s | %.0f |\n", p, m / 1000, m / n, c / n, runs, ir }'
done
# shellcheck disable=SC2086
c_empty=$(median ${CPU[map-empty]})
# shellcheck disable=SC2086
c_big=$(median ${CPU[map-big]})
awk -v a="$m_empty" -v b="$m_big" -v ca="$c_empty" -v cb="$c_big" -v n="$count" -v ia="$ir_empty" -v ib="$ir_big" 'BEGIN {
    printf "\nextra per delivery, warm: %.3f ms wall, %.3f ms CPU (differences of the medians), %+.0f Ir (%+.2f%%)\n",
        (b - a) / n, (cb - ca) / n, ib - ia, 100 * (ib - ia) / ia }'
echo "cold first delivery (index built): median $(median "${cold_ms[@]}") ms of: ${cold_ms[*]}"
