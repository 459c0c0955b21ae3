"""A throwaway PostgreSQL 15 (Debian's postgresql-15, installed by
`scripts/deps.sh test`) for the integration tests, the bench and the cluster
tests. Standard library only, beside harness.py.

    pg = PgServer()                      # started: a free port on 127.0.0.1
    pg.create_role_with_password("app", "s3cret")
    pg.create_database("users_a", owner="app")
    Node(settings=pg.node_settings("users_a", "app", "s3cret"))
    pg.scalar("SELECT count(*) FROM users", db="users_a")
    pg.restart(); pg.kill9(); pg.start(); pg.stop()

One server is its own temp directory under the harness's run directory:
`data/` (the cluster), the Unix socket (`.s.PGSQL.<port>`) and
`postgres.log`, registered with the harness's log bookkeeping so a failed
test shows its tail. The cluster is a copy of one template made by initdb
once per run (initdb takes about 1 s, a copy a fraction of that); it runs
with fsync and full_page_writes off.

Authentication: the Unix socket trusts every role (the tests' own psql goes
through it, whatever the network namespace); TCP, from any address, wants a
SCRAM password. The superuser is `postgres`, password SUPERUSER_PASSWORD.

Who runs it: initdb and postgres refuse root. As root they run as the
`postgres` user (made by Debian's postgresql-common) through `setpriv`,
which changes user and then execs: the PID the harness records is the
postmaster's own. (`runuser` and `su` fork and wait in a parent, so killing
the PID they return would orphan the server.) As anyone else they run as
the caller.

For the cluster tests: `host` is the address the server listens on and
clients use, `port` may be fixed, and `prefix` is put in front of the
command that runs postgres (`["ip", "netns", "exec", "ns-pg"]`); the prefix
must exec its command, not fork it (ip netns exec and nsenter without
--pid do). psql always goes through the Unix socket, which a network
namespace does not hide. A script whose server must outlive it (a cluster
brought up by one command and down by another) gives `dir` (a directory of
its own, not under the harness's run directory, which goes at exit), calls
detach() once the server is up, and later stop_detached(dir) from any
process.

Every process is recorded by PID in harness.PROCS, so harness.kill_all()
(at the end of the session, on SIGTERM, at exit) kills the postmaster; its
backends exit when they see it gone. stop() and kill9() also kill the
backends by PID and wait for them. Every wait is bounded.
"""

import os
import pwd
import signal
import subprocess
import threading
import time

import harness

PG_BINDIR = os.environ.get("MESHNODE_PG_BINDIR") or "/usr/lib/postgresql/15/bin"
SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "itest-postgres-superuser"
# The OS user postgres runs as when we are root (Debian's package makes it).
OS_USER = "postgres"

# Settings every server gets (postgres -c name=value); `settings` adds to them.
DEFAULT_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "log_line_prefix": "%m [%p] %q%u@%d ",
}

PG_HBA = """\
# written by tests/integration/pgserver.py
local all all trust
host  all all 0.0.0.0/0 scram-sha-256
host  all all ::/0      scram-sha-256
"""


class PgError(RuntimeError):
    pass


def pg_binary(name):
    """The path of a PostgreSQL 15 program (postgres, initdb, psql); runs
    scripts/deps.sh once when it is missing."""
    path = os.path.join(PG_BINDIR, name)
    if not os.access(path, os.X_OK):
        subprocess.run([os.path.join(harness.REPO, "scripts", "deps.sh"), "test"],
                       stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                       timeout=900, check=False)
    if not os.access(path, os.X_OK):
        raise PgError("%s not found: `scripts/deps.sh test` installs Debian's postgresql-15" % path)
    return path


def _as_root():
    return os.geteuid() == 0


def _drop_privileges():
    """The argv prefix that runs a command as OS_USER when we are root."""
    if not _as_root():
        return []
    return ["setpriv", "--reuid=" + OS_USER, "--regid=" + OS_USER, "--init-groups", "--"]


def _chown_to_server_user(path):
    if _as_root():
        pw = pwd.getpwnam(OS_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _let_server_user_in():
    """As root, the run directory (0700, root's) is opened for traversal
    only, so the postgres user reaches its own directory inside it."""
    if _as_root():
        os.chmod(harness.TMP_ROOT, 0o711)


def _check_reachable(path):
    """As root, every directory above `path` must let others through (o+x)
    for the postgres user to reach it: a clear error now rather than
    postgres's "Permission denied" at start."""
    if not _as_root():
        return
    parent = os.path.dirname(path)
    while parent and parent != "/":
        if not os.stat(parent).st_mode & 0o001:
            raise PgError("the %s user cannot reach %s: %s is not o+x" % (OS_USER, path, parent))
        parent = os.path.dirname(parent)


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text):
    return "'" + text.replace("'", "''") + "'"


