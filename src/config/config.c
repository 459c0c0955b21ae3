/* config_load(): defaults, then the file, the environment and Consul KV feed
 * one config_state (a lower source never overwrites a higher one, so KV can
 * be read after the environment has told where it lives), then the derived
 * defaults, then the immutable struct config. */
#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_file.h"
#include "core/array.h"
#include "core/escape.h"
#include "core/ipaddr.h"
#include "config_state.h"
#include "settings.h"

#define ORIGIN_MAX 4200 /* a path, ':' and a line number */
/* A value shown in a change line is cut past this many bytes. */
#define CHANGE_VALUE_MAX 120

const char *config_source_name(enum config_source src)
{
	switch (src) {
	case CONFIG_SRC_DEFAULT: return "default";
	case CONFIG_SRC_FILE: return "file";
	case CONFIG_SRC_KV: return "kv";
	case CONFIG_SRC_ENV: return "env";
	}
	return "unknown";
}

static enum mn_err config_apply_defaults(struct config_state *st)
{
	char reason[256];
	enum mn_err err;

	for (size_t i = 0; i < settings_count; i++) {
		const struct setting_def *def = &settings_table[i];

		if (def->derived || settings_is_template(def))
			continue;
		err = config_state_set(st, def->name, def->default_text, NULL, CONFIG_SRC_DEFAULT,
				       NULL, reason, sizeof(reason));
		if (err != MN_OK)
			return err == MN_NOMEM ? err : MN_INTERNAL;
	}
	return MN_OK;
}

/* One leaf of the file: what the file said, where. */
struct file_leaf {
	char *name;
	json_t *value;
	char *origin;                /* "path:line" */
};

struct config_file_layer {
	char *path;
	bool found;                  /* false: an optional file that is not there */
	struct file_leaf *leaves;
	size_t n;
	size_t alloc;
};

static bool config_file_is_map(void *ctx, const char *name)
{
	const struct setting_def *def = settings_find(name);

	(void)ctx;
	return def && def->type == SETTING_MAP;
}

static enum mn_err config_file_keep(void *ctx, const char *name, json_t *value, const char *file,
				    unsigned line)
{
	struct config_file_layer *layer = ctx;
	struct file_leaf *leaf;

	if (!array_reserve(&layer->leaves, &layer->alloc, layer->n, sizeof(*layer->leaves), 16)) {
		json_decref(value);
		return MN_NOMEM;
	}
	leaf = &layer->leaves[layer->n];
	leaf->value = value;
	leaf->name = strdup(name);
	if (leaf->name == NULL || asprintf(&leaf->origin, "%s:%u", file, line) < 0) {
		free(leaf->name);
		json_decref(value);
		return MN_NOMEM;
	}
	layer->n++;
	return MN_OK;
}

static const struct config_file_ops file_ops = {
	.is_map = config_file_is_map,
	.set = config_file_keep,
};

enum mn_err config_file_layer_read(const char *path, bool optional,
				   struct config_file_layer **out, struct buf *errors)
{
	struct config_file_layer *layer = calloc(1, sizeof(*layer));
	enum mn_err err;

	*out = NULL;
	if (layer == NULL || (layer->path = strdup(path)) == NULL) {
		free(layer);
		return MN_NOMEM;
	}
	err = config_file_read(path, &file_ops, layer, errors);
	if (err == MN_NOT_FOUND && optional) {
		err = MN_OK;
	} else if (err == MN_NOT_FOUND) {
		if (errors)
			buf_printf(errors, "%s: cannot open: no such file\n", path);
		err = MN_CONFIG;
	} else if (err == MN_OK) {
		layer->found = true;
	}
	if (err != MN_OK) {
		config_file_layer_free(layer);
		return err;
	}
	*out = layer;
	return MN_OK;
}

void config_file_layer_free(struct config_file_layer *layer)
{
	if (layer == NULL)
		return;
	for (size_t i = 0; i < layer->n; i++) {
		free(layer->leaves[i].name);
		json_decref(layer->leaves[i].value);
		free(layer->leaves[i].origin);
	}
	free(layer->leaves);
	free(layer->path);
	free(layer);
}

