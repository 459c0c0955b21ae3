#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul/health.h"
#include "core/json_depth.h"
#include "fixture.h"
#include "nested.h"
#include "mutate.h"
#include "small_stack.h"

/* The body of an answer captured from a real consul 1.8.7 -dev agent with
 * `curl -si` (tests/fixtures/consul/health/): three instances of "users"
 * registered, one with a service address and tag "blue", one without an
 * address (the node's is used), one with a critical TTL check (left out by
 * ?passing). */
static char *fixture_body(const char *name, size_t *len)
{
	struct fixture_answer a;
	char path[256], *body;

	snprintf(path, sizeof(path), "consul/health/%s", name);
	fixture_answer_load(&a, path);
	body = strdup(a.body);
	assert_non_null(body);
	*len = a.len;
	fixture_answer_free(&a);
	return body;
}

static void test_real_passing_answer(void **state)
{
	struct consul_instance *v;
	size_t n, len;
	char *body = fixture_body("health_users_passing.http", &len);
	(void)state;

	assert_int_equal(consul_health_parse(body, len, &v, &n, NULL, NULL, 0), MN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].id, "users-a-8081");
	assert_string_equal(v[0].address, "127.0.0.1");
	assert_int_equal(v[0].port, 8081);
	assert_int_equal(json_array_size(v[0].tags), 1);
	assert_string_equal(json_string_value(json_array_get(v[0].tags, 0)), "blue");
	assert_string_equal(json_string_value(json_object_get(v[0].meta, "version")), "0.1.0");
	assert_string_equal(v[1].id, "users-b-8082");
	assert_string_equal(v[1].address, "127.0.0.1"); /* the node's address */
	assert_int_equal(v[1].port, 8082);
	assert_string_equal(v[1].node, v[0].node);
	consul_instances_free(v, n);
	free(body);
}

static void test_real_tag_filtered_and_unknown_service(void **state)
{
	struct consul_instance *v;
	size_t n, len;
	char *blue = fixture_body("health_users_tag_blue.http", &len);
	char *none;
	(void)state;

	assert_int_equal(consul_health_parse(blue, len, &v, &n, NULL, NULL, 0), MN_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].id, "users-a-8081");
	consul_instances_free(v, n);
	free(blue);

	none = fixture_body("health_unknown_service.http", &len);
	assert_int_equal(consul_health_parse(none, len, &v, &n, NULL, NULL, 0), MN_OK);
	assert_int_equal(n, 0);
	consul_instances_free(v, n);
	free(none);
}

/* The instances of a captured answer without ?passing
 * (tests/fixtures/consul/peers/panic_<name>.http) as "id:state" words,
 * state being p (passing), f (failing) or m (maintenance). */
static void states_of(const char *name, char *out, size_t outlen)
{
	struct fixture_answer a;
	struct consul_instance *v;
	char path[256];
	size_t n, pos = 0;

	snprintf(path, sizeof(path), "consul/peers/panic_%s.http", name);
	fixture_answer_load(&a, path);
	assert_int_equal(consul_health_parse(a.body, a.len, &v, &n, NULL, NULL, 0), MN_OK);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s:%c", i ? " " : "", v[i].id,
					v[i].maintenance ? 'm' : v[i].passing ? 'p' : 'f');
	consul_instances_free(v, n);
	fixture_answer_free(&a);
}

/* An instance passes when every one of its checks does, its node's
 * included, as ?passing has it: a warning is not passing, and a node check
 * (serfHealth for a host Consul declared failed) fails every instance of
 * the node. Maintenance checks, of the service or the node, say so. */
static void test_checks_decide_passing_and_maintenance(void **state)
{
	char got[256];
	(void)state;

	states_of("three_passing", got, sizeof(got));
	assert_string_equal(got, "users-1:p users-2:p users-3:p");
	states_of("one_warning", got, sizeof(got));
	assert_string_equal(got, "users-1:p users-2:p users-3:f");
	states_of("two_critical", got, sizeof(got));
	assert_string_equal(got, "users-1:p users-2:f users-3:f");
	states_of("node_check_critical", got, sizeof(got));
	assert_string_equal(got, "users-1:f users-2:f users-3:f");
	states_of("rest_critical_in_maintenance", got, sizeof(got));
	assert_string_equal(got, "users-1:f users-2:m users-3:m");
	states_of("node_maintenance", got, sizeof(got));
	assert_string_equal(got, "users-1:m users-2:m users-3:m");
}

