"""pytest glue for the cluster test (tests/cluster/test_cluster.py):
tests/integration/conftest.py's hooks (a failed test's report ends with the
logs of its processes, every process started is killed by PID at the end
and on SIGTERM, --result FILE), plus what namespaces need: every cluster
this process built is torn down (processes, namespaces, bridge) when the
session ends, at exit and on SIGTERM, whatever happened; and the figures
the scenarios record are printed at the end of the run.

    make test-cluster
    MESHNODE_BIN=$PWD/build/meshnode /usr/bin/python3 -m pytest tests/cluster -k partition
"""

import atexit
import importlib.util
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")
sys.path.insert(0, INTEGRATION)
sys.path.insert(0, HERE)

import cluster  # noqa: E402
import harness  # noqa: E402

_spec = importlib.util.spec_from_file_location("integration_conftest",
                                               os.path.join(INTEGRATION, "conftest.py"))
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)

# Every hook and fixture of the integration suite's conftest, as its own.
for _name in dir(base):
    if _name.startswith("pytest_") or _name in ("consul", "_module_consul"):
        globals()[_name] = getattr(base, _name)

atexit.register(cluster.down_all)


def pytest_configure(config):
    base.pytest_configure(config)
    integration_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        cluster.down_all()
        integration_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def pytest_unconfigure(config):
    cluster.down_all()
    base.pytest_unconfigure(config)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if cluster.FIGURES:
        terminalreporter.section("cluster figures")
        for line in cluster.FIGURES:
            terminalreporter.write_line(line)
    base.pytest_terminal_summary(terminalreporter, exitstatus, config)
