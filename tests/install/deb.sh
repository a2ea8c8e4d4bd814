#!/usr/bin/env bash
# tests/install/deb.sh - the Debian package, installed and removed as an
# administrator does it.
#
# Usage (as root):  tests/install/deb.sh [DEB]
#
# Without DEB, builds one with `cargo deb` (a release build; needs
# cargo-deb). Then:
#   - lintian: no error and no warning (overrides are in the package);
#   - dpkg -i; the files are where Debian wants them; the units are not
#     enabled; systemd-analyze verify accepts them;
#   - the shipped /etc/deliver/rules.toml means the embedded default rules
#     (--test and `deliver check` through the installed binary);
#   - the Postfix end-to-end test (tests/e2e/postfix.sh) with /usr/bin/deliver
#     as the mailbox_command;
#   - `man deliver` and `man deliver.rules` render, without groff warnings;
#     the bash completion loads, the zsh and fish ones parse;
#   - dpkg -r keeps the conffile; dpkg -P removes it, /etc/deliver and
#     /var/cache/deliver.
#
# It leaves the machine as it found it: it refuses to run when a deliver
# package is installed or /etc/deliver exists, keeps a copy of an existing
# /var/cache/deliver (which purging removes) and puts it back, and purges
# the package on every exit path.
#
# Needs: dpkg, lintian, man-db, bash-completion, zsh, fish, systemd
# (systemd-analyze), and what tests/e2e/postfix.sh needs. scripts/test
# installs them.
#
# Output: one "ok - ..." / "not ok - ..." line per check, then
# "install: N passed, M failed"; exit status 1 if M > 0.

# Functions below are called from the trap, which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C.UTF-8

pass=0
fail=0
installed=0
CACHE_COPY=
W=

ok() {
    echo "ok - $1"
    pass=$((pass + 1))
}
not_ok() {
    echo "not ok - $1"
    [[ -n ${2:-} ]] && sed 's/^/# /' <<<"$2"
    fail=$((fail + 1))
}
# check "description" command...: ok when the command succeeds.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$what"; else not_ok "$what" "$out"; fi
}
bail() {
    echo "Bail out! $1"
    [[ -n ${2:-} ]] && sed 's/^/# /' <<<"$2"
    exit 1
}

