#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "config/store.h"
#include "http/system_handlers.h"

/* A config store for a node running 'modules' (MESHNODE_SERVICE_MODULES). */
static struct config_store *store_with_modules(const char *modules)
{
	char var[128];
	char *env[] = {var, NULL};
	struct config_sources src = {.environ = env, .hostname = "h"};
	struct config *cfg;

	snprintf(var, sizeof(var), "MESHNODE_SERVICE_MODULES=%s", modules);
	assert_int_equal(config_load(&src, &cfg, NULL, NULL), MN_OK);
	return config_store_create(cfg);
}

static void test_404_names_the_module_not_run(void **state)
{
	struct system_handlers s = {.config = store_with_modules("users")};
	char msg[256];
	(void)state;

	assert_true(system_handlers_explain_not_found(&s, "/orders", msg, sizeof(msg)));
	assert_string_equal(msg, "/orders is served by the 'orders' module, which this node "
				 "does not run (service.modules)");
	memset(msg, 0, sizeof(msg));
	assert_true(system_handlers_explain_not_found(&s, "/orders/12", msg, sizeof(msg)));
	assert_string_equal(msg, "/orders is served by the 'orders' module, which this node "
				 "does not run (service.modules)");
	config_store_destroy(s.config);

	s.config = store_with_modules("orders");
	assert_true(system_handlers_explain_not_found(&s, "/users/1", msg, sizeof(msg)));
	assert_string_equal(msg, "/users is served by the 'users' module, which this node "
				 "does not run (service.modules)");
	config_store_destroy(s.config);
}

/* A module the node runs, a path that only begins like a module's, or
 * no module's path at all: no explanation, the plain 404. */
static void test_404_plain_otherwise(void **state)
{
	struct system_handlers s = {.config = store_with_modules("users,orders")};
	char msg[256] = "untouched";
	(void)state;

	assert_false(system_handlers_explain_not_found(&s, "/orders/12", msg, sizeof(msg)));
	assert_false(system_handlers_explain_not_found(&s, "/users", msg, sizeof(msg)));
	config_store_destroy(s.config);

	s.config = store_with_modules("users");
	assert_false(system_handlers_explain_not_found(&s, "/ordersx", msg, sizeof(msg)));
	assert_false(system_handlers_explain_not_found(&s, "/order", msg, sizeof(msg)));
	assert_false(system_handlers_explain_not_found(&s, "orders", msg, sizeof(msg)));
	assert_false(system_handlers_explain_not_found(&s, "/nothing", msg, sizeof(msg)));
	assert_false(system_handlers_explain_not_found(&s, "/", msg, sizeof(msg)));
	assert_false(system_handlers_explain_not_found(&s, "//orders", msg, sizeof(msg)));
	assert_string_equal(msg, "untouched");
	config_store_destroy(s.config);
}

/* A short buffer holds a truncated, terminated message. */
static void test_404_truncated(void **state)
{
	struct system_handlers s = {.config = store_with_modules("users")};
	char msg[8];
	(void)state;

	assert_true(system_handlers_explain_not_found(&s, "/orders", msg, sizeof(msg)));
	assert_string_equal(msg, "/orders");
	config_store_destroy(s.config);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_404_names_the_module_not_run),
		cmocka_unit_test(test_404_plain_otherwise),
		cmocka_unit_test(test_404_truncated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