const char *config_file_layer_path(const struct config_file_layer *layer)
{
	return layer->path;
}

bool config_file_layer_found(const struct config_file_layer *layer)
{
	return layer->found;
}

size_t config_file_layer_count(const struct config_file_layer *layer)
{
	return layer->n;
}

/* The leaves of the file into the state. An unknown key is a warning: a
 * file written for a newer node, or with a typo, still starts this one, and
 * the warning names the setting most likely meant. A known key with a bad
 * value is an error. */
static enum mn_err config_file_replay(struct config_state *st,
				      const struct config_file_layer *layer)
{
	char reason[256], hint[160];
	enum mn_err err;

	for (size_t i = 0; i < layer->n; i++) {
		const struct file_leaf *leaf = &layer->leaves[i];
		json_t *value = json_deep_copy(leaf->value);

		if (value == NULL)
			return MN_NOMEM;
		err = config_state_set(st, leaf->name, NULL, value, CONFIG_SRC_FILE, leaf->origin,
				       reason, sizeof(reason));
		if (err == MN_NOMEM)
			return err;
		if (err == MN_NOT_FOUND && settings_closest(leaf->name, false, hint, sizeof(hint)))
			config_state_warning(st, "%s: key '%s': %s, ignored (did you mean '%s'?)",
					     leaf->origin, leaf->name, reason, hint);
		else if (err == MN_NOT_FOUND)
			config_state_warning(st, "%s: key '%s': %s, ignored", leaf->origin,
					     leaf->name, reason);
		else if (err != MN_OK)
			config_state_error(st, "%s: key '%s': %s", leaf->origin, leaf->name, reason);
	}
	return MN_OK;
}

/* The file layer of 'src': the one given, or 'path' read now. */
static enum mn_err config_apply_file(struct config_state *st, const struct config_sources *src)
{
	struct config_file_layer *layer = NULL;
	enum mn_err err;

	if (src->file)
		return config_file_replay(st, src->file);
	err = config_file_layer_read(src->file_path, src->file_optional, &layer, st->errors);
	if (err == MN_CONFIG) {
		st->n_errors++;
		return MN_OK;
	}
	if (err != MN_OK)
		return err;
	err = config_file_replay(st, layer);
	config_file_layer_free(layer);
	return err;
}

/* Sets a derived default through the same path as any value, so a derived
 * value that breaks a rule (a long hostname in service.id) is reported. */
static enum mn_err config_derive(struct config_state *st, const char *name, const char *text)
{
	char reason[256];
	enum mn_err err;

	if (config_state_find(st, name))
		return MN_OK;
	err = config_state_set(st, name, text, NULL, CONFIG_SRC_DEFAULT, NULL, reason,
			       sizeof(reason));
	if (err == MN_INVALID)
		config_state_error(st, "key '%s': the default derived from other settings is "
				       "invalid (%s); set it explicitly", name, reason);
	return err == MN_INVALID ? MN_OK : err;
}

/* Expands a derived default's template into 'out': "<service.name>" is
 * that setting's value (a string or an integer), "<hostname>" the host's
 * name. false when the template names no setting that has a value. */
static bool config_expand_default(const struct config_state *st, const char *tmpl,
				  const char *hostname, char *out, size_t len)
{
	size_t off = 0;

	while (*tmpl && off + 1 < len) {
		const char *close;
		char key[128];
		size_t klen;
		int n;

		if (*tmpl != '<') {
			out[off++] = *tmpl++;
			continue;
		}
		close = strchr(tmpl, '>');
		klen = close ? (size_t)(close - tmpl - 1) : 0;
		if (klen == 0 || klen >= sizeof(key))
			return false;
		memcpy(key, tmpl + 1, klen);
		key[klen] = '\0';
		if (strcmp(key, "hostname") == 0) {
			n = snprintf(out + off, len - off, "%s", hostname);
		} else {
			const struct config_slot *slot = config_state_find(st, key);

			if (slot == NULL)
				return false;
			if (json_is_string(slot->value))
				n = snprintf(out + off, len - off, "%s",
					     json_string_value(slot->value));
			else if (json_is_integer(slot->value))
				n = snprintf(out + off, len - off, "%lld",
					     (long long)json_integer_value(slot->value));
			else
				return false;
		}
		if (n < 0)
			return false;
		off += (size_t)n < len - off ? (size_t)n : len - off - 1;
		tmpl = close + 1;
	}
	out[off] = '\0';
	return true;
}

