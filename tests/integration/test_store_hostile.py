"""Hostile input and a hostile disk for the store, against real nodes.

Input that is stored is clean: names, emails and products with a control
character anywhere get 400 and nothing is stored; emails are trimmed and
unique without regard to case. Files: the database, its -wal and -shm are
0600 and the directories the node makes 0700, whatever the umask. A full
disk or a read-only file system under database.path: writes get 503 with a
clear error, one warning line however many fail, a metric counting them,
/ready naming the store; once the disk can write again, writes succeed and
/ready is 200 with no restart (docs/http-api.md, docs/operations.md "Files, full disk and stored input";
issue 8).

The disk tests mount a small tmpfs (and an ext4 image on a loop device)
under the node's directory: they need root and mount(8), and skip saying so
without them. Every mount is undone in a cleanup, whatever the outcome.
"""

import errno
import json
import os
import shutil
import subprocess
import time
import unittest

import harness
from harness import Node, requires_meshnode, wait_until

# U+0000 cannot even reach the validator: jansson refuses it, as it refuses
# raw control bytes and invalid UTF-8; every other control character is
# escaped JSON that parses and must be refused by the node.
CONTROL_STRINGS = ["Ada\n", "\tAda", "Ada\r\nX-Injected: 1", "A\u001b[2Jda", "Ada\u007f",
                   "Ada\u0085", "Ada\u009f", "Ada\u0000", "A\u0001da"]
RAW_BAD_BODIES = {
    "raw control byte": b'{"name": "Ada\x01"}',
    "invalid UTF-8": b'{"name": "Ad\xff"}',
    "truncated UTF-8": b'{"name": "Ad\xc3"}',
    "overlong UTF-8": b'{"name": "x", "email": "\xc0\xaf@x.com"}',
}
JSON_HDR = {"Content-Type": "application/json"}


def users_list(node):
    status, _, data = node.request("GET", "/users?limit=1000")
    if status != 200:
        raise AssertionError("GET /users -> %d %r" % (status, data[:200]))
    doc = json.loads(data)
    return doc if isinstance(doc, list) else doc.get("users") or doc.get("items") or []


def error_of(data):
    return json.loads(data).get("error")


def store_lines(node, needle):
    """Log lines of the store component that hold `needle`."""
    return [l for l in node.log_text().splitlines()
            if '"component":"store"' in l and needle in l]


def run(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, timeout=60)


def mount_source(path):
    """The device mounted at `path`, or None."""
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == path:
                return fields[0]
    return None


def mounted(path):
    return mount_source(path) is not None


