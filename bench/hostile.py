#!/usr/bin/env python3
"""Hostile-connection benchmark (issue 8, point 2). Python 3 standard library
only; every phase is bounded in time and stops by itself.

  hostile.py run --port P [--consul URL --service NAME] [--pid PID] --json OUT
  hostile.py table --col LABEL=OUT.json [--col ...]   (markdown to stdout)

`run` drives, against one HTTP server on 127.0.0.1:

  idle    N keep-alive connections (default 1000), each sends one GET /health
          and then holds its socket, idle, unless the server closes it. Counts
          how many the server still holds open at the end.
  slow    N connections (default 300) each trickling a request head, one byte
          every 2 s; a connection the server closes is opened again at once,
          so the pressure stays.
  slowka  the same, but each connection first makes one ordinary request and
          then trickles the next head on the kept-alive connection (civetweb
          1.15 gives a head after the first request the keep-alive timeout,
          not the request timeout, as its deadline).
  served  C connections (default 200) looping keep-alive GETs for D seconds
          (reconnecting when closed): how many distinct connections got at
          least one answer, total answers, errors. Then `wrk -t2 -cC -dDs`
          when wrk is installed.
  sweep   the slow and idle attacks at several N (probes only, shorter hold):
          where the probe p99 passes 1 s.

During idle/slow/slowka, 50 probes (each a NEW connection, `GET /health`,
`Connection: close`, one every 100 ms, 5 s timeout, timed from connect() to
the last byte) measure what a fresh client sees, and the Consul agent's
/v1/health/checks/<service> is read every second (worst status reported).
With --pid, the server's VmRSS and thread count are sampled throughout.
"""

import argparse
import errno
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

STATUS_RANK = {"passing": 0, "warning": 1, "critical": 2}


def log(msg):
    print("hostile: " + msg, file=sys.stderr, flush=True)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fits(n, nofile, what):
    """Leaves room for probes, wrk, the monitor threads and Python itself."""
    room = nofile - 200
    if n > room:
        log("%s: %d connections do not fit in RLIMIT_NOFILE %d; using %d" % (what, n, nofile, room))
        return room, "%d asked, %d fit (RLIMIT_NOFILE %d)" % (n, room, nofile)
    return n, None


# ---------------------------------------------------------------------------
# HTTP/1.1 response framing (Content-Length or up to EOF; no chunked needed)
# ---------------------------------------------------------------------------

def parse_response(buf):
    """(length of one complete response in buf or 0, status, close?)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0, None, False
    lines = buf[:end].decode("iso-8859-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        status = -1
    clen, close = None, lines[0].startswith("HTTP/1.0")
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        if k == "content-length":
            clen = int(v.strip())
        elif k == "connection":
            tokens = [t.strip().lower() for t in v.split(",")]
            if "close" in tokens:
                close = True
            elif "keep-alive" in tokens:
                close = False
    if clen is None:
        return 0, status, True  # body runs to EOF
    total = end + 4 + clen
    return (total if len(buf) >= total else 0), status, close


def request_bytes(path, host, close=False, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hostile.py\r\n%s%s\r\n"
            % (path, host, "Connection: close\r\n" if close else "", extra)).encode()


def nb_socket(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rc = s.connect_ex((host, port))
    if rc not in (0, errno.EINPROGRESS):
        s.close()
        raise OSError(rc, os.strerror(rc))
    return s


# ---------------------------------------------------------------------------
# Probes, Consul and process monitors
# ---------------------------------------------------------------------------

def probe_once(host, port, path, timeout):
    """Seconds from connect() to the complete answer, and its status; None
    and the error when it failed or took longer than timeout."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            s.sendall(request_bytes(path, host, close=True))
            buf = b""
            while True:
                s.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if chunk:
                    buf += chunk
                n, status, _ = parse_response(buf)
                if n or (not chunk and status is not None):
                    return time.monotonic() - t0, status
                if not chunk:
                    return None, "closed without an answer"
    except socket.timeout:
        return None, "timeout"
    except OSError as e:
        return None, e.strerror or str(e)


