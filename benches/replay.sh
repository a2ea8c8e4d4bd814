#!/usr/bin/env bash
# `deliver replay` over a Maildir folder and an mbox of W1 messages.
#
# usage: benches/replay.sh [--count N] [--rounds R] [--deliver BIN] [--work DIR]
#
#   --count N     messages (default 10000), from gen_corpus.py
#   --rounds R    timed runs of each source (default 5)
#
# The corpus becomes a Maildir folder (each message without its From_ line
# in cur/, as a delivery files it) and an mboxrd file (the From_ lines kept,
# body lines `From ` quoted), both replayed with benches/w1.toml and no user
# rules. Prints wall, user and system time and peak RSS of each run, and the
# median wall time of each source. The files are read from the page cache
# (each source is replayed once before the timed runs).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

count=10000 rounds=5 deliver_bin="" work=/var/tmp/deliver-replay
while [ $# -gt 0 ]; do
    case $1 in
    --count) count=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --deliver) deliver_bin=$2; shift ;;
    --work) work=$2; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

bench_deliver_bin "$deliver_bin"
mkdir -p "$work"
bench_corpus "$work/corpus" "$count" 1
if [ "$(cat "$work/.sources" 2>/dev/null)" != "$count" ]; then
    rm -rf "$work/Maildir" "$work/box.mbox"
    python3 - "$work" <<'PY'
import os, re, sys
work = sys.argv[1]
src = os.path.join(work, "corpus")
cur = os.path.join(work, "Maildir", "cur")
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(work, "Maildir", d))
names = sorted(n for n in os.listdir(src) if n.endswith(".eml") and n != "big.eml")
with open(os.path.join(work, "box.mbox"), "wb") as box:
    for i, n in enumerate(names):
        from_line, rest = open(os.path.join(src, n), "rb").read().split(b"\n", 1)
        with open(os.path.join(cur, f"{1796000000 + i}.M{i}P1.bench:2,S"), "wb") as f:
            f.write(rest)
        rest = re.sub(rb"(?m)^(>*From )", rb">\1", rest)
        box.write(from_line + b"\n" + rest + (b"" if rest.endswith(b"\n") else b"\n") + b"\n")
PY
    echo "$count" >"$work/.sources"
fi
cd "$work"
for src in Maildir box.mbox; do
    "$DELIVER_BIN" replay --rules "$BENCH_REPO/benches/w1.toml" --user-rules "$NO_USER_RULES" "$src" >"$work/out.txt"
    sed -n '/^[0-9]* messages: /,/^$/p' "$work/out.txt"
    walls=()
    for _ in $(seq "$rounds"); do
        t=$( { /usr/bin/time -f "%e %U %S %M" "$DELIVER_BIN" replay --rules "$BENCH_REPO/benches/w1.toml" \
            --user-rules "$NO_USER_RULES" "$src" >/dev/null; } 2>&1 | tail -n 1)
        echo "$src: wall ${t%% *} s (user, sys, KiB: ${t#* })"
        walls+=("${t%% *}")
    done
    printf '%s\n' "${walls[@]}" | sort -n | awk -v s="$src" '{a[NR]=$1} END {print s ": median wall " a[int((NR+1)/2)] " s"}'
done
