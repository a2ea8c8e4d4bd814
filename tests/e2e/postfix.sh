#!/usr/bin/env bash
# tests/e2e/postfix.sh - end-to-end test of `deliver` behind a real Postfix.
#
# Usage (as root):  tests/e2e/postfix.sh /path/to/deliver
#
# Starts a throw-away Postfix instance (own config, queue and data directories
# under a mktemp dir, smtpd on 127.0.0.1:<free high port> only, log written by
# postlogd to a file, no chroot, no outbound transport), creates a local test
# user whose mailbox_command is the binary under test, sends mail to it over
# SMTP with swaks and checks where it lands.  Everything is torn down on every
# exit path.  Needs postfix (3.4+), postmap, swaks.  On Debian 12:
#   apt-get update
#   echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
#   DEBIAN_FRONTEND=noninteractive apt-get install -y postfix swaks
# ("No configuration": no /etc/postfix/main.cf, no system instance started.)
#
# Isolation: every Postfix command gets "-c $T/conf"; main.cf points
# queue_directory/data_directory into $T, so master.pid, master.lock, the
# public/private sockets and the postlog socket are all per-run.  Neither
# alternate_config_directories nor multi_instance_directories is set: the
# former only matters for set-gid commands run by non-root users (we run
# everything as root), the latter would tie the instance to the default one.
# Nothing in /etc/postfix is written, and its main.cf/master.cf are not read
# (only the package's postfix-files and dynamicmaps.cf, via meta_directory).
#
# Environment:
#   KEEP=1          keep the temp dir (config, queue, maillog, messages) for inspection
#   E2E_TIMEOUT=N   global timeout in seconds (default 120)
#   E2E_WAIT=N      per-delivery wait deadline in seconds (default 30)
#   E2E_USER=NAME   name of the throw-away local user (default deliver-e2e)
#   E2E_PORT=N      smtpd port (default: a free port in 20000-32767)
#   E2E_IN_PLACE=1  run DELIVER_BIN where it is (an installed /usr/bin/deliver:
#                   tests/install/deb.sh) instead of a copy in the temp dir
#
# Output: one "ok - ..." / "not ok - ..." line per check (diagnostics prefixed
# with "# "), then exactly "e2e: N passed, M failed"; exit status 1 if M > 0.

# Functions below are called indirectly (traps, wait_until), which shellcheck
# cannot see.
# shellcheck disable=SC2317
set -euo pipefail

# ---------------------------------------------------------------------------
# Global timeout: re-run ourselves under timeout(1) so nothing can hang CI.
# On expiry the script (only it: --foreground) gets SIGTERM, which runs the
# cleanup trap; SIGKILL follows 20 s later if even the cleanup hangs.
# ---------------------------------------------------------------------------
E2E_TIMEOUT=${E2E_TIMEOUT:-120}
if [[ -z ${DELIVER_E2E_UNDER_TIMEOUT:-} ]] && command -v timeout >/dev/null 2>&1; then
    export DELIVER_E2E_UNDER_TIMEOUT=1
    exec timeout --foreground --kill-after=20 "$E2E_TIMEOUT" "$BASH" "$0" "$@"
fi

# Postfix tools live in /usr/sbin, which a CI PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C
umask 022

E2E_WAIT=${E2E_WAIT:-30}
E2E_USER=${E2E_USER:-deliver-e2e}
USER_MARK="deliver e2e throw-away test user"
DOMAIN=e2e.deliver.test
SENDER=e2e-sender@example.invalid
RCPT=$E2E_USER@$DOMAIN
TAG="deliver-e2e-$$"

pass=0
fail=0
finished=0
ERR_INFO=
ABORT_REASON=
T=            # temp dir; everything of this run lives below it
CONF='' QDIR='' DDIR='' MAILLOG='' MSGS=''
PORT=
MASTER_PID=   # session id of the instance's processes
started=0     # postfix instance started by us
user_created=0
TEST_UID=

# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
diag() { sed 's/^/#   /'; }

# Postfix log excerpt: the lines of the message being checked ($LOG_QID) plus
# any warning/fatal/panic, or else the tail of the log.
LOG_QID=
dump_log() {
    if [[ -n $MAILLOG && -s $MAILLOG && -n $LOG_QID ]]; then
        echo "# --- postfix log: lines of $LOG_QID, warnings, errors ($MAILLOG) ---"
        grep -E ": $LOG_QID: |warning: |fatal: |panic: |error: " "$MAILLOG" | tail -n "${1:-40}" | diag
    elif [[ -n $MAILLOG && -s $MAILLOG ]]; then
        echo "# --- postfix log ($MAILLOG, last ${1:-40} lines) ---"
        tail -n "${1:-40}" "$MAILLOG" | diag
    elif ((started)); then
        echo "# --- postfix log $MAILLOG is empty or missing ---"
    fi
}

