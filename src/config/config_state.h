/* The configuration being built: one slot per dotted name with its value,
 * source and origin. Every layer feeds config_state_set(), the single place
 * where a value is parsed (text) or taken (typed), validated against the
 * settings table and stored when its source ranks at least as high as the
 * value already there. */
#ifndef MESHNODE_CONFIG_STATE_H
#define MESHNODE_CONFIG_STATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/strmap.h"
#include "settings.h"

struct config_slot {
	char *name;                     /* dotted: "peers.users.lb" */
	const struct setting_def *def;
	json_t *value;                  /* NULL while a derived default is pending */
	enum config_source source;
	char *origin;                   /* NULL for defaults */
};

struct config_state {
	struct config_slot *slots;
	size_t n_slots;
	size_t alloc;
	struct strmap index;            /* slot name -> position in slots */
	struct buf *errors;             /* may be NULL */
	struct buf *warnings;           /* may be NULL */
	size_t n_errors;                /* every one, shown or not */
	size_t n_warnings;
	size_t errors_dropped;          /* not shown: the buffer was near its cap */
	size_t warnings_dropped;
	const struct config *running;   /* a reload's config in force, or NULL */
};

void config_state_init(struct config_state *st, struct buf *errors, struct buf *warnings);
void config_state_release(struct config_state *st);

/* Ends the lists of errors and warnings: when some lines were not shown
 * (see config_state_error()), appends one last line saying how many ("1234
 * more warnings not shown"). Call once, when no more lines will come. */
void config_state_finish(struct config_state *st);

/* Sets 'name' from exactly one of 'text' (parsed by the setting's type) or
 * 'value' (typed; stolen, even on failure). MN_OK when stored or outranked
 * by a higher source, MN_NOT_FOUND for an unknown name, MN_INVALID with
 * 'reason' filled when the value is refused, MN_NOMEM (also when an
 * allocation failed while the value was parsed or checked). */
enum mn_err config_state_set(struct config_state *st, const char *name, const char *text,
			     json_t *value, enum config_source source, const char *origin,
			     char *reason, size_t len);

/* Makes the name index ready for 'more' slots beyond those there (an upper
 * bound known in advance: a listing's length), so that it is allocated once
 * rather than grown step by step. MN_NOMEM. */
enum mn_err config_state_reserve(struct config_state *st, size_t more);

/* Adds a slot for 'name', which has none yet and which settings_find()
 * matches to 'def', holding def's default: what config_state_set() would
 * do for the default text, without looking the name up twice. MN_NOMEM,
 * MN_INTERNAL when the table's default does not validate. */
enum mn_err config_state_add_default(struct config_state *st, const struct setting_def *def,
				    const char *name);

/* The slot of 'name' (borrowed, valid until the next config_state_set()),
 * NULL when never set. O(1): slots are indexed by name. */
struct config_slot *config_state_find(const struct config_state *st, const char *name);

/* The current string value of 'name', NULL when unset or not a string. */
const char *config_state_string(const struct config_state *st, const char *name);

/* Appends one line to errors / warnings and counts it. The formatted text
 * is escaped (core/escape.h, ESCAPE_TEXT): a KV key, a file path or an
 * environment name holding a newline or a control character stays inside
 * its own line, which is then one log record.
 *
 * A buffer never overflows (which would free it and lose every line): a
 * line that does not fit below the cap, less the room kept for the final
 * count, is not appended, and neither is any line after it; they are
 * counted, and config_state_finish() reports the count. */
void config_state_error(struct config_state *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void config_state_warning(struct config_state *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Environment layer ('environ' NULL-terminated "NAME=value"). Bad values are
 * errors. MN_NOMEM only; errors are counted in 'st'. */
enum mn_err config_env_apply(struct config_state *st, char *const *environ);

/* KV layer: keys under config/shared/ first, then under 'prefix'. Refused
 * values and unknown names are warnings. MN_NOMEM only. */
enum mn_err config_kv_apply(struct config_state *st, const struct config_kv_pair *kv, size_t n,
			    const char *prefix);

#endif
