"""OrderCreated events through the outbox to a real RabbitMQ (issue 13,
points 1-3): Debian's rabbitmq-server 3.10 on free loopback ports
(rabbitserver.py), a pika consumer (amqp_consumer.py), a real Consul dev
agent, a real users node and orders nodes on SQLite files (and, in the
PostgreSQL class, on a throwaway PostgreSQL 15).

Each test has a queue of its own (events.queue), so that what one leaves
in the broker is no other's; the broker is the module's, started once
(about 7 s) and stopped at the end."""

import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time

import amqp_consumer
import harness
import rabbitserver
from harness import Node, requires_meshnode, wait_until

CONSUL = None    # the module's agent while its tests run (conftest.py)
POSTGRES = None  # the module's PostgreSQL (conftest.py), for PostgresEventsTest
MQ = None        # the module's broker: started by the first class that needs it

PRUNE_BATCH = 2000  # EVENTS_PRUNE_BATCH (include/events/publisher.h)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def report(text):
    print("# " + text, file=sys.stderr, flush=True)


def broker():
    global MQ
    if MQ is None:
        MQ = rabbitserver.RabbitServer()
        report("events: the broker started in %.1f s" % MQ.startup_seconds)
    return MQ


def tearDownModule():
    global MQ
    if MQ is not None:
        MQ.stop()
        MQ = None


