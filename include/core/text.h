/* Small checks on text that comes from outside (request bodies) before it
 * is stored: control characters, surrounding whitespace, ASCII case. */
#ifndef MESHNODE_CORE_TEXT_H
#define MESHNODE_CORE_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The offset of the first control character in the 'len' bytes at 's', or
 * -1 when there is none. Control characters are Unicode's: C0 (U+0000 to
 * U+001F), DEL (U+007F) and C1 (U+0080 to U+009F, which UTF-8 writes as
 * 0xc2 0x80 to 0xc2 0x9f). When one is found and 'codepoint' is not NULL,
 * *codepoint receives it. 's' need not be NUL-terminated. */
ssize_t text_find_control(const char *s, size_t len, unsigned *codepoint);

/* Narrows the 'len' bytes at *s to leave out leading and trailing ASCII
 * whitespace (space, \t, \n, \v, \f, \r): *s and *len are updated. */
void text_trim(const char **s, size_t *len);

/* true when a and b are equal once ASCII letters are folded to lower case
 * (SQLite's NOCASE: bytes >= 0x80 compare as they are), whatever the
 * locale. */
bool text_equal_nocase(const char *a, const char *b);

/* The value of the hexadecimal digit 'c' (either case), or -1. */
int text_hex_value(char c);

/* A boolean as Consul and its tools read one (Go's strconv.ParseBool),
 * in any ASCII case and between ASCII whitespace: true, t, 1 or false, f,
 * 0. The one boolean parser for settings from KV and the environment and
 * for CONSUL_HTTP_SSL-style variables. false when 's' is none of them
 * (*out untouched). */
bool text_parse_bool(const char *s, bool *out);

#endif
