#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "core/hostport.h"

static void test_ipv4_address_and_port(void **state)
{
	struct sockaddr_storage sa;
	struct sockaddr_in *in = (struct sockaddr_in *)&sa;
	socklen_t len = 0;
	(void)state;

	assert_true(hostport_parse_ip("127.0.0.1:8600", &sa, &len));
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(in->sin_family, AF_INET);
	assert_int_equal(ntohs(in->sin_port), 8600);
	assert_int_equal(ntohl(in->sin_addr.s_addr), 0x7f000001);
	assert_true(hostport_parse_ip("0.0.0.0:1", NULL, NULL));
	assert_true(hostport_parse_ip("10.1.2.3:65535", NULL, NULL));
	/* an IPv4 address in brackets is still an address */
	assert_true(hostport_parse_ip("[127.0.0.1]:53", &sa, &len));
	assert_int_equal(in->sin_family, AF_INET);
}

static void test_ipv6_bracketed_or_bare(void **state)
{
	struct sockaddr_storage sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
	socklen_t len = 0;
	static const unsigned char loopback[16] = {[15] = 1};
	(void)state;

	assert_true(hostport_parse_ip("[::1]:8600", &sa, &len));
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(in6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(in6->sin6_port), 8600);
	assert_memory_equal(&in6->sin6_addr, loopback, 16);
	/* the last colon splits: "::1" and 8600 */
	assert_true(hostport_parse_ip("::1:8600", &sa, &len));
	assert_int_equal(in6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(in6->sin6_port), 8600);
	assert_true(hostport_parse_ip("[fe80::1:2:3:4]:53", NULL, NULL));
	assert_true(
		hostport_parse_ip("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:1", NULL, NULL));
}

/* What both former parsers (the consul.dns_address check and the DNS
 * client) refused. */
static void test_refused(void **state)
{
	static const char *const bad[] = {
		"",
		":",
		"x:",
		"127.0.0.1",
		"127.0.0.1:",
		":8600",
		"localhost:8600",
		"h:99999",
		"127.0.0.1:0",
		"127.0.0.1:65536",
		"127.0.0.1:-1",
		"127.0.0.1:86x",
		"127.0.0.1:99999999999999999999999",
		"127.0.0.1 :8600",
		"[::1]",
		"[::1]8600",
		"[::1]:",
		"[::1:8600",
		"[]:8600",
		"[localhost]:8600",
		"::1",
		"1.2.3.4.5:80",
		"[0000000000000000000000000000000000000000000000000000000000000000::1]:80",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (hostport_parse_ip(bad[i], NULL, NULL))
			fail_msg("accepted '%s'", bad[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv4_address_and_port),
		cmocka_unit_test(test_ipv6_bracketed_or_bare),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
