"""A throwaway RabbitMQ broker (Debian 12's rabbitmq-server 3.10, installed
by `scripts/deps.sh rabbitmq`) for the event tests. Standard library only,
beside harness.py and pgserver.py.

    mq = RabbitServer()                  # started: free ports on 127.0.0.1
    mq.amqp_port, mq.addr                # 5672's stand-in, "127.0.0.1:<port>"
    mq.add_vhost("events"); mq.add_user("app", "s3cret", vhost="events")
    mq.list_queues()                     # {"orders": (messages, durable)}
    mq.kill9(); mq.start()               # a crash, then the same data again
    mq.stop()                            # clean; nothing of it left running

One broker is its own temp directory under the harness's run directory:
`home/.erlang.cookie` (HOME, for the broker and rabbitmqctl alike),
`mnesia/` (RABBITMQ_MNESIA_BASE: the node's database, message stores,
feature flags), `log/` (RABBITMQ_LOG_BASE), `rabbitmq.conf`, an empty plugin
list (no management plugin, so no HTTP listener), `rabbitmq.out` (the
broker's stdout and stderr: its console log, registered with the harness's
log bookkeeping so a failed test shows its tail) and `epmd.log`. Nothing
under /etc/rabbitmq, /var/lib/rabbitmq or /var/log/rabbitmq is read or
written: every path the scripts would default there is set.

Processes, each recorded by PID in harness.PROCS (harness.kill_all() kills
them at the end of the session, on SIGTERM, at exit):
- our own `epmd -port <free> -address 127.0.0.1`, started first and
  stopped last. Every Erlang VM here (the broker, rabbitmqctl) gets
  `-start_epmd false`: left alone, the first one to start would daemonize
  an epmd of its own on 4369, which outlives everything.
- the broker: /usr/lib/rabbitmq/bin/rabbitmq-server, not the /usr/sbin
  wrapper (as root that one runs `su rabbitmq`, which forks and waits, and
  cds to /var/lib/rabbitmq). With `detached` set in its environment the
  script execs erl instead of waiting on it in a background shell, so the
  PID we hold is beam.smp's own; SIGTERM to it is a clean stop.
  beam.smp's children (erl_child_setup, inet_gethost) exit when it is
  gone; stop() and kill9() wait for them by PID anyway.
- rabbitmqctl, short-lived, with the broker's environment.

Listening sockets, all on loopback: the AMQP port and the distribution port
(`-kernel inet_dist_use_interface {127,0,0,1}`) of the broker, and epmd's
port, on 127.0.0.1 and, because epmd always adds the loopback of each
address family it can open, on [::1] too. rabbitmqctl's own distribution
listener (a port in 35672-35682, open while it runs) is bound to 127.0.0.1
the same way. listening() lists them from /proc, for the tests to check.

A start takes 5 to 7 s (2 cores); readiness is the AMQP handshake answered
(Connection.Start) and "Server startup complete" in this start's log (a
rabbitmqctl costs a VM boot, about 1 s, so it is not polled). A port taken
by someone else before epmd or the broker binds it (epmd then exits 0
without a word; rabbit says eaddrinuse or dist_port_already_used) makes a
first start pick three new ports, up to three times; later starts keep
theirs, the node's name being tied to its data anyway.
"""

import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import time

import harness

RABBIT_BINDIR = os.environ.get("MESHNODE_RABBIT_BINDIR") or "/usr/lib/rabbitmq/bin"
EPMD = os.environ.get("MESHNODE_EPMD") or "/usr/bin/epmd"

# Arguments every Erlang VM here gets: distribution on loopback only, and
# no epmd started behind our back (ours runs on its own port).
ERL_ARGS = "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false"

# What the log says when the boot is over (rabbit 3.10: the last boot step).
READY_LINE = b"Server startup complete"

# Lines the tests record (start, restart, stop times...); tests/rabbit's
# conftest prints them at the end of the run.
FIGURES = []


