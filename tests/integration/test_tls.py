"""The agent over TLS, set the way Consul's own tools read it:
CONSUL_HTTP_ADDR=https://..., CONSUL_HTTP_SSL, CONSUL_CACERT and
CONSUL_TLS_SERVER_NAME. The test makes its own CA and a server certificate
that names only server.dc1.consul (no IP address), so reaching 127.0.0.1
works only when the node checks the certificate against the server name."""

import json
import os
import subprocess

import harness
from harness import Node, requires_meshnode, wait_until

SERVER_NAME = "server.dc1.consul"
CONSUL = None  # the module's agent while its tests run (conftest.py)
CERTS = None


def make_certs(d):
    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=meshnode test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + SERVER_NAME,
        "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:%s,DNS:localhost\n" % SERVER_NAME)
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    return {n: os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key")}


class TlsConsul(harness.Consul):
    """The harness's dev agent plus an HTTPS listener on a free port."""

    def __init__(self, certs):
        self.certs = certs
        self.https_port = harness.free_port()
        self.hcl = os.path.join(harness.mkdtemp("tls"), "tls.hcl")
        with open(self.hcl, "w") as f:
            f.write('ports { https = %d }\ncert_file = "%s"\nkey_file = "%s"\nca_file = "%s"\n'
                    'verify_incoming = false\n' % (self.https_port, certs["server.pem"],
                                                   certs["server.key"], certs["ca.pem"]))
        super().__init__()

    def _argv(self):
        return super()._argv() + ["-config-file", self.hcl]


def tls_consul():
    global CERTS
    CERTS = make_certs(harness.mkdtemp("certs"))
    return TlsConsul(CERTS)


CONSUL_FACTORY = tls_consul  # conftest.py starts it as the module's CONSUL


@requires_meshnode
class TlsTest(harness.ProcessesTestCase):
    def node(self, name, addr, env):
        return self.track(Node(name=name, consul_addr=addr, env=env))

    def test_https_with_ca_and_server_name(self):
        addr = "https://127.0.0.1:%d" % CONSUL.https_port
        n = self.node("tls-ok", addr, {"CONSUL_CACERT": CERTS["ca.pem"],
                                       "CONSUL_TLS_SERVER_NAME": SERVER_NAME})
        n.start_ready()
        wait_until(lambda: CONSUL.service_by_name("tls-ok"), timeout=10,
                   what="tls-ok registered over https")
        self.assertEqual(n.stop(), 0)
        self.assertEqual(CONSUL.service_by_name("tls-ok"), [], "not deregistered over https")

    def test_consul_http_ssl_turns_on_https(self):
        addr = "127.0.0.1:%d" % CONSUL.https_port
        n = self.node("tls-ssl", addr, {"CONSUL_HTTP_SSL": "true",
                                        "CONSUL_CACERT": CERTS["ca.pem"],
                                        "CONSUL_TLS_SERVER_NAME": SERVER_NAME})
        n.start_ready()
        wait_until(lambda: CONSUL.service_by_name("tls-ssl"), timeout=10,
                   what="tls-ssl registered with CONSUL_HTTP_SSL")

    def test_certificate_is_checked(self):
        # No server name: the certificate does not name 127.0.0.1.
        addr = "https://127.0.0.1:%d" % CONSUL.https_port
        n = self.node("tls-bad", addr, {"CONSUL_CACERT": CERTS["ca.pem"]})
        n.start_ready()
        def refused():
            body = json.loads(n.request("GET", "/ready")[2])
            return body.get("consul_error")
        wait_until(refused, timeout=10, what="/ready reporting the TLS failure")
        self.assertEqual(CONSUL.service_by_name("tls-bad"), [])
        self.assertEqual(n.request("GET", "/health")[0], 200)
