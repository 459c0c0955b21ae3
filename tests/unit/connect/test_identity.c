#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "connect/connect_metrics.h"
#include "connect/identity.h"
#include "connect/verify.h"
#include "fixture.h"
#include "log_capture.h"

/* The CA rotation of tests/fixtures/consul/connect/rotation_*.http. */
#define TD     "1769f589-5ac8-fef8-5f1b-7131cb8c727d.consul"
#define ROOT_1 "4a:5a:e9:01:d6:93:6f:6e:7a:d9:b8:e9:d4:52:ff:75:2a:50:9a:27"
#define ROOT_2 "fa:35:92:9c:30:ba:a9:7a:c9:a2:47:05:2a:e7:10:2a:55:30:ea:40"
/* leaf_1: 2026-12-08T01:24:11Z to 2026-12-11T01:24:11Z */
#define LEAF_1_AFTER  ((int64_t)1796693051 * 1000)
#define LEAF_1_BEFORE ((int64_t)1796952251 * 1000)
/* the first agent's (roots.http, leaf.http) */
#define TD_OTHER "d4448c34-0592-a3fe-bbf3-b74b614fd278.consul"

struct answer {
	char *body;
	size_t len;
	uint64_t index;
};

static struct answer load(const char *name)
{
	struct fixture_answer a;
	struct answer out;
	char path[128];

	snprintf(path, sizeof(path), "consul/connect/%s.http", name);
	fixture_answer_load(&a, path);
	out.body = strndup(a.body, a.len);
	assert_non_null(out.body);
	out.len = a.len;
	out.index = a.index;
	fixture_answer_free(&a);
	return out;
}

/* A captured answer with its members 'k' set to 'v' (strings), as JSON. */
static struct answer edited(const char *name, const char *k1, const char *v1, const char *k2,
			    const char *v2)
{
	struct answer a = load(name);
	json_t *j = json_loadb(a.body, a.len, 0, NULL);

	assert_non_null(j);
	if (k1 != NULL)
		assert_int_equal(json_object_set_new(j, k1, json_string(v1)), 0);
	if (k2 != NULL)
		assert_int_equal(json_object_set_new(j, k2, json_string(v2)), 0);
	free(a.body);
	a.body = json_dumps(j, 0);
	assert_non_null(a.body);
	a.len = strlen(a.body);
	json_decref(j);
	return a;
}

/* A member of a captured answer, as a new string. */
static char *member(const char *name, const char *key)
{
	struct answer a = load(name);
	json_t *j = json_loadb(a.body, a.len, 0, NULL);
	char *v;

	assert_non_null(j);
	v = strdup(json_string_value(json_object_get(j, key)));
	assert_non_null(v);
	json_decref(j);
	free(a.body);
	return v;
}

static void answer_free(struct answer *a)
{
	free(a->body);
}

struct changes {
	unsigned calls;
	uint64_t last_generation;
	bool in_order;
};

static void on_change(void *ctx, struct connect_snapshot *s)
{
	struct changes *c = ctx;

	c->in_order = c->in_order && s->generation == c->last_generation + 1;
	c->last_generation = s->generation;
	c->calls++;
}

static int64_t fixed_wall(void *ctx)
{
	return *(const int64_t *)ctx;
}

static struct connect_identity *identity(struct changes *c)
{
	char err[256] = "";
	struct connect_identity *id;

	if (c != NULL)
		*c = (struct changes){.in_order = true};
	id = connect_identity_start(
		&(struct connect_identity_opts){
			.service = "users", .on_change = c ? on_change : NULL, .ctx = c},
		err, sizeof(err));
	assert_non_null(id);
	return id;
}

static enum mn_err feed(struct connect_identity *id, bool roots, const char *name, bool *changed,
			char *err, size_t errlen)
{
	struct answer a = load(name);
	enum mn_err e = roots ? connect_identity_feed_roots(id, a.body, a.len, a.index, changed,
							    err, errlen)
			      : connect_identity_feed_leaf(id, a.body, a.len, a.index, changed, err,
							   errlen);

	answer_free(&a);
	return e;
}

