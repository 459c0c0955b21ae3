/* core/json_load: jansson's parser with allocation failures told apart.
 * The failures themselves are run by tests/alloc/alloc_consul (KV
 * listings); here, that nothing else changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "core/json_load.h"

static void test_parses_like_json_loadb(void **state)
{
	const char text[] = "[{\"Key\":\"a\",\"Value\":\"YQ==\"}]";
	json_error_t err;
	bool nomem = true;
	json_t *v, *w;
	(void)state;

	v = json_load_checked(text, sizeof(text) - 1, 0, &err, &nomem);
	assert_non_null(v);
	assert_false(nomem);
	w = json_loadb(text, sizeof(text) - 1, 0, NULL);
	assert_true(json_equal(v, w));
	json_decref(w);
	json_decref(v);
}

static void test_bad_text_is_not_nomem(void **state)
{
	json_error_t err;
	bool nomem = true;
	(void)state;

	assert_null(json_load_checked("[1,", 3, 0, &err, &nomem));
	assert_false(nomem);
	assert_non_null(strstr(err.text, "end of file"));
}

/* jansson allocates through the module's functions from before main() */
static void test_installed(void **state)
{
	json_malloc_t m = NULL;
	json_free_t f = NULL;
	(void)state;

	json_get_alloc_funcs(&m, &f);
	assert_non_null(m);
	assert_true(m != malloc);
	assert_true(f == free);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parses_like_json_loadb),
		cmocka_unit_test(test_bad_text_is_not_nomem),
		cmocka_unit_test(test_installed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
