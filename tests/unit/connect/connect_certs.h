/* Certificates made in the test with OpenSSL, shaped as Consul makes
 * them: a root CA with the trust domain's URI SAN, leaves with one SPIFFE
 * URI SAN, and the captured answers of tests/fixtures/consul/connect/
 * turned into OpenSSL objects. Header-only; include after <cmocka.h>. */
#ifndef MESHNODE_TESTS_CONNECT_CERTS_H
#define MESHNODE_TESTS_CONNECT_CERTS_H

#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "connect/ca.h"

static inline EVP_PKEY *certs_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

static inline void certs_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* A certificate for 'key' named 'cn', signed by issuer/issuer_key (NULL:
 * self-signed), valid [not_before, not_after) (epoch seconds), a CA when
 * 'ca', with the subjectAltName 'san' ("URI:spiffe://...", NULL: none). */
static inline X509 *certs_make(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
			       long serial, time_t not_before, time_t not_after, int ca,
			       const char *san)
{
	X509 *x = X509_new();
	X509_NAME *name;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), not_before));
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), not_after));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	name = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
						    (const unsigned char *)cn, -1, -1, 0),
			 1);
	assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name), 1);
	certs_ext(x, issuer, NID_subject_key_identifier, "hash");
	if (ca) {
		certs_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
		certs_ext(x, issuer, NID_key_usage,
			  "critical,keyCertSign,cRLSign,digitalSignature");
	} else {
		certs_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
		certs_ext(x, issuer, NID_key_usage,
			  "critical,digitalSignature,keyEncipherment,keyAgreement");
		certs_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
	}
	if (san != NULL)
		certs_ext(x, issuer, NID_subject_alt_name, san);
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

/* A store of the given roots (references taken). */
static inline X509_STORE *certs_store(X509 *const *roots, size_t n)
{
	X509_STORE *s = X509_STORE_new();

	assert_non_null(s);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(X509_STORE_add_cert(s, roots[i]), 1);
	return s;
}

/* Every certificate of a PEM text: the first in *first, the rest in a
 * new stack (free both). */
static inline STACK_OF(X509) * certs_pem(const char *pem, X509 **first)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)strlen(pem));
	STACK_OF(X509) *rest = sk_X509_new_null();
	X509 *x;

	assert_non_null(bio);
	assert_non_null(rest);
	*first = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	assert_non_null(*first);
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		assert_true(sk_X509_push(rest, x) > 0);
	ERR_clear_error();
	BIO_free(bio);
	return rest;
}

/* A store of the roots of a captured roots answer; its trust domain in
 * td[SPIFFE_TRUST_DOMAIN_MAX + 1]. */
static inline X509_STORE *certs_fixture_store(const char *body, size_t len, char *td)
{
	struct connect_roots r;
	X509_STORE *s = X509_STORE_new();
	char err[256];

	assert_non_null(s);
	assert_int_equal(connect_roots_parse(body, len, &r, err, sizeof(err)), MN_OK);
	for (size_t i = 0; i < r.n; i++) {
		X509 *x;
		STACK_OF(X509) *rest = certs_pem(r.roots[i].cert_pem, &x);

		assert_int_equal(X509_STORE_add_cert(s, x), 1);
		X509_free(x);
		sk_X509_pop_free(rest, X509_free);
	}
	memcpy(td, r.trust_domain, sizeof(r.trust_domain));
	connect_roots_release(&r);
	return s;
}

#endif
