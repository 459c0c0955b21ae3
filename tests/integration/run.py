#!/usr/bin/env python3
"""Runs the integration tests: tests/integration/test_*.py (unittest), sorted.

    MESHNODE_BIN=/abs/build/meshnode python3 tests/integration/run.py \
        [--result FILE] [-q] [FILTER ...]

A FILTER keeps the tests whose id (module.Class.test_name) contains it.
Prints one line per test, writes "<passed> <failed>" to FILE, exits non-zero
when anything failed or nothing ran. On failure the temp directory is kept
and the last 40 lines of every log of the failed test (its own processes and
its class fixtures') are printed.
"""

import argparse
import glob
import importlib
import os
import signal
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


def class_id(test):
    return "%s.%s" % (type(test).__module__, type(test).__qualname__)


class Result(unittest.TestResult):
    def __init__(self, stream, verbose=True):
        super().__init__()
        self.stream = stream
        self.verbose = verbose
        self.passed = 0
        self.failed = []  # (test id or description, kind, traceback text, owners)
        self._t0 = None
        self._failed_this = False
        self._module = None

    def _line(self, word, test, extra=""):
        dt = "" if self._t0 is None else " (%.2fs)" % (time.monotonic() - self._t0)
        self.stream.write("%-5s %s%s%s\n" % (word, test.id(), dt, extra))
        self.stream.flush()

    def startTest(self, test):
        super().startTest(test)
        # Logs of processes started by fixtures since the last test: a new
        # module's (setUpModule + first setUpClass) or a new class's.
        mod = type(test).__module__
        owner = "module:" + mod if mod != self._module else "class:" + class_id(test)
        self._module = mod
        for rec in harness.LOGS:
            if rec["owner"] is None:
                rec["owner"] = owner
        harness.CURRENT_OWNER = test.id()
        self._t0 = time.monotonic()
        self._failed_this = False

    def stopTest(self, test):
        super().stopTest(test)
        harness.CURRENT_OWNER = None

    def _fail(self, test, kind, err):
        text = self._exc_info_to_string(err, test)
        if isinstance(test, unittest.case._SubTest):
            test = test.test_case
        if hasattr(test, "id") and isinstance(test, unittest.TestCase) and \
                not isinstance(test, unittest.suite._ErrorHolder):
            owners = {test.id(), "class:" + class_id(test),
                      "module:" + type(test).__module__}
            name = test.id()
        else:
            # Fixture failures ("setUpClass (mod.Class)", "setUpModule
            # (mod)"): the logs started since the last test are theirs.
            name = str(getattr(test, "description", test))
            owners = {"fixture:" + name}
            for rec in harness.LOGS:
                if rec["owner"] is None:
                    rec["owner"] = "fixture:" + name
            if "(" in name:
                inner = name[name.index("(") + 1:name.rindex(")")]
                owners |= {"class:" + inner, "module:" + inner.split(".")[0]}
        if not self._failed_this or not isinstance(test, unittest.TestCase):
            self.failed.append((name, kind, text, owners))
        else:
            prev = self.failed[-1]
            self.failed[-1] = (prev[0], prev[1], prev[2] + "\n" + text, prev[3])
        if isinstance(test, unittest.TestCase) and \
                not isinstance(test, unittest.suite._ErrorHolder):
            if not self._failed_this:
                self._line(kind, test)
            self._failed_this = True
        else:
            self.stream.write("%-5s %s\n" % (kind, name))

    def addError(self, test, err):
        super().addError(test, err)
        self._fail(test, "ERROR", err)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail(test, "FAIL", err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "FAIL" if issubclass(err[0], test.failureException) else "ERROR"
            self._fail(subtest, kind, err)

    def addSuccess(self, test):
        super().addSuccess(test)
        if self._failed_this:
            return  # a subtest failed
        self.passed += 1
        self._line("ok", test)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if isinstance(test, unittest.TestCase):
            self._line("skip", test, ": " + reason)
        else:
            self.stream.write("skip  %s: %s\n" % (test, reason))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.passed += 1
        self._line("ok", test, " (expected failure)")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed.append((test.id(), "FAIL", "unexpected success\n", {test.id()}))
        self._line("FAIL", test, " (unexpected success)")


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def load(filters):
    loader = unittest.TestLoader()
    tests = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        mod = importlib.import_module(os.path.splitext(os.path.basename(path))[0])
        for t in iter_tests(loader.loadTestsFromModule(mod)):
            if not filters or any(f in t.id() for f in filters):
                tests.append(t)
    return unittest.TestSuite(tests)


def write_result(path, passed, failed):
    if path:
        with open(path, "w") as f:
            f.write("%d %d\n" % (passed, failed))


def report_failures(result, out):
    for name, kind, text, owners in result.failed:
        out.write("\n" + "=" * 70 + "\n%s: %s\n" % (kind, name) + "-" * 70 + "\n")
        out.write(text)
        logs = [r for r in harness.LOGS if r["owner"] in owners]
        if logs:
            out.write("logs:\n")
            for r in logs:
                out.write("  %s: %s\n" % (r["label"], r["path"]))
            for r in logs:
                out.write("--- last 40 lines of %s (%s)\n" % (r["label"], r["path"]))
                out.write(harness.tail(r["path"], 40) + "\n")
    out.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--result", help='file to write "<passed> <failed>" to')
    ap.add_argument("filters", nargs="*", help="substrings of test ids to run")
    args = ap.parse_args()

    def on_signal(signum, _frame):
        harness.KEEP_TMP = True
        harness.kill_all()
        sys.stderr.write("\ninterrupted by signal %d; killed %s; temp kept in %s\n"
                         % (signum, "our processes", harness.TMP_ROOT))
        write_result(args.result, 0, 1)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    out = sys.stdout
    t0 = time.monotonic()
    try:
        suite = load(args.filters)
    except Exception:
        traceback.print_exc()
        write_result(args.result, 0, 1)
        return 1
    out.write("integration: %d test(s), meshnode=%s%s, temp %s\n" % (
        suite.countTestCases(), harness.meshnode_binary(),
        "" if harness.have_meshnode() else " (missing: meshnode tests skip)",
        harness.TMP_ROOT))
    out.flush()
    result = Result(out)
    try:
        suite.run(result)
    finally:
        harness.kill_all()
    passed, failed = result.passed, len(result.failed)
    if failed:
        harness.KEEP_TMP = True
        report_failures(result, out)
        out.write("\ntemp directory kept: %s\n" % harness.TMP_ROOT)
    out.write("integration: %d passed, %d failed, %d skipped in %.1fs\n"
              % (passed, failed, len(result.skipped), time.monotonic() - t0))
    out.flush()
    write_result(args.result, passed, failed)
    harness.cleanup_tmp()
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
