#!/usr/bin/env python3
"""Writes a synthetic mail log for timing `deliver report`: a year of a busy
server, LINES lines in syslog's traditional format, deliver's delivery lines
mixed with Postfix's own lines and deliver's warnings, as rsyslog writes
them to /var/log/mail.log.

Usage: benches/report_log.py LINES DELIVER_SHARE > mail.log
  LINES          lines to write (10000000 for BENCHMARKS.md)
  DELIVER_SHARE  the share of deliver's lines, 0 to 1 (1: every line is
                 deliver's, the report's worst case; 0.3: about what a
                 Postfix server that runs deliver for local mail logs)

The output is deterministic (a fixed seed). Don't commit it.
"""
import random
import sys

lines = int(sys.argv[1])
share = float(sys.argv[2])
rnd = random.Random(17)
months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
users = [f"user{i}@example.com" for i in range(300)]
senders = [f"s{i}@sender{i % 700}.example" for i in range(20000)] + [""]
folders = ["Lists/rust", "Lists/debian", "Invoices", "Held", "Newsletters"]
table_rules = [
    f"access\\ssender\\stexthash:/etc/postfix/sender_access\\skey\\ssender{i}.example:\\s{v}"
    for i in range(40)
    for v in ["REJECT", "DISCARD", "JUNK", "OK"]
]
# (action, weight)
actions = [("inbox", 60), ("folder", 12), ("junk", 15), ("discard", 3), ("reject", 8), ("defer", 2)]
choices = [a for a, w in actions for _ in range(w)]
out = sys.stdout
buf = []
t = 0.0
step = 365 * 86400 / lines
pid = 1000
n = 0


def stamp(t):
    d = int(t // 86400)
    m = 0
    while d >= days[m]:
        d -= days[m]
        m += 1
    s = int(t % 86400)
    return f"{months[m]} {d + 1:2d} {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


while n < lines:
    t += step
    ts = stamp(t)
    if rnd.random() >= share:
        q = f"{rnd.getrandbits(40):010X}"
        buf.append(f"{ts} mx postfix/local[{pid}]: {q}: to=<{rnd.choice(users)}>, relay=local, delay=0.1, status=sent (delivered to command: /usr/bin/deliver)\n")
        n += 1
        continue
    pid += 1
    action = rnd.choice(choices)
    sender = rnd.choice(senders)
    to = rnd.choice(users)
    size = rnd.randint(800, 200000)
    score = rnd.gauss(3, 4)
    folder = ""
    status = ""
    if action == "inbox":
        folder, rule = "INBOX", "default"
    elif action == "folder":
        folder = rnd.choice(folders)
        rule = f"rule\\s{folder.split('/')[-1].lower()}"
    elif action == "junk":
        folder = "Junk"
        score = abs(score) + 5
        rule = f"score\\s{score:.1f}\\s>=\\sjunk_threshold\\s5"
    elif action in ("discard", "reject"):
        rule = rnd.choice(table_rules)
        if action == "reject":
            status = f"5.7.1\\s<{sender}>:\\sSender\\saddress\\srejected:\\sAccess\\sdenied"
    else:
        rule = "rule\\sgreylist"
        status = "4.7.1\\sgreylisted,\\stry\\sagain\\slater"
    line = f"{ts} mx deliver[{pid}]: from=<{sender}> to=<{to}> msgid=<{rnd.getrandbits(48):x}@{sender.split('@')[-1] or 'x'}> size={size} action={action}"
    if folder:
        line += f" folder={folder}"
    line += f" score={score:.2f} rule={rule}"
    if status:
        line += f" status={status}"
    line += f" delay={rnd.random() / 20:.3f}\n"
    buf.append(line)
    n += 1
    if status and n < lines:
        buf.append(f"{ts} mx deliver[{pid}]: warning: {status.replace(chr(92) + 's', ' ')}\n")
        n += 1
    if len(buf) >= 10000:
        out.write("".join(buf))
        buf.clear()
out.write("".join(buf))