/* The derived defaults, from the other settings as the layers left them. */
static enum mn_err config_apply_derived(struct config_state *st, const char *hostname)
{
	char host[256], text[512];
	enum mn_err err;

	if (hostname == NULL) {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		hostname = host;
	}
	for (size_t i = 0; i < settings_count; i++) {
		const struct setting_def *def = &settings_table[i];

		if (!def->derived)
			continue;
		if (!config_expand_default(st, def->default_text, hostname, text, sizeof(text)))
			return MN_INTERNAL;
		err = config_derive(st, def->name, text);
		if (err != MN_OK)
			return err;
	}
	return MN_OK;
}

/* A configured peer shows all its settings: the unset ones as defaults.
 * The slots added here are all complete peers' own, so only the ones set
 * by the layers are looked at. */
static enum mn_err config_complete_peers(struct config_state *st)
{
	char name[300];
	size_t n = st->n_slots, n_peer_slots = 0, n_per_peer = 0;
	enum mn_err err;

	for (size_t i = 0; i < n; i++)
		n_peer_slots += strncmp(st->slots[i].name, "peers.", 6) == 0;
	for (size_t i = 0; i < settings_count; i++)
		n_per_peer += strncmp(settings_table[i].name, "peers.*.", 8) == 0;
	/* at worst each peer was given one setting and gets all the others */
	if (n_peer_slots && n_per_peer > 1 &&
	    config_state_reserve(st, (n_per_peer - 1) * n_peer_slots) != MN_OK)
		return MN_NOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *s = st->slots[i].name;
		size_t plen, slen;

		if (strncmp(s, "peers.", 6) != 0)
			continue;
		plen = strcspn(s + 6, ".");
		if (plen > SETTINGS_PEER_NAME_MAX)
			continue; /* settings_find() accepts no such name */
		for (size_t k = 0; k < settings_count; k++) {
			const struct setting_def *def = &settings_table[k];

			if (strncmp(def->name, "peers.*.", 8) != 0)
				continue;
			/* "peers.<name>.<setting>", without snprintf: this runs
			 * six times per configured peer */
			slen = strlen(def->name + 8);
			if (6 + plen + 1 + slen >= sizeof(name))
				continue;
			memcpy(name, s, 6 + plen + 1);
			memcpy(name + 6 + plen + 1, def->name + 8, slen + 1);
			if (config_state_find(st, name))
				continue;
			err = config_state_add_default(st, def, name);
			if (err != MN_OK)
				return err;
		}
	}
	return MN_OK;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct config_entry *)a)->name,
		      ((const struct config_entry *)b)->name);
}

/* Builds the typed fields; 'failed' turns true on allocation failure. */
struct builder {
	struct config *cfg;
	bool failed;
};

static const json_t *cfg_value(const struct config *cfg, const char *name)
{
	const struct config_entry *e = config_entry_find(cfg, name);

	return e ? e->value : NULL;
}

static void free_strings(char **list, size_t n);

static void *field_at(void *base, size_t offset)
{
	return (char *)base + offset;
}

static bool field_set_list(void *base, const struct setting_def *def, const json_t *v)
{
	size_t count = json_array_size(v);
	char **list = calloc(count + 1, sizeof(*list));
	bool ok = list != NULL;

	*(char ***)field_at(base, def->offset) = list;
	*(size_t *)field_at(base, def->offset_n) = 0;
	if (list == NULL)
		return false;
	for (size_t i = 0; i < count; i++) {
		list[i] = strdup(json_string_value(json_array_get(v, i)));
		if (list[i] == NULL)
			ok = false;
	}
	*(size_t *)field_at(base, def->offset_n) = count;
	return ok;
}

