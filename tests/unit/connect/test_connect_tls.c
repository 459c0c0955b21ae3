/* connect/connect_tls: the service port's mutual TLS and per-request gate,
 * with real OpenSSL handshakes through memory BIO pairs: the server side
 * is an SSL_CTX configured by connect_tls_setup() over an identity fed the
 * captured rotation answers (tests/fixtures/consul/connect/rotation_*),
 * the client presents the captured leaf of 'web' or certificates made
 * here; the authorizer is the test's, so that its answers and generation
 * can be turned. The same checks against a real node and agent:
 * tests/integration/test_connect.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "connect/connect_tls.h"
#include "connect_certs.h"
#include "fixture.h"
#include "log_capture.h"

/* leaf_1 ('users') and leaf_web: 2026-12-08T01:24:11Z to 2026-12-11T01:24:11Z */
#define LEAF_AFTER_MS  ((int64_t)1796693051 * 1000)
#define LEAF_BEFORE_MS ((int64_t)1796952251 * 1000)
#define TD	       "1769f589-5ac8-fef8-5f1b-7131cb8c727d.consul"

struct fake_authz {
	bool allow;
	uint64_t generation;
	unsigned calls;
	char last_uri[SPIFFE_URI_MAX + 1];
	char last_serial[64];
};

static bool fake_check(void *ctx, const struct spiffe_id *caller, const char *caller_uri,
		       const char *serial, struct connect_authz_decision *out)
{
	struct fake_authz *f = ctx;

	(void)caller;
	f->calls++;
	snprintf(f->last_uri, sizeof(f->last_uri), "%s", caller_uri);
	snprintf(f->last_serial, sizeof(f->last_serial), "%s", serial ? serial : "");
	*out = (struct connect_authz_decision){
		.allowed = f->allow,
		.result = f->allow ? CONNECT_AUTHZ_ALLOW : CONNECT_AUTHZ_DENY,
		.kept = true,
		.generation = f->generation,
	};
	return f->allow;
}

static uint64_t fake_generation(void *ctx)
{
	return ((struct fake_authz *)ctx)->generation;
}

static int64_t fixed_wall(void *ctx)
{
	return *(const int64_t *)ctx;
}

struct env {
	struct connect_identity *id;
	struct fake_authz authz;
	struct connect_tls *tls;
	SSL_CTX *server;
	int64_t now_ms;
};

static char *answer(const char *name, size_t *len, uint64_t *index)
{
	struct fixture_answer a;
	char path[128], *body;

	snprintf(path, sizeof(path), "consul/connect/%s.http", name);
	fixture_answer_load(&a, path);
	body = strndup(a.body, a.len);
	assert_non_null(body);
	*len = a.len;
	*index = a.index;
	fixture_answer_free(&a);
	return body;
}

static void feed(struct connect_identity *id, bool roots, const char *name)
{
	char err[512] = "";
	uint64_t index;
	size_t len;
	char *body = answer(name, &len, &index);
	enum mn_err e =
		roots ? connect_identity_feed_roots(id, body, len, index, NULL, err, sizeof(err))
		      : connect_identity_feed_leaf(id, body, len, index, NULL, err, sizeof(err));

	assert_int_equal(e, MN_OK);
	free(body);
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	char err[256] = "";

	assert_non_null(e);
	e->now_ms = LEAF_AFTER_MS + 3600 * 1000;
	e->authz = (struct fake_authz){.allow = true, .generation = 7};
	e->id = connect_identity_start(&(struct connect_identity_opts){.service = "users"}, err,
				       sizeof(err));
	assert_non_null(e->id);
	feed(e->id, true, "rotation_roots_1");
	feed(e->id, false, "rotation_leaf_1");
	e->tls = connect_tls_create(
		&(struct connect_tls_opts){
			.identity = e->id,
			.authz = {fake_check, fake_generation, &e->authz},
			.wall_ms = fixed_wall,
			.wall_ctx = &e->now_ms,
		},
		err, sizeof(err));
	assert_non_null(e->tls);
	e->server = SSL_CTX_new(TLS_server_method());
	assert_non_null(e->server);
	assert_int_equal(connect_tls_setup(e->server, e->tls), 0);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	SSL_CTX_free(e->server);
	connect_tls_destroy(e->tls);
	connect_identity_destroy(e->id);
	free(e);
	return 0;
}

