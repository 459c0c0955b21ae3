/* A validating pull scanner over JSON text, for large answers from outside
 * of which only a few fields matter (a Consul health answer of 10,000
 * instances is about 10 MB): values are walked in place and the ones not
 * asked for are skipped without allocating, where building a jansson tree
 * of the whole text costs one allocation per value. The grammar is checked
 * everywhere (RFC 8259; strings taken out are also checked to be UTF-8);
 * nesting deeper than MN_JSON_MAX_DEPTH is refused. The first error sticks:
 * every call after it fails, and jscan_error() tells what and where. */
#ifndef MESHNODE_CORE_JSON_SCAN_H
#define MESHNODE_CORE_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum jscan_type { JSCAN_ERROR, JSCAN_OBJECT, JSCAN_ARRAY, JSCAN_STRING, JSCAN_NUMBER,
		  JSCAN_TRUE, JSCAN_FALSE, JSCAN_NULL };

struct jscan {
	const char *start, *p, *end;
	size_t depth;
	uint64_t started;   /* bit d: the container at depth d has a member */
	uint64_t objects;   /* bit d: the container at depth d is an object */
	bool failed;
	bool nomem;         /* the error is an allocation that failed */
	char err[96];
};

void jscan_init(struct jscan *s, const char *text, size_t len);

/* The type of the next value (whitespace skipped), without consuming it. */
enum jscan_type jscan_peek(struct jscan *s);

/* Consumes the next value, whatever it is, checking it. */
bool jscan_skip(struct jscan *s);

/* Enters an array or object; false when the next value is not one. */
bool jscan_array_begin(struct jscan *s);
bool jscan_object_begin(struct jscan *s);

/* true when the array has another element (then read or skip it); false
 * at its end (consumed) or on an error. */
bool jscan_array_next(struct jscan *s);

/* true when the object has another member: its key, unescaped, is in
 * 'key' (NUL-terminated; a key longer than keylen - 1 is an error; key
 * NULL: not kept); then read or skip its value. false at the end
 * (consumed) or on an error. */
bool jscan_object_next(struct jscan *s, char *key, size_t keylen);

/* Reads a string value, unescaped and checked to be UTF-8, into 'out'
 * (reset first; NUL-terminated, may hold no NUL byte). false when the next
 * value is not a string, on an error, or when 'out' is over its cap. */
bool jscan_string(struct jscan *s, struct buf *out);

/* Reads a number value; *fits tells whether it is an integer (no fraction
 * or exponent) that fits in a long long, then in *out. false when the next
 * value is not a number. */
bool jscan_integer(struct jscan *s, long long *out, bool *fits);

/* true when only whitespace is left. */
bool jscan_end(struct jscan *s);

/* The first error: "expected ',' or ']' at offset 1234"; "" when none.
 * When an allocation failed ('out' of jscan_string() or a key), the error
 * is "out of memory at offset N" and s->nomem is set, so that a caller can
 * answer MN_NOMEM rather than call the text invalid. */
const char *jscan_error(const struct jscan *s);

#endif
