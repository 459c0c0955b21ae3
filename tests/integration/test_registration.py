"""A real meshnode against a real Consul agent: registration and its HTTP
check, configuration from KV at startup, SIGTERM deregistration, starting
before the agent, and the command line. docs/consul.md's "Registration",
docs/configuration.md and its "Command line"."""

import http.server
import json
import os
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

        # The check starts passing (the node saw its /health answer); the
        # agent's own first run (within the 1 s interval) keeps it so.
        # 1.8.7 leaves Definition empty; the output names the URL it polled.
        # The agent's view: an output change alone reaches the catalog only
        # after check_update_interval (5 min).
        def polled():
            [c] = [c for c in CONSUL.agent_checks().values()
                   if c.get("ServiceID") == svc["ID"]]
            return c if c["Output"] else None
        check = wait_until(polled, timeout=5, what="the agent's first run of the check")
        self.assertEqual(check["Status"], "passing")
        self.assertIn("127.0.0.1:%d/health" % n.port, check["Output"])
        print("  [reg-basic passing %.2fs after start]" % took)

    @staticmethod
    def watch_checks(name, node, watch_for=2.0, need_passing=True, timeout=20.0):
        """Polls /v1/health/checks/<name> and ?passing as tightly as the
        agent answers, until the service's checks have been visible for
        `watch_for` seconds (and, with need_passing, ?passing listed it),
        bounded by `timeout`; fails at once when `node` exits. Returns
        (observations, first_passing): observations are (t, {CheckID:
        Status}) for every non-empty answer, first_passing the monotonic
        time ?passing first listed the service (None if never)."""
        seen, first_passing = [], None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.running():
                raise AssertionError("node exited:\n" + harness.tail(node.log_path))
            checks = CONSUL.get("/v1/health/checks/%s" % name) or []
            t = time.monotonic()
            if checks:
                seen.append((t, {c["CheckID"]: c["Status"] for c in checks}))
            if first_passing is None and CONSUL.health_service(name, passing=True):
                first_passing = time.monotonic()
            if seen and t - seen[0][0] >= watch_for and \
                    (first_passing is not None or not need_passing):
                break
            time.sleep(0.005)
        return seen, first_passing

    def test_check_passing_from_the_first_moment_it_is_seen(self):
        # Default check settings (10 s interval: the agent's first check
        # lands 0-10 s after registration) and default threads. The node
        # GETs its own /health before registering, so the check is
        # registered passing: never critical first.
        n = self.node("reg-atonce", settings={"consul.check_interval_ms": 10000,
                                              "consul.check_timeout_ms": 2000,
                                              "server.threads": None})
        t0 = time.monotonic()
        n.start()
        seen, first_passing = self.watch_checks("reg-atonce", n)
        self.assertTrue(seen, "the check never appeared:\n" + harness.tail(n.log_path))
        self.assertIsNotNone(first_passing, "never in ?passing")
        statuses = [st for _, obs in seen for st in obs.values()]
        self.assertEqual(set(statuses), {"passing"},
                         "the check was not passing from its first sight: %r" % seen[:5])
        self.assertIn("check passing", n.log_text())
        print("  [reg-atonce: check first seen %.3fs, in ?passing %.3fs after the process "
              "started; %d observations over %.1fs, all passing]"
              % (seen[0][0] - t0, first_passing - t0, len(seen), seen[-1][0] - seen[0][0]))

    def test_registered_again_passing_after_the_agent_lost_it(self):
        # The same running node, its listener up: a re-registration starts
        # passing too (10 s interval, so the agent's own check cannot be
        # what made it pass).
        n = self.node("reg-again", settings={"consul.check_interval_ms": 10000})
        n.start_ready()
        [svc] = wait_registered(CONSUL, "reg-again")
        wait_passing(CONSUL, "reg-again", timeout=5)
        CONSUL.deregister_service(svc["ID"])
        t0 = time.monotonic()
        wait_until(lambda: not CONSUL.get("/v1/health/checks/reg-again"), timeout=5,
                   interval=0.005, what="the check gone after deregistration")
        seen, first_passing = self.watch_checks("reg-again", n, watch_for=1.0)
        self.assertTrue(seen, harness.tail(n.log_path))
        statuses = [st for _, obs in seen for st in obs.values()]
        self.assertEqual(set(statuses), {"passing"}, "not passing at first sight: %r" % seen[:5])
        self.assertIn("registered it again (check passing)", n.log_text())
        print("  [reg-again: back and passing %.3fs after the deregistration]"
              % (first_passing - t0))

    def test_maintenance_at_start_never_passing(self):
        # maintenance = true in the file: the check starts critical and the
        # maintenance check follows, so ?passing never lists the service.
        # The agent runs an HTTP check first at a random point of its
        # interval: 10 s, so that its first run (which passes: /health is
        # 200) does not come before the test's first sight of the check
        # on a loaded machine (with 1 s it did, once).
        n = self.node("reg-maint", settings={"maintenance": True,
                                             "consul.check_interval_ms": 10000})
        n.start()
        seen, first_passing = self.watch_checks("reg-maint", n, watch_for=3.0,
                                                need_passing=False)
        self.assertTrue(seen, harness.tail(n.log_path))
        self.assertIsNone(first_passing, "in ?passing while in maintenance: %r" % seen[:5])
        first = seen[0][1]
        self.assertNotIn("passing", first.values(), "first sight: %r" % first)
        self.assertIn("_service_maintenance:%s" % n.get_json("/config")["settings"]
                      ["service.id"]["value"], seen[-1][1])

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
    def test_stop_during_registration_deregisters_without_a_warning(self):
        """A stop while the first register call is in flight cancels it;
        the PUT may have reached the agent, so the stop deregisters all the
        same, and the cancelled call is no failure (no warning). The agent
        here is a stand-in that never answers a register."""
        calls, got_register, release = [], threading.Event(), threading.Event()

        class Agent(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, body=b""):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                calls.append(("GET", self.path))
                self.answer(404)

            def do_PUT(self):
                calls.append(("PUT", self.path))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/v1/agent/service/register"):
                    got_register.set()
                    release.wait(20)  # the node gives up first
                    return
                self.answer(200)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        self.addCleanup(release.set)
        n = self.node("reg-cancel", consul=None,
                      consul_addr="http://127.0.0.1:%d" % server.server_address[1])
        n.start_ready()
        self.assertTrue(got_register.wait(10), "no register call: %r" % calls)
        t0 = time.monotonic()
        self.assertEqual(n.stop(), 0, harness.tail(n.log_path))
        self.assertLess(time.monotonic() - t0, 4.5, "the stop waited for the register call")
        self.assertTrue(any(m == "PUT" and p.startswith("/v1/agent/service/deregister/")
                            for m, p in calls), "no deregistration: %r" % calls)
        log = n.log_text()
        self.assertNotIn("registration at", log)
        self.assertNotIn("cannot deregister", log)

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

    def test_register_false_leaves_the_agent_definition(self):
        # consul.register = false: the service is defined on the agent, here
        # consul/services/users.json sent through the agent API with this
        # node's id, port and a short check interval.
        n = self.node("reg-agent", settings={"consul.register": False,
                                              "service.id": "reg-agent-1",
                                              "service.tags": ["from-node"]})
        with open(os.path.join(harness.REPO, "consul", "services", "users.json")) as f:
            svc = json.load(f)["service"]
        svc.update(id="reg-agent-1", name="reg-agent", port=n.port)
        svc["check"].update(http="http://127.0.0.1:%d/health" % n.port, interval="1s")
        CONSUL.register_service(svc)
        try:
            n.start_ready()
            [entry] = wait_passing(CONSUL, "reg-agent")
            self.assertEqual(entry["Service"]["ID"], "reg-agent-1")
            # Long enough for a registration to have happened (the node
            # registers as soon as it listens) and be seen in the catalog.
            time.sleep(1.5)
            catalog = CONSUL.get("/v1/catalog/service/reg-agent")
            self.assertEqual(len(catalog), 1, catalog)
            self.assertEqual(catalog[0]["ServiceTags"], svc["tags"],
                             "the node registered over the agent's definition")
            status, _, body = n.request("GET", "/ready")
            self.assertEqual(status, 200, body)
            ready = json.loads(body)
            self.assertNotIn("consul", ready, ready)
            self.assertEqual(n.metric("meshnode_consul_registered"), 0)
            self.assertEqual(n.metric("meshnode_consul_requests_total", op="register"), 0)
            self.assertEqual(n.log_text().count("consul.register is false"), 1)

            self.assertEqual(n.stop(), 0, harness.tail(n.log_path))
            self.assertNotIn("deregistered '", n.log_text())
            self.assertNotIn("cannot deregister", n.log_text())
            [left] = CONSUL.service_by_name("reg-agent")
            self.assertEqual(left["ID"], "reg-agent-1")
            self.assertEqual(len(CONSUL.get("/v1/catalog/service/reg-agent")), 1)
        finally:
            CONSUL.deregister_service("reg-agent-1")


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
