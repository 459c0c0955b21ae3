#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/store.h"

static struct config *config_with_level(const char *level)
{
	char var[64];
	char *env[] = {var, NULL};
	struct config_sources src = {.environ = env, .hostname = "h"};
	struct config *cfg;

	snprintf(var, sizeof(var), "LOG_LEVEL=%s", level);
	assert_int_equal(config_load(&src, &cfg, NULL, NULL), MN_OK);
	return cfg;
}

static void test_readers_keep_their_snapshot(void **state)
{
	struct config_store *s = config_store_create(config_with_level("info"));
	const struct config *a, *b;
	(void)state;

	a = config_store_get(s);
	config_store_publish(s, config_with_level("debug"));
	b = config_store_get(s);
	/* the old reader still sees a whole, unchanged config */
	assert_string_equal(a->log_level, "info");
	assert_string_equal(b->log_level, "debug");
	config_store_put(s, a); /* frees the retired snapshot (ASan checks) */
	config_store_publish(s, config_with_level("warn"));
	assert_string_equal(b->log_level, "debug");
	config_store_put(s, b);
	b = config_store_get(s);
	assert_string_equal(b->log_level, "warn");
	config_store_put(s, b);
	config_store_destroy(s);
}

struct reader_ctx {
	struct config_store *s;
	atomic_bool stop;
	long reads;
	int bad;
};

static void *reader(void *arg)
{
	struct reader_ctx *r = arg;

	while (!atomic_load(&r->stop)) {
		const struct config *cfg = config_store_get(r->s);

		/* the two settings are always published together */
		if (strcmp(cfg->log_level, "debug") == 0 ? strcmp(cfg->log_format, "text") != 0
							  : strcmp(cfg->log_format, "json") != 0)
			r->bad++;
		config_store_put(r->s, cfg);
		r->reads++;
	}
	return NULL;
}

static struct config *pair(bool debug)
{
	char level[32], format[32];
	char *env[] = {level, format, NULL};
	struct config_sources src = {.environ = env, .hostname = "h"};
	struct config *cfg;

	snprintf(level, sizeof(level), "LOG_LEVEL=%s", debug ? "debug" : "info");
	snprintf(format, sizeof(format), "MESHNODE_LOG_FORMAT=%s", debug ? "text" : "json");
	assert_int_equal(config_load(&src, &cfg, NULL, NULL), MN_OK);
	return cfg;
}

static void test_concurrent_publish_never_tears(void **state)
{
	struct reader_ctx r = {.s = config_store_create(pair(false))};
	pthread_t t[2];
	(void)state;

	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reader, &r), 0);
	for (int i = 0; i < 300; i++)
		config_store_publish(r.s, pair(i % 2 == 0));
	atomic_store(&r.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(r.bad, 0);
	assert_true(r.reads > 0);
	config_store_destroy(r.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_readers_keep_their_snapshot),
		cmocka_unit_test(test_concurrent_publish_never_tears),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
