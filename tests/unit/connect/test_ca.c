#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connect/ca.h"
#include "fixture.h"
#include "nested.h"

/* What the dev agent of tests/fixtures/consul/connect/ answered. */
#define TD     "d4448c34-0592-a3fe-bbf3-b74b614fd278.consul"
#define ROOT_A "50:ef:cf:e1:ef:58:f6:60:60:e4:f0:83:70:d2:69:f1:2f:54:66:fb"
#define ROOT_B "23:8d:42:ce:03:6f:e7:a4:e5:a1:da:0c:b0:24:ea:f8:3d:18:1b:bf"
#define SKID_A                                                                                     \
	"ba:0d:78:1e:47:8b:3d:9b:1c:15:b0:d6:0e:08:e7:18:8e:c6:22:53:60:83:61:0f:2d:6f:5d:d3:fd:"  \
	"63:eb:b5"
#define SKID_B                                                                                     \
	"6e:83:bd:47:af:6e:55:ff:34:3f:89:4e:66:88:c5:13:b3:bb:c3:e6:b1:f6:b1:9f:ba:a4:d5:f2:09:"  \
	"33:95:a9"
#define NOT_AFTER_MS 2112307700000LL /* 2036-12-08T00:08:20Z */

#define PEM	 "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"
#define ROOT(id) "{\"ID\":\"" id "\",\"Name\":\"n\",\"RootCert\":\"" PEM "\",\"Active\":true}"
#define ROOTS(active, roots)                                                                       \
	"{\"TrustDomain\":\"a.consul\",\"ActiveRootID\":\"" active "\",\"Roots\":[" roots "]}"

static void expect_roots_refused(const char *json, size_t len, enum mn_err want,
				 const char *want_err)
{
	struct connect_roots r;
	char err[256] = "";
	enum mn_err e = connect_roots_parse(json, len, &r, err, sizeof(err));

	if (e != want || strcmp(err, want_err) != 0)
		fail_msg("%.200s: got %d \"%s\", expected %d \"%s\"", json, e, err, want, want_err);
	assert_null(r.roots);
	assert_null(r.active_root_id);
	assert_int_equal(r.n, 0);
	assert_string_equal(r.trust_domain, "");
}

static void test_roots_real_answer(void **state)
{
	struct fixture_answer a;
	struct connect_roots r;
	char err[256] = "";

	(void)state;
	fixture_answer_load(&a, "consul/connect/roots.http");
	assert_int_equal(a.index, 9);
	assert_int_equal(connect_roots_parse(a.body, a.len, &r, err, sizeof(err)), MN_OK);
	assert_string_equal(err, "");
	assert_string_equal(r.trust_domain, TD);
	assert_string_equal(r.active_root_id, ROOT_A);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.roots[0].id, ROOT_A);
	assert_string_equal(r.roots[0].name, "Consul CA Root Cert");
	assert_string_equal(r.roots[0].signing_key_id, SKID_A);
	assert_int_equal(r.roots[0].not_after_ms, NOT_AFTER_MS);
	assert_true(r.roots[0].active);
	assert_int_equal(strlen(r.roots[0].cert_pem), 774);
	assert_memory_equal(r.roots[0].cert_pem, "-----BEGIN CERTIFICATE-----\nMIIC", 32);
	assert_string_equal(r.roots[0].cert_pem + 774 - 27, "\n-----END CERTIFICATE-----\n");
	assert_ptr_equal(connect_roots_find(&r, ROOT_A), &r.roots[0]);
	assert_null(connect_roots_find(&r, ROOT_B));
	assert_null(connect_roots_find(&r, NULL));
	connect_roots_release(&r);
	assert_null(r.roots);
	assert_int_equal(r.n, 0);
	connect_roots_release(&r);
	connect_roots_release(NULL);
	fixture_answer_free(&a);
}

