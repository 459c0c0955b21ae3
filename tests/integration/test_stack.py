"""The deepest request paths fit a civetweb worker's stack (100 KiB in
Debian's build) with room to spare: the worst body on each route, a body of
the largest size allowed, JSON nested to the limit and past it, an order
that calls a users peer through Consul. The node measures its workers'
stack high-water mark and logs it when it stops; under the sanitizers the
same requests must simply all be answered. Issue 8, point 1."""

import json
import re
import sys

import harness
from harness import Consul, Node, requires_meshnode, wait_until

MAX_BODY = 1048576
JSON_DEPTH_LIMIT = 64
STACK_SHARE_MAX = 0.6  # of the worker stack, for the worst path


def nested(depth, leaf="1"):
    return "[" * depth + leaf + "]" * depth


def objects(depth):
    return '{"a":' * depth + "1" + "}" * depth


def worst_bodies():
    """Bodies that push a parser hardest, each one legal to send."""
    return [
        "[" * 1000,
        "{" * 1000,
        '{"a":' * 1000,
        nested(JSON_DEPTH_LIMIT),
        nested(JSON_DEPTH_LIMIT + 1),
        objects(JSON_DEPTH_LIMIT),
        '{"name":%s,"email":"a@b.c"}' % nested(JSON_DEPTH_LIMIT - 1),
        '{"name":"%s","email":"big@x.com"}' % ("n" * (MAX_BODY - 40)),
        "[" * MAX_BODY,
        '"' + "\\u00e9" * ((MAX_BODY - 2) // 6) + '"',
    ]


@requires_meshnode
class WorkerStackTest(harness.ProcessesTestCase):
    def send_all(self, node, method, path):
        for body in worst_bodies():
            data = body.encode()
            self.assertLessEqual(len(data), MAX_BODY)
            status, _, answer = node.request(method, path, data,
                                             headers={"Content-Type": "application/json"},
                                             timeout=20)
            self.assertIn(status, (400, 404, 413, 422), answer[:200])
            if body.startswith("[" * (JSON_DEPTH_LIMIT + 1)):
                self.assertEqual(status, 400, answer[:200])
                self.assertIn("nested", json.loads(answer)["error"])
            self.assertEqual(node.request("GET", "/health")[0], 200)

    def stack_figure(self, node):
        self.assertEqual(node.stop(), 0)
        text = node.log_text()
        if "not measured in a sanitizer build" in text:
            return None
        m = re.search(r"worker stacks: at most (\d+) of (\d+) bytes used", text)
        self.assertIsNotNone(m, "no stack figure in the log")
        used, size = int(m.group(1)), int(m.group(2))
        print("# worker stack: %d of %d bytes (%.0f%%)" % (used, size, 100.0 * used / size),
              file=sys.stderr, flush=True)
        return used, size

    def test_worst_bodies_and_a_peer_call_fit_the_worker_stack(self):
        consul = self.track(Consul())
        users = self.track(Node(name="users", consul=consul,
                                settings={"server.max_body_bytes": MAX_BODY}))
        users.start_ready()
        orders = self.track(Node(name="orders", consul=consul,
                                 settings={"service.modules": ["orders"],
                                           "server.max_body_bytes": MAX_BODY}))
        orders.start_ready()
        wait_until(lambda: len(consul.health_service("users", passing=True)) == 1,
                   timeout=15, what="the users node passing")
        status, _, body = users.request("POST", "/users", {"name": "Ada", "email": "ada@x.com"})
        self.assertEqual(status, 201, body)
        uid = json.loads(body)["id"]

        self.send_all(users, "POST", "/users")
        self.send_all(users, "PUT", "/users/%d" % uid)
        self.send_all(orders, "POST", "/orders")
        for _ in range(20):  # the peer path: libcurl and the resolver on the worker
            status, _, body = orders.request("POST", "/orders",
                                             {"user_id": uid, "product": "p" * 100,
                                              "quantity": 1})
            self.assertEqual(status, 201, body)
        self.assertEqual(users.request("GET", "/users?limit=1000")[0], 200)
        self.assertEqual(orders.request("GET", "/metrics")[0], 200)

        for node in (users, orders):
            figure = self.stack_figure(node)
            if figure is not None:
                used, size = figure
                self.assertLess(used, size * STACK_SHARE_MAX,
                                "the worst path uses %d of %d stack bytes" % (used, size))