/* The answers asked with ?passing hold passing instances only. */
static void test_passing_answer_is_all_passing(void **state)
{
	struct consul_instance *v;
	size_t n, len;
	char *body = fixture_body("health_users_passing.http", &len);
	(void)state;

	assert_int_equal(consul_health_parse(body, len, &v, &n, NULL, NULL, 0), MN_OK);
	for (size_t i = 0; i < n; i++) {
		assert_true(v[i].passing);
		assert_false(v[i].maintenance);
	}
	consul_instances_free(v, n);
	free(body);
}

/* Checks that say nothing clear: no status, a status that is not a
 * string, Checks that is not an array, a check that is not an object. An
 * instance with no check at all passes (?passing keeps it). */
static void test_odd_checks(void **state)
{
	static const char body[] =
		"["
		"{\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"\"Service\":{\"ID\":\"a\",\"Port\":1},\"Checks\":[{\"CheckID\":\"x\"}]},"
		"{\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"\"Service\":{\"ID\":\"b\",\"Port\":2},\"Checks\":[{\"Status\":7}]},"
		"{\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"\"Service\":{\"ID\":\"c\",\"Port\":3},\"Checks\":{}},"
		"{\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"\"Service\":{\"ID\":\"d\",\"Port\":4},\"Checks\":[\"passing\"]},"
		"{\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"\"Service\":{\"ID\":\"e\",\"Port\":5}},"
		"{\"Checks\":[{\"CheckID\":\"_service_maintenance:f\",\"Status\":\"critical\"}],"
		"\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"\"Service\":{\"ID\":\"f\",\"Port\":6}}"
		"]";
	struct consul_instance *v;
	size_t n;
	(void)state;

	assert_int_equal(consul_health_parse(body, strlen(body), &v, &n, NULL, NULL, 0), MN_OK);
	assert_int_equal(n, 6);
	assert_false(v[0].passing); /* no status */
	assert_false(v[1].passing);
	assert_true(v[2].passing);  /* Checks not an array: none read */
	assert_true(v[3].passing);  /* not a check object: skipped */
	assert_true(v[4].passing);  /* no Checks */
	assert_false(v[5].passing); /* Checks before Service: order does not matter */
	assert_true(v[5].maintenance);
	for (size_t i = 0; i < 5; i++)
		assert_false(v[i].maintenance);
	consul_instances_free(v, n);
}

/* Entries with what no call should be made to: each is left out and named. */
static void test_bad_addresses_and_ports_refused(void **state)
{
	static const char json[] =
		"[{\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"ok\",\"Address\":\"users-1.internal\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"v6\",\"Address\":\"::1\",\"Port\":8080}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"evil-url\",\"Address\":\"a@b/c\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"crlf\",\"Address\":\"x\\r\\nHost: y\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"scheme\",\"Address\":\"file://etc\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"port0\",\"Address\":\"\",\"Port\":0}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"port-big\",\"Port\":65536}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"port-str\",\"Port\":\"80\"}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"\"},"
		"  \"Service\":{\"ID\":\"no-address\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"id\\n{\\\"level\\\":1}\",\"Port\":0}},"
		" {\"Service\":{\"Address\":\"1.2.3.4\",\"Port\":80}}]";
	struct consul_instance *v;
	struct buf rejected;
	size_t n, lines;
	(void)state;

	buf_init(&rejected, 4096);
	assert_int_equal(consul_health_parse(json, strlen(json), &v, &n, &rejected, NULL, 0), MN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].id, "ok");
	assert_string_equal(v[1].id, "v6");
	for (const char *id = "evil-url\0crlf\0scheme\0port0\0port-big\0port-str\0no-address\0";
	     *id; id += strlen(id) + 1)
		assert_non_null(strstr(rejected.data, id));
	assert_non_null(strstr(rejected.data, "no service ID"));
	/* one line per refused entry: what Consul sent is escaped */
	lines = 0;
	for (const char *p = rejected.data; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 9);
	assert_non_null(
		strstr(rejected.data, "instance 'crlf': invalid address 'x\\r\\nHost: y'\n"));
	assert_non_null(strstr(rejected.data, "instance 'id\\n{\"level\":1}': invalid port\n"));
	consul_instances_free(v, n);
	buf_release(&rejected);
}

/* Addresses a call cannot go to (issue 21, point 5): the unspecified and
 * link-local ones, as literals of either family; the HTTP path refuses
 * them as the DNS path does, with a line saying why. */