static void test_roots_during_rotation(void **state)
{
	struct fixture_answer a;
	struct connect_roots r;

	(void)state;
	fixture_answer_load(&a, "consul/connect/roots_rotated.http");
	assert_int_equal(a.index, 22);
	assert_int_equal(connect_roots_parse(a.body, a.len, &r, NULL, 0), MN_OK);
	assert_string_equal(r.trust_domain, TD);
	assert_string_equal(r.active_root_id, ROOT_B);
	assert_int_equal(r.n, 2);
	/* the new root first, active; the old one kept, inactive */
	assert_string_equal(r.roots[0].id, ROOT_B);
	assert_string_equal(r.roots[0].signing_key_id, SKID_B);
	assert_true(r.roots[0].active);
	assert_int_equal(r.roots[0].not_after_ms, NOT_AFTER_MS);
	assert_string_equal(r.roots[1].id, ROOT_A);
	assert_string_equal(r.roots[1].signing_key_id, SKID_A);
	assert_false(r.roots[1].active);
	assert_string_not_equal(r.roots[0].cert_pem, r.roots[1].cert_pem);
	assert_ptr_equal(connect_roots_find(&r, ROOT_A), &r.roots[1]);
	connect_roots_release(&r);
	fixture_answer_free(&a);
}

static void test_roots_optional_fields(void **state)
{
	static const char json[] = ROOTS("x", ROOT("x"));
	struct connect_roots r;

	(void)state;
	assert_int_equal(connect_roots_parse(json, strlen(json), &r, NULL, 0), MN_OK);
	assert_string_equal(r.trust_domain, "a.consul");
	assert_null(r.roots[0].signing_key_id);
	assert_int_equal(r.roots[0].not_after_ms, 0);
	assert_string_equal(r.roots[0].cert_pem,
			    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
	connect_roots_release(&r);
}

static void test_roots_refusals(void **state)
{
	static const struct {
		const char *json, *err;
	} cases[] = {
		{"", "cannot parse roots answer: invalid JSON at line 1 column 0"},
		{"{\"TrustDomain\":",
		 "cannot parse roots answer: invalid JSON at line 1 column 15"},
		{"[]", "roots answer is not an object"},
		{"{\"TrustDomain\":\"a.consul\",\"ActiveRootID\":\"x\",\"ActiveRootID\":\"y\","
		 "\"Roots\":[" ROOT("x") "]}",
		 "cannot parse roots answer: a member named twice at line 1 column 59"},
		{"null", "cannot parse roots answer: invalid JSON at line 1 column 4"},
		{"{\"ActiveRootID\":\"x\",\"Roots\":[" ROOT("x") "]}",
		 "roots: 'TrustDomain' is missing"},
		{"{\"TrustDomain\":5,\"ActiveRootID\":\"x\",\"Roots\":[" ROOT("x") "]}",
		 "roots: 'TrustDomain' is not a string"},
		{"{\"TrustDomain\":\"\",\"ActiveRootID\":\"x\",\"Roots\":[" ROOT("x") "]}",
		 "roots: 'TrustDomain' is empty"},
		{"{\"TrustDomain\":\"A.consul\",\"ActiveRootID\":\"x\",\"Roots\":[" ROOT("x") "]}",
		 "roots: 'TrustDomain' 'A.consul' is not lowercase"},
		{"{\"TrustDomain\":\"a/b\",\"ActiveRootID\":\"x\",\"Roots\":[" ROOT("x") "]}",
		 "roots: 'TrustDomain' 'a/b' is not a host name"},
		{"{\"TrustDomain\":\"a.consul\",\"Roots\":[" ROOT("x") "]}",
		 "roots: 'ActiveRootID' is missing"},
		{"{\"TrustDomain\":\"a.consul\",\"ActiveRootID\":\"\",\"Roots\":[" ROOT("x") "]}",
		 "roots: 'ActiveRootID' is empty"},
		{ROOTS("y", ROOT("x")), "roots: 'ActiveRootID' 'y' is none of the roots"},
		{ROOTS("X", ROOT("x")), "roots: 'ActiveRootID' 'X' is none of the roots"},
		{"{\"TrustDomain\":\"a.consul\",\"ActiveRootID\":\"x\"}",
		 "roots: 'Roots' is missing"},
		{"{\"TrustDomain\":\"a.consul\",\"ActiveRootID\":\"x\",\"Roots\":null}",
		 "roots: 'Roots' is missing"},
		{"{\"TrustDomain\":\"a.consul\",\"ActiveRootID\":\"x\",\"Roots\":{}}",
		 "roots: 'Roots' is not an array"},
		{ROOTS("x", ""), "roots: 'Roots' has 0 roots (1 to 16 taken)"},
		{ROOTS("x", "1"), "root 1 is not an object"},
		{ROOTS("x", ROOT("x") ",null"), "root 2 is not an object"},
		{ROOTS("x", "{\"Name\":\"n\",\"RootCert\":\"" PEM "\",\"Active\":true}"),
		 "root 1: 'ID' is missing"},
		{ROOTS("x", "{\"ID\":7,\"Name\":\"n\",\"RootCert\":\"" PEM "\",\"Active\":true}"),
		 "root 1: 'ID' is not a string"},
		{ROOTS("x", "{\"ID\":\"x\",\"RootCert\":\"" PEM "\",\"Active\":true}"),
		 "root 1: 'Name' is missing"},
		{ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"Active\":true}"),
		 "root 1: 'RootCert' is missing"},
		{ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":\"hello\",\"Active\":true}"),
		 "root 1: 'RootCert' is not a PEM certificate"},
		{ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":\"-----BEGIN "
			    "CERTIFICATE-----\\nMIIB\",\"Active\":true}"),
		 "root 1: 'RootCert' is not a PEM certificate"},
		{ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":\"-----BEGIN EC PRIVATE "
			    "KEY-----\\nMIIB\\n-----END EC PRIVATE KEY-----\\n\",\"Active\":true}"),
		 "root 1: 'RootCert' is not a PEM certificate"},
		{ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":[],\"Active\":true}"),
		 "root 1: 'RootCert' is not a string"},
		{ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":\"" PEM "\"}"),
		 "root 1: 'Active' is missing"},
		{ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":\"" PEM
			    "\",\"Active\":\"true\"}"),
		 "root 1: 'Active' is not a boolean"},
		{ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":\"" PEM
			    "\",\"Active\":true,\"SigningKeyID\":1}"),
		 "root 1: 'SigningKeyID' is not a string"},
		{ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":\"" PEM
			    "\",\"Active\":true,\"NotAfter\":\"2036-13-08T00:08:20Z\"}"),
		 "root 1: 'NotAfter' is not an RFC 3339 time: '2036-13-08T00:08:20Z'"},
		{ROOTS("x", ROOT("x") "," ROOT("x")), "roots: root ID 'x' appears twice"},
		{ROOTS("x",
		       "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":\"-----BEGIN "
		       "CERTIFICATE-----\\u0000\\n-----END CERTIFICATE-----\",\"Active\":true}"),
		 "cannot parse roots answer: invalid JSON at line 1 column 148"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_roots_refused(cases[i].json, strlen(cases[i].json), MN_INVALID,
				     cases[i].err);
}

