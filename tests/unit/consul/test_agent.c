#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "consul/agent.h"

static void test_registration_payload(void **state)
{
	const char *tags[] = {"v1", "primary"};
	const char *mk[] = {"team"};
	const char *mv[] = {"core"};
	struct consul_service svc = {
		.id = "users-host-8080", .name = "users", .tags = tags, .n_tags = 2,
		.meta_keys = mk, .meta_values = mv, .n_meta = 1, .version = "0.1.0",
		.address = "127.0.0.1", .port = 8080,
		.check_url = "http://127.0.0.1:8080/health", .check_interval_ms = 10000,
		.check_timeout_ms = 2000, .deregister_after_ms = 60000,
	};
	json_t *o = consul_service_to_json(&svc, false), *check;
	(void)state;

	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "ID")), "users-host-8080");
	assert_string_equal(json_string_value(json_object_get(o, "Name")), "users");
	assert_string_equal(json_string_value(json_object_get(o, "Address")), "127.0.0.1");
	assert_int_equal(json_integer_value(json_object_get(o, "Port")), 8080);
	assert_int_equal(json_array_size(json_object_get(o, "Tags")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "Tags"), 1)), "primary");
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "Meta"), "version")), "0.1.0");
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "Meta"), "team")), "core");
	check = json_object_get(o, "Check");
	assert_string_equal(json_string_value(json_object_get(check, "HTTP")), "http://127.0.0.1:8080/health");
	assert_string_equal(json_string_value(json_object_get(check, "Interval")), "10000ms");
	assert_string_equal(json_string_value(json_object_get(check, "Timeout")), "2000ms");
	assert_string_equal(json_string_value(json_object_get(check, "DeregisterCriticalServiceAfter")), "60000ms");
	/* no Status: Consul's default, critical until the agent's first check */
	assert_null(json_object_get(check, "Status"));
	assert_null(json_object_get(o, "Connect"));
	json_decref(o);
}

/* connect.enabled: the node registers as Connect native, so the agent
 * signs it a leaf and lists it in /v1/health/connect/<service>. */
static void test_connect_native(void **state)
{
	struct consul_service svc = {
		.id = "a", .name = "users", .version = "0.1.0", .address = "127.0.0.1", .port = 1,
		.check_url = "http://127.0.0.1:2/health", .connect_native = true,
	};
	json_t *o = consul_service_to_json(&svc, false);
	(void)state;

	assert_non_null(o);
	assert_true(json_is_true(json_object_get(json_object_get(o, "Connect"), "Native")));
	assert_int_equal(json_object_size(json_object_get(o, "Connect")), 1);
	json_decref(o);
}

/* A caller that has seen its check URL answer registers the check passing
 * ("Status" of Consul's check definition; 1.8.7 honours it: the check is
 * passing from the moment it appears). */
static void test_check_starts_passing_when_asked(void **state)
{
	struct consul_service svc = {
		.id = "a", .name = "a", .version = "0.1.0", .address = "127.0.0.1", .port = 1,
		.check_url = "http://127.0.0.1:1/health", .check_interval_ms = 10000,
		.check_timeout_ms = 2000, .deregister_after_ms = 60000,
	};
	json_t *o = consul_service_to_json(&svc, true);
	json_t *check = json_object_get(o, "Check");
	(void)state;

	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(check, "Status")), "passing");
	assert_string_equal(json_string_value(json_object_get(check, "HTTP")), "http://127.0.0.1:1/health");
	json_decref(o);
}

static void test_meta_version_is_the_build(void **state)
{
	const char *mk[] = {"version"};
	const char *mv[] = {"spoofed"};
	struct consul_service svc = {
		.id = "a", .name = "a", .meta_keys = mk, .meta_values = mv, .n_meta = 1,
		.version = "0.1.0", .address = "127.0.0.1", .port = 1, .check_url = "http://x/",
	};
	json_t *o = consul_service_to_json(&svc, false);
	(void)state;

	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "Meta"), "version")), "0.1.0");
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registration_payload),
		cmocka_unit_test(test_meta_version_is_the_build),
		cmocka_unit_test(test_check_starts_passing_when_asked),
		cmocka_unit_test(test_connect_native),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
