#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

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
	struct consul_dns_answer a;
	enum mn_err e;
	char err[256];
};

static void parse_fixture(const char *name, uint16_t id, struct parsed *p)
{
	char path[256], *msg;
	size_t len;

	snprintf(path, sizeof(path), "consul/dns/%s", name);
	msg = fixture_read(path, &len);
	p->e = consul_dns_parse((const unsigned char *)msg, len, id, &p->v, &p->n, &p->a, p->err,
				sizeof(p->err));
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
	assert_false(p.a.truncated);
	assert_int_equal(p.a.ttl, 0);
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

/* ---- answers built here: what the agent would not send ------------------ */

struct msg {
	unsigned char b[2048];
	size_t len;
	size_t an, ar;
};

static void put16(struct msg *m, unsigned v)
{
	m->b[m->len++] = (unsigned char)(v >> 8);
	m->b[m->len++] = (unsigned char)v;
}

static void put_name(struct msg *m, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t n = dot ? (size_t)(dot - name) : strlen(name);

		m->b[m->len++] = (unsigned char)n;
		memcpy(m->b + m->len, name, n);
		m->len += n;
		name += n + (dot ? 1 : 0);
	}
	m->b[m->len++] = 0;
}

/* The header (counts patched by msg_end) and the question. */
static void msg_begin(struct msg *m, unsigned rcode)
{
	m->len = 0;
	m->an = m->ar = 0;
	put16(m, QID);
	put16(m, 0x8400 | rcode); /* response, authoritative */
	put16(m, 1), put16(m, 0), put16(m, 0), put16(m, 0);
	put_name(m, "users.service.consul");
	put16(m, 33), put16(m, 1);
}

static void rr_head(struct msg *m, const char *owner, unsigned type, size_t rdlen)
{
	put_name(m, owner);
	put16(m, type), put16(m, 1);
	put16(m, 0), put16(m, 0); /* TTL 0, as Consul's default */
	put16(m, (unsigned)rdlen);
}

/* An SRV record to target:port; a target NULL is a name that is a
 * compression pointer to itself (a loop). */
static void srv(struct msg *m, const char *target, unsigned port)
{
	size_t tlen = target ? strlen(target) + 2 : 2;

	rr_head(m, "users.service.consul", 33, 6 + tlen);
	put16(m, 1), put16(m, 1), put16(m, port);
	if (target) {
		put_name(m, target);
	} else {
		size_t at = m->len;

		put16(m, 0xc000 | (unsigned)at);
	}
	m->an++;
}

static void addr_rr(struct msg *m, const char *owner, const char *ip)
{
	unsigned char raw[16];
	bool v6 = strchr(ip, ':') != NULL;

	assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, ip, raw), 1);
	rr_head(m, owner, v6 ? 28 : 1, v6 ? 16 : 4);
	memcpy(m->b + m->len, raw, v6 ? 16 : 4);
	m->len += v6 ? 16 : 4;
	m->ar++;
}

static void msg_end(struct msg *m, struct parsed *p)
{
	m->b[6] = (unsigned char)(m->an >> 8), m->b[7] = (unsigned char)m->an;
	m->b[10] = (unsigned char)(m->ar >> 8), m->b[11] = (unsigned char)m->ar;
	p->e = consul_dns_parse(m->b, m->len, QID, &p->v, &p->n, &p->a, p->err, sizeof(p->err));
}

/* NXDOMAIN and an empty NOERROR are "none": no instance, no array to sort
 * (the watch once called qsort(NULL, 0, ...) on them: undefined, and
 * UBSan's abort in the sanitizer build), and a view with none takes them
 * at once. Run under the sanitizers by make SANITIZE=address,undefined. */
static void test_empty_answers_are_none(void **state)
{
	struct dns_view view;
	struct parsed p;
	struct msg m;

	(void)state;
	parse_fixture("nope_nxdomain.bin", QID, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 0);
	assert_true(p.a.nxdomain);
	assert_int_equal(consul_dns_verdict(&p.a, p.n), CONSUL_DNS_NONE);
	dns_view_init(&view);
	assert_int_equal(dns_view_answer(&view, &p.a, p.v, p.n, 1000), DNS_VIEW_CHANGE);
	assert_int_equal(dns_view_answer(&view, &p.a, p.v, p.n, 2000), DNS_VIEW_SAME);
	free(p.v);

	msg_begin(&m, 0);
	msg_end(&m, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 0);
	assert_false(p.a.nxdomain);
	assert_int_equal(p.a.records, 0);
	assert_int_equal(consul_dns_verdict(&p.a, p.n), CONSUL_DNS_NONE);
	assert_int_equal(dns_view_answer(&view, &p.a, p.v, p.n, 3000), DNS_VIEW_SAME);
	consul_instances_free(p.v, p.n);
}

