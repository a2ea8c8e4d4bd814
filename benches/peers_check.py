#!/usr/bin/env python3
"""Check that every program delivered every message of the corpus, and that the
programs that apply rules routed each message the same way.

usage: peers_check.py CORPUS NAME=MAILDIR [NAME=MAILDIR ...]

Messages are told apart by their Message-ID (gen_corpus.py makes them unique).
For each program: the number of files per folder (Maildir++ folders: INBOX and
every .Name with a new/), messages delivered more than once, files left in a
tmp/, files that are not from the corpus. safecat applies no rules: every
message must be in its INBOX once. The others must agree per message (a folder,
or "discard" when the message is in no folder).

One difference is known and not counted as a failure: procmail matches header
text as it is written, while maildrop, Sieve and deliver match RFC 2047-decoded
values, so a message whose encoded Subject hides a scored word can go to Junk
everywhere but in procmail. Such a message is reported as "known".

Exit status: 0 when everything checks out, 1 otherwise. A summary on stdout.
"""
import collections
import os
import re
import sys

ENCODED = re.compile(rb"=\?[^?]+\?[bBqQ]\?")


def head(path):
    """The header fields of a file, as (lowercase name, raw value) pairs."""
    fields = []
    with open(path, "rb") as f:
        for line in f:
            if line in (b"\n", b"\r\n"):
                break
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1] = (fields[-1][0], fields[-1][1] + line)
            elif b":" in line:
                name, value = line.split(b":", 1)
                fields.append((name.strip().lower(), value))
    return fields


def msgid(path):
    for name, value in head(path):
        if name == b"message-id":
            return value.strip().decode("ascii", "replace")
    return None


def folders(maildir):
    out = [("INBOX", maildir)]
    for d in sorted(os.listdir(maildir)):
        p = os.path.join(maildir, d)
        if d.startswith(".") and d not in (".", "..") and os.path.isdir(os.path.join(p, "new")):
            out.append((d[1:], p))
    return out


def routing(maildir):
    """Message-ID -> list of folders; plus problems found."""
    where = collections.defaultdict(list)
    problems = []
    for folder, path in folders(maildir):
        for sub in ("new", "cur"):
            d = os.path.join(path, sub)
            if not os.path.isdir(d):
                continue
            for n in os.listdir(d):
                mid = msgid(os.path.join(d, n))
                if mid is None:
                    problems.append(f"{folder}/{sub}/{n}: no Message-ID")
                else:
                    where[mid].append(folder)
        tmp = os.path.join(path, "tmp")
        if os.path.isdir(tmp) and os.listdir(tmp):
            problems.append(f"{folder}/tmp: {len(os.listdir(tmp))} file(s) left")
    return where, problems


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    corpus = sys.argv[1]
    progs = [a.split("=", 1) for a in sys.argv[2:]]
    paths = [p for p in open(os.path.join(corpus, "list.txt")).read().split("\n") if p]
    ids = {}
    encoded = set()
    for p in paths:
        fields = head(p)
        mid = next((v.strip().decode("ascii", "replace") for n, v in fields if n == b"message-id"), None)
        ids[mid] = os.path.basename(p)
        if any(n in (b"subject", b"from", b"to") and ENCODED.search(v) for n, v in fields):
            encoded.add(mid)
    failed = False
    routes = {}
    for name, maildir in progs:
        where, problems = routing(maildir)
        counts = collections.Counter(",".join(v) for v in where.values())
        discarded = sum(1 for m in ids if m not in where)
        print(f"{name}: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())) +
              f" discarded={discarded}")
        for m, v in where.items():
            if m not in ids:
                problems.append(f"{m}: not a message of the corpus")
            elif len(v) > 1:
                problems.append(f"{ids[m]}: delivered {len(v)} times ({','.join(v)})")
        if name == "safecat":
            for m in ids:
                if where.get(m) != ["INBOX"]:
                    problems.append(f"{ids[m]}: not in INBOX once ({','.join(where.get(m, [])) or 'missing'})")
        for p in problems:
            print(f"  FAIL {name}: {p}")
            failed = True
        routes[name] = where
    deciders = [n for n, _ in progs if n != "safecat"]
    disagree = known = 0
    for mid, fname in ids.items():
        got = {n: ",".join(routes[n].get(mid, ["discard"])) for n in deciders}
        if len(set(got.values())) <= 1:
            continue
        majority, _ = collections.Counter(got.values()).most_common(1)[0]
        odd = [n for n, v in got.items() if v != majority]
        detail = " ".join(f"{n}={v}" for n, v in got.items())
        if odd == ["procmail"] and mid in encoded:
            known += 1
            print(f"  known {fname}: {detail} (procmail does not decode RFC 2047)")
        else:
            disagree += 1
            failed = True
            print(f"  DISAGREE {fname}: {detail}")
    print(f"messages={len(ids)} disagreements={disagree} known={known}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
