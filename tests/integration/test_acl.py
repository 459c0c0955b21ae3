"""A real agent with ACLs on and everything denied by default (the agent
configuration shipped in consul/acl-dev.hcl): with a valid token the node
registers and reads KV; with none, or a wrong one, it keeps serving, says so
in /ready and in a metric, and never prints the token."""

import json
import os
import time

import harness
from harness import Node, config_entry, requires_meshnode, wait_until

ACL_HCL = os.path.join(harness.REPO, "consul", "acl-dev.hcl")
MASTER = "meshnode-dev-master-token"
BOGUS = "itest-BOGUS-acl-token-7d1e-do-not-print"


class AclConsul(harness.Consul):
    """The harness's dev agent plus consul/acl-dev.hcl; the test's own calls
    to the agent carry the master token."""

    def _argv(self):
        return super()._argv() + ["-config-file", ACL_HCL]

    def request(self, method, path, body=None, headers=None, timeout=5.0):
        headers = dict(headers or {})
        headers.setdefault("X-Consul-Token", MASTER)
        return super().request(method, path, body, headers, timeout)


CONSUL = None  # the module's agent while its tests run (conftest.py)
CONSUL_FACTORY = AclConsul


def forbidden_count(node):
    return node.metric("meshnode_consul_requests_total", result="forbidden")


@requires_meshnode
class AclTest(harness.ProcessesTestCase):
    def node(self, name, env):
        return self.track(Node(name=name, consul_addr=CONSUL.addr, env=env))

    def test_valid_token_registers_and_reads_kv(self):
        CONSUL.kv_put("config/acl-ok/log/level", "debug")
        n = self.node("acl-ok", {"CONSUL_HTTP_TOKEN": MASTER})
        n.start_ready()
        wait_until(lambda: CONSUL.service_by_name("acl-ok"), timeout=10,
                   what="acl-ok registered")
        lvl = config_entry(n.config(), "log.level")
        self.assertEqual((lvl.get("value"), lvl.get("source")), ("debug", "kv"), lvl)
        self.assertEqual(n.request("GET", "/ready")[0], 200)
        self.assertEqual(n.stop(), 0)
        self.assertEqual(CONSUL.service_by_name("acl-ok"), [], "not deregistered")

    def test_token_file_wins_over_token(self):
        path = os.path.join(harness.TMP_ROOT, "acl-token")
        with open(path, "w") as f:
            f.write(MASTER + "\n")
        n = self.node("acl-file", {"CONSUL_HTTP_TOKEN": BOGUS, "CONSUL_HTTP_TOKEN_FILE": path})
        n.start_ready()
        wait_until(lambda: CONSUL.service_by_name("acl-file"), timeout=10,
                   what="acl-file registered with the token from the file")
        self.assertNotIn(BOGUS, n.log_text())

    def test_no_token_keeps_serving_and_reports(self):
        n = self.node("acl-none", {})
        n.start_ready()
        def reported():
            status, _, data = n.request("GET", "/ready")
            body = json.loads(data)
            return body if body.get("consul") == "not registered" and body.get("consul_error") else None
        body = wait_until(reported, timeout=10, what="/ready reporting the refusal")
        self.assertIn("permission denied", body["consul_error"].lower())
        self.assertEqual(n.request("GET", "/ready")[0], 200, "the store answers: still ready")
        self.assertEqual(n.request("GET", "/health")[0], 200)
        self.assertGreaterEqual(forbidden_count(n), 1)
        self.assertEqual(CONSUL.service_by_name("acl-none"), [])
        # Backoff, not a flood: a handful of attempts and one warning line.
        time.sleep(2)
        warnings = [l for l in n.log_text().splitlines()
                    if "registration" in l and "failed" in l and "warn" in l]
        self.assertLessEqual(len(warnings), 2, "\n".join(warnings))

    def test_wrong_token_never_printed(self):
        n = self.node("acl-bogus", {"CONSUL_HTTP_TOKEN": BOGUS})
        n.start_ready()
        def refused():
            body = json.loads(n.request("GET", "/ready")[2])
            return body.get("consul_error")
        err = wait_until(refused, timeout=10, what="/ready reporting the bad token")
        self.assertIn("acl not found", err.lower())
        status, _, data = n.request("GET", "/config")
        self.assertEqual(status, 200)
        self.assertNotIn(BOGUS.encode(), data)
        self.assertEqual(config_entry(json.loads(data), "consul.token").get("value"), "<redacted>")
        self.assertEqual(n.stop(), 0)
        self.assertNotIn(BOGUS, n.log_text())
