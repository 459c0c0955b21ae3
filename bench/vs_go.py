"""Helpers of bench/vs_go.sh (meshnode against the reference design in Go).

  vs_go.py passing CADDR SERVICE PORT T0_NS
      waits (up to 30 s) until Consul lists an instance of SERVICE on PORT
      as passing; prints the milliseconds since T0_NS (CLOCK_REALTIME, as
      `date +%s%N` gives it), or "timeout".
  vs_go.py table RESULTS_TSV META_FILE
      prints the "## Against the reference design" section of
      bench/RESULTS.md from the records the script wrote.

A record is one tab-separated line: round, row, conns, target, value fields.
For a load row the values are req/s, p99 in ms and the count of non-2xx
answers; for a memory or start row, one figure.
"""

import json
import statistics
import sys
import time
import urllib.request


def passing(caddr, service, port, t0_ns):
    url = f"{caddr}/v1/health/service/{service}?passing=1"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                entries = json.load(r)
            if any(e["Service"]["Port"] == port for e in entries):
                print(round((time.time_ns() - t0_ns) / 1e6))
                return
        except OSError:
            pass
        time.sleep(0.005)
    print("timeout")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def load(path):
    recs = {}
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) < 5:
            continue
        rnd, row, conns, target = f[0], f[1], f[2], f[3]
        vals = [float(v) for v in f[4:]]
        recs.setdefault((row, conns, target), {})[rnd] = vals
    return recs


def ratio_median(recs, key_a, key_b, field, invert=False):
    """Median over the rounds of a's field / b's field (b / a with invert),
    with the rounds' ratios for the record."""
    a, b = recs.get(key_a, {}), recs.get(key_b, {})
    rs = []
    for rnd in sorted(set(a) & set(b)):
        x, y = a[rnd][field], b[rnd][field]
        if invert:
            x, y = y, x
        if y > 0:
            rs.append(x / y)
    return median(rs), rs


def fmt(x, nd=2):
    return "n/a" if x != x else f"{x:,.{nd}f}"