class InputBase:
    """Mixed into one TestCase per driver: one node per class."""

    driver = None
    node = None

    @classmethod
    def setUpClass(cls):
        settings = {"database.driver": cls.driver}
        if cls.driver == "memory":
            settings["database.path"] = None
        cls.node = Node(name="hostile-%s" % cls.driver, settings=settings)
        cls.node.start_ready()

    @classmethod
    def tearDownClass(cls):
        if cls.node:
            cls.node.stop()

    def post(self, body, headers=None):
        return self.node.request("POST", "/users", body, headers)

    def test_control_characters_are_400_and_nothing_is_stored(self):
        before = users_list(self.node)
        target_status, _, data = self.post({"name": "Target", "email": "target-%s@x.com"
                                            % self.driver})
        self.assertEqual(target_status, 201, data)
        target = json.loads(data)
        path = "/users/%d" % target["id"]
        for s in CONTROL_STRINGS:
            for body in ({"name": s}, {"name": "Ada", "email": s.replace("Ada", "ada@x.com")}):
                with self.subTest(body=body):
                    status, _, data = self.post(body)
                    self.assertEqual(status, 400, data)
                    msg = error_of(data)
                    self.assertTrue("control characters" in msg or "invalid JSON" in msg, msg)
                    status, _, data = self.node.request("PUT", path, body)
                    self.assertEqual(status, 400, data)
        for what, raw in RAW_BAD_BODIES.items():
            with self.subTest(what):
                status, _, data = self.post(raw, JSON_HDR)
                self.assertEqual(status, 400, data)
                status, _, data = self.node.request("PUT", path, raw, JSON_HDR)
                self.assertEqual(status, 400, data)
        # a clear message that names the field and the character
        status, _, data = self.post({"name": "Ada", "email": "ada@x.com\n"})
        self.assertEqual(error_of(data),
                         "'email' must not contain control characters (U+000A at byte 9)")
        after = users_list(self.node)
        self.assertEqual(len(after), len(before) + 1, after)
        got = self.node.get_json(path)
        self.assertEqual((got["name"], got["email"]), ("Target", "target-%s@x.com" % self.driver))

    def test_emails_are_one_address_trimmed_and_without_case(self):
        status, _, data = self.post({"name": "First", "email": "DUP@x.com"})
        self.assertEqual(status, 201, data)
        first = json.loads(data)
        self.assertEqual(first["email"], "DUP@x.com")  # stored as given, trimmed
        for email in (" dup@x.com ", "dup@x.com", "Dup@X.COM"):
            with self.subTest(email=email):
                status, _, data = self.post({"name": "Second", "email": email})
                self.assertEqual(status, 409, data)
                self.assertIn("already taken", error_of(data))
        status, _, data = self.post({"name": "  Other  ", "email": "  other@x.com "})
        self.assertEqual(status, 201, data)
        other = json.loads(data)
        self.assertEqual((other["name"], other["email"]), ("Other", "other@x.com"))
        # PUT follows the same rules: another's address in any case is taken,
        # one's own may change case
        status, _, data = self.node.request("PUT", "/users/%d" % other["id"],
                                            {"name": "Other", "email": " dUP@x.com"})
        self.assertEqual(status, 409, data)
        status, _, data = self.node.request("PUT", "/users/%d" % first["id"],
                                            {"name": "First", "email": "dup@x.com "})
        self.assertEqual(status, 200, data)
        self.assertEqual(json.loads(data)["email"], "dup@x.com")
        emails = [u["email"] for u in users_list(self.node) if u.get("email")]
        self.assertEqual(sum(1 for e in emails if e.lower() == "dup@x.com"), 1, emails)


@requires_meshnode
class SqliteInputTest(InputBase, unittest.TestCase):
    driver = "sqlite"


@requires_meshnode
class MemoryInputTest(InputBase, unittest.TestCase):
    driver = "memory"


@requires_meshnode
class OrderInputTest(harness.ProcessesTestCase):
    def test_product_with_control_characters_is_400(self):
        # validation comes before the users peer is asked: none is needed
        node = self.track(Node(name="orders", settings={"service.modules": ["orders"]}))
        node.start_ready()
        for product in ("tea\n", "\ttea", "te\u001ba", "tea\u0085"):
            with self.subTest(product=product):
                status, _, data = node.request("POST", "/orders", {"user_id": 1,
                                                                   "product": product,
                                                                   "quantity": 1})
                self.assertEqual(status, 400, data)
                self.assertIn("'product' must not contain control characters",
                              error_of(data))
        status, _, data = node.request("GET", "/orders")
        self.assertEqual(json.loads(data), [], data)


@requires_meshnode
class FileModesTest(harness.ProcessesTestCase):
    def test_database_files_0600_and_directories_0700(self):
        for mask in (0o022, 0o000):
            with self.subTest(umask=oct(mask)):
                node = Node(name="modes")
                base = os.path.join(node.dir, "made", "deeper")
                node.settings["database.path"] = os.path.join(base, "users.db")
                node.write_config()
                old = os.umask(mask)
                try:
                    self.track(node).start_ready()
                finally:
                    os.umask(old)
                status, _, data = node.request("POST", "/users", {"name": "Ada"})
                self.assertEqual(status, 201, data)
                db = os.path.join(base, "users.db")
                for path, want in ((db, 0o600), (db + "-wal", 0o600), (db + "-shm", 0o600),
                                   (os.path.join(node.dir, "made"), 0o700), (base, 0o700)):
                    mode = os.stat(path).st_mode & 0o7777
                    self.assertEqual(mode, want, "%s is %04o, not %04o" % (path, mode, want))
                node.stop()


