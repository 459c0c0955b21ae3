"""Bounds on what a node follows in Consul, and a staleness that tells the
truth. Issue 9.

The services a node follows are decided by its configuration (its modules'
peers, orders -> users, and every peers.<name>); GET /peers/{service} for
anything else is 404 and starts nothing. consul.watch_max_services caps them,
consul.watch_idle_ms stops the unused ones, a tag change replaces the watch,
and consul.watch_wait_ms is the blocking wait of every watch. stale_ms (and
meshnode_peer_view_stale_seconds) is the time since the last complete,
successful answer, whatever the call in flight is doing: the agent's answers
are trickled or withheld by a TrickleRelay in front of the real agent (KV and
agent endpoints pass normally). Finally, GET /health and GET /ready never
wait on a peer: they answer within a second while 50 orders are stuck on a
trickling or silent users instance.

One real `consul agent -dev` for the module; every node on free ports,
stopped by PID when its test ends."""

import json
import random
import sys
import threading
import time

import harness
from harness import Node, TrickleRelay, requires_meshnode, wait_until

CONSUL = None  # the module's agent while its tests run (conftest.py)

STOPPED_FOLLOWING = "stopped following service '%s'"


def report(text):
    print("# " + text, file=sys.stderr, flush=True)


def metrics_text(node):
    status, _, data = node.request("GET", "/metrics")
    if status != 200:
        raise AssertionError("GET /metrics: %d" % status)
    return data.decode()


def samples(node, family, text=None):
    return harness.prom_samples(text if text is not None else metrics_text(node), family)


def gauge(node, family):
    """The single unlabelled sample of `family` (process_threads...)."""
    found = samples(node, family)
    if len(found) != 1:
        raise AssertionError("%s: expected one sample, got %r" % (family, found))
    return found[0][1]


def settled(node, family, timeout=3.0, interval=0.25):
    """The value of gauge `family` once two reads `interval` apart agree
    (bounded; the last value read at the deadline)."""
    deadline = time.monotonic() + timeout
    last = gauge(node, family)
    while time.monotonic() < deadline:
        time.sleep(interval)
        v = gauge(node, family)
        if v == last:
            return v
        last = v
    return last


def eventually_value(node, family, want, timeout=3.0):
    """Polls gauge `family` until it equals `want`; returns the last value
    read (== want on success) so the caller reports what it saw."""
    deadline = time.monotonic() + timeout
    while True:
        v = gauge(node, family)
        if v == want or time.monotonic() >= deadline:
            return v
        time.sleep(0.1)


def health_watch_calls(node, text=None, failed_only=False):
    """meshnode_consul_requests_total{op="health_watch"}, every result (or
    every result but success)."""
    return sum(v for lab, v in samples(node, "meshnode_consul_requests_total", text)
               if lab.get("op") == "health_watch" and
               (not failed_only or lab.get("result") != "success"))


def instance_series(node, text=None):
    """The service labels of meshnode_peer_instances."""
    return {lab.get("service") for lab, _ in
            samples(node, "meshnode_peer_instances", text)}


def peer_get(node, service, timeout=5.0):
    """(status, parsed JSON body or the raw bytes)."""
    status, _, data = node.request("GET", "/peers/" + service, timeout=timeout)
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def error_of(body):
    """The "error" message of a parsed error body ("" when there is none)."""
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, str) else ""


def log_count(node, needle):
    return node.log_text().count(needle)


def stale_ms(node):
    status, view = peer_get(node, "users", timeout=3.0)
    if status != 200:
        raise AssertionError("GET /peers/users: %d %r" % (status, view))
    return view["stale_ms"]


def health_path(method, path):
    return path.startswith("/v1/health/")


def register_users_instance(consul, test, instance_id, port, tags=()):
    """A users instance in the catalog, passing by TTL, removed at the end."""
    consul.register_service({
        "ID": instance_id, "Name": "users", "Address": "127.0.0.1", "Port": port,
        "Tags": list(tags),
        "Check": {"CheckID": instance_id + "-ttl", "TTL": "600s", "Status": "passing"}})
    test.addCleanup(lambda: consul.deregister_service(instance_id))


