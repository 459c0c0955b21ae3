"""Tests of pgserver.py, the throwaway PostgreSQL 15 of the tests: it starts
on a free port (never assuming 5432 is free or is ours) in about a second,
answers SQL, enforces passwords over TCP, runs as the right user, and
stop, kill -9 and restart leave nothing behind. No meshnode here."""

import os
import pwd
import subprocess
import sys
import time
import unittest

import pytest

import harness
import pgserver
from pgserver import PgServer

# Tests of the harness alone: not counted as meshnode's.
pytestmark = pytest.mark.harness

POSTGRES = None  # the module's server while its tests run (conftest.py)


def report(text):
    print("# " + text, file=sys.stderr, flush=True)


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def tcp_psql(server, user, password, sql="SELECT current_user", db="postgres"):
    """psql over TCP with a password: (rc, stdout, stderr)."""
    env = harness.minimal_env({"PGPASSWORD": password, "LC_ALL": "C"})
    p = subprocess.run([pgserver.pg_binary("psql"), "-X", "-A", "-t", "-q", "-h", server.host,
                        "-p", str(server.port), "-U", user, "-d", db, "-c", sql],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=30)
    return p.returncode, p.stdout.decode().strip(), p.stderr.decode().strip()


class PgServerTest(unittest.TestCase):
    def test_module_server_answers_on_a_free_port(self):
        pg = POSTGRES
        self.assertTrue(pg.running())
        self.assertNotEqual(pg.port, 5432)
        self.assertTrue(harness.port_open(pg.port))
        self.assertTrue(os.path.exists(os.path.join(pg.dir, ".s.PGSQL.%d" % pg.port)))
        self.assertRegex(pg.scalar("SHOW server_version"), r"^15\.")
        self.assertEqual(pg.scalar("SHOW fsync"), "off")
        self.assertEqual(pg.scalar("SHOW full_page_writes"), "off")
        self.assertEqual(pg.scalar("SHOW listen_addresses"), "127.0.0.1")
        self.assertEqual(pg.scalar("SHOW server_encoding"), "UTF8")
        self.assertEqual(pg.rows("SELECT 1, 'a|b'"), [("1", "a", "b")])
        report("postgres: template initdb %.2f s (once per run), cluster copy %.2f s, "
               "start to ready %.2f s" % (pgserver._TEMPLATE["seconds"], pg.prepare_seconds,
                                          pg.startup_seconds))
        self.assertLess(pg.startup_seconds, 5.0)

    def test_runs_as_postgres_when_root_else_as_the_caller(self):
        pg = POSTGRES
        pm = pg.postmaster_pid()
        self.assertEqual(pm, pg.proc.pid, "the recorded PID is the postmaster's own")
        want = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
        self.assertEqual(proc_uid(pm), want)
        self.assertIn(pg.proc.pid, harness.PROCS)
        self.assertTrue(pg.backend_pids(), "no backends (checkpointer, walwriter...) seen")

    def test_tcp_wants_the_password(self):
        pg = POSTGRES
        pg.create_role_with_password("pw_check", "it's right")
        pg.create_database("pw_check_db", owner="pw_check")
        rc, out, err = tcp_psql(pg, "pw_check", "it's right", db="pw_check_db")
        self.assertEqual((rc, out), (0, "pw_check"), err)
        rc, out, err = tcp_psql(pg, "pw_check", "wrong", db="pw_check_db")
        self.assertNotEqual(rc, 0)
        self.assertIn("password authentication failed", err)
        rc, out, err = tcp_psql(pg, pgserver.SUPERUSER, pgserver.SUPERUSER_PASSWORD)
        self.assertEqual((rc, out), (0, "postgres"), err)
        # the database is the role's: it may create tables in it
        pg.psql("CREATE TABLE t (id bigint)", db="pw_check_db", user="pw_check")
        pg.drop_database("pw_check_db")
        self.assertIsNone(pg.scalar("SELECT 1 FROM pg_database WHERE datname = 'pw_check_db'"))

    def test_session_holds_a_lock_until_closed(self):
        pg = POSTGRES
        db = pg.create_database("session_db")
        pg.psql("CREATE TABLE locked (id int)", db=db)
        s = pg.session(db)
        try:
            s.send("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE; SELECT 'locked';")
            harness.wait_until(lambda: "locked" in s.output(), timeout=10, what="the lock taken")
            held = pg.scalar("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                             "WHERE c.relname = 'locked' AND l.mode = 'AccessExclusiveLock' "
                             "AND l.granted", db=db)
            self.assertEqual(held, "1")
        finally:
            s.close()
        self.assertNotIn(s.proc.pid, harness.PROCS)
        self.assertEqual(pg.scalar("SELECT count(*) FROM locked", db=db), "0")