class DiskBase(harness.ProcessesTestCase):
    """A node whose database.path lies on a file system the test mounts."""

    N_FAILED = 25

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a file system under database.path")
        if not shutil.which("mount") or not shutil.which("umount"):
            self.skipTest("mount(8) and umount(8) are not installed")

    def mount(self, target, argv):
        """Mounts with `argv` (mount's arguments before the target) and
        unmounts in a cleanup whatever happens; skips if mounting fails."""
        os.makedirs(target, exist_ok=True)
        r = run(["mount"] + argv + [target])
        if r.returncode != 0:
            self.skipTest("cannot mount (%s): %s" % (" ".join(argv),
                                                      r.stdout.decode().strip()))
        # Cleanups run after tearDown has stopped the node, which holds the
        # files open.
        self.addCleanup(self.unmount, target)

    def unmount(self, target):
        if mounted(target) and run(["umount", target]).returncode != 0:
            run(["umount", "-l", target])
        self.assertFalse(mounted(target), "%s is still mounted" % target)

    def start_node(self, dbdir, name):
        node = Node(name=name, settings={"database.path": os.path.join(dbdir, "users.db")})
        self.track(node).start_ready()
        for i in range(2):
            status, _, data = node.request("POST", "/users", {"name": "Before %d" % i,
                                                              "email": "before%d@x.com" % i})
            self.assertEqual(status, 201, data)
        return node

    def assert_cannot_write(self, node, kind, text):
        """N_FAILED writes of each sort: 503 with the clear error; then
        /ready, the log and the metric. Returns the failed-write count."""
        failed = 0
        for i in range(self.N_FAILED):
            status, _, data = node.request("POST", "/users", {"name": "During %d" % i,
                                                              "email": "during%d@x.com" % i})
            self.assertEqual(status, 503, data)
            self.assertEqual(error_of(data), "the store cannot write: " + text)
            failed += 1
        for method, path, body in (("PUT", "/users/1", {"name": "Renamed"}),
                                   ("DELETE", "/users/2", None)):
            status, _, data = node.request(method, path, body)
            self.assertEqual(status, 503, "%s %s -> %d %r" % (method, path, status, data))
            self.assertEqual(error_of(data), "the store cannot write: " + text)
            failed += 1
        # reads go on
        status, _, data = node.request("GET", "/users/1")
        self.assertEqual(status, 200, data)
        self.assertEqual(json.loads(data)["name"], "Before 0")
        status, _, data = node.request("GET", "/ready")
        self.assertEqual(status, 503, data)
        self.assertEqual(json.loads(data).get("store"), "cannot write: " + text, data)
        self.assertEqual(len(store_lines(node, "cannot write to")), 1,
                         "\n".join(store_lines(node, "")))
        self.assertEqual([l for l in node.log_text().splitlines()
                          if '"component":"store"' in l and '"level":"error"' in l], [])
        self.assertEqual(node.metric("meshnode_store_write_failures_total", kind=kind), failed)
        for other in {"disk_full", "read_only", "io"} - {kind}:
            self.assertEqual(node.metric("meshnode_store_write_failures_total", kind=other), 0)
        self.assertTrue(node.running())
        return failed

    def assert_recovers(self, node, failed, kind):
        """/ready turns 200 with no write arriving, then writes succeed;
        returns how long /ready took."""
        t0 = time.monotonic()
        wait_until(lambda: node.request("GET", "/ready")[0] == 200, timeout=5, interval=0.05,
                   what="/ready 200 once the store can write")
        took = time.monotonic() - t0
        status, _, data = node.request("POST", "/users", {"name": "After",
                                                          "email": "after@x.com"})
        self.assertEqual(status, 201, data)
        status, _, data = node.request("DELETE", "/users/2")
        self.assertEqual(status, 204, data)
        self.assertEqual(len(store_lines(node, "can write again")), 1,
                         "\n".join(store_lines(node, "")))
        self.assertEqual(len(store_lines(node, "cannot write to")), 1)
        self.assertEqual(node.metric("meshnode_store_write_failures_total", kind=kind), failed)
        return took