@requires_meshnode
class FollowedByConfigurationTest(harness.ProcessesTestCase):
    """Only configured services are followed; the rest are 404 and free."""

    def test_unknown_names_are_404_and_start_nothing(self):
        node = self.track(Node(name="pb-names", consul=CONSUL)).start_ready()
        threads0 = settled(node, "process_threads")
        fds0 = settled(node, "process_open_fds")
        watch0 = health_watch_calls(node)

        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        names = set()
        while len(names) < 300:
            names.add("%s-%08x" % (rng.choice(["svc", "billing", "pay", "a", "x-y"]),
                                   rng.getrandbits(32)))
        names = sorted(names)
        wrong = []   # (name, status, body) of answers that are not a proper 404
        sent = 0
        t0 = time.monotonic()
        for name in names:
            status, body = peer_get(node, name)
            sent += 1
            err = error_of(body)
            if status != 404 or name not in err or "not a peer" not in err:
                wrong.append((name, status, body if isinstance(body, dict) else body[:200]))
                if len(wrong) >= 10:
                    break  # proven; spare the node hundreds of watches
        report("%d unknown names asked in %.2f s (seed %d)"
               % (sent, time.monotonic() - t0, seed))

        threads1 = eventually_value(node, "process_threads", threads0)
        fds1 = eventually_value(node, "process_open_fds", fds0)
        text = metrics_text(node)
        watch1 = health_watch_calls(node, text)
        series = instance_series(node, text) & set(names)
        t0 = time.monotonic()
        status, _, _ = CONSUL.request("GET", "/v1/agent/self", timeout=3.0)
        agent_s = time.monotonic() - t0
        report("after them: process_threads %g -> %g, open fds %g -> %g, health_watch calls "
               "%g -> %g, agent answered %d in %.3f s"
               % (threads0, threads1, fds0, fds1, watch0, watch1, status, agent_s))

        problems = []
        if wrong:
            problems.append("%d of the first %d unknown names were not a 404 naming the "
                            "service as not a peer; first: %r" % (len(wrong), sent, wrong[:3]))
        if threads1 != threads0:
            problems.append("process_threads %g -> %g" % (threads0, threads1))
        if fds1 != fds0:
            problems.append("process_open_fds %g -> %g" % (fds0, fds1))
        if watch1 != watch0:
            problems.append("health_watch calls %g -> %g" % (watch0, watch1))
        if series:
            problems.append("meshnode_peer_instances series for %d unknown names, e.g. %r"
                            % (len(series), sorted(series)[:3]))
        if status != 200 or agent_s >= 2.0:
            problems.append("agent /v1/agent/self: %d after %.2f s" % (status, agent_s))
        if problems:
            self.fail("GET /peers/<unknown> on a users-only node: " + "; ".join(problems))

    def test_users_peer_only_where_a_module_calls_it(self):
        solo = self.track(Node(name="pb-solo", consul=CONSUL)).start_ready()
        orders = self.track(Node(name="pb-orders", consul=CONSUL,
                                 settings={"service.modules": ["orders"]})).start_ready()
        status, body = peer_get(solo, "users")
        self.assertEqual(status, 404, "a users-only node calls nobody, yet GET /peers/users "
                         "answered %d %r" % (status, body))
        self.assertIn("users", error_of(body))
        self.assertEqual(instance_series(solo), set())
        status, body = peer_get(orders, "users")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["service"], "users")
        # a module's routes on a node that does not run it: a 404 naming it
        for node, path, module in ((solo, "/orders", "orders"), (solo, "/orders/7", "orders"),
                                   (orders, "/users/1", "users")):
            status, _, data = node.request("GET", path)
            self.assertEqual(status, 404, path)
            self.assertIn("'%s' module" % module, json.loads(data)["error"], path)
        status, _, data = solo.request("GET", "/ordersx")
        self.assertEqual((status, json.loads(data)["error"]), (404, "no route for /ordersx"))

    def test_peer_named_in_kv_becomes_followed(self):
        key = "config/pb-kv/peers/billing/timeout_ms"
        self.addCleanup(lambda: CONSUL.kv_delete(key))
        node = self.track(Node(name="pb-kv", consul=CONSUL)).start_ready()
        status, body = peer_get(node, "billing")
        self.assertEqual(status, 404, "GET /peers/billing before billing is configured "
                         "answered %d %r" % (status, body))
        CONSUL.kv_put(key, "300")
        view = wait_until(lambda: (lambda r: r[0] == 200 and r[1])(peer_get(node, "billing")),
                          timeout=5, what="GET /peers/billing 200 once the KV key is applied")
        self.assertEqual(view["service"], "billing")
        self.assertEqual(view["timeout_ms"], 300)


