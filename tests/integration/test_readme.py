"""The README is tested: every command of every ```sh block of README.md,
consul/README.md and every Markdown file under docs/ is either run against a real node and agent started here
and its effect checked against what the README says it does, or listed
below as not runnable here, with the reason. A command nobody classified
fails the test, so a new example comes with its check.

Commands run as written, through bash, from the repository root, with the
README's addresses rewritten to this test's: localhost:8080 / 127.0.0.1:8080
to the node's free port, 127.0.0.1:8500 to the agent's, `<pid>` to the
node's PID. CONSUL_HTTP_ADDR always names this test's agent, so nothing
here touches an agent on 8500. Before each block that runs, KV under
config/shared/ and config/users/ is emptied and the node is back to its
file (no KV value, nothing pending, passing)."""

import json
import os
import re
import shlex
import signal
import subprocess
import unittest

import harness
from harness import Node, requires_meshnode, wait_until

REPO = harness.REPO


def doc_files():
    """README.md, consul/README.md, then every .md under docs/, in order."""
    found = []
    for top, dirs, names in os.walk(os.path.join(REPO, "docs")):
        dirs.sort()
        found += [os.path.relpath(os.path.join(top, n), REPO)
                  for n in sorted(names) if n.endswith(".md")]
    return ("README.md", "consul/README.md") + tuple(sorted(found))


FILES = doc_files()

CONSUL = None
harness.share_consul(globals())

# Not runnable here: by the first command (after any VAR=value), and for
# make by its target. Everything else must be run and checked below.
NOT_RUNNABLE_MAKE = {
    None: "builds build/meshnode; make test has just built it",
    "run": "runs until stopped; tests/integration/test_make_run.py runs it in a pty "
           "and runs and checks every command it prints",
    "test": "runs every suite, this one included",
    "unit-build": "builds the unit programs; make test has just built and run them",
    "deps": "installs packages with apt-get",
    "test-deps": "installs packages with apt-get",
    "install": "writes into PREFIX/DESTDIR; tested with the installation, not here",
    "uninstall": "removes what make install wrote",
    "bench": "takes both cores for minutes; never on this shared machine",
    "fuzz": "needs clang and minutes per target",
    "demo": "its own agent and three nodes for half a minute; scripts/demo.sh checks itself",
    "test-cluster": "network namespaces and a three-server cluster",
    "format": "rewrites the sources",
    "clean": "removes build/, which this run uses",
}
NOT_RUNNABLE = {
    "scripts/deps.sh": "installs packages with apt-get",
    "sudo": "needs root: system installation",
    "systemctl": "manages a systemd service of the machine",
    "journalctl": "reads the system journal of an installed service",
    "pytest": "runs the integration suites, this one included",
    "pytest-3": "runs the integration suites, this one included",
    "python3 -m pytest": "runs the integration suites, this one included",
    "/usr/bin/python3 -m pytest": "runs the integration suites, this one included",
    "scripts/run-tests.sh": "runs every suite, this one included",
    "scripts/cluster.sh": "needs root: network namespaces and a three-server Consul cluster "
                          "(tests/cluster runs the same cluster)",
}

ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class Example:
    def __init__(self, path, line, cmd, comment, block):
        self.path, self.line, self.cmd, self.comment, self.block = (
            path, line, cmd, comment, block)

    def __str__(self):
        return "%s:%d: %s" % (self.path, self.line, self.cmd)

    __repr__ = __str__


def split_comment(line):
    """(command, comment) at the first '#' that starts a shell comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def examples(path):
    """The commands of the ```sh blocks of `path`, in order: backslash
    continuations joined, each with its comment (indented comment lines
    under it continue it) and the number of its block."""
    out = []
    with open(os.path.join(REPO, path)) as f:
        lines = f.read().split("\n")
    in_block, block = False, 0
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        if not in_block:
            if raw.strip() == "```sh":
                in_block, block = True, block + 1
            continue
        if raw.strip().startswith("```"):
            in_block = False
            continue
        if not raw.strip():
            continue
        if raw.strip().startswith("#"):
            if raw[0].isspace() and out and out[-1].block == (path, block):
                out[-1].comment += " " + raw.strip()[1:].strip()
            continue
        start = i
        text = raw
        while text.endswith("\\") and i < len(lines):
            text = text[:-1] + " " + lines[i].strip()
            i += 1
        cmd, comment = split_comment(text)
        out.append(Example(path, start, " ".join(cmd.split()), comment, (path, block)))
    return out