static void test_unusable_addresses_refused(void **state)
{
	static const char *const bad[] = {"0.0.0.0", "::", "0:0::0", "169.254.0.1",
					  "169.254.255.255", "fe80::1", "FE80::abcd", "febf::1",
					  "::ffff:0.0.0.0", "::ffff:169.254.3.4", NULL};
	static const char *const good[] = {"127.0.0.1", "10.0.0.1", "169.253.1.1", "169.255.0.1",
					   "0.0.0.1", "::1", "fec0::1", "fe7f::1", "2001:db8::1",
					   "users.example.com", "::ffff:10.0.0.1", NULL};
	const char *json =
		"[{\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"ok\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"any\",\"Address\":\"0.0.0.0\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"169.254.169.254\"},"
		"  \"Service\":{\"ID\":\"ll\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.1\"},"
		"  \"Service\":{\"ID\":\"ll6\",\"Address\":\"fe80::2\",\"Port\":80}}]";
	struct consul_instance *v;
	struct buf rejected;
	size_t n;

	(void)state;
	for (size_t i = 0; bad[i]; i++)
		assert_non_null(consul_host_unusable(bad[i]));
	for (size_t i = 0; good[i]; i++)
		assert_null(consul_host_unusable(good[i]));
	assert_string_equal(consul_host_unusable("x y"), "invalid address");
	assert_string_equal(consul_host_unusable(NULL), "invalid address");
	buf_init(&rejected, 4096);
	assert_int_equal(consul_health_parse(json, strlen(json), &v, &n, &rejected, NULL, 0), MN_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].id, "ok");
	assert_non_null(strstr(rejected.data, "instance 'any': unspecified address '0.0.0.0'\n"));
	assert_non_null(
		strstr(rejected.data, "instance 'll': link-local address '169.254.169.254'\n"));
	assert_non_null(strstr(rejected.data, "instance 'll6': link-local address 'fe80::2'\n"));
	consul_instances_free(v, n);
	buf_release(&rejected);
}

/* Tags keep their strings and Meta its string members, whatever else an
 * agent puts there; a fractional port refuses the instance, not the answer;
 * the last of duplicate members wins; Node may come after Service. */
static void test_fields_taken_strictly(void **state)
{
	const char *json =
		"[{\"Service\":{\"ID\":\"a\",\"Port\":80,\"Tags\":[\"x\",1,null,[\"y\"],\"z\"],"
		"\"Meta\":{\"k\":\"v\",\"n\":2,\"o\":{\"p\":\"q\"}},\"ID\":\"a2\"},"
		"\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"}},"
		" {\"Node\":{\"Node\":\"n2\",\"Address\":\"10.0.0.2\"},"
		"  \"Service\":{\"ID\":\"frac\",\"Port\":80.5}},"
		" {\"Node\":{\"Node\":\"n3\",\"Address\":\"10.0.0.3\"},"
		"  \"Service\":{\"ID\":\"t\",\"Port\":81,\"Tags\":\"not-a-list\",\"Meta\":[]}}]";
	struct consul_instance *v;
	struct buf rejected;
	size_t n;
	(void)state;

	buf_init(&rejected, 4096);
	assert_int_equal(consul_health_parse(json, strlen(json), &v, &n, &rejected, NULL, 0), MN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].id, "a2");
	assert_string_equal(v[0].node, "n1");
	assert_string_equal(v[0].address, "10.0.0.1");
	assert_int_equal(json_array_size(v[0].tags), 2);
	assert_string_equal(json_string_value(json_array_get(v[0].tags, 1)), "z");
	assert_int_equal(json_object_size(v[0].meta), 1);
	assert_string_equal(json_string_value(json_object_get(v[0].meta, "k")), "v");
	assert_string_equal(v[1].id, "t");
	assert_int_equal(json_array_size(v[1].tags), 0);
	assert_int_equal(json_object_size(v[1].meta), 0);
	assert_non_null(strstr(rejected.data, "instance 'frac': invalid port"));
	consul_instances_free(v, n);
	buf_release(&rejected);
}

/* Node.Datacenter, the identity a Connect call expects: kept when it is a
 * datacenter name Consul would allow, else "" (any datacenter). */
