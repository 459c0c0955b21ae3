"""A real meshnode against a real Consul agent: registration and its HTTP
check, configuration from KV at startup, SIGTERM deregistration, starting
before the agent, and the command line. CONTRACT.md's "Consul registration",
"Configuration" and "Command line" sections."""

import json
import signal
import socket
import threading
import time
import unittest

import harness
from harness import Consul, Node, config_entry, requires_meshnode, wait_until

# One Consul agent for the module: every test uses its own service name.

FAKE_TOKEN = "itest-FAKE-TOKEN-5f0c2b7e-do-not-print"


CONSUL = None  # the module's agent while its tests run (conftest.py)


def wait_registered(consul, name, timeout=10.0):
    return wait_until(lambda: consul.service_by_name(name), timeout=timeout,
                      what="service %r in /v1/agent/services" % name)


def wait_passing(consul, name, timeout=15.0):
    return wait_until(lambda: consul.health_service(name, passing=True), timeout=timeout,
                      interval=0.1, what="service %r passing in /v1/health/service" % name)


@requires_meshnode
class RegistrationTest(harness.ProcessesTestCase):
    def node(self, name, **kw):
        return self.track(Node(name=name, consul=kw.pop("consul", CONSUL), **kw))

    def test_registers_and_http_check_turns_passing(self):
        n = self.node("reg-basic", settings={"service.tags": ["itest", "blue"]})
        t0 = time.monotonic()
        n.start_ready()
        [svc] = wait_registered(CONSUL, "reg-basic")
        self.assertEqual(svc["ID"], "reg-basic-%s-%d" % (socket.gethostname(), n.port))
        self.assertEqual(svc["Service"], "reg-basic")
        self.assertEqual(sorted(svc["Tags"]), ["blue", "itest"])
        self.assertEqual(svc["Address"], "127.0.0.1")
        self.assertEqual(svc["Port"], n.port)
        version = (svc.get("Meta") or {}).get("version")
        self.assertTrue(version, "Meta.version missing: %r" % svc)
        rc, out, _ = n.run_cli(["--version"])
        self.assertEqual(rc, 0)
        self.assertIn(version, out, "Meta.version %r differs from --version" % version)

        [entry] = wait_passing(CONSUL, "reg-basic")
        took = time.monotonic() - t0
        self.assertEqual(entry["Service"]["ID"], svc["ID"])
        [check] = [c for c in entry["Checks"] if c.get("ServiceID") == svc["ID"]]
        self.assertEqual(check["Type"], "http")
        self.assertEqual(check["Status"], "passing")
        # 1.8.7 leaves Definition empty; the output names the URL it polled.
        self.assertIn("127.0.0.1:%d/health" % n.port, check["Output"])
        print("  [reg-basic passing %.2fs after start]" % took)

    def test_explicit_service_id(self):
        n = self.node("reg-id", settings={"service.id": "reg-id-custom-7"})
        n.start_ready()
        [svc] = wait_registered(CONSUL, "reg-id")
        self.assertEqual(svc["ID"], "reg-id-custom-7")

    def test_kv_setting_in_effect_at_startup(self):
        CONSUL.kv_put("config/shared/log/level", "warn")
        CONSUL.kv_put("config/shared/log/format", "text")
        CONSUL.kv_put("config/reg-kv/log/level", "debug")
        try:
            n = self.node("reg-kv", settings={"log.level": "info"})
            n.start_ready()
            cfg = n.config()
            lvl = config_entry(cfg, "log.level")
            self.assertEqual((lvl.get("value"), lvl.get("source")), ("debug", "kv"), lvl)
            fmt = config_entry(cfg, "log.format")
            self.assertEqual((fmt.get("value"), fmt.get("source")), ("text", "kv"), fmt)
            name = config_entry(cfg, "service.name")
            self.assertEqual((name.get("value"), name.get("source")), ("reg-kv", "file"), name)
            dflt = config_entry(cfg, "server.read_timeout_ms")
            self.assertEqual((dflt.get("value"), dflt.get("source")), (5000, "default"), dflt)
        finally:
            CONSUL.kv_delete("config/shared/log/level")
            CONSUL.kv_delete("config/shared/log/format")
            CONSUL.kv_delete("config/reg-kv/log/level")

    def test_environment_beats_kv(self):
        CONSUL.kv_put("config/reg-env/log/level", "debug")
        try:
            n = self.node("reg-env", settings={"log.level": "info"}, env={"LOG_LEVEL": "error"})
            n.start_ready()
            lvl = config_entry(n.config(), "log.level")
            self.assertEqual((lvl.get("value"), lvl.get("source")), ("error", "env"), lvl)
        finally:
            CONSUL.kv_delete("config/reg-env/log/level")

    def test_sigterm_ready_503_deregisters_exit_0(self):
        n = self.node("reg-term")
        n.start_ready()
        wait_registered(CONSUL, "reg-term")
        status, _, _ = n.request("GET", "/ready")
        self.assertEqual(status, 200)

        seen = []
        stop = threading.Event()

        def poll_ready():
            while not stop.is_set():
                try:
                    seen.append(n.request("GET", "/ready", timeout=1)[0])
                except OSError:
                    seen.append(None)
                time.sleep(0.005)

        t = threading.Thread(target=poll_ready, daemon=True)
        t.start()
        time.sleep(0.05)
        n.signal(signal.SIGTERM)
        try:
            rc = n.wait_exit(15)
        finally:
            stop.set()
            t.join(5)
        self.assertEqual(rc, 0, "exit code after SIGTERM:\n" + harness.tail(n.log_path))
        # Deregistration happens before the exit; allow a moment anyway.
        wait_until(lambda: CONSUL.service_by_name("reg-term") == [], timeout=2,
                   what="reg-term gone from the agent")
        self.assertFalse(harness.port_open(n.port), "port still open after exit")
        # Best effort: the window between SIGTERM and exit may be too short
        # to catch; when /ready answered during it, it said 503.
        if 503 in seen:
            self.assertNotIn(200, seen[seen.index(503):], "/ready went 503 then 200: %r" % seen)
        print("  [/ready during shutdown: %s]" % sorted(set(map(str, seen))))

    def test_starts_without_agent_then_registers(self):
        port = harness.free_port()
        addr = "http://127.0.0.1:%d" % port
        n = self.node("reg-late", consul=None, consul_addr=addr)
        n.start_ready()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            status, _, data = n.request("GET", "/health", timeout=2)
            self.assertEqual(status, 200, data)
            self.assertTrue(n.running())
            time.sleep(0.2)
        status, _, _ = n.request("GET", "/ready")
        self.assertEqual(status, 200, "/ready needs the store, not the agent")
        late = Consul(http_port=port)
        try:
            t0 = time.monotonic()
            [svc] = wait_registered(late, "reg-late", timeout=15)
            self.assertEqual(svc["Port"], n.port)
            wait_passing(late, "reg-late", timeout=15)
            print("  [reg-late registered %.2fs after the agent came up]" % (time.monotonic() - t0))
            self.assertEqual(n.stop(), 0)
            self.assertEqual(late.service_by_name("reg-late"), [])
        finally:
            late.stop()
    def test_required_agent_missing_exits_1(self):
        # consul.required: the node waits up to 10 s for its registration,
        # then exits 1 (a runtime failure, not a configuration error).
        n = self.node("reg-required", consul=None,
                      consul_addr="http://127.0.0.1:%d" % harness.free_port(),
                      settings={"consul.required": True})
        n.start()
        t0 = time.monotonic()
        rc = n.wait_exit(25)
        took = time.monotonic() - t0
        self.assertEqual(rc, 1, harness.tail(n.log_path))
        self.assertGreater(took, 8, "gave up before trying for 10 s")
        self.assertIn("consul.required", n.log_text())