/* ROOTS("r0") with n roots r0, r1, ... */
static char *many_roots(size_t n)
{
	size_t cap = 128 + n * 128, pos;
	char *s = malloc(cap);

	assert_non_null(s);
	pos = (size_t)snprintf(s, cap,
			       "{\"TrustDomain\":\"a.consul\",\"ActiveRootID\":\"r0\",\"Roots\":[");
	for (size_t i = 0; i < n; i++)
		pos += (size_t)snprintf(s + pos, cap - pos,
					"%s{\"ID\":\"r%zu\",\"Name\":\"n\",\"RootCert\":\"" PEM
					"\",\"Active\":%s}",
					i ? "," : "", i, i ? "false" : "true");
	snprintf(s + pos, cap - pos, "]}");
	return s;
}

static void test_roots_bounds(void **state)
{
	struct connect_roots r;
	char *json, *big, id[300];
	size_t len;

	(void)state;
	json = many_roots(CONNECT_ROOTS_MAX);
	assert_int_equal(connect_roots_parse(json, strlen(json), &r, NULL, 0), MN_OK);
	assert_int_equal(r.n, CONNECT_ROOTS_MAX);
	assert_string_equal(r.roots[15].id, "r15");
	connect_roots_release(&r);
	free(json);
	json = many_roots(CONNECT_ROOTS_MAX + 1);
	expect_roots_refused(json, strlen(json), MN_INVALID,
			     "roots: 'Roots' has 17 roots (1 to 16 taken)");
	free(json);
	json = many_roots(5000);
	expect_roots_refused(json, strlen(json), MN_INVALID,
			     "roots: 'Roots' has 5000 roots (1 to 16 taken)");
	free(json);

	/* an ID of 256 bytes is taken, of 257 refused */
	memset(id, 'i', 257);
	id[256] = '\0';
	len = 1024;
	json = malloc(len);
	assert_non_null(json);
	snprintf(json, len, ROOTS("%s", ROOT("%s")), id, id);
	assert_int_equal(connect_roots_parse(json, strlen(json), &r, NULL, 0), MN_OK);
	assert_string_equal(r.active_root_id, id);
	connect_roots_release(&r);
	id[256] = 'i';
	id[257] = '\0';
	snprintf(json, len, ROOTS("x", ROOT("x") "," ROOT("%s")), id);
	expect_roots_refused(json, strlen(json), MN_INVALID,
			     "root 2: 'ID' is longer than 256 bytes");
	snprintf(json, len, ROOTS("%s", ROOT("x")), id);
	expect_roots_refused(json, strlen(json), MN_INVALID,
			     "roots: 'ActiveRootID' is longer than 256 bytes");
	free(json);

	/* a PEM of 32 KiB + 1 */
	len = CONNECT_PEM_MAX + 512;
	big = malloc(CONNECT_PEM_MAX + 2);
	json = malloc(len);
	assert_non_null(big);
	assert_non_null(json);
	memset(big, 'A', CONNECT_PEM_MAX + 1);
	big[CONNECT_PEM_MAX + 1] = '\0';
	memcpy(big, "-----BEGIN CERTIFICATE-----", 27);
	memcpy(big + CONNECT_PEM_MAX + 1 - 25, "-----END CERTIFICATE-----", 25);
	snprintf(json, len,
		 ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":\"%s\",\"Active\":true}"),
		 big);
	expect_roots_refused(json, strlen(json), MN_INVALID,
			     "root 1: 'RootCert' is longer than 32768 bytes");
	/* one byte less is taken */
	memmove(big + 27, big + 28, CONNECT_PEM_MAX + 1 - 28 + 1);
	snprintf(json, len,
		 ROOTS("x", "{\"ID\":\"x\",\"Name\":\"n\",\"RootCert\":\"%s\",\"Active\":true}"),
		 big);
	assert_int_equal(connect_roots_parse(json, strlen(json), &r, NULL, 0), MN_OK);
	assert_int_equal(strlen(r.roots[0].cert_pem), CONNECT_PEM_MAX);
	connect_roots_release(&r);
	free(json);
	free(big);

	/* the whole answer: 1 MiB + 1 refused before parsing */
	json = malloc(CONNECT_ANSWER_MAX + 1);
	assert_non_null(json);
	memset(json, ' ', CONNECT_ANSWER_MAX + 1);
	expect_roots_refused(json, CONNECT_ANSWER_MAX + 1, MN_TOO_LARGE,
			     "roots answer larger than 1048576 bytes");
	free(json);

	/* nesting */
	json = nested_json("{\"Roots\":", 200, "}", &len);
	expect_roots_refused(json, len, MN_INVALID,
			     "cannot parse roots answer: JSON nested deeper than 64 levels");
	free(json);
}

