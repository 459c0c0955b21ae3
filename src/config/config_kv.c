/* The Consul KV layer: config/shared/<name/as/path> first, then
 * <kv_prefix><name/as/path>, the later winning. A refused value is a warning
 * and leaves the lower layers' value in force; keys that name no setting
 * are one warning per prefix, however many they are. */
#include "config_state.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_SHARED_PREFIX "config/shared/"
#define KV_UNKNOWN_EXAMPLES 3

/* The keys under one prefix that name no setting: how many, and the first
 * few (borrowed from the listing) to show. */
struct kv_unknown {
	size_t n;
	const char *examples[KV_UNKNOWN_EXAMPLES];
};

static void kv_unknown_add(struct kv_unknown *u, const char *key)
{
	if (u->n < KV_UNKNOWN_EXAMPLES)
		u->examples[u->n] = key;
	u->n++;
}

static void kv_unknown_report(struct config_state *st, const struct kv_unknown *u,
			      const char *prefix)
{
	const char *const *e = u->examples;

	switch (u->n) {
	case 0:
		return;
	case 1:
		config_state_warning(st, "kv: 1 key under '%s' names no setting and is ignored "
					 "('%s')", prefix, e[0]);
		return;
	case 2:
		config_state_warning(st, "kv: 2 keys under '%s' name no setting and are ignored "
					 "('%s', '%s')", prefix, e[0], e[1]);
		return;
	case 3:
		config_state_warning(st, "kv: 3 keys under '%s' name no setting and are ignored "
					 "('%s', '%s', '%s')", prefix, e[0], e[1], e[2]);
		return;
	default:
		config_state_warning(st, "kv: %zu keys under '%s' name no setting and are ignored "
					 "(e.g. '%s', '%s', '%s', ...)", u->n, prefix, e[0], e[1],
				     e[2]);
	}
}

bool config_kv_listing_fits(const struct config *cfg, size_t n_keys, bool too_large, char *why,
			    size_t len)
{
	if (too_large) {
		snprintf(why, len, "larger than consul.kv_max_bytes (%lld bytes)",
			 (long long)cfg->consul_kv_max_bytes);
		return false;
	}
	if (cfg->consul_kv_max_keys >= 0 && n_keys > (uint64_t)cfg->consul_kv_max_keys) {
		snprintf(why, len, "%zu keys, more than consul.kv_max_keys (%lld)", n_keys,
			 (long long)cfg->consul_kv_max_keys);
		return false;
	}
	return true;
}

/* The KV layer is found and bounded through these, so KV can neither move
 * itself nor lift its own caps. */
static const char *const kv_fixed[] = {"service.name", "consul.kv_prefix", "consul.kv_max_keys",
				       "consul.kv_max_bytes", NULL};

static enum mn_err kv_apply_one(struct config_state *st, const struct config_kv_pair *pair,
				size_t prefix_len, struct kv_unknown *unknown)
{
	const char *rest = pair->key + prefix_len;
	char reason[256];
	const char *a, *b;
	char *name, *text;
	enum mn_err err = MN_OK;

	name = strdup(rest);
	if (name == NULL)
		return MN_NOMEM;
	for (char *p = name; *p; p++)
		if (*p == '/')
			*p = '.';
	for (const char *const *f = kv_fixed; *f; f++) {
		if (strcmp(*f, name) == 0) {
			config_state_warning(st, "kv key '%s': '%s' cannot be set from consul kv",
					     pair->key, name);
			goto out_free_name;
		}
	}
	a = pair->value;
	b = a + strlen(a);
	while (a < b && isspace((unsigned char)*a))
		a++;
	while (b > a && isspace((unsigned char)b[-1]))
		b--;
	text = strndup(a, (size_t)(b - a));
	if (text == NULL) {
		err = MN_NOMEM;
		goto out_free_name;
	}
	err = config_state_set(st, name, text, NULL, CONFIG_SRC_KV, pair->key, reason,
			       sizeof(reason));
	if (err == MN_NOT_FOUND) {
		kv_unknown_add(unknown, pair->key);
		err = MN_OK;
	} else if (err == MN_INVALID) {
		const struct config_entry *in_force =
			st->running ? config_entry_find(st->running, name) : NULL;

		if (in_force && in_force->source == CONFIG_SRC_KV) {
			/* The last good KV value stays, not the file's. */
			config_state_warning(st, "kv key '%s': %s; keeping the value in force",
					     pair->key, reason);
			err = config_state_set(st, name, NULL, json_deep_copy(in_force->value),
					       CONFIG_SRC_KV, in_force->origin, reason, sizeof(reason));
		} else {
			config_state_warning(st, "kv key '%s': %s", pair->key, reason);
			err = MN_OK;
		}
	}
	free(text);
out_free_name:
	free(name);
	return err;
}

/* Folders (a trailing '/', no value, the prefix itself) are skipped
 * silently: Consul lists them alongside the leaves. */
static bool kv_is_folder(const struct config_kv_pair *pair, size_t prefix_len)
{
	size_t n = strlen(pair->key);

	return pair->value == NULL || n == prefix_len || pair->key[n - 1] == '/';
}

enum mn_err config_kv_apply(struct config_state *st, const struct config_kv_pair *kv, size_t n,
			    const char *prefix)
{
	size_t shared_len = strlen(KV_SHARED_PREFIX), prefix_len = strlen(prefix);
	struct kv_unknown unknown = {0};
	enum mn_err err;

	/* a key makes at most one slot */
	if (config_state_reserve(st, n) != MN_OK)
		return MN_NOMEM;

	for (size_t i = 0; i < n; i++) {
		const char *key = kv[i].key;

		if (key == NULL)
			continue;
		if (strncmp(key, KV_SHARED_PREFIX, shared_len) == 0) {
			if (kv_is_folder(&kv[i], shared_len))
				continue;
			err = kv_apply_one(st, &kv[i], shared_len, &unknown);
			if (err != MN_OK)
				return err;
		} else if (strncmp(key, prefix, prefix_len) != 0) {
			if (kv[i].value && key[0] && key[strlen(key) - 1] != '/')
				config_state_warning(st,
						     "kv key '%s': outside '%s' and '%s', ignored",
						     key, KV_SHARED_PREFIX, prefix);
		}
	}
	kv_unknown_report(st, &unknown, KV_SHARED_PREFIX);
	unknown = (struct kv_unknown){0};
	for (size_t i = 0; i < n; i++) {
		const char *key = kv[i].key;

		if (key == NULL || strncmp(key, prefix, prefix_len) != 0)
			continue;
		if (strncmp(key, KV_SHARED_PREFIX, shared_len) == 0)
			continue;
		if (kv_is_folder(&kv[i], prefix_len))
			continue;
		err = kv_apply_one(st, &kv[i], prefix_len, &unknown);
		if (err != MN_OK)
			return err;
	}
	kv_unknown_report(st, &unknown, prefix);
	return MN_OK;
}
