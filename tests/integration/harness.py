"""Integration test harness: a real `consul agent -dev` and real meshnode
processes on free loopback ports, driven over real HTTP. Standard library only.

Every process started here is recorded by PID in PROCS; kill_all() (run at
exit, and by conftest.py when the pytest session ends or gets SIGTERM) kills
exactly those PIDs. Every wait is bounded. Logs and temp files live under one
run directory (TMP_ROOT) that is removed at exit unless KEEP_TMP is set
(conftest.py sets it when a test failed).
"""

import atexit
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# --------------------------------------------------------------------------
# Run-wide state: temp root, process registry, log ownership
# --------------------------------------------------------------------------

TMP_ROOT = tempfile.mkdtemp(prefix="meshnode-itest.")
KEEP_TMP = bool(os.environ.get("MESHNODE_ITEST_KEEP"))

# pid -> subprocess.Popen of every process this run started and has not reaped.
PROCS = {}

# Every log file written by a process we started: dicts with label, path and
# owner. The owner is CURRENT_OWNER when the process started: conftest.py
# sets it to the pytest node id of what runs (a test, or the module or class
# whose fixture is being set up), so a failing test shows the logs of its own
# processes and of its fixtures'.
LOGS = []
CURRENT_OWNER = None


def _register(proc):
    PROCS[proc.pid] = proc


def _unregister(proc):
    PROCS.pop(proc.pid, None)


def _add_log(label, path):
    LOGS.append({"label": label, "path": path, "owner": CURRENT_OWNER})


def pid_alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_pids_gone(pids, timeout=10.0, what="processes gone"):
    """Waits (bounded) until none of `pids` is alive (pid_alive)."""
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=timeout, interval=0.02,
               what=what)


def kill_all():
    """SIGKILL every process this run started and still owns, by PID."""
    for pid, proc in list(PROCS.items()):
        try:
            if proc.poll() is None:
                os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired, OSError):
            pass
        PROCS.pop(pid, None)


def cleanup_tmp():
    if KEEP_TMP:
        return
    shutil.rmtree(TMP_ROOT, ignore_errors=True)


def _at_exit():
    kill_all()
    cleanup_tmp()


atexit.register(_at_exit)


def mkdtemp(prefix):
    return tempfile.mkdtemp(prefix=prefix + ".", dir=TMP_ROOT)


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "<cannot read %s: %s>" % (path, e)
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------


def free_port(udp_too=False):
    """A port that was free on 127.0.0.1 a moment ago (TCP, and UDP too when
    asked: Serf listens on both)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if not udp_too:
            return port
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
    raise RuntimeError("no free port found")


def port_open(port, host="127.0.0.1", timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class WaitTimeout(AssertionError):
    pass


def wait_until(predicate, timeout=10.0, interval=0.1, what=None):
    """Polls predicate() until it returns a truthy value, which is returned.
    Exceptions from predicate count as "not yet". Raises WaitTimeout (an
    AssertionError, so a test fails rather than errors) at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (
                timeout, what or getattr(predicate, "__name__", "condition"))
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise WaitTimeout(msg)
        time.sleep(interval)


def http_request(port, method, path, body=None, headers=None, timeout=5.0,
                 host="127.0.0.1"):
    """One HTTP request on a fresh connection, never through a proxy.
    Returns (status, headers with lower-case keys, body bytes)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, hdrs, data
    finally:
        conn.close()


def parse_raw_response(raw):
    """Splits raw HTTP/1.x response bytes into (status, headers, body)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no complete response head in %r" % raw[:200])
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def raw_exchange(port, data, timeout=5.0, host="127.0.0.1", half_close=False):
    """Sends `data` as-is and returns the raw bytes of the first response:
    the head, then Content-Length bytes of body (or up to EOF without one).
    Returns what arrived if the peer closes early; b"" if nothing did."""
    out = b""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        if data:
            s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        need = None
        while True:
            if need is not None and len(out) >= need:
                return out[:need]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("no complete response within %.1fs; got %r"
                                     % (timeout, out[:300]))
            s.settimeout(remaining)
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk
            if need is None and b"\r\n\r\n" in out:
                head = out.split(b"\r\n\r\n", 1)[0]
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        need = len(head) + 4 + int(v.strip())
                        break


