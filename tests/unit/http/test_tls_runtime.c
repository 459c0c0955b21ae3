/* The TLS runtime (http/tls_runtime.c) and civetweb's TLS through
 * http/server: the shims this build made (../../tls from this binary, or
 * MESHNODE_TLS_SHIM_DIR), a real HTTPS listener on 127.0.0.1 with an EC
 * P-256 certificate made here, real requests through http/client (libcurl),
 * and hostile peers on the TLS port. The cases run in order: those that
 * must fail come before TLS is initialized in this process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "http/client.h"
#include "http/router.h"
#include "http/server.h"
#include "http/tls_runtime.h"

#define CLIENT_CN "meshnode-test-client"

static char shim_dir[PATH_MAX];
static char tmp_dir[] = "/tmp/meshnode-tls-XXXXXX";

/* The shims of this build: build/tls for build/tests/http/test_*,
 * build/san/tls for build/san/tests/http/test_*. */
static void find_shim_dir(void)
{
	const char *given = getenv("MESHNODE_TLS_SHIM_DIR");
	char exe[PATH_MAX], rel[PATH_MAX + 16];
	ssize_t n;

	if (given && given[0]) {
		assert_non_null(realpath(given, shim_dir));
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0 && (size_t)n < sizeof(exe) - 1);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(rel, sizeof(rel), "%s/../../tls", exe);
	if (realpath(rel, shim_dir) == NULL)
		fail_msg("no shims at '%s' (make unit-build builds them): %s", rel,
			 strerror(errno));
}

