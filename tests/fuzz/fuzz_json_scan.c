/* The pull scanner against jansson: whatever one takes as JSON, so does the
 * other (inputs holding a NUL byte or a byte past ASCII aside: the scanner
 * checks UTF-8 only in strings it takes out); a walk that takes every
 * string out never crashes, and what it takes out is valid UTF-8. */
#include <jansson.h>

#include "core/json_depth.h"
#include "core/json_scan.h"
#include "fuzz.h"

/* Walks any value, taking strings and member names out. */
static bool walk(struct jscan *s, struct buf *b)
{
	char key[64];
	long long v;
	bool fits;

	switch (jscan_peek(s)) {
	case JSCAN_ARRAY:
		if (!jscan_array_begin(s))
			return false;
		while (jscan_array_next(s))
			if (!walk(s, b))
				return false;
		return !s->failed;
	case JSCAN_OBJECT:
		if (!jscan_object_begin(s))
			return false;
		while (jscan_object_next(s, key, sizeof(key)))
			if (!walk(s, b))
				return false;
		return !s->failed;
	case JSCAN_STRING:
		if (!jscan_string(s, b))
			return false;
		FUZZ_CHECK(b->data && strlen(b->data) == b->len);
		{
			json_t *js = json_string(b->data); /* jansson checks the UTF-8 */

			FUZZ_CHECK(js != NULL);
			json_decref(js);
		}
		return true;
	case JSCAN_NUMBER:
		return jscan_integer(s, &v, &fits);
	case JSCAN_ERROR:
		return false;
	default:
		return jscan_skip(s);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	bool ascii = true, ours;
	struct jscan s;
	json_error_t jerr;
	struct buf b;
	json_t *j;

	jscan_init(&s, text, size);
	ours = jscan_skip(&s) && jscan_end(&s);
	for (size_t i = 0; i < size; i++)
		ascii = ascii && data[i] != 0 && data[i] < 0x80;
	/* jansson nests up to 2048 levels, the scanner 64 */
	if (ascii && !json_depth_exceeds(text, size, MN_JSON_MAX_DEPTH)) {
		j = json_loadb(text, size, JSON_DECODE_ANY, &jerr);
		if (j || (!strstr(jerr.text, "too big") && !strstr(jerr.text, "overflow")))
			FUZZ_CHECK(ours == (j != NULL));
		json_decref(j);
	}
	buf_init(&b, 1u << 20);
	jscan_init(&s, text, size);
	if (walk(&s, &b) && jscan_end(&s))
		FUZZ_CHECK(ours);
	buf_release(&b);
	return 0;
}
