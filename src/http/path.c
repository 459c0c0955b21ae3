#include "http/path.h"

#include <stdbool.h>
#include <string.h>

#include "core/text.h"

/* A segment that decodes to "." or "..": the server removed the plain ones
 * before decoding, so these could only come from %2e and would climb out of
 * the route after all. */
static bool dot_segment(const char *seg, size_t len)
{
	return (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.');
}

enum mn_err http_path_decode(char *path, char *err, size_t errlen)
{
	char *out = path, *seg = path;
	bool seg_encoded = false;

	if (path[0] != '/')
		return mn_error(err, errlen, MN_INVALID, "the request path must start with '/'");
	for (const char *in = path; *in; in++) {
		unsigned char c = (unsigned char)*in;

		if (c == '%') {
			int hi = text_hex_value(in[1]), lo = hi < 0 ? -1 : text_hex_value(in[2]);

			if (lo < 0)
				return mn_error(err, errlen, MN_INVALID,
						"malformed percent-encoding in the request path");
			c = (unsigned char)(hi * 16 + lo);
			in += 2;
			if (c == '\0')
				return mn_error(err, errlen, MN_INVALID, "encoded NUL in the request path");
			if (c == '/')
				return mn_error(err, errlen, MN_INVALID,
						"encoded '/' in a request path segment");
			seg_encoded = true;
		} else if (c == '/') {
			if (seg_encoded && dot_segment(seg, (size_t)(out - seg)))
				return mn_error(err, errlen, MN_INVALID,
						"encoded dot segment in the request path");
			*out++ = '/';
			seg = out;
			seg_encoded = false;
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			return mn_error(err, errlen, MN_INVALID, "control character in the request path");
		*out++ = (char)c;
	}
	if (seg_encoded && dot_segment(seg, (size_t)(out - seg)))
		return mn_error(err, errlen, MN_INVALID, "encoded dot segment in the request path");
	*out = '\0';
	return MN_OK;
}

enum mn_err http_content_length_parse(const char *value, int64_t *out)
{
	const char *p = value;
	int64_t v = 0;
	int digits = 0;

	if (p == NULL)
		return MN_INVALID;
	while (*p == ' ' || *p == '\t')
		p++;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (++digits > 18)
			return MN_INVALID;
		v = v * 10 + (*p - '0');
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (digits == 0 || *p != '\0')
		return MN_INVALID;
	*out = v;
	return MN_OK;
}
