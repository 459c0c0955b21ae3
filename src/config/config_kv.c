/* The Consul KV layer: config/shared/<name/as/path> first, then
 * <kv_prefix><name/as/path>, the later winning. A refused value is a warning
 * and leaves the lower layers' value in force. */
#include "config_state.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define KV_SHARED_PREFIX "config/shared/"

/* The KV layer is found through these, so KV cannot move itself. */
static const char *const kv_fixed[] = {"service.name", "consul.kv_prefix", NULL};

static enum mn_err kv_apply_one(struct config_state *st, const struct config_kv_pair *pair,
				size_t prefix_len)
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
	if (err == MN_NOT_FOUND || err == MN_INVALID) {
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
	enum mn_err err;

	for (size_t i = 0; i < n; i++) {
		const char *key = kv[i].key;

		if (key == NULL)
			continue;
		if (strncmp(key, KV_SHARED_PREFIX, shared_len) == 0) {
			if (kv_is_folder(&kv[i], shared_len))
				continue;
			err = kv_apply_one(st, &kv[i], shared_len);
			if (err != MN_OK)
				return err;
		} else if (strncmp(key, prefix, prefix_len) != 0) {
			if (kv[i].value && key[0] && key[strlen(key) - 1] != '/')
				config_state_warning(st,
						     "kv key '%s': outside '%s' and '%s', ignored",
						     key, KV_SHARED_PREFIX, prefix);
		}
	}
	for (size_t i = 0; i < n; i++) {
		const char *key = kv[i].key;

		if (key == NULL || strncmp(key, prefix, prefix_len) != 0)
			continue;
		if (strncmp(key, KV_SHARED_PREFIX, shared_len) == 0)
			continue;
		if (kv_is_folder(&kv[i], prefix_len))
			continue;
		err = kv_apply_one(st, &kv[i], prefix_len);
		if (err != MN_OK)
			return err;
	}
	return MN_OK;
}
