"""pytest glue for the integration tests (tests/integration/test_*.py, most
of them unittest.TestCase classes driving harness.py):

- the shared agent: a test module with a module-level CONSUL gets one real
  `consul agent -dev` there for all its tests (the module-scoped `consul`
  fixture), made by the module's CONSUL_FACTORY when it has one (an agent
  with ACLs, with TLS); harness.share_consul(globals(), make) declares both;
- the shared PostgreSQL: a test module with a module-level POSTGRES gets one
  throwaway PostgreSQL 15 (pgserver.PgServer, a free port) there for all its
  tests (the module-scoped `postgres` fixture), started whether or not the
  meshnode binary exists (`POSTGRES = None` at module level asks for it);
- a failed test's report ends with the last 40 lines of every log of the
  processes it and its fixtures (module's, class's) started, and the temp
  directory is kept;
- the `harness` marker (pytest.ini) marks tests of the harness or of Consul
  alone: they run and are reported apart; a failure among them counts, a
  pass does not count as meshnode's;
- --result FILE gets "<passed> <failed>" for scripts/run-tests.sh: passed
  counts meshnode's tests, failed every test that failed or errored in any
  phase (harness ones too) and every module that failed to load; skipped
  tests are neither;
- every process the harness started is killed by PID when the session ends,
  whatever happened, and on SIGTERM.

    MESHNODE_BIN=$PWD/build/meshnode /usr/bin/python3 -m pytest tests/integration -k live_config
"""

import os
import signal

import pytest

import harness
import pgserver

LOG_LINES = 40


# --------------------------------------------------------------------------
# The module's Consul agent
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def consul(request):
    """The module's agent: its CONSUL_FACTORY() or a plain dev agent, also
    set as the module's CONSUL while its tests run. None, and no agent, when
    the meshnode binary is missing (the tests that need one skip then)."""
    if not harness.have_meshnode():
        yield None
        return
    module = request.module
    agent = (getattr(module, "CONSUL_FACTORY", None) or harness.Consul)()
    module.CONSUL = agent
    try:
        yield agent
    finally:
        module.CONSUL = None
        agent.stop()


@pytest.fixture(scope="module", autouse=True)
def _module_consul(request):
    """Starts `consul` for every module that has a module-level CONSUL (set
    before the module's class fixtures, so setUpClass may use it)."""
    if hasattr(request.module, "CONSUL"):
        request.getfixturevalue("consul")


# --------------------------------------------------------------------------
# The module's PostgreSQL
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres(request):
    """The module's PostgreSQL server (pgserver.PgServer), also set as the
    module's POSTGRES while its tests run; stopped (fast shutdown, by PID)
    after them. Each test class makes its own database on it."""
    module = request.module
    server = pgserver.PgServer()
    module.POSTGRES = server
    try:
        yield server
    finally:
        module.POSTGRES = None
        server.stop()


@pytest.fixture(scope="module", autouse=True)
def _module_postgres(request):
    """Starts `postgres` for every module that has a module-level POSTGRES
    (before the module's class fixtures, so setUpClass may use it)."""
    if hasattr(request.module, "POSTGRES"):
        request.getfixturevalue("postgres")


# --------------------------------------------------------------------------
# Whose logs: harness.LOGS owners are pytest node ids
# --------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Processes started while a module is imported are the module's."""
    harness.CURRENT_OWNER = collector.nodeid
    yield
    harness.CURRENT_OWNER = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Processes started by a test (setUp, the test, tearDown) are its own."""
    harness.CURRENT_OWNER = item.nodeid
    yield
    harness.CURRENT_OWNER = None


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Processes started by a fixture belong to the node of its scope: the
    module (the agent), the class (setUpClass) or the test."""
    outer = harness.CURRENT_OWNER
    harness.CURRENT_OWNER = request.node.nodeid
    yield
    harness.CURRENT_OWNER = outer


SHOWN = {}  # log path -> (node id of the report that showed it, its size then)


def log_sections(nodeid, owners):
    """Report sections for the logs owned by `owners`: one listing every log,
    then the last lines of each (a log unchanged since another failure showed
    it is only named)."""
    logs = [r for r in harness.LOGS if r["owner"] in owners]
    if not logs:
        return []
    listing, tails = [], []
    for r in logs:
        try:
            size = os.path.getsize(r["path"])
        except OSError:
            size = None
        seen = SHOWN.get(r["path"])
        if seen and seen[1] == size:
            listing.append("%s: %s (unchanged since shown for %s)" % (r["label"], r["path"], seen[0]))
            continue
        SHOWN[r["path"]] = (nodeid, size)
        listing.append("%s: %s" % (r["label"], r["path"]))
        tails.append(("last %d lines of %s" % (LOG_LINES, r["label"]),
                      harness.tail(r["path"], LOG_LINES)))
    return [("logs of its processes and its fixtures'", "\n".join(listing))] + tails


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        harness.KEEP_TMP = True
        owners = {node.nodeid for node in item.listchain()}
        rep.sections.extend(log_sections(item.nodeid, owners))


