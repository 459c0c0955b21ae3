"""Orders call users through Consul discovery: real agent, real users nodes
sharing one SQLite file (test_postgres.py runs the kill -9 case with them on
one PostgreSQL database), a real orders node. Round robin, kill -9 under a
stream of orders, every users node gone, a users node added later, the agent
stopped, the Consul cost of a steady stream, and a peer that accepts
connections and never answers. Issue 4."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

import harness
from harness import Consul, Node, requires_meshnode, wait_until

PEER_TIMEOUT_MS = 1000


def report(text):
    print("# " + text, file=sys.stderr, flush=True)


def user_lookups(node):
    """GET /users/{id} requests a users node answered."""
    return node.metric("http_requests_total", method="GET", endpoint="/users/{id}")


def read_heads(listener, heads):
    """Accepts connections on `listener` and keeps each request head in
    `heads`, answering nothing (a peer that never replies)."""
    kept = []
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            break
        kept.append(conn)
        data = b""
        conn.settimeout(5)
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        heads.append(data.split(b"\r\n\r\n")[0].decode("latin-1"))


class Mesh:
    """A Consul agent, users nodes sharing one store (a SQLite file, or what
    `users_settings` says: one PostgreSQL database), and an orders node;
    stop() kills exactly what it started."""

    def __init__(self, consul=None, users=2, orders_settings=None, users_settings=None):
        self.consul = consul or Consul()
        self.own_consul = consul is None
        self.dir = harness.mkdtemp("mesh")
        self.db = os.path.join(self.dir, "users.db")
        self.users_settings = {"database.path": self.db}
        self.users_settings.update(users_settings or {})
        self.users = []
        for _ in range(users):
            self.add_users()
        settings = {"service.modules": ["orders"],
                    "database.path": os.path.join(self.dir, "orders.db"),
                    "peers.users.timeout_ms": PEER_TIMEOUT_MS,
                    "peers.users.breaker_open_ms": 10000}
        settings.update(orders_settings or {})
        self.orders = Node(name="orders", consul=self.consul, settings=settings)
        self.orders.start_ready()

    def add_users(self):
        n = Node(name="users", consul=self.consul, settings=self.users_settings)
        n.start_ready()
        self.users.append(n)
        return n

    def wait_passing(self, count, timeout=15.0):
        wait_until(lambda: len(self.consul.health_service("users", passing=True)) == count,
                   timeout=timeout, interval=0.1, what="%d users instances passing" % count)

    def create_user(self, name="Ada"):
        status, _, body = self.users[0].request("POST", "/users",
                                                {"name": name, "email": "%s@example.com" % name})
        assert status == 201, (status, body)
        return json.loads(body)["id"]

    def order(self, user_id, product="book", quantity=1, timeout=10.0):
        return self.orders.request("POST", "/orders",
                                   {"user_id": user_id, "product": product, "quantity": quantity},
                                   timeout=timeout)

    def stop(self):
        for n in [self.orders] + self.users:
            n.stop()
        if self.own_consul:
            self.consul.stop()


def check_kill9_under_a_stream_of_orders(test, m):
    """100 orders one after another through mesh `m` (two users nodes); the
    second users node gets kill -9 before the 31st: every order succeeds,
    and the dead node leaves ?passing. Shared with test_postgres.py."""
    m.wait_passing(2)
    uid = m.create_user()
    failed = []
    for i in range(100):
        if i == 30:
            m.users[1].kill9()
        status, _, body = m.order(uid)
        if status != 201:
            failed.append((i, status, body[:200]))
    test.assertEqual(failed, [])
    wait_until(lambda: len(m.consul.health_service("users", passing=True)) == 1,
               timeout=15, what="the killed node leaving ?passing")
    test.assertEqual(m.order(uid)[0], 201)


@requires_meshnode
class OrdersThroughDiscoveryTest(harness.ProcessesTestCase):
    def test_orders_spread_over_both_users_nodes(self):
        m = self.track(Mesh())
        m.wait_passing(2)
        uid = m.create_user()
        before = [user_lookups(u) for u in m.users]
        ids = []
        for _ in range(20):
            status, hdrs, body = m.order(uid)
            self.assertEqual(status, 201, body)
            order = json.loads(body)
            self.assertEqual(order["user_id"], uid)
            self.assertEqual(hdrs.get("location"), "/orders/%d" % order["id"])
            ids.append(order["id"])
        calls = [user_lookups(u) - b for u, b in zip(m.users, before)]
        self.assertEqual(sum(calls), 20)
        self.assertTrue(all(c >= 8 for c in calls), "round robin uneven: %r" % calls)

        self.assertEqual(m.orders.get_json("/orders/%d" % ids[0])["product"], "book")
        self.assertEqual(len(m.orders.get_json("/orders")), 20)
        self.assertEqual(m.orders.request("GET", "/orders/999999")[0], 404)
        status, _, body = m.order(uid + 1000)
        self.assertEqual(status, 422, body)
        self.assertEqual(m.order("1")[0], 400)
        self.assertEqual(m.order(uid, quantity=0)[0], 400)
        self.assertEqual(m.orders.request("POST", "/orders", "{not json")[0], 400)

        view = m.orders.get_json("/peers/users")
        self.assertEqual(len(view["instances"]), 2)
        self.assertEqual(view["instances_total"], 2)
        self.assertTrue(all(i["circuit"] == "closed" for i in view["instances"]))
        self.assertGreater(view["index"], 0)
        # the view is a page: a mesh of 10,000 instances is not one answer
        second = m.orders.get_json("/peers/users?limit=1&offset=1")
        self.assertEqual(second["instances_total"], 2)
        self.assertEqual([i["id"] for i in second["instances"]], [view["instances"][1]["id"]])
        self.assertEqual(m.orders.get_json("/peers/users?offset=5")["instances"], [])
        self.assertEqual(m.orders.request("GET", "/peers/users?limit=0")[0], 400)
        self.assertEqual(m.orders.request("GET", "/peers/users?limit=1001")[0], 400)

    def test_request_id_reaches_the_users_node(self):
        m = self.track(Mesh(users=1))
        m.wait_passing(1)
        uid = m.create_user()
        trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        status, _, _ = m.orders.request(
            "POST", "/orders", {"user_id": uid, "product": "pen", "quantity": 2},
            headers={"X-Request-ID": "itest-rid-7781", "traceparent": trace})
        self.assertEqual(status, 201)
        # the users node logs the request id of each request it answered
        wait_until(lambda: "request itest-rid-7781" in m.users[0].log_text(), timeout=2,
                   what="the caller's request id in the users node's log")

    def test_peer_settings_follow_kv_live(self):
        m = self.track(Mesh())
        m.wait_passing(2)
        uid = m.create_user()
        self.assertEqual(m.order(uid)[0], 201)
        m.consul.kv_put("config/orders/peers/users/tag", "nosuch")
        m.consul.kv_put("config/orders/peers/users/lb", "least_inflight")
        # Two KV writes may land in two reloads: wait for both.
        wait_until(lambda: (lambda v: (v["tag"], v["lb"]) == ("nosuch", "least_inflight"))(
            m.orders.get_json("/peers/users")), timeout=3, what="the tag and lb in force")
        view = m.orders.get_json("/peers/users")
        self.assertEqual(view["instances"], [])  # no users instance carries that tag
        status, hdrs, _ = m.order(uid)
        self.assertEqual(status, 503)
        self.assertIn("retry-after", hdrs)
        m.consul.kv_delete("config/orders/peers/users/tag")
        wait_until(lambda: m.orders.get_json("/peers/users")["tag"] == "", timeout=3,
                   what="the tag removed")
        self.assertEqual(m.order(uid)[0], 201)

    def test_kill9_under_a_stream_of_orders_loses_none(self):
        check_kill9_under_a_stream_of_orders(self, self.track(Mesh()))

    def test_all_users_gone_is_503_with_retry_after(self):
        m = self.track(Mesh())
        m.wait_passing(2)
        uid = m.create_user()
        self.assertEqual(m.order(uid)[0], 201)
        for u in m.users:
            u.kill9()
        for _ in range(3):
            t0 = time.monotonic()
            status, hdrs, body = m.order(uid)
            took = time.monotonic() - t0
            self.assertEqual(status, 503, body)
            self.assertIn("error", json.loads(body))
            self.assertGreaterEqual(int(hdrs.get("retry-after", "0")), 1)
            self.assertLess(took, PEER_TIMEOUT_MS / 1000.0)
        self.assertEqual(m.orders.request("GET", "/health")[0], 200)

    def test_new_users_node_used_within_two_seconds_of_passing(self):
        m = self.track(Mesh(users=1))
        m.wait_passing(1)
        uid = m.create_user()
        self.assertEqual(m.order(uid)[0], 201)
        late = m.add_users()
        m.wait_passing(2)
        t0 = time.monotonic()
        while user_lookups(late) == 0 and time.monotonic() - t0 < 5:
            self.assertEqual(m.order(uid)[0], 201)
        took = time.monotonic() - t0
        report("new users node: first call %.0f ms after it passed" % (took * 1000))
        self.assertGreater(user_lookups(late), 0)
        self.assertLess(took, 2.0)

    def test_consul_stopped_orders_keep_succeeding(self):
        m = self.track(Mesh())
        m.wait_passing(2)
        uid = m.create_user()
        self.assertEqual(m.order(uid)[0], 201)
        m.consul.kill9()
        statuses = [m.order(uid)[0] for _ in range(20)]
        self.assertEqual(statuses, [201] * 20)
        view = m.orders.get_json("/peers/users")
        self.assertEqual(len(view["instances"]), 2)
        wait_until(lambda: m.orders.get_json("/peers/users")["stale_ms"] > 0, timeout=5,
                   what="the view reported stale")

    def test_steady_state_costs_a_handful_of_consul_requests(self):
        m = self.track(Mesh())
        m.wait_passing(2)
        uid = m.create_user()
        self.assertEqual(m.order(uid)[0], 201)
        before = m.orders.metric("meshnode_consul_requests_total", op="health_watch")
        t0 = time.monotonic()
        done = 0
        while done < 1000 and time.monotonic() - t0 < 60:
            status, _, body = m.order(uid)
            self.assertEqual(status, 201, body)
            done += 1
        spent = time.monotonic() - t0
        calls = m.orders.metric("meshnode_consul_requests_total", op="health_watch") - before
        report("%d orders in %.1f s (%.0f/s, one client, new connection each) made %d "
               "health_watch requests" % (done, spent, done / spent, calls))
        self.assertEqual(done, 1000)
        self.assertLessEqual(calls, 5)


@requires_meshnode
class BlackholePeerTest(harness.ProcessesTestCase):
    """A users instance registered in Consul, passing, that accepts
    connections and never answers."""

    def test_silent_instance_costs_one_timeout_then_its_circuit_opens(self):
        m = self.track(Mesh(users=1))
        hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(hole.close)
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        port = hole.getsockname()[1]
        heads = []  # what reached the silent instance, read and never answered
        reader = threading.Thread(target=read_heads, args=(hole, heads), daemon=True)
        reader.start()
        m.consul.register_service({
            "ID": "users-silent", "Name": "users", "Address": "127.0.0.1", "Port": port,
            "Check": {"CheckID": "users-silent-ttl", "TTL": "600s", "Status": "passing"}})
        m.wait_passing(2)
        uid = m.create_user()
        slow = 0
        t_all = time.monotonic()
        trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        for i in range(20):
            t0 = time.monotonic()
            status, _, body = m.orders.request(
                "POST", "/orders", {"user_id": uid, "product": "book", "quantity": 1},
                headers={"X-Request-ID": "itest-silent-%d" % i, "traceparent": trace},
                timeout=10)
            self.assertEqual(status, 201, body)
            if time.monotonic() - t0 >= PEER_TIMEOUT_MS / 1000.0 * 0.9:
                slow += 1
        report("20 orders with a silent instance: %d paid the %d ms timeout, %.2f s in all"
               % (slow, PEER_TIMEOUT_MS, time.monotonic() - t_all))
        # round robin over two instances reaches the silent one at once
        self.assertEqual(slow, 1)
        view = m.orders.get_json("/peers/users")
        silent = [i for i in view["instances"] if i["id"] == "users-silent"]
        self.assertEqual(len(silent), 1)
        self.assertEqual(silent[0]["circuit"], "open")
        self.assertEqual(silent[0]["calls"], 1)
        self.assertEqual(m.orders.metric("meshnode_peer_requests_total", service="users",
                                outcome="timeout"), 1)
        self.assertEqual(m.orders.metric("meshnode_peer_circuit_state", service="users",
                                instance="users-silent"), 2)
        # the call carried the caller's request id and trace, with a new span
        self.assertEqual(len(heads), 1, heads)
        head = {k.strip().lower(): v.strip() for k, _, v in
                (line.partition(":") for line in heads[0].split("\r\n")[1:] if ":" in line)}
        self.assertRegex(head.get("x-request-id", ""), r"^itest-silent-\d+$")
        tp = head.get("traceparent", "")
        self.assertRegex(tp, r"^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$")
        self.assertNotEqual(tp, trace)


@requires_meshnode
class DemoScriptTest(unittest.TestCase):
    def test_demo_runs_and_survives_the_kill(self):
        demo = os.path.join(harness.REPO, "scripts", "demo.sh")
        p = subprocess.Popen([demo, harness.meshnode_binary()], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=harness.minimal_env(), cwd=harness.REPO)
        try:
            out, _ = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)  # its trap stops what it started
            out, _ = p.communicate(timeout=30)
            self.fail("demo.sh did not finish:\n" + out.decode(errors="replace"))
        text = out.decode(errors="replace")
        self.assertEqual(p.returncode, 0, text)
        self.assertIn('"product":"book"', text)
        self.assertIn("does not exist", text)
        self.assertIn("10 of 10 orders succeeded", text)
        # the order's OrderCreated event, from the broker's queue
        self.assertIn('"body": {"order_id": 1, "product_id": "book", "quantity": 2, '
                      '"user_id": 1}', text)
        self.assertIn('"delivery_mode": 2', text)
