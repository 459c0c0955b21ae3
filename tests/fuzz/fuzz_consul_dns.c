/* A DNS answer from the agent's DNS interface (src/consul/dns.c): every
 * instance it yields must be safe to call. The id the parser expects is
 * the message's own (its first two bytes), so that mutations get past the
 * id check to the records. */
#include <jansson.h>
#include <string.h>

#include "consul/dns.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct consul_instance *v = (struct consul_instance *)&v;
	uint16_t id = size >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 0;
	char err[256] = "";
	size_t n = 42;
	struct consul_dns_answer a;
	enum mn_err e;

	e = consul_dns_parse(data, size, id, &v, &n, &a, err, sizeof(err));
	FUZZ_CHECK(e == MN_OK || e == MN_INVALID);
	if (e == MN_OK) {
		FUZZ_CHECK(v != NULL || n == 0);
		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK(v[i].id && v[i].id[0] != '\0');
			FUZZ_CHECK(v[i].node != NULL);
			FUZZ_CHECK(consul_host_unusable(v[i].address) == NULL);
			FUZZ_CHECK(i == 0 || strcmp(v[i - 1].id, v[i].id) < 0);
			FUZZ_CHECK(v[i].port >= 1 && v[i].port <= 65535);
			FUZZ_CHECK(json_is_array(v[i].tags) && json_is_object(v[i].meta));
			FUZZ_CHECK(v[i].passing && !v[i].maintenance);
		}
		consul_instances_free(v, n);
	} else {
		FUZZ_CHECK(v == NULL && n == 0);
		FUZZ_CHECK(err[0] != '\0');
	}
	return 0;
}