static void test_roots_keep_to_len(void **state)
{
	static const char json[] = ROOTS("x", ROOT("x")) "garbage";
	struct connect_roots r;

	(void)state;
	assert_int_equal(connect_roots_parse(json, strlen(json) - 7, &r, NULL, 0), MN_OK);
	connect_roots_release(&r);
	expect_roots_refused(json, strlen(json), MN_INVALID,
			     "cannot parse roots answer: invalid JSON at line 1 column 174");
}

/* --- leaf --- */

static void test_leaf_real_answer(void **state)
{
	struct fixture_answer a;
	struct connect_leaf l;
	char err[256] = "";

	(void)state;
	fixture_answer_load(&a, "consul/connect/leaf.http");
	assert_int_equal(a.index, 15);
	assert_int_equal(connect_leaf_parse(a.body, a.len, &l, err, sizeof(err)), MN_OK);
	assert_string_equal(err, "");
	assert_string_equal(l.serial, "08");
	assert_string_equal(l.service, "users");
	assert_string_equal(l.service_uri, "spiffe://" TD "/ns/default/dc/dc1/svc/users");
	assert_int_equal(l.id.kind, SPIFFE_SERVICE);
	assert_string_equal(l.id.trust_domain, TD);
	assert_string_equal(l.id.ns, "default");
	assert_string_equal(l.id.dc, "dc1");
	assert_string_equal(l.id.service, "users");
	assert_int_equal(l.valid_after_ms, 1796688440000LL);  /* 2026-12-08T00:07:20Z */
	assert_int_equal(l.valid_before_ms, 1796947640000LL); /* 2026-12-11T00:07:20Z */
	assert_int_equal(l.valid_before_ms - l.valid_after_ms, 72LL * 3600 * 1000);
	assert_int_equal(l.modify_index, 15);
	assert_int_equal(strlen(l.cert_pem), 843);
	assert_memory_equal(l.cert_pem, "-----BEGIN CERTIFICATE-----\n", 28);
	assert_int_equal(l.key_len, 227);
	assert_int_equal(strlen(l.key_pem), 227);
	assert_memory_equal(l.key_pem, "-----BEGIN EC PRIVATE KEY-----\n", 31);
	assert_string_equal(l.key_pem + 227 - 30, "\n-----END EC PRIVATE KEY-----\n");
	connect_leaf_release(&l);
	assert_null(l.key_pem);
	assert_int_equal(l.key_len, 0);
	assert_null(l.cert_pem);
	connect_leaf_release(&l);
	connect_leaf_release(NULL);
	fixture_answer_free(&a);
}

