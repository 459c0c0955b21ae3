#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connect/identity.h"
#include "connect/verify.h"
#include "connect_certs.h"
#include "fixture.h"

#define TD   "0d4a4c35-1f2e-4b5a-9c8d-7e6f5a4b3c2d.consul"
#define SVC  "spiffe://" TD "/ns/default/dc/dc1/svc/"
#define T0   ((time_t)1796688000) /* 2026-12-08T00:00:00Z */
#define HOUR 3600
#define NOW  ((int64_t)(T0 + HOUR) * 1000)

/* A root, an intermediate under it, another CA, and a second root of the
 * same trust domain (a rotation's new root). */
struct pki {
	EVP_PKEY *root_key, *other_key, *new_key, *inter_key, *leaf_key;
	X509 *root, *other, *new_root, *inter;
	X509_STORE *store; /* root and new_root */
};

static struct pki P;

static int pki_setup(void **state)
{
	(void)state;
	P.root_key = certs_key();
	P.other_key = certs_key();
	P.new_key = certs_key();
	P.inter_key = certs_key();
	P.leaf_key = certs_key();
	P.root = certs_make("pri-1.consul.ca", P.root_key, NULL, NULL, 1, T0 - HOUR,
			    T0 + 87600 * HOUR, 1, "URI:spiffe://" TD);
	P.new_root = certs_make("pri-2.consul.ca", P.new_key, NULL, NULL, 2, T0 - HOUR,
				T0 + 87600 * HOUR, 1, "URI:spiffe://" TD);
	P.other = certs_make("pri-x.consul.ca", P.other_key, NULL, NULL, 3, T0 - HOUR,
			     T0 + 87600 * HOUR, 1, "URI:spiffe://" TD);
	P.inter = certs_make("sec-1.consul.ca", P.inter_key, P.root, P.root_key, 4, T0 - HOUR,
			     T0 + 8760 * HOUR, 1, "URI:spiffe://" TD);
	P.store = certs_store((X509 *[]){P.root, P.new_root}, 2);
	return 0;
}

static int pki_teardown(void **state)
{
	(void)state;
	X509_STORE_free(P.store);
	X509_free(P.root);
	X509_free(P.new_root);
	X509_free(P.other);
	X509_free(P.inter);
	EVP_PKEY_free(P.root_key);
	EVP_PKEY_free(P.other_key);
	EVP_PKEY_free(P.new_key);
	EVP_PKEY_free(P.inter_key);
	EVP_PKEY_free(P.leaf_key);
	return 0;
}

/* A 72-hour leaf from T0 signed by 'issuer', with 'san' (NULL: none). */
static X509 *leaf(X509 *issuer, EVP_PKEY *issuer_key, const char *san)
{
	return certs_make("users.svc.default", P.leaf_key, issuer, issuer_key, 42, T0,
			  T0 + 72 * HOUR, 0, san);
}

static enum connect_verify_result check(X509 *x, STACK_OF(X509) * untrusted, int64_t now_ms,
					const char *service, const char *dc, struct spiffe_id *peer)
{
	return connect_verify(
		TD, P.store, x, untrusted,
		&(struct connect_verify_opts){.now_ms = now_ms, .service = service, .dc = dc},
		peer);
}

/* check() at NOW for "users" with 'inter' as the one untrusted
 * certificate beside the leaf. */
static enum connect_verify_result check_via(X509 *x, X509 *inter)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	enum connect_verify_result r;

	assert_non_null(chain);
	assert_true(sk_X509_push(chain, inter) > 0);
	r = check(x, chain, NOW, "users", NULL, NULL);
	sk_X509_free(chain);
	return r;
}

static void test_good(void **state)
{
	X509 *x = leaf(P.root, P.root_key, "URI:" SVC "users");
	struct spiffe_id peer;

	(void)state;
	assert_int_equal(check(x, NULL, NOW, "users", "dc1", &peer), CONNECT_VERIFY_OK);
	assert_int_equal(peer.kind, SPIFFE_SERVICE);
	assert_string_equal(peer.trust_domain, TD);
	assert_string_equal(peer.service, "users");
	assert_string_equal(peer.dc, "dc1");
	/* callers in: any service of the trust domain */
	assert_int_equal(check(x, NULL, NOW, NULL, NULL, &peer), CONNECT_VERIFY_OK);
	assert_int_equal(check(x, NULL, NOW, NULL, NULL, NULL), CONNECT_VERIFY_OK);
	X509_free(x);
}