#define FEED_OK(id, roots, name, want_changed)                                                     \
	do {                                                                                       \
		char err_[512] = "";                                                               \
		bool ch_ = !(want_changed);                                                        \
		assert_int_equal(feed(id, roots, name, &ch_, err_, sizeof(err_)), MN_OK);          \
		assert_int_equal(ch_, want_changed);                                               \
	} while (0)

/* roots_1 then leaf_1: the first snapshot. */
static struct connect_identity *started(struct changes *c)
{
	struct connect_identity *id = identity(c);

	FEED_OK(id, true, "rotation_roots_1", false);
	assert_null(connect_identity_get(id));
	FEED_OK(id, false, "rotation_leaf_1", true);
	return id;
}

static void test_first_snapshot(void **state)
{
	struct changes c;
	struct connect_identity *id = started(&c);
	struct connect_snapshot *s = connect_identity_get(id);

	(void)state;
	assert_int_equal(connect_identity_wait_ready(id, 0), MN_OK);
	assert_non_null(s);
	assert_int_equal(s->generation, 1);
	assert_string_equal(s->trust_domain, TD);
	assert_int_equal(s->n_roots, 1);
	assert_string_equal(s->root_ids[0], ROOT_1);
	assert_string_equal(s->active_root_id, ROOT_1);
	assert_string_equal(s->leaf_serial, "08");
	assert_int_equal(s->leaf_id.kind, SPIFFE_SERVICE);
	assert_string_equal(s->leaf_id.service, "users");
	assert_string_equal(s->leaf_id.dc, "dc1");
	assert_int_equal(s->leaf_valid_after_ms, LEAF_1_AFTER);
	assert_int_equal(s->leaf_valid_before_ms, LEAF_1_BEFORE);
	assert_int_equal(s->roots_index, 9);
	assert_int_equal(s->leaf_index, 16);
	assert_int_equal(sk_X509_num(s->chain), 0);
	assert_int_equal(sk_X509_num(s->roots), 1);
	/* the objects are usable as they are: the key is the certificate's,
	 * and the leaf passes the peer check against its own snapshot */
	assert_int_equal(X509_check_private_key(s->leaf, s->key), 1);
	assert_int_equal(connect_verify_snapshot(
				 s, s->leaf, s->chain,
				 &(struct connect_verify_opts){.now_ms = LEAF_1_AFTER + 3600000,
							       .service = "users"},
				 NULL),
			 CONNECT_VERIFY_OK);
	assert_int_equal(c.calls, 1);
	connect_snapshot_release(s);
	connect_identity_destroy(id);
}

static void test_wait_ready_times_out(void **state)
{
	struct connect_identity *id = identity(NULL);
	uint64_t t0 = clock_monotonic_ms();

	(void)state;
	FEED_OK(id, true, "rotation_roots_1", false);
	assert_int_equal(connect_identity_wait_ready(id, 50), MN_TIMEOUT);
	assert_true(clock_monotonic_ms() - t0 >= 50);
	connect_identity_destroy(id);
}

static void test_index_only_is_no_change(void **state)
{
	struct changes c;
	struct connect_identity *id = started(&c);
	struct connect_snapshot *before = connect_identity_get(id), *after;
	struct answer a;
	json_t *j;
	bool changed = true;
	char err[256] = "";

	(void)state;
	/* after a CA configuration that kept the key, as captured: same root */
	FEED_OK(id, true, "rotation_roots_2", false);
	/* the same roots with another index and a root's ModifyIndex moved
	 * (what a configuration write that keeps the key can do) */
	a = load("rotation_roots_1");
	j = json_loadb(a.body, a.len, 0, NULL);
	assert_non_null(j);
	json_object_set_new(json_array_get(json_object_get(j, "Roots"), 0), "ModifyIndex",
			    json_integer(31));
	free(a.body);
	a.body = json_dumps(j, JSON_INDENT(4));
	json_decref(j);
	assert_int_equal(connect_identity_feed_roots(id, a.body, strlen(a.body), 31, &changed, err,
						     sizeof(err)),
			 MN_OK);
	assert_false(changed);
	answer_free(&a);
	/* the same leaf again */
	FEED_OK(id, false, "rotation_leaf_1", false);
	after = connect_identity_get(id);
	assert_ptr_equal(after, before);
	assert_int_equal(after->generation, 1);
	assert_int_equal(c.calls, 1);
	connect_snapshot_release(before);
	connect_snapshot_release(after);
	connect_identity_destroy(id);
}

