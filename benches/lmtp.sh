#!/usr/bin/env bash
# W1 over LMTP: `deliver lmtp` (release build, W1's rules) against
# dovecot-lmtp (W1's Sieve script, folders autocreated) at 1 and 4
# sessions, both driven by benches/lmtp_driver.rs; exec-mode deliver and
# safecat (one process per message, spawnloop); and the durable floor
# ($SHARED_BENCH/durable_floor.py) at 1 and 4 writers. All in one run on one
# file system, ROUNDS times in turn; the summary gives medians (and ranges)
# and the ratios the issue's targets name. Only ratios within one run mean
# anything. At the end, benches/peers_check.py checks that deliver lmtp,
# dovecot-lmtp, exec-mode deliver and safecat delivered every message once
# and routed them alike.
#
# usage: benches/lmtp.sh [--count N] [--rounds R] [--deliver BIN] [--work DIR]
#
# As root (the programs run as the benchmark user). Needs the Debian
# packages dovecot-core, dovecot-lmtpd and dovecot-sieve (installed when
# missing: `apt-get install dovecot-core dovecot-lmtpd dovecot-sieve`).
# dovecot runs as a throw-away instance: its own configuration, sockets and
# logs in WORK/dovecot, no authentication (a static userdb: every recipient
# is the benchmark user, home WORK/dovecot/home/LOCALPART), stopped at the
# end.
#
# CPU per message is the service's own user + system time (deliver lmtp:
# the process; dovecot: the master and every process under it, those that
# ended included), from /proc before and after the timed run. For the exec
# modes it is spawnloop's and every delivery process's.
#
# fsync policy of every program, before its 250 / exit 0 (checked with
# strace): deliver (both modes) fsyncs the file, links it into new/ and
# fsyncs new/; dovecot-lmtp (mail_fsync = optimized, its default) fsyncs
# the file, renames it into new/, fdatasyncs new/ and dovecot-uidlist;
# safecat fsyncs the file only; the floor fsyncs the file and new/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

count=1000 rounds=1 deliver_bin="" work=/var/tmp/deliver-lmtp-bench
while [ $# -gt 0 ]; do
    case $1 in
    --count) count=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --deliver) deliver_bin=$2; shift ;;
    --work) work=$2; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//; /^set -e/d'; exit 0 ;;
    *) die "unknown option $1" ;;
    esac
    shift
done

[ "$(id -u)" -eq 0 ] || die "run as root: dovecot's master starts as root"
[ -x /usr/lib/dovecot/lmtp ] || bench_install dovecot-lmtpd
bench_install
bench_deliver_bin "$deliver_bin"
bench_workdir "$work"
bench_user_setup
corpus=$work/corpus
bench_corpus "$corpus" "$count" 1
# The client: in Rust, so that it takes little of the CPU the services share.
(cd "$BENCH_REPO" && cargo build --release -q --example lmtp_driver) || die "cannot build the LMTP driver"
driver=$BENCH_REPO/target/release/examples/lmtp_driver
# The warm-up before each timed run: processes started, rules loaded.
head -n 50 "$corpus/list.txt" >"$work/warm.txt"
declare -A RATE=() CPUS=() SYS=()
svc_pid="" dc_conf=""

# The Maildirs of a finished run are moved aside, and removed only at the
# end: on ext4 without a journal (these machines), creating a file skips
# every inode of its group freed in the last 1 to 6 minutes and reads the
# inode table to tell (fs/ext4/ialloc.c, recently_deleted), so removing
# thousands of files between runs makes the next run's file creation cost
# more CPU, unevenly. (The removal at the end weighs on whatever runs on
# the file system in the next minutes, a next run of this script included.)
trash=$work/trash
retire() {
    local d
    mkdir -p "$trash"
    for d in "$@"; do
        [ -e "$d" ] && mv "$d" "$(mktemp -u "$trash/XXXXXX")"
    done
    return 0
}

stop_all() {
    [ -n "$svc_pid" ] && kill -TERM "$svc_pid" 2>/dev/null
    [ -n "$dc_conf" ] && doveadm -c "$dc_conf" stop 2>/dev/null
    rm -rf "$trash"
    return 0
}
trap stop_all EXIT

