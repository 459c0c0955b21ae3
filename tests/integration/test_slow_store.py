"""A slow or silent database must not take a node down (issue 21, points 1
and 3, the database's half), against a real PostgreSQL 15 (pgserver.py)
and a real Consul agent:

- the users table locked (ACCESS EXCLUSIVE, held by a psql session) while
  150 clients POST /users: /health keeps answering fast, writes get 503
  with Retry-After after about database.acquire_timeout_ms (or at once past
  database.max_waiters), no request takes longer than
  server.read_timeout_ms, /ready says the store is busy (from the
  background probe, not a query) and answers at once, /metrics too and
  counts the sheds; once the lock goes, writes succeed again;
- a PostgreSQL host that accepts TCP and never answers, with
  database.connect_timeout_ms = 30000: the node listens, answers /health
  and registers at once, /ready says why, and SIGTERM stops it at once.

Figures are printed as `# ...` lines."""

import json
import re
import socket
import sys
import threading
import time

import pgserver
from harness import Node, requires_meshnode, wait_until
import harness

CONSUL = None  # the module's agent while its tests run (conftest.py)
POSTGRES = None  # the module's PostgreSQL server while its tests run (conftest.py)

READ_TIMEOUT_MS = 5000  # server.read_timeout_ms, the default
ACQUIRE_TIMEOUT_MS = 1000  # database.acquire_timeout_ms, the default

# The probe's own words for a stuck store (pg_pool.c pg_pool_ping, store_probe.c
# store_probe_ok, sqlite_pool.c sqlite_pool_stuck), not the refusal a request
# gets from the pool ("the database is busy; try again", "the store is busy;
# try again"): a /ready that took a pooled connection would say the latter.
PROBE_STALE = r"busy: the store probe has had no answer for \d+ ms"
PG_PROBE_BUSY = re.compile(r"database busy: all \d+ connections in use and none answered "
                           r"for \d+ ms|" + PROBE_STALE)
SQLITE_PROBE_BUSY = re.compile(r"busy: a write has waited \d+ ms for the file's write lock|"
                               + PROBE_STALE)


