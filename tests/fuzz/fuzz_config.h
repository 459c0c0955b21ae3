/* What any loaded configuration must satisfy, whatever its file, KV and
 * environment said: every effective value passes its own setting's check,
 * the typed fields agree with the entries, and secrets never show. Shared
 * by the config targets. */
#ifndef MESHNODE_TESTS_FUZZ_CONFIG_H
#define MESHNODE_TESTS_FUZZ_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <string.h>

#include "config/config.h"
#include "config/settings.h"
#include "fuzz.h"

static inline const json_t *fuzz_config_value(const struct config *cfg, const char *name)
{
	const struct config_entry *e = config_entry_find(cfg, name);

	FUZZ_CHECK(e != NULL);
	return e->value;
}

static inline void fuzz_config_int(const struct config *cfg, const char *name, long long field)
{
	const json_t *v = fuzz_config_value(cfg, name);

	FUZZ_CHECK(json_is_integer(v) && json_integer_value(v) == field);
}

static inline void fuzz_config_str(const struct config *cfg, const char *name, const char *field)
{
	const json_t *v = fuzz_config_value(cfg, name);

	FUZZ_CHECK(field != NULL && json_is_string(v) && strcmp(json_string_value(v), field) == 0);
}

static inline void fuzz_check_config(const struct config *cfg)
{
	json_t *shown;

	/* entries: sorted, unique, known, and valid by their own rules */
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *e = &cfg->entries[i];
		const struct setting_def *def = settings_find(e->name);
		json_t *copy;
		char reason[256];

		FUZZ_CHECK(def != NULL);
		FUZZ_CHECK(i == 0 || strcmp(cfg->entries[i - 1].name, e->name) < 0);
		FUZZ_CHECK(config_entry_find(cfg, e->name) == e);
		FUZZ_CHECK(e->secret == def->secret && e->dynamic == def->dynamic);
		FUZZ_CHECK((e->source == CONFIG_SRC_DEFAULT) == (e->origin == NULL));
		copy = json_deep_copy(e->value);
		FUZZ_CHECK(copy != NULL);
		FUZZ_CHECK(settings_check(def, &copy, reason, sizeof(reason)));
		/* a stored value is already normalised */
		FUZZ_CHECK(json_equal(copy, e->value));
		json_decref(copy);
	}

	/* the typed fields say what the entries say */
	fuzz_config_str(cfg, "service.name", cfg->service_name);
	fuzz_config_str(cfg, "service.id", cfg->service_id);
	fuzz_config_str(cfg, "service.address", cfg->service_address);
	fuzz_config_int(cfg, "service.port", cfg->service_port);
	FUZZ_CHECK(json_array_size(fuzz_config_value(cfg, "service.tags")) == cfg->n_service_tags);
	FUZZ_CHECK(json_object_size(fuzz_config_value(cfg, "service.meta")) == cfg->n_service_meta);
	FUZZ_CHECK(cfg->n_service_modules >= 1);
	for (size_t i = 0; i < cfg->n_service_modules; i++)
		FUZZ_CHECK(strcmp(cfg->service_modules[i], "users") == 0 ||
			   strcmp(cfg->service_modules[i], "orders") == 0);
	fuzz_config_int(cfg, "server.threads", cfg->threads);
	fuzz_config_int(cfg, "server.max_body_bytes", cfg->max_body_bytes);
	fuzz_config_int(cfg, "server.read_timeout_ms", cfg->read_timeout_ms);
	fuzz_config_int(cfg, "server.write_timeout_ms", cfg->write_timeout_ms);
	fuzz_config_int(cfg, "server.idle_timeout_ms", cfg->idle_timeout_ms);
	fuzz_config_int(cfg, "server.shutdown_timeout_ms", cfg->shutdown_timeout_ms);
	fuzz_config_str(cfg, "consul.address", cfg->consul_address);
	FUZZ_CHECK(strncmp(cfg->consul_address, "http://", 7) == 0 ||
		   strncmp(cfg->consul_address, "https://", 8) == 0);
	fuzz_config_str(cfg, "consul.kv_prefix", cfg->consul_kv_prefix);
	fuzz_config_str(cfg, "database.driver", cfg->database_driver);
	fuzz_config_str(cfg, "database.path", cfg->database_path);
	fuzz_config_str(cfg, "log.level", cfg->log_level);
	fuzz_config_str(cfg, "log.format", cfg->log_format);
	for (size_t i = 0; i < cfg->n_peers; i++) {
		const struct peer_settings *p = &cfg->peers[i];

		FUZZ_CHECK(strlen(p->name) <= SETTINGS_PEER_NAME_MAX);
		FUZZ_CHECK(settings_name_valid(p->name, strlen(p->name), true));
		FUZZ_CHECK(config_peer_get(cfg, p->name) == p);
		FUZZ_CHECK(p->timeout_ms >= 1 && p->breaker_failures >= 1 &&
			   p->breaker_open_ms >= 100 && p->lb && p->tag);
	}
	for (size_t i = 0; i < cfg->n_features; i++)
		FUZZ_CHECK(config_feature_enabled(cfg, cfg->features[i].name) ==
			   cfg->features[i].enabled);

	/* what /config and --print-config show: every entry, secrets hidden */
	shown = config_to_json(cfg);
	FUZZ_CHECK(shown != NULL);
	FUZZ_CHECK(json_object_size(shown) == cfg->n_entries);
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *e = &cfg->entries[i];
		const char *s;

		if (!e->secret)
			continue;
		s = json_string_value(json_object_get(json_object_get(shown, e->name), "value"));
		FUZZ_CHECK(s != NULL);
		FUZZ_CHECK(strcmp(s, "") == 0 || strcmp(s, "<redacted>") == 0);
	}
	json_decref(shown);
}

/* Loads 'src' into the fresh buffers errors and warnings (the caller
 * releases them) and checks the outcome: a configuration that passes
 * fuzz_check_config() and no error, or no configuration and at least one
 * error line. Any other result is a finding. */
static inline void fuzz_config_load(const struct config_sources *src, struct buf *errors,
				    struct buf *warnings)
{
	struct config *cfg = (struct config *)&cfg; /* a failed load must set NULL */
	enum mn_err e;

	buf_init(errors, 1u << 20);
	buf_init(warnings, 1u << 20);
	e = config_load(src, &cfg, errors, warnings);
	FUZZ_CHECK(e == MN_OK || e == MN_CONFIG);
	if (e == MN_OK) {
		FUZZ_CHECK(errors->len == 0);
		fuzz_check_config(cfg);
		config_free(cfg);
	} else {
		FUZZ_CHECK(cfg == NULL);
		FUZZ_CHECK(errors->len > 0);
	}
}

#endif
