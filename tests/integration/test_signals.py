"""Signals are always heard (issue 21, points 2 and 3), against a real agent:
a reload runs on its own thread with deadlines, so a config file replaced by
a FIFO or a stalled agent never delays SIGTERM; a file that is not a regular
file, over 1 MiB or with a line over 64 KiB is refused at start, on SIGHUP
and by --check-config before libconfig sees it; an agent that accepts and
never answers costs the start about a second and never holds a stop.

The bounds asserted are generous (a loaded machine); the figures measured
are printed (pytest -s)."""

import os
import signal
import socket
import threading
import time

import harness
from harness import DelayRelay, Node, requires_meshnode, wait_until


CONSUL = None  # the module's agent, while its tests run
harness.share_consul(globals())


class SilentServer:
    """Accepts TCP connections on a free loopback port and never answers
    (a fault injector: an agent that is hung). stop() closes everything."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.conns = []
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return "http://127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(c)

    def stop(self):
        self.stopped = True
        for s in [self.listener] + self.conns:
            try:
                s.close()
            except OSError:
                pass


def ready_status(node):
    try:
        return node.request("GET", "/ready", timeout=1.0)[0]
    except OSError:
        return None


@requires_meshnode
class SignalsTest(harness.ProcessesTestCase):
    def node(self, name, **kw):
        kw.setdefault("settings", {})
        kw["settings"].setdefault("log.format", "text")
        return self.track(Node(name=name, **kw))

    def fifo_instead_of_config(self, node):
        os.unlink(node.config_path)
        os.mkfifo(node.config_path)

    # -- a stuck reload never holds a stop ---------------------------------

    def test_sighup_with_a_fifo_then_sigterm(self):
        n = self.node("sig-fifo", consul=CONSUL)
        n.start_ready()
        self.fifo_instead_of_config(n)
        n.signal(signal.SIGHUP)
        wait_until(lambda: "not a regular file: refused" in n.log_text(), timeout=5,
                   what="the FIFO refused on SIGHUP")
        self.assertIn("the configuration in force stays", n.log_text())
        self.assertEqual(n.get_json("/health")["status"], "ok")
        t0 = time.monotonic()
        n.signal(signal.SIGTERM)
        rc = n.wait_exit(timeout=10)
        took = time.monotonic() - t0
        print("\nSIGTERM after a SIGHUP with a FIFO: exit %d in %.3f s" % (rc, took))
        self.assertEqual(rc, 0)
        self.assertLess(took, 2.0)

    def test_sighup_with_a_stalled_agent_then_sigterm(self):
        relay = DelayRelay(CONSUL.http_port, delay=0.0)
        self.addCleanup(relay.stop)
        n = self.node("sig-stall", consul_addr="http://127.0.0.1:%d" % relay.port)
        n.start_ready()
        wait_until(lambda: n.get_json("/ready", expect=200).get("consul") == "registered",
                   timeout=10, what="registered through the relay")
        relay.delay = 30.0  # every answer of the agent from now on
        n.signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP received" in n.log_text(), timeout=5, interval=0.02,
                   what="the SIGHUP taken")
        time.sleep(0.3)  # the reload is in its KV read now
        t0 = time.monotonic()
        n.signal(signal.SIGTERM)
        # the deregistration waits for the stalled agent, so the listener is
        # still up: /ready answers, and answers 503 (no answer at all would
        # mean the node stopped listening before it said it was not ready)
        seen = []

        def probe():
            seen.append(ready_status(n))
            return seen[-1] == 503

        wait_until(probe, timeout=5, interval=0.01,
                   what="/ready 503 after SIGTERM during a stalled reload")
        took_ready = time.monotonic() - t0
        again = ready_status(n)  # and keeps answering 503 while it drains
        rc = n.wait_exit(timeout=20)
        took_exit = time.monotonic() - t0
        print("\nSIGTERM during a reload on a stalled agent: /ready 503 after %.3f s, "
              "exit %d after %.3f s" % (took_ready, rc, took_exit))
        self.assertEqual(rc, 0)
        self.assertNotIn(None, seen, "/ready did not answer after SIGTERM: %r" % seen)
        self.assertEqual(again, 503)
        # acted on at once (before: after the reload's two 5 s KV reads)
        self.assertLess(took_ready, 1.0)
        # the normal way: /ready turned, then the deregistration (which
        # waits for the stalled agent within its own timeout), then drain
        log = n.log_text()
        self.assertIn("SIGTERM received, stopping", log)
        self.assertIn("deregister", log)

    # -- an agent that accepts and never answers ---------------------------

    def test_silent_agent_at_start_and_stop(self):
        silent = SilentServer()
        self.addCleanup(silent.stop)
        n = self.node("sig-silent", consul_addr=silent.addr)
        t0 = time.monotonic()
        n.start_ready(timeout=15)
        took_health = time.monotonic() - t0
        self.assertIn("consul kv not read", n.log_text())
        time.sleep(0.5)  # the registrar's call to the silent agent in flight
        t1 = time.monotonic()
        n.signal(signal.SIGTERM)
        rc = n.wait_exit(timeout=15)
        took_stop = time.monotonic() - t1
        print("\nsilent agent: /health after %.3f s, SIGTERM to exit %d in %.3f s"
              % (took_health, rc, took_stop))
        self.assertEqual(rc, 0)
        self.assertLess(took_health, 3.0)   # before: the 5 s KV timeout first
        self.assertLess(took_stop, 1.5)     # before: the 5 s register call

    def test_sigterm_during_start_with_a_silent_agent(self):
        silent = SilentServer()
        self.addCleanup(silent.stop)
        n = self.node("sig-early", consul_addr=silent.addr)
        n.start()
        wait_until(lambda: len(silent.conns) > 0, timeout=5, interval=0.01,
                   what="the start-up KV read in flight")
        t0 = time.monotonic()
        n.signal(signal.SIGTERM)
        rc = n.wait_exit(timeout=15)
        took = time.monotonic() - t0
        print("\nSIGTERM during the start-up KV read: exit %d in %.3f s" % (rc, took))
        self.assertEqual(rc, 0)
        self.assertLess(took, 1.0)

    # -- files that are refused before libconfig sees them -----------------

    def test_check_config_and_start_refuse_a_fifo(self):
        n = self.node("sig-cfifo")
        self.fifo_instead_of_config(n)
        t0 = time.monotonic()
        rc, out, err = n.run_cli(["--check-config"], timeout=10)
        took = time.monotonic() - t0
        print("\n--check-config -c fifo: exit %d in %.3f s" % (rc, took))
        self.assertEqual(rc, 2, out + err)
        self.assertIn("%s: a FIFO, not a regular file: refused" % n.config_path, err)
        n.start()
        self.assertEqual(n.wait_exit(timeout=10), 2)
        self.assertIn("a FIFO, not a regular file: refused", n.log_text())

    def test_an_8mb_line_is_refused_at_once(self):
        n = self.node("sig-8mb")
        with open(n.config_path, "w") as f:
            f.write('service = { name = "%s" };\n' % ("x" * (8 << 20)))
        t0 = time.monotonic()
        rc, out, err = n.run_cli(["--check-config"], timeout=20)
        took = time.monotonic() - t0
        print("\n--check-config with an 8 MB line: exit %d in %.3f s" % (rc, took))
        self.assertEqual(rc, 2, out + err)
        self.assertIn("over the 1048576 bytes", err)
        self.assertLess(took, 3.0)
        # and a long line in a small file: the line cap
        with open(n.config_path, "w") as f:
            f.write('service = { name = "%s" };\n' % ("x" * (100 << 10)))
        rc, out, err = n.run_cli(["--check-config"], timeout=20)
        self.assertEqual(rc, 2, out + err)
        self.assertIn(":1: line longer than 65536 bytes, refused", err)
        t0 = time.monotonic()
        n.start()
        self.assertEqual(n.wait_exit(timeout=10), 2)
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_a_2mb_file_is_refused(self):
        n = self.node("sig-2mb")
        text = harness.libconfig_text(n.settings)
        with open(n.config_path, "w") as f:
            f.write(text)
            f.write(("# %s\n" % ("x" * 60)) * ((2 << 20) // 63))
        rc, out, err = n.run_cli(["--check-config"], timeout=20)
        self.assertEqual(rc, 2, out + err)
        self.assertIn("over the 1048576 bytes configuration files may hold in all", err)
        # and on SIGHUP: refused, the configuration in force stays
        n.write_config()
        n.start_ready()
        with open(n.config_path, "a") as f:
            f.write(("# %s\n" % ("x" * 60)) * ((2 << 20) // 63))
        n.signal(signal.SIGHUP)
        wait_until(lambda: "reload (SIGHUP) refused" in n.log_text(), timeout=5,
                   what="the 2 MB file refused on SIGHUP")
        self.assertEqual(n.get_json("/health")["status"], "ok")
        self.assertEqual(n.stop(), 0)
