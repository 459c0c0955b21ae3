/* The base64 decoder of Consul KV values (static in src/consul/kv.c, so the
 * module is included whole, h2o's t/00unit style). The input is used twice:
 * as text to decode, which must succeed exactly for canonical-length
 * standard base64 and give back what re-encodes to it; and as bytes to
 * encode, which must decode to themselves. */
#include "../../src/consul/kv.c"

#include "fuzz.h"

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *encode(const uint8_t *in, size_t len, size_t *outlen)
{
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	FUZZ_CHECK(out != NULL);
	for (i = 0; i + 2 < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];

		*o++ = b64chars[v >> 18 & 63];
		*o++ = b64chars[v >> 12 & 63];
		*o++ = b64chars[v >> 6 & 63];
		*o++ = b64chars[v & 63];
	}
	if (len - i == 1) {
		unsigned v = (unsigned)in[i] << 16;

		*o++ = b64chars[v >> 18 & 63];
		*o++ = b64chars[v >> 12 & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (len - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;

		*o++ = b64chars[v >> 18 & 63];
		*o++ = b64chars[v >> 12 & 63];
		*o++ = b64chars[v >> 6 & 63];
		*o++ = '=';
	}
	*o = '\0';
	*outlen = (size_t)(o - out);
	return out;
}

/* The rule, written independently of the decoder: a multiple of four
 * characters from the alphabet, with '=' only as "x=" or "==" at the end. */
static bool canonical(const uint8_t *in, size_t len, size_t *pad)
{
	*pad = 0;
	if (len % 4 != 0)
		return false;
	if (len >= 1 && in[len - 1] == '=')
		*pad = len >= 2 && in[len - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < len - *pad; i++)
		if (in[i] == '\0' || !strchr(b64chars, in[i]))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t outlen = 0, enclen, pad, declen;
	char *out, *enc, *dec;
	bool valid = canonical(data, size, &pad);

	/* as text: the decoder reads exactly 'size' bytes (no NUL needed) */
	out = base64_decode((const char *)data, size, &outlen);
	FUZZ_CHECK((out != NULL) == valid);
	if (out) {
		FUZZ_CHECK(outlen == size / 4 * 3 - pad);
		FUZZ_CHECK(out[outlen] == '\0');
		enc = encode((const uint8_t *)out, outlen, &enclen);
		FUZZ_CHECK(enclen == size);
		/* the last character before padding may carry unused bits */
		for (size_t i = 0; i < size; i++) {
			unsigned drop = i + 1 == size - pad ? (unsigned)pad * 2 : 0;

			FUZZ_CHECK(b64val((unsigned char)enc[i]) >> drop ==
				   b64val(data[i]) >> drop);
		}
		free(enc);
		free(out);
	}

	/* as bytes: encoding then decoding gives them back, NULs and all */
	enc = encode(data, size, &enclen);
	dec = base64_decode(enc, enclen, &declen);
	FUZZ_CHECK(dec != NULL);
	FUZZ_CHECK(declen == size);
	FUZZ_CHECK(size == 0 || memcmp(dec, data, size) == 0);
	free(dec);
	free(enc);
	return 0;
}
