/* The peer client's index of instance states (src/peers/peer_index.c) on
 * its own: an instance is the pair (node, id), the index grows past any
 * bucket count, foreach takes out what its callback says and drops the
 * index's reference, release drops them all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../src/peers/peer_internal.h"

static struct inst_state *state_new(const char *node, const char *id)
{
	struct inst_state *st = calloc(1, sizeof(*st));

	assert_non_null(st);
	st->node = strdup(node);
	st->id = strdup(id);
	assert_non_null(st->node);
	assert_non_null(st->id);
	atomic_init(&st->refs, 1);
	pthread_mutex_init(&st->lock, NULL);
	return st;
}

static void test_empty_index_finds_nothing(void **state)
{
	struct peer_index ix = {0};

	(void)state;
	assert_null(peer_index_find(&ix, "node1", "users-1"));
	assert_int_equal(peer_index_count(&ix), 0);
	peer_index_release(&ix);
}

/* Consul keeps service IDs unique per agent only: the same id on two nodes
 * is two instances, and the node and id do not run into each other. */
static void test_instance_is_node_and_id(void **state)
{
	struct peer_index ix = {0};
	struct inst_state *a = state_new("node1", "users-1");
	struct inst_state *b = state_new("node2", "users-1");
	struct inst_state *c = state_new("ab", "c");
	struct inst_state *d = state_new("a", "bc");
	struct inst_state *e = state_new("", "users-1");

	(void)state;
	assert_true(peer_index_insert(&ix, a));
	assert_true(peer_index_insert(&ix, b));
	assert_true(peer_index_insert(&ix, c));
	assert_true(peer_index_insert(&ix, d));
	assert_true(peer_index_insert(&ix, e));
	assert_int_equal(peer_index_count(&ix), 5);
	assert_ptr_equal(peer_index_find(&ix, "node1", "users-1"), a);
	assert_ptr_equal(peer_index_find(&ix, "node2", "users-1"), b);
	assert_ptr_equal(peer_index_find(&ix, "ab", "c"), c);
	assert_ptr_equal(peer_index_find(&ix, "a", "bc"), d);
	assert_ptr_equal(peer_index_find(&ix, "", "users-1"), e);
	assert_null(peer_index_find(&ix, "node3", "users-1"));
	assert_null(peer_index_find(&ix, "node1", "users-2"));
	assert_null(peer_index_find(&ix, "abc", ""));
	peer_index_release(&ix);
	assert_int_equal(peer_index_count(&ix), 0);
	assert_null(peer_index_find(&ix, "node1", "users-1"));
}

#define MANY 5000

/* Far past the first bucket count (64): every state is found after each
 * growth, and only its own. */
static void test_grows_and_finds_every_instance(void **state)
{
	struct peer_index ix = {0};
	static struct inst_state *st[MANY];
	char node[32], id[32];

	(void)state;
	for (size_t i = 0; i < MANY; i++) {
		snprintf(node, sizeof(node), "node%zu", i % 7);
		snprintf(id, sizeof(id), "users-%zu", i);
		assert_null(peer_index_find(&ix, node, id));
		st[i] = state_new(node, id);
		assert_true(peer_index_insert(&ix, st[i]));
		assert_int_equal(peer_index_count(&ix), i + 1);
	}
	for (size_t i = 0; i < MANY; i++) {
		snprintf(node, sizeof(node), "node%zu", i % 7);
		snprintf(id, sizeof(id), "users-%zu", i);
		assert_ptr_equal(peer_index_find(&ix, node, id), st[i]);
		snprintf(node, sizeof(node), "node%zu", (i + 1) % 7);
		assert_null(peer_index_find(&ix, node, id));
	}
	peer_index_release(&ix);
}

struct visit {
	size_t seen;
	struct inst_state *keep_alive; /* a state the test holds a reference to */
};

/* Takes out the states of even numbered ids. */
static bool drop_even(void *ctx, struct inst_state *st)
{
	struct visit *v = ctx;

	v->seen++;
	return atoi(st->id + strlen("users-")) % 2 == 0;
}

static bool drop_none(void *ctx, struct inst_state *st)
{
	struct visit *v = ctx;

	(void)st;
	v->seen++;
	return false;
}

/* foreach visits every state once, takes out those its callback says,
 * keeps the others reachable, and drops only the index's reference: a
 * state someone else holds stays alive. */
static void test_foreach_takes_out_what_fn_says(void **state)
{
	struct peer_index ix = {0};
	struct inst_state *held;
	struct visit v = {0};
	char id[32];

	(void)state;
	for (size_t i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "users-%zu", i);
		assert_true(peer_index_insert(&ix, state_new("node1", id)));
	}
	held = peer_index_find(&ix, "node1", "users-42");
	assert_non_null(held);
	atomic_fetch_add(&held->refs, 1);

	peer_index_foreach(&ix, drop_even, &v);
	assert_int_equal(v.seen, 200);
	assert_int_equal(peer_index_count(&ix), 100);
	for (size_t i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "users-%zu", i);
		if (i % 2)
			assert_non_null(peer_index_find(&ix, "node1", id));
		else
			assert_null(peer_index_find(&ix, "node1", id));
	}
	/* out of the index, alive with the test's reference alone */
	assert_int_equal(atomic_load(&held->refs), 1);
	assert_string_equal(held->id, "users-42");
	inst_state_unref(held);

	v.seen = 0;
	peer_index_foreach(&ix, drop_none, &v);
	assert_int_equal(v.seen, 100);
	assert_int_equal(peer_index_count(&ix), 100);
	peer_index_release(&ix);
}

/* Release drops the index's references: a state still held elsewhere (a
 * snapshot's table) outlives the index. */
static void test_release_drops_only_the_index_reference(void **state)
{
	struct peer_index ix = {0};
	struct inst_state *st = state_new("node1", "users-1");

	(void)state;
	assert_true(peer_index_insert(&ix, st));
	atomic_fetch_add(&st->refs, 1);
	peer_index_release(&ix);
	assert_int_equal(atomic_load(&st->refs), 1);
	assert_string_equal(st->node, "node1");
	inst_state_unref(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_index_finds_nothing),
		cmocka_unit_test(test_instance_is_node_and_id),
		cmocka_unit_test(test_grows_and_finds_every_instance),
		cmocka_unit_test(test_foreach_takes_out_what_fn_says),
		cmocka_unit_test(test_release_drops_only_the_index_reference),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
