"""meshnode on PostgreSQL (database.driver = "postgres") against real
throwaway PostgreSQL 15 servers (pgserver.py), issue 11, point 2:

- two users nodes on one database and an orders node calling them: 1,000
  concurrent creates spread over both nodes (every 201 stored once), the
  same email sent to both nodes at once (one 201, one 409), users created
  on one node ordered through the other, and test_orders.py's kill -9 of a
  users node under a stream of orders; two nodes started at once on an
  empty database apply the migrations once;
- the driver's bad input: PostgreSQL down when the node starts, PostgreSQL
  restarted (fast shutdown, then kill -9) under a steady create load, a
  wrong password, a statement timeout.

The module has one Consul agent and one PostgreSQL server; every test has
a database and a role of its own on it, or a server of its own when it
stops or kills PostgreSQL. Figures are printed as `# ...` lines."""

import collections
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait as futures_wait

import harness
import pgserver
import test_orders
from harness import Node, requires_meshnode, wait_until
from pgserver import PgServer

CONSUL = None  # the module's agent while its tests run (conftest.py)
POSTGRES = None  # the module's PostgreSQL server while its tests run (conftest.py)

# What a PostgreSQL or libpq message looks like: none may reach a client.
LIBPQ_TEXT = ("FATAL", "ERROR:", "DETAIL:", "HINT:", "SQLSTATE", "server closed the connection",
              "terminating connection", "connection to server", "could not connect",
              "could not receive", "could not send", "no connection to the server",
              "administrator command", "canceling statement", "duplicate key", "violates",
              "libpq", "PQ", "pg_", "relation ")


def report(text):
    print("# " + text, file=sys.stderr, flush=True)


def percentile(values, p):
    """The p-th percentile (nearest rank) of `values`, in the same unit."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(round(p / 100.0 * len(ordered) + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


def libpq_text(body):
    """The first PostgreSQL/libpq marker found in a response body, or None."""
    text = body.decode("utf-8", "replace")
    return next((m for m in LIBPQ_TEXT if m in text), None)


def own_database(server, test, password=None):
    """A role and a database named after the running test on `server`; the
    node settings that use them."""
    name = test.id().rsplit(".", 1)[-1].lower()[:60]
    password = password or "pw-" + name
    server.create_role_with_password(name, password)
    server.create_database(name, owner=name)
    return server.node_settings(name, name, password)


def post_user(node, email, name="User", timeout=10.0):
    """POST /users on `node`: (status, body bytes, seconds)."""
    t0 = time.monotonic()
    try:
        status, _, body = node.request("POST", "/users", {"name": name, "email": email},
                                       timeout=timeout)
    except OSError as e:
        return None, repr(e).encode(), time.monotonic() - t0
    return status, body, time.monotonic() - t0


def run_all(jobs, threads=50, deadline=120.0):
    """Runs the callables on `threads` threads; their results in order.
    Fails past `deadline` seconds (every job is itself bounded)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(job) for job in jobs]
        done, pending = futures_wait(futures, timeout=deadline)
        if pending:
            for f in pending:
                f.cancel()
            raise AssertionError("%d of %d jobs not done within %.0f s"
                                 % (len(pending), len(jobs), deadline))
        return [f.result() for f in futures]


def users_rows(server, settings):
    """{id: email} of every row of the users table of a node's database."""
    return {int(i): e for i, e in server.rows("SELECT id, email FROM users",
                                              db=settings["database.name"])}