/* A member of a captured answer, as a new string. */
static char *member(const char *name, const char *key)
{
	uint64_t index;
	size_t len;
	char *body = answer(name, &len, &index), *v;
	json_t *j = json_loadb(body, len, 0, NULL);

	assert_non_null(j);
	v = strdup(json_string_value(json_object_get(j, key)));
	assert_non_null(v);
	json_decref(j);
	free(body);
	return v;
}

/* A client context presenting 'cert' with 'key' (NULL: no certificate),
 * offering the ALPN list 'alpn' (wire format; NULL: none), at most TLS
 * version 'max_version' (0: any). The server is not verified: the
 * server's own checks are under test. */
static SSL_CTX *client(X509 *cert, EVP_PKEY *key, const char *alpn, size_t alpn_len,
		       int max_version)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());

	assert_non_null(c);
	SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
	if (cert) {
		assert_int_equal(SSL_CTX_use_certificate(c, cert), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey(c, key), 1);
	}
	if (alpn)
		assert_int_equal(
			SSL_CTX_set_alpn_protos(c, (const unsigned char *)alpn, (unsigned)alpn_len),
			0);
	if (max_version) {
		SSL_CTX_set_security_level(c, 0);
		assert_int_equal(SSL_CTX_set_max_proto_version(c, max_version), 1);
		SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
	}
	return c;
}

/* The captured leaf of 'web' (signed by the roots of rotation_roots_1). */
static SSL_CTX *web_client(void)
{
	char *cert_pem = member("rotation_leaf_web", "CertPEM");
	char *key_pem = member("rotation_leaf_web", "PrivateKeyPEM");
	BIO *kb = BIO_new_mem_buf(key_pem, -1);
	EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
	X509 *cert;
	STACK_OF(X509) *rest = certs_pem(cert_pem, &cert);
	SSL_CTX *c;

	assert_non_null(key);
	c = client(cert, key, NULL, 0, 0);
	sk_X509_pop_free(rest, X509_free);
	X509_free(cert);
	EVP_PKEY_free(key);
	BIO_free(kb);
	free(cert_pem);
	free(key_pem);
	return c;
}

struct hs {
	SSL *server, *client;
	bool server_ok;
};

/* One handshake through a memory BIO pair, both sides stepped in turn
 * until the server is done or either side failed (bounded). */
static struct hs handshake(SSL_CTX *server, SSL_CTX *clientctx, SSL_SESSION *resume)
{
	struct hs h = {SSL_new(server), SSL_new(clientctx), false};
	BIO *sb, *cb;
	int rs = 0, rc = 0;
	bool client_failed = false;

	assert_non_null(h.server);
	assert_non_null(h.client);
	assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
	SSL_set_bio(h.server, sb, sb);
	SSL_set_bio(h.client, cb, cb);
	SSL_set_accept_state(h.server);
	SSL_set_connect_state(h.client);
	if (resume)
		assert_int_equal(SSL_set_session(h.client, resume), 1);
	for (int i = 0; i < 20; i++) {
		if (rc != 1 && !client_failed) {
			rc = SSL_do_handshake(h.client);
			if (rc <= 0 && SSL_get_error(h.client, rc) != SSL_ERROR_WANT_READ)
				client_failed = true;
		}
		rs = SSL_do_handshake(h.server);
		if (rs == 1) {
			h.server_ok = true;
			break;
		}
		if (SSL_get_error(h.server, rs) != SSL_ERROR_WANT_READ)
			break;
	}
	/* the client reads what the server sent last (tickets, an alert) */
	if (rc == 1) {
		char b;
		(void)SSL_read(h.client, &b, 1);
	}
	ERR_clear_error();
	return h;
}

static void hs_free(struct hs *h)
{
	SSL_free(h->server);
	SSL_free(h->client);
}

static uint64_t count(struct env *e, enum connect_tls_result r)
{
	return connect_tls_count(e->tls, r);
}

