"""Hostile HTTP against real meshnode processes: deep JSON, request
smuggling with two Content-Lengths, bodies shorter than announced, encoded
paths, HEAD and OPTIONS, an idle keep-alive crowd, slow request heads, and
a SIGTERM that answers every request in flight. Issue 8; docs/http-api.md
and docs/operations.md's "Stopping" (SIGTERM).

Rows of issue 8's table, one test class each:
  1 DeepJsonTest            2 SmugglingTest       3 ShortBodyTest
  4 PathTest                5 HeadOptionsTest     6 IdleCrowdTest
  7 SlowHeadersTest         8 DrainThroughPeerTest 9 DrainUnderLoadTest
Every wait, loop and socket read here is bounded in count and time."""

import http.client
import json
import math
import select
import signal
import socket
import sqlite3
import sys
import threading
import time

import harness
from harness import (DelayRelay, Node, parse_raw_response, raw_exchange,
                     read_responses, requires_meshnode, wait_eof, wait_until)

MAX_BODY = 1048576
READ_TIMEOUT_MS = 1000

# One Consul agent for the module (rows 6 and 8); the other rows run nodes
# with no agent at all (a free port where nothing listens).
CONSUL = None  # the module's agent while its tests run (conftest.py)


def report(text):
    print("# " + text, file=sys.stderr, flush=True)


def users_list(doc):
    if isinstance(doc, list):
        return doc
    for k in ("users", "items", "data"):
        if isinstance(doc, dict) and isinstance(doc.get(k), list):
            return doc[k]
    raise AssertionError("GET /users body is not a list of users: %r" % (doc,))


def error_message(body):
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc.get("error") if isinstance(doc, dict) else None


def p99(latencies):
    """The 99th percentile (nearest rank) of a list where None is a probe
    that got no answer (infinitely slow)."""
    vals = sorted(math.inf if v is None else v for v in latencies)
    return vals[max(0, math.ceil(0.99 * len(vals)) - 1)]


