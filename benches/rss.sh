#!/usr/bin/env bash
# Peak RSS and wall time for one large message with header-only rules (W1's
# rules, which read headers only), deliver against every peer, in one run,
# measured with /usr/bin/time (ru_maxrss of the program); the wall time is
# taken around it (it includes runuser, env and time: about 2 ms).
#
# usage: benches/rss.sh [--mib M] [--runs N] [--programs "A B ..."] [--deliver BIN] [--work DIR] [--keep]
#
#   --mib M        size of the message (default 100): gen_corpus.py --big-mib M
#   --runs N       runs per program, alternating A B A B (default 5)
#   --programs L   default: safecat deliver deliver-default procmail maildrop dovecot
#                  (deliver-default: deliver with its embedded default rules)
#
# Prints, per program: the median peak RSS (MiB), the median wall time (s),
# and both as a ratio to safecat; and the folder each program filed the
# message into (they must agree). Exit 1 when a run fails.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mib=100 runs=5 programs="safecat deliver deliver-default procmail maildrop dovecot"
deliver_bin="" work=/var/tmp/deliver-rss keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --mib) mib=$2; shift ;;
    --runs) runs=$2; shift ;;
    --programs) programs=$2; shift ;;
    --deliver) deliver_bin=$2; shift ;;
    --work) work=$2; shift ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
read -r -a progs <<<"$programs"

bench_install
bench_user_setup
bench_deliver_bin "$deliver_bin"
bench_workdir "$work"
[ "$keep" -eq 1 ] || trap 'rm -rf "$work/home"' EXIT
corpus=$work/corpus
bench_corpus "$corpus" 1 7 "$mib"
big=$corpus/big.eml
[ -e /etc/deliver/rules.toml ] &&
    note "warning: /etc/deliver/rules.toml exists: deliver-default uses it, not the embedded rules"

for p in "${progs[@]}"; do
    case $p in
    deliver-default) setup_home deliver "$work/home/$p" "$BENCH_REPO/benches/w1.toml" ;;
    *) setup_home "$p" "$work/home/$p" "$BENCH_REPO/benches/w1.toml" ;;
    esac
done

declare -A rss wall where
failed=0
for r in $(seq "$runs"); do
    n=${#progs[@]}
    for i in $(seq 0 $((n - 1))); do
        p=${progs[$(((i + r - 1) % n))]}
        home=$work/home/$p
        fresh_maildir "$home/Maildir"
        sync
        if [ "$p" = deliver-default ]; then
            PROG_CMD=("$DELIVER_BIN" --user-rules "$NO_USER_RULES" --maildir "$home/Maildir")
        else
            prog_cmd "$p" "$home"
        fi
        rc=0
        t0=$(now_ns)
        as_user "$home" /usr/bin/time -o "$home/time.out" -f "%M %e %x" "${PROG_CMD[@]}" \
            <"$big" >/dev/null 2>"$home/stderr" || rc=$?
        t1=$(now_ns)
        read -r kib _ code <"$home/time.out" || true
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
        if [ "$rc" -ne 0 ] || [ "${code:-1}" != 0 ]; then
            echo "FAIL $p: exit ${code:-?} $(head -c 300 "$home/stderr")"
            failed=1
            continue
        fi
        rss[$p]="${rss[$p]:-} $kib"
        wall[$p]="${wall[$p]:-} $secs"
        got=$(cd "$home/Maildir" && find . -path '*/new/*' -type f -printf '%h\n' | sed 's|/new$||; s|^\.$|INBOX|; s|^\./\.||')
        where[$p]=${got:-discard}
        echo "run $r $p: ${kib} KiB, ${secs} s, ${where[$p]}"
    done
done
[ "$failed" -eq 0 ] || { echo "rss.sh: FAILED"; exit 1; }

size=$(stat -c %s "$big")
base_rss=$(median ${rss[safecat]:-0}) base_wall=$(median ${wall[safecat]:-0})
echo
echo "$mib MiB message ($size bytes), header-only rules (W1), $runs runs each"
echo
echo "| program | peak RSS median (MiB) | RSS / safecat | wall median (s) | wall / safecat | folder | RSS runs (KiB) |"
echo "|---|---:|---:|---:|---:|---|---|"
for p in "${progs[@]}"; do
    # shellcheck disable=SC2086
    m=$(median ${rss[$p]}) w=$(median ${wall[$p]})
    awk -v p="$p" -v m="$m" -v w="$w" -v bm="$base_rss" -v bw="$base_wall" -v f="${where[$p]}" \
        -v runs="${rss[$p]# }" 'BEGIN {
        printf "| %s | %.2f | %s | %.3f | %s | %s | %s |\n", p, m / 1024,
            (bm > 0 ? sprintf("%.2f", m / bm) : "-"), w, (bw > 0 ? sprintf("%.2f", w / bw) : "-"), f, runs }'
done
folders=$(for p in "${progs[@]}"; do [ "$p" = safecat ] || echo "${where[$p]}"; done | sort -u | wc -l)
[ "$folders" -le 1 ] || { echo "rss.sh: the programs filed the message into different folders"; exit 1; }