def report(text):
    print("# " + text, file=sys.stderr, flush=True)


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(round(p / 100.0 * len(ordered) + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


def own_database(server, test):
    name = test.id().rsplit(".", 1)[-1].lower()[:60]
    password = "pw-" + name
    server.create_role_with_password(name, password)
    server.create_database(name, owner=name)
    return server.node_settings(name, name, password)


def timed(node, method, path, body=None, timeout=15.0):
    """(status or None, headers, body, seconds)."""
    t0 = time.monotonic()
    try:
        status, hdrs, data = node.request(method, path, body, timeout=timeout)
    except OSError as e:
        return None, {}, repr(e).encode(), time.monotonic() - t0
    return status, hdrs, data, time.monotonic() - t0


@requires_meshnode
class TableLockTest(harness.ProcessesTestCase):
    CLIENTS = 150
    SECONDS = 6.0

    def test_table_lock_under_load_sheds_and_health_stays_fast(self):
        store = own_database(POSTGRES, self)
        db = store["database.name"]
        # fewer workers than clients, so that workers parked without a bound
        # would leave none for /health (the run: 600 clients, 512)
        store.update({"server.threads": 64, "database.max_waiters": 16})
        node = self.track(Node(name="users-pglock", consul=CONSUL, settings=store))
        node.start_ready()
        wait_until(lambda: node.request("GET", "/ready")[0] == 200, timeout=10, what="/ready 200")
        status, _, body = node.request("POST", "/users", {"name": "First", "email": "f@example.com"})
        self.assertEqual(status, 201, body)

        writes = []  # (status, retry-after, seconds, finished at)
        health = []  # (status, seconds)
        lock_released = [None]
        stop = threading.Event()
        lk = threading.Lock()

        def client(k):
            i = 0
            while not stop.is_set() and i < 1000:
                status, hdrs, _, took = timed(node, "POST", "/users",
                                              {"name": "U", "email": "u%d-%d@example.com" % (k, i)})
                with lk:
                    writes.append((status, hdrs.get("retry-after"), took, time.monotonic()))
                i += 1

        def prober():
            while not stop.is_set():
                status, _, _, took = timed(node, "GET", "/health", timeout=10)
                health.append((status, took))
                time.sleep(0.05)

        with POSTGRES.session(db) as lock:
            lock.send("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE; SELECT 'locked';")
            wait_until(lambda: "locked" in lock.output(), timeout=10, what="the users table locked")
            threads = [threading.Thread(target=client, args=(k,), daemon=True)
                       for k in range(self.CLIENTS)]
            threads.append(threading.Thread(target=prober, daemon=True))
            t0 = time.monotonic()
            for t in threads:
                t.start()
            time.sleep(2.5)
            # the background probe's record: busy, read at once
            status, _, body, ready_s = timed(node, "GET", "/ready")
            self.assertEqual(status, 503, body)
            store_state = json.loads(body)["store"]
            self.assertNotEqual(store_state, "ok")
            self.assertRegex(store_state, PG_PROBE_BUSY)
            _, _, metrics, metrics_s = timed(node, "GET", "/metrics")
            time.sleep(max(0.0, self.SECONDS - (time.monotonic() - t0)))
            lock.send("ROLLBACK;")
            lock_released[0] = time.monotonic()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        self.assertFalse(any(t.is_alive() for t in threads), "a client thread still running")

        # after the lock: writes go through again
        wait_until(lambda: node.request("POST", "/users",
                                        {"name": "A", "email": "after-%d@example.com"
                                         % time.monotonic_ns()})[0] == 201,
                   timeout=10, what="a write succeeds once the lock is gone")
        wait_until(lambda: node.request("GET", "/ready")[0] == 200, timeout=10,
                   what="/ready 200 once the lock is gone")

        during = [w for w in writes if w[3] <= lock_released[0]]
        n503 = [w for w in during if w[0] == 503]
        spent = lock_released[0] - t0
        health_s = [s for _, s in health]
        report("table lock %.1f s, %d clients, 64 threads, max_waiters 16: %d requests "
               "(%.0f/s), %d x 503, %d x 201, %d other; 503 latency p50 %.0f ms, max %.0f ms; "
               "slowest request %.2f s; /health %d probes p50 %.1f ms p99 %.1f ms max %.1f ms; "
               "/ready %.1f ms, /metrics %.1f ms" % (
                   spent, self.CLIENTS, len(during), len(during) / spent, len(n503),
                   sum(1 for w in during if w[0] == 201),
                   sum(1 for w in during if w[0] not in (201, 503)),
                   percentile([w[2] for w in n503], 50) * 1000,
                   max(w[2] for w in n503) * 1000, max(w[2] for w in writes),
                   len(health), percentile(health_s, 50) * 1000,
                   percentile(health_s, 99) * 1000, max(health_s) * 1000,
                   ready_s * 1000, metrics_s * 1000))

        self.assertGreater(len(n503), 0)
        # every 503 says when to try again
        self.assertEqual([w for w in n503 if w[1] is None], [])
        # nothing but 503 while the table is locked (a write cannot commit),
        # and no request unanswered
        self.assertEqual([w for w in during if w[0] not in (503, 201)], [])
        self.assertEqual([w for w in during if w[0] == 201 and w[3] < lock_released[0] - 0.5], [])
        # shed after about acquire_timeout_ms (or at once), not after seconds
        self.assertLess(percentile([w[2] for w in n503], 50), 1.5)
        # no request over server.read_timeout_ms (+ the grace and slack)
        self.assertLess(max(w[2] for w in writes), READ_TIMEOUT_MS / 1000.0 + 1.5)
        # /health never waits for the store (generous bound: a loaded machine)
        self.assertTrue(all(s == 200 for s, _ in health), health)
        self.assertLess(percentile(health_s, 99), 1.0)
        self.assertLess(ready_s, 1.0)
        self.assertLess(metrics_s, 1.0)
        shed = sum(v for lab, v in harness.prom_samples(metrics.decode(),
                                                        "meshnode_store_shed_total"))
        self.assertGreater(shed, 0)
        # both ways of shedding happened, each counted under its own reason
        # (store_shed_label): past max_waiters at once, the rest after
        # acquire_timeout_ms; read once all the clients are done
        _, _, metrics_after = node.request("GET", "/metrics")
        by_reason = {lab.get("reason"): v for lab, v in harness.prom_samples(
            metrics_after.decode(), "meshnode_store_shed_total")}
        report("meshnode_store_shed_total by reason: %r" % by_reason)
        self.assertGreater(by_reason.get("waiters", 0), 0, by_reason)
        self.assertGreater(by_reason.get("timeout", 0), 0, by_reason)
        # the ones past max_waiters are refused at once, far below
        # acquire_timeout_ms, not queued for it
        fast = [w for w in n503 if w[2] < 0.3 * ACQUIRE_TIMEOUT_MS / 1000.0]
        self.assertGreater(len(fast), 0, "no 503 under 0.3 s: nothing shed at once")
        # nothing blocked behind the lock committed afterwards
        self.assertEqual(POSTGRES.scalar("SELECT count(*) FROM users WHERE email LIKE 'u%'",
                                         db=db),
                         str(sum(1 for w in writes if w[0] == 201)))

    def test_stuck_pool_without_traffic_ready_and_metrics_answer_at_once(self):
        # every pooled connection stuck behind the lock, then no traffic: past
        # the probe's stale time /ready must still answer at once and say the
        # store is busy in the probe's words (not "ok", not a pool refusal),
        # and /metrics must not wait for the store either
        store = own_database(POSTGRES, self)
        db = store["database.name"]
        pool = 4
        # a long read timeout keeps the stuck writes' statements (and so the
        # connections) held through the whole wait
        store.update({"database.pool_size": pool, "server.read_timeout_ms": 20000})
        node = self.track(Node(name="users-pgstuck", consul=CONSUL, settings=store))
        node.start_ready()
        wait_until(lambda: node.request("GET", "/ready")[0] == 200, timeout=10, what="/ready 200")
        writes = []
        lk = threading.Lock()

        def writer(k):
            r = timed(node, "POST", "/users", {"name": "S", "email": "s%d@example.com" % k},
                      timeout=30)
            with lk:
                writes.append(r)

        with POSTGRES.session(db) as lock:
            lock.send("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE; SELECT 'locked';")
            wait_until(lambda: "locked" in lock.output(), timeout=10, what="the users table locked")
            threads = [threading.Thread(target=writer, args=(k,), daemon=True)
                       for k in range(pool + 2)]
            for t in threads:
                t.start()
            # past the probe's stale time (STORE_PROBE_STALE_MS 2000 plus its
            # 500 ms interval) with generous slack
            time.sleep(4.0)
            status, _, body, ready_s = timed(node, "GET", "/ready")
            mstatus, _, _, metrics_s = timed(node, "GET", "/metrics")
            stuck = sum(1 for t in threads if t.is_alive())
            lock.send("ROLLBACK;")
        for t in threads:
            t.join(timeout=30)
        report("pool of %d stuck behind a table lock, %d writes held, no other traffic: "
               "/ready %s in %.1f ms (%s), /metrics %s in %.1f ms" % (
                   pool, stuck, status, ready_s * 1000, body.decode(errors="replace"), mstatus,
                   metrics_s * 1000))
        self.assertGreaterEqual(stuck, pool, "the writes did not hold every connection")
        self.assertEqual(status, 503, body)
        self.assertRegex(json.loads(body)["store"], PG_PROBE_BUSY)
        self.assertLess(ready_s, 0.5)
        self.assertEqual(mstatus, 200)
        self.assertLess(metrics_s, 0.5)
        wait_until(lambda: node.request("GET", "/ready")[0] == 200, timeout=15,
                   what="/ready 200 once the lock is gone")


@requires_meshnode
class SilentServerAtStartTest(harness.ProcessesTestCase):

    def test_silent_database_costs_the_start_nothing(self):
        # a host that takes the connection and never answers: the kernel
        # completes the handshakes into the backlog, nobody reads
        silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(silent.close)
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        settings = {"database.driver": "postgres", "database.path": None,
                    "database.host": "127.0.0.1", "database.port": port,
                    "database.user": "app", "database.password": "secret-pw",
                    "database.name": "app", "database.connect_timeout_ms": 30000}
        node = self.track(Node(name="users-pgsilent", consul=CONSUL, settings=settings))
        t0 = time.monotonic()
        node.start_ready(timeout=10)
        to_health = time.monotonic() - t0
        wait_until(lambda: any(s.get("Port") == node.port
                               for s in CONSUL.service_by_name("users-pgsilent")),
                   timeout=10, interval=0.05, what="the node registered")
        to_registered = time.monotonic() - t0
        status, _, body, ready_s = timed(node, "GET", "/ready")
        self.assertEqual(status, 503, body)
        self.assertIn("127.0.0.1:%d" % port, json.loads(body)["store"])
        self.assertNotIn("secret-pw", body.decode())
        status, hdrs, body, post_s = timed(node, "POST", "/users",
                                           {"name": "Early", "email": "e@example.com"})
        self.assertEqual(status, 503, body)
        self.assertIn("retry-after", hdrs)
        t1 = time.monotonic()
        node.signal(15)
        rc = node.wait_exit(timeout=15)
        to_exit = time.monotonic() - t1
        report("PostgreSQL host silent, connect_timeout_ms 30000: /health 200 %.2f s after "
               "start, registered %.2f s, /ready 503 in %.0f ms, POST 503 in %.0f ms, "
               "SIGTERM to exit %.2f s (rc %d)" % (to_health, to_registered, ready_s * 1000,
                                                   post_s * 1000, to_exit, rc))
        self.assertLess(to_health, 3.0)
        self.assertLess(to_registered, 5.0)
        self.assertLess(ready_s, 1.0)
        self.assertLess(post_s, 1.0)
        self.assertEqual(rc, 0)
        self.assertLess(to_exit, 5.0)


@requires_meshnode
class SqliteWriteLockTest(harness.ProcessesTestCase):
    CLIENTS = 30

    def test_writes_behind_another_process_write_lock_are_shed(self):
        import sqlite3
        node = self.track(Node(name="users-sqlock", consul=CONSUL,
                               settings={"server.threads": 64}))
        node.start_ready()
        status, _, body = node.request("POST", "/users", {"name": "First", "email": "f@example.com"})
        self.assertEqual(status, 201, body)

        # another process's write lock, as the sqlite3 shell's BEGIN IMMEDIATE
        other = sqlite3.connect(node.settings["database.path"], isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN IMMEDIATE")
        results = []
        lk = threading.Lock()

        def client(k):
            r = timed(node, "POST", "/users", {"name": "U", "email": "s%d@example.com" % k})
            with lk:
                results.append(r)

        threads = [threading.Thread(target=client, args=(k,), daemon=True)
                   for k in range(self.CLIENTS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(1.5)
        _, _, _, health_s = timed(node, "GET", "/health")
        status, _, body, ready_s = timed(node, "GET", "/ready")
        for t in threads:
            t.join(timeout=30)
        spent = time.monotonic() - t0
        other.execute("ROLLBACK")
        took = [r[3] for r in results]
        report("sqlite write lock held by another process, %d writers: %s in %.2f s, slowest "
               "%.2f s, 503 p50 %.0f ms; /health %.1f ms, /ready %d in %.1f ms" % (
                   self.CLIENTS, sorted(r[0] for r in results), spent, max(took),
                   percentile(took, 50) * 1000, health_s * 1000, status, ready_s * 1000))
        self.assertEqual(status, 503, body)
        self.assertRegex(json.loads(body)["store"], SQLITE_PROBE_BUSY)
        self.assertEqual([r[0] for r in results], [503] * self.CLIENTS)
        self.assertTrue(all("retry-after" in r[1] for r in results))
        self.assertLess(max(took), READ_TIMEOUT_MS / 1000.0 + 1.0)
        self.assertLess(percentile(took, 50), 1.5)  # the queued ones: acquire_timeout_ms
        self.assertLess(health_s, 1.0)
        self.assertLess(ready_s, 1.0)
        status, _, body = node.request("POST", "/users", {"name": "After", "email": "a@example.com"})
        self.assertEqual(status, 201, body)
        wait_until(lambda: node.request("GET", "/ready")[0] == 200, timeout=10, what="/ready 200")
