#include "core/json_depth.h"

bool json_depth_exceeds(const char *text, size_t len, size_t max_depth)
{
	size_t depth = 0;
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (in_string) {
			/* A backslash takes the next byte with it, so \" never
			 * ends the string and \\" does. */
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
			continue;
		}
		switch (c) {
		case '"':
			in_string = true;
			break;
		case '[':
		case '{':
			if (++depth > max_depth)
				return true;
			break;
		case ']':
		case '}':
			/* A stray closer is the parser's to refuse; not
			 * going below zero keeps it from buying depth. */
			if (depth > 0)
				depth--;
			break;
		default:
			break;
		}
	}
	return false;
}

enum mn_err json_depth_check(const char *text, size_t len, char *err, size_t errlen)
{
	if (!json_depth_exceeds(text, len, MN_JSON_MAX_DEPTH))
		return MN_OK;
	return mn_error(err, errlen, MN_INVALID, "JSON nested deeper than %d levels",
			MN_JSON_MAX_DEPTH);
}