@requires_meshnode
class TwoUsersNodesOnOneDatabaseTest(harness.ProcessesTestCase):
    """Two users nodes on one PostgreSQL database and an orders node calling
    them through Consul."""

    def mesh(self, **settings):
        store = own_database(POSTGRES, self)
        store.update(settings)
        return self.track(test_orders.Mesh(consul=CONSUL, users_settings=store)), store

    def test_concurrent_creates_across_both_nodes(self):
        m, store = self.mesh(**{"server.threads": 64})
        m.wait_passing(2)
        nodes = m.users

        # 1,000 distinct users, every other one on each node, 50 at a time
        n = 1000
        t0 = time.monotonic()
        results = run_all([lambda i=i: post_user(nodes[i % 2], "c%04d@example.com" % i, "C %d" % i)
                           for i in range(n)], threads=50, deadline=180)
        spent = time.monotonic() - t0
        statuses = {}
        for status, _, _ in results:
            statuses[status] = statuses.get(status, 0) + 1
        created = {}
        for i, (status, body, _) in enumerate(results):
            self.assertIsNone(libpq_text(body), body[:300])
            if status == 201:
                user = json.loads(body)
                self.assertNotIn(user["id"], created, "one id given twice")
                created[user["id"]] = "c%04d@example.com" % i
        latencies = [s for _, _, s in results]
        report("1000 creates over two users nodes on one PostgreSQL database, 50 threads: "
               "%.1f s, %.0f creates/s, p50 %.1f ms, p99 %.1f ms, statuses %r"
               % (spent, n / spent, percentile(latencies, 50) * 1000,
                  percentile(latencies, 99) * 1000, statuses))
        self.assertEqual(statuses, {201: n})
        rows = users_rows(POSTGRES, store)
        self.assertEqual(len(rows), len(created), "rows in PostgreSQL != 201s")
        self.assertEqual(rows, created, "the rows are not the users answered 201")

        # the same email to both nodes at the same moment: one 201, one 409
        # (half the pairs differ in ASCII case only: one address all the same)
        pairs = 200
        gates = [threading.Barrier(2, timeout=10) for _ in range(pairs)]

        def racer(k, side):
            email = "dup%03d@example.com" % k
            if side and k % 2:
                email = email.upper()
            try:
                gates[k].wait()
            except threading.BrokenBarrierError:
                pass
            return post_user(nodes[side], email)

        t0 = time.monotonic()
        raced = run_all([lambda k=k, side=side: racer(k, side)
                         for k in range(pairs) for side in (0, 1)], threads=50, deadline=120)
        spent = time.monotonic() - t0
        wrong = []
        conflicts = 0
        for k in range(pairs):
            got = sorted([raced[2 * k][0] or 0, raced[2 * k + 1][0] or 0])
            conflicts += got.count(409)
            if got != [201, 409]:
                wrong.append((k, raced[2 * k][:2], raced[2 * k + 1][:2]))
            for status, body, _ in (raced[2 * k], raced[2 * k + 1]):
                self.assertIsNone(libpq_text(body), body[:300])
                if status == 409:
                    self.assertIn("error", json.loads(body))
        latencies = [s for _, _, s in raced]
        report("%d same-email pairs, both nodes at once: %d 409s, %d pairs not one 201 and one "
               "409, %.1f s, p99 %.1f ms" % (pairs, conflicts, len(wrong), spent,
                                            percentile(latencies, 99) * 1000))
        self.assertEqual(wrong, [])
        dup_rows = POSTGRES.rows("SELECT lower(email), count(*) FROM users "
                                 "WHERE lower(email) LIKE 'dup%%' GROUP BY 1 HAVING count(*) > 1",
                                 db=store["database.name"])
        self.assertEqual(dup_rows, [])
        self.assertEqual(len(users_rows(POSTGRES, store)), n + pairs)

        # users made on either node are found through the other: orders
        # round-robin their user check over both
        failed = []
        for uid in sorted(created)[:40]:
            status, _, body = m.order(uid)
            if status != 201:
                failed.append((uid, status, body[:200]))
        self.assertEqual(failed, [])
        calls = [test_orders.user_lookups(u) for u in nodes]
        self.assertTrue(all(c >= 10 for c in calls), "user checks not spread: %r" % calls)

    def test_kill9_under_a_stream_of_orders_loses_none(self):
        m, _ = self.mesh()
        test_orders.check_kill9_under_a_stream_of_orders(self, m)

    def test_two_nodes_started_at_once_migrate_once(self):
        store = own_database(POSTGRES, self)
        db = store["database.name"]
        nodes = [self.track(Node(name="users-migrate", consul=CONSUL, settings=store))
                 for _ in range(2)]
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready()
            wait_until(lambda n=n: n.request("GET", "/ready")[0] == 200, timeout=10,
                       what="/ready 200 on %s" % n.label)
        versions = [int(v) for (v,) in POSTGRES.rows(
            "SELECT version FROM schema_migrations ORDER BY 1", db=db)]
        self.assertTrue(versions, "no migration recorded")
        self.assertEqual(versions, list(range(1, len(versions) + 1)), "each version once")
        for i, n in enumerate(nodes):
            status, body, _ = post_user(n, "m%d@example.com" % i)
            self.assertEqual(status, 201, body)
            # the store says it connected once, not once more as it opens
            self.assertEqual(n.log_text().count("schema up to date"), 1, n.log_text())
        self.assertEqual(POSTGRES.scalar("SELECT count(*) FROM users", db=db), "2")


Answer = collections.namedtuple("Answer", "phase email status body sent answered")


