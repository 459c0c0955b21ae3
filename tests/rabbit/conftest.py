"""pytest glue for the RabbitMQ tests (tests/rabbit/, which `make test` does
not collect): tests/integration/conftest.py's hooks (a failed test's report
ends with the logs of its processes, every process started is killed by
PID at the end and on SIGTERM, --result FILE), plus the figures the tests
record (rabbitserver.FIGURES: start, restart and stop times), printed at
the end of the run.

    /usr/bin/python3 -m pytest tests/rabbit -v
"""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")
sys.path.insert(0, INTEGRATION)

import rabbitserver  # noqa: E402

_spec = importlib.util.spec_from_file_location("integration_conftest",
                                               os.path.join(INTEGRATION, "conftest.py"))
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)

# Every hook and fixture of the integration suite's conftest, as its own.
for _name in dir(base):
    if _name.startswith("pytest_") or _name in ("consul", "_module_consul",
                                                 "postgres", "_module_postgres"):
        globals()[_name] = getattr(base, _name)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if rabbitserver.FIGURES:
        terminalreporter.section("rabbitmq figures")
        for line in rabbitserver.FIGURES:
            terminalreporter.write_line(line)
    base.pytest_terminal_summary(terminalreporter, exitstatus, config)
