"""Connect wired in, inbound (issue 23, points 1, 2, 3, 5, 6), against a real
Consul 1.8.7 dev agent with Connect on: a users node with connect.enabled and
the admin listener registers as Connect native, serves its API only in mutual
TLS with its current leaf, and /health (admin) shows its identity; a plain
client reaches it through `consul connect proxy -service web -upstream
users:<port>`, and an intention web -> users turned to deny refuses new
connections and requests on a kept-alive one within a second, allow lets
them back within a second; a CA rotation changes the served leaf within a
second of the agent's, with no failed request through the proxy; hostile TLS
(plain HTTP, garbage, an HTTP/2 preface, ALPN h2, stalled handshakes,
certificates of another CA, expired, of another trust domain, with a DNS SAN
and no URI, none, a flood) is refused without crashing the node or holding
its workers past the handshake deadline, the admin /health answering
throughout; the handshakes are counted by result. connect.enabled without
admin.port is a configuration error (2); the TLS runtime missing is a
runtime failure (1) with the reason. docs/connect.md.

Figures are printed as `# ...` lines (pytest -s); only the issue's 1 s
bounds are asserted."""

import datetime
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import harness
from harness import Node, free_port, http_request, requires_meshnode, wait_until

CONSUL = None  # the module's agent, while its tests run
harness.share_consul(globals())

READ_TIMEOUT_MS = 2000  # server.read_timeout_ms: the handshake deadline too


def figure(text):
    print("# " + text)


# -- certificates ---------------------------------------------------------


def pem_files(d, name, cert_pem, key_pem):
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    with open(cert, "w") as f:
        f.write(cert_pem)
    with open(key, "w") as f:
        f.write(key_pem)
    return cert, key


def agent_leaf(service):
    return CONSUL.get("/v1/agent/connect/ca/leaf/" + service)


def agent_roots():
    return CONSUL.get("/v1/agent/connect/ca/roots")


def client_context(cert=None, key=None, alpn=None, roots=None):
    """A client that verifies the node against the agent's roots (no host
    name: a Connect leaf names its SPIFFE URI only) and presents cert."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata="\n".join(r["RootCert"] for r in
                                                (roots or agent_roots())["Roots"]))
    if cert:
        ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def web_context(d, alpn=None):
    leaf = agent_leaf("web")
    cert, key = pem_files(d, "web", leaf["CertPEM"], leaf["PrivateKeyPEM"])
    return client_context(cert, key, alpn)


def tls_request(port, ctx, method="GET", path="/users", body=None, timeout=5.0):
    """One request on a new mTLS connection: (status, body bytes, the
    served certificate's serial as the agent writes it)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    # the request leaves at once after the handshake's last flight, not
    # after the node's delayed ACK (40 ms)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with ctx.wrap_socket(raw) as s:
        der = s.getpeercert(binary_form=True)
        serial = x509.load_der_x509_certificate(der).serial_number
        data = json.dumps(body).encode() if body is not None else b""
        head = "%s %s HTTP/1.1\r\nHost: users\r\nConnection: close\r\n" % (method, path)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
        s.sendall(head.encode() + b"\r\n" + data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    status, _, payload = harness.parse_raw_response(out)
    return status, payload, serial_text(serial)


def serial_text(n):
    b = n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")
    return ":".join("%02x" % c for c in b)


class OwnCA:
    """A CA key the test owns, given to the agent as its Connect CA (a
    rotation: PUT /v1/connect/ca/configuration), so that the test can sign
    certificates that chain to the node's current roots."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        pem = self.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()).decode()
        before = {r["ID"] for r in agent_roots()["Roots"]}
        CONSUL.put("/v1/connect/ca/configuration",
                   {"Provider": "consul", "Config": {"LeafCertTTL": "72h", "PrivateKey": pem}})

        def active():
            for r in agent_roots()["Roots"]:
                if r["Active"] and r["ID"] not in before:
                    return r
            return None
        root = wait_until(active, timeout=10, what="the new root active")
        self.root_id = root["ID"]
        self.root = x509.load_pem_x509_certificate(root["RootCert"].encode())
        self.trust_domain = agent_roots()["TrustDomain"]

    def issue(self, d, name, uri=None, dns=None, days=(-1, 2)):
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.utcnow()
        sans = []
        if uri:
            sans.append(x509.UniformResourceIdentifier(uri))
        if dns:
            sans.append(x509.DNSName(dns))
        ski = self.root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(self.root.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now + datetime.timedelta(days=days[0]))
             .not_valid_after(now + datetime.timedelta(days=days[1]))
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                            False)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), False)
        cert = b.sign(self.key, hashes.SHA256())
        return pem_files(d, name, cert.public_bytes(serialization.Encoding.PEM).decode(),
                         key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode())

    def uri(self, service, trust_domain=None):
        return "spiffe://%s/ns/default/dc/dc1/svc/%s" % (trust_domain or self.trust_domain,
                                                         service)


def other_ca_cert(d, uri):
    """A certificate of a CA the agent never heard of, with a good URI."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    now = datetime.datetime.utcnow()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web")]))
        .issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                       False)
        .sign(ca_key, hashes.SHA256()))
    return pem_files(d, "other-ca", cert.public_bytes(serialization.Encoding.PEM).decode(),
                     key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode())


