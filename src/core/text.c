#include "core/text.h"

#include <string.h>

/* Written out rather than <ctype.h>: the answer must not depend on the
 * locale. */
static bool ascii_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

ssize_t text_find_control(const char *s, size_t len, unsigned *codepoint)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < len; i++) {
		unsigned cp;

		if (p[i] < 0x20 || p[i] == 0x7f)
			cp = p[i];
		else if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
			cp = p[i + 1];
		else
			continue;
		if (codepoint)
			*codepoint = cp;
		return (ssize_t)i;
	}
	return -1;
}

void text_trim(const char **s, size_t *len)
{
	const unsigned char *p = (const unsigned char *)*s;
	size_t n = *len;

	while (n > 0 && ascii_space(*p)) {
		p++;
		n--;
	}
	while (n > 0 && ascii_space(p[n - 1]))
		n--;
	*s = (const char *)p;
	*len = n;
}

bool text_equal_nocase(const char *a, const char *b)
{
	const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;

	for (; *x && ascii_lower(*x) == ascii_lower(*y); x++, y++)
		;
	return ascii_lower(*x) == ascii_lower(*y);
}

int text_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool text_parse_bool(const char *s, bool *out)
{
	static const char *const words[] = {"false", "f", "0", "true", "t", "1"};
	size_t len = strlen(s), i, k;

	text_trim(&s, &len);
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strlen(words[i]) != len)
			continue;
		for (k = 0; k < len && ascii_lower((unsigned char)s[k]) == (unsigned char)words[i][k]; k++)
			;
		if (k == len) {
			*out = i >= 3;
			return true;
		}
	}
	return false;
}