static bool field_set_map(void *base, const struct setting_def *def, const json_t *v)
{
	size_t count = json_object_size(v), i = 0;
	char **keys = calloc(count + 1, sizeof(*keys));
	char **values = calloc(count + 1, sizeof(*values));
	bool ok = true;
	const char *key;
	json_t *val;

	*(char ***)field_at(base, def->offset) = keys;
	*(char ***)field_at(base, def->offset_values) = values;
	*(size_t *)field_at(base, def->offset_n) = 0;
	if (keys == NULL || values == NULL)
		return false;
	*(size_t *)field_at(base, def->offset_n) = count;
	json_object_foreach((json_t *)v, key, val) {
		keys[i] = strdup(key);
		values[i] = strdup(json_string_value(val));
		if (keys[i] == NULL || values[i] == NULL)
			ok = false;
		i++;
	}
	return ok;
}

/* Stores 'v' (of def's type; NULL: none, an empty or zero value) in the
 * field 'def' names in 'base' (a struct config, or a struct peer_settings
 * for a peers.* row); false when out of memory, the field then holding
 * what field_free() releases. */
static bool field_set(void *base, const struct setting_def *def, const json_t *v)
{
	void *f = field_at(base, def->offset);
	const char *s;
	char *dup;

	/* through memcpy: the field may be signed or not (the bounds keep
	 * the value in both), a char * or a const char * */
	switch (def->type) {
	case SETTING_STRING:
		s = json_string_value(v);
		if (def->flag) {
			*(bool *)f = s && strcmp(s, def->choices[1]) == 0;
			return true;
		}
		dup = strdup(s ? s : "");
		memcpy(f, &dup, sizeof(dup));
		return dup != NULL;
	case SETTING_INT:
		if (def->size == sizeof(int64_t)) {
			int64_t n = json_integer_value(v);

			memcpy(f, &n, sizeof(n));
		} else {
			int n = (int)json_integer_value(v);

			memcpy(f, &n, sizeof(n));
		}
		return true;
	case SETTING_BOOL:
		*(bool *)f = json_is_true(v);
		return true;
	case SETTING_LIST:
		return field_set_list(base, def, v);
	case SETTING_MAP:
		return field_set_map(base, def, v);
	}
	return true;
}

/* Releases what field_set() stored; a secret is wiped first. */
static void field_free(void *base, const struct setting_def *def)
{
	void *f = field_at(base, def->offset);
	char *s;

	switch (def->type) {
	case SETTING_STRING:
		if (def->flag)
			return;
		memcpy(&s, f, sizeof(s));
		if (s && def->secret)
			explicit_bzero(s, strlen(s));
		free(s);
		return;
	case SETTING_LIST:
		free_strings(*(char ***)f, *(size_t *)field_at(base, def->offset_n));
		return;
	case SETTING_MAP:
		free_strings(*(char ***)f, *(size_t *)field_at(base, def->offset_n));
		free_strings(*(char ***)field_at(base, def->offset_values),
			     *(size_t *)field_at(base, def->offset_n));
		return;
	case SETTING_INT:
	case SETTING_BOOL:
		return;
	}
}

/* A row that fills a field of struct peer_settings. */
static bool is_peer_row(const struct setting_def *def)
{
	return def->size && strncmp(def->name, "peers.*.", 8) == 0;
}

/* A row that fills a field of struct config. */
static bool is_config_row(const struct setting_def *def)
{
	return def->size && !settings_is_template(def);
}

static void config_peer_release(struct peer_settings *p)
{
	free((char *)p->name);
	for (size_t i = 0; i < settings_count; i++)
		if (is_peer_row(&settings_table[i]))
			field_free(p, &settings_table[i]);
}

/* The peer's string settings that no entry gave are empty, never NULL. */
static bool config_peer_complete(struct peer_settings *p)
{
	bool ok = true;

	for (size_t i = 0; i < settings_count; i++) {
		const struct setting_def *def = &settings_table[i];

		const char *s;

		if (!is_peer_row(def) || def->type != SETTING_STRING || def->flag)
			continue;
		memcpy(&s, field_at(p, def->offset), sizeof(s));
		if (s == NULL)
			ok = field_set(p, def, NULL) && ok;
	}
	return ok;
}

/* The settings of a peer that is not configured: the peers.* rows'
 * defaults. */