# -- the proxy ------------------------------------------------------------


class Proxy:
    """`consul connect proxy -service web -upstream users:<port>` against
    the module's agent: a plain TCP listener whose connections leave as
    mTLS connections of 'web' (one upstream TLS connection per client
    connection). Killed by PID."""

    def __init__(self, d):
        self.port = free_port()
        self.log_path = os.path.join(d, "proxy.log")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [harness.consul_binary(), "connect", "proxy", "-service", "web",
                 "-upstream", "users:%d" % self.port, "-http-addr", CONSUL.addr,
                 "-log-level", "debug"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        harness._register(self.proc)
        harness._add_log("consul connect proxy", self.log_path)
        wait_until(lambda: harness.port_open(self.port), timeout=15, what="the proxy listening")

    def stop(self):
        harness._stop_process(self.proc)

    def get(self, path, timeout=3.0):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path, headers={"Connection": "close"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


def proxy_status(proxy, path="/users"):
    try:
        return proxy.get(path)[0]
    except (OSError, http.client.HTTPException):
        return None


def intention(source, action):
    """Writes source -> users with `action`, updating the one there."""
    for i in CONSUL.get("/v1/connect/intentions") or []:
        if i["SourceName"] == source and i["DestinationName"] == "users":
            CONSUL.put("/v1/connect/intentions/" + i["ID"],
                       {"SourceName": source, "DestinationName": "users", "Action": action})
            return
    status, _, body = CONSUL.request("POST", "/v1/connect/intentions",
                                     {"SourceName": source, "DestinationName": "users",
                                      "Action": action})
    assert status == 200, body


def metrics(admin):
    return http_request(admin, "GET", "/metrics")[2].decode()


def handshakes(admin):
    return {lab["result"]: v for lab, v in
            harness.prom_samples(metrics(admin), "meshnode_connect_handshakes_total")}


@requires_meshnode
class ConnectInboundTest(harness.ProcessesTestCase):
    def node(self, settings=None, **kw):
        self.admin = free_port()
        s = {"connect.enabled": True, "admin.port": self.admin, "log.format": "text",
             "server.read_timeout_ms": READ_TIMEOUT_MS}
        s.update(settings or {})
        n = self.track(Node(name="users", consul=CONSUL, settings=s, **kw))
        return n

    def start(self, n):
        n.start()

        def up():
            if n.proc.poll() is not None:
                raise harness.NodeError("meshnode exited with %s:\n%s"
                                        % (n.proc.returncode, harness.tail(n.log_path)))
            return harness.port_open(n.port) and \
                http_request(self.admin, "GET", "/health", timeout=1.0)[0] == 200
        wait_until(up, timeout=40, interval=0.05, what="the TLS port and the admin /health")
        return n

    def admin_health(self):
        status, _, body = http_request(self.admin, "GET", "/health", timeout=2.0)
        self.assertEqual(status, 200)
        return json.loads(body)

    def assert_alive(self, n):
        self.assertIsNone(n.proc.poll(), harness.tail(n.log_path))
        self.admin_health()

    def tearDown(self):
        for i in CONSUL.get("/v1/connect/intentions") or []:
            CONSUL.request("DELETE", "/v1/connect/intentions/" + i["ID"])
        super().tearDown()

    # -- point 1, 3, 6 -----------------------------------------------------

    def test_native_registered_checked_and_shown(self):
        n = self.start(self.node())
        [svc] = wait_until(lambda: CONSUL.service_by_name("users"), timeout=10,
                           what="users registered")
        self.assertEqual(svc.get("Connect"), {"Native": True})
        native = wait_until(lambda: CONSUL.get("/v1/health/connect/users?passing=1"),
                            timeout=15, what="users in /v1/health/connect/users, passing")
        self.assertEqual(native[0]["Service"]["Port"], n.port)
        check = wait_until(lambda: [c for c in CONSUL.agent_checks().values()
                                    if c["ServiceID"] == svc["ID"] and c["Output"]],
                           timeout=10, what="the agent's check run")[0]
        self.assertEqual(check["Status"], "passing")
        self.assertIn("http://127.0.0.1:%d/health" % self.admin, check["Output"])

        view = self.admin_health()["connect"]
        leaf, roots = agent_leaf("users"), agent_roots()
        self.assertTrue(view["ready"])
        self.assertEqual(view["trust_domain"], roots["TrustDomain"])
        self.assertEqual(view["leaf_serial"], leaf["SerialNumber"])
        self.assertEqual(view["leaf_expires"], leaf["ValidBefore"])
        self.assertEqual(view["root_ids"], [r["ID"] for r in roots["Roots"]])
        self.assertEqual(view["active_root_id"], roots["ActiveRootID"])
        # the node's own routes are the admin listener's; the API is mTLS only
        d = harness.mkdtemp("connect-native")
        status, body, serial = tls_request(n.port, web_context(d))
        self.assertEqual((status, body), (200, b"[]"))
        self.assertEqual(serial, leaf["SerialNumber"].lower())
        self.assertEqual(tls_request(n.port, web_context(d), path="/health")[0], 404)
        text = metrics(self.admin)
        self.assertIn("meshnode_connect_leaf_expiry_seconds ", text)
        self.assertGreaterEqual(handshakes(self.admin).get("ok", 0), 2)
        # a full handshake each time (no resumption): its cost
        ctx = web_context(d)
        t0 = time.monotonic()
        for _ in range(20):
            tls_request(n.port, ctx)
        figure("20 requests on new mTLS connections (full handshakes, no resumption): "
               "%.1f ms each" % ((time.monotonic() - t0) * 1000 / 20))

    # -- point 2 -----------------------------------------------------------

    def test_intentions_through_the_proxy(self):
        n = self.start(self.node())
        wait_until(lambda: CONSUL.get("/v1/health/connect/users?passing=1"), timeout=15,
                   what="users passing")
        d = harness.mkdtemp("connect-proxy")
        status, body, _ = tls_request(n.port, web_context(d), "POST", "/users",
                                      {"name": "Ada", "email": "ada@example.com"})
        self.assertEqual(status, 201, body)
        proxy = self.track(Proxy(d))
        wait_until(lambda: proxy_status(proxy, "/users/1") == 200, timeout=15,
                   what="GET /users/1 200 through the proxy")

        kept = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=3)
        kept.request("GET", "/users/1")
        r = kept.getresponse()
        self.assertEqual(r.status, 200)
        r.read()

        intention("web", "deny")
        t0 = time.monotonic()
        t_new = t_kept = None
        while (t_new is None or t_kept is None) and time.monotonic() - t0 < 5:
            if t_kept is None:
                try:
                    kept.request("GET", "/users/1")
                    r = kept.getresponse()
                    r.read()
                    if r.status != 200:
                        t_kept = time.monotonic() - t0
                except (OSError, http.client.HTTPException):
                    t_kept = time.monotonic() - t0
            if t_new is None and proxy_status(proxy) is None:
                t_new = time.monotonic() - t0
            time.sleep(0.01)
        kept.close()
        figure("deny web -> users: new connections refused after %s s, the kept-alive "
               "connection after %s s" % (t_new and "%.3f" % t_new, t_kept and "%.3f" % t_kept))
        self.assertIsNotNone(t_new)
        self.assertIsNotNone(t_kept)
        self.assertLess(t_new, 1.0)
        self.assertLess(t_kept, 1.0)
        # and stays refused; logged, counted
        self.assertIsNone(proxy_status(proxy))
        with self.assertRaises((ssl.SSLError, OSError)):
            tls_request(n.port, web_context(d))
        self.assertGreaterEqual(handshakes(self.admin).get("denied", 0), 1)
        wait_until(lambda: "'web'" in n.log_text() and "deny" in n.log_text(), timeout=5,
                   what="the deny logged")

        intention("web", "allow")
        t0 = time.monotonic()
        wait_until(lambda: proxy_status(proxy, "/users/1") == 200, timeout=5, interval=0.01,
                   what="allowed again")
        t_back = time.monotonic() - t0
        figure("allow again: served through the proxy after %.3f s" % t_back)
        self.assertLess(t_back, 1.0)
        self.assert_alive(n)

    # -- point 1: rotation -------------------------------------------------

    def test_ca_rotation_without_a_failed_request(self):
        n = self.start(self.node())
        wait_until(lambda: CONSUL.get("/v1/health/connect/users?passing=1"), timeout=15,
                   what="users passing")
        d = harness.mkdtemp("connect-rotation")
        proxy = self.track(Proxy(d))
        wait_until(lambda: proxy_status(proxy) == 200, timeout=15, what="through the proxy")
        old = agent_leaf("users")["SerialNumber"]
        results, stop = [], threading.Event()

        def client():
            while not stop.is_set():
                results.append(proxy_status(proxy))
                time.sleep(0.005)
        t = threading.Thread(target=client)
        t.start()
        try:
            time.sleep(0.3)
            OwnCA()
            t_agent = wait_until(lambda: agent_leaf("users")["SerialNumber"] != old and
                                 time.monotonic(), timeout=60, interval=0.01,
                                 what="the agent's leaf re-signed (it spreads re-signing "
                                      "over up to 20 s after a rotation)")
            new = agent_leaf("users")["SerialNumber"]

            def served():
                try:
                    ctx = web_context(d)
                    return tls_request(n.port, ctx)[2] == new.lower() and time.monotonic()
                except (OSError, ssl.SSLError):
                    return False
            t_node = wait_until(served, timeout=10, interval=0.01, what="the new leaf served")
            time.sleep(0.5)
        finally:
            stop.set()
            t.join(10)
        failed = [r for r in results if r != 200]
        figure("CA rotation: the node served the agent's new leaf %.3f s after the agent "
               "had it; %d requests through the proxy meanwhile, %d failed"
               % (max(0.0, t_node - t_agent), len(results), len(failed)))
        self.assertLess(t_node - t_agent, 1.0)
        self.assertGreater(len(results), 10)
        self.assertEqual(failed, [])
        self.assertEqual(self.admin_health()["connect"]["leaf_serial"], new)
        self.assert_alive(n)

    # -- point 5 -----------------------------------------------------------

    def raw_refused(self, n, data):
        """Sends data to the TLS port: the node closes without an HTTP
        answer, within the handshake deadline."""
        s = socket.create_connection(("127.0.0.1", n.port), timeout=READ_TIMEOUT_MS / 1000 + 3)
        t0 = time.monotonic()
        try:
            s.sendall(data)
            got = b""
            while True:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                got += chunk
        finally:
            s.close()
        self.assertNotIn(b"HTTP/1.1 2", got)
        self.admin_health()
        return time.monotonic() - t0

    def refused(self, n, ctx):
        with self.assertRaises((ssl.SSLError, OSError, ValueError)):
            status = tls_request(n.port, ctx)[0]
            if status is None:
                raise OSError("no answer")
        self.admin_health()

    def test_hostile_tls(self):
        n = self.start(self.node())
        d = harness.mkdtemp("connect-hostile")
        good = web_context(d)
        self.assertEqual(tls_request(n.port, good)[0], 200)
        before = handshakes(self.admin)

        # plain HTTP, garbage, an HTTP/2 preface on the TLS port
        for what, data in (("plain HTTP", b"GET /users HTTP/1.1\r\nHost: x\r\n\r\n"),
                           ("garbage", os.urandom(512)),
                           ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")):
            figure("%s: closed after %.3f s" % (what, self.raw_refused(n, data)))
        # ALPN h2 only: no protocol chosen; the HTTP/2 preface it then
        # sends in TLS is refused without an answer that routes
        ctx = web_context(d, alpn=["h2"])
        raw = socket.create_connection(("127.0.0.1", n.port), timeout=5)
        with ctx.wrap_socket(raw) as s:
            self.assertIsNone(s.selected_alpn_protocol())
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            got = b""
            try:
                while len(got) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except (OSError, ssl.SSLError):
                pass
        figure("HTTP/2 preface in TLS answered %r" % got[:60])
        self.assertNotIn(b"HTTP/1.1 2", got)
        self.admin_health()
        # but h2 with http/1.1 is served over http/1.1
        self.assertEqual(tls_request(n.port, web_context(d, alpn=["h2", "http/1.1"]))[0], 200)
        # no client certificate
        self.refused(n, client_context())
        # another CA, with a URI of this trust domain
        td = agent_roots()["TrustDomain"]
        self.refused(n, client_context(*other_ca_cert(
            d, "spiffe://%s/ns/default/dc/dc1/svc/web" % td)))

        # certificates that chain to the current roots: the agent's CA key
        # is the test's from here on
        ca = OwnCA()
        wait_until(lambda: ca.root_id in self.admin_health()["connect"]["root_ids"],
                   timeout=5, what="the node following the new root")
        # the control: a certificate made here the way Consul makes them
        self.assertEqual(tls_request(n.port, client_context(
            *ca.issue(d, "made-web", uri=ca.uri("web"))))[0], 200)
        self.refused(n, client_context(*ca.issue(d, "expired", uri=ca.uri("web"),
                                                 days=(-3, -1))))
        self.refused(n, client_context(*ca.issue(d, "other-td",
                                                 uri=ca.uri("web", "other.consul"))))
        self.refused(n, client_context(*ca.issue(d, "dns-only", dns="web.example")))
        for reason in ("certificate expired", "identity of another trust domain",
                       "no URI SAN", "not signed by a root of the trust domain"):
            self.assertIn(reason, n.log_text())

        # stalled handshakes: half a ClientHello, on fewer connections than
        # workers (8); each is closed within the deadline, and a fresh mTLS
        # client is served meanwhile
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(20)
        stalled = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", n.port), timeout=10)
            s.sendall(hello)
            stalled.append((s, time.monotonic()))
        silent = [socket.create_connection(("127.0.0.1", n.port)) for _ in range(20)]
        t0 = time.monotonic()
        self.assertEqual(tls_request(n.port, good)[0], 200)
        figure("a fresh mTLS request beside 4 stalled handshakes and 20 silent "
               "connections: %.1f ms" % ((time.monotonic() - t0) * 1000))
        closed_after = []
        for s, t in stalled:
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
            closed_after.append(time.monotonic() - t)
            s.close()
        for s in silent:
            s.close()
        figure("stalled handshakes closed after %s s (deadline server.read_timeout_ms = %d)"
               % (", ".join("%.2f" % c for c in closed_after), READ_TIMEOUT_MS))
        self.assertLess(max(closed_after), READ_TIMEOUT_MS / 1000 + 2)

        # a flood: 500 handshakes from 5 threads, half of them without a
        # certificate; each served or refused
        outcomes = {"served": 0, "refused": 0}
        lock = threading.Lock()
        none_ctx = client_context()

        def flood(i):
            for j in range(100):
                ctx = good if (i + j) % 2 else none_ctx
                try:
                    ok = tls_request(n.port, ctx, timeout=10)[0] == 200
                except (OSError, ssl.SSLError, ValueError):
                    ok = False
                with lock:
                    outcomes["served" if ok else "refused"] += 1
        threads = [threading.Thread(target=flood, args=(i,)) for i in range(5)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        health = 0
        while any(t.is_alive() for t in threads):
            health += self.admin_health() is not None
            time.sleep(0.05)
        for t in threads:
            t.join(60)
        figure("500 handshakes from 5 threads in %.2f s: %d served, %d refused; the admin "
               "/health answered %d times meanwhile" % (time.monotonic() - t0,
                                                        outcomes["served"],
                                                        outcomes["refused"], health))
        self.assertEqual(outcomes["served"] + outcomes["refused"], 500)
        self.assertEqual(outcomes["served"], 250)
        self.assert_alive(n)
        self.assertEqual(tls_request(n.port, good)[0], 200)

        after = handshakes(self.admin)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        figure("handshakes by result during the hostile rows: %s" % json.dumps(delta))
        self.assertGreaterEqual(delta.get("ok", 0), 253)
        self.assertGreaterEqual(delta.get("no_certificate", 0), 251)
        self.assertGreaterEqual(delta.get("bad_certificate", 0), 4)
        self.assertGreaterEqual(delta.get("protocol", 0) + delta.get("incomplete", 0), 8)

    def test_records_sent_together(self):
        """The service port reads TLS records ahead (a request in one
        read(), not two): records that arrive together are all served at
        once, none left waiting in OpenSSL's buffer while civetweb polls
        the socket (docs/connect.md, "Speed")."""
        n = self.start(self.node())
        d = harness.mkdtemp("connect-records")
        raw = socket.create_connection(("127.0.0.1", n.port), timeout=5.0)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = web_context(d).wrap_socket(raw)

        def answer():
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "connection closed before an answer")
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = int([h for h in head.split(b"\r\n")
                          if h.lower().startswith(b"content-length:")][0].split(b":")[1])
            while len(body) < length:
                body += s.recv(65536)
            self.assertEqual(len(body), length, "more than one answer in a read")
            return int(head.split(b" ")[1])

        def post_head(body):
            return (b"POST /users HTTP/1.1\r\nHost: users\r\nContent-Type: application/json"
                    b"\r\nContent-Length: %d\r\n\r\n" % len(body))

        body = json.dumps({"name": "rec", "email": "rec@example.com"}).encode()
        rows = [
            # the head and the body in two records, as http.client sends them
            ("head, then body", [post_head(body), body], [201]),
            # two requests pipelined, a record each
            ("two pipelined", [b"GET /users/1 HTTP/1.1\r\nHost: users\r\n\r\n"] * 2,
             [200, 200]),
            # a body of one-byte records
            ("one-byte records", [post_head(body)] + [body[i:i + 1] for i in range(len(body))],
             [409]),
            # a body of full records, the last short: read ahead in part
            ("40 KiB body", [post_head(b"x" * 40000), b"x" * 40000], [400]),
        ]
        for name, records, statuses in rows:
            t0 = time.monotonic()
            for r in records:
                s.send(r)
            got = [answer() for _ in statuses]
            ms = (time.monotonic() - t0) * 1e3
            figure("%s: %s in %.1f ms" % (name, got, ms))
            self.assertEqual(got, statuses, name)
            # a record left in OpenSSL's buffer would wait for the read
            # timeout (READ_TIMEOUT_MS) with the socket polled in vain
            self.assertLess(ms, READ_TIMEOUT_MS / 2, name)
        s.close()
        self.assert_alive(n)

    # -- configuration and start-up ----------------------------------------

    def fail_open_case(self, fail_open):
        """A node whose agent stops answering (a relay that holds every
        answer 30 s) after it took its leaf: a caller it has not decided on
        yet ("fo-web", never seen) gets what connect.authz_fail_open says."""
        relay = harness.DelayRelay(CONSUL.http_port, delay=0.0)
        self.addCleanup(relay.stop)
        settings = {} if fail_open is None else {"connect.authz_fail_open": fail_open}
        n = self.start(self.node(settings, consul_addr="http://127.0.0.1:%d" % relay.port))
        d = harness.mkdtemp("connect-fail-open")
        leaf = agent_leaf("fo-web")
        ctx = client_context(*pem_files(d, "fo-web", leaf["CertPEM"], leaf["PrivateKeyPEM"]))
        relay.delay = 30.0
        try:
            status = tls_request(n.port, ctx)[0]
        except (OSError, ssl.SSLError):
            status = None
        self.assert_alive(n)
        return n, status

    def test_authz_fail_open_default_refuses_undecided_callers(self):
        n, status = self.fail_open_case(None)
        self.assertIsNone(status, "a caller let in with no decision and fail_open off")
        self.assertIn("error_closed", n.log_text())

    def test_authz_fail_open_true_lets_undecided_callers_in(self):
        n, status = self.fail_open_case(True)
        self.assertEqual(status, 200)
        self.assertIn("error_open", n.log_text())

    def test_admin_port_required(self):
        n = self.track(Node(name="users", consul=CONSUL,
                            settings={"connect.enabled": True, "log.format": "text"}))
        msg = "connect.enabled needs admin.port: the agent's check cannot present a " \
              "client certificate"
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 2)
        self.assertIn(msg, err)
        n.start()
        self.assertEqual(n.wait_exit(15), 2)
        self.assertIn(msg, n.log_text())

    def test_tls_runtime_missing(self):
        d = harness.mkdtemp("connect-notls")
        binary = os.path.join(d, "meshnode")
        shutil.copy2(harness.meshnode_binary(), binary)
        n = self.node()
        n.binary = binary
        n.start()
        self.assertEqual(n.wait_exit(15), 1)
        self.assertIn("tls runtime: cannot load '%s/tls/" % d, n.log_text())
