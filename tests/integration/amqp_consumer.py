"""A small AMQP 0-9-1 consumer on Debian's python3-pika (installed by
`scripts/deps.sh rabbitmq`; run it with /usr/bin/python3, whose packages
those are), for the event tests and the demo.

From a test:

    c = AmqpConsumer(port=mq.amqp_port, queue="orders").start()
    c.wait_for(100)                      # bounded
    c.stop()
    [m.message_id for m in c.messages]   # in arrival order

Each message is acknowledged after it is recorded, so what a consumer saw is
gone from the queue. By default the queue must exist (a passive declare:
the publisher owns it); declare=True declares it durable first.

As a script, one JSON line per event on stdout, flushed, until SIGINT or
SIGTERM (or --count messages, or --idle seconds without one):

    /usr/bin/python3 tests/integration/amqp_consumer.py --port 5672 --queue orders
"""

import argparse
import json
import signal
import sys
import threading
import time

try:
    import pika
except ImportError:
    if __name__ != "__main__":
        raise
    sys.exit("amqp_consumer: no pika for %s: run it with /usr/bin/python3 (Debian's "
             "python3-pika, installed by `scripts/deps.sh rabbitmq`)" % sys.executable)


class Message:
    """One delivery: body (bytes), message_id, content_type, delivery_mode
    (2: persistent), routing_key, exchange, redelivered, headers, and
    received (time.time() when it arrived)."""

    __slots__ = ("body", "message_id", "content_type", "delivery_mode", "routing_key",
                 "exchange", "redelivered", "headers", "received")

    def __init__(self, method, props, body):
        self.body = body
        self.message_id = props.message_id
        self.content_type = props.content_type
        self.delivery_mode = props.delivery_mode
        self.headers = props.headers
        self.routing_key = method.routing_key
        self.exchange = method.exchange
        self.redelivered = method.redelivered
        self.received = time.time()

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def as_dict(self):
        """What the script prints: the body as JSON when it is JSON, else
        as text."""
        try:
            body = json.loads(self.body)
        except ValueError:
            body = self.text()
        return {"message_id": self.message_id, "content_type": self.content_type,
                "delivery_mode": self.delivery_mode, "routing_key": self.routing_key,
                "redelivered": self.redelivered, "body": body}

    def __repr__(self):
        return "Message(%r, %r)" % (self.message_id, self.body[:60])


class ConsumerError(RuntimeError):
    pass


