#include "core/json_scan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_depth.h"
#include "core/text.h"

static bool fail(struct jscan *s, const char *what)
{
	if (!s->failed) {
		s->failed = true;
		snprintf(s->err, sizeof(s->err), "%s at offset %zu", what,
			 (size_t)(s->p - s->start));
	}
	return false;
}

/* Appends to a string being taken out: over the buffer's cap the string is
 * too long (the input's fault); an allocation that failed is no fault of
 * the input and says so. */
static bool append(struct jscan *s, struct buf *out, const char *data, size_t len)
{
	enum mn_err e = buf_append(out, data, len);

	if (e == MN_OK)
		return true;
	if (e == MN_NOMEM) {
		fail(s, "out of memory");
		s->nomem = true;
		return false;
	}
	return fail(s, "string too long");
}

void jscan_init(struct jscan *s, const char *text, size_t len)
{
	s->start = s->p = text;
	s->end = text + len;
	s->depth = 0;
	s->started = s->objects = 0;
	s->failed = false;
	s->nomem = false;
	s->err[0] = '\0';
}

const char *jscan_error(const struct jscan *s) { return s->err; }

static void skip_ws(struct jscan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

enum jscan_type jscan_peek(struct jscan *s)
{
	if (s->failed)
		return JSCAN_ERROR;
	skip_ws(s);
	if (s->p >= s->end)
		return fail(s, "unexpected end"), JSCAN_ERROR;
	switch (*s->p) {
	case '{': return JSCAN_OBJECT;
	case '[': return JSCAN_ARRAY;
	case '"': return JSCAN_STRING;
	case 't': return JSCAN_TRUE;
	case 'f': return JSCAN_FALSE;
	case 'n': return JSCAN_NULL;
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
			return JSCAN_NUMBER;
		return fail(s, "expected a value"), JSCAN_ERROR;
	}
}

static bool literal(struct jscan *s, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return fail(s, "invalid literal");
	s->p += n;
	return true;
}

static bool digits(struct jscan *s)
{
	const char *p0 = s->p;

	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > p0 || fail(s, "invalid number");
}

/* RFC 8259 number grammar; *integral false when it has a fraction or an
 * exponent. */
static bool number(struct jscan *s, bool *integral)
{
	*integral = true;
	if (s->p < s->end && *s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0')
		s->p++;
	else if (!digits(s))
		return false;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		*integral = false;
		if (!digits(s))
			return false;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		*integral = false;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!digits(s))
			return false;
	}
	return true;
}

static bool hex4(struct jscan *s, unsigned *v)
{
	*v = 0;
	if (s->end - s->p < 4)
		return fail(s, "invalid \\u escape");
	for (int i = 0; i < 4; i++) {
		int h = text_hex_value(s->p[i]);

		if (h < 0)
			return fail(s, "invalid \\u escape");
		*v = *v << 4 | (unsigned)h;
	}
	s->p += 4;
	return true;
}

static size_t utf8_put(unsigned cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Length of the well-formed UTF-8 sequence at p (0 when it is not one). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	size_t n;
	unsigned cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		n = 2, cp = p[0] & 0x1F;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		n = 3, cp = p[0] & 0x0F;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3F);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return n;
}

/* A string at s->p (on its '"'): into 'out' when not NULL. */
static bool string(struct jscan *s, struct buf *out)
{
	s->p++;
	for (;;) {
		const char *run = s->p;
		char enc[4];
		unsigned cp, lo;

		/* the plain run up to a quote, a backslash or a control byte */
		while (s->p < s->end && *s->p != '"' && *s->p != '\\' &&
		       (unsigned char)*s->p >= 0x20) {
			if (out && (unsigned char)*s->p >= 0x80) {
				size_t n = utf8_len((const unsigned char *)s->p,
						    (const unsigned char *)s->end);

				if (n == 0)
					return fail(s, "invalid UTF-8 in a string");
				s->p += n;
			} else {
				s->p++;
			}
		}
		if (out && s->p > run && !append(s, out, run, (size_t)(s->p - run)))
			return false;
		if (s->p >= s->end)
			return fail(s, "unterminated string");
		if (*s->p == '"') {
			s->p++;
			return true;
		}
		if ((unsigned char)*s->p < 0x20)
			return fail(s, "control character in a string");
		/* a backslash */
		if (++s->p >= s->end)
			return fail(s, "unterminated string");
		switch (*s->p++) {
		case '"': enc[0] = '"'; break;
		case '\\': enc[0] = '\\'; break;
		case '/': enc[0] = '/'; break;
		case 'b': enc[0] = '\b'; break;
		case 'f': enc[0] = '\f'; break;
		case 'n': enc[0] = '\n'; break;
		case 'r': enc[0] = '\r'; break;
		case 't': enc[0] = '\t'; break;
		case 'u':
			if (!hex4(s, &cp))
				return false;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
					return fail(s, "lone surrogate in a string");
				s->p += 2;
				if (!hex4(s, &lo))
					return false;
				if (lo < 0xDC00 || lo > 0xDFFF)
					return fail(s, "lone surrogate in a string");
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				return fail(s, "lone surrogate in a string");
			}
			if (cp == 0)
				return fail(s, "\\u0000 in a string");
			if (out && !append(s, out, enc, utf8_put(cp, enc)))
				return false;
			continue;
		default:
			s->p--;
			return fail(s, "invalid escape");
		}
		if (out && !append(s, out, enc, 1))
			return false;
	}
}

