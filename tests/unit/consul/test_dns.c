#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/dns.h"
#include "fixture.h"
#include "mutate.h"
#include "small_stack.h"

/* Answers captured from a real consul 1.8.7 -dev agent's DNS interface
 * (tests/fixtures/consul/dns/capture.py), all to queries with this id. */
#define QID 0x4d4e

struct parsed {
	struct consul_instance *v;
	size_t n;
	uint32_t ttl;
	bool truncated;
	enum mn_err e;
	char err[256];
};

static void parse_fixture(const char *name, uint16_t id, struct parsed *p)
{
	char path[256], *msg;
	size_t len;

	snprintf(path, sizeof(path), "consul/dns/%s", name);
	msg = fixture_read(path, &len);
	p->e = consul_dns_parse((const unsigned char *)msg, len, id, &p->v, &p->n, &p->ttl,
				&p->truncated, p->err, sizeof(p->err));
	free(msg);
}

static const struct consul_instance *find_id(const struct parsed *p, const char *id)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i].id, id) == 0)
			return &p->v[i];
	return NULL;
}

/* users-1 (127.0.0.1:9101), users-2 (10.1.2.3:9102) and users-3 (no
 * service address: its target is the node, whose A record gives
 * 127.0.0.1:9103); users-4, critical, is not in the answer. */
static void test_parse_srv_answer(void **state)
{
	const struct consul_instance *in;
	struct parsed p;

	(void)state;
	parse_fixture("users_srv.bin", QID, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 3);
	assert_false(p.truncated);
	assert_int_equal(p.ttl, 0);
	in = find_id(&p, "127.0.0.1:9101");
	assert_non_null(in);
	assert_string_equal(in->address, "127.0.0.1");
	assert_int_equal(in->port, 9101);
	assert_string_equal(in->node, "");
	assert_true(in->passing);
	assert_false(in->maintenance);
	assert_true(json_is_array(in->tags));
	assert_true(json_is_object(in->meta));
	in = find_id(&p, "10.1.2.3:9102");
	assert_non_null(in);
	assert_string_equal(in->address, "10.1.2.3");
	in = find_id(&p, "127.0.0.1:9103");
	assert_non_null(in);
	assert_string_equal(in->node, "meshnode-test");
	assert_null(find_id(&p, "127.0.0.1:9104"));
	consul_instances_free(p.v, p.n);
}

static void test_parse_tag_answer(void **state)
{
	struct parsed p;

	(void)state;
	parse_fixture("users_tag_blue.bin", QID, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.v[0].id, "127.0.0.1:9101");
	consul_instances_free(p.v, p.n);
}

static void test_parse_ipv6(void **state)
{
	struct parsed p;

	(void)state;
	parse_fixture("v6_srv.bin", QID, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.v[0].address, "::1");
	assert_string_equal(p.v[0].id, "[::1]:9401");
	assert_int_equal(p.v[0].port, 9401);
	consul_instances_free(p.v, p.n);
}

/* An unknown service is NXDOMAIN: no instance, not an error. */
static void test_parse_nxdomain(void **state)
{
	struct parsed p;

	(void)state;
	parse_fixture("nope_nxdomain.bin", QID, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 0);
	free(p.v);
}

/* Why the lookup asks over TCP: over UDP the agent trimmed 300 instances
 * to what fits 4096 bytes and said nothing (no TC bit); over TCP all 300
 * came. */
static void test_udp_trims_silently_tcp_has_all(void **state)
{
	struct parsed p;

	(void)state;
	parse_fixture("many_udp.bin", QID, &p);
	assert_int_equal(p.e, MN_OK);
	assert_false(p.truncated);
	assert_true(p.n < 300);
	consul_instances_free(p.v, p.n);
	parse_fixture("many_tcp.bin", QID, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 300);
	assert_non_null(find_id(&p, "10.9.0.1:20000"));
	assert_non_null(find_id(&p, "10.9.1.50:20299"));
	consul_instances_free(p.v, p.n);
}

/* An answer to another query, or no answer at all, is refused. */
static void test_parse_refuses_what_is_not_our_answer(void **state)
{
	unsigned char q[512];
	struct parsed p;
	size_t len;

	(void)state;
	parse_fixture("users_srv.bin", QID + 1, &p);
	assert_int_equal(p.e, MN_INVALID);
	assert_non_null(strstr(p.err, "not the answer"));
	/* our own query: not a response */
	len = consul_dns_query("users.service.consul", QID, q, sizeof(q));
	assert_true(len > 12);
	p.e = consul_dns_parse(q, len, QID, &p.v, &p.n, &p.ttl, &p.truncated, p.err,
			       sizeof(p.err));
	assert_int_equal(p.e, MN_INVALID);
	p.e = consul_dns_parse(q, 5, QID, &p.v, &p.n, &p.ttl, &p.truncated, p.err,
			       sizeof(p.err));
	assert_int_equal(p.e, MN_INVALID);
	assert_non_null(strstr(p.err, "malformed"));
}