class RabbitError(RuntimeError):
    pass


class _BindError(RabbitError):
    """A port was taken before epmd or the broker bound it."""


def rabbit_binary(name):
    """The path of a RabbitMQ program (rabbitmq-server, rabbitmqctl) behind
    Debian's wrapper; runs `scripts/deps.sh rabbitmq` once when missing."""
    path = os.path.join(RABBIT_BINDIR, name)
    if not os.access(path, os.X_OK) or not os.access(EPMD, os.X_OK):
        subprocess.run([os.path.join(harness.REPO, "scripts", "deps.sh"), "rabbitmq"],
                       stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                       timeout=900, check=False)
    if not os.access(path, os.X_OK):
        raise RabbitError("%s not found: `scripts/deps.sh rabbitmq` installs Debian's "
                          "rabbitmq-server" % path)
    if not os.access(EPMD, os.X_OK):
        raise RabbitError("%s not found (Debian's erlang-base)" % EPMD)
    return path


def _distinct_free_ports(n):
    ports = []
    while len(ports) < n:
        p = harness.free_port()
        if p not in ports:
            ports.append(p)
    return ports


def amqp_handshake(port, host="127.0.0.1", timeout=1.0):
    """True when an AMQP 0-9-1 server at host:port answers the protocol
    header with Connection.Start (class 10, method 10) on channel 0."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"AMQP\x00\x00\x09\x01")
            data = b""
            while len(data) < 11:
                chunk = s.recv(11 - len(data))
                if not chunk:
                    return False
                data += chunk
    except OSError:
        return False
    ftype, channel, _size, klass, method = struct.unpack(">BHIHH", data)
    return ftype == 1 and channel == 0 and (klass, method) == (10, 10)


class RabbitServer(harness._Process):
    """A RabbitMQ broker of its own (see the module's docstring). Ports are
    chosen free once (on a first start that fails to bind, up to three
    times) and kept, with the node name, across restarts, so that start()
    after stop() or kill9() finds the same durable queues and persistent
    messages. `config`: more rabbitmq.conf lines, {key: value};
    start=False prepares the directory and the ports and leaves start() for
    later."""

    START_TIMEOUT = 60.0
    STOP_TIMEOUT = 30.0
    CTL_TIMEOUT = 60.0

    def __init__(self, config=None, label=None, start=True):
        self.server_binary = rabbit_binary("rabbitmq-server")
        self.ctl_binary = rabbit_binary("rabbitmqctl")
        self.dir = harness.mkdtemp("rabbitmq")
        self.node = "rabbit-%s@localhost" % secrets.token_hex(4)
        self.label = label
        self.config = dict(config or {})
        self.proc = None                 # beam.smp
        self.epmd = None
        self.starts = 0
        self.startup_seconds = None      # the last start: spawn to ready
        self.stop_seconds = None         # the last stop() or kill9(): signal to all gone
        self.start_history = []          # every start's seconds, in order
        self._logged = False
        self._kids = set()               # beam.smp's descendants last seen
        self.home = os.path.join(self.dir, "home")
        self.out_path = os.path.join(self.dir, "rabbitmq.out")
        self.epmd_log = os.path.join(self.dir, "epmd.log")
        for sub in ("home", "mnesia", "log"):
            os.mkdir(os.path.join(self.dir, sub), 0o700)
        # Our own cookie, before anything starts: the broker and every
        # rabbitmqctl read $HOME/.erlang.cookie, and Erlang wants it 0400.
        cookie = os.path.join(self.home, ".erlang.cookie")
        fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(20).upper())
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        # Read by the scripts and by the broker; empty so that
        # /etc/rabbitmq/rabbitmq-env.conf is not.
        open(os.path.join(self.dir, "rabbitmq-env.conf"), "w").close()
        # The VM resolves names itself, localhost from this file whatever
        # /etc/hosts says (a chroot's may lack it), then from /etc/hosts: no
        # inet_gethost helper processes, which a killed VM leaves behind.
        with open(os.path.join(self.dir, "inetrc"), "w") as f:
            f.write('{host, {127,0,0,1}, ["localhost"]}.\n{lookup, [file]}.\n')
        self.amqp_port, self.dist_port, self.epmd_port = _distinct_free_ports(3)
        self._write_config()
        if start:
            self.start()

    # -- files and environment -------------------------------------------------

    def _write_config(self):
        lines = {"listeners.tcp.default": "127.0.0.1:%d" % self.amqp_port,
                 "log.file.level": "info",
                 "log.console": "true",
                 "log.console.level": "info",
                 "log.console.use_colors": "off"}
        lines.update(self.config)
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write("# written by tests/integration/rabbitserver.py\n")
            for k, v in lines.items():
                f.write("%s = %s\n" % (k, v))

    def env(self):
        """The environment of the broker and of rabbitmqctl."""
        d = self.dir
        return harness.minimal_env({
            "HOME": self.home,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": os.path.join(d, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(d, "log"),
            "RABBITMQ_CONFIG_FILE": os.path.join(d, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(d, "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(d, "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(d, "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ERL_ARGS,
            "RABBITMQ_CTL_ERL_ARGS": ERL_ARGS,
            "ERL_CRASH_DUMP": os.path.join(d, "erl_crash.dump"),
            "ERL_INETRC": os.path.join(d, "inetrc"),
        })

    # -- lifecycle ---------------------------------------------------------------

    def start(self, timeout=None):
        """Starts epmd (unless ours still runs) and the broker, and waits,
        bounded, until the AMQP handshake is answered and the log says the
        boot is over. Sets startup_seconds. Returns self."""
        if self.running():
            raise RabbitError("rabbitmq already running (pid %d)" % self.proc.pid)
        timeout = timeout or self.START_TIMEOUT
        tries = 3 if self.starts == 0 else 1
        for attempt in range(tries):
            if attempt:
                self._stop_epmd()
                self.amqp_port, self.dist_port, self.epmd_port = _distinct_free_ports(3)
                self._write_config()
            try:
                self._start_once(timeout)
                return self
            except _BindError as e:
                last = e
        raise last

    def _start_epmd(self):
        if self.epmd is not None and self.epmd.poll() is None:
            return
        with open(self.epmd_log, "ab") as logf:
            self.epmd = subprocess.Popen(
                [EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                cwd=self.dir, env=self.env(), start_new_session=True)
        harness._register(self.epmd)
        # Ours must hold the port: an epmd that cannot bind 127.0.0.1 exits
        # 0 without a word, and meanwhile whoever took the port answers.
        mine = ("tcp", "127.0.0.1", self.epmd_port, "epmd")
        deadline = time.monotonic() + 10
        while mine not in listening_sockets([self.epmd.pid]):
            if self.epmd.poll() is not None:
                harness._unregister(self.epmd)
                raise _BindError("epmd cannot bind 127.0.0.1:%d (exit %s): %s"
                                  % (self.epmd_port, self.epmd.returncode,
                                     harness.tail(self.epmd_log, 5)))
            if time.monotonic() >= deadline:
                self._stop_epmd()
                raise RabbitError("epmd not listening on %d within 10 s" % self.epmd_port)
            time.sleep(0.01)

    def _start_once(self, timeout):
        t0 = time.monotonic()
        self._start_epmd()
        env = self.env()
        env["detached"] = "1"  # rabbitmq-server: exec erl (see the docstring)
        with open(self.out_path, "ab") as logf:
            logf.write(("\n=== start %d: node %s, amqp %d, dist %d, epmd %d\n"
                        % (self.starts + 1, self.node, self.amqp_port, self.dist_port,
                           self.epmd_port)).encode())
            logf.flush()
            offset = logf.tell()
            self.proc = subprocess.Popen([self.server_binary], stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT, cwd=self.dir,
                                         env=env, start_new_session=True)
        harness._register(self.proc)
        if not self._logged:
            harness._add_log(self.label or "rabbitmq:%d" % self.amqp_port, self.out_path)
            self._logged = True
        self.starts += 1
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                harness._unregister(self.proc)
                self._wait_gone(self._kids)
                out = self._log_since(offset)
                taken = b"eaddrinuse" in out or b"dist_port_already_used" in out
                error = _BindError if taken else RabbitError
                raise error("rabbitmq exited with %s during startup:\n%s"
                            % (self.proc.returncode, self._start_output(offset)))
            self._kids |= self.descendants()
            if self._log_since(offset).find(READY_LINE) >= 0 and amqp_handshake(self.amqp_port):
                break
            if time.monotonic() >= deadline:
                self.kill9()
                raise RabbitError("rabbitmq not ready within %.1f s:\n%s"
                                  % (timeout, harness.tail(self.out_path)))
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - t0
        self.start_history.append(self.startup_seconds)

    def _start_output(self, offset, head=15, tail=10):
        """This start's first and last lines of output: the first say why a
        boot failed, the last what the VM did about it."""
        lines = self._log_since(offset).decode("utf-8", "replace").splitlines()
        if len(lines) <= head + tail:
            return "\n".join(lines)
        return "\n".join(lines[:head] + ["[...]"] + lines[-tail:])

    def _log_since(self, offset):
        try:
            with open(self.out_path, "rb") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return b""

    def descendants(self):
        """The PIDs of beam.smp's children and theirs (erl_child_setup,
        inet_gethost), alive now."""
        if not self.running():
            return set()
        parents = {}
        for pid in _all_pids():
            parents[pid] = _parent(pid)
        found, todo = set(), [self.proc.pid]
        while todo:
            p = todo.pop()
            for pid, ppid in parents.items():
                if ppid == p and pid not in found:
                    found.add(pid)
                    todo.append(pid)
        return found

    def pids(self):
        """Every live PID of this broker: epmd, beam.smp and its descendants."""
        out = {p.pid for p in (self.epmd, self.proc) if p is not None and p.poll() is None}
        return out | self.descendants()

    def stop(self, timeout=None):
        """Clean stop: SIGTERM to beam.smp (rabbit closes its connections and
        message stores and exits 0), SIGKILL after `timeout`; then epmd, by
        PID. Waits until every process of it is gone. Sets stop_seconds.
        Returns the broker's exit status."""
        t0 = time.monotonic()
        rc = self.proc.returncode if self.proc else None
        if self.running():
            kids = self._kids | self.descendants()
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout or self.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill9()
            harness._unregister(self.proc)
            self._wait_gone(kids)
            rc = self.proc.returncode
        self._stop_epmd()
        self.stop_seconds = time.monotonic() - t0
        return rc

    def kill9(self):
        """SIGKILL to beam.smp and its descendants, by PID (a crash: epmd,
        like the host's would, stays), and waits until all are gone, so a
        start() may follow at once. Sets stop_seconds. Returns the exit
        status."""
        if self.proc is None:
            return None
        t0 = time.monotonic()
        kids = self._kids | self.descendants()
        rc = harness._stop_process(self.proc, signal.SIGKILL, 10)
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._wait_gone(kids)
        self._kids = set()
        self.stop_seconds = time.monotonic() - t0
        return rc

    def _stop_epmd(self):
        if self.epmd is not None:
            harness._stop_process(self.epmd, signal.SIGTERM, 5)

    @staticmethod
    def _wait_gone(pids, timeout=10.0):
        harness.wait_pids_gone(pids, timeout, "rabbitmq processes gone")

    def restart(self):
        """stop() (clean) then start() on the same ports and data."""
        self.stop()
        return self.start()

    # -- what listens ------------------------------------------------------------

    def listening(self):
        """Every listening socket of this broker's processes (epmd's too) as
        a set of (proto, address, port, process name); proto is tcp, tcp6,
        udp or udp6. Read from /proc (no ss needed)."""
        return listening_sockets(self.pids())

    # -- rabbitmqctl ---------------------------------------------------------------

    def ctl(self, *args, timeout=None, check=True):
        """Runs `rabbitmqctl -n <node> -q <args>` with the broker's
        environment, registered by PID. Returns stdout; raises RabbitError
        on failure when `check`."""
        argv = [self.ctl_binary, "-n", self.node, "-q"] + list(args)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=self.dir, env=self.env(),
                             start_new_session=True)
        harness._register(p)
        try:
            out, err = p.communicate(timeout=timeout or self.CTL_TIMEOUT)
        except subprocess.TimeoutExpired:
            harness._stop_process(p, signal.SIGKILL)
            raise RabbitError("rabbitmqctl %s did not finish within %.0f s"
                              % (" ".join(args), timeout or self.CTL_TIMEOUT))
        harness._unregister(p)
        out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if check and p.returncode != 0:
            raise RabbitError("rabbitmqctl %s failed (%d): %s%s"
                              % (" ".join(args), p.returncode, out.strip(), err.strip()))
        return out

    def await_startup(self, timeout=30):
        """`rabbitmqctl await_startup`: the broker is fully booted."""
        self.ctl("await_startup", "--timeout", str(int(timeout)), timeout=timeout + 30)

    def list_queues(self, vhost="/"):
        """{name: (messages, durable)} of the vhost's queues, from
        rabbitmqctl list_queues (messages: ready plus unacknowledged)."""
        out = self.ctl("list_queues", "-p", vhost, "--formatter", "json",
                       "name", "messages", "durable")
        return {q["name"]: (int(q["messages"]), bool(q["durable"]))
                for q in json.loads(out or "[]")}

    def add_vhost(self, name):
        self.ctl("add_vhost", name)
        return name

    def add_user(self, name, password, vhost="/", tags=None):
        """A user with full permissions on `vhost` (None: on none)."""
        self.ctl("add_user", name, password)
        if tags:
            self.ctl("set_user_tags", name, *tags)
        if vhost is not None:
            self.ctl("set_permissions", "-p", vhost, name, ".*", ".*", ".*")
        return name

    # -- what clients are given --------------------------------------------------

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.amqp_port

    def url(self, user="guest", password="guest", vhost="/"):
        """amqp://user:password@127.0.0.1:<port>/<vhost, %-encoded>."""
        from urllib.parse import quote
        return "amqp://%s:%s@%s/%s" % (quote(user, safe=""), quote(password, safe=""),
                                       self.addr, quote(vhost, safe=""))

    def consul_service(self, name="rabbitmq", service_id=None, interval="1s"):
        """The Consul agent service definition of this broker, with a TCP
        check on its AMQP port."""
        return {"ID": service_id or "%s-%d" % (name, self.amqp_port), "Name": name,
                "Address": "127.0.0.1", "Port": self.amqp_port,
                "Check": {"TCP": self.addr, "Interval": interval, "Timeout": "1s"}}

    def register(self, consul, name="rabbitmq", service_id=None):
        """Registers the broker in `consul` (a harness.Consul). Returns the
        definition."""
        definition = self.consul_service(name, service_id)
        consul.register_service(definition)
        return definition

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def listening_sockets(pids):
    """The listening sockets of `pids` as a set of (proto, address, port,
    process name), from /proc: proto is tcp, tcp6, udp or udp6."""
    inodes = {}
    for pid in pids:
        name = _comm(pid)
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]$", link)
            if m:
                inodes[m.group(1)] = name
    found = set()
    for proto, listen_state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            with open("/proc/net/" + proto) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != listen_state or cols[9] not in inodes:
                continue
            addr, port = cols[1].split(":")
            found.add((proto, _proc_net_addr(addr), int(port, 16), inodes[cols[9]]))
    return found


def _all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _parent(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


def _proc_net_addr(hexaddr):
    """/proc/net/tcp's address (host byte order words) as text."""
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)