static void test_other_ca(void **state)
{
	X509 *x = leaf(P.other, P.other_key, "URI:" SVC "users");
	struct spiffe_id peer;

	(void)state;
	assert_int_equal(check(x, NULL, NOW, "users", NULL, &peer), CONNECT_VERIFY_OTHER_CA);
	assert_int_equal(peer.kind, SPIFFE_NONE);
	/* its CA presented along with it changes nothing */
	STACK_OF(X509) *chain = sk_X509_new_null();
	assert_true(sk_X509_push(chain, P.other) > 0);
	assert_int_equal(check(x, chain, NOW, "users", NULL, NULL), CONNECT_VERIFY_OTHER_CA);
	sk_X509_free(chain);
	X509_free(x);
	/* a self-signed leaf */
	x = certs_make("users", P.leaf_key, NULL, NULL, 9, T0, T0 + HOUR, 0, "URI:" SVC "users");
	assert_int_equal(check(x, NULL, NOW, "users", NULL, NULL), CONNECT_VERIFY_OTHER_CA);
	X509_free(x);
}

static void test_times(void **state)
{
	X509 *x = leaf(P.root, P.root_key, "URI:" SVC "users");

	(void)state;
	assert_int_equal(check(x, NULL, (int64_t)(T0 + 72 * HOUR + 1) * 1000, "users", NULL, NULL),
			 CONNECT_VERIFY_EXPIRED);
	assert_int_equal(check(x, NULL, (int64_t)(T0 - 60) * 1000, "users", NULL, NULL),
			 CONNECT_VERIFY_NOT_YET_VALID);
	assert_int_equal(check(x, NULL, (int64_t)(T0 + 72 * HOUR - 1) * 1000, "users", NULL, NULL),
			 CONNECT_VERIFY_OK);
	/* an expired intermediate expires the chain */
	X509 *old_inter = certs_make("sec-0", P.inter_key, P.root, P.root_key, 5, T0 - 10 * HOUR,
				     T0, 1, "URI:spiffe://" TD);
	X509 *y = leaf(old_inter, P.inter_key, "URI:" SVC "users");
	assert_int_equal(check_via(y, old_inter), CONNECT_VERIFY_EXPIRED);
	X509_free(y);
	X509_free(old_inter);
	X509_free(x);
}

static void test_identity_refusals(void **state)
{
	static const struct {
		const char *san;
		enum connect_verify_result want;
	} cases[] = {
		{"URI:spiffe://other.consul/ns/default/dc/dc1/svc/users",
		 CONNECT_VERIFY_OTHER_TRUST_DOMAIN},
		{"DNS:users.service.consul", CONNECT_VERIFY_NO_URI_SAN},
		{"DNS:users.service.consul,IP:127.0.0.1", CONNECT_VERIFY_NO_URI_SAN},
		{NULL, CONNECT_VERIFY_NO_URI_SAN},
		{"URI:" SVC "users,URI:" SVC "web", CONNECT_VERIFY_MANY_URI_SANS},
		{"URI:" SVC "users,URI:" SVC "users", CONNECT_VERIFY_MANY_URI_SANS},
		{"URI:spiffe://" TD "/agent/client/dc/dc1/id/node-1", CONNECT_VERIFY_NOT_SERVICE},
		{"URI:spiffe://" TD, CONNECT_VERIFY_NOT_SERVICE},
		{"URI:https://users.example/ns/default/dc/dc1/svc/users",
		 CONNECT_VERIFY_NOT_SERVICE},
		{"URI:" SVC "users/../web", CONNECT_VERIFY_NOT_SERVICE},
		{"URI:" SVC "web", CONNECT_VERIFY_WRONG_SERVICE},
		{"URI:" SVC "users2", CONNECT_VERIFY_WRONG_SERVICE},
		{"URI:spiffe://" TD "/ns/default/dc/dc2/svc/users", CONNECT_VERIFY_WRONG_DC},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		X509 *x = leaf(P.root, P.root_key, cases[i].san);
		enum connect_verify_result r = check(x, NULL, NOW, "users", "dc1", NULL);

		if (r != cases[i].want)
			fail_msg("case %zu (%s): %s, want %s", i, cases[i].san ? cases[i].san : "-",
				 connect_verify_reason(r), connect_verify_reason(cases[i].want));
		X509_free(x);
	}
	/* the other datacenter passes when none is expected */
	X509 *x = leaf(P.root, P.root_key, "URI:spiffe://" TD "/ns/default/dc/dc2/svc/users");
	struct spiffe_id peer;
	assert_int_equal(check(x, NULL, NOW, "users", NULL, &peer), CONNECT_VERIFY_OK);
	assert_string_equal(peer.dc, "dc2");
	X509_free(x);
	/* Consul writes trust domains in lowercase: an uppercase one is no
	 * URI of its making (spiffe.c refuses it) */
	x = leaf(P.root, P.root_key,
		 "URI:spiffe://0D4A4C35-1f2e-4b5a-9c8d-7e6f5a4b3c2d.CONSUL/ns/default/dc/dc1/svc/"
		 "users");
	assert_int_equal(check(x, NULL, NOW, "users", NULL, NULL), CONNECT_VERIFY_NOT_SERVICE);
	X509_free(x);
}

