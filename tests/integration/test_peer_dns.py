"""Discovery through Consul's DNS interface (issue 13, point 4) against a
real agent's DNS port: peers.users.discovery = "dns" makes the orders node
find users instances from the SRV records of users.service.consul (with
<tag>.users.service.consul when peers.users.tag is set), asked at
consul.dns_address every second, into the same snapshot, balancing,
breakers and retries as the blocking health queries.

Two real users nodes that register themselves, one SQLite file; a real
orders node. One real `consul agent -dev` for the module, its DNS port
free and on loopback; every node on free ports, stopped by PID when its
test ends."""

import json
import os
import re
import sys
import time

import harness
from harness import Node, requires_meshnode, wait_until

CONSUL = None  # the module's agent while its tests run (conftest.py)


def CONSUL_FACTORY():
    return harness.Consul(dns=True)


def report(text):
    print("# " + text, file=sys.stderr, flush=True)


def user_lookups(node):
    return node.metric("http_requests_total", method="GET", endpoint="/users/{id}")


@requires_meshnode
class DnsDiscoveryTest(harness.ProcessesTestCase):
    def setUp(self):
        super().setUp()
        self.dir = harness.mkdtemp("dns")
        db = os.path.join(self.dir, "users.db")
        self.users = []
        for tags in (["blue"], ["green"]):
            n = self.track(Node(name="users", consul=CONSUL, settings={
                "database.path": db, "service.tags": tags}))
            n.start_ready()
            self.users.append(n)
        status, _, body = self.users[0].request(
            "POST", "/users", {"name": "Ada", "email": "ada@example.com"})
        self.assertEqual(status, 201, body)
        self.uid = json.loads(body)["id"]
        wait_until(lambda: len(CONSUL.get("/v1/health/service/users?passing") or []) == 2,
                   timeout=10, what="both users nodes passing")

    def start_orders(self, **settings):
        base = {"service.modules": ["orders"],
                "database.path": os.path.join(self.dir, "orders.db"),
                "consul.dns_address": CONSUL.dns_addr,
                "peers.users.discovery": "dns",
                "peers.users.timeout_ms": 1000}
        base.update(settings)
        self.orders = self.track(Node(name="orders", consul=CONSUL, settings=base))
        self.orders.start_ready()
        return self.orders

    def view(self):
        return self.orders.get_json("/peers/users")

    def ports_in_view(self):
        return sorted(i["port"] for i in self.view()["instances"])

    def place(self, count):
        failed = []
        for _ in range(count):
            status, _, body = self.orders.request(
                "POST", "/orders", {"user_id": self.uid, "product": "book", "quantity": 1})
            if status != 201:
                failed.append((status, body[:200]))
        return failed

    def test_passing_set_follows_a_node_stop_and_start(self):
        self.start_orders()
        self.assertEqual(self.place(10), [])
        view = self.view()
        self.assertEqual(view["discovery"], "dns")
        self.assertEqual(sorted(i["port"] for i in view["instances"]),
                         sorted(n.port for n in self.users))
        # instances are named by address and port: DNS has no service id
        self.assertEqual(sorted(i["id"] for i in view["instances"]),
                         sorted("127.0.0.1:%d" % n.port for n in self.users))
        before = [user_lookups(n) for n in self.users]
        self.assertEqual(self.place(20), [])
        got = [user_lookups(n) - b for n, b in zip(self.users, before)]
        self.assertEqual(sum(got), 20)
        self.assertTrue(all(got), "both instances are called: %s" % got)
        self.assertIn("through DNS at %s" % CONSUL.dns_addr, self.orders.log_text())

        # the second node stops (it deregisters): out of the view
        gone = self.users[1]
        t0 = time.monotonic()
        gone.stop()
        wait_until(lambda: self.ports_in_view() == [self.users[0].port], timeout=5,
                   interval=0.05, what="the stopped node out of the DNS view")
        t_out = time.monotonic() - t0
        self.assertEqual(self.place(10), [])

        # and back: in the view again, and called
        t0 = time.monotonic()
        gone.start_ready()
        wait_until(lambda: len(self.ports_in_view()) == 2, timeout=10, interval=0.05,
                   what="the node back in the DNS view")
        t_back = time.monotonic() - t0
        before = user_lookups(gone)
        self.assertEqual(self.place(10), [])
        self.assertGreater(user_lookups(gone), before)
        report("dns: a stopped users node left the orders node's view after %.2f s, a "
               "started one was back %.2f s after its start (lookups every second)"
               % (t_out, t_back))

    def test_tag_narrows_the_set(self):
        self.start_orders(**{"peers.users.tag": "green"})
        self.assertEqual(self.place(5), [])
        view = self.view()
        self.assertEqual(view["tag"], "green")
        self.assertEqual(self.ports_in_view(), [self.users[1].port])
        before = user_lookups(self.users[0])
        self.assertEqual(self.place(5), [])
        self.assertEqual(user_lookups(self.users[0]), before)

    def test_tag_that_is_no_dns_label_is_refused(self):
        self.start_orders(**{"peers.users.tag": "no such"})
        status, _, body = self.orders.request("GET", "/peers/users")
        self.assertEqual(status, 400, body)
        self.assertIn("not a DNS name", body.decode())

    def test_discovery_changed_live(self):
        """peers.users.discovery is dynamic: a KV change moves the service
        from DNS to blocking queries and back, the old watch stopped."""
        self.start_orders()
        self.addCleanup(CONSUL.kv_delete, "config/orders/", True)
        self.assertEqual(self.view()["discovery"], "dns")
        CONSUL.kv_put("config/orders/peers/users/discovery", "http")
        wait_until(lambda: self.view()["discovery"] == "http", timeout=5, interval=0.05,
                   what="discovery http in the view")
        self.assertEqual(len(self.view()["instances"]), 2)
        self.assertEqual(self.place(5), [])
        self.assertIn("its discovery changed to http", self.orders.log_text())
        CONSUL.kv_put("config/orders/peers/users/discovery", "dns")
        wait_until(lambda: self.view()["discovery"] == "dns", timeout=5, interval=0.05,
                   what="discovery dns in the view")
        self.assertEqual(self.place(5), [])

    def test_all_gone_empties_the_view_after_answers_and_bound_not_at_once(self):
        """Issue 21, point 5: every users instance deregisters. The agent
        (1.8.7) then answers NXDOMAIN, as it does for a service it never
        knew. The view keeps the last instances until 3 such answers in a
        row and 10 s since the last answer with one (DNS_VIEW_NONE_ANSWERS,
        DNS_VIEW_KEEP_MS), then empties; an instance back is taken at once."""
        self.start_orders()
        self.assertEqual(self.place(3), [])
        self.assertEqual(len(self.view()["instances"]), 2)
        t0 = time.monotonic()
        for n in self.users:  # one after the other: the view has 1, then none
            n.stop()
        wait_until(lambda: not CONSUL.get("/v1/catalog/service/users"), timeout=10,
                   interval=0.05, what="both users instances deregistered")
        t_gone = time.monotonic() - t0
        seen = []  # (seconds since the stop, instances in the view, stale_ms)
        emptied = None
        while time.monotonic() - t0 < 25:
            view = self.view()
            seen.append((round(time.monotonic() - t0, 2), len(view["instances"]),
                         view["stale_ms"]))
            if not view["instances"]:
                emptied = time.monotonic() - t0
                break
            time.sleep(0.2)
        report("dns: both users instances deregistered %.2f s after the stop; the view "
               "emptied %s s after it" % (t_gone, None if emptied is None
                                          else round(emptied, 2)))
        self.assertIsNotNone(emptied, "the view never emptied: %r" % seen[-5:])
        # When the last answer with an instance came: the log of the
        # emptying says how long before it (a node deregisters as its stop
        # begins, before it drains).
        self.assertTrue(any(n == 1 for _, n, _ in seen),
                        "the view emptied as the instances went: %r" % seen)
        m = re.search(r"no instance of '[^']*' in \d+ answers over (\d+) ms; the view of "
                      r"'users' is empty now", self.orders.log_text())
        self.assertIsNotNone(m, "no log of the emptying")
        last = emptied - int(m.group(1)) / 1000.0
        # The agent answers all along (none): the view is held, not stale.
        answered = [s for s in seen if s[1] == 1 and s[0] >= last + 2.5]
        self.assertTrue(answered and all(s[2] < 2500 for s in answered),
                        "the view went stale while the agent answered: %r" % seen)
        # Lookups every second: 3 NXDOMAIN answers came within ~4 s of it;
        # the view held its last instance on until the 10 s bound.
        held = [s for s in seen if last + 4.0 <= s[0] < last + 9.0]
        self.assertTrue(held and all(s[1] == 1 for s in held),
                        "the view did not hold its last instance: %r" % seen)
        self.assertGreaterEqual(emptied - last, 9.0, "emptied too soon: %r" % seen)
        self.assertLess(emptied - last, 10 + 5, "emptied too late: %r" % seen)
        report("dns: the last answer with an instance %.2f s after the stop, the view "
               "empty %.2f s after that answer" % (last, emptied - last))
        log = self.orders.log_text()
        self.assertIn("the last view of 'users' (1 instance) stays until 3 answers", log)
        self.assertIn("the view of 'users' is empty now", log)
        # one back: in the view at once
        self.users[0].start_ready()
        wait_until(lambda: self.ports_in_view() == [self.users[0].port], timeout=10,
                   interval=0.1, what="the restarted instance in the view")
        self.assertEqual(self.place(3), [])

    def test_zz_dns_down_keeps_the_last_view(self):
        """The agent stops (its DNS with it): the view stays, orders go on
        to the instances last seen, the staleness grows; back, the view is
        current again. (Last in the module: it restarts the agent.)"""
        self.start_orders()
        self.assertEqual(self.place(5), [])
        CONSUL.stop()
        try:
            time.sleep(2.5)
            view = self.view()
            self.assertEqual(len(view["instances"]), 2)
            self.assertGreaterEqual(view["stale_ms"], 1500)
            self.assertEqual(self.place(10), [])
            self.assertIn("DNS lookup of 'users.service.consul' at %s failed"
                          % CONSUL.dns_addr, self.orders.log_text())
        finally:
            CONSUL.start()
        # the users nodes register again; the lookups answer again
        wait_until(lambda: self.view()["stale_ms"] < 1500, timeout=15, interval=0.1,
                   what="the DNS view current again")
        wait_until(lambda: len(self.view()["instances"]) == 2, timeout=15, interval=0.1,
                   what="both instances in the view again")
        self.assertIn("answers again", self.orders.log_text())
