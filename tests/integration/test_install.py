"""make install, make uninstall and the systemd unit: docs/operations.md's
"Install and run as a service", `make install` / `make uninstall`, the
installed binary's default configuration file and the TLS runtime shims
(docs/connect.md, "TLS runtime").

The tests call the Makefile of this tree with the build directory of
MESHNODE_BIN, so the library is not built again: an install with another
PREFIX or SYSCONFDIR compiles main.c once more and links (about a second).
Every install goes under a temporary directory (DESTDIR, or a PREFIX
there); nothing is written outside it.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import time
import unittest

import harness
from harness import requires_meshnode

BUILD = os.path.dirname(os.path.abspath(harness.meshnode_binary()))
EXAMPLE = os.path.join(harness.REPO, "config", "meshnode.cfg")
UNIT = os.path.join(harness.REPO, "packaging", "meshnode.service")
# Variables the Makefile reads from the environment too: the tests set
# what they mean and nothing else leaks in (a PREFIX in the caller's
# environment, the MAKEFLAGS of a `make test` around us).
MAKE_VARS = ("PREFIX", "DESTDIR", "BINDIR", "SYSCONFDIR", "LIBDIR", "UNITDIR", "BUILD", "SANITIZE",
             "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS")


def make_args():
    """BUILD naming MESHNODE_BIN's build directory, and for build/san (where
    `make SANITIZE=...` builds) the sanitizers it was built with: those of
    the `make test SANITIZE=...` around us, else the README's."""
    build = os.path.relpath(BUILD, harness.REPO)
    if build.startswith(".."):
        build = BUILD
    args = ["BUILD=" + build]
    if os.path.basename(BUILD) == "san":
        given = re.search(r"(?:^|\s)SANITIZE=(\S+)", os.environ.get("MAKEFLAGS", ""))
        args.append("SANITIZE=" + (given.group(1) if given else "address,undefined"))
    return args


def make(target, **variables):
    """Runs `make TARGET VAR=value...` in the tree; (exit code, output)."""
    # Never the real system: a DESTDIR in the temp directory, or else a
    # PREFIX there (an empty DESTDIR and the default PREFIX is /usr/local).
    inside = os.path.join(harness.TMP_ROOT, "")
    dest, prefix = variables.get("DESTDIR", ""), variables.get("PREFIX", "")
    assert dest.startswith(inside) or (not dest and prefix.startswith(inside)), \
        "make %s with DESTDIR=%r PREFIX=%r would write outside %s" % (target, dest, prefix,
                                                                     harness.TMP_ROOT)
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARS}
    argv = ["make", "--no-print-directory", "-C", harness.REPO, target] + make_args() + \
        ["%s=%s" % kv for kv in sorted(variables.items())]
    t0 = time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=env, timeout=300)
    out = p.stdout.decode("utf-8", "replace")
    print("  [make %s %s: %.1fs]" % (target, " ".join("%s=%s" % kv for kv in sorted(variables.items())),
                                     time.monotonic() - t0))
    return p.returncode, " ".join(argv) + "\n" + out


def files_under(root):
    """Every file (not directory) under root, as paths relative to it."""
    found = set()
    for d, _, names in os.walk(root):
        for n in names:
            found.add(os.path.relpath(os.path.join(d, n), root))
    return found


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


SHIMS = ("libssl.so", "libcrypto.so")

# Loads the shims of the directory argv[1] as http/tls_runtime.c does (by
# absolute path, RTLD_NOW | RTLD_GLOBAL), then asks what civetweb asks:
# dlopen of the bare names must return them, and the shim's
# SSL_get_peer_certificate and an OpenSSL 3 function must resolve through
# them. Run in a process of its own.
SHIM_PROBE = r"""
import ctypes, os, sys
flags = os.RTLD_NOW | os.RTLD_GLOBAL
crypto = ctypes.CDLL(os.path.join(sys.argv[1], "libcrypto.so"), mode=flags)
ssl = ctypes.CDLL(os.path.join(sys.argv[1], "libssl.so"), mode=flags)
libdl = ctypes.CDLL(None)
libdl.dlopen.restype = ctypes.c_void_p
libdl.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
for name, shim in ((b"libssl.so", ssl), (b"libcrypto.so", crypto)):
    assert libdl.dlopen(name, os.RTLD_NOW | os.RTLD_NOLOAD) == shim._handle, name
ssl.SSL_get_peer_certificate
ssl.SSL_get1_peer_certificate
crypto.X509_free
print(ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(ssl, "meshnode_tls_shim"))).decode())
"""


def elf_dynamic(path):
    """(SONAME, [NEEDED...]) of a shared object, as readelf -d says."""
    out = subprocess.run(["readelf", "-d", path], check=True, stdout=subprocess.PIPE,
                         timeout=20).stdout.decode()
    soname = re.findall(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
    return (soname[0] if soname else None,
            re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))