static void test_rotation_both_roots(void **state)
{
	X509 *old = leaf(P.root, P.root_key, "URI:" SVC "users");
	X509 *fresh = leaf(P.new_root, P.new_key, "URI:" SVC "users");
	X509_STORE *only_new = certs_store((X509 *[]){P.new_root}, 1);

	(void)state;
	/* during a rotation the old root is inactive but still a root */
	assert_int_equal(check(old, NULL, NOW, "users", NULL, NULL), CONNECT_VERIFY_OK);
	assert_int_equal(check(fresh, NULL, NOW, "users", NULL, NULL), CONNECT_VERIFY_OK);
	/* once the old root is gone, its leaves are another CA's */
	assert_int_equal(connect_verify(TD, only_new, old, NULL,
					&(struct connect_verify_opts){.now_ms = NOW}, NULL),
			 CONNECT_VERIFY_OTHER_CA);
	X509_STORE_free(only_new);
	X509_free(old);
	X509_free(fresh);
}

static void test_intermediate(void **state)
{
	X509 *x = leaf(P.inter, P.inter_key, "URI:" SVC "users");
	STACK_OF(X509) *chain = sk_X509_new_null();

	(void)state;
	assert_true(sk_X509_push(chain, P.inter) > 0);
	assert_int_equal(check(x, chain, NOW, "users", NULL, NULL), CONNECT_VERIFY_OK);
	/* without it, nothing leads to a root */
	assert_int_equal(check(x, NULL, NOW, "users", NULL, NULL), CONNECT_VERIFY_OTHER_CA);
	/* an intermediate that is no CA cannot sign */
	X509 *fake = certs_make("sec-1.consul.ca", P.inter_key, P.root, P.root_key, 6, T0 - HOUR,
				T0 + HOUR * 100, 0, "URI:spiffe://" TD);
	assert_int_equal(check_via(x, fake), CONNECT_VERIFY_BAD_CHAIN);
	X509_free(fake);
	/* a chain longer than any Consul presents is refused before it is
	 * built (the same good intermediate five times) */
	for (int i = 0; i < 4; i++)
		assert_true(sk_X509_push(chain, P.inter) > 0);
	assert_int_equal(check(x, chain, NOW, "users", NULL, NULL), CONNECT_VERIFY_BAD_CHAIN);
	sk_X509_free(chain);
	X509_free(x);
}

static void test_no_cert_no_snapshot(void **state)
{
	X509 *x = leaf(P.root, P.root_key, "URI:" SVC "users");
	struct connect_verify_opts o = {.now_ms = NOW};

	(void)state;
	assert_int_equal(check(NULL, NULL, NOW, NULL, NULL, NULL), CONNECT_VERIFY_NO_CERT);
	assert_int_equal(connect_verify_snapshot(NULL, x, NULL, &o, NULL), CONNECT_VERIFY_OTHER_CA);
	assert_int_equal(connect_verify_snapshot(NULL, NULL, NULL, &o, NULL),
			 CONNECT_VERIFY_NO_CERT);
	X509_free(x);
}

