"""`make run` (scripts/run.sh) as a developer meets it: in a terminal (a
real pty, GNU make in front), the commands it prints once the node is
passing, Ctrl-C once or several times, SIGTERM twice, and two runs side by
side. Every run gets its own agent address, node port, database and temp
directory, so nothing here touches 8500, 8080 or the checkout's data/.

Where make adds nothing, scripts/run.sh runs directly; the terminal tests run
`make run`, which never builds here: they are skipped unless the binary is
up to date for make (`make -q`)."""

import fcntl
import json
import os
import re
import signal
import subprocess
import termios
import threading
import time
import unittest

import harness
from harness import requires_meshnode, wait_until

REPO = harness.REPO
BLOCK_END = "Stop: Ctrl-C here"


def pids_with_args(*args):
    """PIDs of live processes whose argv holds `args` in a row."""
    want = [a.encode() for a in args]
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        for i in range(len(argv) - len(want) + 1):
            if argv[i:i + len(want)] == want:
                if harness.pid_alive(int(d)):
                    found.append(int(d))
                break
    return found


def make_argv():
    """`make run` for MESHNODE_BIN, or None when make would have to build
    it first (tests never build)."""
    binary = os.path.realpath(harness.meshnode_binary())
    build = os.path.relpath(os.path.dirname(binary), REPO)
    if os.path.basename(binary) != "meshnode" or build.startswith(".."):
        return None
    q = subprocess.run(["make", "-q", "BUILD=" + build, os.path.join(build, "meshnode")],
                       cwd=REPO, env=harness.minimal_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    if q.returncode != 0:
        return None
    return ["make", "--no-print-directory", "BUILD=" + build, "run"]


class Run:
    """One `make run` or scripts/run.sh: its own agent address and node
    port (SERVER_PORT), database and TMPDIR; output read continuously (the
    node logs to it) into a buffer and a log file. With tty=True it runs in
    a new session on a pty that is its controlling terminal, as in a
    terminal; otherwise stdin is /dev/null and output a pipe."""

    def __init__(self, argv, tty=False, consul_port=None, node_port=None, label="run"):
        self.dir = harness.mkdtemp(label)
        self.consul_port = consul_port or harness.free_port()
        self.node_port = node_port or harness.free_port()
        self.addr = "http://127.0.0.1:%d" % self.consul_port
        self.env = harness.minimal_env({
            "CONSUL_HTTP_ADDR": self.addr,
            "SERVER_PORT": str(self.node_port),
            "MESHNODE_DATABASE_PATH": os.path.join(self.dir, "users.db"),
            "TMPDIR": self.dir,
            "TERM": "dumb",
        })
        self.log_path = os.path.join(self.dir, "output.log")
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.master = None
        self.node_pid = None
        self.agent_pid = None
        if tty:
            self.master, slave = os.openpty()
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=self.env, stdin=slave, stdout=slave, stderr=slave,
                start_new_session=True,
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
            os.close(slave)
            src = self.master
        else:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            src = self.proc.stdout.fileno()
        harness._register(self.proc)
        harness._add_log("%s:%d" % (label, self.node_port), self.log_path)
        self.reader = threading.Thread(target=self._read, args=(src,), daemon=True)
        self.reader.start()

    def _read(self, fd):
        with open(self.log_path, "ab") as log:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the pty's last writer is gone
                    break
                if not data:
                    break
                log.write(data)
                log.flush()
                with self.lock:
                    self.buf += data

    def text(self):
        with self.lock:
            return self.buf.decode("utf-8", "replace").replace("\r\n", "\n")

    def wait_for(self, pattern, timeout=60.0):
        """The first match of regex `pattern` in the output; fails when the
        run exits first or at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                time.sleep(0.2)  # what it printed last
                m = re.search(pattern, self.text())
                if m:
                    return m
                raise AssertionError("run exited (%s) before printing %r:\n%s"
                                     % (self.proc.returncode, pattern, self.text()[-3000:]))
            if time.monotonic() >= deadline:
                raise AssertionError("no %r within %.0fs:\n%s"
                                     % (pattern, timeout, self.text()[-3000:]))
            time.sleep(0.05)

    def wait_block(self, timeout=60.0):
        """The commands printed once the node is passing, one per line."""
        self.wait_for(re.escape(BLOCK_END), timeout)
        text = self.text()
        body = text[text.index("Try, in another terminal:"):].split("\n")[1:]
        cmds = []
        for line in body:
            if line.startswith("     (") or BLOCK_END in line:
                break
            if line.strip():
                cmds.append(line.strip())
        m = re.search(r"dev agent up at \S+ \(pid (\d+)\)", text)
        self.agent_pid = int(m.group(1)) if m else None
        m = re.search(r"^kill -HUP (\d+)$", text, re.M)
        self.node_pid = int(m.group(1)) if m else None
        return cmds

    def ctrl_c(self, times=1, gap=0.02):
        for _ in range(times):
            os.write(self.master, b"\x03")
            time.sleep(gap)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=40.0):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("run (pid %d) still running %.0fs after the signal:\n%s"
                                 % (self.proc.pid, timeout, self.text()[-3000:]))
        harness._unregister(self.proc)
        self.reader.join(5)
        return rc

    def leftovers(self):
        """What is still running or listening of this run: [] when nothing."""
        left = []
        for what, pid in (("node", self.node_pid), ("agent", self.agent_pid)):
            if pid and harness.pid_alive(pid):
                left.append("%s pid %d" % (what, pid))
        for pid in pids_with_args("-http-port", str(self.consul_port)):
            left.append("agent pid %d (by its -http-port)" % pid)
        for what, port in (("node", self.node_port), ("agent", self.consul_port)):
            if harness.port_open(port):
                left.append("%s port %d open" % (what, port))
        return left

    def kill(self):
        """SIGKILL by PID whatever is left (tearDown, after a failure)."""
        pids = [self.node_pid, self.agent_pid] + pids_with_args("-http-port",
                                                                str(self.consul_port))
        if self.proc.poll() is None:
            pids.append(self.proc.pid)
        for pid in pids:
            if pid and harness.pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        harness._unregister(self.proc)
        if self.master is not None:
            os.close(self.master)
            self.master = None


def http_json(url, method="GET", body=None):
    host, _, path = url.partition("://")[2].partition("/")
    port = int(host.rsplit(":", 1)[1])
    status, _, data = harness.http_request(port, method, "/" + path, body)
    return status, (json.loads(data) if data else None)


def setting(run, name):
    _, cfg = http_json("http://127.0.0.1:%d/config" % run.node_port)
    entry = cfg["settings"].get(name)
    return entry and (entry["value"], entry["source"])


def in_passing(run, name="users"):
    _, entries = http_json("%s/v1/health/service/%s?passing" % (run.addr, name))
    return any(e["Service"]["Port"] == run.node_port for e in entries or [])


def check_printed_commands(test, run, cmds):
    """Runs every command of the printed block in order, as printed (bash,
    the run's environment), and checks what it does. A command this test
    does not know fails it: the block and the test change together.
    Returns how many commands were checked."""
    env = dict(run.env)
    checked = 0
    email = None
    for cmd in cmds:
        m = re.match(r"export CONSUL_HTTP_ADDR=(\S+)$", cmd)
        if m:
            test.assertEqual(m.group(1), run.addr)
            env["CONSUL_HTTP_ADDR"] = m.group(1)
            checked += 1
            continue
        p = subprocess.run(["bash", "-c", cmd], cwd="/", env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        out = p.stdout.decode("utf-8", "replace")
        test.assertEqual(p.returncode, 0, "%s -> %d %s" % (cmd, p.returncode, p.stderr[-500:]))
        kv = re.match(r"(\S+/scripts/consul) kv (put|delete) config/users/(\S+)(?: (\S+))?$", cmd)
        if cmd.startswith("curl ") and "/v1/health/service/users?passing" in cmd:
            ports = [e["Service"]["Port"] for e in json.loads(out)]
            test.assertIn(run.node_port, ports, out[:500])
        elif cmd.startswith("curl ") and "-XPOST" in cmd and cmd.endswith("/users"):
            created = json.loads(out)
            test.assertIn("id", created, out)
            email = created["email"]
        elif cmd.startswith("curl ") and "/users?limit=" in cmd:
            test.assertIn(email, [u["email"] for u in json.loads(out)])
        elif cmd.startswith("curl ") and cmd.endswith("/config"):
            test.assertIn("settings", json.loads(out))
        elif kv and os.path.isabs(kv.group(1)):
            test.assertIn("Success!", out + p.stderr.decode())
            key, value = kv.group(3), kv.group(4)
            if key == "features/bulk_import":
                wait_until(lambda: setting(run, "features.bulk_import") == (True, "kv"),
                           timeout=5, what=cmd)
            elif key == "log/level" and kv.group(2) == "put":
                wait_until(lambda: setting(run, "log.level") == (value, "kv"),
                           timeout=5, what=cmd)
            elif key == "log/level":
                wait_until(lambda: setting(run, "log.level") == ("info", "file"),
                           timeout=5, what=cmd)
            elif key == "maintenance":
                wait_until(lambda: in_passing(run) == (value == "false"), timeout=10,
                           what=cmd)
            else:
                test.fail("printed command not checked by this test: %s" % cmd)
        elif re.match(r"kill -HUP %d$" % run.node_pid, cmd):
            run.wait_for(r"SIGHUP received", timeout=5)
        else:
            test.fail("printed command not checked by this test: %s" % cmd)
        checked += 1
    return checked


@requires_meshnode
class MakeRunTest(unittest.TestCase):
    def setUp(self):
        self.runs = []

    def tearDown(self):
        for r in self.runs:
            r.kill()

    def start(self, argv=None, **kw):
        r = Run(argv or [os.path.join(REPO, "scripts", "run.sh"), harness.meshnode_binary()],
                **kw)
        self.runs.append(r)
        return r

    def make_run(self):
        argv = make_argv()
        if argv is None:
            self.skipTest("%s is not up to date for make; run make first"
                          % harness.meshnode_binary())
        return self.start(argv, tty=True, label="make-run")

    def assertNothingLeft(self, run):
        # The run has exited: what it stopped is gone (ports may take a
        # moment to close after the last process).
        deadline = time.monotonic() + 3
        while run.leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(run.leftovers(), [], "left running:\n" + run.text()[-2000:])

    def test_make_run_in_a_terminal_prints_working_commands_and_ctrl_c_exits_0(self):
        t0 = time.monotonic()
        run = self.make_run()
        cmds = run.wait_block()
        took = time.monotonic() - t0
        self.assertIsNotNone(run.node_pid, run.text())
        self.assertIsNotNone(run.agent_pid, "no dev agent started:\n" + run.text())
        self.assertIn("config/users/features/bulk_import = false  (seeded now", run.text())
        # The seed holds only the flag: log.level and log.format stay the
        # file's (an edit of config/meshnode.cfg shows at the next run).
        self.assertEqual(setting(run, "log.level"), ("info", "file"))
        self.assertEqual(setting(run, "log.format"), ("json", "file"))
        self.assertEqual(setting(run, "features.bulk_import"), (False, "kv"))
        n = check_printed_commands(self, run, cmds)
        run.ctrl_c()
        rc = run.wait_exit()
        out = run.text()
        self.assertEqual(rc, 0, out[-2000:])
        self.assertNotIn("make: ***", out)
        self.assertNothingLeft(run)
        print("  [make run: block %.1fs after start, %d printed commands checked]" % (took, n))

    def test_ctrl_c_three_times_leaves_nothing(self):
        run = self.make_run()
        run.wait_block()
        run.ctrl_c(times=3)
        rc = run.wait_exit()
        self.assertEqual(rc, 0, run.text()[-2000:])
        self.assertNotIn("make: ***", run.text())
        self.assertNothingLeft(run)

    def test_ctrl_c_while_the_agent_starts_leaves_nothing(self):
        run = self.make_run()
        run.wait_for(r"starting consul agent -dev")
        run.ctrl_c(times=2, gap=0.1)
        rc = run.wait_exit()
        self.assertEqual(rc, 0, run.text()[-2000:])
        self.assertNotIn("make: ***", run.text())
        self.assertNothingLeft(run)

    def test_sigterm_twice_to_run_sh_leaves_nothing(self):
        run = self.start(label="run-sh")
        run.wait_block()
        run.signal(signal.SIGTERM)
        time.sleep(0.05)
        run.signal(signal.SIGTERM)
        rc = run.wait_exit()
        self.assertEqual(rc, 0, run.text()[-2000:])
        self.assertIn("deregistered", run.text())
        self.assertNothingLeft(run)

    def test_two_runs_side_by_side(self):
        # Each with its own CONSUL_HTTP_ADDR (two dev agents: only the HTTP
        # port is given, the others are picked free) and the same node port
        # (the second moves to a free one); a third without an agent of its
        # own, as a second plain `make run` finds the first's at 8500.
        a = self.start(label="run-a")
        a.wait_block()
        b = self.start(label="run-b", node_port=a.node_port)
        c = self.start(label="run-c", consul_port=a.consul_port)
        for r in (b, c):
            r.wait_block()
        m = b.wait_for(r"port %d is taken; the node listens on (\d+) instead" % a.node_port)
        b.node_port = int(m.group(1))
        self.assertIsNotNone(b.agent_pid, b.text())
        self.assertNotEqual(a.agent_pid, b.agent_pid)
        self.assertIsNone(c.agent_pid, "a second agent at %s:\n%s" % (a.addr, c.text()))
        self.assertTrue(in_passing(a) and in_passing(b) and in_passing(c))
        _, both = http_json("%s/v1/health/service/users?passing" % a.addr)
        self.assertEqual(sorted(e["Service"]["Port"] for e in both),
                         sorted([a.node_port, c.node_port]))
        for r in (c, b, a):
            r.signal(signal.SIGTERM)
            self.assertEqual(r.wait_exit(), 0, r.text()[-2000:])
        for r in (a, b, c):
            self.assertNothingLeft(r)
