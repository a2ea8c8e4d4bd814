# shellcheck shell=bash disable=SC2034
# Shared by the benchmark scripts (benches/*.sh); source it, do not run it.
#
# Provides: the peers' installation, the unprivileged benchmark user, the
# workload files of ../shared/bench, one home per program, the command line of
# each program, timing, medians and peak RSS.

BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The shared workload (gen_corpus.py, spawnloop.c, peers/). CI clones the repo
# with shared/ beside it.
SHARED_BENCH=${SHARED_BENCH:-$BENCH_REPO/../shared/bench}
BENCH_USER=${BENCH_USER:-deliver-bench}
DOVECOT_LDA=${DOVECOT_LDA:-/usr/lib/dovecot/dovecot-lda}
ALL_PROGRAMS="safecat deliver procmail maildrop dovecot"
# A file that does not exist: deliver then runs without user rules, also when
# the benchmarks run as a user who has a ~/.config/deliver/rules.toml.
NO_USER_RULES=/nonexistent/deliver-bench/no-user-rules.toml

die() { echo "${0##*/}: $*" >&2; exit 1; }
note() { echo "${0##*/}: $*" >&2; }

# Install what is missing: the peers and the tools the scripts use (Debian),
# and the commands named as arguments (package = command name).
bench_install() {
    local need=() c
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 || need+=("$c"); done
    command -v procmail >/dev/null 2>&1 || need+=(procmail)
    command -v maildrop >/dev/null 2>&1 || need+=(maildrop)
    [ -x "$DOVECOT_LDA" ] || need+=(dovecot-core)
    dpkg -s dovecot-sieve >/dev/null 2>&1 || need+=(dovecot-sieve)
    command -v safecat >/dev/null 2>&1 || need+=(safecat)
    [ -x /usr/bin/time ] || need+=(time)
    command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    [ ${#need[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${need[*]} (run as root, or: apt-get install ${need[*]})"
    note "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Installing dovecot-core in a container without systemd does not start a
    # server; dovecot-lda runs on its own.
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# The user the programs run as. As root: a dedicated system user (created
# once, no login shell). Otherwise: the caller.
bench_user_setup() {
    if [ "$(id -u)" -eq 0 ]; then
        if ! id "$BENCH_USER" >/dev/null 2>&1; then
            useradd --system --home-dir "/var/lib/$BENCH_USER" --create-home \
                --shell /usr/sbin/nologin --user-group "$BENCH_USER" ||
                die "useradd $BENCH_USER failed"
        fi
        BENCH_HOME=$(getent passwd "$BENCH_USER" | cut -d: -f6)
        mkdir -p "$BENCH_HOME"
        chown "$BENCH_USER:" "$BENCH_HOME"
        # No user rules file for deliver, whatever an earlier run left.
        rm -rf "$BENCH_HOME/.config/deliver"
        AS_USER=(runuser -u "$BENCH_USER" --)
    else
        BENCH_USER=$(id -un)
        BENCH_HOME=$HOME
        AS_USER=()
    fi
}

# Run a command as the benchmark user with a minimal environment, as local(8)
# would: HOME, USER and LOGNAME are the program's home and the user. deliver
# and dovecot-lda take the home from HOME (so deliver's caches go to
# HOME/.cache/deliver); procmail and maildrop take it from the password file.
as_user() {
    local home=$1; shift
    (cd "$home" && "${AS_USER[@]}" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" \
        USER="$BENCH_USER" LOGNAME="$BENCH_USER" "$@")
}

# bench_workdir DIR: the work directory, readable by the benchmark user.
# Call it after bench_deliver_bin.
bench_workdir() {
    WORK=$1
    mkdir -p "$WORK"
    chmod 755 "$WORK"
    [ -r "$SHARED_BENCH/gen_corpus.py" ] || die "no workload at $SHARED_BENCH (set SHARED_BENCH)"
    # A copy of deliver that the benchmark user can run whatever the
    # permissions of the checkout's parent directories.
    if [ -n "${DELIVER_BIN:-}" ]; then
        cp "$DELIVER_BIN" "$WORK/deliver.tmp"
        chmod 755 "$WORK/deliver.tmp"
        mv "$WORK/deliver.tmp" "$WORK/deliver"
        DELIVER_BIN=$WORK/deliver
    fi
    if [ ! -x "$WORK/spawnloop" ] || [ "$SHARED_BENCH/spawnloop.c" -nt "$WORK/spawnloop" ]; then
        gcc -O2 -o "$WORK/spawnloop" "$SHARED_BENCH/spawnloop.c" || die "cannot build spawnloop"
    fi
}

# bench_corpus DIR COUNT SEED [BIG_MIB]: a corpus, generated once per parameters.
bench_corpus() {
    local dir=$1 count=$2 seed=$3 big=${4:-0}
    local stamp="count=$count seed=$seed big=$big"
    if [ "$(cat "$dir/.params" 2>/dev/null)" != "$stamp" ]; then
        rm -rf "$dir"
        python3 "$SHARED_BENCH/gen_corpus.py" "$dir" --count "$count" --seed "$seed" --big-mib "$big" ||
            die "gen_corpus.py failed"
        echo "$stamp" >"$dir/.params"
        chmod -R a+rX "$dir"
        # Write the corpus out now, so that the first fsync of a timed run
        # does not pay for it.
        sync
    fi
}

# bench_deliver_bin [BIN]: the deliver binary (built in release mode unless given).
bench_deliver_bin() {
    if [ -n "${1:-}" ]; then
        DELIVER_BIN=$(readlink -f "$1")
    else
        (cd "$BENCH_REPO" && cargo build --release -q) || die "cargo build --release failed"
        DELIVER_BIN=$BENCH_REPO/target/release/deliver
    fi
    [ -x "$DELIVER_BIN" ] || die "no deliver binary at $DELIVER_BIN"
}

# fresh_maildir DIR: an empty Maildir with the two folders of W1 (maildrop
# and dovecot-lda do not create a folder that `to`/fileinto names).
fresh_maildir() {
    local md=$1 f
    rm -rf "$md"
    for f in "" .Junk .Lists.rust; do
        mkdir -p "$md/$f/tmp" "$md/$f/new" "$md/$f/cur"
    done
    [ "$(id -u)" -eq 0 ] && chown -R "$BENCH_USER:" "$md"
    return 0
}

# setup_home PROG HOME DELIVER_RULES: the home of one program, with its
# configuration. W1's files come from $SHARED_BENCH/peers, except the Sieve
# script: benches/peers/sieve.sieve is a corrected copy (see BENCHMARKS.md).
setup_home() {
    local prog=$1 home=$2 rules=$3
    rm -rf "$home"
    mkdir -p "$home"
    case $prog in
    procmail) cp "$SHARED_BENCH/peers/procmailrc" "$home/procmailrc" ;;
    maildrop)
        cp "$SHARED_BENCH/peers/mailfilter" "$home/mailfilter"
        chmod 600 "$home/mailfilter"
        ;;
    dovecot)
        sed "s|@HOME@|$home|g" "$SHARED_BENCH/peers/dovecot.conf.in" >"$home/dovecot.conf"
        mkdir -p "$home/sieve"
        cp "$BENCH_REPO/benches/peers/sieve.sieve" "$home/active.sieve"
        ;;
    deliver) cp "$rules" "$home/rules.toml" ;;
    esac
    fresh_maildir "$home/Maildir"
    [ "$(id -u)" -eq 0 ] && chown -R "$BENCH_USER:" "$home"
    if [ "$prog" = dovecot ]; then
        # Compile the script once, as dovecot-lda would on its first delivery.
        as_user "$home" sievec -c "$home/dovecot.conf" "$home/active.sieve" ||
            die "sievec failed on $home/active.sieve"
    fi
    [ "$prog" = deliver ] && deliver_warm "$home"
    return 0
}

