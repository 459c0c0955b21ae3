"""Issue 21, point 4, by hand: ORDERS orders at full speed (wrk, CONNS
connections) into an orders node with events on and events.retention_ms =
RETENTION_MS, a real RabbitMQ and Consul dev agent on loopback, both nodes
on SQLite (or PostgreSQL is not wired here); the outbox's rows (pending,
sent) from /health every 10 s, from the first order to 60 s after the last.
Run through bench/outbox_prune.sh; not part of make test (about two and a
half minutes)."""

import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402
import rabbitserver  # noqa: E402

ORDERS = int(os.environ.get("ORDERS", "60000"))
RETENTION_MS = int(os.environ.get("RETENTION_MS", "60000"))
CONNS = int(os.environ.get("CONNS", "32"))
THREADS = int(os.environ.get("NODE_THREADS", "64"))
AFTER_S = int(os.environ.get("AFTER_S", "60"))

LUA = """
wrk.method = "POST"
wrk.body = '{"user_id":%d,"product":"book","quantity":1}'
wrk.headers["Content-Type"] = "application/json"
local left = 0
function setup(thread) thread:set("left", %d) end
function init(args) left = tonumber(wrk.thread:get("left")) end
function response(status, headers, body)
  left = left - 1
  if left <= 0 then wrk.thread:stop() end
end
"""


def placed_201(node):
    return node.metric("http_requests_total", method="POST", status="201")


def say(text):
    print("# " + text, file=sys.stderr, flush=True)


def main():
    consul = harness.Consul()
    mq = rabbitserver.RabbitServer()
    users = orders = None
    try:
        users = harness.Node(name="users", consul=consul, settings={"log.level": "warn"})
        users.start_ready()
        status, _, body = users.request("POST", "/users", {"name": "B", "email": "b@example.com"})
        assert status == 201, body
        uid = json.loads(body)["id"]
        orders = harness.Node(name="orders", consul=consul, settings={
            "service.modules": ["orders"], "server.threads": THREADS,
            "events.enabled": True, "events.broker_address": mq.addr,
            "events.queue": "bench-outbox", "events.retention_ms": RETENTION_MS,
            "log.level": "warn"})
        orders.start_ready()
        say("consul, rabbitmq, users and orders nodes up; the orders go")
        harness.wait_until(lambda: orders.request("POST", "/orders", {
            "user_id": uid, "product": "warmup", "quantity": 1})[0] == 201,
            timeout=20, what="the first order")
        wthreads = 2
        per_thread = -(-ORDERS // CONNS) * (CONNS // wthreads)  # each wrk thread's share
        lua = os.path.join(orders.dir, "orders.lua")
        with open(lua, "w") as f:
            f.write(LUA % (uid, per_thread))
        rows = []
        stop = threading.Event()

        def sample(t0):
            while not stop.is_set():
                try:
                    ev = orders.get_json("/health")["events"]
                    rows.append((time.monotonic() - t0, ev))
                except Exception:  # noqa: BLE001 - a sample missed is a gap
                    pass
                stop.wait(10.0 - (time.monotonic() - t0) % 10.0)

        t0 = time.monotonic()
        sampler = threading.Thread(target=sample, args=(t0,), daemon=True)
        sampler.start()
        # wrk's threads stop at their share, wrk itself only at -d: it is
        # interrupted (by its PID) once the node has answered them all
        wrk = subprocess.Popen(["wrk", "-t%d" % wthreads, "-c%d" % CONNS, "-d600s",
                                "-s", lua, orders.url + "/orders"],
                               stdout=subprocess.PIPE, text=True)
        try:
            while placed_201(orders) < ORDERS + 1 and wrk.poll() is None:
                time.sleep(0.1)
            t_last = time.monotonic() - t0
        finally:
            if wrk.poll() is None:
                wrk.send_signal(2)
            out = wrk.communicate(timeout=30)[0]
        say("wrk done in %.1f s" % t_last)
        placed = placed_201(orders) - 1  # the warm-up's
        time.sleep(AFTER_S + 1)
        stop.set()
        sampler.join(15)
        final = orders.get_json("/health")["events"]
        print("orders: %d answered 201 in %.1f s (%.0f orders/s), retention %d ms, "
              "batch 2000 per prune, wrk -c%d, %d server threads"
              % (placed, t_last, placed / t_last, RETENTION_MS, CONNS, THREADS))
        print(" ".join(l for l in out.splitlines() if "Requests/sec" in l or "Non-2xx" in l))
        print("%6s %8s %8s %10s %9s %8s  %s" % ("t (s)", "pending", "sent", "oldest sent",
                                            "pruned", "confirmed", "phase"))
        for t, ev in rows + [(time.monotonic() - t0, final)]:
            phase = "ordering" if t <= t_last else "%.0f s after the last order" % (t - t_last)
            print("%6.1f %8d %8d %9.1fs %9d %8d  %s"
                  % (t, ev["pending"], ev["sent"], ev.get("oldest_sent_age_s", 0),
                     ev.get("pruned", 0), ev["confirmed"], phase))
    finally:
        for n in (orders, users):
            if n is not None:
                n.stop()
        mq.stop()
        consul.stop()


if __name__ == "__main__":
    main()