class PgServerLifecycleTest(unittest.TestCase):
    """A server of its own: stop, kill -9, restart."""

    def test_stop_kill9_restart_leave_nothing(self):
        pg = PgServer(start=False)
        self.assertFalse(harness.port_open(pg.port), "port given before start must be free")
        pg.start()
        try:
            pg.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before');")
            port = pg.port

            pids = pg.backend_pids() | {pg.proc.pid}
            t0 = time.monotonic()
            self.assertEqual(pg.stop(), 0)
            fast = time.monotonic() - t0
            self.assertFalse(any(harness.pid_alive(p) for p in pids))
            self.assertNotIn(pg.proc.pid, harness.PROCS)
            self.assertFalse(harness.port_open(port))

            pg.start()
            self.assertEqual(pg.port, port, "a restart keeps the port")
            self.assertEqual(pg.scalar("SELECT v FROM kept"), "before")
            pg.psql("INSERT INTO kept VALUES ('acknowledged');")

            pids = pg.backend_pids() | {pg.proc.pid}
            self.assertTrue(len(pids) > 1)
            pg.kill9()
            self.assertFalse(any(harness.pid_alive(p) for p in pids),
                             "kill9 leaves a backend running")
            t0 = time.monotonic()
            pg.start()  # crash recovery
            recovery = time.monotonic() - t0
            self.assertEqual(pg.rows("SELECT v FROM kept ORDER BY v"),
                             [("acknowledged",), ("before",)])

            t0 = time.monotonic()
            pg.restart()
            restart = time.monotonic() - t0
            self.assertEqual(pg.scalar("SELECT count(*) FROM kept"), "2")
            report("postgres: fast stop %.2f s, start after kill -9 (crash recovery) %.2f s, "
                   "restart %.2f s" % (fast, recovery, restart))
        finally:
            pg.stop()
        self.assertFalse(pg.running())

    def test_fixed_port_in_use_is_an_error_not_a_hang(self):
        busy = PgServer(start=True)
        try:
            other = PgServer(port=busy.port, start=False)
            t0 = time.monotonic()
            with self.assertRaises(pgserver.PgError) as cm:
                other.start()
            self.assertIn("could not bind", str(cm.exception))
            self.assertLess(time.monotonic() - t0, 10)
            self.assertFalse(other.running())
        finally:
            busy.stop()

    def test_prefix_runs_in_front_of_postgres(self):
        # `env` execs its command like `ip netns exec` does: the recorded
        # PID stays the postmaster's.
        pg = PgServer(prefix=["env", "MESHNODE_PG_PREFIX=1"])
        try:
            self.assertEqual(pg.postmaster_pid(), pg.proc.pid)
            with open("/proc/%d/environ" % pg.proc.pid, "rb") as f:
                self.assertIn(b"MESHNODE_PG_PREFIX=1", f.read().split(b"\0"))
            self.assertEqual(pg.scalar("SELECT 1"), "1")
        finally:
            pg.stop()

    def test_detached_server_outlives_the_registry_and_stops_from_its_dir(self):
        top = harness.mkdtemp("detach")
        where = os.path.join(top, "pg")
        if os.geteuid() == 0:
            with self.assertRaises(pgserver.PgError) as cm:
                PgServer(dir=where)
            self.assertIn("is not o+x", str(cm.exception))
            os.rmdir(where)
            os.chmod(top, 0o711)
        pg = PgServer(dir=where)
        try:
            pid = pg.proc.pid
            pg.detach()
            self.assertNotIn(pid, harness.PROCS)
            self.assertEqual(pg.scalar("SELECT 1"), "1")
            self.assertTrue(pgserver.stop_detached(where))
            self.assertFalse(harness.pid_alive(pid))
            self.assertFalse(pgserver.stop_detached(where), "a second stop finds nothing")
        finally:
            pg.kill9()