def words(cmd):
    """The command's words after any leading VAR=value."""
    w = shlex.split(cmd)
    while w and ENV_ASSIGN.match(w[0]):
        w.pop(0)
    return w


def not_runnable(cmd):
    """The reason a command is not run here, or None."""
    w = words(cmd)
    if w and w[0] == "make":
        targets = [x for x in w[1:] if not x.startswith("-") and not ENV_ASSIGN.match(x)]
        target = targets[0] if targets else None
        return NOT_RUNNABLE_MAKE.get(target)
    for prefix, reason in sorted(NOT_RUNNABLE.items(), key=lambda kv: -len(kv[0])):
        p = prefix.split()
        if w[:len(p)] == p:
            return reason
    return None


def scalar(text):
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


@requires_meshnode
class ReadmeTest(unittest.TestCase):
    def setUp(self):
        self.node = Node(name="users", consul=CONSUL,
                         settings={"log.level": "info", "log.format": "json"})
        self.node.start_ready()
        wait_until(lambda: self.in_passing(), timeout=10, what="users passing")
        self.env = harness.minimal_env({"CONSUL_HTTP_ADDR": CONSUL.addr})

    def tearDown(self):
        self.node.stop()
        CONSUL.kv_delete("config/users/", recurse=True)
        CONSUL.kv_delete("config/shared/", recurse=True)

    # -- what the node and the agent say ----------------------------------

    def in_passing(self):
        return any(e["Service"]["Port"] == self.node.port
                   for e in CONSUL.health_service("users", passing=True) or [])

    def setting(self, name):
        e = self.node.config()["settings"].get(name)
        return e and (e["value"], e["source"])

    def rewrite(self, cmd):
        cmd = re.sub(r"\b(?:localhost|127\.0\.0\.1):8080\b", "127.0.0.1:%d" % self.node.port, cmd)
        cmd = re.sub(r"\b(?:localhost|127\.0\.0\.1):8500\b", "127.0.0.1:%d" % CONSUL.http_port, cmd)
        return cmd.replace("<pid>", str(self.node.pid))

    def run_cmd(self, ex):
        cmd = self.rewrite(ex.cmd)
        p = subprocess.run(["bash", "-c", cmd], cwd=REPO, env=self.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "%s\n(ran: %s) -> %d\n%s" % (ex, cmd, p.returncode, err))
        return out, err

    def baseline(self):
        """No KV value, nothing pending, passing: the node as its file says."""
        CONSUL.kv_delete("config/users/", recurse=True)
        CONSUL.kv_delete("config/shared/", recurse=True)

        def clean():
            cfg = self.node.config()
            kv = [k for k, e in cfg["settings"].items() if e["source"] == "kv"]
            return not kv and not cfg["pending_restart"] and self.in_passing()
        wait_until(clean, timeout=15, what="the node back to its file")

    # -- one example: run it, check what the README says -------------------

    def check(self, ex):
        cmd = ex.cmd
        w = words(cmd)
        if re.fullmatch(r"export CONSUL_HTTP_ADDR=\S+", cmd):
            addr = self.rewrite(cmd.split("=", 1)[1])
            self.assertEqual(addr, CONSUL.addr, "%s: not the agent's address" % ex)
            self.env["CONSUL_HTTP_ADDR"] = addr
            return "sets the agent's address"
        m = re.fullmatch(r"export ([A-Za-z_][A-Za-z0-9_]*)=(\S*)", cmd)
        if m:
            self.env[m.group(1)] = self.rewrite(m.group(2))
            return "sets %s for the commands after it" % m.group(1)
        if w[:1] == ["kill"] and "-HUP" in w or w[:3] == ["kill", "-s", "HUP"]:
            return self.check_sighup(ex)
        if w[:1] == ["scripts/consul"] and w[1:2] == ["kv"]:
            return self.check_kv(ex, w[2:])
        if w[:1] == ["curl"]:
            return self.check_curl(ex)
        if w[:2] == ["scripts/consul", "services"] and w[2:3] in (["register"], ["deregister"]):
            return self.check_service_file(ex, w[2], w[3])
        self.fail("README example not classified: %s\nrun it and check its effect in "
                  "tests/integration/test_readme.py, or list it there as not runnable "
                  "with the reason" % ex)

    def check_service_file(self, ex, verb, path):
        """An agent-side service definition: the agent holds its id after
        register, and not after deregister."""
        with open(os.path.join(REPO, path)) as f:
            sid = json.load(f)["service"]["id"]
        self.addCleanup(CONSUL.deregister_service, sid)
        self.run_cmd(ex)
        want = verb == "register"
        wait_until(lambda: (sid in (CONSUL.agent_services() or {})) == want, timeout=5,
                   what="%s %s in the agent" % (sid, "present" if want else "gone"))
        return "the agent %s service '%s'" % ("holds" if want else "no longer holds", sid)

    def check_curl(self, ex):
        out, _ = self.run_cmd(ex)
        url = re.search(r"(?:https?://)?[\w.]+:\d+(/\S*)", ex.cmd.replace("'", ""))
        self.assertIsNotNone(url, "%s: no URL" % ex)
        path = url.group(1)
        if path == "/metrics":
            self.assertIn("http_requests_total", out, ex)
            return "answers the metrics"
        body = json.loads(out)
        if path == "/health":
            self.assertEqual(body, {"status": "ok"}, ex)
            return "answers ok"
        if path == "/ready":
            self.assertIn("store", body, "%s: %s" % (ex, out))
            return "answers the readiness"
        if path.startswith("/v1/health/service/users") and "passing" in path:
            ports = [e["Service"]["Port"] for e in body]
            self.assertIn(self.node.port, ports, "%s: the node is not passing: %s" % (ex, out))
            return "lists the node as passing"
        if path == "/users" and "-XPOST" in ex.cmd:
            sent = json.loads(re.search(r"-d '([^']*)'", ex.cmd).group(1))
            self.assertIsInstance(body.get("id"), int, "%s: %s" % (ex, out))
            self.assertEqual((body["name"], body["email"]), (sent["name"], sent["email"]))
            status, _, _ = self.node.request("GET", "/users/%d" % body["id"])
            self.assertEqual(status, 200)
            return "creates the user"
        m = re.fullmatch(r"/users/(\d+)", path)
        if m:
            self.assertEqual(body.get("id"), int(m.group(1)), "%s: %s" % (ex, out))
            return "answers the user"
        if path == "/config":
            self.assertIn("settings", body)
            # "log.level: "info", source "file"" in the comment: that.
            said = re.findall(r'([a-z_]+(?:\.[a-z_]+)+): "([^"]*)", source "(\w+)"',
                              ex.comment)
            for name, value, source in said:
                e = body["settings"][name]
                self.assertEqual((e["value"], e["source"]), (scalar(value), source),
                                 "%s: %s" % (ex, e))
            return "shows the configuration with sources" + "".join(
                ", %s %s from %s" % x for x in said)
        self.fail("README curl example not checked here: %s" % ex)

    def check_kv(self, ex, args):
        op, key = args[0], args[1]
        m = re.fullmatch(r"config/(shared|users)/(.+)", key)
        self.assertIsNotNone(m, "%s: not a key of this node" % ex)
        name = m.group(2).replace("/", ".")
        metrics_before = self.node.metric("meshnode_config_reloads_total", result="rejected")
        before = self.setting(name)
        log_before = len(self.node.log_text())
        out, err = self.run_cmd(ex)
        self.assertIn("Success!", out + err, ex)
        if op == "delete":
            # "falls back to file or default" (to "info", when it says)
            wait_until(lambda: self.setting(name)[1] in ("file", "default"), timeout=5,
                       what="%s back to the file or default" % name)
            said = re.findall(r'"([^"]+)"', ex.comment)
            if said:
                self.assertEqual(self.setting(name)[0], scalar(said[0]), ex)
            return "falls back to the %s" % self.setting(name)[1]
        self.assertEqual(op, "put", ex)
        value = scalar(args[2])
        if "refused" in ex.comment:
            wait_until(lambda: self.node.metric("meshnode_config_reloads_total",
                                                result="rejected") > metrics_before,
                       timeout=5, what="%s counted as rejected" % ex)
            self.assertEqual(self.setting(name), before, "%s: the last good value went" % ex)
            logged = [line for line in self.node.log_text()[log_before:].splitlines()
                      if re.search(r'"level":"warn"|^\S+ warn ', line)
                      and (key in line or name in line)]
            self.assertTrue(logged, "%s: no warning naming the key" % ex)
            return "refused: logged, counted, the last good value stays"
        if name == "maintenance":
            if value:
                wait_until(lambda: not self.in_passing(), timeout=10,
                           what="%s: out of ?passing" % ex)
                status, _, _ = self.node.request("GET", "/health")
                self.assertEqual(status, 200, "%s: the node stopped serving" % ex)
                self.assertIs(self.node.get_json("/ready")["maintenance"], True)
                return "leaves ?passing, keeps serving"
            wait_until(self.in_passing, timeout=10, what="%s: back in ?passing" % ex)
            return "back to passing"
        cfg = self.node.config()
        if not cfg["settings"].get(name, {}).get("dynamic", True):
            # "static: pending restart", "not applied"
            wait_until(lambda: name in self.node.config()["pending_restart"], timeout=5,
                       what="%s pending restart" % name)
            self.assertEqual(self.setting(name), before, "%s: applied at once" % ex)
            return "static: pending restart, not applied"
        wait_until(lambda: self.setting(name) == (value, "kv"), timeout=5,
                   what="%s = %r from kv" % (name, value))
        return "applied at once: %s = %r from kv" % (name, value)

    def check_sighup(self, ex):
        # "re-reads the configuration file": the file changes first. The
        # signal goes to this test's node whatever the README names
        # (<pid>, $(pidof meshnode)): never to another process.
        self.assertEqual(self.setting("log.level"), ("info", "file"))
        self.node.settings["log.level"] = "warn"
        self.node.write_config()
        try:
            self.run_cmd(Example(ex.path, ex.line, "kill -HUP %d" % self.node.pid, ex.comment,
                                 ex.block))
            wait_until(lambda: self.setting("log.level") == ("warn", "file"), timeout=5,
                       what="log.level from the file after SIGHUP")
        finally:
            self.node.settings["log.level"] = "info"
            self.node.write_config()
            self.node.signal(signal.SIGHUP)
            wait_until(lambda: self.setting("log.level") == ("info", "file"), timeout=5,
                       what="the file's log.level back")
        return "re-reads the file"

    def test_every_readme_example(self):
        # The docs moved out of README.md into docs/: each of these must
        # be found and have examples, so that a move or a rename cannot
        # leave them silently untested.
        for path in ("README.md", "consul/README.md", "docs/configuration.md",
                     "docs/http-api.md", "docs/testing.md"):
            self.assertIn(path, FILES)
            self.assertTrue(examples(path), "%s: no ```sh block found" % path)
        all_examples = [ex for path in FILES for ex in examples(path)]
        self.assertTrue(all_examples, "no ```sh block found")
        unclassified = [ex for ex in all_examples
                        if not_runnable(ex.cmd) is None and not self.runnable(ex)]
        self.assertEqual(unclassified, [], "README examples nobody classified:\n%s\n"
                         "run and check them in tests/integration/test_readme.py, or list "
                         "them there as not runnable with the reason"
                         % "\n".join(map(str, unclassified)))
        checked, skipped, block = [], [], None
        for ex in all_examples:
            reason = not_runnable(ex.cmd)
            if reason:
                skipped.append((ex, reason))
                continue
            if ex.block != block:
                block = ex.block
                self.env = harness.minimal_env({"CONSUL_HTTP_ADDR": CONSUL.addr})
                self.baseline()
            checked.append((ex, self.check(ex)))
        blocks = len({ex.block for ex in all_examples})
        print("  [README and docs: %d files, %d examples in %d sh blocks: %d run and "
              "checked, %d not runnable here]" % (len(FILES), len(all_examples), blocks,
                                                  len(checked), len(skipped)))
        for ex, what in checked:
            print("    ok   %s  -> %s" % (ex, what))
        for ex, reason in skipped:
            print("    skip %s  -> %s" % (ex, reason))

    @staticmethod
    def runnable(ex):
        w = words(ex.cmd)
        return (re.fullmatch(r"export [A-Za-z_][A-Za-z0-9_]*=\S*", ex.cmd) is not None
                or w[:1] in (["curl"], ["kill"]) or w[:2] == ["scripts/consul", "kv"]
                or w[:2] == ["scripts/consul", "services"] and w[2:3] in (["register"],
                                                                         ["deregister"]))