/* The captured leaf with member 'key' set to 'value' (stolen; NULL takes
 * the member out): a new string. */
static char *leaf_with(const char *key, json_t *value)
{
	struct fixture_answer a;
	json_t *doc;
	char *out;

	fixture_answer_load(&a, "consul/connect/leaf.http");
	doc = json_loadb(a.body, a.len, 0, NULL);
	assert_non_null(doc);
	if (value)
		assert_int_equal(json_object_set_new(doc, key, value), 0);
	else
		assert_int_equal(json_object_del(doc, key), 0);
	out = json_dumps(doc, JSON_COMPACT);
	assert_non_null(out);
	json_decref(doc);
	fixture_answer_free(&a);
	return out;
}

static void expect_leaf_refused(const char *json, size_t len, enum mn_err want,
				const char *want_err)
{
	struct connect_leaf l;
	char err[256] = "";
	enum mn_err e = connect_leaf_parse(json, len, &l, err, sizeof(err));

	if (e != want || strcmp(err, want_err) != 0)
		fail_msg("%.120s: got %d \"%s\", expected %d \"%s\"", json, e, err, want, want_err);
	assert_null(l.key_pem);
	assert_null(l.cert_pem);
	assert_null(l.serial);
	assert_int_equal(l.id.kind, SPIFFE_NONE);
	/* nothing of the key in the message */
	assert_null(strstr(err, "MHcCAQEE"));
	assert_null(strstr(err, "SECRET"));
}