static bool config_peer_defaults(struct peer_settings *p)
{
	char reason[256];
	bool ok = true;

	for (size_t i = 0; i < settings_count; i++) {
		const struct setting_def *def = &settings_table[i];
		json_t *v;

		if (!is_peer_row(def))
			continue;
		v = settings_parse_text(def, def->default_text, reason, sizeof(reason));
		ok = v && field_set(p, def, v) && ok;
		json_decref(v);
	}
	return ok;
}

static void cfg_peers_features(struct builder *b)
{
	struct config *cfg = b->cfg;
	size_t peers_alloc = 0, features_alloc = 0;

	/* entries are sorted, so one peer's settings are adjacent */
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const char *s = cfg->entries[i].name;
		struct peer_settings *p;
		size_t plen;

		if (strncmp(s, "features.", 9) == 0) {
			struct config_feature *f;

			if (!array_reserve(&cfg->features, &features_alloc, cfg->n_features,
					   sizeof(*f), 8))
				goto out_nomem;
			f = &cfg->features[cfg->n_features++];
			f->name = strdup(s + 9);
			f->enabled = json_is_true(cfg->entries[i].value);
			if (f->name == NULL)
				goto out_nomem;
			continue;
		}
		if (strncmp(s, "peers.", 6) != 0)
			continue;
		plen = strcspn(s + 6, ".");
		if (cfg->n_peers && strlen(cfg->peers[cfg->n_peers - 1].name) == plen &&
		    strncmp(cfg->peers[cfg->n_peers - 1].name, s + 6, plen) == 0)
			continue;
		if (!array_reserve(&cfg->peers, &peers_alloc, cfg->n_peers, sizeof(*p), 8))
			goto out_nomem;
		p = &cfg->peers[cfg->n_peers++];
		memset(p, 0, sizeof(*p));
		p->name = strndup(s + 6, plen);
		if (p->name == NULL)
			goto out_nomem;
		/* the peer's settings are the entries from here on that start
		 * with "peers.<name>.", each row found by settings_find() */
		for (size_t j = i; j < cfg->n_entries; j++) {
			const char *e = cfg->entries[j].name;
			const struct setting_def *def;

			if (strncmp(e, s, 6 + plen + 1) != 0)
				break;
			def = settings_find(e);
			if (def && is_peer_row(def) && !field_set(p, def, cfg->entries[j].value))
				b->failed = true;
		}
		if (!config_peer_complete(p))
			b->failed = true;
	}
	return;
out_nomem:
	b->failed = true;
}

static int peer_cmp(const void *a, const void *b)
{
	return strcmp(((const struct peer_settings *)a)->name,
		      ((const struct peer_settings *)b)->name);
}

static void config_fill(struct builder *b)
{
	struct config *cfg = b->cfg;

	for (size_t i = 0; i < settings_count; i++) {
		const struct setting_def *def = &settings_table[i];

		if (is_config_row(def) && !field_set(cfg, def, cfg_value(cfg, def->name)))
			b->failed = true;
	}
	if (!config_peer_defaults(&cfg->peer_defaults))
		b->failed = true;
	cfg_peers_features(b);
	/* by name, for config_peer_get() on every peer call */
	if (!b->failed && cfg->n_peers > 1)
		qsort(cfg->peers, cfg->n_peers, sizeof(*cfg->peers), peer_cmp);
}

/* Moves the slots into cfg->entries (sorted) and fills the typed fields. */
static enum mn_err config_build(struct config_state *st, uint64_t kv_index, struct config **out)
{
	struct builder b = {0};
	struct config *cfg;

	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL)
		return MN_NOMEM;
	cfg->kv_index = kv_index;
	cfg->entries = calloc(st->n_slots ? st->n_slots : 1, sizeof(*cfg->entries));
	if (cfg->entries == NULL)
		goto out_free;
	for (size_t i = 0; i < st->n_slots; i++) {
		struct config_slot *slot = &st->slots[i];
		struct config_entry *e = &cfg->entries[i];

		e->name = slot->name;
		e->value = slot->value;
		e->origin = slot->origin;
		e->source = slot->source;
		e->secret = slot->def->secret;
		e->dynamic = slot->def->dynamic;
		slot->name = NULL;
		slot->value = NULL;
		slot->origin = NULL;
	}
	cfg->n_entries = st->n_slots;
	qsort(cfg->entries, cfg->n_entries, sizeof(*cfg->entries), entry_cmp);
	b.cfg = cfg;
	config_fill(&b);
	if (b.failed)
		goto out_free;
	*out = cfg;
	return MN_OK;
