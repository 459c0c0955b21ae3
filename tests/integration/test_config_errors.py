"""Errors that say what happened, and a /config that stays small (issue 21,
point 7), against a real agent: a secret from the environment ending in a
newline is trimmed (as Consul's CLI trims a token file) and a line break
inside a token is refused with exit 2 by --check-config and the start
alike; an @included file's content never appears in a message; GET /config
is a page, so 9,990 peers.* keys in KV are not megabytes per request."""

import base64
import json
import threading
import time

import harness
from harness import Node, requires_meshnode, wait_until


CONSUL = None  # the module's agent, while its tests run
harness.share_consul(globals())

TXN_OPS = 64  # Consul's limit per transaction


def kv_txn_set(pairs, threads=4):
    batches = [pairs[i:i + TXN_OPS] for i in range(0, len(pairs), TXN_OPS)]
    errors = []

    def worker(mine):
        for batch in mine:
            ops = [{"KV": {"Verb": "set", "Key": k,
                           "Value": base64.b64encode(v.encode()).decode()}} for k, v in batch]
            status, _, data = CONSUL.request("PUT", "/v1/txn", body=ops, timeout=30)
            if status != 200:
                errors.append("txn: %d %r" % (status, data[:200]))
                return

    ts = [threading.Thread(target=worker, args=(batches[k::threads],), daemon=True)
          for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    if errors or any(t.is_alive() for t in ts):
        raise AssertionError("kv not written: %s" % (errors[:3] or "timed out"))


@requires_meshnode
class ConfigErrorsTest(harness.ProcessesTestCase):
    def node(self, name, **kw):
        kw.setdefault("settings", {})
        kw["settings"].setdefault("log.format", "text")
        return self.track(Node(name=name, **kw))

    def test_token_with_a_trailing_newline_is_trimmed(self):
        # the dev agent has no ACLs: any token is accepted, so the node
        # runs exactly when the token reaches a header at all
        n = self.node("tok-nl", consul=CONSUL, env={"CONSUL_HTTP_TOKEN": "5e1f-token\n",
                                                   "DB_PASSWORD": "pw\r\n"})
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 0, out + err)
        n.start_ready()
        wait_until(lambda: n.get_json("/ready").get("consul") == "registered", timeout=10,
                   what="registered with the trimmed token")
        self.assertEqual(n.stop(), 0)

    def test_token_with_a_line_break_inside_is_exit_2_in_both(self):
        n = self.node("tok-in", consul=CONSUL, env={"CONSUL_HTTP_TOKEN": "5e1f\ntoken"})
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 2, out + err)
        want = "environment variable 'CONSUL_HTTP_TOKEN': expected no control characters"
        self.assertIn(want, err)
        self.assertNotIn("5e1f", out + err)
        n.start()
        self.assertEqual(n.wait_exit(timeout=10), 2)
        self.assertIn(want, n.log_text())
        self.assertNotIn("5e1f", n.log_text())

    def test_included_file_content_never_shown(self):
        n = self.node("inc-secret")
        secret = n.dir + "/shadow"
        with open(secret, "w") as f:
            f.write("root:$6$s3cr3tHash:19000:0:99999:7:::\n")
        with open(n.config_path, "a") as f:
            f.write('@include "%s"\n' % secret)
        rc, out, err = n.run_cli(["--check-config"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn("%s:1: syntax error" % secret, err)
        n.start()
        self.assertEqual(n.wait_exit(timeout=10), 2)
        for text in (out, err, n.log_text()):
            self.assertNotIn("s3cr3t", text)
            self.assertNotIn("root:", text)

    def test_config_is_a_page(self):
        n = self.node("cfg-page", consul=CONSUL)
        n.start_ready()
        # one key for each of 9,990 peers: every peer brings all its
        # peers.<name>.* settings into the configuration
        kv_txn_set([("config/cfg-page/peers/p%04d/timeout_ms" % i, "900")
                    for i in range(9990)])

        # the transactions commit in any order (four writers): wait for
        # every peer's settings, not only the last one written
        def all_peers_in():
            each = n.get_json("/config?prefix=peers.p0000.&limit=1")["total"]
            every = n.get_json("/config?prefix=peers.p&limit=1")["total"]
            return each > 0 and every == 9990 * each
        wait_until(all_peers_in, timeout=60, interval=0.5,
                   what="the 9,990 peers.* keys in force")
        t0 = time.monotonic()
        status, _, body = n.request("GET", "/config", timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(status, 200)
        doc = json.loads(body)
        print("\nGET /config with 9,990 peers.* keys: %d bytes in %.3f s, total %d"
              % (len(body), took, doc["total"]))
        self.assertLess(len(body), 256 << 10)
        self.assertEqual(len(doc["settings"]), 200)
        self.assertEqual(doc["next_offset"], 200)
        self.assertGreater(doc["total"], 9990)
        # every setting is there, page by page, and by prefix
        seen, offset = set(), 0
        while offset is not None:
            page = n.get_json("/config?limit=1000&offset=%d" % offset)
            self.assertLessEqual(len(page["settings"]), 1000)
            seen.update(page["settings"])
            offset = page.get("next_offset")
        self.assertEqual(len(seen), doc["total"])
        self.assertTrue("peers.p9989.timeout_ms" in seen and "service.name" in seen)
        svc = n.get_json("/config?prefix=service.")
        self.assertEqual(svc["settings"]["service.name"]["value"], "cfg-page")
        self.assertNotIn("next_offset", svc)
        # a prefix too long to hold is refused, not taken for no prefix
        self.assertEqual(n.request("GET", "/config?prefix=" + "s" * 256)[0], 400)
        self.assertEqual(len(n.get_json("/config?prefix=" + "s" * 255)["settings"]), 0)
        self.assertEqual(n.request("GET", "/config?limit=1001")[0], 400)
        self.assertEqual(n.request("GET", "/config?limit=0")[0], 400)
