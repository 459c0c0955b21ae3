"""Connect end to end between meshnode nodes (issue 23, point 7), against a
real Consul 1.8.7 dev agent with Connect on: a users node and an orders node,
both Connect native (connect.enabled, the admin listener on), and a client
placing orders to the orders node in mutual TLS with a leaf of "web" the test
gets from the agent, from a few threads on kept-alive connections.

- Intentions switched while orders flow: orders -> users allow (explicit),
  every order 201; deny: every order sent a second after the write is
  refused (503 from orders: the users check cannot be made), the orders
  node's kept-alive connections to users included (the users node's gate
  closes them at their next request, new handshakes are refused); allow
  again: every order sent a second after the write is 201. The times from
  each write to the first changed answer and to the last unchanged one are
  measured and held to 1 s.
- A CA rotation (a new key written to /v1/connect/ca/configuration) under
  the same load: both nodes follow the re-signed leaves and the new root
  (their admin /health), and no order fails meanwhile.
- The native orders node calling a plain users node behind `consul connect
  proxy -service users -register`; and, with peers.users.connect = false,
  the same plain users node in plain HTTP.

`consul connect proxy` as the client of a native node, and the hostile rows
on the TLS port, are test_connect.py's. Figures are printed as `# ...`
lines (pytest -s); only the issue's bounds are asserted. docs/connect.md."""

import http.client
import json
import os
import socket
import ssl
import subprocess
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import harness
from harness import Node, free_port, http_request, requires_meshnode, wait_until

CONSUL = None  # the module's agent, while its tests run
harness.share_consul(globals())

THREADS = 3            # order placers, each on its own kept-alive connection
PAUSE_S = 0.005        # between two orders of one placer
BOUND_S = 1.0          # the bound for a deny, an allow
# A deny ejects the users instance (a refused handshake counts as a refused
# connection); its circuit stays open breaker_open_ms before a probe. The
# default (10 s) would keep orders refused that long after an allow.
BREAKER_OPEN_MS = 200


def figure(text):
    print("# " + text)


# -- the agent's Connect API ---------------------------------------------


def agent_roots():
    return CONSUL.get("/v1/agent/connect/ca/roots")


