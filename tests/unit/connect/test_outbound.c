/* connect/outbound: the host name that stands for the identity a call
 * expects, the material (PEM text) made once per identity generation from
 * the captured CA rotation, and the handshake's identity check run on a
 * real TLS handshake in memory (a BIO pair: no network). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "connect/outbound.h"
#include "connect_certs.h"
#include "fixture.h"

/* The CA rotation of tests/fixtures/consul/connect/rotation_*.http. */
#define TD "1769f589-5ac8-fef8-5f1b-7131cb8c727d.consul"

static void feed(struct connect_identity *id, bool roots, const char *name)
{
	struct fixture_answer a;
	char path[128], err[512] = "";
	enum mn_err e;

	snprintf(path, sizeof(path), "consul/connect/%s.http", name);
	fixture_answer_load(&a, path);
	e = roots ? connect_identity_feed_roots(id, a.body, a.len, a.index, NULL, err, sizeof(err))
		  : connect_identity_feed_leaf(id, a.body, a.len, a.index, NULL, err, sizeof(err));
	fixture_answer_free(&a);
	if (e != MN_OK)
		fail_msg("%s: %s", name, err);
}

static struct connect_identity *identity(const char *service)
{
	char err[256];
	struct connect_identity *id = connect_identity_start(
		&(struct connect_identity_opts){.service = service}, err, sizeof(err));

	assert_non_null(id);
	return id;
}