def read_responses(sock, count, timeout=5.0, head_only=()):
    """Reads up to `count` HTTP/1.x responses from `sock` in order, framed by
    Content-Length (a response whose index is in `head_only`, the answer to
    a HEAD, has no body whatever it announces). Returns (responses, rest,
    eof): responses are (status, headers, body, raw head) tuples, rest the
    bytes after the last one, eof True when the peer closed. Bounded by
    `timeout` in all; stops early at EOF or a reset."""
    out = []
    buf = b""
    eof = False
    deadline = time.monotonic() + timeout
    while len(out) < count:
        head_end = buf.find(b"\r\n\r\n")
        if head_end != -1:
            head = buf[:head_end]
            status, hdrs, _ = parse_raw_response(head + b"\r\n\r\n")
            n = 0 if len(out) in head_only else int(hdrs.get("content-length", "0"))
            if len(buf) >= head_end + 4 + n:
                out.append((status, hdrs, buf[head_end + 4:head_end + 4 + n], head))
                buf = buf[head_end + 4 + n:]
                continue
        if eof:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            eof = True
            continue
        if not chunk:
            eof = True
        buf += chunk
    return out, buf, eof


def wait_eof(sock, timeout=2.0):
    """What the peer does next: "eof" when it closes (or resets) within
    `timeout`, "data" when it sends more bytes, "open" when neither."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "open"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return "open"
        except (ConnectionResetError, BrokenPipeError):
            return "eof"
        return "data" if chunk else "eof"


def relay_listen(relay, host):
    """Opens a relay's listener on a free port of `host` (relay.port) and
    starts its accept thread (relay._accept)."""
    relay.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    relay.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    relay.listener.bind((host, 0))
    relay.listener.listen(128)
    relay.port = relay.listener.getsockname()[1]
    relay.thread = threading.Thread(target=relay._accept, daemon=True)
    relay.thread.start()


def relay_accept(relay, joined):
    """The accept loop of a relay (DelayRelay, TrickleRelay): each client
    of relay.listener is joined to a new connection to relay.target and
    handed to joined(client, server), called with relay.lock held, which
    starts its threads; returns when the listener closes or the relay
    stops."""
    while not relay.stopped:
        try:
            client, _ = relay.listener.accept()
        except OSError:
            return
        try:
            server = socket.create_connection(relay.target, timeout=5)
            server.settimeout(None)
        except OSError:
            client.close()
            continue
        with relay.lock:
            if relay.stopped:
                client.close()
                server.close()
                return
            relay.connections += 1
            joined(client, server)


class DelayRelay:
    """A loopback TCP relay in front of a real server: every connection to
    `port` is joined to a new connection to `target_port`; the client's
    bytes pass at once, the server's are each held `delay` seconds from
    when they arrived. `requests` counts the request lines that passed
    (" HTTP/1.1\r\n" in the client's bytes). stop() closes everything."""

    def __init__(self, target_port, delay=3.0, host="127.0.0.1"):
        self.target = (host, target_port)
        self.delay = delay
        self.lock = threading.Lock()
        self.requests = 0
        self.connections = 0
        self.socks = []
        self.stopped = False
        relay_listen(self, host)

    def _accept(self):
        def joined(client, server):
            self.socks += [client, server]
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client), daemon=True).start()
        relay_accept(self, joined)

    def _upstream(self, client, server):
        tail = b""
        marker = b" HTTP/1.1\r\n"
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            seen = tail + data
            with self.lock:
                self.requests += seen.count(marker)
            tail = seen[-(len(marker) - 1):]
            try:
                server.sendall(data)
            except OSError:
                break
        try:
            server.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _downstream(self, server, client):
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                data = b""
            release = time.monotonic() + self.delay
            while not self.stopped and time.monotonic() < release:
                time.sleep(min(0.05, max(0.0, release - time.monotonic())))
            if self.stopped:
                break
            if not data:
                break
            try:
                client.sendall(data)
            except OSError:
                break
        try:
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stop(self):
        with self.lock:
            self.stopped = True
            socks = list(self.socks)
        for s in [self.listener] + socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


