/* One setting's text as KV and the environment give it: the first byte
 * picks the setting, the rest is the text. What parses and passes the
 * check has the setting's type and bounds and is already normalised; the
 * text is also tried as a setting name, as KV paths and variable names
 * become one. */
#include <jansson.h>

#include "config/settings.h"
#include "fuzz.h"

/* A concrete name for a templated setting. */
static const char *concrete(const struct setting_def *def, char *buf, size_t len)
{
	const char *star = strchr(def->name, '*');

	if (star == NULL)
		return def->name;
	snprintf(buf, len, "%.*s%s%s", (int)(star - def->name), def->name,
		 strncmp(def->name, "peers.", 6) == 0 ? "users" : "beta", star + 1);
	return buf;
}

static void check_typed(const struct setting_def *def, const json_t *v)
{
	const char *key;
	json_t *item;
	size_t i;

	switch (def->type) {
	case SETTING_STRING:
		FUZZ_CHECK(json_is_string(v));
		FUZZ_CHECK((long long)strlen(json_string_value(v)) >= def->min);
		FUZZ_CHECK(def->max == 0 || (long long)strlen(json_string_value(v)) <= def->max);
		if (def->choices) {
			const char *const *c = def->choices;

			while (*c && strcmp(*c, json_string_value(v)) != 0)
				c++;
			FUZZ_CHECK(*c != NULL);
		}
		break;
	case SETTING_INT:
		FUZZ_CHECK(json_is_integer(v));
		FUZZ_CHECK(json_integer_value(v) >= def->min && json_integer_value(v) <= def->max);
		break;
	case SETTING_BOOL: FUZZ_CHECK(json_is_boolean(v)); break;
	case SETTING_LIST:
		FUZZ_CHECK(json_is_array(v) && (long long)json_array_size(v) >= def->min);
		json_array_foreach(v, i, item) {
			FUZZ_CHECK(json_is_string(item) && json_string_length(item) > 0);
		}
		break;
	case SETTING_MAP:
		FUZZ_CHECK(json_is_object(v));
		json_object_foreach((json_t *)v, key, item) {
			FUZZ_CHECK(json_is_string(item));
		}
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct setting_def *def, *found;
	char reason[256] = "", name[64], *text;
	json_t *v, *again;

	if (size == 0)
		return -1;
	def = &settings_table[data[0] % settings_count];
	text = fuzz_strndup(data + 1, size - 1);

	FUZZ_CHECK(settings_find(concrete(def, name, sizeof(name))) == def);
	v = settings_parse_text(def, text, reason, sizeof(reason));
	if (v == NULL) {
		FUZZ_CHECK(reason[0] != '\0');
	} else if (!settings_check(def, &v, reason, sizeof(reason))) {
		FUZZ_CHECK(reason[0] != '\0');
		json_decref(v);
	} else {
		check_typed(def, v);
		/* checking a checked value changes nothing */
		again = json_deep_copy(v);
		FUZZ_CHECK(again != NULL);
		FUZZ_CHECK(settings_check(def, &again, reason, sizeof(reason)));
		FUZZ_CHECK(json_equal(again, v));
		json_decref(again);
		json_decref(v);
	}

	found = settings_find(text);
	if (found && !settings_is_template(found)) {
		FUZZ_CHECK(strcmp(found->name, text) == 0);
	} else if (found) {
		const char *star = strchr(found->name, '*');
		size_t head = (size_t)(star - found->name), tail = strlen(star + 1);

		FUZZ_CHECK(strncmp(found->name, text, head) == 0);
		FUZZ_CHECK(strlen(text) > head + tail);
		FUZZ_CHECK(strcmp(text + strlen(text) - tail, star + 1) == 0);
		FUZZ_CHECK(settings_name_valid(text + head, strlen(text) - head - tail,
					       strncmp(found->name, "peers.", 6) == 0));
		if (strncmp(found->name, "peers.", 6) == 0)
			FUZZ_CHECK(strlen(text) - head - tail <= SETTINGS_PEER_NAME_MAX);
	}
	free(text);
	return 0;
}
