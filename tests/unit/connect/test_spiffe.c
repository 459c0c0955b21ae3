#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connect/spiffe.h"

/* The trust domain and URI of the dev agent the fixtures come from
 * (tests/fixtures/consul/connect/leaf.http). */
#define TD    "d4448c34-0592-a3fe-bbf3-b74b614fd278.consul"
#define USERS "spiffe://" TD "/ns/default/dc/dc1/svc/users"

static enum mn_err parse(const char *uri, struct spiffe_id *id, char *err, size_t errlen)
{
	return spiffe_parse(uri, strlen(uri), id, err, errlen);
}

static void test_parse_consul_service_uri(void **state)
{
	struct spiffe_id id;
	char err[128] = "";

	(void)state;
	assert_int_equal(parse(USERS, &id, err, sizeof(err)), MN_OK);
	assert_string_equal(err, "");
	assert_int_equal(id.kind, SPIFFE_SERVICE);
	assert_string_equal(id.trust_domain, TD);
	assert_string_equal(id.ns, "default");
	assert_string_equal(id.dc, "dc1");
	assert_string_equal(id.service, "users");
}

static void test_parse_keeps_to_len(void **state)
{
	static const char text[] = USERS "/extra";
	struct spiffe_id id;

	(void)state;
	/* not NUL-terminated where it ends: the parser must not read on */
	assert_int_equal(spiffe_parse(text, strlen(USERS), &id, NULL, 0), MN_OK);
	assert_string_equal(id.service, "users");
	assert_int_equal(spiffe_parse(text, strlen(text), &id, NULL, 0), MN_INVALID);
}

static void test_parse_mixed_names(void **state)
{
	struct spiffe_id id;

	(void)state;
	assert_int_equal(
		parse("spiffe://" TD "/ns/team_a/dc/eu-west_1/svc/Billing-v2_x", &id, NULL, 0),
		MN_OK);
	assert_string_equal(id.ns, "team_a");
	assert_string_equal(id.dc, "eu-west_1");
	assert_string_equal(id.service, "Billing-v2_x");
}