static void test_rotation(void **state)
{
	struct changes c;
	struct connect_identity *id = started(&c);
	struct connect_snapshot *s1 = connect_identity_get(id), *s;

	(void)state;
	/* a new root ID is a change: the old leaf still chains to the old,
	 * inactive root */
	FEED_OK(id, true, "rotation_roots_3", true);
	s = connect_identity_get(id);
	assert_int_equal(s->generation, 2);
	assert_int_equal(s->n_roots, 2);
	assert_string_equal(s->root_ids[0], ROOT_1);
	assert_string_equal(s->root_ids[1], ROOT_2);
	assert_string_equal(s->active_root_id, ROOT_2);
	assert_string_equal(s->leaf_serial, "08");
	connect_snapshot_release(s);
	/* the re-signed leaf */
	FEED_OK(id, false, "rotation_leaf_3", true);
	s = connect_identity_get(id);
	assert_int_equal(s->generation, 3);
	assert_string_equal(s->leaf_serial, "0c");
	assert_int_equal(sk_X509_num(s->chain), 1);
	assert_int_equal(X509_check_private_key(s->leaf, s->key), 1);
	connect_snapshot_release(s);
	/* the first snapshot, still held, is whole and unchanged */
	assert_int_equal(s1->generation, 1);
	assert_string_equal(s1->leaf_serial, "08");
	assert_int_equal(s1->n_roots, 1);
	assert_int_equal(X509_check_private_key(s1->leaf, s1->key), 1);
	connect_snapshot_release(s1);
	assert_int_equal(c.calls, 3);
	assert_true(c.in_order);
	connect_identity_destroy(id);
}

static void test_rotation_leaf_first(void **state)
{
	struct changes c;
	struct connect_identity *id = started(&c);
	struct connect_snapshot *s;

	(void)state;
	/* the new leaf before the new roots: it reaches the old root through
	 * the cross-signed certificate after it */
	FEED_OK(id, false, "rotation_leaf_3", true);
	FEED_OK(id, true, "rotation_roots_3", true);
	s = connect_identity_get(id);
	assert_int_equal(s->generation, 3);
	assert_string_equal(s->leaf_serial, "0c");
	assert_string_equal(s->active_root_id, ROOT_2);
	connect_snapshot_release(s);
	connect_identity_destroy(id);
}

static void test_mismatched_key(void **state)
{
	struct changes c;
	struct connect_identity *id = started(&c);
	char *web_key = member("rotation_leaf_web", "PrivateKeyPEM");
	/* leaf_3's certificate with another key of the same CA */
	struct answer a = edited("rotation_leaf_3", "PrivateKeyPEM", web_key, NULL, NULL);
	struct connect_snapshot *s;
	bool changed = true;
	char err[256] = "";
	int fd = logcap_start(MN_LOG_WARN);

	(void)state;
	assert_int_equal(
		connect_identity_feed_leaf(id, a.body, a.len, 40, &changed, err, sizeof(err)),
		MN_INVALID);
	assert_false(changed);
	assert_string_equal(err, "the private key does not match the certificate");
	assert_int_equal(logcap_count(fd, "does not match the certificate"), 1);
	s = connect_identity_get(id);
	assert_int_equal(s->generation, 1);
	assert_string_equal(s->leaf_serial, "08");
	connect_snapshot_release(s);
	/* refused, not held: the roots of the rotation bring only themselves */
	FEED_OK(id, true, "rotation_roots_3", true);
	s = connect_identity_get(id);
	assert_string_equal(s->leaf_serial, "08");
	connect_snapshot_release(s);
	log_set_fd(2);
	close(fd);
	answer_free(&a);
	free(web_key);
	connect_identity_destroy(id);
}