static void test_reasons(void **state)
{
	(void)state;
	for (int i = 0; i < CONNECT_VERIFY_COUNT; i++) {
		const char *a = connect_verify_reason((enum connect_verify_result)i);

		assert_true(a[0] != '\0');
		for (int j = 0; j < i; j++)
			assert_string_not_equal(
				a, connect_verify_reason((enum connect_verify_result)j));
	}
	assert_string_equal(connect_verify_reason(CONNECT_VERIFY_EXPIRED), "certificate expired");
	assert_string_equal(connect_verify_reason(CONNECT_VERIFY_COUNT), "unknown");
}

/* The TLS layer's callback path: the handshake's context in, its error
 * set for the alert. */
static void test_store_ctx(void **state)
{
	struct connect_snapshot s = {.store = P.store};
	X509 *web = leaf(P.root, P.root_key, "URI:" SVC "web");
	X509 *other = leaf(P.other, P.other_key, "URI:" SVC "users");
	struct {
		X509 *x;
		const char *service;
		enum connect_verify_result want;
		int x509_err;
	} cases[] = {
		{web, "web", CONNECT_VERIFY_OK, X509_V_OK},
		{web, "users", CONNECT_VERIFY_WRONG_SERVICE, X509_V_ERR_CERT_REJECTED},
		{other, "users", CONNECT_VERIFY_OTHER_CA,
		 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY},
	};

	(void)state;
	snprintf(s.trust_domain, sizeof(s.trust_domain), "%s", TD);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* the handshake's own store holds nothing: the check uses the
		 * snapshot's roots */
		X509_STORE *empty = X509_STORE_new();
		X509_STORE_CTX *ctx = X509_STORE_CTX_new();
		struct spiffe_id peer;

		assert_int_equal(X509_STORE_CTX_init(ctx, empty, cases[i].x, NULL), 1);
		assert_int_equal(connect_verify_store_ctx(
					 &s, ctx,
					 &(struct connect_verify_opts){.now_ms = NOW,
								       .service = cases[i].service},
					 &peer),
				 cases[i].want);
		assert_int_equal(X509_STORE_CTX_get_error(ctx), cases[i].x509_err);
		X509_STORE_CTX_free(ctx);
		X509_STORE_free(empty);
	}
	X509_free(web);
	X509_free(other);
}

/* ---- the captured answers ----------------------------------------------- */

struct captured {
	struct fixture_answer roots, leaf;
	X509_STORE *store;
	char td[SPIFFE_TRUST_DOMAIN_MAX + 1];
	X509 *cert;
	STACK_OF(X509) * chain;
	struct connect_leaf parsed;
};

/* Consul backdates a leaf by a minute, not a root: in the first minute
 * of a new CA its leaf starts before its root does. */
#define IN_AN_HOUR ((int64_t)HOUR * 1000)

static void captured_load(struct captured *c, const char *roots, const char *leaf_name)
{
	char err[256];

	fixture_answer_load(&c->roots, roots);
	fixture_answer_load(&c->leaf, leaf_name);
	c->store = certs_fixture_store(c->roots.body, c->roots.len, c->td);
	assert_int_equal(
		connect_leaf_parse(c->leaf.body, c->leaf.len, &c->parsed, err, sizeof(err)), MN_OK);
	c->chain = certs_pem(c->parsed.cert_pem, &c->cert);
}

static void captured_free(struct captured *c)
{
	X509_free(c->cert);
	sk_X509_pop_free(c->chain, X509_free);
	X509_STORE_free(c->store);
	connect_leaf_release(&c->parsed);
	fixture_answer_free(&c->roots);
	fixture_answer_free(&c->leaf);
}

static enum connect_verify_result check_captured(struct captured *c, bool with_chain,
						 int64_t now_ms, const char *service)
{
	return connect_verify(c->td, c->store, c->cert, with_chain ? c->chain : NULL,
			      &(struct connect_verify_opts){.now_ms = now_ms, .service = service},
			      NULL);
}