@requires_meshnode
class FullDiskTest(DiskBase):
    def test_full_disk_is_503_then_recovers_without_restart(self):
        dbdir = os.path.join(harness.mkdtemp("fulldisk"), "db")
        self.mount(dbdir, ["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
        node = self.start_node(dbdir, "fulldisk")
        pid = node.pid

        filler = os.path.join(dbdir, "filler")
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as e:
                self.assertEqual(e.errno, errno.ENOSPC)
        failed = self.assert_cannot_write(node, "disk_full", "disk full")

        os.unlink(filler)
        took = self.assert_recovers(node, failed, "disk_full")
        self.assertEqual(node.pid, pid, "the node was restarted")
        print("      full disk: %d failed writes, %d warning line(s), /ready 200 %.2fs after "
              "the space came back" % (failed, len(store_lines(node, "cannot write to")), took))


@requires_meshnode
class ReadOnlyTest(DiskBase):
    def test_remount_read_only_under_a_running_node(self):
        """The kernel refuses to remount read-only a file system with files
        open for writing (EBUSY), as the node's database always is: a live
        store cannot turn read-only that way. If a kernel ever allows it,
        the node must answer as for any read-only store, and recover."""
        dbdir = os.path.join(harness.mkdtemp("remount"), "db")
        self.mount(dbdir, ["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        node = self.start_node(dbdir, "remount")
        r = run(["mount", "-o", "remount,ro", dbdir])
        if r.returncode != 0:
            self.assertIn("busy", r.stdout.decode())
            status, _, data = node.request("POST", "/users", {"name": "Still"})
            self.assertEqual(status, 201, data)
            return
        self.addCleanup(run, ["mount", "-o", "remount,rw", dbdir])
        failed = self.assert_cannot_write(node, "read_only", "read-only")
        self.assertEqual(run(["mount", "-o", "remount,rw", dbdir]).returncode, 0)
        self.assert_recovers(node, failed, "read_only")

    def test_file_system_turned_read_only_by_the_kernel(self):
        """How a live store does turn read-only: ext4 mounted
        errors=remount-ro meets an error and the kernel forces it read-only
        under the open files (triggered here through ext4's sysfs knob).
        The kernel lets nothing write there again until it is unmounted, so
        recovery is the full-disk test's part."""
        for tool in ("mkfs.ext4", "losetup"):
            if not shutil.which(tool):
                self.skipTest("%s is not installed" % tool)
        base = harness.mkdtemp("readonly")
        image, dbdir = os.path.join(base, "ext4.img"), os.path.join(base, "db")
        with open(image, "wb") as f:
            f.truncate(16 << 20)
        r = run(["mkfs.ext4", "-q", "-F", image])
        self.assertEqual(r.returncode, 0, r.stdout)
        self.mount(dbdir, ["-o", "loop,errors=remount-ro", image])
        dev = os.path.realpath(mount_source(dbdir))
        knob = "/sys/fs/ext4/%s/trigger_fs_error" % os.path.basename(dev)
        if not os.path.exists(knob):
            self.skipTest("this kernel has no %s" % knob)
        node = self.start_node(dbdir, "readonly")
        with open(knob, "w") as f:
            f.write("meshnode test: read-only store\n")
        self.assert_cannot_write(node, "read_only", "read-only")