static bool enter(struct jscan *s, enum jscan_type type)
{
	enum jscan_type t = jscan_peek(s);
	uint64_t bit;

	if (t != type)
		return t == JSCAN_ERROR ? false
					: fail(s, type == JSCAN_ARRAY ? "expected an array"
								      : "expected an object");
	if (s->depth >= MN_JSON_MAX_DEPTH)
		return fail(s, "JSON nested deeper than 64 levels");
	bit = 1ULL << s->depth++;
	s->started &= ~bit;
	if (type == JSCAN_OBJECT)
		s->objects |= bit;
	else
		s->objects &= ~bit;
	s->p++;
	return true;
}

bool jscan_array_begin(struct jscan *s) { return enter(s, JSCAN_ARRAY); }
bool jscan_object_begin(struct jscan *s) { return enter(s, JSCAN_OBJECT); }

/* true when the innermost container has another member, the ',' before it
 * consumed; false at its end (consumed) or on an error. */
static bool more(struct jscan *s, char close)
{
	uint64_t bit;

	if (s->failed)
		return false;
	if (s->depth == 0)
		return fail(s, "not in an array or object");
	bit = 1ULL << (s->depth - 1);
	skip_ws(s);
	if (s->p >= s->end)
		return fail(s, "unexpected end");
	if (*s->p == close) {
		s->p++;
		s->depth--;
		return false;
	}
	if (s->started & bit) {
		if (*s->p != ',')
			return fail(s, close == ']' ? "expected ',' or ']'" : "expected ',' or '}'");
		s->p++;
	}
	s->started |= bit;
	return true;
}

bool jscan_array_next(struct jscan *s) { return more(s, ']'); }

bool jscan_object_next(struct jscan *s, char *key, size_t keylen)
{
	struct buf k;
	bool ok;

	if (!more(s, '}'))
		return false;
	skip_ws(s);
	if (s->p >= s->end || *s->p != '"')
		return fail(s, "expected a member name");
	if (key == NULL) {
		ok = string(s, NULL);
	} else {
		buf_init(&k, keylen > 1 ? keylen - 1 : 1);
		ok = string(s, &k);
		if (ok) {
			memcpy(key, k.data ? k.data : "", k.len);
			key[k.len] = '\0';
		}
		buf_release(&k);
	}
	if (!ok)
		return false;
	skip_ws(s);
	if (s->p >= s->end || *s->p != ':')
		return fail(s, "expected ':'");
	s->p++;
	return true;
}

bool jscan_string(struct jscan *s, struct buf *out)
{
	enum jscan_type t = jscan_peek(s);

	if (t != JSCAN_STRING)
		return t == JSCAN_ERROR ? false : fail(s, "expected a string");
	buf_reset(out);
	if (!string(s, out))
		return false;
	/* an empty string leaves the buffer unallocated */
	return out->data != NULL || append(s, out, "", 0);
}

bool jscan_integer(struct jscan *s, long long *out, bool *fits)
{
	enum jscan_type t = jscan_peek(s);
	const char *p0;
	bool integral;
	char text[32];
	char *end;

	*fits = false;
	if (t != JSCAN_NUMBER)
		return t == JSCAN_ERROR ? false : fail(s, "expected a number");
	p0 = s->p;
	if (!number(s, &integral))
		return false;
	if (!integral || (size_t)(s->p - p0) >= sizeof(text))
		return true;
	memcpy(text, p0, (size_t)(s->p - p0));
	text[s->p - p0] = '\0';
	errno = 0;
	*out = strtoll(text, &end, 10);
	*fits = errno == 0 && *end == '\0';
	return true;
}

/* One scalar, or the opening of a container. */
static bool value_start(struct jscan *s)
{
	bool integral;

	switch (jscan_peek(s)) {
	case JSCAN_OBJECT: return enter(s, JSCAN_OBJECT);
	case JSCAN_ARRAY: return enter(s, JSCAN_ARRAY);
	case JSCAN_STRING: return string(s, NULL);
	case JSCAN_NUMBER: return number(s, &integral);
	case JSCAN_TRUE: return literal(s, "true");
	case JSCAN_FALSE: return literal(s, "false");
	case JSCAN_NULL: return literal(s, "null");
	case JSCAN_ERROR: break;
	}
	return false;
}

bool jscan_skip(struct jscan *s)
{
	/* iterative: the nesting is bounded, the stack constant */
	size_t base = s->depth;

	for (;;) {
		if (!value_start(s))
			return false;
		/* the next value to read, closing containers that end */
		for (;;) {
			bool another;

			if (s->depth == base)
				return true;
			another = s->objects & (1ULL << (s->depth - 1)) ? jscan_object_next(s, NULL, 0)
								       : more(s, ']');
			if (another)
				break;
			if (s->failed)
				return false;
		}
	}
}

bool jscan_end(struct jscan *s)
{
	if (s->failed)
		return false;
	skip_ws(s);
	return s->p == s->end || fail(s, "text after the value");
}