static size_t count(const char *s, const char *what)
{
	size_t n = 0;

	for (const char *p = s; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

static void test_host(void **state)
{
	char host[256], err[256], service[129], td[300];
	(void)state;

	assert_int_equal(
		connect_outbound_host(host, sizeof(host), "billing", "dc1", TD, err, sizeof(err)),
		MN_OK);
	assert_string_equal(host, "billing.default.dc1.internal." TD);
	/* no datacenter known (DNS): another name, never the same as one of
	 * a datacenter's */
	assert_int_equal(
		connect_outbound_host(host, sizeof(host), "billing", "", TD, err, sizeof(err)),
		MN_OK);
	assert_string_equal(host, "billing.default.internal." TD);
	assert_int_equal(
		connect_outbound_host(host, sizeof(host), "billing", NULL, TD, err, sizeof(err)),
		MN_OK);
	assert_string_equal(host, "billing.default.internal." TD);
	/* what Consul would not write is refused, as for the SPIFFE ID */
	assert_int_equal(
		connect_outbound_host(host, sizeof(host), "bil/ling", "dc1", TD, err, sizeof(err)),
		MN_INVALID);
	assert_int_equal(connect_outbound_host(host, sizeof(host), "billing", "dc1", "UPPER.consul",
					       err, sizeof(err)),
			 MN_INVALID);
	assert_int_equal(
		connect_outbound_host(host, sizeof(host), "billing", "d/c", TD, err, sizeof(err)),
		MN_INVALID);
	/* longer than a host name, or than the buffer */
	memset(service, 'a', 128);
	service[128] = '\0';
	/* a trust domain of two 60-byte labels: valid, and with the
	 * service's 128 bytes past 253 */
	memset(td, 'b', 121);
	td[60] = '.';
	snprintf(td + 121, sizeof(td) - 121, ".consul");
	assert_int_equal(
		connect_outbound_host(host, sizeof(host), service, "dc1", td, err, sizeof(err)),
		MN_TOO_LARGE);
	assert_int_equal(connect_outbound_host(host, 10, "billing", "dc1", TD, err, sizeof(err)),
			 MN_TOO_LARGE);
}

static void test_material_follows_the_generation(void **state)
{
	struct connect_identity *id = identity("users");
	struct connect_material *m1, *again, *m2, *m3;
	char err[256];
	enum mn_err e;
	EVP_PKEY *key;
	X509 *cert;
	BIO *b;
	(void)state;

	/* before the identity has a snapshot */
	{
		struct connect_outbound *co = connect_outbound_create(id);

		assert_non_null(co);
		assert_null(connect_outbound_material(co, &e, err, sizeof(err)));
		assert_int_equal(e, MN_UNAVAILABLE);
		connect_outbound_destroy(co);
		connect_outbound_destroy(NULL);
	}
	feed(id, true, "rotation_roots_1");
	feed(id, false, "rotation_leaf_1");
	{
		struct connect_outbound *co = connect_outbound_create(id);

		m1 = connect_outbound_material(co, &e, err, sizeof(err));
		assert_non_null(m1);
		assert_int_equal(m1->generation, 1);
		assert_int_equal(count(m1->cert_pem, "BEGIN CERTIFICATE"), 1);
		assert_int_equal(count(m1->ca_pem, "BEGIN CERTIFICATE"), 1);
		assert_int_equal(count(m1->key_pem, "BEGIN PRIVATE KEY"), 1);
		assert_int_equal(strlen(m1->key_pem), m1->key_pem_len);
		/* the key is the leaf's */
		b = BIO_new_mem_buf(m1->cert_pem, (int)m1->cert_pem_len);
		cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
		BIO_free(b);
		b = BIO_new_mem_buf(m1->key_pem, (int)m1->key_pem_len);
		key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
		BIO_free(b);
		assert_non_null(cert);
		assert_non_null(key);
		assert_int_equal(X509_check_private_key(cert, key), 1);
		X509_free(cert);
		EVP_PKEY_free(key);

		/* the same generation: the same material */
		again = connect_outbound_material(co, &e, err, sizeof(err));
		assert_ptr_equal(again, m1);
		connect_material_release(again);

		/* new roots: new material (the roots' text changes what a
		 * connection matches); the first stays whole while held */
		feed(id, true, "rotation_roots_3");
		m2 = connect_outbound_material(co, &e, err, sizeof(err));
		assert_non_null(m2);
		assert_ptr_not_equal(m2, m1);
		assert_int_equal(m2->generation, 2);
		assert_int_equal(count(m2->ca_pem, "BEGIN CERTIFICATE"), 2);
		assert_string_equal(m2->cert_pem, m1->cert_pem);
		assert_int_equal(count(m1->ca_pem, "BEGIN CERTIFICATE"), 1);

		/* the re-signed leaf, with the cross-signed root after it */
		feed(id, false, "rotation_leaf_3");
		m3 = connect_outbound_material(co, &e, err, sizeof(err));
		assert_non_null(m3);
		assert_int_equal(m3->generation, 3);
		assert_int_equal(count(m3->cert_pem, "BEGIN CERTIFICATE"), 2);
		assert_string_not_equal(m3->cert_pem, m2->cert_pem);
		assert_string_not_equal(m3->key_pem, m2->key_pem);
		connect_outbound_destroy(co);
	}
	/* material outlives the handle and the identity */
	connect_identity_destroy(id);
	assert_int_equal(m1->generation, 1);
	connect_material_release(m1);
	connect_material_release(m2);
	connect_material_release(m3);
	connect_material_release(NULL);
}

/* ---- the handshake's check ---------------------------------------------- */

struct pki {
	EVP_PKEY *root_key, *other_key, *leaf_key;
	X509 *root, *other, *billing, *users, *foreign;
	X509_STORE *store;
};

static struct pki P;

static int pki_setup(void **state)
{
	time_t now = time(NULL);
	(void)state;

	P.root_key = certs_key();
	P.other_key = certs_key();
	P.leaf_key = certs_key();
	P.root = certs_make("pri-1.consul.ca", P.root_key, NULL, NULL, 1, now - 3600, now + 3600, 1,
			    "URI:spiffe://" TD);
	P.other = certs_make("pri-x.consul.ca", P.other_key, NULL, NULL, 2, now - 3600, now + 3600,
			     1, "URI:spiffe://other.consul");
	P.billing = certs_make("billing", P.leaf_key, P.root, P.root_key, 10, now - 60, now + 3600,
			       0, "URI:spiffe://" TD "/ns/default/dc/dc1/svc/billing");
	P.users = certs_make("users", P.leaf_key, P.root, P.root_key, 11, now - 60, now + 3600, 0,
			     "URI:spiffe://" TD "/ns/default/dc/dc1/svc/users");
	/* "billing" by name, from another CA */
	P.foreign = certs_make("billing", P.leaf_key, P.other, P.other_key, 12, now - 60,
			       now + 3600, 0, "URI:spiffe://" TD "/ns/default/dc/dc1/svc/billing");
	P.store = certs_store((X509 *[]){P.root}, 1);
	return 0;
}

static int pki_teardown(void **state)
{
	(void)state;
	X509_STORE_free(P.store);
	X509_free(P.root);
	X509_free(P.other);
	X509_free(P.billing);
	X509_free(P.users);
	X509_free(P.foreign);
	EVP_PKEY_free(P.root_key);
	EVP_PKEY_free(P.other_key);
	EVP_PKEY_free(P.leaf_key);
	return 0;
}

/* A TLS handshake in memory between a server presenting 'cert' and a
 * client whose SSL_CTX connect_outbound_ssl_ctx() set up for 'peer'.
 * true when it completed. */
static bool handshake(X509 *cert, struct connect_outbound_peer *peer)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = SSL_CTX_new(TLS_client_method());
	SSL *server, *client;
	BIO *sb, *cb;
	bool done = false, cdone = false, sdone = false;

	assert_non_null(sctx);
	assert_non_null(cctx);
	assert_int_equal(SSL_CTX_use_certificate(sctx, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(sctx, P.leaf_key), 1);
	assert_int_equal(connect_outbound_ssl_ctx(cctx, peer), 0);
	server = SSL_new(sctx);
	client = SSL_new(cctx);
	assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
	SSL_set_bio(server, sb, sb);
	SSL_set_bio(client, cb, cb);
	SSL_set_accept_state(server);
	SSL_set_connect_state(client);
	for (int i = 0; i < 20 && !(cdone && sdone); i++) {
		int rc = SSL_do_handshake(client), rs;

		if (rc == 1)
			cdone = true;
		else if (SSL_get_error(client, rc) != SSL_ERROR_WANT_READ)
			break;
		rs = SSL_do_handshake(server);
		if (rs == 1)
			sdone = true;
		else if (SSL_get_error(server, rs) != SSL_ERROR_WANT_READ)
			break;
	}
	done = cdone;
	ERR_clear_error();
	SSL_free(client);
	SSL_free(server);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	return done;
}

static void test_handshake_checks_the_identity(void **state)
{
	struct connect_snapshot snap = {.store = P.store};
	struct connect_material m = {.snap = &snap};
	struct connect_outbound_peer peer;
	(void)state;

	snprintf(snap.trust_domain, sizeof(snap.trust_domain), "%s", TD);

	/* the service expected, in its datacenter */
	peer = (struct connect_outbound_peer){.m = &m, .service = "billing", .dc = "dc1"};
	assert_true(handshake(P.billing, &peer));
	assert_true(peer.checked);
	assert_int_equal(peer.result, CONNECT_VERIFY_OK);
	assert_string_equal(peer.presented.service, "billing");

	/* any datacenter */
	peer = (struct connect_outbound_peer){.m = &m, .service = "billing", .dc = ""};
	assert_true(handshake(P.billing, &peer));

	/* another service of the trust domain answering */
	peer = (struct connect_outbound_peer){.m = &m, .service = "billing", .dc = "dc1"};
	assert_false(handshake(P.users, &peer));
	assert_true(peer.checked);
	assert_int_equal(peer.result, CONNECT_VERIFY_WRONG_SERVICE);
	assert_string_equal(peer.presented.service, "users");

	/* the right name from another CA */
	peer = (struct connect_outbound_peer){.m = &m, .service = "billing", .dc = "dc1"};
	assert_false(handshake(P.foreign, &peer));
	assert_int_equal(peer.result, CONNECT_VERIFY_OTHER_CA);

	/* another datacenter */
	peer = (struct connect_outbound_peer){.m = &m, .service = "billing", .dc = "dc2"};
	assert_false(handshake(P.billing, &peer));
	assert_int_equal(peer.result, CONNECT_VERIFY_WRONG_DC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host),
		cmocka_unit_test(test_material_follows_the_generation),
		cmocka_unit_test(test_handshake_checks_the_identity),
	};

	return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