static void test_leaf_of_another_service(void **state)
{
	struct changes c;
	struct connect_identity *id = started(&c);
	char *web_uri = member("rotation_leaf_web", "ServiceURI");
	char *users_uri = member("rotation_leaf_1", "ServiceURI");
	struct answer a;
	struct connect_snapshot *s;
	char err[256] = "";

	(void)state;
	assert_int_equal(feed(id, false, "rotation_leaf_web", NULL, err, sizeof(err)), MN_INVALID);
	assert_string_equal(err, "a leaf of service 'web', not 'users'");
	/* web's certificate and key in an answer that says it is users': the
	 * certificate's URI, not the answer, decides */
	a = edited("rotation_leaf_web", "Service", "users", "ServiceURI", users_uri);
	assert_int_equal(connect_identity_feed_leaf(id, a.body, a.len, 41, NULL, err, sizeof(err)),
			 MN_INVALID);
	assert_non_null(strstr(err, "identity of another service"));
	answer_free(&a);
	(void)web_uri;
	s = connect_identity_get(id);
	assert_int_equal(s->generation, 1);
	assert_int_equal(c.calls, 1);
	connect_snapshot_release(s);
	free(web_uri);
	free(users_uri);
	connect_identity_destroy(id);
}

static void test_other_ca_held_until_its_roots(void **state)
{
	struct changes c;
	struct connect_identity *id = started(&c);
	struct connect_snapshot *s;
	char err[256] = "";

	(void)state;
	/* another agent's leaf: it does not chain to our roots; refused, held */
	assert_int_equal(feed(id, false, "leaf", NULL, err, sizeof(err)), MN_INVALID);
	assert_non_null(strstr(err, "not signed by a root of the trust domain"));
	s = connect_identity_get(id);
	assert_string_equal(s->trust_domain, TD);
	connect_snapshot_release(s);
	/* its roots come: the held leaf goes with them */
	FEED_OK(id, true, "roots", true);
	s = connect_identity_get(id);
	assert_int_equal(s->generation, 2);
	assert_string_equal(s->trust_domain, TD_OTHER);
	assert_string_equal(s->leaf_serial, "08");
	assert_int_equal(s->leaf_index, 15);
	connect_snapshot_release(s);
	connect_identity_destroy(id);
}

static void test_roots_held_until_their_leaf(void **state)
{
	struct changes c;
	struct connect_identity *id = started(&c);
	struct connect_snapshot *s;
	char err[256] = "";

	(void)state;
	/* roots that do not sign our leaf (a CA replaced without a
	 * cross-signed root): held, the last good identity stays */
	assert_int_equal(feed(id, true, "roots", NULL, err, sizeof(err)), MN_INVALID);
	assert_non_null(strstr(err, "leaf serial 08 against roots at index"));
	s = connect_identity_get(id);
	assert_string_equal(s->trust_domain, TD);
	connect_snapshot_release(s);
	FEED_OK(id, false, "leaf", true);
	s = connect_identity_get(id);
	assert_string_equal(s->trust_domain, TD_OTHER);
	assert_int_equal(s->generation, 2);
	connect_snapshot_release(s);
	connect_identity_destroy(id);
}

static void test_bad_answers(void **state)
{
	static const char *const bodies[] = {
		"",
		"{",
		"null",
		"[]",
		"{\"Roots\": []}",
		"{\"ActiveRootID\": \"a\", \"TrustDomain\": \"x.consul\", \"Roots\": [{\"ID\": "
		"\"a\", \"Name\": \"n\", \"RootCert\": \"-----BEGIN CERTIFICATE-----\\nAAAA\\n"
		"-----END CERTIFICATE-----\\n\", \"Active\": true}]}",
	};
	struct changes c;
	struct connect_identity *id = started(&c);
	struct connect_snapshot *s;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		err[0] = '\0';
		assert_int_equal(connect_identity_feed_roots(id, bodies[i], strlen(bodies[i]), 50,
							     NULL, err, sizeof(err)),
				 MN_INVALID);
		assert_true(err[0] != '\0');
		err[0] = '\0';
		assert_int_equal(connect_identity_feed_leaf(id, bodies[i], strlen(bodies[i]), 50,
							    NULL, err, sizeof(err)),
				 MN_INVALID);
		assert_true(err[0] != '\0');
	}
	assert_non_null(strstr(err, "not a certificate") ? err : "");
	/* a leaf whose CertPEM has armour around no certificate */
	struct answer a = edited("rotation_leaf_1", "CertPEM",
				 "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
				 NULL, NULL);
	assert_int_equal(connect_identity_feed_leaf(id, a.body, a.len, 51, NULL, err, sizeof(err)),
			 MN_INVALID);
	assert_string_equal(err, "CertPEM is not a certificate");
	answer_free(&a);
	s = connect_identity_get(id);
	assert_int_equal(s->generation, 1);
	assert_int_equal(c.calls, 1);
	connect_snapshot_release(s);
	connect_identity_destroy(id);
}