class AmqpConsumer:
    """Consumes `queue` in a thread of its own (pika's BlockingConnection is
    used only from that thread). start() returns once the consumer is
    registered with the broker, or raises ConsumerError (connection refused,
    no such queue, access refused) after `connect_timeout`, retrying until
    then. `on_message(message)` (optional) is called in the consumer's
    thread after a message is recorded and before it is acknowledged."""

    def __init__(self, port, queue, host="127.0.0.1", vhost="/", user="guest",
                 password="guest", declare=False, prefetch=100, on_message=None,
                 connect_timeout=10.0):
        self.params = pika.ConnectionParameters(
            host=host, port=port, virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password),
            connection_attempts=1, socket_timeout=5, blocked_connection_timeout=30,
            heartbeat=30)
        self.queue = queue
        self.declare = declare
        self.prefetch = prefetch
        self.on_message = on_message
        self.connect_timeout = connect_timeout
        self.messages = []
        self.error = None                # what ended the thread, if not stop()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self._run, name="amqp-consumer-" + self.queue,
                                        daemon=True)
        self._thread.start()
        self._ready.wait(self.connect_timeout + 10)
        if self.error is not None:
            self._thread.join(5)
            raise ConsumerError("cannot consume %s: %s" % (self.queue, self.error))
        if not self._ready.is_set():
            self.stop()
            raise ConsumerError("consumer of %s not ready within %.0f s"
                                % (self.queue, self.connect_timeout + 10))
        return self

    def stop(self, timeout=10.0):
        """Cancels the consumer and closes the connection (messages received
        but not yet acknowledged go back to the queue). Returns the
        messages."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.messages

    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- results -----------------------------------------------------------------

    def count(self):
        with self._lock:
            return len(self.messages)

    def wait_for(self, n, timeout=30.0):
        """Waits, bounded, until `n` messages have arrived; returns the
        first n. Raises AssertionError at the deadline (a test fails), or
        ConsumerError when the connection ended."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.messages) < n:
                if self.error is not None:
                    raise ConsumerError("consumer of %s ended after %d of %d messages: %s"
                                        % (self.queue, len(self.messages), n, self.error))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%d of %d messages on %s within %.0f s"
                                         % (len(self.messages), n, self.queue, timeout))
                self._arrived.wait(min(left, 0.2))
            return list(self.messages[:n])

    # -- the consumer's thread -----------------------------------------------------

    def _connect(self):
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                conn = pika.BlockingConnection(self.params)
                try:
                    ch = conn.channel()
                    if self.declare:
                        ch.queue_declare(self.queue, durable=True)
                    else:
                        ch.queue_declare(self.queue, passive=True)
                    return conn, ch
                except Exception:
                    _close(conn)
                    raise
            except (pika.exceptions.AMQPConnectionError,
                    pika.exceptions.ChannelClosedByBroker):
                # refused (not up yet) or no such queue (not declared yet)
                if self._stopping.is_set() or time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def _deliver(self, ch, method, props, body):
        m = Message(method, props, body)
        with self._arrived:
            self.messages.append(m)
            self._arrived.notify_all()
        if self.on_message is not None:
            self.on_message(m)
        ch.basic_ack(method.delivery_tag)

    def _run(self):
        conn = None
        try:
            conn, ch = self._connect()
            ch.basic_qos(prefetch_count=self.prefetch)
            tag = ch.basic_consume(self.queue, self._deliver, auto_ack=False)
            self._ready.set()
            while not self._stopping.is_set():
                conn.process_data_events(time_limit=0.1)
            ch.basic_cancel(tag)
        except Exception as e:  # noqa: BLE001 - reported by start() and wait_for()
            self.error = "%s: %s" % (type(e).__name__, e)
            with self._arrived:
                self._arrived.notify_all()
        finally:
            self._ready.set()
            if conn is not None:
                _close(conn)


def _close(conn):
    try:
        if conn.is_open:
            conn.close()
    except Exception:  # noqa: BLE001 - closing what already broke
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="Print each message of an AMQP queue as one "
                                 "JSON line (and acknowledge it).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--vhost", default="/")
    ap.add_argument("--user", default="guest")
    ap.add_argument("--password", default="guest")
    ap.add_argument("--queue", default="orders")
    ap.add_argument("--declare", action="store_true",
                    help="declare the queue (durable) instead of requiring it")
    ap.add_argument("--wait", type=float, default=30.0,
                    help="seconds to keep trying to connect and find the queue (default 30)")
    ap.add_argument("--count", type=int, default=0, help="exit after this many messages")
    ap.add_argument("--idle", type=float, default=0,
                    help="exit after this many seconds without a message")
    args = ap.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def show(m):
        sys.stdout.write(json.dumps(m.as_dict(), sort_keys=True) + "\n")
        sys.stdout.flush()

    consumer = AmqpConsumer(args.port, args.queue, host=args.host, vhost=args.vhost,
                            user=args.user, password=args.password, declare=args.declare,
                            on_message=show, connect_timeout=args.wait)
    try:
        consumer.start()
    except ConsumerError as e:
        sys.stderr.write("amqp_consumer: %s\n" % e)
        return 1
    sys.stderr.write("amqp_consumer: consuming %s on %s:%d vhost %s\n"
                     % (args.queue, args.host, args.port, args.vhost))
    last, seen = time.monotonic(), 0
    while not stop.is_set():
        n = consumer.count()
        if n != seen:
            last, seen = time.monotonic(), n
        if args.count and n >= args.count:
            break
        if args.idle and time.monotonic() - last >= args.idle:
            break
        if consumer.error is not None:
            sys.stderr.write("amqp_consumer: %s\n" % consumer.error)
            return 1
        stop.wait(0.1)
    consumer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
