#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/ipaddr.h"

static void test_unspecified_addresses(void **state)
{
	(void)state;
	assert_true(ipaddr_is_any("0.0.0.0"));
	assert_true(ipaddr_is_any("::"));
	assert_true(ipaddr_is_any("0:0::0"));
	assert_false(ipaddr_is_any("127.0.0.1"));
	assert_false(ipaddr_is_any("::1"));
	assert_false(ipaddr_is_any("0.0.0.1"));
	/* not numeric: never unspecified */
	assert_false(ipaddr_is_any(""));
	assert_false(ipaddr_is_any("0"));
	assert_false(ipaddr_is_any("0.0.0.0 "));
	assert_false(ipaddr_is_any("localhost"));
}

static void test_overlap(void **state)
{
	(void)state;
	assert_true(ipaddr_overlap("127.0.0.1", "127.0.0.1"));
	/* an unspecified address takes every address of the host */
	assert_true(ipaddr_overlap("0.0.0.0", "127.0.0.1"));
	assert_true(ipaddr_overlap("10.0.0.5", "0.0.0.0"));
	assert_true(ipaddr_overlap("::", "127.0.0.1"));
	assert_true(ipaddr_overlap("::1", "0:0:0:0:0:0:0:1"));
	assert_false(ipaddr_overlap("127.0.0.1", "127.0.0.2"));
	assert_false(ipaddr_overlap("127.0.0.1", "10.0.0.5"));
	assert_false(ipaddr_overlap("127.0.0.1", "::1"));
	/* names compare as written */
	assert_true(ipaddr_overlap("localhost", "localhost"));
	assert_false(ipaddr_overlap("localhost", "127.0.0.1"));
}

static void test_url_host(void **state)
{
	char out[64];
	(void)state;

	assert_true(ipaddr_url_host("127.0.0.1", out, sizeof(out)));
	assert_string_equal(out, "127.0.0.1");
	assert_true(ipaddr_url_host("10.1.2.3", out, sizeof(out)));
	assert_string_equal(out, "10.1.2.3");
	/* the agent's check cannot connect to "any address": loopback */
	assert_true(ipaddr_url_host("0.0.0.0", out, sizeof(out)));
	assert_string_equal(out, "127.0.0.1");
	assert_true(ipaddr_url_host("::", out, sizeof(out)));
	assert_string_equal(out, "[::1]");
	assert_true(ipaddr_url_host("fe80::1", out, sizeof(out)));
	assert_string_equal(out, "[fe80::1]");
	assert_true(ipaddr_url_host("node.local", out, sizeof(out)));
	assert_string_equal(out, "node.local");
}

static void test_url_host_too_long(void **state)
{
	char out[8];
	(void)state;

	memset(out, 'x', sizeof(out));
	assert_false(ipaddr_url_host("127.0.0.1", out, sizeof(out)));
	assert_string_equal(out, "");
	assert_false(ipaddr_url_host("::", out, 5));
	assert_string_equal(out, "");
	assert_true(ipaddr_url_host("::", out, 6));
	assert_string_equal(out, "[::1]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unspecified_addresses),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_url_host),
		cmocka_unit_test(test_url_host_too_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