static void test_parse_agent_and_ca_forms(void **state)
{
	struct spiffe_id id;
	char err[128];

	(void)state;
	assert_int_equal(
		parse("spiffe://" TD "/agent/client/dc/dc1/id/node-1", &id, err, sizeof(err)),
		MN_INVALID);
	assert_string_equal(err, "not a service identity: an agent's URI");
	assert_int_equal(id.kind, SPIFFE_AGENT);
	assert_string_equal(id.dc, "dc1");
	assert_string_equal(id.service, "node-1");

	assert_int_equal(parse("spiffe://" TD, &id, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err, "not a service identity: a CA's URI");
	assert_int_equal(id.kind, SPIFFE_CA);
	assert_string_equal(id.trust_domain, TD);

	assert_int_equal(parse("spiffe://" TD "/ns/default/dc/dc1", &id, err, sizeof(err)),
			 MN_INVALID);
	assert_string_equal(err, "not a service identity: no '/svc/' segment");
	assert_int_equal(id.kind, SPIFFE_NONE);
	assert_string_equal(id.trust_domain, "");
}

static void test_parse_refusals(void **state)
{
	static const struct {
		const char *uri, *err;
	} cases[] = {
		{"", "not a 'spiffe://' URI"},
		{"https://" TD "/ns/default/dc/dc1/svc/users", "not a 'spiffe://' URI"},
		{"SPIFFE://" TD "/ns/default/dc/dc1/svc/users", "not a 'spiffe://' URI"},
		{"spiffe:/" TD "/ns/default/dc/dc1/svc/users", "not a 'spiffe://' URI"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/us%65rs",
		 "percent-escapes are not accepted"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/%2e%2e",
		 "percent-escapes are not accepted"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/users?x=1",
		 "a query or fragment is not accepted"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/users#f",
		 "a query or fragment is not accepted"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/us ers",
		 "byte 77 is not a printable ASCII character"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/us\xc3\xa9rs",
		 "byte 77 is not a printable ASCII character"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/users\n",
		 "byte 80 is not a printable ASCII character"},
		{"spiffe://user@" TD "/ns/default/dc/dc1/svc/users", "a user part is not accepted"},
		{"spiffe://" TD ":8443/ns/default/dc/dc1/svc/users", "a port is not accepted"},
		{"spiffe:///ns/default/dc/dc1/svc/users", "trust domain '' is empty"},
		{"spiffe://D4448C34-0592-a3fe-bbf3-b74b614fd278.consul/ns/default/dc/dc1/svc/users",
		 "trust domain 'D4448C34-0592-a3fe-bbf3-b74b614fd278.consul' is not lowercase"},
		{"spiffe://" TD "./ns/default/dc/dc1/svc/users",
		 "trust domain '" TD ".' is not a host name"},
		{"spiffe://-a.consul/ns/default/dc/dc1/svc/users",
		 "trust domain '-a.consul' is not a host name"},
		{"spiffe://a_b.consul/ns/default/dc/dc1/svc/users",
		 "trust domain 'a_b.consul' is not a host name"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/users/", "segment 7 is empty"},
		{"spiffe://" TD "//ns/default/dc/dc1/svc/users", "segment 1 is empty"},
		{"spiffe://" TD "/ns/default/dc/./svc/users", "segment 4 ('.') is a dot segment"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/..", "segment 6 ('..') is a dot segment"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/../../svc/admin",
		 "segment 6 ('..') is a dot segment"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/users/extra",
		 "extra segments after the service"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/users/a/b/c/d",
		 "more than 8 path segments"},
		{"spiffe://" TD "/ns/default", "expected '/dc/' after the namespace"},
		{"spiffe://" TD "/ns/default/DC/dc1/svc/users",
		 "expected '/dc/' after the namespace"},
		{"spiffe://" TD "/ns/default/dc/dc1/SVC/users",
		 "expected '/svc/' after the datacenter"},
		{"spiffe://" TD "/NS/default/dc/dc1/svc/users",
		 "path is neither '/ns/...' nor '/agent/client/...'"},
		{"spiffe://" TD "/svc/users", "path is neither '/ns/...' nor '/agent/client/...'"},
		{"spiffe://" TD "/agent/client/dc/DC1/id/node-1",
		 "path is neither '/ns/...' nor '/agent/client/...'"},
		{"spiffe://" TD "/ns/default/dc/DC1/svc/users",
		 "datacenter 'DC1' is not lowercase"},
		{"spiffe://" TD "/ns/default/dc/dc1/svc/us.ers",
		 "service 'us.ers' has a character Consul does not write in a name"},
		{"spiffe://" TD "/ns/def:ault/dc/dc1/svc/users",
		 "namespace 'def:ault' has a character Consul does not write in a name"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spiffe_id id;
		char err[160] = "";

		if (parse(cases[i].uri, &id, err, sizeof(err)) != MN_INVALID)
			fail_msg("accepted '%s'", cases[i].uri);
		if (strcmp(err, cases[i].err) != 0)
			fail_msg("'%s': got \"%s\", expected \"%s\"", cases[i].uri, err,
				 cases[i].err);
		assert_int_not_equal(id.kind, SPIFFE_SERVICE);
	}
}

static void test_parse_embedded_nul(void **state)
{
	static const char text[] = "spiffe://" TD "/ns/default/dc/dc1/svc/users\0admin";
	struct spiffe_id id;
	char err[128];

	(void)state;
	assert_int_equal(spiffe_parse(text, sizeof(text) - 1, &id, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err, "byte 80 is not a printable ASCII character");
}

static void test_parse_lengths(void **state)
{
	char uri[SPIFFE_URI_MAX + 64], label[70], err[160];
	struct spiffe_id id;
	int n;

	(void)state;
	/* a service of 128 bytes is taken, of 129 refused */
	n = snprintf(uri, sizeof(uri), "spiffe://%s/ns/default/dc/dc1/svc/%0128d", TD, 0);
	assert_true(n > 0 && (size_t)n < sizeof(uri));
	assert_int_equal(parse(uri, &id, NULL, 0), MN_OK);
	assert_int_equal(strlen(id.service), 128);
	snprintf(uri, sizeof(uri), "spiffe://%s/ns/default/dc/dc1/svc/%0129d", TD, 0);
	assert_int_equal(parse(uri, &id, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err,
			    "service '0000000000000000000000000000000000000000000000000000000000"
			    "000000' is longer than 128 bytes");
	/* a datacenter of 63, 64 */
	snprintf(uri, sizeof(uri), "spiffe://%s/ns/default/dc/%063d/svc/users", TD, 0);
	assert_int_equal(parse(uri, &id, NULL, 0), MN_OK);
	snprintf(uri, sizeof(uri), "spiffe://%s/ns/default/dc/%064d/svc/users", TD, 0);
	assert_int_equal(parse(uri, &id, err, sizeof(err)), MN_INVALID);
	assert_non_null(strstr(err, "' is longer than 63 bytes"));
	assert_memory_equal(err, "datacenter '", 12);
	/* a label of 64 bytes in the trust domain */
	memset(label, 'a', 64);
	label[64] = '\0';
	snprintf(uri, sizeof(uri), "spiffe://%s.consul/ns/default/dc/dc1/svc/users", label);
	assert_int_equal(parse(uri, &id, err, sizeof(err)), MN_INVALID);
	assert_non_null(strstr(err, "' is not a host name"));
	/* a trust domain of 254 bytes: four labels of 63 and a '.' each */
	memset(label, 'a', 63);
	label[63] = '\0';
	snprintf(uri, sizeof(uri), "spiffe://%s.%s.%s.%s.ab/ns/default/dc/dc1/svc/users", label,
		 label, label, label);
	assert_int_equal(parse(uri, &id, err, sizeof(err)), MN_INVALID);
	assert_non_null(strstr(err, "' is longer than 253 bytes"));
	/* the whole URI */
	memset(uri, 'a', sizeof(uri));
	assert_int_equal(spiffe_parse(uri, SPIFFE_URI_MAX + 1, &id, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err, "URI longer than 512 bytes");
}

static void test_service_uri_builds_what_consul_writes(void **state)
{
	char buf[SPIFFE_URI_MAX + 1], err[128];
	struct spiffe_id id;

	(void)state;
	assert_int_equal(spiffe_service_uri(buf, sizeof(buf), TD, "dc1", "users", err, sizeof(err)),
			 MN_OK);
	assert_string_equal(buf, USERS);
	assert_int_equal(parse(buf, &id, NULL, 0), MN_OK);
	assert_true(spiffe_service_matches(&id, TD, "users"));

	assert_int_equal(spiffe_service_uri(buf, 20, TD, "dc1", "users", err, sizeof(err)),
			 MN_TOO_LARGE);
	assert_string_equal(buf, "");
	assert_string_equal(err, "URI longer than the buffer of 20 bytes");
	assert_int_equal(spiffe_service_uri(buf, sizeof(buf), "Example.consul", "dc1", "users", err,
					    sizeof(err)),
			 MN_INVALID);
	assert_string_equal(err, "trust domain 'Example.consul' is not lowercase");
	assert_int_equal(spiffe_service_uri(buf, sizeof(buf), TD, "DC1", "users", err, sizeof(err)),
			 MN_INVALID);
	assert_string_equal(err, "datacenter 'DC1' is not lowercase");
	assert_int_equal(
		spiffe_service_uri(buf, sizeof(buf), TD, "dc1", "../admin", err, sizeof(err)),
		MN_INVALID);
	assert_string_equal(err, "service '../admin' has a character Consul does not write in a "
				 "name");
	assert_int_equal(spiffe_service_uri(buf, sizeof(buf), TD, "dc1", "", err, sizeof(err)),
			 MN_INVALID);
	assert_string_equal(err, "service '' is empty");
}

static void test_matches(void **state)
{
	struct spiffe_id id;

	(void)state;
	assert_int_equal(parse(USERS, &id, NULL, 0), MN_OK);
	assert_true(spiffe_service_matches(&id, TD, "users"));
	/* a trust domain is a host name: case does not matter */
	assert_true(spiffe_service_matches(&id, "D4448C34-0592-A3FE-BBF3-B74B614FD278.CONSUL",
					   "users"));
	assert_false(spiffe_service_matches(&id, "other.consul", "users"));
	assert_false(spiffe_service_matches(&id, TD ".evil", "users"));
	assert_false(spiffe_service_matches(&id, TD, "Users"));
	assert_false(spiffe_service_matches(&id, TD, "user"));
	assert_false(spiffe_service_matches(&id, TD, "users2"));
	assert_false(spiffe_service_matches(&id, NULL, "users"));
	assert_false(spiffe_service_matches(&id, TD, NULL));
	/* another datacenter of the same trust domain is the same service */
	assert_int_equal(parse("spiffe://" TD "/ns/default/dc/dc2/svc/users", &id, NULL, 0), MN_OK);
	assert_true(spiffe_service_matches(&id, TD, "users"));
	/* another namespace is not */
	assert_int_equal(parse("spiffe://" TD "/ns/team/dc/dc1/svc/users", &id, NULL, 0), MN_OK);
	assert_false(spiffe_service_matches(&id, TD, "users"));
	/* nor an agent whose node has the service's name */
	assert_int_equal(parse("spiffe://" TD "/agent/client/dc/dc1/id/users", &id, NULL, 0),
			 MN_INVALID);
	assert_false(spiffe_service_matches(&id, TD, "users"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_consul_service_uri),
		cmocka_unit_test(test_parse_keeps_to_len),
		cmocka_unit_test(test_parse_mixed_names),
		cmocka_unit_test(test_parse_agent_and_ca_forms),
		cmocka_unit_test(test_parse_refusals),
		cmocka_unit_test(test_parse_embedded_nul),
		cmocka_unit_test(test_parse_lengths),
		cmocka_unit_test(test_service_uri_builds_what_consul_writes),
		cmocka_unit_test(test_matches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