static void test_view_and_renewal(void **state)
{
	struct connect_identity *id = started(NULL);
	struct connect_snapshot *s = connect_identity_get(id);
	int64_t life = LEAF_1_BEFORE - LEAF_1_AFTER, now = LEAF_1_AFTER + 3600 * 1000;
	int64_t due = LEAF_1_AFTER + life / 10 * 9;
	json_t *v;
	int fd;

	(void)state;
	v = connect_snapshot_view(s, now);
	assert_non_null(v);
	assert_true(json_is_true(json_object_get(v, "ready")));
	assert_string_equal(json_string_value(json_object_get(v, "trust_domain")), TD);
	assert_string_equal(json_string_value(json_object_get(v, "service")), "users");
	assert_string_equal(json_string_value(json_object_get(v, "leaf_serial")), "08");
	assert_string_equal(json_string_value(json_object_get(v, "leaf_valid_after")),
			    "2026-12-08T01:24:11Z");
	assert_string_equal(json_string_value(json_object_get(v, "leaf_expires")),
			    "2026-12-11T01:24:11Z");
	assert_int_equal(json_integer_value(json_object_get(v, "leaf_expires_in_seconds")),
			 71 * 3600);
	assert_true(json_is_false(json_object_get(v, "renewal_overdue")));
	assert_string_equal(json_string_value(json_array_get(json_object_get(v, "root_ids"), 0)),
			    ROOT_1);
	assert_string_equal(json_string_value(json_object_get(v, "active_root_id")), ROOT_1);
	assert_int_equal(json_integer_value(json_object_get(v, "generation")), 1);
	json_decref(v);
	v = connect_snapshot_view(NULL, now);
	assert_true(json_is_false(json_object_get(v, "ready")));
	json_decref(v);

	/* 90% of 72 h: 64 h 48 min after ValidAfter */
	assert_false(connect_snapshot_renewal_overdue(s, due - 1));
	assert_true(connect_snapshot_renewal_overdue(s, due));
	v = connect_snapshot_view(s, due);
	assert_true(json_is_true(json_object_get(v, "renewal_overdue")));
	json_decref(v);

	fd = logcap_start(MN_LOG_WARN);
	assert_false(connect_identity_check_renewal(id, due - 1));
	assert_true(connect_identity_check_renewal(id, due));
	assert_false(connect_identity_check_renewal(id, due + 60000)); /* once per leaf */
	assert_int_equal(logcap_count(fd, "past 90% of its validity and not renewed"), 1);
	/* a new leaf is warned about afresh when its turn comes */
	FEED_OK(id, true, "rotation_roots_3", true);
	FEED_OK(id, false, "rotation_leaf_3", true);
	assert_false(connect_identity_check_renewal(id, due));
	assert_true(connect_identity_check_renewal(id, LEAF_1_BEFORE));
	assert_int_equal(logcap_count(fd, "past 90% of its validity and not renewed"), 2);
	log_set_fd(2);
	close(fd);
	connect_snapshot_release(s);
	connect_identity_destroy(id);
}

/* The rendered text of 'm' (caller frees). */
static char *render(struct metrics *m)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	assert_int_equal(metrics_render(m, &b), MN_OK);
	return buf_steal(&b, NULL);
}

