"""One event is one log record (issue 8, point 4): against a real agent and
real nodes, with log.format json and text, CR/LF, ESC and invalid UTF-8 that
reach the node from outside (a request path, a KV key written through the
agent's API, a Consul service's ID and address, CONSUL_HTTP_ADDR) never end
a line early, never forge a record, and every json record parses."""

import base64
import json
import re

import harness
from harness import Node, requires_meshnode, wait_until


# What an attacker would like to see as a record of its own.
FORGED = '{"ts":"2024-01-01T00:00:00.000Z","level":"error","component":"app","msg":"forged"}'

# "<ts> <level> [<component>] <msg>", the level padded to 5
TEXT_RECORD = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info |warn |error) \[[^\]\n]*\] ")


CONSUL = None  # the module's agent while its tests run (conftest.py)


def log_lines(node):
    """The node's own output, line by line, as bytes: the harness's
    "\n=== start: ..." lines (and the blank line before each) left out.
    The last line must be complete."""
    with open(node.log_path, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n"), "log does not end with a newline: %r" % data[-200:]
    lines = data.split(b"\n")[:-1]
    return [line for i, line in enumerate(lines)
            if not line.startswith(b"=== ")
            and not (line == b"" and i + 1 < len(lines) and lines[i + 1].startswith(b"=== "))]


def kv_put_raw_key(key, value):
    """Writes `key` through the agent's transaction API: the key travels in
    the JSON body, so it may hold characters the URL form refuses (Consul
    answers 400 to a CR or LF in /v1/kv/<key>)."""
    status, _, data = CONSUL.request("PUT", "/v1/txn", [{"KV": {
        "Verb": "set", "Key": key, "Value": base64.b64encode(value.encode()).decode()}}])
    if status != 200:
        raise AssertionError("txn set %r: %d %r" % (key, status, data[:300]))


@requires_meshnode
class LogInjectionTest(harness.ProcessesTestCase):
    def node(self, name, fmt, **kw):
        kw.setdefault("consul", CONSUL)
        settings = {"log.format": fmt}
        settings.update(kw.pop("settings", {}))
        return self.track(Node(name=name, settings=settings, **kw))

    # -- checks ----------------------------------------------------------

    def json_records(self, node):
        """Every line of the node's log parsed: each must be one JSON object
        with exactly ts, level, component and msg, in valid UTF-8."""
        records = []
        for line in log_lines(node):
            try:
                rec = json.loads(line.decode("utf-8"))
            except ValueError as e:
                self.fail("not a json record (%s): %r" % (e, line[:300]))
            self.assertIsInstance(rec, dict, line)
            self.assertEqual(sorted(rec), ["component", "level", "msg", "ts"], line)
            self.assertNotEqual(rec["msg"], "forged", "a forged record: %r" % line)
            records.append(rec)
        self.assertTrue(records, "the node wrote nothing")
        return records

    def text_records(self, node):
        """Every line of the node's log: each must start like a record, hold
        no control character and be valid UTF-8."""
        lines = log_lines(node)
        self.assertTrue(lines, "the node wrote nothing")
        for line in lines:
            text = line.decode("utf-8")  # raises on invalid UTF-8
            self.assertRegex(text, TEXT_RECORD)
            self.assertFalse(re.search(r"[\x00-\x1f\x7f]", text), "control character: %r" % line)
        return [line.decode() for line in lines]

    def records(self, node, fmt):
        if fmt == "json":
            return [r["msg"] for r in self.json_records(node)]
        return self.text_records(node)

    # -- (1) request paths --------------------------------------------------

    def paths_stay_in_one_record(self, fmt):
        n = self.node("loginj-path-" + fmt, fmt)
        n.start_ready()
        for path in ("/users/%0d%0a%7b%22level%22%3a%22error%22%7d",
                     "/users/%0d%0a" + FORGED.replace('"', "%22").replace("{", "%7b")
                     .replace("}", "%7d").replace(":", "%3a").replace(",", "%2c"),
                     "/nowhere/%0a%1b%5b2J%ff%c0%80",
                     "/users/a%1b%5b31mred%7f"):
            status, _, body = n.request("GET", path)
            self.assertIn(status, (400, 404), path)
            self.assertNotIn(b"\n", body)
        for raw_path in (b"/users/\x1b[2J", b"/users/a\xff\xc0\x80", b"/users/\x7f"):
            try:
                n.raw(b"GET " + raw_path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            except OSError:
                pass  # refused outright is fine: only the log matters here
        # a request after them all is still served and logged
        self.assertEqual(n.request("GET", "/users")[0], 200)
        self.assertEqual(n.stop(), 0)
        msgs = self.records(n, fmt)
        self.assertTrue(any("GET /users 200" in m for m in msgs), msgs[-5:])

    def test_paths_json(self):
        self.paths_stay_in_one_record("json")

    def test_paths_text(self):
        self.paths_stay_in_one_record("text")

    # -- (2) a KV key (and value) under the node's prefix -----------------

    def kv_key_stays_in_one_record(self, fmt):
        name = "loginj-kv-" + fmt
        n = self.node(name, fmt)
        n.start_ready()
        key = "config/%s/log/level\n%s\n" % (name, FORGED)
        kv_put_raw_key(key, "debug")
        kv_put_raw_key("config/%s/x\r\n\x1b[2J\u00ff" % name, "1")
        CONSUL.kv_put("config/%s/server/threads" % name, "4\r\n" + FORGED)

        def warned():
            # the two keys that name no setting share one line
            return [m for m in self.records(n, fmt)
                    if "kv key" in m or "2 keys under" in m]

        wait_until(lambda: len(warned()) >= 2, timeout=10,
                   what="the three kv keys reported")
        self.assertEqual(n.stop(), 0)
        msgs = self.records(n, fmt)
        mine = [m for m in msgs if "'config/%s/log/level" % name in m]
        self.assertTrue(mine, msgs)
        for m in mine:
            # the key's newline is shown as a backslash and an n, inside
            # the one record
            self.assertIn("log/level\\n{", m)
        self.assertTrue(any("x\\r\\n" in m and "2J" in m for m in msgs), msgs)
        # a refused value is named, never repeated
        self.assertTrue(any("kv key 'config/%s/server/threads'" % name in m for m in msgs))
        self.assertFalse(any('"forged"' in m and "threads" in m for m in msgs))

    def test_kv_key_json(self):
        self.kv_key_stays_in_one_record("json")

    def test_kv_key_text(self):
        self.kv_key_stays_in_one_record("text")

    # -- a Consul service's ID and address ---------------------------------

    def test_consul_instance_fields_json(self):
        """An instance of a followed service with CR/LF in its ID and its
        address is refused, in one record each."""
        n = self.node("loginj-orders", "json",
                      settings={"service.modules": ["orders"]})
        n.start_ready()
        bad_id = "users-evil\n" + FORGED
        CONSUL.register_service({"ID": bad_id, "Name": "users",
                                 "Address": "10.0.0.1\r\nHost: evil", "Port": 80})
        try:
            # the node follows a peer from its first use
            n.request("GET", "/peers/users")
            wait_until(lambda: any("instance refused" in m for m in
                                   [r["msg"] for r in self.json_records(n)]),
                       timeout=10, what="the refused instance logged")
        finally:
            try:
                CONSUL.deregister_service(bad_id)
            except harness.ConsulError:
                pass  # the module's own agent: nothing else follows users
        self.assertEqual(n.stop(), 0)
        refused = [r["msg"] for r in self.json_records(n) if "instance refused" in r["msg"]]
        self.assertTrue(any("users-evil\\n{" in m for m in refused), refused)

    # -- (3) CONSUL_HTTP_ADDR ----------------------------------------------

    def consul_addr_refused(self, fmt):
        bad = "http://127.0.0.1:%d\r\n%s" % (CONSUL.http_port, FORGED)
        n = self.node("loginj-addr-" + fmt, fmt, env={"CONSUL_HTTP_ADDR": bad})
        code, out, err = n.run_cli(["--check-config"])
        self.assertEqual(code, 2, err)
        self.assertEqual(err, "environment variable 'CONSUL_HTTP_ADDR': expected an http:// "
                              "or https:// url or host:port\n")
        self.assertEqual(out, "")
        # the node itself refuses to start, with the same single line
        n.start()
        self.assertEqual(n.wait_exit(timeout=15), 2)
        lines = [line.decode("utf-8") for line in log_lines(n)
                 if not line.startswith(b"--- ") and line]
        self.assertIn("environment variable 'CONSUL_HTTP_ADDR': expected an http:// or "
                      "https:// url or host:port", lines)
        for line in lines:
            self.assertNotIn("forged", line)
            if line.startswith("{"):
                json.loads(line)

    def test_consul_addr_json(self):
        self.consul_addr_refused("json")

    def test_consul_addr_text(self):
        self.consul_addr_refused("text")
