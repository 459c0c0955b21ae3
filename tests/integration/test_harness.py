"""Tests of the harness itself against a real `consul agent -dev`: useful
before the meshnode binary exists, and the baseline for its timings."""

import http.server
import os
import socket
import threading
import time
import unittest

import pytest

import harness
from harness import Consul, free_port, wait_until

# Tests of the harness and of Consul alone: not counted as meshnode's.
pytestmark = pytest.mark.harness


class ConsulAgentTest(unittest.TestCase):
    consul = None

    @classmethod
    def setUpClass(cls):
        cls.consul = Consul()

    @classmethod
    def tearDownClass(cls):
        if cls.consul:
            cls.consul.stop()

    def test_free_port_is_bindable(self):
        p = free_port()
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        finally:
            s.close()

    def test_starts_on_free_ports_and_is_leader(self):
        c = self.consul
        self.assertTrue(c.running())
        self.assertEqual(c.addr, "http://127.0.0.1:%d" % c.http_port)
        ports = set(c.ports.values())
        self.assertEqual(len(ports), len(c.ports), "ports must be distinct: %r" % c.ports)
        self.assertNotIn(8500, ports)
        self.assertTrue(c.leader(), "no leader")
        self.assertEqual(c.leader(), "127.0.0.1:%d" % c.ports["server"])
        me = c.get("/v1/agent/self")
        self.assertEqual(me["Config"]["NodeName"], "meshnode-test")
        self.assertTrue(me["Config"]["Server"])
        dbg = me["DebugConfig"]
        self.assertTrue(dbg["DevMode"])
        self.assertEqual((dbg["DNSPort"], dbg["GRPCPort"], dbg["HTTPSPort"]), (-1, -1, -1))
        self.assertEqual((dbg["HTTPPort"], dbg["SerfPortLAN"], dbg["SerfPortWAN"], dbg["ServerPort"]),
                         (c.ports["http"], c.ports["serf_lan"], c.ports["serf_wan"], c.ports["server"]))

    def test_kv_round_trip(self):
        c = self.consul
        self.assertIsNone(c.kv_get("itest/harness/missing"))
        c.kv_put("itest/harness/log/level", "debug")
        self.assertEqual(c.kv_get("itest/harness/log/level"), "debug")
        c.kv_put("itest/harness/log/level", "warn")
        self.assertEqual(c.kv_get("itest/harness/log/level"), "warn")
        c.kv_delete("itest/harness/log/level")
        self.assertIsNone(c.kv_get("itest/harness/log/level"))

    def test_registered_ttl_service_turns_passing(self):
        c = self.consul
        c.register_service({
            "ID": "harness-ttl-1", "Name": "harness-ttl", "Tags": ["itest"],
            "Address": "127.0.0.1", "Port": free_port(), "Meta": {"version": "0"},
            "Check": {"TTL": "30s", "DeregisterCriticalServiceAfter": "1m"},
        })
        try:
            svcs = c.service_by_name("harness-ttl")
            self.assertEqual([s["ID"] for s in svcs], ["harness-ttl-1"])
            self.assertEqual(svcs[0]["Meta"], {"version": "0"})
            # A TTL check starts critical: not in the passing view yet.
            self.assertEqual(c.health_service("harness-ttl", passing=True), [])
            self.assertEqual(len(c.health_service("harness-ttl", passing=False)), 1)
            self.assertIn("harness-ttl", c.catalog_services())
            c.pass_ttl("service:harness-ttl-1")
            entries = wait_until(lambda: c.health_service("harness-ttl", passing=True),
                                 timeout=5, what="harness-ttl passing")
            self.assertEqual(entries[0]["Service"]["ID"], "harness-ttl-1")
            self.assertEqual(entries[0]["Service"]["Port"], svcs[0]["Port"])
        finally:
            c.deregister_service("harness-ttl-1")
        self.assertEqual(c.service_by_name("harness-ttl"), [])

    def test_http_check_turns_passing(self):
        """An HTTP check like meshnode's (interval 1 s) against a local
        endpoint: measures how long Consul takes to call it passing."""
        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b'{"status":"ok"}'
                self.send_response(200 if self.path == "/health" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
        port = srv.server_address[1]
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        c = self.consul
        try:
            t0 = time.monotonic()
            c.register_service({
                "ID": "harness-http-1", "Name": "harness-http", "Address": "127.0.0.1",
                "Port": port,
                "Check": {"HTTP": "http://127.0.0.1:%d/health" % port, "Interval": "1s",
                          "Timeout": "1s", "DeregisterCriticalServiceAfter": "1m"},
            })
            wait_until(lambda: c.health_service("harness-http", passing=True),
                       timeout=10, interval=0.05, what="harness-http passing")
            self.__class__.http_check_seconds = time.monotonic() - t0
            checks = [ch for ch in c.agent_checks().values()
                      if ch.get("ServiceID") == "harness-http-1"]
            self.assertEqual(len(checks), 1)
            self.assertEqual(checks[0]["Status"], "passing")
        finally:
            c.deregister_service("harness-http-1")
            srv.shutdown()
            srv.server_close()


class ConsulLifecycleTest(unittest.TestCase):
    def test_stop_leaves_no_process(self):
        c = Consul()
        pid = c.pid
        self.assertTrue(harness.pid_alive(pid))
        self.assertIn(pid, harness.PROCS)
        c.stop()
        self.assertFalse(harness.pid_alive(pid), "consul pid %d still alive" % pid)
        self.assertFalse(os.path.exists("/proc/%d" % pid))
        self.assertNotIn(pid, harness.PROCS)
        self.assertFalse(harness.port_open(c.http_port))

    def test_kill9_and_restart_on_same_ports(self):
        c = Consul()
        try:
            ports = dict(c.ports)
            c.kv_put("itest/restart", "1")
            pid = c.pid
            c.kill9()
            self.assertFalse(harness.pid_alive(pid))
            c.start()
            self.assertEqual(c.ports, ports)
            self.assertNotEqual(c.pid, pid)
            self.assertTrue(c.leader())
            # -dev keeps everything in memory: a restart starts empty.
            self.assertIsNone(c.kv_get("itest/restart"))
        finally:
            c.stop()

    def test_start_on_chosen_http_port(self):
        port = free_port()
        c = Consul(http_port=port)
        try:
            self.assertEqual(c.http_port, port)
            self.assertEqual(c.addr, "http://127.0.0.1:%d" % port)
        finally:
            c.stop()

    def test_wait_until_is_bounded(self):
        t0 = time.monotonic()
        with self.assertRaises(harness.WaitTimeout):
            wait_until(lambda: False, timeout=0.3, interval=0.05)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(wait_until(lambda: 7, timeout=1), 7)


class HelpersTest(unittest.TestCase):
    def test_libconfig_text(self):
        text = harness.libconfig_text({
            "service.name": "users", "service.port": 18080, "service.tags": ["a", "b"],
            "consul.required": False, "log.level": 'de"bug', "peers.users.retries": 3,
            "database.path": None,
        })
        self.assertIn('service = {\n  name = "users";\n  port = 18080;\n  tags = [ "a", "b" ];\n};\n', text)
        self.assertIn("consul = {\n  required = false;\n};\n", text)
        self.assertIn('level = "de\\"bug";', text)
        self.assertIn("peers = {\n  users = {\n    retries = 3;\n  };\n};\n", text)
        self.assertNotIn("database", text)

    def test_config_accessor_shapes(self):
        e = {"value": "debug", "source": "kv"}
        for doc in ({"log.level": e}, {"settings": {"log.level": e}},
                    {"settings": [dict(e, name="log.level")]}, {"log": {"level": e}}):
            self.assertEqual(harness.config_value(doc, "log.level"), "debug")
            self.assertEqual(harness.config_source(doc, "log.level"), "kv")
        with self.assertRaises(KeyError):
            harness.config_entry({"settings": {}}, "log.level")

    def test_prometheus_syntax_check(self):
        good = ('# HELP http_requests_total Requests.\n'
                '# TYPE http_requests_total counter\n'
                'http_requests_total{method="GET",endpoint="/users/{id}",status="200"} 3\n'
                'http_request_duration_seconds_bucket{method="GET",le="+Inf"} 3\n'
                'http_request_duration_seconds_sum{method="GET"} 1.5e-3\n'
                'process_start_time_seconds 1.7e9\n'
                'x{a="q\\"uote\\\\"} NaN 1700000000000\n')
        self.assertEqual(harness.prom_bad_lines(good), [])
        for bad in ('http_requests_total{method=GET} 1', 'http requests 1',
                    'x{a="1"}', 'x{a="1"} one', '# TYPE x countr', '1x 2'):
            self.assertEqual(harness.prom_bad_lines(bad), [bad], bad)
        s = harness.prom_samples(good, "http_request_duration_seconds_bucket")
        self.assertEqual(s, [({"method": "GET", "le": "+Inf"}, 3.0)])

    def test_delay_relay_holds_answers_and_counts_requests(self):
        class Echo(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        relay = harness.DelayRelay(srv.server_address[1], delay=0.5)
        try:
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as s:
                s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /bc HTTP/1.1\r\nHost: x\r\n\r\n")
                resps, rest, _ = harness.read_responses(s, 2, timeout=3)
                self.assertEqual([(st, body) for st, _, body, _ in resps],
                                 [(200, b"/a"), (200, b"/bc")])
                self.assertEqual(rest, b"")
                self.assertEqual(harness.wait_eof(s, 0.1), "open")
            took = time.monotonic() - t0
            self.assertGreaterEqual(took, 0.5)
            self.assertLess(took, 2.5)
            self.assertEqual(relay.requests, 2)
            self.assertEqual(relay.connections, 1)
        finally:
            relay.stop()
            srv.shutdown()
            srv.server_close()
