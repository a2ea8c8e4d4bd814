#!/usr/bin/env python3
# Peak RSS of `deliver lmtp` with 100 idle sessions (BENCHMARKS.md, W1 over
# LMTP). As root: the service runs as nobody. usage: benches/lmtp_rss.py BIN
import socket, subprocess, time, os, sys, tempfile
binp = sys.argv[1]
d = tempfile.mkdtemp(prefix="rss100-")
os.chmod(d, 0o755)
rules = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "w1.toml")).read() + '\n[lmtp]\nmailbox = "%s/vmail/%%d/%%n/Maildir"\nmax_sessions = 200\n' % d
open(d + "/rules.toml", "w").write(rules)
import pwd
nb = pwd.getpwnam("nobody")
for sub in ("vmail", "run"):
    os.makedirs(d + "/" + sub); os.chown(d + "/" + sub, nb.pw_uid, nb.pw_gid)
sock = d + "/run/lmtp.sock"
p = subprocess.Popen([binp, "lmtp", "--listen", "unix:" + sock, "--rules", d + "/rules.toml"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user="nobody", group="nogroup") if os.getuid() == 0 else None
try:
    for _ in range(100):
        if os.path.exists(sock): break
        time.sleep(0.05)
    conns = []
    for i in range(100):
        s = socket.socket(socket.AF_UNIX); s.connect(sock)
        s.recv(4096); s.sendall(b"LHLO bench\r\n"); s.recv(4096)
        conns.append(s)
    # One delivery, so that an engine is loaded.
    s = conns[0]
    s.sendall(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.example>\r\nDATA\r\n"); time.sleep(0.2); s.recv(4096)
    s.sendall(b"Subject: x\r\n\r\nbody\r\n.\r\n"); time.sleep(0.3); print("reply:", s.recv(4096))
    time.sleep(0.5)
    st = open("/proc/%d/status" % p.pid).read()
    print([l for l in st.splitlines() if l.startswith(("VmHWM", "VmRSS", "Threads"))])
finally:
    p.terminate(); p.wait()
    import shutil
    shutil.rmtree(d, ignore_errors=True)