static void test_allowed_then_gated_by_generation(void **state)
{
	struct env *e = *state;
	SSL_CTX *c = web_client();
	struct hs h = handshake(e->server, c, NULL);
	X509 *peer, *served;
	char serial[16];

	assert_true(h.server_ok);
	assert_int_equal(e->authz.calls, 1);
	assert_string_equal(e->authz.last_uri, "spiffe://" TD "/ns/default/dc/dc1/svc/web");
	assert_string_equal(e->authz.last_serial, "09");
	/* the server presented the snapshot's leaf: serial 08 */
	served = SSL_get0_peer_certificate(h.client);
	assert_non_null(served);
	snprintf(serial, sizeof(serial), "%ld", ASN1_INTEGER_get(X509_get0_serialNumber(served)));
	assert_string_equal(serial, "8");
	assert_string_equal(SSL_get_version(h.server), "TLSv1.3");

	/* the certificate civetweb hands each request carries the decision */
	peer = SSL_get1_peer_certificate(h.server);
	assert_non_null(peer);
	assert_true(connect_tls_gate(e->tls, peer));
	assert_true(connect_tls_gate(e->tls, peer));
	assert_int_equal(e->authz.calls, 1); /* same generation: no new check */
	e->authz.generation++;
	assert_true(connect_tls_gate(e->tls, peer));
	assert_int_equal(e->authz.calls, 2);
	/* an intention turned to deny reaches the open connection */
	e->authz.allow = false;
	e->authz.generation++;
	assert_false(connect_tls_gate(e->tls, peer));
	assert_false(connect_tls_gate(e->tls, peer)); /* and stays refused */
	assert_int_equal(e->authz.calls, 4);
	X509_free(peer);

	assert_int_equal(count(e, CONNECT_TLS_OK), 0); /* counted when freed */
	hs_free(&h);
	assert_int_equal(count(e, CONNECT_TLS_OK), 1);
	SSL_CTX_free(c);
}

static void test_denied_at_the_handshake(void **state)
{
	struct env *e = *state;
	SSL_CTX *c = web_client();
	struct hs h;

	e->authz.allow = false;
	h = handshake(e->server, c, NULL);
	assert_false(h.server_ok);
	assert_int_equal(e->authz.calls, 1);
	assert_null(SSL_get0_peer_certificate(h.server) == NULL ? NULL : (void *)1);
	hs_free(&h);
	assert_int_equal(count(e, CONNECT_TLS_DENIED), 1);
	assert_int_equal(count(e, CONNECT_TLS_OK), 0);
	SSL_CTX_free(c);
}

static void test_no_client_certificate(void **state)
{
	struct env *e = *state;
	SSL_CTX *c = client(NULL, NULL, NULL, 0, 0);
	struct hs h = handshake(e->server, c, NULL);

	assert_false(h.server_ok);
	hs_free(&h);
	assert_int_equal(count(e, CONNECT_TLS_NO_CERTIFICATE), 1);
	assert_int_equal(e->authz.calls, 0);
	/* TLS 1.2 says it with another alert: still told apart */
	c = (SSL_CTX_free(c), client(NULL, NULL, NULL, 0, TLS1_2_VERSION));
	h = handshake(e->server, c, NULL);
	assert_false(h.server_ok);
	hs_free(&h);
	assert_int_equal(count(e, CONNECT_TLS_NO_CERTIFICATE), 2);
	SSL_CTX_free(c);
}

/* A certificate of another CA with a SPIFFE URI of the trust domain,
 * twice: refused both times, logged once, the authorizer never asked. */
static void test_other_ca_logged_once(void **state)
{
	struct env *e = *state;
	time_t now = (time_t)(e->now_ms / 1000);
	EVP_PKEY *ca_key = certs_key(), *key = certs_key();
	X509 *ca = certs_make("other CA", ca_key, NULL, NULL, 1, now - 60, now + 3600, 1, NULL);
	X509 *leaf = certs_make("web", key, ca, ca_key, 2, now - 60, now + 3600, 0,
				"URI:spiffe://" TD "/ns/default/dc/dc1/svc/web");
	SSL_CTX *c = client(leaf, key, NULL, 0, 0);
	int fd = logcap_start(MN_LOG_WARN);

	for (int i = 0; i < 2; i++) {
		struct hs h = handshake(e->server, c, NULL);

		assert_false(h.server_ok);
		hs_free(&h);
	}
	assert_int_equal(count(e, CONNECT_TLS_BAD_CERTIFICATE), 2);
	assert_int_equal(e->authz.calls, 0);
	assert_int_equal(logcap_count(fd, "caller refused at the handshake: not signed by a root "
					  "of the trust domain: spiffe://" TD
					  "/ns/default/dc/dc1/svc/web"),
			 1);
	logcap_stop(fd);
	SSL_CTX_free(c);
	X509_free(leaf);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
}

