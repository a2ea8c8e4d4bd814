#!/usr/bin/env python3
"""LMTP driver for benches/lmtp.sh: sends every message of a corpus list over
K concurrent sessions to an LMTP socket (UNIX path or host:port), one
recipient per transaction, and checks every reply is 2xx.

usage: lmtp_driver.py SOCKET LIST --sessions K --rcpt ADDR [--pid PID]

Prints msgs/s and, with --pid, the service's CPU time per message: user +
system time of PID and every process under it, each with the time of its
children that ended (/proc/*/stat, before and after). deliver lmtp is one
process; dovecot's master counts its lmtp, auth and other processes, also
those that ended during the run."""
import argparse, os, socket, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("socket")
ap.add_argument("list")
ap.add_argument("--sessions", type=int, default=1)
ap.add_argument("--rcpt", default="alice@example.test")
ap.add_argument("--pid", type=int)
a = ap.parse_args()

paths = [l.strip() for l in open(a.list) if l.strip()]
msgs = []
for p in paths:
    raw = open(p, "rb").read()
    if raw.startswith(b"From "):  # the From_ line is local(8)'s, not the message's
        raw = raw.split(b"\n", 1)[1]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    body = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)
    sender = b"sender@example.org"
    msgs.append((sender, body))

def cpu(root):
    """CPU seconds (user, system) of root and its descendants, with the
    time of their children that ended."""
    if not root:
        return (0.0, 0.0)
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            user = int(f[11]) + int(f[13])
            system = int(f[12]) + int(f[14])
            procs[int(d)] = (int(f[1]), (user, system))
    tree, todo = set(), [root]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, (pp, _) in procs.items() if pp == p and c not in tree]
    hz = os.sysconf("SC_CLK_TCK")
    return tuple(sum(procs[p][1][i] for p in tree if p in procs) / hz for i in (0, 1))

def connect():
    if ":" in a.socket and not a.socket.startswith("/"):
        h, p = a.socket.rsplit(":", 1)
        s = socket.create_connection((h, int(p)))
    else:
        s = socket.socket(socket.AF_UNIX)
        s.connect(a.socket)
    return s

errors = []

def session(part):
    s = connect()
    f = s.makefile("rb")
    def reply():
        while True:
            l = f.readline()
            if not l:
                raise RuntimeError("closed")
            if l[3:4] != b"-":
                return l
    def expect(line, code):
        r = reply()
        if not r.startswith(code):
            errors.append((line, r))
    reply()
    s.sendall(b"LHLO driver\r\n"); expect("LHLO", b"250")
    rc = a.rcpt.encode()
    for sender, body in part:
        # Pipelined, as Postfix's lmtp client does.
        s.sendall(b"MAIL FROM:<" + sender + b">\r\nRCPT TO:<" + rc + b">\r\nDATA\r\n")
        expect("MAIL", b"250"); expect("RCPT", b"250"); expect("DATA", b"354")
        s.sendall(body + b".\r\n")
        expect("message", b"250")
    s.sendall(b"QUIT\r\n")
    s.close()

parts = [msgs[i::a.sessions] for i in range(a.sessions)]
c0 = cpu(a.pid)
t = time.monotonic()
ths = [threading.Thread(target=session, args=(p,)) for p in parts]
for th in ths: th.start()
for th in ths: th.join()
dt = time.monotonic() - t
c1 = cpu(a.pid)
n = len(msgs)
if errors:
    print(f"ERRORS: {len(errors)}: {errors[:3]}")
    raise SystemExit(1)
user, system = ((c1[i] - c0[i]) / n * 1000 for i in (0, 1))
extra = f", service CPU {user + system:.3f} ms/msg (user {user:.3f}, system {system:.3f})" if a.pid else ""
print(f"lmtp K={a.sessions} N={n}: {n / dt:.0f} msgs/s, {dt / n * 1000:.3f} ms per message{extra}")
