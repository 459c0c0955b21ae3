"""The C test programs that need a real Consul agent (tests/agent/agent_*.c,
built by `make unit-build` beside the meshnode binary in <build>/agent/):
one test per program, run against the module's `consul agent -dev` with
CONSUL_HTTP_ADDR set (CONSUL_HTTP_TOKEN too when the agent has one). A test
fails on a non-zero exit, a cmocka failure, a program that is missing or
runs past its time. What a program prints (its measured figures) shows in
the report (-rP). docs/testing.md, "Programs against a real agent"."""

import glob
import os
import re
import signal
import subprocess

import pytest

import harness

CONSUL = None  # the module's agent while its tests run (conftest.py)

TIMEOUT = 180  # seconds for one program, sanitizers included

PROGRAMS = sorted(os.path.splitext(os.path.basename(p))[0]
                  for p in glob.glob(os.path.join(harness.REPO, "tests", "agent", "agent_*.c")))


def program_path(name):
    return os.path.join(os.path.dirname(os.path.abspath(harness.meshnode_binary())), "agent", name)


@pytest.mark.skipif(not harness.have_meshnode(),
                    reason="meshnode binary not found (set MESHNODE_BIN or run make)")
@pytest.mark.parametrize("name", PROGRAMS)
def test_agent_program(name):
    path = program_path(name)
    assert os.access(path, os.X_OK), "%s is not built: run make unit-build" % path
    env = harness.minimal_env({"CONSUL_HTTP_ADDR": "127.0.0.1:%d" % CONSUL.http_port,
                               # the agent's own binary, for what a program starts
                               # (consul connect proxy)
                               "CONSUL_BIN": harness.consul_binary()})
    token = getattr(CONSUL, "token", None)
    if token:
        env["CONSUL_HTTP_TOKEN"] = token
    # a session of its own: whatever it starts (a proxy, which also holds
    # the output pipe) is killed with it, even when it crashed
    proc = subprocess.Popen([path], cwd=harness.REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def kill_group():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_group()
        out, _ = proc.communicate(timeout=10)
        pytest.fail("%s still running after %d s:\n%s" % (name, TIMEOUT, out.decode(errors="replace")))
    finally:
        kill_group()
        if proc.poll() is None:
            proc.wait(timeout=10)
    text = out.decode(errors="replace")
    print(text)
    assert proc.returncode == 0, "%s exited with %d:\n%s" % (name, proc.returncode, text)
    assert re.search(r"^\[  PASSED  \] \d+ test", text, re.M), text
    assert "[  FAILED  ]" not in text, text