out_free:
	config_free(cfg);
	return MN_NOMEM;
}

/* A reload never changes a static setting half-way: each static slot whose
 * value differs from the running config takes the running value, source
 * and origin back, and its name goes to *pending. */
static enum mn_err config_pin_static(struct config_state *st, const struct config *running,
				     char ***pending, size_t *n_pending)
{
	size_t alloc = 0;

	for (size_t i = 0; i < st->n_slots; i++) {
		struct config_slot *slot = &st->slots[i];
		const struct config_entry *e;
		char *origin = NULL, *name;
		json_t *value;

		if (slot->def->dynamic)
			continue;
		e = config_entry_find(running, slot->name);
		if (e == NULL || json_equal(e->value, slot->value))
			continue;
		value = json_deep_copy(e->value);
		name = strdup(slot->name);
		if (e->origin)
			origin = strdup(e->origin);
		if (value == NULL || name == NULL || (e->origin && origin == NULL) ||
		    !array_reserve(pending, &alloc, *n_pending, sizeof(**pending), 4)) {
			json_decref(value);
			free(name);
			free(origin);
			return MN_NOMEM;
		}
		(*pending)[(*n_pending)++] = name;
		json_decref(slot->value);
		free(slot->origin);
		slot->value = value;
		slot->origin = origin;
		slot->source = e->source;
	}
	return MN_OK;
}

static long long config_state_int(const struct config_state *st, const char *name)
{
	const struct config_slot *slot = config_state_find(st, name);

	return slot ? (long long)json_integer_value(slot->value) : 0;
}

/* The rules that tie settings together, after every layer: the admin
 * listener on its own socket, apart from the service port's (both would
 * claim it, and the second bind would fail only at start); Connect only
 * with the admin listener, where the agent's plain HTTP check goes. */
static void config_check_together(struct config_state *st)
{
	const struct config_slot *connect = config_state_find(st, "connect.enabled");
	long long admin = config_state_int(st, "admin.port");
	const char *admin_addr = config_state_string(st, "admin.address");
	const char *service_addr = config_state_string(st, "service.address");

	if (connect && json_is_true(connect->value) && admin == 0)
		config_state_error(st, "key 'connect.enabled': connect.enabled needs admin.port: "
				       "the agent's check cannot present a client certificate");
	if (admin != 0 && admin == config_state_int(st, "service.port") && admin_addr &&
	    service_addr && ipaddr_overlap(admin_addr, service_addr))
		config_state_error(st,
				   "key 'admin.port': %lld is service.port on the same address "
				   "('%s', '%s'); expected another port, or 0 to serve "
				   "everything on the service port",
				   admin, admin_addr, service_addr);
}

/* Where this service's KV lives, from what is known before KV is read. */
static char *config_kv_prefix(const struct config_state *st)
{
	const char *prefix = config_state_string(st, "consul.kv_prefix");
	char *p;

	if (prefix)
		return strdup(prefix);
	if (asprintf(&p, "config/%s/", config_state_string(st, "service.name")) < 0)
		return NULL;
	return p;
}

enum mn_err config_load(const struct config_sources *src, struct config **out,
			struct buf *errors, struct buf *warnings)
{
	struct config_state st;
	char **pending = NULL;
	size_t n_pending = 0;
	enum mn_err err;
	char *prefix;

