"""The admin listener (issue 23, point 3), against a real Consul agent:
with admin.port set, /health, /ready, /metrics, /config and /peers/{service}
are served there in plain HTTP and only there, the users API stays on the
service port only, the agent's HTTP check targets the admin port and
passes; a SIGTERM turns /ready 503 on the admin port while a slow request
keeps the service port draining, and the node exits 0; admin.port equal to
service.port is a configuration error (2); a port that cannot be bound is
a runtime failure (1) that names the listener. With admin.port 0 (the
default) everything stays on the service port. docs/operations.md "The
admin listener", docs/http-api.md, docs/consul.md."""

import json
import re
import signal
import socket
import threading
import time

import harness
from harness import Node, free_port, http_request, requires_meshnode, wait_until


CONSUL = None  # the module's agent, while its tests run
harness.share_consul(globals())

SYSTEM_PATHS = ("/health", "/ready", "/metrics", "/config", "/peers/users")


def admin_get(port, path, timeout=2.0):
    return http_request(port, "GET", path, timeout=timeout)


def status_of(port, path, timeout=2.0):
    """The status of GET path, None when nothing answered."""
    try:
        return admin_get(port, path, timeout)[0]
    except OSError:
        return None


def start_on_admin(node, admin_port, timeout=10.0):
    """Starts `node` and waits (bounded) for /health 200 on its admin port:
    its service port no longer answers /health. Fails fast, with the log,
    when the process exits."""
    node.start()

    def up():
        if node.proc.poll() is not None:
            raise harness.NodeError("meshnode exited with %s before the admin /health "
                                    "answered:\n%s" % (node.proc.returncode,
                                                       harness.tail(node.log_path)))
        return status_of(admin_port, "/health", timeout=1.0) == 200

    wait_until(up, timeout=timeout, interval=0.05, what="/health 200 on the admin port")
    return node


def agent_check(service_id):
    """The agent's check of `service_id` (from /v1/agent/checks), or None."""
    for c in (CONSUL.agent_checks() or {}).values():
        if c.get("ServiceID") == service_id:
            return c
    return None


def check_target(check):
    """The URL the agent's HTTP check polls: its definition's HTTP field
    when the agent fills it, else the URL its output names (1.8.7 leaves
    Definition empty and writes "HTTP GET <url>: 200 OK ...")."""
    http = (check.get("Definition") or {}).get("HTTP")
    if http:
        return http
    m = re.match(r"HTTP GET (\S+): ", check.get("Output") or "")
    return m.group(1) if m else None