# record NAME LINE: keeps msgs/s and CPU ms/msg from a driver, spawnloop or
# floor line.
record() {
    local name=$1 line=$2 rate cpu sys
    rate=$(sed -n 's/.*: \([0-9.]*\) msgs\/s.*/\1/p' <<<"$line")
    cpu=$(sed -n 's/.*CPU \([0-9.]*\) ms\/msg.*/\1/p' <<<"$line")
    [ -n "$rate" ] || die "$name: no rate in: $line"
    RATE[$name]="${RATE[$name]:-} $rate"
    [ -n "$cpu" ] && CPUS[$name]="${CPUS[$name]:-} $cpu"
    sys=$(sed -n 's/.*system \([0-9.]*\).*/\1/p' <<<"$line")
    [ -n "$sys" ] && SYS[$name]="${SYS[$name]:-} $sys"
    echo "round $r $name: $line"
}

# deliver lmtp: W1's rules plus an [lmtp] template into one vmail tree.
svc_home=$work/home/lmtp
retire "$svc_home"; mkdir -p "$svc_home/vmail"
{ cat "$BENCH_REPO/benches/w1.toml"; printf '\n[lmtp]\nmailbox = "%s/vmail/%%d/%%n/Maildir"\n' "$svc_home"; } >"$svc_home/rules.toml"
touch -d '-1 minute' "$svc_home/rules.toml"
chown -R "$BENCH_USER:" "$svc_home"
sock=$svc_home/lmtp.sock

run_deliver_lmtp() {
    local k=$1 pid
    retire "$svc_home/vmail/example.test"
    as_user "$svc_home" "$DELIVER_BIN" lmtp --listen "unix:$sock" --rules "$svc_home/rules.toml" &
    pid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
    # as_user may be a wrapper: the service is its child.
    svc_pid=$(pgrep -n -u "$BENCH_USER" -x deliver)
    # Every reply must be 2xx (the driver fails otherwise); W1's rules
    # discard some messages, so the files are fewer than the messages.
    "$driver" "$sock" "$work/warm.txt" --sessions "$k" --rcpt warm@example.test >/dev/null
    sync
    record "deliver-lmtp-$k" "$("$driver" "$sock" "$corpus/list.txt" --sessions "$k" --rcpt alice@example.test --pid "$svc_pid")"
    kill -TERM "$svc_pid"; wait "$pid" || true
    svc_pid=""
}

# dovecot-lmtp: a throw-away instance, W1's Sieve script for alice.
dc=$work/dovecot
dc_conf=$dc/dovecot.conf
dc_sock=$dc/lmtp.sock
doveadm -c "$dc_conf" stop 2>/dev/null || true
retire "$dc"
mkdir -p "$dc/run" "$dc/state" "$dc/home/alice/sieve" "$dc/home/warm"
chmod 755 "$dc" "$dc/home"
cat >"$dc_conf" <<EOF
# Throw-away dovecot-lmtp for benches/lmtp.sh.
base_dir = $dc/run
state_dir = $dc/state
log_path = $dc/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
# No authentication: LMTP only looks the recipient up in the userdb.
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=$BENCH_USER gid=$BENCH_USER home=$dc/home/%n
}
mail_location = maildir:~/Maildir
# The default, stated: fsync the file, fdatasync new/ and the uidlist
# before the 250.
mail_fsync = optimized
postmaster_address = postmaster@example.test
# Without it, fileinto a missing folder falls back to INBOX: not W1.
lda_mailbox_autocreate = yes
lda_mailbox_autosubscribe = yes
service lmtp {
  unix_listener $dc_sock {
    mode = 0666
  }
}
protocol lmtp {
  mail_plugins = sieve
}
plugin {
  sieve = file:~/sieve;active=~/active.sieve
}
EOF
cp "$BENCH_REPO/benches/peers/sieve.sieve" "$dc/home/alice/active.sieve"
chown -R "$BENCH_USER:" "$dc/home"
# Compiled once, as it would be on a server before the run.
as_user "$dc/home/alice" sievec -c "$dc_conf" "$dc/home/alice/active.sieve" ||
    die "sievec failed on $dc/home/alice/active.sieve"
dovecot -c "$dc_conf" || die "dovecot did not start (see $dc/dovecot.log)"
for _ in $(seq 100); do [ -S "$dc_sock" ] && break; sleep 0.05; done
dc_pid=$(cat "$dc/run/master.pid")

run_dovecot_lmtp() {
    local k=$1
    retire "$dc/home/alice/Maildir" "$dc/home/warm/Maildir"
    "$driver" "$dc_sock" "$work/warm.txt" --sessions "$k" --rcpt warm@example.test >/dev/null
    sync
    record "dovecot-lmtp-$k" "$("$driver" "$dc_sock" "$corpus/list.txt" --sessions "$k" --rcpt alice@example.test --pid "$dc_pid")"
}