static void test_datacenter(void **state)
{
	const char *json =
		"[{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\",\"Datacenter\":\"dc-2_b\"},"
		"  \"Service\":{\"ID\":\"a\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n2\",\"Address\":\"10.0.0.2\",\"Datacenter\":\"DC1\"},"
		"  \"Service\":{\"ID\":\"b\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n3\",\"Address\":\"10.0.0.3\",\"Datacenter\":7},"
		"  \"Service\":{\"ID\":\"c\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n4\",\"Address\":\"10.0.0.4\",\"Datacenter\":"
		"\"a234567890123456789012345678901234567890123456789012345678901234\"},"
		"  \"Service\":{\"ID\":\"d\",\"Port\":80}},"
		" {\"Node\":{\"Node\":\"n5\",\"Address\":\"10.0.0.5\",\"Datacenter\":\"d.c\"},"
		"  \"Service\":{\"ID\":\"e\",\"Port\":80}},"
		" {\"Service\":{\"ID\":\"f\",\"Address\":\"10.0.0.6\",\"Port\":80}}]";
	struct consul_instance *v;
	size_t n;
	(void)state;

	assert_int_equal(consul_health_parse(json, strlen(json), &v, &n, NULL, NULL, 0), MN_OK);
	assert_int_equal(n, 6);
	assert_string_equal(v[0].dc, "dc-2_b");
	for (size_t i = 1; i < n; i++)
		assert_string_equal(v[i].dc, "");
	consul_instances_free(v, n);
}

/* 10,000 instances in entries shaped like the agent's (see
 * health_users_passing.http): every one read, in order. */
static void test_large_answer(void **state)
{
	struct consul_instance *v;
	struct buf big;
	size_t n;
	(void)state;

	buf_init(&big, 64u << 20);
	buf_puts(&big, "[");
	for (int i = 0; i < 10000; i++)
		buf_printf(&big,
			   "%s{\"Node\":{\"ID\":\"6c1f\",\"Node\":\"node-%d\",\"Address\":"
			   "\"10.0.%d.%d\",\"Datacenter\":\"dc1\",\"TaggedAddresses\":{\"lan\":"
			   "\"10.0.0.1\"},\"Meta\":{\"consul-network-segment\":\"\"},"
			   "\"CreateIndex\":10,\"ModifyIndex\":11},\"Service\":{\"ID\":"
			   "\"users-%d\",\"Service\":\"users\",\"Tags\":[\"v1\"],\"Address\":\"\","
			   "\"Meta\":{\"version\":\"0.1.0\"},\"Port\":%d,\"Weights\":{\"Passing\":1,"
			   "\"Warning\":1},\"EnableTagOverride\":false},\"Checks\":[{\"Node\":"
			   "\"node-%d\",\"CheckID\":\"serfHealth\",\"Status\":\"passing\","
			   "\"Output\":\"Agent alive and reachable\",\"ServiceTags\":[]}]}",
			   i ? "," : "", i, i / 250, i % 250 + 1, i, 1024 + i, i);
	buf_puts(&big, "]");
	assert_non_null(big.data);
	assert_int_equal(consul_health_parse(big.data, big.len, &v, &n, NULL, NULL, 0), MN_OK);
	assert_int_equal(n, 10000);
	for (size_t i = 0; i < n; i += 997) {
		char id[32], addr[32];

		snprintf(id, sizeof(id), "users-%zu", i);
		snprintf(addr, sizeof(addr), "10.0.%zu.%zu", i / 250, i % 250 + 1);
		assert_string_equal(v[i].id, id);
		assert_string_equal(v[i].address, addr);
		assert_int_equal(v[i].port, 1024 + (int)i);
		assert_string_equal(json_string_value(json_object_get(v[i].meta, "version")),
				    "0.1.0");
	}
	consul_instances_free(v, n);
	buf_release(&big);
}

static void test_host_rules(void **state)
{
	(void)state;
	assert_true(consul_host_valid("127.0.0.1"));
	assert_true(consul_host_valid("fe80::1"));
	assert_true(consul_host_valid("users.service.consul"));
	assert_true(consul_host_valid("a-b.c"));
	assert_false(consul_host_valid(""));
	assert_false(consul_host_valid(NULL));
	assert_false(consul_host_valid("-a.b"));
	assert_false(consul_host_valid("a-.b"));
	assert_false(consul_host_valid("a..b"));
	assert_false(consul_host_valid("a b"));
	assert_false(consul_host_valid("[::1]"));
	assert_false(consul_host_valid("host:80"));
	assert_false(consul_host_valid("a_b"));
}

/* The real answer mutated thousands of ways (bytes flipped, cut, doubled):
 * the parser answers MN_OK or MN_INVALID, never crashes (the sanitizer
 * build runs this too), and whatever it accepts passed the address rules. */