# deliver_warm HOME: after HOME/rules.toml was written, one delivery writes
# deliver's rules cache (src/policy/rules/cache.rs), as the first message after a
# change of the rules would on a server; like dovecot's script, compiled by
# sievec above. The file is made a minute old first: deliver does not cache
# a file changed in the last two seconds (its mtime might not yet tell a
# change apart).
deliver_warm() {
    local home=$1
    touch -d '-1 minute' "$home/rules.toml"
    [ "$(id -u)" -eq 0 ] && chown "$BENCH_USER:" "$home/rules.toml"
    printf 'From: warm-up@example.org\nSubject: warm-up\n\nx\n' |
        as_user "$home" "$DELIVER_BIN" --rules "$home/rules.toml" --user-rules "$NO_USER_RULES" \
            --maildir "$home/Maildir" -f warm-up@example.org -a "$BENCH_USER@localhost" ||
        die "deliver warm-up failed in $home"
    fresh_maildir "$home/Maildir"
}

# prog_cmd PROG HOME: the command line of PROG (an array PROG_CMD), as
# local(8)'s mailbox_command would run it. No -f/-a: the same command line
# serves every message, and each program reads the envelope from the message
# (deliver: the From_ line and Delivered-To).
prog_cmd() {
    local prog=$1 home=$2
    case $prog in
    safecat) PROG_CMD=(safecat "$home/Maildir/tmp" "$home/Maildir/new") ;;
    deliver) PROG_CMD=("$DELIVER_BIN" --rules "$home/rules.toml" --user-rules "$NO_USER_RULES" --maildir "$home/Maildir") ;;
    procmail) PROG_CMD=(procmail -m "MAILDIR=$home/Maildir/" "$home/procmailrc") ;;
    maildrop) PROG_CMD=(maildrop "$home/mailfilter" "$home/Maildir") ;;
    dovecot) PROG_CMD=("$DOVECOT_LDA" -c "$home/dovecot.conf") ;;
    *) die "unknown program $prog" ;;
    esac
}

