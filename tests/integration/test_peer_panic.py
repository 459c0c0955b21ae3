"""The panic threshold against a real agent (issue 12, point 2): when fewer
instances of a peer service pass than peers.<name>.panic_threshold (50 % by
default) of those registered, none at all included, the node calls every
registered instance instead of failing each call, says so in
GET /peers/{service}, in meshnode_peer_panic and in one log line, and goes
back to the passing ones as soon as enough pass.

Two real users nodes (one SQLite file) that do not register themselves:
the test registers them in the agent as users-a and users-b with TTL
checks, so that failing a check (what a partitioned host's stale gossip
does to a healthy one for a moment) is one agent API call and the nodes go
on answering. A real orders node calls them. One real `consul agent -dev`
for the module; every node on free ports, stopped by PID when its test
ends."""

import json
import os
import sys
import time

import harness
from harness import Node, requires_meshnode, wait_until

CONSUL = None  # the module's agent while its tests run (conftest.py)

ENTERED = "service 'users' in panic: "
LEFT = "service 'users' out of panic: "


def report(text):
    print("# " + text, file=sys.stderr, flush=True)


def user_lookups(node):
    """GET /users/{id} requests a users node answered."""
    return node.metric("http_requests_total", method="GET", endpoint="/users/{id}")


@requires_meshnode
class PanicThresholdTest(harness.ProcessesTestCase):
    def setUp(self):
        super().setUp()
        self.dir = harness.mkdtemp("panic")
        db = os.path.join(self.dir, "users.db")
        self.users = {}
        for name in ("users-a", "users-b"):
            n = self.track(Node(name="users", consul=CONSUL,
                                settings={"database.path": db, "consul.register": False}))
            n.start_ready()
            self.users[name] = n
            CONSUL.register_service({
                "ID": name, "Name": "users", "Address": "127.0.0.1", "Port": n.port,
                "Check": {"CheckID": name + "-ttl", "TTL": "600s", "Status": "passing"}})
            self.addCleanup(CONSUL.deregister_service, name)
        self.orders = self.track(Node(name="orders", consul=CONSUL, settings={
            "service.modules": ["orders"],
            "database.path": os.path.join(self.dir, "orders.db"),
            "peers.users.timeout_ms": 1000}))
        self.orders.start_ready()
        self.addCleanup(CONSUL.kv_delete, "config/orders/", True)
        self.wait_view(lambda v: v["instances_passing"] == 2, "both users instances passing")
        status, _, body = self.users["users-a"].request(
            "POST", "/users", {"name": "Ada", "email": "ada@example.com"})
        self.assertEqual(status, 201, body)
        self.uid = json.loads(body)["id"]

    def view(self):
        return self.orders.get_json("/peers/users")

    def wait_view(self, pred, what, timeout=5.0):
        wait_until(lambda: pred(self.view()), timeout=timeout, interval=0.05, what=what)

    def ttl(self, name, verb):
        CONSUL.put("/v1/agent/check/%s/%s-ttl" % (verb, name))

    def orders_placed(self, count):
        """Places `count` orders; returns the statuses of those that failed
        and how many user lookups each users node answered meanwhile."""
        before = {k: user_lookups(n) for k, n in self.users.items()}
        failed = []
        for _ in range(count):
            status, _, body = self.orders.request(
                "POST", "/orders", {"user_id": self.uid, "product": "book", "quantity": 1})
            if status != 201:
                failed.append((status, body[:200]))
        return failed, {k: user_lookups(n) - before[k] for k, n in self.users.items()}

    def panic_metric(self):
        return self.orders.metric("meshnode_peer_panic", service="users")

    def test_every_check_critical_orders_go_on_then_back_to_the_passing_one(self):
        failed, _ = self.orders_placed(1)
        self.assertEqual(failed, [])
        self.assertEqual(self.panic_metric(), 0)
        view = self.view()
        self.assertFalse(view["panic"])
        self.assertEqual(view["panic_threshold"], 50)

        # both checks critical: none passing of two registered
        t0 = time.monotonic()
        self.ttl("users-a", "fail")
        self.ttl("users-b", "fail")
        self.wait_view(lambda v: v["panic"], "panic in the view")
        report("both checks failed: panic in the view after %.0f ms"
               % ((time.monotonic() - t0) * 1000))
        view = self.view()
        self.assertEqual((view["instances_passing"], view["instances_registered"],
                          view["instances_total"]), (0, 2, 2))
        self.assertEqual(sorted((i["id"], i["passing"]) for i in view["instances"]),
                         [("users-a", False), ("users-b", False)])
        self.assertEqual(self.panic_metric(), 1)
        failed, lookups = self.orders_placed(20)
        self.assertEqual(failed, [])
        self.assertEqual(sum(lookups.values()), 20)
        self.assertTrue(all(n >= 8 for n in lookups.values()), lookups)

        # one passes again: 1 of 2 is not below 50 %, calls go to it alone
        self.ttl("users-a", "pass")
        self.wait_view(lambda v: not v["panic"], "panic over")
        view = self.view()
        self.assertEqual((view["instances_passing"], view["instances_registered"],
                          view["instances_total"]), (1, 2, 1))
        self.assertEqual([i["id"] for i in view["instances"]], ["users-a"])
        self.assertEqual(self.panic_metric(), 0)
        failed, lookups = self.orders_placed(10)
        self.assertEqual(failed, [])
        self.assertEqual(lookups, {"users-a": 10, "users-b": 0})

        # one line in, one line out, not one per answer
        log = self.orders.log_text()
        self.assertEqual(log.count(ENTERED), 1, log[-3000:])
        self.assertEqual(log.count(LEFT), 1, log[-3000:])

    def test_threshold_zero_turns_panic_off_live(self):
        self.ttl("users-a", "fail")
        self.ttl("users-b", "fail")
        self.wait_view(lambda v: v["panic"], "panic in the view")
        self.assertEqual(self.orders_placed(3)[0], [])

        # peers.users.panic_threshold = 0 through KV: no panic, as before
        # there was a threshold, without a new answer from the health watch
        CONSUL.kv_put("config/orders/peers/users/panic_threshold", "0")
        self.wait_view(lambda v: v["panic_threshold"] == 0 and not v["panic"],
                       "threshold 0 in force and panic over")
        view = self.view()
        self.assertEqual((view["instances_passing"], view["instances_registered"],
                          view["instances_total"]), (0, 2, 0))
        self.assertEqual(self.panic_metric(), 0)
        status, hdrs, body = self.orders.request(
            "POST", "/orders", {"user_id": self.uid, "product": "book", "quantity": 1})
        self.assertEqual(status, 503, body)
        self.assertIn("error", json.loads(body))

        CONSUL.kv_delete("config/orders/peers/users/panic_threshold")
        self.wait_view(lambda v: v["panic_threshold"] == 50 and v["panic"],
                       "the default threshold back, and panic")
        self.assertEqual(self.orders_placed(3)[0], [])