class EventsCases:
    """The tests of both stores (a mixin: the classes below are the tests)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mq = broker()
        cls.dir = harness.mkdtemp("events")
        cls.users = Node(name="users", consul=CONSUL, settings={
            "database.path": os.path.join(cls.dir, "users.db")})
        cls.users.start_ready()
        status, _, body = cls.users.request(
            "POST", "/users", {"name": "Ada", "email": "ada@example.com"})
        assert status == 201, body
        cls.uid = json.loads(body)["id"]

    @classmethod
    def tearDownClass(cls):
        cls.users.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.queue = "orders-%s-%s" % (self.driver, self._testMethodName[5:40])
        self.consumers = []

    def tearDown(self):
        for c in self.consumers:
            c.stop()
        super().tearDown()

    def store_settings(self, name):
        return {"database.driver": "sqlite",
                "database.path": os.path.join(self.dir, "%s.db" % name)}

    def orders_node(self, name="orders", **settings):
        base = {"service.modules": ["orders"],
                "peers.users.timeout_ms": 1000,
                "events.enabled": True,
                "events.broker_address": self.mq.addr,
                "events.queue": self.queue,
                "log.level": "info"}
        base.update(self.store_settings(name))
        base.update(settings)
        n = self.track(Node(name="orders", consul=CONSUL, settings=base))
        n.start_ready()
        return n

    def consumer(self, declare=True):
        c = amqp_consumer.AmqpConsumer(self.mq.amqp_port, self.queue, declare=declare)
        c.start()
        self.consumers.append(c)
        return c

    def place(self, node, count, product="book"):
        ids = []
        for i in range(count):
            status, _, body = node.request(
                "POST", "/orders", {"user_id": self.uid, "product": "%s-%d" % (product, i),
                                    "quantity": 1 + i % 5})
            self.assertEqual(status, 201, body)
            ids.append(json.loads(body)["id"])
        return ids

    def health_events(self, node):
        return node.get_json("/health").get("events")

    def test_every_order_one_message_with_the_right_body(self):
        node = self.orders_node()
        consumer = self.consumer()
        ids = self.place(node, 20)
        consumer.wait_for(20, timeout=20)
        time.sleep(0.5)  # a duplicate would come now
        msgs = consumer.messages
        self.assertEqual(len(msgs), 20)
        bodies = [m.json() for m in msgs]
        self.assertEqual([b["order_id"] for b in bodies], ids)
        for i, (m, b) in enumerate(zip(msgs, bodies)):
            self.assertEqual(b, {"order_id": ids[i], "product_id": "book-%d" % i,
                                 "quantity": 1 + i % 5, "user_id": self.uid})
            self.assertEqual(m.content_type, "application/json")
            self.assertEqual(m.delivery_mode, 2)
            self.assertRegex(m.message_id, UUID)
        self.assertEqual(len({m.message_id for m in msgs}), 20)
        wait_until(lambda: self.health_events(node)["pending"] == 0, timeout=5,
                   what="nothing pending")
        ev = self.health_events(node)
        self.assertTrue(ev["connected"])
        self.assertEqual(ev["broker"], self.mq.addr)
        self.assertEqual(node.metric("meshnode_events_published_total", result="confirmed"), 20)
        self.assertEqual(self.mq.list_queues().get(self.queue), (0, True))

    def test_broker_down_500_orders_then_all_arrive_once_in_order(self):
        node = self.orders_node()
        consumer = self.consumer()
        warmup = self.place(node, 1, product="warmup")
        consumer.wait_for(1, timeout=20)
        consumer.stop()
        self.mq.kill9()
        try:
            t0 = time.monotonic()
            ids = self.place(node, 500)
            t_orders = time.monotonic() - t0
            self.assertEqual(node.request("GET", "/ready")[0], 200)
            wait_until(lambda: self.health_events(node)["pending"] == 500, timeout=5,
                       what="500 pending in /health")
            ev = self.health_events(node)
            self.assertFalse(ev["connected"])
            self.assertNotEqual(ev["last_error"], "")
            self.assertEqual(node.metric("meshnode_events_outbox", state="pending"), 500)
            self.assertGreater(node.metric("meshnode_events_oldest_pending_seconds"), 0)
        finally:
            self.mq.start()
        t1 = time.monotonic()
        consumer = self.consumer(declare=False)
        consumer.wait_for(500, timeout=60)
        wait_until(lambda: self.health_events(node)["pending"] == 0, timeout=30,
                   what="the outbox drained")
        t_drain = time.monotonic() - t1
        time.sleep(1.0)
        # the warm-up's message may come again: its ack did not outlive
        # the broker's kill -9 (the broker's at-least-once, not ours)
        msgs = [m for m in consumer.messages if m.json()["order_id"] not in warmup]
        got = [m.json()["order_id"] for m in msgs]
        by_id = {}
        for m in msgs:
            by_id[m.message_id] = by_id.get(m.message_id, 0) + 1
        dups = sum(n - 1 for n in by_id.values())
        flow = msgs[-1].received - msgs[0].received
        report("events (%s): broker killed, 500 orders placed in %.2f s (all 201, /ready 200; "
               "the outbox grew %.0f events/s); broker back: %d messages, %d distinct, %d "
               "duplicates; the outbox drained %.1f s after the broker's start (the publisher's "
               "backoff, up to 5 s, included), the 500 messages arriving within %.2f s "
               "(%.0f events/s)"
               % (self.driver, t_orders, 500 / t_orders, len(msgs), len(by_id), dups, t_drain,
                  flow, 500 / max(flow, 0.001)))
        self.assertEqual(sorted(set(got)), ids)
        self.assertEqual(dups, 0)
        self.assertEqual(got, ids, "in the order of the outbox")

    def flood(self, node, seconds, max_orders, threads=8, min_orders=0, cap_s=60.0):
        """POST /orders from `threads` keep-alive clients as fast as the
        node answers, for `seconds` or `max_orders` in all, and past
        `seconds` until `min_orders` came back (a slow build, a loaded
        machine), `cap_s` at most; the monotonic time each 201 came back,
        sorted."""
        done, lock = [], threading.Lock()
        t_start = time.monotonic()
        errors = []

        def going():
            now = time.monotonic()
            with lock:
                n = len(done)
            return n < max_orders and now < t_start + cap_s and (
                now < t_start + seconds or n < min_orders)

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
            body = json.dumps({"user_id": self.uid, "product": "flood", "quantity": 1})
            try:
                while going():
                    conn.request("POST", "/orders", body,
                                 {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    if r.status != 201:
                        errors.append(r.status)
                        return
                    with lock:
                        done.append(time.monotonic())
            except (OSError, http.client.HTTPException) as e:
                errors.append(repr(e))
            finally:
                conn.close()

        workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(cap_s + 30)
        self.assertEqual(errors, [])
        return sorted(done)

    def test_outbox_bounded_by_retention_at_full_speed(self):
        """Issue 21, point 4: orders at full speed with a 1 s retention.
        While they come, the sent rows kept stay within what a retention
        (and the second /health's figures may lag) brings plus one prune
        batch, and the oldest kept is about a retention old; once the
        outbox has drained and a retention has passed, at most one batch
        is left. Before, pruning took 10,000 rows a minute: everything sent
        stayed for the minute."""
        retention_ms = 1000
        node = self.orders_node(name="flood", **{"events.retention_ms": retention_ms,
                                                 "log.level": "warn"})
        samples, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    ev = self.health_events(node)
                    samples.append((time.monotonic(), ev["sent"], ev["pending"],
                                    ev.get("oldest_sent_age_s", 0)))
                except (OSError, http.client.HTTPException, KeyError, ValueError):
                    pass
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            t0 = time.monotonic()
            done = self.flood(node, seconds=10, max_orders=40000,
                              min_orders=2 * PRUNE_BATCH + 1000)
            t_last = time.monotonic()
            wait_until(lambda: self.health_events(node)["pending"] == 0, timeout=60,
                       what="the outbox drained")
            t_drained = time.monotonic()
            time.sleep(retention_ms / 1000.0 + 1.5)
            final = self.health_events(node)
        finally:
            stop.set()
            sampler.join(5)
        n = len(done)
        rate = n / (t_last - t0)
        # the most orders any window of a retention plus 1 s (the age of
        # /health's figures, the prune period) brought
        span = retention_ms / 1000.0 + 1.0
        most, j = 0, 0
        for i in range(n):
            while done[i] - done[j] > span:
                j += 1
            most = max(most, i - j + 1)
        bound = most + PRUNE_BATCH
        during = [s for s in samples if t0 + retention_ms / 1000.0 + 2.0 <= s[0] <= t_last]
        peak = max((s[1] for s in during), default=0)
        oldest = max((s[3] for s in during), default=0)
        report("events (%s): %d orders in %.1f s (%.0f/s), retention %d ms: sent rows kept "
               "at most %d while they came (bound %d: %d orders in a %.1f s window + one "
               "batch), the oldest kept at most %.2f s old; drained %.1f s after the last "
               "order; %d sent rows %.1f s after that (pruned %d)"
               % (self.driver, n, t_last - t0, rate, retention_ms, peak, bound, most, span,
                  oldest, t_drained - t_last, final["sent"], retention_ms / 1000.0 + 1.5,
                  final.get("pruned", 0)))
        self.assertGreater(n, 2 * PRUNE_BATCH, "too few orders to tell")
        self.assertTrue(during, "no /health sample while the orders came")
        self.assertLessEqual(peak, bound)
        self.assertLessEqual(oldest, retention_ms / 1000.0 + 2.5)
        self.assertLessEqual(final["sent"], PRUNE_BATCH)
        self.assertGreaterEqual(final.get("pruned", 0), n - PRUNE_BATCH)
        self.assertGreaterEqual(node.metric("meshnode_events_pruned_total"), n - PRUNE_BATCH)

    def test_kill9_between_commit_and_confirm_duplicates_never_loses(self):
        """The broker's confirms are held 1 s by a relay: the node is killed
        when the broker has the messages and the node has not marked them
        sent. Started again on its store, it sends them again: each order's
        event arrives, some twice (the duplicates are the unconfirmed ones),
        none lost."""
        relay = harness.DelayRelay(self.mq.amqp_port, delay=1.0)
        self.addCleanup(relay.stop)
        node = self.orders_node(**{"events.broker_address": "127.0.0.1:%d" % relay.port})
        consumer = self.consumer()
        ids = self.place(node, 30)
        consumer.wait_for(30, timeout=30)
        # confirms counted as they come (/health's counts are a second old)
        pending = 30 - int(node.metric("meshnode_events_published_total", result="confirmed"))
        node.kill9()
        relay.stop()
        node2 = self.orders_node(**{"events.broker_address": self.mq.addr})
        wait_until(lambda: self.health_events(node2)["pending"] == 0, timeout=20,
                   what="the restarted node's outbox drained")
        time.sleep(1.0)
        msgs = consumer.messages
        got = [m.json()["order_id"] for m in msgs]
        dups = len(got) - len(set(got))
        report("events (%s): kill -9 of the orders node with the broker holding 30 messages "
               "and %d of them unconfirmed: after its restart %d messages, every order's event "
               "at least once, %d duplicates" % (self.driver, pending, len(got), dups))
        self.assertEqual(sorted(set(got)), ids)
        self.assertGreater(pending, 0, "the kill came after the confirms")
        self.assertLessEqual(dups, pending)


@requires_meshnode
class EventsTest(EventsCases, harness.ProcessesTestCase):
    """On SQLite, and what does not depend on the store."""
    driver = "sqlite"

    def test_no_events_when_disabled(self):
        node = self.orders_node(**{"events.enabled": False})
        self.place(node, 3)
        self.assertNotIn("events", node.get_json("/health"))
        time.sleep(1.0)
        self.assertIsNone(self.mq.list_queues().get(self.queue))

    def test_broker_found_through_consul(self):
        self.mq.register(CONSUL, name="rabbitmq", service_id="rabbitmq-%s" % self.queue)
        self.addCleanup(CONSUL.deregister_service, "rabbitmq-%s" % self.queue)
        wait_until(lambda: CONSUL.health_service("rabbitmq", passing=True), timeout=15,
                   what="the broker passing in Consul")
        node = self.orders_node(**{"events.broker_address": ""})
        consumer = self.consumer()
        self.place(node, 5)
        consumer.wait_for(5, timeout=20)
        self.assertEqual(self.health_events(node)["broker"], self.mq.addr)

    def test_returned_message_goes_again(self):
        """The queue deleted under a connected publisher: its next message
        is unroutable, the broker returns it (publishes are mandatory), and
        the publisher sends it again on a new connection, which declares
        the queue again: refused once, delivered, not dropped."""
        node = self.orders_node()
        self.place(node, 1, product="first")
        wait_until(lambda: self.health_events(node)["pending"] == 0 and
                   self.health_events(node)["connected"], timeout=20, what="connected, idle")
        self.mq.ctl("delete_queue", self.queue)
        ids = self.place(node, 1, product="second")
        wait_until(lambda: node.metric("meshnode_events_published_total",
                                       result="confirmed") == 2, timeout=20,
                   what="the second event confirmed")
        self.assertGreaterEqual(node.metric("meshnode_events_published_total",
                                            result="refused"), 1)
        consumer = self.consumer(declare=False)
        consumer.wait_for(1, timeout=10)
        self.assertEqual([m.json()["order_id"] for m in consumer.messages], ids)
        self.assertIn("did not take 1 of 1 events", node.log_text())

    def test_wrong_password_says_authentication_refused(self):
        """Issue 21, point 7: a wrong broker password is a refused login in
        /health's last_error and in the log, once however many retries,
        not "no answer" (a dead broker's words)."""
        node = self.orders_node(name="badpass", **{"events.password": "not-the-password"})
        self.place(node, 2)
        wait_until(lambda: "authentication refused" in self.health_events(node)["last_error"],
                   timeout=15, what="authentication refused in /health")
        wait_until(lambda: self.health_events(node)["pending"] == 2, timeout=5,
                   what="2 pending in /health")
        ev = self.health_events(node)
        self.assertFalse(ev["connected"])
        self.assertNotIn("no answer", ev["last_error"])
        self.assertIn(self.mq.addr, ev["last_error"])
        time.sleep(6)  # the backoff's retries: 100 ms doubling to 5 s
        lines = [l for l in node.log_text().splitlines() if "authentication refused" in l]
        report("events: a wrong broker password: last_error %r, %d log line(s) in ~8 s of "
               "retries" % (ev["last_error"], len(lines)))
        self.assertEqual(len(lines), 1, lines)
        self.assertNotIn("not-the-password", node.log_text())
        # restarted with the right one on the same store: the two waited
        consumer = self.consumer()
        node.stop()
        self.orders_node(name="badpass")
        consumer.wait_for(2, timeout=20)

    def test_silent_broker_at_start_costs_nothing(self):
        """Issue 21, point 3: a broker that accepts TCP and never answers.
        The node starts and /health answers at once, orders are taken into
        the outbox, and SIGTERM stops the node promptly: the login waiting
        on the silent broker is cut, not waited for (it used to hold the
        stop up to its 5 s timeout)."""
        hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(hole.close)
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        held = []

        def accept():
            while True:
                try:
                    c, _ = hole.accept()
                except OSError:
                    return
                held.append(c)  # read nothing, answer nothing

        threading.Thread(target=accept, daemon=True).start()
        self.addCleanup(lambda: [c.close() for c in held])
        t0 = time.monotonic()
        node = self.orders_node(name="silent", **{"events.broker_address": "127.0.0.1:%d"
                                                  % hole.getsockname()[1]})
        t_ready = time.monotonic() - t0
        t1 = time.monotonic()
        ids = self.place(node, 5)
        t_orders = time.monotonic() - t1
        wait_until(lambda: self.health_events(node)["pending"] == 5, timeout=5,
                   what="5 pending in /health")
        wait_until(lambda: held, timeout=5, what="the node at the silent broker")
        time.sleep(1.0)  # well inside the login's 5 s timeout
        ev = self.health_events(node)
        self.assertFalse(ev["connected"])
        stops = []
        t2 = time.monotonic()
        node.signal(signal.SIGTERM)
        rc = node.wait_exit(timeout=15)
        stops.append(time.monotonic() - t2)
        report("events: a silent broker at start: /health 200 %.2f s after the start, 5 "
               "orders in %.3f s (pending 5), SIGTERM to exit %.2f s (exit %d)"
               % (t_ready, t_orders, stops[0], rc))
        self.assertEqual(rc, 0)
        self.assertEqual(len(ids), 5)
        self.assertLess(stops[0], 2.5)

    def test_queue_durable_across_a_broker_restart(self):
        node = self.orders_node()
        self.place(node, 10)
        wait_until(lambda: self.health_events(node)["pending"] == 0, timeout=20,
                   what="10 events confirmed")
        self.assertEqual(self.mq.list_queues().get(self.queue), (10, True))
        self.mq.stop()
        self.mq.start()
        self.assertEqual(self.mq.list_queues().get(self.queue), (10, True))
        consumer = self.consumer(declare=False)
        consumer.wait_for(10, timeout=20)


@requires_meshnode
class PostgresEventsTest(EventsCases, harness.ProcessesTestCase):
    """The tests of both stores, with the orders and the outbox in
    PostgreSQL: the order and its event in one transaction there too."""
    driver = "postgres"

    def store_settings(self, name):
        db = "ev_%s" % re.sub(r"[^a-z0-9]", "_", self._testMethodName[5:30].lower())
        if not hasattr(self, "_dbs"):
            self._dbs = set()
        if db not in self._dbs:
            POSTGRES.create_database(db)
            self._dbs.add(db)
        return POSTGRES.node_settings(db)

    def test_prune_batch_is_a_range_of_the_index_of_sent_rows(self):
        """Migration 3's index is the one a prune batch can walk: the
        statement of orders_pg.c, planned with sequential scans off (on a
        small table the planner would rightly scan it), finds its rows
        through events_outbox_sent, not a walk of the table by id."""
        node = self.orders_node()
        self.place(node, 3)
        db = self.store_settings("orders")["database.name"]
        plan = POSTGRES.psql(
            "SET enable_seqscan = off; EXPLAIN DELETE FROM events_outbox WHERE id IN"
            " (SELECT id FROM events_outbox WHERE sent_ms IS NOT NULL AND sent_ms < 1000"
            " ORDER BY sent_ms, id LIMIT 2000)", db=db)
        report("events (postgres): the prune's plan: %s"
               % " | ".join(l.strip() for l in plan.splitlines() if l.strip()))
        self.assertIn("events_outbox_sent", plan)