/* The captured leaf of web, checked after its notAfter. */
static void test_expired(void **state)
{
	struct env *e = *state;
	SSL_CTX *c = web_client();
	int fd = logcap_start(MN_LOG_WARN);
	struct hs h;

	e->now_ms = LEAF_BEFORE_MS + 1000;
	h = handshake(e->server, c, NULL);
	assert_false(h.server_ok);
	hs_free(&h);
	assert_int_equal(count(e, CONNECT_TLS_BAD_CERTIFICATE), 1);
	assert_int_equal(logcap_count(fd, "certificate expired"), 1);
	logcap_stop(fd);
	SSL_CTX_free(c);
}

/* ALPN: http/1.1 is chosen when offered; a client offering h2 alone (or
 * another protocol: Consul's connect proxy) gets none, and is served. */
static void test_alpn(void **state)
{
	struct env *e = *state;
	SSL_CTX *web = web_client();
	SSL_CTX *h2 = web_client();
	const unsigned char *sel = NULL;
	unsigned sel_len = 0;
	struct hs h;

	assert_int_equal(SSL_CTX_set_alpn_protos(h2, (const unsigned char *)"\x02h2", 3), 0);
	h = handshake(e->server, h2, NULL);
	assert_true(h.server_ok);
	SSL_get0_alpn_selected(h.server, &sel, &sel_len);
	assert_int_equal(sel_len, 0);
	hs_free(&h);

	assert_int_equal(
		SSL_CTX_set_alpn_protos(web, (const unsigned char *)"\x02h2\x08http/1.1", 12), 0);
	h = handshake(e->server, web, NULL);
	assert_true(h.server_ok);
	SSL_get0_alpn_selected(h.server, &sel, &sel_len);
	assert_int_equal(sel_len, 8);
	assert_memory_equal(sel, "http/1.1", 8);
	hs_free(&h);
	assert_int_equal(count(e, CONNECT_TLS_OK), 2);
	SSL_CTX_free(web);
	SSL_CTX_free(h2);
}

static void test_old_tls_refused(void **state)
{
	struct env *e = *state;
	SSL_CTX *c = web_client();
	struct hs h;

	SSL_CTX_set_security_level(c, 0);
	SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
	assert_int_equal(SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION), 1);
	h = handshake(e->server, c, NULL);
	assert_false(h.server_ok);
	hs_free(&h);
	assert_int_equal(count(e, CONNECT_TLS_PROTOCOL), 1);
	SSL_CTX_free(c);
}

/* No session is resumed, by ticket (TLS 1.3) or by session id (1.2):
 * every connection is checked afresh. */
static void test_no_resumption(void **state)
{
	struct env *e = *state;
	int versions[] = {0, TLS1_2_VERSION};

	for (size_t v = 0; v < 2; v++) {
		SSL_CTX *c = web_client();
		SSL_SESSION *sess;
		struct hs h;
		unsigned before = e->authz.calls;

		if (versions[v])
			assert_int_equal(SSL_CTX_set_max_proto_version(c, versions[v]), 1);
		SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT);
		h = handshake(e->server, c, NULL);
		assert_true(h.server_ok);
		sess = SSL_get1_session(h.client);
		hs_free(&h);
		if (sess != NULL) {
			h = handshake(e->server, c, sess);
			assert_true(h.server_ok);
			assert_int_equal(SSL_session_reused(h.client), 0);
			assert_int_equal(SSL_session_reused(h.server), 0);
			hs_free(&h);
			SSL_SESSION_free(sess);
			assert_int_equal(e->authz.calls, before + 2);
		}
		SSL_CTX_free(c);
	}
}

/* A rotation reaches the next handshake: the served leaf is the new one. */
static void test_rotation_served_at_once(void **state)
{
	struct env *e = *state;
	SSL_CTX *c = web_client();
	struct hs h;

	feed(e->id, true, "rotation_roots_2");
	feed(e->id, false, "rotation_leaf_3");
	e->now_ms = LEAF_AFTER_MS + 7200 * 1000;
	h = handshake(e->server, c, NULL);
	assert_true(h.server_ok); /* web's old leaf still chains (both roots) */
	assert_int_equal(
		ASN1_INTEGER_get(X509_get0_serialNumber(SSL_get0_peer_certificate(h.client))),
		0x0c);
	hs_free(&h);
	SSL_CTX_free(c);
}

