/* A Consul KV answer (GET /v1/kv/<prefix>?recurse) as the agent, or
 * anything in its place, sends it; and X-Consul-Index values. */
#include <ctype.h>

#include "consul/kv.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct consul_kv *pairs = (struct consul_kv *)&pairs;
	char err[256] = "", *text;
	size_t n = 42;
	enum mn_err e;
	uint64_t index;

	/* the body is not NUL-terminated: the parser must keep to 'size' */
	e = consul_kv_parse((const char *)data, size, &pairs, &n, err, sizeof(err));
	FUZZ_CHECK(e == MN_OK || e == MN_INVALID);
	if (e == MN_OK) {
		FUZZ_CHECK(n == 0 || pairs != NULL);
		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK(pairs[i].key != NULL);
			FUZZ_CHECK(pairs[i].value == NULL ||
				   strlen(pairs[i].value) <= CONSUL_KV_VALUE_MAX);
		}
		consul_kv_free(pairs, n);
	} else {
		FUZZ_CHECK(pairs == NULL && n == 0);
		FUZZ_CHECK(err[0] != '\0');
	}

	text = fuzz_strndup(data, size);
	index = consul_index_parse(text);
	if (index != 0) {
		for (const char *p = text; *p; p++)
			FUZZ_CHECK(isdigit((unsigned char)*p));
		FUZZ_CHECK(strtoull(text, NULL, 10) == index);
	}
	free(text);
	return 0;
}
