#!/usr/bin/env bash
# Peak RSS and wall time of deliver for one large message with header-only
# rules, measured with /usr/bin/time -v. Prints the median of N runs.
#
# usage: benches/rss.sh [MIB] [RUNS]      (default 100 MiB, 5 runs)
# Needs: python3, /usr/bin/time (apt-get install time). Run as root or as a
# normal user; as root the deliveries run as `nobody`.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-100}
runs=${2:-5}
cargo build --release -q
bin=$PWD/target/release/deliver
work=$(mktemp -d /tmp/deliver-rss.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

# The message: a From_ line and a few headers, then MIB MiB of body.
python3 - "$work/big.eml" "$mib" <<'PY'
import sys
path, mib = sys.argv[1], int(sys.argv[2])
line = b"All work and no play makes a large message for a delivery agent.\n"
with open(path, "wb") as f:
    f.write(b"From big@example.org  Sat Nov 21 10:00:00 2026\n"
            b"Subject: a large message\nFrom: big@example.org\nX-Spam-Score: 1.0\n\n")
    n = mib * 1024 * 1024 // len(line)
    for _ in range(n):
        f.write(line)
PY
cat > "$work/rules.toml" <<'TOML'
[spam]
junk_threshold = 5.0
[[rule]]
header = "Subject"
match = "(?i)viagra"
score = 3.0
[[rule]]
header = "List-Id"
match = "rust-users"
folder = "Lists.rust"
TOML
as_user() {
    if [ "$(id -u)" -eq 0 ]; then chown -R nobody "$work"; su -s /bin/sh nobody -c "$*"; else sh -c "$*"; fi
}
rss=(); wall=()
for i in $(seq "$runs"); do
    rm -rf "$work/Maildir"
    out=$(as_user "/usr/bin/time -v $bin --rules $work/rules.toml --maildir $work/Maildir -f big@example.org < $work/big.eml" 2>&1)
    rss+=("$(echo "$out" | awk -F': ' '/Maximum resident/ {print $2}')")
    wall+=("$(echo "$out" | awk '/Elapsed \(wall/ {print $NF}')")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
size=$(stat -c %s "$work/big.eml")
printf 'deliver, %s MiB message (%s bytes), header-only rules, %s runs\n' "$mib" "$size" "$runs"
printf 'peak RSS (KiB): %s   median %s KiB = %.2f MiB\n' "${rss[*]}" "$(median "${rss[@]}")" "$(echo "$(median "${rss[@]}") / 1024" | bc -l)"
printf 'wall (m:ss):    %s\n' "${wall[*]}"