static void assert_rendered(struct metrics *m, const char *line)
{
	char *text = render(m);

	if (strstr(text, line) == NULL)
		fail_msg("no '%s' in:\n%s", line, text);
	free(text);
}

static void test_metric(void **state)
{
	struct metrics *m = metrics_create();
	struct connect_metrics cm = {0};
	int64_t wall = LEAF_1_AFTER;
	struct connect_identity *id;

	(void)state;
	assert_non_null(m);
	cm.wall_ms = fixed_wall;
	cm.wall_ctx = &wall;
	assert_int_equal(connect_metrics_register(&cm, m), MN_OK);
	assert_rendered(m, "\nmeshnode_connect_leaf_expiry_seconds NaN\n");
	id = started(NULL);
	atomic_store(&cm.identity, id);
	assert_rendered(m, "\nmeshnode_connect_leaf_expiry_seconds 259200\n");
	wall = LEAF_1_BEFORE + 5000;
	assert_rendered(m, "\nmeshnode_connect_leaf_expiry_seconds -5\n");
	metrics_destroy(m);
	connect_identity_destroy(id);
}

static void test_start_refusals(void **state)
{
	/* "web.v2": a name spiffe_parse() refuses in a leaf, so no identity could
	 * ever come for it */
	static const char *const names[] = {"", "a/b", "users?x=1", "we b", "web.v2", NULL};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		err[0] = '\0';
		assert_null(connect_identity_start(
			&(struct connect_identity_opts){.service = names[i]}, err, sizeof(err)));
		assert_non_null(strstr(err, "not a service name"));
	}
	connect_identity_destroy(NULL);
	connect_identity_stop(NULL);
	connect_snapshot_release(NULL);
	assert_null(connect_snapshot_ref(NULL));
}

/* Readers take and drop snapshots while the roots flip between one and
 * two: each one seen is whole (the sanitizer build checks the memory). */
struct reader {
	struct connect_identity *id;
	atomic_bool stop;
	unsigned seen, bad;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	for (unsigned i = 0; i < 200000 && !atomic_load(&r->stop); i++) {
		struct connect_snapshot *s = connect_identity_get(r->id);

		if (s->n_roots != (strcmp(s->active_root_id, ROOT_1) == 0 ? 1u : 2u) ||
		    X509_check_private_key(s->leaf, s->key) != 1)
			r->bad++;
		r->seen++;
		connect_snapshot_release(s);
	}
	return NULL;
}

static void test_readers_see_whole_snapshots(void **state)
{
	struct reader r = {.id = started(NULL)};
	struct answer one = load("rotation_roots_1"), two = load("rotation_roots_3");
	pthread_t t;
	struct connect_snapshot *s;

	(void)state;
	atomic_init(&r.stop, false);
	assert_int_equal(pthread_create(&t, NULL, reader_main, &r), 0);
	for (int i = 0; i < 200; i++) {
		struct answer *a = i % 2 ? &one : &two;
		bool changed = false;
		char err[256];

		assert_int_equal(connect_identity_feed_roots(r.id, a->body, a->len, 100 + i,
							     &changed, err, sizeof(err)),
				 MN_OK);
		assert_true(changed);
	}
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	assert_int_equal(r.bad, 0);
	assert_true(r.seen > 0);
	s = connect_identity_get(r.id);
	assert_int_equal(s->generation, 201);
	connect_snapshot_release(s);
	answer_free(&one);
	answer_free(&two);
	connect_identity_destroy(r.id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_snapshot),
		cmocka_unit_test(test_wait_ready_times_out),
		cmocka_unit_test(test_index_only_is_no_change),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_rotation_leaf_first),
		cmocka_unit_test(test_mismatched_key),
		cmocka_unit_test(test_leaf_of_another_service),
		cmocka_unit_test(test_other_ca_held_until_its_roots),
		cmocka_unit_test(test_roots_held_until_their_leaf),
		cmocka_unit_test(test_bad_answers),
		cmocka_unit_test(test_view_and_renewal),
		cmocka_unit_test(test_metric),
		cmocka_unit_test(test_start_refusals),
		cmocka_unit_test(test_readers_see_whole_snapshots),
	};
	log_set_level(MN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