	*out = NULL;
	config_state_init(&st, errors, warnings);
	st.running = src->running;
	err = config_apply_defaults(&st);
	if (err == MN_OK && (src->file || src->file_path))
		err = config_apply_file(&st, src);
	if (err == MN_OK)
		err = config_env_apply(&st, src->environ);
	if (err == MN_OK && src->kv) {
		prefix = config_kv_prefix(&st);
		if (prefix == NULL) {
			err = MN_NOMEM;
			goto out_release;
		}
		err = config_kv_apply(&st, src->kv, src->n_kv, prefix);
		free(prefix);
	}
	if (err == MN_OK)
		err = config_apply_derived(&st, src->hostname);
	if (err == MN_OK)
		err = config_complete_peers(&st);
	if (err != MN_OK)
		goto out_release;
	if (st.n_errors == 0)
		config_check_together(&st);
	if (st.n_errors) {
		err = MN_CONFIG;
		goto out_release;
	}
	if (src->running) {
		err = config_pin_static(&st, src->running, &pending, &n_pending);
		if (err != MN_OK)
			goto out_release;
	}
	err = config_build(&st, src->kv ? src->kv_index : 0, out);
	if (err == MN_OK) {
		(*out)->pending_restart = pending;
		(*out)->n_pending_restart = n_pending;
		(*out)->n_warnings = st.n_warnings;
		pending = NULL;
		n_pending = 0;
	}
out_release:
	/* said, so that a reload refused for it is logged with its reason */
	if (err == MN_NOMEM)
		config_state_error(&st, "out of memory");
	config_state_finish(&st);
	free_strings(pending, n_pending);
	config_state_release(&st);
	return err;
}

static void free_strings(char **list, size_t n)
{
	if (list == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free_strings(cfg->pending_restart, cfg->n_pending_restart);
	for (size_t i = 0; i < settings_count; i++)
		if (is_config_row(&settings_table[i]))
			field_free(cfg, &settings_table[i]);
	for (size_t i = 0; i < cfg->n_peers; i++)
		config_peer_release(&cfg->peers[i]);
	free(cfg->peers);
	config_peer_release(&cfg->peer_defaults);
	for (size_t i = 0; i < cfg->n_features; i++)
		free(cfg->features[i].name);
	free(cfg->features);
	for (size_t i = 0; i < cfg->n_entries; i++) {
		free(cfg->entries[i].name);
		free(cfg->entries[i].origin);
		json_decref(cfg->entries[i].value);
	}
	free(cfg->entries);
	free(cfg);
}

static json_t *config_entry_json(const struct config_entry *e)
{
	json_t *value;

	if (e->secret) {
		const char *s = json_string_value(e->value);

		value = json_string(s && *s ? "<redacted>" : "");
	} else {
		value = json_deep_copy(e->value);
	}
	return json_pack("{s:o, s:s, s:s?, s:b}", "value", value, "source",
			 config_source_name(e->source), "origin", e->origin, "dynamic",
			 e->dynamic);
}

json_t *config_to_json(const struct config *cfg)
{
	json_t *root = json_object();

	if (root == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->n_entries; i++) {
		if (json_object_set_new(root, cfg->entries[i].name,
					config_entry_json(&cfg->entries[i])) != 0) {
			json_decref(root);
			return NULL;
		}
	}
	return root;
}

const struct config_entry *config_entry_find(const struct config *cfg, const char *name)
{
	struct config_entry key = {.name = (char *)name};

	if (cfg->n_entries == 0)
		return NULL;
	return bsearch(&key, cfg->entries, cfg->n_entries, sizeof(key), entry_cmp);
}

const struct peer_settings *config_peer_get(const struct config *cfg, const char *name)
{
	struct peer_settings key = {.name = (char *)name};
	const struct peer_settings *p;

	if (name == NULL || cfg->n_peers == 0)
		return &cfg->peer_defaults;
	p = bsearch(&key, cfg->peers, cfg->n_peers, sizeof(key), peer_cmp);
	return p ? p : &cfg->peer_defaults;
}

bool config_feature_enabled(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_features; i++)
		if (strcmp(cfg->features[i].name, name) == 0)
			return cfg->features[i].enabled;
	return false;
}

bool config_has_module(const struct config *cfg, const char *module)
{
	for (size_t i = 0; i < cfg->n_service_modules; i++)
		if (strcmp(cfg->service_modules[i], module) == 0)
			return true;
	return false;
}

/* One side of a change line: "<redacted>" for a secret, a string as it is
 * (escaped), anything else as compact JSON; cut past CHANGE_VALUE_MAX. */