def probe_health(port, timeout):
    """Seconds a GET /health on a new connection took, or None when it got
    no 200 within `timeout`."""
    t0 = time.monotonic()
    try:
        status, _, _ = harness.http_request(port, "GET", "/health", timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None
    return time.monotonic() - t0 if status == 200 else None


def probes(port, count, timeout, spacing=0.0, give_up_after=3):
    """`count` probes, one after the other; after `give_up_after` probes with
    no answer the rest count as unanswered without being sent (so a server
    that blocks costs at most give_up_after * timeout)."""
    out = []
    misses = 0
    for _ in range(count):
        if misses >= give_up_after:
            out.append(None)
            continue
        v = probe_health(port, timeout)
        if v is None:
            misses += 1
        out.append(v)
        if spacing:
            time.sleep(spacing)
    return out


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


class HostileBase(harness.ProcessesTestCase):
    """One users node per class (rows 1-5), restarted before a test if an
    earlier one killed it, so each test fails for its own reason."""

    node = None
    settings = {}

    @classmethod
    def setUpClass(cls):
        settings = {"server.max_body_bytes": MAX_BODY,
                    "server.read_timeout_ms": READ_TIMEOUT_MS}
        settings.update(cls.settings)
        cls.node = Node(name="hostile", settings=settings)
        cls.node.start_ready()

    @classmethod
    def tearDownClass(cls):
        if cls.node:
            cls.node.stop()

    def setUp(self):
        super().setUp()
        if not self.node.running():
            report("%s: the class's node had died (%s); restarted"
                   % (self.id(), self.node.proc.returncode))
            harness._unregister(self.node.proc)
            self.node.start_ready()

    def assert_alive(self, what):
        self.assertTrue(self.node.running(), "node died after %s (exit %s):\n%s"
                        % (what, self.node.proc.returncode, harness.tail(self.node.log_path)))
        status, _, body = self.node.request("GET", "/health")
        self.assertEqual(status, 200, body)

    def user_emails(self):
        status, _, body = self.node.request("GET", "/users?limit=100")
        self.assertEqual(status, 200, body)
        return sorted((u.get("email") or "") for u in users_list(json.loads(body)))

    def create_user(self, name, email):
        status, _, body = self.node.request("POST", "/users", {"name": name, "email": email})
        self.assertEqual(status, 201, body)
        return json.loads(body)["id"]


# --------------------------------------------------------------------------
# Row 1: deep JSON, and bodies at and just past max_body_bytes
# --------------------------------------------------------------------------

DEEP = {
    "1000 [": b"[" * 1000,
    "1000 [ closed": b"[" * 1000 + b"]" * 1000,
    '{"a": nested 1000 deep': b'{"a":' * 1000 + b"1" + b"}" * 1000,
    '{"a": 1000 unclosed': b'{"a":' * 1000,
}


@requires_meshnode
class DeepJsonTest(HostileBase):
    def assert_nesting_400(self, node, method, path, body, what):
        try:
            status, hdrs, data = node.request(method, path, body,
                                              {"Content-Type": "application/json"})
        except (OSError, http.client.HTTPException) as e:
            time.sleep(0.2)  # a crashing process is reaped a moment later
            self.fail("%s %s with %s: no answer (%s); node exit status: %s"
                      % (method, path, what, type(e).__name__, node.proc.poll()))
        self.assertEqual(status, 400, "%s %s with %s -> %d %r" % (method, path, what, status,
                                                                  data[:200]))
        self.assertEqual(error_message(data), "JSON nested deeper than 64 levels",
                         "%s %s with %s: 400 whose error does not say the nesting: %r"
                         % (method, path, what, data[:200]))

    def check_body_caps(self):
        # Exactly max_body_bytes of valid JSON: read whole and validated,
        # its name over USER_NAME_MAX (200 bytes).
        prefix, suffix = b'{"name":"', b'","email":"big@example.com"}'
        body = prefix + b"n" * (MAX_BODY - len(prefix) - len(suffix)) + suffix
        self.assertEqual(len(body), MAX_BODY)
        status, _, data = self.node.request("POST", "/users", body,
                                            {"Content-Type": "application/json"}, timeout=10)
        self.assertEqual(status, 400, data[:200])
        self.assertEqual(error_message(data),
                         "'name' must be 1 to 200 bytes of text, not only spaces")
        self.assert_alive("a body of exactly max_body_bytes")
        # One byte over: 413 from the head alone.
        head = ("POST /users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (MAX_BODY + 1)).encode()
        raw = self.node.raw(head, timeout=5)
        self.assertTrue(raw, "no answer to Content-Length max_body_bytes + 1")
        self.assertEqual(parse_raw_response(raw)[0], 413, raw[:300])
        self.assert_alive("a body one byte over max_body_bytes")

    def test_deep_json_is_400_nesting_and_node_stays_up(self):
        self.check_body_caps()  # (these pass on the old server too)
        uid = self.create_user("Deep Target", "deep-target@example.com")
        for what, body in DEEP.items():
            self.assert_nesting_400(self.node, "POST", "/users", body, what)
            self.assert_alive("POST /users " + what)
            self.assert_nesting_400(self.node, "PUT", "/users/%d" % uid, body, what)
            self.assert_alive("PUT /users/{id} " + what)
        status, _, data = self.node.request("GET", "/users/%d" % uid)
        self.assertEqual(status, 200, data)
        self.assertEqual(json.loads(data)["name"], "Deep Target")

    def test_deep_json_to_orders_is_400_nesting(self):
        orders = self.track(Node(name="orders", settings={
            "service.modules": ["orders"], "server.read_timeout_ms": READ_TIMEOUT_MS}))
        orders.start_ready()
        for what, body in DEEP.items():
            self.assert_nesting_400(orders, "POST", "/orders", body, what)
            self.assertTrue(orders.running(), "orders node died (exit %s) on %s"
                            % (orders.proc.returncode, what))
            self.assertEqual(orders.request("GET", "/health")[0], 200)


# --------------------------------------------------------------------------
# Row 2: two different Content-Lengths (smuggling), non-numeric ones
# --------------------------------------------------------------------------


@requires_meshnode
class SmugglingTest(HostileBase):
    def exchange(self, data):
        """Sends `data`, returns (responses, rest, eof) reading at most two
        responses within 3 s (the server must send one and close)."""
        with socket.create_connection(("127.0.0.1", self.node.port), timeout=5) as s:
            s.sendall(data)
            return read_responses(s, 2, timeout=3.0)

    def test_duplicate_content_length_is_400_close_and_never_smuggles(self):
        uid = self.create_user("Smuggle Target", "smuggle-target@example.com")
        inner_post_body = b'{"name":"smuggled","email":"smuggled@example.com"}'
        inner_post = (b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(inner_post_body), inner_post_body))
        inner_get = b"GET /users/%d HTTP/1.1\r\nHost: x\r\n\r\n" % uid
        before = self.user_emails()
        for what, inner in (("a smuggled POST /users", inner_post),
                            ("a smuggled GET /users/{id}", inner_get)):
            for order in ("0 first", "0 last"):
                lengths = [b"0", b"%d" % len(inner)]
                if order == "0 last":
                    lengths.reverse()
                outer = (b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %s\r\nContent-Length: %s\r\n\r\n%s"
                         % (lengths[0], lengths[1], inner))
                with self.subTest(what, order=order):
                    gets = self.node.metric("http_requests_total", method="GET",
                                            endpoint="/users/{id}")
                    resps, rest, eof = self.exchange(outer)
                    self.assertTrue(resps, "no answer to two Content-Lengths (%s); got %r"
                                    % (order, rest[:300]))
                    self.assertEqual(resps[0][0], 400, resps[0][3][:300])
                    if len(resps) > 1:
                        self.fail("a second response on the same connection: the body was run "
                                  "as a request: %r" % (resps[1][3][:300],))
                    self.assertEqual(rest, b"")
                    self.assertTrue(eof, "the server kept the connection open after the 400")
                    time.sleep(0.2)  # a request is counted as its handler finishes
                    self.assertEqual(self.node.metric("http_requests_total", method="GET",
                                                      endpoint="/users/{id}"), gets,
                                     "GET /users/{id} ran")
                    self.assertEqual(self.user_emails(), before, "a user was stored")
        self.assert_alive("two Content-Lengths")

    def test_non_numeric_content_length_is_400(self):
        body = b'{"name":"q"}'  # 12 bytes: "12abc" would read it as a valid body
        self.assertEqual(len(body), 12)
        before = self.user_emails()
        for value in (b"12abc", b"-1", b"1,1", b"+12", b"0x0c"):
            with self.subTest(content_length=value):
                data = (b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %s\r\n\r\n%s" % (value, body))
                raw = raw_exchange(self.node.port, data, timeout=3)
                self.assertTrue(raw, "no answer to Content-Length %r" % value)
                self.assertEqual(parse_raw_response(raw)[0], 400, "Content-Length: %s -> %r"
                                 % (value.decode(), raw[:300]))
        time.sleep(0.2)
        self.assertEqual(self.user_emails(), before, "a user was stored")
        self.assert_alive("non-numeric Content-Length")


def framed(version, headers, body):
    return (b"POST /users HTTP/%s\r\n" % version + b"".join(h + b"\r\n" for h in headers)
            + b"\r\n" + body)


def chunked(body):
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


@requires_meshnode
class FramingTest(HostileBase):
    """Issue 21, point 6: the rest of RFC 9112's framing rules. Each request
    would create a user if it were let through; each is a 400, no user is
    stored, and the node goes on serving. The well-formed twin of each is
    sent first and creates its user, so the 400s come from the one fault."""

    def send(self, data):
        raw = raw_exchange(self.node.port, data, timeout=3)
        self.assertTrue(raw, "no answer to %r" % data[:200])
        return parse_raw_response(raw)

    def test_framing_faults_are_400_and_reach_no_handler(self):
        def body(tag):
            return b'{"name":"Framing","email":"framing-%s@example.com"}' % tag.encode()

        ok_body = body("ok")
        status, _, raw_body = self.send(framed(b"1.1", [
            b"Host: x", b"Content-Type: application/json",
            b"Content-Length: %d" % len(ok_body)], ok_body))
        self.assertEqual(status, 201, raw_body)
        cases = {
            "space before the colon of Content-Length":
                lambda b: framed(b"1.1", [b"Host: x", b"Content-Type: application/json",
                                          b"Content-Length : %d" % len(b)], b),
            "spaces before the colon of Host":
                lambda b: framed(b"1.1", [b"Host  : x", b"Content-Type: application/json",
                                          b"Content-Length: %d" % len(b)], b),
            "tab before the colon":
                lambda b: framed(b"1.1", [b"Host: x", b"Content-Type: application/json",
                                          b"Content-Length\t: %d" % len(b)], b),
            "Transfer-Encoding in HTTP/1.0":
                lambda b: framed(b"1.0", [b"Host: x", b"Content-Type: application/json",
                                          b"Transfer-Encoding: chunked"], chunked(b)),
            "HTTP/1.1 without Host":
                lambda b: framed(b"1.1", [b"Content-Type: application/json",
                                          b"Content-Length: %d" % len(b)], b),
            "HTTP/1.1 with two Host headers":
                lambda b: framed(b"1.1", [b"Host: x", b"Content-Type: application/json",
                                          b"Host: y", b"Content-Length: %d" % len(b)], b),
            "HTTP/1.1 with two equal Host headers":
                lambda b: framed(b"1.1", [b"Host: x", b"Host: x",
                                          b"Content-Type: application/json",
                                          b"Content-Length: %d" % len(b)], b),
        }
        # the same requests well framed are served: HTTP/1.0 with a length
        twin = body("twin10")
        status, _, raw_body = self.send(framed(b"1.0", [
            b"Content-Type: application/json", b"Content-Length: %d" % len(twin)], twin))
        self.assertEqual(status, 201, raw_body)
        before = self.user_emails()
        wrong = {}
        for i, (what, make) in enumerate(sorted(cases.items())):
            status, _, raw_body = self.send(make(body("bad%d" % i)))
            report("framing: %s -> %d %r" % (what, status, raw_body[:80]))
            if status != 400:
                wrong[what] = status
        time.sleep(0.2)
        self.assertEqual(wrong, {}, "not refused with 400")
        self.assertEqual(self.user_emails(), before, "a refused request stored a user")
        self.assert_alive("framing faults")


# --------------------------------------------------------------------------
# Row 3: a body shorter than its Content-Length
# --------------------------------------------------------------------------

SHORT_BODY = b'{"name":"short","email":"short@ex.io"}'.ljust(40)  # valid JSON, 40 bytes


@requires_meshnode
class ShortBodyTest(HostileBase):
    def short_post(self, half_close):
        self.assertEqual(len(SHORT_BODY), 40)
        head = (b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n")
        bound = READ_TIMEOUT_MS / 1000.0 + 1.0
        s = socket.create_connection(("127.0.0.1", self.node.port), timeout=5)
        try:
            t0 = time.monotonic()
            s.sendall(head + SHORT_BODY)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            # read past the bound (bounded) so the failure says what came
            resps, rest, eof = read_responses(s, 1, timeout=bound + 2.0)
            took = time.monotonic() - t0
        finally:
            s.close()
        return resps, rest, eof, took, bound

    def check(self, half_close):
        before = self.user_emails()
        resps, rest, eof, took, bound = self.short_post(half_close)
        time.sleep(0.5)  # our close reached the server: nothing may be stored then either
        after = self.user_emails()
        self.assertTrue(resps, "no answer within %.1fs (eof=%s, bytes %r)" % (took, eof, rest[:200]))
        self.assertIn(resps[0][0], (400, 408), resps[0][3][:300])
        self.assertLess(took, bound + 0.5,
                        "answered after %.2fs; read_timeout is %d ms" % (took, READ_TIMEOUT_MS))
        self.assertEqual(after, before, "the 40 bytes were stored as a user")
        self.assert_alive("a short body")

    def test_short_body_is_400_or_408_within_read_timeout_and_not_stored(self):
        # The half-closed variant first: it passes on the old server too.
        with self.subTest("client half-closes after 40 bytes"):
            self.check(half_close=True)
        with self.subTest("client waits"):
            self.check(half_close=False)


# --------------------------------------------------------------------------
# Row 4: %00, encoded slashes and dot segments in the path
# --------------------------------------------------------------------------


@requires_meshnode
class PathTest(HostileBase):
    def get_raw(self, path):
        data = b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode()
        raw = raw_exchange(self.node.port, data, timeout=3)
        self.assertTrue(raw, "no answer to GET %s" % path)
        return parse_raw_response(raw)

    def kind(self, body):
        """What a body is: health, user, users, config, error or other."""
        try:
            doc = json.loads(body)
        except ValueError:
            return "other"
        if isinstance(doc, list):
            return "users"
        if not isinstance(doc, dict):
            return "other"
        if doc.get("status") == "ok":
            return "health"
        if "email" in doc or ("id" in doc and "name" in doc):
            return "user"
        if "error" in doc and len(doc) == 1:
            return "error"
        if set(doc) == self.config_keys:
            return "config"
        return "other"

    def test_encoded_nul_slash_and_dots_never_route_elsewhere(self):
        self.config_keys = set(self.node.config())
        uid = self.create_user("Path Target", "path-target@example.com")
        # /users/../config and its encodings: 400 for an encoded dot
        # segment, /config per RFC 3986's remove_dot_segments for literal
        # ones; never a user. An encoded NUL or '/' is 400 (docs/http-api.md).
        self.check_dot_segments()
        nul, slash = "encoded NUL in the request path", "encoded '/' in a request path segment"
        for path, why in (("/health%00/xyz", nul), ("/users/%d%%00abc" % uid, nul),
                          ("/users/..%2fconfig", slash), ("/users%%2f%d" % uid, slash),
                          ("/users/%d%%2f" % uid, slash), ("/health%2f", slash),
                          ("/users/%d%%2Fx" % uid, slash)):
            with self.subTest(path=path):
                status, _, body = self.get_raw(path)
                self.assertEqual(status, 400, "GET %s -> %d %r" % (path, status, body[:200]))
                self.assertEqual(error_message(body), why, "GET %s answered %r"
                                 % (path, body[:200]))
        self.assert_alive("encoded paths")

    def check_dot_segments(self):
        for path, want in (("/users/%2e%2e/config", 400), ("/users/../config", 200),
                           ("/users/%2E%2E/config", 400), ("/users/./../config", 200)):
            with self.subTest(path=path):
                status, _, body = self.get_raw(path)
                self.assertEqual(status, want, "GET %s -> %d %r" % (path, status, body[:200]))
                if status == 200:
                    self.assertEqual(self.kind(body), "config",
                                     "GET %s -> 200 %r" % (path, body[:200]))
                else:
                    self.assertEqual(error_message(body),
                                     "encoded dot segment in the request path",
                                     "GET %s -> %d %r" % (path, status, body[:200]))


# --------------------------------------------------------------------------
# Row 5: HEAD on every GET route, OPTIONS, Allow on 405
# --------------------------------------------------------------------------


def allow_set(hdrs):
    return {m.strip().upper() for m in hdrs.get("allow", "").split(",") if m.strip()}


# What a users node answers on some route: OPTIONS * lists it.
ALLOW_ALL = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"}


@requires_meshnode
class HeadOptionsTest(HostileBase):
    def head_then_health(self, path):
        """HEAD `path` and GET /health pipelined on one connection. Returns
        (head status, head headers, the bytes after the HEAD's head)."""
        data = (b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        buf = b""
        with socket.create_connection(("127.0.0.1", self.node.port), timeout=5) as s:
            s.sendall(data)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                buf += chunk
        head, sep, after = buf.partition(b"\r\n\r\n")
        self.assertTrue(sep, "no response head to HEAD %s: %r" % (path, buf[:300]))
        status, hdrs, _ = parse_raw_response(head + b"\r\n\r\n")
        return status, hdrs, after

    def test_head_matches_get_without_body(self):
        uid = self.create_user("Head Target", "head-target@example.com")
        for path in ("/health", "/ready", "/metrics", "/config", "/users", "/users/%d" % uid):
            with self.subTest(path=path):
                g_status, g_hdrs, g_body = self.node.request("GET", path)
                self.assertEqual(g_status, 200, g_body[:200])
                h_status, h_hdrs, after = self.head_then_health(path)
                g2_status, g2_hdrs, _ = self.node.request("GET", path)
                self.assertEqual(h_status, g_status, "HEAD %s -> %d, GET -> %d"
                                 % (path, h_status, g_status))
                self.assertIn("content-length", h_hdrs, "HEAD %s: no Content-Length" % path)
                if path == "/metrics":
                    # The counters move between two scrapes: same header,
                    # not the same number.
                    self.assertGreater(int(h_hdrs["content-length"]), 0)
                else:
                    # a GET just before and one just after: the HEAD's
                    # Content-Length is one of theirs (a /ready or /config
                    # body may change length in between, rarely)
                    self.assertIn(h_hdrs["content-length"], (g_hdrs.get("content-length"),
                                                             g2_hdrs.get("content-length")),
                                  "HEAD %s Content-Length differs from GET's" % path)
                self.assertTrue(after.startswith(b"HTTP/1."),
                                "HEAD %s: bytes after its head are not the next response: %r"
                                % (path, after[:120]))
                n_status, _, n_body = parse_raw_response(after)
                self.assertEqual(n_status, 200, after[:300])
                self.assertEqual(json.loads(n_body), {"status": "ok"})

    def test_options_answers_allow(self):
        uid = self.create_user("Options Target", "options-target@example.com")
        for path, want in (("/users", {"GET", "HEAD", "POST", "OPTIONS"}),
                           ("/users/%d" % uid, {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}),
                           ("/health", {"GET", "HEAD", "OPTIONS"})):
            with self.subTest(path=path):
                status, hdrs, body = self.node.request("OPTIONS", path)
                self.assertEqual(status, 204, "OPTIONS %s -> %d %r" % (path, status, body[:200]))
                self.assertEqual(body, b"")
                self.assertEqual(allow_set(hdrs), want, "OPTIONS %s: Allow %r"
                                 % (path, hdrs.get("allow")))
        raw = raw_exchange(self.node.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n"
                           b"Connection: close\r\n\r\n", timeout=3)
        self.assertTrue(raw, "OPTIONS *: connection closed without an answer")
        status, hdrs, _ = parse_raw_response(raw)
        self.assertEqual(status, 204, raw[:300])
        self.assertEqual(allow_set(hdrs), ALLOW_ALL, "OPTIONS *: Allow %r" % raw[:300])

    def test_405_allow_names_head_and_options(self):
        for method, path, want in (("DELETE", "/users", {"GET", "HEAD", "POST", "OPTIONS"}),
                                   ("PATCH", "/users/1", {"GET", "HEAD", "PUT", "DELETE",
                                                          "OPTIONS"}),
                                   ("POST", "/health", {"GET", "HEAD", "OPTIONS"}),
                                   ("DELETE", "/metrics", {"GET", "HEAD", "OPTIONS"})):
            with self.subTest(method=method, path=path):
                status, hdrs, body = self.node.request(method, path, b"{}",
                                                       {"Content-Type": "application/json"})
                self.assertEqual(status, 405, body[:200])
                self.assertEqual(error_message(body), "method %s not allowed" % method)
                self.assertEqual(allow_set(hdrs), want, "%s %s: Allow %r"
                                 % (method, path, hdrs.get("allow")))
                self.assertNotIn(method, allow_set(hdrs))


# --------------------------------------------------------------------------
# Row 6: an idle keep-alive crowd
# --------------------------------------------------------------------------

CROWD = 60
CROWD_THREADS = 16
CROWD_OPEN_MAX = 13  # 3/4 of 16 = 12, plus 1 of slack


def check_statuses(consul, service):
    return [c["Status"] for c in consul.agent_checks().values() if c.get("ServiceName") == service]


@requires_meshnode
class IdleCrowdTest(harness.ProcessesTestCase):
    def test_idle_crowd_is_shed_and_fresh_clients_and_check_are_served(self):
        node = self.track(Node(name="crowd", consul=CONSUL, settings={
            "server.threads": CROWD_THREADS, "server.idle_timeout_ms": 10000}))
        node.start_ready()
        wait_until(lambda: check_statuses(CONSUL, "crowd") == ["passing"], timeout=10,
                   what="the crowd node's check passing")
        crowd = []
        self.addCleanup(close_all, crowd)
        for _ in range(CROWD):
            s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
            crowd.append(s)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        # Every one is answered; those past the high-water mark with close.
        bufs = {s: b"" for s in crowd}
        answered = {}  # socket -> (status, headers)
        closed = set()
        deadline = time.monotonic() + 4.0
        while len(answered) < CROWD and time.monotonic() < deadline:
            waiting = [s for s in crowd if s not in answered and s not in closed]
            if not waiting:
                break
            ready, _, _ = select.select(waiting, [], [], max(0.01, deadline - time.monotonic()))
            for s in ready:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    closed.add(s)
                    continue
                bufs[s] += chunk
                head, sep, body = bufs[s].partition(b"\r\n\r\n")
                if sep:
                    status, hdrs, _ = parse_raw_response(head + sep)
                    if len(body) >= int(hdrs.get("content-length", "0")):
                        answered[s] = (status, hdrs)
        time.sleep(0.5)  # time for the server to close what it answered with close
        still_open = [s for s in answered if wait_eof(s, 0.01) == "open"]
        told_close = sum(1 for st, h in answered.values() if h.get("connection", "").lower() == "close")
        report("idle crowd of %d: %d answered (%d with Connection: close), %d closed "
               "unanswered, %d still open" % (CROWD, len(answered), told_close, len(closed),
                                              len(still_open)))
        # Fresh clients while the crowd holds its sockets, and the check.
        latencies = probes(node.port, 20, timeout=2.0)
        statuses = []
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            statuses.extend(check_statuses(CONSUL, "crowd"))
            time.sleep(0.25)
        worst = p99(latencies)
        report("fresh GET /health during the crowd: p99 %.3fs; check statuses %s"
               % (worst, sorted(set(statuses))))
        problems = []
        if len(answered) != CROWD:
            problems.append("%d of %d crowd requests answered within 4 s"
                            % (len(answered), CROWD))
        if any(st != 200 for st, _ in answered.values()):
            problems.append("crowd statuses %r" % sorted(st for st, _ in answered.values()))
        if len(still_open) > CROWD_OPEN_MAX:
            problems.append("%d connections still open after their answer (at most %d)"
                            % (len(still_open), CROWD_OPEN_MAX))
        if not worst < 1.0:
            problems.append("fresh client p99 %.3fs (>= 1 s; None = no answer): %r"
                            % (worst, latencies))
        if not statuses or any(st != "passing" for st in statuses):
            problems.append("Consul check during the crowd: %r" % statuses)
        self.assertEqual(problems, [])
        self.assertTrue(node.running())


# --------------------------------------------------------------------------
# Row 7: slow request heads
# --------------------------------------------------------------------------

SLOW_CONNS = 20
SLOW_READ_TIMEOUT_MS = 2000
SLOW_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n\r\n"


def trickle(port, count, interval, stop_after, result):
    """Opens `count` connections and sends SLOW_HEAD one byte per `interval`
    on each; result[i] = (first byte time, time closed or None, bytes got).
    Returns after stop_after seconds at most, or when all are closed."""
    socks = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        first = [None] * count
        closed = [None] * count
        got = [b""] * count
        sent = 0
        t_start = time.monotonic()
        next_send = t_start
        while time.monotonic() - t_start < stop_after and None in closed:
            now = time.monotonic()
            if now >= next_send and sent < len(SLOW_HEAD):
                for i, s in enumerate(socks):
                    if closed[i] is None:
                        try:
                            s.send(SLOW_HEAD[sent:sent + 1])
                            if first[i] is None:
                                first[i] = time.monotonic()
                        except OSError:
                            closed[i] = time.monotonic()
                sent += 1
                next_send += interval
            live = [s for i, s in enumerate(socks) if closed[i] is None]
            if not live:
                break
            wait = max(0.0, min(next_send, t_start + stop_after) - time.monotonic())
            ready, _, _ = select.select(live, [], [], wait)
            for s in ready:
                i = socks.index(s)
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if chunk:
                    got[i] += chunk
                else:
                    closed[i] = time.monotonic()
        for i in range(count):
            result[i] = (first[i], closed[i], got[i])
    finally:
        close_all(socks)


@requires_meshnode
class SlowHeadersTest(harness.ProcessesTestCase):
    def test_slow_heads_are_cut_at_the_deadline_and_fresh_clients_served(self):
        node = self.track(Node(name="slowheads", settings={
            "server.threads": 32, "server.read_timeout_ms": SLOW_READ_TIMEOUT_MS}))
        node.start_ready()
        bound = SLOW_READ_TIMEOUT_MS / 1000.0 + 1.5
        result = [None] * SLOW_CONNS
        t = threading.Thread(target=trickle, args=(node.port, SLOW_CONNS, 0.5, bound + 1.5, result),
                             daemon=True)
        t.start()
        time.sleep(0.3)
        latencies = probes(node.port, 20, timeout=1.5, spacing=0.05)
        t.join(timeout=bound + 5)
        self.assertFalse(t.is_alive(), "the trickling thread did not finish")
        worst = p99(latencies)
        late = []
        for i, r in enumerate(result):
            first, closed, got = r
            took = None if closed is None or first is None else closed - first
            if took is None or took > bound:
                late.append((i, None if took is None else round(took, 2), got[:60]))
        cut = [round(r[1] - r[0], 2) for r in result if r[1] is not None and r[0] is not None]
        report("slow heads: closed after %r s; fresh p99 %.3fs" % (sorted(cut), worst))
        problems = []
        if late:
            problems.append("%d of %d slow connections not closed within %.1fs of their first "
                            "byte (index, seconds or None = still open, bytes got): %r"
                            % (len(late), SLOW_CONNS, bound, late[:5]))
        if not worst < 1.0:
            problems.append("fresh client p99 %.3fs (None = no answer): %r" % (worst, latencies))
        self.assertEqual(problems, [])
        self.assertTrue(node.running())


SILENT_THREADS = 16
SILENT_CONNS = 100


@requires_meshnode
class SilentConnectionsTest(harness.ProcessesTestCase):
    """Issue 21, point 8: a connection costs a worker only once it has
    spoken. 100 connections that send nothing against 16 workers: /health
    on fresh connections is answered at once, and each silent connection
    that then sends a request is served (the kernel hands it over when its
    bytes arrive: TCP_DEFER_ACCEPT on the listener)."""

    def test_silent_connections_take_no_worker_and_are_served_when_they_speak(self):
        node = self.track(Node(name="silent", settings={"server.threads": SILENT_THREADS}))
        node.start_ready()
        silent = []
        try:
            for _ in range(SILENT_CONNS):
                silent.append(socket.create_connection(("127.0.0.1", node.port), timeout=5))
            time.sleep(0.5)
            latencies = probes(node.port, 20, timeout=3.0, spacing=0.05)
            worst = p99(latencies)
            report("silent: %d silent connections, %d threads: /health p99 %.3f s"
                   % (SILENT_CONNS, SILENT_THREADS, worst))
            self.assertLess(worst, 1.0, "probes with %d silent connections open (None = no "
                            "answer): %r" % (SILENT_CONNS, latencies))
            # they speak, a few seconds later: every one is served
            served = 0
            for s in silent:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            for s in silent:
                resps, _, _ = read_responses(s, 1, timeout=10.0)
                if resps and resps[0][0] == 200:
                    served += 1
            self.assertEqual(served, SILENT_CONNS, "silent connections that spoke, served")
        finally:
            for s in silent:
                s.close()
        self.assertTrue(node.running())
        self.assertNotIn("connections take a worker before they send a byte", node.log_text())


# --------------------------------------------------------------------------
# Row 8: SIGTERM answers every order in flight through a slow peer
# --------------------------------------------------------------------------

IN_FLIGHT = 20
HOLD = 3.0
SHUTDOWN_MS = 10000


@requires_meshnode
class DrainThroughPeerTest(harness.ProcessesTestCase):
    def test_sigterm_answers_all_orders_in_flight(self):
        users = self.track(Node(name="users"))  # no agent: reached only through the relay
        users.start_ready()
        relay = DelayRelay(users.port, delay=HOLD)
        self.addCleanup(relay.stop)
        relay_id = "users-relay-%d" % relay.port
        CONSUL.register_service({
            "ID": relay_id, "Name": "users", "Address": "127.0.0.1", "Port": relay.port,
            "Check": {"CheckID": relay_id + "-ttl", "TTL": "600s", "Status": "passing"}})
        self.addCleanup(CONSUL.deregister_service, relay_id)
        orders = self.track(Node(name="orders", consul=CONSUL, settings={
            "service.modules": ["orders"], "peers.users.timeout_ms": 8000,
            "server.shutdown_timeout_ms": SHUTDOWN_MS, "server.threads": 32}))
        orders.start_ready()
        wait_until(lambda: CONSUL.health_service("orders", passing=True), timeout=10,
                   what="the orders node passing in Consul")
        wait_until(lambda: len(orders.get_json("/peers/users")["instances"]) == 1, timeout=10,
                   what="the orders node seeing the relay")
        status, _, body = users.request("POST", "/users", {"name": "Drain", "email": "drain@example.com"})
        self.assertEqual(status, 201, body)
        uid = json.loads(body)["id"]

        results = [None] * IN_FLIGHT

        def place(i):
            t0 = time.monotonic()
            try:
                st, hd, bd = orders.request("POST", "/orders", {"user_id": uid, "product": "p%d" % i,
                                                                "quantity": 1},
                                            timeout=HOLD + SHUTDOWN_MS / 1000.0 + 2)
                results[i] = (st, bd[:200], time.monotonic() - t0)
            except (OSError, http.client.HTTPException) as e:
                results[i] = (repr(e), None, time.monotonic() - t0)

        threads = [threading.Thread(target=place, args=(i,), daemon=True) for i in range(IN_FLIGHT)]
        for th in threads:
            th.start()
        wait_until(lambda: relay.requests >= IN_FLIGHT, timeout=5, interval=0.05,
                   what="all %d user lookups at the relay" % IN_FLIGHT)
        time.sleep(0.2)
        t_term = time.monotonic()
        orders.signal(signal.SIGTERM)
        catalog = {}  # when the orders service left the catalog, and how many had answers

        def watch_catalog():
            while time.monotonic() - t_term < 2.5:
                try:
                    if not CONSUL.get("/v1/catalog/service/orders"):
                        catalog["gone_at"] = time.monotonic() - t_term
                        catalog["answered"] = sum(1 for r in results if r is not None)
                        return
                except (OSError, http.client.HTTPException, harness.ConsulError):
                    pass
                time.sleep(0.05)

        watcher = threading.Thread(target=watch_catalog, daemon=True)
        watcher.start()

        # During the drain (the relay still holds every answer):
        time.sleep(0.2)
        try:
            ready = orders.request("GET", "/ready", timeout=2)
        except (OSError, http.client.HTTPException) as e:
            ready = (repr(e), {}, b"")
        ready_at = time.monotonic() - t_term
        try:
            late = orders.request("POST", "/orders", {"user_id": uid, "product": "late",
                                                      "quantity": 1}, timeout=2.5)
        except ConnectionRefusedError as e:
            late = ("refused", {}, repr(e).encode())
        except (OSError, http.client.HTTPException) as e:
            late = (repr(e), {}, b"")
        watcher.join(timeout=3)
        gone_at = catalog.get("gone_at")
        answered_before_gone = catalog.get("answered", 0)
        try:
            rc = orders.wait_exit(timeout=SHUTDOWN_MS / 1000.0 + 1.0 - (time.monotonic() - t_term))
        except harness.NodeError as e:
            rc = "still running: %s" % str(e)[:200]
        exit_at = time.monotonic() - t_term
        for th in threads:
            th.join(timeout=max(0.1, HOLD + SHUTDOWN_MS / 1000.0 + 3 - (time.monotonic() - t_term)))
        stored = None
        if orders.proc.poll() is not None:
            with sqlite3.connect(orders.settings["database.path"]) as db:
                stored = db.execute("SELECT COUNT(*) FROM orders").fetchone()[0]

        report("drain: relay saw %d lookups; /ready at +%.2fs -> %r; late POST -> %r; "
               "catalog empty at %s; exit %r at +%.2fs; %d orders stored"
               % (relay.requests, ready_at, (ready[0], ready[2][:80]), (late[0], late[1].get("connection")),
                  gone_at, rc, exit_at, stored or 0))
        problems = []
        bad = [(i, r) for i, r in enumerate(results) if r is None or r[0] != 201]
        if bad:
            problems.append("%d of %d orders in flight got no 201: %r"
                            % (len(bad), IN_FLIGHT, bad[:5]))
        if ready[0] != 503:
            problems.append("GET /ready during the drain: %r %r" % (ready[0], ready[2][:200]))
        else:
            try:
                reason = json.loads(ready[2]).get("reason")
            except ValueError:
                reason = None
            if reason != "stopping":
                problems.append("GET /ready during the drain: 503 with reason %r" % reason)
        if late[0] == 503:
            if late[1].get("connection", "").lower() != "close":
                problems.append("new POST /orders during the drain: 503 without Connection: close")
        elif late[0] != "refused":
            problems.append("new POST /orders during the drain: %r %r" % (late[0], late[2][:200]))
        if gone_at is None:
            problems.append("the orders service still in Consul's catalog 2.5 s after SIGTERM")
        elif answered_before_gone:
            problems.append("%d orders answered before the node left the catalog"
                            % answered_before_gone)
        if rc != 0:
            problems.append("exit %r (want 0 within %d ms)" % (rc, SHUTDOWN_MS))
        if stored != IN_FLIGHT:
            problems.append("%r orders in the database, want %d" % (stored, IN_FLIGHT))
        self.assertEqual(problems, [])


# --------------------------------------------------------------------------
# Row 9: SIGTERM under a stream of creates: every 201 stored, nothing else
# --------------------------------------------------------------------------

LOAD_CLIENTS = 8
LOAD_SECONDS = 2.0


@requires_meshnode
class DrainUnderLoadTest(harness.ProcessesTestCase):
    def test_sigterm_under_load_stores_exactly_what_was_acknowledged(self):
        node = self.track(Node(name="loadusers"))
        node.start_ready()
        created = {}  # email -> id, every 201
        failures = []  # (email, what)
        lock = threading.Lock()
        t_start = time.monotonic()
        stop_at = t_start + LOAD_SECONDS + 1.0

        def client(k):
            conn = None
            n = 0
            while time.monotonic() < stop_at and n < 5000:
                n += 1
                email = "load-%d-%d@example.com" % (k, n)
                body = json.dumps({"name": "Load %d %d" % (k, n), "email": email})
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=5)
                    conn.request("POST", "/users", body=body,
                                 headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                    with lock:
                        if resp.status == 201:
                            created[email] = json.loads(data)["id"]
                        else:
                            failures.append((email, resp.status))
                    if resp.status != 201 or (resp.getheader("Connection") or "").lower() == "close":
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        failures.append((email, type(e).__name__))
                    if conn is not None:
                        conn.close()
                        conn = None
                    if isinstance(e, ConnectionRefusedError):
                        time.sleep(0.02)
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=client, args=(k,), daemon=True)
                   for k in range(LOAD_CLIENTS)]
        for th in threads:
            th.start()
        time.sleep(LOAD_SECONDS / 2)
        t_term = time.monotonic()
        node.signal(signal.SIGTERM)
        try:
            rc = node.wait_exit(timeout=12)
        except harness.NodeError as e:
            rc = "still running: %s" % str(e)[:200]
        for th in threads:
            th.join(timeout=max(0.1, stop_at + 6 - time.monotonic()))
        self.assertFalse(any(th.is_alive() for th in threads), "a client thread hung")
        with lock:
            acked = dict(created)
            failed = list(failures)
        stored = {}
        if node.proc.poll() is not None:
            with sqlite3.connect(node.settings["database.path"]) as db:
                stored = {e: i for i, e in db.execute("SELECT id, email FROM users")}
        kinds = {}
        for _, what in failed:
            kinds[what] = kinds.get(what, 0) + 1
        report("load drain: %d acknowledged, %d stored, failures %r, exit %r %.2fs after SIGTERM"
               % (len(acked), len(stored), kinds, rc, time.monotonic() - t_term))
        self.assertGreater(len(acked), 20, "too few creates to mean anything")
        self.assertEqual(rc, 0)
        lost = sorted(set(acked) - set(stored))
        unacked = sorted(set(stored) - set(acked))
        self.assertEqual(lost, [], "acknowledged with 201 but not stored")
        self.assertEqual(unacked, [], "stored but the client never got its 201: %r"
                         % [(e, dict(failed).get(e)) for e in unacked[:10]])
        self.assertEqual(stored, acked, "ids differ")