def table(path, meta):
    recs = load(path)
    out = []
    out.append("## Against the reference design (issue 14)")
    out.append("")
    out.extend(open(meta).read().rstrip("\n").split("\n"))
    out.append("")
    out.append("| row | conns | Go req/s | Go p99 (ms) | meshnode req/s | meshnode p99 (ms) "
               "| meshnode / Go req/s (target ≥ 1.0) | meshnode p99 / Go p99 (target ≤ 0.33) "
               "| non-2xx (Go, meshnode) |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    misses = []
    rows = ["GET /users/{id}", "POST /users", "GET /health", "POST /orders"]
    conns_seen = sorted({k[1] for k in recs if k[0] in rows}, key=int)
    for row in rows:
        for c in conns_seen:
            go, mn = recs.get((row, c, "go"), {}), recs.get((row, c, "meshnode"), {})
            if not go or not mn:
                continue
            g = [median([v[i] for v in go.values()]) for i in range(3)]
            m = [median([v[i] for v in mn.values()]) for i in range(3)]
            rq, rqs = ratio_median(recs, (row, c, "meshnode"), (row, c, "go"), 0)
            lp, _ = ratio_median(recs, (row, c, "meshnode"), (row, c, "go"), 1)
            goal = 3.0 if row == "POST /orders" else 1.0
            mark_rq = "met" if rq >= goal else "**not met**"
            mark_lp = "met" if lp <= 1 / 3 else "**not met**"
            if rq < goal:
                misses.append(f"{row} c{c} req/s {rq:.2f}x (target {goal:.1f}x)")
            if lp > 1 / 3:
                misses.append(f"{row} c{c} p99 {lp:.2f} of Go's (target ≤ 0.33)")
            out.append(f"| `{row}` | {c} | {fmt(g[0], 0)} | {fmt(g[1])} | {fmt(m[0], 0)} | {fmt(m[1])} "
                       f"| **{rq:.2f}** ({'; '.join(f'{x:.2f}' for x in rqs)}) {mark_rq}"
                       f"{' (target ≥ 3.0)' if goal == 3.0 else ''} | **{lp:.2f}** {mark_lp} "
                       f"| {int(sum(v[2] for v in go.values()))}, {int(sum(v[2] for v in mn.values()))} |")
    out.append("")
    out.append("Bare civetweb (bench/bare.c, one write per response, the same thread count as "
               "meshnode's default) on the same path:")
    out.append("")
    out.append("| row | conns | bare req/s | bare p99 (ms) | meshnode req/s | meshnode / bare (target ≥ 0.95) |")
    out.append("|---|---|---|---|---|---|")
    for c in conns_seen:
        row = "GET /users/{id}"
        bare, mn = recs.get((row, c, "bare"), {}), recs.get((row, c, "meshnode"), {})
        if not bare or not mn:
            continue
        b = [median([v[i] for v in bare.values()]) for i in range(2)]
        m = median([v[0] for v in mn.values()])
        r, rs = ratio_median(recs, (row, c, "meshnode"), (row, c, "bare"), 0)
        if r < 0.95:
            misses.append(f"GET /users/{{id}} c{c} {r:.2f} of bare civetweb (target ≥ 0.95)")
        out.append(f"| `{row}` | {c} | {fmt(b[0], 0)} | {fmt(b[1])} | {fmt(m, 0)} "
                   f"| **{r:.2f}** ({'; '.join(f'{x:.2f}' for x in rs)}) {'met' if r >= 0.95 else '**not met**'} |")
    out.append("")
    out.append("The same meshnode with `database.driver = \"memory\"` (users in memory, as Go keeps "
               "them; not the default), to tell the store from the rest:")
    out.append("")
    out.append("| row | conns | Go req/s | meshnode memory req/s | meshnode memory p99 (ms) "
               "| meshnode memory / Go | meshnode SQLite / meshnode memory |")
    out.append("|---|---|---|---|---|---|---|")
    for row in ["GET /users/{id}", "POST /users"]:
        for c in conns_seen:
            mem = recs.get((row, c, "memory"), {})
            if not mem:
                continue
            g = median([v[0] for v in recs.get((row, c, "go"), {}).values()])
            m = [median([v[i] for v in mem.values()]) for i in range(2)]
            r, rs = ratio_median(recs, (row, c, "memory"), (row, c, "go"), 0)
            r2, _ = ratio_median(recs, (row, c, "meshnode"), (row, c, "memory"), 0)
            out.append(f"| `{row}` | {c} | {fmt(g, 0)} | {fmt(m[0], 0)} | {fmt(m[1])} "
                       f"| **{r:.2f}** ({'; '.join(f'{x:.2f}' for x in rs)}) | {r2:.2f} |")
    out.append("")
    out.append("| memory and start (each round's in brackets) | Go | meshnode | meshnode / Go | target |")
    out.append("|---|---|---|---|---|")
    for row, target, unit in [("peak RSS, GET /users/{id}", "≤ Go's", "MB"),
                              ("peak RSS, all rows", "≤ Go's", "MB"), ("peak RSS, orders", "", "MB"),
                              ("idle RSS", "≤ 8 MB", "MB"),
                              ("idle RSS, anonymous", "", "MB"),
                              ("start to passing", "", "ms")]:
        go, mn = recs.get((row, "-", "go"), {}), recs.get((row, "-", "meshnode"), {})
        if not go or not mn:
            continue
        g = median([v[0] for v in go.values()])
        m = median([v[0] for v in mn.values()])
        r = m / g if g else float("nan")
        verdict = ""
        if row.startswith("peak RSS") and target:
            verdict = "met" if m <= g else "**not met**"
        elif row == "idle RSS":
            verdict = "met" if m <= 8 else "**not met**"
        if verdict.endswith("not met**"):
            misses.append(f"{row} {m:.1f} {unit} ({target})")
        nd = 0 if unit == "ms" else 1
        rounds = lambda rr: "; ".join(fmt(rr[k][0], nd) for k in sorted(rr))
        out.append(f"| {row} ({unit}) | {fmt(g, nd)} ({rounds(go)}) | {fmt(m, nd)} ({rounds(mn)}) "
                   f"| {r:.2f} | {target} {verdict} |")
    out.append("")
    if misses:
        out.append("Targets not met in this run: " + "; ".join(misses) + ".")
    else:
        out.append("Every target met in this run.")
    print("\n".join(out))


if __name__ == "__main__":
    if sys.argv[1] == "passing":
        passing(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: vs_go.py passing|table ...")