/* The query: the name as labels, SRV, IN; names that are not DNS names
 * are refused rather than sent. */
static void test_query(void **state)
{
	static const unsigned char want[] = {
		0x4d, 0x4e, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		5,    'u',  's',  'e',  'r',  's',  7,	  's',	'e',  'r',  'v',  'i',
		'c',  'e',  6,	  'c',	'o',  'n',  's',  'u',	'l',  0,    0x00, 0x21,
		0x00, 0x01};
	unsigned char q[512];
	char long_label[80];

	(void)state;
	assert_int_equal(consul_dns_query("users.service.consul", QID, q, sizeof(q)),
			 sizeof(want));
	assert_memory_equal(q, want, sizeof(want));
	assert_int_equal(consul_dns_query("a b.service.consul", QID, q, sizeof(q)), 0);
	assert_int_equal(consul_dns_query("users..consul", QID, q, sizeof(q)), 0);
	assert_int_equal(consul_dns_query("users.consul.", QID, q, sizeof(q)), 0);
	assert_int_equal(consul_dns_query("", QID, q, sizeof(q)), 0);
	memset(long_label, 'a', 64);
	strcpy(long_label + 64, ".consul");
	assert_int_equal(consul_dns_query(long_label, QID, q, sizeof(q)), 0);
	assert_int_equal(consul_dns_query("users.service.consul", QID, q, 20), 0);
}

static void test_server_valid(void **state)
{
	(void)state;
	assert_true(consul_dns_server_valid("127.0.0.1:8600"));
	assert_true(consul_dns_server_valid("[::1]:8600"));
	assert_false(consul_dns_server_valid("localhost:8600"));
	assert_false(consul_dns_server_valid("127.0.0.1"));
	assert_false(consul_dns_server_valid("127.0.0.1:0"));
	assert_false(consul_dns_server_valid("127.0.0.1:65536"));
	assert_false(consul_dns_server_valid("[::1]8600"));
	assert_false(consul_dns_server_valid(NULL));
}

/* Hostile answers: every captured one cut at every length, and mutated
 * 2,000 times each (bytes flipped, tails cut, spans repeated): never a
 * crash or an out-of-bounds read (the sanitizer build says so), never an
 * instance without an address and port, on a 100 KiB stack. */
static void *mutations(void *arg)
{
	static const char *const names[] = {"users_srv.bin", "users_tag_blue.bin", "v6_srv.bin",
					    "nope_nxdomain.bin", "many_tcp.bin"};
	uint64_t rng = 0x9e3779b97f4a7c15ULL;
	size_t *checked = arg;

	for (size_t f = 0; f < sizeof(names) / sizeof(names[0]); f++) {
		char path[256], *orig, *m;
		size_t olen;

		snprintf(path, sizeof(path), "consul/dns/%s", names[f]);
		orig = fixture_read(path, &olen);
		m = malloc(olen + 4096);
		assert_non_null(m);
		for (int k = 0; k < 2000 + (int)olen; k++) {
			struct consul_instance *v;
			size_t len = olen, n;
			uint32_t ttl;
			bool tc;
			char err[256];

			memcpy(m, orig, olen);
			if (k < (int)olen)
				len = (size_t)k; /* every cut */
			else
				mutate(m, &len, olen + 4096, &rng, 1 + k % 4);
			if (consul_dns_parse((unsigned char *)m, len, QID, &v, &n, &ttl, &tc, err,
					     sizeof(err)) != MN_OK)
				continue;
			for (size_t i = 0; i < n; i++) {
				assert_true(v[i].port > 0 && v[i].port < 65536);
				assert_true(consul_host_valid(v[i].address));
			}
			consul_instances_free(v, n);
			(*checked)++;
		}
		free(m);
		free(orig);
	}
	return NULL;
}

static void test_hostile_answers(void **state)
{
	size_t checked = 0;

	(void)state;
	assert_true(small_stack_run(mutations, &checked));
	/* the cuts of the complete answers parse as something */
	assert_true(checked > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_srv_answer),
		cmocka_unit_test(test_parse_tag_answer),
		cmocka_unit_test(test_parse_ipv6),
		cmocka_unit_test(test_parse_nxdomain),
		cmocka_unit_test(test_udp_trims_silently_tcp_has_all),
		cmocka_unit_test(test_parse_refuses_what_is_not_our_answer),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_server_valid),
		cmocka_unit_test(test_hostile_answers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
