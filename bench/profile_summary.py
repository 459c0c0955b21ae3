#!/usr/bin/env python3
"""Summarizes a perf profile of bench/peer_modes for bench/profile_peer.sh:
where the CPU time of peer calls goes (libcurl, the kernel, libc's malloc and
locks, jansson, meshnode's own modules), as markdown on stdout.

  profile_summary.py SELF CHILDREN NM_LIB NM_BIN

SELF and CHILDREN are `perf report --stdio -t '|' --sort dso,sym -g none`
without and with --children; NM_LIB is `nm -A --defined-only` of
libmeshnode.a, which names the module (object file) of each of our symbols,
static ones included; NM_BIN is `nm --defined-only` of peer_modes, whose
symbols that are not in the library are the harness's. A static function
the compiler inlined is in neither list: perf still names it (from the
debug information) and it is shown as inlined."""
import collections
import re
import sys

BINARY = "peer_modes"
MALLOC = re.compile(r"malloc|free|calloc|realloc|_int_|tcache|unlink_chunk|arena|"
                    r"sysmalloc|memalign|brk")
LOCKS = re.compile(r"mutex|lll_lock|lll_unlock|futex|pthread_cond|pthread_rwlock|spin")
SYSCALLS = re.compile(r"^(__)?(libc_)?(poll|send|sendto|recv|recvfrom|read|write|"
                      r"connect|close|epoll|select|getsockopt|setsockopt)")
STRINGS = re.compile(r"^(__)?(str|mem|wmem|stp)")
CURL_DEPS = ("libssl", "libcrypto", "libnghttp2", "libz.", "libbrotli", "libzstd",
             "libidn2", "libpsl", "libssh", "librtmp", "libgssapi", "libkrb5",
             "libk5crypto", "libldap", "liblber", "libunistring", "libsasl")


def rows(path, children):
    """(children %, self %, dso, symbol) of each line of a perf report."""
    out = []
    for line in open(path, errors="replace"):
        if line.startswith("#") or "|" not in line:
            continue
        f = [x.strip() for x in line.split("|")]
        try:
            if children:
                ch, se, dso, sym = float(f[0].rstrip("%")), float(f[1].rstrip("%")), f[2], f[3]
            else:
                se, dso, sym = float(f[0].rstrip("%")), f[1], f[2]
                ch = se
        except (ValueError, IndexError):
            continue
        sym = re.sub(r"^\[.\] ", "", sym)
        sym = re.sub(r"@.*$", "", sym).replace(" (inlined)", "")
        out.append((ch, se, dso, sym))
    return out


def modules(path):
    mod = {}
    for line in open(path, errors="replace"):
        m = re.match(r".*?:([^:]+)\.o:[0-9a-f]+ [tTwWdDbBrR] (\S+)$", line.strip())
        if m:
            mod.setdefault(m.group(2), m.group(1))
    return mod


HARNESS = set()


def module_of(sym, mod):
    if sym in HARNESS:
        return None
    m = mod.get(sym, "inlined")
    if m == "client":  # http/client.c and consul/client.c share the object name
        m = "consul client" if sym.startswith("consul") else "http client"
    return m


def group(dso, sym, mod):
    if dso.startswith("[kernel"):
        return "kernel (TCP over loopback, poll, scheduling)"
    if dso == "[vdso]":
        return "vdso (clock_gettime)"
    if dso.startswith("libcurl"):
        return "libcurl"
    if dso.startswith(CURL_DEPS):
        return "libcurl's libraries (TLS, compression, HTTP/2)"
    if dso.startswith("libjansson"):
        return "jansson"
    if dso.startswith("libc.so") or dso.startswith("ld-linux"):
        if MALLOC.search(sym):
            return "libc: malloc and free"
        if LOCKS.search(sym):
            return "libc: locks"
        if SYSCALLS.search(sym):
            return "libc: system call wrappers (poll, send, recv)"
        if STRINGS.search(sym):
            return "libc: string functions (strcmp, memcpy, ...)"
        return "libc: other"
    if dso == BINARY:
        m = module_of(sym, mod)
        if m == "inlined":
            return "meshnode: functions inlined (module not known)"
        return "meshnode: " + m if m else "bench harness (peer_modes.c, peer_api.c)"
    return "other: " + dso


def pct(x):
    return "%.1f %%" % x


def main():
    self_rows = rows(sys.argv[1], False)
    child_rows = rows(sys.argv[2], True)
    mod = modules(sys.argv[3])
    for line in open(sys.argv[4], errors="replace"):
        f = line.split()
        if len(f) == 3 and f[2] not in mod:
            HARNESS.add(f[2])
    total = sum(r[1] for r in self_rows) or 1.0

    groups = collections.Counter()
    for _, se, dso, sym in self_rows:
        groups[group(dso, sym, mod)] += se * 100.0 / total
    print("| where the time goes (self) | share |")
    print("|---|---|")
    ours = sum(v for k, v in groups.items() if k.startswith("meshnode:"))
    for k, v in groups.most_common():
        if v >= 0.05:
            print("| %s | %s |" % (k, pct(v)))
    print("| **meshnode's own code, all modules** | **%s** |" % pct(ours))
    print()
    irq = [(se, sym) for _, se, dso, sym in self_rows
           if dso.startswith("[kernel") and sym.endswith("irq_enable")]
    if irq and irq[0][0] * 100.0 / total > 10:
        print("The kernel's self time piles up on `%s` (%s): in this VM a sample that falls"
              % (irq[0][1], pct(irq[0][0] * 100.0 / total)))
        print("while interrupts are off is taken when they are enabled again, so within the")
        print("kernel only the total (and the children below) mean much.")
        print()

    print("Top symbols by self time:")
    print()
    print("| symbol | where | self |")
    print("|---|---|---|")
    for _, se, dso, sym in sorted(self_rows, key=lambda r: -r[1])[:12]:
        print("| `%s` | %s | %s |" % (sym, group(dso, sym, mod), pct(se * 100.0 / total)))
    print()

    print("meshnode's functions by children (inclusive) time, the calls they make included:")
    print()
    print("| function | module | children | self |")
    print("|---|---|---|---|")
    seen = set()
    shown = 0
    for ch, se, dso, sym in sorted(child_rows, key=lambda r: -r[0]):
        m = module_of(sym, mod) if dso == BINARY else None
        if m is None or sym in seen:
            continue
        seen.add(sym)
        print("| `%s` | %s | %s | %s |" % (sym, m, pct(ch), pct(se)))
        shown += 1
        if shown == 14:
            break


if __name__ == "__main__":
    main()