now_ns() { date +%s%N; }

# median of numbers, one per argument.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.6g\n", (a[NR/2]+a[NR/2+1])/2}'; }

# timed_spawnloop HOME LIST CMD...: runs spawnloop over LIST with CMD, as the
# benchmark user in HOME. Sets RUN_OUT (spawnloop's output), RUN_MS (wall
# time, ms) and RUN_CPU (user + system time of spawnloop and every run of
# CMD, ms: it leaves out the time spent waiting for the disk, so it is less
# disturbed by the fsync latency of the moment and by other I/O).
timed_spawnloop() {
    local home=$1 list=$2 t0 t1
    shift 2
    t0=$(now_ns)
    RUN_OUT=$(as_user "$home" /usr/bin/time -o "$home/cpu.out" -f "%U %S" \
        "$WORK/spawnloop" "$list" "$@" 2>&1) || true
    t1=$(now_ns)
    RUN_MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e6}')
    RUN_CPU=$(awk '{printf "%.0f", ($1 + $2) * 1000}' "$home/cpu.out")
}

# deliver_ab LIST ROUNDS NAME...: runs deliver over LIST once per round for
# each NAME (home $WORK/home/NAME, rules NAME/rules.toml), in an order rotated
# per round, each time into an empty Maildir after `sync`. Fills the
# associative arrays TIMES[NAME] with the wall times (ms) and CPU[NAME] with
# the CPU time (user + system, ms, of spawnloop and every delivery: less
# disturbed by other I/O on the machine than wall time). Fails on any
# non-zero exit.
deliver_ab() {
    local list=$1 rounds=$2; shift 2
    local names=("$@") n=$# r i name home t0 t1 out ms count
    count=$(grep -c . "$list")
    for r in $(seq "$rounds"); do
        for i in $(seq 0 $((n - 1))); do
            name=${names[$(((i + r - 1) % n))]}
            home=$WORK/home/$name
            fresh_maildir "$home/Maildir"
            sync
            timed_spawnloop "$home" "$list" "$DELIVER_BIN" --rules "$home/rules.toml" \
                --user-rules "$NO_USER_RULES" --maildir "$home/Maildir"
            [ "$RUN_OUT" = "runs=$count failures=0" ] || die "$name: $RUN_OUT"
            TIMES[$name]="${TIMES[$name]:-} $RUN_MS"
            CPU[$name]="${CPU[$name]:-} $RUN_CPU"
            echo "round $r $name: $RUN_MS ms wall, $RUN_CPU ms CPU (user+system)"
        done
    done
}

# callgrind_ir HOME MESSAGE: instructions (Ir) of one delivery of MESSAGE by
# deliver with HOME/rules.toml, under valgrind --tool=callgrind; the profile
# is left in HOME/callgrind.out.
callgrind_ir() {
    local home=$1 msg=$2
    fresh_maildir "$home/Maildir"
    as_user "$home" valgrind --tool=callgrind --callgrind-out-file="$home/callgrind.out" \
        "$DELIVER_BIN" --rules "$home/rules.toml" --user-rules "$NO_USER_RULES" --maildir "$home/Maildir" <"$msg" \
        >/dev/null 2>"$home/callgrind.log" || die "callgrind run failed: $(tail -3 "$home/callgrind.log")"
    awk '/^(summary|totals):/ {print $2; exit}' "$home/callgrind.out"
}

# inbox_message CORPUS: the first corpus message that W1 files into the
# Inbox (the one-message measurements use it: msg-00000 is a virus alert,
# which deliver discards after writing it).
inbox_message() {
    local m
    while read -r m; do
        if "$DELIVER_BIN" --test --format json --rules "$BENCH_REPO/benches/w1.toml" \
            --user-rules "$NO_USER_RULES" <"$m" 2>/dev/null | grep -q '"action": *"inbox"'; then
            echo "$m"
            return 0
        fi
    done <"$1/list.txt"
    die "no message of $1 goes to the Inbox"
}
