/* A Consul health answer (GET /v1/health/service/<name>?passing): every
 * instance it yields must be safe to call, and host names are checked on
 * their own. */
#include <jansson.h>

#include "consul/health.h"
#include "fuzz.h"

/* What a valid host may contain: a name, an IPv4 or an IPv6 literal, and
 * so nothing that ends a URL authority ('/', '@', '?', '#', ' ', CR, LF). */
static bool host_chars_safe(const char *s)
{
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:-") ==
	       strlen(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct consul_instance *v = (struct consul_instance *)&v;
	char err[256] = "", *text;
	struct buf rejected;
	size_t n = 42;
	enum mn_err e;

	buf_init(&rejected, 1u << 20);
	e = consul_health_parse((const char *)data, size, &v, &n, &rejected, err, sizeof(err));
	FUZZ_CHECK(e == MN_OK || e == MN_INVALID);
	if (e == MN_OK) {
		FUZZ_CHECK(v != NULL);
		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK(v[i].id && v[i].id[0] != '\0');
			FUZZ_CHECK(v[i].node != NULL);
			FUZZ_CHECK(consul_host_valid(v[i].address));
			FUZZ_CHECK(host_chars_safe(v[i].address));
			FUZZ_CHECK(v[i].port >= 1 && v[i].port <= 65535);
			FUZZ_CHECK(json_is_array(v[i].tags));
			FUZZ_CHECK(json_is_object(v[i].meta));
		}
		consul_instances_free(v, n);
	} else {
		FUZZ_CHECK(v == NULL && n == 0);
		FUZZ_CHECK(err[0] != '\0');
	}
	buf_release(&rejected);

	text = fuzz_strndup(data, size);
	if (consul_host_valid(text)) {
		FUZZ_CHECK(host_chars_safe(text));
		FUZZ_CHECK(strlen(text) <= CONSUL_HOST_MAX);
	}
	free(text);
	return 0;
}
