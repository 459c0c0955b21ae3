"""The users API of a real meshnode, its error handling, hostile input,
keep-alive, persistence and metrics, once per driver: sqlite, memory and
postgres (one class per driver over the same test bodies; a postgres class
gets a database and a role of its own on the module's PostgreSQL server).
docs/http-api.md and its "Metrics"."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import unittest

import harness
from harness import Node, requires_meshnode, wait_until

MAX_BODY = 1024

# One Consul agent for the module: every test uses its own service name.
CONSUL = None  # the module's agent while its tests run (conftest.py)
# One PostgreSQL server for the module: every postgres class has its own database.
POSTGRES = None  # the module's server while its tests run (conftest.py)


def users_list(doc):
    """The list of users in a GET /users body: a JSON array, or an object
    holding it under "users", "items" or "data"."""
    if isinstance(doc, list):
        return doc
    for k in ("users", "items", "data"):
        if isinstance(doc, dict) and isinstance(doc.get(k), list):
            return doc[k]
    raise AssertionError("GET /users body is not a list of users: %r" % (doc,))


def store_settings(driver, owner):
    """The database.* settings of a node on `driver`: sqlite in the node's
    directory (Node's default path), memory, or for postgres a role and a
    database named after `owner` (a test class) on the module's server."""
    if driver == "sqlite":
        return {"database.driver": "sqlite"}
    if driver == "memory":
        return {"database.driver": "memory", "database.path": None}
    if driver == "postgres":
        name = owner.lower()
        POSTGRES.create_role_with_password(name, "pw-" + name)
        POSTGRES.create_database(name, owner=name)
        return POSTGRES.node_settings(name, name, "pw-" + name)
    raise ValueError("unknown driver %r" % (driver,))


class UsersApiBase:
    """Mixed into one TestCase per driver; one node per class."""

    driver = None
    node = None

    @classmethod
    def setUpClass(cls):
        settings = store_settings(cls.driver, cls.__name__)
        settings["server.max_body_bytes"] = MAX_BODY
        cls.node = Node(name="users-api-%s" % cls.driver, consul=CONSUL, settings=settings)
        cls.node.start_ready()

    @classmethod
    def tearDownClass(cls):
        if cls.node:
            cls.node.stop()

    # -- helpers -------------------------------------------------------------

    def req(self, method, path, body=None, headers=None):
        """A request whose response must carry X-Request-ID (every response
        does) and, when it is an error, a JSON {"error": "..."} body."""
        status, hdrs, data = self.node.request(method, path, body, headers)
        self.assertTrue(hdrs.get("x-request-id"),
                        "%s %s -> %d without X-Request-ID; headers %r" % (method, path, status, hdrs))
        if status >= 400:
            self.assert_error_body(status, hdrs, data, "%s %s" % (method, path))
        return status, hdrs, data

    def assert_error_body(self, status, hdrs, data, what):
        self.assertIn("application/json", hdrs.get("content-type", ""),
                      "%s -> %d: error without a JSON content type" % (what, status))
        try:
            doc = json.loads(data)
        except ValueError:
            self.fail("%s -> %d: error body is not JSON: %r" % (what, status, data[:200]))
        self.assertIsInstance(doc, dict, what)
        self.assertIsInstance(doc.get("error"), str, "%s -> %d: %r" % (what, status, doc))
        self.assertTrue(doc["error"], what)

    def assert_status(self, expected, method, path, body=None, headers=None):
        status, hdrs, data = self.req(method, path, body, headers)
        self.assertEqual(status, expected, "%s %s body=%r -> %d %r"
                         % (method, path, body, status, data[:300]))
        return hdrs, data

    def create(self, name="Ada Lovelace", email="ada@example.com"):
        body = {"name": name}
        if email is not None:
            body["email"] = email
        hdrs, data = self.assert_status(201, "POST", "/users", body)
        user = json.loads(data)
        self.assertIn("id", user, user)
        return user, hdrs

    def assert_healthy(self):
        self.assertTrue(self.node.running(), "node died:\n" + harness.tail(self.node.log_path))
        status, _, data = self.node.request("GET", "/health")
        self.assertEqual(status, 200, data)
        self.assertEqual(json.loads(data), {"status": "ok"})

    # -- CRUD ------------------------------------------------------------------

    def test_create_returns_201_with_id_and_location(self):
        user, hdrs = self.create("Grace Hopper", "grace@example.com")
        self.assertEqual(user["name"], "Grace Hopper")
        self.assertEqual(user["email"], "grace@example.com")
        loc = hdrs.get("location", "")
        self.assertTrue(loc.endswith("/users/%s" % user["id"]), "Location %r for id %r" % (loc, user["id"]))
        self.assertIn("application/json", hdrs.get("content-type", ""))

    def test_get_one(self):
        user, _ = self.create("Alan Turing", "alan@example.com")
        _, data = self.assert_status(200, "GET", "/users/%s" % user["id"])
        got = json.loads(data)
        self.assertEqual(got["id"], user["id"])
        self.assertEqual(got["name"], "Alan Turing")
        self.assertEqual(got["email"], "alan@example.com")

    def test_get_missing_is_404_json(self):
        _, data = self.assert_status(404, "GET", "/users/987654321")
        self.assertEqual(json.loads(data), {"error": "user 987654321 not found"})

    def test_put_updates(self):
        user, _ = self.create("Edsger", "edsger@example.com")
        path = "/users/%s" % user["id"]
        _, data = self.assert_status(200, "PUT", path, {"name": "Edsger Dijkstra",
                                                        "email": "ewd@example.com"})
        self.assertEqual(json.loads(data)["name"], "Edsger Dijkstra")
        _, data = self.assert_status(200, "GET", path)
        got = json.loads(data)
        self.assertEqual((got["name"], got["email"]), ("Edsger Dijkstra", "ewd@example.com"))

    def test_put_missing_is_404(self):
        self.assert_status(404, "PUT", "/users/987654322", {"name": "Nobody", "email": "n@x.org"})

    def test_delete_then_404(self):
        user, _ = self.create("Temp User", "tmp@example.com")
        path = "/users/%s" % user["id"]
        hdrs, data = self.assert_status(204, "DELETE", path)
        self.assertEqual(data, b"")
        self.assert_status(404, "GET", path)
        self.assert_status(404, "DELETE", path)

    def test_list_paging(self):
        for i in range(4):
            self.create("Pager %d" % i, "pager%d@example.com" % i)
        _, data = self.assert_status(200, "GET", "/users?limit=100&offset=0")
        full = users_list(json.loads(data))
        self.assertGreaterEqual(len(full), 4)
        _, data = self.assert_status(200, "GET", "/users?limit=2&offset=1")
        page = users_list(json.loads(data))
        self.assertEqual([u["id"] for u in page], [u["id"] for u in full[1:3]])
        _, data = self.assert_status(200, "GET", "/users?limit=2&offset=%d" % len(full))
        self.assertEqual(users_list(json.loads(data)), [])

    def test_unknown_fields_ignored(self):
        user, _ = self.create_with({"name": "Extra", "email": "extra@example.com",
                                    "favourite_colour": "green", "id": "not-this", "nested": {"a": [1]}})
        self.assertEqual(user["name"], "Extra")
        self.assertNotIn("favourite_colour", user)
        self.assertNotEqual(user["id"], "not-this")

    def create_with(self, body):
        hdrs, data = self.assert_status(201, "POST", "/users", body)
        return json.loads(data), hdrs

    def test_email_optional(self):
        user, _ = self.create("No Mail", None)
        self.assertEqual(user["name"], "No Mail")

    # -- bad input ---------------------------------------------------------------

    def test_bad_bodies_are_400(self):
        json_hdr = {"Content-Type": "application/json"}
        cases = {
            "malformed JSON": b'{"name": "x",',
            "not JSON at all": b"hello",
            "empty body": b"",
            "JSON array": b'[{"name": "x"}]',
            "JSON string": b'"name"',
            "missing name": b'{"email": "a@b.c"}',
            "empty name": b'{"name": "", "email": "a@b.c"}',
            "name as a number": b'{"name": 42, "email": "a@b.c"}',
            "name as null": b'{"name": null}',
            "email without @": b'{"name": "x", "email": "not-an-email"}',
            "email as a number": b'{"name": "x", "email": 7}',
        }
        for what, body in cases.items():
            with self.subTest(what):
                self.assert_status(400, "POST", "/users", body, json_hdr)
        user, _ = self.create("Put Target", "pt@example.com")
        for what in ("malformed JSON", "JSON array", "missing name", "name as a number",
                     "email without @"):
            with self.subTest("PUT " + what):
                self.assert_status(400, "PUT", "/users/%s" % user["id"], cases[what], json_hdr)
        self.assert_healthy()

    def test_non_numeric_id_is_400(self):
        for method, body in (("GET", None), ("PUT", {"name": "x"}), ("DELETE", None)):
            _, data = self.assert_status(400, method, "/users/abc", body)
            self.assertEqual(json.loads(data), {"error": "invalid user id 'abc'"}, method)

    def test_wrong_method_is_405_with_allow(self):
        one, many = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}, {"GET", "HEAD", "POST", "OPTIONS"}
        for method, path, allowed in (("PATCH", "/users/1", one), ("POST", "/users/1", one),
                                      ("DELETE", "/users", many), ("PUT", "/users", many)):
            with self.subTest(method=method, path=path):
                hdrs, data = self.assert_status(405, method, path, b"{}",
                                                {"Content-Type": "application/json"})
                allow = {m.strip().upper() for m in hdrs.get("allow", "").split(",") if m.strip()}
                self.assertEqual(allow, allowed, "Allow %r" % hdrs.get("allow"))
                self.assertEqual(json.loads(data), {"error": "method %s not allowed" % method})

    def test_unknown_route_is_404_json(self):
        self.assert_status(404, "GET", "/no/such/route")
        self.assert_status(404, "GET", "/userss")
        self.assert_status(404, "POST", "/nope", {"a": 1})

    def test_wrong_content_type_is_415(self):
        _, data = self.assert_status(415, "POST", "/users", b'{"name": "x", "email": "x@y.z"}',
                                     {"Content-Type": "text/plain"})
        self.assertEqual(json.loads(data), {"error": "the body must be application/json"})

    def test_json_content_type_with_charset_accepted(self):
        self.assert_status(201, "POST", "/users", b'{"name": "Charset", "email": "c@y.z"}',
                           {"Content-Type": "application/json; charset=utf-8"})

    # -- request IDs -------------------------------------------------------------

    def test_request_id_generated_and_echoed(self):
        for method, path in (("GET", "/health"), ("GET", "/users/987654323"), ("GET", "/nope"),
                             ("GET", "/users/abc"), ("PATCH", "/users")):
            with self.subTest(path=path):
                _, hdrs, _ = self.req(method, path)
                _, hdrs2, _ = self.req(method, path)
                self.assertNotEqual(hdrs["x-request-id"], hdrs2["x-request-id"])
                _, hdrs3, _ = self.req(method, path, headers={"X-Request-ID": "itest-req-0042"})
                self.assertEqual(hdrs3["x-request-id"], "itest-req-0042")
        user, hdrs = self.create("Req Id", "rid@example.com")
        self.assertTrue(hdrs.get("x-request-id"))

    def test_hostile_request_id_not_echoed(self):
        evil = "abc\x7fdef" + "x" * 300
        try:
            status, hdrs, _ = self.node.request("GET", "/health", headers={"X-Request-ID": evil})
        except Exception:
            status, hdrs = None, {}
        if status is not None:
            self.assertTrue(hdrs.get("x-request-id"))
            self.assertNotEqual(hdrs["x-request-id"], evil)
        self.assert_healthy()

    # -- limits and framing over raw sockets ---------------------------------

    def test_body_over_limit_is_413_without_reading_it(self):
        head = ("POST /users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (MAX_BODY * 64)).encode()
        raw = self.node.raw(head, timeout=5)  # the body is never sent
        self.assertTrue(raw, "no answer to an over-limit Content-Length")
        status, hdrs, body = harness.parse_raw_response(raw)
        self.assertEqual(status, 413, raw[:300])
        self.assertTrue(hdrs.get("x-request-id"), hdrs)
        self.assert_error_body(status, hdrs, body, "POST /users over limit")
        self.assert_healthy()

    def test_body_just_under_limit_is_not_413(self):
        # Under server.max_body_bytes, so read and validated: the 960-byte
        # name is over USER_NAME_MAX (200), which the validator says.
        name = "n" * (MAX_BODY - 64)
        _, data = self.assert_status(400, "POST", "/users",
                                     {"name": name, "email": "big@example.com"})
        self.assertEqual(json.loads(data),
                         {"error": "'name' must be 1 to 200 bytes of text, not only spaces"})

    def test_chunked_and_content_length_is_400(self):
        # Both framings at once is the request-smuggling shape: refused
        # whatever the route, even where either framing alone would be fine.
        body = b'{"name":"smuggle","email":"s@example.com"}'
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        for what, req in (
                ("POST /users", b"POST /users HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(chunked), chunked)),
                ("GET /health", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n")):
            with self.subTest(what):
                raw = self.node.raw(req, timeout=5)
                self.assertTrue(raw, "no answer to chunked + Content-Length")
                status, _, _ = harness.parse_raw_response(raw)
                self.assertEqual(status, 400, raw[:300])
        self.assert_healthy()

    def test_hostile_raw_input_keeps_node_serving(self):
        junk = [
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET /health HTTP/1.1\r\nNoColonHeader\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
            b"GET /health\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: -5\r\n\r\n",
            b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999999999999999999\r\n\r\n",
            b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 40\r\n\r\n{\"name\":",  # then the client goes away
            b"\r\n\r\n\r\n",
        ]
        for data in junk:
            try:
                self.node.raw(data, timeout=2, half_close=True)
            except OSError:
                pass  # closing or timing out on garbage is fine; dying is not
            self.assert_healthy()

    # -- keep-alive --------------------------------------------------------------

    def test_keep_alive_two_requests_one_connection(self):
        user, _ = self.create("Keep Alive", "ka@example.com")
        conn = self.node.connection()
        try:
            conn.request("GET", "/users/%s" % user["id"])
            r1 = conn.getresponse()
            b1 = r1.read()
            sock1 = conn.sock
            self.assertEqual(r1.status, 200, b1)
            self.assertIsNotNone(r1.getheader("Content-Length"))
            self.assertEqual(int(r1.getheader("Content-Length")), len(b1))
            self.assertNotEqual((r1.getheader("Connection") or "").lower(), "close")
            self.assertIsNotNone(sock1, "server closed a keep-alive connection")
            conn.request("GET", "/health")
            r2 = conn.getresponse()
            b2 = r2.read()
            self.assertEqual(r2.status, 200, b2)
            self.assertIsNotNone(r2.getheader("Content-Length"))
            self.assertIs(conn.sock, sock1, "second request needed a new connection")
            # An error response keeps the connection too.
            conn.request("GET", "/users/987654324")
            r3 = conn.getresponse()
            r3.read()
            self.assertEqual(r3.status, 404)
            self.assertIsNotNone(r3.getheader("Content-Length"))
        finally:
            conn.close()

    # -- last: the node survived everything --------------------------------------

    def test_zz_still_serving_after_bad_input(self):
        self.assert_healthy()
        status, _, _ = self.node.request("GET", "/ready")
        self.assertEqual(status, 200)


@requires_meshnode
class UsersApiSqliteTest(UsersApiBase, unittest.TestCase):
    driver = "sqlite"

    def test_metrics(self):
        user, _ = self.create("Metric", "metric@example.com")
        for _ in range(3):
            self.assert_status(200, "GET", "/users/%s" % user["id"])
        self.assert_status(404, "GET", "/users/987654325")
        self.assert_status(200, "GET", "/users?limit=1")
        # A request is counted as its handler finishes, which may be just
        # after the client has the response: poll briefly for the counts.
        def scraped():
            status, hdrs, data = self.node.request("GET", "/metrics")
            self.assertEqual(status, 200)
            self.assertIn("text/plain", hdrs.get("content-type", ""))
            text = data.decode("utf-8")
            n = {lab.get("status"): v for lab, v in harness.prom_samples(text, "http_requests_total")
                 if lab.get("endpoint") == "/users/{id}" and lab.get("method") == "GET"}
            return text if n.get("200", 0) >= 3 and n.get("404", 0) >= 1 else None

        try:
            text = wait_until(scraped, timeout=3, what="request counts in /metrics")
        except harness.WaitTimeout:
            text = self.node.request("GET", "/metrics")[2].decode("utf-8", "replace")
        bad = harness.prom_bad_lines(text)
        self.assertEqual(bad[:20], [], "%d line(s) not in Prometheus text format" % len(bad))
        excerpt = "\n".join(l for l in text.split("\n") if "http_requests_total" in l)[:2000]
        for needle in ("http_requests_total{", 'endpoint="/users/{id}"',
                       "# TYPE http_requests_total counter",
                       "# TYPE http_request_duration_seconds histogram",
                       "http_request_duration_seconds_bucket{", 'le="+Inf"'):
            self.assertTrue(needle in text, "%r not in /metrics; its http_requests_total lines:\n%s"
                            % (needle, excerpt))
        raw_path = re.search(r'.*endpoint="/users/\d.*', text)
        self.assertIsNone(raw_path, "raw path used as endpoint: %s" % (raw_path and raw_path.group(0)))

        reqs = harness.prom_samples(text, "http_requests_total")
        ok = [v for lab, v in reqs if lab.get("endpoint") == "/users/{id}"
              and lab.get("method") == "GET" and lab.get("status") == "200"]
        self.assertEqual(len(ok), 1, reqs)
        self.assertGreaterEqual(ok[0], 3)
        missing = [v for lab, v in reqs if lab.get("endpoint") == "/users/{id}"
                   and lab.get("status") == "404"]
        self.assertTrue(missing and missing[0] >= 1, reqs)

        buckets = harness.prom_samples(text, "http_request_duration_seconds_bucket")
        mine = [(lab, v) for lab, v in buckets
                if lab.get("endpoint") == "/users/{id}" and lab.get("method") == "GET"]
        les = sorted(float(lab["le"]) for lab, _ in mine)
        want = [.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, float("inf")]
        self.assertEqual(les, want, "bucket bounds of /users/{id}")
        inf = [v for lab, v in mine if lab["le"] == "+Inf"]
        self.assertEqual(len(inf), 1)
        self.assertGreaterEqual(inf[0], 4)
        counts = [v for _, v in sorted(mine, key=lambda lv: float(lv[0]["le"]))]
        self.assertEqual(counts, sorted(counts), "buckets must be cumulative")
        count = [v for lab, v in harness.prom_samples(text, "http_request_duration_seconds_count")
                 if lab.get("endpoint") == "/users/{id}" and lab.get("method") == "GET"]
        self.assertEqual(count, inf)
        self.assertTrue([1 for lab, _ in harness.prom_samples(text, "http_request_duration_seconds_sum")
                         if lab.get("endpoint") == "/users/{id}"])

    def test_promtool_check_metrics(self):
        """`promtool check metrics` finds no problem (promtool comes from
        Debian's prometheus package, unpacked by `scripts/deps.sh test`)."""
        self.create("Prom", "prom@example.com")
        self.assert_status(404, "GET", "/users/987654326")
        status, _, data = self.node.request("GET", "/metrics")
        self.assertEqual(status, 200)
        for family in ("http_requests_total", "meshnode_consul_requests_total",
                       "meshnode_build_info", "process_resident_memory_bytes"):
            self.assertIn("# TYPE %s " % family, data.decode())
        proc = subprocess.run([harness.promtool_binary(), "check", "metrics"], input=data,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stdout.decode("utf-8", "replace"))
        self.assertEqual(proc.stdout.strip(), b"", proc.stdout.decode("utf-8", "replace"))


@requires_meshnode
class UsersApiMemoryTest(UsersApiBase, unittest.TestCase):
    driver = "memory"


@requires_meshnode
class UsersApiPostgresTest(UsersApiBase, unittest.TestCase):
    driver = "postgres"


class UsersPersistenceBase:
    """A user written by a node killed with -9 is read by the next node on
    the same store (the file, or the PostgreSQL database)."""

    driver = None

    def test_user_survives_kill9(self):
        a = Node(name="users-persist", consul=CONSUL,
                 settings=store_settings(self.driver, type(self).__name__))
        # the second node gets the first one's store (the same SQLite path)
        store = {k: v for k, v in a.settings.items() if k.startswith("database.")}
        a.start_ready()
        try:
            status, _, data = a.request("POST", "/users", {"name": "Durable", "email": "d@example.com"})
            self.assertEqual(status, 201, data)
            uid = json.loads(data)["id"]
            status, _, data = a.request("PUT", "/users/%s" % uid,
                                        {"name": "Durable 2", "email": "d2@example.com"})
            self.assertEqual(status, 200, data)
        finally:
            rc = a.kill9()
        self.assertEqual(rc, -signal.SIGKILL)
        if self.driver == "sqlite":
            db = store["database.path"]
            self.assertTrue(os.path.exists(db), "no SQLite file at %s" % db)

        b = Node(name="users-persist", consul=CONSUL, settings=store)
        b.start_ready()
        try:
            status, _, data = b.request("GET", "/users/%s" % uid)
            self.assertEqual(status, 200, data)
            got = json.loads(data)
            self.assertEqual((got["name"], got["email"]), ("Durable 2", "d2@example.com"))
            # New ids do not collide with the surviving one.
            status, _, data = b.request("POST", "/users", {"name": "After", "email": "a@example.com"})
            self.assertEqual(status, 201, data)
            self.assertNotEqual(json.loads(data)["id"], uid)
        finally:
            rc = b.stop()
        self.assertEqual(rc, 0, "SIGTERM exit code")


    def test_concurrent_writes_acknowledged_survive_kill9(self):
        """Writers at once share transactions (the SQLite store's group
        commit); each is answered only once its transaction committed, so
        every 201 before a kill -9 is in the store after it."""
        a = Node(name="users-persist", consul=CONSUL,
                 settings=store_settings(self.driver, type(self).__name__ + "_many"))
        store = {k: v for k, v in a.settings.items() if k.startswith("database.")}
        a.start_ready()
        acked, errors, stop = {}, [], threading.Event()

        def writer(t):
            n = 0
            while not stop.is_set() and n < 2000:
                email = "w%d-%d@example.com" % (t, n)
                n += 1
                try:
                    status, _, data = a.request("POST", "/users",
                                                {"name": "W", "email": email}, timeout=2.0)
                except OSError:
                    return  # the node is gone
                if status == 201:
                    acked[json.loads(data)["id"]] = email
                else:
                    errors.append((status, data[:200]))

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(16)]
        try:
            for t in threads:
                t.start()
            wait_until(lambda: len(acked) >= 300, timeout=30, what="300 users written")
        finally:
            rc = a.kill9()
            stop.set()
            for t in threads:
                t.join(10)
        self.assertEqual(rc, -signal.SIGKILL)
        self.assertEqual(errors, [])
        print("# %d users acknowledged by 16 writers before kill -9" % len(acked),
              file=sys.stderr, flush=True)

        b = Node(name="users-persist", consul=CONSUL, settings=store)
        b.start_ready()
        try:
            for uid, email in sorted(acked.items()):
                status, _, data = b.request("GET", "/users/%s" % uid)
                self.assertEqual(status, 200, "acknowledged user %s lost: %s" % (uid, data))
                self.assertEqual(json.loads(data)["email"], email)
        finally:
            self.assertEqual(b.stop(), 0, "SIGTERM exit code")


@requires_meshnode
class UsersPersistenceTest(UsersPersistenceBase, unittest.TestCase):
    driver = "sqlite"


@requires_meshnode
class UsersPersistencePostgresTest(UsersPersistenceBase, unittest.TestCase):
    driver = "postgres"