static void path_in_tmp(char *out, size_t outlen, const char *name)
{
	snprintf(out, outlen, "%s/%s", tmp_dir, name);
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	size_t n;

	assert_non_null(in);
	assert_non_null(out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* ---- ELF: what the shims need at run time ---- */

/* Every DT_NEEDED name of the ELF file 'path' joined by spaces into out,
 * its DT_SONAME into soname. The file is read whole (shims are small)
 * and every offset checked against its size. */
static void elf_dynamic(const char *path, char *out, size_t outlen, char *soname, size_t sonamelen)
{
	FILE *f = fopen(path, "rb");
	unsigned char *img;
	long size;
	const Elf64_Ehdr *eh;
	const Elf64_Shdr *sh;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	assert_true(size > (long)sizeof(Elf64_Ehdr) && size < (4L << 20));
	img = malloc((size_t)size);
	assert_non_null(img);
	assert_int_equal(fread(img, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	eh = (const Elf64_Ehdr *)img;
	assert_memory_equal(eh->e_ident, ELFMAG, SELFMAG);
	assert_int_equal(eh->e_ident[EI_CLASS], ELFCLASS64);
	assert_true(eh->e_shoff > 0 && eh->e_shentsize == sizeof(Elf64_Shdr) &&
		    eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) <= (uint64_t)size);
	sh = (const Elf64_Shdr *)(img + eh->e_shoff);
	out[0] = soname[0] = '\0';
	for (unsigned i = 0; i < eh->e_shnum; i++) {
		const Elf64_Shdr *dyn = &sh[i], *str;

		if (dyn->sh_type != SHT_DYNAMIC)
			continue;
		assert_true(dyn->sh_link < eh->e_shnum);
		str = &sh[dyn->sh_link];
		assert_true(dyn->sh_offset + dyn->sh_size <= (uint64_t)size &&
			    str->sh_offset + str->sh_size <= (uint64_t)size);
		for (uint64_t off = 0; off + sizeof(Elf64_Dyn) <= dyn->sh_size;
		     off += sizeof(Elf64_Dyn)) {
			const Elf64_Dyn *d = (const Elf64_Dyn *)(img + dyn->sh_offset + off);
			const char *name;

			if (d->d_tag == DT_NULL)
				break;
			if (d->d_tag != DT_NEEDED && d->d_tag != DT_SONAME)
				continue;
			assert_true(d->d_un.d_val < str->sh_size);
			name = (const char *)img + str->sh_offset + d->d_un.d_val;
			assert_non_null(memchr(name, '\0', str->sh_size - d->d_un.d_val));
			if (d->d_tag == DT_SONAME)
				snprintf(soname, sonamelen, "%s", name);
			else
				snprintf(out + strlen(out), outlen - strlen(out), "%s ", name);
		}
	}
	free(img);
}

/* Both shims need OpenSSL 3 by its versioned names and never the
 * unversioned ones only libssl-dev provides, and carry the SONAMEs
 * civetweb's dlopen asks for. */
static void test_shims_need_openssl3_not_dev_links(void **state)
{
	char path[PATH_MAX + 32], needed[512], soname[64];
	(void)state;

	snprintf(path, sizeof(path), "%s/libssl.so", shim_dir);
	elf_dynamic(path, needed, sizeof(needed), soname, sizeof(soname));
	assert_string_equal(soname, "libssl.so");
	assert_non_null(strstr(needed, "libssl.so.3 "));
	assert_null(strstr(needed, "libssl.so "));
	assert_null(strstr(needed, "libcrypto.so "));

	snprintf(path, sizeof(path), "%s/libcrypto.so", shim_dir);
	elf_dynamic(path, needed, sizeof(needed), soname, sizeof(soname));
	assert_string_equal(soname, "libcrypto.so");
	assert_non_null(strstr(needed, "libcrypto.so.3 "));
	assert_null(strstr(needed, "libcrypto.so "));
	assert_null(strstr(needed, "libssl.so"));
}

static void test_shim_dir(void **state)
{
	char dir[PATH_MAX], exe[PATH_MAX], want[PATH_MAX + 8], err[256];
	ssize_t n;
	(void)state;

	assert_int_equal(
		tls_runtime_shim_dir("/usr/lib/meshnode", dir, sizeof(dir), err, sizeof(err)),
		MN_OK);
	assert_string_equal(dir, "/usr/lib/meshnode");

	/* "" (build/meshnode): tls/ next to the running executable */
	assert_int_equal(tls_runtime_shim_dir("", dir, sizeof(dir), err, sizeof(err)), MN_OK);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(want, sizeof(want), "%s/tls", exe);
	assert_string_equal(dir, want);
	assert_int_equal(tls_runtime_shim_dir(NULL, dir, sizeof(dir), err, sizeof(err)), MN_OK);
	assert_string_equal(dir, want);

	assert_int_equal(tls_runtime_shim_dir("/usr/lib/meshnode", dir, 8, err, sizeof(err)),
			 MN_TOO_LARGE);
	assert_non_null(strstr(err, "longer than 7 bytes"));
}

static void test_load_refuses_relative_dir(void **state)
{
	char err[256];
	(void)state;

	assert_int_equal(tls_runtime_load("build/tls", err, sizeof(err)), MN_INVALID);
	assert_string_equal(err,
			    "tls runtime: the shim directory 'build/tls' is not an absolute path");
	assert_int_equal(tls_runtime_load("", err, sizeof(err)), MN_INVALID);
	assert_int_equal(tls_runtime_load(NULL, err, sizeof(err)), MN_INVALID);
	assert_false(tls_runtime_loaded());
}

static int find_loaded(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	return strncmp(info->dlpi_name, data, strlen(data)) == 0;
}

/* Whether an object from the directory 'dir' is loaded in this process.
 * (Not dlopen(name, RTLD_NOLOAD): where libssl-dev is installed, a bare
 * name no loaded object carries is looked for on disk, and found there it
 * stays bound to OpenSSL 3 itself.) */
static bool loaded_from(const char *dir)
{
	return dl_iterate_phdr(find_loaded, (void *)dir) != 0;
}

/* A directory without the shims, one with libcrypto.so alone, and one
 * whose libssl.so is OpenSSL 3 itself (what libssl-dev's link gives
 * civetweb on Debian 12): each a clear error naming what is missing, and
 * no shim left loaded under the bare names. */
static void test_init_fails_cleanly_without_shims(void **state)
{
	char err[512], want[PATH_MAX + 64], from[PATH_MAX + 32], to[PATH_MAX];
	(void)state;

	assert_int_equal(http_server_tls_init(tmp_dir, err, sizeof(err)), MN_IO);
	snprintf(want, sizeof(want), "tls runtime: cannot load '%s/libcrypto.so': ", tmp_dir);
	assert_memory_equal(err, want, strlen(want));
	assert_false(tls_runtime_loaded());

	snprintf(from, sizeof(from), "%s/libcrypto.so", shim_dir);
	path_in_tmp(to, sizeof(to), "libcrypto.so");
	copy_file(from, to);
	assert_int_equal(http_server_tls_init(tmp_dir, err, sizeof(err)), MN_IO);
	snprintf(want, sizeof(want), "tls runtime: cannot load '%s/libssl.so': ", tmp_dir);
	assert_memory_equal(err, want, strlen(want));
	assert_false(loaded_from(tmp_dir));

	path_in_tmp(to, sizeof(to), "libssl.so");
	assert_int_equal(symlink("/usr/lib/x86_64-linux-gnu/libssl.so.3", to), 0);
	assert_int_equal(http_server_tls_init(tmp_dir, err, sizeof(err)), MN_IO);
	snprintf(want, sizeof(want), "tls runtime: '%s/libssl.so' is not meshnode's libssl.so shim",
		 tmp_dir);
	assert_string_equal(err, want);
	assert_false(loaded_from(tmp_dir));
	assert_false(tls_runtime_loaded());
	unlink(to);
	path_in_tmp(to, sizeof(to), "libcrypto.so");
	unlink(to);
}

/* ---- certificates, made here ---- */

struct cert {
	EVP_PKEY *key;
	X509 *x509;
	char cert_path[PATH_MAX];
	char key_path[PATH_MAX];
};

static void write_pem(const char *path, EVP_PKEY *key, X509 *x509)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	if (key)
		assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
	else
		assert_int_equal(PEM_write_X509(f, x509), 1);
	assert_int_equal(fclose(f), 0);
}

/* A self-signed EC P-256 certificate for 'cn', valid for a day, naming
 * 127.0.0.1 and localhost; its PEM files in the temporary directory. */
static void cert_make(struct cert *c, const char *cn, long serial)
{
	X509_NAME *name;
	X509_EXTENSION *ext;
	X509V3_CTX v3;
	char file[64];

	c->key = EVP_EC_gen("P-256");
	assert_non_null(c->key);
	c->x509 = X509_new();
	assert_non_null(c->x509);
	assert_int_equal(X509_set_version(c->x509, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(c->x509), serial), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(c->x509), -60));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(c->x509), 86400));
	assert_int_equal(X509_set_pubkey(c->x509, c->key), 1);
	name = X509_get_subject_name(c->x509);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
						    (const unsigned char *)cn, -1, -1, 0),
			 1);
	assert_int_equal(X509_set_issuer_name(c->x509, name), 1);
	X509V3_set_ctx(&v3, c->x509, c->x509, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1, DNS:localhost");
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(c->x509, ext, -1), 1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(c->x509, c->key, EVP_sha256()) > 0);

	snprintf(file, sizeof(file), "%s.pem", cn);
	path_in_tmp(c->cert_path, sizeof(c->cert_path), file);
	write_pem(c->cert_path, NULL, c->x509);
	snprintf(file, sizeof(file), "%s.key", cn);
	path_in_tmp(c->key_path, sizeof(c->key_path), file);
	write_pem(c->key_path, c->key, NULL);
}

