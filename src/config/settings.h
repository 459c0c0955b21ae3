/* The table of every setting meshnode knows (docs/configuration.md lists
 * them): its type, default, bounds and checks. Every source (defaults, file,
 * Consul KV, environment) turns its input into a value through this table, so
 * a setting is parsed and validated the same way wherever it comes from. */
#ifndef MESHNODE_CONFIG_SETTINGS_H
#define MESHNODE_CONFIG_SETTINGS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"

enum setting_type {
	SETTING_STRING, /* json string */
	SETTING_INT,    /* json integer */
	SETTING_BOOL,   /* json boolean */
	SETTING_LIST,   /* json array of strings */
	SETTING_MAP,    /* json object of strings */
};

enum setting_verdict {
	SETTING_OK,
	SETTING_REFUSED,
	SETTING_NOMEM,
};

/* Extra validation after the type and bounds: 'ok' may replace *value with
 * a normalised one (the old reference released). 'expects' says what the
 * rule accepts, in the words of the refusal ("expected <expects>") and of
 * the settings reference (make docs). */
struct setting_rule {
	enum setting_verdict (*ok)(json_t **value);
	const char *expects;
};

struct setting_def {
	const char *name;          /* dotted; a '*' segment stands for any name */
	enum setting_type type;
	const char *default_text;  /* parsed like any text; NULL: none. When
				      'derived', a template: "<service.name>"
				      stands for that setting's value,
				      "<hostname>" for the host's name */
	long long min, max;        /* INT: range; STRING: length; LIST: count
				      (max 0: no upper bound) */
	const char *const *choices; /* STRING: allowed values; LIST: allowed items */
	const struct setting_rule *check; /* NULL: none */
	bool dynamic;
	bool secret;
	bool derived;              /* default computed from other settings */
	/* The environment variable that sets it besides MESHNODE_<NAME>
	 * (Consul's own, the reference design's short names), or NULL; the
	 * aliases are applied before the MESHNODE_ variables, in env_order
	 * (1, 2, ...), so that their error lines come in a fixed order. */
	const char *env;
	unsigned char env_order;
	/* The environment variable naming a file that holds the value
	 * (CONSUL_HTTP_TOKEN_FILE), read after the aliases; or NULL. */
	const char *env_file;
	/* Where the value lives: 'size' bytes at 'offset' in struct config,
	 * or for a peers.* row in struct peer_settings (size 0: nowhere, the
	 * features.* row). By 'type': STRING a char * (owned); INT an int or
	 * an int64_t, by size; BOOL a bool; LIST a NULL-terminated char **
	 * with its count (size_t) at 'offset_n'; MAP the keys' char ** at
	 * 'offset' and the values' at 'offset_values', the count at
	 * 'offset_n'. 'flag': a STRING of two choices kept as a bool, true
	 * for the second. */
	size_t offset, size;
	size_t offset_n, offset_values;
	bool flag;
};

extern const struct setting_def settings_table[];
extern const size_t settings_count;

/* A peer is a Consul service the node watches: its name is never longer
 * than a service name the resolver accepts. */
#define SETTINGS_PEER_NAME_MAX 128

/* The definition of the dotted 'name', matching '*' segments (peer names
 * [a-z0-9-]{1,SETTINGS_PEER_NAME_MAX}, feature flags [A-Za-z0-9_-]+); NULL
 * for an unknown name. */
const struct setting_def *settings_find(const char *name);

/* The setting an unknown 'name' most likely meant (a typo: at most two
 * edits away, and fewer than a third of its length), written into 'out' as
 * a dotted name; false when none is that close. With 'env' the comparison
 * is of the MESHNODE_ forms ("SERVER_THREAD" against "SERVER_THREADS"). */
bool settings_closest(const char *name, bool env, char *out, size_t len);

/* true when 'def' is one of the templated settings (peers.*, features.*). */
bool settings_is_template(const struct setting_def *def);

/* Parses 'text' (KV, environment, defaults) into a value of def's type: new
 * reference, or NULL with 'reason' filled. The value is not validated yet. */
json_t *settings_parse_text(const struct setting_def *def, const char *text, char *reason,
			    size_t len);

/* Checks the type, bounds and rules of *value, replacing it by its
 * normalised form when needed (the old reference is released). false with
 * 'reason' filled; 'reason' never contains the value itself. */
bool settings_check(const struct setting_def *def, json_t **value, char *reason, size_t len);

/* true when every character of 's' is in [a-z0-9-] ('lower') or
 * [A-Za-z0-9_-] (!'lower') and 's' is not empty. */
bool settings_name_valid(const char *s, size_t len, bool lower);

/* Appends the settings reference to 'out': a Markdown table with one row per
 * setting of settings_table (name, type, default, accepted values, dynamic,
 * secret, environment variables). MN_NOMEM (or the cap's error) when it
 * does not fit. */
enum mn_err settings_doc_table(struct buf *out);

/* The markers of the generated block in docs/configuration.md. */
#define SETTINGS_DOC_BEGIN \
	"<!-- settings: generated by make docs from src/config/settings.c; do not edit -->\n"
#define SETTINGS_DOC_END "<!-- end of settings -->\n"

/* Appends 'page' (len bytes) to 'out' with the lines between the markers
 * replaced by settings_doc_table(). MN_NOT_FOUND when the page lacks
 * either marker line (or has them out of order); MN_NOMEM. */
enum mn_err settings_doc_splice(const char *page, size_t len, struct buf *out);

#endif