cleanup() {
    local rc=$?
    set +e
    if ((installed)); then
        dpkg -P deliver >/dev/null 2>&1 || echo "# cleanup: dpkg -P deliver failed"
    fi
    if [[ -n $CACHE_COPY ]]; then
        rm -rf /var/cache/deliver
        cp -a "$CACHE_COPY/deliver" /var/cache/deliver && rm -rf "$CACHE_COPY"
    fi
    [[ -n $W ]] && rm -rf "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---------------------------------------------------------------------------
# Preflight
# ---------------------------------------------------------------------------
[[ $EUID -eq 0 ]] || bail "must run as root (installs a package)"
if dpkg-query -W -f '${Status}' deliver 2>/dev/null | grep -qv 'not-installed'; then
    bail "a deliver package is already installed: not touching it"
fi
[[ -e /etc/deliver ]] && bail "/etc/deliver exists: not touching an administrator's rules"
# dovecot-core's link of the same name, which the package diverts.
DOVECOT_MAN=$(readlink /usr/share/man/man1/deliver.1.gz || true)
for tool in dpkg lintian man zsh fish systemd-analyze; do
    command -v "$tool" >/dev/null || bail "missing tool: $tool (scripts/test installs it)"
done
[[ -f /usr/share/bash-completion/bash_completion ]] || bail "missing bash-completion"

W=$(mktemp -d "${TMPDIR:-/tmp}/deliver-install.XXXXXX")
DEB=${1:-}
if [[ -z $DEB ]]; then
    command -v cargo-deb >/dev/null || bail "cargo-deb missing: cargo install cargo-deb --locked"
    cargo deb --locked >"$W/cargo-deb.log" 2>&1 || bail "cargo deb failed" "$(tail -20 "$W/cargo-deb.log")"
    DEB=$(tail -1 "$W/cargo-deb.log")
fi
[[ -f $DEB ]] || bail "no package: $DEB"
echo "# package: $DEB"

# ---------------------------------------------------------------------------
# The package file
# ---------------------------------------------------------------------------
# E: and W: lines are failures (I: and overridden tags are not).
lintian --pedantic "$DEB" >"$W/lintian" 2>&1 || true
if grep -E '^[EW]: ' "$W/lintian" >/dev/null; then
    not_ok "lintian: no error, no warning" "$(cat "$W/lintian")"
else
    ok "lintian: no error, no warning"
fi
check "conffiles: /etc/deliver/rules.toml alone" \
    bash -c "[[ \$(dpkg-deb -f '$DEB' Package) == deliver ]] &&
             [[ \$(dpkg-deb --ctrl-tarfile '$DEB' | tar -xO ./conffiles) == /etc/deliver/rules.toml ]]"

# ---------------------------------------------------------------------------
# Install
# ---------------------------------------------------------------------------
[[ -e /var/cache/deliver ]] && {
    CACHE_COPY=$(mktemp -d "${TMPDIR:-/tmp}/deliver-cache.XXXXXX")
    cp -a /var/cache/deliver "$CACHE_COPY/deliver"
    rm -rf /var/cache/deliver
}
installed=1
# Minimal images exclude man pages and docs from installs (path-exclude in
# /etc/dpkg/dpkg.cfg.d): this package's are part of what is tested.
if dpkg -i --path-include='/usr/share/man/*' --path-include='/usr/share/doc/deliver/*' \
    "$DEB" >"$W/dpkg-i" 2>&1; then
    ok "dpkg -i"
else
    bail "dpkg -i failed" "$(cat "$W/dpkg-i")"
fi

files_ok() {
    local f
    for f in /usr/bin/deliver \
        /usr/share/man/man1/deliver.1.gz /usr/share/man/man5/deliver.rules.5.gz \
        /usr/share/bash-completion/completions/deliver \
        /usr/share/zsh/vendor-completions/_deliver \
        /usr/share/fish/vendor_completions.d/deliver.fish \
        /usr/share/doc/deliver/copyright /usr/share/doc/deliver/changelog.Debian.gz \
        /usr/share/doc/deliver/examples/main.cf \
        /usr/share/doc/deliver/examples/systemd/vmail.conf \
        /usr/lib/systemd/system/deliver-lmtp.socket \
        /usr/lib/systemd/system/deliver-lmtp.service \
        /etc/deliver/rules.toml; do
        [[ -f $f ]] || {
            echo "missing: $f"
            return 1
        }
    done
    [[ $(stat -c '%U:%G %a' /usr/bin/deliver) == "root:root 755" ]] || return 1
    [[ $(stat -c '%U:%G %a' /var/cache/deliver) == "root:root 755" ]] || {
        stat /var/cache/deliver
        return 1
    }
}
check "files in place; /var/cache/deliver root:root 0755" files_ok
check "the binary is stripped" bash -c "! readelf -S /usr/bin/deliver | grep -q '\.debug_info\|\.symtab'"
check "the installed completions are the binary's own" bash -c '
    diff <(/usr/bin/deliver completions bash) /usr/share/bash-completion/completions/deliver &&
    diff <(/usr/bin/deliver completions zsh) /usr/share/zsh/vendor-completions/_deliver &&
    diff <(/usr/bin/deliver completions fish) /usr/share/fish/vendor_completions.d/deliver.fish'

units_not_enabled() {
    # Enabling would leave symlinks in /etc/systemd/system.
    ! find /etc/systemd/system -name 'deliver-lmtp*' | grep -q .
}
check "the LMTP units are not enabled" units_not_enabled
verify_units() {
    local out
    out=$(systemd-analyze verify /usr/lib/systemd/system/deliver-lmtp.socket \
        /usr/lib/systemd/system/deliver-lmtp.service 2>&1) || {
        echo "$out"
        return 1
    }
    # Unknown keys are warnings with exit status 0.
    [[ -z $out ]] || {
        echo "$out"
        return 1
    }
}
check "systemd-analyze verify: the units" verify_units

# ---------------------------------------------------------------------------
# The shipped conffile is the embedded default, through the installed binary
# ---------------------------------------------------------------------------
default_rules() {
    local out
    out=$(/usr/bin/deliver --test -f s@example.org -a u@example.org \
        <examples/messages/spam.eml) || return 1
    grep -q '^  system  embedded default rules$' <<<"$out" || {
        echo "$out"
        return 1
    }
    grep -q '^  folder     Junk$' <<<"$out" || {
        echo "$out"
        return 1
    }
    out=$(/usr/bin/deliver check) && [[ -z $out ]] || {
        echo "deliver check: $out"
        return 1
    }
}
check "the shipped /etc/deliver/rules.toml means the embedded default" default_rules
check "a mistyped option exits 75 and names the nearest" bash -c '
    out=$(/usr/bin/deliver --tset 2>&1 </dev/null); rc=$?
    [[ $rc == 75 && $out == *"did you mean '\''--test'\''?"* ]] || { echo "exit $rc: $out"; exit 1; }'

# ---------------------------------------------------------------------------
# Postfix end to end, with the installed binary as mailbox_command
# ---------------------------------------------------------------------------
if E2E_IN_PLACE=1 bash tests/e2e/postfix.sh /usr/bin/deliver >"$W/e2e" 2>&1; then
    ok "Postfix end-to-end test with /usr/bin/deliver ($(tail -1 "$W/e2e"))"
else
    not_ok "Postfix end-to-end test with /usr/bin/deliver" "$(cat "$W/e2e")"
fi

# ---------------------------------------------------------------------------
# Manual pages and completions
# ---------------------------------------------------------------------------
man_renders() {
    local page=$1 want=$2 file=$3 warn text
    # Adjusted text: runs of spaces are squeezed before looking.
    text=$(MANWIDTH=80 man -P cat "$page" 2>&1 | tr -s ' ')
    grep -qF -- "$want" <<<"$text" || {
        head -5 <<<"$text"
        echo "man $page: no \"$want\""
        return 1
    }
    warn=$(MANWIDTH=80 man --warnings -E UTF-8 -l "$file" 2>&1 >/dev/null)
    [[ -z $warn ]] || {
        echo "$warn"
        return 1
    }
}
dovecot_aside() {
    [[ -z $DOVECOT_MAN ]] && return 0
    [[ $(readlink /usr/share/man/man1/deliver.dovecot.1.gz) == "$DOVECOT_MAN" ]]
}
check "dovecot-core's deliver(1) link diverted aside (when installed)" dovecot_aside
check "man deliver renders, no warnings" \
    man_renders deliver "deliver - local delivery agent for Postfix" /usr/share/man/man1/deliver.1.gz
check "man deliver.rules renders, no warnings" \
    man_renders deliver.rules "deliver.rules - rules files of deliver(1)" /usr/share/man/man5/deliver.rules.5.gz
check "bash: the completion loads and completes options" bash -c '
    source /usr/share/bash-completion/bash_completion
    source /usr/share/bash-completion/completions/deliver
    complete -p deliver | grep -q "_deliver deliver$" || exit 1
    COMP_WORDS=(deliver --us); COMP_CWORD=1; COMP_LINE="deliver --us"; COMP_POINT=${#COMP_LINE}
    _deliver deliver --us deliver
    [[ " ${COMPREPLY[*]} " == *" --user-rules "* ]] || { echo "COMPREPLY: ${COMPREPLY[*]}"; exit 1; }'
check "zsh: the completion parses" zsh -n /usr/share/zsh/vendor-completions/_deliver
check "fish: the completion parses and completes options" fish -c '
    source /usr/share/fish/vendor_completions.d/deliver.fish
    complete -C "deliver --user-r" | string match -q -- "--user-rules*"'

# ---------------------------------------------------------------------------
# Remove, then purge
# ---------------------------------------------------------------------------
echo '# an edit of the admin' >>/etc/deliver/rules.toml
check "dpkg -r" dpkg -r deliver
removed_ok() {
    [[ ! -e /usr/bin/deliver && ! -e /usr/lib/systemd/system/deliver-lmtp.service ]] || return 1
    grep -q '^# an edit of the admin$' /etc/deliver/rules.toml || return 1
    [[ $(dpkg-query -W -f '${Status}' deliver) == "deinstall ok config-files" ]]
}
check "after dpkg -r: the files gone, the edited conffile kept" removed_ok
check "dpkg -P" dpkg -P deliver
purged_ok() {
    [[ ! -e /etc/deliver && ! -e /var/cache/deliver ]] || {
        ls -la /etc/deliver /var/cache/deliver
        return 1
    }
    ! dpkg-query -W deliver >/dev/null 2>&1 || return 1
    # The diversion of dovecot-core's deliver(1) link is gone (preinst).
    [[ -z $(dpkg-divert --list '*deliver*') ]] || {
        dpkg-divert --list '*deliver*'
        return 1
    }
    [[ $DOVECOT_MAN == "$(readlink /usr/share/man/man1/deliver.1.gz || true)" ]] || {
        echo "deliver.1.gz: was a link to '$DOVECOT_MAN', now: $(ls -l /usr/share/man/man1/deliver.1.gz 2>&1)"
        return 1
    }
}
check "after dpkg -P: /etc/deliver, /var/cache/deliver and the diversion gone" purged_ok
installed=0

echo "install: $pass passed, $fail failed"
((fail == 0))