class TrickleRelay:
    """A loopback TCP relay in front of a real HTTP/1.x server that can slow
    down or withhold the answers to chosen requests, switchable while it
    runs. Every connection to `port` is joined to a new connection to
    `target_port`; the client's bytes always pass at once.

    Each request line seen in the client's bytes ("GET /path HTTP/1.1") is
    tested with `affects(method, path)` (default: every request); the
    server's bytes that follow an affected request on that connection are,
    per the mode in force as they are forwarded:
      "normal"  forwarded at once;
      "trickle" held and released one byte every 1/`rate` seconds;
      "silent"  held, none released.
    Answers to requests not affected always pass at once. The decision is
    per request, not per connection, so a kept-alive connection follows a
    mode switch from its next request on; held bytes stay in order, so
    switching back to "normal" sends everything held at once and the
    stream stays valid HTTP. A switch never cuts a connection (drop() does).
    A client that closes while bytes are held is disconnected from the
    server too. Counters: connections, requests, affected (request lines
    seen, and those that matched). stop() closes everything."""

    MODES = ("normal", "trickle", "silent")
    _REQUEST_LINE = re.compile(rb"([A-Z]{3,10}) (\S+) HTTP/1\.[01]\r\n")

    class _Conn:
        def __init__(self, client, server):
            self.client = client
            self.server = server
            self.affected = False    # the last request line seen matched
            self.client_eof = False
            self.ends = 2            # threads still using the sockets

    def __init__(self, target_port, affects=None, rate=1.0, host="127.0.0.1"):
        self.target = (host, target_port)
        self.affects = affects or (lambda method, path: True)
        self.rate = float(rate)
        self.mode = "normal"
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.affected = 0
        self.conns = []
        self.stopped = False
        relay_listen(self, host)

    @property
    def addr(self):
        return "http://127.0.0.1:%d" % self.port

    def set_mode(self, mode):
        if mode not in self.MODES:
            raise ValueError("mode must be one of %r" % (self.MODES,))
        with self.lock:
            self.mode = mode

    def drop(self, affected_only=True):
        """Cuts the connections in use (those whose last request was
        affected, or all): both sides see a reset or EOF at once."""
        with self.lock:
            conns = [c for c in self.conns if c.affected or not affected_only]
        for c in conns:
            self._shut(c)

    def _accept(self):
        def joined(client, server):
            conn = self._Conn(client, server)
            self.conns.append(conn)
            threading.Thread(target=self._upstream, args=(conn,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(conn,), daemon=True).start()
        relay_accept(self, joined)

    @staticmethod
    def _shut(conn):
        for s in (conn.client, conn.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _end(self, conn):
        with self.lock:
            conn.ends -= 1
            last = conn.ends == 0
            if last and conn in self.conns:
                self.conns.remove(conn)
        if last:
            for s in (conn.client, conn.server):
                try:
                    s.close()
                except OSError:
                    pass

    def _upstream(self, conn):
        carry = b""
        while True:
            try:
                data = conn.client.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            seen = carry + data
            last_end = 0
            for m in self._REQUEST_LINE.finditer(seen):
                hit = bool(self.affects(m.group(1).decode("latin-1"),
                                        m.group(2).decode("latin-1")))
                with self.lock:
                    self.requests += 1
                    self.affected += hit
                    conn.affected = hit
                last_end = m.end()
            # keep an unfinished request line for the next read
            carry = seen[last_end:][-4096:]
            try:
                conn.server.sendall(data)
            except OSError:
                break
        with self.lock:
            conn.client_eof = True
        try:
            conn.server.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._end(conn)

    def _downstream(self, conn):
        held = bytearray()
        server_eof = False
        next_byte = 0.0
        while not self.stopped:
            if not server_eof:
                try:
                    ready, _, _ = select.select([conn.server], [], [], 0.05)
                except (OSError, ValueError):
                    break
                if ready:
                    try:
                        data = conn.server.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        held += data
                    else:
                        server_eof = True
            else:
                time.sleep(0.05)
            with self.lock:
                mode = self.mode if conn.affected else "normal"
                client_eof = conn.client_eof
            if held and client_eof and mode != "normal":
                break  # the client gave up on what we hold
            out = b""
            if mode == "normal":
                out, held = bytes(held), bytearray()
            elif mode == "trickle" and held and time.monotonic() >= next_byte:
                out, held = bytes(held[:1]), held[1:]
                next_byte = time.monotonic() + 1.0 / self.rate
            if out:
                try:
                    conn.client.sendall(out)
                except OSError:
                    break
            if server_eof and not held:
                try:
                    conn.client.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                break
        self._shut(conn)
        self._end(conn)

    def stop(self):
        with self.lock:
            self.stopped = True
            conns = list(self.conns)
        for op in (lambda: self.listener.shutdown(socket.SHUT_RDWR), self.listener.close):
            try:
                op()
            except OSError:
                pass
        for c in conns:
            self._shut(c)


def libconfig_value(v, indent=""):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(libconfig_value(x) for x in v) + " ]"
    if isinstance(v, dict):
        inner = indent + "  "
        body = "".join("%s%s = %s;\n" % (inner, k, libconfig_value(x, inner))
                       for k, x in v.items())
        return "{\n" + body + indent + "}"
    raise TypeError("cannot write %r as libconfig" % (v,))


def settings_to_groups(settings):
    """{"service.name": "users", "peers.users.retries": 3} ->
    {"service": {"name": "users"}, "peers": {"users": {"retries": 3}}}.
    A value of None removes the setting."""
    groups = {}
    for dotted, value in settings.items():
        if value is None:
            continue
        parts = dotted.split(".")
        g = groups
        for p in parts[:-1]:
            g = g.setdefault(p, {})
        g[parts[-1]] = value
    return groups


def libconfig_text(settings):
    """A libconfig file, one setting per line, from dotted settings."""
    groups = settings_to_groups(settings)
    return "".join("%s = %s;\n" % (k, libconfig_value(v)) for k, v in groups.items())


def minimal_env(extra=None):
    """PATH and HOME only, plus what the caller gives: a stray
    CONSUL_HTTP_TOKEN or CONSUL_HTTP_ADDR from the outside never leaks in."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/tmp")}
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _stop_process(proc, sig=signal.SIGTERM, timeout=10.0):
    """Signals proc by PID, waits up to timeout, then SIGKILLs. Returns the
    exit status (negative signal number when killed)."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    _unregister(proc)
    return proc.returncode


# --------------------------------------------------------------------------
# Consul
# --------------------------------------------------------------------------


def promtool_binary():
    """`promtool` on PATH, else the one `scripts/deps.sh test` unpacks into .deps/."""
    found = shutil.which("promtool")
    if found:
        return found
    path = os.path.join(REPO, ".deps", "prometheus", "usr", "bin", "promtool")
    if not os.access(path, os.X_OK):
        subprocess.run([os.path.join(REPO, "scripts", "deps.sh"), "test"], stdout=subprocess.DEVNULL,
                       check=True, timeout=600)
    return path


def consul_binary():
    """CONSUL_BIN, else `consul` on PATH, else <repo>/.deps (running
    scripts/deps.sh when it is missing)."""
    env = os.environ.get("CONSUL_BIN")
    if env:
        return env
    found = shutil.which("consul")
    if found:
        return found
    local = os.path.join(REPO, ".deps", "consul", "usr", "bin", "consul")
    if os.access(local, os.X_OK):
        return local
    out = subprocess.run([os.path.join(REPO, "scripts", "deps.sh")],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         timeout=600, check=True).stdout.decode().strip()
    path = out.splitlines()[-1] if out else local
    if not os.access(path, os.X_OK):
        raise RuntimeError("no consul binary: set CONSUL_BIN or run scripts/deps.sh")
    return path


class ConsulError(RuntimeError):
    pass


class _Process:
    """What Consul and Node share: the Popen of the running process."""

    proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None


class Consul(_Process):
    """A real `consul agent -dev` on loopback with every port chosen free
    (gRPC disabled; DNS too unless dns=True: then `dns_addr` is its DNS
    interface, UDP and TCP). Dev mode keeps all state in memory: a restart
    starts empty. Use start()/stop() again to restart on the same ports.
    With start=False the ports are chosen at once and start() comes later."""

    START_TIMEOUT = 15.0

    def __init__(self, http_port=None, node_name="meshnode-test", start=True, dns=False):
        self.binary = consul_binary()
        self.node_name = node_name
        self.dns = dns
        self.fixed_http = http_port is not None
        self.ports = None
        self._want_http = http_port
        self.proc = None
        self.dir = mkdtemp("consul")
        self.log_path = os.path.join(self.dir, "consul.log")
        self.starts = 0
        self.startup_seconds = None
        if start:
            self.start()
        else:
            # addr is known before the agent runs (a node started first)
            self.ports = self._pick_ports()

    # -- lifecycle ---------------------------------------------------------

    def _pick_ports(self):
        return {
            "http": self._want_http or free_port(),
            "serf_lan": free_port(udp_too=True),
            "serf_wan": free_port(udp_too=True),
            "server": free_port(),
            "dns": free_port(udp_too=True) if self.dns else -1,
        }

    def _argv(self):
        p = self.ports
        return [self.binary, "agent", "-dev",
                "-bind", "127.0.0.1", "-client", "127.0.0.1",
                "-node", self.node_name, "-log-level", "warn",
                "-http-port", str(p["http"]), "-dns-port", str(p["dns"]),
                "-grpc-port", "-1",
                "-serf-lan-port", str(p["serf_lan"]),
                "-serf-wan-port", str(p["serf_wan"]),
                "-server-port", str(p["server"])]

    def start(self, timeout=None):
        """Starts the agent (on the same ports when it ran before) and waits,
        bounded, for a leader and an answering /v1/agent/self."""
        if self.proc is not None and self.proc.poll() is None:
            raise ConsulError("consul already running (pid %d)" % self.proc.pid)
        timeout = timeout or self.START_TIMEOUT
        reuse = self.ports is not None
        attempts = 1 if reuse else 3
        last = None
        for _ in range(attempts):
            if not reuse:
                self.ports = self._pick_ports()
            try:
                self._start_once(timeout)
                return self
            except ConsulError as e:
                # Most likely a port raced with someone else: pick new ones
                # (the HTTP port stays when the caller pinned it).
                last = e
        raise last

    def _start_once(self, timeout):
        t0 = time.monotonic()
        logf = open(self.log_path, "ab")
        logf.write(("\n=== start %d: %s\n" % (self.starts + 1, " ".join(self._argv()))).encode())
        logf.flush()
        try:
            self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT,
                                         cwd=self.dir, env=minimal_env(),
                                         start_new_session=True)
        finally:
            logf.close()
        _register(self.proc)
        if self.starts == 0:
            _add_log("consul:%d" % self.ports["http"], self.log_path)
        self.starts += 1
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                _unregister(self.proc)
                raise ConsulError("consul exited with %s during startup:\n%s"
                                  % (self.proc.returncode, tail(self.log_path)))
            try:
                if self.leader() and self.get("/v1/agent/self") is not None:
                    break
            except (OSError, http.client.HTTPException, ConsulError, ValueError):
                pass
            if time.monotonic() >= deadline:
                _stop_process(self.proc, signal.SIGKILL)
                raise ConsulError("consul not ready within %.1fs:\n%s"
                                  % (timeout, tail(self.log_path)))
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - t0

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout`; by PID. Returns the exit
        status (Consul 1.8.7 exits 1 on SIGTERM)."""
        rc = _stop_process(self.proc, signal.SIGTERM, timeout)
        return rc

    def kill9(self):
        return _stop_process(self.proc, signal.SIGKILL, 10)

    def restart(self):
        self.stop()
        return self.start()


    @property
    def http_port(self):
        return self.ports["http"]

    @property
    def addr(self):
        return "http://127.0.0.1:%d" % self.ports["http"]

    @property
    def dns_addr(self):
        """"127.0.0.1:<port>" of its DNS interface (dns=True only)."""
        if self.ports.get("dns", -1) < 0:
            raise ConsulError("this agent was started without DNS")
        return "127.0.0.1:%d" % self.ports["dns"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- HTTP API ------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=5.0):
        return http_request(self.ports["http"], method, path, body, headers, timeout)

    def get(self, path, allow_404=False):
        """GET returning parsed JSON; None on 404 when allowed."""
        status, _, data = self.request("GET", path)
        if status == 404 and allow_404:
            return None
        if status != 200:
            raise ConsulError("GET %s: %d %s" % (path, status, data[:300]))
        return json.loads(data) if data else None

    def put(self, path, body=None):
        status, _, data = self.request("PUT", path, body)
        if status != 200:
            raise ConsulError("PUT %s: %d %s" % (path, status, data[:300]))
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data

    def leader(self):
        return self.get("/v1/status/leader") or ""

    def kv_put(self, key, value):
        if isinstance(value, str):
            value = value.encode()
        ok = self.put("/v1/kv/" + urllib.parse.quote(key), value)
        if ok is not True:
            raise ConsulError("kv put %s refused: %r" % (key, ok))

    def kv_get(self, key):
        """The value as str, or None when the key does not exist."""
        status, _, data = self.request("GET", "/v1/kv/%s?raw" % urllib.parse.quote(key))
        if status == 404:
            return None
        if status != 200:
            raise ConsulError("kv get %s: %d" % (key, status))
        return data.decode()

    def kv_delete(self, key, recurse=False):
        path = "/v1/kv/" + urllib.parse.quote(key) + ("?recurse" if recurse else "")
        status, _, data = self.request("DELETE", path)
        if status != 200:
            raise ConsulError("kv delete %s: %d %s" % (key, status, data[:200]))

    def catalog_services(self):
        return self.get("/v1/catalog/services")

    def health_service(self, name, passing=True):
        q = "?passing" if passing else ""
        return self.get("/v1/health/service/%s%s" % (urllib.parse.quote(name), q))

    def agent_services(self):
        return self.get("/v1/agent/services")

    def agent_checks(self):
        return self.get("/v1/agent/checks")

    def service_by_name(self, name):
        """The agent's entries for service `name` (a list, maybe empty)."""
        return [s for s in (self.agent_services() or {}).values()
                if s.get("Service") == name]

    def register_service(self, definition):
        self.put("/v1/agent/service/register", definition)

    def deregister_service(self, service_id):
        self.put("/v1/agent/service/deregister/" + urllib.parse.quote(service_id))

    def pass_ttl(self, check_id, note=""):
        self.put("/v1/agent/check/pass/%s?note=%s" % (urllib.parse.quote(check_id),
                                                      urllib.parse.quote(note)))


# --------------------------------------------------------------------------
# meshnode
# --------------------------------------------------------------------------


def meshnode_binary():
    return os.environ.get("MESHNODE_BIN") or os.path.join(REPO, "build", "meshnode")


def have_meshnode():
    b = meshnode_binary()
    return os.path.isfile(b) and os.access(b, os.X_OK)


def requires_meshnode(cls):
    """Class decorator: skip cleanly when MESHNODE_BIN does not exist;
    otherwise the tests run (and fail loudly)."""
    if have_meshnode():
        return cls
    return unittest.skip("meshnode binary not found at %s (set MESHNODE_BIN or run make)"
                         % meshnode_binary())(cls)


def share_consul(module_globals, make=None):
    """Gives a test module one real Consul agent for all its tests, the way
    the suite does it (conftest.py's `consul` fixture): declares the
    module's CONSUL (None until the agent runs) and, when `make` is given,
    its CONSUL_FACTORY. Call it at module level with globals(), after
    whatever `make` needs is defined; or write the two names yourself."""
    module_globals["CONSUL"] = None
    if make is not None:
        module_globals["CONSUL_FACTORY"] = make


class ProcessesTestCase(unittest.TestCase):
    """Stops what a test started (nodes, agents), by PID, newest first, when
    the test ends, whatever its outcome. track(x) returns x."""

    def setUp(self):
        self._started = []

    def tearDown(self):
        for p in reversed(self._started):
            p.stop()

    def track(self, proc):
        self._started.append(proc)
        return proc


class NodeError(RuntimeError):
    pass


class Node(_Process):
    """A real meshnode process on a free port with a generated libconfig file
    (`-c path`) in its own temp directory, which is also its working
    directory. `settings` are dotted names (None removes a default);
    `config_text` replaces the generated file entirely. consul.address (file)
    and CONSUL_HTTP_ADDR (env) both name `consul`'s agent, or `consul_addr`,
    or else a free port where nothing listens (never the default :8500).
    The environment is minimal (PATH, HOME) plus that plus `env`; check
    interval and timeout are 1000 ms so registration tests stay short."""

    def __init__(self, name="users", consul=None, consul_addr=None, settings=None,
                 env=None, port=None, config_text=None, args=None, label=None):
        self.binary = meshnode_binary()
        self.name = name
        self.port = port or free_port()
        self.dir = mkdtemp("node-%s" % name)
        self.config_path = os.path.join(self.dir, "meshnode.cfg")
        self.log_path = os.path.join(self.dir, "meshnode.log")
        self.label = label or "node:%s:%d" % (name, self.port)
        if consul_addr is None and consul is not None:
            consul_addr = consul.addr
        if consul_addr is None:
            # Never the default 127.0.0.1:8500: someone's `make run` agent
            # may be there. A port where nothing listens instead.
            consul_addr = "http://127.0.0.1:%d" % free_port()
        self.consul_addr = consul_addr
        self.args = list(args or [])
        self.proc = None
        self._logged = False
        base = {
            "service.name": name,
            "service.address": "127.0.0.1",
            "service.port": self.port,
            "server.threads": 8,
            "database.driver": "sqlite",
            "database.path": os.path.join(self.dir, "%s.db" % name),
            "log.level": "debug",
            "consul.address": consul_addr,
            "consul.check_interval_ms": 1000,
            "consul.check_timeout_ms": 1000,
        }
        base.update(settings or {})
        self.settings = base
        self.config_text = config_text
        extra = {"CONSUL_HTTP_ADDR": consul_addr}
        extra.update(env or {})
        self.env = minimal_env(extra)
        self.write_config()

    def write_config(self, text=None):
        if text is not None:
            self.config_text = text
        with open(self.config_path, "w") as f:
            f.write(self.config_text if self.config_text is not None
                    else libconfig_text(self.settings))

    def argv(self, extra=None):
        return [self.binary, "-c", self.config_path] + self.args + list(extra or [])

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            raise NodeError("node already running (pid %d)" % self.proc.pid)
        logf = open(self.log_path, "ab")
        logf.write(("\n=== start: %s\n" % " ".join(self.argv())).encode())
        logf.flush()
        try:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT,
                                         cwd=self.dir, env=self.env,
                                         start_new_session=True)
        finally:
            logf.close()
        _register(self.proc)
        if not self._logged:
            _add_log(self.label, self.log_path)
            self._logged = True
        return self

    def wait_ready(self, timeout=10.0):
        """Polls GET /health until it answers 200; fails fast (with the log
        tail) if the process exits."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                _unregister(self.proc)
                raise NodeError("meshnode exited with %s before /health answered:\n%s"
                                % (self.proc.returncode, tail(self.log_path)))
            try:
                status, _, _ = self.request("GET", "/health", timeout=1.0)
                if status == 200:
                    return self
                last = "status %d" % status
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                raise NodeError("meshnode /health not 200 within %.1fs (last: %s):\n%s"
                                % (timeout, last, tail(self.log_path)))
            time.sleep(0.05)

    def start_ready(self, timeout=10.0):
        self.start()
        return self.wait_ready(timeout)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def kill9(self):
        return _stop_process(self.proc, signal.SIGKILL, 10)

    def stop(self, timeout=15.0):
        """SIGTERM, wait, SIGKILL after the bound. Returns the exit status."""
        return _stop_process(self.proc, signal.SIGTERM, timeout)

    def wait_exit(self, timeout=15.0):
        """The exit code (negative for a signal); raises NodeError at the
        deadline (the process is left running for the caller to kill)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise NodeError("meshnode (pid %d) still running after %.1fs:\n%s"
                            % (self.proc.pid, timeout, tail(self.log_path)))
        _unregister(self.proc)
        return rc


    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def run_cli(self, extra_args, timeout=20.0, with_config=True):
        """Runs the binary once (e.g. --check-config) with this node's config
        and env; returns (exit code, stdout str, stderr str)."""
        argv = self.argv(extra_args) if with_config else [self.binary] + list(extra_args)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=self.dir, env=self.env,
                             start_new_session=True)
        _register(p)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_process(p, signal.SIGKILL)
            raise NodeError("%s did not exit within %.1fs" % (" ".join(argv), timeout))
        _unregister(p)
        with open(self.log_path, "ab") as f:
            f.write(("\n=== %s -> %d\n--- stdout\n" % (" ".join(argv), p.returncode)).encode())
            f.write(out + b"\n--- stderr\n" + err + b"\n")
        if not self._logged:
            _add_log(self.label, self.log_path)
            self._logged = True
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    # -- HTTP ----------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=5.0):
        """(status, headers with lower-case keys, body bytes). A dict/list
        body is sent as JSON with Content-Type application/json."""
        return http_request(self.port, method, path, body, headers, timeout)

    def get_json(self, path, expect=200):
        status, hdrs, data = self.request("GET", path)
        if status != expect:
            raise AssertionError("GET %s: expected %d, got %d %r" % (path, expect, status, data[:300]))
        return json.loads(data)

    def connection(self, timeout=5.0):
        """A persistent http.client connection (keep-alive tests)."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def raw(self, data, timeout=5.0, half_close=False):
        """Sends raw bytes on a new socket; returns the raw first response."""
        return raw_exchange(self.port, data, timeout=timeout, half_close=half_close)

    def config(self):
        """GET /config whole: its pages (issue 21) merged into one document."""
        doc = self.get_json("/config?limit=1000")
        while doc.get("next_offset") is not None:
            page = self.get_json("/config?limit=1000&offset=%d" % doc["next_offset"])
            doc["settings"].update(page["settings"])
            doc["next_offset"] = page.get("next_offset")
        return doc

    def metric(self, family, **labels):
        """The sum of the samples of `family` in /metrics whose labels
        include `labels` (0 when none)."""
        _, _, data = self.request("GET", "/metrics")
        return sum(v for lab, v in prom_samples(data.decode(), family)
                   if all(lab.get(k) == want for k, want in labels.items()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# GET /config and --print-config: one accessor for the shape
# --------------------------------------------------------------------------


def config_entry(doc, name):
    """The entry of dotted setting `name` in a /config or --print-config
    document: {"value": ..., "source": ...}. Accepts the entry at the top
    level, under "settings" (an object keyed by name, or a list of entries
    with "name"), or nested by dotted path. Raises KeyError when absent."""
    candidates = [doc]
    if isinstance(doc, dict):
        for k in ("settings", "config", "effective"):
            if k in doc:
                candidates.append(doc[k])
    for c in candidates:
        if isinstance(c, dict):
            if name in c and isinstance(c[name], dict):
                return c[name]
            node = c
            for part in name.split("."):
                if isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    node = None
                    break
            if isinstance(node, dict) and ("value" in node or "source" in node):
                return node
        elif isinstance(c, list):
            for e in c:
                if isinstance(e, dict) and e.get("name") == name:
                    return e
    raise KeyError("setting %r not in config document: %s" % (name, json.dumps(doc)[:500]))


def config_value(doc, name):
    return config_entry(doc, name).get("value")


def config_source(doc, name):
    return config_entry(doc, name).get("source")


# --------------------------------------------------------------------------
# Prometheus text format
# --------------------------------------------------------------------------

_METRIC = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_FLOAT = r"(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)"
PROM_SAMPLE_RE = re.compile(
    r"^(%s)(?:\{(?:%s(?:,%s)*,?)?\})? (%s)(?: -?\d+)?$" % (_METRIC, _LABEL, _LABEL, _FLOAT))
PROM_COMMENT_RE = re.compile(
    r"^# (?:HELP %s(?: .*)?|TYPE %s (?:counter|gauge|histogram|summary|untyped))$"
    % (_METRIC, _METRIC))
PROM_LABELS_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def prom_bad_lines(text):
    """Lines that are not valid Prometheus text exposition (0.0.4) syntax."""
    bad = []
    for line in text.split("\n"):
        if line == "":
            continue
        if line.startswith("#"):
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                if not PROM_COMMENT_RE.match(line):
                    bad.append(line)
            continue
        if not PROM_SAMPLE_RE.match(line):
            bad.append(line)
    return bad


def prom_samples(text, name):
    """[(labels dict, value float)] of every sample of metric `name`."""
    out = []
    for line in text.split("\n"):
        m = PROM_SAMPLE_RE.match(line)
        if not m or m.group(1) != name:
            continue
        brace = line.find("{")
        labels = {}
        if brace != -1 and line.startswith(name + "{"):
            labels = dict(PROM_LABELS_RE.findall(line[brace:line.rfind("}") + 1]))
        out.append((labels, float(m.group(2))))
    return out