def leaf_context(d, service):
    """A client context presenting the agent's leaf for `service`, verifying
    the node against every root the agent has (no host name: a Connect leaf
    names its SPIFFE URI only)."""
    leaf = CONSUL.get("/v1/agent/connect/ca/leaf/" + service)
    cert, key = os.path.join(d, service + ".pem"), os.path.join(d, service + ".key")
    with open(cert, "w") as f:
        f.write(leaf["CertPEM"])
    with open(key, "w") as f:
        f.write(leaf["PrivateKeyPEM"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata="\n".join(r["RootCert"] for r in agent_roots()["Roots"]))
    ctx.load_cert_chain(cert, key)
    return ctx


def intention(source, destination, action):
    """Writes source -> destination with `action`, updating the one there."""
    for i in CONSUL.get("/v1/connect/intentions") or []:
        if i["SourceName"] == source and i["DestinationName"] == destination:
            CONSUL.put("/v1/connect/intentions/" + i["ID"],
                       {"SourceName": source, "DestinationName": destination,
                        "Action": action})
            return
    status, _, body = CONSUL.request("POST", "/v1/connect/intentions",
                                     {"SourceName": source, "DestinationName": destination,
                                      "Action": action})
    assert status == 200, body


def new_ca_key():
    """A new P-256 key in the PEM form `openssl ecparam -name prime256v1
    -genkey -noout` writes (BEGIN EC PRIVATE KEY)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def handshakes(admin):
    _, _, body = http_request(admin, "GET", "/metrics", timeout=2.0)
    return {lab["result"]: v for lab, v in
            harness.prom_samples(body.decode(), "meshnode_connect_handshakes_total")}


def served_serial(port, ctx):
    """The serial of the leaf the node presents on a new connection, the
    way the agent writes it (aa:bb:...)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with ctx.wrap_socket(raw) as s:
        n = x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number
    b = n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")
    return ":".join("%02x" % c for c in b)


# -- the order stream ------------------------------------------------------


class OrderStream:
    """THREADS placers, each on one kept-alive HTTPS connection to the
    orders node (mutual TLS as "web"), placing orders one after another.
    Each order is kept as (sent, answered, status, body); a connection that
    breaks is reopened and the order counts as failed (status None)."""

    def __init__(self, port, ctx, user_id, deadline_s=180.0):
        self.port, self.ctx, self.user_id = port, ctx, user_id
        self.orders = []
        self.connections = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + deadline_s
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(THREADS)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _connect(self):
        with self.lock:
            self.connections += 1
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c

    def _run(self, i):
        conn = None
        body = json.dumps({"user_id": self.user_id, "product": "p%d" % i, "quantity": 1})
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            sent = time.monotonic()
            status, text = None, b""
            try:
                if conn is None:
                    conn = self._connect()
                conn.request("POST", "/orders", body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                status, text = r.status, r.read()
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ssl.SSLError) as e:
                text = repr(e).encode()
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.orders.append((sent, time.monotonic(), status, text))
            time.sleep(PAUSE_S)
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(15)

    def snapshot(self):
        with self.lock:
            return list(self.orders)


def statuses(orders):
    out = {}
    for o in orders:
        out[o[2]] = out.get(o[2], 0) + 1
    return out


@requires_meshnode
class ConnectMeshTest(harness.ProcessesTestCase):
    def setUp(self):
        super().setUp()
        self.stream = None

    def tearDown(self):
        if self.stream is not None:
            self.stream.stop()
        for i in CONSUL.get("/v1/connect/intentions") or []:
            CONSUL.request("DELETE", "/v1/connect/intentions/" + i["ID"])
        super().tearDown()

    def native(self, name, settings=None):
        """A Connect-native node `name` with the admin listener, started and
        up: its TLS port open and its admin /health 200."""
        admin = free_port()
        s = {"connect.enabled": True, "admin.port": admin, "log.format": "text"}
        s.update(settings or {})
        n = self.track(Node(name=name, consul=CONSUL, settings=s))
        n.admin = admin
        n.start()

        def up():
            if n.proc.poll() is not None:
                raise harness.NodeError("meshnode exited with %s:\n%s"
                                        % (n.proc.returncode, harness.tail(n.log_path)))
            return harness.port_open(n.port) and \
                http_request(admin, "GET", "/health", timeout=1.0)[0] == 200
        wait_until(up, timeout=40, interval=0.05, what="%s: the TLS port and /health" % name)
        return n

    def orders_node(self, settings=None):
        s = {"service.modules": ["orders"],
             "peers.users.timeout_ms": 2000,
             "peers.users.breaker_open_ms": BREAKER_OPEN_MS}
        s.update(settings or {})
        return self.native("orders", s)

    def connect_view(self, n):
        status, _, body = http_request(n.admin, "GET", "/health", timeout=2.0)
        self.assertEqual(status, 200)
        return json.loads(body)["connect"]

    def assert_alive(self, *nodes):
        for n in nodes:
            self.assertIsNone(n.proc.poll(), harness.tail(n.log_path))
            self.connect_view(n)

    def mesh(self, d):
        """users and orders, native; a user made on users over mTLS; the
        orders node placing its first order (201). Returns (users, orders,
        the web context, the user id)."""
        users = self.native("users")
        orders = self.orders_node()
        wait_until(lambda: CONSUL.get("/v1/health/connect/users?passing=1"), timeout=15,
                   what="users passing in /v1/health/connect/users")
        web = leaf_context(d, "web")
        c = http.client.HTTPSConnection("127.0.0.1", users.port, context=web, timeout=5)
        try:
            c.request("POST", "/users", body=json.dumps({"name": "Ada",
                                                         "email": "ada@example.com"}),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
            self.assertEqual(r.status, 201, body)
            uid = json.loads(body)["id"]
        finally:
            c.close()

        def first():
            c = http.client.HTTPSConnection("127.0.0.1", orders.port, context=web, timeout=5)
            try:
                c.request("POST", "/orders", body=json.dumps({"user_id": uid, "product": "x",
                                                              "quantity": 1}),
                          headers={"Content-Type": "application/json"})
                return c.getresponse().status == 201
            finally:
                c.close()
        wait_until(first, timeout=15, interval=0.1, what="a first order through Connect")
        return users, orders, web, uid

    # -- 1 -------------------------------------------------------------------

    def test_intentions_switched_while_orders_flow(self):
        d = harness.mkdtemp("mesh-intentions")
        users, orders, web, uid = self.mesh(d)
        intention("orders", "users", "allow")
        time.sleep(0.5)  # the allow's own generation step settles
        self.stream = OrderStream(orders.port, web, uid).start()
        time.sleep(2.0)
        hs0 = handshakes(users.admin)
        t_deny = time.monotonic()
        intention("orders", "users", "deny")
        time.sleep(2.5)
        t_allow = time.monotonic()
        intention("orders", "users", "allow")
        time.sleep(2.5)
        self.stream.stop()
        got = self.stream.snapshot()
        hs1 = handshakes(users.admin)

        before = [o for o in got if o[1] < t_deny]
        during = [o for o in got if t_deny <= o[1] < t_allow]
        after = [o for o in got if o[1] >= t_allow]
        figure("orders before the deny: %d (%s), between deny and allow: %d (%s), after "
               "the allow: %d (%s); client connections to orders: %d"
               % (len(before), statuses(before), len(during), statuses(during), len(after),
                  statuses(after), self.stream.connections))
        # the client's own connections stayed open throughout (503s included)
        self.assertEqual(self.stream.connections, THREADS)
        # allowed: none fails
        self.assertGreater(len(before), 30)
        self.assertEqual([o for o in before if o[2] != 201], [])
        # the orders node keeps its connections to users: far fewer
        # handshakes on users than orders before the deny
        ok_before = hs0.get("ok", 0)
        # (a handshake is counted when its connection is freed: connections
        # made per order would all be counted, kept-alive ones are not yet)
        figure("users' handshakes counted before the deny: %d ok for %d orders"
               % (ok_before, len(before)))
        self.assertLess(ok_before, len(before) / 5,
                        "orders -> users connections not kept alive: %d handshakes for %d "
                        "orders" % (ok_before, len(before)))
        # the deny: what orders answers
        refused = [o for o in during if o[2] != 201]
        self.assertTrue(refused, "no order refused after the deny")
        statuses_refused = {o[2] for o in refused}
        self.assertEqual(statuses_refused, {503}, refused[:3])
        figure("orders' answer under the deny: 503 %s" % refused[0][3][:200].decode())
        first_refused = min(o[1] for o in refused) - t_deny
        last_accepted = max([o[1] for o in during if o[2] == 201] or [t_deny]) - t_deny
        late = [o for o in during if o[0] >= t_deny + BOUND_S and o[2] != 503]
        figure("deny orders -> users: first order refused %.3f s after the write, last "
               "accepted %.3f s after it (users' handshakes meanwhile: %s)"
               % (first_refused, last_accepted,
                  json.dumps({k: hs1.get(k, 0) - hs0.get(k, 0) for k in hs1})))
        self.assertLessEqual(first_refused, BOUND_S)
        self.assertLessEqual(last_accepted, BOUND_S)
        self.assertEqual(late, [], "orders sent a second after the deny and not refused")
        self.assertGreaterEqual(hs1.get("denied", 0) - hs0.get("denied", 0), 1)
        # the allow again
        accepted = [o for o in after if o[2] == 201]
        self.assertTrue(accepted, "no order accepted after the allow")
        first_back = min(o[1] for o in accepted) - t_allow
        last_refused = max([o[1] for o in after if o[2] != 201] or [t_allow]) - t_allow
        figure("allow orders -> users again: first order accepted %.3f s after the write, "
               "last refused %.3f s after it" % (first_back, last_refused))
        self.assertLessEqual(first_back, BOUND_S)
        self.assertLessEqual(last_refused, BOUND_S)
        self.assertEqual([o for o in after if o[0] >= t_allow + BOUND_S and o[2] != 201], [])
        self.assertGreater(len([o for o in after if o[0] >= t_allow + BOUND_S]), 30)
        self.assert_alive(users, orders)

    # -- 2 -------------------------------------------------------------------

    def test_ca_rotation_under_order_load(self):
        d = harness.mkdtemp("mesh-rotation")
        users, orders, web, uid = self.mesh(d)
        old = {n.name: self.connect_view(n) for n in (users, orders)}
        self.stream = OrderStream(orders.port, web, uid).start()
        time.sleep(1.0)
        before_ids = {r["ID"] for r in agent_roots()["Roots"]}
        t_put = time.monotonic()
        CONSUL.put("/v1/connect/ca/configuration",
                   {"Provider": "consul", "Config": {"LeafCertTTL": "72h",
                                                     "PrivateKey": new_ca_key()}})
        new_root = wait_until(lambda: [r["ID"] for r in agent_roots()["Roots"]
                                       if r["Active"] and r["ID"] not in before_ids],
                              timeout=10, interval=0.05, what="the new root active")[0]
        in_use = {}

        def both_new():
            for n in (users, orders):
                if n.name in in_use:
                    continue
                v = self.connect_view(n)
                if v["leaf_serial"] != old[n.name]["leaf_serial"] and \
                        v["active_root_id"] == new_root:
                    in_use[n.name] = (time.monotonic() - t_put, v["leaf_serial"])
            return len(in_use) == 2
        # the agent re-signs each leaf at a random point within ~30 s
        wait_until(both_new, timeout=60, interval=0.05,
                   what="both nodes on a leaf of the new root")
        # both serve it on a new connection; orders go on a while after
        for n in (users, orders):
            self.assertEqual(served_serial(n.port, web), in_use[n.name][1].lower())
        time.sleep(1.0)
        self.stream.stop()
        got = self.stream.snapshot()
        failed = [o for o in got if o[2] != 201]
        _, _, text = http_request(orders.admin, "GET", "/metrics", timeout=2.0)
        outcomes = {}
        for lab, v in harness.prom_samples(text.decode(), "meshnode_peer_requests_total"):
            if lab.get("service") == "users" and v:
                outcomes[lab.get("outcome")] = outcomes.get(lab.get("outcome"), 0) + v
        figure("CA rotation: the orders node's calls to users by outcome: %s"
               % json.dumps(outcomes))
        after_both = [o for o in got if o[0] > t_put + max(v[0] for v in in_use.values())]
        figure("CA rotation under load: %d orders from %d threads over %.1f s, %d failed; "
               "new leaf in use %.2f s (users) and %.2f s (orders) after the PUT; %d orders "
               "after both"
               % (len(got), THREADS, got[-1][1] - got[0][0] if got else 0, len(failed),
                  in_use["users"][0], in_use["orders"][0], len(after_both)))
        self.assertEqual([(round(o[0] - t_put, 3), o[2], o[3][:300]) for o in failed[:5]], [])
        self.assertGreater(len(after_both), 10)
        self.assertIn(new_root, self.connect_view(users)["root_ids"])
        self.assert_alive(users, orders)

    # -- 3 -------------------------------------------------------------------

    def test_native_orders_to_a_plain_users_node(self):
        d = harness.mkdtemp("mesh-plain")
        # the plain users node: registered as "users" without Connect, so
        # /v1/health/connect/users lists only the proxy in front of it
        plain = self.track(Node(name="users", consul=CONSUL, settings={"log.format": "text"}))
        plain.start_ready(timeout=20)
        status, _, body = plain.request("POST", "/users", {"name": "Bo",
                                                           "email": "bo@example.com"})
        self.assertEqual(status, 201, body)
        uid = json.loads(body)["id"]
        listen = free_port()
        log_path = os.path.join(d, "proxy.log")
        log = open(log_path, "ab")
        try:
            proc = subprocess.Popen(
                [harness.consul_binary(), "connect", "proxy", "-service", "users",
                 "-service-addr", "127.0.0.1:%d" % plain.port,
                 "-listen", "127.0.0.1:%d" % listen, "-register",
                 "-http-addr", CONSUL.addr, "-log-level", "debug"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        harness._register(proc)
        harness._add_log("consul connect proxy -service users", log_path)

        class Proxy:
            def stop(self):
                harness._stop_process(proc)
        self.track(Proxy())
        entries = wait_until(lambda: CONSUL.get("/v1/health/connect/users?passing=1"),
                             timeout=20, what="the proxy listed, passing")
        self.assertEqual([(e["Service"]["Kind"], e["Service"]["Port"]) for e in entries],
                         [("connect-proxy", listen)])

        orders = self.orders_node()
        web = leaf_context(d, "web")

        def order():
            c = http.client.HTTPSConnection("127.0.0.1", orders.port, context=web, timeout=10)
            try:
                c.request("POST", "/orders", body=json.dumps({"user_id": uid, "product": "p",
                                                              "quantity": 1}),
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                return r.status, r.read()
            finally:
                c.close()

        def lookups():
            return plain.metric("http_requests_total", method="GET", endpoint="/users/{id}")

        def peers():
            _, _, body = http_request(orders.admin, "GET", "/peers/users", timeout=2.0)
            return json.loads(body)

        wait_until(lambda: order()[0] == 201, timeout=15, what="an order through the proxy")
        view = peers()
        self.assertTrue(view["connect"])
        self.assertEqual([i["port"] for i in view["instances"]], [listen])
        n0 = lookups()
        for _ in range(10):
            status, body = order()
            self.assertEqual(status, 201, body)
        self.assertEqual(lookups() - n0, 10)
        # a deny at the proxy (it asks the agent at its handshakes)
        intention("orders", "users", "deny")
        wait_until(lambda: order()[0] == 503, timeout=5, interval=0.05,
                   what="the proxy refusing orders")
        intention("orders", "users", "allow")
        wait_until(lambda: order()[0] == 201, timeout=5, interval=0.05, what="allowed again")

        # peers.users.connect = false: the plain node in plain HTTP
        CONSUL.kv_put("config/orders/peers/users/connect", "false")
        try:
            wait_until(lambda: not peers()["connect"] and peers()["instances"], timeout=5,
                       what="orders following users outside the mesh")
            self.assertEqual([i["port"] for i in peers()["instances"]], [plain.port])
            n0 = lookups()
            for _ in range(10):
                status, body = order()
                self.assertEqual(status, 201, body)
            self.assertEqual(lookups() - n0, 10)
        finally:
            CONSUL.kv_delete("config/orders/peers/users/connect")
        self.assert_alive(orders)