static void change_value(struct buf *out, const struct config_entry *e)
{
	char *text = NULL;
	const char *s;
	size_t len;

	if (e == NULL) {
		buf_puts(out, "(unset)");
		return;
	}
	if (e->secret) {
		s = json_string_value(e->value);
		buf_puts(out, s && *s ? "<redacted>" : "\"\"");
		return;
	}
	if (json_is_string(e->value)) {
		s = json_string_value(e->value);
		len = json_string_length(e->value);
		if (len == 0) {
			buf_puts(out, "\"\"");
			return;
		}
	} else {
		text = json_dumps(e->value, JSON_COMPACT | JSON_ENCODE_ANY);
		s = text ? text : "?";
		len = strlen(s);
	}
	escape_buf(out, s, len < CHANGE_VALUE_MAX ? len : CHANGE_VALUE_MAX, ESCAPE_TEXT);
	if (len > CHANGE_VALUE_MAX)
		buf_puts(out, "...");
	free(text);
}

/* A setting that appears or goes away at its default (a new peer's other
 * settings) is not a change anyone made: only the ones set are shown. */
static bool entry_changed(const struct config_entry *a, const struct config_entry *b)
{
	if (a == NULL)
		return b->source != CONFIG_SRC_DEFAULT;
	if (b == NULL)
		return a->source != CONFIG_SRC_DEFAULT;
	return !json_equal(a->value, b->value);
}

size_t config_changes(const struct config *old, const struct config *next, struct buf *out,
		      size_t max_lines)
{
	size_t i = 0, j = 0, changed = 0;

	while (i < old->n_entries || j < next->n_entries) {
		const struct config_entry *a = i < old->n_entries ? &old->entries[i] : NULL;
		const struct config_entry *b = j < next->n_entries ? &next->entries[j] : NULL;
		int c = a == NULL ? 1 : b == NULL ? -1 : strcmp(a->name, b->name);

		if (c < 0)
			b = NULL;
		else if (c > 0)
			a = NULL;
		i += c <= 0;
		j += c >= 0;
		if (!entry_changed(a, b))
			continue;
		if (changed++ >= max_lines)
			continue;
		escape_buf(out, (a ? a : b)->name, strlen((a ? a : b)->name), ESCAPE_TEXT);
		buf_puts(out, ": ");
		change_value(out, a);
		buf_puts(out, " -> ");
		change_value(out, b);
		buf_printf(out, " (%s)\n", b ? config_source_name(b->source) : "removed");
	}
	if (changed > max_lines)
		buf_printf(out, "%zu more settings changed\n", changed - max_lines);
	return changed;
}

/* The document around 'settings' (stolen). */
static json_t *config_document_of(const struct config *cfg, json_t *settings)
{
	json_t *pending = json_array();

	for (size_t i = 0; pending && i < cfg->n_pending_restart; i++)
		json_array_append_new(pending, json_string(cfg->pending_restart[i]));
	return json_pack("{s:o, s:I, s:o}", "settings", settings, "kv_index",
			 (json_int_t)cfg->kv_index, "pending_restart", pending);
}

json_t *config_document(const struct config *cfg)
{
	return config_document_of(cfg, config_to_json(cfg));
}

json_t *config_document_page(const struct config *cfg, const char *prefix, size_t offset,
			     size_t limit)
{
	json_t *settings = json_object(), *doc;
	size_t plen = prefix ? strlen(prefix) : 0, total = 0;

	if (settings == NULL)
		return NULL;
	/* the entries are in name order: a name-prefix is one run of them */
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct config_entry *e = &cfg->entries[i];

		if (plen && strncmp(e->name, prefix, plen) != 0)
			continue;
		if (total >= offset && total - offset < limit &&
		    json_object_set_new(settings, e->name, config_entry_json(e)) != 0) {
			json_decref(settings);
			return NULL;
		}
		total++;
	}
	doc = config_document_of(cfg, settings);
	if (doc == NULL)
		return NULL;
	json_object_set_new(doc, "total", json_integer((json_int_t)total));
	json_object_set_new(doc, "offset", json_integer((json_int_t)offset));
	json_object_set_new(doc, "limit", json_integer((json_int_t)limit));
	if (offset < total && total - offset > limit)
		json_object_set_new(doc, "next_offset", json_integer((json_int_t)(offset + limit)));
	return doc;
}
