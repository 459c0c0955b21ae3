/* Escaping text from outside (request paths, KV keys, Consul answers) so it
 * stays on one line and cannot pass for something else: every control
 * character (U+0000-U+001F, U+007F, U+0080-U+009F), the Unicode line and
 * paragraph separators (U+2028, U+2029) and every byte that is not part of
 * valid UTF-8 (stray continuation bytes, overlong forms, surrogates, code
 * points past U+10FFFF, sequences cut short) is written as an escape.
 * Valid UTF-8 otherwise passes through unchanged. */
#ifndef MESHNODE_CORE_ESCAPE_H
#define MESHNODE_CORE_ESCAPE_H

#include <stdarg.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"

enum escape_style {
	/* For plain-text lines: \n \r \t, \xNN for other C0 controls, DEL
	 * and each invalid byte (so the byte value is kept), \u0085 for C1
	 * controls and the separators. Quotes and backslashes are kept as
	 * they are: the line is for people, one event per line. */
	ESCAPE_TEXT,
	/* The inside of a JSON string: \" \\ \n \r \t, \u00NN for other
	 * controls and DEL, \u0085 / \u2028 / \u2029, and \ufffd (the
	 * replacement character) for each invalid byte, so the result is
	 * always valid JSON and valid UTF-8. */
	ESCAPE_JSON,
};

/* Appends src[0..len) escaped in 'style' to dst[*pos..cap), a whole
 * character or escape at a time: it stops before the first one that
 * would not fit, so neither a UTF-8 sequence nor an escape is ever cut.
 * Advances *pos; writes no NUL. Returns how many bytes of src were
 * consumed: len when everything fit. */
size_t escape_append(char *dst, size_t cap, size_t *pos, const char *src, size_t len,
		     enum escape_style style);

/* Appends src[0..len) escaped to 'b'; the buffer's errors (MN_TOO_LARGE,
 * MN_NOMEM, content freed). */
enum mn_err escape_buf(struct buf *b, const char *src, size_t len, enum escape_style style);

/* Formats, then appends the result escaped to 'b'. MN_NOMEM when the text
 * cannot be formatted, otherwise as escape_buf(). */
enum mn_err escape_vprintf(struct buf *b, enum escape_style style, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

#endif