@requires_meshnode
class WatchCapTest(harness.ProcessesTestCase):
    def test_peer_over_the_cap_is_503_and_costs_no_thread(self):
        env = {"MESHNODE_CONSUL_WATCH_MAX_SERVICES": "2",
               "MESHNODE_PEERS_A_TIMEOUT_MS": "100",
               "MESHNODE_PEERS_B_TIMEOUT_MS": "100",
               "MESHNODE_PEERS_C_TIMEOUT_MS": "100"}
        node = self.track(Node(name="pb-cap", consul=CONSUL, env=env)).start_ready()
        for name in ("a", "b"):
            status, body = peer_get(node, name)
            self.assertEqual(status, 200, "/peers/%s: %r" % (name, body))
        threads = settled(node, "process_threads")
        status, body = peer_get(node, "c")
        self.assertEqual(status, 503, "a third peer with consul.watch_max_services=2 "
                         "answered %d %r" % (status, body))
        self.assertIn("consul.watch_max_services", error_of(body))
        self.assertEqual(eventually_value(node, "process_threads", threads), threads,
                         "process_threads grew for a refused peer")
        self.assertNotIn("c", instance_series(node))
        self.assertEqual(peer_get(node, "a")[0], 200)


@requires_meshnode
class IdleWatchTest(harness.ProcessesTestCase):
    def test_unused_peer_stops_and_comes_back_when_asked(self):
        env = {"MESHNODE_CONSUL_WATCH_IDLE_MS": "1500",
               "MESHNODE_PEERS_A_TIMEOUT_MS": "100"}
        node = self.track(Node(name="pb-idle", consul=CONSUL, env=env)).start_ready()
        needle = STOPPED_FOLLOWING % "a"
        stops0 = log_count(node, needle)
        t_use = time.monotonic()
        status, body = peer_get(node, "a")
        self.assertEqual(status, 200, body)
        following = settled(node, "process_threads", timeout=1.0, interval=0.2)

        deadline = t_use + 5.0
        while log_count(node, needle) == stops0 and time.monotonic() < deadline:
            time.sleep(0.1)
        if log_count(node, needle) == stops0:
            self.fail("no %r in the log 5 s after the last use with consul.watch_idle_ms=1500"
                      " (process_threads %g -> %g, meshnode_peer_instances series %r)"
                      % (needle, following, gauge(node, "process_threads"),
                         sorted(instance_series(node))))
        report("idle stop logged %.2f s after the last use" % (time.monotonic() - t_use))
        self.assertEqual(eventually_value(node, "process_threads", following - 1),
                         following - 1, "the idle watch's thread did not end")
        wait_until(lambda: "a" not in instance_series(node), timeout=2,
                   what='meshnode_peer_instances{service="a"} gone')

        status, body = peer_get(node, "a")
        self.assertEqual(status, 200, body)
        self.assertEqual(eventually_value(node, "process_threads", following), following,
                         "following 'a' again should cost its one thread again")
        wait_until(lambda: "a" in instance_series(node), timeout=3,
                   what='meshnode_peer_instances{service="a"} back')


@requires_meshnode
class TagChangeTest(harness.ProcessesTestCase):
    def test_tag_change_replaces_the_watch(self):
        key = "config/pb-tag/peers/users/tag"
        self.addCleanup(lambda: CONSUL.kv_delete(key))
        node = self.track(Node(name="pb-tag", consul=CONSUL,
                               settings={"service.modules": ["orders"]})).start_ready()
        status, body = peer_get(node, "users")
        self.assertEqual(status, 200, body)
        one_watch = settled(node, "process_threads")
        needle = STOPPED_FOLLOWING % "users"
        stops0 = log_count(node, needle)
        tags = ["x", "y", "x2", "y2", "z"]
        for tag in tags:
            CONSUL.kv_put(key, tag)
            wait_until(lambda: peer_get(node, "users")[1]["tag"] == tag, timeout=5,
                       what="GET /peers/users with tag %r in force" % tag)
        threads = eventually_value(node, "process_threads", one_watch, timeout=4)
        stops = log_count(node, needle) - stops0
        self.assertTrue(threads == one_watch and stops >= len(tags),
                        "after %d tag changes: process_threads %g (one watch: %g), %d %r lines"
                        " (want one per change)" % (len(tags), threads, one_watch, stops, needle))
        view = peer_get(node, "users")[1]
        self.assertEqual(view["tag"], tags[-1])