static void test_captured(void **state)
{
	struct captured c;
	struct spiffe_id peer;

	(void)state;
	/* the dev agent's leaf chains to its roots, within the leaf's dates */
	captured_load(&c, "consul/connect/roots.http", "consul/connect/leaf.http");
	assert_int_equal(connect_verify(c.td, c.store, c.cert, c.chain,
					&(struct connect_verify_opts){
						.now_ms = c.parsed.valid_after_ms + IN_AN_HOUR,
						.service = "users",
						.dc = "dc1"},
					&peer),
			 CONNECT_VERIFY_OK);
	assert_string_equal(peer.service, "users");
	assert_int_equal(check_captured(&c, true, c.parsed.valid_before_ms + 1000, "users"),
			 CONNECT_VERIFY_EXPIRED);
	assert_int_equal(check_captured(&c, true, c.parsed.valid_after_ms - 1000, "users"),
			 CONNECT_VERIFY_NOT_YET_VALID);
	assert_int_equal(check_captured(&c, true, c.parsed.valid_after_ms + IN_AN_HOUR, "web"),
			 CONNECT_VERIFY_WRONG_SERVICE);
	captured_free(&c);

	/* another agent's CA: not ours */
	captured_load(&c, "consul/connect/rotation_roots_1.http", "consul/connect/leaf.http");
	assert_int_equal(check_captured(&c, true, c.parsed.valid_after_ms + IN_AN_HOUR, "users"),
			 CONNECT_VERIFY_OTHER_CA);
	captured_free(&c);
}

static void test_captured_rotation(void **state)
{
	struct captured c;

	(void)state;
	/* after the rotation both roots are served: the leaf signed by the
	 * old (now inactive) root still passes ... */
	captured_load(&c, "consul/connect/rotation_roots_3.http",
		      "consul/connect/rotation_leaf_1.http");
	assert_int_equal(sk_X509_num(c.chain), 0);
	assert_int_equal(check_captured(&c, true, c.parsed.valid_after_ms + IN_AN_HOUR, "users"),
			 CONNECT_VERIFY_OK);
	captured_free(&c);
	/* ... and so does the re-signed one, with or without the cross-signed
	 * root the agent puts after it */
	captured_load(&c, "consul/connect/rotation_roots_3.http",
		      "consul/connect/rotation_leaf_3.http");
	assert_int_equal(sk_X509_num(c.chain), 1);
	assert_int_equal(check_captured(&c, true, c.parsed.valid_after_ms + IN_AN_HOUR, "users"),
			 CONNECT_VERIFY_OK);
	assert_int_equal(check_captured(&c, false, c.parsed.valid_after_ms + IN_AN_HOUR, "users"),
			 CONNECT_VERIFY_OK);
	captured_free(&c);
	/* a peer that knows only the old root takes the new leaf through the
	 * cross-signed certificate, and not without it */
	captured_load(&c, "consul/connect/rotation_roots_1.http",
		      "consul/connect/rotation_leaf_3.http");
	assert_int_equal(check_captured(&c, true, c.parsed.valid_after_ms + IN_AN_HOUR, "users"),
			 CONNECT_VERIFY_OK);
	assert_int_equal(check_captured(&c, false, c.parsed.valid_after_ms + IN_AN_HOUR, "users"),
			 CONNECT_VERIFY_OTHER_CA);
	captured_free(&c);
	/* web's leaf, same CA: a caller in, not the users we call */
	captured_load(&c, "consul/connect/rotation_roots_1.http",
		      "consul/connect/rotation_leaf_web.http");
	assert_int_equal(check_captured(&c, true, c.parsed.valid_after_ms + IN_AN_HOUR, NULL),
			 CONNECT_VERIFY_OK);
	assert_int_equal(check_captured(&c, true, c.parsed.valid_after_ms + IN_AN_HOUR, "users"),
			 CONNECT_VERIFY_WRONG_SERVICE);
	captured_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_other_ca),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_identity_refusals),
		cmocka_unit_test(test_rotation_both_roots),
		cmocka_unit_test(test_intermediate),
		cmocka_unit_test(test_no_cert_no_snapshot),
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_store_ctx),
		cmocka_unit_test(test_captured),
		cmocka_unit_test(test_captured_rotation),
	};
	return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