/* Records that are there but unusable make a broken answer, not "none":
 * targets that are pointer loops, unspecified and link-local addresses. */
static void test_unusable_records_are_broken(void **state)
{
	struct parsed p;
	struct msg m;

	(void)state;
	msg_begin(&m, 0);
	srv(&m, NULL, 9101);
	srv(&m, NULL, 9102);
	msg_end(&m, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 0);
	assert_int_equal(p.a.records, 2);
	assert_int_equal(p.a.refused, 2);
	assert_int_equal(consul_dns_verdict(&p.a, p.n), CONSUL_DNS_BROKEN);
	consul_instances_free(p.v, p.n);

	msg_begin(&m, 0);
	srv(&m, "a.node.dc1.consul", 9101);
	srv(&m, "b.node.dc1.consul", 9102);
	srv(&m, "c.node.dc1.consul", 9103);
	srv(&m, "d.node.dc1.consul", 9104);
	srv(&m, "00000000.addr.dc1.consul", 9105); /* 0.0.0.0, encoded */
	srv(&m, "a9fe0102.addr.dc1.consul", 9106); /* 169.254.1.2 */
	srv(&m, "e.node.dc1.consul", 9107);
	srv(&m, "f.node.dc1.consul", 9108);
	addr_rr(&m, "a.node.dc1.consul", "0.0.0.0");
	addr_rr(&m, "b.node.dc1.consul", "169.254.10.20");
	addr_rr(&m, "c.node.dc1.consul", "::");
	addr_rr(&m, "d.node.dc1.consul", "fe80::1");
	addr_rr(&m, "e.node.dc1.consul", "::ffff:169.254.0.1");
	addr_rr(&m, "f.node.dc1.consul", "febf::1"); /* fe80::/10 too */
	msg_end(&m, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 0);
	assert_int_equal(p.a.refused, 8);
	assert_int_equal(consul_dns_verdict(&p.a, p.n), CONSUL_DNS_BROKEN);
	consul_instances_free(p.v, p.n);

	/* one usable among them: that one */
	msg_begin(&m, 0);
	srv(&m, "a.node.dc1.consul", 9101);
	srv(&m, "g.node.dc1.consul", 9109);
	addr_rr(&m, "a.node.dc1.consul", "0.0.0.0");
	addr_rr(&m, "g.node.dc1.consul", "fec0::1"); /* just past fe80::/10 */
	msg_end(&m, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.v[0].id, "[fec0::1]:9109");
	assert_int_equal(p.a.refused, 1);
	assert_int_equal(consul_dns_verdict(&p.a, p.n), CONSUL_DNS_SOME);
	consul_instances_free(p.v, p.n);
}

/* The same target and port twice is one instance; the same address on
 * another port is another. */
static void test_identical_records_collapse(void **state)
{
	struct parsed p;
	struct msg m;

	(void)state;
	msg_begin(&m, 0);
	srv(&m, "0a000005.addr.dc1.consul", 8080);
	srv(&m, "a.node.dc1.consul", 8080);
	srv(&m, "0a000005.addr.dc1.consul", 8080);
	srv(&m, "0a000005.addr.dc1.consul", 8081);
	srv(&m, "a.node.dc1.consul", 8080);
	addr_rr(&m, "a.node.dc1.consul", "10.0.0.5");
	msg_end(&m, &p);
	assert_int_equal(p.e, MN_OK);
	assert_int_equal(p.n, 2);
	assert_int_equal(p.a.duplicates, 3);
	assert_string_equal(p.v[0].id, "10.0.0.5:8080");
	assert_string_equal(p.v[1].id, "10.0.0.5:8081");
	consul_instances_free(p.v, p.n);
}

/* The view, fed answers at chosen times (an injected clock): "none" holds
 * a view with instances until DNS_VIEW_NONE_ANSWERS in a row and
 * DNS_VIEW_KEEP_MS since the last instance, both; a broken answer never
 * changes it; an instance back resets the count. */
