"""A meshnode cluster on separate "hosts": Linux network namespaces joined by
one bridge on a private /24 with no route out. Standard library only, but
for the PostgreSQL host (tests/integration/pgserver.py and its harness);
needs root (ip netns) and iproute2.

    hosts     namespace          runs
    srv1-3    mnc-<run>-srvN     a Consul server (bootstrap_expect = 3)
    users1/2  mnc-<run>-usersN   a Consul client agent and a users node
    orders    mnc-<run>-orders   a Consul client agent and an orders node
    pg        mnc-<run>-pg       a Consul client agent and PostgreSQL 15
                                 (databases users and orders), registered
                                 with its agent as service "postgres"

Each host is its own network stack: its agent serves HTTP on 127.0.0.1:8500
inside the namespace and binds Serf and RPC to the host's address on the
bridge; its node runs with the defaults a production host would have
(consul.address http://127.0.0.1:8500, no CONSUL_HTTP_ADDR), so the only
agent it can reach is its own. Every process also gets a UTS namespace with
the host's name as its hostname, so a node's default service id
(users-<hostname>-<port>) differs per host as on real machines.

The root namespace gets no address on the bridge: nothing in a host can
reach the outside, nor the outside it. The test process talks to hosts by
opening its sockets inside their namespaces (setns on the calling thread,
then back: a socket stays in the namespace it was made in).

A partition is the host's bridge port (the veth end in the root namespace)
set down; healing sets it up.

Used by tests/cluster/test_cluster.py and by scripts/cluster.sh (this file
as a program: up | down | status). Every namespace, the bridge and every
process are recorded (PIDs with their start times) in a state file so that
`down` removes exactly what `up` made. Each namespace's loopback carries a
marker (its ifalias: "meshnode-cluster <run> <mode> pid=<owner> start=<t>"):
a test run's namespaces whose owner process is gone are provably stale and
are removed by the next run (clean_stale); others' namespaces never are.
"""

import argparse
import collections
import ctypes
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
INTEGRATION = os.path.join(REPO, "tests", "integration")

PREFIX = "mnc"                 # namespace names mnc-<run>-<host>, links mnc<run>...
MARKER = "meshnode-cluster"    # first word of every namespace's and the bridge's ifalias
SUBNET_BASE = "10.213"         # 10.213.<x>.0/24, <x> chosen per run
STATE_DEFAULT = os.path.join(REPO, "build", "cluster", "state.json")

SERVERS = ("srv1", "srv2", "srv3")
# host -> (last octet of its address, role)
HOSTS = collections.OrderedDict([
    ("srv1", (11, "server")), ("srv2", (12, "server")), ("srv3", (13, "server")),
    ("users1", (21, "users")), ("users2", (22, "users")),
    ("orders", (23, "orders")), ("pg", (24, "postgres")),
])
NODE_PORT = 8080


class ClusterError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------


def now():
    return time.monotonic()


def run(argv, check=True):
    """Runs a short command (ip, ...); returns its stdout. Raises
    ClusterError with stderr when it fails and check is set."""
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if check and p.returncode != 0:
        raise ClusterError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                p.stderr.decode(errors="replace").strip()))
    return p.stdout.decode(errors="replace")


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until truthy (returned); exceptions count as "not
    yet". Raises ClusterError at the deadline."""
    deadline = now() + timeout
    last = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - "not yet"
            last = e
        if now() >= deadline:
            raise ClusterError("timed out after %.1f s waiting for %s%s" % (
                timeout, what, " (last error: %r)" % (last,) if last else ""))
        time.sleep(interval)