def run_probes(host, port, path, count, interval, timeout):
    """`count` probes, one started every `interval` seconds whatever the
    earlier ones do (a fresh client does not wait for the others)."""
    results = [None] * count
    threads = []

    def one(i):
        results[i] = probe_once(host, port, path, timeout)

    t0 = time.monotonic()
    for i in range(count):
        delay = t0 + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=one, args=(i,), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(timeout + 2)
    lat = [r[0] for r in results if r and r[0] is not None]
    errors = {}
    non200 = 0
    for r in results:
        if r is None or r[0] is None:
            key = r[1] if r else "no result"
            errors[key] = errors.get(key, 0) + 1
        elif r[1] != 200:
            non200 += 1
    failed = count - len(lat)
    # A failed probe counts as slower than any answered one.
    ranked = sorted(lat) + [float("inf")] * failed

    def pct(p):
        if not ranked:
            return None
        k = max(1, -(-p * len(ranked) // 100))  # nearest rank
        return ranked[int(k) - 1]

    return {"count": count, "answered": len(lat), "failed": failed, "non200": non200,
            "errors": errors, "p50": pct(50), "p99": pct(99), "max": ranked[-1] if ranked else None,
            "over_1s": sum(1 for x in ranked if x > 1.0), "timeout": timeout}


class ConsulWatch(threading.Thread):
    """Reads the service's checks every second; keeps the worst status."""

    def __init__(self, consul, service):
        super().__init__(daemon=True)
        self.url = "%s/v1/health/checks/%s" % (consul.rstrip("/"), service)
        self.stop_ev = threading.Event()
        self.samples = []
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def read(self):
        try:
            with self.opener.open(self.url, timeout=2) as r:
                checks = json.loads(r.read() or b"[]")
            if not checks:
                return "none registered", ""
            worst = max(checks, key=lambda c: STATUS_RANK.get(c.get("Status"), 3))
            return worst.get("Status"), (worst.get("Output") or "")[:160]
        except (OSError, ValueError) as e:
            return "agent unreachable", str(e)

    def run(self):
        while not self.stop_ev.is_set():
            self.samples.append(self.read())
            self.stop_ev.wait(1.0)

    def finish(self):
        self.stop_ev.set()
        self.join(5)
        statuses = [s for s, _ in self.samples]
        if not statuses:
            return {"worst": None, "samples": 0}
        worst = max(statuses, key=lambda s: STATUS_RANK.get(s, 3))
        out = {"worst": worst, "samples": len(statuses),
               "not_passing": sum(1 for s in statuses if s != "passing"),
               "after": self.read()[0]}
        bad = [o for s, o in self.samples if s != "passing" and o]
        if bad:
            out["output"] = bad[-1]
        return out


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) / 1024.0
                elif k == "Threads":
                    out[k] = int(v)
    except OSError:
        pass
    return out


class ProcWatch(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.stop_ev = threading.Event()
        self.max_rss = 0.0
        self.max_threads = 0

    def run(self):
        while not self.stop_ev.is_set():
            st = proc_status(self.pid)
            self.max_rss = max(self.max_rss, st.get("VmRSS", 0.0))
            self.max_threads = max(self.max_threads, st.get("Threads", 0))
            self.stop_ev.wait(0.25)

    def finish(self):
        self.stop_ev.set()
        self.join(2)
        return {"rss_mb": round(self.max_rss, 1), "threads": self.max_threads}


# ---------------------------------------------------------------------------
# Attack loops: one selector thread each, stopped by an event, bounded
# ---------------------------------------------------------------------------

class Loop(threading.Thread):
    def __init__(self, host, port):
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.sel = selectors.DefaultSelector()
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.last_change = time.monotonic()

    def drop(self, c):
        s = c.get("sock")
        if s is not None:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
            c["sock"] = None

    def connect(self, c):
        try:
            c["sock"] = nb_socket(self.host, self.port)
        except OSError as e:
            c["sock"] = None
            c["state"] = "connect_failed"
            c["error"] = e.strerror or str(e)
            return False
        c["state"] = "connecting"
        c["t_connect"] = time.monotonic()
        c["buf"] = b""
        self.sel.register(c["sock"], selectors.EVENT_WRITE, c)
        return True

    def connected(self, c):
        err = c["sock"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            c["error"] = os.strerror(err)
            return False
        return True

    def recv(self, c):
        """New bytes, b"" on EOF, None on would-block; raises on reset."""
        try:
            return c["sock"].recv(65536)
        except BlockingIOError:
            return None

    def stop(self):
        self.stop_ev.set()
        self.join(10)
        for key in list(self.sel.get_map().values()):
            try:
                key.fileobj.close()
            except OSError:
                pass
        self.sel.close()


class IdleCrowd(Loop):
    def __init__(self, host, port, n, path):
        super().__init__(host, port)
        self.req = request_bytes(path, host)
        self.conns = [{"i": i, "state": "new"} for i in range(n)]

    def set_state(self, c, state):
        c["state"] = state
        self.last_change = time.monotonic()

    def run(self):
        for c in self.conns:
            if self.stop_ev.is_set():
                return
            self.connect(c)
        while not self.stop_ev.is_set():
            for key, _ in self.sel.select(0.1):
                c = key.data
                try:
                    self.event(c)
                except OSError as e:
                    c["error"] = e.strerror or str(e)
                    self.drop(c)
                    self.set_state(c, "reset" if c["state"] in ("held",) else "failed")

    def event(self, c):
        if c["state"] == "connecting":
            if not self.connected(c):
                self.drop(c)
                self.set_state(c, "failed")
                return
            c["sock"].send(self.req)  # small: fits the empty send buffer
            self.sel.modify(c["sock"], selectors.EVENT_READ, c)
            self.set_state(c, "waiting")
            return
        data = self.recv(c)
        if data is None:
            return
        if c["state"] == "waiting":
            if not data:
                self.drop(c)
                self.set_state(c, "closed_unanswered")
                return
            c["buf"] += data
            n, status, close = parse_response(c["buf"])
            if n:
                c["status"] = status
                c["answered_keepalive"] = not close
                c["buf"] = c["buf"][n:]
                if close:
                    self.drop(c)
                    self.set_state(c, "closed_after_answer")
                else:
                    c["t_held"] = time.monotonic()
                    self.set_state(c, "held")
        elif c["state"] == "held":
            if not data:
                c["held_for"] = time.monotonic() - c["t_held"]
                self.drop(c)
                self.set_state(c, "closed_by_server")

    def counts(self):
        out = {}
        for c in list(self.conns):
            out[c["state"]] = out.get(c["state"], 0) + 1
        return out


class SlowHeaders(Loop):
    """Each slot trickles a head one byte per `interval` seconds; reopened
    when the server closes it. keepalive_first: one ordinary request first,
    then the trickled head on the same (kept-alive) connection."""

    def __init__(self, host, port, n, interval, keepalive_first=False):
        super().__init__(host, port)
        self.interval = interval
        self.keepalive_first = keepalive_first
        pad = "x" * 60
        self.head = request_bytes("/health", host, extra="X-Slow: %s\r\n" % pad)
        self.fast = request_bytes("/health", host)
        self.conns = [{"i": i, "state": "new"} for i in range(n)]
        self.closes = 0
        self.opens = 0
        self.refused_keepalive = 0
        self.lifetimes = []
        self.connect_failures = 0
        self.answered_heads = 0
        self.reopen_at = {}

    def open(self, c):
        self.opens += 1
        if not self.connect(c):
            self.connect_failures += 1
            self.reopen_at[c["i"]] = time.monotonic() + 0.1

    def closed(self, c):
        if c.get("t_connect") and c["state"] in ("trickling", "fast"):
            self.lifetimes.append(time.monotonic() - c["t_connect"])
        self.closes += 1
        self.drop(c)
        c["state"] = "closed"
        self.reopen_at[c["i"]] = time.monotonic() + 0.1

    def run(self):
        for c in self.conns:
            if self.stop_ev.is_set():
                return
            self.open(c)
        while not self.stop_ev.is_set():
            now = time.monotonic()
            for key, ev in self.sel.select(0.05):
                c = key.data
                try:
                    self.event(c)
                except OSError:
                    self.closed(c)
            now = time.monotonic()
            for i, at in list(self.reopen_at.items()):
                if at <= now:
                    del self.reopen_at[i]
                    self.open(self.conns[i])
            for c in self.conns:
                if c["state"] == "trickling" and c["next"] <= now:
                    try:
                        c["sock"].send(self.head[c["pos"]:c["pos"] + 1])
                    except BlockingIOError:
                        continue
                    except OSError:
                        self.closed(c)
                        continue
                    c["pos"] += 1
                    c["next"] += self.interval
                    if c["pos"] >= len(self.head):  # the whole head went through
                        c["state"] = "waiting"

    def start_trickle(self, c):
        c["state"] = "trickling"
        c["pos"] = 0
        c["next"] = time.monotonic()

    def event(self, c):
        if c["state"] == "connecting":
            if not self.connected(c):
                self.connect_failures += 1
                self.closed(c)
                return
            self.sel.modify(c["sock"], selectors.EVENT_READ, c)
            if self.keepalive_first:
                c["sock"].send(self.fast)
                c["state"] = "fast"
            else:
                self.start_trickle(c)
            return
        data = self.recv(c)
        if data is None:
            return
        if not data:
            self.closed(c)
            return
        c["buf"] += data
        n, status, close = parse_response(c["buf"])
        if not n:
            return
        c["buf"] = c["buf"][n:]
        if c["state"] == "fast":
            if close:
                self.refused_keepalive += 1
                self.closed(c)
            else:
                self.start_trickle(c)
        else:  # an answer to a trickled head (or an error answer)
            self.answered_heads += 1
            if close:
                self.closed(c)
            else:
                self.start_trickle(c)

    def counts(self):
        out = {}
        for c in self.conns:
            out[c["state"]] = out.get(c["state"], 0) + 1
        lt = sorted(self.lifetimes)
        return {"states": out, "opens": self.opens, "server_closes": self.closes,
                "connect_failures": self.connect_failures,
                "refused_keepalive": self.refused_keepalive,
                "answered_heads": self.answered_heads,
                "lifetime_p50_s": round(lt[len(lt) // 2], 2) if lt else None,
                "lifetime_max_s": round(lt[-1], 2) if lt else None}


class Served(Loop):
    def __init__(self, host, port, c, path):
        super().__init__(host, port)
        self.req = request_bytes(path, host)
        self.conns = [{"i": i, "state": "new", "answers": 0} for i in range(c)]
        self.errors = {}
        self.reconnects = 0
        self.reopen_at = {}

    def error(self, c, what):
        self.errors[what] = self.errors.get(what, 0) + 1
        self.drop(c)
        c["state"] = "closed"
        self.reopen_at[c["i"]] = time.monotonic() + 0.05

    def run(self):
        for c in self.conns:
            self.connect(c)
        while not self.stop_ev.is_set():
            for key, _ in self.sel.select(0.05):
                c = key.data
                try:
                    self.event(c)
                except OSError as e:
                    self.error(c, e.strerror or str(e))
            now = time.monotonic()
            for i, at in list(self.reopen_at.items()):
                if at <= now:
                    del self.reopen_at[i]
                    self.reconnects += 1
                    if not self.connect(self.conns[i]):
                        self.error(self.conns[i], "connect: " + self.conns[i]["error"])

    def event(self, c):
        if c["state"] == "connecting":
            if not self.connected(c):
                self.error(c, "connect: " + c.get("error", "?"))
                return
            self.sel.modify(c["sock"], selectors.EVENT_READ, c)
            c["sock"].send(self.req)
            c["state"] = "waiting"
            return
        data = self.recv(c)
        if data is None:
            return
        if not data:
            self.error(c, "closed before an answer")
            return
        c["buf"] += data
        n, status, close = parse_response(c["buf"])
        if not n:
            return
        c["buf"] = c["buf"][n:]
        c["answers"] += 1
        if status != 200:
            self.errors["status %s" % status] = self.errors.get("status %s" % status, 0) + 1
        if close:
            self.drop(c)
            c["state"] = "closed"
            self.reconnects += 1
            if not self.connect(c):
                self.error(c, "connect: " + c["error"])
        else:
            c["sock"].send(self.req)


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------

class Monitors:
    def __init__(self, args, consul=True):
        self.args = args
        self.want_consul = consul
        self.consul = self.proc = None

    def __enter__(self):
        if self.want_consul and self.args.consul and self.args.service:
            self.consul = ConsulWatch(self.args.consul, self.args.service)
            self.consul.start()
        if self.args.pid:
            self.proc = ProcWatch(self.args.pid)
            self.proc.start()
        return self

    def __exit__(self, *exc):
        self.result = {}
        if self.consul:
            self.result["consul"] = self.consul.finish()
        if self.proc:
            self.result.update(self.proc.finish())
        return False


def settle(args, consul=False, limit=20.0):
    """Waits (bounded) until a fresh GET /health is answered within 1 s, and
    with consul=True until the agent's check passes again (it runs every
    consul.check_interval_ms), so one scenario's leftovers do not count
    against the next."""
    deadline = time.monotonic() + limit
    while True:
        lat, _ = probe_once(args.host, args.port, args.probe_path, 1.0)
        if lat is not None:
            break
        if time.monotonic() >= deadline:
            log("server still not answering within 1 s after %.0f s of settling" % limit)
            return False
        time.sleep(0.5)
    time.sleep(0.5)
    if consul and args.consul and args.service:
        watch = ConsulWatch(args.consul, args.service)
        deadline = time.monotonic() + args.consul_settle
        while watch.read()[0] != "passing":
            if time.monotonic() >= deadline:
                log("Consul check not passing %.0f s after the last attack" % args.consul_settle)
                return False
            time.sleep(0.5)
    return True


def ramp(loop, limit, quiet=1.0):
    """Until no connection changed state for `quiet` seconds, at most `limit`."""
    t0 = time.monotonic()
    time.sleep(0.2)
    while time.monotonic() - t0 < limit and time.monotonic() - loop.last_change < quiet:
        time.sleep(0.1)
    return time.monotonic() - t0


def attack(args, kind, n, hold, probes=True, consul=True):
    res = {"kind": kind}
    res["settled"] = settle(args, consul=consul)
    asked = n
    n, note = fits(n, args.nofile, kind)
    if kind == "idle":
        loop = IdleCrowd(args.host, args.port, n, args.probe_path)
    else:
        loop = SlowHeaders(args.host, args.port, n, args.byte_interval, keepalive_first=(kind == "slowka"))
    res.update({"n": n, "asked": asked})
    if note:
        res["note"] = note
    t0 = time.monotonic()
    with Monitors(args, consul) as mon:
        loop.start()
        try:
            if kind == "idle":
                res["ramp_s"] = round(ramp(loop, args.ramp), 1)
                res["after_ramp"] = loop.counts()
            else:
                # the slow connections hold every worker they reach within a
                # second or two; give the queue time to fill
                time.sleep(min(args.ramp, 3.0))
            tp = time.monotonic()
            if probes:
                res["probes"] = run_probes(args.host, args.port, args.probe_path, args.probes,
                                           args.probe_interval, args.probe_timeout)
            left = hold - (time.monotonic() - tp)
            if left > 0:
                time.sleep(left)
            res["end"] = loop.counts()
        finally:
            loop.stop()
    res.update(mon.result)
    res["seconds"] = round(time.monotonic() - t0, 1)
    if kind == "idle":
        e = res["end"]
        res["held_open"] = e.get("held", 0)
    p = res.get("probes", {})
    log("%s n=%d: probes p50 %s p99 %s max %s, %d/%d failed; %s; consul %s; rss %s MB"
        % (kind, n, fmt_s(p.get("p50")), fmt_s(p.get("p99")), fmt_s(p.get("max")),
           p.get("failed", 0), p.get("count", 0),
           json.dumps(res["end"]), res.get("consul", {}).get("worst"), res.get("rss_mb")))
    return res


def served(args):
    settle(args)
    c, note = fits(args.served_c, args.nofile, "served")
    loop = Served(args.host, args.port, c, args.served_path)
    t0 = time.monotonic()
    with Monitors(args, consul=False) as mon:
        loop.start()
        time.sleep(args.served_d)
        loop.stop_ev.set()
        loop.join(10)
        answers = sorted(x["answers"] for x in loop.conns)
        loop.stop()
    res = {"c": c, "seconds": round(time.monotonic() - t0, 1),
           "served": sum(1 for a in answers if a > 0), "answers": sum(answers),
           "min_answers": answers[0], "median_answers": answers[len(answers) // 2],
           "errors": loop.errors, "reconnects": loop.reconnects}
    if note:
        res["note"] = note
    res.update(mon.result)
    log("served c=%d d=%ss: %d connections answered, %d answers, %d reconnects, errors %s"
        % (c, args.served_d, res["served"], res["answers"], res["reconnects"], json.dumps(loop.errors)))
    return res


def wrk(args, conns, duration, path):
    exe = shutil.which("wrk")
    if not exe:
        return {"skipped": "wrk not installed"}
    settle(args)
    url = "http://%s:%d%s" % (args.host, args.port, path)
    with Monitors(args, consul=False) as mon:
        try:
            out = subprocess.run([exe, "-t2", "-c%d" % conns, "-d%ds" % duration, "--latency", url],
                                 capture_output=True, text=True, timeout=duration + 60).stdout
        except subprocess.TimeoutExpired:
            return {"skipped": "wrk did not finish"}
    res = {"c": conns, "d": duration}
    for line in out.splitlines():
        f = line.split()
        if line.startswith("Requests/sec:"):
            res["rps"] = float(f[1])
        elif f[:1] == ["99%"]:
            res["p99"] = f[1]
        elif "Socket errors" in line:
            res["socket_errors"] = line.split(":", 1)[1].strip()
        elif "Non-2xx" in line:
            res["non2xx"] = int(f[-1])
        elif "requests in" in line:
            res["requests"] = int(f[0])
    res.update(mon.result)
    log("wrk -c%d %s: %s req/s, p99 %s%s" % (conns, path, res.get("rps"), res.get("p99"),
                                           ", socket errors " + res["socket_errors"] if "socket_errors" in res else ""))
    return res


def fmt_s(v):
    if v is None:
        return "-"
    if v == float("inf"):
        return ">timeout"
    return "%.3f s" % v


def cmd_run(args):
    args.nofile = raise_nofile()
    t_start = time.monotonic()
    out = {"target": "%s:%d" % (args.host, args.port), "nofile": args.nofile,
           "started": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
           "probe": {"count": args.probes, "interval_s": args.probe_interval,
                     "timeout_s": args.probe_timeout, "path": args.probe_path}}
    if args.pid:
        out["idle"] = proc_status(args.pid)
    scen = [s for s in args.scenarios.split(",") if s]
    try:
        if "idle" in scen:
            out["idle_crowd"] = attack(args, "idle", args.idle_n, args.hold)
        if "slow" in scen:
            out["slow_headers"] = attack(args, "slow", args.slow_n, args.hold)
        if "slowka" in scen:
            out["slow_after_keepalive"] = attack(args, "slowka", args.slow_n, args.hold)
        if "served" in scen:
            out["served"] = served(args)
            out["wrk_c%d" % args.served_c] = wrk(args, args.served_c, args.wrk_d, args.served_path)
        for c in [int(x) for x in args.wrk_extra.split(",") if x]:
            out["wrk_c%d" % c] = wrk(args, c, args.wrk_d, args.served_path)
        if "sweep" in scen:
            sweep = {"slow": [], "idle": []}
            for kind, ns in (("slow", args.sweep_slow), ("idle", args.sweep_idle)):
                for n in [int(x) for x in ns.split(",") if x]:
                    r = attack(args, kind, n, args.sweep_hold, consul=False)
                    sweep[kind].append(r)
                    if args.sweep_stop and r["probes"]["p50"] > 1.0:
                        sweep.setdefault("stopped", {})[kind] = n
                        log("sweep %s: half the probes took over 1 s at n=%d; larger n skipped" % (kind, n))
                        break
            out["sweep"] = sweep
    finally:
        out["seconds"] = round(time.monotonic() - t_start, 1)
        if args.pid:
            out["after"] = proc_status(args.pid)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1, default=lambda x: None if x == float("inf") else x)
    return 0


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------

def load(path):
    with open(path) as f:
        return json.load(f)


def probe_cell(p):
    if not p:
        return "-"
    cell = "p99 %s (p50 %s, max %s)" % (fmt_s(p["p99"]), fmt_s(p["p50"]), fmt_s(p["max"]))
    if p["failed"]:
        cell += ", **%d/%d failed**" % (p["failed"], p["count"])
    if p.get("non200"):
        cell += ", %d not 200" % p["non200"]
    return cell


def fmt_json_s(v):
    return fmt_s(float("inf") if v is None else v)


def fix_probe(p):
    if p:
        for k in ("p50", "p99", "max"):
            if p.get(k) is None:
                p[k] = float("inf")
    return p


def consul_cell(r):
    c = r.get("consul")
    if not c:
        return "n/a"
    cell = "**%s**" % c["worst"] if c["worst"] != "passing" else c["worst"]
    cell += " (%d reads" % c["samples"]
    if c.get("not_passing"):
        cell += ", %d not passing" % c["not_passing"]
    cell += ")"
    if r.get("settled") is False:
        cell += ", not passing before the attack either"
    return cell


def cmd_table(args):
    cols = []
    for spec in args.col:
        label, _, path = spec.partition("=")
        cols.append((label, load(path)))
    for _, d in cols:
        for k in ("idle_crowd", "slow_headers", "slow_after_keepalive"):
            if k in d:
                fix_probe(d[k].get("probes"))
        for k in ("slow", "idle"):
            for r in d.get("sweep", {}).get(k, []):
                fix_probe(r.get("probes"))

    def row(label, fn):
        cells = []
        for _, d in cols:
            try:
                cells.append(fn(d))
            except (KeyError, TypeError, IndexError):
                cells.append("-")
        print("| %s | %s |" % (label, " | ".join(cells)))

    print("| scenario | %s |" % " | ".join(l for l, _ in cols))
    print("|---|%s" % ("---|" * len(cols)))
    row("idle RSS before the attacks", lambda d: "%.1f MB, %d threads" % (d["idle"]["VmRSS"], d["idle"]["Threads"]))
    for key, name in (("idle_crowd", "idle keep-alive"), ("slow_headers", "slow-header"),
                      ("slow_after_keepalive", "slow-header after one keep-alive request")):
        n = next((d[key]["n"] for _, d in cols if key in d), None)
        if n is None:
            continue
        row("%d %s: fresh `GET /health`" % (n, name), lambda d, k=key: probe_cell(d[k]["probes"]))
        row("%d %s: Consul check, worst" % (n, name), lambda d, k=key: consul_cell(d[k]))
        if key == "idle_crowd":
            row("%d %s: held open by the server at the end" % (n, name),
                lambda d: "%d (answered and closed: %d, never answered: %d)" % (
                    d["idle_crowd"]["end"].get("held", 0),
                    d["idle_crowd"]["end"].get("closed_after_answer", 0) + d["idle_crowd"]["end"].get("closed_by_server", 0),
                    d["idle_crowd"]["end"].get("waiting", 0) + d["idle_crowd"]["end"].get("connecting", 0)))
        else:
            row("%d %s: closed by the server / median life of one" % (n, name),
                lambda d, k=key: "%d / %s" % (d[k]["end"]["server_closes"],
                                              "-" if d[k]["end"]["lifetime_p50_s"] is None
                                              else "%.2g s" % d[k]["end"]["lifetime_p50_s"]))
        row("%d %s: peak RSS" % (n, name), lambda d, k=key: "%.1f MB" % d[k]["rss_mb"])
    c = next((d["served"]["c"] for _, d in cols if "served" in d), None)
    if c:
        row("%d keep-alive clients looping `GET /users/1` for %.0f s: connections answered at least once" % (
            c, next(d["served"]["seconds"] for _, d in cols if "served" in d)),
            lambda d: "**%d/%d** (%d answers, min %d per connection)" % (
                d["served"]["served"], d["served"]["c"], d["served"]["answers"], d["served"]["min_answers"]))
        row("wrk -t2 -c%d: req/s, p99" % c,
            lambda d: "%.0f, %s%s" % (d["wrk_c%d" % c]["rps"], d["wrk_c%d" % c]["p99"],
                                      (", socket errors " + d["wrk_c%d" % c]["socket_errors"])
                                      if "socket_errors" in d["wrk_c%d" % c] else ""))
    print()
    for label, d in cols:
        sw = d.get("sweep")
        if not sw:
            continue
        print("Sweep on %s: 50 fresh probes under each attack (p99 over 50 = the slowest; a "
              "failed probe counts as slower than the %s s timeout):" % (label, d["probe"]["timeout_s"]))
        print()
        print("| attack | connections | probe p99 | probe p50 | failed | peak RSS |")
        print("|---|---|---|---|---|---|")
        limits = {}
        for kind, name in (("slow", "slow headers"), ("idle", "idle keep-alive")):
            for r in sw.get(kind, []):
                p = r["probes"]
                print("| %s | %d | %s | %s | %d/%d | %s |" % (
                    name, r["n"], fmt_s(p["p99"]), fmt_s(p["p50"]), p["failed"], p["count"],
                    "%.1f MB" % r["rss_mb"] if "rss_mb" in r else "-"))
                if p["p99"] > 1.0 and kind not in limits:
                    limits[kind] = r["n"]
        print()
        for kind, name in (("slow", "slow-header"), ("idle", "idle keep-alive")):
            ns = [r["n"] for r in sw.get(kind, [])]
            if not ns:
                continue
            ok = [r["n"] for r in sw[kind] if r["probes"]["p99"] <= 1.0 and r["n"] < limits.get(kind, 1 << 30)]
            if kind in limits:
                stop = sw.get("stopped", {}).get(kind)
                print("- %s: probes pass 1 s (p99) from %d connections%s%s." % (
                    name, limits[kind], " (under 1 s at %d)" % max(ok) if ok else "",
                    "; larger counts not tried once half the probes took over 1 s (at %d)" % stop
                    if stop else ""))
            else:
                print("- %s: probes stay under 1 s (p99) up to %d connections, the largest tried." % (name, max(ns)))
        print()


def cmd_matrix(args):
    """One row per setting set: the figures that choose the defaults."""
    print("| setting | idle RSS | idle crowd: probe p99, failed, held open, peak RSS | "
          "slow headers: probe p99, failed, peak RSS | slow after keep-alive: probe p99, failed | "
          "served at c200 | wrk c200 req/s | wrk c50 req/s |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.row:
        label, _, path = spec.rpartition("=")
        try:
            d = load(path)
        except OSError:
            print("| %s | did not run |||||||" % label)
            continue

        def get(fn):
            try:
                return fn()
            except (KeyError, TypeError):
                return "-"

        def attack_cell(k, extra):
            p = fix_probe(d[k]["probes"])
            cell = "%s, %d/%d" % (fmt_s(p["p99"]), p["failed"], p["count"])
            return cell + extra(d[k])

        n_idle = get(lambda: d["idle_crowd"]["n"])
        print("| `%s` | %s | %s | %s | %s | %s | %s | %s |" % (
            label,
            get(lambda: "%.1f MB" % d["idle"]["VmRSS"]),
            get(lambda: attack_cell("idle_crowd", lambda r: ", %d/%s, %.1f MB" % (r["end"].get("held", 0), n_idle, r["rss_mb"]))),
            get(lambda: attack_cell("slow_headers", lambda r: ", %.1f MB" % r["rss_mb"])),
            get(lambda: attack_cell("slow_after_keepalive", lambda r: "")),
            get(lambda: "%d/%d" % (d["served"]["served"], d["served"]["c"])),
            get(lambda: "%.0f" % d["wrk_c200"]["rps"]),
            get(lambda: "%.0f" % d["wrk_c50"]["rps"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--consul", help="agent URL, e.g. http://127.0.0.1:8500")
    r.add_argument("--service", help="the target's Consul service name")
    r.add_argument("--pid", type=int, help="the server's PID, for RSS and threads")
    r.add_argument("--consul-settle", type=float, default=15.0,
                   help="seconds to wait for the check to pass again before an attack")
    r.add_argument("--scenarios", default="idle,slow,served")
    r.add_argument("--idle-n", type=int, default=1000)
    r.add_argument("--slow-n", type=int, default=300)
    r.add_argument("--byte-interval", type=float, default=2.0)
    r.add_argument("--served-c", type=int, default=200)
    r.add_argument("--served-d", type=float, default=6.0)
    r.add_argument("--served-path", default="/users/1")
    r.add_argument("--wrk-d", type=int, default=6)
    r.add_argument("--wrk-extra", default="", help="more wrk -c runs, e.g. 50")
    r.add_argument("--probe-path", default="/health")
    r.add_argument("--probes", type=int, default=50)
    r.add_argument("--probe-interval", type=float, default=0.1)
    r.add_argument("--probe-timeout", type=float, default=5.0)
    r.add_argument("--hold", type=float, default=13.0,
                   help="seconds each attack lasts after its ramp (>= one Consul check interval)")
    r.add_argument("--ramp", type=float, default=8.0)
    r.add_argument("--sweep-slow", default="300,600,900,1200")
    r.add_argument("--sweep-idle", default="1000,2000,4000")
    r.add_argument("--sweep-hold", type=float, default=6.0)
    r.add_argument("--sweep-stop", action="store_true",
                   help="stop a sweep at the first n where the median probe takes over 1 s")
    r.add_argument("--json")
    t = sub.add_parser("table")
    t.add_argument("--col", action="append", required=True, help="LABEL=result.json")
    m = sub.add_parser("matrix")
    m.add_argument("--row", action="append", required=True, help="SETTINGS=result.json")
    args = ap.parse_args()
    return {"run": cmd_run, "table": cmd_table, "matrix": cmd_matrix}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