static void test_leaf_refusals(void **state)
{
	static const char key_pem[] =
		"-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n";
	static const char cert_pem[] =
		"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
	const struct {
		const char *key;
		json_t *value;
		const char *err;
	} cases[] = {
		{"SerialNumber", NULL, "leaf: 'SerialNumber' is missing"},
		{"SerialNumber", json_integer(8), "leaf: 'SerialNumber' is not a string"},
		{"SerialNumber", json_string(""), "leaf: 'SerialNumber' is empty"},
		{"CertPEM", NULL, "leaf: 'CertPEM' is missing"},
		{"CertPEM", json_null(), "leaf: 'CertPEM' is missing"},
		{"CertPEM", json_string("x"), "leaf: 'CertPEM' is not a PEM certificate"},
		{"CertPEM", json_string(key_pem), "leaf: 'CertPEM' is not a PEM certificate"},
		{"PrivateKeyPEM", NULL, "leaf: 'PrivateKeyPEM' is missing"},
		{"PrivateKeyPEM", json_true(), "leaf: 'PrivateKeyPEM' is not a string"},
		{"PrivateKeyPEM", json_string(cert_pem),
		 "leaf: 'PrivateKeyPEM' is not a PEM private key"},
		{"PrivateKeyPEM", json_string("SECRET-----BEGIN EC PRIVATE KEY-----\n"),
		 "leaf: 'PrivateKeyPEM' is not a PEM private key"},
		{"PrivateKeyPEM", json_string("-----BEGIN EC PRIVATE KEY-----\nSECRET"),
		 "leaf: 'PrivateKeyPEM' is not a PEM private key"},
		{"Service", NULL, "leaf: 'Service' is missing"},
		{"Service", json_string("web"),
		 "leaf: 'ServiceURI' names service 'users', not 'web'"},
		{"ServiceURI", NULL, "leaf: 'ServiceURI' is missing"},
		{"ServiceURI", json_string("spiffe://" TD "/ns/default/dc/dc1/svc/web"),
		 "leaf: 'ServiceURI' names service 'web', not 'users'"},
		{"ServiceURI", json_string("spiffe://" TD "/agent/client/dc/dc1/id/users"),
		 "leaf: 'ServiceURI' not a service identity: an agent's URI"},
		{"ServiceURI", json_string("spiffe://" TD "/ns/default/dc/dc1/svc/%75sers"),
		 "leaf: 'ServiceURI' percent-escapes are not accepted"},
		{"ServiceURI", json_string("spiffe://" TD "/ns/default/dc/dc1/svc/../svc/users"),
		 "leaf: 'ServiceURI' segment 6 ('..') is a dot segment"},
		{"ServiceURI", json_string("spiffe://" TD "/ns/default/dc/dc1"),
		 "leaf: 'ServiceURI' not a service identity: no '/svc/' segment"},
		{"ValidAfter", NULL, "leaf: 'ValidAfter' is missing"},
		{"ValidAfter", json_string("yesterday"),
		 "leaf: 'ValidAfter' is not an RFC 3339 time: 'yesterday'"},
		{"ValidAfter", json_integer(1796688440), "leaf: 'ValidAfter' is not a string"},
		{"ValidBefore", json_string("2026-12-11 00:07:20Z"),
		 "leaf: 'ValidBefore' is not an RFC 3339 time: '2026-12-11 00:07:20Z'"},
		{"ValidBefore", json_string("2026-12-08T00:07:20Z"),
		 "leaf: 'ValidBefore' is not after 'ValidAfter'"},
		{"ValidBefore", json_string("2026-12-08T01:07:19+01:00"),
		 "leaf: 'ValidBefore' is not after 'ValidAfter'"},
		{"ValidBefore", json_string("2025-12-11T00:07:20Z"),
		 "leaf: 'ValidBefore' is not after 'ValidAfter'"},
		{"ModifyIndex", NULL, "leaf: 'ModifyIndex' is missing"},
		{"ModifyIndex", json_string("15"),
		 "leaf: 'ModifyIndex' is not a non-negative integer"},
		{"ModifyIndex", json_integer(-1),
		 "leaf: 'ModifyIndex' is not a non-negative integer"},
		{"ModifyIndex", json_real(15.0),
		 "leaf: 'ModifyIndex' is not a non-negative integer"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *json = leaf_with(cases[i].key, cases[i].value);

		expect_leaf_refused(json, strlen(json), MN_INVALID, cases[i].err);
		free(json);
	}
}

static void test_leaf_bad_text(void **state)
{
	/* a syntax error just after the key: jansson's message would quote
	 * the bytes it stopped at; ours says where only */
	static const char broken[] = "{\"PrivateKeyPEM\": \"-----BEGIN EC PRIVATE KEY-----\\nSECRET"
				     "\\n-----END EC PRIVATE KEY-----\\n\" SECRET}";
	static const char bad_escape[] = "{\"PrivateKeyPEM\": \"SECRET\\q\"}";
	char *json;
	size_t len;

	(void)state;
	expect_leaf_refused(broken, strlen(broken), MN_INVALID,
			    "cannot parse leaf answer: invalid JSON at line 1 column 97");
	expect_leaf_refused(bad_escape, strlen(bad_escape), MN_INVALID,
			    "cannot parse leaf answer: invalid JSON at line 1 column 27");
	expect_leaf_refused("[1]", 3, MN_INVALID, "leaf answer is not an object");
	json = nested_json("{\"CertPEM\":", 65, "}", &len);
	expect_leaf_refused(json, len, MN_INVALID,
			    "cannot parse leaf answer: JSON nested deeper than 64 levels");
	free(json);
	json = nested_json("{\"CertPEM\":", 63, "}", &len);
	expect_leaf_refused(json, len, MN_INVALID, "leaf: 'SerialNumber' is missing");
	free(json);
}

static void test_time_parse(void **state)
{
	static const struct {
		const char *text;
		long long ms;
	} good[] = {
		{"2026-12-08T00:07:20Z", 1796688440000LL},
		{"2026-12-08T00:07:20.5Z", 1796688440500LL},
		{"2026-12-08T00:07:20.123456789Z", 1796688440123LL},
		{"2026-12-08T01:07:20+01:00", 1796688440000LL},
		{"2026-12-07T18:37:20-05:30", 1796688440000LL},
		{"1970-01-01T00:00:00Z", 0},
		{"2024-02-29T12:00:00Z", 1709208000000LL},
		{"2000-02-29T00:00:00Z", 951782400000LL},
		{"2036-12-08T00:08:20Z", NOT_AFTER_MS},
	};
	static const char *const bad[] = {
		"",
		"2026-12-08",
		"2026-12-08T00:07:20",
		"2026-12-08 00:07:20Z",
		"2026-12-08t00:07:20Z",
		"2026-12-08T00:07:20z",
		"2026-12-08T00:07:20ZZ",
		"2026-12-08T00:07:20+0100",
		"2026-12-08T00:07:20+01:00Z",
		"2026-12-08T00:07:20+24:00",
		"2026-12-08T00:07:20.Z",
		"2026-12-08T00:07:20.1234567890Z",
		"2026-13-08T00:07:20Z",
		"2026-00-08T00:07:20Z",
		"2026-12-00T00:07:20Z",
		"2026-12-32T00:07:20Z",
		"2026-04-31T00:07:20Z",
		"2026-02-29T00:07:20Z",
		"1900-02-29T00:07:20Z",
		"2026-12-08T24:00:00Z",
		"2026-12-08T00:60:00Z",
		"2026-12-08T00:07:60Z",
		"1969-12-31T23:59:59Z",
		"1970-01-01T00:30:00+01:00",
		"+026-12-08T00:07:20Z",
		"2026-1a-08T00:07:20Z",
	};
	int64_t ms;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (!connect_time_parse(good[i].text, strlen(good[i].text), &ms))
			fail_msg("refused '%s'", good[i].text);
		if (ms != good[i].ms)
			fail_msg("'%s': %lld, expected %lld", good[i].text, (long long)ms,
				 good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 42;
		if (connect_time_parse(bad[i], strlen(bad[i]), &ms))
			fail_msg("accepted '%s' as %lld", bad[i], (long long)ms);
		assert_int_equal(ms, 0);
	}
	/* kept to its length */
	assert_true(connect_time_parse("2026-12-08T00:07:20Zjunk", 20, &ms));
	assert_int_equal(ms, 1796688440000LL);
}

/* --- authorize --- */

/* An authorize answer as captured: it has no X-Consul-Index (not a
 * blocking endpoint), so fixture_answer_load() does not apply. */
static char *authz_body(const char *name, const char **body, size_t *len)
{
	size_t n;
	char *text = fixture_read(name, &n), *sep;

	assert_memory_equal(text, "HTTP/1.1 200 OK\n", 16);
	sep = strstr(text, "\n\n");
	assert_non_null(sep);
	*body = sep + 2;
	*len = strlen(*body);
	return text;
}

static void test_authz_real_answers(void **state)
{
	struct connect_authz z;
	char err[256] = "", *text;
	const char *body;
	size_t len;

	(void)state;
	text = authz_body("consul/connect/authorize_allowed.http", &body, &len);
	assert_int_equal(connect_authz_parse(body, len, &z, err, sizeof(err)), MN_OK);
	assert_true(z.authorized);
	assert_string_equal(z.reason, "ACLs disabled, access is allowed by default");
	free(text);

	text = authz_body("consul/connect/authorize_denied.http", &body, &len);
	assert_int_equal(connect_authz_parse(body, len, &z, err, sizeof(err)), MN_OK);
	assert_false(z.authorized);
	assert_string_equal(z.reason, "Matched intention: DENY default/web => default/users (ID: "
				      "eee17c6c-93f7-8eac-3449-3237bafdd140, Precedence: 9)");
	assert_string_equal(err, "");
	free(text);
}

static void test_authz_refusals(void **state)
{
	static const struct {
		const char *json, *err;
	} cases[] = {
		{"{}", "authorize: 'Authorized' is missing"},
		{"{\"Reason\":\"x\"}", "authorize: 'Authorized' is missing"},
		{"{\"Authorized\":\"true\"}", "authorize: 'Authorized' is not a boolean"},
		{"{\"Authorized\":1}", "authorize: 'Authorized' is not a boolean"},
		{"{\"Authorized\":null}", "authorize: 'Authorized' is not a boolean"},
		{"{\"Authorized\":true,\"Reason\":5}", "authorize: 'Reason' is not a string"},
		{"{\"Authorized\":true,\"Reason\":\"a\\u0000b\"}",
		 "cannot parse authorize answer: invalid JSON at line 1 column 38"},
		{"[true]", "authorize answer is not an object"},
		{"{\"Authorized\":false,\"Authorized\":true}",
		 "cannot parse authorize answer: a member named twice at line 1 column 32"},
		{"true", "cannot parse authorize answer: invalid JSON at line 1 column 4"},
		{"{\"Authorized\":true",
		 "cannot parse authorize answer: invalid JSON at line 1 column 18"},
	};
	struct connect_authz z;
	char json[CONNECT_REASON_MAX + 64], err[256];
	char *deep;
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&z, 0x55, sizeof(z));
		err[0] = '\0';
		assert_int_equal(connect_authz_parse(cases[i].json, strlen(cases[i].json), &z, err,
						     sizeof(err)),
				 MN_INVALID);
		if (strcmp(err, cases[i].err) != 0)
			fail_msg("%s: got \"%s\", expected \"%s\"", cases[i].json, err,
				 cases[i].err);
		assert_false(z.authorized);
		assert_string_equal(z.reason, "");
	}
	/* no Reason: empty */
	assert_int_equal(connect_authz_parse("{\"Authorized\":false}", 20, &z, NULL, 0), MN_OK);
	assert_false(z.authorized);
	assert_string_equal(z.reason, "");
	/* a reason of 1024 bytes is taken, of 1025 refused */
	len = (size_t)snprintf(json, sizeof(json), "{\"Authorized\":true,\"Reason\":\"%0*d\"}",
			       CONNECT_REASON_MAX, 0);
	assert_int_equal(connect_authz_parse(json, len, &z, NULL, 0), MN_OK);
	assert_int_equal(strlen(z.reason), CONNECT_REASON_MAX);
	len = (size_t)snprintf(json, sizeof(json), "{\"Authorized\":true,\"Reason\":\"%0*d\"}",
			       CONNECT_REASON_MAX + 1, 0);
	assert_int_equal(connect_authz_parse(json, len, &z, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err, "authorize: 'Reason' is longer than 1024 bytes");
	assert_false(z.authorized);
	deep = nested_json("{\"Authorized\":true,\"x\":", 65, "}", &len);
	assert_int_equal(connect_authz_parse(deep, len, &z, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err,
			    "cannot parse authorize answer: JSON nested deeper than 64 levels");
	free(deep);
	deep = calloc(1, CONNECT_ANSWER_MAX + 1);
	assert_non_null(deep);
	assert_int_equal(connect_authz_parse(deep, CONNECT_ANSWER_MAX + 1, &z, err, sizeof(err)),
			 MN_TOO_LARGE);
	assert_string_equal(err, "authorize answer larger than 1048576 bytes");
	free(deep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roots_real_answer),
		cmocka_unit_test(test_roots_during_rotation),
		cmocka_unit_test(test_roots_optional_fields),
		cmocka_unit_test(test_roots_refusals),
		cmocka_unit_test(test_roots_bounds),
		cmocka_unit_test(test_roots_keep_to_len),
		cmocka_unit_test(test_leaf_real_answer),
		cmocka_unit_test(test_leaf_refusals),
		cmocka_unit_test(test_leaf_bad_text),
		cmocka_unit_test(test_time_parse),
		cmocka_unit_test(test_authz_real_answers),
		cmocka_unit_test(test_authz_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