class CreateLoad:
    """Threads creating users on `node` one after another until stop(),
    each answer kept (an Answer) with the phase in force when its request
    was sent and the monotonic times it was sent and answered."""

    def __init__(self, node, threads=8, prefix="load"):
        self.node = node
        self.prefix = prefix
        self.phase = "before"
        self.results = []  # Answer
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.count = 0
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True)
                        for t in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, t):
        i = 0
        while not self.stopping.is_set():
            email = "%s-%d-%d@example.com" % (self.prefix, t, i)
            i += 1
            phase = self.phase
            sent = time.monotonic()
            status, body, took = post_user(self.node, email, timeout=15)
            with self.lock:
                self.results.append(Answer(phase, email, status, body, sent, sent + took))

    def statuses(self, phase=None):
        with self.lock:
            out = {}
            for a in self.results:
                if phase is None or a.phase == phase:
                    out[a.status] = out.get(a.status, 0) + 1
            return out

    def first_201_after(self, t):
        """When the first 201 answered after monotonic time `t` came, or None."""
        with self.lock:
            return min((a.answered for a in self.results if a.status == 201 and a.answered > t),
                       default=None)

    def answers(self, status, start, end):
        with self.lock:
            return [a for a in self.results if a.status == status and start <= a.answered <= end]

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)
        self.left_running = [t for t in self.threads if t.is_alive()]


