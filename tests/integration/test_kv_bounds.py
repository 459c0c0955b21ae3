"""A bounded KV side against a real agent (issue 9): a listing over
consul.kv_max_keys or consul.kv_max_bytes is refused whole with one warning,
the last good configuration stays in force, the refusal is counted and shown
by meshnode_config_kv_listing_refused{prefix}, and the listing is accepted
again once the flood is gone; keys that name no setting are one warning with
a count. The floods are written with Consul's /v1/txn (at most 64 operations
per transaction in Consul 1.8.7), a few transactions at a time."""

import base64
import json
import threading
import time

import harness
from harness import Node, config_entry, requires_meshnode, wait_until


CONSUL = None  # the module's agent while its tests run (conftest.py)

TXN_OPS = 64          # Consul's limit per transaction
TXN_THREADS = 4       # transactions in flight at once
REFUSED = "meshnode_config_kv_listing_refused"
RELOADS = "meshnode_config_reloads_total"


def kv_txn_set(pairs):
    """Writes [(key, bytes value)] with transactions of TXN_OPS, TXN_THREADS
    at a time; raises on the first refused transaction."""
    batches = [pairs[i:i + TXN_OPS] for i in range(0, len(pairs), TXN_OPS)]
    errors = []

    def worker(mine):
        for batch in mine:
            ops = [{"KV": {"Verb": "set", "Key": k,
                           "Value": base64.b64encode(v).decode()}} for k, v in batch]
            try:
                status, _, data = CONSUL.request("PUT", "/v1/txn", body=ops, timeout=30)
            except OSError as e:
                errors.append(repr(e))
                return
            if status != 200:
                errors.append("txn: %d %r" % (status, data[:200]))
                return

    threads = [threading.Thread(target=worker, args=(batches[k::TXN_THREADS],), daemon=True)
               for k in range(TXN_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors or any(t.is_alive() for t in threads):
        raise AssertionError("kv flood not written: %s" % (errors[:3] or "timed out"))


def flood(prefix, n, value=b"x"):
    kv_txn_set([("%sflood/k%06d" % (prefix, i), value) for i in range(n)])


def value_of(node, name):
    try:
        return config_entry(node.config(), name)["value"]
    except KeyError:
        return None


def refusals(node, prefix):
    return node.log_text().count("kv listing of '%s' refused" % prefix)


@requires_meshnode
class KvBoundsTest(harness.ProcessesTestCase):
    def node(self, name, env=None, start=True):
        n = self.track(Node(name=name, consul=CONSUL, env=env))
        if start:
            n.start_ready()
        return n

    def kv(self, node, dotted, value):
        CONSUL.kv_put("config/%s/%s" % (node.name, dotted.replace(".", "/")), value)

    def gauge(self, node):
        return node.metric(REFUSED, prefix="config/%s/" % node.name)

    def test_key_flood_refused_then_accepted_again(self):
        n = self.node("kvb-keys")
        prefix = "config/kvb-keys/"
        self.kv(n, "features.before", "true")
        wait_until(lambda: value_of(n, "features.before") is True, timeout=5, interval=0.02,
                   what="features.before set before the flood")
        self.assertEqual(self.gauge(n), 0)
        self.assertEqual(n.metric(REFUSED, prefix="config/shared/"), 0)
        rejected = n.metric(RELOADS, result="rejected")

        t0 = time.monotonic()
        flood(prefix, 20000)
        written = time.monotonic() - t0
        wait_until(lambda: self.gauge(n) == 1, timeout=10, interval=0.05,
                   what="the refusal in %s" % REFUSED)
        time.sleep(1.0)  # whatever the watch still had to read of the flood

        # the last good configuration stays, /config stays small
        self.assertIs(value_of(n, "features.before"), True)
        self.assertEqual(config_entry(n.config(), "features.before")["source"], "kv")
        status, _, body = n.request("GET", "/config")
        self.assertEqual(status, 200)
        self.assertLess(len(body), 32 * 1024)
        self.assertEqual(n.request("GET", "/health")[0], 200)
        # one warning, naming the count and the setting
        self.assertEqual(refusals(n, prefix), 1, "flood written in %.1fs" % written)
        self.assertRegex(n.log_text(), r"kv listing of 'config/kvb-keys/' refused: \d+ keys, "
                                       r"more than consul.kv_max_keys \(10000\); the "
                                       r"configuration in force stays")
        counted = n.metric(RELOADS, result="rejected")
        self.assertGreater(counted, rejected)

        # more keys while refused: neither logged nor counted again, and a
        # value written meanwhile waits with the rest of the listing
        self.kv(n, "features.after", "true")
        flood("%smore/" % prefix, 100)
        time.sleep(1.0)
        self.assertIsNone(value_of(n, "features.after"))
        self.assertEqual(refusals(n, prefix), 1)
        self.assertEqual(n.metric(RELOADS, result="rejected"), counted)
        self.assertEqual(self.gauge(n), 1)

        # the flood goes: the listing is accepted again, with the new value
        CONSUL.kv_delete(prefix + "flood/", recurse=True)
        CONSUL.kv_delete(prefix + "more/", recurse=True)
        wait_until(lambda: value_of(n, "features.after") is True, timeout=5, interval=0.02,
                   what="features.after once the flood is gone")
        self.assertIs(value_of(n, "features.before"), True)
        self.assertEqual(self.gauge(n), 0)
        self.assertIn("kv listing of 'config/kvb-keys/' accepted again", n.log_text())
        self.assertEqual(n.stop(), 0)

    def test_bytes_cap_refuses_without_reading_again(self):
        n = self.node("kvb-bytes", env={"MESHNODE_CONSUL_KV_MAX_BYTES": "4096"})
        prefix = "config/kvb-bytes/"
        self.assertEqual(value_of(n, "consul.kv_max_bytes"), 4096)
        self.kv(n, "log.level", "warn")
        wait_until(lambda: value_of(n, "log.level") == "warn", timeout=5, interval=0.02,
                   what="log.level warn")

        big = [("%sblob/b%d" % (prefix, i), b"v" * 2048) for i in range(3)]
        kv_txn_set(big)
        wait_until(lambda: self.gauge(n) == 1, timeout=5, interval=0.05,
                   what="the refusal in %s" % REFUSED)
        self.assertEqual(value_of(n, "log.level"), "warn")
        self.assertIn("kv listing of 'config/kvb-bytes/' refused: larger than "
                      "consul.kv_max_bytes (4096 bytes); the configuration in force stays",
                      n.log_text())
        # an answer over the cap is an answer at its index: the watch blocks
        # from it instead of reading the listing again in a backoff loop
        calls = n.metric("meshnode_consul_requests_total", op="kv_watch")
        time.sleep(2.0)
        self.assertLessEqual(n.metric("meshnode_consul_requests_total", op="kv_watch"),
                             calls + 1)
        self.assertEqual(refusals(n, prefix), 1)
        self.assertNotIn("watch of /v1/kv/config/kvb-bytes/", n.log_text())

        CONSUL.kv_delete(prefix + "blob/", recurse=True)
        wait_until(lambda: self.gauge(n) == 0, timeout=5, interval=0.05,
                   what="the listing accepted again")
        self.kv(n, "log.level", "error")
        wait_until(lambda: value_of(n, "log.level") == "error", timeout=5, interval=0.02,
                   what="a new value once the listing fits")
        self.assertEqual(n.stop(), 0)

    def test_over_the_cap_at_startup(self):
        prefix = "config/kvb-start/"
        CONSUL.kv_put(prefix + "log/level", "warn")
        kv_txn_set([("%sblob/b%d" % (prefix, i), b"v" * 2048) for i in range(3)])
        n = self.node("kvb-start", env={"MESHNODE_CONSUL_KV_MAX_BYTES": "4096"})
        # without the prefix's KV layer, with the warning and the gauge
        self.assertEqual(config_entry(n.config(), "log.level")["source"], "file")
        self.assertIn("kv listing of 'config/kvb-start/' refused: larger than "
                      "consul.kv_max_bytes (4096 bytes); starting without the keys of this "
                      "prefix", n.log_text())
        self.assertEqual(self.gauge(n), 1)
        # --check-config reports it and fails
        code, _, err = n.run_cli(["--check-config"])
        self.assertEqual(code, 2, err)
        self.assertIn("kv listing of 'config/kvb-start/' refused", err)

        CONSUL.kv_delete(prefix + "blob/", recurse=True)
        wait_until(lambda: value_of(n, "log.level") == "warn", timeout=5, interval=0.02,
                   what="the prefix's keys once it fits")
        self.assertEqual(self.gauge(n), 0)
        self.assertEqual(n.stop(), 0)

    def test_unknown_keys_are_one_warning(self):
        n = self.node("kvb-unknown")
        prefix = "config/kvb-unknown/"
        kv_txn_set([("%sjunk/k%02d" % (prefix, i), b"1") for i in range(50)])

        def lines():  # the "(still)" lines of later reloads are debug
            return [line for line in n.log_text().splitlines()
                    if "name no setting" in line and '"level":"warn"' in line]

        wait_until(lambda: lines(), timeout=5, interval=0.05, what="the unknown keys reported")
        [line] = lines()
        self.assertIn("kv: 50 keys under 'config/kvb-unknown/' name no setting and are "
                      "ignored (e.g. 'config/kvb-unknown/junk/k00', "
                      "'config/kvb-unknown/junk/k01', 'config/kvb-unknown/junk/k02', ...)",
                      line)
        self.assertNotIn("unknown setting", n.log_text())
        # a reload that gives the same line does not log it again
        self.kv(n, "log.level", "warn")
        wait_until(lambda: value_of(n, "log.level") == "warn", timeout=5, interval=0.02,
                   what="log.level warn")
        self.assertEqual(len(lines()), 1)
        self.assertGreater(json.loads(n.request("GET", "/config")[2])["kv_index"], 0)
        self.assertEqual(n.stop(), 0)
