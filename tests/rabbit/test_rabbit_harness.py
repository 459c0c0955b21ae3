"""The RabbitMQ harness proves itself against a real broker (Debian's
rabbitmq-server 3.10, tests/integration/rabbitserver.py) and a real
client (python3-pika, tests/integration/amqp_consumer.py): only loopback
listens (broker, epmd, rabbitmqctl); 100 persistent messages published
with confirms arrive in order with their ids; the consumer script prints
them; a broker killed with SIGKILL comes back with its durable queue and
the messages nobody consumed, and so does one stopped cleanly; the broker
registers in a Consul agent of the test's; stop() leaves no process. One
broker for the class, the tests in order. Start, restart and stop times
are printed at the end of the run.

    /usr/bin/python3 -m pytest tests/rabbit -v
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest

import pika
import pytest

import amqp_consumer
import harness
import rabbitserver

QUEUE = "orders"
CONSUMER_SCRIPT = os.path.join(harness.HERE, "amqp_consumer.py")


def publish(mq, ids, queue=QUEUE, vhost="/", user="guest", password="guest"):
    """Publishes one persistent JSON message per id to `queue` through the
    default exchange, each confirmed by the broker (pika raises on a nack
    or an unroutable message)."""
    params = pika.ConnectionParameters(host="127.0.0.1", port=mq.amqp_port, virtual_host=vhost,
                                       credentials=pika.PlainCredentials(user, password))
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for i in ids:
            body = json.dumps({"event": "OrderCreated", "order_id": i}).encode()
            ch.basic_publish("", queue, body, mandatory=True, properties=pika.BasicProperties(
                message_id=i, content_type="application/json", delivery_mode=2))
    finally:
        conn.close()


def declare_durable(mq, queue=QUEUE, vhost="/", user="guest", password="guest"):
    params = pika.ConnectionParameters(host="127.0.0.1", port=mq.amqp_port, virtual_host=vhost,
                                       credentials=pika.PlainCredentials(user, password))
    conn = pika.BlockingConnection(params)
    try:
        conn.channel().queue_declare(queue, durable=True)
    finally:
        conn.close()


def consume(mq, n, queue=QUEUE, **kw):
    """The first n messages of `queue`, acknowledged; the consumer stopped."""
    c = amqp_consumer.AmqpConsumer(mq.amqp_port, queue, **kw).start()
    try:
        return c.wait_for(n, timeout=30)
    finally:
        c.stop()


def ids(prefix, n):
    return ["%s-%03d" % (prefix, i) for i in range(n)]


def our_processes(mq):
    """Every live process that belongs to this broker, found without its
    PID bookkeeping: any whose command line names its node, its epmd port
    or its directory, and any child of those."""
    marks = [mq.node.encode(), mq.dir.encode(), b"-port\x00%d\x00" % mq.epmd_port]
    found = set()
    for pid in rabbitserver._all_pids():
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read()
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read()
        except OSError:
            continue
        if harness.pid_alive(pid) and any(m in cmd or m in env for m in marks):
            found.add(pid)
    return found


@pytest.mark.harness
class RabbitHarnessTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.mq = rabbitserver.RabbitServer()
        rabbitserver.FIGURES.append("first start: %.2f s (node %s, amqp %s)" % (
            cls.mq.startup_seconds, cls.mq.node, cls.mq.addr))

    @classmethod
    def tearDownClass(cls):
        cls.mq.stop()

    def test_1_listens_on_loopback_only(self):
        mq = self.mq
        sockets = mq.listening()
        for s in sorted(sockets):
            rabbitserver.FIGURES.append("listening: %s %s:%d (%s)" % s)
        self.assertTrue(sockets)
        for proto, addr, port, name in sockets:
            self.assertIn(addr, ("127.0.0.1", "::1"), (proto, addr, port, name))
        by_port = {(port, name) for _, _, port, name in sockets}
        self.assertEqual(by_port, {(mq.amqp_port, "beam.smp"), (mq.dist_port, "beam.smp"),
                                   (mq.epmd_port, "epmd")})
        v4 = {port for proto, addr, port, _ in sockets if addr == "127.0.0.1"}
        self.assertEqual(v4, {mq.amqp_port, mq.dist_port, mq.epmd_port})
        # ss, where there is one, sees the same (what an operator would run)
        if shutil.which("ss"):
            out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True,
                                 timeout=10).stdout
            for line in out.splitlines():
                local = line.split()[3]
                port = int(local.rsplit(":", 1)[1])
                if port in (mq.amqp_port, mq.dist_port, mq.epmd_port):
                    self.assertIn(local.rsplit(":", 1)[0], ("127.0.0.1", "[::1]"), line)

    def test_1_rabbitmqctl_listens_on_loopback_only(self):
        """rabbitmqctl is a distributed Erlang node too, listening while it
        runs: its sockets, sampled every 20 ms during three calls."""
        mq = self.mq
        seen, done = set(), threading.Event()

        def sample():
            while not done.is_set():
                cli = our_processes(mq) - mq.pids()
                seen.update(rabbitserver.listening_sockets(cli))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for _ in range(3):
                mq.list_queues()
        finally:
            done.set()
            sampler.join()
        for s in sorted(seen):
            rabbitserver.FIGURES.append("listening (rabbitmqctl): %s %s:%d (%s)" % s)
        self.assertTrue(seen, "no listening socket of rabbitmqctl seen")
        for proto, addr, port, name in seen:
            self.assertEqual(addr, "127.0.0.1", (proto, addr, port, name))

    def test_2_hundred_confirmed_messages_arrive_in_order(self):
        mq = self.mq
        declare_durable(mq)
        sent = ids("order", 100)
        publish(mq, sent)
        self.assertEqual(mq.list_queues(), {QUEUE: (100, True)})
        got = consume(mq, 100)
        self.assertEqual([m.message_id for m in got], sent)
        self.assertEqual({m.delivery_mode for m in got}, {2})
        self.assertEqual({m.content_type for m in got}, {"application/json"})
        self.assertEqual([m.json()["order_id"] for m in got], sent)
        harness.wait_until(lambda: mq.list_queues() == {QUEUE: (0, True)}, timeout=10,
                           what="orders empty after the acks")

    def test_3_consumer_script_prints_one_line_per_event(self):
        mq = self.mq
        p = subprocess.Popen([sys.executable, CONSUMER_SCRIPT, "--port", str(mq.amqp_port),
                              "--queue", QUEUE, "--count", "3", "--wait", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        harness._register(p)
        try:
            publish(mq, ids("script", 3))
            out, err = p.communicate(timeout=30)
        finally:
            harness._stop_process(p)
        self.assertEqual(p.returncode, 0, err)
        lines = [json.loads(line) for line in out.decode().splitlines()]
        self.assertEqual([e["message_id"] for e in lines], ids("script", 3))
        self.assertEqual(lines[0]["body"], {"event": "OrderCreated", "order_id": "script-000"})
        self.assertEqual(lines[0]["delivery_mode"], 2)

    def test_4_kill9_keeps_the_durable_queue_and_unconsumed_messages(self):
        mq = self.mq
        pending = ids("pending", 10)
        publish(mq, pending)
        self.assertEqual(mq.list_queues(), {QUEUE: (10, True)})
        beam = mq.pid
        mq.kill9()
        rabbitserver.FIGURES.append("kill9: %.2f s to every process gone" % mq.stop_seconds)
        self.assertFalse(harness.pid_alive(beam))
        self.assertEqual(mq.descendants(), set())
        self.assertEqual(our_processes(mq), {mq.epmd.pid}, "only epmd outlives a kill -9")
        mq.start()
        rabbitserver.FIGURES.append("start after kill9: %.2f s" % mq.startup_seconds)
        self.assertEqual(mq.list_queues(), {QUEUE: (10, True)})
        got = consume(mq, 10)
        self.assertEqual([m.message_id for m in got], pending)

    def test_5_registered_in_a_consul_agent(self):
        mq = self.mq
        agent = harness.Consul()
        try:
            definition = mq.register(agent)
            entries = harness.wait_until(lambda: agent.health_service("rabbitmq"), timeout=15,
                                         what="rabbitmq passing in consul")
            self.assertEqual(entries[0]["Service"]["ID"], definition["ID"])
            self.assertEqual(entries[0]["Service"]["Port"], mq.amqp_port)
            self.assertEqual(entries[0]["Service"]["Address"], "127.0.0.1")
        finally:
            agent.stop()

    def test_6_own_vhost_and_user(self):
        mq = self.mq
        mq.add_vhost("events")
        mq.add_user("app", "s3cret", vhost="events")
        declare_durable(mq, vhost="events", user="app", password="s3cret")
        publish(mq, ids("vhost", 2), vhost="events", user="app", password="s3cret")
        self.assertEqual(mq.list_queues("events"), {QUEUE: (2, True)})
        got = consume(mq, 2, vhost="events", user="app", password="s3cret")
        self.assertEqual([m.message_id for m in got], ids("vhost", 2))
        with self.assertRaises(amqp_consumer.ConsumerError):
            amqp_consumer.AmqpConsumer(mq.amqp_port, QUEUE, vhost="events", user="app",
                                       password="wrong", connect_timeout=1).start()

    def test_7_clean_restart_then_stop_leaves_nothing(self):
        mq = self.mq
        publish(mq, ids("restart", 5))
        mq.stop()
        rabbitserver.FIGURES.append("clean stop (SIGTERM, then epmd): %.2f s" % mq.stop_seconds)
        self.assertEqual(our_processes(mq), set())
        mq.start()
        rabbitserver.FIGURES.append("start after a clean stop: %.2f s" % mq.startup_seconds)
        self.assertEqual(mq.list_queues(), {QUEUE: (5, True)})
        pids = mq.pids()
        self.assertGreaterEqual(len(pids), 3)  # epmd, beam.smp, erl_child_setup at least
        rc = mq.stop()
        rabbitserver.FIGURES.append("clean stop: %.2f s (exit %s)" % (mq.stop_seconds, rc))
        self.assertEqual(rc, 0)
        self.assertFalse(any(harness.pid_alive(p) for p in pids))
        self.assertEqual(our_processes(mq), set())
        self.assertEqual(mq.listening(), set())
