#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "peers/retry.h"

static void test_idempotent_methods(void **state)
{
	(void)state;
	assert_true(retry_idempotent("GET"));
	assert_true(retry_idempotent("PUT"));
	assert_true(retry_idempotent("DELETE"));
	assert_true(retry_idempotent("HEAD"));
	assert_false(retry_idempotent("POST"));
	assert_false(retry_idempotent("PATCH"));
}

static void test_post_retried_only_when_nothing_was_sent(void **state)
{
	(void)state;
	assert_true(retry_allowed("POST", PEER_FAIL_CONNECT, 1, 2));
	/* a refused TLS identity ends the attempt in the handshake: nothing sent */
	assert_true(retry_allowed("POST", PEER_FAIL_IDENTITY, 1, 2));
	assert_false(retry_allowed("POST", PEER_FAIL_TIMEOUT, 1, 2));
	assert_false(retry_allowed("POST", PEER_FAIL_5XX, 1, 2));
	assert_false(retry_allowed("POST", PEER_FAIL_IO, 1, 2));
	assert_true(retry_allowed("GET", PEER_FAIL_TIMEOUT, 1, 2));
	assert_true(retry_allowed("GET", PEER_FAIL_5XX, 1, 2));
	assert_false(retry_allowed("GET", PEER_FAIL_NONE, 1, 2));
}

static void test_retry_count_bounded(void **state)
{
	(void)state;
	assert_true(retry_allowed("GET", PEER_FAIL_CONNECT, 2, 2));
	assert_false(retry_allowed("GET", PEER_FAIL_CONNECT, 3, 2)); /* 1 + 2 retries done */
	assert_false(retry_allowed("GET", PEER_FAIL_CONNECT, 1, 0));
}

static void test_delay_capped_jittered_and_within_deadline(void **state)
{
	struct backoff b;
	uint64_t d;
	(void)state;

	backoff_init(&b, 20, 200, 9);
	assert_true(retry_delay(&b, 0, 10000, &d));
	assert_in_range(d, 10, 20);
	assert_true(retry_delay(&b, 0, 10000, &d));
	assert_in_range(d, 20, 40);
	assert_true(retry_delay(&b, 0, 10000, &d));
	assert_in_range(d, 40, 80);
	assert_true(retry_delay(&b, 0, 10000, &d));
	assert_in_range(d, 80, 160);
	for (int i = 0; i < 10; i++) {
		assert_true(retry_delay(&b, 0, 10000, &d));
		assert_in_range(d, 100, 200);
	}
	/* near the deadline the pause leaves the attempt half the time left */
	assert_true(retry_delay(&b, 9900, 10000, &d));
	assert_true(d <= 50);
	assert_false(retry_delay(&b, 10000, 10000, &d));
	assert_false(retry_delay(&b, 10001, 10000, &d));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idempotent_methods),
		cmocka_unit_test(test_post_retried_only_when_nothing_was_sent),
		cmocka_unit_test(test_retry_count_bounded),
		cmocka_unit_test(test_delay_capped_jittered_and_within_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