static void cert_free(struct cert *c)
{
	unlink(c->cert_path);
	unlink(c->key_path);
	X509_free(c->x509);
	EVP_PKEY_free(c->key);
}

/* ---- the server ---- */

struct tls_conf {
	const struct cert *server;
	const struct cert *trusted_client; /* the one client certificate accepted */
	int setups;
	bool refuse;
};

/* The application's SSL_CTX: civetweb made it; everything else is ours. */
static int tls_setup(void *ssl_ctx, void *ctx)
{
	static const unsigned char sid_ctx[] = "meshnode-test";
	struct tls_conf *conf = ctx;
	SSL_CTX *c = ssl_ctx;

	conf->setups++;
	if (conf->refuse)
		return -1;
	if (SSL_CTX_use_certificate(c, conf->server->x509) != 1 ||
	    SSL_CTX_use_PrivateKey(c, conf->server->key) != 1 ||
	    SSL_CTX_check_private_key(c) != 1 ||
	    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
	    X509_STORE_add_cert(SSL_CTX_get_cert_store(c), conf->trusted_client->x509) != 1 ||
	    SSL_CTX_set_session_id_context(c, sid_ctx, sizeof(sid_ctx) - 1) != 1)
		return -1;
	/* a client certificate is asked for, checked when given, not required */
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	return 0;
}