@requires_meshnode
class AdminListenerTest(harness.ProcessesTestCase):
    def node(self, name, admin_port=None, **kw):
        settings = kw.pop("settings", {})
        settings.setdefault("log.format", "text")
        # a peer the node follows, so /peers/users has something to show
        settings.setdefault("peers.users.retries", 2)
        if admin_port is not None:
            settings["admin.port"] = admin_port
        return self.track(Node(name=name, consul=kw.pop("consul", CONSUL), settings=settings,
                               **kw))

    def test_system_routes_only_on_the_admin_port(self):
        admin = free_port()
        n = start_on_admin(self.node("adm-routes", admin), admin)
        for path in SYSTEM_PATHS:
            status, hdrs, body = admin_get(admin, path)
            self.assertEqual(status, 200, "admin %s: %d %r" % (path, status, body[:200]))
            status, _, body = n.request("GET", path)
            self.assertEqual(status, 404, "service %s: %d %r" % (path, status, body[:200]))
            self.assertEqual(json.loads(body)["error"], "no route for %s" % path)
        # the API stays on the service port
        status, _, body = n.request("POST", "/users", {"name": "Ada", "email": "ada@example.com"})
        self.assertEqual(status, 201, body)
        self.assertEqual(n.request("GET", "/users")[0], 200)
        self.assertEqual(admin_get(admin, "/users")[0], 404)
        self.assertEqual(http_request(admin, "POST", "/users",
                                      {"name": "Bob", "email": "bob@example.com"})[0], 404)
        # /config tells where the node listens; /ready is the node's
        cfg = json.loads(admin_get(admin, "/config?limit=1000")[2])
        self.assertEqual(harness.config_value(cfg, "admin.port"), admin)
        self.assertEqual(harness.config_value(cfg, "service.port"), n.port)
        # one registry: the admin /metrics counts both listeners' requests
        # by route pattern
        _, _, text = admin_get(admin, "/metrics")
        samples = harness.prom_samples(text.decode(), "http_requests_total")
        routes = {lab.get("endpoint") for lab, _ in samples}
        self.assertIn("/health", routes)
        self.assertIn("/users", routes)
        # the service port's framing checks, on the admin port too
        raw = harness.raw_exchange(admin, b"GET /health HTTP/1.1\r\nHost: t\r\n"
                                          b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nx")
        status, hdrs, body = harness.parse_raw_response(raw)
        self.assertEqual(status, 400, raw[:300])
        self.assertIn(b"conflicting Content-Length headers", body)
        self.assertEqual(harness.raw_exchange(admin, b"GET /health HTTP/1.1\r\n\r\n")[:12],
                         b"HTTP/1.1 400")

    def test_the_agents_check_targets_the_admin_port(self):
        admin = free_port()
        n = start_on_admin(self.node("adm-check", admin), admin)
        [svc] = wait_until(lambda: CONSUL.service_by_name("adm-check"), timeout=10,
                           what="adm-check registered")
        # the catalog keeps the service port
        self.assertEqual(svc["Port"], n.port)
        self.assertEqual(svc["Address"], "127.0.0.1")

        def polled():
            c = agent_check(svc["ID"])
            return c if c and c.get("Output") and c["Status"] == "passing" else None

        check = wait_until(polled, timeout=10, interval=0.1,
                           what="the agent's check of adm-check run and passing")
        self.assertEqual(check["Type"], "http")
        self.assertEqual(check_target(check), "http://127.0.0.1:%d/health" % admin, check)
        self.assertNotIn(":%d/" % n.port, check["Output"])
        wait_until(lambda: CONSUL.health_service("adm-check", passing=True), timeout=10,
                   what="adm-check passing in /v1/health/service")

    def test_sigterm_drains_with_the_admin_port_answering(self):
        admin = free_port()
        n = start_on_admin(self.node("adm-drain", admin), admin)
        body = json.dumps({"name": "Slow", "email": "slow@example.com"}).encode()
        # A request in flight on the service port: its head sent, its body
        # held back, so the service listener's drain stays open.
        slow = socket.create_connection(("127.0.0.1", n.port), timeout=10)
        self.addCleanup(slow.close)
        slow.sendall(b"POST /users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
        time.sleep(0.3)  # the worker is reading the body
        t0 = time.monotonic()
        n.signal(signal.SIGTERM)
        seen = []
        wait_until(lambda: seen.append(status_of(admin, "/ready")) or seen[-1] == 503,
                   timeout=3, interval=0.02, what="/ready 503 on the admin port")
        ready_at = time.monotonic() - t0
        # during the drain: the admin port answers its probes, the service
        # port refuses new work
        health = status_of(admin, "/health")
        metrics = status_of(admin, "/metrics")
        ready = admin_get(admin, "/ready")
        new_work = status_of(n.port, "/users")
        self.assertIsNone(n.proc.poll(), "the node exited with a request in flight")
        slow.sendall(body[5:])
        raw = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in raw and time.monotonic() < deadline:
            chunk = slow.recv(65536)
            if not chunk:
                break
            raw += chunk
        rc = n.wait_exit(timeout=15)
        took = time.monotonic() - t0
        print("\nadmin drain: /ready 503 after %.3f s; exit %d after %.3f s" % (ready_at, rc, took))
        self.assertNotIn(None, seen, "/ready on the admin port stopped answering: %r" % seen)
        self.assertEqual(health, 200)
        self.assertEqual(metrics, 200)
        self.assertEqual(ready[0], 503)
        self.assertEqual(json.loads(ready[2]).get("reason"), "stopping")
        self.assertEqual(new_work, 503)
        status, hdrs, _ = harness.parse_raw_response(raw)
        self.assertEqual(status, 201, raw[:300])
        self.assertEqual(hdrs.get("connection", "").lower(), "close")
        self.assertEqual(rc, 0)
        self.assertIsNone(status_of(admin, "/health", timeout=0.5))

    def test_admin_port_equal_to_service_port_is_refused(self):
        port = free_port()
        n = self.node("adm-same", port, port=port)
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn("key 'admin.port': %d is service.port on the same address" % port, err)
        # an unspecified admin.address claims the service's address too
        n.settings["admin.address"] = "0.0.0.0"
        n.write_config()
        rc, _, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 2, err)
        self.assertIn("key 'admin.port'", err)
        n.start()
        self.assertEqual(n.wait_exit(timeout=10), 2)
        self.assertIn("key 'admin.port': %d is service.port" % port, n.log_text())
        self.assertFalse(harness.port_open(port))

    def test_service_port_taken(self):
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        admin = free_port()
        n = self.node("adm-svc-taken", admin, port=taken.getsockname()[1])
        n.start()
        self.assertEqual(n.wait_exit(timeout=10), 1)
        log = n.log_text()
        self.assertIn("cannot listen on '127.0.0.1:%d'" % n.port, log)
        self.assertNotIn("admin listener on", log)
        self.assertFalse(harness.port_open(admin))

    def test_admin_port_taken(self):
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        admin = taken.getsockname()[1]
        n = self.node("adm-taken", admin)
        n.start()
        self.assertEqual(n.wait_exit(timeout=15), 1)
        log = n.log_text()
        self.assertIn("admin listener (admin.address, admin.port): cannot listen on "
                      "'127.0.0.1:%d'" % admin, log)
        # the service listener it had bound is closed again, and nothing
        # was registered
        self.assertFalse(harness.port_open(n.port))
        self.assertEqual(CONSUL.service_by_name("adm-taken"), [])

    def test_print_config_shows_the_admin_settings(self):
        admin = free_port()
        n = self.node("adm-print", admin)
        rc, out, err = n.run_cli(["--print-config"])
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertEqual(harness.config_value(doc, "admin.port"), admin)
        self.assertEqual(harness.config_source(doc, "admin.port"), "file")
        self.assertEqual(harness.config_value(doc, "admin.address"), "127.0.0.1")
        self.assertEqual(harness.config_source(doc, "admin.threads"), "default")
        self.assertEqual(harness.config_value(doc, "admin.threads"), 8)

    def test_admin_off_everything_on_the_service_port(self):
        n = self.node("adm-off")
        n.start_ready()
        self.assertEqual(n.request("GET", "/health")[0], 200)
        self.assertEqual(harness.config_value(n.config(), "admin.port"), 0)
        [svc] = wait_until(lambda: CONSUL.service_by_name("adm-off"), timeout=10,
                           what="adm-off registered")
        check = wait_until(lambda: (agent_check(svc["ID"]) or {}).get("Output") and
                           agent_check(svc["ID"]), timeout=10, what="adm-off's check run")
        self.assertEqual(check_target(check), "http://127.0.0.1:%d/health" % n.port, check)