def pytest_collectreport(report):
    if report.failed:
        harness.KEEP_TMP = True
        TALLY["load errors"] += 1
        report.sections.extend(log_sections(report.nodeid, {report.nodeid}))


# --------------------------------------------------------------------------
# Counts: meshnode's tests, and the harness's apart
# --------------------------------------------------------------------------

TALLY = {"passed": 0, "failed": 0, "skipped": 0,
         "harness passed": 0, "harness failed": 0, "harness skipped": 0,
         "load errors": 0}
HARNESS_IDS = set()
OUTCOMES = {}  # node id -> outcome so far, until its teardown report


def pytest_addoption(parser):
    parser.addoption("--result", metavar="FILE",
                     help='write "<passed> <failed>" (meshnode\'s tests) to FILE')


def pytest_collection_modifyitems(items):
    HARNESS_IDS.update(i.nodeid for i in items if i.get_closest_marker("harness"))


def tally(nodeid):
    outcome = OUTCOMES.pop(nodeid, None)
    if outcome:
        TALLY[("harness " if nodeid in HARNESS_IDS else "") + outcome] += 1


def pytest_runtest_logreport(report):
    """One outcome per test over its three phases: failed if any failed."""
    now = OUTCOMES.get(report.nodeid)
    if report.failed:
        now = "failed"
    elif hasattr(report, "wasxfail"):
        # as unittest has it: an expected failure passes, an unexpected success fails
        now = now or ("passed" if report.skipped else "failed")
    elif report.skipped:
        now = now or "skipped"
    elif report.when == "call":
        now = now or "passed"
    OUTCOMES[report.nodeid] = now
    if report.when == "teardown":
        tally(report.nodeid)


def counts(exitstatus):
    """(passed, failed) as --result FILE gets them."""
    for nodeid in list(OUTCOMES):
        tally(nodeid)  # a test cut short before its teardown report
    failed = TALLY["failed"] + TALLY["harness failed"] + TALLY["load errors"]
    if failed == 0 and exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR,
                                      pytest.ExitCode.USAGE_ERROR):
        failed = 1
    return TALLY["passed"], failed


def write_result(path, passed, failed):
    if path:
        with open(path, "w") as f:
            f.write("%d %d\n" % (passed, failed))


# --------------------------------------------------------------------------
# The session: header, signals, kill by PID, summary, temp directory
# --------------------------------------------------------------------------


def pytest_report_header(config):
    return "meshnode: %s%s; temp %s" % (
        harness.meshnode_binary(),
        "" if harness.have_meshnode() else " (missing: meshnode tests skip)",
        harness.TMP_ROOT)


def pytest_configure(config):
    def on_sigterm(signum, _frame):
        harness.KEEP_TMP = True
        harness.kill_all()
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture:
            capture.suspend_global_capture(in_=True)
        os.write(2, ("\nterminated by signal %d; killed our processes; temp kept in %s\n"
                     % (signum, harness.TMP_ROOT)).encode())
        write_result(config.getoption("result"), 0, 1)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session, exitstatus):
    yield  # after the fixtures' teardown
    harness.kill_all()
    passed, failed = counts(exitstatus)
    if failed:
        harness.KEEP_TMP = True
    write_result(session.config.getoption("result"), passed, failed)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.option.collectonly:
        return
    tr = terminalreporter
    passed, failed = counts(exitstatus)
    tr.write_line("meshnode: %d passed, %d failed, %d skipped; harness only (a pass not "
                  "counted as meshnode's): %d passed, %d failed, %d skipped%s" % (
                      TALLY["passed"], TALLY["failed"], TALLY["skipped"],
                      TALLY["harness passed"], TALLY["harness failed"], TALLY["harness skipped"],
                      "; %d module(s) failed to load" % TALLY["load errors"]
                      if TALLY["load errors"] else ""))
    if failed > TALLY["failed"] + TALLY["harness failed"] + TALLY["load errors"]:
        tr.write_line("the run did not end normally: counted as 1 failure")
    if failed:
        tr.write_line("temp directory kept: %s" % harness.TMP_ROOT)


def pytest_unconfigure(config):
    harness.kill_all()
    harness.cleanup_tmp()
