/* Consul KV as the configuration layer reads it: one "key=value" pair a
 * line (a line without '=' is a folder key, no value), loaded by
 * config_load() at start and again as a reload over the first result. KV is
 * anyone's with a token: whatever it holds, a load never fails (a bad value
 * is a warning and the lower layers' value stays), and a reload never
 * changes a static setting. */
#include <jansson.h>

#include "config/config.h"
#include "fuzz.h"
#include "fuzz_config.h"

#define PAIRS_MAX 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet_logs();
	return 0;
}

static struct config *load(const struct config_kv_pair *kv, size_t n, const struct config *running)
{
	struct config_sources src = {
		.kv = kv, .n_kv = n, .kv_index = 7, .hostname = "fuzz-host", .running = running};
	struct buf errors, warnings;
	struct config *cfg = NULL;
	enum mn_err e;

	buf_init(&errors, 1u << 20);
	buf_init(&warnings, 1u << 20);
	e = config_load(&src, &cfg, &errors, &warnings);
	if (e != MN_OK)
		fprintf(stderr, "config_load: %s\n%s", mn_strerror(e),
			errors.data ? errors.data : "");
	FUZZ_CHECK(e == MN_OK);
	FUZZ_CHECK(errors.len == 0);
	FUZZ_CHECK(cfg->kv_index == 7);
	fuzz_check_config(cfg);
	buf_release(&errors);
	buf_release(&warnings);
	return cfg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_kv_pair kv[PAIRS_MAX], rev[PAIRS_MAX];
	char *text = fuzz_strndup(data, size), *line = text;
	struct config *first, *second;
	size_t n = 0;

	while (n < PAIRS_MAX && *line) {
		char *end = line + strcspn(line, "\n"), *eq;
		bool last = *end == '\0';

		*end = '\0';
		eq = strchr(line, '=');
		if (eq)
			*eq = '\0';
		kv[n].key = line;
		kv[n].value = eq ? eq + 1 : NULL;
		n++;
		if (last)
			break;
		line = end + 1;
	}
	for (size_t i = 0; i < n; i++)
		rev[i] = kv[n - 1 - i];

	first = load(kv, n, NULL);
	/* the same keys in the other order, as a reload: only dynamic
	 * settings may move, the static ones wait for a restart */
	second = load(rev, n, first);
	for (size_t i = 0; i < second->n_entries; i++) {
		const struct config_entry *e = &second->entries[i];
		const struct config_entry *before = config_entry_find(first, e->name);

		if (!e->dynamic && before)
			FUZZ_CHECK(json_equal(e->value, before->value));
	}
	for (size_t i = 0; i < second->n_pending_restart; i++) {
		const struct config_entry *e =
			config_entry_find(second, second->pending_restart[i]);

		FUZZ_CHECK(e != NULL && !e->dynamic);
	}
	config_free(second);
	config_free(first);
	free(text);
	return 0;
}