@requires_meshnode
class PostgresBadInputTest(harness.ProcessesTestCase):
    """PostgreSQL away, restarted, refusing the password, too slow."""

    def test_down_at_start_then_ready_when_it_comes(self):
        pg = PgServer(start=False)
        self.addCleanup(pg.stop)
        node = self.track(Node(name="users-pgdown", consul=CONSUL,
                               settings=pg.node_settings("postgres")))
        t0 = time.monotonic()
        node.start_ready()
        report("node with PostgreSQL down: /health 200 %.2f s after start" % (time.monotonic() - t0))
        status, _, body = node.request("GET", "/ready")
        self.assertEqual(status, 503, body)
        doc = json.loads(body)
        reason = json.dumps(doc)
        self.assertIn(pg.addr, reason, "the reason names the server: %s" % reason)
        self.assertNotIn(pgserver.SUPERUSER_PASSWORD, reason)
        status, _, body = node.request("POST", "/users", {"name": "Early", "email": "e@example.com"})
        self.assertEqual(status, 503, body)
        self.assertIsNone(libpq_text(body), body)
        self.assertIn("error", json.loads(body))
        self.assertEqual(node.request("GET", "/health")[0], 200)

        pg.start()
        t0 = time.monotonic()
        wait_until(lambda: node.request("GET", "/ready")[0] == 200, timeout=20, interval=0.05,
                   what="/ready 200 once PostgreSQL is up")
        report("PostgreSQL started after the node: /ready 200 %.2f s later" % (time.monotonic() - t0))
        status, _, body = node.request("POST", "/users", {"name": "Late", "email": "l@example.com"})
        self.assertEqual(status, 201, body)
        uid = json.loads(body)["id"]
        self.assertEqual(node.get_json("/users/%s" % uid)["email"], "l@example.com")
        self.assertEqual(pg.scalar("SELECT email FROM users WHERE id = %d" % uid), "l@example.com")

    def test_restarted_under_a_steady_create_load(self):
        pg = PgServer()
        self.addCleanup(pg.stop)
        store = own_database(pg, self)
        node = self.track(Node(name="users-pgrestart", consul=CONSUL,
                               settings=dict(store, **{"server.threads": 32})))
        node.start_ready()
        wait_until(lambda: node.request("GET", "/ready")[0] == 200, timeout=10, what="/ready 200")
        load = CreateLoad(node, threads=8)
        self.addCleanup(load.stop)
        times = {}
        try:
            time.sleep(1.0)
            for phase, down in (("fast restart", lambda: pg.stop()),
                                ("kill -9", lambda: pg.kill9())):
                load.phase = phase
                t_down = time.monotonic()
                down()
                time.sleep(0.5)  # requests meet a PostgreSQL that is not there
                pg.start()
                t_up = time.monotonic()
                wait_until(lambda: load.first_201_after(t_up), timeout=20, interval=0.05,
                           what="a 201 after the %s" % phase)
                times[phase] = (t_down, t_up, load.first_201_after(t_up))
                load.phase = "after " + phase
                time.sleep(1.0)
        finally:
            load.stop()
        self.assertEqual(load.left_running, [], "load threads still running")

        statuses = load.statuses()
        for phase in ("before", "fast restart", "after fast restart", "kill -9", "after kill -9"):
            report("PostgreSQL restart under 8 create threads, phase %s: %r"
                   % (phase, load.statuses(phase)))
        for phase, (t_down, t_up, t_201) in times.items():
            refused = load.answers(503, t_down, t_201)
            report("%s: PostgreSQL away %.2f s (stopped, 0.5 s, started); %d 503s from %.2f s to "
                   "%.2f s after it went; first 201 %.2f s after it was ready again"
                   % (phase, t_up - t_down, len(refused),
                      min((a.answered for a in refused), default=t_down) - t_down,
                      max((a.answered for a in refused), default=t_down) - t_down, t_201 - t_up))
        self.assertEqual(set(statuses) - {201, 503}, set(), "answers other than 201 and 503")
        leaks = [(a.status, a.body[:200]) for a in load.results if libpq_text(a.body)]
        self.assertEqual(leaks, [], "PostgreSQL text in a body")
        for a in load.results:
            if a.status == 503:
                self.assertIn("error", json.loads(a.body))

        # nothing acknowledged is lost; nothing stored that was not sent
        rows = users_rows(pg, store)
        by_email = {e: i for i, e in rows.items()}
        acked = {json.loads(a.body)["id"]: a.email for a in load.results if a.status == 201}
        lost = {i: e for i, e in acked.items() if rows.get(i) != e}
        self.assertEqual(lost, {}, "201s missing from the database")
        sent = {a.email for a in load.results}
        self.assertEqual(set(by_email) - sent, set())
        unacked = len(rows) - len(acked)
        report("%d 201s all stored; %d rows stored whose request got a 503 (committed, "
               "then the answer failed)" % (len(acked), unacked))
        wait_until(lambda: node.request("GET", "/ready")[0] == 200, timeout=10, what="/ready 200")

    def test_wrong_password_exits_2_naming_user_and_host(self):
        secret = "wr0ng-Xyzzy-secret"
        POSTGRES.create_role_with_password("pw_owner", "the-right-one")
        POSTGRES.create_database("pw_owner", owner="pw_owner")
        node = self.track(Node(name="users-pwbad", consul=CONSUL,
                               settings=POSTGRES.node_settings("pw_owner", "pw_owner", secret)))
        rc, out, err = node.run_cli(["--check-config"])
        text = out + err
        self.assertEqual(rc, 2, text)
        said = [l for l in text.splitlines() if "pw_owner" in l and POSTGRES.host in l]
        self.assertTrue(said, "no line names the user and the host:\n" + text)
        self.assertNotIn(secret, text)
        report("--check-config with a wrong password: %s" % said[0].strip())

        node.start()
        rc = node.wait_exit(timeout=30)
        self.assertEqual(rc, 2, harness.tail(node.log_path))
        log = node.log_text()
        self.assertTrue([l for l in log.splitlines() if "pw_owner" in l and POSTGRES.host in l],
                        "no log line names the user and the host")
        self.assertNotIn(secret, log)

        # DB_PASSWORD is read too: the right one passes, a wrong one is refused
        settings = POSTGRES.node_settings("pw_owner", "pw_owner", None)
        env_node = self.track(Node(name="users-pwenv", consul=CONSUL, settings=settings,
                                   env={"DB_PASSWORD": "the-right-one"}))
        rc, out, err = env_node.run_cli(["--check-config"])
        self.assertEqual(rc, 0, out + err)
        env_node.env["DB_PASSWORD"] = secret
        rc, out, err = env_node.run_cli(["--check-config"])
        self.assertEqual(rc, 2, out + err)
        self.assertNotIn(secret, out + err)

    def test_statement_timeout_is_503_then_writes_resume(self):
        store = own_database(POSTGRES, self)
        db = store["database.name"]
        # the role's own statement_timeout: what the server enforces on
        # every statement of the node's sessions
        POSTGRES.psql("ALTER ROLE %s SET statement_timeout = '500ms'" % pgserver.quote_ident(db))
        node = self.track(Node(name="users-pgslow", consul=CONSUL, settings=store))
        node.start_ready()
        wait_until(lambda: node.request("GET", "/ready")[0] == 200, timeout=10, what="/ready 200")
        status, _, body = node.request("POST", "/users", {"name": "First", "email": "f@example.com"})
        self.assertEqual(status, 201, body)
        uid = json.loads(body)["id"]

        with POSTGRES.session(db) as lock:
            lock.send("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE; SELECT 'locked';")
            wait_until(lambda: "locked" in lock.output(), timeout=10, what="the users table locked")
            t0 = time.monotonic()
            status, _, body = node.request("POST", "/users",
                                           {"name": "Blocked", "email": "b@example.com"}, timeout=15)
            took = time.monotonic() - t0
            self.assertEqual(status, 503, body)
            self.assertIsNone(libpq_text(body), body)
            status, _, body = node.request("GET", "/users/%d" % uid, timeout=15)
            self.assertEqual(status, 503, body)
            self.assertIsNone(libpq_text(body), body)
            report("a write behind a table lock with statement_timeout 500 ms: 503 after %.2f s" % took)
            self.assertLess(took, 5.0)
        status, _, body = node.request("POST", "/users", {"name": "After", "email": "a@example.com"})
        self.assertEqual(status, 201, body)
        self.assertEqual(POSTGRES.scalar("SELECT count(*) FROM users WHERE email = 'b@example.com'",
                                         db=db), "0")
        self.assertEqual(node.request("GET", "/health")[0], 200)