/* Plain HTTP sent to the TLS port: refused, counted, nothing checked. */
static void test_plain_http(void **state)
{
	struct env *e = *state;
	static const char req[] = "GET /users HTTP/1.1\r\nHost: x\r\n\r\n";
	SSL *s = SSL_new(e->server);
	BIO *sb, *cb;

	assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
	SSL_set_bio(s, sb, sb);
	SSL_set_accept_state(s);
	assert_int_equal(BIO_write(cb, req, (int)sizeof(req) - 1), (int)sizeof(req) - 1);
	assert_true(SSL_do_handshake(s) <= 0);
	ERR_clear_error();
	SSL_free(s);
	BIO_free(cb);
	assert_int_equal(count(e, CONNECT_TLS_OK), 0);
	assert_int_equal(count(e, CONNECT_TLS_PROTOCOL) + count(e, CONNECT_TLS_INCOMPLETE), 1);
	assert_int_equal(e->authz.calls, 0);
}

/* A handshake abandoned after the ClientHello: counted incomplete. */
static void test_abandoned(void **state)
{
	struct env *e = *state;
	SSL_CTX *c = web_client();
	SSL *cl = SSL_new(c), *s = SSL_new(e->server);
	BIO *sb, *cb;

	assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
	SSL_set_bio(s, sb, sb);
	SSL_set_bio(cl, cb, cb);
	SSL_set_connect_state(cl);
	SSL_set_accept_state(s);
	assert_true(SSL_do_handshake(cl) <= 0); /* ClientHello sent */
	assert_true(SSL_do_handshake(s) <= 0);	/* ServerHello... then waits */
	assert_int_equal(SSL_get_error(s, -1), SSL_ERROR_WANT_READ);
	SSL_free(s);
	SSL_free(cl);
	ERR_clear_error();
	assert_int_equal(count(e, CONNECT_TLS_INCOMPLETE), 1);
	SSL_CTX_free(c);
}

static void test_gate_refuses_unchecked(void **state)
{
	struct env *e = *state;
	EVP_PKEY *key = certs_key();
	X509 *x = certs_make("web", key, NULL, NULL, 3, 0, 2000000000, 0,
			     "URI:spiffe://" TD "/ns/default/dc/dc1/svc/web");

	assert_false(connect_tls_gate(e->tls, NULL));
	assert_false(connect_tls_gate(e->tls, x));
	assert_int_equal(e->authz.calls, 0);
	X509_free(x);
	EVP_PKEY_free(key);
}

/* Before the first snapshot no handshake completes (no certificate to
 * present). */
static void test_no_identity_yet(void **state)
{
	char err[256] = "";
	struct fake_authz f = {.allow = true, .generation = 1};
	struct connect_identity *id = connect_identity_start(
		&(struct connect_identity_opts){.service = "users"}, err, sizeof(err));
	struct connect_tls *t = connect_tls_create(
		&(struct connect_tls_opts){.identity = id,
					   .authz = {fake_check, fake_generation, &f}},
		err, sizeof(err));
	SSL_CTX *server = SSL_CTX_new(TLS_server_method()), *c = web_client();
	struct hs h;

	(void)state;
	assert_non_null(t);
	assert_int_equal(connect_tls_setup(server, t), 0);
	h = handshake(server, c, NULL);
	assert_false(h.server_ok);
	hs_free(&h);
	assert_int_equal(connect_tls_count(t, CONNECT_TLS_OK), 0);
	assert_int_equal(connect_tls_count(t, CONNECT_TLS_PROTOCOL), 1);
	SSL_CTX_free(c);
	SSL_CTX_free(server);
	connect_tls_destroy(t);
	connect_identity_destroy(id);
}

static void test_create_refusals_and_names(void **state)
{
	char err[256] = "";

	(void)state;
	assert_null(connect_tls_create(&(struct connect_tls_opts){0}, err, sizeof(err)));
	assert_non_null(strstr(err, "identity"));
	connect_tls_destroy(NULL);
	assert_string_equal(connect_tls_result_name(CONNECT_TLS_OK), "ok");
	assert_string_equal(connect_tls_result_name(CONNECT_TLS_INCOMPLETE), "incomplete");
	assert_string_equal(connect_tls_result_name(CONNECT_TLS_RESULT_COUNT), "unknown");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_allowed_then_gated_by_generation),
		T(test_denied_at_the_handshake),
		T(test_no_client_certificate),
		T(test_other_ca_logged_once),
		T(test_expired),
		T(test_alpn),
		T(test_old_tls_refused),
		T(test_no_resumption),
		T(test_rotation_served_at_once),
		T(test_plain_http),
		T(test_abandoned),
		T(test_gate_refuses_unchecked),
		cmocka_unit_test(test_no_identity_yet),
		cmocka_unit_test(test_create_refusals_and_names),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