# Exec mode, one process per message (W1's peers set-up).
run_exec() {
    local p=$1
    retire "$work/home/$p/Maildir"
    setup_home "$p" "$work/home/$p" "$BENCH_REPO/benches/w1.toml"
    prog_cmd "$p" "$work/home/$p"
    sync
    timed_spawnloop "$work/home/$p" "$corpus/list.txt" "${PROG_CMD[@]}"
    [ "$RUN_OUT" = "runs=$count failures=0" ] || die "$p: $RUN_OUT"
    record "$p-exec-1" "$(awk -v ms="$RUN_MS" -v n="$count" \
        '{printf "exec K=1 N=%d: %.0f msgs/s, CPU %.3f ms/msg (user %.3f, system %.3f)", n, n / ms * 1000, ($1 + $2) * 1000 / n, $1 * 1000 / n, $2 * 1000 / n}' \
        "$work/home/$p/cpu.out")"
}

# The floor, with its CPU time (user + system): the kernel's share of a
# durable delivery, which every program pays.
run_floor() {
    local k=$1 line
    retire "$work/floor/floor-Maildir"
    line=$(/usr/bin/time -o "$work/floor.cpu" -f "%U %S" \
        python3 "$SHARED_BENCH/durable_floor.py" "$work/floor" --sessions "$k" --count "$count")
    record "floor-$k" "$line$(awk -v n="$count" '{printf ", CPU %.3f ms/msg (user %.3f, system %.3f)", ($1 + $2) * 1000 / n, $1 * 1000 / n, $2 * 1000 / n}' "$work/floor.cpu")"
}

for r in $(seq "$rounds"); do
    for k in 1 4; do
        run_deliver_lmtp "$k"
        run_dovecot_lmtp "$k"
        run_floor "$k"
    done
    run_exec deliver
    run_exec safecat
done

# The last round's Maildirs: every message once, the same routing.
python3 "$BENCH_REPO/benches/peers_check.py" "$corpus" \
    "deliver-lmtp=$svc_home/vmail/example.test/alice/Maildir" \
    "dovecot-lmtp=$dc/home/alice/Maildir" \
    "deliver=$work/home/deliver/Maildir" \
    "safecat=$work/home/safecat/Maildir" >"$work/check.txt" || {
    cat "$work/check.txt"
    die "peers_check.py found differences (above)"
}
tail -n 1 "$work/check.txt"

# med NAME: median msgs/s of NAME; range NAME: min–max.
med() { median ${RATE[$1]}; }
range() { printf '%s\n' ${RATE[$1]} | sort -g | sed -n '1p;$p' | paste -sd- | sed 's/-$//'; }
echo
echo "W1 over LMTP: N=$count, $rounds round(s), medians (range); commit $(git -C "$BENCH_REPO" rev-parse --short HEAD)"
printf '| %-18s | %-8s | %-20s | %-10s | %-10s |\n' program sessions "msgs/s" "CPU ms/msg" "of which system"
for name in deliver-lmtp-1 deliver-lmtp-4 dovecot-lmtp-1 dovecot-lmtp-4 deliver-exec-1 safecat-exec-1 floor-1 floor-4; do
    cpu=- sys=-
    [ -n "${CPUS[$name]:-}" ] && cpu=$(median ${CPUS[$name]})
    [ -n "${SYS[$name]:-}" ] && sys=$(median ${SYS[$name]})
    printf '| %-18s | %-8s | %-20s | %-10s | %-10s |\n' "${name%-*}" "${name##*-}" "$(med "$name") ($(range "$name"))" "$cpu" "$sys"
done
# ratio A B: the median (and range) of A/B over the rounds, each round's
# A against the same round's B.
ratio() {
    paste <(printf '%s\n' ${RATE[$1]}) <(printf '%s\n' ${RATE[$2]}) |
        awk '{print $1 / $2}' | sort -g |
        awk '{a[NR] = $1} END {m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
            printf "%.2f (%.2f-%.2f)", m, a[1], a[NR]}'
}
echo
echo "deliver lmtp 4 sessions / dovecot-lmtp 4 sessions: $(ratio deliver-lmtp-4 dovecot-lmtp-4) (target >= 4)"
echo "deliver lmtp 4 sessions / exec-mode deliver:       $(ratio deliver-lmtp-4 deliver-exec-1) (target >= 3)"
echo "deliver lmtp 1 session / floor 1 writer:           $(ratio deliver-lmtp-1 floor-1) (target >= 0.70)"
echo "deliver lmtp 4 sessions / floor 4 writers:         $(ratio deliver-lmtp-4 floor-4) (target >= 0.70)"