dump_queue() {
    if ((started)); then
        echo "# --- postqueue -p ---"
        postqueue -c "$CONF" -p 2>&1 | diag || true
    fi
}

ok() {
    pass=$((pass + 1))
    echo "ok - $*"
}

# not_ok "description" [extra diagnostic text]
not_ok() {
    fail=$((fail + 1))
    echo "not ok - $1"
    if [[ -n ${2:-} ]]; then printf '%s\n' "$2" | diag; fi
    dump_log 40
    dump_queue
}

WHY=   # reason set by send_msg on failure

# Fatal setup problem: count it as a failed check and stop (the EXIT trap
# cleans up and prints the summary).
bail() {
    not_ok "$1" "${2:-}"
    finished=1
    exit 1
}

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
now_ms() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then # bash >= 5
        local t=${EPOCHREALTIME/[.,]/}
        echo $((t / 1000))
    else
        date +%s%3N
    fi
}

# wait_until SECONDS command... : poll every 0.2 s until command succeeds.
wait_until() {
    local deadline=$(($(now_ms) + $1 * 1000))
    shift
    while :; do
        if "$@"; then return 0; fi
        if (($(now_ms) >= deadline)); then return 1; fi
        sleep 0.2
    done
}

# Wait for mail to arrive somewhere: E2E_WAIT seconds, but only 10 s once a
# wait has already timed out (a broken binary must not push the whole run
# past the global timeout before every check has reported).
mail_wait=$E2E_WAIT
LAST_WAIT=$E2E_WAIT
wait_mail() {
    LAST_WAIT=$mail_wait
    if wait_until "$mail_wait" "$@"; then return 0; fi
    ((mail_wait > 10)) && mail_wait=10
    return 1
}

# Files below DIR (recursive, tmp/ and folders included) containing MARKER.
files_with() { # DIR MARKER
    [[ -d $1 ]] || return 0
    grep -lF -r -- "$2" "$1" 2>/dev/null | sort || true
}
count_with() { files_with "$1" "$2" | grep -c . || true; }

# The instance's queue listing, one JSON object per message.
queue_json() { postqueue -c "$CONF" -j 2>/dev/null || true; }
in_queue() { queue_json | grep -qF "\"queue_id\": \"$1\""; }
in_deferred() { queue_json | grep -F "\"queue_id\": \"$1\"" | grep -qF '"queue_name": "deferred"'; }
queue_empty() { [[ -z $(queue_json) ]]; }

# /proc/PID/stat fields after "(comm)": state ppid pgrp session ...
proc_state_sid() { # PID -> "STATE SID"
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    # shellcheck disable=SC2086 # word splitting intended
    set -- $st
    echo "$1 $4"
}

