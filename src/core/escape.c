#include "core/escape.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hex[] = "0123456789abcdef";

/* The length of the valid UTF-8 sequence at s[0..avail) (Unicode's table
 * of well-formed byte sequences), or 0 when s[0] does not start one. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0; /* a continuation byte, C0/C1 (overlong) or F5-FF */
	/* The second byte's range rules out overlong forms (E0, F0),
	 * surrogates (ED) and code points past U+10FFFF (F4). */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* The code point of a valid sequence of 'n' bytes. */
static uint32_t utf8_decode(const unsigned char *s, size_t n)
{
	uint32_t cp = n == 1 ? s[0] : s[0] & (0x7f >> n);

	for (size_t i = 1; i < n; i++)
		cp = (cp << 6) | (s[i] & 0x3f);
	return cp;
}

/* The escape for one character or invalid byte into out (at least 7
 * bytes), or 0 when it goes out as it is. */
static size_t escape_one(uint32_t cp, bool invalid, enum escape_style style, char out[8])
{
	if (invalid) {
		if (style == ESCAPE_JSON) {
			memcpy(out, "\\ufffd", 6);
			return 6;
		}
		out[0] = '\\';
		out[1] = 'x';
		out[2] = hex[(cp >> 4) & 15];
		out[3] = hex[cp & 15];
		return 4;
	}
	switch (cp) {
	case '\n': memcpy(out, "\\n", 2); return 2;
	case '\r': memcpy(out, "\\r", 2); return 2;
	case '\t': memcpy(out, "\\t", 2); return 2;
	case '"':
	case '\\':
		if (style != ESCAPE_JSON)
			return 0;
		out[0] = '\\';
		out[1] = (char)cp;
		return 2;
	default: break;
	}
	if ((cp < 0x20 || cp == 0x7f) && style == ESCAPE_TEXT) {
		out[0] = '\\';
		out[1] = 'x';
		out[2] = hex[cp >> 4];
		out[3] = hex[cp & 15];
		return 4;
	}
	if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
		memcpy(out, "\\u", 2);
		for (int i = 0; i < 4; i++)
			out[2 + i] = hex[(cp >> (12 - 4 * i)) & 15];
		return 6;
	}
	return 0;
}

size_t escape_append(char *dst, size_t cap, size_t *pos, const char *src, size_t len,
		     enum escape_style style)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0;

	while (i < len) {
		size_t n = utf8_len(s + i, len - i), out_len;
		char out[8];

		if (n == 0) {
			out_len = escape_one(s[i], true, style, out);
			n = 1;
		} else {
			out_len = escape_one(utf8_decode(s + i, n), false, style, out);
		}
		if (out_len == 0) {
			if (cap - *pos < n)
				break;
			memcpy(dst + *pos, s + i, n);
			*pos += n;
		} else {
			if (cap - *pos < out_len)
				break;
			memcpy(dst + *pos, out, out_len);
			*pos += out_len;
		}
		i += n;
	}
	return i;
}

enum mn_err escape_buf(struct buf *b, const char *src, size_t len, enum escape_style style)
{
	char chunk[256];
	enum mn_err err = MN_OK;

	/* An empty append still gives the buffer its content and NUL. */
	if (len == 0)
		return buf_append(b, "", 0);
	while (len > 0 && err == MN_OK) {
		size_t pos = 0, used = escape_append(chunk, sizeof(chunk), &pos, src, len, style);

		err = buf_append(b, chunk, pos);
		src += used;
		len -= used;
	}
	return err;
}

enum mn_err escape_vprintf(struct buf *b, enum escape_style style, const char *fmt, va_list ap)
{
	char *text = NULL;
	int n = vasprintf(&text, fmt, ap);
	enum mn_err err;

	if (n < 0)
		return MN_NOMEM;
	err = escape_buf(b, text, (size_t)n, style);
	free(text);
	return err;
}
