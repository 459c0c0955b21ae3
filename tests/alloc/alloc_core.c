/* Allocation failures in the JSON scanner (core/json_scan: every string
 * and member name taken out of a document) and in escaping (core/escape),
 * over the inputs of their unit tests and the scanner's fuzz seeds. */
#include "core/escape.h"
#include "core/json_scan.h"
#include "torture.h"

/* Walks any value, taking every string out, as the health parser does;
 * the strings and keys go into 'out'. */
static bool walk(struct jscan *s, struct buf *b, struct torture_out *out)
{
	char key[64];
	long long v;
	bool fits;

	switch (jscan_peek(s)) {
	case JSCAN_ARRAY:
		if (!jscan_array_begin(s))
			return false;
		while (jscan_array_next(s))
			if (!walk(s, b, out))
				return false;
		return !s->failed;
	case JSCAN_OBJECT:
		if (!jscan_object_begin(s))
			return false;
		while (jscan_object_next(s, key, sizeof(key))) {
			torture_outf(out, "key %s\n", key);
			if (!walk(s, b, out))
				return false;
		}
		return !s->failed;
	case JSCAN_STRING:
		if (!jscan_string(s, b))
			return false;
		TORTURE_CHECK(b->data && strlen(b->data) == b->len);
		torture_outf(out, "string %s\n", b->data);
		return true;
	case JSCAN_NUMBER:
		if (!jscan_integer(s, &v, &fits))
			return false;
		torture_outf(out, "number %lld %d\n", fits ? v : 0, (int)fits);
		return true;
	case JSCAN_ERROR: return false;
	default: return jscan_skip(s);
	}
}

static enum mn_err scan(const void *input, size_t len, struct torture_out *out)
{
	struct jscan s;
	struct buf b;
	bool ok;

	buf_init(&b, 1u << 20);
	jscan_init(&s, input, len);
	ok = walk(&s, &b, out) && jscan_end(&s);
	buf_release(&b);
	if (ok)
		return MN_OK;
	TORTURE_CHECK(s.failed || !jscan_end(&s));
	torture_outf(out, "%s\n", jscan_error(&s));
	return s.nomem ? MN_NOMEM : MN_INVALID;
}

static enum mn_err escape(const void *input, size_t len, struct torture_out *out)
{
	enum escape_style styles[] = {ESCAPE_TEXT, ESCAPE_JSON};

	for (size_t i = 0; i < 2; i++) {
		struct buf b;
		enum mn_err e;

		buf_init(&b, 1u << 20);
		e = escape_buf(&b, input, len, styles[i]);
		if (e != MN_OK) {
			TORTURE_CHECK(b.data == NULL && b.len == 0); /* content freed */
			return e;
		}
		torture_outf(out, "%.*s\n", (int)b.len, b.data);
		buf_release(&b);
	}
	return MN_OK;
}

#define TEXT_CASE(fn, s) torture_case(#fn " " #s, fn, s, sizeof(s) - 1)

int main(void)
{
	static const char *const docs[] = {
		/* test_json_scan.c: valid, invalid, strings, seeds */
		"[]",
		"{}",
		" [ ] ",
		"0",
		"-0",
		"1.5e+3",
		"-12.25E-2",
		"true",
		"false",
		"null",
		"\"\"",
		"\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
		"\"\\u00e9\\ud83d\\ude00\"",
		"[1,[2,{\"a\":[3]}],{}]",
		"{\"a\":1,\"a\":2}",
		"\t\r\n{ \"k\" : [ true , null ] }\n",
		"",
		"[",
		"[1,]",
		"{\"a\" 1}",
		"01",
		"\"abc",
		"\"\\x\"",
		"\"\\ud83d\"",
		"\"\\u0000\"",
		"\"a\nb\"",
		"{\"a\":1}{",
		"[\"caf\\u00e9\", \"\\ud83d\\ude00\", \"x\\ty\", \"\"]",
		"[{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},\"Service\":{\"ID\":\"u-1\","
		"\"Tags\":[\"a\",\"b\"],\"Meta\":{\"k\":\"v\"},\"Port\":8080,\"W\":{\"P\":1,"
		"\"W\":-1.5e3}},\"Checks\":[{\"Status\":\"passing\",\"Output\":\"ok\\n\"}]}]",
		"{\"a\":[true,false,null,0,-0.25,\"\\u0041\\\\\"],\"b\":{}}",
	};

	torture_quiet_logs();
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
		torture_case(docs[i], scan, docs[i], strlen(docs[i]));
	torture_files("tests/fuzz/corpus/fuzz_json_scan", NULL, scan, 2);
	torture_files("tests/fuzz/corpus/fuzz_consul_health", NULL, scan, 5);

	/* test_escape.c */
	TEXT_CASE(escape, "GET /users/42 ok");
	TEXT_CASE(escape, "");
	TEXT_CASE(escape, "say \"hi\" \\o/");
	TEXT_CASE(escape, "a\nb\rc\td");
	TEXT_CASE(escape, "\x01\x1b[31m\x1f\x7f");
	TEXT_CASE(escape, "a\0b");
	TEXT_CASE(escape, "a\xc2\x85"
			  "b\xc2\x9b"
			  "c\xc2\x80");
	TEXT_CASE(escape, "\xe2\x80\xa8|\xe2\x80\xa9");
	TEXT_CASE(escape, "\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82");
	torture_files("tests/fuzz/corpus/fuzz_router", NULL, escape, 10);
	return torture_report("alloc_core");
}
