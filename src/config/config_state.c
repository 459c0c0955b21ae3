#include "config_state.h"
#include "core/array.h"
#include "core/escape.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room kept below the cap of the errors and warnings buffers for the line
 * of config_state_finish(): "<20 digits> more warnings not shown\n". */
#define CONFIG_STATE_FINAL_ROOM 64

void config_state_init(struct config_state *st, struct buf *errors, struct buf *warnings)
{
	memset(st, 0, sizeof(*st));
	strmap_init(&st->index);
	st->errors = errors;
	st->warnings = warnings;
}

void config_state_release(struct config_state *st)
{
	for (size_t i = 0; i < st->n_slots; i++) {
		free(st->slots[i].name);
		free(st->slots[i].origin);
		json_decref(st->slots[i].value);
	}
	free(st->slots);
	strmap_release(&st->index);
	st->slots = NULL;
	st->n_slots = 0;
	st->alloc = 0;
}

enum mn_err config_state_reserve(struct config_state *st, size_t more)
{
	if (more > SIZE_MAX / 4 - st->n_slots)
		return MN_NOMEM;
	return strmap_reserve(&st->index, st->n_slots + more);
}

struct config_slot *config_state_find(const struct config_state *st, const char *name)
{
	size_t i;

	return strmap_get(&st->index, name, &i) ? &st->slots[i] : NULL;
}

const char *config_state_string(const struct config_state *st, const char *name)
{
	struct config_slot *slot = config_state_find(st, name);

	return slot ? json_string_value(slot->value) : NULL;
}

static struct config_slot *config_state_add(struct config_state *st, const char *name,
					    const struct setting_def *def)
{
	struct config_slot *slot;

	if (!array_reserve(&st->slots, &st->alloc, st->n_slots, sizeof(*st->slots), 64))
		return NULL;
	slot = &st->slots[st->n_slots];
	memset(slot, 0, sizeof(*slot));
	slot->name = strdup(name);
	if (slot->name == NULL)
		return NULL;
	/* the index borrows the name the slot owns */
	if (strmap_put(&st->index, slot->name, st->n_slots) != MN_OK) {
		free(slot->name);
		slot->name = NULL;
		return NULL;
	}
	slot->def = def;
	slot->source = CONFIG_SRC_DEFAULT;
	st->n_slots++;
	return slot;
}

enum mn_err config_state_add_default(struct config_state *st, const struct setting_def *def,
				    const char *name)
{
	struct config_slot *slot;
	char reason[256];
	json_t *value;

	errno = 0;
	value = settings_parse_text(def, def->default_text, reason, sizeof(reason));
	if (value == NULL || !settings_check(def, &value, reason, sizeof(reason))) {
		json_decref(value);
		/* the table's own default, unless memory ran out */
		return errno == ENOMEM ? MN_NOMEM : MN_INTERNAL;
	}
	slot = config_state_add(st, name, def);
	if (slot == NULL) {
		json_decref(value);
		return MN_NOMEM;
	}
	slot->value = value;
	return MN_OK;
}

enum mn_err config_state_set(struct config_state *st, const char *name, const char *text,
			     json_t *value, enum config_source source, const char *origin,
			     char *reason, size_t len)
{
	const struct setting_def *def = settings_find(name);
	struct config_slot *slot;
	char *dup = NULL;

	if (def == NULL) {
		/* no typo hint here: a KV flood brings thousands of unknown
		 * names, reported as one count; the file's errors add it */
		json_decref(value);
		snprintf(reason, len, "unknown setting");
		return MN_NOT_FOUND;
	}
	/* settings_parse_text() and the checks fail alike for a bad value
	 * and for an allocation that failed (jansson's or ours): errno tells
	 * them apart, so that memory running out is never taken for the
	 * operator's mistake (a KV value refused, the file's wording blamed) */
	errno = 0;
	if (text) {
		value = settings_parse_text(def, text, reason, len);
		if (value == NULL)
			goto out_refused;
	}
	if (value == NULL)
		return MN_NOMEM;
	if (!settings_check(def, &value, reason, len)) {
		json_decref(value);
		goto out_refused;
	}
	slot = config_state_find(st, name);
	if (slot && slot->value && slot->source > source) {
		json_decref(value);
		return MN_OK;
	}
	if (origin && (dup = strdup(origin)) == NULL)
		goto out_nomem;
	if (slot == NULL && (slot = config_state_add(st, name, def)) == NULL)
		goto out_nomem;
	json_decref(slot->value);
	free(slot->origin);
	slot->value = value;
	slot->source = source;
	slot->origin = dup;
	return MN_OK;
out_nomem:
	free(dup);
	json_decref(value);
	return MN_NOMEM;
out_refused:
	if (errno == ENOMEM) {
		snprintf(reason, len, "out of memory");
		return MN_NOMEM;
	}
	return MN_INVALID;
}

/* The line is built apart and appended only when it fits: a buf frees its
 * content when an append goes past its cap. Once one line is dropped, the
 * later ones are too, so what is shown is a prefix of what happened. */
static void config_state_vappend(struct buf *b, size_t *dropped, const char *fmt, va_list ap)
{
	struct buf line;
	size_t room;

	if (b == NULL)
		return;
	room = b->cap > b->len + CONFIG_STATE_FINAL_ROOM
		       ? b->cap - b->len - CONFIG_STATE_FINAL_ROOM
		       : 0;
	if (*dropped == 0 && room > 0) {
		buf_init(&line, room);
		if (escape_vprintf(&line, ESCAPE_TEXT, fmt, ap) == MN_OK &&
		    buf_puts(&line, "\n") == MN_OK && buf_append(b, line.data, line.len) == MN_OK) {
			buf_release(&line);
			return;
		}
		buf_release(&line);
	}
	(*dropped)++;
}

void config_state_error(struct config_state *st, const char *fmt, ...)
{
	va_list ap;

	st->n_errors++;
	va_start(ap, fmt);
	config_state_vappend(st->errors, &st->errors_dropped, fmt, ap);
	va_end(ap);
}

void config_state_warning(struct config_state *st, const char *fmt, ...)
{
	va_list ap;

	st->n_warnings++;
	va_start(ap, fmt);
	config_state_vappend(st->warnings, &st->warnings_dropped, fmt, ap);
	va_end(ap);
}

void config_state_finish(struct config_state *st)
{
	if (st->errors && st->errors_dropped)
		buf_printf(st->errors, "%zu more %s not shown\n", st->errors_dropped,
			   st->errors_dropped == 1 ? "error" : "errors");
	if (st->warnings && st->warnings_dropped)
		buf_printf(st->warnings, "%zu more %s not shown\n", st->warnings_dropped,
			   st->warnings_dropped == 1 ? "warning" : "warnings");
	st->errors_dropped = 0;
	st->warnings_dropped = 0;
}
