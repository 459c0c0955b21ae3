"""Reloads an operator can follow (issue 10, point 2), against a real agent:
the file is read at start and on SIGHUP only, so a half-edited file never
blocks a KV change and never goes live unsignalled; SIGHUP gives one reload
and no false errors; every reload logs what changed, one line per setting;
--check-config says what it read and fails on a key that names no setting."""

import re
import signal
import time

import harness
from harness import Node, requires_meshnode, wait_until


CONSUL = None  # the module's agent, while its tests run
harness.share_consul(globals())

BROKEN = "server = {\n  threads = = 8;\n"


def value_of(node, name):
    return harness.config_value(node.config(), name)


def reload_lines(node):
    return [ln for ln in node.log_text().splitlines() if "configuration reloaded" in ln]


def kv_watch_failures(node):
    """kv_watch calls that did not end well, whatever the result label."""
    _, _, data = node.request("GET", "/metrics")
    return sum(v for lab, v in harness.prom_samples(data.decode(), "meshnode_consul_requests_total")
               if lab.get("op") == "kv_watch" and lab.get("result") != "ok")


@requires_meshnode
class ReloadTest(harness.ProcessesTestCase):
    def node(self, name, **kw):
        kw.setdefault("settings", {})
        kw["settings"].setdefault("log.format", "text")
        n = self.track(Node(name=name, consul=CONSUL, **kw))
        n.start_ready()
        return n

    def kv(self, node, dotted, value):
        CONSUL.kv_put("config/%s/%s" % (node.name, dotted.replace(".", "/")), value)

    def test_kv_change_with_a_broken_file_on_disk(self):
        n = self.node("reload-broken", settings={"log.level": "info"})
        with open(n.config_path, "w") as f:
            f.write(BROKEN)
        self.kv(n, "maintenance", "true")
        wait_until(lambda: value_of(n, "maintenance") is True, timeout=5, interval=0.05,
                   what="maintenance applied with a broken file on disk")
        self.assertNotIn("refused", n.log_text())
        # SIGHUP reads the broken file: refused, the configuration stays,
        # and the next KV change still applies
        n.signal(signal.SIGHUP)
        wait_until(lambda: "reload (SIGHUP) refused" in n.log_text(), timeout=5,
                   what="the SIGHUP refusal logged")
        self.assertRegex(n.log_text(), r"syntax error in 'threads = = 8;'")
        self.kv(n, "log.level", "warn")
        wait_until(lambda: value_of(n, "log.level") == "warn", timeout=5, interval=0.05,
                   what="log.level from KV after a refused SIGHUP")
        self.assertEqual(value_of(n, "maintenance"), True)

    def test_unsignalled_file_edit_does_not_go_live(self):
        n = self.node("reload-unsig", settings={"log.level": "info"})
        n.settings["log.level"] = "error"
        n.write_config()
        self.kv(n, "features.beta", "true")
        wait_until(lambda: harness.config_value(n.config(), "features.beta") is True,
                   timeout=5, interval=0.05, what="features.beta from KV")
        self.assertEqual(value_of(n, "log.level"), "info")
        n.signal(signal.SIGHUP)
        wait_until(lambda: value_of(n, "log.level") == "error", timeout=5, interval=0.05,
                   what="the file edit applied on SIGHUP")
        self.assertIn("log.level: info -> error (file)", n.log_text())

    def test_sighup_one_reload_no_false_errors(self):
        n = self.node("reload-hup")
        time.sleep(0.5)  # the watches are blocked in the agent now
        before_lines = len(reload_lines(n))
        before_failures = kv_watch_failures(n)
        n.signal(signal.SIGHUP)
        wait_until(lambda: len(reload_lines(n)) > before_lines, timeout=5,
                   what="a reload after SIGHUP")
        time.sleep(1.0)  # anything a disturbed watch would do, it does now
        lines = reload_lines(n)[before_lines:]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("(SIGHUP)", lines[0])
        self.assertEqual(kv_watch_failures(n), before_failures)
        # and the watches still follow KV
        self.kv(n, "log.level", "warn")
        wait_until(lambda: value_of(n, "log.level") == "warn", timeout=5, interval=0.05,
                   what="a KV change after SIGHUP")

    def test_each_reload_says_what_changed(self):
        n = self.node("reload-diff", settings={"log.level": "info"})
        self.kv(n, "log.level", "debug")
        wait_until(lambda: "log.level: info -> debug (kv)" in n.log_text(), timeout=5,
                   what="the change line of log.level")
        self.kv(n, "peers.users.timeout_ms", "1500")
        wait_until(lambda: "peers.users.timeout_ms: (unset) -> 1500 (kv)" in n.log_text(),
                   timeout=5, what="the change line of a new peer setting")
        CONSUL.kv_delete("config/%s/log/level" % n.name)
        wait_until(lambda: "log.level: debug -> info (file)" in n.log_text(), timeout=5,
                   what="the change line of a deleted key")
        # a new peer's other settings stay at their defaults: not listed
        self.assertNotIn("peers.users.lb:", n.log_text())
        summary = [ln for ln in reload_lines(n) if "1 setting changed" in ln]
        self.assertGreaterEqual(len(summary), 3, reload_lines(n))

    def test_secret_never_in_the_reload_log(self):
        # consul.token is static: a KV value waits for a restart, and the
        # log names the setting, never the value (the diff redacts secrets:
        # tests/unit/config/test_config.c)
        n = self.node("reload-secret")
        self.kv(n, "consul.token", "kv-secret-5555")
        wait_until(lambda: "'consul.token' changed" in n.log_text(), timeout=5,
                   what="consul.token reported as waiting for a restart")
        self.assertNotIn("kv-secret-5555", n.log_text())


@requires_meshnode
class CheckConfigTest(harness.ProcessesTestCase):
    def test_says_what_it_read(self):
        n = Node(name="check-read", consul=CONSUL)
        CONSUL.kv_put("config/check-read/log/level", "warn")
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"file .*meshnode\.cfg: \d+ keys")
        self.assertRegex(out, r"consul kv config/shared/ at %s: \d+ keys, index \d+"
                         % re.escape(CONSUL.addr))
        self.assertRegex(out, r"consul kv config/check-read/ at .*: 1 keys, index \d+")
        self.assertTrue(out.endswith("configuration ok\n"), out)

    def test_no_agent_only_reported(self):
        n = Node(name="check-noagent")  # an address where nothing listens
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"consul kv at \S+: not read")

    def test_unknown_file_key_named_without_an_agent(self):
        n = Node(name="check-typo-noagent", settings={"server.treads": 8})
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn("key 'server.treads': unknown setting, ignored", err)
        self.assertRegex(out, r"consul kv at \S+: not read")

    def test_unknown_file_key_warns_and_fails_the_check(self):
        n = Node(name="check-typo", consul=CONSUL, settings={"server.treads": 8})
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 2, out + err)
        self.assertRegex(err, r"meshnode\.cfg:\d+: key 'server\.treads': unknown setting, "
                         r"ignored \(did you mean 'server\.threads'\?\)")
        # the node itself starts, with the warning in its log
        self.track(n)
        n.start_ready()
        self.assertIn("did you mean 'server.threads'?", n.log_text())