# Live (non-zombie) processes belonging to this run: in the master's session
# (master setsid()s; all Postfix daemons inherit it), with cwd or executable
# below $T (daemons chdir to the queue directory; the copied deliver binary
# lives in $T/bin), or running as the test user (deliver gets its own session).
instance_pids() {
    local p pid cwd exe uid state sid
    [[ -n $T ]] || return 0
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        read -r state sid < <(proc_state_sid "$pid") || continue
        [[ $state == Z ]] && continue
        cwd=$(readlink "$p/cwd" 2>/dev/null) || cwd=
        exe=$(readlink "$p/exe" 2>/dev/null) || exe=
        uid=
        if [[ -n $TEST_UID ]]; then
            uid=$(awk '/^Uid:/ { print $2; exit }' "$p/status" 2>/dev/null) || uid=
        fi
        if [[ (-n $MASTER_PID && $sid == "$MASTER_PID") ||
              $cwd == "$T" || $cwd == "$T"/* || $exe == "$T"/* ||
              (-n $TEST_UID && $uid == "$TEST_UID") ]]; then
            echo "$pid"
        fi
    done
}

# Anything (zombies included) still in the master's session?
session_gone() {
    local p state sid
    [[ -n $MASTER_PID ]] || return 0
    for p in /proc/[0-9]*; do
        read -r state sid < <(proc_state_sid "${p#/proc/}") || continue
        [[ $sid == "$MASTER_PID" ]] && return 1
    done
    return 0
}

no_instance_pids() { [[ -z $(instance_pids) ]]; }

kill_leftovers() {
    local sig pids
    for sig in TERM KILL; do
        pids=$(instance_pids)
        [[ -z $pids ]] && return 0
        echo "# cleanup: sending SIG$sig to leftover processes of this run: ${pids//$'\n'/ }" >&2
        # shellcheck disable=SC2086
        kill -s "$sig" $pids 2>/dev/null || true
        wait_until 5 no_instance_pids && return 0
    done
    echo "# cleanup: WARNING: processes left behind: $(instance_pids | tr '\n' ' ')" >&2
}

pids_of_uid() { # UID -> live PIDs with that real uid
    local p uid
    for p in /proc/[0-9]*; do
        uid=$(awk '/^Uid:/ { print $2; exit }' "$p/status" 2>/dev/null) || continue
        [[ $uid == "$1" ]] && echo "${p#/proc/}"
    done
    return 0
}

# Remove the test user if (and only if) it is one of ours.
remove_test_user() {
    local pw
    pw=$(getent passwd "$E2E_USER") || return 0
    if [[ $(cut -d: -f5 <<<"$pw") != "$USER_MARK" ]]; then
        echo "# cleanup: NOT removing user $E2E_USER: it is not a throw-away test user" >&2
        return 1
    fi
    local uid
    uid=$(cut -d: -f3 <<<"$pw")
    # Processes still running as that user would make userdel fail.
    local pids
    pids=$(pids_of_uid "$uid")
    if [[ -n $pids ]]; then
        # shellcheck disable=SC2086
        kill -s KILL $pids 2>/dev/null || true
        sleep 0.2
    fi
    userdel "$E2E_USER" >/dev/null 2>&1 || echo "# cleanup: WARNING: userdel $E2E_USER failed" >&2
    if getent group "$E2E_USER" >/dev/null && [[ -z $(getent group "$E2E_USER" | cut -d: -f4) ]]; then
        groupdel "$E2E_USER" >/dev/null 2>&1 || true
    fi
}

stop_instance() {
    if ((started)); then
        postfix -c "$CONF" stop >>"$T/postfix-ctl.log" 2>&1 ||
            echo "# cleanup: 'postfix -c $CONF stop' failed (see $T/postfix-ctl.log)" >&2
        started=0
    fi
    kill_leftovers
    # Postfix daemons exit after the master and are reparented to PID 1; give
    # it a moment to reap them so that no zombie of ours is visible afterwards.
    wait_until 5 session_gone ||
        echo "# cleanup: exited processes of the instance (session $MASTER_PID) not yet reaped by PID 1" >&2
}

cleanup() {
    set +e
    [[ -n $T ]] && stop_instance
    ((user_created)) && remove_test_user
    if [[ -n $T && -d $T ]]; then
        if [[ ${KEEP:-0} == 1 ]]; then
            echo "# KEEP=1: kept $T (config $CONF, log $MAILLOG)" >&2
        else
            rm -rf -- "$T"
        fi
    fi
}

on_exit() {
    local rc=$?
    trap - EXIT
    # A second signal must not cut the cleanup short (a handler, unlike an
    # ignored signal, is not inherited by the commands run below).
    trap 'echo "# cleanup in progress, please wait" >&2' INT TERM HUP
    set +e
    if ((!finished)); then
        fail=$((fail + 1))
        echo "not ok - test run aborted (exit status $rc)${ABORT_REASON:+: $ABORT_REASON}${ERR_INFO:+ [$ERR_INFO]}"
        dump_log 60
        dump_queue
    fi
    cleanup
    echo "e2e: $pass passed, $fail failed"
    if ((fail > 0)); then exit 1; fi
    exit 0
}

on_signal() { # NAME NUMBER
    ABORT_REASON="got SIG$1"
    [[ $1 == TERM ]] && ABORT_REASON+=" (global timeout of ${E2E_TIMEOUT}s exceeded?)"
    exit $((128 + $2))
}

trap on_exit EXIT
trap 'on_signal TERM 15' TERM
trap 'on_signal INT 2' INT
trap 'on_signal HUP 1' HUP
set -E
trap 'ERR_INFO="line $LINENO: $BASH_COMMAND"' ERR

# ---------------------------------------------------------------------------
# Preflight
# ---------------------------------------------------------------------------
DELIVER_BIN=${1:-}
if [[ -z $DELIVER_BIN ]]; then
    bail "usage: $0 DELIVER_BIN" "first argument must be the path of the deliver binary under test"
fi
[[ $EUID -eq 0 ]] || bail "preflight: must run as root (creates a user and runs Postfix)"
[[ -f $DELIVER_BIN && -x $DELIVER_BIN ]] || bail "preflight: $DELIVER_BIN is not an executable file"
# (bash's "command -v" also reports a non-executable file, hence the -x test)
have() { local p; p=$(type -P "$1") && [[ -f $p && -x $p ]]; }
missing=()
for tool in postfix postconf postmap postqueue swaks useradd userdel groupdel getent runuser timeout; do
    have "$tool" || missing+=("$tool")
done
if ((${#missing[@]})); then
    bail "preflight: missing tools: ${missing[*]}" \
        "install with: echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y postfix swaks"
fi
if ! getent passwd postfix >/dev/null || ! getent group postdrop >/dev/null; then
    bail "preflight: Postfix's 'postfix' user / 'postdrop' group missing (broken postfix package install?)"
fi

# ---------------------------------------------------------------------------
# Temp dir layout (root 0755 so the test user can reach its home and the
# copied binary, and local(8) can run the command in the queue directory):
#   $T/conf  main.cf master.cf local_recipients   $T/queue  $T/data
#   $T/bin/deliver   $T/home/$E2E_USER   $T/maillog   $T/msgs
# ---------------------------------------------------------------------------
T=$(mktemp -d "${TMPDIR:-/tmp}/deliver-e2e.XXXXXX")
chmod 0755 "$T"
CONF=$T/conf QDIR=$T/queue DDIR=$T/data MAILLOG=$T/maillog MSGS=$T/msgs
mkdir -m 0755 "$CONF" "$QDIR" "$T/bin" "$T/home"
mkdir -m 0700 "$MSGS"
# The binary local(8) runs: a copy the test user can reach, or, with
# E2E_IN_PLACE=1, the file under test itself.
if [[ ${E2E_IN_PLACE:-} == 1 ]]; then
    DELIVER_RUN=$(readlink -f -- "$DELIVER_BIN")
else
    DELIVER_RUN=$T/bin/deliver
    install -m 0755 -o root -g root -- "$DELIVER_BIN" "$DELIVER_RUN"
fi

# ---------------------------------------------------------------------------
# Test user (idempotent: a stale user of ours from an aborted run is replaced)
# ---------------------------------------------------------------------------
if pw=$(getent passwd "$E2E_USER"); then
    if [[ $(cut -d: -f5 <<<"$pw") == "$USER_MARK" ]]; then
        echo "# removing stale test user $E2E_USER from an earlier aborted run"
        remove_test_user
    else
        bail "preflight: user $E2E_USER already exists and is not a throw-away test user" \
            "set E2E_USER to another name"
    fi
fi
if getent group "$E2E_USER" >/dev/null; then
    bail "preflight: group $E2E_USER already exists; set E2E_USER to another name"
fi
HOME_DIR=$T/home/$E2E_USER
nologin=/usr/sbin/nologin
[[ -x $nologin ]] || nologin=/bin/false
useradd --comment "$USER_MARK" --home-dir "$HOME_DIR" --no-create-home \
    --shell "$nologin" --user-group "$E2E_USER" >"$T/useradd.log" 2>&1 ||
    bail "setup: useradd $E2E_USER failed" "$(cat "$T/useradd.log")"
user_created=1
TEST_UID=$(id -u "$E2E_USER")
TEST_GID=$(id -g "$E2E_USER")
MD=$HOME_DIR/Maildir
install -d -o "$TEST_UID" -g "$TEST_GID" -m 0700 "$HOME_DIR" "$MD" "$MD/tmp" "$MD/new" "$MD/cur"

runuser -u "$E2E_USER" -- test -x "$DELIVER_RUN" ||
    bail "setup: user $E2E_USER cannot execute $DELIVER_RUN" \
        "mount of $T: $(findmnt -no TARGET,OPTIONS -T "$T" 2>/dev/null)
a noexec mount, or a parent directory the user cannot search?  Set TMPDIR (default /tmp)."

# ---------------------------------------------------------------------------
# Postfix instance configuration
# ---------------------------------------------------------------------------
pick_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 12768)) # below the Linux ephemeral range 32768-60999
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi
        if have ss && [[ -n $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then continue; fi
        echo "$p"
        return 0
    done
    return 1
}

write_master_cf() {
    # Only the services this test needs; nothing chrooted, nothing but smtpd
    # listening on the network, and that on 127.0.0.1:$PORT only (the other
    # services are UNIX sockets/FIFOs below $QDIR).  pickup is needed because
    # "postqueue -f" also pokes public/pickup and fails if it is missing.  No
    # smtp/lmtp client (default_transport is error:), no tlsmgr/verify/scache.
    # postlog (postlogd) is required by maillog_file.
    cat >"$CONF/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$PORT inet n  -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

cat >"$CONF/main.cf" <<EOF
# Throw-away Postfix instance for the deliver e2e test ($TAG).
compatibility_level = 3.6
queue_directory = $QDIR
data_directory = $DDIR
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-$TAG
maillog_file = $MAILLOG
maillog_file_prefixes = $T
myhostname = $DOMAIN
mydomain = deliver.test
myorigin = \$myhostname
mydestination = \$myhostname, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = \$myhostname ESMTP $TAG
smtpd_tls_security_level = none
relayhost =
default_transport = error:outbound mail disabled in the deliver e2e test
relay_transport = error:outbound mail disabled in the deliver e2e test
alias_maps =
alias_database =
local_recipient_maps = hash:$CONF/local_recipients
mailbox_command = $DELIVER_RUN --rules $CONF/deliver-rules.toml -f "\$SENDER" -a "\$RECIPIENT"
mailbox_size_limit = 0
command_time_limit = 30s
biff = no
append_dot_mydomain = no
delay_warning_time = 0h
notify_classes =
readme_directory = no
html_directory = no
EOF
printf '%s OK\n' "$E2E_USER" >"$CONF/local_recipients"
# deliver's system rules: the embedded default (spam to Junk, a virus
# discarded) and a sender access table.
REJECTED=e2e-rejected@example.invalid
printf '%s REJECT 5.7.1 e2e rejected sender\n' "$REJECTED" >"$CONF/deliver-senders"
cat >"$CONF/deliver-rules.toml" <<EOF
[spam]
junk_folder = "Junk"
virus = "discard"

[access]
sender = ["texthash:$CONF/deliver-senders"]
EOF
# -c everywhere: without it Postfix commands read /etc/postfix/main.cf, which
# does not even exist after a "No configuration" install.
postmap -c "$CONF" "hash:$CONF/local_recipients" >"$T/postmap.log" 2>&1 ||
    bail "setup: postmap $CONF/local_recipients failed" "$(cat "$T/postmap.log")"
POSTFIX_VERSION=$(postconf -c "$CONF" -h mail_version 2>/dev/null || echo unknown)
case $POSTFIX_VERSION in
    [0-2].* | 3.[0-3] | 3.[0-3].*)
        bail "preflight: Postfix $POSTFIX_VERSION is too old (maillog_file/postlogd need 3.4+)" ;;
esac

# ---------------------------------------------------------------------------
# Start it (retry with another port if the one picked was taken meanwhile)
# ---------------------------------------------------------------------------
start_ok=0
for _ in 1 2 3; do
    PORT=${E2E_PORT:-$(pick_port)} || bail "setup: no free TCP port found on 127.0.0.1"
    write_master_cf
    # Refuse to go on if the generated config does not parse cleanly.
    if ! postconf -c "$CONF" -n >/dev/null 2>"$T/postconf.err" || [[ -s $T/postconf.err ]]; then
        bail "setup: postconf complains about the generated configuration" "$(cat "$T/postconf.err")"
    fi
    if postfix -c "$CONF" start >"$T/postfix-start.log" 2>&1; then
        started=1
        start_ok=1
        MASTER_PID=$(sed -n '1s/[^0-9]//gp' "$QDIR/pid/master.pid" 2>/dev/null || true)
        break
    fi
    # master may be half up: make sure nothing of this attempt survives.
    postfix -c "$CONF" abort >/dev/null 2>&1 || true
    kill_leftovers
    [[ -n ${E2E_PORT:-} ]] && break
    grep -q 'Address already in use' "$MAILLOG" "$T/postfix-start.log" 2>/dev/null || break
done
((start_ok)) || bail "setup: postfix -c $CONF start failed" "$(cat "$T/postfix-start.log")"

banner_ok() {
    local line
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    IFS= read -r -t 5 line <&3 || line=
    printf 'QUIT\r\n' >&3 2>/dev/null || true
    exec 3<&- 3>&-
    [[ $line == 220*"$TAG"* ]]
}
if wait_until 15 banner_ok 2>/dev/null; then
    ok "postfix $POSTFIX_VERSION instance up: smtpd on 127.0.0.1:$PORT, config $CONF"
else
    bail "postfix instance answers on 127.0.0.1:$PORT with its own banner" "$(cat "$T/postfix-start.log")"
fi

# ---------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------
# make_msg NAME MARKER [extra header line...] -> $MSGS/NAME.eml (LF line ends)
make_msg() {
    local name=$1 marker=$2
    shift 2
    {
        printf 'From: E2E Sender <%s>\n' "$SENDER"
        printf 'To: <%s>\n' "$RCPT"
        printf 'Subject: deliver e2e %s\n' "$name"
        printf 'Date: %s\n' "$(date -R)"
        printf 'Message-ID: <%s@%s>\n' "$marker" "$DOMAIN"
        local h
        for h in "$@"; do printf '%s\n' "$h"; done
        printf 'MIME-Version: 1.0\n'
        printf 'Content-Type: text/plain; charset=utf-8\n'
        printf 'Content-Transfer-Encoding: 8bit\n'
        printf '\n'
        printf 'marker: %s\n' "$marker"
        printf '\n'
        printf 'From the body: a line starting with "From " must stay as it is.\n'
        printf '.a line starting with a dot (dot-stuffed on the wire)\n'
        printf '..two dots\n'
        printf 'trailing blanks   \n'
        printf '\ttab-indented, literal backslash-n: \\n, percent token: %%DATE%%\n'
        printf 'UTF-8: Gr\xc3\xbc\xc3\x9fe \xe2\x80\x94 \xe2\x9c\x93\n'
        printf '\n'
        printf '\n'
        printf -- '-- \nlast line\n'
    } >"$MSGS/$name.eml"
}

# send_msg NAME [SENDER] -> sets QID; SMTP transcript in $MSGS/NAME.swaks
send_msg() {
    local name=$1 from=${2:-$SENDER}
    QID='' LOG_QID=''
    # Wire format by hand (CRLF, dot-stuffing, final "."; swaks adds the last
    # CRLF) and --no-data-fixup, so swaks changes nothing in the message.
    { sed -e 's/^\./../' -e 's/$/\r/' "$MSGS/$name.eml"; printf '.'; } >"$MSGS/$name.wire"
    if ! swaks --server 127.0.0.1 --port "$PORT" --helo client.e2e.test \
        --from "$from" --to "$RCPT" --data "@$MSGS/$name.wire" --no-data-fixup \
        --timeout 20 >"$MSGS/$name.swaks" 2>&1; then
        WHY="swaks failed; transcript:
$(cat "$MSGS/$name.swaks")"
        return 1
    fi
    QID=$(sed -n 's/.*queued as \([0-9A-Za-z]*\).*/\1/p' "$MSGS/$name.swaks" | tail -n 1)
    LOG_QID=$QID
    if [[ -z $QID ]]; then
        WHY="no 'queued as' in the SMTP transcript:
$(cat "$MSGS/$name.swaks")"
        return 1
    fi
}

# wait_delivered QID MARKER DIR: wait until the message has left the queue
# (delivered or bounced: the outcome is final), then succeed if it is in DIR.
# On failure WHY says what happened.
left_queue() { ! in_queue "$1"; }
wait_delivered() {
    local qid=$1 marker=$2 dir=$3
    if ! wait_mail left_queue "$qid"; then
        WHY="still in the queue after ${LAST_WAIT}s (deferred? see the log and queue below)"
    elif [[ $(count_with "$dir" "$marker") -ge 1 ]]; then
        return 0
    else
        WHY="it left the queue (bounced? see the log below) but is not in ${dir#"$HOME_DIR"/}"
    fi
    WHY+="
files in the Maildir: $(find "$MD" -type f | sed "s|^$MD/||" | tr '\n' ' ')"
    return 1
}

# Body of a delivered file: everything after the first empty line.
body_of() { sed '1,/^$/d' "$1"; }
headers_of() { sed '/^$/q' "$1"; }

# ---------------------------------------------------------------------------
# a. plain message -> ~/Maildir/new, byte-identical apart from added headers
# ---------------------------------------------------------------------------
MARK_A="e2e-a-$TAG-$RANDOM$RANDOM"
make_msg plain "$MARK_A"
if send_msg plain; then
    ok "a: plain message accepted over SMTP (queued as $QID)"
    QID_A=$QID
    if wait_delivered "$QID_A" "$MARK_A" "$MD/new"; then
        files=$(find "$MD/new" -maxdepth 1 -type f)
        nfiles=$(grep -c . <<<"$files" || true)
        if [[ $nfiles -eq 1 && $(count_with "$MD/new" "$MARK_A") -eq 1 ]]; then
            ok "a: delivered as exactly one file in ~/Maildir/new"
        else
            not_ok "a: delivered as exactly one file in ~/Maildir/new" "found $nfiles files: $files"
        fi
        f=$(files_with "$MD/new" "$MARK_A" | head -n 1)
        if [[ $(head -c 5 "$f") != "From " ]]; then
            ok "a: delivered file does not start with the 'From ' envelope line"
        else
            not_ok "a: delivered file does not start with the 'From ' envelope line" "$(head -n 3 "$f")"
        fi
        if cmp -s <(body_of "$MSGS/plain.eml") <(body_of "$f"); then
            ok "a: body byte-identical to what was sent"
        else
            # cat -A: line ends shown as $, tabs as ^I, CR as ^M, 8-bit as M-x
            not_ok "a: body byte-identical to what was sent" "diff -u sent delivered (cat -A):
$(diff -u <(body_of "$MSGS/plain.eml" | cat -A) <(body_of "$f" | cat -A) | tail -n +3 | head -n 40)"
        fi
        missing_hdrs=$(headers_of "$MSGS/plain.eml" | grep -v '^$' | grep -vxF -f <(headers_of "$f") || true)
        if [[ -z $missing_hdrs ]]; then
            ok "a: every header sent is there unchanged"
        else
            not_ok "a: every header sent is there unchanged" "missing or altered:
$missing_hdrs
delivered header:
$(headers_of "$f")"
        fi
    else
        not_ok "a: delivered to ~/Maildir/new" "$WHY"
    fi
else
    not_ok "a: plain message accepted over SMTP" "$WHY"
    WHY=
fi

# ---------------------------------------------------------------------------
# b. X-Spam-Flag: YES -> ~/Maildir/.Junk/new
# ---------------------------------------------------------------------------
MARK_B="e2e-b-$TAG-$RANDOM$RANDOM"
make_msg spam "$MARK_B" "X-Spam-Flag: YES" "X-Spam-Status: Yes, score=99.0 required=5.0"
if send_msg spam; then
    QID_B=$QID
    if wait_delivered "$QID_B" "$MARK_B" "$MD"; then
        where=$(files_with "$MD" "$MARK_B")
        if [[ $(count_with "$MD/.Junk/new" "$MARK_B") -eq 1 && $(count_with "$MD" "$MARK_B") -eq 1 ]]; then
            ok "b: X-Spam-Flag: YES message filed in ~/Maildir/.Junk/new (queued as $QID_B)"
        else
            not_ok "b: X-Spam-Flag: YES message filed in ~/Maildir/.Junk/new" "found in: ${where//"$MD"\//}"
        fi
    else
        not_ok "b: X-Spam-Flag: YES message delivered" "$WHY"
    fi
else
    not_ok "b: X-Spam-Flag: YES message accepted over SMTP" "$WHY"
    WHY=
fi

# ---------------------------------------------------------------------------
# c. unwritable Maildir -> deferred (4.x.x), kept in the queue; after the fix
#    and a flush it is delivered: nothing lost.
#    The Maildir and its tmp/new/cur become root-owned 0755: whatever step
#    deliver takes (create in tmp/, rename into new/, mkdir a folder) it gets
#    EACCES, and as a non-owner it cannot chmod its way back.
# ---------------------------------------------------------------------------
LOCKED=("$MD" "$MD/tmp" "$MD/new" "$MD/cur")
lock_maildir() { chown root:root "${LOCKED[@]}" && chmod 0755 "${LOCKED[@]}"; }
unlock_maildir() { chown "$TEST_UID:$TEST_GID" "${LOCKED[@]}" && chmod 0700 "${LOCKED[@]}"; }

MARK_C="e2e-c-$TAG-$RANDOM$RANDOM"
make_msg deferred "$MARK_C"
lock_maildir
if send_msg deferred; then
    QID_C=$QID
    # Deferred = in the deferred queue, with its defer log (per-recipient status).
    deferred_c() { in_deferred "$QID_C" && [[ -n $(find "$QDIR/defer" -type f -name "$QID_C") ]]; }
    settled_c() { deferred_c || left_queue "$QID_C"; }
    if wait_mail settled_c && deferred_c; then
        # What postqueue -p shows for it: "QID size date sender", "(reason)", recipient.
        entry=$(postqueue -c "$CONF" -p 2>&1 |
            awk -v id="$QID_C" '$1 ~ ("^" id "[*!]?$") { p = 1 } p && /^$/ { exit } p')
        reason=$(grep -E '^[[:space:]]*\(' <<<"$entry" | sed 's/^[[:space:]]*//' | head -n 1 || true)
        # The enhanced status code of the deferral, as recorded in the queue's
        # defer log.  (When deliver's output starts with "4.x.x ...", Postfix
        # takes that as the DSN and strips it from the reason text, so the
        # code is not necessarily part of what postqueue -p prints.)
        dsn=$(find "$QDIR/defer" -type f -name "$QID_C" -exec sed -n 's/^status=//p' {} + 2>/dev/null | head -n 1)
        if [[ $dsn =~ ^4\.[0-9]{1,3}\.[0-9]{1,3}$ && -n $reason ]] && grep -qF "$RCPT" <<<"$entry"; then
            ok "c: deferred (dsn=$dsn) while the Maildir is unwritable; postqueue -p: $reason"
        else
            not_ok "c: deferred with a 4.x.x status and a reason in postqueue -p" "status in the defer log: '${dsn}'
postqueue -p entry:
$entry"
        fi
        leaked=$(files_with "$MD" "$MARK_C")
        if [[ -z $leaked ]]; then
            ok "c: nothing of the deferred message is in the Maildir"
        else
            not_ok "c: nothing of the deferred message is in the Maildir" "found: $leaked"
        fi
        unlock_maildir
        flush_rc=0
        postqueue -c "$CONF" -f >"$T/flush.log" 2>&1 || flush_rc=$?
        if wait_delivered "$QID_C" "$MARK_C" "$MD/new"; then
            if ((flush_rc != 0)); then
                not_ok "c: postqueue -c $CONF -f succeeds" "exit status $flush_rc: $(cat "$T/flush.log")"
            elif [[ $(count_with "$MD" "$MARK_C") -eq 1 ]]; then
                ok "c: after restoring permissions and postqueue -f, delivered exactly once to ~/Maildir/new"
            else
                not_ok "c: after the flush, delivered exactly once" "found: $(files_with "$MD" "$MARK_C")"
            fi
        else
            not_ok "c: after restoring permissions and postqueue -f, delivered to ~/Maildir/new" "$WHY
postqueue -f (exit status $flush_rc): $(cat "$T/flush.log")"
        fi
    else
        if left_queue "$QID_C"; then
            WHY="it left the queue instead (bounced, or delivered despite the unwritable Maildir? see the log below)"
        else
            WHY="not in the deferred queue after ${LAST_WAIT}s (deliver still running?)"
        fi
        not_ok "c: deferred while the Maildir is unwritable" "$WHY
postqueue -j: $(queue_json)
files in the Maildir: $(find "$MD" -type f | sed "s|^$MD/||" | tr '\n' ' ')"
        WHY=
        unlock_maildir
    fi
else
    unlock_maildir
    not_ok "c: message accepted over SMTP" "$WHY"
    WHY=
fi

# ---------------------------------------------------------------------------
# d. a sender deliver's access table REJECTs bounces (5.7.1), with a plain
#    header block and with one padded past max_headers (10,001 fields): the
#    envelope checks do not depend on the headers.
# ---------------------------------------------------------------------------
PAD=()
for i in $(seq 1 10001); do PAD+=("X-Pad-$i: padding"); done
for variant in plain padded; do
    MARK_D="e2e-d-$variant-$TAG-$RANDOM$RANDOM"
    if [[ $variant == padded ]]; then
        make_msg "reject-$variant" "$MARK_D" "${PAD[@]}"
    else
        make_msg "reject-$variant" "$MARK_D"
    fi
    size=$(wc -c <"$MSGS/reject-$variant.eml")
    if send_msg "reject-$variant" "$REJECTED"; then
        QID_D=$QID
        bounced_d() { grep -E ": $QID_D: to=<$RCPT>.*status=bounced" "$MAILLOG" | grep -qF "e2e rejected sender"; }
        if ! wait_mail left_queue "$QID_D"; then
            not_ok "d: $variant message ($size bytes) from a REJECTed sender bounces" \
                "still in the queue after ${LAST_WAIT}s"
        elif ! wait_until 5 bounced_d; then
            not_ok "d: $variant message ($size bytes) from a REJECTed sender bounces" \
                "no status=bounced with deliver's reply for $QID_D in the log; files in the Maildir: $(files_with "$MD" "$MARK_D")"
        elif [[ $(count_with "$MD" "$MARK_D") -ne 0 ]]; then
            not_ok "d: $variant message from a REJECTed sender is not in the Maildir" "found: $(files_with "$MD" "$MARK_D")"
        else
            ok "d: $variant message ($size bytes) from a REJECTed sender bounced (queued as $QID_D), nothing delivered"
        fi
    else
        not_ok "d: $variant message from a REJECTed sender accepted over SMTP" "$WHY"
        WHY=
    fi
done

# Nothing may be left in the queue (no stray bounces, no lost deferrals).
LOG_QID=
if wait_until 5 queue_empty; then
    ok "queue of the instance is empty at the end"
else
    not_ok "queue of the instance is empty at the end" "$(postqueue -c "$CONF" -p 2>&1)"
fi

finished=1
exit 0