def _run(argv, timeout, what):
    """Runs a short command registered by PID; (rc, stdout, stderr)."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=harness.minimal_env({"LC_ALL": "C"}),
                         start_new_session=True)
    harness._register(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        harness._stop_process(p, signal.SIGKILL)
        raise PgError("%s did not finish within %.0f s" % (what, timeout))
    harness._unregister(p)
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# --------------------------------------------------------------------------
# The template cluster: initdb once per run
# --------------------------------------------------------------------------

_TEMPLATE = {"dir": None, "seconds": None}
_TEMPLATE_LOCK = threading.Lock()


def template():
    """The data directory every server copies, made by initdb on first use
    (the superuser and its password, UTF-8 without locale, our pg_hba.conf).
    Returns its path."""
    with _TEMPLATE_LOCK:
        if _TEMPLATE["dir"]:
            return _TEMPLATE["dir"]
        _let_server_user_in()
        top = harness.mkdtemp("postgres-template")
        _chown_to_server_user(top)
        data = os.path.join(top, "data")
        pwfile = os.path.join(top, "superuser-password")
        with open(pwfile, "w") as f:
            f.write(SUPERUSER_PASSWORD + "\n")
        _chown_to_server_user(pwfile)
        t0 = time.monotonic()
        rc, out, err = _run(_drop_privileges() + [
            pg_binary("initdb"), "-D", data, "-U", SUPERUSER, "--pwfile", pwfile,
            "--auth-local=trust", "--auth-host=scram-sha-256",
            "-E", "UTF8", "--no-locale", "--no-sync"], 120, "initdb")
        os.unlink(pwfile)
        if rc != 0:
            raise PgError("initdb failed (%d):\n%s%s" % (rc, out[-2000:], err[-2000:]))
        with open(os.path.join(data, "pg_hba.conf"), "w") as f:
            f.write(PG_HBA)
        _TEMPLATE["seconds"] = time.monotonic() - t0
        _TEMPLATE["dir"] = data
        return data


# --------------------------------------------------------------------------
# One server
# --------------------------------------------------------------------------


class PgServer(harness._Process):
    """A PostgreSQL 15 server of its own (see the module's docstring).
    `host`: listen_addresses and the address clients are given; `port`:
    fixed, else free (a port taken before postgres binds it is replaced,
    up to three tries); `prefix`: argv put in front of postgres; `settings`:
    more postgres -c settings; `dir`: a new directory to use (made 0700)
    instead of a temp one in the run directory; start=False prepares the
    cluster and its port and leaves start() for later (a node started
    first)."""

    START_TIMEOUT = 15.0
    STOP_TIMEOUT = 10.0

    def __init__(self, host="127.0.0.1", port=None, prefix=None, settings=None,
                 label=None, dir=None, start=True):
        self.host = host
        self.fixed_port = port is not None
        self.port = port or harness.free_port()
        self.prefix = list(prefix or [])
        self.settings = dict(DEFAULT_SETTINGS)
        self.settings.update(settings or {})
        self.label = label
        self.proc = None
        self.starts = 0
        self.startup_seconds = None  # the last start: spawn to ready
        self._logged = False
        self._backends = set()       # postmaster and children last seen
        if dir:
            os.makedirs(dir, mode=0o700)
            self.dir = os.path.abspath(dir)
            _check_reachable(self.dir)
        else:
            self.dir = harness.mkdtemp("postgres")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        tpl = template()
        t0 = time.monotonic()
        _chown_to_server_user(self.dir)
        # cp -a keeps owner and modes (postgres wants 0700 or 0750)
        rc, out, err = _run(["cp", "-a", tpl, self.data], 60, "copying the template cluster")
        if rc != 0:
            raise PgError("cannot copy %s: %s%s" % (tpl, out, err))
        self.prepare_seconds = time.monotonic() - t0
        if start:
            self.start()

    # -- lifecycle ---------------------------------------------------------

    def argv(self):
        cmd = [pg_binary("postgres"), "-D", self.data, "-p", str(self.port),
               "-k", self.dir, "-c", "listen_addresses=" + self.host]
        for k, v in self.settings.items():
            cmd += ["-c", "%s=%s" % (k, v)]
        return self.prefix + _drop_privileges() + cmd

    def start(self, timeout=None):
        """Starts postgres and waits, bounded, until it accepts connections
        (postmaster.pid says "ready"). Sets startup_seconds. Returns self."""
        if self.running():
            raise PgError("postgres already running (pid %d)" % self.proc.pid)
        timeout = timeout or self.START_TIMEOUT
        tries = 1 if self.fixed_port else 3
        for attempt in range(tries):
            if attempt:
                self.port = harness.free_port()
            try:
                self._start_once(timeout)
                return self
            except PgError as e:
                if self.fixed_port or "could not bind" not in str(e):
                    raise
                last = e
        raise last

    def _start_once(self, timeout):
        t0 = time.monotonic()
        with open(self.log_path, "ab") as logf:
            logf.write(("\n=== start %d: %s\n" % (self.starts + 1, " ".join(self.argv()))).encode())
            logf.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         env=harness.minimal_env({"LC_ALL": "C"}),
                                         start_new_session=True)
        harness._register(self.proc)
        if not self._logged:
            harness._add_log(self.label or "postgres:%d" % self.port, self.log_path)
            self._logged = True
        self.starts += 1
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                harness._unregister(self.proc)
                raise PgError("postgres exited with %s during startup:\n%s"
                              % (self.proc.returncode, harness.tail(self.log_path)))
            if self._pidfile_status() == "ready":
                break
            if time.monotonic() >= deadline:
                self.kill9()
                raise PgError("postgres not ready within %.1f s:\n%s"
                              % (timeout, harness.tail(self.log_path)))
            time.sleep(0.01)
        self.startup_seconds = time.monotonic() - t0

    def _pidfile(self):
        """postmaster.pid's lines, [] when absent."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return f.read().split("\n")
        except OSError:
            return []

    def _pidfile_status(self):
        """The postmaster's status line ("starting", "ready", "stopping")
        when the file is this run's, else None."""
        lines = self._pidfile()
        if len(lines) < 8 or not lines[0].strip().isdigit():
            return None
        if self.postmaster_pid() != int(lines[0]):
            return None  # a file left by an earlier run
        return lines[7].strip()

    def postmaster_pid(self):
        """The postmaster's PID: our child's, unless the prefix forked (then
        the one postmaster.pid names)."""
        if self.proc is None:
            return None
        lines = self._pidfile()
        if lines and lines[0].strip().isdigit():
            pid = int(lines[0])
            if pid != self.proc.pid and harness.pid_alive(pid) and _parent(pid) == self.proc.pid:
                return pid
        return self.proc.pid

    def backend_pids(self):
        """The PIDs of the postmaster's children (backends, checkpointer...)."""
        pm = self.postmaster_pid()
        if pm is None:
            return set()
        return {pid for pid in _all_pids() if _parent(pid) == pm}

    def stop(self, timeout=None):
        """Fast shutdown (SIGINT: open transactions are rolled back, clients
        disconnected), then SIGKILL after `timeout`. Returns the exit status."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        pm = self.postmaster_pid()
        kids = self.backend_pids() | ({pm} - {self.proc.pid})
        try:
            os.kill(pm, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=timeout or self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return self.kill9()
        harness._unregister(self.proc)
        self._wait_gone(kids)
        return self.proc.returncode

    def kill9(self):
        """SIGKILL to the postmaster and every child, by PID, and waits
        (bounded) until all are gone, so a start() may follow at once (a
        backend left attached to the old shared memory would stop it)."""
        if self.proc is None:
            return None
        kids = self.backend_pids() | {self.postmaster_pid()}
        rc = harness._stop_process(self.proc, signal.SIGKILL, 10)
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._wait_gone(kids)
        return rc

    @staticmethod
    def _wait_gone(pids, timeout=10.0):
        harness.wait_pids_gone(pids, timeout, "postgres processes gone")

    def restart(self):
        """stop() (fast) then start() on the same port."""
        self.stop()
        return self.start()

    def detach(self):
        """Takes the postmaster out of the harness's registry: it outlives
        this process (harness.kill_all() and the exit leave it running).
        Stop it with stop_detached(self.dir)."""
        if self.proc is not None:
            harness._unregister(self.proc)

    # -- SQL -----------------------------------------------------------------

    def psql_argv(self, db="postgres", user=SUPERUSER):
        return [pg_binary("psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                "-h", self.dir, "-p", str(self.port), "-U", user, "-d", db]

    def psql(self, sql, db="postgres", user=SUPERUSER, timeout=30.0, check=True):
        """Runs `sql` (any number of statements, each in its own
        transaction unless it says otherwise) with psql over the Unix
        socket. Returns stdout (unaligned, tuples only: fields split by
        "|", one row a line); raises PgError on failure when `check`."""
        p = subprocess.Popen(self.psql_argv(db, user), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=harness.minimal_env({"LC_ALL": "C"}), start_new_session=True)
        harness._register(p)
        try:
            out, err = p.communicate(sql.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            harness._stop_process(p, signal.SIGKILL)
            raise PgError("psql did not finish within %.0f s: %s" % (timeout, sql[:200]))
        harness._unregister(p)
        if check and p.returncode != 0:
            raise PgError("psql -d %s failed (%d): %s\n%s" % (
                db, p.returncode, err.decode("utf-8", "replace").strip(), sql[:500]))
        return out.decode("utf-8", "replace")

    def rows(self, sql, db="postgres"):
        """The result of one query as a list of tuples of strings."""
        return [tuple(line.split("|")) for line in self.psql(sql, db).splitlines() if line]

    def scalar(self, sql, db="postgres"):
        """The first field of the first row (a string), None for no row."""
        out = self.psql(sql, db).splitlines()
        return out[0].split("|")[0] if out else None

    def session(self, db="postgres", user=SUPERUSER):
        """A psql kept open (to hold a lock in a transaction): see PsqlSession."""
        return PsqlSession(self, db, user)

    def create_role_with_password(self, name, password, superuser=False, createdb=False):
        """CREATE ROLE name LOGIN PASSWORD password (SCRAM)."""
        opts = " SUPERUSER" if superuser else ""
        opts += " CREATEDB" if createdb else ""
        self.psql("CREATE ROLE %s LOGIN%s PASSWORD %s;"
                  % (quote_ident(name), opts, quote_literal(password)))

    def create_database(self, name, owner=None):
        """CREATE DATABASE name [OWNER owner]; returns name."""
        self.psql("CREATE DATABASE %s%s;" % (quote_ident(name),
                                              " OWNER " + quote_ident(owner) if owner else ""))
        return name

    def drop_database(self, name):
        self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE);" % quote_ident(name))

    # -- what a node is given ------------------------------------------------

    def node_settings(self, db, user=SUPERUSER, password=SUPERUSER_PASSWORD):
        """The settings of a meshnode using database `db` on this server
        over TCP (database.path removed)."""
        return {"database.driver": "postgres", "database.path": None,
                "database.host": self.host, "database.port": self.port,
                "database.user": user, "database.password": password,
                "database.name": db}

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class PsqlSession:
    """One psql process kept open on a database, fed statements as they
    come (`send`), its output in a file (`output()`). close() ends it (\\q,
    then SIGKILL by PID after 10 s): an open transaction is rolled back."""

    def __init__(self, server, db, user):
        self.out_path = os.path.join(server.dir, "psql-session-%d.out" % time.monotonic_ns())
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(server.psql_argv(db, user), stdin=subprocess.PIPE,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     env=harness.minimal_env({"LC_ALL": "C"}),
                                     start_new_session=True)
        harness._register(self.proc)

    def send(self, sql):
        self.proc.stdin.write(sql.encode() + b"\n")
        self.proc.stdin.flush()

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"\\q\n")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        harness._stop_process(self.proc, signal.SIGKILL)  # unregisters; kills only if still running
        self.out.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _parent(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def stop_detached(dir, timeout=10.0):
    """Stops the server whose directory is `dir` (made by PgServer(dir=...),
    then detach()), from any process: fast shutdown by the PID in its
    postmaster.pid, SIGKILL to it and its children after `timeout`, each
    wait bounded. True when it was running."""
    try:
        with open(os.path.join(dir, "data", "postmaster.pid")) as f:
            pid = int(f.readline())
    except (OSError, ValueError):
        return False
    if not harness.pid_alive(pid):
        return False
    kids = {p for p in _all_pids() if _parent(p) == pid}
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    try:
        harness.wait_until(lambda: not harness.pid_alive(pid), timeout=timeout, interval=0.02,
                           what="postgres %d stopping" % pid)
    except harness.WaitTimeout:
        for p in kids | {pid}:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    PgServer._wait_gone(kids | {pid})
    return True