/* GET /whoami: the common name of the certificate the client presented,
 * as the handler sees it, or "none". */
static void whoami(const struct http_request *req, struct http_response *res, void *ctx)
{
	char cn[128] = "none";
	(void)ctx;

	if (req->peer_cert &&
	    X509_NAME_get_text_by_NID(X509_get_subject_name((const X509 *)req->peer_cert),
				      NID_commonName, cn, sizeof(cn)) < 0)
		snprintf(cn, sizeof(cn), "unreadable");
	http_reply_raw(res, 200, "text/plain", cn, strlen(cn));
}

static struct http_server *start(struct http_router *router, struct tls_conf *conf, char *err,
				 size_t errlen)
{
	struct http_server_opts opts = {
		.address = "127.0.0.1",
		.port = 0,
		.threads = 4,
		.read_timeout_ms = 2000,
		.idle_timeout_ms = 2000,
		.max_body_bytes = 1 << 16,
		.router = router,
		.tls_setup = tls_setup,
		.tls_ctx = conf,
	};

	return http_server_start(&opts, err, errlen);
}

/* ---- clients ---- */

/* GET https://127.0.0.1:port/whoami through http/client, checking the
 * server's certificate; with a client certificate when 'client' is set. */
static enum mn_err get_whoami(int port, const struct cert *server, const struct cert *client,
			      long *status, char *body, size_t bodylen)
{
	struct httpc_tls tls = {.ca_file = server->cert_path,
				.cert_file = client ? client->cert_path : NULL,
				.key_file = client ? client->key_path : NULL};
	struct httpc_response res;
	struct httpc *h = httpc_create();
	char url[64], err[256] = "";
	enum mn_err e;

	assert_non_null(h);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/whoami", port);
	struct httpc_request req = {
		.method = "GET",
		.url = url,
		.timeout_ms = 5000,
		.connect_timeout_ms = 2000,
		.max_response = 4096,
		.tls = &tls,
	};
	httpc_response_init(&res);
	e = httpc_perform(h, &req, &res, err, sizeof(err));
	*status = res.status;
	snprintf(body, bodylen, "%.*s", (int)res.body.len, res.body.data ? res.body.data : "");
	if (e != MN_OK)
		snprintf(body, bodylen, "%s", err);
	httpc_response_release(&res);
	httpc_destroy(h);
	return e;
}

static void assert_serves(int port, const struct cert *server)
{
	char body[256];
	long status;

	assert_int_equal(get_whoami(port, server, NULL, &status, body, sizeof(body)), MN_OK);
	assert_int_equal(status, 200);
	assert_string_equal(body, "none");
}

static int raw_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = 3};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr), 1);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Reads what the server sends until it closes, at most outlen - 1 bytes
 * and a bounded number of reads; the count read, -1 when the server
 * neither closed nor answered within the socket's timeout. */
static ssize_t read_until_close(int fd, char *out, size_t outlen)
{
	size_t got = 0;

	for (int i = 0; i < 64 && got < outlen - 1; i++) {
		ssize_t n = recv(fd, out + got, outlen - 1 - got, 0);

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		if (n < 0)
			return -1;
		got += (size_t)n;
	}
	out[got] = '\0';
	return (ssize_t)got;
}