static void test_view_keeps_the_last_good_set(void **state)
{
	struct parsed two, one, none, broken;
	struct dns_view view;
	struct msg m;
	uint64_t t = 5000;

	(void)state;
	parse_fixture("users_srv.bin", QID, &two); /* three instances, in fact */
	msg_begin(&m, 0);
	srv(&m, "0a000005.addr.dc1.consul", 8080);
	msg_end(&m, &one);
	msg_begin(&m, 0);
	msg_end(&m, &none);
	msg_begin(&m, 0);
	srv(&m, NULL, 8080);
	msg_end(&m, &broken);
	assert_int_equal(consul_dns_verdict(&broken.a, broken.n), CONSUL_DNS_BROKEN);

	dns_view_init(&view);
	assert_int_equal(dns_view_answer(&view, &two.a, two.v, two.n, t), DNS_VIEW_CHANGE);
	assert_int_equal(dns_view_answer(&view, &two.a, two.v, two.n, t += 1000), DNS_VIEW_SAME);
	/* broken answers, for a minute: the view stays */
	for (int i = 0; i < 60; i++)
		assert_int_equal(dns_view_answer(&view, &broken.a, broken.v, broken.n, t += 1000),
				 DNS_VIEW_KEEP);
	assert_int_equal(view.broken, 60);
	/* the broken minute confirmed nothing: the bound has passed, and the
	 * third "none" in a row is believed */
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t += 1000), DNS_VIEW_HOLD);
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t += 1000), DNS_VIEW_HOLD);
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t += 1000),
			 DNS_VIEW_CHANGE);
	assert_int_equal(view.shown_n, 0);
	/* an instance back is taken at once, and resets the count and the
	 * clock */
	assert_int_equal(dns_view_answer(&view, &one.a, one.v, one.n, t += 1000), DNS_VIEW_CHANGE);
	/* three in a row, but not yet DNS_VIEW_KEEP_MS: held */
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t + 1), DNS_VIEW_HOLD);
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t + 2), DNS_VIEW_HOLD);
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t + 3), DNS_VIEW_HOLD);
	assert_int_equal(dns_view_answer(&view, &broken.a, broken.v, broken.n,
					 t + DNS_VIEW_KEEP_MS + 5),
			 DNS_VIEW_KEEP);
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n,
					 t + DNS_VIEW_KEEP_MS - 1),
			 DNS_VIEW_HOLD);
	/* the bound passed and enough answers in a row: Consul is believed */
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t + DNS_VIEW_KEEP_MS),
			 DNS_VIEW_CHANGE);
	assert_int_equal(view.shown_n, 0);
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t + DNS_VIEW_KEEP_MS + 1),
			 DNS_VIEW_SAME);
	/* and instances back are taken at once */
	assert_int_equal(dns_view_answer(&view, &two.a, two.v, two.n, t + DNS_VIEW_KEEP_MS + 2),
			 DNS_VIEW_CHANGE);

	/* a long time with no answer, then few "none": still held (the count
	 * is of answers, not of time alone) */
	t += 600000;
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t), DNS_VIEW_HOLD);
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t + 1), DNS_VIEW_HOLD);
	assert_int_equal(dns_view_answer(&view, &none.a, none.v, none.n, t + 2), DNS_VIEW_CHANGE);

	/* a first answer that is broken delivers nothing */
	dns_view_init(&view);
	assert_int_equal(dns_view_answer(&view, &broken.a, broken.v, broken.n, t), DNS_VIEW_KEEP);
	assert_false(view.shown);

	consul_instances_free(two.v, two.n);
	consul_instances_free(one.v, one.n);
	consul_instances_free(none.v, none.n);
	consul_instances_free(broken.v, broken.n);
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
	assert_false(p.a.truncated);
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
	p.e = consul_dns_parse(q, len, QID, &p.v, &p.n, &p.a, p.err,
			       sizeof(p.err));
	assert_int_equal(p.e, MN_INVALID);
	p.e = consul_dns_parse(q, 5, QID, &p.v, &p.n, &p.a, p.err,
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
			struct consul_dns_answer a;
			char err[256];

			memcpy(m, orig, olen);
			if (k < (int)olen)
				len = (size_t)k; /* every cut */
			else
				mutate(m, &len, olen + 4096, &rng, 1 + k % 4);
			if (consul_dns_parse((unsigned char *)m, len, QID, &v, &n, &a, err,
					     sizeof(err)) != MN_OK)
				continue;
			for (size_t i = 0; i < n; i++) {
				assert_true(v[i].port > 0 && v[i].port < 65536);
				assert_null(consul_host_unusable(v[i].address));
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
		cmocka_unit_test(test_empty_answers_are_none),
		cmocka_unit_test(test_unusable_records_are_broken),
		cmocka_unit_test(test_identical_records_collapse),
		cmocka_unit_test(test_view_keeps_the_last_good_set),
		cmocka_unit_test(test_udp_trims_silently_tcp_has_all),
		cmocka_unit_test(test_parse_refuses_what_is_not_our_answer),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_server_valid),
		cmocka_unit_test(test_hostile_answers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