@requires_meshnode
class CommandLineTest(unittest.TestCase):
    def test_check_config_good_file(self):
        n = Node(name="cli-good", consul=CONSUL)
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 0, out + err)

    def test_check_config_bad_value(self):
        n = Node(name="cli-bad", consul=CONSUL)
        n.write_config(
            'service = {\n'            # 1
            '  name = "cli-bad";\n'     # 2
            '};\n'                      # 3
            'server = {\n'             # 4
            '  threads = "x";\n'        # 5
            '};\n'                      # 6
            'consul = {\n'             # 7
            '  address = "%s";\n'       # 8
            '};\n' % CONSUL.addr)
        rc, out, err = n.run_cli(["--check-config"])
        both = out + err
        self.assertEqual(rc, 2, both)
        self.assertRegex(both, r"meshnode\.cfg:5\b", "no file:line in %r" % both)
        self.assertIn("server.threads", both)

    def test_check_config_syntax_error(self):
        n = Node(name="cli-syntax", consul=CONSUL)
        n.write_config('service = {\n  name = "cli-syntax"\n  port = ;\n};\n')
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 2, out + err)
        self.assertRegex(out + err, r"meshnode\.cfg:\d+")

    def test_check_config_missing_file(self):
        n = Node(name="cli-missing", consul=CONSUL)
        rc, out, err = n.run_cli(["-c", n.dir + "/nope.cfg", "--check-config"], with_config=False)
        self.assertEqual(rc, 2, out + err)

    def test_print_config_redacts_token(self):
        n = Node(name="cli-print", consul=CONSUL, env={"CONSUL_HTTP_TOKEN": FAKE_TOKEN})
        rc, out, err = n.run_cli(["--print-config"])
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn(FAKE_TOKEN, out)
        self.assertNotIn(FAKE_TOKEN, err)
        doc = json.loads(out)
        tok = config_entry(doc, "consul.token")
        self.assertEqual(tok.get("value"), "<redacted>", tok)
        self.assertEqual(tok.get("source"), "env", tok)
        self.assertEqual(config_entry(doc, "service.name").get("source"), "file")
        self.assertEqual(config_entry(doc, "service.port").get("value"), n.port)
        self.assertEqual(config_entry(doc, "server.write_timeout_ms").get("source"), "default")

        # The running node: not in /config, not in its log.
        n.start_ready()
        try:
            status, _, body = n.request("GET", "/config")
            self.assertEqual(status, 200)
            self.assertNotIn(FAKE_TOKEN.encode(), body)
            self.assertEqual(config_value_or_none(json.loads(body), "consul.token"), "<redacted>")
            wait_registered(CONSUL, "cli-print")
        finally:
            n.stop()
        self.assertNotIn(FAKE_TOKEN, n.log_text(), "token in the node's log")

    def test_version(self):
        n = Node(name="cli-version")
        for flag in ("--version", "-V"):
            rc, out, err = n.run_cli([flag], with_config=False)
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, r"^meshnode \d+\.\d+\.\d+\n$", flag)

    def test_help(self):
        n = Node(name="cli-help")
        for flag in ("--help", "-h"):
            rc, out, err = n.run_cli([flag], with_config=False)
            self.assertEqual(rc, 0, err)
            self.assertIn("--config", out, flag)
            self.assertIn("-V, --version", out, flag)

    def test_unknown_flag_exits_2(self):
        n = Node(name="cli-unknown")
        rc, out, err = n.run_cli(["--no-such-flag"])
        self.assertEqual(rc, 2, out + err)
        self.assertTrue((out + err).strip(), "no usage message")


def config_value_or_none(doc, name):
    try:
        return config_entry(doc, name).get("value")
    except KeyError:
        return None