static void send_all(int fd, const void *data, size_t len)
{
	assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* A real ClientHello's bytes, as a TLS client would send first. */
static size_t client_hello(unsigned char *out, size_t outlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	BIO *rbio, *wbio;
	int n;

	assert_non_null(ctx);
	ssl = SSL_new(ctx);
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(BIO_s_mem());
	assert_true(ssl && rbio && wbio);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_connect_state(ssl);
	assert_int_equal(SSL_do_handshake(ssl), -1);
	assert_int_equal(SSL_get_error(ssl, -1), SSL_ERROR_WANT_READ);
	n = BIO_read(wbio, out, (int)outlen);
	assert_true(n > 5 && out[0] == 0x16); /* a handshake record */
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return (size_t)n;
}

/* ---- the cases that need TLS up ---- */

static struct cert server_cert, client_cert, stranger_cert;

/* TLS asked for before http_server_tls_init(): refused at start, never a
 * server that would jump to address 0 on its first connection. */
static void test_tls_server_refused_before_init(void **state)
{
	struct http_router *router = http_router_create();
	struct tls_conf conf = {&server_cert, &client_cert, 0, false};
	char err[256];
	(void)state;

	assert_null(start(router, &conf, err, sizeof(err)));
	assert_non_null(strstr(err, "TLS asked for and the tls runtime is not initialized"));
	assert_int_equal(conf.setups, 0);
	http_router_destroy(router);
}

static void test_init_from_build_shims(void **state)
{
	char err[512] = "", path[PATH_MAX + 32];
	struct timespec t0, t1;
	void *ssl, *crypto, *fn;
	Dl_info info;
	(void)state;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (http_server_tls_init(shim_dir, err, sizeof(err)) != MN_OK)
		fail_msg("%s", err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("tls init: %.2f ms\n", (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
						     (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	assert_true(tls_runtime_loaded());
	/* again, and with a directory without shims: TLS is up, once */
	assert_int_equal(http_server_tls_init(shim_dir, err, sizeof(err)), MN_OK);
	assert_int_equal(http_server_tls_init(tmp_dir, err, sizeof(err)), MN_OK);

	/* What civetweb's own lookups now find */
	ssl = dlopen("libssl.so", RTLD_NOW | RTLD_NOLOAD);
	crypto = dlopen("libcrypto.so", RTLD_NOW | RTLD_NOLOAD);
	assert_non_null(ssl);
	assert_non_null(crypto);
	fn = dlsym(ssl, "SSL_get_peer_certificate");
	assert_non_null(fn);
	assert_int_not_equal(dladdr(fn, &info), 0);
	snprintf(path, sizeof(path), "%s/libssl.so", shim_dir);
	assert_string_equal(info.dli_fname, path);
	assert_string_equal((const char *)dlsym(ssl, "meshnode_tls_shim"),
			    "meshnode libssl.so shim");
	assert_string_equal((const char *)dlsym(crypto, "meshnode_tls_shim"),
			    "meshnode libcrypto.so shim");
	fn = dlsym(ssl, "SSL_get1_peer_certificate");
	assert_non_null(fn);
	assert_int_not_equal(dladdr(fn, &info), 0);
	assert_non_null(strstr(info.dli_fname, "libssl.so.3"));
	assert_non_null(dlsym(crypto, "X509_free"));
	dlclose(ssl);
	dlclose(crypto);
}

/* A TLS server of 'conf' with GET /whoami, started (the test fails when
 * it cannot start); *router to destroy after http_server_stop(). */
static struct http_server *start_whoami(struct http_router **router, struct tls_conf *conf)
{
	struct http_server *s;
	char err[256];

	*router = http_router_create();
	assert_non_null(*router);
	assert_int_equal(http_router_add(*router, "GET", "/whoami", whoami, NULL), MN_OK);
	s = start(*router, conf, err, sizeof(err));
	if (s == NULL)
		fail_msg("%s", err);
	return s;
}

static void test_https_requests_and_client_cert(void **state)
{
	struct tls_conf conf = {&server_cert, &client_cert, 0, false};
	struct http_router *router;
	struct http_server *s;
	struct timespec t0, t1;
	char body[256];
	long status;
	int port;
	(void)state;

	s = start_whoami(&router, &conf);
	assert_int_equal(conf.setups, 1);
	port = http_server_port(s);
	assert_true(port > 0);

	/* each request a new client, so a full handshake: the time is shown,
	 * never asserted */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 20; i++)
		assert_serves(port, &server_cert);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("20 requests, each on a new TLS connection: %.1f ms\n",
		      (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
			      (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);

	assert_int_equal(get_whoami(port, &server_cert, &client_cert, &status, body, sizeof(body)),
			 MN_OK);
	assert_int_equal(status, 200);
	assert_string_equal(body, CLIENT_CN);

	/* a certificate the server does not trust: the handshake fails */
	assert_int_not_equal(
		get_whoami(port, &server_cert, &stranger_cert, &status, body, sizeof(body)), MN_OK);
	assert_int_equal(status, 0);

	/* the client checks the server: another certificate as the CA fails */
	assert_int_not_equal(get_whoami(port, &client_cert, NULL, &status, body, sizeof(body)),
			     MN_OK);

	assert_serves(port, &server_cert);
	http_server_stop(s);
	http_router_destroy(router);
}

/* Plain HTTP, garbage, and handshakes abandoned half-way on the TLS port:
 * each connection is closed unanswered, and the server goes on serving. */
static void test_hostile_peers_on_tls_port(void **state)
{
	struct tls_conf conf = {&server_cert, &client_cert, 0, false};
	static const char plain[] = "GET /whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	unsigned char hello[4096], garbage[4096];
	struct http_router *router;
	char got[8192];
	struct http_server *s;
	size_t hello_len;
	ssize_t n;
	int port, fd;
	(void)state;

	s = start_whoami(&router, &conf);
	port = http_server_port(s);

	fd = raw_connect(port);
	send_all(fd, plain, sizeof(plain) - 1);
	n = read_until_close(fd, got, sizeof(got));
	assert_true(n >= 0);
	assert_null(strstr(got, "200"));
	close(fd);
	assert_serves(port, &server_cert);

	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (unsigned char)(i * 151u + 7u);
	fd = raw_connect(port);
	send_all(fd, garbage, sizeof(garbage));
	n = read_until_close(fd, got, sizeof(got));
	assert_true(n >= 0);
	assert_null(memmem(got, (size_t)n, "HTTP/", 5)); /* at most an alert, never an answer */
	close(fd);
	assert_serves(port, &server_cert);

	/* half a ClientHello, then gone */
	hello_len = client_hello(hello, sizeof(hello));
	fd = raw_connect(port);
	send_all(fd, hello, hello_len / 2);
	close(fd);
	assert_serves(port, &server_cert);

	/* a whole ClientHello, the server's first flight read, then gone */
	fd = raw_connect(port);
	send_all(fd, hello, hello_len);
	n = recv(fd, got, sizeof(got), 0);
	assert_true(n > 5 && (unsigned char)got[0] == 0x16); /* the ServerHello's record */
	close(fd);
	assert_serves(port, &server_cert);

	/* a whole ClientHello, then a record of garbage */
	fd = raw_connect(port);
	send_all(fd, hello, hello_len);
	(void)recv(fd, got, sizeof(got), 0);
	send_all(fd, garbage, 512);
	n = read_until_close(fd, got, sizeof(got));
	assert_true(n >= 0);
	assert_null(memmem(got, (size_t)n, "HTTP/", 5));
	close(fd);
	assert_serves(port, &server_cert);

	http_server_stop(s);
	http_router_destroy(router);
}

/* The application's setup refusing: the start fails, with civetweb's
 * reason. */
static void test_tls_setup_refusal_fails_start(void **state)
{
	struct http_router *router = http_router_create();
	struct tls_conf conf = {&server_cert, &client_cert, 0, true};
	char err[256];
	(void)state;

	assert_null(start(router, &conf, err, sizeof(err)));
	assert_int_equal(conf.setups, 1);
	assert_non_null(strstr(err, "cannot listen on '127.0.0.1:0s'"));
	http_router_destroy(router);
}

static int group_setup(void **state)
{
	(void)state;
	log_set_level(MN_LOG_ERROR);
	find_shim_dir();
	if (mkdtemp(tmp_dir) == NULL)
		return -1;
	if (httpc_global_init() != MN_OK)
		return -1;
	cert_make(&server_cert, "meshnode-test-server", 1);
	cert_make(&client_cert, CLIENT_CN, 2);
	cert_make(&stranger_cert, "meshnode-test-stranger", 3);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	cert_free(&server_cert);
	cert_free(&client_cert);
	cert_free(&stranger_cert);
	httpc_global_cleanup();
	return rmdir(tmp_dir) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shims_need_openssl3_not_dev_links),
		cmocka_unit_test(test_shim_dir),
		cmocka_unit_test(test_load_refuses_relative_dir),
		cmocka_unit_test(test_init_fails_cleanly_without_shims),
		cmocka_unit_test(test_tls_server_refused_before_init),
		cmocka_unit_test(test_init_from_build_shims),
		cmocka_unit_test(test_https_requests_and_client_cert),
		cmocka_unit_test(test_hostile_peers_on_tls_port),
		cmocka_unit_test(test_tls_setup_refusal_fails_start),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
