/* The traceparent header of peer calls (src/peers/peer_traceparent.c,
 * W3C trace context version 00) on its own: a well-formed caller's trace id
 * and flags are kept with a new span id of ours; anything else starts a new
 * sampled trace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "../../../src/peers/peer_internal.h"

#define PREFIX "traceparent: "
#define IN     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"

static bool lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* "traceparent: 00-<32 hex>-<16 hex>-<2 hex>", a span id that is not zero
 * (its last digit odd); the value part in *value. */
static void assert_well_formed(const char *out, const char **value)
{
	const char *v = out + strlen(PREFIX);

	assert_int_equal(strncmp(out, PREFIX, strlen(PREFIX)), 0);
	assert_int_equal(strlen(v), 55);
	assert_int_equal(strncmp(v, "00-", 3), 0);
	assert_true(lower_hex(v + 3, 32));
	assert_int_equal(v[35], '-');
	assert_true(lower_hex(v + 36, 16));
	assert_true(strchr("13579bdf", v[51]) != NULL);
	assert_int_equal(v[52], '-');
	assert_true(lower_hex(v + 53, 2));
	*value = v;
}

static void test_caller_trace_kept_with_a_new_span(void **state)
{
	char a[80], b[80];
	const char *va, *vb;

	(void)state;
	peer_traceparent(IN, a);
	peer_traceparent(IN, b);
	assert_well_formed(a, &va);
	assert_well_formed(b, &vb);
	/* the trace id and the caller's flags */
	assert_memory_equal(va, IN, 36);
	assert_string_equal(va + 52, "-00");
	/* a span of ours, new on each call */
	assert_memory_not_equal(va + 36, IN + 36, 16);
	assert_memory_not_equal(va + 36, vb + 36, 16);
}

static void test_no_caller_trace_starts_a_sampled_one(void **state)
{
	char a[80], b[80];
	const char *va, *vb;

	(void)state;
	peer_traceparent(NULL, a);
	peer_traceparent(NULL, b);
	assert_well_formed(a, &va);
	assert_well_formed(b, &vb);
	assert_string_equal(va + 52, "-01");
	assert_memory_not_equal(va + 3, vb + 3, 32);
}

static void test_malformed_caller_trace_starts_a_new_one(void **state)
{
	static const char *const bad[] = {
		"",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   /* short */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-000", /* long */
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-00",  /* upper case */
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",  /* separator */
		"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-00",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_00",
		"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",	   /* version */
		"00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-00",	   /* trace id */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-00",	   /* span id */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",	   /* flags */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\nX: y", /* injection */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char out[80];
		const char *v;

		peer_traceparent(bad[i], out);
		assert_well_formed(out, &v);
		assert_memory_not_equal(v + 3, IN + 3, 32);
		assert_string_equal(v + 52, "-01");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_caller_trace_kept_with_a_new_span),
		cmocka_unit_test(test_no_caller_trace_starts_a_sampled_one),
		cmocka_unit_test(test_malformed_caller_trace_starts_a_new_one),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
