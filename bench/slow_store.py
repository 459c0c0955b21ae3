#!/usr/bin/env python3
"""A slow database, not a dead one (issue 21, point 1): a users node on
PostgreSQL on its shipped defaults (server.threads, pool size and timeouts
as shipped; only the port, the agent and the database are set), CLIENTS
clients creating users as fast as the node answers, and, from LOCK_AT
seconds in, a psql session holding LOCK TABLE users IN ACCESS EXCLUSIVE MODE
for LOCK_S seconds. Python 3 standard library and the test harness only;
everything is bounded in time and stopped by PID at exit.

    /usr/bin/python3 bench/slow_store.py [build/meshnode]

Environment: CLIENTS (600), LOCK_AT (5), LOCK_S (40), AFTER_S (5), and
CLIENT_TIMEOUT_S (5, a peer's default timeout: a client gives up then).

What it prints, for the whole run and for the locked window:
  - POST /users answers by status (201, 503 with and without Retry-After,
    other), client time-outs, and answers per second;
  - the slowest answer, and how many took longer than the client's timeout
    (a write that may commit after its caller gave up);
  - GET /health from a fresh connection every 100 ms (Connection: close,
    5 s timeout): p50, p99, max and failures;
  - GET /ready every second: its statuses and the store's word;
  - Consul: /v1/health/service/users?passing every second, how many polls
    listed the node.
"""

import http.client
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "integration"))

import harness  # noqa: E402
import pgserver  # noqa: E402

CLIENTS = int(os.environ.get("CLIENTS", "600"))
LOCK_AT = float(os.environ.get("LOCK_AT", "5"))
LOCK_S = float(os.environ.get("LOCK_S", "40"))
AFTER_S = float(os.environ.get("AFTER_S", "5"))
CLIENT_TIMEOUT_S = float(os.environ.get("CLIENT_TIMEOUT_S", "5"))


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


class Run:
    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.answers = []   # (t_start, t_end, status, retry_after)
        self.timeouts = []  # t_start
        self.health = []    # (t, seconds or None)
        self.ready = []     # (t, status, store)
        self.passing = []   # (t, bool)
        self.lock_window = (None, None)

    def client(self, n):
        conn = None
        i = 0
        while not self.stop.is_set():
            i += 1
            body = json.dumps({"name": "u", "email": "c%d-%d@example.com" % (n, i)})
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                      timeout=CLIENT_TIMEOUT_S)
                conn.request("POST", "/users", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                st, ra = r.status, r.getheader("Retry-After")
                with self.lock:
                    self.answers.append((t0, time.monotonic(), st, ra))
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (TimeoutError, OSError, http.client.HTTPException) as e:
                timed_out = isinstance(e, TimeoutError) or "timed out" in str(e)
                with self.lock:
                    if timed_out:
                        self.timeouts.append(t0)
                    else:
                        self.answers.append((t0, time.monotonic(), -1, None))
                if conn is not None:
                    conn.close()
                conn = None
                if not timed_out:
                    time.sleep(0.05)
        if conn is not None:
            conn.close()

    def prober(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                st, _, _ = harness.http_request(self.port, "GET", "/health",
                                                headers={"Connection": "close"}, timeout=5.0)
                self.health.append((t0, time.monotonic() - t0 if st == 200 else None))
            except OSError:
                self.health.append((t0, None))
            time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))

    def ready_poller(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                st, _, body = harness.http_request(self.port, "GET", "/ready", timeout=5.0)
                store = json.loads(body or b"{}").get("store")
                self.ready.append((t0, st, store, time.monotonic() - t0))
            except (OSError, ValueError):
                self.ready.append((t0, None, None, time.monotonic() - t0))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))

    def consul_poller(self, consul, service_id):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                ids = [e["Service"]["ID"] for e in consul.health_service("users", passing=True)]
                self.passing.append((t0, service_id in ids))
            except Exception:  # noqa: BLE001 - a poll that fails is reported as not listed
                self.passing.append((t0, False))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))