static void test_mutated_answers(void **state)
{
	size_t len;
	char *body = fixture_body("health_users_passing.http", &len);
	char *m = malloc(2 * len + 1);
	uint64_t rng = 0x9E3779B97F4A7C15ULL;
	unsigned accepted = 0;
	(void)state;

	assert_non_null(m);
	for (int round = 0; round < 3000; round++) {
		size_t mlen = len;

		memcpy(m, body, len);
		mutate(m, &mlen, 2 * len, &rng, 1 + round % 4);
		struct consul_instance *v;
		size_t n;
		enum mn_err e = consul_health_parse(m, mlen, &v, &n, NULL, NULL, 0);

		assert_true(e == MN_OK || e == MN_INVALID);
		if (e != MN_OK)
			continue;
		accepted++;
		for (size_t i = 0; i < n; i++) {
			assert_true(consul_host_valid(v[i].address));
			assert_in_range(v[i].port, 1, 65535);
			assert_non_null(v[i].id);
		}
		consul_instances_free(v, n);
	}
	assert_true(accepted > 0); /* some mutations still parse */
	free(m);
	free(body);
}

static void test_not_an_array(void **state)
{
	struct consul_instance *v;
	size_t n;
	char err[128];
	(void)state;

	assert_int_equal(consul_health_parse("{}", 2, &v, &n, NULL, err, sizeof(err)), MN_INVALID);
	assert_int_equal(consul_health_parse("[", 1, &v, &n, NULL, err, sizeof(err)), MN_INVALID);
	assert_null(v);
	assert_int_equal(n, 0);
}

/* One passing instance whose "Checks" take the answer to 'depth' levels. */
static char *answer_nested(size_t depth, size_t *len)
{
	return nested_json("[{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},"
			   "\"Service\":{\"ID\":\"users-1\",\"Port\":8080},\"Checks\":",
			   depth - 2, "}]", len);
}

static void test_deep_answers_refused(void **state)
{
	struct consul_instance *v;
	char err[256], *json;
	size_t n, len;
	(void)state;

	json = answer_nested(MN_JSON_MAX_DEPTH, &len);
	assert_int_equal(consul_health_parse(json, len, &v, &n, NULL, err, sizeof(err)), MN_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].address, "10.0.0.1");
	consul_instances_free(v, n);
	free(json);

	json = answer_nested(MN_JSON_MAX_DEPTH + 1, &len);
	assert_int_equal(consul_health_parse(json, len, &v, &n, NULL, err, sizeof(err)),
			 MN_INVALID);
	assert_string_equal(err, "cannot parse health answer: JSON nested deeper than 64 levels");
	assert_null(v);
	assert_int_equal(n, 0);
	free(json);

	json = answer_nested(1000, &len);
	assert_int_equal(consul_health_parse(json, len, &v, &n, NULL, err, sizeof(err)),
			 MN_INVALID);
	assert_string_equal(err, "cannot parse health answer: JSON nested deeper than 64 levels");
	free(json);
}

struct deep_parse {
	const char *json;
	size_t len;
	enum mn_err result;
	char err[256];
};

static void *deep_parse_run(void *arg)
{
	struct deep_parse *d = arg;
	struct consul_instance *v;
	size_t n;

	d->result = consul_health_parse(d->json, d->len, &v, &n, NULL, d->err, sizeof(d->err));
	return NULL;
}

/* An answer 4096 levels deep on a worker-sized stack: refused, not a crash. */
static void test_deep_answer_on_a_small_stack(void **state)
{
	struct deep_parse d = {.len = 4096};
	char *json = small_stack_brackets(d.len);
	(void)state;

	d.json = json;
	assert_true(small_stack_run(deep_parse_run, &d));
	assert_int_equal(d.result, MN_INVALID);
	assert_non_null(strstr(d.err, "JSON nested deeper than 64 levels"));
	free(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_passing_answer),
		cmocka_unit_test(test_real_tag_filtered_and_unknown_service),
		cmocka_unit_test(test_checks_decide_passing_and_maintenance),
		cmocka_unit_test(test_passing_answer_is_all_passing),
		cmocka_unit_test(test_odd_checks),
		cmocka_unit_test(test_bad_addresses_and_ports_refused),
		cmocka_unit_test(test_fields_taken_strictly),
		cmocka_unit_test(test_datacenter),
		cmocka_unit_test(test_large_answer),
		cmocka_unit_test(test_host_rules),
		cmocka_unit_test(test_mutated_answers),
		cmocka_unit_test(test_not_an_array),
		cmocka_unit_test(test_deep_answers_refused),
		cmocka_unit_test(test_unusable_addresses_refused),
		cmocka_unit_test(test_deep_answer_on_a_small_stack),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