@requires_meshnode
class StalenessTest(harness.ProcessesTestCase):
    """An orders node whose agent is a TrickleRelay in front of the real one,
    health answers every ~2 s (consul.watch_wait_ms=2000). stale_ms counts
    from the last complete, successful answer."""

    def mesh(self, instance_id):
        relay = self.track(TrickleRelay(CONSUL.http_port, affects=health_path))
        register_users_instance(CONSUL, self, instance_id, harness.free_port())
        node = self.track(Node(name="pb-" + instance_id, consul_addr=relay.addr,
                               settings={"service.modules": ["orders"]},
                               env={"MESHNODE_CONSUL_WATCH_WAIT_MS": "2000"})).start_ready()
        wait_until(lambda: any(i["id"] == instance_id
                               for i in peer_get(node, "users")[1]["instances"]),
                   timeout=10, what="the users instance in /peers/users")
        seen = []
        for _ in range(4):  # healthy: answers every ~2 s, so never 3 s old
            seen.append(stale_ms(node))
            time.sleep(0.8)
        self.assertTrue(all(s < 3000 for s in seen), "healthy stale_ms: %r" % seen)
        return relay, node

    def watch_stale(self, node, done, timeout):
        """Reads stale_ms every 0.25 s until done(value) or the deadline;
        returns (met, values read)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            seen.append(stale_ms(node))
            if done(seen[-1]):
                return True, seen
            if time.monotonic() >= deadline:
                return False, seen
            time.sleep(0.25)

    def wait_stale(self, node, above_ms, timeout, what):
        met, seen = self.watch_stale(node, lambda v: v > above_ms, timeout)
        if not met:
            self.fail("%s: stale_ms did not pass %d ms in %.0f s; it read %s"
                      % (what, above_ms, timeout, sorted(set(seen))[-8:]))
        return seen[-1]

    def wait_fresh(self, node, timeout, what):
        met, seen = self.watch_stale(node, lambda v: v < 3000, timeout)
        if not met:
            self.fail("%s: stale_ms not back under 3000 ms in %.0f s; last %r"
                      % (what, timeout, seen[-5:]))

    def test_trickled_answers_make_the_view_stale_and_fail_the_call(self):
        relay, node = self.mesh("users-trickled")
        failed0 = health_watch_calls(node, failed_only=True)
        t_switch = time.monotonic()
        relay.set_mode("trickle")
        stale = self.wait_stale(node, 5000, 12, "health answers trickled at 1 byte/s")
        report("trickle: stale_ms %d after %.1f s" % (stale, time.monotonic() - t_switch))
        metric = [v for lab, v in samples(node, "meshnode_peer_view_stale_seconds")
                  if lab.get("service") == "users"]
        self.assertEqual(len(metric), 1, metric)
        self.assertGreater(metric[0], 5.0, "meshnode_peer_view_stale_seconds disagrees "
                           "with stale_ms %d" % stale)
        wait_until(lambda: health_watch_calls(node, failed_only=True) > failed0,
                   timeout=max(0.5, 12 - (time.monotonic() - t_switch)),
                   what="a failed health_watch call (the trickled body abandoned at the "
                        "call's deadline)")
        relay.set_mode("normal")
        self.wait_fresh(node, 10, "answers flowing again")

    def test_silent_agent_makes_the_view_stale(self):
        relay, node = self.mesh("users-silent")
        t_switch = time.monotonic()
        relay.set_mode("silent")
        stale = self.wait_stale(node, 4000, 10, "health answers withheld")
        report("silent: stale_ms %d after %.1f s" % (stale, time.monotonic() - t_switch))
        relay.set_mode("normal")
        self.wait_fresh(node, 10, "answers flowing again")


def timed_get(node, path, timeout=3.0):
    """(status or the exception's name, seconds)."""
    t0 = time.monotonic()
    try:
        status = node.request("GET", path, timeout=timeout)[0]
    except Exception as e:  # noqa: BLE001 - reported as the outcome
        status = type(e).__name__
    return status, time.monotonic() - t0


@requires_meshnode
class SystemEndpointsNeverWaitOnPeersTest(harness.ProcessesTestCase):
    def test_health_and_ready_answer_while_orders_wait_on_a_stuck_peer(self):
        orders_n, peer_timeout_s = 50, 4.0
        backend = self.track(Node(name="pb-backend", consul=CONSUL)).start_ready()
        peer = self.track(TrickleRelay(backend.port))
        register_users_instance(CONSUL, self, "users-stuck", peer.port, tags=["pb-stuck"])
        agent = self.track(TrickleRelay(CONSUL.http_port, affects=health_path))
        orders = self.track(Node(name="pb-busy", consul_addr=agent.addr, settings={
            "service.modules": ["orders"],
            "server.threads": 128,  # room for every order: this is about locks
            "peers.users.tag": "pb-stuck",
            "peers.users.timeout_ms": int(peer_timeout_s * 1000),
            "peers.users.retries": 0,
            "peers.users.breaker_failures": 1000,
            "peers.users.breaker_open_ms": 100,  # an ejection ends between phases
        }, env={"MESHNODE_CONSUL_WATCH_WAIT_MS": "2000"})).start_ready()
        status, _, body = backend.request("POST", "/users",
                                          {"name": "Ada", "email": "ada@example.com"})
        self.assertEqual(status, 201, body)
        uid = json.loads(body)["id"]
        order = {"user_id": uid, "product": "book", "quantity": 1}

        for mode in ("trickle", "silent"):
            wait_until(lambda: orders.request("POST", "/orders", order)[0] == 201, timeout=10,
                       what="an order through the users relay, all flowing (set-up)")
            with self.subTest(mode=mode):
                self.probe_while_stuck(orders, peer, agent, mode, order, orders_n,
                                       peer_timeout_s)

    def probe_while_stuck(self, orders, peer, agent, mode, order, count, peer_timeout_s):
        peer.set_mode(mode)
        agent.set_mode(mode)
        try:
            affected0 = peer.affected
            results = []
            lock = threading.Lock()

            def one():
                try:
                    st = orders.request("POST", "/orders", order,
                                        timeout=peer_timeout_s + 8)[0]
                except Exception as e:  # noqa: BLE001 - reported below
                    st = type(e).__name__
                with lock:
                    results.append(st)

            workers = [threading.Thread(target=one, daemon=True) for _ in range(count)]
            t0 = time.monotonic()
            for w in workers:
                w.start()
            wait_until(lambda: peer.affected > affected0, timeout=3,
                       what="orders calling the stuck users instance")
            # probe once every order is stuck on the peer (bounded: fewer
            # may get there if the node serialises them; they still count)
            until = time.monotonic() + 3.0
            while peer.affected - affected0 < count and time.monotonic() < until:
                time.sleep(0.05)
            time.sleep(0.2)
            in_flight = peer.affected - affected0
            probes = []
            for _ in range(3):
                for path in ("/health", "/ready"):
                    probes.append((path,) + timed_get(orders, path))
                time.sleep(0.2)
            with lock:
                done_during_probes = len(results)
            _, metrics_s = timed_get(orders, "/metrics")
            for w in workers:
                w.join(timeout=max(0.1, t0 + peer_timeout_s + 10 - time.monotonic()))
            report("%s peer: %d orders calling it when probed; probes %s; /metrics %.3f s; "
                   "orders answered %s" % (
                       mode, in_flight,
                       ", ".join("%s %s %.3fs" % p for p in probes), metrics_s,
                       {s: results.count(s) for s in set(results)}))
            slow = [p for p in probes if p[1] != 200 or p[2] >= 1.0]
            self.assertEqual(slow, [], "/health or /ready waited (or failed) while %d orders "
                             "were stuck on a %s peer" % (in_flight, mode))
            self.assertEqual(done_during_probes, 0, "orders ended before the probes did: "
                             "the probes did not run while the orders were stuck")
            self.assertFalse(any(w.is_alive() for w in workers),
                             "orders still unanswered %.0f s after the peer timeout"
                             % (time.monotonic() - t0 - peer_timeout_s))
        finally:
            peer.set_mode("normal")
            agent.set_mode("normal")