def run(argv, cwd, timeout=20):
    p = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=harness.minimal_env(), timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@requires_meshnode
class InstallTest(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(os.path.join(BUILD, "libmeshnode.a")):
            self.skipTest("%s is not a build directory of this tree's Makefile (no "
                          "libmeshnode.a)" % BUILD)

    def install(self, **variables):
        rc, out = make("install", **variables)
        self.assertEqual(rc, 0, out)
        return out

    def uninstall(self, **variables):
        rc, out = make("uninstall", **variables)
        self.assertEqual(rc, 0, out)
        return out

    def test_installed_binary_reads_its_sysconfdir_config(self):
        # A PREFIX in a temp directory (no DESTDIR), so the path compiled
        # into the binary is one the test can write.
        prefix = os.path.join(harness.mkdtemp("prefix"), "usr")
        cfg_path = os.path.join(prefix, "etc", "meshnode", "meshnode.cfg")
        self.install(PREFIX=prefix)
        binary = os.path.join(prefix, "bin", "meshnode")

        rc, out, err = run([binary, "-h"], cwd="/")
        self.assertEqual(rc, 0, err)
        self.assertIn("(default %s)" % cfg_path, out)

        # The installed file is read with no -c, from any directory; a
        # config/meshnode.cfg in the working directory is not.
        agent = "http://127.0.0.1:%d" % harness.free_port()  # nothing listens
        write(cfg_path, read(cfg_path).replace('name = "users";', 'name = "from-sysconf";')
              .replace('address = "http://127.0.0.1:8500";', 'address = "%s";' % agent))
        cwd = harness.mkdtemp("elsewhere")
        os.mkdir(os.path.join(cwd, "config"))
        write(os.path.join(cwd, "config", "meshnode.cfg"), 'service = { name = "from-cwd"; };\n')

        rc, out, err = run([binary, "--print-config"], cwd=cwd)
        self.assertEqual(rc, 0, err)
        name = harness.config_entry(json.loads(out), "service.name")
        self.assertEqual(name.get("value"), "from-sysconf", name)
        self.assertEqual(name.get("source"), "file", name)
        self.assertTrue(name.get("origin", "").startswith(cfg_path + ":"), name)

        rc, out, err = run([binary, "--check-config"], cwd=cwd)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("configuration ok", out)

        # A value the node refuses, in that file: named with its path.
        write(cfg_path, read(cfg_path).replace("threads = 512;", "threads = 0;"))
        rc, out, err = run([binary, "--check-config"], cwd=cwd)
        self.assertEqual(rc, 2, out + err)
        self.assertIn(cfg_path + ":", err)

        # Still optional when it is not there, as config/meshnode.cfg is.
        os.unlink(cfg_path)
        rc, out, err = run([binary, "--check-config"], cwd=cwd)
        self.assertEqual(rc, 0, out + err)
        self.uninstall(PREFIX=prefix)
        self.assertEqual(files_under(prefix), set())

    def test_layout_operator_config_kept_and_uninstall(self):
        root = harness.mkdtemp("destdir")
        out = self.install(DESTDIR=root, PREFIX="/usr/local")
        binary = os.path.join(root, "usr/local/bin/meshnode")
        cfg = os.path.join(root, "usr/local/etc/meshnode/meshnode.cfg")
        unit = os.path.join(root, "usr/local/lib/systemd/system/meshnode.service")
        shims = [os.path.join(root, "usr/local/lib/meshnode", n) for n in SHIMS]
        self.assertEqual(files_under(root),
                         {os.path.relpath(p, root) for p in [binary, cfg, unit] + shims}, out)
        self.assertEqual(mode(binary), 0o755)
        self.assertEqual(mode(cfg), 0o644)
        self.assertEqual(mode(unit), 0o644)
        for shim in shims:
            self.assertEqual(mode(shim), 0o644)
        self.assertEqual(read(cfg), read(EXAMPLE))
        rc, help_text, err = run([binary, "--help"], cwd=root)
        self.assertEqual(rc, 0, err)
        self.assertIn("(default /usr/local/etc/meshnode/meshnode.cfg)", help_text)
        # the unit is the packaging file with the paths put in
        self.assertEqual(read(unit), read(UNIT).replace("@BINDIR@", "/usr/local/bin")
                         .replace("@SYSCONFDIR@", "/usr/local/etc"))
        self.assertIn("\nExecStart=/usr/local/bin/meshnode\n", read(unit))
        self.assertIsNone(re.search(r"@[A-Z]+@", read(unit)), "a placeholder left")

        # An operator's file survives a second install and an uninstall.
        edited = read(cfg).replace("level = \"info\";", "level = \"debug\";")
        self.assertNotEqual(edited, read(cfg))
        write(cfg, edited)
        out = self.install(DESTDIR=root, PREFIX="/usr/local")
        self.assertEqual(read(cfg), edited, out)
        self.assertIn("kept", out)
        out = self.uninstall(DESTDIR=root, PREFIX="/usr/local")
        self.assertEqual(files_under(root), {os.path.relpath(cfg, root)}, out)
        self.assertEqual(read(cfg), edited)
        self.assertIn("differs from the example", out)

        # The example as shipped goes with the rest, and its directory.
        out = self.install(DESTDIR=root, PREFIX="/usr/local")
        write(cfg, read(EXAMPLE))
        out = self.uninstall(DESTDIR=root, PREFIX="/usr/local")
        self.assertEqual(files_under(root), set(), out)
        self.assertFalse(os.path.exists(os.path.dirname(cfg)))

    def test_tls_shims_under_libdir(self):
        """The shims go to $(LIBDIR)/meshnode (PREFIX/lib by default, or a
        LIBDIR of its own), need OpenSSL 3 by its versioned names only (no
        libssl-dev at run time), work from there, and go with uninstall."""
        root = harness.mkdtemp("destdir")
        self.install(DESTDIR=root, PREFIX="/usr", LIBDIR="/usr/lib/x86_64-linux-gnu")
        libdir = os.path.join(root, "usr/lib/x86_64-linux-gnu/meshnode")
        self.assertEqual(sorted(os.listdir(libdir)), sorted(SHIMS))
        self.assertFalse(os.path.exists(os.path.join(root, "usr/lib/meshnode")))
        for name, needed in (("libssl.so", "libssl.so.3"), ("libcrypto.so", "libcrypto.so.3")):
            soname, deps = elf_dynamic(os.path.join(libdir, name))
            self.assertEqual(soname, name)
            self.assertIn(needed, deps)
            self.assertFalse({"libssl.so", "libcrypto.so"} & set(deps), deps)
        p = subprocess.run(["/usr/bin/python3", "-c", SHIM_PROBE, libdir], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stdout.decode().strip(), "meshnode libssl.so shim")
        self.uninstall(DESTDIR=root, PREFIX="/usr", LIBDIR="/usr/lib/x86_64-linux-gnu")
        self.assertFalse(os.path.exists(libdir))
        self.assertEqual(files_under(root), set())

    def test_unit_passes_systemd_analyze_verify(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze not found (Debian package systemd, which "
                          "`scripts/deps.sh test` installs)")
        work = harness.mkdtemp("unit")
        # systemd-analyze must work here at all: a unit with nothing to
        # say about passes, and a misspelt key is reported.
        write(os.path.join(work, "probe.service"), "[Service]\nExecStart=/bin/true\n")
        rc, out, err = run([analyze, "verify", os.path.join(work, "probe.service")], cwd=work)
        if rc != 0:
            self.skipTest("systemd-analyze verify cannot run here: %s" % (out + err).strip())
        write(os.path.join(work, "probe.service"),
              "[Service]\nExecStart=/bin/true\nProtectSytem=strict\n")
        rc, out, err = run([analyze, "verify", os.path.join(work, "probe.service")], cwd=work)
        self.assertIn("ProtectSytem", out + err, "systemd-analyze did not report a bad key")

        # The installed unit, pointed at the installed binary (verify
        # checks that ExecStart= is executable).
        root = harness.mkdtemp("destdir")
        self.install(DESTDIR=root, PREFIX="/usr/local")
        binary = os.path.join(root, "usr/local/bin/meshnode")
        installed = read(os.path.join(root, "usr/local/lib/systemd/system/meshnode.service"))
        unit = os.path.join(work, "meshnode.service")
        write(unit, installed.replace("ExecStart=/usr/local/bin/meshnode",
                                      "ExecStart=" + binary))
        rc, out, err = run([analyze, "verify", unit], cwd=work)
        about_unit = [line for line in (out + err).splitlines() if "meshnode.service" in line]
        self.assertEqual(about_unit, [], out + err)
        self.assertEqual(rc, 0, out + err)

        # The sandbox, as systemd scores it (0 best, 10 worst): only a
        # regression is reported. --offline needs systemd 250.
        rc, out, err = run([analyze, "security", "--offline=yes", unit], cwd=work)
        m = re.search(r"Overall exposure level for meshnode\.service: ([0-9.]+)", out + err)
        if m is None:
            print("  [systemd-analyze security --offline not available: %s]"
                  % (out + err).strip().splitlines()[-1:])
            return
        print("  [systemd-analyze security: exposure %s]" % m.group(1))
        self.assertLessEqual(float(m.group(1)), 2.0, out)