def duration_s(text):
    """Seconds in a Go duration as Consul prints one ("8.4ms", "1.2s",
    "0"); infinity for anything else ("never")."""
    if text in ("0", "0s"):
        return 0.0
    for unit, scale in (("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if text and text.endswith(unit):
            try:
                return float(text[:-len(unit)]) * scale
            except ValueError:
                break
    return float("inf")


def proc_start_time(pid):
    """The start time of `pid` in clock ticks since boot (field 22 of
    /proc/<pid>/stat), or None when it does not exist: with the PID it
    names one process, never a later one that reused the PID."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def pid_matches(pid, start):
    return pid is not None and start is not None and proc_start_time(pid) == start


def in_netns(ns):
    """The prefix that runs a command in network namespace `ns`. Not `ip
    netns exec` nor `ip -n`: both also make a mount namespace and remount
    /sys, which fails in a chroot (a CI machine's), where / is no mount
    point; nsenter only joins the network namespace, and execs."""
    return ["nsenter", "--net=/run/netns/" + ns]


def need_root():
    if os.geteuid() != 0:
        raise ClusterError("the cluster needs root: network namespaces (ip netns) and a bridge")
    for tool in ("ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            raise ClusterError("'%s' not found (Debian: iproute2, util-linux; scripts/deps.sh "
                               "installs them)" % tool)


# --------------------------------------------------------------------------
# Sockets inside a namespace
# --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


class Netns:
    """A network namespace by name (/run/netns/<name>). socket() makes a
    socket inside it from any thread of this process."""

    def __init__(self, name):
        self.name = name
        self._fd = None
        self._lock = threading.Lock()

    def _target(self):
        with self._lock:
            if self._fd is None:
                self._fd = os.open("/run/netns/" + self.name, os.O_RDONLY | os.O_CLOEXEC)
            return self._fd

    def socket(self, family=socket.AF_INET, type_=socket.SOCK_STREAM):
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(self._target(), CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "setns into %s: %s" % (self.name, os.strerror(e)))
            try:
                return socket.socket(family, type_)
            finally:
                if _libc.setns(own, CLONE_NEWNET) != 0:
                    # this thread would go on in the wrong namespace
                    os.write(2, b"cluster: cannot return to the own network namespace\n")
                    os._exit(70)
        finally:
            os.close(own)

    def close(self):
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class _NsConnection(http.client.HTTPConnection):
    """A connection from inside `netns`; in TLS with `context` when given
    (a Connect client: no host name, a leaf names its SPIFFE URI only)."""

    def __init__(self, netns, host, port, timeout, context=None):
        super().__init__(host, port, timeout=timeout)
        self._netns = netns
        self._context = context

    def connect(self):
        s = self._netns.socket()
        try:
            s.settimeout(self.timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.connect((self.host, self.port))
            if self._context is not None:
                s = self._context.wrap_socket(s)
        except BaseException:
            s.close()
            raise
        self.sock = s


def ns_request(netns, host, port, method, path, body=None, timeout=5.0, headers=None,
               context=None):
    """One HTTP request from inside `netns` on a fresh connection (TLS with
    the ssl `context` when given): (status, headers with lower-case keys,
    body bytes)."""
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    conn = _NsConnection(netns, host, port, timeout, context)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


class Proc:
    """A process started inside a host: `ip netns exec <ns> unshare --uts`
    and a shell that sets the hostname, each exec'ing the next, so the PID
    is the program's own. Log appended to `log_path`. With `hooks`
    (cluster.on_spawn) the test registers it for kill-at-exit and for logs
    on failure."""

    def __init__(self, host, label, argv, log_path, env=None, cwd=None):
        self.host = host
        self.label = label
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.popen = None
        self.pid = None
        self.start_time = None
        self.starts = 0

    def command(self):
        return self.host.exec_prefix() + self.argv

    def start(self, cluster):
        if self.running():
            raise ClusterError("%s already running (pid %d)" % (self.label, self.pid))
        with open(self.log_path, "ab") as log:
            log.write(("\n=== %s start %d: %s\n" % (time.strftime("%H:%M:%S"), self.starts + 1,
                                                   " ".join(self.argv))).encode())
            log.flush()
            self.popen = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                          start_new_session=True)
        self.pid = self.popen.pid
        self.start_time = proc_start_time(self.pid)
        self.starts += 1
        cluster.spawned(self)
        return self

    def running(self):
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_matches(self.pid, self.start_time)

    def send(self, sig):
        if self.running():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """True once the process is gone (reaped when it is our child)."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = now() + timeout
        while pid_matches(self.pid, self.start_time):
            if now() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """`sig`, then SIGKILL after `timeout`; by PID. Returns the exit
        status when known."""
        if self.running():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            if not self.wait(timeout):
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(10)
        return self.popen.returncode if self.popen is not None else None

    def kill9(self):
        return self.stop(signal.SIGKILL, 10)

    def state(self):
        return {"label": self.label, "pid": self.pid, "start": self.start_time,
                "log": self.log_path}


# --------------------------------------------------------------------------
# Consul agents and meshnode processes
# --------------------------------------------------------------------------


def consul_binary():
    """CONSUL_BIN, `consul` on PATH, or the one scripts/deps.sh unpacks."""
    env = os.environ.get("CONSUL_BIN")
    if env:
        return env
    found = shutil.which("consul")
    if found:
        return found
    local = os.path.join(REPO, ".deps", "consul", "usr", "bin", "consul")
    if os.access(local, os.X_OK):
        return local
    out = subprocess.run([os.path.join(REPO, "scripts", "deps.sh")], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, timeout=600, check=True).stdout.decode()
    return out.strip().splitlines()[-1]


def meshnode_binary():
    return os.environ.get("MESHNODE_BIN") or os.path.join(REPO, "build", "meshnode")


# Raft at its fastest (raft_multiplier 1: leader lease 0.5 s, election and
# heartbeat timeouts 1 s) and a short LAN gossip probe: every agent probes
# one other every 200 ms, so a host that stops answering is suspected
# within a few hundred ms and declared failed 0.4 s later (suspicion_mult x
# probe_interval; with suspicion_mult 2 memberlist awaits no confirmation
# from other members). gossip_interval stays at its 200 ms: 100 ms cost a
# fifth more idle CPU for nothing measurable. A partitioned host rejoins
# through serf's reconnect, tried every 30 s (not settable in Consul 1.8).
GOSSIP_LAN = {"probe_interval": "200ms", "probe_timeout": "100ms", "suspicion_mult": 2}


class Agent:
    """A Consul agent of a host: a server (srv1-3) or a client."""

    def __init__(self, cluster, host):
        self.cluster = cluster
        self.host = host
        self.server = host.role == "server"
        self.dir = os.path.join(cluster.workdir, host.name, "consul")
        self.data_dir = os.path.join(self.dir, "data")
        self.config_path = os.path.join(self.dir, "agent.json")
        os.makedirs(self.data_dir, exist_ok=True)
        cfg = {
            "datacenter": "dc1",
            "node_name": host.name,
            "data_dir": self.data_dir,
            "bind_addr": host.ip,
            "advertise_addr": host.ip,
            "client_addr": "127.0.0.1",
            "retry_join": [cluster.hosts[s].ip for s in SERVERS if s != host.name],
            "retry_interval": "1s",
            "performance": {"raft_multiplier": 1},
            "gossip_lan": GOSSIP_LAN,
            "ports": {"grpc": -1},
            "log_level": "info",
            "disable_update_check": True,
            "enable_script_checks": False,
            # Connect (the servers' CA, the clients' leaf and authorize
            # endpoints): off by default outside -dev; the Connect scenario
            # turns the nodes on, the others leave them plain
            "connect": {"enabled": True},
        }
        if self.server:
            cfg.update({"server": True, "bootstrap_expect": len(SERVERS), "ui": False,
                        "autopilot": {"server_stabilization_time": "2s"}})
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        self.proc = Proc(host, "consul:%s" % host.name,
                         [cluster.consul, "agent", "-config-file", self.config_path],
                         os.path.join(self.dir, "consul.log"),
                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self.dir},
                         cwd=self.dir)

    def start(self):
        return self.proc.start(self.cluster)

    def wipe_data(self):
        """Forgets everything the agent persisted (services, checks, node
        id): a restart then starts as a fresh agent would."""
        if self.proc.running():
            raise ClusterError("wipe_data while %s runs" % self.proc.label)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        os.makedirs(self.data_dir, exist_ok=True)

    def request(self, method, path, body=None, timeout=5.0):
        return ns_request(self.host.netns, "127.0.0.1", 8500, method, path, body, timeout)

    def get(self, path, timeout=5.0):
        status, _, data = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ClusterError("%s GET %s: %d %s" % (self.host.name, path, status, data[:200]))
        return json.loads(data) if data else None

    def leader(self):
        """The leader's "ip:8300" as this agent knows it ("" when none)."""
        return self.get("/v1/status/leader", timeout=2.0) or ""

    def passing(self, service, timeout=5.0):
        """[(node name, service id)] in this agent's `?passing` answer."""
        entries = self.get("/v1/health/service/%s?passing" % service, timeout=timeout) or []
        return sorted((e["Node"]["Node"], e["Service"]["ID"]) for e in entries)


class Meshnode:
    """The meshnode of a host: settings as a production host would have them
    (no consul.address: the default, its own agent at 127.0.0.1:8500).
    With connect.enabled the service port speaks mutual TLS: `tls` is then
    the ssl context request() uses (a client leaf of the test's), and the
    node's own routes (/health, /metrics, /peers) are on admin.port, which
    own_request() uses."""

    def __init__(self, cluster, host, settings=None):
        self.cluster = cluster
        self.host = host
        self.dir = os.path.join(cluster.workdir, host.name, "node")
        os.makedirs(self.dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, "meshnode.cfg")
        self.port = NODE_PORT
        self.tls = None
        self.name = "orders" if host.role == "orders" else "users"
        self.settings = {
            "service.name": self.name,
            "service.address": host.ip,
            "service.port": self.port,
            "service.modules": [self.name],
            "server.threads": 64,
            "log.level": "info",
            "log.format": "text",
            "consul.check_interval_ms": 1000,
            "consul.check_timeout_ms": 1000,
        }
        self.settings.update(cluster.store_settings(self))
        self.configure(settings or {})
        self.proc = Proc(host, "node:%s" % host.name,
                         [cluster.meshnode, "-c", self.config_path],
                         os.path.join(self.dir, "meshnode.log"),
                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self.dir},
                         cwd=self.dir)

    def configure(self, settings):
        """Sets (None: removes) settings for the node's next start."""
        self.settings.update(settings)
        with open(self.config_path, "w") as f:
            f.write(libconfig_text(self.settings))

    @property
    def service_id(self):
        return (self.settings.get("service.id")
                or "%s-%s-%d" % (self.name, self.host.hostname, self.port))

    def start(self):
        return self.proc.start(self.cluster)

    def request(self, method, path, body=None, timeout=5.0):
        return ns_request(self.host.netns, self.host.ip, self.port, method, path, body, timeout,
                          context=self.tls)

    def own_request(self, method, path, body=None, timeout=5.0):
        """A request to the node's own routes: on the admin listener
        (127.0.0.1:admin.port inside the host) when there is one."""
        admin = self.settings.get("admin.port")
        if not admin:
            return self.request(method, path, body, timeout)
        return ns_request(self.host.netns, "127.0.0.1", admin, method, path, body, timeout)

    def get_json(self, path, timeout=5.0):
        status, _, data = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ClusterError("%s GET %s: %d %s" % (self.host.name, path, status, data[:200]))
        return json.loads(data)

    def metric(self, family, timeout=3.0, **labels):
        """Sum of the samples of `family` whose labels include `labels`."""
        _, _, data = self.own_request("GET", "/metrics", timeout=timeout)
        total = 0.0
        for line in data.decode().splitlines():
            if not line.startswith(family) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            name, _, lab = head.partition("{")
            if name != family:
                continue
            if all('%s="%s"' % (k, v) in lab for k, v in labels.items()):
                total += float(value)
        return total

    def user_gets(self):
        """GET /users/{id} answered so far (the calls an orders node made)."""
        return self.metric("http_requests_total", method="GET", endpoint="/users/{id}")

    def peers(self, service="users"):
        status, _, data = self.own_request("GET", "/peers/%s" % service, timeout=3.0)
        if status != 200:
            raise ClusterError("%s GET /peers/%s: %d %s" % (self.host.name, service, status,
                                                           data[:200]))
        return json.loads(data)

    def log_text(self):
        try:
            with open(self.proc.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def libconfig_text(settings):
    """A libconfig file from dotted settings (one group per first part)."""
    groups = collections.OrderedDict()
    for dotted, value in settings.items():
        if value is None:
            continue
        parts = dotted.split(".")
        g = groups
        for p in parts[:-1]:
            g = g.setdefault(p, collections.OrderedDict())
        g[parts[-1]] = value

    def val(v, indent):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[ " + ", ".join(val(x, indent) for x in v) + " ]"
        inner = indent + "  "
        return "{\n" + "".join("%s%s = %s;\n" % (inner, k, val(x, inner))
                               for k, x in v.items()) + indent + "}"
    return "".join("%s = %s;\n" % (k, val(v, "")) for k, v in groups.items())


# --------------------------------------------------------------------------
# Hosts and the cluster
# --------------------------------------------------------------------------


class Host:
    def __init__(self, cluster, name, octet, role, hostname=None):
        self.cluster = cluster
        self.name = name
        self.role = role
        self.ip = "%s.%d" % (cluster.subnet_prefix, octet)
        self.ns = "%s-%s-%s" % (PREFIX, cluster.run_id, name)
        self.netns = Netns(self.ns)
        # the root namespace's end of the host's veth: its port on the bridge
        self.port = "%s%sv%d" % (PREFIX, cluster.run_id, octet)
        self.hostname = hostname or name
        self.agent = None
        self.node = None
        self.link_up = True

    def exec_prefix(self):
        """What runs a command in this host: its network namespace and a UTS
        namespace with its hostname, each step exec'ing the next (the PID
        is the command's own)."""
        return in_netns(self.ns) + ["unshare", "--uts", "--",
                                    "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname]


class Cluster:
    """Builds, drives and removes the cluster. `mode` is "test" (a test run
    owns it: stale when its process is gone) or "script" (scripts/cluster.sh:
    lives until `down`). `hostnames` maps host names to the hostname their
    processes see (two hosts may share one); `node_settings` maps host
    names to extra meshnode settings. `store`: "postgres" (the users nodes
    share database users, the orders node has database orders, both on the
    pg host's PostgreSQL 15) or "sqlite" (a file per node, the pg host idle).
    on_spawn(proc) is called for every process started (the test registers
    it with its harness)."""

    def __init__(self, workdir=None, mode="test", hostnames=None, node_settings=None,
                 on_spawn=None, run_id=None, store="postgres"):
        need_root()
        self.mode = mode
        self.run_id = run_id or self._pick_run_id()
        self.workdir = workdir or tempfile.mkdtemp(prefix="meshnode-cluster.%s." % self.run_id)
        os.makedirs(self.workdir, exist_ok=True)
        self.subnet_prefix = "%s.%d" % (SUBNET_BASE, self._pick_third_octet())
        self.bridge = "%s%sbr" % (PREFIX, self.run_id)
        self.consul = consul_binary()
        self.meshnode = meshnode_binary()
        self.on_spawn = on_spawn
        self.owner = (os.getpid(), proc_start_time(os.getpid()))
        self.hosts = collections.OrderedDict()
        for name, (octet, role) in HOSTS.items():
            self.hosts[name] = Host(self, name, octet, role, (hostnames or {}).get(name))
        self.node_settings = node_settings or {}
        if store not in ("postgres", "sqlite"):
            raise ClusterError("store: postgres or sqlite, not %r" % (store,))
        self.store = store
        self.pg = None
        self.made_namespaces = []
        self.made_links = []
        self.made_bridge = False
        self.state_path = None
        _LIVE.append(self)

    @staticmethod
    def _pick_run_id():
        """Four hex digits no namespace or link on this machine uses yet."""
        taken = run(["ip", "netns", "list"]) + run(["ip", "-o", "link"])
        for _ in range(1000):
            run_id = "%04x" % random.randrange(0x10000)
            if "%s-%s-" % (PREFIX, run_id) not in taken and PREFIX + run_id not in taken:
                return run_id
        raise ClusterError("no free run id")

    def _pick_third_octet(self):
        used = run(["ip", "-4", "-o", "addr"]) + run(["ip", "-4", "route"])
        for _ in range(256):
            x = random.randrange(256)
            if "%s.%d." % (SUBNET_BASE, x) not in used:
                return x
        raise ClusterError("no free %s.x.0/24 subnet" % SUBNET_BASE)

    # -- accessors ---------------------------------------------------------

    @property
    def servers(self):
        return [self.hosts[s] for s in SERVERS]

    @property
    def node_hosts(self):
        return [h for h in self.hosts.values() if h.node is not None]

    @property
    def users_hosts(self):
        return [h for h in self.hosts.values() if h.role == "users"]

    @property
    def orders(self):
        return self.hosts["orders"]

    def marker(self):
        return "%s %s %s pid=%d start=%s" % (MARKER, self.run_id, self.mode, self.owner[0],
                                            self.owner[1])

    def spawned(self, proc):
        if self.on_spawn:
            self.on_spawn(proc)
        self.save_state()

    # -- network -----------------------------------------------------------

    def build_network(self):
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self.made_bridge = True
        self.save_state()
        run(["ip", "link", "set", self.bridge, "alias", self.marker()])
        self._no_ipv6("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % self.bridge)
        run(["ip", "link", "set", self.bridge, "up"])
        for h in self.hosts.values():
            run(["ip", "netns", "add", h.ns])
            self.made_namespaces.append(h.ns)
            self.save_state()
            run(in_netns(h.ns) + ["ip", "link", "set", "lo", "alias", self.marker()])
            run(in_netns(h.ns) + ["ip", "link", "set", "lo", "up"])
            run(["ip", "link", "add", h.port, "type", "veth", "peer", "name", "eth0",
                 "netns", h.ns])
            self.made_links.append(h.port)
            self.save_state()
            self._no_ipv6("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % h.port)
            run(["ip", "link", "set", h.port, "master", self.bridge])
            run(["ip", "link", "set", h.port, "up"])
            # /proc/sys/net is the namespace's own (no sysctl: procps is not in minbase)
            run(in_netns(h.ns) + ["sh", "-c",
                 "echo 1 >/proc/sys/net/ipv6/conf/eth0/disable_ipv6"], check=False)
            run(in_netns(h.ns) + ["ip", "addr", "add", h.ip + "/24", "dev", "eth0"])
            run(in_netns(h.ns) + ["ip", "link", "set", "eth0", "up"])

    @staticmethod
    def _no_ipv6(path):
        try:
            with open(path, "w") as f:
                f.write("1")
        except OSError:
            pass

    def partition(self, host):
        """Cuts `host` off: its bridge port goes down (its own stack and
        loopback keep working)."""
        run(["ip", "link", "set", host.port, "down"])
        host.link_up = False

    def heal(self, host):
        run(["ip", "link", "set", host.port, "up"])
        host.link_up = True

    # -- bring up ------------------------------------------------------------

    def up(self):
        """Network, three servers (waits for a leader), a client agent per
        other host (waits until each knows the leader), then the nodes
        (waits until the orders host's agent has every one passing). Returns
        the seconds each phase took."""
        t0 = now()
        self.build_network()
        t_net = now()
        for h in self.hosts.values():
            h.agent = Agent(self, h)
        for s in self.servers:
            s.agent.start()
        for h in self.hosts.values():
            if h.role != "server":
                h.agent.start()
        self.wait_leader(timeout=30)
        for h in self.hosts.values():
            wait_for(lambda h=h: h.agent.leader(), 30, what="%s's agent to know the leader"
                     % h.name)
        t_consul = now()
        if self.store == "postgres":
            self.start_postgres()
        t_pg = now()
        for h in self.hosts.values():
            if h.role in ("users", "orders"):
                h.node = Meshnode(self, h, self.node_settings.get(h.name))
                h.node.start()
        for h in self.node_hosts:
            wait_for(lambda h=h: h.node.request("GET", "/health", timeout=1.0)[0] == 200, 15,
                     what="%s's node to answer /health" % h.name)
        self.wait_all_passing(timeout=20)
        t_nodes = now()
        self.save_state()
        return {"network": t_net - t0, "consul": t_consul - t_net, "postgres": t_pg - t_consul,
                "nodes": t_nodes - t_pg, "total": t_nodes - t0}

    PG_USER = "app"
    PG_PASSWORD = "cluster-app-password"

    def store_settings(self, node):
        """The database settings of `node`."""
        if self.store == "sqlite":
            return {"database.driver": "sqlite",
                    "database.path": os.path.join(node.dir, "%s.db" % node.name)}
        return {"database.driver": "postgres", "database.host": self.hosts["pg"].ip,
                "database.port": 5432, "database.user": self.PG_USER,
                "database.password": self.PG_PASSWORD, "database.name": node.name}

    def start_postgres(self):
        """PostgreSQL 15 on the pg host, on its address at 5432
        (tests/integration/pgserver.py: run as the postgres user, data in
        <workdir>/pg/postgres), with role app owning databases users and
        orders, and registered with the pg host's agent as service
        "postgres" with a TCP check."""
        if INTEGRATION not in sys.path:
            sys.path.insert(0, INTEGRATION)
        import pgserver  # noqa: E402 - needs the harness; only with a PostgreSQL host
        h = self.hosts["pg"]
        pgserver.template()  # also opens the harness's run directory to the postgres user
        top = os.path.join(self.workdir, "pg")
        os.makedirs(top, exist_ok=True)
        for d in (self.workdir, top):
            os.chmod(d, 0o711)  # the postgres user goes through to its own directory
        self.pg = pgserver.PgServer(host=h.ip, port=5432, prefix=h.exec_prefix(),
                                    dir=os.path.join(top, "postgres"), label="postgres:pg")
        pm = self.pg.postmaster_pid()
        self.pg_proc = {"label": "postgres:pg", "pid": pm, "start": proc_start_time(pm),
                        "log": self.pg.log_path, "host": h.name}
        self.save_state()
        self.pg.create_role_with_password(self.PG_USER, self.PG_PASSWORD)
        for db in ("users", "orders"):
            self.pg.create_database(db, owner=self.PG_USER)
        status, _, data = h.agent.request("PUT", "/v1/agent/service/register", {
            "ID": "postgres", "Name": "postgres", "Address": h.ip, "Port": 5432,
            "Check": {"TCP": "%s:5432" % h.ip, "Interval": "1s", "Timeout": "1s"}})
        if status != 200:
            raise ClusterError("registering postgres with the pg host's agent: %d %s"
                               % (status, data[:200]))

    def wait_leader(self, timeout=30, exclude=None):
        """The leader's address once a running server other than `exclude`
        names one (polled every 50 ms)."""
        def leader():
            for s in self.servers:
                if s.name == exclude or not s.agent.proc.running():
                    continue
                try:
                    addr = s.agent.leader()
                except (OSError, http.client.HTTPException, ClusterError):
                    continue
                if addr and (exclude is None or not addr.startswith(self.hosts[exclude].ip + ":")):
                    return addr
            return None
        return wait_for(leader, timeout, what="a raft leader")

    def leader_host(self):
        addr = self.wait_leader(timeout=10)
        ip = addr.rsplit(":", 1)[0]
        return next(s for s in self.servers if s.ip == ip)

    def raft_stats(self, server):
        return server.agent.get("/v1/agent/self", timeout=2.0)["Stats"]["raft"]

    def server_ready(self, server, min_index=0):
        """True when `server` is a raft voter in a three-server
        configuration that is the leader, or a follower in contact with the
        leader (within 0.5 s) that has applied at least `min_index`."""
        if not server.agent.proc.running():
            return False
        r = self.raft_stats(server)
        if r.get("num_peers") != str(len(SERVERS) - 1) or int(r["applied_index"]) < min_index:
            return False
        if r.get("state") == "Leader":
            return True
        return r.get("state") == "Follower" and duration_s(r.get("last_contact")) < 0.5

    def servers_ready(self):
        return all(self.server_ready(s) for s in self.servers) and self.wait_leader(1)

    def commit_index(self):
        """The highest commit index a running server reports."""
        best = 0
        for s in self.servers:
            try:
                best = max(best, int(self.raft_stats(s)["commit_index"]))
            except (OSError, http.client.HTTPException, ClusterError, KeyError, ValueError):
                pass
        return best

    def restore(self, timeout=60):
        """Puts the cluster back as up() left it, whatever a scenario did:
        every link up, every agent and node running, three ready servers,
        every node passing at the orders host's agent, and every circuit of
        the orders node closed."""
        for h in self.hosts.values():
            if not h.link_up:
                self.heal(h)
            if h.agent and not h.agent.proc.running():
                h.agent.start()
            if h.node and not h.node.proc.running():
                h.node.start()
        if self.pg is not None and not self.pg.running():
            self.pg.start()
        wait_for(self.servers_ready, timeout, interval=0.1, what="three ready servers")
        for h in self.hosts.values():
            wait_for(lambda h=h: h.agent.leader(), timeout, what="%s's agent to know the leader"
                     % h.name)
        self.wait_all_passing(timeout=timeout)
        self.wait_circuits_closed(timeout=timeout)

    def wait_circuits_closed(self, timeout=30):
        """Waits until the orders node sees every users instance with its
        circuit closed, placing an order (user 1) every 0.2 s meanwhile:
        a circuit left open by an earlier failure closes only once its
        open time is over and a call through it succeeds."""
        o = self.orders.node

        def closed():
            view = o.peers()["instances"]
            if len(view) == len(self.users_hosts) and all(i["circuit"] == "closed"
                                                          for i in view):
                return True
            o.request("POST", "/orders", {"user_id": 1, "product": "restore", "quantity": 1})
            return False
        wait_for(closed, timeout, interval=0.2, what="every users circuit closed at orders")

    def expected_passing(self, service):
        return sorted((h.name, h.node.service_id) for h in self.node_hosts
                      if h.node.name == service)

    def wait_all_passing(self, timeout=20, via=None):
        """Waits until `via`'s agent (the orders host's) has every node
        passing with its expected id, and PostgreSQL when there is one."""
        via = via or self.orders
        for service in ("users", "orders") + (("postgres",) if self.pg else ()):
            want = (self.expected_passing(service) if service != "postgres"
                    else [("pg", "postgres")])
            wait_for(lambda s=service, w=want: via.agent.passing(s) == w, timeout,
                     what="%s passing at %s's agent: %s" % (service, via.name, want))

    # -- state ---------------------------------------------------------------

    def state(self):
        procs = []
        for h in self.hosts.values():
            for p in (h.agent and h.agent.proc, h.node and h.node.proc):
                if p is not None and p.pid is not None:
                    d = p.state()
                    d["host"] = h.name
                    procs.append(d)
        if self.pg is not None:
            procs.append(self.pg_proc)
        return {"run_id": self.run_id, "mode": self.mode, "owner": list(self.owner),
                "workdir": self.workdir, "subnet": self.subnet_prefix + ".0/24",
                "bridge": self.bridge if self.made_bridge else None,
                "namespaces": list(self.made_namespaces),
                "links": list(self.made_links),
                "hosts": {h.name: {"ns": h.ns, "ip": h.ip, "port": h.port, "role": h.role,
                                   "hostname": h.hostname,
                                   "service_id": h.node.service_id if h.node else None}
                          for h in self.hosts.values()},
                "processes": procs}

    def save_state(self):
        if not self.state_path:
            return
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state(), f, indent=2)
        os.replace(tmp, self.state_path)

    # -- tear down -----------------------------------------------------------

    def down(self):
        """Kills every process started (by PID), deletes every namespace
        and the bridge. Idempotent; never raises."""
        errors = teardown(self.state())
        for h in self.hosts.values():
            h.netns.close()
        self.made_namespaces = []
        self.made_links = []
        self.made_bridge = False
        if self in _LIVE:
            _LIVE.remove(self)
        return errors


def teardown(state):
    """Removes what a state (Cluster.state() or a state file) names: its
    processes by PID (SIGKILL, only when the PID still has its recorded
    start time) and any process left inside its namespaces, then its
    links (the hosts' ends on the bridge), its namespaces and its bridge.
    Returns the errors."""
    errors = []
    killed = []
    for p in state.get("processes", []):
        if pid_matches(p.get("pid"), p.get("start")):
            killed.append((p["pid"], p["start"], p.get("label")))
    for ns in state.get("namespaces", []):
        # A process we did not record (none should exist) would keep the
        # namespace alive after `ip netns del`: ours, being in it.
        for pid in netns_pids(ns):
            killed.append((pid, proc_start_time(pid), "pid in %s" % ns))
    for pid, start, _ in killed:
        if pid_matches(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = now() + 10
    for pid, start, label in killed:
        while pid_matches(pid, start) and now() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.02)
        if pid_matches(pid, start):
            errors.append("pid %d (%s) still running" % (pid, label))
    # Deleting a veth end deletes its peer at once; a namespace itself can
    # outlive `ip netns del` for minutes while the orphaned TCP connections
    # of killed processes retry their FINs, and would keep its veth with it.
    for link in state.get("links", []):
        p = subprocess.run(["ip", "link", "del", link], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        if p.returncode != 0 and link_exists(link):
            errors.append("ip link del %s: %s" % (link, p.stderr.decode().strip()))
    for ns in state.get("namespaces", []):
        p = subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        if p.returncode != 0 and os.path.exists("/run/netns/" + ns):
            errors.append("ip netns del %s: %s" % (ns, p.stderr.decode().strip()))
    if state.get("bridge"):
        p = subprocess.run(["ip", "link", "del", state["bridge"]], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        if p.returncode != 0 and link_exists(state["bridge"]):
            errors.append("ip link del %s: %s" % (state["bridge"], p.stderr.decode().strip()))
    return errors


def run_links(run_id):
    """The root namespace's ends of a run's veths (mnc<run>v<n>), by name:
    only for a run already proven ours by its namespaces' marker."""
    out = subprocess.run(["ip", "-o", "link"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout.decode()
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
             if line.count(":") >= 2]
    return [n for n in names if n.startswith("%s%sv" % (PREFIX, run_id))]


def netns_pids(ns):
    if not os.path.exists("/run/netns/" + ns):
        return []
    out = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout.decode()
    return [int(x) for x in out.split() if x.isdigit()]


def link_exists(name):
    return subprocess.run(["ip", "link", "show", name], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def link_alias(name, ns=None):
    argv = (in_netns(ns) if ns else []) + ["ip", "-o", "link", "show", name]
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode()
    if " alias " not in out:
        return None
    return out.split(" alias ", 1)[1].strip().split("\\")[0].strip()


def parse_marker(alias):
    """(run id, mode, owner pid, owner start) from a marker, or None."""
    if not alias or not alias.startswith(MARKER + " "):
        return None
    words = alias.split()
    try:
        kv = dict(w.split("=", 1) for w in words[3:])
        return words[1], words[2], int(kv["pid"]), int(kv["start"])
    except (IndexError, KeyError, ValueError):
        return None


def clean_stale(log=print):
    """Removes the namespaces and bridges of test runs that died without
    tearing down: named mnc-*, carrying our marker, mode "test", and whose
    owner process (PID and start time) is gone. Anything else, a running
    test's or a `cluster.sh up`'s cluster included, is left alone.
    Returns the run ids removed."""
    removed = set()
    try:
        names = [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines()
                 if line.strip()]
    except ClusterError:
        return []
    stale = collections.defaultdict(list)
    for ns in names:
        if not ns.startswith(PREFIX + "-"):
            continue
        m = parse_marker(link_alias("lo", ns))
        if m and m[1] == "test" and not pid_matches(m[2], m[3]):
            stale[m[0]].append(ns)
    for run_id, namespaces in stale.items():
        bridge = "%s%sbr" % (PREFIX, run_id)
        m = parse_marker(link_alias(bridge))
        errors = teardown({"namespaces": namespaces, "links": run_links(run_id),
                           "bridge": bridge if m and m[0] == run_id else None})
        log("cluster: removed stale run %s (%d namespaces)%s" % (
            run_id, len(namespaces), "; " + "; ".join(errors) if errors else ""))
        removed.add(run_id)
    return sorted(removed)


_LIVE = []  # clusters of this process not yet torn down


def down_all():
    """Tears down every cluster of this process (at exit, on SIGTERM)."""
    for c in list(_LIVE):
        c.down()


# --------------------------------------------------------------------------
# A steady stream of orders
# --------------------------------------------------------------------------


class Order:
    __slots__ = ("i", "sched", "start", "end", "status", "error")

    def __init__(self, i, sched):
        self.i, self.sched = i, sched
        self.start = self.end = None
        self.status = None
        self.error = None

    @property
    def ok(self):
        return self.status == 201

    @property
    def latency(self):
        return None if self.end is None else self.end - self.start


class OrderStream:
    """POST /orders to the orders node at `rate` a second, from inside the
    orders host (each order its own thread and connection, started on
    schedule whatever the earlier ones do: a slow order never delays the
    next). At most `max_in_flight` at once; one over that is recorded as
    failed (error "client bound"), never queued. Timestamps are
    time.monotonic()."""

    def __init__(self, cluster, rate=10.0, user_id=1, timeout=30.0, max_in_flight=200):
        self.cluster = cluster
        self.rate = float(rate)
        self.user_id = user_id
        self.timeout = timeout
        self.orders = []
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(max_in_flight)
        self.stopping = threading.Event()
        self.thread = None
        self.threads = []

    def start(self):
        self.thread = threading.Thread(target=self._run, name="order-stream", daemon=True)
        self.thread.start()
        return self

    def _run(self):
        t0 = now()
        i = 0
        while not self.stopping.is_set():
            sched = t0 + i / self.rate
            delay = sched - now()
            if delay > 0 and self.stopping.wait(delay):
                break
            o = Order(i, sched)
            with self.lock:
                self.orders.append(o)
            if self.slots.acquire(blocking=False):
                t = threading.Thread(target=self._one, args=(o,), daemon=True)
                self.threads.append(t)
                t.start()
            else:
                o.start = o.end = now()
                o.error = "client bound"
            i += 1

    def _one(self, o):
        node = self.cluster.orders.node
        o.start = now()
        try:
            status, _, data = node.request("POST", "/orders", {
                "user_id": self.user_id, "product": "stream-%d" % o.i, "quantity": 1},
                timeout=self.timeout)
            o.status = status
            if status != 201:
                o.error = data[:200].decode("utf-8", "replace")
        except Exception as e:  # noqa: BLE001 - recorded
            o.error = repr(e)
        finally:
            o.end = now()
            self.slots.release()

    def stop(self, drain=40.0):
        """Stops starting orders and waits (bounded) for those in flight."""
        self.stopping.set()
        if self.thread:
            self.thread.join(5)
        deadline = now() + drain
        for t in self.threads:
            t.join(max(0.0, deadline - now()))
        return self

    def between(self, t_from=None, t_to=None):
        with self.lock:
            return [o for o in self.orders
                    if (t_from is None or o.sched >= t_from) and (t_to is None or o.sched < t_to)]

    @staticmethod
    def summary(orders):
        """total, failed, statuses, p50/p99/max latency (s), slow (>1 s)."""
        done = [o for o in orders if o.end is not None]
        lat = sorted(o.latency for o in done if o.start is not None)
        statuses = collections.Counter(o.status if o.status is not None else o.error
                                       for o in orders)

        def pct(p):
            if not lat:
                return None
            return lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))]
        return {
            "total": len(orders),
            "failed": sum(1 for o in orders if not o.ok),
            "unfinished": len(orders) - len(done),
            "statuses": dict(statuses),
            "p50": pct(50), "p99": pct(99), "max": lat[-1] if lat else None,
            "slow": sum(1 for x in lat if x > 1.0),
            "errors": [o.error for o in orders if not o.ok][:5],
        }


class NodeMonitor:
    """Polls every node of the cluster every `interval` seconds while it
    runs: its /health status and its meshnode_consul_registered gauge.
    `problems` lists (host, what) for every poll that found the node not
    answering 200 or not registered."""

    def __init__(self, cluster, interval=0.2):
        self.cluster = cluster
        self.interval = interval
        self.polls = 0
        self.problems = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="node-monitor", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.stopping.wait(self.interval):
            for h in self.cluster.node_hosts:
                try:
                    status = h.node.request("GET", "/health", timeout=2.0)[0]
                    registered = h.node.metric("meshnode_consul_registered")
                except Exception as e:  # noqa: BLE001 - recorded
                    self.problems.append((h.name, repr(e)))
                    continue
                if status != 200:
                    self.problems.append((h.name, "/health %d" % status))
                if registered != 1:
                    self.problems.append((h.name, "registered %g" % registered))
            self.polls += 1

    def stop(self):
        self.stopping.set()
        self.thread.join(10)
        return self


# Figure lines ("# leader killed: ...") the scenarios record; conftest.py
# prints them at the end of the run.
FIGURES = []


def figure(text):
    line = "# " + text
    FIGURES.append(line)
    print(line, flush=True)


# --------------------------------------------------------------------------
# scripts/cluster.sh: up | down | status
# --------------------------------------------------------------------------


def load_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def print_howto(c, out=sys.stdout):
    o = c.orders
    w = out.write
    w("\ncluster %s is up: subnet %s.0/24 on bridge %s, no route out; state in %s\n"
      % (c.run_id, c.subnet_prefix, c.bridge, c.state_path))
    w("\n%-7s %-14s %-20s %s\n" % ("host", "address", "namespace", "runs"))
    for h in c.hosts.values():
        runs = "consul server" if h.role == "server" else "consul client"
        if h.node:
            runs += " + meshnode %s (%s, port %d)" % (h.node.name, h.node.service_id, h.node.port)
        if h.name == "pg" and c.pg:
            runs += " + PostgreSQL 15 (port 5432, databases users, orders)"
        w("%-7s %-14s %-20s %s\n" % (h.name, h.ip, h.ns, runs))
    w("\nNothing listens outside the namespaces: run commands inside one with\n"
      "`ip netns exec <namespace> ...`. In every host, its own agent answers at\n"
      "127.0.0.1:8500 (the default for scripts/consul and for meshnode):\n\n")
    w("  ip netns exec %s %s/scripts/consul members\n" % (o.ns, REPO))
    w("  ip netns exec %s curl -s '127.0.0.1:8500/v1/health/service/users?passing'\n" % o.ns)
    w("  ip netns exec %s curl -s -XPOST -H 'Content-Type: application/json' \\\n"
      "       -d '{\"user_id\":1,\"product\":\"book\",\"quantity\":1}' %s:%d/orders\n"
      % (o.ns, o.ip, NODE_PORT))
    w("  ip netns exec %s curl -s %s:%d/peers/users\n" % (o.ns, o.ip, NODE_PORT))
    w("  ip netns exec %s curl -s 127.0.0.1:8500/v1/status/leader\n" % c.servers[0].ns)
    if c.pg:
        w("\nPostgreSQL, through its Unix socket (visible from every namespace):\n\n  %s\n"
          % " ".join(c.pg.psql_argv("users")))
    u = c.hosts["users2"]
    w("\nPartition users2 and heal it (its bridge port):\n\n"
      "  ip link set %s down\n  ip link set %s up\n" % (u.port, u.port))
    w("\nStop a server (or any process) by its PID, listed in the state file; logs are\n"
      "under %s/<host>/. `scripts/cluster.sh down` removes everything.\n" % c.workdir)


def cmd_up(args):
    need_root()
    if os.path.exists(args.state):
        st = load_state(args.state)
        raise ClusterError("a cluster is already up (%s, run %s): scripts/cluster.sh down first"
                           % (args.state, st and st.get("run_id")))
    os.makedirs(os.path.dirname(args.state), exist_ok=True)
    c = Cluster(mode="script")
    c.state_path = args.state
    c.save_state()
    try:
        times = c.up()
        for h in c.users_hosts:
            status, _, data = h.node.request("POST", "/users",
                                             {"name": "Ada", "email": "ada@example.com"})
            if status not in (201, 409):  # 409: the second host, on a shared database
                raise ClusterError("POST /users on %s: %d %s" % (h.name, status, data))
        if c.pg is not None:
            c.pg.detach()  # it outlives this process, like the others; `down` kills it
    except BaseException:
        errors = c.down()
        os.unlink(args.state)
        sys.stderr.write("cluster: up failed; everything removed%s; logs in %s\n" % (
            " (" + "; ".join(errors) + ")" if errors else "", c.workdir))
        raise
    print_howto(c)
    print("\nup in %.1f s (network %.1f s, consul %.1f s, postgres %.1f s, nodes %.1f s); "
          "user 1 exists on both users hosts (%s)" % (
              times["total"], times["network"], times["consul"], times["postgres"],
              times["nodes"], "one database" if c.pg else "one SQLite file each"))
    return 0


def marked_runs():
    """{run id: (mode, [namespaces])} of every namespace carrying our marker."""
    runs = {}
    for line in run(["ip", "netns", "list"]).splitlines():
        ns = line.split()[0] if line.strip() else ""
        if not ns.startswith(PREFIX + "-"):
            continue
        m = parse_marker(link_alias("lo", ns))
        if m:
            runs.setdefault(m[0], (m[1], []))[1].append(ns)
    return runs


def cmd_down(args):
    need_root()
    if args.run:
        # A cluster whose state file is gone: by its marker, never by name alone.
        runs = marked_runs()
        if args.run not in runs:
            raise ClusterError("no namespace carries the marker of run %s" % args.run)
        bridge = "%s%sbr" % (PREFIX, args.run)
        m = parse_marker(link_alias(bridge))
        errors = teardown({"namespaces": runs[args.run][1], "links": run_links(args.run),
                           "bridge": bridge if m and m[0] == args.run else None})
        for e in errors:
            sys.stderr.write("cluster: %s\n" % e)
        print("cluster %s removed: %d namespaces and every process in them%s" % (
            args.run, len(runs[args.run][1]), ", bridge " + bridge if m else ""))
        return 1 if errors else 0
    st = load_state(args.state)
    if st is None:
        print("cluster: no state file at %s: nothing to remove" % args.state)
        others = marked_runs()
        if others:
            print("clusters of this project on this machine (scripts/cluster.sh down --run ID "
                  "removes one):")
            for run_id, (mode, namespaces) in sorted(others.items()):
                print("  %s  %s, %d namespaces" % (run_id, mode, len(namespaces)))
        return 0
    errors = teardown(st)
    if errors:
        for e in errors:
            sys.stderr.write("cluster: %s\n" % e)
        return 1
    shutil.rmtree(st.get("workdir") or "", ignore_errors=True)
    os.unlink(args.state)
    print("cluster %s removed: %d processes, %d namespaces, bridge %s, %s" % (
        st["run_id"], len(st.get("processes", [])), len(st.get("namespaces", [])),
        st.get("bridge"), st.get("workdir")))
    return 0


def cmd_status(args):
    st = load_state(args.state)
    if st is None:
        print("cluster: not up (no %s)" % args.state)
        return 1
    print("cluster %s, subnet %s, bridge %s" % (st["run_id"], st["subnet"], st["bridge"]))
    for p in st["processes"]:
        print("  %-16s pid %-7d %s" % (p["label"], p["pid"],
                                      "running" if pid_matches(p["pid"], p["start"]) else "gone"))
    srv = st["hosts"]["srv1"]
    out = subprocess.run(in_netns(srv["ns"]) + [consul_binary(), "members"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
    print(out.rstrip())
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/cluster.sh",
                                 description="A meshnode cluster in network namespaces.")
    ap.add_argument("command", choices=("up", "down", "status"))
    ap.add_argument("--state", default=os.environ.get("MESHNODE_CLUSTER_STATE", STATE_DEFAULT),
                    help="state file (default %(default)s)")
    ap.add_argument("--run", metavar="ID",
                    help="down: the cluster of run ID, found by its namespaces' marker (when "
                         "its state file is lost)")
    args = ap.parse_args(argv)
    try:
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status}[args.command](args)
    except ClusterError as e:
        sys.stderr.write("cluster: %s\n" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
