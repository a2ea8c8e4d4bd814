#!/usr/bin/env bash
# Workload W1: deliver against safecat, procmail, maildrop and dovecot-lda
# (Pigeonhole Sieve), over the same corpus, in one run.
#
# usage: benches/peers.sh [--count N] [--rounds R] [--seed S] [--programs "A B ..."]
#                         [--deliver BIN] [--work DIR] [--keep] [--smoke]
#
#   --count N       messages in the corpus (default 1000)
#   --rounds R      timed rounds; each round runs every program once, in an
#                   order rotated by one per round (default 5)
#   --seed S        corpus seed (default 1)
#   --programs L    which programs (default: safecat deliver procmail maildrop dovecot)
#   --deliver BIN   the deliver binary (default: cargo build --release)
#   --work DIR      work directory (default /var/tmp/deliver-peers); the homes
#                   and the corpus are all under it, on one file system
#   --keep          keep the work directory
#   --smoke         40 messages, 1 round, no warm-up: proves the set-up and the
#                   routing check; exits non-zero on any failure or disagreement
#
# Installs the peers when missing (apt-get, as root). As root every program
# runs as the system user deliver-bench (created when missing); otherwise as
# the caller. spawnloop runs each program once per message, the message on
# stdin. Before each timed run the program's Maildir is emptied and `sync`
# runs. After each run, benches/peers_check.py checks that every message was
# delivered once (safecat: all in INBOX) and that the programs with rules
# agree per message. Exit status 1 on any failed run or disagreement.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

count=1000 rounds=5 seed=1 programs=$ALL_PROGRAMS deliver_bin="" keep=0 smoke=0
work=/var/tmp/deliver-peers
while [ $# -gt 0 ]; do
    case $1 in
    --count) count=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --seed) seed=$2; shift ;;
    --programs) programs=$2; shift ;;
    --deliver) deliver_bin=$2; shift ;;
    --work) work=$2; shift ;;
    --keep) keep=1 ;;
    --smoke) smoke=1 count=40 rounds=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
[ "$rounds" -ge 1 ] && [ "$count" -ge 1 ] || die "--count and --rounds must be at least 1"
read -r -a progs <<<"$programs"

bench_install
bench_user_setup
bench_deliver_bin "$deliver_bin"
bench_workdir "$work"
[ "$keep" -eq 1 ] || trap 'rm -rf "$work/home"' EXIT
corpus=$work/corpus
bench_corpus "$corpus" "$count" "$seed"

for p in "${progs[@]}"; do
    setup_home "$p" "$work/home/$p" "$BENCH_REPO/benches/w1.toml"
done

# run_one PROG LIST: one pass of spawnloop into an empty Maildir; sets
# RUN_MS, RUN_CPU and RUN_OUT (timed_spawnloop in lib.sh).
run_one() {
    local p=$1 list=$2 home=$work/home/$1
    fresh_maildir "$home/Maildir"
    sync
    prog_cmd "$p" "$home"
    timed_spawnloop "$home" "$list" "${PROG_CMD[@]}"
}

failed=0
if [ "$smoke" -eq 0 ]; then
    # Warm-up (untimed): the page cache, the dynamic loader's caches, and the
    # binaries themselves.
    head -n 20 "$corpus/list.txt" >"$work/warm.txt"
    for p in "${progs[@]}"; do run_one "$p" "$work/warm.txt"; done
fi

declare -A times cpus
echo "W1: $count messages, $rounds round(s), programs: ${progs[*]}"
for r in $(seq "$rounds"); do
    n=${#progs[@]} order=()
    for i in $(seq 0 $((n - 1))); do order+=("${progs[$(((i + r - 1) % n))]}"); done
    for p in "${order[@]}"; do
        run_one "$p" "$corpus/list.txt"
        times[$p]="${times[$p]:-} $RUN_MS"
        cpus[$p]="${cpus[$p]:-} $RUN_CPU"
        echo "round $r $p: ${RUN_MS} ms, ${RUN_CPU} ms CPU; $RUN_OUT"
        case $RUN_OUT in
        "runs=$count failures=0") ;;
        *) echo "  FAIL $p: expected runs=$count failures=0"; failed=1 ;;
        esac
    done
    # The routing of this round (every Maildir holds this round's delivery).
    args=()
    for p in "${progs[@]}"; do args+=("$p=$work/home/$p/Maildir"); done
    python3 "$BENCH_REPO/benches/peers_check.py" "$corpus" "${args[@]}" >"$work/check.txt" || failed=1
    if [ "$r" -eq 1 ] || [ "$failed" -ne 0 ]; then sed 's/^/  /' "$work/check.txt"; fi
done

base='' cbase=''
# shellcheck disable=SC2086
for p in "${progs[@]}"; do [ "$p" = safecat ] && base=$(median ${times[safecat]}) && cbase=$(median ${cpus[safecat]}); done
echo
echo "| program | wall median (s) | per message (ms) | ratio to safecat | CPU per message (ms) | CPU ratio to safecat | runs (s) |"
echo "|---|---:|---:|---:|---:|---:|---|"
for p in "${progs[@]}"; do
    # shellcheck disable=SC2086
    m=$(median ${times[$p]})
    # shellcheck disable=SC2086
    c=$(median ${cpus[$p]})
    # shellcheck disable=SC2086
    runs=$(printf '%s\n' ${times[$p]} | awk '{printf "%s%.2f", (NR > 1 ? " " : ""), $1 / 1000}')
    awk -v p="$p" -v m="$m" -v b="${base:-0}" -v c="$c" -v cb="${cbase:-0}" -v n="$count" -v runs="$runs" 'BEGIN {
        printf "| %s | %.2f | %.2f | %s | %.2f | %s | %s |\n", p, m / 1000, m / n,
            (b > 0 ? sprintf("%.2f", m / b) : "-"), c / n,
            (cb > 0 ? sprintf("%.2f", c / cb) : "-"), runs }'
done
echo
[ "$smoke" -eq 1 ] && echo "(--smoke: one round of 40 messages; the times above are not a measurement)"
if [ "$failed" -ne 0 ]; then
    echo "peers.sh: FAILED (see FAIL/DISAGREE lines above)"
    exit 1
fi
echo "peers.sh: every program delivered every message; the programs with rules agree"
