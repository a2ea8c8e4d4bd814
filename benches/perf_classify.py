#!/usr/bin/env python3
"""Where one program's CPU samples fall: its own code and each library
(user), page faults, and each system call (kernel). Reads `perf script`
output with call chains (`perf record -g`) on standard input.

usage: perf script -i perf.data -F comm,ip,sym,dso | python3 benches/perf_classify.py COMM
"""
import collections
import re
import sys

SYSCALL = re.compile(r"^(__x64_sys_|__do_sys_|__se_sys_)")


def classify(frames):
    """The bucket of one sample, from its frames (innermost first)."""
    if not any("[kernel.kallsyms]" in f for f in frames):
        dso = frames[0].rsplit("(", 1)[-1].rstrip(")") if frames else "?"
        return "user " + dso.rsplit("/", 1)[-1]
    syms = [f.split()[1] if len(f.split()) > 1 else "?" for f in frames]
    for s in syms:
        if SYSCALL.match(s):
            return "system call " + SYSCALL.sub("", s)
        if s in ("asm_exc_page_fault", "exc_page_fault"):
            return "page fault"
    return "kernel, other"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip())
    comm = sys.argv[1]
    counts = collections.Counter()
    sample_comm, frames = None, []
    for line in sys.stdin:
        if not line.strip():
            if sample_comm == comm:
                counts[classify(frames)] += 1
            sample_comm, frames = None, []
        elif not line[0].isspace():
            sample_comm, frames = line.split()[0], []
        else:
            frames.append(line.strip())
    if sample_comm == comm:
        counts[classify(frames)] += 1
    total = sum(counts.values())
    print(f"{total} samples of {comm}")
    for key, n in counts.most_common(15):
        print(f"{n:8d} {100 * n / total:5.1f}%  {key}")


if __name__ == "__main__":
    main()