def summary(run, lo, hi, label):
    ans = [a for a in run.answers if lo <= a[0] < hi]
    tos = [t for t in run.timeouts if lo <= t < hi]
    by = {}
    for a in ans:
        key = str(a[2])
        if a[2] == 503:
            key = "503 (Retry-After)" if a[3] else "503 (no Retry-After)"
        by[key] = by.get(key, 0) + 1
    took = [a[1] - a[0] for a in ans]
    health = [h[1] for h in run.health if lo <= h[0] < hi]
    ok = [h for h in health if h is not None]
    ready = [r for r in run.ready if lo <= r[0] < hi]
    passing = [p[1] for p in run.passing if lo <= p[0] < hi]
    span = max(hi - lo, 1e-9)
    print("### %s (%.0f s)" % (label, span))
    print("| what | figure |")
    print("|---|---|")
    print("| POST /users answers | %d (%s) |" % (len(ans), ", ".join(
        "%s: %d" % kv for kv in sorted(by.items()))))
    print("| 201 per second | %.0f |" % (by.get("201", 0) / span))
    print("| client time-outs (%.0f s) | %d |" % (CLIENT_TIMEOUT_S, len(tos)))
    print("| slowest answer | %.2f s |" % (max(took) if took else 0.0))
    print("| answers slower than %.0f s | %d |" % (CLIENT_TIMEOUT_S,
                                                  sum(1 for t in took if t > CLIENT_TIMEOUT_S)))
    print("| GET /health p50 / p99 / max | %.1f / %.1f / %.1f ms (%d probes, %d failed) |" % (
        pct(ok, 50) * 1000, pct(ok, 99) * 1000, (max(ok) if ok else float("nan")) * 1000,
        len(health), len(health) - len(ok)))
    words = {}
    for r in ready:
        key = "%s %s" % (r[1], re.sub(r"[0-9]+", "N", str(r[2])))
        words[key] = words.get(key, 0) + 1
    print("| GET /ready | %s; slowest %.0f ms |" % (", ".join(
        "%s: %d" % kv for kv in sorted(words.items())), max([r[3] for r in ready] or [0]) * 1000))
    print("| Consul ?passing lists the node | %d of %d polls |" % (sum(passing), len(passing)))
    print()


def main():
    if len(sys.argv) > 1:
        os.environ["MESHNODE_BIN"] = os.path.abspath(sys.argv[1])
    consul = harness.Consul()
    pg = pgserver.PgServer(label="postgres (slow_store)")
    try:
        pg.create_database("slow")
        settings = pg.node_settings("slow")
        # shipped defaults for what is measured: threads, timeouts, pool
        settings.update({"server.threads": None, "consul.check_interval_ms": 1000,
                         "consul.check_timeout_ms": 1000, "log.level": "warn",
                         "service.id": "users-slow-store"})
        node = harness.Node("users", consul=consul, settings=settings)
        node.start()
        harness.wait_until(lambda: any(e["Service"]["ID"] == "users-slow-store" for e in
                                       consul.health_service("users", passing=True)),
                           timeout=20, what="node passing")
        run = Run(node.port)
        threads = [threading.Thread(target=run.prober, daemon=True),
                   threading.Thread(target=run.ready_poller, daemon=True),
                   threading.Thread(target=run.consul_poller, args=(consul, "users-slow-store"),
                                    daemon=True)]
        threads += [threading.Thread(target=run.client, args=(n,), daemon=True)
                    for n in range(CLIENTS)]
        t_start = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(LOCK_AT)
        session = pg.session(db="slow")
        session.send("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE; SELECT 1;")
        t_lock = time.monotonic()
        time.sleep(LOCK_S)
        session.send("COMMIT;")
        t_unlock = time.monotonic()
        time.sleep(AFTER_S)
        run.stop.set()
        for t in threads:
            t.join(CLIENT_TIMEOUT_S + 2)
        t_end = time.monotonic()
        session.close()
        print("## slow_store: %d clients, LOCK TABLE users for %.0f s (%s, %s)" % (
            CLIENTS, LOCK_S, time.strftime("%Y-%m-%d"), os.uname().nodename))
        print()
        summary(run, t_start, t_lock, "before the lock")
        summary(run, t_lock, t_unlock, "while the table is locked")
        summary(run, t_unlock, t_end, "after the lock")
        node.stop()
    finally:
        harness.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
